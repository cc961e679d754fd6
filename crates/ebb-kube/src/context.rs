//! What every reconcile shares: the API client, the caches, the clock, the Event recorder,
//! and the memory this instance keeps per Autoscaler (source polls, the decision state it last
//! reached, the status it last wrote). Also the reconcile error. It sits below every other
//! controller module, so that none of them imports the reconcile loop.

use crate::caches::Caches;
use crate::crd::AutoscalerStatus;
use crate::memory::Memory;
use crate::metrics::ControllerMetrics;
use ebb_core::Time;
use kube::runtime::events::{Recorder, Reporter};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The API server refused or failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object has no namespace.
    #[error("Autoscaler {0} has no namespace")]
    NoNamespace(String),
}

/// The clock: wall-clock milliseconds since the Unix epoch, so that times in the status
/// mean the same to a restarted controller. Tests inject their own.
pub type Clock = Arc<dyn Fn() -> Time + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Time::from_millis(ms)
    })
}

/// A clock a test sets: the Unix milliseconds written in `path`, read at each use (the
/// system clock while the file holds none).
pub fn file_clock(path: std::path::PathBuf) -> Clock {
    let system = system_clock();
    Arc::new(move || {
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .map_or_else(|| system(), Time::from_millis)
    })
}

/// The key an Autoscaler's memory is kept under.
pub fn autoscaler_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// Pods, HPAs and Autoscalers, from the watches.
    pub caches: Arc<Caches>,
    /// Who publishes the Events (see [`Context::publish`]).
    reporter: Reporter,
    /// The controller's own metrics.
    pub metrics: Arc<ControllerMetrics>,
    /// The clock.
    pub clock: Clock,
    memory: Mutex<HashMap<String, Memory>>,
    targets: Mutex<HashMap<(String, String), kube::discovery::ApiResource>>,
}

impl Context {
    /// Publishes an Event about `reference`, a new one for each call. kube-rs's `Recorder`
    /// folds every Event with the same reason and action into the first one it published in
    /// the last six minutes, counting them but keeping the first's note: the second rescale
    /// in a minute would say the first's "New size: 1". Ebb publishes only on a change (a
    /// rescale, a new failure message), so there is no storm to fold.
    pub async fn publish(
        &self,
        event: &kube::runtime::events::Event,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
    ) -> Result<(), kube::Error> {
        Recorder::new(self.client.clone(), self.reporter.clone())
            .publish(event, reference)
            .await
    }

    /// A context for `client` reading `caches`, publishing Events as `reporter`.
    pub fn new(
        client: kube::Client,
        caches: Arc<Caches>,
        reporter: &str,
        metrics: Arc<ControllerMetrics>,
        clock: Clock,
    ) -> Context {
        let reporter = Reporter {
            controller: "ebb-controller".into(),
            instance: Some(reporter.to_string()),
        };
        Context {
            reporter,
            client,
            caches,
            metrics,
            clock,
            memory: Mutex::new(HashMap::new()),
            targets: Mutex::new(HashMap::new()),
        }
    }

    /// The resolved API resource of a target kind, when known.
    pub fn targets_get(&self, k: &(String, String)) -> Option<kube::discovery::ApiResource> {
        self.targets.lock().ok().and_then(|m| m.get(k).cloned())
    }

    /// Remembers a resolved target kind.
    pub fn targets_put(&self, k: (String, String), ar: kube::discovery::ApiResource) {
        if let Ok(mut m) = self.targets.lock() {
            m.insert(k, ar);
        }
    }

    /// Takes an Autoscaler's memory out for one reconcile (empty when there is none).
    pub(crate) fn take_memory(&self, key: &str) -> Memory {
        self.memory
            .lock()
            .ok()
            .and_then(|mut m| m.remove(key))
            .unwrap_or_default()
    }

    /// Puts an Autoscaler's memory back after a reconcile.
    pub(crate) fn keep_memory(&self, key: String, memory: Memory) {
        if let Ok(mut m) = self.memory.lock() {
            m.insert(key, memory);
        }
    }

    /// Forgets every Autoscaler's memory: called when this instance becomes leader, since
    /// another leader may have decided meanwhile and its status, not this instance's old
    /// memory, is the truth.
    pub fn forget_decisions(&self) {
        if let Ok(mut m) = self.memory.lock() {
            m.clear();
        }
    }

    /// Keeps the memory of the Autoscalers `alive` names (`namespace/name`) and drops that of
    /// deleted ones.
    pub fn retain_autoscalers(&self, alive: &HashSet<String>) {
        if let Ok(mut m) = self.memory.lock() {
            m.retain(|k, _| alive.contains(k));
        }
    }

    /// Autoscalers this instance holds a decision state for (for tests and metrics).
    pub fn remembered(&self) -> usize {
        self.memory
            .lock()
            .map(|m| m.values().filter(|v| v.state.is_some()).count())
            .unwrap_or(0)
    }
}

/// One reconcile of one Autoscaler: what its stages (gather, decide, apply, report) share.
pub(crate) struct Pass<'a> {
    pub(crate) ctx: &'a Context,
    pub(crate) obj: &'a crate::crd::Autoscaler,
    pub(crate) ns: &'a str,
    pub(crate) name: &'a str,
    pub(crate) api: kube::Api<crate::crd::Autoscaler>,
    /// The time of this pass, from the context's clock.
    pub(crate) now: Time,
    /// The Autoscaler's sync period (`syncPeriodSeconds`, 0.1 s to 1 h).
    pub(crate) sync: std::time::Duration,
    pub(crate) memory: Memory,
}

/// The sync period when the spec names none.
const DEFAULT_SYNC_SECONDS: f64 = 5.0;

impl<'a> Pass<'a> {
    /// A pass over `obj` (in namespace `ns`), with the memory the last pass left.
    pub(crate) fn new(
        ctx: &'a Context,
        obj: &'a crate::crd::Autoscaler,
        ns: &'a str,
        name: &'a str,
        memory: Memory,
    ) -> Pass<'a> {
        let sync = obj
            .spec
            .sync_period_seconds
            .unwrap_or(DEFAULT_SYNC_SECONDS)
            .clamp(0.1, 3600.0);
        Pass {
            ctx,
            obj,
            ns,
            name,
            api: kube::Api::namespaced(ctx.client.clone(), ns),
            now: (ctx.clock)(),
            sync: std::time::Duration::from_secs_f64(sync),
            memory,
        }
    }

    /// The status this pass starts from: the one this instance last wrote (the watch cache may
    /// not show it yet), else the cache's; for this spec generation.
    pub(crate) fn status(&self) -> AutoscalerStatus {
        let last = self.memory.written.as_ref().or(self.obj.status.as_ref());
        let mut status = last.cloned().unwrap_or_default();
        status.observed_generation = self.obj.metadata.generation;
        status
    }
}
