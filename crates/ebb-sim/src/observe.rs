//! What an autoscaler sees, and when: counters scraped every `scrape_interval`, rates over a
//! Prometheus-style `rate_window` of those scrapes, values as of the last scrape. This is how
//! "HPA through a Prometheus adapter" sees a signal that lags reality, while Ebb's proxy
//! counters are scraped every second.
//!
//! Metric names a policy can use (per pod for `Pods`/`Resource`, summed for `Object`/`External`):
//! `rps` (request rate), `inflight` or `concurrency` (requests held), `utilization`, `gpu` or
//! `cpu` (busy share of the slots: percent, or cores for `cpu`), `queue` (requests waiting).
//! A policy's `engine` block reads each serving replica's engine metrics (the token-level
//! simulation's replicas export vLLM's) through the same [`EngineReader`] the drivers use.
//!
//! The pipeline reads any simulated fleet through [`Observed`]: the request-level
//! [`Cluster`] and the token-level [`crate::llm::Fleet`] alike.

use crate::cluster::{Cluster, ReplicaState};
use ebb_core::engine::{EngineReader, Sample};
use ebb_core::policy::MetricSource;
use ebb_core::{
    MetricObservation, MetricValues, Observation, Pod, PodPhase, PodSample, Policy,
    Sample as ValueSample, ServiceTotals, Time, TrafficSample,
};
use std::collections::{BTreeMap, VecDeque};

/// One replica as a scrape sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaView {
    /// Stable id (the pod's name in observations).
    pub id: u32,
    /// Where it is in its life.
    pub state: ReplicaState,
    /// When it was created.
    pub created: f64,
    /// When it became (or becomes) ready.
    pub ready_at: f64,
    /// Requests routed to it so far.
    pub arrivals: u64,
    /// Slot-seconds of work done so far (for the token-level fleet: seconds the engine had
    /// work, its duty cycle's numerator).
    pub busy_time: f64,
    /// Requests held now.
    pub outstanding: u32,
    /// Requests waiting now.
    pub queued: u32,
}

/// Fleet-wide counters as a scrape sees them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Requests that have arrived.
    pub arrivals_total: u64,
    /// Requests that have left.
    pub completions_total: u64,
    /// Service-time counters.
    pub service: ServiceTotals,
    /// Requests that ended and those answered within the SLO's latency, where counted.
    pub answered: Option<ebb_core::AnsweredWithin>,
    /// The integral of requests in the system over time.
    pub in_system_area: f64,
    /// Requests waiting (in replicas' queues and the activator).
    pub queued: u64,
}

/// A simulated fleet, as the observation pipeline reads it.
pub trait Observed {
    /// Replicas that are not gone (starting, ready, draining), as of `now`.
    fn replicas(&self, now: f64) -> Vec<ReplicaView>;
    /// The fleet's counters as of `now`.
    fn totals(&self, now: f64) -> Totals;
    /// Replicas counted by the target's `/scale` (starting and ready; not draining).
    fn current_replicas(&self) -> u32;
    /// Slots per replica: the denominator of utilization (1 for an engine: its duty cycle).
    fn slots(&self) -> u32;
    /// Each serving replica's engine metrics as its `/metrics` page would give them (none for
    /// a fleet without engines).
    fn engine_samples(&self, _now: f64) -> Vec<(String, Vec<Sample>)> {
        Vec::new()
    }
}

impl Observed for Cluster {
    fn replicas(&self, now: f64) -> Vec<ReplicaView> {
        self.active()
            .map(|r| ReplicaView {
                id: r.id,
                state: r.state,
                created: r.created,
                ready_at: r.ready_at,
                arrivals: r.arrivals,
                busy_time: r.busy_time(now),
                outstanding: r.outstanding(),
                queued: r.queued(),
            })
            .collect()
    }
    fn totals(&self, now: f64) -> Totals {
        Totals {
            arrivals_total: self.arrivals_total,
            completions_total: self.completions_total,
            service: self.service,
            answered: self.answered,
            in_system_area: self.in_system_area(now),
            queued: self.queued(),
        }
    }
    fn current_replicas(&self) -> u32 {
        Cluster::current_replicas(self)
    }
    fn slots(&self) -> u32 {
        self.config().slots
    }
}

/// Converts simulation seconds to the core's time.
pub fn core_time(t: f64) -> Time {
    Time::from_millis((t * 1000.0).round() as i64)
}

#[derive(Debug, Clone)]
struct ReplicaScrape {
    arrivals: u64,
    busy_time: f64,
    outstanding: u32,
    queued: u32,
}

#[derive(Debug, Clone)]
struct Scrape {
    at: f64,
    totals: Totals,
    replicas: BTreeMap<u32, ReplicaScrape>,
}

/// The engines' side of a pipeline whose policy has an `engine` block: each serving replica's
/// latest metrics, and the reader that keeps the percentiles' windows.
#[derive(Debug, Clone, Default)]
struct Engines {
    reader: EngineReader,
    latest: Vec<(String, Vec<Sample>)>,
    at: f64,
}

/// Scraped history and the rules for reading it.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Seconds between scrapes.
    pub scrape_interval: f64,
    /// Window of Prometheus-style `rate()`.
    pub rate_window: f64,
    /// Where the simulation's time zero lies on the calendar (Unix milliseconds).
    epoch_unix_ms: i64,
    scrapes: VecDeque<Scrape>,
    /// Only for a policy that reads engines: building their pages is the costly part of a
    /// token-level scrape, and the other policies never look at them.
    engines: Option<Engines>,
}

impl Pipeline {
    /// A pipeline with the given scrape interval and rate window.
    pub fn new(scrape_interval: f64, rate_window: f64) -> Pipeline {
        Pipeline {
            scrape_interval,
            rate_window,
            epoch_unix_ms: 0,
            scrapes: VecDeque::new(),
            engines: None,
        }
    }

    /// The same pipeline, also scraping each serving replica's engine metrics (for a policy
    /// with an `engine` block).
    pub fn reading_engines(mut self) -> Pipeline {
        self.engines = Some(Engines::default());
        self
    }

    /// The same pipeline, telling the policy that time zero lies at `epoch_unix_ms` on the
    /// calendar (schedules read it).
    pub fn with_epoch(mut self, epoch_unix_ms: i64) -> Pipeline {
        self.epoch_unix_ms = epoch_unix_ms;
        self
    }

    /// Takes one scrape of the fleet.
    pub fn scrape(&mut self, fleet: &dyn Observed, now: f64) {
        let replicas = fleet
            .replicas(now)
            .into_iter()
            .filter(|r| r.state != ReplicaState::Starting)
            .map(|r| {
                (
                    r.id,
                    ReplicaScrape {
                        arrivals: r.arrivals,
                        busy_time: r.busy_time,
                        outstanding: r.outstanding,
                        queued: r.queued,
                    },
                )
            })
            .collect();
        self.scrapes.push_back(Scrape {
            at: now,
            totals: fleet.totals(now),
            replicas,
        });
        if let Some(e) = self.engines.as_mut() {
            e.latest = fleet.engine_samples(now);
            e.at = now;
        }
        let keep_from = now - self.rate_window - self.scrape_interval;
        while self.scrapes.len() > 2 && self.scrapes[1].at <= keep_from {
            self.scrapes.pop_front();
        }
    }

    /// The scrape at the start of the rate window (oldest within it) and the latest.
    fn window(&self) -> Option<(&Scrape, &Scrape)> {
        let last = self.scrapes.back()?;
        let start = last.at - self.rate_window;
        let first = self.scrapes.iter().find(|s| s.at >= start - 1e-9)?;
        Some((first, last))
    }

    /// Builds the core's observation for `policy` from the latest scrapes and the fleet's
    /// current replicas.
    pub fn observe(&mut self, policy: &Policy, fleet: &dyn Observed, now: f64) -> Observation {
        let slots = f64::from(fleet.slots());
        let views = fleet.replicas(now);
        let pods: Vec<Pod> = views
            .iter()
            .filter(|r| matches!(r.state, ReplicaState::Starting | ReplicaState::Ready))
            .map(|r| {
                let ready = r.state == ReplicaState::Ready;
                Pod {
                    name: r.id.to_string(),
                    phase: PodPhase::Running,
                    ready,
                    deleting: false,
                    started_at: Some(core_time(r.created)),
                    ready_changed_at: Some(core_time(if ready { r.ready_at } else { r.created })),
                    created_at: Some(core_time(r.created)),
                    requests: BTreeMap::from([("cpu".to_string(), 1000)]),
                    in_flight: Some(f64::from(r.outstanding)),
                }
            })
            .collect();
        let starting = views.iter().any(|r| r.state == ReplicaState::Starting);
        let mut obs = Observation {
            current_replicas: fleet.current_replicas(),
            pods,
            epoch_unix_ms: self.epoch_unix_ms,
            ..Default::default()
        };
        // The engine's percentiles keep their own window in the reader, fed the latest scrape.
        let engine_reading = match (&policy.engine, self.engines.as_mut()) {
            (Some(engine), Some(e)) if !self.scrapes.is_empty() => {
                e.reader.read(engine, &e.latest, starting, core_time(e.at))
            }
            _ => Default::default(),
        };
        let Some((first, last)) = self.window() else {
            engine_reading.add_to(&mut obs);
            return obs;
        };
        let at = core_time(last.at);
        let span = last.at - first.at;
        let in_window: Vec<&Scrape> = self.scrapes.iter().filter(|s| s.at >= first.at).collect();
        // Per-replica values: rates as Prometheus' rate() computes them, from each replica's
        // first sample in the window to its last (two samples needed); gauges as of the last scrape.
        let per_replica = |name: &str| -> Option<Vec<(u32, f64)>> {
            let rate_of = |f: &dyn Fn(&ReplicaScrape) -> f64| -> Vec<(u32, f64)> {
                last.replicas
                    .iter()
                    .filter_map(|(id, l)| {
                        let (t0, f0) = in_window
                            .iter()
                            .find_map(|s| s.replicas.get(id).map(|r| (s.at, r)))?;
                        (last.at > t0).then(|| (*id, (f(l) - f(f0)) / (last.at - t0)))
                    })
                    .collect()
            };
            Some(match name {
                "rps" => rate_of(&|r| r.arrivals as f64),
                "utilization" | "gpu" => rate_of(&|r| r.busy_time * 100.0 / slots),
                "cpu" => rate_of(&|r| r.busy_time / slots),
                "inflight" | "concurrency" => last
                    .replicas
                    .iter()
                    .map(|(id, r)| (*id, f64::from(r.outstanding)))
                    .collect(),
                "queue" => last
                    .replicas
                    .iter()
                    .map(|(id, r)| (*id, f64::from(r.queued)))
                    .collect(),
                _ => return None,
            })
        };
        for metric in &policy.metrics {
            let name = metric.name.rsplit('/').next().unwrap_or(&metric.name);
            let Some(values) = per_replica(name) else {
                continue;
            };
            let values = match metric.source {
                MetricSource::Object { .. } => MetricValues::Object {
                    value: values.iter().map(|v| v.1).sum(),
                    at,
                },
                MetricSource::External { .. } => MetricValues::External {
                    values: vec![values.iter().map(|v| v.1).sum()],
                    at,
                },
                _ => MetricValues::PerPod {
                    samples: values
                        .into_iter()
                        .map(|(id, value)| PodSample {
                            pod: id.to_string(),
                            value,
                            at,
                            window_ms: (span * 1000.0) as i64,
                        })
                        .collect(),
                },
            };
            obs.metrics.push(MetricObservation {
                name: metric.name.clone(),
                values,
            });
        }
        engine_reading.add_to(&mut obs);
        let prev = self
            .scrapes
            .len()
            .checked_sub(2)
            .and_then(|i| self.scrapes.get(i));
        let in_flight = match prev {
            Some(p) if last.at > p.at => {
                (last.totals.in_system_area - p.totals.in_system_area) / (last.at - p.at)
            }
            _ => 0.0,
        };
        obs.traffic = Some(TrafficSample {
            at,
            in_flight,
            arrivals_total: last.totals.arrivals_total as f64,
            completions_total: last.totals.completions_total as f64,
            service: Some(last.totals.service),
            answered: last.totals.answered,
        });
        obs.external_count = Some(ValueSample {
            value: last.totals.queued as f64,
            at,
        });
        let _ = now;
        obs
    }
}
