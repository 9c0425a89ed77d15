#!/usr/bin/env bash
# RFC 9693's stateful measures with complete TCP connections (handshake, a data segment each
# way, both FINs), rvs-pktgen --conn-test against rvsd and, as the transport's reference,
# dpdk-testpmd --forward-mode=io over the same two memif links as scripts/bench.sh; its section
# of benches/RESULTS.md (between <!-- conn-bench:begin --> and <!-- conn-bench:end -->).
#
#   scripts/conn-bench.sh [--dut rvs|testpmd|both] [--only "setup teardown capacity"]
#                         [--steps N] [--duration S] [--max-rate R] [--max-teardown-rate R]
#                         [--capacity N] [--teardown-conns N] [--load-rate R] [--out FILE]
#                         [--no-build]
#
#   --dut D            which DUT (default both; testpmd runs setup and teardown only: it holds
#                      no state, so it has no table capacity)
#   --only LIST        which measures (default all three)
#   --steps N          trials per rate search (default 6; the capacity search takes 10)
#   --duration S       seconds of connections per setup trial: rate x S connections (default 1)
#   --max-rate R       the top of the setup rate search, connections/s (default 2M)
#   --max-teardown-rate R  the top of the tear-down rate search (default 8M)
#   --capacity N       rvsd's table size in the capacity search (default 100K), searched
#                      over [N/2, N + N/4]
#   --teardown-conns N connections opened, held, then torn down per tear-down trial (default 200K)
#   --load-rate R      connections/s the tear-down and capacity trials open (and validate) their
#                      connections at (default 100K)
#
# Every trial is one run of rvs-pktgen (lcore 1) and a fresh DUT (lcore 0), so the DUT's table
# starts empty (RFC 9693: each step of a search starts with an empty state table). A trial passes
# when every connection of its measured phases completed with no fault: zero loss, no
# retransmission. The searches are binary (scripts/lib/conn_bench.py). rvsd's table for setup
# and tear-down holds what a trial leaves (every connection lingers in TIME_WAIT for 120 s);
# its timeouts are the defaults. Each search takes the benchmark lock for itself (RVS_BENCH_LOCK,
# default /run/rvs-bench.lock; empty: none): run the script without flock. Environment:
# RVS_BENCH_WORK, RVS_BENCH_NICE, RVS_BENCH_COMMIT as for scripts/bench.sh;
# RVS_BENCH_QUIET_WAIT (default 5 s); RVS_CONN_RSIZE (log2 of the memif rings, default 14);
# RVS_CONN_GAP_MS (default 20)
# and RVS_CONN_RETRIES (default 1): a failed trial in which rvs-pktgen was off its CPU longer
# than that is measured again, that many times at most.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"

DUT=both
ONLY="setup teardown capacity"
STEPS=6
STEPS_CAPACITY=10
DURATION=1
MAX_RATE=2M
CAPACITY=100K
MAX_TEARDOWN_RATE=8M
TEARDOWN_CONNS=200K
LOAD_RATE=100K
OUT=$RVS_ROOT/benches/RESULTS.md
BUILD=1
ARGV=("$0" "$@")
while [ $# -gt 0 ]; do
    OPT_WORDS=2
    case $1 in
    --dut) DUT=$2 ;;
    --only) ONLY=$2 ;;
    --steps) STEPS=$2 ;;
    --max-rate) MAX_RATE=$2 ;;
    --capacity) CAPACITY=$2 ;;
    --teardown-conns) TEARDOWN_CONNS=$2 ;;
    --max-teardown-rate) MAX_TEARDOWN_RATE=$2 ;;
    --load-rate) LOAD_RATE=$2 ;;
    --flows | --warmup) die "unknown argument: $1 (see --help)" ;;
    *) bench_option "$@" ;;
    esac
    shift "$OPT_WORDS"
done
case $DUT in rvs) DUTS=(rvs) ;; testpmd) DUTS=(testpmd) ;; both) DUTS=(rvs testpmd) ;; *) die "--dut: rvs, testpmd or both" ;; esac
for m in $ONLY; do
    case $m in setup | teardown | capacity) ;; *) die "--only: setup, teardown, capacity" ;; esac
done
[[ $STEPS =~ ^[1-9][0-9]*$ && $DURATION =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--steps and --duration must be numbers"
MAX_RATE=$(count "$MAX_RATE")
MAX_TEARDOWN_RATE=$(count "$MAX_TEARDOWN_RATE")
CAPACITY=$(count "$CAPACITY")
TEARDOWN_CONNS=$(count "$TEARDOWN_CONNS")
LOAD_RATE=$(count "$LOAD_RATE")
# Setup and tear-down: every connection of a trial stays in rvsd's table (TIME_WAIT, 120 s).
TABLE=$(awk -v r="$MAX_RATE" -v d="$DURATION" -v t="$TEARDOWN_CONNS" \
    'BEGIN { n = r * d; if (t > n) n = t; printf "%d", n * 1.25 + 65536 }')
GAP_MS=${RVS_CONN_GAP_MS:-20}
LOCK=${RVS_BENCH_LOCK-/run/rvs-bench.lock}
RETRIES=${RVS_CONN_RETRIES:-1}
bench_nice

need_root
need_tools python3 awk
need_hugepages
TESTPMD=$(command -v dpdk-testpmd || true)
RVSD=$RVS_ROOT/target/release/rvsd
RVSCTL=$RVS_ROOT/target/release/rvsctl
PKTGEN=$RVS_ROOT/target/release/rvs-pktgen
if [ -n "$BUILD" ]; then
    log "building rvs-pktgen, rvsd and rvsctl (release)"
    run_cargo build --release -p rvs-benches --bin rvs-pktgen -p rvsd --bin rvsd -p control --bin rvsctl >&2 ||
        die "cargo build failed"
fi
for b in "$PKTGEN" "$RVSD" "$RVSCTL"; do [ -x "$b" ] || die "$b missing (build it or drop --no-build)"; done

WORK=${RVS_BENCH_WORK:-/tmp/rvs-conn-bench.$$}
case $WORK in /tmp/?*) ;; *) die "RVS_BENCH_WORK must be a folder under /tmp (it is emptied)" ;; esac
bench_work "$WORK"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
# Rings of 16K frames (memif's largest) between rvs-pktgen and the DUT, both DUTs alike: they
# hold what arrives while rvs-pktgen is off its CPU (12 ms is common on this shared VM), which
# DPDK's default 1K rings do not at these rates.
RSIZE=${RVS_CONN_RSIZE:-14}
bench_memif "$WORK" "$RSIZE"

# trial DUT MEASURE VALUE: one trial with a fresh rvs-pktgen and DUT, recorded.
trial() {
    local dut=$1 measure=$2 value=$3 conns rate capacity=$TABLE
    case $measure in
    setup)
        rate=$value
        conns=$(awk -v r="$value" -v d="$DURATION" 'BEGIN { n = int(r * d); print (n < 1000 ? 1000 : n) }')
        ;;
    teardown) rate=$value conns=$TEARDOWN_CONNS ;;
    capacity) rate=$LOAD_RATE conns=$value capacity=$CAPACITY ;;
    esac
    local tag="$dut-$measure-$value" load BUSY=0
    local pg_out=$WORK/$tag.json pg_log=$WORK/$tag.log dut_log=$WORK/$tag.dut.log counters=$WORK/$tag.counters
    wait_quiet "${RVS_BENCH_QUIET_WAIT:-5}"
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    rm -f "$EXT_SOCK" "$INT_SOCK"
    local pg_cmd=("${NICE_CMD[@]}" "$PKTGEN" --conn-test "$measure" --flows "$conns" --rate "$rate"
        --load-rate "$LOAD_RATE" --drain-ms 500 --link-timeout 30 --linger 10 --label "$tag" -q)
    [ "$dut" = testpmd ] && pg_cmd+=(--dut-mac 02:00:00:00:00:01)
    pg_cmd+=(-- "${PG_EAL[@]}")
    log "$tag: $conns connections, rate $rate/s"
    "${pg_cmd[@]}" >"$pg_out" 2>"$pg_log" &
    local pg=$! i
    PIDS+=("$pg")
    for ((i = 0; i < 100; i++)); do
        [ -S "$EXT_SOCK" ] && [ -S "$INT_SOCK" ] && break
        pid_alive "$pg" || break
        sleep 0.1
    done
    local dut_cmd
    if [ "$dut" = rvs ]; then
        local conf=$WORK/$tag.toml
        write_rvsd_config "$conf" "$WORK/rvs.sock" "$capacity" 0 "$(bench_services tcp)" "${DUT_VDEVS[@]}"
        [ "$measure" != capacity ] || cp "$conf" "$WORK/capacity.toml"
        dut_cmd=(env RVS_LOG=warn "${NICE_CMD[@]}" "$RVSD" --config "$conf")
    else
        dut_cmd=("${NICE_CMD[@]}" "$TESTPMD" "--lcores=0@0,1@0" --in-memory --no-pci "${DUT_VDEVS[@]}" --
            --forward-mode=io --nb-cores=1 --auto-start --stats-period 1)
    fi
    "${dut_cmd[@]}" </dev/null >"$dut_log" 2>&1 &
    local dp=$!
    PIDS+=("$dp")
    local t0=$SECONDS
    while ! grep -q '^{' "$pg_out" 2>/dev/null; do
        pid_alive "$pg" || break
        if ! pid_alive "$dp" || ((SECONDS - t0 > 240)); then
            kill -TERM "$pg" 2>/dev/null || true
            sleep 2
            break
        fi
        sleep 0.2
    done
    : >"$counters"
    if [ "$dut" = rvs ] && pid_alive "$dp"; then
        "$RVSCTL" --socket "$WORK/rvs.sock" counters >"$counters" 2>/dev/null || true
    fi
    local dut_error=
    if pid_alive "$dp"; then
        stop_pid "$dp" 15
    else
        stop_pid "$dp" 0
        dut_error="the DUT exited during the trial (status $STOP_RC): $(grep -v 'EAL' "$dut_log" | tail -n 3 | tr '\n' ' ')"
    fi
    stop_pid "$pg" 20
    python3 "$RVS_LIB/conn_bench.py" record "$RECORDS" "$pg_out" dut="$dut" measure="$measure" value="$value" \
        load="$load" busy_before="$BUSY" counters="$counters" dut_cmd="$(quote "${dut_cmd[@]}")" \
        pktgen_cmd="$(quote "${pg_cmd[@]}")" ${dut_error:+error="$dut_error"}
    tail -n 1 "$RECORDS" | python3 -c 'import json, sys; r = json.load(sys.stdin); print("  ->", "passed" if r.get("passed") else "FAILED", r.get("error", ""))' >&2
}

# search DUT MEASURE LO HI STEPS GRAIN: a binary search, one trial per value it asks for, under
# the benchmark lock (RVS_BENCH_LOCK, default /run/rvs-bench.lock; empty: none) for the search
# only, so that other benchmarks get their turn between two searches.
search() {
    local dut=$1 measure=$2 lo=$3 hi=$4 steps=$5 grain=$6 next
    if [ -n "$LOCK" ]; then
        exec 9>"$LOCK"
        log "$dut $measure: waiting for $LOCK"
        flock 9
    fi
    while :; do
        next=$(python3 "$RVS_LIB/conn_bench.py" next "$RECORDS" dut="$dut" measure="$measure" lo="$lo" hi="$hi" \
            steps="$steps" retries="$RETRIES" gap_ms="$GAP_MS" grain="$grain")
        [ "$next" != "done" ] || break
        trial "$dut" "$measure" "$next"
    done
    [ -z "$LOCK" ] || flock -u 9
}

START_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
for dut in "${DUTS[@]}"; do
    if [ "$dut" = testpmd ] && [ -z "$TESTPMD" ]; then
        warn "dpdk-testpmd missing (Debian: dpdk-dev): testpmd not run"
        continue
    fi
    for m in $ONLY; do
        case $m in
        setup) search "$dut" setup 0 "$MAX_RATE" "$STEPS" 1000 ;;
        teardown) search "$dut" teardown 0 "$MAX_TEARDOWN_RATE" "$STEPS" 1000 ;;
        capacity)
            [ "$dut" = rvs ] || continue
            search "$dut" capacity $((CAPACITY / 2)) $((CAPACITY + CAPACITY / 4)) "$STEPS_CAPACITY" 1
            ;;
        esac
    done
done

mkdir -p "$(dirname "$OUT")"
python3 "$RVS_LIB/conn_bench.py" report "$RECORDS" "$OUT" "$WORK/capacity.toml" \
    date="$START_DATE" nproc="$(nproc)" cpu="$(cpu_model)" kernel="$(uname -r)" dpdk="$(dpdk_version)" \
    commit="$(bench_commit)" command="$(quote "${ARGV[@]}")" load="$START_LOAD" duration="$DURATION" \
    teardown_conns="$TEARDOWN_CONNS" load_rate="$LOAD_RATE" table="$TABLE" capacity="$CAPACITY" \
    steps="$STEPS" steps_capacity="$STEPS_CAPACITY" gap_ms="$GAP_MS" retries="$RETRIES" nice="$NICE" \
    rsize="$RSIZE"
log "results written to $OUT (between its conn-bench markers)"
