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

use super::queueing::{lognormal_params, normal_cdf, normal_quantile};

/// The most replicas started per missing one.
const MOST_PER_MISSING: u32 = 8;

/// How many mean cold starts ahead the `k`-th ready replica is looked for.
const HORIZON_MEANS: f64 = 20.0;

/// Extra replicas to start beyond `missing`, for a shortage worth `worth` replica-seconds a
/// second (the misses it causes over those of the last replica needed), with cold starts of
/// `mean` and standard deviation `sd` seconds, at most `room` extra. `starting` are the ages
/// (seconds) of the starts already in progress: they count among the extras, each as far
/// through its cold start as it is, so a decision does not start fresh replicas beside ones
/// nearly ready. The result counts them: the total to have starting is `missing` plus it.
pub fn extra_starts(
    missing: u32,
    starting: &[f64],
    worth: f64,
    mean: f64,
    sd: f64,
    room: u32,
) -> u32 {
    let in_progress = u32::try_from(starting.len()).unwrap_or(u32::MAX);
    let fewest = missing.saturating_sub(in_progress);
    if missing == 0 || ![worth, mean, sd].iter().all(|&v| v > 0.0) {
        return in_progress.saturating_sub(missing);
    }
    let (mu, sigma) = lognormal_params(mean, (sd / mean).powi(2));
    let kth_ready = |new: u32| kth_ready(missing, starting, new, (mu, sigma), mean);
    let slowest = kth_ready(fewest);
    let most = missing
        .saturating_mul(MOST_PER_MISSING)
        .min(missing.saturating_add(room))
        .saturating_sub(in_progress)
        .max(fewest);
    let (mut best, mut best_net) = (fewest, 0.0);
    for new in fewest + 1..=most {
        let ready_at = kth_ready(new);
        let net = worth * (slowest - ready_at) - f64::from(new - fewest) * ready_at;
        if net > best_net {
            (best, best_net) = (new, net);
        }
    }
    (in_progress + best).saturating_sub(missing)
}

/// When the `missing`-th replica is ready, seconds from now, with the starts in progress at
/// ages `starting` and `new` started now: where the count expected ready reaches Blom's
/// `missing - 3/8`, a fresh start weighing `F(t)` (with Blom's quarter start more) and one
/// in progress at age `a` the chance it is ready by `a + t` given it was not at `a`. With
/// none in progress this is Blom's quantile `(k - 3/8) / (m + 1/4)` of the cold start.
fn kth_ready(missing: u32, starting: &[f64], new: u32, (mu, sigma): (f64, f64), mean: f64) -> f64 {
    let cdf = |t: f64| {
        if t <= 0.0 {
            0.0
        } else {
            normal_cdf((t.ln() - mu) / sigma)
        }
    };
    let k = f64::from(missing) - 0.375;
    let fresh = f64::from(new) + 0.25;
    if starting.is_empty() {
        return (mu + sigma * normal_quantile(k / fresh)).exp();
    }
    let expected = |t: f64| {
        let in_progress: f64 = starting
            .iter()
            .map(|&age| (cdf(age + t) - cdf(age)) / (1.0 - cdf(age)).max(1e-12))
            .sum();
        in_progress + fresh * cdf(t)
    };
    // Starts long overdue count for little; where even all of them and the fresh ones are
    // not expected ready within this horizon, the horizon stands for "far later".
    let (mut early, mut late) = (0.0, HORIZON_MEANS * mean);
    if expected(late) < k {
        return late;
    }
    for _ in 0..30 {
        let mid = 0.5 * (early + late);
        if expected(mid) >= k {
            late = mid;
        } else {
            early = mid;
        }
    }
    late
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortage_worth_one_replica_starts_no_extra() {
        assert_eq!(extra_starts(1, &[], 1.0, 21.7, 9.0, 100), 0);
    }

    #[test]
    fn an_overwhelming_shortage_starts_several_per_missing() {
        let extra = extra_starts(7, &[], 100.0, 21.7, 9.0, 100);
        assert!(extra >= 14, "{extra}");
        assert!(extra <= 7 * (MOST_PER_MISSING - 1));
    }

    #[test]
    fn no_spread_or_no_room_starts_no_extra() {
        assert_eq!(extra_starts(5, &[], 100.0, 20.0, 0.0, 100), 0);
        assert_eq!(extra_starts(5, &[], 100.0, 20.0, 8.0, 0), 0);
        assert_eq!(extra_starts(0, &[], 100.0, 20.0, 8.0, 10), 0);
    }

    #[test]
    fn starts_just_begun_count_as_the_extras_they_are() {
        for worth in [1.0, 10.0, 100.0] {
            let none = extra_starts(4, &[], worth, 21.7, 9.0, 100);
            assert_eq!(extra_starts(4, &[0.0, 0.0], worth, 21.7, 9.0, 100), none);
            // As many starting as the priced count: they are the extras, none is added.
            let priced = vec![0.0; (4 + none) as usize];
            assert_eq!(extra_starts(4, &priced, worth, 21.7, 9.0, 100), none);
        }
    }

    #[test]
    fn starts_nearly_ready_call_for_fewer_fresh_ones() {
        // Four missing and four starting: 20 s into a 21.7 s mean cold start, they are
        // nearer than any fresh start, so fewer fresh ones are worth starting beside them.
        for worth in [5.0, 10.0, 100.0] {
            let near = extra_starts(4, &[20.0; 4], worth, 21.7, 9.0, 100);
            let begun = extra_starts(4, &[0.0; 4], worth, 21.7, 9.0, 100);
            assert!(near < begun, "{worth}: {near} against {begun}");
        }
        // Twelve nearly ready for four missing: all kept as extras, none added.
        assert_eq!(extra_starts(4, &[20.0; 12], 100.0, 21.7, 9.0, 100), 8);
    }

    #[test]
    fn starts_long_overdue_are_started_again() {
        // Four missing, four starting for 500 s against a 21.7 s mean: stuck, not nearly
        // ready, so at least four fresh ones start beside them.
        let extra = extra_starts(4, &[500.0; 4], 10.0, 21.7, 9.0, 100);
        assert!(extra >= 4, "{extra}");
    }

    #[test]
    fn more_worth_never_starts_fewer() {
        let mut last = 0;
        for worth in [0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 500.0] {
            let extra = extra_starts(4, &[], worth, 21.7, 9.0, 100);
            assert!(extra >= last, "{worth}: {extra} < {last}");
            last = extra;
        }
    }
}
