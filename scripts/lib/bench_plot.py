"""The plot of scripts/bench.sh's raw results (the JSON lines in the "Raw results" block of
benches/RESULTS.md's traffic-bench section): delivered Mpps against flows (rvs and testpmd, UDP
and TCP, new connections as separate markers) and the latency percentiles of every point,
into an image linked from its own section of RESULTS.md (<!-- bench-plot:begin --> ...
<!-- bench-plot:end -->). Run through scripts/bench-plot.py; the plot needs matplotlib.
"""

import json
import os
import sys

import results_section
import traffic_bench


def raw_records(text):
    """The measured points of the traffic-bench section of a RESULTS.md text: of its raw JSON
    lines with an rvs-pktgen result and no error, each DUT's median run of each point (the DUTs
    run interleaved, several pairs per point). Raises ValueError when the section is missing or
    holds no such point."""
    b = text.find("<!-- traffic-bench:begin -->")
    e = text.find("<!-- traffic-bench:end -->")
    if b < 0 or e < b:
        raise ValueError("no traffic-bench section")
    recs = []
    for line in text[b:e].splitlines():
        if line.startswith('{"dut"'):
            r = json.loads(line)
            if r.get("pktgen") and not r.get("error"):
                recs.append(r)
    if not recs:
        raise ValueError("no raw results in the traffic-bench section")
    keys = []
    for r in recs:
        if (r["dut"], r["point"]) not in keys:
            keys.append((r["dut"], r["point"]))
    return [traffic_bench.median_run(traffic_bench.runs(recs, *k)) for k in keys]


def established(recs, dut, proto):
    """(flows, delivered Mpps) of a DUT's established-flow IPv4 points of a protocol, by flows
    (the new-connection and fixed-rate latency points, and IPv6 ones, left out)."""
    return sorted(
        (r["pktgen"]["flows"], r["pktgen"]["delivered_mpps"])
        for r in recs
        if r["dut"] == dut
        and r["pktgen"]["proto"] == proto
        and r["pktgen"].get("family", 4) == 4
        and not r["pktgen"].get("new_conns")
        and not r["point"].endswith("-latency")
    )


def plot(recs, out):
    """Draws the two charts of `recs` into the image file `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    style = {"rvs": "-", "testpmd": "--"}
    color = {"udp": "tab:blue", "tcp": "tab:orange"}
    for dut in ("rvs", "testpmd"):
        for proto in ("udp", "tcp"):
            pts = established(recs, dut, proto)
            if pts:
                ax1.plot(*zip(*pts), style[dut], marker="o", color=color[proto],
                         label=f"{dut} {proto} established")
            nc = [r for r in recs if r["dut"] == dut and r["point"] == f"{proto}-newconn"]
            for r in nc:
                ax1.scatter([r["pktgen"]["flows"]], [r["pktgen"]["delivered_mpps"]],
                            marker="x" if dut == "rvs" else "+", s=80, color=color[proto],
                            label=f"{dut} {proto} new conns/s (M)")
    ax1.set_xscale("log")
    ax1.set_xlabel("flows")
    ax1.set_ylabel("delivered Mpps")
    ax1.set_ylim(bottom=0)
    ax1.set_title("Throughput against flows (memif, 64-byte frames)")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)

    pcts = ("p50", "p99", "p999", "max")
    labels = [f"{r['dut']}\n{r['point']}" for r in recs]
    x = range(len(recs))
    width = 0.2
    for i, p in enumerate(pcts):
        ax2.bar([j + (i - 1.5) * width for j in x],
                [r["pktgen"]["latency_us"][p] for r in recs], width, label=p)
    ax2.set_yscale("log")
    ax2.set_xticks(list(x))
    ax2.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax2.set_ylabel("round trip, us (log)")
    ax2.set_title("Latency percentiles per point (saturated except *-latency at 0.5 Mpps)")
    ax2.grid(True, axis="y", which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def section(src, out, points):
    """The lines of the bench-plot section of the results file `src` that links the image `out`
    (relative to `src`), drawn from `points` points."""
    rel = os.path.relpath(out, os.path.dirname(os.path.abspath(src)))
    return [
        "## Plot of the traffic benchmark",
        "",
        f"Written by `scripts/bench-plot.py` from the raw results below ({points} points).",
        "",
        f"![throughput against flows; latency percentiles]({rel})",
    ]


def main(argv, root):
    """bench-plot.py [RESULTS.md] [OUT.png], defaults under `root`/benches."""
    src = argv[0] if len(argv) > 0 else os.path.join(root, "benches", "RESULTS.md")
    out = argv[1] if len(argv) > 1 else os.path.join(root, "benches", "bench.png")
    with open(src) as f:
        text = f.read()
    try:
        recs = raw_records(text)
    except ValueError as e:
        sys.exit(f"{src}: {e}")
    plot(recs, out)
    print(f"wrote {out}")
    results_section.write(src, "bench-plot", section(src, out, len(recs)), before="traffic-bench")
    return 0
