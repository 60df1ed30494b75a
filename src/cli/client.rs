//! The CLI's HTTP client of the Flotilla API. Problem+json answers become [`ClientError`]s
//! that print the server's message and, for validation errors, each located problem.

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resource::{Kind, ObjectKey};

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error(
        "cannot reach the Flotilla server at {server}: {source} (is `flotilla serve` running? set --server or FLOTILLA_SERVER)"
    )]
    Unreachable {
        /// Server URL.
        server: String,
        /// Transport error.
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// Stable code from the problem body.
        code: String,
        /// Rendered message (detail plus located errors).
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// A client of one Flotilla server.
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// Path prefix of the resource API.
pub const API_PREFIX: &str = "/apis/flotilla.dev/v1alpha1";

impl ApiClient {
    /// A client of `server` (e.g. `http://127.0.0.1:8000`) with an optional bearer token.
    pub fn new(server: &str, token: Option<String>) -> Self {
        Self {
            base: server.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        }
    }

    /// Path of one object.
    pub fn object_path(key: &ObjectKey) -> String {
        format!(
            "{API_PREFIX}/namespaces/{}/{}/{}",
            key.namespace,
            key.kind.plural(),
            key.name
        )
    }

    /// Path of a list, in one namespace or all.
    pub fn list_path(kind: Kind, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) => format!("{API_PREFIX}/namespaces/{ns}/{}", kind.plural()),
            None => format!("{API_PREFIX}/{}", kind.plural()),
        }
    }

    /// Sends a request and decodes a JSON answer.
    pub async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path_and_query}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let bytes = self
            .send(request)
            .await?
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `GET` returning the raw response (for streams); error statuses become errors.
    pub async fn raw_get(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        self.send(request).await
    }

    /// Adds the token, sends, and turns transport failures and error statuses into
    /// [`ClientError`]s.
    async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                server: self.base.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Err(problem(status, &bytes))
    }

    /// `GET` returning JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request::<(), Value>(Method::GET, path, None).await
    }
}

fn problem(status: StatusCode, body: &[u8]) -> ClientError {
    let Ok(problem) = serde_json::from_slice::<Value>(body) else {
        return ClientError::Api {
            status,
            code: "http.error".to_owned(),
            message: format!(
                "server answered {status}: {}",
                String::from_utf8_lossy(body).trim()
            ),
        };
    };
    let code = problem["code"].as_str().unwrap_or("http.error").to_owned();
    let errors = problem["errors"].as_array().cloned().unwrap_or_default();
    let message = if errors.is_empty() {
        format!(
            "{} ({code})",
            problem["detail"].as_str().unwrap_or("request failed")
        )
    } else {
        errors
            .iter()
            .map(render_located)
            .collect::<Vec<_>>()
            .join("\n")
    };
    ClientError::Api {
        status,
        code,
        message,
    }
}

fn render_located(error: &Value) -> String {
    let mut out = error["file"].as_str().unwrap_or("<input>").to_owned();
    if let Some(line) = error["line"].as_u64() {
        out.push_str(&format!(":{line}"));
        if let Some(column) = error["column"].as_u64() {
            out.push_str(&format!(":{column}"));
        }
    }
    if let Some(document) = error["document"].as_u64() {
        out.push_str(&format!(": document {document}"));
    }
    if let Some(field) = error["field"].as_str() {
        out.push_str(&format!(": {field}"));
    }
    out.push_str(&format!(
        ": {}",
        error["message"].as_str().unwrap_or("invalid")
    ));
    out
}
