//! Table tests of slot arithmetic with an injected clock.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::slots::{CompileError, CompiledSchedule, DueSlots, due_slots};
use crate::resource::types::{LocalRef, ScheduleSpec, Window};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid instant")
        .with_timezone(&Utc)
}

fn cron(line: &str, zone: &str) -> CompiledSchedule {
    CompiledSchedule::compile(&ScheduleSpec {
        pipeline_ref: LocalRef { name: "p".into() },
        cron: Some(line.into()),
        time_zone: Some(zone.into()),
        ..ScheduleSpec::default()
    })
    .expect("valid schedule")
}

fn slots_after(schedule: &CompiledSchedule, from: &str, count: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = utc(from);
    for _ in 0..count {
        let Some(next) = schedule.next_after(cursor) else {
            break;
        };
        out.push(next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        cursor = next;
    }
    out
}

#[test]
fn berlin_spring_forward_runs_skipped_slot_once_shifted() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    let daily = cron("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        slots_after(&daily, "2026-03-28T00:00:00Z", 3),
        [
            "2026-03-28T01:30:00Z", // 02:30 CET
            "2026-03-29T01:30:00Z", // skipped hour: runs once, at 03:30 CEST
            "2026-03-30T00:30:00Z", // 02:30 CEST
        ]
    );
    // Every 30 minutes across the gap: the shifted 02:00 and 02:30 land on the real
    // 03:00 and 03:30 and run once each.
    let half_hourly = cron("*/30 * * * *", "Europe/Berlin");
    assert_eq!(
        slots_after(&half_hourly, "2026-03-29T00:15:00Z", 4),
        [
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-29T02:00:00Z"
        ]
    );
}

#[test]
fn berlin_autumn_repeated_hour_runs_once() {
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:30 happens twice.
    let daily = cron("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        slots_after(&daily, "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    // Starting inside the second pass of the hour does not repeat the slot.
    assert_eq!(
        slots_after(&daily, "2026-10-25T01:10:00Z", 1),
        ["2026-10-26T01:30:00Z"]
    );
}

#[test]
fn new_york_transitions() {
    // 2026-03-08 02:00 EST → 03:00 EDT; 2026-11-01 02:00 EDT → 01:00 EST.
    let daily = cron("30 2 * * *", "America/New_York");
    assert_eq!(
        slots_after(&daily, "2026-03-07T12:00:00Z", 3),
        // 02:30 EST does not exist on the 8th: it runs at 03:30 EDT (07:30 UTC), once.
        [
            "2026-03-08T07:30:00Z",
            "2026-03-09T06:30:00Z",
            "2026-03-10T06:30:00Z"
        ]
    );
    let one_thirty = cron("30 1 * * *", "America/New_York");
    assert_eq!(
        slots_after(&one_thirty, "2026-10-31T12:00:00Z", 2),
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
}

#[test]
fn month_ends_leap_days_and_yearly() {
    let thirty_first = cron("0 0 31 * *", "UTC");
    assert_eq!(
        slots_after(&thirty_first, "2026-01-31T00:00:00Z", 3),
        [
            "2026-03-31T00:00:00Z",
            "2026-05-31T00:00:00Z",
            "2026-07-31T00:00:00Z"
        ]
    );
    let leap = cron("0 12 29 2 *", "UTC");
    assert_eq!(
        slots_after(&leap, "2026-01-01T00:00:00Z", 2),
        ["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"]
    );
    let yearly = cron("@yearly", "Europe/Berlin");
    assert_eq!(
        slots_after(&yearly, "2026-06-01T00:00:00Z", 1),
        ["2026-12-31T23:00:00Z"]
    );
    let weekdays = cron("0 9 * * 1-5", "UTC"); // POSIX: 1 = Monday
    assert_eq!(
        slots_after(&weekdays, "2026-11-20T10:00:00Z", 1),
        ["2026-11-23T09:00:00Z"]
    ); // Fri → Mon
}

#[test]
fn every_is_anchored_and_stable() {
    let schedule = CompiledSchedule::compile(&ScheduleSpec {
        pipeline_ref: LocalRef { name: "p".into() },
        every: Some("10s".into()),
        ..ScheduleSpec::default()
    })
    .expect("valid");
    assert_eq!(
        slots_after(&schedule, "2026-01-01T00:00:03Z", 2),
        ["2026-01-01T00:00:10Z", "2026-01-01T00:00:20Z"]
    );
    assert_eq!(
        schedule.latest_at_or_before(utc("2026-01-01T00:00:19Z"), utc("2026-01-01T00:00:00Z")),
        Some(utc("2026-01-01T00:00:10Z"))
    );
}

#[test]
fn missed_slots_catch_up_once_within_the_deadline() {
    let hourly = cron("0 * * * *", "UTC");
    let created = utc("2026-01-01T00:00:00Z");
    let last = Some(utc("2026-01-01T01:00:00Z"));
    // Operator down from 01:00 to 05:10: four slots missed, only 05:00 runs.
    let due = due_slots(&hourly, last, created, utc("2026-01-01T05:10:00Z"), None);
    assert_eq!(due.run, Some(utc("2026-01-01T05:00:00Z")));
    assert_eq!(due.missed_older, 3);
    assert_eq!(due.considered, due.run);
    assert_eq!(due.next, Some(utc("2026-01-01T06:00:00Z")));
    // With a 5-minute deadline the 05:00 slot is 10 minutes late: skipped.
    let late = due_slots(
        &hourly,
        last,
        created,
        utc("2026-01-01T05:10:00Z"),
        Some(Duration::from_secs(300)),
    );
    assert_eq!(late.run, None);
    assert_eq!(late.skipped, Some(utc("2026-01-01T05:00:00Z")));
    assert_eq!(late.considered, late.skipped);
    // Within the deadline it runs.
    let on_time = due_slots(
        &hourly,
        last,
        created,
        utc("2026-01-01T05:04:00Z"),
        Some(Duration::from_secs(300)),
    );
    assert_eq!(on_time.run, Some(utc("2026-01-01T05:00:00Z")));
}

#[test]
fn nothing_due_before_the_first_slot_and_not_twice() {
    let hourly = cron("0 * * * *", "UTC");
    let created = utc("2026-01-01T00:10:00Z");
    let none = due_slots(&hourly, None, created, utc("2026-01-01T00:59:59Z"), None);
    assert_eq!(
        none,
        DueSlots {
            next: Some(utc("2026-01-01T01:00:00Z")),
            ..DueSlots::default()
        }
    );
    let first = due_slots(&hourly, None, created, utc("2026-01-01T01:00:00Z"), None);
    assert_eq!(first.run, Some(utc("2026-01-01T01:00:00Z")));
    let again = due_slots(
        &hourly,
        first.considered,
        created,
        utc("2026-01-01T01:00:30Z"),
        None,
    );
    assert_eq!(again.run, None);
}

#[test]
fn window_edges() {
    let schedule = CompiledSchedule::compile(&ScheduleSpec {
        pipeline_ref: LocalRef { name: "p".into() },
        cron: Some("0 0 * * *".into()),
        window: Some(Window {
            start: Some("2026-02-01".into()),
            end: Some("2026-02-03".into()),
        }),
        ..ScheduleSpec::default()
    })
    .expect("valid");
    // Start inclusive, end exclusive.
    assert_eq!(
        slots_after(&schedule, "2026-01-01T00:00:00Z", 5),
        ["2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z"]
    );
    let after_end = due_slots(
        &schedule,
        None,
        utc("2026-01-01T00:00:00Z"),
        utc("2026-02-05T00:00:00Z"),
        None,
    );
    assert_eq!(after_end.run, Some(utc("2026-02-02T00:00:00Z")));
}

#[test]
fn suspend_then_resume_runs_only_the_latest_slot() {
    // Suspended from 01:00 to 04:30 (lastSlot stayed at 01:00); resumed at 04:30.
    let hourly = cron("0 * * * *", "UTC");
    let due = due_slots(
        &hourly,
        Some(utc("2026-01-01T01:00:00Z")),
        utc("2026-01-01T00:00:00Z"),
        utc("2026-01-01T04:30:00Z"),
        Some(Duration::from_secs(3600)),
    );
    assert_eq!(due.run, Some(utc("2026-01-01T04:00:00Z")));
    assert_eq!(due.missed_older, 2);
}

#[test]
fn one_shot_and_unknown_zone() {
    let at = CompiledSchedule::compile(&ScheduleSpec {
        pipeline_ref: LocalRef { name: "p".into() },
        at: Some("2026-05-01T10:00:00Z".into()),
        ..ScheduleSpec::default()
    })
    .expect("valid");
    assert_eq!(
        slots_after(&at, "2026-01-01T00:00:00Z", 3),
        ["2026-05-01T10:00:00Z"]
    );
    let bad = CompiledSchedule::compile(&ScheduleSpec {
        pipeline_ref: LocalRef { name: "p".into() },
        cron: Some("0 * * * *".into()),
        time_zone: Some("Mars/Olympus".into()),
        ..ScheduleSpec::default()
    });
    assert!(matches!(bad, Err(CompileError::UnknownTimeZone(_))));
}
