#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, built from Debian's source package (no Docker,
# no downloaded binaries): etcd + kube-apiserver + kube-controller-manager. There is no
# scheduler and no kubelet: tests play the kubelet by patching pod status (and, for the
# end-to-end tests with real processes, by running each pod in a network namespace of its
# own). The endpoint controllers run, so a Service's Endpoints and EndpointSlices list its
# ready pods as in a cluster.
#
#   scripts/kube-control-plane.sh build         install packages, build and cache the binaries
#   scripts/kube-control-plane.sh start DIR     start etcd, apiserver, controller-manager; write
#                                               DIR/admin.kubeconfig, DIR/env, DIR/*.pid
#   scripts/kube-control-plane.sh stop DIR      stop what start started, by PID
#
# The binaries are cached under ${EBB_KUBE_CACHE:-~/.cache/ebb-kube}/VERSION so the ~7 minute
# build happens once per machine.
set -euo pipefail
LOG_PREFIX=kube-control-plane
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE_DEB_VERSION="1.20.5+really1.20.2"
CACHE_ROOT="${EBB_KUBE_CACHE:-$HOME/.cache/ebb-kube}"
CACHE="$CACHE_ROOT/$KUBE_DEB_VERSION"
BINARIES=(kube-apiserver kube-controller-manager)


have_binaries() {
    local b
    for b in "${BINARIES[@]}"; do [ -x "$CACHE/$b" ] || return 1; done
}

install_packages() {
    local missing=()
    command -v go >/dev/null || missing+=(golang-go)
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v rsync >/dev/null || missing+=(rsync)
    command -v jq >/dev/null || missing+=(jq)
    command -v openssl >/dev/null || missing+=(openssl)
    # The stand-in kubelet gives each test pod a network namespace of its own.
    command -v ip >/dev/null || missing+=(iproute2)
    [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || missing+=(golang-github-modern-go-reflect2-dev)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

build() {
    install_packages
    if have_binaries; then
        log "cached binaries in $CACHE"
        return 0
    fi
    local work="$CACHE_ROOT/src"
    rm -rf "$work"
    mkdir -p "$work" "$CACHE"
    if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/; then
        # The mirror the machine already uses for bookworm (deb.debian.org if none is named).
        local mirror
        mirror="$(grep -hm1 -E '^URIs: .*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -n1)"
        mirror="${mirror:-http://deb.debian.org/debian}"
        log "adding a deb-src entry for bookworm main on $mirror"
        cat >/etc/apt/sources.list.d/ebb-deb-src.sources <<SRC
Types: deb-src
URIs: $mirror
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        apt-get update -qq
    fi
    log "downloading the kubernetes $KUBE_DEB_VERSION source package"
    (cd "$work" && apt-get source --download-only kubernetes >/dev/null)
    local orig
    orig="$(ls "$work"/kubernetes_*.orig.tar.* | head -n1)"
    case "$orig" in
    *"kubernetes_$KUBE_DEB_VERSION.orig"*) ;;
    *) log "expected kubernetes $KUBE_DEB_VERSION, got $orig"; exit 1 ;;
    esac
    mkdir -p "$work/tree"
    tar -xf "$orig" -C "$work/tree" --strip-components=1
    # reflect2 v1.0.1 faults under Go >= 1.18 as soon as the apiserver serves a custom
    # resource; Debian ships 1.0.2.
    log "replacing vendor/github.com/modern-go/reflect2 with Debian's 1.0.2"
    rm -rf "$work/tree/vendor/github.com/modern-go/reflect2"
    rsync -a --exclude go.mod /usr/share/gocode/src/github.com/modern-go/reflect2/ \
        "$work/tree/vendor/github.com/modern-go/reflect2/"
    log "building ${BINARIES[*]} (about 7 minutes on 2 cores)"
    local what="" b
    for b in "${BINARIES[@]}"; do what="$what cmd/$b"; done
    # Go's build cache goes with the sources: kept in ~/.cache it holds gigabytes no later step reads.
    (cd "$work/tree" && GOCACHE="$work/go-build" make WHAT="${what# }" KUBE_BUILD_PLATFORMS=linux/amd64 >"$work/make.log" 2>&1) || {
        tail -n 40 "$work/make.log" >&2
        exit 1
    }
    for b in "${BINARIES[@]}"; do
        cp "$work/tree/_output/local/bin/linux/amd64/$b" "$CACHE/$b"
    done
    rm -rf "$work"
    log "built into $CACHE"
}



start() {
    local dir="$1"
    have_binaries || build
    command -v etcd >/dev/null || install_packages
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ -f "$dir/etcd.pid" ] && kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null; then
        echo "a control plane is running from $dir: '$0 stop $dir' first" >&2
        exit 1
    fi
    # A stopped plane's data holds ServiceAccount tokens signed with the key replaced below:
    # reused, every one of them would be refused (401). Start from empty.
    rm -rf "$dir/etcd"
    local etcd_port etcd_peer api_port
    etcd_port="$(free_port)"
    etcd_peer="$(free_port)"
    api_port="$(free_port)"

    openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
    openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
    local admin_token
    admin_token="$(openssl rand -hex 24)"
    echo "$admin_token,ebb-admin,ebb-admin,system:masters" >"$dir/tokens.csv"

    log "starting etcd on 127.0.0.1:$etcd_port"
    etcd --data-dir "$dir/etcd" --name ebb-test \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "ebb-test=http://127.0.0.1:$etcd_peer" --log-level error \
        >"$dir/etcd.log" 2>&1 &
    echo $! >"$dir/etcd.pid"
    wait_for 30 etcd curl -sf "http://127.0.0.1:$etcd_port/health"

    log "starting kube-apiserver on 127.0.0.1:$api_port"
    "$CACHE/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --insecure-port 0 \
        --cert-dir "$dir/certs" --token-auth-file "$dir/tokens.csv" --authorization-mode RBAC \
        --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
        --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
        --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=false \
        --enable-admission-plugins NamespaceLifecycle,ServiceAccount \
        >"$dir/apiserver.log" 2>&1 &
    echo $! >"$dir/apiserver.pid"
    local server="https://127.0.0.1:$api_port"
    wait_for 90 kube-apiserver curl -sfk -H "Authorization: Bearer $admin_token" "$server/readyz"

    cat >"$dir/admin.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: ebb-test
  cluster:
    server: $server
    insecure-skip-tls-verify: true
users:
- name: ebb-admin
  user:
    token: $admin_token
contexts:
- name: ebb-test
  context: {cluster: ebb-test, user: ebb-admin}
current-context: ebb-test
KC

    log "starting kube-controller-manager"
    "$CACHE/kube-controller-manager" --kubeconfig "$dir/admin.kubeconfig" \
        --controllers deployment,replicaset,garbagecollector,serviceaccount,serviceaccount-token,namespace,endpoint,endpointslice,endpointslicemirroring \
        --service-account-private-key-file "$dir/sa.key" --root-ca-file "$dir/certs/apiserver.crt" \
        --use-service-account-credentials=false --leader-elect=false --bind-address 127.0.0.1 --port 0 \
        --secure-port 0 \
        >"$dir/controller-manager.log" 2>&1 &
    echo $! >"$dir/controller-manager.pid"
    # The default ServiceAccount appears once the serviceaccount controller runs.
    wait_for 60 "the default ServiceAccount" curl -sfk -H "Authorization: Bearer $admin_token" \
        "$server/api/v1/namespaces/default/serviceaccounts/default"

    cat >"$dir/env" <<ENV
export KUBECONFIG=$dir/admin.kubeconfig
export EBB_KUBE_SERVER=$server
export EBB_KUBE_ADMIN_TOKEN=$admin_token
export PATH=$CACHE:\$PATH
ENV
    log "control plane ready: source $dir/env"
}

stop() {
    stop_pids "$1" controller-manager apiserver etcd
    log "stopped"
}

case "${1:-}" in
build) build ;;
start) start "${2:?usage: start DIR}" ;;
stop) stop "${2:?usage: stop DIR}" ;;
*) echo "usage: $0 build | start DIR | stop DIR" >&2; exit 2 ;;
esac
