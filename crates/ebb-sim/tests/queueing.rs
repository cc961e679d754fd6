//! The simulator against queueing theory: an M/M/c queue's mean wait matches Erlang C, and
//! Little's law holds.

use ebb_sim::autoscaler::Schedule;
use ebb_sim::{run_policy, ClusterConfig, ColdStart, RunConfig, ServiceTime, Workload};

/// Erlang C: the probability an arrival waits in an M/M/c queue with offered load `a = lambda/mu`.
fn erlang_c(c: u32, a: f64) -> f64 {
    let mut sum = 0.0;
    let mut term = 1.0;
    for k in 0..c {
        if k > 0 {
            term *= a / f64::from(k);
        }
        sum += term;
    }
    let last = term * a / f64::from(c) / (1.0 - a / f64::from(c));
    last / (sum + last)
}

fn mmc(c: u32, lambda: f64, mean_service: f64, hours: f64, seed: u64) -> ebb_sim::PolicyResult {
    let cfg = RunConfig {
        cluster: ClusterConfig {
            slots: c,
            queue_per_replica: 1_000_000,
            activator_queue: 1_000_000,
            timeout: 1e9,
            cold_start: ColdStart::Fixed(0.0),
            max_replicas: None,
        },
        service: ServiceTime::Exponential { mean: mean_service },
        slo: 1.0,
        bucket: 60.0,
        seed,
        gpus_per_replica: 1.0,
    };
    let seconds = (hours * 3600.0) as usize;
    let workload = Workload::Rate {
        interval: 1.0,
        rates: vec![lambda; seconds],
    };
    // One replica with c slots and one FIFO queue: exactly M/M/c.
    let mut fixed = Schedule::fixed("fixed", 1);
    run_policy(&workload, &cfg, &mut fixed, &mut |_| {})
}

#[test]
fn mean_wait_matches_erlang_c() {
    for (c, lambda, mean) in [(4u32, 32.0, 0.1), (1, 7.0, 0.1), (8, 60.0, 0.1)] {
        let r = mmc(c, lambda, mean, 4.0, 11);
        let mu = 1.0 / mean;
        let expected_wait = erlang_c(c, lambda / mu) / (f64::from(c) * mu - lambda);
        let measured_wait = r.mean_latency - mean;
        let error = (measured_wait / expected_wait - 1.0).abs();
        eprintln!("M/M/{c} lambda {lambda}: simulated wait {measured_wait:.5}s, Erlang C {expected_wait:.5}s ({:+.2}%)", (measured_wait / expected_wait - 1.0) * 100.0);
        assert!(
            error < 0.05,
            "M/M/{c} at lambda {lambda}: mean wait {measured_wait:.5}s vs Erlang C {expected_wait:.5}s ({:.1}% off)",
            error * 100.0
        );
    }
}

#[test]
fn littles_law_holds() {
    let r = mmc(4, 34.0, 0.1, 1.0, 5);
    let l = r.mean_in_system;
    let lambda_w = r.arrival_rate * r.mean_sojourn;
    eprintln!("Little: L = {l:.5}, lambda W = {lambda_w:.5}");
    assert!(
        (l / lambda_w - 1.0).abs() < 0.005,
        "L = {l:.4}, lambda W = {lambda_w:.4}"
    );
}

#[test]
fn erlang_c_formula_is_right() {
    // Textbook value: M/M/2 with a = 1 waits with probability 1/3.
    assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
}
