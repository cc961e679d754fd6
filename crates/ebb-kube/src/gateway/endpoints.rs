//! Which pods the gateway routes to: those of its selector that are ready, have an IP and are
//! not being deleted, read from a watch of the Pods themselves. A pod the controller has
//! chosen to remove carries [`DRAIN_UNTIL`]: until then it gets new requests only when no
//! other pod can take them, and finishes those it has, so that the controller can delete it
//! idle (and so that the service is not starved if the removal takes another pod: ReplicaSets
//! honour the controller's choice, `pod-deletion-cost`, only from Kubernetes 1.22). (EndpointSlices would say the
//! same, but the `discovery.k8s.io/v1` API the gateway would read needs Kubernetes 1.21; a
//! Pod watch works on every version and sees readiness as soon as the kubelet reports it.)

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// The annotation with which the controller asks the gateway to drain a pod it is about to
/// remove: an RFC 3339 time until which the pod is spared new requests. A time, not a flag, so
/// that a scale-in that did not happen (or removed another pod) ends the drain by itself.
pub const DRAIN_UNTIL: &str = "ebb.dev/drain-until";

/// Whether `pod` is to be drained at `now_ms` (Unix milliseconds).
pub fn draining(pod: &Pod, now_ms: i64) -> bool {
    pod.annotations()
        .get(DRAIN_UNTIL)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|until| until.timestamp_millis() > now_ms)
}

/// Where a ready pod takes requests, if it does.
pub fn routable(pod: &Pod, port: u16) -> Option<SocketAddr> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    let ip: IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The routable pods among `pods`, by name.
pub fn wanted<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    port: u16,
) -> BTreeMap<String, SocketAddr> {
    pods.into_iter()
        .filter_map(|p| routable(p, port).map(|a| (p.name_any(), a)))
        .collect()
}

/// The names of the pods among `pods` to drain at `now_ms`.
pub fn drained<'a>(pods: impl IntoIterator<Item = &'a Pod>, now_ms: i64) -> Vec<String> {
    pods.into_iter()
        .filter(|p| draining(p, now_ms))
        .map(|p| p.name_any())
        .collect()
}

/// What to change to go from `current` to `wanted`: pods to add (new, or at a new address),
/// and pods to remove (gone, or moved).
pub fn diff(
    current: &BTreeMap<String, SocketAddr>,
    wanted: &BTreeMap<String, SocketAddr>,
) -> (Vec<(String, SocketAddr)>, Vec<String>) {
    let add = wanted
        .iter()
        .filter(|(name, addr)| current.get(*name) != Some(*addr))
        .map(|(n, a)| (n.clone(), *a))
        .collect();
    let remove = current
        .iter()
        .filter(|(name, addr)| wanted.get(*name) != Some(*addr))
        .map(|(n, _)| n.clone())
        .collect();
    (add, remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, ready: &str, ip: Option<&str>, deleting: bool) -> Pod {
        let mut p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"phase": phase, "podIP": ip,
                "conditions": [{"type": "Ready", "status": ready}]}
        }))
        .unwrap();
        if deleting {
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
        }
        p
    }

    #[test]
    fn only_running_ready_pods_with_an_ip_that_are_not_leaving_are_routed_to() {
        let pods = [
            pod("a", "Running", "True", Some("10.0.0.1"), false),
            pod("b", "Running", "False", Some("10.0.0.2"), false),
            pod("c", "Pending", "True", Some("10.0.0.3"), false),
            pod("d", "Running", "True", None, false),
            pod("e", "Running", "True", Some("10.0.0.5"), true),
            pod("f", "Running", "True", Some("not an ip"), false),
        ];
        let w = wanted(&pods, 8080);
        assert_eq!(w.len(), 1);
        assert_eq!(w["a"], "10.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn a_drain_lasts_until_its_time() {
        let mut p = pod("a", "Running", "True", Some("10.0.0.1"), false);
        assert!(!draining(&p, 0));
        p.metadata.annotations = Some(BTreeMap::from([(
            DRAIN_UNTIL.to_string(),
            "2026-12-03T10:00:00Z".to_string(),
        )]));
        let at = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_millis()
        };
        assert!(draining(&p, at("2026-12-03T09:59:59Z")));
        assert!(!draining(&p, at("2026-12-03T10:00:00Z")));
        p.metadata.annotations = Some(BTreeMap::from([(
            DRAIN_UNTIL.to_string(),
            "soon".to_string(),
        )]));
        assert!(!draining(&p, 0), "an unreadable time drains nothing");
    }

    #[test]
    fn a_pod_that_moved_is_removed_and_added_again() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let current = BTreeMap::from([
            ("a".to_string(), addr("10.0.0.1:80")),
            ("b".to_string(), addr("10.0.0.2:80")),
        ]);
        let wanted = BTreeMap::from([
            ("b".to_string(), addr("10.0.0.9:80")),
            ("c".to_string(), addr("10.0.0.3:80")),
        ]);
        let (add, remove) = diff(&current, &wanted);
        assert_eq!(
            add,
            vec![
                ("b".into(), addr("10.0.0.9:80")),
                ("c".into(), addr("10.0.0.3:80"))
            ]
        );
        assert_eq!(remove, vec!["a".to_string(), "b".to_string()]);
    }
}
