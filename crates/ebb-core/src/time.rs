//! Time as a value: the core never reads a clock.
//!
//! Drivers pass `now` and every observation's timestamp as [`Time`], milliseconds since an
//! epoch of the driver's choosing (the Unix epoch in production, zero in the simulator). Only
//! differences between times matter, so tests can place events to the millisecond.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in time, in milliseconds since the driver's epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Time(i64);

impl Time {
    /// The driver's epoch.
    pub const ZERO: Time = Time(0);

    /// A time `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: i64) -> Time {
        Time(ms)
    }

    /// A time `s` seconds after the epoch.
    pub const fn from_secs(s: i64) -> Time {
        Time(s.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch, as a float (for reports).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// This time moved back by `ms` milliseconds (saturating, so "long ago" stays representable).
    pub const fn minus_millis(self, ms: i64) -> Time {
        Time(self.0.saturating_sub(ms))
    }

    /// This time moved forward by `ms` milliseconds.
    pub const fn plus_millis(self, ms: i64) -> Time {
        Time(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self` (negative when `earlier` is later).
    pub const fn millis_since(self, earlier: Time) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn seconds_since(self, earlier: Time) -> f64 {
        self.millis_since(earlier) as f64 / 1000.0
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={:.3}s", self.as_secs_f64())
    }
}

/// Converts whole or fractional seconds from a policy into milliseconds.
pub(crate) fn secs_to_millis(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

/// Formats a window given in milliseconds the way users wrote it ("300s", "1.5s").
pub(crate) fn fmt_window(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.3}s", ms as f64 / 1000.0)
    }
}

/// The longest duration anything in Ebb takes: a (leap) year. Longer ones are mistakes, and
/// far longer ones overflow the clocks and buffers sized from them.
pub const MAX_DURATION_SECONDS: f64 = 366.0 * 86_400.0;

/// Parses a duration: "150ms", "2s", "1.5m", "1h", "1d", or a bare number of seconds; at
/// most a year.
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("us") {
        (v, 0.000_001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else if let Some(v) = s.strip_suffix('h') {
        (v, 3600.0)
    } else if let Some(v) = s.strip_suffix('d') {
        (v, 86400.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (like 150ms, 2s, 5m, 1h)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("'{s}' must be a non-negative duration"));
    }
    if v * scale > MAX_DURATION_SECONDS {
        return Err(format!("'{s}' is longer than a year"));
    }
    Ok(v * scale)
}

/// Formats seconds the way users write a latency: "500ms" below a second, "1.5s" above.
pub fn fmt_seconds(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{}ms", fmt_short(seconds * 1000.0))
    } else {
        format!("{}s", fmt_short(seconds))
    }
}

/// A number as short as it reads exactly to three decimals ("45", "3.2", "0.125").
pub fn fmt_short(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Formats a share (0.999) as a percentage users write ("99.9%").
pub fn fmt_percent(share: f64) -> String {
    let t = format!("{:.4}", share * 100.0);
    format!("{}%", t.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod duration_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the text, parsing a duration returns an error or a finite duration of at
        /// most a year: never a panic, never a value that overflows what is sized from it.
        #[test]
        fn any_text_parses_to_a_bounded_duration_or_an_error(
            num in prop_oneof![any::<f64>().prop_map(|v| v.to_string()), "[0-9eE+.-]{0,12}"],
            unit in prop_oneof![Just(""), Just("ms"), Just("us"), Just("s"), Just("m"), Just("h"), Just("d")],
        ) {
            if let Ok(v) = parse_duration(&format!("{num}{unit}")) {
                prop_assert!(v.is_finite() && (0.0..=MAX_DURATION_SECONDS).contains(&v));
            }
        }
    }
}
