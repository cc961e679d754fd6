//! Turning a [`PolicySpec`] into a [`Policy`]: defaults, range checks, and errors that name
//! the field path and the reason.

use super::spec::*;
use super::*;
use crate::engine::{EngineKind, Signal, TokenQuantiles};
use crate::time::secs_to_millis;
use std::collections::BTreeSet;
use thiserror::Error;

/// One problem in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path to the field, e.g. `behavior.scaleDown.policies[0].periodSeconds`.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Why a policy was rejected: every problem found, each with its field path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct PolicyError {
    /// The problems, in document order.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "invalid policy ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl PolicyError {
    fn single(path: impl Into<String>, reason: impl Into<String>) -> PolicyError {
        PolicyError {
            errors: vec![FieldError {
                path: path.into(),
                reason: reason.into(),
            }],
        }
    }
}

/// Parses YAML (JSON is YAML) into the document shape, with the path of any type error.
/// A policy document larger than this is not a policy (and would take long to parse).
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Deeper `[`/`{` nesting than this is not a policy: the YAML parser's time grows with the
/// square of the depth (100,000 levels took over a minute).
const MAX_NESTING: usize = 64;

/// Refuses documents no policy needs before the parser spends time on them.
fn check_shape(text: &str) -> Result<(), PolicyError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(PolicyError::single(
            "",
            format!(
                "the document is {} bytes; a policy is at most {MAX_DOCUMENT_BYTES}",
                text.len()
            ),
        ));
    }
    let (mut depth, mut quote, mut comment) = (0usize, None::<char>, false);
    for c in text.chars() {
        match (quote, c) {
            (_, '\n') => (comment, quote) = (false, None),
            _ if comment => {}
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(PolicyError::single(
                        "",
                        format!("brackets nest deeper than {MAX_NESTING} levels"),
                    ));
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn parse_spec(text: &str) -> Result<PolicySpec, PolicyError> {
    parse_document(text)
}

/// Parses any policy document shape (a policy, a `pools` document) with the same limits and
/// the same field paths in its errors.
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, PolicyError> {
    check_shape(text)?;
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        // serde_yaml prefixes nested errors with its own (shorter) path: keep ours only.
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if !prefix.contains(' ') && path.starts_with(prefix) => {
                rest.to_string()
            }
            _ => message,
        };
        PolicyError::single(path, message)
    })
}

/// Collects errors while walking the document.
pub(super) struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    pub(super) fn err(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// A non-negative whole number within `max`.
    pub(super) fn count(&mut self, path: &str, v: i64, min: i64, max: i64) -> u32 {
        if v < min || v > max {
            self.err(path, format!("must be between {min} and {max}, got {v}"));
            return min.max(0) as u32;
        }
        v as u32
    }

    /// A finite positive float.
    pub(super) fn positive(&mut self, path: &str, v: f64) -> f64 {
        if !v.is_finite() || v <= 0.0 {
            self.err(path, format!("must be a positive number, got {v}"));
            return 1.0;
        }
        v
    }

    /// A required field.
    pub(super) fn required<'a, T>(&mut self, path: &str, v: &'a Option<T>) -> Option<&'a T> {
        if v.is_none() {
            self.err(path, "is required");
        }
        v.as_ref()
    }
}

/// Validates a document and fills in defaults.
pub(super) fn validate(spec: &PolicySpec) -> Result<Policy, PolicyError> {
    let mut c = Checker { errors: Vec::new() };

    let max_replicas = match spec.max_replicas {
        Some(v) => c.count("maxReplicas", v, 1, i64::from(i32::MAX)),
        None => {
            c.err("maxReplicas", "is required");
            1
        }
    };
    let min_replicas = match spec.min_replicas {
        Some(v) => c.count("minReplicas", v, 0, i64::from(i32::MAX)),
        None => 1,
    };
    if min_replicas > max_replicas {
        c.err(
            "maxReplicas",
            format!("must be at least minReplicas ({min_replicas}), got {max_replicas}"),
        );
    }
    let initial_replicas = spec
        .initial_replicas
        .map(|v| c.count("initialReplicas", v, 1, i64::from(max_replicas)));
    if min_replicas == 0 && spec.scale_to_zero.is_none() {
        c.err(
            "minReplicas",
            "0 needs a scaleToZero block (idle period and activation threshold); otherwise use at least 1",
        );
    }

    let mut tolerance = match &spec.tolerance {
        None => Tolerance::default(),
        Some(ToleranceSpec::Both(t)) => Tolerance::both(*t),
        Some(ToleranceSpec::PerDirection {
            scale_up,
            scale_down,
        }) => Tolerance {
            scale_up: scale_up.unwrap_or(DEFAULT_TOLERANCE),
            scale_down: scale_down.unwrap_or(DEFAULT_TOLERANCE),
        },
    };

    let mut metrics = Vec::new();
    let mut names = BTreeSet::new();
    for (i, m) in spec.metrics.iter().enumerate() {
        let path = format!("metrics[{i}]");
        if let Some(metric) = metric(&mut c, &path, m) {
            if !names.insert(metric.name.clone()) {
                c.err(
                    &path,
                    format!(
                        "duplicate metric '{}': each metric needs its own name",
                        metric.name
                    ),
                );
            }
            metrics.push(metric);
        }
    }

    for (i, m) in metrics.iter().enumerate() {
        if m.name.starts_with(super::engine::ENGINE_METRIC_PREFIX) {
            c.err(
                format!("metrics[{i}]"),
                format!(
                    "the name '{}' is kept for the engine block's metrics",
                    m.name
                ),
            );
        }
    }
    let token_goals = spec
        .slo
        .as_ref()
        .is_some_and(|s| s.ttft.is_some() || s.itl.is_some());
    let mut engine = spec
        .engine
        .as_ref()
        .map(|e| super::engine::engine(&mut c, e, &mut metrics, token_goals));

    let behavior_spec = spec.behavior.clone().unwrap_or_default();
    let defaults = if spec.slo.is_some() {
        Behavior::slo_default()
    } else {
        Behavior::default()
    };
    let scale_up = rules(
        &mut c,
        "behavior.scaleUp",
        behavior_spec.scale_up.as_ref(),
        &defaults.scale_up,
    );
    let scale_down = rules(
        &mut c,
        "behavior.scaleDown",
        behavior_spec.scale_down.as_ref(),
        &defaults.scale_down,
    );
    if let Some(t) = behavior_spec
        .scale_up
        .as_ref()
        .and_then(|r| r.tolerance.as_ref())
    {
        tolerance.scale_up = t.as_f64();
    }
    if let Some(t) = behavior_spec
        .scale_down
        .as_ref()
        .and_then(|r| r.tolerance.as_ref())
    {
        tolerance.scale_down = t.as_f64();
    }
    if !tolerance.scale_up.is_finite() || tolerance.scale_up < 0.0 {
        c.err(
            "tolerance.scaleUp",
            format!("must be 0 or more, got {}", tolerance.scale_up),
        );
    }
    if !tolerance.scale_down.is_finite() || !(0.0..1.0).contains(&tolerance.scale_down) {
        c.err(
            "tolerance.scaleDown",
            format!(
                "must be at least 0 and below 1, got {}",
                tolerance.scale_down
            ),
        );
    }

    let concurrency = spec.concurrency.as_ref().map(|s| concurrency(&mut c, s));
    let inference_lag = spec.inference_lag.as_ref().map(|s| InferenceLag {
        threshold_per_replica: match s.threshold_per_replica {
            Some(v) => c.positive("inferenceLag.thresholdPerReplica", v),
            None => {
                c.err("inferenceLag.thresholdPerReplica", "is required");
                1.0
            }
        },
        window_ms: secs_to_millis(c.positive(
            "inferenceLag.windowSeconds",
            s.window_seconds.unwrap_or(20.0),
        )),
    });
    let external_count = spec
        .external_count
        .as_ref()
        .map(|s| external_count(&mut c, s));
    let scale_to_zero = spec.scale_to_zero.as_ref().map(|s| {
        let activation = s.activation_threshold.unwrap_or(1.0);
        if !activation.is_finite() || activation < 0.0 {
            c.err(
                "scaleToZero.activationThreshold",
                format!("must be 0 or more, got {activation}"),
            );
        }
        ScaleToZero {
            idle_ms: idle_ms(&mut c, s.idle_seconds.as_ref(), spec.slo.is_some()),
            activation_threshold: activation.max(0.0),
            activation_replicas: c.count(
                "scaleToZero.activationReplicas",
                s.activation_replicas.unwrap_or(1),
                1,
                i64::from(max_replicas),
            ),
        }
    });
    let (slo, token_slo) = match &spec.slo {
        Some(s) => slo(&mut c, s),
        None => (None, None),
    };
    if let Some(t) = &token_slo {
        match engine.as_mut() {
            Some(e) => e.token_quantiles = Some(token_quantiles(&mut c, e.kind, t)),
            None => c.err(
                if t.ttft.is_some() { "slo.ttft" } else { "slo.itl" },
                "needs the engine block (engine.kind: vllm, sglang, tgi or triton): its metrics are what the goal reads",
            ),
        }
    }
    if scale_to_zero.is_some()
        && concurrency.is_none()
        && inference_lag.is_none()
        && external_count.is_none()
        && slo.is_none()
    {
        c.err(
            "scaleToZero",
            "needs a traffic signal to tell idleness: add slo.latency, concurrency, inferenceLag or externalCount",
        );
    }

    // HPA's own default when no metric at all is given: CPU at 80% utilization.
    if metrics.is_empty()
        && spec.metrics.is_empty()
        && concurrency.is_none()
        && inference_lag.is_none()
        && external_count.is_none()
        && slo.is_none()
        && token_slo.is_none()
    {
        metrics.push(Metric {
            name: "cpu".into(),
            source: MetricSource::Resource {
                resource: "cpu".into(),
            },
            target: Target::Utilization(80),
        });
    }

    let formula = spec
        .formula
        .as_ref()
        .and_then(|f| super::formula::formula(&mut c, f, &metrics));
    let schedules =
        super::schedule::schedules(&mut c, &spec.schedules, (min_replicas, max_replicas));

    let stale_after_ms = secs_to_millis(
        c.positive(
            "staleAfterSeconds",
            spec.stale_after_seconds
                .unwrap_or(DEFAULT_STALE_AFTER_SECONDS),
        ),
    );
    let readiness_spec = spec.readiness.clone().unwrap_or_default();
    let readiness = Readiness {
        cpu_initialization_period_ms: i64::from(
            c.count(
                "readiness.cpuInitializationPeriodSeconds",
                readiness_spec
                    .cpu_initialization_period_seconds
                    .unwrap_or(i64::from(DEFAULT_CPU_INITIALIZATION_PERIOD_SECONDS)),
                0,
                86_400,
            ),
        ) * 1000,
        initial_readiness_delay_ms: i64::from(
            c.count(
                "readiness.initialReadinessDelaySeconds",
                readiness_spec
                    .initial_readiness_delay_seconds
                    .unwrap_or(i64::from(DEFAULT_INITIAL_READINESS_DELAY_SECONDS)),
                0,
                86_400,
            ),
        ) * 1000,
    };

    if !c.errors.is_empty() {
        return Err(PolicyError { errors: c.errors });
    }
    Ok(Policy {
        min_replicas,
        max_replicas,
        initial_replicas,
        metrics,
        tolerance,
        behavior: Behavior {
            scale_up,
            scale_down,
        },
        concurrency,
        inference_lag,
        external_count,
        scale_to_zero,
        slo,
        token_slo,
        engine,
        formula,
        schedules,
        stale_after_ms,
        readiness,
        hold: None,
    })
}

fn name_ok(c: &mut Checker, path: &str, name: Option<&String>) -> Option<String> {
    match name {
        Some(n) if !n.trim().is_empty() => Some(n.clone()),
        Some(_) => {
            c.err(path, "must not be empty");
            None
        }
        None => {
            c.err(path, "is required");
            None
        }
    }
}

fn metric(c: &mut Checker, path: &str, m: &MetricSpec) -> Option<Metric> {
    let kind = c.required(&format!("{path}.type"), &m.kind)?.clone();
    // The block that must accompany the type, and the blocks that must not.
    let blocks = [
        ("resource", m.resource.is_some()),
        ("containerResource", m.container_resource.is_some()),
        ("pods", m.pods.is_some()),
        ("object", m.object.is_some()),
        ("external", m.external.is_some()),
    ];
    let expected = match kind.as_str() {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        other => {
            c.err(
                format!("{path}.type"),
                format!("unknown metric type '{other}' (expected Resource, ContainerResource, Pods, Object or External)"),
            );
            return None;
        }
    };
    for (block, present) in blocks {
        if present && block != expected {
            c.err(
                format!("{path}.{block}"),
                format!("must not be set when type is {kind}"),
            );
        }
    }
    let target_of = |c: &mut Checker, tpath: String, t: &Option<TargetSpec>, allowed: &[&str]| {
        let t = c.required(&tpath, t)?;
        target(c, &tpath, t, allowed)
    };
    match kind.as_str() {
        "Resource" | "ContainerResource" => {
            let block_path = format!("{path}.{expected}");
            let r = c.required(
                &block_path,
                if kind == "Resource" {
                    &m.resource
                } else {
                    &m.container_resource
                },
            )?;
            let resource = name_ok(c, &format!("{block_path}.name"), r.name.as_ref());
            let container = if kind == "ContainerResource" {
                name_ok(c, &format!("{block_path}.container"), r.container.as_ref())
            } else {
                if r.container.is_some() {
                    c.err(
                        format!("{block_path}.container"),
                        "is only for type ContainerResource",
                    );
                }
                None
            };
            let target = target_of(
                c,
                format!("{block_path}.target"),
                &r.target,
                &["Utilization", "AverageValue"],
            );
            let resource = resource?;
            let target = target?;
            Some(match container {
                Some(container) => Metric {
                    name: format!("{container}/{resource}"),
                    source: MetricSource::ContainerResource {
                        resource,
                        container,
                    },
                    target,
                },
                None if kind == "ContainerResource" => return None,
                None => Metric {
                    name: resource.clone(),
                    source: MetricSource::Resource { resource },
                    target,
                },
            })
        }
        _ => {
            let block_path = format!("{path}.{expected}");
            let block = match kind.as_str() {
                "Pods" => &m.pods,
                "Object" => &m.object,
                _ => &m.external,
            };
            let b = c.required(&block_path, block)?;
            let ident = c.required(&format!("{block_path}.metric"), &b.metric);
            let name = ident
                .and_then(|i| name_ok(c, &format!("{block_path}.metric.name"), i.name.as_ref()));
            let selector = ident.and_then(|i| i.selector.clone());
            let allowed: &[&str] = match kind.as_str() {
                "Pods" => &["AverageValue"],
                _ => &["Value", "AverageValue"],
            };
            let target = target_of(c, format!("{block_path}.target"), &b.target, allowed);
            let source = match kind.as_str() {
                "Pods" => MetricSource::Pods { selector },
                "Object" => {
                    let obj = c.required(
                        &format!("{block_path}.describedObject"),
                        &b.described_object,
                    )?;
                    if obj.kind.as_deref().unwrap_or("").is_empty() {
                        c.err(format!("{block_path}.describedObject.kind"), "is required");
                    }
                    if obj.name.as_deref().unwrap_or("").is_empty() {
                        c.err(format!("{block_path}.describedObject.name"), "is required");
                    }
                    MetricSource::Object {
                        described_object: obj.clone(),
                        selector,
                    }
                }
                _ => MetricSource::External { selector },
            };
            if kind != "Object" && b.described_object.is_some() {
                c.err(
                    format!("{block_path}.describedObject"),
                    "is only for type Object",
                );
            }
            Some(Metric {
                name: name?,
                source,
                target: target?,
            })
        }
    }
}

pub(super) fn target(
    c: &mut Checker,
    path: &str,
    t: &TargetSpec,
    allowed: &[&str],
) -> Option<Target> {
    let kind = c.required(&format!("{path}.type"), &t.kind)?;
    if !allowed.contains(&kind.as_str()) {
        c.err(
            format!("{path}.type"),
            format!(
                "'{kind}' is not allowed here (allowed: {})",
                allowed.join(", ")
            ),
        );
        return None;
    }
    let positive_quantity = |c: &mut Checker, field: &str, q: &Option<Quantity>| {
        let fpath = format!("{path}.{field}");
        let q = c.required(&fpath, q)?;
        if q.milli() <= 0 {
            c.err(fpath, format!("must be greater than 0, got {q}"));
            return None;
        }
        Some(q.clone())
    };
    let stray = |c: &mut Checker, field: &str, set: bool| {
        if set {
            c.err(
                format!("{path}.{field}"),
                format!("must not be set when type is {kind}"),
            );
        }
    };
    match kind.as_str() {
        "Utilization" => {
            stray(c, "averageValue", t.average_value.is_some());
            stray(c, "value", t.value.is_some());
            let fpath = format!("{path}.averageUtilization");
            let u = *c.required(&fpath, &t.average_utilization)?;
            if u <= 0 || u > i64::from(i32::MAX) {
                c.err(fpath, format!("must be a positive percentage, got {u}"));
                return None;
            }
            Some(Target::Utilization(u as i32))
        }
        "AverageValue" => {
            stray(c, "averageUtilization", t.average_utilization.is_some());
            stray(c, "value", t.value.is_some());
            positive_quantity(c, "averageValue", &t.average_value).map(Target::AverageValue)
        }
        _ => {
            stray(c, "averageUtilization", t.average_utilization.is_some());
            stray(c, "averageValue", t.average_value.is_some());
            positive_quantity(c, "value", &t.value).map(Target::Value)
        }
    }
}

fn rules(
    c: &mut Checker,
    path: &str,
    spec: Option<&ScalingRulesSpec>,
    default: &ScalingRules,
) -> ScalingRules {
    let Some(spec) = spec else {
        return default.clone();
    };
    let window = match spec.stabilization_window_seconds {
        Some(w) => c.count(&format!("{path}.stabilizationWindowSeconds"), w, 0, 3600),
        None => default.stabilization_window_seconds,
    };
    let select_policy = match spec.select_policy.as_deref() {
        None | Some("Max") => SelectPolicy::Max,
        Some("Min") => SelectPolicy::Min,
        Some("Disabled") => SelectPolicy::Disabled,
        Some(other) => {
            c.err(
                format!("{path}.selectPolicy"),
                format!("must be Max, Min or Disabled, got '{other}'"),
            );
            SelectPolicy::Max
        }
    };
    let policies = match &spec.policies {
        None => default.policies.clone(),
        Some(list) if list.is_empty() => {
            c.err(
                format!("{path}.policies"),
                "must list at least one policy (or be left out for the defaults)",
            );
            Vec::new()
        }
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let ppath = format!("{path}.policies[{i}]");
                let kind = match p.kind.as_deref() {
                    Some("Pods") => ScalingPolicyKind::Pods,
                    Some("Percent") => ScalingPolicyKind::Percent,
                    Some(other) => {
                        c.err(
                            format!("{ppath}.type"),
                            format!("must be Pods or Percent, got '{other}'"),
                        );
                        return None;
                    }
                    None => {
                        c.err(format!("{ppath}.type"), "is required");
                        return None;
                    }
                };
                let value = match p.value {
                    Some(v) => c.count(&format!("{ppath}.value"), v, 1, i64::from(i32::MAX)),
                    None => {
                        c.err(format!("{ppath}.value"), "is required");
                        return None;
                    }
                };
                let period_seconds = match p.period_seconds {
                    Some(v) => c.count(&format!("{ppath}.periodSeconds"), v, 1, 1800),
                    None => {
                        c.err(format!("{ppath}.periodSeconds"), "is required");
                        return None;
                    }
                };
                Some(ScalingPolicy {
                    kind,
                    value,
                    period_seconds,
                })
            })
            .collect(),
    };
    ScalingRules {
        stabilization_window_seconds: window,
        select_policy,
        policies,
    }
}

fn concurrency(c: &mut Checker, s: &ConcurrencySpec) -> Concurrency {
    let metric = match s.metric.as_deref() {
        None | Some("concurrency") => ConcurrencyMetric::Concurrency,
        Some("rps") => ConcurrencyMetric::Rps,
        Some(other) => {
            c.err(
                "concurrency.metric",
                format!("must be concurrency or rps, got '{other}'"),
            );
            ConcurrencyMetric::Concurrency
        }
    };
    let target_per_replica = match s.target_per_replica {
        Some(v) => c.positive("concurrency.targetPerReplica", v),
        None => {
            c.err("concurrency.targetPerReplica", "is required");
            1.0
        }
    };
    let stable = c.positive(
        "concurrency.stableWindowSeconds",
        s.stable_window_seconds.unwrap_or(60.0),
    );
    let panic = c.positive(
        "concurrency.panicWindowSeconds",
        s.panic_window_seconds.unwrap_or(6.0),
    );
    if panic > stable {
        c.err(
            "concurrency.panicWindowSeconds",
            format!("must not exceed stableWindowSeconds ({stable}), got {panic}"),
        );
    }
    let threshold = s.panic_threshold_percent.unwrap_or(200.0);
    if !threshold.is_finite() || threshold <= 100.0 {
        c.err(
            "concurrency.panicThresholdPercent",
            format!("must be above 100 (percent of ready capacity), got {threshold}"),
        );
    }
    Concurrency {
        metric,
        target_per_replica,
        stable_window_ms: secs_to_millis(stable),
        panic_window_ms: secs_to_millis(panic),
        panic_threshold: share_of_percent(threshold),
    }
}

/// The `slo` block: a request latency goal, LLM token goals, or both.
fn slo(c: &mut Checker, s: &SloSpec) -> (Option<Slo>, Option<TokenSlo>) {
    let cold_start_seconds = s.cold_start_seconds.map(|v| {
        if !(0.0..=3600.0).contains(&v) {
            c.err(
                "slo.coldStartSeconds",
                format!("must be between 0 and 3600, got {v}"),
            );
        }
        v.clamp(0.0, 3600.0)
    });
    let season_seconds = s.season_seconds.unwrap_or(DEFAULT_SLO_SEASON_SECONDS);
    if !(season_seconds == 0.0 || (60.0..=2_678_400.0).contains(&season_seconds)) {
        c.err(
            "slo.seasonSeconds",
            format!(
                "must be 0 (no season) or between 60 and 2678400 (31 days), got {season_seconds}"
            ),
        );
    }
    let season_seconds = season_seconds.clamp(0.0, 2_678_400.0);
    let ttft = s.ttft.as_ref().map(|g| token_goal(c, "slo.ttft", g));
    let itl = s.itl.as_ref().map(|g| token_goal(c, "slo.itl", g));
    let tokens = (ttft.is_some() || itl.is_some()).then_some(TokenSlo {
        ttft,
        itl,
        cold_start_seconds,
        season_seconds,
    });
    if tokens.is_some() && s.latency.is_none() {
        for (set, field) in [
            (s.attainment.is_some(), "slo.attainment"),
            (s.percentile.is_some(), "slo.percentile"),
            (s.slots_per_replica.is_some(), "slo.slotsPerReplica"),
        ] {
            if set {
                c.err(
                    field,
                    "belongs to a request latency goal (slo.latency); ttft and itl carry their own attainment",
                );
            }
        }
        return (None, tokens);
    }
    let latency_seconds = match &s.latency {
        None => {
            c.err(
                "slo.latency",
                "is required (e.g. 500ms), or ttft / itl for LLM serving",
            );
            1.0
        }
        Some(d) => latency(c, "slo.latency", d),
    };
    let attainment_percent = attainment(c, "slo", &s.attainment, &s.percentile)
        .unwrap_or(DEFAULT_SLO_ATTAINMENT_PERCENT);
    let slots_per_replica = match s.slots_per_replica {
        Some(v) => c.count("slo.slotsPerReplica", v, 1, 100_000),
        None => 1,
    };
    let slo = Slo {
        latency_seconds,
        attainment: share_of_percent(attainment_percent),
        cold_start_seconds,
        slots_per_replica,
        season_seconds,
        tuning: super::Tuning::default(),
    };
    (Some(slo), tokens)
}

/// The `slo` block as a document writes it.
fn slo_spec(slo: Option<&Slo>, tokens: Option<&TokenSlo>) -> Option<SloSpec> {
    let goal = |g: &LatencyGoal| TokenGoalSpec {
        latency: Some(DurationSpec::Text(crate::time::fmt_seconds(g.seconds))),
        attainment: Some(PercentSpec::Text(crate::time::fmt_percent(g.attainment))),
        percentile: None,
    };
    let mut spec = match slo {
        Some(s) => SloSpec {
            latency: Some(DurationSpec::Text(crate::time::fmt_seconds(
                s.latency_seconds,
            ))),
            attainment: Some(PercentSpec::Text(crate::time::fmt_percent(s.attainment))),
            percentile: None,
            cold_start_seconds: s.cold_start_seconds,
            slots_per_replica: Some(i64::from(s.slots_per_replica)),
            season_seconds: Some(s.season_seconds),
            ttft: None,
            itl: None,
        },
        None => SloSpec {
            cold_start_seconds: tokens?.cold_start_seconds,
            season_seconds: tokens.map(|t| t.season_seconds),
            ..SloSpec::default()
        },
    };
    if let Some(t) = tokens {
        spec.ttft = t.ttft.as_ref().map(goal);
        spec.itl = t.itl.as_ref().map(goal);
    }
    Some(spec)
}

/// A latency above 0 and at most an hour, in seconds (1 after an error).
fn latency(c: &mut Checker, path: &str, d: &DurationSpec) -> f64 {
    match duration_seconds(d) {
        Ok(v) if v > 0.0 && v <= 3600.0 => v,
        Ok(v) => {
            c.err(path, format!("must be above 0 and at most 1h, got {v}s"));
            1.0
        }
        Err(e) => {
            c.err(path, e);
            1.0
        }
    }
}

/// `{prefix}.attainment` or `{prefix}.percentile` as a percentage; `None` when neither is given.
fn attainment(
    c: &mut Checker,
    prefix: &str,
    attainment: &Option<PercentSpec>,
    percentile_text: &Option<String>,
) -> Option<f64> {
    match (attainment, percentile_text) {
        (Some(a), Some(p)) => {
            c.err(
                format!("{prefix}.percentile"),
                "give attainment or percentile, not both",
            );
            // Each is still checked, so that one pass names every problem.
            percent(c, &format!("{prefix}.attainment"), a);
            percentile(c, &format!("{prefix}.percentile"), p);
            None
        }
        (Some(a), None) => Some(percent(c, &format!("{prefix}.attainment"), a)),
        (None, Some(p)) => Some(percentile(c, &format!("{prefix}.percentile"), p)),
        (None, None) => None,
    }
}

/// A TTFT or ITL goal.
fn token_goal(c: &mut Checker, path: &str, g: &TokenGoalSpec) -> LatencyGoal {
    let seconds = match &g.latency {
        None => {
            c.err(format!("{path}.latency"), "is required (e.g. 2s)");
            1.0
        }
        Some(d) => latency(c, &format!("{path}.latency"), d),
    };
    let percent = attainment(c, path, &g.attainment, &g.percentile)
        .unwrap_or(DEFAULT_TOKEN_ATTAINMENT_PERCENT);
    LatencyGoal {
        seconds,
        attainment: share_of_percent(percent),
    }
}

/// The quantiles the token goals read, each checked against what the engine exports.
fn token_quantiles(c: &mut Checker, kind: EngineKind, t: &TokenSlo) -> TokenQuantiles {
    for (goal, field, signal, what) in [
        (
            t.ttft.is_some(),
            "slo.ttft",
            Signal::Ttft,
            "time to first token",
        ),
        (
            t.itl.is_some(),
            "slo.itl",
            Signal::Itl,
            "time between tokens",
        ),
        (
            true,
            "engine.kind",
            Signal::Tokens,
            "prompt and generated tokens",
        ),
    ] {
        if goal && kind.reading(signal).is_none() {
            c.err(field, format!("{kind} exports no metric for {what}"));
        }
    }
    TokenQuantiles {
        ttft: t.ttft.map(|g| g.attainment),
        itl: t.itl.map(|g| g.attainment),
    }
}

pub(super) fn duration_seconds(d: &DurationSpec) -> Result<f64, String> {
    match d {
        DurationSpec::Seconds(v) if v.is_finite() => Ok(*v),
        DurationSpec::Seconds(v) => Err(format!("must be a finite duration, got {v}")),
        DurationSpec::Text(t) => crate::time::parse_duration(t),
    }
}

/// A percentage strictly between 0 and 100.
fn percent(c: &mut Checker, path: &str, p: &PercentSpec) -> f64 {
    let value = match p {
        PercentSpec::Number(v) => check_percent(*v),
        PercentSpec::Text(t) => parse_percent(t),
    };
    value.unwrap_or_else(|e| {
        c.err(path, e);
        DEFAULT_SLO_ATTAINMENT_PERCENT
    })
}

/// A percentile written `p99.9` (or `99.9`), as the percentage it names.
pub(super) fn percentile(c: &mut Checker, path: &str, p: &str) -> f64 {
    let text = p.trim().trim_start_matches(['p', 'P']);
    percent(c, path, &PercentSpec::Text(text.to_string()))
}

/// Parses a percentage strictly between 0 and 100, written `99.9%` or `99.9`; the error says
/// why (for the policy's fields and `ebb simulate --attainment` alike).
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let v = text
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("must be a percentage like 99.9%, got '{text}'"))?;
    check_percent(v)
}

/// The share a percentage names, with its decimal point moved in the text rather than
/// divided in binary: `99.9 / 100.0` is 0.9990000000000001, one unit in the last place above
/// the 0.999 a user means (and a target that high is never quite met by a share that is).
pub fn share_of_percent(percent: f64) -> f64 {
    format!("{percent}e-2").parse().unwrap_or(percent / 100.0)
}

fn check_percent(v: f64) -> Result<f64, String> {
    if v > 0.0 && v < 100.0 {
        Ok(v)
    } else {
        Err(format!("must be above 0% and below 100%, got {v}%"))
    }
}

fn external_count(c: &mut Checker, s: &ExternalCountSpec) -> ExternalCount {
    let mode = match s.mode.as_deref() {
        None | Some("desiredReplicas") => {
            if s.items_per_replica_per_second.is_some() {
                c.err(
                    "externalCount.itemsPerReplicaPerSecond",
                    "is only for mode backlog",
                );
            }
            ExternalCountMode::DesiredReplicas
        }
        Some("backlog") => ExternalCountMode::Backlog {
            items_per_replica_per_second: match s.items_per_replica_per_second {
                Some(v) => c.positive("externalCount.itemsPerReplicaPerSecond", v),
                None => {
                    c.err(
                        "externalCount.itemsPerReplicaPerSecond",
                        "is required in mode backlog",
                    );
                    1.0
                }
            },
            drain_seconds: c.positive(
                "externalCount.drainSeconds",
                s.drain_seconds.unwrap_or(60.0),
            ),
        },
        Some(other) => {
            c.err(
                "externalCount.mode",
                format!("must be desiredReplicas or backlog, got '{other}'"),
            );
            ExternalCountMode::DesiredReplicas
        }
    };
    ExternalCount { mode }
}

/// The word `scaleToZero.idleSeconds` takes for "not for idling alone".
const NEVER: &str = "never";

/// `scaleToZero.idleSeconds`: seconds (default 300), or `never`, which only an SLO policy
/// takes (without one nothing else would ever take the target to zero).
fn idle_ms(c: &mut Checker, idle: Option<&IdleSpec>, has_slo: bool) -> Option<i64> {
    match idle {
        None => Some(secs_to_millis(300.0)),
        Some(IdleSpec::Seconds(v)) => {
            Some(secs_to_millis(c.positive("scaleToZero.idleSeconds", *v)))
        }
        Some(IdleSpec::Word(w)) if w == NEVER && has_slo => None,
        Some(IdleSpec::Word(w)) if w == NEVER => {
            c.err(
                "scaleToZero.idleSeconds",
                "`never` needs an slo block: only the SLO goes to zero other than after an idle time",
            );
            None
        }
        Some(IdleSpec::Word(w)) => {
            c.err(
                "scaleToZero.idleSeconds",
                format!("must be a positive number of seconds or `never`, got '{w}'"),
            );
            None
        }
    }
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn rules_spec(r: &ScalingRules, tolerance: f64) -> ScalingRulesSpec {
    ScalingRulesSpec {
        stabilization_window_seconds: Some(i64::from(r.stabilization_window_seconds)),
        select_policy: Some(
            match r.select_policy {
                SelectPolicy::Max => "Max",
                SelectPolicy::Min => "Min",
                SelectPolicy::Disabled => "Disabled",
            }
            .into(),
        ),
        policies: Some(
            r.policies
                .iter()
                .map(|p| ScalingPolicySpec {
                    kind: Some(
                        match p.kind {
                            ScalingPolicyKind::Pods => "Pods",
                            ScalingPolicyKind::Percent => "Percent",
                        }
                        .into(),
                    ),
                    value: Some(i64::from(p.value)),
                    period_seconds: Some(i64::from(p.period_seconds)),
                })
                .collect(),
        ),
        tolerance: Some(Quantity::from_milli((tolerance * 1000.0).round() as i64)),
    }
}

fn target_spec(t: &Target) -> TargetSpec {
    match t {
        Target::Utilization(u) => TargetSpec {
            kind: Some("Utilization".into()),
            average_utilization: Some(i64::from(*u)),
            ..Default::default()
        },
        Target::AverageValue(q) => TargetSpec {
            kind: Some("AverageValue".into()),
            average_value: Some(q.clone()),
            ..Default::default()
        },
        Target::Value(q) => TargetSpec {
            kind: Some("Value".into()),
            value: Some(q.clone()),
            ..Default::default()
        },
    }
}

fn metric_spec(m: &Metric) -> MetricSpec {
    let target = Some(target_spec(&m.target));
    let named =
        |selector: &Option<LabelSelectorSpec>, obj: Option<ObjectRefSpec>| NamedMetricSpec {
            metric: Some(MetricIdentifierSpec {
                name: Some(m.name.clone()),
                selector: selector.clone(),
            }),
            described_object: obj,
            target: target.clone(),
        };
    let mut spec = MetricSpec {
        kind: Some(m.source.type_name().into()),
        ..Default::default()
    };
    match &m.source {
        MetricSource::Resource { resource } => {
            spec.resource = Some(ResourceMetricSpec {
                name: Some(resource.clone()),
                container: None,
                target,
            })
        }
        MetricSource::ContainerResource {
            resource,
            container,
        } => {
            spec.container_resource = Some(ResourceMetricSpec {
                name: Some(resource.clone()),
                container: Some(container.clone()),
                target,
            })
        }
        MetricSource::Pods { selector } => spec.pods = Some(named(selector, None)),
        MetricSource::Object {
            described_object,
            selector,
        } => spec.object = Some(named(selector, Some(described_object.clone()))),
        MetricSource::External { selector } => spec.external = Some(named(selector, None)),
    }
    spec
}

/// Writes a policy back out as a document with every default filled in.
pub(super) fn to_spec(p: &Policy) -> PolicySpec {
    PolicySpec {
        min_replicas: Some(i64::from(p.min_replicas)),
        max_replicas: Some(i64::from(p.max_replicas)),
        initial_replicas: p.initial_replicas.map(i64::from),
        tolerance: None,
        metrics: p
            .metrics
            .iter()
            .filter(|m| !m.name.starts_with(super::engine::ENGINE_METRIC_PREFIX))
            .map(metric_spec)
            .collect(),
        engine: p.engine.as_ref().map(super::engine::engine_spec),
        behavior: Some(BehaviorSpec {
            scale_up: Some(rules_spec(&p.behavior.scale_up, p.tolerance.scale_up)),
            scale_down: Some(rules_spec(&p.behavior.scale_down, p.tolerance.scale_down)),
        }),
        concurrency: p.concurrency.as_ref().map(|c| ConcurrencySpec {
            metric: Some(c.metric.as_str().into()),
            target_per_replica: Some(c.target_per_replica),
            stable_window_seconds: Some(secs(c.stable_window_ms)),
            panic_window_seconds: Some(secs(c.panic_window_ms)),
            panic_threshold_percent: Some(c.panic_threshold * 100.0),
        }),
        inference_lag: p.inference_lag.as_ref().map(|l| InferenceLagSpec {
            threshold_per_replica: Some(l.threshold_per_replica),
            window_seconds: Some(secs(l.window_ms)),
        }),
        external_count: p.external_count.as_ref().map(|e| match e.mode {
            ExternalCountMode::DesiredReplicas => ExternalCountSpec {
                mode: Some("desiredReplicas".into()),
                ..Default::default()
            },
            ExternalCountMode::Backlog {
                items_per_replica_per_second,
                drain_seconds,
            } => ExternalCountSpec {
                mode: Some("backlog".into()),
                items_per_replica_per_second: Some(items_per_replica_per_second),
                drain_seconds: Some(drain_seconds),
            },
        }),
        scale_to_zero: p.scale_to_zero.as_ref().map(|z| ScaleToZeroSpec {
            idle_seconds: Some(z.idle_ms.map_or(IdleSpec::Word(NEVER.into()), |ms| {
                IdleSpec::Seconds(secs(ms))
            })),
            activation_threshold: Some(z.activation_threshold),
            activation_replicas: Some(i64::from(z.activation_replicas)),
        }),
        slo: slo_spec(p.slo.as_ref(), p.token_slo.as_ref()),
        formula: p.formula.as_ref().map(|f| FormulaSpec {
            name: Some(f.formula.name.clone()),
            expression: Some(f.formula.expression.clone()),
            target: Some(target_spec(&f.target)),
        }),
        schedules: p.schedules.iter().map(|s| s.spec.clone()).collect(),
        stale_after_seconds: Some(secs(p.stale_after_ms)),
        readiness: Some(ReadinessSpec {
            cpu_initialization_period_seconds: Some(
                p.readiness.cpu_initialization_period_ms / 1000,
            ),
            initial_readiness_delay_seconds: Some(p.readiness.initial_readiness_delay_ms / 1000),
        }),
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;

    #[test]
    fn absurd_documents_are_refused_before_parsing() {
        let deep = "[".repeat(100_000);
        let started = std::time::Instant::now();
        let e = parse_spec(&deep).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(e.to_string().contains("nest deeper than 64"), "{e}");
        let big = format!("minReplicas: 1\n#{}\n", "x".repeat(2 << 20));
        assert!(parse_spec(&big)
            .unwrap_err()
            .to_string()
            .contains("at most"));
        // Brackets in strings and comments do not count.
        let ok = format!(
            "maxReplicas: 2 # {}\nconcurrency: {{targetPerReplica: 1}}\n",
            "[".repeat(100)
        );
        assert!(parse_spec(&ok).is_ok());
    }
}
