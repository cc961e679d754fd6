//! `ebb up` end to end: real processes (Ebb, demo-model replicas, the load generator) and real
//! HTTP on loopback.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SCALING: &str = "    minReplicas: 1
    maxReplicas: 6
    concurrency: {metric: rps, targetPerReplica: 40, stableWindowSeconds: 5, panicWindowSeconds: 2, panicThresholdPercent: 150}
    behavior:
      scaleUp: {policies: [{type: Percent, value: 200, periodSeconds: 1}]}
      scaleDown: {stabilizationWindowSeconds: 3, policies: [{type: Percent, value: 50, periodSeconds: 2}]}";

#[test]
fn scales_up_on_a_step_and_in_under_load_without_losing_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let up = Up::start(&config(dir.path(), port, SCALING, ""), port);
    // 160 req/s needs 4 replicas at 40 req/s each.
    let report = std::thread::scope(|s| {
        let h = s.spawn(|| load(port, "constant:160:8s"));
        let status = up.wait_until(Duration::from_secs(8), |s| {
            s["replicas"]["ready"].as_u64() >= Some(3)
        });
        assert!(status["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["desired"].as_u64() > d["current"].as_u64()));
        h.join().unwrap()
    });
    assert!(report.contains(" 0 errors"), "{report}");
    // Then steady load that needs fewer replicas: the scale-in happens while it runs, and every
    // request is still answered 200 (victims are drained before they stop).
    let before = up.status().unwrap()["replicas"]["ready"].as_u64().unwrap();
    let report = load(port, "constant:40:12s");
    assert!(report.contains(" 0 errors"), "{report}");
    let after = up.status().unwrap();
    let ready = after["replicas"]["ready"].as_u64().unwrap();
    assert!(
        ready < before && ready <= 2,
        "scaled in from {before} to {ready}: {after:#}"
    );
    assert!(after["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["desired"].as_u64() < d["current"].as_u64()));
    let out = up.interrupt();
    assert!(out.status.success());
}

/// Ready copies of `model` and the servers they are on.
fn copies(status: &serde_json::Value, model: &str) -> Vec<u64> {
    status["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["name"] == model)
        .flat_map(|m| m["copies"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["state"] == "ready")
        .filter_map(|c| c["replica"].as_u64())
        .collect()
}

/// Two models (iris, wine) on servers of 8 GiB that hold both, each scaled on its own rate;
/// `extra` lines go at the top of the file.
fn multi_model_config(dir: &Path, port: u16, extra: &str) -> std::path::PathBuf {
    let policy = "      minReplicas: 1\n      maxReplicas: 3\n      concurrency: {metric: rps, targetPerReplica: 40, stableWindowSeconds: 4, panicWindowSeconds: 2, panicThresholdPercent: 150}\n      behavior:\n        scaleUp: {policies: [{type: Percent, value: 200, periodSeconds: 1}]}\n        scaleDown: {stabilizationWindowSeconds: 3, policies: [{type: Percent, value: 50, periodSeconds: 1}]}";
    let admin = free_port();
    let text = format!(
        r#"{extra}admin: 127.0.0.1:{admin}
services:
- name: pool
  command: ["{{ebb}}", demo-model, --port, "{{port}}", --repository, "iris,wine", --load-ms, "200", --service-ms, "20", --concurrency, "2"]
  listen: 127.0.0.1:{port}
  syncPeriodMs: 250
  drainTimeoutSeconds: 10
  stopGraceSeconds: 2
  server: {{memoryMiB: 8192, maxReplicas: 4}}
  models:
  - name: iris
    memoryMiB: 3072
    policy:
{policy}
  - name: wine
    memoryMiB: 3072
    policy:
{policy}
"#
    );
    let cfg = dir.join("multi.yaml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn multi_model_servers_follow_the_models_and_route_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = multi_model_config(dir.path(), port, "");
    let up = Up::spawn(&cfg, port);
    // Both models fit one server: they are packed onto it.
    let s = up.wait_until(Duration::from_secs(20), |s| {
        copies(s, "iris").len() == 1 && copies(s, "wine").len() == 1
    });
    assert_eq!(copies(&s, "iris"), copies(&s, "wine"), "{s:#}");
    assert_eq!(s["replicas"]["ready"], 1, "{s:#}");
    // Requests are routed by model name to a server that has it loaded.
    let body = r#"{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let (code, iris) = post(port, "/v2/models/iris/infer", body);
    assert_eq!(code, 200, "{iris}");
    assert!(iris.contains(r#""model_name":"iris""#), "{iris}");
    let (code, wine) = post(port, "/v2/models/wine/infer", body);
    assert_eq!(code, 200, "{wine}");
    assert!(wine.contains(r#""model_name":"wine""#), "{wine}");
    let (code, none) = post(port, "/v2/models/nope/infer", body);
    assert_eq!(code, 404);
    assert!(
        none.contains("hosts no model named 'nope' (models: iris, wine)"),
        "{none}"
    );
    // iris alone gets 120 req/s: its replicas go on distinct servers, wine stays at one.
    let report = std::thread::scope(|sc| {
        let h = sc.spawn(|| load_model(port, "iris", "constant:120:6s"));
        let s = up.wait_until(Duration::from_secs(6), |s| copies(s, "iris").len() >= 2);
        let mut servers = copies(&s, "iris");
        servers.dedup();
        assert!(
            servers.len() >= 2,
            "two copies of iris share a server: {s:#}"
        );
        h.join().unwrap()
    });
    assert!(report.contains(" 0 errors"), "{report}");
    // After the load iris scales back down and the placement consolidates onto one server,
    // moving copies before it stops servers: every request meanwhile is answered.
    let report = std::thread::scope(|sc| {
        let h = sc.spawn(|| load_model(port, "wine", "constant:10:10s"));
        let s = up.wait_until(Duration::from_secs(15), |s| {
            s["replicas"]["ready"] == 1
                && s["replicas"]["starting"] == 0
                && s["replicas"]["draining"] == 0
                && copies(s, "iris").len() == 1
                && copies(s, "wine").len() == 1
        });
        let events = s["events"].to_string();
        assert!(events.contains("placement: server"), "{events}");
        h.join().unwrap()
    });
    assert!(report.contains(" 0 errors"), "{report}");
    let out = up.interrupt();
    assert!(out.status.success());
}

/// A paused multi-model service keeps its placement as it is: a model under load gets no new
/// copy until the operator resumes it; a count is refused (what would it count?).
#[test]
fn a_paused_multi_model_service_keeps_its_placement() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let socket = dir.path().join("up.sock");
    let cfg = multi_model_config(
        dir.path(),
        port,
        &format!("controlSocket: {}\n", socket.display()),
    );
    let up = Up::spawn(&cfg, port);
    up.wait_until(Duration::from_secs(20), |s| {
        copies(s, "iris").len() == 1 && copies(s, "wine").len() == 1
    });
    let (ok, out) = ctl(&socket, &["pause", "pool", "3"]);
    assert!(
        !ok && out.contains("pause holds its placement as it is"),
        "{out}"
    );
    let (ok, out) = ctl(&socket, &["pause", "pool"]);
    assert!(ok, "{out}");
    let report = std::thread::scope(|sc| {
        let h = sc.spawn(|| load_model(port, "iris", "constant:120:4s"));
        let mut most = 0;
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            if let Some(s) = up.status() {
                most = most.max(copies(&s, "iris").len());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(most, 1, "iris got a copy while paused");
        h.join().unwrap()
    });
    assert!(report.contains(" 0 errors"), "{report}");
    let (ok, out) = ctl(&socket, &["status"]);
    assert!(
        ok && out.contains("pool: paused at the current count"),
        "{out}"
    );
    let (ok, out) = ctl(&socket, &["resume", "pool"]);
    assert!(ok, "{out}");
    std::thread::scope(|sc| {
        let h = sc.spawn(|| load_model(port, "iris", "constant:120:6s"));
        up.wait_until(Duration::from_secs(6), |s| copies(s, "iris").len() >= 2);
        h.join().unwrap()
    });
    up.interrupt();
}

#[test]
fn a_crashed_replica_is_restarted_and_gets_no_traffic_while_down() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let policy = "    minReplicas: 2\n    maxReplicas: 2\n    concurrency: {targetPerReplica: 10}";
    // Inference has no side effects: the requests the crash cut off are sent again.
    let cfg = config(
        dir.path(),
        port,
        policy,
        "  proxy: {retryNonIdempotent: true}\n",
    );
    let up = Up::start(&cfg, port);
    up.wait_until(Duration::from_secs(20), |s| s["replicas"]["ready"] == 2);
    let report = std::thread::scope(|s| {
        let h = s.spawn(|| load(port, "constant:40:8s"));
        std::thread::sleep(Duration::from_secs(2));
        let victim = up.status().unwrap()["replicas"]["list"][0].clone();
        unsafe {
            libc::kill(victim["pid"].as_i64().unwrap() as i32, libc::SIGKILL);
        }
        let id = victim["id"].clone();
        let status = up.wait_until(Duration::from_secs(15), |s| {
            s["replicas"]["list"].as_array().unwrap().iter().any(|r| {
                r["id"] == id && r["restarts"].as_u64() >= Some(1) && r["state"] == "ready"
            })
        });
        let events = status["events"].to_string();
        assert!(events.contains("exited with signal: 9"), "{events}");
        h.join().unwrap()
    });
    assert!(
        report.contains(" 0 errors"),
        "requests must not reach the dead replica: {report}"
    );
    up.interrupt();
}

/// Runs `ebb ctl --socket SOCKET ARGS...` and returns whether it succeeded and its output.
fn ctl(socket: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(ebb())
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn an_operator_pauses_and_resumes_a_service_through_the_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let socket = dir.path().join("ctl").join("up.sock");
    let cfg = config(dir.path(), port, SCALING, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("controlSocket: {}\n{text}", socket.display())).unwrap();
    let up = Up::start(&cfg, port);
    up.wait_until(Duration::from_secs(20), |s| s["replicas"]["ready"] == 1);
    // Only the user may reach it.
    let mode = std::fs::metadata(&socket).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let (ok, out) = ctl(&socket, &["pause", "iris", "3"]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "iris paused at 3 replicas");
    up.wait_until(Duration::from_secs(20), |s| {
        s["replicas"]["ready"] == 3 && s["control"]["paused"] == 3
    });
    // Idle, the policy would go back to 1; paused, it holds 3 and says so.
    let status = up.wait_until(Duration::from_secs(10), |s| s["control"]["proposed"] == 1);
    assert_eq!(status["replicas"]["ready"], 3, "{status:#}");
    let (ok, out) = ctl(&socket, &["status"]);
    assert!(
        ok && out.contains("iris: paused at 3, 3 ready (the policy would set 1)"),
        "{out}"
    );
    // Refused with a reason, and nothing changes.
    let (ok, out) = ctl(&socket, &["pause", "iris", "99"]);
    assert!(
        !ok && out.contains("above the service's maxReplicas (6)"),
        "{out}"
    );
    let (ok, out) = ctl(&socket, &["resume", "nosuch"]);
    assert!(!ok && out.contains("no service 'nosuch'"), "{out}");
    let (ok, out) = ctl(&socket, &["resume", "iris"]);
    assert!(ok, "{out}");
    let status = up.wait_until(Duration::from_secs(20), |s| s["replicas"]["ready"] == 1);
    assert!(status["control"]["paused"].is_null(), "{status:#}");
    let events = status["events"].to_string();
    assert!(
        events.contains("paused by an operator at 3 replicas") && events.contains("resumed"),
        "{events}"
    );
    up.interrupt();
    assert!(!socket.exists(), "the socket is removed at exit");
}

/// `ebb up` reads the calendar from the machine's clock: a window open all day, every day,
/// holds its floor with the load at zero and names itself in the decision.
#[test]
fn a_schedule_window_holds_its_floor_on_the_machine_clock() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let policy = format!(
        "{SCALING}\n    schedules:\n    - {{name: always, from: '00:00', to: '24:00', timezone: Pacific/Auckland, minReplicas: 2}}"
    );
    let cfg = config(dir.path(), port, &policy, "");
    let up = Up::start(&cfg, port);
    let status = up.wait_until(Duration::from_secs(20), |s| s["replicas"]["ready"] == 2);
    let reasons = status["decisions"].to_string();
    assert!(
        reasons.contains("schedule always (daily 00:00-24:00 Pacific/Auckland): minReplicas 2"),
        "{reasons}"
    );
    up.interrupt();
}

#[test]
fn ctrl_c_drains_and_leaves_no_child_process() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::fixed(dir.path(), 3);
    let pids = up.pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| alive(*p)));
    let out = up.interrupt();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Summary"), "{stdout}");
    for p in pids {
        assert!(!alive(p), "replica process {p} outlived ebb up");
    }
}

#[test]
fn replicas_die_with_ebb_even_when_it_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::fixed(dir.path(), 2);
    let pids = up.pids();
    up.child.kill().unwrap(); // SIGKILL: no graceful shutdown
    let _ = up.child.wait();
    let start = Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "replicas outlived a killed ebb up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_replica_that_never_becomes_ready_is_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let policy = "    minReplicas: 1\n    maxReplicas: 1\n    concurrency: {targetPerReplica: 10}";
    let extra = "  readiness: {path: /not-here, timeoutSeconds: 1}\n";
    let cfg = config(dir.path(), port, policy, extra);
    let up = Up::spawn(&cfg, port);
    let status = up.wait_until(Duration::from_secs(15), |s| {
        s["events"]
            .to_string()
            .contains("not ready after 1s at /not-here; restarting")
    });
    assert_eq!(status["replicas"]["ready"], 0);
    // Requests meanwhile get a clear 503 once the activator queue's timeout passes.
    let out = up.interrupt();
    assert!(out.status.success());
}

fn up_fails(cfg: &Path) -> String {
    let o = Command::new(ebb())
        .args(["up", cfg.to_str().unwrap(), "--plain"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_configs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    std::fs::write(&missing, "services:\n- name: m\n  listen: 127.0.0.1:9\n  policy: {maxReplicas: 2, concurrency: {targetPerReplica: 1}}\n").unwrap();
    assert!(up_fails(&missing).contains("services[0].command: is required"));

    let port = free_port();
    let bad_policy = config(
        dir.path(),
        port,
        "    minReplicas: 3\n    maxReplicas: 1\n    concurrency: {targetPerReplica: 1}",
        "",
    );
    assert!(up_fails(&bad_policy).contains("services[0].policy.maxReplicas"));

    let port = free_port();
    let open = config(dir.path(), port, SCALING, "")
        .to_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&open).unwrap();
    std::fs::write(
        &open,
        text.replace("listen: 127.0.0.1:", "listen: 0.0.0.0:"),
    )
    .unwrap();
    let err = up_fails(Path::new(&open));
    assert!(err.contains("services[0].listen: 0.0.0.0:"), "{err}");
    assert!(err.contains("public: true"), "{err}");

    let port = free_port();
    let too_much = config(dir.path(), port, SCALING, "");
    let text = std::fs::read_to_string(&too_much).unwrap()
        + "load: {service: iris, phases: [{rate: 20000, seconds: 3600}]}\n";
    std::fs::write(&too_much, text).unwrap();
    let err = up_fails(&too_much);
    assert!(
        err.contains("load.phases: about 72000000 requests"),
        "{err}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let in_use = config(dir.path(), port, SCALING, "");
    let err = up_fails(&in_use);
    assert!(
        err.contains(&format!(
            "services[0].listen: cannot listen on 127.0.0.1:{port}"
        )),
        "{err}"
    );
}

/// HTTP/2 clients (h2c with prior knowledge, as gRPC clients open) are served beside
/// HTTP/1.1 ones: many requests at once on one connection, each forwarded to a replica over
/// HTTP/1.1 and answered in HTTP/2; and the connection stays open while idle between
/// requests, its frames (the client's pings) being no slow request head.
#[tokio::test(flavor = "multi_thread")]
async fn http2_clients_are_served_on_one_connection() {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let policy = "    minReplicas: 2\n    maxReplicas: 2\n    concurrency: {targetPerReplica: 4}";
    let proxy = "  proxy: {headerTimeoutSeconds: 1, idleTimeoutSeconds: 30}\n";
    let up = Up::start(&config(dir.path(), port, policy, proxy), port);
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(200))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/2 handshake");
    let connection = tokio::spawn(conn);
    let mut answers = together((0..20).map(|_| ask(send.clone(), port))).await;
    // Idle for over twice the header timeout, the client's pings coming in: still open.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !connection.is_finished(),
        "the idle HTTP/2 connection was closed"
    );
    answers.push(ask(send.clone(), port).await);
    for (status, version, len) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(*version, hyper::Version::HTTP_2);
        assert!(*len > 0);
    }
    let s = up.status().unwrap();
    assert_eq!(s["errors"], 0, "{s:#}");
    assert_eq!(s["completed"], 21, "{s:#}");
    up.interrupt();
}

/// gRPC through `ebb up`: with `upstreamProtocol: h2c` the proxy speaks HTTP/2 to the
/// replicas, passes `TE: trailers` on and the `grpc-status` trailer back, so a gRPC health
/// check reaches the demo model's gRPC endpoint and comes back SERVING; REST requests work
/// over the same HTTP/2 connections, and the replicas' readiness is asked by the gRPC health
/// check. With the default (HTTP/1.1 to the replicas) the same call reaches the replica
/// downgraded, and the replica says so.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_passes_through_to_h2c_replicas_with_its_trailers() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "    minReplicas: 2\n    maxReplicas: 2\n    concurrency: {targetPerReplica: 4}";
    for (protocol, status) in [("h2c", 200), ("http1", 400)] {
        let port = free_port();
        // The h2c service also asks its replicas whether they are ready by the gRPC health
        // check, as a gRPC-only server would need.
        let readiness = if protocol == "h2c" {
            "  readiness: {grpc: true}\n"
        } else {
            ""
        };
        let proxy = format!("  proxy: {{upstreamProtocol: {protocol}}}\n{readiness}");
        let up = Up::start(&config(dir.path(), port, policy, &proxy), port);
        let send = h2_client(port).await;
        let (head, body, trailers) = grpc_health_check(send.clone(), port).await;
        assert_eq!(head, status, "{protocol}: {body:?}");
        if protocol == "h2c" {
            assert_eq!(&body[..], &[0, 0, 0, 0, 2, 0x08, 0x01], "SERVING");
            let trailers = trailers.expect("trailers");
            assert_eq!(trailers["grpc-status"], "0");
            let answers = together((0..8).map(|_| ask(send.clone(), port))).await;
            assert!(answers.iter().all(|(s, _, len)| *s == 200 && *len > 0));
        } else {
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("gRPC needs HTTP/2"), "{text}");
        }
        up.interrupt();
    }
}

/// An HTTP/2 connection (h2c with prior knowledge) to the proxy on `port`.
async fn h2_client(
    port: u16,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/2 handshake");
    tokio::spawn(conn);
    send
}

/// One `grpc.health.v1.Health/Check` call (an empty request message): the answer's status,
/// body and trailers.
async fn grpc_health_check(
    mut send: hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    port: u16,
) -> (hyper::StatusCode, bytes::Bytes, Option<hyper::HeaderMap>) {
    use http_body_util::{BodyExt, Full};
    let path = ebb_local::grpc_health::CHECK_PATH;
    let req = hyper::Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(ebb_local::grpc_health::framed(&[])))
        .unwrap();
    let resp = send.send_request(req).await.expect("an answer");
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("a body");
    let trailers = collected.trailers().cloned();
    (parts.status, collected.to_bytes(), trailers)
}

/// One V2 inference request on an HTTP/2 connection: the answer's status, version and body
/// length.
async fn ask(
    mut send: hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    port: u16,
) -> (hyper::StatusCode, hyper::Version, usize) {
    use http_body_util::{BodyExt, Full};
    let req = hyper::Request::post(format!("http://127.0.0.1:{port}/v2/models/iris/infer"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(ebb_local::load::V2_BODY)))
        .unwrap();
    let resp = send.send_request(req).await.expect("an answer");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    (parts.status, parts.version, body.len())
}

/// Runs futures at once; their outputs in the order given.
async fn together<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// The proxy times a replica's answer from sending the request to the answer, so a request
/// sent while the replica's slots (the SLO's `slotsPerReplica`) were all taken would read its
/// wait in the replica's own queue as service: four at once on one slot of 500 ms would read
/// 0.5, 1, 1.5 and 2 s (the SLO model took a constant 2 s for 2.3 s +- 2.1 s this way). Only
/// the one that found the slot free is counted.
#[test]
fn answers_that_waited_inside_a_replica_are_not_service_times() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let policy = "    minReplicas: 1\n    maxReplicas: 1\n    slo: {latency: 5s, attainment: 99%, slotsPerReplica: 1}";
    let cfg = config_of_model(dir.path(), port, (500, 1), policy, "");
    let up = Up::start(&cfg, port);
    let body = r#"{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let infer = || post(port, "/v2/models/iris/infer", body).0;
    let codes: Vec<u16> = std::thread::scope(|sc| {
        // The first on the replica before the others are sent: the replica takes requests in
        // the order their connections reach it, not the order the proxy sent them in.
        let first = sc.spawn(infer);
        up.wait_until(Duration::from_secs(5), |s| {
            s["replicas"]["list"][0]["inFlight"].as_u64() >= Some(1)
        });
        let others: Vec<_> = (0..3).map(|_| sc.spawn(infer)).collect();
        std::iter::once(first)
            .chain(others)
            .map(|c| c.join().unwrap())
            .collect()
    });
    assert_eq!(codes, [200; 4]);
    let count = up.metric("ebb_service_seconds_count{service=\"iris\"}");
    let sum = up.metric("ebb_service_seconds_sum{service=\"iris\"}");
    assert_eq!(count, 1.0, "one answer found the slot free");
    assert!((0.45..1.0).contains(&sum), "{sum} s");
    up.interrupt();
}
