//! Going to zero through an idle spell that no recurring burst explains. A replica kept idle
//! costs replica-seconds; letting it go costs a return (the replica the next request needs,
//! with the hedged extras started beside it, each for a cold start), and every request that
//! arrives within that cold start waits for it. Both are measured rather than assumed:
//!
//! - the ski-rental rule with the spells' own length: a replica is kept through a cold
//!   start's worth of silence, and let go then only where the spells have lasted beyond
//!   that, on average over the last [`SPELLS`] and less a standard error, longer than a
//!   return costs (a Poisson stream's gaps do not, where the keep time is near its mean
//!   gap). A spell's evidence also fades with its age ([`SPELL_HALF_LIFE_SECONDS`]), and
//!   fewer than [`MIN_SPELLS`] recent ones are no pattern: nights of months ago do not
//!   speak for tonight;
//! - the SLO's side: the share of requests that arrived within one lead (the cold start with
//!   its spread) after a silence at least the keep time long, the ones a replica let go
//!   would have made wait, whether or not one was let go; times the attainment a cold wait
//!   loses, it must fit in `Tuning::idle_budget` of the waiting budget (what the plan lets
//!   waiting add to the misses service times alone make).
//!
//! Sparse requests under an SLO far longer than a cold start (an image generator under a
//! two-minute SLO, with hours of quiet) go to zero between them; traffic whose first seconds
//! after a pause hold many requests, or gaps too short to pay for a return keep their
//! replica. An SLO a cold start cannot meet keeps it only where the requests after pauses
//! are more than a sliver of all.
//!
//! Why the spells fade with age: World Cup (500 ms, 20 s cold starts) had its idle nights in
//! its first three weeks, then none for two months; when its last nights came, spells
//! averaged over the last twenty (from two months before, 111 s beyond the keep time) let
//! the replica go three times, each a second or two before the next request: 61
//! replica-seconds and 13 timeouts lost against never going to zero. Its recent spells
//! lasted 0-22 s beyond the keep time.

use super::estimate::ewma;
use crate::time::Time;
use serde::{Deserialize, Serialize};

/// Idle spells the share is averaged over (exponentially).
pub const SPELLS: f64 = 20.0;
/// Requests seen before the share is trusted: until then, no idle spell goes to zero.
pub const MIN_REQUESTS: f64 = 100.0;
/// The age at which a spell's length weighs half as much as a new one's: a week, so that a
/// weekly quiet (weekends, a daily batch) is still remembered from one week to the next,
/// while a pattern gone for a month no longer counts.
pub const SPELL_HALF_LIFE_SECONDS: f64 = 7.0 * 86_400.0;
/// Spells (weighed by age) the spells' length is trusted on: fewer are no pattern.
pub const MIN_SPELLS: f64 = 5.0;

/// What the arrivals after idle spells have shown (in the decision state, so it survives
/// restarts): arrivals that would have waited and all arrivals, each sum shrunk by
/// `1 / SPELLS` at every idle spell, so that the share is taken over the last few dozen
/// spells and what came between them, however many requests a burst holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdleArrivals {
    /// Arrivals within one lead after an idle spell (decayed).
    #[serde(default)]
    pub waited: f64,
    /// All arrivals (decayed).
    #[serde(default)]
    pub arrivals: f64,
    /// How long idle spells lasted beyond the keep time, seconds (the replica-seconds a
    /// replica let go at the end of the keep time saves), averaged over the last spells,
    /// with the average of its square.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beyond_keep: Option<(f64, f64)>,
    /// The spells that average is over: each weighs one when it ends, less `1 / SPELLS` at
    /// every later spell and half per [`SPELL_HALF_LIFE_SECONDS`] of age.
    #[serde(default)]
    pub spells: f64,
    /// When the last spell of known length ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_spell: Option<Time>,
    /// Requests counted so far (not decayed).
    #[serde(default)]
    pub requests: f64,
    /// The end of the lead after the last idle spell: arrivals before it count as ones that
    /// would have waited a cold start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_until: Option<Time>,
}

/// What a decision may weigh going to zero with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleCost {
    /// The share of requests within the SLO's latency with no wait.
    pub within: f64,
    /// The share within it after waiting a cold start, averaged over the measured ones
    /// ([`within_after_cold_start`]).
    pub cold_within: f64,
    /// What the plan lets waiting add to the misses (`within` less the planned target).
    pub wait_budget: f64,
    /// What a return from zero costs in replica-seconds: the replicas it starts (the one
    /// needed and its hedged extras), each for a cold start.
    pub restart_seconds: f64,
}

/// Five-point Gauss-Hermite rule for a standard normal: nodes and weights.
const NODES: [(f64, f64); 5] = [
    (-2.856_970_013_872_806, 0.011_257_411_327_720_69),
    (-1.355_626_179_974_266, 0.222_075_922_005_612_6),
    (0.0, 0.533_333_333_333_333_3),
    (1.355_626_179_974_266, 0.222_075_922_005_612_6),
    (2.856_970_013_872_806, 0.011_257_411_327_720_69),
];

/// The share of requests within `latency` that first wait a cold start of mean `cold_mean`
/// and deviation `cold_sd` (seconds; taken as normal): the service's share within what is
/// left, averaged over the cold start. An average, not the lead's bound: the lead must be
/// long enough for nearly every start, but a request's chance of meeting the SLO is the
/// average over the starts it may meet.
pub fn within_after_cold_start(
    latency: f64,
    (cold_mean, cold_sd): (f64, f64),
    service_mean: f64,
    service_scv: f64,
) -> f64 {
    NODES
        .iter()
        .map(|(x, w)| {
            let cold = (cold_mean + x * cold_sd).max(0.0);
            w * super::queueing::service_within(latency - cold, service_mean, service_scv)
        })
        .sum()
}

impl IdleArrivals {
    /// Counts `arrivals` of a sample at `at`. `silence_before` is the silence these arrivals
    /// ended, if they ended one; one at least `keep_seconds` long opens a window of
    /// `lead_seconds`.
    pub fn observe(
        &mut self,
        arrivals: f64,
        silence_before: Option<f64>,
        at: Time,
        (keep_seconds, lead_seconds): (f64, f64),
    ) {
        if !(arrivals > 0.0 && arrivals.is_finite()) {
            return;
        }
        if let Some(silence) = silence_before.filter(|s| *s >= keep_seconds) {
            self.window_until = Some(at.plus_millis((lead_seconds * 1000.0) as i64));
            let keep = 1.0 - 1.0 / SPELLS;
            self.waited *= keep;
            self.arrivals *= keep;
            // The silence before the first arrivals seen has no known length.
            if silence < super::recurrence::SILENT_SINCE_START {
                self.add_spell(silence - keep_seconds, at);
            }
        }
        if self.window_until.is_some_and(|until| at <= until) {
            self.waited += arrivals;
        }
        self.arrivals += arrivals;
        self.requests += arrivals;
    }

    /// Adds a spell that lasted `beyond` seconds past the keep time to the average, the
    /// earlier ones weighed down by one spell more and by their age.
    fn add_spell(&mut self, beyond: f64, at: Time) {
        let earlier = self.spells_at(at) * (1.0 - 1.0 / SPELLS);
        let weight = 1.0 / (earlier + 1.0);
        let (mean, square) = self.beyond_keep.unzip();
        self.beyond_keep = Some((
            ewma(mean, beyond, weight),
            ewma(square, beyond * beyond, weight),
        ));
        self.spells = earlier + 1.0;
        self.last_spell = Some(at);
    }

    /// The spells the average is over, weighed by their age at `now`.
    pub fn spells_at(&self, now: Time) -> f64 {
        let age = self
            .last_spell
            .map_or(0.0, |last| now.seconds_since(last).max(0.0));
        self.spells * 0.5_f64.powf(age / SPELL_HALF_LIFE_SECONDS)
    }

    /// The share of requests that arrived within one lead after an idle spell.
    pub fn share(&self) -> f64 {
        if self.arrivals > 0.0 {
            self.waited / self.arrivals
        } else {
            0.0
        }
    }

    /// Whether going to zero at the end of the keep time saves more replica-seconds than
    /// the return costs (the ski-rental rule with the spells' measured length, over at
    /// least [`MIN_SPELLS`] weighed by age at `now` and less a standard error, where a
    /// return starts hedged replicas), and the misses that requests arriving at zero would
    /// add fit in `budget_share` of the waiting budget.
    pub fn allows_zero(&self, cost: &IdleCost, budget_share: f64, now: Time) -> bool {
        let lost = (cost.within - cost.cold_within).max(0.0);
        let spells = self.spells_at(now);
        // One standard error below the average: gaps that only happen to have run long
        // lately (a Poisson stream's) do not pass for a pattern.
        let saves = spells >= MIN_SPELLS
            && self.beyond_keep.is_some_and(|(mean, square)| {
                let error = ((square - mean * mean).max(0.0) / spells).sqrt();
                mean - error > cost.restart_seconds
            });
        self.requests >= MIN_REQUESTS
            && saves
            && self.share() * lost <= budget_share * cost.wait_budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> Time {
        Time::from_millis((s * 1000.0) as i64)
    }

    const KEEP_LEAD: (f64, f64) = (30.0, 40.0);

    /// A second after the last spell ended.
    fn just_after(idle: &IdleArrivals) -> Time {
        idle.last_spell.unwrap_or(at(0.0)).plus_millis(1000)
    }

    /// One request every `gap` seconds for `n` requests, each after a silence of `gap`.
    fn spaced(gap: f64, n: usize) -> IdleArrivals {
        let mut idle = IdleArrivals::default();
        for i in 0..n {
            idle.observe(1.0, Some(gap), at(gap * i as f64), KEEP_LEAD);
        }
        idle
    }

    #[test]
    fn the_wait_of_a_cold_start_is_averaged_over_its_spread() {
        // A fixed 20 s start before 10 s of service: all within 60 s, none within 25 s.
        let fixed = |latency| within_after_cold_start(latency, (20.0, 0.0), 10.0, 0.0);
        assert!((fixed(60.0) - 1.0).abs() < 1e-12);
        assert!(fixed(25.0).abs() < 1e-12);
        // Starts of 20 s +- 5 s before a service of 10 s +- 5 s, against the convolution
        // summed on a fine grid.
        let (latency, cold, service) = (40.0, (20.0, 5.0), (10.0, 0.25));
        let quadrature = within_after_cold_start(latency, cold, service.0, service.1);
        let grid: f64 = (-800..=800)
            .map(|i| {
                let x = f64::from(i) / 100.0;
                let density = crate::slo::queueing::normal_pdf(x) / 100.0;
                let left = latency - (cold.0 + x * cold.1).max(0.0);
                density * crate::slo::queueing::service_within(left, service.0, service.1)
            })
            .sum();
        assert!((quadrature - grid).abs() < 0.005, "{quadrature} {grid}");
        // The weights sum to one.
        let sum: f64 = NODES.iter().map(|(_, w)| w).sum();
        assert!((sum - 1.0).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn spells_that_vary_must_save_a_standard_error_more_than_a_restart() {
        let cost = IdleCost {
            within: 1.0,
            cold_within: 1.0,
            wait_budget: 0.001,
            restart_seconds: 60.0,
        };
        // Spells alternating 40 s and 120 s beyond the keep time: 80 s on average, with a
        // deviation of 40 s, so a standard error of about 9 s.
        let mut idle = IdleArrivals::default();
        for i in 0..500 {
            let silence = 30.0 + if i % 2 == 0 { 40.0 } else { 120.0 };
            idle.observe(1.0, Some(silence), at(f64::from(i) * 200.0), KEEP_LEAD);
        }
        assert!(idle.allows_zero(&cost, 0.5, just_after(&idle)));
        let dearer = IdleCost {
            restart_seconds: 76.0,
            ..cost
        };
        assert!(!idle.allows_zero(&dearer, 0.5, just_after(&idle)));
    }

    #[test]
    fn spells_of_months_ago_do_not_speak_for_tonight() {
        let cost = IdleCost {
            within: 1.0,
            cold_within: 1.0,
            wait_budget: 1.0,
            restart_seconds: 60.0,
        };
        let day = 86_400.0;
        // Thirty nights, each a spell of 200 s beyond the keep time: a pattern.
        let mut idle = IdleArrivals::default();
        for night in 0..30 {
            let end = day * f64::from(night);
            idle.observe(200.0, Some(230.0), at(end), KEEP_LEAD);
        }
        assert!(idle.allows_zero(&cost, 0.5, just_after(&idle)));
        // Two months without one: the first silence since is no time to trust them.
        let back = 90.0 * day;
        assert!(!idle.allows_zero(&cost, 0.5, at(back)));
        // Then a night of spells that end a few seconds past the keep time.
        let mut later = idle.clone();
        later.observe(200.0, Some(32.0), at(back), KEEP_LEAD);
        assert!(later.spells < MIN_SPELLS, "{}", later.spells);
        assert!(!later.allows_zero(&cost, 0.5, just_after(&later)));
        for i in 1..10 {
            later.observe(
                200.0,
                Some(33.0),
                at(back + 600.0 * f64::from(i)),
                KEEP_LEAD,
            );
        }
        assert!(later.spells >= MIN_SPELLS, "{}", later.spells);
        assert!(
            !later.allows_zero(&cost, 0.5, just_after(&later)),
            "{:?}",
            later.beyond_keep
        );
        // The same short spells the next night, with the pattern fresh, move it little.
        let mut next = idle.clone();
        next.observe(200.0, Some(32.0), at(30.0 * day), KEEP_LEAD);
        assert!(
            next.allows_zero(&cost, 0.5, just_after(&next)),
            "{:?}",
            next.beyond_keep
        );
        // A quiet once a day is remembered from day to day: enough spells to trust.
        assert!(idle.spells > 7.0, "{}", idle.spells);
    }

    #[test]
    fn requests_after_long_silences_each_count_as_waiting() {
        let idle = spaced(120.0, 200);
        assert!((idle.share() - 1.0).abs() < 1e-9, "{}", idle.share());
        // Closer than the keep time, none would have found zero.
        let busy = spaced(10.0, 200);
        assert!(busy.share() < 1e-9, "{}", busy.share());
    }

    #[test]
    fn the_requests_of_a_burst_within_a_lead_of_its_start_count() {
        // A burst of 100 req/s for a minute after each five-minute pause: 40 s of it within
        // the lead, two thirds of its requests.
        let mut idle = IdleArrivals::default();
        for burst in 0..5 {
            let start = 360.0 * f64::from(burst);
            for s in 0..60 {
                let silence = (s == 0).then_some(300.0);
                idle.observe(100.0, silence, at(start + f64::from(s)), KEEP_LEAD);
            }
        }
        assert!(
            (idle.share() - 41.0 / 60.0).abs() < 0.02,
            "{}",
            idle.share()
        );
    }

    #[test]
    fn zero_is_allowed_only_where_the_waits_fit_the_budget() {
        let cost = IdleCost {
            within: 0.998,
            cold_within: 0.99,
            wait_budget: 0.0005,
            restart_seconds: 60.0,
        };
        // One request in fifty after a long silence: 0.02 * 0.008 = 0.016% of misses.
        let mut sparse = IdleArrivals::default();
        for i in 0..500 {
            let silence = if i % 50 == 0 { 600.0 } else { 5.0 };
            sparse.observe(1.0, Some(silence), at(f64::from(i) * 100.0), KEEP_LEAD);
        }
        assert!(
            sparse.allows_zero(&cost, 0.5, just_after(&sparse)),
            "{}",
            sparse.share()
        );
        // Every request after one: 0.8%, far beyond the budget.
        let budget = IdleCost {
            wait_budget: 1.0,
            ..cost
        };
        let every = spaced(120.0, 500);
        assert!(every.allows_zero(&budget, 0.5, just_after(&every)));
        assert!(!every.allows_zero(&cost, 0.5, just_after(&every)));
        // Spells that end 90 s after the keep time save more than a 60 s restart, and ones
        // that end 50 s after it do not.
        let restart = |seconds| IdleCost {
            restart_seconds: seconds,
            ..budget
        };
        let closer = spaced(80.0, 500);
        assert!(!closer.allows_zero(&budget, 0.5, just_after(&closer)));
        assert!(closer.allows_zero(&restart(40.0), 0.5, just_after(&closer)));
        // Too few requests to judge.
        let few = spaced(10.0, 20);
        assert!(!few.allows_zero(&cost, 0.5, just_after(&few)));
        // A cold start the SLO cannot absorb loses everything a request had.
        let slow = IdleCost {
            cold_within: 0.0,
            ..cost
        };
        assert!(!sparse.allows_zero(&slow, 0.5, just_after(&sparse)));
    }
}
