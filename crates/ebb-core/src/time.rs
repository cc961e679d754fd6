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
