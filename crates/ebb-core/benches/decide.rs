//! Decisions for 10,000 independent targets, each with 3 metrics and a 300 s history of
//! recommendations (one a second, as a fast control loop keeps) and scale events.
//!
//! A second group adds the `slo` block to every target (100 ms requests, sized by the steady
//! state); a third, an `slo` block over 35 s requests whose 20 s cold start is sized over the
//! lead from the requests in flight; a fourth, the steady `slo` targets caught short, with
//! replicas starting (each decision prices extra starts beside them, `slo::hedge`); a fifth,
//! the LLM SLO (`slo.ttft` and `slo.itl` read from the engines); a sixth decides the same
//! 10,000 targets as 5,000 disaggregated servers (`ebb_core::pools::PoolScaler`: prefill and
//! decode, then the guard).
//!
//! Run: `cargo bench -p ebb-core --bench decide`

// criterion_group! and criterion_main! generate functions that cannot carry docs.
#![allow(missing_docs)]

mod targets;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ebb_core::*;
use std::hint::black_box;
use targets::*;

fn bench(c: &mut Criterion) {
    let policy = Policy::from_yaml(POLICY).expect("benchmark policy");
    let now = Time::from_secs(10_000);
    let targets: Vec<(Observation, State)> = (0..TARGETS).map(|i| target(i, now)).collect();
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(TARGETS as u64));
    group.sample_size(20);
    let (slo_policy, slo_targets_steady) = slo_targets(now, &STEADY, TARGETS);
    let (lead_policy, lead_targets) = slo_targets(now, &OVER_LEAD, TARGETS);
    let (short_policy, short_targets) = short_slo_targets(now, TARGETS);
    let (llm_policy, llm_targets) = llm_slo_targets(now, TARGETS);
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
            "10k_targets_3_metrics_and_slo_short",
            &short_policy,
            &short_targets,
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
