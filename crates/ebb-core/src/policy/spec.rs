//! The policy document as users write it: HPA's `autoscaling/v2` field names and nesting, plus
//! Ebb's own optional blocks. Everything is optional here so that a wrong or missing field is
//! reported by validation with its path, not by a bare serde error.

use crate::quantity::Quantity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::schedule::ScheduleSpec;

/// A policy document as written (YAML or JSON). Validate it with [`crate::Policy::from_spec`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Lower bound on replicas (HPA default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i64>,
    /// Upper bound on replicas (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i64>,
    /// Ebb: replicas to start with when the autoscaler is created, held until that many are
    /// ready (Knative's initial scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_replicas: Option<i64>,
    /// Tolerance around a usage ratio of 1.0 within which no change is proposed (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<ToleranceSpec>,
    /// HPA metrics; several combine by taking the largest proposal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSpec>,
    /// HPA scaling behavior (stabilization windows and rate policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<BehaviorSpec>,
    /// Ebb: per-replica concurrency or request-rate target with a panic mode (Knative's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencySpec>,
    /// Ebb: inference lag, incoming minus completed requests (Seldon Core 2's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_lag: Option<InferenceLagSpec>,
    /// Ebb: an externally supplied desired count or backlog (e.g. a Redis key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_count: Option<ExternalCountSpec>,
    /// Ebb: scale to zero after an idle period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_to_zero: Option<ScaleToZeroSpec>,
    /// Ebb: a latency SLO; replicas come from a queueing model instead of a utilization target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloSpec>,
    /// Ebb: targets on an LLM engine's own metrics (vLLM, SGLang, TGI, Triton), read by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineSpec>,
    /// Ebb: the policy's metrics combined by a CEL expression into one composite metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<FormulaSpec>,
    /// Ebb: calendar windows that raise the floor or lower the ceiling while open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleSpec>,
    /// Ebb: samples older than this many seconds count as missing (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after_seconds: Option<f64>,
    /// HPA controller settings that the calculator depends on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<ReadinessSpec>,
}

/// A tolerance: one number for both directions, or one per direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToleranceSpec {
    /// The same tolerance both ways.
    Both(f64),
    /// Separate tolerances.
    PerDirection {
        /// Tolerance above 1.0.
        #[serde(rename = "scaleUp", default, skip_serializing_if = "Option::is_none")]
        scale_up: Option<f64>,
        /// Tolerance below 1.0.
        #[serde(rename = "scaleDown", default, skip_serializing_if = "Option::is_none")]
        scale_down: Option<f64>,
    },
}

/// HPA's `MetricSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSpec {
    /// Resource | ContainerResource | Pods | Object | External.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For `type: Resource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricSpec>,
    /// For `type: ContainerResource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_resource: Option<ResourceMetricSpec>,
    /// For `type: Pods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamedMetricSpec>,
    /// For `type: Object`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<NamedMetricSpec>,
    /// For `type: External`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<NamedMetricSpec>,
}

/// `resource:` / `containerResource:` of a metric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceMetricSpec {
    /// Resource name (cpu, memory, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Container name (ContainerResource only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetSpec>,
}

/// `pods:` / `object:` / `external:` of a metric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedMetricSpec {
    /// The metric's identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<MetricIdentifierSpec>,
    /// The object the metric describes (Object only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub described_object: Option<ObjectRefSpec>,
    /// The target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetSpec>,
}

/// HPA's `MetricIdentifier`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricIdentifierSpec {
    /// Metric name; observations carry the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Label selector, kept for the sources that query the metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelectorSpec>,
}

/// A Kubernetes label selector (only passed through to metric sources).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorSpec {
    /// Exact label matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements, passed through verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<serde_yaml::Value>,
}

/// HPA's `CrossVersionObjectReference`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRefSpec {
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// HPA's `MetricTarget`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSpec {
    /// Utilization | AverageValue | Value.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Percent of the resource request (Utilization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i64>,
    /// Per-pod average (AverageValue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<Quantity>,
    /// Total value (Value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Quantity>,
}

/// HPA's `HorizontalPodAutoscalerBehavior`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BehaviorSpec {
    /// Rules for scaling up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRulesSpec>,
    /// Rules for scaling down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRulesSpec>,
}

/// HPA's `HPAScalingRules`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRulesSpec {
    /// Window over which past recommendations are considered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<i64>,
    /// Max | Min | Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<String>,
    /// Rate policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<ScalingPolicySpec>>,
    /// Per-direction tolerance (Kubernetes 1.33+); overrides the top-level `tolerance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<Quantity>,
}

/// HPA's `HPAScalingPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingPolicySpec {
    /// Pods | Percent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Pods or percent allowed per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    /// Period length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i64>,
}

/// Ebb's concurrency / request-rate block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConcurrencySpec {
    /// `concurrency` (in-flight requests) or `rps` (requests per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Target per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_per_replica: Option<f64>,
    /// Averaging window for normal operation (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_window_seconds: Option<f64>,
    /// Short averaging window that detects spikes (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_window_seconds: Option<f64>,
    /// Panic when short-window demand exceeds this percent of ready capacity (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_threshold_percent: Option<f64>,
}

/// Ebb's inference-lag block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceLagSpec {
    /// Scale up when lag per replica exceeds this many requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_per_replica: Option<f64>,
    /// Lag is measured over this window, and a scale-down needs this long without lag (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
}

/// Ebb's external count / backlog block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalCountSpec {
    /// `desiredReplicas` (the value is a replica count) or `backlog` (the value is work items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Backlog mode: items one replica completes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_per_replica_per_second: Option<f64>,
    /// Backlog mode: the time in which the backlog should be cleared (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_seconds: Option<f64>,
}

/// Ebb's scale-to-zero block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleToZeroSpec {
    /// Scale to zero after this long with no traffic (default 300), or `never`: with an
    /// `slo` block, only through the silences the SLO bridges (before a recurring burst it
    /// predicts, with replicas started one cold start ahead of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_seconds: Option<IdleSpec>,
    /// Come back from zero when this many requests (or backlog items) are waiting (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_threshold: Option<f64>,
    /// At least this many replicas when coming back from zero (default 1; Knative's
    /// activation scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_replicas: Option<i64>,
}

/// `scaleToZero.idleSeconds`: a number of seconds, or `never`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IdleSpec {
    /// Seconds.
    Seconds(f64),
    /// `never` (any other word is refused by validation, naming the field).
    Word(String),
}

/// A duration: a number of seconds, or text such as `500ms`, `1.5s`, `2m`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationSpec {
    /// Seconds.
    Seconds(f64),
    /// Text with a unit.
    Text(String),
}

/// A percentage: a number (`99.9`) or text (`99.9%`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PercentSpec {
    /// Percent as a number.
    Number(f64),
    /// Percent as text, with or without `%`.
    Text(String),
}

/// Ebb's SLO block: the latency users promise and the share of requests that must meet it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SloSpec {
    /// Latency each request should meet, e.g. `500ms` (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<DurationSpec>,
    /// Share of requests within the latency, e.g. `99.9%` (default 99.9%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attainment: Option<PercentSpec>,
    /// The same as a percentile, e.g. `p99` (the p99 latency is within `latency`); instead of
    /// `attainment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<String>,
    /// Seconds from a scale-up to the new replica being ready (default: measured, 30 until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start_seconds: Option<f64>,
    /// Requests one replica serves at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots_per_replica: Option<i64>,
    /// Seasonal period of the traffic forecast, seconds (default 86400, a day; 0 turns it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub season_seconds: Option<f64>,
    /// LLM serving: time to first token, and the share of requests whose first token must
    /// arrive within it (needs the `engine` block, whose metrics it reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft: Option<TokenGoalSpec>,
    /// LLM serving: time between output tokens, and the share of gaps that must stay within it
    /// (needs the `engine` block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl: Option<TokenGoalSpec>,
}

/// A token latency goal of the `slo` block, e.g. `{latency: 2s, attainment: 99%}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenGoalSpec {
    /// The latency (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<DurationSpec>,
    /// Share within it, e.g. `99%` (default 99%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attainment: Option<PercentSpec>,
    /// The same as a percentile, e.g. `p99`; instead of `attainment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<String>,
}

/// Ebb's engine block: an LLM engine's signals with targets, its metric names known.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EngineSpec {
    /// `vllm`, `sglang`, `tgi` or `triton` (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Port of the replicas' metrics (default: the engine's, e.g. 8000 for vLLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Path of the metrics (default `/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Average share of the KV cache in use per replica, `0.8` or `80%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_utilization: Option<PercentSpec>,
    /// Requests waiting for the engine per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_per_replica: Option<f64>,
    /// Requests being generated per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_per_replica: Option<f64>,
    /// Time to first token: a percentile that must stay below a latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft: Option<LatencyTargetSpec>,
    /// Inter-token latency: a percentile that must stay below a latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl: Option<LatencyTargetSpec>,
    /// Time a request waits for the engine before it is scheduled: a percentile that must
    /// stay below a latency (unlike TTFT, it holds no prefill time, which more replicas do
    /// not shorten).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_time: Option<LatencyTargetSpec>,
    /// Window of the latency percentiles, seconds (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
}

/// A latency percentile's bound, e.g. `{percentile: p95, below: 500ms}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyTargetSpec {
    /// The percentile, `p95` or `95` (default p95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<String>,
    /// The latency it must stay below (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<DurationSpec>,
}

/// HPA controller flags the calculator honours for CPU readiness.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessSpec {
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_initialization_period_seconds: Option<i64>,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_readiness_delay_seconds: Option<i64>,
}

/// Ebb: a composite metric, a CEL expression over the policy's metrics by name, with its own
/// target (KEDA's `scalingModifiers`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FormulaSpec {
    /// The composite's name, for reasons and status (default `formula`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The expression, e.g. `max(waiting / 2.0, rps / 30.0)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// What the composite should be: `Value` (in total) or `AverageValue` (per replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetSpec>,
}
