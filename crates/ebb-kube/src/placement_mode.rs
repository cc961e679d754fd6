//! Placement mode: an Autoscaler whose target is a server (a Seldon Core 2 `Server`) sizes it
//! from its models' replicas packed by `ebb_core::placement`.

use crate::actuate::ScaleTarget;
use crate::context::{Pass, ReconcileError};
use crate::status::set_condition;
use crate::target::target_or_report;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use std::time::Duration;

/// Placement mode: the target is a server whose replicas follow its models. Each model's
/// replicas are read from its `/scale` (its own Autoscaler sets them); the planner packs them
/// by memory starting from the placement in the status; the target is scaled to the plan's
/// server count. Seldon Core 2's scheduler then places the models on those servers.
pub(crate) async fn reconcile_placement(pass: &mut Pass<'_>) -> Result<Action, ReconcileError> {
    use ebb_core::placement::{lower_bound, plan, ModelDemand, ServerState};
    let (ctx, obj, ns, now, sync) = (pass.ctx, pass.obj, pass.ns, pass.now, pass.sync);
    let mut status = pass.status();
    let target_name = &obj.spec.scale_target_ref.name;
    let kind = match obj.spec.server_kind(target_name) {
        Ok(Some(k)) => k,
        Ok(None) => return Ok(Action::requeue(sync)),
        Err(errors) => {
            return pass.report_invalid(&mut status, &errors).await;
        }
    };
    let server = match target_or_report(pass, &mut status).await? {
        Ok(t) => t,
        Err(action) => return Ok(action),
    };
    let current = server.replicas;
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
        let read = match ScaleTarget::resolve(ctx, ns, &m.model_ref).await {
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
    let pause = crate::pause::from_annotations(kube::ResourceExt::annotations(obj));
    let applied = pause.hold.map_or(desired, |h| h.count(current));
    let held = pause.hold.map(|_| {
        format!(
            "paused by an operator: the count is held at {applied} (the plan would set {desired})"
        )
    });
    reasons.extend(held.clone());
    crate::pause::report(pass, &mut status, &pause, held).await;
    if applied != current {
        let why = reasons.join("; ");
        if !pass
            .rescale(&server.scale, applied, &why, &mut status)
            .await
        {
            pass.write(&status).await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
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
        pass.event(
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
    pass.write(&status).await?;
    Ok(Action::requeue(sync))
}
