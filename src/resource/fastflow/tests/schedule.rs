//! Triggers, `schedules[]` entries, UTC date-times and cron lines.

use serde_json::Value;

use super::{assert_all_valid, by_kind, import_error, imported, spec_of};

#[test]
fn more_than_one_trigger_is_an_error_naming_them() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"schedule_cron": "0 3 * * *", "schedule_interval_seconds": 60}"#,
            "schedule_cron and schedule_interval_seconds",
        ),
        (
            r#"{"schedule_cron": "0 3 * * *", "run_once_at": "2026-01-15T12:00:00"}"#,
            "schedule_cron and run_once_at",
        ),
        (
            r#"{"schedule_interval_seconds": 60, "run_once_at": "2026-01-15"}"#,
            "schedule_interval_seconds and run_once_at",
        ),
    ];
    for (json, words) in cases {
        let error = import_error(json);
        assert!(error.message.contains(words), "{json}: {error}");
        assert!(
            error
                .message
                .contains("are both set; a schedule has exactly one trigger"),
            "{error}"
        );
    }
}

#[test]
fn naive_datetimes_are_utc() {
    // (json, spec field, pointer, want)
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"run_once_at": "2026-01-15T12:00:00"}"#,
            "/at",
            "2026-01-15T12:00:00Z",
        ),
        (
            r#"{"run_once_at": "2026-01-15 12:00"}"#,
            "/at",
            "2026-01-15T12:00:00Z",
        ),
        (
            r#"{"run_once_at": "2026-01-15T12:00:00.250"}"#,
            "/at",
            "2026-01-15T12:00:00.250Z",
        ),
        (
            r#"{"run_once_at": "2026-01-15T12:00:00+02:00"}"#,
            "/at",
            "2026-01-15T10:00:00Z",
        ),
        (
            r#"{"run_once_at": "2026-01-15T12:00:00Z"}"#,
            "/at",
            "2026-01-15T12:00:00Z",
        ),
        (
            r#"{"run_once_at": "2026-01-15"}"#,
            "/at",
            "2026-01-15T00:00:00Z",
        ),
        (
            r#"{"schedule_interval_seconds": 900, "schedule_start": "2026-01-01T08:00:00"}"#,
            "/window/start",
            "2026-01-01T08:00:00Z",
        ),
        (
            r#"{"schedule_interval_seconds": 900, "schedule_start": "2026-01-01"}"#,
            "/window/start",
            "2026-01-01",
        ),
        // A day as end was inclusive in Fast-Flow.
        (
            r#"{"schedule_interval_seconds": 900, "schedule_end": "2026-12-31"}"#,
            "/window/end",
            "2027-01-01",
        ),
        (r#"{"schedule_interval_seconds": 900}"#, "/every", "900s"),
    ];
    for (json, pointer, want) in cases {
        let pipeline = imported("etl", json);
        assert_all_valid(&pipeline);
        let schedule = spec_of(&pipeline, "Schedule");
        assert_eq!(
            schedule.pointer(pointer).and_then(Value::as_str),
            Some(*want),
            "{json}: {schedule}"
        );
        assert_eq!(schedule["timeZone"], "UTC");
    }
}

#[test]
fn schedules_entries_become_schedules() {
    let json = r#"{
  "default_env": {"LOG_LEVEL": "INFO"},
  "schedule_cron": "0 1 * * *",
  "schedules": [
{"id": "prod", "schedule_cron": "0 8 * * *", "schedule_end": "2026-06-30", "default_env": {"ENVIRONMENT": "production"}},
{"id": "Staging_EU", "schedule_interval_seconds": 3600, "enabled": false, "timeout": 60}
  ]
}"#;
    let pipeline = imported("etl", json);
    assert_all_valid(&pipeline);
    let schedules = by_kind(&pipeline, "Schedule");
    assert_eq!(schedules.len(), 2);
    assert_eq!(schedules[0]["metadata"]["name"], "etl-prod");
    assert_eq!(schedules[0]["spec"]["cron"], "0 8 * * *");
    assert_eq!(schedules[0]["spec"]["window"]["end"], "2026-07-01");
    assert_eq!(schedules[0]["spec"]["env"]["ENVIRONMENT"], "production");
    assert_eq!(schedules[1]["metadata"]["name"], "etl-staging-eu");
    assert_eq!(schedules[1]["spec"]["every"], "3600s");
    assert_eq!(schedules[1]["spec"]["suspend"], true);
    assert!(
        pipeline
            .warnings
            .iter()
            .any(|w| w.contains("schedule_cron: ignored because `schedules` is set"))
    );
    assert!(
        pipeline
            .warnings
            .iter()
            .any(|w| w.contains("schedules[1].timeout: ignored"))
    );

    let error = import_error(
        r#"{"schedules": [{"id": "a", "schedule_cron": "0 1 * * *"}, {"id": "A", "schedule_cron": "0 2 * * *"}]}"#,
    );
    assert!(error.message.contains("unique"), "{error}");
}

#[test]
fn cron_lines_read_differently_by_apscheduler_are_rewritten_with_a_note() {
    // APScheduler: 1-5 is Tuesday to Saturday; both day fields must match.
    let cases: &[(&str, &str)] = &[
        ("0 9 * * *", "0 9 * * *"),
        ("0 9 * * MON-FRI", "0 9 * * MON-FRI"),
        ("0 9 * * 1-5", "0 9 * * TUE-SAT"),
        ("0 9 1 * MON", "0 9 1 * +MON"),
        ("0 9 1 * 1", "0 9 1 * +TUE"),
    ];
    for (line, written) in cases {
        let pipeline = imported("etl", &format!(r#"{{"schedule_cron": "{line}"}}"#));
        assert_all_valid(&pipeline);
        assert_eq!(spec_of(&pipeline, "Schedule")["cron"], *written);
        let notes = usize::from(line != written);
        assert_eq!(
            pipeline.warnings.len(),
            notes,
            "{line}: {:?}",
            pipeline.warnings
        );
        if notes == 1 {
            assert!(
                pipeline.warnings[0].contains(&format!("is written {written:?} here")),
                "{:?}",
                pipeline.warnings
            );
        }
    }
}
