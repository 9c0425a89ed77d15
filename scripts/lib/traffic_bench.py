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
    traffic_bench.py tag SRC DST KEY=VALUE...  append SRC's records to DST with the pairs set
    traffic_bench.py scaling RECORDS OUT KEY=VALUE...
                                           write the scaling-bench section of OUT
                                           (scripts/scaling-bench.sh: bench.sh's records of
                                           several worker counts, KEY=VALUE: SCALING_FIELDS)
    traffic_bench.py rss-check RECORDS     exit 1 unless every rvs run on 2+ workers shows
                                           replies SNATed on the other worker (see rss_check)

A record holds the KEY=VALUE pairs bench.sh knows (dut, point, family, pair, load, commands,
busy_before, busy_during, dut_error, error, ...), under "pktgen" rvs-pktgen's JSON result and,
under "rvsd", rvsd's per-worker counters (from the file named by the pair rvsd_counters=FILE).
The DUTs run interleaved, pair by pair (rvs, testpmd, rvs, testpmd, ...), and a point's ratio
is the median of its pairs' ratios with their spread (bench_records.ratio_summary). An IPv6
point (family 6) is named as its IPv4 twin with a 6 after the protocol (udp6-1K beside
udp-1K); run in the same pairs, the two give the "IPv6 beside IPv4" table (ipv6_table). The
report's KEY=VALUE pairs are the fields of REPORT_FIELDS (families optional: "4" without it).
"""

import argparse
import sys

import bench_records
import pipeline_bench
import results_section

# What the report's header says about the run, given by bench.sh.
REPORT_FIELDS = ("date", "nproc", "cpu", "kernel", "dpdk", "commit", "command", "load", "mode",
                 "warmup", "duration", "flows", "lat_rate", "newconn_capacity", "binaries", "nice",
                 "pairs", "workers", "cpus", "shared_core")

# Issue #16's target: IPv6 within 15 % of IPv4 per packet.
V6_TARGET = 1.15

# The loss an rvs run on several workers may have and still pass rss_check, not counting the
# replies the DUT's full RX rings refused (overload, not a fault: rvs-pktgen's single-worker
# runs lose about 0.01 % in all).
RSS_MAX_LOSS_PCT = 0.1


def record(pg_json, pairs):
    """One point's record: the pairs, plus rvs-pktgen's result read from the file `pg_json`
    (none when it is empty); a result that cannot be read becomes the record's error."""
    rec = dict(pairs)
    for k in ("pair", "workers", "family"):
        if k in rec:
            rec[k] = int(rec[k])
    counters = rec.pop("rvsd_counters", None)
    if counters:
        text = bench_records.read_text(counters)
        if text is not None:
            c = bench_records.rvsd_counters(text)
            rec["rvsd"] = {k: v for k, v in c.items()
                           if k.startswith("worker.") or k in ("dnat", "snat") or (k.startswith("drop.") and v)}
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
        return "  %s %s%s: %.3f Mpps, loss %.4f %%, p50 %.1f us, p99 %.1f us, mismatches %d%s" % (
            r["dut"], r["point"], pair_tag(r), p["delivered_mpps"], p["loss_pct"], l["p50"], l["p99"],
            p["mismatches"] + p["server_mismatches"],
            ("; DUT: " + r["dut_error"]) if r.get("dut_error") else "")
    return "  %s %s: FAILED: %s %s" % (r["dut"], r["point"], p.get("error", r.get("error", "no result")),
                                       r.get("dut_error", ""))


def result(r):
    """(rvs-pktgen's result, note) of a record: (None, why) when it has no figures, else the
    result and the DUT's error, if any."""
    p = r.get("pktgen") or {}
    if "delivered_mpps" not in p:
        why = p.get("error") or r.get("error") or r.get("dut_error") or "no result"
        if r.get("dut_error") and r.get("dut_error") not in why:
            why += "; DUT: " + r["dut_error"]
        return None, why
    return p, r.get("dut_error")


def rate(r):
    """A record's delivered Mpps, None when it has no figures."""
    p, _ = result(r)
    return None if p is None else p["delivered_mpps"]


def runs(recs, dut, point):
    """The records of a DUT's point, in the order measured (one per pair)."""
    return [r for r in recs if r["dut"] == dut and r["point"] == point]


def median_run(rs):
    """The run with the median rate of the runs `rs` that have figures (the lower one of an
    even count), None when none has."""
    ok = sorted((r for r in rs if rate(r) is not None), key=rate)
    return ok[(len(ok) - 1) // 2] if ok else None


def pair_tag(r):
    return " (pair %s)" % r["pair"] if "pair" in r else ""


def cells(recs, dut, point, failures, rate_unit=1e6):
    """The four table cells of a DUT's point: rate, loss, latency percentiles, mismatches. The
    rate is the median run's, with the min-max of the runs when there are several; loss and
    latency the median run's; mismatches summed over every run. Appends what went wrong to
    `failures`. rate_unit 1e6 gives Mpps, 1 frames (or connections) per second."""
    rs = runs(recs, dut, point)
    if not rs:
        return ["not run", "", "", ""]
    for r in rs:
        p, why = result(r)
        if p is None:
            failures.append("%s %s%s: %s" % (dut, point, pair_tag(r), why))
        elif why:
            failures.append("%s %s%s (figures kept, measured before): %s" % (dut, point, pair_tag(r), why))
    m = median_run(rs)
    if m is None:
        return ["FAILED", "", "", ""]

    def fmt(v):
        return "%.3f" % v if rate_unit == 1e6 else "{:,.0f}".format(v * 1e6)
    p = m["pktgen"]
    rates = [rate(r) for r in rs if rate(r) is not None]
    text = fmt(p["delivered_mpps"])
    if len(rates) > 1:
        text += " (%s–%s)" % (fmt(min(rates)), fmt(max(rates)))
    if len(rates) < len(rs):
        text += " (%d of %d runs failed)" % (len(rs) - len(rates), len(rs))
    if any(disturbed(r) for r in rs):
        text += " (busy)"
    l = p["latency_us"]
    mism = sum(r["pktgen"]["mismatches"] + r["pktgen"]["server_mismatches"] for r in rs if rate(r) is not None)
    lat = " / ".join("%.1f" % l[k] for k in ("p50", "p99", "p999", "max"))
    return [text, "%.3f" % p["loss_pct"], lat, str(mism)]


def rss(recs, point):
    """rvsd's peak RSS (MB) in the median rvs run of a point, or a dash."""
    m = median_run(runs(recs, "rvs", point))
    return (m or {}).get("dut_rss_mb") or "–"


def ratio(recs, point):
    """The ratio cells of a point: the median of its pairs' rvs / testpmd ratios with their
    spread, and the verdict; dashes without a complete pair."""
    s = bench_records.ratio_summary(bench_records.pair_ratios(
        [r for r in recs if r["point"] == point], "rvs", "testpmd", rate))
    if s is None:
        return ["–", "–"]
    pairs = "%d pair%s" % (s["n"], "" if s["n"] == 1 else "s")
    return ["%.2f (%.2f–%.2f, %s)" % (s["median"], s["min"], s["max"], pairs), s["verdict"]]


HEADER = ("| point | rvs Mpps | loss % | latency us p50 / p99 / p99.9 / max | mismatches | rvsd peak RSS MB "
          "| testpmd Mpps | loss % | latency us p50 / p99 / p99.9 / max | mismatches "
          "| rvs / testpmd: median (min–max) | verdict |")


def v6_name(point):
    """The IPv6 twin's name of an IPv4 point: a 6 after the protocol (udp-1K -> udp6-1K)."""
    return point.replace("-", "6-", 1)


def with_v6(points):
    """Each point followed by its IPv6 twin."""
    return [q for p in points for q in (p, v6_name(p))]


def ipv6_table(recs, points):
    """The lines comparing each IPv4 point with its IPv6 twin, nothing without IPv6 runs: per
    DUT, the median rates and the IPv6 / IPv4 cost per packet, the median of the pairs' ratios
    (IPv4 rate / IPv6 rate of the same pair, run one after the other) with its min–max, and
    whether it is within V6_TARGET, qualified "inconclusive" when the spread does not let the
    median conclude and "busy" when other work disturbed a run."""
    twins = [p for p in points if v6_name(p) != p and v6_name(p) in points]
    if not twins:
        return []
    L = ["### IPv6 beside IPv4", "",
         "Each IPv6 point is its IPv4 point over IPv6 (rvs-pktgen --family 6: VIP [2001:db8:100::1], real "
         "servers 2001:db8:2::2-5, clients in 2001:db8:100::/64, neighbour discovery instead of ARP), run in the "
         "same pairs right after it, so both see the same neighbours. IPv6 frames are 84 bytes on the wire, the "
         "64-byte IPv4 frame's L4 header and payload behind the 20 bytes longer header. Cost per packet IPv6 / "
         "IPv4: the median over the pairs of IPv4 rate / IPv6 rate, with its min–max; target (issue #16): at most "
         "%.2f (IPv6 within %d %% of IPv4 per packet). testpmd io forwards both families' frames unchanged: its "
         "ratio is what the transport and rvs-pktgen alone make of IPv6." % (V6_TARGET, round((V6_TARGET - 1) * 100)),
         "", "| point | DUT | IPv4 Mpps | IPv6 Mpps | cost per packet IPv6 / IPv4: median (min–max) | spread "
         "| within %d %% |" % round((V6_TARGET - 1) * 100),
         "| --- | --- | --- | --- | --- | --- | --- |"]
    for pt in twins:
        for dut in ("rvs", "testpmd"):
            if not runs(recs, dut, pt) and not runs(recs, dut, v6_name(pt)):
                continue
            unit = 1 if pt.endswith("newconn") else 1e6
            a, b = cells(recs, dut, pt, [], unit)[0], cells(recs, dut, v6_name(pt), [], unit)[0]
            fam = [dict(r, dut="v%d" % r.get("family", 4)) for r in recs
                   if r["dut"] == dut and r["point"] in (pt, v6_name(pt))]
            sm = bench_records.ratio_summary(bench_records.pair_ratios(fam, "v4", "v6", rate))
            if sm is None:
                L.append("| %s | %s | %s | %s | – | – | – |" % (pt, dut, a, b))
                continue
            # Wide spread or disturbed runs: the verdict is shown but qualified.
            why = ["inconclusive"] if sm["wide"] else []
            if any(disturbed(r) for r in fam):
                why.append("busy")
            within = ("yes" if sm["median"] <= V6_TARGET else "no") + (" (%s)" % ", ".join(why) if why else "")
            L.append("| %s | %s | %s | %s | %.2f (%.2f–%.2f, %d pair%s) | %s | %s |" % (
                pt, dut, a, b, sm["median"], sm["min"], sm["max"], sm["n"], "" if sm["n"] == 1 else "s",
                sm["verdict"], within))
    L.append("")
    return L


def table(L, recs, points, failures, title, pts, unit=1e6, note=None):
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
    L.append("|" + " --- |" * 12)
    for pt in pts:
        L.append("| %s | %s | %s | %s | %s |" % (
            pt, " | ".join(cells(recs, "rvs", pt, failures, unit)), rss(recs, pt),
            " | ".join(cells(recs, "testpmd", pt, failures, unit)), " | ".join(ratio(recs, pt))))
    L.append("")


def workers_table(recs):
    """The lines on how the rvs runs spread over rvsd's workers: per run, each worker's DNATs
    (client to real server) and SNATs (replies), and the share of replies rvs-pktgen steered to
    another worker than their request's. Nothing when rvsd had one worker."""
    rs = [r for r in recs if r["dut"] == "rvs" and (r.get("pktgen") or {}).get("queues", 1) > 1]
    if not rs:
        return []
    L = ["### Requests and replies by worker", "",
         "rvs-pktgen sends each frame on the queue a hash of its own addresses and ports picks (memif has no RSS), "
         "so a reply after NAT reaches another worker than its request for about 1 - 1/N of the flows; rvsd's "
         "per-worker counters (`rvsctl counters`: worker.N.dnat, worker.N.snat) after each run, counted since its start.",
         "Loss: frames lost in the measurement (rvs-pktgen), and of them the replies rvsd's full RX rings refused "
         "(rvsd too slow for the offered load); the check allows %s %% more." % RSS_MAX_LOSS_PCT,
         "", "| point | pair | DNAT by worker | SNAT by worker | replies steered to another worker | lost / refused by full rings | check |",
         "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rs:
        p, c = r["pktgen"], r.get("rvsd") or {}
        n = p.get("queues", 1)
        tot = p.get("total", {})
        other = tot.get("replies_to_other_queue", 0)
        share = "%d (%.0f %%)" % (other, 100.0 * other / tot["reflected"]) if tot.get("reflected") else str(other)
        problems = rss_problems(r)
        L.append("| %s | %s | %s | %s | %s | %s / %s | %s |" % (
            r["point"], r.get("pair", "–"),
            " / ".join(str(c.get("worker.%d.dnat" % i, "?")) for i in range(n)),
            " / ".join(str(c.get("worker.%d.snat" % i, "?")) for i in range(n)),
            share, p.get("lost", "?"), tot.get("server_tx_drop_win", "?"), "ok" if not problems else "; ".join(problems)))
    L.append("")
    return L


def rss_problems(r, max_loss=RSS_MAX_LOSS_PCT):
    """Why an rvs run on several workers does not show replies landing on any worker handled
    right: no figures, a reply mismatch, loss above `max_loss` % (beyond the replies the DUT's
    full RX rings refused during the measurement: overload, not a fault), no reply steered to
    another worker than its request, or a worker that did no DNAT or no SNAT. Empty when it
    does."""
    p, why = result(r)
    if p is None:
        return ["no figures: " + why]
    out = []
    n = p.get("queues", 1)
    if n < 2:
        out.append("one worker only")
    mism = p["mismatches"] + p["server_mismatches"]
    if mism:
        out.append("%d mismatches" % mism)
    refused = p.get("total", {}).get("server_tx_drop_win", 0)
    lost = max(0, p.get("lost", 0) - refused)
    if p.get("sent") and lost * 100.0 / p["sent"] > max_loss:
        out.append("lost %d of %d (%.3f %%, beyond the %d its full rings refused) > %s %%" % (
            lost, p["sent"], lost * 100.0 / p["sent"], refused, max_loss))
    if not p.get("total", {}).get("replies_to_other_queue"):
        out.append("no reply steered to another worker")
    c = r.get("rvsd")
    if c is None:
        out.append("no rvsd counters")
    else:
        for i in range(n):
            for kind in ("dnat", "snat"):
                if not c.get("worker.%d.%s" % (i, kind)):
                    out.append("worker %d did no %s" % (i, kind.upper()))
    return out


def rss_check(recs):
    """Lines on each rvs run for `rss-check`, and whether all passed (and there was one)."""
    rs = [r for r in recs if r["dut"] == "rvs"]
    lines, ok = [], bool(rs)
    for r in rs:
        problems = rss_problems(r)
        ok = ok and not problems
        lines.append("%s %s%s: %s" % (r["dut"], r["point"], pair_tag(r), "; ".join(problems) or "ok"))
    if not rs:
        lines.append("no rvs run")
    return lines, ok


def instructions_lines(instr, written):
    """The paragraph citing pipeline-bench's instructions per packet, nothing without them."""
    if not instr:
        return []
    parts = ["%s %s %s: %.0f" % (proto, path, pipeline_bench.fl(flows), n) for (proto, path, flows), n in sorted(instr.items())]
    return ["### Instructions per packet (pipeline-bench, callgrind)", "",
            "Instructions do not depend on the neighbours' load, unlike the rates above: the pipeline's own count per "
            "packet (no I/O, no worker loop), from the pipeline-bench section of this file (%s): %s." % (
                (written or "its own header").rstrip("."), "; ".join(parts)), ""]


def report(recs, meta, conf=None, instr=({}, None)):
    """The lines of the traffic-bench section: `recs` the records in the order measured, `meta`
    the REPORT_FIELDS, `conf` the text of the last rvsd configuration (None: left out), `instr`
    pipeline-bench's instructions per packet and its "Written by" line (pipeline_bench.instructions)."""
    bench_records.require(meta, REPORT_FIELDS)
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
        L.append("**Warning: %d of %d runs were measured while other work took CPU time from the benchmark** "
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
        ("DUTs interleaved", "%s pair(s) per point: rvs, testpmd, rvs, testpmd, ..., a fresh DUT each run" % meta["pairs"]),
        ("workers", "%s (rvsd lcores; testpmd forwarding cores; RX/TX queues per memif port)" % meta["workers"]),
        ("CPUs", meta["cpus"]),
        ("address families", meta.get("families") or "4"),
    ]))
    L.append("")
    if meta["shared_core"]:
        L.append("**Not a scaling figure: %s.**" % meta["shared_core"])
        L.append("")
    L.append("Mpps: round trips per second (a client frame to the VIP and the real server's reply back to")
    L.append("the client), 64-byte frames on the wire (60 in the buffer; IPv6 points, named udp6-..., tcp6-...:")
    L.append("84 bytes, 80 in the buffer). The DUT forwards each round trip")
    L.append("twice (client to server, server to client), so it moves 2x the figure. Loss: frames sent during")
    L.append("the measurement whose reply never came. Latency: round trip in microseconds, client to client,")
    L.append("through the DUT twice and rvs-pktgen's reflection once. As fast as the DUT takes frames, the")
    L.append("latency is mostly the memif rings filling up; the fixed-rate point shows it unloaded.")
    L.append("Mismatches: replies not from VIP:vport to the flow's client, bad checksums or TCP flags, and")
    L.append("frames reaching the real-server side that could not be answered.")
    L.append("")
    L.append("Each point runs the DUTs in turn, pair after pair, so that both see the same neighbours: the rates")
    L.append("are the median run's with the min–max of the runs; loss and latency are the median run's; mismatches")
    L.append("the sum over the runs. rvs / testpmd is the median of the pairs' ratios with their min–max; wider")
    L.append("than %.1fx (max / min), or from one pair, it concludes nothing (verdict column)." % bench_records.SPREAD_LIMIT)
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
    established = with_v6(["%s-%s" % (pr, f) for pr in ("udp", "tcp") for f in flows])
    table(L, recs, points, failures, "Established flows", established,
          note="Every flow is opened during the warm-up (TCP: SYN, SYN-ACK, then ACK segments); the measurement sees established flows only. Each flow gets a frame in turn.")
    table(L, recs, points, failures, "New connections per second", with_v6(["udp-newconn", "tcp-newconn"]), unit=1,
          note="Every frame opens a new flow (TCP: a SYN answered with SYN-ACK; UDP: a new client port); a connection counts when its reply reached the client. rvsd's table holds %s connections here; testpmd just forwards the same frames." % meta["newconn_capacity"])
    table(L, recs, points, failures, "Latency at a fixed rate", with_v6(["udp-1K-latency"]),
          note="UDP, 1K flows, %s client frames/s offered." % meta["lat_rate"])
    other = [p for p in points if not (p.endswith("newconn") or p.endswith("latency") or p in established)]
    table(L, recs, points, failures, "Other", other)

    L.extend(ipv6_table(recs, points))
    L.extend(workers_table(recs))
    L.extend(instructions_lines(*instr))

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
            L.append("- %s %s%s: rvs-pktgen was interrupted before the end; figures cover what was measured." % (
                r["dut"], r["point"], pair_tag(r)))
    L.append("- rvs-pktgen runs on one core and does three frames' work per round trip (build, reflect, check) while testpmd io only forwards; at testpmd's rate the generator may be the limit, which flatters the rvs / testpmd ratio.")
    L.append("")
    L.append("### Commands")
    L.append("")
    L.append("Each point starts rvs-pktgen (memif servers), then the DUT (memif clients); the DUT is stopped with SIGTERM once rvs-pktgen has reported.")
    L.append("")
    for r in recs:
        if "pktgen_cmd" in r:
            L.append("- %s %s%s:" % (r["dut"], r["point"], pair_tag(r)))
            L.append("  - DUT: `%s`" % r["dut_cmd"])
            L.append("  - rvs-pktgen: `%s`" % r["pktgen_cmd"])
    L.append("")
    L.extend(bench_records.rvsd_config(conf, "rvsd's configuration of the last rvs run (conntrack.capacity = flows x 1.25 + 65536 for the established-flow points, %s for the new-connection ones; 4x that for IPv6 points, whose table holds a quarter of it):" % meta["newconn_capacity"]))
    L.extend(bench_records.raw_results(
        ({"dut": r["dut"], "point": r["point"], "family": r.get("family", 4), "pair": r.get("pair"), "load": r.get("load"), "busy_before": r.get("busy_before"), "busy_during": r.get("busy_during"), "dut_rss_mb": r.get("dut_rss_mb"), "dut_error": r.get("dut_error"), "error": r.get("error"), "rvsd": r.get("rvsd"), "pktgen": r.get("pktgen")} for r in recs),
        "rvs-pktgen's JSON line for every point, as it printed it:"))
    return L


# What the scaling section's header says about the run, given by scaling-bench.sh.
SCALING_FIELDS = ("date", "nproc", "cpu", "kernel", "dpdk", "commit", "command", "load", "warmup", "duration",
                  "counts", "pairs")


def worker_shares(r):
    """How a run's DNATs and SNATs split over rvsd's workers, in percent ("51/49 DNAT, 50/50
    SNAT"), or a dash without the counters."""
    c, n = (r or {}).get("rvsd") or {}, (r or {}).get("workers", 1)
    out = []
    for kind in ("dnat", "snat"):
        v = [c.get("worker.%d.%s" % (i, kind)) for i in range(n)]
        if None in v or not sum(v):
            return "–"
        out.append("%s %s" % ("/".join("%.0f" % (100.0 * x / sum(v)) for x in v), kind.upper()))
    return ", ".join(out)


def scaling(recs, meta):
    """The lines of the scaling-bench section: `recs` bench.sh's records of every worker count
    (each with `workers` and `pair`, the round over the counts), `meta` the SCALING_FIELDS."""
    bench_records.require(meta, SCALING_FIELDS)
    counts = [int(n) for n in meta["counts"].split()]
    points = []
    for r in recs:
        if r["point"] not in points:
            points.append(r["point"])
    failures, shared = [], {}
    L = ["## Scaling with rvsd's workers (scripts/scaling-bench.sh)", "",
         "Written by `scripts/scaling-bench.sh` between the scaling-bench markers; do not edit by hand, run the script again.", ""]
    L.extend(bench_records.table([
        ("date (UTC)", meta["date"]),
        ("machine", "nproc %s, %s, kernel %s" % (meta["nproc"], meta["cpu"], meta["kernel"])),
        ("DPDK", "%s (Debian packages)" % meta["dpdk"]),
        ("rvs commit", meta["commit"]),
        ("command", "`%s`" % meta["command"]),
        ("run", "warm-up %s s, %s s measured per run; %s rounds over the worker counts %s, each count's run "
                "rvs then testpmd (bench.sh --workers N --pairs 1)" % (meta["warmup"], meta["duration"], meta["pairs"],
                                                                      ", ".join(map(str, counts)))),
        ("load average at start", meta["load"]),
    ]))
    L += ["", "Workers N: rvsd's lcores (testpmd's forwarding cores) on CPUs 0..N-1, one RX/TX queue each per memif "
          "port; rvs-pktgen on CPU N, or on the last CPU when there is none left, and spreads the frames over the "
          "queues by a hash of each frame's own tuple, as RSS would (a reply reaches another worker than its request "
          "for about 1 - 1/N of the flows). Speed-up: the median over the rounds of rvs at N workers / rvs at %d in the "
          "same round, with its min–max; ratios wider than %.1fx, or from one round, conclude nothing. rvs-pktgen is "
          "one core: past its own rate it, not rvsd, is the limit." % (counts[0], bench_records.SPREAD_LIMIT), "",
          "| point | workers | rvs Mpps | testpmd Mpps | rvs / testpmd | rvs speed-up over %d worker(s) | verdict "
          "| DNAT / SNAT by worker %% (median run) |" % counts[0],
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for pt in points:
        for n in counts:
            rs = [r for r in recs if r["point"] == pt and r.get("workers", 1) == n]
            for r in rs:
                if r.get("shared_core"):
                    shared[n] = r["shared_core"]
            rvs = [dict(r, dut="w%d" % r.get("workers", 1)) for r in recs if r["point"] == pt and r["dut"] == "rvs"]
            s = bench_records.ratio_summary(bench_records.pair_ratios(rvs, "w%d" % n, "w%d" % counts[0], rate))
            up, verdict = ("–", "–") if s is None or n == counts[0] else (
                "%.2f (%.2f–%.2f)" % (s["median"], s["min"], s["max"]), s["verdict"])
            ratio_cells = ratio(rs, pt)
            L.append("| %s | %s%s | %s | %s | %s | %s | %s | %s |" % (
                pt, n, " (shared core)" if n in shared else "", cells(rs, "rvs", pt, failures)[0],
                cells(rs, "testpmd", pt, failures)[0], ratio_cells[0], up, verdict,
                worker_shares(median_run(runs(rs, "rvs", pt)))))
    L.append("")
    for n, why in sorted(shared.items()):
        L.append("**%d workers is not a scaling figure: %s.**" % (n, why))
        L.append("")
    L += ["### Failures", ""] + (["- " + f for f in failures] or ["- none: every run ran to the end."]) + [""]
    L.extend(bench_records.raw_results(
        ({"dut": r["dut"], "point": r["point"], "workers": r.get("workers"), "pair": r.get("pair"),
          "busy_before": r.get("busy_before"), "busy_during": r.get("busy_during"), "error": r.get("error"),
          "dut_error": r.get("dut_error"), "rvsd": r.get("rvsd"), "pktgen": r.get("pktgen")} for r in recs),
        "Each run's record (rvs-pktgen's JSON line under pktgen), as bench.sh kept it:"))
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
    a = sub.add_parser("rss-check", help="check the rvs runs on several workers (exit 1 when one fails)")
    a.add_argument("records")
    a = sub.add_parser("tag", help="append SRC's records to DST with the pairs set")
    a.add_argument("src")
    a.add_argument("dst")
    a.add_argument("pairs", nargs="*", metavar="KEY=VALUE")
    a = sub.add_parser("scaling", help="write the scaling-bench section")
    a.add_argument("records")
    a.add_argument("out")
    a.add_argument("meta", nargs="*", metavar="KEY=VALUE")
    bench_records.add_report_parser(sub, "traffic-bench", "rvsd's configuration of the last rvs point (may not exist)")
    args = ap.parse_args(argv)

    if args.cmd == "record":
        bench_records.append(args.records, record(args.pktgen_json, bench_records.parse_pairs(args.pairs)))
    elif args.cmd == "busy":
        print(busy_during(bench_records.read(args.records)[-1]))
    elif args.cmd == "summary":
        print(summary(bench_records.read(args.records)[-1]))
    elif args.cmd == "tag":
        for r in bench_records.read(args.src):
            bench_records.append(args.dst, record("", dict(r, **bench_records.parse_pairs(args.pairs))))
    elif args.cmd == "scaling":
        L = scaling(bench_records.read(args.records), bench_records.parse_pairs(args.meta))
        results_section.write(args.out, "scaling-bench", L)
        print("\n".join(L[:L.index("### Raw results")]))
    elif args.cmd == "rss-check":
        lines, ok = rss_check(bench_records.read(args.records))
        print("\n".join(lines))
        return 0 if ok else 1
    else:
        # benches/RESULTS.md is shared with the other benchmarks, each between its own markers;
        # the pipeline-bench one's instructions per packet are cited.
        instr = pipeline_bench.instructions(bench_records.read_text(args.out) or "")
        bench_records.write_report(args, "traffic-bench", lambda recs, meta, conf: report(recs, meta, conf, instr),
                                   console)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
