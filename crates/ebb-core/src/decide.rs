//! The one entry point every driver calls: `decide(policy, observation, state, now)`.
//!
//! Order of work, following HPA's reconcile loop and adding Ebb's modes:
//! 1. the target's own bounds (at zero without scale-to-zero, above max, below min);
//! 2. scale to zero and activation from zero;
//! 3. one proposal per HPA metric and Ebb signal, combined by max; missing metrics may
//!    hold replicas but never lower them;
//! 4. HPA behaviors (stabilization, rate policies, min/max);
//! 5. panic mode, which bypasses the scale-up limits and forbids scale-down;
//! 6. victim ranking for a scale-in.

use crate::behavior::{self, NormalizeInput};
use crate::calculator::{self, CalcContext};
use crate::observation::Observation;
use crate::policy::{Policy, Target};
use crate::quantity::Quantity;
use crate::reason::{LimitReason, Reason};
use crate::sanitize;
use crate::signals::{concurrency, external, lag, traffic, SignalOutcome};
use crate::state::{Recommendation, State};
use crate::time::Time;
use crate::victims::rank_victims;
use serde::Serialize;

/// One metric's or signal's contribution to a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Proposal {
    /// Metric or signal name.
    pub name: String,
    /// Replicas it proposed; `None` when it was missing.
    pub replicas: Option<u32>,
    /// Its current value (utilization percent, or the metric's unit).
    pub value: Option<f64>,
    /// Why it was missing.
    pub missing: Option<String>,
}

/// A decision: what to do, why, and the state to carry to the next one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// When it was made.
    pub at: Time,
    /// The replicas the target had.
    pub current_replicas: u32,
    /// The replicas it should have.
    pub desired_replicas: u32,
    /// Each metric's and signal's proposal.
    pub proposals: Vec<Proposal>,
    /// HPA's `ScalingLimited` reason.
    pub limit: LimitReason,
    /// Everything that shaped the decision, in order.
    #[serde(serialize_with = "crate::reason::serialize_with_messages")]
    pub reasons: Vec<Reason>,
    /// On a scale-in, the pods to remove first.
    pub victims: Vec<String>,
    /// Whether panic mode is on.
    pub panic: bool,
    /// State for the next decision, assuming this one was NOT applied; see [`Decision::applied_state`].
    pub state: State,
}

impl Decision {
    /// The state for the next decision once the driver has applied this one: the scale event
    /// counts against the rate policies from now on.
    pub fn applied_state(&self) -> State {
        let mut s = self.state.clone();
        s.record_scale(self.current_replicas, self.desired_replicas, self.at);
        s
    }

    /// Whether no metric could be used, so the count was held (the HPA's `ScalingActive`
    /// condition turns false).
    pub fn no_usable_metric(&self) -> bool {
        self.reasons
            .iter()
            .any(|r| matches!(r, Reason::NoUsableMetric { .. }))
    }

    /// Whether a reason with this code is among the decision's reasons.
    pub fn has_reason(&self, code: &str) -> bool {
        self.reasons.iter().any(|r| r.code() == code)
    }

    /// The reasons as one line, for logs and Events.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self.reasons.iter().map(|r| r.to_string()).collect();
        parts.join("; ")
    }
}

struct Builder {
    now: Time,
    current: u32,
    proposals: Vec<Proposal>,
    reasons: Vec<Reason>,
    state: State,
    panic: bool,
}

impl Builder {
    fn finish(mut self, desired: u32, limit: LimitReason, obs: &Observation) -> Decision {
        let mut victims = Vec::new();
        if desired < self.current {
            victims = rank_victims(&obs.pods)
                .into_iter()
                .take((self.current - desired) as usize)
                .map(|p| p.name.clone())
                .collect();
            if !victims.is_empty() {
                self.reasons.push(Reason::Victims {
                    pods: victims.clone(),
                });
            }
        }
        Decision {
            at: self.now,
            current_replicas: self.current,
            desired_replicas: desired,
            proposals: self.proposals,
            limit,
            reasons: self.reasons,
            victims,
            panic: self.panic,
            state: self.state,
        }
    }

    fn add(&mut self, name: &str, outcome: SignalOutcome) -> Option<u32> {
        match outcome {
            SignalOutcome::Proposal {
                replicas,
                value,
                value_text,
                target_text,
            } => {
                self.reasons.push(Reason::MetricProposal {
                    metric: name.into(),
                    value: value_text,
                    target: target_text,
                    replicas,
                });
                self.proposals.push(Proposal {
                    name: name.into(),
                    replicas: Some(replicas),
                    value: Some(value),
                    missing: None,
                });
                Some(replicas)
            }
            SignalOutcome::Missing(why) => {
                self.missing(name, why);
                None
            }
        }
    }

    fn add_slo(&mut self, plan: crate::slo::Plan) -> Option<u32> {
        match plan {
            crate::slo::Plan::Proposal {
                replicas,
                rate,
                reasons,
            } => {
                self.reasons.extend(reasons);
                self.proposals.push(Proposal {
                    name: "slo".into(),
                    replicas: Some(replicas),
                    value: Some(rate),
                    missing: None,
                });
                Some(replicas)
            }
            crate::slo::Plan::Missing(why) => {
                self.missing("slo", why);
                None
            }
        }
    }

    fn missing(&mut self, name: &str, why: String) {
        self.reasons.push(Reason::MetricMissing {
            metric: name.into(),
            why: why.clone(),
        });
        self.proposals.push(Proposal {
            name: name.into(),
            replicas: None,
            value: None,
            missing: Some(why),
        });
    }
}

/// Decides the desired replicas for one target. Pure: the same inputs give the same decision.
pub fn decide(policy: &Policy, obs: &Observation, state: &State, now: Time) -> Decision {
    let current = obs.current_replicas;
    let mut b = Builder {
        now,
        current,
        proposals: Vec::new(),
        reasons: Vec::new(),
        state: state.clone(),
        panic: false,
    };
    let keep_ms = policy
        .concurrency
        .as_ref()
        .map_or(0, |c| c.stable_window_ms)
        .max(policy.inference_lag.as_ref().map_or(0, |l| l.window_ms))
        .max(if policy.slo.is_some() { 2_000 } else { 0 });
    traffic::record(&mut b.state.traffic, obs.traffic.as_ref(), now, keep_ms);
    behavior::prune_events(&policy.behavior, &mut b.state, now);
    let within = LimitReason::DesiredWithinRange;

    // 1. The target's own bounds, as HPA's reconcile loop checks them first.
    if current == 0 && policy.scale_to_zero.is_none() {
        b.reasons.push(Reason::ScalingDisabled);
        return b.finish(0, within, obs);
    }
    if current > policy.max_replicas {
        b.reasons.push(Reason::CurrentAboveMax {
            max: policy.max_replicas,
        });
        return b.finish(policy.max_replicas, LimitReason::TooManyReplicas, obs);
    }
    if current > 0 && current < policy.min_replicas {
        b.reasons.push(Reason::CurrentBelowMin {
            min: policy.min_replicas,
        });
        return b.finish(policy.min_replicas, LimitReason::TooFewReplicas, obs);
    }

    // 3. Proposals.
    let ctx = CalcContext {
        current_replicas: current,
        pods: &obs.pods,
        now,
        tolerance: policy.tolerance,
        readiness: policy.readiness,
    };
    let mut best: Option<u32> = None;
    let mut missing = Vec::new();
    let mut join = |best: &mut Option<u32>, p: Option<u32>, name: &str| match p {
        Some(r) => *best = Some(best.map_or(r, |b| b.max(r))),
        None => missing.push(name.to_string()),
    };
    for metric in &policy.metrics {
        let observed = obs.metrics.iter().find(|m| m.name == metric.name);
        let input = sanitize::metric_input(observed, now, policy.stale_after_ms);
        let result = input.and_then(|input| {
            calculator::replicas_for_metric(
                &metric.source,
                &metric.name,
                &metric.target,
                input,
                &ctx,
            )
            .map_err(|e| e.to_string())
        });
        let proposal = match result {
            Ok(p) => {
                let value_text = match metric.target {
                    Target::Utilization(_) => format!("{}%", p.current),
                    _ => Quantity::from_milli(p.current).to_string(),
                };
                let value = match metric.target {
                    Target::Utilization(_) => p.current as f64,
                    _ => p.current as f64 / 1000.0,
                };
                if p.within_tolerance {
                    b.reasons.push(Reason::WithinTolerance {
                        metric: metric.name.clone(),
                        ratio: p.usage_ratio,
                    });
                }
                b.add(
                    &metric.name,
                    SignalOutcome::Proposal {
                        replicas: p.replicas,
                        value,
                        value_text,
                        target_text: metric.target.to_string(),
                    },
                )
            }
            Err(why) => b.add(&metric.name, SignalOutcome::Missing(why)),
        };
        join(&mut best, proposal, &metric.name);
    }
    let ready = obs.ready_replicas();
    let mut panic = None;
    if let Some(c) = &policy.concurrency {
        let r = concurrency::evaluate(c, &mut b.state, ready, now, policy.stale_after_ms);
        if r.panic_ended {
            b.reasons.push(Reason::PanicEnded);
        }
        panic = r.panic;
        let p = b.add(c.metric.as_str(), r.stable);
        join(&mut best, p, c.metric.as_str());
    }
    if let Some(l) = &policy.inference_lag {
        let outcome = lag::evaluate(l, &mut b.state, current, now, policy.stale_after_ms);
        let p = b.add("inferenceLag", outcome);
        join(&mut best, p, "inferenceLag");
    }
    if let Some(slo) = &policy.slo {
        let slo_state = b.state.slo.get_or_insert_with(Default::default);
        let plan = crate::slo::plan(
            slo,
            &slo.tuning,
            slo_state,
            obs,
            policy.max_replicas,
            now,
            policy.stale_after_ms,
        );
        let p = b.add_slo(plan);
        join(&mut best, p, "slo");
    }
    if let Some(e) = &policy.external_count {
        let outcome =
            external::evaluate(e, obs.external_count.as_ref(), now, policy.stale_after_ms);
        let p = b.add("externalCount", outcome);
        join(&mut best, p, "externalCount");
    }

    // 2. Scale to zero and activation.
    if let Some(z) = &policy.scale_to_zero {
        let demand = current_demand(&b.state, obs, policy, now);
        match demand {
            Some(d) if d > 0.0 => b.state.last_active_at = Some(now),
            _ => {
                if b.state.last_active_at.is_none() {
                    b.state.last_active_at = Some(now);
                }
            }
        }
        let floor = policy.min_replicas.max(1);
        if current == 0 {
            return match demand {
                Some(d) if d > 0.0 && d >= z.activation_threshold => {
                    let desired = best.unwrap_or(1).max(floor).min(policy.max_replicas);
                    b.reasons.push(Reason::Activated {
                        signal: "demand".into(),
                        value: d,
                    });
                    b.state.recommendations.push(Recommendation {
                        at: now,
                        replicas: desired,
                    });
                    b.finish(desired, within, obs)
                }
                _ => {
                    b.reasons.push(Reason::StaysAtZero);
                    b.finish(0, within, obs)
                }
            };
        }
        let idle_for = b.state.last_active_at.map_or(0, |t| now.millis_since(t));
        if demand == Some(0.0)
            && missing.is_empty()
            && idle_for >= z.idle_ms
            && b.state.panic.is_none()
        {
            b.reasons.push(Reason::ScaleToZero { idle_ms: idle_for });
            return b.finish(0, within, obs);
        }
    }

    let Some(mut recommendation) = best else {
        b.reasons.push(Reason::NoUsableMetric { held: current });
        return b.finish(current, within, obs);
    };
    if !missing.is_empty() && recommendation < current {
        b.reasons.push(Reason::ScaleDownBlockedByMissing {
            metrics: missing.clone(),
            held: current,
        });
        recommendation = current;
    }
    if let Some((panic_replicas, _)) = panic {
        if recommendation < current {
            b.reasons
                .push(Reason::PanicHoldsScaleDown { held: current });
        }
        recommendation = recommendation.max(panic_replicas).max(current);
    }

    // 4. Behaviors.
    let min_replicas = if policy.scale_to_zero.is_some() {
        policy.min_replicas.max(1)
    } else {
        policy.min_replicas
    };
    let input = NormalizeInput {
        behavior: &policy.behavior,
        min_replicas,
        max_replicas: policy.max_replicas,
        current_replicas: current,
        recommendation,
        now,
    };
    let normalized = behavior::normalize(&input, &b.state);
    b.state.recommendations = normalized.recommendations;
    b.reasons.extend(normalized.reasons);
    let mut desired = normalized.desired;
    let mut limit = normalized.limit;

    // 5. Panic mode: straight to the panic proposal (within max), never down.
    if let Some((panic_replicas, demand_percent)) = panic {
        b.panic = true;
        let target = panic_replicas.min(policy.max_replicas).max(current);
        if target > desired {
            b.reasons.push(Reason::Panic {
                demand_percent,
                replicas: target,
            });
            limit = if target == policy.max_replicas && panic_replicas > policy.max_replicas {
                LimitReason::TooManyReplicas
            } else {
                LimitReason::DesiredWithinRange
            };
        } else if desired >= current {
            b.reasons.push(Reason::Panic {
                demand_percent,
                replicas: desired,
            });
        }
        desired = desired.max(target);
    }
    b.finish(desired, limit, obs)
}

/// Demand right now for scale-to-zero: requests in flight or arriving, lag, or backlog.
/// `None` when a configured signal has no fresh data (then the target is not idle).
fn current_demand(state: &State, obs: &Observation, policy: &Policy, now: Time) -> Option<f64> {
    let mut demand: f64 = 0.0;
    if policy.concurrency.is_some() || policy.inference_lag.is_some() || policy.slo.is_some() {
        let latest = traffic::latest(&state.traffic, now, policy.stale_after_ms)?;
        let n = state.traffic.len();
        let arrived = if n >= 2 {
            (latest.arrivals_total - state.traffic[n - 2].arrivals_total).max(0.0)
        } else {
            0.0
        };
        demand = demand
            .max(latest.in_flight)
            .max(arrived)
            .max(traffic::outstanding(latest));
    }
    if policy.external_count.is_some() {
        let s = obs.external_count.as_ref()?;
        if !crate::observation::is_usable(s.value)
            || !crate::observation::is_fresh(s.at, now, policy.stale_after_ms)
        {
            return None;
        }
        demand = demand.max(s.value);
    }
    Some(demand)
}
