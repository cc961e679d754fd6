//! The benchmarks' targets, shared by `benches/decide.rs` (timed by criterion) and
//! `examples/decide_pass.rs` (one pass, for counting instructions under callgrind).

use ebb_core::state::{Recommendation, ScaleEvent};
use ebb_core::*;

/// Targets a benchmark decides for.
pub(crate) const TARGETS: usize = 10_000;
const PODS: usize = 6;

/// Three metrics, as HPA reads them.
pub(crate) const POLICY: &str = r#"
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

/// Target `i`: its observation at `now`, and a state with the history of a fast loop.
pub(crate) fn target(i: usize, now: Time) -> (Observation, State) {
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
pub(crate) struct SloTraffic {
    block: &'static str,
    rate: fn(usize) -> f64,
    service: f64,
    scv: f64,
    within: (f64, f64),
}

/// Proxy counters at 100-300 req/s, service 100 ms with scv 0.28, 99.92% of it within a
/// 500 ms SLO: the lead spans 200 service times, so the steady-state model sizes.
pub(crate) const STEADY: SloTraffic = SloTraffic {
    block: "slo: {latency: 500ms, attainment: 99.9%, slotsPerReplica: 4}",
    rate: |i| 100.0 + (i % 200) as f64,
    service: 0.1,
    scv: 0.28,
    within: (0.5, 0.9992),
};

/// Image requests: 0.05-0.5 req/s of 35 s each (scv 1), one at a time, a 20 s cold start
/// under a 120 s SLO: 2-18 requests in flight, and the count sized over the lead from them
/// (`slo::transient`).
pub(crate) const OVER_LEAD: SloTraffic = SloTraffic {
    block: "slo: {latency: 120s, attainment: 99.9%, slotsPerReplica: 1, coldStartSeconds: 20}",
    rate: |i| 0.05 + (i % 10) as f64 * 0.05,
    service: 35.0,
    scv: 1.0,
    within: (120.0, 0.995),
};

/// The same targets with an `slo` block as well: each state has had two minutes of proxy
/// counters of `traffic`, so the estimates, the forecast and the keep-through-a-dip memory
/// are warm, and every decision runs the search for a count.
pub(crate) fn slo_targets(
    now: Time,
    traffic: &SloTraffic,
    count: usize,
) -> (Policy, Vec<(Observation, State)>) {
    slo_targets_shaped(now, traffic, count, |_, _| {})
}

/// The steady SLO targets caught short: in their two minutes of warm-up four replicas were
/// started and turned ready 15-30 s later (so the cold start is measured, with its spread),
/// and at `now` the arrivals have jumped tenfold with three more replicas 2-4 s into their cold
/// starts. Every decision is short of ready replicas and prices extra starts beside those
/// in progress (`slo::hedge`).
pub(crate) fn short_slo_targets(now: Time, count: usize) -> (Policy, Vec<(Observation, State)>) {
    const STARTED_AGO: i64 = 110;
    const JUMP: f64 = 10.0;
    slo_targets_shaped(now, &STEADY, count, |obs, s| {
        obs.pods.truncate(PODS);
        let began = now.minus_millis(STARTED_AGO * 1000);
        let started = if s <= STARTED_AGO { 0..4_i64 } else { 0..0 };
        for k in started {
            let cold_start = 15 + 5 * k;
            let ready = s <= STARTED_AGO - cold_start;
            obs.pods.push(Pod {
                name: format!("{}-warm-{k}", obs.pods[0].name),
                ready,
                created_at: Some(began),
                ready_changed_at: ready.then(|| began.plus_millis(cold_start * 1000)),
                ..Default::default()
            });
        }
        if s == 0 {
            for age in 2..=4 {
                obs.pods.push(Pod {
                    name: format!("{}-new-{age}", obs.pods[0].name),
                    created_at: Some(now.minus_millis(age * 1000)),
                    ..Default::default()
                });
            }
            let sample = obs.traffic.as_mut().expect("the SLO targets' traffic");
            sample.arrivals_total += (JUMP - 1.0) * sample.in_flight / STEADY.service;
            sample.in_flight *= JUMP;
        }
        obs.current_replicas = obs.pods.len() as u32;
    })
}

/// The SLO targets of `traffic`, with `shape` changing each observation after its traffic
/// sample for that many seconds before `now` is put in.
fn slo_targets_shaped(
    now: Time,
    traffic: &SloTraffic,
    count: usize,
    shape: impl Fn(&mut Observation, i64),
) -> (Policy, Vec<(Observation, State)>) {
    let policy =
        Policy::from_yaml(&format!("{POLICY}{}\n", traffic.block)).expect("benchmark SLO policy");
    let targets = (0..count)
        .map(|i| {
            // The history ends before the two minutes of warm-up decisions begin.
            let (obs, _) = target(i, now);
            let (_, state) = target(i, now.minus_millis(121_000));
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
                    // And the answers as clients saw them: the attainment reached.
                    answered: Some(AnsweredWithin {
                        latency_seconds: traffic.within.0,
                        requests: done,
                        within: done * traffic.within.1,
                    }),
                }
            };
            warmed(&policy, (obs, state), now, 120, |obs, s| {
                obs.traffic = Some(sample(s));
                shape(obs, s);
            })
        })
        .collect();
    (policy, targets)
}

/// The same targets with the LLM SLO: each state has had five minutes of engine samples at
/// work moving between 1,000 and 7,000 tokens/s per replica, so both responses are learnt and
/// every decision reads the monotone curves.
pub(crate) fn llm_slo_targets(now: Time, count: usize) -> (Policy, Vec<(Observation, State)>) {
    let policy = Policy::from_yaml(&format!(
        "{POLICY}engine: {{kind: vllm}}\nslo: {{ttft: {{latency: 1s}}, itl: {{latency: 50ms}}}}\n"
    ))
    .expect("benchmark LLM SLO policy");
    let targets = (0..count)
        .map(|i| {
            // The history ends before the five minutes of warm-up decisions begin.
            let (obs, _) = target(i, now);
            let (_, state) = target(i, now.minus_millis(301_000));
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
            warmed(&policy, (obs, state), now, 300, |obs, s| {
                obs.engine = Some(sample(s))
            })
        })
        .collect();
    (policy, targets)
}

/// A target after `seconds` of decisions, one a second up to `now`, each on the sample `feed`
/// puts into the observation for that many seconds before `now`; the observation then holds
/// the sample at `now`.
fn warmed(
    policy: &Policy,
    (mut obs, mut state): (Observation, State),
    now: Time,
    seconds: i64,
    feed: impl Fn(&mut Observation, i64),
) -> (Observation, State) {
    for s in (1..=seconds).rev() {
        feed(&mut obs, s);
        state = decide(policy, &obs, &state, now.minus_millis(s * 1000)).state;
    }
    feed(&mut obs, 0);
    (obs, state)
}
