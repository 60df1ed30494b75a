//! Real git for the git source's tests: a bare repository used as the remote (by file
//! URL, or served over HTTP by `git http-backend` behind a small Python server with a
//! token check), a working clone to commit and push from with the `git` CLI, a store
//! on a temp SQLite file, and a capture of everything the process logs.

// Each test crate that includes `support` uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use flotilla::store::Store;
use tempfile::TempDir;

/// Runs `git` with a clean configuration and fails the test on error; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=Flotilla Test",
            "-c",
            "user.email=test@flotilla.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A bare "remote" repository and a working clone of it.
pub struct GitRemote {
    dir: TempDir,
}

impl GitRemote {
    /// An empty remote (`remote.git`) and clone (`work`) on branch `main`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-git-")
            .tempdir()
            .expect("temp dir");
        git(dir.path(), &["init", "--quiet", "--bare", "remote.git"]);
        git(dir.path(), &["init", "--quiet", "work"]);
        let remote = this_path(&dir.path().join("remote.git"));
        git(
            &dir.path().join("work"),
            &["remote", "add", "origin", &remote],
        );
        Self { dir }
    }

    /// The directory holding `remote.git` (the HTTP server's project root).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `file://…/remote.git`.
    pub fn file_url(&self) -> String {
        format!("file://{}", this_path(&self.dir.path().join("remote.git")))
    }

    /// The working clone.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Writes a file of the working clone (creating folders).
    pub fn write(&self, path: &str, content: &str) -> &Self {
        let file = self.work().join(path);
        std::fs::create_dir_all(file.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(file, content).expect("write");
        self
    }

    /// Removes a file or folder of the working clone.
    pub fn remove(&self, path: &str) -> &Self {
        let target = self.work().join(path);
        if target.is_dir() {
            std::fs::remove_dir_all(target).expect("remove dir");
        } else {
            std::fs::remove_file(target).expect("remove file");
        }
        self
    }

    /// Commits everything and pushes the current branch; returns the commit id.
    pub fn commit_and_push(&self, message: &str) -> String {
        let work = self.work();
        git(&work, &["add", "--all"]);
        git(
            &work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        let branch = git(&work, &["rev-parse", "--abbrev-ref", "HEAD"]);
        git(
            &work,
            &[
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
        git(&work, &["rev-parse", "HEAD"])
    }

    /// Switches the working clone to a (new) branch.
    pub fn checkout_branch(&self, branch: &str) {
        git(&self.work(), &["checkout", "--quiet", "-B", branch]);
    }
}

fn this_path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A Pipeline manifest whose code is the folder `<name>`.
pub fn pipeline_yaml(name: &str, python: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n  source: {{ path: {name} }}\n  python: \"{python}\"\n"
    )
}

/// Adds a pipeline folder with `main.py` and its manifest `<name>.yaml` under `dir`.
pub fn add_pipeline(remote: &GitRemote, dir: &str, name: &str, python: &str) {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    remote
        .write(
            &format!("{prefix}{name}/main.py"),
            &format!("print('{name}')\n"),
        )
        .write(
            &format!("{prefix}{name}.yaml"),
            &pipeline_yaml(name, python),
        );
}

/// A store on a fresh SQLite file, and the temp dir that also serves as data dir.
pub async fn temp_store() -> (TempDir, Store) {
    let dir = tempfile::Builder::new()
        .prefix("flotilla-git-data-")
        .tempdir()
        .expect("temp dir");
    let store = Store::open_sqlite(&dir.path().join("flotilla.db"))
        .await
        .expect("sqlite store");
    (dir, store)
}

/// Every file below `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_default();
                if bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
                {
                    found.push(path);
                }
            }
        }
    }
    found
}

/// Installs (once per test binary) a subscriber that records every log line at TRACE
/// level, and returns the shared buffer.
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `git http-backend` behind a Python HTTP server that demands basic auth with a
/// token as password, and can be slowed down to hold a sync in flight.
pub struct HttpGitServer {
    child: Child,
    port: u16,
    delay_file: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

const HTTP_BACKEND_SERVER: &str = r#"
import base64, http.server, os, subprocess, sys, time

ROOT, TOKEN, DELAY_FILE = sys.argv[1], sys.argv[2], sys.argv[3]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, headers, body):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def serve(self):
        body = self.read_body()
        user, password = "", None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        if password != TOKEN:
            self.reply(401, [("WWW-Authenticate", 'Basic realm="git"')], b"")
            return
        path, _, query = self.path.partition("?")
        if path.endswith("/info/refs") and os.path.exists(DELAY_FILE):
            time.sleep(float(open(DELAY_FILE).read().strip() or "0"))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": ROOT,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        sep, width = out.find(b"\r\n\r\n"), 4
        if sep < 0:
            sep, width = out.find(b"\n\n"), 2
        head, payload = out[:sep], out[sep + width:]
        status, headers = 200, []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.reply(status, headers, payload)

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

impl HttpGitServer {
    /// Serves the repositories under `root`; only basic auth with `token` as password
    /// is let in.
    pub fn start(root: &Path, token: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-git-http-")
            .tempdir()
            .expect("temp dir");
        let script = dir.path().join("server.py");
        std::fs::write(&script, HTTP_BACKEND_SERVER).expect("write server");
        let delay_file = dir.path().join("delay");
        let log = dir.path().join("server.log");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(root)
            .arg(token)
            .arg(&delay_file)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("server prints its port");
        let port = line.trim().parse().expect("a port number");
        Self {
            child,
            port,
            delay_file,
            log,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:<port>/remote.git`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/remote.git", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Makes every ref advertisement wait this long (zero: no wait).
    pub fn set_delay(&self, delay: Duration) {
        std::fs::write(&self.delay_file, format!("{}", delay.as_secs_f64())).expect("delay");
    }

    /// What the server logged (request lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HttpGitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
