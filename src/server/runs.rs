//! Run routes: create (`POST …/runs`, honouring `Idempotency-Key`), rerun, cancel, logs (plain
//! text, optionally followed until the run ends) and resource samples, read from this
//! replica's files or from the shared store ([`super::output`]).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use super::output::RunOutput;
use crate::resource::manifest::Document;
use crate::resource::types::{PipelineSpec, RunStatus, run_name};
use crate::resource::validate::validate_document;
use crate::resource::{API_VERSION, Kind, ObjectKey, StoredObject};
use crate::store::StoreError;

/// `POST …/namespaces/{ns}/runs`: body is a Run manifest (`metadata.name` optional) or
/// just its spec. With `Idempotency-Key`, a retry returns the run the first call made.
pub(super) async fn create(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| body.clone());
    let pipeline = spec["pipelineRef"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let name = match (body["metadata"]["name"].as_str(), &idempotency_key) {
        (Some(name), _) => name.to_owned(),
        (None, Some(key)) => run_name(
            &pipeline,
            &hex::encode(Sha256::digest(format!("{namespace}/{key}")))[..10],
        ),
        (None, None) => run_name(&pipeline, &random_suffix()),
    };
    let manifest = json!({
        "apiVersion": API_VERSION,
        "kind": "Run",
        "metadata": { "name": name, "namespace": namespace },
        "spec": spec,
    });
    create_run(
        &state,
        &namespace,
        &pipeline,
        manifest,
        idempotency_key.is_some(),
    )
    .await
}

/// `POST …/namespaces/{ns}/runs/{name}/rerun`: a new run of the same pipeline with the
/// same run env (trigger parameters), started by hand, annotated with the run it
/// repeats (`flotilla.dev/rerun-of`). Fast-Flow's "retry this run".
pub(super) async fn rerun(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let original = get_run(&state, namespace.clone(), name.clone()).await?;
    let spec: crate::resource::types::RunSpec = original.spec_as()?;
    let pipeline = spec.pipeline_ref.name.clone();
    let manifest = json!({
        "apiVersion": API_VERSION,
        "kind": "Run",
        "metadata": {
            "name": run_name(&pipeline, &random_suffix()),
            "namespace": namespace,
            "annotations": { RERUN_OF_ANNOTATION: name },
        },
        "spec": { "pipelineRef": { "name": pipeline }, "trigger": "manual", "env": spec.env },
    });
    create_run(&state, &namespace, &pipeline, manifest, false).await
}

/// On a run made by `rerun`: the name of the run it repeats.
pub const RERUN_OF_ANNOTATION: &str = "flotilla.dev/rerun-of";

/// Validates and stores a new run of `pipeline` unless its pipeline refuses it while
/// busy; with `idempotent`, a run of that name already there is the answer.
async fn create_run(
    state: &AppState,
    namespace: &str,
    pipeline: &str,
    manifest: Value,
    idempotent: bool,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let object = validate_document(&Document::synthetic("<request>", 1, manifest))
        .map_err(|errors| ApiError::Invalid(crate::resource::error::ManifestErrors(errors)))?;
    // A retry gets the run the first call made, busy or not.
    if idempotent && let Some(existing) = state.store.get(&object.key).await? {
        return Ok((axum::http::StatusCode::OK, Json(existing.to_manifest())));
    }
    let spec = state
        .store
        .get(&ObjectKey::new(Kind::Pipeline, namespace, pipeline))
        .await?
        .map(|p| p.spec_as::<PipelineSpec>())
        .transpose()?;
    state
        .hooks
        .busy
        .admit(&state.store, namespace, pipeline, spec.as_ref())
        .await?;
    let status = serde_json::to_value(RunStatus::default()).ok();
    match state.store.create(object, None, status).await {
        Ok(run) => Ok((axum::http::StatusCode::CREATED, Json(run.to_manifest()))),
        Err(StoreError::AlreadyExists(key)) if idempotent => {
            let existing = state
                .store
                .get(&key)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
            Ok((axum::http::StatusCode::OK, Json(existing.to_manifest())))
        }
        Err(e) => Err(e.into()),
    }
}

/// Six random characters that cannot spell words.
pub(super) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn get_run(
    state: &AppState,
    namespace: String,
    name: String,
) -> Result<StoredObject, ApiError> {
    let key = ObjectKey::new(Kind::Run, namespace, name);
    state
        .store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{key} not found")))
}

/// `POST …/namespaces/{ns}/runs/{name}/cancel`: sets `spec.cancel`; the controller stops
/// the container (SIGTERM, grace period, SIGKILL) and the run ends `Cancelled`.
pub(super) async fn cancel(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = ObjectKey::new(Kind::Run, namespace, name);
    match crate::controller::run::request_cancel(&state.store, &key).await? {
        Some(run) => Ok(Json(run.to_manifest())),
        None => Err(ApiError::NotFound(format!("{key} not found"))),
    }
}

/// Query of the log route.
#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    /// 1-based attempt; default the latest.
    attempt: Option<u32>,
    /// Keep the response open and stream new lines until the run ends.
    #[serde(default)]
    follow: bool,
}

/// `GET …/namespaces/{ns}/runs/{name}/log`: stored lines `<timestamp> <stream> <text>`
/// as text, or with `follow=true` as server-sent events until the attempt ends.
pub(super) async fn log(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<LogQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let run = get_run(&state, namespace, name).await?;
    let status: RunStatus = run.status_as()?;
    let latest = status.attempts.len().max(1) as u32;
    let attempt = query.attempt.unwrap_or(latest);
    if attempt == 0 || attempt > latest {
        return Err(ApiError::NotFound(format!(
            "run {} has no attempt {attempt} (it has {latest})",
            run.key.name
        )));
    }
    let output = RunOutput::open(&state, state.files.attempt_log(&run.uid, attempt)).await?;
    if query.follow {
        let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
        let skip = super::sse::resume_after(last_event_id, attempt);
        return Ok(
            super::sse::follow(state, run.key.clone(), output, attempt, skip).into_response(),
        );
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        output.body(),
    )
        .into_response())
}

/// `GET …/namespaces/{ns}/runs/{name}/metrics`: CPU/memory samples of the run.
pub(super) async fn metrics(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let run = get_run(&state, namespace, name).await?;
    let samples = RunOutput::open(&state, state.files.metrics(&run.uid))
        .await?
        .samples()
        .await?;
    Ok(Json(json!({ "run": run.key.name, "samples": samples })))
}
