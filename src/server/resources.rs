//! Kubernetes-shaped resource routes: list (and watch), get and delete under
//! `/apis/flotilla.dev/v1alpha1/[namespaces/{ns}/]{plural}[/{name}]`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::auth::Grant;
use super::error::ApiError;
use super::page_cache::PageKey;
use crate::controller::run::logs::ship::delete_run_output;
use crate::resource::{API_VERSION, Kind, ObjectKey};

pub(super) fn parse_kind(plural: &str) -> Result<Kind, ApiError> {
    Kind::from_user(plural).ok_or_else(|| {
        ApiError::NotFound(format!(
            "unknown resource type {plural:?}; expected pipelines, schedules, secrets or runs"
        ))
    })
}

/// Query of list routes.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListQuery {
    /// Stream changes instead of answering a list.
    #[serde(default)]
    watch: bool,
    /// With `watch`: resume after this resourceVersion.
    resource_version: Option<String>,
    /// At most this many items; the answer's `metadata.continue` fetches the next page.
    limit: Option<i64>,
    /// Token of the next page, from a previous answer's `metadata.continue`.
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

/// Page tokens are `namespace/name` of the last item served, hex-encoded.
fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "request.invalid",
            format!(
                "continue token {token:?} is not one this server issued; list again from the start"
            ),
        )
    };
    let bytes = hex::decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (namespace, name) = text.split_once('/').ok_or_else(invalid)?;
    Ok((namespace.to_owned(), name.to_owned()))
}

/// `GET …/{plural}` across all namespaces.
pub(super) async fn list_all(
    State(state): State<AppState>,
    Path(plural): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    list(state, parse_kind(&plural)?, None, query).await
}

/// `GET …/namespaces/{ns}/{plural}`.
pub(super) async fn list_namespaced(
    State(state): State<AppState>,
    Path((namespace, plural)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    list(state, parse_kind(&plural)?, Some(namespace), query).await
}

/// `GET …/namespaces/{ns}/runs` (a static route beside `POST`).
pub(super) async fn list_runs(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    list(state, Kind::Run, Some(namespace), query).await
}

async fn list(
    state: AppState,
    kind: Kind,
    namespace: Option<String>,
    query: ListQuery,
) -> Result<Response, ApiError> {
    if query.watch {
        let resource_version = match query.resource_version.as_deref() {
            None | Some("" | "0") => None,
            Some(text) => Some(text.parse::<i64>().map_err(|_| {
                ApiError::bad_request(
                    "request.invalid",
                    format!("resourceVersion {text:?} is not a number"),
                )
            })?),
        };
        return super::watch::watch(
            &state.store,
            &state.changes,
            kind,
            namespace,
            resource_version,
        )
        .await;
    }
    let mut next_page = None;
    let mut cache_as = None;
    let (revision, objects) = match query.limit {
        Some(limit) => {
            let limit = limit.clamp(1, 10_000);
            let key = PageKey {
                kind,
                namespace: namespace.clone(),
                after: query.continue_token.clone(),
                limit,
            };
            if state.pages.has(&key)
                && let Some(body) = state.pages.get(&key, state.store.revision().await?)
            {
                state.metrics.count_page(true);
                return Ok(json_response(body));
            }
            state.metrics.count_page(false);
            cache_as = Some(key);
            let after = query
                .continue_token
                .as_deref()
                .map(decode_continue)
                .transpose()?;
            let mut page = state
                .store
                .list_raw_page(
                    kind,
                    namespace.as_deref(),
                    after.as_ref().map(|(n, m)| (n.as_str(), m.as_str())),
                    limit + 1,
                )
                .await?;
            // The page and its revision come from one statement: a watch from that
            // revision sees every later change.
            if page.objects.len() as i64 > limit {
                page.objects.truncate(limit as usize);
                next_page = page
                    .objects
                    .last()
                    .map(|o| hex::encode(format!("{}/{}", o.key.namespace, o.key.name)));
            }
            (page.revision, page.objects)
        }
        None => {
            // The revision is read first: a watch from it sees every later change.
            let revision = state.store.revision().await?;
            let objects = state.store.list_raw(kind, namespace.as_deref()).await?;
            (revision, objects)
        }
    };
    let mut body = String::with_capacity(
        64 + objects
            .iter()
            .map(|o| o.spec.len() + o.status.as_ref().map_or(0, String::len) + 400)
            .sum::<usize>(),
    );
    let continue_field = next_page
        .map(|token| format!(r#","continue":"{token}""#))
        .unwrap_or_default();
    body.push_str(&format!(
        r#"{{"apiVersion":"{API_VERSION}","kind":"{}List","metadata":{{"resourceVersion":"{revision}"{continue_field}}},"items":["#,
        kind.as_str()
    ));
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        object.write_manifest(&mut body);
    }
    body.push_str("]}");
    let body = Bytes::from(body);
    if let Some(key) = cache_as {
        state.pages.put(key, revision, body.clone());
    }
    Ok(json_response(body))
}

fn json_response(body: Bytes) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
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

/// `DELETE …/namespaces/{ns}/{plural}/{name}`: answers the object as it was. Deleting a
/// run also deletes its logs and events, here and in a shared store (a running container
/// is removed by the run controller's garbage collection).
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(_grant): Extension<Grant>,
    Path((namespace, plural, name)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = ObjectKey::new(parse_kind(&plural)?, namespace, name);
    let deleted = state.store.delete(&key, None).await?;
    let _ = state.store.delete_events(&key).await;
    if key.kind == Kind::Run {
        delete_run_output(&state.store, &state.files, &key, &deleted.uid).await;
    }
    Ok(Json(deleted.to_manifest()))
}

/// `GET …/namespaces/{ns}/graph`: the pipelines and the runs their ends start.
pub(super) async fn graph(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
) -> Result<Json<Value>, ApiError> {
    use crate::resource::graph::Graph;
    use crate::resource::types::PipelineSpec;
    let pipelines = state.store.list(Kind::Pipeline, Some(&namespace)).await?;
    let specs: Vec<(String, PipelineSpec)> = pipelines
        .iter()
        .map(|p| Ok((p.key.name.clone(), p.spec_as::<PipelineSpec>()?)))
        .collect::<Result<_, crate::resource::object::DecodeError>>()?;
    let graph = Graph::of(
        specs
            .iter()
            .map(|(name, spec)| (name.as_str(), spec.suspend, spec.triggers.as_slice())),
    );
    Ok(Json(serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "PipelineGraph",
        "namespace": namespace,
        "nodes": graph.nodes,
        "edges": graph.edges,
        "text": graph.render(),
    })))
}
