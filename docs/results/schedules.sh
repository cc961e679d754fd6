#!/usr/bin/env bash
# Regenerates the schedules section of docs/results.md: the NASA trace (weekday traffic
# doubles between 07:00 and 11:00 US Eastern) with a business-hours floor, pre-warmed and not,
# beside the built-in policy without one. About a minute.
# Usage: bash docs/results/schedules.sh   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-../shared/traces}
cargo build --release --quiet -p ebb
EBB=target/release/ebb
NASA=(--trace "$TRACES/web-service-datasets/nasa/workload.tbz2" --rate-scale 50 --baselines none --start 1995-07-01T00:00:00-04:00)
POLICY=examples/policies/simulate-nasa-schedule.yaml
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The same policy with the floor rising at the window's start, not ahead of it.
{ cat "$POLICY"; echo "  prewarmSeconds: 0"; } > "$WORK/no-prewarm.yaml"

echo "== the week" >&2
"$EBB" simulate "${NASA[@]}" --duration 7d --report "$WORK/none" > /dev/null
"$EBB" simulate "${NASA[@]}" --duration 7d --policy "$POLICY" --report "$WORK/floor" > /dev/null
"$EBB" simulate "${NASA[@]}" --duration 7d --policy "$WORK/no-prewarm.yaml" --report "$WORK/floor-0" > /dev/null
WEEK=$(python3 docs/results/schedules.py week "built-in, no schedule=$WORK/none" "business-hours floor, pre-warmed (default lead)=$WORK/floor" "business-hours floor, prewarmSeconds: 0=$WORK/floor-0")

MORNINGS=()
for day in 2:Mon 4:Wed 5:Thu 6:Fri; do
    n=${day%%:*} name=${day#*:}
    echo "== $name 07:00-09:00" >&2
    for variant in floor no-prewarm; do
        policy=$POLICY
        [ "$variant" = no-prewarm ] && policy="$WORK/no-prewarm.yaml"
        "$EBB" simulate "${NASA[@]}" --from "$((n * 86400 + 7 * 3600))s" --duration 2h --policy "$policy" --report "$WORK/$name-$variant" > /dev/null
    done
    MORNINGS+=("$name:pre-warmed=$WORK/$name-floor" "$name:prewarmSeconds: 0=$WORK/$name-no-prewarm")
done
MORNING=$(python3 docs/results/schedules.py mornings "${MORNINGS[@]}")
EXAMPLE=$(grep -m1 "pre-warming" "$WORK/Mon-floor/scale-log-ebb.txt" | cut -c1-220)

BODY=$WORK/body.md
{
    echo "$WEEK"
    echo
    echo "Each weekday morning from 07:00 to 09:00 (a run of its own, 10 s buckets; the policy starts fresh at 07:00):"
    echo
    echo "$MORNING"
    echo
    echo "The first pre-warming decision on Monday, from the scale log (first 220 characters):"
    echo
    echo '```'
    echo "$EXAMPLE"
    echo '```'
} > "$BODY"
python3 docs/results/splice.py schedules "$BODY"
echo "docs/results.md schedules section updated" >&2
