//! Turning `schedules` entries into [`Schedule`] windows: cron expressions or days and times,
//! an IANA time zone, and bounds that fit the policy's own.

use super::spec::ScheduleSpec;
use super::validate::Checker;
use crate::schedule::Schedule;
use crate::time::secs_to_millis;
use croner::Cron;
use std::collections::BTreeSet;
use std::str::FromStr;

/// The longest lead a floor may rise ahead of its window.
const MAX_PREWARM_SECONDS: f64 = 86_400.0;

/// Validates every window against the policy's bounds (`min`..=`max`).
pub(super) fn schedules(
    c: &mut Checker,
    specs: &[ScheduleSpec],
    (min, max): (u32, u32),
) -> Vec<Schedule> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let path = format!("schedules[{i}]");
        if let Some(name) = &s.name {
            if !names.insert(name.clone()) {
                c.err(format!("{path}.name"), format!("duplicate window '{name}'"));
            }
        }
        if let Some(window) = schedule(c, &path, s, (min, max)) {
            out.push(window);
        }
    }
    out
}

fn schedule(c: &mut Checker, path: &str, s: &ScheduleSpec, bounds: (u32, u32)) -> Option<Schedule> {
    let name = match s.name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => Some(n.to_string()),
        Some(_) => {
            c.err(format!("{path}.name"), "must not be empty");
            None
        }
        None => {
            c.err(format!("{path}.name"), "is required");
            None
        }
    };
    let zone_name = s.timezone.as_deref().unwrap_or("UTC");
    let zone = chrono_tz::Tz::from_str(zone_name)
        .map_err(|_| {
            c.err(
                format!("{path}.timezone"),
                format!("'{zone_name}' is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)"),
            )
        })
        .ok();
    let times = times(c, path, s);
    let (min_replicas, max_replicas) = replica_bounds(c, path, s, bounds);
    let prewarm_ms = s.prewarm_seconds.and_then(|v| {
        if v.is_finite() && (0.0..=MAX_PREWARM_SECONDS).contains(&v) {
            Some(secs_to_millis(v))
        } else {
            c.err(
                format!("{path}.prewarmSeconds"),
                format!("must be between 0 and {MAX_PREWARM_SECONDS}, got {v}"),
            );
            None
        }
    });
    let (start, end, when) = times?;
    Some(Schedule {
        name: name?,
        zone: zone?,
        start,
        end,
        min_replicas,
        max_replicas,
        prewarm_ms,
        describe: format!("{when} {zone_name}"),
        spec: s.clone(),
    })
}

/// The floor and ceiling, each within the policy's bounds, at least one given.
fn replica_bounds(
    c: &mut Checker,
    path: &str,
    s: &ScheduleSpec,
    (min, max): (u32, u32),
) -> (Option<u32>, Option<u32>) {
    if s.min_replicas.is_none() && s.max_replicas.is_none() {
        c.err(
            path,
            "needs minReplicas (a floor), maxReplicas (a ceiling) or both",
        );
    }
    let floor = s
        .min_replicas
        .map(|v| c.count(&format!("{path}.minReplicas"), v, 1, i64::from(max)));
    let ceiling = s.max_replicas.map(|v| {
        let lowest = i64::from(min.max(1));
        c.count(&format!("{path}.maxReplicas"), v, lowest, i64::from(max))
    });
    if let (Some(f), Some(x)) = (floor, ceiling) {
        if f > x {
            c.err(
                format!("{path}.maxReplicas"),
                format!("must be at least the window's minReplicas ({f}), got {x}"),
            );
        }
    }
    (floor, ceiling)
}

/// The start and end crons, from cron expressions or from days and times, and how the window
/// reads in reasons.
fn times(c: &mut Checker, path: &str, s: &ScheduleSpec) -> Option<(Cron, Cron, String)> {
    let by_cron = s.start.is_some() || s.end.is_some();
    let by_clock = s.from.is_some() || s.to.is_some() || !s.days.is_empty();
    match (by_cron, by_clock) {
        (true, true) => {
            c.err(
                path,
                "give either start and end (cron) or days, from and to, not both",
            );
            None
        }
        (false, false) => {
            c.err(
                path,
                "needs start and end (cron expressions) or from and to (HH:MM, with optional days)",
            );
            None
        }
        (true, false) => {
            let start = cron(c, &format!("{path}.start"), s.start.as_deref());
            let end = cron(c, &format!("{path}.end"), s.end.as_deref());
            let (start, end) = (start?, end?);
            if start.pattern.as_str() == end.pattern.as_str() {
                c.err(format!("{path}.end"), "must differ from start");
                return None;
            }
            let when = format!("'{}' to '{}'", start.pattern.as_str(), end.pattern.as_str());
            Some((start, end, when))
        }
        (false, true) => clock_window(c, path, s),
    }
}

fn cron(c: &mut Checker, path: &str, text: Option<&str>) -> Option<Cron> {
    let Some(text) = text else {
        c.err(path, "is required with a cron window");
        return None;
    };
    Cron::from_str(text)
        .map_err(|e| c.err(path, format!("'{text}' is not a cron expression: {e}")))
        .ok()
}

/// `days`, `from` and `to` as a pair of crons: the end moves to the next day when the window
/// runs past midnight.
fn clock_window(c: &mut Checker, path: &str, s: &ScheduleSpec) -> Option<(Cron, Cron, String)> {
    let from = clock(c, &format!("{path}.from"), s.from.as_deref(), false);
    let to = clock(c, &format!("{path}.to"), s.to.as_deref(), true);
    let days = days(c, path, &s.days);
    let ((fh, fm), (th, tm), days) = (from?, to?, days?);
    if (fh, fm) == (th, tm) {
        c.err(
            format!("{path}.to"),
            "must differ from `from` (for a whole day use from 00:00 to 24:00)",
        );
        return None;
    }
    let overnight = (th, tm) < (fh, fm) || th == 24;
    let end_days: Vec<u8> = if overnight {
        days.iter().map(|d| (d + 1) % 7).collect()
    } else {
        days.clone()
    };
    let start = format!("{fm} {fh} * * {}", cron_days(&days));
    let end = format!("{tm} {} * * {}", th % 24, cron_days(&end_days));
    let start = Cron::from_str(&start).ok()?;
    let end = Cron::from_str(&end).ok()?;
    let day_text = if s.days.is_empty() {
        "daily".to_string()
    } else {
        s.days.join(",")
    };
    let when = format!(
        "{day_text} {}-{}",
        s.from.as_deref().unwrap_or_default(),
        s.to.as_deref().unwrap_or_default()
    );
    Some((start, end, when))
}

/// `HH:MM`; `24:00` only as an end.
fn clock(c: &mut Checker, path: &str, text: Option<&str>, is_end: bool) -> Option<(u32, u32)> {
    let Some(text) = text else {
        c.err(path, "is required with from/to windows");
        return None;
    };
    let parsed = text.split_once(':').and_then(|(h, m)| {
        let digits = |t: &str, n: std::ops::RangeInclusive<usize>| {
            n.contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(h, 1..=2) || !digits(m, 2..=2) {
            return None;
        }
        let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
        (m < 60 && (h < 24 || (is_end && h == 24 && m == 0))).then_some((h, m))
    });
    if parsed.is_none() {
        let range = if is_end {
            "00:00 to 24:00"
        } else {
            "00:00 to 23:59"
        };
        c.err(
            path,
            format!("must be a time HH:MM ({range}), got '{text}'"),
        );
    }
    parsed
}

/// Day names and ranges as cron day numbers (0 = Sunday), every day when none are given.
fn days(c: &mut Checker, path: &str, names: &[String]) -> Option<Vec<u8>> {
    if names.is_empty() {
        return Some((0..7).collect());
    }
    let mut out = BTreeSet::new();
    let mut ok = true;
    for (i, name) in names.iter().enumerate() {
        let day_path = format!("{path}.days[{i}]");
        let range = match name.split_once('-') {
            Some((a, b)) => day(a).zip(day(b)),
            None => day(name).map(|d| (d, d)),
        };
        match range {
            Some((a, b)) => {
                let mut d = a;
                out.insert(d);
                while d != b {
                    d = (d + 1) % 7;
                    out.insert(d);
                }
            }
            None => {
                c.err(
                    day_path,
                    format!("'{name}' is not a day or range of days (Mon, Tue, ... Sun, or e.g. Mon-Fri)"),
                );
                ok = false;
            }
        }
    }
    ok.then(|| out.into_iter().collect())
}

fn day(name: &str) -> Option<u8> {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let lower = name.trim().to_ascii_lowercase();
    let short = lower.get(..3)?;
    let full_ok = lower.len() == 3 || chrono::Weekday::from_str(&lower).is_ok();
    NAMES
        .iter()
        .position(|n| *n == short)
        .filter(|_| full_ok)
        .map(|p| p as u8)
}

fn cron_days(days: &[u8]) -> String {
    days.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}
