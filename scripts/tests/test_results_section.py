"""results_section.write: one section of a shared results file replaced, added or inserted."""

import os
import tempfile
import unittest

from tests import LIB  # noqa: F401  (scripts/lib on sys.path)
import results_section


class WriteTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "RESULTS.md")

    def tearDown(self):
        self.dir.cleanup()

    def text(self):
        with open(self.path) as f:
            return f.read()

    def test_new_file_holds_only_the_section(self):
        results_section.write(self.path, "a", ["one", "two"])
        self.assertEqual(self.text(), "<!-- a:begin -->\none\ntwo\n<!-- a:end -->\n")

    def test_replaces_its_section_and_keeps_the_rest(self):
        with open(self.path, "w") as f:
            f.write("intro\n\n<!-- a:begin -->\nold\n<!-- a:end -->\n\n<!-- b:begin -->\nb\n<!-- b:end -->\n")
        results_section.write(self.path, "a", ["new"])
        self.assertEqual(self.text(), "intro\n\n<!-- a:begin -->\nnew\n<!-- a:end -->\n\n"
                                      "<!-- b:begin -->\nb\n<!-- b:end -->\n")

    def test_replacing_the_last_section_leaves_no_trailing_blank(self):
        with open(self.path, "w") as f:
            f.write("<!-- a:begin -->\nold\n<!-- a:end -->\n\n\n")
        results_section.write(self.path, "a", ["new"])
        self.assertEqual(self.text(), "<!-- a:begin -->\nnew\n<!-- a:end -->\n")

    def test_appends_a_missing_section_after_one_blank_line(self):
        with open(self.path, "w") as f:
            f.write("<!-- b:begin -->\nb\n<!-- b:end -->\n\n")
        results_section.write(self.path, "a", ["x"])
        self.assertEqual(self.text(), "<!-- b:begin -->\nb\n<!-- b:end -->\n\n<!-- a:begin -->\nx\n<!-- a:end -->\n")

    def test_inserts_before_the_named_section(self):
        with open(self.path, "w") as f:
            f.write("<!-- b:begin -->\nb\n<!-- b:end -->\n")
        results_section.write(self.path, "a", ["x"], before="b")
        self.assertEqual(self.text(), "<!-- a:begin -->\nx\n<!-- a:end -->\n\n<!-- b:begin -->\nb\n<!-- b:end -->\n")

    def test_before_a_missing_section_appends(self):
        with open(self.path, "w") as f:
            f.write("top\n")
        results_section.write(self.path, "a", ["x"], before="nope")
        self.assertEqual(self.text(), "top\n\n<!-- a:begin -->\nx\n<!-- a:end -->\n")

    def test_an_existing_section_stays_in_place_even_with_before(self):
        with open(self.path, "w") as f:
            f.write("<!-- b:begin -->\nb\n<!-- b:end -->\n\n<!-- a:begin -->\nold\n<!-- a:end -->\n")
        results_section.write(self.path, "a", ["new"], before="b")
        self.assertEqual(self.text(), "<!-- b:begin -->\nb\n<!-- b:end -->\n\n<!-- a:begin -->\nnew\n<!-- a:end -->\n")


if __name__ == "__main__":
    unittest.main()
