//! Schedules: calendar windows that raise the floor or lower the ceiling while they are open.
//!
//! A window opens at each occurrence of its start and closes at the next occurrence of its
//! end, both read on the wall clock of its IANA time zone (so 08:00 Europe/Berlin stays 08:00
//! across daylight-saving changes; the cron crate decides what a time skipped or repeated by
//! the change means). A window never sets an exact count: KEDA's cron scaler does, and its
//! users report flapping between it and the load signals. A floor also rises one lead ahead
//! of the window's start, so the replicas are ready when it opens, not a cold start later.
//!
//! The core reads no clock: the driver says where its time zero lies on the calendar
//! ([`crate::Observation::epoch_unix_ms`]).

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

/// Where a window stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Between a start and the end after it.
    Open,
    /// Closed, and opening within the lead: its floor applies already.
    Prewarming {
        /// Milliseconds until it opens.
        opens_in_ms: i64,
    },
    /// Closed.
    Closed,
}

/// One validated schedule window.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The name reasons and status use.
    pub name: String,
    /// The wall clock its times are read on.
    pub zone: Tz,
    /// When it opens.
    pub start: Cron,
    /// When it closes.
    pub end: Cron,
    /// The floor while it is open (and while pre-warming).
    pub min_replicas: Option<u32>,
    /// The ceiling while it is open.
    pub max_replicas: Option<u32>,
    /// How long before the start the floor rises; `None` takes the policy's lead (the cold
    /// start the SLO block knows, else [`DEFAULT_PREWARM_MS`]).
    pub prewarm_ms: Option<i64>,
    /// The window as the user wrote it, for reasons: "Mon-Fri 08:00-18:00 Europe/Berlin".
    pub describe: String,
    /// The document it came from, written back unchanged by `Policy::to_spec`.
    pub spec: ScheduleSpec,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.spec == other.spec
    }
}

/// The lead a floor rises ahead of its window when neither the window nor an SLO block says:
/// the order of a model server's cold start.
pub const DEFAULT_PREWARM_MS: i64 = 60_000;

/// How far back (or ahead) a search for a start or an end may look before the window counts
/// as never having opened: longer than any yearly pattern.
const SEARCH_YEARS: i64 = 5;

impl Schedule {
    /// Where the window stands at `unix_ms`, with a floor rising `prewarm_ms` ahead.
    pub fn phase(&self, unix_ms: i64, prewarm_ms: i64) -> Phase {
        let Some(at) = Utc.timestamp_millis_opt(unix_ms).single() else {
            return Phase::Closed;
        };
        let at = at.with_timezone(&self.zone);
        let last_start = previous(&self.start, &at);
        let last_end = previous(&self.end, &at);
        // A start at the same instant as an end reopens the window (a whole day, every day).
        match (last_start, last_end) {
            (Some(s), Some(e)) if s >= e => return Phase::Open,
            (Some(_), None) => return Phase::Open,
            _ => {}
        }
        if self.min_replicas.is_none() || prewarm_ms <= 0 {
            return Phase::Closed;
        }
        match self.start.find_next_occurrence(&at, false) {
            Ok(next) => {
                let opens_in_ms = next.timestamp_millis() - unix_ms;
                if opens_in_ms <= prewarm_ms {
                    Phase::Prewarming { opens_in_ms }
                } else {
                    Phase::Closed
                }
            }
            Err(_) => Phase::Closed,
        }
    }
}

/// The latest occurrence at or before `at` within the search horizon.
fn previous(cron: &Cron, at: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    let found = cron.find_previous_occurrence(at, true).ok()?;
    let horizon = chrono::Duration::days(366 * SEARCH_YEARS);
    (*at - found <= horizon).then_some(found)
}

/// What the open windows do to the policy's bounds at a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// The highest floor: the policy's `minReplicas` or a window's, whichever is higher,
    /// never above the ceiling.
    pub min_replicas: u32,
    /// The lowest ceiling.
    pub max_replicas: u32,
    /// The windows open or pre-warming, with their phase.
    pub windows: Vec<(usize, Phase)>,
}

/// The bounds at `unix_ms` for a policy bounded by `min`..=`max`, with floors rising
/// `default_prewarm_ms` ahead of windows that give no lead of their own.
pub fn bounds(
    schedules: &[Schedule],
    (min, max): (u32, u32),
    unix_ms: i64,
    default_prewarm_ms: i64,
) -> Bounds {
    let mut b = Bounds {
        min_replicas: min,
        max_replicas: max,
        windows: Vec::new(),
    };
    for (i, s) in schedules.iter().enumerate() {
        let phase = s.phase(unix_ms, s.prewarm_ms.unwrap_or(default_prewarm_ms));
        match phase {
            Phase::Closed => continue,
            Phase::Open => {
                if let Some(ceiling) = s.max_replicas {
                    b.max_replicas = b.max_replicas.min(ceiling);
                }
            }
            Phase::Prewarming { .. } => {}
        }
        if let Some(floor) = s.min_replicas {
            b.min_replicas = b.min_replicas.max(floor);
        }
        b.windows.push((i, phase));
    }
    b.min_replicas = b.min_replicas.min(b.max_replicas);
    b
}

/// Ebb: a calendar window, given by cron expressions (`start`, `end`) or by days and times
/// (`days`, `from`, `to`), read on the wall clock of `timezone`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleSpec {
    /// The window's name, for reasons and status (required, unique).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// IANA time zone the times are read in (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Cron expression for when the window opens (with `end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Cron expression for when it closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Days the window opens on (`Mon` … `Sun`, or a range such as `Mon-Fri`); all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    /// Local time it opens, `HH:MM` (with `to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Local time it closes, `HH:MM` (`24:00` for midnight; earlier than `from` runs overnight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The floor while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i64>,
    /// The ceiling while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i64>,
    /// How many seconds before the start the floor rises (default: the SLO block's cold
    /// start, else 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prewarm_seconds: Option<f64>,
}
