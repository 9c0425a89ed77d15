#!/usr/bin/env bash
# The pipeline benchmark without I/O: pre-built frames through
# the burst driver and dataplane::pipeline::Pipeline on one core (benches/src/bin/pipeline-bench.rs), in ns per packet
# natively and in instructions per packet under valgrind's callgrind, for the established-flow
# path (UDP, TCP ACKs), the new-connection path (each frame a new flow: UDP, TCP SYNs) and the
# reply path (the real servers' answers to established flows, SNAT out to the clients).
# Writes its section of benches/RESULTS.md (between <!-- pipeline-bench:begin --> and
# <!-- pipeline-bench:end -->), leaving the rest alone. No root needed.
#
#   scripts/pipeline-bench.sh [--out FILE] [--no-build] [--flows "1K 1M 10M"]
#                             [--cg-flows "1K 1M"] [--no-callgrind] [--cpu N]
#                             [--families "4 6"] [--paths "established new reply"]
#
# Each point runs for IPv4 and, beside it, for IPv6 (pipeline-bench --family 6; the report
# compares the two, target IPv6 within 15% of IPv4 per packet); --families 4 leaves IPv6 out
# (the run takes about twice as long with it; CI runs none of this). The --no-prefetch variant
# is IPv4's only.
#
# Native: established and reply = 1M measured packets x 5 runs, new = 500K x 3 (flow indices must stay in
# rvs-pktgen's 14.7M client space); best and median ns/packet. callgrind: 100K measured
# packets, collected only inside the measured loop (--toggle-collect=*pipeline_bench*measured*),
# so the table build (warm-up) and frame building are not counted, though they run under
# valgrind too: that is why the callgrind sweep stops at 1M flows by default (10M would take
# tens of minutes of warm-up at valgrind's ~50x slowdown).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

OUT=$RVS_ROOT/benches/RESULTS.md
BUILD=1
FLOWS="1K 1M 10M"
CG_FLOWS="1K 1M"
CALLGRIND=1
CPU=
FAMILIES="4 6"
PATHS="established new reply"
ARGV=("$0" "$@")
while [ $# -gt 0 ]; do
    case $1 in
    --out) OUT=$2; shift ;;
    --no-build) BUILD= ;;
    --flows) FLOWS=$2; shift ;;
    --cg-flows) CG_FLOWS=$2; shift ;;
    --no-callgrind) CALLGRIND= ;;
    --cpu) CPU=$2; shift ;;
    --families) FAMILIES=$2; shift ;;
    --paths) PATHS=$2; shift ;;
    -h | --help) usage_header; exit 0 ;;
    *) die "unknown argument: $1" ;;
    esac
    shift
done

# Each list: known names, at least one, none twice (an empty list would write empty tables
# over the RESULTS.md section; a repeat, duplicate rows).
check_list() {
    local opt=$1 known=$2 seen=" " x
    shift 2
    for x in "$@"; do
        case " $known " in *" $x "*) ;; *) die "$opt: one or more of $known, not $x" ;; esac
        case $seen in *" $x "*) die "$opt: $x given twice" ;; esac
        seen="$seen$x "
    done
    [ "$seen" != " " ] || die "$opt: empty"
}
# shellcheck disable=SC2086 # the lists are split on purpose
check_list --families "4 6" $FAMILIES
# shellcheck disable=SC2086
check_list --paths "established new reply" $PATHS

num() {
    case $1 in
    *K) echo $((${1%K} * 1000)) ;;
    *M) echo $((${1%M} * 1000000)) ;;
    *) echo "$1" ;;
    esac
}

if [ -n "$BUILD" ]; then
    run_cargo build --release -p rvs-benches --bin pipeline-bench
fi
BIN=$RVS_ROOT/target/release/pipeline-bench
[ -x "$BIN" ] || die "$BIN missing (build it, or drop --no-build)"
if [ -n "$CALLGRIND" ] && ! command -v valgrind >/dev/null 2>&1; then
    die "valgrind not found (apt-get install valgrind), or pass --no-callgrind"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rvs-pipeline-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
REC=$WORK/records.jsonl
: >"$REC"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
CMDS=()

# IPv4's pipeline-bench options and records have no family (as before IPv6); IPv6's say so.
fam_json() { [ "$1" = 6 ] && echo '"family":6,'; true; }

for f in $FLOWS; do
    n=$(num "$f")
    for proto in udp tcp; do
        for path in $PATHS; do
            if [ "$path" = new ]; then opts=(--packets 500000 --repeat 3); else opts=(--packets 1000000 --repeat 5); fi
            # Each family in turn at each point, so both see the same load.
            for fam in $FAMILIES; do
                # UDP established once more without the burst prefetch: what it is worth.
                variants=("")
                [ "$proto/$path/$fam" = udp/established/4 ] && variants+=(--no-prefetch)
                for v in "${variants[@]}"; do
                    famopt=()
                    if [ "$fam" = 6 ]; then famopt=(--family 6); fi
                    cmd=("$BIN" ${famopt[@]+"${famopt[@]}"} --flows "$n" --proto "$proto" --path "$path" "${opts[@]}" ${CPU:+--cpu "$CPU"} ${v:+"$v"} --json)
                    CMDS+=("${cmd[*]}")
                    log "native: IPv$fam $proto $path $f $v"
                    if line=$("${cmd[@]}"); then
                        printf '{"mode":"native","load":"%s",%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "${line#\{}" >>"$REC"
                    else
                        printf '{"mode":"native",%s"proto":"%s","path":"%s","flows":%s,"prefetch":%s,"error":"exit %s"}\n' \
                            "$(fam_json "$fam")" $proto "$path" "$n" "$([ -z "$v" ] && echo true || echo false)" $? >>"$REC"
                    fi
                done
            done
        done
    done
done

if [ -n "$CALLGRIND" ]; then
    for f in $CG_FLOWS; do
        n=$(num "$f")
        for proto in udp tcp; do
            for path in $PATHS; do
                for fam in $FAMILIES; do
                    # The name pipeline_bench.py's cg_file gives the record: cg6.* for IPv6.
                    famopt=()
                    cg=cg
                    if [ "$fam" = 6 ]; then famopt=(--family 6); cg=cg6; fi
                    out=$WORK/$cg.$proto.$path.$n
                    cmd=(valgrind --tool=callgrind --collect-atstart=no "--toggle-collect=*pipeline_bench*measured*"
                        "--callgrind-out-file=$out" "$BIN" ${famopt[@]+"${famopt[@]}"} --flows "$n" --proto "$proto" --path "$path" --packets 100000 --repeat 1 --json)
                    CMDS+=("${cmd[*]}")
                    log "callgrind: IPv$fam $proto $path $f"
                    if line=$("${cmd[@]}" 2>"$out.log"); then
                        ir=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p; s/^summary: *\([0-9]*\).*/\1/p' "$out" | head -n1)
                        printf '{"mode":"callgrind","ir":%s,%s\n' "${ir:-null}" "${line#\{}" >>"$REC"
                    else
                        printf '{"mode":"callgrind",%s"proto":"%s","path":"%s","flows":%s,"error":"exit %s"}\n' \
                            "$(fam_json "$fam")" $proto "$path" "$n" $? >>"$REC"
                    fi
                done
            done
        done
    done
fi

COMMIT=$(git -C "$RVS_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
printf '%s\n' "${CMDS[@]}" >"$WORK/commands"
python3 "$RVS_LIB/pipeline_bench.py" report "$REC" "$OUT" "$WORK/commands" \
    command="${ARGV[*]}" date="$(date -u '+%Y-%m-%d %H:%M UTC')" commit="$COMMIT" nproc="$(nproc)" \
    cpu="$(cpu_model)" load_before="$LOAD_BEFORE" load_after="$(cut -d' ' -f1-3 /proc/loadavg)" \
    valgrind="$(valgrind --version 2>/dev/null || echo none)"
log "results written to $OUT (between its pipeline-bench markers)"
