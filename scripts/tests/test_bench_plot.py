"""bench_plot (scripts/bench-plot.py): the traffic benchmark's raw results, read back for the plot."""

import json
import os
import tempfile
import unittest

from tests import LIB  # noqa: F401  (scripts/lib on sys.path)
import bench_plot

try:
    import matplotlib  # noqa: F401
    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False


def raw(dut, point, flows, mpps, proto="udp", **kv):
    p = {"proto": proto, "flows": flows, "delivered_mpps": mpps,
         "latency_us": {"p50": 1.0, "p99": 2.0, "p999": 3.0, "max": 4.0}}
    p.update(kv)
    return {"dut": dut, "point": point, "error": None, "pktgen": p}


def results(*recs, extra=""):
    lines = ["<!-- traffic-bench:begin -->", "## Traffic", "", "### Raw results", "", "```"]
    lines += [json.dumps(r, separators=(",", ":")) for r in recs]
    lines += ["```", "<!-- traffic-bench:end -->"]
    return extra + "\n".join(lines) + "\n"


RECS = [raw("rvs", "udp-100K", 100000, 2.0), raw("rvs", "udp-1K", 1000, 3.0),
        raw("rvs", "udp-newconn", 1000, 1.0, new_conns=True), raw("rvs", "udp-1K-latency", 1000, 0.5),
        raw("testpmd", "udp-1K", 1000, 4.0), raw("rvs", "tcp-1K", 1000, 2.5, proto="tcp")]


class RawRecordsTest(unittest.TestCase):
    def test_reads_the_measured_points(self):
        failed = {"dut": "rvs", "point": "tcp-1M", "error": "build failed", "pktgen": None}
        no_result = {"dut": "testpmd", "point": "tcp-1M", "error": None, "pktgen": None}
        errored = dict(raw("rvs", "udp-1M", 10, 1.0), error="late")
        text = results(RECS[0], failed, no_result, errored, RECS[1], extra='{"dut": "outside the section"}\n')
        self.assertEqual(bench_plot.raw_records(text), RECS[:2])

    def test_each_duts_median_run_of_a_point(self):
        runs = [dict(raw("rvs", "udp-1K", 1000, m), pair=i) for i, m in enumerate((3.0, 1.0, 2.0), 1)]
        self.assertEqual(bench_plot.raw_records(results(*runs, RECS[4])), [runs[2], RECS[4]])

    def test_missing_section_or_points(self):
        with self.assertRaisesRegex(ValueError, "no traffic-bench section"):
            bench_plot.raw_records("<!-- traffic-bench:end -->\n<!-- traffic-bench:begin -->\n")
        with self.assertRaisesRegex(ValueError, "no raw results"):
            bench_plot.raw_records(results())

    def test_established_points_by_flows(self):
        self.assertEqual(bench_plot.established(RECS, "rvs", "udp"), [(1000, 3.0), (100000, 2.0)])
        self.assertEqual(bench_plot.established(RECS, "testpmd", "udp"), [(1000, 4.0)])
        self.assertEqual(bench_plot.established(RECS, "rvs", "tcp"), [(1000, 2.5)])
        self.assertEqual(bench_plot.established(RECS, "testpmd", "tcp"), [])

    def test_section_links_the_image_relative_to_the_results(self):
        self.assertEqual(bench_plot.section("/r/benches/RESULTS.md", "/r/benches/bench.png", 22)[2:], [
            "Written by `scripts/bench-plot.py` from the raw results below (22 points).", "",
            "![throughput against flows; latency percentiles](bench.png)"])
        self.assertEqual(bench_plot.section("/r/benches/RESULTS.md", "/r/img/b.png", 1)[4],
                         "![throughput against flows; latency percentiles](../img/b.png)")

    def test_main_without_results_exits_with_the_reason(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "RESULTS.md")
            with open(src, "w") as f:
                f.write("nothing\n")
            with self.assertRaises(SystemExit) as e:
                bench_plot.main([src, os.path.join(d, "b.png")], d)
            self.assertEqual(str(e.exception.code), src + ": no traffic-bench section")

    @unittest.skipUnless(HAVE_MATPLOTLIB, "matplotlib is not installed")
    def test_main_draws_and_links_the_plot(self):
        with tempfile.TemporaryDirectory() as d:
            src, out = os.path.join(d, "RESULTS.md"), os.path.join(d, "bench.png")
            with open(src, "w") as f:
                f.write(results(*RECS))
            bench_plot.main([src, out], d)
            with open(out, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            with open(src) as f:
                text = f.read()
            self.assertTrue(text.startswith("<!-- bench-plot:begin -->\n## Plot of the traffic benchmark\n"))
            self.assertIn("(6 points)", text)
            self.assertIn("<!-- bench-plot:end -->\n\n<!-- traffic-bench:begin -->", text)


if __name__ == "__main__":
    unittest.main()
