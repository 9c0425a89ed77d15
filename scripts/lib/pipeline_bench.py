"""The report of scripts/pipeline-bench.sh, the pipeline benchmark without I/O (pre-built
frames through dataplane's pipeline on one core, natively and under callgrind).

    pipeline_bench.py report RECORDS OUT COMMANDS KEY=VALUE...

writes the pipeline-bench section of OUT from RECORDS (one JSON line per run: pipeline-bench's
--json output plus "mode" native or callgrind, "ir" the instructions callgrind counted, or
"error"), the commands that ran (COMMANDS, one a line) and the KEY=VALUE pairs of
REPORT_FIELDS; the table also goes to stdout. The callgrind output files sit beside RECORDS
(cg.PROTO.PATH.FLOWS), where the profile of the instructions by function is read from.
"""

import argparse
import json
import os
import re
import subprocess
import sys

import bench_records
import results_section

# What the report's header says about the run, given by pipeline-bench.sh.
REPORT_FIELDS = ("command", "date", "commit", "nproc", "cpu", "load_before", "load_after", "valgrind")


def parse_annotate(text):
    """Self instructions by function from `callgrind_annotate --inclusive=no` output: {function:
    instructions}, the totals line and call lines (=>) left out, a function seen in several
    files summed."""
    by = {}
    for l in text.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(?:.*?):(\S+)", l)
        if m and "TOTALS" not in l and "=>" not in l:
            by[m.group(2)] = by.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    return by


def per_packet(by, packets, top=12):
    """The `top` functions of parse_annotate's dict by instructions, as (function, per packet)."""
    rows = sorted(by.items(), key=lambda kv: -kv[1])[:top]
    return [(fn, n / packets) for fn, n in rows]


def annotate(work):
    """A profile function for report(): self instructions per packet by function (inlined code
    counted in its caller) of a callgrind record's run, from callgrind_annotate on its output
    file in `work`; None when there is none or callgrind_annotate fails."""
    def profile(r):
        f = f"{work}/cg.{r['proto']}.{r['path']}.{r['flows']}"
        try:
            txt = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", f],
                                 capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
        return per_packet(parse_annotate(txt), r["packets"])
    return profile


def fl(n):
    """A flow count as the scripts write it: 1K, 10M, 1500."""
    return f"{n // 1000000}M" if n % 1000000 == 0 else f"{n // 1000}K" if n % 1000 == 0 else str(n)


def report(recs, meta, commands, profile=lambda r: None, work=None):
    """The lines of the pipeline-bench section: `recs` the records in the order run, `meta` the
    REPORT_FIELDS, `commands` the command lines run (`work`, the work folder, written $WORK in
    them), `profile` a function giving a callgrind record's instructions per packet by function
    (see annotate; the default has none, which leaves that part out)."""
    bench_records.require(meta, REPORT_FIELDS)
    L = ["## Pipeline without I/O (pipeline-bench)", ""]
    L.append(f"Written by `scripts/pipeline-bench.sh` (`{meta['command']}`) on {meta['date']}, commit {meta['commit']}. Machine: "
             f"{meta['nproc']} CPUs, {meta['cpu']}; load average {meta['load_before']} before, {meta['load_after']} after. {meta['valgrind']}.")
    L.append("")
    L.append("Pre-built 60-byte frames (rvs-pktgen's, `benches/src/frame.rs`) through "
             "rvs's burst driver and `dataplane::pipeline::Pipeline` on one core, in bursts of 32 "
             "handed over as the DPDK worker hands mbufs: no I/O, no aging (housekeeping) in the loop. *established*: packets of flows drawn at random among the N "
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
    prof = [(r, profile(r)) for r in recs
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
    L.extend(bench_records.code_block(c.replace(work, "$WORK") if work else c for c in commands))
    L.append("")
    L.extend(bench_records.raw_results(recs))
    return L


def instructions(text):
    """From a results file's text, this section's instructions per packet under callgrind (what
    other reports cite), {(proto, path, flows): instructions}, and its "Written by" line; ({}, None)
    without that section."""
    b, e = text.find("<!-- pipeline-bench:begin -->"), text.find("<!-- pipeline-bench:end -->")
    if b < 0 or e < b:
        return {}, None
    out, written = {}, None
    for line in text[b:e].splitlines():
        if line.startswith("Written by") and written is None:
            written = line
        if line.startswith('{"mode":"callgrind"'):
            try:
                r = json.loads(line)
                out[(r["proto"], r["path"], r["flows"])] = r["ir"] / r["packets"]
            except (ValueError, KeyError, ZeroDivisionError):
                pass
    return out, written


def main(argv):
    ap = argparse.ArgumentParser(prog="pipeline_bench.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("report", help="write the pipeline-bench section")
    a.add_argument("records")
    a.add_argument("out")
    a.add_argument("commands", help="file with the commands run, one a line")
    a.add_argument("meta", nargs="*", metavar="KEY=VALUE")
    args = ap.parse_args(argv)

    work = os.path.dirname(os.path.abspath(args.records))
    with open(args.commands) as f:
        # As the shell's $(...) would: trailing newlines dropped.
        commands = f.read().rstrip("\n").splitlines()
    L = report(bench_records.read(args.records), bench_records.parse_pairs(args.meta), commands,
               annotate(work), work)
    results_section.write(args.out, "pipeline-bench", L)
    print("\n".join(bench_records.up_to_commands(L)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
