//! What the proxy, the supervisor and the control loop share about one service: its replicas
//! and the counters the decision core reads.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::Notify;

/// One replica process as the proxy sees it.
#[derive(Debug)]
pub struct Replica {
    /// Stable id (the "pod name" the core ranks).
    pub id: u32,
    /// Its port on loopback.
    pub port: u16,
    /// Process id of the current process (0 while none).
    pub pid: AtomicU32,
    /// Serving: receives traffic.
    pub ready: AtomicBool,
    /// Leaving: receives no new traffic.
    pub draining: AtomicBool,
    /// Requests forwarded and not yet answered.
    pub in_flight: AtomicU32,
    /// Requests forwarded.
    pub requests: AtomicU64,
    /// Restarts after a crash.
    pub restarts: AtomicU32,
    /// When it was created.
    pub created: Instant,
    /// When it last became ready.
    pub ready_since: Mutex<Option<Instant>>,
    /// A multi-model server the placement is emptying: it gets no new copies and stops once
    /// its last copy is unloaded.
    pub retiring: AtomicBool,
}

/// A decision, kept for the status page and the view.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// Seconds since the runtime started.
    pub at: f64,
    /// Replicas before.
    pub current: u32,
    /// Replicas wanted.
    pub desired: u32,
    /// The reasons.
    pub reasons: String,
}

/// Everything about one service.
pub struct ServiceState {
    /// Service name.
    pub name: String,
    /// Replicas not yet gone (starting, ready, draining).
    pub replicas: RwLock<Vec<Arc<Replica>>>,
    /// Requests received.
    pub arrivals: AtomicU64,
    /// Requests answered (any status).
    pub completions: AtomicU64,
    /// Requests answered 5xx by Ebb itself (no replica, queue full, upstream failure).
    pub errors: AtomicU64,
    /// Requests inside the proxy now (waiting or forwarded).
    pub in_flight: AtomicU64,
    /// Requests waiting for a first ready replica.
    pub waiting: AtomicU64,
    /// Woken when a replica becomes ready.
    pub ready_changed: Notify,
    /// Latency of answered requests since the last view tick (microseconds).
    pub recent_latency: Mutex<Histogram<u64>>,
    /// Latency of all answered requests (microseconds).
    pub total_latency: Mutex<Histogram<u64>>,
    /// Recent decisions, newest last.
    pub decisions: Mutex<VecDeque<DecisionRecord>>,
    /// Scale events applied.
    pub scale_events: AtomicU64,
    /// Replicas' times on answered requests, for the SLO model's service time: count, sum
    /// (microseconds) and sum of squares (microsecond-milliseconds, so a year of one-second
    /// requests fits).
    pub service_times: [AtomicU64; 3],
    /// Supervisor events (crashes, restarts, readiness failures), newest last.
    pub events: Mutex<VecDeque<String>>,
    /// Sum of in-flight samples since the control loop last read it, and their count.
    pub in_flight_samples: Mutex<(f64, u32)>,
    /// The runtime's start.
    pub started: Instant,
    /// A multi-model service's models (`None` for a single-model service).
    pub models: Option<Arc<crate::models::ModelTable>>,
}

/// The mean of the in-flight samples taken since the last call (and resets them), or
/// `now` when none was taken: the concurrency signal's input for one sync period.
pub fn take_mean_in_flight(samples: &Mutex<(f64, u32)>, now: f64) -> f64 {
    let (sum, n) = samples
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    if n > 0 {
        sum / f64::from(n)
    } else {
        now
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

impl ServiceState {
    /// A service with no replicas.
    pub fn new(name: &str, started: Instant) -> ServiceState {
        ServiceState {
            name: name.to_string(),
            replicas: RwLock::new(Vec::new()),
            arrivals: AtomicU64::new(0),
            completions: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            ready_changed: Notify::new(),
            recent_latency: Mutex::new(histogram()),
            total_latency: Mutex::new(histogram()),
            decisions: Mutex::new(VecDeque::new()),
            scale_events: AtomicU64::new(0),
            service_times: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            events: Mutex::new(VecDeque::new()),
            in_flight_samples: Mutex::new((0.0, 0)),
            started,
            models: None,
        }
    }

    /// The same state for a multi-model service hosting `models`.
    pub fn with_models(mut self, models: &[crate::config::ModelConfig]) -> ServiceState {
        self.models = Some(Arc::new(crate::models::ModelTable::new(models)));
        self
    }

    /// `i` as the decision core's time: milliseconds since the runtime started.
    pub fn core_time(&self, i: Instant) -> ebb_core::Time {
        ebb_core::Time::from_millis(i.saturating_duration_since(self.started).as_millis() as i64)
    }

    /// Now, as the decision core's time.
    pub fn core_now(&self) -> ebb_core::Time {
        self.core_time(Instant::now())
    }

    /// A snapshot of the replicas.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        self.replicas.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// The ready, non-draining replica with the fewest requests in flight.
    pub fn pick(&self) -> Option<Arc<Replica>> {
        let replicas = self.replicas.read().ok()?;
        replicas
            .iter()
            .filter(|r| r.ready.load(Ordering::Acquire) && !r.draining.load(Ordering::Acquire))
            .min_by_key(|r| (r.in_flight.load(Ordering::Relaxed), r.id))
            .cloned()
    }

    /// Records an answered request's latency.
    pub fn record_latency(&self, micros: u64) {
        let v = micros.clamp(1, 3_600_000_000);
        if let Ok(mut h) = self.recent_latency.lock() {
            let _ = h.record(v);
        }
        if let Ok(mut h) = self.total_latency.lock() {
            let _ = h.record(v);
        }
    }

    /// Counts one replica's time on a request (sent to answered, Ebb's own queue excluded).
    pub fn record_service(&self, took: std::time::Duration) {
        let v = (took.as_micros() as u64).clamp(1, 3_600_000_000);
        self.service_times[0].fetch_add(1, Ordering::Relaxed);
        self.service_times[1].fetch_add(v, Ordering::Relaxed);
        self.service_times[2].fetch_add(v.saturating_mul(v) / 1000, Ordering::Relaxed);
    }

    /// The service-time totals as the core reads them.
    pub fn service_totals(&self) -> ebb_core::ServiceTotals {
        let [n, sum, squares] = &self.service_times;
        ebb_core::ServiceTotals {
            requests: n.load(Ordering::Relaxed) as f64,
            seconds: sum.load(Ordering::Relaxed) as f64 / 1e6,
            squared_seconds: squares.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// Keeps a decision for the status page.
    pub fn push_decision(&self, d: DecisionRecord) {
        if let Ok(mut q) = self.decisions.lock() {
            q.push_back(d);
            while q.len() > 20 {
                q.pop_front();
            }
        }
    }

    /// Keeps a supervisor event for the status page and the view.
    pub fn push_event(&self, e: String) {
        if let Ok(mut q) = self.events.lock() {
            q.push_back(e);
            while q.len() > 20 {
                q.pop_front();
            }
        }
    }

    /// Counts: (starting, ready, draining).
    pub fn counts(&self) -> (u32, u32, u32) {
        let mut c = (0, 0, 0);
        for r in self.replicas() {
            if r.draining.load(Ordering::Acquire) {
                c.2 += 1;
            } else if r.ready.load(Ordering::Acquire) {
                c.1 += 1;
            } else {
                c.0 += 1;
            }
        }
        c
    }

    /// The status page's JSON.
    pub fn status_json(&self) -> serde_json::Value {
        let (starting, ready, draining) = self.counts();
        let replicas: Vec<serde_json::Value> = self
            .replicas()
            .iter()
            .map(|r| {
                let state = if r.draining.load(Ordering::Acquire) {
                    "draining"
                } else if r.ready.load(Ordering::Acquire) {
                    "ready"
                } else {
                    "starting"
                };
                serde_json::json!({
                    "id": r.id,
                    "port": r.port,
                    "pid": r.pid.load(Ordering::Relaxed),
                    "state": state,
                    "inFlight": r.in_flight.load(Ordering::Relaxed),
                    "requests": r.requests.load(Ordering::Relaxed),
                    "restarts": r.restarts.load(Ordering::Relaxed),
                })
            })
            .collect();
        let decisions: Vec<DecisionRecord> = self
            .decisions
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default();
        serde_json::json!({
            "service": self.name,
            "replicas": {"starting": starting, "ready": ready, "draining": draining, "list": replicas},
            "requests": self.arrivals.load(Ordering::Relaxed),
            "completed": self.completions.load(Ordering::Relaxed),
            "errors": self.errors.load(Ordering::Relaxed),
            "inFlight": self.in_flight.load(Ordering::Relaxed),
            "scaleEvents": self.scale_events.load(Ordering::Relaxed),
            "decisions": decisions,
            "models": self.models.as_ref().map(|m| m.status_json()),
            "events": self.events.lock().map(|q| q.iter().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        })
    }

    /// Prometheus text exposition of the service's counters.
    pub fn metrics_text(&self) -> String {
        let (starting, ready, draining) = self.counts();
        let n = &self.name;
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{service=\"{n}\"}} {value}\n"
            ));
        };
        line(
            "ebb_requests_total",
            "counter",
            "Requests received by Ebb's proxy.",
            self.arrivals.load(Ordering::Relaxed).to_string(),
        );
        line(
            "ebb_responses_total",
            "counter",
            "Requests answered.",
            self.completions.load(Ordering::Relaxed).to_string(),
        );
        line(
            "ebb_proxy_errors_total",
            "counter",
            "Requests Ebb answered with 503 or 502 itself.",
            self.errors.load(Ordering::Relaxed).to_string(),
        );
        line(
            "ebb_in_flight",
            "gauge",
            "Requests inside the proxy.",
            self.in_flight.load(Ordering::Relaxed).to_string(),
        );
        line(
            "ebb_replicas_ready",
            "gauge",
            "Replicas serving.",
            ready.to_string(),
        );
        line(
            "ebb_replicas_starting",
            "gauge",
            "Replicas not yet ready.",
            starting.to_string(),
        );
        line(
            "ebb_replicas_draining",
            "gauge",
            "Replicas finishing their requests before they stop.",
            draining.to_string(),
        );
        line(
            "ebb_scale_events_total",
            "counter",
            "Changes of the replica count.",
            self.scale_events.load(Ordering::Relaxed).to_string(),
        );
        out.push_str("# HELP ebb_replica_in_flight Requests forwarded to a replica and not yet answered.\n# TYPE ebb_replica_in_flight gauge\n");
        for r in self.replicas() {
            out.push_str(&format!(
                "ebb_replica_in_flight{{service=\"{n}\",replica=\"{}\"}} {}\n",
                r.id,
                r.in_flight.load(Ordering::Relaxed)
            ));
        }
        out
    }
}
