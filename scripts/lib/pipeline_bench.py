"""The report of scripts/pipeline-bench.sh, the pipeline benchmark without I/O (pre-built
frames through dataplane's pipeline on one core, natively and under callgrind).

    pipeline_bench.py report RECORDS OUT COMMANDS KEY=VALUE...

writes the pipeline-bench section of OUT from RECORDS (one JSON line per run: pipeline-bench's
--json output plus "mode" native or callgrind, "ir" the instructions callgrind counted, or
"error"), the commands that ran (COMMANDS, one a line) and the KEY=VALUE pairs of
REPORT_FIELDS; the table also goes to stdout. The callgrind output files sit beside RECORDS
(cg.PROTO.PATH.FLOWS, IPv6's cg6.PROTO.PATH.FLOWS), where the profile of the instructions by
function is read from. A record with "family" 6 is an IPv6 run (pipeline-bench --family 6;
IPv4's records have no "family"): those are compared with IPv4's in a table of their own.
"""

import argparse
import json
import os
import re
import subprocess
import sys

import bench_records
import results_section

# IPv6 within this much of IPv4 per packet (issue #16's target).
V6_TARGET = 0.15

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


def family(r):
    """A record's IP version: 6 for pipeline-bench --family 6, else 4."""
    return r.get("family", 4)


def cg_file(r):
    """The callgrind output file's name of a record's run, beside the records."""
    return f"{'cg6' if family(r) == 6 else 'cg'}.{r['proto']}.{r['path']}.{r['flows']}"


def annotate(work):
    """A profile function for report(): self instructions per packet by function (inlined code
    counted in its caller) of a callgrind record's run, from callgrind_annotate on its output
    file in `work`; None when there is none or callgrind_annotate fails."""
    def profile(r):
        f = f"{work}/{cg_file(r)}"
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
             "with N flows in the table at the start (the new flows stay: it ends with N + 1.5M); *reply*: the real "
             "servers' answers (UDP datagrams, TCP ACKs) to flows drawn as for *established*, SNAT out to the clients. "
             "VIP 198.51.100.1:80, round robin over 4 real servers, "
             "NAT rewrite and checksums included; every frame checked to come out as Tx on the "
             "internal port (a reply: the external port). ns/packet is wall time of the measured loop / packets (best and median "
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
    all_recs, recs = recs, [r for r in recs if family(r) == 4]
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
    L.extend(ipv6_part(all_recs, profile))
    L.append("### Commands")
    L.append("")
    L.extend(bench_records.code_block(c.replace(work, "$WORK") if work else c for c in commands))
    L.append("")
    L.extend(bench_records.raw_results(all_recs))
    return L


def ipv6_part(recs, profile=lambda r: None):
    """The IPv6 runs beside IPv4's (prefetch on): ns/packet best and callgrind's instructions per
    packet of both, IPv6 / IPv4, and whether IPv6 is within V6_TARGET, then IPv6's profile as
    report()'s for IPv4 (`profile`); nothing without IPv6 records."""
    six = [r for r in recs if family(r) == 6]
    if not six:
        return []
    by = {}
    for r in recs:
        if r.get("prefetch", True) and not r.get("error"):
            by[(r["mode"], family(r), r["proto"], r["path"], r["flows"])] = r

    def ns(f, k):
        r = by.get(("native", f) + k)
        return r["ns_best"] if r else None

    def ipp(f, k):
        r = by.get(("callgrind", f) + k)
        return r["ir"] / r["packets"] if r and r.get("ir") else None

    def ratio(a, b):
        return f"{b / a:.2f}" if a and b else ""

    def num(x, fmt):
        return format(x, fmt) if x is not None else ""

    L = ["### IPv6 beside IPv4", "",
         f"The same points with `--family 6` (80-byte IPv6 frames: the 60-byte IPv4 frame's L4 header "
         f"and payload; VIP [2001:db8:100::1]:80, real servers 2001:db8:2::2-5, clients in "
         f"2001:db8:100::/64). Target: IPv6 within {V6_TARGET:.0%} of IPv4 per packet "
         f"(ratio <= {1 + V6_TARGET:.2f}); instructions are the measure that does not move with "
         f"the machine's load.", "",
         "| proto | path | flows | ns/pkt v4 | ns/pkt v6 | v6/v4 | instr/pkt v4 | instr/pkt v6 | v6/v4 | within target |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in six:
        k = (r["proto"], r["path"], r["flows"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        n4, n6, i4, i6 = ns(4, k), ns(6, k), ipp(4, k), ipp(6, k)
        # Instructions judge where callgrind ran; elsewhere (10M flows) the time does, and
        # the verdict says so.
        by_time = not (i4 and i6)
        a, b = (n4, n6) if by_time else (i4, i6)
        ok = "" if not (a and b) else "yes" if b / a <= 1 + V6_TARGET else "no"
        if ok and by_time:
            ok += " (by time)"
        L.append(f"| {k[0]} | {k[1]} | {fl(k[2])} | {num(n4, '.1f')} | {num(n6, '.1f')} | {ratio(n4, n6)} | "
                 f"{num(i4, '.0f')} | {num(i6, '.0f')} | {ratio(i4, i6)} | {ok} |")
    L.append("")
    failed = [r for r in six if r.get("error")]
    if failed:
        L.append("Failed IPv6 runs: " + ", ".join(f"{r['mode']} {r['proto']} {r['path']} {fl(r['flows'])} "
                                                 f"({r['error']})" for r in failed) + ".")
        L.append("")
    prof = [(r, profile(r)) for r in six
            if r["mode"] == "callgrind" and r["proto"] == "udp" and not r.get("error")]
    prof = [(r, p) for r, p in prof if p and r["flows"] == max(x["flows"] for x, _ in prof)]
    if prof:
        L.append("IPv6's self instructions per packet by function (UDP, as for IPv4 above):")
        L.append("")
        for r, p in prof:
            L.append(f"{r['path']}, {fl(r['flows'])} flows: " +
                     ", ".join(f"`{fn.split('::', 1)[-1]}` {n:.0f}" for fn, n in p))
            L.append("")
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
                if family(r) != 4:
                    continue
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
