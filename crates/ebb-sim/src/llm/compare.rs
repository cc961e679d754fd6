//! The token-level comparison: Ebb's engine-aware policy beside what users run today on LLM
//! servers, each in its own run of the same requests on the same engines.
//!
//! - **ebb**: the `engine` block (vLLM's names): KV-cache use, requests waiting, and the
//!   queue-time percentile read from the engines' histogram buckets; scraped every second.
//! - **ebb-slo**: the `slo` block's TTFT and ITL goals (the run's own: p99 of each within its
//!   SLO), sized from the engines' learnt response ([`ebb_core::slo::tokens`]); no target to
//!   pick.
//! - **hpa-duty-cycle**: HPA on the accelerator's duty cycle at an average of 35 (percent), the
//!   seeds' set-up; the duty cycle is the share of time the engine had work (what
//!   `DCGM_FI_DEV_GPU_UTIL` reports), read through a Prometheus adapter (30 s scrape, 2 min
//!   window), HPA's 15 s sync and default behaviors.
//! - **hpa-rps**: HPA on requests per second per pod at 70% of what one replica completes when
//!   saturated with the workload's own mix ([`super::capacity`]), same adapter.
//! - **kpa**: Knative's KPA defaults on concurrency (a target of 100 in flight at 70%, stable
//!   and panic windows, scale to zero).
//! - **fixed-max**: maxReplicas from the start, the attainment within reach of any policy
//!   (long prompts miss a TTFT SLO however many replicas there are).
//!
//! Every run starts with the replicas the first minute needs at 70% of saturation, ready (or,
//! with [`Start::AtZero`], as a service after a silence: KPA with none, the others at their
//! minimum), and every autoscaler gets the same maxReplicas.

use super::capacity::saturation_rps;
use super::run::{run_llm_policy, LlmResult};
use super::{LlmConfig, LlmRequest};
use crate::autoscaler::{Autoscaler, Schedule};
use crate::cluster::Start;
use crate::compare::{
    hpa_policy, kpa_policy, Deployment, EBB_DEPLOYMENT, HPA_DEPLOYMENT, KPA_DEPLOYMENT,
    TARGET_UTILIZATION,
};
use crate::parallel::map_on_all_cores;
use ebb_core::policy::{Metric, MetricSource, Target};
use ebb_core::quantity::Quantity;
use ebb_core::Policy;

/// The duty-cycle target of the seeds' HPA set-up (percent).
pub const DUTY_CYCLE_TARGET: i64 = 35;
/// Knative's default concurrency target per replica (`container-concurrency-target-default`).
pub const KPA_CONCURRENCY_TARGET: u32 = 100;

/// The queue-time percentile's bound of the built-in LLM policy, seconds: above the first
/// bucket of vLLM's queue-time histogram (0.3 s), so the percentile is read, not guessed.
pub const QUEUE_TIME_TARGET: f64 = 0.5;

/// Ebb's built-in policy for LLM serving: scale on the engines' own saturation signals (a
/// replica per request waiting for the engine, the KV cache at 70% on average) and on how long
/// requests wait to be scheduled (p95 over a minute below 500 ms), whichever asks for most;
/// scale up at once, down slowly (a replica is kept through a dip shorter than five minutes,
/// HPA's default: chosen on the first halves once a window without requests stopped holding
/// the count, docs/results.md).
/// Queue time rather than TTFT: TTFT grows with the prompt's prefill, which more replicas do
/// not shorten (chosen on the traces' first halves: docs/results.md).
pub fn default_llm_policy(max_replicas: u32) -> Policy {
    llm_policy(max_replicas, 1.0, QUEUE_TIME_TARGET)
}

/// The built-in LLM policy with `waiting` requests per replica and the queue-time p95 below
/// `queue_seconds` (the built-in: 1 and 0.5 s): the knobs that set how much it buys.
pub fn llm_policy(max_replicas: u32, waiting: f64, queue_seconds: f64) -> Policy {
    let yaml = format!(
        "minReplicas: 1
maxReplicas: {max}
engine:
  kind: vllm
  kvCacheUtilization: 70%
  waitingPerReplica: {waiting}
  queueTime: {{percentile: p95, below: {queue}ms}}
  windowSeconds: 60
behavior:
  scaleUp:
    stabilizationWindowSeconds: 0
    policies: [{{type: Percent, value: 100, periodSeconds: 5}}, {{type: Pods, value: 4, periodSeconds: 5}}]
  scaleDown:
    stabilizationWindowSeconds: 300
    policies: [{{type: Percent, value: 20, periodSeconds: 30}}]
",
        max = max_replicas.max(1),
        queue = (queue_seconds * 1000.0).round().max(1.0) as i64
    );
    Policy::from_yaml(&yaml).unwrap_or_else(|e| unreachable!("the built-in LLM policy: {e}"))
}

/// Ebb's LLM SLO policy: TTFT and ITL at p99 within `ttft` and `itl` seconds, read from the
/// engines' own histograms and token counters (vLLM's names), sized by the token model.
pub fn slo_llm_policy(max_replicas: u32, ttft: f64, itl: f64) -> Policy {
    let ms = |s: f64| (s * 1000.0).round().max(1.0) as i64;
    let yaml = format!(
        "minReplicas: 1
maxReplicas: {max}
engine: {{kind: vllm, windowSeconds: 20}}
slo:
  ttft: {{latency: {ttft}ms, attainment: 99%}}
  itl: {{latency: {itl}ms, attainment: 99%}}
",
        max = max_replicas.max(1),
        ttft = ms(ttft),
        itl = ms(itl),
    );
    Policy::from_yaml(&yaml).unwrap_or_else(|e| unreachable!("the LLM SLO policy: {e}"))
}

/// HPA on the duty cycle at `target` (percent; the seeds' is [`DUTY_CYCLE_TARGET`]).
pub fn duty_cycle_policy(target: i64, max_replicas: u32) -> Policy {
    Policy::hpa(
        1,
        max_replicas.max(1),
        vec![Metric {
            name: "gpu".into(),
            source: MetricSource::Pods { selector: None },
            target: Target::AverageValue(Quantity::from_milli(target * 1000)),
        }],
    )
}

/// What the comparison derived from the workload before running anything.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Sizing {
    /// Requests per second one replica completes saturated with the workload's mix.
    pub saturation_rps: f64,
    /// Replicas every policy starts with.
    pub initial: u32,
    /// maxReplicas of every policy.
    pub max_replicas: u32,
}

/// Sizes the comparison from the workload: one replica's saturated rate (on the mix of the
/// first `fit_share` of the requests: the part a user would have measured beforehand), the
/// first minute's replicas at 70% of it, and maxReplicas at four times the busiest minute's.
pub fn sizing(requests: &[LlmRequest], cfg: &LlmConfig, fit_share: f64) -> Sizing {
    let rps = saturation_rps(cfg.engine, fitting(requests, fit_share)).unwrap_or(1.0);
    sizing_for(requests, rps)
}

/// The first `fit_share` of the requests: the part a user would have measured beforehand.
pub fn fitting(requests: &[LlmRequest], fit_share: f64) -> &[LlmRequest] {
    &requests[..((requests.len() as f64 * fit_share).ceil() as usize).min(requests.len())]
}

/// Sizes replicas that each complete `rps` requests a second saturated: the first minute's
/// at 70% of it, and maxReplicas at four times the busiest minute's.
pub fn sizing_for(requests: &[LlmRequest], rps: f64) -> Sizing {
    let rps = rps.max(1e-3);
    // Requests in each minute, in one pass.
    let mut per_minute: Vec<usize> = Vec::new();
    for r in requests {
        let m = (r.at.max(0.0) / 60.0) as usize;
        if per_minute.len() <= m {
            per_minute.resize(m + 1, 0);
        }
        per_minute[m] += 1;
    }
    let first = per_minute.first().copied().unwrap_or(0) as f64 / 60.0;
    let busiest = per_minute.iter().copied().max().unwrap_or(0) as f64 / 60.0;
    let replicas = |rate: f64| (rate / (rps * TARGET_UTILIZATION)).ceil() as u32;
    Sizing {
        saturation_rps: rps,
        initial: replicas(first).max(1),
        max_replicas: (replicas(busiest) * 4).clamp(8, 1000),
    }
}

/// The policies of the comparison, Ebb's first (`ebb`: the built-in policy unless given),
/// then its SLO policy on the run's own TTFT and ITL SLOs, each started as `start` says
/// (fixed-max always at maxReplicas: it marks what is within reach).
pub fn policies(
    sizing: &Sizing,
    cfg: &LlmConfig,
    ebb: Option<Policy>,
    start: Start,
) -> Vec<Box<dyn Autoscaler>> {
    let max = sizing.max_replicas;
    let ebb = ebb.unwrap_or_else(|| default_llm_policy(max));
    let initial = |policy: &Policy| {
        let warm = sizing
            .initial
            .clamp(policy.min_replicas.max(1), policy.max_replicas);
        start.replicas(policy, warm)
    };
    let scaler = |deployment: &Deployment, name: &str, policy: Policy| {
        let replicas = initial(&policy);
        deployment.scaler(name, policy, replicas)
    };
    vec![
        scaler(&EBB_DEPLOYMENT, "ebb", ebb),
        scaler(
            &EBB_DEPLOYMENT,
            "ebb-slo",
            slo_llm_policy(max, cfg.ttft_slo, cfg.itl_slo),
        ),
        scaler(
            &HPA_DEPLOYMENT,
            "hpa-duty-cycle",
            duty_cycle_policy(DUTY_CYCLE_TARGET, max),
        ),
        scaler(
            &HPA_DEPLOYMENT,
            "hpa-rps",
            hpa_policy(sizing.saturation_rps * TARGET_UTILIZATION, max),
        ),
        scaler(
            &KPA_DEPLOYMENT,
            "kpa",
            kpa_policy(KPA_CONCURRENCY_TARGET, TARGET_UTILIZATION, max),
        ),
        Box::new(Schedule::fixed("fixed-max", max)),
    ]
}

/// Runs every policy on all cores; `progress(index, fraction)` per policy. Results come in
/// the order of `scalers`.
pub fn compare(
    requests: &[LlmRequest],
    cfg: &LlmConfig,
    scalers: Vec<Box<dyn Autoscaler>>,
    progress: &(dyn Fn(usize, f64) + Sync),
) -> Vec<LlmResult> {
    map_on_all_cores(
        scalers,
        &|i, mut scaler: Box<dyn Autoscaler>| {
            run_llm_policy(requests, cfg, scaler.as_mut(), &mut |f| progress(i, f))
        },
        &|_, _| {},
    )
}
