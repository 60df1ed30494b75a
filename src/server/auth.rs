//! Bearer tokens with scopes. Tokens are random, shown once, stored as SHA-256 hashes;
//! every route's required access is declared in [`super::routes::ROUTES`] and checked by
//! [`authorize`] before any handler runs. A route missing from the table is refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use super::routes::{Access, route_for};
use crate::store::tokens::TokenRecord;

/// What a token may do. `Admin` includes every other scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Scope {
    /// Read resources (pipelines, schedules, secrets' metadata, events).
    ResourcesRead,
    /// Apply and delete resources.
    ResourcesWrite,
    /// Read runs, their logs and metrics.
    RunsRead,
    /// Create and cancel runs.
    RunsWrite,
    /// Set and delete secrets.
    SecretsWrite,
    /// Trigger source syncs.
    SourcesWrite,
    /// Everything, including tokens and key rotation.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 7] = [
        Scope::ResourcesRead,
        Scope::ResourcesWrite,
        Scope::RunsRead,
        Scope::RunsWrite,
        Scope::SecretsWrite,
        Scope::SourcesWrite,
        Scope::Admin,
    ];

    /// The scope as written in tokens: `resources:read`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ResourcesRead => "resources:read",
            Scope::ResourcesWrite => "resources:write",
            Scope::RunsRead => "runs:read",
            Scope::RunsWrite => "runs:write",
            Scope::SecretsWrite => "secrets:write",
            Scope::SourcesWrite => "sources:write",
            Scope::Admin => "admin",
        }
    }

    /// Parses a scope name.
    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// True for the read-only scopes `--dev` grants without a token.
    pub fn is_read(self) -> bool {
        matches!(self, Scope::ResourcesRead | Scope::RunsRead)
    }
}

/// The scopes of the caller of a request.
#[derive(Clone, Debug, Default)]
pub struct Grant {
    /// Token name (`anonymous` in `--dev` mode).
    pub token: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
}

impl Grant {
    /// True when the grant includes `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes
            .iter()
            .any(|s| *s == scope || *s == Scope::Admin)
    }

    /// `Err(403)` unless the grant includes `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.allows(scope) {
            Ok(())
        } else {
            Err(forbidden(&self.token, scope))
        }
    }
}

fn forbidden(token: &str, scope: Scope) -> ApiError {
    ApiError::Forbidden(format!(
        "token {token:?} lacks the scope {} this request needs",
        scope.as_str()
    ))
}

/// A new random token: `flt_` and 32 random bytes in hex.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("flt_{}", hex::encode(bytes))
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Middleware: resolves the caller's token and checks the route's required access.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = Caller::of(&request);
    match check(&state, caller).await {
        Ok(grant) => {
            request.extensions_mut().insert(grant);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// What authorization looks at, taken from the request before any await.
struct Caller {
    method: axum::http::Method,
    template: Option<String>,
    path: String,
    bearer: Option<String>,
    loopback: bool,
}

impl Caller {
    fn of(request: &Request) -> Self {
        Self {
            method: request.method().clone(),
            template: request
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned()),
            path: request.uri().path().to_owned(),
            bearer: request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| t.trim().to_owned()),
            loopback: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_some_and(|c| c.0.ip().is_loopback()),
        }
    }
}

async fn check(state: &AppState, caller: Caller) -> Result<Grant, ApiError> {
    let Some(path) = caller.template else {
        // Unmatched paths answer 404 from the router's fallback; nothing to guard.
        return Ok(Grant::default());
    };
    let route = route_for(&caller.method, &path).ok_or_else(|| {
        ApiError::Forbidden(format!(
            "{} {path} declares no access rule; refused",
            caller.method
        ))
    })?;
    let plural = plural_of(&caller.path, &path);
    let needed = match route.access {
        Access::Public => return Ok(Grant::default()),
        Access::Scope(scope) => scope,
        Access::ByKind {
            runs,
            secrets,
            other,
        } => match plural.as_deref() {
            Some("runs" | "run" | "rn") => runs,
            Some("secrets" | "secret" | "sec") => secrets,
            _ => other,
        },
        Access::MetricsReader => {
            if caller.loopback {
                return Ok(Grant::default());
            }
            Scope::RunsRead
        }
    };
    let Some(token) = caller.bearer.as_deref() else {
        if state.dev_mode && needed.is_read() {
            return Ok(Grant {
                token: "anonymous".into(),
                scopes: vec![Scope::ResourcesRead, Scope::RunsRead],
            });
        }
        return Err(ApiError::Unauthorized(format!(
            "this request needs a bearer token with the scope {} (Authorization: Bearer <token>; see `flotilla token create`)",
            needed.as_str()
        )));
    };
    let hash = hash_token(token);
    let record = match state.tokens.get(&hash) {
        Some(record) => record,
        None => {
            let record = state.store.find_token(&hash).await?.ok_or_else(|| {
                ApiError::Unauthorized("the bearer token is not valid (unknown or revoked)".into())
            })?;
            state.tokens.put(hash, record.clone());
            record
        }
    };
    if record.expires_at.is_some_and(|t| t <= chrono::Utc::now()) {
        return Err(ApiError::Unauthorized(format!(
            "token {:?} has expired",
            record.name
        )));
    }
    let grant = Grant {
        token: record.name,
        scopes: record
            .scopes
            .iter()
            .filter_map(|s| Scope::parse(s))
            .collect(),
    };
    grant.require(needed)?;
    Ok(grant)
}

/// Tokens found recently, so that a client polling hundreds of times a second does not
/// cost a database read per request. Only tokens that exist are kept. A revocation
/// through this server clears the cache at once; one made through another server sharing
/// the database takes effect here within [`TOKEN_CACHE_TTL`].
#[derive(Clone, Default)]
pub struct TokenCache {
    inner: std::sync::Arc<std::sync::Mutex<HashMap<String, (Instant, TokenRecord)>>>,
}

/// How long a token found in the store is trusted without reading it again.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(2);

/// Tokens kept at most; beyond, the cache starts over.
const TOKEN_CACHE_MAX: usize = 1_024;

impl TokenCache {
    fn get(&self, hash: &str) -> Option<TokenRecord> {
        let tokens = self.lock();
        let (found, record) = tokens.get(hash)?;
        (found.elapsed() < TOKEN_CACHE_TTL).then(|| record.clone())
    }

    fn put(&self, hash: String, record: TokenRecord) {
        let mut tokens = self.lock();
        if tokens.len() >= TOKEN_CACHE_MAX {
            tokens.clear();
        }
        tokens.insert(hash, (Instant::now(), record));
    }

    /// Forgets every token (after a revocation).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, TokenRecord)>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `{plural}` segment of a request path for routes that have one.
fn plural_of(actual: &str, template: &str) -> Option<String> {
    let index = template
        .split('/')
        .position(|segment| segment == "{plural}")?;
    actual.split('/').nth(index).map(str::to_owned)
}
