//! One reconcile of one `Autoscaler`: validate, check that nothing else scales the target,
//! read its `/scale` and pods, poll the sources that are due, let `ebb_core::decide` decide,
//! apply (deletion costs, then a merge patch of `/scale`, retried with backoff), and write
//! the status, conditions and Events. No replica count is computed here.

use crate::actuate::{self, ScaleTarget};
use crate::crd::{Autoscaler, AutoscalerStatus, Condition, SourceSpec, SourceStatus};
use crate::metrics::ControllerMetrics;
use crate::observe::{self, Latest, TargetPod};
use crate::sources::{self, Credentials, PodEndpoint, SourceError, SourceValue};
use ebb_core::{decide, Decision, LimitReason, PodPhase, Policy, State, Time};
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap};
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

/// One source's memory between reconciles.
#[derive(Debug, Clone, Default)]
struct SourceMemory {
    spec: Option<SourceSpec>,
    last_poll: Option<Instant>,
    value: Option<SourceValue>,
    at: Option<Time>,
    error: Option<String>,
    reported_error: Option<String>,
    /// Counter values per pod at the last scrape, for rates.
    counters: BTreeMap<String, (f64, Time)>,
    traffic_counters: BTreeMap<String, (f64, f64, Time)>,
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
}

impl Context {
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
}

const DEFAULT_SYNC: f64 = 5.0;

fn rfc3339(t: Time) -> String {
    chrono::DateTime::from_timestamp_millis(t.as_millis())
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Sets condition `type_` in `conditions`, keeping its transition time when the status did
/// not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: Time,
) {
    let status = if status { "True" } else { "False" }.to_string();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = rfc3339(now);
        }
        c.status = status;
        c.reason = reason.into();
        c.message = message;
    } else {
        conditions.push(Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message,
            last_transition_time: rfc3339(now),
        });
    }
}

async fn event(ctx: &Context, obj: &Autoscaler, type_: EventType, reason: &str, note: String) {
    let reference: ObjectReference = obj.object_ref(&());
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Scale".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
        tracing::warn!(autoscaler = %obj.name_any(), error = %e, "could not publish an event");
    }
}

fn spec_errors(errors: &[crate::crd::SpecError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The checks both modes make before reading signals: nothing else scales the target, and
/// its `/scale` can be read. The inner error is (condition reason, message).
async fn target_scale(
    ctx: &Context,
    obj: &Autoscaler,
    ns: &str,
) -> Result<
    Result<(ScaleTarget, k8s_openapi::api::autoscaling::v1::Scale), (&'static str, String)>,
    ReconcileError,
> {
    if let Some(why) = conflict(ctx, obj, ns).await? {
        return Ok(Err(("ConflictingAutoscaler", why)));
    }
    let r = &obj.spec.scale_target_ref;
    let target = match ScaleTarget::resolve(ctx, ns, r).await {
        Ok(t) => t,
        Err(e) => {
            return Ok(Err((
                "FailedGetScale",
                format!("cannot resolve {} {}: {e}", r.kind, r.name),
            )))
        }
    };
    match target.get_scale().await {
        Ok(s) => Ok(Ok((target, s))),
        Err(e) => Ok(Err((
            "FailedGetScale",
            format!(
                "cannot read the scale of {} {}: {e}",
                target.kind, target.name
            ),
        ))),
    }
}

/// Reports a failure: sets condition `type_` to False with `reason` and `message`, writes the
/// status, emits a Warning Event (only when the message is new, so a persistent failure is
/// not an Event storm), and asks to be called again after `retry`.
#[allow(clippy::too_many_arguments)]
async fn fail(
    ctx: &Context,
    obj: &Autoscaler,
    api: &Api<Autoscaler>,
    status: &mut AutoscalerStatus,
    type_: &str,
    reason: &str,
    message: String,
    now: Time,
    retry: Duration,
) -> Result<Action, ReconcileError> {
    let new = !status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.reason == reason && c.message == message);
    set_condition(
        &mut status.conditions,
        type_,
        false,
        reason,
        message.clone(),
        now,
    );
    write_status(api, &obj.name_any(), status).await?;
    if new {
        event(ctx, obj, EventType::Warning, reason, message).await;
    }
    Ok(Action::requeue(retry))
}

async fn write_status(
    api: &Api<Autoscaler>,
    name: &str,
    status: &AutoscalerStatus,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Another scaler of the same target: an HPA, or an older Autoscaler.
async fn conflict(
    ctx: &Context,
    obj: &Autoscaler,
    ns: &str,
) -> Result<Option<String>, kube::Error> {
    let target = &obj.spec.scale_target_ref;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), ns);
    for h in hpas.list(&ListParams::default()).await?.items {
        let r = h.spec.as_ref().map(|s| &s.scale_target_ref);
        if r.is_some_and(|r| r.kind == target.kind && r.name == target.name) {
            return Ok(Some(format!(
                "HorizontalPodAutoscaler {} already scales {} {}: remove it, or this Autoscaler",
                h.name_any(),
                target.kind,
                target.name
            )));
        }
    }
    let others: Api<Autoscaler> = Api::namespaced(ctx.client.clone(), ns);
    let mine = (obj.creation_timestamp(), obj.name_any());
    for o in others.list(&ListParams::default()).await?.items {
        let r = &o.spec.scale_target_ref;
        if o.name_any() != obj.name_any()
            && r.kind == target.kind
            && r.name == target.name
            && (o.creation_timestamp(), o.name_any()) < mine
        {
            return Ok(Some(format!(
                "Autoscaler {} already scales {} {}",
                o.name_any(),
                target.kind,
                target.name
            )));
        }
    }
    Ok(None)
}

fn target_pods(pods: Vec<Pod>) -> Vec<TargetPod> {
    let at = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| {
        Time::from_millis(t.0.as_millisecond())
    };
    pods.into_iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            let ready_cond = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready")
                .cloned();
            let mut requests = BTreeMap::new();
            for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
                for (k, q) in c.resources.iter().flat_map(|r| r.requests.iter().flatten()) {
                    if let Some(m) = sources::quantity_milli(&q.0) {
                        *requests.entry(k.clone()).or_insert(0) += m;
                    }
                }
            }
            TargetPod {
                name: p.name_any(),
                ip: status.pod_ip.clone().filter(|s| !s.is_empty()),
                phase: match status.phase.as_deref() {
                    Some("Pending") => PodPhase::Pending,
                    Some("Succeeded") => PodPhase::Succeeded,
                    Some("Failed") => PodPhase::Failed,
                    _ => PodPhase::Running,
                },
                ready: ready_cond.as_ref().is_some_and(|c| c.status == "True"),
                deleting: p.metadata.deletion_timestamp.is_some(),
                started_at: status.start_time.as_ref().map(at),
                ready_changed_at: ready_cond.and_then(|c| c.last_transition_time.as_ref().map(at)),
                requests,
            }
        })
        .collect()
}

async fn secret(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, SourceError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let s = api
        .get(name)
        .await
        .map_err(|e| SourceError::Kube(format!("secret {name}: {e}")))?;
    Ok(s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).trim().to_string()
}

/// Polls one source.
async fn poll(
    ctx: &Context,
    ns: &str,
    target: &str,
    spec: &SourceSpec,
    pods: &[TargetPod],
    memory: &mut SourceMemory,
    now: Time,
) -> Result<SourceValue, SourceError> {
    let timeout = sources::timeout(spec);
    if let Some(p) = &spec.prometheus {
        let mut creds = Credentials::default();
        if let Some(r) = &p.auth_secret_ref {
            let data = secret(ctx, ns, &r.name).await?;
            creds.token = data.get("token").map(|v| text(v));
            if let (Some(u), Some(pw)) = (data.get("username"), data.get("password")) {
                creds.basic = Some((text(u), text(pw)));
            }
            creds.ca_pem = data.get("ca.crt").cloned();
        }
        let q = sources::render_query(&p.query, target, ns);
        let series =
            tokio::time::timeout(timeout, sources::prometheus_query(p, &q, &creds, timeout))
                .await
                .map_err(|_| SourceError::Http {
                    url: p.url.clone(),
                    reason: format!("timed out after {:.1}s", timeout.as_secs_f64()),
                })??;
        return sources::prometheus_value(series);
    }
    if let Some(r) = &spec.redis {
        let mut creds = Credentials::default();
        if let Some(s) = &r.password_secret_ref {
            let data = secret(ctx, ns, &s.name).await?;
            creds.password = Some(text(data.get(&s.key).ok_or_else(|| {
                SourceError::Kube(format!("secret {} has no key {}", s.name, s.key))
            })?));
        }
        return sources::redis_value(r, &creds, timeout)
            .await
            .map(SourceValue::Scalar);
    }
    if let Some(rm) = &spec.resource_metrics {
        return resource_metrics(ctx, ns, pods, &rm.resource, timeout).await;
    }
    let Some(ps) = &spec.pod_scrape else {
        return Err(SourceError::NoData("no source kind given".into()));
    };
    let endpoints: Vec<PodEndpoint> = pods
        .iter()
        .filter(|p| !p.deleting)
        .map(|p| PodEndpoint {
            name: p.name.clone(),
            ip: p.ip.clone(),
        })
        .collect();
    if endpoints.is_empty() {
        return Err(SourceError::NoData(
            "the target has no pods to scrape".into(),
        ));
    }
    let scrapes = sources::scrape_pods(ps, &endpoints, timeout).await;
    let mut errors = Vec::new();
    let mut ok = Vec::new();
    for (pod, r) in scrapes {
        match r {
            Ok(s) => ok.push((pod, s)),
            Err(e) => errors.push(format!("{pod}: {e}")),
        }
    }
    if ok.is_empty() {
        return Err(SourceError::NoData(format!(
            "no pod could be scraped ({})",
            errors.join("; ")
        )));
    }
    if let Some(t) = &ps.traffic {
        let mut in_flight = 0.0;
        let mut per_pod = BTreeMap::new();
        let mut counters = BTreeMap::new();
        for (pod, s) in &ok {
            let f: f64 = t
                .in_flight
                .iter()
                .filter_map(|m| sources::metric_sum(s, m))
                .sum();
            in_flight += f;
            per_pod.insert(pod.clone(), f);
            let a = t
                .arrivals
                .as_deref()
                .and_then(|m| sources::metric_sum(s, m))
                .unwrap_or(0.0);
            let c = t
                .completions
                .as_deref()
                .and_then(|m| sources::metric_sum(s, m))
                .unwrap_or(0.0);
            counters.insert(pod.clone(), (a, c, now));
        }
        // Pod counters restart with the pod: the service-wide totals must only grow, so add
        // each pod's growth since the last scrape to the running totals.
        let (mut arrivals, mut completions) = match &memory.value {
            Some(SourceValue::Traffic {
                arrivals,
                completions,
                ..
            }) => (*arrivals, *completions),
            _ => (0.0, 0.0),
        };
        for (pod, (a, c, _)) in &counters {
            match memory.traffic_counters.get(pod) {
                Some((pa, pc, _)) if a >= pa && c >= pc => {
                    arrivals += a - pa;
                    completions += c - pc;
                }
                Some(_) => {
                    arrivals += a;
                    completions += c;
                }
                None if memory.value.is_none() => {
                    arrivals += a;
                    completions += c;
                }
                None => {}
            }
        }
        memory.traffic_counters = counters;
        return Ok(SourceValue::Traffic {
            in_flight,
            arrivals,
            completions,
            per_pod_in_flight: per_pod,
        });
    }
    let metric = ps.metric.clone().unwrap_or_default();
    let mut values = BTreeMap::new();
    for (pod, s) in &ok {
        if let Some(v) = sources::metric_sum(s, &metric) {
            values.insert(pod.clone(), v);
        }
    }
    if values.is_empty() {
        return Err(SourceError::NoData(format!("no pod exposes {metric}")));
    }
    match ps.aggregate.as_deref().unwrap_or("perPod") {
        "sum" => Ok(SourceValue::Scalar(values.values().sum())),
        "average" => Ok(SourceValue::Scalar(
            values.values().sum::<f64>() / values.len() as f64,
        )),
        "rate" => {
            let now_counters: BTreeMap<String, (f64, Time)> =
                values.iter().map(|(p, v)| (p.clone(), (*v, now))).collect();
            let r = observe::rates(&memory.counters, &now_counters);
            memory.counters = now_counters;
            if r.is_empty() {
                Err(SourceError::NoData(format!(
                    "first scrape of {metric}: a rate needs two"
                )))
            } else {
                Ok(SourceValue::PerPod(r))
            }
        }
        _ => Ok(SourceValue::PerPod(values)),
    }
}

async fn resource_metrics(
    ctx: &Context,
    ns: &str,
    pods: &[TargetPod],
    resource: &str,
    timeout: Duration,
) -> Result<SourceValue, SourceError> {
    let req = http::Request::get(format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"))
        .body(Vec::new())
        .map_err(|e| SourceError::Kube(e.to_string()))?;
    let list: serde_json::Value = tokio::time::timeout(timeout, ctx.client.request(req))
        .await
        .map_err(|_| SourceError::Kube("metrics.k8s.io timed out".into()))?
        .map_err(|e| {
            SourceError::Kube(format!(
                "metrics.k8s.io: {e} (is metrics-server installed?)"
            ))
        })?;
    let wanted: std::collections::BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    let mut out = BTreeMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"].as_str().unwrap_or("");
        if !wanted.contains(name) {
            continue;
        }
        let milli: i64 = item["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                c["usage"][resource]
                    .as_str()
                    .and_then(sources::quantity_milli)
            })
            .sum();
        // Cores for cpu, bytes for memory: the core's units for resource metrics.
        out.insert(name.to_string(), milli as f64 / 1000.0);
    }
    if out.is_empty() {
        return Err(SourceError::NoData(format!(
            "metrics.k8s.io has no {resource} usage for the target's pods"
        )));
    }
    Ok(SourceValue::PerPod(out))
}

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
            let message = spec_errors(&errors);
            let retry = Duration::from_secs(60);
            return fail(
                ctx,
                obj,
                &api,
                &mut status,
                "ScalingActive",
                "InvalidSpec",
                message,
                now,
                retry,
            )
            .await;
        }
    };

    // 2. Nothing else may scale the same target; 3. its /scale and pods.
    let (target, scale) = match target_scale(ctx, obj, ns).await? {
        Ok(t) => t,
        Err((reason, why)) => {
            let retry = if reason == "ConflictingAutoscaler" {
                sync.max(Duration::from_secs(15))
            } else {
                Duration::from_secs(15)
            };
            return fail(
                ctx,
                obj,
                &api,
                &mut status,
                "AbleToScale",
                reason,
                why,
                now,
                retry,
            )
            .await;
        }
    };
    let current = scale
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0)
        .max(0) as u32;
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
    let memories: Vec<SourceMemory> = futures::future::join_all(polls).await;
    let latest: Vec<Latest> = obj
        .spec
        .sources
        .iter()
        .zip(&memories)
        .map(|(s, m)| Latest {
            name: s.name.clone(),
            traffic: s.pod_scrape.as_ref().is_some_and(|p| p.traffic.is_some()),
            value: if m.error.is_some() {
                None
            } else {
                m.value.clone()
            },
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
            value: if m.error.is_some() {
                None
            } else {
                m.value.as_ref().map(|v| v.headline())
            },
            error: m.error.clone(),
            last_success: m.at.map(rfc3339),
        })
        .collect();
    let failed: Vec<String> = obj
        .spec
        .sources
        .iter()
        .zip(&memories)
        .filter_map(|(s, m)| {
            m.error
                .as_ref()
                .map(|e| format!("source {} ({}) failed: {e}", s.name, sources::kind_of(s)))
        })
        .collect();
    let mut memories = memories;
    for (m, line) in memories
        .iter_mut()
        .filter(|m| m.error.is_some())
        .zip(&failed)
    {
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
    }
    for m in memories.iter_mut().filter(|m| m.error.is_none()) {
        m.reported_error = None;
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
    let d: Decision = decide(&policy, &obs, &state, now);
    ctx.metrics
        .decided(ns, name, d.current_replicas, d.desired_replicas);

    // 6. Apply.
    let mut new_state = d.state.clone();
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
        match target.patch_replicas(d.desired_replicas).await {
            Ok(()) => {
                new_state = d.applied_state();
                status.last_scale_time = Some(rfc3339(now));
                let note = format!("New size: {}; reason: {}", d.desired_replicas, d.summary());
                event(ctx, obj, EventType::Normal, "SuccessfulRescale", note).await;
                set_condition(
                    &mut status.conditions,
                    "AbleToScale",
                    true,
                    "SucceededRescale",
                    format!(
                        "the controller scaled {} {} to {}",
                        target.kind, target.name, d.desired_replicas
                    ),
                    now,
                );
            }
            Err(e) => {
                let why = format!(
                    "failed to scale {} {} to {}: {e}",
                    target.kind, target.name, d.desired_replicas
                );
                event(ctx, obj, EventType::Warning, "FailedRescale", why.clone()).await;
                set_condition(
                    &mut status.conditions,
                    "AbleToScale",
                    false,
                    "FailedUpdateScale",
                    why,
                    now,
                );
            }
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
    let usable = !d.has_reason("NoUsableMetric");
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
        &format!("{:?}", d.limit),
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
    status.decision_state = Some(new_state.clone());
    write_status(&api, name, &status).await?;
    if let Ok(mut m) = ctx.states.lock() {
        m.insert(k.clone(), new_state);
    }
    if let Ok(mut m) = ctx.sources.lock() {
        m.insert(k, memories);
    }
    Ok(Action::requeue(next_due.max(Duration::from_millis(100))))
}

/// Placement mode: the target is a server whose replicas follow its models. Each model's
/// replicas are read from its `/scale` (its own Autoscaler sets them); the planner packs them
/// by memory starting from the placement in the status; the target is scaled to the plan's
/// server count. Seldon Core 2's scheduler then places the models on those servers.
async fn reconcile_placement(
    obj: &Autoscaler,
    ctx: &Context,
    ns: &str,
    name: &str,
    mut status: AutoscalerStatus,
    now: Time,
    sync: Duration,
) -> Result<Action, ReconcileError> {
    use ebb_core::placement::{lower_bound, plan, ModelDemand, ServerState};
    let api: Api<Autoscaler> = Api::namespaced(ctx.client.clone(), ns);
    let target_name = &obj.spec.scale_target_ref.name;
    let kind = match obj.spec.server_kind(target_name) {
        Ok(Some(k)) => k,
        Ok(None) => return Ok(Action::requeue(sync)),
        Err(errors) => {
            let message = spec_errors(&errors);
            let retry = Duration::from_secs(60);
            return fail(
                ctx,
                obj,
                &api,
                &mut status,
                "ScalingActive",
                "InvalidSpec",
                message,
                now,
                retry,
            )
            .await;
        }
    };
    let (server, scale) = match target_scale(ctx, obj, ns).await? {
        Ok(t) => t,
        Err((reason, why)) => {
            let retry = if reason == "ConflictingAutoscaler" {
                sync.max(Duration::from_secs(15))
            } else {
                Duration::from_secs(15)
            };
            return fail(
                ctx,
                obj,
                &api,
                &mut status,
                "AbleToScale",
                reason,
                why,
                now,
                retry,
            )
            .await;
        }
    };
    let current = scale.spec.and_then(|s| s.replicas).unwrap_or(0).max(0) as u32;
    // The models' replicas, as their own Autoscalers set them. One that cannot be read keeps
    // the replicas the last plan gave it: a read failure never shrinks the servers.
    let previous: std::collections::BTreeMap<String, Vec<String>> =
        status.placement.clone().unwrap_or_default();
    let planned = |model: &str| {
        previous
            .values()
            .filter(|ms| ms.iter().any(|m| m == model))
            .count() as u32
    };
    let mut demands = Vec::new();
    let mut unreadable = Vec::new();
    for m in obj.spec.placement.iter().flat_map(|p| p.models.iter()) {
        let id = format!("{}/{}", m.model_ref.kind, m.model_ref.name);
        let replicas = match ScaleTarget::resolve(ctx, ns, &m.model_ref).await {
            Ok(t) => match t.get_scale().await {
                Ok(s) => s.spec.and_then(|s| s.replicas).unwrap_or(0).max(0) as u32,
                Err(e) => {
                    unreadable.push(format!("{id}: {e}"));
                    planned(&id)
                }
            },
            Err(e) => {
                unreadable.push(format!("{id}: {e}"));
                planned(&id)
            }
        };
        demands.push(ModelDemand {
            name: id,
            replicas,
            memory_mib: m.memory_mib,
            server_kind: None,
        });
    }
    let state: Vec<ServerState> = previous
        .iter()
        .map(|(id, models)| ServerState {
            id: id.clone(),
            kind: kind.kind.clone(),
            models: models.clone(),
            ..Default::default()
        })
        .collect();
    let p = plan(&demands, std::slice::from_ref(&kind), &state);
    let desired = p
        .server_replicas
        .get(&kind.kind)
        .copied()
        .unwrap_or(current);
    let bound = lower_bound(&demands, &kind, &kind.kind);
    let mut reasons = p.reasons.clone();
    reasons.push(format!(
        "{desired} server(s) for {} model replica(s); lower bound {bound}",
        demands.iter().map(|d| d.replicas).sum::<u32>()
    ));
    reasons.extend(
        unreadable
            .iter()
            .map(|u| format!("model replicas unreadable, kept from the last plan: {u}")),
    );
    if desired != current {
        match server.patch_replicas(desired).await {
            Ok(()) => {
                status.last_scale_time = Some(rfc3339(now));
                event(
                    ctx,
                    obj,
                    EventType::Normal,
                    "SuccessfulRescale",
                    format!("New size: {desired}; reason: {}", reasons.join("; ")),
                )
                .await;
                set_condition(
                    &mut status.conditions,
                    "AbleToScale",
                    true,
                    "SucceededRescale",
                    format!(
                        "the controller scaled {} {} to {desired}",
                        server.kind, server.name
                    ),
                    now,
                );
            }
            Err(e) => {
                let why = format!(
                    "failed to scale {} {} to {desired}: {e}",
                    server.kind, server.name
                );
                event(ctx, obj, EventType::Warning, "FailedRescale", why.clone()).await;
                set_condition(
                    &mut status.conditions,
                    "AbleToScale",
                    false,
                    "FailedUpdateScale",
                    why,
                    now,
                );
                write_status(&api, name, &status).await?;
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
        }
    } else {
        set_condition(
            &mut status.conditions,
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "the plan's server count matches".into(),
            now,
        );
    }
    let failed: Vec<String> = p
        .unplaced
        .iter()
        .map(|(m, n)| format!("{n} replica(s) of {m}"))
        .collect();
    let was_failing = status
        .conditions
        .iter()
        .any(|c| c.type_ == "ScheduleFailed" && c.status == "True");
    set_condition(
        &mut status.conditions,
        "ScheduleFailed",
        !failed.is_empty(),
        if failed.is_empty() {
            "AllPlaced"
        } else {
            "MaxServersReached"
        },
        if failed.is_empty() {
            "every model replica has a server".into()
        } else {
            format!(
                "not placed: {}; their existing replicas keep serving",
                failed.join(", ")
            )
        },
        now,
    );
    if !failed.is_empty() && !was_failing {
        event(
            ctx,
            obj,
            EventType::Warning,
            "ScheduleFailed",
            format!(
                "not placed at maxReplicas {}: {}",
                kind.max_replicas,
                failed.join(", ")
            ),
        )
        .await;
    }
    set_condition(
        &mut status.conditions,
        "ScalingActive",
        true,
        "ModelsRead",
        format!("{} model(s) packed", demands.len()),
        now,
    );
    set_condition(
        &mut status.conditions,
        "ScalingLimited",
        desired >= kind.max_replicas,
        if desired >= kind.max_replicas {
            "TooManyReplicas"
        } else {
            "DesiredWithinRange"
        },
        format!("{desired} of at most {} servers", kind.max_replicas),
        now,
    );
    status.current_replicas = Some(current);
    status.desired_replicas = Some(desired);
    status.reasons = reasons;
    // The plan the next reconcile starts from (copies a move unloads are gone by then).
    status.placement = Some(p.target.clone());
    write_status(&api, name, &status).await?;
    Ok(Action::requeue(sync))
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
