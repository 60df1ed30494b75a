//! Schedules: the top-level trigger (`schedule_cron`, `schedule_interval_seconds` or
//! `run_once_at`) and each `schedules[]` entry become a Schedule of the pipeline, in UTC.
//! A schedule has exactly one trigger; entries need a unique `id` and cannot override
//! pipeline settings. Reading date-times and cron lines belongs to `time`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::cron::from_apscheduler;
use super::keys::{SCHEDULE_ENTRY_KEYS, SCHEDULE_ENTRY_OVERRIDES};
use super::pipeline_name;
use super::time::{FastFlowTime, midnight, parse_fast_flow_time, rfc3339};
use super::translate::{Translator, derived_name};
use super::values::{describe, get, is_unset};
use crate::resource::error::ManifestError;
use crate::resource::schedule_time::parse_cron;
use crate::resource::types::{LocalRef, ScheduleSpec, Window};

/// The trigger and window of one schedule, in Flotilla's terms.
#[derive(Default)]
struct Timing {
    cron: Option<String>,
    every: Option<String>,
    at: Option<String>,
    window: Option<Window>,
}

impl Translator<'_> {
    /// The top-level schedule and every `schedules[]` entry, with their names.
    pub(super) fn schedules(
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
                let translated =
                    from_apscheduler(line).map_err(|problem| self.error(&cron_field, problem))?;
                parse_cron(&translated.line).map_err(|problem| self.error(&cron_field, problem))?;
                if translated.changed {
                    self.warn(
                        &cron_field,
                        format!(
                            "{line:?} is written {:?} here: Fast-Flow's scheduler counted weekdays from 0 = Monday and, with both day fields set, ran only on days matching both; the new line fires on the same instants",
                            translated.line
                        ),
                    );
                }
                timing.cron = Some(translated.line);
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
}

/// The Schedule for `pipeline` firing on `timing`, in UTC.
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

impl Translator<'_> {
    /// A schedule made in Fast-Flow's UI: its trigger as `fields` (`schedule_cron`,
    /// `schedule_interval_seconds` or `run_once_at`, with `schedule_start`/`schedule_end`),
    /// read like a pipeline.json trigger.
    pub(super) fn ui_schedule(
        &mut self,
        pipeline: &str,
        fields: &Map<String, Value>,
        enabled: bool,
        env: BTreeMap<String, String>,
    ) -> Result<ScheduleSpec, ManifestError> {
        match self.timing("", fields, true)? {
            Some(timing) => Ok(schedule_spec(pipeline, timing, !enabled, env)),
            None => Err(self.error("trigger_value", "is empty: the schedule has no trigger")),
        }
    }
}
