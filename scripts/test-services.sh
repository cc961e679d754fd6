#!/usr/bin/env bash
# Real Prometheus and Redis servers on loopback for the integration tests (Debian packages).
#
#   scripts/test-services.sh start DIR   install if needed, start both, write DIR/env
#   scripts/test-services.sh stop DIR    stop what start started, by PID
#
# Prometheus scrapes a small exporter the tests run on 127.0.0.1:$EBB_TEST_EXPORTER_PORT
# (every second), so its queries return what the tests served.
set -euo pipefail
LOG_PREFIX=test-services
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"




start() {
    local dir="$1"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local missing=()
    command -v prometheus >/dev/null || missing+=(prometheus)
    command -v redis-server >/dev/null || missing+=(redis-server)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    local redis_port prom_port exporter_port
    redis_port="$(free_port)"
    prom_port="$(free_port)"
    exporter_port="$(free_port)"
    log "starting redis-server on 127.0.0.1:$redis_port"
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
        --requirepass ebb-test-password --daemonize no >"$dir/redis.log" 2>&1 &
    echo $! >"$dir/redis.pid"
    cat >"$dir/prometheus.yml" <<CFG
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: ebb-test-exporter
  static_configs: [{targets: ['127.0.0.1:$exporter_port']}]
CFG
    log "starting prometheus on 127.0.0.1:$prom_port"
    prometheus --config.file "$dir/prometheus.yml" --storage.tsdb.path "$dir/prometheus-data" \
        --web.listen-address "127.0.0.1:$prom_port" >"$dir/prometheus.log" 2>&1 &
    echo $! >"$dir/prometheus.pid"
    wait_for 30 redis redis-cli -h 127.0.0.1 -p "$redis_port" -a ebb-test-password --no-auth-warning ping
    wait_for 60 prometheus curl -sf "http://127.0.0.1:$prom_port/-/ready"
    cat >"$dir/env" <<ENV
export EBB_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0
export EBB_TEST_REDIS_PASSWORD=ebb-test-password
export EBB_TEST_PROMETHEUS_URL=http://127.0.0.1:$prom_port
export EBB_TEST_EXPORTER_PORT=$exporter_port
ENV
    log "ready: source $dir/env"
}

stop() {
    stop_pids "$1" prometheus redis
    log "stopped"
}

case "${1:-}" in
start) start "${2:?usage: start DIR}" ;;
stop) stop "${2:?usage: stop DIR}" ;;
*) echo "usage: $0 start DIR | stop DIR" >&2; exit 2 ;;
esac
