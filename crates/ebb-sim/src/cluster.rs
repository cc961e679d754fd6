//! The simulated cluster: replicas with a cold start, concurrency slots and a bounded queue;
//! a router that sends each request to the ready replica with the fewest outstanding requests;
//! an activator queue while no replica is ready; draining on scale-in; an optional cap on the
//! cluster's replicas. Time is `f64` seconds since the start of the run.

use ebb_core::Policy;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// How long a new replica takes to become ready (scheduling plus model load).
#[derive(Debug, Clone, PartialEq)]
pub enum ColdStart {
    /// Always this many seconds.
    Fixed(f64),
    /// Lognormal with this median (seconds) and sigma.
    LogNormal {
        /// Median seconds.
        median: f64,
        /// Sigma of ln(seconds).
        sigma: f64,
    },
    /// Drawn uniformly from measured values (seconds), e.g. Alibaba's model-load latencies.
    Empirical(Vec<f64>),
}

impl ColdStart {
    /// Draws one cold start.
    pub fn sample<R: Rng>(&self, rng: &mut R) -> f64 {
        match self {
            ColdStart::Fixed(s) => *s,
            ColdStart::LogNormal { median, sigma } => {
                LogNormal::new(median.ln(), *sigma).map_or(*median, |d| d.sample(rng))
            }
            ColdStart::Empirical(v) if !v.is_empty() => v[rng.gen_range(0..v.len())],
            ColdStart::Empirical(_) => 0.0,
        }
    }

    /// The median cold start, for reports.
    pub fn median(&self) -> f64 {
        match self {
            ColdStart::Fixed(s) => *s,
            ColdStart::LogNormal { median, .. } => *median,
            ColdStart::Empirical(v) => {
                let mut s = v.clone();
                s.sort_by(f64::total_cmp);
                s.get(s.len() / 2).copied().unwrap_or(0.0)
            }
        }
    }
}

/// The cluster's fixed characteristics.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Requests one replica serves at once.
    pub slots: u32,
    /// Requests one replica may hold waiting beyond its slots.
    pub queue_per_replica: u32,
    /// Requests the activator holds while no replica is ready.
    pub activator_queue: u32,
    /// A request that waits longer than this fails with a timeout.
    pub timeout: f64,
    /// Cold start of a new replica.
    pub cold_start: ColdStart,
    /// The most replicas the cluster can run (GPU nodes run out); `None` = unbounded.
    pub max_replicas: Option<u32>,
    /// How the policies start: with the replicas the first minute needs, ready, or at zero.
    pub start: Start,
}

/// How the policies of a run start (the request-level and the token-level simulators alike).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Start {
    /// With the replicas the first minute needs, ready: each policy is judged on following
    /// the traffic, not on finding it.
    #[default]
    Warm,
    /// As a service after a silence, nothing learnt (`ebb simulate --start-at-zero`): none
    /// where the policy may scale to zero, its minimum otherwise.
    AtZero,
}

impl Start {
    /// The replicas `policy` starts with: `warm` (the first minute's need) for a warm start.
    pub fn replicas(self, policy: &Policy, warm: u32) -> u32 {
        match self {
            Start::Warm => warm,
            Start::AtZero if policy.min_replicas == 0 && policy.scale_to_zero.is_some() => 0,
            Start::AtZero => policy.min_replicas.max(1),
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            slots: 4,
            queue_per_replica: 64,
            activator_queue: 10_000,
            timeout: 10.0,
            cold_start: ColdStart::LogNormal {
                median: 20.0,
                sigma: 0.4,
            },
            max_replicas: None,
            start: Start::Warm,
        }
    }
}

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Scheduled, loading the model.
    Starting,
    /// Serving.
    Ready,
    /// Finishing its requests before it goes; receives no new ones.
    Draining,
    /// Gone.
    Gone,
}

#[derive(Debug, Clone, Copy)]
struct Req {
    arrival: f64,
    service: f64,
}

/// One replica.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Stable id.
    pub id: u32,
    /// When it was created.
    pub created: f64,
    /// When it became (or becomes) ready.
    pub ready_at: f64,
    /// Its state.
    pub state: ReplicaState,
    /// Slots in use.
    pub busy: u32,
    queue: VecDeque<Req>,
    /// Requests routed to it so far.
    pub arrivals: u64,
    /// Slot-seconds of work done so far (for utilization and duty cycle).
    busy_time: f64,
    busy_since: f64,
}

impl Replica {
    /// Requests held: in service plus queued.
    pub fn outstanding(&self) -> u32 {
        self.busy + self.queue.len() as u32
    }

    /// Requests queued.
    pub fn queued(&self) -> u32 {
        self.queue.len() as u32
    }

    /// Slot-seconds of work done up to `now`.
    pub fn busy_time(&self, now: f64) -> f64 {
        self.busy_time + f64::from(self.busy) * (now - self.busy_since)
    }

    fn touch(&mut self, now: f64) {
        self.busy_time += f64::from(self.busy) * (now - self.busy_since);
        self.busy_since = now;
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Event {
    at: f64,
    replica: u32,
    kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum EventKind {
    /// A request finished; `timed` is its service time where Ebb's proxy would count one:
    /// where it found a free slot when sent to the replica (one that waited in the replica's
    /// own queue is not counted, since the proxy's clock would include the wait).
    Completion {
        timed: Option<f64>,
        /// When the request arrived: its client's latency ends with the completion.
        arrived: f64,
    },
    Ready,
}

impl Eq for Event {}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        // Min-heap on time; ties broken deterministically.
        other
            .at
            .total_cmp(&self.at)
            .then_with(|| other.replica.cmp(&self.replica))
    }
}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Where a dispatched request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dispatch {
    /// It holds a slot now.
    Started,
    /// It waits in the replica's queue.
    Queued,
    /// Every replica's queue is full.
    Full,
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Served with this latency (seconds, queueing plus service).
    Served(f64),
    /// Waited past the timeout; the seconds it spent in the system.
    TimedOut(f64),
    /// Rejected: every queue was full.
    Dropped,
}

/// The order in which replicas go on scale-in: the decision's `victims` (replica ids, which
/// are indices) that are still active, best first, then the other `active` ones by `rank`,
/// lowest first.
pub(crate) fn removal_order<K: Ord>(
    victims: &[u32],
    active: &[usize],
    rank: impl Fn(usize) -> K,
) -> Vec<usize> {
    let mut order: Vec<usize> = victims
        .iter()
        .map(|&id| id as usize)
        .filter(|i| active.contains(i))
        .collect();
    let mut rest: Vec<usize> = active
        .iter()
        .copied()
        .filter(|i| !order.contains(i))
        .collect();
    rest.sort_by_key(|&i| rank(i));
    order.extend(rest);
    order
}

/// The cluster state machine. The simulation loop feeds it arrivals and advances it to event
/// times; autoscalers read it through its accessors and change it through [`Cluster::scale_to`].
pub struct Cluster {
    config: ClusterConfig,
    replicas: Vec<Replica>,
    /// Indices of replicas not gone.
    active: Vec<usize>,
    /// Indices of ready replicas that take traffic.
    routable: Vec<usize>,
    events: BinaryHeap<Event>,
    pending: VecDeque<Req>,
    /// Requests that have arrived.
    pub arrivals_total: u64,
    /// Requests that have left (served or failed).
    pub completions_total: u64,
    /// The service times Ebb's proxy counts: those of the requests that found a free slot
    /// when sent to a replica, counted as each answer completes (until 2026-12-05, eighth
    /// session, every request's bare service time, counted when it started: a proxy cannot
    /// see the service time of a request that waited in a replica's own queue).
    pub service: ebb_core::ServiceTotals,
    /// The requests that ended and those answered within the SLO's latency, as a proxy in
    /// front of the replicas counts them (where `count_within` set a latency).
    pub answered: Option<ebb_core::AnsweredWithin>,
    in_system: u64,
    in_system_area: f64,
    last_change: f64,
    replica_area: f64,
    replica_last: f64,
    scale_events: u64,
    /// Each cold start is drawn from its own stream, keyed by this seed, the second it begins
    /// in and its place among that second's starts: common random numbers, so two runs (two
    /// policies, or one policy before and after a change) that start a replica in the same
    /// second draw the same cold start, whatever they started before. Drawn in order from one
    /// generator, one start more or fewer early in a run shifted every later draw, and moved
    /// whole runs by hundredths of a point.
    cold_seed: u64,
    /// The second of the last start and how many began in it.
    starts_in_second: (i64, u64),
}

impl Cluster {
    /// A cluster with `initial` replicas ready at time zero.
    /// A cluster of `initial` ready replicas whose cold starts are drawn from streams keyed by
    /// `cold_start_seed` (see [`Cluster::draw_cold_start`]): runs with the same seed meet the
    /// same cold starts in the same seconds, whatever each started before.
    pub fn new(config: ClusterConfig, initial: u32, cold_start_seed: u64) -> Cluster {
        let mut c = Cluster {
            config,
            replicas: Vec::new(),
            active: Vec::new(),
            routable: Vec::new(),
            events: BinaryHeap::new(),
            pending: VecDeque::new(),
            arrivals_total: 0,
            completions_total: 0,
            service: ebb_core::ServiceTotals::default(),
            answered: None,
            in_system: 0,
            in_system_area: 0.0,
            last_change: 0.0,
            replica_area: 0.0,
            replica_last: 0.0,
            scale_events: 0,
            cold_seed: cold_start_seed,
            starts_in_second: (i64::MIN, 0),
        };
        for _ in 0..initial {
            let idx = c.add_replica(0.0, 0.0);
            c.make_ready(idx, 0.0);
        }
        c
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Replicas that are not gone (starting, ready, draining).
    pub fn active(&self) -> impl Iterator<Item = &Replica> {
        self.active.iter().map(|&i| &self.replicas[i])
    }

    /// Replicas counted by the target's `/scale` (starting and ready; not draining).
    pub fn current_replicas(&self) -> u32 {
        self.active()
            .filter(|r| matches!(r.state, ReplicaState::Starting | ReplicaState::Ready))
            .count() as u32
    }

    /// Ready replicas taking traffic.
    pub fn ready_replicas(&self) -> u32 {
        self.routable.len() as u32
    }

    /// Replicas that exist (and cost), draining ones included.
    pub fn existing_replicas(&self) -> u32 {
        self.active.len() as u32
    }

    /// Requests in the system (queued, in service, or waiting in the activator).
    pub fn in_system(&self) -> u64 {
        self.in_system
    }

    /// Requests waiting in queues and the activator.
    pub fn queued(&self) -> u64 {
        self.pending.len() as u64 + self.active().map(|r| u64::from(r.queued())).sum::<u64>()
    }

    /// The integral of requests in the system over time, up to `now`.
    pub fn in_system_area(&self, now: f64) -> f64 {
        self.in_system_area + self.in_system as f64 * (now - self.last_change)
    }

    /// Replica-seconds of existing replicas up to `now`.
    pub fn replica_seconds(&self, now: f64) -> f64 {
        self.replica_area + self.active.len() as f64 * (now - self.replica_last)
    }

    /// When the number of requests in the system last changed.
    pub fn last_change(&self) -> f64 {
        self.last_change
    }

    /// How many times the replica count was changed.
    pub fn scale_events(&self) -> u64 {
        self.scale_events
    }

    /// The time of the next internal event, if any.
    pub fn next_event_at(&self) -> Option<f64> {
        self.events.peek().map(|e| e.at)
    }

    /// Counts, from now on, the service times within `latency_seconds` (the SLO's), and the
    /// requests answered within it as their clients saw them, as Ebb's proxy does for a
    /// policy with an SLO.
    pub fn count_within(&mut self, latency_seconds: f64) {
        self.service.within = Some(ebb_core::WithinLatency {
            latency_seconds,
            requests: 0.0,
        });
        self.answered = Some(ebb_core::AnsweredWithin {
            latency_seconds,
            ..Default::default()
        });
    }

    /// Counts a request that ended: answered after `latency` seconds, or failed (`None`).
    fn count_answer(&mut self, latency: Option<f64>) {
        if let Some(a) = self.answered.as_mut() {
            a.requests += 1.0;
            if latency.is_some_and(|l| l <= a.latency_seconds) {
                a.within += 1.0;
            }
        }
    }

    fn count_service(&mut self, service: f64) {
        if let Some(w) = self.service.within.as_mut() {
            if service <= w.latency_seconds {
                w.requests += 1.0;
            }
        }
        self.service.requests += 1.0;
        self.service.seconds += service;
        self.service.squared_seconds += service * service;
    }

    fn mark_in_system(&mut self, now: f64, delta: i64) {
        self.in_system_area += self.in_system as f64 * (now - self.last_change);
        self.last_change = now;
        self.in_system = (self.in_system as i64 + delta) as u64;
    }

    fn mark_replicas(&mut self, now: f64) {
        self.replica_area += self.active.len() as f64 * (now - self.replica_last);
        self.replica_last = now;
    }

    fn add_replica(&mut self, now: f64, ready_at: f64) -> usize {
        self.mark_replicas(now);
        let idx = self.replicas.len();
        self.replicas.push(Replica {
            id: idx as u32,
            created: now,
            ready_at,
            state: ReplicaState::Starting,
            busy: 0,
            queue: VecDeque::new(),
            arrivals: 0,
            busy_time: 0.0,
            busy_since: now,
        });
        self.active.push(idx);
        idx
    }

    fn make_ready(&mut self, idx: usize, now: f64) {
        let r = &mut self.replicas[idx];
        r.state = ReplicaState::Ready;
        r.ready_at = now;
        self.routable.push(idx);
    }

    fn remove(&mut self, idx: usize, now: f64) {
        self.mark_replicas(now);
        self.replicas[idx].state = ReplicaState::Gone;
        self.active.retain(|&i| i != idx);
        self.routable.retain(|&i| i != idx);
    }

    /// Routes one arrival. Its outcome is reported through `outcomes` when it is known: at
    /// once when it starts or is dropped, later (from [`Cluster::advance`]) when it waits.
    pub fn arrive(&mut self, at: f64, service: f64, outcomes: &mut impl FnMut(f64, Outcome)) {
        self.arrivals_total += 1;
        self.mark_in_system(at, 1);
        let req = Req {
            arrival: at,
            service,
        };
        // The oldest held requests that timed out fail now. The others stay held: the events
        // up to `at` were processed first, and each Ready and completion passed held requests
        // on until every replica was full, so none fits yet. A new request waits behind them,
        // as at an activator.
        self.drain_pending(at, outcomes);
        if self.routable.is_empty() || !self.pending.is_empty() {
            if self.pending.len() < self.config.activator_queue as usize {
                self.pending.push_back(req);
            } else {
                self.fail(at, Outcome::Dropped, outcomes);
            }
            return;
        }
        match self.dispatch(req, at) {
            Dispatch::Started => outcomes(at, Outcome::Served(service)),
            Dispatch::Queued => {}
            Dispatch::Full => self.fail(at, Outcome::Dropped, outcomes),
        }
    }

    fn fail(&mut self, now: f64, outcome: Outcome, outcomes: &mut impl FnMut(f64, Outcome)) {
        self.count_answer(None);
        self.completions_total += 1;
        self.mark_in_system(now, -1);
        outcomes(now, outcome);
    }

    /// Sends a request to the least-loaded routable replica.
    fn dispatch(&mut self, req: Req, now: f64) -> Dispatch {
        let limit = self.config.slots + self.config.queue_per_replica;
        let mut best: Option<(u32, usize)> = None;
        for &i in &self.routable {
            let o = self.replicas[i].outstanding();
            if o < limit && best.is_none_or(|(b, _)| o < b) {
                best = Some((o, i));
                if o == 0 {
                    break;
                }
            }
        }
        let Some((_, idx)) = best else {
            return Dispatch::Full;
        };
        let slots = self.config.slots;
        let r = &mut self.replicas[idx];
        r.arrivals += 1;
        if r.busy < slots {
            r.touch(now);
            r.busy += 1;
            self.events.push(Event {
                at: now + req.service,
                replica: idx as u32,
                kind: EventKind::Completion {
                    timed: Some(req.service),
                    arrived: req.arrival,
                },
            });
            Dispatch::Started
        } else {
            r.queue.push_back(req);
            Dispatch::Queued
        }
    }

    /// Processes internal events up to and including `until`.
    pub fn advance(&mut self, until: f64, outcomes: &mut impl FnMut(f64, Outcome)) {
        while let Some(e) = self.events.peek().copied() {
            if e.at > until {
                break;
            }
            self.events.pop();
            let idx = e.replica as usize;
            match e.kind {
                EventKind::Ready => {
                    if self.replicas[idx].state == ReplicaState::Starting {
                        self.make_ready(idx, e.at);
                        self.drain_pending(e.at, outcomes);
                    }
                }
                EventKind::Completion { timed, arrived } => {
                    self.count_answer(Some(e.at - arrived));
                    self.complete(idx, e.at, timed, outcomes);
                }
            }
        }
    }

    fn complete(
        &mut self,
        idx: usize,
        now: f64,
        timed: Option<f64>,
        outcomes: &mut impl FnMut(f64, Outcome),
    ) {
        // The request that finished: its latency was fixed when it started.
        let timeout = self.config.timeout;
        if let Some(service) = timed {
            self.count_service(service);
        }
        {
            let r = &mut self.replicas[idx];
            r.touch(now);
            r.busy -= 1;
        }
        self.completions_total += 1;
        self.mark_in_system(now, -1);
        // Start the next queued request that has not timed out.
        loop {
            let r = &mut self.replicas[idx];
            let Some(next) = r.queue.pop_front() else {
                break;
            };
            if now - next.arrival > timeout {
                self.fail(now, Outcome::TimedOut(now - next.arrival), outcomes);
                continue;
            }
            r.busy += 1;
            self.events.push(Event {
                at: now + next.service,
                replica: idx as u32,
                kind: EventKind::Completion {
                    timed: None,
                    arrived: next.arrival,
                },
            });
            outcomes(now, Outcome::Served(now - next.arrival + next.service));
            break;
        }
        let r = &self.replicas[idx];
        if r.state == ReplicaState::Draining && r.outstanding() == 0 {
            self.remove(idx, now);
        }
        // A freed slot takes the next held request: held requests that did not fit when a
        // replica became ready are not left to wait for the next one.
        self.drain_pending(now, outcomes);
    }

    /// Sends held requests to routable replicas, oldest first, until every replica is full.
    fn drain_pending(&mut self, now: f64, outcomes: &mut impl FnMut(f64, Outcome)) {
        if self.routable.is_empty() {
            return;
        }
        while let Some(req) = self.pending.pop_front() {
            if now - req.arrival > self.config.timeout {
                self.fail(now, Outcome::TimedOut(now - req.arrival), outcomes);
                continue;
            }
            match self.dispatch(req, now) {
                Dispatch::Started => {
                    outcomes(now, Outcome::Served(now - req.arrival + req.service))
                }
                Dispatch::Queued => {}
                Dispatch::Full => {
                    self.pending.push_front(req);
                    break;
                }
            }
        }
    }

    /// A cold start for a replica started at `now`, from a stream keyed by the cluster's seed,
    /// the second it begins in and its place among that second's starts (common random
    /// numbers): one start more early in a run does not redraw every later one, and every
    /// policy run with the same seed meets the same luck.
    fn draw_cold_start(&mut self, now: f64) -> f64 {
        let seed = self.cold_seed;
        let second = now.floor() as i64;
        let (last, count) = self.starts_in_second;
        let place = if last == second { count } else { 0 };
        self.starts_in_second = (second, place + 1);
        let key = seed
            ^ (second as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ place.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        let mut stream = rand_pcg::Pcg64Mcg::seed_from_u64(key);
        self.config.cold_start.sample(&mut stream)
    }

    /// Scales to `desired` replicas at `now`: new replicas start (within the cluster cap);
    /// on scale-in `victims` (replica ids, best first) go first, then starting replicas, then
    /// the least busy. Returns the replica count after the change.
    pub fn scale_to(
        &mut self,
        desired: u32,
        victims: &[u32],
        now: f64,
        cold_start: Option<f64>,
    ) -> u32 {
        let current = self.current_replicas();
        if desired > current {
            let cap = self
                .config
                .max_replicas
                .map_or(u32::MAX, |m| m.saturating_sub(self.existing_replicas()));
            let add = (desired - current).min(cap);
            for _ in 0..add {
                let delay = cold_start
                    .unwrap_or_else(|| self.draw_cold_start(now))
                    .max(0.0);
                let idx = self.add_replica(now, now + delay);
                // Even an instant start goes through a Ready event, so that requests waiting
                // in the activator are dispatched when it fires.
                self.events.push(Event {
                    at: now + delay,
                    replica: idx as u32,
                    kind: EventKind::Ready,
                });
            }
            if add > 0 {
                self.scale_events += 1;
            }
        } else if desired < current {
            let mut remove = current - desired;
            let order = removal_order(victims, &self.active, |i| {
                let r = &self.replicas[i];
                (
                    r.state != ReplicaState::Starting,
                    r.outstanding(),
                    u32::MAX - r.id,
                )
            });
            for idx in order {
                if remove == 0 {
                    break;
                }
                match self.replicas[idx].state {
                    ReplicaState::Starting => self.remove(idx, now),
                    ReplicaState::Ready => {
                        self.replicas[idx].state = ReplicaState::Draining;
                        self.routable.retain(|&i| i != idx);
                        if self.replicas[idx].outstanding() == 0 {
                            self.remove(idx, now);
                        }
                    }
                    _ => continue,
                }
                remove -= 1;
            }
            self.scale_events += 1;
        }
        self.current_replicas()
    }

    /// At the end of a run: everything still waiting fails with a timeout.
    pub fn finish(&mut self, now: f64, outcomes: &mut impl FnMut(f64, Outcome)) {
        while let Some(req) = self.pending.pop_front() {
            self.fail(now, Outcome::TimedOut(now - req.arrival), outcomes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two runs that start a replica in the same second, as the same start of that second,
    /// draw the same cold start, whatever either started before; another second or another
    /// place in it draws another.
    #[test]
    fn keyed_cold_starts_do_not_depend_on_the_starts_before() {
        let config = || ClusterConfig {
            cold_start: ColdStart::LogNormal {
                median: 20.0,
                sigma: 0.4,
            },
            ..ClusterConfig::default()
        };
        let (mut quiet, mut busy) = (Cluster::new(config(), 0, 7), Cluster::new(config(), 0, 7));
        for at in [3.0, 5.5, 5.9, 9.0] {
            busy.draw_cold_start(at);
        }
        let draws = |c: &mut Cluster| [10.2, 10.7, 12.0].map(|at| c.draw_cold_start(at));
        let (a, b) = (draws(&mut quiet), draws(&mut busy));
        assert_eq!(a, b);
        assert!(a[0] != a[1] && a[0] != a[2], "{a:?}");
        assert_ne!(draws(&mut Cluster::new(config(), 0, 8)), a);
    }

    /// 200 requests held while the fleet is at zero; one replica of 4 slots and a 64-request
    /// queue becomes ready after 5 s. It takes 68 at once; the other 132 follow as slots
    /// free (100 ms each: 5 s for all 200), none waits for a second replica or times out, and
    /// a request that comes while some are still held waits behind them.
    #[test]
    fn requests_held_at_zero_follow_as_slots_free_oldest_first() {
        let config = ClusterConfig {
            timeout: 10.0,
            ..ClusterConfig::default()
        };
        let mut cluster = Cluster::new(config, 0, 1);
        let mut outcomes: Vec<(f64, Outcome)> = Vec::new();
        let mut record = |at: f64, o: Outcome| outcomes.push((at, o));
        for i in 0..200 {
            cluster.arrive(f64::from(i) * 0.001, 0.1, &mut record);
        }
        cluster.scale_to(1, &[], 0.2, Some(4.8));
        cluster.advance(5.5, &mut record);
        cluster.arrive(5.5, 0.1, &mut record);
        cluster.advance(60.0, &mut record);
        cluster.finish(60.0, &mut record);
        let served: Vec<f64> = outcomes
            .iter()
            .filter_map(|(_, o)| match o {
                Outcome::Served(latency) => Some(*latency),
                _ => None,
            })
            .collect();
        assert_eq!(served.len(), 201, "{outcomes:?}");
        // The last held request started by about 5 s + 200 / 4 x 100 ms; the late arrival
        // after it (it waited behind the held ones still queued at 5.5 s).
        let worst = served.iter().copied().fold(0.0, f64::max);
        assert!(worst < 10.1, "{worst}");
        let late = served[200];
        assert!(
            late > 4.0,
            "the late arrival waited behind the held ones: {late}"
        );
    }

    /// The answers are counted as their clients see them, when each ends: served within
    /// the SLO's latency (waiting included), or not, or failed. They agree with the outcomes
    /// the run's attainment is read from. One replica of one slot and a 2-request queue, 0.2 s
    /// requests, a 500 ms SLO: of four at once, one is dropped at once (the queue is full),
    /// two are answered within the SLO (at 0.2 and 0.4 s) and the third is not (0.6 s).
    #[test]
    fn answers_are_counted_as_clients_see_them() {
        let config = ClusterConfig {
            slots: 1,
            queue_per_replica: 2,
            ..ClusterConfig::default()
        };
        let mut cluster = Cluster::new(config, 1, 1);
        cluster.count_within(0.5);
        let mut outcomes: Vec<Outcome> = Vec::new();
        let mut record = |_: f64, o: Outcome| outcomes.push(o);
        for _ in 0..4 {
            cluster.arrive(0.0, 0.2, &mut record);
        }
        let after_arrivals = cluster.answered.unwrap();
        // Three held (one in service, two queued), one dropped: counted at once.
        assert_eq!((after_arrivals.requests, after_arrivals.within), (1.0, 0.0));
        cluster.advance(0.45, &mut record);
        // Answered at 0.2 and 0.4 s.
        let midway = cluster.answered.unwrap();
        assert_eq!((midway.requests, midway.within), (3.0, 2.0));
        cluster.advance(10.0, &mut record);
        let done = cluster.answered.unwrap();
        assert_eq!((done.requests, done.within), (4.0, 2.0));
        let within = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Served(l) if *l <= 0.5))
            .count();
        assert_eq!((outcomes.len(), within), (4, 2), "{outcomes:?}");
    }

    /// Ebb's proxy clocks a replica's answer from the moment it sent the request, so it
    /// counts only the requests that found a free slot (one that waited in the replica's own
    /// queue would read its wait as service), and each once answered: of three 1 s requests
    /// at once on one slot, the first, counted at 1 s. Time held at the activator, before any
    /// replica was ready, is not the replica's.
    #[test]
    fn service_totals_count_what_a_proxy_counts() {
        let config = ClusterConfig {
            slots: 1,
            ..ClusterConfig::default()
        };
        let mut cluster = Cluster::new(config.clone(), 1, 1);
        let mut ignore = |_: f64, _: Outcome| {};
        for _ in 0..3 {
            cluster.arrive(0.0, 1.0, &mut ignore);
        }
        assert_eq!(cluster.service.requests, 0.0);
        let mut counted = Vec::new();
        for at in [1.0, 2.0, 3.0] {
            cluster.advance(at, &mut ignore);
            counted.push((cluster.service.requests, cluster.service.seconds));
        }
        assert_eq!(counted, [(1.0, 1.0); 3]);

        let mut cold = Cluster::new(config, 0, 1);
        cold.arrive(0.0, 1.0, &mut ignore);
        cold.scale_to(1, &[], 0.0, Some(5.0));
        cold.advance(10.0, &mut ignore);
        assert_eq!((cold.service.requests, cold.service.seconds), (1.0, 1.0));
    }
}
