//! Multi-model serving: many models share server replicas (Seldon Core 2, Triton, MLServer).
//! Each model is scaled on its own traffic by its own decision (`ebb_core::decide`, one state
//! per model, as the controller keeps one `Autoscaler` per model); its replicas are copies on
//! servers. How copies reach servers is the mode under test:
//!
//! - **coordinated** (Ebb): `ebb_core::placement` packs copies by memory, adds a server only
//!   when none fits, and consolidates on scale-down (make-before-break moves), so the server
//!   count follows the models' needs.
//! - **pack-only**: the same packing, but copies never move; a server goes only when it is
//!   empty (scale-up-only packing, what a scheduler without consolidation leaves behind).
//! - **one-per-model**: every model replica has a server replica of its own (one Seldon
//!   `Server` per `Model`, both scaled by HPA: the 1:1 approach).
//!
//! A copy loaded on a running server is ready after the model's load time; one that needs a new
//! server waits for the server to start first. Measured: per-model SLO attainment,
//! server-replica-seconds, packing efficiency (servers over the memory lower bound) over time,
//! and moves per hour.

use crate::autoscaler::{Autoscaler, Command, CorePolicy};
use crate::cluster::{Cluster, ColdStart};
use crate::compare::{hpa_policy, HPA_DEPLOYMENT, TARGET_UTILIZATION};
use crate::fleet::Fleet;
use crate::observe::Pipeline;
use crate::record::{PolicyResult, Recorder};
use crate::run::{cold_start_seed, RunConfig};
use crate::workload::Workload;
use ebb_core::placement::{lower_bound, plan_with, ModelDemand, Move, PlanOptions, ServerKind};
use ebb_core::Policy;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// How model replicas get onto server replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Placement {
    /// Ebb's planner with consolidation.
    Coordinated,
    /// Packing without consolidation: copies never move.
    PackOnly,
    /// One server replica per model replica.
    OnePerModel,
}

/// The per-model autoscaling policy of a mode.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelPolicy {
    /// This policy for every model, read every second, decided every `sync` seconds.
    Ebb {
        /// The policy.
        policy: Box<Policy>,
        /// Seconds between decisions.
        sync: f64,
    },
    /// HPA through a Prometheus adapter (30 s scrape, 2 m rate, 15 s sync), minReplicas 1.
    Hpa,
}

/// One mode of a multi-model comparison.
#[derive(Debug, Clone)]
pub struct MultiMode {
    /// Name in reports.
    pub name: String,
    /// How copies are placed.
    pub placement: Placement,
    /// How each model is scaled.
    pub policy: ModelPolicy,
}

/// How much memory each model's replica needs.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelMemory {
    /// Every model the same, MiB.
    Fixed(u64),
    /// Uniform in `[lo, hi]` MiB, drawn from the model's name (stable across runs).
    Uniform(u64, u64),
    /// Drawn from measured values (MiB) by the model's name, e.g. per-pod GPU memory in use.
    Empirical(Vec<u64>),
}

impl ModelMemory {
    /// The memory of model `name`, MiB.
    pub fn of(&self, name: &str) -> u64 {
        let h = name_hash(name);
        match self {
            ModelMemory::Fixed(m) => *m,
            ModelMemory::Uniform(lo, hi) => {
                let span = hi.saturating_sub(*lo) + 1;
                lo + h % span
            }
            ModelMemory::Empirical(v) if !v.is_empty() => v[(h % v.len() as u64) as usize],
            ModelMemory::Empirical(_) => 0,
        }
    }
}

fn name_hash(name: &str) -> u64 {
    // FNV-1a, then a mix so that neighbouring names spread.
    let mut h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// What every mode of a multi-model comparison shares.
#[derive(Debug, Clone)]
pub struct MultiConfig {
    /// Per-model replicas: slots, queue, timeout; `cluster.cold_start` is the model load time.
    pub run: RunConfig,
    /// The server kind hosting the models (capacity, headroom, min/max servers).
    pub server: ServerKind,
    /// How long a new server replica takes to start, before it can load models.
    pub server_start: ColdStart,
    /// Model names by model id.
    pub names: Vec<String>,
    /// Memory per replica by model id, MiB.
    pub memory_mib: Vec<u64>,
    /// maxReplicas of each model.
    pub max_model_replicas: u32,
    /// Seconds the fleet must have run more servers than the lower bound before a
    /// consolidation is planned (as Karpenter's `consolidateAfter`): short gaps left by models
    /// that scale to zero and back are not worth a move.
    pub consolidate_after: f64,
}

/// One model's results in one mode.
#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    /// Model name.
    pub model: String,
    /// Memory per replica, MiB.
    pub memory_mib: u64,
    /// Its requests' results (replica-seconds are its model replicas').
    #[serde(flatten)]
    pub result: PolicyResult,
}

/// One bucket of the fleet's time series.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetBucket {
    /// Start of the bucket, seconds.
    pub t: f64,
    /// Mean servers existing.
    pub servers: f64,
    /// Mean lower bound on servers for the copies hosted.
    pub lower_bound: f64,
    /// Mean model replicas (copies) hosted.
    pub model_replicas: f64,
    /// Mean servers a fresh packing of the same copies needs (sampled every 5 s).
    pub fresh_pack: f64,
}

/// One mode's results.
#[derive(Debug, Clone, Serialize)]
pub struct MultiResult {
    /// Mode name.
    pub mode: String,
    /// Placement.
    pub placement: Placement,
    /// Every request of every model together.
    pub all: PolicyResult,
    /// Per model.
    pub models: Vec<ModelResult>,
    /// Server-replica-seconds.
    pub server_seconds: f64,
    /// Most servers at once.
    pub peak_servers: u32,
    /// Mean of servers / lower bound over the seconds that hosted any model replica.
    pub packing_mean: f64,
    /// 95th percentile of that ratio.
    pub packing_p95: f64,
    /// Server-seconds over the lower bound's server-seconds.
    pub packing_overall: f64,
    /// Server-seconds over those of packing the hosted copies afresh (the planner from an
    /// empty fleet, sampled every 5 s): what consolidation with free moves could reach.
    pub vs_fresh_pack: f64,
    /// Copies loaded per hour (initial placement excluded).
    pub loads_per_hour: f64,
    /// Copies moved between servers per hour (consolidation).
    pub moves_per_hour: f64,
    /// Servers started.
    pub servers_added: u64,
    /// Servers stopped.
    pub servers_removed: u64,
    /// Model-replica-seconds wanted but not placed (maxReplicas of the servers reached).
    pub unplaced_replica_seconds: f64,
    /// Seconds in which some server held more memory than its capacity (must be zero).
    pub over_capacity_seconds: u64,
    /// Fleet time series.
    pub fleet: Vec<FleetBucket>,
    /// The planner's reasons, first ones (why servers were added or drained).
    pub plan_reasons: Vec<(f64, String)>,
}

impl MultiResult {
    /// Share of models (with at least `min_requests` requests) whose SLO attainment is at
    /// least `target`.
    pub fn models_meeting(&self, target: f64, min_requests: u64) -> (usize, usize) {
        let judged: Vec<&ModelResult> = self
            .models
            .iter()
            .filter(|m| m.result.requests >= min_requests)
            .collect();
        let met = judged
            .iter()
            .filter(|m| m.result.slo_attainment >= target)
            .count();
        (met, judged.len())
    }

    /// The lowest SLO attainment among models with at least `min_requests` requests.
    pub fn worst_model(&self, min_requests: u64) -> Option<&ModelResult> {
        self.models
            .iter()
            .filter(|m| m.result.requests >= min_requests)
            .min_by(|a, b| a.result.slo_attainment.total_cmp(&b.result.slo_attainment))
    }
}

/// Ebb's per-model policy for multi-model serving: Knative's concurrency model (target 70%
/// of the slots, 60 s stable and 6 s panic windows), scale to zero after 5 idle minutes, and a
/// 60 s scale-down window.
pub fn default_model_policy(slots: u32, max_replicas: u32) -> Policy {
    let yaml = format!(
        r#"
minReplicas: 0
maxReplicas: {max_replicas}
concurrency: {{metric: concurrency, targetPerReplica: {target}, stableWindowSeconds: 60, panicWindowSeconds: 6, panicThresholdPercent: 200}}
scaleToZero: {{idleSeconds: 300, activationThreshold: 1}}
behavior:
  scaleUp: {{stabilizationWindowSeconds: 0, policies: [{{type: Percent, value: 100, periodSeconds: 5}}, {{type: Pods, value: 4, periodSeconds: 5}}]}}
  scaleDown: {{stabilizationWindowSeconds: 60, policies: [{{type: Percent, value: 50, periodSeconds: 10}}]}}
"#,
        target = f64::from(slots) * TARGET_UTILIZATION
    );
    Policy::from_yaml(&yaml).unwrap_or_else(|e| panic!("built-in model policy is valid: {e}"))
}

/// The modes of the standard comparison: Ebb coordinated, Ebb with packing but no
/// consolidation, Ebb's policy one server per model, and HPA one server per model.
pub fn standard_modes(policy: &Policy, sync: f64) -> Vec<MultiMode> {
    let ebb = ModelPolicy::Ebb {
        policy: Box::new(policy.clone()),
        sync,
    };
    vec![
        MultiMode {
            name: "ebb".into(),
            placement: Placement::Coordinated,
            policy: ebb.clone(),
        },
        MultiMode {
            name: "ebb-pack-only".into(),
            placement: Placement::PackOnly,
            policy: ebb.clone(),
        },
        MultiMode {
            name: "ebb-1to1".into(),
            placement: Placement::OnePerModel,
            policy: ebb,
        },
        MultiMode {
            name: "hpa-1to1".into(),
            placement: Placement::OnePerModel,
            policy: ModelPolicy::Hpa,
        },
    ]
}

/// Models that have at least one request, by id.
fn models_present(workload: &Workload, n: usize) -> Vec<bool> {
    let mut seen = vec![false; n];
    if let Workload::Requests(r) = workload {
        for q in r {
            if let Some(s) = seen.get_mut(q.model as usize) {
                *s = true;
            }
        }
    } else if let Some(s) = seen.first_mut() {
        *s = true;
    }
    seen
}

/// Replicas a model starts with: what its first minute's arrivals need at the target
/// utilization, within its policy's bounds.
fn initial_replicas(workload: &Workload, model: usize, cfg: &MultiConfig, min: u32) -> u32 {
    let first_minute = match workload {
        Workload::Requests(r) => r
            .iter()
            .take_while(|q| q.at < 60.0)
            .filter(|q| q.model as usize == model)
            .count() as f64,
        Workload::Rate { .. } => workload.initial_rate(60.0) * 60.0,
    };
    let capacity = f64::from(cfg.run.cluster.slots) / cfg.run.service.mean();
    let need = (first_minute / 60.0 / (capacity * TARGET_UTILIZATION)).ceil() as u32;
    need.clamp(min, cfg.max_model_replicas.max(min))
}

/// Seconds between samples of the fresh-packing reference.
const FRESH_PACK_EVERY: u64 = 5;

struct ModelSim {
    cluster: Cluster,
    recorder: Recorder,
    scaler: CorePolicy,
    present: bool,
    requests: u64,
}

/// Runs one mode over the workload; `progress` gets the fraction done. The event loop: the
/// next arrival or the next tick (scrape, sync, second, bucket), whichever comes first.
pub fn run_mode(
    workload: &Workload,
    cfg: &MultiConfig,
    mode: &MultiMode,
    progress: &mut dyn FnMut(f64),
) -> MultiResult {
    let (mut run, scrape_every, sync) = MultiRun::new(workload, cfg, mode);
    run.place_initially();
    let duration = run.duration;
    let mut arrivals = workload.arrivals(&cfg.run.service, cfg.run.seed).peekable();
    let (mut next_scrape, mut next_sync, mut next_second) = (0.0f64, 0.0f64, 0.0f64);
    let mut next_bucket = cfg.run.bucket;
    loop {
        let t_arrival = arrivals.peek().map_or(f64::INFINITY, |a| a.at);
        let t_tick = next_second.min(next_scrape).min(next_sync).min(next_bucket);
        let t = t_arrival.min(t_tick);
        if t > duration {
            break;
        }
        if t_arrival < t_tick {
            if let Some(a) = arrivals.next() {
                run.arrival(&a);
                if run.tally.requests & 0x3fff == 0 {
                    progress(a.at / duration);
                }
            }
            continue;
        }
        run.advance(t);
        if next_scrape <= t {
            run.scrape(t);
            next_scrape += scrape_every;
        }
        if next_sync <= t {
            run.sync(t);
            next_sync += sync;
        }
        if next_second <= t {
            run.second(t);
            next_second += 1.0;
        }
        if next_bucket <= t {
            run.close_bucket(t);
            next_bucket += cfg.run.bucket;
        }
    }
    let result = run.finish();
    progress(1.0);
    result
}

/// What a run tallies as it goes, for the fleet figures of [`MultiResult`].
#[derive(Default)]
struct Tally {
    requests: u64,
    one_per_model_servers: u64,
    /// Servers over the memory lower bound, once a second.
    ratios: Vec<f64>,
    lb_seconds: f64,
    unplaced_seconds: f64,
    unplaced_now: u32,
    over_capacity: u64,
    peak_servers: u32,
    fleet_buckets: Vec<FleetBucket>,
    acc: FleetBucket,
    acc_n: u32,
    above_bound_since: Option<f64>,
    fresh_seconds: f64,
    fresh_now: u32,
}

/// One mode's run in progress: each model's cluster and decisions, the shared fleet of
/// servers, and the tallies. One method per kind of event.
struct MultiRun<'a> {
    cfg: &'a MultiConfig,
    mode: &'a MultiMode,
    duration: f64,
    models: Vec<ModelSim>,
    all: Recorder,
    fleet: Fleet,
    index: BTreeMap<&'a str, usize>,
    rng: Pcg64Mcg,
    reasons: Vec<(f64, String)>,
    tally: Tally,
}

impl<'a> MultiRun<'a> {
    /// The run at time zero, with its scrape interval and sync period.
    fn new(
        workload: &Workload,
        cfg: &'a MultiConfig,
        mode: &'a MultiMode,
    ) -> (MultiRun<'a>, f64, f64) {
        let duration = workload.duration().max(1.0);
        let n = cfg.names.len().max(1);
        let present = models_present(workload, n);
        let capacity = f64::from(cfg.run.cluster.slots) / cfg.run.service.mean();
        let (policy, pipeline, sync) = match &mode.policy {
            ModelPolicy::Ebb { policy, sync } => {
                (policy.as_ref().clone(), Pipeline::new(1.0, 10.0), *sync)
            }
            ModelPolicy::Hpa => (
                hpa_policy(capacity * TARGET_UTILIZATION, cfg.max_model_replicas),
                HPA_DEPLOYMENT.pipeline(),
                HPA_DEPLOYMENT.sync_period,
            ),
        };
        let scrape_every = pipeline.scrape_interval;
        let models = (0..n)
            .map(|m| {
                let initial = if present[m] {
                    initial_replicas(workload, m, cfg, policy.min_replicas)
                } else {
                    0
                };
                // Every start here is given its cold start (drawn with the server's start
                // below), so the cluster's own keyed draws are never used.
                let mut cluster = Cluster::new(
                    cfg.run.cluster.clone(),
                    initial,
                    cold_start_seed(cfg.run.seed),
                );
                cluster.count_within(cfg.run.slo);
                ModelSim {
                    cluster,
                    recorder: Recorder::new(cfg.run.slo, cfg.run.bucket, duration),
                    scaler: CorePolicy::new(
                        cfg.names.get(m).cloned().unwrap_or_default(),
                        policy.clone(),
                        pipeline.clone(),
                        sync,
                        initial,
                    ),
                    present: present[m],
                    requests: 0,
                }
            })
            .collect();
        let run = MultiRun {
            cfg,
            mode,
            duration,
            models,
            all: Recorder::new(cfg.run.slo, cfg.run.bucket, duration),
            fleet: Fleet::new(&cfg.server.kind),
            index: name_index(cfg),
            rng: Pcg64Mcg::seed_from_u64(cfg.run.seed ^ name_hash(&mode.name)),
            reasons: Vec::new(),
            tally: Tally::default(),
        };
        (run, scrape_every, sync)
    }

    /// The initial placement: everything ready at time zero.
    fn place_initially(&mut self) {
        if self.mode.placement == Placement::OnePerModel {
            return;
        }
        let demands = demands(self.cfg, &self.models, |_, s| s.cluster.current_replicas());
        let kinds = std::slice::from_ref(&self.cfg.server);
        let p = plan_with(&demands, kinds, &[], PlanOptions { consolidate: true });
        for (server, hosted) in &p.target {
            self.fleet.add_server(server, 0.0, 0.0, true);
            for name in hosted {
                if let Some(&m) = self.index.get(name.as_str()) {
                    self.fleet.load(m, server, 0.0, true);
                }
            }
        }
        self.reasons.extend(p.reasons.into_iter().map(|r| (0.0, r)));
    }

    /// A request arrives for its model.
    fn arrival(&mut self, a: &crate::workload::Arrival) {
        let m = (a.model as usize).min(self.models.len() - 1);
        let (sim, all) = (&mut self.models[m], &mut self.all);
        let rec = &mut sim.recorder;
        sim.cluster.advance(a.at, &mut |now, o| {
            rec.outcome(now, o);
            all.outcome(now, o);
        });
        self.tally.requests += 1;
        sim.requests += 1;
        rec.arrival(a.at);
        all.arrival(a.at);
        sim.cluster.arrive(a.at, a.service, &mut |now, o| {
            rec.outcome(now, o);
            all.outcome(now, o);
        });
    }

    /// Every present model's cluster up to `t`.
    fn advance(&mut self, t: f64) {
        let all = &mut self.all;
        for sim in self.models.iter_mut().filter(|s| s.present) {
            let rec = &mut sim.recorder;
            sim.cluster.advance(t, &mut |now, o| {
                rec.outcome(now, o);
                all.outcome(now, o);
            });
        }
    }

    /// The metrics pipeline scrapes every present model.
    fn scrape(&mut self, t: f64) {
        for sim in self.models.iter_mut().filter(|s| s.present) {
            sim.scaler.scrape(&sim.cluster, t);
        }
    }

    /// Each model decides; the mode turns the decisions into copies on servers.
    fn sync(&mut self, t: f64) {
        let commands: Vec<Option<Command>> = self
            .models
            .iter_mut()
            .map(|s| {
                if s.present {
                    s.scaler.decide(&s.cluster, t)
                } else {
                    None
                }
            })
            .collect();
        let tally = &mut self.tally;
        match self.mode.placement {
            Placement::OnePerModel => {
                tally.one_per_model_servers += apply_one_per_model(
                    self.cfg,
                    &mut self.models,
                    &commands,
                    t,
                    &mut self.rng,
                    &mut tally.unplaced_now,
                );
            }
            Placement::Coordinated | Placement::PackOnly => {
                let consolidate = self.mode.placement == Placement::Coordinated
                    && !self.fleet.busy(t)
                    && tally
                        .above_bound_since
                        .is_some_and(|since| t - since >= self.cfg.consolidate_after);
                apply_plan(
                    self.cfg,
                    &mut self.models,
                    &commands,
                    &mut self.fleet,
                    consolidate,
                    t,
                    &mut self.rng,
                    &mut self.reasons,
                    &mut tally.unplaced_now,
                    &self.index,
                );
            }
        }
    }

    /// The once-a-second bookkeeping: copies settle on servers, and the fleet's figures
    /// (servers, the memory lower bound, a fresh packing's count) are tallied.
    fn second(&mut self, t: f64) {
        let cfg = self.cfg;
        if self.mode.placement != Placement::OnePerModel {
            let models = &self.models;
            self.fleet.settle(t, |m| {
                models.get(m).map_or(0, |s| {
                    (s.cluster.existing_replicas() - s.cluster.current_replicas()) as usize
                })
            });
            let over = self
                .fleet
                .used_mib(|m| cfg.memory_mib.get(m).copied().unwrap_or(0))
                .any(|(_, used)| used > cfg.server.capacity_mib);
            self.tally.over_capacity += u64::from(over);
        }
        let servers = match self.mode.placement {
            Placement::OnePerModel => self
                .models
                .iter()
                .map(|s| s.cluster.existing_replicas())
                .sum::<u32>(),
            _ => self.fleet.servers() as u32,
        };
        let hosted: Vec<ModelDemand> =
            demands(cfg, &self.models, |_, s| s.cluster.existing_replicas());
        self.tally_fleet(t, servers, &hosted);
        for sim in self.models.iter_mut().filter(|s| s.present) {
            sim.recorder.second(
                t,
                sim.cluster.existing_replicas(),
                sim.cluster.ready_replicas(),
            );
        }
        self.all.second(
            t,
            self.models
                .iter()
                .map(|s| s.cluster.existing_replicas())
                .sum(),
            self.models.iter().map(|s| s.cluster.ready_replicas()).sum(),
        );
    }

    /// One second of the fleet's figures: `servers` running for the `hosted` copies.
    fn tally_fleet(&mut self, t: f64, servers: u32, hosted: &[ModelDemand]) {
        let cfg = self.cfg;
        let tally = &mut self.tally;
        tally.peak_servers = tally.peak_servers.max(servers);
        let copies: u32 = hosted.iter().map(|d| d.replicas).sum();
        let lb = if copies == 0 {
            0
        } else {
            lower_bound(hosted, &cfg.server, &cfg.server.kind).max(1)
        };
        if lb > 0 {
            tally.ratios.push(f64::from(servers) / f64::from(lb));
            tally.lb_seconds += f64::from(lb);
        }
        if servers > lb {
            tally.above_bound_since.get_or_insert(t);
        } else {
            tally.above_bound_since = None;
        }
        if (t as u64).is_multiple_of(FRESH_PACK_EVERY) {
            let kinds = std::slice::from_ref(&cfg.server);
            tally.fresh_now = if copies == 0 {
                0
            } else {
                plan_with(hosted, kinds, &[], PlanOptions { consolidate: true })
                    .server_replicas
                    .get(&cfg.server.kind)
                    .copied()
                    .unwrap_or(0)
            };
        }
        tally.fresh_seconds += f64::from(tally.fresh_now);
        tally.acc.fresh_pack += f64::from(tally.fresh_now);
        tally.unplaced_seconds += f64::from(tally.unplaced_now);
        tally.acc.servers += f64::from(servers);
        tally.acc.lower_bound += f64::from(lb);
        tally.acc.model_replicas += f64::from(copies);
        tally.acc_n += 1;
    }

    /// Closes a time bucket of every recorder and of the fleet's series.
    fn close_bucket(&mut self, t: f64) {
        for sim in self.models.iter_mut().filter(|s| s.present) {
            sim.recorder.close_bucket(t);
        }
        self.all.close_bucket(t);
        let tally = &mut self.tally;
        let k = f64::from(tally.acc_n.max(1));
        tally.fleet_buckets.push(FleetBucket {
            t: t - self.cfg.run.bucket,
            servers: tally.acc.servers / k,
            lower_bound: tally.acc.lower_bound / k,
            model_replicas: tally.acc.model_replicas / k,
            fresh_pack: tally.acc.fresh_pack / k,
        });
        tally.acc = FleetBucket::default();
        tally.acc_n = 0;
    }

    /// The ends of the run, as in a single-model run, and the mode's result.
    fn finish(self) -> MultiResult {
        let MultiRun {
            cfg,
            mode,
            duration,
            models,
            mut all,
            fleet,
            tally,
            reasons,
            ..
        } = self;
        let mut per_model = Vec::new();
        let mut total_replica_seconds = 0.0;
        for (m, mut sim) in models.into_iter().enumerate() {
            let replica_seconds = sim.cluster.replica_seconds(duration);
            total_replica_seconds += replica_seconds;
            let rec = &mut sim.recorder;
            let all = &mut all;
            sim.cluster.finish(duration, &mut |now, o| {
                rec.outcome(now, o);
                all.outcome(now, o);
            });
            sim.cluster.advance(f64::INFINITY, &mut |now, o| {
                rec.outcome(now, o);
                all.outcome(now, o);
            });
            if !sim.present {
                continue;
            }
            rec.close_bucket(duration + cfg.run.bucket);
            let horizon = sim.cluster.last_change().max(duration);
            let name = cfg.names.get(m).cloned().unwrap_or_default();
            let result = sim.recorder.finish(
                &name,
                sim.requests,
                duration,
                replica_seconds,
                cfg.run.gpus_per_replica,
                sim.cluster.scale_events(),
                sim.cluster.in_system_area(horizon),
                horizon,
                Vec::new(),
            );
            per_model.push(ModelResult {
                model: name,
                memory_mib: cfg.memory_mib.get(m).copied().unwrap_or(0),
                result,
            });
        }
        all.close_bucket(duration + cfg.run.bucket);
        let all = all.finish(
            &mode.name,
            tally.requests,
            duration,
            total_replica_seconds,
            cfg.run.gpus_per_replica,
            0,
            0.0,
            duration,
            Vec::new(),
        );
        let ends = RunEnds {
            mode,
            fleet,
            tally,
            reasons,
            duration,
        };
        ends.result(all, per_model, total_replica_seconds)
    }
}

/// What is left of a run once its models have finished: the fleet and the tallies.
struct RunEnds<'a> {
    mode: &'a MultiMode,
    fleet: Fleet,
    tally: Tally,
    reasons: Vec<(f64, String)>,
    duration: f64,
}

impl RunEnds<'_> {
    /// The mode's result: the fleet's figures from the tallies.
    fn result(
        self,
        all: PolicyResult,
        models: Vec<ModelResult>,
        total_replica_seconds: f64,
    ) -> MultiResult {
        let duration = self.duration;
        let tally = self.tally;
        let server_seconds = match self.mode.placement {
            Placement::OnePerModel => total_replica_seconds,
            _ => self.fleet.server_seconds(duration),
        };
        let hours = duration / 3600.0;
        let mut sorted = tally.ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let (loads, relocations, added, removed) = match self.mode.placement {
            Placement::OnePerModel => (
                tally.one_per_model_servers,
                0,
                tally.one_per_model_servers,
                0,
            ),
            _ => (
                self.fleet.loads,
                self.fleet.relocations,
                self.fleet.servers_added,
                self.fleet.servers_removed,
            ),
        };
        let ratio_or_one = |num: f64, den: f64| if den > 0.0 { num / den } else { 1.0 };
        MultiResult {
            mode: self.mode.name.clone(),
            placement: self.mode.placement,
            all,
            models,
            server_seconds,
            peak_servers: tally.peak_servers,
            packing_mean: ratio_or_one(tally.ratios.iter().sum::<f64>(), tally.ratios.len() as f64),
            packing_p95: sorted
                .get(((sorted.len() as f64 * 0.95) as usize).min(sorted.len().saturating_sub(1)))
                .copied()
                .unwrap_or(1.0),
            packing_overall: ratio_or_one(server_seconds, tally.lb_seconds),
            vs_fresh_pack: ratio_or_one(server_seconds, tally.fresh_seconds),
            loads_per_hour: loads as f64 / hours,
            moves_per_hour: relocations as f64 / hours,
            servers_added: added,
            servers_removed: removed,
            unplaced_replica_seconds: tally.unplaced_seconds,
            over_capacity_seconds: tally.over_capacity,
            fleet: tally.fleet_buckets,
            plan_reasons: self.reasons,
        }
    }
}

fn name_index(cfg: &MultiConfig) -> BTreeMap<&str, usize> {
    cfg.names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect()
}

/// The planner's input: every model present, with `replicas(model)` replicas.
fn demands(
    cfg: &MultiConfig,
    models: &[ModelSim],
    replicas: impl Fn(usize, &ModelSim) -> u32,
) -> Vec<ModelDemand> {
    models
        .iter()
        .enumerate()
        .filter(|(_, s)| s.present)
        .map(|(m, s)| ModelDemand {
            name: cfg.names.get(m).cloned().unwrap_or_default(),
            replicas: replicas(m, s),
            memory_mib: cfg.memory_mib.get(m).copied().unwrap_or(0),
            server_kind: None,
        })
        .collect()
}

/// One server per model replica: a new replica waits for its own server, then the model load.
/// Returns the servers started.
fn apply_one_per_model(
    cfg: &MultiConfig,
    models: &mut [ModelSim],
    commands: &[Option<Command>],
    now: f64,
    rng: &mut Pcg64Mcg,
    unplaced_now: &mut u32,
) -> u64 {
    let mut existing: u32 = models.iter().map(|s| s.cluster.existing_replicas()).sum();
    let mut started = 0u64;
    *unplaced_now = 0;
    for (sim, cmd) in models.iter_mut().zip(commands) {
        let Some(cmd) = cmd else { continue };
        let from = sim.cluster.current_replicas();
        if cmd.desired > from {
            for _ in from..cmd.desired {
                if existing >= cfg.server.max_replicas {
                    *unplaced_now += 1;
                    continue;
                }
                let delay = cfg.server_start.sample(rng) + cfg.run.cluster.cold_start.sample(rng);
                let current = sim.cluster.current_replicas();
                sim.cluster
                    .scale_to(current + 1, &[], now, Some(delay.max(0.0)));
                existing += 1;
                started += 1;
            }
        } else {
            sim.cluster.scale_to(cmd.desired, &cmd.victims, now, None);
        }
        let to = sim.cluster.current_replicas();
        sim.scaler.applied(from, to, now);
    }
    started
}

/// Plans the placement for the models' decisions and applies its moves.
#[allow(clippy::too_many_arguments)]
fn apply_plan(
    cfg: &MultiConfig,
    models: &mut [ModelSim],
    commands: &[Option<Command>],
    fleet: &mut Fleet,
    consolidate: bool,
    now: f64,
    rng: &mut Pcg64Mcg,
    reasons: &mut Vec<(f64, String)>,
    unplaced_now: &mut u32,
    index: &BTreeMap<&str, usize>,
) {
    // What each model's decision wants (its current count when it asked for no change).
    let demands = demands(cfg, models, |m, s| {
        commands[m]
            .as_ref()
            .map_or(s.cluster.current_replicas(), |c| c.desired)
    });
    let p = plan_with(
        &demands,
        std::slice::from_ref(&cfg.server),
        &fleet.states(&cfg.names),
        PlanOptions { consolidate },
    );
    *unplaced_now = p.unplaced.iter().map(|(_, n)| *n).sum();
    if reasons.len() < 200 {
        reasons.extend(p.reasons.iter().map(|r| (now, r.clone())));
    }
    // Per model: the servers it loads on (and whether that copy replaces one), and the servers
    // it leaves (and which new copy, if any, replaces that one).
    type Loads = Vec<(String, bool)>;
    type Unloads = Vec<(String, Option<String>)>;
    let mut loads: BTreeMap<usize, Loads> = BTreeMap::new();
    let mut unloads: BTreeMap<usize, Unloads> = BTreeMap::new();
    for mv in &p.moves {
        match mv {
            Move::AddServer { server, .. } => {
                let ready = now + cfg.server_start.sample(rng).max(0.0);
                fleet.add_server(server, now, ready, false);
            }
            Move::Load {
                model,
                server,
                replaces,
            } => {
                if let Some(&m) = index.get(model.as_str()) {
                    loads
                        .entry(m)
                        .or_default()
                        .push((server.clone(), replaces.is_some()));
                }
            }
            Move::Unload {
                model,
                server,
                replaced_by,
            } => {
                if let Some(&m) = index.get(model.as_str()) {
                    unloads
                        .entry(m)
                        .or_default()
                        .push((server.clone(), replaced_by.clone()));
                }
            }
            Move::RemoveServer { .. } => {}
        }
    }
    for (m, sim) in models.iter_mut().enumerate() {
        let from = sim.cluster.current_replicas();
        let l = loads.remove(&m).unwrap_or_default();
        let u = unloads.remove(&m).unwrap_or_default();
        // Copies loaded: each ready after its server is, plus the model's load time.
        let mut ready_at: BTreeMap<&str, f64> = BTreeMap::new();
        let mut added = Vec::new();
        for (server, replaces) in &l {
            let server_ready = fleet.server_ready_at(server).unwrap_or(now).max(now);
            let ready = server_ready + cfg.run.cluster.cold_start.sample(rng).max(0.0);
            fleet.load(m, server, ready, false);
            ready_at.insert(server.as_str(), ready);
            if !replaces {
                added.push(ready);
            }
        }
        // A replaced copy serves until its replacement is ready (the planner's
        // make-before-break); the others drain now.
        let mut removed = 0u32;
        for (server, replaced_by) in &u {
            match replaced_by.as_deref().and_then(|s| ready_at.get(s)) {
                Some(until) => fleet.move_out(m, server, *until),
                None => {
                    fleet.drain_out(m, server, now);
                    removed += 1;
                }
            }
        }
        for ready in &added {
            let current = sim.cluster.current_replicas();
            sim.cluster
                .scale_to(current + 1, &[], now, Some(*ready - now));
        }
        if removed > 0 {
            let to = from.saturating_sub(removed);
            let victims = commands[m]
                .as_ref()
                .map(|c| c.victims.clone())
                .unwrap_or_default();
            sim.cluster.scale_to(to, &victims, now, None);
        }
        let to = sim.cluster.current_replicas();
        debug_assert_eq!(to as usize, fleet.copies_of(m), "model {m}");
        if commands[m].is_some() {
            sim.scaler.applied(from, to, now);
        }
    }
    for mv in &p.moves {
        if let Move::RemoveServer { server } = mv {
            fleet.remove_server(server);
        }
    }
}

/// Everything a multi-model comparison produced.
#[derive(Debug, Clone)]
pub struct MultiComparison {
    /// One result per mode, in the order given.
    pub results: Vec<MultiResult>,
    /// The server kind.
    pub server: ServerKind,
    /// Models with requests.
    pub models: usize,
}

/// Runs every mode on all cores; `progress(i, fraction)` per mode.
pub fn compare_modes(
    workload: &Workload,
    cfg: &MultiConfig,
    modes: &[MultiMode],
    progress: &(dyn Fn(usize, f64) + Sync),
) -> MultiComparison {
    let queue: Mutex<Vec<usize>> = Mutex::new((0..modes.len()).rev().collect());
    let results: Mutex<Vec<(usize, MultiResult)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .clamp(1, modes.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(i) = next else { break };
                let r = run_mode(workload, cfg, &modes[i], &mut |f| progress(i, f));
                if let Ok(mut all) = results.lock() {
                    all.push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|(i, _)| *i);
    MultiComparison {
        results: results.into_iter().map(|(_, r)| r).collect(),
        server: cfg.server.clone(),
        models: models_present(workload, cfg.names.len().max(1))
            .iter()
            .filter(|p| **p)
            .count(),
    }
}
