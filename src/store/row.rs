//! The mapping between [`StoredObject`] and a row of the `objects` table.
//!
//! Both backends share one row shape: JSON as TEXT, timestamps as BIGINT milliseconds.
//! This module owns that shape (column list, encoding, decoding) and nothing else.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::backend::Param;
use super::error::StoreError;
use crate::resource::kind::Kind;
use crate::resource::object::{ObjectKey, RawObject, StoredObject};

/// The columns of `objects`, in the order of [`object_params`], as a literal for `concat!`.
macro_rules! object_columns {
    () => {
        "kind, namespace, name, uid, generation, resource_version, managed_by, \
         labels, annotations, spec, status, created_at, updated_at"
    };
}
pub(super) use object_columns;

/// Number of columns listed by [`object_columns!`].
pub(super) const COLUMN_COUNT: usize = 13;

/// One row of `objects` as read back from either backend, or from an aggregated page
/// (a JSON array of the columns in order).
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(super) struct ObjectRow {
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    generation: i64,
    resource_version: i64,
    managed_by: Option<String>,
    labels: String,
    annotations: String,
    spec: String,
    status: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl ObjectRow {
    /// Parses the row; a row that does not parse is [`StoreError::Corrupt`].
    pub(super) fn into_object(self) -> Result<StoredObject, StoreError> {
        parse(&self.into_raw()?)
    }

    /// The row as raw JSON text, without parsing spec or status (for list responses and
    /// the change feed).
    pub(super) fn into_raw(self) -> Result<RawObject, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: format!("{}/{}/{}", self.kind, self.namespace, self.name),
            reason,
        };
        let kind = Kind::from_kind_field(&self.kind)
            .ok_or_else(|| corrupt(format!("unknown kind {:?}", self.kind)))?;
        let created_at = from_millis(self.created_at)
            .ok_or_else(|| corrupt(format!("created_at {} is out of range", self.created_at)))?;
        let updated_at = from_millis(self.updated_at)
            .ok_or_else(|| corrupt(format!("updated_at {} is out of range", self.updated_at)))?;
        Ok(RawObject {
            key: ObjectKey {
                kind,
                namespace: self.namespace,
                name: self.name,
            },
            uid: self.uid,
            generation: self.generation,
            resource_version: self.resource_version,
            managed_by: self.managed_by,
            labels: self.labels,
            annotations: self.annotations,
            spec: self.spec,
            status: self.status,
            created_at,
            updated_at,
        })
    }
}

/// Parses the JSON parts of a row; one that does not parse is [`StoreError::Corrupt`].
pub(super) fn parse(raw: &RawObject) -> Result<StoredObject, StoreError> {
    raw.to_object().map_err(|reason| StoreError::Corrupt {
        key: raw.key.to_string(),
        reason,
    })
}

/// The values of every column of `object`, in [`object_columns!`] order.
pub(super) fn object_params(object: &RawObject, params: &mut Vec<Param>) {
    params.extend(key_params(&object.key));
    params.push(Param::Text(object.uid.clone()));
    params.push(Param::Int(object.generation));
    params.push(Param::Int(object.resource_version));
    params.push(Param::OptText(object.managed_by.clone()));
    params.push(Param::Text(object.labels.clone()));
    params.push(Param::Text(object.annotations.clone()));
    params.push(Param::Text(object.spec.clone()));
    params.push(Param::OptText(object.status.clone()));
    params.push(Param::Int(object.created_at.timestamp_millis()));
    params.push(Param::Int(object.updated_at.timestamp_millis()));
}

/// `$1, $2, $3` of every statement that addresses one object: kind, namespace, name.
pub(super) fn key_params(key: &ObjectKey) -> [Param; 3] {
    [
        Param::Text(key.kind.as_str().to_owned()),
        Param::Text(key.namespace.clone()),
        Param::Text(key.name.clone()),
    ]
}

/// JSON text of a value. `serde_json` keeps object keys sorted, so equal values give equal
/// text and the store can compare specs as strings (a unit test below guards this).
pub(super) fn json_text(value: &Value) -> String {
    value.to_string()
}

/// JSON text of a label or annotation map (a `BTreeMap`, so sorted as well).
pub(super) fn map_json(map: &BTreeMap<String, String>) -> String {
    // Serialising a map of strings to a string cannot fail.
    serde_json::to_string(map).unwrap_or_else(|_| String::from("{}"))
}

/// The current time, truncated to the milliseconds the store keeps, so that what a write
/// returns equals what a later read returns.
pub(super) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    from_millis(now.timestamp_millis()).unwrap_or(now)
}

fn from_millis(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_text_is_canonical() {
        // Fails if a dependency turns on serde_json's `preserve_order`, which would make
        // generation bumps depend on key order.
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).expect("valid JSON");
        let b = json!({"a": {"c": 3, "d": 2}, "b": 1});
        assert_eq!(json_text(&a), json_text(&b));
        assert_eq!(json_text(&a), r#"{"a":{"c":3,"d":2},"b":1}"#);
    }

    #[test]
    fn params_follow_the_column_list() {
        let object = RawObject {
            key: ObjectKey::new(Kind::Run, "default", "r1"),
            uid: "u".into(),
            generation: 1,
            resource_version: 1,
            managed_by: None,
            labels: map_json(&BTreeMap::new()),
            annotations: "{}".into(),
            spec: json_text(&json!({})),
            status: None,
            created_at: now(),
            updated_at: now(),
        };
        let mut params = Vec::new();
        object_params(&object, &mut params);
        assert_eq!(params.len(), COLUMN_COUNT);
        assert_eq!(object_columns!().split(',').count(), COLUMN_COUNT);
    }
}
