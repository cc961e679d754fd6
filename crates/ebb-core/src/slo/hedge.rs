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

use super::queueing::{lognormal_params, normal_cdf, normal_pdf, normal_quantile};

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
    let ready = ReadyTimes::new(missing, starting, mean, sd);
    let (slowest, mut probe) = ready.kth(fewest, ready.horizon, None);
    let most = missing
        .saturating_mul(MOST_PER_MISSING)
        .min(missing.saturating_add(room))
        .saturating_sub(in_progress)
        .max(fewest);
    let (mut best, mut best_net, mut ready_at) = (fewest, 0.0, slowest);
    for new in fewest + 1..=most {
        // More started now are never ready later: the last answer bounds the next.
        (ready_at, probe) = ready.kth(new, ready_at, probe);
        let net = worth * (slowest - ready_at) - f64::from(new - fewest) * ready_at;
        if net > best_net {
            (best, best_net) = (new, net);
        }
    }
    (in_progress + best).saturating_sub(missing)
}

/// How precisely (seconds) a ready time is searched for: far finer than cold starts of
/// seconds are known.
const PRECISION_SECONDS: f64 = 1e-3;

/// Starts in progress whose ages fall in one slice this share of the cold start's standard
/// deviation wide are counted as one cohort, at its middle member's age: a decision's starts
/// begin together, shifting an age by a small part of the spread moves nothing the model
/// can tell, and the sum then costs one term per cohort.
const COHORT_SD: f64 = 0.05;

/// The most steps a ready time's search takes: Newton's converge in a few, and halving
/// the horizon to the precision takes under 30.
const MOST_STEPS: u32 = 60;

/// When the `missing`-th replica is ready with the starts in progress and some started now:
/// where the count expected ready reaches Blom's `missing - 3/8`, a fresh start weighing
/// `F(t)` (with Blom's quarter start more) and one in progress at age `a` the chance it is
/// ready by `a + t` given it was not at `a`. With none in progress this is Blom's quantile
/// `(k - 3/8) / (m + 1/4)` of the cold start.
struct ReadyTimes {
    /// The count expected ready that marks the `missing`-th: `missing - 3/8`.
    k: f64,
    /// The cold start's lognormal parameters.
    mu: f64,
    sigma: f64,
    /// The starts in progress, by cohort.
    cohorts: Vec<Cohort>,
    /// Where the search gives up: starts long overdue count for little, and where even all
    /// of them and the fresh ones are not expected ready by then, it stands for "far later".
    horizon: f64,
}

/// Starts in progress of about one age.
struct Cohort {
    /// How many.
    many: f64,
    /// Their age (seconds): the middle member's.
    age: f64,
    /// The chance a cold start is over by that age, `F(a)`, and its complement (kept off
    /// zero: it divides).
    done: f64,
    left: f64,
}

impl ReadyTimes {
    fn new(missing: u32, starting: &[f64], mean: f64, sd: f64) -> Self {
        let (mu, sigma) = lognormal_params(mean, (sd / mean).powi(2));
        let mut ages = starting.to_vec();
        ages.sort_unstable_by(f64::total_cmp);
        let mut times = Self {
            k: f64::from(missing) - 0.375,
            mu,
            sigma,
            cohorts: Vec::new(),
            horizon: HORIZON_MEANS * mean,
        };
        let slice = |age: &f64| (age / (COHORT_SD * sd)).floor();
        for cohort in ages.chunk_by(|a, b| slice(a) == slice(b)) {
            let age = cohort[cohort.len() / 2];
            let (done, _) = times.cdf_pdf(age);
            times.cohorts.push(Cohort {
                many: cohort.len() as f64,
                age,
                done,
                left: (1.0 - done).max(1e-12),
            });
        }
        times
    }

    /// The cold start's distribution function and density at `t`.
    fn cdf_pdf(&self, t: f64) -> (f64, f64) {
        if t <= 0.0 {
            return (0.0, 0.0);
        }
        let z = (t.ln() - self.mu) / self.sigma;
        (normal_cdf(z), normal_pdf(z) / (self.sigma * t))
    }

    /// The count expected ready `t` seconds from now with `fresh` started now (Blom's
    /// quarter included), less `k`, and its slope.
    fn shortfall(&self, t: f64, fresh: f64) -> Probe {
        let (done, density) = self.cdf_pdf(t);
        let (mut count, mut slope) = (fresh * done - self.k, fresh * density);
        for c in &self.cohorts {
            let (done, density) = self.cdf_pdf(c.age + t);
            count += c.many * (done - c.done) / c.left;
            slope += c.many * density / c.left;
        }
        Probe {
            t,
            count,
            slope,
            done,
            density,
        }
    }

    /// The `missing`-th ready with `new` started now, seconds from now, known to be no later
    /// than `latest`: Newton's steps kept within a bracket that halves where a step would
    /// leave it (*Numerical Recipes*, `rtsafe`), from `probe` where the count before's search
    /// left one (that point for one start fewer), else from `latest`. Returns the last point
    /// evaluated as well, for the next count's search.
    fn kth(&self, new: u32, latest: f64, probe: Option<Probe>) -> (f64, Option<Probe>) {
        let fresh = f64::from(new) + 0.25;
        if self.cohorts.is_empty() {
            let quantile = (self.mu + self.sigma * normal_quantile(self.k / fresh)).exp();
            return (quantile, None);
        }
        let (mut early, mut late) = (0.0, latest.min(self.horizon));
        let mut at = match probe {
            Some(probe) => probe.one_more(),
            None => self.shortfall(late, fresh),
        };
        if at.count < 0.0 && at.t >= late {
            // Not ready by the bound: where that came from the count before's point (which
            // can sit a hair beyond its answer), look at the bound itself.
            if probe.is_some() {
                at = self.shortfall(late, fresh);
            }
            if at.count < 0.0 {
                return (self.horizon, Some(at));
            }
        }
        if at.count >= 0.0 {
            late = late.min(at.t);
        } else {
            early = at.t;
        }
        for _ in 0..MOST_STEPS {
            let newton = at.t - at.count / at.slope;
            let next = if at.slope > 0.0 && newton > early && newton < late {
                newton
            } else {
                0.5 * (early + late)
            };
            if (next - at.t).abs() < PRECISION_SECONDS || late - early < PRECISION_SECONDS {
                return (next.max(early).min(late), Some(at));
            }
            at = self.shortfall(next, fresh);
            if at.count >= 0.0 {
                late = at.t;
            } else {
                early = at.t;
            }
        }
        (late, Some(at))
    }
}

/// A point a ready time's search evaluated: the shortfall and its slope there, and the cold
/// start's distribution and density at it.
#[derive(Clone, Copy)]
struct Probe {
    t: f64,
    count: f64,
    slope: f64,
    done: f64,
    density: f64,
}

impl Probe {
    /// The same point with one more replica started now: the next count's search starts here
    /// without evaluating it again.
    fn one_more(self) -> Self {
        Self {
            count: self.count + self.done,
            slope: self.slope + self.density,
            ..self
        }
    }
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
    fn ready_times_match_a_plain_search() {
        // Newton's steps within their bracket against halving alone, to the precision.
        for (missing, starting) in [
            (1, vec![3.0]),
            (4, vec![0.0, 10.0, 20.0, 40.0]),
            (8, vec![5.0; 16]),
            (3, vec![500.0, 1.0]),
        ] {
            let times = ReadyTimes::new(missing, &starting, 21.7, 9.0);
            for new in 0..20 {
                let fresh = f64::from(new) + 0.25;
                let (mut early, mut late) = (0.0, times.horizon);
                if times.shortfall(late, fresh).count < 0.0 {
                    assert_eq!(times.kth(new, times.horizon, None).0, times.horizon);
                    continue;
                }
                for _ in 0..60 {
                    let mid = 0.5 * (early + late);
                    if times.shortfall(mid, fresh).count >= 0.0 {
                        late = mid;
                    } else {
                        early = mid;
                    }
                }
                let found = times.kth(new, times.horizon, None).0;
                // And from the count before's search, as `extra_starts` runs them.
                let (before, probe) = match new {
                    0 => (times.horizon, None),
                    _ => times.kth(new - 1, times.horizon, None),
                };
                let chained = times.kth(new, before, probe).0;
                assert!(
                    (chained - late).abs() < 2.0 * PRECISION_SECONDS,
                    "{missing} {new}: {chained} chained against {late}"
                );
                assert!(
                    (found - late).abs() < 2.0 * PRECISION_SECONDS,
                    "{missing} {new}: {found} against {late}"
                );
            }
        }
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
