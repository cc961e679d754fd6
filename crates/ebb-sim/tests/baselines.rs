//! The baselines react as their real counterparts are documented to.

use ebb_sim::compare::{core_policies, initial_replicas, Baseline};
use ebb_sim::{run_policy, ClusterConfig, ColdStart, RunConfig, ServiceTime, Workload};

fn cfg() -> RunConfig {
    RunConfig {
        cluster: ClusterConfig {
            slots: 4,
            cold_start: ColdStart::Fixed(5.0),
            ..Default::default()
        },
        service: ServiceTime::Constant(0.1),
        slo: 0.5,
        bucket: 10.0,
        seed: 3,
        gpus_per_replica: 1.0,
    }
}

/// 10 req/s for 10 minutes, 200 req/s for 20 minutes, 10 req/s for 20 minutes.
fn step_up_and_down() -> Workload {
    let mut rates = vec![10.0; 600];
    rates.extend(vec![200.0; 1200]);
    rates.extend(vec![10.0; 1200]);
    Workload::Rate {
        interval: 1.0,
        rates,
    }
}

fn run(baseline: Baseline, w: &Workload) -> ebb_sim::PolicyResult {
    let cfg = cfg();
    let mut scalers = core_policies(&cfg, initial_replicas(w, &cfg), None, &[baseline], 100);
    run_policy(w, &cfg, scalers[0].as_mut(), &mut |_| {})
}

#[test]
fn hpa_scales_up_by_at_most_max_4_pods_or_100_percent_per_15s() {
    let r = run(Baseline::Hpa, &step_up_and_down());
    let ups: Vec<_> = r
        .scale_log
        .iter()
        .filter(|(_, from, to, _)| to > from)
        .collect();
    assert!(
        ups.len() >= 2,
        "HPA should scale up in steps: {:?}",
        r.scale_log
    );
    for (t, from, to, why) in &ups {
        assert!(
            *to <= (*from + 4).max(from * 2),
            "at {t}s {from} -> {to} exceeds max(4 pods, 100%): {why}"
        );
    }
    for pair in ups.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= 15.0 - 1e-9,
            "two scale-ups within one 15 s period: {pair:?}"
        );
    }
    // The first reaction needs the 30 s scrape and the 2 m rate window to see the step.
    // The first reaction waits for the 2 m rate over 30 s scrapes to leave the tolerance, and
    // for the next 15 s sync.
    assert!(
        ups[0].0 > 600.0 && ups[0].0 <= 600.0 + 120.0 + 30.0 + 15.0,
        "first scale-up at {}",
        ups[0].0
    );
}

#[test]
fn hpa_scales_down_only_after_the_300s_window() {
    let r = run(Baseline::Hpa, &step_up_and_down());
    let first_down = r
        .scale_log
        .iter()
        .find(|(t, from, to, _)| to < from && *t > 1800.0)
        .unwrap_or_else(|| panic!("no scale-down after the load fell: {:?}", r.scale_log));
    assert!(
        first_down.0 >= 1800.0 + 300.0,
        "scaled down at {}s, inside the 300 s window",
        first_down.0
    );
    assert!(
        first_down.0 <= 1800.0 + 300.0 + 150.0,
        "scaled down late, at {}s",
        first_down.0
    );
    assert!(!r
        .scale_log
        .iter()
        .any(|(t, from, to, _)| to < from && *t > 600.0 && *t < 1800.0));
}

#[test]
fn kpa_panics_on_the_step_and_scales_to_zero_when_idle() {
    let mut rates = vec![10.0; 300];
    rates.extend(vec![200.0; 300]);
    rates.extend(vec![0.0; 400]);
    let r = run(
        Baseline::Kpa,
        &Workload::Rate {
            interval: 1.0,
            rates,
        },
    );
    let first_up = r
        .scale_log
        .iter()
        .find(|(t, from, to, _)| to > from && *t >= 300.0)
        .expect("a scale-up");
    assert!(
        first_up.0 < 300.0 + 10.0,
        "KPA's panic window reacts within seconds, not at {}",
        first_up.0
    );
    assert!(first_up.3.contains("panic"), "{}", first_up.3);
    let last = r.scale_log.last().expect("scale events");
    assert_eq!(
        last.2,
        0,
        "KPA scales to zero after the idle period: {:?}",
        r.scale_log.iter().rev().take(3).collect::<Vec<_>>()
    );
    assert!(
        last.0 >= 600.0 + 90.0,
        "scale to zero only after stable window + grace, at {}",
        last.0
    );
}

#[test]
fn runs_are_deterministic() {
    let w = step_up_and_down();
    let a = run(Baseline::Hpa, &w);
    let b = run(Baseline::Hpa, &w);
    assert_eq!(a, b);
}

/// Starting at zero (`Start::AtZero`): Ebb's built-in policy and KPA, which may
/// scale to zero, start with no replica and HPA with its minimum of one; without it every
/// policy starts with the count given. From zero, a burst that no answer has measured yet
/// starts Ebb's replicas together, before the first is ready (`SloServiceUnknown`), and
/// every request is answered.
#[test]
fn starting_at_zero_starts_the_policies_that_may_scale_to_zero_with_none() {
    use ebb_sim::compare::{default_ebb_policy, EbbSpec};
    let mut cfg = cfg();
    let ebb = EbbSpec {
        name: "ebb".into(),
        policy: default_ebb_policy(0.5, 0.999, 4, 100),
        scrape_interval: 1.0,
        rate_window: 10.0,
        sync_period: 1.0,
        epoch_unix_ms: 0,
    };
    let baselines = [Baseline::Kpa, Baseline::Hpa];
    let starts = |cfg: &RunConfig| -> Vec<(String, u32)> {
        core_policies(cfg, 7, Some(&ebb), &baselines, 100)
            .iter()
            .map(|s| (s.name().to_string(), s.initial_replicas()))
            .collect()
    };
    let named = |counts: [u32; 3]| -> Vec<(String, u32)> {
        ["ebb", "kpa", "hpa"]
            .iter()
            .zip(counts)
            .map(|(n, c)| (n.to_string(), c))
            .collect()
    };
    assert_eq!(starts(&cfg), named([7, 7, 7]));
    cfg.cluster.start = ebb_sim::Start::AtZero;
    assert_eq!(starts(&cfg), named([0, 0, 1]));
    // 100 req/s from the first second, 5 s cold starts: sized as if each request took the
    // SLO's 500 ms over 4 slots, 13 replicas, all before the first is ready.
    let burst = Workload::Rate {
        interval: 1.0,
        rates: vec![100.0; 60],
    };
    let mut scalers = core_policies(&cfg, 7, Some(&ebb), &[], 100);
    let r = run_policy(&burst, &cfg, scalers[0].as_mut(), &mut |_| {});
    let before_ready: u32 = r
        .scale_log
        .iter()
        .filter(|(t, ..)| *t < 5.0)
        .map(|(_, _, to, _)| *to)
        .max()
        .unwrap_or(0);
    assert!(before_ready >= 10, "{:?}", r.scale_log);
    assert!(
        r.scale_log[0].3.contains("no request answered yet"),
        "{:?}",
        r.scale_log[0]
    );
    assert_eq!(r.served, r.requests, "{r:?}");
}
