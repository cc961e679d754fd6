//! Online estimates the capacity model needs, each from the observation stream with its own
//! window: the arrival rate (through the forecaster) and its short-term variability, the
//! service time's mean and variance, and the cold start actually measured.

use super::forecast::{Forecaster, Smoothing};
use super::queueing::{lognormal_params, mean_queue, normal_cdf, Load};
use crate::observation::{is_usable, Pod, TrafficSample, WithinLatency};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Requests over which the mean service time averages (exponentially weighted).
pub const SERVICE_MEAN_WINDOW_REQUESTS: f64 = 1000.0;
/// Requests over which the second moment averages: the tail the SLO depends on needs more.
pub const SERVICE_SHAPE_WINDOW_REQUESTS: f64 = 5000.0;
/// Weight, in requests, of the prior (exponential service) on the service-time shape.
pub const SERVICE_PRIOR_REQUESTS: f64 = 300.0;
/// Seconds of traffic the estimates need before the model may propose fewer replicas than
/// the target has.
pub const WARMUP_SECONDS: f64 = 30.0;
/// Arrival rates above this (req/s) are taken as a broken counter, not as traffic.
pub const MAX_RATE: f64 = 1e8;
/// Time constant of the dispersion estimate, seconds.
pub const DISPERSION_SECONDS: f64 = 60.0;
/// Time constant of the short-window rate that catches a jump before the level does, seconds.
pub const SHORT_RATE_SECONDS: f64 = 2.0;
/// Cold starts over which the cold-start estimate averages (exponentially weighted).
pub const COLD_START_WINDOW: f64 = 10.0;
/// A pod whose start-to-ready time exceeds this is not counted as a cold start (it was
/// unready later in its life, or its clock is off).
pub const COLD_START_CEILING_SECONDS: f64 = 3600.0;
/// The log-spread believed of one service's cold starts, pooled with the starts measured
/// ([`predicted_start`]): Alibaba's measured base-model loads (`../shared/traces`, 7,531
/// samples) put their 90th percentile 1.85 times their median (42.0 s and 22.7 s), a
/// lognormal sigma of `ln 1.85 / 1.28 = 0.48`.
pub const PRIOR_COLD_START_LOG_SPREAD: f64 = 0.5;
/// The starts [`PRIOR_COLD_START_LOG_SPREAD`] weighs as against those measured: after one
/// start, whose mean takes one of them, the next is predicted as Student's t with two
/// degrees of freedom, and with more starts the belief's share of the pooled spread falls.
pub const PRIOR_COLD_STARTS: f64 = 2.0;

/// The longest decision period the lead allows for, seconds.
pub const MAX_PERIOD_SECONDS: f64 = 60.0;

/// The estimator state carried from one decision to the next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloState {
    /// The last traffic sample taken.
    pub last: Option<TrafficSample>,
    /// The arrival-rate forecaster.
    pub forecast: Forecaster,
    /// Short-window rate, req/s.
    pub short_rate: f64,
    /// Variance of per-second arrival counts around the level, per second.
    pub count_variance: f64,
    /// Mean service time, seconds (`None` until completions were seen).
    pub service_mean: Option<f64>,
    /// Mean squared service time, seconds squared.
    pub service_square: Option<f64>,
    /// Share of service times within `within_latency`, counted by the driver (exponentially
    /// weighted over `SERVICE_SHAPE_WINDOW_REQUESTS`).
    #[serde(default)]
    pub within_share: Option<f64>,
    /// The latency that share is counted at, seconds.
    #[serde(default)]
    pub within_latency: Option<f64>,
    /// Requests counted into that share.
    #[serde(default)]
    pub within_requests: f64,
    /// Whether the service estimate came from Little's law (no service-time counters).
    pub service_from_littles_law: bool,
    /// Whether the service estimate was learnt only while requests outnumbered the ready
    /// slots (the first ones, with nothing better to go on): an upper bound that the first
    /// sample after the backlog drained replaces.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service_provisional: bool,
    /// What the answers showed while the estimate was provisional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional: Option<super::backlog::Provisional>,
    /// Whether the last sample had more requests in flight than ready slots.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last_overloaded: bool,
    /// After an overload, the completions count by which the requests in flight when it
    /// ended have all completed: until then, completions include requests that waited in a
    /// replica's own queue, which a proxy times as the replica's (since 2026-12-05, eighth
    /// session; before, one sample interval within the slots was taken as enough, and
    /// requests that had queued for longer than it were learnt as service times).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_done_at: Option<f64>,
    /// Requests whose service time was measured so far.
    #[serde(default)]
    pub service_requests: f64,
    /// The cold starts measured so far.
    #[serde(flatten)]
    pub cold: ColdStarts,
    /// Recent proposals, for the keep-through-a-dip rule.
    #[serde(default)]
    pub recent: RecentProposals,
    /// Recent counts started (the count needed with its hedged starts), so that starting
    /// replicas are not cancelled while the count needed is still not ready.
    #[serde(default)]
    pub recent_starts: RecentProposals,
    /// Burst onsets, to start replicas ahead of bursts that recur on a clock.
    #[serde(default)]
    pub recurrence: super::recurrence::Recurrence,
    /// The arrivals that followed idle spells, to judge going to zero through one.
    #[serde(default)]
    pub idle: super::idle::IdleArrivals,
    /// When a sample last brought arrivals: how long the traffic has been silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_arrival: Option<Time>,
    /// The last silence that arrivals ended: when, and how long it had lasted, seconds (a
    /// burst's onset records the silence before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_ended: Option<(Time, f64)>,
    /// Requests seen waiting beyond the ready slots, averaged over the calibration window.
    #[serde(default)]
    pub queue_observed: f64,
    /// What the model with Poisson arrivals predicted for the same samples.
    #[serde(default)]
    pub queue_predicted: f64,
    /// When the queue was last compared (the sample's time).
    #[serde(default)]
    pub queue_at: Option<Time>,
    /// Seconds between the traffic samples of the last two decisions: the decision loop's
    /// period (the controller's sync, a poll), by which a start left to the next decision
    /// comes late. At most [`MAX_PERIOD_SECONDS`], so a gap in the samples (a restart) does
    /// not read as a slow loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<f64>,
    /// Whether the last decision found fewer replicas ready than needed while requests were
    /// in flight or arriving: the floor of `Tuning::hedge` extras per missing replica is
    /// started from the second such decision in a row. A one-second clump that reads as a
    /// jump starts only the extras its priced shortage is worth; hedges started for it
    /// were otherwise removed, still starting, the next second (pod churn).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub short_before: bool,
    /// The attainment reached: the requests that ended within the SLO's latency, as the
    /// driver counted them, over about the last hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<super::reached::Reached>,
    /// The queueing model's integration grid, kept while the service time holds (not
    /// persisted: a restarted controller rebuilds it).
    #[serde(skip)]
    pub grid: Option<super::queueing::PenaltyGrid>,
}

/// The requests in flight beyond what `ready` replicas of `slots` slots hold at once: those
/// waiting in a queue (none where the slots hold them all).
pub(super) fn waiting_beyond_slots(in_flight: f64, ready: u32, slots: u32) -> f64 {
    (in_flight - f64::from(ready) * f64::from(slots)).max(0.0)
}

/// An exponentially weighted average moved `weight` of the way to `new` (`new` itself when
/// there is none yet).
pub(super) fn ewma(old: Option<f64>, new: f64, weight: f64) -> f64 {
    match old {
        Some(o) => o + weight * (new - o),
        None => new,
    }
}

/// The weight of `added` new requests in an average over `window` requests, `seen` of them
/// so far, these included: a plain average until the window has filled, then exponential.
fn request_weight(added: f64, seen: f64, window: f64) -> f64 {
    (added / seen).max(1.0 - (-added / window).exp())
}

/// The mean of `served` answers that took `seconds` in all, where it can be a service time:
/// not from counters that went backwards or jumped by more than a day a request.
fn plausible_mean(seconds: f64, served: f64) -> Option<f64> {
    let mean = seconds / served;
    (served > 0.0 && is_usable(mean) && mean < 86_400.0).then_some(mean)
}

/// `measured` from `n` requests, leaning on `prior` until many more than
/// [`SERVICE_PRIOR_REQUESTS`] were measured: a few samples understate a heavy tail.
fn lean_on_prior(measured: f64, n: f64, prior: f64) -> f64 {
    (n * measured + SERVICE_PRIOR_REQUESTS * prior) / (n + SERVICE_PRIOR_REQUESTS)
}

/// A pod as a number: its name and creation time (a StatefulSet's pod recreated under the
/// same name is another pod), hashed with FNV-1a, 64 bits, the same in every version, since
/// the set it keys is kept in the persisted state. The decision state is copied on every
/// decision, and numbers copy without an allocation each.
pub fn pod_key(pod: &Pod) -> u64 {
    let created = pod
        .created_at
        .map_or(i64::MIN, |t| t.millis_since(Time::ZERO));
    let bytes = pod.name.bytes().chain(created.to_le_bytes());
    bytes.fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Kubernetes writes its timestamps (creation, Ready's last transition) in whole seconds.
const API_TIME_RESOLUTION_MS: i64 = 1000;

/// The cold start actually measured: from each pod's creation (else start) to its first
/// turning ready, for pods that turned ready after Ebb first looked (the ones it started).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColdStarts {
    /// Mean measured cold start, seconds.
    pub cold_start_mean: Option<f64>,
    /// Mean squared measured cold start.
    pub cold_start_square: Option<f64>,
    /// Cold starts measured so far.
    pub cold_starts: u32,
    /// When Ebb first looked: pods that turned ready before it were not started by it (read
    /// by earlier versions as the newest ready time counted).
    pub ready_watermark: Option<Time>,
    /// The pods seen ready ([`pod_key`]s), each counted once: a pod whose
    /// readiness flaps later is not a cold start from its creation an hour before.
    #[serde(default)]
    pub ready_seen: BTreeSet<u64>,
    /// Pods seen starting and not yet ready: when each started and was last seen unready. One
    /// removed before it turned ready (a hedged start no longer needed) still says its cold
    /// start was longer than that: left out, the fast starts alone would be measured.
    #[serde(default)]
    pub starting: BTreeMap<String, (Time, Time)>,
}

impl ColdStarts {
    /// Counts the pods that turned ready since the last look as cold starts.
    pub fn observe_pods(&mut self, pods: &[Pod], now: Time) {
        // Each pod's key, hashed once a decision.
        let keys: Vec<u64> = pods.iter().map(pod_key).collect();
        self.ready_seen.retain(|key| keys.contains(key));
        let ready = || {
            pods.iter()
                .zip(keys.iter().copied())
                .filter(|(p, _)| p.ready)
        };
        let Some(first_look) = self.ready_watermark else {
            // Pods ready before Ebb first looked were not started by it.
            self.ready_watermark = Some(now);
            self.ready_seen.extend(ready().map(|(_, key)| key));
            return;
        };
        for (p, key) in ready() {
            let ready_at = p.ready_changed_at;
            if self.ready_seen.contains(&key) || ready_at.is_some_and(|at| at > now) {
                // Counted already, or stamped by an API server whose clock runs ahead of
                // ours: counted at a later look.
                continue;
            }
            self.ready_seen.insert(key);
            let (Some(began), Some(ready_at)) = (p.cold_start_began(), ready_at) else {
                continue;
            };
            // Not ready at the first look (those are in `ready_seen`), so it turned ready
            // since, even where the API's whole seconds put its Ready time up to a second
            // before the first look. (The time matters only for state kept by a version
            // without `ready_seen`.)
            let after_first_look = ready_at.millis_since(first_look) > -API_TIME_RESOLUTION_MS
                || self.starting.contains_key(&p.name);
            if !after_first_look || ready_at < began {
                continue;
            }
            let seconds = ready_at.seconds_since(began);
            self.add(seconds, (seconds, seconds * seconds));
        }
        // After those measured now, so that a start cut short is expected beyond them.
        self.observe_removed_while_starting(pods, &keys, now);
    }

    /// Tracks the pods still starting; one that left (or began deleting) before it turned
    /// ready is counted at what its cold start is expected to be, given it was longer than
    /// it had been starting when last seen. `keys` are the pods' [`pod_key`]s.
    fn observe_removed_while_starting(&mut self, pods: &[Pod], keys: &[u64], now: Time) {
        let mut gone: Vec<(Time, Time)> = Vec::new();
        self.starting.retain(|name, &mut seen| {
            let here = pods.iter().find(|p| &p.name == name);
            let removed = here.is_none_or(|p| p.deleting && !p.ready);
            if removed {
                gone.push(seen);
            }
            !removed && here.is_some_and(|p| !p.ready)
        });
        // A pod once ready that is not now (its readiness flapped) is not starting.
        let ready_seen = &self.ready_seen;
        let starting = pods
            .iter()
            .zip(keys)
            .filter(|(p, key)| !p.ready && !p.deleting && !ready_seen.contains(key));
        for (p, _) in starting {
            let Some(started) = p.cold_start_began().filter(|&at| at <= now) else {
                continue;
            };
            // Every decision sees the starting pods again: update in place, without a copy
            // of the name.
            match self.starting.get_mut(&p.name) {
                Some(seen) => *seen = (started, now),
                None => {
                    self.starting.insert(p.name.clone(), (started, now));
                }
            }
        }
        for (started, last_seen) in gone {
            let at_least = last_seen.seconds_since(started);
            if at_least <= 0.0 {
                continue;
            }
            if let Some(moments) = self.beyond(at_least) {
                self.add(at_least, moments);
            }
        }
    }

    /// `(E[T | T > c], E[T^2 | T > c])` for the cold start `T` as measured so far
    /// (lognormal with its mean and standard deviation): `E[T^k | T > c] = E[T^k]
    /// Phi(k s - a) / Phi(-a)`, `a = (ln c - m) / s`. `None` before any start was measured to
    /// its end: one cut short then says only that cold starts last longer than it ran, and
    /// counted as a whole one, a hedged start removed a second after it began would anchor
    /// the estimate at a second.
    fn beyond(&self, c: f64) -> Option<(f64, f64)> {
        let (mean, sd) = self.cold_start()?;
        if sd <= 1e-9 || mean <= 0.0 {
            let t = c.max(mean);
            return Some((t, t * t));
        }
        let (m, s) = lognormal_params(mean, (sd / mean).powi(2));
        let s2 = s * s;
        let a = (c.ln() - m) / s;
        let tail = normal_cdf(-a);
        if tail < 1e-12 {
            return Some((c, c * c));
        }
        let first = mean * normal_cdf(s - a) / tail;
        let second = (2.0 * m + 2.0 * s2).exp() * normal_cdf(2.0 * s - a) / tail;
        Some((first.max(c), second.max(c * c)))
    }

    /// Counts one cold start that took (or, cut short, had taken) `seconds`, with the first
    /// and second moments it adds: `seconds` and its square for one measured to the end.
    fn add(&mut self, seconds: f64, (first, second): (f64, f64)) {
        if !(0.0..=COLD_START_CEILING_SECONDS).contains(&seconds) {
            return;
        }
        self.cold_starts = self.cold_starts.saturating_add(1);
        let weight = (1.0 / f64::from(self.cold_starts)).max(1.0 / COLD_START_WINDOW);
        self.cold_start_mean = Some(ewma(self.cold_start_mean, first, weight));
        self.cold_start_square = Some(ewma(self.cold_start_square, second, weight));
    }

    /// Mean and standard deviation of the measured cold start.
    pub fn cold_start(&self) -> Option<(f64, f64)> {
        let mean = self.cold_start_mean?;
        let square = self.cold_start_square.unwrap_or(mean * mean);
        Some((mean, (square - mean * mean).max(0.0).sqrt()))
    }

    /// The cold start a plan sizes for, the starts measured into it (0: stated or assumed),
    /// and its measured spread: the one the policy `stated`, else the measured starts'
    /// [`predicted_start`] `spread` deviations up, else `assumed`. The request and the token
    /// SLO plans read it alike.
    ///
    /// The spread returned, which prices hedged starts and the pre-warm's allowance, stays
    /// the measured one: priced at a believed spread, hedges started extras the runs then
    /// paid for (spikes 1.26x KPA's replica-seconds where they cost 0.96x).
    pub fn horizon(&self, stated: Option<f64>, assumed: f64, spread: f64) -> (f64, u32, f64) {
        match (stated, self.cold_start()) {
            (Some(c), _) => (c, 0, 0.0),
            (None, Some((mean, sd))) => {
                let starts = f64::from(self.cold_starts).min(COLD_START_EFFECTIVE_STARTS);
                (
                    predicted_start(mean, sd, starts, spread),
                    self.cold_starts,
                    sd,
                )
            }
            (None, None) => (assumed, 0, 0.0),
        }
    }
}

/// Whether the belief about cold starts' spread still widens a horizon measured over
/// `starts`: until the estimate averages over a whole window of them (the reasons say so).
pub fn widened_while_few(starts: u32) -> bool {
    starts > 0 && f64::from(starts) < COLD_START_WINDOW
}

/// The most starts the cold-start estimate weighs as: an exponential average over
/// [`COLD_START_WINDOW`] starts has the variance of a mean of `2 W - 1`.
const COLD_START_EFFECTIVE_STARTS: f64 = 2.0 * COLD_START_WINDOW - 1.0;

/// The next cold start's `spread` deviations up, predicted from `starts` measured ones of
/// `mean` and standard deviation `sd`: lognormal starts of unknown log-spread, believed
/// [`PRIOR_COLD_START_LOG_SPREAD`] as if from [`PRIOR_COLD_STARTS`] starts (a conjugate
/// normal, scaled-inverse-chi-squared prior on the log scale, flat on the log-mean). The
/// next start is then Student's t on the log scale, with `PRIOR_COLD_STARTS + n - 1`
/// degrees of freedom, of scale `sigma_n sqrt(1 + 1/n)`, where `sigma_n^2` pools the prior's
/// and the starts' log-variance by their degrees of freedom (Gelman et al., *Bayesian Data
/// Analysis*, 3rd ed., section 3.3).
///
/// Few starts are few: one start, read as exact, set sine's horizon at a 12 s draw of a
/// service whose starts take 20 s at the median, for 400 s, and the two replicas then
/// started for its rise took 38 s. After one start the next is planned 2.54 times it (so a
/// service whose starts take 2 s plans 5 s ahead, not an absolute prior's tens of seconds);
/// two starts a second apart no longer read as a spread of half a second. As starts are
/// measured the prior fades: over a window's worth of starts of the simulator's
/// log-spread 0.4 it gives the median times 1.54, where the mean plus a deviation gives 1.53.
pub fn predicted_start(mean: f64, sd: f64, starts: f64, spread: f64) -> f64 {
    let (log_mean, log_sd) = super::queueing::lognormal_params(mean, (sd / mean).powi(2));
    let freedom = PRIOR_COLD_STARTS + starts - 1.0;
    let pooled = (PRIOR_COLD_STARTS * PRIOR_COLD_START_LOG_SPREAD.powi(2)
        + (starts - 1.0) * log_sd * log_sd)
        / freedom;
    let scale = (pooled * (1.0 + 1.0 / starts)).sqrt();
    (log_mean + student_t_quantile(spread, freedom) * scale).exp()
}

/// Student's t quantile with `freedom` degrees of freedom at the probability a normal puts
/// below `z`: the Cornish-Fisher expansion to its fourth term (Abramowitz and Stegun
/// 26.7.5), 1.3200 for 2 degrees and `z` 1, where the exact quantile is 1.3213, and closer
/// with more degrees.
fn student_t_quantile(z: f64, freedom: f64) -> f64 {
    let (z2, v) = (z * z, freedom);
    let g1 = z * (z2 + 1.0) / 4.0;
    let g2 = z * ((5.0 * z2 + 16.0) * z2 + 3.0) / 96.0;
    let g3 = z * (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) / 384.0;
    let g4 = z * ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) / 92160.0;
    z + g1 / v + g2 / (v * v) + g3 / v.powi(3) + g4 / v.powi(4)
}

impl SloState {
    /// Counts the pods that turned ready since the last look as cold starts.
    pub fn observe_pods(&mut self, pods: &[Pod], now: Time) {
        self.cold.observe_pods(pods, now);
    }

    /// Mean and standard deviation of the measured cold start.
    pub fn cold_start(&self) -> Option<(f64, f64)> {
        self.cold.cold_start()
    }
}

impl SloState {
    /// Takes a new traffic sample; returns the requests that arrived since the last one, or
    /// `None` when it brought nothing new (or nothing believable: a counter that restarted or
    /// jumped absurdly), so that what else counts arrivals counts the same ones. Service
    /// times are only learnt while requests in flight fit in `slots` (the ready replicas'
    /// slots): beyond that, a replica's time on a request includes waiting in its own queue.
    pub fn observe(
        &mut self,
        sample: &TrafficSample,
        smoothing: &Smoothing,
        slots: f64,
    ) -> Option<f64> {
        let usable = is_usable(sample.arrivals_total) && is_usable(sample.completions_total);
        if !usable {
            return None;
        }
        let Some(last) = self.last else {
            self.last = Some(*sample);
            return None;
        };
        if sample.at <= last.at {
            return None;
        }
        if sample.arrivals_total < last.arrivals_total
            || sample.completions_total < last.completions_total
        {
            // Counters restarted: start the differences again, keep what was learnt.
            self.last = Some(*sample);
            return None;
        }
        let dt = sample.at.seconds_since(last.at);
        self.period_seconds = Some(dt.min(MAX_PERIOD_SECONDS));
        if let (Some(now), Some(before)) = (sample.answered, last.answered) {
            self.reached = super::reached::Reached::observe(self.reached, before, now, dt);
        }
        let arrivals = sample.arrivals_total - last.arrivals_total;
        let rate = arrivals / dt;
        if !(rate.is_finite() && rate <= MAX_RATE) {
            // An absurd counter jump: skip it rather than let it poison the estimates.
            self.last = Some(*sample);
            return None;
        }
        if arrivals > 0.0 {
            // Before the first arrival the silence began before the estimates did: at least
            // that long, which no burst seen later can shorten.
            let silent = self
                .last_arrival
                .map_or(super::recurrence::SILENT_SINCE_START, |t| {
                    last.at.seconds_since(t)
                });
            if silent > 0.0 {
                self.silence_ended = Some((sample.at, silent));
            }
            self.last_arrival = Some(sample.at);
        }
        let expected = self.forecast.at_horizon(dt, smoothing) * dt;
        self.forecast.observe(rate, sample.at, dt, smoothing);
        let weight = 1.0 - (-dt / DISPERSION_SECONDS).exp();
        let residual = arrivals - expected;
        self.count_variance += weight * (residual * residual / dt - self.count_variance);
        let short = 1.0 - (-dt / SHORT_RATE_SECONDS).exp();
        self.short_rate += short * (rate - self.short_rate);
        let saturated = self.last_overloaded && sample.in_flight > slots && slots > 0.0;
        let drained = self.track_backlog(&last, sample, slots);
        if drained && self.service_provisional {
            // What a backlog taught (a cold start from zero under load: each request then
            // also waited in its replica's own queue) gives way once the requests that
            // waited have completed.
            self.forget_service();
        }
        match (
            drained,
            self.service_mean.is_none() || self.service_provisional,
        ) {
            (true, _) => self.observe_service(&last, sample, dt),
            (false, true) => {
                let slot_seconds = saturated.then_some(slots * dt);
                self.observe_provisional(&last, sample, dt, slot_seconds);
            }
            (false, false) => {}
        }
        self.last = Some(*sample);
        Some(arrivals)
    }

    /// How long the traffic had been silent before the arrivals that ended its last silence,
    /// seconds, if they came within `QUIET_SECONDS` of `now` (a burst's onset is seen a few
    /// samples after its first arrivals); 0 otherwise.
    pub fn silence_just_ended(&self, now: Time) -> f64 {
        self.silence_ended
            .filter(|(ended, _)| now.seconds_since(*ended) <= super::recurrence::QUIET_SECONDS)
            .map_or(0.0, |(_, seconds)| seconds)
    }

    /// Whether the completions between `last` and `sample` are free of an overload's backlog:
    /// more requests in flight than ready `slots` wait in the replicas' own queues, and the
    /// ones in flight when the overload ended may have waited too, so the intervals up to the
    /// one in which the last of them completed are not service times.
    fn track_backlog(&mut self, last: &TrafficSample, sample: &TrafficSample, slots: f64) -> bool {
        let overloaded = sample.in_flight > slots;
        if overloaded {
            self.backlog_done_at = None;
        } else if self.last_overloaded {
            let in_flight = if is_usable(sample.in_flight) {
                sample.in_flight
            } else {
                0.0
            };
            self.backlog_done_at = Some(sample.completions_total + in_flight);
        }
        let drained = !overloaded
            && !self.last_overloaded
            && self
                .backlog_done_at
                .is_none_or(|done| last.completions_total >= done);
        if drained {
            self.backlog_done_at = None;
        }
        self.last_overloaded = overloaded;
        drained
    }

    /// Learns the service time from answers that may have waited in a replica's queue (see
    /// [`super::backlog`]): the mean is an upper bound, and the shape is left to the prior.
    fn observe_provisional(
        &mut self,
        last: &TrafficSample,
        now: &TrafficSample,
        dt: f64,
        slot_seconds: Option<f64>,
    ) {
        let (Some(s1), Some(s0)) = (now.service, last.service) else {
            // Little's law reads the waits into the time in system either way.
            self.observe_service(last, now, dt);
            self.service_provisional = self.service_mean.is_some();
            return;
        };
        let (served, seconds) = (s1.requests - s0.requests, s1.seconds - s0.seconds);
        if plausible_mean(seconds, served).is_none() {
            return;
        }
        let provisional = self.provisional.get_or_insert_with(Default::default);
        provisional.add(seconds, served, slot_seconds);
        let Some(mean) = provisional.mean() else {
            return;
        };
        self.forget_shape();
        self.service_mean = Some(mean);
        self.service_square = Some(2.0 * mean * mean);
        self.service_from_littles_law = false;
        self.service_provisional = true;
    }

    /// Drops the service estimate and its shape, to learn them again.
    fn forget_service(&mut self) {
        self.forget_shape();
        self.service_mean = None;
        self.service_square = None;
        self.service_provisional = false;
        self.provisional = None;
    }

    /// Drops the counted share within the SLO and the count of requests measured, which the
    /// shape's prior leans on: what a backlog cannot tell.
    fn forget_shape(&mut self) {
        self.within_share = None;
        self.within_latency = None;
        self.within_requests = 0.0;
        self.service_requests = 0.0;
    }

    fn observe_service(&mut self, last: &TrafficSample, now: &TrafficSample, dt: f64) {
        if let (Some(s1), Some(s0)) = (now.service, last.service) {
            let served = s1.requests - s0.requests;
            let (sum, squares) = (
                s1.seconds - s0.seconds,
                s1.squared_seconds - s0.squared_seconds,
            );
            let mean = plausible_mean(sum, served).filter(|_| is_usable(squares / served));
            if let Some(mean) = mean {
                let seen = self.service_requests + served;
                let mean_weight = request_weight(served, seen, SERVICE_MEAN_WINDOW_REQUESTS);
                let shape_weight = request_weight(served, seen, SERVICE_SHAPE_WINDOW_REQUESTS);
                self.service_mean = Some(ewma(self.service_mean, mean, mean_weight));
                self.service_square =
                    Some(ewma(self.service_square, squares / served, shape_weight));
                self.service_from_littles_law = false;
                self.service_requests += served;
                if let (Some(w1), Some(w0)) = (s1.within, s0.within) {
                    self.observe_within(w1, w0, served);
                }
            }
            return;
        }
        // Little's law: time in system = requests held / throughput. It includes any
        // queueing, so it errs towards more replicas; its variance is unknown, so assume
        // exponential service (scv 1).
        let completed = now.completions_total - last.completions_total;
        if completed <= 0.0 || !is_usable(now.in_flight) {
            return;
        }
        let weight = 1.0 - (-completed / SERVICE_MEAN_WINDOW_REQUESTS).exp();
        let mean = now.in_flight / (completed / dt);
        if !(mean.is_finite() && mean < 86_400.0) {
            return;
        }
        self.service_mean = Some(ewma(self.service_mean, mean, weight));
        self.service_square = self.service_mean.map(|m| 2.0 * m * m);
        self.service_from_littles_law = true;
    }

    /// Takes the count of service times within the SLO's latency between two samples; a new
    /// latency starts the share again.
    fn observe_within(&mut self, now: WithinLatency, last: WithinLatency, served: f64) {
        let within = now.requests - last.requests;
        if now.latency_seconds != last.latency_seconds || !(0.0..=served).contains(&within) {
            return;
        }
        if self.within_latency != Some(now.latency_seconds) {
            self.within_latency = Some(now.latency_seconds);
            self.within_share = None;
            self.within_requests = 0.0;
        }
        let seen = self.within_requests + served;
        let weight = request_weight(served, seen, SERVICE_SHAPE_WINDOW_REQUESTS);
        self.within_share = Some(ewma(self.within_share, within / served, weight));
        self.within_requests = seen;
    }

    /// The latency at which the driver counts service times, where it serves an SLO of
    /// `latency`: the SLO's own (Ebb's proxy, the simulator), or a histogram's bucket bound
    /// below it but no lower than half of it (the controller reading a gateway's buckets).
    pub fn counted_at(&self, latency: f64) -> Option<f64> {
        self.within_latency
            .filter(|at| super::reached::stands_for(*at, latency))
    }

    /// The counted share of service times within `at` (the latency they are counted at),
    /// leaning on `prior` (the share the mean and variance imply) until many were counted;
    /// `None` where none was counted there.
    pub fn within(&self, at: f64, prior: f64) -> Option<f64> {
        if self.within_latency != Some(at) {
            return None;
        }
        let share = self.within_share?;
        Some(lean_on_prior(share, self.within_requests, prior))
    }

    /// Two standard errors of a counted share `share` of service times within the SLO: the
    /// share averages the last 5,000 or so requests (about 10,000 for an exponential average
    /// over 5,000), with the fitted shape's 300 on top while few were counted. World Cup's
    /// service times, 99.936% within 500 ms, read 99.8999% now and then, and the reason then
    /// called a 99.9% SLO out of reach.
    pub fn within_noise(&self, share: f64) -> f64 {
        let requests = self
            .within_requests
            .min(2.0 * SERVICE_SHAPE_WINDOW_REQUESTS);
        let share = share.clamp(0.0, 1.0);
        2.0 * (share * (1.0 - share) / (requests + SERVICE_PRIOR_REQUESTS)).sqrt()
    }

    /// Mean and squared coefficient of variation of the service time.
    pub fn service(&self) -> Option<(f64, f64)> {
        let mean = self.service_mean.filter(|m| *m > 0.0 && m.is_finite())?;
        let square = self.service_square.unwrap_or(2.0 * mean * mean);
        let measured = (square / (mean * mean) - 1.0).clamp(0.0, 100.0);
        // Until many requests were measured, lean towards exponential service (scv 1).
        let scv = lean_on_prior(measured, self.service_requests, 1.0);
        Some((mean, scv.max(measured.min(1.0))))
    }

    /// Whether the estimates have seen enough traffic to scale down on.
    pub fn warm(&self, now: Time) -> bool {
        self.forecast
            .since
            .is_some_and(|s| now.millis_since(s) as f64 >= WARMUP_SECONDS * 1000.0)
    }

    /// Index of dispersion of per-second arrival counts (variance over mean; 1 for Poisson).
    pub fn dispersion(&self) -> f64 {
        let level = self.forecast.level.max(1e-9);
        (self.count_variance / level).clamp(1.0, 50.0)
    }

    /// Compares the requests waiting beyond the `ready` replicas' slots now with what the
    /// model with Poisson arrivals at rate `level` (and the service time's mean and scv,
    /// `service`) predicts there, as sums decaying over
    /// `window` seconds. Skipped while no replica is ready (requests then wait for a cold
    /// start, not in a queue), when the load exceeds the ready slots (any model predicts a
    /// growing queue), and when the in-flight count is under half the busy slots that the
    /// rate and service time imply (Little's law): a driver without an in-flight gauge
    /// reports 0, and a missing gauge must not read as queues that never form.
    pub fn observe_waiting(
        &mut self,
        sample: &TrafficSample,
        ready: u32,
        slots: u32,
        level: f64,
        (service_mean, service_scv): (f64, f64),
        window: f64,
    ) {
        let fresh = self.queue_at.is_none_or(|at| sample.at > at);
        if ready == 0 || !fresh || window <= 0.0 {
            return;
        }
        let poisson = Load {
            rate: level.max(0.0),
            arrival_scv: 1.0,
            service_mean,
            service_scv,
            shape_scv: service_scv,
        };
        let predicted = mean_queue(&poisson, ready, slots);
        let waiting = waiting_beyond_slots(sample.in_flight, ready, slots);
        let gauged = sample.in_flight >= 0.5 * poisson.offered();
        if !(gauged && predicted.is_finite() && waiting.is_finite()) {
            return;
        }
        let dt = self
            .queue_at
            .map_or(1.0, |at| sample.at.seconds_since(at).min(window));
        self.queue_at = Some(sample.at);
        let keep = (-dt / window).exp();
        self.queue_observed = keep * self.queue_observed + dt * waiting;
        self.queue_predicted = keep * self.queue_predicted + dt * predicted;
    }

    /// The arrivals' squared coefficient of variation for the queueing model: the dispersion
    /// of per-second counts (`prior`), corrected by the queues seen. Counts can vary from
    /// second to second more than Poisson counts do without queues forming any longer (a
    /// conversation trace's turns come in clumps of a few requests that a few slots absorb);
    /// the ratio of the requests seen waiting to what the model with Poisson arrivals predicts
    /// scales Allen-Cunneen's `(ca^2 + cs^2) / 2` directly. The prior weighs as `pseudo`
    /// request-seconds of predicted waiting, so a queue the model expects to be rare must be
    /// seen rare for a while before it counts. Never above the dispersion (a queue longer
    /// than predicted comes from a cold start lagging a rise, which the forecast, not `ca^2`,
    /// is for), nor below Poisson's 1.
    pub fn calibrated_scv(&self, prior: f64, service_scv: f64, pseudo: f64) -> f64 {
        if pseudo <= 0.0 || prior.is_nan() || prior <= 1.0 {
            return prior;
        }
        let factor = (prior + service_scv) / (1.0 + service_scv);
        let ratio = (self.queue_observed + pseudo * factor) / (self.queue_predicted + pseudo);
        (ratio * (1.0 + service_scv) - service_scv).clamp(1.0, prior)
    }
}

/// Recent proposals, oldest first: the memory behind "keep a replica through a dip shorter
/// than its cold start" (the ski-rental rule), for both SLO signals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecentProposals(pub Vec<(Time, u32)>);

impl RecentProposals {
    /// Records a proposal and returns the highest one within the last `keep_ms`.
    ///
    /// An earlier proposal no higher than a later one never decides a maximum again (the
    /// later one is in every window the earlier is in, whatever `keep_ms` becomes), so it is
    /// dropped: the memory holds a falling sequence, a few entries rather than one a second
    /// (the state is copied every decision and written to the controller's status).
    pub fn remember(&mut self, proposal: u32, now: Time, keep_ms: i64) -> u32 {
        self.0.retain(|(at, _)| now.millis_since(*at) < keep_ms);
        while self.0.last().is_some_and(|&(_, r)| r <= proposal) {
            self.0.pop();
        }
        self.0.push((now, proposal));
        self.0.iter().map(|r| r.1).max().unwrap_or(proposal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::ServiceTotals;

    /// Feeds `seconds` samples of 100 req/s with 100 ms exponential service and `waiting`
    /// requests beyond 3 replicas' 4 slots.
    fn fed(seconds: i64, waiting: f64) -> SloState {
        let mut state = SloState::default();
        for s in 0..seconds {
            let total = 100.0 * s as f64;
            let sample = TrafficSample {
                at: Time::from_millis(s * 1000),
                in_flight: 12.0 + waiting,
                arrivals_total: total,
                completions_total: total,
                service: Some(ServiceTotals {
                    requests: total,
                    seconds: total * 0.1,
                    squared_seconds: total * 0.02,
                    within: None,
                }),
                answered: None,
            };
            state.observe_waiting(&sample, 3, 4, 100.0, (0.1, 1.0), 1800.0);
        }
        state
    }

    /// A 30 s level and a 60 s trend, no season.
    fn test_smoothing() -> Smoothing {
        Smoothing {
            level_seconds: 30.0,
            level_requests: 0.0,
            trend_seconds: 60.0,
            season_seconds: 0.0,
            season_weight: 0.0,
        }
    }

    #[test]
    fn the_lead_allows_for_the_decision_loops_period() {
        let smoothing = test_smoothing();
        let slo = crate::policy::Slo {
            latency_seconds: 0.5,
            attainment: 0.999,
            cold_start_seconds: Some(20.0),
            slots_per_replica: 4,
            season_seconds: 0.0,
            tuning: crate::policy::Tuning::default(),
        };
        let mut state = SloState::default();
        let lead = |state: &SloState| crate::slo::plan::lead_seconds(&slo, Some(state));
        assert_eq!(lead(&state), 20.0, "no decision seen yet");
        let at = |s: i64, total: f64| counted_at(s, total, 1.0);
        // A controller syncing every 5 s: a start left to the next decision is 5 s late.
        for (i, s) in [0, 5, 10].into_iter().enumerate() {
            state.observe(&at(s, 10.0 * i as f64), &smoothing, 4.0);
        }
        assert_eq!(state.period_seconds, Some(5.0));
        assert_eq!(lead(&state), 25.0);
        // An hour without samples (a restart) is not a slow loop.
        state.observe(&at(3610, 40.0), &smoothing, 4.0);
        assert_eq!(lead(&state), 20.0 + MAX_PERIOD_SECONDS);
    }

    /// A sample at `s` seconds whose `total` requests all arrived and completed, with
    /// `in_flight` in flight.
    fn counted_at(s: i64, total: f64, in_flight: f64) -> TrafficSample {
        TrafficSample {
            at: Time::from_millis(s * 1000),
            in_flight,
            arrivals_total: total,
            completions_total: total,
            service: None,
            answered: None,
        }
    }

    /// What a sample brought is what the idle rule counts: the arrivals since the last one, and
    /// none for the first sample, a counter that restarted, or a jump beyond any real rate.
    #[test]
    fn a_sample_brings_the_arrivals_since_the_last_and_none_it_did_not_believe() {
        let smoothing = test_smoothing();
        let at = |s: i64, total: f64| counted_at(s, total, 0.0);
        let mut state = SloState::default();
        assert_eq!(
            state.observe(&at(0, 100.0), &smoothing, 4.0),
            None,
            "the first"
        );
        assert_eq!(state.observe(&at(1, 112.0), &smoothing, 4.0), Some(12.0));
        assert_eq!(
            state.observe(&at(1, 112.0), &smoothing, 4.0),
            None,
            "no time passed"
        );
        assert_eq!(
            state.observe(&at(2, 5.0), &smoothing, 4.0),
            None,
            "a restart"
        );
        assert_eq!(state.observe(&at(3, 9.0), &smoothing, 4.0), Some(4.0));
        let absurd = 9.0 + 10.0 * MAX_RATE;
        assert_eq!(
            state.observe(&at(4, absurd), &smoothing, 4.0),
            None,
            "a jump"
        );
        assert_eq!(
            state.observe(&at(5, absurd + 3.0), &smoothing, 4.0),
            Some(3.0)
        );
    }

    /// The running counters a driver reports, to feed [`SloState::observe`] with.
    #[derive(Default)]
    struct Counters {
        arrived: f64,
        done: f64,
        busy: f64,
        squares: f64,
    }

    impl Counters {
        /// The sample at second `s` after `arrived` more arrivals and `finished` more
        /// completions of `each` seconds, with `in_flight` in flight.
        fn next(
            &mut self,
            s: i64,
            in_flight: f64,
            arrived: f64,
            finished: f64,
            each: f64,
        ) -> TrafficSample {
            self.arrived += arrived;
            self.done += finished;
            self.busy += finished * each;
            self.squares += finished * each * each;
            TrafficSample {
                at: Time::from_secs(s),
                in_flight,
                arrivals_total: self.arrived,
                completions_total: self.done,
                service: Some(ServiceTotals {
                    requests: self.done,
                    seconds: self.busy,
                    squared_seconds: self.squares,
                    within: None,
                }),
                answered: None,
            }
        }
    }

    #[test]
    fn a_service_time_learnt_under_a_backlog_gives_way_to_the_first_clean_one() {
        let smoothing = test_smoothing();
        let mut state = SloState::default();
        let mut counters = Counters::default();
        let mut feed = |state: &mut SloState, s: i64, in_flight: f64, each: f64| {
            let sample = counters.next(s, in_flight, 40.0, 40.0, each);
            state.observe(&sample, &smoothing, 4.0);
        };
        // From zero under load: 200 requests for one replica's 4 slots, each request
        // also waiting about 3 s in the replica's own queue. With no interval yet that began
        // and ended with the slots full, the timed mean is all there is.
        for s in 0..2 {
            feed(&mut state, s, 200.0, 3.0);
        }
        assert!(state.service_provisional);
        assert!((state.service_mean.unwrap() - 3.0).abs() < 1e-9);
        // Then the full slots read it: 4 slots answering 40 a second take 100 ms each,
        // assumed exponential (the waits say nothing of the shape).
        for s in 2..6 {
            feed(&mut state, s, 200.0, 3.0);
        }
        assert!(state.service_provisional);
        let (mean, scv) = state.service().unwrap();
        assert!((mean - 0.1).abs() < 1e-9, "{mean}");
        assert!((scv - 1.0).abs() < 1e-9, "{scv}");
        // The first interval within the slots still completes requests that waited, and
        // so does the next, in which the two in flight at the overload's end complete.
        feed(&mut state, 6, 2.0, 2.0);
        feed(&mut state, 7, 2.0, 2.0);
        assert!(state.service_provisional);
        assert!((state.service_mean.unwrap() - 0.1).abs() < 1e-9);
        feed(&mut state, 8, 2.0, 0.05);
        assert!(!state.service_provisional);
        let mean = state.service_mean.unwrap();
        assert!((mean - 0.05).abs() < 1e-9, "{mean}");
    }

    /// A replica's own queue can hold requests for many sample intervals (2 s requests, one
    /// slot, five queued): none of their times is learnt, however long they take to drain,
    /// and a learnt estimate is not moved by them either.
    #[test]
    fn requests_that_queued_are_not_learnt_until_the_last_of_them_completed() {
        let smoothing = test_smoothing();
        let mut state = SloState::default();
        let mut counters = Counters::default();
        // (arrivals, completions, in flight, seconds per completion) each second.
        let mut feed =
            |state: &mut SloState, s: i64, add: f64, finish: f64, in_flight: f64, each: f64| {
                let sample = counters.next(s, in_flight, add, finish, each);
                state.observe(&sample, &smoothing, 1.0);
            };
        // Learnt: 2 s a request, one at a time.
        for s in 0..20 {
            feed(&mut state, s, 0.5, 0.5, 1.0, 2.0);
        }
        let learnt = state.service_mean.unwrap();
        assert!((learnt - 2.0).abs() < 1e-9, "{learnt}");
        // Six arrive at once; one slot serves them over 12 s; each completion carries its
        // wait. At second 22 only the last of them is in flight, within the slot.
        feed(&mut state, 20, 6.0, 0.0, 6.0, 0.0);
        for (s, in_flight, timed) in [(21, 5.0, 4.0), (22, 1.0, 6.0), (23, 1.0, 8.0)] {
            feed(
                &mut state,
                s,
                0.0,
                if s == 22 { 4.0 } else { 0.0 },
                in_flight,
                timed,
            );
        }
        for s in 24..33 {
            let finish = if s == 32 { 1.0 } else { 0.0 };
            feed(&mut state, s, 0.0, finish, 1.0 - finish, 12.0);
            assert_eq!(state.service_mean, Some(learnt), "second {s}");
        }
        // Past the backlog: fresh completions are learnt again.
        feed(&mut state, 33, 1.0, 0.0, 1.0, 0.0);
        feed(&mut state, 34, 0.0, 1.0, 0.0, 2.5);
        assert!(state.service_mean.unwrap() > learnt);
    }

    #[test]
    fn the_dispersion_stands_until_queues_were_compared() {
        let state = SloState::default();
        assert_eq!(state.calibrated_scv(3.0, 1.0, 3.0), 3.0);
        // Switched off, or Poisson already: the dispersion as it is.
        assert_eq!(fed(600, 0.0).calibrated_scv(3.0, 1.0, 0.0), 3.0);
        assert_eq!(fed(600, 0.0).calibrated_scv(1.0, 1.0, 3.0), 1.0);
    }

    #[test]
    fn a_driver_without_an_in_flight_gauge_leaves_the_dispersion() {
        // 100 req/s of 100 ms keep 10 slots busy; an in-flight count of 0 is no gauge.
        let scv = fed(600, -12.0).calibrated_scv(3.0, 1.0, 3.0);
        assert_eq!(scv, 3.0);
    }

    #[test]
    fn queues_shorter_than_predicted_lower_ca2_to_poisson_and_no_further() {
        let scv = fed(600, 0.0).calibrated_scv(3.0, 1.0, 3.0);
        assert!((scv - 1.0).abs() < 1e-9, "{scv}");
    }

    #[test]
    fn queues_longer_than_predicted_keep_the_dispersion_and_no_more() {
        let scv = fed(600, 100.0).calibrated_scv(3.0, 1.0, 3.0);
        assert!((scv - 3.0).abs() < 1e-9, "{scv}");
    }

    proptest::proptest! {
        /// Whatever the queues showed, the `ca^2` used lies between Poisson's 1 (or the
        /// dispersion, if lower) and the dispersion: the queues can take pessimism away, never
        /// add it, and never make arrivals look smoother than Poisson's.
        #[test]
        fn the_calibrated_scv_stays_between_poisson_and_the_dispersion(
            observed in 0.0f64..1e6,
            predicted in 0.0f64..1e6,
            prior in 0.0f64..60.0,
            service_scv in 0.0f64..10.0,
            pseudo in 0.0f64..100.0,
        ) {
            let state = SloState {
                queue_observed: observed,
                queue_predicted: predicted,
                ..SloState::default()
            };
            let scv = state.calibrated_scv(prior, service_scv, pseudo);
            proptest::prop_assert!(scv.is_finite());
            proptest::prop_assert!(scv <= prior + 1e-12, "{scv} above {prior}");
            proptest::prop_assert!(scv >= prior.min(1.0) - 1e-12, "{scv} below Poisson");
        }
    }

    #[test]
    fn the_prior_weighs_as_its_request_seconds() {
        // A queue seen half as long as Poisson predicts over about 3 request-seconds of
        // prediction: halfway between the prior and what the queue alone says.
        let state = SloState {
            queue_observed: 1.5,
            queue_predicted: 3.0,
            ..SloState::default()
        };
        // Prior factor (3 + 1) / 2 = 2; ratio (1.5 + 3 x 2) / (3 + 3) = 1.25; ca^2 = 1.5.
        assert!((state.calibrated_scv(3.0, 1.0, 3.0) - 1.5).abs() < 1e-12);
    }

    fn starting(name: &str, started: i64, ready_at: Option<i64>) -> Pod {
        Pod {
            name: name.into(),
            ready: ready_at.is_some(),
            started_at: Some(Time::from_secs(started)),
            ready_changed_at: ready_at.map(Time::from_secs),
            ..Default::default()
        }
    }

    /// Ten rounds: `fast` ready after 10 s and, when `cut` is set, `slow` started beside it
    /// and removed after 11 s while still starting (a hedged start no longer needed).
    fn measured(cut: bool) -> (f64, f64) {
        let mut cold = ColdStarts::default();
        cold.observe_pods(&[], Time::from_secs(0));
        for round in 0..10i64 {
            let t0 = 100 * round + 1;
            let fast_ready = starting("fast", t0, Some(t0 + 10));
            cold.observe_pods(&[starting("fast", t0, None)], Time::from_secs(t0 + 5));
            if cut {
                let slow = starting("slow", t0, None);
                cold.observe_pods(&[fast_ready.clone(), slow], Time::from_secs(t0 + 11));
            }
            cold.observe_pods(&[fast_ready], Time::from_secs(t0 + 12));
            // The pods leave before the next round starts.
            cold.observe_pods(&[], Time::from_secs(t0 + 50));
        }
        cold.cold_start().unwrap()
    }

    #[test]
    fn starts_removed_before_ready_count_as_longer_than_they_ran() {
        let (only_fast, _) = measured(false);
        assert!((only_fast - 10.0).abs() < 1e-9, "{only_fast}");
        // Each slow start ran at least 11 s (last seen starting), longer than the fast ones:
        // the mean rises above theirs.
        let (with_cut, sd) = measured(true);
        assert!(with_cut > only_fast, "{with_cut}");
        assert!(sd > 0.0, "{sd}");
    }

    #[test]
    fn a_start_cut_short_before_any_was_measured_is_not_counted() {
        let mut cold = ColdStarts::default();
        cold.observe_pods(&[], Time::from_secs(0));
        // A hedged start removed 4 s after it began, before any pod turned ready.
        cold.observe_pods(&[starting("hedge", 1, None)], Time::from_secs(5));
        cold.observe_pods(&[], Time::from_secs(6));
        assert_eq!(cold.cold_start(), None);
        // The first start measured to its end is then the estimate.
        cold.observe_pods(&[starting("a", 10, None)], Time::from_secs(11));
        cold.observe_pods(&[starting("a", 10, Some(30))], Time::from_secs(31));
        assert_eq!(cold.cold_start(), Some((20.0, 0.0)));
    }

    #[test]
    fn few_starts_widen_the_horizon_and_the_belief_fades_as_starts_are_measured() {
        let mut cold = ColdStarts::default();
        cold.observe_pods(&[], Time::from_secs(0));
        assert_eq!(cold.horizon(None, 30.0, 1.0), (30.0, 0, 0.0));
        // One 2 s start: a fast service plans seconds ahead, not an assumption's 30 s.
        cold.observe_pods(&[starting("a", 10, None)], Time::from_secs(11));
        cold.observe_pods(&[starting("a", 10, Some(12))], Time::from_secs(12));
        let (one, measured, spread) = cold.horizon(None, 30.0, 1.0);
        assert!((one - 2.0 * 2.543).abs() < 0.01, "{one}");
        // The measured spread, none, is what prices hedged starts.
        assert_eq!((measured, spread), (1, 0.0));
        // Two starts, 2 s and 4 s: more than their mean and deviation (4 s) say, since two
        // starts can land close by chance; t with 3 degrees of freedom on the log scale.
        cold.observe_pods(&[starting("b", 20, None)], Time::from_secs(21));
        cold.observe_pods(&[starting("b", 20, Some(24))], Time::from_secs(24));
        let (two, measured, spread) = cold.horizon(None, 30.0, 1.0);
        assert!((two - 5.50).abs() < 0.01, "{two}");
        assert_eq!((measured, spread), (2, 1.0));
        // A stated cold start is taken as it is.
        assert_eq!(cold.horizon(Some(40.0), 30.0, 1.0), (40.0, 0, 0.0));
    }

    #[test]
    fn over_a_window_of_starts_the_horizon_is_what_they_measure() {
        // Lognormal starts of log-spread 0.4 (the simulator's) and median 1: mean plus one
        // deviation is 1.534; the prediction after a window's worth of them is within 1%.
        let mean = 0.08_f64.exp();
        let sd = mean * (0.16_f64.exp() - 1.0).sqrt();
        let predicted = predicted_start(mean, sd, COLD_START_EFFECTIVE_STARTS, 1.0);
        assert!((predicted / (mean + sd) - 1.0).abs() < 0.01, "{predicted}");
        // Starts far tighter than believed are believed tighter as they are counted.
        let tight = |starts| predicted_start(10.0, 0.5, starts, 1.0);
        assert!(
            tight(2.0) > tight(5.0) && tight(5.0) > tight(19.0),
            "{}",
            tight(19.0)
        );
        assert!(tight(19.0) < 13.0, "{}", tight(19.0));
    }

    #[test]
    fn the_t_quantile_is_within_a_thousandth_of_the_exact_one() {
        // Exact quantiles at 84.13% (one deviation) and 97.72% (two).
        for (freedom, one, two) in [
            (3.0, 1.1969, 3.3068),
            (4.0, 1.1416, 2.8693),
            (10.0, 1.0526, 2.2837),
        ] {
            assert!(
                (student_t_quantile(1.0, freedom) - one).abs() < 1e-3,
                "{freedom}"
            );
            assert!(
                (student_t_quantile(2.0, freedom) - two).abs() < 5e-3,
                "{freedom}"
            );
        }
        assert!((student_t_quantile(1.0, 2.0) - 1.3213).abs() < 2e-3);
    }

    #[test]
    fn a_cold_start_runs_from_creation_where_the_driver_knows_it() {
        let mut cold = ColdStarts::default();
        cold.observe_pods(&[], Time::from_secs(0));
        // Pending 40 s (a GPU node brought up for it), then started, ready 20 s later.
        let pending = Pod {
            created_at: Some(Time::from_secs(10)),
            ..starting("a", 50, None)
        };
        cold.observe_pods(
            &[Pod {
                started_at: None,
                ..pending.clone()
            }],
            Time::from_secs(30),
        );
        let ready = Pod {
            created_at: Some(Time::from_secs(10)),
            ..starting("a", 50, Some(70))
        };
        cold.observe_pods(&[ready], Time::from_secs(71));
        assert_eq!(cold.cold_start(), Some((60.0, 0.0)));
    }

    #[test]
    fn a_pod_recreated_under_its_name_is_a_cold_start_of_its_own() {
        let mut cold = ColdStarts::default();
        cold.observe_pods(&[], Time::from_secs(0));
        let incarnation = |created: i64, ready_at: Option<i64>| Pod {
            created_at: Some(Time::from_secs(created)),
            ..starting("model-0", created, ready_at)
        };
        cold.observe_pods(&[incarnation(10, Some(30))], Time::from_secs(31));
        // Deleted and created again between two looks, as a StatefulSet does.
        cold.observe_pods(&[incarnation(100, None)], Time::from_secs(101));
        cold.observe_pods(&[incarnation(100, Some(140))], Time::from_secs(141));
        // 20 s and 40 s.
        assert_eq!(cold.cold_start(), Some((30.0, 10.0)));
    }

    #[test]
    fn a_ready_time_ahead_of_our_clock_is_counted_at_a_later_look() {
        let mut cold = ColdStarts::default();
        cold.observe_pods(&[], Time::from_secs(0));
        let ready = starting("a", 10, Some(31));
        cold.observe_pods(std::slice::from_ref(&ready), Time::from_millis(30_500));
        assert_eq!(cold.cold_start(), None);
        cold.observe_pods(&[ready], Time::from_secs(31));
        assert_eq!(cold.cold_start(), Some((21.0, 0.0)));
    }

    #[test]
    fn a_pod_whose_readiness_flaps_is_not_a_cold_start_again() {
        let mut cold = ColdStarts::default();
        cold.observe_pods(&[], Time::from_secs(0));
        cold.observe_pods(&[starting("a", 10, None)], Time::from_secs(15));
        cold.observe_pods(&[starting("a", 10, Some(30))], Time::from_secs(31));
        assert_eq!(cold.cold_start(), Some((20.0, 0.0)));
        // An hour on it fails its readiness probe, then passes again; later it is removed
        // while unready. Neither is a start.
        cold.observe_pods(&[starting("a", 10, None)], Time::from_secs(3600));
        cold.observe_pods(&[starting("a", 10, Some(3700))], Time::from_secs(3701));
        cold.observe_pods(&[starting("a", 10, None)], Time::from_secs(4000));
        cold.observe_pods(&[], Time::from_secs(4001));
        assert_eq!(cold.cold_start(), Some((20.0, 0.0)));
        assert!(cold.ready_seen.is_empty() && cold.starting.is_empty());
    }

    #[test]
    fn a_start_is_counted_where_whole_seconds_put_its_ready_time_before_the_first_look() {
        // First look at 100.6 s, before the pod exists; created and ready within the second,
        // the API reports both in whole seconds: 100 s.
        let mut cold = ColdStarts::default();
        cold.observe_pods(&[], Time::from_millis(100_600));
        let ready = Pod {
            name: "a".into(),
            ready: true,
            created_at: Some(Time::from_secs(100)),
            ready_changed_at: Some(Time::from_secs(100)),
            ..Default::default()
        };
        cold.observe_pods(&[ready], Time::from_millis(101_000));
        assert_eq!(cold.cold_start(), Some((0.0, 0.0)));
    }

    #[test]
    fn a_start_cut_short_is_expected_beyond_its_time() {
        let mut cold = ColdStarts {
            cold_start_mean: Some(20.0),
            cold_start_square: Some(20.0 * 20.0 + 8.0 * 8.0),
            cold_starts: 10,
            ..Default::default()
        };
        let (first, second) = cold.beyond(25.0).expect("measured");
        assert!(first > 25.0 && second > first * first, "{first} {second}");
        // Early cuts say little: the expectation is then near the mean.
        let (early, _) = cold.beyond(1.0).expect("measured");
        assert!((early - 20.0).abs() < 0.5, "{early}");
        cold.cold_start_square = Some(400.0);
        assert_eq!(cold.beyond(25.0).map(|(first, _)| first), Some(25.0));
        // Nothing measured yet: nothing to expect beyond a cut.
        assert_eq!(ColdStarts::default().beyond(25.0), None);
    }
}
