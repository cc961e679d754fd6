//! `ebb gateway`: Ebb's proxy in the cluster, in front of a Service's pods (see
//! `ebb_kube::gateway`).

use anyhow::Context;
use clap::Args;
use ebb_kube::gateway::{GatewayConfig, SlotsSource};
use ebb_proxy::proxy::QueueLimits;
use ebb_proxy::settings::{HealthSettings, ProxySettings};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct GatewayArgs {
    /// A kubeconfig file (default: in-cluster config, then $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The pods' namespace (default: $POD_NAMESPACE, else "default").
    #[arg(long)]
    namespace: Option<String>,
    /// Label selector of the pods to route to, e.g. app=model.
    #[arg(long)]
    selector: String,
    /// The pods' serving port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    target_port: u16,
    /// The name its metrics carry (default: the selector).
    #[arg(long)]
    name: Option<String>,
    /// Where it takes requests.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: std::net::SocketAddr,
    /// Where /metrics, /ebb/status, /healthz and /readyz are served (read by the controller's
    /// gateway source).
    #[arg(long, default_value = "0.0.0.0:9901")]
    admin: std::net::SocketAddr,
    /// Requests held at most while no pod is ready; more are answered 503.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    queue_capacity: u32,
    /// How long a request is held while no pod is ready, in seconds (longer than the
    /// model's cold start).
    #[arg(long, default_value_t = 300.0)]
    queue_timeout_seconds: f64,
    /// How long a stop waits for requests in flight, in seconds.
    #[arg(long, default_value_t = 30.0)]
    drain_seconds: f64,
    /// The proxy's limits, timeouts and retries, as `ebb up`'s `proxy:` block in YAML, e.g.
    /// '{retryNonIdempotent: true, maxBodyBytes: 8388608}'.
    #[arg(long, default_value = "{}")]
    proxy: String,
    /// Ejection of failing pods, as `ebb up`'s `health:` block in YAML, e.g.
    /// '{consecutiveFailures: 3}'.
    #[arg(long, default_value = "{}")]
    health: String,
    /// The Autoscaler (in the gateway's namespace) whose `slo.slotsPerReplica` says how many
    /// requests a pod serves at once, followed as it changes: the answer to a request sent to
    /// a pod with all of them taken includes a wait in the pod's own queue, and is not counted
    /// as a service time. While it is gone (deleted, or not created yet) every answer is
    /// timed. Needs get/list/watch on autoscalers.ebb.dev.
    #[arg(long, conflicts_with = "slots_per_replica")]
    autoscaler: Option<String>,
    /// Requests a pod serves at once, stated here instead of read from `--autoscaler` (keep it
    /// equal to the Autoscaler's `slo.slotsPerReplica`). Neither: every answer is counted.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    slots_per_replica: Option<u32>,
}

/// A duration flag, checked as `ebb up` checks its durations (in (0, a day]).
fn seconds(flag: &str, v: f64) -> anyhow::Result<Duration> {
    ebb_proxy::settings::secs(&format!("--{flag}"), Some(v), v).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .json()
        .try_init();
    let cfg = GatewayConfig {
        name: args.name.unwrap_or_else(|| args.selector.clone()),
        namespace: args
            .namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into()),
        selector: args.selector,
        target_port: args.target_port,
        listen: args.listen,
        admin: args.admin,
        queue: QueueLimits {
            capacity: args.queue_capacity as usize,
            timeout: seconds("queue-timeout-seconds", args.queue_timeout_seconds)?,
        },
        proxy: ProxySettings::from_yaml("--proxy", &args.proxy)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        health: HealthSettings::from_yaml("--health", &args.health)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        drain: seconds("drain-seconds", args.drain_seconds)?,
        slots: match (args.autoscaler, args.slots_per_replica) {
            (Some(name), _) => SlotsSource::Autoscaler(name),
            (None, Some(slots)) => SlotsSource::Fixed(slots),
            (None, None) => SlotsSource::Unknown,
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let client = ebb_kube::client(args.kubeconfig.as_deref()).await?;
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        };
        ebb_kube::gateway::run(client, cfg, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })?;
    Ok(ExitCode::SUCCESS)
}
