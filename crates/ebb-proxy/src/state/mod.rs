//! What the proxy, the supervisor and the control loop share about one service: its replicas
//! and the counters the decision core reads.

use crate::counters::{ProxyCounters, RetryBudget};
use crate::health::{Health, Outcome, ProbeChange};
use crate::settings::HealthSettings;
use ebb_core::Hold;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::Notify;

pub mod models;

/// One replica process as the proxy sees it.
#[derive(Debug)]
pub struct Replica {
    /// Stable id (the "pod name" the core ranks).
    pub id: u32,
    /// Where requests go: `127.0.0.1:port` for a local process, a pod's IP for the gateway.
    pub addr: std::net::SocketAddr,
    /// How `/metrics` and the status page name it: its id, or a pod's name.
    pub label: String,
    /// `addr` as the Host header of requests to it.
    pub host: hyper::header::HeaderValue,
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
    /// Ejections and probe results.
    pub health: Health,
    /// About to be removed by someone else (the controller, behind the gateway): it gets new
    /// requests only when no other replica can take them, so that it goes idle without
    /// starving the service if the removal takes another replica instead.
    pub spared: AtomicBool,
}

impl Replica {
    /// A replica whose process is about to start on `port`.
    pub fn new(id: u32, port: u16) -> Replica {
        Replica::at(
            id,
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            id.to_string(),
        )
    }

    /// A replica someone else runs, at `addr` (a pod the gateway routes to), named `label`.
    pub fn at(id: u32, addr: std::net::SocketAddr, label: String) -> Replica {
        Replica {
            id,
            addr,
            label,
            host: hyper::header::HeaderValue::try_from(addr.to_string())
                .unwrap_or_else(|_| hyper::header::HeaderValue::from_static("localhost")),
            pid: AtomicU32::new(0),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            restarts: AtomicU32::new(0),
            created: Instant::now(),
            ready_since: Mutex::new(None),
            retiring: AtomicBool::new(false),
            health: Health::default(),
            spared: AtomicBool::new(false),
        }
    }

    /// Its port (on loopback, for a local process).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Gets new requests: ready, not draining, not ejected.
    pub fn routable(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
            && !self.health.is_ejected()
    }

    /// Where it is in its life, as the status page shows it.
    pub fn state(&self) -> ReplicaState {
        if self.draining.load(Ordering::Acquire) {
            ReplicaState::Draining
        } else if self.health.is_ejected() {
            ReplicaState::Ejected
        } else if self.ready.load(Ordering::Acquire) {
            ReplicaState::Ready
        } else if self
            .ready_since
            .lock()
            .map(|r| r.is_some())
            .unwrap_or(false)
        {
            ReplicaState::Unhealthy
        } else {
            ReplicaState::Starting
        }
    }
}

/// A replica's state as the status page and the counts show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Its process is starting and has not passed readiness yet.
    Starting,
    /// Routable.
    Ready,
    /// Was ready, now failing its readiness probes (or restarting after a crash).
    Unhealthy,
    /// Ejected by outlier detection until its ejection time is over.
    Ejected,
    /// Finishing its requests before it stops.
    Draining,
}

impl ReplicaState {
    /// The word the status page uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Starting => "starting",
            ReplicaState::Ready => "ready",
            ReplicaState::Unhealthy => "unhealthy",
            ReplicaState::Ejected => "ejected",
            ReplicaState::Draining => "draining",
        }
    }
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

/// An operator's hold and the policy's last proposal (see [`ServiceState::set_hold`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    /// The hold the control loop gives the core.
    pub hold: Option<Hold>,
    /// What the policy asked for at the last decision.
    pub proposed: Option<u32>,
}

impl Control {
    fn json(&self) -> serde_json::Value {
        let paused = match self.hold {
            None => serde_json::Value::Null,
            Some(Hold::Current) => serde_json::json!("current"),
            Some(Hold::Replicas(n)) => serde_json::json!(n),
        };
        serde_json::json!({"paused": paused, "proposed": self.proposed})
    }
}

/// One metric of one service: its help and type, and its sample lines.
#[derive(Debug, Clone)]
pub struct Family {
    /// The metric's name.
    pub name: &'static str,
    /// `counter`, `gauge`, `summary` or `histogram`.
    pub kind: &'static str,
    /// What it counts.
    pub help: &'static str,
    /// Its sample lines, each ending in a newline.
    pub samples: String,
}

/// The Prometheus text page of several services' metrics: each metric's `# HELP` and `# TYPE`
/// once, then every service's samples of it together (the format allows a metric one group).
pub fn exposition(families: impl IntoIterator<Item = Family>) -> String {
    let mut merged: Vec<Family> = Vec::new();
    for f in families {
        match merged.iter_mut().find(|m| m.name == f.name) {
            Some(m) => m.samples.push_str(&f.samples),
            None => merged.push(f),
        }
    }
    let mut out = String::new();
    for f in merged {
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} {}\n{}",
            f.name, f.help, f.name, f.kind, f.samples
        ));
    }
    out
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
    /// Woken when a request leaves a replica while requests are held: one of them may take
    /// the slot it freed.
    pub slot_freed: Notify,
    /// The latency histogram as the view last saw it (the recent p99 is the difference).
    pub viewed_latency: Mutex<Histogram<u64>>,
    /// Latency of all answered requests (microseconds).
    pub total_latency: Mutex<Histogram<u64>>,
    /// From arrival to an answer body's first byte.
    pub first_byte: crate::histogram::Histogram,
    /// Gaps between an answer body's chunks.
    pub chunk_gaps: crate::histogram::Histogram,
    /// Recent decisions, newest last.
    pub decisions: Mutex<VecDeque<DecisionRecord>>,
    /// Scale events applied.
    pub scale_events: AtomicU64,
    /// Replicas' times on answered requests, for the SLO model's service time: count, sum
    /// (microseconds) and sum of squares (microsecond-milliseconds, so a year of one-second
    /// requests fits).
    pub service_times: [AtomicU64; 3],
    /// The same times by bucket, for readers that count the share within an SLO from a
    /// histogram (the controller reading a gateway).
    pub service_histogram: crate::histogram::Histogram,
    /// The SLO's latency (microseconds) and how many service times were within it, where the
    /// policy has an SLO: the SLO model's tail at the SLO, counted.
    pub service_within: Option<(u64, AtomicU64)>,
    /// The answers as their clients saw them: the SLO's attainment as reached.
    pub answers: crate::answers::Answers,
    /// Requests a replica serves at once, where the policy says (its SLO's slots): a request
    /// sent to a replica with all of them taken waits in the replica's own queue, and its
    /// time is not counted as a service time. 0: not known, every answer is counted. Atomic
    /// because the gateway follows its Autoscaler's `slo.slotsPerReplica` while it serves.
    slots_per_replica: AtomicU32,
    /// Supervisor events (crashes, restarts, readiness failures), newest last.
    pub events: Mutex<VecDeque<String>>,
    /// Sum of in-flight samples since the control loop last read it, and their count.
    pub in_flight_samples: Mutex<(f64, u32)>,
    /// The runtime's start.
    pub started: Instant,
    /// The runtime's start on the calendar (Unix milliseconds), where schedules read the
    /// core's time zero.
    pub started_unix_ms: i64,
    /// A multi-model service's models (`None` for a single-model service).
    pub models: Option<Arc<models::ModelTable>>,
    /// What the proxy refused, retried and ejected.
    pub counters: Arc<ProxyCounters>,
    /// Retries left to spend.
    pub retry_budget: RetryBudget,
    /// An operator's hold on the count (the control socket's `pause`), and what the policy
    /// asked for at the last decision.
    pub control: Mutex<Control>,
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
            slot_freed: Notify::new(),
            viewed_latency: Mutex::new(histogram()),
            total_latency: Mutex::new(histogram()),
            first_byte: Default::default(),
            chunk_gaps: Default::default(),
            service_histogram: Default::default(),
            decisions: Mutex::new(VecDeque::new()),
            scale_events: AtomicU64::new(0),
            service_times: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            service_within: None,
            answers: Default::default(),
            slots_per_replica: AtomicU32::new(0),
            events: Mutex::new(VecDeque::new()),
            in_flight_samples: Mutex::new((0.0, 0)),
            started,
            started_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
                .saturating_sub(started.elapsed().as_millis() as i64),
            models: None,
            counters: Arc::default(),
            retry_budget: RetryBudget::new(0.2),
            control: Mutex::new(Control::default()),
        }
    }

    /// Sets (or, with `None`, clears) the operator's hold.
    pub fn set_hold(&self, hold: Option<Hold>) {
        if let Ok(mut c) = self.control.lock() {
            c.hold = hold;
        }
        self.event(match hold {
            None => "resumed by an operator".to_string(),
            Some(Hold::Current) => "paused by an operator at the current count".to_string(),
            Some(Hold::Replicas(n)) => format!("paused by an operator at {n} replicas"),
        });
    }

    /// The operator's hold, if any.
    pub fn hold(&self) -> Option<Hold> {
        self.control.lock().ok().and_then(|c| c.hold)
    }

    /// Records what the policy asked for at a decision.
    pub fn note_proposal(&self, replicas: u32) {
        if let Ok(mut c) = self.control.lock() {
            c.proposed = Some(replicas);
        }
    }

    /// One line for `ebb ctl status`.
    pub fn control_line(&self) -> String {
        let (_, ready, _) = self.counts();
        let c = self.control.lock().map(|c| *c).unwrap_or_default();
        let proposed = c
            .proposed
            .map_or_else(String::new, |p| format!(" (the policy would set {p})"));
        match c.hold {
            None => format!("{}: scaling, {ready} ready", self.name),
            Some(Hold::Current) => {
                format!(
                    "{}: paused at the current count, {ready} ready{proposed}",
                    self.name
                )
            }
            Some(Hold::Replicas(n)) => {
                format!("{}: paused at {n}, {ready} ready{proposed}", self.name)
            }
        }
    }

    /// The same state with retries bounded to `share` of requests.
    pub fn with_retry_budget(mut self, share: f64) -> ServiceState {
        self.retry_budget = RetryBudget::new(share);
        self
    }

    /// The same state counting the service times, and the answers as their clients saw them,
    /// within `latency_seconds` (the SLO's).
    pub fn with_slo_latency(mut self, latency_seconds: f64) -> ServiceState {
        let micros = crate::answers::latency_micros(latency_seconds);
        self.service_within = Some((micros, AtomicU64::new(0)));
        self.answers = crate::answers::Answers::with_latency(latency_seconds);
        self
    }

    /// The same state with replicas of `slots` slots: answers to requests sent to a full
    /// replica are not timed as service.
    pub fn with_slots_per_replica(self, slots: u32) -> ServiceState {
        self.set_slots_per_replica(Some(slots));
        self
    }

    /// Replicas' slots from now on (`None`: not known, every answer counted), returning the
    /// slots before.
    pub fn set_slots_per_replica(&self, slots: Option<u32>) -> Option<u32> {
        let old = self
            .slots_per_replica
            .swap(slots.unwrap_or(0), Ordering::AcqRel);
        (old > 0).then_some(old)
    }

    /// Requests a replica serves at once, where known.
    pub fn slots_per_replica(&self) -> Option<u32> {
        let slots = self.slots_per_replica.load(Ordering::Acquire);
        (slots > 0).then_some(slots)
    }

    /// Whether a request sent to a replica that already had `in_flight` requests from Ebb
    /// found a slot free there, as far as its slots are known. By Ebb's own count: a replica
    /// takes requests in the order their connections reach it, so now and then one counted
    /// as free waits behind one sent just after it (read as one service time more); the ones
    /// sent to a full replica never count.
    pub fn slot_was_free(&self, in_flight: u64) -> bool {
        self.slots_per_replica()
            .is_none_or(|slots| in_flight < u64::from(slots))
    }

    /// The same state for a multi-model service hosting `models` (name, MiB a replica needs).
    pub fn with_models<'a>(
        mut self,
        models: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> ServiceState {
        self.models = Some(Arc::new(models::ModelTable::new(models)));
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

    /// The routable replica with the fewest requests in flight, other than those in `avoid`
    /// (the ones a request already failed on).
    pub fn pick(&self, avoid: &[u32]) -> Option<Arc<Replica>> {
        self.least_busy(|r| !avoid.contains(&r.id))
    }

    /// The routable replica with the fewest requests in flight among those `eligible` says;
    /// a replica about to be removed only when no other one can take the request.
    fn least_busy(&self, eligible: impl Fn(&Replica) -> bool) -> Option<Arc<Replica>> {
        let replicas = self.replicas.read().ok()?;
        replicas
            .iter()
            .filter(|r| r.routable() && eligible(r))
            .min_by_key(|r| {
                (
                    r.spared.load(Ordering::Relaxed),
                    r.in_flight.load(Ordering::Relaxed),
                    r.id,
                )
            })
            .cloned()
    }

    /// The replica a request held in the activator queue goes to: the least busy routable one
    /// with a free slot where the replicas' slots are known, so that a queue built up while
    /// no replica was ready is spread over the replicas as they turn ready (as Knative's
    /// activator hands requests only to pods with capacity), not all sent to the first ready
    /// one to wait in its own queue while the others idle. With the slots not known, the least
    /// busy routable one. The slot is not claimed here: two proxy threads may each hand the
    /// same free slot on, so a replica takes at most one request per thread beyond its slots.
    pub fn pick_with_room(&self) -> Option<Arc<Replica>> {
        match self.slots_per_replica() {
            Some(slots) => self.least_busy(|r| r.in_flight.load(Ordering::Relaxed) < slots),
            None => self.pick(&[]),
        }
    }

    /// Counts a readiness probe of `replica` and applies what it changed: failing probes take
    /// it out of rotation, a passing one puts it back (an ejected replica once its ejection is
    /// over), each counted. The caller says why in its own event.
    pub fn apply_probe(
        &self,
        replica: &Replica,
        passed: bool,
        now: Instant,
        s: &HealthSettings,
    ) -> ProbeChange {
        let change = replica.health.probe(passed, now, s);
        match change {
            ProbeChange::None => {}
            ProbeChange::FailedProbes(_) => {
                replica.ready.store(false, Ordering::Release);
                ProxyCounters::bump(&self.counters.probe_failures);
            }
            ProbeChange::Returned | ProbeChange::Recovered => {
                replica.ready.store(true, Ordering::Release);
                ProxyCounters::bump(&self.counters.returns);
                self.ready_changed.notify_waiters();
            }
        }
        change
    }

    /// Counts a forwarded request's outcome against its replica, and ejects the replica when
    /// its failures run on, unless that would leave fewer routable replicas than the
    /// configured share (and never the last one).
    pub fn report_outcome(&self, replica: &Replica, outcome: Outcome, s: &HealthSettings) {
        if !outcome.is_failure() {
            replica.health.record_success();
            return;
        }
        let now = Instant::now();
        if !replica.health.record_failure(s.consecutive_failures, now) {
            return;
        }
        let replicas = self.replicas();
        let serving: Vec<_> = replicas
            .iter()
            .filter(|r| r.ready.load(Ordering::Acquire) && !r.draining.load(Ordering::Acquire))
            .collect();
        let ejected = serving.iter().filter(|r| r.health.is_ejected()).count();
        let allowed = (serving.len() as f64 * s.max_ejected_share).floor() as usize;
        if ejected + 1 > allowed || ejected + 1 >= serving.len() {
            return;
        }
        let length = replica.health.eject(now, s);
        ProxyCounters::bump(&self.counters.ejections);
        self.event(format!(
            "replica {} ejected for {:.1}s after {} failed requests in a row ({})",
            replica.id,
            length.as_secs_f64(),
            s.consecutive_failures,
            match outcome {
                Outcome::ServerError => "5xx answers",
                _ => "no answer",
            }
        ));
    }

    /// Keeps an event stamped with the runtime's clock.
    pub fn event(&self, text: String) {
        let at = self.started.elapsed().as_secs_f64();
        self.push_event(format!("[{at:>6.1}s] {text}"));
    }

    /// Records an answered request's latency.
    pub fn record_latency(&self, micros: u64) {
        let v = micros.clamp(1, 3_600_000_000);
        if let Ok(mut h) = self.total_latency.lock() {
            let _ = h.record(v);
        }
    }

    /// The p99 latency (seconds) of the requests answered since the last call (0 if none):
    /// one histogram is recorded per request, and the recent one is its growth.
    pub fn recent_p99(&self) -> f64 {
        let Some(total) = self.total_latency.lock().ok().map(|h| h.clone()) else {
            return 0.0;
        };
        let Ok(mut seen) = self.viewed_latency.lock() else {
            return 0.0;
        };
        let mut recent = total.clone();
        let _ = recent.subtract(&*seen);
        *seen = total;
        if recent.is_empty() {
            0.0
        } else {
            recent.value_at_quantile(0.99) as f64 / 1e6
        }
    }

    /// Counts one replica's time on a request (sent to answered, Ebb's own queue excluded; the
    /// caller leaves out requests that found the replica's slots taken).
    pub fn record_service(&self, took: std::time::Duration) {
        let v = (took.as_micros() as u64).clamp(1, 3_600_000_000);
        self.service_times[0].fetch_add(1, Ordering::Relaxed);
        self.service_times[1].fetch_add(v, Ordering::Relaxed);
        self.service_times[2].fetch_add(v.saturating_mul(v) / 1000, Ordering::Relaxed);
        self.service_histogram.observe(took);
        if let Some((latency, within)) = &self.service_within {
            if v <= *latency {
                within.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The service-time totals as the core reads them.
    pub fn service_totals(&self) -> ebb_core::ServiceTotals {
        let [n, sum, squares] = &self.service_times;
        ebb_core::ServiceTotals {
            requests: n.load(Ordering::Relaxed) as f64,
            seconds: sum.load(Ordering::Relaxed) as f64 / 1e6,
            squared_seconds: squares.load(Ordering::Relaxed) as f64 / 1e9,
            within: self
                .service_within
                .as_ref()
                .map(|(latency, within)| ebb_core::WithinLatency {
                    latency_seconds: *latency as f64 / 1e6,
                    requests: within.load(Ordering::Relaxed) as f64,
                }),
        }
    }

    /// Counts a decision that changes the replica count and keeps it for the status page;
    /// `subject` names what it scales in a multi-model service ("iris: ...").
    pub fn note_scale(&self, d: &ebb_core::Decision, subject: Option<&str>) {
        self.scale_events.fetch_add(1, Ordering::Relaxed);
        self.push_decision(DecisionRecord {
            at: self.started.elapsed().as_secs_f64(),
            current: d.current_replicas,
            desired: d.desired_replicas,
            reasons: match subject {
                Some(s) => format!("{s}: {}", d.summary()),
                None => d.summary(),
            },
        });
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
    /// Ready counts only routable replicas; ejected and unhealthy ones are in none of the
    /// three (see [`unhealthy`](Self::unhealthy)).
    pub fn counts(&self) -> (u32, u32, u32) {
        let mut c = (0, 0, 0);
        for r in self.replicas() {
            match r.state() {
                ReplicaState::Draining => c.2 += 1,
                ReplicaState::Ready => c.1 += 1,
                ReplicaState::Starting => c.0 += 1,
                ReplicaState::Unhealthy | ReplicaState::Ejected => {}
            }
        }
        c
    }

    /// Replicas out of rotation for their health (ejected or failing probes).
    pub fn unhealthy(&self) -> u32 {
        self.replicas()
            .iter()
            .filter(|r| matches!(r.state(), ReplicaState::Ejected | ReplicaState::Unhealthy))
            .count() as u32
    }

    /// The status page's JSON.
    pub fn status_json(&self) -> serde_json::Value {
        let (starting, ready, draining) = self.counts();
        let replicas: Vec<serde_json::Value> = self
            .replicas()
            .iter()
            .map(|r| {
                let state = r.state().as_str();
                serde_json::json!({
                    "id": r.id,
                    "port": r.port(),
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
            "replicas": {"starting": starting, "ready": ready, "draining": draining, "unhealthy": self.unhealthy(), "list": replicas},
            "requests": self.arrivals.load(Ordering::Relaxed),
            "completed": self.completions.load(Ordering::Relaxed),
            "errors": self.errors.load(Ordering::Relaxed),
            "inFlight": self.in_flight.load(Ordering::Relaxed),
            "waiting": self.waiting.load(Ordering::Relaxed),
            "slotsPerReplica": self.slots_per_replica(),
            "proxy": self.counters.exposition().into_iter().map(|(name, _, _, v)| {
                (name.trim_start_matches("ebb_").to_string(), serde_json::json!(v))
            }).collect::<serde_json::Map<_, _>>(),
            "answers": self.answers.status_json(),
            "scaleEvents": self.scale_events.load(Ordering::Relaxed),
            "control": self.control.lock().map(|c| c.json()).unwrap_or_default(),
            "decisions": decisions,
            "models": self.models.as_ref().map(|m| m.status_json()),
            "events": self.events.lock().map(|q| q.iter().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        })
    }

    /// This service's metrics, one family a metric; [`exposition`] merges several services'
    /// into one page.
    pub fn metric_families(&self) -> Vec<Family> {
        let (starting, ready, draining) = self.counts();
        let n = &self.name;
        let mut out = Vec::new();
        let mut line =
            |name: &'static str, kind: &'static str, help: &'static str, value: String| {
                out.push(Family {
                    name,
                    kind,
                    help,
                    samples: format!("{name}{{service=\"{n}\"}} {value}\n"),
                });
            };
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        line(
            "ebb_requests_total",
            "counter",
            "Requests received by Ebb's proxy.",
            count(&self.arrivals),
        );
        line(
            "ebb_responses_total",
            "counter",
            "Requests answered (a streamed answer once its last byte has gone).",
            count(&self.completions),
        );
        line(
            "ebb_proxy_errors_total",
            "counter",
            "Requests Ebb answered with 503 or 502 itself.",
            count(&self.errors),
        );
        line(
            "ebb_in_flight",
            "gauge",
            "Requests inside the proxy (a streamed answer until its last byte).",
            count(&self.in_flight),
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
            count(&self.scale_events),
        );
        for (name, kind, help, value) in self.counters.exposition() {
            line(name, kind, help, value.to_string());
        }
        line(
            "ebb_waiting",
            "gauge",
            "Requests held while no replica is ready.",
            count(&self.waiting),
        );
        if let Some(slots) = self.slots_per_replica() {
            line(
                "ebb_slots_per_replica",
                "gauge",
                "Requests a replica serves at once, as the proxy counts them: answers to requests sent to a replica with all of them taken are not service times.",
                slots.to_string(),
            );
        }
        line(
            "ebb_answers_failed_total",
            "counter",
            "Answers that failed as their clients saw them (Ebb's own 5xx, a replica's 5xx, an answer cut off): misses of any SLO.",
            count(&self.answers.failed),
        );
        let service = self.service_totals();
        line(
            "ebb_service_squared_seconds_total",
            "counter",
            "Sum of the squares of the replicas' times on answered requests, seconds squared: their variance for the SLO model.",
            format!("{}", service.squared_seconds),
        );
        let labels = format!("service=\"{n}\"");
        out.push(Family {
            name: "ebb_service_seconds",
            kind: "histogram",
            help: "Replicas' time on answered requests, from sent to answered (Ebb's own queue excluded): the SLO model's service time, and by bucket its share within an SLO.",
            samples: self.service_histogram.exposition("ebb_service_seconds", "", &labels, false),
        });
        out.push(Family {
            name: "ebb_answered_seconds",
            kind: "histogram",
            help: "From a request's arrival to its answer's last byte, as its client saw it (Ebb's queue, cold starts and retries included), for answers that did not fail: by bucket, the SLO's attainment as reached.",
            samples: self.answers.good.exposition("ebb_answered_seconds", "", &labels, false),
        });
        out.push(Family {
            name: "ebb_abandoned_seconds",
            kind: "histogram",
            help: "How long a client waited before it went away without an answer: those beyond the SLO's latency missed it.",
            samples: self.answers.abandoned.exposition("ebb_abandoned_seconds", "", &labels, false),
        });
        out.push(Family {
            name: "ebb_time_to_first_byte_seconds",
            kind: "histogram",
            help: "From a request's arrival to the first byte of its answer's body (a token stream's first token).",
            samples: self.first_byte.exposition("ebb_time_to_first_byte_seconds", "", &labels, false),
        });
        out.push(Family {
            name: "ebb_inter_chunk_seconds",
            kind: "histogram",
            help: "Gaps between the chunks of an answer's body as they passed through (a token stream's inter-token latency).",
            samples: self.chunk_gaps.exposition("ebb_inter_chunk_seconds", "", &labels, false),
        });
        // Both per-replica families from one snapshot of the replicas, so that a reader (the
        // controller waiting for a drain) sees the same set in each.
        let replicas = self.replicas();
        let per_replica = |name: &'static str, help: &'static str, value: fn(&Replica) -> u64| {
            let samples = replicas
                .iter()
                .map(|r| {
                    format!(
                        "{name}{{service=\"{n}\",replica=\"{}\"}} {}\n",
                        r.label,
                        value(r)
                    )
                })
                .collect();
            Family {
                name,
                kind: "gauge",
                help,
                samples,
            }
        };
        out.push(per_replica(
            "ebb_replica_in_flight",
            "Requests forwarded to a replica and not yet answered.",
            |r| u64::from(r.in_flight.load(Ordering::Relaxed)),
        ));
        out.push(per_replica(
            "ebb_replica_routable",
            "1 while a replica takes new requests; 0 while it starts, drains, is ejected, fails its probes or is spared for a removal.",
            |r| u64::from(r.routable() && !r.spared.load(Ordering::Relaxed)),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(id: u32, in_flight: u32) -> Arc<Replica> {
        let r = Arc::new(Replica::new(id, 9000 + id as u16));
        r.ready.store(true, Ordering::Release);
        r.in_flight.store(in_flight, Ordering::Release);
        r
    }

    #[test]
    fn service_times_within_the_slo_are_counted_where_the_policy_has_one() {
        let plain = ServiceState::new("s", Instant::now());
        plain.record_service(std::time::Duration::from_millis(100));
        assert_eq!(plain.service_totals().within, None);
        let s = ServiceState::new("s", Instant::now()).with_slo_latency(0.5);
        for ms in [100, 500, 501, 2000] {
            s.record_service(std::time::Duration::from_millis(ms));
        }
        let totals = s.service_totals();
        assert_eq!(totals.requests, 4.0);
        assert_eq!(
            totals.within,
            Some(ebb_core::WithinLatency {
                latency_seconds: 0.5,
                requests: 2.0
            })
        );
        // The controller reads them from a gateway's /metrics, the share within an SLO from
        // the buckets.
        let text = exposition(s.metric_families());
        assert!(
            text.contains("# TYPE ebb_service_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("ebb_service_seconds_bucket{service=\"s\",le=\"0.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("ebb_service_seconds_count{service=\"s\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("ebb_service_seconds_sum{service=\"s\"} 3.101\n"),
            "{text}"
        );
    }

    #[test]
    fn a_spared_replica_is_picked_only_when_no_other_can_take_the_request() {
        let s = ServiceState::new("s", Instant::now());
        let (a, b) = (ready(1, 0), ready(2, 5));
        a.spared.store(true, Ordering::Release);
        if let Ok(mut list) = s.replicas.write() {
            list.extend([a.clone(), b.clone()]);
        }
        assert_eq!(s.pick(&[]).map(|r| r.id), Some(2), "busier, but not spared");
        assert_eq!(s.pick(&[2]).map(|r| r.id), Some(1), "the only one left");
        b.draining.store(true, Ordering::Release);
        assert_eq!(s.pick(&[]).map(|r| r.id), Some(1));
        let text = exposition(s.metric_families());
        assert!(
            text.contains("ebb_replica_routable{service=\"s\",replica=\"1\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn several_services_share_one_help_and_type_per_metric() {
        let (a, b) = (
            ServiceState::new("a", Instant::now()),
            ServiceState::new("b", Instant::now()),
        );
        let text = exposition(a.metric_families().into_iter().chain(b.metric_families()));
        assert_eq!(text.matches("# TYPE ebb_requests_total counter").count(), 1);
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("ebb_requests_total{"))
            .collect();
        assert_eq!(
            samples,
            [
                "ebb_requests_total{service=\"a\"} 0",
                "ebb_requests_total{service=\"b\"} 0"
            ]
        );
    }
}
