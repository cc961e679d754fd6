//! The target of an Autoscaler: nothing else may scale it, its `/scale` must be readable,
//! and its pods are read as the core sees them.

use crate::actuate::ScaleTarget;
use crate::crd::Autoscaler;
use crate::observe::TargetPod;
use crate::reconcile::{Context, ReconcileError};
use crate::sources;
use ebb_core::{PodPhase, Time};
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use std::collections::BTreeMap;

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

/// The checks both modes make before reading signals: nothing else scales the target, and
/// its `/scale` can be read.
pub(crate) async fn target_scale(
    ctx: &Context,
    obj: &Autoscaler,
    ns: &str,
) -> Result<
    Result<(ScaleTarget, k8s_openapi::api::autoscaling::v1::Scale), TargetProblem>,
    ReconcileError,
> {
    if let Some(why) = conflict(ctx, obj, ns).await? {
        return Ok(Err(TargetProblem::Conflicting(why)));
    }
    let r = &obj.spec.scale_target_ref;
    let target = match ScaleTarget::resolve(ctx, ns, r).await {
        Ok(t) => t,
        Err(e) => {
            return Ok(Err(TargetProblem::NoScale(format!(
                "cannot resolve {} {}: {e}",
                r.kind, r.name
            ))))
        }
    };
    match target.get_scale().await {
        Ok(s) => Ok(Ok((target, s))),
        Err(e) => Ok(Err(TargetProblem::NoScale(format!(
            "cannot read the scale of {} {}: {e}",
            target.kind, target.name
        )))),
    }
}

/// Another scaler of the same target: an HPA, or an older Autoscaler.
pub(crate) async fn conflict(
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

pub(crate) fn target_pods(pods: Vec<Pod>) -> Vec<TargetPod> {
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

/// Both modes' gate: the target and its `/scale`, or the Action after reporting why not
/// (another scaler owns it: retried after the sync period; unreadable: after 15 s).
pub(crate) async fn target_or_report(
    ctx: &Context,
    obj: &Autoscaler,
    ns: &str,
    api: &Api<Autoscaler>,
    status: &mut crate::crd::AutoscalerStatus,
    now: Time,
    sync: std::time::Duration,
) -> Result<
    Result<
        (ScaleTarget, k8s_openapi::api::autoscaling::v1::Scale),
        kube::runtime::controller::Action,
    >,
    ReconcileError,
> {
    match target_scale(ctx, obj, ns).await? {
        Ok(t) => Ok(Ok(t)),
        Err(problem) => {
            let action = crate::status::fail(
                ctx,
                obj,
                api,
                status,
                "AbleToScale",
                problem.reason(),
                problem.message().to_string(),
                now,
                problem.retry(sync),
            )
            .await?;
            Ok(Err(action))
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
