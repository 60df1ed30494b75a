//! The one table of every route: method, path, required access and summary. The router,
//! the authorization middleware and the OpenAPI document are all built from it, so a
//! route cannot exist without an access rule or be missing from the document.

use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post, put};
use serde_json::{Map, Value, json};

use super::auth::Scope;
use super::{AppState, apply, events, hooks, notifiers, ops, resources, runs, secrets, tokens};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, version, the OpenAPI document).
    Public,
    /// A token with this scope.
    Scope(Scope),
    /// Depends on the `{plural}` path segment.
    ByKind {
        /// For runs.
        runs: Scope,
        /// For secrets.
        secrets: Scope,
        /// For every other kind.
        other: Scope,
    },
    /// `runs:read`, or any caller on the loopback interface (Prometheus scrapes).
    MetricsReader,
}

/// One route.
#[derive(Clone, Debug)]
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path template in axum syntax.
    pub path: &'static str,
    /// Required access.
    pub access: Access,
    /// One-line description for the OpenAPI document.
    pub summary: &'static str,
}

const P: &str = "/apis/flotilla.dev/v1alpha1";

macro_rules! route {
    ($method:ident, $path:expr, $access:expr, $summary:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            access: $access,
            summary: $summary,
        }
    };
}

use Access::{ByKind, MetricsReader, Public};
use Scope::{
    Admin, ResourcesRead, ResourcesWrite, RunsRead, RunsWrite, SecretsWrite, SourcesWrite,
};

const READ: Access = ByKind {
    runs: RunsRead,
    secrets: ResourcesRead,
    other: ResourcesRead,
};
const WRITE: Access = ByKind {
    runs: RunsWrite,
    secrets: SecretsWrite,
    other: ResourcesWrite,
};

/// Every route of the API.
pub static ROUTES: &[Route] = &[
    route!(
        GET,
        "/",
        Public,
        "The read-only dashboard (its data calls need resources:read and runs:read)"
    ),
    route!(GET, "/healthz", Public, "Liveness: the process is up"),
    route!(
        GET,
        "/readyz",
        Public,
        "Readiness: the store and Docker answer"
    ),
    route!(GET, "/version", Public, "Server version"),
    route!(GET, "/openapi.json", Public, "This document"),
    route!(GET, "/metrics", MetricsReader, "Prometheus metrics"),
    route!(
        POST,
        "/hooks/git",
        Public,
        "Push webhook (GitHub X-Hub-Signature-256, GitLab X-Gitlab-Token, X-Flotilla-Signature): sync the git source"
    ),
    route!(
        POST,
        "/hooks/pipelines/{name}",
        Public,
        "Run a pipeline with its webhook key (X-Flotilla-Webhook-Key; Idempotency-Key honoured)"
    ),
    route!(
        POST,
        "/api/webhooks/{pipeline}/{key}",
        Public,
        "Run a pipeline with its webhook key (Fast-Flow's path)"
    ),
    route!(
        GET,
        concat!("/apis/flotilla.dev/v1alpha1", "/sources"),
        Access::Scope(ResourcesRead),
        "Sync status of the sources (git: live commit, last sync, errors, next auto-sync)"
    ),
    route!(
        GET,
        concat!("/apis/flotilla.dev/v1alpha1", "/leader"),
        Access::Scope(ResourcesRead),
        "Which replica leads (runs the controllers): holder, epoch, lease age and ttl, and which replica answered"
    ),
    route!(
        POST,
        concat!("/apis/flotilla.dev/v1alpha1", "/sources/sync"),
        Access::Scope(SourcesWrite),
        "Sync the git source now (?wait=true answers when it is done)"
    ),
    route!(
        POST,
        concat!("/apis/flotilla.dev/v1alpha1", "/apply"),
        Access::Scope(ResourcesWrite),
        "Apply a set of manifests under a field manager (prune, dryRun, force; diff=false leaves out the unified diff)"
    ),
    route!(
        GET,
        concat!("/apis/flotilla.dev/v1alpha1", "/events"),
        Access::Scope(ResourcesRead),
        "Events in all namespaces"
    ),
    route!(
        POST,
        concat!("/apis/flotilla.dev/v1alpha1", "/secrets/rotate"),
        Access::Scope(Admin),
        "Re-encrypt every secret with the newest key"
    ),
    route!(
        GET,
        concat!("/apis/flotilla.dev/v1alpha1", "/tokens"),
        Access::Scope(Admin),
        "List API tokens"
    ),
    route!(
        POST,
        concat!("/apis/flotilla.dev/v1alpha1", "/tokens"),
        Access::Scope(Admin),
        "Create an API token (shown once)"
    ),
    route!(
        DELETE,
        concat!("/apis/flotilla.dev/v1alpha1", "/tokens/{name}"),
        Access::Scope(Admin),
        "Revoke an API token"
    ),
    route!(
        GET,
        concat!("/apis/flotilla.dev/v1alpha1", "/{plural}"),
        READ,
        "List objects of a kind in all namespaces (?watch=true streams changes)"
    ),
    route!(
        GET,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/graph"
        ),
        Access::Scope(ResourcesRead),
        "The pipelines of a namespace and the runs their ends start (spec.triggers): nodes, edges, and the tree as text"
    ),
    route!(
        GET,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/events"
        ),
        Access::Scope(ResourcesRead),
        "Events of a namespace (?for=KIND/NAME)"
    ),
    route!(
        PUT,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/secrets/{name}/data"
        ),
        Access::Scope(SecretsWrite),
        "Create a secret or set some of its keys"
    ),
    route!(
        GET,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/secrets/{name}/keys"
        ),
        Access::Scope(ResourcesRead),
        "Keys and sizes of a secret (never values)"
    ),
    route!(
        GET,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/runs"
        ),
        Access::Scope(RunsRead),
        "List runs of a namespace (?watch=true streams changes)"
    ),
    route!(
        POST,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/runs"
        ),
        Access::Scope(RunsWrite),
        "Create a run (Idempotency-Key honoured)"
    ),
    route!(
        POST,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/runs/{name}/cancel"
        ),
        Access::Scope(RunsWrite),
        "Cancel a run"
    ),
    route!(
        POST,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/runs/{name}/rerun"
        ),
        Access::Scope(RunsWrite),
        "Run a run's pipeline again with the same run env"
    ),
    route!(
        GET,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/runs/{name}/log"
        ),
        Access::Scope(RunsRead),
        "Output of a run (?follow=true; SSE with Last-Event-ID resume)"
    ),
    route!(
        GET,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/runs/{name}/metrics"
        ),
        Access::Scope(RunsRead),
        "CPU and memory samples of a run"
    ),
    route!(
        POST,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/notifiers/{name}/test"
        ),
        Access::Scope(ResourcesWrite),
        "Send a test message through every channel of a notifier; answers what each channel said"
    ),
    route!(
        GET,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/{plural}"
        ),
        READ,
        "List objects of a kind in a namespace (?watch=true streams changes)"
    ),
    route!(
        GET,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/{plural}/{name}"
        ),
        READ,
        "Get one object"
    ),
    route!(
        DELETE,
        concat!(
            "/apis/flotilla.dev/v1alpha1",
            "/namespaces/{namespace}/{plural}/{name}"
        ),
        WRITE,
        "Delete one object"
    ),
];

/// The route declared for `method` and a matched path template.
pub fn route_for(method: &Method, path: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.method == *method && r.path == path)
}

/// The handler of a declared route.
fn handler(route: &Route) -> Option<MethodRouter<AppState>> {
    let suffix = route.path.strip_prefix(P).unwrap_or(route.path);
    Some(match (route.method.as_str(), suffix) {
        ("GET", "/") => get(ops::dashboard),
        ("GET", "/healthz") => get(ops::healthz),
        ("GET", "/readyz") => get(ops::readyz),
        ("GET", "/version") => get(ops::version),
        ("GET", "/openapi.json") => get(ops::openapi),
        ("GET", "/metrics") => get(ops::metrics),
        ("POST", "/hooks/git") => post(hooks::git_push),
        ("POST", "/hooks/pipelines/{name}") => post(hooks::pipeline_trigger),
        ("POST", "/api/webhooks/{pipeline}/{key}") => post(hooks::pipeline_trigger_fastflow),
        ("GET", "/sources") => get(hooks::sources_list),
        ("GET", "/namespaces/{namespace}/graph") => get(resources::graph),
        ("GET", "/leader") => get(ops::leader),
        ("POST", "/sources/sync") => post(hooks::sources_sync),
        ("POST", "/apply") => post(apply::apply),
        ("GET", "/events") => get(events::list_all),
        ("POST", "/secrets/rotate") => post(secrets::rotate),
        ("GET", "/tokens") => get(tokens::list),
        ("POST", "/tokens") => post(tokens::create),
        ("DELETE", "/tokens/{name}") => delete(tokens::revoke),
        ("GET", "/{plural}") => get(resources::list_all),
        ("GET", "/namespaces/{namespace}/events") => get(events::list_namespaced),
        ("PUT", "/namespaces/{namespace}/secrets/{name}/data") => put(secrets::set_data),
        ("GET", "/namespaces/{namespace}/secrets/{name}/keys") => get(secrets::keys),
        ("GET", "/namespaces/{namespace}/runs") => get(resources::list_runs),
        ("POST", "/namespaces/{namespace}/runs") => post(runs::create),
        ("POST", "/namespaces/{namespace}/runs/{name}/cancel") => post(runs::cancel),
        ("POST", "/namespaces/{namespace}/runs/{name}/rerun") => post(runs::rerun),
        ("GET", "/namespaces/{namespace}/runs/{name}/log") => get(runs::log),
        ("GET", "/namespaces/{namespace}/runs/{name}/metrics") => get(runs::metrics),
        ("POST", "/namespaces/{namespace}/notifiers/{name}/test") => post(notifiers::test),
        ("GET", "/namespaces/{namespace}/{plural}") => get(resources::list_namespaced),
        ("GET", "/namespaces/{namespace}/{plural}/{name}") => get(resources::get),
        ("DELETE", "/namespaces/{namespace}/{plural}/{name}") => delete(resources::delete),
        // The test `every_route_has_a_handler_and_is_unique` fails for a declared route
        // without an arm.
        _ => return None,
    })
}

/// The router of every declared route.
pub fn build(router: axum::Router<AppState>) -> axum::Router<AppState> {
    ROUTES
        .iter()
        .fold(router, |router, route| match handler(route) {
            Some(handler) => router.route(route.path, handler),
            None => router,
        })
}

/// The OpenAPI 3.1 document, generated from [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let path = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        let parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let (security, scope_text) = match route.access {
            Access::Public => (json!([]), "none".to_owned()),
            Access::Scope(scope) => (
                json!([{ "bearer": [scope.as_str()] }]),
                scope.as_str().to_owned(),
            ),
            Access::ByKind {
                runs,
                secrets,
                other,
            } => (
                json!([{ "bearer": [other.as_str()] }]),
                format!(
                    "{} ({} for runs, {} for secrets)",
                    other.as_str(),
                    runs.as_str(),
                    secrets.as_str()
                ),
            ),
            Access::MetricsReader => (
                json!([{ "bearer": ["runs:read"] }, {}]),
                "runs:read, or loopback".to_owned(),
            ),
        };
        let mut operation = json!({
            "summary": route.summary,
            "description": format!("Required scope: {scope_text}."),
            "parameters": parameters,
            "security": security,
            "responses": {
                "200": { "description": "Success" },
                "401": { "description": "Missing or invalid token", "content": { "application/problem+json": {} } },
                "403": { "description": "The token lacks the scope", "content": { "application/problem+json": {} } },
            },
        });
        // Writes may carry a JSON body (its shape is the route's own; the summary says it),
        // so clients and API fuzzers know a body can be sent.
        if route.method == Method::POST || route.method == Method::PUT {
            operation["requestBody"] = json!({
                "required": false,
                "content": { "application/json": { "schema": { "type": "object" } } },
            });
        }
        path[route.method.as_str().to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Flotilla API", "version": env!("CARGO_PKG_VERSION") },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_handler_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for route in ROUTES {
            assert!(
                seen.insert((route.method.as_str(), route.path)),
                "{} {} twice",
                route.method,
                route.path
            );
            assert!(
                handler(route).is_some(),
                "{} {} has no handler",
                route.method,
                route.path
            );
        }
        // Building the router panics on a conflicting or malformed route.
        let _ = build(axum::Router::new());
    }

    #[test]
    fn openapi_lists_every_route_with_its_scope() {
        let doc = openapi();
        for route in ROUTES {
            let operation = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
            assert!(
                operation.is_object(),
                "{} {} missing from the document",
                route.method,
                route.path
            );
            assert!(
                operation["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("Required scope"))
            );
        }
    }
}
