#!/usr/bin/env bash
# Kernel baseline (issue 6): the Linux kernel as LVS-NAT director (nftables DNAT round robin,
# replies de-NATed by conntrack) against rvsd, both driven the same way by the same generator
# (rvs-pktgen on DPDK net_af_packet) over the same veths. Writes its section of
# benches/RESULTS.md (<!-- kernel-bench:begin --> ... <!-- kernel-bench:end -->), leaving the
# rest alone: delivered round trips per second for both directors and rvs / kernel.
#
#   sudo scripts/kernel-bench.sh [--out FILE] [--no-build] [--flows N] [--rate PPS]
#                                [--warmup S] [--duration S] [--only GLOB]
#
#   --out FILE     where the results go (default benches/RESULTS.md)
#   --no-build     use rvs-pktgen and rvsd as they are in target/release
#   --flows N      concurrent UDP flows (default 1K)
#   --rate PPS     the fixed-rate points' client frames/s (default 100K; 0 leaves them out)
#   --warmup S / --duration S   per point (defaults 1 and 4; the duration must be >= 3)
#   --only GLOB    run only the points whose name matches (kernel-max, kernel-rps-max, rvs-max,
#                  kernel-100K, ...), e.g. --only 'rvs-*'
#
# Topology, rebuilt for every point (fresh conntrack, fresh rvsd), nothing else in it:
#
#   namespace rvs-kb-gen                          namespace rvs-kb-dut (the director)
#   rvs-pktgen   clients  g-ext ==== veth ==== d-ext  198.51.100.1/24 (VIP)
#   (CPU 1)      servers  g-int ==== veth ==== d-int  192.0.2.1/24   (DIP)
#
# rvs-pktgen (EAL -l 1, net_af_packet on g-ext and g-int) plays the clients 198.51.100.10:1024..
# and the real servers 192.0.2.2-5:9000 (it reflects what reaches g-int 5-tuple-swapped and
# answers ARP), sends UDP to VIP:9000 and checks every reply (source VIP:9000, destination the
# flow's client, checksums). Directors, on the DUT side:
#   kernel      d-ext/d-int hold VIP and DIP, ip_forward=1, rp_filter 0, nftables
#               `dnat to numgen inc mod 4 map {...}` for UDP VIP:9000; conntrack de-NATs replies.
#               Over veth the forwarding runs in softirq on the CPU that sent the frame, i.e.
#               inside rvs-pktgen's sendto() on its CPU: the generator's core pays for both.
#   kernel-rps  the same, with RPS on d-ext and d-int steering the forwarding to CPU 0, so that
#               the kernel director, like rvsd, has a core of its own.
#   rvs         rvsd (EAL -l 0, one worker on lcore 0, net_af_packet on d-ext and d-int), the
#               services rr over the same 4 real servers, -m; the DUT kernel keeps no addresses.
# Every veth end has offloads off (ethtool -K IF tx off tso off gso off gro off). Where only a
# DPDK process should see frames (both ends in rvs-kb-gen; d-ext/d-int under rvsd), an nftables
# netdev ingress chain drops them after af_packet has taken its copy, so the kernel stack does
# not also process and discard each one.
#
# Points: each director as fast as it takes frames (rvs-pktgen --rate 0: it sends as fast as its
# core can; what rvsd cannot take overflows rvsd's af_packet ring and is lost, while the kernel
# slows the sender down: on the sender's CPU without RPS, by back pressure on rvs-pktgen's
# socket with RPS), then each at the fixed --rate. The section reports offered and delivered,
# loss, rvs-pktgen's mismatches, per-CPU time during the measurement, where frames were lost
# and which limit each figure hit.
#
# Environment: RVS_BENCH_NICE (niceness of rvs-pktgen and rvsd, default -20, 0 = off),
#   RVS_KB_QUIET_WAIT (seconds to wait for other work to stop before a point, default 10),
#   RVS_KB_KEEP=1 (keep the work folder /tmp/rvs-kb.PID), RVS_BENCH_COMMIT (commit to report).
# Only these two namespaces and documentation addresses; namespaces, veths and processes (by
# PID) are removed on exit, also on failure.
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/bench-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

OUT=$RVS_ROOT/benches/RESULTS.md
BUILD=1
FLOWS=1K
RATE=100K
WARMUP=1
DURATION=4
ONLY='*'
ARGV=("$0" "$@")
while [ $# -gt 0 ]; do
    case $1 in
    --out) OUT=$2; shift ;;
    --no-build) BUILD= ;;
    --flows) FLOWS=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --only) ONLY=$2; shift ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
case $DURATION in '' | *[!0-9]*) die "--duration must be whole seconds" ;; esac
[ "$DURATION" -ge 3 ] || die "--duration must be >= 3 (CPU time is sampled over duration - 2 s)"
case $RATE in '' | *[!0-9KkMm]*) die "--rate must be a count (100K, 250000, 0)" ;; esac

need_root
for t in ip ethtool nft python3; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found (scripts/setup.sh)"
done
free_pages=$(awk '/^HugePages_Free/ {print $2}' /proc/meminfo)
[ "${free_pages:-0}" -ge 256 ] ||
    die "only ${free_pages:-0} free 2 MB hugepages (need 256+; run scripts/setup.sh)"
mountpoint -q /dev/hugepages || die "hugetlbfs is not mounted on /dev/hugepages (run scripts/setup.sh)"

RVSD=$RVS_ROOT/target/release/rvsd
RVSADM=$RVS_ROOT/target/release/rvsadm
PKTGEN=$RVS_ROOT/target/release/rvs-pktgen
if [ -n "$BUILD" ]; then
    log "building rvs-pktgen, rvsd and rvsadm (release)"
    run_cargo build --release -p rvs-benches --bin rvs-pktgen >&2 || die "building rvs-pktgen failed"
    run_cargo build --release -p rvsd --bin rvsd -p control --bin rvsadm >&2 ||
        die "building rvsd / rvsadm failed"
    fix_target_owner
fi
for b in "$PKTGEN" "$RVSD" "$RVSADM"; do
    [ -x "$b" ] || die "$b missing (build it or drop --no-build)"
done

NICE=${RVS_BENCH_NICE:--20}
NICE_CMD=()
[ "$NICE" = 0 ] || NICE_CMD=(nice -n "$NICE")
NS_GEN=rvs-kb-gen
NS_DUT=rvs-kb-dut
VIP=198.51.100.1
DIP=192.0.2.1
SERVERS=(192.0.2.2 192.0.2.3 192.0.2.4 192.0.2.5)
UDP_PORT=9000
# The director's ends under rvsd (the generator's are the same on g-ext / g-int).
DUT_VDEVS=("--vdev=net_af_packet0,iface=d-ext,framecnt=4096,qpairs=1"
    "--vdev=net_af_packet1,iface=d-int,framecnt=4096,qpairs=1")
if [ "$(nproc)" -ge 2 ]; then
    DUT_CPU=0
    GEN_CPU=1
else
    DUT_CPU=0
    GEN_CPU=0
    warn "one CPU only: rvs-pktgen and the director share it"
fi
RPS_MASK=$(printf '%x' $((1 << DUT_CPU)))

# One run at a time: with the lock held, namespaces of ours that exist are a killed run's.
exec 9>/run/rvs-kernel-bench.lock
flock -n 9 || die "another scripts/kernel-bench.sh is running (/run/rvs-kernel-bench.lock)"

WORK=/tmp/rvs-kb.$$
rm -rf "$WORK"
mkdir -p "$WORK"
RECORDS=$WORK/records.jsonl
: >"$RECORDS"
PIDS=()



topo_down() {
    local ns pid
    for ns in "$NS_GEN" "$NS_DUT"; do
        [ -e "/run/netns/$ns" ] || continue
        # Anything still running in our namespaces is ours.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        # Deleting a namespace deletes its veth ends (and their peers).
        ip netns del "$ns" 2>/dev/null || warn "could not delete namespace $ns"
    done
}

cleanup() {
    local rc=$? p
    trap - EXIT
    for p in "${PIDS[@]}"; do
        stop_pid "$p" 3
    done
    topo_down
    if [ -n "${RVS_KB_KEEP:-}" ]; then
        log "work folder kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# x CMD...: run a setup command and log it in $CMDS (the section lists them).
CMDS=/dev/null
x() {
    quote "$@" >>"$CMDS"
    echo >>"$CMDS"
    "$@"
}

ns_sysctl() {
    x ip netns exec "$1" sysctl -q -w "$2=$3" >/dev/null
}


# An nftables netdev ingress chain that drops everything on the given devices of namespace $1:
# af_packet's tap sees frames before that hook, so the DPDK process still gets them.
ingress_drop() {
    local ns=$1 dev rules=""
    shift
    for dev in "$@"; do
        rules+="    chain in_${dev//-/_} { type filter hook ingress device \"$dev\" priority 0; policy drop; }"$'\n'
    done
    printf 'table netdev rvs_kb_drop {\n%s}\n' "$rules" >"$WORK/drop-$ns.nft"
    x_nft "$ns" "$WORK/drop-$ns.nft"
}

# x_nft NS FILE: load an nftables file in NS, logged with its contents.
x_nft() {
    {
        echo "ip netns exec $1 nft -f - <<'EOF'"
        cat "$2"
        echo "EOF"
    } >>"$CMDS"
    ip netns exec "$1" nft -f "$2"
}

# topo_up MODE (kernel | kernel-rps | rvs)
topo_up() {
    local mode=$1 ns ifname i map=""
    topo_down
    for ns in "$NS_GEN" "$NS_DUT"; do
        x ip netns add "$ns"
        x ip -n "$ns" link set lo up
        ns_sysctl "$ns" net.ipv6.conf.all.disable_ipv6 1
        ns_sysctl "$ns" net.ipv6.conf.default.disable_ipv6 1
    done
    x ip -n "$NS_GEN" link add g-ext type veth peer name d-ext netns "$NS_DUT"
    x ip -n "$NS_GEN" link add g-int type veth peer name d-int netns "$NS_DUT"
    for ifname in g-ext g-int; do
        x ip netns exec "$NS_GEN" ethtool -K "$ifname" tx off tso off gso off gro off >/dev/null
        x ip -n "$NS_GEN" link set "$ifname" up
    done
    for ifname in d-ext d-int; do
        x ip netns exec "$NS_DUT" ethtool -K "$ifname" tx off tso off gso off gro off >/dev/null
        x ip -n "$NS_DUT" link set "$ifname" up
    done
    ingress_drop "$NS_GEN" g-ext g-int
    case $mode in
    kernel | kernel-rps)
        x ip -n "$NS_DUT" addr add "$VIP/24" dev d-ext
        x ip -n "$NS_DUT" addr add "$DIP/24" dev d-int
        ns_sysctl "$NS_DUT" net.ipv4.ip_forward 1
        for ifname in all default d-ext d-int; do
            ns_sysctl "$NS_DUT" "net.ipv4.conf.$ifname.rp_filter" 0
        done
        for ((i = 0; i < ${#SERVERS[@]}; i++)); do
            map+="${map:+, }$i : ${SERVERS[i]}"
        done
        cat >"$WORK/dnat.nft" <<EOF
table ip rvs_kb {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr $VIP udp dport $UDP_PORT dnat to numgen inc mod ${#SERVERS[@]} map { $map }
    }
}
EOF
        x_nft "$NS_DUT" "$WORK/dnat.nft"
        if [ "$mode" = kernel-rps ]; then
            for ifname in d-ext d-int; do
                x ip netns exec "$NS_DUT" sh -c "echo $RPS_MASK > /sys/class/net/$ifname/queues/rx-0/rps_cpus"
            done
        fi
        ;;
    rvs)
        ns_sysctl "$NS_DUT" net.ipv4.ip_forward 0
        ingress_drop "$NS_DUT" d-ext d-int
        ;;
    esac
    # A veth's queue starts a moment after its carrier; until then it drops what is sent.
    wait_link_up "$NS_GEN" g-ext
    wait_link_up "$NS_GEN" g-int
    wait_link_up "$NS_DUT" d-ext
    wait_link_up "$NS_DUT" d-int
}





# The CPU sampler (run with rvs-pktgen's niceness, or it would not get CPU time while two
# processes busy-poll both CPUs): waits for rvs-pktgen's first "measure" progress line (it
# comes within a second of the measurement's start), then 0.2 s, and snapshots per-CPU times,
# every process's CPU ticks and the kernel's backlog drops; again DURATION - 2 s later, so the
# sample lies inside the measurement.
cat >"$WORK/sampler.py" <<'PY'
import json, os, sys, time
log, pid, secs, out0, out1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
def snap(path):
    s = {"t": time.monotonic(), "cpu": {}, "proc": {}, "softnet_dropped": 0}
    for l in open("/proc/stat"):
        f = l.split()
        if f[0].startswith("cpu") and f[0] != "cpu":
            s["cpu"][f[0]] = [int(v) for v in f[1:9]]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                d = open("/proc/%s/stat" % p).read()
                rest = d[d.rindex(")") + 2:].split()
                s["proc"][p] = [d[d.index("(") + 1:d.rindex(")")], int(rest[11]) + int(rest[12])]
            except (OSError, ValueError):
                pass
    for l in open("/proc/net/softnet_stat"):
        s["softnet_dropped"] += int(l.split()[1], 16)
    json.dump(s, open(path, "w"))
seen = ""
while os.path.exists("/proc/" + pid):
    try:
        seen = open(log, errors="replace").read()
    except OSError:
        pass
    if " measure " in seen:
        time.sleep(0.2)
        snap(out0)
        time.sleep(secs)
        snap(out1)
        break
    time.sleep(0.05)
PY

# Interface counters of the four veth ends, as JSON lines.
if_stats() {
    local ns
    for ns in "$NS_GEN" "$NS_DUT"; do
        ip -n "$ns" -s -j link show 2>/dev/null || echo '[]'
        echo
    done
}

# run_point NAME MODE RATE
run_point() {
    local name=$1 mode=$2 rate=$3
    # shellcheck disable=SC2053 # $ONLY is a glob on purpose
    [[ $name == $ONLY ]] || return 0
    local flows pg_out=$WORK/$name.pktgen.json pg_log=$WORK/$name.pktgen.log dut_log=$WORK/$name.rvsd.log
    flows=$(count "$FLOWS")
    CMDS=$WORK/$name.cmds
    : >"$CMDS"
    local load BUSY=0 error='' dut_cmd=() rvsd_pid='' conf=''
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    wait_quiet "${RVS_KB_QUIET_WAIT:-10}"
    log "$name: $mode director, $(quote --rate "$rate")"
    topo_up "$mode"
    if [ "$mode" = rvs ]; then
        conf=$WORK/$name.rvs.toml
        local sock=$WORK/$name.sock i
        write_rvsd_config "$conf" "$sock" $((flows + flows / 4 + 65536)) "$DUT_CPU" \
            "$(bench_services udp)" "${DUT_VDEVS[@]}"
        cp "$conf" "$WORK/rvs.toml"
        dut_cmd=(ip netns exec "$NS_DUT" env RVS_LOG=warn "${NICE_CMD[@]}" "$RVSD" --config "$conf")
        "${dut_cmd[@]}" </dev/null >"$dut_log" 2>&1 &
        rvsd_pid=$!
        PIDS+=("$rvsd_pid")
        for ((i = 0; i < 300; i++)); do
            [ -S "$sock" ] && break
            pid_alive "$rvsd_pid" || break
            sleep 0.1
        done
        [ -S "$sock" ] || error="rvsd did not start: $(grep -v '^EAL' "$dut_log" | tail -n 3 | tr '\n' ' ')"
    fi
    local pg_cmd=(ip netns exec "$NS_GEN" "${NICE_CMD[@]}" "$PKTGEN" --proto udp --flows "$FLOWS" --rate "$rate"
        --warmup "$WARMUP" --duration "$DURATION" --label "$name" --ext-dev net_af_packet0 --int-dev net_af_packet1
        --link-timeout 20 -- -l "$GEN_CPU" --in-memory --no-pci
        "--vdev=net_af_packet0,iface=g-ext,framecnt=4096,qpairs=1"
        "--vdev=net_af_packet1,iface=g-int,framecnt=4096,qpairs=1")
    local pg_rc=''
    if [ -z "$error" ]; then
        if_stats >"$WORK/$name.if0.json"
        "${pg_cmd[@]}" </dev/null >"$pg_out" 2>"$pg_log" &
        local pg=$!
        PIDS+=("$pg")
        "${NICE_CMD[@]}" python3 "$WORK/sampler.py" "$pg_log" "$pg" $((DURATION - 2)) \
            "$WORK/$name.snap0.json" "$WORK/$name.snap1.json" &
        local sampler=$!
        PIDS+=("$sampler")
        local t0=$SECONDS
        while pid_alive "$pg"; do
            if ((SECONDS - t0 > 40 + WARMUP + DURATION)); then
                warn "$name: rvs-pktgen still running after $((SECONDS - t0)) s: interrupting it"
                break
            fi
            sleep 0.5
        done
        if [ "$mode" = rvs ] && pid_alive "$rvsd_pid"; then
            "$RVSADM" --socket "$WORK/$name.sock" -L -n --counters >"$WORK/$name.counters" 2>&1 || true
        fi
        stop_pid "$pg" 10
        pg_rc=$STOP_RC
        stop_pid "$sampler" 1
        if_stats >"$WORK/$name.if1.json"
        grep -q '^{' "$pg_out" 2>/dev/null ||
            error="rvs-pktgen gave no result (exit $pg_rc): $(grep -v '^EAL' "$pg_log" | tail -n 3 | tr '\n' ' ')"
    fi
    local dut_error=''
    if [ -n "$rvsd_pid" ]; then
        if pid_alive "$rvsd_pid"; then
            stop_pid "$rvsd_pid" 10
            [ "$STOP_RC" -eq 0 ] || dut_error="rvsd exit status $STOP_RC at shutdown"
        else
            stop_pid "$rvsd_pid" 1
            dut_error="rvsd exited during the run (status $STOP_RC): $(grep -v '^EAL' "$dut_log" | tail -n 3 | tr '\n' ' ')"
        fi
    fi
    topo_down
    P_MODE=$mode P_RATE=$rate P_LOAD=$load P_BUSY=$BUSY P_ERROR=$error P_DUT_ERROR=$dut_error \
        P_PG_RC=$pg_rc P_PG_CMD="$(quote "${pg_cmd[@]}")" P_DUT_CMD="$(quote "${dut_cmd[@]}")" \
        python3 - "$RECORDS" "$WORK" "$name" <<'PY'
import json, os, sys
records, work, name = sys.argv[1:]
E = os.environ
def load(path, lines=False):
    try:
        if lines:
            ls = [l for l in open(path) if l.startswith("{")]
            return json.loads(ls[-1]) if ls else None
        return json.load(open(path))
    except (OSError, ValueError):
        return None
def text(path):
    try:
        return open(path).read()
    except OSError:
        return None
r = {"point": name, "mode": E["P_MODE"], "rate": E["P_RATE"], "load": E["P_LOAD"],
     "busy_before": int(E["P_BUSY"]), "error": E["P_ERROR"], "dut_error": E["P_DUT_ERROR"],
     "pktgen_rc": E["P_PG_RC"], "pktgen_cmd": E["P_PG_CMD"], "dut_cmd": E["P_DUT_CMD"]}
r["pktgen"] = load(os.path.join(work, name + ".pktgen.json"), lines=True)
r["setup"] = text(os.path.join(work, name + ".cmds"))
r["rvsd_counters"] = text(os.path.join(work, name + ".counters"))
a, b = load(os.path.join(work, name + ".snap0.json")), load(os.path.join(work, name + ".snap1.json"))
if a and b:
    cpus = {}
    for c in sorted(b["cpu"]):
        d = [y - x for x, y in zip(a["cpu"][c], b["cpu"][c])]
        tot = sum(d) or 1
        # user nice system idle iowait irq softirq steal
        cpus[c] = {"usr": round(100.0 * (d[0] + d[1]) / tot, 1), "sys": round(100.0 * d[2] / tot, 1),
                   "softirq": round(100.0 * (d[5] + d[6]) / tot, 1),
                   "idle": round(100.0 * (d[3] + d[4]) / tot, 1), "steal": round(100.0 * d[7] / tot, 1)}
    hz = os.sysconf("SC_CLK_TCK")
    dt = b["t"] - a["t"]
    procs = {}
    for pid, (comm, t1) in b["proc"].items():
        t0 = a["proc"].get(pid, [comm, t1])[1]
        if t1 > t0:
            procs.setdefault(comm, 0)
            procs[comm] += (t1 - t0) / hz / dt * 100.0
    ours = {k: round(v, 1) for k, v in procs.items() if k in ("rvs-pktgen", "rvsd") or k.startswith("ksoftirqd")}
    other = round(sum(v for k, v in procs.items() if k not in ours), 1)
    r["cpu"] = {"sample_s": round(dt, 2), "cpus": cpus, "procs": ours, "other_procs_pct": other,
                "other_top": sorted(((round(v, 1), k) for k, v in procs.items() if k not in ours and v >= 2), reverse=True)[:4],
                "softnet_dropped": b["softnet_dropped"] - a["softnet_dropped"]}
i0, i1 = text(os.path.join(work, name + ".if0.json")), text(os.path.join(work, name + ".if1.json"))
def ifs(t):
    out = {}
    for l in (t or "").splitlines():
        l = l.strip()
        if not l:
            continue
        try:
            for e in json.loads(l):
                s = e.get("stats64", {})
                out[e["ifname"]] = {"rx": s.get("rx", {}).get("packets", 0), "rx_dropped": s.get("rx", {}).get("dropped", 0),
                                    "tx": s.get("tx", {}).get("packets", 0), "tx_dropped": s.get("tx", {}).get("dropped", 0)}
        except ValueError:
            pass
    return out
f0, f1 = ifs(i0), ifs(i1)
r["ifaces"] = {k: {c: f1[k][c] - f0.get(k, {}).get(c, 0) for c in f1[k]} for k in f1 if k != "lo"}
with open(records, "a") as f:
    f.write(json.dumps(r) + "\n")
p = r["pktgen"] or {}
if "delivered_mpps" in p:
    print("  %s: offered %.0f/s, delivered %.0f/s, loss %.3f %%, mismatches %d, cpu %s" % (
        name, p["offered_mpps"] * 1e6, p["delivered_mpps"] * 1e6, p["loss_pct"],
        p["mismatches"] + p["server_mismatches"], json.dumps(r.get("cpu", {}).get("cpus"))), file=sys.stderr)
else:
    print("  %s: FAILED: %s %s %s" % (name, p.get("error", ""), r["error"], r["dut_error"]), file=sys.stderr)
PY
}

START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$SECONDS
run_point kernel-max kernel 0
run_point kernel-rps-max kernel-rps 0
run_point rvs-max rvs 0
if [ "$(count "$RATE")" -gt 0 ]; then
    run_point "kernel-$RATE" kernel "$RATE"
    run_point "kernel-rps-$RATE" kernel-rps "$RATE"
    run_point "rvs-$RATE" rvs "$RATE"
fi
ELAPSED=$((SECONDS - T_START))
[ -s "$RECORDS" ] || die "no point ran (--only '$ONLY' matched none)"

# ---------------------------------------------------------------------------------------------
# The report.
if [ -n "${RVS_BENCH_COMMIT:-}" ]; then
    COMMIT=$RVS_BENCH_COMMIT
else
    COMMIT=$(git -C "$RVS_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$RVS_ROOT" status --porcelain 2>/dev/null)" ]; then
        COMMIT="$COMMIT (with uncommitted changes)"
    fi
fi
mkdir -p "$(dirname "$OUT")"
M_DATE=$START_DATE M_LOAD=$START_LOAD M_END_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)" \
    M_NPROC="$(nproc)" M_CPU="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
    M_KERNEL="$(uname -r)" M_DPDK="$(pkg-config --modversion libdpdk 2>/dev/null || echo unknown)" \
    M_COMMIT=$COMMIT M_COMMAND="$(quote "${ARGV[@]}")" M_FLOWS=$FLOWS M_RATE=$RATE M_WARMUP=$WARMUP \
    M_DURATION=$DURATION M_RATE_N="$(count "$RATE")" M_GEN_CPU=$GEN_CPU M_DUT_CPU=$DUT_CPU \
    M_NICE=$NICE M_ELAPSED=$ELAPSED \
    M_BINARIES="rvsd $(date -u -r "$RVSD" '+%Y-%m-%d %H:%M UTC'), rvs-pktgen $(date -u -r "$PKTGEN" '+%Y-%m-%d %H:%M UTC')" \
    PYTHONPATH="$RVS_ROOT/scripts" python3 - "$RECORDS" "$OUT" "$WORK/rvs.toml" <<'PY'
import json, os, sys
import results_section
E = os.environ
recs = [json.loads(l) for l in open(sys.argv[1])]
out, conf_path = sys.argv[2], sys.argv[3]
by = {r["point"]: r for r in recs}
gen, dut = "cpu%s" % E["M_GEN_CPU"], "cpu%s" % E["M_DUT_CPU"]
DIRECTOR = {
    "kernel": "kernel (nftables DNAT), softirq on the sender's CPU",
    "kernel-rps": "kernel (nftables DNAT), RPS to CPU %s" % E["M_DUT_CPU"],
    "rvs": "rvsd, 1 worker on lcore %s" % E["M_DUT_CPU"],
}

def pk(r):
    p = r.get("pktgen") or {}
    return p if "delivered_mpps" in p else None

def busy(c):
    return 100.0 - c["idle"]

def counters(r):
    """rvsd's counters (rvsadm -L -n --counters) as a dict."""
    out = {}
    for l in (r.get("rvsd_counters") or "").splitlines():
        f = l.split()
        if len(f) == 2 and f[1].isdigit():
            out[f[0]] = int(f[1])
    return out

def ring_drops(r):
    """Frames the kernel handed to d-ext's af_packet socket that rvsd never read (its ring was full)."""
    c, i = counters(r), (r.get("ifaces") or {}).get("d-ext")
    if "port.ext.rx_packets" not in c or not i:
        return None
    return max(0, i["rx"] - c["port.ext.rx_packets"])

def limit(r):
    """What limited this point, from loss and CPU time."""
    p = pk(r)
    if p is None:
        return "failed"
    c = (r.get("cpu") or {}).get("cpus", {})
    g, d = c.get(gen), c.get(dut)
    G, D = E["M_GEN_CPU"], E["M_DUT_CPU"]
    notes = []
    if r["rate"] != "0":
        if p["loss_pct"] < 0.1 and p["offered_mpps"] * 1e6 >= 0.97 * float(E["M_RATE_N"]):
            notes.append("takes the offered rate")
        elif p["offered_mpps"] * 1e6 < 0.97 * float(E["M_RATE_N"]):
            notes.append("generator could not offer the rate")
        else:
            notes.append("drops at this rate")
        if r["mode"] == "kernel" and g and g["softirq"] + g["sys"] > 20:
            notes.append("the kernel forwards in softirq on CPU %s (the generator's)" % G)
    elif r["mode"] == "rvs":
        if p["loss_pct"] >= 1.0:
            rd = ring_drops(r)
            notes.append("director-bound: rvsd delivered %.0f %% of what was offered%s" % (
                100.0 - p["loss_pct"], "; its af_packet RX ring dropped %s frames" % "{:,}".format(rd) if rd else ""))
            if d:
                notes.append("CPU %s: %.0f %% usr (rvsd), %.0f %% sys + softirq (af_packet transmit: veth, delivery into rvs-pktgen's ring)" % (
                    D, d["usr"], d["sys"] + d["softirq"]))
            if g and busy(g) >= 95:
                notes.append("CPU %s saturated too (rvs-pktgen; %.0f %% sys + softirq), so offered is the generator's ceiling" % (
                    G, g["sys"] + g["softirq"]))
        elif g and busy(g) >= 95:
            notes.append("generator-bound: CPU %s %.0f %% busy, no loss: rvsd took all that was offered" % (G, busy(g)))
        else:
            notes.append("no saturated CPU found")
    else:
        if d and busy(d) >= 95 and d["softirq"] >= 50:
            notes.append("director-bound: CPU %s %.0f %% in softirq (the kernel's forwarding)" % (D, d["softirq"]))
            if g and g["idle"] > 20:
                notes.append("rvs-pktgen blocks in poll() on its full af_packet TX ring (CPU %s %.0f %% idle): the kernel takes frames from it only as its socket's send buffer drains, i.e. as CPU %s forwards them; this back pressure keeps loss low" % (G, g["idle"], D))
        elif p["loss_pct"] >= 1.0:
            notes.append("director-bound: %.1f %% lost" % p["loss_pct"])
        elif g and busy(g) >= 95:
            notes.append("generator core saturated, shared: rvs-pktgen and, in softirq inside its sendto(), the kernel's forwarding (%.0f %% sys + softirq) on CPU %s; CPU %s %.0f %% idle" % (
                g["sys"] + g["softirq"], G, D, d["idle"] if d else float("nan")))
        else:
            notes.append("no saturated CPU found")
    if (r.get("cpu") or {}).get("other_procs_pct", 0) > 5:
        notes.append("other work: %.0f %% of a CPU" % r["cpu"]["other_procs_pct"])
    if r.get("busy_before", 0) > 15:
        notes.append("machine %d %% busy before" % r["busy_before"])
    return "; ".join(notes)

def cpu_cell(r, cpu):
    c = ((r.get("cpu") or {}).get("cpus") or {}).get(cpu)
    if not c:
        return "–"
    return "%.0f / %.0f / %.0f / %.0f" % (c["usr"], c["sys"], c["softirq"], c["idle"])

L = ["## Kernel baseline: kernel director vs rvsd, same generator, same veths (kernel-bench)", ""]
L.append("Written by `scripts/kernel-bench.sh` between the kernel-bench markers; do not edit by hand, run the script again.")
L.append("")
L.append("| | |")
L.append("| --- | --- |")
L.append("| date (UTC) | %s |" % E["M_DATE"])
L.append("| machine | nproc %s, %s, kernel %s |" % (E["M_NPROC"], E["M_CPU"], E["M_KERNEL"]))
L.append("| DPDK | %s (Debian packages), net_af_packet (framecnt=4096, qpairs=1) on every veth end |" % E["M_DPDK"])
L.append("| rvs commit | %s |" % E["M_COMMIT"])
L.append("| binaries built | %s |" % E["M_BINARIES"])
L.append("| command | `%s` (%s s in all) |" % (E["M_COMMAND"], E["M_ELAPSED"]))
L.append("| load average | %s at start, %s at the end (a shared machine: other work skews every figure) |" % (E["M_LOAD"], E["M_END_LOAD"]))
L.append("| traffic | UDP, %s flows (client 198.51.100.10, ports 1024..), 64-byte frames, to VIP 198.51.100.1:9000, round robin over 4 real servers 192.0.2.2-5:9000; warm-up %s s, %s s measured per point |" % (E["M_FLOWS"], E["M_WARMUP"], E["M_DURATION"]))
L.append("| CPUs | rvs-pktgen: EAL `-l %s` (CPU %s). rvsd: EAL `-l %s`, worker lcore %s (CPU %s), busy-polling. kernel: softirq on CPU %s (where rvs-pktgen's sendto() runs) or, with RPS, on CPU %s. Niceness of rvs-pktgen and rvsd %s |" % (
    E["M_GEN_CPU"], E["M_GEN_CPU"], E["M_DUT_CPU"], E["M_DUT_CPU"], E["M_DUT_CPU"], E["M_GEN_CPU"], E["M_DUT_CPU"], E["M_NICE"]))
L.append("")
L.append("Topology (rebuilt for each point): namespace `rvs-kb-gen` holds rvs-pktgen's two veth ends `g-ext` and "
         "`g-int`; namespace `rvs-kb-dut` their peers `d-ext` (198.51.100.1/24, the VIP) and `d-int` (192.0.2.1/24, "
         "the DIP). rvs-pktgen plays the clients on g-ext and the real servers on g-int (it reflects what arrives there "
         "5-tuple-swapped and answers ARP), and checks every reply. Directors: **kernel** = ip_forward=1, rp_filter 0, "
         "nftables `dnat to numgen inc mod 4 map {...}`, conntrack de-NATs the replies; **kernel-rps** = the same with "
         "RPS (`rps_cpus`) on d-ext and d-int steering the forwarding to CPU %s, so the kernel, like rvsd, works on a "
         "core of its own; **rvs** = rvsd on net_af_packet d-ext/d-int, `-A -u 198.51.100.1:9000 -s rr` and the 4 "
         "real servers `-m`. Offloads off on every veth end. Where only a DPDK process should see the frames "
         "(g-ext/g-int; d-ext/d-int under rvsd) an nftables netdev ingress chain drops them after af_packet took its "
         "copy." % E["M_DUT_CPU"])
L.append("")
L.append("How veth works here, stated plainly: a frame sent on a veth is received by its peer in softirq on the "
         "sending CPU, inside the sender's sendto(). Without RPS the kernel director's whole forwarding path (both "
         "directions: rvs-pktgen sends the client frames and the servers' replies) runs on CPU %s, rvs-pktgen's core, "
         "so generator and kernel director share one core and CPU %s stays idle: that point measures the two "
         "together. With RPS, CPU %s only queues each frame to CPU %s's backlog, and CPU %s forwards it (ksoftirqd) and "
         "delivers it into rvs-pktgen's receiving ring. rvsd busy-polls CPU %s; the copy of a frame into the "
         "receiving af_packet ring is paid by the sender's CPU, so rvs-pktgen's core pays for frames to rvsd and "
         "rvsd's core, inside its sendto(), for frames back to rvs-pktgen (as the kernel's core does with RPS)." % (
             E["M_GEN_CPU"], E["M_DUT_CPU"], E["M_GEN_CPU"], E["M_DUT_CPU"], E["M_DUT_CPU"], E["M_DUT_CPU"]))
L.append("")
L.append("Round trips/s: replies that reached the client side, checked, per second of the measurement (a client "
         "frame to the VIP, DNAT, the real server's reflected reply, de-NAT, back to the client); the director "
         "forwards 2 frames per round trip. Offered: client frames/s sent. Loss: frames sent during the measurement "
         "whose reply never came. At `--rate 0` rvs-pktgen sends as fast as its core can: what rvsd does not read "
         "in time overflows its af_packet RX ring and is lost (offered - delivered), while the kernel director "
         "slows the sender down instead (without RPS it forwards on the sender's own CPU; with RPS frames waiting "
         "in CPU %s's backlog fill rvs-pktgen's socket send buffer, and rvs-pktgen blocks on its full TX ring). CPU columns: usr / sys / "
         "softirq / idle %% of each CPU, sampled over the middle of the measurement." % E["M_DUT_CPU"])
L.append("")
L.append("| point | director | offered frames/s | delivered round trips/s | loss %% | latency us p50 / p99 | mismatches | CPU %s (gen) usr/sys/si/idle | CPU %s (DUT) usr/sys/si/idle | limit |" % (E["M_GEN_CPU"], E["M_DUT_CPU"]))
L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
failures = []
for r in recs:
    p = pk(r)
    if p is None:
        why = ((r.get("pktgen") or {}).get("error") or r.get("error") or "no result") + ((" " + r["dut_error"]) if r.get("dut_error") else "")
        failures.append("%s: %s" % (r["point"], why))
        L.append("| %s | %s | FAILED | | | | | | | %s |" % (r["point"], DIRECTOR[r["mode"]], why.replace("|", "/")))
        continue
    if r.get("dut_error"):
        failures.append("%s (figures kept): %s" % (r["point"], r["dut_error"]))
    l = p["latency_us"]
    L.append("| %s | %s | %s | **%s** | %.3f | %.0f / %.0f | %d | %s | %s | %s |" % (
        r["point"], DIRECTOR[r["mode"]], "{:,.0f}".format(p["offered_mpps"] * 1e6),
        "{:,.0f}".format(p["delivered_mpps"] * 1e6), p["loss_pct"], l["p50"], l["p99"],
        p["mismatches"] + p["server_mismatches"], cpu_cell(r, gen), cpu_cell(r, dut), limit(r)))
L.append("")

def dl(name):
    r = by.get(name)
    p = pk(r) if r else None
    return p["delivered_mpps"] * 1e6 if p else None
rv, k, kr = dl("rvs-max"), dl("kernel-max"), dl("kernel-rps-max")
if rv and k:
    L.append("**rvs / kernel delivered round trips/s, each as fast as it takes them: %.2f** (%s vs %s; the kernel "
             "as veth runs it by default, forwarding in softirq on the generator's core, CPU %s, while CPU %s "
             "idles)." % (rv / k, "{:,.0f}".format(rv), "{:,.0f}".format(k), E["M_GEN_CPU"], E["M_DUT_CPU"]))
if rv and kr:
    L.append("")
    L.append("**rvs / kernel with RPS: %.2f** (%s vs %s; each director forwarding on CPU %s, a core of its own, "
             "the like-for-like comparison)." % (rv / kr, "{:,.0f}".format(rv), "{:,.0f}".format(kr), E["M_DUT_CPU"]))
L.append("")

# What limits the figures, from the measurements.
L.append("### What limits these figures")
L.append("")
notes = []
for name in ("kernel-max", "kernel-rps-max", "rvs-max"):
    r = by.get(name)
    if r and pk(r):
        notes.append("%s: %s." % (name, limit(r)))
for r in recs:
    p = pk(r)
    if not p:
        continue
    ps = p.get("port_stats", {})
    ifc = r.get("ifaces") or {}
    t = p.get("total", {})
    extra = []
    # Where frames went missing over the whole point (warm-up and drain included), from
    # rvs-pktgen's port counters and the veth ends' counters (a few ARP frames blur these).
    def n(x):
        return "{:,}".format(x)
    if all(k in ifc for k in ("g-ext", "g-int", "d-ext", "d-int")) and "ext" in ps and "int" in ps:
        gen_tx = max(0, ps["ext"]["opackets"] - ifc["g-ext"]["tx"]) + max(0, ps["int"]["opackets"] - ifc["g-int"]["tx"])
        fwd = max(0, ifc["d-ext"]["rx"] - ifc["d-int"]["tx"])
        rev = max(0, ifc["d-int"]["rx"] - ifc["d-ext"]["tx"])
        missed = sum((ps.get(x) or {}).get("imissed", 0) for x in ("ext", "int"))
        if gen_tx > 20:
            extra.append("%s frames counted as sent by rvs-pktgen never reached the veth: the af_packet PMD counts a "
                         "frame sent once it is in its TX ring and kicks the kernel with a non-blocking sendto(), which "
                         "stops early while the socket's send buffer is full; what is still in the ring when "
                         "rvs-pktgen stops sending is never transmitted (about one ring per port, as many in 3 s "
                         "as in 8 s runs). An artifact of the run's end, counted in the loss column" % n(gen_tx))
            if fwd <= 20 and rev <= 20:
                extra.append("the director itself lost nothing (d-ext rx = d-int tx, d-int rx = d-ext tx)")
        if fwd > 20:
            rd = ring_drops(r) if r["mode"] == "rvs" else None
            extra.append("the director forwarded %s fewer client frames than reached d-ext%s" % (
                n(fwd), " (%s of them dropped by its af_packet RX ring)" % n(rd) if rd else ""))
        if rev > 20:
            extra.append("the director forwarded %s fewer replies than reached d-int" % n(rev))
        if missed:
            extra.append("rvs-pktgen's receive rings dropped %s (imissed)" % n(missed))
    if t.get("server_tx_drop"):
        extra.append("%s reflected frames not taken by g-int" % n(t["server_tx_drop"]))
    if t.get("mbuf_alloc_fail"):
        extra.append("%s mbuf allocation failures" % n(t["mbuf_alloc_fail"]))
    sd = (r.get("cpu") or {}).get("softnet_dropped")
    if sd:
        extra.append("%s frames dropped by the kernel's backlog queues (softnet_stat, during the CPU sample)" % n(sd))
    if extra:
        notes.append("%s: %s." % (r["point"], "; ".join(extra)))
for n in notes:
    L.append("- " + n)
L.append("- The transport is af_packet over veth for both directors: every frame is copied into and out of a "
         "kernel ring and moved by a sendto() per burst, at a few hundred thousand frames/s per core. These are "
         "not rvsd's figures over memif or a NIC (see the traffic benchmark), only a comparison with the kernel "
         "over the same veths.")
L.append("- rvs-pktgen does three frames' work per round trip (build, reflect, check) plus the kernel's transmit "
         "path for two frames on its one core, so at `--rate 0` its offered rate is itself a ceiling; a point "
         "whose loss is ~0 and whose generator CPU is ~100 % busy measured the generator, not the director.")
if failures:
    L.append("")
    L.append("Failures:")
    L.append("")
    for f in failures:
        L.append("- " + f)
L.append("")
L.append("### Commands")
L.append("")
L.append("Each point: its namespaces and veths are built (below), rvsd started when it is the director (and "
         "its control socket awaited), then rvs-pktgen, which ends by itself; rvsd is stopped with SIGTERM, "
         "the namespaces deleted.")
L.append("")
setups = {}
for r in recs:
    if r["mode"] not in setups and r.get("setup"):
        setups[r["mode"]] = r["setup"].rstrip().splitlines()
for mode, lines in setups.items():
    if mode == "kernel-rps" and "kernel" in setups:
        # Built the same way, plus RPS.
        L.append("Setup for kernel-rps: as for kernel, then:")
        lines = [l for l in lines if l not in setups["kernel"]]
    else:
        L.append("Setup for %s:" % mode)
    L.append("")
    L.append("```sh")
    L.extend(lines)
    L.append("```")
    L.append("")
for r in recs:
    L.append("- %s:" % r["point"])
    if r.get("dut_cmd"):
        L.append("  - rvsd: `%s`" % r["dut_cmd"])
    L.append("  - rvs-pktgen: `%s`" % r["pktgen_cmd"])
L.append("")
try:
    conf = open(conf_path).read()
    L.append("rvsd's configuration:")
    L.append("")
    L.append("```toml")
    L.append(conf.rstrip())
    L.append("```")
    L.append("")
except OSError:
    pass
for r in recs:
    c = counters(r)
    if c:
        L.append("rvsd's counters (`rvsadm -L -n --counters`, the non-zero ones) at the end of %s: %s." % (
            r["point"], ", ".join("%s %s" % (k, "{:,}".format(v)) for k, v in c.items() if v)))
        L.append("")
L.append("### Raw results")
L.append("")
L.append("Per point: rvs-pktgen's JSON line, the CPU sample (per-CPU %, our processes' and ksoftirqd's % of a CPU, "
         "other processes' total) and the veth ends' packet counters over the whole point.")
L.append("")
L.append("```")
for r in recs:
    L.append(json.dumps({k: r.get(k) for k in ("point", "mode", "rate", "load", "busy_before", "error", "dut_error",
                                                "cpu", "ifaces", "pktgen")}, separators=(",", ":")))
L.append("```")
results_section.write(out, "kernel-bench", L)
last = next((i for i, l in enumerate(L) if l == "### Commands"), len(L))
print("\n".join(L[:last]))
PY
log "results written to $OUT (between its kernel-bench markers)"
