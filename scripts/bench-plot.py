#!/usr/bin/env python3
"""Plots scripts/bench.sh's raw results (the JSON lines in the "Raw results" block of
benches/RESULTS.md's traffic-bench section) into benches/bench.png: delivered Mpps against
flows (rvs and testpmd, UDP and TCP, new connections as separate markers) and the latency
percentiles of every point. Needs matplotlib (pip install matplotlib). It links the image from
its own section of RESULTS.md (<!-- bench-plot:begin --> ... <!-- bench-plot:end -->).

    python3 scripts/bench-plot.py [RESULTS.md] [OUT.png]

The code is scripts/lib/bench_plot.py.
"""

import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "lib"))

import bench_plot  # noqa: E402

if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__.strip())
        sys.exit(0)
    sys.exit(bench_plot.main(sys.argv[1:], os.path.dirname(here)))
