#!/usr/bin/env bash
# The rvs traffic benchmark (DESIGN.md, "Performance method"): rvs-pktgen against rvsd over two
# memif links, then the same traffic against dpdk-testpmd --forward-mode=io (the transport's
# ceiling), and its section of benches/RESULTS.md: every figure, the machine, the date, the
# commands, rvs as a ratio of testpmd, and what failed.
#
#   scripts/bench.sh [--quick] [--out FILE] [--no-build] [--no-rvs] [--no-testpmd]
#                    [--flows "1K 100K"] [--warmup S] [--duration S] [--only GLOB]
#                    [--pairs N] [--workers N] [--check-rss] [--families "4 6"]
#
#   --quick        smoke run: 1K and 100K flows, shorter runs (about 2 minutes per pair)
#   --out FILE     where the results go (default benches/RESULTS.md; only the part between
#                  <!-- traffic-bench:begin --> and <!-- traffic-bench:end --> is replaced)
#   --no-build     use the release binaries already in target/release
#   --no-rvs / --no-testpmd   leave one DUT out (its columns then say "not run")
#   --flows LIST   the established-flow sweep (default 1K 100K 1M 10M)
#   --only GLOB    run only the points whose name matches (udp-1K, tcp-10M, udp-newconn,
#                  tcp-newconn, udp-1K-latency; IPv6: udp6-1K, tcp6-newconn, ...), e.g.
#                  --only 'udp-*' (IPv4 UDP), --only 'udp*' (UDP of both families)
#   --families L   address families, "4" (default), "6" or "4 6" (--family N: one): each IPv6
#                  point is its IPv4 point over IPv6 (rvs-pktgen --family 6: VIP
#                  [2001:db8:100::1], real servers 2001:db8:2::2-5, clients in
#                  2001:db8:100::/64, 84-byte frames: the 64-byte IPv4 frame's L4 header and
#                  payload behind the 20 bytes longer header), named with a 6 after the
#                  protocol (udp6-1K); the families run interleaved within each pair
#                  (rvs v4, testpmd v4, rvs v6, testpmd v6, ...), and the report adds an
#                  "IPv6 beside IPv4" table. With 6, rvsd's configuration has the IPv6
#                  addresses and services too (for both families' points), and for an IPv6
#                  point conntrack.capacity is 4x the IPv4 one: rvsd's IPv6 table holds a
#                  quarter of it (dataplane ipv6_capacity), so each family's table has as
#                  many slots for its flows.
#   --pairs N      runs per DUT and point, interleaved: rvs, testpmd, rvs, testpmd, ... (default
#                  5): the report gives the median ratio of the pairs with its spread, and says
#                  when the spread is too wide to conclude (one measurement per DUT measures the
#                  neighbours on a shared machine as much as the DUT)
#   --workers N    rvsd workers (lcores; testpmd forwarding cores), one RX/TX queue each per
#                  memif port, on CPUs 0..N-1 (default 1); rvs-pktgen spreads the frames over
#                  the N queues as RSS would (a hash of each frame's own tuple: a reply after NAT
#                  reaches another worker than its request for about 1 - 1/N of the flows) and
#                  runs on CPU N, or on the last CPU, shared with a worker, when the machine has
#                  no more (then the report says it is not a scaling figure)
#   --check-rss    exit 1 unless every rvs run shows replies on the other worker handled right
#                  (zero mismatches, little loss, every worker DNATing and SNATing:
#                  traffic_bench.py rss-check); scripts/test.sh runs it with --workers 2
#
# Topology (one machine, two cores; nothing leaves the host; with --workers N, the DUT on CPUs
# 0..N-1 and rvs-pktgen on CPU N, N queues per memif port):
#
#   rvs-pktgen, lcore 1                                DUT, lcore 0
#   clients  net_memif0 (server) == ext.sock == net_memif0 (client)  ext 198.51.100.1 (VIP)
#   servers  net_memif1 (server) == int.sock == net_memif1 (client)  int 192.0.2.1 (DIP)
#
# rvs-pktgen is the memif server, so it starts first and the DUT (rvsd or testpmd) connects as
# client; a fresh DUT per run, so rvsd's connection table starts empty every time. The
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
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"

QUICK=
OUT=$RVS_ROOT/benches/RESULTS.md
BUILD=1
RUN_RVS=1
RUN_TESTPMD=1
FLOWS=
WARMUP=
DURATION=
ONLY='*'
PAIRS=5
WORKERS=1
CHECK_RSS=
FAMILIES=4
ARGV=("$0" "$@")
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 OPT_WORDS=1 ;;
    --no-rvs) RUN_RVS='' OPT_WORDS=1 ;;
    --no-testpmd) RUN_TESTPMD='' OPT_WORDS=1 ;;
    --pairs) PAIRS=${2:-} OPT_WORDS=2 ;;
    --workers) WORKERS=${2:-} OPT_WORDS=2 ;;
    --check-rss) CHECK_RSS=1 OPT_WORDS=1 ;;
    --families | --family) FAMILIES=${2:-} OPT_WORDS=2 ;;
    *) bench_option "$@" ;;
    esac
    shift "$OPT_WORDS"
done
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || die "--pairs takes a count (1 or more)"
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "--workers takes a count (1 or more)"
FAMILIES=${FAMILIES//,/ }
[[ $FAMILIES =~ ^[46]( [46])?$ ]] || die "--families takes 4, 6 or \"4 6\""
IPV6=
[[ " $FAMILIES " == *" 6 "* ]] && IPV6=1
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
RETRIES=${RVS_BENCH_RETRIES:-2}
bench_nice

need_root
command -v python3 >/dev/null 2>&1 || die "python3 is needed to write the report"
need_hugepages

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
RVSCTL=$RVS_ROOT/target/release/rvsctl
PKTGEN=$RVS_ROOT/target/release/rvs-pktgen
RVSD_BUILD_ERROR=
if [ -n "$BUILD" ]; then
    log "building rvs-pktgen (release)"
    run_cargo build --release -p rvs-benches --bin rvs-pktgen >&2 ||
        die "cargo build --release -p rvs-benches failed"
    if [ -n "$RUN_RVS" ]; then
        log "building rvsd and rvsctl (release)"
        if ! run_cargo build --release -p rvsd --bin rvsd -p control --bin rvsctl >&2; then
            RVSD_BUILD_ERROR="cargo build --release -p rvsd --bin rvsd -p control --bin rvsctl failed"
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
bench_work "$WORK"

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# The CPUs: the DUT's workers on 0..WORKERS-1, rvs-pktgen on the next one, or on the last one
# (shared with a worker) when there is none left.
NPROC=$(nproc)
((WORKERS <= NPROC)) || die "--workers $WORKERS needs $WORKERS CPUs; this machine has $NPROC"
DUT_CPUS=$(seq -s, 0 $((WORKERS - 1)))
SHARED_CORE=
if ((WORKERS < NPROC)); then
    PG_CPU=$WORKERS
else
    PG_CPU=$((NPROC - 1))
    ((WORKERS == 1)) || SHARED_CORE="rvs-pktgen runs on CPU $PG_CPU, which also runs DUT worker $PG_CPU (this machine has $NPROC CPUs): the DUT's workers compete with the generator for that core"
fi
# testpmd: its main lcore (it sleeps) and the forwarding lcores 1..WORKERS on the DUT's CPUs.
TESTPMD_LCORES=0@0
for ((i = 0; i < WORKERS; i++)); do TESTPMD_LCORES+=",$((i + 1))@$i"; done
CPUS="rvs-pktgen on CPU $PG_CPU; the DUT on CPU(s) $DUT_CPUS (rvsd: lcores $DUT_CPUS; testpmd: --lcores=$TESTPMD_LCORES)"

bench_memif "$WORK" "" "$PG_CPU"

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
    python3 "$RVS_LIB/traffic_bench.py" record "$RECORDS" "${PG_JSON:-}" workers="$WORKERS" \
        family="${family:-4}" ${SHARED_CORE:+shared_core="$SHARED_CORE"} "$@"
}

# run_point DUT NAME PAIR PKTGEN-ARGS...: one run of a point. A run that other work disturbed
# (more than 5 % of the CPU time went to other processes) is measured again, up to RETRIES more
# times; the last attempt is kept, flagged in the report when it was disturbed too.
run_point() {
    local attempt busy
    for ((attempt = 0; ; attempt++)); do
        run_once "$@"
        busy=$(python3 "$RVS_LIB/traffic_bench.py" busy "$RECORDS")
        ((busy > 5 && attempt < RETRIES)) || break
        log "$1-$2: other work took ${busy}% of the CPU time: measuring again"
        sed -i '$ d' "$RECORDS"
    done
}

# run_once DUT NAME PAIR PKTGEN-ARGS...: one measurement with a fresh DUT (IPv6 when the
# arguments say --family 6).
run_once() {
    local dut=$1 name=$2 pair=$3
    shift 3
    local tag="$dut-$name-$pair" flows=1000 family=4 a prev=
    for a in "$@"; do
        [ "$prev" = --flows ] && flows=$(count "$a")
        [ "$prev" = --family ] && family=$a
        prev=$a
    done
    local pg_out=$WORK/$tag.pktgen.json pg_log=$WORK/$tag.pktgen.log dut_log=$WORK/$tag.dut.log
    PG_JSON=
    local load BUSY=0
    load=$(cut -d' ' -f1-3 /proc/loadavg)

    if [ "$dut" = rvs ] && [ -n "$RVSD_BUILD_ERROR" ]; then
        record dut="$dut" point="$name" pair="$pair" error="$RVSD_BUILD_ERROR"
        return
    fi
    if [ "$dut" = testpmd ] && [ -z "$TESTPMD" ]; then
        record dut="$dut" point="$name" pair="$pair" error="dpdk-testpmd not installed"
        return
    fi

    wait_quiet "${RVS_BENCH_QUIET_WAIT:-60}"
    rm -f "$EXT_SOCK" "$INT_SOCK"
    local pg_cmd=("${NICE_CMD[@]}" "$PKTGEN" "$@" --warmup "$WARMUP" --duration "$DURATION" --label "$tag"
        --queues "$WORKERS" --link-timeout 60 --linger 20 -q)
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
        PG_JSON=$pg_out record dut="$dut" point="$name" pair="$pair" load="$load" \
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
        # rvsd's IPv6 table holds a quarter of conntrack.capacity (dataplane ipv6_capacity).
        [ "$family" = 6 ] && capacity=$((capacity * 4))
        local conf=$WORK/$tag.rvs.toml services
        services=$(bench_services udp tcp ${IPV6:+udp6 tcp6})
        BENCH_IPV6=$IPV6 write_rvsd_config "$conf" "$WORK/rvs.sock" "$capacity" "$DUT_CPUS" "$services" "${DUT_VDEVS[@]}"
        cp "$conf" "$WORK/last-rvs.toml"
        dut_cmd=(env RVS_LOG=warn "${NICE_CMD[@]}" "$RVSD" --config "$conf")
    else
        # testpmd needs a main lcore besides the forwarding ones: it shares CPU 0 (and sleeps).
        dut_cmd=("${NICE_CMD[@]}" "$TESTPMD" "--lcores=$TESTPMD_LCORES" --in-memory --no-pci "${DUT_VDEVS[@]}" --
            --forward-mode=io --nb-cores="$WORKERS" --rxq="$WORKERS" --txq="$WORKERS" --auto-start --stats-period 1)
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
    local dut_rc=0 dut_error='' dut_rss counters=
    # Peak resident memory (hugepages are not in it): the connection table lives on the heap.
    dut_rss=$(awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$dp/status" 2>/dev/null || true)
    # rvsd's counters, per worker too: which worker DNATed and SNATed what.
    if [ "$dut" = rvs ] && kill -0 "$dp" 2>/dev/null && [ -x "$RVSCTL" ]; then
        counters=$WORK/$tag.counters
        "$RVSCTL" --socket "$WORK/rvs.sock" counters >"$counters" 2>&1 || true
    fi
    if kill -0 "$dp" 2>/dev/null; then
        stop_pid "$dp" 15
        dut_rc=$STOP_RC
        # testpmd exits 0 on SIGTERM; rvsd exits 0 on SIGTERM.
        [ "$dut_rc" -eq 0 ] || dut_error="exit status $dut_rc at shutdown"
    else
        stop_pid "$dp" 0
        dut_rc=$STOP_RC
        dut_error="the DUT exited during the run (status $dut_rc): $(grep -v 'EAL:' "$dut_log" | tail -n 4 | tr '\n' ' ')"
    fi
    stop_pid "$pg" 25
    [ -n "$dut_died" ] && [ -z "$dut_error" ] && dut_error="the DUT exited during the run"
    PG_JSON=$pg_out record dut="$dut" point="$name" pair="$pair" load="$load" \
        dut_cmd="$(quote "${dut_cmd[@]}")" pktgen_cmd="$(quote "${pg_cmd[@]}")" \
        ${dut_error:+dut_error="$dut_error"} pktgen_rc="$STOP_RC" busy_before="$BUSY" busy_during="$other_pct" \
        dut_rss_mb="${dut_rss:-}" ${counters:+rvsd_counters="$counters"}
    PG_JSON=
    python3 "$RVS_LIB/traffic_bench.py" summary "$RECORDS" >&2
}

DUTS=()
[ -n "$RUN_RVS" ] && DUTS+=(rvs)
[ -n "$RUN_TESTPMD" ] && DUTS+=(testpmd)
[ ${#DUTS[@]} -gt 0 ] || die "nothing to run (--no-rvs and --no-testpmd)"

# The points, NAME then rvs-pktgen's arguments (IPv4; each family's name and arguments are
# made from these in the loop below).
POINTS=()
for proto in udp tcp; do
    for f in $FLOWS; do
        POINTS+=("$proto-$f --proto $proto --flows $f")
    done
    POINTS+=("$proto-newconn --proto $proto --new-conns")
done
POINTS+=("udp-1K-latency --proto udp --flows 1K --rate $LAT_RATE")

START_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
# point_name NAME FAMILY: the point's name in that family (IPv6: a 6 after the protocol).
point_name() {
    if [ "$2" = 6 ]; then echo "${1/-/6-}"; else echo "$1"; fi
}

# Point by point, the DUTs (and families) interleaved pair after pair: rvs, testpmd, rvs,
# testpmd, ... (with two families: rvs v4, testpmd v4, rvs v6, testpmd v6, rvs v4, ...).
for pt in "${POINTS[@]}"; do
    read -r -a words <<<"$pt"
    for ((pair = 1; pair <= PAIRS; pair++)); do
        for family in $FAMILIES; do
            name=$(point_name "${words[0]}" "$family")
            # shellcheck disable=SC2053 # $ONLY is a glob on purpose
            [[ $name == $ONLY ]] || continue
            fam_args=()
            [ "$family" = 6 ] && fam_args=(--family 6)
            for dut in "${DUTS[@]}"; do
                run_point "$dut" "$name" "$pair" "${words[@]:1}" "${fam_args[@]}"
            done
        done
    done
done

# ---------------------------------------------------------------------------------------------
# The report.
BINARIES="rvsd $(date -u -r "$RVSD" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo missing), rvs-pktgen $(date -u -r "$PKTGEN" +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$(dirname "$OUT")"
python3 "$RVS_LIB/traffic_bench.py" report "$RECORDS" "$OUT" "$WORK/last-rvs.toml" \
    date="$START_DATE" nproc="$(nproc)" cpu="$(cpu_model)" kernel="$(uname -r)" dpdk="$(dpdk_version)" \
    commit="$(bench_commit)" command="$(quote "${ARGV[@]}")" load="$START_LOAD" mode="${QUICK:+quick}" \
    warmup="$WARMUP" duration="$DURATION" flows="$FLOWS" lat_rate="$LAT_RATE" \
    newconn_capacity="$NEWCONN_CAPACITY" binaries="$BINARIES" nice="$NICE" \
    pairs="$PAIRS" workers="$WORKERS" cpus="$CPUS" shared_core="$SHARED_CORE" families="$FAMILIES"
log "results written to $OUT (between its traffic-bench markers)"
RSS_RC=0
if [ -n "$CHECK_RSS" ]; then
    log "checking that replies reaching another worker were handled (traffic_bench.py rss-check)"
    python3 "$RVS_LIB/traffic_bench.py" rss-check "$RECORDS" >&2 || RSS_RC=1
fi
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
# The status: 1 when --check-rss found a run that failed it.
[ "$RSS_RC" -eq 0 ]
