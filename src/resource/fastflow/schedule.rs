//! Schedules: the top-level trigger (`schedule_cron`, `schedule_interval_seconds` or
//! `run_once_at`) and each `schedules[]` entry become a Schedule of the pipeline, in UTC.
//! A schedule has exactly one trigger; entries need a unique `id` and cannot override
//! pipeline settings. Reading date-times and cron lines belongs to `time`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::cron::from_apscheduler;
use super::downstream::config_label;
use super::keys::{SCHEDULE_ENTRY_KEYS, SCHEDULE_ENTRY_OVERRIDES};
use super::time::{FastFlowTime, midnight, parse_fast_flow_time, rfc3339};
use super::translate::{Translator, derived_name};
use super::values::{describe, get, is_unset};
use crate::resource::error::ManifestError;
use crate::resource::schedule_time::parse_cron;
use crate::resource::types::{LocalRef, ResourceLimits, RetryPolicy, ScheduleSpec, Window};

/// The trigger and window of one schedule, in Flotilla's terms.
#[derive(Default)]
struct Timing {
    cron: Option<String>,
    every: Option<String>,
    at: Option<String>,
    window: Option<Window>,
}

/// A `schedules[]` entry with settings of its own (limits, timeout, retries,
/// `encrypted_env`, `webhook_key`): it becomes a Pipeline of its own, `<pipeline>-<id>`,
/// the pipeline's spec with these over it, and its Schedule runs that Pipeline. Its
/// `default_env` goes on that Pipeline too, so a webhook run of the entry gets it.
pub(super) struct RunConfig {
    /// The Pipeline's name.
    pub(super) name: String,
    /// The entry's `id`.
    pub(super) id: String,
    pub(super) env: BTreeMap<String, String>,
    pub(super) resources: Option<ResourceLimits>,
    /// `Some(None)`: the entry's `timeout: 0`, no timeout for its runs.
    pub(super) timeout: Option<Option<String>>,
    pub(super) retries: Option<RetryPolicy>,
    pub(super) encrypted_env: BTreeMap<String, String>,
    pub(super) webhook_key: Option<String>,
}

/// A Schedule's name and spec.
pub(super) type NamedSchedule = (String, ScheduleSpec);

/// Keys of an entry that only mean something with a `mem_hard_limit`/`cpu_hard_limit`
/// reader: the soft limits are noted like the pipeline's.
const SOFT_LIMITS: &[&str] = &["cpu_soft_limit", "mem_soft_limit"];

impl Translator<'_> {
    /// The top-level schedule and every `schedules[]` entry, with their names, and the
    /// entries that need a Pipeline of their own.
    pub(super) fn schedules(
        &mut self,
        pipeline: &str,
        fields: &Map<String, Value>,
        suspend: bool,
    ) -> Result<(Vec<NamedSchedule>, Vec<RunConfig>), ManifestError> {
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
        let mut configs = Vec::new();
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
            let label = config_label(&id).map_err(|_| {
                self.error(
                    &format!("{path}.id"),
                    "required: a name such as \"prod\" (Fast-Flow skipped entries without one)",
                )
            })?;
            if !seen.insert(label.clone()) {
                return Err(self.error(
                    &format!("{path}.id"),
                    format!("{id:?} is used by an earlier entry; ids must be unique"),
                ));
            }
            for (key, value) in entry {
                let key_path = format!("{path}.{key}");
                if SOFT_LIMITS.contains(&key.as_str()) {
                    if !is_unset(value) {
                        self.warn(&key_path, "ignored: Flotilla does not support soft limits (monitoring thresholds); only the hard limits are enforced");
                    }
                } else if !SCHEDULE_ENTRY_KEYS.contains(&key.as_str())
                    && !SCHEDULE_ENTRY_OVERRIDES.contains(&key.as_str())
                {
                    self.warn(&key_path, "unknown key, ignored (as Fast-Flow does)");
                }
            }
            let timing = self.timing(&format!("{path}."), entry, false)?;
            let entry_enabled = match get(entry, "enabled") {
                Some(value) => self.boolean(&format!("{path}.enabled"), value)?,
                None => true,
            };
            let env = match get(entry, "default_env") {
                Some(value) => self.env_map(&format!("{path}.default_env"), value)?,
                None => BTreeMap::new(),
            };
            let name = derived_name(pipeline, &label);
            let config = self.run_config(&path, &name, &id, fields, entry, env.clone())?;
            let Some(timing) = timing else {
                if config.as_ref().is_some_and(|c| c.webhook_key.is_some()) {
                    configs.extend(config); // run by its webhook only
                    continue;
                }
                return Err(self.error(
                    &path,
                    "sets neither schedule_cron nor schedule_interval_seconds (Fast-Flow skipped such entries); add one or remove the entry",
                ));
            };
            let (target, env) = match config {
                Some(config) => {
                    let target = config.name.clone();
                    configs.push(config);
                    (target, BTreeMap::new())
                }
                None => (pipeline.to_owned(), env),
            };
            schedules.push((
                name,
                schedule_spec(&target, timing, suspend || !entry_enabled, env),
            ));
        }
        Ok((schedules, configs))
    }

    /// The entry's own settings, read with the pipeline's readers over the pipeline's
    /// keys (a `retry_strategy` of the entry uses the pipeline's `retry_attempts` unless
    /// it sets its own); `None` when it sets none.
    fn run_config(
        &mut self,
        path: &str,
        name: &str,
        id: &str,
        pipeline_fields: &Map<String, Value>,
        entry: &Map<String, Value>,
        env: BTreeMap<String, String>,
    ) -> Result<Option<RunConfig>, ManifestError> {
        let own = |key: &str| get(entry, key).is_some_and(|v| !is_unset(v));
        if !SCHEDULE_ENTRY_OVERRIDES
            .iter()
            .any(|key| own(key) && !SOFT_LIMITS.contains(key))
        {
            return Ok(None);
        }
        let mut merged = Map::new();
        for key in [
            "retry_attempts",
            "retry_strategy",
            "mem_hard_limit",
            "cpu_hard_limit",
        ] {
            if let Some(value) = get(entry, key).or_else(|| get(pipeline_fields, key)) {
                merged.insert(key.to_owned(), value.clone());
            }
        }
        if let Some(value) = get(entry, "timeout") {
            merged.insert("timeout".to_owned(), value.clone());
        }
        self.prefix = format!("{path}.");
        let read = (|| -> Result<RunConfig, ManifestError> {
            let resources = if own("mem_hard_limit") || own("cpu_hard_limit") {
                self.resources(&merged)?
            } else {
                None
            };
            let timeout = if own("timeout") {
                Some(self.timeout(&merged)?)
            } else {
                None
            };
            let retries = if own("retry_attempts") || own("retry_strategy") {
                self.retries(&merged)?
            } else {
                None
            };
            let encrypted_env = match get(entry, "encrypted_env") {
                Some(value) => self.encrypted_env("encrypted_env", value)?,
                None => BTreeMap::new(),
            };
            let webhook_key = self.optional_text(entry, "webhook_key", "a webhook key")?;
            Ok(RunConfig {
                name: name.to_owned(),
                id: id.to_owned(),
                env,
                resources,
                timeout,
                retries,
                encrypted_env,
                webhook_key,
            })
        })();
        self.prefix.clear();
        read.map(Some)
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
