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


if __name__ == "__main__":
    unittest.main()
