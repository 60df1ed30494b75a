//! Translating values: wrong types name their field, accepted values keep their meaning,
//! derived names stay DNS labels.

use serde_json::Value;

use super::{assert_all_valid, import_error, imported, spec_of};
use crate::resource::fastflow::translate::derived_name;
use crate::resource::validate::check_dns_label;

#[test]
fn wrong_types_name_the_field() {
    // (json, field, words the message must contain)
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"retry_attempts": "three"}"#,
            "retry_attempts",
            "whole number of retries",
        ),
        (
            r#"{"retry_attempts": -1}"#,
            "retry_attempts",
            "the number -1",
        ),
        (
            r#"{"enabled": "false"}"#,
            "enabled",
            "true or false (without quotes)",
        ),
        (r#"{"tags": "daily"}"#, "tags", "list of tags"),
        (r#"{"tags": ["a", 1]}"#, "tags[1]", "expected a string"),
        (
            r#"{"mem_hard_limit": true}"#,
            "mem_hard_limit",
            "memory size",
        ),
        (r#"{"mem_hard_limit": "lots"}"#, "mem_hard_limit", "512Mi"),
        (r#"{"cpu_hard_limit": 0}"#, "cpu_hard_limit", "CPU count"),
        (r#"{"timeout": -5}"#, "timeout", "whole seconds"),
        (r#"{"timeout": "soon"}"#, "timeout", "invalid duration"),
        (r#"{"python_version": 3.10}"#, "python_version", "\"3.10\""),
        (
            r#"{"python_version": ["3.12"]}"#,
            "python_version",
            "as a string",
        ),
        (
            r#"{"default_env": {"A": {"b": 1}}}"#,
            "default_env.A",
            "string value",
        ),
        (
            r#"{"default_env": {"1X": "y"}}"#,
            "default_env.1X",
            "environment variable name",
        ),
        (
            r#"{"default_env": ["A=1"]}"#,
            "default_env",
            "object of variables",
        ),
        (
            r#"{"encrypted_env": {"K": 5}}"#,
            "encrypted_env.K",
            "Fernet token",
        ),
        (
            r#"{"secrets": "API_KEY"}"#,
            "secrets",
            "list of secret names",
        ),
        (
            r#"{"secrets": ["API KEY"]}"#,
            "secrets[0]",
            "environment variable name",
        ),
        (
            r#"{"max_instances": "2"}"#,
            "max_instances",
            "concurrent runs",
        ),
        (
            r#"{"schedule_cron": "every day"}"#,
            "schedule_cron",
            "crontab",
        ),
        (
            r#"{"schedule_interval_seconds": "3600"}"#,
            "schedule_interval_seconds",
            "whole number of seconds",
        ),
        (
            r#"{"schedule_interval_seconds": 0}"#,
            "schedule_interval_seconds",
            "at least 1",
        ),
        (r#"{"run_once_at": "tomorrow"}"#, "run_once_at", "ISO date"),
        (
            r#"{"schedule_cron": "0 3 * * *", "schedule_start": "2026-02-01", "schedule_end": "2026-01-01"}"#,
            "schedule_end",
            "after schedule_start",
        ),
        (
            r#"{"retry_attempts": 1, "retry_strategy": {"type": "random"}}"#,
            "retry_strategy.type",
            "unknown strategy",
        ),
        (
            r#"{"retry_attempts": 1, "retry_strategy": {"type": "fixed_delay", "delay": "1m"}}"#,
            "retry_strategy.delay",
            "seconds such as 60",
        ),
        (
            r#"{"retry_attempts": 1, "retry_strategy": 5}"#,
            "retry_strategy",
            "exponential_backoff",
        ),
        (r#"{"type": "notebook"}"#, "type", "has no main.ipynb"),
        (
            r#"{"schedules": [{"schedule_cron": "0 3 * * *"}]}"#,
            "schedules[0].id",
            "required",
        ),
        (
            r#"{"schedules": [{"id": "prod"}]}"#,
            "schedules[0]",
            "neither schedule_cron",
        ),
    ];
    for (json, field, words) in cases {
        let error = import_error(json);
        assert_eq!(error.field.as_deref(), Some(*field), "{json}: {error}");
        assert_eq!(error.file, "etl/pipeline.json");
        assert!(error.message.contains(words), "{json}: {error}");
    }
}

#[test]
fn values_are_translated_faithfully() {
    // (json, pointer into the pipeline spec, want; None = absent)
    let cases: &[(&str, &str, Option<Value>)] = &[
        (
            r#"{"mem_hard_limit": "512M"}"#,
            "/resources/memory",
            Some("512m".into()),
        ),
        (
            r#"{"mem_hard_limit": "1G"}"#,
            "/resources/memory",
            Some("1g".into()),
        ),
        (
            r#"{"mem_hard_limit": "512Mi"}"#,
            "/resources/memory",
            Some("512Mi".into()),
        ),
        (
            r#"{"mem_hard_limit": 536870912}"#,
            "/resources/memory",
            Some("512Mi".into()),
        ),
        (
            r#"{"mem_hard_limit": 100000000}"#,
            "/resources/memory",
            Some("100000000".into()),
        ),
        (
            r#"{"cpu_hard_limit": 2}"#,
            "/resources/cpus",
            Some("2".into()),
        ),
        (
            r#"{"cpu_hard_limit": "500m"}"#,
            "/resources/cpus",
            Some("500m".into()),
        ),
        (r#"{"timeout": 0}"#, "/timeout", None),
        (r#"{"timeout": "30m"}"#, "/timeout", Some("30m".into())),
        (r#"{"timeout": "90"}"#, "/timeout", Some("90s".into())),
        (r#"{"max_instances": 0}"#, "/maxInstances", None),
        (r#"{"retry_attempts": 0}"#, "/retries/limit", Some(0.into())),
        (r#"{"webhook_key": "  "}"#, "/webhookKey", None),
        (r#"{"python_version": ""}"#, "/python", None),
        (
            r#"{"python_version": 3.12}"#,
            "/python",
            Some("3.12".into()),
        ),
        (r#"{"python_version": 3.9}"#, "/python", Some("3.9".into())),
        (r#"{"enabled": true}"#, "/suspend", None),
        (r#"{"secrets": []}"#, "/secretRefs", None),
        (r#"{"encrypted_env": {}}"#, "/secretRefs", None),
        (
            r#"{"description": null, "tags": null}"#,
            "/description",
            None,
        ),
    ];
    for (json, pointer, want) in cases {
        let pipeline = imported("etl", json);
        assert_all_valid(&pipeline);
        let spec = spec_of(&pipeline, "Pipeline");
        assert_eq!(spec.pointer(pointer), want.as_ref(), "{json}: {spec}");
    }
    let numeric = imported("etl", r#"{"python_version": 3.12}"#);
    assert!(
        numeric.warnings[0].contains("write it as a string"),
        "{:?}",
        numeric.warnings
    );
}

#[test]
fn child_names_stay_dns_labels() {
    let name = "a".repeat(63);
    let secret = derived_name(&name, "env");
    assert_eq!(secret.len(), 63);
    assert!(check_dns_label(&secret).is_ok());
    assert_eq!(derived_name("x-y", "env"), "x-y-env");
}
