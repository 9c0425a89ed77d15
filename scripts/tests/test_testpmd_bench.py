"""testpmd_bench: scripts/testpmd-bench.sh's parsing of testpmd's output, ratios and report."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

from tests import LIB  # (and scripts/lib on sys.path)
import testpmd_bench as tb


def stats_block(rx, tx, rx_pps, tx_pps):
    """A `show port stats 0` block as testpmd 22.11 prints it (screen clear included)."""
    return ("\x1b[2J\x1b[1;1H\nPort statistics ====================================\n"
            "  ######################## NIC statistics for port 0  ########################\n"
            "  RX-packets: %d          RX-missed: 0          RX-bytes:  %d\n"
            "  RX-errors: 0\n  RX-nombuf:  0         \n"
            "  TX-packets: %d         TX-errors: 0          TX-bytes:  %d\n\n"
            "  Throughput (since last show)\n"
            "  Rx-pps:      %7d          Rx-bps:            0\n"
            "  Tx-pps:      %7d          Tx-bps:            0\n"
            "  ############################################################################\n"
            % (rx, rx * 64, tx, tx * 64, rx_pps, tx_pps))


def fwd_stats(rx, tx, tx_dropped=0):
    return ("\n  ---------------------- Forward statistics for port 0  ----------------------\n"
            "  RX-packets: %d              RX-dropped: 0             RX-total: %d\n"
            "  TX-packets: %d             TX-dropped: %d             TX-total: %d\n"
            "  ----------------------------------------------------------------------------\n\n"
            "  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++\n"
            "  RX-packets: %d              RX-dropped: 0             RX-total: %d\n"
            "  TX-packets: %d             TX-dropped: %d             TX-total: %d\n"
            "  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++\n"
            % (rx, rx, tx, tx_dropped, tx + tx_dropped, rx, rx, tx, tx_dropped, tx + tx_dropped))


GEN = ("testpmd> show port info 0\n  Link status: up\ntestpmd> start tx_first\n"
       + stats_block(1000, 1256, 500, 628) + stats_block(6001000, 6001250, 1200000, 1200050)
       + "testpmd> stop\n" + fwd_stats(6100000, 6100200))


class ParseTest(unittest.TestCase):
    def test_port_stats_blocks(self):
        blocks = tb.port_stats_blocks(GEN)
        self.assertEqual(blocks, [{"rx_packets": 1000, "tx_packets": 1256, "rx_pps": 500, "tx_pps": 628},
                                  {"rx_packets": 6001000, "tx_packets": 6001250, "rx_pps": 1200000,
                                   "tx_pps": 1200050}])

    def test_forward_stats_is_the_last_accumulated_block(self):
        self.assertIsNone(tb.forward_stats("nothing here"))
        text = fwd_stats(1, 2) + fwd_stats(30, 45, 7)
        self.assertEqual(tb.forward_stats(text), {"rx": 30, "rx_dropped": 0, "tx": 45, "tx_dropped": 7})

    def test_point_takes_the_last_two_shows(self):
        p = tb.point(GEN, stats_block(5, 5, 0, 0) + stats_block(6100100, 6100100, 0, 0) + fwd_stats(0, 0))
        self.assertAlmostEqual(p["mpps"], 1.2)
        self.assertEqual((p["window_sent"], p["window_received"], p["window_lost"]), (5999994, 6000000, -6))
        self.assertEqual((p["sent"], p["received"], p["lost"]), (6100200, 6100000, 200))
        self.assertEqual((p["reflector_rx"], p["reflector_tx"]), (6100100, 6100100))

    def test_rvsd_counters_and_a_dead_loop(self):
        gen = stats_block(8192, 8448, 0, 0) + stats_block(8192, 8448, 0, 0) + fwd_stats(8192, 8448)
        counters = "rx_packets 16438\nport.ext.tx_packets 7936\ndrop.ttl_expired 256\nconntrack.entries 1\n"
        p = tb.point(gen, "", counters)
        self.assertEqual(p["rvsd"], {"port.ext.tx_packets": 7936, "drop.ttl_expired": 256})
        self.assertIn("no frame came back to the client during the measurement (8192 came back in all",
                      p["error"])
        self.assertIn("rvsd dropped 256 for TTL expiry", p["error"])
        # Frames still came back in the window, but the loop is dying: no rate either.
        self.assertIn("the loop lost frames during the run", tb.point(GEN, "", counters)["error"])
        self.assertNotIn("error", tb.point(GEN, "", "drop.ttl_expired 0\n"))

    def test_point_without_two_shows_is_an_error(self):
        with self.assertRaises(ValueError):
            tb.point(stats_block(1, 1, 1, 1), "")


def rec(pair, dut, mpps=None, error=None):
    r = {"pair": pair, "dut": dut}
    if mpps is not None:
        r["mpps"] = mpps
    if error:
        r["error"] = error
    return r


class RatioTest(unittest.TestCase):
    """The pairing of rvsd and direct points; the statistics are bench_records' (its tests)."""

    def test_pairs_rvsd_with_direct(self):
        records = [rec(1, "rvsd", 1.0), rec(1, "direct", 2.0), rec(2, "rvsd", 1.5), rec(2, "direct", 2.0),
                   rec(3, "rvsd", 0.9), rec(3, "direct", 1.0)]
        self.assertEqual(tb.pair_ratios(records), [0.5, 0.75, 0.9])

    def test_failed_point_drops_its_pair(self):
        records = [rec(1, "rvsd", error="rvsd exited"), rec(1, "direct", 2.0), rec(2, "rvsd", 1.0),
                   rec(2, "direct", 2.0), rec(3, "rvsd", 1.0), rec(3, "direct", 0.0)]
        self.assertEqual(tb.pair_ratios(records), [0.5])


def read(path):
    with open(path) as f:
        return f.read()


class CliTest(unittest.TestCase):
    def run_cli(self, *args):
        return subprocess.run([sys.executable, os.path.join(LIB, "testpmd_bench.py")] + list(args),
                              capture_output=True, text=True)

    def test_record_and_report(self):
        with tempfile.TemporaryDirectory() as d:
            records, out = os.path.join(d, "r.jsonl"), os.path.join(d, "RESULTS.md")
            with open(out, "w") as f:
                f.write("# Results\n\n<!-- other:begin -->\nkept\n<!-- other:end -->\n")
            for pair in (1, 2, 3):
                for dut, mpps in (("rvsd", 1.0 + pair / 10), ("direct", 2.0)):
                    r = self.run_cli("record", records, "json=" + json.dumps({"mpps": mpps, "lost": 3}),
                                     "pair=%d" % pair, "dut=" + dut, "load=1.0 2.0 3.0")
                    self.assertEqual(r.returncode, 0, r.stderr)
            r = self.run_cli("report", records, out, "command=scripts/testpmd-bench.sh --pairs 3", "note=loaded")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("rvsd / direct median 0.600 (min 0.550, max 0.650, 3 pairs)", r.stdout)
            text = read(out)
            self.assertIn("<!-- other:begin -->\nkept\n<!-- other:end -->", text)
            self.assertIn("<!-- testpmd-bench:begin -->", text)
            self.assertIn("**0.600** (spread 0.550-0.650): spread within 1.5x.", text)
            self.assertIn("| 2 | rvsd | 1.200 |", text)
            self.assertIn("**loaded**", text)
            self.assertNotIn("rvsd's counters", text)

    def test_report_lists_rvsd_counters(self):
        lines = tb.section([dict(rec(1, "rvsd", 1.0), rvsd={"dnat": 5, "drop.ttl_expired": 0})], {})
        self.assertIn("- pair 1, rvsd's counters after the point (`rvsctl counters`): dnat 5, drop.ttl_expired 0",
                      lines)

    def test_report_fails_when_a_point_failed(self):
        with tempfile.TemporaryDirectory() as d:
            records, out = os.path.join(d, "r.jsonl"), os.path.join(d, "RESULTS.md")
            self.run_cli("record", records, "json={}", "pair=1", "dut=rvsd", "error=link did not come up")
            r = self.run_cli("report", records, out)
            self.assertEqual(r.returncode, 1)
            self.assertIn("FAILED: link did not come up", r.stdout)
            self.assertIn("| 1 | rvsd | - |", read(out))
            self.assertIn("failed: link did not come up", read(out))

    def test_point_cli_reports_missing_output_as_error(self):
        with tempfile.TemporaryDirectory() as d:
            gen, refl = os.path.join(d, "g"), os.path.join(d, "r")
            for p in (gen, refl):
                open(p, "w").close()
            r = self.run_cli("point", gen, refl)
            self.assertIn("error", json.loads(r.stdout))


if __name__ == "__main__":
    unittest.main()
