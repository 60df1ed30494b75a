//! Token administration (scope `admin`): create (the token is answered once), list,
//! revoke.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Scope, generate_token, hash_token};
use super::error::ApiError;
use crate::resource::quantity::parse_duration;

/// Body of `POST …/tokens`.
#[derive(Debug, Deserialize)]
pub(super) struct CreateToken {
    name: String,
    scopes: Vec<String>,
    /// Lifetime such as `30d`; none means no expiry.
    expires: Option<String>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    Json(body): Json<CreateToken>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if body.name.is_empty() || body.name.len() > 100 {
        return Err(ApiError::bad_request(
            "validation.failed",
            "name must be 1-100 characters",
        ));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::bad_request(
            "validation.failed",
            "give at least one scope",
        ));
    }
    for scope in &body.scopes {
        if Scope::parse(scope).is_none() {
            let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            return Err(ApiError::bad_request(
                "validation.failed",
                format!("unknown scope {scope:?}; known: {}", known.join(", ")),
            ));
        }
    }
    let expires_at = match &body.expires {
        Some(text) => {
            let lifetime = parse_duration(text)
                .map_err(|e| ApiError::bad_request("validation.failed", format!("expires: {e}")))?;
            Some(chrono::Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or_default())
        }
        None => None,
    };
    let token = generate_token();
    if !state
        .store
        .create_token(&body.name, &hash_token(&token), &body.scopes, expires_at)
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "a token named {:?} exists; revoke it first or pick another name",
            body.name
        )));
    }
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "name": body.name, "scopes": body.scopes, "expiresAt": expires_at, "token": token }),
        ),
    ))
}

pub(super) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "items": state.store.list_tokens().await? })))
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if state.store.revoke_token(&name).await? {
        state.tokens.clear();
        Ok(Json(json!({ "name": name, "revoked": true })))
    } else {
        Err(ApiError::NotFound(format!("no token named {name:?}")))
    }
}
