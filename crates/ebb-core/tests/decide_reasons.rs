//! One scenario per reason a decision can carry, each asserting its reason and its outcome,
//! and a check that no reason code is left without a scenario.

mod common;
use common::*;
use ebb_core::*;

fn metric_proposal() -> Decision {
    let d = decide(
        &policy(RPS_POLICY),
        &obs(3, vec![per_pod("rps", &[20.0, 20.0, 20.0], t(100))]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 6);
    assert!(d.has_reason("MetricProposal"), "{:?}", d.reasons);
    assert_eq!(
        d.reasons[0].to_string(),
        "metric rps proposed 6 (current 20, target 10 per pod)"
    );
    assert_eq!(d.limit, LimitReason::DesiredWithinRange);
    d
}

fn within_tolerance() -> Decision {
    let d = decide(
        &policy(RPS_POLICY),
        &obs(3, vec![per_pod("rps", &[10.5, 10.5, 10.5], t(100))]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 3);
    assert!(d.has_reason("WithinTolerance"));
    d
}

fn metric_missing_and_no_usable_metric() -> Decision {
    let d = decide(
        &policy(RPS_POLICY),
        &obs(5, vec![]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 5);
    assert!(d.has_reason("MetricMissing"));
    assert!(d.has_reason("NoUsableMetric"));
    assert!(d.no_usable_metric());
    assert!(d.reasons[0]
        .to_string()
        .starts_with("metric rps missing: no scale-down"));
    d
}

fn scale_down_blocked_by_missing() -> Decision {
    let p = policy(
        r#"
maxReplicas: 20
behavior: {scaleDown: {stabilizationWindowSeconds: 0}}
metrics:
- type: Pods
  pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: "10"}}
- type: Pods
  pods: {metric: {name: gpu}, target: {type: AverageValue, averageValue: "35"}}
"#,
    );
    // rps alone would scale 8 -> 1; gpu returned NaN for every pod.
    let d = decide(
        &p,
        &obs(
            8,
            vec![
                per_pod("rps", &[1.0; 8], t(100)),
                per_pod("gpu", &[f64::NAN; 8], t(100)),
            ],
        ),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 8);
    assert!(d.has_reason("ScaleDownBlockedByMissing"));
    assert!(d
        .reasons
        .iter()
        .any(|r| r.to_string().contains("metric gpu missing")));
    d
}

const PANIC_POLICY: &str = r#"
maxReplicas: 50
concurrency: {targetPerReplica: 10}
behavior:
  scaleUp: {policies: [{type: Pods, value: 1, periodSeconds: 60}]}
  scaleDown: {stabilizationWindowSeconds: 0}
"#;

fn panic_scales_at_once() -> Decision {
    // 50 s of calm at 15 in flight on 2 replicas, then a spike to 60 in flight.
    let mut history = steady(0, 50, 15.0);
    let last = *history.last().unwrap();
    for s in 51..=56 {
        history.push(traffic(
            t(s),
            60.0,
            last.arrivals_total + 60.0 * (s - 50) as f64,
            last.completions_total,
        ));
    }
    let state = State {
        traffic: history,
        ..Default::default()
    };
    let mut o = obs(2, vec![]);
    o.traffic = state.traffic.last().copied();
    let d = decide(&policy(PANIC_POLICY), &o, &state, t(56));
    // Panic window (6 s) demand 60 / 10 = 6 replicas = 300% of 2: straight to 6, past the
    // Pods 1/60s scale-up policy.
    assert!(d.panic);
    assert_eq!(d.desired_replicas, 6);
    assert!(d.has_reason("Panic"));
    assert!(
        d.has_reason("ScaleUpLimit"),
        "the policy limit is reported, then bypassed"
    );
    d
}

fn panic_holds_scale_down() -> Decision {
    let state = State {
        traffic: steady(0, 60, 1.0),
        panic: Some(ebb_core::state::PanicState {
            since: t(40),
            last_over_threshold: t(50),
            max_replicas: 6,
        }),
        ..Default::default()
    };
    let mut o = obs(6, vec![]);
    o.traffic = state.traffic.last().copied();
    let d = decide(&policy(PANIC_POLICY), &o, &state, t(60));
    assert!(d.panic);
    assert_eq!(d.desired_replicas, 6);
    assert!(d.has_reason("PanicHoldsScaleDown"));
    d
}

fn panic_ends() -> Decision {
    let state = State {
        traffic: steady(0, 120, 10.0),
        panic: Some(ebb_core::state::PanicState {
            since: t(40),
            last_over_threshold: t(59),
            max_replicas: 6,
        }),
        ..Default::default()
    };
    let mut o = obs(6, vec![]);
    o.traffic = state.traffic.last().copied();
    let d = decide(&policy(PANIC_POLICY), &o, &state, t(120));
    assert!(!d.panic);
    assert!(d.has_reason("PanicEnded"));
    // 10 in flight / 10 per replica = 1, scale-down window 0, default 100%/15s policy.
    assert_eq!(d.desired_replicas, 1);
    d
}

fn scale_up_stabilized() -> Decision {
    let p = policy(&format!(
        "{RPS_POLICY}behavior: {{scaleUp: {{stabilizationWindowSeconds: 60}}}}\n"
    ));
    let state = State {
        recommendations: vec![ebb_core::state::Recommendation {
            at: t(70),
            replicas: 4,
        }],
        ..Default::default()
    };
    let d = decide(
        &p,
        &obs(3, vec![per_pod("rps", &[30.0; 3], t(100))]),
        &state,
        t(100),
    );
    assert_eq!(d.desired_replicas, 4);
    assert!(d.has_reason("ScaleUpStabilized"));
    d
}

fn scale_down_stabilized() -> Decision {
    let state = State {
        recommendations: vec![ebb_core::state::Recommendation {
            at: t(0),
            replicas: 10,
        }],
        ..Default::default()
    };
    let d = decide(
        &policy(RPS_POLICY),
        &obs(10, vec![per_pod("rps", &[1.0; 10], t(100))]),
        &state,
        t(100),
    );
    assert_eq!(d.desired_replicas, 10);
    assert!(d.has_reason("ScaleDownStabilized"));
    assert!(d
        .summary()
        .contains("held by scale-down stabilization window 300s"));
    d
}

fn scale_up_limit() -> Decision {
    let p = policy(&format!(
        "{RPS_POLICY}behavior: {{scaleUp: {{policies: [{{type: Pods, value: 1, periodSeconds: 60}}]}}}}\n"
    ));
    let d = decide(
        &p,
        &obs(3, vec![per_pod("rps", &[30.0; 3], t(100))]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 4);
    assert_eq!(d.limit, LimitReason::ScaleUpLimit);
    assert!(d
        .summary()
        .contains("scale-up limited by policy Pods 1/60s to 4"));
    d
}

fn scale_down_limit() -> Decision {
    let p = policy(&format!(
        "{RPS_POLICY}behavior: {{scaleDown: {{stabilizationWindowSeconds: 0, policies: [{{type: Pods, value: 1, periodSeconds: 60}}]}}}}\n"
    ));
    let d = decide(
        &p,
        &obs(10, vec![per_pod("rps", &[1.0; 10], t(100))]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 9);
    assert!(d.has_reason("ScaleDownLimit"));
    d
}

fn scale_up_disabled() -> Decision {
    let p = policy(&format!(
        "{RPS_POLICY}behavior: {{scaleUp: {{selectPolicy: Disabled}}}}\n"
    ));
    let d = decide(
        &p,
        &obs(3, vec![per_pod("rps", &[30.0; 3], t(100))]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 3);
    assert!(d.has_reason("ScaleUpDisabled"));
    d
}

fn scale_down_disabled() -> Decision {
    let p = policy(&format!(
        "{RPS_POLICY}behavior: {{scaleDown: {{selectPolicy: Disabled, stabilizationWindowSeconds: 0}}}}\n"
    ));
    let d = decide(
        &p,
        &obs(10, vec![per_pod("rps", &[1.0; 10], t(100))]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 10);
    assert!(d.has_reason("ScaleDownDisabled"));
    d
}

fn too_many_replicas() -> Decision {
    let p = policy(&RPS_POLICY.replace("maxReplicas: 20", "maxReplicas: 5"));
    let d = decide(
        &p,
        &obs(4, vec![per_pod("rps", &[50.0; 4], t(100))]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 5);
    assert!(d.has_reason("TooManyReplicas"));
    assert!(d.summary().contains("clamped to maxReplicas 5"));
    d
}

fn too_few_replicas() -> Decision {
    let p = policy(&format!(
        "{}behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n",
        RPS_POLICY.replace("minReplicas: 1", "minReplicas: 3")
    ));
    let d = decide(
        &p,
        &obs(4, vec![per_pod("rps", &[1.0; 4], t(100))]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 3);
    assert!(d.has_reason("TooFewReplicas"));
    d
}

fn current_above_max() -> Decision {
    let d = decide(
        &policy(RPS_POLICY),
        &obs(25, vec![]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 20);
    assert!(d.has_reason("CurrentAboveMax"));
    d
}

fn current_below_min() -> Decision {
    let p = policy(&RPS_POLICY.replace("minReplicas: 1", "minReplicas: 3"));
    let d = decide(&p, &obs(1, vec![]), &State::default(), t(100));
    assert_eq!(d.desired_replicas, 3);
    assert!(d.has_reason("CurrentBelowMin"));
    d
}

fn scaling_disabled() -> Decision {
    let d = decide(
        &policy(RPS_POLICY),
        &obs(0, vec![]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 0);
    assert!(d.has_reason("ScalingDisabled"));
    d
}

const ZERO_POLICY: &str = r#"
minReplicas: 0
maxReplicas: 10
concurrency: {targetPerReplica: 4}
scaleToZero: {idleSeconds: 60, activationThreshold: 1}
"#;

fn scale_to_zero() -> Decision {
    let state = State {
        traffic: steady(0, 100, 0.0),
        last_active_at: Some(t(30)),
        ..Default::default()
    };
    let mut o = obs(2, vec![]);
    o.traffic = state.traffic.last().copied();
    let d = decide(&policy(ZERO_POLICY), &o, &state, t(100));
    assert_eq!(d.desired_replicas, 0);
    assert!(d.has_reason("ScaleToZero"));
    d
}

/// Idle for 40 s of the 60 the policy asks: the proposal of zero is held at one, and the
/// reason says why when the policy's own minReplicas is 0.
fn held_at_one_until_scale_to_zero() -> Decision {
    let state = State {
        traffic: steady(0, 100, 0.0),
        last_active_at: Some(t(60)),
        ..Default::default()
    };
    let mut o = obs(2, vec![]);
    o.traffic = state.traffic.last().copied();
    let p = policy(&format!(
        "{ZERO_POLICY}behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n"
    ));
    let d = decide(&p, &o, &state, t(100));
    assert_eq!(d.desired_replicas, 1);
    assert!(d.has_reason("TooFewReplicas"));
    assert!(
        d.summary()
            .contains("held at 1: minReplicas 0 reaches zero only through scaleToZero"),
        "{}",
        d.summary()
    );
    d
}

fn activated() -> Decision {
    let state = State {
        traffic: steady(0, 99, 0.0),
        last_active_at: Some(t(0)),
        ..Default::default()
    };
    let mut o = obs(0, vec![]);
    o.traffic = Some(traffic(t(100), 9.0, 9.0, 0.0));
    let d = decide(&policy(ZERO_POLICY), &o, &state, t(100));
    assert!(d.desired_replicas >= 1);
    assert!(d.has_reason("Activated"));
    assert_eq!(d.state.last_active_at, Some(t(100)));
    d
}

fn stays_at_zero() -> Decision {
    let state = State {
        traffic: steady(0, 99, 0.0),
        ..Default::default()
    };
    let mut o = obs(0, vec![]);
    o.traffic = Some(traffic(t(100), 0.0, 0.0, 0.0));
    let d = decide(&policy(ZERO_POLICY), &o, &state, t(100));
    assert_eq!(d.desired_replicas, 0);
    assert!(d.has_reason("StaysAtZero"));
    d
}

const ZERO_BACKLOG_POLICY: &str = r#"
minReplicas: 0
maxReplicas: 40
concurrency: {targetPerReplica: 4}
externalCount: {mode: backlog, itemsPerReplicaPerSecond: 5, drainSeconds: 120}
scaleToZero: {idleSeconds: 300, activationThreshold: 1}
"#;

/// Any known demand activates: a backlog of 5,000 items with no traffic sample at all.
fn activated_by_backlog_without_traffic() -> Decision {
    let mut o = obs(0, vec![]);
    o.external_count = Some(Sample {
        value: 5000.0,
        at: t(100),
    });
    let d = decide(&policy(ZERO_BACKLOG_POLICY), &o, &State::default(), t(100));
    // 5,000 items drained in 120 s at 5 items/s per replica: 9 replicas.
    assert_eq!(d.desired_replicas, 9, "{}", d.summary());
    let Some(Reason::Activated { signal, value }) =
        d.reasons.iter().find(|r| r.code() == "Activated")
    else {
        panic!("not activated: {}", d.summary())
    };
    assert_eq!((signal.as_str(), *value), ("externalCount", 5000.0));
    d
}

/// With no source able to say, the target stays at zero and the reason says the demand is
/// unknown, not low.
fn demand_unknown() -> Decision {
    let d = decide(
        &policy(ZERO_BACKLOG_POLICY),
        &obs(0, vec![]),
        &State::default(),
        t(100),
    );
    assert_eq!(d.desired_replicas, 0);
    assert!(!d.has_reason("StaysAtZero"), "{}", d.summary());
    let Some(Reason::DemandUnknown { sources }) =
        d.reasons.iter().find(|r| r.code() == "DemandUnknown")
    else {
        panic!("no DemandUnknown: {}", d.summary())
    };
    assert_eq!(sources, &["traffic", "externalCount"]);
    d
}

/// Coming back from zero starts at least the activation replicas, even when one would do.
fn activation_scale() -> Decision {
    let p = policy(&format!("{ZERO_POLICY}initialReplicas: 1\n").replace(
        "activationThreshold: 1}",
        "activationThreshold: 1, activationReplicas: 3}",
    ));
    let state = State {
        traffic: steady(0, 99, 0.0),
        last_active_at: Some(t(0)),
        ..Default::default()
    };
    let mut o = obs(0, vec![]);
    o.traffic = Some(traffic(t(100), 1.0, 1.0, 0.0));
    let d = decide(&p, &o, &state, t(100));
    assert_eq!(d.desired_replicas, 3, "{}", d.summary());
    assert!(d.has_reason("Activated") && d.has_reason("ActivationScale"));
    d
}

/// A new autoscaler holds its initial scale until that many replicas are ready, then follows
/// its signals (through the scale-down window, which remembers the initial count).
fn initial_scale() -> Decision {
    let p = policy(&format!(
        "{RPS_POLICY}initialReplicas: 5\nbehavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n"
    ));
    let quiet = |ready: usize| {
        let mut o = obs(5, vec![per_pod("rps", &[1.0; 5], t(100))]);
        for pod in o.pods.iter_mut().skip(ready) {
            pod.ready = false;
        }
        o
    };
    let d = decide(&p, &quiet(2), &State::default(), t(100));
    assert_eq!(d.desired_replicas, 5, "{}", d.summary());
    let Some(Reason::InitialScale { replicas, ready }) =
        d.reasons.iter().find(|r| r.code() == "InitialScale")
    else {
        panic!("no InitialScale: {}", d.summary())
    };
    assert_eq!((*replicas, *ready), (5, 2));
    assert!(!d.state.initial_scale_reached);
    // All five ready: reached, and the quiet signal scales down from here on.
    let later = decide(&p, &quiet(5), &d.state, t(101));
    assert!(later.state.initial_scale_reached);
    assert!(later.desired_replicas < 5, "{}", later.summary());
    // Never again, even with fewer ready.
    let after = decide(&p, &quiet(1), &later.state, t(102));
    assert!(!after.has_reason("InitialScale"), "{}", after.summary());
    // A state stored before the field existed is a running target: no initial scale.
    let stored: State = serde_json::from_str("{}").unwrap();
    assert!(stored.initial_scale_reached);
    d
}

/// An operator's hold keeps the count (or sets one) and reports what the policy would do; the
/// policy's windows go on remembering, so unpausing resumes where it would have been.
fn paused() -> Decision {
    let busy = |p: &Policy, state: &State| {
        decide(
            p,
            &obs(2, vec![per_pod("rps", &[30.0, 30.0], t(100))]),
            state,
            t(100),
        )
    };
    let mut p = policy(RPS_POLICY);
    let free = busy(&p, &State::default());
    assert!(free.desired_replicas > 2, "{}", free.summary());
    p.hold = Some(Hold::Current);
    let d = busy(&p, &State::default());
    assert_eq!(d.desired_replicas, 2, "{}", d.summary());
    assert_eq!(d.proposed_replicas, free.desired_replicas);
    let Some(Reason::Paused { held, would_be }) = d.reasons.iter().find(|r| r.code() == "Paused")
    else {
        panic!("no Paused: {}", d.summary())
    };
    assert_eq!((*held, *would_be), (2, free.desired_replicas));
    assert_eq!(d.state.recommendations, free.state.recommendations);
    p.hold = Some(Hold::Replicas(1));
    let set = busy(&p, &State::default());
    assert_eq!(set.desired_replicas, 1);
    assert_eq!(
        set.victims.len(),
        1,
        "a set count below the current one removes pods"
    );
    d
}

/// A formula combines its inputs (which no longer propose on their own) into one composite
/// with its own target; a missing input makes the composite missing, never zero, and a
/// failing input's source falls back for the composite.
fn formula() -> Decision {
    let p = policy(
        r#"
maxReplicas: 20
behavior: {scaleDown: {stabilizationWindowSeconds: 0}}
metrics:
- {type: Pods, pods: {metric: {name: waiting}, target: {type: AverageValue, averageValue: "2"}}}
- {type: External, external: {metric: {name: rps}, target: {type: Value, value: "30"}}}
formula:
  name: load
  expression: "max(waiting / 2.0, rps / 30.0)"
  target: {type: AverageValue, averageValue: "1"}
"#,
    );
    let rps = |value: f64| MetricObservation {
        name: "rps".into(),
        values: MetricValues::External {
            values: vec![value],
            at: t(100),
        },
    };
    // Inputs are totals over the target: 4.4 waiting in all, 120 req/s.
    let both = obs(2, vec![per_pod("waiting", &[2.0, 2.4], t(100)), rps(120.0)]);
    let d = decide(&p, &both, &State::default(), t(100));
    assert_eq!(d.desired_replicas, 4, "{}", d.summary());
    assert_eq!(
        d.reasons[0].to_string(),
        "formula load = max(waiting / 2.0, rps / 30.0) = 4 with rps 120, waiting 4.4"
    );
    let names: Vec<&str> = d.proposals.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["load"], "the inputs propose nothing on their own");
    // Absurd samples (their milli-units overflow an integer sum) hold the count, no panic.
    let absurd = obs(
        2,
        vec![per_pod("waiting", &[1e300, 1e300], t(100)), rps(1e300)],
    );
    let odd = decide(&p, &absurd, &State::default(), t(100));
    assert!(odd.desired_replicas >= 2, "{}", odd.summary());
    // The rps source is down: the composite is missing and the count is held, not lowered.
    let quiet = obs(6, vec![per_pod("waiting", &[0.0; 6], t(100))]);
    let held = decide(&p, &quiet, &State::default(), t(100));
    assert_eq!(held.desired_replicas, 6, "{}", held.summary());
    assert!(held
        .reasons
        .iter()
        .any(|r| r.to_string().starts_with("metric load missing")
            && r.to_string().contains("input rps missing")));
    // ... and once past its threshold, its fallback stands in for the composite.
    let mut failing = quiet.clone();
    failing.fallbacks = vec![SourceFallback {
        source: "prom".into(),
        failures: 3,
        metrics: vec!["rps".into()],
        action: Fallback::Replicas(3),
    }];
    let fell = decide(&p, &failing, &State::default(), t(100));
    assert_eq!(fell.desired_replicas, 3, "{}", fell.summary());
    assert!(fell.has_reason("Fallback"), "{}", fell.summary());
    d
}

/// Unix milliseconds of a UTC wall-clock time.
fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|d| d.and_hms_opt(h, mi, 0))
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// A schedule window raises the floor one lead ahead of its start, holds it while open (from
/// zero too, and through idleness), and lets go when it closes; its ceiling caps the signals.
fn schedule() -> Decision {
    let p = policy(&format!(
        "{RPS_POLICY}behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\nschedules:\n- {{name: weekday-peak, days: [Mon-Fri], from: '08:00', to: '18:00', timezone: Europe/Berlin, minReplicas: 6, prewarmSeconds: 120}}\n- {{name: lunch-cap, days: [Mon-Fri], from: '12:00', to: '13:00', timezone: Europe/Berlin, maxReplicas: 8}}\n"
    ));
    // Decisions at t=100 s of a driver whose time zero lies `at - 100 s` on the calendar.
    let quiet_at = |unix_ms: i64, rps: f64| {
        let current = if rps > 10.0 { 6 } else { 2 };
        let mut o = obs(
            current,
            vec![per_pod("rps", &vec![rps; current as usize], t(100))],
        );
        o.epoch_unix_ms = unix_ms - 100_000;
        decide(&p, &o, &State::default(), t(100))
    };
    // Monday 2026-03-30, CEST (UTC+2): 08:00 local is 06:00 UTC.
    let early = quiet_at(utc_ms(2026, 3, 30, 5, 57), 1.0);
    assert_eq!(early.desired_replicas, 1, "{}", early.summary());
    assert!(!early.has_reason("Schedule"));
    let d = quiet_at(utc_ms(2026, 3, 30, 5, 59), 1.0);
    assert_eq!(d.desired_replicas, 6, "{}", d.summary());
    assert_eq!(
        d.reasons[0].to_string(),
        "schedule weekday-peak (Mon-Fri 08:00-18:00 Europe/Berlin) opens in 60s: pre-warming to minReplicas 6"
    );
    let open = quiet_at(utc_ms(2026, 3, 30, 9, 0), 1.0);
    assert_eq!(open.desired_replicas, 6, "{}", open.summary());
    assert_eq!(
        open.reasons[0].to_string(),
        "schedule weekday-peak (Mon-Fri 08:00-18:00 Europe/Berlin): minReplicas 6"
    );
    // The lunch window caps a busy signal at 8.
    let busy = quiet_at(utc_ms(2026, 3, 30, 10, 30), 60.0);
    assert_eq!(busy.desired_replicas, 8, "{}", busy.summary());
    assert!(busy.reasons.iter().any(|r| r.to_string()
        == "schedule lunch-cap (Mon-Fri 12:00-13:00 Europe/Berlin): maxReplicas 8"));
    let closed = quiet_at(utc_ms(2026, 3, 30, 16, 0), 1.0);
    assert_eq!(closed.desired_replicas, 1, "{}", closed.summary());
    // With scale to zero: the floor brings the target up from zero and keeps it from idling
    // there while the window is open.
    let z = policy(
        "minReplicas: 0\nmaxReplicas: 10\nconcurrency: {targetPerReplica: 5}\nscaleToZero: {idleSeconds: 1}\nschedules:\n- {name: peak, from: '08:00', to: '18:00', minReplicas: 2}\n",
    );
    let idle = |current: u32| {
        let mut o = obs(current, vec![]);
        o.traffic = Some(traffic(t(100), 0.0, 0.0, 0.0));
        o.epoch_unix_ms = utc_ms(2026, 3, 30, 9, 0) - 100_000;
        decide(&z, &o, &State::default(), t(100))
    };
    assert_eq!(idle(0).desired_replicas, 2, "{}", idle(0).summary());
    assert_eq!(idle(2).desired_replicas, 2, "{}", idle(2).summary());
    d
}

/// A source past its failure threshold: its fallback stands in for the metric it feeds, as a
/// floor the healthy metrics may exceed; `hold` keeps today's rule (no scale-down).
fn fallback() -> Decision {
    let p = policy(&format!(
        "{RPS_POLICY}behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n"
    ));
    let failing = |action| {
        let mut o = obs(5, vec![]);
        o.fallbacks = vec![SourceFallback {
            source: "prom".into(),
            failures: 3,
            metrics: vec!["rps".into()],
            action,
        }];
        decide(&p, &o, &State::default(), t(100))
    };
    let held = failing(Fallback::Hold);
    assert_eq!(held.desired_replicas, 5, "{}", held.summary());
    assert!(held.has_reason("MetricMissing") && !held.has_reason("Fallback"));
    assert_eq!(
        failing(Fallback::CurrentReplicasIfLower(2)).desired_replicas,
        2
    );
    assert_eq!(
        failing(Fallback::CurrentReplicasIfHigher(2)).desired_replicas,
        5
    );
    let d = failing(Fallback::Replicas(3));
    assert_eq!(d.desired_replicas, 3, "{}", d.summary());
    assert!(!d.has_reason("MetricMissing"), "{}", d.summary());
    let Some(Reason::Fallback {
        source,
        failures,
        metric,
        replicas,
        ..
    }) = d.reasons.iter().find(|r| r.code() == "Fallback")
    else {
        panic!("no Fallback: {}", d.summary())
    };
    assert_eq!(
        (source.as_str(), *failures, metric.as_str(), *replicas),
        ("prom", 3, "rps", 3)
    );
    // A healthy metric asking for more wins: the fallback is only a floor.
    let two = policy(&format!(
        "{RPS_POLICY}behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n"
    ).replace("metrics:", "metrics:\n- {type: External, external: {metric: {name: queue}, target: {type: AverageValue, averageValue: 10}}}"));
    let mut o = obs(5, vec![]);
    o.metrics.push(MetricObservation {
        name: "queue".into(),
        values: MetricValues::External {
            values: vec![80.0],
            at: t(100),
        },
    });
    o.fallbacks = vec![SourceFallback {
        source: "prom".into(),
        failures: 3,
        metrics: vec!["rps".into()],
        action: Fallback::Replicas(3),
    }];
    let healthy = decide(&two, &o, &State::default(), t(100));
    assert_eq!(healthy.desired_replicas, 8, "{}", healthy.summary());
    d
}

fn victims() -> Decision {
    let p = policy(&format!(
        "{RPS_POLICY}behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n"
    ));
    let mut o = obs(4, vec![per_pod("rps", &[1.0, 1.0, 1.0, 1.0], t(100))]);
    for (pod, inflight) in o.pods.iter_mut().zip([3.0, 0.0, 5.0, 1.0]) {
        pod.in_flight = Some(inflight);
    }
    let d = decide(&p, &o, &State::default(), t(100));
    assert_eq!(d.desired_replicas, 1);
    assert_eq!(d.victims, ["pod-1", "pod-3", "pod-0"]);
    assert!(d.has_reason("Victims"));
    d
}

/// Two pools on request rates (10 per pod), decode at 1-3 per prefill replica; decode's
/// maximum is `decode_max`.
fn pools(decode_max: u32) -> ebb_core::pools::PoolScaler {
    let pool = |max: u32| {
        RPS_POLICY
            .replace("maxReplicas: 20", &format!("maxReplicas: {max}"))
            .replace('\n', "\n    ")
    };
    let text = format!(
        "pools:\n  prefill:\n    {}\n  decode:\n    {}\n  ratio: {{min: 1, max: 3}}\n",
        pool(20).trim(),
        pool(decode_max).trim()
    );
    let policy = ebb_core::pools::PoolsPolicy::from_yaml(&text).unwrap();
    ebb_core::pools::PoolScaler::new(policy)
}

/// Prompts pile up (prefill asks for 6 replicas) while decode's own rate asks for 2: the guard
/// raises decode to 6, and says why.
fn pool_ratio() -> Decision {
    let mut s = pools(20);
    let o = ebb_core::pools::PoolObservations {
        prefill: obs(2, vec![per_pod("rps", &[30.0, 30.0], t(100))]),
        decode: obs(2, vec![per_pod("rps", &[10.0, 10.0], t(100))]),
    };
    let d = s.decide(&o, t(100));
    assert_eq!(d.prefill.desired_replicas, 6);
    assert_eq!(d.decode.desired_replicas, 6, "{}", d.decode.summary());
    assert!(!d.prefill.has_reason("PoolRatio"));
    assert_eq!(
        d.decode.reasons.last().unwrap().to_string(),
        "decode pool raised from 2 to 6 replicas: the other pool wants 6, and decode replicas per prefill replica stay within 1-3"
    );
    // The raise is carried out as the pool's own decision would be.
    s.applied(ebb_core::pools::Pool::Decode, 6, t(100));
    assert_eq!(
        s.pool(ebb_core::pools::Pool::Decode)
            .state()
            .scale_up_events
            .len(),
        1
    );
    d.decode
}

/// Decode's maximum of 4 cannot keep one decode replica per prefill replica at 6 prefill.
fn pool_ratio_short() -> Decision {
    let mut s = pools(4);
    let o = ebb_core::pools::PoolObservations {
        prefill: obs(2, vec![per_pod("rps", &[30.0, 30.0], t(100))]),
        decode: obs(2, vec![per_pod("rps", &[10.0, 10.0], t(100))]),
    };
    let d = s.decide(&o, t(100)).decode;
    assert_eq!(d.desired_replicas, 4);
    assert!(d.has_reason("PoolRatio"));
    assert!(d.has_reason("PoolRatioShort"), "{}", d.summary());
    d
}

/// Feeds an SLO policy `seconds` of traffic at `rate` req/s, one sample a second, from `from`;
/// service times average 100 ms with scv 0.28 (lognormal sigma 0.5).
fn slo_feed(
    policy: &Policy,
    state: &mut State,
    totals: &mut (f64, f64),
    from: i64,
    seconds: i64,
    rate: f64,
    pods: &[Pod],
) -> Decision {
    slo_feed_counting(policy, state, totals, (from, seconds, rate), pods, None)
}

/// [`slo_feed`] from a driver that counts the service times within `within.0` seconds, a
/// share `within.1` of them.
fn slo_feed_counting(
    policy: &Policy,
    state: &mut State,
    totals: &mut (f64, f64),
    (from, seconds, rate): (i64, i64, f64),
    pods: &[Pod],
    within: Option<(f64, f64)>,
) -> Decision {
    let mut last = None;
    for s in from..from + seconds {
        totals.0 += rate;
        totals.1 = totals.0;
        let sample = TrafficSample {
            at: t(s),
            in_flight: rate * 0.1,
            arrivals_total: totals.0,
            completions_total: totals.1,
            service: Some(ServiceTotals {
                requests: totals.1,
                seconds: totals.1 * 0.1,
                squared_seconds: totals.1 * 0.01 * 1.284,
                within: within.map(|(latency_seconds, share)| WithinLatency {
                    latency_seconds,
                    requests: totals.1 * share,
                }),
            }),
            answered: None,
        };
        let o = Observation {
            current_replicas: pods.len() as u32,
            pods: pods.to_vec(),
            traffic: Some(sample),
            ..Default::default()
        };
        let d = decide(policy, &o, state, t(s));
        *state = d.state.clone();
        last = Some(d);
    }
    last.expect("at least one second")
}

const TOKEN_SLO_POLICY: &str = "maxReplicas: 50
engine: {kind: vllm}
slo: {ttft: {latency: 1s}, itl: {latency: 50ms}, coldStartSeconds: 30, seasonSeconds: 0}";

/// Seconds `from..from + seconds` of `replicas` engines sharing `tokens(s)` tokens a second,
/// whose p99s grow with the work per replica `w`: TTFT 0.2 s + w / 10,000, ITL 20 ms +
/// w / 100,000 (so 1 s of TTFT holds up to 8,000 tokens/s, 50 ms of ITL up to 3,000).
fn engine_feed(
    policy: &Policy,
    state: &mut State,
    (from, seconds): (i64, i64),
    replicas: u32,
    tokens: impl Fn(i64) -> f64,
) -> Decision {
    let mut last = None;
    for s in from..from + seconds {
        let work = tokens(s) / f64::from(replicas);
        let o = Observation {
            current_replicas: replicas,
            pods: pods(replicas as usize),
            engine: Some(EngineSample {
                at: t(s),
                replicas,
                tokens_per_second: Some(tokens(s)),
                waiting: 0.0,
                kv_cache: Some(0.3),
                itl_quantile: Some(0.02 + work / 100_000.0),
                ttft_quantile: Some(0.2 + work / 10_000.0),
                starting: false,
            }),
            ..Default::default()
        };
        let d = decide(policy, &o, state, t(s));
        *state = d.state.clone();
        last = Some(d);
    }
    last.expect("at least one second")
}

/// The LLM SLO learns the engines' response while the load moves (2 replicas sharing 2,000
/// to 14,000 tokens/s), then sizes 8,000 tokens/s by the goal that binds: ITL's 50 ms holds
/// about 3,000 tokens/s per replica, so 3 replicas (TTFT alone would take 1).
fn token_slo_plan_sizes_from_the_engines() -> Decision {
    let p = policy(TOKEN_SLO_POLICY);
    let mut state = State::default();
    let wave = |s: i64| 8_000.0 + 6_000.0 * (s as f64 / 15.0).sin();
    engine_feed(&p, &mut state, (0, 600), 2, wave);
    let d = engine_feed(&p, &mut state, (600, 120), 2, |_| 8_000.0);
    let Some(
        r @ Reason::TokenSloPlan {
            replicas,
            ttft,
            itl,
            learning,
            ..
        },
    ) = d.reasons.iter().find(|r| r.code() == "TokenSloPlan")
    else {
        panic!("no TokenSloPlan in {:?}", d.reasons)
    };
    assert!(!learning, "{r}");
    let itl_work = itl.and_then(|g| g.work).expect("itl learnt");
    let ttft_work = ttft.and_then(|g| g.work).expect("ttft learnt");
    assert!((2_500.0..=3_600.0).contains(&itl_work), "{r}");
    assert!(ttft_work > itl_work, "{r}");
    assert_eq!(*replicas, 3, "{r}");
    assert_eq!(d.desired_replicas, 3);
    let text = r.to_string();
    assert!(text.starts_with("TTFT p99 1s (up to "), "{text}");
    assert!(text.contains(": 3 replicas for 80"), "{text}");
    assert!(
        text.ends_with("cold start (configured or assumed)"),
        "{text}"
    );
    d
}

/// When the token rate falls, the plan keeps sizing for the smoothed level until it follows,
/// and says so: the level's lag is not reported as a forecast rise.
#[test]
fn a_falling_token_rate_is_reported_as_the_level_lagging_not_a_forecast() {
    let p = policy(TOKEN_SLO_POLICY);
    let mut state = State::default();
    let wave = |s: i64| 8_000.0 + 6_000.0 * (s as f64 / 15.0).sin();
    engine_feed(&p, &mut state, (0, 600), 2, wave);
    engine_feed(&p, &mut state, (600, 120), 2, |_| 8_000.0);
    let d = engine_feed(&p, &mut state, (720, 5), 2, |_| 2_000.0);
    let Some(
        r @ Reason::TokenSloPlan {
            forecast_percent,
            level_percent,
            ..
        },
    ) = d.reasons.iter().find(|r| r.code() == "TokenSloPlan")
    else {
        panic!("no TokenSloPlan in {:?}", d.reasons)
    };
    assert!(*level_percent > 100.0, "{r}");
    assert!(forecast_percent.abs() < 1.0, "{r}");
    let text = r.to_string();
    assert!(text.contains("the rate's level is +"), "{text}");
    assert!(text.contains("over the last window's"), "{text}");
    assert!(text.contains("forecast +0% within"), "{text}");
}

/// No engine sample: the LLM SLO is missing and the count holds.
fn token_slo_missing_engines_holds() -> Decision {
    let p = policy(TOKEN_SLO_POLICY);
    let o = Observation {
        current_replicas: 4,
        pods: pods(4),
        ..Default::default()
    };
    let d = decide(&p, &o, &State::default(), t(100));
    assert_eq!(d.desired_replicas, 4);
    assert!(
        d.reasons
            .iter()
            .any(|r| matches!(r, Reason::MetricMissing { metric, .. } if metric == "llmSlo")),
        "{:?}",
        d.reasons
    );
    d
}

const SLO_POLICY: &str =
    "maxReplicas: 100\nslo: {latency: 500ms, attainment: 99.9%, slotsPerReplica: 4, coldStartSeconds: 20}";

fn slo_plan_sizes_from_the_model() -> Decision {
    let p = policy(SLO_POLICY);
    let (mut state, mut totals) = (State::default(), (0.0, 0.0));
    let d = slo_feed(&p, &mut state, &mut totals, 0, 60, 100.0, &pods(3));
    // 100 req/s x 100 ms = 10 busy slots: at least 3 replicas of 4, and the model's own count.
    let Some(Reason::SloPlan {
        replicas,
        predicted,
        planned_for,
        rate,
        ..
    }) = d.reasons.iter().find(|r| r.code() == "SloPlan")
    else {
        panic!("no SloPlan in {:?}", d.reasons)
    };
    assert!((3..=6).contains(replicas), "{replicas}");
    // Service times alone reach 99.97% here: the plan is for the SLO's own 99.9%.
    assert!((*planned_for - 0.999).abs() < 1e-9, "{planned_for}");
    assert!(*predicted >= *planned_for, "{predicted} < {planned_for}");
    assert!((*rate - 100.0).abs() < 10.0, "{rate}");
    assert!(d.desired_replicas >= *replicas);
    // A 20 s cold start spans 200 service times of 100 ms: the steady state sizes it.
    assert!(matches!(
        d.reasons.iter().find(|r| r.code() == "SloPlan"),
        Some(Reason::SloPlan {
            over_lead: None,
            ..
        })
    ));
    let text = d
        .reasons
        .iter()
        .find(|r| r.code() == "SloPlan")
        .unwrap()
        .to_string();
    assert!(text.starts_with("SLO 500ms at 99.9%: "), "{text}");
    assert!(
        text.contains("cold start (configured or assumed)"),
        "{text}"
    );
    d
}

/// Second `s` of an SLO target with `replicas` ready pods: `in_flight` requests and the
/// `(arrivals, completions)` counters, each completion served in `mean` seconds with squared
/// coefficient of variation `scv`.
fn slo_second(
    s: i64,
    replicas: u32,
    in_flight: f64,
    (arrivals, completions): (f64, f64),
    (mean, scv): (f64, f64),
) -> Observation {
    Observation {
        current_replicas: replicas,
        pods: pods(replicas as usize),
        traffic: Some(TrafficSample {
            at: t(s),
            in_flight,
            arrivals_total: arrivals,
            completions_total: completions,
            service: Some(ServiceTotals {
                requests: completions,
                seconds: completions * mean,
                squared_seconds: completions * mean * mean * (1.0 + scv),
                within: None,
            }),
            answered: None,
        }),
        ..Default::default()
    }
}

/// Feeds 100 req/s to 3 ready replicas of 4 slots for `seconds`, the driver counting answers
/// within the SLO's 500 ms: `within` of each second's 100.
fn slo_answers(seconds: i64, within: f64) -> Decision {
    let p = policy(SLO_POLICY);
    let mut state = State::default();
    let mut last = None;
    for s in 0..seconds {
        let total = 100.0 * s as f64;
        let mut o = slo_second(s, 3, 10.0, (total, total), (0.1, 0.284));
        if let Some(traffic) = o.traffic.as_mut() {
            traffic.answered = Some(AnsweredWithin {
                latency_seconds: 0.5,
                requests: total,
                within: within * s as f64,
            });
        }
        let d = decide(&p, &o, &state, t(s));
        state = d.state.clone();
        last = Some(d);
    }
    last.expect("decisions")
}

/// The attainment reached is reported beside the one predicted: the share of the requests
/// that ended within the SLO's latency over about the last hour, and whether it falls short
/// of the SLO by more than chance. The same plan either way: decisions do not use it yet.
fn slo_reached() -> Decision {
    let reached = |d: &Decision| match d.reasons.iter().find(|r| r.code() == "SloReached") {
        Some(Reason::SloReached {
            reached,
            requests,
            short,
            counted_at_seconds,
            ..
        }) => (*reached, *requests, *short, *counted_at_seconds),
        _ => panic!("no SloReached in {}", d.summary()),
    };
    let met = slo_answers(120, 99.95);
    let (share, requests, short, at) = reached(&met);
    assert!((share - 0.9995).abs() < 1e-9, "{share}");
    // 119 seconds of 100 answers, the oldest 2 minutes back: they weigh nearly all of it.
    assert!((requests - 11_900.0).abs() < 200.0, "{requests}");
    assert!(!short);
    assert_eq!(at, 0.5);
    let text_of = |d: &Decision| {
        let reason = d.reasons.iter().find(|r| r.code() == "SloReached");
        reason.expect("an SloReached").to_string()
    };
    let text = text_of(&met);
    assert!(
        text.starts_with("reached: 99.95% within 500ms over about the last hour (11"),
        "{text}"
    );
    let missed = slo_answers(120, 99.0);
    let (share, _, short, _) = reached(&missed);
    assert!((share - 0.99).abs() < 1e-9 && short, "{share}");
    let text = text_of(&missed);
    assert!(
        text.ends_with("short of the SLO's 99.9% by more than chance"),
        "{text}"
    );
    assert_eq!(met.desired_replicas, missed.desired_replicas);
    // A driver that does not count answers gets no such reason.
    let uncounted = slo_clumped_arrivals(0.0);
    assert!(
        !uncounted.has_reason("SloReached"),
        "{}",
        uncounted.summary()
    );
    missed
}

/// Feeds 120 s of clumped arrivals (40 and 160 requests in turn, 100 req/s on average: counts
/// dispersed ~60 times more than Poisson counts) to 3 ready replicas of 4 slots, with
/// `waiting` requests seen beyond their slots each second.
fn slo_clumped_arrivals(waiting: f64) -> Decision {
    let p = policy(SLO_POLICY);
    let mut state = State::default();
    let (mut total, mut last) = (0.0, None);
    for s in 0..120 {
        total += if s % 2 == 0 { 40.0 } else { 160.0 };
        let o = slo_second(s, 3, 10.0 + waiting, (total, total), (0.1, 0.284));
        let d = decide(&p, &o, &state, t(s));
        state = d.state.clone();
        last = Some(d);
    }
    last.expect("decisions")
}

/// Counts more dispersed than Poisson's, with no queue behind them, are not read as bursts:
/// the queues seen correct the model's `ca^2`, and the reason says so. The same counts with
/// a long queue seen keep most of the dispersion and plan more replicas.
fn slo_reads_arrivals_from_queues() -> Decision {
    let calm = slo_clumped_arrivals(0.0);
    let queued = slo_clumped_arrivals(40.0);
    let scv = |d: &Decision| match d.reasons.iter().find(|r| r.code() == "SloPlan") {
        Some(Reason::SloPlan {
            dispersion,
            arrival_scv,
            replicas,
            ..
        }) => (*dispersion, *arrival_scv, *replicas),
        _ => panic!("no SloPlan in {:?}", d.reasons),
    };
    let (dispersion, calm_scv, calm_replicas) = scv(&calm);
    let (_, queued_scv, queued_replicas) = scv(&queued);
    assert!(dispersion > 10.0, "{dispersion}");
    assert!((calm_scv - 1.0).abs() < 0.2, "{calm_scv}");
    assert!(queued_scv > 10.0, "{queued_scv} of {dispersion}");
    assert!(
        calm_replicas < queued_replicas,
        "{calm_replicas} vs {queued_replicas}"
    );
    let text = calm
        .reasons
        .iter()
        .find(|r| r.code() == "SloPlan")
        .unwrap()
        .to_string();
    assert!(
        text.contains(", read as 1.0 from the queues seen, "),
        "{text}"
    );
    calm
}

/// The rate of sparse, slow requests (one a minute, 30 s each, as image generation) read
/// right after an arrival, with the level's time constant at `level_service_times` service
/// times (0: the 10 s default alone).
fn sparse_rate_after_an_arrival(level_service_times: f64) -> f64 {
    let mut p = policy(
        "maxReplicas: 20\nslo: {latency: 120s, attainment: 99%, slotsPerReplica: 1, coldStartSeconds: 20}",
    );
    if let Some(slo) = p.slo.as_mut() {
        slo.tuning.level_service_times = level_service_times;
    }
    let mut state = State::default();
    let (mut arrivals, mut last) = (0.0, None);
    for s in 0..=600 {
        if s % 60 == 0 {
            arrivals += 1.0;
        }
        let done = (arrivals - 1.0f64).max(0.0);
        let in_flight = if s % 60 < 30 { 1.0 } else { 0.0 };
        let o = slo_second(s, 1, in_flight, (arrivals, done), (30.0, 0.5));
        let d = decide(&p, &o, &state, t(s));
        state = d.state.clone();
        last = Some(d);
    }
    match last.unwrap().reasons.iter().find(|r| r.code() == "SloPlan") {
        Some(Reason::SloPlan { rate, .. }) => *rate,
        other => panic!("no SloPlan: {other:?}"),
    }
}

/// A replica stays busy for a service time, so the level averages arrivals over at least
/// one: one request a minute is not read as a burst of 0.1 req/s the second it arrives.
#[test]
fn the_level_spans_a_service_time() {
    let spanning = sparse_rate_after_an_arrival(1.0);
    let ten_seconds = sparse_rate_after_an_arrival(0.0);
    assert!(spanning < 0.05, "{spanning}");
    assert!(ten_seconds > 0.09, "{ten_seconds}");
}

/// The forecast over the cold start that the SLO plan's reason reports, in percent.
fn forecast_percent(d: &Decision) -> f64 {
    match d.reasons.iter().find(|r| r.code() == "SloPlan") {
        Some(Reason::SloPlan {
            forecast_percent, ..
        }) => *forecast_percent,
        other => panic!("no SloPlan: {other:?}"),
    }
}

/// The forecast extrapolates a rise only beyond what counting noise explains: one more
/// request on a sparse stream is not planned for as a rise within the cold start, a rate
/// that climbs from 20 to 80 req/s in 20 s is.
#[test]
fn the_forecast_carries_a_rise_beyond_counting_noise() {
    let sparse_policy = policy(
        "maxReplicas: 20\nslo: {latency: 120s, attainment: 99%, slotsPerReplica: 1, coldStartSeconds: 40}",
    );
    let (mut state, mut arrivals, mut last) = (State::default(), 0.0, None);
    for s in 0..=600 {
        arrivals += if s % 60 == 0 { 1.0 } else { 0.0 };
        let in_flight = if s % 60 < 30 { 1.0 } else { 0.0 };
        let o = slo_second(
            s,
            1,
            in_flight,
            (arrivals, (arrivals - 1.0f64).max(0.0)),
            (30.0, 0.5),
        );
        let d = decide(&sparse_policy, &o, &state, t(s));
        state = d.state.clone();
        last = Some(d);
    }
    let sparse = forecast_percent(&last.expect("decisions"));
    assert!(sparse < 1.0, "a sparse arrival read as a rise of {sparse}%");

    let p = policy(SLO_POLICY);
    let (mut state, mut totals) = (State::default(), (0.0, 0.0));
    slo_feed(&p, &mut state, &mut totals, 0, 60, 20.0, &pods(2));
    let mut rising = None;
    for s in 60..80 {
        let rate = 20.0 + 3.0 * (s - 59) as f64;
        rising = Some(slo_feed(&p, &mut state, &mut totals, s, 1, rate, &pods(2)));
    }
    let rise = forecast_percent(&rising.expect("decisions"));
    assert!(
        rise > 10.0,
        "a climb of 3 req/s a second forecast at +{rise}%"
    );
}

/// On traffic whose counts clump (40 and 160 requests in turn, dispersed ~60 times more than
/// Poisson counts), a rise to 180 req/s is a jump planned for at once: the clumping is judged
/// traffic, not noise (with the dispersion in the standard error it had to exceed 216 req/s).
#[test]
fn a_jump_on_clumped_traffic_is_judged_against_counting_noise() {
    let p = policy(SLO_POLICY);
    let mut state = State::default();
    let (mut total, mut last) = (0.0, None);
    for s in 0..123 {
        total += match s {
            0..120 if s % 2 == 0 => 40.0,
            0..120 => 160.0,
            _ => 180.0,
        };
        let o = slo_second(s, 3, 10.0, (total, total), (0.1, 0.284));
        let d = decide(&p, &o, &state, t(s));
        state = d.state.clone();
        last = Some(d);
    }
    match last
        .expect("decisions")
        .reasons
        .iter()
        .find(|r| r.code() == "SloPlan")
    {
        Some(Reason::SloPlan {
            jump,
            rate,
            dispersion,
            ..
        }) => {
            assert!(*dispersion > 10.0, "{dispersion}");
            assert!(*jump, "no jump at {rate} req/s");
            assert!(*rate > 150.0, "{rate}");
        }
        other => panic!("no SloPlan: {other:?}"),
    }
}

fn slo_keeps_through_a_dip() -> Decision {
    let p = policy(SLO_POLICY);
    let (mut state, mut totals) = (State::default(), (0.0, 0.0));
    let busy = slo_feed(&p, &mut state, &mut totals, 0, 60, 200.0, &pods(8));
    let held = busy.desired_replicas;
    // Ten seconds at a tenth of the traffic: shorter than two cold starts, so nothing goes.
    let d = slo_feed(
        &p,
        &mut state,
        &mut totals,
        60,
        10,
        20.0,
        &pods(held as usize),
    );
    assert!(d.desired_replicas >= held, "{}", d.summary());
    assert!(d.has_reason("SloKeepsThroughDip"), "{}", d.summary());
    // A minute later the dip has lasted longer than that: scale down.
    let later = slo_feed(
        &p,
        &mut state,
        &mut totals,
        70,
        60,
        20.0,
        &pods(held as usize),
    );
    assert!(later.desired_replicas < held, "{}", later.summary());
    d
}

fn slo_recurring_burst() -> Decision {
    let p = policy(SLO_POLICY);
    let (mut state, mut totals) = (State::default(), (0.0, 0.0));
    // Ten seconds at 200 req/s every two minutes, 20 req/s between: three bursts set the clock.
    let mut held: u32 = 2;
    for start in [60, 180, 300] {
        let quiet_from = if start == 60 { 0 } else { start - 110 };
        slo_feed(
            &p,
            &mut state,
            &mut totals,
            quiet_from,
            start - quiet_from,
            20.0,
            &pods(2),
        );
        held = slo_feed(
            &p,
            &mut state,
            &mut totals,
            start,
            10,
            200.0,
            &pods(held as usize),
        )
        .desired_replicas
        .max(held);
    }
    // The next is due at 420 s. Long after the last one, with the cold start (20 s) still
    // ahead of it, the replicas for it do not wait for its traffic: before, the quiet
    // traffic holds two or three (two predicted at the target's edge, with the dispersion
    // the bursts left), and then the burst's count.
    let quiet = slo_feed(&p, &mut state, &mut totals, 310, 70, 20.0, &pods(2));
    assert!(quiet.desired_replicas <= 3, "{}", quiet.summary());
    let d = slo_feed(&p, &mut state, &mut totals, 380, 20, 20.0, &pods(2));
    let Some(Reason::SloRecurringBurst {
        replicas,
        rate,
        period_seconds,
        due_in_seconds,
        lead_seconds,
    }) = d.reasons.iter().find(|r| r.code() == "SloRecurringBurst")
    else {
        panic!("no SloRecurringBurst in {}", d.summary())
    };
    assert!((period_seconds - 120.0).abs() < 3.0, "{period_seconds}");
    assert!((due_in_seconds - 21.0).abs() < 3.0, "{due_in_seconds}");
    // The stated cold start and the second between decisions (a start left to the next
    // decision would come a second late).
    assert!((lead_seconds - 21.0).abs() < 1e-9, "{lead_seconds}");
    assert!((rate - 200.0).abs() < 20.0, "{rate}");
    assert!(
        *replicas > quiet.desired_replicas + 2 && d.desired_replicas >= *replicas,
        "{}",
        d.summary()
    );
    d
}

/// Bursts of 200 req/s for ten seconds every two minutes, `between` req/s between them, for
/// `seconds`, under `policy_text`; each decision applied at once. Returns every decision.
fn slo_bursts_from_silence(policy_text: &str, between: f64, seconds: i64) -> Vec<Decision> {
    let rate = |s: i64| if s % 120 < 10 { 200.0 } else { between };
    slo_decided(policy_text, rate, seconds, 1, 1)
}

/// `seconds` of traffic at `rate(s)` req/s from `replicas` replicas, under `policy_text`, one
/// sample and one decision every `period` seconds (the arrivals counted every second), each
/// decision applied at once. Returns every decision.
fn slo_decided(
    policy_text: &str,
    rate: impl Fn(i64) -> f64,
    seconds: i64,
    period: i64,
    mut replicas: u32,
) -> Vec<Decision> {
    let p = policy(policy_text);
    let (mut state, mut total) = (State::default(), 0.0);
    let mut out = Vec::new();
    for s in 0..seconds {
        let rate = rate(s);
        total += rate;
        if s % period != 0 {
            continue;
        }
        let sample = TrafficSample {
            at: t(s),
            in_flight: rate * 0.1,
            arrivals_total: total,
            completions_total: total,
            service: Some(ServiceTotals {
                requests: total,
                seconds: total * 0.1,
                squared_seconds: total * 0.01 * 1.284,
                within: None,
            }),
            answered: None,
        };
        let o = Observation {
            current_replicas: replicas,
            pods: pods(replicas as usize),
            traffic: Some(sample),
            ..Default::default()
        };
        let d = decide(&p, &o, &state, t(s));
        state = d.applied_state();
        replicas = d.desired_replicas;
        out.push(d);
    }
    out
}

const SLO_TO_ZERO_POLICY: &str = "minReplicas: 0\nmaxReplicas: 100\nslo: {latency: 500ms, attainment: 99.9%, slotsPerReplica: 4, coldStartSeconds: 20}\nscaleToZero: {idleSeconds: never}";

fn slo_silent_until_burst() -> Decision {
    let decisions = slo_bursts_from_silence(SLO_TO_ZERO_POLICY, 0.0, 600);
    let silent = decisions
        .iter()
        .find(|d| d.has_reason("SloSilentUntilBurst"))
        .unwrap_or_else(|| panic!("never silent: {}", decisions[599].summary()));
    let Some(Reason::SloSilentUntilBurst {
        quiet_seconds,
        due_in_seconds,
        period_seconds,
        lead_seconds,
    }) = silent
        .reasons
        .iter()
        .find(|r| r.code() == "SloSilentUntilBurst")
    else {
        unreachable!()
    };
    assert_eq!(silent.desired_replicas, 0, "{}", silent.summary());
    assert!((period_seconds - 120.0).abs() < 3.0, "{period_seconds}");
    assert!((lead_seconds - 21.0).abs() < 1e-9, "{lead_seconds}");
    // Silent for a cold start first (a dip shorter than that is kept through), and the next
    // burst more than a cold start beyond the lead.
    assert!(*quiet_seconds >= 20.0, "{quiet_seconds}");
    assert!(*due_in_seconds >= 40.0, "{due_in_seconds}");
    // From zero, the replicas for each later burst start one lead ahead of it, with no
    // request waiting, and are up when it comes.
    let at = silent.at.millis_since(Time::from_millis(0)) / 1000;
    let next_burst = (at / 120 + 1) * 120;
    let (started_at, prewarm) = decisions
        .iter()
        .enumerate()
        .skip(at as usize)
        .find(|(_, d)| d.current_replicas == 0 && d.desired_replicas > 0)
        .expect("started again");
    // One lead (the 20 s cold start and the second between decisions) ahead, widened by how
    // far the gaps strayed (`Recurrence::due`).
    let ahead = next_burst - started_at as i64;
    assert!(
        (20..=26).contains(&ahead),
        "{ahead} s ahead: {}",
        prewarm.summary()
    );
    assert!(
        prewarm.has_reason("SloRecurringBurst"),
        "{}",
        prewarm.summary()
    );
    assert!(!prewarm.has_reason("Activated"), "{}", prewarm.summary());
    for burst in (next_burst..600).step_by(120) {
        let d = &decisions[burst as usize];
        assert!(d.current_replicas > 0, "burst at {burst}: {}", d.summary());
    }
    silent.clone()
}

/// The first burst out of zero comes while its replicas start, before any request has been
/// answered, so no service time is known while it lasts. Its onset counts all the same: the
/// recurrence starts its clock at the first burst, not the second.
#[test]
fn a_burst_from_zero_before_any_answer_is_an_onset() {
    let p = policy(SLO_TO_ZERO_POLICY);
    let (mut state, mut arrivals, mut replicas) = (State::default(), 0.0, 0);
    for s in 0..40 {
        arrivals += if s >= 30 { 200.0 } else { 0.0 };
        let held = ServiceTotals {
            requests: 0.0,
            seconds: 0.0,
            squared_seconds: 0.0,
            within: None,
        };
        let o = Observation {
            current_replicas: replicas,
            traffic: Some(TrafficSample {
                at: t(s),
                in_flight: arrivals,
                arrivals_total: arrivals,
                completions_total: 0.0,
                service: Some(held),
                answered: None,
            }),
            ..Default::default()
        };
        let d = decide(&p, &o, &state, t(s));
        state = d.applied_state();
        replicas = d.desired_replicas;
    }
    let slo = state.slo.expect("the SLO's state");
    let onsets = &slo.recurrence.onsets;
    assert_eq!(onsets.len(), 1, "{onsets:?}");
    let at = onsets[0].at.millis_since(t(30)) as f64 / 1000.0;
    assert!(
        (0.0..=2.0).contains(&at),
        "onset {at} s after the burst began"
    );
    assert!(onsets[0].peak_rate > 100.0, "{onsets:?}");
}

/// A burst of 150 req/s out of zero, its replicas starting (none ready) for 20 s, so nothing
/// answered: the SLO sizes for the burst as if each request took its whole 500 ms, at once,
/// and never lowers the count while nothing is known.
fn slo_service_unknown() -> Decision {
    let p = policy(SLO_TO_ZERO_POLICY);
    let (mut state, mut arrivals, mut replicas) = (State::default(), 0.0, 0u32);
    let mut decisions = Vec::new();
    for s in 0..20 {
        arrivals += 150.0;
        let starting: Vec<Pod> = (0..replicas)
            .map(|i| Pod {
                name: format!("pod-{i}"),
                ready: false,
                started_at: Some(t(1)),
                ..Default::default()
            })
            .collect();
        let o = Observation {
            current_replicas: replicas,
            pods: starting,
            traffic: Some(TrafficSample {
                at: t(s),
                in_flight: arrivals,
                arrivals_total: arrivals,
                completions_total: 0.0,
                service: None,
                answered: None,
            }),
            ..Default::default()
        };
        let d = decide(&p, &o, &state, t(s));
        state = d.applied_state();
        assert!(d.desired_replicas >= replicas, "{}", d.summary());
        replicas = d.desired_replicas;
        decisions.push(d);
    }
    // 150 req/s for 500 ms each over 4 slots a replica: 19, started from the second sample
    // (the first sample's rate), not one now and the rest once it has answered.
    let sized = decisions
        .iter()
        .position(|d| d.desired_replicas >= 19)
        .unwrap_or_else(|| panic!("never sized: {}", decisions[19].summary()));
    assert!(
        sized <= 1,
        "sized at {sized} s: {}",
        decisions[sized].summary()
    );
    let d = decisions.pop().expect("decisions");
    let Some(Reason::SloServiceUnknown {
        replicas,
        rate,
        latency_seconds,
    }) = d.reasons.iter().find(|r| r.code() == "SloServiceUnknown")
    else {
        panic!("no SloServiceUnknown in {}", d.summary())
    };
    assert_eq!(*latency_seconds, 0.5);
    assert!(*rate >= 150.0 && *rate < 200.0, "{rate}");
    assert!((19..=25).contains(replicas), "{}", d.summary());
    d
}

/// One request a minute, each served in 5 s, one slot a replica, a 10 s cold start, and a
/// policy that may scale to zero with no idle time of its own: the decisions until the
/// first `SloIdleToZero` (or the last, if none). Pods turn ready at once.
fn slo_sparse_requests(latency: &str) -> Vec<Decision> {
    let p = policy(&format!(
        "minReplicas: 0\nmaxReplicas: 10\nslo: {{latency: {latency}, attainment: 99%, slotsPerReplica: 1, coldStartSeconds: 10}}\nscaleToZero: {{idleSeconds: never}}"
    ));
    let (mut state, mut replicas, mut requests) = (State::default(), 1, 0.0);
    let mut out = Vec::new();
    for s in 0..8000 {
        if s % 60 == 0 {
            requests += 1.0;
        }
        let busy = s % 60 < 5;
        let completed = if busy { requests - 1.0 } else { requests };
        let o = Observation {
            current_replicas: replicas,
            pods: pods(replicas as usize),
            traffic: Some(TrafficSample {
                at: t(s),
                in_flight: if busy { 1.0 } else { 0.0 },
                arrivals_total: requests,
                completions_total: completed,
                service: Some(ServiceTotals {
                    requests: completed,
                    seconds: completed * 5.0,
                    squared_seconds: completed * 25.0 * 1.1,
                    within: None,
                }),
                answered: None,
            }),
            ..Default::default()
        };
        let d = decide(&p, &o, &state, t(s));
        state = d.applied_state();
        replicas = d.desired_replicas;
        let done = d.has_reason("SloIdleToZero");
        out.push(d);
        if done {
            break;
        }
    }
    out
}

fn slo_idle_to_zero() -> Decision {
    let decisions = slo_sparse_requests("120s");
    let d = decisions.last().unwrap().clone();
    let Some(Reason::SloIdleToZero {
        quiet_seconds,
        keep_seconds,
        beyond_keep_seconds,
        spells,
        restart_seconds,
        cold_within,
        arrived_after_idle,
        ..
    }) = d.reasons.iter().find(|r| r.code() == "SloIdleToZero")
    else {
        panic!("never idle to zero: {}", d.summary())
    };
    assert_eq!(d.desired_replicas, 0, "{}", d.summary());
    // Kept through a cold start's worth of silence first.
    assert!(*quiet_seconds >= *keep_seconds, "{}", d.summary());
    assert!((10.0..=12.0).contains(keep_seconds), "{}", d.summary());
    // Arrivals a minute apart leave silences of 59 s between the samples that saw them,
    // 49 s beyond the keep time: more than a return's two cold starts.
    assert!(
        *beyond_keep_seconds > *restart_seconds && (47.0..=51.0).contains(beyond_keep_seconds),
        "{}",
        d.summary()
    );
    // The average rests on a full window of recent spells (one a minute, none aged), and
    // the text says how many.
    assert!((19.0..=20.0).contains(spells), "{}", d.summary());
    assert!(
        d.summary()
            .contains("the last 20 spells, weighed by age, lasted"),
        "{}",
        d.summary()
    );
    // Every request came after a silence, and each that waits a start still meets 120 s.
    assert!(*arrived_after_idle > 0.99, "{}", d.summary());
    assert!(*cold_within > 0.999, "{}", d.summary());
    // Not before the share was measured over enough requests.
    let at = d.at.millis_since(t(0)) / 1000;
    assert!(at >= 60 * 99, "at {at} s: {}", d.summary());
    d
}

#[test]
fn an_idle_spell_keeps_its_replica_where_a_cold_start_would_miss_the_slo() {
    // 10 s of cold start before 5 s of service misses a 12 s SLO.
    let decisions = slo_sparse_requests("12s");
    assert_eq!(decisions.len(), 8000);
    for d in &decisions[6000..] {
        assert!(d.desired_replicas > 0, "{}", d.summary());
    }
}

#[test]
fn the_slo_keeps_a_replica_where_the_silences_are_not_bridged() {
    // A trickle between the bursts: the gap is not silent, so a replica stays.
    for d in slo_bursts_from_silence(SLO_TO_ZERO_POLICY, 1.0, 600) {
        assert!(d.desired_replicas > 0, "{}", d.summary());
    }
    // Silent gaps, but the policy may not scale to zero.
    for d in slo_bursts_from_silence(SLO_POLICY, 0.0, 600) {
        assert!(d.desired_replicas > 0, "{}", d.summary());
    }
}

fn slo_out_of_reach() -> Decision {
    // 150 ms against a service of 100 ms mean and 51 ms deviation: about 8% of requests take
    // longer with no wait at all.
    let p = policy("maxReplicas: 100\nslo: {latency: 150ms, attainment: 99%, slotsPerReplica: 4}");
    let (mut state, mut totals) = (State::default(), (0.0, 0.0));
    let d = slo_feed(&p, &mut state, &mut totals, 0, 40, 50.0, &pods(3));
    assert!(d.has_reason("SloOutOfReach"), "{}", d.summary());
    assert!(
        d.summary().contains("(from their mean and variance)"),
        "{}",
        d.summary()
    );
    d
}

fn slo_out_of_reach_counted() -> Decision {
    // The same service, but the proxy counts 97% of service times within 150 ms (the two
    // moments' lognormal says 92%): the counted share sets the ceiling, leaning on the fit only
    // for the first few hundred requests.
    let p = policy("maxReplicas: 100\nslo: {latency: 150ms, attainment: 99%, slotsPerReplica: 4}");
    // `seconds` at 50 req/s on 3 pods, the share `within` counted at its latency.
    let counted = |seconds: i64, within: (f64, f64)| {
        let (mut state, mut totals) = (State::default(), (0.0, 0.0));
        let feed = (0, seconds, 50.0);
        slo_feed_counting(&p, &mut state, &mut totals, feed, &pods(3), Some(within))
    };
    let d = counted(100, (0.15, 0.97));
    let Some(Reason::SloOutOfReach {
        within_without_wait,
        within_measured,
        ..
    }) = d.reasons.iter().find(|r| r.code() == "SloOutOfReach")
    else {
        panic!("no SloOutOfReach in {}", d.summary())
    };
    assert!(*within_measured);
    assert!(
        (0.96..0.97).contains(within_without_wait),
        "{within_without_wait}"
    );
    assert!(d.summary().contains("(counted over "), "{}", d.summary());
    assert!(!d.summary().contains("leaning on"), "{}", d.summary());
    // Four seconds in, 150 requests counted: the share still leans on the fitted shape, and
    // says so.
    let early = counted(4, (0.15, 0.97)).summary();
    assert!(
        early.contains("(counted over 150 requests, leaning on their mean and variance until 300)"),
        "{early}"
    );
    // Counted at another latency than the SLO's: not used.
    let fitted = counted(100, (0.2, 0.97));
    assert!(fitted.summary().contains("(from their mean and variance)"));
    // Counted at a histogram bucket's bound below the SLO (the controller reading a gateway):
    // the shape is fitted there and read at the SLO. 70% within 100 ms, where the two moments
    // say 60%, is a lognormal with 82% within 150 ms.
    let b = counted(100, (0.1, 0.70));
    let Some(Reason::SloOutOfReach {
        within_without_wait,
        within_measured: true,
        ..
    }) = b.reasons.iter().find(|r| r.code() == "SloOutOfReach")
    else {
        panic!("no counted SloOutOfReach in {}", b.summary())
    };
    assert!(
        (0.80..0.84).contains(within_without_wait),
        "{within_without_wait}"
    );
    d
}

#[test]
fn a_counted_share_within_its_counting_noise_of_the_target_is_not_out_of_reach() {
    let p = policy("maxReplicas: 100\nslo: {latency: 150ms, attainment: 99%, slotsPerReplica: 4}");
    let counted = |share: f64| {
        let (mut state, mut totals) = (State::default(), (0.0, 0.0));
        let feed = (0, 100, 50.0);
        slo_feed_counting(
            &p,
            &mut state,
            &mut totals,
            feed,
            &pods(3),
            Some((0.15, share)),
        )
    };
    // Counted at 99.6% of 5,000 requests, the share read at the SLO, leaning a little on the
    // fitted 92%, is 98.76%: below 99%, within two standard errors (0.3 points) of it. The
    // plan still plans for it less the waiting budget (98.26%); only the reason is spared.
    let near = counted(0.996);
    assert!(!near.has_reason("SloOutOfReach"), "{}", near.summary());
    assert!(
        near.summary().contains("(planning for 98.2566%"),
        "{}",
        near.summary()
    );
    // 97% is not.
    let far = counted(0.97);
    assert!(far.has_reason("SloOutOfReach"), "{}", far.summary());
}

/// The SLO plan's cold-start horizon and how many starts it rests on, once the pods in
/// `ready_after` (seconds each took) were started beside 2 ready ones and turned ready.
fn horizon_after_starts(ready_after: &[i64]) -> (f64, u32, String) {
    let p =
        policy("maxReplicas: 100\nslo: {latency: 500ms, attainment: 99.9%, slotsPerReplica: 4}");
    let (mut state, mut totals) = (State::default(), (0.0, 0.0));
    slo_feed(&p, &mut state, &mut totals, 0, 30, 40.0, &pods(2));
    let with = |p: &Pod| [pods(2), vec![p.clone()]].concat();
    let mut at = 30;
    for (i, took) in ready_after.iter().enumerate() {
        let mut new = Pod {
            name: format!("new-{i}"),
            started_at: Some(t(at)),
            ..Default::default()
        };
        slo_feed(&p, &mut state, &mut totals, at, 1, 40.0, &with(&new));
        (new.ready, new.ready_changed_at) = (true, Some(t(at + took)));
        slo_feed(&p, &mut state, &mut totals, at + took, 1, 40.0, &with(&new));
        at += took + 1;
    }
    let d = slo_feed(&p, &mut state, &mut totals, at, 1, 40.0, &pods(2));
    let Some(
        r @ Reason::SloPlan {
            cold_start_seconds,
            cold_starts_measured,
            ..
        },
    ) = d.reasons.iter().find(|r| r.code() == "SloPlan")
    else {
        panic!("no SloPlan in {}", d.summary())
    };
    (*cold_start_seconds, *cold_starts_measured, r.to_string())
}

/// The plan's reason says what its cold-start horizon rests on: the assumed 30 s before any
/// start was measured, then how many starts were (one fast start alone sets it, which the
/// reader should see).
#[test]
fn the_horizon_says_how_many_cold_starts_it_rests_on() {
    let (none, measured, text) = horizon_after_starts(&[]);
    assert_eq!((none, measured), (30.0, 0), "{text}");
    assert!(
        text.ends_with("30 s cold start (configured or assumed)"),
        "{text}"
    );
    // One start has no spread of its own: 12 s is planned as 2.54 times it.
    let (one, measured, text) = horizon_after_starts(&[12]);
    let widened = ebb_core::slo::estimate::predicted_start(12.0, 0.0, 1.0, 1.0);
    assert_eq!(measured, 1, "{text}");
    assert!(
        (one - widened).abs() < 1e-9 && (30.0..31.0).contains(&one),
        "{one}: {text}"
    );
    assert!(
        text.ends_with(
            "31 s cold start (measured over 1 start, widened while few: one has no spread)"
        ),
        "{text}"
    );
    // Two starts, 12 s and 16 s: more than their mean and deviation (16 s) say, since two
    // can land close by chance.
    let (two, measured, text) = horizon_after_starts(&[12, 16]);
    let widened = ebb_core::slo::estimate::predicted_start(14.0, 2.0, 2.0, 1.0);
    assert_eq!(measured, 2, "{text}");
    assert!(
        (two - widened).abs() < 1e-9 && (25.0..26.0).contains(&two),
        "{two}: {text}"
    );
    assert!(
        text.ends_with("26 s cold start (measured over 2 starts, widened while few)"),
        "{text}"
    );
}

fn slo_hedged_start() -> Decision {
    let p = policy(SLO_POLICY);
    let (mut state, mut totals) = (State::default(), (0.0, 0.0));
    slo_feed(&p, &mut state, &mut totals, 0, 60, 40.0, &pods(2));
    // Ten times the traffic for one second: the replicas needed start, but no cold start
    // was measured to price a shortage by, and a one-second clump gets no floor of extras
    // (hedges started for it were removed, still starting, the next second).
    let first = slo_feed(&p, &mut state, &mut totals, 60, 1, 400.0, &pods(2));
    assert!(first.desired_replicas > 2, "{}", first.summary());
    assert!(!first.has_reason("SloHedgedStart"), "{}", first.summary());
    // Still short a second later: now at least one extra per missing replica starts.
    let d = slo_feed(&p, &mut state, &mut totals, 61, 1, 400.0, &pods(2));
    let Some(Reason::SloHedgedStart {
        extra,
        ready,
        needed,
    }) = d.reasons.iter().find(|r| r.code() == "SloHedgedStart")
    else {
        panic!("no SloHedgedStart in {}", d.summary())
    };
    assert_eq!(*ready, 2);
    assert!(
        *extra >= needed - ready && d.desired_replicas == needed + extra,
        "{}",
        d.summary()
    );
    d
}

fn slo_warming_up() -> Decision {
    let p = policy(SLO_POLICY);
    let (mut state, mut totals) = (State::default(), (0.0, 0.0));
    // Little traffic on 6 replicas, but only 10 s of it: too little to scale down on.
    let d = slo_feed(&p, &mut state, &mut totals, 0, 10, 5.0, &pods(6));
    assert_eq!(d.desired_replicas, 6, "{}", d.summary());
    assert!(d.has_reason("SloWarmingUp"), "{}", d.summary());
    d
}

fn slo_missing_traffic_holds() -> Decision {
    let p = policy(SLO_POLICY);
    let (mut state, mut totals) = (State::default(), (0.0, 0.0));
    slo_feed(&p, &mut state, &mut totals, 0, 60, 100.0, &pods(6));
    // The counters stop coming: the model has no fresh sample and must not scale down.
    let o = Observation {
        current_replicas: 6,
        pods: pods(6),
        ..Default::default()
    };
    let d = decide(&p, &o, &state, t(600));
    assert_eq!(d.desired_replicas, 6, "{}", d.summary());
    assert!(d.has_reason("MetricMissing") && d.has_reason("NoUsableMetric"));
    d
}

fn all_scenarios() -> Vec<(&'static str, Decision)> {
    vec![
        ("metric_proposal", metric_proposal()),
        ("within_tolerance", within_tolerance()),
        ("pool_ratio", pool_ratio()),
        ("pool_ratio_short", pool_ratio_short()),
        ("metric_missing", metric_missing_and_no_usable_metric()),
        (
            "scale_down_blocked_by_missing",
            scale_down_blocked_by_missing(),
        ),
        ("panic", panic_scales_at_once()),
        ("panic_holds", panic_holds_scale_down()),
        ("panic_ends", panic_ends()),
        ("scale_up_stabilized", scale_up_stabilized()),
        ("scale_down_stabilized", scale_down_stabilized()),
        ("scale_up_limit", scale_up_limit()),
        ("scale_down_limit", scale_down_limit()),
        ("scale_up_disabled", scale_up_disabled()),
        ("scale_down_disabled", scale_down_disabled()),
        ("too_many", too_many_replicas()),
        ("too_few", too_few_replicas()),
        ("held_at_one", held_at_one_until_scale_to_zero()),
        ("above_max", current_above_max()),
        ("below_min", current_below_min()),
        ("scaling_disabled", scaling_disabled()),
        ("scale_to_zero", scale_to_zero()),
        ("activated", activated()),
        ("stays_at_zero", stays_at_zero()),
        ("victims", victims()),
        (
            "activated_by_backlog",
            activated_by_backlog_without_traffic(),
        ),
        ("demand_unknown", demand_unknown()),
        ("activation_scale", activation_scale()),
        ("initial_scale", initial_scale()),
        ("paused", paused()),
        ("fallback", fallback()),
        ("schedule", schedule()),
        ("formula", formula()),
        ("slo_plan", slo_plan_sizes_from_the_model()),
        ("slo_keeps", slo_keeps_through_a_dip()),
        ("slo_reads_arrivals", slo_reads_arrivals_from_queues()),
        ("slo_reached", slo_reached()),
        ("slo_recurring_burst", slo_recurring_burst()),
        ("slo_silent_until_burst", slo_silent_until_burst()),
        ("slo_idle_to_zero", slo_idle_to_zero()),
        ("slo_out_of_reach", slo_out_of_reach()),
        ("slo_out_of_reach_counted", slo_out_of_reach_counted()),
        ("slo_hedged_start", slo_hedged_start()),
        ("slo_warming_up", slo_warming_up()),
        ("slo_service_unknown", slo_service_unknown()),
        ("slo_missing", slo_missing_traffic_holds()),
        ("token_slo_plan", token_slo_plan_sizes_from_the_engines()),
        ("token_slo_missing", token_slo_missing_engines_holds()),
    ]
}

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { super::$name(); } )*
    };
}

mod each {
    scenario_tests!(
        metric_proposal,
        within_tolerance,
        metric_missing_and_no_usable_metric,
        scale_down_blocked_by_missing,
        panic_scales_at_once,
        panic_holds_scale_down,
        panic_ends,
        scale_up_stabilized,
        scale_down_stabilized,
        scale_up_limit,
        scale_down_limit,
        scale_up_disabled,
        scale_down_disabled,
        too_many_replicas,
        held_at_one_until_scale_to_zero,
        too_few_replicas,
        current_above_max,
        current_below_min,
        scaling_disabled,
        scale_to_zero,
        activated,
        stays_at_zero,
        victims,
        activated_by_backlog_without_traffic,
        demand_unknown,
        activation_scale,
        initial_scale,
        paused,
        fallback,
        schedule,
        formula,
        slo_plan_sizes_from_the_model,
        slo_keeps_through_a_dip,
        slo_reads_arrivals_from_queues,
        slo_reached,
        slo_recurring_burst,
        slo_silent_until_burst,
        slo_idle_to_zero,
        slo_out_of_reach,
        slo_out_of_reach_counted,
        slo_hedged_start,
        slo_warming_up,
        slo_service_unknown,
        slo_missing_traffic_holds,
        token_slo_plan_sizes_from_the_engines,
        token_slo_missing_engines_holds,
    );
}

#[test]
fn every_reason_code_has_a_scenario() {
    let seen: std::collections::BTreeSet<&str> =
        all_scenarios().iter().flat_map(|(_, d)| codes(d)).collect();
    let missing: Vec<&&str> = Reason::ALL_CODES
        .iter()
        .filter(|c| !seen.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "reason codes no scenario produces: {missing:?}"
    );
}

#[test]
fn every_reason_prints_a_sentence() {
    for (name, d) in all_scenarios() {
        for r in &d.reasons {
            let text = r.to_string();
            assert!(
                text.len() > 10,
                "{name}: reason {} prints too little: {text:?}",
                r.code()
            );
        }
    }
}

/// Bursts of 200 req/s for 30 s every two minutes, 20 req/s between, seen as a controller at
/// its default sync sees them: one sample and one decision every `period` seconds.
fn slo_bursts_decided_every(period: i64) -> Vec<Decision> {
    let rate = |s: i64| {
        if (60..90).contains(&(s % 120)) {
            200.0
        } else {
            20.0
        }
    };
    slo_decided(SLO_POLICY, rate, 720, period, 2)
}

#[test]
fn recurring_bursts_are_learnt_when_decisions_are_five_seconds_apart() {
    for period in [1, 5] {
        let decisions = slo_bursts_decided_every(period);
        let prewarm = decisions
            .iter()
            .find_map(|d| {
                d.reasons.iter().find_map(|r| match r {
                    Reason::SloRecurringBurst { lead_seconds, .. } => Some(*lead_seconds),
                    _ => None,
                })
            })
            .unwrap_or_else(|| panic!("no burst predicted deciding every {period} s"));
        // The stated 20 s cold start, and the period: a start left to the next decision
        // would come that much later.
        assert!(
            (prewarm - (20.0 + period as f64)).abs() < 1e-9,
            "every {period} s: lead {prewarm}"
        );
    }
}

/// Ten minutes of one 35 s request a minute on one replica, then a second with `in_flight`
/// requests in flight: the SLO plan's reason for that second.
fn sparse_slow_plan(in_flight: f64) -> Reason {
    let p = policy(
        "maxReplicas: 20\nslo: {latency: 120s, attainment: 99%, slotsPerReplica: 1, coldStartSeconds: 20}",
    );
    let (mut state, mut arrivals) = (State::default(), 0.0);
    for s in 0..600 {
        arrivals += if s % 60 == 0 { 1.0 } else { 0.0 };
        let busy = if s % 60 < 35 { 1.0 } else { 0.0 };
        let o = slo_second(
            s,
            1,
            busy,
            (arrivals, (arrivals - busy).max(0.0)),
            (35.0, 1.0),
        );
        state = decide(&p, &o, &state, t(s)).state;
    }
    let o = slo_second(
        600,
        1,
        in_flight,
        (arrivals + in_flight, arrivals),
        (35.0, 1.0),
    );
    let d = decide(&p, &o, &state, t(600));
    d.reasons
        .into_iter()
        .find(|r| r.code() == "SloPlan")
        .expect("an SloPlan")
}

/// A queue beyond the ready slots is drained on top of the arrivals: 100 req/s on 3 ready
/// replicas of 4 slots for a minute, then a second with 60 requests in flight (48 queued)
/// plans more replicas than the same second with 10, and says why.
#[test]
fn a_queue_beyond_the_ready_slots_is_planned_to_drain() {
    let p = policy(SLO_POLICY);
    let mut state = State::default();
    for s in 0..60 {
        let total = 100.0 * s as f64;
        let o = slo_second(s, 3, 10.0, (total, total), (0.1, 0.284));
        state = decide(&p, &o, &state, t(s)).state;
    }
    let at = |in_flight: f64| {
        let o = slo_second(60, 3, in_flight, (6000.0, 6000.0 - in_flight), (0.1, 0.284));
        let d = decide(&p, &o, &state, t(60));
        let plan = d
            .reasons
            .iter()
            .find(|r| r.code() == "SloPlan")
            .cloned()
            .expect("an SloPlan");
        let Reason::SloPlan {
            replicas,
            rate,
            queued,
            ..
        } = plan
        else {
            unreachable!()
        };
        (replicas, rate, queued, plan.to_string())
    };
    let (calm, calm_rate, none, calm_text) = at(10.0);
    let (queued, queued_rate, waiting, text) = at(60.0);
    assert_eq!(none, 0.0);
    assert_eq!(waiting, 48.0);
    // Drained over the 21 s lead (the configured 20 s and the loop's second).
    assert!(
        (queued_rate - calm_rate - 48.0 / 21.0).abs() < 1e-6,
        "{calm_rate} {queued_rate}"
    );
    assert!(queued >= calm, "{calm} {queued}");
    assert!(!calm_text.contains("queued"), "{calm_text}");
    assert!(
        text.ends_with("; the rate drains the 48 requests queued beyond the ready slots"),
        "{text}"
    );
}

/// Where a replica starts within a service time (20 s against 35 s requests), the requests in
/// flight now say what the lead holds: the plan sizes from them over the lead, and says so.
#[test]
fn a_lead_within_a_few_service_times_is_sized_from_the_requests_in_flight() {
    let replicas_of = |r: &Reason| match r {
        Reason::SloPlan {
            replicas,
            over_lead,
            ..
        } => (*replicas, *over_lead),
        other => panic!("{other:?}"),
    };
    let (idle, idle_lead) = replicas_of(&sparse_slow_plan(0.0));
    let busy_reason = sparse_slow_plan(3.0);
    let (busy, busy_lead) = replicas_of(&busy_reason);
    let lead = busy_lead.expect("sized over the lead");
    assert_eq!(lead.in_flight, 3.0);
    // The configured cold start plus the decision loop's second.
    assert!((lead.lead_seconds - 21.0).abs() < 1e-9, "{lead:?}");
    assert!(idle_lead.is_some());
    // Three busy replicas and room for the next arrival, where none in flight needs one.
    assert_eq!(idle, 1);
    assert!((4..=6).contains(&busy), "{busy}: {busy_reason}");
    let text = busy_reason.to_string();
    assert!(
        text.contains(&format!("{busy} replicas predicted"))
            && text.contains("over the next 21 s from 3 in flight, for 0."),
        "{text}"
    );
}
