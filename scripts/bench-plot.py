#!/usr/bin/env python3
"""Plots scripts/bench.sh's raw results (the JSON lines in the "Raw results" block of
benches/RESULTS.md's traffic-bench section) into benches/bench.png: delivered Mpps against
flows (rvs and testpmd, UDP and TCP, new connections as separate markers) and the latency
percentiles of every point. Needs matplotlib (pip install matplotlib). It links the image from
its own section of RESULTS.md (<!-- bench-plot:begin --> ... <!-- bench-plot:end -->).

    python3 scripts/bench-plot.py [RESULTS.md] [OUT.png]
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import results_section  # noqa: E402  (scripts/, beside this file)

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "benches", "RESULTS.md")
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "benches", "bench.png")

text = open(src).read()
b = text.find("<!-- traffic-bench:begin -->")
e = text.find("<!-- traffic-bench:end -->")
if b < 0 or e < b:
    sys.exit(f"{src}: no traffic-bench section")
recs = []
for line in text[b:e].splitlines():
    if line.startswith('{"dut"'):
        r = json.loads(line)
        if r.get("pktgen") and not r.get("error"):
            recs.append(r)
if not recs:
    sys.exit(f"{src}: no raw results in the traffic-bench section")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
style = {"rvs": "-", "testpmd": "--"}
color = {"udp": "tab:blue", "tcp": "tab:orange"}
for dut in ("rvs", "testpmd"):
    for proto in ("udp", "tcp"):
        pts = sorted(
            (r["pktgen"]["flows"], r["pktgen"]["delivered_mpps"])
            for r in recs
            if r["dut"] == dut
            and r["pktgen"]["proto"] == proto
            and not r["pktgen"].get("new_conns")
            and not r["point"].endswith("-latency")
        )
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
print(f"wrote {out}")

rel = os.path.relpath(out, os.path.dirname(os.path.abspath(src)))
results_section.write(src, "bench-plot", [
    "## Plot of the traffic benchmark",
    "",
    f"Written by `scripts/bench-plot.py` from the raw results below ({len(recs)} points).",
    "",
    f"![throughput against flows; latency percentiles]({rel})",
], before="traffic-bench")
