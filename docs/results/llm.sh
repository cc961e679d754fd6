#!/usr/bin/env bash
# Regenerates the LLM serving section of docs/results.md and its plots under
# docs/results/llm-*: `ebb simulate --llm` (token by token, each replica the engine model of
# `ebb demo-llm`) on the Azure LLM and Mooncake traces, whole, second halves and (Mooncake's,
# whose first minute needs more than one replica) from zero.
# Usage: bash docs/results/llm.sh   (from the repository root; takes about a minute)
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-../shared/traces}
cargo build --release --quiet -p ebb
EBB=target/release/ebb
OUT=docs/results
BODY=$(mktemp)
FRONTIER=$(mktemp)
TUNE=$(mktemp)
POOLS=$(mktemp)
SUMMARY=$(mktemp)
echo "| run | ebb-slo | ebb (engine targets) | hpa-duty-cycle | kpa |" >> "$SUMMARY"
echo "|---|---:|---:|---:|---:|" >> "$SUMMARY"
COLD=(--cold-start lognormal:60s:0.3)

run() { # name, description, args...
    local name=$1 desc=$2; shift 2
    local dir="$OUT/llm-$name"
    rm -rf "$dir"
    echo "== llm-$name" >&2
    local table
    table=$("$EBB" simulate --llm "$@" --report "$dir")
    rm -f "$dir/summary.csv"
    {
        echo "### $name"
        echo
        echo "$desc"
        echo
        echo '```sh'
        echo "ebb simulate --llm $*"
        echo '```'
        echo
        echo "$table" | grep '^|'
        echo
        echo "![replicas](results/llm-$name/replicas.svg)"
        echo
    } >> "$BODY"
    summary_row "$name" "$table"
}

summary_row() { # name, table: one row of the summary (within both SLOs, GPU-hours)
    local label=$1
    case $label in
        *-second-half) label="${label%-second-half}, second half (held out)" ;;
        *-from-zero) label="${label%-from-zero}, from zero" ;;
        mooncake-synthetic) label="$label (not used to choose)" ;;
    esac
    echo "$2" | awk -F'|' -v label="$label" '
        { for (i = 2; i <= 9; i++) gsub(/^ +| +$/, "", $i); cell[$2] = $5 ", " $9 }
        END {
            row = "| " label
            n = split("ebb-slo ebb hpa-duty-cycle kpa", names, " ")
            for (i = 1; i <= n; i++) row = row " | " cell[names[i]]
            print row " |"
        }' >> "$SUMMARY"
}

pools() { # name, args...: the disaggregated comparison (prefill and decode pools)
    local name=$1; shift
    local dir="$OUT/llm-pools-$name"
    rm -rf "$dir"
    echo "== llm-pools-$name" >&2
    local out
    out=$("$EBB" simulate --llm --pools "$@" --report "$dir" 2>&1)
    rm -f "$dir/summary.csv" "$dir/results.json"
    {
        echo "### $name"
        echo
        echo '```sh'
        echo "ebb simulate --llm --pools $*"
        echo '```'
        echo
        echo "$out" | grep '^  pools:' | sed 's/^  pools: /Sizing (first half): /'
        echo
        echo "$out" | grep '^|'
        echo
        echo "![replicas](results/llm-pools-$name/replicas.svg)"
        echo
    } | awk 'NR>1 && /^\| policy \| prefill/{print ""} {print}' >> "$POOLS"
}

frontier() { # name, args...
    local name=$1; shift
    local dir="$OUT/llm-frontier-$name"
    rm -rf "$dir"
    echo "== llm-frontier-$name" >&2
    local table
    table=$("$EBB" simulate --llm --llm-frontier "$@" --report "$dir")
    {
        echo "### $name"
        echo
        echo '```sh'
        echo "ebb simulate --llm --llm-frontier $*"
        echo '```'
        echo
        echo "$table" | grep -v '^simulated '
        echo
        echo "![frontiers](results/llm-frontier-$name/frontier.svg)"
        echo
    } >> "$FRONTIER"
}

tune() { # name, args...
    local name=$1; shift
    local dir="$OUT/llm-tune-$name"
    rm -rf "$dir"
    echo "== llm-tune-$name" >&2
    local out rc=0
    out=$("$EBB" tune --llm "$@" --report "$dir") || rc=$?
    rm -rf "$dir"
    {
        echo "**$name** (exit $rc): \`ebb tune --llm $*\`"
        echo
        echo "$out" | grep -E '^## Recommended|^first half:|^No ' | sed 's/^## /- /; s/^first half:/  first half:/; s/^No /  No /'
        echo
    } >> "$TUNE"
}

AZ="$TRACES/azure-public-dataset"
MC="$TRACES/mooncake"
run azure-code "Azure LLM inference 2023, code: 8,819 requests in an hour, prompts 2,048 tokens on average, outputs 28; bursts of 300 requests in 10 s." --trace "$AZ/AzureLLMInferenceTrace_code.csv" "${COLD[@]}"
run azure-code-second-half "The same, second half only (held out)." --trace "$AZ/AzureLLMInferenceTrace_code.csv" --from 1718s "${COLD[@]}"
run azure-conv "Azure LLM inference 2023, conversation: 19,366 requests in an hour, prompts 1,155 tokens, outputs 211." --trace "$AZ/AzureLLMInferenceTrace_conv.csv" "${COLD[@]}"
run azure-conv-second-half "The same, second half only (held out)." --trace "$AZ/AzureLLMInferenceTrace_conv.csv" --from 1751s "${COLD[@]}"
run mooncake-conversation "Mooncake's conversation trace: 12,031 requests in an hour, prompts 12,035 tokens on average (up to 126,195), outputs 343. TTFT SLO 5 s: at 2 s even maxReplicas from the start reaches only 94%, since a prompt over 40,000 tokens takes more than 2 s to prefill alone." --trace "$MC/conversation_trace.jsonl" --ttft 5s "${COLD[@]}"
run mooncake-conversation-second-half "The same, second half only (held out)." --trace "$MC/conversation_trace.jsonl" --ttft 5s --from 1768s "${COLD[@]}"
run mooncake-synthetic "Mooncake's synthetic trace: 3,993 requests in 17 minutes, prompts 15,325 tokens on average (up to 191,378), outputs 149. TTFT SLO 5 s." --trace "$MC/synthetic_trace.jsonl" --ttft 5s "${COLD[@]}"
run mooncake-conversation-from-zero "Mooncake's conversation trace from zero (\`--start-at-zero\`): KPA starts with no replica, the other policies with their minimum of one ready and nothing learnt, where the runs above start with the first minute's need (4 replicas) ready." --trace "$MC/conversation_trace.jsonl" --ttft 5s --start-at-zero "${COLD[@]}"
run mooncake-synthetic-from-zero "Mooncake's synthetic trace from zero (\`--start-at-zero\`), as above." --trace "$MC/synthetic_trace.jsonl" --ttft 5s --start-at-zero "${COLD[@]}"

pools azure-code --trace "$AZ/AzureLLMInferenceTrace_code.csv" "${COLD[@]}"
pools azure-conv --trace "$AZ/AzureLLMInferenceTrace_conv.csv" "${COLD[@]}"
pools mooncake-conversation --trace "$MC/conversation_trace.jsonl" --ttft 5s "${COLD[@]}"
pools mooncake-synthetic --trace "$MC/synthetic_trace.jsonl" --ttft 5s "${COLD[@]}"

frontier azure-code --trace "$AZ/AzureLLMInferenceTrace_code.csv" "${COLD[@]}"
frontier azure-conv --trace "$AZ/AzureLLMInferenceTrace_conv.csv" "${COLD[@]}"
frontier mooncake-conversation --trace "$MC/conversation_trace.jsonl" --ttft 5s "${COLD[@]}"
frontier mooncake-synthetic --trace "$MC/synthetic_trace.jsonl" --ttft 5s "${COLD[@]}"

tune azure-code --trace "$AZ/AzureLLMInferenceTrace_code.csv" --attainment 95% "${COLD[@]}"
tune azure-conv --trace "$AZ/AzureLLMInferenceTrace_conv.csv" --attainment 99% "${COLD[@]}"
tune mooncake-conversation --trace "$MC/conversation_trace.jsonl" --ttft 5s --attainment 97% "${COLD[@]}"
tune mooncake-synthetic --trace "$MC/synthetic_trace.jsonl" --ttft 5s --attainment 95% "${COLD[@]}"

python3 docs/results/splice.py llm-summary "$SUMMARY" llm "$BODY" llm-frontier "$FRONTIER" llm-tune "$TUNE" llm-pools "$POOLS"
rm -f "$BODY" "$FRONTIER" "$TUNE" "$POOLS" "$SUMMARY"
echo "docs/results.md updated" >&2
