//! The gateway's reading of its Autoscaler: the slots a pod serves at once, from the
//! policy's `slo.slotsPerReplica`, so that the gateway's count of service times and the
//! Autoscaler's queueing model agree on what a full pod is without anyone keeping two settings
//! equal by hand. A watch of the one object (its name as a field selector), so a change to the
//! policy reaches the gateway within a watch event.

use crate::crd::{Autoscaler, AutoscalerSpec};
use ebb_proxy::state::ServiceState;
use futures::StreamExt;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use std::sync::Arc;

/// What the gateway takes from an Autoscaler's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SlotsFrom {
    /// The policy's SLO states them (or its default): answers from full pods are not timed.
    Slo(u32),
    /// The policy has no request SLO (a token SLO or a utilization target): every answer is
    /// timed, as without an Autoscaler.
    NoSlo,
    /// The spec does not validate; the slots in force are kept until it does.
    Invalid(String),
    /// The Autoscaler is not there (deleted, or not created yet): every answer is timed, as
    /// without one, until it is. Kept slots would go on leaving answers untimed for a policy
    /// that is gone; one created again says its own.
    Absent,
}

/// The slots `spec` states, as the controller would read them.
pub(super) fn slots_from(spec: &AutoscalerSpec) -> SlotsFrom {
    match spec.policy() {
        Ok(policy) => policy.slo.map_or(SlotsFrom::NoSlo, |slo| {
            SlotsFrom::Slo(slo.slots_per_replica)
        }),
        Err(errors) => SlotsFrom::Invalid(
            errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.reason))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// Applies `from` to `state`, recording a change among the gateway's events.
fn apply(state: &ServiceState, autoscaler: &str, from: SlotsFrom) {
    let (slots, text) = match from {
        SlotsFrom::Slo(s) => (
            Some(s),
            format!(
                "slots per replica {s}, from Autoscaler {autoscaler}'s slo.slotsPerReplica: answers to requests sent to a pod with {s} in flight are not timed as service"
            ),
        ),
        SlotsFrom::NoSlo => (
            None,
            format!("Autoscaler {autoscaler} has no slo block: every answer is timed as service"),
        ),
        SlotsFrom::Absent => (
            None,
            format!(
                "Autoscaler {autoscaler} is gone: every answer is timed as service until it is created again"
            ),
        ),
        SlotsFrom::Invalid(why) => {
            tracing::warn!("Autoscaler {autoscaler} does not validate, slots kept: {why}");
            return;
        }
    };
    if state.set_slots_per_replica(slots) != slots {
        tracing::info!("{text}");
        state.event(text);
    }
}

/// Follows the Autoscaler `name` in `namespace` until the process ends.
pub(super) async fn follow(
    client: kube::Client,
    namespace: String,
    name: String,
    state: Arc<ServiceState>,
) {
    let api: Api<Autoscaler> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    // A failing watch (most often a Role without autoscalers) is said once among the
    // gateway's events, not at every retry.
    let mut last_error = String::new();
    let mut listing = Listing::default();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                last_error.clear();
                if let Some(from) = listing.read(event) {
                    apply(&state, &name, from);
                }
            }
            Err(e) => {
                let text = format!("cannot watch Autoscaler {name} (the gateway's Role needs get, list and watch on autoscalers.ebb.dev): {e}");
                tracing::warn!("{text}");
                if text != last_error {
                    state.event(text.clone());
                    last_error = text;
                }
            }
        }
    }
}

/// Whether the last (re)list of the watch has shown the Autoscaler yet: a list that ends
/// without it says it is gone, as a delete does (a delete missed while the watch was down
/// shows only so).
#[derive(Debug, Default)]
struct Listing {
    seen: bool,
}

impl Listing {
    /// What one watch event says of the slots, if anything.
    fn read(&mut self, event: watcher::Event<Autoscaler>) -> Option<SlotsFrom> {
        match event {
            watcher::Event::Apply(a) | watcher::Event::InitApply(a) => {
                self.seen = true;
                Some(slots_from(&a.spec))
            }
            watcher::Event::Delete(_) => Some(SlotsFrom::Absent),
            watcher::Event::Init => {
                self.seen = false;
                None
            }
            watcher::Event::InitDone => (!self.seen).then_some(SlotsFrom::Absent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn spec(policy: &str) -> AutoscalerSpec {
        let yaml = format!(
            "scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\nsources: []\n{policy}"
        );
        serde_yaml::from_str(&yaml).expect("spec")
    }

    #[test]
    fn an_slo_states_the_slots_or_its_default() {
        let four =
            spec("maxReplicas: 5\nslo: {latency: 500ms, attainment: 99.9%, slotsPerReplica: 4}\n");
        assert_eq!(slots_from(&four), SlotsFrom::Slo(4));
        let default = spec("maxReplicas: 5\nslo: {latency: 500ms, attainment: 99.9%}\n");
        let SlotsFrom::Slo(slots) = slots_from(&default) else {
            panic!("an slo block without slotsPerReplica has the default");
        };
        assert!(slots >= 1);
    }

    #[test]
    fn a_policy_without_an_slo_times_every_answer() {
        let rps = spec("maxReplicas: 5\nmetrics:\n- type: External\n  external:\n    metric: {name: rps}\n    target: {type: AverageValue, averageValue: \"10\"}\n");
        assert_eq!(slots_from(&rps), SlotsFrom::NoSlo);
    }

    #[test]
    fn an_invalid_spec_keeps_the_slots_in_force_and_says_which_field() {
        let bad =
            spec("maxReplicas: 5\nslo: {latency: 500ms, attainment: 99.9%, slotsPerReplica: 0}\n");
        let SlotsFrom::Invalid(why) = slots_from(&bad) else {
            panic!("slotsPerReplica 0 validates");
        };
        assert!(why.contains("spec.slo.slotsPerReplica"), "{why}");
        let state = ServiceState::new("model", Instant::now()).with_slots_per_replica(4);
        apply(&state, "model", slots_from(&bad));
        assert_eq!(state.slots_per_replica(), Some(4));
    }

    #[test]
    fn a_change_is_applied_and_recorded_once() {
        let state = ServiceState::new("model", Instant::now());
        let eight =
            spec("maxReplicas: 5\nslo: {latency: 1s, attainment: 99%, slotsPerReplica: 8}\n");
        apply(&state, "model", slots_from(&eight));
        apply(&state, "model", slots_from(&eight));
        assert_eq!(state.slots_per_replica(), Some(8));
        assert!(!state.slot_was_free(8) && state.slot_was_free(7));
        let rps = spec("maxReplicas: 5\nmetrics:\n- type: External\n  external:\n    metric: {name: rps}\n    target: {type: AverageValue, averageValue: \"10\"}\n");
        apply(&state, "model", slots_from(&rps));
        assert_eq!(state.slots_per_replica(), None);
        let events = state.events.lock().expect("events").clone();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[0].contains("slots per replica 8"), "{events:?}");
    }

    #[test]
    fn a_deleted_autoscaler_stops_leaving_answers_untimed() {
        let state = ServiceState::new("model", Instant::now());
        let mut listing = Listing::default();
        let four =
            spec("maxReplicas: 5\nslo: {latency: 500ms, attainment: 99.9%, slotsPerReplica: 4}\n");
        let object = Autoscaler::new("model", four);
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(object.clone()),
            watcher::Event::InitDone,
        ] {
            if let Some(from) = listing.read(event) {
                apply(&state, "model", from);
            }
        }
        assert_eq!(state.slots_per_replica(), Some(4));
        let from = listing.read(watcher::Event::Delete(object.clone()));
        apply(&state, "model", from.expect("a delete says something"));
        assert_eq!(state.slots_per_replica(), None);
        let events = state.events.lock().expect("events").clone();
        assert!(
            events.back().is_some_and(|e| e.contains("is gone")),
            "{events:?}"
        );
        // Created again: its slots come back.
        let from = listing.read(watcher::Event::Apply(object));
        apply(&state, "model", from.expect("an apply says something"));
        assert_eq!(state.slots_per_replica(), Some(4));
    }

    #[test]
    fn a_relist_without_the_autoscaler_reads_as_gone() {
        let mut listing = Listing { seen: true };
        assert_eq!(listing.read(watcher::Event::Init), None);
        assert_eq!(
            listing.read(watcher::Event::InitDone),
            Some(SlotsFrom::Absent)
        );
    }
}
