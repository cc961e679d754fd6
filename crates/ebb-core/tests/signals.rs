//! Ebb's own signals, end to end through `decide`.

mod common;
use common::*;
use ebb_core::*;

const LAG_POLICY: &str = r#"
maxReplicas: 20
inferenceLag: {thresholdPerReplica: 10, windowSeconds: 20}
behavior: {scaleDown: {stabilizationWindowSeconds: 0}}
"#;

/// Traffic where `outstanding` requests are pending at every second from `from` to `to`.
fn lagging(from: i64, to: i64, outstanding: f64) -> Vec<TrafficSample> {
    (from..=to)
        .map(|s| {
            let done = (s - from) as f64 * 5.0;
            traffic(t(s), outstanding, done + outstanding, done)
        })
        .collect()
}

fn decide_with(p: &Policy, current: u32, history: Vec<TrafficSample>, now: i64) -> Decision {
    let state = State {
        traffic: history,
        ..Default::default()
    };
    let mut o = obs(current, vec![]);
    o.traffic = state.traffic.last().copied();
    decide(p, &o, &state, t(now))
}

#[test]
fn lag_above_threshold_scales_up_to_lag_over_threshold() {
    // 2 replicas, 45 outstanding: 22.5 per replica > 10, so ceil(45 / 10) = 5.
    let d = decide_with(&policy(LAG_POLICY), 2, lagging(0, 30, 45.0), 30);
    assert_eq!(d.desired_replicas, 5);
    assert_eq!(d.state.last_lag_at, Some(t(30)));
}

#[test]
fn lag_scale_down_waits_for_a_lag_free_window() {
    let p = policy(LAG_POLICY);
    // Lag was seen 5 s ago: hold, even though current outstanding is low.
    let mut state = State {
        traffic: lagging(0, 30, 2.0),
        last_lag_at: Some(t(25)),
        ..Default::default()
    };
    let mut o = obs(5, vec![]);
    o.traffic = state.traffic.last().copied();
    let d = decide(&p, &o, &state, t(30));
    assert_eq!(d.desired_replicas, 5, "{}", d.summary());
    // 25 s after the lag (> 20 s window): down to what the window's peak needs.
    state.last_lag_at = Some(t(5));
    let d = decide(&p, &o, &state, t(30));
    assert_eq!(d.desired_replicas, 1, "{}", d.summary());
}

#[test]
fn external_backlog_pre_warms() {
    let p = policy(
        "maxReplicas: 50\nexternalCount: {mode: backlog, itemsPerReplicaPerSecond: 2, drainSeconds: 60}\n",
    );
    let mut o = obs(1, vec![]);
    o.external_count = Some(Sample {
        value: 1200.0,
        at: t(100),
    });
    let d = decide(&p, &o, &State::default(), t(100));
    // 1200 items / (2 items/s * 60 s) = 10 replicas; scale-up policy allows max(1+4, 2) = 5.
    assert_eq!(d.proposals[0].replicas, Some(10));
    assert_eq!(d.desired_replicas, 5);
    assert_eq!(d.limit, LimitReason::ScaleUpLimit);
}

#[test]
fn external_desired_count_is_taken_as_is() {
    let p = policy("maxReplicas: 50\nexternalCount: {mode: desiredReplicas}\n");
    let mut o = obs(4, vec![]);
    o.external_count = Some(Sample {
        value: 6.0,
        at: t(100),
    });
    assert_eq!(
        decide(&p, &o, &State::default(), t(100)).desired_replicas,
        6
    );
}

#[test]
fn absurd_external_values_are_missing_not_zero() {
    let p = policy(
        "maxReplicas: 50\nexternalCount: {mode: desiredReplicas}\nbehavior: {scaleDown: {stabilizationWindowSeconds: 0}}\n",
    );
    for (value, at) in [
        (f64::NAN, 100),
        (f64::INFINITY, 100),
        (-3.0, 100),
        (0.0, -1000), // stale: 1100 s old
    ] {
        let mut o = obs(4, vec![]);
        o.external_count = Some(Sample { value, at: t(at) });
        let d = decide(&p, &o, &State::default(), t(100));
        assert_eq!(
            d.desired_replicas,
            4,
            "value {value} at {at}: {}",
            d.summary()
        );
        assert!(d.has_reason("MetricMissing"));
    }
}

#[test]
fn stale_pod_samples_never_scale_down() {
    let p = policy(&format!(
        "{RPS_POLICY}behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n"
    ));
    // Samples say load is tiny, but they are 10 minutes old.
    let d = decide(
        &p,
        &obs(6, vec![per_pod("rps", &[0.1; 6], t(0))]),
        &State::default(),
        t(600),
    );
    assert_eq!(d.desired_replicas, 6);
    assert!(d.has_reason("NoUsableMetric"));
}

#[test]
fn rps_target_uses_the_arrival_rate() {
    let p = policy("maxReplicas: 20\nconcurrency: {metric: rps, targetPerReplica: 3}\n");
    // 12 requests/s for a minute.
    let history: Vec<TrafficSample> = (0..=60)
        .map(|s| traffic(t(s), 1.0, 12.0 * s as f64, 12.0 * s as f64))
        .collect();
    let d = decide_with(&p, 2, history, 60);
    assert_eq!(d.proposals[0].replicas, Some(4));
    assert_eq!(d.desired_replicas, 4);
}

#[test]
fn a_counter_reset_starts_a_new_history() {
    let p = policy("maxReplicas: 20\nconcurrency: {metric: rps, targetPerReplica: 3}\n");
    let mut state = State {
        traffic: (0..=60)
            .map(|s| traffic(t(s), 1.0, 12.0 * s as f64, 12.0 * s as f64))
            .collect(),
        ..Default::default()
    };
    // The proxy restarted: counters back near zero. No negative rate may come out of it.
    let mut o = obs(4, vec![]);
    o.traffic = Some(traffic(t(61), 1.0, 3.0, 3.0));
    let d = decide(&p, &o, &state, t(61));
    assert_eq!(d.state.traffic.len(), 1);
    assert_eq!(d.desired_replicas, 4, "{}", d.summary());
    state = d.state;
    o.traffic = Some(traffic(t(62), 1.0, 15.0, 15.0));
    let d = decide(&p, &o, &state, t(62));
    assert_eq!(d.proposals[0].replicas, Some(4), "12 req/s after the reset");
}

#[test]
fn decisions_are_deterministic() {
    let p = policy(RPS_POLICY);
    let o = obs(3, vec![per_pod("rps", &[20.0, 25.0, 31.0], t(100))]);
    let a = decide(&p, &o, &State::default(), t(100));
    let b = decide(&p, &o, &State::default(), t(100));
    assert_eq!(a, b);
}

#[test]
fn applied_state_counts_against_rate_policies() {
    let p = policy(RPS_POLICY);
    let o = obs(2, vec![per_pod("rps", &[100.0, 100.0], t(100))]);
    let d = decide(&p, &o, &State::default(), t(100));
    assert_eq!(d.desired_replicas, 6, "max(2 + 4, 2 * 200%) = 6");
    let state = d.applied_state();
    assert_eq!(state.scale_up_events.len(), 1);
    // 5 s later, still inside the 15 s period: the period started at 2, so the limit stays 6.
    let o = obs(6, vec![per_pod("rps", &[100.0; 6], t(105))]);
    let d = decide(&p, &o, &state, t(105));
    assert_eq!(d.desired_replicas, 6);
    assert_eq!(d.limit, LimitReason::ScaleUpLimit);
}
