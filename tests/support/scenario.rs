//! Scenario helpers on top of [`super::docker`]: an API session that records every
//! response it receives (for leak scans), schedule and event look-ups, slot arithmetic on
//! the wall clock, a per-test RAM-backed secrets dir, and byte searches through files.
//!
//! The session authenticates with its own admin token, created once through
//! `flotilla token create` (tokens live in the store, so they survive operator restarts
//! on the same data dir).

// Each test crate that includes `support` uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::Value;

use super::docker::{Fixture, Operator};
use super::server::API;

/// Label a schedule puts on its runs (`flotilla.dev/schedule=<name>`).
pub const SCHEDULE_LABEL: &str = "flotilla.dev/schedule";

/// An authenticated API client bound to one operator process; keeps a transcript of
/// every response body.
pub struct Api {
    base: String,
    client: reqwest::Client,
    transcript: Mutex<Vec<String>>,
}

impl Api {
    /// Creates an admin token through the CLI of `operator` and a client using it.
    pub fn connect(operator: &Operator) -> Self {
        let name = format!(
            "scenario-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let out = operator.cli(
            &["token", "create", "--name", &name, "--scopes", "admin"],
            Duration::from_secs(30),
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success() && token.starts_with("flt_"),
            "flotilla token create failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            operator.context()
        );
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("a header value"),
        );
        Self {
            base: operator.base().to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .default_headers(headers)
                .build()
                .expect("http client"),
            transcript: Mutex::new(Vec::new()),
        }
    }

    /// Points the session at a restarted operator (a new port, the same store).
    pub fn reattach(&mut self, operator: &Operator) {
        self.base = operator.base().to_owned();
    }

    /// Every response body received so far, in order.
    pub fn transcript(&self) -> Vec<String> {
        self.transcript
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sends a request to `path` (under `/apis/flotilla.dev/v1alpha1` unless it starts
    /// with `/apis` or is a top-level route such as `/metrics`); answers status and raw
    /// body.
    pub async fn send_text(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, String) {
        let url = if path.starts_with("/apis/") || is_top_level(path) {
            format!("{}{path}", self.base)
        } else {
            format!("{}{API}{path}", self.base)
        };
        let mut request = self.client.request(method.clone(), &url);
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        self.transcript
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("{method} {path} -> {status}\n{text}"));
        (status, text)
    }

    /// Like [`Api::send_text`], decoding the body as JSON (a string when it is not).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        let (status, text) = self.send_text(method, path, body).await;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// `GET` of an API path.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }

    /// `GET` of an API path; panics unless 200.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `POST …/apply?{query}` with a raw YAML body.
    pub async fn apply(&self, yaml: &str, query: &str) -> (u16, Value) {
        self.send(
            Method::POST,
            &format!("/apply?{query}"),
            Some(("application/yaml", yaml.to_owned())),
        )
        .await
    }

    /// Applies `yaml` under field manager `test`; panics unless it is accepted.
    pub async fn apply_ok(&self, yaml: &str) -> Value {
        let (status, body) = self.apply(yaml, "fieldManager=test").await;
        assert_eq!(status, 200, "apply answered {body}\nmanifest:\n{yaml}");
        body
    }

    /// `PUT …/namespaces/default/secrets/{name}/data` with plaintext `data`.
    pub async fn set_secret(&self, name: &str, data: &[(&str, &str)]) -> Value {
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let body = serde_json::json!({ "data": data }).to_string();
        let (status, answer) = self
            .send(
                Method::PUT,
                &format!("/namespaces/default/secrets/{name}/data"),
                Some(("application/json", body)),
            )
            .await;
        assert_eq!(status, 200, "setting secret {name}: {answer}");
        answer
    }

    /// Every run in namespace `default`.
    pub async fn runs(&self) -> Vec<Value> {
        self.get_ok("/namespaces/default/runs").await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Runs created by schedule `schedule`.
    pub async fn runs_of(&self, schedule: &str) -> Vec<Value> {
        self.runs()
            .await
            .into_iter()
            .filter(|r| r["metadata"]["labels"][SCHEDULE_LABEL] == schedule)
            .collect()
    }

    /// Events of `kind/name` (e.g. `schedule/nightly`), newest first.
    pub async fn events_for(&self, involved: &str) -> Vec<Value> {
        self.get_ok(&format!("/namespaces/default/events?for={involved}"))
            .await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn is_top_level(path: &str) -> bool {
    ["/metrics", "/healthz", "/readyz", "/version"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// Reasons of `events`, in their order.
pub fn reasons(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect()
}

/// `spec.slot` of a scheduled run.
pub fn slot(run: &Value) -> DateTime<Utc> {
    rfc3339(&run["spec"]["slot"])
}

/// `metadata.creationTimestamp` of an object (whole seconds).
pub fn created(object: &Value) -> DateTime<Utc> {
    rfc3339(&object["metadata"]["creationTimestamp"])
}

/// `metadata.name` of an object.
pub fn name(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no metadata.name in {object}"))
        .to_owned()
}

fn rfc3339(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("expected an RFC 3339 time, got {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad time {text}: {e}"))
        .with_timezone(&Utc)
}

/// The latest slot of an `every: <every_secs>s` schedule (anchored at the epoch) at or
/// before `t`.
pub fn slot_at_or_before(t: DateTime<Utc>, every_secs: i64) -> DateTime<Utc> {
    let seconds = t.timestamp();
    DateTime::from_timestamp(seconds - seconds.rem_euclid(every_secs), 0).expect("a valid instant")
}

/// Sleeps until the wall clock shows `t` (returns at once when it is past).
pub async fn sleep_until(t: DateTime<Utc>) {
    if let Ok(wait) = (t - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

/// A RAM-backed secrets dir of one test (`--secrets-dir`), removed on drop.
pub struct SecretsDir {
    path: PathBuf,
}

impl SecretsDir {
    /// `/dev/shm/flotilla-test-<instance>`.
    pub fn for_fixture(fixture: &Fixture) -> Self {
        let path = PathBuf::from(format!("/dev/shm/flotilla-test-{}", fixture.instance()));
        std::fs::create_dir_all(&path).expect("secrets dir under /dev/shm");
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The operator environment selecting it.
    pub fn env(&self) -> (String, String) {
        (
            "FLOTILLA_SECRETS_DIR".to_owned(),
            self.path.display().to_string(),
        )
    }

    /// Every entry below the dir.
    pub fn entries(&self) -> Vec<PathBuf> {
        files_below(&self.path, true)
    }
}

impl Drop for SecretsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Files (and, with `with_dirs`, directories) below `root`, recursively; symlinks are
/// not followed.
pub fn files_below(root: &Path, with_dirs: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if with_dirs {
                    out.push(path.clone());
                }
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// True when `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let first = needle[0];
    haystack
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == first)
        .any(|(i, _)| haystack[i..].starts_with(needle))
}

/// Files below `root` whose bytes contain `needle`.
pub fn files_containing(root: &Path, needle: &str) -> Vec<PathBuf> {
    files_below(root, false)
        .into_iter()
        .filter(|path| {
            std::fs::read(path).is_ok_and(|bytes| contains_bytes(&bytes, needle.as_bytes()))
        })
        .collect()
}

/// The stderr logs of every operator started from `fixture` (`serve-<n>.log` beside
/// its data dir), with their paths.
pub fn operator_logs(fixture: &Fixture) -> Vec<(PathBuf, String)> {
    let dir = fixture
        .data_dir()
        .parent()
        .expect("the data dir has a parent")
        .to_path_buf();
    let mut logs: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("serve-") && n.ends_with(".log"))
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            (p, text)
        })
        .collect();
    logs.sort();
    logs
}

/// A random value for a secret, unique to one test, `prefix` plus 32 hex digits.
pub fn planted_value(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}
