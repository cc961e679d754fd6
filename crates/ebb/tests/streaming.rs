//! Bodies that stream through `ebb up`'s proxy, with real processes on loopback: a replica's
//! answer reaches the client chunk by chunk as it is sent (a token stream), its request stays
//! counted until the last byte, a shutdown waits for open streams, and request bodies larger
//! than the retry buffer pass through without being held. Replicas are `ebb fault-replica`
//! processes in their `stream:N:MS` modes.

mod common;

use common::faulty::*;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A streamed exchange as the client saw it.
struct Seen {
    /// When the first event arrived, after the request was sent.
    first_event: Option<Duration>,
    /// When the body's last chunk (the zero-length one) arrived.
    ended: Option<Duration>,
    /// Events received.
    events: usize,
    /// Everything received.
    text: String,
}

/// Sends a GET and reads the streamed answer as it comes, until the body ends, the
/// connection closes or `leave_after` events have arrived (then the client hangs up).
fn watch_stream(port: u16, leave_after: Option<usize>) -> Seen {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let sent = Instant::now();
    s.write_all(b"GET /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut seen = Seen {
        first_event: None,
        ended: None,
        events: 0,
        text: String::new(),
    };
    let mut buf = [0u8; 4096];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen.text.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.events = seen.text.matches("data: token").count();
        if seen.events > 0 && seen.first_event.is_none() {
            seen.first_event = Some(sent.elapsed());
        }
        if seen.text.ends_with("\r\n0\r\n\r\n") {
            seen.ended = Some(sent.elapsed());
            break;
        }
        if leave_after.is_some_and(|k| seen.events >= k) {
            break;
        }
    }
    seen
}

#[test]
fn answers_stream_through_as_they_come_and_count_until_their_last_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (up, control) = start(dir.path(), 1, "", "");
    // Ten events 150 ms apart: the whole answer takes 1.35 s.
    set_mode(&control, "all", "stream:10:150");
    let (seen, mid) = std::thread::scope(|sc| {
        let client = sc.spawn(|| watch_stream(up.port, None));
        std::thread::sleep(Duration::from_millis(700));
        let mid = up.status().unwrap();
        (client.join().unwrap(), mid)
    });
    let (first, ended) = (seen.first_event.unwrap(), seen.ended.unwrap());
    eprintln!("first event after {first:?}, last byte after {ended:?}");
    assert_eq!(seen.events, 10, "{}", seen.text);
    assert!(
        first < Duration::from_millis(500),
        "the first event waited for the rest: {first:?}"
    );
    assert!(ended >= Duration::from_millis(1300), "{ended:?}");
    // Half-way through, the request is in flight on the service and on its replica.
    assert_eq!(mid["inFlight"], 1, "{mid:#}");
    assert_eq!(mid["replicas"]["list"][0]["inFlight"], 1, "{mid:#}");
    counters_settle(&up);
    let s = up.status().unwrap();
    assert_eq!(proxy_counter(&s, "cancelled_total"), 0, "{s:#}");
    let labels = format!("{{service=\"{}\"}}", up.name);
    let firsts = up.metric(&format!("ebb_time_to_first_byte_seconds_count{labels}"));
    let gaps = up.metric(&format!("ebb_inter_chunk_seconds_count{labels}"));
    let within_100ms = up.metric(&format!(
        "ebb_inter_chunk_seconds_bucket{{service=\"{}\",le=\"0.1\"}}",
        up.name
    ));
    assert_eq!(firsts, 1.0);
    assert!(gaps >= 9.0, "{gaps} gaps for 10 events");
    assert_eq!(within_100ms, 0.0, "every gap was 150 ms");
    up.interrupt();
}

#[test]
fn a_client_that_leaves_mid_stream_leaves_no_count_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (up, control) = start(dir.path(), 1, "", "");
    set_mode(&control, "all", "stream:100:100");
    let seen = watch_stream(up.port, Some(2));
    assert!(seen.ended.is_none());
    counters_settle(&up);
    let s = up.status().unwrap();
    assert_eq!(proxy_counter(&s, "cancelled_total"), 1, "{s:#}");
    // The replica's connection was closed, not left streaming: the next request is served.
    set_mode(&control, "all", "ok");
    let (code, body) = post(up.port, "/v2/models/m/infer", "{}");
    assert_eq!(code, 200, "{body}");
    up.interrupt();
}

#[test]
fn a_replica_that_breaks_mid_stream_is_counted_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let (up, control) = start(dir.path(), 1, "", "");
    set_mode(&control, "all", "stream-break:3:50");
    let seen = watch_stream(up.port, None);
    assert_eq!(seen.events, 3, "{}", seen.text);
    assert!(
        seen.ended.is_none(),
        "a broken stream must not look complete"
    );
    counters_settle(&up);
    let s = up.status().unwrap();
    assert_eq!(proxy_counter(&s, "answers_broken_total"), 1, "{s:#}");
    assert_eq!(proxy_counter(&s, "cancelled_total"), 0, "{s:#}");
    up.interrupt();
}

#[test]
fn a_shutdown_waits_for_an_open_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (up, control) = start(dir.path(), 1, "", "");
    set_mode(&control, "all", "stream:15:100");
    let port = up.port;
    let seen = std::thread::scope(|sc| {
        let client = sc.spawn(move || watch_stream(port, None));
        std::thread::sleep(Duration::from_millis(400));
        let out = up.interrupt();
        assert!(out.status.success(), "{out:?}");
        client.join().unwrap()
    });
    assert_eq!(seen.events, 15, "{}", seen.text);
    assert!(seen.ended.is_some(), "the stream was cut at shutdown");
}

#[test]
fn large_request_bodies_stream_through_and_a_stalled_one_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _) = start(
        dir.path(),
        1,
        ", retryBodyBytes: 65536, bodyTimeoutSeconds: 1",
        "",
    );
    let pid = up.child.id();
    let before = peak_rss_mib(pid);
    // 48 MiB sent in 64 KiB writes: the proxy holds at most a retry buffer of it.
    let total: usize = 48 << 20;
    let mut s = TcpStream::connect(("127.0.0.1", up.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {total}\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'x'; 64 << 10];
    for _ in 0..total / chunk.len() {
        s.write_all(&chunk).unwrap();
    }
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(&format!("\"received\":{total}")), "{text}");
    let after = peak_rss_mib(pid);
    eprintln!("peak RSS {before:.1} MiB before, {after:.1} MiB after a 48 MiB upload");
    assert!(after - before < 24.0, "{before:.1} -> {after:.1} MiB");
    // A client that stops sending its body half-way is answered 408 and counted.
    let started = Instant::now();
    let (code, _) = exchange(
        up.port,
        "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"half",
        Duration::from_secs(5),
    )
    .expect("an answer");
    assert_eq!(code, 408);
    assert!(started.elapsed() < Duration::from_secs(3));
    counters_settle(&up);
    let s = up.status().unwrap();
    assert_eq!(proxy_counter(&s, "request_body_timeouts_total"), 1, "{s:#}");
    up.interrupt();
}
