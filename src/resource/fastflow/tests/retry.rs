//! Fast-Flow retry strategies as Flotilla backoff.

use super::{assert_all_valid, imported, spec_of};

#[test]
fn retry_strategies_map_onto_backoff() {
    // (strategy, kind, initial, max, warning words or "")
    let cases: &[(&str, &str, &str, Option<&str>, &str)] = &[
        (r#""exponential""#, "exponential", "60s", Some("3600s"), ""),
        (r#""fixed""#, "fixed", "60s", None, ""),
        (
            r#"{"type": "fixed_delay", "delay": 120}"#,
            "fixed",
            "120s",
            None,
            "",
        ),
        (r#"{"delay": 1.5}"#, "fixed", "1500ms", None, ""),
        (
            r#"{"type": "exponential_backoff"}"#,
            "exponential",
            "60s",
            Some("3600s"),
            "",
        ),
        (
            r#"{"type": "custom_schedule", "delays": [30, 30]}"#,
            "fixed",
            "30s",
            None,
            "",
        ),
        (
            r#"{"type": "fixed_delay", "delay": 0}"#,
            "fixed",
            "1s",
            None,
            "raised to 1s",
        ),
        (
            r#"{"type": "fixed_delay", "delay": 5, "initial_delay": 9}"#,
            "fixed",
            "5s",
            None,
            "not used by fixed_delay",
        ),
    ];
    for (strategy, kind, initial, max, words) in cases {
        let json = format!(r#"{{"retry_attempts": 2, "retry_strategy": {strategy}}}"#);
        let pipeline = imported("etl", &json);
        assert_all_valid(&pipeline);
        let backoff = &spec_of(&pipeline, "Pipeline")["retries"]["backoff"];
        assert_eq!(backoff["kind"], *kind, "{strategy}");
        assert_eq!(backoff["initial"], *initial, "{strategy}");
        assert_eq!(backoff["max"].as_str(), *max, "{strategy}");
        if words.is_empty() {
            assert!(
                pipeline.warnings.is_empty(),
                "{strategy}: {:?}",
                pipeline.warnings
            );
        } else {
            assert!(
                pipeline.warnings.iter().any(|w| w.contains(words)),
                "{strategy}: {:?}",
                pipeline.warnings
            );
        }
    }
    let pipeline = imported("etl", r#"{"retry_strategy": "fixed"}"#);
    assert!(spec_of(&pipeline, "Pipeline").get("retries").is_none());
    assert!(
        pipeline.warnings[0].contains("set retry_attempts"),
        "{:?}",
        pipeline.warnings
    );
}

#[test]
fn a_multiplier_and_a_custom_schedule_are_kept_exactly() {
    let pipeline = imported(
        "etl",
        r#"{"retry_attempts": 3, "retry_strategy": {"type": "exponential_backoff", "initial_delay": 10, "multiplier": 1.5}}"#,
    );
    assert_all_valid(&pipeline);
    assert!(pipeline.warnings.is_empty(), "{:?}", pipeline.warnings);
    let backoff = &spec_of(&pipeline, "Pipeline")["retries"]["backoff"];
    assert_eq!(backoff["kind"], "exponential");
    assert_eq!(backoff["initial"], "10s");
    assert_eq!(backoff["multiplier"], "1.5");

    let pipeline = imported(
        "etl",
        r#"{"retry_attempts": 3, "retry_strategy": {"type": "custom_schedule", "delays": [60, 300, 0.5]}}"#,
    );
    assert_all_valid(&pipeline);
    let backoff = &spec_of(&pipeline, "Pipeline")["retries"]["backoff"];
    assert_eq!(backoff["kind"], "custom");
    assert_eq!(backoff["delays"], serde_json::json!(["60s", "300s", "1s"]));
    assert!(
        pipeline.warnings.iter().any(|w| w.contains("raised to 1s")),
        "{:?}",
        pipeline.warnings
    );
}
