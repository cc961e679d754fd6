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
use crate::observation::{EngineSample, MetricObservation, MetricValues, Observation, PodSample};
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
    /// Per pod: its token counter by scrape time, oldest first, back to the last one at or
    /// before the window's start.
    tokens: BTreeMap<String, VecDeque<(Time, f64)>>,
}

/// One round of scrapes read: the policy metrics of the engine's targets, and what an LLM SLO
/// reads (when the policy has one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineReading {
    /// Observations of the engine block's targets.
    pub metrics: Vec<MetricObservation>,
    /// The token model's sample.
    pub sample: Option<EngineSample>,
}

impl EngineReading {
    /// Puts the reading into a driver's observation.
    pub fn add_to(self, obs: &mut Observation) {
        obs.metrics.extend(self.metrics);
        if self.sample.is_some() {
            obs.engine = self.sample;
        }
    }
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
        self.read(engine, scrapes, starting, now).metrics
    }

    /// [`EngineReader::observe`], with the LLM SLO's sample where the engine block carries
    /// [`token_quantiles`](Engine::token_quantiles).
    pub fn read(
        &mut self,
        engine: &Engine,
        scrapes: &[(String, Vec<Sample>)],
        starting: bool,
        now: Time,
    ) -> EngineReading {
        let serving: BTreeSet<String> = scrapes.iter().map(|(p, _)| p.clone()).collect();
        if serving != self.serving {
            self.history.clear();
            // Token counters are each replica's own: a replica's growth stays its own when
            // others come or go; only those gone are dropped.
            self.tokens.retain(|pod, _| serving.contains(pod));
            self.serving = serving;
        }
        let window_start = now.minus_millis(engine.window_ms);
        // Each histogram's growth over the window, read once however many quantiles use it.
        let mut windows: BTreeMap<Signal, Window> = BTreeMap::new();
        let mut grown = |reader: &mut Self, signal: Signal| -> Option<Window> {
            if let Some(b) = windows.get(&signal) {
                return Some(b.clone());
            }
            let Some(Reading::Histogram { names, scale }) = engine.kind.reading(signal) else {
                return None;
            };
            let b = reader.window(signal, (names, scale), window_start, scrapes, now);
            windows.insert(signal, b.clone());
            Some(b)
        };
        let mut out = Vec::new();
        for target in &engine.targets {
            let Some(reading) = engine.kind.reading(target.signal) else {
                continue;
            };
            let values = match (reading, target.quantile) {
                (Reading::Histogram { .. }, Some(q)) => grown(self, target.signal)
                    .and_then(|w| w.percentile(q))
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
        let sample = engine.token_quantiles.map(|q| {
            let itl = grown(self, Signal::Itl);
            let ttft = grown(self, Signal::Ttft);
            let tokens_per_second = self.token_rate(engine, scrapes, window_start, now);
            // The token model learns from windows that saw requests only.
            let at = |w: &Option<Window>, q: Option<f64>| {
                w.as_ref()
                    .zip(q)
                    .and_then(|(w, q)| percentile(&w.counts, q))
            };
            EngineSample {
                at: now,
                replicas: scrapes.len() as u32,
                tokens_per_second,
                waiting: gauge_values(engine, Signal::Waiting, scrapes).sum(),
                kv_cache: mean(gauge_values(engine, Signal::KvCacheUtilization, scrapes)),
                itl_quantile: at(&itl, q.itl),
                ttft_quantile: at(&ttft, q.ttft),
                starting,
            }
        });
        EngineReading {
            metrics: out,
            sample,
        }
    }

    /// Tokens per second over the window, summed over the replicas whose counters span some
    /// of it (each its growth over its own span; a counter that went back restarted, and
    /// counts from zero).
    fn token_rate(
        &mut self,
        engine: &Engine,
        scrapes: &[(String, Vec<Sample>)],
        window_start: Time,
        now: Time,
    ) -> Option<f64> {
        let reading = engine.kind.reading(Signal::Tokens)?;
        let mut total = None;
        for (pod, samples) in scrapes {
            let Some(count) = reading.gauge(samples) else {
                continue;
            };
            let history = self.tokens.entry(pod.clone()).or_default();
            history.push_back((now, count));
            while history.len() > 1 && history[1].0 <= window_start {
                history.pop_front();
            }
            let Some(&(then, earlier)) = history.front().filter(|(t, _)| *t < now) else {
                continue;
            };
            let grown = if count >= earlier {
                count - earlier
            } else {
                count
            };
            *total.get_or_insert(0.0) += grown / now.seconds_since(then);
        }
        total
    }

    /// What the replicas' histogram (its names, newest first, and the scale of its bounds to
    /// seconds) counted since `window_start`, summed over replicas.
    fn window(
        &mut self,
        signal: Signal,
        (names, scale): (&[&str], f64),
        window_start: Time,
        scrapes: &[(String, Vec<Sample>)],
        now: Time,
    ) -> Window {
        let mut total = Buckets::default();
        let mut covered = !scrapes.is_empty();
        for (pod, samples) in scrapes {
            let Some(now_counts) = names
                .iter()
                .find_map(|n| Buckets::from_samples(samples, n, scale))
            else {
                covered = false;
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
            let Some((since, earlier)) = history.front().filter(|(t, _)| *t < now) else {
                covered = false;
                continue;
            };
            covered &= *since <= window_start;
            // A count that went back: the replica restarted, and all it counted is recent.
            let grown = now_counts.since(earlier).unwrap_or(now_counts);
            total.add(&grown);
        }
        Window {
            counts: total,
            covered,
        }
    }
}

/// A histogram's growth over the window, summed over the serving replicas.
#[derive(Debug, Clone, Default)]
struct Window {
    counts: Buckets,
    /// Every serving replica's histogram was read now and at or before the window's start:
    /// a count of zero then means no request, not a replica unseen.
    covered: bool,
}

impl Window {
    /// The `q` quantile of its counts, or zero where every replica was seen over the whole
    /// window and none counted a request (nothing waited: an idle fleet is not a missing
    /// metric, or it would hold its replicas through every quiet hour); `None` below
    /// [`MIN_PERCENTILE_COUNT`] otherwise.
    fn percentile(&self, q: f64) -> Option<f64> {
        if self.covered && self.counts.count() == 0.0 {
            return Some(0.0);
        }
        percentile(&self.counts, q)
    }
}

/// The `q` quantile of a window's counts; `None` below [`MIN_PERCENTILE_COUNT`].
fn percentile(counts: &Buckets, q: f64) -> Option<f64> {
    if counts.count() < MIN_PERCENTILE_COUNT {
        return None;
    }
    quantile(q, counts)
}

/// A gauge signal's value in each scrape that has it.
fn gauge_values<'a>(
    engine: &Engine,
    signal: Signal,
    scrapes: &'a [(String, Vec<Sample>)],
) -> impl Iterator<Item = f64> + 'a {
    let reading = engine.kind.reading(signal);
    scrapes
        .iter()
        .filter_map(move |(_, samples)| reading.as_ref()?.gauge(samples))
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
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
