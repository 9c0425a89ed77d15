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
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"

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
    --rate) RATE=$2 OPT_WORDS=2 ;;
    *) bench_option "$@" ;;
    esac
    shift "$OPT_WORDS"
done
case $DURATION in '' | *[!0-9]*) die "--duration must be whole seconds" ;; esac
[ "$DURATION" -ge 3 ] || die "--duration must be >= 3 (CPU time is sampled over duration - 2 s)"
case $RATE in '' | *[!0-9KkMm]*) die "--rate must be a count (100K, 250000, 0)" ;; esac

need_root
need_tools ip ethtool nft python3
need_hugepages

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

bench_nice
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
bench_work "$WORK"

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
        [ -S "$sock" ] || error="rvsd did not start: $(grep -v 'EAL:' "$dut_log" | tail -n 3 | tr '\n' ' ')"
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
        # The CPU sample (python3 at rvs-pktgen's niceness, or it would get no CPU time while
        # two processes busy-poll both CPUs), DURATION - 2 s inside the measurement.
        "${NICE_CMD[@]}" python3 "$RVS_LIB/kernel_bench.py" sample "$pg_log" "$pg" $((DURATION - 2)) \
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
            dut_error="rvsd exited during the run (status $STOP_RC): $(grep -v 'EAL:' "$dut_log" | tail -n 3 | tr '\n' ' ')"
        fi
    fi
    topo_down
    python3 "$RVS_LIB/kernel_bench.py" record "$RECORDS" "$WORK" "$name" mode="$mode" rate="$rate" \
        load="$load" busy_before="$BUSY" error="$error" dut_error="$dut_error" pktgen_rc="$pg_rc" \
        pktgen_cmd="$(quote "${pg_cmd[@]}")" dut_cmd="$(quote "${dut_cmd[@]}")"
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
mkdir -p "$(dirname "$OUT")"
python3 "$RVS_LIB/kernel_bench.py" report "$RECORDS" "$OUT" "$WORK/rvs.toml" \
    date="$START_DATE" load="$START_LOAD" end_load="$(cut -d' ' -f1-3 /proc/loadavg)" \
    nproc="$(nproc)" cpu="$(cpu_model)" kernel="$(uname -r)" dpdk="$(dpdk_version)" \
    commit="$(bench_commit)" command="$(quote "${ARGV[@]}")" flows="$FLOWS" warmup="$WARMUP" \
    duration="$DURATION" rate_n="$(count "$RATE")" gen_cpu="$GEN_CPU" dut_cpu="$DUT_CPU" \
    nice="$NICE" elapsed="$ELAPSED" \
    binaries="rvsd $(date -u -r "$RVSD" '+%Y-%m-%d %H:%M UTC'), rvs-pktgen $(date -u -r "$PKTGEN" '+%Y-%m-%d %H:%M UTC')"
log "results written to $OUT (between its kernel-bench markers)"
