#!/usr/bin/env bash
# Stock dpdk-testpmd drives rvsd: one testpmd plays the client (--forward-mode=txonly, an open
# stream), a second one (--forward-mode=5tswap) the real servers, and a third (rxonly) counts the
# replies, over three memif links to rvsd's ports ext, int and ret; then the same testpmds joined
# directly (the reflector takes the client's link and sends to the counter's: the transport's
# ceiling). The DUTs alternate (rvsd, direct, rvsd, direct...); it reports offered and
# delivered Mpps, loss, and the median ratio rvsd / direct of delivered Mpps with its spread, in
# its section of benches/RESULTS.md.
#
#   scripts/testpmd-bench.sh [--pairs N] [--warmup S] [--duration S] [--burst N]
#                            [--out FILE] [--no-build]
#
#   --pairs N      rvsd/direct pairs (default 5, at least 3)
#   --warmup S     seconds before the measurement (default 2)
#   --duration S   seconds measured per point (default 5)
#   --burst N      frames per txonly burst (testpmd --burst, default 32, 512 at most)
#   --out FILE     where the results go (default benches/RESULTS.md; only the part between
#                  <!-- testpmd-bench:begin --> and <!-- testpmd-bench:end --> is replaced)
#   --no-build     use target/release/rvsd and rvsctl as they are
#
# Why three testpmds: over memif the client must poll its receive ring to see the replies, and
# stock testpmd 22.11 has no mode that both sends an open stream to chosen addresses and polls:
# txonly (--tx-ip, --tx-udp, --eth-peer) never reads its receive queue (and a ring nobody reads
# fills, then refuses every reply); flowgen reads, but hard-codes its addresses (10.254.0.0 ->
# 10.253.0.x, fixed MACs; --tx-ip does not apply), outside the documentation ranges;
# --txonly-multi-flow varies the source's third byte out of any /24; a 5tswap loop seeded by
# `start tx_first` dies through rvsd after about 31 round trips (rvsd decrements the TTL each way,
# as a router must, and nothing restores it). So the client (203.0.113.10, one UDP flow to the
# VIP 198.51.100.1:9000, 64-byte frames) sends on ext, and rvsd routes the replies to it out of
# its third port ret (203.0.113.1/24, the client a static [[neighbours]] entry at the counting
# testpmd's MAC), where the counting testpmd polls. Both clients run interactively (commands
# through a fifo each): once their links are up, `start` on the counter then the client; after
# the warm-up and after the measurement `show port stats 0` to both at once: offered is the
# client's Tx-pps between its two shows, delivered the counter's Rx-pps between its two (testpmd
# times both itself), the window's loss what was sent less what came back; then `stop` (the
# client first, the counter half a second later), `quit`.
#
# rvsd: ext 198.51.100.1/24 (MAC 02:00:00:00:00:01), int 192.0.2.1/24, ret 203.0.113.1/24, the
# UDP service 198.51.100.1:9000 round robin over 192.0.2.2 and 192.0.2.3, both static
# [[neighbours]] at the reflecting testpmd's MAC (it answers no ARP). The client testpmds are
# memif servers, rvsd (or, direct, the reflector) the memif client. CPUs: both client testpmds on
# CPU 1, reflector and rvsd on CPU 0 (two cores: see the report's note).
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
BURST=32
OUT=$RVS_ROOT/benches/RESULTS.md
BUILD=1
ARGV=("$0" "$@")
while [ $# -gt 0 ]; do
    case $1 in
    --pairs) PAIRS=$2 OPT_WORDS=2 ;;
    --burst) BURST=$2 OPT_WORDS=2 ;;
    --flows | --only) die "unknown argument: $1 (see --help)" ;;
    *) bench_option "$@" ;;
    esac
    shift "$OPT_WORDS"
done
if ! [[ $PAIRS =~ ^[0-9]+$ ]] || ((PAIRS < 3)); then die "--pairs must be 3 or more"; fi
if ! [[ $BURST =~ ^[0-9]+$ ]] || ((BURST < 1 || BURST > 512)); then die "--burst must be 1..512"; fi
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
FIFOS_OPEN=

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local p left=("${PIDS[@]}")
    [ -z "$FIFOS_OPEN" ] || exec 3>&- 4>&-
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
RET_SOCK=$WORK/ret.sock
RVS_EXT_MAC=02:00:00:00:00:01
GEN_MAC=02:00:00:00:01:01
REFL_MAC=02:00:00:00:01:02
CNT_MAC=02:00:00:00:01:03
CLIENT_IP=203.0.113.10
TP_OPTS=(--nb-cores=1 --txpkts=64 --total-num-mbufs=8192)
# The memif clients (rvsd, a direct reflector) set the rings' size: 16384 slots (memif's most),
# so a ring holds the frames of a few milliseconds while its reader waits for its time slice.
RING=rsize=14

# tp_send FD CMD: a command to an interactive testpmd (FD 3: the client, 4: the counter).
tp_send() {
    printf '%s\n' "$2" >&"$1"
}

# poll_alive PID SECS CMD...: run CMD every 0.1 s until it succeeds (0), PID ends or SECS
# seconds pass (1).
poll_alive() {
    local pid=$1 secs=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" && return 0
        pid_alive "$pid" || return 1
        sleep 0.1
    done
    return 1
}

# tp_wait LOG PID PATTERN SECS: wait until an interactive testpmd's LOG matches PATTERN (grep -E).
tp_wait() {
    poll_alive "$2" "$4" grep -qsE "$3" "$1"
}

# wait_sock SOCK PID: wait up to 20 s for the memif server PID to create SOCK.
wait_sock() {
    poll_alive "$2" 20 test -S "$1"
}

# link_up FD LOG PID: ask an interactive testpmd for its port 0 until the link is up (60 s).
link_up() {
    local i
    for ((i = 0; i < 60; i++)); do
        tp_send "$1" "show port info 0"
        tp_wait "$2" "$3" 'Link status: up' 1 && return 0
        pid_alive "$3" || return 1
    done
    return 1
}

# run_point PAIR DUT (rvsd | direct): one measurement with fresh processes; appends a record.
run_point() {
    local pair=$1 dut=$2 tag="$2-$1" err='' load i
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    local gen_log=$WORK/$tag.gen.log cnt_log=$WORK/$tag.counter.log refl_log=$WORK/$tag.reflector.log
    local dut_log=$WORK/$tag.rvsd.log gen_fifo=$WORK/$tag.gen.cmd cnt_fifo=$WORK/$tag.counter.cmd
    rm -f "$EXT_SOCK" "$INT_SOCK" "$RET_SOCK" "$gen_fifo" "$cnt_fifo"
    mkfifo "$gen_fifo" "$cnt_fifo"
    exec 3<>"$gen_fifo" 4<>"$cnt_fifo"
    FIFOS_OPEN=1

    # The client: memif server on ext.sock, an open stream to its peer (rvsd's ext port, or the
    # reflector); the counter: memif server on ret.sock, counts what arrives.
    local peer_mac=$RVS_EXT_MAC
    [ "$dut" = rvsd ] || peer_mac=$REFL_MAC
    local gen_cmd=("$TESTPMD" "--lcores=0@1,1@1" --in-memory --no-pci
        "--vdev=net_memif0,role=server,socket=$EXT_SOCK,socket-abstract=no,id=0,mac=$GEN_MAC" --
        -i --forward-mode=txonly --burst="$BURST" "--tx-ip=$CLIENT_IP,198.51.100.1"
        "--tx-udp=1024,9000" "--eth-peer=0,$peer_mac" "${TP_OPTS[@]}")
    local cnt_cmd=("$TESTPMD" "--lcores=0@1,1@1" --in-memory --no-pci
        "--vdev=net_memif0,role=server,socket=$RET_SOCK,socket-abstract=no,id=0,mac=$CNT_MAC" --
        -i --forward-mode=rxonly "${TP_OPTS[@]}")
    # Through rvsd the reflector is a memif server on int.sock (one port); direct, a memif client
    # of both clients, forwarding from the first port to the second (--port-topology=paired).
    local refl_vdevs=("--vdev=net_memif0,role=server,socket=$INT_SOCK,socket-abstract=no,id=0,mac=$REFL_MAC")
    local refl_topo=loop
    if [ "$dut" = direct ]; then
        refl_vdevs=("--vdev=net_memif0,role=client,socket=$EXT_SOCK,socket-abstract=no,id=0,$RING,mac=$REFL_MAC"
            "--vdev=net_memif1,role=client,socket=$RET_SOCK,socket-abstract=no,id=0,$RING,mac=02:00:00:00:01:04")
        refl_topo=paired
    fi
    local refl_cmd=("$TESTPMD" "--lcores=0@0,1@0" --in-memory --no-pci "${refl_vdevs[@]}" --
        --forward-mode=5tswap --port-topology="$refl_topo" --auto-start --stats-period 1 "${TP_OPTS[@]}")
    local rvsd_cmd=()

    # Line-buffered: the script waits for what they print (stdout to a file is block-buffered).
    local gen_pid='' cnt_pid='' refl_pid='' rvsd_pid=''
    stdbuf -oL "${gen_cmd[@]}" <"$gen_fifo" >"$gen_log" 2>&1 &
    gen_pid=$!
    PIDS+=("$gen_pid")
    wait_sock "$EXT_SOCK" "$gen_pid" || err="the client testpmd did not create $EXT_SOCK"
    if [ -z "$err" ]; then
        stdbuf -oL "${cnt_cmd[@]}" <"$cnt_fifo" >"$cnt_log" 2>&1 &
        cnt_pid=$!
        PIDS+=("$cnt_pid")
        wait_sock "$RET_SOCK" "$cnt_pid" || err="the counting testpmd did not create $RET_SOCK"
    fi
    if [ -z "$err" ]; then
        stdbuf -oL "${refl_cmd[@]}" </dev/null >"$refl_log" 2>&1 &
        refl_pid=$!
        PIDS+=("$refl_pid")
        if [ "$dut" = rvsd ]; then
            if wait_sock "$INT_SOCK" "$refl_pid"; then
                local conf=$WORK/$tag.rvs.toml services
                services="-A -u 198.51.100.1:9000 -s rr"$'\n'"-a -u 198.51.100.1:9000 -r 192.0.2.2:9000 -m -w 1"
                services+=$'\n'"-a -u 198.51.100.1:9000 -r 192.0.2.3:9000 -m -w 1"
                write_rvsd_config "$conf" "$WORK/rvs.sock" 65536 0 "$services" \
                    "--vdev=net_memif0,role=client,socket=$EXT_SOCK,socket-abstract=no,id=0,$RING,mac=$RVS_EXT_MAC" \
                    "--vdev=net_memif1,role=client,socket=$INT_SOCK,socket-abstract=no,id=0,$RING,mac=02:00:00:00:00:02" \
                    "--vdev=net_memif2,role=client,socket=$RET_SOCK,socket-abstract=no,id=0,$RING,mac=02:00:00:00:00:03"
                printf '\n[[ports]]\nname = "ret"\ndevice = "net_memif2"\nrole = "external"\naddresses = ["203.0.113.1/24"]\n' >>"$conf"
                printf '\n[[neighbours]]\naddress = "%s"\nmac = "%s"\nport = "%s"\n' 192.0.2.2 "$REFL_MAC" int \
                    192.0.2.3 "$REFL_MAC" int "$CLIENT_IP" "$CNT_MAC" ret >>"$conf"
                rvsd_cmd=(env RVS_LOG=warn "$RVSD" --config "$conf")
                "${rvsd_cmd[@]}" </dev/null >"$dut_log" 2>&1 &
                rvsd_pid=$!
                PIDS+=("$rvsd_pid")
            else
                err="the reflecting testpmd did not create $INT_SOCK"
            fi
        fi
    fi

    # Links up on both clients' ports, then start (the counter first), warm up and measure.
    if [ -z "$err" ]; then
        link_up 3 "$gen_log" "$gen_pid" || err="the client testpmd's memif link did not come up"
    fi
    if [ -z "$err" ]; then
        link_up 4 "$cnt_log" "$cnt_pid" || err="the counting testpmd's memif link did not come up"
    fi
    if [ -z "$err" ]; then
        tp_send 4 "start"
        tp_send 3 "start"
        sleep "$WARMUP"
        tp_send 3 "show port stats 0"
        tp_send 4 "show port stats 0"
        sleep "$DURATION"
        tp_send 3 "show port stats 0"
        tp_send 4 "show port stats 0"
        sleep 0.2
        tp_send 3 "stop"
        tp_wait "$gen_log" "$gen_pid" 'Accumulated forward statistics' 10 || err="the client testpmd did not stop"
        sleep 0.5
        tp_send 4 "stop"
        tp_wait "$cnt_log" "$cnt_pid" 'Accumulated forward statistics' 10 || err=${err:-"the counting testpmd did not stop"}
    fi
    if [ "$dut" = rvsd ] && [ -n "$rvsd_pid" ]; then
        "$RVSCTL" --socket "$WORK/rvs.sock" counters >"$WORK/$tag.counters" 2>&1 || true
        "$RVSCTL" --socket "$WORK/rvs.sock" neigh >>"$WORK/$tag.counters" 2>&1 || true
        pid_alive "$rvsd_pid" || err=${err:-"rvsd exited during the run: $(tail -n 3 "$dut_log" | tr '\n' ' ')"}
    fi
    [ -z "$refl_pid" ] || pid_alive "$refl_pid" || err=${err:-"the reflecting testpmd exited during the run"}
    # The memif clients go first (rvsd, or the direct reflector): a memif client still polling
    # when its server quits may crash (rvsd did, exit 139, when the clients quit first).
    if [ -n "$rvsd_pid" ]; then
        stop_pid "$rvsd_pid" 10
        [ "$STOP_RC" -eq 0 ] || err=${err:-"rvsd exit status $STOP_RC at shutdown"}
    fi
    [ "$dut" = rvsd ] || [ -z "$refl_pid" ] || stop_pid "$refl_pid" 10
    tp_send 3 "quit"
    tp_send 4 "quit"
    exec 3>&- 4>&-
    FIFOS_OPEN=
    poll_alive "$gen_pid" 5 false || true
    [ -z "$cnt_pid" ] || poll_alive "$cnt_pid" 5 false || true
    stop_pid "$gen_pid" 5
    [ -z "$cnt_pid" ] || stop_pid "$cnt_pid" 5
    [ "$dut" != rvsd ] || [ -z "$refl_pid" ] || stop_pid "$refl_pid" 10
    rm -f "$gen_fifo" "$cnt_fifo" "$EXT_SOCK" "$INT_SOCK" "$RET_SOCK"

    local figures='{}'
    if [ -z "$err" ]; then
        local counters=()
        [ "$dut" != rvsd ] || counters=("$WORK/$tag.counters")
        figures=$(python3 "$RVS_LIB/testpmd_bench.py" point "$gen_log" "$cnt_log" "$refl_log" "${counters[@]}")
    fi
    python3 "$RVS_LIB/testpmd_bench.py" record "$RECORDS" json="$figures" pair="$pair" dut="$dut" \
        load="$load" ${err:+error="$err"} gen_cmd="$(quote "${gen_cmd[@]}")" \
        counter_cmd="$(quote "${cnt_cmd[@]}")" reflector_cmd="$(quote "${refl_cmd[@]}")" \
        rvsd_cmd="$(quote "${rvsd_cmd[@]}")"
    log "$tag: $(tail -n 1 "$RECORDS" | cut -c1-240)"
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
NOTE="Shared, loaded $(nproc)-core VM: three testpmds and rvsd share $(nproc) cores (the two clients time-slice CPU 1, rvsd and the reflector CPU 0), so this is a functional check more than a speed figure."
RC=0
python3 "$RVS_LIB/testpmd_bench.py" report "$RECORDS" "$OUT" \
    date="$START_DATE" nproc="$(nproc)" cpu="$(cpu_model)" kernel="$(uname -r)" dpdk="$(dpdk_version)" \
    commit="$(bench_commit)" command="$(quote "${ARGV[@]}")" load="$START_LOAD" warmup="$WARMUP" \
    duration="$DURATION" burst="$BURST" note="$NOTE" \
    cpus="client and counting testpmds CPU 1 (--lcores=0@1,1@1 each), reflector CPU 0 (--lcores=0@0,1@0), rvsd lcore 0" >&2 || RC=$?
log "results written to $OUT (between its testpmd-bench markers)"
[ "$RC" -eq 0 ] || log "a point failed (see above)"
exit "$RC"
