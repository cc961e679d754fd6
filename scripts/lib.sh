# Shared by the scripts that start test servers: a free loopback port, and waiting for a
# server to answer.

log() { printf '[%s] %s\n' "${LOG_PREFIX:-scripts}" "$*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit="$1" what="$2" i
    shift 2
    for ((i = 0; i < limit * 5; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    log "timed out after ${limit}s waiting for $what"
    return 1
}

stop_pids() { # stop_pids DIR NAME...: SIGTERM each DIR/NAME.pid, SIGKILL after 5 s
    local dir="$1" name pid
    shift
    for name in "$@"; do
        [ -f "$dir/$name.pid" ] || continue
        pid="$(cat "$dir/$name.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/$name.pid"
    done
}
