#!/usr/bin/env bash
# ebb gateway beside HAProxy, in one run, in front of the same two model pods, on the test
# control plane.
#
#   bench/gateway.sh [ROUNDS]     (needs haproxy: apt-get install haproxy)
#
# It starts a control plane (scripts/kube-control-plane.sh, or uses the one EBB_KUBE_ENV names),
# creates two pod objects marked Ready with loopback pod IPs and runs `ebb demo-model` on each
# (0 ms service time, so latency is all HTTP and scheduling). `ebb gateway` learns the pods from
# its Pod watch; HAProxy (`balance leastconn`, `http-reuse always`) is pointed at the same two
# pod IPs. Per round and path, `ebb load` sends 1,000 req/s (open loop) for 10 s: p50 and p99,
# and what each adds over the same load sent straight to one pod. Both proxies get two threads.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
command -v haproxy >/dev/null || { echo "bench/gateway.sh needs haproxy (apt-get install haproxy)" >&2; exit 2; }
cargo build --release -q -p ebb
EBB=$PWD/target/release/ebb
WORK=$(mktemp -d)
PIDS=()
OWN_PLANE=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${NS:-}" ] && api DELETE "/api/v1/namespaces/$NS" >/dev/null 2>&1 || true
  [ -n "$OWN_PLANE" ] && scripts/kube-control-plane.sh stop "$WORK/plane" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${EBB_KUBE_ENV:-}" ]; then
  scripts/kube-control-plane.sh build >&2
  scripts/kube-control-plane.sh start "$WORK/plane" >&2
  EBB_KUBE_ENV=$WORK/plane/env; OWN_PLANE=1
fi
# shellcheck disable=SC1090
source "$EBB_KUBE_ENV"
api() { # METHOD PATH [JSON] [CONTENT-TYPE]
  curl -sfk -X "$1" -H "Authorization: Bearer $EBB_KUBE_ADMIN_TOKEN" \
    -H "Content-Type: ${4:-application/json}" "$EBB_KUBE_SERVER$2" ${3:+-d "$3"}
}
source bench/common.sh

NS=ebb-bench-$$
api POST /api/v1/namespaces "{\"metadata\":{\"name\":\"$NS\"}}" >/dev/null
IPS=(127.0.200.2 127.0.200.3)
for i in 0 1; do
  ip=${IPS[$i]}
  "$EBB" demo-model --host "$ip" --port 8080 --service-ms 0 --concurrency 256 >/dev/null 2>&1 &
  PIDS+=("$!")
  api POST "/api/v1/namespaces/$NS/pods" \
    "{\"metadata\":{\"name\":\"model-$i\",\"labels\":{\"app\":\"bench\"}},\"spec\":{\"containers\":[{\"name\":\"m\",\"image\":\"example/model:1\"}]}}" >/dev/null
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  api PATCH "/api/v1/namespaces/$NS/pods/model-$i/status" \
    "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$ip\",\"startTime\":\"$now\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"lastTransitionTime\":\"$now\"}]}}" \
    application/merge-patch+json >/dev/null
done

GW_PORT=$(free_port); GW_ADMIN=$(free_port); HA_PORT=$(free_port)
TOKIO_WORKER_THREADS=2 "$EBB" gateway --kubeconfig "$KUBECONFIG" --namespace "$NS" --selector app=bench \
  --target-port 8080 --name bench --listen "127.0.0.1:$GW_PORT" --admin "127.0.0.1:$GW_ADMIN" \
  > "$WORK/gateway.log" 2>&1 &
PIDS+=("$!")
haproxy_config "$HA_PORT" "${IPS[0]}:8080" "${IPS[1]}:8080" > "$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do
  routed=$(curl -fsS "http://127.0.0.1:$GW_ADMIN/metrics" 2>/dev/null | grep -c '^ebb_replica_in_flight{' || true)
  [ "$routed" = 2 ] && break; sleep 0.1
done
[ "$routed" = 2 ] || { echo "the gateway did not find the two pods" >&2; cat "$WORK/gateway.log" >&2; exit 1; }

# open loop: prints "p50_us p99_us ok errors"
open_loop() {
  local out
  out=$("$EBB" load --target "http://$1/v2/models/iris/infer" --pattern constant:1000:10s 2>/dev/null)
  echo "$out" | python3 -c '
import re,sys
t=sys.stdin.read(); ok=int(re.search(r"(\d+) ok",t).group(1)); err=int(re.search(r"(\d+) errors",t).group(1))
p50=float(re.search(r"p50 ([\d.]+) ms",t).group(1))*1000; p99=float(re.search(r"p99 ([\d.]+) ms",t).group(1))*1000
print(f"{p50:.0f} {p99:.0f} {ok} {err}")'
}

echo "| round | path | p50 / p99 (us) | added p50 / p99 (us) | answered / errors |"
echo "| --- | --- | --- | --- | --- |"
for round in $(seq "$ROUNDS"); do
  read -r D50 D99 DOK DERR < <(open_loop "${IPS[0]}:8080")
  echo "| $round | straight to one pod | $D50 / $D99 | | $DOK / $DERR |"
  for who in gateway haproxy; do
    case $who in gateway) addr=127.0.0.1:$GW_PORT;; haproxy) addr=127.0.0.1:$HA_PORT;; esac
    read -r P50 P99 OK ERR < <(open_loop "$addr")
    printf '| %s | %s | %s / %s | %+d / %+d | %s / %s |\n' "$round" "$who" "$P50" "$P99" \
      "$((P50 - D50))" "$((P99 - D99))" "$OK" "$ERR"
  done
done
