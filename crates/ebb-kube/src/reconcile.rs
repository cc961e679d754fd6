//! One reconcile of one `Autoscaler`, in four stages: **gather** (the target's `/scale` and
//! pods from the cache, after checking that nothing else scales it; the sources that are due),
//! **decide** (`ebb_core::Scaler`, from the state this instance last reached or the status's),
//! **apply** (deletion costs, a wait for idle victims, a merge patch of `/scale` retried with
//! backoff; the core is told what was reached) and **report** (conditions, counts and reasons,
//! Events; the status written only when it tells something new). No replica count is computed
//! here. Placement mode has its own decide step (`placement_mode`).

use crate::context::{autoscaler_key, Context, Pass, ReconcileError};
use crate::crd::{Autoscaler, AutoscalerStatus, DryRunDifference, DRY_RUN_DIFFERENCES};
use crate::observe;
use crate::pause;
use crate::placement_mode::reconcile_placement;
use crate::poll;
use crate::sources;
use crate::status::{report_decision, set_condition};
use crate::target::{target_or_report, Target};
use ebb_core::{Decision, Observation, Policy, Scaler};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::context::{system_clock, Clock};

/// Reconciles one Autoscaler.
pub async fn reconcile(obj: Arc<Autoscaler>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let name = obj.name_any();
    let ns = obj
        .namespace()
        .ok_or_else(|| ReconcileError::NoNamespace(name.clone()))?;
    tracing::debug!(autoscaler = %name, namespace = %ns, "reconciling");
    ctx.caches.ready().await;
    let key = autoscaler_key(&ns, &name);
    let mut pass = Pass::new(&ctx, &obj, &ns, &name, ctx.take_memory(&key));
    let result = if obj.spec.placement.is_some() {
        reconcile_placement(&mut pass).await
    } else {
        reconcile_policy(&mut pass).await
    };
    ctx.keep_memory(key, pass.memory);
    ctx.metrics
        .reconciled(&ns, &name, started.elapsed(), result.is_ok());
    result
}

/// The policy mode: the four stages.
async fn reconcile_policy(pass: &mut Pass<'_>) -> Result<Action, ReconcileError> {
    let mut status = pass.status();
    // A bad spec is reported with its field paths, and nothing is scaled.
    let mut policy = match valid_policy(pass.obj) {
        Ok(p) => p,
        Err(errors) => return pass.report_invalid(&mut status, &errors).await,
    };
    let pause = pause::from_annotations(pass.obj.annotations());
    policy.hold = pause.hold;
    let target = match target_or_report(pass, &mut status).await? {
        Ok(t) => t,
        Err(action) => return Ok(action),
    };
    let slo = policy.slo.as_ref().map(|s| poll::SloReading {
        latency: s.latency_seconds,
        slots: s.slots_per_replica,
    });
    let next_due = poll::poll_due(pass, &target.pods, slo).await;
    let failed = report_source_failures(pass).await;
    report_source_warnings(pass).await;
    let specs = &pass.obj.spec.sources;
    status.current_metrics = poll::source_statuses(specs, &pass.memory.sources);

    let latest = poll::latest(specs, &pass.memory.sources);
    let mut obs = observe::observation(&policy, target.replicas, &target.pods, &latest);
    if let Some(engine) = &policy.engine {
        let reading = crate::engine_poll::observe(pass, engine, &target.pods).await;
        let engine_statuses = crate::engine_poll::statuses(engine, &reading);
        status.current_metrics.extend(engine_statuses);
        reading.add_to(&mut obs);
    }
    obs.fallbacks = poll::fallbacks(specs, &pass.memory.sources, &policy);
    let (mut scaler, mut d) = decide(pass, policy, &obs, &status);
    status.pool = crate::pool_guard::guard(pass, &mut scaler, &mut d);

    if pass.obj.spec.dry_run() {
        dry_run(pass, &d, &mut status).await;
    } else {
        apply(pass, &target, &d, &obs, &mut scaler, &mut status).await;
    }

    report_decision(&mut status, &d, target.replicas, &failed, pass.now);
    let held = d
        .reasons
        .iter()
        .find(|r| matches!(r, ebb_core::Reason::Paused { .. }));
    pause::report(pass, &mut status, &pause, held.map(|r| r.to_string())).await;
    let state = scaler.state().clone();
    status.decision_state = Some(state.clone());
    // Remembered before the status write: the scale (if any) happened whether or not the
    // write succeeds, and the next decision must know it.
    pass.memory.state = Some(state);
    pass.write(&status).await?;
    Ok(Action::requeue(next_due.max(Duration::from_millis(100))))
}

/// The spec's policy, when the spec and its sources are valid.
fn valid_policy(obj: &Autoscaler) -> Result<Policy, Vec<crate::crd::SpecError>> {
    obj.spec
        .policy()
        .and_then(|p| obj.spec.check_sources().map(|_| p))
}

/// The decide stage: the core, from the state this instance last reached (or, after a restart
/// or a change of leader, the one in the status).
fn decide(
    pass: &Pass<'_>,
    policy: Policy,
    obs: &Observation,
    status: &AutoscalerStatus,
) -> (Scaler, Decision) {
    let state = pass
        .memory
        .state
        .clone()
        .or_else(|| status.decision_state.clone())
        .unwrap_or_default();
    let mut scaler = Scaler::with_state(policy, state);
    let d = scaler.decide(obs, pass.now);
    pass.ctx
        .metrics
        .decided(pass.ns, pass.name, d.current_replicas, d.proposed_replicas);
    (scaler, d)
}

/// The apply stage: before a scale-in, the victims' deletion costs and (if asked) a wait until
/// they are idle; then the `/scale` patch. The core records the count only when it was reached.
async fn apply(
    pass: &mut Pass<'_>,
    target: &Target,
    d: &Decision,
    obs: &Observation,
    scaler: &mut Scaler,
    status: &mut AutoscalerStatus,
) {
    if d.desired_replicas == d.current_replicas {
        let why = "recommended size matches current size".to_string();
        set_condition(
            &mut status.conditions,
            "AbleToScale",
            true,
            "ReadyForNewScale",
            why,
            pass.now,
        );
        return;
    }
    let scale_in = pass.obj.spec.scale_in.clone().unwrap_or_default();
    if d.desired_replicas < d.current_replicas && scale_in.deletion_cost.unwrap_or(true) {
        let ctx = pass.ctx;
        let gateway = pass
            .obj
            .spec
            .sources
            .iter()
            .find_map(|s| s.gateway.as_ref());
        // Behind a gateway the victims are drained through it first, 30 s at most by default.
        let wait = scale_in
            .wait_for_idle_seconds
            .or(gateway.map(|_| 30.0))
            .filter(|w| *w > 0.0)
            .map(|w| Duration::from_secs_f64(w.min(600.0)));
        let drain_until = gateway.map(|_| drain_deadline(pass.now, wait.unwrap_or_default()));
        if let Err(e) = crate::actuate::set_deletion_costs(
            ctx,
            pass.ns,
            &obs.pods,
            &d.victims,
            drain_until.as_deref(),
        )
        .await
        {
            tracing::warn!(autoscaler = %pass.name, error = %e, "could not annotate the victims");
        }
        match (gateway, wait) {
            (Some(g), Some(limit)) => {
                crate::actuate::wait_for_gateway_drain(ctx, pass.ns, g, &d.victims, limit).await
            }
            (None, Some(limit)) => {
                crate::actuate::wait_for_idle(pass.obj, &target.pods, &d.victims, limit).await
            }
            (_, None) => {}
        }
    }
    let summary = d.summary();
    if pass
        .rescale(&target.scale, d.desired_replicas, &summary, status)
        .await
    {
        scaler.applied(d.desired_replicas, pass.now);
        pass.memory.scaled = Some((d.desired_replicas, pass.now));
    }
}

/// Until when a victim is drained: the wait for it, and 15 s for the scale-in to remove it;
/// past that, a pod the scale-in did not remove takes requests again.
fn drain_deadline(now: ebb_core::Time, wait: Duration) -> String {
    let ms = now.as_millis() + wait.as_millis() as i64 + 15_000;
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Dry-run mode's apply stage: nothing is written to the target. The replica-seconds each
/// side used since the last pass go to `/metrics`; a change in how the decision differs from
/// the target's count goes to the status (the last few) and an Event; the `DryRun` condition
/// says that `/scale` is left alone.
async fn dry_run(pass: &mut Pass<'_>, d: &Decision, status: &mut AutoscalerStatus) {
    if let Some(last) = pass.memory.dry_run_at {
        let seconds = pass.now.seconds_since(last).clamp(0.0, 600.0);
        pass.ctx.metrics.dry_run(
            pass.ns,
            pass.name,
            seconds,
            d.proposed_replicas,
            d.current_replicas,
        );
    }
    pass.memory.dry_run_at = Some(pass.now);
    set_condition(
        &mut status.conditions,
        "DryRun",
        true,
        "DryRunMode",
        "decisions are published, /scale is never written".into(),
        pass.now,
    );
    let (target, ebb) = (d.current_replicas, d.proposed_replicas);
    let seen = status.dry_run.get_or_insert_with(Default::default);
    let last = seen
        .differences
        .last()
        .map(|x| (x.target_replicas, x.ebb_replicas));
    if target == ebb || last == Some((target, ebb)) {
        return;
    }
    seen.differences.push(DryRunDifference {
        time: crate::status::rfc3339(pass.now),
        target_replicas: target,
        ebb_replicas: ebb,
    });
    let excess = seen.differences.len().saturating_sub(DRY_RUN_DIFFERENCES);
    seen.differences.drain(..excess);
    let note = format!(
        "would set {ebb} (the target has {target}); reason: {}",
        d.summary()
    );
    pass.event(EventType::Normal, "DryRunRescale", note).await;
}

/// One line per failing source, for the `ScalingActive` condition, and a Warning Event when a
/// source's error is new.
async fn report_source_failures(pass: &mut Pass<'_>) -> Vec<String> {
    let mut failed = Vec::new();
    let mut new_errors = Vec::new();
    let specs = &pass.obj.spec.sources;
    for (s, m) in specs.iter().zip(pass.memory.sources.iter_mut()) {
        let Some(e) = &m.error else {
            m.reported_error = None;
            continue;
        };
        let mut line = format!("source {} ({}) failed: {e}", s.name, sources::kind_of(s));
        if let Some(f) = &s.fallback {
            if let Some(action) = f.active(m.failures) {
                line.push_str(&format!(
                    "; {} failures in a row or more: its metrics fall back to {action}",
                    f.threshold()
                ));
            }
        }
        if m.reported_error.as_deref() != Some(line.as_str()) {
            m.reported_error = Some(line.clone());
            new_errors.push(line.clone());
        }
        failed.push(line);
    }
    for line in new_errors {
        pass.event(EventType::Warning, "FailedGetSource", line)
            .await;
    }
    failed
}

/// A Warning Event when what is wrong with a source's still-used value is new (the gateway's
/// slots against the policy's).
async fn report_source_warnings(pass: &mut Pass<'_>) {
    let mut new_warnings = Vec::new();
    for (s, m) in pass
        .obj
        .spec
        .sources
        .iter()
        .zip(pass.memory.sources.iter_mut())
    {
        if m.warning != m.reported_warning {
            m.reported_warning.clone_from(&m.warning);
            if let Some(w) = &m.warning {
                new_warnings.push(format!("source {}: {w}", s.name));
            }
        }
    }
    for line in new_warnings {
        pass.event(EventType::Warning, "GatewaySlots", line).await;
    }
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
