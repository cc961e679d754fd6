//! One policy's token-level run: the event loop that merges arrivals, the engines' steps,
//! scrapes, decisions and the per-second bookkeeping, in time order.

use super::fleet::{Fleet, LlmRequest};
use super::tally::quantile;
use super::LlmConfig;
use crate::autoscaler::Autoscaler;
use crate::observe::Observed;
use crate::run::{first_ticks, name_seed};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

/// The percentiles a result reports: p50, p95, p99.
const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// What one policy reached on a token-level workload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LlmResult {
    /// The policy.
    pub policy: String,
    /// Requests that arrived.
    pub requests: u64,
    /// Requests refused by the engine or held past the timeout.
    pub failed: u64,
    /// Share of requests whose first token came within the TTFT SLO (failed ones miss).
    pub ttft_attainment: f64,
    /// Share of requests whose time per output token met the TPOT SLO.
    pub tpot_attainment: f64,
    /// Share of requests that met both.
    pub both_attainment: f64,
    /// TTFT percentiles p50, p95, p99 (seconds).
    pub ttft: [f64; 3],
    /// TPOT percentiles p50, p95, p99 (seconds).
    pub tpot: [f64; 3],
    /// Gaps between tokens, p50, p95, p99 (seconds).
    pub itl: [f64; 3],
    /// Replica-seconds paid.
    pub replica_seconds: f64,
    /// GPU-hours paid.
    pub gpu_hours: f64,
    /// Most replicas at once.
    pub peak_replicas: u32,
    /// Times the replica count changed.
    pub scale_events: u64,
    /// Mean replicas existing in each report bucket.
    pub replicas_series: Vec<f64>,
    /// Report bucket, seconds.
    pub bucket: f64,
    /// Per minute of arrival: requests, and those within both SLOs.
    #[serde(skip)]
    pub by_minute: Vec<(u64, u64)>,
    /// Seconds the run covered.
    #[serde(skip)]
    pub duration: f64,
}

/// What the run loop serves: one fleet, or the two pools of a disaggregated server.
pub trait Served {
    /// Runs its own events up to and including `until`.
    fn advance(&mut self, until: f64);
    /// A request arrives at the gateway.
    fn arrive(&mut self, req: LlmRequest);
    /// Fails the requests held longer than the hold timeout.
    fn expire_held(&mut self, now: f64);
    /// Replicas that exist (and cost).
    fn existing_replicas(&self) -> u32;
    /// Replica-seconds up to `now`.
    fn replica_seconds(&self, now: f64) -> f64;
    /// Ends the run: held requests fail, the replicas finish what they hold.
    fn finish(&mut self, now: f64);
    /// Times a replica count changed.
    fn scale_events(&self) -> u64;
    /// What happened to the requests.
    fn tally(&mut self) -> &mut super::tally::Tally;
}

/// What decides for a [`Served`]: when it scrapes and decides, and what it does then.
pub trait Control<S: ?Sized> {
    /// Name in reports.
    fn name(&self) -> &str;
    /// Seconds between scrapes (0: never) and between decisions (infinite: never).
    fn periods(&self) -> (f64, f64);
    /// Takes a scrape.
    fn scrape(&mut self, served: &S, now: f64);
    /// Decides and applies the decision.
    fn sync(&mut self, served: &mut S, now: f64);
}

/// One autoscaler over one fleet, its cold starts drawn from its own stream.
struct Single<'a> {
    scaler: &'a mut dyn Autoscaler,
    rng: Pcg64Mcg,
}

impl Control<Fleet> for Single<'_> {
    fn name(&self) -> &str {
        self.scaler.name()
    }
    fn periods(&self) -> (f64, f64) {
        (self.scaler.scrape_interval(), self.scaler.sync_period())
    }
    fn scrape(&mut self, fleet: &Fleet, now: f64) {
        self.scaler.scrape(fleet, now);
    }
    fn sync(&mut self, fleet: &mut Fleet, now: f64) {
        if let Some(cmd) = self.scaler.decide(fleet, now) {
            let from = Observed::current_replicas(fleet);
            let to = fleet.scale_to(
                cmd.desired,
                &cmd.victims,
                now,
                self.scaler.cold_start_override(),
                &mut self.rng,
            );
            self.scaler.applied(from, to, now);
        }
    }
}

/// Runs one policy over `requests` (sorted by arrival); `progress` is called with the
/// fraction done.
pub fn run_llm_policy(
    requests: &[LlmRequest],
    cfg: &LlmConfig,
    scaler: &mut dyn Autoscaler,
    progress: &mut dyn FnMut(f64),
) -> LlmResult {
    let mut fleet = Fleet::new(cfg.clone(), scaler.initial_replicas());
    let rng = Pcg64Mcg::seed_from_u64(cfg.seed ^ name_seed(scaler.name()));
    run_served(
        requests,
        cfg,
        &mut fleet,
        &mut Single { scaler, rng },
        progress,
    )
}

/// The event loop: merges arrivals, the served fleet's events, scrapes, decisions and the
/// per-second bookkeeping, in time order.
pub fn run_served<S: Served>(
    requests: &[LlmRequest],
    cfg: &LlmConfig,
    fleet: &mut S,
    control: &mut dyn Control<S>,
    progress: &mut dyn FnMut(f64),
) -> LlmResult {
    let duration = requests.last().map_or(0.0, |r| r.at).max(1.0);
    let (scrape_every, sync_every) = control.periods();
    let (mut next_scrape, mut next_sync) = first_ticks(scrape_every, sync_every);
    let mut next_second = 0.0f64;
    let mut arrivals = requests.iter().peekable();
    let mut peak = fleet.existing_replicas();
    let per_bucket = (cfg.bucket.max(1.0)) as usize;
    let mut series = Vec::new();
    let mut bucket_sum = 0.0;
    let mut seconds = 0usize;
    loop {
        let t_arrival = arrivals.peek().map_or(f64::INFINITY, |a| a.at);
        let t_tick = next_second.min(next_scrape).min(next_sync);
        let t = t_arrival.min(t_tick);
        if t > duration {
            break;
        }
        fleet.advance(t);
        // At equal times the tick goes first: capacity decided for second s serves arrivals at s.
        if t_arrival < t_tick {
            if let Some(a) = arrivals.next() {
                fleet.arrive(*a);
            }
            continue;
        }
        if next_scrape <= t {
            control.scrape(fleet, t);
            next_scrape += scrape_every;
        }
        if next_sync <= t {
            control.sync(fleet, t);
            next_sync += sync_every;
        }
        if next_second <= t {
            fleet.expire_held(t);
            let existing = fleet.existing_replicas();
            peak = peak.max(existing);
            bucket_sum += f64::from(existing);
            seconds += 1;
            if seconds.is_multiple_of(per_bucket) {
                series.push(bucket_sum / per_bucket as f64);
                bucket_sum = 0.0;
                progress(t / duration);
            }
            next_second += 1.0;
        }
    }
    let replica_seconds = fleet.replica_seconds(duration);
    fleet.finish(duration);
    progress(1.0);
    let scale_events = fleet.scale_events();
    let tally = fleet.tally();
    let n = tally.requests().max(1) as f64;
    let pcts = |v: &mut Vec<f32>| QUANTILES.map(|q| quantile(v, q));
    LlmResult {
        policy: control.name().to_string(),
        requests: tally.requests(),
        failed: tally.failed,
        ttft_attainment: tally.ttft_met as f64 / n,
        tpot_attainment: tally.tpot_met as f64 / n,
        both_attainment: tally.both_met as f64 / n,
        ttft: pcts(&mut tally.ttfts),
        tpot: pcts(&mut tally.tpots),
        itl: QUANTILES.map(|q| tally.gaps.quantile(q)),
        replica_seconds,
        gpu_hours: replica_seconds * cfg.gpus_per_replica / 3600.0,
        peak_replicas: peak,
        scale_events,
        replicas_series: series,
        bucket: per_bucket as f64,
        by_minute: std::mem::take(&mut tally.by_minute),
        duration,
    }
}

impl Served for Fleet {
    fn advance(&mut self, until: f64) {
        Fleet::advance(self, until);
    }
    fn arrive(&mut self, req: LlmRequest) {
        Fleet::arrive(self, req);
    }
    fn expire_held(&mut self, now: f64) {
        Fleet::expire_held(self, now);
    }
    fn existing_replicas(&self) -> u32 {
        Fleet::existing_replicas(self)
    }
    fn replica_seconds(&self, now: f64) -> f64 {
        Fleet::replica_seconds(self, now)
    }
    fn finish(&mut self, now: f64) {
        Fleet::finish(self, now);
    }
    fn scale_events(&self) -> u64 {
        Fleet::scale_events(self)
    }
    fn tally(&mut self) -> &mut super::tally::Tally {
        &mut self.tally
    }
}
