//! `ebb demo-llm` as a real process on loopback: OpenAI-shaped answers streamed token by token,
//! vLLM's metric names, requests that wait while the KV cache is full, a request whose client
//! left aborted; and its token stream passing through `ebb up`'s proxy as it is generated.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `ebb demo-llm` on a free port, killed when dropped.
struct Engine {
    child: Child,
    port: u16,
}

impl Engine {
    fn start(args: &[&str]) -> Engine {
        let port = free_port();
        let child = Command::new(ebb())
            .args(["demo-llm", "--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !answers_health(port) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "demo-llm did not answer its health check"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Engine { child, port }
    }

    /// A metric's value on `/metrics`, by the sample's name with its labels.
    fn metric(&self, series: &str) -> f64 {
        let text = http(
            self.port,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an engine answers `GET /health` on `port`. A bare connect is no proof that it
/// listens: a connect to a free loopback port in the ephemeral range can succeed by
/// connecting to itself (CI once saw the next connect refused right after such a probe).
fn answers_health(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let request = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut answer = [0u8; 12];
    s.write_all(request.as_bytes()).is_ok()
        && s.read_exact(&mut answer).is_ok()
        && answer.starts_with(b"HTTP/1.1 200")
}

fn http(port: u16, raw: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

fn completion_request(prompt_words: usize, max_tokens: u32, stream: bool) -> String {
    let prompt = vec!["word"; prompt_words].join(" ");
    let body =
        format!(r#"{{"prompt": "{prompt}", "max_tokens": {max_tokens}, "stream": {stream}}}"#);
    format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A streamed completion as the client saw it: when each event came, and the whole text.
fn stream_events(port: u16, request: &str, leave_after: Option<usize>) -> (Vec<Duration>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let sent = Instant::now();
    s.write_all(request.as_bytes()).unwrap();
    let (mut times, mut text) = (Vec::new(), String::new());
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        while times.len() < text.matches("data: {").count() {
            times.push(sent.elapsed());
        }
        if text.contains("data: [DONE]") || leave_after.is_some_and(|k| times.len() >= k) {
            break;
        }
    }
    (times, text)
}

const LABELS: &str = "{model_name=\"demo\",engine=\"0\"}";

#[test]
fn tokens_stream_as_they_are_generated_and_vllm_metrics_count_them() {
    let e = Engine::start(&["--step-ms", "20"]);
    let (times, text) = stream_events(e.port, &completion_request(30, 10, true), None);
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    // Ten token events and the closing one; each decode step takes 20 ms and a bit.
    assert_eq!(times.len(), 11, "{text}");
    let (first, tenth) = (times[0], times[9]);
    eprintln!("first token after {first:?}, tenth after {tenth:?}");
    assert!(tenth - first >= Duration::from_millis(9 * 20), "{times:?}");
    assert!(first < Duration::from_millis(150), "{times:?}");
    // A whole answer: OpenAI's shape with usage.
    let whole = http(e.port, &completion_request(7, 3, false));
    let body: serde_json::Value =
        serde_json::from_str(whole.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["usage"]["prompt_tokens"], 7);
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(
        e.metric(&format!("vllm:generation_tokens_total{LABELS}")),
        13.0
    );
    assert_eq!(e.metric(&format!("vllm:prompt_tokens_total{LABELS}")), 37.0);
    assert_eq!(
        e.metric(&format!("vllm:time_to_first_token_seconds_count{LABELS}")),
        2.0
    );
    assert_eq!(
        e.metric(&format!("vllm:inter_token_latency_seconds_count{LABELS}")),
        11.0
    );
    assert_eq!(
        e.metric("vllm:request_success_total{model_name=\"demo\",engine=\"0\",finished_reason=\"length\"}"),
        2.0
    );
    // Each request was scheduled once: its queue time counted once.
    assert_eq!(
        e.metric(&format!("vllm:request_queue_time_seconds_count{LABELS}")),
        2.0
    );
    assert_eq!(e.metric(&format!("vllm:num_requests_running{LABELS}")), 0.0);
    assert_eq!(e.metric(&format!("vllm:kv_cache_usage_perc{LABELS}")), 0.0);
}

#[test]
fn requests_wait_while_the_kv_cache_is_full() {
    // 8 blocks of 16 tokens: a 100-word prompt takes 7 at admission, so one runs at a time.
    let e = Engine::start(&["--kv-blocks", "8", "--step-ms", "20"]);
    let port = e.port;
    let texts = std::thread::scope(|sc| {
        let clients: Vec<_> = (0..3)
            .map(|_| sc.spawn(move || http(port, &completion_request(100, 20, false))))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let waiting = e.metric(&format!("vllm:num_requests_waiting{LABELS}"));
        let running = e.metric(&format!("vllm:num_requests_running{LABELS}"));
        let kv = e.metric(&format!("vllm:kv_cache_usage_perc{LABELS}"));
        eprintln!("running {running}, waiting {waiting}, KV {kv}");
        assert_eq!(running, 1.0);
        assert_eq!(waiting, 2.0);
        assert!(kv >= 0.875, "{kv}");
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    for t in texts {
        assert!(t.starts_with("HTTP/1.1 200"), "{t}");
        assert!(t.contains("\"completion_tokens\":20"), "{t}");
    }
    assert_eq!(e.metric(&format!("vllm:kv_cache_usage_perc{LABELS}")), 0.0);
}

#[test]
fn a_client_that_leaves_aborts_its_request() {
    let e = Engine::start(&["--step-ms", "20"]);
    let (times, _) = stream_events(e.port, &completion_request(10, 5000, true), Some(2));
    assert_eq!(times.len(), 2);
    let start = Instant::now();
    while e.metric(&format!("vllm:num_requests_running{LABELS}")) != 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the request kept running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(e.metric(&format!("vllm:kv_cache_usage_perc{LABELS}")), 0.0);
    // Refusals say why, in vLLM's error shape.
    let too_long = http(e.port, &completion_request(10, 100_000, false));
    assert!(too_long.starts_with("HTTP/1.1 400"), "{too_long}");
    assert!(too_long.contains("do not fit the KV cache"), "{too_long}");
}

/// `ebb up` with one service of demo-llm replicas (`args`, quoted, after its port) and `rest`
/// of the service's lines (policy and settings); its listen port.
fn up_llm(dir: &std::path::Path, args: &str, rest: &str) -> (Up, u16) {
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.join("llm.yaml");
    let text = format!(
        "admin: 127.0.0.1:{admin}
services:
- name: llm
  command: [\"{{ebb}}\", demo-llm, --port, \"{{port}}\", {args}]
  listen: 127.0.0.1:{port}
  readiness: {{path: /health, periodMs: 50}}
{rest}"
    );
    std::fs::write(&cfg, text).unwrap();
    (Up::start(&cfg, port), port)
}

#[test]
fn a_token_stream_passes_through_ebb_up_as_it_is_generated() {
    let dir = tempfile::tempdir().unwrap();
    let (up, port) = up_llm(
        dir.path(),
        r#""--step-ms", "20""#,
        "  policy: {minReplicas: 1, maxReplicas: 1, concurrency: {targetPerReplica: 8}}\n",
    );
    let (times, text) = stream_events(port, &completion_request(30, 10, true), None);
    assert!(text.contains("data: [DONE]"), "{text}");
    assert_eq!(times.len(), 11, "{text}");
    assert!(
        times[9] - times[0] >= Duration::from_millis(9 * 20),
        "{times:?}"
    );
    let s = up.status().unwrap();
    assert_eq!(s["errors"], 0, "{s:#}");
    up.interrupt();
}

/// An `engine: vllm` block through `ebb up`: the replicas' own `/metrics` are scraped by
/// vLLM's names, and requests waiting for a full KV cache start more replicas.
#[test]
fn ebb_up_scales_on_the_engines_waiting_requests() {
    let dir = tempfile::tempdir().unwrap();
    // 8 KV blocks: one 100-word request runs at a time, the others wait in the engine.
    let (up, port) = up_llm(
        dir.path(),
        r#""--kv-blocks", "8", "--step-ms", "20""#,
        "  syncPeriodMs: 250
  proxy: {upstreamTimeoutSeconds: 60}
  policy:
    minReplicas: 1
    maxReplicas: 3
    engine: {kind: vllm, waitingPerReplica: 1}
    behavior: {scaleUp: {policies: [{type: Pods, value: 4, periodSeconds: 1}]}}
",
    );
    let answers = std::thread::scope(|sc| {
        // Eight that fit the cache one at a time (100 prompt + 20 output tokens of 128), about
        // 0.45 s each: seven wait at first.
        let clients: Vec<_> = (0..8)
            .map(|_| sc.spawn(move || http(port, &completion_request(100, 20, false))))
            .collect();
        let s = up.wait_until(Duration::from_secs(15), |s| {
            s["replicas"]["ready"].as_u64().unwrap_or(0) >= 2
        });
        let decisions = s["decisions"].to_string();
        eprintln!("{decisions}");
        assert!(decisions.contains("engine.waiting"), "{decisions}");
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    for a in answers {
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    }
    up.interrupt();
}

/// Two services as the prefill and decode pools of one disaggregated server, decided together:
/// prompts queue at the prefill replicas (one fits the KV cache at a time), the prefill pool
/// grows on its waiting requests, and the ratio guard grows the decode pool with it (its own
/// policy asks for nothing: no request reaches it here; the router that would send them is
/// not Ebb's).
#[test]
fn ebb_up_scales_two_pools_together_through_the_ratio_guard() {
    let dir = tempfile::tempdir().unwrap();
    let (prefill, decode, admin) = (free_port(), free_port(), free_port());
    let cfg = dir.path().join("pools.yaml");
    let service = |name: &str, port: u16, role: &str, policy: &str| {
        format!(
            "- name: {name}
  command: [\"{{ebb}}\", demo-llm, --port, \"{{port}}\", --role, {role}, --kv-blocks, \"8\", --step-ms, \"20\", --prefill-us-per-token, \"1000\"]
  listen: 127.0.0.1:{port}
  readiness: {{path: /health, periodMs: 50}}
  syncPeriodMs: 250
  proxy: {{upstreamTimeoutSeconds: 60}}
  policy: {policy}
"
        )
    };
    let text = format!(
        "admin: 127.0.0.1:{admin}\nservices:\n{}{}pools:\n- {{prefill: prefill, decode: decode, ratio: {{min: 1}}}}\n",
        service(
            "prefill",
            prefill,
            "prefill",
            "{minReplicas: 1, maxReplicas: 3, engine: {kind: vllm, waitingPerReplica: 1}, behavior: {scaleUp: {policies: [{type: Pods, value: 4, periodSeconds: 1}]}}}"
        ),
        service(
            "decode",
            decode,
            "decode",
            "{minReplicas: 1, maxReplicas: 4, engine: {kind: vllm, kvCacheUtilization: 90%}}"
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let up = Up::start(&cfg, prefill);
    let answers = std::thread::scope(|sc| {
        // Eight clients, five prompts each of 100 words: 120 ms of prefill apiece, one at a
        // time per replica, so seven wait at first.
        let clients: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(move || {
                    (0..5)
                        .map(|_| http(prefill, &completion_request(100, 8, false)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let s = up.wait_until(Duration::from_secs(20), |s| {
            s["replicas"]["ready"].as_u64().unwrap_or(0) >= 2
        });
        assert!(
            s["decisions"].to_string().contains("engine.waiting"),
            "{s:#}"
        );
        let start = Instant::now();
        let d = loop {
            let d = up.status_of("decode").expect("decode's status");
            if d["replicas"]["ready"].as_u64().unwrap_or(0) >= 2 {
                break d;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "decode stayed: {d:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let decisions = d["decisions"].to_string();
        assert!(
            decisions.contains("decode pool raised from 1 to"),
            "{decisions}"
        );
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(answers.len(), 40);
    for a in answers {
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
        // A prefill replica answers with the first token only.
        assert!(a.contains("\"completion_tokens\":1"), "{a}");
    }
    up.interrupt();
}

/// A decode replica takes the prompt as computed: 100 prompt words with a prefill of 1 ms a
/// token (100 ms) come back from a decode replica in a few decode steps.
#[test]
fn a_decode_replica_skips_the_prefill() {
    let slow = ["--prefill-us-per-token", "1000", "--step-ms", "5"];
    let whole = Engine::start(&slow);
    let decode = Engine::start(&[&slow[..], &["--role", "decode"]].concat());
    let time = |port: u16| {
        let t = Instant::now();
        let a = http(port, &completion_request(100, 4, false));
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
        t.elapsed()
    };
    let (w, d) = (time(whole.port), time(decode.port));
    assert!(w >= Duration::from_millis(100), "{w:?}");
    assert!(d < Duration::from_millis(80), "{d:?} against {w:?}");
}
