//! The service time read under a backlog. A proxy times a replica's answer from the moment it
//! sent the request, so while more requests are in flight than the ready replicas have slots,
//! a time it reads may include a wait in the replica's own queue: from zero, or from one
//! replica under a burst, the first times read can be several service times long. (`ebb up`'s
//! proxy, which knows the SLO's slots, counts only the requests it sent to a free slot; a
//! gateway read by the controller counts every answer.) Until the backlog has drained, the
//! service time is *provisional*, an upper bound taken from what the backlog still shows:
//!
//! - the replica-timed mean itself (waits included), and
//! - over the intervals that began and ended with every ready slot taken, the slot-seconds
//!   per answer: a slot busy for the whole interval finishes one request per service time,
//!   so `slots x seconds / answers` is the mean service time (Little's law on the slots),
//!   or more where replicas turned ready within the interval and were counted for all of it.
//!
//! The smaller of the two is used once [`SATURATED_MIN_REQUESTS`] answers came from such
//! intervals, the timed mean before. The shape (its variance, the share within the SLO's
//! latency) is not read from the backlog at all: waits would pass for a heavy tail, so the
//! model assumes exponential service until clean answers are measured.

use serde::{Deserialize, Serialize};

/// Answers from intervals with every slot taken before their slot-seconds are trusted: the
/// mean of 20 exponential service times has a relative standard deviation of 22%.
pub const SATURATED_MIN_REQUESTS: f64 = 20.0;

/// What the answers during a backlog showed, summed since it began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provisional {
    /// Seconds the replicas took on the answers, as timed (waits in their queues included).
    pub timed_seconds: f64,
    /// Answers timed.
    pub timed_requests: f64,
    /// Slot-seconds of the intervals with every ready slot taken at both ends.
    pub slot_seconds: f64,
    /// Answers within those intervals.
    pub saturated_requests: f64,
}

impl Provisional {
    /// Adds one interval's `requests` answers and their timed `seconds`; `slot_seconds` where
    /// every ready slot was taken at both its ends.
    pub fn add(&mut self, seconds: f64, requests: f64, slot_seconds: Option<f64>) {
        self.timed_seconds += seconds;
        self.timed_requests += requests;
        if let Some(slot_seconds) = slot_seconds {
            self.slot_seconds += slot_seconds;
            self.saturated_requests += requests;
        }
    }

    /// The provisional mean service time, seconds; `None` before any answer.
    pub fn mean(&self) -> Option<f64> {
        if self.timed_requests <= 0.0 {
            return None;
        }
        let timed = self.timed_seconds / self.timed_requests;
        if self.saturated_requests < SATURATED_MIN_REQUESTS {
            return Some(timed);
        }
        Some(timed.min(self.slot_seconds / self.saturated_requests))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One replica of 4 slots, 100 ms a request, a burst of 80 req/s: 40 answers a second,
    /// each timed with its wait (half a second, growing); the slots read the service time.
    #[test]
    fn saturated_slots_read_the_service_time_through_the_waits() {
        let mut p = Provisional::default();
        p.add(40.0 * 0.6, 40.0, None);
        assert!(
            (p.mean().unwrap() - 0.6).abs() < 1e-12,
            "the timed mean at first"
        );
        p.add(40.0 * 1.1, 40.0, Some(4.0));
        assert!((p.mean().unwrap() - 0.1).abs() < 1e-12);
    }

    /// Too few answers from full slots, or slots counted for a whole interval in which most
    /// turned ready late: the timed mean bounds the estimate.
    #[test]
    fn the_timed_mean_bounds_the_estimate() {
        let mut p = Provisional::default();
        p.add(5.0 * 2.0, 5.0, Some(20.0));
        assert_eq!(
            p.mean(),
            Some(2.0),
            "5 answers are too few to read the slots"
        );
        p.add(30.0 * 2.0, 30.0, Some(400.0));
        assert_eq!(
            p.mean(),
            Some(2.0),
            "the slots over-count: the timed mean is lower"
        );
        assert_eq!(Provisional::default().mean(), None);
    }

    proptest::proptest! {
        /// Whatever the intervals showed, the estimate is a number no larger than the timed
        /// mean: the slots can only tighten the bound.
        #[test]
        fn the_estimate_never_exceeds_the_timed_mean(
            intervals in proptest::collection::vec(
                (0.0f64..1e4, 1.0f64..1e3, proptest::option::of(0.0f64..1e4)),
                1..20,
            ),
        ) {
            let mut p = Provisional::default();
            for (seconds, requests, slot_seconds) in intervals {
                p.add(seconds, requests, slot_seconds);
            }
            let mean = p.mean().unwrap();
            proptest::prop_assert!(mean.is_finite() && mean >= 0.0);
            proptest::prop_assert!(mean <= p.timed_seconds / p.timed_requests + 1e-12);
        }
    }
}
