"""The records the benchmark scripts keep while they run: one JSON object per line, one line
per measured point, in a file under the run's work folder; and what the reports built from
them share (KEY=VALUE arguments, the table about the run). Used by traffic_bench.py,
kernel_bench.py and pipeline_bench.py.
"""

import json


def parse_pairs(args):
    """KEY=VALUE words (as the scripts pass them on the command line) as a dict of strings;
    a value may contain '='. Raises ValueError on a word without one."""
    out = {}
    for a in args:
        if "=" not in a:
            raise ValueError("expected KEY=VALUE, got %r" % a)
        k, v = a.split("=", 1)
        out[k] = v
    return out


def last_json_line(path):
    """The last line of the file at `path` that starts with '{', parsed; None when there is
    none. rvs-pktgen prints its result as such a line after its progress lines. Raises
    OSError and ValueError (bad JSON) to the caller."""
    with open(path) as f:
        lines = [l for l in f if l.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def read(path):
    """Every record of the file at `path`, in order."""
    with open(path) as f:
        return [json.loads(l) for l in f]


def append(path, rec):
    """Appends `rec` as one line to the file at `path`."""
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def require(meta, keys):
    """Raises KeyError naming every key of `keys` missing from `meta`."""
    missing = [k for k in keys if k not in meta]
    if missing:
        raise KeyError("missing report fields: " + ", ".join(missing))


def read_text(path):
    """The text of the file at `path`, or None when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def table(rows):
    """A two-column Markdown table without a header (what a report says about its run), from
    (label, value) pairs."""
    return ["| | |", "| --- | --- |"] + ["| %s | %s |" % row for row in rows]
