//! A user's own traffic, from their Prometheus, into `ebb simulate` and `ebb tune`: the
//! README's `curl` command against a real Prometheus server (Debian's `prometheus`, started by
//! `scripts/test-services.sh`) that scrapes a request counter this test serves. Ignored by a
//! plain `cargo test`; run with `--include-ignored` (as `.ci/run` does), where a missing
//! server is a failure.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Requests per second the served counter grows by.
const RATE: f64 = 20.0;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start scripts/test-services.sh start DIR; source DIR/env")
    })
}

/// Serves a request counter that grows by [`RATE`] a second on the port Prometheus scrapes.
fn serve_counter(port: &str) {
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).expect("exporter port");
    let start = Instant::now();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let total = RATE * start.elapsed().as_secs_f64();
            let body = format!(
                "# TYPE ebb_export_requests_total counter\nebb_export_requests_total{{pod=\"a\"}} {}\nebb_export_requests_total{{pod=\"b\"}} {}\n",
                total / 4.0,
                total * 3.0 / 4.0
            );
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
}

/// `curl -sG URL/api/v1/PATH --data-urlencode ARG...`, as the README has it; the answer.
fn curl(url: &str, path: &str, args: &[String], out: &Path) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sfG", &format!("{url}/api/v1/{path}")]);
    for a in args {
        cmd.args(["--data-urlencode", a]);
    }
    let status = cmd.arg("-o").arg(out).status().expect("run curl");
    assert!(status.success(), "curl {path} failed: {status}");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
#[ignore = "needs Prometheus and Redis: scripts/test-services.sh start DIR; source DIR/env; then cargo test -- --include-ignored"]
fn recorded_traffic_replays_saved_by_curl_or_fetched_by_ebb() {
    let url = env("EBB_TEST_PROMETHEUS_URL");
    serve_counter(&env("EBB_TEST_EXPORTER_PORT"));
    let dir = tempfile::tempdir().unwrap();
    let answer = dir.path().join("traffic.json");
    // Per pod, not summed: the reader adds the series up. Wait for ten seconds of scraped
    // rates (Prometheus scrapes every second).
    let query = "rate(ebb_export_requests_total[3s])";
    let started = now();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let end = now();
        if end >= started + 14 {
            curl(
                &url,
                "query_range",
                &[
                    format!("query={query}"),
                    format!("start={}", end - 10),
                    format!("end={end}"),
                    "step=1s".into(),
                ],
                &answer,
            );
            let text = std::fs::read_to_string(&answer).unwrap();
            if text.matches("],[").count() >= 18 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never held the counter's rate"
        );
    }
    // Saved by curl, read with --trace.
    let saved = simulate(
        &["--trace", answer.to_str().unwrap()],
        &dir.path().join("saved"),
    );
    // Fetched by Ebb itself, kept in the report folder for --trace.
    let report = dir.path().join("fetched");
    let fetched = simulate(
        &[
            "--prometheus",
            &url,
            "--query",
            query,
            "--since",
            "10s",
            "--step",
            "1s",
        ],
        &report,
    );
    assert!(report.join("traffic.json").is_file());
    // Both pods' rates added up: 20 req/s over the ten seconds (Poisson arrivals drawn at
    // that rate: about 200 requests, within a quarter of it).
    for (rate, seconds) in [saved, fetched] {
        assert!((rate - RATE).abs() < RATE / 4.0, "replayed at {rate} req/s");
        assert!(seconds >= 9.0, "replayed {seconds} s");
    }
}

/// Runs `ebb simulate` with `args` and no baselines: Ebb's arrival rate and duration.
fn simulate(args: &[&str], report: &Path) -> (f64, f64) {
    let o = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .arg("simulate")
        .args(args)
        .args(["--baselines", "none", "--report"])
        .arg(report)
        .output()
        .expect("run ebb");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let summary = std::fs::read_to_string(report.join("summary.csv")).unwrap();
    let mut lines = summary.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let ebb: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| -> f64 {
        let i = header.iter().position(|h| *h == name).unwrap();
        ebb[i].parse().unwrap()
    };
    (column("arrival_rate"), column("duration"))
}
