"""The records the benchmark scripts keep while they run: one JSON object per line, one line
per measured point, in a file under the run's work folder; and what the reports built from
them share (KEY=VALUE arguments, the table about the run, code blocks, the raw results, the
report subcommand, the median ratio of interleaved pairs). Used by traffic_bench.py,
kernel_bench.py, pipeline_bench.py and testpmd_bench.py.
"""

import json
import statistics

import results_section


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


# Interleaved pairs: wider than this (max / min of the pairs' ratios) and the median says nothing.
SPREAD_LIMIT = 1.5


def pair_ratios(records, num, den, rate):
    """Ratios DUT `num` / DUT `den` of interleaved pairs, in pair order: `records` carry a `pair`
    index and a `dut`; `rate(record)` is a record's figure, None when it failed. A pair with a
    failed point or a zero denominator gives no ratio."""
    by_pair = {}
    for r in records:
        by_pair.setdefault(r.get("pair"), {})[r.get("dut")] = r
    ratios = []
    for _, duts in sorted(by_pair.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        a, b = duts.get(num), duts.get(den)
        ra = rate(a) if a else None
        rb = rate(b) if b else None
        if ra is not None and rb:
            ratios.append(ra / rb)
    return ratios


def ratio_summary(ratios):
    """median, min, max and count of `ratios` and a verdict (whether the spread lets the median
    conclude anything, see SPREAD_LIMIT); None without ratios."""
    if not ratios:
        return None
    lo, hi = min(ratios), max(ratios)
    if len(ratios) < 2:
        wide, verdict = True, "one pair: spread unknown, nothing to conclude"
    else:
        wide = lo <= 0 or hi / lo > SPREAD_LIMIT
        verdict = "spread too wide to conclude" if wide else "spread within %.1fx" % SPREAD_LIMIT
    return {"median": statistics.median(ratios), "min": lo, "max": hi, "n": len(ratios), "wide": wide,
            "verdict": verdict}


def rvsd_counters(text):
    """`rvsctl counters` output (NAME VALUE lines) as a dict of ints; other lines are skipped."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
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


def code_block(lines, lang=""):
    """`lines` as a fenced Markdown code block."""
    return ["```" + lang] + list(lines) + ["```"]


def rvsd_config(conf, intro="rvsd's configuration:"):
    """The paragraph `intro` and rvsd's configuration file `conf` in a TOML block; nothing when
    `conf` is None (it could not be read)."""
    if conf is None:
        return []
    return [intro, ""] + code_block([conf.rstrip()], "toml") + [""]


def raw_results(records, intro=None):
    """A report's last part: `intro`, then each of `records` as one compact JSON line."""
    L = ["### Raw results", ""]
    if intro:
        L += [intro, ""]
    return L + code_block(json.dumps(r, separators=(",", ":")) for r in records)


def up_to_commands(L):
    """The lines of a report before its "### Commands" part: what is worth printing on the
    console."""
    return L[:next((i for i, l in enumerate(L) if l == "### Commands"), len(L))]


def add_report_parser(sub, name, conf_help):
    """The subcommand `report RECORDS OUT CONF KEY=VALUE...` that writes section `name`."""
    a = sub.add_parser("report", help="write the %s section" % name)
    a.add_argument("records")
    a.add_argument("out")
    a.add_argument("conf", help=conf_help)
    a.add_argument("meta", nargs="*", metavar="KEY=VALUE")


def write_report(args, name, report, console):
    """Runs the report subcommand of [`add_report_parser`]: `report(records, pairs, conf)`
    (conf None when the file cannot be read) becomes section `name` of OUT, and
    `console(lines)` goes to stdout."""
    L = report(read(args.records), parse_pairs(args.meta), read_text(args.conf))
    results_section.write(args.out, name, L)
    print(console(L))
