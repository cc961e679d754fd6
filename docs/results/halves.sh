# The runs whose halves docs/results.md compares (sourced by holdout.sh and verdicts.sh): one
# line each, "name duration-in-seconds simulate-arguments...", the arguments split on spaces.
# Needs TRACES (the shared traces folder).
half_runs() {
    local genai="$TRACES/alibaba-clusterdata/cluster-trace-v2026-GenAI"
    cat <<RUNS
step 1200 --synthetic step:20:150:5m:20m
sine 2400 --synthetic sine:60:50:10m:40m
sine-large 3600 --synthetic sine:300:200:20m:1h
ramp 1800 --synthetic ramp:10:200:30m
spikes 1800 --synthetic spikes:20:120:5m:30s:30m
onoff 1800 --synthetic onoff:80:2m:4m:30m
azure-code 3434 --trace $TRACES/azure-public-dataset/AzureLLMInferenceTrace_code.csv --rate-scale 10
azure-conv 3500 --trace $TRACES/azure-public-dataset/AzureLLMInferenceTrace_conv.csv --rate-scale 10
mooncake-conversation 3536 --trace $TRACES/mooncake/conversation_trace.jsonl --rate-scale 10
mooncake-synthetic 1022 --trace $TRACES/mooncake/synthetic_trace.jsonl --rate-scale 10
alibaba-lora 1989366 --trace $genai/lora_request_trace.csv --service proportional:0s:1s --slots 1 --slo 120s --timeout 600s --cold-start empirical:$genai/basemodel_update_latency_anon.tar.gz
alibaba-qps 79572 --trace $genai/qps.tar.gz --rate-scale 20
nasa 604800 --trace $TRACES/web-service-datasets/nasa/workload.tbz2 --rate-scale 50
worldcup 7518600 --trace $TRACES/worldcup98-dataset/invocation_count.csv --rate-scale 0.02
alibaba-dlrm 2677560 --trace $TRACES/alibaba-clusterdata/cluster-trace-gpu-v2025/disaggregated_DLRM_trace.csv --rate-scale 0.0005
RUNS
}
