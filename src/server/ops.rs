//! Operational routes: health, readiness, version, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

/// `GET /`: the dashboard, one static page that reads the API.
pub(super) async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../../dashboard/index.html"))
}

/// `GET /healthz`: the process is alive.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the store and the container runtime answer. Also names the store's
/// identity, the `flotilla.dev/store` label value of its containers
/// (`docker ps --filter label=flotilla.dev/store=<identity>`).
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await?;
    if let Some(probe) = &state.runtime_probe {
        probe().await.map_err(|message| ApiError::Unavailable {
            code: "container.runtime.unavailable",
            message: format!("the container runtime does not answer: {message}"),
        })?;
    }
    let leader = leader_view(&state).await?;
    Ok(Json(json!({
        "store": "ok",
        "storeIdentity": state.store.identity(),
        "docker": if state.runtime_probe.is_some() { "ok" } else { "not configured" },
        "leader": leader,
    })))
}

/// Replicas sharing a store: who leads (runs the controllers), under which epoch, how
/// long ago the lease was renewed.
async fn leader_view(state: &AppState) -> Result<Value, ApiError> {
    Ok(match &state.leader_holder {
        Some(me) => match state.store.lease(crate::controller::leader::LEASE).await? {
            Some(lease) => json!({
                "holder": lease.holder,
                "epoch": lease.epoch,
                "leaseAgeSeconds": lease.age_ms as f64 / 1000.0,
                "leaseTtlSeconds": lease.ttl_ms as f64 / 1000.0,
                "self": &lease.holder == me,
                "answeredBy": me,
            }),
            None => json!({ "holder": null, "self": false, "answeredBy": me }),
        },
        None => json!({ "self": true, "note": "the only operator of its SQLite store" }),
    })
}

/// `GET …/leader`: the leader as seen from this replica (needs only the store).
pub(super) async fn leader(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(leader_view(&state).await?))
}

/// `GET /version`.
pub(super) async fn version() -> Json<Value> {
    Json(
        json!({ "version": env!("CARGO_PKG_VERSION"), "apiVersion": crate::resource::API_VERSION }),
    )
}

/// `GET /openapi.json`, generated from the route table.
pub(super) async fn openapi() -> Json<Value> {
    Json(super::routes::openapi())
}

/// `GET /metrics`: OpenMetrics text.
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
