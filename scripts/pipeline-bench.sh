#!/usr/bin/env bash
# The pipeline benchmark without I/O (issue 6): pre-built frames through
# dataplane::pipeline::Worker on one core (benches/src/bin/pipeline-bench.rs), in ns per packet
# natively and in instructions per packet under valgrind's callgrind, for the established-flow
# path (UDP, TCP ACKs) and the new-connection path (each frame a new flow: UDP, TCP SYNs).
# Writes its section of benches/RESULTS.md (between <!-- pipeline-bench:begin --> and
# <!-- pipeline-bench:end -->), leaving the rest alone. No root needed.
#
#   scripts/pipeline-bench.sh [--out FILE] [--no-build] [--flows "1K 1M 10M"]
#                             [--cg-flows "1K 1M"] [--no-callgrind] [--cpu N]
#
# Native: established = 1M measured packets x 5 runs, new = 500K x 3 (flow indices must stay in
# rvs-pktgen's 14.7M client space); best and median ns/packet. callgrind: 100K measured
# packets, collected only inside the measured loop (--toggle-collect=*pipeline_bench*measured*),
# so the table build (warm-up) and frame building are not counted, though they run under
# valgrind too: that is why the callgrind sweep stops at 1M flows by default (10M would take
# tens of minutes of warm-up at valgrind's ~50x slowdown).
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

OUT=$RVS_ROOT/benches/RESULTS.md
BUILD=1
FLOWS="1K 1M 10M"
CG_FLOWS="1K 1M"
CALLGRIND=1
CPU=
ARGV=("$0" "$@")
while [ $# -gt 0 ]; do
    case $1 in
    --out) OUT=$2; shift ;;
    --no-build) BUILD= ;;
    --flows) FLOWS=$2; shift ;;
    --cg-flows) CG_FLOWS=$2; shift ;;
    --no-callgrind) CALLGRIND= ;;
    --cpu) CPU=$2; shift ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
    esac
    shift
done

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

for f in $FLOWS; do
    n=$(num "$f")
    for proto in udp tcp; do
        for path in established new; do
            if [ $path = established ]; then opts=(--packets 1000000 --repeat 5); else opts=(--packets 500000 --repeat 3); fi
            # UDP established once more without the burst prefetch: what it is worth.
            variants=("")
            [ "$proto/$path" = udp/established ] && variants+=(--no-prefetch)
            for v in "${variants[@]}"; do
                cmd=("$BIN" --flows "$n" --proto "$proto" --path "$path" "${opts[@]}" ${CPU:+--cpu "$CPU"} ${v:+"$v"} --json)
                CMDS+=("${cmd[*]}")
                log "native: $proto $path $f $v"
                if line=$("${cmd[@]}"); then
                    printf '{"mode":"native","load":"%s",%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "${line#\{}" >>"$REC"
                else
                    printf '{"mode":"native","proto":"%s","path":"%s","flows":%s,"prefetch":%s,"error":"exit %s"}\n' \
                        $proto $path "$n" "$([ -z "$v" ] && echo true || echo false)" $? >>"$REC"
                fi
            done
        done
    done
done

if [ -n "$CALLGRIND" ]; then
    for f in $CG_FLOWS; do
        n=$(num "$f")
        for proto in udp tcp; do
            for path in established new; do
                out=$WORK/cg.$proto.$path.$n
                cmd=(valgrind --tool=callgrind --collect-atstart=no "--toggle-collect=*pipeline_bench*measured*"
                    "--callgrind-out-file=$out" "$BIN" --flows "$n" --proto "$proto" --path "$path" --packets 100000 --repeat 1 --json)
                CMDS+=("${cmd[*]}")
                log "callgrind: $proto $path $f"
                if line=$("${cmd[@]}" 2>"$out.log"); then
                    ir=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p; s/^summary: *\([0-9]*\).*/\1/p' "$out" | head -n1)
                    printf '{"mode":"callgrind","ir":%s,%s\n' "${ir:-null}" "${line#\{}" >>"$REC"
                else
                    printf '{"mode":"callgrind","proto":"%s","path":"%s","flows":%s,"error":"exit %s"}\n' $proto $path "$n" $? >>"$REC"
                fi
            done
        done
    done
fi

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
COMMIT=$(git -C "$RVS_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
PYTHONPATH="$RVS_ROOT/scripts" python3 - "$REC" "$OUT" "$(nproc)" "$CPU_MODEL" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$LOAD_BEFORE" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$COMMIT" "${ARGV[*]}" "$(valgrind --version 2>/dev/null || echo none)" \
    "$(printf '%s\n' "${CMDS[@]}")" <<'PY'
import json, sys
import results_section
rec_f, out, nproc, cpu, date, load0, load1, commit, argv, vg, cmds = sys.argv[1:]
recs = [json.loads(l) for l in open(rec_f)]
work = rec_f.rsplit("/", 1)[0]

def profile(proto, path, flows, packets, top=12):
    """Self instructions per packet by function (inlined code counted in its caller), from
    callgrind_annotate on that point's run; None when it did not run."""
    import re, subprocess
    f = f"{work}/cg.{proto}.{path}.{flows}"
    try:
        txt = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", f],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    by = {}
    for l in txt.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(?:.*?):(\S+)", l)
        if m and "TOTALS" not in l and "=>" not in l:
            by[m.group(2)] = by.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    rows = sorted(by.items(), key=lambda kv: -kv[1])[:top]
    return [(fn, n / packets) for fn, n in rows]
def fl(n):
    return f"{n // 1000000}M" if n % 1000000 == 0 else f"{n // 1000}K" if n % 1000 == 0 else str(n)
L = ["## Pipeline without I/O (pipeline-bench)", ""]
L.append(f"Written by `scripts/pipeline-bench.sh` (`{argv}`) on {date}, commit {commit}. Machine: "
         f"{nproc} CPUs, {cpu}; load average {load0} before, {load1} after. {vg}.")
L.append("")
L.append("Pre-built 60-byte frames (rvs-pktgen's, `benches/src/frame.rs`) through "
         "`dataplane::pipeline::Worker::process` on one core: no I/O, no mbufs, no aging "
         "(housekeeping) in the loop. *established*: packets of flows drawn at random among the N "
         "in the table (UDP datagrams, TCP ACKs); *new*: each packet a new flow (UDP, TCP SYN) "
         "with N flows in the table at the start (the new flows stay: it ends with N + 1.5M). VIP 198.51.100.1:80, round robin over 4 real servers, "
         "NAT rewrite and checksums included; every frame checked to come out as Tx on the "
         "internal port. ns/packet is wall time of the measured loop / packets (best and median "
         "of the runs); on a shared 2-core machine take the best. Instructions/packet come from "
         "callgrind, counted only inside the measured loop, and do not depend on machine load. "
         "*prefetch*: `Worker::prefetch_burst` runs before each burst of 32, as in rvsd's worker "
         "loop (the buckets of the whole burst, then their entries); *off* leaves it out. "
         "Cycles/packet = ns best x the core clock pipeline-bench measured right after its runs "
         "(a chain of dependent multiplies, 3 cycles each; turbo puts it above the TSC rate); "
         "IPC = instructions / cycles.")
L.append("")
L.append("| proto | path | flows | prefetch | ns/pkt best | ns/pkt median | Mpps (best) | core GHz | cycles/pkt | instr/pkt (callgrind) | IPC | table MiB | warm-up s |")
L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
cg = {(r["proto"], r["path"], r["flows"], r.get("prefetch", True)): r for r in recs if r["mode"] == "callgrind"}
for r in recs:
    if r["mode"] != "native":
        continue
    k = (r["proto"], r["path"], r["flows"], r.get("prefetch", True))
    pf = "on" if k[3] else "off"
    c = cg.get(k)
    ipp, ipc = "not run", ""
    ok = c is not None and c.get("ir") and not c.get("error")
    if c is not None:
        ipp = f"{c['ir'] / c['packets']:.0f}" if ok else f"failed ({c.get('error', 'no totals')})"
    if r.get("error"):
        L.append(f"| {k[0]} | {k[1]} | {fl(k[2])} | {pf} | failed ({r['error']}) | | | | | {ipp} | | | |")
        continue
    ghz = r.get("clock_ghz")
    cyc = r["ns_best"] * ghz if ghz else None
    if ok and cyc:
        ipc = f"{c['ir'] / c['packets'] / cyc:.1f}"
    L.append(f"| {k[0]} | {k[1]} | {fl(k[2])} | {pf} | {r['ns_best']:.1f} | {r['ns_median']:.1f} | "
             f"{r['mpps_best']:.2f} | {f'{ghz:.2f}' if ghz else ''} | {f'{cyc:.0f}' if cyc else ''} | "
             f"{ipp} | {ipc} | {r['table_mib']:.0f} | {r['warmup_s']:.1f} |")
L.append("")
prof = [(r, profile(r["proto"], r["path"], r["flows"], r["packets"])) for r in recs
        if r["mode"] == "callgrind" and r["proto"] == "udp" and not r.get("error")]
prof = [(r, p) for r, p in prof if p and r["flows"] == max(x["flows"] for x, _ in prof)]
if prof:
    L.append("### Where the instructions go (callgrind, UDP)")
    L.append("")
    L.append("Self instructions per packet by function, code inlined into a function counted in it "
             "(`callgrind_annotate --inclusive=no` on the runs above), the top ones:")
    L.append("")
    for r, p in prof:
        L.append(f"{r['path']}, {fl(r['flows'])} flows: " +
                 ", ".join(f"`{fn.split('::', 1)[-1]}` {n:.0f}" for fn, n in p))
        L.append("")
L.append("### Commands")
L.append("")
L.append("```")
L.extend(c.replace(rec_f.rsplit("/", 1)[0], "$WORK") for c in cmds.splitlines())
L.append("```")
L.append("")
L.append("### Raw results")
L.append("")
L.append("```")
L.extend(json.dumps(r, separators=(",", ":")) for r in recs)
L.append("```")
results_section.write(out, "pipeline-bench", L)
print("\n".join(L[:L.index("### Commands")]))
PY
log "results written to $OUT (between its pipeline-bench markers)"
