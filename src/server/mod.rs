//! The HTTP API (axum): resource routes shaped like Kubernetes', the apply endpoint,
//! runs with logs and metrics, tokens, health and Prometheus metrics. Every route is
//! declared once in [`routes::ROUTES`] with the scope it needs. Handlers translate HTTP
//! to store and source calls and back; they hold no domain logic.

mod apply;
pub mod auth;
pub mod busy;
pub mod error;
mod events;
pub mod hooks;
mod notifiers;
mod ops;
mod output;
pub mod page_cache;
mod resources;
pub mod routes;
mod runs;
mod secrets;
mod sse;
mod tokens;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tower_http::cors::CorsLayer;
use tower_http::timeout::TimeoutLayer;

use crate::controller::run::logs::RunFiles;
use crate::metrics::{Metrics, RouteStatus};
use crate::secrets::Keyring;
use crate::store::Store;

pub use apply::MAX_APPLY_BODY;
pub use watch::ChangeLog;

/// Checks that the container runtime answers (for `/readyz`).
pub type RuntimeProbe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The object store.
    pub store: Store,
    /// Secret encryption keys, when configured.
    pub keyring: Option<Arc<Keyring>>,
    /// Where run logs and samples are stored.
    pub files: RunFiles,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// `--dev`: unauthenticated reads allowed (loopback listeners only).
    pub dev_mode: bool,
    /// Readiness probe of the container runtime, when runs execute in this process.
    pub runtime_probe: Option<RuntimeProbe>,
    /// Recent object changes, for resumable watches.
    pub changes: watch::ChangeLog,
    /// Webhooks and the git source.
    pub hooks: hooks::HooksState,
    /// Rendered list pages, reused while the store revision stays.
    pub pages: page_cache::PageCache,
    /// Recently verified API tokens.
    pub tokens: auth::TokenCache,
    /// This replica's name in the controller lease, when replicas share the store.
    pub leader_holder: Option<String>,
}

impl AppState {
    /// The smallest complete state: `store`, run files under `data_dir`, the webhook and
    /// git-source state `hooks`, and a change log recording until `shutdown`. Everything
    /// optional is off: no secret keys, no container runtime to probe, tokens required
    /// for every non-public route (no `--dev`); metrics and caches start empty. It lets
    /// tests (and embedders) serve [`router`] with its real routes and authorization
    /// without starting a whole operator; `flotilla serve` fills in every part itself.
    pub fn new(
        store: Store,
        data_dir: &std::path::Path,
        hooks: hooks::HooksState,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            changes: watch::ChangeLog::start(&store, shutdown),
            store,
            keyring: None,
            files: RunFiles::new(data_dir),
            metrics: Arc::new(Metrics::new()),
            dev_mode: false,
            runtime_probe: None,
            hooks,
            pages: page_cache::PageCache::default(),
            tokens: auth::TokenCache::default(),
            leader_holder: None,
        }
    }
}

impl axum::extract::FromRef<AppState> for hooks::HooksState {
    fn from_ref(state: &AppState) -> Self {
        state.hooks.clone()
    }
}

/// HTTP settings of the server.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// Origins allowed by CORS; none means no CORS headers at all.
    pub cors_origins: Vec<String>,
}

/// Longest a non-streaming request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the router.
pub fn router(state: AppState, options: &HttpOptions) -> Router {
    let mut router = routes::build(Router::new())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(MAX_APPLY_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    if !options.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = options
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([
                    axum::http::header::AUTHORIZATION,
                    axum::http::header::CONTENT_TYPE,
                ]),
        );
    }
    router.with_state(state)
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .http_requests
        .get_or_create(&RouteStatus {
            method,
            route,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

/// Serves the API on `listener` until `shutdown` is cancelled; in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    options: HttpOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state, &options).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
