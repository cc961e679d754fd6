//! Prometheus histograms read as histograms: cumulative bucket counts, their growth over a
//! window, and a quantile by linear interpolation within the bucket it falls in (the rule of
//! PromQL's `histogram_quantile`).

use super::Sample;

/// A histogram's cumulative counts at ascending upper bounds (seconds), the last `+Inf`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Buckets(pub Vec<(f64, f64)>);

impl Buckets {
    /// The buckets of histogram `name` in a scrape (its `name_bucket` series, summed over the
    /// series that share a bound), bounds multiplied by `scale`; `None` when it has none or no
    /// `+Inf` bucket.
    pub fn from_samples(samples: &[Sample], name: &str, scale: f64) -> Option<Buckets> {
        let series = format!("{name}_bucket");
        let mut by_bound: Vec<(f64, f64)> = Vec::new();
        for (n, labels, v) in samples {
            if *n != series {
                continue;
            }
            let Some(le) = labels.get("le").and_then(|l| parse_bound(l)) else {
                continue;
            };
            let bound = le * scale;
            match by_bound.iter_mut().find(|(b, _)| *b == bound) {
                Some((_, c)) => *c += v,
                None => by_bound.push((bound, *v)),
            }
        }
        by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
        let complete = by_bound.last().is_some_and(|(b, _)| b.is_infinite())
            && by_bound.iter().all(|(_, c)| c.is_finite() && *c >= 0.0);
        complete.then_some(Buckets(by_bound))
    }

    /// The highest finite bound at most `at` and at least `floor`, with its count.
    pub fn at_or_below(&self, at: f64, floor: f64) -> Option<(f64, f64)> {
        self.0
            .iter()
            .rev()
            .find(|(b, _)| b.is_finite() && *b <= at)
            .filter(|(b, _)| *b >= floor)
            .copied()
    }

    /// The count at the bound `bound`, where the histogram has that bound.
    pub fn count_at(&self, bound: f64) -> Option<f64> {
        self.0.iter().find(|(b, _)| *b == bound).map(|(_, c)| *c)
    }

    /// Observations counted.
    pub fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, c)| *c)
    }

    /// What was counted since `earlier`, the same histogram; `None` when the bounds differ or
    /// a count went back (the replica restarted: then all it counted is recent).
    pub fn since(&self, earlier: &Buckets) -> Option<Buckets> {
        if self.0.len() != earlier.0.len() {
            return None;
        }
        self.0
            .iter()
            .zip(&earlier.0)
            .map(|(&(b, c), &(eb, ec))| (b == eb && c >= ec).then_some((b, c - ec)))
            .collect::<Option<Vec<_>>>()
            .map(Buckets)
    }

    /// Adds another replica's counts with the same bounds; false (and nothing added) when the
    /// bounds differ.
    pub fn add(&mut self, other: &Buckets) -> bool {
        if self.0.is_empty() {
            *self = other.clone();
            return true;
        }
        let same =
            self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| a.0 == b.0);
        if same {
            for (a, b) in self.0.iter_mut().zip(&other.0) {
                a.1 += b.1;
            }
        }
        same
    }
}

fn parse_bound(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        _ => le.parse().ok().filter(|v: &f64| !v.is_nan()),
    }
}

/// The `q` quantile (0 to 1) of the observations `buckets` counted, as PromQL's
/// `histogram_quantile` gives it: linear within the bucket the rank falls in, from 0 for the
/// first bucket, and the highest finite bound when it falls in the `+Inf` bucket. `None` when
/// nothing was counted.
pub fn quantile(q: f64, buckets: &Buckets) -> Option<f64> {
    let total = buckets.count();
    if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let at = buckets.0.iter().position(|(_, c)| *c >= rank)?;
    let (upper, count) = buckets.0[at];
    let (lower, below) = match at.checked_sub(1) {
        Some(i) => buckets.0[i],
        None => (0.0_f64.min(upper), 0.0),
    };
    if upper.is_infinite() {
        return Some(lower);
    }
    if count <= below {
        return Some(upper);
    }
    Some(lower + (upper - lower) * (rank - below) / (count - below))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn bucket(name: &str, le: &str, model: &str, v: f64) -> Sample {
        let labels = BTreeMap::from([
            ("le".to_string(), le.to_string()),
            ("model_name".to_string(), model.to_string()),
        ]);
        (format!("{name}_bucket"), labels, v)
    }

    /// By hand: 100 observations, 20 up to 0.1 s, 70 up to 0.5 s, 95 up to 1 s, all by +Inf.
    /// The median's rank 50 falls in (0.1, 0.5], 30 of the 50 in it: 0.1 + 0.4 * 30/50 = 0.34.
    /// p95's rank 95 is the top of (0.5, 1]: 1.0. p99's rank 99 is past every finite bound:
    /// the highest, 1.0. p10's rank 10 is half of the first bucket: 0.05.
    #[test]
    fn quantiles_interpolate_within_the_bucket_as_promql_does() {
        let b = Buckets(vec![
            (0.1, 20.0),
            (0.5, 70.0),
            (1.0, 95.0),
            (f64::INFINITY, 100.0),
        ]);
        let q = |p| quantile(p, &b).unwrap();
        assert!((q(0.5) - 0.34).abs() < 1e-12, "{}", q(0.5));
        assert!((q(0.95) - 1.0).abs() < 1e-12);
        assert!((q(0.99) - 1.0).abs() < 1e-12);
        assert!((q(0.1) - 0.05).abs() < 1e-12);
        assert_eq!(quantile(0.5, &Buckets::default()), None);
        assert_eq!(quantile(0.5, &Buckets(vec![(f64::INFINITY, 0.0)])), None);
    }

    #[test]
    fn buckets_sum_over_series_and_scale_to_seconds() {
        let samples = vec![
            bucket("x_ms", "100", "a", 1.0),
            bucket("x_ms", "100", "b", 2.0),
            bucket("x_ms", "+Inf", "a", 4.0),
            bucket("x_ms", "+Inf", "b", 4.0),
            ("x_ms_count".to_string(), BTreeMap::new(), 8.0),
        ];
        let b = Buckets::from_samples(&samples, "x_ms", 0.001).unwrap();
        assert_eq!(b.0, vec![(0.1, 3.0), (f64::INFINITY, 8.0)]);
        assert_eq!(
            Buckets::from_samples(&samples[..2], "x_ms", 1.0),
            None,
            "no +Inf"
        );
    }

    #[test]
    fn growth_since_an_earlier_scrape_and_a_restart() {
        let earlier = Buckets(vec![(0.1, 5.0), (f64::INFINITY, 10.0)]);
        let now = Buckets(vec![(0.1, 7.0), (f64::INFINITY, 20.0)]);
        assert_eq!(
            now.since(&earlier),
            Some(Buckets(vec![(0.1, 2.0), (f64::INFINITY, 10.0)]))
        );
        let restarted = Buckets(vec![(0.1, 1.0), (f64::INFINITY, 1.0)]);
        assert_eq!(restarted.since(&earlier), None);
        let mut sum = Buckets::default();
        assert!(sum.add(&now) && sum.add(&earlier));
        assert_eq!(sum.0, vec![(0.1, 12.0), (f64::INFINITY, 30.0)]);
        assert!(!sum.add(&Buckets(vec![(f64::INFINITY, 1.0)])));
    }

    #[test]
    fn the_highest_bound_at_or_below_a_latency_and_its_count() {
        let b = Buckets(vec![(0.25, 9.0), (0.5, 12.0), (f64::INFINITY, 13.0)]);
        assert_eq!(b.at_or_below(0.7, 0.35), Some((0.5, 12.0)));
        assert_eq!(b.at_or_below(0.5, 0.25), Some((0.5, 12.0)));
        assert_eq!(b.at_or_below(0.4, 0.3), None, "0.25 is under the floor");
        assert_eq!(b.at_or_below(0.2, 0.0), None);
        assert_eq!((b.count_at(0.25), b.count_at(0.3)), (Some(9.0), None));
    }
}
