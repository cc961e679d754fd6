//! The SLO's attainment as reached: the share of the requests that ended within the SLO's
//! latency, from the driver's counts of answers as their clients saw them (waiting, cold
//! starts and failures included), over about the last hour.
//!
//! The plan predicts attainment for the replicas it proposes, from a model fed by forecasts;
//! what the replicas actually there did is another number, and the one a user's SLO is about.
//! Read side by side, the two say whether the model's prediction holds for this service: the
//! error budget's burn rate, in SRE terms (Google's SRE workbook, "Alerting on SLOs", whose
//! long window is an hour). Decisions do not use it yet; every `SloPlan` decision reports it.

use crate::observation::{is_usable, AnsweredWithin};
use serde::{Deserialize, Serialize};

/// Time constant of the reached attainment, seconds: an hour, the long window of the SRE
/// workbook's burn-rate alerts. A request an hour old weighs `1/e` of one just ended.
pub const REACHED_WINDOW_SECONDS: f64 = 3600.0;

/// Whether a count at `at` seconds can stand for an SLO of `latency`: the SLO's own latency
/// (rounded to the driver's clock's unit), or a histogram bucket's bound below it but no lower
/// than half of it (below that a count says little about the SLO).
pub(crate) fn stands_for(at: f64, latency: f64) -> bool {
    let slack = 1e-6 * latency.abs().max(1e-3);
    at <= latency + slack && at >= latency / 2.0
}

/// Requests ended and missed, weighted by their age.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reached {
    /// The latency the driver counts against, seconds: a new one starts the count again.
    pub latency_seconds: f64,
    /// Requests that ended, weighted by age.
    pub requests: f64,
    /// Of those, the ones that failed or took longer than the latency, weighted the same.
    pub missed: f64,
}

impl Reached {
    /// Nothing counted yet, at `latency_seconds`.
    fn counting_at(latency_seconds: f64) -> Reached {
        Reached {
            latency_seconds,
            ..Reached::default()
        }
    }

    /// `reached` carried on over the answers counted between two samples `seconds` apart.
    /// Counts that went backwards (a restarted proxy), that say more answered within the
    /// latency than answered at all, or that are not numbers, are skipped: the count goes on
    /// from the next pair of samples.
    pub fn observe(
        reached: Option<Reached>,
        last: AnsweredWithin,
        now: AnsweredWithin,
        seconds: f64,
    ) -> Option<Reached> {
        if now.latency_seconds != last.latency_seconds {
            return Some(Reached::counting_at(now.latency_seconds));
        }
        let ended = now.requests - last.requests;
        let within = now.within - last.within;
        let usable = is_usable(ended) && is_usable(within) && within <= ended;
        if !usable || !is_usable(seconds) {
            return reached;
        }
        let mut r = reached
            .filter(|r| r.latency_seconds == now.latency_seconds)
            .unwrap_or(Reached::counting_at(now.latency_seconds));
        let kept = (-seconds / REACHED_WINDOW_SECONDS).exp();
        r.requests = r.requests * kept + ended;
        r.missed = r.missed * kept + (ended - within);
        Some(r)
    }

    /// Whether the answers are counted at a latency that can stand for an SLO of `latency`
    /// seconds: the SLO's own (to its clock's unit), or a histogram bucket's bound below it
    /// but no lower than half of it, where the count understates what was reached.
    pub fn counted_at(&self, latency: f64) -> bool {
        stands_for(self.latency_seconds, latency)
    }

    /// The share of the requests that ended within the latency; `None` before any ended.
    pub fn share(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| 1.0 - self.missed / self.requests)
    }

    /// Whether the share reached falls short of `attainment` by more than chance: the misses
    /// counted would come by chance less than once in 40 times if each request missed with
    /// the SLO's allowed share (Poisson; its normal approximation once 30 or more misses are
    /// expected). The weighted count stands for the requests, which errs towards chance.
    pub fn short_of(&self, attainment: f64) -> bool {
        let expected = self.requests * (1.0 - attainment).clamp(0.0, 1.0);
        // Not beyond what is allowed (or not a number): not short.
        if self.missed.is_nan() || self.missed <= expected {
            return false;
        }
        if expected >= 30.0 {
            return (self.missed - 0.5 - expected) / expected.sqrt() > NORMAL_BEYOND_CHANCE;
        }
        seldom_by_chance(self.missed.floor(), expected)
    }
}

/// How seldom a count must come by chance to be called beyond it (one side).
const BEYOND_CHANCE: f64 = 0.025;
/// The standard normal's quantile for [`BEYOND_CHANCE`].
const NORMAL_BEYOND_CHANCE: f64 = 1.96;

/// Whether a Poisson count of mean `mean` (under 30 here) is at least `k` less often than
/// [`BEYOND_CHANCE`]: summed from 0 up, stopping as soon as the counts below `k` are known to
/// be that likely (a few standard deviations above the mean), however many were counted.
fn seldom_by_chance(k: f64, mean: f64) -> bool {
    let mut term = (-mean).exp();
    let mut below = 0.0;
    let mut j = 0.0;
    while j < k && term > 0.0 {
        below += term;
        if below > 1.0 - BEYOND_CHANCE {
            return true;
        }
        j += 1.0;
        term *= mean / j;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(requests: f64, within: f64) -> AnsweredWithin {
        AnsweredWithin {
            latency_seconds: 0.5,
            requests,
            within,
        }
    }

    #[test]
    fn a_steady_stream_reads_its_share() {
        let mut r = None;
        for s in 0..7200 {
            let at = f64::from(s);
            r = Reached::observe(
                r,
                counted(100.0 * at, 99.5 * at),
                counted(100.0 * (at + 1.0), 99.5 * (at + 1.0)),
                1.0,
            );
        }
        let r = r.expect("counted");
        assert!((r.share().unwrap() - 0.995).abs() < 1e-9, "{r:?}");
        // Two hours of 100 req/s weigh about an hour's worth (1 - e^-2 of 360,000).
        assert!((r.requests - 360_000.0 * (1.0 - (-2.0f64).exp())).abs() < 200.0);
        assert!(r.short_of(0.999));
        assert!(!r.short_of(0.995));
    }

    #[test]
    fn old_misses_fade() {
        let missed_all = Reached::observe(None, counted(0.0, 0.0), counted(1000.0, 0.0), 1.0);
        let later = Reached::observe(
            missed_all,
            counted(1000.0, 0.0),
            counted(2000.0, 1000.0),
            2.0 * REACHED_WINDOW_SECONDS,
        )
        .unwrap();
        // The thousand misses two hours back weigh e^-2 each.
        let expected = 1.0 - (-2.0f64).exp() / (1.0 + (-2.0f64).exp());
        assert!(
            (later.share().unwrap() - expected).abs() < 1e-12,
            "{later:?}"
        );
    }

    #[test]
    fn a_few_requests_are_not_called_short() {
        // One miss in 100 is 99% against a 99.9% target: it comes by chance one time in 10.
        let r = Reached::observe(None, counted(0.0, 0.0), counted(100.0, 99.0), 1.0).unwrap();
        assert!(!r.short_of(0.999), "{r:?}");
        // Three in 100 come one time in 6,000.
        let three = Reached::observe(None, counted(0.0, 0.0), counted(100.0, 97.0), 1.0);
        assert!(three.unwrap().short_of(0.999));
        let many = Reached::observe(None, counted(0.0, 0.0), counted(10_000.0, 9_900.0), 1.0);
        assert!(many.unwrap().short_of(0.999));
        // 110 misses where 100 are expected: within chance (one standard deviation).
        let near = Reached::observe(None, counted(0.0, 0.0), counted(100_000.0, 99_890.0), 1.0);
        assert!(!near.unwrap().short_of(0.999));
    }

    #[test]
    fn the_poisson_tail_is_read_right() {
        // Mean 0.1: P(X >= 1) = 9.5%, P(X >= 2) = 0.47%.
        assert!(!seldom_by_chance(1.0, 0.1));
        assert!(seldom_by_chance(2.0, 0.1));
        // Mean 12: P(X >= 19) = 3.7%, P(X >= 20) = 2.1%.
        assert!(!seldom_by_chance(19.0, 12.0));
        assert!(seldom_by_chance(20.0, 12.0));
        // Far out, decided without summing every term.
        assert!(seldom_by_chance(1e9, 12.0));
        assert!(!seldom_by_chance(0.0, 5.0));
    }

    #[test]
    fn counts_that_cannot_be_right_are_skipped_and_a_new_latency_starts_again() {
        let r = Reached::observe(None, counted(0.0, 0.0), counted(100.0, 90.0), 1.0);
        // A restarted proxy's counts went backwards; more within than ended; NaN.
        for (last, now) in [
            (counted(100.0, 90.0), counted(10.0, 10.0)),
            (counted(100.0, 90.0), counted(110.0, 120.0)),
            (counted(100.0, 90.0), counted(f64::NAN, 95.0)),
        ] {
            assert_eq!(Reached::observe(r, last, now, 1.0), r);
        }
        let other = AnsweredWithin {
            latency_seconds: 1.0,
            ..counted(200.0, 200.0)
        };
        let restarted = Reached::observe(r, counted(100.0, 90.0), other, 1.0).unwrap();
        assert_eq!(restarted.requests, 0.0);
        assert_eq!(restarted.latency_seconds, 1.0);
        assert_eq!(restarted.share(), None);
        assert!(!restarted.short_of(0.999));
    }
}
