//! The autoscaling policy: HPA `autoscaling/v2` semantics plus Ebb's own signal blocks.
//!
//! [`spec`] holds the document as written; [`Policy`] is the validated form with every default
//! filled in, which is all the decision code ever reads. Validation collects every problem with
//! the field path it concerns, so a user fixes a file in one pass.

mod engine;
mod formula;
mod schedule;
pub mod spec;
mod tuning;
pub(crate) mod validate;

pub use crate::engine::{Engine, EngineTarget};
use crate::quantity::Quantity;
pub use engine::{DEFAULT_ENGINE_WINDOW_SECONDS, ENGINE_METRIC_PREFIX};
use serde::Serialize;
use std::fmt;
pub use tuning::Tuning;
pub use validate::{parse_percent, share_of_percent, FieldError, PolicyError};

/// HPA's default tolerance around a usage ratio of 1.0.
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// HPA's default scale-down stabilization (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DEFAULT_SCALE_DOWN_WINDOW_SECONDS: u32 = 300;
/// HPA's default CPU initialization period.
pub const DEFAULT_CPU_INITIALIZATION_PERIOD_SECONDS: u32 = 300;
/// HPA's default initial readiness delay.
pub const DEFAULT_INITIAL_READINESS_DELAY_SECONDS: u32 = 30;
/// Samples older than this count as missing unless the policy says otherwise.
pub const DEFAULT_STALE_AFTER_SECONDS: f64 = 120.0;

/// A validated policy. Build one with [`Policy::from_yaml`] or [`Policy::from_spec`].
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Lower bound on replicas while the target is active.
    pub min_replicas: u32,
    /// Upper bound on replicas.
    pub max_replicas: u32,
    /// Replicas to start with on creation, held until that many are ready.
    pub initial_replicas: Option<u32>,
    /// The HPA metrics (possibly HPA's default of CPU at 80%).
    pub metrics: Vec<Metric>,
    /// Tolerance of the replica calculator, per direction.
    pub tolerance: Tolerance,
    /// Stabilization windows and rate policies.
    pub behavior: Behavior,
    /// Knative-style concurrency or request-rate target with panic mode.
    pub concurrency: Option<Concurrency>,
    /// Seldon-style inference lag.
    pub inference_lag: Option<InferenceLag>,
    /// Externally supplied count or backlog.
    pub external_count: Option<ExternalCount>,
    /// Scale to zero when idle.
    pub scale_to_zero: Option<ScaleToZero>,
    /// A latency SLO that sizes replicas through the queueing model.
    pub slo: Option<Slo>,
    /// Ebb: the LLM SLO (the `slo` block's `ttft` and `itl`).
    pub token_slo: Option<TokenSlo>,
    /// Targets on an LLM engine's own signals (their metrics are in `metrics` too).
    pub engine: Option<Engine>,
    /// The metrics it names combined into one composite with its own target.
    pub formula: Option<FormulaMetric>,
    /// Calendar windows that raise the floor or lower the ceiling while open.
    pub schedules: Vec<crate::schedule::Schedule>,
    /// Samples older than this (milliseconds) count as missing.
    pub stale_after_ms: i64,
    /// HPA controller settings for CPU readiness.
    pub readiness: Readiness,
    /// An operator's hold on the count (pause), set by the driver from outside the document:
    /// the Autoscaler's `ebb.dev/paused` annotations, `ebb up`'s control socket.
    pub hold: Option<Hold>,
}

/// A composite metric: a formula over the policy's metrics and the composite's target.
#[derive(Debug, Clone, PartialEq)]
pub struct FormulaMetric {
    /// The compiled expression and the metrics it reads.
    pub formula: crate::formula::Formula,
    /// `Value` or `AverageValue`.
    pub target: Target,
}

impl FormulaMetric {
    /// Whether the metric `name` feeds the formula (and so proposes nothing on its own).
    pub fn reads(&self, name: &str) -> bool {
        self.formula.inputs.iter().any(|i| i == name)
    }
}

/// An operator's hold on the count: the policy goes on deciding (and its windows on
/// remembering), and the decision says what it would do, but the count stays put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Hold {
    /// Keep the count the target has (KEDA's `paused: "true"`).
    Current,
    /// Set this count and keep it (KEDA's `paused-replicas`).
    Replicas(u32),
}

impl Hold {
    /// The count held when the target has `current`.
    pub fn count(self, current: u32) -> u32 {
        match self {
            Hold::Current => current,
            Hold::Replicas(n) => n,
        }
    }
}

/// Tolerance around a usage ratio of 1.0, per direction (Kubernetes 1.33 semantics).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tolerance {
    /// A ratio up to `1 + scale_up` proposes no change.
    pub scale_up: f64,
    /// A ratio down to `1 - scale_down` proposes no change.
    pub scale_down: f64,
}

impl Tolerance {
    /// The same tolerance both ways.
    pub const fn both(t: f64) -> Tolerance {
        Tolerance {
            scale_up: t,
            scale_down: t,
        }
    }

    /// Whether `usage_ratio` is close enough to 1.0 that HPA keeps the current count.
    pub fn is_within(&self, usage_ratio: f64) -> bool {
        (1.0 - self.scale_down) <= usage_ratio && usage_ratio <= (1.0 + self.scale_up)
    }
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance::both(DEFAULT_TOLERANCE)
    }
}

/// One HPA metric with its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The name observations use for this metric: the resource name for `Resource`
    /// ("cpu"), `container/resource` for `ContainerResource`, the metric name otherwise.
    pub name: String,
    /// Where the metric comes from.
    pub source: MetricSource,
    /// What value it should have.
    pub target: Target,
}

/// HPA metric types.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricSource {
    /// A resource of the pods (requests-relative utilization or raw average).
    Resource {
        /// Resource name.
        resource: String,
    },
    /// A resource of one container of each pod.
    ContainerResource {
        /// Resource name.
        resource: String,
        /// Container name.
        container: String,
    },
    /// A per-pod custom metric.
    Pods {
        /// Selector passed to the source.
        selector: Option<spec::LabelSelectorSpec>,
    },
    /// A metric describing one object.
    Object {
        /// The object.
        described_object: spec::ObjectRefSpec,
        /// Selector passed to the source.
        selector: Option<spec::LabelSelectorSpec>,
    },
    /// A metric from outside the cluster.
    External {
        /// Selector passed to the source.
        selector: Option<spec::LabelSelectorSpec>,
    },
}

impl MetricSource {
    /// HPA's name for the type.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetricSource::Resource { .. } => "Resource",
            MetricSource::ContainerResource { .. } => "ContainerResource",
            MetricSource::Pods { .. } => "Pods",
            MetricSource::Object { .. } => "Object",
            MetricSource::External { .. } => "External",
        }
    }
}

/// HPA metric targets.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Percent of the pods' resource requests.
    Utilization(i32),
    /// Average value per pod.
    AverageValue(Quantity),
    /// Total value.
    Value(Quantity),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Utilization(p) => write!(f, "{p}% utilization"),
            Target::AverageValue(q) => write!(f, "{q} per pod"),
            Target::Value(q) => write!(f, "{q}"),
        }
    }
}

impl Target {
    /// The [`fmt::Display`] text in one allocation of the right size: every decision reports
    /// each metric's target.
    pub fn text(&self) -> String {
        use fmt::Write;
        let mut text = String::with_capacity(32);
        // Writing to a String cannot fail.
        let _ = write!(text, "{self}");
        text
    }
}

/// Scale-up and scale-down rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// Rules when the recommendation is above the current count.
    pub scale_up: ScalingRules,
    /// Rules when the recommendation is below the current count.
    pub scale_down: ScalingRules,
}

impl Behavior {
    /// The defaults under an `slo` block: the model sizes a scale-up for the cold-start
    /// horizon, so it is not rate-limited (10000% per second), and it keeps replicas through
    /// dips shorter than a cold start itself, so scale-down needs no window of its own.
    pub fn slo_default() -> Behavior {
        let unlimited = |value| ScalingRules {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![ScalingPolicy {
                kind: ScalingPolicyKind::Percent,
                value,
                period_seconds: 1,
            }],
        };
        Behavior {
            scale_up: unlimited(10_000),
            scale_down: unlimited(100),
        }
    }
}

impl Default for Behavior {
    /// Kubernetes' defaults: scale up by max(4 pods, 100%) per 15 s with no window; scale
    /// down by 100% per 15 s after a 300 s window.
    fn default() -> Self {
        Behavior {
            scale_up: ScalingRules {
                stabilization_window_seconds: 0,
                select_policy: SelectPolicy::Max,
                policies: vec![
                    ScalingPolicy {
                        kind: ScalingPolicyKind::Pods,
                        value: 4,
                        period_seconds: 15,
                    },
                    ScalingPolicy {
                        kind: ScalingPolicyKind::Percent,
                        value: 100,
                        period_seconds: 15,
                    },
                ],
            },
            scale_down: ScalingRules {
                stabilization_window_seconds: DEFAULT_SCALE_DOWN_WINDOW_SECONDS,
                select_policy: SelectPolicy::Max,
                policies: vec![ScalingPolicy {
                    kind: ScalingPolicyKind::Percent,
                    value: 100,
                    period_seconds: 15,
                }],
            },
        }
    }
}

/// HPA's `HPAScalingRules`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingRules {
    /// Window over which past recommendations bound this one.
    pub stabilization_window_seconds: u32,
    /// How the policies' limits combine.
    pub select_policy: SelectPolicy,
    /// Rate policies.
    pub policies: Vec<ScalingPolicy>,
}

impl ScalingRules {
    /// The longest policy period, which bounds how long scale events must be remembered.
    pub fn longest_period_seconds(&self) -> u32 {
        self.policies
            .iter()
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0)
    }
}

/// HPA's `selectPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SelectPolicy {
    /// The policy allowing the largest change wins.
    Max,
    /// The policy allowing the smallest change wins.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// One rate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingPolicy {
    /// Pods or Percent.
    pub kind: ScalingPolicyKind,
    /// How many pods or percent per period.
    pub value: u32,
    /// Period length.
    pub period_seconds: u32,
}

impl fmt::Display for ScalingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ScalingPolicyKind::Pods => write!(f, "Pods {}/{}s", self.value, self.period_seconds),
            ScalingPolicyKind::Percent => {
                write!(f, "Percent {}%/{}s", self.value, self.period_seconds)
            }
        }
    }
}

/// Kinds of rate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ScalingPolicyKind {
    /// An absolute number of pods.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// Which traffic quantity the concurrency block targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcurrencyMetric {
    /// Requests in flight per replica.
    Concurrency,
    /// Requests per second per replica.
    Rps,
}

impl ConcurrencyMetric {
    /// The policy's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyMetric::Concurrency => "concurrency",
            ConcurrencyMetric::Rps => "rps",
        }
    }
}

/// Knative-style concurrency or rate target.
#[derive(Debug, Clone, PartialEq)]
pub struct Concurrency {
    /// Concurrency or rps.
    pub metric: ConcurrencyMetric,
    /// Target per replica.
    pub target_per_replica: f64,
    /// Stable averaging window.
    pub stable_window_ms: i64,
    /// Panic averaging window.
    pub panic_window_ms: i64,
    /// Panic when panic-window demand is at least this fraction of ready capacity (2.0 = 200%).
    pub panic_threshold: f64,
}

/// Seldon-style inference lag.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceLag {
    /// Outstanding requests per replica above which the model scales up.
    pub threshold_per_replica: f64,
    /// Measurement window, and the lag-free time a scale-down needs.
    pub window_ms: i64,
}

/// How an external value is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExternalCountMode {
    /// The value is the desired replica count.
    DesiredReplicas,
    /// The value is a backlog of items to process.
    Backlog {
        /// Items one replica completes per second.
        items_per_replica_per_second: f64,
        /// Time in which the backlog should be cleared.
        drain_seconds: f64,
    },
}

/// Externally supplied count or backlog.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalCount {
    /// How to read the value.
    pub mode: ExternalCountMode,
}

/// A latency SLO: replicas are the fewest the queueing model predicts to meet it.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// Latency each request should meet, seconds.
    pub latency_seconds: f64,
    /// Share of requests within it (0.999 = 99.9%).
    pub attainment: f64,
    /// A fixed cold start, seconds; `None` = measured.
    pub cold_start_seconds: Option<f64>,
    /// Requests one replica serves at once.
    pub slots_per_replica: u32,
    /// Seasonal period of the forecast, seconds (0 = none).
    pub season_seconds: f64,
    /// The model's constants (not part of the document: fitted once, see [`Tuning`]).
    pub tuning: Tuning,
}

/// An LLM serving SLO: time to first token (TTFT) and between tokens (ITL), each with the
/// share that must meet it. Sized by the token model ([`crate::slo::tokens`]) from the
/// engines' own signals, which the policy's `engine` block names.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSlo {
    /// Time to first token.
    pub ttft: Option<LatencyGoal>,
    /// Time between output tokens.
    pub itl: Option<LatencyGoal>,
    /// A fixed cold start, seconds; `None` = measured.
    pub cold_start_seconds: Option<f64>,
    /// Seasonal period of the forecast, seconds (0 = none).
    pub season_seconds: f64,
}

/// A latency and the share of events within it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyGoal {
    /// Seconds.
    pub seconds: f64,
    /// Share within (0.99 = 99%): the quantile that must stay below `seconds`.
    pub attainment: f64,
}

/// Default attainment of a TTFT or ITL goal.
pub const DEFAULT_TOKEN_ATTAINMENT_PERCENT: f64 = 99.0;

/// Default SLO attainment when a policy gives only a latency.
pub const DEFAULT_SLO_ATTAINMENT_PERCENT: f64 = 99.9;
/// Default seasonal period of the SLO forecast: a day.
pub const DEFAULT_SLO_SEASON_SECONDS: f64 = 86_400.0;

/// Scale to zero.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleToZero {
    /// Idle time before scaling to zero; `None`: never for idling alone (an SLO policy still
    /// goes through the silences it bridges).
    pub idle_ms: Option<i64>,
    /// Waiting requests (or backlog items) that bring the target back from zero.
    pub activation_threshold: f64,
    /// The fewest replicas a return from zero starts.
    pub activation_replicas: u32,
}

/// HPA controller settings for CPU readiness.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Readiness {
    /// Period after a pod's start during which its CPU samples need care.
    pub cpu_initialization_period_ms: i64,
    /// Delay after start within which an unready pod is taken as initializing.
    pub initial_readiness_delay_ms: i64,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            cpu_initialization_period_ms: i64::from(DEFAULT_CPU_INITIALIZATION_PERIOD_SECONDS)
                * 1000,
            initial_readiness_delay_ms: i64::from(DEFAULT_INITIAL_READINESS_DELAY_SECONDS) * 1000,
        }
    }
}

impl Policy {
    /// Parses and validates a YAML (or JSON) policy document.
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        let spec = validate::parse_spec(text)?;
        Policy::from_spec(&spec)
    }

    /// Validates a parsed document, filling in defaults.
    pub fn from_spec(spec: &spec::PolicySpec) -> Result<Policy, PolicyError> {
        validate::validate(spec)
    }

    /// A policy with HPA defaults and the given metrics; convenient in tests and drivers.
    pub fn hpa(min_replicas: u32, max_replicas: u32, metrics: Vec<Metric>) -> Policy {
        Policy {
            min_replicas,
            max_replicas,
            initial_replicas: None,
            metrics,
            tolerance: Tolerance::default(),
            behavior: Behavior::default(),
            concurrency: None,
            inference_lag: None,
            external_count: None,
            scale_to_zero: None,
            slo: None,
            token_slo: None,
            engine: None,
            formula: None,
            schedules: Vec::new(),
            stale_after_ms: (DEFAULT_STALE_AFTER_SECONDS * 1000.0) as i64,
            readiness: Readiness::default(),
            hold: None,
        }
    }

    /// The normalized document: every default written out, ready to print.
    pub fn to_spec(&self) -> spec::PolicySpec {
        validate::to_spec(self)
    }

    /// Whether any Ebb traffic signal (concurrency, lag) is configured.
    pub fn uses_traffic(&self) -> bool {
        self.concurrency.is_some()
            || self.inference_lag.is_some()
            || self.scale_to_zero.is_some()
            || self.slo.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::Hold;

    #[test]
    fn the_held_count_is_the_current_one_or_the_one_set() {
        assert_eq!(Hold::Current.count(3), 3);
        assert_eq!(Hold::Replicas(1).count(3), 1);
        let none: Option<Hold> = None;
        assert_eq!(none.map_or(5, |h| h.count(3)), 5);
    }
}
