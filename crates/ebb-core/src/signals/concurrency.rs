//! Knative's KPA model: a per-replica target averaged over a stable window, and a short panic
//! window that scales up at once on a spike and forbids scale-down while it lasts.

use super::{ceil_count, traffic, SignalOutcome};
use crate::policy::{Concurrency, ConcurrencyMetric};
use crate::state::{PanicState, State};
use crate::time::Time;

/// The concurrency signal's result for one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ConcurrencyResult {
    /// Stable-window proposal (joins the other metrics).
    pub stable: SignalOutcome,
    /// While panicking: the replicas panic mode demands, and demand as % of ready capacity.
    pub panic: Option<(u32, f64)>,
    /// Whether panic mode ended in this decision.
    pub panic_ended: bool,
}

fn window_value(c: &Concurrency, state: &State, now: Time, window_ms: i64) -> Option<f64> {
    match c.metric {
        ConcurrencyMetric::Concurrency => traffic::mean_in_flight(&state.traffic, now, window_ms),
        ConcurrencyMetric::Rps => traffic::arrival_rate(&state.traffic, now, window_ms),
    }
}

/// Evaluates the signal and advances the panic state in `state`.
pub fn evaluate(
    c: &Concurrency,
    state: &mut State,
    ready_replicas: u32,
    now: Time,
    stale_after_ms: i64,
) -> ConcurrencyResult {
    let name = c.metric.as_str();
    if traffic::latest(&state.traffic, now, stale_after_ms).is_none() {
        return ConcurrencyResult {
            stable: SignalOutcome::Missing(format!("no fresh traffic sample for {name}")),
            panic: None,
            panic_ended: false,
        };
    }
    let stable_value = window_value(c, state, now, c.stable_window_ms);
    let panic_value = window_value(c, state, now, c.panic_window_ms);
    let (Some(stable_value), Some(panic_value)) = (stable_value, panic_value) else {
        return ConcurrencyResult {
            stable: SignalOutcome::Missing(format!("not enough traffic samples yet for {name}")),
            panic: None,
            panic_ended: false,
        };
    };
    let stable_replicas = ceil_count(stable_value / c.target_per_replica);
    let panic_replicas = ceil_count(panic_value / c.target_per_replica);
    let ready = f64::from(ready_replicas.max(1));
    let demand = panic_value / (c.target_per_replica * ready);
    let over = f64::from(panic_replicas) / ready >= c.panic_threshold;

    let mut panic_ended = false;
    if over {
        match &mut state.panic {
            Some(p) => p.last_over_threshold = now,
            None => {
                state.panic = Some(PanicState {
                    since: now,
                    last_over_threshold: now,
                    max_replicas: 0,
                })
            }
        }
    } else if let Some(p) = state.panic {
        if now.millis_since(p.last_over_threshold) >= c.stable_window_ms {
            state.panic = None;
            panic_ended = true;
        }
    }
    let panic = state.panic.as_mut().map(|p| {
        p.max_replicas = p.max_replicas.max(panic_replicas);
        (p.max_replicas, demand * 100.0)
    });
    let unit = match c.metric {
        ConcurrencyMetric::Concurrency => "in flight",
        ConcurrencyMetric::Rps => "req/s",
    };
    ConcurrencyResult {
        stable: SignalOutcome::Proposal {
            replicas: stable_replicas,
            value: stable_value,
            value_text: format!("{stable_value:.2} {unit}"),
            target_text: format!("{} {unit} per replica", c.target_per_replica),
        },
        panic,
        panic_ended,
    }
}
