//! The controller's side of an `engine` block: the target's ready pods' own metrics, scraped
//! on the engine's port each pass and read through its preset, with their histograms' counts
//! carried from pass to pass for the percentiles' window.

use crate::context::Pass;
use crate::crd::{PodScrapeSource, SourceStatus};
use crate::observe::TargetPod;
use crate::sources::{self, PodEndpoint};
use ebb_core::engine::EngineReading;
use ebb_core::policy::Engine;
use ebb_core::{MetricObservation, MetricValues};
use std::time::Duration;

/// How long a pod's metrics may take to answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// The engine's signals from the ready pods that answered; a pod that did not gives nothing,
/// and a signal none gave is missing (the core holds on it).
pub(crate) async fn observe(
    pass: &mut Pass<'_>,
    engine: &Engine,
    pods: &[TargetPod],
) -> EngineReading {
    let endpoints: Vec<PodEndpoint> = pods
        .iter()
        .filter(|p| p.ready && !p.deleting)
        .map(|p| PodEndpoint {
            name: p.name.clone(),
            ip: p.ip.clone(),
        })
        .collect();
    let source = PodScrapeSource {
        port: engine.port,
        path: Some(engine.path.clone()),
        ..Default::default()
    };
    // A pod whose scrape failed comes with no samples: it gives no value this pass, but its
    // histogram window goes on.
    let names = engine.kind.sample_names();
    let scrapes: Vec<_> =
        sources::scrape_pods_keeping(&source, &endpoints, SCRAPE_TIMEOUT, Some(&names))
            .await
            .into_iter()
            .map(|(pod, r)| (pod, r.unwrap_or_default()))
            .collect();
    let starting = pods.iter().any(|p| !p.ready && !p.deleting);
    pass.memory
        .engine
        .read(engine, &scrapes, starting, pass.now)
}

/// The engine's signals as the status lists them beside the sources: each target's metric,
/// its value (the average over pods for a per-replica signal, as its target reads it; the
/// percentile for a latency), or why there is none; then what an LLM SLO reads.
pub(crate) fn statuses(engine: &Engine, reading: &EngineReading) -> Vec<SourceStatus> {
    let mut out = target_statuses(engine, &reading.metrics);
    if let Some(q) = engine.token_quantiles {
        out.extend(llm_slo_statuses(q, reading.sample.as_ref()));
    }
    out
}

/// The LLM SLO's inputs: the goals' quantiles and the token rate, or why each is missing.
fn llm_slo_statuses(
    q: ebb_core::engine::TokenQuantiles,
    sample: Option<&ebb_core::EngineSample>,
) -> Vec<SourceStatus> {
    let entry = |name: &str, value: Option<f64>, why: &str| SourceStatus {
        name: name.into(),
        source: "engine".into(),
        value,
        error: value.is_none().then(|| why.to_string()),
        last_success: None,
    };
    let quantile_why = "no quantile: replicas are starting, or the window has fewer than 10 observations since the serving replicas last changed";
    let mut out = Vec::new();
    if q.ttft.is_some() {
        out.push(entry(
            "llmSlo.ttft",
            sample.and_then(|s| s.ttft_quantile),
            quantile_why,
        ));
    }
    if q.itl.is_some() {
        out.push(entry(
            "llmSlo.itl",
            sample.and_then(|s| s.itl_quantile),
            quantile_why,
        ));
    }
    out.push(entry(
        "llmSlo.tokensPerSecond",
        sample.and_then(|s| s.tokens_per_second),
        "no token counters over the window yet (a replica's first scrape has nothing to compare with)",
    ));
    out
}

/// Each engine target's value, or why there is none.
fn target_statuses(engine: &Engine, observed: &[MetricObservation]) -> Vec<SourceStatus> {
    engine
        .targets
        .iter()
        .map(|t| {
            let name = t.signal.metric_name();
            let value = observed
                .iter()
                .find(|o| o.name == name)
                .and_then(|o| match &o.values {
                    MetricValues::PerPod { samples } if !samples.is_empty() => Some(
                        samples.iter().map(|s| s.value).sum::<f64>() / samples.len() as f64,
                    ),
                    MetricValues::External { values, .. } => values.first().copied(),
                    _ => None,
                });
            let why = match t.quantile {
                Some(_) => "no percentile: replicas are starting, or the window has fewer than 10 observations since the serving replicas last changed",
                None => "no serving pod's metrics gave it",
            };
            SourceStatus {
                name: name.into(),
                source: "engine".into(),
                value,
                error: value.is_none().then(|| why.to_string()),
                last_success: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::{PodSample, Policy, Time};

    #[test]
    fn the_status_lists_each_target_with_its_value_or_why_not() {
        let engine = Policy::from_yaml(
            "maxReplicas: 4\nengine: {kind: vllm, waitingPerReplica: 2, ttft: {below: 1s}}",
        )
        .unwrap()
        .engine
        .unwrap();
        let sample = |pod: &str, value| PodSample {
            pod: pod.into(),
            value,
            at: Time::ZERO,
            window_ms: 0,
        };
        let observed = vec![MetricObservation {
            name: "engine.waiting".into(),
            values: MetricValues::PerPod {
                samples: vec![sample("a", 1.0), sample("b", 4.0)],
            },
        }];
        let s = target_statuses(&engine, &observed);
        assert_eq!(
            (s[0].name.as_str(), s[0].value),
            ("engine.waiting", Some(2.5))
        );
        assert_eq!((s[1].name.as_str(), s[1].value), ("engine.ttft", None));
        assert!(s[1]
            .error
            .as_deref()
            .unwrap()
            .contains("replicas are starting"));
    }

    #[test]
    fn the_status_lists_the_llm_slo_inputs() {
        let engine = Policy::from_yaml(
            "maxReplicas: 4\nengine: {kind: vllm}\nslo: {ttft: {latency: 2s}, itl: {latency: 50ms}}",
        )
        .unwrap()
        .engine
        .unwrap();
        let reading = EngineReading {
            metrics: Vec::new(),
            sample: Some(ebb_core::EngineSample {
                at: Time::ZERO,
                replicas: 2,
                tokens_per_second: Some(1200.0),
                waiting: 0.0,
                kv_cache: None,
                itl_quantile: None,
                ttft_quantile: Some(0.8),
                starting: false,
            }),
        };
        let s = statuses(&engine, &reading);
        let listed: Vec<(&str, Option<f64>)> =
            s.iter().map(|m| (m.name.as_str(), m.value)).collect();
        assert_eq!(
            listed,
            [
                ("llmSlo.ttft", Some(0.8)),
                ("llmSlo.itl", None),
                ("llmSlo.tokensPerSecond", Some(1200.0)),
            ]
        );
        assert!(s[1].error.as_deref().unwrap().contains("no quantile"));
    }
}
