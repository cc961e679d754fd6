#!/usr/bin/env bash
# Regenerates the "patterns not seen while fitting" section of docs/results.md: Ebb's built-in
# SLO policy against KPA's and HPA's defaults on flashes (bursts at random times, which no
# constant of the SLO model was chosen on), a week each, over several seeds.
# Usage: bash docs/results/unseen.sh (from the repository root; about 2 minutes on a 2-core
# machine). SEEDS (default "1 2 3 4") and JOBS (default 2) change what runs and how many at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-1 2 3 4}
JOBS=${JOBS:-2}
cargo build --release --quiet -p ebb
export EBB=$PWD/target/release/ebb
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OUT

# Mean 64 req/s as in the issue's unseen web trace, with 10x flashes from a few seconds (over
# before any cold start) to a minute (three cold starts), rare to frequent; and a small
# service whose flashes take it from one replica to several.
PATTERNS="flashes:64:640:30m:5s:7d
flashes:64:640:2h:10s:7d
flashes:64:320:1h:30s:7d
flashes:64:640:6h:60s:7d
flashes:10:100:1h:30s:7d"

one() {
    local spec=$1 seed=$2 dir
    dir=$(mktemp -d)
    echo "== $spec, seed $seed" >&2
    if ! "$EBB" simulate --synthetic "$spec" --seed "$seed" --baselines kpa,hpa --report "$dir" > /dev/null; then
        echo "unseen: $spec, seed $seed, failed" >&2
        rm -rf "$dir"
        return 1
    fi
    python3 docs/results/cells.py "$dir/summary.csv" "$spec,$seed" ebb kpa hpa > "$OUT/$seed-${spec//:/_}.csv"
    rm -rf "$dir"
}
export -f one

for seed in $SEEDS; do
    while read -r spec; do echo "$spec $seed"; done <<< "$PATTERNS"
done | xargs -P "$JOBS" -L 1 bash -c 'one "$@"' _

BODY=$(mktemp)
cat "$OUT"/*.csv | python3 docs/results/unseen.py 0.999 "$PATTERNS" > "$BODY"
python3 docs/results/splice.py unseen "$BODY"
rm -f "$BODY"
echo "docs/results.md unseen patterns updated" >&2
