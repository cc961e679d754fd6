#!/usr/bin/env bash
# Regenerates the verdicts section of docs/results.md: Ebb's built-in SLO policy against
# KPA's defaults on both halves of every trace and pattern, over several seeds (arrivals,
# service times and cold starts are drawn anew for each). The first halves are where the SLO
# model's constants (ebb_core::slo::Tuning) are chosen; the second halves are held out.
# Each run-seed gets a verdict (docs/results/verdicts.py says which).
# Usage: bash docs/results/verdicts.sh (from the repository root; about 3 minutes on a
# 2-core machine). SEEDS (default "1 2 3 4") and JOBS (default 2) change what runs and how many at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-../shared/traces}
SEEDS=${SEEDS:-1 2 3 4}
JOBS=${JOBS:-2}
cargo build --release --quiet -p ebb
export EBB=$PWD/target/release/ebb
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OUT

# shellcheck source=docs/results/halves.sh
source docs/results/halves.sh
RUNS=$(half_runs)

# One run-seed: half (first|second), seed, name, duration, arguments. Writes one CSV line.
one() {
    local half=$1 seed=$2 name=$3 seconds=$4; shift 4
    local h=$((seconds / 2)) window dir
    if [ "$half" = first ]; then window=(--duration "${h}s"); else window=(--from "${h}s" --duration "${h}s"); fi
    dir=$(mktemp -d)
    echo "== $half half of $name, seed $seed" >&2
    # shellcheck disable=SC2068 # the run's arguments are split on purpose
    if ! "$EBB" simulate $@ "${window[@]}" --seed "$seed" --baselines kpa --report "$dir" > /dev/null; then
        echo "verdicts: the $half half of $name, seed $seed, failed" >&2
        rm -rf "$dir"
        return 1
    fi
    python3 docs/results/cells.py "$dir/summary.csv" "$half,$seed,$name" ebb kpa > "$OUT/$half-$seed-$name.csv"
    rm -rf "$dir"
}
export -f one

for seed in $SEEDS; do
    for half in first second; do
        while read -r line; do echo "$half $seed $line"; done <<< "$RUNS"
    done
done | xargs -P "$JOBS" -L 1 bash -c 'one "$@"' _ # exits non-zero if any run failed

BODY=$(mktemp)
cat "$OUT"/*.csv | python3 docs/results/verdicts.py 0.999 > "$BODY"
python3 docs/results/splice.py verdicts "$BODY"
rm -f "$BODY"
echo "docs/results.md verdicts updated" >&2
