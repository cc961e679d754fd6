//! `ebb controller` and `ebb crd`: the Kubernetes controller and its CustomResourceDefinition.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct ControllerArgs {
    /// A kubeconfig file (default: in-cluster config, then $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Watch Autoscalers of this namespace only (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// This instance's identity in the Lease (default: $POD_NAME, else the host name).
    #[arg(long)]
    identity: Option<String>,
    /// Act at once, without leader election (one replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else "default").
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "ebb-controller")]
    lease_name: String,
    /// Lease duration in seconds: a new leader takes over within it.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Most reconciles at once; 0: no limit (the default: a bound queues changed decisions
    /// behind steady ones, see docs/benchmarks.md). A bound also bounds the API connections,
    /// since the API client has no HTTP/2.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=4096))]
    reconcile_concurrency: u16,
    /// Tests only: read the time (Unix milliseconds) from this file instead of the system
    /// clock.
    #[arg(long, hide = true)]
    clock_file: Option<PathBuf>,
    /// Log format: json (structured) or text.
    #[arg(long, default_value = "json")]
    log_format: String,
}

fn init_logs(format: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("--log-format must be json or text, got '{other}'"),
    }
    Ok(())
}

pub(crate) fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    init_logs(&args.log_format)?;
    let identity = args
        .identity
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| format!("ebb-{}", std::process::id()));
    let opts = ebb_kube::Options {
        kubeconfig: args.kubeconfig,
        namespace: args.namespace,
        identity,
        leader_election: !args.no_leader_election,
        lease_namespace: args
            .lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into()),
        lease_name: args.lease_name,
        lease_duration: Duration::from_secs(args.lease_duration_seconds.max(2)),
        metrics_addr: args.metrics_addr,
        concurrency: args.reconcile_concurrency,
        clock_file: args.clock_file,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        // Ctrl-C or SIGTERM (a rolling update): stop, releasing the Lease if leading.
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        };
        ebb_kube::run_until(opts, shutdown).await.map_err(anyhow::Error::from)
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn crd() -> anyhow::Result<ExitCode> {
    print!("{}", ebb_kube::crd::crd_yaml());
    Ok(ExitCode::SUCCESS)
}
