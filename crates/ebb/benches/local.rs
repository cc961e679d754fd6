//! `ebb up` benchmarks with real processes on loopback:
//! 1. proxy overhead: the same demo-model replica called directly and through Ebb's proxy at
//!    1,000 requests/s (open loop), p50 and p99 compared;
//! 2. reaction time: from a load step to the scale-up decision, and to the new replica serving.
//!
//! Run: `cargo bench -p ebb --bench local`

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn overhead(rt: &tokio::runtime::Runtime) {
    let (child, port, admin, _dir) = up(r#"services:
- name: iris
  command: ["{ebb}", demo-model, --port, "{port}", --service-ms, "0", --concurrency, "256"]
  listen: 127.0.0.1:PORT
  policy: {minReplicas: 1, maxReplicas: 1, concurrency: {targetPerReplica: 1000}}
"#);
    let replica_port = status(admin).unwrap()["replicas"]["list"][0]["port"]
        .as_u64()
        .unwrap() as u16;
    let rates = vec![1000.0; 10];
    let path = "/v2/models/iris/infer";
    let body = ebb_local::load::V2_BODY;
    let direct: SocketAddr = format!("127.0.0.1:{replica_port}").parse().unwrap();
    let proxied: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Warm both paths, then alternate measurements.
    let _ = rt.block_on(ebb_local::load::run(direct, path, body, &[200.0; 2], 1));
    let _ = rt.block_on(ebb_local::load::run(proxied, path, body, &[200.0; 2], 1));
    let mut rows = Vec::new();
    for round in 0..2 {
        let d = rt
            .block_on(ebb_local::load::run(direct, path, body, &rates, 10 + round))
            .unwrap();
        let p = rt
            .block_on(ebb_local::load::run(
                proxied,
                path,
                body,
                &rates,
                20 + round,
            ))
            .unwrap();
        rows.push((d, p));
    }
    stop(child);
    println!(
        "proxy overhead at 1,000 req/s (10 s per run, open loop, demo model with 0 ms service):"
    );
    for (i, (d, p)) in rows.iter().enumerate() {
        println!(
            "  round {}: direct p50 {:.0} us p99 {:.0} us ({} ok, {} err) | via proxy p50 {:.0} us p99 {:.0} us ({} ok, {} err) | added p50 {:.0} us, p99 {:.0} us",
            i + 1,
            d.latency[0] * 1e6,
            d.latency[2] * 1e6,
            d.ok,
            d.errors,
            p.latency[0] * 1e6,
            p.latency[2] * 1e6,
            p.ok,
            p.errors,
            (p.latency[0] - d.latency[0]) * 1e6,
            (p.latency[2] - d.latency[2]) * 1e6
        );
    }
}

fn reaction(rt: &tokio::runtime::Runtime) {
    let (child, port, admin, _dir) = up(r#"services:
- name: iris
  command: ["{ebb}", demo-model, --port, "{port}", --service-ms, "50", --concurrency, "4"]
  listen: 127.0.0.1:PORT
  syncPeriodMs: 100
  policy:
    minReplicas: 1
    maxReplicas: 8
    concurrency: {metric: rps, targetPerReplica: 52, stableWindowSeconds: 10, panicWindowSeconds: 1, panicThresholdPercent: 150}
    behavior: {scaleUp: {policies: [{type: Percent, value: 400, periodSeconds: 1}]}}
"#);
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // 20 req/s for 5 s, then a step to 240 req/s.
    let mut rates = vec![20.0; 5];
    rates.extend(vec![240.0; 6]);
    let handle = std::thread::spawn({
        let rates = rates.clone();
        move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(ebb_local::load::run(
                target,
                "/v2/models/iris/infer",
                ebb_local::load::V2_BODY,
                &rates,
                3,
            ))
            .unwrap()
        }
    });
    let t0 = Instant::now();
    let step = t0 + Duration::from_secs(5);
    let decided = wait_for(admin, Duration::from_secs(15), |s| {
        s["decisions"].as_array().is_some_and(|d| {
            d.iter()
                .any(|x| x["desired"].as_u64() > x["current"].as_u64())
        })
    });
    let serving = wait_for(admin, Duration::from_secs(15), |s| {
        s["replicas"]["list"].as_array().is_some_and(|l| {
            l.iter().any(|r| {
                r["id"].as_u64() > Some(0)
                    && r["state"] == "ready"
                    && r["requests"].as_u64() > Some(0)
            })
        })
    });
    let report = handle.join().unwrap();
    let _ = rt;
    stop(child);
    println!("reaction to a step from 20 to 240 req/s (80 req/s per replica; sync 100 ms, 1 s panic window):");
    match (decided, serving) {
        (Some((d, s)), Some((v, _))) => {
            let first = &s["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["desired"].as_u64() > x["current"].as_u64())
                .unwrap()
                .clone();
            println!(
                "  step -> scale-up decision: {:.0} ms ({} -> {}: {})",
                d.saturating_duration_since(step).as_secs_f64() * 1e3,
                first["current"],
                first["desired"],
                first["reasons"].as_str().unwrap_or("")
            );
            println!(
                "  step -> a new replica serving requests: {:.0} ms",
                v.saturating_duration_since(step).as_secs_f64() * 1e3
            );
        }
        other => println!("  no scale-up observed: {other:?}"),
    }
    println!("  load: {}", report.summary());
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    overhead(&rt);
    reaction(&rt);
}
