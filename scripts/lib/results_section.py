"""One section of benches/RESULTS.md, the file every benchmark writes its own part of.

A section sits between `<!-- NAME:begin -->` and `<!-- NAME:end -->`; writing it replaces
that section, or adds it (at the end, or before the section `before`), and leaves the rest of
the file alone. Used by the bench scripts' report modules (traffic_bench.py, kernel_bench.py,
pipeline_bench.py, bench_plot.py, beside it in scripts/lib). The Rust benchmarks write their
sections by the same rules (rvs_benches::write_results_section).
"""


def write(path, name, lines, before=None):
    """Writes `lines` (a list of strings) as section `name` of the file at `path`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = begin + "\n" + "\n".join(lines) + "\n" + end + "\n"
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    b, e = old.find(begin), old.find(end)
    at = old.find(f"<!-- {before}:begin -->") if before else -1
    if b >= 0 and e > b:
        rest = old[e + len(end):].lstrip("\n")
        new = old[:b] + section + ("\n" + rest if rest else "")
    elif at >= 0:
        new = old[:at] + section + "\n" + old[at:]
    elif old:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        new = section
    with open(path, "w") as f:
        f.write(new)
