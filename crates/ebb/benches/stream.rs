//! Time to first token through `ebb up`'s proxy, against calling the replica directly, with
//! real processes on loopback. Two replicas:
//! 1. `ebb fault-replica` in `stream:4:20` mode, which sends its first event as soon as it has
//!    read the request: the first chunk's arrival isolates what the proxy adds;
//! 2. `ebb demo-llm` (10 ms engine steps): a streamed completion's first token, end to end,
//!    where the engine's step boundaries add up to a step of jitter to both paths alike.
//!
//! Requests alternate between the two paths, one at a time, each on a new connection.
//! Run: `cargo bench -p ebb --bench stream`

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// From sending `request` to the first `data:` event, and to the end of the body.
fn first_event(port: u16, request: &[u8]) -> (Duration, Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let sent = Instant::now();
    s.write_all(request).unwrap();
    let mut text = Vec::new();
    let mut first = None;
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        if first.is_none() && text.windows(5).any(|w| w == b"data:") {
            first = Some(sent.elapsed());
        }
        // The last chunk: a replica that keeps the connection open is not waited for.
        if text.ends_with(b"\r\n0\r\n\r\n") {
            break;
        }
    }
    (first.expect("a streamed event"), sent.elapsed())
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Alternates `n` requests between the replica and the proxy; prints p50/p99 of each.
fn compare(name: &str, command: &str, path_body: (&str, &str), n: usize) {
    let (child, port, admin, _dir) = up(&format!(
        r#"services:
- name: bench
  command: {command}
  listen: 127.0.0.1:PORT
  readiness: {{path: /health, periodMs: 50}}
  proxy: {{upstreamTimeoutSeconds: 30}}
  policy: {{minReplicas: 1, maxReplicas: 1, concurrency: {{targetPerReplica: 1000}}}}
"#
    ));
    let replica = status(admin).unwrap()["replicas"]["list"][0]["port"]
        .as_u64()
        .unwrap() as u16;
    let (path, body) = path_body;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..20 {
        first_event(replica, request.as_bytes());
        first_event(port, request.as_bytes());
    }
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for _ in 0..n {
        direct.push(first_event(replica, request.as_bytes()).0);
        proxied.push(first_event(port, request.as_bytes()).0);
    }
    direct.sort();
    proxied.sort();
    let row = |label: &str, v: &[Duration]| {
        println!(
            "{name:<28} {label:<8} p50 {:>7.3} ms   p90 {:>7.3} ms   p99 {:>7.3} ms",
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99)
        );
    };
    row("direct", &direct);
    row("proxied", &proxied);
    println!(
        "{name:<28} added    p50 {:>+7.3} ms   p90 {:>+7.3} ms   p99 {:>+7.3} ms",
        percentile(&proxied, 0.5) - percentile(&direct, 0.5),
        percentile(&proxied, 0.9) - percentile(&direct, 0.9),
        percentile(&proxied, 0.99) - percentile(&direct, 0.99)
    );
    stop(child);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = 400;
    println!("time to the first streamed event, {n} requests a path, alternating");
    let control = tempfile::tempdir().unwrap();
    std::fs::write(control.path().join("all"), "stream:4:20").unwrap();
    compare(
        "fault-replica stream:4:20",
        &format!(
            r#"["{{ebb}}", fault-replica, --port, "{{port}}", --control, "{}", --readiness-path, /health]"#,
            control.path().display()
        ),
        ("/v1/completions", "{}"),
        n,
    );
    compare(
        "demo-llm (10 ms steps)",
        r#"["{ebb}", demo-llm, --port, "{port}"]"#,
        (
            "/v1/completions",
            r#"{"prompt": "a short prompt of eight words for the engine", "max_tokens": 4, "stream": true}"#,
        ),
        n,
    );
}
