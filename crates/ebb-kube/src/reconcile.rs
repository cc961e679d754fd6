//! One reconcile of one `Autoscaler`: validate, check that nothing else scales the target,
//! read its `/scale` and pods, poll the sources that are due, let `ebb_core::decide` decide,
//! apply (deletion costs, then a merge patch of `/scale`, retried with backoff), and write
//! the status, conditions and Events. No replica count is computed here.

use crate::actuate;
use crate::crd::{Autoscaler, SourceStatus};
use crate::metrics::ControllerMetrics;
use crate::observe::{self, Latest};
use crate::placement_mode::reconcile_placement;
use crate::poll::{poll, SourceMemory};
use crate::sources;
use crate::status::{event, report_invalid, rescale, rfc3339, set_condition, write_status};
use crate::target::{target_or_report, target_pods};
use ebb_core::{Decision, LimitReason, Policy, Scaler, State, Time};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::ResourceExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// The controller's own metrics.
    pub metrics: Arc<ControllerMetrics>,
    /// The clock.
    pub clock: Clock,
    sources: Mutex<HashMap<String, Vec<SourceMemory>>>,
    /// The decision state this instance last wrote, per Autoscaler: newer than what the
    /// watch cache may show yet.
    states: Mutex<HashMap<String, State>>,
    targets: Mutex<HashMap<(String, String), kube::discovery::ApiResource>>,
}

impl Context {
    /// A context for `client`, publishing Events as `reporter`.
    pub fn new(
        client: kube::Client,
        reporter: &str,
        metrics: Arc<ControllerMetrics>,
        clock: Clock,
    ) -> Context {
        let reporter = kube::runtime::events::Reporter {
            controller: "ebb-controller".into(),
            instance: Some(reporter.to_string()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            clock,
            sources: Mutex::new(HashMap::new()),
            states: Mutex::new(HashMap::new()),
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

    /// Forgets every Autoscaler's decision state and source memory: called when this
    /// instance becomes leader, since another leader may have decided meanwhile and its
    /// status, not this instance's old memory, is the truth.
    pub fn forget_decisions(&self) {
        if let Ok(mut m) = self.states.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.sources.lock() {
            m.clear();
        }
    }

    /// Keeps the memory of the Autoscalers `alive` names (`namespace/name`) and drops that of
    /// deleted ones.
    pub fn retain_autoscalers(&self, alive: &std::collections::HashSet<String>) {
        if let Ok(mut m) = self.states.lock() {
            m.retain(|k, _| alive.contains(k));
        }
        if let Ok(mut m) = self.sources.lock() {
            m.retain(|k, _| alive.contains(k));
        }
    }

    /// Autoscalers this instance holds memory for (for tests and metrics).
    pub fn remembered(&self) -> usize {
        self.states.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// The key an Autoscaler's memory is kept under.
pub fn autoscaler_key(ns: &str, name: &str) -> String {
    key(ns, name)
}

const DEFAULT_SYNC: f64 = 5.0;

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// Reconciles one Autoscaler.
pub async fn reconcile(obj: Arc<Autoscaler>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let name = obj.name_any();
    let ns = obj
        .namespace()
        .ok_or_else(|| ReconcileError::NoNamespace(name.clone()))?;
    let result = reconcile_inner(&obj, &ctx, &ns, &name).await;
    ctx.metrics
        .reconciled(&ns, &name, started.elapsed(), result.is_ok());
    result
}

async fn reconcile_inner(
    obj: &Autoscaler,
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Action, ReconcileError> {
    let now = (ctx.clock)();
    let api: Api<Autoscaler> = Api::namespaced(ctx.client.clone(), ns);
    let mut status = obj.status.clone().unwrap_or_default();
    status.observed_generation = obj.metadata.generation;
    let sync = Duration::from_secs_f64(
        obj.spec
            .sync_period_seconds
            .unwrap_or(DEFAULT_SYNC)
            .clamp(0.1, 3600.0),
    );

    if obj.spec.placement.is_some() {
        return reconcile_placement(obj, ctx, ns, name, status, now, sync).await;
    }

    // 1. A bad spec is reported with its field paths, and nothing is scaled.
    let policy: Policy = match obj
        .spec
        .policy()
        .and_then(|p| obj.spec.check_sources().map(|_| p))
    {
        Ok(p) => p,
        Err(errors) => {
            set_condition(
                &mut status.conditions,
                "AbleToScale",
                false,
                "InvalidSpec",
                "the spec is invalid: nothing is scaled".into(),
                now,
            );
            return report_invalid(ctx, obj, &api, &mut status, &errors, now).await;
        }
    };

    // 2. Nothing else may scale the same target; 3. its /scale and pods.
    let (target, scale) = match target_or_report(ctx, obj, ns, &api, &mut status, now, sync).await?
    {
        Ok(t) => t,
        Err(action) => return Ok(action),
    };
    let current = actuate::spec_replicas(&scale);
    let selector = scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let pods = if selector.is_empty() {
        Vec::new()
    } else {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        target_pods(
            api.list(&ListParams::default().labels(&selector))
                .await?
                .items,
        )
    };

    // 4. Sources that are due.
    let k = key(ns, name);
    let mut memories = ctx
        .sources
        .lock()
        .ok()
        .and_then(|mut m| m.remove(&k))
        .unwrap_or_default();
    memories.resize_with(obj.spec.sources.len(), SourceMemory::default);
    let mut next_due = sync;
    let mut polls = Vec::new();
    let pods_ref = &pods;
    for (spec, mut mem) in obj.spec.sources.iter().zip(memories) {
        if mem.spec.as_ref() != Some(spec) {
            mem = SourceMemory {
                spec: Some(spec.clone()),
                ..Default::default()
            };
        }
        let interval = sources::default_poll(spec);
        let due = mem.last_poll.is_none_or(|t| t.elapsed() >= interval);
        next_due = next_due.min(if due {
            interval
        } else {
            interval.saturating_sub(mem.last_poll.map_or(Duration::ZERO, |t| t.elapsed()))
        });
        polls.push(async move {
            if due {
                let t0 = Instant::now();
                let r = poll(
                    ctx,
                    ns,
                    &obj.spec.scale_target_ref.name,
                    spec,
                    pods_ref,
                    &mut mem,
                    now,
                )
                .await;
                ctx.metrics.source_polled(
                    ns,
                    name,
                    &spec.name,
                    sources::kind_of(spec),
                    t0.elapsed(),
                    r.is_ok(),
                );
                mem.last_poll = Some(Instant::now());
                match r {
                    Ok(v) => {
                        mem.value = Some(v);
                        mem.at = Some(now);
                        mem.error = None;
                    }
                    Err(e) => {
                        // The last good value stays, with its time: the core treats it as
                        // stale after staleAfterSeconds, and never scales down on a gap.
                        mem.error = Some(e.to_string());
                    }
                }
            }
            mem
        });
    }
    let mut memories: Vec<SourceMemory> = futures::future::join_all(polls).await;
    let latest: Vec<Latest> = obj
        .spec
        .sources
        .iter()
        .zip(&memories)
        .map(|(s, m)| Latest {
            name: s.name.clone(),
            traffic: s.pod_scrape.as_ref().is_some_and(|p| p.traffic.is_some()),
            value: m.usable().cloned(),
            at: m.at.unwrap_or(Time::ZERO),
        })
        .collect();
    status.current_metrics = obj
        .spec
        .sources
        .iter()
        .zip(&memories)
        .map(|(s, m)| SourceStatus {
            name: s.name.clone(),
            source: sources::kind_of(s).into(),
            value: m.usable().map(|v| v.headline()),
            error: m.error.clone(),
            last_success: m.at.map(rfc3339),
        })
        .collect();
    // Each failing source: a line for the condition, and an Event when its error is new.
    let mut failed = Vec::new();
    for (s, m) in obj.spec.sources.iter().zip(memories.iter_mut()) {
        let Some(e) = &m.error else {
            m.reported_error = None;
            continue;
        };
        let line = format!("source {} ({}) failed: {e}", s.name, sources::kind_of(s));
        if m.reported_error.as_deref() != Some(line.as_str()) {
            event(
                ctx,
                obj,
                EventType::Warning,
                "FailedGetSource",
                line.clone(),
            )
            .await;
            m.reported_error = Some(line.clone());
        }
        failed.push(line);
    }

    // 5. Decide.
    let obs = observe::observation(&policy, current, &pods, &latest);
    // The state this instance wrote last; after a restart or a change of leader, the status's.
    let state: State = ctx
        .states
        .lock()
        .ok()
        .and_then(|m| m.get(&k).cloned())
        .or_else(|| status.decision_state.clone())
        .unwrap_or_default();
    let mut scaler = Scaler::with_state(policy, state);
    let d: Decision = scaler.decide(&obs, now);
    ctx.metrics
        .decided(ns, name, d.current_replicas, d.desired_replicas);

    // 6. Apply.
    if d.desired_replicas != d.current_replicas {
        let scale_in = obj.spec.scale_in.clone().unwrap_or_default();
        if d.desired_replicas < d.current_replicas && scale_in.deletion_cost.unwrap_or(true) {
            if let Err(e) = actuate::set_deletion_costs(ctx, ns, &obs.pods, &d.victims).await {
                tracing::warn!(autoscaler = %name, error = %e, "could not set pod-deletion-cost");
            }
            if let Some(wait) = scale_in.wait_for_idle_seconds.filter(|w| *w > 0.0) {
                actuate::wait_for_idle(
                    ctx,
                    obj,
                    &pods,
                    &d.victims,
                    Duration::from_secs_f64(wait.min(600.0)),
                )
                .await;
            }
        }
        if rescale(
            ctx,
            obj,
            &target,
            d.desired_replicas,
            &d.summary(),
            &mut status,
            now,
        )
        .await
        {
            scaler.applied(d.desired_replicas, now);
        }
    } else {
        set_condition(
            &mut status.conditions,
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size".into(),
            now,
        );
    }

    // 7. Status.
    let usable = !d.no_usable_metric();
    let (active_reason, active_message) = if !usable {
        (
            "FailedGetMetrics",
            if failed.is_empty() {
                "no usable metric: holding replicas".to_string()
            } else {
                format!("no usable metric: holding replicas; {}", failed.join("; "))
            },
        )
    } else if !failed.is_empty() {
        (
            "ValidMetricFound",
            format!(
                "deciding on the metrics that answered; {}",
                failed.join("; ")
            ),
        )
    } else {
        (
            "ValidMetricFound",
            "the policy's signals are being read".to_string(),
        )
    };
    set_condition(
        &mut status.conditions,
        "ScalingActive",
        usable,
        active_reason,
        active_message,
        now,
    );
    let limited = matches!(
        d.limit,
        LimitReason::TooManyReplicas
            | LimitReason::TooFewReplicas
            | LimitReason::ScaleUpLimit
            | LimitReason::ScaleDownLimit
    );
    set_condition(
        &mut status.conditions,
        "ScalingLimited",
        limited,
        d.limit.as_str(),
        if limited {
            d.summary()
        } else {
            "the desired count is within range".into()
        },
        now,
    );
    status.current_replicas = Some(current);
    status.desired_replicas = Some(d.desired_replicas);
    status.reasons = d.reasons.iter().map(|r| r.to_string()).collect();
    let new_state = scaler.state().clone();
    status.decision_state = Some(new_state.clone());
    // Remembered before the status write: the scale (if any) happened whether or not the
    // write succeeds, and the next decision must know it.
    if let Ok(mut m) = ctx.states.lock() {
        m.insert(k.clone(), new_state);
    }
    if let Ok(mut m) = ctx.sources.lock() {
        m.insert(k, memories);
    }
    write_status(&api, name, &status).await?;
    Ok(Action::requeue(next_due.max(Duration::from_millis(100))))
}

/// How failed reconciles are retried: exponential backoff per object, 1 s to 5 min.
pub fn error_policy(obj: Arc<Autoscaler>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    let name = obj.name_any();
    tracing::warn!(autoscaler = %name, error = %err, "reconcile failed; retrying");
    let n = ctx
        .metrics
        .failures(&obj.namespace().unwrap_or_default(), &name);
    Action::requeue(Duration::from_secs((1u64 << n.min(8)).min(300)))
}
