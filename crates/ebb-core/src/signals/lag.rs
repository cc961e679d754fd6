//! Seldon Core 2's inference-lag model: outstanding requests (incoming minus completed). Scale up
//! as soon as lag per replica exceeds the threshold; scale down only after a whole window
//! without lag, and then only as far as the window's peak lag allows.

use super::{ceil_count, traffic, SignalOutcome};
use crate::policy::InferenceLag;
use crate::state::State;
use crate::time::Time;

/// Evaluates the lag signal, updating `state.last_lag_at`.
pub fn evaluate(
    l: &InferenceLag,
    state: &mut State,
    current: u32,
    now: Time,
    stale_after_ms: i64,
) -> SignalOutcome {
    let Some(latest) = traffic::latest(&state.traffic, now, stale_after_ms).copied() else {
        return SignalOutcome::Missing("no fresh traffic sample for inference lag".into());
    };
    let start = now.minus_millis(l.window_ms);
    let mut in_window: Vec<f64> = state
        .traffic
        .iter()
        .filter(|s| s.at > start && s.at <= now)
        .map(traffic::outstanding)
        .collect();
    if in_window.is_empty() {
        in_window.push(traffic::outstanding(&latest));
    }
    let avg = in_window.iter().sum::<f64>() / in_window.len().max(1) as f64;
    let peak = in_window.iter().copied().fold(0.0, f64::max);
    let capacity = l.threshold_per_replica * f64::from(current.max(1));
    if traffic::outstanding(&latest) > capacity || avg > capacity {
        state.last_lag_at = Some(now);
    }
    let lag_free = state
        .last_lag_at
        .is_none_or(|t| now.millis_since(t) >= l.window_ms)
        && traffic::covers(&state.traffic, now, l.window_ms);
    let replicas = if avg > capacity || current == 0 {
        ceil_count(avg / l.threshold_per_replica).max(current)
    } else if lag_free {
        ceil_count(peak / l.threshold_per_replica)
    } else {
        current
    };
    SignalOutcome::Proposal {
        replicas,
        value: avg,
        value_text: format!("{avg:.1} outstanding"),
        target_text: format!("{} per replica", l.threshold_per_replica),
    }
}
