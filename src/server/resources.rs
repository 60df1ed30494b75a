//! Kubernetes-shaped resource routes: list, get and delete under
//! `/apis/flotilla.dev/v1alpha1/[namespaces/{ns}/]{plural}[/{name}]`.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::resource::{API_VERSION, Kind, ObjectKey};

pub(super) fn parse_kind(plural: &str) -> Result<Kind, ApiError> {
    Kind::from_user(plural).ok_or_else(|| {
        ApiError::NotFound(format!(
            "unknown resource type {plural:?}; expected pipelines, schedules, secrets or runs"
        ))
    })
}

/// `GET …/{plural}` across all namespaces.
pub(super) async fn list_all(
    State(state): State<AppState>,
    Path(plural): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list(state, parse_kind(&plural)?, None).await
}

/// `GET …/namespaces/{ns}/{plural}`.
pub(super) async fn list_namespaced(
    State(state): State<AppState>,
    Path((namespace, plural)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    list(state, parse_kind(&plural)?, Some(namespace)).await
}

async fn list(
    state: AppState,
    kind: Kind,
    namespace: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let objects = state.store.list(kind, namespace.as_deref()).await?;
    let revision = objects
        .iter()
        .map(|o| o.resource_version)
        .max()
        .unwrap_or(0);
    let items: Vec<Value> = objects.iter().map(|o| o.to_manifest()).collect();
    Ok(Json(json!({
        "apiVersion": API_VERSION,
        "kind": format!("{}List", kind.as_str()),
        "metadata": { "resourceVersion": revision.to_string() },
        "items": items,
    })))
}

/// `GET …/namespaces/{ns}/runs` (a static route beside `POST`).
pub(super) async fn list_runs(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list(state, Kind::Run, Some(namespace)).await
}

/// `GET …/namespaces/{ns}/{plural}/{name}`.
pub(super) async fn get(
    State(state): State<AppState>,
    Path((namespace, plural, name)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = ObjectKey::new(parse_kind(&plural)?, namespace, name);
    match state.store.get(&key).await? {
        Some(object) => Ok(Json(object.to_manifest())),
        None => Err(ApiError::NotFound(format!("{key} not found"))),
    }
}

/// `DELETE …/namespaces/{ns}/{plural}/{name}`: answers the object as it was.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path((namespace, plural, name)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = ObjectKey::new(parse_kind(&plural)?, namespace, name);
    let deleted = state.store.delete(&key, None).await?;
    Ok(Json(deleted.to_manifest()))
}
