//! What a run measured: request outcomes, latency percentiles, cost, scale events, time to
//! capacity, and a time series for plots.

use crate::cluster::Outcome;
use hdrhistogram::Histogram;
use serde::Serialize;

/// One bucket of the time series.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the bucket, seconds.
    pub t: f64,
    /// Requests that arrived.
    pub arrivals: u64,
    /// Requests served.
    pub served: u64,
    /// Requests that timed out or were dropped.
    pub failed: u64,
    /// Requests over the SLO (failed ones included).
    pub slo_violations: u64,
    /// p99 latency of requests served in the bucket, seconds.
    pub p99: f64,
    /// Mean replicas existing (cost).
    pub replicas: f64,
    /// Mean replicas ready.
    pub ready: f64,
    /// Mean replicas needed (demand at the target utilization).
    pub needed: f64,
}

/// The results of one policy on one workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyResult {
    /// Policy name.
    pub policy: String,
    /// Requests.
    pub requests: u64,
    /// Requests served.
    pub served: u64,
    /// Requests timed out.
    pub timeouts: u64,
    /// Requests dropped.
    pub drops: u64,
    /// Share of requests served within the SLO.
    pub slo_attainment: f64,
    /// Latency percentiles of served requests, seconds.
    pub p50: f64,
    /// p95.
    pub p95: f64,
    /// p99.
    pub p99: f64,
    /// Max.
    pub max: f64,
    /// Mean latency of served requests.
    pub mean_latency: f64,
    /// Replica-seconds of existing replicas.
    pub replica_seconds: f64,
    /// GPU-hours at the run's GPUs per replica.
    pub gpu_hours: f64,
    /// Changes of the replica count.
    pub scale_events: u64,
    /// Changes undone by the next one within [`REVERSAL_SECONDS`] (up then down, or down then
    /// up): in a cluster, pods created and deleted, or deleted and created again, within
    /// seconds. The simulator prices them at almost nothing; an operator sees churn.
    pub reversed_scale_events: u64,
    /// Under-capacity episodes (ready < needed).
    pub capacity_episodes: u64,
    /// Mean time to capacity over those episodes, seconds.
    pub time_to_capacity_mean: f64,
    /// Longest time to capacity, seconds.
    pub time_to_capacity_max: f64,
    /// Time-average requests in the system until the last request left (Little's L).
    pub mean_in_system: f64,
    /// Mean time in the system over all requests (served: latency; failed: until failure).
    pub mean_sojourn: f64,
    /// Arrivals per second over the same horizon (Little's lambda).
    pub arrival_rate: f64,
    /// Simulated seconds.
    pub duration: f64,
    /// Time series.
    #[serde(skip)]
    pub buckets: Vec<Bucket>,
    /// Scale log: (time, from, to, reasons).
    #[serde(skip)]
    pub scale_log: Vec<(f64, u32, u32, String)>,
    /// Ready replicas at each second.
    #[serde(skip)]
    pub ready_per_second: Vec<u32>,
    /// The time-series bucket, seconds.
    #[serde(skip)]
    pub bucket: f64,
}

/// Collects a run's measurements.
pub struct Recorder {
    slo: f64,
    bucket: f64,
    hist: Histogram<u64>,
    bucket_hist: Histogram<u64>,
    served: u64,
    timeouts: u64,
    drops: u64,
    slo_ok: u64,
    latency_sum: f64,
    sojourn_sum: f64,
    buckets: Vec<Bucket>,
    seconds_in_bucket: Vec<u32>,
    ready_per_second: Vec<u32>,
}

const MAX_LATENCY_US: u64 = 3_600_000_000;

impl Recorder {
    /// A recorder for a run of `duration` seconds with buckets of `bucket` seconds.
    pub fn new(slo: f64, bucket: f64, duration: f64) -> Recorder {
        let n = (duration / bucket).ceil() as usize + 1;
        let hist = || {
            Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
        };
        Recorder {
            slo,
            bucket,
            hist: hist(),
            bucket_hist: hist(),
            served: 0,
            timeouts: 0,
            drops: 0,
            slo_ok: 0,
            latency_sum: 0.0,
            sojourn_sum: 0.0,
            buckets: (0..n)
                .map(|i| Bucket {
                    t: i as f64 * bucket,
                    ..Default::default()
                })
                .collect(),
            seconds_in_bucket: vec![0; n],
            ready_per_second: Vec::with_capacity(duration as usize + 2),
        }
    }

    fn bucket_of(&mut self, t: f64) -> &mut Bucket {
        let i = ((t / self.bucket) as usize).min(self.buckets.len() - 1);
        &mut self.buckets[i]
    }

    /// Records an arrival.
    pub fn arrival(&mut self, t: f64) {
        self.bucket_of(t).arrivals += 1;
    }

    /// Records an outcome decided at `t`.
    pub fn outcome(&mut self, t: f64, o: Outcome) {
        let slo = self.slo;
        match o {
            Outcome::Served(latency) => {
                self.served += 1;
                self.latency_sum += latency;
                self.sojourn_sum += latency;
                let us = ((latency * 1e6) as u64).clamp(1, MAX_LATENCY_US);
                let _ = self.hist.record(us);
                let _ = self.bucket_hist.record(us);
                let ok = latency <= slo;
                if ok {
                    self.slo_ok += 1;
                }
                let b = self.bucket_of(t);
                b.served += 1;
                if !ok {
                    b.slo_violations += 1;
                }
            }
            Outcome::TimedOut(_) | Outcome::Dropped => {
                if let Outcome::TimedOut(waited) = o {
                    self.timeouts += 1;
                    self.sojourn_sum += waited;
                } else {
                    self.drops += 1;
                }
                let b = self.bucket_of(t);
                b.failed += 1;
                b.slo_violations += 1;
            }
        }
    }

    /// Samples the replica counts once a second (at second `t`).
    pub fn second(&mut self, t: f64, existing: u32, ready: u32) {
        let i = ((t / self.bucket) as usize).min(self.buckets.len() - 1);
        let b = &mut self.buckets[i];
        b.replicas += f64::from(existing);
        b.ready += f64::from(ready);
        self.seconds_in_bucket[i] += 1;
        self.ready_per_second.push(ready);
    }

    /// Closes the bucket that ends at `t`: its p99.
    pub fn close_bucket(&mut self, t: f64) {
        let i = ((t / self.bucket) as usize)
            .saturating_sub(1)
            .min(self.buckets.len() - 1);
        if !self.bucket_hist.is_empty() {
            self.buckets[i].p99 = self.bucket_hist.value_at_quantile(0.99) as f64 / 1e6;
        }
        self.bucket_hist.reset();
    }

    /// The final result.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        mut self,
        policy: &str,
        requests: u64,
        duration: f64,
        replica_seconds: f64,
        gpus_per_replica: f64,
        scale_events: u64,
        in_system_area: f64,
        horizon: f64,
        scale_log: Vec<(f64, u32, u32, String)>,
    ) -> PolicyResult {
        for (b, n) in self.buckets.iter_mut().zip(&self.seconds_in_bucket) {
            if *n > 0 {
                b.replicas /= f64::from(*n);
                b.ready /= f64::from(*n);
            }
        }
        let q = |x: f64| {
            if self.hist.is_empty() {
                0.0
            } else {
                self.hist.value_at_quantile(x) as f64 / 1e6
            }
        };
        let done = self.served + self.timeouts + self.drops;
        PolicyResult {
            policy: policy.to_string(),
            requests,
            served: self.served,
            timeouts: self.timeouts,
            drops: self.drops,
            slo_attainment: if requests == 0 {
                1.0
            } else {
                self.slo_ok as f64 / requests as f64
            },
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
            max: if self.hist.is_empty() {
                0.0
            } else {
                self.hist.max() as f64 / 1e6
            },
            mean_latency: if self.served == 0 {
                0.0
            } else {
                self.latency_sum / self.served as f64
            },
            replica_seconds,
            gpu_hours: replica_seconds * gpus_per_replica / 3600.0,
            scale_events,
            reversed_scale_events: reversals(&scale_log),
            capacity_episodes: 0,
            time_to_capacity_mean: 0.0,
            time_to_capacity_max: 0.0,
            mean_in_system: if horizon > 0.0 {
                in_system_area / horizon
            } else {
                0.0
            },
            mean_sojourn: if done == 0 {
                0.0
            } else {
                self.sojourn_sum / done as f64
            },
            arrival_rate: if horizon > 0.0 {
                requests as f64 / horizon
            } else {
                0.0
            },
            duration,
            buckets: self.buckets,
            scale_log,
            ready_per_second: self.ready_per_second,
            bucket: self.bucket,
        }
    }
}

/// How soon a change of the replica count undone by the next counts as reversed, seconds: two
/// of Ebb's decision periods in the simulator, one of KPA's.
pub const REVERSAL_SECONDS: f64 = 2.0;

/// Changes in `scale_log` undone by the next within [`REVERSAL_SECONDS`].
fn reversals(scale_log: &[(f64, u32, u32, String)]) -> u64 {
    let direction = |from: u32, to: u32| i64::from(to) - i64::from(from);
    scale_log
        .windows(2)
        .filter(|w| {
            let ((t0, a0, b0, _), (t1, a1, b1, _)) = (&w[0], &w[1]);
            t1 - t0 <= REVERSAL_SECONDS
                && direction(*a0, *b0).signum() * direction(*a1, *b1).signum() < 0
        })
        .count() as u64
}

impl PolicyResult {
    /// Measures time to capacity against `needed` (replicas needed in each second): every
    /// stretch in which fewer replicas were ready than needed is one episode, and its length
    /// is the time it took to get back to capacity. Also fills the buckets' `needed`.
    pub fn measure_capacity(&mut self, needed: &[u32]) {
        let mut episodes = Vec::new();
        let mut start: Option<usize> = None;
        let mut sums = vec![(0.0, 0u32); self.buckets.len()];
        for (s, ready) in self.ready_per_second.iter().enumerate() {
            let need = needed.get(s).copied().unwrap_or(0);
            let b = ((s as f64 / self.bucket) as usize).min(sums.len().saturating_sub(1));
            if let Some(x) = sums.get_mut(b) {
                x.0 += f64::from(need);
                x.1 += 1;
            }
            if *ready < need {
                start.get_or_insert(s);
            } else if let Some(st) = start.take() {
                episodes.push((s - st) as f64);
            }
        }
        if let Some(st) = start {
            episodes.push((self.ready_per_second.len() - st) as f64);
        }
        for (b, (sum, n)) in self.buckets.iter_mut().zip(sums) {
            if n > 0 {
                b.needed = sum / f64::from(n);
            }
        }
        self.capacity_episodes = episodes.len() as u64;
        self.time_to_capacity_mean = if episodes.is_empty() {
            0.0
        } else {
            episodes.iter().sum::<f64>() / episodes.len() as f64
        };
        self.time_to_capacity_max = episodes.iter().copied().fold(0.0, f64::max);
    }
}

#[cfg(test)]
mod tests {
    use super::reversals;

    fn log(events: &[(f64, u32, u32)]) -> Vec<(f64, u32, u32, String)> {
        events
            .iter()
            .map(|&(t, from, to)| (t, from, to, String::new()))
            .collect()
    }

    /// A start undone a second later is a reversal; one undone after the window, or
    /// followed by a change the same way, is not.
    #[test]
    fn only_changes_undone_within_the_window_are_reversals() {
        assert_eq!(reversals(&log(&[(10.0, 3, 5), (11.0, 5, 4)])), 1);
        assert_eq!(reversals(&log(&[(10.0, 5, 4), (12.0, 4, 5)])), 1);
        assert_eq!(reversals(&log(&[(10.0, 3, 5), (13.0, 5, 4)])), 0);
        assert_eq!(reversals(&log(&[(10.0, 3, 5), (11.0, 5, 7)])), 0);
        assert_eq!(reversals(&log(&[(1.0, 1, 2), (2.0, 2, 1), (3.0, 1, 2)])), 2);
        assert_eq!(reversals(&[]), 0);
    }
}
