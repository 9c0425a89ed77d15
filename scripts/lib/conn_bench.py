"""scripts/conn-bench.sh's searches and report: RFC 9693's stateful measures with complete TCP
connections (rvs-pktgen --conn-test), one trial per run of rvs-pktgen and a fresh DUT.

    conn_bench.py record RECORDS PG_JSON KEY=VALUE...  appends one trial (rvs-pktgen's JSON line
                                                   and the script's fields)
    conn_bench.py next RECORDS KEY=VALUE...          the next value a search tries, or "done":
                                                   dut=, measure=, lo=, hi=, steps=, retries=,
                                                   gap_ms=, grain=
    conn_bench.py report RECORDS OUT CONF KEY=VALUE... writes the conn-bench section

A search is a binary search over the value (connections per second, or connections held): the
first trial is at `hi`; then each trial halves the interval between the highest value that
passed (`lo` before any) and the lowest that failed, `steps` trials at most (retries apart). A
trial passes when every connection of every measured phase completed with no fault (zero
loss) and, for the rates, rvs-pktgen offered at least 95 % of the rate asked. A failed trial in which rvs-pktgen was off its CPU longer than `gap_ms` (a shared
machine: the memif rings overflow while it is away) is measured again, `retries` times at most;
the report says which were.
"""

import json
import sys

import bench_records

SECTION = "conn-bench"
MEASURES = ("setup", "teardown", "capacity")
UNITS = {"setup": "connections/s", "teardown": "connections/s", "capacity": "connections"}


# rvsd's drops that a generator off its CPU causes (its rings full) or that every run has.
RING_DROPS = ("drop.tx_full", "drop.arp_reply")


# A rate trial counts only when rvs-pktgen offered at least this share of the rate asked (it
# holds new connections back while the DUT's ring is full: a pass at a lower rate is not one at
# the rate asked).
KEPT_SHARE = 0.95


def offered(rec):
    """The rate rvs-pktgen offered in the trial's last phase (connections/s), None when unknown
    or for the capacity test (whose value is a number of connections)."""
    if rec.get("measure") == "capacity":
        return None
    phases = rec.get("phases") or []
    return phases[-1].get("offered_cps") if phases else None


def rate_kept(rec):
    o = offered(rec)
    return o is None or o >= KEPT_SHARE * float(rec.get("value") or 0)


def ok(rec):
    """Whether a trial passed: every connection completed with no fault, at the rate asked."""
    return bool(rec.get("passed")) and rate_kept(rec)


def disturbed(rec, gap_ms):
    """Whether a failed trial may owe its failure to rvs-pktgen being off its CPU: it was, for
    longer than `gap_ms`, and nothing else explains the failure (no fault in a frame, no drop
    by rvsd but of a full ring)."""
    if ok(rec) or rec.get("error") or not rate_kept(rec) or float(rec.get("max_loop_gap_ms") or 0) <= gap_ms:
        return False
    for p in rec.get("phases", []):
        if p.get("client_faults") or p.get("server_faults"):
            return False
    drops = rec.get("dut_counters") or {}
    return not any(v for k, v in drops.items() if k.startswith("drop.") and k not in RING_DROPS)


def search_state(trials, lo, hi, steps, retries, gap_ms, grain=1):
    """Where a search stands after `trials` (its records, in order): a dict with `next` (the
    value to try, or None when done), `best` (highest value passed, None when none did), `low`
    (lowest failed, None when none did), `tried` (values tried, retries apart)."""
    best, low, tried, again = None, None, 0, 0
    for i, t in enumerate(trials):
        v = int(t["value"])
        following = trials[i + 1] if i + 1 < len(trials) else None
        if ok(t):
            best = v if best is None else max(best, v)
        elif disturbed(t, gap_ms) and again < retries and (following is None or int(following["value"]) == v):
            # Measured again (or to be): this one does not count.
            again += 1
            if following is None:
                return {"next": v, "best": best, "low": low, "tried": tried}
            continue
        else:
            low = v if low is None else min(low, v)
        again = 0
        tried += 1
    state = {"best": best, "low": low, "tried": tried, "next": None}
    if tried == 0:
        state["next"] = hi
        return state
    if low is None or tried >= steps:
        return state
    floor = best if best is not None else lo
    nxt = (floor + low) // 2 // grain * grain
    if nxt <= floor or nxt >= low:
        return state
    state["next"] = nxt
    return state


def trials_of(records, dut, measure):
    return [r for r in records if r.get("dut") == dut and r.get("measure") == measure]


def _fmt(v):
    return "{:,}".format(int(v)) if v is not None else "-"


def trial_reason(r):
    """Why a trial failed, in a few words ('' when it passed)."""
    if ok(r):
        return ""
    if r.get("error"):
        return str(r["error"])
    parts = []
    if not rate_kept(r):
        parts.append("rvs-pktgen offered only %s connections/s" % _fmt(offered(r)))
    for p in r.get("phases", [])[1:]:
        if p.get("passed"):
            continue
        bits = ["%s: %s of %s completed" % (p.get("phase"), _fmt(p.get("completed")), _fmt(p.get("conns")))]
        if p.get("acks_absorbed") != p.get("acks_expected"):
            bits.append("%s of %s ACKs reached the server" % (_fmt(p["acks_absorbed"]), _fmt(p["acks_expected"])))
        left = p.get("incomplete_by_stage") or {}
        if left:
            bits.append("left in " + ", ".join("%s %s" % (k, _fmt(v)) for k, v in sorted(left.items())))
        for side in ("client_faults", "server_faults"):
            if p.get(side):
                bits.append(side.replace("_", " ") + " " + json.dumps(p[side], sort_keys=True))
        if p.get("tx_failed"):
            bits.append("%s segments not sent" % _fmt(p["tx_failed"]))
        parts.append("; ".join(bits))
    drops = {k: v for k, v in (r.get("dut_counters") or {}).items() if k.startswith("drop.") and v}
    if drops:
        parts.append("rvsd " + ", ".join("%s %s" % (k, _fmt(v)) for k, v in sorted(drops.items())))
    return " / ".join(parts) or "failed"


def result_line(dut, measure, trials, meta):
    """A row of the results table: DUT, measure, the figure, the interval it stands for."""
    steps = int(meta.get("steps_" + measure, meta.get("steps", 6)))
    retries = int(meta.get("retries", 2))
    gap = float(meta.get("gap_ms", 1))
    st = search_state(trials, 0, 0, steps, retries, gap)
    hi = max((int(t["value"]) for t in trials), default=0)
    if not trials:
        return None
    if st["best"] is None:
        figure = "**failed**: no trial passed (lowest tried %s)" % _fmt(min(int(t["value"]) for t in trials))
    elif st["low"] is None:
        figure = "**%s** or more (the top of the search passed)" % _fmt(st["best"])
    else:
        figure = "**%s** (%s failed)" % (_fmt(st["best"]), _fmt(st["low"]))
    if measure == "capacity":
        held = [p["completed"] for t in trials if not ok(t)
                for p in t.get("phases", [])[1:2] if p.get("phase") == "load"]
        if held:
            figure += "; a failed trial held at most %s" % _fmt(max(held))
    disturbed_n = sum(1 for t in trials if disturbed(t, gap))
    return "| %s | %s | %s %s | %d | %d | %s |" % (
        dut, measure, figure, UNITS[measure], len(trials), disturbed_n, _fmt(hi))


def section(records, meta, conf):
    bench_records.require(meta, ["date", "commit", "command", "cpu", "nproc", "load"])
    L = ["## RFC 9693 stateful measures with complete TCP connections (scripts/conn-bench.sh)", ""]
    L += bench_records.table([
        ("Command", "`%s`" % meta["command"]),
        ("Date", meta["date"]),
        ("Commit", meta["commit"]),
        ("Machine", "%s, %s CPUs, kernel %s, DPDK %s" % (meta["cpu"], meta["nproc"], meta.get("kernel", "?"),
                                                        meta.get("dpdk", "?"))),
        ("Load average at start", meta["load"]),
        ("memif rings", "2^%s entries (set by the DUT, the memif client)" % meta.get("rsize", "10")),
        ("rvsd table", "capacity %s for setup and tear-down, %s for the capacity search; timeouts: "
                       "rvsd's defaults (ESTABLISHED 900 s, CLOSE_WAIT 60 s, TIME_WAIT 120 s)"
         % (_fmt(meta.get("table")), _fmt(meta.get("capacity")))),
        ("Trials", "setup: connections = rate x %s s; tear-down: %s connections opened at %s/s; capacity: "
                   "opened and validated at %s/s; %s steps per search (%s for capacity), a failed trial "
                   "with rvs-pktgen off its CPU > %s ms measured again (%s times at most)"
         % (meta.get("duration"), _fmt(meta.get("teardown_conns")), _fmt(meta.get("load_rate")),
            _fmt(meta.get("load_rate")), meta.get("steps"), meta.get("steps_capacity"), meta.get("gap_ms"),
            meta.get("retries"))),
    ])
    L += ["", "### Results", "",
          "| DUT | measure | result | trials | disturbed | top of the search |",
          "| --- | --- | --- | --- | --- | --- |"]
    duts = []
    for r in records:
        if r.get("dut") not in duts:
            duts.append(r.get("dut"))
    for dut in duts:
        for m in MEASURES:
            line = result_line(dut, m, trials_of(records, dut, m), meta)
            if line:
                L.append(line)
    L += ["", "testpmd io keeps no state: its rows are the ceiling of rvs-pktgen (one core playing "
          "clients and servers, 8 frames per connection) and of the memif transport on this machine, "
          "and it has no table capacity. Capacity: each trial's 16 warm-up connections hold table "
          "entries too (TIME_WAIT), so a table of C entries holds C - 16 measured connections; a "
          "failed trial says how many it held. A rate trial whose `offered` is below its value was not "
          "a test of that rate (rvs-pktgen held connections back while the DUT's ring was full) and "
          "counts as failed. A failed trial's reason lists where its connections stopped, the frames "
          "refused by kind, what rvs-pktgen could not send, and rvsd's drop counters."]
    L += ["", "### Trials", "",
          "| DUT | measure | value | passed | offered | sent over | all done after | pktgen off-CPU max | load | why it failed |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        last = (r.get("phases") or [{}])[-1]
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r.get("dut"), r.get("measure"), _fmt(r.get("value")), "yes" if ok(r) else "**no**",
            _fmt(offered(r)) + "/s" if offered(r) is not None else "-",
            "%.3f s" % last["send_s"] if "send_s" in last else "-",
            "%.3f s" % last["done_s"] if "done_s" in last else "-",
            "%.1f ms" % float(r["max_loop_gap_ms"]) if "max_loop_gap_ms" in r else "-",
            r.get("load", "-"), trial_reason(r).replace("|", "/")))
    L += [""] + bench_records.rvsd_config(conf, "rvsd's configuration (the last capacity trial's):")
    L += ["### Commands", "", "The first trial of each search (the others differ in the value, the label "
          "and the rvsd configuration file named after it):", ""]
    firsts = {}
    for r in records:
        firsts.setdefault((r.get("dut"), r.get("measure")), r)
    L += bench_records.code_block(c for r in firsts.values() for c in (r.get("dut_cmd"), r.get("pktgen_cmd")) if c)
    L += [""] + bench_records.raw_results(
        [{k: v for k, v in r.items() if k not in ("dut_cmd", "pktgen_cmd")} for r in records])
    return L


def summary(records, meta):
    lines = []
    duts = sorted({r.get("dut") for r in records})
    for dut in duts:
        for m in MEASURES:
            line = result_line(dut, m, trials_of(records, dut, m), meta)
            if line:
                lines.append(line)
    return "\n".join(lines)


def main(argv):
    if len(argv) >= 3 and argv[1] == "record":
        rec = {}
        pg = argv[3] if len(argv) > 3 else ""
        try:
            rec.update(bench_records.last_json_line(pg) or {"error": "rvs-pktgen printed no result"})
        except (OSError, ValueError) as e:
            rec["error"] = "rvs-pktgen's result unreadable: %s" % e
        pairs = bench_records.parse_pairs(argv[4:])
        counters = pairs.pop("counters", None)
        if counters:
            rec["dut_counters"] = {k: int(v) for k, v in
                                   (l.split() for l in (bench_records.read_text(counters) or "").splitlines()
                                    if len(l.split()) == 2 and l.split()[1].isdigit())}
        for k, v in pairs.items():
            rec[k] = int(v) if k == "value" else v
        if rec.get("error"):
            rec["passed"] = False
        bench_records.append(argv[2], rec)
        return 0
    if len(argv) >= 3 and argv[1] == "next":
        kv = bench_records.parse_pairs(argv[3:])
        try:
            records = bench_records.read(argv[2])
        except FileNotFoundError:
            records = []
        st = search_state(trials_of(records, kv["dut"], kv["measure"]), int(kv["lo"]), int(kv["hi"]),
                          int(kv["steps"]), int(kv.get("retries", 2)), float(kv.get("gap_ms", 1)),
                          int(kv.get("grain", 1)))
        print("done" if st["next"] is None else st["next"])
        return 0
    if len(argv) >= 5 and argv[1] == "report":
        meta = bench_records.parse_pairs(argv[5:])
        records = bench_records.read(argv[2])
        conf = bench_records.read_text(argv[4])
        import results_section
        results_section.write(argv[3], SECTION, section(records, meta, conf))
        print(summary(records, meta))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
