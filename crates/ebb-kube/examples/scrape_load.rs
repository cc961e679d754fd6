//! What the controller's pod scrapes cost: `sources::scrape_pods` (the code an Autoscaler's
//! `podScrape` source runs every second when it feeds the SLO) over N pods on loopback,
//! each its own address (127.0.x.y, so each is its own keep-alive connection, as pods are),
//! serving a metrics page the size of MLServer's or vLLM's.
//!
//! The pods are served by a child process (this program with `--serve`), so the CPU time
//! measured is the scraper's alone: per round, wall time and the scraping process's CPU
//! (user + system, from /proc/self/stat). The server listens on 0.0.0.0 (every 127.x.y.z
//! reaches it) while the benchmark runs.
//!
//! `cargo run --release -p ebb-kube --example scrape_load -- [PODS...]` (default 100 1000
//! 5000); `EBB_SCRAPE_ROUNDS` (default 10) rounds each, one a second as the controller polls.

use ebb_kube::crd::{PodScrapeSource, TrafficMetrics};
use ebb_kube::sources::{self, PodEndpoint};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A page with MLServer's request counters and gauge and `histograms` latency histograms of
/// 31 buckets: one is MLServer's size, a dozen vLLM's.
fn page(histograms: usize) -> String {
    let mut p = String::new();
    p.push_str("# TYPE model_infer_request_total counter\nmodel_infer_request_total{model=\"m\",version=\"1\"} 123456\n");
    p.push_str("# TYPE model_infer_request_success_total counter\nmodel_infer_request_success_total{model=\"m\",version=\"1\"} 123450\n");
    p.push_str("# TYPE model_infer_request_pending gauge\nmodel_infer_request_pending{model=\"m\",version=\"1\"} 3\n");
    for h in 0..histograms {
        p.push_str(&format!("# TYPE latency_{h}_seconds histogram\n"));
        for b in 0..30 {
            let le = 0.001 * 1.5f64.powi(b);
            p.push_str(&format!(
                "latency_{h}_seconds_bucket{{model_name=\"meta-llama/Llama-3.1-8B-Instruct\",le=\"{le:.6}\"}} {}\n",
                1000 * (b + 1)
            ));
        }
        p.push_str(&format!("latency_{h}_seconds_bucket{{model_name=\"meta-llama/Llama-3.1-8B-Instruct\",le=\"+Inf\"}} 31000\nlatency_{h}_seconds_sum{{model_name=\"meta-llama/Llama-3.1-8B-Instruct\"}} 1234.5\nlatency_{h}_seconds_count{{model_name=\"meta-llama/Llama-3.1-8B-Instruct\"}} 31000\n"));
    }
    p
}

/// Serves `body` to every connection on `port` (any 127.x.y.z), keep-alive, until killed.
async fn serve(port: u16, body: String) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response: &'static [u8] = Box::leak(response.into_bytes().into_boxed_slice());
    println!("ready");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.is_empty() && write.write_all(response).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// This process's CPU seconds so far (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The source an SLO fed by a pod scrape names: MLServer's request counters and gauge.
fn traffic_source(port: u16) -> PodScrapeSource {
    PodScrapeSource {
        port,
        traffic: Some(TrafficMetrics {
            arrivals: Some("model_infer_request_total".into()),
            completions: Some("model_infer_request_success_total".into()),
            in_flight: vec!["model_infer_request_pending".into()],
        }),
        ..Default::default()
    }
}

async fn measure(src: &PodScrapeSource, pods: usize, rounds: usize) {
    let reads = if src.traffic.is_some() {
        "its traffic counters"
    } else {
        "the whole page"
    };
    let endpoints: Vec<PodEndpoint> = (0..pods)
        .map(|i| PodEndpoint {
            name: format!("pod-{i}"),
            ip: Some(format!("127.0.{}.{}", 1 + i / 250, 1 + i % 250)),
        })
        .collect();
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut failed = 0;
    for round in 0..rounds {
        let (cpu, begun) = (cpu_seconds(), Instant::now());
        let scrapes = sources::scrape_pods(src, &endpoints, Duration::from_secs(2)).await;
        let wall = begun.elapsed().as_secs_f64();
        // A scrape that fails (its 2 s timeout passed) is what the controller would see: the
        // pod gives no value that pass.
        failed += scrapes.iter().filter(|(_, r)| r.is_err()).count();
        // The first round opens every connection; the rest reuse them, as the controller does.
        if round > 0 {
            walls.push(wall);
            cpus.push(cpu_seconds() - cpu);
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(begun.elapsed())).await;
    }
    walls.sort_by(f64::total_cmp);
    let cpu_mean = cpus.iter().sum::<f64>() / cpus.len() as f64;
    println!(
        "| {pods} | {reads} | {:.1} | {:.1} | {:.0} | {:.2} | {failed} of {} |",
        quantile(&walls, 0.5) * 1000.0,
        quantile(&walls, 0.99) * 1000.0,
        cpu_mean * 1000.0,
        cpu_mean,
        pods * rounds,
    );
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        let port = args[1].parse()?;
        let histograms = args[2].parse()?;
        // Gone with the measuring process: its end closes our stdin.
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        return serve(port, page(histograms)).await;
    }
    let rounds: usize = std::env::var("EBB_SCRAPE_ROUNDS").map_or(Ok(10), |v| v.parse())?;
    let counts: Vec<usize> = if args.is_empty() {
        vec![100, 1000, 5000]
    } else {
        args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    for (kind, histograms) in [("MLServer-sized", 1usize), ("vLLM-sized", 12)] {
        let size = page(histograms).len();
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--serve", &port.to_string(), &histograms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut ready = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut ready)?;
        println!(
            "\n{kind} page ({:.1} KiB), {rounds} rounds a second apart:\n",
            size as f64 / 1024.0
        );
        println!("| pods | reads | round p50 (ms) | round p99 (ms) | CPU per round (ms) | cores at one round a second | scrapes failed |");
        println!("|---:|---|---:|---:|---:|---:|---:|");
        std::io::stdout().flush()?;
        let whole = PodScrapeSource {
            port,
            ..Default::default()
        };
        for &pods in &counts {
            measure(&traffic_source(port), pods, rounds).await;
            measure(&whole, pods, rounds).await;
        }
        child.kill()?;
        child.wait()?;
    }
    Ok(())
}
