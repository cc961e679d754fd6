"""The table of Ebb's built-in SLO policy against KPA's and HPA's defaults on synthetic
patterns over several seeds, with verdicts against KPA (docs/results/verdicts.py defines
them); patterns.sh writes its input.

Reads CSV lines `spec,seed,ebb attainment,ebb replica-s,kpa attainment,kpa replica-s,hpa
attainment,hpa replica-s` on standard input. Arguments: the SLO's attainment target (a
share) and the specs, one per line, in the order to show them.
Usage: python3 docs/results/patterns.py TARGET SPECS < lines.csv"""
import collections
import csv
import sys

from verdicts import verdict

if len(sys.argv) != 3:
    sys.exit(__doc__)
target = float(sys.argv[1])
order = sys.argv[2].split()
rows = sorted(csv.reader(sys.stdin), key=lambda r: (order.index(r[0]), int(r[1])))
counts = collections.Counter()
table = ["| pattern | seed | ebb SLO attainment | ebb replica-s | kpa SLO attainment | kpa replica-s "
         "| hpa SLO attainment | hpa replica-s | against KPA |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
for spec, seed, *cells in rows:
    ea, er, ka, kr, ha, hr = map(float, cells)
    kind, text = verdict(ea, er, ka, kr, target)
    counts[kind] += 1
    table.append(f"| `{spec}` | {seed} | {ea * 100:.3f}% | {er:.0f} | {ka * 100:.3f}% | {kr:.0f} "
                 f"| {ha * 100:.3f}% | {hr:.0f} | {text} |")
print(f"- **Against KPA**: wins {counts['wins']} of {len(rows)} run-seeds; both meet the SLO "
      f"with Ebb cheaper {counts['both meet']}; KPA misses the SLO and Ebb is higher at more "
      f"cost {counts['KPA misses']}; loses {counts['loses']}.")
print()
print("\n".join(table))
