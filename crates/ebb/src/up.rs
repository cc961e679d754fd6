//! `ebb up`, `ebb demo-model`, `ebb demo-llm` and `ebb load`: the embedded default on one
//! machine.

use anyhow::{bail, Context};
use clap::Args;
use ebb_local::config::Config;
use ebb_local::demo_llm::DemoLlm;
use ebb_local::demo_model::DemoModel;
use ebb_local::runtime::{self, ViewOptions};
use ebb_sim::engine::EngineParams;
use ebb_sim::service::parse_duration;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct UpArgs {
    /// The configuration (services, their commands, policies, proxy addresses).
    config: PathBuf,
    /// Print one status line a second instead of the live view.
    #[arg(long)]
    plain: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DemoModelArgs {
    /// Port to listen on.
    #[arg(long)]
    port: u16,
    /// Address to listen on (a pod's IP when a test plays the kubelet).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Model name in the V2 URLs.
    #[arg(long, default_value = "iris")]
    name: String,
    /// Minimum time one request holds a slot, in milliseconds.
    #[arg(long, default_value_t = 50)]
    service_ms: u64,
    /// Requests served at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Host several models (comma-separated names), loaded and unloaded through the V2
    /// repository API; `--name` is then ignored.
    #[arg(long, value_delimiter = ',')]
    repository: Vec<String>,
    /// Repository models loaded at start (comma-separated).
    #[arg(long, value_delimiter = ',')]
    preload: Vec<String>,
    /// How long loading a repository model takes, in milliseconds.
    #[arg(long, default_value_t = 300)]
    load_ms: u64,
    /// How long after starting it reports ready, in milliseconds (a real server loading its
    /// weights): until then readiness and inference answer 503.
    #[arg(long, default_value_t = 0)]
    startup_ms: u64,
}

#[derive(Args, Debug)]
pub(crate) struct DemoLlmArgs {
    /// Port to listen on.
    #[arg(long)]
    port: u16,
    /// Address to listen on (a pod's IP when a test plays the kubelet).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// The model name it serves.
    #[arg(long, default_value = "demo")]
    model: String,
    #[command(flatten)]
    engine: crate::engine_args::EngineArgs,
    /// Requests waiting at most; more are answered 503.
    #[arg(long, default_value_t = 10_000)]
    max_waiting: usize,
    /// Disaggregated serving: `prefill` computes the prompt and answers with the first token
    /// (a disaggregation router then sends the request to a decode replica); `decode` takes
    /// the prompt as computed elsewhere and generates every token; `whole` does both.
    #[arg(long, value_enum, default_value_t = Role::Whole)]
    role: Role,
}

/// What a demo engine does with a request.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Prefill and decode.
    Whole,
    /// Prefill only.
    Prefill,
    /// Decode only.
    Decode,
}

impl From<Role> for ebb_sim::engine::Stage {
    fn from(r: Role) -> Self {
        match r {
            Role::Whole => ebb_sim::engine::Stage::Whole,
            Role::Prefill => ebb_sim::engine::Stage::Prefill,
            Role::Decode => ebb_sim::engine::Stage::Decode,
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct FaultReplicaArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long)]
    port: u16,
    /// Directory of control files: PORT or `all` holds the mode (ok, slow:MS, error, reset,
    /// hang, stop-reading).
    #[arg(long)]
    control: PathBuf,
    /// The readiness path, answered 200 in `error` mode.
    #[arg(long, default_value = "/ready")]
    readiness_path: String,
    /// Keep running on SIGTERM (a replica that does not stop when asked).
    #[arg(long)]
    ignore_sigterm: bool,
}

#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    /// Where to send: http://127.0.0.1:PORT/PATH (loopback only).
    #[arg(long)]
    target: String,
    /// step:LOW:HIGH:AT:D, ramp:FROM:TO:D, spikes:BASE:PEAK:EVERY:WIDTH:D, sine:..., onoff:..., constant:R:D,
    /// flashes:BASE:PEAK:GAP:WIDTH:D (bursts at random times, GAP apart on average),
    /// or trace:FILE (any trace `ebb simulate` reads).
    #[arg(long)]
    pattern: String,
    /// Stop after this long (default: the pattern's length).
    #[arg(long)]
    duration: Option<String>,
    /// Request body (default: a V2 inference request for the demo model).
    #[arg(long)]
    body: Option<String>,
    /// Seed of the Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Ctrl-C, SIGTERM, or SIGHUP (the terminal closed): all mean drain and stop.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = recv(&mut term) => {}
        _ = recv(&mut hup) => {}
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let config = Config::from_yaml(&text).with_context(|| format!("{}", args.config.display()))?;
    for s in &config.services {
        match &s.models {
            None => println!(
                "ebb up: {} ({} to {} replicas of `{}`)",
                s.name,
                s.policy.min_replicas,
                s.policy.max_replicas,
                s.command.join(" ")
            ),
            Some(m) => println!(
                "ebb up: {}: models {} packed onto {} to {} servers of {} MiB (`{}`)",
                s.name,
                m.models
                    .iter()
                    .map(|x| format!("{} ({} MiB)", x.name, x.memory_mib))
                    .collect::<Vec<_>>()
                    .join(", "),
                m.server.min_replicas,
                m.server.max_replicas,
                m.server.capacity_mib,
                s.command.join(" ")
            ),
        }
    }
    if let Some(l) = &config.load {
        let phases: Vec<String> = l
            .phases
            .iter()
            .map(|p| format!("{} req/s for {}s", p.rate, p.seconds))
            .collect();
        println!(
            "load: {} to {}{}",
            phases.join(", then "),
            l.service,
            if l.exit_after { ", then exit" } else { "" }
        );
    }
    let view = ViewOptions {
        live: !args.plain && ViewOptions::detect().live,
        quiet: false,
    };
    let summary = runtime()?.block_on(runtime::run(config, view, shutdown_signal()))?;
    print!("{summary}");
    if let Some(e) = &summary.load_error {
        bail!("the configured load did not run: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn fault_replica(args: FaultReplicaArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
        let cfg = ebb_local::fault_replica::FaultReplica {
            port: args.port,
            control: args.control,
            readiness_path: args.readiness_path,
        };
        let stop = async {
            if args.ignore_sigterm {
                // Holding the handler keeps SIGTERM from ending the process.
                let _term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
                tokio::signal::ctrl_c().await.ok();
            } else {
                shutdown_signal().await;
            }
        };
        tokio::select! {
            _ = ebb_local::fault_replica::serve(listener, cfg) => {}
            _ = stop => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn demo_model(args: DemoModelArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host, args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let cfg = DemoModel {
            name: args.name,
            service: Duration::from_millis(args.service_ms),
            concurrency: args.concurrency,
            repository: args.repository,
            preload: args.preload,
            load: Duration::from_millis(args.load_ms),
            startup: Duration::from_millis(args.startup_ms),
        };
        ebb_local::demo_model::serve(listener, cfg, shutdown_signal()).await;
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn demo_llm(args: DemoLlmArgs) -> anyhow::Result<ExitCode> {
    let engine = args.engine.params(EngineParams::default())?;
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host, args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let cfg = DemoLlm {
            model: args.model,
            engine,
            max_waiting: args.max_waiting,
            stage: args.role.into(),
        };
        tokio::select! {
            _ = ebb_local::demo_llm::serve(listener, cfg) => {}
            _ = shutdown_signal() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn target(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--target '{url}' must start with http://"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let host = host.replace("localhost", "127.0.0.1");
    let addr: SocketAddr = host
        .parse()
        .with_context(|| format!("--target host '{host}' must be an IP:port on loopback"))?;
    Ok((addr, path))
}

fn rates(pattern: &str) -> anyhow::Result<Vec<f64>> {
    let w = match pattern.strip_prefix("trace:") {
        Some(path) => ebb_sim::trace::read_trace(std::path::Path::new(path), None)?.workload,
        None => ebb_sim::synthetic::parse(pattern).map_err(|e| anyhow::anyhow!("--pattern {e}"))?,
    };
    let seconds = w.duration().ceil() as usize + 1;
    let mut per_second = vec![0.0; seconds];
    match &w {
        ebb_sim::Workload::Rate { interval, rates } => {
            for (s, r) in per_second.iter_mut().enumerate() {
                *r = rates
                    .get((s as f64 / interval) as usize)
                    .copied()
                    .unwrap_or(0.0);
            }
        }
        ebb_sim::Workload::Requests(reqs) => {
            for q in reqs {
                per_second[q.at as usize] += 1.0;
            }
        }
    }
    Ok(per_second)
}

pub(crate) fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let (addr, path) = target(&args.target)?;
    let mut r = rates(&args.pattern)?;
    if let Some(d) = &args.duration {
        let d = parse_duration(d).map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
        r.truncate(d.ceil() as usize);
    }
    if r.is_empty() {
        bail!("the pattern holds no requests");
    }
    let body = args
        .body
        .unwrap_or_else(|| ebb_local::load::V2_BODY.to_string());
    eprintln!(
        "ebb load: about {:.0} requests over {} s to {addr}{path}",
        r.iter().sum::<f64>(),
        r.len()
    );
    let report = runtime()?.block_on(ebb_local::load::run(addr, &path, &body, &r, args.seed))?;
    println!("{}", report.summary());
    Ok(ExitCode::SUCCESS)
}
