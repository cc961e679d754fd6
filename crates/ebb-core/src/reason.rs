//! Why a decision came out as it did, in words a user can read.
//!
//! Every driver shows these same reasons: the controller in status and Events, the local
//! runtime in its terminal view, the simulator in its report. Each has a stable code (like
//! HPA's condition reasons) for machines and a sentence for people.

use crate::time::{fmt_percent, fmt_seconds, fmt_short, fmt_window};
use serde::Serialize;
use std::fmt;

/// One reason that shaped a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "code", rename_all_fields = "camelCase")]
pub enum Reason {
    /// A metric or signal proposed a replica count.
    MetricProposal {
        /// Metric or signal name.
        metric: String,
        /// Its current value, formatted.
        value: String,
        /// Its target, formatted.
        target: String,
        /// The replicas it proposed.
        replicas: u32,
    },
    /// A metric's usage ratio was within tolerance, so it proposed the current count.
    WithinTolerance {
        /// Metric name.
        metric: String,
        /// Usage ratio.
        ratio: f64,
    },
    /// A metric or signal could not be used.
    MetricMissing {
        /// Metric or signal name.
        metric: String,
        /// Why.
        why: String,
    },
    /// Some metrics were missing and the others proposed fewer replicas: held.
    ScaleDownBlockedByMissing {
        /// The missing metrics.
        metrics: Vec<String>,
        /// The count held.
        held: u32,
    },
    /// No metric or signal was usable: replicas held.
    NoUsableMetric {
        /// The count held.
        held: u32,
    },
    /// The panic window's demand is over the threshold: scaling up at once.
    Panic {
        /// Panic-window demand as a percentage of ready capacity.
        demand_percent: f64,
        /// Replicas panic mode asks for.
        replicas: u32,
    },
    /// Panic mode forbids scaling down.
    PanicHoldsScaleDown {
        /// The count held.
        held: u32,
    },
    /// Panic mode ended after a stable window without a spike.
    PanicEnded,
    /// Scale-up held to the lowest recommendation within the scale-up window.
    ScaleUpStabilized {
        /// Window length, ms.
        window_ms: i64,
        /// The stabilized count.
        replicas: u32,
    },
    /// Scale-down held to the highest recommendation within the scale-down window.
    ScaleDownStabilized {
        /// Window length, ms.
        window_ms: i64,
        /// The stabilized count.
        replicas: u32,
    },
    /// A scale-up rate policy limited the change.
    ScaleUpLimit {
        /// The policies, formatted.
        policies: String,
        /// The limit.
        limit: u32,
    },
    /// A scale-down rate policy limited the change.
    ScaleDownLimit {
        /// The policies, formatted.
        policies: String,
        /// The limit.
        limit: u32,
    },
    /// `selectPolicy: Disabled` for scale-up.
    ScaleUpDisabled,
    /// `selectPolicy: Disabled` for scale-down.
    ScaleDownDisabled,
    /// Clamped to maxReplicas.
    TooManyReplicas {
        /// maxReplicas.
        max: u32,
    },
    /// Clamped to minReplicas.
    TooFewReplicas {
        /// minReplicas, or 1 where the policy's is 0 (see `through_scale_to_zero`).
        min: u32,
        /// The policy's minReplicas is 0 and the floor is 1: zero is reached only through
        /// `scaleToZero`'s own rules, not by a proposal of zero.
        through_scale_to_zero: bool,
    },
    /// The target had more replicas than maxReplicas: brought down to max at once.
    CurrentAboveMax {
        /// maxReplicas.
        max: u32,
    },
    /// The target had fewer replicas than minReplicas: brought up to min at once.
    CurrentBelowMin {
        /// minReplicas.
        min: u32,
    },
    /// The target is at zero and the policy has no scale-to-zero: HPA leaves it alone.
    ScalingDisabled,
    /// No traffic for the idle period: scaling to zero.
    ScaleToZero {
        /// Idle time, ms.
        idle_ms: i64,
    },
    /// At zero and demand reached the activation threshold: scaling up from zero.
    Activated {
        /// What woke it.
        signal: String,
        /// Its value.
        value: f64,
    },
    /// Scaling up from zero to at least the policy's activation replicas.
    ActivationScale {
        /// The activation replicas.
        replicas: u32,
    },
    /// The initial scale holds until that many replicas are ready.
    InitialScale {
        /// The initial replicas.
        replicas: u32,
        /// Replicas ready now.
        ready: u32,
    },
    /// A failing source's fallback stands in for a metric it feeds.
    Fallback {
        /// The source.
        source: String,
        /// Its failures in a row.
        failures: u32,
        /// The metric or signal.
        metric: String,
        /// The fallback.
        action: crate::observation::Fallback,
        /// What it proposes.
        replicas: u32,
    },
    /// A formula combined its inputs into the composite metric.
    Formula {
        /// The composite's name.
        name: String,
        /// The expression.
        expression: String,
        /// The composite's value.
        value: f64,
        /// Each input's current value.
        inputs: Vec<(String, f64)>,
    },
    /// A schedule window is open (or about to open) and sets a bound.
    Schedule {
        /// The window's name.
        window: String,
        /// Its times and time zone as written.
        describe: String,
        /// Its floor.
        min_replicas: Option<u32>,
        /// Its ceiling.
        max_replicas: Option<u32>,
        /// Open, or pre-warming ahead of its start.
        phase: crate::schedule::Phase,
    },
    /// An operator holds the count (paused); the policy's proposal is reported, not applied.
    Paused {
        /// The count held.
        held: u32,
        /// What the policy would set.
        would_be: u32,
    },
    /// At zero and demand is below the activation threshold.
    StaysAtZero,
    /// At zero and no source can say what the demand is: staying at zero, and saying so
    /// rather than calling it below the threshold.
    DemandUnknown {
        /// The sources without a fresh, usable sample.
        sources: Vec<String>,
    },
    /// The SLO model's plan: the fewest replicas predicted to meet the SLO, with its numbers.
    SloPlan {
        /// The SLO's latency, seconds.
        latency_seconds: f64,
        /// The SLO's attainment (0.999 = 99.9%).
        attainment: f64,
        /// The attainment planned for: the SLO's, or less where service times alone come
        /// close to the SLO (waiting then gets a share of the allowed misses).
        planned_for: f64,
        /// Replicas the model asks for now.
        replicas: u32,
        /// Their predicted attainment.
        predicted: f64,
        /// The arrival rate planned for, req/s (forecast and margin included).
        rate: f64,
        /// Index of dispersion of per-second arrivals.
        dispersion: f64,
        /// The arrivals' `ca^2` the model used: the dispersion, or less where the queues seen
        /// stayed shorter than it predicts.
        arrival_scv: f64,
        /// Mean service time, ms.
        service_ms: f64,
        /// Its standard deviation, ms.
        service_sd_ms: f64,
        /// Whether the service time was measured (false: Little's law from in-flight requests).
        service_measured: bool,
        /// The planned rate against the current level, percent.
        forecast_percent: f64,
        /// Whether a jump in the short-window rate set the plan.
        jump: bool,
        /// The cold-start horizon, seconds.
        cold_start_seconds: f64,
        /// The cold starts measured into it (0: configured or assumed), so that a horizon
        /// read from one fast start is seen as such.
        cold_starts_measured: u32,
        /// Whether the belief about cold starts' spread still widens the horizon (fewer
        /// starts measured than the estimate averages over), which the reader should see.
        cold_start_widened: bool,
        /// Where the lead spans few service times: the requests in flight the count was sized
        /// from over it (`slo::transient`); `None` for the steady state.
        over_lead: Option<OverLead>,
        /// Requests waiting beyond the ready replicas' slots, whose draining over the lead (or
        /// the SLO's latency, if longer) the rate includes.
        queued: f64,
    },
    /// The LLM SLO's token model sized the replicas.
    TokenSloPlan {
        /// The TTFT goal and what it allows.
        ttft: Option<TokenGoal>,
        /// The ITL goal and what it allows.
        itl: Option<TokenGoal>,
        /// Replicas the model asks for now.
        replicas: u32,
        /// Replicas proposed: more where a dip shorter than a cold start keeps them.
        proposed: u32,
        /// The fleet's token rate planned for, tokens/s (forecast included).
        tokens_per_second: f64,
        /// The forecast's peak within the cold start against the rate's level, percent.
        forecast_percent: f64,
        /// The rate's level against the last window's rate, percent: above 0 while a fall
        /// is still being followed (the level is smoothed), and then what the plan sizes for.
        level_percent: f64,
        /// The level's time constant, seconds.
        level_seconds: f64,
        /// Work per replica the KV cache allows, tokens/s.
        kv_work: Option<f64>,
        /// Whether a quantile over its goal now asked for more than the plan.
        over_now: bool,
        /// Whether the response is still being learnt (no scale-down until it is).
        learning: bool,
        /// The cold-start horizon, seconds.
        cold_start_seconds: f64,
        /// The cold starts measured into it (0: configured or assumed).
        cold_starts_measured: u32,
        /// Whether the belief about cold starts' spread still widens the horizon.
        cold_start_widened: bool,
    },
    /// Replicas kept because the dip is shorter than a cold start (the ski-rental rule).
    SloKeepsThroughDip {
        /// Replicas kept.
        replicas: u32,
        /// Replicas needed now.
        needed: u32,
        /// The cold start, seconds.
        cold_start_seconds: f64,
    },
    /// Bursts have recurred at a steady interval: replicas for the next one are started one
    /// cold start before it is due.
    SloRecurringBurst {
        /// Replicas for the burst's first cold start, within its share of the allowed misses.
        replicas: u32,
        /// The rate the last bursts peaked at, req/s.
        rate: f64,
        /// The interval between bursts, seconds.
        period_seconds: f64,
        /// Seconds until the next burst is due (negative once it is late).
        due_in_seconds: f64,
        /// How early replicas are started: the cold start with its spread, seconds.
        lead_seconds: f64,
    },
    /// No replicas through a silence between recurring bursts (a policy that may scale to
    /// zero): the next burst is due well after the replicas for it would be started.
    SloSilentUntilBurst {
        /// How long no request has arrived, seconds.
        quiet_seconds: f64,
        /// Seconds until the next burst is due.
        due_in_seconds: f64,
        /// The interval between bursts, seconds.
        period_seconds: f64,
        /// How early replicas are started for it: the cold start with its spread, seconds.
        lead_seconds: f64,
    },
    /// No replicas after an idle spell longer than a replica is worth keeping through (a
    /// policy that may scale to zero), where the spells last long enough beyond that to pay
    /// for a return and the requests that would arrive at zero fit in the waiting budget.
    SloIdleToZero {
        /// How long no request has arrived, seconds.
        quiet_seconds: f64,
        /// How long an idle replica is kept: a cold start's worth, seconds.
        keep_seconds: f64,
        /// How long the spells lasted beyond the keep time on average, seconds.
        beyond_keep_seconds: f64,
        /// The spells that average rests on, each weighed by its age.
        spells: f64,
        /// What a return costs: the replicas it starts, each for a cold start, seconds.
        restart_seconds: f64,
        /// The cold start with its spread, seconds.
        lead_seconds: f64,
        /// The SLO's latency, seconds.
        latency_seconds: f64,
        /// Share of requests within the latency after waiting the cold start.
        cold_within: f64,
        /// Share of requests that arrived within a cold start after an idle spell.
        arrived_after_idle: f64,
    },
    /// From zero with no request answered yet, so no service time known: replicas sized as if
    /// each request took the SLO's whole latency, the slowest service that could still meet
    /// it, all started at once rather than one now and the rest once it has answered.
    SloServiceUnknown {
        /// Replicas started.
        replicas: u32,
        /// The arrival rate planned for, req/s.
        rate: f64,
        /// The SLO's latency, seconds: the service time assumed.
        latency_seconds: f64,
    },
    /// The estimates have not seen enough traffic yet to scale down on.
    SloWarmingUp {
        /// Replicas held.
        held: u32,
        /// Seconds of traffic needed.
        seconds: f64,
    },
    /// Extra replicas started while capacity is short, the fastest to be kept.
    SloHedgedStart {
        /// Extra replicas.
        extra: u32,
        /// Replicas ready now.
        ready: u32,
        /// Replicas needed.
        needed: u32,
    },
    /// The SLO cannot be met even with no waiting: service times alone miss it too often.
    SloOutOfReach {
        /// The SLO's latency, seconds.
        latency_seconds: f64,
        /// The SLO's attainment.
        attainment: f64,
        /// Share of service times within the latency.
        within_without_wait: f64,
        /// Whether that share was counted (false: inferred from the mean and variance).
        within_measured: bool,
        /// Requests the count is over.
        counted_requests: f64,
        /// Under this many counted, the share still leans on the shape the mean and variance
        /// give (a few hundred requests say little about a tail).
        prior_requests: f64,
        /// The attainment planned for instead.
        planned_for: f64,
    },
    /// The attainment reached, beside the one the plan predicts: the share of the requests
    /// that ended over about the last hour (waiting, cold starts and failures included)
    /// within the SLO's latency, as the driver counted them (`slo::reached`).
    SloReached {
        /// The SLO's latency, seconds.
        latency_seconds: f64,
        /// The latency the driver counted answers within, seconds: the SLO's, or a histogram
        /// bucket's bound below it (a count that can only understate what was reached).
        counted_at_seconds: f64,
        /// The SLO's attainment.
        attainment: f64,
        /// The share reached.
        reached: f64,
        /// The requests it is over, weighted by age.
        requests: f64,
        /// Whether it falls short of the SLO by more than chance.
        short: bool,
    },
    /// These pods were ranked first to remove on scale-in.
    Victims {
        /// Pod names, in removal order.
        pods: Vec<String>,
    },
    /// Disaggregated serving: a pool raised to keep decode replicas per prefill replica
    /// within the ratio the other pool's count asks for ([`crate::pools`]).
    PoolRatio {
        /// The pool raised (`prefill` or `decode`).
        pool: String,
        /// What its own policy decided.
        own: u32,
        /// What it was raised to.
        to: u32,
        /// What the other pool's own policy decided.
        other: u32,
        /// Fewest decode replicas per prefill replica.
        min: f64,
        /// Most decode replicas per prefill replica.
        max: f64,
    },
    /// Disaggregated serving: a pool's maximum or an operator's hold keeps it outside the
    /// ratio.
    PoolRatioShort {
        /// The pool short of the ratio.
        pool: String,
        /// Its count.
        count: u32,
        /// The other pool's count.
        other: u32,
        /// Fewest decode replicas per prefill replica.
        min: f64,
        /// Most decode replicas per prefill replica.
        max: f64,
    },
}

impl Reason {
    /// Every code a decision can carry; a test checks each is produced and asserted.
    pub const ALL_CODES: &'static [&'static str] = &[
        "MetricProposal",
        "WithinTolerance",
        "MetricMissing",
        "ScaleDownBlockedByMissing",
        "NoUsableMetric",
        "Panic",
        "PanicHoldsScaleDown",
        "PanicEnded",
        "ScaleUpStabilized",
        "ScaleDownStabilized",
        "ScaleUpLimit",
        "ScaleDownLimit",
        "ScaleUpDisabled",
        "ScaleDownDisabled",
        "TooManyReplicas",
        "TooFewReplicas",
        "CurrentAboveMax",
        "CurrentBelowMin",
        "ScalingDisabled",
        "ScaleToZero",
        "Activated",
        "StaysAtZero",
        "ActivationScale",
        "Paused",
        "Fallback",
        "Schedule",
        "Formula",
        "InitialScale",
        "DemandUnknown",
        "SloPlan",
        "TokenSloPlan",
        "SloKeepsThroughDip",
        "SloRecurringBurst",
        "SloSilentUntilBurst",
        "SloIdleToZero",
        "SloOutOfReach",
        "SloReached",
        "SloHedgedStart",
        "SloWarmingUp",
        "SloServiceUnknown",
        "Victims",
        "PoolRatio",
        "PoolRatioShort",
    ];

    /// A stable, machine-readable code, like HPA's condition reasons.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::MetricProposal { .. } => "MetricProposal",
            Reason::WithinTolerance { .. } => "WithinTolerance",
            Reason::MetricMissing { .. } => "MetricMissing",
            Reason::ScaleDownBlockedByMissing { .. } => "ScaleDownBlockedByMissing",
            Reason::NoUsableMetric { .. } => "NoUsableMetric",
            Reason::Panic { .. } => "Panic",
            Reason::PanicHoldsScaleDown { .. } => "PanicHoldsScaleDown",
            Reason::PanicEnded => "PanicEnded",
            Reason::ScaleUpStabilized { .. } => "ScaleUpStabilized",
            Reason::ScaleDownStabilized { .. } => "ScaleDownStabilized",
            Reason::ScaleUpLimit { .. } => "ScaleUpLimit",
            Reason::ScaleDownLimit { .. } => "ScaleDownLimit",
            Reason::ScaleUpDisabled => "ScaleUpDisabled",
            Reason::ScaleDownDisabled => "ScaleDownDisabled",
            Reason::TooManyReplicas { .. } => "TooManyReplicas",
            Reason::TooFewReplicas { .. } => "TooFewReplicas",
            Reason::CurrentAboveMax { .. } => "CurrentAboveMax",
            Reason::CurrentBelowMin { .. } => "CurrentBelowMin",
            Reason::ScalingDisabled => "ScalingDisabled",
            Reason::ScaleToZero { .. } => "ScaleToZero",
            Reason::Activated { .. } => "Activated",
            Reason::StaysAtZero => "StaysAtZero",
            Reason::ActivationScale { .. } => "ActivationScale",
            Reason::Paused { .. } => "Paused",
            Reason::Schedule { .. } => "Schedule",
            Reason::Formula { .. } => "Formula",
            Reason::Fallback { .. } => "Fallback",
            Reason::InitialScale { .. } => "InitialScale",
            Reason::DemandUnknown { .. } => "DemandUnknown",
            Reason::SloPlan { .. } => "SloPlan",
            Reason::TokenSloPlan { .. } => "TokenSloPlan",
            Reason::SloKeepsThroughDip { .. } => "SloKeepsThroughDip",
            Reason::SloRecurringBurst { .. } => "SloRecurringBurst",
            Reason::SloSilentUntilBurst { .. } => "SloSilentUntilBurst",
            Reason::SloIdleToZero { .. } => "SloIdleToZero",
            Reason::SloOutOfReach { .. } => "SloOutOfReach",
            Reason::SloReached { .. } => "SloReached",
            Reason::SloHedgedStart { .. } => "SloHedgedStart",
            Reason::SloWarmingUp { .. } => "SloWarmingUp",
            Reason::SloServiceUnknown { .. } => "SloServiceUnknown",
            Reason::Victims { .. } => "Victims",
            Reason::PoolRatio { .. } => "PoolRatio",
            Reason::PoolRatioShort { .. } => "PoolRatioShort",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::MetricProposal {
                metric,
                value,
                target,
                replicas,
            } => write!(
                f,
                "metric {metric} proposed {replicas} (current {value}, target {target})"
            ),
            Reason::WithinTolerance { metric, ratio } => write!(
                f,
                "metric {metric} within tolerance (usage ratio {ratio:.3}): no change"
            ),
            Reason::MetricMissing { metric, why } => {
                write!(f, "metric {metric} missing: no scale-down ({why})")
            }
            Reason::ScaleDownBlockedByMissing { metrics, held } => write!(
                f,
                "scale-down blocked: metric{} {} missing, holding {held}",
                if metrics.len() == 1 { "" } else { "s" },
                metrics.join(", ")
            ),
            Reason::NoUsableMetric { held } => {
                write!(f, "no usable metric: holding {held} replicas")
            }
            Reason::Panic {
                demand_percent,
                replicas,
            } => write!(
                f,
                "panic mode: short-window demand at {demand_percent:.0}% of ready capacity, scaling to {replicas} at once"
            ),
            Reason::PanicHoldsScaleDown { held } => {
                write!(f, "panic mode: no scale-down, holding {held}")
            }
            Reason::PanicEnded => write!(f, "panic mode ended: a stable window passed without a spike"),
            Reason::ScaleUpStabilized { window_ms, replicas } => write!(
                f,
                "held by scale-up stabilization window {}: lowest recent recommendation {replicas}",
                fmt_window(*window_ms)
            ),
            Reason::ScaleDownStabilized { window_ms, replicas } => write!(
                f,
                "held by scale-down stabilization window {}: highest recent recommendation {replicas}",
                fmt_window(*window_ms)
            ),
            Reason::ScaleUpLimit { policies, limit } => {
                write!(f, "scale-up limited by policy {policies} to {limit}")
            }
            Reason::ScaleDownLimit { policies, limit } => {
                write!(f, "scale-down limited by policy {policies} to {limit}")
            }
            Reason::ScaleUpDisabled => write!(f, "scale-up disabled by selectPolicy: Disabled"),
            Reason::ScaleDownDisabled => {
                write!(f, "scale-down disabled by selectPolicy: Disabled")
            }
            Reason::TooManyReplicas { max } => write!(f, "clamped to maxReplicas {max}"),
            Reason::TooFewReplicas {
                min,
                through_scale_to_zero: true,
            } => write!(
                f,
                "held at {min}: minReplicas 0 reaches zero only through scaleToZero"
            ),
            Reason::TooFewReplicas { min, .. } => write!(f, "clamped to minReplicas {min}"),
            Reason::CurrentAboveMax { max } => {
                write!(f, "current replicas above maxReplicas: scaling to {max}")
            }
            Reason::CurrentBelowMin { min } => {
                write!(f, "current replicas below minReplicas: scaling to {min}")
            }
            Reason::ScalingDisabled => write!(
                f,
                "target scaled to zero by someone else and the policy has no scaleToZero: autoscaling paused"
            ),
            Reason::ScaleToZero { idle_ms } => {
                write!(f, "idle for {}: scaling to zero", fmt_window(*idle_ms))
            }
            Reason::Activated { signal, value } => {
                write!(f, "activated from zero by {signal} {value}")
            }
            Reason::StaysAtZero => write!(f, "at zero and below the activation threshold"),
            Reason::Fallback {
                source,
                failures,
                metric,
                action,
                replicas,
            } => write!(
                f,
                "source {source} failed {failures} times in a row: {metric} falls back to {replicas} replicas ({action}; healthy signals may ask for more)"
            ),
            Reason::Formula {
                name,
                expression,
                value,
                inputs,
            } => {
                let inputs = inputs
                    .iter()
                    .map(|(n, v)| format!("{n} {}", fmt_short(*v)))
                    .collect::<Vec<_>>()
                    .join(", ");
                write!(
                    f,
                    "formula {name} = {expression} = {} with {inputs}",
                    fmt_short(*value)
                )
            }
            Reason::Schedule {
                window,
                describe,
                min_replicas,
                max_replicas,
                phase,
            } => {
                let bounds = [("minReplicas", min_replicas), ("maxReplicas", max_replicas)]
                    .iter()
                    .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
                    .collect::<Vec<_>>()
                    .join(", ");
                match (phase, min_replicas) {
                    (crate::schedule::Phase::Prewarming { opens_in_ms }, Some(min)) => write!(
                        f,
                        "schedule {window} ({describe}) opens in {}: pre-warming to minReplicas {min}",
                        crate::time::fmt_window((opens_in_ms + 999) / 1000 * 1000)
                    ),
                    _ => write!(f, "schedule {window} ({describe}): {bounds}"),
                }
            }
            Reason::Paused { held, would_be } => write!(
                f,
                "paused by an operator: the count is held at {held} (the policy would set {would_be})"
            ),
            Reason::ActivationScale { replicas } => write!(
                f,
                "activation scale: at least {replicas} replicas when coming back from zero"
            ),
            Reason::InitialScale { replicas, ready } => write!(
                f,
                "initial scale: {replicas} replicas until {replicas} are ready ({ready} ready)"
            ),
            Reason::DemandUnknown { sources } => write!(
                f,
                "at zero and the demand is unknown (no fresh sample from {}): staying at zero until one reports",
                sources.join(", ")
            ),
            Reason::SloPlan { .. } => fmt_slo_plan(self, f),
            Reason::TokenSloPlan { .. } => fmt_token_slo_plan(self, f),
            Reason::SloKeepsThroughDip {
                replicas,
                needed,
                cold_start_seconds,
            } => write!(
                f,
                "keeping {replicas} replicas through a dip shorter than {cold_start_seconds:.0} s, what restarting them would cost ({needed} needed now)"
            ),
            Reason::SloRecurringBurst {
                replicas,
                rate,
                period_seconds,
                due_in_seconds,
                lead_seconds,
            } => {
                let when = if *due_in_seconds >= 0.0 {
                    format!("due in {due_in_seconds:.0} s")
                } else {
                    format!("{:.0} s late", -due_in_seconds)
                };
                write!(
                    f,
                    "bursts recur every {period_seconds:.0} s: {replicas} replicas for the next one's {rate:.1} req/s ({when}), started {lead_seconds:.0} s ahead, a cold start with its spread"
                )
            }
            Reason::SloSilentUntilBurst {
                quiet_seconds,
                due_in_seconds,
                period_seconds,
                lead_seconds,
            } => write!(
                f,
                "silent for {quiet_seconds:.0} s and bursts recur every {period_seconds:.0} s: no replicas until {lead_seconds:.0} s before the next, due in {due_in_seconds:.0} s"
            ),
            Reason::SloIdleToZero {
                quiet_seconds,
                keep_seconds,
                beyond_keep_seconds,
                spells,
                restart_seconds,
                lead_seconds,
                latency_seconds,
                cold_within,
                arrived_after_idle,
            } => write!(
                f,
                "idle for {quiet_seconds:.0} s, longer than the {keep_seconds:.0} s a replica is kept through: no replicas until the next request (the last {spells:.0} spells, weighed by age, lasted {beyond_keep_seconds:.0} s beyond that on average, more than the {restart_seconds:.0} replica-seconds of a return; {} of requests came within a {lead_seconds:.0} s cold start of one, and one that waits it meets {} {} of the time)",
                fmt_percent(*arrived_after_idle),
                fmt_seconds(*latency_seconds),
                fmt_percent(*cold_within),
            ),
            Reason::SloOutOfReach {
                latency_seconds,
                attainment,
                within_without_wait,
                within_measured,
                counted_requests,
                prior_requests,
                planned_for,
            } => write!(
                f,
                "SLO {} at {} is out of reach: only {} of service times are within {} with no wait at all ({}); planning for {}",
                fmt_seconds(*latency_seconds),
                fmt_percent(*attainment),
                fmt_percent(*within_without_wait),
                fmt_seconds(*latency_seconds),
                share_source(*within_measured, *counted_requests, *prior_requests),
                fmt_percent(*planned_for),
            ),
            Reason::SloReached {
                latency_seconds,
                counted_at_seconds,
                attainment,
                reached,
                requests,
                short,
            } => write!(
                f,
                "reached: {} within {} over about the last hour ({requests:.0} requests){}",
                fmt_percent(*reached),
                fmt_seconds(counted_at_seconds.min(*latency_seconds)),
                if *short {
                    format!("; short of the SLO's {} by more than chance", fmt_percent(*attainment))
                } else {
                    String::new()
                },
            ),
            Reason::SloServiceUnknown {
                replicas,
                rate,
                latency_seconds,
            } => write!(
                f,
                "no request answered yet, so no service time known: {replicas} replicas for {rate:.1} req/s as if each took the SLO's {}, the slowest service that meets it",
                fmt_seconds(*latency_seconds)
            ),
            Reason::SloWarmingUp { held, seconds } => write!(
                f,
                "SLO model warming up: no scale-down before {seconds:.0} s of traffic were measured, holding {held}"
            ),
            Reason::SloHedgedStart {
                extra,
                ready,
                needed,
            } => write!(
                f,
                "{ready} of {needed} needed replicas ready: starting {extra} more, the first ready are kept and the rest removed while still starting"
            ),
            Reason::Victims { pods } => write!(f, "scale-in removes first: {}", pods.join(", ")),
            Reason::PoolRatio {
                pool,
                own,
                to,
                other,
                min,
                max,
            } => write!(
                f,
                "{pool} pool raised from {own} to {to} replicas: the other pool wants {other}, and decode replicas per prefill replica stay within {}",
                fmt_ratio(*min, *max)
            ),
            Reason::PoolRatioShort {
                pool,
                count,
                other,
                min,
                max,
            } => write!(
                f,
                "{pool} pool at {count} replicas against the other pool's {other} is outside {} decode replicas per prefill replica: its maxReplicas or a hold stops the guard",
                fmt_ratio(*min, *max)
            ),
        }
    }
}

/// What an SLO plan sized over the lead from: the requests in flight now and the seconds until
/// a replica started now is ready.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverLead {
    /// Requests in flight now.
    pub in_flight: f64,
    /// The lead, seconds.
    pub lead_seconds: f64,
}

/// A TTFT or ITL goal in a [`Reason::TokenSloPlan`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenGoal {
    /// The goal's latency, seconds.
    pub seconds: f64,
    /// Its attainment (0.99: the p99).
    pub attainment: f64,
    /// The latency planned for: the goal's, or just above the best the engines reached where
    /// they miss it at every load seen.
    pub planned_seconds: f64,
    /// Work per replica that keeps it, tokens/s (`None` while being learnt).
    pub work: Option<f64>,
}

/// "TTFT p99 2s (up to 5300 tokens/s per replica), ITL p99 100ms (out of reach: planned
/// 124ms, up to 4100 tokens/s per replica): 4 replicas for 18200 tokens/s; forecast +12%
/// within the 69 s cold start (measured over 4 starts, widened while few)".
fn fmt_token_slo_plan(r: &Reason, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Reason::TokenSloPlan {
        ttft,
        itl,
        replicas,
        proposed,
        tokens_per_second,
        forecast_percent,
        level_percent,
        level_seconds,
        kv_work,
        over_now,
        learning,
        cold_start_seconds,
        cold_starts_measured,
        cold_start_widened,
    } = r
    else {
        return Ok(());
    };
    let goal = |name: &str, g: &Option<TokenGoal>| {
        g.map(|g| {
            let mut text = format!(
                "{name} p{} {} (",
                crate::time::fmt_percent(g.attainment).trim_end_matches('%'),
                crate::time::fmt_seconds(g.seconds)
            );
            if g.planned_seconds > g.seconds {
                text += &format!(
                    "out of reach: planned {}, ",
                    crate::time::fmt_seconds(g.planned_seconds)
                );
            }
            match g.work {
                Some(w) => text += &format!("up to {w:.0} tokens/s per replica)"),
                None => text += "being learnt)",
            }
            text
        })
    };
    let goals: Vec<String> = [goal("TTFT", ttft), goal("ITL", itl)]
        .into_iter()
        .flatten()
        .collect();
    write!(
        f,
        "{}: {replicas} replicas for {tokens_per_second:.0} tokens/s",
        goals.join(", ")
    )?;
    if let Some(kv) = kv_work {
        write!(f, " (KV cache: up to {kv:.0} tokens/s per replica)")?;
    }
    if *level_percent >= 1.0 {
        write!(
            f,
            "; the rate's level is {level_percent:+.0}% over the last window's (it follows a \
             fall with a {level_seconds:.0} s time constant)"
        )?;
    }
    write!(
        f,
        "; forecast {forecast_percent:+.0}% within the {} s cold start ({})",
        cold_start_words(*cold_start_seconds),
        cold_start_source(*cold_starts_measured, *cold_start_widened)
    )?;
    if *over_now {
        write!(f, "; a quantile over its goal now asks for more at once")?;
    }
    if *learning {
        write!(f, "; still learning the engines' response: no scale-down")?;
    }
    if proposed > replicas {
        write!(f, "; holding {proposed}")?;
    }
    Ok(())
}

/// "SLO 500ms at 99.9%: 7 replicas predicted 99.93% for 212 req/s (dispersion 1.3, service
/// 113 ms +- 57 ms); forecast +18% within the 21 s cold start (measured over 12 starts)";
/// over the lead, "3 replicas predicted 99.65% over the next 47 s from 2 in flight, for
/// 0.02 req/s".
fn fmt_slo_plan(r: &Reason, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Reason::SloPlan {
        latency_seconds,
        attainment,
        planned_for,
        replicas,
        predicted,
        rate,
        dispersion,
        arrival_scv,
        service_ms,
        service_sd_ms,
        service_measured,
        forecast_percent,
        jump,
        cold_start_seconds,
        cold_starts_measured,
        cold_start_widened,
        over_lead,
        queued,
    } = r
    else {
        return Ok(());
    };
    let sized = match over_lead {
        Some(OverLead {
            in_flight,
            lead_seconds,
        }) => format!(
            " over the next {} s from {in_flight:.0} in flight,",
            cold_start_words(*lead_seconds)
        ),
        None => String::new(),
    };
    let service = if *service_measured {
        format!("service {service_ms:.0} ms +- {service_sd_ms:.0} ms")
    } else {
        format!("time in system {service_ms:.0} ms by Little's law")
    };
    let cold = cold_start_source(*cold_starts_measured, *cold_start_widened);
    let ahead = if *jump {
        format!("a jump in the last seconds, {forecast_percent:+.0}% over the level")
    } else {
        format!("forecast {forecast_percent:+.0}%")
    };
    let arrivals = if *arrival_scv < dispersion - 0.05 {
        format!("dispersion {dispersion:.1}, read as {arrival_scv:.1} from the queues seen")
    } else {
        format!("dispersion {dispersion:.1}")
    };
    let planning = if planned_for < attainment {
        format!(
            " (planning for {}: waiting may add half the allowed misses, service times alone reach the rest)",
            fmt_percent(*planned_for)
        )
    } else {
        String::new()
    };
    write!(
        f,
        "SLO {} at {}{planning}: {replicas} replicas predicted {}{sized} for {} req/s ({arrivals}, {service}); {ahead} within the {} s cold start ({cold})",
        fmt_seconds(*latency_seconds),
        fmt_percent(*attainment),
        fmt_percent(*predicted),
        rate_words(*rate),
        cold_start_words(*cold_start_seconds),
    )?;
    if *queued >= 1.0 {
        write!(
            f,
            "; the rate drains the {queued:.0} requests queued beyond the ready slots"
        )?;
    }
    Ok(())
}

/// A request rate to a tenth, or to two significant digits below one a second (a stream of
/// one request a minute read "0.0 req/s").
fn rate_words(rate: f64) -> String {
    if rate.abs() >= 1.0 || rate == 0.0 {
        format!("{rate:.1}")
    } else {
        let digits = (1.0 - rate.abs().log10().floor()).clamp(1.0, 6.0) as usize;
        format!("{rate:.digits$}")
    }
}

/// Where a share of service times within the SLO came from: counted (over how many requests,
/// and whether the fitted shape still weighs in), or the mean and variance alone.
fn share_source(measured: bool, requests: f64, prior: f64) -> String {
    match (measured, requests < prior) {
        (false, _) => "from their mean and variance".into(),
        (true, false) => format!("counted over {requests:.0} requests"),
        (true, true) => format!(
            "counted over {requests:.0} requests, leaning on their mean and variance until {prior:.0}"
        ),
    }
}

/// Where the cold-start horizon came from: "configured or assumed", or measured over how
/// many starts, and whether the belief about their spread still widens it
/// (`slo::estimate::predicted_start`).
fn cold_start_source(measured: u32, widened: bool) -> String {
    match (measured, widened) {
        (0, _) => "configured or assumed".into(),
        (1, _) => "measured over 1 start, widened while few: one has no spread".into(),
        (n, true) => format!("measured over {n} starts, widened while few"),
        (n, false) => format!("measured over {n} starts"),
    }
}

/// A cold start in whole seconds, or to a tenth below ten (a local replica ready in 0.4 s
/// read "0 s").
fn cold_start_words(seconds: f64) -> String {
    if seconds < 10.0 {
        fmt_short((seconds * 10.0).round() / 10.0)
    } else {
        format!("{seconds:.0}")
    }
}

/// Serializes reasons as their structured fields plus `message`, the sentence users read.
pub fn serialize_with_messages<S: serde::Serializer>(
    reasons: &[Reason],
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct WithMessage<'a> {
        #[serde(flatten)]
        reason: &'a Reason,
        message: String,
    }
    s.collect_seq(reasons.iter().map(|reason| WithMessage {
        reason,
        message: reason.to_string(),
    }))
}

/// HPA's `ScalingLimited` condition reason: where normalization bounded the recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LimitReason {
    /// Not limited.
    DesiredWithinRange,
    /// Limited by a scale-up rate policy.
    ScaleUpLimit,
    /// Limited by a scale-down rate policy.
    ScaleDownLimit,
    /// Limited by maxReplicas.
    TooManyReplicas,
    /// Limited by minReplicas.
    TooFewReplicas,
}

impl LimitReason {
    /// HPA's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitReason::DesiredWithinRange => "DesiredWithinRange",
            LimitReason::ScaleUpLimit => "ScaleUpLimit",
            LimitReason::ScaleDownLimit => "ScaleDownLimit",
            LimitReason::TooManyReplicas => "TooManyReplicas",
            LimitReason::TooFewReplicas => "TooFewReplicas",
        }
    }
}

impl fmt::Display for LimitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The guard's bounds in words ("1-4", "at least 1", "at most 4").
fn fmt_ratio(min: f64, max: f64) -> String {
    match (min > 0.0, max.is_finite()) {
        (true, true) => format!("{}-{}", fmt_short(min), fmt_short(max)),
        (true, false) => format!("at least {}", fmt_short(min)),
        (false, true) => format!("at most {}", fmt_short(max)),
        (false, false) => "any ratio".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::cold_start_words;

    #[test]
    fn a_cold_start_under_ten_seconds_reads_to_a_tenth() {
        assert_eq!(cold_start_words(0.43), "0.4");
        assert_eq!(cold_start_words(3.0), "3");
        assert_eq!(cold_start_words(9.96), "10");
        assert_eq!(cold_start_words(21.4), "21");
    }
}
