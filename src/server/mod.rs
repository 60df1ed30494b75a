//! The HTTP API (axum): resource routes shaped like Kubernetes', the apply endpoint,
//! health and version. Handlers translate HTTP to store and source calls and back; they
//! hold no domain logic.

mod apply;
pub mod error;
mod events;
mod resources;
mod runs;
mod secrets;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller::run::logs::RunFiles;
use crate::secrets::Keyring;
use crate::store::Store;

pub use apply::MAX_APPLY_BODY;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The object store.
    pub store: Store,
    /// Secret encryption keys, when configured.
    pub keyring: Option<Arc<Keyring>>,
    /// Where run logs and samples are stored.
    pub files: RunFiles,
}

const API_PREFIX: &str = "/apis/flotilla.dev/v1alpha1";

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/apply", post(apply::apply))
        .route("/events", get(events::list_all))
        .route("/secrets/rotate", post(secrets::rotate))
        .route(
            "/namespaces/{namespace}/secrets/{name}/data",
            axum::routing::put(secrets::set_data),
        )
        .route(
            "/namespaces/{namespace}/secrets/{name}/keys",
            get(secrets::keys),
        )
        .route(
            "/namespaces/{namespace}/events",
            get(events::list_namespaced),
        )
        .route("/{plural}", get(resources::list_all))
        .route(
            "/namespaces/{namespace}/runs",
            post(runs::create).get(resources::list_runs),
        )
        .route(
            "/namespaces/{namespace}/runs/{name}/cancel",
            post(runs::cancel),
        )
        .route("/namespaces/{namespace}/runs/{name}/log", get(runs::log))
        .route(
            "/namespaces/{namespace}/runs/{name}/metrics",
            get(runs::metrics),
        )
        .route(
            "/namespaces/{namespace}/{plural}",
            get(resources::list_namespaced),
        )
        .route(
            "/namespaces/{namespace}/{plural}/{name}",
            get(resources::get).delete(resources::delete),
        );
    Router::new()
        .nest(API_PREFIX, api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .layer(DefaultBodyLimit::max(MAX_APPLY_BODY))
        .with_state(state)
}

async fn version() -> Json<serde_json::Value> {
    Json(
        json!({ "version": env!("CARGO_PKG_VERSION"), "apiVersion": crate::resource::API_VERSION }),
    )
}

async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<&'static str, error::ApiError> {
    state.store.ping().await?;
    Ok("ok")
}

/// Serves the API on `listener` until `shutdown` is cancelled; in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
