"""results_section.write: one section of a shared results file replaced, added or inserted."""

import os
import tempfile
import unittest

from tests import LIB  # noqa: F401  (scripts/lib on sys.path)
import results_section


# Sections as the file holds them.
A_OLD = "<!-- a:begin -->\nold\n<!-- a:end -->\n"
A_NEW = "<!-- a:begin -->\nnew\n<!-- a:end -->\n"
A_X = "<!-- a:begin -->\nx\n<!-- a:end -->\n"
B = "<!-- b:begin -->\nb\n<!-- b:end -->\n"


class WriteTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "RESULTS.md")

    def tearDown(self):
        self.dir.cleanup()

    def written(self, old, name, lines, before=None):
        """The file's text after writing section `name` into it, holding `old` before (None:
        no file)."""
        if old is not None:
            with open(self.path, "w") as f:
                f.write(old)
        results_section.write(self.path, name, lines, before=before)
        with open(self.path) as f:
            return f.read()

    def test_new_file_holds_only_the_section(self):
        self.assertEqual(self.written(None, "a", ["one", "two"]), "<!-- a:begin -->\none\ntwo\n<!-- a:end -->\n")

    def test_replaces_its_section_and_keeps_the_rest(self):
        self.assertEqual(self.written("intro\n\n" + A_OLD + "\n" + B, "a", ["new"]),
                         "intro\n\n" + A_NEW + "\n" + B)

    def test_replacing_the_last_section_leaves_no_trailing_blank(self):
        self.assertEqual(self.written(A_OLD + "\n\n", "a", ["new"]), A_NEW)

    def test_appends_a_missing_section_after_one_blank_line(self):
        self.assertEqual(self.written(B + "\n", "a", ["x"]), B + "\n" + A_X)

    def test_inserts_before_the_named_section(self):
        self.assertEqual(self.written(B, "a", ["x"], before="b"), A_X + "\n" + B)

    def test_before_a_missing_section_appends(self):
        self.assertEqual(self.written("top\n", "a", ["x"], before="nope"), "top\n\n" + A_X)

    def test_an_existing_section_stays_in_place_even_with_before(self):
        self.assertEqual(self.written(B + "\n" + A_OLD, "a", ["new"], before="b"), B + "\n" + A_NEW)


if __name__ == "__main__":
    unittest.main()
