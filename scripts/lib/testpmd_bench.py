"""scripts/testpmd-bench.sh's parsing and statistics: stock dpdk-testpmd's output, one JSON
record per point, the median ratio of interleaved pairs, and its section of benches/RESULTS.md.

    testpmd_bench.py point GEN_LOG COUNTER_LOG REFLECTOR_LOG [COUNTERS]
                                                    one point's figures as JSON (stdout); COUNTERS:
                                                    `rvsctl counters` after an rvsd point
    testpmd_bench.py record RECORDS KEY=VALUE...    appends a record (JSON values where they parse)
    testpmd_bench.py report RECORDS OUT KEY=VALUE...  writes the section, prints the summary;
                                                    exits 1 when a point failed
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_records  # noqa: E402
import results_section  # noqa: E402

SECTION = "testpmd-bench"

_NUM = r"(\d+)"


def port_stats_blocks(text, port=None):
    """The `show port stats` blocks of testpmd's output, in order (of `port` only, when given):
    dicts with port, rx_packets, tx_packets (cumulative), rx_pps and tx_pps (since the previous
    show of that port)."""
    blocks = []
    parts = re.split(r"#+ NIC statistics for port (\d+)\s*#+", text)
    for num, part in zip(parts[1::2], parts[2::2]):
        if port is not None and int(num) != port:
            continue
        fields = {"port": int(num)}
        for key, pat in (("rx_packets", r"RX-packets:\s*" + _NUM), ("tx_packets", r"TX-packets:\s*" + _NUM),
                         ("rx_pps", r"Rx-pps:\s*" + _NUM), ("tx_pps", r"Tx-pps:\s*" + _NUM)):
            m = re.search(pat, part)
            if m:
                fields[key] = int(m.group(1))
        if len(fields) == 5:
            blocks.append(fields)
    return blocks


def forward_stats(text):
    """testpmd's last "Accumulated forward statistics" (printed at `stop` or at exit):
    rx, rx_dropped, tx, tx_dropped; None when there is none."""
    parts = text.split("Accumulated forward statistics for all ports")
    if len(parts) < 2:
        return None
    last = parts[-1]
    out = {}
    for key, pat in (("rx", r"RX-packets:\s*" + _NUM), ("rx_dropped", r"RX-dropped:\s*" + _NUM),
                     ("tx", r"TX-packets:\s*" + _NUM), ("tx_dropped", r"TX-dropped:\s*" + _NUM)):
        m = re.search(pat, last)
        if not m:
            return None
        out[key] = int(m.group(1))
    return out


# rvsd's counters a point keeps (when it ran rvsd), besides every drop.* counter above 0.
KEPT_COUNTERS = ("port.ext.rx_packets", "port.ext.tx_packets", "port.int.rx_packets", "port.int.tx_packets",
                 "port.ret.rx_packets", "port.ret.tx_packets", "dnat", "snat", "drop.tx_full")


def _window(text, who):
    """The last two `show port stats 0` blocks of a testpmd driven through its fifo."""
    blocks = port_stats_blocks(text, 0)
    if len(blocks) < 2:
        raise ValueError("the %s testpmd printed %d port stats blocks (need 2)" % (who, len(blocks)))
    return blocks[-2], blocks[-1]


def point(gen_text, counter_text, refl_text, counters_text=None):
    """One point from the three testpmds' output: the client (txonly, an open stream) and the
    counting client (rxonly, where the replies arrive) each got `show port stats 0` at the end of
    the warm-up and at the end of the measurement, then `stop`; the reflector printed its stats
    every second. Offered is the client's Tx-pps between its two shows (what its link took),
    delivered the counting testpmd's Rx-pps between its two (testpmd times both itself); the
    window's loss is what was sent less what came back between the shows. Raises ValueError when
    the output lacks what is needed."""
    ga, gb = _window(gen_text, "client")
    ca, cb = _window(counter_text, "counting")
    sent, received = gb["tx_packets"] - ga["tx_packets"], cb["rx_packets"] - ca["rx_packets"]
    out = {"mpps": cb["rx_pps"] / 1e6, "offered_mpps": gb["tx_pps"] / 1e6, "window_sent": sent,
           "window_received": received, "window_lost": sent - received,
           "loss_pct": 100.0 * (sent - received) / sent if sent > 0 else None}
    gen, cnt = forward_stats(gen_text), forward_stats(counter_text)
    if gen:
        # TX-dropped: frames txonly made but its link did not take (the ring toward the DUT full).
        out.update(sent=gen["tx"], gen_tx_refused=gen["tx_dropped"])
        if cnt:
            out.update(received=cnt["rx"], lost=gen["tx"] - cnt["rx"])
    # The reflector's periodic stats, the highest of each port's counts: memif zeroes them when
    # the peer goes (and its forward statistics at exit read 0).
    rx, tx = {}, {}
    for b in port_stats_blocks(refl_text):
        rx[b["port"]] = max(rx.get(b["port"], 0), b["rx_packets"])
        tx[b["port"]] = max(tx.get(b["port"], 0), b["tx_packets"])
    if rx:
        out.update(reflector_rx=sum(rx.values()), reflector_tx=sum(tx.values()))
    if counters_text is not None:
        c = bench_records.rvsd_counters(counters_text)
        out["rvsd"] = {k: v for k, v in c.items()
                       if k in KEPT_COUNTERS or (k.startswith("drop.") and v > 0)}
    if sent <= 0:
        out["error"] = "the client testpmd sent nothing during the measurement"
    elif received <= 0:
        why = "no reply reached the counting testpmd during the measurement"
        if "received" in out:
            why += " (%d in all)" % out["received"]
        out["error"] = why
    return out


def pair_ratios(records):
    """Ratios rvsd / direct of the pairs (records with a `pair` index and `dut` rvsd or direct),
    in pair order; a pair with a failed or zero point gives none."""
    return bench_records.pair_ratios(records, "rvsd", "direct",
                                     lambda r: None if r.get("error") else r.get("mpps", 0))


def _fmt_int(v):
    return "-" if v is None else str(v)


def _fmt_mpps(r, key):
    return "-" if r.get("error") or r.get(key) is None else "%.3f" % r[key]


def _fmt_pct(v):
    return "-" if v is None else "%.1f" % v


def section(records, meta):
    """The lines of the section."""
    lines = [
        "## Stock dpdk-testpmd against rvsd (scripts/testpmd-bench.sh)",
        "",
        "- command: `%s`" % meta.get("command", "?"),
        "- date: %s; commit: %s; DPDK %s" % (meta.get("date", "?"), meta.get("commit", "?"), meta.get("dpdk", "?")),
        "- machine: %s CPUs, %s; kernel %s" % (meta.get("nproc", "?"), meta.get("cpu", "?"), meta.get("kernel", "?")),
        "- load average at start: %s" % meta.get("load", "?"),
        "- traffic: an open stream from testpmd txonly (burst %s), one UDP flow 203.0.113.10:1024 -> "
        "198.51.100.1:9000, 64-byte frames; the replies (198.51.100.1:9000 -> 203.0.113.10:1024) "
        "counted by a second client testpmd in rxonly mode on their own link; warm-up %s s, "
        "measured %s s per point" % (meta.get("burst", "?"), meta.get("warmup", "?"), meta.get("duration", "?")),
        "- rvsd: ext 198.51.100.1/24 from the client, int 192.0.2.1/24 to the real servers "
        "192.0.2.2, 192.0.2.3 (static `[[neighbours]]` at the reflecting testpmd's MAC), ret "
        "203.0.113.1/24 to the counting testpmd (203.0.113.10 a static neighbour at its MAC); "
        "direct: the reflector (two ports, paired) takes the client's link and sends to the counter's",
        "- CPUs: %s" % meta.get("cpus", "?"),
        "",
    ]
    if meta.get("note"):
        lines += ["**%s**" % meta["note"], ""]
    lines += ["| pair | DUT | offered Mpps | delivered Mpps | sent (window) | received (window) | "
              "lost (window) | loss % | sent - received (run) | load | status |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        err = r.get("error")
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r.get("pair", "?"), r.get("dut", "?"), _fmt_mpps(r, "offered_mpps"), _fmt_mpps(r, "mpps"),
            _fmt_int(r.get("window_sent")), _fmt_int(r.get("window_received")), _fmt_int(r.get("window_lost")),
            _fmt_pct(r.get("loss_pct")), _fmt_int(r.get("lost")), r.get("load", "?"),
            "failed: " + err if err else "ok"))
    lines.append("")
    for r in records:
        if "reflector_rx" in r or "gen_tx_refused" in r:
            lines.append("- pair %s %s: the reflector received %s and sent %s; the client's full link "
                         "refused %s frames" % (r.get("pair", "?"), r.get("dut", "?"), _fmt_int(r.get("reflector_rx")),
                                                _fmt_int(r.get("reflector_tx")), _fmt_int(r.get("gen_tx_refused"))))
        if r.get("rvsd"):
            lines.append("- pair %s, rvsd's counters after the point (`rvsctl counters`; drops above 0 only): %s"
                         % (r.get("pair", "?"), ", ".join("%s %s" % kv for kv in r["rvsd"].items())))
    if any(r.get("rvsd") or "reflector_rx" in r or "gen_tx_refused" in r for r in records):
        lines.append("")
    s = bench_records.ratio_summary(pair_ratios(records))
    if s:
        lines.append("rvsd / direct, delivered Mpps (median of %d pairs): **%.3f** (spread %.3f-%.3f): %s." % (
            s["n"], s["median"], s["min"], s["max"], s["verdict"]))
    else:
        lines.append("rvsd / direct: no complete pair, no ratio.")
    lines.append("")
    lines.append("Offered is what the client's link took (memif pushes back: a full ring refuses "
                 "frames, which txonly counts as its TX-dropped, not sent); the window's loss "
                 "counts the frames in the rings at its edges (up to 16384 a ring) and can come out slightly "
                 "negative; \"sent - received (run)\" counts from `start` to `stop` (the counting testpmd stops "
                 "last).")
    failed = [r for r in records if r.get("error")]
    if failed:
        lines.append("")
        lines.append("%d point(s) failed." % len(failed))
    return lines


def _value(v):
    try:
        return json.loads(v)
    except ValueError:
        return v


def _kv(args):
    out = {}
    for a in args:
        k, _, v = a.partition("=")
        out[k] = v
    return out


def read_records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summary_text(records):
    s = bench_records.ratio_summary(pair_ratios(records))
    lines = []
    for r in records:
        if r.get("error"):
            lines.append("pair %s %s: FAILED: %s" % (r.get("pair"), r.get("dut"), r["error"]))
        else:
            lines.append("pair %s %s: %.3f Mpps offered, %.3f delivered, window lost %s (%s %%), "
                         "run sent-received %s" % (
                             r.get("pair"), r.get("dut"), r.get("offered_mpps") or 0, r.get("mpps", 0),
                             r.get("window_lost"), _fmt_pct(r.get("loss_pct")), r.get("lost")))
    if s:
        lines.append("rvsd / direct median %.3f (min %.3f, max %.3f, %d pairs): %s" % (
            s["median"], s["min"], s["max"], s["n"], s["verdict"]))
    return "\n".join(lines)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "point" and len(argv) in (5, 6):
        texts = []
        for p in argv[2:]:
            try:
                with open(p, errors="replace") as f:
                    texts.append(f.read())
            except FileNotFoundError:
                texts.append(None if p == argv[-1] and len(argv) == 6 else "")
        try:
            print(json.dumps(point(*texts)))
        except ValueError as e:
            print(json.dumps({"error": str(e)}))
        return 0
    if cmd == "record" and len(argv) >= 3:
        rec = {}
        for k, v in _kv(argv[3:]).items():
            if k == "json":
                if v:
                    rec.update(json.loads(v))
            else:
                rec[k] = _value(v) if k in ("pair",) else v
        with open(argv[2], "a") as f:
            f.write(json.dumps(rec) + "\n")
        return 0
    if cmd == "report" and len(argv) >= 4:
        records = read_records(argv[2])
        results_section.write(argv[3], SECTION, section(records, _kv(argv[4:])))
        print(summary_text(records))
        return 1 if any(r.get("error") for r in records) or not records else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
