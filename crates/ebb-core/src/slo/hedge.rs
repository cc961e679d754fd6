//! How many replicas to start beyond those missing while capacity is short.
//!
//! Cold starts vary (image pulls, node placement, model load), so of `m` replicas started the
//! `k`-th to be ready comes sooner the larger `m` is: with a lognormal cold start, about at
//! its quantile `(k - 3/8) / (m + 1/4)` (Blom's approximation of an order statistic's mean).
//! The extra `m - k` are removed while still starting once `k` are ready (the victim ranking
//! takes unready pods first), so each costs about that long in replica-seconds. What an
//! earlier `k`-th start saves is misses; the SLO's own target prices them: in steady state the
//! planner adds a replica exactly when the misses it avoids are worth one, so a shortage that
//! misses `R` times as many requests a second as the last replica needed avoids is worth `R`
//! replica-seconds a second. The count started is the one where the time saved, priced so,
//! most exceeds the extra replicas' cost: none for a shortage of one replica whose misses
//! are the marginal replica's, several times the missing count for a step that leaves the
//! ready replicas overwhelmed (as Knative's panic mode does, but sized).

use super::queueing::{lognormal_params, normal_quantile};

/// The most replicas started per missing one.
const MOST_PER_MISSING: u32 = 8;

/// Extra replicas to start beyond `missing`, for a shortage worth `worth` replica-seconds a
/// second (the misses it causes over those of the last replica needed), with cold starts of
/// `mean` and standard deviation `sd` seconds, at most `room` extra.
pub fn extra_starts(missing: u32, worth: f64, mean: f64, sd: f64, room: u32) -> u32 {
    if missing == 0 || ![worth, mean, sd].iter().all(|&v| v > 0.0) {
        return 0;
    }
    let (mu, sigma) = lognormal_params(mean, (sd / mean).powi(2));
    let kth_ready = |started: u32| {
        let p = (f64::from(missing) - 0.375) / (f64::from(started) + 0.25);
        (mu + sigma * normal_quantile(p)).exp()
    };
    let slowest = kth_ready(missing);
    let most = missing
        .saturating_mul(MOST_PER_MISSING)
        .min(missing.saturating_add(room));
    let (mut best, mut best_net) = (missing, 0.0);
    for started in missing + 1..=most {
        let ready_at = kth_ready(started);
        let net = worth * (slowest - ready_at) - f64::from(started - missing) * ready_at;
        if net > best_net {
            (best, best_net) = (started, net);
        }
    }
    best - missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortage_worth_one_replica_starts_no_extra() {
        assert_eq!(extra_starts(1, 1.0, 21.7, 9.0, 100), 0);
    }

    #[test]
    fn an_overwhelming_shortage_starts_several_per_missing() {
        let extra = extra_starts(7, 100.0, 21.7, 9.0, 100);
        assert!(extra >= 14, "{extra}");
        assert!(extra <= 7 * (MOST_PER_MISSING - 1));
    }

    #[test]
    fn no_spread_or_no_room_starts_no_extra() {
        assert_eq!(extra_starts(5, 100.0, 20.0, 0.0, 100), 0);
        assert_eq!(extra_starts(5, 100.0, 20.0, 8.0, 0), 0);
        assert_eq!(extra_starts(0, 100.0, 20.0, 8.0, 10), 0);
    }

    #[test]
    fn more_worth_never_starts_fewer() {
        let mut last = 0;
        for worth in [0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 500.0] {
            let extra = extra_starts(4, worth, 21.7, 9.0, 100);
            assert!(extra >= last, "{worth}: {extra} < {last}");
            last = extra;
        }
    }
}
