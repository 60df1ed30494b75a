//! Strict readers for JSON values: a value of the wrong type is an error naming its
//! field and describing what was found; `null` counts as "not set". They never coerce:
//! `"false"` is not a boolean and `"3"` is not a count.

use serde_json::{Map, Value};

use super::translate::Translator;
use crate::resource::error::ManifestError;

/// A field's value, with `null` meaning "not set".
pub(super) fn get<'m>(fields: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    fields.get(key).filter(|v| !v.is_null())
}

/// True for the values Fast-Flow treats as "not set": null, false, "", [] and {}.
pub(super) fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// A short description of `value` for error messages ("the string \"x\"", "a list").
pub(super) fn describe(value: &Value) -> String {
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

impl Translator<'_> {
    pub(super) fn optional_text(
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

    pub(super) fn string(
        &self,
        field: &str,
        value: &Value,
        what: &str,
    ) -> Result<String, ManifestError> {
        match value {
            Value::String(text) => Ok(text.clone()),
            other => Err(self.error(
                field,
                format!("expected {what} (a string), found {}", describe(other)),
            )),
        }
    }

    pub(super) fn boolean(&self, field: &str, value: &Value) -> Result<bool, ManifestError> {
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

    pub(super) fn count(
        &self,
        field: &str,
        value: &Value,
        what: &str,
    ) -> Result<u32, ManifestError> {
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.error(field, format!("expected {what}, found {}", describe(value))))
    }

    /// A non-negative number of seconds.
    pub(super) fn seconds(&self, field: &str, value: &Value) -> Result<f64, ManifestError> {
        match value.as_f64() {
            Some(seconds) if seconds >= 0.0 && seconds.is_finite() => Ok(seconds),
            _ => Err(self.error(
                field,
                format!("expected seconds such as 60, found {}", describe(value)),
            )),
        }
    }

    pub(super) fn string_list(
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

    pub(super) fn object<'v>(
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
