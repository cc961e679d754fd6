#!/usr/bin/env bash
# Regenerates the held-out section of docs/results.md: Ebb's built-in SLO policy, KPA and HPA
# on the second half of each trace and pattern only. The SLO model's constants
# (ebb_core::slo::Tuning) were chosen on the first halves; these halves were not looked at.
# Usage: bash docs/results/holdout.sh (from the repository root; takes a few minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-../shared/traces}
cargo build --release --quiet -p ebb
EBB=target/release/ebb
BODY=$(mktemp)
echo "| run | second half | ebb SLO attainment | ebb replica-s | kpa SLO attainment | kpa replica-s | hpa SLO attainment | hpa replica-s |" >> "$BODY"
echo "|---|---|---:|---:|---:|---:|---:|---:|" >> "$BODY"

half() { # name, duration in seconds, args...
    local name=$1 seconds=$2; shift 2
    local h=$((seconds / 2))
    echo "== second half of $name" >&2
    local dir; dir=$(mktemp -d)
    "$EBB" simulate "$@" --from "${h}s" --duration "${h}s" --baselines kpa,hpa --report "$dir" > /dev/null
    python3 - "$dir/summary.csv" "$name" "${h}s-${seconds}s" >> "$BODY" <<'PY'
import csv, sys
rows = {r["policy"]: r for r in csv.DictReader(open(sys.argv[1]))}
cells = [sys.argv[2], sys.argv[3]]
for p in ["ebb", "kpa", "hpa"]:
    r = rows[p]
    cells += [f"{float(r['slo_attainment']) * 100:.3f}%", f"{float(r['replica_seconds']):.0f}"]
print("| " + " | ".join(cells) + " |")
PY
    rm -rf "$dir"
}

# shellcheck source=docs/results/halves.sh
source docs/results/halves.sh
mapfile -t RUNS < <(half_runs)
for run in "${RUNS[@]}"; do
    # shellcheck disable=SC2086 # the run's arguments are split on purpose
    half $run
done

python3 docs/results/splice.py holdout "$BODY"
rm -f "$BODY"
echo "docs/results.md held-out table updated" >&2
