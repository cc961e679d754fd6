//! The traffic history behind the windowed signals: proxy or pod-scrape counters, appended to
//! the state at each decision and pruned to the longest window.

use crate::observation::{is_fresh, is_usable, TrafficSample};
use crate::time::Time;

/// Adds a new sample to `history` (if it is usable and newer) and drops points no window of
/// `keep_ms` can need. A counter that went backwards (proxy restart) starts a new history.
pub fn record(
    history: &mut Vec<TrafficSample>,
    sample: Option<&TrafficSample>,
    now: Time,
    keep_ms: i64,
) {
    if let Some(s) = sample {
        let usable = is_usable(s.in_flight)
            && is_usable(s.arrivals_total)
            && is_usable(s.completions_total)
            && s.at <= now;
        if usable {
            match history.last() {
                Some(last) if s.at <= last.at => {}
                Some(last)
                    if s.arrivals_total < last.arrivals_total
                        || s.completions_total < last.completions_total =>
                {
                    history.clear();
                    history.push(*s);
                }
                _ => history.push(*s),
            }
        }
    }
    // Keep one point at or before the window start as the base for rates.
    let start = now.minus_millis(keep_ms);
    while history.len() >= 2 && history[1].at <= start {
        history.remove(0);
    }
}

/// The latest sample, if fresh.
pub fn latest(history: &[TrafficSample], now: Time, stale_after_ms: i64) -> Option<&TrafficSample> {
    history
        .last()
        .filter(|s| is_fresh(s.at, now, stale_after_ms))
}

/// Mean in-flight over the points in `(now - window, now]`.
pub fn mean_in_flight(history: &[TrafficSample], now: Time, window_ms: i64) -> Option<f64> {
    let start = now.minus_millis(window_ms);
    let (sum, n) = history
        .iter()
        .filter(|s| s.at > start && s.at <= now)
        .fold((0.0, 0usize), |(sum, n), s| (sum + s.in_flight, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Arrivals per second over the window: from the last point at or before its start (or the
/// oldest point, while the history is shorter than the window) to the newest.
pub fn arrival_rate(history: &[TrafficSample], now: Time, window_ms: i64) -> Option<f64> {
    let start = now.minus_millis(window_ms);
    let newest = history.last()?;
    let base = history
        .iter()
        .rev()
        .find(|s| s.at <= start)
        .or_else(|| history.first())?;
    let elapsed_ms = newest.at.millis_since(base.at);
    if elapsed_ms <= 0 {
        return None;
    }
    Some((newest.arrivals_total - base.arrivals_total) / (elapsed_ms as f64 / 1000.0))
}

/// Whether the history reaches back to the start of the window.
pub fn covers(history: &[TrafficSample], now: Time, window_ms: i64) -> bool {
    history
        .first()
        .is_some_and(|s| s.at <= now.minus_millis(window_ms))
}

/// Requests arrived but not completed at a point (Seldon's "lag").
pub fn outstanding(s: &TrafficSample) -> f64 {
    (s.arrivals_total - s.completions_total).max(0.0)
}
