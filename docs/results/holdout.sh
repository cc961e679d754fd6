#!/usr/bin/env bash
# Regenerates the held-out section of docs/results.md: Ebb's built-in SLO policy, KPA and HPA
# on the second half of each trace and pattern only. The SLO model's constants
# (ebb_core::slo::Tuning) were chosen on the first halves; these halves were not looked at.
# Usage: bash docs/results/holdout.sh (from the repository root; takes a few minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-../shared/traces}
GENAI="$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI"
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

half step 1200 --synthetic step:20:150:5m:20m
half sine 2400 --synthetic sine:60:50:10m:40m
half sine-large 3600 --synthetic sine:300:200:20m:1h
half ramp 1800 --synthetic ramp:10:200:30m
half spikes 1800 --synthetic spikes:20:120:5m:30s:30m
half onoff 1800 --synthetic onoff:80:2m:4m:30m
half azure-code 3434 --trace "$TRACES/azure-public-dataset/AzureLLMInferenceTrace_code.csv" --rate-scale 10
half azure-conv 3500 --trace "$TRACES/azure-public-dataset/AzureLLMInferenceTrace_conv.csv" --rate-scale 10
half mooncake-conversation 3536 --trace "$TRACES/mooncake/conversation_trace.jsonl" --rate-scale 10
half mooncake-synthetic 1022 --trace "$TRACES/mooncake/synthetic_trace.jsonl" --rate-scale 10
half alibaba-lora 1989366 --trace "$GENAI/lora_request_trace.csv" --service proportional:0s:1s --slots 1 --slo 120s --timeout 600s --cold-start "empirical:$GENAI/basemodel_update_latency_anon.tar.gz"
half alibaba-qps 79572 --trace "$GENAI/qps.tar.gz" --rate-scale 20
half nasa 604800 --trace "$TRACES/web-service-datasets/nasa/workload.tbz2" --rate-scale 50
half worldcup 7518600 --trace "$TRACES/worldcup98-dataset/invocation_count.csv" --rate-scale 0.02
half alibaba-dlrm 2677560 --trace "$TRACES/alibaba-clusterdata/cluster-trace-gpu-v2025/disaggregated_DLRM_trace.csv" --rate-scale 0.0005

python3 docs/results/splice.py holdout "$BODY"
rm -f "$BODY"
echo "docs/results.md held-out table updated" >&2
