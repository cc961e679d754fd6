//! The token-level simulator against closed-form cases, and its policies on small workloads.

use ebb_sim::autoscaler::Schedule;
use ebb_sim::engine::EngineParams;
use ebb_sim::llm::compare::{compare, default_llm_policy, policies, sizing};
use ebb_sim::llm::{run_llm_policy, LlmConfig, LlmRequest, HOLD_TIMEOUT_SECONDS};
use ebb_sim::{ColdStart, Start};

/// An engine whose step times are easy to add up: 10 ms a step, 0.1 ms a prompt token, 1 ms a
/// decoding sequence.
fn engine() -> EngineParams {
    EngineParams {
        kv_blocks: 4096,
        block_tokens: 16,
        step_tokens: 2048,
        max_running: 64,
        step_base: 0.010,
        per_prefill_token: 0.000_1,
        per_decode_seq: 0.001,
    }
}

fn config(cold_start: f64) -> LlmConfig {
    LlmConfig {
        engine: engine(),
        cold_start: ColdStart::Fixed(cold_start),
        ttft_slo: 0.025,
        itl_slo: 0.0115,
        hold_timeout: HOLD_TIMEOUT_SECONDS,
        gpus_per_replica: 2.0,
        bucket: 10.0,
        seed: 1,
    }
}

/// `seconds` of requests (400 prompt tokens, 60 out), evenly spaced: `before.1` a second
/// for the first `before.0` seconds, then `after` a second.
fn step(seconds: u32, before: (u32, u32), after: u32) -> Vec<LlmRequest> {
    let mut requests = Vec::new();
    for i in 0..seconds {
        let rate = if i < before.0 { before.1 } else { after };
        for k in 0..rate {
            requests.push(LlmRequest {
                at: f64::from(i) + f64::from(k) / f64::from(rate),
                prompt: 400,
                output: 60,
            });
        }
    }
    requests
}

/// Eleven requests 10 s apart (100 prompt tokens, 10 out): each alone in the engine.
fn apart() -> Vec<LlmRequest> {
    (0..=10)
        .map(|i| LlmRequest {
            at: f64::from(i) * 10.0,
            prompt: 100,
            output: 10,
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.abs().max(1.0)
}

/// Requests 10 s apart, alone on one replica: a 100-token prompt is prefilled in one step of
/// 10 + 100 x 0.1 = 20 ms that emits the first token; each of the 9 others takes a decode step
/// of 10 + 1 = 11 ms. So TTFT 20 ms, TPOT and every gap 11 ms; one replica for 100 s is 100
/// replica-seconds, and at 2 GPUs each 200/3600 GPU-hours.
#[test]
fn requests_alone_on_one_replica_match_the_closed_form() {
    let requests = apart();
    let mut one = Schedule::fixed("one", 1);
    let r = run_llm_policy(&requests, &config(0.0), &mut one, &mut |_| {});
    assert_eq!((r.requests, r.failed), (11, 0));
    for q in r.ttft {
        assert!(close(q, 0.020), "TTFT {q}");
    }
    for q in r.tpot {
        assert!(close(q, 0.011), "TPOT {q}");
    }
    for q in r.itl {
        assert!((q / 0.011 - 1.0).abs() < 0.012, "gap {q}");
    }
    assert!(close(r.replica_seconds, 100.0), "{}", r.replica_seconds);
    assert!(close(r.gpu_hours, 200.0 / 3600.0), "{}", r.gpu_hours);
    // TTFT 20 ms is within 25 ms; TPOT 11 ms within 11.5 ms.
    assert_eq!(
        (r.ttft_attainment, r.tpot_attainment, r.both_attainment),
        (1.0, 1.0, 1.0)
    );
}

/// Two requests at once share every step: one prefill step of 10 + 200 x 0.1 = 30 ms (both
/// first tokens, TTFT 30 ms: over the 25 ms SLO), then decode steps of 10 + 2 x 1 = 12 ms
/// (TPOT 12 ms: over 11.5 ms). The batch costs each request time; the SLOs see it.
#[test]
fn requests_together_share_the_steps_and_slow_each_other() {
    let requests = vec![
        LlmRequest {
            at: 1.0,
            prompt: 100,
            output: 5,
        },
        LlmRequest {
            at: 1.0,
            prompt: 100,
            output: 5,
        },
    ];
    let mut one = Schedule::fixed("one", 1);
    let r = run_llm_policy(&requests, &config(0.0), &mut one, &mut |_| {});
    // The first arrival starts a step alone (20 ms); the second joins the next step, which
    // also decodes the first: 10 + 100 x 0.1 + 1 = 21 ms. Then two decode at once: 12 ms.
    assert!(close(r.ttft[0], 0.020), "{:?}", r.ttft);
    assert!(close(r.ttft[2], 0.041), "{:?}", r.ttft);
    assert_eq!(r.ttft_attainment, 0.5);
    assert!(r.tpot[2] > 0.0115, "{:?}", r.tpot);
}

/// A prompt longer than the KV cache can never run: it fails at once and counts as a miss.
#[test]
fn a_request_the_engine_cannot_hold_fails_and_counts_against_attainment() {
    let requests = vec![
        LlmRequest {
            at: 0.0,
            prompt: 100,
            output: 2,
        },
        LlmRequest {
            at: 0.5,
            prompt: 4096 * 16,
            output: 2,
        },
    ];
    let mut one = Schedule::fixed("one", 1);
    let r = run_llm_policy(&requests, &config(0.0), &mut one, &mut |_| {});
    assert_eq!((r.requests, r.failed), (2, 1));
    assert_eq!(r.ttft_attainment, 0.5);
}

/// A step of load: 2 requests a second, then 40. A replica completes about 30 a second of
/// this mix saturated, so the step needs two or more. Ebb's engine policy scales up within
/// the step and serves every request; a fixed single replica falls behind.
#[test]
fn ebb_scales_the_engines_up_under_a_step_and_serves_every_request() {
    let requests = step(600, (60, 2), 40);
    let cfg = config(20.0);
    let size = sizing(&requests, &cfg, 1.0);
    assert!(size.saturation_rps > 5.0, "{size:?}");
    let ebb = default_llm_policy(size.max_replicas);
    let mut scalers = policies(&size, &cfg, Some(ebb), Start::Warm);
    scalers.truncate(1);
    scalers.push(Box::new(Schedule::fixed("one", 1)));
    let results = compare(&requests, &cfg, scalers, &|_, _| {});
    let (ebb, one) = (&results[0], &results[1]);
    assert_eq!(ebb.failed, 0);
    assert!(ebb.peak_replicas >= 2, "{ebb:?}");
    assert!(
        ebb.ttft[1] < one.ttft[1] / 2.0,
        "ebb p95 TTFT {} vs one replica's {}",
        ebb.ttft[1],
        one.ttft[1]
    );
}

/// The LLM SLO policy under the same step, with goals the engines can keep (TTFT p99 1 s,
/// ITL p99 100 ms): it learns the engines' response at the low rate, answers the step's queue
/// at once, then sizes the fleet from the response; no target given.
#[test]
fn the_llm_slo_policy_sizes_a_step_from_the_engines_response() {
    let requests = step(900, (300, 4), 40);
    let mut cfg = config(20.0);
    cfg.ttft_slo = 1.0;
    cfg.itl_slo = 0.1;
    let size = sizing(&requests, &cfg, 1.0);
    let slo = policies(&size, &cfg, None, Start::Warm)
        .into_iter()
        .find(|p| p.name() == "ebb-slo")
        .expect("ebb-slo");
    let results = compare(
        &requests,
        &cfg,
        vec![slo, Box::new(Schedule::fixed("one", 1))],
        &|_, _| {},
    );
    let (slo, one) = (&results[0], &results[1]);
    assert_eq!(slo.failed, 0);
    assert!(slo.peak_replicas >= 2, "{slo:?}");
    assert!(
        slo.ttft[1] < one.ttft[1] / 4.0,
        "ebb-slo p95 TTFT {} vs one replica's {}",
        slo.ttft[1],
        one.ttft[1]
    );
    // The queue at the step asks for many at once; once it drained, the response learnt at
    // the low rate (and above it since) sizes the fleet: well below the maximum.
    let end = slo.replicas_series.last().copied().unwrap_or(f64::MAX);
    assert!(
        end <= f64::from(size.max_replicas) / 3.0,
        "{end} of {}: {:?}",
        size.max_replicas,
        slo.replicas_series
    );
}

/// KPA scales to zero after its idle window; a request arriving at zero is held by the
/// gateway until a replica is ready (a cold start of 20 s), not lost.
#[test]
fn a_request_at_zero_is_held_through_the_cold_start() {
    let mut requests: Vec<LlmRequest> = (0..20)
        .map(|i| LlmRequest {
            at: f64::from(i),
            prompt: 50,
            output: 5,
        })
        .collect();
    // The run ends at the last arrival (what is held then fails), so one more comes later.
    for at in [400.0, 460.0] {
        requests.push(LlmRequest {
            at,
            prompt: 50,
            output: 5,
        });
    }
    let cfg = config(20.0);
    let size = sizing(&requests, &cfg, 1.0);
    let mut kpa = policies(&size, &cfg, None, Start::Warm)
        .into_iter()
        .find(|p| p.name() == "kpa")
        .expect("kpa");
    let r = run_llm_policy(&requests, &cfg, kpa.as_mut(), &mut |_| {});
    assert_eq!(r.failed, 0);
    // The request at 400 s waited out a cold start: its TTFT is at least 20 s.
    assert!(r.ttft[2] >= 20.0, "{:?}", r.ttft);
    // Zero replicas for part of the run: fewer replica-seconds than one replica throughout.
    assert!(r.replica_seconds < 400.0, "{}", r.replica_seconds);
}

/// Started as a service after a silence (`--start-at-zero`): KPA from none, Ebb's policies
/// and HPA from their minimum of one, fixed-max at maxReplicas. The step's 40 requests a
/// second need two or more replicas; every policy that starts low reaches them, the first
/// requests KPA gets wait out a whole cold start, and none are lost.
#[test]
fn from_zero_kpa_starts_with_none_and_the_others_at_their_minimum() {
    let requests = step(600, (60, 2), 40);
    let cfg = config(20.0);
    let size = sizing(&requests, &cfg, 1.0);
    let scalers = policies(&size, &cfg, None, Start::AtZero);
    let first: Vec<(String, u32)> = scalers
        .iter()
        .map(|s| (s.name().to_string(), s.initial_replicas()))
        .collect();
    let at = |name: &str| first.iter().find(|(n, _)| n == name).map(|(_, r)| *r);
    assert_eq!(at("kpa"), Some(0), "{first:?}");
    for name in ["ebb", "ebb-slo", "hpa-duty-cycle", "hpa-rps"] {
        assert_eq!(at(name), Some(1), "{name}: {first:?}");
    }
    assert_eq!(at("fixed-max"), Some(size.max_replicas), "{first:?}");
    let warm = policies(&size, &cfg, None, Start::Warm);
    assert!(warm
        .iter()
        .all(|s| s.initial_replicas() == size.initial || s.name() == "fixed-max"));
    let results = compare(&requests, &cfg, scalers, &|_, _| {});
    for r in &results {
        assert_eq!(r.failed, 0, "{}", r.policy);
        assert!(
            r.peak_replicas >= 2,
            "{}: {:?}",
            r.policy,
            r.replicas_series
        );
    }
    let kpa = results.iter().find(|r| r.policy == "kpa").expect("kpa");
    assert!(
        kpa.ttft[2] >= 20.0,
        "KPA's first requests wait a cold start: {:?}",
        kpa.ttft
    );
}

/// One prefill and one decode replica throughout.
fn one_each() -> ebb_sim::llm::disagg::Independent {
    ebb_sim::llm::disagg::Independent::new(
        "one each",
        Box::new(Schedule::fixed("p", 1)),
        Box::new(Schedule::fixed("d", 1)),
    )
}

/// Disaggregated, requests 10 s apart on one prefill and one decode replica: the prefill
/// replica prefills the 100-token prompt in one step of 20 ms (its own first token is not the
/// client's), the KV cache takes 100 x 50 us = 5 ms to hand over, and the decode replica's
/// first step of 11 ms emits the first token the client sees: TTFT 36 ms. Each of the 9
/// others takes a decode step of 11 ms. Both pools cost 100 replica-seconds each.
#[test]
fn disaggregated_requests_alone_match_the_closed_form() {
    use ebb_sim::llm::disagg::run_pools;
    let requests = apart();
    let mut cfg = config(0.0);
    cfg.ttft_slo = 0.040;
    let mut one = one_each();
    let r = run_pools(&requests, &cfg, 50e-6, &mut one, &mut |_| {});
    let c = &r.result;
    assert_eq!((c.requests, c.failed), (11, 0));
    for q in c.ttft {
        assert!(close(q, 0.036), "TTFT {q}");
    }
    for q in c.tpot {
        assert!(close(q, 0.011), "TPOT {q}");
    }
    assert!(close(c.both_attainment, 1.0));
    assert!(
        close(r.prefill_replica_seconds, 100.0),
        "{}",
        r.prefill_replica_seconds
    );
    assert!(close(r.decode_replica_seconds, 100.0));
    assert!(close(c.replica_seconds, 200.0));
}

/// A prompt the prefill pool cannot hold fails there, and counts as a failed request of the
/// run (the decode pool never sees it).
#[test]
fn a_request_refused_by_the_prefill_pool_counts_as_failed() {
    use ebb_sim::llm::disagg::run_pools;
    let requests = [
        LlmRequest {
            at: 1.0,
            prompt: 100_000,
            output: 10,
        },
        LlmRequest {
            at: 2.0,
            prompt: 100,
            output: 10,
        },
    ];
    let mut one = one_each();
    let mut cfg = config(0.0);
    cfg.ttft_slo = 0.040;
    let r = run_pools(&requests, &cfg, 5e-6, &mut one, &mut |_| {});
    assert_eq!((r.result.requests, r.result.failed), (2, 1));
    assert!(
        close(r.result.both_attainment, 0.5),
        "{}",
        r.result.both_attainment
    );
}

/// On a rising load the pools policy scales both pools, and its guard keeps decode per
/// prefill within its ratio once the load settles.
#[test]
fn the_pools_policy_scales_both_pools() {
    use ebb_sim::llm::pools::{compare_pools, pool_policies, pool_sizing};
    let requests = step(300, (60, 2), 30);
    let cfg = config(5.0);
    let s = pool_sizing(&requests, &cfg);
    let scalers = pool_policies(&s, None);
    let names: Vec<String> = scalers.iter().map(|s| s.name().to_string()).collect();
    assert_eq!(names[0], "ebb-pools");
    let results = compare_pools(&requests, &cfg, 5e-6, scalers, &|_, _| {});
    let ebb = &results[0];
    assert_eq!(ebb.result.failed, 0);
    assert!(
        ebb.result.peak_replicas > 2,
        "{:?}",
        ebb.result.peak_replicas
    );
    assert!(ebb.prefill_replica_seconds > 0.0 && ebb.decode_replica_seconds > 0.0);
    let fixed = results
        .iter()
        .find(|r| r.result.policy == "fixed-max")
        .unwrap();
    assert!(ebb.result.replica_seconds < fixed.result.replica_seconds);
}
