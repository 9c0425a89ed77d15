"""conn_bench: scripts/conn-bench.sh's binary searches and report."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

from tests import LIB  # (and scripts/lib on sys.path)
import conn_bench as cb


def trial(value, passed, gap=0.1, **kw):
    r = {"dut": "rvs", "measure": "setup", "value": value, "passed": passed, "max_loop_gap_ms": gap}
    r.update(kw)
    return r


def run_search(limit, lo=0, hi=1000, steps=6, retries=2, gap_ms=1.0, grain=1, disturb=()):
    """Drives a search against a DUT that passes every value <= limit; `disturb` lists trial
    numbers that fail disturbed whatever their value."""
    trials = []
    while True:
        st = cb.search_state(trials, lo, hi, steps, retries, gap_ms, grain)
        if st["next"] is None:
            return st, trials
        n = len(trials)
        if n in disturb:
            trials.append(trial(st["next"], False, gap=5.0))
        else:
            trials.append(trial(st["next"], st["next"] <= limit))
        assert len(trials) < 50


class SearchTest(unittest.TestCase):
    def test_first_trial_is_the_top_and_a_pass_there_ends_it(self):
        st, trials = run_search(5000)
        self.assertEqual([t["value"] for t in trials], [1000])
        self.assertEqual((st["best"], st["low"]), (1000, None))

    def test_bisects_between_best_pass_and_lowest_failure(self):
        st, trials = run_search(300, steps=6)
        self.assertEqual([t["value"] for t in trials], [1000, 500, 250, 375, 312, 281])
        self.assertEqual((st["best"], st["low"], st["tried"]), (281, 312, 6))

    def test_grain_and_convergence_stop_early(self):
        st, trials = run_search(300, steps=20, grain=10)
        self.assertTrue(all(t["value"] % 10 == 0 for t in trials))
        self.assertEqual((st["best"], st["low"]), (300, 310))

    def test_nothing_passes(self):
        st, _ = run_search(-1, steps=4)
        self.assertIsNone(st["best"])
        self.assertEqual(st["low"], 125)

    def test_a_disturbed_failure_is_measured_again_and_does_not_count(self):
        st, trials = run_search(300, steps=6, disturb={1})
        self.assertEqual([t["value"] for t in trials], [1000, 500, 500, 250, 375, 312, 281])
        self.assertEqual((st["best"], st["tried"]), (281, 6))
        # Retries run out: the failure then counts.
        st, trials = run_search(300, steps=3, retries=1, disturb={1, 2})
        self.assertEqual([t["value"] for t in trials], [1000, 500, 500, 250])
        self.assertEqual((st["best"], st["low"]), (250, 500))
        # A quick failure (not off-CPU) is not measured again.
        self.assertFalse(cb.disturbed(trial(5, False, gap=0.5), 1.0))
        self.assertFalse(cb.disturbed(trial(5, True, gap=50), 1.0))
        # Nor a failure the DUT explains (its table full), nor one with a wrong frame.
        self.assertTrue(cb.disturbed(trial(5, False, gap=5, dut_counters={"drop.tx_full": 9}), 1.0))
        self.assertFalse(cb.disturbed(trial(5, False, gap=5, dut_counters={"drop.table_full": 9}), 1.0))
        self.assertFalse(cb.disturbed(trial(5, False, gap=5, phases=[{"client_faults": {"sequence": 1}}]), 1.0))


class RateKeptTest(unittest.TestCase):
    def test_a_pass_below_the_rate_asked_is_a_failure(self):
        def at(cps):
            return trial(1000, True, phases=[{"phase": "warmup"}, {"phase": "setup", "offered_cps": cps, "passed": True}])

        self.assertTrue(cb.ok(at(999)))
        self.assertTrue(cb.ok(at(950)))
        self.assertFalse(cb.ok(at(900)))
        self.assertFalse(cb.disturbed(dict(at(900), passed=False, max_loop_gap_ms=50), 1.0))
        self.assertIn("offered only 900 connections/s", cb.trial_reason(at(900)))
        # The capacity test's value is a number of connections: no rate to keep.
        cap = dict(at(10), measure="capacity")
        self.assertTrue(cb.ok(cap))


class ReportTest(unittest.TestCase):
    def test_record_next_report(self):
        with tempfile.TemporaryDirectory() as d:
            rec, pg, out = (os.path.join(d, n) for n in ("r.jsonl", "pg.json", "R.md"))
            counters = os.path.join(d, "c.txt")
            with open(counters, "w") as f:
                f.write("drop.tx_full 12\ndnat 100\nnot a counter line\n")
            phases = [{"phase": "warmup", "passed": True},
                      {"phase": "setup", "passed": False, "completed": 90, "conns": 100, "acks_absorbed": 180,
                       "acks_expected": 200, "incomplete_by_stage": {"syn_sent": 10}, "client_faults": {},
                       "server_faults": {"sequence": 1}, "tx_failed": 0, "send_s": 0.1, "done_s": 0.2}]
            script = os.path.join(LIB, "conn_bench.py")
            for value, passed in ((1000, False), (500, True)):
                with open(pg, "w") as f:
                    f.write("EAL: noise\n" + json.dumps({"passed": passed, "phases": phases,
                                                          "max_loop_gap_ms": 0.2}) + "\n")
                subprocess.run([sys.executable, script, "record", rec, pg, "dut=rvs", "measure=setup",
                                "value=%d" % value, "counters=" + counters, "load=1.0 1.0 1.0"], check=True)
            subprocess.run([sys.executable, script, "record", rec, os.path.join(d, "missing"), "dut=testpmd",
                            "measure=setup", "value=7"], check=True)
            nxt = subprocess.run([sys.executable, script, "next", rec, "dut=rvs", "measure=setup", "lo=0",
                                  "hi=1000", "steps=6", "grain=10"], check=True, capture_output=True, text=True)
            self.assertEqual(nxt.stdout.strip(), "750")
            meta = ["date=2026-01-01", "commit=abc", "command=scripts/conn-bench.sh", "cpu=X", "nproc=2",
                    "load=1 1 1", "steps=6", "steps_capacity=10", "gap_ms=1", "retries=2"]
            p = subprocess.run([sys.executable, script, "report", rec, out, os.path.join(d, "none.toml")] + meta,
                               check=True, capture_output=True, text=True)
            self.assertIn("| rvs | setup | **500** (1,000 failed) connections/s | 2 | 0 | 1,000 |", p.stdout)
            with open(out) as f:
                text = f.read()
            self.assertIn("<!-- conn-bench:begin -->", text)
            self.assertIn("setup: 90 of 100 completed; 180 of 200 ACKs reached the server; left in syn_sent 10; "
                          "server faults {\"sequence\": 1}", text)
            self.assertIn("rvsd drop.tx_full 12", text)
            self.assertIn("| testpmd | setup | **failed**: no trial passed (lowest tried 7)", text)
            self.assertIn("rvs-pktgen's result unreadable", text)


if __name__ == "__main__":
    unittest.main()
