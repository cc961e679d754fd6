//! What drivers saw, as plain values: pods, metric samples, proxy counters, an external count.
//!
//! Drivers pass what they measured, as they measured it; the core decides what is usable.
//! A NaN, infinite, negative or stale value is treated as missing, never as zero load.

use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything a driver observed for one target at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// The target's current replica count (`/scale` spec.replicas, or processes running).
    pub current_replicas: u32,
    /// The target's pods (or local replicas), for the HPA calculator and victim choice.
    #[serde(default)]
    pub pods: Vec<Pod>,
    /// Samples of the policy's HPA metrics, by metric name.
    #[serde(default)]
    pub metrics: Vec<MetricObservation>,
    /// Proxy or pod-scrape counters for Ebb's concurrency, rate and lag signals.
    #[serde(default)]
    pub traffic: Option<TrafficSample>,
    /// The externally supplied count or backlog.
    #[serde(default)]
    pub external_count: Option<ExternalSample>,
    /// What an LLM SLO reads of the engines (from the engine block's scrapes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineSample>,
    /// Sources past their failure threshold whose fallback stands in for the metrics they
    /// feed (KEDA's `fallback`), set by the driver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<SourceFallback>,
    /// Where the driver's time zero lies on the calendar, in Unix milliseconds: 0 where `now`
    /// is Unix time (the controller), the runtime's start for `ebb up`, the trace's start in
    /// the simulator. Only schedules read it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch_unix_ms: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A failing source's fallback: what its metrics propose while it keeps failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceFallback {
    /// The source's name.
    pub source: String,
    /// Its failures in a row.
    pub failures: u32,
    /// The metrics and signals it feeds (policy metric names, `concurrency`/`rps`,
    /// `inferenceLag`, `slo`, `externalCount`).
    pub metrics: Vec<String>,
    /// What they propose instead.
    pub action: Fallback,
}

/// What a failing source's metrics propose. Each stands in for the missing proposal and is
/// combined with the healthy ones by the largest, so it never overrides them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fallback {
    /// Stay missing: the count is not lowered while the source fails (the default).
    Hold,
    /// Propose this many: a floor under the healthy signals.
    Replicas(u32),
    /// The current count if higher than this many, else this many (KEDA's
    /// `currentReplicasIfHigher`).
    CurrentReplicasIfHigher(u32),
    /// The current count if lower than this many, else this many (KEDA's
    /// `currentReplicasIfLower`).
    CurrentReplicasIfLower(u32),
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::Hold => write!(f, "hold"),
            Fallback::Replicas(n) => write!(f, "replicas {n}"),
            Fallback::CurrentReplicasIfHigher(n) => write!(f, "currentReplicasIfHigher {n}"),
            Fallback::CurrentReplicasIfLower(n) => write!(f, "currentReplicasIfLower {n}"),
        }
    }
}

impl Observation {
    /// Replicas ready to serve now: ready, running pods not being deleted, or the current
    /// count when the driver lists no pods.
    pub fn ready_replicas(&self) -> u32 {
        if self.pods.is_empty() {
            return self.current_replicas;
        }
        self.pods
            .iter()
            .filter(|p| p.ready && p.phase == PodPhase::Running && !p.deleting)
            .count() as u32
    }
}

/// Kubernetes pod phases (local replicas use Running and Pending).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    /// Scheduled or starting.
    Pending,
    /// Running.
    #[default]
    Running,
    /// Exited successfully.
    Succeeded,
    /// Exited with failure.
    Failed,
}

/// One pod (or local replica).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    /// Unique name.
    pub name: String,
    /// Phase.
    #[serde(default)]
    pub phase: PodPhase,
    /// Whether the Ready condition is true.
    pub ready: bool,
    /// Whether deletion has begun (a deletionTimestamp is set).
    #[serde(default)]
    pub deleting: bool,
    /// When the pod started; `None` means unknown (treated as unready for CPU, as HPA does).
    #[serde(default)]
    pub started_at: Option<Time>,
    /// When the Ready condition last changed; `None` means unknown.
    #[serde(default)]
    pub ready_changed_at: Option<Time>,
    /// When the pod was created, for the scale-up that asked for it. The SLO's cold start runs
    /// from here to Ready, so that the time spent Pending (scheduling, a GPU node brought up
    /// for it, the image pulled) counts: `started_at` begins only once a node runs it. `None`:
    /// from `started_at`.
    #[serde(default)]
    pub created_at: Option<Time>,
    /// Resource requests in milli-units, keyed like metric names ("cpu", "container/cpu").
    #[serde(default)]
    pub requests: BTreeMap<String, i64>,
    /// Requests in flight on this pod, where the driver knows it (proxy, pod scrape).
    #[serde(default)]
    pub in_flight: Option<f64>,
}

impl Pod {
    /// When its cold start began: created, else started.
    pub fn cold_start_began(&self) -> Option<Time> {
        self.created_at.or(self.started_at)
    }
}

/// Samples of one HPA metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricObservation {
    /// The metric's name in the policy ([`crate::policy::Metric::name`]).
    pub name: String,
    /// The samples.
    pub values: MetricValues,
}

/// The shape of a metric's samples, by HPA metric type. Written with a `kind` tag:
/// `{kind: perPod, samples: [...]}`, `{kind: object, value: 3, at: 0}`,
/// `{kind: external, values: [1, 2], at: 0}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum MetricValues {
    /// Resource and Pods metrics: one sample per pod.
    PerPod {
        /// The samples.
        samples: Vec<PodSample>,
    },
    /// Object metrics: one value.
    Object {
        /// The value in the metric's unit.
        value: f64,
        /// When it was measured.
        at: Time,
    },
    /// External metrics: the values of every matching series (summed, as HPA does).
    External {
        /// Series values.
        values: Vec<f64>,
        /// When they were read.
        at: Time,
    },
}

/// A single timestamped value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The value in the metric's unit (not milli-units).
    pub value: f64,
    /// When it was measured.
    pub at: Time,
}

/// One pod's sample of a per-pod metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSample {
    /// The pod's name.
    pub pod: String,
    /// The value in the metric's unit (cores for cpu, bytes for memory).
    pub value: f64,
    /// When the sample's window ended.
    pub at: Time,
    /// The sample's window in milliseconds (metrics-server reports one).
    #[serde(default)]
    pub window_ms: i64,
}

/// What the LLM SLO's token model reads of the serving engines, each over the engine block's
/// window (histograms summed over replicas before a quantile is taken).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineSample {
    /// When the scrapes were taken.
    pub at: Time,
    /// Replicas scraped (serving).
    pub replicas: u32,
    /// Prompt and generated tokens the replicas processed per second over the window, summed
    /// (`None` until a replica has counted over some of it).
    pub tokens_per_second: Option<f64>,
    /// Requests waiting for an engine, summed over replicas, now.
    pub waiting: f64,
    /// Mean share of the KV cache in use, now (`None` where the engine exports none).
    pub kv_cache: Option<f64>,
    /// The ITL goal's quantile over the window, seconds.
    pub itl_quantile: Option<f64>,
    /// The TTFT goal's quantile over the window, seconds.
    pub ttft_quantile: Option<f64>,
    /// Whether replicas are starting beside the serving ones.
    pub starting: bool,
}

/// Cumulative traffic counters at one moment, from Ebb's proxy or a pod scrape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSample {
    /// When the counters were read.
    pub at: Time,
    /// Requests in flight (forwarded or queued), averaged over the interval since the previous
    /// sample where the driver can, else the instant value.
    pub in_flight: f64,
    /// Requests that have arrived since the counter started.
    pub arrivals_total: f64,
    /// Requests that have completed since the counter started.
    pub completions_total: f64,
    /// Service-time counters, where the driver measures them (the SLO model's service time;
    /// without them it falls back to Little's law).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceTotals>,
    /// The requests answered as their clients saw them (queueing included) and how many met
    /// the SLO's latency, where the driver counts them: the attainment reached, against which
    /// the model's prediction is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered: Option<AnsweredWithin>,
}

/// Cumulative service-time counters: the time replicas spent on requests, queueing excluded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTotals {
    /// Requests whose service time is counted.
    pub requests: f64,
    /// Sum of their service times, seconds.
    pub seconds: f64,
    /// Sum of the squares of their service times, seconds squared.
    pub squared_seconds: f64,
    /// How many of them took no longer than a latency, where the driver counts it (at the
    /// SLO's latency): the tail at the SLO measured, not inferred from two moments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<WithinLatency>,
}

/// A cumulative count of the requests whose service time was at most `latency_seconds`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WithinLatency {
    /// The latency counted against, seconds.
    pub latency_seconds: f64,
    /// Requests whose service time was at most that.
    pub requests: f64,
}

/// Cumulative counts of the requests that ended, as their clients saw them: the SLO's
/// attainment as reached, not as predicted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnsweredWithin {
    /// The latency counted against (the SLO's), seconds.
    pub latency_seconds: f64,
    /// Requests that ended: answered, failed (Ebb's own 503 or 504, a replica's 5xx, an
    /// answer cut off) or given up by their client after the latency had passed. A client
    /// that gives up sooner says nothing about the SLO and is not counted.
    pub requests: f64,
    /// Of those, the ones answered without a server error within the latency.
    pub within: f64,
}

/// The externally supplied value at one moment.
pub type ExternalSample = Sample;

/// Whether a measured value can stand for load: finite and not negative.
pub fn is_usable(value: f64) -> bool {
    value.is_finite() && value >= 0.0
}

/// Whether a sample taken at `at` is still fresh at `now`.
pub fn is_fresh(at: Time, now: Time, stale_after_ms: i64) -> bool {
    now.millis_since(at) <= stale_after_ms
}
