# What the proxy benchmarks share. Sourced by bench/proxies.sh and bench/gateway.sh.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# haproxy_config PORT ADDR...: HAProxy as users run it in front of model replicas (least
# connections, pooled server connections, two threads, as the proxies under test get),
# listening on 127.0.0.1:PORT, one server per ADDR.
haproxy_config() {
    local port=$1; shift
    cat <<CFG
global
  nbthread 2
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:$port
  default_backend b
backend b
  balance leastconn
  http-reuse always
CFG
    local i=1
    for addr in "$@"; do
        echo "  server r$i $addr"
        i=$((i + 1))
    done
}
