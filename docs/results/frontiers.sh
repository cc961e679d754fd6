#!/usr/bin/env bash
# Regenerates the frontier section of docs/results.md: `ebb tune --frontier` on the synthetic
# patterns and the shorter shared traces (each family's own knob swept over the whole run,
# compared with KPA's defaults). Usage: bash docs/results/frontiers.sh (from the repository
# root; about 9 minutes on 2 cores, most of it the four long traces).
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-../shared/traces}
cargo build --release --quiet -p ebb
EBB=target/release/ebb
OUT=docs/results/frontiers
mkdir -p "$OUT"
BODY=$(mktemp)

frontier() { # name, args...
    local name=$1; shift
    echo "== frontier $name" >&2
    local out
    out=$("$EBB" tune --frontier "$@" --report "$OUT/$name")
    mv "$OUT/$name/frontier.svg" "$OUT/$name.svg"
    rmdir "$OUT/$name"
    {
        echo "#### $name"
        echo
        echo '```sh'
        echo "ebb tune --frontier $*"
        echo '```'
        echo
        echo "$out" | sed -n '/^KPA/p'
        echo
        echo "$out" | awk '/^\| family/{p=1} p&&/^\|/{print} p&&!/^\|/{exit}'
        echo
        echo "![frontiers](results/frontiers/$name.svg)"
        echo
    } >> "$BODY"
}

frontier step --synthetic step:20:150:5m:20m
frontier sine --synthetic sine:60:50:10m:40m
frontier sine-large --synthetic sine:300:200:20m:1h
frontier ramp --synthetic ramp:10:200:30m
frontier spikes --synthetic spikes:20:120:5m:30s:30m
frontier onoff --synthetic onoff:80:2m:4m:30m
frontier azure-code --trace "$TRACES/azure-public-dataset/AzureLLMInferenceTrace_code.csv" --rate-scale 10
frontier azure-conv --trace "$TRACES/azure-public-dataset/AzureLLMInferenceTrace_conv.csv" --rate-scale 10
frontier mooncake-conversation --trace "$TRACES/mooncake/conversation_trace.jsonl" --rate-scale 10
frontier mooncake-synthetic --trace "$TRACES/mooncake/synthetic_trace.jsonl" --rate-scale 10
frontier alibaba-qps --trace "$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI/qps.tar.gz" --rate-scale 20
G="$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI"
frontier alibaba-lora --trace "$G/lora_request_trace.csv" --service proportional:0s:1s --slots 1 --slo 120s --timeout 600s --cold-start "empirical:$G/basemodel_update_latency_anon.tar.gz"
frontier nasa --trace "$TRACES/web-service-datasets/nasa/workload.tbz2" --duration 7d --rate-scale 50
frontier worldcup --trace "$TRACES/worldcup98-dataset/invocation_count.csv" --rate-scale 0.02
frontier alibaba-dlrm --trace "$TRACES/alibaba-clusterdata/cluster-trace-gpu-v2025/disaggregated_DLRM_trace.csv" --rate-scale 0.0005

python3 docs/results/splice.py frontier "$BODY"
rm -f "$BODY"
echo "docs/results.md frontiers updated" >&2
