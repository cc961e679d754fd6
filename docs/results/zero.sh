#!/usr/bin/env bash
# Regenerates the "Starting from zero" section of docs/results.md: the synthetic patterns
# whose bursts begin from silence, every policy that may scale to zero (Ebb's built-in SLO
# policy, KPA) started with no replica and nothing learnt, HPA at its minimum of one
# (`ebb simulate --start-at-zero`), over several seeds.
# Usage: bash docs/results/zero.sh (from the repository root; about a minute on a 2-core
# machine). SEEDS (default "1 2 3 4") and JOBS (default 2) change what runs and how many at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p ebb
export EBB=$PWD/target/release/ebb
# shellcheck source=docs/results/patterns.sh
source docs/results/patterns.sh

pattern_table zero "onoff:80:2m:4m:30m
spikes:20:120:5m:30s:30m
step:20:150:5m:20m" --start-at-zero
