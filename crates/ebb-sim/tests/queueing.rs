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

/// Simulated SLO attainment at a fixed replica count: Poisson arrivals at `rate`, lognormal
/// service (median 100 ms, `sigma`), least-outstanding dispatch to per-replica queues.
fn attainment_at(
    replicas: u32,
    slots: u32,
    rate: f64,
    sigma: f64,
    slo: f64,
    seconds: usize,
) -> f64 {
    let cfg = RunConfig {
        cluster: ClusterConfig {
            slots,
            queue_per_replica: 1_000_000,
            activator_queue: 1_000_000,
            timeout: 1e9,
            cold_start: ColdStart::Fixed(0.0),
            max_replicas: None,
        },
        service: ServiceTime::LogNormal { median: 0.1, sigma },
        slo,
        bucket: 60.0,
        seed: 7,
        gpus_per_replica: 1.0,
    };
    let workload = Workload::Rate {
        interval: 1.0,
        rates: vec![rate; seconds],
    };
    let mut fixed = Schedule::fixed("fixed", replicas);
    run_policy(&workload, &cfg, &mut fixed, &mut |_| {}).slo_attainment
}

/// The SLO policy's queueing models against the simulator, the referee, at fixed replicas
/// over a grid of replica counts, slots, service-time variability (lognormal sigma 0.25-1),
/// load (50-85% of the slots) and SLO (2.5-5x the median service).
///
/// - The model for least-outstanding dispatch (`ebb_core::slo::dispatch`), the simulator's
///   and Ebb's proxy's: within 0.3 points wherever SLOs are planned (simulated attainment of
///   95% or more), and on 89 of the 108 cases. Below that not everywhere: heavy-tailed service
///   (sigma 1) at 70-85% load is up to 1.7 points pessimistic, where attainment is 47-94%.
/// - The planner's model (`ebb_core::slo::queueing`, one central queue's Erlang C): where SLOs
///   are planned, at most 1.1 points optimistic (one replica of four slots at 85% load) and
///   1.3 pessimistic; below that, up to about 5.8 points pessimistic (one-slot replicas at 85%
///   load). Its pessimism is the margin the planner relies on (docs/slo.md).
///
/// Every row is printed (`--nocapture`), and docs/slo.md shows the table.
/// Requests simulated per case. The referee's own noise must be well below the 0.3 points the
/// model is held to: at 25,000 requests one seed differs from another by up to 1.8 points at
/// 85% load (one replica: long busy periods), at 1,000,000 by at most 0.25.
const REQUESTS: f64 = 1_000_000.0;

#[test]
fn slo_model_predicts_simulated_attainment() {
    use ebb_core::slo::{dispatch, queueing};
    let mut planner = Gaps::default();
    let mut model = Gaps::default();
    let mut rows = Vec::new();
    for &(replicas, slots) in &[(1u32, 1u32), (1, 4), (3, 4), (10, 4), (4, 8), (20, 1)] {
        for &sigma in &[0.25, 0.5, 1.0] {
            for &rho in &[0.5, 0.7, 0.85] {
                for &slo in &[0.25, 0.5] {
                    let mean = 0.1 * (sigma * sigma / 2.0f64).exp();
                    let scv = (sigma * sigma).exp_m1();
                    let rate = rho * f64::from(replicas * slots) / mean;
                    let seconds = (REQUESTS / rate).ceil() as usize;
                    let simulated = attainment_at(replicas, slots, rate, sigma, slo, seconds);
                    let load = queueing::Load {
                        rate,
                        arrival_scv: 1.0,
                        service_mean: mean,
                        service_scv: scv,
                        shape_scv: scv,
                    };
                    let dispatched = dispatch::attainment(&load, replicas, slots, slo);
                    let central = queueing::attainment(&load, replicas, slots, slo);
                    let gap = model.add(dispatched, simulated);
                    let planner_gap = planner.add(central, simulated);
                    rows.push(format!(
                        "| {replicas} | {slots} | {sigma:.2} | {:.0}% | {:.0} ms | {:.3}% | {:.3}% | {gap:+.3} | {:.3}% | {planner_gap:+.3} |",
                        rho * 100.0,
                        slo * 1000.0,
                        simulated * 100.0,
                        dispatched * 100.0,
                        central * 100.0,
                    ));
                }
            }
        }
    }
    eprintln!("| replicas | slots | service sigma | load | SLO | simulated | least-outstanding model | gap (points) | planner's model | gap (points) |");
    eprintln!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        eprintln!("{r}");
    }
    eprintln!("least-outstanding model: {}", model.summary());
    eprintln!("planner's model: {}", planner.summary());
    assert!(
        model.planned.0 <= 0.3 && model.planned.1 >= -0.3,
        "least-outstanding model: {}",
        model.summary()
    );
    assert!(
        model.worst <= 2.5,
        "least-outstanding model: {}",
        model.summary()
    );
    assert!(
        planner.planned.0 <= 1.1 && planner.planned.1 >= -1.3,
        "planner's model: {}",
        planner.summary()
    );
}

/// How far a model's predictions are from the simulated attainment, in points.
#[derive(Default)]
struct Gaps {
    worst: f64,
    within: usize,
    cases: usize,
    /// Most optimistic and most pessimistic where the simulated attainment is 95% or more.
    planned: (f64, f64),
}

impl Gaps {
    fn add(&mut self, predicted: f64, simulated: f64) -> f64 {
        let gap = (predicted - simulated) * 100.0;
        self.worst = self.worst.max(gap.abs());
        self.within += usize::from(gap.abs() <= 0.3);
        self.cases += 1;
        if simulated >= 0.95 {
            self.planned = (self.planned.0.max(gap), self.planned.1.min(gap));
        }
        gap
    }

    fn summary(&self) -> String {
        format!(
            "within 0.3 points on {} of {} cases, worst {:.3}; at 95% or more: {:+.3} to {:+.3}",
            self.within, self.cases, self.worst, self.planned.1, self.planned.0
        )
    }
}
