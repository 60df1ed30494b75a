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
    // The soft limits are translated (resources.*SoftLimit), the other eight warned.
    assert_eq!(pipeline.warnings.len(), 8, "{:#?}", pipeline.warnings);
    let resources = &spec_of(&pipeline, "Pipeline")["resources"];
    assert_eq!(resources["cpusSoftLimit"], "0.8");
    assert_eq!(resources["memorySoftLimit"], "800m");
    for key in ["restart_on_crash", "downstream_triggers", "owner"] {
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
