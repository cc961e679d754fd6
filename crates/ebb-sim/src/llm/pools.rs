//! The disaggregated comparison: the same requests on a prefill pool and a decode pool,
//! scaled by Ebb's pools policy (both pools decided at once, with the ratio guard) beside
//! what users run today, one autoscaler per pool:
//!
//! - **ebb-pools**: each pool on the built-in engine policy's signals (requests waiting for
//!   the engine, the KV cache at 70%, the queue-time p95 below 500 ms); at least half the
//!   decode replicas per prefill replica that the pools' measured capacities ask for, so that a
//!   burst of prompts starts decode replicas before its handovers arrive.
//! - **hpa-duty-cycle**: two HPAs on the accelerators' duty cycle at 35, the seeds' set-up.
//! - **hpa-rps**: two HPAs on requests per second per pod at 70% of what a saturated replica
//!   of that pool completes with the workload's mix.
//! - **kpa**: two KPA revisions on concurrency (Knative's defaults, scale to zero).
//! - **fixed-max**: both pools at their maxReplicas throughout.
//!
//! Capacities and first counts come from the first half of the requests, as a user would have
//! measured them beforehand ([`FIT_SHARE`]).

use super::capacity::stage_saturation_rps;
use super::compare::{
    duty_cycle_policy, fitting, llm_policy, sizing_for, Sizing, DUTY_CYCLE_TARGET,
    KPA_CONCURRENCY_TARGET, QUEUE_TIME_TARGET,
};
use super::disagg::{run_pools, CorePools, Independent, PoolAutoscaler, PoolsResult};
use super::{LlmConfig, LlmRequest};
use crate::autoscaler::Schedule;
use crate::compare::{
    hpa_policy, kpa_policy, EBB_DEPLOYMENT, HPA_DEPLOYMENT, KPA_DEPLOYMENT, TARGET_UTILIZATION,
};
use crate::engine::Stage;
use crate::parallel::map_on_all_cores;
use ebb_core::pools::{Pair, PoolsPolicy, Ratio};

/// Share of the requests whose mix sizes the pools.
pub const FIT_SHARE: f64 = 0.5;
/// How far below the capacities' ratio the built-in guard lets decode per prefill fall.
pub const RATIO_SLACK: f64 = 2.0;

/// Each pool's sizing and the capacities' ratio.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PoolSizing {
    /// The prefill pool's.
    pub prefill: Sizing,
    /// The decode pool's.
    pub decode: Sizing,
    /// Decode replicas per prefill replica at equal load: a prefill replica's saturated rate
    /// over a decode replica's.
    pub capacity_ratio: f64,
}

/// Sizes both pools from the first [`FIT_SHARE`] of the requests.
pub fn pool_sizing(requests: &[LlmRequest], cfg: &LlmConfig) -> PoolSizing {
    let fit = fitting(requests, FIT_SHARE);
    let rps = |stage| stage_saturation_rps(cfg.engine, fit, stage).unwrap_or(1.0);
    let (prefill, decode) = (rps(Stage::Prefill), rps(Stage::Decode));
    PoolSizing {
        prefill: sizing_for(requests, prefill),
        decode: sizing_for(requests, decode),
        capacity_ratio: prefill / decode.max(1e-9),
    }
}

/// Ebb's built-in pools policy: the built-in engine policy on each pool; the guard keeps at
/// least the capacities' ratio over [`RATIO_SLACK`] and no upper bound (a decode pool large
/// for its own reasons, long outputs filling KV caches, needs no prefill replicas for it).
pub fn default_pools_policy(s: &PoolSizing) -> PoolsPolicy {
    PoolsPolicy {
        prefill: llm_policy(s.prefill.max_replicas, 1.0, QUEUE_TIME_TARGET),
        decode: llm_policy(s.decode.max_replicas, 1.0, QUEUE_TIME_TARGET),
        ratio: Ratio {
            min: s.capacity_ratio / RATIO_SLACK,
            max: f64::INFINITY,
        },
    }
}

/// The policies of the comparison, Ebb's first (the built-in pools policy unless given).
pub fn pool_policies(s: &PoolSizing, ebb: Option<PoolsPolicy>) -> Vec<Box<dyn PoolAutoscaler>> {
    let (p, d) = (&s.prefill, &s.decode);
    let ebb = ebb.unwrap_or_else(|| default_pools_policy(s));
    let initial = Pair {
        prefill: p
            .initial
            .clamp(ebb.prefill.min_replicas.max(1), ebb.prefill.max_replicas),
        decode: d
            .initial
            .clamp(ebb.decode.min_replicas.max(1), ebb.decode.max_replicas),
    };
    let both = |name: &str, make: &dyn Fn(&Sizing) -> Box<dyn crate::autoscaler::Autoscaler>| {
        Box::new(Independent::new(name, make(p), make(d))) as Box<dyn PoolAutoscaler>
    };
    vec![
        Box::new(CorePools::new(
            "ebb-pools",
            ebb,
            EBB_DEPLOYMENT.pipeline(),
            EBB_DEPLOYMENT.sync_period,
            initial,
        )),
        both("hpa-duty-cycle", &|s| {
            HPA_DEPLOYMENT.scaler(
                "hpa-duty-cycle",
                duty_cycle_policy(DUTY_CYCLE_TARGET, s.max_replicas),
                s.initial,
            )
        }),
        both("hpa-rps", &|s| {
            HPA_DEPLOYMENT.scaler(
                "hpa-rps",
                hpa_policy(s.saturation_rps * TARGET_UTILIZATION, s.max_replicas),
                s.initial,
            )
        }),
        both("kpa", &|s| {
            KPA_DEPLOYMENT.scaler(
                "kpa",
                kpa_policy(KPA_CONCURRENCY_TARGET, TARGET_UTILIZATION, s.max_replicas),
                s.initial,
            )
        }),
        both("fixed-max", &|s| {
            Box::new(Schedule::fixed("fixed-max", s.max_replicas))
        }),
    ]
}

/// Runs every pools policy on all cores; `progress(index, fraction)` per policy.
pub fn compare_pools(
    requests: &[LlmRequest],
    cfg: &LlmConfig,
    per_token: f64,
    scalers: Vec<Box<dyn PoolAutoscaler>>,
    progress: &(dyn Fn(usize, f64) + Sync),
) -> Vec<PoolsResult> {
    map_on_all_cores(
        scalers,
        &|i, mut scaler: Box<dyn PoolAutoscaler>| {
            run_pools(requests, cfg, per_token, scaler.as_mut(), &mut |f| {
                progress(i, f)
            })
        },
        &|_, _| {},
    )
}
