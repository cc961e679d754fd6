//! Applying a decision: a merge patch of the target's `/scale` (Deployments, StatefulSets,
//! Seldon Core 2 `Model`/`Server`, any custom resource with a scale subresource), retried with
//! exponential backoff on conflicts and server errors; `controller.kubernetes.io/pod-deletion-cost`
//! on the pods from the core's victim ranking before a scale-in, and, behind a gateway, the
//! victims drained through it first.

use crate::context::Context;
use crate::crd::{Autoscaler, GatewaySource, ScaleTargetRef};
use crate::gateway::endpoints::DRAIN_UNTIL;
use crate::sources::{self, PodEndpoint};
use ebb_core::Pod;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Pod as KubePod;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use std::time::Duration;

/// The annotation ReplicaSets read to choose which pods to delete first (Kubernetes 1.21+).
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The scaled object, resolved.
pub struct ScaleTarget {
    api: Api<DynamicObject>,
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
}

impl ScaleTarget {
    /// Resolves `apiVersion` and `kind` through discovery (cached).
    pub async fn resolve(
        ctx: &Context,
        ns: &str,
        r: &ScaleTargetRef,
    ) -> Result<ScaleTarget, kube::Error> {
        let (group, version) = match r.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), r.api_version.clone()),
        };
        let cache_key = (r.api_version.clone(), r.kind.clone());
        let cached = ctx.targets_get(&cache_key);
        let ar: ApiResource = match cached {
            Some(ar) => ar,
            None => {
                let gvk = GroupVersionKind::gvk(&group, &version, &r.kind);
                let (ar, _) = kube::discovery::pinned_kind(&ctx.client, &gvk).await?;
                ctx.targets_put(cache_key, ar.clone());
                ar
            }
        };
        Ok(ScaleTarget {
            api: Api::namespaced_with(ctx.client.clone(), ns, &ar),
            kind: r.kind.clone(),
            name: r.name.clone(),
        })
    }

    /// Reads `/scale`.
    pub async fn get_scale(&self) -> Result<Scale, kube::Error> {
        self.api.get_scale(&self.name).await
    }

    /// The replicas its `/scale` asks for.
    pub async fn replicas(&self) -> Result<u32, kube::Error> {
        self.get_scale().await.map(|s| spec_replicas(&s))
    }

    /// Sets `spec.replicas` through `/scale`, retrying conflicts and server errors with
    /// exponential backoff (100 ms, doubling, 5 tries).
    pub async fn patch_replicas(&self, replicas: u32) -> Result<(), kube::Error> {
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        with_backoff(|| async {
            self.api
                .patch_scale(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        })
        .await
    }
}

/// `spec.replicas` of a Scale (0 when absent).
pub fn spec_replicas(scale: &Scale) -> u32 {
    scale
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0)
        .max(0) as u32
}

/// Whether an API error is worth retrying: conflicts, throttling, server errors, transport.
pub fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs `op` up to 5 times, 100 ms apart and doubling, while it fails with a retryable error.
pub async fn with_backoff<T, F, Fut>(mut op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        match op().await {
            Ok(done) => return Ok(done),
            Err(e) if retryable(&e) && tries < 4 => {
                tries += 1;
                tracing::debug!(error = %e, "retrying after {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The deletion cost of each pod: the core's victims cheapest, in their order; every other pod
/// expensive, more so the busier it is.
pub fn deletion_costs(pods: &[Pod], victims: &[String]) -> Vec<(String, i32)> {
    pods.iter()
        .map(|p| {
            let cost = match victims.iter().position(|v| *v == p.name) {
                Some(i) => -1000 + i as i32,
                None => 1000 + p.in_flight.unwrap_or(0.0).clamp(0.0, 1e6) as i32,
            };
            (p.name.clone(), cost)
        })
        .collect()
}

/// Annotates the target's pods with their deletion cost (merge patches; a pod that went away
/// meanwhile is skipped). With `drain_until` (a gateway stands in front), the victims are also
/// annotated to be drained until then, and the other pods' drains are ended.
pub async fn set_deletion_costs(
    ctx: &Context,
    ns: &str,
    pods: &[Pod],
    victims: &[String],
    drain_until: Option<&str>,
) -> Result<(), kube::Error> {
    let api: Api<KubePod> = Api::namespaced(ctx.client.clone(), ns);
    for (name, cost) in deletion_costs(pods, victims) {
        let mut annotations = serde_json::json!({DELETION_COST: cost.to_string()});
        if let Some(until) = drain_until {
            annotations[DRAIN_UNTIL] = if victims.contains(&name) {
                until.into()
            } else {
                serde_json::Value::Null
            };
        }
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until every gateway replica has taken the victims out of rotation and has no request
/// in flight on them, or `limit` passes.
pub async fn wait_for_gateway_drain(
    ctx: &Context,
    ns: &str,
    gateway: &GatewaySource,
    victims: &[String],
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let scrapes = sources::scrape_gateways(&ctx.caches, ns, gateway, Duration::from_secs(2))
            .await
            .unwrap_or_default();
        let drained = scrapes.iter().all(|(_, r)| match r {
            Ok(samples) => victims_drained(samples, victims),
            Err(_) => false,
        });
        if drained {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether one gateway's metrics show every victim out of rotation (or gone) and idle.
fn victims_drained(samples: &[crate::exposition::Sample], victims: &[String]) -> bool {
    samples.iter().all(|(name, labels, v)| {
        let victim = labels.get("replica").is_some_and(|r| victims.contains(r));
        match name.as_str() {
            "ebb_replica_routable" | "ebb_replica_in_flight" if victim => *v == 0.0,
            _ => true,
        }
    })
}

/// Waits until the victims' in-flight requests (from the source with `traffic`) are zero, or
/// `limit` passes.
pub async fn wait_for_idle(
    obj: &Autoscaler,
    pods: &[crate::observe::TargetPod],
    victims: &[String],
    limit: Duration,
) {
    let Some(ps) = obj
        .spec
        .sources
        .iter()
        .find_map(|s| s.pod_scrape.as_ref().filter(|p| p.traffic.is_some()))
    else {
        return;
    };
    let Some(traffic) = &ps.traffic else { return };
    let endpoints: Vec<PodEndpoint> = pods
        .iter()
        .filter(|p| victims.contains(&p.name))
        .map(|p| PodEndpoint {
            name: p.name.clone(),
            ip: p.ip.clone(),
        })
        .collect();
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let scrapes = sources::scrape_pods(ps, &endpoints, Duration::from_secs(2)).await;
        let busy: f64 = scrapes
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|s| {
                traffic
                    .in_flight
                    .iter()
                    .filter_map(|m| sources::metric_sum(s, m))
                    .sum::<f64>()
            })
            .sum();
        if busy <= 0.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn victims_are_drained_once_out_of_rotation_and_idle() {
        let sample = |name: &str, replica: &str, v: f64| {
            (
                name.to_string(),
                std::collections::BTreeMap::from([("replica".to_string(), replica.to_string())]),
                v,
            )
        };
        let victims = ["a".to_string()];
        let busy = [
            sample("ebb_replica_routable", "a", 0.0),
            sample("ebb_replica_in_flight", "a", 2.0),
        ];
        let routed = [
            sample("ebb_replica_routable", "a", 1.0),
            sample("ebb_replica_in_flight", "a", 0.0),
        ];
        let done = [
            sample("ebb_replica_routable", "a", 0.0),
            sample("ebb_replica_in_flight", "a", 0.0),
            sample("ebb_replica_in_flight", "b", 7.0),
        ];
        assert!(!victims_drained(&busy, &victims));
        assert!(!victims_drained(&routed, &victims), "still taking requests");
        assert!(
            victims_drained(&done, &victims),
            "other pods' load does not matter"
        );
        assert!(
            victims_drained(&[], &victims),
            "a gateway that no longer lists it"
        );
    }

    #[test]
    fn victims_are_cheapest_and_busy_pods_expensive() {
        let pod = |n: &str, f: Option<f64>| Pod {
            name: n.into(),
            ready: true,
            in_flight: f,
            ..Default::default()
        };
        let pods = [pod("a", Some(5.0)), pod("b", Some(0.0)), pod("c", None)];
        let costs = deletion_costs(&pods, &["b".into(), "c".into()]);
        assert_eq!(
            costs,
            vec![("a".into(), 1005), ("b".into(), -1000), ("c".into(), -999)]
        );
    }
}
