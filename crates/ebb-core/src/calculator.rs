//! HPA's replica calculator, exact to Kubernetes' arithmetic.
//!
//! Follows `pkg/controller/podautoscaler/replica_calculator.go`: integer milli-units,
//! truncating integer division where Kubernetes truncates, the grouping of pods into
//! ready/unready/missing/ignored, the conservative treatment of missing and unready pods, and
//! per-direction tolerance. Inputs are already sanitized (see [`crate::sanitize`]).

use crate::observation::{Pod, PodPhase};
pub use crate::pod_samples::{PodMetric, PodSamples};
use crate::policy::{MetricSource, Readiness, Target, Tolerance};
use crate::time::Time;
use std::collections::BTreeMap;
use thiserror::Error;

/// Usable samples of one metric, in milli-units, keyed by pod names borrowed from the
/// observation (no copies on the hot path).
#[derive(Debug, Clone, PartialEq)]
pub enum MetricInput<'a> {
    /// Per-pod samples by pod name.
    PerPod(PodSamples<'a>),
    /// An object's value.
    Object(i64),
    /// External series values.
    External(Vec<i64>),
}

/// What the calculator needs besides the samples.
#[derive(Debug, Clone, Copy)]
pub struct CalcContext<'a> {
    /// The target's current replicas.
    pub current_replicas: u32,
    /// The target's pods.
    pub pods: &'a [Pod],
    /// Now.
    pub now: Time,
    /// Tolerance.
    pub tolerance: Tolerance,
    /// CPU readiness settings.
    pub readiness: Readiness,
}

/// A metric's proposal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricProposal {
    /// Proposed replicas.
    pub replicas: u32,
    /// Current value: utilization percent for Utilization targets, otherwise milli-units
    /// (per pod for AverageValue, total for Value), as HPA reports it in status.
    pub current: i64,
    /// Whether the usage ratio was within tolerance (the proposal is then the current count).
    pub within_tolerance: bool,
    /// The usage ratio that decided it.
    pub usage_ratio: f64,
}

/// Why a metric could not propose anything (HPA's calculation errors).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CalcError {
    /// The target has no pods.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// No usable sample of a ready pod.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoReadyPodMetrics,
    /// A pod has no request for the resource, so utilization is undefined.
    #[error("missing request for {resource} in pod {pod}")]
    MissingRequest {
        /// Pod name.
        pod: String,
        /// Resource.
        resource: String,
    },
    /// Requests summed to zero.
    #[error("no metrics returned matched known pods")]
    NoMatchingRequests,
    /// The samples do not have the shape the metric type needs.
    #[error("expected {expected} samples for a {metric_type} metric")]
    WrongShape {
        /// What was expected.
        expected: &'static str,
        /// The metric type.
        metric_type: &'static str,
    },
}

const CPU: &str = "cpu";

/// Computes one metric's proposal with HPA's semantics.
pub fn replicas_for_metric<'a>(
    source: &MetricSource,
    metric_name: &str,
    target: &Target,
    input: MetricInput<'a>,
    ctx: &CalcContext<'a>,
) -> Result<MetricProposal, CalcError> {
    let shape = |expected| CalcError::WrongShape {
        expected,
        metric_type: source.type_name(),
    };
    match (source, target) {
        (
            MetricSource::Resource { resource } | MetricSource::ContainerResource { resource, .. },
            Target::Utilization(pct),
        ) => {
            let MetricInput::PerPod(samples) = input else {
                return Err(shape("per-pod"));
            };
            resource_utilization_replicas(samples, resource, metric_name, *pct, ctx)
        }
        (
            MetricSource::Resource { resource } | MetricSource::ContainerResource { resource, .. },
            Target::AverageValue(q),
        ) => {
            let MetricInput::PerPod(samples) = input else {
                return Err(shape("per-pod"));
            };
            plain_metric_replicas(samples, q.milli(), resource, ctx)
        }
        (MetricSource::Pods { .. }, target) => {
            let MetricInput::PerPod(samples) = input else {
                return Err(shape("per-pod"));
            };
            let milli = match target {
                Target::AverageValue(q) | Target::Value(q) => q.milli(),
                Target::Utilization(p) => i64::from(*p) * 1000,
            };
            plain_metric_replicas(samples, milli, "", ctx)
        }
        (MetricSource::Object { .. }, Target::AverageValue(q)) => {
            let MetricInput::Object(v) = input else {
                return Err(shape("object"));
            };
            Ok(per_pod_total_replicas(v, q.milli(), ctx))
        }
        (MetricSource::External { .. }, Target::AverageValue(q)) => {
            let MetricInput::External(vs) = input else {
                return Err(shape("external"));
            };
            Ok(per_pod_total_replicas(vs.iter().sum(), q.milli(), ctx))
        }
        (MetricSource::Object { .. }, target) => {
            let MetricInput::Object(v) = input else {
                return Err(shape("object"));
            };
            usage_ratio_replicas(v, target_milli(target), ctx)
        }
        (MetricSource::External { .. }, target) => {
            let MetricInput::External(vs) = input else {
                return Err(shape("external"));
            };
            usage_ratio_replicas(vs.iter().sum(), target_milli(target), ctx)
        }
        (_, _) => Err(shape("matching")),
    }
}

fn target_milli(t: &Target) -> i64 {
    match t {
        Target::AverageValue(q) | Target::Value(q) => q.milli(),
        Target::Utilization(p) => i64::from(*p) * 1000,
    }
}

/// `int32(math.Ceil(x))`, saturating instead of wrapping.
fn ceil_replicas(x: f64) -> u32 {
    let c = x.ceil();
    if c.is_nan() || c <= 0.0 {
        0
    } else if c >= f64::from(i32::MAX) {
        i32::MAX as u32
    } else {
        c as u32
    }
}

/// How HPA groups pods before computing a ratio (`groupPods`).
struct PodGroups<'a> {
    ready_count: usize,
    unready: Vec<&'a str>,
    missing: Vec<&'a str>,
    ignored: Vec<&'a str>,
}

fn group_pods<'a>(
    pods: &'a [Pod],
    samples: &PodSamples<'a>,
    resource: &str,
    now: Time,
    readiness: Readiness,
) -> PodGroups<'a> {
    let mut g = PodGroups {
        ready_count: 0,
        unready: Vec::new(),
        missing: Vec::new(),
        ignored: Vec::new(),
    };
    let mut hint = 0;
    for pod in pods {
        if pod.deleting || pod.phase == PodPhase::Failed {
            g.ignored.push(&pod.name);
            continue;
        }
        if pod.phase == PodPhase::Pending {
            g.unready.push(&pod.name);
            continue;
        }
        let Some((at, sample)) = samples.get_near(&pod.name, hint) else {
            g.missing.push(&pod.name);
            continue;
        };
        hint = at + 1;
        if resource == CPU {
            let unready = match (pod.started_at, pod.ready_changed_at) {
                (Some(started), Some(changed)) => {
                    if started.plus_millis(readiness.cpu_initialization_period_ms) > now {
                        // Within the initialization period: ignore the sample if the pod is
                        // unready or the sample's window began before it became ready.
                        !pod.ready || sample.at < changed.plus_millis(sample.window_ms)
                    } else {
                        // Afterwards: ignore it only if the pod has never been ready.
                        !pod.ready
                            && started.plus_millis(readiness.initial_readiness_delay_ms) > changed
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.push(&pod.name);
                continue;
            }
        }
        g.ready_count += 1;
    }
    g
}

fn remove_pods(samples: &mut PodSamples<'_>, pods: &[&str]) {
    for p in pods {
        samples.remove(p);
    }
}

fn zero_metric() -> PodMetric {
    PodMetric {
        milli: 0,
        at: Time::ZERO,
        window_ms: 0,
    }
}

/// `GetResourceUtilizationRatio`: ratio, utilization percent (truncated), raw average.
fn utilization_ratio(
    samples: &PodSamples<'_>,
    requests: &BTreeMap<&str, i64>,
    target_pct: i32,
) -> Result<(f64, i64), CalcError> {
    let mut metrics_total: i128 = 0;
    let mut requests_total: i128 = 0;
    for (pod, m) in samples.iter() {
        let Some(req) = requests.get(pod) else {
            continue;
        };
        metrics_total += i128::from(m.milli);
        requests_total += i128::from(*req);
    }
    if requests_total == 0 {
        return Err(CalcError::NoMatchingRequests);
    }
    let utilization = (metrics_total * 100 / requests_total) as i64;
    let utilization = utilization.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    Ok((utilization as f64 / f64::from(target_pct), utilization))
}

fn resource_utilization_replicas<'a>(
    mut metrics: PodSamples<'a>,
    resource: &str,
    metric_name: &str,
    target_pct: i32,
    ctx: &CalcContext<'a>,
) -> Result<MetricProposal, CalcError> {
    if ctx.pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let g = group_pods(ctx.pods, &metrics, resource, ctx.now, ctx.readiness);
    remove_pods(&mut metrics, &g.ignored);
    remove_pods(&mut metrics, &g.unready);
    if metrics.is_empty() {
        return Err(CalcError::NoReadyPodMetrics);
    }
    let mut requests = BTreeMap::new();
    for pod in ctx.pods {
        match pod.requests.get(metric_name) {
            Some(r) => {
                requests.insert(pod.name.as_str(), *r);
            }
            None => {
                return Err(CalcError::MissingRequest {
                    pod: pod.name.clone(),
                    resource: metric_name.to_string(),
                })
            }
        }
    }
    let (usage_ratio, utilization) = utilization_ratio(&metrics, &requests, target_pct)?;
    let current = ctx.current_replicas;
    let hold = |within| MetricProposal {
        replicas: current,
        current: utilization,
        within_tolerance: within,
        usage_ratio,
    };

    let scale_up_with_unready = !g.unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if ctx.tolerance.is_within(usage_ratio) {
            return Ok(hold(true));
        }
        return Ok(MetricProposal {
            replicas: ceil_replicas(usage_ratio * g.ready_count as f64),
            current: utilization,
            within_tolerance: false,
            usage_ratio,
        });
    }

    if !g.missing.is_empty() {
        if usage_ratio < 1.0 {
            // On a scale-down, missing pods count as using 100% of their request (or the
            // target, for targets above 100%).
            let fallback = i64::from(target_pct.max(100));
            for pod in &g.missing {
                let req = requests.get(pod).copied().unwrap_or(0);
                metrics.insert(
                    pod,
                    PodMetric {
                        milli: req.saturating_mul(fallback) / 100,
                        ..zero_metric()
                    },
                );
            }
        } else if usage_ratio > 1.0 {
            // On a scale-up, missing pods count as using nothing.
            for pod in &g.missing {
                metrics.insert(pod, zero_metric());
            }
        }
    }
    if scale_up_with_unready {
        for pod in &g.unready {
            metrics.insert(pod, zero_metric());
        }
    }

    let (new_ratio, _) = utilization_ratio(&metrics, &requests, target_pct)?;
    if ctx.tolerance.is_within(new_ratio) {
        return Ok(hold(true));
    }
    if (usage_ratio < 1.0 && new_ratio > 1.0) || (usage_ratio > 1.0 && new_ratio < 1.0) {
        return Ok(hold(false));
    }
    let new_replicas = ceil_replicas(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current) || (new_ratio > 1.0 && new_replicas < current) {
        return Ok(hold(false));
    }
    Ok(MetricProposal {
        replicas: new_replicas,
        current: utilization,
        within_tolerance: false,
        usage_ratio: new_ratio,
    })
}

/// `GetMetricUsageRatio`: ratio and the truncated average.
fn usage_ratio_of(samples: &PodSamples<'_>, target_milli: i64) -> (f64, i64) {
    let total: i128 = samples.values().map(|m| i128::from(m.milli)).sum();
    let avg = (total / samples.len().max(1) as i128) as i64;
    (avg as f64 / target_milli as f64, avg)
}

fn plain_metric_replicas<'a>(
    mut metrics: PodSamples<'a>,
    target_milli: i64,
    resource: &str,
    ctx: &CalcContext<'a>,
) -> Result<MetricProposal, CalcError> {
    if ctx.pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let g = group_pods(ctx.pods, &metrics, resource, ctx.now, ctx.readiness);
    remove_pods(&mut metrics, &g.ignored);
    remove_pods(&mut metrics, &g.unready);
    if metrics.is_empty() {
        return Err(CalcError::NoReadyPodMetrics);
    }
    let (usage_ratio, usage) = usage_ratio_of(&metrics, target_milli);
    let current = ctx.current_replicas;
    let hold = |within| MetricProposal {
        replicas: current,
        current: usage,
        within_tolerance: within,
        usage_ratio,
    };

    let scale_up_with_unready = !g.unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if ctx.tolerance.is_within(usage_ratio) {
            return Ok(hold(true));
        }
        return Ok(MetricProposal {
            replicas: ceil_replicas(usage_ratio * g.ready_count as f64),
            current: usage,
            within_tolerance: false,
            usage_ratio,
        });
    }

    // On a scale-down missing pods count as exactly at target, on a scale-up as zero; at a
    // ratio of exactly 1.0 they are left out (Kubernetes' "missing metrics, no change" rule).
    let fill = if usage_ratio < 1.0 {
        Some(target_milli)
    } else if usage_ratio > 1.0 {
        Some(0)
    } else {
        None
    };
    if let Some(fill) = fill {
        for pod in &g.missing {
            metrics.insert(
                pod,
                PodMetric {
                    milli: fill,
                    ..zero_metric()
                },
            );
        }
    }
    if scale_up_with_unready {
        for pod in &g.unready {
            metrics.insert(pod, zero_metric());
        }
    }

    let (new_ratio, _) = usage_ratio_of(&metrics, target_milli);
    if ctx.tolerance.is_within(new_ratio) {
        return Ok(hold(true));
    }
    if (usage_ratio < 1.0 && new_ratio > 1.0) || (usage_ratio > 1.0 && new_ratio < 1.0) {
        return Ok(hold(false));
    }
    let new_replicas = ceil_replicas(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current) || (new_ratio > 1.0 && new_replicas < current) {
        return Ok(hold(false));
    }
    Ok(MetricProposal {
        replicas: new_replicas,
        current: usage,
        within_tolerance: false,
        usage_ratio: new_ratio,
    })
}

/// `getUsageRatioReplicaCount`, for Object and External metrics with a Value target.
fn usage_ratio_replicas(
    usage: i64,
    target_milli: i64,
    ctx: &CalcContext<'_>,
) -> Result<MetricProposal, CalcError> {
    let usage_ratio = usage as f64 / target_milli as f64;
    if ctx.current_replicas == 0 {
        // Scale to zero or n pods depending on the ratio alone.
        return Ok(MetricProposal {
            replicas: ceil_replicas(usage_ratio),
            current: usage,
            within_tolerance: false,
            usage_ratio,
        });
    }
    if ctx.tolerance.is_within(usage_ratio) {
        return Ok(MetricProposal {
            replicas: ctx.current_replicas,
            current: usage,
            within_tolerance: true,
            usage_ratio,
        });
    }
    if ctx.pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let ready = ctx
        .pods
        .iter()
        .filter(|p| p.phase == PodPhase::Running && p.ready)
        .count();
    Ok(MetricProposal {
        replicas: ceil_replicas(usage_ratio * ready as f64),
        current: usage,
        within_tolerance: false,
        usage_ratio,
    })
}

/// `GetObjectPerPodMetricReplicas` / `GetExternalPerPodMetricReplicas`: AverageValue targets
/// on a total.
fn per_pod_total_replicas(usage: i64, target_milli: i64, ctx: &CalcContext<'_>) -> MetricProposal {
    let status = ctx.current_replicas;
    let usage_ratio = usage as f64 / (target_milli as f64 * f64::from(status));
    let within = ctx.tolerance.is_within(usage_ratio);
    let replicas = if within {
        status
    } else {
        ceil_replicas(usage as f64 / target_milli as f64)
    };
    let per_pod = if status == 0 {
        usage
    } else {
        (usage as f64 / f64::from(status)).ceil() as i64
    };
    MetricProposal {
        replicas,
        current: per_pod,
        within_tolerance: within,
        usage_ratio,
    }
}
