"""Prints one row of the "second half, after running through the first" table from a run's
time series: each policy ran the whole trace (as a deployed autoscaler would have), and only
the buckets from the trace's midpoint on are counted. Arrivals are bucketed by arrival time,
SLO misses (timeouts and drops included) by the time they were decided, so a request in
flight at the midpoint may land in either half.
Usage: python3 second_half.py REPORT_DIR NAME >> table"""
import csv
import os
import sys

directory, name = sys.argv[1], sys.argv[2]
summary = {r["policy"]: r for r in csv.DictReader(open(f"{directory}/summary.csv"))}
duration = float(summary["ebb"]["duration"])
half = duration / 2
cells = [name, f"{half:.0f}s-{duration:.0f}s"]
for policy in ["ebb", "kpa", "hpa"]:
    path = f"{directory}/timeseries-{policy}.csv"
    if not os.path.exists(path):
        cells += ["-", "-"]  # not a baseline of this run
        continue
    rows = list(csv.DictReader(open(path)))
    width = float(rows[1]["t"]) - float(rows[0]["t"]) if len(rows) > 1 else duration
    arrivals = misses = replica_seconds = 0.0
    for r in rows:
        t = float(r["t"])
        if t < half:
            continue
        arrivals += float(r["arrivals"])
        misses += float(r["slo_violations"])
        replica_seconds += float(r["replicas"]) * min(width, duration - t)
    attainment = 1 - misses / arrivals if arrivals else float("nan")
    cells += [f"{attainment * 100:.3f}%", f"{replica_seconds:.0f}"]
print("| " + " | ".join(cells) + " |")
