//! The controller's side of an `engine` block: the target's ready pods' own metrics, scraped
//! on the engine's port each pass and read through its preset, with their histograms' counts
//! carried from pass to pass for the percentiles' window.

use crate::context::Pass;
use crate::crd::PodScrapeSource;
use crate::observe::TargetPod;
use crate::sources::{self, PodEndpoint};
use ebb_core::policy::Engine;
use ebb_core::MetricObservation;
use std::time::Duration;

/// How long a pod's metrics may take to answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// The engine's signals from the ready pods that answered; a pod that did not is left out,
/// and a signal none gave is missing (the core holds on it).
pub(crate) async fn observe(
    pass: &mut Pass<'_>,
    engine: &Engine,
    pods: &[TargetPod],
) -> Vec<MetricObservation> {
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
    let scrapes: Vec<_> = sources::scrape_pods(&source, &endpoints, SCRAPE_TIMEOUT)
        .await
        .into_iter()
        .filter_map(|(pod, r)| r.ok().map(|s| (pod, s)))
        .collect();
    let starting = pods.iter().any(|p| !p.ready && !p.deleting);
    pass.memory
        .engine
        .observe(engine, &scrapes, starting, pass.now)
}
