//! Invariants of `decide`, checked on random inputs (finite or not) and random policies.

mod common;
use common::*;
use ebb_core::*;
use proptest::prelude::*;

/// Any f64 a broken source could send: ordinary loads, zero, negative, NaN, infinities, huge.
fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0..500.0f64,
        1 => Just(0.0),
        1 => -100.0..0.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(f64::MAX),
    ]
}

/// A policy drawn from the shapes users write: HPA metrics, Ebb signals, scale to zero.
fn any_policy() -> impl Strategy<Value = Policy> {
    (
        0u32..4,
        1u32..30,
        0u32..5,
        prop::bool::ANY,
        prop::bool::ANY,
        prop::bool::ANY,
        0u32..600,
        prop::bool::ANY,
        prop::option::of((0u32..24, 1u32..24, 0u32..40, 0u32..40)),
        prop::bool::ANY,
    )
        .prop_map(|(min, span, kind, concurrency, external, zero, window, slo, schedule, formula)| {
            let min = if zero { 0 } else { min.max(1) };
            let max = min.max(1) + span;
            let mut yaml = format!(
                "minReplicas: {min}\nmaxReplicas: {max}\nbehavior: {{scaleDown: {{stabilizationWindowSeconds: {window}}}}}\nmetrics:\n"
            );
            let metric = match kind {
                0 => "- {type: Pods, pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: 10}}}\n",
                1 => "- {type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}}\n",
                2 => "- {type: Object, object: {describedObject: {kind: Service, name: s}, metric: {name: rps}, target: {type: Value, value: 30}}}\n",
                3 => "- {type: External, external: {metric: {name: rps}, target: {type: AverageValue, averageValue: 7}}}\n",
                _ => "- {type: Pods, pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: 10}}}\n- {type: Pods, pods: {metric: {name: gpu}, target: {type: AverageValue, averageValue: 35}}}\n",
            };
            yaml.push_str(metric);
            if formula && kind >= 4 {
                yaml.push_str("formula: {expression: 'max(rps / 10.0, gpu / 35.0)', target: {type: AverageValue, averageValue: 1}}\n");
            }
            if concurrency || zero {
                yaml.push_str("concurrency: {targetPerReplica: 5}\n");
            }
            if external {
                yaml.push_str("externalCount: {mode: backlog, itemsPerReplicaPerSecond: 2}\n");
            }
            if zero {
                yaml.push_str("scaleToZero: {idleSeconds: 30}\n");
            }
            if slo {
                yaml.push_str("slo: {latency: 500ms, attainment: 99.9%, slotsPerReplica: 4}\n");
            }
            if let Some((from, hours, floor, ceiling)) = schedule {
                // Two overlapping windows: a floor, and a ceiling no lower than either floor.
                let floor = 1 + floor % max;
                let ceiling = (min.max(floor) + ceiling % max).min(max);
                let to = (from + hours) % 24;
                yaml.push_str(&format!(
                    "schedules:\n- {{name: floor, from: '{from:02}:00', to: '{to:02}:30', minReplicas: {floor}}}\n- {{name: cap, from: '{to:02}:00', to: '{from:02}:00', days: [Mon-Fri], maxReplicas: {ceiling}}}\n"
                ));
            }
            policy(&yaml)
        })
}

fn any_observation(now: Time) -> impl Strategy<Value = Observation> {
    (
        0u32..40,
        prop::collection::vec(any_value(), 0..12),
        prop::collection::vec(any_value(), 0..12),
        any_value(),
        (any_value(), any_value(), any_value()),
        any_value(),
        0i64..400,
        prop::bool::ANY,
        0i64..(7 * 86_400_000),
    )
        .prop_map(
            move |(current, rps, gpu, object, (inf, arr, done), ext, age, with_pods, epoch)| {
                let at = now.minus_millis(age * 1000);
                let mut o = obs(current, vec![]);
                o.epoch_unix_ms = 1_767_225_600_000 + epoch;
                if !with_pods {
                    o.pods.clear();
                }
                for p in o.pods.iter_mut() {
                    p.requests.insert("cpu".into(), 1000);
                }
                o.metrics = vec![
                    per_pod("rps", &rps, at),
                    per_pod("gpu", &gpu, at),
                    per_pod("cpu", &rps, at),
                    MetricObservation {
                        name: "rps".into(),
                        values: MetricValues::Object { value: object, at },
                    },
                ];
                o.metrics.retain(|_| true);
                o.traffic = Some(TrafficSample {
                    service: Some(ServiceTotals {
                        requests: done,
                        seconds: done * 0.1,
                        squared_seconds: inf,
                        within: None,
                    }),
                    ..traffic(at, inf, arr, done)
                });
                o.external_count = Some(Sample { value: ext, at });
                o
            },
        )
}

/// The policy's bounds with its open schedule windows' (pre-warming floors left out: they
/// only raise the count).
fn open_bounds(p: &Policy, o: &Observation, now: Time) -> (u32, u32) {
    bounds_with_lead(p, o, now, 0)
}

/// The same with floors rising `lead_ms` ahead of their windows.
fn bounds_with_lead(p: &Policy, o: &Observation, now: Time, lead_ms: i64) -> (u32, u32) {
    let unix_ms = o.epoch_unix_ms + now.as_millis();
    let own = (p.min_replicas, p.max_replicas);
    let b = ebb_core::schedule::bounds(&p.schedules, own, unix_ms, lead_ms);
    (b.min_replicas, b.max_replicas)
}

/// A decision within `1..=max`, never lower than `current` when a proposal is missing, and
/// serializable.
fn held_within_bounds(d: &Decision, current: u32, max: u32) -> Result<(), TestCaseError> {
    prop_assert!(
        d.desired_replicas >= 1 && d.desired_replicas <= max,
        "{}",
        d.summary()
    );
    if d.proposals.iter().any(|pr| pr.replicas.is_none()) {
        prop_assert!(
            d.desired_replicas >= current,
            "{} -> {}: {}",
            current,
            d.desired_replicas,
            d.summary()
        );
    }
    prop_assert!(serde_json::to_string(d).is_ok());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The pools' guard never lowers a pool, never passes a maximum it did not start above,
    /// and, where the maxima leave room, keeps decode per prefill within the ratio.
    #[test]
    fn the_pool_guard_only_raises_within_maxima(
        min in 0.0..5.0f64,
        span in 0.0..5.0f64,
        (p, p_max) in (0u32..50, 0u32..50),
        (d, d_max) in (0u32..50, 0u32..50),
        held in prop::bool::ANY,
    ) {
        use ebb_core::pools::{balance, Ratio, Wants};
        let ratio = Ratio { min, max: if span == 0.0 { f64::INFINITY } else { min + span } };
        let prefill = Wants { desired: p, min: 0, max: p_max, held: false };
        let decode = Wants { desired: d, min: 0, max: d_max, held };
        let (p2, d2) = balance(ratio, prefill, decode);
        prop_assert!(p2 >= p && d2 >= d);
        prop_assert!(p2 <= p.max(p_max) && d2 <= d.max(d_max));
        prop_assert!(!held || d2 == d);
        // Raised exactly to what the other pool's own count asks for, rounded up, or to the
        // maximum: never more.
        let d_asked = (ratio.min * f64::from(p)).ceil();
        let p_asked = (f64::from(d) / ratio.max).ceil();
        prop_assert!(d2 == d || f64::from(d2) == d_asked.min(f64::from(d_max)), "{p2} {d2} {ratio:?}");
        prop_assert!(p2 == p || f64::from(p2) == p_asked.min(f64::from(p_max)), "{p2} {d2} {ratio:?}");
        // At most one pool is raised.
        prop_assert!(p2 == p || d2 == d);
    }

    #[test]
    fn desired_stays_within_bounds_and_nothing_panics(
        p in any_policy(),
        o in any_observation(t(1000)),
        history in prop::collection::vec((0i64..1000, 0u32..40), 0..20),
    ) {
        let state = State {
            recommendations: history.iter().map(|(s, r)| state::Recommendation { at: t(*s), replicas: *r }).collect(),
            ..Default::default()
        };
        let d = decide(&p, &o, &state, t(1000));
        let (min, max) = open_bounds(&p, &o, t(1000));
        let zero_allowed = (p.scale_to_zero.is_some() && min == p.min_replicas) || o.current_replicas == 0;
        prop_assert!(
            (d.desired_replicas >= min && d.desired_replicas <= max)
                || (d.desired_replicas == 0 && zero_allowed),
            "desired {} outside [{}, {}]: {}", d.desired_replicas, min, max, d.summary()
        );
        // The summary and JSON rendering never fail either.
        prop_assert!(serde_json::to_string(&d).is_ok());
    }

    #[test]
    fn missing_metrics_never_lower_replicas(
        p in any_policy(),
        o in any_observation(t(1000)),
    ) {
        let d = decide(&p, &o, &State::default(), t(1000));
        let current = o.current_replicas;
        let (min, max) = open_bounds(&p, &o, t(1000));
        let in_range = current >= min.max(1) && current <= max;
        let any_missing = d.proposals.iter().any(|pr| pr.replicas.is_none());
        if in_range && any_missing {
            prop_assert!(
                d.desired_replicas >= current,
                "{} -> {} with a missing metric: {}", current, d.desired_replicas, d.summary()
            );
        }
    }

    #[test]
    fn wholly_missing_metrics_hold_replicas(
        p in any_policy(),
        current in 1u32..30,
    ) {
        let mut o = obs(current, vec![]);
        o.traffic = None;
        o.external_count = None;
        let d = decide(&p, &o, &State::default(), t(1000));
        // No floor (even one pre-warming a day ahead) above it, no ceiling below it.
        let (floor, _) = bounds_with_lead(&p, &o, t(1000), 86_400_000);
        let (_, ceiling) = open_bounds(&p, &o, t(1000));
        if current >= floor && current <= ceiling {
            prop_assert_eq!(d.desired_replicas, current, "{}", d.summary());
        }
    }

    /// The SLO model over a run of counters a broken source could send (NaN, negative,
    /// running backwards, stale): replicas stay within bounds, and a decision whose SLO
    /// proposal is missing never lowers them.
    #[test]
    fn slo_model_survives_absurd_counters(
        steps in prop::collection::vec((any_value(), any_value(), any_value(), 0i64..200, prop::bool::ANY), 1..40),
    ) {
        let p = policy("minReplicas: 1\nmaxReplicas: 30\nslo: {latency: 500ms, slotsPerReplica: 4, coldStartSeconds: 10}\n");
        let mut state = State::default();
        let mut current = 5u32;
        for (i, (arrivals, service, inflight, age, absent)) in steps.iter().enumerate() {
            let now = t(1000 + i as i64);
            let mut o = obs(current, vec![]);
            if !absent {
                o.traffic = Some(TrafficSample {
                    service: Some(ServiceTotals {
                        requests: *arrivals,
                        seconds: *service,
                        squared_seconds: *service,
                        // An absurd count within the SLO as well (more than served, NaN, ...).
                        within: Some(WithinLatency { latency_seconds: 0.5, requests: *inflight }),
                    }),
                    // And absurd counts of the answers reached (more within than ended, ...).
                    answered: Some(AnsweredWithin {
                        latency_seconds: 0.5,
                        requests: *arrivals,
                        within: *inflight,
                    }),
                    ..traffic(now.minus_millis(age * 1000), *inflight, *arrivals, *arrivals)
                });
            }
            let d = decide(&p, &o, &state, now);
            held_within_bounds(&d, current, 30)?;
            state = d.applied_state();
            current = d.desired_replicas;
        }
    }

    /// Bursts on a clock with silence between (any period, length, rate and jitter), under
    /// an SLO that may go to zero through the silences, with samples lost at random: the
    /// count stays within bounds; it goes to zero only on a fresh sample with nothing in
    /// flight and nothing arriving; and a decision with a missing proposal never lowers it.
    #[test]
    fn zero_through_silences_only_on_fresh_silence(
        period in 60i64..400,
        length in 3i64..40,
        rate in 5.0..300.0f64,
        jitter in prop::collection::vec(0i64..8, 8),
        lost in prop::collection::vec(prop::bool::weighted(0.05), 2400),
    ) {
        let p = policy("minReplicas: 0\nmaxReplicas: 30\nslo: {latency: 500ms, attainment: 99.9%, slotsPerReplica: 4, coldStartSeconds: 10}\nscaleToZero: {idleSeconds: never}\n");
        let (mut state, mut current, mut total) = (State::default(), 1u32, 0.0);
        let seconds = (period * 6).min(2400);
        for s in 0..seconds {
            let cycle = (s / period) as usize;
            let start = cycle as i64 * period + jitter[cycle % jitter.len()];
            let arriving = if (start..start + length).contains(&s) { rate } else { 0.0 };
            total += arriving;
            let mut o = obs(current, vec![]);
            let sample = !lost[s as usize];
            if sample {
                o.traffic = Some(TrafficSample {
                    service: Some(ServiceTotals {
                        requests: total,
                        seconds: total * 0.1,
                        squared_seconds: total * 0.02,
                        within: None,
                    }),
                    ..traffic(t(s), arriving * 0.1, total, total)
                });
            }
            let d = decide(&p, &o, &state, t(s));
            prop_assert!(d.desired_replicas <= 30, "{}", d.summary());
            if d.desired_replicas == 0 && current > 0 {
                prop_assert!(sample && arriving == 0.0, "to zero at {} without a fresh silence: {}", s, d.summary());
            }
            if d.proposals.iter().any(|pr| pr.replicas.is_none()) {
                prop_assert!(d.desired_replicas >= current, "{} -> {} at {}: {}", current, d.desired_replicas, s, d.summary());
            }
            state = d.applied_state();
            current = d.desired_replicas;
        }
    }

    /// The LLM SLO over engine samples a broken scrape could give (NaN, negative, stale,
    /// absent, replicas starting): replicas stay within bounds, and a decision whose LLM SLO
    /// proposal is missing never lowers them.
    #[test]
    fn llm_slo_survives_absurd_engine_samples(
        steps in prop::collection::vec(
            (any_value(), any_value(), any_value(), any_value(), 0i64..200, prop::bool::ANY, prop::bool::ANY),
            1..40,
        ),
    ) {
        let p = policy("minReplicas: 1\nmaxReplicas: 30\nengine: {kind: vllm}\nslo: {ttft: {latency: 2s}, itl: {latency: 50ms}, coldStartSeconds: 10}\n");
        let mut state = State::default();
        let mut current = 5u32;
        for (i, (tokens, ttft, itl, waiting, age, absent, starting)) in steps.iter().enumerate() {
            let now = t(1000 + i as i64);
            let mut o = obs(current, vec![]);
            if !absent {
                o.engine = Some(EngineSample {
                    at: now.minus_millis(age * 1000),
                    replicas: current,
                    tokens_per_second: Some(*tokens),
                    waiting: *waiting,
                    kv_cache: Some(*ttft),
                    itl_quantile: Some(*itl),
                    ttft_quantile: Some(*ttft),
                    starting: *starting,
                });
            }
            let d = decide(&p, &o, &state, now);
            held_within_bounds(&d, current, 30)?;
            state = d.applied_state();
            current = d.desired_replicas;
        }
    }

    #[test]
    fn scale_down_never_goes_below_a_recommendation_in_the_window(
        window in 0u32..400,
        loads in prop::collection::vec(0.0..200.0f64, 1..60),
        step in 5i64..60,
    ) {
        let p = policy(&format!(
            "{RPS_POLICY}behavior: {{scaleDown: {{stabilizationWindowSeconds: {window}}}}}\n"
        ));
        let mut state = State::default();
        let mut current = 5u32;
        let mut recs: Vec<(Time, u32)> = Vec::new();
        for (i, load) in loads.iter().enumerate() {
            let now = t(1000 + i as i64 * step);
            let o = obs(current, vec![per_pod("rps", &vec![*load; current as usize], now)]);
            let d = decide(&p, &o, &state, now);
            let rec = d.state.recommendations.last().map(|r| r.replicas).unwrap_or(current);
            recs.push((now, rec));
            if d.desired_replicas < current {
                let cutoff = now.minus_millis(i64::from(window) * 1000);
                let highest = recs.iter().filter(|(at, _)| *at > cutoff).map(|(_, r)| *r).max().unwrap_or(0);
                prop_assert!(
                    d.desired_replicas >= highest,
                    "scaled down to {} below recommendation {} within {}s", d.desired_replicas, highest, window
                );
            }
            state = d.applied_state();
            current = d.desired_replicas;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `decide` prunes its own state's recommendations in place (`normalize_owned`); the
    /// conformance cases read `normalize` on a borrowed state. Both are one computation.
    #[test]
    fn normalizing_in_place_equals_normalizing_a_borrowed_state(
        history in prop::collection::vec((0i64..1000, 0u32..40), 0..40),
        (up, down) in (0u32..600, 0u32..600),
        (current, recommendation) in (0u32..40, 0u32..40),
        (events_up, events_down) in (prop::collection::vec((0i64..1000, 1u32..5), 0..5), prop::collection::vec((0i64..1000, 1u32..5), 0..5)),
    ) {
        use ebb_core::behavior::{normalize, normalize_owned, NormalizeInput};
        let mut behavior = ebb_core::policy::Behavior::default();
        behavior.scale_up.stabilization_window_seconds = up;
        behavior.scale_down.stabilization_window_seconds = down;
        let events = |e: &[(i64, u32)]| e.iter().map(|(s, c)| state::ScaleEvent { at: t(*s), change: *c }).collect();
        let state = State {
            recommendations: history.iter().map(|(s, r)| state::Recommendation { at: t(*s), replicas: *r }).collect(),
            scale_up_events: events(&events_up),
            scale_down_events: events(&events_down),
            ..Default::default()
        };
        let input = NormalizeInput {
            behavior: &behavior,
            min_replicas: 1,
            max_replicas: 40,
            current_replicas: current,
            recommendation,
            now: t(1000),
        };
        let borrowed = normalize(&input, &state);
        let mut own = state.clone();
        let owned = normalize_owned(&input, &mut own);
        prop_assert_eq!(&borrowed, &owned);
        prop_assert!(own.recommendations.is_empty(), "taken into the result");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Normalization keeps only the recommendations that can still bound a decision; the
    /// stabilized count is the one the whole history gives (HPA keeps every recommendation
    /// either window still sees), step after step, even when the windows change between steps.
    #[test]
    fn the_pruned_history_stabilizes_as_the_whole_history_does(
        steps in prop::collection::vec((0i64..40, 0u32..40, 0u32..120, 0u32..120, 0u32..40), 1..60),
    ) {
        use ebb_core::behavior::{normalize, NormalizeInput};
        let mut state = State::default();
        let mut whole: Vec<(Time, u32)> = Vec::new();
        let mut now = t(0);
        for (gap, recommendation, up, down, current) in steps {
            now = now.plus_millis(gap * 1000);
            let mut behavior = ebb_core::policy::Behavior::default();
            behavior.scale_up.stabilization_window_seconds = up;
            behavior.scale_down.stabilization_window_seconds = down;
            let input = NormalizeInput {
                behavior: &behavior,
                min_replicas: 0,
                max_replicas: 40,
                current_replicas: current,
                recommendation,
                now,
            };
            let after = |window: u32| now.minus_millis(i64::from(window) * 1000);
            let in_window = |window: u32| {
                whole.iter().filter(move |(at, _)| *at > after(window)).map(|(_, r)| *r)
            };
            let up_bound = in_window(up).chain([recommendation]).min().unwrap_or(recommendation);
            let down_bound = in_window(down).chain([recommendation]).max().unwrap_or(recommendation);
            let expected = current.max(up_bound).min(down_bound);
            let normalized = normalize(&input, &state);
            prop_assert_eq!(normalized.stabilized, expected);
            // HPA forgets what neither window sees now, whatever the next windows are.
            let oldest = after(up).min(after(down));
            whole.retain(|(at, _)| *at > oldest);
            whole.push((now, recommendation));
            prop_assert!(normalized.recommendations.len() <= whole.len());
            state.recommendations = normalized.recommendations;
        }
    }

    /// The keep-through-a-dip memory drops proposals that a later, higher one outlives; its
    /// maximum is still that of the memory that keeps every proposal within the window,
    /// whatever the window does from one decision to the next (it follows the measured cold
    /// start; a proposal once outside it is forgotten by both).
    #[test]
    fn the_dip_memory_keeps_the_maximum_of_its_window(
        steps in prop::collection::vec((0i64..3000, 0u32..12, 1i64..30_000), 1..80),
    ) {
        use ebb_core::slo::estimate::RecentProposals;
        let mut memory = RecentProposals::default();
        let mut all: Vec<(i64, u32)> = Vec::new();
        let mut now = 0i64;
        for (gap, proposal, keep_ms) in steps {
            now += gap;
            let got = memory.remember(proposal, t(0).plus_millis(now), keep_ms);
            all.retain(|(at, _)| now - at < keep_ms);
            all.push((now, proposal));
            let want = all.iter().map(|r| r.1).max();
            prop_assert_eq!(Some(got), want);
        }
    }
}
