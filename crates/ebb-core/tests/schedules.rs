//! Schedule windows on the calendar: local times, daylight-saving changes, overnight and
//! whole-day windows, pre-warming, and how overlapping windows combine.

use chrono::NaiveDate;
use ebb_core::schedule::{bounds, Phase};
use ebb_core::Policy;

fn policy_with(windows: &str) -> Policy {
    Policy::from_yaml(&format!(
        "maxReplicas: 20\nmetrics: [{{type: Pods, pods: {{metric: {{name: rps}}, target: {{type: AverageValue, averageValue: '10'}}}}}}]\nschedules:\n{windows}"
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Unix milliseconds of a UTC wall-clock time.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|d| d.and_hms_opt(h, mi, 0))
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

const MIN: i64 = 60_000;

fn phase(p: &Policy, unix_ms: i64) -> Phase {
    p.schedules[0].phase(unix_ms, 0)
}

#[test]
fn weekday_window_opens_and_closes_on_the_local_clock() {
    let p = policy_with(
        "- {name: peak, days: [Mon-Fri], from: '08:00', to: '18:00', timezone: Europe/Berlin, minReplicas: 6}",
    );
    // Monday 2026-01-05, CET (UTC+1): 08:00 local is 07:00 UTC.
    assert_eq!(phase(&p, utc(2026, 1, 5, 6, 59)), Phase::Closed);
    assert_eq!(phase(&p, utc(2026, 1, 5, 7, 0)), Phase::Open);
    assert_eq!(phase(&p, utc(2026, 1, 5, 16, 59)), Phase::Open);
    assert_eq!(phase(&p, utc(2026, 1, 5, 17, 0)), Phase::Closed);
    // Saturday: closed all day.
    assert_eq!(phase(&p, utc(2026, 1, 10, 10, 0)), Phase::Closed);
    assert_eq!(p.schedules[0].describe, "Mon-Fri 08:00-18:00 Europe/Berlin");
}

#[test]
fn daylight_saving_moves_the_window_in_utc_not_on_the_wall_clock() {
    let p = policy_with(
        "- {name: peak, days: [Mon-Fri], from: '08:00', to: '18:00', timezone: Europe/Berlin, minReplicas: 6}",
    );
    // Berlin springs forward on Sunday 2026-03-29: Friday before opens at 07:00 UTC, Monday
    // after at 06:00 UTC.
    assert_eq!(phase(&p, utc(2026, 3, 27, 6, 30)), Phase::Closed);
    assert_eq!(phase(&p, utc(2026, 3, 27, 7, 0)), Phase::Open);
    assert_eq!(phase(&p, utc(2026, 3, 30, 5, 59)), Phase::Closed);
    assert_eq!(phase(&p, utc(2026, 3, 30, 6, 0)), Phase::Open);
    assert_eq!(phase(&p, utc(2026, 3, 30, 15, 59)), Phase::Open);
    assert_eq!(phase(&p, utc(2026, 3, 30, 16, 0)), Phase::Closed);
    // And falls back on Sunday 2026-10-25: Monday after opens at 07:00 UTC again.
    assert_eq!(phase(&p, utc(2026, 10, 26, 6, 30)), Phase::Closed);
    assert_eq!(phase(&p, utc(2026, 10, 26, 7, 0)), Phase::Open);
}

#[test]
fn a_window_in_the_skipped_or_repeated_hour() {
    let p = policy_with(
        "- {name: night, from: '02:30', to: '03:30', timezone: Europe/Berlin, minReplicas: 2}",
    );
    // Spring forward: 02:00-03:00 local does not exist on 2026-03-29 (01:00-02:00 UTC skipped
    // to 03:00 CEST = 01:00 UTC). The window still opens, once, and closes at 03:30 CEST.
    assert_eq!(phase(&p, utc(2026, 3, 29, 0, 59)), Phase::Closed);
    let opened = (0..120)
        .map(|m| utc(2026, 3, 29, 0, 0) + m * MIN)
        .find(|&t| phase(&p, t) == Phase::Open)
        .expect("the window opens on the day the clock skips it");
    assert!(opened <= utc(2026, 3, 29, 1, 1), "opened at {opened}");
    assert_eq!(phase(&p, utc(2026, 3, 29, 1, 29)), Phase::Open);
    assert_eq!(phase(&p, utc(2026, 3, 29, 1, 30)), Phase::Closed);
    // Fall back: 02:00-03:00 local happens twice on 2026-10-25 (00:00-01:00 UTC in CEST,
    // 01:00-02:00 UTC in CET). The window opens at the first 02:30 and stays open until 03:30
    // CET: one window, not two, and no gap in the middle.
    assert_eq!(phase(&p, utc(2026, 10, 25, 0, 29)), Phase::Closed);
    for m in [30, 60, 90, 119, 149] {
        let at = utc(2026, 10, 25, 0, 0) + m * MIN;
        assert_eq!(phase(&p, at), Phase::Open, "{m} minutes after 00:00 UTC");
    }
    assert_eq!(phase(&p, utc(2026, 10, 25, 2, 30)), Phase::Closed);
}

#[test]
fn overnight_windows_close_the_next_morning() {
    let p = policy_with(
        "- {name: batch, days: [Fri], from: '22:00', to: '06:00', timezone: UTC, minReplicas: 3}",
    );
    assert_eq!(phase(&p, utc(2026, 1, 9, 21, 59)), Phase::Closed);
    assert_eq!(phase(&p, utc(2026, 1, 9, 22, 0)), Phase::Open);
    assert_eq!(phase(&p, utc(2026, 1, 10, 5, 59)), Phase::Open);
    assert_eq!(phase(&p, utc(2026, 1, 10, 6, 0)), Phase::Closed);
    // Saturday night is not Friday night.
    assert_eq!(phase(&p, utc(2026, 1, 10, 23, 0)), Phase::Closed);
}

#[test]
fn cron_windows_and_prewarming() {
    let p = policy_with(
        "- {name: peak, start: '0 9 * * 1-5', end: '30 17 * * 1-5', timezone: America/New_York, minReplicas: 4, prewarmSeconds: 300}",
    );
    let s = &p.schedules[0];
    // Monday 2026-01-05, EST (UTC-5): 09:00 local is 14:00 UTC.
    assert_eq!(s.phase(utc(2026, 1, 5, 13, 54), 300_000), Phase::Closed);
    assert_eq!(
        s.phase(utc(2026, 1, 5, 13, 56), 300_000),
        Phase::Prewarming {
            opens_in_ms: 4 * MIN
        }
    );
    assert_eq!(s.phase(utc(2026, 1, 5, 14, 0), 300_000), Phase::Open);
    assert_eq!(s.phase(utc(2026, 1, 5, 22, 30), 300_000), Phase::Closed);
}

#[test]
fn overlapping_windows_take_the_highest_floor_and_the_lowest_ceiling() {
    let p = policy_with(
        "- {name: a, from: '08:00', to: '18:00', minReplicas: 4, maxReplicas: 8}\n- {name: b, from: '12:00', to: '14:00', minReplicas: 3, maxReplicas: 5}\n- {name: c, from: '13:00', to: '15:00', minReplicas: 7}",
    );
    let at = |h, m| bounds(&p.schedules, (1, 20), utc(2026, 1, 5, h, m), 0);
    assert_eq!((at(9, 0).min_replicas, at(9, 0).max_replicas), (4, 8));
    assert_eq!((at(12, 30).min_replicas, at(12, 30).max_replicas), (4, 5));
    // Floor 7 and ceiling 5 both open: the ceiling caps the floor.
    assert_eq!((at(13, 30).min_replicas, at(13, 30).max_replicas), (5, 5));
    assert_eq!((at(14, 30).min_replicas, at(14, 30).max_replicas), (7, 8));
    assert_eq!((at(19, 0).min_replicas, at(19, 0).max_replicas), (1, 20));
    assert_eq!(at(13, 30).windows.len(), 3);
    // A window's floor below the policy's own changes nothing.
    assert_eq!(
        bounds(&p.schedules, (6, 20), utc(2026, 1, 5, 9, 0), 0).min_replicas,
        6
    );
}

#[test]
fn whole_days_stay_open_through_midnight() {
    let every = policy_with("- {name: all, from: '00:00', to: '24:00', minReplicas: 2}");
    for at in [
        utc(2026, 1, 5, 0, 0),
        utc(2026, 1, 5, 12, 0),
        utc(2026, 1, 6, 0, 0),
    ] {
        assert_eq!(phase(&every, at), Phase::Open);
    }
    let weekdays =
        policy_with("- {name: wd, days: [Mon-Fri], from: '00:00', to: '24:00', minReplicas: 2}");
    assert_eq!(phase(&weekdays, utc(2026, 1, 9, 23, 59)), Phase::Open);
    assert_eq!(phase(&weekdays, utc(2026, 1, 10, 0, 0)), Phase::Closed);
    assert_eq!(phase(&weekdays, utc(2026, 1, 11, 23, 59)), Phase::Closed);
    assert_eq!(phase(&weekdays, utc(2026, 1, 12, 0, 0)), Phase::Open);
}
