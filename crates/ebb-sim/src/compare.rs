//! A comparison: Ebb's policy and the baselines on one workload, each in its own run of the
//! same arrivals. Baselines use their documented defaults:
//!
//! - **HPA**: 15 s sync, tolerance 0.1, default behaviors (scale-up max(4 pods, 100%) per 15 s,
//!   scale-down after a 300 s window), an RPS-per-pod target at the target utilization, read
//!   through a Prometheus adapter: 30 s scrape, `rate()` over 2 minutes.
//! - **KPA** (Knative): 2 s tick, concurrency target = slots x 70%, 60 s stable and 6 s panic
//!   windows, panic at 200%, max scale-up rate 1000x, max scale-down rate 2x per tick, scale to
//!   zero after the stable window plus a 30 s grace period; counters scraped every second.
//! - **peak**: a fixed count, the oracle's highest, from the start.
//! - **oracle**: see [`crate::oracle`].
//!
//! HPA and KPA run through `ebb_core::decide`, whose HPA arithmetic passes Kubernetes' own test
//! cases and whose concurrency mode is Knative's stable/panic algorithm.

use crate::autoscaler::{Autoscaler, CorePolicy, Schedule};
use crate::observe::Pipeline;
use crate::oracle::Demand;
use crate::record::PolicyResult;
use crate::run::{run_policy, RunConfig};
use crate::workload::Workload;
use ebb_core::Policy;
use std::sync::Mutex;

/// The baselines a comparison can include.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Kubernetes HPA through a Prometheus adapter.
    Hpa,
    /// Knative's KPA.
    Kpa,
    /// Fixed provisioning at peak.
    Peak,
    /// The offline oracle.
    Oracle,
}

impl Baseline {
    /// Parses a baseline name.
    pub fn from_name(s: &str) -> Option<Baseline> {
        match s.trim() {
            "hpa" => Some(Baseline::Hpa),
            "kpa" => Some(Baseline::Kpa),
            "peak" => Some(Baseline::Peak),
            "oracle" => Some(Baseline::Oracle),
            _ => None,
        }
    }
}

/// How a family of policies is deployed: how often its signal is scraped, the window of its
/// rates, and how often it decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deployment {
    /// Seconds between scrapes.
    pub scrape_interval: f64,
    /// Window of per-pod rates, seconds.
    pub rate_window: f64,
    /// Seconds between decisions.
    pub sync_period: f64,
}

/// HPA through a Prometheus adapter: 30 s scrape, `rate()` over 2 minutes, 15 s sync.
pub const HPA_DEPLOYMENT: Deployment = Deployment {
    scrape_interval: 30.0,
    rate_window: 120.0,
    sync_period: 15.0,
};

/// Knative's KPA: counters scraped every second, a 60 s stable window, a 2 s tick.
pub const KPA_DEPLOYMENT: Deployment = Deployment {
    scrape_interval: 1.0,
    rate_window: 60.0,
    sync_period: 2.0,
};

/// Ebb behind its own proxy: counters scraped every second, 10 s rates, a decision a second.
pub const EBB_DEPLOYMENT: Deployment = Deployment {
    scrape_interval: 1.0,
    rate_window: 10.0,
    sync_period: 1.0,
};

impl Deployment {
    /// The observation pipeline it reads through.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::new(self.scrape_interval, self.rate_window)
    }

    /// `policy` run by the core behind this deployment, starting from `initial` replicas.
    pub fn scaler(
        &self,
        name: impl Into<String>,
        policy: Policy,
        initial: u32,
    ) -> Box<dyn Autoscaler> {
        Box::new(CorePolicy::new(
            name,
            policy,
            self.pipeline(),
            self.sync_period,
            initial,
        ))
    }
}

/// Target share of each replica's capacity the baselines aim for (Knative's default).
pub const TARGET_UTILIZATION: f64 = 0.7;

/// How Ebb's own policy is run.
#[derive(Debug, Clone)]
pub struct EbbSpec {
    /// Name in reports.
    pub name: String,
    /// The policy.
    pub policy: Policy,
    /// Seconds between scrapes of the proxy counters.
    pub scrape_interval: f64,
    /// Rate window for per-pod rates.
    pub rate_window: f64,
    /// Seconds between decisions.
    pub sync_period: f64,
    /// Where the workload's time zero lies on the calendar (Unix milliseconds), for the
    /// policy's schedules.
    pub epoch_unix_ms: i64,
}

/// Ebb's built-in policy for a cluster, used when no policy file is given: the SLO block at
/// the comparison's latency and attainment, with the cluster's slots per replica. The cold
/// start is measured, not told; no utilization target is chosen by hand. It may scale to
/// zero, but never for idling alone (`idleSeconds: never`): only through a silence before a
/// recurring burst it predicts, so a request that comes when nothing was predicted still
/// finds a replica.
pub fn default_ebb_policy(
    latency_seconds: f64,
    attainment: f64,
    slots: u32,
    max_replicas: u32,
) -> Policy {
    let mut policy = Policy::hpa(0, max_replicas.max(1), Vec::new());
    policy.behavior = ebb_core::policy::Behavior::slo_default();
    policy.scale_to_zero = Some(ebb_core::policy::ScaleToZero {
        idle_ms: None,
        activation_threshold: 1.0,
        activation_replicas: 1,
    });
    policy.slo = Some(ebb_core::policy::Slo {
        latency_seconds,
        attainment,
        cold_start_seconds: None,
        slots_per_replica: slots.max(1),
        season_seconds: ebb_core::policy::DEFAULT_SLO_SEASON_SECONDS,
        tuning: ebb_core::slo::Tuning::default(),
    });
    policy
}

/// Ebb's previous built-in policy, kept for comparison (`--policy` can give it as a file):
/// a request-rate target at 65% of a replica's capacity (`capacity_rps`), averaged over 30 s,
/// a 3 s panic window at 150%, quick scale-up, and a 30 s scale-down window.
pub fn rps_policy(capacity_rps: f64, utilization: f64, max_replicas: u32) -> Policy {
    let mut policy = Policy::hpa(1, max_replicas.max(1), Vec::new());
    policy.concurrency = Some(ebb_core::policy::Concurrency {
        metric: ebb_core::policy::ConcurrencyMetric::Rps,
        target_per_replica: (capacity_rps * utilization).max(1e-6),
        stable_window_ms: 30_000,
        panic_window_ms: 3_000,
        panic_threshold: 1.5,
    });
    let rules = |window, policies| ebb_core::policy::ScalingRules {
        stabilization_window_seconds: window,
        select_policy: ebb_core::policy::SelectPolicy::Max,
        policies,
    };
    let rate = |kind, value, period_seconds| ebb_core::policy::ScalingPolicy {
        kind,
        value,
        period_seconds,
    };
    use ebb_core::policy::ScalingPolicyKind::{Percent, Pods};
    policy.behavior = ebb_core::policy::Behavior {
        scale_up: rules(0, vec![rate(Percent, 100, 5), rate(Pods, 4, 5)]),
        scale_down: rules(30, vec![rate(Percent, 20, 10)]),
    };
    policy
}

/// The HPA baseline's policy: an RPS-per-pod `AverageValue` target, minReplicas 1, HPA's
/// default behaviors. Built as a value (a target below a milli-request per second is raised
/// to one).
pub fn hpa_policy(target_rps: f64, max_replicas: u32) -> Policy {
    use ebb_core::policy::{Metric, MetricSource, Target};
    let milli = (target_rps * 1000.0).round().clamp(1.0, 1e15) as i64;
    Policy::hpa(
        1,
        max_replicas.max(1),
        vec![Metric {
            name: "rps".into(),
            source: MetricSource::Pods { selector: None },
            target: Target::AverageValue(ebb_core::quantity::Quantity::from_milli(milli)),
        }],
    )
}

/// Knative's KPA defaults with the concurrency target at `utilization` of the slots (0.7 is
/// Knative's default): built as a value.
pub fn kpa_policy(slots: u32, utilization: f64, max_replicas: u32) -> Policy {
    use ebb_core::policy::{
        Behavior, Concurrency, ConcurrencyMetric, ScaleToZero, ScalingPolicy, ScalingPolicyKind,
        ScalingRules, SelectPolicy,
    };
    let mut policy = Policy::hpa(0, max_replicas.max(1), Vec::new());
    policy.concurrency = Some(Concurrency {
        metric: ConcurrencyMetric::Concurrency,
        target_per_replica: (f64::from(slots) * utilization).max(1e-3),
        stable_window_ms: 60_000,
        panic_window_ms: 6_000,
        panic_threshold: 2.0,
    });
    policy.scale_to_zero = Some(ScaleToZero {
        idle_ms: Some(90_000),
        activation_threshold: 1.0,
        activation_replicas: 1,
    });
    let rules = |value, period_seconds| ScalingRules {
        stabilization_window_seconds: 0,
        select_policy: SelectPolicy::Max,
        policies: vec![ScalingPolicy {
            kind: ScalingPolicyKind::Percent,
            value,
            period_seconds,
        }],
    };
    policy.behavior = Behavior {
        scale_up: rules(99_900, 1),
        scale_down: rules(50, 2),
    };
    policy
}

/// Everything one comparison produced.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// One result per policy, in the order run.
    pub results: Vec<PolicyResult>,
    /// The workload's demand.
    pub demand: Demand,
    /// The oracle's replica-seconds (its schedule's integral).
    pub oracle_replica_seconds: f64,
    /// Replica-seconds of the clairvoyant that pays the (median) cold start
    /// ([`crate::oracle::clairvoyant_replica_seconds`]).
    pub clairvoyant_replica_seconds: f64,
    /// Requests per second one replica serves at full slots.
    pub replica_capacity: f64,
    /// maxReplicas given to the autoscalers.
    pub max_replicas: u32,
}

/// Replicas every policy starts with, ready: what the first minute's mean rate needs at the
/// target utilization.
pub fn initial_replicas(workload: &Workload, cfg: &RunConfig) -> u32 {
    let capacity = f64::from(cfg.cluster.slots) / cfg.service.mean();
    ((workload.initial_rate(60.0) / (capacity * TARGET_UTILIZATION)).ceil() as u32).max(1)
}

/// The most replicas a default maxReplicas gives a baseline.
const MAX_DEFAULT_REPLICAS: u32 = 100_000;

/// Without the demand pre-pass, a generous maxReplicas for the baselines: four times what
/// the expected peak rate needs at full slots (at least 10).
pub fn default_max_replicas(workload: &Workload, cfg: &RunConfig) -> u32 {
    let capacity = f64::from(cfg.cluster.slots) / cfg.service.mean();
    let peak_rate = match workload {
        Workload::Rate { rates, .. } => rates.iter().copied().fold(0.0, f64::max),
        Workload::Requests(_) => workload.expected_requests() / workload.duration().max(1.0) * 10.0,
    };
    ((peak_rate / capacity).ceil() as u32)
        .saturating_mul(4)
        .clamp(10, MAX_DEFAULT_REPLICAS)
}

/// The policies that decide from observations (Ebb, HPA, KPA): they need no demand pre-pass.
pub fn core_policies(
    cfg: &RunConfig,
    initial: u32,
    ebb: Option<&EbbSpec>,
    baselines: &[Baseline],
    max_replicas: u32,
) -> Vec<Box<dyn Autoscaler>> {
    let slots = cfg.cluster.slots;
    let capacity = f64::from(slots) / cfg.service.mean();
    let start = |p: &Policy, warm: u32| cfg.cluster.start.replicas(p, warm);
    let mut out: Vec<Box<dyn Autoscaler>> = Vec::new();
    if let Some(e) = ebb {
        let p = &e.policy;
        out.push(Box::new(CorePolicy::new(
            e.name.clone(),
            p.clone(),
            Pipeline::new(e.scrape_interval, e.rate_window).with_epoch(e.epoch_unix_ms),
            e.sync_period,
            start(p, initial.clamp(p.min_replicas.max(1), p.max_replicas)),
        )));
    }
    for b in baselines {
        match b {
            Baseline::Hpa => {
                let policy = hpa_policy(capacity * TARGET_UTILIZATION, max_replicas);
                let initial = start(&policy, initial);
                out.push(HPA_DEPLOYMENT.scaler("hpa", policy, initial));
            }
            Baseline::Kpa => {
                let policy = kpa_policy(slots, TARGET_UTILIZATION, max_replicas);
                let initial = start(&policy, initial);
                out.push(KPA_DEPLOYMENT.scaler("kpa", policy, initial));
            }
            Baseline::Peak | Baseline::Oracle => {}
        }
    }
    out
}

/// The schedule policies (peak, oracle), built from the demand pre-pass.
pub fn schedule_policies(
    demand: &Demand,
    slots: u32,
    baselines: &[Baseline],
) -> Vec<Box<dyn Autoscaler>> {
    let schedule = demand.oracle_schedule(slots);
    let peak = schedule.iter().copied().max().unwrap_or(1).max(1);
    let mut out: Vec<Box<dyn Autoscaler>> = Vec::new();
    for b in baselines {
        match b {
            Baseline::Peak => out.push(Box::new(Schedule::fixed("peak", peak))),
            Baseline::Oracle => out.push(Box::new(Schedule::oracle("oracle", schedule.clone()))),
            Baseline::Hpa | Baseline::Kpa => {}
        }
    }
    out
}

/// The share of `workload`'s requests within the SLO with peak provisioning (a fixed fleet
/// for the busiest second's requests in service: no request waits for a slot): the most any
/// scaling setting can reach on it, its service times alone deciding the rest.
pub fn peak_attainment(workload: &Workload, cfg: &RunConfig) -> f64 {
    let demand = Demand::of(workload, &cfg.service, cfg.seed);
    let slots = cfg.cluster.slots;
    schedule_policies(&demand, slots, &[Baseline::Peak])
        .into_iter()
        .next()
        .map_or(f64::NAN, |mut peak| {
            run_policy(workload, cfg, peak.as_mut(), &mut |_| {}).slo_attainment
        })
}

/// Runs every policy over the workload on all cores, reporting progress per policy (indices
/// follow Ebb first, then `baselines` in order). The demand pre-pass runs alongside the
/// policies that do not need it.
pub fn compare(
    workload: &Workload,
    cfg: &RunConfig,
    ebb: Option<&EbbSpec>,
    baselines: &[Baseline],
    max_replicas: Option<u32>,
    progress: &(dyn Fn(usize, f64) + Sync),
) -> Comparison {
    let slots = cfg.cluster.slots;
    let initial = initial_replicas(workload, cfg);
    let capacity = f64::from(slots) / cfg.service.mean();
    let max_replicas = max_replicas.unwrap_or_else(|| default_max_replicas(workload, cfg));
    // Order of results: Ebb, then the baselines as given.
    let order: Vec<String> = ebb
        .map(|e| e.name.clone())
        .into_iter()
        .chain(baselines.iter().map(|b| format!("{b:?}").to_lowercase()))
        .collect();
    let index_of = |name: &str| order.iter().position(|n| n == name).unwrap_or(0);
    let queue: Mutex<Vec<Box<dyn Autoscaler>>> = Mutex::new(
        core_policies(cfg, initial, ebb, baselines, max_replicas)
            .into_iter()
            .rev()
            .collect(),
    );
    let results: Mutex<Vec<PolicyResult>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .max(1);
    let work = |queue: &Mutex<Vec<Box<dyn Autoscaler>>>| loop {
        let next = queue.lock().map(|mut q| q.pop()).ok().flatten();
        let Some(mut scaler) = next else {
            break;
        };
        let i = index_of(scaler.name());
        let r = run_policy(workload, cfg, scaler.as_mut(), &mut |f| progress(i, f));
        if let Ok(mut all) = results.lock() {
            all.push(r);
        }
    };
    let demand = std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(|| work(&queue));
        }
        // This thread computes the demand, then joins the work with the schedule policies.
        let demand = Demand::of(workload, &cfg.service, cfg.seed);
        if let Ok(mut q) = queue.lock() {
            q.extend(schedule_policies(&demand, slots, baselines));
        }
        work(&queue);
        demand
    });
    let needed = demand.needed(slots, 60, TARGET_UTILIZATION);
    let mut results = results.into_inner().unwrap_or_default();
    for r in &mut results {
        r.measure_capacity(&needed);
    }
    results.sort_by_key(|r| index_of(&r.policy));
    Comparison {
        results,
        oracle_replica_seconds: demand
            .oracle_schedule(slots)
            .iter()
            .map(|&r| f64::from(r))
            .sum(),
        clairvoyant_replica_seconds: crate::oracle::clairvoyant_replica_seconds(
            &demand.oracle_schedule(slots),
            cfg.cluster.cold_start.median(),
        ),
        replica_capacity: capacity,
        demand,
        max_replicas,
    }
}
