"""The records and the report of scripts/bench.sh, the traffic benchmark (rvs-pktgen against
rvsd, then against dpdk-testpmd, over memif).

bench.sh calls it once per measurement and once at the end:

    traffic_bench.py record RECORDS PKTGEN_JSON KEY=VALUE...   append a point's record
    traffic_bench.py busy RECORDS          the last record's busy_during (an integer)
    traffic_bench.py summary RECORDS       the last record as one line (for stderr)
    traffic_bench.py report RECORDS OUT RVS_TOML KEY=VALUE...
                                           write the traffic-bench section of OUT (with
                                           rvsd's configuration RVS_TOML when it exists);
                                           the figures also on stdout

A record holds the KEY=VALUE pairs bench.sh knows (dut, point, load, commands, busy_before,
busy_during, dut_error, error, ...) and, under "pktgen", rvs-pktgen's JSON result. The report's
KEY=VALUE pairs are the fields of REPORT_FIELDS.
"""

import argparse
import sys

import bench_records

# What the report's header says about the run, given by bench.sh.
REPORT_FIELDS = ("date", "nproc", "cpu", "kernel", "dpdk", "commit", "command", "load", "mode",
                 "warmup", "duration", "flows", "lat_rate", "newconn_capacity", "binaries", "nice")


def record(pg_json, pairs):
    """One point's record: the pairs, plus rvs-pktgen's result read from the file `pg_json`
    (none when it is empty); a result that cannot be read becomes the record's error."""
    rec = dict(pairs)
    if pg_json:
        try:
            pg = bench_records.last_json_line(pg_json)
            if pg is not None:
                rec["pktgen"] = pg
        except (OSError, ValueError) as e:
            rec.setdefault("error", "cannot read rvs-pktgen's result: %s" % e)
    return rec


def busy_during(rec):
    """The share of CPU time (%) other work took during the point, 0 when not known."""
    return int(rec.get("busy_during") or 0)


def disturbed(rec):
    """Whether other work took CPU time before (> 15 %) or during (> 5 %) the point."""
    return int(rec.get("busy_before") or 0) > 15 or int(rec.get("busy_during") or 0) > 5


def summary(r):
    """One line on a point's outcome, for the log."""
    p = r.get("pktgen", {})
    if "delivered_mpps" in p:
        l = p["latency_us"]
        return "  %s %s: %.3f Mpps, loss %.4f %%, p50 %.1f us, p99 %.1f us, mismatches %d%s" % (
            r["dut"], r["point"], p["delivered_mpps"], p["loss_pct"], l["p50"], l["p99"],
            p["mismatches"] + p["server_mismatches"],
            ("; DUT: " + r["dut_error"]) if r.get("dut_error") else "")
    return "  %s %s: FAILED: %s %s" % (r["dut"], r["point"], p.get("error", r.get("error", "no result")),
                                       r.get("dut_error", ""))


def result(by, dut, point):
    """(rvs-pktgen's result, note) for a point of a DUT, where `by` maps (dut, point) to its
    record: (None, why) when it has no figures ("not run" when it has no record), else the
    result and the DUT's error, if any."""
    r = by.get((dut, point))
    if r is None:
        return None, "not run"
    p = r.get("pktgen") or {}
    if "delivered_mpps" not in p:
        why = p.get("error") or r.get("error") or r.get("dut_error") or "no result"
        if r.get("dut_error") and r.get("dut_error") not in why:
            why += "; DUT: " + r["dut_error"]
        return None, why
    return p, r.get("dut_error")


def cells(by, dut, point, failures, rate_unit=1e6):
    """The four table cells of a DUT's point: rate, loss, latency percentiles, mismatches.
    Appends what went wrong to `failures`. rate_unit 1e6 gives Mpps, 1 frames (or
    connections) per second."""
    p, why = result(by, dut, point)
    if p is None:
        if why != "not run":
            failures.append("%s %s: %s" % (dut, point, why))
            return ["FAILED", "", "", ""]
        return ["not run", "", "", ""]
    if why:
        failures.append("%s %s (figures kept, measured before): %s" % (dut, point, why))
    l = p["latency_us"]
    mism = p["mismatches"] + p["server_mismatches"]
    rate = "%.3f" % p["delivered_mpps"] if rate_unit == 1e6 else "{:,.0f}".format(p["delivered_mpps"] * 1e6)
    lat = " / ".join("%.1f" % l[k] for k in ("p50", "p99", "p999", "max"))
    if disturbed(by[(dut, point)]):
        rate += " (busy)"
    return [rate, "%.3f" % p["loss_pct"], lat, str(mism)]


def rss(by, point):
    """rvsd's peak RSS (MB) in a point, or a dash."""
    r = by.get(("rvs", point))
    return (r or {}).get("dut_rss_mb") or "–"


def ratio(by, point):
    """rvs's delivered rate as a ratio of testpmd's, or a dash when either has no figure."""
    a, _ = result(by, "rvs", point)
    b, _ = result(by, "testpmd", point)
    if a is None or b is None or b["delivered_mpps"] == 0:
        return "–"
    return "%.2f" % (a["delivered_mpps"] / b["delivered_mpps"])


HEADER = ("| point | rvs Mpps | loss % | latency us p50 / p99 / p99.9 / max | mismatches | rvsd peak RSS MB "
          "| testpmd Mpps | loss % | latency us p50 / p99 / p99.9 / max | mismatches | rvs / testpmd |")


def table(L, by, points, failures, title, pts, unit=1e6, note=None):
    """Appends to L a table of the points `pts` that ran (in `points`), under `title`."""
    pts = [p for p in pts if p in points]
    if not pts:
        return
    L.append("### " + title)
    L.append("")
    if note:
        L.append(note)
        L.append("")
    h = HEADER if unit == 1e6 else HEADER.replace("rvs Mpps", "rvs conn/s").replace("testpmd Mpps", "testpmd frames/s")
    L.append(h)
    L.append("|" + " --- |" * 11)
    for pt in pts:
        L.append("| %s | %s | %s | %s | %s |" % (pt, " | ".join(cells(by, "rvs", pt, failures, unit)), rss(by, pt),
                                                 " | ".join(cells(by, "testpmd", pt, failures, unit)), ratio(by, pt)))
    L.append("")


def report(recs, meta, conf=None):
    """The lines of the traffic-bench section: `recs` the records in the order measured, `meta`
    the REPORT_FIELDS, `conf` the text of the last rvsd configuration (None: left out)."""
    bench_records.require(meta, REPORT_FIELDS)
    by = {(r["dut"], r["point"]): r for r in recs}
    points = []
    for r in recs:
        if r["point"] not in points:
            points.append(r["point"])
    failures = []

    L = []
    L.append("## Traffic benchmark: rvs-pktgen over memif")
    L.append("")
    L.append("Written by `scripts/bench.sh` between the traffic-bench markers; do not edit by hand, run the script again.")
    L.append("")
    busy = [r for r in recs if "pktgen" in r and disturbed(r)]
    if busy:
        L.append("**Warning: %d of %d points were measured while other work took CPU time from the benchmark** "
                 "(marked \"(busy)\"). Their figures are far below what rvs and testpmd do on a quiet machine "
                 "and say nothing about either; run the script again when nothing else runs." % (len(busy), len(recs)))
        L.append("")
    L.extend(bench_records.table([
        ("date (UTC)", meta["date"]),
        ("machine", "nproc %s, %s, kernel %s" % (meta["nproc"], meta["cpu"], meta["kernel"])),
        ("DPDK", "%s (Debian packages)" % meta["dpdk"]),
        ("rvs commit", meta["commit"]),
        ("binaries built (UTC)", meta["binaries"]),
        ("command", "`%s`" % meta["command"]),
        ("run", "%s: warm-up %s s (and until every flow is open), %s s measured per point" % (
            meta["mode"] or "full", meta["warmup"], meta["duration"])),
        ("load average at start", "%s (other work on these 2 cores skews every figure)" % meta["load"]),
        ("niceness of rvs-pktgen and the DUT", meta["nice"]),
    ]))
    L.append("")
    L.append("Mpps: round trips per second (a client frame to the VIP and the real server's reply back to")
    L.append("the client), 64-byte frames on the wire (60 in the buffer). The DUT forwards each round trip")
    L.append("twice (client to server, server to client), so it moves 2x the figure. Loss: frames sent during")
    L.append("the measurement whose reply never came. Latency: round trip in microseconds, client to client,")
    L.append("through the DUT twice and rvs-pktgen's reflection once. As fast as the DUT takes frames, the")
    L.append("latency is mostly the memif rings filling up; the fixed-rate point shows it unloaded.")
    L.append("Mismatches: replies not from VIP:vport to the flow's client, bad checksums or TCP flags, and")
    L.append("frames reaching the real-server side that could not be answered.")
    L.append("")
    L.append("\"(busy)\": other work used more than 15 % of the CPUs just before that point or more than 5 %")
    L.append("during it (busy_before, busy_during in the raw results); its figures are low by an unknown amount.")
    L.append("rvsd peak RSS: VmHWM")
    L.append("of rvsd (heap, where the connection table lives; hugepages not included).")
    L.append("")
    L.append("Targets (DESIGN.md, per worker core): >= 10 Mpps forwarded at 1M established flows, >= 0.8x")
    L.append("testpmd io over the same transport, >= 1M new connections/s.")
    L.append("")

    flows = meta["flows"].split()
    established = ["%s-%s" % (pr, f) for pr in ("udp", "tcp") for f in flows]
    table(L, by, points, failures, "Established flows", established,
          note="Every flow is opened during the warm-up (TCP: SYN, SYN-ACK, then ACK segments); the measurement sees established flows only. Each flow gets a frame in turn.")
    table(L, by, points, failures, "New connections per second", ["udp-newconn", "tcp-newconn"], unit=1,
          note="Every frame opens a new flow (TCP: a SYN answered with SYN-ACK; UDP: a new client port); a connection counts when its reply reached the client. rvsd's table holds %s connections here; testpmd just forwards the same frames." % meta["newconn_capacity"])
    table(L, by, points, failures, "Latency at a fixed rate", ["udp-1K-latency"],
          note="UDP, 1K flows, %s client frames/s offered." % meta["lat_rate"])
    other = [p for p in points if not (p.endswith("newconn") or p.endswith("latency") or p in established)]
    table(L, by, points, failures, "Other", other)

    L.append("### Failures and notes")
    L.append("")
    if failures:
        for f in failures:
            L.append("- " + f)
    else:
        L.append("- none: every point ran to the end.")
    for r in recs:
        p = r.get("pktgen", {})
        if p.get("interrupted"):
            L.append("- %s %s: rvs-pktgen was interrupted before the end; figures cover what was measured." % (r["dut"], r["point"]))
    L.append("- rvs-pktgen runs on one core and does three frames' work per round trip (build, reflect, check) while testpmd io only forwards; at testpmd's rate the generator may be the limit, which flatters the rvs / testpmd ratio.")
    L.append("")
    L.append("### Commands")
    L.append("")
    L.append("Each point starts rvs-pktgen (memif servers), then the DUT (memif clients); the DUT is stopped with SIGTERM once rvs-pktgen has reported.")
    L.append("")
    for r in recs:
        if "pktgen_cmd" in r:
            L.append("- %s %s:" % (r["dut"], r["point"]))
            L.append("  - DUT: `%s`" % r["dut_cmd"])
            L.append("  - rvs-pktgen: `%s`" % r["pktgen_cmd"])
    L.append("")
    L.extend(bench_records.rvsd_config(conf, "rvsd's configuration (conntrack.capacity = flows x 1.25 + 65536 for the established-flow points, %s for the new-connection ones):" % meta["newconn_capacity"]))
    L.extend(bench_records.raw_results(
        ({"dut": r["dut"], "point": r["point"], "load": r.get("load"), "busy_before": r.get("busy_before"), "busy_during": r.get("busy_during"), "dut_rss_mb": r.get("dut_rss_mb"), "dut_error": r.get("dut_error"), "error": r.get("error"), "pktgen": r.get("pktgen")} for r in recs),
        "rvs-pktgen's JSON line for every point, as it printed it:"))
    return L


def console(L):
    """The part of the section worth printing: the tables and the failures, without the
    commands and raw data."""
    L = bench_records.up_to_commands(L)
    first = next((i for i, l in enumerate(L) if l.startswith("### ")), 0)
    return "\n".join(L[first:])


def main(argv):
    ap = argparse.ArgumentParser(prog="traffic_bench.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("record", help="append a point's record")
    a.add_argument("records")
    a.add_argument("pktgen_json", help="rvs-pktgen's output, or '' for none")
    a.add_argument("pairs", nargs="*", metavar="KEY=VALUE")
    a = sub.add_parser("busy", help="print the last record's busy_during")
    a.add_argument("records")
    a = sub.add_parser("summary", help="print the last record as one line")
    a.add_argument("records")
    bench_records.add_report_parser(sub, "traffic-bench", "rvsd's configuration of the last rvs point (may not exist)")
    args = ap.parse_args(argv)

    if args.cmd == "record":
        bench_records.append(args.records, record(args.pktgen_json, bench_records.parse_pairs(args.pairs)))
    elif args.cmd == "busy":
        print(busy_during(bench_records.read(args.records)[-1]))
    elif args.cmd == "summary":
        print(summary(bench_records.read(args.records)[-1]))
    else:
        # benches/RESULTS.md is shared with the other benchmarks, each between its own markers.
        bench_records.write_report(args, "traffic-bench", report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
