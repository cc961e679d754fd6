#!/usr/bin/env bash
# Ebb's proxy beside HAProxy and nginx, in one run, in front of the same two replicas.
#
#   bench/proxies.sh [ROUNDS]        (needs haproxy, nginx, wrk: Debian packages)
#
# `ebb up` starts two demo-model replicas (0 ms service time, so latency is all HTTP and
# scheduling); HAProxy (`balance leastconn`, `http-reuse always`) and nginx (`least_conn`,
# upstream keep-alive) are pointed at those same two processes. Per proxy and round:
#   - open loop: `ebb load` at 1,000 req/s for 10 s, p50 and p99, minus the same load sent
#     straight to one replica (the added latency), and the proxy's CPU per request;
#   - closed loop: `wrk -t1 -c64 -d5s` POSTing the same inference body, requests per second;
#   - idle: the proxy's CPU over 10 s with no traffic.
# Each proxy gets two worker threads (the machine's cores). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
for tool in haproxy nginx wrk; do
  command -v "$tool" >/dev/null || { echo "bench/proxies.sh needs $tool (apt-get install haproxy nginx-light wrk)" >&2; exit 2; }
done
# EBB_PROFILE=release-lto measures the build with link-time optimisation (see Cargo.toml).
PROFILE=${EBB_PROFILE:-release}
cargo build --profile "$PROFILE" -q -p ebb
EBB=$PWD/target/$PROFILE/ebb
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

source bench/common.sh
EBB_PORT=$(free_port); ADMIN=$(free_port); HA_PORT=$(free_port); NGX_PORT=$(free_port)

cat > "$WORK/ebb.yaml" <<EOF
admin: 127.0.0.1:$ADMIN
services:
- name: iris
  command: ["{ebb}", demo-model, --port, "{port}", --service-ms, "0", --concurrency, "256"]
  listen: 127.0.0.1:$EBB_PORT
  policy: {minReplicas: 2, maxReplicas: 2, concurrency: {targetPerReplica: 1000}}
EOF
TOKIO_WORKER_THREADS=2 "$EBB" up "$WORK/ebb.yaml" --plain > "$WORK/ebb.log" 2>&1 &
EBB_PID=$!; PIDS+=("$EBB_PID")
for _ in $(seq 100); do
  ready=$(curl -fsS "http://127.0.0.1:$ADMIN/ebb/status/iris" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["replicas"]["ready"])' 2>/dev/null || echo 0)
  [ "$ready" = 2 ] && break; sleep 0.1
done
read -r R1 R2 < <(curl -fsS "http://127.0.0.1:$ADMIN/ebb/status/iris" | python3 -c 'import json,sys; print(*[r["port"] for r in json.load(sys.stdin)["replicas"]["list"]])')

haproxy_config "$HA_PORT" "127.0.0.1:$R1" "127.0.0.1:$R2" > "$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 &
HA_PID=$!; PIDS+=("$HA_PID")

mkdir -p "$WORK/nginx"
cat > "$WORK/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  upstream r { least_conn; server 127.0.0.1:$R1; server 127.0.0.1:$R2; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / { proxy_pass http://r; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" > "$WORK/nginx.log" 2>&1 &
NGX_PID=$!; PIDS+=("$NGX_PID")
sleep 1

# CPU seconds used by the given processes (all their threads).
cpu() {
  local total=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    total=$(awk -v t="$total" -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /,""); print t + ($12 + $13) / hz}' "/proc/$p/stat")
  done
  echo "$total"
}
# The processes that make up a proxy: Ebb's one process (not its replicas), HAProxy's one,
# nginx's master and workers.
procs_of() { case $1 in ebb) echo "$EBB_PID";; haproxy) echo "$HA_PID";; nginx) echo "$NGX_PID $(pgrep -P "$NGX_PID" | tr '\n' ' ')";; direct) echo "";; esac; }
port_of() { case $1 in ebb) echo "$EBB_PORT";; haproxy) echo "$HA_PORT";; nginx) echo "$NGX_PORT";; direct) echo "$R1";; esac; }

BODY='{"inputs":[{"name":"features","shape":[2,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}]}'
cat > "$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
EOF

# open loop: prints "p50_us p99_us requests cpu_s"
open_loop() {
  local who=$1 procs; procs=$(procs_of "$who")
  local before; before=$(cpu $procs)
  local out; out=$("$EBB" load --target "http://127.0.0.1:$(port_of "$who")/v2/models/iris/infer" --pattern constant:1000:10s 2>/dev/null)
  local after; after=$(cpu $procs)
  echo "$out" | python3 -c '
import re,sys
t=sys.stdin.read(); ok=int(re.search(r"(\d+) ok",t).group(1))
p50=float(re.search(r"p50 ([\d.]+) ms",t).group(1))*1000; p99=float(re.search(r"p99 ([\d.]+) ms",t).group(1))*1000
print(f"{p50:.0f} {p99:.0f} {ok} {sys.argv[1]}")' "$(echo "$after - $before" | bc -l)"
}
closed_loop() {
  wrk -t1 -c64 -d5s -s "$WORK/post.lua" "http://127.0.0.1:$(port_of "$1")/v2/models/iris/infer" | awk '/Requests\/sec/ {print $2}'
}
idle_cpu() {
  local procs; procs=$(procs_of "$1"); local b; b=$(cpu $procs); sleep 10; echo "$(cpu $procs) - $b" | bc -l
}

echo "| round | proxy | p50 / p99 (us) | added p50 / p99 (us) | CPU per request (us) | wrk -t1 -c64 (req/s) | idle CPU per 10 s (ms) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for round in $(seq "$ROUNDS"); do
  read -r D50 D99 _ _ < <(open_loop direct)
  echo "| $round | direct to one replica | $D50 / $D99 | | | $(closed_loop direct) | |"
  for who in ebb haproxy nginx; do
    read -r P50 P99 N CPU < <(open_loop "$who")
    RPS=$(closed_loop "$who")
    IDLE=$(idle_cpu "$who")
    printf '| %s | %s | %s / %s | %+d / %+d | %.1f | %s | %.0f |\n' "$round" "$who" "$P50" "$P99" \
      "$((P50 - D50))" "$((P99 - D99))" "$(echo "$CPU * 1000000 / $N" | bc -l)" "$RPS" "$(echo "$IDLE * 1000" | bc -l)"
  done
done
grep -E "ebb_(upstream_errors|gateway_failures|ejections)_total" <(curl -fsS "http://127.0.0.1:$ADMIN/metrics") | sed 's/^/# /'
