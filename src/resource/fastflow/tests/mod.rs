//! Tests of the Fast-Flow import, one file per source file they exercise, all driving
//! [`import_folder`] on a temporary pipelines directory. This file holds the fixtures
//! they share.

mod cron;
mod downstream;
mod import;
mod keys;
mod read;
mod retry;
mod schedule;
mod translate;

use serde_json::Value;
use tempfile::TempDir;

use super::{FastFlowPipeline, import_folder};
use crate::resource::error::ManifestError;
use crate::resource::validate::validate_document;

pub(super) const TOKEN: &str = "gAAAAABl2xYzExampleExampleExampleExampleExampleExampleExampleExampleExampleExampleExampleExampleExample-_==";

/// A pipelines directory with one folder holding `main.py` and the given files.
pub(super) fn folder(name: &str, files: &[(&str, &str)]) -> TempDir {
    let root = TempDir::new().expect("temp dir");
    let dir = root.path().join(name);
    std::fs::create_dir_all(&dir).expect("folder");
    std::fs::write(dir.join("main.py"), "print('hi')\n").expect("main.py");
    for (file, text) in files {
        std::fs::write(dir.join(file), text).expect("file");
    }
    root
}

pub(super) fn import(name: &str, json: &str) -> Result<FastFlowPipeline, ManifestError> {
    let root = folder(name, &[("pipeline.json", json)]);
    import_folder(root.path(), name)
}

pub(super) fn imported(name: &str, json: &str) -> FastFlowPipeline {
    import(name, json).unwrap_or_else(|e| panic!("import failed: {e}"))
}

pub(super) fn by_kind(pipeline: &FastFlowPipeline, kind: &str) -> Vec<Value> {
    pipeline
        .documents
        .iter()
        .map(|d| d.value())
        .filter(|v| v["kind"] == kind)
        .collect()
}

pub(super) fn spec_of(pipeline: &FastFlowPipeline, kind: &str) -> Value {
    let found = by_kind(pipeline, kind);
    assert_eq!(found.len(), 1, "one {kind} in {:#?}", pipeline.documents);
    found[0]["spec"].clone()
}

pub(super) fn assert_all_valid(pipeline: &FastFlowPipeline) {
    for doc in &pipeline.documents {
        if let Err(errors) = validate_document(doc) {
            panic!("{} does not validate: {errors:#?}", doc.value());
        }
    }
}

pub(super) fn import_error(json: &str) -> ManifestError {
    match import("etl", json) {
        Ok(p) => panic!("expected an error for {json}, got {:#?}", p.documents),
        Err(e) => e,
    }
}
