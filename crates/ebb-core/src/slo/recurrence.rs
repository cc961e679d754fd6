//! Bursts that recur on a clock: a batch job every five minutes, a cron-driven client, a
//! dashboard refreshing on the hour. A burst shorter than a cold start cannot be served by
//! reacting to it, and the daily season is far too coarse to see it; but once a few onsets
//! have come at a steady interval, the next is due at a known time, and the replicas the last
//! bursts needed can be started one cold start before it. That is what the clairvoyant does
//! with every burst; this does it with the ones the past predicts.
//!
//! An **onset** is a jump of the short-window rate over the level (the SLO model's own jump
//! test) after at least [`QUIET_SECONDS`] without one. The bursts are **periodic** when the
//! last [`GAPS`] gaps between onsets all lie within [`TOLERANCE_SHARE`] of their mean (and
//! at least [`TOLERANCE_FLOOR_SECONDS`]), or, with only two onsets seen, when those two
//! bursts look alike (peaks within [`ALIKE_SHARE`]): a third is then expected one gap later.
//! A single irregular gap ends the prediction until [`GAPS`] regular ones have been seen
//! again, so a burst that happens to follow another by a similar time does not start replicas.

use crate::time::Time;
use serde::{Deserialize, Serialize};

/// Gaps between onsets that must agree before the next onset is predicted.
pub const GAPS: usize = 2;
/// Seconds without a jump before a jump counts as a new onset (jumps within one burst are
/// one onset).
pub const QUIET_SECONDS: f64 = 30.0;
/// How far a gap may stray from the mean gap, as a share of it, and still count as regular.
pub const TOLERANCE_SHARE: f64 = 0.05;
/// The least tolerance, seconds: the jump test itself places an onset within a few seconds.
pub const TOLERANCE_FLOOR_SECONDS: f64 = 5.0;
/// With only two onsets seen (one gap, nothing to agree with), the next is predicted when the
/// two bursts look alike: their peak rates within this share of the larger. Copies of one job
/// on a clock look alike; two unrelated surges seldom do.
pub const ALIKE_SHARE: f64 = 0.25;
/// The silence before the first arrivals the estimates saw: it began before they did, so its
/// length is unknown but not short (a burst that ended it came out of silence).
pub const SILENT_SINCE_START: f64 = f64::MAX;
/// Longest period followed, seconds: longer cycles are the daily season's job.
pub const MAX_PERIOD_SECONDS: f64 = 7200.0;

/// One burst: when it began, the highest rate planned for until the next began, and the
/// arrivals counter when it began (so that a period's arrivals, and its share of the SLO's
/// allowed misses, are known).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Onset {
    /// When the jump was seen.
    pub at: Time,
    /// The highest rate planned for from then until the next onset, req/s.
    pub peak_rate: f64,
    /// The arrivals counter at the onset.
    pub arrivals_total: f64,
    /// How long the traffic had been silent just before the burst, seconds (0 when it was
    /// not): bursts that come out of silence leave a gap with nothing to serve.
    #[serde(default)]
    pub silence_before: f64,
}

/// The state carried between decisions (in the decision state, so it survives restarts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recurrence {
    /// The last `GAPS + 1` onsets, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub onsets: Vec<Onset>,
    /// When the jump test last fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_jump: Option<Time>,
}

/// The gap before the next burst, for bursts that come out of silence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    /// Seconds until the next burst is due.
    pub due_in_seconds: f64,
    /// The bursts' period, seconds.
    pub period_seconds: f64,
    /// The shortest silence seen before a burst, widened by how far the gaps strayed: a
    /// silence that has not lasted this long yet is expected to last until the burst.
    pub silent_seconds: f64,
}

/// A burst that is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Due {
    /// The highest rate the last two bursts were planned for, req/s.
    pub peak_rate: f64,
    /// Mean arrivals from one onset to the next (0 when the counter restarted in between).
    pub arrivals_per_period: f64,
    /// The bursts' period, seconds.
    pub period_seconds: f64,
    /// Seconds until the next burst is due (negative once it is late).
    pub due_in_seconds: f64,
}

impl Recurrence {
    /// Takes one decision's jump test, the rate it planned for, the arrivals counter and
    /// the silence the traffic came out of just before (seconds, 0 if none).
    pub fn observe(
        &mut self,
        jump: bool,
        rate: f64,
        arrivals_total: f64,
        silence_before: f64,
        now: Time,
    ) {
        if jump {
            let quiet = self
                .last_jump
                .is_none_or(|last| now.seconds_since(last) >= QUIET_SECONDS);
            self.last_jump = Some(now);
            if quiet {
                self.onsets.push(Onset {
                    at: now,
                    peak_rate: rate,
                    arrivals_total,
                    silence_before,
                });
                let excess = self.onsets.len().saturating_sub(GAPS + 1);
                self.onsets.drain(..excess);
                return;
            }
        }
        if let Some(open) = self.onsets.last_mut() {
            open.peak_rate = open.peak_rate.max(rate);
        }
    }

    /// The mean gap and how far the gaps strayed from it (at least the floor), when they agree.
    fn period(&self) -> Option<(f64, f64)> {
        match self.onsets.as_slice() {
            [] | [_] => return None,
            [a, b]
                if (a.peak_rate - b.peak_rate).abs()
                    > ALIKE_SHARE * a.peak_rate.max(b.peak_rate) =>
            {
                return None
            }
            _ => {}
        }
        let gaps: Vec<f64> = self
            .onsets
            .windows(2)
            .map(|w| w[1].at.seconds_since(w[0].at))
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let strayed = gaps.iter().map(|g| (g - mean).abs()).fold(0.0, f64::max);
        let regular = strayed <= (TOLERANCE_SHARE * mean).max(TOLERANCE_FLOOR_SECONDS);
        let window = strayed.max(TOLERANCE_FLOOR_SECONDS);
        (regular && mean <= MAX_PERIOD_SECONDS && mean > 0.0).then_some((mean, window))
    }

    /// The silence ahead, while the bursts are periodic and each came out of silence: the
    /// next is due in `Gap::due_in_seconds`, and nothing arrived that long before the last
    /// ones. None once the next is later than the gaps ever strayed (a burst that failed to
    /// come predicts nothing more).
    pub fn silent_gap(&self, now: Time) -> Option<Gap> {
        let (period, tolerance) = self.period()?;
        let due_in = period - now.seconds_since(self.onsets.last()?.at);
        let silent = self
            .onsets
            .iter()
            .map(|o| o.silence_before)
            .fold(f64::INFINITY, f64::min);
        (due_in >= -tolerance).then_some(Gap {
            due_in_seconds: due_in,
            period_seconds: period,
            silent_seconds: silent + tolerance,
        })
    }

    /// The burst to have replicas ready for now, if one is due within `lead_seconds` (the cold
    /// start with its spread), widened by how far the gaps strayed. The window closes as far
    /// past the due time: a burst that has not come by then is not waited for.
    pub fn due(&self, now: Time, lead_seconds: f64) -> Option<Due> {
        let (period, tolerance) = self.period()?;
        let last = self.onsets.last()?;
        let since = now.seconds_since(last.at);
        // The burst in progress is the model's to serve; look at the next one.
        let due_in = period - since;
        let open = -tolerance <= due_in && due_in <= lead_seconds + tolerance;
        if !open {
            return None;
        }
        // The last bursts' peaks; the newest one's counts once it has had its cycle.
        let closed = &self.onsets[..self.onsets.len() - 1];
        let peak_rate = closed
            .iter()
            .rev()
            .take(2)
            .map(|o| o.peak_rate)
            .fold(0.0, f64::max);
        let arrivals: Vec<f64> = self
            .onsets
            .windows(2)
            .map(|w| w[1].arrivals_total - w[0].arrivals_total)
            .collect();
        let arrivals_per_period = if arrivals.iter().all(|a| *a >= 0.0) {
            arrivals.iter().sum::<f64>() / arrivals.len() as f64
        } else {
            0.0
        };
        Some(Due {
            peak_rate,
            arrivals_per_period,
            period_seconds: period,
            due_in_seconds: due_in,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> Time {
        Time::from_millis((s * 1000.0) as i64)
    }

    /// Bursts of 120 req/s lasting 30 s every `period` seconds, with 20 req/s between.
    fn feed(r: &mut Recurrence, period: f64, until: f64, jitter: impl Fn(usize) -> f64) {
        let (mut t, mut arrivals) = (0.0, 0.0);
        while t < until {
            let cycle = (t / period).floor() as usize;
            let start = cycle as f64 * period + jitter(cycle);
            let in_burst = t >= start && t < start + 30.0;
            let jump = in_burst && t < start + 3.0;
            let rate = if in_burst { 120.0 } else { 20.0 };
            arrivals += rate;
            r.observe(jump, rate, arrivals, 0.0, at(t));
            t += 1.0;
        }
    }

    #[test]
    fn predicts_a_periodic_burst_one_lead_ahead() {
        let mut r = Recurrence::default();
        feed(&mut r, 300.0, 1230.0, |_| 0.0);
        assert_eq!(r.onsets.len(), GAPS + 1);
        // Next burst at 1500 s: nothing yet at 1400, replicas 35 s ahead of it.
        assert_eq!(r.due(at(1400.0), 30.0), None);
        let p = r.due(at(1465.0), 30.0).expect("due");
        assert_eq!(p.peak_rate, 120.0);
        // 30 s at 120 and 270 s at 20 a period.
        assert!((p.arrivals_per_period - 9000.0).abs() < 1e-9, "{p:?}");
        assert!((p.period_seconds - 300.0).abs() < 1e-9);
        assert!((p.due_in_seconds - 35.0).abs() < 1e-9);
        // A burst that does not come is not waited for past the tolerance.
        assert!(r.due(at(1504.0), 30.0).is_some());
        assert_eq!(r.due(at(1540.0), 30.0), None);
    }

    #[test]
    fn two_alike_bursts_predict_the_third_and_unlike_ones_do_not() {
        let mut r = Recurrence::default();
        feed(&mut r, 300.0, 400.0, |_| 0.0);
        assert_eq!(r.onsets.len(), 2);
        let p = r
            .due(at(565.0), 30.0)
            .expect("two alike bursts predict the third");
        assert!((p.period_seconds - 300.0).abs() < 1e-9, "{p:?}");
        // The second surge peaks at twice the first: not copies of one job.
        let mut r = Recurrence::default();
        r.observe(true, 120.0, 0.0, 0.0, at(0.0));
        r.observe(false, 20.0, 100.0, 0.0, at(100.0));
        r.observe(true, 240.0, 200.0, 0.0, at(300.0));
        r.observe(false, 20.0, 300.0, 0.0, at(400.0));
        assert_eq!(r.due(at(565.0), 30.0), None, "unlike bursts");
    }

    #[test]
    fn one_onset_or_irregular_onsets_predict_nothing() {
        let mut r = Recurrence::default();
        feed(&mut r, 300.0, 200.0, |_| 0.0);
        assert_eq!(r.due(at(265.0), 30.0), None, "one onset is not enough");
        let mut r = Recurrence::default();
        feed(&mut r, 300.0, 1230.0, |c| if c == 2 { 90.0 } else { 0.0 });
        for t in 1230..1600 {
            assert_eq!(r.due(at(f64::from(t)), 30.0), None, "at {t}");
        }
    }

    #[test]
    fn jumps_within_one_burst_are_one_onset() {
        let mut r = Recurrence::default();
        for t in 0..20 {
            r.observe(t % 3 == 0, 4.0, 0.0, 0.0, at(f64::from(t)));
        }
        assert_eq!(r.onsets.len(), 1);
        assert_eq!(r.onsets[0].peak_rate, 4.0);
    }

    #[test]
    fn the_gap_is_silent_only_where_every_burst_came_out_of_silence() {
        let onset = |r: &mut Recurrence, at_s: f64, silence_before: f64| {
            r.observe(true, 80.0, at_s * 10.0, silence_before, at(at_s));
            r.observe(false, 80.0, at_s * 10.0 + 100.0, 0.0, at(at_s + 60.0));
        };
        // Bursts every 360 s after 240 s of silence; the first came out of a silence that
        // began before the estimates did.
        let mut r = Recurrence::default();
        onset(&mut r, 0.0, SILENT_SINCE_START);
        onset(&mut r, 360.0, 240.0);
        let gap = r.silent_gap(at(500.0)).expect("periodic");
        assert!((gap.due_in_seconds - 220.0).abs() < 1e-9, "{gap:?}");
        assert!((gap.period_seconds - 360.0).abs() < 1e-9, "{gap:?}");
        assert!((gap.silent_seconds - 245.0).abs() < 1e-9, "{gap:?}");
        // A burst that has not come by the tolerance ends the prediction.
        assert!(r.silent_gap(at(730.0)).is_none());
        // One burst that came out of a trickle caps the silence expected at its own.
        onset(&mut r, 720.0, 3.0);
        let gap = r.silent_gap(at(800.0)).expect("periodic");
        assert!((gap.silent_seconds - 8.0).abs() < 1e-9, "{gap:?}");
    }

    #[test]
    fn small_jitter_is_tolerated() {
        let mut r = Recurrence::default();
        feed(&mut r, 360.0, 1470.0, |c| [0.0, 4.0, 1.0, 3.0, 2.0][c % 5]);
        assert!(r.due(at(1800.0 - 30.0), 30.0).is_some());
    }
}
