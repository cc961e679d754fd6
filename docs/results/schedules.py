"""Prints docs/results.md's schedules tables from `ebb simulate` reports of the NASA trace
(its first second is Saturday 1995-07-01 00:00 US Eastern time).
Usage:
  python3 schedules.py week NAME=REPORT_DIR ...      (runs over the first week, 900 s buckets)
  python3 schedules.py mornings DAY:NAME=REPORT_DIR ...  (runs from 07:00 to 09:00, 10 s buckets)"""
import csv
import re
import sys

WEEKDAYS = [2, 3, 4, 5, 6]  # Mon 3 July .. Fri 7 July (days since the trace's start)


def rows(directory):
    return list(csv.DictReader(open(f"{directory}/timeseries-ebb.csv")))


def totals(series, pick, width):
    arrivals = misses = replica_seconds = ready = 0.0
    n = 0
    for r in series:
        if not pick(float(r["t"])):
            continue
        arrivals += float(r["arrivals"])
        misses += float(r["slo_violations"])
        replica_seconds += float(r["replicas"]) * width
        ready += float(r["ready"])
        n += 1
    return 1 - misses / arrivals, replica_seconds, ready / max(n, 1)


def week(args):
    def local(hour_from, hour_to):
        def pick(t):
            day, second = divmod(t, 86400)
            return int(day) in WEEKDAYS and hour_from * 3600 <= second < hour_to * 3600
        return pick

    print("| policy | week: SLO attainment | week: replica-s | weekdays 08:00-08:15: SLO attainment | ready replicas (mean) |")
    print("|---|---:|---:|---:|---:|")
    for arg in args:
        name, directory = arg.split("=", 1)
        series = rows(directory)
        whole = totals(series, lambda t: True, 900)
        opening = totals(series, local(8.0, 8.25), 900)
        print(f"| {name} | {whole[0] * 100:.3f}% | {whole[1]:.0f} | {opening[0] * 100:.3f}% | {opening[2]:.1f} |")


def floor_raised(directory):
    """Seconds from 08:00 (the run starts at 07:00) of the first scale-up the window caused:
    pre-warming ahead of it, or at the opening; None when the load held as many already."""
    for line in open(f"{directory}/scale-log-ebb.txt"):
        if "schedule business-hours" in line and "below minReplicas" in line:
            return float(re.match(r"([0-9.]+)s", line).group(1)) - 3600
    return None


def mornings(args):
    print("| weekday | policy | floor raised at | ready replicas 07:59:50-08:00:00 | 08:00:10-08:00:20 | SLO attainment 08:00-08:02 |")
    print("|---|---|---:|---:|---:|---:|")
    for arg in args:
        label, directory = arg.split("=", 1)
        day, name = label.split(":", 1)
        series = rows(directory)
        at = lambda a, b: (lambda t: a <= t < b)
        before = totals(series, at(3590, 3600), 10)[2]
        after = totals(series, at(3610, 3620), 10)[2]
        opening = totals(series, at(3600, 3720), 10)[0]
        raised = floor_raised(directory)
        if raised is None:
            raised = "no need: the load held as many"
        else:
            raised = f"08:00 {'-' if raised < 0 else '+'} {abs(raised):.0f} s"
        print(f"| {day} | {name} | {raised} | {before:.1f} | {after:.1f} | {opening * 100:.3f}% |")


{"week": week, "mornings": mornings}[sys.argv[1]](sys.argv[2:])
