//! The production HTTP surface of a real `flotilla serve` (Docker reached through the
//! project's HAProxy socket proxy): the access rule of every route, written by hand in
//! `EXPECTED_ACCESS` and checked against `ROUTES` and the running server (401, 403,
//! success), token expiry and revocation, the generated admin token, `--dev`,
//! CORS, the OpenAPI document, run log streams (SSE resume, keep-alive, stalled
//! clients), watches, idempotent run creation, Prometheus metrics, readiness and a
//! graceful shutdown that leaves runs running. Each test has its own proxy, data dir and
//! operator instance (see `support::docker` and `support::http`), so tests run in
//! parallel and twice in a row.

#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use flotilla::server::auth::Scope;
use flotilla::server::routes::{Access, ROUTES};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::docker::{Fixture, RUN_TIMEOUT, attempts, inspect_container, phase, stdout_lines};
use support::http::{
    ApiOperator, NdjsonStream, ServeOptions, SseItem, name_of, non_loopback_ipv4,
    serve_expecting_exit,
};

const API: &str = "/apis/flotilla.dev/v1alpha1";

const HELLO: &str = "print(\"hello from flotilla\", flush=True)\n";

/// 300 numbered lines over about six seconds.
const THREE_HUNDRED_LINES: &str = r#"import time
for i in range(1, 301):
    print(f"line {i}", flush=True)
    time.sleep(0.02)
"#;

/// Silent for 20 s (longer than the 15 s keep-alive interval), then one line.
const SILENT_FOR_20_SECONDS: &str = r#"import time
time.sleep(20)
print("awake", flush=True)
"#;

/// A pipeline printing `lines` lines of about 110 bytes in one burst.
fn flood(lines: usize) -> String {
    format!(
        "import sys\npad = \"x\" * 100\nfor i in range(1, {}):\n    sys.stdout.write(f\"line {{i}} {{pad}}\\n\")\nsys.stdout.flush()\n",
        lines + 1
    )
}

/// Megabytes of output: more than a stalled client's socket buffers and its bounded
/// channel hold together, less than one 10 MB json-file log of Docker (see
/// [`output_beyond_one_docker_log_file_is_stored_and_served_completely`]).
const FLOOD_LINES: usize = 45_000;

/// A tick every half second for 15 s.
const TICKS: usize = 30;
const SLOW_TICKS: &str = r#"import time
for i in range(30):
    print(f"tick {i}", flush=True)
    time.sleep(0.5)
"#;

fn numbered(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("line {i}")).collect()
}

/// A Pipeline applied over the API (manager `cli`) running the `hello` folder.
fn pipeline_manifest(name: &str, timeout: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n  source: {{ path: hello }}\n  timeout: {timeout}\n"
    )
}

fn secret_manifest(name: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: {name}\nspec:\n  stringData:\n    TOKEN: s3cret\n"
    )
}

/// A fixture with the `hello` pipeline folder and an operator started with `options`.
async fn hello_operator(options: &ServeOptions) -> (Fixture, ApiOperator) {
    let fixture = Fixture::new();
    fixture.write_pipeline("hello", HELLO, "", "");
    let operator = ApiOperator::start(&fixture, options);
    operator.wait_for_object("pipelines", "hello").await;
    (fixture, operator)
}

// ---------------------------------------------------------------------------------------
// The scope matrix

/// Objects the matrix's `{name}` segments point at; `doomed-*` are the ones deleted.
const TARGET_PIPELINE: &str = "hello";
const DOOMED_PIPELINE: &str = "doomed-pipeline";
const TARGET_RUN: &str = "target-run";
const DOOMED_RUN: &str = "doomed-run";
const TARGET_SECRET: &str = "target-secret";
const DOOMED_SECRET: &str = "doomed-secret";
const DOOMED_TOKEN: &str = "doomed-token";

/// Who may call a route, as the README ("API and tokens", "Webhooks") and DESIGN state
/// it. Written out by hand in [`EXPECTED_ACCESS`], never read from `ROUTES`, so a route
/// declared with the wrong scope fails here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Anyone, no token.
    Open,
    /// A token with this scope.
    Needs(&'static str),
    /// `runs:read`, or any caller on the loopback interface (Prometheus).
    RunsReadOrLoopback,
    /// Decided by the `{plural}` segment: runs, secrets, every other kind.
    PerKind {
        runs: &'static str,
        secrets: &'static str,
        other: &'static str,
    },
}

use Rule::{Needs, Open, PerKind, RunsReadOrLoopback};

/// `GET …/{plural}`: runs need `runs:read`; secrets (metadata only) and the other kinds
/// `resources:read`.
const READ_BY_KIND: Rule = PerKind {
    runs: "runs:read",
    secrets: "resources:read",
    other: "resources:read",
};

/// `DELETE …/{plural}/{name}`: each kind's write scope.
const WRITE_BY_KIND: Rule = PerKind {
    runs: "runs:write",
    secrets: "secrets:write",
    other: "resources:write",
};

/// Every route of the API with the access it needs: method, path, rule. A reviewer
/// checks this table against the README; the tests check `ROUTES` and the running
/// server against it.
#[rustfmt::skip]
const EXPECTED_ACCESS: &[(&str, &str, Rule)] = &[
    ("GET",    "/",                                                                    Open),
    ("GET",    "/healthz",                                                             Open),
    ("GET",    "/readyz",                                                              Open),
    ("GET",    "/version",                                                             Open),
    ("GET",    "/openapi.json",                                                        Open),
    ("GET",    "/metrics",                                                             RunsReadOrLoopback),
    ("POST",   "/hooks/git",                                                           Open),
    ("POST",   "/hooks/pipelines/{name}",                                              Open),
    ("POST",   "/api/webhooks/{pipeline}/{key}",                                       Open),
    ("GET",    "/apis/flotilla.dev/v1alpha1/sources",                                  Needs("resources:read")),
    ("GET",    "/apis/flotilla.dev/v1alpha1/leader",                                   Needs("resources:read")),
    ("POST",   "/apis/flotilla.dev/v1alpha1/sources/sync",                             Needs("sources:write")),
    ("POST",   "/apis/flotilla.dev/v1alpha1/apply",                                    Needs("resources:write")),
    ("GET",    "/apis/flotilla.dev/v1alpha1/events",                                   Needs("resources:read")),
    ("POST",   "/apis/flotilla.dev/v1alpha1/secrets/rotate",                           Needs("admin")),
    ("GET",    "/apis/flotilla.dev/v1alpha1/tokens",                                   Needs("admin")),
    ("POST",   "/apis/flotilla.dev/v1alpha1/tokens",                                   Needs("admin")),
    ("DELETE", "/apis/flotilla.dev/v1alpha1/tokens/{name}",                            Needs("admin")),
    ("GET",    "/apis/flotilla.dev/v1alpha1/{plural}",                                 READ_BY_KIND),
    ("GET",    "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/graph",             Needs("resources:read")),
    ("GET",    "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/events",            Needs("resources:read")),
    ("PUT",    "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/secrets/{name}/data", Needs("secrets:write")),
    ("GET",    "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/secrets/{name}/keys", Needs("resources:read")),
    ("GET",    "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/runs",              Needs("runs:read")),
    ("POST",   "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/runs",              Needs("runs:write")),
    ("POST",   "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/runs/{name}/cancel", Needs("runs:write")),
    ("POST",   "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/runs/{name}/rerun", Needs("runs:write")),
    ("GET",    "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/runs/{name}/log",   Needs("runs:read")),
    ("GET",    "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/runs/{name}/metrics", Needs("runs:read")),
    ("POST",   "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/notifiers/{name}/test", Needs("resources:write")),
    ("GET",    "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/{plural}",          READ_BY_KIND),
    ("GET",    "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/{plural}/{name}",   READ_BY_KIND),
    ("DELETE", "/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/{plural}/{name}",   WRITE_BY_KIND),
];

/// The scope spelled `name` in a token (`runs:read`, …); a typo in the table panics.
fn scope(name: &str) -> Scope {
    Scope::ALL
        .into_iter()
        .find(|s| s.as_str() == name)
        .unwrap_or_else(|| panic!("no scope {name:?}"))
}

/// The declared access of a route, in the table's terms.
fn declared_rule(access: Access) -> Rule {
    match access {
        Access::Public => Open,
        Access::Scope(scope) => Needs(scope.as_str()),
        Access::MetricsReader => RunsReadOrLoopback,
        Access::ByKind {
            runs,
            secrets,
            other,
        } => PerKind {
            runs: runs.as_str(),
            secrets: secrets.as_str(),
            other: other.as_str(),
        },
    }
}

/// The scopes a rule names (for the OpenAPI document's check).
fn scopes_of(rule: Rule) -> Vec<Scope> {
    match rule {
        Open => Vec::new(),
        Needs(name) => vec![scope(name)],
        RunsReadOrLoopback => vec![Scope::RunsRead],
        PerKind {
            runs,
            secrets,
            other,
        } => vec![scope(runs), scope(secrets), scope(other)],
    }
}

#[test]
fn the_declared_access_of_every_route_is_the_hand_written_one() {
    let mut differences = Vec::new();
    for route in ROUTES {
        let declared = declared_rule(route.access);
        match EXPECTED_ACCESS
            .iter()
            .find(|(method, path, _)| route.method.as_str() == *method && route.path == *path)
        {
            None => differences.push(format!(
                "{} {} is routed but not in EXPECTED_ACCESS (declared {declared:?})",
                route.method, route.path
            )),
            Some((_, _, expected)) if *expected != declared => differences.push(format!(
                "{} {} is declared {declared:?}, expected {expected:?}",
                route.method, route.path
            )),
            Some(_) => {}
        }
    }
    for (method, path, expected) in EXPECTED_ACCESS {
        if !ROUTES
            .iter()
            .any(|r| r.method.as_str() == *method && r.path == *path)
        {
            differences.push(format!(
                "{method} {path} ({expected:?}) is expected but not routed"
            ));
        }
        // Every scope the table names exists (a misspelt one panics).
        scopes_of(*expected);
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// What a concrete request needs.
#[derive(Clone, Copy, Debug)]
enum Need {
    Nothing,
    Scope(Scope),
    /// `runs:read`, or nothing from loopback.
    ScopeOrLoopback(Scope),
}

enum Body {
    Empty,
    Json(Value),
    Yaml(String),
}

/// One concrete request for a route, with a body that succeeds.
struct Probe {
    method: Method,
    path: String,
    need: Need,
    body: Body,
}

impl Probe {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Concrete requests for every route of [`EXPECTED_ACCESS`]: one per kind for routes
/// whose access depends on `{plural}`.
fn probes() -> Vec<Probe> {
    EXPECTED_ACCESS
        .iter()
        .flat_map(|(method, path, rule)| probes_of(method, path, *rule))
        .collect()
}

fn probes_of(method: &str, path: &str, rule: Rule) -> Vec<Probe> {
    let method: Method = method.parse().expect("an HTTP method");
    match rule {
        Open => vec![probe(&method, path, None, Need::Nothing)],
        Needs(name) => vec![probe(&method, path, None, Need::Scope(scope(name)))],
        RunsReadOrLoopback => vec![probe(
            &method,
            path,
            None,
            Need::ScopeOrLoopback(Scope::RunsRead),
        )],
        PerKind {
            runs,
            secrets,
            other,
        } => [("pipelines", other), ("runs", runs), ("secrets", secrets)]
            .into_iter()
            .map(|(plural, name)| probe(&method, path, Some(plural), Need::Scope(scope(name))))
            .collect(),
    }
}

fn probe(method: &Method, path: &str, plural: Option<&str>, need: Need) -> Probe {
    let deleting = *method == Method::DELETE;
    let mut segments: Vec<String> = Vec::new();
    for segment in path.split('/') {
        let value = match segment {
            "{namespace}" => "default".to_owned(),
            "{plural}" => plural
                .unwrap_or_else(|| panic!("{path} has {{plural}} but no ByKind rule"))
                .to_owned(),
            "{name}" => {
                let owner = segments.last().map(String::as_str).unwrap_or_default();
                target_name(owner, deleting)
                    .unwrap_or_else(|| {
                        panic!("no test object for {{name}} after {owner:?} in {path}")
                    })
                    .to_owned()
            }
            "{pipeline}" => TARGET_PIPELINE.to_owned(),
            "{key}" => "not-the-webhook-key".to_owned(),
            other if other.starts_with('{') => {
                panic!("no value for the segment {other} of {path}")
            }
            other => other.to_owned(),
        };
        segments.push(value);
    }
    let body = match (method.as_str(), path.strip_prefix(API)) {
        ("POST", Some("/apply")) => Body::Yaml(pipeline_manifest("applied-by-matrix", "10m")),
        ("POST", Some("/tokens")) => {
            Body::Json(json!({ "name": "made-by-matrix", "scopes": ["runs:read"] }))
        }
        ("POST", Some("/namespaces/{namespace}/runs")) => {
            Body::Json(json!({ "spec": { "pipelineRef": { "name": "hello" } } }))
        }
        ("PUT", Some(path)) if path.ends_with("/data") => {
            Body::Json(json!({ "data": { "EXTRA_KEY": "value" } }))
        }
        _ => Body::Empty,
    };
    Probe {
        method: method.clone(),
        path: segments.join("/"),
        need,
        body,
    }
}

fn target_name(owner: &str, deleting: bool) -> Option<&'static str> {
    Some(match (owner, deleting) {
        ("tokens", _) => DOOMED_TOKEN,
        ("pipelines", false) => TARGET_PIPELINE,
        ("pipelines", true) => DOOMED_PIPELINE,
        ("runs", false) => TARGET_RUN,
        ("runs", true) => DOOMED_RUN,
        ("secrets", false) => TARGET_SECRET,
        ("secrets", true) => DOOMED_SECRET,
        // None is created: the handler's own 404 shows the scope was accepted.
        ("notifiers", _) => "absent-notifier",
        _ => return None,
    })
}

/// Creates the objects the probes address (with the admin token).
async fn create_targets(operator: &ApiOperator) {
    operator
        .apply(&pipeline_manifest(DOOMED_PIPELINE, "10m"))
        .await;
    for name in [TARGET_RUN, DOOMED_RUN] {
        let request = operator
            .request(
                Method::POST,
                &operator.api("/namespaces/default/runs"),
                Some(operator.admin_token()),
            )
            .json(&json!({ "metadata": { "name": name }, "spec": { "pipelineRef": { "name": "hello" } } }));
        let (status, body) = operator.send(request).await;
        assert_eq!(status, StatusCode::CREATED, "creating run {name}: {body}");
    }
    for name in [TARGET_SECRET, DOOMED_SECRET] {
        let request = operator
            .request(
                Method::PUT,
                &operator.api(&format!("/namespaces/default/secrets/{name}/data")),
                Some(operator.admin_token()),
            )
            .json(&json!({ "data": { "PASSWORD": "hunter2" } }));
        let (status, body) = operator.send(request).await;
        assert_eq!(status, StatusCode::OK, "creating secret {name}: {body}");
    }
    operator
        .create_token(DOOMED_TOKEN, &["runs:read"], None)
        .await;
}

/// Sends `probe` to `host` with `token`.
async fn send_probe(
    operator: &ApiOperator,
    host: &str,
    probe: &Probe,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let url = operator.url_via(host, &probe.path);
    let request = operator.request(probe.method.clone(), &url, token);
    let request = match &probe.body {
        Body::Empty => request,
        Body::Json(value) => request.json(value),
        Body::Yaml(text) => request
            .header("content-type", "application/yaml")
            .body(text.clone()),
    };
    operator.send(request).await
}

/// Appends a failure unless `status` (and the problem `code`, when given) match.
fn expect(
    failures: &mut Vec<String>,
    what: &str,
    (status, body): &(StatusCode, Value),
    wanted: StatusCode,
    code: &str,
) {
    if *status != wanted || body["code"] != code {
        failures.push(format!(
            "{what}: expected {wanted} ({code}), got {status}: {body}"
        ));
    }
}

/// Admitted by the authorization layer: a success, or a client-error answer of the
/// handler itself (e.g. 404 "no git source is configured", a webhook's own key check),
/// never `auth.*`. A 5xx is a failure: the route crashed with the access it needs.
fn expect_success(failures: &mut Vec<String>, what: &str, (status, body): &(StatusCode, Value)) {
    let handler_answer = status.is_client_error()
        && !body["code"]
            .as_str()
            .unwrap_or("auth.")
            .starts_with("auth.")
        && *status != StatusCode::UNAUTHORIZED
        && *status != StatusCode::FORBIDDEN;
    if status.is_success() || handler_answer {
        return;
    }
    let body = body.to_string();
    failures.push(format!(
        "{what}: expected success, got {status}: {}",
        &body[..body.len().min(300)]
    ));
}

/// A token holding only `scopes`, named after them.
async fn token_with(operator: &ApiOperator, name: &str, scopes: &[Scope]) -> String {
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    operator.create_token(name, &scopes, None).await
}

#[tokio::test]
async fn every_route_refuses_no_token_and_other_scopes_and_accepts_its_own_scope() {
    // Listening on every interface so that requests come from a non-loopback address,
    // where /metrics needs runs:read like any other guarded route.
    let (fixture, operator) = hello_operator(&ServeOptions {
        listen: "0.0.0.0:0".to_owned(),
        ..ServeOptions::default()
    })
    .await;
    create_targets(&operator).await;
    let remote = non_loopback_ipv4();
    let mut exactly = HashMap::new();
    let mut all_but = HashMap::new();
    let non_admin: Vec<Scope> = Scope::ALL
        .into_iter()
        .filter(|s| *s != Scope::Admin)
        .collect();
    for scope in Scope::ALL {
        let label = scope.as_str().replace(':', "-");
        exactly.insert(
            scope,
            token_with(&operator, &format!("only-{label}"), &[scope]).await,
        );
        let others: Vec<Scope> = non_admin.iter().copied().filter(|s| *s != scope).collect();
        all_but.insert(
            scope,
            token_with(&operator, &format!("all-but-{label}"), &others).await,
        );
    }

    let probes = probes();
    let mut failures = Vec::new();
    for probe in &probes {
        let what = probe.label();
        match probe.need {
            Need::Nothing => {
                let answer = send_probe(&operator, &remote, probe, None).await;
                expect_success(&mut failures, &format!("{what} without a token"), &answer);
            }
            Need::Scope(scope) | Need::ScopeOrLoopback(scope) => {
                let answer = send_probe(&operator, &remote, probe, None).await;
                expect(
                    &mut failures,
                    &format!("{what} without a token"),
                    &answer,
                    StatusCode::UNAUTHORIZED,
                    "auth.unauthenticated",
                );
                let answer = send_probe(&operator, &remote, probe, Some(&all_but[&scope])).await;
                expect(
                    &mut failures,
                    &format!("{what} with every scope but {}", scope.as_str()),
                    &answer,
                    StatusCode::FORBIDDEN,
                    "auth.forbidden",
                );
                if matches!(probe.need, Need::ScopeOrLoopback(_)) {
                    let answer = send_probe(&operator, "127.0.0.1", probe, None).await;
                    expect_success(
                        &mut failures,
                        &format!("{what} from loopback without a token"),
                        &answer,
                    );
                }
                let answer = send_probe(&operator, &remote, probe, Some(&exactly[&scope])).await;
                expect_success(
                    &mut failures,
                    &format!("{what} with only {}", scope.as_str()),
                    &answer,
                );
            }
        }
    }
    let by_kind = EXPECTED_ACCESS
        .iter()
        .filter(|(_, _, rule)| matches!(rule, PerKind { .. }))
        .count();
    assert_eq!(
        probes.len(),
        EXPECTED_ACCESS.len() + 2 * by_kind,
        "every route is probed, ByKind routes once per kind"
    );
    operator.settle(&fixture).await;
    assert!(
        failures.is_empty(),
        "{} of {} probes failed (requests from {remote}):\n{}\noperator log (tail):\n{}",
        failures.len(),
        probes.len(),
        failures.join("\n"),
        operator.log_tail()
    );
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused() {
    let (_fixture, operator) = hello_operator(&ServeOptions::default()).await;
    let runs = operator.api("/namespaces/default/runs");

    let short = operator
        .create_token("short-lived", &["runs:read"], Some("1s"))
        .await;
    // Until it expires the token works; then it is refused, within a bound far above
    // its 1 s lifetime (plus the 2 s a verified token is trusted).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let (status, body) = loop {
        let (status, body) = operator
            .send(operator.request(Method::GET, &runs, Some(&short)))
            .await;
        if status != StatusCode::OK {
            break (status, body);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a token with a 1 s lifetime is still accepted after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired token: {body}");
    assert_eq!(body["code"], "auth.unauthenticated", "{body}");
    let (status, body) = operator
        .send(operator.request(Method::GET, &runs, Some(&short)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "still expired: {body}");

    let revoked = operator
        .create_token("to-revoke", &["runs:read"], None)
        .await;
    let (status, body) = operator
        .send(operator.request(Method::GET, &runs, Some(&revoked)))
        .await;
    assert_eq!(status, StatusCode::OK, "before revocation: {body}");
    let (status, body) = operator
        .send(operator.request(
            Method::DELETE,
            &operator.api("/tokens/to-revoke"),
            Some(operator.admin_token()),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "revoke: {body}");
    let (status, body) = operator
        .send(operator.request(Method::GET, &runs, Some(&revoked)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked token: {body}");
    assert_eq!(body["code"], "auth.unauthenticated", "{body}");
}

#[tokio::test]
async fn applying_a_set_with_a_secret_needs_secrets_write() {
    let (_fixture, operator) = hello_operator(&ServeOptions::default()).await;
    let set = format!(
        "{}---\n{}",
        pipeline_manifest("with-secret", "10m"),
        secret_manifest("applied-secret")
    );
    let apply = |token: String| {
        operator
            .request(Method::POST, &operator.api("/apply"), Some(&token))
            .header("content-type", "application/yaml")
            .body(set.clone())
    };

    let resources_only = token_with(&operator, "resources-only", &[Scope::ResourcesWrite]).await;
    let (status, body) = operator.send(apply(resources_only)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "auth.forbidden", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("secrets:write")),
        "the refusal names the missing scope: {body}"
    );
    let (status, _) = operator
        .admin_get("/namespaces/default/pipelines/with-secret")
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing of a refused set is applied"
    );

    let both = token_with(
        &operator,
        "resources-and-secrets",
        &[Scope::ResourcesWrite, Scope::SecretsWrite],
    )
    .await;
    let (status, body) = operator.send(apply(both)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = operator
        .admin_get("/namespaces/default/secrets/applied-secret")
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn dev_mode_allows_reads_without_a_token_on_loopback_but_no_writes() {
    let (fixture, operator) = hello_operator(&ServeOptions {
        dev: true,
        ..ServeOptions::default()
    })
    .await;
    create_targets(&operator).await;
    let mut failures = Vec::new();
    for probe in probes() {
        let what = format!("{} without a token in --dev", probe.label());
        let answer = send_probe(&operator, "127.0.0.1", &probe, None).await;
        match probe.need {
            Need::Scope(scope) if !scope.is_read() => expect(
                &mut failures,
                &what,
                &answer,
                StatusCode::UNAUTHORIZED,
                "auth.unauthenticated",
            ),
            _ => expect_success(&mut failures, &what, &answer),
        }
    }
    operator.settle(&fixture).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn dev_mode_refuses_to_start_on_a_non_loopback_address() {
    let fixture = Fixture::new();
    let output = serve_expecting_exit(
        &fixture,
        &ServeOptions {
            dev: true,
            listen: "0.0.0.0:0".to_owned(),
            ..ServeOptions::default()
        },
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("--dev"), "the refusal names --dev: {log}");
}

#[tokio::test]
async fn the_generated_admin_token_file_is_private_and_works() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new();
    let options = ServeOptions {
        admin_token: None,
        ..ServeOptions::default()
    };
    let operator = ApiOperator::start(&fixture, &options);
    let path = fixture.data_dir().join("admin-token");
    let metadata = std::fs::metadata(&path).expect("<data-dir>/admin-token is written");
    assert_eq!(
        metadata.permissions().mode() & 0o777,
        0o600,
        "admin-token must be readable by its owner only"
    );
    let token = std::fs::read_to_string(&path).expect("admin-token");
    let token = token.trim();
    assert!(token.starts_with("flt_"), "{token:?}");
    let tokens = operator.api("/tokens");
    let (status, body) = operator
        .send(operator.request(Method::GET, &tokens, Some(token)))
        .await;
    assert_eq!(status, StatusCode::OK, "the admin token works: {body}");
    let (status, _) = operator
        .send(operator.request(Method::GET, &tokens, Some("flt_not-the-admin")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    drop(operator);

    // The next start keeps the token it generated.
    let operator = ApiOperator::start(&fixture, &options);
    let (status, body) = operator
        .send(operator.request(Method::GET, &operator.api("/tokens"), Some(token)))
        .await;
    assert_eq!(status, StatusCode::OK, "after a restart: {body}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("admin-token").trim(),
        token
    );
}

// ---------------------------------------------------------------------------------------
// OpenAPI and CORS

#[tokio::test]
async fn every_route_is_in_the_served_openapi_document() {
    let fixture = Fixture::new();
    let operator = ApiOperator::start(&fixture, &ServeOptions::default());
    let (status, doc) = operator
        .send(operator.request(Method::GET, &operator.url("/openapi.json"), None))
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let mut served = 0;
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys() {
            served += 1;
            assert!(
                EXPECTED_ACCESS
                    .iter()
                    .any(|(m, p, _)| p == path && m.eq_ignore_ascii_case(method)),
                "{method} {path} is documented but not in EXPECTED_ACCESS"
            );
        }
    }
    assert_eq!(served, EXPECTED_ACCESS.len(), "one operation per route");
    for (method, path, rule) in EXPECTED_ACCESS {
        let operation = &doc["paths"][*path][method.to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {path} is missing from /openapi.json"
        );
        let security = operation["security"].to_string();
        let description = operation["description"].as_str().unwrap_or_default();
        if *rule == Open {
            assert_eq!(operation["security"], json!([]), "{path}");
        }
        for scope in scopes_of(*rule) {
            assert!(
                description.contains(scope.as_str()) || security.contains(scope.as_str()),
                "{method} {path} documents its scope {}: {operation}",
                scope.as_str()
            );
        }
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        {
            assert!(
                operation["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path")),
                "{method} {path} documents its path parameter {name}"
            );
        }
    }
}

async fn preflight(operator: &ApiOperator, origin: &str) -> reqwest::Response {
    operator
        .request(
            Method::OPTIONS,
            &operator.api("/namespaces/default/pipelines"),
            None,
        )
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .expect("preflight")
}

fn allow_origin(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let fixture = Fixture::new();
    let operator = ApiOperator::start(
        &fixture,
        &ServeOptions {
            cors_origins: vec!["https://ui.example".to_owned()],
            ..ServeOptions::default()
        },
    );
    let allowed = preflight(&operator, "https://ui.example").await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allow_origin(&allowed).as_deref(),
        Some("https://ui.example")
    );
    let other = preflight(&operator, "https://evil.example").await;
    assert_eq!(allow_origin(&other), None, "{:?}", other.headers());
    let simple = operator
        .request(Method::GET, &operator.url("/healthz"), None)
        .header("Origin", "https://ui.example")
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(allow_origin(&simple).as_deref(), Some("https://ui.example"));
    drop(operator);

    let operator = ApiOperator::start(&fixture, &ServeOptions::default());
    let response = preflight(&operator, "https://ui.example").await;
    let cors: Vec<&str> = response
        .headers()
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("access-control-"))
        .collect();
    assert!(
        cors.is_empty(),
        "no CORS headers without --cors-origin: {cors:?}"
    );
    let simple = operator
        .request(Method::GET, &operator.url("/healthz"), None)
        .header("Origin", "https://ui.example")
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(allow_origin(&simple), None);
}

// ---------------------------------------------------------------------------------------
// Run log streams

/// A line event of a log stream: its `id:` and its stored line.
fn line_events(items: &[SseItem]) -> Vec<(String, String)> {
    items
        .iter()
        .filter_map(|item| match item {
            SseItem::Event {
                id: Some(id),
                event: None,
                data,
            } => Some((id.clone(), data.clone())),
            _ => None,
        })
        .collect()
}

fn end_events(items: &[SseItem]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|item| match item {
            SseItem::Event {
                event: Some(kind),
                data,
                ..
            } if kind == "end" => Some(serde_json::from_str(data).unwrap_or(Value::Null)),
            _ => None,
        })
        .collect()
}

fn stdout_of(events: &[(String, String)]) -> Vec<String> {
    let text: Vec<&str> = events.iter().map(|(_, data)| data.as_str()).collect();
    stdout_lines(&text.join("\n"))
}

/// Panics unless the ids are `1-1`, `1-2`, … without gap or repeat.
fn assert_consecutive_ids(events: &[(String, String)]) {
    for (index, (id, _)) in events.iter().enumerate() {
        assert_eq!(
            *id,
            format!("1-{}", index + 1),
            "event {} of attempt 1 has id {id}",
            index + 1
        );
    }
}

#[tokio::test]
async fn sse_resume_after_a_dropped_connection_delivers_every_line_once_in_order() {
    let fixture = Fixture::new();
    fixture.write_pipeline("numbered", THREE_HUNDRED_LINES, "", "");
    let operator = ApiOperator::start(&fixture, &ServeOptions::default());
    operator.wait_for_object("pipelines", "numbered").await;
    let run = operator.create_run("numbered").await;

    let mut first = operator.follow_log(&run, None).await;
    let mut received = Vec::new();
    let dropped_after = loop {
        let item = tokio::time::timeout(RUN_TIMEOUT, first.next_item())
            .await
            .unwrap_or_else(|_| panic!("no log event within {RUN_TIMEOUT:?}"))
            .unwrap_or_else(|| panic!("the stream ended early: {received:?}"));
        received.push(item);
        if stdout_of(&line_events(&received)).len() >= 100 {
            break line_events(&received).len();
        }
    };
    assert!(
        end_events(&received).is_empty(),
        "dropped mid-run, before `end`"
    );
    drop(first);

    let last_id = line_events(&received)
        .last()
        .map(|(id, _)| id.clone())
        .expect("an event id");
    let mut second = operator.follow_log(&run, Some(&last_id)).await;
    let rest = second.read_to_end(RUN_TIMEOUT).await;
    let mut events = line_events(&received);
    events.extend(line_events(&rest));

    assert_consecutive_ids(&events);
    assert!(
        events.len() > dropped_after,
        "the second connection carried lines"
    );
    assert_eq!(
        stdout_of(&events),
        numbered(300),
        "every line once, in order"
    );
    let ends = end_events(&rest);
    assert_eq!(ends.len(), 1, "one `end` event: {rest:?}");
    assert!(
        matches!(rest.last(), Some(SseItem::Event { event: Some(e), .. }) if e == "end"),
        "`end` is the last event"
    );
    assert_eq!(ends[0]["phase"], "Succeeded", "{}", ends[0]);
    let stored: Vec<String> = operator
        .log_text(&run)
        .await
        .lines()
        .map(str::to_owned)
        .collect();
    let streamed: Vec<String> = events.into_iter().map(|(_, data)| data).collect();
    assert_eq!(streamed, stored, "the stream carries the stored log");
}

#[tokio::test]
async fn an_idle_log_stream_gets_keep_alive_comments() {
    let fixture = Fixture::new();
    fixture.write_pipeline("silent", SILENT_FOR_20_SECONDS, "", "");
    let operator = ApiOperator::start(&fixture, &ServeOptions::default());
    operator.wait_for_object("pipelines", "silent").await;
    let run = operator.create_run("silent").await;
    let mut stream = operator.follow_log(&run, None).await;
    let wait_for_comment = async {
        loop {
            match stream.next_item().await {
                Some(SseItem::Comment(text)) => return text,
                Some(SseItem::Event { event: Some(e), .. }) if e == "end" => {
                    panic!("the run ended before a keep-alive comment")
                }
                Some(_) => {}
                None => panic!("the stream ended before a keep-alive comment"),
            }
        }
    };
    let comment = tokio::time::timeout(Duration::from_secs(60), wait_for_comment)
        .await
        .expect("a keep-alive comment within 60 s of an idle stream");
    assert_eq!(comment, "keep-alive");
}

/// Seconds a run keeps printing (a line a second) after its burst: longer than the 10 s
/// the server lets a client's buffer stay full before dropping the client.
const TRICKLE_SECONDS: usize = 20;

#[tokio::test]
async fn a_stalled_log_client_does_not_slow_another_and_is_dropped() {
    let fixture = Fixture::new();
    let main = format!(
        "{}import time\nfor i in range({TRICKLE_SECONDS}):\n    time.sleep(1)\n    print(f\"trickle {{i}}\", flush=True)\n",
        flood(FLOOD_LINES)
    );
    fixture.write_pipeline("flood", &main, "", "");
    let operator = ApiOperator::start(&fixture, &ServeOptions::default());
    operator.wait_for_object("pipelines", "flood").await;
    let run = operator.create_run("flood").await;
    let expected: Vec<String> = (1..=FLOOD_LINES)
        .map(|i| format!("line {i} {}", "x".repeat(100)))
        .chain((0..TRICKLE_SECONDS).map(|i| format!("trickle {i}")))
        .collect();

    // Never read until the run is over.
    let mut stalled = operator.follow_log(&run, None).await;
    let mut reader = operator.follow_log(&run, None).await;
    let mut items = Vec::new();
    let mut checked_health = false;
    let read_all = async {
        while let Some(item) = reader.next_item().await {
            items.push(item);
            if !checked_health && items.len() == FLOOD_LINES {
                checked_health = true;
                let (status, _) = operator
                    .send(operator.request(Method::GET, &operator.url("/healthz"), None))
                    .await;
                assert_eq!(status, StatusCode::OK, "healthz while streaming");
            }
        }
    };
    tokio::time::timeout(RUN_TIMEOUT, read_all)
        .await
        .unwrap_or_else(|_| {
            panic!("the reading client did not get the whole log within {RUN_TIMEOUT:?}")
        });
    let events = line_events(&items);
    assert_consecutive_ids(&events);
    assert_eq!(
        end_events(&items).len(),
        1,
        "the reader got the `end` event"
    );
    assert_eq!(
        stdout_lines(&operator.log_text(&run).await),
        expected,
        "the run's whole output is stored"
    );
    assert_eq!(
        stdout_of(&events),
        expected,
        "the reading client got every line, in order, before `end`"
    );
    let (status, _) = operator
        .send(operator.request(Method::GET, &operator.url("/healthz"), None))
        .await;
    assert_eq!(status, StatusCode::OK, "healthz after the run");

    // The stalled client's buffer stayed full for longer than the server allows: it was
    // dropped. Its stream ends with what was buffered, a prefix of the log, and no `end`.
    let late = stalled.read_to_end(Duration::from_secs(120)).await;
    let late_events = line_events(&late);
    assert!(
        late_events.len() < events.len() && late_events[..] == events[..late_events.len()],
        "the stalled client got a strict prefix of the log ({} of {} lines)",
        late_events.len(),
        events.len()
    );
    assert!(
        end_events(&late).is_empty(),
        "a dropped client gets no `end`"
    );
    let (status, body) = operator.admin_get("/namespaces/default/runs").await;
    assert_eq!(status, StatusCode::OK, "the API still answers: {body}");
}

/// Lines of about 190 bytes each in Docker's json-file log: more than 10 MB, the
/// `max-size` Docker daemons are commonly configured with (`log-opts`), so the engine
/// rotates the container's log while it prints.
const BEYOND_ONE_LOG_FILE: usize = 60_000;

#[tokio::test]
async fn output_beyond_one_docker_log_file_is_stored_and_served_completely() {
    let fixture = Fixture::new();
    fixture.write_pipeline("big", &flood(BEYOND_ONE_LOG_FILE), "", "");
    let operator = ApiOperator::start(&fixture, &ServeOptions::default());
    operator.wait_for_object("pipelines", "big").await;
    let run = operator.create_run("big").await;
    let mut stream = operator.follow_log(&run, None).await;
    let items = stream.read_to_end(RUN_TIMEOUT).await;
    let finished = operator.wait_finished(&run).await;
    assert_eq!(phase(&finished), "Succeeded", "{finished:#}");
    let container = attempts(&finished)[0]["container"].clone();
    let stored = stdout_lines(&operator.log_text(&run).await);
    assert_eq!(
        stored.len(),
        BEYOND_ONE_LOG_FILE,
        "every line of {container} is stored (last stored: {:?})",
        stored.last()
    );
    assert_eq!(
        stdout_of(&line_events(&items)).len(),
        BEYOND_ONE_LOG_FILE,
        "and streamed"
    );
}

// ---------------------------------------------------------------------------------------
// Runs, metrics, readiness, shutdown

#[tokio::test]
async fn run_creation_with_an_idempotency_key_happens_once() {
    let (fixture, operator) = hello_operator(&ServeOptions::default()).await;
    let (status, first) = operator.post_run("hello", Some("retry-me-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = operator.post_run("hello", Some("retry-me-1")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a retry answers the first run: {again}"
    );
    assert_eq!(name_of(&again), name_of(&first));
    assert_eq!(again["metadata"]["uid"], first["metadata"]["uid"]);

    let (status, other) = operator.post_run("hello", Some("retry-me-2")).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    assert_ne!(name_of(&other), name_of(&first), "another key, another run");

    let (status, list) = operator.admin_get("/namespaces/default/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(2),
        "two keys, two runs: {list}"
    );
    operator.settle(&fixture).await;
}

/// The value of the first sample line starting with `prefix` that contains every
/// label in `labels`.
fn sample(metrics: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_carry_the_named_series_after_a_run() {
    let (_fixture, operator) = hello_operator(&ServeOptions::default()).await;
    let run = operator.create_run("hello").await;
    let finished = operator.wait_finished(&run).await;
    assert_eq!(phase(&finished), "Succeeded", "{finished:#}");

    let response = operator
        .request(Method::GET, &operator.url("/metrics"), None)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK, "loopback needs no token");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let metrics = response.text().await.expect("metrics text");
    let context = format!("/metrics:\n{metrics}");

    // Families with labels appear once a label set is used; the error counters are
    // checked by `error_metrics_count_docker_failures_by_code`.
    for family in [
        "flotilla_run_transitions",
        "flotilla_runs_active",
        "flotilla_reconcile_duration_seconds",
        "flotilla_work_queue_depth",
        "flotilla_schedule_skew_seconds",
        "flotilla_http_requests",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{family} is exposed; {context}"
        );
    }
    assert!(
        sample(
            &metrics,
            "flotilla_run_transitions_total{",
            &["phase=\"Succeeded\""]
        )
        .is_some_and(|v| v >= 1.0),
        "a Succeeded transition is counted; {context}"
    );
    assert!(
        sample(&metrics, "flotilla_reconcile_duration_seconds_count", &[])
            .is_some_and(|v| v >= 1.0),
        "reconciles are timed; {context}"
    );
    assert!(
        sample(
            &metrics,
            "flotilla_http_requests_total{",
            &[
                "method=\"POST\"",
                "route=\"/apis/flotilla.dev/v1alpha1/namespaces/{namespace}/runs\"",
                "status=\"201\"",
            ]
        )
        .is_some_and(|v| v >= 1.0),
        "requests are counted by route template and status; {context}"
    );
    assert!(
        sample(&metrics, "flotilla_runs_active", &[]).is_some(),
        "runs_active has a sample; {context}"
    );
    assert!(
        sample(&metrics, "flotilla_work_queue_depth", &[]).is_some(),
        "work_queue_depth has a sample; {context}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{context}");
}

async fn scrape(operator: &ApiOperator) -> String {
    let (status, body) = operator
        .send(operator.request(Method::GET, &operator.url("/metrics"), None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn error_metrics_count_docker_failures_by_code() {
    let (fixture, operator) = hello_operator(&ServeOptions::default()).await;
    fixture.proxy.down();
    let run = operator.create_run("hello").await;
    let metrics = operator
        .wait_until(
            "reconcile and Docker errors to be counted",
            Duration::from_secs(60),
            || async {
                let metrics = scrape(&operator).await;
                let counted =
                    |prefix: &str| sample(&metrics, prefix, &["code=\""]).is_some_and(|v| v >= 1.0);
                (counted("flotilla_reconcile_errors_total{")
                    && counted("flotilla_docker_api_errors_total{"))
                .then_some(metrics)
            },
        )
        .await;
    assert!(metrics.contains("# TYPE flotilla_reconcile_errors counter"));
    assert!(metrics.contains("# TYPE flotilla_docker_api_errors counter"));
    fixture.proxy.up();
    let finished = operator.wait_finished(&run).await;
    assert_eq!(phase(&finished), "Succeeded", "{finished:#}");
}

async fn readiness(operator: &ApiOperator) -> (StatusCode, Value) {
    operator
        .send(operator.request(Method::GET, &operator.url("/readyz"), None))
        .await
}

#[tokio::test]
async fn readyz_is_unready_while_the_docker_proxy_is_down_and_ready_after() {
    let fixture = Fixture::new();
    let operator = ApiOperator::start(&fixture, &ServeOptions::default());
    let bound = Duration::from_secs(60);
    operator
        .wait_until("readyz to answer 200", bound, || async {
            (readiness(&operator).await.0 == StatusCode::OK).then_some(())
        })
        .await;

    fixture.proxy.down();
    let unready = operator
        .wait_until("readyz to answer 503", bound, || async {
            let (status, body) = readiness(&operator).await;
            (status == StatusCode::SERVICE_UNAVAILABLE).then_some(body)
        })
        .await;
    assert_eq!(
        unready["code"], "container.runtime.unavailable",
        "{unready}"
    );
    let (status, _) = operator
        .send(operator.request(Method::GET, &operator.url("/healthz"), None))
        .await;
    assert_eq!(status, StatusCode::OK, "alive while unready");

    fixture.proxy.up();
    let ready = operator
        .wait_until("readyz to answer 200 again", bound, || async {
            let (status, body) = readiness(&operator).await;
            (status == StatusCode::OK).then_some(body)
        })
        .await;
    assert_eq!(ready["docker"], "ok", "{ready}");
}

#[tokio::test]
async fn graceful_shutdown_leaves_the_run_running_and_the_next_start_completes_it() {
    let fixture = Fixture::new();
    fixture.write_pipeline("ticks", SLOW_TICKS, "", "");
    let mut operator = ApiOperator::start(&fixture, &ServeOptions::default());
    operator.wait_for_object("pipelines", "ticks").await;
    let run = operator.create_run("ticks").await;
    let container = operator
        .wait_until("the run's container to run", RUN_TIMEOUT, || async {
            let run = operator.run(&run).await;
            let container = attempts(&run).first()?["container"].as_str()?.to_owned();
            let state = inspect_container(&container)?;
            (state["State"]["Status"] == "running").then_some(container)
        })
        .await;

    let status = operator.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM is a clean exit: {status}");
    let state = inspect_container(&container).expect("the container still exists");
    assert_eq!(
        state["State"]["Status"], "running",
        "shutdown leaves runs running"
    );
    drop(operator);

    let operator = ApiOperator::start(&fixture, &ServeOptions::default());
    let finished = operator.wait_finished(&run).await;
    assert_eq!(phase(&finished), "Succeeded", "{finished:#}");
    assert_eq!(attempts(&finished).len(), 1, "re-attached, not restarted");
    let expected: Vec<String> = (0..TICKS).map(|i| format!("tick {i}")).collect();
    assert_eq!(
        stdout_lines(&operator.log_text(&run).await),
        expected,
        "the complete log"
    );
}

// ---------------------------------------------------------------------------------------
// Watches

const WAIT: Duration = Duration::from_secs(30);

/// `(type, name)` of a watch event, and its object's resourceVersion.
fn describe(event: &Value) -> ((String, String), String) {
    (
        (
            event["type"].as_str().unwrap_or_default().to_owned(),
            event["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        event["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

async fn expect_events(stream: &mut NdjsonStream, wanted: &[(&str, &str)]) -> String {
    let mut last_version = String::new();
    for (kind, name) in wanted {
        let event = stream.next_within(WAIT).await.unwrap_or_else(|| {
            panic!("no watch event within {WAIT:?} while waiting for {kind} {name} of {wanted:?}")
        });
        let ((got_kind, got_name), version) = describe(&event);
        assert_eq!(
            (got_kind.as_str(), got_name.as_str()),
            (*kind, *name),
            "watch events in order: {wanted:?}"
        );
        last_version = version;
    }
    last_version
}

const PIPELINE_WATCH: &str = "/namespaces/default/pipelines?watch=true";

#[tokio::test]
async fn watch_streams_existing_objects_then_every_change() {
    let fixture = Fixture::new();
    let operator = ApiOperator::start(&fixture, &ServeOptions::default());
    operator.apply(&pipeline_manifest("w-a", "10m")).await;
    operator.apply(&pipeline_manifest("w-b", "10m")).await;

    let (status, stream) = operator.watch(PIPELINE_WATCH).await;
    assert_eq!(status, StatusCode::OK);
    let mut stream = stream.expect("a watch stream");
    expect_events(&mut stream, &[("ADDED", "w-a"), ("ADDED", "w-b")]).await;
    operator.apply(&pipeline_manifest("w-a", "20m")).await;
    expect_events(&mut stream, &[("MODIFIED", "w-a")]).await;
    operator.apply(&pipeline_manifest("w-c", "10m")).await;
    expect_events(&mut stream, &[("ADDED", "w-c")]).await;
    operator.delete("pipelines", "w-a").await;
    expect_events(&mut stream, &[("DELETED", "w-a")]).await;
    // An object unchanged since the watch began is deleted too.
    operator.delete("pipelines", "w-b").await;
    expect_events(&mut stream, &[("DELETED", "w-b")]).await;
}

#[tokio::test]
async fn a_resumed_watch_gets_exactly_the_changes_it_missed() {
    let fixture = Fixture::new();
    let operator = ApiOperator::start(&fixture, &ServeOptions::default());
    let (status, _) = operator
        .watch(&format!("{PIPELINE_WATCH}&resourceVersion=abc"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a bad resourceVersion");

    operator.apply(&pipeline_manifest("w-a", "10m")).await;
    let (status, stream) = operator.watch(PIPELINE_WATCH).await;
    assert_eq!(status, StatusCode::OK);
    let mut stream = stream.expect("a watch stream");
    expect_events(&mut stream, &[("ADDED", "w-a")]).await;
    operator.apply(&pipeline_manifest("w-a", "20m")).await;
    operator.apply(&pipeline_manifest("w-c", "10m")).await;
    let seen = expect_events(&mut stream, &[("MODIFIED", "w-a"), ("ADDED", "w-c")]).await;
    drop(stream);

    // Missed while disconnected.
    operator.apply(&pipeline_manifest("w-c", "20m")).await;
    operator.apply(&pipeline_manifest("w-d", "10m")).await;
    operator.delete("pipelines", "w-a").await;
    let (status, stream) = operator
        .watch(&format!("{PIPELINE_WATCH}&resourceVersion={seen}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut stream = stream.expect("a resumed watch stream");
    // Nothing else was pending: after the missed events comes the next change.
    operator.apply(&pipeline_manifest("w-e", "10m")).await;
    expect_events(
        &mut stream,
        &[
            ("MODIFIED", "w-c"),
            ("ADDED", "w-d"),
            ("DELETED", "w-a"),
            ("ADDED", "w-e"),
        ],
    )
    .await;
}
