//! One simulated week of a 100 requests/s trace with one Ebb policy (Ebb's built-in default,
//! deciding every second), as `ebb simulate` runs it. Prints the wall time and the rates.
//!
//! Run: `cargo bench -p ebb-sim --bench week`

use ebb_sim::compare::{compare, default_ebb_policy, EbbSpec};
use ebb_sim::{ClusterConfig, RunConfig, ServiceTime, Workload};
use std::time::Instant;

fn main() {
    let week = 7 * 24 * 3600;
    // A diurnal week around 100 req/s (40..160), per-second rates expanded to Poisson arrivals.
    let rates: Vec<f64> = (0..week)
        .map(|s| 100.0 + 60.0 * (2.0 * std::f64::consts::PI * s as f64 / 86_400.0).sin())
        .collect();
    let workload = Workload::Rate {
        interval: 1.0,
        rates,
    };
    let cfg = RunConfig {
        cluster: ClusterConfig::default(),
        service: ServiceTime::LogNormal {
            median: 0.1,
            sigma: 0.5,
        },
        slo: 0.5,
        bucket: 600.0,
        seed: 1,
        gpus_per_replica: 1.0,
    };
    let ebb = EbbSpec {
        name: "ebb".into(),
        policy: default_ebb_policy(cfg.slo, 0.999, cfg.cluster.slots, 1000),
        scrape_interval: 1.0,
        rate_window: 10.0,
        sync_period: 1.0,
        epoch_unix_ms: 0,
    };
    // Exactly what `ebb simulate --baselines none` runs: the Ebb policy, with the demand
    // pre-pass (for time to capacity) on the second core.
    let t0 = Instant::now();
    let c = compare(&workload, &cfg, Some(&ebb), &[], Some(1000), &|_, _| {});
    let wall = t0.elapsed().as_secs_f64();
    let r = &c.results[0];
    println!(
        "week_100rps: {} requests, {week} decisions (one a second)",
        r.requests
    );
    println!(
        "  wall time: {wall:.2} s (goal: under 10 s), {:.2} M simulated requests/s",
        r.requests as f64 / wall / 1e6
    );
    println!(
        "  result: SLO {:.3}%, replica-seconds {:.0} ({:.2}x the oracle), scale events {}",
        r.slo_attainment * 100.0,
        r.replica_seconds,
        r.replica_seconds / c.oracle_replica_seconds,
        r.scale_events
    );
}
