//! `flotilla serve` with the HTTP settings the API tests vary (`--dev`, `--cors-origin`,
//! a non-loopback `--listen`, an installed or a generated admin token), started on a
//! [`Fixture`]'s proxy, directories and instance so that the fixture still removes every
//! container its runs leave. Also a bearer-token client and readers of the two streaming
//! formats of the API: server-sent events (run logs) and newline-delimited JSON (watches).
//!
//! [`Fixture::start_operator`] stays the way to get a plain operator; this one exists
//! because these tests need the admin token, the process id (SIGTERM) and other flags.

// Each test crate that includes `support` uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use super::docker::{Fixture, RUN_TIMEOUT, RUNNER_IMAGE, phase};
use super::server::{API, ENCRYPTION_KEY, await_api_line};

/// Client timeout of plain API calls: longer is a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `flotilla serve` may take to print its address (or to exit when refused).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How one operator is started.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// `--listen`.
    pub listen: String,
    /// `--dev`.
    pub dev: bool,
    /// `--cors-origin`, once per origin.
    pub cors_origins: Vec<String>,
    /// `FLOTILLA_ADMIN_TOKEN`; `None` leaves it unset so the operator generates
    /// `<data-dir>/admin-token` (or keeps the admin token it already has).
    pub admin_token: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".to_owned(),
            dev: false,
            cors_origins: Vec::new(),
            admin_token: Some(random_token()),
        }
    }
}

/// A token in the format the server generates (`flt_` and 64 hex digits).
pub fn random_token() -> String {
    format!(
        "flt_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A non-loopback IPv4 address of this machine (`hostname -I`), for requests the server
/// must not treat as local.
pub fn non_loopback_ipv4() -> String {
    let out = Command::new("hostname")
        .arg("-I")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `hostname -I` to find a non-loopback address: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
        .unwrap_or_else(|| {
            panic!("`hostname -I` lists no non-loopback IPv4 address; this test needs one")
        })
        .to_string()
}

fn serve_command(fixture: &Fixture, options: &ServeOptions, log: &PathBuf) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(fixture.data_dir())
        .arg("--pipelines-dir")
        .arg(fixture.pipelines_dir())
        .args(["--listen", &options.listen])
        .args(["--docker-host", &fixture.proxy.docker_host()])
        .args(["--runner-image", RUNNER_IMAGE])
        .args(["--instance", fixture.instance()])
        .args(["--stop-grace-period", "2s"]);
    if options.dev {
        command.arg("--dev");
    }
    for origin in &options.cors_origins {
        command.args(["--cors-origin", origin]);
    }
    // Only what the test sets reaches the operator.
    for (key, _) in std::env::vars() {
        if key.starts_with("UV_") || key.starts_with("FLOTILLA_") {
            command.env_remove(key);
        }
    }
    for key in ["DATABASE_URL", "PIPELINES_DIR", "PORT", "DOCKER_HOST"] {
        command.env_remove(key);
    }
    if let Some(token) = &options.admin_token {
        command.env("FLOTILLA_ADMIN_TOKEN", token);
    }
    command
        .env("ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("RUST_LOG", "info,sqlx=warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("operator log file"));
    command
}

fn new_log_path(fixture: &Fixture) -> PathBuf {
    fixture
        .scratch("api-serve-logs")
        .join(format!("serve-{}.log", uuid::Uuid::new_v4().simple()))
}

/// Runs `flotilla serve` expecting it to refuse to start; returns its output. Panics if
/// it is still running after a bound.
pub fn serve_expecting_exit(fixture: &Fixture, options: &ServeOptions) -> Output {
    let log = new_log_path(fixture);
    let mut child = serve_command(fixture, options, &log)
        .spawn()
        .expect("start flotilla serve");
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for flotilla serve") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "flotilla serve {options:?} kept running; it should refuse to start. Log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = std::io::Read::read_to_end(&mut pipe, &mut stdout);
    }
    Output {
        status,
        stdout,
        stderr: std::fs::read(&log).unwrap_or_default(),
    }
}

/// A running `flotilla serve`; dropping it kills it (SIGKILL).
pub struct ApiOperator {
    child: Child,
    port: u16,
    admin_token: String,
    log: PathBuf,
    client: reqwest::Client,
    streaming: reqwest::Client,
}

impl ApiOperator {
    /// Starts `flotilla serve` with `options` on the fixture's proxy, dirs and instance,
    /// and waits until it prints its address.
    pub fn start(fixture: &Fixture, options: &ServeOptions) -> Self {
        let log = new_log_path(fixture);
        let mut child = serve_command(fixture, options, &log)
            .spawn()
            .expect("start flotilla serve");
        let api_line = await_api_line(&mut child, &log, START_TIMEOUT);
        let port = api_line
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|authority| authority.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected API line {api_line:?}"));
        let admin_token = match &options.admin_token {
            Some(token) => token.clone(),
            None => std::fs::read_to_string(fixture.data_dir().join("admin-token"))
                .map(|t| t.trim().to_owned())
                .unwrap_or_default(),
        };
        Self {
            child,
            port,
            admin_token,
            log,
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("http client"),
            streaming: reqwest::Client::builder()
                .connect_timeout(REQUEST_TIMEOUT)
                .build()
                .expect("streaming http client"),
        }
    }

    /// The port the operator listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin token (installed, or read from the generated file).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        self.url_via("127.0.0.1", path)
    }

    /// `http://HOST:PORT{path}`.
    pub fn url_via(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    /// Loopback URL of a path under `/apis/flotilla.dev/v1alpha1`.
    pub fn api(&self, path: &str) -> String {
        self.url(&format!("{API}{path}"))
    }

    /// A request to an absolute `url`, with `token` as bearer token when given.
    pub fn request(&self, method: Method, url: &str, token: Option<&str>) -> RequestBuilder {
        let request = self.client.request(method, url);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request`; answers status and the JSON (or text) body.
    pub async fn send(&self, request: RequestBuilder) -> (StatusCode, Value) {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", self.log_tail()));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// `GET` of an API path with the admin token.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::GET, &self.api(path), Some(&self.admin_token)))
            .await
    }

    /// Creates a token with `scopes` (and a lifetime such as `1s`) using the admin
    /// token; returns the token.
    pub async fn create_token(&self, name: &str, scopes: &[&str], expires: Option<&str>) -> String {
        let mut body = json!({ "name": name, "scopes": scopes });
        if let Some(expires) = expires {
            body["expires"] = json!(expires);
        }
        let request = self
            .request(Method::POST, &self.api("/tokens"), Some(&self.admin_token))
            .json(&body);
        let (status, answer) = self.send(request).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "creating token {name}: {answer}"
        );
        answer["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {answer}"))
            .to_owned()
    }

    /// Applies YAML with the admin token; panics unless it answers 200.
    pub async fn apply(&self, yaml: &str) -> Value {
        let request = self
            .request(Method::POST, &self.api("/apply"), Some(&self.admin_token))
            .header("content-type", "application/yaml")
            .body(yaml.to_owned());
        let (status, answer) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "apply answered {answer}");
        answer
    }

    /// Deletes `plural/name` in `default` with the admin token; panics unless 200.
    pub async fn delete(&self, plural: &str, name: &str) {
        let url = self.api(&format!("/namespaces/default/{plural}/{name}"));
        let request = self.request(Method::DELETE, &url, Some(&self.admin_token));
        let (status, answer) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "delete {plural}/{name}: {answer}");
    }

    /// `POST …/namespaces/default/runs` of `pipeline` with the admin token, optionally
    /// with an `Idempotency-Key`; answers status and body.
    pub async fn post_run(&self, pipeline: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut request = self
            .request(
                Method::POST,
                &self.api("/namespaces/default/runs"),
                Some(&self.admin_token),
            )
            .json(&json!({ "spec": { "pipelineRef": { "name": pipeline } } }));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    /// Creates a run of `pipeline`; returns its name.
    pub async fn create_run(&self, pipeline: &str) -> String {
        let (status, run) = self.post_run(pipeline, None).await;
        assert_eq!(status, StatusCode::CREATED, "creating a run answered {run}");
        name_of(&run).to_owned()
    }

    /// The stored run.
    pub async fn run(&self, name: &str) -> Value {
        let (status, run) = self
            .admin_get(&format!("/namespaces/default/runs/{name}"))
            .await;
        assert_eq!(status, StatusCode::OK, "GET run {name}: {run}");
        run
    }

    /// Waits until `plural/name` exists in `default`.
    pub async fn wait_for_object(&self, plural: &str, name: &str) {
        let path = format!("/namespaces/default/{plural}/{name}");
        self.wait_until(
            &format!("{plural}/{name}"),
            Duration::from_secs(30),
            || async { (self.admin_get(&path).await.0 == StatusCode::OK).then_some(()) },
        )
        .await;
    }

    /// Waits until the run has finished (Succeeded, Failed or Cancelled); returns it.
    pub async fn wait_finished(&self, name: &str) -> Value {
        self.wait_until(&format!("run {name} to finish"), RUN_TIMEOUT, || async {
            let run = self.run(name).await;
            ["Succeeded", "Failed", "Cancelled"]
                .contains(&phase(&run))
                .then_some(run)
        })
        .await
    }

    /// Waits until every run has finished and no container of the fixture's instance is
    /// left, so that no container creation is still in flight when the test ends.
    pub async fn settle(&self, fixture: &Fixture) {
        self.wait_until("every run to finish", RUN_TIMEOUT, || async {
            let (status, list) = self.admin_get("/runs").await;
            let items = list["items"].as_array()?;
            (status == StatusCode::OK
                && items
                    .iter()
                    .all(|run| ["Succeeded", "Failed", "Cancelled"].contains(&phase(run))))
            .then_some(())
        })
        .await;
        fixture.wait_no_containers(RUN_TIMEOUT).await;
    }

    /// The stored log of the run's latest attempt (`<timestamp> <stream> <text>` lines).
    pub async fn log_text(&self, name: &str) -> String {
        let (status, body) = self
            .admin_get(&format!("/namespaces/default/runs/{name}/log"))
            .await;
        assert_eq!(status, StatusCode::OK, "log of {name}: {body}");
        body.as_str().map(str::to_owned).unwrap_or_default()
    }

    /// Opens `…/runs/{name}/log?follow=true`, resuming after `last_event_id` if given.
    pub async fn follow_log(&self, name: &str, last_event_id: Option<&str>) -> SseStream {
        let url = self.api(&format!("/namespaces/default/runs/{name}/log?follow=true"));
        let mut request = self.streaming.get(url).bearer_auth(&self.admin_token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("follow log of {name}: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "follow log of {name}");
        SseStream::new(response)
    }

    /// Opens a watch at API `path_and_query` (e.g. `/namespaces/default/pipelines?watch=true`)
    /// with the admin token; returns the status and, on 200, the stream.
    pub async fn watch(&self, path_and_query: &str) -> (StatusCode, Option<NdjsonStream>) {
        let response = self
            .streaming
            .get(self.api(path_and_query))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("watch {path_and_query}: {e}"));
        let status = response.status();
        let stream = (status == StatusCode::OK).then(|| NdjsonStream::new(response));
        (status, stream)
    }

    /// Polls `check` every 200 ms until it answers `Some`; panics with `what` and the
    /// operator's log after `timeout`.
    pub async fn wait_until<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\noperator log (tail):\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid().to_string();
        let out = Command::new("kill")
            .args(["-TERM", &pid])
            .output()
            .expect("run kill");
        assert!(out.status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for flotilla serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "flotilla serve did not exit within {timeout:?} of SIGTERM; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the operator's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for ApiOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `metadata.name` of an object.
pub fn name_of(object: &Value) -> &str {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no metadata.name in {object}"))
}

/// A response body read in pieces split at a separator.
struct Chunks {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl Chunks {
    fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
        }
    }

    /// The next piece ending in `separator` (without it); `None` at the end of the body
    /// (a trailing piece without separator is dropped) or when the connection fails.
    async fn next(&mut self, separator: &[u8]) -> Option<String> {
        loop {
            if let Some(at) = self
                .buffer
                .windows(separator.len())
                .position(|w| w == separator)
            {
                let piece: Vec<u8> = self.buffer.drain(..at + separator.len()).collect();
                return Some(String::from_utf8_lossy(&piece[..at]).into_owned());
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// One item of a server-sent event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseItem {
    /// An event with its `id:`, `event:` and (joined) `data:` fields.
    Event {
        /// `id:`.
        id: Option<String>,
        /// `event:` (`None` for the default `message`).
        event: Option<String>,
        /// `data:` lines joined with newlines.
        data: String,
    },
    /// A comment line (`:` …), such as a keep-alive.
    Comment(String),
}

/// A server-sent event stream, read item by item.
pub struct SseStream {
    chunks: Chunks,
    pending: VecDeque<SseItem>,
}

impl SseStream {
    fn new(response: reqwest::Response) -> Self {
        Self {
            chunks: Chunks::new(response),
            pending: VecDeque::new(),
        }
    }

    /// The next item; `None` when the server ended the stream.
    pub async fn next_item(&mut self) -> Option<SseItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            let block = self.chunks.next(b"\n\n").await?;
            self.pending.extend(parse_sse_block(&block));
        }
    }

    /// Every item until the stream ends; panics if that takes longer than `timeout`.
    pub async fn read_to_end(&mut self, timeout: Duration) -> Vec<SseItem> {
        let mut items = Vec::new();
        let read = async {
            while let Some(item) = self.next_item().await {
                items.push(item);
            }
        };
        let finished = tokio::time::timeout(timeout, read).await.is_ok();
        assert!(
            finished,
            "the event stream did not end within {timeout:?}; last items: {:?}",
            &items[items.len().saturating_sub(5)..]
        );
        items
    }
}

fn parse_sse_block(block: &str) -> Vec<SseItem> {
    let mut items = Vec::new();
    let (mut id, mut event, mut data, mut has_field) = (None, None, Vec::new(), false);
    for line in block.split('\n').map(|l| l.trim_end_matches('\r')) {
        if let Some(comment) = line.strip_prefix(':') {
            items.push(SseItem::Comment(comment.trim().to_owned()));
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        has_field = true;
        match field {
            "id" => id = Some(value),
            "event" => event = Some(value),
            "data" => data.push(value),
            _ => {}
        }
    }
    if has_field {
        items.push(SseItem::Event {
            id,
            event,
            data: data.join("\n"),
        });
    }
    items
}

/// A newline-delimited JSON stream (a watch).
pub struct NdjsonStream {
    chunks: Chunks,
}

impl NdjsonStream {
    fn new(response: reqwest::Response) -> Self {
        Self {
            chunks: Chunks::new(response),
        }
    }

    /// The next object; `None` if none arrives within `timeout` or the stream ends.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Value> {
        let line = tokio::time::timeout(timeout, self.chunks.next(b"\n"))
            .await
            .ok()??;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("watch line {line:?}: {e}")))
    }
}
