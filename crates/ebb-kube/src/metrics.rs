//! The controller's own metrics (`/metrics`), and its health endpoints: decisions, desired
//! and current replicas per target, source latency and errors, reconcile durations.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Target {
    namespace: String,
    autoscaler: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    namespace: String,
    autoscaler: String,
    source: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DryRunLabels {
    namespace: String,
    autoscaler: String,
    /// `ebb` (the counts a dry run would have set) or `target` (the counts it had).
    by: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    namespace: String,
    autoscaler: String,
    result: String,
}

/// The controller's metrics.
pub struct ControllerMetrics {
    registry: Mutex<Registry>,
    decisions: Family<Target, Counter>,
    desired: Family<Target, Gauge>,
    current: Family<Target, Gauge>,
    reconciles: Family<Outcome, Counter>,
    reconcile_seconds: Family<Target, Histogram>,
    source_seconds: Family<SourceLabels, Histogram>,
    source_errors: Family<SourceLabels, Counter>,
    leader: Gauge,
    status_writes: Counter,
    status_writes_skipped: Counter,
    dry_run_replica_seconds: Family<DryRunLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    consecutive_failures: Mutex<HashMap<(String, String), u32>>,
    /// Whether this instance is ready (leading, or standing by with a working client).
    pub ready: AtomicBool,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerMetrics {
    /// Registers every metric.
    pub fn new() -> ControllerMetrics {
        let m = ControllerMetrics {
            registry: Mutex::new(Registry::with_prefix("ebb_controller")),
            decisions: Family::default(),
            desired: Family::default(),
            current: Family::default(),
            reconciles: Family::default(),
            reconcile_seconds: Family::new_with_constructor(histogram),
            source_seconds: Family::new_with_constructor(histogram),
            source_errors: Family::default(),
            leader: Gauge::default(),
            status_writes: Counter::default(),
            status_writes_skipped: Counter::default(),
            dry_run_replica_seconds: Family::default(),
            consecutive_failures: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register("decisions", "Decisions made", m.decisions.clone());
            r.register(
                "desired_replicas",
                "Replicas the last decision wanted",
                m.desired.clone(),
            );
            r.register(
                "current_replicas",
                "Replicas of the target",
                m.current.clone(),
            );
            r.register("reconciles", "Reconciles by result", m.reconciles.clone());
            r.register(
                "reconcile_duration_seconds",
                "Time one reconcile took",
                m.reconcile_seconds.clone(),
            );
            r.register(
                "source_poll_duration_seconds",
                "Time one source poll took",
                m.source_seconds.clone(),
            );
            r.register(
                "source_errors",
                "Source polls that failed",
                m.source_errors.clone(),
            );
            r.register(
                "dry_run_replica_seconds",
                "Dry-run mode: replica-seconds Ebb's decisions would have used (by=ebb) and the target used (by=target)",
                m.dry_run_replica_seconds.clone(),
            );
            r.register(
                "status_writes",
                "Status writes made",
                m.status_writes.clone(),
            );
            r.register(
                "status_writes_skipped",
                "Status writes left out because the status told nothing new",
                m.status_writes_skipped.clone(),
            );
            r.register(
                "leader",
                "1 while this instance holds the lease",
                m.leader.clone(),
            );
        }
        m
    }

    fn target(ns: &str, name: &str) -> Target {
        Target {
            namespace: ns.into(),
            autoscaler: name.into(),
        }
    }

    /// A decision was made.
    pub fn decided(&self, ns: &str, name: &str, current: u32, desired: u32) {
        let t = Self::target(ns, name);
        self.decisions.get_or_create(&t).inc();
        self.current.get_or_create(&t).set(i64::from(current));
        self.desired.get_or_create(&t).set(i64::from(desired));
    }

    /// Dry-run mode: `seconds` at the counts Ebb would have set and the target had.
    pub fn dry_run(&self, ns: &str, name: &str, seconds: f64, ebb: u32, target: u32) {
        for (by, replicas) in [("ebb", ebb), ("target", target)] {
            let labels = DryRunLabels {
                namespace: ns.into(),
                autoscaler: name.into(),
                by: by.into(),
            };
            self.dry_run_replica_seconds
                .get_or_create(&labels)
                .inc_by(seconds * f64::from(replicas));
        }
    }

    /// A status was written.
    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    /// A status write was left out: nothing new to tell.
    pub fn status_write_skipped(&self) {
        self.status_writes_skipped.inc();
    }

    /// A reconcile finished.
    pub fn reconciled(&self, ns: &str, name: &str, took: Duration, ok: bool) {
        self.reconcile_seconds
            .get_or_create(&Self::target(ns, name))
            .observe(took.as_secs_f64());
        self.reconciles
            .get_or_create(&Outcome {
                namespace: ns.into(),
                autoscaler: name.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
        if let Ok(mut f) = self.consecutive_failures.lock() {
            let e = f.entry((ns.to_string(), name.to_string())).or_insert(0);
            *e = if ok { 0 } else { *e + 1 };
        }
    }

    /// Consecutive failed reconciles of one Autoscaler (for its backoff).
    pub fn failures(&self, ns: &str, name: &str) -> u32 {
        self.consecutive_failures
            .lock()
            .ok()
            .and_then(|f| f.get(&(ns.to_string(), name.to_string())).copied())
            .unwrap_or(0)
    }

    /// A source was polled.
    pub fn source_polled(
        &self,
        ns: &str,
        name: &str,
        source: &str,
        kind: &str,
        took: Duration,
        ok: bool,
    ) {
        let l = SourceLabels {
            namespace: ns.into(),
            autoscaler: name.into(),
            source: source.into(),
            kind: kind.into(),
        };
        self.source_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
        if !ok {
            self.source_errors.get_or_create(&l).inc();
        }
    }

    /// Leadership changed.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the task is dropped.
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: std::sync::Arc<ControllerMetrics>,
) -> std::io::Result<()> {
    use axum::routing::get;
    let m1 = metrics.clone();
    let m2 = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m1.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let m = m2.clone();
                async move {
                    if m.ready.load(Ordering::Acquire) {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
