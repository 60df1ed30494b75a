//! `downstream_triggers[]` → `spec.triggers`.
//!
//! Fast-Flow's rules, kept: `on_success` defaults to true and `on_failure` to false,
//! either may start the run; `on_route` starts it only on success with that label,
//! never as a fallback; the same pipeline and run configuration start once.
//! `run_config_id` names an entry of the started pipeline's `schedules[]`, which the
//! import made into the Schedule `<pipeline>-<id>`: the run takes that Schedule's
//! pipeline and env.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::pipeline_name;
use super::translate::{Translator, derived_name};
use super::values::{describe, get};
use crate::resource::error::ManifestError;
use crate::resource::types::{DownstreamTrigger, TriggerWhen};

/// Keys of one `downstream_triggers[]` entry.
const ENTRY_KEYS: &[&str] = &[
    "pipeline",
    "on_success",
    "on_failure",
    "on_route",
    "run_config_id",
];

/// The name part a `schedules[]` entry id becomes (`<pipeline>-<label>`).
pub(super) fn config_label(id: &str) -> Result<String, String> {
    let label = pipeline_name(id)?;
    Ok(label[..label.len().min(30)]
        .trim_end_matches('-')
        .to_owned())
}

impl Translator<'_> {
    /// The pipeline's `downstream_triggers`, as triggers.
    pub(super) fn downstream_triggers(
        &mut self,
        fields: &Map<String, Value>,
    ) -> Result<Vec<DownstreamTrigger>, ManifestError> {
        let entries = match get(fields, "downstream_triggers") {
            None => return Ok(Vec::new()),
            Some(Value::Array(entries)) => entries,
            Some(other) => {
                return Err(self.error(
                    "downstream_triggers",
                    format!(
                        "expected a list such as [{{\"pipeline\": \"load\"}}], found {}",
                        describe(other)
                    ),
                ));
            }
        };
        let mut triggers = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, entry) in entries.iter().enumerate() {
            let path = format!("downstream_triggers[{i}]");
            let Value::Object(entry) = entry else {
                return Err(self.error(
                    &path,
                    format!(
                        "expected an object such as {{\"pipeline\": \"load\", \"on_success\": true}}, found {}",
                        describe(entry)
                    ),
                ));
            };
            for key in entry.keys().filter(|k| !ENTRY_KEYS.contains(&k.as_str())) {
                self.warn(
                    &format!("{path}.{key}"),
                    "unknown key, ignored (as Fast-Flow does)",
                );
            }
            let folder = match get(entry, "pipeline") {
                Some(value) => {
                    self.string(&format!("{path}.pipeline"), value, "a pipeline folder name")?
                }
                None => {
                    return Err(self.error(
                        &format!("{path}.pipeline"),
                        "required: the folder name of the pipeline to start",
                    ));
                }
            };
            let pipeline = pipeline_name(&folder).map_err(|problem| {
                self.error(
                    &format!("{path}.pipeline"),
                    format!("{folder:?} cannot name a pipeline: {problem}"),
                )
            })?;
            let flag = |key: &str, default: bool| -> Result<bool, ManifestError> {
                match get(entry, key) {
                    Some(value) => self.boolean(&format!("{path}.{key}"), value),
                    None => Ok(default),
                }
            };
            let (on_success, on_failure) = (flag("on_success", true)?, flag("on_failure", false)?);
            let route = match get(entry, "on_route") {
                Some(value) => {
                    Some(self.string(&format!("{path}.on_route"), value, "a route label")?)
                        .map(|r| r.trim().to_owned())
                        .filter(|r| !r.is_empty())
                }
                None => None,
            };
            let config = match get(entry, "run_config_id") {
                Some(value) => Some(self.string(
                    &format!("{path}.run_config_id"),
                    value,
                    "the id of an entry of the started pipeline's schedules",
                )?)
                .filter(|id| !id.trim().is_empty()),
                None => None,
            };
            let when = match (&route, on_success, on_failure) {
                (Some(_), _, _) | (None, true, false) => TriggerWhen::Succeeded,
                (None, false, true) => TriggerWhen::Failed,
                (None, true, true) => TriggerWhen::Finished,
                (None, false, false) => {
                    self.warn(&path, "ignored: neither on_success nor on_failure is true, so Fast-Flow never started it");
                    continue;
                }
            };
            let schedule = match &config {
                Some(id) => Some(derived_name(
                    &pipeline,
                    &config_label(id).map_err(|problem| {
                        self.error(
                            &format!("{path}.run_config_id"),
                            format!("{id:?} cannot name a run configuration: {problem}"),
                        )
                    })?,
                )),
                None => None,
            };
            if !seen.insert((pipeline.clone(), when, route.clone(), schedule.clone())) {
                self.warn(&path, "ignored: an earlier entry starts the same pipeline on the same outcome (Fast-Flow started it once)");
                continue;
            }
            triggers.push(DownstreamTrigger {
                pipeline,
                when,
                route,
                schedule,
                ..DownstreamTrigger::default()
            });
        }
        Ok(triggers)
    }
}
