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
//!   → `exponential` with `initial_delay` and `max_delay` (Flotilla always doubles, so
//!   another `multiplier` is a warning); `custom_schedule` is approximated by an
//!   exponential backoff from the first to the largest delay, with a warning. Fast-Flow's
//!   defaults (60 s, at most 3600 s) are written out. A plain string `"fixed"` or
//!   `"exponential"` is accepted too. Without `retry_attempts` it is dropped with a
//!   warning (Flotilla has no global retry count).
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
//!   standard crontab (1 = Monday, either field matches). Lines where this changes the
//!   days are kept as written, with a warning.
//! - **Unlimited values.** `timeout: 0` and `max_instances` ≤ 0 mean "no limit" in
//!   Fast-Flow and are left out.

// The signatures return `ManifestError` by value like the rest of `resource` (see
// `manifest::parse_documents`); errors are the cold path of a one-off file read.
#![allow(
    clippy::result_large_err,
    reason = "ManifestError is the crate's error type for manifest input"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::ManifestError;
use super::kind::Kind;
use super::manifest::{Document, Position};
use super::quantity::{parse_cpus, parse_duration, parse_memory};
use super::schedule_time::parse_cron;
use super::types::{
    Backoff, BackoffKind, LocalRef, PipelineSpec, ResourceLimits, RetryPolicy, ScheduleSpec,
    SecretRef, SecretSpec, SourceRef, Window,
};
use super::validate::{check_dns_label, check_relative_path, envelope, is_env_name};

/// Largest `pipeline.json` accepted.
pub const MAX_METADATA_BYTES: u64 = 1024 * 1024;

/// Annotation set on every imported object.
pub const IMPORTED_FROM_ANNOTATION: &str = "flotilla.dev/imported-from";

/// The Secret that stands in for Fast-Flow's global secret store (see the module doc).
pub const SHARED_SECRETS_NAME: &str = "fastflow-secrets";

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
    if !dir.join("main.py").is_file() {
        let hint = if dir.join("main.ipynb").is_file() {
            "; notebook pipelines (main.ipynb) are not supported: export the notebook to main.py"
        } else {
            ""
        };
        return Err(ManifestError::file(
            &main_py,
            format!("is missing: a Fast-Flow pipeline is a folder holding main.py{hint}"),
        ));
    }
    let name = pipeline_name(folder).map_err(|problem| {
        ManifestError::file(folder, format!("cannot become a pipeline name: {problem}"))
    })?;

    let mut warnings = Vec::new();
    let metadata = read_metadata(source_root, &dir, folder, &mut warnings)?;
    let (file, fields, positions) = match metadata {
        Some(found) => (found.file, found.fields, found.positions),
        None => (main_py, Map::new(), HashMap::new()),
    };
    let mut translator = Translator {
        file: &file,
        positions,
        warnings,
    };
    let values = translator.translate(&name, folder, &fields)?;
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

fn check_folder_path(folder: &str) -> Result<(), String> {
    check_relative_path(folder)?;
    if Path::new(folder)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "{folder:?} is not a plain folder path; give the folder's path relative to the pipelines directory (e.g. team/etl)"
        ));
    }
    Ok(())
}

/// The folder's real path, refusing one that a symbolic link leads out of the root.
fn resolve_inside(root: &Path, folder: &str) -> Result<PathBuf, ManifestError> {
    let root = root.canonicalize().map_err(|e| {
        ManifestError::file(&root.display().to_string(), format!("cannot be read: {e}"))
    })?;
    let dir = root
        .join(folder)
        .canonicalize()
        .map_err(|e| ManifestError::file(folder, format!("cannot be read: {e}")))?;
    if !dir.starts_with(&root) || !dir.is_dir() {
        return Err(ManifestError::file(
            folder,
            "is not a folder inside the pipelines directory (a symbolic link leading out of it?)",
        ));
    }
    Ok(dir)
}

/// Where each top-level key of a metadata file stands.
type KeyPositions = HashMap<String, Position>;

/// A parsed metadata file.
struct MetadataFile {
    /// Path relative to the source root, as errors name it.
    file: String,
    fields: Map<String, Value>,
    positions: KeyPositions,
}

fn read_metadata(
    root: &Path,
    dir: &Path,
    folder: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<MetadataFile>, ManifestError> {
    let last = Path::new(folder)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let own_name = format!("{last}.json");
    let preferred = dir.join("pipeline.json").is_file();
    let fallback = own_name != "pipeline.json" && dir.join(&own_name).is_file();
    let chosen = match (preferred, fallback) {
        (true, true) => {
            warnings.push(format!(
                "{folder}/{own_name}: ignored: {folder}/pipeline.json is present and takes precedence (as in Fast-Flow); merge the two and delete this one"
            ));
            "pipeline.json"
        }
        (true, false) => "pipeline.json",
        (false, true) => own_name.as_str(),
        (false, false) => return Ok(None),
    };
    let file = format!("{folder}/{chosen}");
    let text = read_bounded(root, &dir.join(chosen), &file)?;
    let (fields, positions) = parse_metadata(&file, &text, warnings)?;
    Ok(Some(MetadataFile {
        file,
        fields,
        positions,
    }))
}

fn read_bounded(root: &Path, path: &Path, file: &str) -> Result<Vec<u8>, ManifestError> {
    let unreadable = |e: std::io::Error| ManifestError::file(file, format!("cannot be read: {e}"));
    let real = path.canonicalize().map_err(unreadable)?;
    let root = root.canonicalize().map_err(unreadable)?;
    if !real.starts_with(&root) {
        return Err(ManifestError::file(
            file,
            "is a symbolic link leading out of the pipelines directory; replace it with the file itself",
        ));
    }
    let too_large = |size: u64| {
        ManifestError::file(
            file,
            format!(
                "is {size} bytes; pipeline metadata is limited to {} MiB",
                MAX_METADATA_BYTES / (1024 * 1024)
            ),
        )
    };
    let opened = std::fs::File::open(&real).map_err(unreadable)?;
    let size = opened.metadata().map_err(unreadable)?.len();
    if size > MAX_METADATA_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::new();
    opened
        .take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Parses the metadata text into its top-level fields and where each key stands.
fn parse_metadata(
    file: &str,
    bytes: &[u8],
    warnings: &mut Vec<String>,
) -> Result<(Map<String, Value>, KeyPositions), ManifestError> {
    let bytes = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => {
            warnings.push(format!(
                "{file}: starts with a UTF-8 byte order mark, which Python's json module (and so Fast-Flow) rejects; it was skipped, save the file without it"
            ));
            rest
        }
        None => bytes,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ManifestError::file(
            file,
            format!(
                "is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
                e.valid_up_to()
            ),
        )
    })?;
    if text.trim().is_empty() {
        return Err(ManifestError::file(
            file,
            "is empty; write {} (every key is optional) or delete the file",
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| json_error(file, &e))?;
    match value {
        Value::Object(fields) => Ok((fields, top_level_key_positions(text))),
        other => Err(ManifestError {
            line: Some(1),
            ..ManifestError::file(
                file,
                format!(
                    "must be a JSON object such as {{\"description\": \"...\"}}, found {}",
                    describe(&other)
                ),
            )
        }),
    }
}

fn json_error(file: &str, error: &serde_json::Error) -> ManifestError {
    let full = error.to_string();
    let what = match full.rfind(" at line ") {
        Some(cut) => &full[..cut],
        None => full.as_str(),
    };
    let hint = if what.contains("trailing comma") {
        "remove the comma before the closing bracket or brace"
    } else if what.contains("key must be a string") {
        "put every key in double quotes, e.g. \"tags\": [\"a\"]"
    } else if error.is_eof() {
        "the file ends too early: a closing } or ] (or a closing quote) is missing"
    } else if what.starts_with("expected `,`") {
        "a comma is missing between two entries, or a bracket is not closed"
    } else {
        "fix the JSON syntax here"
    };
    ManifestError {
        line: Some(error.line() as u64).filter(|l| *l > 0),
        column: Some(error.column() as u64).filter(|c| *c > 0),
        ..ManifestError::file(
            file,
            format!(
                "is not valid JSON: {what}; {hint}. Check it with `python3 -m json.tool {file}`"
            ),
        )
    }
}

/// Line and column of each key of the root object (first occurrence), found by a small
/// scanner over text that already parsed as JSON.
fn top_level_key_positions(text: &str) -> KeyPositions {
    let mut positions = HashMap::new();
    let mut depth = 0usize;
    let (mut line, mut column) = (1u64, 0u64);
    let mut pending: Option<(String, Position)> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
            column = 0;
            continue;
        }
        column += 1;
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            '"' => {
                let start = Position { line, column };
                let mut string = String::new();
                while let Some(c) = chars.next() {
                    column += 1;
                    match c {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                column += 1;
                                string.push(escaped);
                            }
                        }
                        '"' => break,
                        _ => string.push(c),
                    }
                }
                pending = (depth == 1).then_some((string, start));
            }
            ':' => {
                if let Some((key, at)) = pending.take() {
                    positions.entry(key).or_insert(at);
                }
            }
            c if c.is_whitespace() => {}
            _ => pending = None,
        }
    }
    positions
}

/// Keys this module maps onto the resources.
const MAPPED_KEYS: &[&str] = &[
    "python_version",
    "mem_hard_limit",
    "cpu_hard_limit",
    "timeout",
    "retry_attempts",
    "retry_strategy",
    "default_env",
    "encrypted_env",
    "secrets",
    "max_instances",
    "enabled",
    "tags",
    "description",
    "webhook_key",
    "schedule_cron",
    "schedule_interval_seconds",
    "schedule_start",
    "schedule_end",
    "run_once_at",
    "schedules",
    "type",
];

/// Fast-Flow keys Flotilla has no equivalent for, with what they did.
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    (
        "cpu_soft_limit",
        "soft CPU limits (monitoring thresholds); only cpu_hard_limit is enforced",
    ),
    (
        "mem_soft_limit",
        "soft memory limits (monitoring thresholds); only mem_hard_limit is enforced",
    ),
    (
        "restart_on_crash",
        "daemon restarts; use retry_attempts, or a Schedule with `every`",
    ),
    (
        "restart_cooldown",
        "daemon restarts; use retry_attempts, or a Schedule with `every`",
    ),
    (
        "restart_interval",
        "daemon restarts; use retry_attempts, or a Schedule with `every`",
    ),
    (
        "downstream_triggers",
        "pipeline chaining; trigger the next pipeline from this one's code or a Schedule",
    ),
    (
        "display_name",
        "display names; the pipeline is called by its folder name",
    ),
    ("owner", "owners; record it in `description` or `tags`"),
    (
        "cells",
        "notebook cell retries (notebook pipelines are not supported)",
    ),
];

/// Keys of one `schedules[]` entry that map onto a Schedule.
const SCHEDULE_ENTRY_KEYS: &[&str] = &[
    "id",
    "schedule_cron",
    "schedule_interval_seconds",
    "schedule_start",
    "schedule_end",
    "default_env",
    "enabled",
];

/// Keys of a `schedules[]` entry that override pipeline settings per schedule.
const SCHEDULE_ENTRY_OVERRIDES: &[&str] = &[
    "encrypted_env",
    "cpu_hard_limit",
    "mem_hard_limit",
    "cpu_soft_limit",
    "mem_soft_limit",
    "timeout",
    "retry_attempts",
    "retry_strategy",
    "webhook_key",
];

/// Fast-Flow's retry delays when a strategy leaves them out.
const DEFAULT_DELAY_SECONDS: f64 = 60.0;
const DEFAULT_MAX_DELAY_SECONDS: f64 = 3600.0;

/// Translates one metadata file, collecting warnings and stopping at the first error.
struct Translator<'a> {
    file: &'a str,
    positions: KeyPositions,
    warnings: Vec<String>,
}

/// The trigger and window of one schedule, in Flotilla's terms.
#[derive(Default)]
struct Timing {
    cron: Option<String>,
    every: Option<String>,
    at: Option<String>,
    window: Option<Window>,
}

impl Translator<'_> {
    /// An error about `field` (a JSON path such as `retry_strategy.delay`).
    fn error(&self, field: &str, message: impl Into<String>) -> ManifestError {
        let at = self.position(field);
        ManifestError {
            line: at.map(|p| p.line),
            column: at.map(|p| p.column),
            field: Some(field.to_owned()),
            ..ManifestError::file(self.file, message)
        }
    }

    fn warn(&mut self, field: &str, message: impl AsRef<str>) {
        let location = match self.position(field) {
            Some(at) => format!("{}:{}", self.file, at.line),
            None => self.file.to_owned(),
        };
        self.warnings
            .push(format!("{location}: {field}: {}", message.as_ref()));
    }

    fn position(&self, field: &str) -> Option<Position> {
        let top = field.split(['.', '[']).next().unwrap_or(field);
        self.positions.get(top).copied()
    }

    fn translate(
        &mut self,
        name: &str,
        folder: &str,
        fields: &Map<String, Value>,
    ) -> Result<Vec<Value>, ManifestError> {
        self.leftover_keys(fields);
        self.check_type(fields)?;
        let enabled = match get(fields, "enabled") {
            Some(value) => self.boolean("enabled", value)?,
            None => true,
        };
        let mut spec = PipelineSpec {
            source: Some(SourceRef {
                path: folder.to_owned(),
            }),
            python: self.python(fields)?,
            resources: self.resources(fields)?,
            timeout: self.timeout(fields)?,
            retries: self.retries(fields)?,
            env: match get(fields, "default_env") {
                Some(value) => self.env_map("default_env", value)?,
                None => BTreeMap::new(),
            },
            max_instances: self.max_instances(fields)?,
            suspend: !enabled,
            description: self.optional_text(fields, "description", "a description")?,
            tags: match get(fields, "tags") {
                Some(value) => {
                    self.string_list("tags", value, "a list of tags such as [\"daily\"]")?
                }
                None => Vec::new(),
            },
            webhook_key: self.optional_text(fields, "webhook_key", "a webhook key")?,
            ..PipelineSpec::default()
        };

        let mut values = Vec::new();
        if let Some(encrypted) = get(fields, "encrypted_env") {
            let data = self.encrypted_env("encrypted_env", encrypted)?;
            if !data.is_empty() {
                let secret_name = derived_name(name, "env");
                spec.secret_refs.push(SecretRef {
                    name: secret_name.clone(),
                    ..SecretRef::default()
                });
                let secret = SecretSpec {
                    encrypted_data: data,
                    ..SecretSpec::default()
                };
                values.push(self.document(Kind::Secret, &secret_name, &secret)?);
            }
        }
        if let Some(list) = get(fields, "secrets") {
            let keys = self.secret_keys(list)?;
            if !keys.is_empty() {
                self.warn(
                    "secrets",
                    format!(
                        "these keys are read from the Secret {SHARED_SECRETS_NAME:?}, which stands in for Fast-Flow's global secret store; create it with the keys {}",
                        keys.join(", ")
                    ),
                );
                spec.secret_refs.push(SecretRef {
                    name: SHARED_SECRETS_NAME.to_owned(),
                    keys,
                    ..SecretRef::default()
                });
            }
        }
        values.push(self.document(Kind::Pipeline, name, &spec)?);
        for (schedule_name, schedule) in self.schedules(name, fields, !enabled)? {
            values.push(self.document(Kind::Schedule, &schedule_name, &schedule)?);
        }
        Ok(values)
    }

    fn document(
        &self,
        kind: Kind,
        name: &str,
        spec: &impl Serialize,
    ) -> Result<Value, ManifestError> {
        let spec = serde_json::to_value(spec).map_err(|e| {
            ManifestError::file(
                self.file,
                format!("cannot be translated into a {kind}: {e}"),
            )
        })?;
        let mut value = envelope(kind, name, spec);
        if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            let mut annotations = Map::new();
            annotations.insert(
                IMPORTED_FROM_ANNOTATION.to_owned(),
                Value::String("fast-flow".to_owned()),
            );
            metadata.insert("annotations".to_owned(), Value::Object(annotations));
        }
        Ok(value)
    }

    /// Warns about every key that is not mapped, unless it holds Fast-Flow's default.
    fn leftover_keys(&mut self, fields: &Map<String, Value>) {
        for (key, value) in fields {
            if MAPPED_KEYS.contains(&key.as_str()) {
                continue;
            }
            if let Some((_, what)) = UNSUPPORTED_KEYS.iter().find(|(k, _)| k == key) {
                if !is_unset(value) {
                    self.warn(key, format!("ignored: Flotilla does not support {what}"));
                }
                continue;
            }
            let known = MAPPED_KEYS
                .iter()
                .copied()
                .chain(UNSUPPORTED_KEYS.iter().map(|(k, _)| *k));
            let message = match closest(key, known) {
                Some(guess) => {
                    format!("unknown key, ignored (as Fast-Flow does); did you mean {guess:?}?")
                }
                None => "unknown key, ignored (as Fast-Flow does); check its spelling".to_owned(),
            };
            self.warn(key, message);
        }
    }

    fn check_type(&mut self, fields: &Map<String, Value>) -> Result<(), ManifestError> {
        let Some(value) = get(fields, "type") else {
            return Ok(());
        };
        let kind = self.string("type", value, "\"script\"")?;
        match kind.trim().to_ascii_lowercase().as_str() {
            "" | "script" => Ok(()),
            "notebook" => Err(self.error(
                "type",
                "notebook pipelines are not supported: Flotilla runs main.py; export the notebook to main.py and remove \"type\"",
            )),
            _ => {
                self.warn("type", format!("{kind:?} is not a Fast-Flow type; treated as \"script\" (main.py), as Fast-Flow does"));
                Ok(())
            }
        }
    }

    fn python(&mut self, fields: &Map<String, Value>) -> Result<Option<String>, ManifestError> {
        let version = match get(fields, "python_version") {
            None => return Ok(None),
            Some(Value::String(text)) => text.trim().to_owned(),
            Some(Value::Number(number)) => {
                let text = number.to_string();
                let ambiguous = text.split_once('.').is_some_and(|(major, minor)| {
                    major == "3" && minor.len() == 1 && ("1"..="6").contains(&minor)
                });
                if ambiguous {
                    return Err(self.error(
                        "python_version",
                        format!(
                            "the number {text} is ambiguous: JSON numbers drop trailing zeros, so 3.10 reads as 3.1; write the version as a string, e.g. \"python_version\": \"{text}0\""
                        ),
                    ));
                }
                self.warn(
                    "python_version",
                    format!("is the number {text}; write it as a string (\"{text}\"): as a number 3.10 would read as 3.1"),
                );
                text
            }
            Some(other) => {
                return Err(self.error(
                    "python_version",
                    format!(
                        "expected a Python version as a string such as \"3.12\", found {}",
                        describe(other)
                    ),
                ));
            }
        };
        if version.is_empty() {
            return Ok(None);
        }
        if version.contains(char::is_whitespace) {
            return Err(self.error(
                "python_version",
                format!("{version:?} is not a Python version such as \"3.12\""),
            ));
        }
        Ok(Some(version))
    }

    fn resources(
        &mut self,
        fields: &Map<String, Value>,
    ) -> Result<Option<ResourceLimits>, ManifestError> {
        let memory = match get(fields, "mem_hard_limit") {
            Some(value) => self.memory("mem_hard_limit", value)?,
            None => None,
        };
        let cpus = match get(fields, "cpu_hard_limit") {
            Some(value) => self.cpus("cpu_hard_limit", value)?,
            None => None,
        };
        Ok(
            (memory.is_some() || cpus.is_some()).then_some(ResourceLimits {
                memory,
                cpus,
                pids: None,
            }),
        )
    }

    /// Docker's memory strings (`512m`, `1g`, `512M`: all binary) or a number of bytes.
    fn memory(&self, field: &str, value: &Value) -> Result<Option<String>, ManifestError> {
        let text = match value {
            Value::String(text) if text.trim().is_empty() => return Ok(None),
            // Docker reads every suffix as binary; Flotilla reads upper-case K/M/G/T as
            // decimal, so lower-case them. Kubernetes' `Mi` spellings pass through.
            Value::String(text) if text.trim().ends_with('i') => text.trim().to_owned(),
            Value::String(text) => text.trim().to_ascii_lowercase(),
            Value::Number(number) => {
                match number.as_u64() {
                    Some(bytes) => format_bytes(bytes),
                    None => {
                        return Err(self.error(
                        field,
                        format!("expected whole bytes or a size such as \"512m\" or \"1g\", found {}", describe(value)),
                    ));
                    }
                }
            }
            other => {
                return Err(self.error(
                    field,
                    format!(
                        "expected a memory size such as \"512m\" or \"1g\", found {}",
                        describe(other)
                    ),
                ));
            }
        };
        parse_memory(&text).map_err(|e| self.error(field, e.to_string()))?;
        Ok(Some(text))
    }

    fn cpus(&self, field: &str, value: &Value) -> Result<Option<String>, ManifestError> {
        let text = match value {
            Value::Number(number) => number.to_string(),
            Value::String(text) if text.trim().is_empty() => return Ok(None),
            Value::String(text) => text.trim().to_owned(),
            other => {
                return Err(self.error(
                    field,
                    format!(
                        "expected a number of CPUs such as 1.5, found {}",
                        describe(other)
                    ),
                ));
            }
        };
        parse_cpus(&text).map_err(|e| self.error(field, e.to_string()))?;
        Ok(Some(text))
    }

    /// Whole seconds (`0` = no limit) or a duration string such as `"30m"`.
    fn timeout(&self, fields: &Map<String, Value>) -> Result<Option<String>, ManifestError> {
        let Some(value) = get(fields, "timeout") else {
            return Ok(None);
        };
        let expected =
            "expected whole seconds such as 3600 (0 = no timeout) or a duration such as \"30m\"";
        let text = match value {
            Value::Number(number) => match number.as_u64() {
                Some(0) => return Ok(None),
                Some(seconds) => format!("{seconds}s"),
                None => {
                    return Err(
                        self.error("timeout", format!("{expected}, found {}", describe(value)))
                    );
                }
            },
            Value::String(text) => {
                let text = text.trim();
                match text.parse::<u64>() {
                    Ok(0) => return Ok(None),
                    Ok(seconds) => format!("{seconds}s"),
                    Err(_) if text.is_empty() => return Ok(None),
                    Err(_) => text.to_owned(),
                }
            }
            other => {
                return Err(self.error("timeout", format!("{expected}, found {}", describe(other))));
            }
        };
        match parse_duration(&text) {
            Ok(d) if d.is_zero() => Ok(None),
            Ok(_) => Ok(Some(text)),
            Err(e) => Err(self.error("timeout", e.to_string())),
        }
    }

    fn retries(
        &mut self,
        fields: &Map<String, Value>,
    ) -> Result<Option<RetryPolicy>, ManifestError> {
        let limit = match get(fields, "retry_attempts") {
            Some(value) => Some(self.count(
                "retry_attempts",
                value,
                "a whole number of retries such as 3",
            )?),
            None => None,
        };
        let backoff = match get(fields, "retry_strategy") {
            Some(value) => Some(self.backoff("retry_strategy", value)?),
            None => None,
        };
        match (limit, backoff) {
            (Some(limit), backoff) => Ok(Some(RetryPolicy { limit, backoff })),
            (None, Some(_)) => {
                self.warn(
                    "retry_strategy",
                    "ignored: without retry_attempts Fast-Flow used its global retry count, which Flotilla does not have; set retry_attempts",
                );
                Ok(None)
            }
            (None, None) => Ok(None),
        }
    }

    fn backoff(&mut self, field: &str, value: &Value) -> Result<Backoff, ManifestError> {
        let expected = "expected {\"type\": \"exponential_backoff\" | \"fixed_delay\" | \"custom_schedule\", ...} or \"exponential\" / \"fixed\"";
        let strategy = match value {
            Value::String(kind) => {
                return match kind.trim() {
                    "exponential" | "exponential_backoff" => Ok(exponential(
                        DEFAULT_DELAY_SECONDS,
                        DEFAULT_MAX_DELAY_SECONDS,
                    )),
                    "fixed" | "fixed_delay" => Ok(fixed(DEFAULT_DELAY_SECONDS)),
                    _ => Err(self.error(field, format!("unknown strategy {kind:?}; {expected}"))),
                };
            }
            Value::Object(strategy) => strategy,
            other => {
                return Err(self.error(field, format!("{expected}, found {}", describe(other))));
            }
        };
        let kind = match get(strategy, "type") {
            Some(value) => self.string(
                &format!("{field}.type"),
                value,
                "\"exponential_backoff\" or \"fixed_delay\"",
            )?,
            None => "fixed_delay".to_owned(),
        };
        let allowed: &[&str] = match kind.as_str() {
            "exponential_backoff" => &["type", "initial_delay", "max_delay", "multiplier"],
            "fixed_delay" => &["type", "delay"],
            "custom_schedule" => &["type", "delays"],
            other => {
                return Err(self.error(
                    &format!("{field}.type"),
                    format!("unknown strategy {other:?}; use \"exponential_backoff\", \"fixed_delay\" or \"custom_schedule\""),
                ));
            }
        };
        for key in strategy.keys().filter(|k| !allowed.contains(&k.as_str())) {
            self.warn(
                &format!("{field}.{key}"),
                format!("ignored: not used by {kind}"),
            );
        }
        let seconds = |this: &Self, key: &str, default: f64| match get(strategy, key) {
            Some(value) => this.seconds(&format!("{field}.{key}"), value),
            None => Ok(default),
        };
        let backoff = match kind.as_str() {
            "exponential_backoff" => {
                let initial = seconds(self, "initial_delay", DEFAULT_DELAY_SECONDS)?;
                let max = seconds(self, "max_delay", DEFAULT_MAX_DELAY_SECONDS)?;
                if let Some(multiplier) = get(strategy, "multiplier")
                    && multiplier.as_f64() != Some(2.0)
                {
                    self.warn(
                        &format!("{field}.multiplier"),
                        format!(
                            "is {multiplier}; Flotilla always doubles the delay (multiplier 2)"
                        ),
                    );
                }
                exponential(initial, max)
            }
            "fixed_delay" => fixed(seconds(self, "delay", DEFAULT_DELAY_SECONDS)?),
            _ => {
                let delays_field = format!("{field}.delays");
                let delays = match get(strategy, "delays") {
                    Some(Value::Array(items)) => items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.seconds(&format!("{delays_field}[{i}]"), item))
                        .collect::<Result<Vec<f64>, _>>()?,
                    Some(other) => {
                        return Err(self.error(
                            &delays_field,
                            format!(
                                "expected a list of seconds such as [60, 300, 3600], found {}",
                                describe(other)
                            ),
                        ));
                    }
                    None => Vec::new(),
                };
                match delays.split_first() {
                    None => fixed(DEFAULT_DELAY_SECONDS),
                    Some((first, rest)) if rest.iter().all(|d| d == first) => fixed(*first),
                    Some((first, _)) => {
                        let max = delays.iter().copied().fold(*first, f64::max);
                        self.warn(
                            &delays_field,
                            format!(
                                "approximated: Flotilla has no custom delay lists; using an exponential backoff from {} to at most {}",
                                seconds_text(*first),
                                seconds_text(max)
                            ),
                        );
                        exponential(*first, max)
                    }
                }
            }
        };
        self.clamp_delays(field, backoff)
    }

    /// Fast-Flow allows a zero delay; Flotilla's delays are at least one second.
    fn clamp_delays(
        &mut self,
        field: &str,
        mut backoff: Backoff,
    ) -> Result<Backoff, ManifestError> {
        for delay in [&mut backoff.initial, &mut backoff.max]
            .into_iter()
            .flatten()
        {
            match parse_duration(delay) {
                Ok(d) if d.as_millis() < 1000 => {
                    self.warn(
                        field,
                        format!("delay {delay} raised to 1s, Flotilla's shortest retry delay"),
                    );
                    *delay = "1s".to_owned();
                }
                Ok(_) => {}
                Err(e) => return Err(self.error(field, e.to_string())),
            }
        }
        Ok(backoff)
    }

    fn max_instances(&self, fields: &Map<String, Value>) -> Result<Option<u32>, ManifestError> {
        let Some(value) = get(fields, "max_instances") else {
            return Ok(None);
        };
        match value.as_i64() {
            // Fast-Flow reads 0 and negative numbers as "no limit".
            Some(n) if n <= 0 => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| self.error("max_instances", format!("{n} is too large"))),
            None => Err(self.error(
                "max_instances",
                format!(
                    "expected a whole number of concurrent runs such as 1, found {}",
                    describe(value)
                ),
            )),
        }
    }

    fn env_map(
        &mut self,
        field: &str,
        value: &Value,
    ) -> Result<BTreeMap<String, String>, ManifestError> {
        let entries = self.object(
            field,
            value,
            "an object of variables such as {\"LOG_LEVEL\": \"INFO\"}",
        )?;
        let mut env = BTreeMap::new();
        for (key, value) in entries {
            let path = format!("{field}.{key}");
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                Value::Null => {
                    self.warn(&path, "is null; left out (Fast-Flow sets only strings)");
                    continue;
                }
                other => {
                    return Err(self.error(
                        &path,
                        format!("expected a string value, found {}", describe(other)),
                    ));
                }
            };
            self.env_name(&path, key)?;
            env.insert(key.clone(), text);
        }
        Ok(env)
    }

    fn encrypted_env(
        &self,
        field: &str,
        value: &Value,
    ) -> Result<BTreeMap<String, String>, ManifestError> {
        let entries = self.object(
            field,
            value,
            "an object of Fernet tokens such as {\"API_KEY\": \"gAAAAAB...\"}",
        )?;
        let mut data = BTreeMap::new();
        for (key, value) in entries {
            let path = format!("{field}.{key}");
            let token = self.string(&path, value, "a Fernet token (gAAAAAB...)")?;
            self.env_name(&path, key.trim())?;
            data.insert(key.trim().to_owned(), token);
        }
        Ok(data)
    }

    fn secret_keys(&self, value: &Value) -> Result<Vec<String>, ManifestError> {
        let mut keys: Vec<String> = Vec::new();
        for (i, key) in self
            .string_list(
                "secrets",
                value,
                "a list of secret names such as [\"API_KEY\"]",
            )?
            .into_iter()
            .enumerate()
        {
            let key = key.trim().to_owned();
            self.env_name(&format!("secrets[{i}]"), &key)?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    fn env_name(&self, field: &str, name: &str) -> Result<(), ManifestError> {
        if is_env_name(name) {
            Ok(())
        } else {
            Err(self.error(
                field,
                format!("{name:?} is not a valid environment variable name (letters, digits and _, not starting with a digit)"),
            ))
        }
    }

    /// The top-level schedule and every `schedules[]` entry, with their names.
    fn schedules(
        &mut self,
        pipeline: &str,
        fields: &Map<String, Value>,
        suspend: bool,
    ) -> Result<Vec<(String, ScheduleSpec)>, ManifestError> {
        let entries = match get(fields, "schedules") {
            Some(Value::Array(entries)) => entries.as_slice(),
            Some(other) => {
                return Err(self.error(
                    "schedules",
                    format!(
                        "expected a list of run configurations, found {}",
                        describe(other)
                    ),
                ));
            }
            None => &[],
        };
        let mut schedules = Vec::new();
        let top_level = if entries.is_empty() {
            self.timing("", fields, true)?
        } else {
            for key in [
                "schedule_cron",
                "schedule_interval_seconds",
                "schedule_start",
                "schedule_end",
            ] {
                if get(fields, key).is_some() {
                    self.warn(key, "ignored because `schedules` is set (as in Fast-Flow); move it into a schedules entry");
                }
            }
            let once = Map::from_iter(
                fields
                    .get("run_once_at")
                    .map(|v| ("run_once_at".to_owned(), v.clone())),
            );
            self.timing("", &once, true)?
        };
        if let Some(timing) = top_level {
            schedules.push((
                pipeline.to_owned(),
                schedule_spec(pipeline, timing, suspend, BTreeMap::new()),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, entry) in entries.iter().enumerate() {
            let path = format!("schedules[{i}]");
            let entry = self.object(
                &path,
                entry,
                "a run configuration such as {\"id\": \"prod\", \"schedule_cron\": \"0 8 * * *\"}",
            )?;
            let id = match get(entry, "id") {
                Some(value) => {
                    self.string(&format!("{path}.id"), value, "a name such as \"prod\"")?
                }
                None => String::new(),
            };
            let label = pipeline_name(&id).map_err(|_| {
                self.error(
                    &format!("{path}.id"),
                    "required: a name such as \"prod\" (Fast-Flow skipped entries without one)",
                )
            })?;
            let label = label[..label.len().min(30)]
                .trim_end_matches('-')
                .to_owned();
            if !seen.insert(label.clone()) {
                return Err(self.error(
                    &format!("{path}.id"),
                    format!("{id:?} is used by an earlier entry; ids must be unique"),
                ));
            }
            for (key, value) in entry {
                let key_path = format!("{path}.{key}");
                if SCHEDULE_ENTRY_OVERRIDES.contains(&key.as_str()) {
                    if !is_unset(value) {
                        self.warn(&key_path, "ignored: Flotilla schedules cannot override pipeline settings; only cron, interval, window, default_env and enabled carry over");
                    }
                } else if !SCHEDULE_ENTRY_KEYS.contains(&key.as_str()) {
                    self.warn(&key_path, "unknown key, ignored (as Fast-Flow does)");
                }
            }
            let Some(timing) = self.timing(&format!("{path}."), entry, false)? else {
                return Err(self.error(
                    &path,
                    "sets neither schedule_cron nor schedule_interval_seconds (Fast-Flow skipped such entries); add one or remove the entry",
                ));
            };
            let entry_enabled = match get(entry, "enabled") {
                Some(value) => self.boolean(&format!("{path}.enabled"), value)?,
                None => true,
            };
            let env = match get(entry, "default_env") {
                Some(value) => self.env_map(&format!("{path}.default_env"), value)?,
                None => BTreeMap::new(),
            };
            let name = derived_name(pipeline, &label);
            schedules.push((
                name,
                schedule_spec(pipeline, timing, suspend || !entry_enabled, env),
            ));
        }
        Ok(schedules)
    }

    /// Reads the trigger (`schedule_cron` | `schedule_interval_seconds` | `run_once_at`)
    /// and window of one schedule; `None` when no trigger is set.
    fn timing(
        &mut self,
        prefix: &str,
        fields: &Map<String, Value>,
        one_shot: bool,
    ) -> Result<Option<Timing>, ManifestError> {
        let mut timing = Timing::default();
        let cron_field = format!("{prefix}schedule_cron");
        if let Some(value) = get(fields, "schedule_cron") {
            let line = self.string(&cron_field, value, "a crontab line such as \"0 9 * * *\"")?;
            let line = line.trim();
            if !line.is_empty() {
                parse_cron(line).map_err(|problem| self.error(&cron_field, problem))?;
                self.cron_differences(&cron_field, line);
                timing.cron = Some(line.to_owned());
            }
        }
        let every_field = format!("{prefix}schedule_interval_seconds");
        if let Some(value) = get(fields, "schedule_interval_seconds") {
            match value.as_u64() {
                Some(seconds) if seconds > 0 => timing.every = Some(format!("{seconds}s")),
                _ => {
                    return Err(self.error(
                        &every_field,
                        format!("expected a whole number of seconds of at least 1 such as 3600, found {}", describe(value)),
                    ));
                }
            }
        }
        if one_shot && let Some(value) = get(fields, "run_once_at") {
            let text = self.string(
                "run_once_at",
                value,
                "an ISO date-time such as \"2026-01-15T12:00:00\"",
            )?;
            timing.at = match parse_fast_flow_time(&text)
                .map_err(|problem| self.error("run_once_at", problem))?
            {
                None => None,
                Some(FastFlowTime::Day(day)) => Some(rfc3339(midnight(day))),
                Some(FastFlowTime::Instant(at)) => Some(rfc3339(at)),
            };
        }
        let set: Vec<&str> = [
            (timing.cron.is_some(), "schedule_cron"),
            (timing.every.is_some(), "schedule_interval_seconds"),
            (timing.at.is_some(), "run_once_at"),
        ]
        .into_iter()
        .filter_map(|(is_set, key)| is_set.then_some(key))
        .collect();
        if set.len() > 1 {
            return Err(self.error(
                &format!("{prefix}{}", set[0]),
                format!(
                    "{} are {} set; a schedule has exactly one trigger: keep one (Fast-Flow silently preferred schedule_cron)",
                    set.join(" and "),
                    if set.len() == 2 { "both" } else { "all" }
                ),
            ));
        }
        if set.is_empty() {
            return Ok(None);
        }
        timing.window = self.window(prefix, fields)?;
        Ok(Some(timing))
    }

    fn window(
        &self,
        prefix: &str,
        fields: &Map<String, Value>,
    ) -> Result<Option<Window>, ManifestError> {
        let bound = |key: &str| -> Result<Option<(String, DateTime<Utc>)>, ManifestError> {
            let field = format!("{prefix}{key}");
            let Some(value) = get(fields, key) else {
                return Ok(None);
            };
            let text = self.string(
                &field,
                value,
                "an ISO date or date-time such as \"2026-01-01\"",
            )?;
            let parsed =
                parse_fast_flow_time(&text).map_err(|problem| self.error(&field, problem))?;
            Ok(parsed.map(|time| match time {
                // A day as end was inclusive in Fast-Flow; Flotilla's end is exclusive.
                FastFlowTime::Day(day) if key == "schedule_end" => {
                    let next = day.succ_opt().unwrap_or(day);
                    (next.format("%Y-%m-%d").to_string(), midnight(next))
                }
                FastFlowTime::Day(day) => (day.format("%Y-%m-%d").to_string(), midnight(day)),
                FastFlowTime::Instant(at) => (rfc3339(at), at),
            }))
        };
        let start = bound("schedule_start")?;
        let end = bound("schedule_end")?;
        if let (Some((_, from)), Some((_, until))) = (&start, &end)
            && from >= until
        {
            return Err(self.error(
                &format!("{prefix}schedule_end"),
                "must be after schedule_start",
            ));
        }
        if start.is_none() && end.is_none() {
            return Ok(None);
        }
        Ok(Some(Window {
            start: start.map(|(text, _)| text),
            end: end.map(|(text, _)| text),
        }))
    }

    /// Warns where APScheduler (Fast-Flow) and standard crontab read a line differently.
    fn cron_differences(&mut self, field: &str, line: &str) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_, _, day_of_month, _, day_of_week] = parts.as_slice() else {
            return;
        };
        let restricted = |f: &str| f != "*" && f != "?";
        if day_of_week.contains(|c: char| c.is_ascii_digit()) {
            self.warn(
                field,
                format!(
                    "{line:?}: Fast-Flow (APScheduler) numbered weekdays from 0 = Monday, Flotilla uses crontab numbering (0 = Sunday, 1 = Monday), so these runs now fall one day earlier than in Fast-Flow; write day names (MON-FRI) to say which days you mean"
                ),
            );
        }
        if restricted(day_of_month) && restricted(day_of_week) {
            self.warn(
                field,
                format!(
                    "{line:?}: Fast-Flow ran only on days matching both day-of-month and day-of-week; standard crontab (Flotilla) runs on days matching either"
                ),
            );
        }
    }

    fn optional_text(
        &self,
        fields: &Map<String, Value>,
        key: &str,
        what: &str,
    ) -> Result<Option<String>, ManifestError> {
        match get(fields, key) {
            Some(value) => {
                let text = self.string(key, value, what)?;
                Ok(Some(text).filter(|t| !t.trim().is_empty()))
            }
            None => Ok(None),
        }
    }

    fn string(&self, field: &str, value: &Value, what: &str) -> Result<String, ManifestError> {
        match value {
            Value::String(text) => Ok(text.clone()),
            other => Err(self.error(
                field,
                format!("expected {what} (a string), found {}", describe(other)),
            )),
        }
    }

    fn boolean(&self, field: &str, value: &Value) -> Result<bool, ManifestError> {
        match value {
            Value::Bool(flag) => Ok(*flag),
            other => Err(self.error(
                field,
                format!(
                    "expected true or false (without quotes), found {}",
                    describe(other)
                ),
            )),
        }
    }

    fn count(&self, field: &str, value: &Value, what: &str) -> Result<u32, ManifestError> {
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.error(field, format!("expected {what}, found {}", describe(value))))
    }

    /// A non-negative number of seconds.
    fn seconds(&self, field: &str, value: &Value) -> Result<f64, ManifestError> {
        match value.as_f64() {
            Some(seconds) if seconds >= 0.0 && seconds.is_finite() => Ok(seconds),
            _ => Err(self.error(
                field,
                format!("expected seconds such as 60, found {}", describe(value)),
            )),
        }
    }

    fn string_list(
        &self,
        field: &str,
        value: &Value,
        what: &str,
    ) -> Result<Vec<String>, ManifestError> {
        let Value::Array(items) = value else {
            return Err(self.error(field, format!("expected {what}, found {}", describe(value))));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(text.clone()),
                other => Err(self.error(
                    &format!("{field}[{i}]"),
                    format!("expected a string, found {}", describe(other)),
                )),
            })
            .collect()
    }

    fn object<'v>(
        &self,
        field: &str,
        value: &'v Value,
        what: &str,
    ) -> Result<&'v Map<String, Value>, ManifestError> {
        value
            .as_object()
            .ok_or_else(|| self.error(field, format!("expected {what}, found {}", describe(value))))
    }
}

fn schedule_spec(
    pipeline: &str,
    timing: Timing,
    suspend: bool,
    env: BTreeMap<String, String>,
) -> ScheduleSpec {
    ScheduleSpec {
        pipeline_ref: LocalRef {
            name: pipeline.to_owned(),
        },
        cron: timing.cron,
        every: timing.every,
        at: timing.at,
        time_zone: Some("UTC".to_owned()),
        suspend,
        window: timing.window,
        env,
        ..ScheduleSpec::default()
    }
}

fn exponential(initial: f64, max: f64) -> Backoff {
    Backoff {
        kind: BackoffKind::Exponential,
        initial: Some(seconds_text(initial)),
        max: Some(seconds_text(max.max(initial))),
    }
}

fn fixed(delay: f64) -> Backoff {
    Backoff {
        kind: BackoffKind::Fixed,
        initial: Some(seconds_text(delay)),
        max: None,
    }
}

/// `60` → `60s`, `1.5` → `1500ms`.
fn seconds_text(seconds: f64) -> String {
    let millis = (seconds * 1000.0).round() as u64;
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// Bytes as the largest exact binary unit: `536870912` → `512Mi`.
fn format_bytes(bytes: u64) -> String {
    for (unit, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes > 0 && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// `<base>-<suffix>`, shortening `base` so the result stays a DNS-1123 label.
fn derived_name(base: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(suffix.len() + 1);
    let base = base[..base.len().min(room)].trim_end_matches('-');
    format!("{base}-{suffix}")
}

/// A time as Fast-Flow writes it: a day or an instant.
enum FastFlowTime {
    Day(NaiveDate),
    Instant(DateTime<Utc>),
}

/// Parses what Python's `datetime.fromisoformat` accepts in practice: `2026-01-15`,
/// `2026-01-15T12:00[:00[.000]]` (also with a space), with `Z` or an offset; a time
/// without an offset is UTC, as in Fast-Flow. Empty text is `None`.
fn parse_fast_flow_time(text: &str) -> Result<Option<FastFlowTime>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Some(FastFlowTime::Day(day)));
    }
    let normalized = match text.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &text[..10], &text[11..]),
        _ => text.to_owned(),
    };
    if let Ok(at) = DateTime::parse_from_rfc3339(&normalized) {
        return Ok(Some(FastFlowTime::Instant(at.with_timezone(&Utc))));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(at) = DateTime::parse_from_str(&normalized, format) {
            return Ok(Some(FastFlowTime::Instant(at.with_timezone(&Utc))));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&normalized, format) {
            return Ok(Some(FastFlowTime::Instant(naive.and_utc())));
        }
    }
    Err(format!(
        "{text:?} is not an ISO date (2026-01-15) or date-time (2026-01-15T12:00:00, read as UTC, or with Z or an offset)"
    ))
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A field's value, with `null` meaning "not set".
fn get<'m>(fields: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    fields.get(key).filter(|v| !v.is_null())
}

/// True for the values Fast-Flow treats as "not set": null, false, "", [] and {}.
fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) if text.chars().count() > 40 => {
            let head: String = text.chars().take(40).collect();
            format!("the string {head:?}…")
        }
        Value::String(text) => format!("the string {text:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The known key closest to `key` (a likely typo), if any is within two edits.
fn closest<'k>(key: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    known
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::validate::validate_document;
    use tempfile::TempDir;

    const TOKEN: &str = "gAAAAABl2xYzExampleExampleExampleExampleExampleExampleExampleExampleExampleExampleExampleExampleExample-_==";

    /// A pipelines directory with one folder holding `main.py` and the given files.
    fn folder(name: &str, files: &[(&str, &str)]) -> TempDir {
        let root = TempDir::new().expect("temp dir");
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).expect("folder");
        std::fs::write(dir.join("main.py"), "print('hi')\n").expect("main.py");
        for (file, text) in files {
            std::fs::write(dir.join(file), text).expect("file");
        }
        root
    }

    fn import(name: &str, json: &str) -> Result<FastFlowPipeline, ManifestError> {
        let root = folder(name, &[("pipeline.json", json)]);
        import_folder(root.path(), name)
    }

    fn imported(name: &str, json: &str) -> FastFlowPipeline {
        import(name, json).unwrap_or_else(|e| panic!("import failed: {e}"))
    }

    fn by_kind<'d>(pipeline: &'d FastFlowPipeline, kind: &str) -> Vec<&'d Value> {
        pipeline
            .documents
            .iter()
            .map(|d| &d.value)
            .filter(|v| v["kind"] == kind)
            .collect()
    }

    fn spec_of<'d>(pipeline: &'d FastFlowPipeline, kind: &str) -> &'d Value {
        let found = by_kind(pipeline, kind);
        assert_eq!(found.len(), 1, "one {kind} in {:#?}", pipeline.documents);
        &found[0]["spec"]
    }

    fn assert_all_valid(pipeline: &FastFlowPipeline) {
        for doc in &pipeline.documents {
            if let Err(errors) = validate_document(doc) {
                panic!("{} does not validate: {errors:#?}", doc.value);
            }
        }
    }

    fn import_error(json: &str) -> ManifestError {
        match import("etl", json) {
            Ok(p) => panic!("expected an error for {json}, got {:#?}", p.documents),
            Err(e) => e,
        }
    }

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
        assert_eq!(object.spec["source"]["path"], "nightly_etl");
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

        let secret = by_kind(&pipeline, "Secret")[0];
        assert_eq!(secret["metadata"]["name"], "nightly-etl-env");
        assert_eq!(secret["spec"]["encryptedData"]["API_KEY"], TOKEN);
        for doc in &pipeline.documents {
            assert_eq!(
                doc.value["metadata"]["annotations"][IMPORTED_FROM_ANNOTATION],
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
            (
                r#"{"type": "notebook"}"#,
                "type",
                "notebook pipelines are not supported",
            ),
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
        assert_eq!(pipeline.warnings.len(), 10, "{:#?}", pipeline.warnings);
        for key in [
            "cpu_soft_limit",
            "restart_on_crash",
            "downstream_triggers",
            "owner",
        ] {
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
                r#"{"type": "exponential_backoff", "initial_delay": 10, "multiplier": 3}"#,
                "exponential",
                "10s",
                Some("3600s"),
                "always doubles",
            ),
            (
                r#"{"type": "custom_schedule", "delays": [60, 300, 3600]}"#,
                "exponential",
                "60s",
                Some("3600s"),
                "approximated",
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
        assert!(
            pipeline
                .warnings
                .iter()
                .any(|w| w.contains("schedules[1].timeout: ignored"))
        );

        let error = import_error(
            r#"{"schedules": [{"id": "a", "schedule_cron": "0 1 * * *"}, {"id": "A", "schedule_cron": "0 2 * * *"}]}"#,
        );
        assert!(error.message.contains("unique"), "{error}");
    }

    #[test]
    fn cron_lines_read_differently_by_apscheduler_are_flagged() {
        let cases: &[(&str, usize)] = &[
            ("0 9 * * *", 0),
            ("0 9 * * MON-FRI", 0),
            ("0 9 * * 1-5", 1),
            ("0 9 1 * MON", 1),
            ("0 9 1 * 1", 2),
        ];
        for (line, warnings) in cases {
            let pipeline = imported("etl", &format!(r#"{{"schedule_cron": "{line}"}}"#));
            assert_all_valid(&pipeline);
            assert_eq!(spec_of(&pipeline, "Schedule")["cron"], *line);
            assert_eq!(
                pipeline.warnings.len(),
                *warnings,
                "{line}: {:?}",
                pipeline.warnings
            );
        }
    }

    #[test]
    fn child_names_stay_dns_labels() {
        let name = "a".repeat(63);
        let secret = derived_name(&name, "env");
        assert_eq!(secret.len(), 63);
        assert!(check_dns_label(&secret).is_ok());
        assert_eq!(derived_name("x-y", "env"), "x-y-env");
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
            ("nb", "notebook pipelines"),
        ];
        for (path, words) in cases {
            let error = import_folder(root.path(), path).expect_err(path);
            assert!(error.message.contains(words), "{path:?}: {error}");
        }
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
        assert!(error.message.contains("not a folder inside"), "{error}");

        std::os::unix::fs::symlink(
            outside.path().join("secret.json"),
            root.path().join("etl/pipeline.json"),
        )
        .expect("link");
        let error = import_folder(root.path(), "etl").expect_err("escapes");
        assert!(error.message.contains("symbolic link"), "{error}");
    }
}
