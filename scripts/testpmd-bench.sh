#!/usr/bin/env bash
# Stock dpdk-testpmd drives rvsd: one testpmd plays the client, a second one (--forward-mode=5tswap)
# the real servers, over two memif links to rvsd's ext and int ports; then the same two testpmds
# joined directly over one memif link (the transport's ceiling). The DUTs alternate (rvsd, direct,
# rvsd, direct...); it reports delivered Mpps (frames back at the client testpmd per second), loss,
# and the median ratio rvsd / direct with its spread, in its section of benches/RESULTS.md.
#
#   scripts/testpmd-bench.sh [--pairs N] [--warmup S] [--duration S] [--inflight N]
#                            [--out FILE] [--no-build]
#
#   --pairs N      rvsd/direct pairs (default 5, at least 3)
#   --warmup S     seconds before the measurement (default 2)
#   --duration S   seconds measured per point (default 5)
#   --inflight N   frames the client keeps in flight (testpmd --burst, default 256, 512 at most)
#   --out FILE     where the results go (default benches/RESULTS.md; only the part between
#                  <!-- testpmd-bench:begin --> and <!-- testpmd-bench:end --> is replaced)
#   --no-build     use target/release/rvsd and rvsctl as they are
#
# The client testpmd runs interactively (commands through a fifo): once its link is up it is
# seeded with `start tx_first` (one burst of --inflight frames of one UDP flow, 198.51.100.10:1024
# -> VIP 198.51.100.1:9000, 64 bytes) and forwards in 5tswap mode, so every reply it receives
# goes out again as the flow's next request: a closed loop whose rate is what the slowest stage
# takes. `show port stats 0` after the warm-up and after the measurement gives the delivered
# rate (testpmd's own Rx-pps between the two) and what was sent and received in that window;
# `stop` then `quit` ends it (over memif, quitting without stop may crash the peer).
# (--txonly-multi-flow is not used: DPDK 22.11 varies the source address outside the client's
# /24 with it. txonly alone never reads its receive queue.) rvsd decrements the TTL each way and
# 5tswap never restores it, so through rvsd the loop dies after about 31 round trips: such a
# point is reported as failed with rvsd's counters (drop.ttl_expired); see benches/README.md.
#
# rvsd: ext 198.51.100.1/24 (MAC 02:00:00:00:00:01), int 192.0.2.1/24, the UDP service
# 198.51.100.1:9000 round robin over 192.0.2.2 and 192.0.2.3, both static [[neighbours]] at the
# reflecting testpmd's MAC (it answers no ARP); the client's MAC is learnt from its traffic.
# The testpmds are memif servers, rvsd (or, direct, the reflector) the client. CPUs: client
# testpmd on CPU 1, reflector on CPU 0, rvsd on CPU 0 (two cores: see the report's note).
#
# Environment: RVS_BENCH_WORK (work folder, default /tmp/rvs-testpmd-bench.PID, removed at the
# end unless given), RVS_BENCH_COMMIT (the commit to report for a tree without .git).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"

PAIRS=5
WARMUP=2
DURATION=5
INFLIGHT=256
OUT=$RVS_ROOT/benches/RESULTS.md
BUILD=1
ARGV=("$0" "$@")
while [ $# -gt 0 ]; do
    case $1 in
    --pairs) PAIRS=$2 OPT_WORDS=2 ;;
    --inflight) INFLIGHT=$2 OPT_WORDS=2 ;;
    --flows | --only) die "unknown argument: $1 (see --help)" ;;
    *) bench_option "$@" ;;
    esac
    shift "$OPT_WORDS"
done
if ! [[ $PAIRS =~ ^[0-9]+$ ]] || ((PAIRS < 3)); then die "--pairs must be 3 or more"; fi
if ! [[ $INFLIGHT =~ ^[0-9]+$ ]] || ((INFLIGHT < 1 || INFLIGHT > 512)); then die "--inflight must be 1..512"; fi
if ! [[ $WARMUP =~ ^[0-9]+$ && $DURATION =~ ^[1-9][0-9]*$ ]]; then
    die "--warmup and --duration are whole seconds (--duration 1 or more)"
fi

need_root
need_tools python3 mkfifo stdbuf
need_hugepages
TESTPMD=$(command -v dpdk-testpmd || true)
[ -n "$TESTPMD" ] || die "dpdk-testpmd missing (Debian: apt-get install dpdk-dev)"

RVSD=$RVS_ROOT/target/release/rvsd
RVSCTL=$RVS_ROOT/target/release/rvsctl
if [ -n "$BUILD" ]; then
    log "building rvsd and rvsctl (release)"
    run_cargo build --release -p rvsd --bin rvsd -p control --bin rvsctl >&2 || die "cargo build failed"
fi
if ! [ -x "$RVSD" ] || ! [ -x "$RVSCTL" ]; then
    die "$RVSD or $RVSCTL missing (build them or drop --no-build)"
fi

WORK=${RVS_BENCH_WORK:-/tmp/rvs-testpmd-bench.$$}
case $WORK in /tmp/?*) ;; *) die "RVS_BENCH_WORK must be a folder under /tmp (it is emptied)" ;; esac
bench_work "$WORK"
GEN_FD=

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local p left=("${PIDS[@]}")
    [ -z "$GEN_FD" ] || exec 3>&-
    # The memif clients (rvsd, a direct reflector) were started last: stopped first.
    for ((p = ${#left[@]} - 1; p >= 0; p--)); do
        stop_pid "${left[p]}" 3
    done
    rm -f "$WORK"/*.sock "$WORK"/*.cmd
    [ -n "${RVS_BENCH_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

EXT_SOCK=$WORK/ext.sock
INT_SOCK=$WORK/int.sock
RVS_EXT_MAC=02:00:00:00:00:01
GEN_MAC=02:00:00:00:01:01
REFL_MAC=02:00:00:00:01:02
TP_OPTS=(--nb-cores=1 --txpkts=64 --total-num-mbufs=8192)

# gen_send CMD: a command to the interactive client testpmd.
gen_send() {
    printf '%s\n' "$1" >&3
}

# gen_wait PATTERN SECS: wait until the client testpmd's log matches PATTERN (grep -E).
gen_wait() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        grep -qE "$1" "$GEN_LOG" 2>/dev/null && return 0
        pid_alive "$GEN_PID" || return 1
        sleep 0.1
    done
    return 1
}

# run_point PAIR DUT (rvsd | direct): one measurement with fresh processes; appends a record.
run_point() {
    local pair=$1 dut=$2 tag="$2-$1" err='' load
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    GEN_LOG=$WORK/$tag.gen.log
    local refl_log=$WORK/$tag.reflector.log dut_log=$WORK/$tag.rvsd.log fifo=$WORK/$tag.cmd
    rm -f "$EXT_SOCK" "$INT_SOCK" "$fifo"
    mkfifo "$fifo"
    exec 3<>"$fifo"
    GEN_FD=3

    # The client: memif server on ext.sock; its peer is rvsd's ext port, or the reflector.
    local peer_mac=$RVS_EXT_MAC refl_role=server refl_sock=$INT_SOCK
    if [ "$dut" = direct ]; then
        peer_mac=$REFL_MAC refl_role=client refl_sock=$EXT_SOCK
    fi
    local gen_cmd=("$TESTPMD" "--lcores=0@1,1@1" --in-memory --no-pci
        "--vdev=net_memif0,role=server,socket=$EXT_SOCK,socket-abstract=no,id=0,mac=$GEN_MAC" --
        -i --forward-mode=5tswap --burst="$INFLIGHT" "--tx-ip=198.51.100.10,198.51.100.1"
        "--tx-udp=1024,9000" "--eth-peer=0,$peer_mac" "${TP_OPTS[@]}")
    local refl_cmd=("$TESTPMD" "--lcores=0@0,1@0" --in-memory --no-pci
        "--vdev=net_memif0,role=$refl_role,socket=$refl_sock,socket-abstract=no,id=0,mac=$REFL_MAC" --
        --forward-mode=5tswap --auto-start --stats-period 1 "${TP_OPTS[@]}")
    local rvsd_cmd=()

    # Line-buffered: the script waits for what it prints (stdout to a file is block-buffered).
    stdbuf -oL "${gen_cmd[@]}" <"$fifo" >"$GEN_LOG" 2>&1 &
    GEN_PID=$!
    PIDS+=("$GEN_PID")
    local i
    for ((i = 0; i < 200; i++)); do
        [ -S "$EXT_SOCK" ] && break
        pid_alive "$GEN_PID" || break
        sleep 0.1
    done
    [ -S "$EXT_SOCK" ] || err="the client testpmd did not create $EXT_SOCK"

    local refl_pid='' rvsd_pid=''
    if [ -z "$err" ]; then
        stdbuf -oL "${refl_cmd[@]}" </dev/null >"$refl_log" 2>&1 &
        refl_pid=$!
        PIDS+=("$refl_pid")
        if [ "$dut" = rvsd ]; then
            for ((i = 0; i < 200; i++)); do
                [ -S "$INT_SOCK" ] && break
                pid_alive "$refl_pid" || break
                sleep 0.1
            done
            if [ -S "$INT_SOCK" ]; then
                local conf=$WORK/$tag.rvs.toml services
                services="-A -u 198.51.100.1:9000 -s rr"$'\n'"-a -u 198.51.100.1:9000 -r 192.0.2.2:9000 -m -w 1"
                services+=$'\n'"-a -u 198.51.100.1:9000 -r 192.0.2.3:9000 -m -w 1"
                write_rvsd_config "$conf" "$WORK/rvs.sock" 65536 0 "$services" \
                    "--vdev=net_memif0,role=client,socket=$EXT_SOCK,socket-abstract=no,id=0,mac=$RVS_EXT_MAC" \
                    "--vdev=net_memif1,role=client,socket=$INT_SOCK,socket-abstract=no,id=0,mac=02:00:00:00:00:02"
                printf '\n[[neighbours]]\naddress = "192.0.2.%s"\nmac = "%s"\nport = "int"\n' 2 "$REFL_MAC" 3 "$REFL_MAC" >>"$conf"
                rvsd_cmd=(env RVS_LOG=warn "$RVSD" --config "$conf")
                "${rvsd_cmd[@]}" </dev/null >"$dut_log" 2>&1 &
                rvsd_pid=$!
                PIDS+=("$rvsd_pid")
            else
                err="the reflecting testpmd did not create $INT_SOCK"
            fi
        fi
    fi

    # Link up on the client's port, then seed the loop, warm up and measure.
    if [ -z "$err" ]; then
        local up=
        for ((i = 0; i < 60; i++)); do
            gen_send "show port info 0"
            if gen_wait 'Link status: up' 1; then
                up=1
                break
            fi
            pid_alive "$GEN_PID" || break
        done
        [ -n "$up" ] || err="the client testpmd's memif link did not come up"
    fi
    if [ -z "$err" ]; then
        gen_send "start tx_first"
        sleep "$WARMUP"
        gen_send "show port stats 0"
        sleep "$DURATION"
        gen_send "show port stats 0"
        sleep 0.5
        gen_send "stop"
        gen_wait 'Accumulated forward statistics' 10 || err="the client testpmd did not stop"
    fi
    if [ "$dut" = rvsd ] && [ -n "$rvsd_pid" ]; then
        "$RVSCTL" --socket "$WORK/rvs.sock" counters >"$WORK/$tag.counters" 2>&1 || true
        "$RVSCTL" --socket "$WORK/rvs.sock" neigh >>"$WORK/$tag.counters" 2>&1 || true
        pid_alive "$rvsd_pid" || err=${err:-"rvsd exited during the run: $(tail -n 3 "$dut_log" | tr '\n' ' ')"}
    fi
    [ -z "$refl_pid" ] || pid_alive "$refl_pid" || err=${err:-"the reflecting testpmd exited during the run"}
    gen_send "quit"
    exec 3>&-
    GEN_FD=
    for ((i = 0; i < 50; i++)); do
        pid_alive "$GEN_PID" || break
        sleep 0.1
    done
    stop_pid "$GEN_PID" 5
    [ -z "$rvsd_pid" ] || stop_pid "$rvsd_pid" 10
    if [ -n "$rvsd_pid" ] && [ "$STOP_RC" -ne 0 ]; then
        err=${err:-"rvsd exit status $STOP_RC at shutdown"}
    fi
    [ -z "$refl_pid" ] || stop_pid "$refl_pid" 10
    rm -f "$fifo" "$EXT_SOCK" "$INT_SOCK"

    local figures='{}'
    if [ -z "$err" ]; then
        figures=$(python3 "$RVS_LIB/testpmd_bench.py" point "$GEN_LOG" "$refl_log" "$WORK/$tag.counters")
    fi
    python3 "$RVS_LIB/testpmd_bench.py" record "$RECORDS" json="$figures" pair="$pair" dut="$dut" \
        load="$load" ${err:+error="$err"} gen_cmd="$(quote "${gen_cmd[@]}")" \
        reflector_cmd="$(quote "${refl_cmd[@]}")" rvsd_cmd="$(quote "${rvsd_cmd[@]}")"
    log "$tag: $(tail -n 1 "$RECORDS" | cut -c1-200)"
    if [ "$dut" = rvsd ] && [ -f "$WORK/$tag.counters" ]; then
        cp "$WORK/$tag.counters" "$WORK/last-rvsd.counters"
    fi
}

START_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
for ((p = 1; p <= PAIRS; p++)); do
    run_point "$p" rvsd
    run_point "$p" direct
done

[ ! -f "$WORK/last-rvsd.counters" ] || { log "rvsctl counters after the last rvsd point:"; cat "$WORK/last-rvsd.counters" >&2; }
mkdir -p "$(dirname "$OUT")"
NOTE="Shared, loaded $(nproc)-core VM: the two testpmds and rvsd share $(nproc) cores (rvsd and the reflector time-slice CPU 0), so this is a functional check more than a speed figure."
RC=0
python3 "$RVS_LIB/testpmd_bench.py" report "$RECORDS" "$OUT" \
    date="$START_DATE" nproc="$(nproc)" cpu="$(cpu_model)" kernel="$(uname -r)" dpdk="$(dpdk_version)" \
    commit="$(bench_commit)" command="$(quote "${ARGV[@]}")" load="$START_LOAD" warmup="$WARMUP" \
    duration="$DURATION" inflight="$INFLIGHT" note="$NOTE" \
    cpus="client testpmd CPU 1 (--lcores=0@1,1@1), reflector CPU 0 (--lcores=0@0,1@0), rvsd lcore 0" >&2 || RC=$?
log "results written to $OUT (between its testpmd-bench markers)"
[ "$RC" -eq 0 ] || log "a point failed (see above)"
exit "$RC"
