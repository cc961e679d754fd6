//! Builders shared by the integration tests.
#![allow(dead_code)]

use ebb_core::*;

pub(crate) fn policy(yaml: &str) -> Policy {
    Policy::from_yaml(yaml).unwrap_or_else(|e| panic!("test policy invalid: {e}"))
}

pub(crate) fn t(secs: i64) -> Time {
    Time::from_secs(secs)
}

/// `n` ready, running pods started long ago.
pub(crate) fn pods(n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| Pod {
            name: format!("pod-{i}"),
            ready: true,
            started_at: Some(Time::ZERO),
            ready_changed_at: Some(Time::ZERO),
            in_flight: Some(0.0),
            ..Default::default()
        })
        .collect()
}

/// A Pods metric with one sample per pod, taken at `at`.
pub(crate) fn per_pod(name: &str, values: &[f64], at: Time) -> MetricObservation {
    MetricObservation {
        name: name.into(),
        values: MetricValues::PerPod {
            samples: values
                .iter()
                .enumerate()
                .map(|(i, v)| PodSample {
                    pod: format!("pod-{i}"),
                    value: *v,
                    at,
                    window_ms: 30_000,
                })
                .collect(),
        },
    }
}

pub(crate) fn obs(current: u32, metrics: Vec<MetricObservation>) -> Observation {
    Observation {
        current_replicas: current,
        pods: pods(current as usize),
        metrics,
        ..Default::default()
    }
}

pub(crate) fn traffic(at: Time, in_flight: f64, arrivals: f64, completions: f64) -> TrafficSample {
    TrafficSample {
        at,
        in_flight,
        arrivals_total: arrivals,
        completions_total: completions,
        service: None,
        answered: None,
    }
}

/// Steady traffic at `in_flight` concurrency, one sample a second from `from` to `to`.
pub(crate) fn steady(from: i64, to: i64, in_flight: f64) -> Vec<TrafficSample> {
    (from..=to)
        .map(|s| {
            traffic(
                t(s),
                in_flight,
                (s - from) as f64 * in_flight,
                (s - from) as f64 * in_flight,
            )
        })
        .collect()
}

pub(crate) fn codes(d: &Decision) -> Vec<&'static str> {
    d.reasons.iter().map(|r| r.code()).collect()
}

pub(crate) const RPS_POLICY: &str = r#"
minReplicas: 1
maxReplicas: 20
metrics:
- type: Pods
  pods:
    metric: {name: rps}
    target: {type: AverageValue, averageValue: "10"}
"#;
