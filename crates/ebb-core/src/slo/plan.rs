//! One decision of the SLO signal: update the estimates, forecast the rate over the cold
//! start, size with the queueing model, keep replicas through dips shorter than a cold start.

use super::estimate::SloState;
use super::forecast::{NoiseTest, Smoothing};
use super::idle::IdleCost;
use super::queueing::{replicas_for_cached, scv_for_within, service_within, Load, PenaltyGrid};
use super::recurrence::Due;
use super::transient::Model;
use crate::observation::{is_fresh, Observation, TrafficSample};
use crate::policy::{Slo, Tuning};
use crate::reason::Reason;
use crate::time::Time;

/// Cold start assumed until one is measured, seconds.
pub const ASSUMED_COLD_START_SECONDS: f64 = 30.0;

/// The signal's result: a proposal and the reasons behind it, or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Replicas proposed.
    Proposal {
        /// Replicas.
        replicas: u32,
        /// The rate planned for: req/s (tokens/s for the LLM SLO).
        rate: f64,
        /// Reasons with the model's numbers.
        reasons: Vec<Reason>,
    },
    /// No usable data.
    Missing(String),
}

/// The forecaster's smoothing for a policy's season; the level spans at least
/// `level_service_times` of the service times measured so far.
fn smoothing(tuning: &Tuning, slo: &Slo, state: &SloState) -> Smoothing {
    let service = state.service().map_or(0.0, |(mean, _)| mean);
    Smoothing {
        level_seconds: tuning
            .level_seconds
            .max(tuning.level_service_times * service),
        level_requests: tuning.level_requests,
        trend_seconds: tuning.trend_seconds,
        season_seconds: slo.season_seconds,
        season_weight: tuning.season_weight,
    }
}

/// What the model sized for the traffic now.
struct Sized {
    load: Load,
    model: Model,
    /// The attainment planned for: the SLO's, or what service times alone allow less the
    /// least waiting budget (`Tuning::min_wait_budget`).
    target: f64,
    /// The fewest replicas the model predicts reach `target`, and its prediction there.
    needed: u32,
    predicted: f64,
    max_replicas: u32,
    /// The share of service times within the SLO with no wait at all.
    within: f64,
    /// What waiting may add to the misses.
    budget: f64,
    /// Requests queued beyond the ready slots that the rate drains over the lead.
    queued: f64,
    /// Whether the service times' shape was fitted to a counted share within the latency.
    counted_shape: bool,
}

/// Replicas for a recurring burst due within `lead` seconds (`None`: none is due). The
/// burst's first `lead` seconds may spend `prewarm_budget` of a period's allowed misses; the
/// replicas that keep within it are started ahead (the caller starts none beyond those held
/// anyway, unless it holds none: a burst the reactive path absorbs costs nothing to wait for,
/// but one that finds no replica waits a whole cold start).
fn for_recurring_burst(
    slo: &Slo,
    tuning: &Tuning,
    state: &mut SloState,
    now_sized: &Sized,
    lead: f64,
    now: Time,
) -> Option<(u32, Due)> {
    let due = state.recurrence.due(now, lead)?;
    let allowed = (1.0 - slo.attainment) * due.arrivals_per_period * tuning.prewarm_budget;
    let window = (due.peak_rate * lead).max(1.0);
    let burst = Load {
        rate: due.peak_rate,
        ..now_sized.load
    };
    let (replicas, _) = replicas_for_cached(
        &burst,
        slo.slots_per_replica,
        slo.latency_seconds,
        (1.0 - allowed / window).min(now_sized.target),
        now_sized.max_replicas,
        &mut state.grid,
    );
    Some((replicas, due))
}

/// Why the plan proposes no replicas, for a policy that may scale to zero.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Silence {
    /// The traffic has been silent for a cold start and the next recurring burst is due
    /// more than a cold start after the replicas for it would be started: a replica kept
    /// through the silence is paid for with nothing to serve, and the burst is met by
    /// replicas started one lead ahead of it (what the clairvoyant does with every gap).
    UntilBurst {
        quiet_seconds: f64,
        due_in_seconds: f64,
        period_seconds: f64,
    },
    /// At zero with nothing arriving and no burst due: nothing to start a replica for.
    AtZero,
    /// Nothing arrived for a cold start's worth of replica-seconds (the keep time), the
    /// spells have lasted long enough beyond it to pay for a return, and the requests that
    /// would arrive at zero fit in the waiting budget (`slo::idle`).
    Idle { quiet_seconds: f64 },
}

/// When an idle spell may go to zero without a burst to wait for ([`Silence::Idle`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct IdleRule {
    /// Seconds of silence a replica is kept through.
    keep_seconds: f64,
    /// Whether a return pays and the waits of requests arriving at zero fit the budget.
    allowed: bool,
}

/// Whether the traffic allows zero replicas now. A burst due within the lead (`burst_due`),
/// a request in flight or one that arrived since the last sample never does.
fn silence(
    state: &SloState,
    sample: &TrafficSample,
    at_zero: bool,
    burst_due: bool,
    (lead, cold_start): (f64, f64),
    idle: IdleRule,
    now: Time,
) -> Option<Silence> {
    if sample.in_flight > 0.0 || burst_due {
        return None;
    }
    let quiet = state
        .last_arrival
        .map_or(f64::INFINITY, |t| now.seconds_since(t));
    let until_burst = state.recurrence.silent_gap(now).filter(|gap| {
        quiet >= cold_start
            && gap.due_in_seconds - lead >= cold_start
            && quiet + gap.due_in_seconds <= gap.silent_seconds
    });
    match until_burst {
        Some(gap) => Some(Silence::UntilBurst {
            quiet_seconds: quiet,
            due_in_seconds: gap.due_in_seconds,
            period_seconds: gap.period_seconds,
        }),
        None if at_zero && quiet > 0.0 => Some(Silence::AtZero),
        None if idle.allowed && quiet >= idle.keep_seconds => Some(Silence::Idle {
            quiet_seconds: quiet,
        }),
        None => None,
    }
}

/// Counts a sample's `arrivals` for the idle rule (`slo::idle`), with the silence they
/// ended if they ended one at this sample.
fn observe_idle(
    state: &mut SloState,
    sample: &TrafficSample,
    arrivals: f64,
    keep_lead: (f64, f64),
) {
    let silence_ended = state
        .silence_ended
        .filter(|(at, _)| *at == sample.at)
        .map(|(_, seconds)| seconds);
    state
        .idle
        .observe(arrivals, silence_ended, sample.at, keep_lead);
}

/// What a shortage of ready replicas is worth, in replicas: the requests missed a second with
/// `ready` replicas instead of `needed`, over those the last replica needed avoids (the price
/// of a miss the target sets in steady state).
fn shortage_worth(grid: &mut Option<PenaltyGrid>, sized: &Sized, ready: u32, slo: &Slo) -> f64 {
    let predicted = sized.predicted;
    let counts = [ready, sized.needed - 1];
    let (slots, latency) = (slo.slots_per_replica, slo.latency_seconds);
    let [with_ready, one_fewer] =
        sized
            .model
            .attainments(&sized.load, counts, slots, latency, grid);
    let marginal = predicted - one_fewer;
    if marginal <= 0.0 {
        return 0.0;
    }
    ((predicted - with_ready) / marginal).max(0.0)
}

/// Replicas started beyond the `needed - ready` missing ones (`hedge::extra_starts`): more
/// for a shortage that misses many more requests than the last replica needed avoids, and
/// from the second short decision in a row at least `Tuning::hedge` per missing one. The
/// starts in progress (the observation's pods still starting) count among them.
fn extra_starts(
    tuning: &Tuning,
    state: &mut SloState,
    sized: &Sized,
    ready: u32,
    slo: &Slo,
    cold_start: f64,
    (obs, now): (&Observation, Time),
) -> u32 {
    let missing = sized.needed - ready;
    let least = if state.short_before {
        (f64::from(missing) * tuning.hedge).floor() as u32
    } else {
        0
    };
    let (mean, sd) = state.cold_start().unwrap_or((cold_start, 0.0));
    let room = sized.max_replicas.saturating_sub(sized.needed);
    if sd <= 0.0 || room == 0 {
        // Cold starts that do not vary (or no room) make no extra worth its cost: the
        // shortage need not be priced.
        return least;
    }
    let worth = shortage_worth(&mut state.grid, sized, ready, slo);
    let starting = starts_in_progress(obs, now);
    super::hedge::extra_starts(missing, &starting, worth, mean, sd, room).max(least)
}

/// The ages (seconds) of the replicas still starting: neither ready nor being removed.
fn starts_in_progress(obs: &Observation, now: Time) -> Vec<f64> {
    obs.pods
        .iter()
        .filter(|p| !p.ready && !p.deleting)
        .filter_map(|p| p.cold_start_began())
        .map(|began| now.seconds_since(began).max(0.0))
        .collect()
}

/// The cold start the plan sizes for, the starts measured into it, and its spread
/// (`ColdStarts::horizon`).
fn cold_start(slo: &Slo, tuning: &Tuning, state: &SloState) -> (f64, u32, f64) {
    state.cold.horizon(
        slo.cold_start_seconds,
        ASSUMED_COLD_START_SECONDS,
        tuning.cold_start_spread,
    )
}

/// How far ahead capacity must be started to be ready in time (seconds): the cold start,
/// the spread the pre-warm allows for, and the decision loop's period (a start left to the
/// next decision comes that much later). Schedules raise their floors this far ahead.
pub fn lead_seconds(slo: &Slo, state: Option<&SloState>) -> f64 {
    let fresh = SloState::default();
    let state = state.unwrap_or(&fresh);
    let (cold_start, _, sd) = cold_start(slo, &slo.tuning, state);
    lead(cold_start, sd, &slo.tuning, state)
}

fn lead(cold_start: f64, sd: f64, tuning: &Tuning, state: &SloState) -> f64 {
    cold_start + tuning.prewarm_spread * sd + state.period_seconds.unwrap_or(0.0)
}

/// The counts a policy lets the plan propose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The most replicas.
    pub max_replicas: u32,
    /// Whether the policy may scale to zero (`scaleToZero`): then the plan proposes zero
    /// through the silences between the bursts it predicts, and from zero starts replicas one
    /// lead ahead of the next.
    pub to_zero: bool,
}

/// The requests waiting beyond the ready replicas' slots, which the steady-state plan sizes
/// capacity to drain over the lead on top of the arrivals (a step that came faster than a
/// decision leaves a queue the arrival rate alone never clears: `ebb up`'s SLO example, 20 to
/// 200 req/s, held 122 requests a second after the step, and they waited up to 1.8 s while the
/// plan caught up with the rate). None with no replica ready (the cold start's own wait) or
/// where the plan sizes over the lead from the requests in flight, which counts them already.
fn queued_beyond_slots(in_flight: f64, ready: u32, slots: u32, model: &Model) -> f64 {
    let queued = super::estimate::waiting_beyond_slots(in_flight, ready, slots);
    let counted = ready > 0 && model.over_lead().is_none() && queued.is_finite();
    if counted {
        queued
    } else {
        0.0
    }
}

/// The plan before any request has been answered, so before any service time is known. With
/// no replica ready and requests arriving (a cold start from zero), it sizes for `rate` (the
/// planned rate, or the latest sample's if higher) as if each request took the SLO's whole
/// latency, the slowest service that could still meet it, so that the replicas all start at
/// once: waiting for the first to answer put the rest a whole cold start behind it (`ebb up`'s
/// burst example queued 454 requests so). Never fewer than are already started: a prior does
/// not scale down. Once the first replica is ready, its answers come within a decision or
/// two, and the plan waits for them.
fn before_any_answer(
    slo: &Slo,
    obs: &Observation,
    ready: u32,
    rate: f64,
    max_replicas: u32,
) -> Plan {
    if ready > 0 || !(rate > 0.0 && rate.is_finite()) {
        return Plan::Missing("no completed request yet to measure the service time".into());
    }
    let slots = f64::from(slo.slots_per_replica.max(1));
    // `as` saturates: a count beyond `u32` is cut to `maxReplicas` below all the same.
    let replicas = ((rate * slo.latency_seconds / slots).ceil() as u32)
        .max(1)
        .max(obs.current_replicas)
        .min(max_replicas.max(1));
    Plan::Proposal {
        replicas,
        rate,
        reasons: vec![Reason::SloServiceUnknown {
            replicas,
            rate,
            latency_seconds: slo.latency_seconds,
        }],
    }
}

/// Plans replicas for `slo` from the observation, advancing the estimates in `state`: the
/// traffic observed, the rate planned over the cold start, the load sized with the queueing
/// model, the count kept, hedged or silenced, and the reasons with the model's numbers.
pub fn plan(
    slo: &Slo,
    tuning: &Tuning,
    state: &mut SloState,
    obs: &Observation,
    range: Range,
    now: Time,
    stale_after_ms: i64,
) -> Plan {
    let smoothing = smoothing(tuning, slo, state);
    state.observe_pods(&obs.pods, now);
    let Some(sample) = obs
        .traffic
        .as_ref()
        .filter(|s| is_fresh(s.at, now, stale_after_ms) && s.at <= now)
    else {
        return Plan::Missing("no fresh traffic sample for the SLO model".into());
    };
    let ready = obs.ready_replicas();
    let Some(observed) = observe_traffic(slo, tuning, state, sample, ready, &smoothing) else {
        return Plan::Missing("not enough traffic samples yet for the SLO model".into());
    };
    let cold = ColdStart::now(slo, tuning, state);
    let rate = planned_rate(tuning, state, sample, &observed, &cold, &smoothing, now);
    let Some(service) = state.service() else {
        // The latest sample's own rate too: out of zero the estimates are still rising
        // from nothing, while every request of the burst waits.
        let latest = observed.since_last.map_or(0.0, |dt| observed.arrivals / dt);
        let rate = rate.rate.max(latest);
        return before_any_answer(slo, obs, ready, rate, range.max_replicas);
    };
    let sized = match size(
        slo,
        tuning,
        state,
        (sample, ready),
        (&rate, &cold),
        service,
        range.max_replicas,
    ) {
        Ok(sized) => sized,
        Err(missing) => return missing,
    };
    observe_idle(
        state,
        sample,
        observed.arrivals,
        (cold.keep_seconds, cold.lead),
    );
    let idle_cost = range
        .to_zero
        .then(|| idle_cost(slo, tuning, state, &sized, &cold));
    let count = count(
        slo,
        tuning,
        state,
        &sized,
        &cold,
        idle_cost.as_ref(),
        (obs, sample, ready, now),
    );
    let reasons = reasons(
        slo,
        state,
        (&rate, &cold),
        (&sized, &count),
        idle_cost.as_ref(),
        now,
    );
    Plan::Proposal {
        replicas: count.replicas,
        rate: sized.load.rate,
        reasons,
    }
}

/// What the sample added to the estimates.
struct Observed {
    /// Arrivals the sample counted since the last one.
    arrivals: f64,
    /// Seconds since the last sample (`None`: the first).
    since_last: Option<f64>,
    /// The level before this sample, where the sample spans more than the short rate's
    /// window.
    level_before: Option<f64>,
}

/// Advances the rate estimates by `sample`; `None` while the forecaster has no level yet.
fn observe_traffic(
    slo: &Slo,
    tuning: &Tuning,
    state: &mut SloState,
    sample: &TrafficSample,
    ready: u32,
    smoothing: &Smoothing,
) -> Option<Observed> {
    // The level the traffic rises from. A sample that spans more than the short rate's window
    // (a controller syncing every 5 s) has already pulled the level half way up a burst by
    // the time the decision sees it; one within it has not moved it further than the short
    // rate shows.
    let spans_short_window = state
        .last
        .is_some_and(|last| sample.at.seconds_since(last.at) > super::estimate::SHORT_RATE_SECONDS);
    let level_before = (spans_short_window && state.forecast.at.is_some())
        .then(|| state.forecast.at_horizon(0.0, smoothing));
    let since_last = state.last.map(|last| sample.at.seconds_since(last.at));
    let arrivals = state
        .observe(
            sample,
            smoothing,
            f64::from(ready) * f64::from(slo.slots_per_replica),
        )
        .unwrap_or(0.0);
    // A step is not a trend: the jump test, from either side of the level, drops one the
    // last seconds contradict.
    state.forecast.drop_contradicted_trend(
        state.short_rate,
        SHORT_WINDOW_SECONDS,
        NoiseTest::jump(tuning),
        smoothing,
    );
    state.forecast.at?;
    Some(Observed {
        arrivals,
        since_last,
        level_before,
    })
}

/// The window of the short rate the jump test reads, seconds.
const SHORT_WINDOW_SECONDS: f64 = 2.0 * super::estimate::SHORT_RATE_SECONDS;

/// The cold start the plan sizes for and what follows from it.
struct ColdStart {
    /// Seconds (`ColdStarts::horizon`: the measured mean widened by its spread).
    seconds: f64,
    /// Cold starts measured into it.
    measured: u32,
    /// How far ahead capacity must be started (`lead`).
    lead: f64,
    /// How long a replica is kept through a dip (the ski-rental rule).
    keep_seconds: f64,
}

impl ColdStart {
    fn now(slo: &Slo, tuning: &Tuning, state: &SloState) -> Self {
        let (seconds, measured, sd) = cold_start(slo, tuning, state);
        ColdStart {
            seconds,
            measured,
            lead: lead(seconds, sd, tuning, state),
            keep_seconds: seconds * tuning.keep_cold_starts,
        }
    }

    /// The keep time in milliseconds, as the recent counts' memories take it.
    fn keep_ms(&self) -> i64 {
        (self.keep_seconds * 1000.0) as i64
    }
}

/// The rate planned for and how it was read.
struct Rate {
    /// The level now, req/s.
    level: f64,
    /// The rate over the cold start ahead (the level, a jump's short rate, or the
    /// forecast's peak), req/s.
    planned: f64,
    /// `planned` with the rate margin, req/s.
    rate: f64,
    /// Whether the last seconds jumped beyond counting noise.
    jump: bool,
    /// Dispersion of the per-second counts.
    dispersion: f64,
}

/// The rate to plan for over the cold start: a jump's short rate or the forecast's peak
/// beyond noise, whichever is higher. The recurrence sees every onset, whether or not a
/// service time has been learnt yet: the first burst out of zero comes before any request
/// has completed.
fn planned_rate(
    tuning: &Tuning,
    state: &mut SloState,
    sample: &TrafficSample,
    observed: &Observed,
    cold: &ColdStart,
    smoothing: &Smoothing,
    now: Time,
) -> Rate {
    let dispersion = state.dispersion();
    let level = state.forecast.at_horizon(0.0, smoothing);
    let ahead = state
        .forecast
        .peak_within_beyond_noise(cold.seconds, smoothing);
    let jump_test = NoiseTest::jump(tuning);
    // Standard error of a rate measured over a window, for counts `dispersion` times as
    // dispersed as Poisson counts.
    let standard_error =
        |rate: f64, seconds: f64, dispersion: f64| (rate.max(0.0) * dispersion / seconds).sqrt();
    let noise = |rate: f64, seconds: f64| standard_error(rate, seconds, dispersion);
    let above = |from: f64, standard_error: f64| {
        state.short_rate * SHORT_WINDOW_SECONDS >= jump_test.least_requests
            && state.short_rate > from + jump_test.standard_errors * standard_error
    };
    // A jump to plan for is judged against counting noise alone: the clumps that make counts
    // overdispersed are the traffic the jump path is for. A recurring burst's onset is judged
    // against the clumping too, so that one clump is not taken for the start of a period,
    // and from the level before this sample.
    let jump = above(level, standard_error(level, SHORT_WINDOW_SECONDS, 1.0));
    let from = observed
        .level_before
        .map_or(level, |before| before.min(level));
    let onset = above(from, noise(from, SHORT_WINDOW_SECONDS));
    let base = if jump { state.short_rate } else { level };
    let planned = base.max(ahead);
    let level_window = 2.0 * state.forecast.level_time_constant(smoothing);
    let rate = planned + tuning.rate_margin * noise(planned, level_window);
    if rate.is_finite() {
        let silence_before = state.silence_just_ended(now);
        let arrivals_total = sample.arrivals_total;
        state
            .recurrence
            .observe(onset, rate, arrivals_total, silence_before, now);
    }
    Rate {
        level,
        planned,
        rate,
        jump,
        dispersion,
    }
}

/// The load for the rate planned (with the queue beyond the ready slots drained over the
/// lead), the attainment to plan for and the fewest replicas the model predicts reach it;
/// the plan is missing where an estimate is out of range.
fn size(
    slo: &Slo,
    tuning: &Tuning,
    state: &mut SloState,
    (sample, ready): (&TrafficSample, u32),
    (rate, cold): (&Rate, &ColdStart),
    (service_mean, service_scv): (f64, f64),
    max_replicas: u32,
) -> Result<Sized, Plan> {
    let latency = slo.latency_seconds;
    // The service times' shape, fitted to their share within the latency the driver counts
    // at (the SLO's, or a histogram bucket's below it), then read at the SLO.
    let counted_shape = state.counted_at(latency).and_then(|at| {
        let fitted = service_within(at, service_mean, service_scv);
        let share = state.within(at, fitted)?;
        scv_for_within(at, service_mean, share)
    });
    let slots = slo.slots_per_replica;
    let service = (service_mean, service_scv);
    state.observe_waiting(
        sample,
        ready,
        slots,
        rate.level,
        service,
        tuning.queue_seconds,
    );
    let arrival_scv = state.calibrated_scv(rate.dispersion, service_scv, tuning.queue_prior);
    let model = Model::for_lead(sample.in_flight, cold.lead, service_mean, tuning);
    let queued = queued_beyond_slots(sample.in_flight, ready, slots, &model);
    let planned = rate.rate + queued / cold.lead.max(latency);
    let load = Load {
        rate: planned,
        arrival_scv,
        service_mean,
        service_scv,
        shape_scv: counted_shape.unwrap_or(service_scv),
    };
    if ![
        planned,
        rate.dispersion,
        service_mean,
        service_scv,
        cold.seconds,
    ]
    .iter()
    .all(|v| v.is_finite())
    {
        return Err(Plan::Missing(format!(
            "traffic estimates out of range (rate {planned}, service {service_mean}s)"
        )));
    }
    let within = service_within(latency, service_mean, load.shape_scv);
    let budget = (within - slo.attainment).max((1.0 - slo.attainment) * tuning.min_wait_budget);
    let target = within - budget;
    let (needed, predicted) =
        model.replicas_for(&load, slots, latency, target, max_replicas, &mut state.grid);
    Ok(Sized {
        load,
        model,
        target,
        needed,
        predicted,
        max_replicas,
        within,
        budget,
        queued,
        counted_shape: counted_shape.is_some(),
    })
}

/// What going to zero through an idle spell costs, for a policy that may go to zero.
fn idle_cost(
    slo: &Slo,
    tuning: &Tuning,
    state: &SloState,
    sized: &Sized,
    cold: &ColdStart,
) -> IdleCost {
    IdleCost {
        within: sized.within,
        cold_within: super::idle::within_after_cold_start(
            slo.latency_seconds - state.period_seconds.unwrap_or(0.0),
            state.cold_start().unwrap_or((cold.seconds, 0.0)),
            sized.load.service_mean,
            sized.load.shape_scv,
        ),
        wait_budget: sized.budget,
        restart_seconds: cold.seconds * (1.0 + tuning.hedge),
    }
}

/// The count proposed and how it was reached.
struct Count {
    /// The replicas ready when it was reached.
    ready: u32,
    /// The count kept through a dip shorter than the keep time.
    kept: u32,
    /// Extra replicas started while short.
    hedge: u32,
    /// Replicas for a recurring burst due within the lead, and the burst.
    prewarm: Option<(u32, Due)>,
    /// Whether the current count is held while the estimates warm up.
    warming: bool,
    /// Why the traffic allows zero replicas now, where it does.
    silent: Option<Silence>,
    /// The count proposed.
    replicas: u32,
}

/// The count to propose: the one sized, or a recurring burst's, kept through a dip shorter
/// than the keep time, hedged while short; held while the estimates warm up; zero through a
/// silence the policy may go to zero in.
fn count(
    slo: &Slo,
    tuning: &Tuning,
    state: &mut SloState,
    sized: &Sized,
    cold: &ColdStart,
    idle_cost: Option<&IdleCost>,
    (obs, sample, ready, now): (&Observation, &TrafficSample, u32, Time),
) -> Count {
    let needed = sized.needed;
    let at_zero = obs.current_replicas == 0;
    let burst = for_recurring_burst(slo, tuning, state, sized, cold.lead, now);
    let burst_due = burst.is_some();
    let prewarm = burst
        .filter(|(replicas, _)| *replicas > needed || at_zero)
        .map(|(replicas, due)| (replicas.max(needed), due));
    let wanted = prewarm.map_or(needed, |(replicas, _)| replicas);
    let kept = state.recent.remember(wanted, now, cold.keep_ms());
    let (hedge, planned_replicas) = hedged(
        slo,
        tuning,
        state,
        sized,
        cold,
        kept,
        (obs, sample, ready, now),
    );
    let warming = !state.warm(now) && planned_replicas < obs.current_replicas;
    let silent = idle_cost.and_then(|cost| {
        let idle = IdleRule {
            keep_seconds: cold.keep_seconds,
            allowed: state.idle.allows_zero(cost, tuning.idle_budget, now),
        };
        let cold_start = (cold.lead, cold.seconds);
        silence(state, sample, at_zero, burst_due, cold_start, idle, now)
    });
    let replicas = match (warming, silent) {
        (true, _) => obs.current_replicas,
        (false, Some(_)) => 0,
        (false, None) => planned_replicas,
    };
    Count {
        ready,
        kept,
        hedge,
        prewarm,
        warming,
        silent,
        replicas,
    }
}

/// The extra starts while short of ready replicas, and the count with them and the `kept`
/// one.
fn hedged(
    slo: &Slo,
    tuning: &Tuning,
    state: &mut SloState,
    sized: &Sized,
    cold: &ColdStart,
    kept: u32,
    (obs, sample, ready, now): (&Observation, &TrafficSample, u32, Time),
) -> (u32, u32) {
    let needed = sized.needed;
    // Hedge only for what is needed now, not for what a dip keeps; and only while requests
    // are in flight or arriving. With none, a shortage misses nothing, and a replica wanted
    // ahead of a burst is started one lead ahead, its spread allowed for: an extra start
    // would be a pod created and removed for nothing (on a GPU pool, perhaps a node).
    let demand_now = sample.in_flight > 0.0 || state.last_arrival == Some(sample.at);
    let short = ready < needed && demand_now;
    let hedge = if short {
        extra_starts(tuning, state, sized, ready, slo, cold.seconds, (obs, now))
    } else {
        0
    };
    state.short_before = short;
    let started = needed.saturating_add(hedge);
    let recently_started = state.recent_starts.remember(started, now, cold.keep_ms());
    // While the count needed is not ready, replicas still starting are not cancelled: a
    // dip of one in the count needed would otherwise remove a hedged start a second after
    // it began and start it again the next (pod churn, and a cold start begun anew).
    let still_short = if ready < needed {
        recently_started.min(obs.current_replicas)
    } else {
        0
    };
    let planned = kept
        .max(started)
        .max(still_short)
        .min(sized.max_replicas.max(kept));
    (hedge, planned)
}

/// The decision's reasons: the plan with the model's numbers, the attainment reached, and
/// why the count differs from the one sized.
fn reasons(
    slo: &Slo,
    state: &SloState,
    (rate, cold): (&Rate, &ColdStart),
    (sized, count): (&Sized, &Count),
    idle_cost: Option<&IdleCost>,
    now: Time,
) -> Vec<Reason> {
    let latency = slo.latency_seconds;
    let mut reasons = Vec::new();
    // A counted share is known to its count: within its noise the SLO is not called out of
    // reach (the plan is the same either way).
    let within = sized.within;
    let noise = if sized.counted_shape {
        state.within_noise(within)
    } else {
        0.0
    };
    if within + noise < slo.attainment {
        reasons.push(Reason::SloOutOfReach {
            latency_seconds: latency,
            attainment: slo.attainment,
            within_without_wait: within,
            within_measured: sized.counted_shape,
            counted_requests: state.within_requests,
            prior_requests: super::estimate::SERVICE_PRIOR_REQUESTS,
            planned_for: sized.target,
        });
    }
    let load = &sized.load;
    reasons.push(Reason::SloPlan {
        latency_seconds: latency,
        attainment: slo.attainment,
        planned_for: sized.target,
        replicas: sized.needed,
        predicted: sized.predicted,
        rate: load.rate,
        dispersion: rate.dispersion,
        arrival_scv: load.arrival_scv,
        service_ms: load.service_mean * 1000.0,
        service_sd_ms: load.service_mean * load.service_scv.sqrt() * 1000.0,
        service_measured: !state.service_from_littles_law,
        forecast_percent: super::percent_over(rate.planned, rate.level),
        jump: rate.jump,
        cold_start_seconds: cold.seconds,
        cold_starts_measured: cold.measured,
        cold_start_widened: super::estimate::widened_while_few(cold.measured),
        over_lead: sized.model.over_lead(),
        queued: sized.queued,
    });
    if let Some(reached) = state.reached.filter(|r| r.counted_at(latency)) {
        if let Some(share) = reached.share() {
            reasons.push(Reason::SloReached {
                latency_seconds: latency,
                counted_at_seconds: reached.latency_seconds,
                attainment: slo.attainment,
                reached: share,
                requests: reached.requests,
                short: reached.short_of(slo.attainment),
            });
        }
    }
    reasons.extend(why_not_sized(
        slo,
        state,
        cold,
        (sized, count),
        idle_cost,
        now,
    ));
    // Through a silence nothing is started, hedged or not.
    if count.hedge > 0 && !count.warming && count.silent.is_none() {
        reasons.push(Reason::SloHedgedStart {
            extra: count.hedge,
            ready: count.ready,
            needed: sized.needed,
        });
    }
    reasons
}

/// Why the count proposed is not the one sized, where it is not: a silence, warming up, a
/// recurring burst due, or a dip kept through.
fn why_not_sized(
    slo: &Slo,
    state: &SloState,
    cold: &ColdStart,
    (sized, count): (&Sized, &Count),
    idle_cost: Option<&IdleCost>,
    now: Time,
) -> Option<Reason> {
    if count.warming {
        return Some(Reason::SloWarmingUp {
            held: count.replicas,
            seconds: super::estimate::WARMUP_SECONDS,
        });
    }
    match (count.silent, idle_cost) {
        (
            Some(Silence::UntilBurst {
                quiet_seconds,
                due_in_seconds,
                period_seconds,
            }),
            _,
        ) => {
            return Some(Reason::SloSilentUntilBurst {
                quiet_seconds,
                due_in_seconds,
                period_seconds,
                lead_seconds: cold.lead,
            })
        }
        (Some(Silence::Idle { quiet_seconds }), Some(cost)) => {
            return Some(Reason::SloIdleToZero {
                quiet_seconds,
                keep_seconds: cold.keep_seconds,
                beyond_keep_seconds: state.idle.beyond_keep.map_or(0.0, |(mean, _)| mean),
                spells: state.idle.spells_at(now),
                restart_seconds: cost.restart_seconds,
                lead_seconds: cold.lead,
                latency_seconds: slo.latency_seconds,
                cold_within: cost.cold_within,
                arrived_after_idle: state.idle.share(),
            })
        }
        _ => {}
    }
    if let Some((replicas, due)) = count.prewarm {
        return Some(Reason::SloRecurringBurst {
            replicas,
            rate: due.peak_rate,
            period_seconds: due.period_seconds,
            due_in_seconds: due.due_in_seconds,
            lead_seconds: cold.lead,
        });
    }
    (count.kept > sized.needed).then_some(Reason::SloKeepsThroughDip {
        replicas: count.kept,
        needed: sized.needed,
        cold_start_seconds: cold.keep_seconds,
    })
}
