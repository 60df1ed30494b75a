//! Triggers, `schedules[]` entries, UTC date-times and cron lines.

use serde_json::Value;

use super::{TOKEN, assert_all_valid, by_kind, import_error, imported, spec_of};

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
        // As PostgreSQL prints a timestamptz.
        (
            r#"{"run_once_at": "2026-01-15 12:00:00+02"}"#,
            "/at",
            "2026-01-15T10:00:00Z",
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

/// Fast-Flow ran a `schedules[]` entry with its own limits, timeout, retries,
/// `encrypted_env` and `webhook_key` over the pipeline's; each such entry becomes a
/// Pipeline of its own that its Schedule (and Fast-Flow's webhook route) runs.
#[test]
fn schedules_entries_keep_their_own_settings_in_a_pipeline_of_their_own() {
    let json = r#"{
  "default_env": {"LOG_LEVEL": "INFO"},
  "timeout": 600,
  "mem_hard_limit": "1g",
  "retry_attempts": 2,
  "webhook_key": "base-key",
  "schedules": [
{"id": "prod", "schedule_cron": "0 8 * * *", "default_env": {"TARGET": "prod"},
 "mem_hard_limit": "2g", "retry_strategy": {"type": "fixed_delay", "delay": 30},
 "encrypted_env": {"DB_URL": "TOKEN"}, "webhook_key": "prod-key"},
{"id": "backfill", "webhook_key": "backfill-key", "timeout": 0},
{"id": "plain", "schedule_interval_seconds": 600, "default_env": {"TARGET": "plain"}}
  ]
}"#
    .replace("TOKEN", TOKEN);
    let pipeline = imported("etl", &json);
    assert_all_valid(&pipeline);
    let pipelines = by_kind(&pipeline, "Pipeline");
    let names: Vec<&str> = pipelines
        .iter()
        .map(|p| p["metadata"]["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["etl", "etl-prod", "etl-backfill"]);
    assert_eq!(
        pipelines[0]["metadata"]["annotations"]["flotilla.dev/fastflow-run-configs"],
        "etl-prod,etl-backfill"
    );
    let base = &pipelines[0]["spec"];
    let prod = &pipelines[1]["spec"];
    assert_eq!(
        pipelines[1]["metadata"]["annotations"]["flotilla.dev/fastflow-run-config"],
        "prod"
    );
    assert_eq!(prod["resources"]["memory"], "2g");
    assert_eq!(base["resources"]["memory"], "1g");
    assert_eq!(prod["timeout"], base["timeout"]);
    assert_eq!(prod["retries"]["limit"], base["retries"]["limit"], "{prod}");
    assert_eq!(prod["retries"]["backoff"]["kind"], "fixed", "{prod}");
    assert_eq!(prod["env"]["TARGET"], "prod");
    assert_eq!(prod["env"]["LOG_LEVEL"], "INFO");
    assert_eq!(prod["webhookKey"], "prod-key");
    assert_eq!(prod["secretRefs"][0]["name"], "etl-prod-env");
    let backfill = &pipelines[2]["spec"];
    assert!(
        backfill["timeout"].is_null(),
        "timeout 0 is none: {backfill}"
    );
    assert_eq!(backfill["webhookKey"], "backfill-key");
    let secrets = by_kind(&pipeline, "Secret");
    assert_eq!(secrets[0]["metadata"]["name"], "etl-prod-env");
    assert_eq!(secrets[0]["spec"]["encryptedData"]["DB_URL"], TOKEN);

    // The webhook-only entry has no Schedule; the plain one runs the pipeline itself.
    let schedules = by_kind(&pipeline, "Schedule");
    let targets: Vec<(&str, &str)> = schedules
        .iter()
        .map(|s| {
            (
                s["metadata"]["name"].as_str().expect("a name"),
                s["spec"]["pipelineRef"]["name"].as_str().expect("a ref"),
            )
        })
        .collect();
    assert_eq!(targets, [("etl-prod", "etl-prod"), ("etl-plain", "etl")]);
    assert!(
        schedules[0]["spec"]["env"].is_null(),
        "the env is the pipeline's"
    );
    assert_eq!(schedules[1]["spec"]["env"]["TARGET"], "plain");

    // Errors in an entry's settings name the entry.
    let error = import_error(
        r#"{"schedules": [{"id": "a", "schedule_cron": "0 1 * * *", "timeout": "ten"}]}"#,
    );
    assert_eq!(
        error.field.as_deref(),
        Some("schedules[0].timeout"),
        "{error}"
    );
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
    // An entry with a setting of its own runs a Pipeline of its own.
    assert_eq!(
        schedules[1]["spec"]["pipelineRef"]["name"],
        "etl-staging-eu"
    );
    assert_eq!(schedules[0]["spec"]["pipelineRef"]["name"], "etl");

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
