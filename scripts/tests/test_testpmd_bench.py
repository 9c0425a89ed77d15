"""testpmd_bench: scripts/testpmd-bench.sh's parsing of testpmd's output, ratios and report."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

from tests import LIB  # (and scripts/lib on sys.path)
import testpmd_bench as tb


def stats_block(rx, tx, rx_pps, tx_pps, port=0):
    """A `show port stats` block as testpmd 22.11 prints it (screen clear included)."""
    return ("\x1b[2J\x1b[1;1H\nPort statistics ====================================\n"
            "  ######################## NIC statistics for port %d  ########################\n"
            "  RX-packets: %d          RX-missed: 0          RX-bytes:  %d\n"
            "  RX-errors: 0\n  RX-nombuf:  0         \n"
            "  TX-packets: %d         TX-errors: 0          TX-bytes:  %d\n\n"
            "  Throughput (since last show)\n"
            "  Rx-pps:      %7d          Rx-bps:            0\n"
            "  Tx-pps:      %7d          Tx-bps:            0\n"
            "  ############################################################################\n"
            % (port, rx, rx * 64, tx, tx * 64, rx_pps, tx_pps))


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


# The client (txonly): it never polls, so its RX stays 0; the link refused 900 frames.
GEN = ("testpmd> show port info 0\n  Link status: up\ntestpmd> start\n"
       + stats_block(0, 2000000, 0, 1000000) + stats_block(0, 8000000, 0, 1200000)
       + "testpmd> stop\n" + fwd_stats(0, 8100000, 900))
# The counter (rxonly): 1.1 Mpps came back in the window.
COUNTER = ("testpmd> start\n" + stats_block(1900000, 0, 950000, 0) + stats_block(7400000, 0, 1100000, 0)
           + "testpmd> stop\n" + fwd_stats(7500000, 0))
# The reflector, direct: two ports (from the client on 0, to the counter on 1), stats every second.
REFL = (stats_block(10, 0, 0, 0, 0) + stats_block(0, 10, 0, 0, 1)
        + stats_block(7600000, 0, 0, 0, 0) + stats_block(0, 7500000, 0, 0, 1)
        + stats_block(0, 0, 0, 0, 0) + stats_block(0, 7500000, 0, 0, 1) + fwd_stats(0, 0))


class ParseTest(unittest.TestCase):
    def test_port_stats_blocks(self):
        blocks = tb.port_stats_blocks(GEN)
        self.assertEqual(blocks, [{"port": 0, "rx_packets": 0, "tx_packets": 2000000, "rx_pps": 0, "tx_pps": 1000000},
                                  {"port": 0, "rx_packets": 0, "tx_packets": 8000000, "rx_pps": 0,
                                   "tx_pps": 1200000}])
        self.assertEqual([b["tx_packets"] for b in tb.port_stats_blocks(REFL, 1)], [10, 7500000, 7500000])
        self.assertEqual(len(tb.port_stats_blocks(REFL)), 6)

    def test_forward_stats_is_the_last_accumulated_block(self):
        self.assertIsNone(tb.forward_stats("nothing here"))
        text = fwd_stats(1, 2) + fwd_stats(30, 45, 7)
        self.assertEqual(tb.forward_stats(text), {"rx": 30, "rx_dropped": 0, "tx": 45, "tx_dropped": 7})

    def test_point_offered_from_the_client_delivered_from_the_counter(self):
        p = tb.point(GEN, COUNTER, REFL)
        self.assertAlmostEqual(p["offered_mpps"], 1.2)
        self.assertAlmostEqual(p["mpps"], 1.1)
        self.assertEqual((p["window_sent"], p["window_received"], p["window_lost"]), (6000000, 5500000, 500000))
        self.assertAlmostEqual(p["loss_pct"], 100 * 500000 / 6000000)
        self.assertEqual((p["sent"], p["received"], p["lost"], p["gen_tx_refused"]), (8100000, 7500000, 600000, 900))
        # The highest counts of each of the reflector's ports (memif zeroed port 0's), summed.
        self.assertEqual((p["reflector_rx"], p["reflector_tx"]), (7600000, 7500000))
        self.assertNotIn("error", p)
        self.assertNotIn("rvsd", p)

    def test_rvsd_counters_kept_and_drops_above_zero(self):
        counters = ("port.ret.tx_packets 7936\ndrop.tx_full 0\ndrop.ttl_expired 0\ndrop.no_route 3\n"
                    "conntrack.entries 1\nneighbours:\n")
        p = tb.point(GEN, COUNTER, "", counters)
        self.assertEqual(p["rvsd"], {"port.ret.tx_packets": 7936, "drop.tx_full": 0, "drop.no_route": 3})
        self.assertNotIn("reflector_rx", p)

    def test_nothing_back_is_a_failed_point(self):
        counter = stats_block(0, 0, 0, 0) + stats_block(0, 0, 0, 0) + fwd_stats(0, 0)
        p = tb.point(GEN, counter, "", "drop.no_route 6000000\n")
        self.assertEqual(p["error"], "no reply reached the counting testpmd during the measurement (0 in all)")
        self.assertEqual(p["rvsd"], {"drop.no_route": 6000000})
        gen = stats_block(0, 5, 0, 0) + stats_block(0, 5, 0, 0)
        self.assertEqual(tb.point(gen, COUNTER, "")["error"], "the client testpmd sent nothing during the measurement")
        self.assertIsNone(tb.point(gen, COUNTER, "")["loss_pct"])

    def test_point_without_two_shows_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "the client testpmd printed 1 port stats blocks"):
            tb.point(stats_block(1, 1, 1, 1), COUNTER, "")
        with self.assertRaisesRegex(ValueError, "the counting testpmd printed 0 port stats blocks"):
            tb.point(GEN, "", "")
        # A port other than 0 does not count.
        with self.assertRaisesRegex(ValueError, "the counting testpmd printed 1"):
            tb.point(GEN, stats_block(1, 1, 1, 1) + stats_block(1, 1, 1, 1, 1), "")


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
                    r = self.run_cli("record", records, "json=" + json.dumps(
                        {"mpps": mpps, "offered_mpps": 2.5, "lost": 3, "loss_pct": 12.34}),
                                     "pair=%d" % pair, "dut=" + dut, "load=1.0 2.0 3.0")
                    self.assertEqual(r.returncode, 0, r.stderr)
            r = self.run_cli("report", records, out, "command=scripts/testpmd-bench.sh --pairs 3", "note=loaded")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("rvsd / direct median 0.600 (min 0.550, max 0.650, 3 pairs)", r.stdout)
            text = read(out)
            self.assertIn("<!-- other:begin -->\nkept\n<!-- other:end -->", text)
            self.assertIn("<!-- testpmd-bench:begin -->", text)
            self.assertIn("**0.600** (spread 0.550-0.650): spread within 1.5x.", text)
            self.assertIn("| 2 | rvsd | 2.500 | 1.200 | - | - | - | 12.3 | 3 |", text)
            self.assertIn("**loaded**", text)
            self.assertNotIn("rvsd's counters", text)

    def test_report_lists_rvsd_counters(self):
        lines = tb.section([dict(rec(1, "rvsd", 1.0), rvsd={"dnat": 5, "drop.tx_full": 0})], {})
        self.assertIn("- pair 1, rvsd's counters after the point (`rvsctl counters`; drops above 0 only): "
                      "dnat 5, drop.tx_full 0", lines)
        lines = tb.section([dict(rec(2, "direct", 1.0), reflector_rx=7, reflector_tx=5, gen_tx_refused=9)], {})
        self.assertIn("- pair 2 direct: the reflector received 7 and sent 5; the client's full link refused 9 frames",
                      lines)

    def test_report_fails_when_a_point_failed(self):
        with tempfile.TemporaryDirectory() as d:
            records, out = os.path.join(d, "r.jsonl"), os.path.join(d, "RESULTS.md")
            self.run_cli("record", records, "json={}", "pair=1", "dut=rvsd", "error=link did not come up")
            r = self.run_cli("report", records, out)
            self.assertEqual(r.returncode, 1)
            self.assertIn("FAILED: link did not come up", r.stdout)
            self.assertIn("| 1 | rvsd | - | - |", read(out))
            self.assertIn("failed: link did not come up", read(out))

    def test_point_cli_reports_missing_output_as_error(self):
        with tempfile.TemporaryDirectory() as d:
            gen, cnt, refl = os.path.join(d, "g"), os.path.join(d, "c"), os.path.join(d, "r")
            for p in (gen, cnt, refl):
                open(p, "w").close()
            r = self.run_cli("point", gen, cnt, refl)
            self.assertIn("error", json.loads(r.stdout))

    def test_point_cli_reads_the_three_logs_and_the_counters(self):
        with tempfile.TemporaryDirectory() as d:
            paths = [os.path.join(d, n) for n in ("g", "c", "r", "counters")]
            for p, text in zip(paths, (GEN, COUNTER, REFL, "snat 9\n")):
                with open(p, "w") as f:
                    f.write(text)
            p = json.loads(self.run_cli("point", *paths).stdout)
            self.assertEqual((p["window_lost"], p["rvsd"]), (500000, {"snat": 9}))
            # Counters asked for but not written (rvsctl failed): no rvsd figures, still a point.
            p = json.loads(self.run_cli("point", *paths[:3], os.path.join(d, "missing")).stdout)
            self.assertNotIn("rvsd", p)
            self.assertNotIn("error", p)


if __name__ == "__main__":
    unittest.main()
