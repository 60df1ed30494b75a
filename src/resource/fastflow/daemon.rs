//! Daemons: `restart_on_crash`, `restart_cooldown` and `restart_interval` become
//! `spec.restart`. Fast-Flow started a new run after a failed one (after the cooldown,
//! default 60 s) and, on `restart_interval` (a cron line or seconds), cancelled the
//! running one and started anew; here both are further attempts of one run.

use serde_json::{Map, Value};

use super::translate::Translator;
use super::values::{describe, get};
use crate::resource::error::ManifestError;
use crate::resource::schedule_time::parse_cron;
use crate::resource::types::{RestartPolicy, RestartSpec};

/// Fast-Flow's `restart_cooldown` when none is given.
const DEFAULT_COOLDOWN_SECONDS: u64 = 60;

impl Translator<'_> {
    pub(super) fn restart(
        &mut self,
        fields: &Map<String, Value>,
    ) -> Result<Option<RestartSpec>, ManifestError> {
        let on_crash = match get(fields, "restart_on_crash") {
            Some(value) => self.boolean("restart_on_crash", value)?,
            None => false,
        };
        let periodic = match get(fields, "restart_interval") {
            None => None,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|s| s > 0) => {
                Some(format!("{}s", n.as_u64().unwrap_or_default()))
            }
            Some(Value::String(text)) if text.trim().parse::<u64>().is_ok_and(|s| s > 0) => {
                Some(format!("{}s", text.trim()))
            }
            Some(Value::String(text)) if text.trim().is_empty() => None,
            Some(Value::String(text)) => match parse_cron(text.trim()) {
                Ok(_) => Some(text.trim().to_owned()),
                Err(problem) => {
                    return Err(self.error(
                        "restart_interval",
                        format!("{text:?} is neither whole seconds nor a cron line such as \"0 3 * * *\": {problem}"),
                    ));
                }
            },
            Some(other) => {
                return Err(self.error(
                    "restart_interval",
                    format!(
                        "expected whole seconds such as 86400 or a cron line such as \"0 3 * * *\", found {}",
                        describe(other)
                    ),
                ));
            }
        };
        let cooldown = match get(fields, "restart_cooldown") {
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or_default(),
            Some(other) => {
                return Err(self.error(
                    "restart_cooldown",
                    format!(
                        "expected whole seconds such as 60, found {}",
                        describe(other)
                    ),
                ));
            }
            None => DEFAULT_COOLDOWN_SECONDS,
        };
        if !on_crash && periodic.is_none() {
            if get(fields, "restart_cooldown").is_some() {
                self.warn(
                    "restart_cooldown",
                    "ignored: neither restart_on_crash nor restart_interval is set",
                );
            }
            return Ok(None);
        }
        if periodic.is_some() {
            self.warn(
                "restart_interval",
                "the periodic restart starts the next attempt at once (Fast-Flow waited restart_cooldown first)",
            );
            if !on_crash {
                self.warn(
                    "restart_interval",
                    "without restart_on_crash a crash ends the run here; Fast-Flow started it again at the next interval (set restart_on_crash to restart after crashes)",
                );
            }
        }
        if get(fields, "retry_attempts").is_some() {
            self.warn(
                "retry_attempts",
                "ignored: a daemon's attempts restart by restart_on_crash",
            );
        }
        Ok(Some(RestartSpec {
            policy: if on_crash {
                RestartPolicy::OnFailure
            } else {
                RestartPolicy::Never
            },
            // Fast-Flow treated 0 as its default.
            cooldown: Some(format!(
                "{}s",
                if cooldown == 0 {
                    DEFAULT_COOLDOWN_SECONDS
                } else {
                    cooldown
                }
            )),
            periodic,
        }))
    }
}
