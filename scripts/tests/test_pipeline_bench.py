"""pipeline_bench: scripts/pipeline-bench.sh's report and its reading of callgrind_annotate."""

import json
import os
import tempfile
import unittest

from tests import run_report  # (and scripts/lib on sys.path)
import pipeline_bench as pb

META = {"command": "scripts/pipeline-bench.sh --cpu 1", "date": "2026-01-02 03:04 UTC", "commit": "abc1234",
        "nproc": "2", "cpu": "Test CPU", "load_before": "0.1 0.2 0.3", "load_after": "0.4 0.5 0.6",
        "valgrind": "valgrind-3.19.0"}

ANNOTATE = """--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
63,000,000 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                   file:function
--------------------------------------------------------------------------------
20,000,000 (31.75%)  ???:dataplane::conntrack::Table::lookup [/x/pipeline-bench]
10,000,000 (15.87%)  src/pipeline.rs:dataplane::pipeline::Worker::process
 5,000,000 ( 7.94%)  src/table.rs:dataplane::conntrack::Table::lookup
   400,000 ( 0.63%)  => src/c.rs:callee (1x)
     1,000 ( 0.00%)  ???:memcpy
"""


def native(proto, path, flows, prefetch=True, **kv):
    r = {"mode": "native", "load": "1 1 1", "proto": proto, "path": path, "flows": flows, "prefetch": prefetch,
         "packets": 1000000, "ns_best": 50.0, "ns_median": 55.5, "mpps_best": 20.0, "clock_ghz": 3.0,
         "table_mib": 64.4, "warmup_s": 1.25}
    r.update(kv)
    return r


def callgrind(proto, path, flows, **kv):
    r = {"mode": "callgrind", "proto": proto, "path": path, "flows": flows, "packets": 100000, "ir": 30000000}
    r.update(kv)
    return r


class AnnotateTest(unittest.TestCase):
    def test_parse_annotate(self):
        self.assertEqual(pb.parse_annotate(ANNOTATE), {
            "dataplane::conntrack::Table::lookup": 25000000,
            "dataplane::pipeline::Worker::process": 10000000,
            "memcpy": 1000})

    def test_per_packet_keeps_the_top(self):
        by = {"a": 100, "b": 300, "c": 200}
        self.assertEqual(pb.per_packet(by, 100), [("b", 3.0), ("c", 2.0), ("a", 1.0)])
        self.assertEqual(pb.per_packet(by, 10, top=1), [("b", 30.0)])

    def test_annotate_without_an_output_file_is_none(self):
        with tempfile.TemporaryDirectory() as d:
            profile = pb.annotate(d)
            self.assertIsNone(profile(callgrind("udp", "new", 1000)))

    def test_fl(self):
        self.assertEqual([pb.fl(n) for n in (1000, 1000000, 10000000, 1500, 1234567, 999)],
                         ["1K", "1M", "10M", "1500", "1234567", "999"])


class ReportTest(unittest.TestCase):
    RECS = [native("udp", "established", 1000),
            native("udp", "established", 1000, prefetch=False, clock_ghz=None),
            native("tcp", "new", 1000000, error="exit 101"),
            callgrind("udp", "established", 1000),
            callgrind("udp", "established", 1000000, ir=None),
            callgrind("tcp", "new", 1000000, error="exit 1")]

    def test_rows(self):
        L = pb.report(self.RECS, META, ["/tmp/w/x --flows 1000", "valgrind --out=/tmp/w/cg"], work="/tmp/w")
        self.assertEqual(L[2], "Written by `scripts/pipeline-bench.sh` (`scripts/pipeline-bench.sh --cpu 1`) on "
                               "2026-01-02 03:04 UTC, commit abc1234. Machine: 2 CPUs, Test CPU; load average "
                               "0.1 0.2 0.3 before, 0.4 0.5 0.6 after. valgrind-3.19.0.")
        # 300 instructions per packet in 150 cycles (50 ns at 3 GHz).
        self.assertIn("| udp | established | 1K | on | 50.0 | 55.5 | 20.00 | 3.00 | 150 | 300 | 2.0 | 64 | 1.2 |", L)
        self.assertIn("| udp | established | 1K | off | 50.0 | 55.5 | 20.00 |  |  | not run |  | 64 | 1.2 |", L)
        self.assertIn("| tcp | new | 1M | on | failed (exit 101) | | | | | failed (exit 1) | | | |", L)
        self.assertNotIn("### Where the instructions go (callgrind, UDP)", L)
        i = L.index("### Commands")
        self.assertEqual(L[i + 2:i + 5], ["```", "$WORK/x --flows 1000", "valgrind --out=$WORK/cg"])
        raw = [json.loads(l) for l in L[L.index("### Raw results"):] if l.startswith("{")]
        self.assertEqual(raw, self.RECS)

    def test_profile_of_the_largest_udp_callgrind_run(self):
        recs = [callgrind("udp", "established", 1000), callgrind("udp", "new", 1000000),
                callgrind("udp", "established", 1000000), callgrind("tcp", "new", 10000000)]
        seen = []

        def profile(r):
            seen.append((r["path"], r["flows"]))
            return [("dataplane::conntrack::Table::lookup", 250.4), ("memcpy", 1.0)]
        L = pb.report(recs, META, [], profile=profile)
        self.assertEqual(seen, [("established", 1000), ("new", 1000000), ("established", 1000000)])
        i = L.index("### Where the instructions go (callgrind, UDP)")
        self.assertEqual([l for l in L[i:L.index("### Commands")] if "flows:" in l], [
            "new, 1M flows: `conntrack::Table::lookup` 250, `memcpy` 1",
            "established, 1M flows: `conntrack::Table::lookup` 250, `memcpy` 1"])

    def test_ipv6_beside_ipv4(self):
        six = {"family": 6}
        recs = [native("udp", "established", 1000000, ns_best=40.0),
                native("udp", "established", 1000000, ns_best=44.0, **six),
                native("tcp", "new", 1000000, ns_best=100.0),
                native("tcp", "new", 1000000, ns_best=300.0, **six),
                native("udp", "new", 1000, error="exit 1", **six),
                native("udp", "reply", 10000000, ns_best=50.0),
                native("udp", "reply", 10000000, ns_best=70.0, **six),
                callgrind("udp", "established", 1000000, ir=50000000),
                callgrind("udp", "established", 1000000, ir=56000000, **six),
                callgrind("tcp", "new", 1000000, ir=100000000),
                callgrind("tcp", "new", 1000000, ir=200000000, **six)]
        seen = []

        def profile(r):
            seen.append((pb.family(r), r["path"]))
            return [("dataplane::x", 5.0)]
        L = pb.report(recs, META, [], profile=profile)
        # IPv4's table and what other reports cite stay IPv4's.
        self.assertIn("| udp | established | 1M | on | 40.0 | 55.5 | 20.00 | 3.00 | 120 | 500 | 4.2 | 64 | 1.2 |", L)
        self.assertFalse(any(l.startswith("| udp | established | 1M | on | 44.0") for l in L))
        i = L.index("### IPv6 beside IPv4")
        self.assertIn("| udp | established | 1M | 40.0 | 44.0 | 1.10 | 500 | 560 | 1.12 | yes |", L[i:])
        self.assertIn("| tcp | new | 1M | 100.0 | 300.0 | 3.00 | 1000 | 2000 | 2.00 | no |", L[i:])
        self.assertIn("| udp | new | 1K |  |  |  |  |  |  |  |", L[i:])
        # No instructions at 10M flows: the time judges, and the verdict says so.
        self.assertIn("| udp | reply | 10M | 50.0 | 70.0 | 1.40 |  |  |  | no (by time) |", L[i:])
        self.assertIn("Failed IPv6 runs: native udp new 1K (exit 1).", L[i:])
        self.assertIn("established, 1M flows: `x` 5", L[i:])
        self.assertEqual(seen, [(4, "established"), (6, "established")])
        self.assertEqual([pb.cg_file(r) for r in recs[7:9]],
                         ["cg.udp.established.1000000", "cg6.udp.established.1000000"])
        text = "<!-- pipeline-bench:begin -->\n" + "\n".join(L) + "\n<!-- pipeline-bench:end -->\n"
        self.assertEqual(pb.instructions(text)[0], {("udp", "established", 1000000): 500.0,
                                                    ("tcp", "new", 1000000): 1000.0})

    def test_cli_report(self):
        def commands(d):
            cmds = os.path.join(d, "commands")
            with open(cmds, "w") as f:
                f.write("%s/bin --json\n\n" % d)
            return [cmds]
        text, stdout = run_report(pb.main, self.RECS, META, commands)
        self.assertIn("```\n$WORK/bin --json\n```\n", text)
        self.assertTrue(stdout.startswith("## Pipeline without I/O (pipeline-bench)\n"))
        self.assertNotIn("### Commands", stdout)


if __name__ == "__main__":
    unittest.main()
