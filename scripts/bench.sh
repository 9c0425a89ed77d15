#!/usr/bin/env bash
# The rvs traffic benchmark (DESIGN.md, "Performance method"): rvs-pktgen against rvsd over two
# memif links, then the same traffic against dpdk-testpmd --forward-mode=io (the transport's
# ceiling), and its section of benches/RESULTS.md: every figure, the machine, the date, the
# commands, rvs as a ratio of testpmd, and what failed.
#
#   scripts/bench.sh [--quick] [--out FILE] [--no-build] [--no-rvs] [--no-testpmd]
#                    [--flows "1K 100K"] [--warmup S] [--duration S] [--only GLOB]
#
#   --quick        smoke run: 1K and 100K flows, shorter runs (about 2 minutes in all)
#   --out FILE     where the results go (default benches/RESULTS.md; only the part between
#                  <!-- traffic-bench:begin --> and <!-- traffic-bench:end --> is replaced)
#   --no-build     use the release binaries already in target/release
#   --no-rvs / --no-testpmd   leave one DUT out (its columns then say "not run")
#   --flows LIST   the established-flow sweep (default 1K 100K 1M 10M)
#   --only GLOB    run only the points whose name matches (udp-1K, tcp-10M, udp-newconn,
#                  tcp-newconn, udp-1K-latency), e.g. --only 'udp-*'
#
# Topology (one machine, two cores; nothing leaves the host):
#
#   rvs-pktgen, lcore 1                                DUT, lcore 0
#   clients  net_memif0 (server) == ext.sock == net_memif0 (client)  ext 198.51.100.1 (VIP)
#   servers  net_memif1 (server) == int.sock == net_memif1 (client)  int 192.0.2.1 (DIP)
#
# rvs-pktgen is the memif server, so it starts first and the DUT (rvsd or testpmd) connects as
# client; a fresh DUT per point, so rvsd's connection table starts empty every time. The
# sockets are filesystem sockets (socket-abstract=no) in a private folder under /tmp. Each DPDK
# process runs --in-memory (no hugepage files left behind, no --file-prefix clashes).
#
# Points: UDP and TCP established flows for each flow count (as fast as the DUT takes them),
# new connections per second (every frame opens a flow: UDP, and TCP SYNs), and round-trip
# latency at a fixed 0.5 Mpps with 1K flows. A point that fails is reported as failed, with the
# reason; no figure is ever filled in for it.
#
# Environment: RVS_BENCH_WORK (work folder, default /tmp/rvs-bench.PID),
#   RVS_BENCH_NEWCONN_CAPACITY (rvsd's table size for the new-connection points, default 16M),
#   RVS_BENCH_QUIET_WAIT (seconds to wait for other work to stop before each point, default 60),
#   RVS_BENCH_NICE (niceness of rvs-pktgen and the DUT, default -20, 0 = off: other processes of
#   the same cgroup then take fewer time slices from the two busy-polling processes; it does not
#   help against other sessions' cgroups on a shared machine),
#   RVS_BENCH_RETRIES (how often a point disturbed by other work is measured again, default 2),
#   RVS_BENCH_COMMIT (what to report as the commit when the tree has no .git, e.g. an export).
#   RVS_BENCH_KERNEL=0 skips the kernel baseline at the end (scripts/kernel-bench.sh: the same
#   UDP flood through scripts/lab.sh with nftables and then rvsd as director); the plot
#   (scripts/bench-plot.py, benches/bench.png) is drawn at the end when matplotlib is there.
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/bench-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

QUICK=
OUT=$RVS_ROOT/benches/RESULTS.md
BUILD=1
RUN_RVS=1
RUN_TESTPMD=1
FLOWS=
WARMUP=
DURATION=
ONLY='*'
ARGV=("$0" "$@")
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 ;;
    --out) OUT=$2; shift ;;
    --no-build) BUILD= ;;
    --no-rvs) RUN_RVS= ;;
    --no-testpmd) RUN_TESTPMD= ;;
    --flows) FLOWS=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --only) ONLY=$2; shift ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
if [ -n "$QUICK" ]; then
    FLOWS=${FLOWS:-1K 100K}
    WARMUP=${WARMUP:-1}
    DURATION=${DURATION:-2}
else
    FLOWS=${FLOWS:-1K 100K 1M 10M}
    WARMUP=${WARMUP:-2}
    DURATION=${DURATION:-5}
fi
# Above the 14.7M client tuples rvs-pktgen walks, so the table never fills in those points.
NEWCONN_CAPACITY=${RVS_BENCH_NEWCONN_CAPACITY:-16000000}
LAT_RATE=500K
NICE=${RVS_BENCH_NICE:--20}
RETRIES=${RVS_BENCH_RETRIES:-2}
NICE_CMD=()
[ "$NICE" = 0 ] || NICE_CMD=(nice -n "$NICE")

need_root
command -v python3 >/dev/null 2>&1 || die "python3 is needed to write the report"
free_pages=$(awk '/^HugePages_Free/ {print $2}' /proc/meminfo)
[ "${free_pages:-0}" -ge 256 ] ||
    die "only ${free_pages:-0} free 2 MB hugepages (need 256+; run scripts/setup.sh)"
mountpoint -q /dev/hugepages || die "hugetlbfs is not mounted on /dev/hugepages (run scripts/setup.sh)"

TESTPMD=$(command -v dpdk-testpmd || true)
if [ -n "$RUN_TESTPMD" ] && [ -z "$TESTPMD" ]; then
    # Debian ships testpmd in dpdk-dev, not in the dpdk runtime package.
    log "dpdk-testpmd missing: installing Debian's dpdk-dev"
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dpdk-dev \
        </dev/null >&2; then
        TESTPMD=$(command -v dpdk-testpmd || true)
    fi
    [ -n "$TESTPMD" ] || warn "no dpdk-testpmd: the testpmd points are reported as not run"
fi

RVSD=$RVS_ROOT/target/release/rvsd
PKTGEN=$RVS_ROOT/target/release/rvs-pktgen
RVSD_BUILD_ERROR=
if [ -n "$BUILD" ]; then
    log "building rvs-pktgen (release)"
    run_cargo build --release -p rvs-benches --bin rvs-pktgen >&2 ||
        die "cargo build --release -p rvs-benches failed"
    if [ -n "$RUN_RVS" ]; then
        log "building rvsd (release)"
        if ! run_cargo build --release -p rvsd --bin rvsd >&2; then
            RVSD_BUILD_ERROR="cargo build --release -p rvsd --bin rvsd failed"
            warn "$RVSD_BUILD_ERROR: the rvs points are reported as failed"
        fi
    fi
fi
[ -x "$PKTGEN" ] || die "$PKTGEN missing (build it or drop --no-build)"
if [ -n "$RUN_RVS" ] && [ -z "$RVSD_BUILD_ERROR" ] && [ ! -x "$RVSD" ]; then
    RVSD_BUILD_ERROR="$RVSD missing"
fi

WORK=${RVS_BENCH_WORK:-/tmp/rvs-bench.$$}
case $WORK in /tmp/?*) ;; *) die "RVS_BENCH_WORK must be a folder under /tmp (it is emptied)" ;; esac
rm -rf "$WORK"
mkdir -p "$WORK"
RECORDS=$WORK/records.jsonl
: >"$RECORDS"
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    sleep 0.5
    for p in "${PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    [ -n "${RVS_BENCH_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM



EXT_SOCK=$WORK/ext.sock
INT_SOCK=$WORK/int.sock
# Fixed, distinct, locally administered MACs: pktgen 02:..:01:0x, DUT 02:..:00:0x.
PG_EAL=(-l 1 --in-memory --no-pci
    "--vdev=net_memif0,role=server,socket=$EXT_SOCK,socket-abstract=no,id=0,mac=02:00:00:00:01:01"
    "--vdev=net_memif1,role=server,socket=$INT_SOCK,socket-abstract=no,id=0,mac=02:00:00:00:01:02")
DUT_VDEVS=("--vdev=net_memif0,role=client,socket=$EXT_SOCK,socket-abstract=no,id=0,mac=02:00:00:00:00:01"
    "--vdev=net_memif1,role=client,socket=$INT_SOCK,socket-abstract=no,id=0,mac=02:00:00:00:00:02")




# "busy total" CPU ticks of the whole machine so far.
machine_ticks() {
    awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}

# CPU ticks a process (all its threads) has used so far; 0 once it is gone.
proc_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}



# Appends one JSON record to $RECORDS: key=value pairs (values are strings), plus the pktgen's
# JSON line from file $PG_JSON when there is one.
record() {
    python3 - "$RECORDS" "${PG_JSON:-}" "$@" <<'PY'
import json, sys
path, pg = sys.argv[1], sys.argv[2]
rec = dict(kv.split("=", 1) for kv in sys.argv[3:])
if pg:
    try:
        lines = [l for l in open(pg) if l.startswith("{")]
        if lines:
            rec["pktgen"] = json.loads(lines[-1])
    except (OSError, ValueError) as e:
        rec.setdefault("error", "cannot read rvs-pktgen's result: %s" % e)
with open(path, "a") as f:
    f.write(json.dumps(rec) + "\n")
PY
}

# run_point DUT NAME PKTGEN-ARGS...: one point. A point that other work disturbed (more than
# 5 % of the CPU time went to other processes) is measured again, up to RETRIES more times;
# the last attempt is kept, flagged in the report when it was disturbed too.
run_point() {
    # shellcheck disable=SC2053 # $ONLY is a glob on purpose
    [[ $2 == $ONLY ]] || return 0
    local attempt busy
    for ((attempt = 0; ; attempt++)); do
        run_once "$@"
        busy=$(python3 -c 'import json, sys; print(int(json.loads(open(sys.argv[1]).readlines()[-1]).get("busy_during") or 0))' "$RECORDS")
        ((busy > 5 && attempt < RETRIES)) || break
        log "$1-$2: other work took ${busy}% of the CPU time: measuring again"
        sed -i '$ d' "$RECORDS"
    done
}

# run_once DUT NAME PKTGEN-ARGS...: one measurement with a fresh DUT.
run_once() {
    local dut=$1 name=$2
    shift 2
    local tag="$dut-$name" flows=1000 a prev=
    for a in "$@"; do
        [ "$prev" = --flows ] && flows=$(count "$a")
        prev=$a
    done
    local pg_out=$WORK/$tag.pktgen.json pg_log=$WORK/$tag.pktgen.log dut_log=$WORK/$tag.dut.log
    PG_JSON=
    local load BUSY=0
    load=$(cut -d' ' -f1-3 /proc/loadavg)

    if [ "$dut" = rvs ] && [ -n "$RVSD_BUILD_ERROR" ]; then
        record dut="$dut" point="$name" error="$RVSD_BUILD_ERROR"
        return
    fi
    if [ "$dut" = testpmd ] && [ -z "$TESTPMD" ]; then
        record dut="$dut" point="$name" error="dpdk-testpmd not installed"
        return
    fi

    wait_quiet "${RVS_BENCH_QUIET_WAIT:-60}"
    rm -f "$EXT_SOCK" "$INT_SOCK"
    local pg_cmd=("${NICE_CMD[@]}" "$PKTGEN" "$@" --warmup "$WARMUP" --duration "$DURATION" --label "$tag"
        --link-timeout 60 --linger 20 -q)
    [ "$dut" = testpmd ] && pg_cmd+=(--dut-mac 02:00:00:00:00:01)
    pg_cmd+=(-- "${PG_EAL[@]}")
    log "$tag: $(quote "$@")"
    "${pg_cmd[@]}" >"$pg_out" 2>"$pg_log" &
    local pg=$!
    PIDS+=("$pg")
    local i
    for ((i = 0; i < 100; i++)); do
        [ -S "$EXT_SOCK" ] && [ -S "$INT_SOCK" ] && break
        kill -0 "$pg" 2>/dev/null || break
        sleep 0.1
    done
    if ! [ -S "$EXT_SOCK" ] || ! [ -S "$INT_SOCK" ]; then
        stop_pid "$pg" 5
        PG_JSON=$pg_out record dut="$dut" point="$name" load="$load" \
            error="rvs-pktgen did not create its memif sockets: $(grep -v '^EAL' "$pg_log" | tail -n 3 | tr '\n' ' ')"
        return
    fi

    local dut_cmd
    if [ "$dut" = rvs ]; then
        local capacity
        if [[ " $* " == *" --new-conns "* ]]; then
            capacity=$NEWCONN_CAPACITY
        else
            capacity=$((flows + flows / 4 + 65536))
        fi
        local conf=$WORK/$tag.rvs.toml
        write_rvsd_config "$conf" "$WORK/rvs.sock" "$capacity" 0 "$(bench_services udp tcp)" "${DUT_VDEVS[@]}"
        cp "$conf" "$WORK/last-rvs.toml"
        dut_cmd=(env RVS_LOG=warn "${NICE_CMD[@]}" "$RVSD" --config "$conf")
    else
        # testpmd needs a main and a forwarding lcore: both on CPU 0 (the main one sleeps).
        dut_cmd=("${NICE_CMD[@]}" "$TESTPMD" "--lcores=0@0,1@0" --in-memory --no-pci "${DUT_VDEVS[@]}" --
            --forward-mode=io --nb-cores=1 --auto-start --stats-period 1)
    fi
    "${dut_cmd[@]}" </dev/null >"$dut_log" 2>&1 &
    local dp=$!
    PIDS+=("$dp")
    # What other processes take from the two cores during the point (see below).
    local m0 pg0
    read -r -a m0 < <(machine_ticks)
    pg0=$(proc_ticks "$pg")

    # rvs-pktgen ends by itself: links (60 s), opening every flow, warm-up, measurement, drain.
    local limit=$((90 + ${WARMUP%.*} + ${DURATION%.*} + flows / 100000))
    local t0=$SECONDS dut_died=
    while ! grep -q '^{' "$pg_out" 2>/dev/null; do
        kill -0 "$pg" 2>/dev/null || break
        if [ -z "$dut_died" ] && ! kill -0 "$dp" 2>/dev/null; then
            # No point waiting for links that will not come: rvs-pktgen reports and exits.
            dut_died=1
            kill -TERM "$pg" 2>/dev/null || true
        fi
        if ((SECONDS - t0 > limit)); then
            warn "$tag: no result after ${limit}s, interrupting rvs-pktgen"
            kill -TERM "$pg" 2>/dev/null || true
            sleep 3
            break
        fi
        sleep 0.2
    done
    # The DUT goes first (it is the memif client), then rvs-pktgen, which waits for that.
    # Busy time of the machine not spent by rvs-pktgen or the DUT, as a share of all CPU time.
    local m1 other_pct
    read -r -a m1 < <(machine_ticks)
    other_pct=$(( ((m1[0] - m0[0]) - ($(proc_ticks "$pg") - pg0) - $(proc_ticks "$dp")) * 100 / (m1[1] - m0[1] > 0 ? m1[1] - m0[1] : 1) ))
    ((other_pct >= 0)) || other_pct=0
    local dut_rc=0 dut_error='' dut_rss
    # Peak resident memory (hugepages are not in it): the connection table lives on the heap.
    dut_rss=$(awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$dp/status" 2>/dev/null || true)
    if kill -0 "$dp" 2>/dev/null; then
        stop_pid "$dp" 15
        dut_rc=$STOP_RC
        # testpmd exits 0 on SIGTERM; rvsd exits 0 on SIGTERM.
        [ "$dut_rc" -eq 0 ] || dut_error="exit status $dut_rc at shutdown"
    else
        stop_pid "$dp" 0
        dut_rc=$STOP_RC
        dut_error="the DUT exited during the run (status $dut_rc): $(grep -v '^EAL:' "$dut_log" | tail -n 4 | tr '\n' ' ')"
    fi
    stop_pid "$pg" 25
    [ -n "$dut_died" ] && [ -z "$dut_error" ] && dut_error="the DUT exited during the run"
    PG_JSON=$pg_out record dut="$dut" point="$name" load="$load" \
        dut_cmd="$(quote "${dut_cmd[@]}")" pktgen_cmd="$(quote "${pg_cmd[@]}")" \
        ${dut_error:+dut_error="$dut_error"} pktgen_rc="$STOP_RC" busy_before="$BUSY" busy_during="$other_pct" \
        dut_rss_mb="${dut_rss:-}"
    PG_JSON=
    python3 - "$RECORDS" <<'PY' >&2
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
p = r.get("pktgen", {})
if "delivered_mpps" in p:
    l = p["latency_us"]
    print("  %s %s: %.3f Mpps, loss %.4f %%, p50 %.1f us, p99 %.1f us, mismatches %d%s" % (
        r["dut"], r["point"], p["delivered_mpps"], p["loss_pct"], l["p50"], l["p99"],
        p["mismatches"] + p["server_mismatches"],
        ("; DUT: " + r["dut_error"]) if r.get("dut_error") else ""))
else:
    print("  %s %s: FAILED: %s %s" % (r["dut"], r["point"], p.get("error", r.get("error", "no result")),
          r.get("dut_error", "")))
PY
}

DUTS=()
[ -n "$RUN_RVS" ] && DUTS+=(rvs)
[ -n "$RUN_TESTPMD" ] && DUTS+=(testpmd)
[ ${#DUTS[@]} -gt 0 ] || die "nothing to run (--no-rvs and --no-testpmd)"

START_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
for dut in "${DUTS[@]}"; do
    for proto in udp tcp; do
        for f in $FLOWS; do
            run_point "$dut" "$proto-$f" --proto "$proto" --flows "$f"
        done
        run_point "$dut" "$proto-newconn" --proto "$proto" --new-conns
    done
    run_point "$dut" "udp-1K-latency" --proto udp --flows 1K --rate "$LAT_RATE"
done

# ---------------------------------------------------------------------------------------------
# The report.
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
DPDK_VERSION=$(pkg-config --modversion libdpdk 2>/dev/null || echo unknown)
if [ -n "${RVS_BENCH_COMMIT:-}" ]; then
    COMMIT=$RVS_BENCH_COMMIT
else
    COMMIT=$(git -C "$RVS_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$RVS_ROOT" status --porcelain 2>/dev/null)" ]; then
        COMMIT="$COMMIT (with uncommitted changes)"
    fi
fi
M_BINARIES="rvsd $(date -u -r "$RVSD" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo missing), rvs-pktgen $(date -u -r "$PKTGEN" +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$(dirname "$OUT")"
M_NPROC=$(nproc)
M_KERNEL=$(uname -r)
M_COMMAND=$(quote "${ARGV[@]}")
export M_DATE=$START_DATE M_NPROC M_CPU=$CPU M_KERNEL M_DPDK=$DPDK_VERSION M_COMMIT=$COMMIT \
    M_COMMAND M_LOAD=$START_LOAD M_MODE=${QUICK:+quick} M_WARMUP=$WARMUP M_DURATION=$DURATION \
    M_FLOWS=$FLOWS M_LAT_RATE=$LAT_RATE M_NEWCONN_CAPACITY=$NEWCONN_CAPACITY M_WORK=$WORK \
    M_BINARIES M_NICE=$NICE
PYTHONPATH="$RVS_ROOT/scripts" python3 - "$RECORDS" "$OUT" <<'PY'
import json, os, sys
import results_section
recs = [json.loads(l) for l in open(sys.argv[1])]
out = sys.argv[2]
E = os.environ
meta = {
    "date": E["M_DATE"], "nproc": E["M_NPROC"], "cpu": E["M_CPU"], "kernel": E["M_KERNEL"],
    "dpdk": E["M_DPDK"], "commit": E["M_COMMIT"], "command": E["M_COMMAND"], "load": E["M_LOAD"],
    "mode": E["M_MODE"] or "full", "warmup": E["M_WARMUP"], "duration": E["M_DURATION"],
    "flows": E["M_FLOWS"], "lat_rate": E["M_LAT_RATE"], "newconn_capacity": E["M_NEWCONN_CAPACITY"],
}
by = {(r["dut"], r["point"]): r for r in recs}
points = []
for r in recs:
    if r["point"] not in points:
        points.append(r["point"])

def res(dut, point):
    r = by.get((dut, point))
    if r is None:
        return None, "not run"
    p = r.get("pktgen") or {}
    if "delivered_mpps" not in p:
        why = p.get("error") or r.get("error") or r.get("dut_error") or "no result"
        if r.get("dut_error") and r.get("dut_error") not in why:
            why += "; DUT: " + r["dut_error"]
        return None, why
    return p, r.get("dut_error")

failures = []
def cells(dut, point, rate_unit=1e6):
    p, why = res(dut, point)
    if p is None:
        if why != "not run":
            failures.append("%s %s: %s" % (dut, point, why))
            return ["FAILED", "", "", ""]
        return ["not run", "", "", ""]
    if why:
        failures.append("%s %s (figures kept, measured before): %s" % (dut, point, why))
    l = p["latency_us"]
    mism = p["mismatches"] + p["server_mismatches"]
    rate = "%.3f" % p["delivered_mpps"] if rate_unit == 1e6 else "{:,.0f}".format(p["delivered_mpps"] * 1e6)
    lat = " / ".join("%.1f" % l[k] for k in ("p50", "p99", "p999", "max"))
    rec = by[(dut, point)]
    if int(rec.get("busy_before") or 0) > 15 or int(rec.get("busy_during") or 0) > 5:
        rate += " (busy)"
    return [rate, "%.3f" % p["loss_pct"], lat, str(mism)]

def rss(point):
    r = by.get(("rvs", point))
    return (r or {}).get("dut_rss_mb") or "–"

def ratio(point):
    a, _ = res("rvs", point)
    b, _ = res("testpmd", point)
    if a is None or b is None or b["delivered_mpps"] == 0:
        return "–"
    return "%.2f" % (a["delivered_mpps"] / b["delivered_mpps"])

L = []
L.append("## Traffic benchmark: rvs-pktgen over memif")
L.append("")
L.append("Written by `scripts/bench.sh` between the traffic-bench markers; do not edit by hand, run the script again.")
L.append("")
disturbed = [r for r in recs if "pktgen" in r and (int(r.get("busy_before") or 0) > 15 or int(r.get("busy_during") or 0) > 5)]
if disturbed:
    L.append("**Warning: %d of %d points were measured while other work took CPU time from the benchmark** "
             "(marked \"(busy)\"). Their figures are far below what rvs and testpmd do on a quiet machine "
             "and say nothing about either; run the script again when nothing else runs." % (len(disturbed), len(recs)))
    L.append("")
L.append("| | |")
L.append("| --- | --- |")
L.append("| date (UTC) | %s |" % meta["date"])
L.append("| machine | nproc %s, %s, kernel %s |" % (meta["nproc"], meta["cpu"], meta["kernel"]))
L.append("| DPDK | %s (Debian packages) |" % meta["dpdk"])
L.append("| rvs commit | %s |" % meta["commit"])
L.append("| binaries built (UTC) | %s |" % E["M_BINARIES"])
L.append("| command | `%s` |" % meta["command"])
L.append("| run | %s: warm-up %s s (and until every flow is open), %s s measured per point |" % (meta["mode"], meta["warmup"], meta["duration"]))
L.append("| load average at start | %s (other work on these 2 cores skews every figure) |" % meta["load"])
L.append("| niceness of rvs-pktgen and the DUT | %s |" % E["M_NICE"])
L.append("")
L.append("Mpps: round trips per second (a client frame to the VIP and the real server's reply back to")
L.append("the client), 64-byte frames on the wire (60 in the buffer). The DUT forwards each round trip")
L.append("twice (client to server, server to client), so it moves 2x the figure. Loss: frames sent during")
L.append("the measurement whose reply never came. Latency: round trip in microseconds, client to client,")
L.append("through the DUT twice and rvs-pktgen's reflection once. As fast as the DUT takes frames, the")
L.append("latency is mostly the memif rings filling up; the fixed-rate point shows it unloaded.")
L.append("Mismatches: replies not from VIP:vport to the flow's client, bad checksums or TCP flags, and")
L.append("frames reaching the real-server side that could not be answered.")
L.append("")
L.append("\"(busy)\": other work used more than 15 % of the CPUs just before that point or more than 5 %")
L.append("during it (busy_before, busy_during in the raw results); its figures are low by an unknown amount.")
L.append("rvsd peak RSS: VmHWM")
L.append("of rvsd (heap, where the connection table lives; hugepages not included).")
L.append("")
L.append("Targets (DESIGN.md, per worker core): >= 10 Mpps forwarded at 1M established flows, >= 0.8x")
L.append("testpmd io over the same transport, >= 1M new connections/s.")
L.append("")
hdr = ("| point | rvs Mpps | loss % | latency us p50 / p99 / p99.9 / max | mismatches | rvsd peak RSS MB "
       "| testpmd Mpps | loss % | latency us p50 / p99 / p99.9 / max | mismatches | rvs / testpmd |")
sep = "|" + " --- |" * 11
def table(title, pts, unit=1e6, note=None):
    pts = [p for p in pts if p in points]
    if not pts:
        return
    L.append("### " + title)
    L.append("")
    if note:
        L.append(note)
        L.append("")
    h = hdr if unit == 1e6 else hdr.replace("rvs Mpps", "rvs conn/s").replace("testpmd Mpps", "testpmd frames/s")
    L.append(h)
    L.append(sep)
    for pt in pts:
        L.append("| %s | %s | %s | %s | %s |" % (pt, " | ".join(cells("rvs", pt, unit)), rss(pt), " | ".join(cells("testpmd", pt, unit)), ratio(pt)))
    L.append("")

flows = meta["flows"].split()
table("Established flows", ["%s-%s" % (pr, f) for pr in ("udp", "tcp") for f in flows],
      note="Every flow is opened during the warm-up (TCP: SYN, SYN-ACK, then ACK segments); the measurement sees established flows only. Each flow gets a frame in turn.")
table("New connections per second", ["udp-newconn", "tcp-newconn"], unit=1,
      note="Every frame opens a new flow (TCP: a SYN answered with SYN-ACK; UDP: a new client port); a connection counts when its reply reached the client. rvsd's table holds %s connections here; testpmd just forwards the same frames." % meta["newconn_capacity"])
table("Latency at a fixed rate", ["udp-1K-latency"],
      note="UDP, 1K flows, %s client frames/s offered." % meta["lat_rate"])
other = [p for p in points if not (p.endswith("newconn") or p.endswith("latency") or any(p == "%s-%s" % (pr, f) for pr in ("udp", "tcp") for f in flows))]
table("Other", other)

L.append("### Failures and notes")
L.append("")
if failures:
    for f in failures:
        L.append("- " + f)
else:
    L.append("- none: every point ran to the end.")
for r in recs:
    p = r.get("pktgen", {})
    if p.get("interrupted"):
        L.append("- %s %s: rvs-pktgen was interrupted before the end; figures cover what was measured." % (r["dut"], r["point"]))
L.append("- rvs-pktgen runs on one core and does three frames' work per round trip (build, reflect, check) while testpmd io only forwards; at testpmd's rate the generator may be the limit, which flatters the rvs / testpmd ratio.")
L.append("")
L.append("### Commands")
L.append("")
L.append("Each point starts rvs-pktgen (memif servers), then the DUT (memif clients); the DUT is stopped with SIGTERM once rvs-pktgen has reported.")
L.append("")
for r in recs:
    if "pktgen_cmd" in r:
        L.append("- %s %s:" % (r["dut"], r["point"]))
        L.append("  - DUT: `%s`" % r["dut_cmd"])
        L.append("  - rvs-pktgen: `%s`" % r["pktgen_cmd"])
L.append("")
try:
    conf = open(os.path.join(E["M_WORK"], "last-rvs.toml")).read()
    L.append("rvsd's configuration (conntrack.capacity = flows x 1.25 + 65536 for the established-flow points, %s for the new-connection ones):" % meta["newconn_capacity"])
    L.append("")
    L.append("```toml")
    L.append(conf.rstrip())
    L.append("```")
    L.append("")
except OSError:
    pass
L.append("### Raw results")
L.append("")
L.append("rvs-pktgen's JSON line for every point, as it printed it:")
L.append("")
L.append("```")
for r in recs:
    L.append(json.dumps({"dut": r["dut"], "point": r["point"], "load": r.get("load"), "busy_before": r.get("busy_before"), "busy_during": r.get("busy_during"), "dut_rss_mb": r.get("dut_rss_mb"), "dut_error": r.get("dut_error"), "error": r.get("error"), "pktgen": r.get("pktgen")}, separators=(",", ":")))
L.append("```")
# benches/RESULTS.md is shared with the micro benchmarks, each between its own markers: replace
# this section, or append it, and leave the rest alone.
results_section.write(out, "traffic-bench", L)
# The figures on stdout too: the tables and the failures, without the commands and raw data.
first = next((i for i, l in enumerate(L) if l.startswith("### ")), 0)
last = next((i for i, l in enumerate(L) if l == "### Commands"), len(L))
print("\n".join(L[first:last]))
PY
log "results written to $OUT (between its traffic-bench markers)"
# The plot (benches/bench.png, linked from its own section of the results) when matplotlib is
# there; scripts/bench-plot.py redraws it later otherwise.
if python3 -c 'import matplotlib' 2>/dev/null; then
    python3 "$RVS_ROOT/scripts/bench-plot.py" "$OUT" "$(dirname "$OUT")/bench.png" >&2 || warn "plot failed"
else
    log "no matplotlib: no plot (pip install matplotlib; python3 scripts/bench-plot.py)"
fi
# The kernel baseline over the namespace lab (its own section of the results): RVS_BENCH_KERNEL=0
# leaves it out.
if [ "${RVS_BENCH_KERNEL:-1}" != 0 ]; then
    "$RVS_ROOT/scripts/kernel-bench.sh" --out "$OUT" >&2 || warn "kernel baseline failed (scripts/kernel-bench.sh)"
fi
