//! From each replica's scrape to the observations the engine's policy metrics read: gauges
//! per pod as they are, and latency percentiles from histogram growth over the window,
//! summed over replicas before the quantile is taken (a quantile of quantiles is no quantile).
//!
//! A percentile's target works as HPA's `Value` target: desired = current x percentile /
//! target. A window that still holds the latency of fewer replicas would go on multiplying the
//! count while new replicas start (1 -> 2 -> 4 -> 6 in three one-second decisions, measured
//! with `ebb demo-llm`). So a percentile is only read over the replicas that are serving now:
//! none while replicas are starting, and its window starts again when the set of serving
//! replicas changes. A missing percentile holds the count on that metric.

use super::{quantile, Buckets, Engine, Reading, Sample, Signal};
use crate::observation::{MetricObservation, MetricValues, PodSample};
use crate::time::Time;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The fewest observations a percentile is read from: fewer say little about a tail.
pub const MIN_PERCENTILE_COUNT: f64 = 10.0;

/// Carries each replica's recent histogram counts from one scrape to the next.
#[derive(Debug, Clone, Default)]
pub struct EngineReader {
    /// Per pod and histogram signal: counts by scrape time, oldest first, back to the last one
    /// at or before the window's start.
    history: BTreeMap<String, BTreeMap<Signal, VecDeque<(Time, Buckets)>>>,
    /// The replicas the histories were taken over.
    serving: BTreeSet<String>,
}

impl EngineReader {
    /// Reads one round of scrapes of the serving replicas (pod name and its samples; none for
    /// a replica whose scrape failed, which stays in the serving set) taken at `now` into the
    /// observations of `engine`'s targets; `starting` says whether replicas are starting
    /// beside them. A signal no replica exports, or a percentile while replicas start
    /// or over a window with fewer than [`MIN_PERCENTILE_COUNT`] observations, gives no
    /// observation: the policy holds on it.
    pub fn observe(
        &mut self,
        engine: &Engine,
        scrapes: &[(String, Vec<Sample>)],
        starting: bool,
        now: Time,
    ) -> Vec<MetricObservation> {
        let serving: BTreeSet<String> = scrapes.iter().map(|(p, _)| p.clone()).collect();
        if serving != self.serving {
            self.history.clear();
            self.serving = serving;
        }
        let window_start = now.minus_millis(engine.window_ms);
        let mut out = Vec::new();
        for target in &engine.targets {
            let Some(reading) = engine.kind.reading(target.signal) else {
                continue;
            };
            let values = match (reading, target.quantile) {
                (Reading::Histogram { names, scale }, Some(q)) => self
                    .percentile(target.signal, (names, scale), q, window_start, scrapes, now)
                    .filter(|_| !starting)
                    .map(|v| MetricValues::External {
                        values: vec![v],
                        at: now,
                    }),
                (Reading::Histogram { .. }, None) => None,
                (gauge, _) => per_pod(&gauge, scrapes, now),
            };
            if let Some(values) = values {
                out.push(MetricObservation {
                    name: target.signal.metric_name().into(),
                    values,
                });
            }
        }
        out
    }

    /// The `q` quantile of what the replicas' histogram (its names, newest first, and the
    /// scale of its bounds to seconds) counted since `window_start`, summed over replicas.
    fn percentile(
        &mut self,
        signal: Signal,
        (names, scale): (&[&str], f64),
        q: f64,
        window_start: Time,
        scrapes: &[(String, Vec<Sample>)],
        now: Time,
    ) -> Option<f64> {
        let mut total = Buckets::default();
        for (pod, samples) in scrapes {
            let Some(now_counts) = names
                .iter()
                .find_map(|n| Buckets::from_samples(samples, n, scale))
            else {
                continue;
            };
            let history = self
                .history
                .entry(pod.clone())
                .or_default()
                .entry(signal)
                .or_default();
            history.push_back((now, now_counts.clone()));
            while history.len() > 1 && history[1].0 <= window_start {
                history.pop_front();
            }
            // The first scrape of a replica has nothing to compare with.
            let Some((_, earlier)) = history.front().filter(|(t, _)| *t < now) else {
                continue;
            };
            // A count that went back: the replica restarted, and all it counted is recent.
            let grown = now_counts.since(earlier).unwrap_or(now_counts);
            total.add(&grown);
        }
        if total.count() < MIN_PERCENTILE_COUNT {
            return None;
        }
        quantile(q, &total)
    }
}

/// A gauge's value in each replica's scrape that has it.
fn per_pod(
    reading: &Reading,
    scrapes: &[(String, Vec<Sample>)],
    now: Time,
) -> Option<MetricValues> {
    let samples: Vec<PodSample> = scrapes
        .iter()
        .filter_map(|(pod, samples)| {
            Some(PodSample {
                pod: pod.clone(),
                value: reading.gauge(samples)?,
                at: now,
                window_ms: 0,
            })
        })
        .collect();
    (!samples.is_empty()).then_some(MetricValues::PerPod { samples })
}
