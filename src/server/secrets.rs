//! Secret routes beyond plain CRUD: set keys (values encrypted on arrival), list keys
//! with sizes (never values) and re-encrypt everything with the newest key.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::resource::types::SecretSpec;
use crate::resource::validate::{check_dns_label, is_env_name};
use crate::resource::{Change, DesiredObject, Kind, ObjectKey};
use crate::secrets::Keyring;
use crate::store::StoreError;

fn keyring(state: &AppState) -> Result<&Keyring, ApiError> {
    state.keyring.as_deref().ok_or_else(|| {
        ApiError::bad_request("secrets.key.invalid", "the server has no ENCRYPTION_KEY")
    })
}

/// Body of `PUT …/secrets/{name}/data`.
#[derive(Debug, Deserialize)]
pub(super) struct SetData {
    /// Key → plaintext value; encrypted before it is stored.
    data: BTreeMap<String, String>,
}

/// `PUT …/namespaces/{ns}/secrets/{name}/data`: creates the secret or sets the given
/// keys, keeping the others. Answers keys and sizes, never values.
pub(super) async fn set_data(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<SetData>,
) -> Result<Json<Value>, ApiError> {
    check_dns_label(&name)
        .map_err(|p| ApiError::bad_request("validation.failed", format!("secret name {p}")))?;
    for key in body.data.keys() {
        if !is_env_name(key) {
            return Err(ApiError::bad_request(
                "validation.failed",
                format!(
                    "key {key:?} is not a valid environment variable name (letters, digits, _)"
                ),
            ));
        }
    }
    let keyring = keyring(&state)?;
    let key = ObjectKey::new(Kind::Secret, namespace, name);
    for _ in 0..5 {
        let existing = state.store.get(&key).await?;
        // An unreadable stored secret is an error: a default would drop its keys.
        let mut spec: SecretSpec = existing
            .as_ref()
            .map(|s| s.spec_as())
            .transpose()?
            .unwrap_or_default();
        for (k, v) in &body.data {
            spec.encrypted_data.insert(k.clone(), keyring.encrypt(v));
        }
        let object = DesiredObject {
            key: key.clone(),
            labels: existing
                .as_ref()
                .map(|s| s.labels.clone())
                .unwrap_or_default(),
            annotations: existing
                .as_ref()
                .map(|s| s.annotations.clone())
                .unwrap_or_default(),
            spec: serde_json::to_value(&spec).unwrap_or_default().into(),
        };
        let change = match &existing {
            Some(stored) => Change::Update {
                object,
                managed_by: stored.managed_by.clone(),
                expected_resource_version: stored.resource_version,
            },
            None => Change::Create {
                object,
                managed_by: Some("cli".to_owned()),
                status: None,
            },
        };
        match state.store.commit(vec![change]).await {
            Ok(_) => return describe_keys(&state, &key).await,
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::bad_request(
        "resource.conflict",
        "the secret kept changing; retry",
    ))
}

/// `GET …/namespaces/{ns}/secrets/{name}/keys`: key names, plaintext sizes and
/// timestamps, and whether each decrypts with the configured keys.
pub(super) async fn keys(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    describe_keys(&state, &ObjectKey::new(Kind::Secret, namespace, name)).await
}

async fn describe_keys(state: &AppState, key: &ObjectKey) -> Result<Json<Value>, ApiError> {
    let secret = state
        .store
        .get(key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
    let spec: SecretSpec = secret.spec_as()?;
    let keyring = keyring(state)?;
    let keys: Vec<Value> = spec
        .encrypted_data
        .iter()
        .map(|(name, token)| {
            let what = format!("{key} key {name}");
            match keyring.decrypt(token, &what) {
                Ok(value) => json!({ "key": name, "size": value.len(), "readable": true, "currentKey": keyring.is_current(token) }),
                Err(e) => json!({ "key": name, "readable": false, "error": e.to_string() }),
            }
        })
        .collect();
    Ok(Json(json!({
        "name": key.name,
        "namespace": key.namespace,
        "managedBy": secret.managed_by,
        "createdAt": secret.created_at,
        "updatedAt": secret.updated_at,
        "keys": keys,
    })))
}

/// `POST /apis/flotilla.dev/v1alpha1/secrets/rotate`: re-encrypts every value not
/// already encrypted with the newest key, in one transaction. Values no configured key
/// decrypts are reported and left alone.
pub(super) async fn rotate(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let keyring = keyring(&state)?;
    let secrets = state.store.list(Kind::Secret, None).await?;
    let mut changes = Vec::new();
    let mut rotated = 0usize;
    let mut unreadable = Vec::new();
    for secret in &secrets {
        // An unreadable secret is reported and left as stored; the others rotate.
        let mut spec: SecretSpec = match secret.spec_as() {
            Ok(spec) => spec,
            Err(e) => {
                tracing::error!("secret rotation skipped {}: {e}", secret.key);
                unreadable.push(format!(
                    "{}: the stored spec cannot be read by this version of Flotilla",
                    secret.key
                ));
                continue;
            }
        };
        let mut changed = false;
        for (name, token) in spec.encrypted_data.iter_mut() {
            if keyring.is_current(token) {
                continue;
            }
            let what = format!("{} key {name}", secret.key);
            match keyring.decrypt(token, &what) {
                Ok(value) => {
                    *token = keyring.encrypt(&value);
                    rotated += 1;
                    changed = true;
                }
                Err(e) => unreadable.push(e.to_string()),
            }
        }
        if changed {
            changes.push(Change::Update {
                object: DesiredObject {
                    key: secret.key.clone(),
                    labels: secret.labels.clone(),
                    annotations: secret.annotations.clone(),
                    spec: serde_json::to_value(&spec).unwrap_or_default().into(),
                },
                managed_by: secret.managed_by.clone(),
                expected_resource_version: secret.resource_version,
            });
        }
    }
    let updated = changes.len();
    state.store.commit(changes).await?;
    Ok(Json(
        json!({ "secrets": secrets.len(), "updated": updated, "values": rotated, "unreadable": unreadable }),
    ))
}
