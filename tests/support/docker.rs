//! Real Docker for the run tests: a per-test HAProxy socket proxy, a per-test operator
//! (`flotilla serve` on its own data dir, store, pipelines dir and `--instance`),
//! pipeline folders, bounded waits, and removal of every container the test's instance
//! owns.
//!
//! A [`Fixture`] owns the proxy, the temp dir, the store and the instance name; operators
//! started from it ([`Fixture::start_operator`]) share that data dir and store, so a test
//! can kill one (`kill -9`) and start the next on the same state. The store is SQLite in
//! the data dir or a PostgreSQL database of the fixture's own, as `FLOTILLA_TEST_STORE`
//! says ([`super::store`]). Drop order does the cleanup: an [`Operator`] is killed when
//! dropped, then the fixture removes the containers labelled
//! `flotilla.dev/managed-by=<instance>` (through the real socket, with the docker CLI),
//! stops its proxy, drops its database and deletes its dir. Every test has its own
//! instance, port, dir and database, so tests run in parallel and twice in a row. Each fixture installs its own admin
//! token (`FLOTILLA_ADMIN_TOKEN`), which API calls and CLI runs send as bearer token.
//!
//! Missing prerequisites (docker, haproxy, the runner image) fail the test with a
//! message saying what to install; they never make it pass.

// Each test crate that includes `support` uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use super::server::{API, ENCRYPTION_KEY, await_api_line, base_of, bearer_client};
use super::store::{StoreKind, TestStore};

/// The runner image `make runner-image` builds for this version.
pub const RUNNER_IMAGE: &str = concat!("flotilla/runner:", env!("CARGO_PKG_VERSION"));

/// How long a short run may take from creation to its end on a busy machine.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Client timeout of API calls: longer is a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A pipeline that prints `line 1` … `line 20`, waits for a file `go` in its own folder
/// (the test writes it on the host; the folder is bind-mounted), then prints `line 21` …
/// `line 40`. Without `go` it fails, so a test that never releases it cannot pass.
pub const WAITS_FOR_GO: &str = r#"
import os, sys, time
for i in range(1, 21):
    print(f"line {i}", flush=True)
deadline = time.time() + 600
while not os.path.exists("go"):
    if time.time() > deadline:
        sys.exit(3)
    time.sleep(0.05)
for i in range(21, 41):
    print(f"line {i}", flush=True)
"#;

/// The stdout lines of a [`WAITS_FOR_GO`] run, in order.
pub fn forty_lines() -> Vec<String> {
    (1..=40).map(|i| format!("line {i}")).collect()
}

/// Label with the operator instance on every run container.
pub const MANAGED_BY: &str = "flotilla.dev/managed-by";

/// Panics with what to install unless docker, haproxy and the runner image are there.
pub fn require_prerequisites() {
    match Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
    {
        Err(e) => panic!(
            "the docker CLI cannot be run ({e}): these tests drive a real Docker engine; install Docker (`make deps`) and start the daemon"
        ),
        Ok(out) if !out.status.success() => panic!(
            "the Docker daemon is not reachable through /var/run/docker.sock: {}; start it (these tests need a real engine)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(_) => {}
    }
    if let Err(e) = Command::new("haproxy").arg("-v").output() {
        panic!(
            "haproxy cannot be run ({e}): the run tests reach Docker only through the socket proxy; install it with `apt-get install haproxy` (or `make deps`)"
        );
    }
    let image = docker(&["image", "inspect", "--format", "{{.Id}}", RUNNER_IMAGE]);
    assert!(
        image.status.success(),
        "the runner image {RUNNER_IMAGE} is missing: build it with `make runner-image` ({})",
        text(&image.stderr).trim()
    );
}

/// Runs the docker CLI against the local socket (never through the proxy).
pub fn docker(args: &[&str]) -> Output {
    try_docker(args).unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"))
}

fn try_docker(args: &[&str]) -> std::io::Result<Output> {
    Command::new("docker")
        .args(args)
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null())
        .output()
}

/// Runs the docker CLI and panics unless it succeeds; returns its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        text(&out.stderr).trim()
    );
    text(&out.stdout).trim().to_owned()
}

/// `docker inspect` of one container, or `None` when it does not exist.
pub fn inspect_container(name: &str) -> Option<Value> {
    let out = docker(&["container", "inspect", name]);
    if !out.status.success() {
        return None;
    }
    let list: Value = serde_json::from_slice(&out.stdout).expect("docker inspect prints JSON");
    list.get(0).cloned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The project's HAProxy socket proxy (`scripts/proxy.sh`) on its own loopback port.
pub struct Proxy {
    port: u16,
    env: Vec<(String, String)>,
}

impl Proxy {
    /// Starts a proxy on a free port.
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// Starts a proxy on a free port with settings of `scripts/proxy.sh` (e.g.
    /// `PROXY_IDLE_TIMEOUT=2s`), kept for every restart.
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let proxy = Self {
            port: free_port(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        proxy.up();
        proxy
    }

    /// `127.0.0.1:PORT`.
    pub fn listen(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `tcp://127.0.0.1:PORT`, for `--docker-host`.
    pub fn docker_host(&self) -> String {
        format!("tcp://{}", self.listen())
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen())
    }

    /// Starts the proxy (again) on its port and waits until `/_ping` answers.
    pub fn up(&self) {
        let out = self.script("start");
        assert!(
            out.status.success(),
            "scripts/proxy.sh start --listen {} failed:\n{}{}",
            self.listen(),
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// Stops the proxy; connections through it are cut.
    pub fn down(&self) {
        let out = self.script("stop");
        assert!(
            out.status.success(),
            "scripts/proxy.sh stop --listen {} failed: {}",
            self.listen(),
            text(&out.stderr)
        );
    }

    /// The proxy's access log (HAProxy `httplog` lines with termination flags).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.run_dir().join("haproxy.log")).unwrap_or_default()
    }

    /// Where scripts/proxy.sh keeps this proxy's pid file and log.
    fn run_dir(&self) -> PathBuf {
        let runtime = std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".to_owned());
        PathBuf::from(format!("{runtime}/flotilla-proxy-{}", self.port))
    }

    /// Stops the proxy, ignoring failures (for cleanup).
    fn down_quietly(&self) {
        let _ = self.script_output("stop");
    }

    fn script(&self, verb: &str) -> Output {
        self.script_output(verb)
            .unwrap_or_else(|e| panic!("cannot run scripts/proxy.sh: {e}"))
    }

    fn script_output(&self, verb: &str) -> std::io::Result<Output> {
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/proxy.sh"))
            .args([verb, "--listen", &self.listen()])
            .env_remove("PROXY_LISTEN")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down_quietly();
        // scripts/proxy.sh keeps the log after a stop (for people); a test's goes.
        let _ = std::fs::remove_dir_all(self.run_dir());
    }
}

/// Options of one operator start.
#[derive(Clone, Debug, Default)]
pub struct OperatorOptions {
    /// `--max-concurrent-runs`.
    pub max_concurrent_runs: Option<usize>,
    /// `--wheelhouse`.
    pub wheelhouse: Option<PathBuf>,
    /// Extra environment of the operator process (e.g. `UV_OFFLINE=1`).
    pub env: Vec<(String, String)>,
    /// `--git-url`: follow this repository instead of the fixture's pipelines dir.
    pub git_url: Option<String>,
    /// Further `flotilla serve` arguments (e.g. `--webhook-secret S`); a `--database`
    /// among them replaces the fixture's store.
    pub args: Vec<String>,
    /// `--instance` instead of the fixture's own (its containers are then cleaned up
    /// by the fixture whose instance it is).
    pub instance: Option<String>,
    /// `--data-dir` instead of the fixture's own (another replica of one store).
    pub data_dir: Option<PathBuf>,
}

/// One test's proxy, directories and operator instance name.
pub struct Fixture {
    instance: String,
    token: String,
    starts: AtomicUsize,
    extra_containers: Mutex<Vec<String>>,
    store_kind: StoreKind,
    // Made on first use: tests that start no operator need no database.
    store: OnceLock<Arc<TestStore>>,
    /// The test's socket proxy (stop and start it to simulate Docker outages).
    pub proxy: Proxy,
    // Dropped last: the data dir outlives every operator and container.
    dir: TempDir,
}

impl Fixture {
    /// Checks prerequisites, then starts a proxy and makes empty directories.
    pub fn new() -> Self {
        Self::with_proxy_env(&[])
    }

    /// Like [`Fixture::new`], with settings for `scripts/proxy.sh` such as
    /// `PROXY_IDLE_TIMEOUT` or `PROXY_EVENTS_TIMEOUT`.
    pub fn with_proxy_env(proxy_env: &[(&str, &str)]) -> Self {
        require_prerequisites();
        let dir = tempfile::Builder::new()
            .prefix("flotilla-runs-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("pipelines")).expect("pipelines dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let secret = uuid::Uuid::new_v4().simple().to_string();
        Self {
            instance: format!("test-{}", &id[..12]),
            token: format!("flt_{id}{secret}"),
            starts: AtomicUsize::new(0),
            extra_containers: Mutex::new(Vec::new()),
            store_kind: StoreKind::from_env(),
            store: OnceLock::new(),
            proxy: Proxy::start_with_env(proxy_env),
            dir,
        }
    }

    /// Value of `flotilla.dev/managed-by` on this test's containers.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The operator's `--pipelines-dir`.
    pub fn pipelines_dir(&self) -> PathBuf {
        self.dir.path().join("pipelines")
    }

    /// The operator's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The store of this fixture's operators (SQLite in the data dir, or its own
    /// PostgreSQL database).
    pub fn store(&self) -> &Arc<TestStore> {
        self.store
            .get_or_init(|| Arc::new(TestStore::new(self.store_kind, &self.data_dir())))
    }

    /// The URL of [`Fixture::store`], for `flotilla::store::Store::connect`.
    pub fn store_url(&self) -> String {
        self.store().url()
    }

    /// A scratch directory readable by the unprivileged user of run containers.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("scratch dir");
        make_world_readable(&path);
        path
    }

    /// Writes a pipeline folder `<name>/` with `main.py`, `requirements.txt` and a
    /// `pipeline.yaml` whose spec is `source: { path: <name> }` plus `spec_lines` (YAML
    /// lines at spec level, e.g. `timeout: 3s`).
    pub fn write_pipeline(&self, name: &str, main_py: &str, requirements: &str, spec_lines: &str) {
        let folder = self.pipelines_dir().join(name);
        std::fs::create_dir_all(&folder).expect("pipeline folder");
        std::fs::write(folder.join("main.py"), main_py).expect("main.py");
        std::fs::write(folder.join("requirements.txt"), requirements).expect("requirements.txt");
        let mut spec = format!("  source: {{ path: {name} }}\n");
        for line in spec_lines.lines().filter(|l| !l.trim().is_empty()) {
            spec.push_str("  ");
            spec.push_str(line);
            spec.push('\n');
        }
        let manifest = format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n{spec}"
        );
        std::fs::write(folder.join("pipeline.yaml"), manifest).expect("pipeline.yaml");
    }

    /// Writes a file under the pipelines dir (e.g. a Schedule manifest).
    pub fn write_manifest(&self, relative: &str, content: &str) {
        std::fs::write(self.pipelines_dir().join(relative), content).expect("manifest");
    }

    /// Starts `flotilla serve` on this fixture's dirs, instance and proxy, and waits
    /// until it answers.
    pub fn start_operator(&self, options: &OperatorOptions) -> Operator {
        let number = self.starts.fetch_add(1, Ordering::SeqCst);
        let log = self.dir.path().join(format!("serve-{number}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(options.data_dir.clone().unwrap_or_else(|| self.data_dir()))
            .args(["--listen", "127.0.0.1:0"])
            .args(["--docker-host", &self.proxy.docker_host()])
            .args(["--runner-image", RUNNER_IMAGE])
            .args([
                "--instance",
                options.instance.as_deref().unwrap_or(&self.instance),
            ])
            .args(["--stop-grace-period", "2s"]);
        match &options.git_url {
            Some(url) => command.args(["--git-url", url]),
            None => command.arg("--pipelines-dir").arg(self.pipelines_dir()),
        };
        // The fixture's store unless the test names another database.
        let own_store = (!options.args.iter().any(|arg| arg == "--database")).then(|| {
            command.args(self.store().serve_args());
            Arc::clone(self.store())
        });
        command.args(&options.args);
        if let Some(max) = options.max_concurrent_runs {
            command.args(["--max-concurrent-runs", &max.to_string()]);
        }
        if let Some(wheels) = &options.wheelhouse {
            command.arg("--wheelhouse").arg(wheels);
        }
        // Only what the test sets reaches the operator (and, for UV_*, its runs).
        for (key, _) in std::env::vars() {
            if key.starts_with("UV_") || key.starts_with("FLOTILLA_") {
                command.env_remove(key);
            }
        }
        for key in ["DATABASE_URL", "PIPELINES_DIR", "PORT", "DOCKER_HOST"] {
            command.env_remove(key);
        }
        command
            .env("ENCRYPTION_KEY", ENCRYPTION_KEY)
            .env("FLOTILLA_ADMIN_TOKEN", &self.token)
            .env("RUST_LOG", "info,sqlx=warn")
            .env("NO_COLOR", "1")
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("operator log file"));
        let mut child = command.spawn().expect("start flotilla serve");
        let base = base_of(&await_api_line(&mut child, &log, START_TIMEOUT));
        Operator {
            child,
            base,
            client: bearer_client(&self.token, REQUEST_TIMEOUT),
            log,
            instance: self.instance.clone(),
            token: self.token.clone(),
            own_store,
        }
    }

    /// Removes container `name` (created by the test by hand) when the fixture drops.
    pub fn remove_on_drop(&self, name: &str) {
        self.extra_containers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.to_owned());
    }

    /// `(name, state)` of every container of this instance, running or not.
    pub fn containers(&self) -> Vec<(String, String)> {
        instance_containers(&self.instance)
    }

    /// How long a finished attempt's container outlives its run's end on this
    /// fixture's store ([`TestStore::finished_container_kept_for`]).
    pub fn finished_container_kept_for(&self) -> Duration {
        self.store().finished_container_kept_for()
    }

    /// Waits until no container of this instance is left: `timeout` after the time
    /// finished containers are kept ([`Fixture::finished_container_kept_for`]).
    pub async fn wait_no_containers(&self, timeout: Duration) {
        let timeout = timeout + self.finished_container_kept_for();
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.containers();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containers of instance {} still exist after {timeout:?}: {left:?}",
                self.instance
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Fixture {
    /// Removes what the test leaves on the engine without ever panicking (a panic here
    /// would abort a test that is already failing). The proxy goes first, so no process
    /// of this test can reach the engine any more; then the instance's containers are
    /// removed until a listing a moment later is empty too, which also catches a create
    /// that was still in flight when the operator was killed.
    fn drop(&mut self) {
        self.proxy.down_quietly();
        let filter = format!("label={MANAGED_BY}={}", self.instance);
        let mut names: Vec<String> = self
            .extra_containers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .collect();
        for _ in 0..5 {
            if let Ok(listed) = try_docker(&["ps", "-aq", "--filter", &filter]) {
                names.extend(text(&listed.stdout).lines().map(str::to_owned));
            }
            if names.is_empty() {
                return;
            }
            let mut args = vec!["rm", "-f"];
            args.extend(names.iter().map(String::as_str));
            let _ = try_docker(&args);
            names.clear();
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn instance_containers(instance: &str) -> Vec<(String, String)> {
    let filter = format!("label={MANAGED_BY}={instance}");
    docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        "{{.Names}}\t{{.State}}",
    ])
    .lines()
    .filter_map(|l| l.split_once('\t'))
    .map(|(n, s)| (n.to_owned(), s.to_owned()))
    .collect()
}

fn make_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod scratch dir");
}

/// A running `flotilla serve`; dropping it kills it (SIGKILL).
pub struct Operator {
    child: Child,
    base: String,
    client: reqwest::Client,
    log: PathBuf,
    instance: String,
    token: String,
    /// The fixture's store, when the operator runs on it.
    own_store: Option<Arc<TestStore>>,
}

impl Operator {
    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Absolute URL of a path under `/apis/flotilla.dev/v1alpha1`.
    pub fn api(&self, path: &str) -> String {
        format!("{}{API}{path}", self.base)
    }

    /// Kills the process with SIGKILL (`kill -9`) and waits for it. On the fixture's
    /// PostgreSQL store, the dead operator's lease is released too, so the next operator
    /// starts at once, as on SQLite ([`TestStore::release_killed_operator`]).
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(store) = &self.own_store {
            store.release_killed_operator();
        }
    }

    /// The operator's process id (to stop and continue it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The operator's whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the operator's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Failure context: the operator log tail and the instance's containers.
    pub fn context(&self) -> String {
        format!(
            "containers of {}: {:?}\noperator log (tail):\n{}",
            self.instance,
            instance_containers(&self.instance),
            self.log_tail()
        )
    }

    /// `GET` of an API path; returns status and JSON (or text) body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.api(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.context()));
        decode(response).await
    }

    /// The bearer token this operator accepts (admin).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `GET` of a path outside the resource API (`/metrics`, `/readyz`); status and text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.context()));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// The value of an unlabelled counter or gauge on `/metrics` (`flotilla_<name>`), or
    /// 0 when it was not exposed yet.
    pub async fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.get_text("/metrics").await;
        assert_eq!(status, 200, "GET /metrics: {text}");
        let prefix = format!("flotilla_{name} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until the directory source has applied pipeline `name`.
    pub async fn wait_for_pipeline(&self, name: &str) {
        self.wait_for_object("pipelines", name).await;
    }

    /// Waits until object `plural/name` exists in namespace `default`.
    pub async fn wait_for_object(&self, plural: &str, name: &str) {
        let path = format!("/namespaces/default/{plural}/{name}");
        self.wait_until(
            &format!("{plural}/{name} to be applied"),
            Duration::from_secs(30),
            || async { (self.get(&path).await.0 == 200).then_some(()) },
        )
        .await;
    }

    /// Creates a run from `body` (a Run manifest or spec); returns the stored run.
    pub async fn create_run_with(&self, body: Value) -> Value {
        let response = self
            .client
            .post(self.api("/namespaces/default/runs"))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST runs: {e}"));
        let (status, run) = decode(response).await;
        assert_eq!(status, 201, "creating a run of {body} answered {run}");
        run
    }

    /// Creates a run of `pipeline` with `env`; returns its name.
    pub async fn create_run(&self, pipeline: &str, env: &[(&str, &str)]) -> String {
        let env: serde_json::Map<String, Value> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let run = self
            .create_run_with(json!({ "spec": { "pipelineRef": { "name": pipeline }, "env": env } }))
            .await;
        run["metadata"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("created run without a name: {run}"))
            .to_owned()
    }

    /// Every stored run of `pipeline` in namespace `default`.
    pub async fn runs_of(&self, pipeline: &str) -> Vec<Value> {
        let (status, runs) = self.get("/namespaces/default/runs").await;
        assert_eq!(status, 200, "GET runs: {runs}");
        runs["items"]
            .as_array()
            .unwrap_or_else(|| panic!("no items in {runs}"))
            .iter()
            .filter(|r| r["spec"]["pipelineRef"]["name"] == pipeline)
            .cloned()
            .collect()
    }

    /// The stored run.
    pub async fn run(&self, name: &str) -> Value {
        let (status, run) = self.get(&format!("/namespaces/default/runs/{name}")).await;
        assert_eq!(status, 200, "GET run {name}: {run}");
        run
    }

    /// `POST …/runs/{name}/cancel`.
    pub async fn cancel(&self, name: &str) -> Value {
        let response = self
            .client
            .post(self.api(&format!("/namespaces/default/runs/{name}/cancel")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("cancel {name}: {e}"));
        let (status, run) = decode(response).await;
        assert_eq!(status, 200, "cancel {name} answered {run}");
        run
    }

    /// `DELETE …/runs/{name}`.
    pub async fn delete_run(&self, name: &str) {
        let response = self
            .client
            .delete(self.api(&format!("/namespaces/default/runs/{name}")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
        let (status, body) = decode(response).await;
        assert!(
            (200..300).contains(&status),
            "delete {name} answered {status}: {body}"
        );
    }

    /// Stored output of one attempt (`<timestamp> <stream> <text>` lines).
    pub async fn log(&self, name: &str, attempt: u32) -> String {
        let url = self.api(&format!(
            "/namespaces/default/runs/{name}/log?attempt={attempt}"
        ));
        let response = self
            .client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("log of {name}: {e}"));
        assert_eq!(
            response.status().as_u16(),
            200,
            "log of {name} attempt {attempt}"
        );
        response.text().await.expect("log body")
    }

    /// Waits until run `name` is in one of `phases`; returns it.
    pub async fn wait_for_phase(&self, name: &str, phases: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let run = self.run(name).await;
            if phases.contains(&phase(&run)) {
                return run;
            }
            if Instant::now() > deadline {
                panic!(
                    "run {name} did not reach {phases:?} within {timeout:?}; last seen:\n{run:#}\n{}",
                    self.context()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the run has finished (Succeeded, Failed or Cancelled).
    pub async fn wait_finished(&self, name: &str) -> Value {
        self.wait_for_phase(name, &["Succeeded", "Failed", "Cancelled"], RUN_TIMEOUT)
            .await
    }

    /// Polls `check` every 200 ms until it answers `Some`; panics with `what` and
    /// context after `timeout`.
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
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.context()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the run's container runs and its first attempt has stored `line` on
    /// stdout; returns the container name.
    pub async fn wait_for_line(&self, name: &str, line: &str) -> String {
        let container = self.wait_running_container(name).await;
        self.wait_until(
            &format!("run {name} to print {line:?}"),
            RUN_TIMEOUT,
            || async {
                stdout_lines(&self.log(name, 1).await)
                    .iter()
                    .any(|l| l == line)
                    .then_some(())
            },
        )
        .await;
        container
    }

    /// Waits until the run has finished and asserts that it succeeded; returns it.
    pub async fn wait_succeeded(&self, name: &str) -> Value {
        let finished = self.wait_finished(name).await;
        assert_eq!(
            phase(&finished),
            "Succeeded",
            "{finished:#}\n{}",
            self.context()
        );
        finished
    }

    /// Waits until the run's first attempt is recorded and its container runs; returns
    /// the container name.
    pub async fn wait_running_container(&self, name: &str) -> String {
        self.wait_until(
            &format!("run {name} to have a running container"),
            RUN_TIMEOUT,
            || async {
                let run = self.run(name).await;
                let container = attempts(&run).first()?["container"].as_str()?.to_owned();
                let state = inspect_container(&container)?;
                (state["State"]["Status"] == "running").then_some(container)
            },
        )
        .await
    }

    /// Runs `flotilla ARGS` against this operator; kills it and panics after `timeout`.
    pub fn cli(&self, args: &[&str], timeout: Duration) -> Output {
        self.spawn_cli(args).wait(timeout)
    }

    /// Starts `flotilla ARGS` against this operator without waiting.
    pub fn spawn_cli(&self, args: &[&str]) -> CliProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(args)
            .env("FLOTILLA_SERVER", &self.base)
            .env("FLOTILLA_TOKEN", &self.token)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run flotilla");
        let read = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = read(Box::new(child.stdout.take().expect("piped stdout")));
        let stderr = read(Box::new(child.stderr.take().expect("piped stderr")));
        CliProcess {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child,
            stdout,
            stderr,
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `flotilla` client process started by [`Operator::spawn_cli`].
pub struct CliProcess {
    args: Vec<String>,
    child: Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl CliProcess {
    /// Waits for the process to exit; kills it and panics after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for flotilla") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stdout = self.stdout.join().unwrap_or_default();
                panic!(
                    "flotilla {:?} did not exit within {timeout:?}; stdout so far:\n{}",
                    self.args,
                    text(&stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Output {
            status,
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
        }
    }
}

async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

/// `status.phase` of a run (`""` when unset).
pub fn phase(run: &Value) -> &str {
    run["status"]["phase"].as_str().unwrap_or_default()
}

/// `status.reason` of a run (`""` when unset).
pub fn reason(run: &Value) -> &str {
    run["status"]["reason"].as_str().unwrap_or_default()
}

/// `status.attempts` of a run (empty when unset).
pub fn attempts(run: &Value) -> &[Value] {
    run["status"]["attempts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// `metadata.uid` of a run.
pub fn uid(run: &Value) -> &str {
    run["metadata"]["uid"]
        .as_str()
        .unwrap_or_else(|| panic!("no metadata.uid in {run}"))
}

/// Texts of the `stdout` lines of a stored log, in order.
pub fn stdout_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(' ')?;
            let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
            (stream == "stdout").then(|| text.to_owned())
        })
        .collect()
}

/// Parses an RFC 3339 time of a run's status.
pub fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("expected an RFC 3339 time, got {value}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad time {text}: {e}"))
        .with_timezone(&chrono::Utc)
}

/// Counts, from Docker's event stream, how many containers matching label filters run at
/// once (between their `start` and `die` events); keeps the maximum.
///
/// Events, not `docker ps`: Docker lists a container whose process has ended as running
/// until it has finished its clean-up (50–65 ms here, longer under load), while Flotilla
/// learns of the end from the `die` event and may start the next run in that window.
pub struct RunningCounter {
    child: std::process::Child,
    /// Containers running now, and the most seen at once.
    state: Arc<Mutex<(std::collections::HashSet<String>, usize)>>,
    handle: std::thread::JoinHandle<()>,
}

impl RunningCounter {
    /// Starts counting (events from this instant on are replayed, so none is missed).
    pub fn start(labels: &[String]) -> Self {
        let mut command = Command::new("docker");
        command.args([
            "events",
            "--since",
            &chrono::Utc::now().timestamp().to_string(),
        ]);
        command.args(["--filter", "type=container", "--filter", "event=start"]);
        command.args([
            "--filter",
            "event=die",
            "--format",
            "{{.Action}} {{.Actor.ID}}",
        ]);
        for label in labels {
            command.args(["--filter", &format!("label={label}")]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker events");
        let stdout = child.stdout.take().expect("piped stdout");
        let state = Arc::new(Mutex::new((std::collections::HashSet::new(), 0)));
        let shared = state.clone();
        let handle = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut state = shared.lock().expect("counter state");
                match line.split_once(' ') {
                    Some(("start", id)) => {
                        state.0.insert(id.to_owned());
                    }
                    Some(("die", id)) => {
                        state.0.remove(id);
                    }
                    _ => {}
                }
                state.1 = state.1.max(state.0.len());
            }
        });
        Self {
            child,
            state,
            handle,
        }
    }

    /// Stops counting once every container seen starting was seen dying (callers stop
    /// after their runs finished; at most 30 s); returns the most running at once.
    pub fn stop(mut self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.state.lock().expect("counter state").0.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.handle.join().expect("event reader thread");
        let state = self.state.lock().expect("counter state");
        state.1
    }
}
