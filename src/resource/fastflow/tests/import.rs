//! End to end: a folder becomes its documents, and folder names become pipeline names.

use super::{TOKEN, assert_all_valid, by_kind, folder, imported, spec_of};
use crate::resource::fastflow::{IMPORTED_FROM_ANNOTATION, import_folder, pipeline_name};
use crate::resource::kind::Kind;
use crate::resource::validate::validate_document;

#[test]
fn a_folder_with_only_main_py_is_one_valid_pipeline() {
    let root = folder("nightly_etl", &[]);
    let pipeline = import_folder(root.path(), "nightly_etl").expect("imports");
    assert_eq!(pipeline.documents.len(), 1);
    assert!(pipeline.warnings.is_empty(), "{:?}", pipeline.warnings);
    let doc = &pipeline.documents[0];
    assert_eq!(doc.file, "nightly_etl/main.py");
    let object = validate_document(doc).expect("valid");
    assert_eq!(object.key.kind, Kind::Pipeline);
    assert_eq!(object.key.name, "nightly-etl");
    assert_eq!(object.spec.to_value()["source"]["path"], "nightly_etl");
    assert_eq!(
        object
            .annotations
            .get(IMPORTED_FROM_ANNOTATION)
            .map(String::as_str),
        Some("fast-flow")
    );
}

#[test]
fn a_full_pipeline_json_maps_every_field() {
    let json = format!(
        r#"{{
  "python_version": "3.12",
  "mem_hard_limit": "512m",
  "cpu_hard_limit": 1.5,
  "timeout": 1800,
  "retry_attempts": 3,
  "retry_strategy": {{"type": "exponential_backoff", "initial_delay": 30, "max_delay": 600, "multiplier": 2.0}},
  "default_env": {{"LOG_LEVEL": "INFO", "BATCH": 100, "DRY_RUN": false}},
  "encrypted_env": {{"API_KEY": "{TOKEN}"}},
  "secrets": ["DB_PASSWORD", "DB_PASSWORD", "SMTP_TOKEN"],
  "max_instances": 2,
  "enabled": false,
  "tags": ["daily", "etl"],
  "description": "Loads the warehouse",
  "webhook_key": "s3cret",
  "schedule_cron": "0 3 * * *",
  "schedule_start": "2026-01-01",
  "schedule_end": "2026-12-31T18:00:00"
}}"#
    );
    let pipeline = imported("nightly_etl", &json);
    assert_all_valid(&pipeline);
    assert_eq!(pipeline.documents.len(), 3);
    assert!(
        pipeline
            .documents
            .iter()
            .all(|d| d.file == "nightly_etl/pipeline.json")
    );

    let spec = spec_of(&pipeline, "Pipeline");
    assert_eq!(spec["source"]["path"], "nightly_etl");
    assert_eq!(spec["python"], "3.12");
    assert_eq!(spec["resources"]["memory"], "512m");
    assert_eq!(spec["resources"]["cpus"], "1.5");
    assert_eq!(spec["timeout"], "1800s");
    assert_eq!(spec["retries"]["limit"], 3);
    assert_eq!(spec["retries"]["backoff"]["kind"], "exponential");
    assert_eq!(spec["retries"]["backoff"]["initial"], "30s");
    assert_eq!(spec["retries"]["backoff"]["max"], "600s");
    assert_eq!(spec["env"]["LOG_LEVEL"], "INFO");
    assert_eq!(spec["env"]["BATCH"], "100");
    assert_eq!(spec["env"]["DRY_RUN"], "false");
    assert_eq!(spec["maxInstances"], 2);
    assert_eq!(spec["suspend"], true);
    assert_eq!(spec["tags"], serde_json::json!(["daily", "etl"]));
    assert_eq!(spec["description"], "Loads the warehouse");
    assert_eq!(spec["webhookKey"], "s3cret");
    assert_eq!(
        spec["secretRefs"],
        serde_json::json!([
            {"name": "nightly-etl-env"},
            {"name": "fastflow-secrets", "keys": ["DB_PASSWORD", "SMTP_TOKEN"]}
        ])
    );

    let schedule = spec_of(&pipeline, "Schedule");
    assert_eq!(
        by_kind(&pipeline, "Schedule")[0]["metadata"]["name"],
        "nightly-etl"
    );
    assert_eq!(schedule["pipelineRef"]["name"], "nightly-etl");
    assert_eq!(schedule["cron"], "0 3 * * *");
    assert_eq!(schedule["timeZone"], "UTC");
    assert_eq!(schedule["suspend"], true);
    assert_eq!(schedule["window"]["start"], "2026-01-01");
    assert_eq!(schedule["window"]["end"], "2026-12-31T18:00:00Z");

    let secret = &by_kind(&pipeline, "Secret")[0];
    assert_eq!(secret["metadata"]["name"], "nightly-etl-env");
    assert_eq!(secret["spec"]["encryptedData"]["API_KEY"], TOKEN);
    for doc in &pipeline.documents {
        assert_eq!(
            doc.value()["metadata"]["annotations"][IMPORTED_FROM_ANNOTATION],
            "fast-flow"
        );
    }
    // The only note is where the shared secrets come from.
    assert_eq!(pipeline.warnings.len(), 1, "{:?}", pipeline.warnings);
    assert!(
        pipeline.warnings[0].contains("fastflow-secrets"),
        "{:?}",
        pipeline.warnings
    );
}

#[test]
fn nested_folders_are_imported_with_their_path() {
    let root = folder("team/etl", &[("etl.json", r#"{"tags": ["x"]}"#)]);
    let pipeline = import_folder(root.path(), "team/etl").expect("imports");
    assert_all_valid(&pipeline);
    assert_eq!(pipeline.documents[0].file, "team/etl/etl.json");
    assert_eq!(
        by_kind(&pipeline, "Pipeline")[0]["metadata"]["name"],
        "team-etl"
    );
    assert_eq!(spec_of(&pipeline, "Pipeline")["source"]["path"], "team/etl");
}

#[test]
fn folder_names_become_dns_labels() {
    let long = "a".repeat(70);
    let cases: &[(&str, Result<&str, ()>)] = &[
        ("nightly_etl", Ok("nightly-etl")),
        ("Daily-Report", Ok("daily-report")),
        ("my pipeline.v2", Ok("my-pipeline-v2")),
        ("__init__", Ok("init")),
        ("a__b--c", Ok("a-b-c")),
        ("Bäckerei Müller", Ok("baeckerei-mueller")),
        ("Straße", Ok("strasse")),
        ("etl(1)!", Ok("etl1")),
        ("team/etl", Ok("team-etl")),
        ("2024_reports", Ok("2024-reports")),
        (&long, Ok(&long[..63])),
        ("___", Err(())),
        ("", Err(())),
        ("日本", Err(())),
    ];
    for (folder, want) in cases {
        let got = pipeline_name(folder);
        match want {
            Ok(name) => assert_eq!(got.as_deref(), Ok(*name), "{folder:?}"),
            Err(()) => {
                let message = got.expect_err(folder);
                assert!(message.contains("rename the folder"), "{message}");
            }
        }
    }
    // Truncation never leaves a trailing dash.
    let name = pipeline_name(&format!("{}_b", "a".repeat(62))).expect("valid");
    assert_eq!(name, "a".repeat(62));
}
