"""One CSV line from a simulate report's summary.csv: a label, then each named policy's SLO
attainment and replica-seconds (verdicts.sh and unseen.sh collect these).
Usage: python3 docs/results/cells.py SUMMARY_CSV LABEL POLICY [POLICY ...]"""
import csv
import sys

if len(sys.argv) < 4:
    sys.exit(__doc__)
rows = {r["policy"]: r for r in csv.DictReader(open(sys.argv[1]))}
cells = [sys.argv[2]]
for p in sys.argv[3:]:
    cells += [rows[p]["slo_attainment"], rows[p]["replica_seconds"]]
print(",".join(cells))
