//! Run limits: `mem_hard_limit` and `cpu_hard_limit` as container resources,
//! `mem_soft_limit` and `cpu_soft_limit` as the soft limits notifiers report, `timeout`
//! and `max_instances`. Fast-Flow's "no limit" values (`timeout: 0`, `max_instances` ≤ 0)
//! are left out rather than translated.

use serde_json::{Map, Value};

use super::translate::Translator;
use super::values::{describe, get};
use crate::resource::error::ManifestError;
use crate::resource::quantity::{parse_cpus, parse_duration, parse_memory};
use crate::resource::types::ResourceLimits;

impl Translator<'_> {
    pub(super) fn resources(
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
        let memory_soft_limit = match get(fields, "mem_soft_limit") {
            Some(value) => self.memory("mem_soft_limit", value)?,
            None => None,
        };
        let cpus_soft_limit = match get(fields, "cpu_soft_limit") {
            Some(value) => self.cpus("cpu_soft_limit", value)?,
            None => None,
        };
        let any = memory.is_some()
            || cpus.is_some()
            || memory_soft_limit.is_some()
            || cpus_soft_limit.is_some();
        Ok(any.then_some(ResourceLimits {
            memory,
            cpus,
            pids: None,
            memory_soft_limit,
            cpus_soft_limit,
        }))
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
    pub(super) fn timeout(
        &self,
        fields: &Map<String, Value>,
    ) -> Result<Option<String>, ManifestError> {
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

    pub(super) fn max_instances(
        &self,
        fields: &Map<String, Value>,
    ) -> Result<Option<u32>, ManifestError> {
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
