#!/usr/bin/env bash
# Regenerates docs/results.md and the plots under docs/results/: `ebb simulate` on every
# traffic trace in ../shared/traces (or $TRACES) and on the synthetic patterns.
# Usage: bash docs/results/run.sh   (from the repository root; takes a few minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-../shared/traces}
cargo build --release --quiet -p ebb
EBB=target/release/ebb
OUT=docs/results
TABLES=$(mktemp)
SECOND=$(mktemp)
echo "| run | second half | ebb SLO attainment | ebb replica-s | kpa SLO attainment | kpa replica-s | hpa SLO attainment | hpa replica-s |" >> "$SECOND"
echo "|---|---|---:|---:|---:|---:|---:|---:|" >> "$SECOND"

run() { # name, description, args...
    local name=$1 desc=$2; shift 2
    local dir="$OUT/$name"
    rm -rf "$dir"
    echo "== $name" >&2
    local table
    table=$("$EBB" simulate "$@" --report "$dir")
    python3 docs/results/second_half.py "$dir" "$name" >> "$SECOND"
    rm -f "$dir"/timeseries-*.csv "$dir"/scale-log-*.txt "$dir/report.html"
    {
        echo "### $name"
        echo
        echo "$desc"
        echo
        echo '```sh'
        echo "ebb simulate $*"
        echo '```'
        echo
        echo "$table" | grep '^|'
        echo
        echo "![replicas](results/$name/replicas.svg)"
        echo "![latency](results/$name/latency.svg)"
        echo "![cost against SLO misses](results/$name/cost-slo.svg)"
        echo
    } >> "$TABLES"
}

run step "A step from 20 to 150 req/s at 5 minutes." --synthetic step:20:150:5m:20m
run step-measured-cold-start "The same step with cold starts drawn from Alibaba's measured base-model load times (p50 22.7 s, p99 51.9 s)." --synthetic step:20:150:5m:20m --cold-start "empirical:$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI/basemodel_update_latency_anon.tar.gz"
run sine "A diurnal-style sine, 60 +/- 50 req/s, 10-minute period." --synthetic sine:60:50:10m:40m
run sine-large "A larger sine, 300 +/- 200 req/s, 20-minute period." --synthetic sine:300:200:20m:1h
run ramp "A ramp from 10 to 200 req/s over 30 minutes." --synthetic ramp:10:200:30m
run spikes "30-second spikes from 20 to 120 req/s every 5 minutes." --synthetic spikes:20:120:5m:30s:30m
run onoff "On-off bursts: 80 req/s for 2 minutes, silence for 4." --synthetic onoff:80:2m:4m:30m
run azure-code "Azure LLM inference trace 2023, code (8,819 requests in 57 min), rate x10." --trace "$TRACES/azure-public-dataset/AzureLLMInferenceTrace_code.csv" --rate-scale 10
run azure-conv "Azure LLM inference trace 2023, conversation (19,366 requests in 58 min), rate x10." --trace "$TRACES/azure-public-dataset/AzureLLMInferenceTrace_conv.csv" --rate-scale 10
run mooncake-conversation "Mooncake (Kimi) conversation trace, 12,031 requests in 1 h, rate x10." --trace "$TRACES/mooncake/conversation_trace.jsonl" --rate-scale 10
run mooncake-synthetic "Mooncake synthetic trace (Poisson arrivals, a control), rate x10." --trace "$TRACES/mooncake/synthetic_trace.jsonl" --rate-scale 10
run alibaba-lora "Alibaba GenAI LoRA request log: 26,823 Stable Diffusion requests over 23 days, each served for its measured execution time (one image at a time per replica), SLO 120 s, cold starts drawn from Alibaba's measured base-model load times (basemodel_update_latency_anon.tar.gz: p50 22.7 s, p99 51.9 s)." --trace "$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI/lora_request_trace.csv" --service proportional:0s:1s --slots 1 --slo 120s --timeout 600s --cold-start "empirical:$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI/basemodel_update_latency_anon.tar.gz"
run alibaba-lora-zero "The same LoRA log with the SLO policy plus scale to zero after 5 idle minutes (examples/policies/simulate-lora-scale-to-zero.yaml): a cold start (~23 s) fits inside the 120 s SLO." --trace "$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI/lora_request_trace.csv" --service proportional:0s:1s --slots 1 --slo 120s --timeout 600s --cold-start "empirical:$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI/basemodel_update_latency_anon.tar.gz" --policy examples/policies/simulate-lora-scale-to-zero.yaml --baselines kpa,oracle
run alibaba-qps "Alibaba GenAI per-container QPS (22 h, ~57 s samples) summed into one rate series, rate x20." --trace "$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI/qps.tar.gz" --rate-scale 20
run nasa "NASA Kennedy Space Center HTTP log, per-second counts, first 7 days, rate x50." --trace "$TRACES/web-service-datasets/nasa/workload.tbz2" --duration 7d --rate-scale 50
run worldcup "World Cup 98 requests per minute, all 87 days, rate x0.02." --trace "$TRACES/worldcup98-dataset/invocation_count.csv" --rate-scale 0.02
run alibaba-dlrm "Alibaba DLRM serving: the busiest service's replica count per minute over 31 days, read as demand (not a request trace), rate x0.0005." --trace "$TRACES/alibaba-clusterdata/cluster-trace-gpu-v2025/disaggregated_DLRM_trace.csv" --rate-scale 0.0005

MULTI=$(mktemp)
run_multi() { # name, description, args...
    local name=$1 desc=$2; shift 2
    local dir="$OUT/$name"
    rm -rf "$dir"
    echo "== $name" >&2
    local table
    table=$("$EBB" simulate --multi-model "$@" --report "$dir")
    rm -f "$dir"/fleet-*.csv "$dir/report.html"
    {
        echo "### $name"
        echo
        echo "$desc"
        echo
        echo '```sh'
        echo "ebb simulate --multi-model $*"
        echo '```'
        echo
        echo "$table" | grep '^|'
        echo
        echo "![servers](results/$name/servers.svg)"
        echo "![packing](results/$name/packing.svg)"
        echo
    } >> "$MULTI"
}

GENAI="$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI"
LORA_MULTI=(--trace "$GENAI/lora_request_trace.csv" --service proportional:0s:1s --slots 1 --timeout 300s --slo 120s --cold-start "empirical:$GENAI/basemodel_update_latency_anon.tar.gz" --model-memory "empirical:$GENAI/pod_gpu_memory_used_bytes_anon.tar.gz" --rate-scale 10 --from 1407730s --duration 2d)
run_multi lora-multi "The LoRA log as 87 models (its base checkpoints), rate x10, the two busiest days (2024-12-02 and 03): each model's replica needs the GPU memory of a pod drawn from Alibaba's measured per-pod GPU memory (p50 23 GiB), on 80 GiB servers with 10% headroom; Ebb's built-in per-model policy (scale to zero after 5 idle minutes)." "${LORA_MULTI[@]}"
run_multi lora-multi-always-on "The same, with every model kept at one replica or more (examples/policies/multi-model-always-on.yaml): scale-downs now leave servers partly empty." "${LORA_MULTI[@]}" --policy examples/policies/multi-model-always-on.yaml

python3 docs/results/splice.py results "$TABLES" multi "$MULTI" carried "$SECOND"
rm -f "$TABLES" "$MULTI" "$SECOND"
echo "docs/results.md updated" >&2
