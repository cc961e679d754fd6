//! Placement mode: an Autoscaler whose target is a server (a Seldon Core 2 `Server`) sizes it
//! from its models' replicas packed by `ebb_core::placement`.
//!
//! A pass runs the same four stages as the replica mode: *gather* the models' replicas,
//! *decide* the server count (the core's planner), *apply* it (through an operator's pause),
//! and *report* conditions, Events and the placement the next pass starts from.

use crate::actuate::ScaleTarget;
use crate::context::{Pass, ReconcileError};
use crate::crd::AutoscalerStatus;
use crate::status::set_condition;
use crate::target::{target_or_report, Target};
use ebb_core::placement::{lower_bound, plan, ModelDemand, Plan, ServerKind, ServerState};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use std::collections::BTreeMap;
use std::time::Duration;

/// The placement a status records: each server's models.
type Placement = BTreeMap<String, Vec<String>>;

/// Placement mode: the target is a server whose replicas follow its models. Each model's
/// replicas are read from its `/scale` (its own Autoscaler sets them); the planner packs them
/// by memory starting from the placement in the status; the target is scaled to the plan's
/// server count. Seldon Core 2's scheduler then places the models on those servers.
pub(crate) async fn reconcile_placement(pass: &mut Pass<'_>) -> Result<Action, ReconcileError> {
    let mut status = pass.status();
    let kind = match pass
        .obj
        .spec
        .server_kind(&pass.obj.spec.scale_target_ref.name)
    {
        Ok(Some(k)) => k,
        Ok(None) => return Ok(Action::requeue(pass.sync)),
        Err(errors) => return pass.report_invalid(&mut status, &errors).await,
    };
    let server = match target_or_report(pass, &mut status).await? {
        Ok(t) => t,
        Err(action) => return Ok(action),
    };
    let previous = status.placement.clone().unwrap_or_default();
    let (demands, unreadable) = model_demands(pass, &previous).await;
    let p = plan(
        &demands,
        std::slice::from_ref(&kind),
        &servers(&kind, &previous),
    );
    let desired = p
        .server_replicas
        .get(&kind.kind)
        .copied()
        .unwrap_or(server.replicas);
    let mut reasons = plan_reasons(&p, &kind, &demands, desired, &unreadable);
    if !apply(pass, &mut status, &server, desired, &mut reasons).await {
        pass.write(&status).await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    report(pass, &mut status, &p, &kind, desired, demands.len()).await;
    status.current_replicas = Some(server.replicas);
    status.desired_replicas = Some(desired);
    status.reasons = reasons;
    // The plan the next reconcile starts from (copies a move unloads are gone by then).
    status.placement = Some(p.target.clone());
    pass.write(&status).await?;
    Ok(Action::requeue(pass.sync))
}

/// Gather: each model's replicas, as its own Autoscaler set them, with the models whose
/// `/scale` could not be read. One that cannot be read keeps the replicas the last plan gave
/// it: a read failure never shrinks the servers.
async fn model_demands(pass: &Pass<'_>, previous: &Placement) -> (Vec<ModelDemand>, Vec<String>) {
    let planned = |model: &str| {
        previous
            .values()
            .filter(|ms| ms.iter().any(|m| m == model))
            .count() as u32
    };
    let mut demands = Vec::new();
    let mut unreadable = Vec::new();
    for m in pass.obj.spec.placement.iter().flat_map(|p| p.models.iter()) {
        let id = format!("{}/{}", m.model_ref.kind, m.model_ref.name);
        let read = match ScaleTarget::resolve(pass.ctx, pass.ns, &m.model_ref).await {
            Ok(t) => t.replicas().await,
            Err(e) => Err(e),
        };
        let replicas = read.unwrap_or_else(|e| {
            unreadable.push(format!("{id}: {e}"));
            planned(&id)
        });
        demands.push(ModelDemand {
            name: id,
            replicas,
            memory_mib: m.memory_mib,
            server_kind: None,
        });
    }
    (demands, unreadable)
}

/// The servers as the last plan left them, for the planner to start from.
fn servers(kind: &ServerKind, previous: &Placement) -> Vec<ServerState> {
    previous
        .iter()
        .map(|(id, models)| ServerState {
            id: id.clone(),
            kind: kind.kind.clone(),
            models: models.clone(),
            ..Default::default()
        })
        .collect()
}

/// Decide: the plan's reasons, the count against its lower bound, and the models read from
/// the last plan instead.
fn plan_reasons(
    p: &Plan,
    kind: &ServerKind,
    demands: &[ModelDemand],
    desired: u32,
    unreadable: &[String],
) -> Vec<String> {
    let bound = lower_bound(demands, kind, &kind.kind);
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
    reasons
}

/// Apply: the plan's count, or the count an operator's pause holds. False when the `/scale`
/// write failed (the pass then retries sooner).
async fn apply(
    pass: &Pass<'_>,
    status: &mut AutoscalerStatus,
    server: &Target,
    desired: u32,
    reasons: &mut Vec<String>,
) -> bool {
    let current = server.replicas;
    let pause = crate::pause::from_annotations(kube::ResourceExt::annotations(pass.obj));
    let applied = pause.hold.map_or(desired, |h| h.count(current));
    let held = pause.hold.map(|_| {
        format!(
            "paused by an operator: the count is held at {applied} (the plan would set {desired})"
        )
    });
    reasons.extend(held.clone());
    crate::pause::report(pass, status, &pause, held).await;
    if applied != current {
        return pass
            .rescale(&server.scale, applied, &reasons.join("; "), status)
            .await;
    }
    set_condition(
        &mut status.conditions,
        "AbleToScale",
        true,
        "ReadyForNewScale",
        "the plan's server count matches".into(),
        pass.now,
    );
    true
}

/// Report: model replicas the servers cannot hold (a Warning Event when that starts), and
/// whether the count is at the servers' ceiling.
async fn report(
    pass: &Pass<'_>,
    status: &mut AutoscalerStatus,
    p: &Plan,
    kind: &ServerKind,
    desired: u32,
    models: usize,
) {
    let now = pass.now;
    let failed: Vec<String> = p
        .unplaced
        .iter()
        .map(|(m, n)| format!("{n} replica(s) of {m}"))
        .collect();
    let was_failing = status
        .conditions
        .iter()
        .any(|c| c.type_ == "ScheduleFailed" && c.status == "True");
    let (reason, message) = if failed.is_empty() {
        ("AllPlaced", "every model replica has a server".to_string())
    } else {
        let listed = failed.join(", ");
        let message = format!("not placed: {listed}; their existing replicas keep serving");
        ("MaxServersReached", message)
    };
    set_condition(
        &mut status.conditions,
        "ScheduleFailed",
        !failed.is_empty(),
        reason,
        message,
        now,
    );
    if !failed.is_empty() && !was_failing {
        let max = kind.max_replicas;
        let note = format!("not placed at maxReplicas {max}: {}", failed.join(", "));
        pass.event(EventType::Warning, "ScheduleFailed", note).await;
    }
    let packed = format!("{models} model(s) packed");
    set_condition(
        &mut status.conditions,
        "ScalingActive",
        true,
        "ModelsRead",
        packed,
        now,
    );
    let limited = desired >= kind.max_replicas;
    set_condition(
        &mut status.conditions,
        "ScalingLimited",
        limited,
        if limited {
            "TooManyReplicas"
        } else {
            "DesiredWithinRange"
        },
        format!("{desired} of at most {} servers", kind.max_replicas),
        now,
    );
}
