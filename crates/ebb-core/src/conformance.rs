//! The language-neutral conformance cases (`conformance/README.md`): HPA's own unit-test
//! numbers, run through the very calculator and behavior code that [`crate::decide`] uses.
//!
//! Pure: a case's text comes in, a [`CaseOutcome`] comes out; reading files is the caller's job.

use crate::behavior::{normalize, NormalizeInput};
use crate::calculator::{replicas_for_metric, CalcContext};
use crate::observation::{MetricObservation, MetricValues, Pod, PodPhase, PodSample};
use crate::policy::spec::{
    BehaviorSpec, MetricIdentifierSpec, MetricSpec, NamedMetricSpec, ObjectRefSpec, PolicySpec,
    ResourceMetricSpec, TargetSpec, ToleranceSpec,
};
use crate::policy::{MetricSource, Policy, Target};
use crate::quantity::Quantity;
use crate::sanitize::metric_input;
use crate::state::{Recommendation, ScaleEvent, State};
use crate::time::Time;
use serde::Deserialize;
use std::collections::BTreeMap;

/// "Now" in every case; pods that started "long ago" started at [`Time::ZERO`].
const NOW: Time = Time::from_secs(100_000_000);
/// A sample's window when the case does not give one (metrics-server's usual minute).
const DEFAULT_SAMPLE_WINDOW_SECONDS: f64 = 60.0;

/// One case's result.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseOutcome {
    /// The case name (its file name without extension).
    pub name: String,
    /// Whether the result matched `expect`.
    pub passed: bool,
    /// What the case expects, formatted.
    pub expected: String,
    /// What Ebb computed, formatted.
    pub got: String,
    /// The decision's reasons.
    pub reasons: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum Case {
    #[serde(rename = "replicas")]
    Replicas(ReplicasCase),
    #[serde(rename = "behavior")]
    Behavior(BehaviorCase),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplicasCase {
    current_replicas: u32,
    #[serde(default)]
    tolerance: Option<ToleranceSpec>,
    metric: CaseMetric,
    #[serde(default)]
    pods: Vec<CasePod>,
    #[serde(default)]
    object_value: Option<Quantity>,
    #[serde(default)]
    external_values: Option<Vec<Quantity>>,
    expect: ReplicasExpect,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaseMetric {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    container: Option<String>,
    target: TargetSpec,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CasePod {
    name: String,
    #[serde(default)]
    phase: PodPhase,
    #[serde(default = "default_true")]
    ready: bool,
    #[serde(default)]
    deleting: bool,
    #[serde(default)]
    started_seconds_ago: Option<f64>,
    #[serde(default)]
    ready_since_seconds_ago: Option<f64>,
    #[serde(default)]
    request: Option<Quantity>,
    #[serde(default)]
    value: Option<Quantity>,
    #[serde(default)]
    sample_seconds_ago: Option<f64>,
    #[serde(default)]
    sample_window_seconds: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplicasExpect {
    #[serde(default)]
    replicas: Option<u32>,
    #[serde(default)]
    utilization: Option<Quantity>,
    #[serde(default)]
    error: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BehaviorCase {
    current_replicas: u32,
    recommendation: u32,
    #[serde(default)]
    min_replicas: Option<u32>,
    max_replicas: u32,
    #[serde(default)]
    behavior: Option<BehaviorSpec>,
    #[serde(default)]
    history: Vec<CaseRecommendation>,
    #[serde(default)]
    scale_up_events: Vec<CaseEvent>,
    #[serde(default)]
    scale_down_events: Vec<CaseEvent>,
    expect: BehaviorExpect,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaseRecommendation {
    seconds_ago: f64,
    replicas: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaseEvent {
    seconds_ago: f64,
    change: u32,
}

#[derive(Debug, Deserialize)]
struct BehaviorExpect {
    replicas: u32,
    #[serde(default)]
    reason: Option<String>,
}

fn ago(seconds: f64) -> Time {
    NOW.minus_millis((seconds * 1000.0).round() as i64)
}

/// Runs one case given its name and YAML text.
pub fn run_case(name: &str, text: &str) -> CaseOutcome {
    let fail = |why: String| CaseOutcome {
        name: name.to_string(),
        passed: false,
        expected: "a valid case".into(),
        got: why,
        reasons: Vec::new(),
    };
    let case: Case = match serde_yaml::from_str(text) {
        Ok(c) => c,
        Err(e) => return fail(format!("unreadable case: {e}")),
    };
    match case {
        Case::Replicas(c) => run_replicas(name, c).unwrap_or_else(fail),
        Case::Behavior(c) => run_behavior(name, c).unwrap_or_else(fail),
    }
}

fn metric_spec(m: &CaseMetric) -> MetricSpec {
    let named = || NamedMetricSpec {
        metric: Some(MetricIdentifierSpec {
            name: Some(m.name.clone()),
            selector: None,
        }),
        described_object: (m.kind == "Object").then(|| ObjectRefSpec {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            name: Some("conformance".into()),
        }),
        target: Some(m.target.clone()),
    };
    let resource = || ResourceMetricSpec {
        name: Some(m.name.clone()),
        container: m.container.clone(),
        target: Some(m.target.clone()),
    };
    let mut spec = MetricSpec {
        kind: Some(m.kind.clone()),
        ..Default::default()
    };
    match m.kind.as_str() {
        "Resource" => spec.resource = Some(resource()),
        "ContainerResource" => spec.container_resource = Some(resource()),
        "Pods" => spec.pods = Some(named()),
        "Object" => spec.object = Some(named()),
        _ => spec.external = Some(named()),
    }
    spec
}

fn run_replicas(name: &str, c: ReplicasCase) -> Result<CaseOutcome, String> {
    let policy = Policy::from_spec(&PolicySpec {
        max_replicas: Some(i64::from(i32::MAX)),
        tolerance: c.tolerance.clone(),
        metrics: vec![metric_spec(&c.metric)],
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let metric = &policy.metrics[0];

    let pods: Vec<Pod> = c
        .pods
        .iter()
        .map(|p| {
            let started_at = p.started_seconds_ago.map_or(Time::ZERO, ago);
            Pod {
                name: p.name.clone(),
                phase: p.phase,
                ready: p.ready,
                deleting: p.deleting,
                started_at: Some(started_at),
                ready_changed_at: Some(p.ready_since_seconds_ago.map_or(started_at, ago)),
                created_at: None,
                requests: p
                    .request
                    .iter()
                    .map(|q| (metric.name.clone(), q.milli()))
                    .collect::<BTreeMap<_, _>>(),
                in_flight: None,
            }
        })
        .collect();
    let values = match metric.source {
        MetricSource::Object { .. } => MetricValues::Object {
            value: c.object_value.as_ref().map_or(f64::NAN, Quantity::as_f64),
            at: NOW,
        },
        MetricSource::External { .. } => MetricValues::External {
            values: c
                .external_values
                .iter()
                .flatten()
                .map(Quantity::as_f64)
                .collect(),
            at: NOW,
        },
        _ => MetricValues::PerPod {
            samples: c
                .pods
                .iter()
                .filter_map(|p| {
                    p.value.as_ref().map(|v| PodSample {
                        pod: p.name.clone(),
                        value: v.as_f64(),
                        at: ago(p.sample_seconds_ago.unwrap_or(0.0)),
                        window_ms: (p
                            .sample_window_seconds
                            .unwrap_or(DEFAULT_SAMPLE_WINDOW_SECONDS)
                            * 1000.0) as i64,
                    })
                })
                .collect(),
        },
    };
    let observation = MetricObservation {
        name: metric.name.clone(),
        values,
    };
    let ctx = CalcContext {
        current_replicas: c.current_replicas,
        pods: &pods,
        now: NOW,
        tolerance: policy.tolerance,
        readiness: policy.readiness,
    };
    let result = metric_input(Some(&observation), NOW, policy.stale_after_ms).and_then(|input| {
        replicas_for_metric(&metric.source, &metric.name, &metric.target, input, &ctx)
            .map_err(|e| e.to_string())
    });

    let mut expected = Vec::new();
    if c.expect.error == Some(true) {
        expected.push("error".to_string());
    }
    if let Some(r) = c.expect.replicas {
        expected.push(format!("replicas {r}"));
    }
    if let Some(u) = &c.expect.utilization {
        expected.push(format!("utilization {u}"));
    }
    let expected = expected.join(", ");
    let outcome = |passed: bool, got: String, reasons: Vec<String>| CaseOutcome {
        name: name.to_string(),
        passed,
        expected: expected.clone(),
        got,
        reasons,
    };
    Ok(match result {
        Err(e) => outcome(c.expect.error == Some(true), "error".into(), vec![e]),
        Ok(p) => {
            let utilization_ok =
                c.expect
                    .utilization
                    .as_ref()
                    .is_none_or(|u| match metric.target {
                        Target::Utilization(_) => u.milli() == p.current * 1000,
                        // HPA's tests state raw values in milli-units; the case may write either.
                        _ => u.milli() == p.current || u.milli() == p.current * 1000,
                    });
            let passed = c.expect.error != Some(true)
                && c.expect.replicas.is_none_or(|r| r == p.replicas)
                && utilization_ok;
            let current = match metric.target {
                Target::Utilization(_) => format!("{}%", p.current),
                _ => crate::quantity::milli_text(p.current),
            };
            let mut reasons = vec![format!(
                "metric {} proposed {} (current {current}, target {}, usage ratio {:.4})",
                metric.name, p.replicas, metric.target, p.usage_ratio
            )];
            if p.within_tolerance {
                reasons.push("within tolerance".into());
            }
            outcome(
                passed,
                format!("replicas {}, utilization {}", p.replicas, p.current),
                reasons,
            )
        }
    })
}

fn run_behavior(name: &str, c: BehaviorCase) -> Result<CaseOutcome, String> {
    let policy = Policy::from_spec(&PolicySpec {
        max_replicas: Some(i64::from(c.max_replicas.max(1))),
        behavior: c.behavior.clone(),
        metrics: Vec::new(),
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let state = State {
        recommendations: c
            .history
            .iter()
            .map(|h| Recommendation {
                at: ago(h.seconds_ago),
                replicas: h.replicas,
            })
            .collect(),
        scale_up_events: c
            .scale_up_events
            .iter()
            .map(|e| ScaleEvent {
                at: ago(e.seconds_ago),
                change: e.change,
            })
            .collect(),
        scale_down_events: c
            .scale_down_events
            .iter()
            .map(|e| ScaleEvent {
                at: ago(e.seconds_ago),
                change: e.change,
            })
            .collect(),
        ..Default::default()
    };
    let input = NormalizeInput {
        behavior: &policy.behavior,
        min_replicas: c.min_replicas.unwrap_or(1),
        max_replicas: c.max_replicas,
        current_replicas: c.current_replicas,
        recommendation: c.recommendation,
        now: NOW,
    };
    let n = normalize(&input, &state);
    let passed = n.desired == c.expect.replicas
        && c.expect
            .reason
            .as_deref()
            .is_none_or(|r| r == n.limit.as_str());
    let expected = match &c.expect.reason {
        Some(r) => format!("replicas {}, reason {r}", c.expect.replicas),
        None => format!("replicas {}", c.expect.replicas),
    };
    let mut reasons: Vec<String> = n.reasons.iter().map(|r| r.to_string()).collect();
    if reasons.is_empty() {
        reasons.push("recommendation applied unchanged".into());
    }
    Ok(CaseOutcome {
        name: name.to_string(),
        passed,
        expected,
        got: format!("replicas {}, reason {}", n.desired, n.limit),
        reasons,
    })
}
