#!/usr/bin/env bash
# `ebb controller` under load on a real control plane: N Autoscalers (500 by default), each over
# a Deployment of 1-10 pods and each with its own Prometheus source (one Prometheus scraping a
# loopback exporter of N series every second, which the harness moves). Prints a Markdown
# report: API requests per second by verb (without and with the controller), status and /scale
# writes per changed decision, reconcile latency, metric-change-to-/scale-write latency, CPU and
# RSS. What is measured and how: crates/ebb-kube/examples/controller_load.rs.
#
#   bench/controller-load.sh [N] [STEADY_SECONDS]
#
# Starts its own control plane (scripts/kube-control-plane.sh, built once and cached) and
# Prometheus (scripts/test-services.sh), and stops them at the end. About 6 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500}
STEADY=${2:-60}
cargo build --release -q -p ebb
cargo build --release -q -p ebb-kube --example controller_load
WORK=$(mktemp -d)
cleanup() {
    scripts/kube-control-plane.sh stop "$WORK/kube" >/dev/null 2>&1 || true
    scripts/test-services.sh stop "$WORK/services" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/kube" "$WORK/services"
scripts/kube-control-plane.sh build
scripts/kube-control-plane.sh start "$WORK/kube"
scripts/test-services.sh start "$WORK/services"
# shellcheck disable=SC1091
source "$WORK/kube/env"
# shellcheck disable=SC1091
source "$WORK/services/env"
EBB_BIN=$PWD/target/release/ebb EBB_LOAD_N=$N EBB_LOAD_STEADY_SECONDS=$STEADY \
    target/release/examples/controller_load
