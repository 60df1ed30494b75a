//! `POST /apis/flotilla.dev/v1alpha1/apply`: applies a set of manifests under a field
//! manager, optionally pruning and as a dry run. The body is either raw (multi-document)
//! YAML or JSON `{"files": [{"name": "...", "content": "..."}]}` so that errors can name
//! the user's files.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, header};
use serde::Deserialize;

use super::AppState;
use super::auth::{Grant, Scope};
use super::error::ApiError;
use crate::resource::error::ManifestErrors;
use crate::resource::manifest::{Document, MAX_MANIFEST_BYTES, parse_documents};
use crate::source::apply::{ApplyOptions, ApplyOutcome, ApplyRequest};

/// Query parameters of an apply.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApplyQuery {
    /// Field manager; default `cli`.
    field_manager: Option<String>,
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    force: bool,
    /// Include the unified diff in the answer (default true).
    #[serde(default = "yes")]
    diff: bool,
}

fn yes() -> bool {
    true
}

/// A named file of an apply request.
#[derive(Debug, Deserialize)]
pub struct ApplyFile {
    /// Name shown in errors.
    pub name: String,
    /// YAML text.
    pub content: String,
}

#[derive(Debug, Deserialize)]
struct ApplyFiles {
    files: Vec<ApplyFile>,
}

/// Largest request body: every file of a set together.
pub const MAX_APPLY_BODY: usize = 2 * MAX_MANIFEST_BYTES;

pub(super) async fn apply(
    State(state): State<AppState>,
    Query(query): Query<ApplyQuery>,
    Extension(grant): Extension<Grant>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApplyOutcome>, ApiError> {
    let body = body.map_err(|e| {
        ApiError::TooLarge(format!(
            "{e}; the limit is {} MiB per request",
            MAX_APPLY_BODY / (1024 * 1024)
        ))
    })?;
    let manager = query.field_manager.unwrap_or_else(|| "cli".to_owned());
    if manager.trim().is_empty() || manager.len() > 512 {
        return Err(ApiError::bad_request(
            "request.invalid",
            "fieldManager must be 1-512 characters",
        ));
    }
    // The documents keep what they need; the body goes before the apply runs.
    let documents = parse_body(&headers, body)?;
    if documents.is_empty() {
        // An empty set with prune would delete everything the manager owns.
        return Err(ApiError::bad_request(
            "validation.failed",
            "the request holds no files or documents; nothing to apply (to delete resources use delete, or prune with the remaining set)",
        ));
    }
    if documents.iter().any(|d| d.kind() == Some("Secret")) {
        grant.require(Scope::SecretsWrite)?;
    }
    let request = ApplyRequest {
        documents: &documents,
        options: ApplyOptions {
            manager,
            prune: query.prune,
            force: query.force,
            dry_run: query.dry_run,
            diff: query.diff,
        },
    };
    let outcome = request
        .execute(&state.store, state.keyring.as_deref())
        .await?;
    Ok(Json(outcome))
}

fn parse_body(headers: &HeaderMap, body: Bytes) -> Result<Vec<Document>, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let files = if is_json {
        let files = serde_json::from_slice::<ApplyFiles>(&body)
            .map_err(|e| {
                ApiError::bad_request(
                    "request.invalid",
                    format!("body is not an apply request: {e}"),
                )
            })?
            .files;
        drop(body);
        files
    } else {
        let content = String::from_utf8(Vec::from(body)).map_err(|_| {
            ApiError::bad_request(
                "validation.failed",
                "<request>: is not UTF-8 text (binary file?)",
            )
        })?;
        vec![ApplyFile {
            name: "<request>".to_owned(),
            content,
        }]
    };
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        match parse_documents(&file.name, &file.content) {
            Ok(parsed) => documents.extend(parsed),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(documents)
    } else {
        Err(ApiError::Invalid(ManifestErrors(errors)))
    }
}
