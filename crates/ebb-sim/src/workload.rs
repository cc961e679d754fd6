//! A workload: either timestamped requests or a rate series, and the deterministic arrival
//! stream (with each request's service time) that every simulated policy sees identically.

use crate::service::ServiceTime;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use rand_pcg::Pcg64Mcg;

/// One request of a request trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// Seconds since the start of the trace.
    pub at: f64,
    /// Work size (tokens, seconds of measured execution, ...); NaN when the trace has none.
    pub work: f32,
    /// Prompt (context) tokens, for the token-level simulation; NaN when the trace has none.
    pub prompt: f32,
    /// Model or function id (0 when the trace has one stream).
    pub model: u32,
}

/// What a trace holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// Individual requests, sorted by time.
    Requests(Vec<Request>),
    /// Requests per second over consecutive intervals; expanded to Poisson arrivals.
    Rate {
        /// Interval length in seconds.
        interval: f64,
        /// Rate (requests per second) in each interval.
        rates: Vec<f64>,
    },
}

/// The farthest a copy of a request trace is moved in time by [`Workload::rate_scaled`],
/// seconds: far enough that copies' bursts do not coincide, near enough that the trace's
/// shape over the day (and which half of it a request falls in) is kept.
pub const COPY_SHIFT_SECONDS: f64 = 300.0;

/// A request trace with at least this share of its arrival times on whole seconds recorded
/// time to the second (Mooncake's conversation trace: 99.8%; one with sub-second times has
/// about 0.4% there by chance).
pub const WHOLE_SECOND_SHARE: f64 = 0.9;

/// `t` folded back into `[0, end]` at either end, as a mirror does.
fn reflect(t: f64, end: f64) -> f64 {
    if t < 0.0 {
        (-t).min(end)
    } else if t > end {
        (2.0 * end - t).max(0.0)
    } else {
        t
    }
}

impl Workload {
    /// Length of the workload in seconds.
    pub fn duration(&self) -> f64 {
        match self {
            Workload::Requests(r) => r.last().map_or(0.0, |l| l.at),
            Workload::Rate { interval, rates } => *interval * rates.len() as f64,
        }
    }

    /// Expected number of requests.
    pub fn expected_requests(&self) -> f64 {
        match self {
            Workload::Requests(r) => r.len() as f64,
            Workload::Rate { interval, rates } => rates.iter().sum::<f64>() * interval,
        }
    }

    /// Mean request rate over the first `seconds` of the workload.
    pub fn initial_rate(&self, seconds: f64) -> f64 {
        match self {
            Workload::Requests(r) => {
                r.iter().take_while(|q| q.at < seconds).count() as f64 / seconds
            }
            Workload::Rate { interval, rates } => {
                let n = ((seconds / interval).ceil() as usize).clamp(1, rates.len().max(1));
                rates.iter().take(n).sum::<f64>() / n as f64
            }
        }
    }

    /// Mean work size over the requests that have one (NaN when none has).
    pub fn mean_work(&self) -> f64 {
        match self {
            Workload::Requests(r) => {
                let (sum, n) = r
                    .iter()
                    .filter(|q| q.work.is_finite())
                    .fold((0.0, 0usize), |(s, n), q| (s + f64::from(q.work), n + 1));
                if n == 0 {
                    f64::NAN
                } else {
                    sum / n as f64
                }
            }
            Workload::Rate { .. } => f64::NAN,
        }
    }

    /// Stretches time by `factor` (0.5 plays the trace twice as fast, at twice the rate).
    pub fn time_scaled(self, factor: f64) -> Workload {
        match self {
            Workload::Requests(mut r) => {
                for q in &mut r {
                    q.at *= factor;
                }
                Workload::Requests(r)
            }
            Workload::Rate { interval, rates } => Workload::Rate {
                interval: interval * factor,
                rates: rates.into_iter().map(|x| x / factor).collect(),
            },
        }
    }

    /// Multiplies the request rate by `factor`. A rate series is scaled. A request trace is
    /// thinned (seeded) for the fraction below one, and for each whole unit above one gets
    /// another copy of itself, moved by its own seeded offset of at most
    /// [`COPY_SHIFT_SECONDS`] either way (reflected at the trace's ends): copies add traffic
    /// the way independent user populations with the same daily shape do, without stacking
    /// every copy's requests on the same instant.
    ///
    /// Offsets are small and random on purpose. Copies spaced evenly over the whole trace
    /// (what this did before) sum to a signal that repeats exactly every `length / copies`
    /// seconds: a predictor learns the period, and the trace's second half holds the same
    /// traffic as its first, which voids a train/test split.
    pub fn rate_scaled(self, factor: f64, seed: u64) -> Workload {
        match self {
            Workload::Rate { interval, rates } => Workload::Rate {
                interval,
                rates: rates.into_iter().map(|x| x * factor).collect(),
            },
            Workload::Requests(r) => {
                let duration = r.last().map_or(0.0, |l| l.at).max(1e-9);
                let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x5eed_5ca1e);
                let whole = factor.floor() as usize;
                let fraction = factor - whole as f64;
                let copies = whole + usize::from(fraction > 0.0);
                let mut out = Vec::with_capacity((r.len() as f64 * factor) as usize + 1);
                let reach = COPY_SHIFT_SECONDS.min(duration / 4.0);
                for c in 0..copies {
                    let shift = if c == 0 {
                        0.0
                    } else {
                        rng.gen_range(-reach..=reach)
                    };
                    for q in &r {
                        if c == whole && rng.gen::<f64>() >= fraction {
                            continue;
                        }
                        out.push(Request {
                            at: reflect(q.at + shift, duration),
                            ..*q
                        });
                    }
                }
                out.sort_by(|a, b| a.at.total_cmp(&b.at));
                Workload::Requests(out)
            }
        }
    }

    /// The share of whole-second arrival times, where it says the request trace recorded
    /// time to the second (at least [`WHOLE_SECOND_SHARE`]); `None` otherwise.
    pub fn recorded_to_the_second(&self) -> Option<f64> {
        let share = self.whole_second_share();
        (share >= WHOLE_SECOND_SHARE).then_some(share)
    }

    /// The share of a request trace's arrival times within 2 ms of a whole second (0 for a
    /// rate series): near 1 when the trace recorded time to the second.
    fn whole_second_share(&self) -> f64 {
        let Workload::Requests(r) = self else {
            return 0.0;
        };
        if r.is_empty() {
            return 0.0;
        }
        let whole = r
            .iter()
            .filter(|q| (q.at - q.at.round()).abs() < 0.002)
            .count();
        whole as f64 / r.len() as f64
    }

    /// Moves each request of a trace recorded to the second to a seeded uniform time within
    /// its second. Such a trace stamps every request of a second with the same instant;
    /// replayed as is, each second starts with a batch that arrived together only on paper.
    pub fn spread_within_seconds(self, seed: u64) -> Workload {
        let Workload::Requests(mut r) = self else {
            return self;
        };
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x005e_c0d5);
        for q in &mut r {
            q.at = q.at.round() + rng.gen::<f64>();
        }
        r.sort_by(|a, b| a.at.total_cmp(&b.at));
        Workload::Requests(r)
    }

    /// Keeps `[from, from + length)` seconds, re-based to start at zero.
    pub fn window(self, from: f64, length: Option<f64>) -> Workload {
        let to = length.map_or(f64::INFINITY, |l| from + l);
        match self {
            Workload::Requests(r) => Workload::Requests(
                r.into_iter()
                    .filter(|q| q.at >= from && q.at < to)
                    .map(|q| Request {
                        at: q.at - from,
                        ..q
                    })
                    .collect(),
            ),
            Workload::Rate { interval, rates } => {
                let first = (from / interval).floor().max(0.0) as usize;
                let last = if to.is_finite() {
                    ((to / interval).ceil() as usize).min(rates.len())
                } else {
                    rates.len()
                };
                Workload::Rate {
                    interval,
                    rates: rates.get(first..last.max(first)).unwrap_or(&[]).to_vec(),
                }
            }
        }
    }

    /// The arrival stream for `seed`, each with its service time. A window cut with
    /// [`Workload::window`] draws from its start again: give it [`window_seed`] so that a
    /// later window does not replay the draws of the first.
    pub fn arrivals<'a>(&'a self, service: &'a ServiceTime, seed: u64) -> Arrivals<'a> {
        Arrivals {
            workload: self,
            service,
            arrival_rng: Pcg64Mcg::seed_from_u64(seed),
            service_rng: Pcg64Mcg::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 1),
            index: 0,
            t: 0.0,
        }
    }
}

/// One arrival as the simulation sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Seconds since start.
    pub at: f64,
    /// Service time in seconds once it holds a slot.
    pub service: f64,
    /// Model id.
    pub model: u32,
}

/// Deterministic arrivals: the same workload and seed give the same stream.
pub struct Arrivals<'a> {
    workload: &'a Workload,
    service: &'a ServiceTime,
    arrival_rng: Pcg64Mcg,
    service_rng: Pcg64Mcg,
    index: usize,
    t: f64,
}

impl Iterator for Arrivals<'_> {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        match self.workload {
            Workload::Requests(r) => {
                let q = r.get(self.index)?;
                self.index += 1;
                Some(Arrival {
                    at: q.at,
                    service: self
                        .service
                        .sample(f64::from(q.work), &mut self.service_rng),
                    model: q.model,
                })
            }
            Workload::Rate { interval, rates } => {
                // A piecewise-constant Poisson process: draw the next gap at the current
                // interval's rate; when it crosses the interval's end, restart there
                // (exact, by memorylessness).
                loop {
                    let rate = *rates.get(self.index)?;
                    let end = (self.index + 1) as f64 * interval;
                    if rate > 0.0 && rate.is_finite() {
                        let gap = Exp::new(rate)
                            .map_or(f64::INFINITY, |e| e.sample(&mut self.arrival_rng));
                        if self.t + gap < end {
                            self.t += gap;
                            return Some(Arrival {
                                at: self.t,
                                service: self.service.sample(f64::NAN, &mut self.service_rng),
                                model: 0,
                            });
                        }
                    }
                    self.t = end;
                    self.index += 1;
                }
            }
        }
    }
}

/// The seed a window of a workload starting `from_seconds` in draws with: `seed` itself for
/// a window from the start, else `seed` mixed with the start (SplitMix64's finalizer).
/// [`Workload::window`] re-bases a window to time zero, and the draws start over there, so
/// without it a held-out second half would replay the first half's arrivals and service times:
/// a synthetic pattern whose period divides the half would be the very same run twice.
pub fn window_seed(seed: u64, from_seconds: f64) -> u64 {
    if from_seconds <= 0.0 {
        return seed;
    }
    let mut z = seed ^ from_seconds.to_bits().wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request trace with requests at `at` (seconds).
    fn requests_at(at: impl IntoIterator<Item = f64>) -> Workload {
        Workload::Requests(
            at.into_iter()
                .map(|at| Request {
                    at,
                    work: f32::NAN,
                    prompt: f32::NAN,
                    model: 0,
                })
                .collect(),
        )
    }

    #[test]
    fn poisson_expansion_matches_the_rate() {
        let w = Workload::Rate {
            interval: 60.0,
            rates: vec![10.0, 0.0, 30.0],
        };
        let s = ServiceTime::Constant(0.1);
        let arrivals: Vec<Arrival> = w.arrivals(&s, 7).collect();
        let first = arrivals.iter().filter(|a| a.at < 60.0).count() as f64;
        let second = arrivals
            .iter()
            .filter(|a| a.at >= 60.0 && a.at < 120.0)
            .count();
        let third = arrivals.iter().filter(|a| a.at >= 120.0).count() as f64;
        assert!((first - 600.0).abs() < 100.0, "{first}");
        assert_eq!(second, 0);
        assert!((third - 1800.0).abs() < 150.0, "{third}");
        assert!(arrivals.windows(2).all(|p| p[0].at <= p[1].at));
    }

    /// 50 req/s for `seconds`, and lognormal service times around 100 ms.
    fn steady(seconds: usize) -> (Workload, ServiceTime) {
        let w = Workload::Rate {
            interval: 1.0,
            rates: vec![50.0; seconds],
        };
        let s = ServiceTime::LogNormal {
            median: 0.1,
            sigma: 0.5,
        };
        (w, s)
    }

    #[test]
    fn a_later_window_of_a_periodic_pattern_does_not_replay_the_first() {
        let (w, s) = steady(200);
        let first = w.clone().window(0.0, Some(100.0));
        let second = w.window(100.0, Some(100.0));
        let a: Vec<Arrival> = first.arrivals(&s, window_seed(7, 0.0)).collect();
        let b: Vec<Arrival> = second.arrivals(&s, window_seed(7, 100.0)).collect();
        assert_ne!(a, b);
        assert_eq!(window_seed(7, 0.0), 7);
        assert_eq!(window_seed(7, 100.0), window_seed(7, 100.0));
        assert_ne!(window_seed(7, 100.0), window_seed(8, 100.0));
    }

    #[test]
    fn same_seed_same_stream() {
        let (w, s) = steady(100);
        let a: Vec<Arrival> = w.arrivals(&s, 3).collect();
        let b: Vec<Arrival> = w.arrivals(&s, 3).collect();
        assert_eq!(a, b);
        let c: Vec<Arrival> = w.arrivals(&s, 4).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn scaling_and_windows() {
        let w = requests_at((0..100).map(f64::from));
        assert_eq!(w.clone().time_scaled(0.5).duration(), 49.5);
        let thinned = w.clone().rate_scaled(0.5, 1).expected_requests();
        assert!((30.0..70.0).contains(&thinned), "{thinned}");
        assert_eq!(w.clone().rate_scaled(2.0, 1).expected_requests(), 200.0);
        let scaled = w.clone().rate_scaled(3.0, 1);
        let Workload::Requests(r) = &scaled else {
            panic!("a request trace stays one")
        };
        assert!(r.iter().all(|q| (0.0..=99.0).contains(&q.at)));
        assert!(r.windows(2).all(|p| p[0].at <= p[1].at));
        let win = w.window(10.0, Some(20.0));
        assert_eq!(win.expected_requests(), 20.0);
    }

    /// Copies stay near their original time: traffic of the first half stays in the first
    /// half, and the sum of copies does not repeat with period `length / copies`.
    #[test]
    fn copies_keep_the_shape_and_do_not_repeat() {
        let mut at: Vec<f64> = (0..2000).map(|i| f64::from(i) * 0.5).collect();
        at.push(10_000.0);
        let Workload::Requests(r) = requests_at(at).rate_scaled(10.0, 7) else {
            panic!("a request trace stays one")
        };
        assert_eq!(r.len(), 2001 * 10);
        let late = r
            .iter()
            .filter(|q| q.at > 1000.0 + COPY_SHIFT_SECONDS)
            .count();
        assert!(
            late <= 10,
            "{late} requests moved past the busy first 1000 s"
        );
        let period = 1000.0;
        let busy_a = r.iter().filter(|q| q.at < 500.0).count();
        let busy_b = r
            .iter()
            .filter(|q| (period..period + 500.0).contains(&q.at))
            .count();
        assert!(busy_a > 5 * busy_b.max(1), "{busy_a} against {busy_b}");
    }

    /// A trace stamped to the second is recognised, and each request moves within its own
    /// second only; a trace with sub-second times is left alone.
    #[test]
    fn whole_seconds_are_spread_within_their_second() {
        let w = requests_at([0.0, 0.0, 0.0, 1.0, 1.0, 2.999_999, 5.0, 5.0, 5.0, 5.0]);
        assert_eq!(w.recorded_to_the_second(), Some(1.0));
        let Workload::Requests(r) = w.spread_within_seconds(3) else {
            panic!("a request trace stays one")
        };
        let seconds: Vec<f64> = r.iter().map(|q| q.at.floor()).collect();
        assert_eq!(seconds, [0.0, 0.0, 0.0, 1.0, 1.0, 3.0, 5.0, 5.0, 5.0, 5.0]);
        assert!(r.windows(2).all(|p| p[0].at < p[1].at));
        let fine = requests_at([0.1, 0.37, 1.2, 2.0, 2.71]);
        assert_eq!(fine.recorded_to_the_second(), None);
    }
}
