"""traffic_bench: scripts/bench.sh's point records, log lines and report."""

import contextlib
import io
import json
import os
import tempfile
import unittest

from tests import run_report  # (and scripts/lib on sys.path)
import traffic_bench as tb

META = {"date": "2026-01-02T03:04:05Z", "nproc": "2", "cpu": "Test CPU", "kernel": "6.1.0",
        "dpdk": "22.11.4", "commit": "abc1234", "command": "scripts/bench.sh --quick",
        "load": "0.10 0.20 0.30", "mode": "quick", "warmup": "1", "duration": "2", "flows": "1K 100K",
        "lat_rate": "500K", "newconn_capacity": "16000000", "binaries": "rvsd then, rvs-pktgen then",
        "nice": "-20", "pairs": "1", "workers": "1", "cpus": "rvs-pktgen on CPU 1, the DUT on CPU 0",
        "shared_core": ""}


def pg(mpps, loss=0.0, mism=0, lat=(10.0, 20.0, 30.0, 40.0), **extra):
    """An rvs-pktgen result."""
    p = {"delivered_mpps": mpps, "loss_pct": loss, "mismatches": mism, "server_mismatches": 0,
         "latency_us": dict(zip(("p50", "p99", "p999", "max"), lat))}
    p.update(extra)
    return p


def rec(dut, point, p=None, **kv):
    r = {"dut": dut, "point": point}
    if p is not None:
        r["pktgen"] = p
    r.update(kv)
    return r


class RecordTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def path(self, name, text=None):
        p = os.path.join(self.dir.name, name)
        if text is not None:
            with open(p, "w") as f:
                f.write(text)
        return p

    def test_takes_rvs_pktgens_last_json_line(self):
        p = self.path("pg", 'EAL: hi\n{"delivered_mpps": 1}\n{"delivered_mpps": 2}\n')
        self.assertEqual(tb.record(p, {"dut": "rvs", "point": "udp-1K"}),
                         {"dut": "rvs", "point": "udp-1K", "pktgen": {"delivered_mpps": 2}})

    def test_no_file_no_result(self):
        self.assertEqual(tb.record("", {"dut": "rvs"}), {"dut": "rvs"})
        self.assertEqual(tb.record(self.path("empty", ""), {"dut": "rvs"}), {"dut": "rvs"})

    def test_an_unreadable_result_is_the_error_unless_one_is_given(self):
        r = tb.record(self.path("missing"), {"dut": "rvs"})
        self.assertTrue(r["error"].startswith("cannot read rvs-pktgen's result: "), r)
        r = tb.record(self.path("bad", "{oops\n"), {"dut": "rvs", "error": "the DUT died"})
        self.assertEqual(r["error"], "the DUT died")

    def test_cli_record_busy_and_summary(self):
        recs = self.path("records.jsonl")
        pgf = self.path("pg", json.dumps(pg(1.5, 0.25, 3)) + "\n")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            tb.main(["record", recs, pgf, "dut=rvs", "point=udp-1K", "busy_during=12", "cmd=a=b"])
            tb.main(["busy", recs])
            tb.main(["summary", recs])
        self.assertEqual(out.getvalue().splitlines(), [
            "12",
            "  rvs udp-1K: 1.500 Mpps, loss 0.2500 %, p50 10.0 us, p99 20.0 us, mismatches 3"])
        with open(recs) as f:
            self.assertEqual(json.loads(f.read())["cmd"], "a=b")


class FiguresTest(unittest.TestCase):
    def test_busy(self):
        self.assertEqual(tb.busy_during({}), 0)
        self.assertEqual(tb.busy_during({"busy_during": "7"}), 7)
        self.assertFalse(tb.disturbed({"busy_before": "15", "busy_during": "5"}))
        self.assertTrue(tb.disturbed({"busy_before": "16"}))
        self.assertTrue(tb.disturbed({"busy_during": "6"}))

    def test_summary_of_a_failed_point(self):
        self.assertEqual(tb.summary(rec("testpmd", "tcp-1K", {"error": "links down"}, dut_error="exit 1")),
                         "  testpmd tcp-1K: FAILED: links down exit 1")
        self.assertEqual(tb.summary(rec("rvs", "tcp-1K", error="no build")), "  rvs tcp-1K: FAILED: no build ")

    def test_summary_names_the_duts_error(self):
        self.assertTrue(tb.summary(rec("rvs", "x", pg(1), dut_error="late")).endswith("mismatches 0; DUT: late"))

    def test_cells(self):
        recs = [rec("rvs", "a", pg(1.23456, 0.5, 2)),
                rec("rvs", "b", pg(0.001234), busy_before="20"),
                rec("rvs", "c", {"error": "links down"}, dut_error="crashed"),
                rec("rvs", "d", pg(1), dut_error="exit status 1 at shutdown")]
        failures = []
        self.assertEqual(tb.cells(recs, "rvs", "a", failures), ["1.235", "0.500", "10.0 / 20.0 / 30.0 / 40.0", "2"])
        self.assertEqual(tb.cells(recs, "rvs", "b", failures, rate_unit=1)[0], "1,234 (busy)")
        self.assertEqual(tb.cells(recs, "rvs", "c", failures), ["FAILED", "", "", ""])
        self.assertEqual(tb.cells(recs, "testpmd", "a", failures), ["not run", "", "", ""])
        self.assertEqual(tb.cells(recs, "rvs", "d", failures)[0], "1.000")
        self.assertEqual(failures, ["rvs c: links down; DUT: crashed",
                                    "rvs d (figures kept, measured before): exit status 1 at shutdown"])

    def test_cells_of_several_runs_take_the_median_run(self):
        recs = [rec("rvs", "a", pg(3.0, loss=0.3, mism=1), pair=1),
                rec("rvs", "a", pg(1.0, loss=0.1), pair=2),
                rec("rvs", "a", {"error": "links down"}, pair=3),
                rec("rvs", "a", pg(2.0, loss=0.2, mism=2, lat=(1, 2, 3, 4)), pair=4, busy_during="9")]
        failures = []
        self.assertEqual(tb.cells(recs, "rvs", "a", failures),
                         ["2.000 (1.000–3.000) (1 of 4 runs failed) (busy)", "0.200", "1.0 / 2.0 / 3.0 / 4.0", "3"])
        self.assertEqual(failures, ["rvs a (pair 3): links down"])
        self.assertEqual(tb.median_run(recs[:2])["pair"], 2)
        self.assertIsNone(tb.median_run(recs[2:3]))

    def test_ratio_and_rss(self):
        recs = [rec("rvs", "a", pg(3.0), dut_rss_mb="120"),
                rec("testpmd", "a", pg(4.0)),
                rec("rvs", "b", pg(1.0)),
                rec("testpmd", "b", pg(0.0))]
        self.assertEqual(tb.ratio(recs, "a"), ["0.75 (0.75–0.75, 1 pair)", "one pair: spread unknown, nothing to conclude"])
        self.assertEqual(tb.ratio(recs, "b"), ["–", "–"])
        self.assertEqual(tb.ratio(recs, "c"), ["–", "–"])
        self.assertEqual(tb.rss(recs, "a"), "120")
        self.assertEqual(tb.rss(recs, "b"), "–")

    def test_ratio_of_interleaved_pairs(self):
        recs = []
        for pair, (a, b) in enumerate([(1.0, 4.0), (3.0, 4.0), (2.0, 4.0)], 1):
            recs += [rec("rvs", "a", pg(a), pair=pair), rec("testpmd", "a", pg(b), pair=pair)]
        self.assertEqual(tb.ratio(recs, "a"), ["0.50 (0.25–0.75, 3 pairs)", "spread too wide to conclude"])
        recs[0]["pktgen"]["delivered_mpps"] = 2.5
        self.assertEqual(tb.ratio(recs, "a"), ["0.62 (0.50–0.75, 3 pairs)", "spread within 1.5x"])


def two_worker_run(pair=1, dnat=(5, 6), snat=(7, 8), other=40, lost=30, refused=29, **pgkw):
    counters = {"worker.%d.dnat" % i: n for i, n in enumerate(dnat)}
    counters.update({"worker.%d.snat" % i: n for i, n in enumerate(snat)})
    total = {"reflected": 100, "replies_to_other_queue": other, "server_tx_drop_win": refused}
    return rec("rvs", "udp-1K", pg(1.0, queues=len(dnat), total=total, sent=1000, lost=lost, **pgkw),
               pair=pair, rvsd=counters)


class WorkersTest(unittest.TestCase):
    def test_a_good_run_passes(self):
        self.assertEqual(tb.rss_problems(two_worker_run()), [])
        lines, ok = tb.rss_check([two_worker_run(), rec("testpmd", "udp-1K", pg(1.0))])
        self.assertEqual((lines, ok), (["rvs udp-1K (pair 1): ok"], True))

    def test_what_fails(self):
        self.assertEqual(tb.rss_problems(two_worker_run(dnat=(5, 0), snat=(0, 3), other=0, mism=2, lost=32)),
                         ["2 mismatches", "lost 3 of 1000 (0.300 %, beyond the 29 its full rings refused) > 0.1 %",
                          "no reply steered to another worker",
                          "worker 0 did no SNAT", "worker 1 did no DNAT"])
        one = rec("rvs", "udp-1K", pg(1.0), rvsd={})
        self.assertEqual(tb.rss_problems(one)[:2], ["one worker only", "no reply steered to another worker"])
        self.assertEqual(tb.rss_problems(rec("rvs", "x", {"error": "links down"})), ["no figures: links down"])
        self.assertIn("no rvsd counters", tb.rss_problems(rec("rvs", "x", pg(1.0, queues=2))))
        self.assertEqual(tb.rss_check([]), (["no rvs run"], False))
        self.assertFalse(tb.rss_check([two_worker_run(), two_worker_run(pair=2, other=0)])[1])

    def test_table_only_with_several_workers(self):
        self.assertEqual(tb.workers_table([rec("rvs", "a", pg(1.0))]), [])
        L = tb.workers_table([two_worker_run()])
        self.assertIn("| udp-1K | 1 | 5 / 6 | 7 / 8 | 40 (40 %) | 30 / 29 | ok |", L)

    def test_record_keeps_rvsds_worker_counters(self):
        with tempfile.TemporaryDirectory() as d:
            c = os.path.join(d, "c")
            with open(c, "w") as f:
                f.write("dnat 11\nworker.0.dnat 5\nworker.1.snat 6\ndrop.ttl_expired 0\ndrop.tx_full 2\nrx_packets 9\n")
            r = tb.record("", {"dut": "rvs", "pair": "2", "rvsd_counters": c})
        self.assertEqual(r, {"dut": "rvs", "pair": 2, "rvsd": {"dnat": 11, "worker.0.dnat": 5, "worker.1.snat": 6,
                                                             "drop.tx_full": 2}})


SCALING_META = {"date": "d", "nproc": "2", "cpu": "c", "kernel": "k", "dpdk": "22.11", "commit": "abc",
                "command": "scripts/scaling-bench.sh", "load": "1 1 1", "warmup": "1", "duration": "3",
                "counts": "1 2", "pairs": "2"}


class ScalingTest(unittest.TestCase):
    def recs(self):
        out = []
        for pair, (one, two) in enumerate([(1.0, 1.5), (2.0, 2.0)], 1):
            out += [rec("rvs", "udp-1K", pg(one), pair=pair, workers=1),
                    rec("testpmd", "udp-1K", pg(4.0), pair=pair, workers=1),
                    dict(two_worker_run(pair=pair), workers=2, shared_core="rvs-pktgen shares CPU 1"),
                    rec("testpmd", "udp-1K", pg(2 * two), pair=pair, workers=2, shared_core="rvs-pktgen shares CPU 1")]
            out[-2]["pktgen"]["delivered_mpps"] = two
        return out

    def test_table_speed_up_and_shared_core(self):
        L = tb.scaling(self.recs(), SCALING_META)
        self.assertIn("| udp-1K | 1 | 1.000 (1.000–2.000) | 4.000 (4.000–4.000) | 0.38 (0.25–0.50, 2 pairs) | – | – | – |", L)
        self.assertIn("| udp-1K | 2 (shared core) | 1.500 (1.500–2.000) | 3.000 (3.000–4.000) | 0.50 (0.50–0.50, 2 pairs) "
                      "| 1.25 (1.00–1.50) | spread within 1.5x | 45/55 DNAT, 47/53 SNAT |", L)
        self.assertIn("**2 workers is not a scaling figure: rvs-pktgen shares CPU 1.**", L)
        self.assertIn("- none: every run ran to the end.", L)

    def test_worker_shares_need_the_counters(self):
        self.assertEqual(tb.worker_shares(None), "–")
        self.assertEqual(tb.worker_shares({"workers": 2, "rvsd": {"worker.0.dnat": 1}}), "–")

    def test_cli_tag_and_scaling(self):
        with tempfile.TemporaryDirectory() as d:
            src, dst, out = (os.path.join(d, n) for n in ("src", "dst", "out.md"))
            with open(src, "w") as f:
                for r in self.recs():
                    f.write(json.dumps(dict(r, pair=1)) + "\n")
            self.assertEqual(tb.main(["tag", src, dst, "pair=7"]), 0)
            with open(dst) as f:
                self.assertEqual({json.loads(l)["pair"] for l in f}, {7})
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(tb.main(["scaling", dst, out] + ["%s=%s" % kv for kv in SCALING_META.items()]), 0)
            with open(out) as f:
                self.assertTrue(f.read().startswith("<!-- scaling-bench:begin -->\n## Scaling"))


class Ipv6Test(unittest.TestCase):
    # Two pairs of each point, IPv4 and IPv6 interleaved: rvs v4, testpmd v4, rvs v6, testpmd v6.
    RECS = [rec("rvs", "udp-1K", pg(5.0), pair=1, family=4),
            rec("testpmd", "udp-1K", pg(10.0), pair=1, family=4),
            rec("rvs", "udp6-1K", pg(4.0), pair=1, family=6),
            rec("testpmd", "udp6-1K", pg(9.0), pair=1, family=6),
            rec("rvs", "udp-1K", pg(6.0), pair=2, family=4),
            rec("testpmd", "udp-1K", pg(10.0), pair=2, family=4),
            rec("rvs", "udp6-1K", pg(5.0), pair=2, family=6),
            rec("testpmd", "udp6-1K", pg(10.0), pair=2, family=6),
            rec("rvs", "tcp-newconn", pg(0.5, new_conns=True), pair=1, family=4),
            rec("rvs", "tcp6-newconn", pg(0.45, new_conns=True), pair=1, family=6),
            rec("rvs", "tcp-newconn", pg(0.5, new_conns=True), pair=2, family=4),
            rec("rvs", "tcp6-newconn", error="links not up", pair=2, family=6)]

    def test_names(self):
        self.assertEqual(tb.v6_name("udp-1K-latency"), "udp6-1K-latency")
        self.assertEqual(tb.with_v6(["udp-1K", "tcp-newconn"]), ["udp-1K", "udp6-1K", "tcp-newconn", "tcp6-newconn"])

    def test_table_compares_pairs_per_dut(self):
        L = tb.ipv6_table(self.RECS, ["udp-1K", "udp6-1K", "tcp-newconn", "tcp6-newconn"])
        self.assertEqual(L[0], "### IPv6 beside IPv4")
        # rvs: 5/4 = 1.25 and 6/5 = 1.20, median 1.225: not within 15 %.
        self.assertIn("| udp-1K | rvs | 5.000 (5.000–6.000) | 4.000 (4.000–5.000) | 1.23 (1.20–1.25, 2 pairs) "
                      "| spread within 1.5x | no |", L)
        self.assertIn("| udp-1K | testpmd | 10.000 (10.000–10.000) | 9.000 (9.000–10.000) | 1.06 (1.00–1.11, 2 pairs) "
                      "| spread within 1.5x | yes |", L)
        # A failed IPv6 run leaves one pair: nothing concluded; connections per second.
        self.assertIn("| tcp-newconn | rvs | 500,000 (500,000–500,000) | 450,000 (1 of 2 runs failed) "
                      "| 1.11 (1.11–1.11, 1 pair) | one pair: spread unknown, nothing to conclude "
                      "| yes (inconclusive) |", L)
        self.assertFalse(any("| tcp-newconn | testpmd" in l for l in L))
        self.assertEqual(tb.ipv6_table(self.RECS[:2], ["udp-1K"]), [])
        busy = [dict(r, busy_during="40") if r["point"] == "udp6-1K" else r for r in self.RECS]
        self.assertIn("| udp-1K | rvs | 5.000 (5.000–6.000) | 4.000 (4.000–5.000) (busy) | 1.23 (1.20–1.25, 2 pairs) "
                      "| spread within 1.5x | no (busy) |", tb.ipv6_table(busy, ["udp-1K", "udp6-1K"]))

    def test_report_lists_ipv6_points_beside_ipv4_ones(self):
        L = tb.report(self.RECS, dict(META, families="4 6"))
        self.assertIn("| address families | 4 6 |", L)
        est = [l.split(" | ")[0] for l in L if l.startswith("| udp")]
        self.assertEqual(est[:2], ["| udp-1K", "| udp6-1K"])
        self.assertLess(L.index("### New connections per second"), L.index("### IPv6 beside IPv4"))
        self.assertNotIn("### Other", L)
        raw = [json.loads(l) for l in L[L.index("### Raw results"):] if l.startswith("{")]
        self.assertEqual([r["family"] for r in raw[:4]], [4, 4, 6, 6])
        # Without the field (an IPv4-only run): "4".
        self.assertIn("| address families | 4 |", tb.report(self.RECS[:2], META))

    def test_record_keeps_the_family_as_a_number(self):
        self.assertEqual(tb.record("", {"dut": "rvs", "family": "6"})["family"], 6)


class ReportTest(unittest.TestCase):
    RECS = [rec("rvs", "udp-1K", pg(5.0, mism=1), load="1 1 1", busy_before="0", busy_during="1",
                dut_cmd="rvsd --config x", pktgen_cmd="rvs-pktgen --flows 1K"),
            rec("testpmd", "udp-1K", pg(10.0), busy_before="0", busy_during="0"),
            rec("rvs", "udp-newconn", pg(1.5, new_conns=True)),
            rec("rvs", "udp-7K", pg(1.0, interrupted=True)),
            rec("rvs", "tcp-1K", error="cargo build --release -p rvsd --bin rvsd failed")]

    def test_report(self):
        L = tb.report(self.RECS, META, conf="[eal]\nargs = []\n\n")
        text = "\n".join(L)
        self.assertEqual(L[0], "## Traffic benchmark: rvs-pktgen over memif")
        self.assertIn("| run | quick: warm-up 1 s (and until every flow is open), 2 s measured per point |", L)
        self.assertIn("| udp-1K | 5.000 | 0.000 | 10.0 / 20.0 / 30.0 / 40.0 | 1 | – | 10.000 | 0.000 | "
                      "10.0 / 20.0 / 30.0 / 40.0 | 0 | 0.50 (0.50–0.50, 1 pair) | "
                      "one pair: spread unknown, nothing to conclude |", L)
        self.assertIn("| tcp-1K | FAILED |  |  |  | – | not run |  |  |  | – | – |", L)
        # New connections per second in connections, not Mpps.
        self.assertIn("| udp-newconn | 1,500,000 | 0.000 | 10.0 / 20.0 / 30.0 / 40.0 | 0 | – | not run |  |  |  | – | – |", L)
        # A point of none of the known kinds goes under "Other".
        self.assertLess(L.index("### Other"), L.index("| udp-7K | 1.000 | 0.000 | 10.0 / 20.0 / 30.0 / 40.0 | 0 | – | "
                                                      "not run |  |  |  | – | – |"))
        self.assertNotIn("### Requests and replies by worker", L)
        self.assertNotIn("Not a scaling figure", text)
        self.assertIn("- rvs tcp-1K: cargo build --release -p rvsd --bin rvsd failed", L)
        self.assertIn("- rvs udp-7K: rvs-pktgen was interrupted before the end; figures cover what was measured.", L)
        self.assertIn("  - DUT: `rvsd --config x`", L)
        self.assertIn("```toml\n[eal]\nargs = []\n```", text)
        self.assertNotIn("Warning:", text)
        raw = [json.loads(l) for l in L[L.index("### Raw results"):] if l.startswith("{")]
        self.assertEqual([(r["dut"], r["point"]) for r in raw], [(r["dut"], r["point"]) for r in self.RECS])
        self.assertEqual(raw[0]["pktgen"]["delivered_mpps"], 5.0)

    def test_report_warns_of_disturbed_points_and_says_full_mode(self):
        recs = [rec("rvs", "udp-1K", pg(1.0), busy_during="30"), rec("rvs", "udp-100K", pg(1.0))]
        L = tb.report(recs, dict(META, mode=""), conf=None)
        self.assertTrue(L[4].startswith("**Warning: 1 of 2 runs were measured while other work took CPU time"))
        self.assertIn("| run | full: warm-up 1 s (and until every flow is open), 2 s measured per point |", L)
        self.assertIn("- none: every point ran to the end.", L)
        self.assertNotIn("```toml", L)

    def test_report_on_a_shared_core_says_so_and_cites_instructions(self):
        meta = dict(META, workers="2", shared_core="the second worker shares CPU 1 with rvs-pktgen")
        L = tb.report([two_worker_run()], meta, instr=({("udp", "established", 1000): 1484.2}, "Written by x."))
        self.assertIn("**Not a scaling figure: the second worker shares CPU 1 with rvs-pktgen.**", L)
        self.assertIn("### Requests and replies by worker", L)
        self.assertTrue(any(l.endswith("(Written by x): udp established 1K: 1484.") for l in L))

    def test_report_needs_every_field(self):
        meta = dict(META)
        del meta["nice"]
        with self.assertRaises(KeyError):
            tb.report(self.RECS, meta)

    def test_console_is_the_tables_and_failures(self):
        L = ["# head", "x", "### Established flows", "t", "### Failures and notes", "f", "### Commands", "c"]
        self.assertEqual(tb.console(L), "### Established flows\nt\n### Failures and notes\nf")

    def test_cli_report_writes_its_section_only(self):
        text, stdout = run_report(tb.main, self.RECS, META, out_text="<!-- other:begin -->\nkept\n<!-- other:end -->\n")
        self.assertTrue(text.startswith("<!-- other:begin -->\nkept\n<!-- other:end -->\n\n<!-- traffic-bench:begin -->\n"))
        self.assertNotIn("```toml", text)
        self.assertTrue(stdout.startswith("### Established flows\n"))
        self.assertNotIn("### Commands", stdout)


if __name__ == "__main__":
    unittest.main()
