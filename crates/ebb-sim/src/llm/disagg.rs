//! Disaggregated serving, token by token: a prefill pool computes each prompt (its engines run
//! prefill only, emitting the first token internally), hands the KV cache over to the decode
//! pool after a transfer time proportional to the prompt, and a decode replica generates every
//! token the client sees (vLLM's and SGLang's P/D split, NVIDIA Dynamo, llm-d). The client's
//! TTFT is the prefill, the transfer and the decode replica's first step; the gaps between
//! tokens are the decode pool's alone, so a long prompt no longer stretches other requests'
//! gaps.
//!
//! Each pool is a [`Fleet`] of the same engine model; the gateway routes to the prefill
//! replica holding the fewest requests, and the handover to the decode replica holding the
//! fewest. Policies see each pool through its own observation pipeline: Ebb's
//! [`ebb_core::pools::PoolScaler`] decides both at once with its ratio guard; the baselines
//! run one autoscaler per pool, as two HPAs or two KPA revisions would.

use super::fleet::Fleet;
use super::run::{run_served, Control, LlmResult, Served};
use super::tally::Tally;
use super::{LlmConfig, LlmRequest};
use crate::autoscaler::{Autoscaler, Command};
use crate::engine::Stage;

use crate::observe::{core_time, Observed, Pipeline};
use crate::run::name_seed;
use ebb_core::pools::{Pair, Pool, PoolObservations, PoolScaler, PoolsPolicy};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Seconds to hand one prompt token's KV cache from a prefill to a decode replica: an 8B
/// model's 128 KiB per token (32 layers, 8 KV heads of 128, keys and values in 16 bits) over
/// 25 GB/s (a 200 Gb/s RDMA link).
pub const KV_TRANSFER_SECONDS_PER_TOKEN: f64 = 5.0e-6;

/// A handover under way: the request reaches the decode pool at `at`.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    at: f64,
    request: LlmRequest,
}

impl PartialEq for Transfer {
    fn eq(&self, other: &Self) -> bool {
        self.at.total_cmp(&other.at) == Ordering::Equal
    }
}
impl Eq for Transfer {}
impl PartialOrd for Transfer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Transfer {
    /// Earliest first out of a max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.total_cmp(&self.at)
    }
}

/// The two pools and the handovers between them.
pub struct Disagg {
    /// The prefill and decode pools.
    pub fleets: Pair<Fleet>,
    transfers: BinaryHeap<Transfer>,
    per_token: f64,
    merged: bool,
    /// Each pool's replica-seconds when the run ended.
    cost: Pair<f64>,
}

impl Disagg {
    /// Pools of `initial` replicas each, ready at time zero; handovers take `per_token`
    /// seconds a prompt token.
    pub fn new(cfg: &LlmConfig, initial: Pair<u32>, per_token: f64) -> Disagg {
        Disagg {
            fleets: Pair {
                prefill: Fleet::pool(cfg.clone(), initial.prefill, Stage::Prefill),
                decode: Fleet::pool(cfg.clone(), initial.decode, Stage::Decode),
            },
            transfers: BinaryHeap::new(),
            per_token: per_token.max(0.0),
            merged: false,
            cost: Pair::default(),
        }
    }

    /// Both pools' values of `f`, summed.
    fn both<T: std::ops::Add<Output = T>>(&self, f: impl Fn(&Fleet) -> T) -> T {
        f(&self.fleets.prefill) + f(&self.fleets.decode)
    }
}

impl Served for Disagg {
    fn advance(&mut self, until: f64) {
        let Pair { prefill, decode } = &mut self.fleets;
        prefill.advance(until);
        for h in prefill.take_handoffs() {
            self.transfers.push(Transfer {
                at: h.at + f64::from(h.request.prompt) * self.per_token,
                request: h.request,
            });
        }
        while self.transfers.peek().is_some_and(|t| t.at <= until) {
            let Some(t) = self.transfers.pop() else {
                break;
            };
            decode.advance(t.at);
            decode.arrive_at(t.request, t.at);
        }
        decode.advance(until);
    }
    fn arrive(&mut self, req: LlmRequest) {
        self.fleets.prefill.arrive(req);
    }
    fn expire_held(&mut self, now: f64) {
        for pool in Pool::BOTH {
            self.fleets.get_mut(pool).expire_held(now);
        }
    }
    fn existing_replicas(&self) -> u32 {
        self.both(Fleet::existing_replicas)
    }
    fn replica_seconds(&self, now: f64) -> f64 {
        self.both(|f| f.replica_seconds(now))
    }
    fn finish(&mut self, now: f64) {
        self.cost = Pair {
            prefill: self.fleets.prefill.replica_seconds(now),
            decode: self.fleets.decode.replica_seconds(now),
        };
        self.fleets.prefill.finish(now);
        // What the prefill pool finished goes on to decode, however late.
        self.advance(f64::INFINITY);
        self.fleets.decode.finish(now);
    }
    fn scale_events(&self) -> u64 {
        self.both(Fleet::scale_events)
    }
    fn tally(&mut self) -> &mut Tally {
        let Pair { prefill, decode } = &mut self.fleets;
        if !self.merged {
            self.merged = true;
            let failures = std::mem::replace(&mut prefill.tally, Tally::new(0.0, 0.0));
            decode.tally.absorb_failures(&failures);
        }
        &mut decode.tally
    }
}

/// A policy for both pools.
pub trait PoolAutoscaler: Send {
    /// Name in reports.
    fn name(&self) -> &str;
    /// Seconds between scrapes.
    fn scrape_interval(&self) -> f64;
    /// Seconds between decisions.
    fn sync_period(&self) -> f64;
    /// Takes a scrape of one pool.
    fn scrape(&mut self, pool: Pool, fleet: &dyn Observed, now: f64);
    /// Decides both pools; `None` leaves a pool as it is.
    fn decide(&mut self, fleets: &Pair<Fleet>, now: f64) -> Pair<Option<Command>>;
    /// A pool's command was applied and reached `to`.
    fn applied(&mut self, pool: Pool, from: u32, to: u32, now: f64);
    /// Replicas of each pool at time zero.
    fn initial_replicas(&self) -> Pair<u32>;
}

/// One autoscaler per pool, neither knowing of the other: what two HPAs or two KPA revisions
/// do.
pub struct Independent {
    name: String,
    scalers: Pair<Box<dyn Autoscaler>>,
}

impl Independent {
    /// `prefill` and `decode` side by side, reported as `name`.
    pub fn new(
        name: impl Into<String>,
        prefill: Box<dyn Autoscaler>,
        decode: Box<dyn Autoscaler>,
    ) -> Independent {
        Independent {
            name: name.into(),
            scalers: Pair { prefill, decode },
        }
    }
}

impl PoolAutoscaler for Independent {
    fn name(&self) -> &str {
        &self.name
    }
    fn scrape_interval(&self) -> f64 {
        self.scalers.prefill.scrape_interval()
    }
    fn sync_period(&self) -> f64 {
        self.scalers.prefill.sync_period()
    }
    fn scrape(&mut self, pool: Pool, fleet: &dyn Observed, now: f64) {
        self.scalers.get_mut(pool).scrape(fleet, now);
    }
    fn decide(&mut self, fleets: &Pair<Fleet>, now: f64) -> Pair<Option<Command>> {
        Pair {
            prefill: self.scalers.prefill.decide(&fleets.prefill, now),
            decode: self.scalers.decode.decide(&fleets.decode, now),
        }
    }
    fn applied(&mut self, pool: Pool, from: u32, to: u32, now: f64) {
        self.scalers.get_mut(pool).applied(from, to, now);
    }
    fn initial_replicas(&self) -> Pair<u32> {
        Pair {
            prefill: self.scalers.prefill.initial_replicas(),
            decode: self.scalers.decode.initial_replicas(),
        }
    }
}

/// Ebb's pools policy run by the core: one [`PoolScaler`] over both pools' observations.
pub struct CorePools {
    name: String,
    scaler: PoolScaler,
    pipelines: Pair<Pipeline>,
    sync_period: f64,
    initial: Pair<u32>,
}

impl CorePools {
    /// `policy` read through `pipeline` (one copy per pool), deciding every `sync_period`
    /// seconds, from `initial` replicas of each pool.
    pub fn new(
        name: impl Into<String>,
        policy: PoolsPolicy,
        pipeline: Pipeline,
        sync_period: f64,
        initial: Pair<u32>,
    ) -> CorePools {
        let reading = |p: &ebb_core::Policy| {
            if p.engine.is_some() {
                pipeline.clone().reading_engines()
            } else {
                pipeline.clone()
            }
        };
        CorePools {
            name: name.into(),
            pipelines: Pair {
                prefill: reading(&policy.prefill),
                decode: reading(&policy.decode),
            },
            scaler: PoolScaler::new(policy),
            sync_period,
            initial,
        }
    }
}

impl PoolAutoscaler for CorePools {
    fn name(&self) -> &str {
        &self.name
    }
    fn scrape_interval(&self) -> f64 {
        self.pipelines.prefill.scrape_interval
    }
    fn sync_period(&self) -> f64 {
        self.sync_period
    }
    fn scrape(&mut self, pool: Pool, fleet: &dyn Observed, now: f64) {
        self.pipelines.get_mut(pool).scrape(fleet, now);
    }
    fn decide(&mut self, fleets: &Pair<Fleet>, now: f64) -> Pair<Option<Command>> {
        let mut observe = |pool: Pool| {
            let policy = self.scaler.pool(pool).policy();
            self.pipelines
                .get_mut(pool)
                .observe(policy, fleets.get(pool), now)
        };
        let obs = PoolObservations {
            prefill: observe(Pool::Prefill),
            decode: observe(Pool::Decode),
        };
        let d = self.scaler.decide(&obs, core_time(now));
        Pair {
            prefill: Command::from_decision(&d.prefill),
            decode: Command::from_decision(&d.decode),
        }
    }
    fn applied(&mut self, pool: Pool, _from: u32, to: u32, now: f64) {
        self.scaler.applied(pool, to, core_time(now));
    }
    fn initial_replicas(&self) -> Pair<u32> {
        self.initial
    }
}

/// A pools policy over a [`Disagg`], its cold starts drawn from its own stream.
struct Pools<'a> {
    scaler: &'a mut dyn PoolAutoscaler,
    rng: Pcg64Mcg,
}

impl Control<Disagg> for Pools<'_> {
    fn name(&self) -> &str {
        self.scaler.name()
    }
    fn periods(&self) -> (f64, f64) {
        (self.scaler.scrape_interval(), self.scaler.sync_period())
    }
    fn scrape(&mut self, served: &Disagg, now: f64) {
        for pool in Pool::BOTH {
            self.scaler.scrape(pool, served.fleets.get(pool), now);
        }
    }
    fn sync(&mut self, served: &mut Disagg, now: f64) {
        let mut commands = self.scaler.decide(&served.fleets, now);
        for pool in Pool::BOTH {
            let Some(cmd) = commands.get_mut(pool).take() else {
                continue;
            };
            let fleet = served.fleets.get_mut(pool);
            let from = Observed::current_replicas(fleet);
            let to = fleet.scale_to(cmd.desired, &cmd.victims, now, None, &mut self.rng);
            self.scaler.applied(pool, from, to, now);
        }
    }
}

/// What a pools policy reached: the client's view, and what each pool cost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolsResult {
    /// TTFT, ITL and attainment as the clients saw them; replica-seconds of both pools.
    #[serde(flatten)]
    pub result: LlmResult,
    /// Replica-seconds of the prefill pool.
    pub prefill_replica_seconds: f64,
    /// Replica-seconds of the decode pool.
    pub decode_replica_seconds: f64,
}

/// Runs a pools policy over `requests` (sorted by arrival) on a disaggregated server whose
/// handovers take `per_token` seconds a prompt token.
pub fn run_pools(
    requests: &[LlmRequest],
    cfg: &LlmConfig,
    per_token: f64,
    scaler: &mut dyn PoolAutoscaler,
    progress: &mut dyn FnMut(f64),
) -> PoolsResult {
    let mut served = Disagg::new(cfg, scaler.initial_replicas(), per_token);
    let rng = Pcg64Mcg::seed_from_u64(cfg.seed ^ name_seed(scaler.name()));
    let result = run_served(
        requests,
        cfg,
        &mut served,
        &mut Pools { scaler, rng },
        progress,
    );
    PoolsResult {
        prefill_replica_seconds: served.cost.prefill,
        decode_replica_seconds: served.cost.decode,
        result,
    }
}
