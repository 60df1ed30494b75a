//! The translator: turns the parsed keys of one metadata file into the Kubernetes-shaped
//! documents (the Secret for `encrypted_env`, the Pipeline, then its Schedules), each
//! annotated as imported from Fast-Flow.
//!
//! This file holds the [`Translator`] itself, how it locates errors and warnings, and the
//! assembly of the documents; the per-key readers are `impl Translator` blocks in the
//! sibling files (`limits`, `retry`, `env`, `schedule`, `time`, `values`, `keys`). It
//! stops at the first error and never reads files.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::read::KeyPositions;
use super::values::{describe, get};
use super::{
    Entrypoints, IMPORTED_FROM_ANNOTATION, NOTEBOOK, RUN_CONFIG_ANNOTATION, RUN_CONFIGS_ANNOTATION,
    SHARED_SECRETS_NAME,
};
use crate::resource::error::ManifestError;
use crate::resource::kind::Kind;
use crate::resource::manifest::Position;
use crate::resource::types::{
    NotebookCell, NotebookSpec, PipelineSpec, SecretRef, SecretSpec, SourceRef,
};
use crate::resource::validate::envelope;

/// Translates one metadata file, collecting warnings and stopping at the first error.
pub(super) struct Translator<'a> {
    pub(super) file: &'a str,
    pub(super) positions: KeyPositions,
    pub(super) warnings: Vec<String>,
    /// Put before every field named in errors and warnings while a `schedules[]` entry
    /// is read with the pipeline's readers (`schedules[0].`); empty otherwise.
    pub(super) prefix: String,
}

impl Translator<'_> {
    /// An error about `field` (a JSON path such as `retry_strategy.delay`).
    pub(super) fn error(&self, field: &str, message: impl Into<String>) -> ManifestError {
        let field = format!("{}{field}", self.prefix);
        let at = self.position(&field);
        ManifestError {
            line: at.map(|p| p.line),
            column: at.map(|p| p.column),
            field: Some(field),
            ..ManifestError::file(self.file, message)
        }
    }

    /// A warning about `field`, located at the line of its top-level key.
    pub(super) fn warn(&mut self, field: &str, message: impl AsRef<str>) {
        let field = format!("{}{field}", self.prefix);
        let field = field.as_str();
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

    /// The documents of the pipeline called `name` whose code is in `folder`: its Secret
    /// (if any), the Pipeline, then its Schedules.
    pub(super) fn translate(
        &mut self,
        name: &str,
        folder: &str,
        fields: &Map<String, Value>,
        entrypoints: Entrypoints,
    ) -> Result<Vec<Value>, ManifestError> {
        self.leftover_keys(fields);
        let notebook = self.is_notebook(fields, entrypoints)?;
        let enabled = match get(fields, "enabled") {
            Some(value) => self.boolean("enabled", value)?,
            None => true,
        };
        let mut spec = PipelineSpec {
            // Fast-Flow mounted the folder writable: scripts wrote beside main.py.
            source: Some(SourceRef {
                path: folder.to_owned(),
                writable: true,
            }),
            python: self.python(fields)?,
            resources: self.resources(fields)?,
            timeout: self.timeout(fields)?,
            retries: self.retries(fields)?,
            restart: self.restart(fields)?,
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
            triggers: self.downstream_triggers(fields)?,
            entrypoint: notebook.then(|| NOTEBOOK.to_owned()),
            notebook: if notebook {
                self.notebook_cells(fields)?
            } else {
                None
            },
            ..PipelineSpec::default()
        };

        if spec.restart.is_some() {
            spec.retries = None;
        }
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
                        "these keys are read from the Secret {SHARED_SECRETS_NAME:?}, which stands in for Fast-Flow's global secret store: `flotilla import fastflow` makes it from that store, or create it with the keys {}",
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
        let (schedules, configs) = self.schedules(name, fields, !enabled)?;
        let mut pipelines = Vec::new();
        for config in configs {
            let mut derived = spec.clone();
            derived.env.extend(config.env);
            if config.resources.is_some() {
                derived.resources = config.resources;
            }
            if let Some(timeout) = config.timeout {
                derived.timeout = timeout;
            }
            if config.retries.is_some() && derived.restart.is_none() {
                derived.retries = config.retries;
            }
            derived.webhook_key = config.webhook_key;
            if !config.encrypted_env.is_empty() {
                let secret_name = derived_name(&config.name, "env");
                derived.secret_refs.push(SecretRef {
                    name: secret_name.clone(),
                    ..SecretRef::default()
                });
                let secret = SecretSpec {
                    encrypted_data: config.encrypted_env,
                    ..SecretSpec::default()
                };
                values.push(self.document(Kind::Secret, &secret_name, &secret)?);
            }
            let mut document = self.document(Kind::Pipeline, &config.name, &derived)?;
            document["metadata"]["annotations"][RUN_CONFIG_ANNOTATION] = Value::String(config.id);
            pipelines.push(document);
        }
        let mut base = self.document(Kind::Pipeline, name, &spec)?;
        if !pipelines.is_empty() {
            let names: Vec<&str> = pipelines
                .iter()
                .filter_map(|p| p["metadata"]["name"].as_str())
                .collect();
            base["metadata"]["annotations"][RUN_CONFIGS_ANNOTATION] =
                Value::String(names.join(","));
        }
        values.push(base);
        values.extend(pipelines);
        for (schedule_name, schedule) in schedules {
            values.push(self.document(Kind::Schedule, &schedule_name, &schedule)?);
        }
        Ok(values)
    }

    pub(super) fn document(
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

    /// Whether the pipeline runs `main.ipynb`: `type: notebook`, or a folder with a
    /// notebook and no `main.py` (Fast-Flow needed the type; the folder says it too).
    fn is_notebook(
        &mut self,
        fields: &Map<String, Value>,
        entrypoints: Entrypoints,
    ) -> Result<bool, ManifestError> {
        let Some(value) = get(fields, "type") else {
            return Ok(!entrypoints.script);
        };
        let kind = self.string("type", value, "\"script\" or \"notebook\"")?;
        match kind.trim().to_ascii_lowercase().as_str() {
            "" | "script" if entrypoints.script => Ok(false),
            "" | "script" => Err(self.error(
                "type",
                "is \"script\" but the folder has no main.py, only main.ipynb: set \"type\": \"notebook\" or add main.py",
            )),
            "notebook" if entrypoints.notebook => Ok(true),
            "notebook" => Err(self.error(
                "type",
                format!("is \"notebook\" but the folder has no {NOTEBOOK}: add it, or remove \"type\" to run main.py"),
            )),
            _ => {
                self.warn("type", format!("{kind:?} is not a Fast-Flow type; treated as \"script\" (main.py), as Fast-Flow does"));
                Ok(!entrypoints.script)
            }
        }
    }

    /// `cells`: per code cell, `retries` and `delay_seconds` (Fast-Flow's default 1 s).
    fn notebook_cells(
        &mut self,
        fields: &Map<String, Value>,
    ) -> Result<Option<NotebookSpec>, ManifestError> {
        let Some(value) = get(fields, "cells") else {
            return Ok(None);
        };
        let Value::Array(entries) = value else {
            return Err(self.error(
                "cells",
                format!(
                    "expected a list such as [{{\"retries\": 2, \"delay_seconds\": 5}}], found {}",
                    describe(value)
                ),
            ));
        };
        let mut cells = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let path = format!("cells[{i}]");
            let entry = self.object(&path, entry, "{\"retries\": 2, \"delay_seconds\": 5}")?;
            let retries = match get(entry, "retries") {
                Some(value) => self.count(
                    &format!("{path}.retries"),
                    value,
                    "a whole number of retries such as 2",
                )?,
                None => 0,
            };
            let delay = match get(entry, "delay_seconds") {
                Some(value) => match value.as_f64() {
                    Some(seconds) if seconds >= 0.0 && seconds.fract() == 0.0 => {
                        format!("{}s", seconds as u64)
                    }
                    Some(seconds) if seconds >= 0.0 => {
                        format!("{}ms", (seconds * 1000.0).round() as u64)
                    }
                    _ => {
                        return Err(self.error(
                            &format!("{path}.delay_seconds"),
                            format!("expected seconds such as 5, found {}", describe(value)),
                        ));
                    }
                },
                None => "1s".to_owned(),
            };
            cells.push(NotebookCell {
                retries,
                delay: Some(delay),
            });
        }
        Ok(Some(NotebookSpec { cells }))
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
}

/// `<base>-<suffix>`, shortening `base` so the result stays a DNS-1123 label.
pub(super) fn derived_name(base: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(suffix.len() + 1);
    let base = base[..base.len().min(room)].trim_end_matches('-');
    format!("{base}-{suffix}")
}
