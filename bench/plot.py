#!/usr/bin/env python3
"""Draws a comparison run as one PNG with gnuplot (Debian's gnuplot-nox).

Usage: plot.py RESULTS_DIR   (reads RESULTS_DIR/runs.jsonl, writes RESULTS_DIR/plot.png)

Left: median deliveries per second of every fanout-max and dm-max scenario, per target.
Right: p99 latency over time in the first soak of every target.
"""

import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict


def main():
    out = sys.argv[1]
    runs = []
    with open(os.path.join(out, "runs.jsonl")) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    targets, scenarios = [], []
    rates = defaultdict(list)
    soak = {}
    for r in runs:
        if "results" not in r:
            continue
        t, s = r["label"], r["scenario"]
        if t not in targets:
            targets.append(t)
        if s.startswith(("fanout-max", "dm-max")):
            if s not in scenarios:
                scenarios.append(s)
            rates[(s, t)].append(r["results"]["deliveries_per_s"])
        if s == "soak" and t not in soak:
            soak[t] = r["results"]["series"]

    bars = os.path.join(out, "plot-rates.dat")
    with open(bars, "w") as f:
        f.write("scenario " + " ".join(targets) + "\n")
        for s in scenarios:
            vals = []
            for t in targets:
                v = rates.get((s, t))
                vals.append(f"{statistics.median(v) / 1e6:.4f}" if v else "0")
            f.write(s + " " + " ".join(vals) + "\n")
    series = os.path.join(out, "plot-soak.dat")
    with open(series, "w") as f:
        for t in targets:
            f.write(f'"{t}"\n')
            for p in soak.get(t, []):
                f.write(f'{p["t_s"]} {p["latency"]["p99_us"] / 1000:.3f}\n')
            f.write("\n\n")

    ncols = len(targets)
    script = f"""
set terminal pngcairo size 1400,520 font "sans,11"
set output "{os.path.join(out, 'plot.png')}"
set multiplot layout 1,2
set title "Deliveries per second (millions, median; higher is better)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key top right
set yrange [0:*]
set grid ytics
set xtics rotate by -20
plot for [i=2:{ncols + 1}] "{bars}" using i:xtic(1) title columnheader(i)
unset style
set title "Soak: p99 latency per second (ms; lower is better)"
set style data linespoints
set xlabel "seconds"
set logscale y
set xtics norotate
set key top left
plot for [i=0:{ncols - 1}] "{series}" index i using 1:2 with linespoints title columnheader(1)
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    print(os.path.join(out, "plot.png"))


if __name__ == "__main__":
    main()
