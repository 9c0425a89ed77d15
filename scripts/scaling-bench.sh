#!/usr/bin/env bash
# Scaling of rvsd with its workers: scripts/bench.sh at each worker count, interleaved pair by
# pair (1, 2, 1, 2, ... workers, each run rvs then testpmd), and its section of
# benches/RESULTS.md (<!-- scaling-bench:begin --> ... <!-- scaling-bench:end -->): per point
# and worker count the median rates with their spread, rvs / testpmd, rvs's speed-up over the
# fewest workers (the median of the pairs' ratios), how the workers shared the DNATs and SNATs,
# and which counts ran with the generator on a worker's core (not a scaling figure).
#
#   scripts/scaling-bench.sh [--workers "1 2 4 8"] [--pairs N] [--only GLOB] [--flows LIST]
#                            [--warmup S] [--duration S] [--out FILE] [--no-build]
#
#   --workers LIST  worker counts (default "1 2"; each needs as many CPUs, plus one for
#                   rvs-pktgen to be a scaling figure)
#   --pairs N       rounds over the worker counts (default 5)
#   --only GLOB     bench.sh's points (default udp-1K)
#   --flows, --warmup, --duration, --out, --no-build: as bench.sh (defaults 1K, 1 s, 3 s,
#                   benches/RESULTS.md)
#
# Environment: as bench.sh (RVS_BENCH_NICE, RVS_BENCH_QUIET_WAIT, RVS_BENCH_RETRIES, ...).
# Run it under the benchmark lock on a shared machine: flock /run/rvs-bench.lock ...
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"

OUT=$RVS_ROOT/benches/RESULTS.md
BUILD=1
COUNTS="1 2"
PAIRS=5
ONLY=udp-1K
FLOWS=1K
WARMUP=1
DURATION=3
ARGV=("$0" "$@")
while [ $# -gt 0 ]; do
    case $1 in
    --workers) COUNTS=${2:-} OPT_WORDS=2 ;;
    --pairs) PAIRS=${2:-} OPT_WORDS=2 ;;
    *) bench_option "$@" ;;
    esac
    shift "$OPT_WORDS"
done
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || die "--pairs takes a count (1 or more)"
for n in $COUNTS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "--workers takes a list of counts, e.g. \"1 2 4 8\""
    ((n <= $(nproc))) || die "$n workers need $n CPUs; this machine has $(nproc)"
done
need_root

WORK=${RVS_BENCH_WORK:-/tmp/rvs-scaling.$$}
case $WORK in /tmp/?*) ;; *) die "RVS_BENCH_WORK must be a folder under /tmp (it is emptied)" ;; esac
bench_work "$WORK"
trap '[ -n "${RVS_BENCH_WORK:-}" ] || rm -rf "$WORK"' EXIT

START_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
build=()
[ -n "$BUILD" ] || build=(--no-build)
FAILED=
for ((pair = 1; pair <= PAIRS; pair++)); do
    for n in $COUNTS; do
        log "pair $pair, $n worker(s)"
        run=$WORK/w$n-p$pair
        # One pair per run; the records get the round and the worker count.
        if ! RVS_BENCH_KERNEL=0 RVS_BENCH_WORK=$run "$RVS_ROOT/scripts/bench.sh" "${build[@]}" --workers "$n" \
            --pairs 1 --only "$ONLY" --flows "$FLOWS" --warmup "$WARMUP" --duration "$DURATION" \
            --out "$run.md" >&2; then
            FAILED=1
        fi
        build=(--no-build)
        [ ! -f "$run/records.jsonl" ] || python3 "$RVS_LIB/traffic_bench.py" tag "$run/records.jsonl" "$RECORDS" \
            pair="$pair"
    done
done

python3 "$RVS_LIB/traffic_bench.py" scaling "$RECORDS" "$OUT" \
    date="$START_DATE" nproc="$(nproc)" cpu="$(cpu_model)" kernel="$(uname -r)" dpdk="$(dpdk_version)" \
    commit="$(bench_commit)" command="$(quote "${ARGV[@]}")" load="$START_LOAD" \
    warmup="$WARMUP" duration="$DURATION" counts="$COUNTS" pairs="$PAIRS"
log "results written to $OUT (between its scaling-bench markers)"
[ -z "$FAILED" ] || warn "a bench.sh run failed (see above); its points are reported as failed"
