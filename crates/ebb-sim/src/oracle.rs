//! The offline oracle and the capacity a workload needs, from one pass over the arrivals.
//!
//! Every request holds one slot for its service time. Sweeping arrivals and completions as if
//! every request started the moment it arrived (infinite servers, M/G/inf) gives, for each
//! second, the peak and the mean number of requests in service. The oracle runs
//! `ceil(peak / slots)` replicas in each second, with instant capacity: then no request ever
//! waits (a least-outstanding router always finds a free slot while occupancy is below
//! replicas x slots), so each request's latency is its service time, the least any policy can
//! give it. Among schedules that never make a request wait, it uses the fewest replica-seconds
//! at one-second granularity; it is the cost floor Ebb is measured against. (Letting requests
//! wait within the SLO's slack could shave short peaks further, so it is not a bound for
//! schedules that queue; and it knows the future and has no cold start, which no real policy
//! can match.)

use crate::service::ServiceTime;
use crate::workload::Workload;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Per-second demand of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    /// Peak requests in service in each second.
    pub peak: Vec<u32>,
    /// Mean requests in service in each second.
    pub mean: Vec<f64>,
    /// Sum of all service times (slot-seconds of work).
    pub work: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct End(f64);
impl Eq for End {}
impl Ord for End {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}
impl PartialOrd for End {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Demand {
    /// Sweeps the workload's arrivals (same seed as the simulation, so the same requests).
    pub fn of(workload: &Workload, service: &ServiceTime, seed: u64) -> Demand {
        let seconds = workload.duration().ceil() as usize + 1;
        let mut peak = vec![0u32; seconds];
        let mut area = vec![0.0f64; seconds];
        let mut ends: BinaryHeap<Reverse<End>> = BinaryHeap::new();
        let mut occupancy: u32 = 0;
        let mut last = 0.0f64;
        let mut work = 0.0;

        // Accounts occupancy over [from, to) into the seconds it spans (growing the arrays
        // for requests that finish after the last arrival).
        let account = |from: f64, to: f64, occ: u32, peak: &mut Vec<u32>, area: &mut Vec<f64>| {
            let grow = |s: usize, peak: &mut Vec<u32>, area: &mut Vec<f64>| {
                if s >= peak.len() {
                    peak.resize(s + 1, 0);
                    area.resize(s + 1, 0.0);
                }
            };
            if to <= from {
                let s = from as usize;
                grow(s, peak, area);
                peak[s] = peak[s].max(occ);
                return;
            }
            let mut t = from;
            while t < to {
                let s = t as usize;
                grow(s, peak, area);
                let next = ((s + 1) as f64).min(to);
                peak[s] = peak[s].max(occ);
                area[s] += f64::from(occ) * (next - t);
                t = next;
            }
        };

        for a in workload.arrivals(service, seed) {
            while let Some(Reverse(End(e))) = ends.peek().copied() {
                if e > a.at {
                    break;
                }
                ends.pop();
                account(last, e, occupancy, &mut peak, &mut area);
                occupancy -= 1;
                last = e;
            }
            account(last, a.at, occupancy, &mut peak, &mut area);
            occupancy += 1;
            last = a.at;
            account(last, last, occupancy, &mut peak, &mut area);
            work += a.service;
            ends.push(Reverse(End(a.at + a.service)));
        }
        while let Some(Reverse(End(e))) = ends.pop() {
            account(last, e, occupancy, &mut peak, &mut area);
            occupancy -= 1;
            last = e;
        }
        Demand {
            peak,
            mean: area,
            work,
        }
    }

    /// The oracle's replicas for each second.
    pub fn oracle_schedule(&self, slots: u32) -> Vec<u32> {
        self.peak.iter().map(|p| p.div_ceil(slots)).collect()
    }

    /// Replicas needed in each second to serve the demand averaged over a `window`-second
    /// neighbourhood at `utilization` of the slots: the yardstick for "time to capacity".
    pub fn needed(&self, slots: u32, window: usize, utilization: f64) -> Vec<u32> {
        let n = self.mean.len();
        let mut prefix = vec![0.0; n + 1];
        for i in 0..n {
            prefix[i + 1] = prefix[i] + self.mean[i];
        }
        (0..n)
            .map(|i| {
                let lo = i.saturating_sub(window / 2);
                let hi = (i + window / 2 + 1).min(n);
                let avg = (prefix[hi] - prefix[lo]) / (hi - lo) as f64;
                (avg / (f64::from(slots) * utilization)).ceil() as u32
            })
            .collect()
    }
}

/// The clairvoyant that pays the cold start: a tighter floor than the oracle for any policy
/// whose replicas take `cold_start` seconds to start.
///
/// It knows the future like the oracle and serves the same per-second schedule (so no request
/// waits), but a replica must be started `cold_start` seconds before the second it is first
/// needed, and it pays for those seconds. Think of the schedule as stacked levels: replica
/// `k` is needed in the seconds where the schedule is at least `k`. Between two stretches of
/// need, level `k` either stays up through the gap (paying the gap) or stops and starts again
/// (paying one cold start); the clairvoyant takes the cheaper, `min(gap, cold_start)` — keep a
/// replica through a dip shorter than its cold start, the ski-rental rule with perfect
/// foresight. A level first needed after time zero pays one cold start; those up at time
/// zero start ready, as every policy does. So its replica-seconds are
/// `sum(schedule) + sum over levels (sum over gaps min(gap, cold_start) + cold_start if first
/// needed after 0)`, and no policy with that cold start and no waiting can spend less.
/// Computed in one pass over the schedule's changes.
pub fn clairvoyant_replica_seconds(schedule: &[u32], cold_start: f64) -> f64 {
    let cold = cold_start.max(0.0);
    let mut total: f64 = schedule.iter().map(|&r| f64::from(r)).sum();
    // When each level last turned off (`None`: never on yet).
    let mut off_at: Vec<Option<usize>> = Vec::new();
    let mut current = 0u32;
    for (t, &r) in schedule.iter().enumerate() {
        if r > current {
            for level in current..r {
                let l = level as usize;
                if off_at.len() <= l {
                    off_at.resize(l + 1, None);
                }
                total += match off_at[l] {
                    Some(off) => ((t - off) as f64).min(cold),
                    None if t == 0 => 0.0,
                    None => cold,
                };
            }
        } else {
            for level in r..current {
                off_at[level as usize] = Some(t);
            }
        }
        current = r;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Request;

    #[test]
    fn clairvoyant_pays_cold_starts_and_keeps_through_short_dips() {
        // Level 1 all along (3 s); level 2 needed at 1 and 4 (a 2 s gap), started after 0.
        let schedule = [1, 2, 1, 1, 2];
        // Cold start 5 s: level 2 pays one start (5) and keeps through the 2 s gap (2).
        assert_eq!(clairvoyant_replica_seconds(&schedule, 5.0), 7.0 + 5.0 + 2.0);
        // Cold start 1 s: restarting (1) is cheaper than keeping (2).
        assert_eq!(clairvoyant_replica_seconds(&schedule, 1.0), 7.0 + 1.0 + 1.0);
        // No cold start: the oracle's replica-seconds.
        assert_eq!(clairvoyant_replica_seconds(&schedule, 0.0), 7.0);
        // Replicas up at time zero start ready.
        assert_eq!(clairvoyant_replica_seconds(&[3, 3], 20.0), 6.0);
    }

    #[test]
    fn sweep_counts_overlaps() {
        // Three 1.5 s requests at 0.0, 0.5 and 1.0: peak 3 during [1.0, 1.5).
        let w = Workload::Requests(
            [0.0, 0.5, 1.0, 3.0]
                .iter()
                .map(|&at| Request {
                    at,
                    work: f32::NAN,
                    prompt: f32::NAN,
                    model: 0,
                })
                .collect(),
        );
        let d = Demand::of(&w, &ServiceTime::Constant(1.5), 1);
        assert_eq!(d.peak[0], 2);
        assert_eq!(d.peak[1], 3);
        assert_eq!(d.peak[3], 1);
        assert!((d.work - 6.0).abs() < 1e-9);
        let total_area: f64 = d.mean.iter().sum();
        assert!((total_area - 6.0).abs() < 1e-9, "{total_area}");
        assert_eq!(d.oracle_schedule(2), vec![1, 2, 1, 1, 1]);
    }
}
