//! The target of an Autoscaler (the first half of the gather stage): nothing else may scale
//! it, its `/scale` must be readable, and its pods, from the watch cache, are read as the core
//! sees them.

use crate::actuate::ScaleTarget;
use crate::caches::Caches;
use crate::context::{Pass, ReconcileError};
use crate::crd::{Autoscaler, AutoscalerStatus};
use crate::observe::TargetPod;
use crate::sources;
use ebb_core::{PodPhase, Time};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why an Autoscaler cannot scale its target (the `AbleToScale` condition turns false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetProblem {
    /// Something else scales the target: an HPA, or an older Autoscaler.
    Conflicting(String),
    /// The target's `/scale` cannot be resolved or read.
    NoScale(String),
}

impl TargetProblem {
    /// The condition reason (the HPA's spelling where it has one).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            TargetProblem::Conflicting(_) => "ConflictingAutoscaler",
            TargetProblem::NoScale(_) => "FailedGetScale",
        }
    }

    /// What the condition's message says.
    pub(crate) fn message(&self) -> &str {
        match self {
            TargetProblem::Conflicting(m) | TargetProblem::NoScale(m) => m,
        }
    }

    /// When to look again: a conflict lasts until someone acts, so no sooner than 15 s nor
    /// than the Autoscaler's own sync; a missing `/scale` may appear any moment.
    fn retry(&self, sync: std::time::Duration) -> std::time::Duration {
        let floor = std::time::Duration::from_secs(15);
        match self {
            TargetProblem::Conflicting(_) => sync.max(floor),
            TargetProblem::NoScale(_) => floor,
        }
    }
}

/// The target, read: how to scale it, the replicas its `/scale` asks for, and its pods.
pub(crate) struct Target {
    pub(crate) scale: ScaleTarget,
    pub(crate) replicas: u32,
    pub(crate) pods: Vec<TargetPod>,
}

/// The checks both modes make before reading signals: nothing else scales the target, its
/// `/scale` can be read, and so can its selector.
pub(crate) async fn read_target(pass: &Pass<'_>) -> Result<Target, TargetProblem> {
    let (ctx, obj, ns) = (pass.ctx, pass.obj, pass.ns);
    // A dry run writes nothing, so it may watch beside the autoscaler that does.
    if let Some(why) = conflict(&ctx.caches, obj, ns).filter(|_| !obj.spec.dry_run()) {
        return Err(TargetProblem::Conflicting(why));
    }
    let r = &obj.spec.scale_target_ref;
    let target = ScaleTarget::resolve(ctx, ns, r).await.map_err(|e| {
        TargetProblem::NoScale(format!("cannot resolve {} {}: {e}", r.kind, r.name))
    })?;
    if let Some(cached) = cached_scale(pass) {
        let pods = target_pods(&ctx.caches.pods_selected(ns, &cached.selector));
        return Ok(Target {
            replicas: cached.replicas,
            scale: target,
            pods,
        });
    }
    let scale = target.get_scale().await.map_err(|e| {
        TargetProblem::NoScale(format!(
            "cannot read the scale of {} {}: {e}",
            target.kind, target.name
        ))
    })?;
    let selector = scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let pods = if selector.is_empty() {
        Vec::new()
    } else {
        let pods = ctx.caches.pods(ns, &selector).map_err(|e| {
            TargetProblem::NoScale(format!("the scale of {} {}: {e}", target.kind, target.name))
        })?;
        target_pods(&pods)
    };
    Ok(Target {
        replicas: crate::actuate::spec_replicas(&scale),
        scale: target,
        pods,
    })
}

/// How long after this instance scaled a target the cache must agree with the count it set
/// before it is read instead of `/scale`: the watch brings the change within milliseconds,
/// and a pass that read the count from before would take it for someone else's.
const CACHE_CATCH_UP_SECONDS: f64 = 10.0;

/// The target's `/scale` from the watch cache, for an `apps/v1` Deployment or StatefulSet
/// the cache holds, unless it still shows a count other than the one this instance set
/// (the pass's memory of its last write) within [`CACHE_CATCH_UP_SECONDS`].
fn cached_scale(pass: &Pass<'_>) -> Option<crate::caches::CachedScale> {
    let r = &pass.obj.spec.scale_target_ref;
    if r.api_version != "apps/v1" {
        return None;
    }
    let cached = pass.ctx.caches.workload_scale(pass.ns, &r.kind, &r.name)?;
    let behind = pass.memory.scaled.is_some_and(|(count, at)| {
        count != cached.replicas && pass.now.seconds_since(at) < CACHE_CATCH_UP_SECONDS
    });
    (!behind).then_some(cached)
}

/// Another scaler of the same target, from the watch caches: an HPA, or an older Autoscaler.
pub(crate) fn conflict(caches: &Caches, obj: &Autoscaler, ns: &str) -> Option<String> {
    let target = &obj.spec.scale_target_ref;
    for h in caches.hpas(ns) {
        let r = h.spec.as_ref().map(|s| &s.scale_target_ref);
        if r.is_some_and(|r| r.kind == target.kind && r.name == target.name) {
            return Some(format!(
                "HorizontalPodAutoscaler {} already scales {} {}: remove it, or this Autoscaler",
                h.name_any(),
                target.kind,
                target.name
            ));
        }
    }
    let mine = (obj.creation_timestamp(), obj.name_any());
    caches.autoscalers(ns).iter().find_map(|o| {
        let r = &o.spec.scale_target_ref;
        let older = o.name_any() != obj.name_any()
            && r.kind == target.kind
            && r.name == target.name
            && (o.creation_timestamp(), o.name_any()) < mine;
        older.then(|| {
            format!(
                "Autoscaler {} already scales {} {}",
                o.name_any(),
                target.kind,
                target.name
            )
        })
    })
}

/// The pods as the core sees them, read in place from the cache's objects.
pub(crate) fn target_pods(pods: &[Arc<Pod>]) -> Vec<TargetPod> {
    let at = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| {
        Time::from_millis(t.0.as_millisecond())
    };
    let no_status = PodStatus::default();
    pods.iter()
        .map(|p| {
            let status = p.status.as_ref().unwrap_or(&no_status);
            let ready_cond = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready");
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
                created_at: p.metadata.creation_timestamp.as_ref().map(at),
                requests,
            }
        })
        .collect()
}

/// Both modes' gate: the target, or the Action after reporting why not (another scaler owns
/// it: retried after the sync period; unreadable: after 15 s).
pub(crate) async fn target_or_report(
    pass: &mut Pass<'_>,
    status: &mut AutoscalerStatus,
) -> Result<Result<Target, Action>, ReconcileError> {
    match read_target(pass).await {
        Ok(t) => Ok(Ok(t)),
        Err(problem) => {
            let why = (problem.reason(), problem.message().to_string());
            let retry = problem.retry(pass.sync);
            pass.fail(status, "AbleToScale", why, retry).await.map(Err)
        }
    }
}

#[cfg(test)]
mod problem_tests {
    use super::TargetProblem;
    use std::time::Duration;

    #[test]
    fn each_problem_has_its_condition_reason_and_retry() {
        let c = TargetProblem::Conflicting("HorizontalPodAutoscaler x already scales it".into());
        assert_eq!(c.reason(), "ConflictingAutoscaler");
        assert_eq!(c.retry(Duration::from_secs(60)), Duration::from_secs(60));
        assert_eq!(c.retry(Duration::from_secs(1)), Duration::from_secs(15));
        let n = TargetProblem::NoScale("cannot read the scale".into());
        assert_eq!(n.reason(), "FailedGetScale");
        assert_eq!(n.message(), "cannot read the scale");
        assert_eq!(n.retry(Duration::from_secs(60)), Duration::from_secs(15));
    }
}
