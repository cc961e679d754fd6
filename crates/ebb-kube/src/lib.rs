//! # ebb-kube: Ebb's Kubernetes controller
//!
//! Watches `Autoscaler` resources (`ebb.dev/v1alpha1`), reads their signals straight from
//! their sources (Prometheus, the target's pods, Redis, the resource metrics API: no metrics
//! adapter), lets `ebb_core::decide` decide, and applies the decision through the target's
//! `/scale` subresource. Only the instance holding the Lease acts.
//!
//! The modules, from the bottom up: `crd` (the resource and its validation), `sources` and
//! `exposition` (reading Prometheus, pod endpoints, Redis), `caches` (watches of Pods, HPAs
//! and Autoscalers), `memory` and `context` (what a pass shares and what is kept between
//! passes), `target` and `poll` (the gather stage), `actuate` (apply), `status` (report:
//! conditions, Events, writes only on change), `reconcile` (the stages in order) and
//! `placement_mode` (server replicas from packed models), `leader` (the Lease), `metrics`.

#![forbid(unsafe_code)]

pub mod actuate;
pub mod caches;
pub mod context;
pub mod crd;
mod engine_poll;
pub use ebb_proxy::exposition;
pub mod gateway;
pub mod leader;
mod memory;
pub mod metrics;
pub mod observe;
pub mod pause;
mod placement_mode;
mod poll;
mod pool_guard;
pub mod reconcile;
pub mod selector;
pub mod sources;
pub mod status;
mod target;

use futures::StreamExt;
use kube::runtime::{predicates, watcher, Controller, PredicateConfig, WatchStreamExt};
use kube::ResourceExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Installs the TLS crypto provider once (rustls with ring).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why the controller could not run.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// No usable cluster configuration.
    #[error("kubernetes configuration: {0}")]
    Config(String),
    /// The API server could not be reached or refused.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The metrics address could not be bound.
    #[error("metrics server on {addr}: {error}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// A kubeconfig file; `None`: in-cluster config, then `$KUBECONFIG`/`~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Watch Autoscalers of this namespace only (`None`: all namespaces).
    pub namespace: Option<String>,
    /// This instance's identity (its pod name).
    pub identity: String,
    /// Elect a leader through a Lease (off: act at once, for one replica).
    pub leader_election: bool,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// Lease duration.
    pub lease_duration: Duration,
    /// Where `/metrics`, `/healthz`, `/readyz` are served.
    pub metrics_addr: std::net::SocketAddr,
    /// Most reconciles at once (0: no limit).
    pub concurrency: u16,
    /// Tests only: read the time from this file (Unix milliseconds) instead of the system
    /// clock, so that a test moves it (to a schedule's start) rather than sleeping.
    pub clock_file: Option<PathBuf>,
}

/// A client from a kubeconfig file, or inferred (in-cluster first).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, ControllerError> {
    install_crypto();
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| ControllerError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| ControllerError::Config(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ControllerError::Config(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(ControllerError::Kube)
}

/// Runs the controller until `shutdown` completes; then, if it leads, it releases the Lease so
/// that another replica takes over at once.
pub async fn run_until(
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ControllerError> {
    let client = client(opts.kubeconfig.as_deref()).await?;
    let election = opts.leader_election.then(|| election(&opts));
    tokio::select! {
        r = run(opts) => r,
        _ = shutdown => {
            if let Some(e) = election {
                if let Err(err) = leader::release(client, &e).await {
                    tracing::warn!(error = %err, "could not release the lease");
                }
            }
            Ok(())
        }
    }
}

fn election(opts: &Options) -> leader::Election {
    leader::Election {
        namespace: opts.lease_namespace.clone(),
        name: opts.lease_name.clone(),
        identity: opts.identity.clone(),
        duration: opts.lease_duration,
        retry: (opts.lease_duration / 5).max(Duration::from_millis(200)),
    }
}

/// Runs the controller until the process is stopped.
pub async fn run(opts: Options) -> Result<(), ControllerError> {
    let client = client(opts.kubeconfig.as_deref()).await?;
    // Fail early, with a clear message, when the API server is not there.
    client.apiserver_version().await?;
    let metrics = Arc::new(metrics::ControllerMetrics::new());
    let listener_metrics = metrics.clone();
    let addr = opts.metrics_addr;
    let probe = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| ControllerError::Metrics { addr, error })?;
    drop(probe);
    tokio::spawn(async move {
        if let Err(e) = metrics::serve(addr, listener_metrics).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    let (tx, mut leading) = tokio::sync::watch::channel(!opts.leader_election);
    if opts.leader_election {
        tokio::spawn(leader::run(client.clone(), election(&opts), tx));
    }
    metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    // Pods and HPAs are watched for as long as the process runs, leading or not, so that a
    // new leader starts with warm caches.
    let (caches, watches) = caches::Caches::watch(&client, opts.namespace.as_deref());
    tokio::spawn(watches);
    let caches = Arc::new(caches);
    let ctx = Arc::new(context::Context::new(
        client.clone(),
        caches.clone(),
        &opts.identity,
        metrics.clone(),
        match &opts.clock_file {
            Some(path) => context::file_clock(path.clone()),
            None => context::system_clock(),
        },
    ));
    let api: kube::Api<crd::Autoscaler> = caches::api(&client, opts.namespace.as_deref());
    loop {
        // Stand by until this instance leads.
        while !*leading.borrow() {
            metrics.set_leader(false);
            if leading.changed().await.is_err() {
                return Ok(());
            }
        }
        metrics.set_leader(true);
        ctx.forget_decisions();
        tracing::info!(identity = %opts.identity, "leading: reconciling Autoscalers");
        // Reconcile on spec changes (generation) and on each Autoscaler's own requeue, not on
        // the status writes the controller itself makes.
        let (reader, writer) = kube::runtime::reflector::store();
        caches.use_autoscalers(reader.clone());
        let trigger = watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .predicate_filter(predicates::generation, PredicateConfig::default());
        let store = reader.clone();
        let config = kube::runtime::controller::Config::default().concurrency(opts.concurrency);
        let controller = Controller::for_stream(trigger, reader)
            .with_config(config)
            .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "reconcile error");
                }
            });
        let lost = async {
            loop {
                if leading.changed().await.is_err() || !*leading.borrow() {
                    break;
                }
            }
        };
        // Deleted Autoscalers' memory goes, from the watch cache, once a minute.
        let prune = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                let alive = store
                    .state()
                    .iter()
                    .map(|a| {
                        context::autoscaler_key(&a.namespace().unwrap_or_default(), &a.name_any())
                    })
                    .collect();
                ctx.retain_autoscalers(&alive);
            }
        };
        tokio::select! {
            _ = controller => return Ok(()),
            _ = prune => {}
            _ = lost => tracing::warn!(identity = %opts.identity, "lost the lease: standing by"),
        }
    }
}
