//! Each family's cost/attainment frontier on a token-level workload: the family's own knob
//! over a grid, each setting in its own run of the same requests. Defaults can differ in how
//! much capacity they buy; the frontier compares what each family reaches at the same cost.
//!
//! Knobs: Ebb's engine policy, how eagerly it buys (its queue-time p95 target, then more
//! requests waiting per replica; its KV-cache target hardly moves it);
//! HPA on duty cycle, its target; HPA on request rate, its share of a replica's saturated rate;
//! KPA, its concurrency target per replica (at Knative's 70%).

use super::compare::{duty_cycle_policy, llm_policy, Sizing, DUTY_CYCLE_TARGET};
use super::run::run_llm_policy;
use super::{LlmConfig, LlmRequest};
use crate::compare::{hpa_policy, kpa_policy, TARGET_UTILIZATION};
use crate::parallel::map_on_all_cores;
use crate::tune::{scaler, stretches_of, Candidate, Family, Point, STRETCHES};

/// Ebb's engine policy from most to least eager: (requests waiting per replica, queue-time
/// p95 target in seconds); the built-in is (1, 0.5).
const EBB_SETTINGS: [(f64, f64); 7] = [
    (1.0, 0.3),
    (1.0, 0.5),
    (1.0, 1.0),
    (1.0, 2.0),
    (2.0, 0.5),
    (4.0, 0.5),
    (8.0, 0.5),
];
/// Duty-cycle targets of HPA (the seeds' is 35).
const DUTY_TARGETS: [i64; 5] = [DUTY_CYCLE_TARGET, 50, 65, 80, 95];
/// Shares of a replica's saturated rate for HPA on request rate (the comparison's is 70%).
const RPS_SHARES: [f64; 5] = [0.3, 0.5, 0.7, 0.9, 1.1];
/// KPA's concurrency targets per replica (Knative's default is 100, at 70%).
const KPA_TARGETS: [u32; 5] = [5, 10, 25, 50, 100];

/// The grid of every family.
pub fn candidates(sizing: &Sizing) -> Vec<Candidate> {
    let max = sizing.max_replicas;
    let mut out = Vec::new();
    for (waiting, queue) in EBB_SETTINGS {
        out.push(Candidate {
            family: Family::EbbEngine,
            knob: format!(
                "{waiting} waiting per replica, queue time p95 below {}",
                ebb_core::time::fmt_seconds(queue)
            ),
            policy: llm_policy(max, waiting, queue),
        });
    }
    for target in DUTY_TARGETS {
        out.push(Candidate {
            family: Family::HpaDutyCycle,
            knob: format!("duty cycle {target}"),
            policy: duty_cycle_policy(target, max),
        });
    }
    for share in RPS_SHARES {
        out.push(Candidate {
            family: Family::Hpa,
            knob: format!(
                "{:.2} req/s per pod ({:.0}%)",
                sizing.saturation_rps * share,
                share * 100.0
            ),
            policy: hpa_policy(sizing.saturation_rps * share, max),
        });
    }
    for target in KPA_TARGETS {
        out.push(Candidate {
            family: Family::Kpa,
            knob: format!("concurrency {target} at 70%"),
            policy: kpa_policy(target, TARGET_UTILIZATION, max),
        });
    }
    out
}

/// Runs every candidate of [`candidates`] on all cores; a point's attainment is the share of
/// requests within both SLOs. `progress` gets the share of runs done.
pub fn sweep(
    requests: &[LlmRequest],
    cfg: &LlmConfig,
    sizing: &Sizing,
    progress: &(dyn Fn(f64) + Sync),
) -> Vec<Point> {
    evaluate(requests, cfg, candidates(sizing), sizing.initial, progress)
}

/// Runs each of `candidates` on all cores, starting from `initial` replicas; a point's
/// attainment is the share of requests within both SLOs. `progress` gets the share done.
pub fn evaluate(
    requests: &[LlmRequest],
    cfg: &LlmConfig,
    candidates: Vec<Candidate>,
    initial: u32,
    progress: &(dyn Fn(f64) + Sync),
) -> Vec<Point> {
    map_on_all_cores(
        candidates,
        &|_, candidate: Candidate| {
            let mut s = scaler(&candidate, initial);
            let r = run_llm_policy(requests, cfg, s.as_mut(), &mut |_| {});
            let outcomes = r
                .by_minute
                .iter()
                .enumerate()
                .map(|(i, &(requests, met))| (i as f64 * 60.0, requests, met));
            Point {
                candidate,
                attainment: r.both_attainment,
                replica_seconds: r.replica_seconds,
                requests: r.requests,
                stretches: stretches_of(outcomes, r.duration, STRETCHES),
                peak_replicas: r.peak_replicas,
            }
        },
        &|done, total| progress(done as f64 / total as f64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::policy::Target;
    use ebb_core::quantity::Quantity;

    #[test]
    fn the_ebb_settings_span_from_eager_to_lax_around_the_built_in() {
        let sizing = Sizing {
            saturation_rps: 2.0,
            initial: 1,
            max_replicas: 8,
        };
        let c = candidates(&sizing);
        assert_eq!(c.len(), 22);
        let target = |p: &ebb_core::Policy, name: &str| {
            p.metrics
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.target.clone())
        };
        // The most eager: queue time p95 below 0.3 s.
        assert_eq!(
            target(&c[0].policy, "engine.queueTime"),
            Some(Target::Value(Quantity::from_milli(300)))
        );
        // The built-in is among them, unchanged.
        assert_eq!(c[1].policy, super::super::compare::default_llm_policy(8));
        // The laxest: 8 waiting per replica.
        assert_eq!(
            target(&c[6].policy, "engine.waiting"),
            Some(Target::AverageValue(Quantity::from_milli(8000)))
        );
        assert!(c.iter().all(|k| k.policy.max_replicas == 8));
    }
}
