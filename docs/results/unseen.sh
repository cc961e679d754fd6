#!/usr/bin/env bash
# Regenerates the "patterns not seen while fitting" section of docs/results.md: Ebb's built-in
# SLO policy against KPA's and HPA's defaults on flashes (bursts at random times, which no
# constant of the SLO model was chosen on), a week each, over several seeds.
# Usage: bash docs/results/unseen.sh (from the repository root; about 2 minutes on a 2-core
# machine). SEEDS (default "1 2 3 4") and JOBS (default 2) change what runs and how many at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p ebb
export EBB=$PWD/target/release/ebb
# shellcheck source=docs/results/patterns.sh
source docs/results/patterns.sh

# Mean 64 req/s as in the issue's unseen web trace, with 10x flashes from a few seconds (over
# before any cold start) to a minute (three cold starts), rare to frequent; and a small
# service whose flashes take it from one replica to several.
PATTERNS="flashes:64:640:30m:5s:7d
flashes:64:640:2h:10s:7d
flashes:64:320:1h:30s:7d
flashes:64:640:6h:60s:7d
flashes:10:100:1h:30s:7d"

pattern_table unseen "$PATTERNS"
