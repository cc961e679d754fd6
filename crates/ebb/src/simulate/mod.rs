//! `ebb simulate`: replay a trace or a synthetic pattern against a simulated cluster and
//! compare Ebb's policy with the baselines.

use anyhow::{bail, Context};
use clap::Args;
use ebb_core::Policy;
use ebb_sim::compare::{compare, default_ebb_policy, Baseline, EbbSpec, TARGET_UTILIZATION};
use ebb_sim::report::{self, RunInfo};
use ebb_sim::service::parse_duration;
use ebb_sim::trace::{read_trace, TraceFormat};
use ebb_sim::{synthetic, ClusterConfig, ColdStart, RunConfig, ServiceTime, Workload};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::path::PathBuf;

pub(crate) mod llm;
mod multi;
mod prometheus;
use std::process::ExitCode;

/// The pattern a newcomer's first run replays: a step from 20 to 150 requests/s.
const DEFAULT_SYNTHETIC: &str = "step:20:150:5m:20m";
/// Above this many requests a run asks for --rate-scale or --duration instead of running.
const MAX_REQUESTS: f64 = 200e6;

#[derive(Args, Debug)]
pub(crate) struct SimulateArgs {
    /// A trace file (CSV, JSON lines, tar.gz, tbz2; the format is detected).
    #[arg(long, conflicts_with = "synthetic")]
    pub(crate) trace: Option<PathBuf>,
    /// The trace's format when detection is not enough (azure-llm, mooncake, alibaba-lora,
    /// alibaba-qps, counts-per-second, worldcup, alibaba-dlrm, csv, rate-csv, prometheus).
    #[arg(long)]
    pub(crate) trace_format: Option<String>,
    /// Replay the traffic a Prometheus server recorded (its URL; with --query), fetched up to
    /// now and saved as traffic.json in the report folder (which --trace reads again).
    #[arg(long, conflicts_with_all = ["trace", "synthetic"], requires = "query")]
    pub(crate) prometheus: Option<String>,
    /// With --prometheus: a PromQL query for requests per second, e.g.
    /// 'sum(rate(http_requests_total{service="my-model"}[1m]))'.
    #[arg(long, requires = "prometheus")]
    pub(crate) query: Option<String>,
    /// With --prometheus: how far back from now [default: 7d].
    #[arg(long, requires = "prometheus")]
    pub(crate) since: Option<String>,
    /// With --prometheus: the query's step, the rate series' resolution [default: 15s].
    #[arg(long, requires = "prometheus")]
    pub(crate) step: Option<String>,
    /// With --prometheus: a file holding a bearer token for the server.
    #[arg(long, requires = "prometheus", conflicts_with = "prometheus_user")]
    pub(crate) prometheus_token_file: Option<PathBuf>,
    /// With --prometheus: a user for basic auth (the password from --prometheus-password-file).
    #[arg(long, requires_all = ["prometheus", "prometheus_password_file"])]
    pub(crate) prometheus_user: Option<String>,
    /// With --prometheus-user: a file holding the password (kept off the command line).
    #[arg(long, requires = "prometheus_user")]
    pub(crate) prometheus_password_file: Option<PathBuf>,
    /// With --prometheus: a PEM bundle of the CAs that sign the server's certificate.
    #[arg(long, requires = "prometheus")]
    pub(crate) prometheus_ca_file: Option<PathBuf>,
    /// A synthetic pattern: constant:R:D, step:LOW:HIGH:AT:D, ramp:FROM:TO:D,
    /// sine:MEAN:AMP:PERIOD:D, spikes:BASE:PEAK:EVERY:WIDTH:D, onoff:R:ON:OFF:D,
    /// flashes:BASE:PEAK:GAP:WIDTH:D (bursts at random times, GAP apart on average).
    #[arg(long)]
    pub(crate) synthetic: Option<String>,
    /// Ebb's policy (default: the SLO policy at --slo and --attainment, with the cluster's slots).
    #[arg(long)]
    pub(crate) policy: Option<PathBuf>,
    /// Baselines to compare with (hpa, kpa, peak, oracle), comma-separated; "none" for none.
    #[arg(long, default_value = "hpa,kpa,peak,oracle")]
    pub(crate) baselines: String,
    /// Latency SLO.
    #[arg(long, default_value = "500ms")]
    pub(crate) slo: String,
    /// Share of requests that must meet the SLO: Ebb's built-in SLO policy plans for it.
    #[arg(long, default_value = "99.9%")]
    pub(crate) attainment: String,
    /// Constants of the SLO policy's model (the built-in one's, or the `slo` block's of
    /// `--policy`), as name=value pairs (for experiments and fitting; e.g.
    /// hedge=0,rateMargin=0.5).
    #[arg(long, default_value = "")]
    pub(crate) slo_tuning: String,
    /// Directory for the report (HTML, SVG, CSV).
    #[arg(long, default_value = "ebb-report")]
    pub(crate) report: PathBuf,
    /// Service time: constant:100ms, exp:100ms, lognormal:100ms:0.5, proportional:BASE:PER_UNIT
    /// (per unit of the trace's work size: tokens, measured seconds).
    #[arg(long, default_value = "lognormal:100ms:0.5")]
    pub(crate) service: String,
    /// Requests one replica serves at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) slots: u32,
    /// Requests one replica may queue beyond its slots.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub(crate) queue: u32,
    /// Requests waiting longer than this time out.
    #[arg(long, default_value = "10s")]
    pub(crate) timeout: String,
    /// Cold start of a new replica: a duration, lognormal:MEDIAN:SIGMA, or empirical:FILE (measured
    /// latencies in ms in a 'value' column, e.g. Alibaba's basemodel_update_latency_anon.tar.gz).
    #[arg(long, default_value = "lognormal:20s:0.4")]
    pub(crate) cold_start: String,
    /// The most replicas the cluster can run (out of GPU nodes beyond it).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) max_cluster_replicas: Option<u32>,
    /// maxReplicas of the baselines (default: 4x the oracle's peak).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) max_replicas: Option<u32>,
    /// GPUs per replica, for GPU-hours.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) gpus_per_replica: f64,
    /// Start the policies that may scale to zero (Ebb's built-in, KPA) with no replica, as a
    /// service after a silence with nothing learnt, and the others at their minimum (with
    /// --llm too); by default every policy starts with the replicas the first minute needs,
    /// ready.
    #[arg(long, conflicts_with_all = ["multi_model", "pools", "llm_frontier"])]
    pub(crate) start_at_zero: bool,
    /// Stretch time by this factor (0.5 plays the trace twice as fast).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) time_scale: f64,
    /// Multiply the request rate by this factor.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) rate_scale: f64,
    /// Start this far into the trace (after time scaling). A window that starts later draws
    /// its own arrivals, service times and cold starts (the seed mixed with the start), not
    /// those of the trace's first seconds again.
    #[arg(long, default_value = "0s")]
    pub(crate) from: String,
    /// Where the trace's first second lies on the calendar (RFC 3339, e.g.
    /// 1995-07-01T00:00:00-04:00), for a policy's schedules; --from moves along from it. A
    /// Prometheus answer's own times serve where it is not given.
    #[arg(long)]
    pub(crate) start: Option<String>,
    /// Replay only this long (after time scaling).
    #[arg(long)]
    pub(crate) duration: Option<String>,
    /// Seconds between Ebb's decisions.
    #[arg(long, default_value = "1s")]
    pub(crate) ebb_sync: String,
    /// Seed for arrivals, service times and cold starts.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Multi-model serving: each model of the trace (alibaba-lora's checkpoints, a csv's
    /// model column) is scaled on its own traffic and packed onto shared servers; compares
    /// Ebb's coordinated placement with packing without consolidation and one server per
    /// model (Ebb's policy and HPA's).
    #[arg(long)]
    pub(crate) multi_model: bool,
    /// Multi-model: memory of one server replica (e.g. 80GiB).
    #[arg(long, default_value = "80GiB")]
    pub(crate) server_memory: String,
    /// Multi-model: share of each server's memory kept free.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) server_headroom: f64,
    /// Multi-model: most models one server hosts (default: no limit).
    #[arg(long)]
    pub(crate) server_max_models: Option<u32>,
    /// Multi-model: most server replicas.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) max_servers: u32,
    /// Multi-model: start time of a new server replica before it loads models (a duration or
    /// lognormal:MEDIAN:SIGMA).
    #[arg(long, default_value = "lognormal:30s:0.3")]
    pub(crate) server_start: String,
    /// Multi-model: memory of each model's replica: fixed:SIZE, uniform:LO:HI (drawn by model
    /// name), or empirical:FILE (a 'value' column in bytes, e.g. Alibaba's
    /// pod_gpu_memory_used_bytes_anon.tar.gz).
    #[arg(long, default_value = "uniform:4GiB:24GiB")]
    pub(crate) model_memory: String,
    /// Multi-model: how long the fleet must run above the lower bound before Ebb consolidates.
    #[arg(long, default_value = "2m")]
    pub(crate) consolidate_after: String,
    /// LLM serving, token by token: each replica is the engine model of `ebb demo-llm`
    /// (continuous batching, a KV cache, chunked prefill); the trace must carry prompt and
    /// output tokens (azure-llm, mooncake). Compares Ebb's engine policy (or --policy's, which
    /// needs an engine block) with HPA on duty cycle, HPA on request rate and KPA.
    #[arg(long, conflicts_with = "multi_model")]
    pub(crate) llm: bool,
    /// LLM: instead of the defaults, sweep each family's own knob (Ebb's KV-cache target, HPA's
    /// duty-cycle target, HPA's rate target, KPA's concurrency target) and print the
    /// cost/attainment frontiers, read at the duty-cycle policy's default point.
    #[arg(long, requires = "llm")]
    pub(crate) llm_frontier: bool,
    /// LLM: disaggregated serving. Each request is prefilled on a prefill pool, its KV cache
    /// handed over, and decoded on a decode pool; compares Ebb's pools policy (or --policy's, a
    /// `pools:` document) with one HPA or KPA per pool.
    #[arg(long, requires = "llm", conflicts_with = "llm_frontier")]
    pub(crate) pools: bool,
    /// LLM with --pools: microseconds to hand one prompt token's KV cache from a prefill to a
    /// decode replica (5: an 8B model's 128 KiB a token over 25 GB/s).
    #[arg(long, default_value_t = 5.0, requires = "pools")]
    pub(crate) kv_transfer_us: f64,
    /// LLM: time-to-first-token SLO.
    #[arg(long, default_value = "2s")]
    pub(crate) ttft: String,
    /// LLM: time-per-output-token SLO (a request's decode time over its tokens after the first).
    #[arg(long, default_value = "100ms")]
    pub(crate) tpot: String,
    /// LLM: the engine of each replica (default: 16,384 KV blocks of 16 tokens, 256 sequences,
    /// `ebb demo-llm`'s step times).
    #[command(flatten)]
    pub(crate) engine: crate::engine_args::EngineArgs,
}

/// Parses a duration argument (`90s`, `2m`) into seconds.
pub(crate) fn parse_seconds(s: &str) -> anyhow::Result<f64> {
    parse_duration(s).map_err(anyhow::Error::msg)
}

pub(crate) fn cold_start(spec: &str) -> anyhow::Result<ColdStart> {
    let parts: Vec<&str> = spec.split(':').collect();
    Ok(match parts.as_slice() {
        ["lognormal", median, sigma] => ColdStart::LogNormal {
            median: parse_duration(median).map_err(anyhow::Error::msg)?,
            sigma: sigma
                .parse::<f64>()
                .ok()
                .filter(|v| (0.0..=ebb_sim::service::MAX_SIGMA).contains(v))
                .with_context(|| {
                    format!(
                        "--cold-start '{spec}': sigma must be a number in [0, {}]",
                        ebb_sim::service::MAX_SIGMA
                    )
                })?,
        },
        ["empirical", path] => ColdStart::Empirical(ebb_sim::trace::read_latencies_ms(std::path::Path::new(path))?),
        [d] => ColdStart::Fixed(parse_duration(d).map_err(anyhow::Error::msg)?),
        _ => bail!("--cold-start '{spec}': expected a duration (20s), lognormal:20s:0.4, or empirical:FILE (a CSV or tar.gz with a 'value' column in ms)"),
    })
}

fn positive(name: &str, v: f64) -> anyhow::Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        bail!("{name} must be a positive number, got {v}")
    }
}

/// A time scale: stretching a trace beyond a thousandfold either way turns seconds into
/// nothing or into centuries.
fn factor(name: &str, v: f64) -> anyhow::Result<f64> {
    if v.is_finite() && (1e-3..=1e3).contains(&v) {
        Ok(v)
    } else {
        bail!("{name} must be between 0.001 and 1000, got {v}")
    }
}

/// Everything a simulation needs that its flags say: the workload, the cluster, notes.
pub(crate) struct Prepared {
    pub(crate) workload: Workload,
    pub(crate) model_names: Vec<String>,
    pub(crate) cfg: RunConfig,
    pub(crate) notes: Vec<String>,
    pub(crate) name: String,
    pub(crate) command: String,
    pub(crate) sync: f64,
    pub(crate) attainment: f64,
    pub(crate) timeout: f64,
    /// The trace's time zero on the calendar, where the trace records it (Unix ms).
    pub(crate) start_unix_ms: Option<i64>,
}

/// Reads and checks the workload and cluster flags (shared by `ebb simulate` and `ebb tune`).
pub(crate) fn prepare(args: &SimulateArgs) -> anyhow::Result<Prepared> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let slo = parse_duration(&args.slo).map_err(|e| anyhow::anyhow!("--slo: {e}"))?;
    if !(slo > 0.0 && slo <= 3600.0) {
        bail!("--slo must be above 0 and at most 1h, got {}", args.slo);
    }
    let attainment = ebb_core::policy::parse_percent(&args.attainment)
        .map(ebb_core::policy::share_of_percent)
        .map_err(|e| anyhow::anyhow!("--attainment: {e}"))?;
    let mut service: ServiceTime = args
        .service
        .parse()
        .map_err(|e| anyhow::anyhow!("--service: {e}"))?;
    let timeout = parse_duration(&args.timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    if args.slots == 0 {
        bail!("--slots must be at least 1");
    }
    factor("--time-scale", args.time_scale)?;
    // Thinning a huge trace to a sliver is fine; multiplying it is bounded (its requests are
    // generated).
    if !(args.rate_scale.is_finite() && args.rate_scale > 0.0 && args.rate_scale <= 1e3) {
        bail!(
            "--rate-scale must be above 0 and at most 1000, got {}",
            args.rate_scale
        );
    }
    positive("--gpus-per-replica", args.gpus_per_replica)?;
    let sync = positive(
        "--ebb-sync",
        parse_duration(&args.ebb_sync).map_err(anyhow::Error::msg)?,
    )?;

    let mut notes = Vec::new();
    let mut model_names = Vec::new();
    let mut start_unix_ms = None;
    let fetched = match (&args.prometheus, &args.query) {
        (Some(url), Some(query)) => Some(prometheus::fetch(
            &prometheus::Fetch {
                url,
                query,
                since_seconds: parse_duration(args.since.as_deref().unwrap_or("7d"))
                    .map_err(|e| anyhow::anyhow!("--since: {e}"))?,
                step_seconds: parse_duration(args.step.as_deref().unwrap_or("15s"))
                    .map_err(|e| anyhow::anyhow!("--step: {e}"))?,
                credentials: prometheus::Credentials {
                    token_file: args.prometheus_token_file.as_deref(),
                    user: args.prometheus_user.as_deref(),
                    password_file: args.prometheus_password_file.as_deref(),
                    ca_file: args.prometheus_ca_file.as_deref(),
                },
            },
            &args.report,
        )?),
        _ => None,
    };
    let (mut workload, name) = match (fetched.as_ref().or(args.trace.as_ref()), &args.synthetic) {
        (Some(path), _) => {
            let format = match &args.trace_format {
                Some(f) => Some(
                    TraceFormat::from_name(f)
                        .with_context(|| format!("--trace-format: unknown format '{f}'"))?,
                ),
                None => None,
            };
            let trace = read_trace(path, format)?;
            model_names = trace.model_names.clone();
            start_unix_ms = trace.start_unix_ms;
            notes.push(format!(
                "trace {} read as {}",
                path.display(),
                trace.format.name()
            ));
            notes.extend(trace.notes.clone());
            let mut w = trace.workload;
            if let Some(share) = w.recorded_to_the_second() {
                notes.push(format!(
                    "{:.1}% of the arrival times are whole seconds (recorded to the second): each request is spread uniformly within its second",
                    share * 100.0
                ));
                w = w.spread_within_seconds(args.seed);
            }
            if trace.format == TraceFormat::AlibabaDlrm {
                // Replica counts become demand at the baselines' target utilization.
                let per_replica = f64::from(args.slots) / service.mean() * TARGET_UTILIZATION;
                if let Workload::Rate { rates, .. } = &mut w {
                    rates.iter_mut().for_each(|r| *r *= per_replica);
                }
            }
            (
                w,
                path.file_name()
                    .map_or("trace".into(), |n| n.to_string_lossy().into_owned()),
            )
        }
        (None, spec) => {
            let spec = spec.as_deref().unwrap_or(DEFAULT_SYNTHETIC);
            (
                synthetic::parse(spec).map_err(|e| anyhow::anyhow!("--synthetic {e}"))?,
                format!("synthetic {spec}"),
            )
        }
    };
    if args.time_scale != 1.0 {
        workload = workload.time_scaled(args.time_scale);
        notes.push(format!("time scaled by {}", args.time_scale));
    }
    if args.rate_scale != 1.0 {
        workload = workload.rate_scaled(args.rate_scale, args.seed);
        notes.push(format!("rate scaled by {}", args.rate_scale));
    }
    let from = parse_duration(&args.from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let length = args
        .duration
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
    if from > 0.0 || length.is_some() {
        workload = workload.window(from, length);
        notes.push(format!(
            "window from {from}s for {}",
            length.map_or("the rest".into(), |l| format!("{l}s"))
        ));
    }
    if let ServiceTime::Proportional { mean_work, .. } = &mut service {
        let m = workload.mean_work();
        *mean_work = if m.is_finite() { m } else { 1.0 };
    }
    let expected = workload.expected_requests();
    if expected < 1.0 {
        bail!("the workload holds no requests in the chosen window");
    }
    let span = workload.duration();
    if span > ebb_core::time::MAX_DURATION_SECONDS {
        bail!(
            "the workload lasts {:.0} days after --time-scale; the simulator replays at most a year: pass a smaller --time-scale or a --duration",
            span / 86_400.0
        );
    }
    if expected > MAX_REQUESTS {
        bail!(
            "the workload holds about {expected:.3e} requests, more than this simulator replays in one run ({MAX_REQUESTS:.0e}); pass --rate-scale {:.2e} or a shorter --duration",
            MAX_REQUESTS / expected / 2.0
        );
    }

    let cfg = RunConfig {
        cluster: ClusterConfig {
            slots: args.slots,
            queue_per_replica: args.queue,
            activator_queue: 10_000,
            timeout,
            cold_start: cold_start(&args.cold_start)?,
            max_replicas: args.max_cluster_replicas,
            start: if args.start_at_zero {
                ebb_sim::Start::AtZero
            } else {
                ebb_sim::Start::Warm
            },
        },
        service: service.clone(),
        slo,
        bucket: bucket_for(workload.duration()),
        seed: ebb_sim::workload::window_seed(args.seed, from),
        gpus_per_replica: args.gpus_per_replica,
    };
    Ok(Prepared {
        workload,
        model_names,
        cfg,
        notes,
        name,
        command,
        sync,
        attainment,
        timeout,
        start_unix_ms,
    })
}

/// Where the replayed window's time zero lies on the calendar: `--start`, else where the
/// trace records it (`trace_start`, Unix ms), moved along by `--from`. A policy with schedules
/// needs it; without schedules the calendar is not read.
fn calendar_epoch(
    args: &SimulateArgs,
    policy: &ebb_core::Policy,
    trace_start: Option<i64>,
) -> anyhow::Result<i64> {
    let start = match (args.start.as_deref(), trace_start) {
        (Some(start), _) => chrono::DateTime::parse_from_rfc3339(start)
            .map_err(|e| {
                anyhow::anyhow!(
                    "--start: '{start}' is not an RFC 3339 time ({e}), e.g. 1995-07-01T00:00:00-04:00"
                )
            })?
            .timestamp_millis(),
        (None, Some(recorded)) => recorded,
        (None, None) if policy.schedules.is_empty() => return Ok(0),
        (None, None) => bail!("--start: the policy has schedules, so the simulation needs the trace's start on the calendar (RFC 3339, e.g. --start 1995-07-01T00:00:00-04:00)"),
    };
    let from = parse_duration(&args.from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    Ok(start + (from * 1000.0).round() as i64)
}

/// `ebb simulate`: Ebb's policy beside the baselines on one workload (or the multi-model
/// modes), a table on stdout and a report on disk.
pub(crate) fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let prepared = prepare(&args)?;
    if args.multi_model {
        return multi::run(&args, prepared);
    }
    if args.llm {
        return llm::run(&args, prepared);
    }
    if args.engine.any() {
        bail!("the engine flags (--kv-blocks, --step-ms, ...) describe the replicas of a token-level run: pass --llm with a trace that has prompt and output tokens");
    }
    let Prepared {
        workload,
        cfg,
        mut notes,
        name,
        command,
        sync,
        attainment,
        timeout,
        start_unix_ms,
        ..
    } = prepared;
    let baselines = parse_baselines(&args.baselines)?;
    let policy = ebb_policy(&args, cfg.slo, attainment)?;
    let epoch_unix_ms = calendar_epoch(&args, &policy, start_unix_ms)?;
    let ebb = EbbSpec {
        name: "ebb".into(),
        policy,
        scrape_interval: 1.0,
        rate_window: 10.0,
        sync_period: sync,
        epoch_unix_ms,
    };
    let service = &cfg.service;
    notes.push(format!(
        "cluster: {} slots per replica, queue {}, timeout {}s, cold start {}, service {service} (mean {:.0} ms), {:.1} req/s per replica at full slots",
        cfg.cluster.slots,
        cfg.cluster.queue_per_replica,
        timeout,
        args.cold_start,
        service.mean() * 1000.0,
        f64::from(args.slots) / service.mean()
    ));
    eprintln!(
        "simulating {name}: {:.0} s, about {:.0} requests, {} policies",
        workload.duration(),
        workload.expected_requests(),
        baselines.len() + 1
    );
    let started = std::time::Instant::now();
    let comparison = compare_with_progress(&workload, &cfg, &ebb, &baselines, args.max_replicas);
    let elapsed = started.elapsed().as_secs_f64();
    let info = RunInfo {
        workload: name,
        command,
        slo: cfg.slo,
        notes,
    };
    println!("{}", report::table(&comparison));
    let files = report::write(&args.report, &comparison, &info)
        .with_context(|| format!("cannot write the report to {}", args.report.display()))?;
    print_done(
        comparison.results.len(),
        "policies",
        elapsed,
        &args.report,
        &files,
    );
    Ok(ExitCode::SUCCESS)
}

/// `--baselines`: a comma-separated list, or `none`.
fn parse_baselines(text: &str) -> anyhow::Result<Vec<Baseline>> {
    if text.trim() == "none" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|b| {
            Baseline::from_name(b).with_context(|| {
                format!("--baselines: unknown baseline '{b}' (hpa, kpa, peak, oracle)")
            })
        })
        .collect()
}

/// Ebb's policy: the file `--policy` names, or the built-in SLO policy at `--slo` and
/// `--attainment`; `--slo-tuning` applies to either's `slo` block.
fn ebb_policy(args: &SimulateArgs, slo: f64, attainment: f64) -> anyhow::Result<Policy> {
    let mut p = match &args.policy {
        Some(path) => read_policy(path)?,
        None => default_ebb_policy(
            slo,
            attainment,
            args.slots,
            args.max_replicas.unwrap_or(1000),
        ),
    };
    if !args.slo_tuning.trim().is_empty() {
        let s = p.slo.as_mut().with_context(|| {
            "--slo-tuning: the policy has no `slo` block for its constants to apply to"
        })?;
        s.tuning = s
            .tuning
            .parse(&args.slo_tuning)
            .map_err(|e| anyhow::anyhow!("--slo-tuning: {e}"))?;
    }
    Ok(p)
}

/// The policy file `path`, read and validated.
pub(crate) fn read_policy_file(path: &std::path::Path) -> anyhow::Result<Policy> {
    let text = read_policy_text(path)?;
    Policy::from_yaml(&text).map_err(|e| {
        // Only a document that is not a policy is read again, to say where it belongs.
        if is_pools_document(&text) {
            anyhow::anyhow!(
                "policy {}: a pools document (prefill and decode pools) is simulated with --llm --pools",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("policy {}", path.display()))
        }
    })
}

fn read_policy_text(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read policy {}", path.display()))
}

/// The `pools` document `--policy` names for a `--llm --pools` run; a single policy there is
/// told where it belongs.
pub(crate) fn read_pools_file(
    path: &std::path::Path,
) -> anyhow::Result<ebb_core::pools::PoolsPolicy> {
    let text = read_policy_text(path)?;
    ebb_core::pools::PoolsPolicy::from_yaml(&text).map_err(|e| {
        if is_pools_document(&text) {
            anyhow::anyhow!("policy {}: {e}", path.display())
        } else {
            anyhow::anyhow!(
                "--pools: policy {} is a single policy; a pools document holds `pools: {{prefill: ..., decode: ..., ratio: ...}}` (examples/policies/pools-vllm.yaml)",
                path.display()
            )
        }
    })
}

/// Whether a policy document is a `pools` document (its top level names `pools`, and no
/// `services`: an `ebb up` configuration may pair services as pools too).
pub(crate) fn is_pools_document(text: &str) -> bool {
    serde_yaml::from_str::<serde_yaml::Value>(text)
        .ok()
        .is_some_and(|v| v.get("pools").is_some() && v.get("services").is_none())
}

/// The policy file `--policy` names for a request-level run. An `engine` block is refused
/// there: requests carry no engine's tokens and KV cache, so its signals would never come and
/// the policy would hold its first count through the whole trace.
pub(crate) fn read_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    let policy = read_policy_file(path)?;
    if policy.engine.is_some() {
        bail!(
            "policy {}: engine: the request-level simulator has no engine's tokens and KV cache, so its signals would never come (and the count would be held); pass --llm with a trace that has prompt and output tokens (azure-llm, mooncake) to simulate it token by token",
            path.display()
        );
    }
    Ok(policy)
}

/// Runs the comparison with one progress bar per policy.
fn compare_with_progress(
    workload: &Workload,
    cfg: &RunConfig,
    ebb: &EbbSpec,
    baselines: &[Baseline],
    max_replicas: Option<u32>,
) -> ebb_sim::compare::Comparison {
    let names: Vec<String> = std::iter::once("ebb".to_string())
        .chain(baselines.iter().map(|b| format!("{b:?}").to_lowercase()))
        .collect();
    let (_multi, bars) = progress_bars(&names);
    let comparison = compare(
        workload,
        cfg,
        Some(ebb),
        baselines,
        max_replicas,
        &|i, f| {
            if let Some(b) = bars.get(i) {
                b.set_position((f * 1000.0) as u64);
            }
        },
    );
    for b in &bars {
        b.finish();
    }
    comparison
}

/// The last line of a simulation: how many runs, how long, where the report is.
pub(crate) fn print_done(
    runs: usize,
    what: &str,
    elapsed: f64,
    dir: &std::path::Path,
    files: &[PathBuf],
) {
    let page = files
        .last()
        .map_or(dir.display().to_string(), |p| p.display().to_string());
    println!("simulated {runs} {what} in {elapsed:.1}s; report: {page}");
}

/// One progress bar per run, shown together (they must outlive the runs).
pub(crate) fn progress_bars(names: &[String]) -> (MultiProgress, Vec<ProgressBar>) {
    let multi = MultiProgress::new();
    let width = names.iter().map(String::len).max().unwrap_or(8).max(8);
    let style = ProgressStyle::with_template(&format!(
        "{{prefix:>{width}}} [{{bar:40}}] {{percent:>3}}% {{elapsed_precise}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bars = names
        .iter()
        .map(|n| {
            let b = multi.add(ProgressBar::new(1000));
            b.set_style(style.clone());
            b.set_prefix(n.clone());
            b
        })
        .collect();
    (multi, bars)
}

/// A time-series bucket that gives plots about a thousand points.
fn bucket_for(duration: f64) -> f64 {
    let raw = (duration / 1000.0).max(1.0);
    [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    ]
    .into_iter()
    .find(|b| *b >= raw)
    .unwrap_or(3600.0)
}
