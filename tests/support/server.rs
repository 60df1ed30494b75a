//! A real `flotilla serve` for one test.
//!
//! [`TestServer::start`] runs the binary Cargo built for this test run on SQLite in a
//! fresh temp dir, on a loopback port the kernel picks (`--listen 127.0.0.1:0`), and
//! learns the address from the `Flotilla API:` line the server prints. Dropping the
//! server kills the process and removes the dir. Every test gets its own server, port
//! and data, so tests run in parallel.
//!
//! The server gets a known admin token ([`ADMIN_TOKEN`]), which the HTTP client and the
//! CLI send. Its Docker endpoint is a closed loopback port and its instance label is
//! unique: these servers test resources, and must never start, adopt or garbage-collect
//! a container of another test or of a developer.
//!
//! Helpers speak the API the way a client would ([`TestServer::apply_yaml`],
//! [`TestServer::list`], [`TestServer::snapshot`]) and run the CLI against the server
//! ([`TestServer::cli`]).

// Each test crate that includes `support` uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

/// A valid Fernet key, used as `ENCRYPTION_KEY` of every test server.
pub const ENCRYPTION_KEY: &str = "iixiBnaWuVNf0fmGc6y2Yt5Ttebms5028m7odvNpd84=";

/// The admin bearer token every test server installs.
pub const ADMIN_TOKEN: &str = "flt_test_admin_token_for_integration_tests";

/// A Docker endpoint that refuses connections at once (port 1 is privileged and unused).
const NO_DOCKER: &str = "tcp://127.0.0.1:1";

/// Path prefix of the resource API.
pub const API: &str = "/apis/flotilla.dev/v1alpha1";

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Client timeout: a request that takes longer than this is a hang, not slowness.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The `flotilla` binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_flotilla")
}

/// A running `flotilla serve`, killed and deleted on drop.
pub struct TestServer {
    child: Child,
    base: String,
    client: reqwest::Client,
    log: PathBuf,
    // Dropped last: removes the data dir after the process is gone.
    dir: TempDir,
}

impl TestServer {
    /// Starts a server with an empty SQLite store and no pipelines directory.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a server that applies `pipelines_dir` (manager `dir:<canonical path>`).
    pub fn start_with_pipelines_dir(pipelines_dir: &Path) -> Self {
        Self::start_with(Some(pipelines_dir))
    }

    /// Starts a server with further `serve` arguments, e.g. `--git-url URL
    /// --webhook-secret S` (the pipelines directory is left out, as with [`Self::start`]).
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_with_options(None, args, &[])
    }

    /// Starts a server with further environment variables (e.g. Fast-Flow's names).
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        Self::start_with_options(None, &[], env)
    }

    fn start_with(pipelines_dir: Option<&Path>) -> Self {
        Self::start_with_options(pipelines_dir, &[], &[])
    }

    fn start_with_options(
        pipelines_dir: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-test-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let log = dir.path().join("serve.log");
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"]);
        if let Some(pipelines) = pipelines_dir {
            command.arg("--pipelines-dir").arg(pipelines);
        }
        command.args(args);
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let instance = format!(
            "flotilla-test-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut child = command
            .env("ENCRYPTION_KEY", ENCRYPTION_KEY)
            .env("FLOTILLA_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("DOCKER_HOST", NO_DOCKER)
            .env("FLOTILLA_INSTANCE", instance)
            .env("RUST_LOG", "info,sqlx=warn")
            .env("NO_COLOR", "1")
            .env_remove("FLOTILLA_DEV")
            .env_remove("FLOTILLA_CORS_ORIGINS")
            .env_remove("DATABASE_URL")
            .env_remove("PIPELINES_DIR")
            .env_remove("PORT")
            .env_remove("FLOTILLA_LISTEN")
            .env_remove("FLOTILLA_DATA_DIR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start flotilla serve");
        let api_url = await_api_line(&mut child, &log, START_TIMEOUT);
        let base = base_of(&api_url);
        let client = bearer_client(ADMIN_TOKEN, REQUEST_TIMEOUT);
        Self {
            child,
            base,
            client,
            log,
            dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Absolute URL of a path under `/apis/flotilla.dev/v1alpha1`.
    pub fn api(&self, path: &str) -> String {
        format!("{}{API}{path}", self.base)
    }

    /// An HTTP client with a timeout (a hanging server fails the test) that sends the
    /// admin token.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A scratch directory that lives as long as the server.
    pub fn scratch(&self) -> PathBuf {
        let path = self.dir.path().join("scratch");
        std::fs::create_dir_all(&path).expect("scratch dir");
        path
    }

    /// What the server logged so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs `flotilla ARGS` against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, b"")
    }

    /// Runs `flotilla ARGS` against this server with `stdin` as its standard input.
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_cli(
            args,
            stdin,
            &[
                ("FLOTILLA_SERVER", &self.base),
                ("FLOTILLA_TOKEN", ADMIN_TOKEN),
            ],
        )
    }

    /// Posts raw YAML to the apply endpoint; `query` is e.g. `fieldManager=cli&dryRun=true`.
    pub async fn apply_yaml(&self, yaml: &str, query: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.api(&format!("/apply?{query}")))
            .header("content-type", "application/yaml")
            .body(yaml.to_owned())
            .send()
            .await
            .expect("apply request");
        decode(response).await
    }

    /// Posts named files to the apply endpoint.
    pub async fn apply_files(&self, files: &[(&str, &str)], query: &str) -> (StatusCode, Value) {
        let body = serde_json::json!({
            "files": files
                .iter()
                .map(|(name, content)| serde_json::json!({ "name": name, "content": content }))
                .collect::<Vec<_>>()
        });
        let response = self
            .client
            .post(self.api(&format!("/apply?{query}")))
            .json(&body)
            .send()
            .await
            .expect("apply request");
        decode(response).await
    }

    /// `GET` of an API path, answering status and JSON body.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.api(path))
            .send()
            .await
            .expect("get request");
        decode(response).await
    }

    /// `GET` of an API path, answering status and the raw body text.
    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .client
            .get(self.api(path))
            .send()
            .await
            .expect("get request");
        let status = response.status();
        (status, response.text().await.expect("body"))
    }

    /// The List of `plural` across namespaces; panics unless the answer is 200.
    pub async fn list(&self, plural: &str) -> Value {
        let (status, body) = self.get(&format!("/{plural}")).await;
        assert_eq!(status, StatusCode::OK, "list {plural}: {body}");
        body
    }

    /// Every stored object with what a user's write can change: kind, namespace, name,
    /// uid, generation, manager, labels, annotations and spec. Equal snapshots mean no
    /// write of user input happened. (The resourceVersion is left out on purpose: the
    /// schedule and run controllers write status, which moves it.)
    pub async fn snapshot(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for plural in ["pipelines", "schedules", "secrets", "runs"] {
            let list = self.list(plural).await;
            for item in list["items"].as_array().expect("items") {
                let metadata = &item["metadata"];
                out.push(serde_json::json!({
                    "kind": item["kind"],
                    "namespace": metadata["namespace"],
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                    "generation": metadata["generation"],
                    "managedBy": metadata["managedBy"],
                    "labels": metadata["labels"],
                    "annotations": metadata["annotations"],
                    "spec": item["spec"],
                }));
            }
        }
        out
    }

    /// Polls `check` (every 100 ms, up to 30 s) until it answers `Some`; panics with
    /// `what` and the server log otherwise. Used for the asynchronous directory source.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; server log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `flotilla ARGS` with `stdin` and extra environment variables. Client
/// configuration from the environment and from a saved `flotilla login` is left out.
pub fn run_cli(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("FLOTILLA_SERVER")
        .env_remove("FLOTILLA_TOKEN")
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("flotilla-test-without-client-config"),
        )
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run flotilla");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // Written from a thread: a large input must not deadlock against full output pipes.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("flotilla finished");
    let _ = writer.join();
    output
}

/// Stdout of a CLI run as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr of a CLI run as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Panics with both streams unless the CLI exited with `code`.
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit code {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

async fn decode(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A Pipeline manifest named `name` with a few fields.
pub fn pipeline_yaml(name: &str, python: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n  source: {{ path: {name} }}\n  python: \"{python}\"\n  resources: {{ memory: 256Mi, cpus: \"0.5\" }}\n  timeout: 10m\n"
    )
}

/// A Schedule manifest named `name` running pipeline `pipeline` on `cron`.
pub fn schedule_yaml(name: &str, pipeline: &str, cron: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: {name}\nspec:\n  pipelineRef: {{ name: {pipeline} }}\n  cron: \"{cron}\"\n  timeZone: Europe/Berlin\n"
    )
}

/// Joins manifests into one multi-document text.
pub fn documents(manifests: &[String]) -> String {
    manifests.join("---\n")
}

/// Waits until a started `flotilla serve` prints its `Flotilla API:` line and returns the
/// URL on it; its stdout keeps being drained afterwards so the server never blocks on it.
/// Kills the server and panics with its log when no such line comes within `timeout`.
pub fn await_api_line(child: &mut Child, log: &Path, timeout: Duration) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("Flotilla API:")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "flotilla serve printed no `Flotilla API:` line within {timeout:?}; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

/// `http://127.0.0.1:PORT` of an API URL.
pub fn base_of(api_url: &str) -> String {
    api_url
        .find("/apis/")
        .map(|cut| api_url[..cut].to_owned())
        .unwrap_or_else(|| panic!("unexpected API line {api_url:?}"))
}

/// An HTTP client sending `token` as its bearer token, with a per-request timeout.
pub fn bearer_client(token: &str, timeout: Duration) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .build()
        .expect("http client")
}
