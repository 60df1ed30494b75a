//! `downstream_triggers[]` keeps Fast-Flow's rules (FF:app/services/downstream_triggers.py).

use serde_json::json;

use super::{assert_all_valid, import, imported, spec_of};

#[test]
fn triggers_keep_fast_flows_outcomes_routes_and_run_configurations() {
    let pipeline = imported(
        "extract",
        r#"{"downstream_triggers": [
            {"pipeline": "load"},
            {"pipeline": "Alert Team", "on_success": false, "on_failure": true},
            {"pipeline": "audit", "on_success": true, "on_failure": true},
            {"pipeline": "daily_report", "on_route": "daily", "on_failure": true},
            {"pipeline": "load", "run_config_id": "Prod EU"},
            {"pipeline": "load"},
            {"pipeline": "never", "on_success": false}
        ]}"#,
    );
    assert_all_valid(&pipeline);
    assert_eq!(
        spec_of(&pipeline, "Pipeline")["triggers"],
        json!([
            {"pipeline": "load", "when": "Succeeded"},
            {"pipeline": "alert-team", "when": "Failed"},
            {"pipeline": "audit", "when": "Finished"},
            {"pipeline": "daily-report", "when": "Succeeded", "route": "daily"},
            {"pipeline": "load", "when": "Succeeded", "schedule": "load-prod-eu"},
        ])
    );
    // The repeated entry and the one that never fires are named.
    assert!(
        pipeline
            .warnings
            .iter()
            .any(|w| w.contains("downstream_triggers[5]") && w.contains("same pipeline")),
        "{:#?}",
        pipeline.warnings
    );
    assert!(
        pipeline
            .warnings
            .iter()
            .any(|w| w.contains("downstream_triggers[6]") && w.contains("never started")),
        "{:#?}",
        pipeline.warnings
    );
}

#[test]
fn a_trigger_without_a_pipeline_is_an_error_naming_the_entry() {
    let error = import(
        "extract",
        r#"{"downstream_triggers": [{"pipeline": "load"}, {"on_success": true}]}"#,
    )
    .expect_err("refused");
    assert_eq!(
        error.field.as_deref(),
        Some("downstream_triggers[1].pipeline"),
        "{error}"
    );
    assert!(error.message.contains("required"), "{error}");
}
