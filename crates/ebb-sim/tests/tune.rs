//! `ebb tune`'s SLO family reaches what its knobs promise on traffic the model cannot foresee.

use ebb_sim::compare::initial_replicas;
use ebb_sim::tune::{evaluate, slo_candidates, Family};
use ebb_sim::{synthetic, ClusterConfig, ColdStart, RunConfig, ServiceTime};

/// Bursts of 2 minutes every 6 minutes, silent between: until the bursts have recurred often
/// enough to be learnt, the SLO policy's own rule releases the fleet in each silence, and
/// the next burst waits a cold start. The swept 300 s window holds it through.
#[test]
fn a_scale_down_window_carries_the_slo_family_through_silences_it_cannot_yet_foresee() {
    let workload = synthetic::parse("onoff:80:2m:4m:30m").expect("a pattern");
    let cfg = RunConfig {
        cluster: ClusterConfig {
            slots: 4,
            cold_start: ColdStart::Fixed(20.0),
            ..Default::default()
        },
        service: ServiceTime::Constant(0.1),
        slo: 0.5,
        bucket: 10.0,
        seed: 1,
        gpus_per_replica: 1.0,
    };
    let candidates: Vec<_> = slo_candidates(&cfg, 0.999, 50)
        .into_iter()
        .filter(|c| c.knob.starts_with("plans for 99.9%"))
        .collect();
    assert_eq!(candidates.len(), 2, "own rule and 300 s window");
    let points = evaluate(
        &workload,
        &cfg,
        &candidates,
        initial_replicas(&workload, &cfg),
        &|_| {},
    );
    assert!(points.iter().all(|p| p.candidate.family == Family::EbbSlo));
    let (own, window) = (&points[0], &points[1]);
    assert!(
        own.attainment < 0.99,
        "the own rule waits a cold start into the next burst: {}",
        own.attainment
    );
    assert!(
        window.attainment > 0.999,
        "the window holds replicas for the next burst: {}",
        window.attainment
    );
    assert!(window.replica_seconds > own.replica_seconds);
}
