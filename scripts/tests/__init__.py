"""Unit tests of the scripts' Python modules (scripts/lib) and shell helpers.

    python3 -m unittest discover -s scripts/tests -t scripts

(scripts/test.sh runs exactly this). Importing this package puts scripts/lib on sys.path.
"""

import contextlib
import io
import os
import sys
import tempfile

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")
if LIB not in sys.path:
    sys.path.insert(0, LIB)

import bench_records  # noqa: E402  (from scripts/lib, just put on sys.path)


def run_report(main, recs, meta, args=lambda d: [os.path.join(d, "none.toml")], out_text=None):
    """Runs `main(["report", RECORDS, OUT, *args(d), KEY=VALUE...])` as a bench script does, in
    a temporary folder `d`: RECORDS holding `recs`, OUT holding `out_text` when given, the
    pairs from `meta`. Returns OUT's text afterwards and what went to stdout."""
    with tempfile.TemporaryDirectory() as d:
        records, out = os.path.join(d, "records.jsonl"), os.path.join(d, "RESULTS.md")
        for r in recs:
            bench_records.append(records, r)
        if out_text is not None:
            with open(out, "w") as f:
                f.write(out_text)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            main(["report", records, out] + args(d) + ["%s=%s" % kv for kv in meta.items()])
        with open(out) as f:
            return f.read(), stdout.getvalue()
