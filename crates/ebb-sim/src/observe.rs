//! What an autoscaler sees, and when: counters scraped every `scrape_interval`, rates over a
//! Prometheus-style `rate_window` of those scrapes, values as of the last scrape. This is how
//! "HPA through a Prometheus adapter" sees a signal that lags reality, while Ebb's proxy
//! counters are scraped every second.
//!
//! Metric names a policy can use (per pod for `Pods`/`Resource`, summed for `Object`/`External`):
//! `rps` (request rate), `inflight` or `concurrency` (requests held), `utilization`, `gpu` or
//! `cpu` (busy share of the slots: percent, or cores for `cpu`), `queue` (requests waiting).

use crate::cluster::{Cluster, ReplicaState};
use ebb_core::policy::MetricSource;
use ebb_core::{
    MetricObservation, MetricValues, Observation, Pod, PodPhase, PodSample, Policy, Sample,
    ServiceTotals, Time, TrafficSample,
};
use std::collections::{BTreeMap, VecDeque};

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
    arrivals_total: u64,
    completions_total: u64,
    service: ServiceTotals,
    in_system_area: f64,
    queued: u64,
    replicas: BTreeMap<u32, ReplicaScrape>,
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
}

impl Pipeline {
    /// A pipeline with the given scrape interval and rate window.
    pub fn new(scrape_interval: f64, rate_window: f64) -> Pipeline {
        Pipeline {
            scrape_interval,
            rate_window,
            epoch_unix_ms: 0,
            scrapes: VecDeque::new(),
        }
    }

    /// The same pipeline, telling the policy that time zero lies at `epoch_unix_ms` on the
    /// calendar (schedules read it).
    pub fn with_epoch(mut self, epoch_unix_ms: i64) -> Pipeline {
        self.epoch_unix_ms = epoch_unix_ms;
        self
    }

    /// Takes one scrape of the cluster.
    pub fn scrape(&mut self, cluster: &Cluster, now: f64) {
        let replicas = cluster
            .active()
            .filter(|r| r.state != ReplicaState::Starting)
            .map(|r| {
                (
                    r.id,
                    ReplicaScrape {
                        arrivals: r.arrivals,
                        busy_time: r.busy_time(now),
                        outstanding: r.outstanding(),
                        queued: r.queued(),
                    },
                )
            })
            .collect();
        self.scrapes.push_back(Scrape {
            at: now,
            arrivals_total: cluster.arrivals_total,
            completions_total: cluster.completions_total,
            service: cluster.service,
            in_system_area: cluster.in_system_area(now),
            queued: cluster.queued(),
            replicas,
        });
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

    /// Builds the core's observation for `policy` from the latest scrapes and the cluster's
    /// current replicas.
    pub fn observe(&self, policy: &Policy, cluster: &Cluster, now: f64) -> Observation {
        let slots = f64::from(cluster.config().slots);
        let pods: Vec<Pod> = cluster
            .active()
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
                    requests: BTreeMap::from([("cpu".to_string(), 1000)]),
                    in_flight: Some(f64::from(r.outstanding())),
                }
            })
            .collect();
        let mut obs = Observation {
            current_replicas: cluster.current_replicas(),
            pods,
            epoch_unix_ms: self.epoch_unix_ms,
            ..Default::default()
        };
        let Some((first, last)) = self.window() else {
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
        let prev = self
            .scrapes
            .len()
            .checked_sub(2)
            .and_then(|i| self.scrapes.get(i));
        let in_flight = match prev {
            Some(p) if last.at > p.at => {
                (last.in_system_area - p.in_system_area) / (last.at - p.at)
            }
            _ => 0.0,
        };
        obs.traffic = Some(TrafficSample {
            at,
            in_flight,
            arrivals_total: last.arrivals_total as f64,
            completions_total: last.completions_total as f64,
            service: Some(last.service),
        });
        obs.external_count = Some(Sample {
            value: last.queued as f64,
            at,
        });
        let _ = now;
        obs
    }
}
