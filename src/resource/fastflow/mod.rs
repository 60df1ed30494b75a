//! Fast-Flow compatibility: a folder holding `main.py` is a pipeline even without YAML,
//! and its optional `pipeline.json` (or `<folder>.json`) is translated into the
//! Kubernetes-shaped documents Flotilla validates like any manifest: one `Pipeline`,
//! a `Schedule` per trigger and a `Secret` for `encrypted_env`.
//!
//! This module owns the translation only. It reads the folder it is pointed at and
//! nothing else; scanning the pipelines directory, validating the documents and applying
//! them belong to `source::dir`.
//!
//! Rules that are not obvious from the key names:
//!
//! - **Names.** The folder's relative path becomes a DNS-1123 label ([`pipeline_name`]):
//!   `nightly_etl` → `nightly-etl`, `team/etl` → `team-etl`. The Secret is
//!   `<pipeline>-env`, a `schedules[]` entry is `<pipeline>-<id>`.
//! - **Strict types, lenient keys.** A value of the wrong type (`"retry_attempts":
//!   "three"`, `"enabled": "false"`, which Python would read as true) is an error on the
//!   file naming the key. Unknown keys and known Fast-Flow keys Flotilla cannot honour
//!   are warnings, never silently dropped; `null` means "not set".
//! - **`python_version`** should be a string. A number is accepted with a warning, except
//!   `3.1`…`3.6`: JSON has no trailing zeros, so `3.10` arrives as `3.1`, and guessing
//!   would pick the wrong interpreter.
//! - **`secrets`** is Fast-Flow's per-pipeline allow-list into its global secret store.
//!   Flotilla has no global store, so the list becomes a `secretRefs` entry
//!   `{name: fastflow-secrets, keys: [...]}`: create one Secret named `fastflow-secrets`
//!   holding the former global secrets, and each pipeline still sees only the keys it
//!   lists. An empty list adds no reference (an empty `keys` would mean *all* keys).
//! - **`retry_strategy`**: `fixed_delay` → `fixed` with `delay`; `exponential_backoff`
//!   → `exponential` with `initial_delay`, `max_delay` and `multiplier`;
//!   `custom_schedule` → `custom` with its `delays`, kept exactly. Fast-Flow's defaults
//!   (60 s, at most 3600 s) are written out. A plain string `"fixed"` or `"exponential"`
//!   is accepted too. Without `retry_attempts` it is dropped with a warning (Flotilla
//!   has no global retry count).
//! - **Time.** Fast-Flow schedules in UTC, so every Schedule gets `timeZone: UTC` and
//!   naive date-times are read as UTC and written as RFC 3339 with `Z`. A day as
//!   `schedule_end` was inclusive in Fast-Flow; Flotilla's window end is exclusive, so
//!   it becomes the following day.
//! - **Triggers.** Setting more than one of `schedule_cron`, `schedule_interval_seconds`
//!   and `run_once_at` is an error (Fast-Flow silently preferred cron). With a non-empty
//!   `schedules` list, the top-level cron, interval and window are ignored with a
//!   warning, as Fast-Flow does.
//! - **Cron.** Fast-Flow handed the five fields to APScheduler, which counts weekdays
//!   from 0 = Monday and requires day-of-month *and* day-of-week to match; Flotilla reads
//!   standard crontab (1 = Monday, either field matches). Such lines are rewritten to
//!   fire on the same instants (weekday names; `+` for both day fields), with a note
//!   (`cron`).
//! - **Unlimited values.** `timeout: 0` and `max_instances` ≤ 0 mean "no limit" in
//!   Fast-Flow and are left out.
//!
//! Layout, in the order an import runs:
//!
//! - `read`: finds the folder and its metadata file and parses the JSON, remembering
//!   where each top-level key stands so errors and warnings can point at its line.
//! - `translate`: the `Translator` that turns the parsed keys into the
//!   Pipeline, Secret and Schedule documents; its methods are spread over the files below.
//! - `keys`: which keys are mapped, which are known but unsupported, and the warnings
//!   for everything else.
//! - `values`: strict readers for JSON values (string, boolean, count, list, ...).
//! - `limits`: memory, CPUs, timeout and `max_instances`.
//! - `retry`: `retry_attempts` and `retry_strategy` as a retry policy with backoff.
//! - `env`: `default_env`, `encrypted_env` and the `secrets` allow-list.
//! - `schedule`: the top-level trigger and `schedules[]` entries as Schedules.
//! - `time`: Fast-Flow date-times and schedule windows.
//! - `cron`: Fast-Flow (APScheduler) cron lines in crontab grammar.
//!
//! Schedules made in Fast-Flow's UI live in its database, not in a folder; the
//! database import (`crate::migrate::fastflow`) hands each to [`import_ui_schedule`],
//! which reads it with the same rules.

mod cron;
mod daemon;
mod downstream;
mod env;
mod keys;
mod limits;
mod read;
mod retry;
mod schedule;
mod time;
mod translate;
mod values;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::error::ManifestError;
use super::kind::Kind;
use super::manifest::Document;
use super::validate::check_dns_label;
use read::{check_folder_path, read_metadata, resolve_inside};
use translate::Translator;

/// A notebook pipeline's entrypoint (Fast-Flow's `type: notebook`).
pub const NOTEBOOK: &str = "main.ipynb";

/// Largest `pipeline.json` accepted.
pub const MAX_METADATA_BYTES: u64 = 1024 * 1024;

/// Annotation set on every imported object.
pub const IMPORTED_FROM_ANNOTATION: &str = "flotilla.dev/imported-from";

/// On the Pipeline of a `schedules[]` entry with settings of its own: the entry's `id`.
pub const RUN_CONFIG_ANNOTATION: &str = "flotilla.dev/fastflow-run-config";

/// On a pipeline whose `schedules[]` entries have settings of their own: the names of
/// their Pipelines, comma-separated (Fast-Flow's webhook route finds an entry's
/// `webhook_key` through it).
pub const RUN_CONFIGS_ANNOTATION: &str = "flotilla.dev/fastflow-run-configs";

/// The Secret that stands in for Fast-Flow's global secret store (see the module doc).
pub const SHARED_SECRETS_NAME: &str = "fastflow-secrets";

/// Which entrypoints a folder holds.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entrypoints {
    /// `main.py`.
    pub(super) script: bool,
    /// `main.ipynb`.
    pub(super) notebook: bool,
}

/// What a Fast-Flow folder declares.
#[derive(Clone, Debug)]
pub struct FastFlowPipeline {
    /// The Secret (if any), the Pipeline and its Schedules, in apply order.
    pub documents: Vec<Document>,
    /// Things the user should know: ignored keys, approximations, changed meanings.
    pub warnings: Vec<String>,
}

/// Imports one Fast-Flow folder. `folder` is the folder's path relative to `source_root`
/// (e.g. "nightly_etl" or "team/etl").
pub fn import_folder(source_root: &Path, folder: &str) -> Result<FastFlowPipeline, ManifestError> {
    let folder = folder.trim_end_matches('/');
    check_folder_path(folder).map_err(|problem| ManifestError::file(folder, problem))?;
    let dir = resolve_inside(source_root, folder)?;
    let main_py = format!("{folder}/main.py");
    if !dir.join("main.py").is_file() && !dir.join(NOTEBOOK).is_file() {
        return Err(ManifestError::file(
            &main_py,
            "is missing: a Fast-Flow pipeline is a folder holding main.py (or main.ipynb)",
        ));
    }
    let name = pipeline_name(folder).map_err(|problem| {
        ManifestError::file(folder, format!("cannot become a pipeline name: {problem}"))
    })?;

    let mut warnings = Vec::new();
    let metadata = read_metadata(source_root, &dir, folder, &mut warnings)?;
    let (file, fields, positions) = match metadata {
        Some(found) => (found.file, found.fields, found.positions),
        None if !dir.join("main.py").is_file() => {
            (format!("{folder}/{NOTEBOOK}"), Map::new(), HashMap::new())
        }
        None => (main_py, Map::new(), HashMap::new()),
    };
    let mut translator = Translator {
        file: &file,
        positions,
        warnings,
        prefix: String::new(),
    };
    let entrypoints = Entrypoints {
        script: dir.join("main.py").is_file(),
        notebook: dir.join(NOTEBOOK).is_file(),
    };
    let values = translator.translate(&name, folder, &fields, entrypoints)?;
    let documents = values
        .into_iter()
        .enumerate()
        .map(|(i, value)| Document::synthetic(file.clone(), i + 1, value))
        .collect();
    Ok(FastFlowPipeline {
        documents,
        warnings: translator.warnings,
    })
}

/// A schedule made in Fast-Flow's UI (a `scheduled_jobs` row of source `api`).
#[derive(Clone, Debug, Default)]
pub struct UiSchedule {
    /// The job's id (a UUID).
    pub id: String,
    /// Fast-Flow's pipeline name (its folder).
    pub pipeline: String,
    /// `CRON`, `INTERVAL` or `DATE`.
    pub trigger_type: String,
    /// The crontab line, the seconds, or the ISO date-time.
    pub trigger_value: String,
    /// False when switched off in the UI: the Schedule is suspended.
    pub enabled: bool,
    /// Start of the window, as stored (naive UTC).
    pub start: Option<String>,
    /// End of the window, as stored (naive UTC, an instant: exclusive here too).
    pub end: Option<String>,
    /// Environment of the run configuration the job names, if any.
    pub env: BTreeMap<String, String>,
}

/// Translates a schedule made in Fast-Flow's UI into a Schedule named
/// `<pipeline>-ui-<first 8 characters of its id>`, read like a pipeline.json trigger
/// (cron lines rewritten for APScheduler's weekdays, UTC). `file` names where it came
/// from in errors and notes.
pub fn import_ui_schedule(
    file: &str,
    job: &UiSchedule,
) -> Result<(Document, Vec<String>), ManifestError> {
    let pipeline = pipeline_name(&job.pipeline)
        .map_err(|problem| ManifestError::file(file, format!("pipeline_name: {problem}")))?;
    let key = match job.trigger_type.to_ascii_uppercase().as_str() {
        "CRON" => "schedule_cron",
        "INTERVAL" => "schedule_interval_seconds",
        "DATE" => "run_once_at",
        other => {
            return Err(ManifestError::file(
                file,
                format!("trigger_type: {other:?} is not CRON, INTERVAL or DATE"),
            ));
        }
    };
    let value = match key {
        "schedule_interval_seconds" => match job.trigger_value.trim().parse::<u64>() {
            Ok(seconds) => Value::from(seconds),
            Err(_) => {
                return Err(ManifestError::file(
                    file,
                    format!(
                        "trigger_value: {:?} is not a whole number of seconds",
                        job.trigger_value
                    ),
                ));
            }
        },
        _ => Value::String(job.trigger_value.clone()),
    };
    let mut fields = Map::new();
    fields.insert(key.to_owned(), value);
    for (name, bound) in [("schedule_start", &job.start), ("schedule_end", &job.end)] {
        if let Some(text) = bound {
            fields.insert(name.to_owned(), Value::String(text.clone()));
        }
    }
    let mut translator = Translator {
        file,
        positions: HashMap::new(),
        warnings: Vec::new(),
        prefix: String::new(),
    };
    let spec = translator.ui_schedule(&pipeline, &fields, job.enabled, job.env.clone())?;
    let id: String = job
        .id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let name = translate::derived_name(&pipeline, &format!("ui-{}", id.to_ascii_lowercase()));
    let value = translator.document(Kind::Schedule, &name, &spec)?;
    Ok((
        Document::synthetic(file.to_owned(), 1, value),
        translator.warnings,
    ))
}

/// Reads a date-time as Fast-Flow stores and writes them (naive ones are UTC; a bare
/// day is its midnight).
pub fn parse_time(text: &str) -> Result<Option<DateTime<Utc>>, String> {
    Ok(time::parse_fast_flow_time(text)?.map(|time| match time {
        time::FastFlowTime::Day(day) => time::midnight(day),
        time::FastFlowTime::Instant(at) => at,
    }))
}

/// Name rule: Fast-Flow folder names like `nightly_etl` or `Daily-Report` become DNS-1123
/// labels (`nightly-etl`, `daily-report`): lower-case; `_`, `.`, `/` and whitespace become
/// `-`; German umlauts are spelled out (`ä` → `ae`); other characters are dropped; dashes
/// are collapsed and trimmed; at most 63 characters.
pub fn pipeline_name(folder: &str) -> Result<String, String> {
    let mut label = String::new();
    for c in folder.trim().chars().flat_map(char::to_lowercase) {
        let piece = match c {
            'a'..='z' | '0'..='9' => {
                label.push(c);
                continue;
            }
            '-' | '_' | '.' | '/' | '\\' => "-",
            c if c.is_whitespace() => "-",
            'ä' => "ae",
            'ö' => "oe",
            'ü' => "ue",
            'ß' => "ss",
            _ => continue,
        };
        if piece == "-" {
            if !label.is_empty() && !label.ends_with('-') {
                label.push('-');
            }
        } else {
            label.push_str(piece);
        }
    }
    label.truncate(63);
    let label = label.trim_end_matches('-').to_owned();
    if label.is_empty() {
        return Err(format!(
            "{folder:?} has no letters or digits to build a name from; rename the folder (e.g. nightly_etl)"
        ));
    }
    check_dns_label(&label)?;
    Ok(label)
}
