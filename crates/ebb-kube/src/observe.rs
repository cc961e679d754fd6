//! From what the sources returned to the core's `Observation`. Pure: pods, the latest value
//! of each source (with the time it was taken) and the policy go in; the observation comes
//! out. A source that failed contributes nothing, so the core sees the metric as missing and
//! never scales down on it.

use crate::sources::SourceValue;
use ebb_core::policy::MetricSource;
use ebb_core::{
    MetricObservation, MetricValues, Observation, Pod, PodPhase, PodSample, Policy, Time,
    TrafficSample,
};
use std::collections::BTreeMap;

/// A pod of the target as the API server shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetPod {
    /// Name.
    pub name: String,
    /// IP, once it has one.
    pub ip: Option<String>,
    /// Phase.
    pub phase: PodPhase,
    /// Ready condition.
    pub ready: bool,
    /// Being deleted.
    pub deleting: bool,
    /// Start time.
    pub started_at: Option<Time>,
    /// Last change of the Ready condition.
    pub ready_changed_at: Option<Time>,
    /// Creation (`metadata.creationTimestamp`): where a cold start begins.
    pub created_at: Option<Time>,
    /// Resource requests summed over containers, milli-units (`cpu`, `memory`).
    pub requests: BTreeMap<String, i64>,
}

/// What a source gave, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    /// The source's name.
    pub name: String,
    /// Whether it feeds the traffic signals.
    pub traffic: bool,
    /// The value, when the last poll succeeded.
    pub value: Option<SourceValue>,
    /// When that value was taken.
    pub at: Time,
}

fn total(v: &SourceValue) -> f64 {
    v.headline()
}

/// Builds the observation the core decides on.
pub fn observation(
    policy: &Policy,
    current_replicas: u32,
    pods: &[TargetPod],
    latest: &[Latest],
) -> Observation {
    let by_name: BTreeMap<&str, &Latest> = latest
        .iter()
        .filter(|l| !l.traffic)
        .map(|l| (l.name.as_str(), l))
        .collect();
    let traffic = latest.iter().find(|l| l.traffic);
    let per_pod_in_flight = match traffic.and_then(|t| t.value.as_ref()) {
        Some(SourceValue::Traffic {
            per_pod_in_flight, ..
        }) => per_pod_in_flight.clone(),
        _ => BTreeMap::new(),
    };
    let mut metrics = Vec::new();
    for m in &policy.metrics {
        let Some(l) = by_name.get(m.name.as_str()) else {
            continue;
        };
        let Some(v) = &l.value else { continue };
        let values = match &m.source {
            MetricSource::Pods { .. }
            | MetricSource::Resource { .. }
            | MetricSource::ContainerResource { .. } => match v {
                SourceValue::PerPod(per_pod) => MetricValues::PerPod {
                    samples: per_pod
                        .iter()
                        .map(|(pod, value)| PodSample {
                            pod: pod.clone(),
                            value: *value,
                            at: l.at,
                            window_ms: 0,
                        })
                        .collect(),
                },
                // A per-pod metric needs per-pod values: anything else is missing.
                _ => continue,
            },
            MetricSource::Object { .. } => MetricValues::Object {
                value: total(v),
                at: l.at,
            },
            MetricSource::External { .. } => MetricValues::External {
                values: match v {
                    SourceValue::Vector(x) => x.clone(),
                    SourceValue::PerPod(x) => x.values().copied().collect(),
                    other => vec![total(other)],
                },
                at: l.at,
            },
        };
        metrics.push(MetricObservation {
            name: m.name.clone(),
            values,
        });
    }
    let traffic_sample = traffic.and_then(|t| match &t.value {
        Some(SourceValue::Traffic {
            in_flight,
            arrivals,
            completions,
            service,
            answered,
            ..
        }) => Some(TrafficSample {
            at: t.at,
            in_flight: *in_flight,
            arrivals_total: *arrivals,
            completions_total: *completions,
            service: *service,
            answered: *answered,
        }),
        _ => None,
    });
    let external_count = by_name.get("externalCount").and_then(|l| {
        l.value.as_ref().map(|v| ebb_core::Sample {
            value: total(v),
            at: l.at,
        })
    });
    Observation {
        current_replicas,
        pods: pods
            .iter()
            .map(|p| Pod {
                name: p.name.clone(),
                phase: p.phase,
                ready: p.ready,
                deleting: p.deleting,
                started_at: p.started_at,
                ready_changed_at: p.ready_changed_at,
                created_at: p.created_at,
                requests: p.requests.clone(),
                in_flight: per_pod_in_flight.get(&p.name).copied(),
            })
            .collect(),
        metrics,
        engine: None,
        traffic: traffic_sample,
        external_count,
        fallbacks: Vec::new(),
        // The controller's clock is Unix time already.
        epoch_unix_ms: 0,
    }
}

/// Per-pod counter rates between two scrapes: `(value, at)` now against the previous one.
/// A counter that went down (a restarted pod) gives no rate for that pod.
pub fn rates(
    previous: &BTreeMap<String, (f64, Time)>,
    now: &BTreeMap<String, (f64, Time)>,
) -> BTreeMap<String, f64> {
    now.iter()
        .filter_map(|(pod, (v, at))| {
            let (pv, pat) = previous.get(pod)?;
            let dt = at.seconds_since(*pat);
            (dt > 0.0 && v >= pv).then(|| (pod.clone(), (v - pv) / dt))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(yaml).expect("policy")
    }

    fn pod(name: &str) -> TargetPod {
        TargetPod {
            name: name.into(),
            ready: true,
            ..Default::default()
        }
    }

    #[test]
    fn sources_feed_metrics_by_name_and_type() {
        let p = policy("maxReplicas: 5\nmetrics:\n- type: Pods\n  pods: {metric: {name: gpu}, target: {type: AverageValue, averageValue: '35'}}\n- type: External\n  external: {metric: {name: queue}, target: {type: Value, value: '10'}}\n");
        let at = Time::from_secs(100);
        let latest = vec![
            Latest {
                name: "gpu".into(),
                traffic: false,
                value: Some(SourceValue::PerPod(BTreeMap::from([("a".into(), 70.0)]))),
                at,
            },
            Latest {
                name: "queue".into(),
                traffic: false,
                value: Some(SourceValue::Scalar(30.0)),
                at,
            },
        ];
        let o = observation(&p, 1, &[pod("a")], &latest);
        assert_eq!(o.metrics.len(), 2);
        assert!(
            matches!(&o.metrics[0].values, MetricValues::PerPod { samples } if samples[0].value == 70.0)
        );
        assert!(
            matches!(&o.metrics[1].values, MetricValues::External { values, .. } if values == &vec![30.0])
        );
    }

    #[test]
    fn a_failed_source_leaves_its_metric_missing() {
        let p = policy("maxReplicas: 5\nmetrics:\n- type: Pods\n  pods: {metric: {name: gpu}, target: {type: AverageValue, averageValue: '35'}}\n");
        let latest = vec![Latest {
            name: "gpu".into(),
            traffic: false,
            value: None,
            at: Time::ZERO,
        }];
        assert!(observation(&p, 3, &[pod("a")], &latest).metrics.is_empty());
        // A scalar cannot stand for per-pod values.
        let latest = vec![Latest {
            name: "gpu".into(),
            traffic: false,
            value: Some(SourceValue::Scalar(5.0)),
            at: Time::ZERO,
        }];
        assert!(observation(&p, 3, &[pod("a")], &latest).metrics.is_empty());
    }

    #[test]
    fn traffic_and_external_count() {
        let p = policy("maxReplicas: 5\nconcurrency: {targetPerReplica: 2}\nexternalCount: {mode: desiredReplicas}\n");
        let at = Time::from_secs(5);
        let latest = vec![
            Latest {
                name: "t".into(),
                traffic: true,
                value: Some(SourceValue::Traffic {
                    in_flight: 6.0,
                    arrivals: 100.0,
                    completions: 94.0,
                    per_pod_in_flight: BTreeMap::from([("a".into(), 4.0), ("b".into(), 2.0)]),
                    service: None,
                    answered: None,
                }),
                at,
            },
            Latest {
                name: "externalCount".into(),
                traffic: false,
                value: Some(SourceValue::Scalar(3.0)),
                at,
            },
        ];
        let o = observation(&p, 2, &[pod("a"), pod("b")], &latest);
        assert_eq!(o.traffic.map(|t| t.in_flight), Some(6.0));
        assert_eq!(o.external_count.map(|e| e.value), Some(3.0));
        assert_eq!(o.pods[0].in_flight, Some(4.0));
    }

    #[test]
    fn counter_rates_skip_resets() {
        let t0 = Time::from_secs(0);
        let t1 = Time::from_secs(2);
        let prev = BTreeMap::from([("a".to_string(), (10.0, t0)), ("b".to_string(), (50.0, t0))]);
        let now = BTreeMap::from([
            ("a".to_string(), (30.0, t1)),
            ("b".to_string(), (4.0, t1)),
            ("c".to_string(), (9.0, t1)),
        ]);
        assert_eq!(
            rates(&prev, &now),
            BTreeMap::from([("a".to_string(), 10.0)])
        );
    }
}
