#!/usr/bin/env python3
"""Turns natter-bench JSON lines (runs.jsonl) into one Markdown table of medians and ratios.

Usage: table.py RUNS.jsonl [machine.txt]

Each cell is the median over the repeats of one scenario on one target; "n/m" notes a cell
where only n of m runs succeeded. The last column compares natter with the best peer:
for "higher is better" metrics natter / best, for "lower is better" best / natter, so above
1.0 always means natter is ahead.
"""

import json
import statistics
import sys
from collections import defaultdict

# (scenario prefix, metric label, path into results, better: "hi" or "lo", scale)
METRICS = [
    ("fanout-max", "deliveries/s", ("deliveries_per_s",), "hi", 1),
    ("fanout-max", "latency p99 ms", ("latency", "p99_us"), "lo", 1e-3),
    ("fanout-max", "lost+dup+reordered", ("_faults",), "lo", 1),
    ("fanout-rate", "latency p50 ms", ("latency", "p50_us"), "lo", 1e-3),
    ("fanout-rate", "latency p99 ms", ("latency", "p99_us"), "lo", 1e-3),
    ("fanout-rate", "lost+dup+reordered", ("_faults",), "lo", 1),
    ("dm-max", "deliveries/s", ("deliveries_per_s",), "hi", 1),
    ("dm-max", "latency p99 ms", ("latency", "p99_us"), "lo", 1e-3),
    ("dm-max", "lost+dup+reordered", ("_faults",), "lo", 1),
    ("connect", "registrations/s", ("connects_per_s",), "hi", 1),
    ("connect", "registration p99 ms", ("registration", "p99_us"), "lo", 1e-3),
    ("connect", "server KiB per connection", ("kib_per_conn",), "lo", 1),
    ("join", "registrations/s", ("connects_per_s",), "hi", 1),
    ("join", "registration p99 ms", ("registration", "p99_us"), "lo", 1e-3),
    ("join", "broadcast reached", ("broadcast_reached",), "hi", 1),
    ("maxconn", "registrations/s", ("connects_per_s",), "hi", 1),
    ("maxconn", "broadcast reached", ("broadcast_reached",), "hi", 1),
    ("maxconn", "server KiB per connection", ("kib_per_conn",), "lo", 1),
    ("soak", "latency p99 ms", ("latency", "p99_us"), "lo", 1e-3),
    ("soak", "server RSS at end MiB", ("rss_end_kib",), "lo", 1 / 1024),
    ("soak", "lost+dup+reordered", ("_faults",), "lo", 1),
]


def value(results, path):
    if path == ("_faults",):
        return sum(results.get(k) or 0 for k in ("lost", "duplicates", "reordered"))
    v = results
    for p in path:
        if not isinstance(v, dict) or v.get(p) is None:
            return None
        v = v[p]
    return v


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def main():
    runs = []
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if line:
                runs.append(json.loads(line))
    targets, scenarios = [], []
    cells = defaultdict(list)  # (scenario, target) -> [results or None]
    for r in runs:
        t, s = r.get("label"), r.get("scenario")
        if t not in targets:
            targets.append(t)
        if s not in scenarios:
            scenarios.append(s)
        ok = "results" in r and not r["results"].get("closed")
        cells[(s, t)].append(r["results"] if ok else None)

    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            print("```text\n" + f.read().rstrip() + "\n```\n")
    peers = [t for t in targets if not t.startswith("natter")]
    # Each natter target run from an earlier build too (TARGET-prev) gets a column of its own.
    prevs = [t for t in targets if t.startswith("natter") and f"{t}-prev" in targets]
    head = (
        ["scenario", "metric"]
        + targets
        + (["natter vs best peer"] if peers else [])
        + [f"{t} vs previous build" for t in prevs]
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for s in scenarios:
        for prefix, label, path, better, scale in METRICS:
            if not s.startswith(prefix):
                continue
            med = {}
            row = [s, label + (" (higher is better)" if better == "hi" else "")]
            for t in targets:
                got = cells.get((s, t), [])
                vals = [value(r, path) for r in got if r is not None]
                vals = [v * scale for v in vals if v is not None]
                m = statistics.median(vals) if vals else None
                med[t] = m
                cell = fmt(m)
                if got and len(vals) < len(got):
                    cell += f" ({len(vals)}/{len(got)} ok)"
                row.append(cell)
            if peers:
                peer_vals = [med[p] for p in peers if med.get(p) is not None]
                best = None
                if peer_vals:
                    best = max(peer_vals) if better == "hi" else min(peer_vals)
                row.append(ratio(med.get("natter"), best, better))
            for t in prevs:
                row.append(ratio(med.get(t), med.get(f"{t}-prev"), better))
            print("| " + " | ".join(row) + " |")


def ratio(new, old, better):
    """How much better `new` is than `old`: above 1.0 means `new` is ahead."""
    if new is None or old is None:
        return "-"
    if better == "hi" and old > 0:
        return f"{new / old:.2f}x"
    if better == "lo" and new > 0:
        return f"{old / new:.2f}x"
    if better == "lo" and new == 0 and old == 0:
        return "equal"
    return "-"


if __name__ == "__main__":
    main()
