//! Retries: `retry_attempts` and `retry_strategy` become a retry policy. Fast-Flow's
//! `fixed_delay`, `exponential_backoff` (with its `multiplier`) and `custom_schedule`
//! (its `delays` in turn) map onto Flotilla's fixed, exponential and custom backoff
//! exactly, with Fast-Flow's default delays written out and a warning where the meaning
//! changes (a zero delay becomes 1 s).

use serde_json::{Map, Value};

use super::translate::Translator;
use super::values::{describe, get};
use crate::resource::error::ManifestError;
use crate::resource::quantity::parse_duration;
use crate::resource::types::{Backoff, BackoffKind, RetryPolicy};

/// Fast-Flow's retry delays when a strategy leaves them out.
const DEFAULT_DELAY_SECONDS: f64 = 60.0;
const DEFAULT_MAX_DELAY_SECONDS: f64 = 3600.0;

impl Translator<'_> {
    pub(super) fn retries(
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
                let mut backoff = exponential(initial, max);
                if let Some(value) = get(strategy, "multiplier") {
                    let multiplier_field = format!("{field}.multiplier");
                    match value.as_f64() {
                        Some(m) if m.is_finite() && (1.0..=100.0).contains(&m) => {
                            if m != 2.0 {
                                backoff.multiplier = Some(value.to_string());
                            }
                        }
                        _ => {
                            return Err(self.error(
                                &multiplier_field,
                                format!(
                                    "expected a factor between 1 and 100 such as 2, found {}",
                                    describe(value)
                                ),
                            ));
                        }
                    }
                }
                backoff
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
                    Some(_) => Backoff {
                        kind: BackoffKind::Custom,
                        delays: delays.iter().map(|d| seconds_text(*d)).collect(),
                        ..Backoff::default()
                    },
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
            .chain(backoff.delays.iter_mut())
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
}

fn exponential(initial: f64, max: f64) -> Backoff {
    Backoff {
        kind: BackoffKind::Exponential,
        initial: Some(seconds_text(initial)),
        max: Some(seconds_text(max.max(initial))),
        ..Backoff::default()
    }
}

fn fixed(delay: f64) -> Backoff {
    Backoff {
        kind: BackoffKind::Fixed,
        initial: Some(seconds_text(delay)),
        ..Backoff::default()
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
