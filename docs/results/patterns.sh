# Runs synthetic patterns over several seeds against KPA's and HPA's defaults and splices
# their table, with verdicts against KPA, into docs/results.md (sourced by unseen.sh and
# zero.sh). Needs EBB (the built binary); SEEDS (default "1 2 3 4") and JOBS (default 2)
# change what runs and how many at once.

# pattern_table SECTION PATTERNS [SIMULATE-ARGUMENTS...]: PATTERNS one spec per line; the
# arguments are added to every run.
pattern_table() {
    local section=$1 patterns=$2; shift 2
    local out body
    out=$(mktemp -d)
    export OUT=$out EXTRA_ARGS="$*"
    pattern_run() {
        local spec=$1 seed=$2 dir
        dir=$(mktemp -d)
        echo "== $spec, seed $seed" >&2
        # shellcheck disable=SC2086 # EXTRA_ARGS is split into arguments on purpose
        if ! "$EBB" simulate --synthetic "$spec" --seed "$seed" --baselines kpa,hpa $EXTRA_ARGS --report "$dir" > /dev/null; then
            echo "$spec, seed $seed, failed" >&2
            rm -rf "$dir"
            return 1
        fi
        python3 docs/results/cells.py "$dir/summary.csv" "$spec,$seed" ebb kpa hpa > "$OUT/$seed-${spec//:/_}.csv"
        rm -rf "$dir"
    }
    export -f pattern_run
    for seed in ${SEEDS:-1 2 3 4}; do
        while read -r spec; do echo "$spec $seed"; done <<< "$patterns"
    done | xargs -P "${JOBS:-2}" -L 1 bash -c 'pattern_run "$@"' _
    body=$(mktemp)
    cat "$out"/*.csv | python3 docs/results/patterns.py 0.999 "$patterns" > "$body"
    python3 docs/results/splice.py "$section" "$body"
    rm -rf "$body" "$out"
    echo "docs/results.md $section section updated" >&2
}
