//! Scale-in victim choice: which pods to remove first so that busy pods are spared.
//!
//! Drivers act on the ranking: the controller sets `pod-deletion-cost`, the local runtime
//! drains the first victims. Order: unready first, then fewest requests in flight, then newest.

use crate::observation::{Pod, PodPhase};
use std::cmp::Ordering;

/// Ranks removable pods, best victim first. Pods already deleting or finished are left out:
/// removing them frees nothing.
pub fn rank_victims(pods: &[Pod]) -> Vec<&Pod> {
    let mut candidates: Vec<&Pod> = pods
        .iter()
        .filter(|p| !p.deleting && matches!(p.phase, PodPhase::Running | PodPhase::Pending))
        .collect();
    candidates.sort_by(|a, b| compare(a, b));
    candidates
}

fn serving(p: &Pod) -> bool {
    p.ready && p.phase == PodPhase::Running
}

fn in_flight(p: &Pod) -> f64 {
    // Unknown or absurd counts rank as busy: never sacrifice a pod we know nothing about first.
    match p.in_flight {
        Some(v) if v.is_finite() && v >= 0.0 => v,
        _ => f64::MAX,
    }
}

fn compare(a: &Pod, b: &Pod) -> Ordering {
    serving(a)
        .cmp(&serving(b))
        .then_with(|| in_flight(a).total_cmp(&in_flight(b)))
        // Newest first: a later start time sorts earlier; unknown start counts as oldest.
        .then_with(|| b.started_at.cmp(&a.started_at))
        .then_with(|| a.name.cmp(&b.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Time;

    fn pod(name: &str, ready: bool, in_flight: f64, started: i64) -> Pod {
        Pod {
            name: name.into(),
            ready,
            in_flight: Some(in_flight),
            started_at: Some(Time::from_secs(started)),
            ..Default::default()
        }
    }

    #[test]
    fn unready_then_idle_then_newest() {
        let pods = vec![
            pod("busy-old", true, 5.0, 10),
            pod("idle-old", true, 0.0, 10),
            pod("idle-new", true, 0.0, 50),
            pod("unready", false, 3.0, 10),
            Pod {
                deleting: true,
                ..pod("going", true, 0.0, 1)
            },
        ];
        let order: Vec<&str> = rank_victims(&pods)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(order, ["unready", "idle-new", "idle-old", "busy-old"]);
    }

    #[test]
    fn unknown_in_flight_ranks_as_busy() {
        let mut unknown = pod("unknown", true, 0.0, 10);
        unknown.in_flight = None;
        let pods = vec![unknown, pod("known-busy", true, 9.0, 10)];
        let order: Vec<&str> = rank_victims(&pods)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(order, ["known-busy", "unknown"]);
    }
}
