"""bench_records: the JSON-lines records the benchmark scripts keep, and KEY=VALUE arguments."""

import os
import tempfile
import unittest

from tests import LIB  # noqa: F401  (scripts/lib on sys.path)
import bench_records


class PairsTest(unittest.TestCase):
    def test_splits_at_the_first_equals_sign(self):
        self.assertEqual(bench_records.parse_pairs(["a=1", "cmd=x --y=2", "empty="]),
                         {"a": "1", "cmd": "x --y=2", "empty": ""})

    def test_a_later_pair_wins(self):
        self.assertEqual(bench_records.parse_pairs(["a=1", "a=2"]), {"a": "2"})

    def test_a_word_without_equals_is_an_error(self):
        with self.assertRaises(ValueError):
            bench_records.parse_pairs(["a=1", "oops"])

    def test_require_names_every_missing_key(self):
        bench_records.require({"a": 1, "b": 2}, ("a", "b"))
        with self.assertRaises(KeyError) as e:
            bench_records.require({"a": 1}, ("a", "b", "c"))
        self.assertIn("b, c", str(e.exception))


class FilesTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def file(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_last_json_line_skips_progress_lines(self):
        p = self.file("pg", 'EAL: x\n{"a": 1}\nmeasure 1\n{"a": 2}\ndone\n')
        self.assertEqual(bench_records.last_json_line(p), {"a": 2})

    def test_last_json_line_of_a_file_without_one_is_none(self):
        self.assertIsNone(bench_records.last_json_line(self.file("pg", "EAL: x\n")))

    def test_last_json_line_raises_on_bad_json_and_missing_files(self):
        with self.assertRaises(ValueError):
            bench_records.last_json_line(self.file("pg", "{not json\n"))
        with self.assertRaises(OSError):
            bench_records.last_json_line(os.path.join(self.dir.name, "missing"))

    def test_append_then_read_keeps_the_order(self):
        p = os.path.join(self.dir.name, "records.jsonl")
        bench_records.append(p, {"point": "a", "n": 1})
        bench_records.append(p, {"point": "b", "nested": {"x": [1, 2]}})
        self.assertEqual(bench_records.read(p), [{"point": "a", "n": 1}, {"point": "b", "nested": {"x": [1, 2]}}])
        with open(p) as f:
            self.assertEqual(len(f.read().splitlines()), 2)


class ReportPartsTest(unittest.TestCase):
    def test_code_block(self):
        self.assertEqual(bench_records.code_block(iter(["a", "b"]), "sh"), ["```sh", "a", "b", "```"])
        self.assertEqual(bench_records.code_block([]), ["```", "```"])

    def test_rvsd_config_only_when_read(self):
        self.assertEqual(bench_records.rvsd_config("[eal]\n\n", "Config:"), ["Config:", "", "```toml", "[eal]", "```", ""])
        self.assertEqual(bench_records.rvsd_config(None), [])

    def test_raw_results_are_compact_json_lines(self):
        self.assertEqual(bench_records.raw_results([{"a": 1, "b": [2]}], "Each:"),
                         ["### Raw results", "", "Each:", "", "```", '{"a":1,"b":[2]}', "```"])
        self.assertEqual(bench_records.raw_results([]), ["### Raw results", "", "```", "```"])

    def test_up_to_commands(self):
        self.assertEqual(bench_records.up_to_commands(["x", "", "### Commands", "y"]), ["x", ""])
        self.assertEqual(bench_records.up_to_commands(["x"]), ["x"])


class PairRatioTest(unittest.TestCase):
    @staticmethod
    def rate(r):
        return None if r.get("error") else r.get("mpps")

    def test_pairs_in_pair_order_and_median(self):
        records = [{"pair": 2, "dut": "a", "mpps": 1.5}, {"pair": 2, "dut": "b", "mpps": 2.0},
                   {"pair": 1, "dut": "a", "mpps": 1.0}, {"pair": 1, "dut": "b", "mpps": 2.0},
                   {"pair": 3, "dut": "a", "mpps": 0.9}, {"pair": 3, "dut": "b", "mpps": 1.0}]
        ratios = bench_records.pair_ratios(records, "a", "b", self.rate)
        self.assertEqual(ratios, [0.5, 0.75, 0.9])
        s = bench_records.ratio_summary(ratios)
        self.assertEqual((s["median"], s["min"], s["max"], s["n"]), (0.75, 0.5, 0.9, 3))
        self.assertTrue(s["wide"])
        self.assertEqual(s["verdict"], "spread too wide to conclude")  # 0.9 / 0.5 = 1.8

    def test_a_failed_or_missing_point_or_zero_denominator_drops_its_pair(self):
        records = [{"pair": 1, "dut": "a", "error": "x"}, {"pair": 1, "dut": "b", "mpps": 2.0},
                   {"pair": 2, "dut": "a", "mpps": 1.0}, {"pair": 2, "dut": "b", "mpps": 2.0},
                   {"pair": 3, "dut": "a", "mpps": 1.0}, {"pair": 3, "dut": "b", "mpps": 0.0},
                   {"pair": 4, "dut": "a", "mpps": 1.0}]
        self.assertEqual(bench_records.pair_ratios(records, "a", "b", self.rate), [0.5])

    def test_narrow_spread_concludes(self):
        s = bench_records.ratio_summary([0.8, 0.9, 1.0])
        self.assertFalse(s["wide"])
        self.assertEqual(s["verdict"], "spread within 1.5x")

    def test_one_pair_concludes_nothing(self):
        s = bench_records.ratio_summary([0.5])
        self.assertTrue(s["wide"])
        self.assertEqual((s["median"], s["n"]), (0.5, 1))

    def test_rvsd_counters(self):
        self.assertEqual(bench_records.rvsd_counters("dnat 5\nworker.1.snat 2\nnot a counter\nx y\n"),
                         {"dnat": 5, "worker.1.snat": 2})

    def test_no_ratio_no_summary_and_a_zero_ratio_is_too_wide(self):
        self.assertIsNone(bench_records.ratio_summary([]))
        self.assertEqual(bench_records.ratio_summary([0.0, 0.5, 0.5])["verdict"], "spread too wide to conclude")


if __name__ == "__main__":
    unittest.main()
