//! The one entry point every driver calls: `decide(policy, observation, state, now)`.
//!
//! Order of work, following HPA's reconcile loop and adding Ebb's modes (one function each):
//! 0. schedules: open windows raise the floor or lower the ceiling for this decision;
//! 1. the target's own bounds (at zero without scale-to-zero, above max, below min);
//! 2. one proposal per HPA metric and Ebb signal;
//! 3. scale to zero and activation from zero (activation sizes from the proposals);
//! 4. the recommendation: the proposals combined by max; missing metrics may hold replicas
//!    but never lower them, and panic mode never lowers them either;
//! 5. HPA behaviors (stabilization, rate policies, min/max);
//! 6. panic mode, which bypasses the scale-up limits;
//! 7. a new autoscaler's initial scale, a floor until that many replicas are ready;
//! 8. an operator's hold (pause), which keeps or sets the count and reports the proposal;
//! 9. victim ranking for a scale-in (when the decision is finished).

use crate::behavior::{self, NormalizeInput};
use crate::calculator::{self, CalcContext, MetricInput, MetricProposal};
use crate::observation::{Fallback, MetricObservation, MetricValues, Observation};
use crate::policy::{FormulaMetric, MetricSource, Policy, ScaleToZero, Target};
use crate::quantity;
use crate::reason::{LimitReason, Reason};
use crate::sanitize;
use crate::signals::{concurrency, external, lag, traffic, SignalOutcome};
use crate::state::{Recommendation, State};
use crate::time::Time;
use crate::victims::rank_victims;
use crate::{schedule, slo};
use serde::Serialize;
use std::borrow::Cow;

/// The LLM SLO's signal name, in proposals, reasons and fallbacks (`slo.ttft` / `slo.itl`).
pub(crate) const TOKEN_SLO_SIGNAL: &str = "llmSlo";

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
    /// The replicas the policy asks for: the same as `desired_replicas` unless an operator
    /// holds the count, when this is what Ebb would do (for status and metrics).
    pub proposed_replicas: u32,
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
    /// A floor an open schedule window raised above the policy's own (0 when none): it
    /// brings a target up from zero and keeps it from going there.
    schedule_floor: u32,
}

impl Builder {
    fn finish(
        mut self,
        desired: u32,
        proposed: u32,
        limit: LimitReason,
        obs: &Observation,
    ) -> Decision {
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
            proposed_replicas: proposed,
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

    /// An SLO plan's proposal under `name` (`slo`, or the LLM SLO's).
    fn add_slo(&mut self, name: &str, plan: crate::slo::Plan) -> Option<u32> {
        match plan {
            crate::slo::Plan::Proposal {
                replicas,
                rate,
                reasons,
            } => {
                self.reasons.extend(reasons);
                self.proposals.push(Proposal {
                    name: name.into(),
                    replicas: Some(replicas),
                    value: Some(rate),
                    missing: None,
                });
                Some(replicas)
            }
            crate::slo::Plan::Missing(why) => {
                self.missing(name, why);
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
/// The stages run in the order the module documentation gives.
pub fn decide(policy: &Policy, obs: &Observation, state: &State, now: Time) -> Decision {
    decide_from(policy, obs, state.clone(), now)
}

/// [`decide`] from a state the caller gives up (the [`crate::Scaler`]'s own): the decision's
/// state is that one carried forward, with no copy of the history made.
pub(crate) fn decide_from(policy: &Policy, obs: &Observation, state: State, now: Time) -> Decision {
    let mut b = Builder {
        now,
        current: obs.current_replicas,
        // Room for a few metrics' proposals and reasons without growing.
        proposals: Vec::with_capacity(4),
        reasons: Vec::with_capacity(8),
        state,
        panic: false,
        schedule_floor: 0,
    };
    let policy = &*scheduled_bounds(policy, obs, &mut b);
    let keep_ms = policy
        .concurrency
        .as_ref()
        .map_or(0, |c| c.stable_window_ms)
        .max(policy.inference_lag.as_ref().map_or(0, |l| l.window_ms))
        .max(if policy.slo.is_some() { 2_000 } else { 0 });
    traffic::record(&mut b.state.traffic, obs.traffic.as_ref(), now, keep_ms);
    behavior::prune_events(&policy.behavior, &mut b.state, now);

    let (desired, limit) = count(policy, obs, &mut b);
    let proposed = initial_scale(policy, obs, desired, &mut b);
    let desired = hold(policy, proposed, &mut b);
    b.finish(desired, proposed, limit, obs)
}

/// Stage 0: the policy with the bounds its open schedule windows set (the policy itself when
/// none is open or none changes a bound).
fn scheduled_bounds<'p>(policy: &'p Policy, obs: &Observation, b: &mut Builder) -> Cow<'p, Policy> {
    if policy.schedules.is_empty() {
        return Cow::Borrowed(policy);
    }
    let unix_ms = obs.epoch_unix_ms.saturating_add(b.now.as_millis());
    let lead_ms = policy
        .slo
        .as_ref()
        .map_or(schedule::DEFAULT_PREWARM_MS, |s| {
            crate::time::secs_to_millis(slo::plan::lead_seconds(s, b.state.slo.as_ref()))
        });
    let own = (policy.min_replicas, policy.max_replicas);
    let bounds = schedule::bounds(&policy.schedules, own, unix_ms, lead_ms);
    for &(i, phase) in &bounds.windows {
        let s = &policy.schedules[i];
        b.reasons.push(Reason::Schedule {
            window: s.name.clone(),
            describe: s.describe.clone(),
            min_replicas: s.min_replicas,
            max_replicas: s.max_replicas,
            phase,
        });
    }
    if (bounds.min_replicas, bounds.max_replicas) == own {
        return Cow::Borrowed(policy);
    }
    if bounds.min_replicas > policy.min_replicas {
        b.schedule_floor = bounds.min_replicas;
    }
    let mut scheduled = policy.clone();
    scheduled.min_replicas = bounds.min_replicas;
    scheduled.max_replicas = bounds.max_replicas;
    Cow::Owned(scheduled)
}

/// Stage 8: an operator's hold (pause) replaces the count, and says what it would have been.
fn hold(policy: &Policy, proposed: u32, b: &mut Builder) -> u32 {
    let Some(hold) = policy.hold else {
        return proposed;
    };
    let held = hold.count(b.current);
    b.reasons.push(Reason::Paused {
        held,
        would_be: proposed,
    });
    held
}

/// Stages 1 to 6: the count the policy asks for.
fn count(policy: &Policy, obs: &Observation, b: &mut Builder) -> (u32, LimitReason) {
    if let Some(settled) = target_bounds(policy, b) {
        return settled;
    }
    let proposals = propose(policy, obs, b);
    if let Some(desired) = scale_to_zero(policy, obs, &proposals, b) {
        return (desired, LimitReason::DesiredWithinRange);
    }
    let Some(recommendation) = recommend(&proposals, b) else {
        let held = b.current;
        b.reasons.push(Reason::NoUsableMetric { held });
        return (held, LimitReason::DesiredWithinRange);
    };
    let (desired, limit) = apply_behaviors(policy, recommendation, b);
    match proposals.panic {
        Some(panic) => apply_panic(policy, panic, desired, limit, b),
        None => (desired, limit),
    }
}

/// Stage 7: a new autoscaler's initial scale, a floor until that many replicas are ready. It
/// applies only from the first decision on (adding it to a running policy changes nothing),
/// and not to a target at zero that the policy may not scale (someone else paused it).
fn initial_scale(policy: &Policy, obs: &Observation, desired: u32, b: &mut Builder) -> u32 {
    if b.state.initial_scale_reached {
        return desired;
    }
    let Some(initial) = policy.initial_replicas else {
        b.state.initial_scale_reached = true;
        return desired;
    };
    let ready = obs.ready_replicas();
    if ready >= initial || (b.current == 0 && policy.scale_to_zero.is_none()) {
        b.state.initial_scale_reached = true;
        return desired;
    }
    if desired < initial {
        b.reasons.push(Reason::InitialScale {
            replicas: initial,
            ready,
        });
        // Remembered like any recommendation, so the scale-down window holds it a while
        // after it is reached rather than dropping it the moment it is.
        b.state.recommendations.push(Recommendation {
            at: b.now,
            replicas: initial,
        });
    }
    desired.max(initial)
}

/// What the metrics and signals proposed, combined.
struct Proposals {
    /// The highest proposal, if any metric or signal made one.
    best: Option<u32>,
    /// The metrics and signals that could not propose.
    missing: Vec<String>,
    /// Panic mode's replicas and the panic window's demand (percent of ready capacity).
    panic: Option<(u32, f64)>,
}

impl Proposals {
    fn join(&mut self, proposal: Option<u32>, name: &str) {
        match proposal {
            Some(r) => self.best = Some(self.best.map_or(r, |b| b.max(r))),
            None => self.missing.push(name.to_string()),
        }
    }
}

/// Stage 1: the target's own bounds, as HPA's reconcile loop checks them first (at zero without
/// scale to zero, above max, below min). Returns the decision when a bound settles it.
fn target_bounds(policy: &Policy, b: &mut Builder) -> Option<(u32, LimitReason)> {
    let current = b.current;
    if current == 0 && policy.scale_to_zero.is_none() {
        b.reasons.push(Reason::ScalingDisabled);
        return Some((0, LimitReason::DesiredWithinRange));
    }
    if current < b.schedule_floor {
        let min = b.schedule_floor;
        b.reasons.push(Reason::CurrentBelowMin { min });
        return Some((min, LimitReason::TooFewReplicas));
    }
    if current > policy.max_replicas {
        let max = policy.max_replicas;
        b.reasons.push(Reason::CurrentAboveMax { max });
        return Some((max, LimitReason::TooManyReplicas));
    }
    if current > 0 && current < policy.min_replicas {
        let min = policy.min_replicas;
        b.reasons.push(Reason::CurrentBelowMin { min });
        return Some((min, LimitReason::TooFewReplicas));
    }
    None
}

/// Stage 2: one proposal per HPA metric and Ebb signal.
fn propose(policy: &Policy, obs: &Observation, b: &mut Builder) -> Proposals {
    let mut p = Proposals {
        best: None,
        missing: Vec::new(),
        panic: None,
    };
    let reads = |name: &str| policy.formula.as_ref().is_some_and(|f| f.reads(name));
    for metric in policy.metrics.iter().filter(|m| !reads(&m.name)) {
        let proposal = metric_proposal(policy, metric, obs, b);
        p.join(fallback(obs, &metric.name, &[], proposal, b), &metric.name);
    }
    if let Some(f) = &policy.formula {
        let name = &f.formula.name;
        let proposal = formula_proposal(policy, f, obs, b);
        p.join(fallback(obs, name, &f.formula.inputs, proposal, b), name);
    }
    let now = b.now;
    if let Some(c) = &policy.concurrency {
        let ready = obs.ready_replicas();
        let r = concurrency::evaluate(c, &mut b.state, ready, now, policy.stale_after_ms);
        if r.panic_ended {
            b.reasons.push(Reason::PanicEnded);
        }
        p.panic = r.panic;
        let proposal = b.add(c.metric.as_str(), r.stable);
        p.join(
            fallback(obs, c.metric.as_str(), &[], proposal, b),
            c.metric.as_str(),
        );
    }
    if let Some(l) = &policy.inference_lag {
        let outcome = lag::evaluate(l, &mut b.state, b.current, now, policy.stale_after_ms);
        let proposal = b.add("inferenceLag", outcome);
        p.join(
            fallback(obs, "inferenceLag", &[], proposal, b),
            "inferenceLag",
        );
    }
    if let Some(slo) = &policy.slo {
        let slo_state = b.state.slo.get_or_insert_with(Default::default);
        let stale = policy.stale_after_ms;
        let range = crate::slo::Range {
            max_replicas: policy.max_replicas,
            to_zero: policy.scale_to_zero.is_some(),
        };
        let plan = crate::slo::plan(slo, &slo.tuning, slo_state, obs, range, now, stale);
        let proposal = b.add_slo("slo", plan);
        p.join(fallback(obs, "slo", &[], proposal, b), "slo");
    }
    if let Some(t) = &policy.token_slo {
        let state = b.state.token_slo.get_or_insert_with(Default::default);
        let window_ms = policy.engine.as_ref().map_or(0, |e| e.window_ms);
        let plan = crate::slo::tokens::plan(
            t,
            state,
            obs,
            (policy.max_replicas, window_ms),
            now,
            policy.stale_after_ms,
        );
        let proposal = b.add_slo(TOKEN_SLO_SIGNAL, plan);
        p.join(
            fallback(obs, TOKEN_SLO_SIGNAL, &[], proposal, b),
            TOKEN_SLO_SIGNAL,
        );
    }
    if let Some(e) = &policy.external_count {
        let outcome =
            external::evaluate(e, obs.external_count.as_ref(), now, policy.stale_after_ms);
        let proposal = b.add("externalCount", outcome);
        p.join(
            fallback(obs, "externalCount", &[], proposal, b),
            "externalCount",
        );
    }
    p
}

/// A missing metric fed by a source past its failure threshold (directly, or through one of
/// the `inputs` a formula reads): the source's fallback stands in for it (replacing the
/// missing outcome and its reason), unless the fallback is to hold.
fn fallback(
    obs: &Observation,
    name: &str,
    inputs: &[String],
    proposal: Option<u32>,
    b: &mut Builder,
) -> Option<u32> {
    if proposal.is_some() {
        return proposal;
    }
    let feeds = |m: &String| m == name || inputs.contains(m);
    let f = obs.fallbacks.iter().find(|f| f.metrics.iter().any(feeds))?;
    let replicas = match f.action {
        Fallback::Hold => return None,
        Fallback::Replicas(n) => n,
        Fallback::CurrentReplicasIfHigher(n) => b.current.max(n),
        Fallback::CurrentReplicasIfLower(n) => b.current.min(n),
    };
    b.reasons
        .retain(|r| !matches!(r, Reason::MetricMissing { metric, .. } if metric == name));
    if let Some(p) = b.proposals.iter_mut().find(|p| p.name == name) {
        p.replicas = Some(replicas);
    }
    b.reasons.push(Reason::Fallback {
        source: f.source.clone(),
        failures: f.failures,
        metric: name.to_string(),
        action: f.action,
        replicas,
    });
    Some(replicas)
}

/// One HPA metric's proposal, with HPA's calculator (after the sanitizer has vetted the input).
fn metric_proposal(
    policy: &Policy,
    metric: &crate::policy::Metric,
    obs: &Observation,
    b: &mut Builder,
) -> Option<u32> {
    let observed = obs.metrics.iter().find(|m| m.name == metric.name);
    match calculate(policy, (&metric.source, &metric.target), observed, obs, b) {
        Ok(p) => report(&metric.name, &metric.target, &p, b),
        Err(why) => b.add(&metric.name, SignalOutcome::Missing(why)),
    }
}

/// HPA's calculator on one metric as observed, after the sanitizer has vetted the sample.
fn calculate(
    policy: &Policy,
    (source, target): (&MetricSource, &Target),
    observed: Option<&MetricObservation>,
    obs: &Observation,
    b: &Builder,
) -> Result<MetricProposal, String> {
    let ctx = CalcContext {
        current_replicas: b.current,
        pods: &obs.pods,
        now: b.now,
        tolerance: policy.tolerance,
        readiness: policy.readiness,
    };
    let name = observed.map_or("", |o| o.name.as_str());
    sanitize::metric_input(observed, b.now, policy.stale_after_ms).and_then(|input| {
        calculator::replicas_for_metric(source, name, target, input, &ctx)
            .map_err(|e| e.to_string())
    })
}

/// A calculated metric's current value as HPA reports it: percent for a Utilization target,
/// units otherwise (per pod for AverageValue, in total for Value).
fn current_value(target: &Target, p: &MetricProposal) -> (f64, String) {
    match target {
        Target::Utilization(_) => (p.current as f64, format!("{}%", p.current)),
        _ => (p.current as f64 / 1000.0, quantity::milli_text(p.current)),
    }
}

/// Records a calculated metric's proposal and its reasons.
fn report(name: &str, target: &Target, p: &MetricProposal, b: &mut Builder) -> Option<u32> {
    let (value, value_text) = current_value(target, p);
    if p.within_tolerance {
        b.reasons.push(Reason::WithinTolerance {
            metric: name.to_string(),
            ratio: p.usage_ratio,
        });
    }
    let outcome = SignalOutcome::Proposal {
        replicas: p.replicas,
        value,
        value_text,
        target_text: target.text(),
    };
    b.add(name, outcome)
}

/// A formula input: the metric's total over the target, so that an expression reads the
/// whole target's waiting requests or requests per second. Per-pod samples count as their
/// mean times the ready pods (at least the pods sampled: a ready pod not scraped yet counts
/// as an average one); an object's value and the sum of external series count as they are.
fn input_total(policy: &Policy, name: &str, obs: &Observation, now: Time) -> Result<f64, String> {
    let observed = obs.metrics.iter().find(|m| m.name == name);
    let milli = match sanitize::metric_input(observed, now, policy.stale_after_ms)? {
        MetricInput::PerPod(samples) => {
            // Summed as floats: milli-units of absurd samples overflow an integer sum.
            let target_pods: Vec<f64> = samples
                .iter()
                .filter(|(pod, _)| obs.pods.iter().any(|p| p.name == *pod && !p.deleting))
                .map(|(_, m)| m.milli as f64)
                .collect();
            if target_pods.is_empty() {
                return Err("no sample from the target's pods".into());
            }
            let sampled = target_pods.len() as f64;
            let mean = target_pods.iter().sum::<f64>() / sampled;
            mean * sampled.max(f64::from(obs.ready_replicas()))
        }
        MetricInput::Object(v) => v as f64,
        MetricInput::External(values) => values.iter().map(|v| *v as f64).sum::<f64>(),
    };
    Ok(milli / 1000.0)
}

/// The formula's proposal: its inputs' totals combined by the expression, then HPA's
/// calculator on the composite as an External metric with the formula's target. A missing
/// input, a failed evaluation or a result that is not a finite, non-negative number makes the
/// composite missing (never zero).
fn formula_proposal(
    policy: &Policy,
    f: &FormulaMetric,
    obs: &Observation,
    b: &mut Builder,
) -> Option<u32> {
    let name = f.formula.name.as_str();
    let mut values: Vec<(&str, f64)> = Vec::new();
    for input in &f.formula.inputs {
        match input_total(policy, input, obs, b.now) {
            Ok(v) => values.push((input, v)),
            Err(why) => {
                let why = format!("input {input} missing: {why}");
                return b.add(name, SignalOutcome::Missing(why));
            }
        }
    }
    let composite = match f.formula.evaluate(&values) {
        Ok(v) if v.is_finite() && v >= 0.0 => v,
        Ok(v) => {
            return b.add(
                name,
                SignalOutcome::Missing(format!("the formula gave {v}")),
            )
        }
        Err(why) => return b.add(name, SignalOutcome::Missing(why)),
    };
    b.reasons.push(Reason::Formula {
        name: name.to_string(),
        expression: f.formula.expression.clone(),
        value: composite,
        inputs: values.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
    });
    let observed = MetricObservation {
        name: name.to_string(),
        values: MetricValues::External {
            values: vec![composite],
            at: b.now,
        },
    };
    let external = MetricSource::External { selector: None };
    match calculate(policy, (&external, &f.target), Some(&observed), obs, b) {
        Ok(p) => report(name, &f.target, &p, b),
        Err(why) => b.add(name, SignalOutcome::Missing(why)),
    }
}

/// Stage 3: scale to zero and activation from zero. Returns the count when it settles the
/// decision (activated from zero, staying at zero, or idle long enough to go to zero).
fn scale_to_zero(
    policy: &Policy,
    obs: &Observation,
    proposals: &Proposals,
    b: &mut Builder,
) -> Option<u32> {
    let z = policy.scale_to_zero.as_ref()?;
    let now = b.now;
    let demand = current_demand(&b.state, obs, policy, &b.proposals, now);
    if demand.known > 0.0 || b.state.last_active_at.is_none() {
        b.state.last_active_at = Some(now);
    }
    if b.current == 0 {
        return Some(from_zero(policy, z, &demand, proposals, b));
    }
    let idle_for = b.state.last_active_at.map_or(0, |t| now.millis_since(t));
    // The SLO proposes zero only through a silence before a burst it predicts (its reason
    // says so); every other proposal must agree.
    let silent = proposals.best == Some(0) && slo_proposal(b) == Some(0);
    let idled = z.idle_ms.is_some_and(|ms| idle_for >= ms);
    let idle = demand.known == 0.0
        && demand.unknown.is_empty()
        && proposals.missing.is_empty()
        && (idled || silent);
    if idle && b.state.panic.is_none() && b.schedule_floor == 0 {
        if idled {
            b.reasons.push(Reason::ScaleToZero { idle_ms: idle_for });
        }
        return Some(0);
    }
    None
}

/// The SLO signal's proposal in this decision, if it made one.
fn slo_proposal(b: &Builder) -> Option<u32> {
    b.proposals
        .iter()
        .find(|p| p.name == "slo")
        .and_then(|p| p.replicas)
}

/// At zero: activates on any known demand at the threshold (sized by the proposals), and
/// otherwise stays, saying whether the demand is below the threshold or not known at all.
fn from_zero(
    policy: &Policy,
    z: &ScaleToZero,
    demand: &Demand,
    proposals: &Proposals,
    b: &mut Builder,
) -> u32 {
    // From zero with nothing waiting, the SLO proposes replicas only for a recurring burst
    // due within a cold start (its reason says which).
    let prewarm =
        demand.known == 0.0 && demand.unknown.is_empty() && slo_proposal(b).is_some_and(|r| r > 0);
    if prewarm || (demand.known > 0.0 && demand.known >= z.activation_threshold) {
        let floor = policy.min_replicas.max(1);
        let proposed = proposals.best.unwrap_or(1).max(floor);
        let activation = z.activation_replicas;
        let desired = proposed.max(activation).min(policy.max_replicas);
        if !prewarm {
            b.reasons.push(Reason::Activated {
                signal: demand.source.clone(),
                value: demand.known,
            });
        }
        if activation > proposed {
            b.reasons.push(Reason::ActivationScale {
                replicas: activation,
            });
        }
        b.state.recommendations.push(Recommendation {
            at: b.now,
            replicas: desired,
        });
        return desired;
    }
    if demand.known == 0.0 && !demand.unknown.is_empty() {
        b.reasons.push(Reason::DemandUnknown {
            sources: demand.unknown.clone(),
        });
    } else {
        b.reasons.push(Reason::StaysAtZero);
    }
    0
}

/// Stage 4: the recommendation before behaviors: the highest proposal, held at the current
/// count when a metric is missing (never lowered on a gap) and during panic mode.
fn recommend(proposals: &Proposals, b: &mut Builder) -> Option<u32> {
    let current = b.current;
    let mut recommendation = proposals.best?;
    if !proposals.missing.is_empty() && recommendation < current {
        b.reasons.push(Reason::ScaleDownBlockedByMissing {
            metrics: proposals.missing.clone(),
            held: current,
        });
        recommendation = current;
    }
    if let Some((panic_replicas, _)) = proposals.panic {
        if recommendation < current {
            b.reasons
                .push(Reason::PanicHoldsScaleDown { held: current });
        }
        recommendation = recommendation.max(panic_replicas).max(current);
    }
    Some(recommendation)
}

/// Stage 5: HPA behaviors (stabilization windows, rate policies, min/max).
fn apply_behaviors(policy: &Policy, recommendation: u32, b: &mut Builder) -> (u32, LimitReason) {
    let min_replicas = if policy.scale_to_zero.is_some() {
        policy.min_replicas.max(1)
    } else {
        policy.min_replicas
    };
    let input = NormalizeInput {
        behavior: &policy.behavior,
        min_replicas,
        max_replicas: policy.max_replicas,
        current_replicas: b.current,
        recommendation,
        now: b.now,
    };
    let normalized = behavior::normalize_owned(&input, &mut b.state);
    b.state.recommendations = normalized.recommendations;
    let floor_of_one = min_replicas > policy.min_replicas;
    b.reasons
        .extend(normalized.reasons.into_iter().map(|r| match r {
            Reason::TooFewReplicas { min, .. } => Reason::TooFewReplicas {
                min,
                through_scale_to_zero: floor_of_one,
            },
            other => other,
        }));
    (normalized.desired, normalized.limit)
}

/// Stage 6: panic mode goes straight to its proposal (within max), bypassing the scale-up
/// limits, and never down.
fn apply_panic(
    policy: &Policy,
    (panic_replicas, demand_percent): (u32, f64),
    desired: u32,
    limit: LimitReason,
    b: &mut Builder,
) -> (u32, LimitReason) {
    b.panic = true;
    let current = b.current;
    let target = panic_replicas.min(policy.max_replicas).max(current);
    let mut limit = limit;
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
    (desired.max(target), limit)
}

/// What is known of the demand now, for scale to zero and activation.
#[derive(Debug, Default)]
struct Demand {
    /// The largest demand a source reports: requests in flight or arrived, items queued, or a
    /// metric's value where that metric asks for replicas.
    known: f64,
    /// The source that reported it.
    source: String,
    /// Sources that could not say (no fresh, usable sample).
    unknown: Vec<String>,
}

impl Demand {
    fn add(&mut self, source: &str, value: f64) {
        if value > self.known {
            self.known = value;
            self.source = source.to_string();
        }
    }
}

/// The demand each source reports: traffic (for the concurrency, inference-lag and SLO
/// blocks), the external count, and each metric that proposes replicas from a positive value
/// (KEDA activates on any active trigger). A source without a usable sample is unknown, never
/// zero: a missing signal neither activates nor lets the target go to zero.
fn current_demand(
    state: &State,
    obs: &Observation,
    policy: &Policy,
    proposals: &[Proposal],
    now: Time,
) -> Demand {
    let mut demand = Demand::default();
    if policy.concurrency.is_some() || policy.inference_lag.is_some() || policy.slo.is_some() {
        match traffic::latest(&state.traffic, now, policy.stale_after_ms) {
            Some(latest) => {
                let n = state.traffic.len();
                let arrived = if n >= 2 {
                    (latest.arrivals_total - state.traffic[n - 2].arrivals_total).max(0.0)
                } else {
                    0.0
                };
                let requests = latest
                    .in_flight
                    .max(arrived)
                    .max(traffic::outstanding(latest));
                demand.add("traffic", requests);
            }
            None => demand.unknown.push("traffic".into()),
        }
    }
    if policy.external_count.is_some() {
        match obs.external_count.as_ref().filter(|s| {
            crate::observation::is_usable(s.value)
                && crate::observation::is_fresh(s.at, now, policy.stale_after_ms)
        }) {
            Some(s) => demand.add("externalCount", s.value),
            None => demand.unknown.push("externalCount".into()),
        }
    }
    let formula = policy.formula.as_ref().map(|f| f.formula.name.as_str());
    let names = policy
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .chain(formula);
    for name in names {
        let Some(p) = proposals.iter().find(|p| p.name == name) else {
            continue;
        };
        if let (Some(replicas), Some(value)) = (p.replicas, p.value) {
            if replicas > 0 && value.is_finite() {
                demand.add(name, value);
            }
        }
    }
    demand
}
