#!/usr/bin/env python3
"""Before and after of a change to the packet path: two pipeline-bench binaries (one built at
the commit before, one after) measured in one run on the same machine.

    scripts/pipeline-compare.py --before BIN --after BIN [--flows 1000,1000000] [--pairs 5] [--cpu 1]
                                [--families 4,6] [--paths established,new,reply]

For every point (IPv4/IPv6 x UDP/TCP x path x flows; IPv4, established and new by default;
both binaries must know the paths asked for):
instructions per packet under callgrind (100K measured packets, collected only inside
pipeline-bench's measured loop: they do not depend on what else the machine runs), then native
ns per packet with the two binaries interleaved, before, after, before, after, ... `--pairs`
times, best of 3 runs each. Prints a Markdown table:
the instruction counts, the median (min-max) ns of each side and the median (min-max) of the
pairs' after/before ratios. Build the "before" binary in a worktree of the earlier commit:

    git worktree add /tmp/before REV && (cd /tmp/before && cargo build --release -p rvs-benches --bin pipeline-bench)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bench_records  # noqa: E402


def run(cmd):
    """Runs a pipeline-bench command; when it fails, what it printed on stderr (a panic's
    message, say) goes to ours before the error, instead of being lost with the capture."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise subprocess.CalledProcessError(r.returncode, cmd, r.stdout, r.stderr)
    return r


def callgrind_instr(binary, family, proto, path, flows, packets, work):
    """Instructions per measured packet of one pipeline-bench run under callgrind."""
    out = os.path.join(work, "cg.out")
    r = run(["valgrind", "--tool=callgrind", "--collect-atstart=no",
             "--toggle-collect=*pipeline_bench*measured*", "--callgrind-out-file=" + out,
             binary, "--family", family, "--flows", str(flows), "--proto", proto,
             "--path", path, "--packets", str(packets), "--repeat", "1", "--json"])
    for line in r.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split("Collected :")[1]) // packets
    raise RuntimeError("callgrind printed no total for %s" % binary)


def native_ns(binary, family, proto, path, flows, cpu):
    """Best ns per packet of 3 native runs."""
    packets = 500000 if path == "new" else 1000000
    cmd = [binary, "--family", family, "--flows", str(flows), "--proto", proto, "--path", path,
           "--packets", str(packets), "--repeat", "3", "--json"]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    return json.loads(run(cmd).stdout)["ns_best"]


def span(values, fmt):
    return (fmt + " (" + fmt + "-" + fmt + ")") % (statistics.median(values), min(values), max(values))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--flows", default="1000,1000000")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--families", default="4", help="4, 6 or 4,6 (pipeline-bench --family)")
    ap.add_argument("--paths", default="established,new",
                    help="comma-separated pipeline-bench --path values: established, new, reply")
    args = ap.parse_args()
    paths = args.paths.split(",")
    if any(p not in ("established", "new", "reply") for p in paths):
        ap.error("--paths: established, new and/or reply, comma-separated")
    flows = [int(f) for f in args.flows.split(",")]
    families = args.families.split(",")
    if any(f not in ("4", "6") for f in families):
        ap.error("--families: 4 and/or 6, comma-separated")
    print("| family | proto | path | flows | instr/pkt before | instr/pkt after | change | ns before, median (min-max) "
          "| ns after, median (min-max) | after/before, median (min-max) | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for fam in families:
            for f in flows:
                for proto in ("udp", "tcp"):
                    for path in paths:
                        point(args, work, fam, proto, path, f)


def point(args, work, fam, proto, path, f):
    """One row of the table: callgrind of each binary, then the native runs interleaved."""
    ib = callgrind_instr(args.before, fam, proto, path, f, 100000, work)
    ia = callgrind_instr(args.after, fam, proto, path, f, 100000, work)
    nb, na = [], []
    for _ in range(args.pairs):
        nb.append(native_ns(args.before, fam, proto, path, f, args.cpu))
        na.append(native_ns(args.after, fam, proto, path, f, args.cpu))
    s = bench_records.ratio_summary([a / b for a, b in zip(na, nb)])
    print("| IPv%s | %s | %s | %s | %s | %s | %+.1f%% | %s | %s | %.2f (%.2f-%.2f) | %s |" % (
        fam, proto, path, "{:,}".format(f), "{:,}".format(ib), "{:,}".format(ia),
        100.0 * (ia - ib) / ib, span(nb, "%.1f"), span(na, "%.1f"), s["median"], s["min"],
        s["max"], s["verdict"]), flush=True)


if __name__ == "__main__":
    main()
