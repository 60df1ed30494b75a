//! `GET …/events` and `GET …/namespaces/{ns}/events[?for=Kind/name]`: recorded events,
//! newest first.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::resource::{API_VERSION, Kind};

/// Query of the events routes.
#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    /// `Kind/name` (any spelling of the kind), e.g. `schedule/nightly`.
    #[serde(rename = "for")]
    involved: Option<String>,
    /// At most this many (default 500).
    limit: Option<i64>,
}

pub(super) async fn list_all(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    list(state, None, query).await
}

pub(super) async fn list_namespaced(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    list(state, Some(namespace), query).await
}

async fn list(
    state: AppState,
    namespace: Option<String>,
    query: EventsQuery,
) -> Result<Json<Value>, ApiError> {
    let involved = match &query.involved {
        Some(text) => {
            let (kind, name) = text.split_once('/').ok_or_else(|| {
                ApiError::bad_request(
                    "request.invalid",
                    format!("for={text:?}: expected KIND/NAME, e.g. schedule/nightly"),
                )
            })?;
            let kind = Kind::from_user(kind).ok_or_else(|| {
                ApiError::bad_request(
                    "request.invalid",
                    format!("for={text:?}: unknown kind {kind:?}"),
                )
            })?;
            Some((kind, name.to_owned()))
        }
        None => None,
    };
    let namespace = match (&namespace, &involved) {
        (None, Some(_)) => Some("default".to_owned()),
        _ => namespace,
    };
    let limit = query.limit.unwrap_or(500).clamp(1, 10_000);
    let events = state
        .store
        .list_events(
            namespace.as_deref(),
            involved.as_ref().map(|(k, n)| (*k, n.as_str())),
            limit,
        )
        .await?;
    Ok(Json(
        json!({ "apiVersion": API_VERSION, "kind": "EventList", "items": events }),
    ))
}
