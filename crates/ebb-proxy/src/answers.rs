//! The answers as their clients saw them, for the SLO's attainment as reached: how long each
//! request took from its arrival to its answer's last byte (Ebb's own queue, a cold start and
//! retries included), whether it failed, and how long a client waited before it gave up.
//!
//! Where the proxy knows the SLO's latency (`ebb up`), it counts the requests that ended and
//! those within it exactly. A gateway in a cluster exports histograms, and the controller
//! reads them at the bucket bound at or below the SLO.

use crate::histogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An SLO's latency in whole microseconds, the unit the proxy counts times in: from one
/// microsecond to an hour.
pub fn latency_micros(latency_seconds: f64) -> u64 {
    (latency_seconds * 1e6).round().clamp(1.0, 3.6e9) as u64
}

/// The counts of answers a proxy keeps.
#[derive(Debug, Default)]
pub struct Answers {
    /// Answers that did not fail, by their time from arrival to the last byte.
    pub good: Histogram,
    /// Answers that failed: Ebb's own 5xx (queue full, no replica in time), a replica's 5xx,
    /// an answer cut off.
    pub failed: AtomicU64,
    /// Requests whose client went away before an answer, by how long it had waited: one
    /// that waited past the SLO's latency missed it; one that left sooner says nothing.
    pub abandoned: Histogram,
    /// The SLO's latency (microseconds) with the requests that ended and those answered
    /// within it, where the proxy knows the SLO.
    pub within: Option<(u64, [AtomicU64; 2])>,
}

impl Answers {
    /// Counts exactly, from now on, the requests that end within `latency_seconds`.
    pub fn with_latency(latency_seconds: f64) -> Answers {
        Answers {
            within: Some((
                latency_micros(latency_seconds),
                [AtomicU64::new(0), AtomicU64::new(0)],
            )),
            ..Answers::default()
        }
    }

    /// Counts an answer that took `took` from the request's arrival; `failed` where it was
    /// a server error or was cut off.
    pub fn answered(&self, took: Duration, failed: bool) {
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.good.observe(took);
        }
        if let Some((latency, [ended, within])) = &self.within {
            ended.fetch_add(1, Ordering::Relaxed);
            if !failed && took.as_micros() <= u128::from(*latency) {
                within.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts a request whose client went away after `waited`, before an answer.
    pub fn abandoned(&self, waited: Duration) {
        self.abandoned.observe(waited);
        if let Some((latency, [ended, _])) = &self.within {
            if waited.as_micros() > u128::from(*latency) {
                ended.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The exact counts as the core reads them, where the proxy knows the SLO.
    pub fn totals(&self) -> Option<ebb_core::AnsweredWithin> {
        self.within
            .as_ref()
            .map(|(latency, [ended, within])| ebb_core::AnsweredWithin {
                latency_seconds: *latency as f64 / 1e6,
                requests: ended.load(Ordering::Relaxed) as f64,
                within: within.load(Ordering::Relaxed) as f64,
            })
    }

    /// The counts for the status page: answers by outcome, and the exact counts against the
    /// SLO's latency where the proxy knows it.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "good": self.good.count(),
            "failed": self.failed.load(Ordering::Relaxed),
            "abandoned": self.abandoned.count(),
            "slo": self.totals().map(|t| serde_json::json!({
                "latencySeconds": t.latency_seconds,
                "ended": t.requests,
                "within": t.within,
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Of a fast answer, a slow one, a fast failure, a client gone after 100 ms and one gone
    /// after a second, against 500 ms: four ended, one within.
    #[test]
    fn failures_and_late_give_ups_are_misses_early_ones_are_not_counted() {
        let a = Answers::with_latency(0.5);
        a.answered(ms(200), false);
        a.answered(ms(700), false);
        a.answered(ms(10), true);
        a.abandoned(ms(100));
        a.abandoned(ms(1000));
        let t = a.totals().unwrap();
        assert_eq!((t.latency_seconds, t.requests, t.within), (0.5, 4.0, 1.0));
        assert_eq!(a.good.count(), 2);
        assert_eq!(a.failed.load(Ordering::Relaxed), 1);
        assert_eq!(a.abandoned.count(), 2);
        // At the latency itself is within it.
        a.answered(ms(500), false);
        assert_eq!(a.totals().unwrap().within, 2.0);
    }

    #[test]
    fn without_an_slo_only_the_histograms_count() {
        let a = Answers::default();
        a.answered(ms(200), false);
        a.abandoned(ms(900));
        assert_eq!(a.totals(), None);
        assert_eq!((a.good.count(), a.abandoned.count()), (1, 1));
    }
}
