//! The proxy under faults: bad requests, bad replicas and bad clients, each found in a review
//! of `ebb up` (issue 11), with real processes on loopback. Replicas are `ebb fault-replica`
//! processes told how to misbehave through control files (see its module docs).

mod common;

use common::faulty::*;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// (id, port, pid) of each replica.
fn replicas(up: &Up) -> Vec<(u64, u16, i32)> {
    up.status().unwrap()["replicas"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                r["port"].as_u64().unwrap() as u16,
                r["pid"].as_i64().unwrap() as i32,
            )
        })
        .collect()
}

/// Replica `id`'s entry in the status, if it is listed.
fn replica(s: &serde_json::Value, id: u64) -> Option<&serde_json::Value> {
    s["replicas"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
}

fn replica_state(s: &serde_json::Value, id: u64) -> String {
    replica(s, id)
        .map(|r| r["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn replica_requests(s: &serde_json::Value) -> Vec<(u64, u64)> {
    s["replicas"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r["requests"].as_u64().unwrap()))
        .collect()
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    exchange(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(5),
    )
}

#[test]
fn odd_requests_and_resets_never_take_the_service_down() {
    let dir = tempfile::tempdir().unwrap();
    let (up, control) = start(dir.path(), 3, "", "");
    // `OPTIONS *` is answered by Ebb; it used to take replicas out of routing for good.
    let (code, _) = exchange(
        up.port,
        "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 204);
    assert_eq!(up.status().unwrap()["replicas"]["ready"], 3);
    // One replica resets every connection: idempotent requests are retried elsewhere, the
    // replica leaves rotation, and the others keep serving.
    let (bad, bad_port, _) = replicas(&up)[0];
    set_mode(&control, &bad_port.to_string(), "reset");
    for i in 0..30 {
        let (code, body) = get(up.port, &format!("/v2/models/m/ready?{i}")).unwrap();
        assert_eq!(code, 200, "request {i}: {body}");
    }
    let s = up.wait_until(Duration::from_secs(3), |s| {
        replica_state(s, bad) != "ready" && s["replicas"]["ready"] == 2
    });
    assert!(proxy_counter(&s, "retries_total") >= 1, "{s:#}");
    // Healthy again: back in rotation within 5 s.
    set_mode(&control, &bad_port.to_string(), "ok");
    let healed = Instant::now();
    let s = up.wait_until(Duration::from_secs(5), |s| s["replicas"]["ready"] == 3);
    eprintln!("back in rotation after {:?}", healed.elapsed());
    let events = s["events"].to_string();
    assert!(events.contains("back in rotation"), "{events}");
    counters_settle(&up);
    up.interrupt();
}

/// A client that sends a request and goes away after `after`.
fn impatient(port: u16, after: Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = "{}";
    write!(
        s,
        "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(after);
}

#[test]
fn clients_that_leave_leave_no_counts_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port, control) = faulty(
        dir.path(),
        2,
        "",
        "",
        "  queue: {capacity: 60, timeoutSeconds: 10}\n",
    );
    let up = Up::start(&cfg, port);
    up.wait_until(Duration::from_secs(20), |s| s["replicas"]["ready"] == 2);
    // 20 clients give up on a slow model.
    set_mode(&control, "all", "slow:3000");
    std::thread::scope(|sc| {
        for _ in 0..20 {
            sc.spawn(|| impatient(port, Duration::from_millis(300)));
        }
    });
    counters_settle(&up);
    // 50 clients give up while queued (no replica ready: all fail their probes).
    set_mode(&control, "all", "hang");
    up.wait_until(Duration::from_secs(5), |s| s["replicas"]["ready"] == 0);
    std::thread::scope(|sc| {
        for _ in 0..50 {
            sc.spawn(|| impatient(port, Duration::from_millis(300)));
        }
    });
    let s = up.status().unwrap();
    counters_settle(&up);
    assert!(proxy_counter(&s, "cancelled_total") >= 20, "{s:#}");
    // The queue is not left full: once replicas are back, requests are answered.
    set_mode(&control, "all", "ok");
    up.wait_until(Duration::from_secs(10), |s| s["replicas"]["ready"] == 2);
    let (code, body) = post(port, "/v2/models/m/infer", "{}");
    assert_eq!(code, 200, "{body}");
    counters_settle(&up);
    up.interrupt();
}

#[test]
fn a_full_queue_says_so_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port, control) = faulty(
        dir.path(),
        1,
        "",
        "",
        "  queue: {capacity: 2, timeoutSeconds: 10}\n",
    );
    set_mode(&control, "all", "hang");
    let up = Up::spawn(&cfg, port);
    up.wait_until(Duration::from_secs(10), |s| s["replicas"]["starting"] == 1);
    std::thread::scope(|sc| {
        for _ in 0..2 {
            sc.spawn(|| impatient(port, Duration::from_millis(1500)));
        }
        std::thread::sleep(Duration::from_millis(500));
        let asked = Instant::now();
        let (code, body) = post(port, "/v2/models/m/infer", "{}");
        assert_eq!(code, 503, "{body}");
        assert!(asked.elapsed() < Duration::from_secs(1));
        assert!(body.contains("2 requests are already waiting"), "{body}");
    });
    counters_settle(&up);
    up.interrupt();
}

#[test]
fn a_replica_answering_500s_gets_under_5_percent_of_traffic_after_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (up, control) = start(dir.path(), 3, "", "");
    let (bad, bad_port, _) = replicas(&up)[0];
    set_mode(&control, &bad_port.to_string(), "error");
    let port = up.port;
    let (first, later, report) = std::thread::scope(|sc| {
        let h = sc.spawn(|| load_any(port, "constant:300:4s"));
        std::thread::sleep(Duration::from_millis(1000));
        let first = replica_requests(&up.status().unwrap());
        std::thread::sleep(Duration::from_millis(3500));
        let later = replica_requests(&up.status().unwrap());
        (first, later, h.join().unwrap())
    });
    let diff: Vec<(u64, u64)> = later
        .iter()
        .map(|(id, n)| (*id, n - first.iter().find(|(i, _)| i == id).unwrap().1))
        .collect();
    let total: u64 = diff.iter().map(|d| d.1).sum();
    let to_bad = diff.iter().find(|d| d.0 == bad).unwrap().1;
    let share = to_bad as f64 / total as f64;
    eprintln!("after the first second: {to_bad} of {total} requests to the failing replica ({:.2}%); {report}", share * 100.0);
    assert!(total > 500, "{diff:?}");
    assert!(share < 0.05, "{to_bad} of {total}");
    let s = up.status().unwrap();
    assert!(proxy_counter(&s, "upstream_errors_total") >= 5, "{s:#}");
    assert!(proxy_counter(&s, "ejections_total") >= 1, "{s:#}");
    assert!(s["events"].to_string().contains("ejected for"), "{s:#}");
    let out = up.interrupt();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains(" 0 5xx from replicas"),
        "errors counted: {stdout}"
    );
}

/// Open-loop load to the fault replicas' path; the report line.
fn load_any(port: u16, pattern: &str) -> String {
    let o = Command::new(ebb())
        .args([
            "load",
            "--target",
            &format!("http://127.0.0.1:{port}/v2/models/m/infer"),
            "--pattern",
            pattern,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_stopped_or_hung_replica_is_taken_out_and_its_requests_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let (up, control) = start(dir.path(), 2, "", "");
    let list = replicas(&up);
    let (stopped, _, pid) = list[0];
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    // Requests stuck on it end with 504 after the upstream timeout, not never.
    let asked = Instant::now();
    let answers: Vec<u16> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|_| sc.spawn(|| post(up.port, "/v2/models/m/infer", "{}").0))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        answers.iter().all(|c| *c == 200 || *c == 504),
        "{answers:?}"
    );
    let s = up.wait_until(Duration::from_secs(2), |s| {
        replica_state(s, stopped) != "ready"
    });
    assert!(
        s["events"].to_string().contains("readiness probes"),
        "{s:#}"
    );
    // Meanwhile every request goes to the other replica, quickly.
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(post(up.port, "/v2/models/m/infer", "{}").0, 200);
        assert!(t.elapsed() < Duration::from_millis(500));
    }
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    up.wait_until(Duration::from_secs(5), |s| s["replicas"]["ready"] == 2);
    // A replica that hangs: its requests time out (504) and it leaves rotation.
    let (hung, hung_port, _) = list[1];
    set_mode(&control, &hung_port.to_string(), "hang");
    let asked = Instant::now();
    let answers: Vec<u16> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| sc.spawn(|| post(up.port, "/v2/models/m/infer", "{}").0))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(asked.elapsed() < Duration::from_secs(4));
    assert!(
        answers.iter().all(|c| *c == 200 || *c == 504),
        "{answers:?}"
    );
    let s = up.wait_until(Duration::from_secs(2), |s| {
        replica_state(s, hung) != "ready"
    });
    assert!(proxy_counter(&s, "upstream_timeouts_total") >= 1 || answers.iter().all(|c| *c == 200));
    set_mode(&control, &hung_port.to_string(), "ok");
    up.wait_until(Duration::from_secs(5), |s| s["replicas"]["ready"] == 2);
    counters_settle(&up);
    up.interrupt();
}

#[test]
fn replicas_unhealthy_for_long_are_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let (up, control) = start(dir.path(), 1, "", ", restartAfterSeconds: 1");
    let (id, port, _) = replicas(&up)[0];
    set_mode(&control, &port.to_string(), "hang");
    let s = up.wait_until(Duration::from_secs(5), |s| {
        s["events"].to_string().contains("restarting it")
    });
    assert!(proxy_counter(&s, "unhealthy_restarts_total") >= 1);
    set_mode(&control, &port.to_string(), "ok");
    up.wait_until(Duration::from_secs(10), |s| {
        s["replicas"]["list"][0]["id"] == id && s["replicas"]["ready"] == 1
    });
    up.interrupt();
}

#[test]
fn control_paths_and_ebb_endpoints_are_not_on_the_service_port() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _) = start(dir.path(), 1, ", denyPaths: [/internal]", "");
    let (code, body) = post(up.port, "/v2/repository/models/iris/unload", "");
    assert_eq!(code, 403, "{body}");
    assert_eq!(post(up.port, "/internal/x", "").0, 403);
    assert_eq!(post(up.port, "/internal", "").0, 403);
    assert_eq!(post(up.port, "/internalize", "").0, 200);
    // The service port forwards /ebb/status like any path: it is the replica's to answer.
    let (code, body) = get(up.port, "/ebb/status").unwrap();
    assert_eq!(code, 200);
    assert!(!body.contains("\"replicas\""), "{body}");
    // The admin port: read-only, with the status and the metrics.
    let (code, _) = exchange(
        up.admin,
        "POST /ebb/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 405);
    let (code, metrics) = get(up.admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("ebb_denied_total{service=\"faulty\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("ebb_ejections_total"), "{metrics}");
    let (code, all) = get(up.admin, "/ebb/status").unwrap();
    assert_eq!(code, 200);
    assert!(all.contains("\"services\""), "{all}");
    up.interrupt();
}

/// Sends a body of `total` bytes (chunked when `declare` is false) and returns the status
/// the proxy answered with and how many bytes it took.
fn upload(port: u16, total: u64, declare: bool) -> (u16, u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = if declare {
        format!("POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n")
    } else {
        "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".into()
    };
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0u64;
    while sent < total {
        let ok = if declare {
            s.write_all(&chunk).is_ok()
        } else {
            s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_ok()
                && s.write_all(&chunk).is_ok()
                && s.write_all(b"\r\n").is_ok()
        };
        if !ok {
            break;
        }
        sent += chunk.len() as u64;
    }
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, sent)
}

#[test]
fn big_bodies_are_refused_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _) = start(dir.path(), 1, ", maxBodyBytes: 1048576", "");
    let gib = 1u64 << 30;
    // Declared: refused before reading.
    let (code, _) = upload(up.port, gib, true);
    assert_eq!(code, 413);
    // Chunked: refused once the limit is passed; the rest is never held.
    let (code, sent) = upload(up.port, gib, false);
    assert_eq!(code, 413, "after {sent} bytes");
    let rss = peak_rss_mib(up.child.id());
    eprintln!("ebb up peak RSS after two 1 GiB upload attempts: {rss:.1} MiB");
    assert!(rss < 100.0, "peak RSS {rss:.1} MiB");
    // A body under the limit still goes through.
    let (code, _) = post(up.port, "/v2/models/m/infer", &"y".repeat(500_000));
    assert_eq!(code, 200);
    let s = up.status().unwrap();
    assert_eq!(proxy_counter(&s, "body_too_large_total"), 2);
    counters_settle(&up);
    up.interrupt();
}

#[test]
fn slow_and_idle_clients_are_closed_and_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _) = start(
        dir.path(),
        1,
        ", headerTimeoutSeconds: 1, idleTimeoutSeconds: 1",
        "",
    );
    // 300 slowloris connections (headers never finished) and 300 idle keep-alive ones.
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", up.port)).unwrap();
            s.write_all(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let mut idle: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", up.port)).unwrap();
            s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    // Others are served meanwhile.
    assert_eq!(post(up.port, "/v2/models/m/infer", "{}").0, 200);
    std::thread::sleep(Duration::from_millis(2500));
    let closed = |s: &mut TcpStream| {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    };
    let slow_closed = slow.iter_mut().map(closed).filter(|c| *c).count();
    let idle_closed = idle.iter_mut().map(closed).filter(|c| *c).count();
    assert_eq!(
        slow_closed, 300,
        "slowloris connections closed by the header timeout"
    );
    assert_eq!(
        idle_closed, 300,
        "idle keep-alive connections closed by the idle timeout"
    );
    let s = up.wait_until(Duration::from_secs(2), |s| {
        proxy_counter(s, "connections_open") == 0
    });
    assert!(proxy_counter(&s, "connections_total") >= 601);
    up.interrupt();
}

/// CPU seconds process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = text.rsplit(") ").next().unwrap();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[test]
fn out_of_file_descriptors_backs_off_and_keeps_serving() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port, _) = faulty(dir.path(), 1, ", maxConnections: 5000", "", "");
    let up = Up::spawn_with(&cfg, port, |cmd| unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 96,
                rlim_max: 96,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    });
    up.wait_until(Duration::from_secs(20), |s| s["replicas"]["ready"] == 1);
    // A keep-alive client already connected.
    let mut kept = TcpStream::connect(("127.0.0.1", port)).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ask = |s: &mut TcpStream| {
        s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        eprintln!("{text}");
        text.starts_with("HTTP/1.1 200")
    };
    assert!(ask(&mut kept));
    // Far more connections than descriptors.
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let pid = up.child.id();
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(pid) - before;
    eprintln!(
        "out of descriptors: {used:.3} CPU seconds in 2 s with {} waiting connections",
        flood.len()
    );
    assert!(used < 0.4, "the accept loop spins: {used:.2} CPU s in 2 s");
    assert!(ask(&mut kept), "an open connection keeps being served");
    drop(flood);
    let start = Instant::now();
    loop {
        if let Some((200, _)) = get(port, "/ready") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no recovery");
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = up.status().unwrap();
    assert!(proxy_counter(&s, "accept_errors_total") >= 1, "{s:#}");
    let events = s["events"].to_string();
    assert_eq!(
        events.matches("accept failed").count(),
        1,
        "logged once: {events}"
    );
    up.interrupt();
}

#[test]
fn shutdown_answers_every_accepted_request_and_stops_replicas_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port, control) = faulty(dir.path(), 10, "", "", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("--control,", "--ignore-sigterm, --control,");
    std::fs::write(&cfg, text).unwrap();
    set_mode(&control, "all", "slow:300");
    let up = Up::start(&cfg, port);
    up.wait_until(Duration::from_secs(20), |s| s["replicas"]["ready"] == 10);
    // Clients on new connections, each request answered or refused at connect, never cut off.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (answered, cut) = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16)
            .map(|_| {
                sc.spawn(|| {
                    let (mut answered, mut cut) = (0u64, 0u64);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        };
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let sent = s.write_all(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}").is_ok();
                        let mut text = String::new();
                        let _ = s.read_to_string(&mut text);
                        if text.starts_with("HTTP/1.1 ") {
                            answered += 1;
                        } else if sent {
                            cut += 1;
                        }
                    }
                    (answered, cut)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        let asked = Instant::now();
        let out = up.interrupt();
        let took = asked.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("shutdown took {took:?}\n{stdout}");
        // Ten replicas that ignore SIGTERM with a 1 s grace: stopped side by side.
        assert!(took < Duration::from_secs(5), "{took:?}");
        let totals = hs
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let counted: u64 = stdout
            .split("Summary")
            .nth(1)
            .and_then(|t| t.split("faulty: ").nth(1))
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert_eq!(
            counted, totals.0,
            "every request Ebb accepted was answered ({stdout})"
        );
        totals
    });
    eprintln!("{answered} answered, {cut} cut off before Ebb accepted them");
    assert!(answered > 50);
}

#[test]
fn an_ephemeral_port_is_reported_as_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _, _) = faulty(dir.path(), 1, "", "", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let listen = text
        .lines()
        .find(|l| l.contains("listen:"))
        .unwrap()
        .to_string();
    std::fs::write(&cfg, text.replace(&listen, "  listen: 127.0.0.1:0")).unwrap();
    let up = Up::spawn(&cfg, 0);
    up.wait_until(Duration::from_secs(20), |s| s["replicas"]["ready"] == 1);
    let out = up.interrupt();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.contains("serving on")).unwrap();
    assert!(!line.ends_with(":0"), "{line}");
}

/// Gives the fault service of `cfg` the SLO policy `slo` (a flow map) instead of its
/// concurrency target: the proxy then knows the replicas' slots and the SLO's latency.
fn scale_by_slo(cfg: &std::path::Path, slo: &str) {
    let text = std::fs::read_to_string(cfg).unwrap().replace(
        "concurrency: {targetPerReplica: 1000}",
        &format!("slo: {slo}"),
    );
    std::fs::write(cfg, text).unwrap();
}

/// The proxy counts the answers as their clients saw them against the SLO's latency (the SLO
/// model's attainment reached): fast answers are within it, slow ones and a replica's 500s
/// are misses (Ebb's own 5xx are counted the same way), and a client that left before the
/// latency says nothing, while one that waited past it missed it.
#[test]
fn answers_are_counted_against_the_slo_as_clients_see_them() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port, control) = faulty(dir.path(), 1, "", "", "");
    scale_by_slo(
        &cfg,
        "{latency: 500ms, attainment: 99%, slotsPerReplica: 4}",
    );
    let up = Up::start(&cfg, port);
    up.wait_until(Duration::from_secs(20), |s| s["replicas"]["ready"] == 1);
    let infer = || post(port, "/v2/models/m/infer", "{}").0;
    // Five fast answers: within.
    set_mode(&control, "all", "ok");
    assert_eq!((0..5).map(|_| infer()).collect::<Vec<_>>(), [200; 5]);
    // Two answered after 800 ms: misses.
    set_mode(&control, "all", "slow:800");
    assert_eq!([infer(), infer()], [200, 200]);
    // Before a 3 s answer, a client gone after 100 ms says nothing; one gone after 900 ms
    // missed.
    set_mode(&control, "all", "slow:3000");
    impatient(port, Duration::from_millis(100));
    impatient(port, Duration::from_millis(900));
    counters_settle(&up);
    // Two 500s from the replica: misses.
    set_mode(&control, "all", "error");
    assert_eq!([infer(), infer()], [500, 500]);
    let s = up.status().unwrap();
    let answers = &s["answers"];
    assert_eq!(answers["slo"]["latencySeconds"], 0.5, "{answers:#}");
    assert_eq!(answers["slo"]["within"], 5.0, "{answers:#}");
    assert_eq!(answers["slo"]["ended"], 10.0, "{answers:#}");
    assert_eq!(answers["good"], 7, "{answers:#}");
    assert_eq!(answers["failed"], 2, "{answers:#}");
    assert_eq!(answers["abandoned"], 2, "{answers:#}");
    up.interrupt();
}

/// A replica's requests in flight now.
fn replica_in_flight(s: &serde_json::Value, id: u64) -> u64 {
    replica(s, id).map_or(0, |r| r["inFlight"].as_u64().unwrap())
}

#[test]
fn requests_held_while_no_replica_is_ready_go_on_as_slots_free() {
    let dir = tempfile::tempdir().unwrap();
    // One proxy thread: two threads may each hand the same free slot on (see
    // `ServiceState::pick_with_room`).
    let (cfg, port, control) = faulty(dir.path(), 2, ", threads: 1", "", "");
    // One slot a replica, as the SLO says: what the proxy may hand each replica at once.
    scale_by_slo(&cfg, "{latency: 5s, attainment: 99%, slotsPerReplica: 1}");
    set_mode(&control, "all", "hang");
    let up = Up::spawn(&cfg, port);
    up.wait_until(Duration::from_secs(10), |s| s["replicas"]["starting"] == 2);
    let ids = replicas(&up);
    let ((first, first_port, _), (second, second_port, _)) = (ids[0], ids[1]);
    std::thread::scope(|sc| {
        let answers: Vec<_> = (0..6)
            .map(|_| sc.spawn(|| post(port, "/v2/models/m/infer", "{}").0))
            .collect();
        up.wait_until(Duration::from_secs(5), |s| s["waiting"] == 6);
        // The first replica turns ready: it is handed one request at a time, the rest held.
        set_mode(&control, &first_port.to_string(), "slow:300");
        up.wait_until(Duration::from_secs(5), |s| {
            replica_state(s, first) == "ready"
        });
        let watched = Instant::now();
        while watched.elapsed() < Duration::from_millis(600) {
            let s = up.status().unwrap();
            assert!(replica_in_flight(&s, first) <= 1, "{s}");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The second turns ready and takes its share of what is still held.
        set_mode(&control, &second_port.to_string(), "slow:300");
        for answer in answers {
            assert_eq!(answer.join().unwrap(), 200);
        }
    });
    let s = up.status().unwrap();
    let served: Vec<u64> = [first, second]
        .iter()
        .map(|id| replica(&s, *id).unwrap()["requests"].as_u64().unwrap())
        .collect();
    assert!(served[0] >= 2 && served[1] >= 1, "{served:?}: {s}");
    assert_eq!(s["waiting"], 0);
    counters_settle(&up);
    up.interrupt();
}
