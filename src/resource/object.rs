//! The kind-independent shape of a stored object and of a change to the store.
//!
//! The store keeps `spec` and `status` as JSON; typed access goes through
//! [`crate::resource::types`]. Nothing here knows about SQL or HTTP.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::kind::{API_VERSION, Kind};

/// The namespace used when a manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Identifies one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    /// Kind of the object.
    pub kind: Kind,
    /// Namespace, `default` unless given.
    pub namespace: String,
    /// DNS-1123 label.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    /// `Kind/namespace/name`, the way errors name an object.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// An object as the store holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredObject {
    /// Kind, namespace and name.
    pub key: ObjectKey,
    /// Server-assigned unique id (UUID v4).
    pub uid: String,
    /// Bumped on every change of `spec`, never on status or metadata changes.
    pub generation: i64,
    /// Store-wide revision of the last write; a write quoting an older one is a conflict.
    pub resource_version: i64,
    /// Field manager that declared the object (`cli`, `dir:<path>`, `git:<url>#<branch>`).
    pub managed_by: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Desired state as written by users.
    pub spec: Value,
    /// Observed state as written by controllers.
    pub status: Option<Value>,
    /// When the object was created.
    pub created_at: DateTime<Utc>,
    /// When the object (spec, metadata or status) was last written.
    pub updated_at: DateTime<Utc>,
}

/// A stored spec, status or label map that does not decode as this version expects
/// (a corrupt row, or one written by a newer schema). Never replaced by a default: a
/// default written back would silently overwrite what is stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: the stored {part} cannot be read by this version of Flotilla: {message}")]
pub struct DecodeError {
    /// The object.
    pub key: ObjectKey,
    /// `spec`, `status` or `labels`.
    pub part: &'static str,
    /// What the decoder said.
    pub message: String,
}

impl DecodeError {
    fn new(key: &ObjectKey, part: &'static str, error: impl fmt::Display) -> Self {
        Self {
            key: key.clone(),
            part,
            message: error.to_string(),
        }
    }
}

/// Decodes stored JSON text of `key`'s `part`.
pub fn decode_text<T: serde::de::DeserializeOwned>(
    key: &ObjectKey,
    part: &'static str,
    text: &str,
) -> Result<T, DecodeError> {
    serde_json::from_str(text).map_err(|e| DecodeError::new(key, part, e))
}

impl StoredObject {
    /// The spec as its kind's type.
    pub fn spec_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, DecodeError> {
        T::deserialize(&self.spec).map_err(|e| DecodeError::new(&self.key, "spec", e))
    }

    /// The status as its kind's type; the type's default when none was written yet.
    pub fn status_as<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, DecodeError> {
        match &self.status {
            None | Some(Value::Null) => Ok(T::default()),
            Some(status) => {
                T::deserialize(status).map_err(|e| DecodeError::new(&self.key, "status", e))
            }
        }
    }

    /// The Kubernetes-shaped document for the API and `-o yaml|json`.
    pub fn to_manifest(&self) -> Value {
        let mut metadata = Map::new();
        metadata.insert("name".into(), json!(self.key.name));
        metadata.insert("namespace".into(), json!(self.key.namespace));
        metadata.insert("uid".into(), json!(self.uid));
        metadata.insert("generation".into(), json!(self.generation));
        metadata.insert(
            "resourceVersion".into(),
            json!(self.resource_version.to_string()),
        );
        metadata.insert(
            "creationTimestamp".into(),
            json!(self.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        if let Some(manager) = &self.managed_by {
            metadata.insert("managedBy".into(), json!(manager));
        }
        if !self.labels.is_empty() {
            metadata.insert("labels".into(), json!(self.labels));
        }
        if !self.annotations.is_empty() {
            metadata.insert("annotations".into(), json!(self.annotations));
        }
        let mut doc = Map::new();
        doc.insert("apiVersion".into(), json!(API_VERSION));
        doc.insert("kind".into(), json!(self.key.kind.as_str()));
        doc.insert("metadata".into(), Value::Object(metadata));
        doc.insert("spec".into(), self.spec.clone());
        if let Some(status) = &self.status {
            doc.insert("status".into(), status.clone());
        }
        Value::Object(doc)
    }
}

/// An object whose JSON parts are still the stored text, for writing list responses
/// without parsing and re-serialising every spec.
#[derive(Clone, Debug, PartialEq)]
pub struct RawObject {
    /// Kind, namespace and name.
    pub key: ObjectKey,
    /// uid.
    pub uid: String,
    /// generation.
    pub generation: i64,
    /// resourceVersion.
    pub resource_version: i64,
    /// Field manager.
    pub managed_by: Option<String>,
    /// Labels as JSON text (an object).
    pub labels: String,
    /// Annotations as JSON text (an object).
    pub annotations: String,
    /// Spec as JSON text.
    pub spec: String,
    /// Status as JSON text.
    pub status: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Time of the last write.
    pub updated_at: DateTime<Utc>,
}

impl RawObject {
    /// The spec as its kind's type.
    pub fn spec_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, DecodeError> {
        decode_text(&self.key, "spec", &self.spec)
    }

    /// The status as its kind's type; the type's default when none was written yet.
    pub fn status_as<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, DecodeError> {
        match self.status.as_deref() {
            None | Some("null") => Ok(T::default()),
            Some(text) => decode_text(&self.key, "status", text),
        }
    }

    /// The labels.
    pub fn labels_map(&self) -> Result<BTreeMap<String, String>, DecodeError> {
        decode_text(&self.key, "labels", &self.labels)
    }

    /// Parses the JSON parts; the error names the part that does not parse.
    pub fn to_object(&self) -> Result<StoredObject, String> {
        let labels = serde_json::from_str(&self.labels)
            .map_err(|e| format!("labels are not a string map: {e}"))?;
        let annotations = serde_json::from_str(&self.annotations)
            .map_err(|e| format!("annotations are not a string map: {e}"))?;
        let spec =
            serde_json::from_str(&self.spec).map_err(|e| format!("spec is not JSON: {e}"))?;
        let status = match &self.status {
            Some(text) => {
                Some(serde_json::from_str(text).map_err(|e| format!("status is not JSON: {e}"))?)
            }
            None => None,
        };
        Ok(StoredObject {
            key: self.key.clone(),
            uid: self.uid.clone(),
            generation: self.generation,
            resource_version: self.resource_version,
            managed_by: self.managed_by.clone(),
            labels,
            annotations,
            spec,
            status,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }

    /// Appends the same document as [`StoredObject::to_manifest`] as JSON text.
    pub fn write_manifest(&self, out: &mut String) {
        let quote = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned());
        out.push_str(r#"{"apiVersion":"#);
        out.push_str(&quote(API_VERSION));
        out.push_str(r#","kind":"#);
        out.push_str(&quote(self.key.kind.as_str()));
        out.push_str(r#","metadata":{"#);
        if self.annotations != "{}" {
            out.push_str(r#""annotations":"#);
            out.push_str(&self.annotations);
            out.push(',');
        }
        out.push_str(r#""creationTimestamp":"#);
        out.push_str(&quote(
            &self.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        ));
        out.push_str(&format!(r#","generation":{}"#, self.generation));
        if self.labels != "{}" {
            out.push_str(r#","labels":"#);
            out.push_str(&self.labels);
        }
        if let Some(manager) = &self.managed_by {
            out.push_str(r#","managedBy":"#);
            out.push_str(&quote(manager));
        }
        out.push_str(r#","name":"#);
        out.push_str(&quote(&self.key.name));
        out.push_str(r#","namespace":"#);
        out.push_str(&quote(&self.key.namespace));
        out.push_str(&format!(
            r#","resourceVersion":"{}""#,
            self.resource_version
        ));
        out.push_str(r#","uid":"#);
        out.push_str(&quote(&self.uid));
        out.push_str(r#"},"spec":"#);
        out.push_str(&self.spec);
        if let Some(status) = &self.status {
            out.push_str(r#","status":"#);
            out.push_str(status);
        }
        out.push('}');
    }
}

/// What a source declares for one object: the user-owned part only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesiredObject {
    /// Kind, namespace and name.
    pub key: ObjectKey,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Spec, already validated and normalised.
    pub spec: JsonText,
}

/// A JSON value kept as text in the store's canonical form: `serde_json` writes object
/// keys sorted and without spaces, so equal values have equal text (a test in the store
/// guards this). The text takes a tenth of the memory of the parsed tree, which matters
/// when an apply holds thousands of declared objects at once. Serialises as the value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonText(Box<str>);

impl JsonText {
    /// The canonical text of `value`.
    pub fn of(value: &Value) -> Self {
        Self(value.to_string().into_boxed_str())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value, parsed anew.
    pub fn to_value(&self) -> Value {
        // The text was written by `Value::to_string`, so it always parses.
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

impl From<Value> for JsonText {
    fn from(value: Value) -> Self {
        Self::of(&value)
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| Self::of(&value))
    }
}

/// One write in an atomic batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Create a new object; fails with `AlreadyExists` if the key is taken.
    Create {
        /// The object.
        object: DesiredObject,
        /// Field manager recorded on the object.
        managed_by: Option<String>,
        /// Initial status (runs are created with `phase: Pending`).
        status: Option<Value>,
    },
    /// Replace spec, labels, annotations and manager of an existing object.
    Update {
        /// The new desired state.
        object: DesiredObject,
        /// Field manager recorded on the object.
        managed_by: Option<String>,
        /// The resourceVersion the writer saw; anything else is a conflict.
        expected_resource_version: i64,
    },
    /// Delete an object.
    Delete {
        /// The object.
        key: ObjectKey,
        /// The resourceVersion the writer saw; anything else is a conflict.
        expected_resource_version: i64,
    },
}

impl Change {
    /// The object this change touches.
    pub fn key(&self) -> &ObjectKey {
        match self {
            Change::Create { object, .. } | Change::Update { object, .. } => &object.key,
            Change::Delete { key, .. } => key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_manifests_equal_parsed_ones() {
        let object = StoredObject {
            key: ObjectKey::new(Kind::Pipeline, "default", "etl"),
            uid: "u-1".into(),
            generation: 3,
            resource_version: 42,
            managed_by: Some("dir:/srv/p \"x\"".into()),
            labels: BTreeMap::from([("team".into(), "data".into())]),
            annotations: BTreeMap::new(),
            spec: json!({ "python": "3.12", "env": { "A": "1" } }),
            status: Some(json!({ "conditions": [] })),
            created_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            updated_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        };
        let raw = RawObject {
            key: object.key.clone(),
            uid: object.uid.clone(),
            generation: object.generation,
            resource_version: object.resource_version,
            managed_by: object.managed_by.clone(),
            labels: serde_json::to_string(&object.labels).unwrap_or_default(),
            annotations: "{}".into(),
            spec: object.spec.to_string(),
            status: object.status.as_ref().map(Value::to_string),
            created_at: object.created_at,
            updated_at: object.updated_at,
        };
        let mut text = String::new();
        raw.write_manifest(&mut text);
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed, object.to_manifest());
        assert_eq!(text, object.to_manifest().to_string());
        assert_eq!(raw.to_object(), Ok(object));
    }
}
