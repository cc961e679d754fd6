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
    target: f64,
    needed: u32,
    max_replicas: u32,
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
fn shortage_worth(
    grid: &mut Option<PenaltyGrid>,
    sized: &Sized,
    ready: u32,
    predicted: f64,
    slo: &Slo,
) -> f64 {
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
    (ready, predicted): (u32, f64),
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
    let worth = shortage_worth(&mut state.grid, sized, ready, predicted, slo);
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

/// Plans replicas for `slo` from the observation, advancing the estimates in `state`.
pub fn plan(
    slo: &Slo,
    tuning: &Tuning,
    state: &mut SloState,
    obs: &Observation,
    range: Range,
    now: Time,
    stale_after_ms: i64,
) -> Plan {
    let max_replicas = range.max_replicas;
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
    // The level the traffic rises from. A sample that spans more than the short rate's window
    // (a controller syncing every 5 s) has already pulled the level half way up a burst by
    // the time the decision sees it; one within it has not moved it further than the short
    // rate shows.
    let spans_short_window = state
        .last
        .is_some_and(|last| sample.at.seconds_since(last.at) > super::estimate::SHORT_RATE_SECONDS);
    let level_before = (spans_short_window && state.forecast.at.is_some())
        .then(|| state.forecast.at_horizon(0.0, &smoothing));
    let since_last = state.last.map(|last| sample.at.seconds_since(last.at));
    let arrivals = state
        .observe(
            sample,
            &smoothing,
            f64::from(ready) * f64::from(slo.slots_per_replica),
        )
        .unwrap_or(0.0);
    let short_window = 2.0 * super::estimate::SHORT_RATE_SECONDS;
    let jump_test = NoiseTest::jump(tuning);
    // A step is not a trend: the jump test, from either side of the level, drops one the
    // last seconds contradict.
    state
        .forecast
        .drop_contradicted_trend(state.short_rate, short_window, jump_test, &smoothing);
    if state.forecast.at.is_none() {
        return Plan::Missing("not enough traffic samples yet for the SLO model".into());
    }
    let (cold_start, cold_starts_measured, cold_start_sd) = cold_start(slo, tuning, state);
    let dispersion = state.dispersion();
    let level = state.forecast.at_horizon(0.0, &smoothing);
    let ahead = state
        .forecast
        .peak_within_beyond_noise(cold_start, &smoothing);
    // Standard error of a rate measured over a window, for counts `dispersion` times as
    // dispersed as Poisson counts.
    let standard_error =
        |rate: f64, seconds: f64, dispersion: f64| (rate.max(0.0) * dispersion / seconds).sqrt();
    let noise = |rate: f64, seconds: f64| standard_error(rate, seconds, dispersion);
    let above = |from: f64, standard_error: f64| {
        state.short_rate * short_window >= jump_test.least_requests
            && state.short_rate > from + jump_test.standard_errors * standard_error
    };
    // A jump to plan for is judged against counting noise alone: the clumps that make counts
    // overdispersed are the traffic the jump path is for. A recurring burst's onset is judged
    // against the clumping too, so that one clump is not taken for the start of a period,
    // and from the level before this sample.
    let jump = above(level, standard_error(level, short_window, 1.0));
    let from = level_before.map_or(level, |before| before.min(level));
    let onset = above(from, noise(from, short_window));
    let base = if jump { state.short_rate } else { level };
    let planned = base.max(ahead);
    let level_window = 2.0 * state.forecast.level_time_constant(&smoothing);
    let rate = planned + tuning.rate_margin * noise(planned, level_window);
    // The recurrence sees every onset, whether or not a service time has been learnt yet:
    // the first burst out of zero comes before any request has completed.
    if rate.is_finite() {
        let silence_before = state.silence_just_ended(now);
        let arrivals_total = sample.arrivals_total;
        state
            .recurrence
            .observe(onset, rate, arrivals_total, silence_before, now);
    }
    let Some((service_mean, service_scv)) = state.service() else {
        // The latest sample's own rate too: out of zero the estimates are still rising
        // from nothing, while every request of the burst waits.
        let latest = since_last.map_or(0.0, |dt| arrivals / dt);
        return before_any_answer(slo, obs, ready, rate.max(latest), max_replicas);
    };
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
    state.observe_waiting(sample, ready, slots, level, service, tuning.queue_seconds);
    let arrival_scv = state.calibrated_scv(dispersion, service_scv, tuning.queue_prior);
    let lead = lead(cold_start, cold_start_sd, tuning, state);
    let model = Model::for_lead(sample.in_flight, lead, service_mean, tuning);
    let queued = queued_beyond_slots(sample.in_flight, ready, slots, &model);
    let rate = rate + queued / lead.max(latency);
    let load = Load {
        rate,
        arrival_scv,
        service_mean,
        service_scv,
        shape_scv: counted_shape.unwrap_or(service_scv),
    };
    if ![rate, dispersion, service_mean, service_scv, cold_start]
        .iter()
        .all(|v| v.is_finite())
    {
        return Plan::Missing(format!(
            "traffic estimates out of range (rate {rate}, service {service_mean}s)"
        ));
    }
    let within = service_within(latency, service_mean, load.shape_scv);
    let budget = (within - slo.attainment).max((1.0 - slo.attainment) * tuning.min_wait_budget);
    let target = within - budget;
    let keep_seconds = cold_start * tuning.keep_cold_starts;
    observe_idle(state, sample, arrivals, (keep_seconds, lead));
    // What going to zero through an idle spell costs, where the policy may go to zero.
    let idle_cost = range.to_zero.then(|| IdleCost {
        within,
        cold_within: super::idle::within_after_cold_start(
            latency - state.period_seconds.unwrap_or(0.0),
            state.cold_start().unwrap_or((cold_start, 0.0)),
            service_mean,
            load.shape_scv,
        ),
        wait_budget: budget,
        restart_seconds: cold_start * (1.0 + tuning.hedge),
    });
    let (needed, predicted) =
        model.replicas_for(&load, slots, latency, target, max_replicas, &mut state.grid);
    let now_sized = Sized {
        load,
        model,
        target,
        needed,
        max_replicas,
    };
    let at_zero = obs.current_replicas == 0;
    let burst = for_recurring_burst(slo, tuning, state, &now_sized, lead, now);
    let burst_due = burst.is_some();
    let prewarm = burst
        .filter(|(replicas, _)| *replicas > needed || at_zero)
        .map(|(replicas, due)| (replicas.max(needed), due));
    let wanted = prewarm.map_or(needed, |(replicas, _)| replicas);
    let keep_ms = (keep_seconds * 1000.0) as i64;
    let kept = state.recent.remember(wanted, now, keep_ms);
    // Hedge only for what is needed now, not for what a dip keeps; and only while requests
    // are in flight or arriving. With none, a shortage misses nothing, and a replica wanted
    // ahead of a burst is started one lead ahead, its spread allowed for: an extra start
    // would be a pod created and removed for nothing (on a GPU pool, perhaps a node).
    let demand_now = sample.in_flight > 0.0 || state.last_arrival == Some(sample.at);
    let short = ready < needed && demand_now;
    let hedge = if short {
        extra_starts(
            tuning,
            state,
            &now_sized,
            (ready, predicted),
            slo,
            cold_start,
            (obs, now),
        )
    } else {
        0
    };
    state.short_before = short;
    let started = needed.saturating_add(hedge);
    let recently_started = state.recent_starts.remember(started, now, keep_ms);
    // While the count needed is not ready, replicas still starting are not cancelled: a
    // dip of one in the count needed would otherwise remove a hedged start a second after
    // it began and start it again the next (pod churn, and a cold start begun anew).
    let still_short = if ready < needed {
        recently_started.min(obs.current_replicas)
    } else {
        0
    };
    let planned_replicas = kept
        .max(started)
        .max(still_short)
        .min(max_replicas.max(kept));
    let warming = !state.warm(now) && planned_replicas < obs.current_replicas;
    let silent = idle_cost.as_ref().and_then(|cost| {
        let idle = IdleRule {
            keep_seconds,
            allowed: state.idle.allows_zero(cost, tuning.idle_budget, now),
        };
        silence(
            state,
            sample,
            at_zero,
            burst_due,
            (lead, cold_start),
            idle,
            now,
        )
    });
    let replicas = match (warming, silent) {
        (true, _) => obs.current_replicas,
        (false, Some(_)) => 0,
        (false, None) => planned_replicas,
    };

    let mut reasons = Vec::new();
    // A counted share is known to its count: within its noise the SLO is not called out of
    // reach (the plan is the same either way).
    let noise = counted_shape.map_or(0.0, |_| state.within_noise(within));
    if within + noise < slo.attainment {
        reasons.push(Reason::SloOutOfReach {
            latency_seconds: latency,
            attainment: slo.attainment,
            within_without_wait: within,
            within_measured: counted_shape.is_some(),
            counted_requests: state.within_requests,
            prior_requests: super::estimate::SERVICE_PRIOR_REQUESTS,
            planned_for: target,
        });
    }
    reasons.push(Reason::SloPlan {
        latency_seconds: latency,
        attainment: slo.attainment,
        planned_for: target,
        replicas: needed,
        predicted,
        rate,
        dispersion,
        arrival_scv,
        service_ms: service_mean * 1000.0,
        service_sd_ms: service_mean * service_scv.sqrt() * 1000.0,
        service_measured: !state.service_from_littles_law,
        forecast_percent: super::percent_over(planned, level),
        jump,
        cold_start_seconds: cold_start,
        cold_starts_measured,
        cold_start_widened: super::estimate::widened_while_few(cold_starts_measured),
        over_lead: model.over_lead(),
        queued,
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
    if let (
        false,
        Some(Silence::UntilBurst {
            quiet_seconds,
            due_in_seconds,
            period_seconds,
        }),
    ) = (warming, silent)
    {
        reasons.push(Reason::SloSilentUntilBurst {
            quiet_seconds,
            due_in_seconds,
            period_seconds,
            lead_seconds: lead,
        });
    } else if let (false, Some(Silence::Idle { quiet_seconds }), Some(cost)) =
        (warming, silent, &idle_cost)
    {
        reasons.push(Reason::SloIdleToZero {
            quiet_seconds,
            keep_seconds,
            beyond_keep_seconds: state.idle.beyond_keep.map_or(0.0, |(mean, _)| mean),
            spells: state.idle.spells_at(now),
            restart_seconds: cost.restart_seconds,
            lead_seconds: lead,
            latency_seconds: latency,
            cold_within: cost.cold_within,
            arrived_after_idle: state.idle.share(),
        });
    } else if warming {
        reasons.push(Reason::SloWarmingUp {
            held: replicas,
            seconds: super::estimate::WARMUP_SECONDS,
        });
    } else if let Some((replicas, due)) = prewarm {
        reasons.push(Reason::SloRecurringBurst {
            replicas,
            rate: due.peak_rate,
            period_seconds: due.period_seconds,
            due_in_seconds: due.due_in_seconds,
            lead_seconds: lead,
        });
    } else if kept > needed {
        reasons.push(Reason::SloKeepsThroughDip {
            replicas: kept,
            needed,
            cold_start_seconds: cold_start * tuning.keep_cold_starts,
        });
    }
    // Through a silence nothing is started, hedged or not.
    if hedge > 0 && !warming && silent.is_none() {
        reasons.push(Reason::SloHedgedStart {
            extra: hedge,
            ready,
            needed,
        });
    }
    Plan::Proposal {
        replicas,
        rate,
        reasons,
    }
}
