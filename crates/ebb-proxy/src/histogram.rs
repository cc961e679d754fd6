//! A latency histogram that the request path records into without a lock, and that prints as
//! a Prometheus histogram (cumulative `_bucket{le=...}` series, `_sum`, `_count`), so that a
//! percentile over a window is `histogram_quantile` over the buckets' rates, as for any
//! server's histogram.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: from a millisecond (the gap between two tokens of
/// a fast stream) to a minute (the first byte of a long generation).
pub const BOUNDS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Counts of observations by bucket, their sum and their number.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets (seconds), ascending.
    bounds: &'static [f64],
    /// Observations in each bucket alone (not cumulative); the last one is above every bound.
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    /// A histogram with the [`BOUNDS`] buckets.
    fn default() -> Histogram {
        Histogram::with_bounds(&BOUNDS)
    }
}

impl Histogram {
    /// A histogram with buckets up to each of `bounds` (seconds, ascending), and one above.
    pub fn with_bounds(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.partition_point(|&b| b < s);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Cumulative counts at each bound, then the total (`+Inf`).
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        self.buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect()
    }

    /// The `q` quantile (0-1) as the upper bound of the bucket it falls in, as a coarse
    /// reading for a status page; `None` before the first observation.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let cumulative = self.cumulative();
        let total = *cumulative.last()?;
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let i = cumulative.iter().position(|&c| c >= rank)?;
        Some(self.bounds.get(i).copied().unwrap_or(f64::INFINITY))
    }

    /// The exposition lines of the series `name` with the label pairs `labels` (as
    /// `service="x"`, without braces), after a `# HELP` and `# TYPE` if `header`.
    pub fn exposition(&self, name: &str, help: &str, labels: &str, header: bool) -> String {
        let mut out = String::new();
        if header {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        }
        let sep = if labels.is_empty() { "" } else { "," };
        let cumulative = self.cumulative();
        for (i, c) in cumulative.iter().enumerate() {
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {c}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(120));
        let c = h.cumulative();
        assert_eq!(c[0], 2, "0.5 ms and 1 ms are both within le=0.001");
        assert_eq!(c[4], 2, "30 ms is above 25 ms");
        assert_eq!(c[5], 3);
        assert_eq!(c[BOUNDS.len() - 1], 3, "two minutes is above every bound");
        assert_eq!(c[BOUNDS.len()], 4);
        assert_eq!(h.quantile_bound(0.5), Some(0.001));
        assert_eq!(h.quantile_bound(0.75), Some(0.05));
        assert_eq!(h.quantile_bound(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn exposition_is_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_millis(200));
        let text = h.exposition("x_seconds", "X.", "service=\"a\"", true);
        assert!(text.starts_with("# HELP x_seconds X.\n# TYPE x_seconds histogram\n"));
        assert!(text.contains("x_seconds_bucket{service=\"a\",le=\"0.025\"} 1\n"));
        assert!(text.contains("x_seconds_bucket{service=\"a\",le=\"0.25\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{service=\"a\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("x_seconds_sum{service=\"a\"} 0.22\n"));
        assert!(text.contains("x_seconds_count{service=\"a\"} 2\n"));
        assert!(Histogram::default().quantile_bound(0.5).is_none());
    }
}
