//! Schedules: any `cron` / `every` / `at` text, zone and window compiles or is refused,
//! and a compiled schedule answers `due_slots` at any clock without panicking: a slot
//! to run is never in the future and the next slot is always after now.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use chrono::{DateTime, TimeDelta, Utc};
use flotilla::controller::schedule::slots::{CompiledSchedule, due_slots};
use flotilla::resource::quantity::parse_duration;
use flotilla::resource::types::{LocalRef, ScheduleSpec, Window};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Recurrence {
    Cron(String),
    Every(String),
    At(String),
}

#[derive(Arbitrary, Debug)]
enum Zone {
    Known(u16),
    Named(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    recurrence: Recurrence,
    zone: Option<Zone>,
    window_start: Option<String>,
    window_end: Option<String>,
    starting_deadline: Option<String>,
    /// Milliseconds since 1970 (up to ~2106).
    now_ms: u32,
    now_s: u32,
    /// How long before now the schedule was created / last considered a slot.
    created_ago_s: u32,
    last_ago_s: Option<u32>,
}

fuzz_target!(|input: Input| {
    let time_zone = input.zone.map(|zone| match zone {
        Zone::Known(i) => chrono_tz::TZ_VARIANTS[usize::from(i) % chrono_tz::TZ_VARIANTS.len()]
            .name()
            .to_owned(),
        Zone::Named(name) => name,
    });
    let (cron, every, at) = match input.recurrence {
        Recurrence::Cron(line) => (Some(line), None, None),
        Recurrence::Every(text) => (None, Some(text), None),
        Recurrence::At(text) => (None, None, Some(text)),
    };
    let spec = ScheduleSpec {
        pipeline_ref: LocalRef {
            name: "p".to_owned(),
        },
        cron,
        every,
        at,
        time_zone,
        window: (input.window_start.is_some() || input.window_end.is_some()).then(|| Window {
            start: input.window_start,
            end: input.window_end,
        }),
        starting_deadline: input.starting_deadline,
        ..ScheduleSpec::default()
    };
    let Ok(schedule) = CompiledSchedule::compile(&spec) else {
        return;
    };
    let deadline: Option<Duration> = spec
        .starting_deadline
        .as_deref()
        .and_then(|text| parse_duration(text).ok());
    let now = DateTime::UNIX_EPOCH
        + TimeDelta::seconds(i64::from(input.now_s))
        + TimeDelta::milliseconds(i64::from(input.now_ms % 1000));
    let created: DateTime<Utc> = now - TimeDelta::seconds(i64::from(input.created_ago_s));
    let last = input
        .last_ago_s
        .map(|ago| now - TimeDelta::seconds(i64::from(ago)));
    let due = due_slots(&schedule, last, created, now, deadline);
    if let Some(run) = due.run {
        assert!(run <= now, "slot {run} to run is after now {now}: {spec:?}");
    }
    if let Some(next) = due.next {
        assert!(
            next > now,
            "next slot {next} is not after now {now}: {spec:?}"
        );
    }
});
