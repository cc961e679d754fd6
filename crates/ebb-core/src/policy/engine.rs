//! The `engine` block: targets on an LLM engine's own signals, read through its preset
//! ([`crate::engine`]). Each target becomes an ordinary HPA metric of the policy, so it
//! scales with HPA's rules (tolerance, behaviors, a missing metric holds): a per-replica
//! gauge as a `Pods` metric with an `AverageValue` target, a latency percentile as an
//! `External` metric with a `Value` target (desired = current x percentile / target).

use super::spec::{DurationSpec, EngineSpec, LatencyTargetSpec, PercentSpec};
use super::validate::Checker;
use super::{Metric, MetricSource, Target};
use crate::engine::{Engine, EngineKind, EngineTarget, Signal};
use crate::quantity::Quantity;

/// Default window of an engine's latency percentiles, seconds.
pub const DEFAULT_ENGINE_WINDOW_SECONDS: f64 = 60.0;
/// The prefix of the metric names the engine block owns.
pub const ENGINE_METRIC_PREFIX: &str = "engine.";

/// Validates the block; its targets' metrics are appended to `metrics`.
/// `token_slo`: whether the `slo` block has TTFT or ITL goals, which read the engines'
/// signals themselves (the block then needs no target of its own).
pub(super) fn engine(
    c: &mut Checker,
    s: &EngineSpec,
    metrics: &mut Vec<Metric>,
    token_slo: bool,
) -> Engine {
    let kind = match s.kind.as_deref() {
        None => {
            c.err("engine.kind", "is required: vllm, sglang, tgi or triton");
            EngineKind::Vllm
        }
        Some(k) => EngineKind::parse(k).unwrap_or_else(|| {
            c.err(
                "engine.kind",
                format!("must be vllm, sglang, tgi or triton, got '{k}'"),
            );
            EngineKind::Vllm
        }),
    };
    let port = match s.port {
        None => kind.default_port(),
        Some(p) => c.count("engine.port", p, 1, 65_535) as u16,
    };
    let path = s.path.clone().unwrap_or_else(|| "/metrics".into());
    if !path.starts_with('/') {
        c.err("engine.path", format!("must start with '/', got '{path}'"));
    }
    let mut targets = Vec::new();
    if let Some(kv) = &s.kv_cache_utilization {
        let v = share(c, "engine.kvCacheUtilization", kv);
        targets.push((
            Signal::KvCacheUtilization,
            "engine.kvCacheUtilization",
            None,
            v,
        ));
    }
    for (field, value, signal) in [
        (
            "engine.waitingPerReplica",
            s.waiting_per_replica,
            Signal::Waiting,
        ),
        (
            "engine.runningPerReplica",
            s.running_per_replica,
            Signal::Running,
        ),
    ] {
        if let Some(v) = value {
            let v = c.positive(field, v);
            targets.push((signal, field, None, v));
        }
    }
    for (field, latency, signal) in [
        ("engine.ttft", &s.ttft, Signal::Ttft),
        ("engine.itl", &s.itl, Signal::Itl),
        ("engine.queueTime", &s.queue_time, Signal::QueueTime),
    ] {
        if let Some(l) = latency {
            let (q, below) = latency_target(c, field, l);
            targets.push((signal, field, Some(q), below));
        }
    }
    if targets.is_empty() && !token_slo {
        c.err(
            "engine",
            "needs a target: kvCacheUtilization, waitingPerReplica, runningPerReplica, ttft, itl or queueTime (or slo.ttft / slo.itl)",
        );
    }
    let targets = targets
        .into_iter()
        .filter_map(|(signal, field, quantile, value)| {
            if kind.reading(signal).is_none() {
                c.err(field, format!("{kind} exports no metric for it"));
                return None;
            }
            metrics.push(metric_for(signal, quantile, value));
            Some(EngineTarget {
                signal,
                quantile,
                value,
            })
        })
        .collect();
    let window = s.window_seconds.unwrap_or(DEFAULT_ENGINE_WINDOW_SECONDS);
    let window = c.positive("engine.windowSeconds", window);
    Engine {
        kind,
        port,
        path,
        targets,
        window_ms: (window * 1000.0).round() as i64,
        token_quantiles: None,
    }
}

/// The policy metric that carries a target.
fn metric_for(signal: Signal, quantile: Option<f64>, value: f64) -> Metric {
    let amount = Quantity::from_milli((value * 1000.0).round() as i64);
    let (source, target) = match quantile {
        Some(_) => (
            MetricSource::External { selector: None },
            Target::Value(amount),
        ),
        None => (
            MetricSource::Pods { selector: None },
            Target::AverageValue(amount),
        ),
    };
    Metric {
        name: signal.metric_name().into(),
        source,
        target,
    }
}

/// A share of the KV cache: `0.8` or `80%`.
fn share(c: &mut Checker, path: &str, p: &PercentSpec) -> f64 {
    let v = match p {
        PercentSpec::Number(v) => *v,
        PercentSpec::Text(t) => match t.trim().strip_suffix('%').map(|n| n.trim().parse::<f64>()) {
            Some(Ok(percent)) => super::validate::share_of_percent(percent),
            _ => f64::NAN,
        },
    };
    if !(v > 0.0 && v <= 1.0) {
        let written = match p {
            PercentSpec::Number(v) => v.to_string(),
            PercentSpec::Text(t) => format!("'{t}'"),
        };
        c.err(
            path,
            format!(
                "must be a share above 0 and at most 1 (0.8) or a percentage (80%), got {written}"
            ),
        );
        return 1.0;
    }
    v
}

/// `{percentile: p95, below: 500ms}`: the quantile and the latency in seconds.
fn latency_target(c: &mut Checker, path: &str, l: &LatencyTargetSpec) -> (f64, f64) {
    let quantile = match &l.percentile {
        None => 0.95,
        Some(p) => super::validate::share_of_percent(super::validate::percentile(
            c,
            &format!("{path}.percentile"),
            p,
        )),
    };
    let below = match &l.below {
        None => {
            c.err(format!("{path}.below"), "is required (e.g. 500ms)");
            1.0
        }
        Some(d) => match super::validate::duration_seconds(d) {
            Ok(v) if (0.001..=3600.0).contains(&v) => v,
            Ok(v) => {
                c.err(
                    format!("{path}.below"),
                    format!("must be at least 1ms and at most 1h, got {v}s"),
                );
                1.0
            }
            Err(e) => {
                c.err(format!("{path}.below"), e);
                1.0
            }
        },
    };
    (quantile, below)
}

/// The block as a document writes it.
pub(super) fn engine_spec(e: &Engine) -> EngineSpec {
    let value = |signal: Signal| e.targets.iter().find(|t| t.signal == signal);
    let latency = |signal: Signal| {
        value(signal).map(|t| LatencyTargetSpec {
            percentile: t.quantile.map(|q| format!("p{}", q * 100.0)),
            below: Some(DurationSpec::Seconds(t.value)),
        })
    };
    EngineSpec {
        kind: Some(e.kind.name().into()),
        port: Some(i64::from(e.port)),
        path: Some(e.path.clone()),
        kv_cache_utilization: value(Signal::KvCacheUtilization)
            .map(|t| PercentSpec::Number(t.value)),
        waiting_per_replica: value(Signal::Waiting).map(|t| t.value),
        running_per_replica: value(Signal::Running).map(|t| t.value),
        ttft: latency(Signal::Ttft),
        itl: latency(Signal::Itl),
        queue_time: latency(Signal::QueueTime),
        window_seconds: Some(e.window_ms as f64 / 1000.0),
    }
}
