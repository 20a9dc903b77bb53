#!/usr/bin/env python3
"""The table of bench/accounts.sh: medians per scenario and side, and logged-in vs guests.

    python3 bench/accounts_table.py bench/results/accounts-STAMP/runs.jsonl
"""
import json
import statistics
import sys

# (scenario, metric, path into "results", scale, higher is better)
ROWS = [
    ("create", "account creations/s", ("connects_per_s",), 1, True),
    ("create", "REGISTER + ACCOUNT CREATE p99 ms", ("registration", "p99_us"), 1e-3, False),
    ("login-serial", "one LOGIN alone, p50 ms (the hash)", ("registration", "p50_us"), 1e-3, False),
    ("storm", "logins (or registrations)/s, all at once", ("connects_per_s",), 1, True),
    ("storm", "connect to OK p50 ms", ("registration", "p50_us"), 1e-3, False),
    ("storm", "connect to OK p99 ms", ("registration", "p99_us"), 1e-3, False),
    ("fanout", "deliveries/s", ("deliveries_per_s",), 1, True),
    ("fanout", "latency p99 ms", ("latency", "p99_us"), 1e-3, False),
    ("dm", "deliveries/s", ("deliveries_per_s",), 1, True),
    ("dm", "latency p99 ms", ("latency", "p99_us"), 1e-3, False),
    ("idle", "server KiB per idle connection", ("kib_per_conn",), 1, False),
    ("idle", "connects/s (64 at a time)", ("connects_per_s",), 1, True),
]


def get(run, path):
    v = run.get("results", {})
    for k in path:
        v = v.get(k) if isinstance(v, dict) else None
    return v


def fmt(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def main():
    runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    print("| scenario | metric | logged in | guests | logged in vs guests |")
    print("|---|---|---|---|---|")
    for scenario, metric, path, scale, higher in ROWS:
        side = {}
        for label in ("login", "guest", "create", "login-1"):
            vals = [get(r, path) for r in runs if r.get("scenario") == scenario and r.get("label") == label]
            vals = [v * scale for v in vals if v is not None]
            if vals:
                side[label] = statistics.median(vals)
        mine = side.get("login", side.get("create", side.get("login-1")))
        guest = side.get("guest")
        ratio = "-"
        if mine and guest:
            ratio = f"{(mine / guest) if higher else (guest / mine):.2f}x"
        print(f"| {scenario} | {metric} | {fmt(mine)} | {fmt(guest)} | {ratio} |")
    bad = sum((get(r, ("lost",)) or 0) + (get(r, ("duplicates",)) or 0) + (get(r, ("reordered",)) or 0) for r in runs)
    errors = sum(get(r, ("errors",)) or 0 for r in runs)
    print(f"\nruns: {len(runs)}; lost + duplicated + reordered: {bad}; error lines: {errors}")


main()
