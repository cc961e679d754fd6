#!/usr/bin/env bash
# ebb gateway beside HAProxy, in one run, in front of the same two model pods, on the test
# control plane.
#
#   bench/gateway.sh [ROUNDS]     (needs haproxy: apt-get install haproxy)
#
# It starts a control plane (scripts/kube-control-plane.sh, or uses the one EBB_KUBE_ENV names),
# creates two pod objects marked Ready and runs `ebb demo-model` for each in a network namespace
# of its own (a veth pair to a bridge, pod IPs 198.18.250.2-3, as the end-to-end tests' pods;
# root and iproute2 needed), 0 ms service time, so latency is all HTTP and scheduling.
# `ebb gateway` learns the pods from its Pod watch; HAProxy (`balance leastconn`,
# `http-reuse always`) is pointed at the same two pod IPs. Per round and path, `ebb load` sends
# 1,000 req/s (open loop) for 10 s: p50 and p99, and what each adds over the same load sent
# straight to one pod. The two proxies take turns going first, round by round (the machine
# drifts within a round). Both proxies get two threads. The last lines give the median of the
# rounds' added p50 for each, and the rounds in which the gateway added no more than HAProxy.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
command -v haproxy >/dev/null || { echo "bench/gateway.sh needs haproxy (apt-get install haproxy)" >&2; exit 2; }
# EBB_PROFILE=release-lto measures the build with link-time optimisation (see Cargo.toml).
PROFILE=${EBB_PROFILE:-release}
cargo build --profile "$PROFILE" -q -p ebb
EBB=$PWD/target/$PROFILE/ebb
WORK=$(mktemp -d)
PIDS=()
OWN_PLANE=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${NS:-}" ] && api DELETE "/api/v1/namespaces/$NS" >/dev/null 2>&1 || true
  [ -n "$OWN_PLANE" ] && scripts/kube-control-plane.sh stop "$WORK/plane" >/dev/null 2>&1 || true
  for i in 0 1; do ip link delete "ebbbench$$-$i" 2>/dev/null || true; ip netns delete "ebbbench$$-$i" 2>/dev/null || true; done
  [ -n "${OWN_BRIDGE:-}" ] && ip link delete ebbbench 2>/dev/null || true
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
IPS=(198.18.250.2 198.18.250.3)
# One run at a time: the bridge's name is the lock (two runs would route the same pod IPs
# through two bridges, and each would see the other's failures).
BRIDGE=ebbbench
ip link add name "$BRIDGE" type bridge 2>/dev/null || {
  echo "another bench/gateway.sh is running (bridge $BRIDGE exists; if none is, remove it: ip link delete $BRIDGE)" >&2
  exit 2
}
OWN_BRIDGE=1
ip addr add 198.18.250.1/24 dev "$BRIDGE"
ip link set dev "$BRIDGE" up
for i in 0 1; do
  ip=${IPS[$i]} ns=ebbbench$$-$i
  ip netns add "$ns"
  ip link add "$ns" type veth peer name "p$$-$i" netns "$ns"
  ip link set dev "$ns" master "$BRIDGE" up
  ip -n "$ns" link set dev lo up
  ip -n "$ns" addr add "$ip/24" dev "p$$-$i"
  ip -n "$ns" link set dev "p$$-$i" up
  ip netns exec "$ns" "$EBB" demo-model --host "$ip" --port 8080 --service-ms 0 --concurrency 256 >/dev/null 2>&1 &
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
ADDED_GW=(); ADDED_HA=()
for round in $(seq "$ROUNDS"); do
  for _ in 1 2; do
    curl -fsS "http://${IPS[0]}:8080/v2/health/ready" >/dev/null || { echo "pod ${IPS[0]} does not answer" >&2; exit 1; }
  done
  read -r D50 D99 DOK DERR < <(open_loop "${IPS[0]}:8080")
  echo "| $round | straight to one pod | $D50 / $D99 | | $DOK / $DERR |"
  order="gateway haproxy"; [ $((round % 2)) = 0 ] && order="haproxy gateway"
  for who in $order; do
    case $who in gateway) addr=127.0.0.1:$GW_PORT;; haproxy) addr=127.0.0.1:$HA_PORT;; esac
    read -r P50 P99 OK ERR < <(open_loop "$addr")
    printf '| %s | %s | %s / %s | %+d / %+d | %s / %s |\n' "$round" "$who" "$P50" "$P99" \
      "$((P50 - D50))" "$((P99 - D99))" "$OK" "$ERR"
    case $who in gateway) ADDED_GW+=("$((P50 - D50))");; haproxy) ADDED_HA+=("$((P50 - D50))");; esac
  done
done
echo
echo "the gateway's own failure counters at the end (what it saw go wrong):"
curl -fsS "http://127.0.0.1:$GW_ADMIN/metrics" | grep -E '^ebb_(upstream_errors|gateway_failures|upstream_timeouts|answers_broken|cancelled|retries|retries_refused|ejections|header_timeouts|accept_errors|idle_closed)_total' | grep -v ' 0$' || echo '  none'
python3 - "${ADDED_GW[*]}" "${ADDED_HA[*]}" <<'PY'
import statistics, sys
gw = [int(x) for x in sys.argv[1].split()]; ha = [int(x) for x in sys.argv[2].split()]
wins = sum(g <= h for g, h in zip(gw, ha))
print()
print(f"added p50, median of {len(gw)} rounds: gateway {statistics.median(gw):+.0f} us, "
      f"haproxy {statistics.median(ha):+.0f} us; the gateway added no more than HAProxy "
      f"in {wins} of {len(gw)} rounds")
PY
