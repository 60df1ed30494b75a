//! Webhooks and source routes:
//!
//! - `POST /hooks/git`: push deliveries (GitHub, GitLab, generic HMAC), verified by
//!   [`crate::source::git::push`] against `WEBHOOK_SECRET`; a push to the followed
//!   branch asks the git source for a sync (coalesced there). Public route: the
//!   signature is the authentication.
//! - `POST /hooks/pipelines/{name}` (key in `X-Flotilla-Webhook-Key`) and Fast-Flow's
//!   `POST /api/webhooks/{pipeline}/{key}`: create a Run (trigger `webhook`) of a
//!   pipeline in namespace `default` whose `spec.webhookKey` matches, compared in
//!   constant time. Optional JSON body `{"env_vars": {…}, "parameters": {…}}`: env vars
//!   are passed as given, each parameter `name` becomes `PARAM_<NAME>` (upper-cased,
//!   other characters `_`; on Fast-Flow's route it keeps its own name, as there), env
//!   vars win on a clash; non-string values are passed as
//!   JSON text. Unknown pipeline, pipeline without key and wrong key all answer the same
//!   404. Limits: `spec.webhookRateLimit` runs per pipeline per minute (default
//!   `--webhook-rate-limit`, 30, as Fast-Flow allowed a client; 0 turns it off), 60
//!   refused keys per minute overall (then 429 for everyone, to slow key guessing).
//!   `Idempotency-Key` names the run like `POST …/runs` does, so a redelivery returns
//!   the first run. Fast-Flow's route answers as Fast-Flow did: 200 with the run's `id`
//!   and `status` (`PENDING`), and the run itself under `run`; its `{pipeline}` is
//!   Fast-Flow's name (the folder, `nightly_etl`), and the key of a `schedules[]` entry
//!   with settings of its own runs that entry's Pipeline. A pipeline with `whenBusy:
//!   Reject` that is busy answers 429 `run.busy` on both routes ([`super::busy`]).
//! - `GET …/sources` and `POST …/sources/sync[?wait=true]`: sync status and manual sync.
//!
//! Handlers take [`HooksState`] (reached from `AppState` through `FromRef`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::busy::BusyPolicy;
use super::error::ApiError;
use super::runs::random_suffix;
use crate::resource::error::ManifestErrors;
use crate::resource::fastflow;
use crate::resource::manifest::Document;
use crate::resource::types::{PipelineSpec, RunStatus, run_name};
use crate::resource::validate::validate_document;
use crate::resource::{API_VERSION, DEFAULT_NAMESPACE, Kind, ObjectKey};
use crate::source::git::GitSource;
use crate::source::git::push::{
    Delivery, PushVerdict, WebhookSecret, classify, equal_in_constant_time, verify,
};
use crate::store::events::EventType;
use crate::store::{Store, StoreError};

/// Largest body of a pipeline trigger.
const MAX_TRIGGER_BODY: usize = 64 * 1024;
/// Runs one pipeline's webhook may create per minute unless the operator or the
/// pipeline says otherwise: what Fast-Flow allowed one client.
pub const TRIGGERS_PER_MINUTE: u32 = 30;
/// Refused trigger keys per minute, all pipelines together.
const REFUSALS_PER_MINUTE: f64 = 60.0;
/// Longest `POST …/sources/sync?wait=true` waits (below the API's request timeout).
const SYNC_WAIT: Duration = Duration::from_secs(50);

/// State of the webhook and source handlers.
#[derive(Clone)]
pub struct HooksState {
    store: Store,
    git: Option<GitSource>,
    secret: Option<WebhookSecret>,
    triggers: Arc<TokenBuckets>,
    /// Runs per pipeline per minute when the pipeline sets no limit; 0: none.
    trigger_limit: u32,
    refusals: Arc<TokenBuckets>,
    /// Whether a run is refused while its pipeline is busy (also for `POST …/runs`).
    pub(super) busy: BusyPolicy,
}

impl HooksState {
    /// State for `store`, the git source (if configured) and `WEBHOOK_SECRET`.
    pub fn new(store: Store, git: Option<GitSource>, webhook_secret: Option<&str>) -> Self {
        Self {
            store,
            git,
            secret: webhook_secret.and_then(WebhookSecret::new),
            triggers: Arc::new(TokenBuckets::default()),
            trigger_limit: TRIGGERS_PER_MINUTE,
            refusals: Arc::new(TokenBuckets::default()),
            busy: BusyPolicy::default(),
        }
    }

    /// Refuses runs of `whenBusy: Reject` pipelines while they are busy (see
    /// [`BusyPolicy`]).
    pub fn with_busy_policy(mut self, busy: BusyPolicy) -> Self {
        self.busy = busy;
        self
    }

    /// Runs per pipeline per minute for pipelines without `webhookRateLimit`; 0: none.
    pub fn with_trigger_limit(mut self, per_minute: u32) -> Self {
        self.trigger_limit = per_minute;
        self
    }

    fn git(&self) -> Result<&GitSource, ApiError> {
        self.git.as_ref().ok_or_else(|| {
            ApiError::NotFound("no git source is configured (flotilla serve --git-url)".into())
        })
    }
}

/// `POST /hooks/git`: a push delivery.
pub(super) async fn git_push(
    State(hooks): State<HooksState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let git = hooks.git()?;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = Delivery {
        github_signature: text("x-hub-signature-256"),
        generic_signature: text("x-flotilla-signature"),
        gitlab_token: text("x-gitlab-token"),
        github_event: text("x-github-event"),
        gitlab_event: text("x-gitlab-event"),
        body: &body,
    };
    if let Err(refused) = verify(hooks.secret.as_ref(), &delivery) {
        tracing::warn!("push delivery refused: {refused}");
        return Err(ApiError::Unauthorized(refused.to_string()));
    }
    Ok(match classify(git.branch(), &delivery) {
        PushVerdict::Ping => (StatusCode::OK, Json(json!({ "message": "pong" }))),
        PushVerdict::Ignored(message) => {
            (StatusCode::ACCEPTED, Json(json!({ "message": message })))
        }
        PushVerdict::Sync { after } => {
            git.sync_now();
            (
                StatusCode::ACCEPTED,
                Json(json!({ "message": "sync requested", "after": after })),
            )
        }
    })
}

/// `GET …/sources`: the sync status of every source that keeps one.
pub(super) async fn sources_list(State(hooks): State<HooksState>) -> Json<Value> {
    let items: Vec<Value> = hooks
        .git
        .iter()
        .filter_map(|git| serde_json::to_value(git.status()).ok())
        .collect();
    Json(json!({ "items": items }))
}

/// Query of the manual sync.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SyncQuery {
    /// Answer when the sync has finished (at most [`SYNC_WAIT`]).
    #[serde(default)]
    wait: bool,
}

/// `POST …/sources/sync`: sync the git source now. 202 with the status; with
/// `wait=true`, 200 with the status after the sync (202 if it takes too long).
pub(super) async fn sources_sync(
    State(hooks): State<HooksState>,
    Query(query): Query<SyncQuery>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let git = hooks.git()?;
    let ticket = git.sync_now();
    let (code, status) = if query.wait {
        match tokio::time::timeout(SYNC_WAIT, git.wait(ticket)).await {
            Ok(status) => (StatusCode::OK, status),
            Err(_) => (StatusCode::ACCEPTED, git.status()),
        }
    } else {
        (StatusCode::ACCEPTED, git.status())
    };
    Ok((code, Json(serde_json::to_value(status).unwrap_or_default())))
}

/// `POST /hooks/pipelines/{name}` with `X-Flotilla-Webhook-Key`.
pub(super) async fn pipeline_trigger(
    State(hooks): State<HooksState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = headers
        .get("x-flotilla-webhook-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    trigger_run(
        &hooks,
        &name,
        key.as_deref(),
        &headers,
        &body,
        Answer::Flotilla,
    )
    .await
}

/// How a trigger route answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The Run manifest (201 created, 200 for a redelivery).
    Flotilla,
    /// Fast-Flow's form: 200 with `id` and `status`, the run under `run`.
    FastFlow,
}

impl Answer {
    fn render(self, status: StatusCode, run: Value) -> Response {
        match self {
            Answer::Flotilla => (status, Json(run)).into_response(),
            Answer::FastFlow => {
                let phase = run["status"]["phase"].as_str().unwrap_or("Pending");
                let body = json!({
                    "id": run["metadata"]["name"],
                    "status": fastflow_status(phase),
                    "pipeline_name": run["spec"]["pipelineRef"]["name"],
                    "run": run,
                });
                (StatusCode::OK, Json(body)).into_response()
            }
        }
    }
}

/// Fast-Flow's name of a run phase.
fn fastflow_status(phase: &str) -> &'static str {
    match phase {
        "Running" => "RUNNING",
        "Succeeded" => "SUCCESS",
        "Failed" => "FAILED",
        "Cancelled" => "INTERRUPTED",
        _ => "PENDING",
    }
}

/// `POST /api/webhooks/{pipeline}/{key}`: Fast-Flow's form of the trigger.
pub(super) async fn pipeline_trigger_fastflow(
    State(hooks): State<HooksState>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pipeline = fastflow_target(&hooks.store, &name, &key).await?;
    trigger_run(
        &hooks,
        &pipeline,
        Some(&key),
        &headers,
        &body,
        Answer::FastFlow,
    )
    .await
}

/// The pipeline Fast-Flow's route runs. `name` is Fast-Flow's name of the pipeline (its
/// folder, `nightly_etl`: the Pipeline is `nightly-etl`), and `key` may be the
/// `webhook_key` of one of its `schedules[]` entries, which runs that entry's Pipeline
/// (named in the base Pipeline's run-configs annotation), as Fast-Flow ran that run
/// configuration. Without a match, the base name: the key check then refuses it.
async fn fastflow_target(store: &Store, name: &str, key: &str) -> Result<String, ApiError> {
    let pipeline_key = |name: &str| ObjectKey::new(Kind::Pipeline, DEFAULT_NAMESPACE, name);
    let base = match store.get(&pipeline_key(name)).await? {
        Some(found) => found,
        None => match fastflow::pipeline_name(name) {
            Ok(mapped) => match store.get(&pipeline_key(&mapped)).await? {
                Some(found) => found,
                None => return Ok(mapped),
            },
            Err(_) => return Ok(name.to_owned()),
        },
    };
    let base_name = base.key.name.clone();
    if spec_key_matches(Some(&base.spec_as::<PipelineSpec>()?), Some(key)) {
        return Ok(base_name);
    }
    let configs = base
        .annotations
        .get(fastflow::RUN_CONFIGS_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    for config in configs.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        if key_matches(store, config, Some(key)).await?.is_some() {
            return Ok(config.to_owned());
        }
    }
    Ok(base_name)
}

async fn trigger_run(
    hooks: &HooksState,
    pipeline: &str,
    key: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    answer: Answer,
) -> Result<Response, ApiError> {
    if let Err(retry_after) = hooks.refusals.check("", REFUSALS_PER_MINUTE) {
        return Ok(rate_limited(
            "too many refused webhook keys; retry later",
            retry_after,
        ));
    }
    let Some(spec) = key_matches(&hooks.store, pipeline, key).await? else {
        let _ = hooks.refusals.take("", REFUSALS_PER_MINUTE);
        return Err(ApiError::NotFound(format!(
            "no pipeline {pipeline:?} accepts webhooks with this key"
        )));
    };
    if body.len() > MAX_TRIGGER_BODY {
        return Err(ApiError::bad_request(
            "webhook.body_too_large",
            format!("the body is larger than {MAX_TRIGGER_BODY} bytes"),
        ));
    }
    let names = match answer {
        Answer::Flotilla => ParameterNames::Prefixed,
        Answer::FastFlow => ParameterNames::AsGiven,
    };
    let env = trigger_env_with(body, names)?;
    let idempotency_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let name = match idempotency_key {
        Some(key) => run_name(
            pipeline,
            &hex::encode(Sha256::digest(format!("{DEFAULT_NAMESPACE}/{key}")))[..10],
        ),
        None => run_name(pipeline, &random_suffix()),
    };
    let run_key = ObjectKey::new(Kind::Run, DEFAULT_NAMESPACE, name.clone());
    if idempotency_key.is_some()
        && let Some(existing) = hooks.store.get(&run_key).await?
    {
        return Ok(answer.render(StatusCode::OK, existing.to_manifest()));
    }
    let limit = spec.webhook_rate_limit.unwrap_or(hooks.trigger_limit);
    if limit > 0
        && let Err(retry_after) = hooks.triggers.take(pipeline, f64::from(limit))
    {
        return Ok(rate_limited(
            &format!("pipeline {pipeline} was triggered too often; retry later"),
            retry_after,
        ));
    }
    hooks
        .busy
        .admit(&hooks.store, DEFAULT_NAMESPACE, pipeline, Some(&spec))
        .await?;
    let manifest = json!({
        "apiVersion": API_VERSION,
        "kind": "Run",
        "metadata": { "name": name, "namespace": DEFAULT_NAMESPACE },
        "spec": { "pipelineRef": { "name": pipeline }, "trigger": "webhook", "env": env },
    });
    let object = validate_document(&Document::synthetic("<webhook>", 1, manifest))
        .map_err(|errors| ApiError::Invalid(ManifestErrors(errors)))?;
    let status = serde_json::to_value(RunStatus::default()).ok();
    match hooks.store.create(object, None, status).await {
        Ok(run) => {
            let message = format!("created by the webhook of pipeline {pipeline}");
            if let Err(e) = hooks
                .store
                .record_event(&run.key, EventType::Normal, "Triggered", &message)
                .await
            {
                tracing::warn!("cannot record the trigger event of {}: {e}", run.key);
            }
            Ok(answer.render(StatusCode::CREATED, run.to_manifest()))
        }
        Err(StoreError::AlreadyExists(key)) if idempotency_key.is_some() => {
            let existing = hooks
                .store
                .get(&key)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
            Ok(answer.render(StatusCode::OK, existing.to_manifest()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The pipeline's spec when `pipeline` exists in `default`, has a webhook key, and
/// `given` equals it. The comparison runs (against a dummy) even when there is nothing
/// to compare with.
async fn key_matches(
    store: &Store,
    pipeline: &str,
    given: Option<&str>,
) -> Result<Option<PipelineSpec>, ApiError> {
    let spec = store
        .get(&ObjectKey::new(Kind::Pipeline, DEFAULT_NAMESPACE, pipeline))
        .await?
        .map(|p| p.spec_as::<PipelineSpec>())
        .transpose()?;
    let matches = spec_key_matches(spec.as_ref(), given);
    Ok(spec.filter(|_| matches))
}

/// True when `spec` has a webhook key and `given` equals it, compared in constant time
/// (against a dummy when there is nothing to compare with).
fn spec_key_matches(spec: Option<&PipelineSpec>, given: Option<&str>) -> bool {
    let stored = spec
        .and_then(|spec| spec.webhook_key.as_deref())
        .filter(|key| !key.is_empty());
    let expected = stored.unwrap_or("\u{0}no key\u{0}");
    let equal = equal_in_constant_time(given.unwrap_or_default().as_bytes(), expected.as_bytes());
    equal && stored.is_some() && given.is_some()
}

/// How a trigger's `parameters` are named in the run's environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParameterNames {
    /// `PARAM_<NAME>` (Flotilla's route).
    Prefixed,
    /// As given (Fast-Flow's route, as Fast-Flow passed them).
    AsGiven,
}

/// The run's env from a trigger body `{"env_vars": {…}, "parameters": {…}}`, parameters
/// as `PARAM_<NAME>`.
pub fn trigger_env(body: &[u8]) -> Result<BTreeMap<String, String>, ApiError> {
    trigger_env_with(body, ParameterNames::Prefixed)
}

/// [`trigger_env`] with the parameters named as `names` says.
pub fn trigger_env_with(
    body: &[u8],
    names: ParameterNames,
) -> Result<BTreeMap<String, String>, ApiError> {
    #[derive(Default, Deserialize)]
    struct TriggerBody {
        #[serde(default)]
        env_vars: BTreeMap<String, Value>,
        #[serde(default)]
        parameters: BTreeMap<String, Value>,
    }
    let parsed: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(
                "webhook.body_invalid",
                format!(
                    "the body must be JSON {{\"env_vars\": {{…}}, \"parameters\": {{…}}}}: {e}"
                ),
            )
        })?
    };
    let text = |value: Value| match value {
        Value::String(text) => text,
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut env: BTreeMap<String, String> = parsed
        .parameters
        .into_iter()
        .map(|(name, value)| match names {
            ParameterNames::Prefixed => (parameter_env_name(&name), text(value)),
            ParameterNames::AsGiven => (name, text(value)),
        })
        .collect();
    env.extend(
        parsed
            .env_vars
            .into_iter()
            .map(|(name, value)| (name, text(value))),
    );
    Ok(env)
}

/// `PARAM_<NAME>`: upper-cased, anything but letters, digits and `_` as `_`.
fn parameter_env_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("PARAM_{cleaned}")
}

/// A 429 problem document with `Retry-After`.
fn rate_limited(message: &str, retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs().max(1);
    let body = json!({
        "type": "https://flotilla.dev/problems/rate.limited",
        "title": "Too Many Requests",
        "status": 429,
        "code": "rate.limited",
        "detail": message,
        "errors": [],
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Token buckets keyed by name: `capacity` tokens (given with each call, so a limit
/// changed meanwhile applies at once), refilled evenly over a minute.
#[derive(Debug, Default)]
struct TokenBuckets {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 4096;

impl TokenBuckets {
    fn refilled(tokens: f64, since: Instant, now: Instant, capacity: f64) -> f64 {
        let rate = capacity / 60.0;
        (tokens + now.duration_since(since).as_secs_f64() * rate).min(capacity)
    }

    /// `Err(wait)` when `key` has no token left.
    fn check(&self, key: &str, capacity: f64) -> Result<(), Duration> {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let tokens = buckets.get(key).map_or(capacity, |(tokens, at)| {
            Self::refilled(*tokens, *at, now, capacity)
        });
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) * 60.0 / capacity))
        }
    }

    /// Takes a token of `key`, or `Err(wait)` when none is left.
    fn take(&self, key: &str, capacity: f64) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if buckets.len() >= MAX_BUCKETS {
            // Idle long enough to be full again under any limit up to this one.
            buckets
                .retain(|_, (tokens, at)| Self::refilled(*tokens, *at, now, capacity) < capacity);
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((capacity, now));
        *tokens = Self::refilled(*tokens, *at, now, capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) * 60.0 / capacity))
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use tempfile::TempDir;
    use tokio_util::sync::{CancellationToken, DropGuard};
    use tower::ServiceExt;

    use super::*;
    use crate::resource::DesiredObject;
    use crate::server::auth::{generate_token, hash_token};
    use crate::server::{AppState, HttpOptions};
    use crate::source::git::GitConfig;
    use crate::source::git::push::sign;

    const SECRET: &str = "hook-secret";
    /// The source routes as the production table declares them.
    const SOURCES: &str = "/apis/flotilla.dev/v1alpha1/sources";
    const SOURCES_SYNC: &str = "/apis/flotilla.dev/v1alpha1/sources/sync";

    /// A store, a git source, and the production router (`ROUTES` and the auth layer)
    /// serving them with the webhook secret [`SECRET`].
    struct Fixture {
        dir: TempDir,
        store: Store,
        git: GitSource,
        app: Router,
        shutdown: CancellationToken,
        _stop: DropGuard,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_sqlite(&dir.path().join("db.sqlite"))
            .await
            .expect("store");
        let git = GitSource::new(GitConfig::new("/nonexistent/repo.git"), dir.path())
            .expect("valid settings");
        let shutdown = CancellationToken::new();
        let app = Fixture::serve(
            &store,
            dir.path(),
            HooksState::new(store.clone(), Some(git.clone()), Some(SECRET)),
            &shutdown,
        );
        Fixture {
            dir,
            store,
            git,
            app,
            _stop: shutdown.clone().drop_guard(),
            shutdown,
        }
    }

    impl Fixture {
        /// The production router of `flotilla serve` over `hooks`.
        fn serve(
            store: &Store,
            data_dir: &std::path::Path,
            hooks: HooksState,
            shutdown: &CancellationToken,
        ) -> Router {
            let state = AppState::new(store.clone(), data_dir, hooks, shutdown.clone());
            crate::server::router(state, &HttpOptions::default())
        }

        /// The production router over other hooks settings on the same store.
        fn app_with(&self, git: Option<GitSource>, secret: Option<&str>) -> Router {
            let hooks = HooksState::new(self.store.clone(), git, secret);
            Self::serve(&self.store, self.dir.path(), hooks, &self.shutdown)
        }

        /// A new API token with `scopes`, stored the way `flotilla token create` does.
        async fn token(&self, scopes: &[&str]) -> String {
            let token = generate_token();
            let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
            let created = self
                .store
                .create_token(
                    &token[token.len() - 12..],
                    &hash_token(&token),
                    &scopes,
                    None,
                )
                .await
                .expect("token stored");
            assert!(created, "a fresh token name");
            token
        }
    }

    async fn send(
        app: &Router,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from(body.to_owned())).expect("request");
        let response = app.clone().oneshot(request).await.expect("answered");
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, value)
    }

    fn push_body(branch: &str) -> String {
        json!({ "ref": format!("refs/heads/{branch}"), "after": "abc" }).to_string()
    }

    #[tokio::test]
    async fn push_signatures_good_bad_and_missing() {
        let f = fixture().await;
        let body = push_body("main");

        let forged = sign("guess", body.as_bytes());
        let (status, headers, problem) = send(
            &f.app,
            "POST",
            "/hooks/git",
            &[("x-hub-signature-256", &forged), ("x-github-event", "push")],
            &body,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(problem["code"], "auth.unauthenticated");
        assert!(!f.git.status().sync_requested, "nothing happens");

        let (status, _, problem) = send(
            &f.app,
            "POST",
            "/hooks/git",
            &[("x-github-event", "push")],
            &body,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("missing")
        );
        let (status, _, _) = send(
            &f.app,
            "POST",
            "/hooks/git",
            &[("x-gitlab-token", "wrong"), ("x-gitlab-event", "Push Hook")],
            &body,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(!f.git.status().sync_requested, "nothing happens");

        let good = sign(SECRET, body.as_bytes());
        let (status, _, answer) = send(
            &f.app,
            "POST",
            "/hooks/git",
            &[("x-hub-signature-256", &good), ("x-github-event", "push")],
            &body,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["message"], "sync requested");
        assert!(f.git.status().sync_requested);
    }

    #[tokio::test]
    async fn gitlab_and_generic_deliveries_sync() {
        for headers in [
            vec![("x-gitlab-token", SECRET), ("x-gitlab-event", "Push Hook")],
            vec![("x-flotilla-signature", "")],
        ] {
            let f = fixture().await;
            let body = push_body("main");
            let signature = sign(SECRET, body.as_bytes());
            let headers: Vec<(&str, &str)> = headers
                .into_iter()
                .map(|(n, v)| (n, if v.is_empty() { signature.as_str() } else { v }))
                .collect();
            let (status, _, answer) = send(&f.app, "POST", "/hooks/git", &headers, &body).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            assert!(f.git.status().sync_requested);
        }
    }

    #[tokio::test]
    async fn other_branches_and_pings_do_not_sync() {
        let f = fixture().await;
        let body = push_body("other-branch");
        let signature = sign(SECRET, body.as_bytes());
        let (status, _, answer) = send(
            &f.app,
            "POST",
            "/hooks/git",
            &[
                ("x-hub-signature-256", &signature),
                ("x-github-event", "push"),
            ],
            &body,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(answer["message"], "ignored: push to other-branch");

        let ping = r#"{"zen":"Design for failure."}"#;
        let signature = sign(SECRET, ping.as_bytes());
        let (status, _, answer) = send(
            &f.app,
            "POST",
            "/hooks/git",
            &[
                ("x-hub-signature-256", &signature),
                ("x-github-event", "ping"),
            ],
            ping,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["message"], "pong");
        assert!(!f.git.status().sync_requested);
    }

    #[tokio::test]
    async fn without_secret_or_source_nothing_is_accepted() {
        let f = fixture().await;
        let no_secret = f.app_with(Some(f.git.clone()), None);
        let body = push_body("main");
        let signature = sign("", body.as_bytes());
        let (status, _, problem) = send(
            &no_secret,
            "POST",
            "/hooks/git",
            &[("x-hub-signature-256", &signature)],
            &body,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("WEBHOOK_SECRET")
        );
        assert!(!f.git.status().sync_requested, "nothing happens");

        let no_git = f.app_with(None, Some(SECRET));
        let admin = f.token(&["admin"]).await;
        let bearer = format!("Bearer {admin}");
        let auth = [("authorization", bearer.as_str())];
        let (status, _, _) = send(&no_git, "POST", "/hooks/git", &[], &body).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = send(&no_git, "POST", SOURCES_SYNC, &auth, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, list) = send(&no_git, "GET", SOURCES, &auth, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["items"], json!([]));
    }

    #[tokio::test]
    async fn sources_are_listed_and_synced_on_request() {
        let f = fixture().await;
        let reader = format!("Bearer {}", f.token(&["resources:read"]).await);
        let syncer = format!("Bearer {}", f.token(&["sources:write"]).await);
        let (status, _, list) = send(
            &f.app,
            "GET",
            SOURCES,
            &[("authorization", reader.as_str())],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["items"][0]["kind"], "git");
        assert_eq!(list["items"][0]["branch"], "main");
        assert_eq!(
            list["items"][0]["manager"],
            "git:/nonexistent/repo.git#main"
        );
        let (status, _, answer) = send(
            &f.app,
            "POST",
            SOURCES_SYNC,
            &[("authorization", syncer.as_str())],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(answer["syncRequested"], true);
    }

    #[tokio::test]
    async fn source_routes_need_their_scopes_and_hooks_need_none() {
        let f = fixture().await;
        let reader = format!("Bearer {}", f.token(&["resources:read"]).await);
        let syncer = format!("Bearer {}", f.token(&["sources:write"]).await);
        let (status, _, problem) = send(&f.app, "GET", SOURCES, &[], "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
        assert_eq!(problem["code"], "auth.unauthenticated");
        let (status, _, problem) = send(&f.app, "POST", SOURCES_SYNC, &[], "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
        let (status, _, problem) = send(
            &f.app,
            "POST",
            SOURCES_SYNC,
            &[("authorization", reader.as_str())],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("sources:write"),
            "{problem}"
        );
        assert!(!f.git.status().sync_requested, "refused before the handler");
        let (status, _, problem) = send(
            &f.app,
            "GET",
            SOURCES,
            &[("authorization", syncer.as_str())],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
        let (status, _, problem) = send(
            &f.app,
            "POST",
            "/hooks/git",
            &[("authorization", "Bearer flt_not_a_token")],
            &push_body("main"),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "the signature, not a bearer token, decides: {problem}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("missing"),
            "{problem}"
        );
    }

    async fn add_pipeline(store: &Store, name: &str, spec: Value) {
        store
            .create(
                DesiredObject {
                    key: ObjectKey::new(Kind::Pipeline, DEFAULT_NAMESPACE, name),
                    labels: BTreeMap::new(),
                    annotations: BTreeMap::new(),
                    spec: spec.into(),
                },
                None,
                None,
            )
            .await
            .expect("pipeline created");
    }

    #[tokio::test]
    async fn a_trigger_with_the_key_creates_a_run() {
        let f = fixture().await;
        add_pipeline(&f.store, "etl", json!({ "webhookKey": "k-123" })).await;
        let body = r#"{"env_vars": {"MODE": "full"}, "parameters": {"limit": 5, "dry-run": true}}"#;
        let (status, _, run) = send(
            &f.app,
            "POST",
            "/hooks/pipelines/etl",
            &[("x-flotilla-webhook-key", "k-123")],
            body,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{run}");
        assert_eq!(run["spec"]["trigger"], "webhook");
        assert_eq!(run["spec"]["pipelineRef"]["name"], "etl");
        assert_eq!(
            run["spec"]["env"],
            json!({ "MODE": "full", "PARAM_LIMIT": "5", "PARAM_DRY_RUN": "true" })
        );
        // Fast-Flow's route answers as Fast-Flow did: 200, `id` and `status`; its
        // parameters reach the script under their own names, as in Fast-Flow.
        let (status, _, answer) = send(
            &f.app,
            "POST",
            "/api/webhooks/etl/k-123",
            &[],
            r#"{"env_vars": {"MODE": "full"}, "parameters": {"limit": 5}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["status"], "PENDING", "{answer}");
        assert_eq!(answer["pipeline_name"], "etl", "{answer}");
        let id = answer["id"].as_str().expect("an id");
        assert_eq!(answer["run"]["metadata"]["name"], id);
        assert_eq!(
            answer["run"]["spec"]["env"],
            json!({ "MODE": "full", "limit": "5" })
        );
        let runs = f.store.list(Kind::Run, None).await.expect("runs");
        assert_eq!(runs.len(), 2);
        assert!(
            runs.iter().any(|r| r.key.name == id),
            "the id names the run"
        );
    }

    /// `whenBusy: Reject` answers 429 and creates nothing while the pipeline has
    /// `maxInstances` unfinished runs or the operator `--max-concurrent-runs`, on the
    /// webhook routes and `POST …/runs`; `Queue` (the default) creates the run; the
    /// operator's `--when-busy reject` applies to pipelines that set nothing.
    #[tokio::test]
    async fn a_busy_pipeline_that_rejects_answers_429_and_creates_nothing() {
        let f = fixture().await;
        add_pipeline(
            &f.store,
            "strict",
            json!({ "webhookKey": "k", "maxInstances": 1, "whenBusy": "Reject" }),
        )
        .await;
        add_pipeline(
            &f.store,
            "patient",
            json!({ "webhookKey": "k", "maxInstances": 1 }),
        )
        .await;
        let runs = || async { f.store.list(Kind::Run, None).await.expect("runs").len() };
        let trigger = |app: Router, pipeline: &'static str| async move {
            send(
                &app,
                "POST",
                &format!("/api/webhooks/{pipeline}/k"),
                &[],
                "{}",
            )
            .await
        };
        // Free: the first run of each is created.
        for pipeline in ["strict", "patient"] {
            let (status, _, answer) = trigger(f.app.clone(), pipeline).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        }
        assert_eq!(runs().await, 2);
        // Busy: the strict one refuses, the patient one queues.
        let (status, _, problem) = trigger(f.app.clone(), "strict").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
        assert_eq!(problem["code"], "run.busy", "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("maxInstances")
        );
        let (status, _, answer) = trigger(f.app.clone(), "patient").await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(runs().await, 3);
        let token = f.token(&["runs:write"]).await;
        let (status, _, problem) = send(
            &f.app,
            "POST",
            "/apis/flotilla.dev/v1alpha1/namespaces/default/runs",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
            r#"{"pipelineRef": {"name": "strict"}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
        assert_eq!(runs().await, 3, "nothing was created");

        // The strict run ends: a run is taken again.
        let strict_run = f
            .store
            .list(Kind::Run, None)
            .await
            .expect("runs")
            .into_iter()
            .find(|r| r.spec["pipelineRef"]["name"] == "strict")
            .expect("the strict run");
        f.store
            .update_status(&strict_run.key, None, json!({ "phase": "Succeeded" }))
            .await
            .expect("finished");
        let (status, _, answer) = trigger(f.app.clone(), "strict").await;
        assert_eq!(status, StatusCode::OK, "{answer}");

        // The operator's default and its global limit: 3 unfinished runs (both patient
        // ones and the second strict one) of at most 3.
        let hooks = HooksState::new(f.store.clone(), None, None).with_busy_policy(BusyPolicy {
            default: crate::resource::types::WhenBusy::Reject,
            max_concurrent_runs: Some(3),
        });
        let app = Fixture::serve(&f.store, f.dir.path(), hooks, &f.shutdown);
        add_pipeline(&f.store, "unlimited", json!({ "webhookKey": "k" })).await;
        let (status, _, problem) = trigger(app.clone(), "unlimited").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("--max-concurrent-runs"),
            "{problem}"
        );
    }

    /// Fast-Flow's route names the pipeline by its folder (`nightly_etl`) and takes the
    /// key of a `schedules[]` entry too, which runs that entry's Pipeline.
    #[tokio::test]
    async fn fast_flows_route_finds_folder_names_and_run_configuration_keys() {
        let f = fixture().await;
        f.store
            .create(
                DesiredObject {
                    key: ObjectKey::new(Kind::Pipeline, DEFAULT_NAMESPACE, "nightly-etl"),
                    labels: BTreeMap::new(),
                    annotations: BTreeMap::from([(
                        fastflow::RUN_CONFIGS_ANNOTATION.to_owned(),
                        "nightly-etl-prod".to_owned(),
                    )]),
                    spec: json!({ "webhookKey": "base-key" }).into(),
                },
                None,
                None,
            )
            .await
            .expect("pipeline created");
        add_pipeline(
            &f.store,
            "nightly-etl-prod",
            json!({ "webhookKey": "prod-key" }),
        )
        .await;
        for (key, pipeline) in [
            ("base-key", "nightly-etl"),
            ("prod-key", "nightly-etl-prod"),
        ] {
            let (status, _, answer) = send(
                &f.app,
                "POST",
                &format!("/api/webhooks/nightly_etl/{key}"),
                &[],
                "{}",
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_eq!(answer["run"]["spec"]["pipelineRef"]["name"], pipeline);
        }
        let (status, _, problem) =
            send(&f.app, "POST", "/api/webhooks/nightly_etl/other", &[], "{}").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    }

    #[tokio::test]
    async fn wrong_key_unknown_pipeline_and_keyless_pipeline_look_alike() {
        let f = fixture().await;
        add_pipeline(&f.store, "etl", json!({ "webhookKey": "k-123" })).await;
        add_pipeline(&f.store, "keyless", json!({})).await;
        let mut details = Vec::new();
        for (uri, headers) in [
            (
                "/hooks/pipelines/etl",
                vec![("x-flotilla-webhook-key", "k-124")],
            ),
            ("/hooks/pipelines/etl", vec![]),
            (
                "/hooks/pipelines/ghost",
                vec![("x-flotilla-webhook-key", "k-123")],
            ),
            (
                "/hooks/pipelines/keyless",
                vec![("x-flotilla-webhook-key", "")],
            ),
            ("/api/webhooks/etl/k-12", vec![]),
        ] {
            let (status, _, problem) = send(&f.app, "POST", uri, &headers, "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            details.push(problem["code"].clone());
        }
        assert!(details.iter().all(|d| d == "resource.not_found"));
        assert!(
            f.store
                .list(Kind::Run, None)
                .await
                .expect("runs")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn idempotency_key_makes_one_run() {
        let f = fixture().await;
        add_pipeline(&f.store, "etl", json!({ "webhookKey": "k" })).await;
        let headers = [
            ("x-flotilla-webhook-key", "k"),
            ("idempotency-key", "delivery-1"),
        ];
        let (first, _, run) = send(&f.app, "POST", "/hooks/pipelines/etl", &headers, "").await;
        let (again, _, same) = send(&f.app, "POST", "/hooks/pipelines/etl", &headers, "").await;
        assert_eq!((first, again), (StatusCode::CREATED, StatusCode::OK));
        assert_eq!(run["metadata"]["name"], same["metadata"]["name"]);
        assert_eq!(f.store.list(Kind::Run, None).await.expect("runs").len(), 1);
    }

    #[tokio::test]
    async fn triggers_are_rate_limited_per_pipeline() {
        let f = fixture().await;
        add_pipeline(&f.store, "etl", json!({ "webhookKey": "k" })).await;
        add_pipeline(&f.store, "other", json!({ "webhookKey": "k" })).await;
        let headers = [("x-flotilla-webhook-key", "k")];
        for _ in 0..TRIGGERS_PER_MINUTE as usize {
            let (status, _, _) = send(&f.app, "POST", "/hooks/pipelines/etl", &headers, "").await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let (status, response_headers, problem) =
            send(&f.app, "POST", "/hooks/pipelines/etl", &headers, "").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(problem["code"], "rate.limited");
        assert!(response_headers.contains_key(header::RETRY_AFTER));
        let (status, _, _) = send(&f.app, "POST", "/hooks/pipelines/other", &headers, "").await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "other pipelines are not affected"
        );
    }

    #[tokio::test]
    async fn a_pipelines_own_limit_and_the_operators_apply_and_zero_is_no_limit() {
        let f = fixture().await;
        add_pipeline(
            &f.store,
            "tight",
            json!({ "webhookKey": "k", "webhookRateLimit": 2 }),
        )
        .await;
        add_pipeline(
            &f.store,
            "open",
            json!({ "webhookKey": "k", "webhookRateLimit": 0 }),
        )
        .await;
        add_pipeline(&f.store, "default", json!({ "webhookKey": "k" })).await;
        let headers = [("x-flotilla-webhook-key", "k")];
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(
                send(&f.app, "POST", "/hooks/pipelines/tight", &headers, "")
                    .await
                    .0,
            );
        }
        assert_eq!(
            statuses,
            [
                StatusCode::CREATED,
                StatusCode::CREATED,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
        for _ in 0..TRIGGERS_PER_MINUTE + 5 {
            let (status, _, _) = send(&f.app, "POST", "/hooks/pipelines/open", &headers, "").await;
            assert_eq!(status, StatusCode::CREATED, "0 is no limit");
        }
        // An operator started with --webhook-rate-limit 1 caps pipelines without their own.
        let hooks = HooksState::new(f.store.clone(), None, None).with_trigger_limit(1);
        let app = Fixture::serve(&f.store, f.dir.path(), hooks, &f.shutdown);
        let first = send(&app, "POST", "/hooks/pipelines/default", &headers, "")
            .await
            .0;
        let second = send(&app, "POST", "/hooks/pipelines/default", &headers, "")
            .await
            .0;
        assert_eq!(
            (first, second),
            (StatusCode::CREATED, StatusCode::TOO_MANY_REQUESTS)
        );
        // And --webhook-rate-limit 0 lifts it.
        let hooks = HooksState::new(f.store.clone(), None, None).with_trigger_limit(0);
        let app = Fixture::serve(&f.store, f.dir.path(), hooks, &f.shutdown);
        for _ in 0..TRIGGERS_PER_MINUTE + 5 {
            let (status, _, _) = send(&app, "POST", "/hooks/pipelines/default", &headers, "").await;
            assert_eq!(status, StatusCode::CREATED, "no limit");
        }
    }

    #[tokio::test]
    async fn bad_bodies_are_refused() {
        let f = fixture().await;
        add_pipeline(&f.store, "etl", json!({ "webhookKey": "k" })).await;
        let headers = [("x-flotilla-webhook-key", "k")];
        let (status, _, problem) = send(
            &f.app,
            "POST",
            "/hooks/pipelines/etl",
            &headers,
            "{not json",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(problem["code"], "webhook.body_invalid");
        let (status, _, problem) = send(
            &f.app,
            "POST",
            "/hooks/pipelines/etl",
            &headers,
            r#"{"env_vars": {"1BAD": "x"}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    }

    #[test]
    fn parameter_names_become_env_names() {
        assert_eq!(parameter_env_name("limit"), "PARAM_LIMIT");
        assert_eq!(parameter_env_name("dry-run.mode"), "PARAM_DRY_RUN_MODE");
    }
}
