//! The `Autoscaler` custom resource (`ebb.dev/v1alpha1`): what to scale (`scaleTargetRef`),
//! the policy in the core's language (HPA `autoscaling/v2` fields plus Ebb's blocks, at the top
//! of `spec` as in an HPA), and where the signals come from (`sources`). The status carries
//! what a restarted or newly elected controller needs to keep honouring stabilization windows
//! (`decisionState`), and what a user wants to see: replicas, metric values, reasons,
//! HPA-style conditions.

use ebb_core::policy::spec::PolicySpec;
use ebb_core::{Policy, State};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The Autoscaler's desired state.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "ebb.dev",
    version = "v1alpha1",
    kind = "Autoscaler",
    plural = "autoscalers",
    shortname = "eas",
    namespaced,
    status = "AutoscalerStatus",
    schema = "disabled",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.scaleTargetRef.name"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.scaleTargetRef.kind","priority":1}"#,
    printcolumn = r#"{"name":"Pool","type":"string","jsonPath":".spec.pool.role","priority":1}"#,
    printcolumn = r#"{"name":"Min","type":"integer","jsonPath":".spec.minReplicas"}"#,
    printcolumn = r#"{"name":"Max","type":"integer","jsonPath":".spec.maxReplicas"}"#,
    printcolumn = r#"{"name":"Current","type":"integer","jsonPath":".status.currentReplicas"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredReplicas"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerSpec {
    /// The object to scale through its `/scale` subresource.
    pub scale_target_ref: ScaleTargetRef,
    /// Where the signals come from.
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
    /// Seconds between decisions at most (default 5): a source due sooner (its own poll
    /// interval) brings the next decision forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_period_seconds: Option<f64>,
    /// Safe scale-in options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in: Option<ScaleInSpec>,
    /// `Active` (the default) scales the target; `DryRun` decides and publishes every
    /// decision without writing `/scale`, and may sit beside an HPA or KEDA on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Multi-model serving: the target is a server (a Seldon Core 2 `Server`, or any scalable
    /// resource) whose replicas follow the models it hosts. Its replica count comes from
    /// packing the models' replicas by memory (`ebb_core::placement`), within
    /// `minReplicas`/`maxReplicas`; no signal of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementSpec>,
    /// Disaggregated serving: this Autoscaler scales one pool of a prefill/decode server, and
    /// the Autoscaler named `partner` scales the other; each raises its own pool to keep
    /// decode replicas per prefill replica within `ratio` (`ebb_core::pools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolSpec>,
    /// Everything else is the policy: `minReplicas`, `maxReplicas`, `metrics`, `behavior`,
    /// `tolerance`, `concurrency`, `inferenceLag`, `externalCount`, `scaleToZero`, ...
    /// Validated by the decision core, which names the field of any problem.
    #[serde(flatten)]
    pub policy: serde_json::Map<String, Value>,
}

/// The scaled object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// e.g. `apps/v1`, `mlops.seldon.io/v1alpha1`.
    pub api_version: String,
    /// e.g. `Deployment`, `Model`, `Server`.
    pub kind: String,
    /// Its name, in the Autoscaler's namespace.
    pub name: String,
}

/// The models a server hosts, and its memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Memory of one server replica, MiB.
    #[serde(rename = "memoryMiB")]
    #[schemars(range(min = 1))]
    pub memory_mib: u64,
    /// Share of each server's memory kept free (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<f64>,
    /// Most model replicas one server hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_models: Option<u32>,
    /// The models: each a scalable resource (a Seldon Core 2 `Model`) whose replicas its own
    /// Autoscaler sets, and the memory one of its replicas needs.
    pub models: Vec<PlacedModel>,
}

/// One model of a placement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacedModel {
    /// The model's resource (read through its `/scale`).
    #[serde(rename = "ref")]
    pub model_ref: ScaleTargetRef,
    /// Memory of one replica, MiB.
    #[serde(rename = "memoryMiB")]
    #[schemars(range(min = 1))]
    pub memory_mib: u64,
}

/// One pool of a disaggregated server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    /// Which pool this Autoscaler's target is.
    pub role: PoolRole,
    /// The Autoscaler of the other pool, in this namespace.
    pub partner: String,
    /// Decode replicas per prefill replica (`min`, `max`; either may be left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<PoolRatioSpec>,
}

/// A pool's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PoolRole {
    /// Replicas that compute prompts and hand their KV cache on.
    #[serde(rename = "prefill")]
    Prefill,
    /// Replicas that generate the tokens.
    #[serde(rename = "decode")]
    Decode,
}

impl From<PoolRole> for ebb_core::pools::Pool {
    fn from(r: PoolRole) -> Self {
        match r {
            PoolRole::Prefill => ebb_core::pools::Pool::Prefill,
            PoolRole::Decode => ebb_core::pools::Pool::Decode,
        }
    }
}

/// The ratio guard's bounds as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolRatioSpec {
    /// Fewest decode replicas per prefill replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Most decode replicas per prefill replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// What a pool's Autoscaler publishes for its partner.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// The replicas this pool's own policy decided, before the guard: what the partner's
    /// guard reads (a raised count fed back would walk both pools up).
    pub own_replicas: u32,
    /// Its `minReplicas`: a pool at its floor asks nothing of the other.
    pub min_replicas: u32,
}

/// How an Autoscaler acts on its decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Mode {
    /// Scale the target.
    #[default]
    Active,
    /// Decide and publish (status, Events, `/metrics`), never write `/scale`: how a cautious
    /// team tries Ebb beside the autoscaler it runs.
    DryRun,
}

/// Safe scale-in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleInSpec {
    /// Set `controller.kubernetes.io/pod-deletion-cost` on the target's pods from the core's
    /// victim ranking before lowering replicas (default true; ReplicaSets honour it from
    /// Kubernetes 1.21).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_cost: Option<bool>,
    /// Wait up to this long for the victims' in-flight requests (from a pod-scrape traffic
    /// source) to reach zero before patching (default 0: do not wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_idle_seconds: Option<f64>,
}

/// One signal source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// What it feeds: the policy metric of this name; `externalCount` feeds the external
    /// count; a pod scrape with `traffic` feeds Ebb's traffic signals (concurrency, rps,
    /// inference lag) whatever its name.
    pub name: String,
    /// Seconds between polls (default: 15 for Prometheus, 2 for pod scraping, 1 for a pod
    /// scrape with `traffic`, 0.5 for the gateway, 5 for Redis and resource metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_seconds: Option<f64>,
    /// Seconds one poll may take (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Prometheus HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
    /// The target's pods' own metrics endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_scrape: Option<PodScrapeSource>,
    /// A Redis key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSource>,
    /// The resource metrics API (`metrics.k8s.io`): CPU or memory per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_metrics: Option<ResourceMetricsSource>,
    /// Ebb's gateway in front of the target (`ebb gateway`): its replicas' proxy counters,
    /// summed. Feeds the traffic signals; requests it holds while the target is at zero count
    /// as in flight, so they bring the target back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySource>,
    /// What the metrics it feeds propose once it has failed `failureThreshold` polls in a row
    /// (default: hold, never lowering the count while it fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackSpec>,
}

/// A source's fallback (KEDA's `fallback`, with `hold` and a floor that never overrides a
/// healthy source).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FallbackSpec {
    /// Failed polls in a row before the fallback applies (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub failure_threshold: Option<u32>,
    /// What the source's metrics propose meanwhile (default `hold`).
    #[serde(default)]
    pub behavior: FallbackBehavior,
    /// The count for `replicas`, `currentReplicasIfHigher` and `currentReplicasIfLower`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

/// What a failing source's metrics propose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FallbackBehavior {
    /// Stay missing: the count is not lowered while the source fails.
    #[default]
    Hold,
    /// `replicas`, as a floor under the healthy sources.
    Replicas,
    /// The current count if higher than `replicas`, else `replicas`.
    CurrentReplicasIfHigher,
    /// The current count if lower than `replicas`, else `replicas`.
    CurrentReplicasIfLower,
}

/// Failed polls in a row before a fallback applies unless `failureThreshold` says.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

impl FallbackSpec {
    /// The core's fallback once `failures` polls in a row have failed: `None` below the
    /// threshold (or while `replicas` is missing where the behavior needs it).
    pub fn active(&self, failures: u32) -> Option<ebb_core::Fallback> {
        (failures >= self.threshold())
            .then(|| self.action())
            .flatten()
    }

    /// The core's fallback, once valid.
    pub fn action(&self) -> Option<ebb_core::Fallback> {
        let n = self.replicas;
        Some(match self.behavior {
            FallbackBehavior::Hold => ebb_core::Fallback::Hold,
            FallbackBehavior::Replicas => ebb_core::Fallback::Replicas(n?),
            FallbackBehavior::CurrentReplicasIfHigher => {
                ebb_core::Fallback::CurrentReplicasIfHigher(n?)
            }
            FallbackBehavior::CurrentReplicasIfLower => {
                ebb_core::Fallback::CurrentReplicasIfLower(n?)
            }
        })
    }

    /// Failed polls in a row before it applies.
    pub fn threshold(&self) -> u32 {
        self.failure_threshold
            .unwrap_or(DEFAULT_FAILURE_THRESHOLD)
            .max(1)
    }
}

/// A PromQL instant query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSource {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    pub url: String,
    /// The query; `{{name}}` (the target's name) and `{{namespace}}` are replaced. A vector
    /// result with a `pod` label gives per-pod values.
    pub query: String,
    /// A Secret in the Autoscaler's namespace with `token` (bearer) or `username` and
    /// `password` (basic auth), and optionally `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretRef>,
    /// Accept any server certificate (testing only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// Scraping the target's pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodScrapeSource {
    /// Port of the pods' metrics endpoint.
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Path (default `/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `http` (default) or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["http", "https"]))]
    pub scheme: Option<String>,
    /// The metric to read (summed over its series in each pod), for a policy metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// `perPod` (default: each pod's value, for a `Pods` metric), `sum`, `average`, or
    /// `rate` (per-pod rate of a counter between two scrapes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["perPod", "sum", "average", "rate"]))]
    pub aggregate: Option<String>,
    /// Read Ebb's traffic signals instead: counters of arrivals and completions and a gauge
    /// of requests in flight (e.g. Ebb proxy's `ebb_requests_total`, `ebb_responses_total`,
    /// `ebb_in_flight`; vLLM's `vllm:num_requests_running` as in flight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficMetrics>,
}

/// Where the gateway's replicas are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySource {
    /// Label selector of the gateway's pods, in this namespace (e.g. `app=ebb-gateway`).
    pub selector: String,
    /// Port of their admin endpoint (`ebb gateway --admin`; default 9901).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
}

impl GatewaySource {
    /// The admin port.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(9901)
    }
}

impl SourceSpec {
    /// Whether it feeds Ebb's traffic signals (a pod scrape with `traffic`, or the gateway).
    pub fn feeds_traffic(&self) -> bool {
        self.gateway.is_some()
            || self
                .pod_scrape
                .as_ref()
                .is_some_and(|p| p.traffic.is_some())
    }
}

/// Metric names of the traffic signals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficMetrics {
    /// Counter of requests received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<String>,
    /// Counter of requests completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completions: Option<String>,
    /// Gauge of requests in flight (summed with waiting ones when both are given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<String>,
}

/// A Redis value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSource {
    /// `redis://host:6379/0`.
    pub address: String,
    /// The key.
    pub key: String,
    /// `string` (default: the key holds a number), `hashField`, or `listLength`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["string", "hashField", "listLength"]))]
    pub kind: Option<String>,
    /// The field, for `hashField`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

/// CPU or memory from `metrics.k8s.io`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetricsSource {
    /// `cpu` or `memory`.
    #[schemars(extend("enum" = ["cpu", "memory"]))]
    pub resource: String,
}

/// A Secret in the Autoscaler's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Its name.
    pub name: String,
}

/// One key of a Secret in the Autoscaler's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret.
    pub name: String,
    /// The key.
    pub key: String,
}

/// What the controller observed and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// The spec generation this status is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Replicas of the target, as its `/scale` said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<u32>,
    /// Replicas the last decision wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<u32>,
    /// When replicas were last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    /// Each source's last value or error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_metrics: Vec<SourceStatus>,
    /// The last decision's reasons, as sentences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// `AbleToScale`, `ScalingActive`, `ScalingLimited`, as HPA has them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The decision core's state (recommendation history, scale events), so that a restarted
    /// or newly elected controller keeps honouring stabilization windows and rate policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_state: Option<State>,
    /// Dry-run mode: how its decisions differed from the replicas the target had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRunStatus>,
    /// Placement mode: the planned placement (server to model replicas), which the next plan
    /// starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// Disaggregated serving: this pool's own decision, for its partner's guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolStatus>,
}

/// What a dry run saw: the last times its decision differed from the target's count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunStatus {
    /// Newest last, at most [`DRY_RUN_DIFFERENCES`]; one entry per change of the pair.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<DryRunDifference>,
}

/// Differences a dry run keeps in its status.
pub const DRY_RUN_DIFFERENCES: usize = 10;

/// One difference between Ebb's decision and the target's count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunDifference {
    /// When (RFC 3339).
    pub time: String,
    /// Replicas the target had.
    pub target_replicas: u32,
    /// Replicas Ebb would have set.
    pub ebb_replicas: u32,
}

/// One source's last poll.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// Source name.
    pub name: String,
    /// Its kind (`prometheus`, `podScrape`, `redis`, `resourceMetrics`, `gateway`, or
    /// `engine` for an engine block's signal).
    pub source: String,
    /// The value (summed over pods for per-pod values); absent when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Why the last poll failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was last polled successfully (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
}

/// An HPA-style condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `AbleToScale`, `ScalingActive` or `ScalingLimited`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// A sentence.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
}

/// Why an Autoscaler's spec cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SpecError {
    /// The field path under `spec`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl AutoscalerSpec {
    /// Whether it only decides and publishes (`mode: DryRun`), never writing `/scale`.
    pub fn dry_run(&self) -> bool {
        self.mode == Some(Mode::DryRun)
    }

    /// The policy, validated by the core; errors carry `spec.`-rooted field paths.
    pub fn policy(&self) -> Result<Policy, Vec<SpecError>> {
        let value = Value::Object(self.policy.clone());
        let spec: PolicySpec = serde_path_to_error::deserialize(value).map_err(|e| {
            vec![SpecError {
                path: format!("spec.{}", e.path()),
                reason: e.inner().to_string(),
            }]
        })?;
        Policy::from_spec(&spec).map_err(|e| {
            e.errors
                .iter()
                .map(|f| SpecError {
                    path: format!("spec.{}", f.path),
                    reason: f.reason.clone(),
                })
                .collect()
        })
    }

    /// Placement mode: the server kind for the planner, from `placement`, `minReplicas` and
    /// `maxReplicas`; errors name the field.
    pub fn server_kind(
        &self,
        target: &str,
    ) -> Result<Option<ebb_core::placement::ServerKind>, Vec<SpecError>> {
        let Some(p) = &self.placement else {
            return Ok(None);
        };
        let mut errors = Vec::new();
        let int = |k: &str| self.policy.get(k).and_then(Value::as_i64);
        let max = int("maxReplicas").unwrap_or(0);
        let min = int("minReplicas").unwrap_or(1);
        if max < 1 {
            errors.push(SpecError {
                path: "spec.maxReplicas".into(),
                reason: format!("must be at least 1 (the most servers), got {max}"),
            });
        }
        if min < 0 || min > max {
            errors.push(SpecError {
                path: "spec.minReplicas".into(),
                reason: format!("must be between 0 and maxReplicas ({max}), got {min}"),
            });
        }
        let signals: Vec<&String> = self
            .policy
            .keys()
            .filter(|k| !["minReplicas", "maxReplicas"].contains(&k.as_str()))
            .collect();
        if !signals.is_empty() || !self.sources.is_empty() {
            errors.push(SpecError {
                path: "spec.placement".into(),
                reason: format!(
                    "a placement Autoscaler has no signals of its own (the servers follow the models): remove {}",
                    signals.iter().map(|s| s.as_str()).chain((!self.sources.is_empty()).then_some("sources")).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let headroom = p.headroom.unwrap_or(0.0);
        if !(0.0..0.99).contains(&headroom) {
            errors.push(SpecError {
                path: "spec.placement.headroom".into(),
                reason: format!("must be in [0, 0.99), got {headroom}"),
            });
        }
        let usable = ebb_core::placement::usable_mib(p.memory_mib, headroom);
        if p.memory_mib == 0 {
            errors.push(SpecError {
                path: "spec.placement.memoryMiB".into(),
                reason: "must be above 0".into(),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, m) in p.models.iter().enumerate() {
            if !seen.insert((&m.model_ref.kind, &m.model_ref.name)) {
                errors.push(SpecError {
                    path: format!("spec.placement.models[{i}].ref"),
                    reason: format!("{} {} is listed twice", m.model_ref.kind, m.model_ref.name),
                });
            }
            if m.memory_mib == 0 || m.memory_mib > usable {
                errors.push(SpecError {
                    path: format!("spec.placement.models[{i}].memoryMiB"),
                    reason: format!(
                        "must be between 1 and a server's usable {usable} MiB, got {}",
                        m.memory_mib
                    ),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Some(ebb_core::placement::ServerKind {
            kind: target.to_string(),
            capacity_mib: p.memory_mib,
            max_models: p.max_models,
            min_replicas: min as u32,
            max_replicas: max as u32,
            headroom,
        }))
    }

    /// The pool guard's ratio, when this Autoscaler is one pool of a pair.
    pub fn pool_ratio(&self) -> Result<Option<ebb_core::pools::Ratio>, Vec<SpecError>> {
        let Some(pool) = &self.pool else {
            return Ok(None);
        };
        let spec = pool.ratio.as_ref().map(|r| ebb_core::pools::RatioSpec {
            min: r.min,
            max: r.max,
        });
        ebb_core::pools::Ratio::from_spec(spec.as_ref(), "spec.pool.ratio")
            .map(Some)
            .map_err(|e| {
                e.into_iter()
                    .map(|f| SpecError {
                        path: f.path,
                        reason: f.reason,
                    })
                    .collect()
            })
    }

    /// Checks the parts the core does not know: sources, sync period and the pool pairing.
    pub fn check_sources(&self) -> Result<(), Vec<SpecError>> {
        let mut errors = Vec::new();
        if let Err(e) = self.pool_ratio() {
            errors.extend(e);
        }
        if let Some(pool) = &self.pool {
            if pool.partner.trim().is_empty() {
                errors.push(SpecError {
                    path: "spec.pool.partner".into(),
                    reason: "is required: the other pool's Autoscaler".into(),
                });
            }
            if self.placement.is_some() {
                errors.push(SpecError {
                    path: "spec.pool".into(),
                    reason:
                        "a placement Autoscaler sizes a server from its models; it is not a pool"
                            .into(),
                });
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let p = format!("spec.sources[{i}]");
            if s.name.trim().is_empty() {
                errors.push(SpecError {
                    path: format!("{p}.name"),
                    reason: "is required".into(),
                });
            } else if !names.insert(s.name.clone()) {
                errors.push(SpecError {
                    path: format!("{p}.name"),
                    reason: format!("'{}' is used twice", s.name),
                });
            }
            let kinds = [
                s.prometheus.is_some(),
                s.pod_scrape.is_some(),
                s.redis.is_some(),
                s.resource_metrics.is_some(),
                s.gateway.is_some(),
            ]
            .iter()
            .filter(|k| **k)
            .count();
            if kinds != 1 {
                errors.push(SpecError {
                    path: p.clone(),
                    reason: format!(
                        "give exactly one of prometheus, podScrape, redis, resourceMetrics, gateway (got {kinds})"
                    ),
                });
            }
            for (field, v) in [
                ("pollSeconds", s.poll_seconds),
                ("timeoutSeconds", s.timeout_seconds),
            ] {
                if let Some(v) = v {
                    if !v.is_finite() || !(0.1..=3600.0).contains(&v) {
                        errors.push(SpecError {
                            path: format!("{p}.{field}"),
                            reason: format!("must be between 0.1 and 3600 seconds, got {v}"),
                        });
                    }
                }
            }
            if let Some(f) = &s.fallback {
                if f.action().is_none() {
                    errors.push(SpecError {
                        path: format!("{p}.fallback.replicas"),
                        reason: format!(
                            "is required with behavior {}",
                            serde_json::to_value(f.behavior)
                                .ok()
                                .and_then(|v| v.as_str().map(String::from))
                                .unwrap_or_default()
                        ),
                    });
                }
                if f.failure_threshold == Some(0) {
                    errors.push(SpecError {
                        path: format!("{p}.fallback.failureThreshold"),
                        reason: "must be 1 or more, got 0".into(),
                    });
                }
            }
            if let Some(ps) = &s.pod_scrape {
                if ps.metric.is_none() && ps.traffic.is_none() {
                    errors.push(SpecError {
                        path: format!("{p}.podScrape"),
                        reason: "give metric (for a policy metric) or traffic (for Ebb's traffic signals)".into(),
                    });
                }
                if let Some(a) = &ps.aggregate {
                    if !["perPod", "sum", "average", "rate"].contains(&a.as_str()) {
                        errors.push(SpecError {
                            path: format!("{p}.podScrape.aggregate"),
                            reason: format!("must be perPod, sum, average or rate, got '{a}'"),
                        });
                    }
                }
            }
            if let Some(r) = &s.redis {
                let kind = r.kind.as_deref().unwrap_or("string");
                if !["string", "hashField", "listLength"].contains(&kind) {
                    errors.push(SpecError {
                        path: format!("{p}.redis.kind"),
                        reason: format!("must be string, hashField or listLength, got '{kind}'"),
                    });
                }
                if kind == "hashField" && r.field.is_none() {
                    errors.push(SpecError {
                        path: format!("{p}.redis.field"),
                        reason: "is required for kind hashField".into(),
                    });
                }
            }
            if let Some(g) = &s.gateway {
                if let Err(e) = crate::selector::parse(&g.selector) {
                    errors.push(SpecError {
                        path: format!("{p}.gateway.selector"),
                        reason: e.to_string(),
                    });
                }
            }
            if let Some(r) = &s.resource_metrics {
                if r.resource != "cpu" && r.resource != "memory" {
                    errors.push(SpecError {
                        path: format!("{p}.resourceMetrics.resource"),
                        reason: format!("must be cpu or memory, got '{}'", r.resource),
                    });
                }
            }
        }
        if let Some(e) = self.zero_without_a_way_back() {
            errors.push(e);
        }
        if let Some(v) = self.sync_period_seconds {
            if !v.is_finite() || !(0.1..=3600.0).contains(&v) {
                errors.push(SpecError {
                    path: "spec.syncPeriodSeconds".into(),
                    reason: format!("must be between 0.1 and 3600 seconds, got {v}"),
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl AutoscalerSpec {
    /// A policy that may scale to zero with no source that reports while no pod runs. Pod
    /// scrapes and resource metrics are read from the target's pods: at zero there are none,
    /// the demand stays unknown (`DemandUnknown`), and the target would never come back. A
    /// gateway holds and counts the requests sent at zero; Prometheus and Redis read what
    /// lives outside the pods (an ingress's counters, a queue).
    fn zero_without_a_way_back(&self) -> Option<SpecError> {
        if !self.policy.contains_key("scaleToZero") {
            return None;
        }
        let reports_at_zero =
            |s: &SourceSpec| s.gateway.is_some() || s.prometheus.is_some() || s.redis.is_some();
        if self.sources.iter().any(reports_at_zero) {
            return None;
        }
        Some(SpecError {
            path: "spec.scaleToZero".into(),
            reason: "needs a source that reports while no pod runs (a gateway source in front \
                     of the pods, or prometheus or redis): pod scrapes and resource metrics \
                     have no pod to read at zero, so nothing would bring the target back"
                .into(),
        })
    }
}

fn open_object(description: &str) -> Value {
    json!({"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": true})
}

/// The OpenAPI schema of the resource: the Kubernetes-facing fields typed, the policy blocks
/// open (the core validates them and reports field paths in the status).
/// The OpenAPI schema of a typed part of the spec, derived from its Rust type (doc comments
/// become descriptions), in the structural form the API server requires.
fn derived<T: JsonSchema>() -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .into_generator();
    let mut v = generator.root_schema_for::<T>().to_value();
    if let Some(o) = v.as_object_mut() {
        o.remove("title");
    }
    v
}

/// The CRD's schema: the typed parts (target, sources, scale-in, placement) derived from their
/// Rust types; the policy's fields (HPA's and Ebb's) kept open, since the decision core
/// validates them with field paths that a schema could not give.
fn schema() -> Value {
    let number = |d: &str| json!({"type": "number", "description": d});
    json!({
        "type": "object",
        "description": "Ebb Autoscaler: scales any object with a /scale subresource from inference signals.",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "maxReplicas"],
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "scaleTargetRef": derived::<ScaleTargetRef>(),
                    "minReplicas": {"type": "integer", "minimum": 0},
                    "maxReplicas": {"type": "integer", "minimum": 1},
                    "initialReplicas": {"type": "integer", "minimum": 1, "description": "Replicas to start with when the Autoscaler is created, held until that many are ready (Knative's initial scale)."},
                    "metrics": {"type": "array", "items": open_object("An HPA autoscaling/v2 MetricSpec.")},
                    "behavior": open_object("HPA behavior: scaleUp and scaleDown rules."),
                    "tolerance": {"x-kubernetes-int-or-string": true, "description": "A number, or scaleUp/scaleDown."},
                    "concurrency": open_object("Knative-style concurrency or rps target with panic mode."),
                    "inferenceLag": open_object("Seldon-style inference lag."),
                    "externalCount": open_object("An externally supplied count or backlog."),
                    "scaleToZero": open_object("Scale to zero when idle."),
                    "slo": open_object("Latency SLO (latency, attainment or percentile, slotsPerReplica, coldStartSeconds, seasonSeconds): replicas from Ebb's queueing model, no utilization target. For LLM serving, ttft and itl ({latency, attainment}) with the engine block: replicas from the engines' learnt response."),
                    "engine": open_object("Targets on an LLM engine's own metrics, read by name: kind (vllm, sglang, tgi, triton), port and path of the pods' metrics, kvCacheUtilization, waitingPerReplica, runningPerReplica, ttft and itl ({percentile, below}), windowSeconds."),
                    "formula": open_object("A composite metric: a CEL expression over the policy's metrics by name (name, expression, target of type Value or AverageValue); the metrics it reads no longer propose on their own."),
                    "schedules": {"type": "array", "items": open_object("A calendar window (name; start and end cron expressions, or days, from and to; timezone) with minReplicas and/or maxReplicas while open, and prewarmSeconds.")},
                    "staleAfterSeconds": number("Samples older than this count as missing."),
                    "readiness": open_object("CPU readiness flags."),
                    "syncPeriodSeconds": number("Seconds between decisions at most (default 5); a source due sooner brings the next one forward."),
                    "scaleIn": derived::<ScaleInSpec>(),
                    "mode": derived::<Mode>(),
                    "sources": {"type": "array", "items": derived::<SourceSpec>()},
                    "placement": derived::<PlacementSpec>(),
                    "pool": derived::<PoolSpec>()
                }
            },
            "status": open_object("What the controller observed and did.")
        }
    })
}

/// The CustomResourceDefinition, with its schema and the status subresource.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = Autoscaler::crd();
    if let Some(v) = crd.spec.versions.first_mut() {
        v.schema = Some(
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceValidation {
                open_api_v3_schema: serde_json::from_value::<JSONSchemaProps>(schema()).ok(),
            },
        );
    }
    crd
}

/// The CRD as YAML (what `ebb crd` prints).
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&crd()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> AutoscalerSpec {
        serde_yaml::from_str(yaml).expect("spec parses")
    }

    #[test]
    fn the_policy_sits_at_the_top_of_spec_as_in_an_hpa() {
        let s = spec("scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: m}\nminReplicas: 1\nmaxReplicas: 5\nconcurrency: {targetPerReplica: 4}\nsources:\n- name: traffic\n  podScrape: {port: 8080, traffic: {inFlight: [ebb_in_flight]}}\n");
        let p = s.policy().expect("valid");
        assert_eq!(p.max_replicas, 5);
        assert!(p.concurrency.is_some());
        assert!(s.check_sources().is_ok());
    }

    #[test]
    fn bad_specs_name_the_field() {
        let s = spec("scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: m}\nminReplicas: 4\nmaxReplicas: 2\n");
        let e = s.policy().unwrap_err();
        assert!(e.iter().any(|e| e.path == "spec.maxReplicas"), "{e:?}");
        let s = spec("scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: m}\nmaxReplicas: 2\nbehavior: {scaleUp: {selectPolicy: Fast}}\n");
        let e = s.policy().unwrap_err();
        assert!(
            e.iter()
                .any(|e| e.path == "spec.behavior.scaleUp.selectPolicy"),
            "{e:?}"
        );
        let s = spec("scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: m}\nmaxReplicas: 2\nsources:\n- name: a\n  redis: {address: 'redis://x', key: k, kind: set}\n- name: a\n");
        let e = s.check_sources().unwrap_err();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"spec.sources[0].redis.kind"), "{paths:?}");
        assert!(paths.contains(&"spec.sources[1].name"), "{paths:?}");
        assert!(paths.contains(&"spec.sources[1]"), "{paths:?}");
    }

    #[test]
    fn scale_to_zero_needs_a_source_that_reports_at_zero() {
        let head = "scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: m}\nminReplicas: 0\nmaxReplicas: 5\nslo: {latency: 500ms, attainment: 99.9%}\nscaleToZero: {idleSeconds: never}\nsources:\n";
        let scrape =
            "- name: traffic\n  podScrape: {port: 8080, traffic: {inFlight: [ebb_in_flight]}}\n";
        let e = spec(&format!("{head}{scrape}"))
            .check_sources()
            .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].path, "spec.scaleToZero");
        assert!(e[0].reason.contains("no pod to read at zero"), "{e:?}");
        let e = spec(&format!(
            "{head}- name: cpu\n  resourceMetrics: {{resource: cpu}}\n"
        ))
        .check_sources()
        .unwrap_err();
        assert_eq!(e[0].path, "spec.scaleToZero", "{e:?}");
        for other in [
            "- name: front\n  gateway: {selector: 'app=gw'}\n",
            "- name: externalCount\n  redis: {address: 'redis://x', key: k, kind: listLength}\n",
            "- name: externalCount\n  prometheus: {url: 'http://p:9090', query: 'sum(q)'}\n",
        ] {
            let s = spec(&format!("{head}{scrape}{other}"));
            assert!(
                s.check_sources().is_ok(),
                "{other}: {:?}",
                s.check_sources()
            );
        }
        // Without scaleToZero a pod scrape alone is fine.
        let s = spec(&format!(
            "scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: m}}\nmaxReplicas: 5\nsources:\n{scrape}"
        ));
        assert!(s.check_sources().is_ok());
    }

    #[test]
    fn the_crd_has_status_printer_columns_and_a_structural_schema() {
        let c = crd();
        assert_eq!(c.spec.group, "ebb.dev");
        let v = &c.spec.versions[0];
        assert!(v.subresources.as_ref().is_some_and(|s| s.status.is_some()));
        let cols: Vec<&str> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            cols,
            ["Target", "Kind", "Pool", "Min", "Max", "Current", "Desired", "Age"]
        );
        let schema = v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref());
        assert!(schema.is_some_and(|s| s
            .properties
            .as_ref()
            .is_some_and(|p| p.contains_key("spec"))));
        assert!(crd_yaml().contains("kind: CustomResourceDefinition"));
    }

    /// The 1.20 API server refuses a schema with an `anyOf` that the structural rewriter
    /// left (a schemars `Option<enum>` makes one), and says only "per-version schemas may not
    /// all be set to identical values": keep enums in CRD types out of `Option`.
    #[test]
    fn the_schema_has_no_any_of_the_api_server_would_refuse() {
        let yaml = crd_yaml();
        assert!(!yaml.contains("anyOf"), "{yaml}");
    }

    #[test]
    fn the_shipped_crd_files_are_what_ebb_crd_prints() {
        let printed = crd_yaml();
        assert_eq!(
            include_str!("../../../deploy/crd.yaml"),
            printed,
            "run: ebb crd > deploy/crd.yaml"
        );
        assert_eq!(
            include_str!("../../../deploy/helm/ebb/crds/autoscalers.ebb.dev.yaml"),
            printed,
            "run: ebb crd > deploy/helm/ebb/crds/autoscalers.ebb.dev.yaml"
        );
    }
}
