//! The catalogue of Fast-Flow keys: the ones translated, the ones Fast-Flow knew but
//! Flotilla cannot honour, and those of a `schedules[]` entry. Every other key is
//! reported as a warning (with a spelling suggestion when one is close), never dropped
//! silently.

use serde_json::{Map, Value};

use super::translate::Translator;
use super::values::is_unset;

/// Keys this module maps onto the resources.
const MAPPED_KEYS: &[&str] = &[
    "restart_on_crash",
    "restart_cooldown",
    "restart_interval",
    "downstream_triggers",
    "python_version",
    "mem_hard_limit",
    "cpu_hard_limit",
    "mem_soft_limit",
    "cpu_soft_limit",
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
    "cells",
];

/// Fast-Flow keys Flotilla has no equivalent for, with what they did.
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    (
        "display_name",
        "display names; the pipeline is called by its folder name",
    ),
    ("owner", "owners; record it in `description` or `tags`"),
];

/// Keys of one `schedules[]` entry that map onto a Schedule.
pub(super) const SCHEDULE_ENTRY_KEYS: &[&str] = &[
    "id",
    "schedule_cron",
    "schedule_interval_seconds",
    "schedule_start",
    "schedule_end",
    "default_env",
    "enabled",
];

/// Keys of a `schedules[]` entry that override pipeline settings per schedule.
pub(super) const SCHEDULE_ENTRY_OVERRIDES: &[&str] = &[
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

impl Translator<'_> {
    /// Warns about every key that is not mapped, unless it holds Fast-Flow's default.
    pub(super) fn leftover_keys(&mut self, fields: &Map<String, Value>) {
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
}

/// The known key closest to `key` (a likely typo), if any is within two edits.
fn closest<'k>(key: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    known
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance between `a` and `b`, counted in characters.
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
