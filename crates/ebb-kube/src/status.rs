//! What the controller tells about an Autoscaler (the report stage): its status (conditions
//! with HPA's semantics, transition times kept when nothing changed), written only when it
//! says something new (HPA's `updateStatusIfNeeded`), and Events.

use crate::actuate::ScaleTarget;
use crate::context::{Pass, ReconcileError};
use crate::crd::{AutoscalerStatus, Condition, SourceStatus};
use ebb_core::{Decision, LimitReason, Time};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::Resource;
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

pub(crate) fn spec_errors(errors: &[crate::crd::SpecError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// What writing a status over the last one would change for a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing shown: only the decision state or a source's `lastSuccess` moved.
    Nothing,
    /// Only numbers: a source's value, or the figures inside the reasons and condition
    /// messages (the SLO's "27.7 req/s", a dispersion, a forecast), which move on every pass.
    Numbers,
    /// Something a reader acts on: replicas, a decision, a reason or condition that is new
    /// in its words, a source's error, the placement, the pool, the dry run.
    Meaning,
}

/// Seconds between writes of a status whose only changes are numbers: about HPA's sync
/// period. With an SLO block every reason carries the model's figures, which move on every
/// pass: written each time, that is an API write per Autoscaler per second.
pub const NUMBERS_REFRESH_SECONDS: f64 = 15.0;

/// What writing `new` over `old` would change ([`Change`]). The decision state and each
/// source's `lastSuccess` are left out: they move on every pass, even when nothing else
/// does, and are written with the next change. A new leader that reads a state a little
/// older than the last pass rebuilds the same recommendation from the same signals.
pub fn what_changed(old: Option<&AutoscalerStatus>, new: &AutoscalerStatus) -> Change {
    let Some(old) = old else {
        return Change::Meaning;
    };
    // Destructured in full, so that a field added to the status is compared (or left out)
    // on purpose; nothing is cloned, since this runs on every pass.
    let AutoscalerStatus {
        observed_generation,
        current_replicas,
        desired_replicas,
        last_scale_time,
        current_metrics,
        reasons,
        conditions,
        decision_state: _,
        dry_run,
        placement,
        pool,
    } = new;
    let same_source = |a: &SourceStatus, b: &SourceStatus| {
        let SourceStatus {
            name,
            source,
            value: _,
            error,
            last_success: _,
        } = b;
        (&a.name, &a.source, &a.error) == (name, source, error)
    };
    let same_condition = |a: &Condition, b: &Condition| {
        (&a.type_, &a.status, &a.reason, &a.last_transition_time)
            == (&b.type_, &b.status, &b.reason, &b.last_transition_time)
            && same_words(&a.message, &b.message)
    };
    let meaning = old.observed_generation != *observed_generation
        || old.current_replicas != *current_replicas
        || old.desired_replicas != *desired_replicas
        || old.last_scale_time != *last_scale_time
        || old.placement != *placement
        || old.pool != *pool
        || old.dry_run != *dry_run
        || !same_all(&old.current_metrics, current_metrics, same_source)
        || !same_all(&old.conditions, conditions, same_condition)
        || !same_all(&old.reasons, reasons, |a, b| same_words(a, b));
    if meaning {
        return Change::Meaning;
    }
    let numbers = old.reasons != *reasons
        || old.conditions != *conditions
        || old
            .current_metrics
            .iter()
            .zip(current_metrics)
            .any(|(a, b)| a.value != b.value);
    if numbers {
        Change::Numbers
    } else {
        Change::Nothing
    }
}

/// Whether two lists hold the same items, pairwise by `same`.
fn same_all<T>(a: &[T], b: &[T], same: impl Fn(&T, &T) -> bool) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

/// Whether two sentences differ at most in their numbers (each run of digits, with its
/// decimal points and thousands separators, reads as one `#`).
fn same_words(a: &str, b: &str) -> bool {
    a == b || words(a).eq(words(b))
}

/// `text` with each number as one `#`.
fn words(text: &str) -> impl Iterator<Item = char> + '_ {
    let mut in_number = false;
    text.chars().filter_map(move |c| {
        let part_of_number = c.is_ascii_digit() || (in_number && (c == '.' || c == ','));
        let starts = c.is_ascii_digit() && !in_number;
        in_number = part_of_number;
        match (starts, part_of_number) {
            (true, _) => Some('#'),
            (false, true) => None,
            (false, false) => Some(c),
        }
    })
}

/// The conditions, counts and reasons a decision reports (pure: unit-tested without an API).
/// `failed` holds one line per source that failed this pass.
pub fn report_decision(
    status: &mut AutoscalerStatus,
    d: &Decision,
    current: u32,
    failed: &[String],
    now: Time,
) {
    let usable = !d.no_usable_metric();
    let (reason, message) = match (usable, failed.is_empty()) {
        (false, true) => (
            "FailedGetMetrics",
            "no usable metric: holding replicas".to_string(),
        ),
        (false, false) => (
            "FailedGetMetrics",
            format!("no usable metric: holding replicas; {}", failed.join("; ")),
        ),
        (true, false) => (
            "ValidMetricFound",
            format!(
                "deciding on the metrics that answered; {}",
                failed.join("; ")
            ),
        ),
        (true, true) => (
            "ValidMetricFound",
            "the policy's signals are being read".to_string(),
        ),
    };
    set_condition(
        &mut status.conditions,
        "ScalingActive",
        usable,
        reason,
        message,
        now,
    );
    let limited = matches!(
        d.limit,
        LimitReason::TooManyReplicas
            | LimitReason::TooFewReplicas
            | LimitReason::ScaleUpLimit
            | LimitReason::ScaleDownLimit
    );
    let message = if limited {
        d.summary()
    } else {
        "the desired count is within range".into()
    };
    set_condition(
        &mut status.conditions,
        "ScalingLimited",
        limited,
        d.limit.as_str(),
        message,
        now,
    );
    status.current_replicas = Some(current);
    // What the policy asks for, also while an operator holds the count (paused).
    status.desired_replicas = Some(d.proposed_replicas);
    status.reasons = d.reasons.iter().map(|r| r.to_string()).collect();
}

impl Pass<'_> {
    /// Publishes an Event about the Autoscaler (a failure to publish is logged, not fatal).
    pub(crate) async fn event(&self, type_: EventType, reason: &str, note: String) {
        let reference: ObjectReference = self.obj.object_ref(&());
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Scale".into(),
            secondary: None,
        };
        if let Err(e) = self.ctx.publish(&ev, &reference).await {
            tracing::warn!(autoscaler = %self.name, error = %e, "could not publish an event");
        }
    }

    /// Writes the status when it tells something new ([`what_changed`]), compared with what
    /// this instance last wrote or, before its first write, what the cache shows: at once
    /// for a change of meaning, at most every [`NUMBERS_REFRESH_SECONDS`] for numbers alone.
    /// The write is a merge patch of the status subresource.
    pub(crate) async fn write(&mut self, status: &AutoscalerStatus) -> Result<(), kube::Error> {
        let last = self.memory.written.as_ref().or(self.obj.status.as_ref());
        let refresh_due = self
            .memory
            .written_at
            .is_none_or(|at| self.now.seconds_since(at) >= NUMBERS_REFRESH_SECONDS);
        let write = match what_changed(last, status) {
            Change::Meaning => true,
            Change::Numbers => refresh_due,
            Change::Nothing => false,
        };
        if !write {
            self.ctx.metrics.status_write_skipped();
            return Ok(());
        }
        let patch = serde_json::json!({ "status": status });
        self.api
            .patch_status(self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.ctx.metrics.status_written();
        self.memory.written = Some(status.clone());
        self.memory.written_at = Some(self.now);
        Ok(())
    }

    /// Reports a failure: sets condition `type_` to False with `reason` and `message`, writes
    /// the status, emits a Warning Event (only when the message is new, so a persistent
    /// failure is not an Event storm), and asks to be called again after `retry`.
    pub(crate) async fn fail(
        &mut self,
        status: &mut AutoscalerStatus,
        type_: &str,
        (reason, message): (&str, String),
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
            self.now,
        );
        self.write(status).await?;
        if new {
            self.event(EventType::Warning, reason, message).await;
        }
        Ok(Action::requeue(retry))
    }

    /// Reports an invalid spec (its field paths) and retries in a minute; nothing is scaled.
    pub(crate) async fn report_invalid(
        &mut self,
        status: &mut AutoscalerStatus,
        errors: &[crate::crd::SpecError],
    ) -> Result<Action, ReconcileError> {
        set_condition(
            &mut status.conditions,
            "AbleToScale",
            false,
            "InvalidSpec",
            "the spec is invalid: nothing is scaled".into(),
            self.now,
        );
        let why = ("InvalidSpec", spec_errors(errors));
        self.fail(status, "ScalingActive", why, Duration::from_secs(60))
            .await
    }

    /// Scales `target` to `desired` and says so: on success the `SuccessfulRescale` Event
    /// ("New size: N; reason: ...") and `AbleToScale=True`; on failure a `FailedRescale` Event
    /// and `AbleToScale=False`. Returns whether the patch went through.
    pub(crate) async fn rescale(
        &self,
        target: &ScaleTarget,
        desired: u32,
        reasons: &str,
        status: &mut AutoscalerStatus,
    ) -> bool {
        let now = self.now;
        match target.patch_replicas(desired).await {
            Ok(()) => {
                status.last_scale_time = Some(rfc3339(now));
                let note = format!("New size: {desired}; reason: {reasons}");
                self.event(EventType::Normal, "SuccessfulRescale", note)
                    .await;
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
                self.event(EventType::Warning, "FailedRescale", why.clone())
                    .await;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::{Reason, State};

    fn decision(desired: u32, limit: LimitReason, reasons: Vec<Reason>) -> Decision {
        Decision {
            at: Time::from_secs(100),
            current_replicas: 2,
            desired_replicas: desired,
            proposed_replicas: desired,
            proposals: Vec::new(),
            limit,
            reasons,
            victims: Vec::new(),
            panic: false,
            state: State::default(),
        }
    }

    fn condition<'a>(s: &'a AutoscalerStatus, type_: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == type_).expect(type_)
    }

    #[test]
    fn a_decision_without_a_usable_metric_reports_failed_get_metrics() {
        let mut s = AutoscalerStatus::default();
        let d = decision(
            2,
            LimitReason::DesiredWithinRange,
            vec![Reason::NoUsableMetric { held: 2 }],
        );
        let failed = vec!["source rps (prometheus) failed: timeout".to_string()];
        report_decision(&mut s, &d, 2, &failed, Time::from_secs(100));
        let active = condition(&s, "ScalingActive");
        assert_eq!(
            (active.status.as_str(), active.reason.as_str()),
            ("False", "FailedGetMetrics")
        );
        assert!(active
            .message
            .ends_with("source rps (prometheus) failed: timeout"));
        assert_eq!(condition(&s, "ScalingLimited").status, "False");
        assert_eq!((s.current_replicas, s.desired_replicas), (Some(2), Some(2)));
        assert_eq!(
            s.reasons,
            vec![Reason::NoUsableMetric { held: 2 }.to_string()]
        );
    }

    #[test]
    fn a_clamped_decision_reports_scaling_limited_with_its_reason() {
        let mut s = AutoscalerStatus::default();
        let d = decision(
            10,
            LimitReason::TooManyReplicas,
            vec![Reason::TooManyReplicas { max: 10 }],
        );
        report_decision(&mut s, &d, 2, &[], Time::from_secs(100));
        let limited = condition(&s, "ScalingLimited");
        assert_eq!(
            (limited.status.as_str(), limited.reason.as_str()),
            ("True", "TooManyReplicas")
        );
        let active = condition(&s, "ScalingActive");
        assert_eq!(
            (active.status.as_str(), active.reason.as_str()),
            ("True", "ValidMetricFound")
        );
        // A later pass with the same outcome keeps the transition time.
        let first = limited.last_transition_time.clone();
        report_decision(&mut s, &d, 2, &[], Time::from_secs(200));
        assert_eq!(condition(&s, "ScalingLimited").last_transition_time, first);
    }

    #[test]
    fn only_what_a_reader_would_notice_needs_a_write() {
        let metric = |value: f64, at: &str| SourceStatus {
            name: "rps".into(),
            source: "prometheus".into(),
            value: Some(value),
            error: None,
            last_success: Some(at.into()),
        };
        let old = AutoscalerStatus {
            desired_replicas: Some(3),
            current_metrics: vec![metric(12.0, "2026-12-01T00:00:00Z")],
            reasons: vec!["SLO 500ms at 99.9%: 3 replicas predicted 99.93% for 27.7 req/s".into()],
            decision_state: Some(State::default()),
            ..Default::default()
        };
        assert_eq!(what_changed(None, &old), Change::Meaning);
        let mut later = old.clone();
        later.current_metrics = vec![metric(12.0, "2026-12-01T00:00:05Z")];
        later.decision_state = Some(State {
            last_active_at: Some(Time::from_secs(5)),
            ..Default::default()
        });
        assert_eq!(what_changed(Some(&old), &later), Change::Nothing);
        let mut moved = later.clone();
        moved.current_metrics = vec![metric(13.0, "2026-12-01T00:00:05Z")];
        assert_eq!(what_changed(Some(&old), &moved), Change::Numbers);
        let mut figures = later.clone();
        figures.reasons =
            vec!["SLO 500ms at 99.9%: 3 replicas predicted 99.941% for 131.25 req/s".into()];
        assert_eq!(what_changed(Some(&old), &figures), Change::Numbers);
        let mut words = later.clone();
        words.reasons = vec![
            "SLO 500ms at 99.9%: 3 replicas predicted 99.93% for 27.7 req/s; a jump in the last seconds".into(),
        ];
        assert_eq!(what_changed(Some(&old), &words), Change::Meaning);
        let mut decided = later.clone();
        decided.desired_replicas = Some(4);
        assert_eq!(what_changed(Some(&old), &decided), Change::Meaning);
        let mut failing = later;
        failing.current_metrics[0].error = Some("connection refused".into());
        assert_eq!(what_changed(Some(&old), &failing), Change::Meaning);
    }

    #[test]
    fn numbers_read_as_one_mark_whatever_their_digits() {
        assert!(same_words(
            "7 replicas for 212.5 req/s",
            "12 replicas for 1,024 req/s"
        ));
        assert!(same_words("SLO 500ms at 99.9%", "SLO 250ms at 99%"));
        assert!(!same_words("7 replicas", "7 replicas kept"));
        assert!(!same_words(
            "metric rps proposed 3",
            "metric gpu proposed 3"
        ));
    }
}
