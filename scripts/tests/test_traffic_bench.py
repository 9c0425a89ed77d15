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
        "nice": "-20"}


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
        by = {("rvs", "a"): rec("rvs", "a", pg(1.23456, 0.5, 2)),
              ("rvs", "b"): rec("rvs", "b", pg(0.001234), busy_before="20"),
              ("rvs", "c"): rec("rvs", "c", {"error": "links down"}, dut_error="crashed"),
              ("rvs", "d"): rec("rvs", "d", pg(1), dut_error="exit status 1 at shutdown")}
        failures = []
        self.assertEqual(tb.cells(by, "rvs", "a", failures), ["1.235", "0.500", "10.0 / 20.0 / 30.0 / 40.0", "2"])
        self.assertEqual(tb.cells(by, "rvs", "b", failures, rate_unit=1)[0], "1,234 (busy)")
        self.assertEqual(tb.cells(by, "rvs", "c", failures), ["FAILED", "", "", ""])
        self.assertEqual(tb.cells(by, "testpmd", "a", failures), ["not run", "", "", ""])
        self.assertEqual(tb.cells(by, "rvs", "d", failures)[0], "1.000")
        self.assertEqual(failures, ["rvs c: links down; DUT: crashed",
                                    "rvs d (figures kept, measured before): exit status 1 at shutdown"])

    def test_ratio_and_rss(self):
        by = {("rvs", "a"): rec("rvs", "a", pg(3.0), dut_rss_mb="120"),
              ("testpmd", "a"): rec("testpmd", "a", pg(4.0)),
              ("rvs", "b"): rec("rvs", "b", pg(1.0)),
              ("testpmd", "b"): rec("testpmd", "b", pg(0.0))}
        self.assertEqual(tb.ratio(by, "a"), "0.75")
        self.assertEqual(tb.ratio(by, "b"), "–")
        self.assertEqual(tb.ratio(by, "c"), "–")
        self.assertEqual(tb.rss(by, "a"), "120")
        self.assertEqual(tb.rss(by, "b"), "–")


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
                      "10.0 / 20.0 / 30.0 / 40.0 | 0 | 0.50 |", L)
        self.assertIn("| tcp-1K | FAILED |  |  |  | – | not run |  |  |  | – |", L)
        # New connections per second in connections, not Mpps.
        self.assertIn("| udp-newconn | 1,500,000 | 0.000 | 10.0 / 20.0 / 30.0 / 40.0 | 0 | – | not run |  |  |  | – |", L)
        # A point of none of the known kinds goes under "Other".
        self.assertLess(L.index("### Other"), L.index("| udp-7K | 1.000 | 0.000 | 10.0 / 20.0 / 30.0 / 40.0 | 0 | – | "
                                                      "not run |  |  |  | – |"))
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
        self.assertTrue(L[4].startswith("**Warning: 1 of 2 points were measured while other work took CPU time"))
        self.assertIn("| run | full: warm-up 1 s (and until every flow is open), 2 s measured per point |", L)
        self.assertIn("- none: every point ran to the end.", L)
        self.assertNotIn("```toml", L)

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
