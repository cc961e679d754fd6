//! An externally supplied desired count or backlog (the Redis-key pattern: "N items are
//! coming"), which lets a producer pre-warm replicas before the traffic arrives.

use super::{ceil_count, SignalOutcome};
use crate::observation::{is_fresh, is_usable, ExternalSample};
use crate::policy::{ExternalCount, ExternalCountMode};
use crate::time::Time;

/// Evaluates the external count.
pub fn evaluate(
    e: &ExternalCount,
    sample: Option<&ExternalSample>,
    now: Time,
    stale_after_ms: i64,
) -> SignalOutcome {
    let Some(s) = sample else {
        return SignalOutcome::Missing("no external count observed".into());
    };
    if !is_usable(s.value) {
        return SignalOutcome::Missing(format!(
            "external count is {} (not a usable number)",
            s.value
        ));
    }
    if !is_fresh(s.at, now, stale_after_ms) {
        return SignalOutcome::Missing(format!(
            "external count is stale ({:.0}s old)",
            now.seconds_since(s.at)
        ));
    }
    match e.mode {
        ExternalCountMode::DesiredReplicas => SignalOutcome::Proposal {
            replicas: ceil_count(s.value),
            value: s.value,
            value_text: format!("{}", s.value),
            target_text: "desired replicas".into(),
        },
        ExternalCountMode::Backlog {
            items_per_replica_per_second,
            drain_seconds,
        } => SignalOutcome::Proposal {
            replicas: ceil_count(s.value / (items_per_replica_per_second * drain_seconds)),
            value: s.value,
            value_text: format!("{} items", s.value),
            target_text: format!(
                "drain in {drain_seconds}s at {items_per_replica_per_second} items/s per replica"
            ),
        },
    }
}
