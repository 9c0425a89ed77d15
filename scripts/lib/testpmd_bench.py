"""scripts/testpmd-bench.sh's parsing and statistics: stock dpdk-testpmd's output, one JSON
record per point, the median ratio of interleaved pairs, and its section of benches/RESULTS.md.

    testpmd_bench.py point GEN_LOG REFLECTOR_LOG [COUNTERS]  one point's figures as JSON (stdout);
                                                    COUNTERS: `rvsctl counters` after an rvsd point
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


def port_stats_blocks(text):
    """The `show port stats` blocks of testpmd's output, in order: dicts with rx_packets,
    tx_packets (cumulative), rx_pps and tx_pps (since the previous show of that port)."""
    blocks = []
    for part in re.split(r"#+ NIC statistics for port \d+\s*#+", text)[1:]:
        fields = {}
        for key, pat in (("rx_packets", r"RX-packets:\s*" + _NUM), ("tx_packets", r"TX-packets:\s*" + _NUM),
                         ("rx_pps", r"Rx-pps:\s*" + _NUM), ("tx_pps", r"Tx-pps:\s*" + _NUM)):
            m = re.search(pat, part)
            if m:
                fields[key] = int(m.group(1))
        if len(fields) == 4:
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


# rvsd's counters a point keeps (when it ran rvsd).
KEPT_COUNTERS = ("port.ext.rx_packets", "port.ext.tx_packets", "port.int.rx_packets", "port.int.tx_packets",
                 "dnat", "snat", "drop.ttl_expired", "drop.tx_full", "drop.neigh_unresolved")


def point(gen_text, refl_text, counters_text=None):
    """One point from the generator's output (interactive: `show port stats 0` at the end of
    the warm-up and at the end of the measurement, then `stop`) and the reflector's. The
    delivered rate is the generator's Rx-pps between the two shows (testpmd times it itself);
    `window_lost` is what it sent in that window less what came back. Raises ValueError when
    the output lacks what is needed."""
    blocks = port_stats_blocks(gen_text)
    if len(blocks) < 2:
        raise ValueError("the generator printed %d port stats blocks (need 2)" % len(blocks))
    a, b = blocks[-2], blocks[-1]
    sent, received = b["tx_packets"] - a["tx_packets"], b["rx_packets"] - a["rx_packets"]
    out = {"mpps": b["rx_pps"] / 1e6, "tx_mpps": b["tx_pps"] / 1e6, "window_sent": sent,
           "window_received": received, "window_lost": sent - received}
    fwd = forward_stats(gen_text)
    if fwd:
        out.update(sent=fwd["tx"], received=fwd["rx"], lost=fwd["tx"] - fwd["rx"], gen_tx_dropped=fwd["tx_dropped"])
    # The reflector's last periodic stats (its forward statistics at exit read 0 once its memif
    # peer has gone).
    refl = port_stats_blocks(refl_text)
    if refl:
        out.update(reflector_rx=refl[-1]["rx_packets"], reflector_tx=refl[-1]["tx_packets"])
    if counters_text is not None:
        c = bench_records.rvsd_counters(counters_text)
        out["rvsd"] = {k: c[k] for k in KEPT_COUNTERS if k in c}
    ttl = out.get("rvsd", {}).get("drop.ttl_expired", 0)
    if received <= 0 or ttl:
        # Frames lost to TTL leave the loop for good: what is left is no sustained rate.
        why = ("no frame came back to the client during the measurement" if received <= 0 else
               "the loop lost frames during the run, so the rate is not sustained")
        if fwd:
            why += " (%d came back in all since start tx_first)" % fwd["rx"]
        if ttl:
            why += ("; rvsd dropped %d for TTL expiry: it decrements TTL each way and 5tswap never "
                    "restores it, so a closed loop dies after about 32 round trips" % ttl)
        out["error"] = why
    return out


def pair_ratios(records):
    """Ratios rvsd / direct of the pairs (records with a `pair` index and `dut` rvsd or direct),
    in pair order; a pair with a failed or zero point gives none."""
    return bench_records.pair_ratios(records, "rvsd", "direct",
                                     lambda r: None if r.get("error") else r.get("mpps", 0))


def _fmt_int(v):
    return "-" if v is None else str(v)


def section(records, meta):
    """The lines of the section."""
    lines = [
        "## Stock dpdk-testpmd against rvsd (scripts/testpmd-bench.sh)",
        "",
        "- command: `%s`" % meta.get("command", "?"),
        "- date: %s; commit: %s; DPDK %s" % (meta.get("date", "?"), meta.get("commit", "?"), meta.get("dpdk", "?")),
        "- machine: %s CPUs, %s; kernel %s" % (meta.get("nproc", "?"), meta.get("cpu", "?"), meta.get("kernel", "?")),
        "- load average at start: %s" % meta.get("load", "?"),
        "- traffic: one UDP flow 198.51.100.10:1024 -> 198.51.100.1:9000, 64-byte frames, %s frames "
        "kept in flight (closed loop seeded by `start tx_first`), warm-up %s s, measured %s s per point"
        % (meta.get("inflight", "?"), meta.get("warmup", "?"), meta.get("duration", "?")),
        "- rvsd: the real servers 192.0.2.2, 192.0.2.3 as static `[[neighbours]]` at the reflecting "
        "testpmd's MAC; the client learnt from its traffic",
        "- CPUs: %s" % meta.get("cpus", "?"),
        "",
    ]
    if meta.get("note"):
        lines += ["**%s**" % meta["note"], ""]
    lines += ["| pair | DUT | delivered Mpps | sent (window) | received (window) | lost (window) | "
              "sent - received (run) | load | status |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        err = r.get("error")
        mpps = "-" if err or r.get("mpps") is None else "%.3f" % r["mpps"]
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r.get("pair", "?"), r.get("dut", "?"), mpps, _fmt_int(r.get("window_sent")),
            _fmt_int(r.get("window_received")), _fmt_int(r.get("window_lost")), _fmt_int(r.get("lost")),
            r.get("load", "?"), "failed: " + err if err else "ok"))
    lines.append("")
    for r in records:
        if r.get("rvsd"):
            lines.append("- pair %s, rvsd's counters after the point (`rvsctl counters`): %s" % (
                r.get("pair", "?"), ", ".join("%s %s" % kv for kv in r["rvsd"].items())))
    if any(r.get("rvsd") for r in records):
        lines.append("")
    s = bench_records.ratio_summary(pair_ratios(records))
    if s:
        lines.append("rvsd / direct (median of %d pairs): **%.3f** (spread %.3f-%.3f): %s." % (
            s["n"], s["median"], s["min"], s["max"], s["verdict"]))
    else:
        lines.append("rvsd / direct: no complete pair, no ratio.")
    lines.append("")
    lines.append("\"sent - received (run)\" counts from `start tx_first` to `stop`, so it includes the "
                 "frames still in flight at `stop` (up to %s)." % meta.get("inflight", "?"))
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
            lines.append("pair %s %s: %.3f Mpps delivered, window lost %s, run sent-received %s" % (
                r.get("pair"), r.get("dut"), r.get("mpps", 0), r.get("window_lost"), r.get("lost")))
    if s:
        lines.append("rvsd / direct median %.3f (min %.3f, max %.3f, %d pairs): %s" % (
            s["median"], s["min"], s["max"], s["n"], s["verdict"]))
    return "\n".join(lines)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "point" and len(argv) in (4, 5):
        texts = []
        for p in argv[2:]:
            try:
                with open(p, errors="replace") as f:
                    texts.append(f.read())
            except FileNotFoundError:
                texts.append(None if p == argv[-1] and len(argv) == 5 else "")
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
