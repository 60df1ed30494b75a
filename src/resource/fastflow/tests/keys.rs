//! Unsupported and unknown keys are warnings, and defaults are quiet.

use super::{assert_all_valid, imported, spec_of};

#[test]
fn unsupported_and_unknown_keys_are_warnings() {
    let json = r#"{
  "cpu_soft_limit": 0.8,
  "mem_soft_limit": "800m",
  "restart_on_crash": true,
  "restart_cooldown": 120,
  "restart_interval": "0 3 * * *",
  "downstream_triggers": [{"pipeline": "b"}],
  "display_name": "ETL",
  "owner": "data-team",
  "retry_attemps": 3,
  "colour": "blue"
}"#;
    let pipeline = imported("etl", json);
    assert_all_valid(&pipeline);
    // The soft limits are translated (resources.*SoftLimit), restarts and triggers too;
    // the other five are warned.
    assert_eq!(pipeline.warnings.len(), 5, "{:#?}", pipeline.warnings);
    let resources = &spec_of(&pipeline, "Pipeline")["resources"];
    assert_eq!(resources["cpusSoftLimit"], "0.8");
    assert_eq!(resources["memorySoftLimit"], "800m");
    for key in ["owner", "display_name"] {
        assert!(
            pipeline
                .warnings
                .iter()
                .any(|w| w.contains(&format!(": {key}: ignored: Flotilla does not support"))),
            "{key}: {:#?}",
            pipeline.warnings
        );
    }
    assert!(
        pipeline.warnings.iter().any(|w| w
            .starts_with("etl/pipeline.json:10: retry_attemps: unknown key")
            && w.contains("did you mean \"retry_attempts\"")),
        "{:#?}",
        pipeline.warnings
    );
    assert!(
        pipeline
            .warnings
            .iter()
            .any(|w| w.contains("colour: unknown key"))
    );

    // Fast-Flow's defaults hold nothing to ignore.
    let quiet = imported(
        "etl",
        r#"{"restart_on_crash": false, "downstream_triggers": [], "type": "script"}"#,
    );
    assert!(quiet.warnings.is_empty(), "{:?}", quiet.warnings);
}

#[test]
fn daemon_keys_become_a_restart_policy() {
    let pipeline = imported(
        "watcher",
        r#"{"timeout": 0, "restart_on_crash": true, "restart_cooldown": 30, "restart_interval": "0 3 * * *", "retry_attempts": 2}"#,
    );
    assert_all_valid(&pipeline);
    let spec = super::spec_of(&pipeline, "Pipeline");
    assert_eq!(
        spec["restart"],
        serde_json::json!({"policy": "OnFailure", "cooldown": "30s", "periodic": "0 3 * * *"})
    );
    assert!(spec.get("retries").is_none(), "{spec:#}");
    let seconds = imported("watcher", r#"{"restart_interval": 3600}"#);
    let spec = super::spec_of(&seconds, "Pipeline");
    assert_eq!(
        spec["restart"],
        serde_json::json!({"policy": "Never", "cooldown": "60s", "periodic": "3600s"})
    );
    assert!(
        seconds
            .warnings
            .iter()
            .any(|w| w.contains("a crash ends the run here")),
        "{:#?}",
        seconds.warnings
    );
    let error =
        super::import("watcher", r#"{"restart_interval": "every day"}"#).expect_err("refused");
    assert_eq!(error.field.as_deref(), Some("restart_interval"), "{error}");
}
