//! Service time models: how long a request holds one of a replica's concurrency slots.

use rand::Rng;
use rand_distr::{Distribution, LogNormal};
use std::fmt;
use std::str::FromStr;

/// How service time is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceTime {
    /// Always this many seconds.
    Constant(f64),
    /// Exponential with this mean (seconds): the M/M/c model.
    Exponential {
        /// Mean seconds.
        mean: f64,
    },
    /// Lognormal with this median (seconds) and log-space sigma.
    LogNormal {
        /// Median seconds.
        median: f64,
        /// Sigma of ln(service time).
        sigma: f64,
    },
    /// `base + per_unit * work`, for traces with a work size (tokens, measured seconds); a
    /// request without a work size takes `base + per_unit * mean_work`.
    Proportional {
        /// Fixed part, seconds.
        base: f64,
        /// Seconds per unit of work.
        per_unit: f64,
        /// Work assumed when a request has none.
        mean_work: f64,
    },
}

impl ServiceTime {
    /// Draws one service time for a request of `work` (NaN when unknown).
    pub fn sample<R: Rng>(&self, work: f64, rng: &mut R) -> f64 {
        match *self {
            ServiceTime::Constant(s) => s,
            ServiceTime::Exponential { mean } => {
                let u: f64 = rng.gen();
                -mean * (1.0 - u).ln()
            }
            ServiceTime::LogNormal { median, sigma } => {
                LogNormal::new(median.ln(), sigma).map_or(median, |d| d.sample(rng))
            }
            ServiceTime::Proportional {
                base,
                per_unit,
                mean_work,
            } => {
                let w = if work.is_finite() && work >= 0.0 {
                    work
                } else {
                    mean_work
                };
                base + per_unit * w
            }
        }
    }

    /// The mean service time (seconds).
    pub fn mean(&self) -> f64 {
        match *self {
            ServiceTime::Constant(s) => s,
            ServiceTime::Exponential { mean } => mean,
            ServiceTime::LogNormal { median, sigma } => median * (sigma * sigma / 2.0).exp(),
            ServiceTime::Proportional {
                base,
                per_unit,
                mean_work,
            } => base + per_unit * mean_work,
        }
    }
}

impl fmt::Display for ServiceTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceTime::Constant(s) => write!(f, "constant:{}ms", s * 1000.0),
            ServiceTime::Exponential { mean } => write!(f, "exp:{}ms", mean * 1000.0),
            ServiceTime::LogNormal { median, sigma } => {
                write!(f, "lognormal:{}ms:{sigma}", median * 1000.0)
            }
            ServiceTime::Proportional { base, per_unit, .. } => {
                write!(
                    f,
                    "proportional:{}ms:{}ms",
                    base * 1000.0,
                    per_unit * 1000.0
                )
            }
        }
    }
}

pub use ebb_core::time::parse_duration;

/// The widest lognormal spread accepted: at sigma 4 the mean is already e^8 (about 3,000)
/// times the median; beyond it the mean overflows into nonsense.
pub const MAX_SIGMA: f64 = 4.0;

impl FromStr for ServiceTime {
    type Err = String;
    /// `constant:100ms`, `exp:100ms`, `lognormal:100ms:0.5`, `proportional:50ms:2ms`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let positive = |v: f64, what: &str| {
            if v > 0.0 && v.is_finite() {
                Ok(v)
            } else {
                Err(format!("{what} must be positive in '{s}'"))
            }
        };
        match parts.as_slice() {
            ["constant", d] => Ok(ServiceTime::Constant(positive(parse_duration(d)?, "duration")?)),
            ["exp", d] => Ok(ServiceTime::Exponential {
                mean: positive(parse_duration(d)?, "mean")?,
            }),
            ["lognormal", d, sigma] => Ok(ServiceTime::LogNormal {
                median: positive(parse_duration(d)?, "median")?,
                sigma: sigma
                    .parse::<f64>()
                    .ok()
                    .filter(|v| (0.0..=MAX_SIGMA).contains(v))
                    .ok_or_else(|| {
                        format!("sigma '{sigma}' must be a number in [0, {MAX_SIGMA}]")
                    })?,
            }),
            ["proportional", base, per] => Ok(ServiceTime::Proportional {
                base: parse_duration(base)?,
                per_unit: positive(parse_duration(per)?, "per-unit time")?,
                mean_work: 1.0,
            }),
            _ => Err(format!(
                "'{s}' is not a service time (constant:100ms, exp:100ms, lognormal:100ms:0.5, proportional:50ms:2ms)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_specs() {
        assert_eq!("constant:100ms".parse(), Ok(ServiceTime::Constant(0.1)));
        assert_eq!(
            "lognormal:2s:0.5".parse(),
            Ok(ServiceTime::LogNormal {
                median: 2.0,
                sigma: 0.5
            })
        );
        assert!("lognormal:2s".parse::<ServiceTime>().is_err());
        assert!("constant:-1s".parse::<ServiceTime>().is_err());
        assert_eq!(parse_duration("1.5m"), Ok(90.0));
    }

    #[test]
    fn sample_means_match() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        for s in [
            ServiceTime::Exponential { mean: 0.2 },
            ServiceTime::LogNormal {
                median: 0.1,
                sigma: 0.5,
            },
        ] {
            let n = 200_000;
            let mean: f64 = (0..n).map(|_| s.sample(f64::NAN, &mut rng)).sum::<f64>() / n as f64;
            assert!(
                (mean / s.mean() - 1.0).abs() < 0.01,
                "{s}: {mean} vs {}",
                s.mean()
            );
        }
    }
}
