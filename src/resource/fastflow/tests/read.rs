//! Finding and reading the metadata file: which file is chosen, what is refused, and
//! where JSON errors and key errors are located.

use super::{folder, import_error, imported, spec_of};
use crate::resource::fastflow::{MAX_METADATA_BYTES, import_folder};
use tempfile::TempDir;

#[test]
fn the_folder_named_json_is_the_fallback_and_pipeline_json_wins() {
    let root = folder(
        "report",
        &[("report.json", r#"{"description": "from report.json"}"#)],
    );
    let pipeline = import_folder(root.path(), "report").expect("imports");
    assert_eq!(pipeline.documents[0].file, "report/report.json");
    assert_eq!(
        spec_of(&pipeline, "Pipeline")["description"],
        "from report.json"
    );
    assert!(pipeline.warnings.is_empty());

    let root = folder(
        "report",
        &[
            ("report.json", r#"{"description": "from report.json"}"#),
            ("pipeline.json", r#"{"description": "from pipeline.json"}"#),
        ],
    );
    let pipeline = import_folder(root.path(), "report").expect("imports");
    assert_eq!(
        spec_of(&pipeline, "Pipeline")["description"],
        "from pipeline.json"
    );
    assert_eq!(pipeline.warnings.len(), 1);
    assert!(
        pipeline.warnings[0].starts_with("report/report.json: ignored"),
        "{:?}",
        pipeline.warnings
    );
}

#[test]
fn invalid_json_is_located_by_line_and_column() {
    // (text, line, column, words the message must contain)
    let cases: &[(&str, u64, Option<u64>, &str)] = &[
        (
            "{\n  \"tags\": [\"a\", ]\n}\n",
            2,
            Some(17),
            "trailing comma",
        ),
        (
            "{\n  \"retry_attempts\": 3,\n}\n",
            3,
            Some(1),
            "trailing comma",
        ),
        (
            "{\n  \"tags\": [\"a\"\n",
            3,
            None,
            "closing } or ] (or a closing quote) is missing",
        ),
        ("{\n  \"description\": \"x\"", 2, Some(20), "is missing"),
        ("{\n  tags: [\"a\"]\n}", 2, Some(3), "double quotes"),
        (
            "{\n  \"a\": 1\n  \"b\": 2\n}",
            3,
            Some(3),
            "comma is missing",
        ),
    ];
    for (text, line, column, words) in cases {
        let error = import_error(text);
        assert_eq!(error.file, "etl/pipeline.json", "{text:?}");
        assert_eq!(error.line, Some(*line), "{text:?}: {error}");
        assert_eq!(error.column, *column, "{text:?}: {error}");
        assert!(error.message.contains(words), "{text:?}: {error}");
        assert!(
            error
                .message
                .contains("python3 -m json.tool etl/pipeline.json"),
            "{error}"
        );
    }
    let shown = import_error("{\n  \"tags\": [\"a\", ]\n}\n").to_string();
    assert!(
        shown.starts_with("etl/pipeline.json:2:17: is not valid JSON: trailing comma"),
        "{shown}"
    );
}

#[test]
fn files_that_are_not_metadata_are_rejected() {
    let cases: &[(&str, &str)] = &[
        ("", "is empty"),
        ("  \n", "is empty"),
        ("[1, 2]", "must be a JSON object"),
        ("\"x\"", "must be a JSON object"),
    ];
    for (text, words) in cases {
        let error = import_error(text);
        assert!(error.message.contains(words), "{text:?}: {error}");
    }
    let root = folder("etl", &[]);
    std::fs::write(
        root.path().join("etl/pipeline.json"),
        [0xff, 0xfe, b'{', b'}'],
    )
    .expect("write");
    let error = import_folder(root.path(), "etl").expect_err("binary");
    assert!(error.message.contains("not UTF-8"), "{error}");

    let big = format!(
        "{{\"description\": \"{}\"}}",
        "x".repeat(MAX_METADATA_BYTES as usize)
    );
    let error = import_error(&big);
    assert!(error.message.contains("limited to 1 MiB"), "{error}");
}

#[test]
fn a_byte_order_mark_is_skipped_with_a_warning() {
    let pipeline = imported("etl", "\u{feff}{\"description\": \"x\"}");
    assert_eq!(spec_of(&pipeline, "Pipeline")["description"], "x");
    assert!(
        pipeline.warnings[0].contains("byte order mark"),
        "{:?}",
        pipeline.warnings
    );
}

#[test]
fn errors_point_at_the_line_of_their_key() {
    let error = import_error("{\n  \"tags\": [],\n  \"retry_attempts\": \"three\"\n}");
    assert_eq!((error.line, error.column), (Some(3), Some(3)));
    assert!(
        error
            .to_string()
            .starts_with("etl/pipeline.json:3:3: retry_attempts: expected"),
        "{error}"
    );
}

#[test]
fn folders_must_be_pipelines_inside_the_root() {
    let root = folder("etl", &[]);
    std::fs::create_dir(root.path().join("empty")).expect("dir");
    std::fs::create_dir(root.path().join("nb")).expect("dir");
    std::fs::write(root.path().join("nb/main.ipynb"), "{}").expect("notebook");
    let cases: &[(&str, &str)] = &[
        ("../etl", "leaves the source root"),
        ("/etc", "is absolute"),
        ("etl/../etl", "plain folder path"),
        ("", "must not be empty"),
        ("missing", "cannot be read"),
        ("empty", "main.py"),
    ];
    for (path, words) in cases {
        let error = import_folder(root.path(), path).expect_err(path);
        assert!(error.message.contains(words), "{path:?}: {error}");
    }
    // A folder with only a notebook is a notebook pipeline.
    let notebook = import_folder(root.path(), "nb").expect("a notebook pipeline");
    let spec = &notebook.documents[0].value()["spec"];
    assert_eq!(spec["entrypoint"], "main.ipynb", "{spec}");
}

#[cfg(unix)]
#[test]
fn symbolic_links_out_of_the_root_are_refused() {
    let outside = TempDir::new().expect("temp dir");
    std::fs::write(outside.path().join("main.py"), "").expect("main.py");
    std::fs::write(outside.path().join("secret.json"), "{}").expect("file");
    let root = folder("etl", &[]);
    std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).expect("link");
    let error = import_folder(root.path(), "escape").expect_err("escapes");
    assert!(error.message.contains("outside the source root"), "{error}");

    std::os::unix::fs::symlink(
        outside.path().join("secret.json"),
        root.path().join("etl/pipeline.json"),
    )
    .expect("link");
    let error = import_folder(root.path(), "etl").expect_err("escapes");
    assert!(error.message.contains("symbolic link"), "{error}");
}

/// Fast-Flow's `type: notebook` runs main.ipynb with the `cells` retries per code cell.
#[test]
fn notebook_pipelines_run_main_ipynb_with_their_cell_retries() {
    let root = folder(
        "nb",
        &[
            ("main.ipynb", "{}"),
            (
                "pipeline.json",
                r#"{"type": "notebook", "cells": [{"retries": 2, "delay_seconds": 5}, {}, {"delay_seconds": 0.5}]}"#,
            ),
        ],
    );
    let imported = import_folder(root.path(), "nb").expect("imports");
    let spec = &imported.documents[0].value()["spec"];
    assert_eq!(spec["entrypoint"], "main.ipynb");
    assert_eq!(
        spec["notebook"]["cells"],
        serde_json::json!([
            { "retries": 2, "delay": "5s" },
            { "retries": 0, "delay": "1s" },
            { "retries": 0, "delay": "500ms" }
        ])
    );
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
}
