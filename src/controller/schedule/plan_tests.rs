//! Table tests of the schedule planner ([`plan_one`]) with an injected clock.
//!
//! Every expectation is worked out by hand from the documented semantics (README
//! "Schedules and daylight saving time", Kubernetes CronJob's `concurrencyPolicy`):
//! slot instants, run names (`<schedule>-<minutes since epoch>`, seconds for sub-minute
//! slots; 2026-01-01T00:00:00Z is minute 29,453,760), events and the next slot.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::slots::CompiledSchedule;
use super::state::Entry;
use super::{Plan, SCHEDULE_LABEL, plan_one};
use crate::resource::types::{
    ConcurrencyPolicy, Condition, LocalRef, ScheduleSpec, ScheduleStatus, Window,
};
use crate::resource::{Kind, ObjectKey};
use crate::store::events::EventType;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid instant")
        .with_timezone(&Utc)
}

/// `2026-01-01T<hh:mm:ss>Z`.
fn jan1(time: &str) -> String {
    format!("2026-01-01T{time}Z")
}

fn key() -> ObjectKey {
    ObjectKey::new(Kind::Schedule, "default", "nightly")
}

fn every(interval: &str) -> ScheduleSpec {
    ScheduleSpec {
        pipeline_ref: LocalRef { name: "etl".into() },
        every: Some(interval.into()),
        ..ScheduleSpec::default()
    }
}

fn cron(line: &str, zone: &str) -> ScheduleSpec {
    ScheduleSpec {
        pipeline_ref: LocalRef { name: "etl".into() },
        cron: Some(line.into()),
        time_zone: Some(zone.into()),
        ..ScheduleSpec::default()
    }
}

fn at(instant: &str) -> ScheduleSpec {
    ScheduleSpec {
        pipeline_ref: LocalRef { name: "etl".into() },
        at: Some(instant.into()),
        ..ScheduleSpec::default()
    }
}

fn entry(spec: ScheduleSpec, created: &str, last_slot: Option<&str>, active: &[&str]) -> Entry {
    Entry {
        compiled: CompiledSchedule::compile(&spec),
        spec,
        created: utc(created),
        status: ScheduleStatus {
            last_slot: last_slot.map(str::to_owned),
            active: active.iter().map(|a| (*a).to_owned()).collect(),
            ..ScheduleStatus::default()
        },
        written: None,
        next: None,
        history: Vec::new(),
        ahead: None,
    }
}

/// What one evaluation should produce.
struct Expected {
    /// `(run name, slot)` of each run to create.
    runs: &'static [(&'static str, &'static str)],
    /// Names of runs to cancel.
    cancels: &'static [&'static str],
    /// `(type, reason, fragments the message must contain)`.
    events: &'static [(EventType, &'static str, &'static [&'static str])],
    /// The returned next slot.
    next: Option<&'static str>,
    /// `status.lastSlot` afterwards.
    last_slot: Option<&'static str>,
    /// `status.active` afterwards.
    active: &'static [&'static str],
}

const NOTHING: Expected = Expected {
    runs: &[],
    cancels: &[],
    events: &[],
    next: None,
    last_slot: None,
    active: &[],
};

struct Row {
    name: &'static str,
    entry: Entry,
    now: String,
    pipeline_suspended: bool,
    expected: Expected,
}

fn row(name: &'static str, entry: Entry, now: &str, expected: Expected) -> Row {
    Row {
        name,
        entry,
        now: now.to_owned(),
        pipeline_suspended: false,
        expected,
    }
}

fn run_names(plan: &Plan) -> Vec<(String, String)> {
    plan.runs
        .iter()
        .map(|(object, _)| {
            let spec = object.spec.to_value();
            (
                object.key.name.clone(),
                spec["slot"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn check(row: Row) {
    let Row {
        name,
        mut entry,
        now,
        pipeline_suspended,
        expected,
    } = row;
    let mut plan = Plan::default();
    let next = plan_one(&key(), &mut entry, utc(&now), pipeline_suspended, &mut plan);

    let want_runs: Vec<(String, String)> = expected
        .runs
        .iter()
        .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
        .collect();
    assert_eq!(run_names(&plan), want_runs, "{name}: runs");
    let cancels: Vec<String> = plan
        .cancels
        .iter()
        .map(|k| {
            assert_eq!(k.kind, Kind::Run, "{name}: cancels name runs");
            assert_eq!(
                k.namespace, "default",
                "{name}: cancels stay in the namespace"
            );
            k.name.clone()
        })
        .collect();
    assert_eq!(cancels, expected.cancels, "{name}: cancels");
    assert_eq!(
        plan.events.len(),
        expected.events.len(),
        "{name}: events {:?}",
        plan.events
    );
    for ((involved, kind, reason, message), (want_kind, want_reason, fragments)) in
        plan.events.iter().zip(expected.events)
    {
        assert_eq!(involved, &key(), "{name}: events are about the schedule");
        assert_eq!((kind, reason.as_str()), (want_kind, *want_reason), "{name}");
        for fragment in *fragments {
            assert!(
                message.contains(fragment),
                "{name}: {reason} message {message:?} lacks {fragment:?}"
            );
        }
    }
    assert_eq!(next, expected.next.map(utc), "{name}: next slot");
    assert_eq!(
        entry.status.last_slot.as_deref(),
        expected.last_slot,
        "{name}: lastSlot"
    );
    assert_eq!(entry.status.active, expected.active, "{name}: active");
    assert_eq!(plan.statuses, [key()], "{name}: the status is written");
    let ready = ready(&entry);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", Some("Scheduled")),
        "{name}: Ready"
    );
}

fn ready(entry: &Entry) -> &Condition {
    entry
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition")
}

#[test]
fn slots_that_are_due_run_once() {
    let rows = [
        row(
            "nothing is due before the first slot after creation",
            entry(every("1m"), &jan1("00:00:30"), None, &[]),
            &jan1("00:00:50"),
            Expected {
                next: Some("2026-01-01T00:01:00Z"),
                ..NOTHING
            },
        ),
        row(
            "the first slot after creation runs at its instant",
            entry(every("1m"), &jan1("00:00:30"), None, &[]),
            &jan1("00:01:00"),
            Expected {
                runs: &[("nightly-29453761", "2026-01-01T00:01:00Z")],
                next: Some("2026-01-01T00:02:00Z"),
                last_slot: Some("2026-01-01T00:01:00Z"),
                active: &["nightly-29453761"],
                ..NOTHING
            },
        ),
        row(
            "a slot before the schedule existed does not run",
            entry(every("1m"), &jan1("00:01:10"), None, &[]),
            &jan1("00:01:40"),
            Expected {
                next: Some("2026-01-01T00:02:00Z"),
                ..NOTHING
            },
        ),
        row(
            "a slot already considered does not run again",
            entry(
                every("1m"),
                &jan1("00:00:00"),
                Some("2026-01-01T00:01:00Z"),
                &[],
            ),
            &jan1("00:01:59"),
            Expected {
                next: Some("2026-01-01T00:02:00Z"),
                last_slot: Some("2026-01-01T00:01:00Z"),
                ..NOTHING
            },
        ),
        row(
            "sub-minute slots are named in seconds since the epoch",
            entry(every("10s"), &jan1("00:00:05"), None, &[]),
            &jan1("00:00:10"),
            Expected {
                runs: &[("nightly-1767225610", "2026-01-01T00:00:10Z")],
                next: Some("2026-01-01T00:00:20Z"),
                last_slot: Some("2026-01-01T00:00:10Z"),
                active: &["nightly-1767225610"],
                ..NOTHING
            },
        ),
        row(
            "a cron line is read on the wall clock of its zone (03:00 CET = 02:00Z)",
            entry(
                cron("0 3 * * *", "Europe/Berlin"),
                &jan1("00:00:00"),
                None,
                &[],
            ),
            &jan1("02:00:00"),
            Expected {
                runs: &[("nightly-29453880", "2026-01-01T02:00:00Z")],
                next: Some("2026-01-02T02:00:00Z"),
                last_slot: Some("2026-01-01T02:00:00Z"),
                active: &["nightly-29453880"],
                ..NOTHING
            },
        ),
        row(
            "02:30 on the Berlin spring-forward day runs once, at 03:30 CEST",
            entry(
                cron("30 2 * * *", "Europe/Berlin"),
                "2026-03-01T00:00:00Z",
                Some("2026-03-28T01:30:00Z"),
                &[],
            ),
            "2026-03-29T01:30:00Z",
            Expected {
                runs: &[("nightly-29579130", "2026-03-29T01:30:00Z")],
                next: Some("2026-03-30T00:30:00Z"),
                last_slot: Some("2026-03-29T01:30:00Z"),
                active: &["nightly-29579130"],
                ..NOTHING
            },
        ),
        row(
            "an at: slot runs once when due",
            entry(at("2026-01-01T00:02:00Z"), &jan1("00:00:00"), None, &[]),
            &jan1("00:02:05"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                next: None,
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453762"],
                ..NOTHING
            },
        ),
        row(
            "an at: slot ahead is the next slot",
            entry(at("2026-01-01T00:02:00Z"), &jan1("00:00:00"), None, &[]),
            &jan1("00:01:00"),
            Expected {
                next: Some("2026-01-01T00:02:00Z"),
                ..NOTHING
            },
        ),
        row(
            "an at: slot that ran never comes back",
            entry(
                at("2026-01-01T00:02:00Z"),
                &jan1("00:00:00"),
                Some("2026-01-01T00:02:00Z"),
                &[],
            ),
            &jan1("01:00:00"),
            Expected {
                last_slot: Some("2026-01-01T00:02:00Z"),
                ..NOTHING
            },
        ),
        row(
            "every is anchored at window.start and nothing runs before it",
            entry(
                ScheduleSpec {
                    window: Some(Window {
                        start: Some("2026-01-01T00:07:00Z".into()),
                        end: None,
                    }),
                    ..every("15m")
                },
                &jan1("00:00:00"),
                None,
                &[],
            ),
            &jan1("00:05:00"),
            Expected {
                next: Some("2026-01-01T00:07:00Z"),
                ..NOTHING
            },
        ),
        row(
            "the first slot of a window anchored every",
            entry(
                ScheduleSpec {
                    window: Some(Window {
                        start: Some("2026-01-01T00:07:00Z".into()),
                        end: None,
                    }),
                    ..every("15m")
                },
                &jan1("00:00:00"),
                None,
                &[],
            ),
            &jan1("00:07:30"),
            Expected {
                runs: &[("nightly-29453767", "2026-01-01T00:07:00Z")],
                next: Some("2026-01-01T00:22:00Z"),
                last_slot: Some("2026-01-01T00:07:00Z"),
                active: &["nightly-29453767"],
                ..NOTHING
            },
        ),
        row(
            "after window.end only the last slot inside it is left to run, and none follow",
            entry(
                ScheduleSpec {
                    window: Some(Window {
                        start: None,
                        end: Some("2026-01-01T00:03:00Z".into()),
                    }),
                    ..every("1m")
                },
                &jan1("00:00:00"),
                Some("2026-01-01T00:01:00Z"),
                &[],
            ),
            &jan1("00:05:00"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                next: None,
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453762"],
                ..NOTHING
            },
        ),
    ];
    for row in rows {
        check(row);
    }
}

#[test]
fn missed_and_late_slots() {
    let rows = [
        row(
            "after downtime only the most recent missed slot runs; the others are reported",
            entry(
                every("1m"),
                &jan1("00:00:00"),
                Some("2026-01-01T00:01:00Z"),
                &[],
            ),
            &jan1("00:04:10"),
            Expected {
                runs: &[("nightly-29453764", "2026-01-01T00:04:00Z")],
                events: &[(EventType::Warning, "MissedSchedule", &["2 earlier"])],
                next: Some("2026-01-01T00:05:00Z"),
                last_slot: Some("2026-01-01T00:04:00Z"),
                active: &["nightly-29453764"],
                ..NOTHING
            },
        ),
        row(
            "hourly cron after five hours down: 05:00 runs, four are reported",
            entry(
                cron("0 * * * *", "UTC"),
                &jan1("00:00:00"),
                Some("2026-01-01T00:00:00Z"),
                &[],
            ),
            &jan1("05:30:00"),
            Expected {
                runs: &[("nightly-29454060", "2026-01-01T05:00:00Z")],
                events: &[(EventType::Warning, "MissedSchedule", &["4 earlier"])],
                next: Some("2026-01-01T06:00:00Z"),
                last_slot: Some("2026-01-01T05:00:00Z"),
                active: &["nightly-29454060"],
                ..NOTHING
            },
        ),
        row(
            "a slot within startingDeadline still runs late",
            entry(
                ScheduleSpec {
                    starting_deadline: Some("30s".into()),
                    ..every("1m")
                },
                &jan1("00:00:00"),
                Some("2026-01-01T00:01:00Z"),
                &[],
            ),
            &jan1("00:02:20"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453762"],
                ..NOTHING
            },
        ),
        row(
            "a slot exactly startingDeadline old is not older than it: it runs",
            entry(
                ScheduleSpec {
                    starting_deadline: Some("30s".into()),
                    ..every("1m")
                },
                &jan1("00:00:00"),
                Some("2026-01-01T00:01:00Z"),
                &[],
            ),
            &jan1("00:02:30"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453762"],
                ..NOTHING
            },
        ),
        row(
            "a slot older than startingDeadline is skipped with an event",
            entry(
                ScheduleSpec {
                    starting_deadline: Some("30s".into()),
                    ..every("1m")
                },
                &jan1("00:00:00"),
                Some("2026-01-01T00:01:00Z"),
                &[],
            ),
            &jan1("00:02:40"),
            Expected {
                events: &[(
                    EventType::Warning,
                    "MissedSchedule",
                    &["2026-01-01T00:02:00Z", "30s", "skipped"],
                )],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                ..NOTHING
            },
        ),
        row(
            "downtime past startingDeadline: nothing runs, older and latest are reported",
            entry(
                ScheduleSpec {
                    starting_deadline: Some("30s".into()),
                    ..every("1m")
                },
                &jan1("00:00:00"),
                Some("2026-01-01T00:01:00Z"),
                &[],
            ),
            &jan1("00:05:45"),
            Expected {
                events: &[
                    (EventType::Warning, "MissedSchedule", &["3 earlier"]),
                    (
                        EventType::Warning,
                        "MissedSchedule",
                        &["2026-01-01T00:05:00Z", "skipped"],
                    ),
                ],
                next: Some("2026-01-01T00:06:00Z"),
                last_slot: Some("2026-01-01T00:05:00Z"),
                ..NOTHING
            },
        ),
        row(
            "an at: slot missed by more than startingDeadline never runs",
            entry(
                ScheduleSpec {
                    starting_deadline: Some("1m".into()),
                    ..at("2026-01-01T00:02:00Z")
                },
                &jan1("00:00:00"),
                None,
                &[],
            ),
            &jan1("00:05:00"),
            Expected {
                events: &[(
                    EventType::Warning,
                    "MissedSchedule",
                    &["2026-01-01T00:02:00Z", "skipped"],
                )],
                next: None,
                last_slot: Some("2026-01-01T00:02:00Z"),
                ..NOTHING
            },
        ),
        row(
            "a suspended schedule makes no run and keeps its last slot",
            entry(
                ScheduleSpec {
                    suspend: true,
                    ..every("1m")
                },
                &jan1("00:00:00"),
                Some("2026-01-01T00:01:00Z"),
                &[],
            ),
            &jan1("00:04:10"),
            Expected {
                next: Some("2026-01-01T00:05:00Z"),
                last_slot: Some("2026-01-01T00:01:00Z"),
                ..NOTHING
            },
        ),
        Row {
            pipeline_suspended: true,
            ..row(
                "a schedule of a suspended pipeline makes no run and keeps its last slot",
                entry(
                    every("1m"),
                    &jan1("00:00:00"),
                    Some("2026-01-01T00:01:00Z"),
                    &[],
                ),
                &jan1("00:04:10"),
                Expected {
                    next: Some("2026-01-01T00:05:00Z"),
                    last_slot: Some("2026-01-01T00:01:00Z"),
                    ..NOTHING
                },
            )
        },
    ];
    for row in rows {
        check(row);
    }
}

#[test]
fn concurrency_policies_with_an_active_run() {
    let with = |policy: Option<ConcurrencyPolicy>, active: &[&str]| {
        entry(
            ScheduleSpec {
                concurrency_policy: policy,
                ..every("1m")
            },
            &jan1("00:00:00"),
            Some("2026-01-01T00:01:00Z"),
            active,
        )
    };
    let rows = [
        row(
            "Allow (the default) starts the slot's run beside the active one",
            with(None, &["nightly-29453761"]),
            &jan1("00:02:00"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453761", "nightly-29453762"],
                ..NOTHING
            },
        ),
        row(
            "Allow, named, does the same",
            with(Some(ConcurrencyPolicy::Allow), &["nightly-29453761"]),
            &jan1("00:02:00"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453761", "nightly-29453762"],
                ..NOTHING
            },
        ),
        row(
            "Forbid skips the slot while a run is active",
            with(Some(ConcurrencyPolicy::Forbid), &["nightly-29453761"]),
            &jan1("00:02:00"),
            Expected {
                events: &[(
                    EventType::Normal,
                    "RunAlreadyActive",
                    &["2026-01-01T00:02:00Z", "nightly-29453761", "Forbid"],
                )],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453761"],
                ..NOTHING
            },
        ),
        row(
            "Forbid with nothing active runs the slot",
            with(Some(ConcurrencyPolicy::Forbid), &[]),
            &jan1("00:02:00"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453762"],
                ..NOTHING
            },
        ),
        row(
            "Forbid after downtime still reports the missed slots",
            with(Some(ConcurrencyPolicy::Forbid), &["nightly-29453761"]),
            &jan1("00:03:30"),
            Expected {
                events: &[
                    (EventType::Warning, "MissedSchedule", &["1 earlier"]),
                    (
                        EventType::Normal,
                        "RunAlreadyActive",
                        &["2026-01-01T00:03:00Z", "nightly-29453761"],
                    ),
                ],
                next: Some("2026-01-01T00:04:00Z"),
                last_slot: Some("2026-01-01T00:03:00Z"),
                active: &["nightly-29453761"],
                ..NOTHING
            },
        ),
        row(
            "Replace cancels the active run, then starts the slot's",
            with(Some(ConcurrencyPolicy::Replace), &["nightly-29453761"]),
            &jan1("00:02:00"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                cancels: &["nightly-29453761"],
                events: &[(
                    EventType::Normal,
                    "RunReplaced",
                    &["nightly-29453761", "2026-01-01T00:02:00Z", "Replace"],
                )],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453762"],
            },
        ),
        row(
            "Replace cancels every active run, one event each",
            with(
                Some(ConcurrencyPolicy::Replace),
                &["nightly-29453760", "nightly-29453761"],
            ),
            &jan1("00:02:00"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                cancels: &["nightly-29453760", "nightly-29453761"],
                events: &[
                    (EventType::Normal, "RunReplaced", &["nightly-29453760"]),
                    (EventType::Normal, "RunReplaced", &["nightly-29453761"]),
                ],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453762"],
            },
        ),
        row(
            "Replace with no slot due cancels nothing",
            with(Some(ConcurrencyPolicy::Replace), &["nightly-29453761"]),
            &jan1("00:01:30"),
            Expected {
                next: Some("2026-01-01T00:02:00Z"),
                last_slot: Some("2026-01-01T00:01:00Z"),
                active: &["nightly-29453761"],
                ..NOTHING
            },
        ),
        row(
            "Replace of a skipped late slot cancels nothing",
            entry(
                ScheduleSpec {
                    concurrency_policy: Some(ConcurrencyPolicy::Replace),
                    starting_deadline: Some("10s".into()),
                    ..every("1m")
                },
                &jan1("00:00:00"),
                Some("2026-01-01T00:01:00Z"),
                &["nightly-29453761"],
            ),
            &jan1("00:02:30"),
            Expected {
                events: &[(
                    EventType::Warning,
                    "MissedSchedule",
                    &["2026-01-01T00:02:00Z", "skipped"],
                )],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453761"],
                ..NOTHING
            },
        ),
        // The slot's own run, created ahead of it (nothing was active then), is in
        // `active` at the slot: it is not another run to skip for or to cancel.
        row(
            "Forbid: the slot's own run created ahead is not another active run",
            with(Some(ConcurrencyPolicy::Forbid), &["nightly-29453762"]),
            &jan1("00:02:00"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453762"],
                ..NOTHING
            },
        ),
        row(
            "Replace: the slot's own run created ahead is not cancelled",
            with(Some(ConcurrencyPolicy::Replace), &["nightly-29453762"]),
            &jan1("00:02:00"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453762"],
                ..NOTHING
            },
        ),
        row(
            "Replace cancels another active run but keeps the slot's own",
            with(
                Some(ConcurrencyPolicy::Replace),
                &["nightly-29453761", "nightly-29453762"],
            ),
            &jan1("00:02:00"),
            Expected {
                runs: &[("nightly-29453762", "2026-01-01T00:02:00Z")],
                cancels: &["nightly-29453761"],
                events: &[(EventType::Normal, "RunReplaced", &["nightly-29453761"])],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["nightly-29453762"],
            },
        ),
        row(
            "Forbid with another run active since its run was created ahead cancels it",
            with(
                Some(ConcurrencyPolicy::Forbid),
                &["by-hand", "nightly-29453762"],
            ),
            &jan1("00:02:00"),
            Expected {
                cancels: &["nightly-29453762"],
                events: &[(
                    EventType::Normal,
                    "RunAlreadyActive",
                    &["2026-01-01T00:02:00Z", "by-hand", "Forbid"],
                )],
                next: Some("2026-01-01T00:03:00Z"),
                last_slot: Some("2026-01-01T00:02:00Z"),
                active: &["by-hand"],
                ..NOTHING
            },
        ),
    ];
    for row in rows {
        check(row);
    }
}

#[test]
fn the_run_of_a_slot_names_its_schedule_pipeline_and_slot() {
    let mut entry = entry(every("1m"), &jan1("00:00:05"), None, &[]);
    let mut plan = Plan::default();
    plan_one(&key(), &mut entry, utc(&jan1("00:01:00")), false, &mut plan);
    let [(object, status)] = &plan.runs[..] else {
        panic!("one run expected, got {}", plan.runs.len());
    };
    assert_eq!(
        object.key,
        ObjectKey::new(Kind::Run, "default", "nightly-29453761")
    );
    assert_eq!(
        object
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [(SCHEDULE_LABEL, "nightly")]
    );
    assert_eq!(SCHEDULE_LABEL, "flotilla.dev/schedule");
    assert_eq!(
        object.spec.to_value(),
        json!({
            "pipelineRef": {"name": "etl"},
            "trigger": "schedule",
            "scheduleRef": {"name": "nightly"},
            "slot": "2026-01-01T00:01:00Z",
        })
    );
    let status = status.as_ref().expect("runs are created with a status");
    assert_eq!(status["phase"], "Pending");
}

#[test]
fn an_evaluation_repeated_at_the_same_instant_creates_nothing_more() {
    let mut entry = entry(every("1m"), &jan1("00:00:05"), None, &[]);
    let now = utc(&jan1("00:01:00"));
    let mut first = Plan::default();
    plan_one(&key(), &mut entry, now, false, &mut first);
    assert_eq!(first.runs.len(), 1);
    let mut second = Plan::default();
    let next = plan_one(&key(), &mut entry, now, false, &mut second);
    assert!(second.runs.is_empty() && second.events.is_empty());
    assert_eq!(next, Some(utc(&jan1("00:02:00"))));
    assert_eq!(entry.status.active, ["nightly-29453761"]);
}

#[test]
fn on_resume_only_the_latest_slot_missed_while_suspended_runs() {
    let mut entry = entry(
        ScheduleSpec {
            suspend: true,
            ..every("1m")
        },
        &jan1("00:00:00"),
        Some("2026-01-01T00:01:00Z"),
        &[],
    );
    let mut suspended = Plan::default();
    plan_one(
        &key(),
        &mut entry,
        utc(&jan1("00:03:30")),
        false,
        &mut suspended,
    );
    assert!(suspended.runs.is_empty() && suspended.events.is_empty());

    entry.spec.suspend = false;
    let mut resumed = Plan::default();
    let next = plan_one(
        &key(),
        &mut entry,
        utc(&jan1("00:05:10")),
        false,
        &mut resumed,
    );
    // 00:02, 00:03, 00:04 and 00:05 were missed: 00:05 runs, three are reported.
    assert_eq!(
        run_names(&resumed),
        [("nightly-29453765".to_owned(), jan1("00:05:00"))]
    );
    let [(_, EventType::Warning, reason, message)] = &resumed.events[..] else {
        panic!("one warning expected: {:?}", resumed.events);
    };
    assert_eq!(reason, "MissedSchedule");
    assert!(message.contains("3 earlier"), "{message}");
    assert_eq!(next, Some(utc(&jan1("00:06:00"))));
}

#[test]
fn a_forbidden_slot_is_not_run_later_when_the_active_run_ends() {
    let mut entry = entry(
        ScheduleSpec {
            concurrency_policy: Some(ConcurrencyPolicy::Forbid),
            ..every("1m")
        },
        &jan1("00:00:00"),
        Some("2026-01-01T00:01:00Z"),
        &["nightly-29453761"],
    );
    let mut busy = Plan::default();
    plan_one(&key(), &mut entry, utc(&jan1("00:02:00")), false, &mut busy);
    assert!(busy.runs.is_empty());
    // The active run finished; the skipped 00:02 slot stays skipped until 00:03.
    entry.status.active.clear();
    let mut later = Plan::default();
    let next = plan_one(
        &key(),
        &mut entry,
        utc(&jan1("00:02:30")),
        false,
        &mut later,
    );
    assert!(later.runs.is_empty() && later.events.is_empty());
    assert_eq!(next, Some(utc(&jan1("00:03:00"))));
}

#[test]
fn an_invalid_schedule_is_not_ready_and_says_so_once() {
    let cases = [
        (
            "unknown zone",
            cron("0 3 * * *", "Mars/Olympus_Mons"),
            "UnknownTimeZone",
            "Mars/Olympus_Mons",
        ),
        (
            "two recurrences",
            ScheduleSpec {
                every: Some("1m".into()),
                ..cron("0 3 * * *", "UTC")
            },
            "InvalidSchedule",
            "exactly one",
        ),
    ];
    for (name, spec, reason, fragment) in cases {
        let mut entry = entry(spec, &jan1("00:00:00"), None, &[]);
        let mut plan = Plan::default();
        let next = plan_one(&key(), &mut entry, utc(&jan1("03:00:00")), false, &mut plan);
        assert_eq!(next, None, "{name}");
        assert!(plan.runs.is_empty(), "{name}");
        assert_eq!(plan.statuses, [key()], "{name}");
        let [(_, EventType::Warning, event_reason, message)] = &plan.events[..] else {
            panic!("{name}: one warning expected: {:?}", plan.events);
        };
        assert_eq!(event_reason, reason, "{name}");
        assert!(message.contains(fragment), "{name}: {message}");
        let condition = ready(&entry);
        assert_eq!(condition.status, "False", "{name}");
        assert_eq!(condition.reason.as_deref(), Some(reason), "{name}");

        // Evaluated again, the condition is unchanged: no second event.
        let mut again = Plan::default();
        plan_one(
            &key(),
            &mut entry,
            utc(&jan1("04:00:00")),
            false,
            &mut again,
        );
        assert!(again.events.is_empty(), "{name}: {:?}", again.events);
        assert_eq!(again.statuses, [key()], "{name}");
    }
}

/// Which schedules get the run of their next slot ahead of it: worked out from the
/// rule that the slot must have nothing left to decide (README "Runs created ahead of
/// their slot").
#[test]
fn runs_are_created_ahead_only_when_the_slot_has_nothing_to_decide() {
    let with = |policy: Option<ConcurrencyPolicy>, suspend: bool, active: &[&str]| {
        entry(
            ScheduleSpec {
                concurrency_policy: policy,
                suspend,
                ..every("1m")
            },
            &jan1("00:00:00"),
            None,
            active,
        )
    };
    let cases = [
        ("Allow, nothing active", with(None, false, &[]), false, true),
        (
            "Allow beside an active run",
            with(None, false, &["r"]),
            false,
            true,
        ),
        (
            "Forbid, nothing active",
            with(Some(ConcurrencyPolicy::Forbid), false, &[]),
            false,
            true,
        ),
        (
            "Forbid with an active run (the slot may be skipped)",
            with(Some(ConcurrencyPolicy::Forbid), false, &["r"]),
            false,
            false,
        ),
        (
            "Replace, nothing active",
            with(Some(ConcurrencyPolicy::Replace), false, &[]),
            false,
            true,
        ),
        (
            "Replace with an active run (cancelled at the slot)",
            with(Some(ConcurrencyPolicy::Replace), false, &["r"]),
            false,
            false,
        ),
        ("suspended schedule", with(None, true, &[]), false, false),
        ("suspended pipeline", with(None, false, &[]), true, false),
        (
            "invalid schedule",
            entry(every("soon"), &jan1("00:00:00"), None, &[]),
            false,
            false,
        ),
    ];
    for (name, entry, pipeline_suspended, want) in cases {
        assert_eq!(entry.runs_ahead(pipeline_suspended), want, "{name}");
    }
}
