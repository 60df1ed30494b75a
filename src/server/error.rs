//! `ApiError`: the one error type of the HTTP API. It owns the mapping to status codes
//! and the `application/problem+json` body (RFC 9457) with a stable `code`; internal
//! failures are logged and answered with a generic 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::resource::error::ManifestErrors;
use crate::source::apply::ApplyError;
use crate::store::StoreError;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The path names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed (bad query, unknown kind, body too large, …).
    #[error("{message}")]
    BadRequest {
        /// Stable machine code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No or an invalid bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// The token lacks a scope.
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with the stored state.
    #[error("{0}")]
    Conflict(String),
    /// The request body is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// The pipeline (or the operator) runs as many runs as it may and its `whenBusy`
    /// is `Reject`: no run was created.
    #[error("{0}")]
    Busy(String),
    /// A watch cannot resume from that far back.
    #[error("{0}")]
    Gone(String),
    /// A dependency (store, Docker) does not answer.
    #[error("{message}")]
    Unavailable {
        /// Stable machine code.
        code: &'static str,
        /// What is down.
        message: String,
    },
    /// Manifests failed validation.
    #[error("{0}")]
    Invalid(ManifestErrors),
    /// Applying failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::resource::object::DecodeError> for ApiError {
    fn from(error: crate::resource::object::DecodeError) -> Self {
        ApiError::Store(error.into())
    }
}

impl ApiError {
    /// A 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "resource.not_found"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "auth.unauthenticated"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "auth.forbidden"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "resource.conflict"),
            ApiError::Gone(_) => (StatusCode::GONE, "watch.expired"),
            ApiError::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "run.busy"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "request.too_large"),
            ApiError::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation.failed"),
            ApiError::Apply(ApplyError::Invalid(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation.failed")
            }
            ApiError::Apply(ApplyError::Conflict { .. }) => {
                (StatusCode::CONFLICT, "resource.conflict")
            }
            ApiError::Apply(ApplyError::Secrets(e)) => (StatusCode::UNPROCESSABLE_ENTITY, e.code()),
            ApiError::Apply(ApplyError::Store(e)) | ApiError::Store(e) => store_status(e),
        }
    }
}

fn store_status(error: &StoreError) -> (StatusCode, &'static str) {
    let status = match error {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::AlreadyExists(_) | StoreError::Conflict { .. } => StatusCode::CONFLICT,
        StoreError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, error.code())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let detail = if matches!(self, ApiError::Unavailable { .. }) {
            self.to_string()
        } else if let ApiError::Store(StoreError::Corrupt { key, .. })
        | ApiError::Apply(ApplyError::Store(StoreError::Corrupt { key, .. })) = &self
        {
            // Which object, but not the decoder's words: they may quote stored values.
            tracing::error!(code, "request failed: {self}");
            format!(
                "{key}: the stored object cannot be read by this version of Flotilla (corrupt, or written by a newer one); nothing was changed; the operator's log has the details"
            )
        } else if status.is_server_error() {
            tracing::error!(code, "request failed: {self}");
            "the server could not complete the request; see its log".to_owned()
        } else {
            self.to_string()
        };
        let errors = match &self {
            ApiError::Invalid(errors) | ApiError::Apply(ApplyError::Invalid(errors)) => {
                serde_json::to_value(&errors.0).unwrap_or_default()
            }
            _ => json!([]),
        };
        let body = json!({
            "type": format!("https://flotilla.dev/problems/{code}"),
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "code": code,
            "detail": detail,
            "errors": errors,
        });
        let mut response = (status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
