//! Whether a ready replica gets traffic: passive outlier detection and active probes.
//!
//! A run of failed requests (5xx answers, refused or reset connections, timeouts) ejects a
//! replica for a time that doubles each time it is ejected again, as Envoy's outlier detection
//! does; it returns once that time is over and a readiness probe passes. Probes that keep
//! failing take a replica out of rotation whatever its requests say. One failed request never
//! removes a replica by itself, and the caller decides whether an ejection would leave too few
//! replicas. All times are passed in, so the rules are tested without sleeping.

use crate::settings::HealthSettings;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How one forwarded request ended, as health counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The replica answered below 500.
    Success,
    /// The replica answered 5xx.
    ServerError,
    /// No answer: refused, reset, closed, or too slow.
    GatewayFailure,
}

impl Outcome {
    /// Counts against the replica.
    pub fn is_failure(self) -> bool {
        self != Outcome::Success
    }
}

#[derive(Debug, Default)]
struct Record {
    /// Ejected until then (`None`: not ejected).
    until: Option<Instant>,
    /// Ejections in the current streak (sets the next one's length).
    times: u32,
    /// When it last came back from an ejection.
    returned_at: Option<Instant>,
    /// Since when it has been unhealthy (ejected, failing probes or failing requests).
    unhealthy_since: Option<Instant>,
    /// Consecutive failed probes.
    failed_probes: u32,
}

/// A replica's health, shared by the proxy (outcomes) and its supervisor (probes).
#[derive(Debug, Default)]
pub struct Health {
    /// Consecutive failed requests (hot path: an atomic, not the lock).
    consecutive_failures: AtomicU32,
    /// Ejected now (hot path for routing).
    ejected: AtomicBool,
    record: Mutex<Record>,
}

/// What a probe result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeChange {
    /// Nothing to report.
    None,
    /// It came back from an ejection.
    Returned,
    /// It passed a probe again after failing enough to leave rotation.
    Recovered,
    /// It failed enough probes to leave rotation now.
    FailedProbes(u32),
}

impl Health {
    /// Ejected now: no new requests.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }

    /// Counts a request's outcome; true when the failure run has just reached `threshold`
    /// (the caller then decides whether to [`eject`](Self::eject)).
    pub fn record(&self, outcome: Outcome, threshold: u32, now: Instant) -> bool {
        if outcome.is_failure() {
            self.record_failure(threshold, now)
        } else {
            self.record_success();
            false
        }
    }

    /// A request answered below 500 (the hot path: one atomic load when nothing failed).
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.answered_again();
        }
    }

    /// A failed request; true when the failure run has just reached `threshold`.
    pub fn record_failure(&self, threshold: u32, now: Instant) -> bool {
        let run = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if let Ok(mut r) = self.record.lock() {
            r.unhealthy_since.get_or_insert(now);
        }
        run >= threshold && !self.is_ejected()
    }

    /// A success after failures: no longer unhealthy, unless it is still ejected.
    fn answered_again(&self) {
        if let Ok(mut r) = self.record.lock() {
            if r.until.is_none() {
                r.unhealthy_since = None;
            }
        }
    }

    /// Ejects it; returns for how long (doubling with each ejection of a streak).
    pub fn eject(&self, now: Instant, s: &HealthSettings) -> Duration {
        let Ok(mut r) = self.record.lock() else {
            return s.base_ejection;
        };
        // A replica that stayed healthy since its last return for longer than the longest
        // ejection starts a new streak.
        if r.returned_at
            .is_some_and(|t| now.saturating_duration_since(t) > s.max_ejection)
        {
            r.times = 0;
        }
        r.times += 1;
        let factor = 1u32 << (r.times - 1).min(16);
        let length = s.base_ejection.saturating_mul(factor).min(s.max_ejection);
        r.until = Some(now + length);
        r.unhealthy_since.get_or_insert(now);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejected.store(true, Ordering::Release);
        length
    }

    /// Counts a probe; says whether routing changed. A passing probe returns an ejected
    /// replica only once its ejection time is over.
    pub fn probe(&self, passed: bool, now: Instant, s: &HealthSettings) -> ProbeChange {
        let Ok(mut r) = self.record.lock() else {
            return ProbeChange::None;
        };
        if !passed {
            r.failed_probes += 1;
            r.unhealthy_since.get_or_insert(now);
            return if r.failed_probes == s.unhealthy_probes {
                ProbeChange::FailedProbes(r.failed_probes)
            } else {
                ProbeChange::None
            };
        }
        let was_failing = r.failed_probes >= s.unhealthy_probes;
        r.failed_probes = 0;
        if r.until.is_some_and(|t| now >= t) {
            r.until = None;
            r.returned_at = Some(now);
            r.unhealthy_since = None;
            self.ejected.store(false, Ordering::Release);
            return ProbeChange::Returned;
        }
        if was_failing {
            if r.until.is_none() {
                r.unhealthy_since = None;
            }
            return ProbeChange::Recovered;
        }
        ProbeChange::None
    }

    /// Failing probes now (out of rotation until one passes).
    pub fn failing_probes(&self, s: &HealthSettings) -> bool {
        self.record
            .lock()
            .map(|r| r.failed_probes >= s.unhealthy_probes)
            .unwrap_or(false)
    }

    /// How long it has been unhealthy, if it is.
    pub fn unhealthy_for(&self, now: Instant) -> Option<Duration> {
        let r = self.record.lock().ok()?;
        r.unhealthy_since.map(|t| now.saturating_duration_since(t))
    }

    /// Forgets everything: a new process.
    pub fn reset(&self) {
        if let Ok(mut r) = self.record.lock() {
            *r = Record::default();
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejected.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HealthSettings {
        HealthSettings::parse("health", None).unwrap()
    }

    #[test]
    fn a_single_failure_never_ejects() {
        let (h, s, t) = (Health::default(), settings(), Instant::now());
        for _ in 0..4 {
            assert!(!h.record(Outcome::GatewayFailure, s.consecutive_failures, t));
        }
        assert!(!h.record(Outcome::Success, s.consecutive_failures, t));
        for _ in 0..4 {
            assert!(!h.record(Outcome::ServerError, s.consecutive_failures, t));
        }
        assert!(h.record(Outcome::ServerError, s.consecutive_failures, t));
        assert!(!h.is_ejected(), "the caller ejects");
    }

    #[test]
    fn ejections_double_and_return_only_after_their_time_and_a_probe() {
        let (h, s, t0) = (Health::default(), settings(), Instant::now());
        assert_eq!(h.eject(t0, &s), Duration::from_secs(2));
        assert!(h.is_ejected());
        assert_eq!(
            h.probe(true, t0 + Duration::from_secs(1), &s),
            ProbeChange::None
        );
        assert!(h.is_ejected(), "still inside its ejection time");
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(h.probe(true, t1, &s), ProbeChange::Returned);
        assert!(!h.is_ejected());
        assert_eq!(
            h.eject(t1, &s),
            Duration::from_secs(4),
            "doubles in a streak"
        );
        let t2 = t1 + Duration::from_secs(4);
        assert_eq!(h.probe(true, t2, &s), ProbeChange::Returned);
        for _ in 0..10 {
            h.eject(t2, &s);
        }
        assert_eq!(h.eject(t2, &s), s.max_ejection, "capped");
        h.probe(true, t2 + s.max_ejection, &s);
        let later = t2 + s.max_ejection * 3;
        assert_eq!(
            h.eject(later, &s),
            s.base_ejection,
            "a long healthy spell ends the streak"
        );
    }

    #[test]
    fn failing_probes_leave_rotation_and_one_pass_recovers() {
        let (h, s, t) = (Health::default(), settings(), Instant::now());
        assert_eq!(h.probe(false, t, &s), ProbeChange::None);
        assert_eq!(h.probe(false, t, &s), ProbeChange::FailedProbes(2));
        assert!(h.failing_probes(&s));
        assert_eq!(h.probe(false, t, &s), ProbeChange::None, "reported once");
        assert_eq!(
            h.unhealthy_for(t + Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(h.probe(true, t, &s), ProbeChange::Recovered);
        assert!(!h.failing_probes(&s));
        assert_eq!(h.unhealthy_for(t), None);
    }
}
