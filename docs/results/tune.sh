#!/usr/bin/env bash
# `ebb tune` on every shared trace (fit on the first half, check on the second), as summarized
# in docs/results.md ("ebb tune on every shared trace"). Prints each run's output; writes the
# frontier plots under $OUT (default /tmp/ebb-tune). Takes about four minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-../shared/traces}
G="$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI"
OUT=${OUT:-/tmp/ebb-tune}
cargo build --release --quiet -p ebb
tune() { local name=$1; shift; echo "== $name"; target/release/ebb tune "$@" --report "$OUT/$name"; echo "exit $?"; }
tune azure-code --trace "$TRACES/azure-public-dataset/AzureLLMInferenceTrace_code.csv" --rate-scale 10
tune azure-conv --trace "$TRACES/azure-public-dataset/AzureLLMInferenceTrace_conv.csv" --rate-scale 10
tune mooncake-conv --trace "$TRACES/mooncake/conversation_trace.jsonl" --rate-scale 10
tune mooncake-syn --trace "$TRACES/mooncake/synthetic_trace.jsonl" --rate-scale 10
tune alibaba-qps --trace "$G/qps.tar.gz" --rate-scale 20
tune alibaba-lora --trace "$G/lora_request_trace.csv" --service proportional:0s:1s --slots 1 --slo 120s --timeout 600s --cold-start "empirical:$G/basemodel_update_latency_anon.tar.gz"
tune nasa --trace "$TRACES/web-service-datasets/nasa/workload.tbz2" --duration 7d --rate-scale 50
tune worldcup --trace "$TRACES/worldcup98-dataset/invocation_count.csv" --rate-scale 0.02
tune dlrm --trace "$TRACES/alibaba-clusterdata/cluster-trace-gpu-v2025/disaggregated_DLRM_trace.csv" --rate-scale 0.0005
