//! The arrival-rate forecast over the cold-start horizon: Holt-Winters exponential smoothing
//! (Holt 1957, Winters 1960) with an additive trend and an additive seasonal component,
//! driven by time rather than by sample count so that irregular samples (a controller polling
//! every few seconds, a simulator every second) smooth alike.
//!
//! - the **level** follows the deseasonalized rate with time constant `level_seconds`;
//! - the **trend** (req/s per second) follows the level's slope with time constant
//!   `trend_seconds`, damped towards zero beyond it when extrapolated; the planner
//!   extrapolates only the part of it that counting noise cannot explain
//!   ([`Forecaster::peak_within_beyond_noise`]), and it is dropped where the last seconds'
//!   arrivals contradict it beyond counting noise ([`Forecaster::drop_contradicted_trend`]:
//!   a step is not a trend, and Holt's level would otherwise overshoot it);
//! - the **season** keeps one value per bucket of the period (a day by default, in 96
//!   buckets of 15 minutes). It is learnt from the first whole period (each bucket's mean minus
//!   the period's mean) and then updated with weight `season_weight` each time a bucket
//!   closes; it adds to the forecast only once a whole period has been seen.

use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Buckets per seasonal period.
pub const SEASON_BUCKETS: usize = 96;

/// Smoothing constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Smoothing {
    /// Time constant of the level, seconds, at rates high enough to fill it with requests.
    pub level_seconds: f64,
    /// Requests the level's time constant must span: at low rates it stretches to
    /// `level_requests / rate` seconds, so that a sparse stream is averaged over enough
    /// arrivals to mean something (up to an hour).
    pub level_requests: f64,
    /// Time constant of the trend, seconds.
    pub trend_seconds: f64,
    /// Seasonal period, seconds (0: no season).
    pub season_seconds: f64,
    /// Weight of a newly closed bucket in the seasonal value.
    pub season_weight: f64,
}

/// The forecaster's state (kept in the decision state, so it survives restarts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Forecaster {
    /// Deseasonalized rate, req/s.
    pub level: f64,
    /// Change of the level, req/s per second.
    pub trend: f64,
    /// When the forecaster last took a sample.
    pub at: Option<Time>,
    /// When it started (the seasonal clock's origin is the driver's epoch).
    pub since: Option<Time>,
    /// Seasonal offsets per bucket, req/s; empty until a whole period was seen. Shared
    /// between copies of the state and written only when a bucket closes, so a decision
    /// copies a pointer, not the period.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub season: Arc<Vec<f64>>,
    /// While learning the first period: per-bucket sums and weights of the rate (shared and
    /// written as `season` is).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub learning: Arc<Vec<[f64; 2]>>,
    /// The bucket being filled and its sum and weight: of the rate during the first period,
    /// of its difference from the level after it.
    #[serde(default)]
    pub open_bucket: Option<(i64, f64, f64)>,
}

fn is_empty<T>(v: &Arc<Vec<T>>) -> bool {
    v.is_empty()
}

/// When a short window's rate differs from the level by more than counting noise explains:
/// the planner's jump test (`Tuning::jump_threshold`, `Tuning::jump_requests`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseTest {
    /// Standard errors of counting noise the difference must exceed.
    pub standard_errors: f64,
    /// Requests the window must hold for the test to mean anything: a sparse stream's single
    /// arrival is no evidence.
    pub least_requests: f64,
}

impl NoiseTest {
    /// The planner's jump test (`Tuning::jump_threshold`, `Tuning::jump_requests`), which
    /// also drops a trend the last seconds contradict.
    pub fn jump(tuning: &crate::policy::Tuning) -> NoiseTest {
        NoiseTest {
            standard_errors: tuning.jump_threshold,
            least_requests: tuning.jump_requests,
        }
    }
}

/// The longest the level's time constant gets, seconds.
const MAX_LEVEL_SECONDS: f64 = 3600.0;

fn bucket_of(at: Time, season_seconds: f64) -> (i64, usize) {
    let width_ms = (season_seconds * 1000.0 / SEASON_BUCKETS as f64).max(1.0) as i64;
    let absolute = at.as_millis().div_euclid(width_ms);
    (
        absolute,
        absolute.rem_euclid(SEASON_BUCKETS as i64) as usize,
    )
}

impl Forecaster {
    /// The level's time constant now, seconds: see [`Smoothing::level_requests`].
    /// Never longer than an hour, even where a measured service time (absurd, or a
    /// broken source's) asks for a longer floor.
    pub fn level_time_constant(&self, s: &Smoothing) -> f64 {
        let rate = self.level.max(1e-9);
        let floor = s.level_seconds.min(MAX_LEVEL_SECONDS);
        (s.level_requests / rate).clamp(floor, MAX_LEVEL_SECONDS)
    }

    /// The seasonal offset at `at`, once learnt.
    pub fn season_at(&self, at: Time, s: &Smoothing) -> f64 {
        if self.season.len() != SEASON_BUCKETS || s.season_seconds <= 0.0 {
            return 0.0;
        }
        self.season[bucket_of(at, s.season_seconds).1]
    }

    /// Takes the rate measured over the interval ending at `at` (lasting `dt` seconds).
    pub fn observe(&mut self, rate: f64, at: Time, dt: f64, s: &Smoothing) {
        let Some(last) = self.at else {
            self.level = rate - self.season_at(at, s);
            self.trend = 0.0;
            self.at = Some(at);
            self.since = Some(at);
            return;
        };
        if at <= last {
            return;
        }
        let alpha = 1.0 - (-dt / self.level_time_constant(s)).exp();
        let beta = 1.0 - (-dt / s.trend_seconds).exp();
        let season = self.season_at(at, s);
        let predicted = self.level + self.trend * dt;
        let level = alpha * (rate - season) + (1.0 - alpha) * predicted;
        let slope = (level - self.level) / dt;
        self.trend = beta * slope + (1.0 - beta) * self.trend;
        self.level = level;
        self.at = Some(at);
        if s.season_seconds > 0.0 {
            self.learn_season(rate, at, dt, s);
        }
    }

    fn learn_season(&mut self, rate: f64, at: Time, dt: f64, s: &Smoothing) {
        let (absolute, _) = bucket_of(at, s.season_seconds);
        let learning = self.season.is_empty();
        let value = if learning { rate } else { rate - self.level };
        match &mut self.open_bucket {
            Some((b, sum, weight)) if *b == absolute => {
                *sum += value * dt;
                *weight += dt;
            }
            open => {
                let closed = open.replace((absolute, value * dt, dt));
                if let Some(closed) = closed {
                    self.close_bucket(closed, s);
                }
            }
        }
        let since = self.since.unwrap_or(at);
        if learning && at.millis_since(since) as f64 >= s.season_seconds * 1000.0 {
            if let Some(open) = self.open_bucket.take() {
                self.close_bucket(open, s);
            }
            self.finish_first_period();
        }
    }

    /// Adds a closed bucket's sum and weight: to the first period's sums while learning it,
    /// else to the season with weight `season_weight`.
    fn close_bucket(&mut self, (bucket, sum, weight): (i64, f64, f64), s: &Smoothing) {
        let i = bucket.rem_euclid(SEASON_BUCKETS as i64) as usize;
        if self.season.is_empty() {
            let learning = Arc::make_mut(&mut self.learning);
            if learning.len() != SEASON_BUCKETS {
                *learning = vec![[0.0, 0.0]; SEASON_BUCKETS];
            }
            learning[i][0] += sum;
            learning[i][1] += weight;
        } else if weight > 0.0 {
            let w = s.season_weight;
            let season = Arc::make_mut(&mut self.season);
            season[i] = w * (sum / weight) + (1.0 - w) * season[i];
        }
    }

    fn finish_first_period(&mut self) {
        let (total, weight) = self
            .learning
            .iter()
            .fold((0.0, 0.0), |(t, w), b| (t + b[0], w + b[1]));
        let mean = if weight > 0.0 { total / weight } else { 0.0 };
        self.season = Arc::new(
            self.learning
                .iter()
                .map(|b| if b[1] > 0.0 { b[0] / b[1] - mean } else { 0.0 })
                .collect(),
        );
        self.learning = Arc::default();
        // The level carried the season so far: take it out from here on.
        self.level = mean.max(0.0);
    }

    /// Drops the trend where the arrivals of the last seconds contradict it: a falling trend
    /// with `recent` (a rate over `window_seconds`) above the level by more than `test`'s
    /// standard errors of counting noise, or a rising one with `recent` as far below it;
    /// the planner's test for a jump, from either side. Holt's level overshoots a step:
    /// after one from 200 to 20 req/s (level 10 s, trend 30 s) the trend it learnt on the
    /// way down carried the level to nothing within 40 s and kept it under 10 req/s for a minute more while the traffic
    /// held at 20, and past the top of a step up it rose 10% above the traffic. On a steady
    /// ramp the level keeps up with the traffic and a short window's rate trails it, so
    /// neither test fires there.
    pub fn drop_contradicted_trend(
        &mut self,
        recent: f64,
        window_seconds: f64,
        test: NoiseTest,
        s: &Smoothing,
    ) {
        if self.trend == 0.0 || self.at.is_none() {
            return;
        }
        let level = self.at_horizon(0.0, s);
        if level.max(recent) * window_seconds < test.least_requests {
            return;
        }
        let margin = test.standard_errors * (level / window_seconds).sqrt();
        let falling_below = self.trend < 0.0 && recent > level + margin;
        let rising_above = self.trend > 0.0 && recent < level - margin;
        if falling_below || rising_above {
            self.trend = 0.0;
        }
    }

    /// The forecast rate `h` seconds after the last sample (never negative); the trend is
    /// damped beyond its own time constant so that noise is not extrapolated far.
    pub fn at_horizon(&self, h: f64, s: &Smoothing) -> f64 {
        self.extrapolated(h, s, self.trend)
    }

    fn extrapolated(&self, h: f64, s: &Smoothing, trend: f64) -> f64 {
        let Some(at) = self.at else {
            return 0.0;
        };
        let damped = s.trend_seconds * (1.0 - (-h / s.trend_seconds).exp());
        let when = at.plus_millis((h * 1000.0) as i64);
        (self.level + trend * damped + self.season_at(when, s)).max(0.0)
    }

    /// The highest forecast over `(0, horizon]`, checked at a few points.
    pub fn peak_within(&self, horizon: f64, s: &Smoothing) -> f64 {
        self.peak_with_trend(horizon, s, self.trend)
    }

    /// As [`Forecaster::peak_within`], with the trend shrunk towards zero by its standard
    /// deviation under counting noise ([`Forecaster::trend_noise`]; a soft threshold): a
    /// slope within one standard deviation of what Poisson arrivals at a steady rate produce
    /// is not extrapolated, and a larger one only by its excess. A sparse stream's single
    /// arrival lifts the level, and the slope it leaves would otherwise be read as a rise
    /// within the cold start.
    pub fn peak_within_beyond_noise(&self, horizon: f64, s: &Smoothing) -> f64 {
        let noise = self.trend_noise(s);
        let trend = self.trend.signum() * (self.trend.abs() - noise).max(0.0);
        self.peak_with_trend(horizon, s, trend)
    }

    fn peak_with_trend(&self, horizon: f64, s: &Smoothing, trend: f64) -> f64 {
        const POINTS: usize = 4;
        (1..=POINTS)
            .map(|i| self.extrapolated(horizon * i as f64 / POINTS as f64, s, trend))
            .fold(self.extrapolated(0.0, s, trend), f64::max)
    }

    /// The trend's standard deviation (req/s per second) when requests arrive as a Poisson
    /// stream at the rate now, with no trend at all. The level averages per-second counts
    /// (variance `rate`) over its time constant `T_L`, so its own variance is about
    /// `rate / (2 T_L)`; the trend, an exponential average of the level's slopes over
    /// `T_T`, telescopes to about the level's distance from its own average over `T_T`,
    /// divided by `T_T`. Hence `sqrt(rate / (2 T_L)) / T_T`. Counting noise only: the
    /// clumps that make counts overdispersed are traffic, and what the trend is there for.
    pub fn trend_noise(&self, s: &Smoothing) -> f64 {
        let rate = self.at_horizon(0.0, s);
        (rate / (2.0 * self.level_time_constant(s))).sqrt() / s.trend_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smoothing(season_seconds: f64) -> Smoothing {
        Smoothing {
            level_seconds: 10.0,
            level_requests: 0.0,
            trend_seconds: 30.0,
            season_seconds,
            season_weight: 0.3,
        }
    }

    #[test]
    fn trend_is_extrapolated_over_the_horizon() {
        let s = smoothing(0.0);
        let mut f = Forecaster::default();
        let rate = |t: f64| 10.0 + 0.5 * t;
        for t in 0..600 {
            f.observe(rate(f64::from(t)), Time::from_secs(i64::from(t)), 1.0, &s);
        }
        // 20 s ahead of t = 599: 10 + 0.5 x 619 = 319.5. The damped trend reaches
        // 30 (1 - e^(-2/3)) = 14.6 s of slope, and the level lags a smoothing window behind.
        let ahead = f.at_horizon(20.0, &s);
        let now = f.at_horizon(0.0, &s);
        assert!(ahead > now + 5.0, "the trend adds: {now} -> {ahead}");
        assert!((ahead - rate(619.0)).abs() / rate(619.0) < 0.05, "{ahead}");
    }

    #[test]
    fn a_learnt_season_anticipates_the_daily_rise() {
        // A one-hour "day": 100 +/- 80 req/s. After two periods the forecast five minutes
        // ahead, on the rising flank, sees most of the rise; without a season it sees none.
        let period = 3600.0;
        let rate = |t: f64| 100.0 + 80.0 * (2.0 * std::f64::consts::PI * t / period).sin();
        let seasonal = smoothing(period);
        let flat = smoothing(0.0);
        let (mut with, mut without) = (Forecaster::default(), Forecaster::default());
        let end = 3 * 3600 - 900; // a quarter period before the end of the third: rising
        for t in 0..end {
            let at = Time::from_secs(i64::from(t));
            with.observe(rate(f64::from(t)), at, 1.0, &seasonal);
            without.observe(rate(f64::from(t)), at, 1.0, &flat);
        }
        assert_eq!(with.season.len(), SEASON_BUCKETS);
        let target = rate(f64::from(end) + 300.0);
        let err_with = (with.at_horizon(300.0, &seasonal) - target).abs();
        let err_without = (without.at_horizon(300.0, &flat) - target).abs();
        assert!(
            err_with < 0.1 * target,
            "seasonal error {err_with} of {target}"
        );
        assert!(err_with < err_without, "{err_with} vs {err_without}");
    }

    #[test]
    fn a_copy_shares_the_period_until_a_bucket_closes() {
        // A 96-second "day": one-second buckets, so every sample closes one.
        let s = smoothing(96.0);
        let mut f = Forecaster::default();
        for t in 0..200 {
            f.observe(
                50.0 + f64::from(t % 7),
                Time::from_secs(i64::from(t)),
                1.0,
                &s,
            );
        }
        assert_eq!(f.season.len(), SEASON_BUCKETS);
        let copy = f.clone();
        assert!(Arc::ptr_eq(&copy.season, &f.season), "a copy is a pointer");
        f.observe(80.0, Time::from_secs(200), 1.0, &s);
        f.observe(80.0, Time::from_secs(201), 1.0, &s);
        assert!(!Arc::ptr_eq(&copy.season, &f.season), "written on its own");
        assert_ne!(copy.season, f.season);
        // The state a status holds reads back, the shared vectors as plain arrays.
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.contains("\"season\":["));
        let back: Forecaster = serde_json::from_str(&json).unwrap();
        assert_eq!(back.season.len(), SEASON_BUCKETS);
        let close = |a: &f64, b: &f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
        assert!(back
            .season
            .iter()
            .zip(f.season.iter())
            .all(|(a, b)| close(a, b)));
    }

    /// Poisson counts by inversion, from a small xorshift generator (no `rand` here).
    fn poisson_counts(rate: f64, seconds: usize, seed: u64) -> Vec<f64> {
        poisson_path(|_| rate, seconds, seed)
    }

    /// The same with the rate of second `t` given by `rate(t)`.
    fn poisson_path(rate: impl Fn(usize) -> f64, seconds: usize, mut seed: u64) -> Vec<f64> {
        let mut uniform = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..seconds)
            .map(|t| {
                let rate = rate(t);
                let (mut k, mut p, mut cdf, u) = (0.0, (-rate).exp(), 0.0, uniform());
                loop {
                    cdf += p;
                    if u < cdf || k > 10.0 * rate + 50.0 {
                        return k;
                    }
                    k += 1.0;
                    p *= rate / k;
                }
            })
            .collect()
    }

    #[test]
    fn trend_noise_matches_the_spread_of_a_steady_poisson_stream() {
        for (rate, level_seconds) in [(50.0, 10.0), (0.05, 32.0), (2.0, 10.0)] {
            let s = Smoothing {
                level_seconds,
                ..smoothing(0.0)
            };
            let mut f = Forecaster::default();
            let (mut squares, mut noise, mut n) = (0.0, 0.0, 0.0);
            for (t, count) in poisson_counts(rate, 200_000, 7).into_iter().enumerate() {
                f.observe(count, Time::from_secs(t as i64), 1.0, &s);
                if t > 1000 {
                    squares += f.trend * f.trend;
                    // The formula at the true rate: the level itself is noisy at low rates.
                    noise += (rate / (2.0 * level_seconds)).sqrt() / s.trend_seconds;
                    n += 1.0;
                }
            }
            let (spread, noise) = ((squares / n).sqrt(), noise / n);
            assert!(
                (spread / noise - 1.0).abs() < 0.1,
                "rate {rate}: trend sd {spread} against {noise}"
            );
        }
    }

    #[test]
    fn a_sparse_arrival_is_not_read_as_a_rise_but_a_steep_one_is() {
        let s = Smoothing {
            level_seconds: 32.0,
            ..smoothing(0.0)
        };
        let mut f = Forecaster::default();
        // A request a minute, then one more: the slope it leaves is noise.
        for t in 0..3600 {
            let count = if t % 60 == 0 || t == 3590 { 1.0 } else { 0.0 };
            f.observe(count, Time::from_secs(t), 1.0, &s);
        }
        let now = f.at_horizon(0.0, &s);
        assert!(
            f.peak_within(40.0, &s) > now * 1.2,
            "the bare trend extrapolates"
        );
        assert!(f.peak_within_beyond_noise(40.0, &s) <= now * 1.01);
        // From 10 to 100 req/s in a minute: far beyond counting noise.
        let mut f = Forecaster::default();
        for t in 0..660 {
            let rate = if t < 600 {
                10.0
            } else {
                10.0 + 1.5 * f64::from(t - 600)
            };
            f.observe(rate, Time::from_secs(i64::from(t)), 1.0, &smoothing(0.0));
        }
        let (s, now) = (smoothing(0.0), f.at_horizon(0.0, &smoothing(0.0)));
        let beyond = f.peak_within_beyond_noise(20.0, &s);
        assert!(beyond > now + 15.0, "{now} -> {beyond}");
        assert!(beyond >= 0.9 * f.peak_within(20.0, &s));
    }

    /// The level and trend after each of `counts` (one a second), with the trend checked
    /// against a 2 s short rate as the planner does (its default jump test), or not at all.
    fn follow(counts: &[f64], checked: bool) -> Vec<(f64, f64)> {
        let s = smoothing(0.0);
        let (mut f, mut short) = (Forecaster::default(), counts[0]);
        let weight = 1.0 - (-0.5f64).exp();
        let test = NoiseTest::jump(&crate::policy::Tuning::default());
        let mut path = Vec::new();
        for (t, &count) in counts.iter().enumerate() {
            f.observe(count, Time::from_secs(t as i64), 1.0, &s);
            short += weight * (count - short);
            if checked {
                f.drop_contradicted_trend(short, 4.0, test, &s);
            }
            path.push((f.at_horizon(0.0, &s), f.trend));
        }
        path
    }

    #[test]
    fn a_step_down_does_not_carry_the_level_below_the_traffic() {
        // 20 req/s, 200 for 40 s, then 20 again for three minutes.
        let mut counts = poisson_counts(20.0, 20, 3);
        counts.extend(poisson_counts(200.0, 40, 4));
        counts.extend(poisson_counts(20.0, 180, 5));
        let lowest = |path: &[(f64, f64)]| path[90..].iter().map(|p| p.0).fold(f64::MAX, f64::min);
        let plain = lowest(&follow(&counts, false));
        let checked = lowest(&follow(&counts, true));
        assert!(plain < 5.0, "Holt alone falls to {plain}");
        assert!(checked > 12.0, "checked, the level falls to {checked}");
        // And past the top of the step up it stays near 200.
        let highest = follow(&counts, true)[20..60]
            .iter()
            .map(|p| p.0)
            .fold(0.0, f64::max);
        assert!(highest < 215.0, "{highest}");
    }

    #[test]
    fn a_steady_ramp_keeps_its_trend() {
        // From 20 to 620 req/s over five minutes, and a slow fall from 300 to 30.
        for (from, slope) in [(20.0, 2.0), (300.0, -0.9)] {
            let counts = poisson_path(|t| from + slope * t as f64, 300, 11);
            let (plain, checked) = (follow(&counts, false), follow(&counts, true));
            let (end_plain, end_checked) = (plain[299], checked[299]);
            assert!(
                (end_checked.1 - slope).abs() < 0.25 * slope.abs(),
                "{slope}: trend {} at the end, {} unchecked",
                end_checked.1,
                end_plain.1
            );
            assert!((end_checked.0 - end_plain.0).abs() < 0.03 * end_plain.0);
        }
    }

    #[test]
    fn flat_signal_forecasts_itself() {
        let s = smoothing(0.0);
        let mut f = Forecaster::default();
        for t in 0..300 {
            f.observe(50.0, Time::from_secs(t), 1.0, &s);
        }
        assert!((f.at_horizon(20.0, &s) - 50.0).abs() < 1e-6);
    }
}
