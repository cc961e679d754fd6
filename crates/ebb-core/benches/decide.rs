//! Decisions for 10,000 independent targets, each with 3 metrics and a 300 s history of
//! recommendations (one a second, as a fast control loop keeps) and scale events.
//!
//! A second group adds the `slo` block to every target (100 ms requests, sized by the steady
//! state); a third, an `slo` block over 35 s requests whose 20 s cold start is sized over the
//! lead from the requests in flight; a fourth, the LLM SLO (`slo.ttft` and `slo.itl` read
//! from the engines); a fifth decides the same 10,000 targets as 5,000
//! disaggregated servers (`ebb_core::pools::PoolScaler`: prefill and decode, then the guard).
//!
//! Run: `cargo bench -p ebb-core --bench decide`

// criterion_group! and criterion_main! generate functions that cannot carry docs.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ebb_core::state::{Recommendation, ScaleEvent};
use ebb_core::*;
use std::hint::black_box;

const TARGETS: usize = 10_000;
const PODS: usize = 6;

const POLICY: &str = r#"
minReplicas: 1
maxReplicas: 50
metrics:
- type: Pods
  pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: "10"}}
- type: Pods
  pods: {metric: {name: gpu}, target: {type: AverageValue, averageValue: "35"}}
- type: External
  external: {metric: {name: queue}, target: {type: AverageValue, averageValue: "30"}}
"#;

/// Recommendations made once a second for 300 s, moving between 4 and 8, as the core keeps
/// them: oldest first, and pruned by a normalization under HPA's default windows to those that
/// can still bound a decision (`behavior::normalize` keeps no other).
fn history(now: Time) -> Vec<Recommendation> {
    let made = |s: i64| Recommendation {
        at: now.minus_millis(s * 1000),
        replicas: (PODS as i64 + (s % 5) - 2) as u32,
    };
    let state = State {
        recommendations: (2..=301).rev().map(made).collect(),
        ..Default::default()
    };
    let behavior = ebb_core::policy::Behavior::default();
    let input = ebb_core::behavior::NormalizeInput {
        behavior: &behavior,
        min_replicas: 1,
        max_replicas: 50,
        current_replicas: PODS as u32,
        recommendation: made(1).replicas,
        now: made(1).at,
    };
    ebb_core::behavior::normalize(&input, &state).recommendations
}

fn target(i: usize, now: Time) -> (Observation, State) {
    let load = 5.0 + (i % 17) as f64;
    let per_pod = |name: &str, scale: f64| MetricObservation {
        name: name.into(),
        values: MetricValues::PerPod {
            samples: (0..PODS)
                .map(|p| PodSample {
                    pod: format!("t{i}-pod-{p}"),
                    value: load * scale + p as f64,
                    at: now,
                    window_ms: 15_000,
                })
                .collect(),
        },
    };
    let obs = Observation {
        current_replicas: PODS as u32,
        pods: (0..PODS)
            .map(|p| Pod {
                name: format!("t{i}-pod-{p}"),
                ready: true,
                started_at: Some(Time::ZERO),
                ready_changed_at: Some(Time::ZERO),
                in_flight: Some(p as f64),
                ..Default::default()
            })
            .collect(),
        metrics: vec![
            per_pod("rps", 1.0),
            per_pod("gpu", 4.0),
            MetricObservation {
                name: "queue".into(),
                values: MetricValues::External {
                    values: vec![load * 20.0],
                    at: now,
                },
            },
        ],
        ..Default::default()
    };
    let state = State {
        recommendations: history(now),
        scale_up_events: vec![ScaleEvent {
            at: now.minus_millis(10_000),
            change: 1,
        }],
        scale_down_events: vec![ScaleEvent {
            at: now.minus_millis(100_000),
            change: 2,
        }],
        ..Default::default()
    };
    (obs, state)
}

/// What the SLO targets' traffic looks like: the block, the rate of target `i` (req/s), the
/// mean service time (s) and its scv, and the share counted within the SLO.
struct SloTraffic {
    block: &'static str,
    rate: fn(usize) -> f64,
    service: f64,
    scv: f64,
    within: (f64, f64),
}

/// Proxy counters at 100-300 req/s, service 100 ms with scv 0.28, 99.92% of it within a
/// 500 ms SLO: the lead spans 200 service times, so the steady-state model sizes.
const STEADY: SloTraffic = SloTraffic {
    block: "slo: {latency: 500ms, attainment: 99.9%, slotsPerReplica: 4}",
    rate: |i| 100.0 + (i % 200) as f64,
    service: 0.1,
    scv: 0.28,
    within: (0.5, 0.9992),
};

/// Image requests: 0.05-0.5 req/s of 35 s each (scv 1), one at a time, a 20 s cold start
/// under a 120 s SLO: 2-18 requests in flight, and the count sized over the lead from them
/// (`slo::transient`).
const OVER_LEAD: SloTraffic = SloTraffic {
    block: "slo: {latency: 120s, attainment: 99.9%, slotsPerReplica: 1, coldStartSeconds: 20}",
    rate: |i| 0.05 + (i % 10) as f64 * 0.05,
    service: 35.0,
    scv: 1.0,
    within: (120.0, 0.995),
};

/// The same targets with an `slo` block as well: each state has had two minutes of proxy
/// counters of `traffic`, so the estimates, the forecast and the keep-through-a-dip memory
/// are warm, and every decision runs the search for a count.
fn slo_targets(now: Time, traffic: &SloTraffic) -> (Policy, Vec<(Observation, State)>) {
    let policy =
        Policy::from_yaml(&format!("{POLICY}{}\n", traffic.block)).expect("benchmark SLO policy");
    let targets = (0..TARGETS)
        .map(|i| {
            // The history ends before the two minutes of warm-up decisions begin.
            let (mut obs, _) = target(i, now);
            let (_, mut state) = target(i, now.minus_millis(121_000));
            let rate = (traffic.rate)(i);
            let m = traffic.service;
            let sample = |s: i64| {
                let done = rate * (200 - s) as f64;
                TrafficSample {
                    at: now.minus_millis(s * 1000),
                    in_flight: rate * m,
                    arrivals_total: done,
                    completions_total: done,
                    service: Some(ServiceTotals {
                        requests: done,
                        seconds: done * m,
                        squared_seconds: done * m * m * (1.0 + traffic.scv),
                        // The proxy counts service times within the SLO: the shape is fitted to it.
                        within: Some(WithinLatency {
                            latency_seconds: traffic.within.0,
                            requests: done * traffic.within.1,
                        }),
                    }),
                }
            };
            for s in (1..=120).rev() {
                obs.traffic = Some(sample(s));
                state = decide(&policy, &obs, &state, now.minus_millis(s * 1000)).state;
            }
            obs.traffic = Some(sample(0));
            (obs, state)
        })
        .collect();
    (policy, targets)
}

/// The same targets with the LLM SLO: each state has had five minutes of engine samples at
/// work moving between 1,000 and 7,000 tokens/s per replica, so both responses are learnt and
/// every decision reads the monotone curves.
fn llm_slo_targets(now: Time) -> (Policy, Vec<(Observation, State)>) {
    let policy = Policy::from_yaml(&format!(
        "{POLICY}engine: {{kind: vllm}}\nslo: {{ttft: {{latency: 1s}}, itl: {{latency: 50ms}}}}\n"
    ))
    .expect("benchmark LLM SLO policy");
    let targets = (0..TARGETS)
        .map(|i| {
            // The history ends before the five minutes of warm-up decisions begin.
            let (mut obs, _) = target(i, now);
            let (_, mut state) = target(i, now.minus_millis(301_000));
            let replicas = obs.current_replicas.max(1);
            let sample = |s: i64| {
                let work = 4_000.0 + 3_000.0 * ((s + i as i64) as f64 / 15.0).sin();
                EngineSample {
                    at: now.minus_millis(s * 1000),
                    replicas,
                    tokens_per_second: Some(work * f64::from(replicas)),
                    waiting: 0.0,
                    kv_cache: Some(0.3),
                    itl_quantile: Some(0.02 + work / 100_000.0),
                    ttft_quantile: Some(0.2 + work / 10_000.0),
                    starting: false,
                }
            };
            for s in (1..=300).rev() {
                obs.engine = Some(sample(s));
                state = decide(&policy, &obs, &state, now.minus_millis(s * 1000)).state;
            }
            obs.engine = Some(sample(0));
            (obs, state)
        })
        .collect();
    (policy, targets)
}

fn bench(c: &mut Criterion) {
    let policy = Policy::from_yaml(POLICY).expect("benchmark policy");
    let now = Time::from_secs(10_000);
    let targets: Vec<(Observation, State)> = (0..TARGETS).map(|i| target(i, now)).collect();
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(TARGETS as u64));
    group.sample_size(20);
    let (slo_policy, slo_targets_steady) = slo_targets(now, &STEADY);
    let (lead_policy, lead_targets) = slo_targets(now, &OVER_LEAD);
    let (llm_policy, llm_targets) = llm_slo_targets(now);
    for (name, policy, targets) in [
        ("10k_targets_3_metrics_300s_history", &policy, &targets),
        (
            "10k_targets_3_metrics_and_slo",
            &slo_policy,
            &slo_targets_steady,
        ),
        (
            "10k_targets_3_metrics_and_slo_over_lead",
            &lead_policy,
            &lead_targets,
        ),
        (
            "10k_targets_3_metrics_and_llm_slo",
            &llm_policy,
            &llm_targets,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || (),
                |_| {
                    let mut scaled = 0u32;
                    for (obs, state) in targets {
                        let d = decide(policy, black_box(obs), black_box(state), now);
                        scaled += d.desired_replicas;
                    }
                    black_box(scaled)
                },
                BatchSize::PerIteration,
            )
        });
    }
    let pools = ebb_core::pools::PoolsPolicy {
        prefill: policy.clone(),
        decode: policy.clone(),
        ratio: ebb_core::pools::Ratio { min: 1.0, max: 4.0 },
    };
    group.bench_function("5k_pools_of_two_3_metrics_300s_history", |b| {
        b.iter_batched_ref(
            || {
                targets
                    .chunks(2)
                    .map(|pair| {
                        let scaler = ebb_core::pools::PoolScaler::with_states(
                            pools.clone(),
                            pair[0].1.clone(),
                            pair[1].1.clone(),
                        );
                        let obs = ebb_core::pools::PoolObservations {
                            prefill: pair[0].0.clone(),
                            decode: pair[1].0.clone(),
                        };
                        (scaler, obs)
                    })
                    .collect::<Vec<_>>()
            },
            |scalers| {
                let mut scaled = 0u32;
                for (scaler, obs) in scalers.iter_mut() {
                    let d = scaler.decide(black_box(obs), now);
                    scaled += d.prefill.desired_replicas + d.decode.desired_replicas;
                }
                black_box(scaled)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
