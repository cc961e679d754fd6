//! What the controller tells about an Autoscaler: its status (conditions with HPA's
//! semantics, transition times kept when nothing changed), and Events.

use crate::crd::{Autoscaler, AutoscalerStatus, Condition};
use crate::reconcile::{Context, ReconcileError};
use ebb_core::Time;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use std::time::Duration;

pub(crate) fn rfc3339(t: Time) -> String {
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

pub(crate) async fn event(
    ctx: &Context,
    obj: &Autoscaler,
    type_: EventType,
    reason: &str,
    note: String,
) {
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

pub(crate) fn spec_errors(errors: &[crate::crd::SpecError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reports a failure: sets condition `type_` to False with `reason` and `message`, writes the
/// status, emits a Warning Event (only when the message is new, so a persistent failure is
/// not an Event storm), and asks to be called again after `retry`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fail(
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

pub(crate) async fn write_status(
    api: &Api<Autoscaler>,
    name: &str,
    status: &AutoscalerStatus,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Reports an invalid spec (its field paths) and retries in a minute; nothing is scaled.
pub(crate) async fn report_invalid(
    ctx: &Context,
    obj: &Autoscaler,
    api: &Api<Autoscaler>,
    status: &mut AutoscalerStatus,
    errors: &[crate::crd::SpecError],
    now: Time,
) -> Result<Action, ReconcileError> {
    let message = spec_errors(errors);
    let retry = Duration::from_secs(60);
    fail(
        ctx,
        obj,
        api,
        status,
        "ScalingActive",
        "InvalidSpec",
        message,
        now,
        retry,
    )
    .await
}

/// Scales `target` to `desired` and says so: on success the `SuccessfulRescale` Event
/// ("New size: N; reason: ...") and `AbleToScale=True`; on failure a `FailedRescale` Event and
/// `AbleToScale=False`. Returns whether the patch went through.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn rescale(
    ctx: &Context,
    obj: &Autoscaler,
    target: &crate::actuate::ScaleTarget,
    desired: u32,
    reasons: &str,
    status: &mut AutoscalerStatus,
    now: Time,
) -> bool {
    match target.patch_replicas(desired).await {
        Ok(()) => {
            status.last_scale_time = Some(rfc3339(now));
            let note = format!("New size: {desired}; reason: {reasons}");
            event(ctx, obj, EventType::Normal, "SuccessfulRescale", note).await;
            let message = format!(
                "the controller scaled {} {} to {desired}",
                target.kind, target.name
            );
            set_condition(
                &mut status.conditions,
                "AbleToScale",
                true,
                "SucceededRescale",
                message,
                now,
            );
            true
        }
        Err(e) => {
            let why = format!(
                "failed to scale {} {} to {desired}: {e}",
                target.kind, target.name
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
            false
        }
    }
}
