//! One policy's run: the event loop that merges arrivals, cluster events, scrapes, decisions
//! and the per-second bookkeeping, in time order.

use crate::autoscaler::Autoscaler;
use crate::cluster::{Cluster, ClusterConfig};
use crate::record::{PolicyResult, Recorder};
use crate::service::ServiceTime;
use crate::workload::Workload;

/// What every policy in a comparison shares.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The cluster model.
    pub cluster: ClusterConfig,
    /// How long requests take.
    pub service: ServiceTime,
    /// Latency SLO, seconds.
    pub slo: f64,
    /// Time-series bucket, seconds.
    pub bucket: f64,
    /// Seed for arrivals, service times and cold starts.
    pub seed: u64,
    /// GPUs per replica, for GPU-hours.
    pub gpus_per_replica: f64,
}

/// A seed of the policy's own from its name, so that each policy's draws in the LLM fleet
/// simulators are the same in every run of it. (Request-level clusters draw cold starts from
/// [`cold_start_seed`], the same for every policy.)
pub(crate) fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The key of a request-level cluster's cold starts in a run with `seed`: the same for every
/// policy, apart from the arrivals' and service times' streams.
pub(crate) fn cold_start_seed(seed: u64) -> u64 {
    seed ^ 0x5eed_c01d
}

/// The first scrape and the first decision of a policy that scrapes every `scrape_interval`
/// and decides every `sync_period` seconds: at time zero, or never for one that does not
/// scrape (interval 0) or decide (an infinite period).
pub(crate) fn first_ticks(scrape_interval: f64, sync_period: f64) -> (f64, f64) {
    let scrape = if scrape_interval > 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    let sync = if sync_period.is_finite() {
        0.0
    } else {
        f64::INFINITY
    };
    (scrape, sync)
}

/// Runs one policy over the workload; `progress` is called with the fraction done. Time to
/// capacity is measured afterwards with [`PolicyResult::measure_capacity`].
pub fn run_policy(
    workload: &Workload,
    cfg: &RunConfig,
    scaler: &mut dyn Autoscaler,
    progress: &mut dyn FnMut(f64),
) -> PolicyResult {
    let duration = workload.duration().max(1.0);
    let mut cluster = Cluster::new(
        cfg.cluster.clone(),
        scaler.initial_replicas(),
        cold_start_seed(cfg.seed),
    );
    cluster.count_within(cfg.slo);
    let mut rec = Recorder::new(cfg.slo, cfg.bucket, duration);
    let scrape_every = scaler.scrape_interval();
    let sync_every = scaler.sync_period();
    let (mut next_scrape, mut next_sync) =
        first_ticks(scaler.scrape_interval(), scaler.sync_period());
    let mut next_second = 0.0f64;
    let mut next_bucket = cfg.bucket;
    let mut requests = 0u64;
    let mut scale_log = Vec::new();
    let mut arrivals = workload.arrivals(&cfg.service, cfg.seed).peekable();
    let mut count = 0u64;

    loop {
        let t_arrival = arrivals.peek().map_or(f64::INFINITY, |a| a.at);
        let t_tick = next_second.min(next_scrape).min(next_sync).min(next_bucket);
        let t = t_arrival.min(t_tick);
        if t > duration {
            break;
        }
        cluster.advance(t, &mut |now, o| rec.outcome(now, o));
        // At equal times the tick goes first: capacity decided for second s serves arrivals at s.
        if t_arrival < t_tick {
            if let Some(a) = arrivals.next() {
                requests += 1;
                rec.arrival(a.at);
                cluster.arrive(a.at, a.service, &mut |now, o| rec.outcome(now, o));
                count += 1;
                if count & 0xffff == 0 {
                    progress(a.at / duration);
                }
            }
            continue;
        }
        if next_scrape <= t {
            scaler.scrape(&cluster, t);
            next_scrape += scrape_every;
        }
        if next_sync <= t {
            if let Some(cmd) = scaler.decide(&cluster, t) {
                let from = cluster.current_replicas();
                let to =
                    cluster.scale_to(cmd.desired, &cmd.victims, t, scaler.cold_start_override());
                scaler.applied(from, to, t);
                if from != to {
                    scale_log.push((t, from, to, cmd.reasons));
                }
            }
            next_sync += sync_every;
        }
        if next_second <= t {
            rec.second(t, cluster.existing_replicas(), cluster.ready_replicas());
            next_second += 1.0;
        }
        if next_bucket <= t {
            rec.close_bucket(t);
            next_bucket += cfg.bucket;
        }
    }
    let replica_seconds = cluster.replica_seconds(duration);
    // Requests still waiting for a first replica fail now; those held finish their service.
    cluster.finish(duration, &mut |now, o| rec.outcome(now, o));
    cluster.advance(f64::INFINITY, &mut |now, o| rec.outcome(now, o));
    rec.close_bucket(duration + cfg.bucket);
    progress(1.0);
    // Little's law holds over [0, the last departure].
    let horizon = cluster.last_change().max(duration);
    rec.finish(
        scaler.name(),
        requests,
        duration,
        replica_seconds,
        cfg.gpus_per_replica,
        cluster.scale_events(),
        cluster.in_system_area(horizon),
        horizon,
        scale_log,
    )
}
