//! The token-level fleet: replicas that are each the engine model of `ebb demo-llm`
//! ([`crate::engine`]) run in simulated time, behind a gateway that routes each request to the
//! ready replica holding the fewest, and holds requests while no replica is ready.

use super::metrics::EngineMetrics;
use super::tally::Tally;
use super::LlmConfig;
use crate::cluster::{removal_order, ReplicaState};
use crate::engine::{Engine, Stage, Step};
use crate::observe::{Observed, ReplicaView, Totals};
use ebb_core::engine::Sample;
use rand::Rng;
use std::collections::{HashMap, VecDeque};

/// One request of a token-level workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlmRequest {
    /// Seconds since the start.
    pub at: f64,
    /// Prompt tokens.
    pub prompt: u32,
    /// Output tokens.
    pub output: u32,
}

/// A request whose prefill ended on a prefill replica, to be handed to the decode pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Handoff {
    /// The request, with its arrival at the gateway.
    pub request: LlmRequest,
    /// When its prefill ended.
    pub at: f64,
}

/// One replica: an engine, the step it is running and its counters.
struct Replica {
    id: u32,
    created: f64,
    ready_at: f64,
    state: ReplicaState,
    engine: Engine,
    /// The step under way and when it ends.
    step: Option<(f64, Step)>,
    arrivals: u64,
    /// Requests submitted and not finished.
    outstanding: u32,
    /// Seconds of steps run (the engine had work), for the duty cycle.
    busy_time: f64,
    metrics: EngineMetrics,
}

/// A request in the fleet: where it is and what it has received.
#[derive(Debug, Clone, Copy)]
struct Live {
    request: LlmRequest,
    arrived: f64,
    /// When it reached this fleet (a decode pool's requests arrive after their prefill).
    entered: f64,
    scheduled: bool,
    first_token: Option<f64>,
    last_token: f64,
    tokens: u32,
}

/// The replicas, the gateway's queue and the bookkeeping of a run.
pub struct Fleet {
    cfg: LlmConfig,
    stage: Stage,
    handoffs: Vec<Handoff>,
    replicas: Vec<Replica>,
    /// Indices of replicas not gone.
    active: Vec<usize>,
    /// Requests held at the gateway while no replica is ready: (id, request, when it came).
    held: VecDeque<(u64, LlmRequest, f64)>,
    live: HashMap<u64, Live>,
    next_id: u64,
    arrivals_total: u64,
    completions_total: u64,
    in_system_area: f64,
    last_change: f64,
    replica_area: f64,
    replica_last: f64,
    scale_events: u64,
    /// What happened to the requests.
    pub tally: Tally,
}

impl Fleet {
    /// A fleet with `initial` replicas ready at time zero.
    pub fn new(cfg: LlmConfig, initial: u32) -> Fleet {
        Fleet::pool(cfg, initial, Stage::Whole)
    }

    /// One pool of a disaggregated server: `stage` says which side.
    pub fn pool(cfg: LlmConfig, initial: u32, stage: Stage) -> Fleet {
        let tally = Tally::new(cfg.ttft_slo, cfg.itl_slo);
        let mut f = Fleet {
            cfg,
            stage,
            handoffs: Vec::new(),
            replicas: Vec::new(),
            active: Vec::new(),
            held: VecDeque::new(),
            live: HashMap::new(),
            next_id: 0,
            arrivals_total: 0,
            completions_total: 0,
            in_system_area: 0.0,
            last_change: 0.0,
            replica_area: 0.0,
            replica_last: 0.0,
            scale_events: 0,
            tally,
        };
        for _ in 0..initial {
            f.add_replica(0.0, 0.0);
        }
        f
    }

    fn in_system(&self) -> u64 {
        self.arrivals_total - self.completions_total
    }

    fn mark_in_system(&mut self, now: f64) {
        self.in_system_area += self.in_system() as f64 * (now - self.last_change);
        self.last_change = now;
    }

    fn mark_replicas(&mut self, now: f64) {
        self.replica_area += self.active.len() as f64 * (now - self.replica_last);
        self.replica_last = now;
    }

    fn add_replica(&mut self, now: f64, ready_at: f64) {
        self.mark_replicas(now);
        let id = self.replicas.len() as u32;
        self.replicas.push(Replica {
            id,
            created: now,
            ready_at,
            state: if ready_at <= now {
                ReplicaState::Ready
            } else {
                ReplicaState::Starting
            },
            engine: Engine::new(self.cfg.engine),
            step: None,
            arrivals: 0,
            outstanding: 0,
            busy_time: 0.0,
            metrics: EngineMetrics::default(),
        });
        self.active.push(id as usize);
    }

    fn remove(&mut self, idx: usize, now: f64) {
        self.mark_replicas(now);
        self.replicas[idx].state = ReplicaState::Gone;
        self.active.retain(|&i| i != idx);
    }

    /// Replica-seconds of existing replicas up to `now`.
    pub fn replica_seconds(&self, now: f64) -> f64 {
        self.replica_area + self.active.len() as f64 * (now - self.replica_last)
    }

    /// Replicas that exist (and cost), draining ones included.
    pub fn existing_replicas(&self) -> u32 {
        self.active.len() as u32
    }

    /// How many times the replica count was changed.
    pub fn scale_events(&self) -> u64 {
        self.scale_events
    }

    /// The time of the next event inside the fleet: a step's end or a replica becoming ready.
    pub fn next_event_at(&self) -> f64 {
        self.active
            .iter()
            .map(|&i| {
                let r = &self.replicas[i];
                match (&r.step, r.state) {
                    (Some((end, _)), _) => *end,
                    (None, ReplicaState::Starting) => r.ready_at,
                    _ => f64::INFINITY,
                }
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// Runs the fleet's own events up to and including `until`, in time order.
    pub fn advance(&mut self, until: f64) {
        loop {
            let next = self.next_event_at();
            if next > until || next.is_infinite() {
                break;
            }
            self.run_events_at(next);
        }
    }

    /// Every event due at `now`: steps that end (their tokens go out, the next step starts)
    /// and replicas that become ready (held requests go to them).
    fn run_events_at(&mut self, now: f64) {
        let due: Vec<usize> = self.active.clone();
        for idx in due {
            let r = &mut self.replicas[idx];
            if r.state == ReplicaState::Starting && r.ready_at <= now {
                r.state = ReplicaState::Ready;
                self.release_held(now);
            }
            if self.replicas[idx]
                .step
                .as_ref()
                .is_some_and(|(end, _)| *end <= now)
            {
                self.end_step(idx, now);
            }
        }
    }

    /// Delivers a finished step's tokens, then starts the next step if there is work.
    fn end_step(&mut self, idx: usize, now: f64) {
        let Some((_, step)) = self.replicas[idx].step.take() else {
            return;
        };
        let counted = &mut self.replicas[idx].metrics;
        counted.prompt_tokens += u64::from(step.prefill_tokens);
        counted.generation_tokens += step.tokens.len() as u64;
        for &(id, _) in &step.tokens {
            let Some(l) = self.live.get_mut(&id) else {
                continue;
            };
            let m = &mut self.replicas[idx].metrics;
            match l.first_token {
                None => {
                    l.first_token = Some(now);
                    // What the engine itself reports: from the request's arrival at it.
                    let since = match self.stage {
                        Stage::Decode => l.entered,
                        Stage::Whole | Stage::Prefill => l.arrived,
                    };
                    m.ttft.observe(now - since);
                }
                Some(_) => {
                    m.itl.observe(now - l.last_token);
                    self.tally.gap(now - l.last_token);
                }
            }
            l.last_token = now;
            l.tokens += 1;
        }
        for id in &step.finished {
            if let Some(l) = self.live.remove(id) {
                self.mark_in_system(now);
                self.completions_total += 1;
                self.replicas[idx].outstanding -= 1;
                if self.stage == Stage::Prefill {
                    self.handoffs.push(Handoff {
                        request: l.request,
                        at: now,
                    });
                    continue;
                }
                let first = l.first_token.unwrap_or(now);
                self.tally
                    .served(l.arrived, first - l.arrived, l.tokens, now - first);
            }
        }
        self.start_step(idx, now);
        let r = &self.replicas[idx];
        if r.state == ReplicaState::Draining && r.outstanding == 0 {
            self.remove(idx, now);
        }
    }

    fn start_step(&mut self, idx: usize, now: f64) {
        let r = &mut self.replicas[idx];
        if r.step.is_some() {
            return;
        }
        let Some(step) = r.engine.step() else {
            return;
        };
        r.busy_time += step.seconds;
        // A request's queue time ends when it is first scheduled.
        for id in &step.admitted {
            if let Some(l) = self.live.get_mut(id).filter(|l| !l.scheduled) {
                l.scheduled = true;
                r.metrics.queue.observe(now - l.entered);
            }
        }
        r.step = Some((now + step.seconds, step));
    }

    /// A request arrives at the gateway at `req.at`.
    pub fn arrive(&mut self, req: LlmRequest) {
        self.arrive_at(req, req.at);
    }

    /// A request that reached the gateway at `req.at` arrives at this fleet at `now` (a
    /// decode pool's, once its KV cache is handed over).
    pub fn arrive_at(&mut self, req: LlmRequest, now: f64) {
        self.mark_in_system(now);
        self.arrivals_total += 1;
        let id = self.next_id;
        self.next_id += 1;
        match self.route() {
            Some(idx) => self.submit(idx, id, req, now),
            None => self.held.push_back((id, req, now)),
        }
    }

    /// The ready replica holding the fewest requests (the first of equals).
    fn route(&self) -> Option<usize> {
        self.active
            .iter()
            .copied()
            .filter(|&i| self.replicas[i].state == ReplicaState::Ready)
            .min_by_key(|&i| self.replicas[i].outstanding)
    }

    fn submit(&mut self, idx: usize, id: u64, req: LlmRequest, now: f64) {
        let r = &mut self.replicas[idx];
        r.arrivals += 1;
        if self
            .stage
            .submit(&mut r.engine, id, req.prompt, req.output)
            .is_err()
        {
            // The engine can never run it (empty, or longer than its KV cache): refused at once.
            self.fail(now);
            return;
        }
        r.outstanding += 1;
        self.live.insert(
            id,
            Live {
                request: req,
                arrived: req.at,
                entered: now,
                scheduled: false,
                first_token: None,
                last_token: now,
                tokens: 0,
            },
        );
        self.start_step(idx, now);
    }

    /// A request leaves with nothing at `now`.
    fn fail(&mut self, now: f64) {
        self.mark_in_system(now);
        self.completions_total += 1;
        self.tally.failed(now);
    }

    /// Sends the held requests to ready replicas, oldest first.
    fn release_held(&mut self, now: f64) {
        while let Some(idx) = self.route() {
            let Some((id, req, _)) = self.held.pop_front() else {
                break;
            };
            self.submit(idx, id, req, now);
        }
    }

    /// Fails the held requests that have waited longer than the hold timeout.
    pub fn expire_held(&mut self, now: f64) {
        while self
            .held
            .front()
            .is_some_and(|(_, _, came)| now - came > self.cfg.hold_timeout)
        {
            self.held.pop_front();
            self.fail(now);
        }
    }

    /// Scales to `desired` replicas at `now`: new replicas start after a cold start (drawn, or
    /// `cold_start` when given: the oracle's instant capacity); on
    /// scale-in `victims` (replica ids, best first) go first, then starting replicas, then the
    /// ones holding the fewest requests. A ready replica taken out drains: it gets no new
    /// requests and goes when its last one finishes. Returns the count after the change.
    pub fn scale_to<R: Rng>(
        &mut self,
        desired: u32,
        victims: &[u32],
        now: f64,
        cold_start: Option<f64>,
        rng: &mut R,
    ) -> u32 {
        let current = Observed::current_replicas(self);
        if desired > current {
            for _ in current..desired {
                let delay = cold_start
                    .unwrap_or_else(|| self.cfg.cold_start.sample(rng))
                    .max(0.0);
                self.add_replica(now, now + delay);
            }
            self.release_held(now);
            self.scale_events += 1;
        } else if desired < current {
            let order = removal_order(victims, &self.active, |i| {
                let r = &self.replicas[i];
                (r.state != ReplicaState::Starting, r.outstanding)
            });
            let mut remove = current - desired;
            for idx in order {
                if remove == 0 {
                    break;
                }
                match self.replicas[idx].state {
                    ReplicaState::Starting => self.remove(idx, now),
                    ReplicaState::Ready if self.replicas[idx].outstanding == 0 => {
                        self.remove(idx, now)
                    }
                    ReplicaState::Ready => self.replicas[idx].state = ReplicaState::Draining,
                    _ => continue,
                }
                remove -= 1;
            }
            self.scale_events += 1;
        }
        Observed::current_replicas(self)
    }

    /// At the end of a run: requests still held fail; the replicas finish what they hold.
    pub fn finish(&mut self, now: f64) {
        while self.held.pop_front().is_some() {
            self.fail(now);
        }
        self.advance(f64::INFINITY);
    }

    /// The requests whose prefill ended since the last call (a prefill pool's).
    pub fn take_handoffs(&mut self) -> Vec<Handoff> {
        std::mem::take(&mut self.handoffs)
    }

    /// The integral of requests in the system over time, up to `now`.
    pub fn in_system_area(&self, now: f64) -> f64 {
        self.in_system_area + self.in_system() as f64 * (now - self.last_change)
    }
}

impl Observed for Fleet {
    fn replicas(&self, now: f64) -> Vec<ReplicaView> {
        self.active
            .iter()
            .map(|&i| {
                let r = &self.replicas[i];
                // A step under way counts as busy only up to now.
                let ahead = r.step.as_ref().map_or(0.0, |(end, _)| (end - now).max(0.0));
                ReplicaView {
                    id: r.id,
                    state: r.state,
                    created: r.created,
                    ready_at: r.ready_at,
                    arrivals: r.arrivals,
                    busy_time: r.busy_time - ahead,
                    outstanding: r.outstanding,
                    queued: r.engine.waiting() as u32,
                }
            })
            .collect()
    }

    fn totals(&self, now: f64) -> Totals {
        Totals {
            arrivals_total: self.arrivals_total,
            completions_total: self.completions_total,
            service: ebb_core::ServiceTotals::default(),
            // The token SLO is judged per token (TTFT, ITL), not per answer.
            answered: None,
            in_system_area: self.in_system_area(now),
            queued: self.held.len() as u64
                + self
                    .active
                    .iter()
                    .map(|&i| self.replicas[i].engine.waiting() as u64)
                    .sum::<u64>(),
        }
    }

    fn current_replicas(&self) -> u32 {
        self.active
            .iter()
            .filter(|&&i| {
                matches!(
                    self.replicas[i].state,
                    ReplicaState::Starting | ReplicaState::Ready
                )
            })
            .count() as u32
    }

    fn slots(&self) -> u32 {
        1
    }

    fn engine_samples(&self, _now: f64) -> Vec<(String, Vec<Sample>)> {
        self.active
            .iter()
            .map(|&i| &self.replicas[i])
            .filter(|r| r.state == ReplicaState::Ready)
            .map(|r| {
                let e = &r.engine;
                (
                    r.id.to_string(),
                    r.metrics.samples(e.running(), e.waiting(), e.kv_usage()),
                )
            })
            .collect()
    }
}
