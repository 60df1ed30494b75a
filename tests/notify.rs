//! Notifications end to end: a real operator (`flotilla serve`) runs pipelines in Docker
//! through the HAProxy socket proxy and tells a real SMTP server (aiosmtpd from PyPI, in
//! a venv the test makes, with STARTTLS on a certificate of a CA the test makes, and
//! AUTH) and local HTTP receivers standing in for Teams, Slack and a generic webhook. The
//! tests check what arrives (subject, pipeline, run, reason, log tail, redaction, the
//! HMAC signature computed here independently), that a down or slow channel delays
//! neither runs nor other channels, that a run finished while the operator was down is
//! notified once. The latency from a run's end to its message is measured by
//! `scripts/bench-notify.sh` (`make bench`).
//!
//! Each test has its own proxy, data dir, operator instance, receivers and mail server,
//! so tests run in parallel and twice in a row.

#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path as AxumPath, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use support::docker::{Fixture, Operator, OperatorOptions, free_port, phase};

/// What every test pipeline prints: 25 numbered lines, a secret, then it exits `EXIT`.
const MAIN_PY: &str = r#"import os, sys
for i in range(1, 26):
    print(f"line {i}", flush=True)
print("token is " + os.environ.get("APP_TOKEN", ""), flush=True)
sys.exit(int(os.environ.get("EXIT", "0")))
"#;

/// The secret value the pipeline prints; it must never reach a channel.
const APP_TOKEN: &str = "tok-7f3a9c-do-not-leak";
const SMTP_USER: &str = "flotilla";
const SMTP_PASSWORD: &str = "smtp-pw-31337";
const HMAC_KEY: &str = "hmac-key-for-tests";
const PUBLIC_URL: &str = "https://flotilla.example.test";

/// How long a notification may take to arrive in these tests.
const ARRIVAL: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// HTTP receivers

/// One request a receiver took.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: String,
    at: SystemTime,
}

#[derive(Clone, Default)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    /// Paths answered only after this long.
    slow: Arc<Mutex<HashMap<String, Duration>>>,
}

/// A local HTTP server recording every POST; `/slow…` paths answer after a minute.
struct Receiver {
    state: ReceiverState,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let state = ReceiverState::default();
        async fn take(
            State(state): State<ReceiverState>,
            AxumPath(path): AxumPath<String>,
            headers: HeaderMap,
            body: String,
        ) -> &'static str {
            let at = SystemTime::now();
            let path = format!("/{path}");
            let delay = state
                .slow
                .lock()
                .expect("lock")
                .get(&path)
                .copied()
                .unwrap_or_default();
            state.received.lock().expect("lock").push(Received {
                path,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
                body,
                at,
            });
            tokio::time::sleep(delay).await;
            "ok"
        }
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(take))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver port");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { state, port, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn answer_slowly(&self, path: &str, delay: Duration) {
        self.state
            .slow
            .lock()
            .expect("lock")
            .insert(path.to_owned(), delay);
    }

    fn on(&self, path: &str) -> Vec<Received> {
        self.state
            .received
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` received a body for which `matches` holds; returns it.
    async fn wait_for(&self, path: &str, what: &str, matches: impl Fn(&Value) -> bool) -> Received {
        let deadline = Instant::now() + ARRIVAL;
        loop {
            if let Some(found) = self
                .on(path)
                .into_iter()
                .find(|r| serde_json::from_str::<Value>(&r.body).is_ok_and(|b| matches(&b)))
            {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{path} received no {what} within {ARRIVAL:?}; got {:#?}",
                self.on(path)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// The SMTP server

/// A CA, and a certificate it signed for `localhost` and 127.0.0.1 (openssl CLI).
struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_certificates(dir: &Path) -> Certificates {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Flotilla test CA",
    ]);
    run(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    Certificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// A Python with aiosmtpd, made once per target dir (a venv built aside and renamed
/// into place, so parallel tests never see half of one).
fn aiosmtpd_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("aiosmtpd-venv");
    let python = venv.join("bin/python");
    if python.exists() {
        return python;
    }
    let building = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("aiosmtpd-venv-{}", uuid::Uuid::new_v4().simple()));
    let ok = |command: &mut Command| {
        let out = command.stdin(Stdio::null()).output().expect("python3 runs");
        assert!(
            out.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(Command::new("python3").arg("-m").arg("venv").arg(&building));
    ok(Command::new(building.join("bin/python")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "aiosmtpd==1.4.6",
    ]));
    if std::fs::rename(&building, &venv).is_err() {
        // Another test was first.
        let _ = std::fs::remove_dir_all(&building);
    }
    python
}

const SMTP_SERVER_PY: &str = r#"
import os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, outdir, user, password = sys.argv[1:7]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        name = os.path.join(outdir, "%d.eml" % time.time_ns())
        with open(name + ".tmp", "wb") as f:
            user = session.auth_data if session.authenticated else b"-"
            f.write(b"X-Received-Ns: %d\r\nX-Authenticated-As: %s\r\n" % (time.time_ns(), user))
            f.write(envelope.original_content or envelope.content)
        os.rename(name + ".tmp", name)
        return "250 OK"

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == user.encode() and auth_data.password == password.encode()
    return AuthResult(success=ok, auth_data=auth_data.login if ok else None)

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=context,
                        require_starttls=True, auth_required=True, authenticator=authenticate,
                        auth_require_tls=True)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"#;

/// aiosmtpd on a free port: STARTTLS required, AUTH required; each message a file.
struct MailServer {
    child: Child,
    port: u16,
    inbox: PathBuf,
}

impl MailServer {
    fn start(dir: &Path, certificates: &Certificates) -> Self {
        let python = aiosmtpd_python();
        let inbox = dir.join("inbox");
        std::fs::create_dir_all(&inbox).expect("inbox");
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SMTP_SERVER_PY).expect("script");
        let port = free_port();
        let mut child = Command::new(python)
            .arg(&script)
            .arg(port.to_string())
            .arg(&certificates.cert)
            .arg(&certificates.key)
            .arg(&inbox)
            .args([SMTP_USER, SMTP_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("smtp.log")).expect("smtp log"))
            .spawn()
            .expect("start aiosmtpd");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("aiosmtpd output");
        assert_eq!(
            line.trim(),
            "ready",
            "aiosmtpd did not start: {}",
            std::fs::read_to_string(dir.join("smtp.log")).unwrap_or_default()
        );
        Self { child, port, inbox }
    }

    fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.inbox)
            .expect("inbox")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect()
    }

    async fn wait_for(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + ARRIVAL;
        loop {
            if let Some(found) = self.messages().into_iter().find(|m| matches(m)) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no mail {what} within {ARRIVAL:?}; inbox: {:#?}",
                self.messages()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Manifests

/// A pipeline folder `name` labelled `team: <team>`, with `APP_TOKEN` from Secret `app`.
fn write_pipeline(fixture: &Fixture, name: &str, team: &str) {
    let folder = fixture.pipelines_dir().join(name);
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(folder.join("main.py"), MAIN_PY).expect("main.py");
    std::fs::write(folder.join("requirements.txt"), "").expect("requirements");
    std::fs::write(
        folder.join("pipeline.yaml"),
        format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\n  labels: {{ team: {team} }}\nspec:\n  source: {{ path: {name} }}\n  secretRefs: [ {{ name: app }} ]\n"
        ),
    )
    .expect("pipeline.yaml");
}

/// Secrets `app` (the token runs print) and `channels` (every channel credential).
fn write_secrets(fixture: &Fixture, extra: &[(&str, String)]) {
    let mut channel_keys =
        format!("    HMAC_KEY: {HMAC_KEY}\n    SMTP_PASSWORD: {SMTP_PASSWORD}\n");
    for (key, value) in extra {
        channel_keys.push_str(&format!(
            "    {key}: {}\n",
            serde_json::to_string(value).expect("a JSON string is a YAML string")
        ));
    }
    fixture.write_manifest(
        "secrets.yaml",
        &format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata: {{ name: app }}\nspec:\n  stringData:\n    APP_TOKEN: {APP_TOKEN}\n---\napiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata: {{ name: channels }}\nspec:\n  stringData:\n{channel_keys}"
        ),
    );
}

fn start_operator(fixture: &Fixture) -> Operator {
    fixture.start_operator(&OperatorOptions {
        args: [
            "--public-url",
            PUBLIC_URL,
            "--notify-timeout",
            "3s",
            "--notify-attempts",
            "3",
            "--notify-backoff",
            "200ms",
        ]
        .map(str::to_owned)
        .to_vec(),
        ..OperatorOptions::default()
    })
}

/// The events recorded on run `name`.
async fn run_events(operator: &Operator, name: &str) -> Vec<(String, String)> {
    let (status, list) = operator
        .get(&format!("/namespaces/default/events?for=run/{name}"))
        .await;
    assert_eq!(status, 200, "{list}");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until run `name` has an event `reason` whose message starts with `prefix`.
async fn wait_for_event(operator: &Operator, name: &str, reason: &str, prefix: &str) -> String {
    operator
        .wait_until(
            &format!("a {reason} event {prefix:?} on run {name}"),
            ARRIVAL,
            || async {
                run_events(operator, name)
                    .await
                    .into_iter()
                    .find(|(r, m)| r == reason && m.starts_with(prefix))
                    .map(|(_, m)| m)
            },
        )
        .await
}

fn expected_signature(timestamp: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(HMAC_KEY.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn finished_at(run: &Value) -> DateTime<Utc> {
    let text = run["status"]["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|a| a["finishedAt"].as_str())
        .unwrap_or_else(|| panic!("no finishedAt in {run:#}"));
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

// ---------------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_recovered_runs_reach_mail_teams_slack_and_a_signed_webhook() {
    let fixture = Fixture::new();
    let receiver = Receiver::start().await;
    let certificates = make_certificates(&fixture.scratch("tls"));
    let mail = MailServer::start(&fixture.scratch("smtp"), &certificates);
    write_pipeline(&fixture, "etl", "data");
    write_pipeline(&fixture, "other", "web");
    write_secrets(
        &fixture,
        &[
            (
                "CA_PEM",
                std::fs::read_to_string(&certificates.ca).expect("ca"),
            ),
            ("TEAMS_URL", receiver.url("/teams/hook-token-123")),
            ("SLACK_URL", receiver.url("/slack/T000/B000/XXXX")),
        ],
    );
    fixture.write_manifest(
        "notifier.yaml",
        &format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Notifier\nmetadata: {{ name: data-team }}\nspec:\n  selector: {{ matchLabels: {{ team: data }} }}\n  email:\n    host: localhost\n    port: {}\n    tls: StartTls\n    from: Flotilla <flotilla@example.test>\n    to: [oncall@example.test]\n    username: {SMTP_USER}\n    passwordSecretRef: {{ name: channels, key: SMTP_PASSWORD }}\n    caSecretRef: {{ name: channels, key: CA_PEM }}\n  teams: {{ urlSecretRef: {{ name: channels, key: TEAMS_URL }} }}\n  slack: {{ urlSecretRef: {{ name: channels, key: SLACK_URL }} }}\n  webhook:\n    url: {}\n    signingKeySecretRef: {{ name: channels, key: HMAC_KEY }}\n",
            mail.port,
            receiver.url("/hook")
        ),
    );
    let operator = start_operator(&fixture);
    operator.wait_for_object("notifiers", "data-team").await;
    operator.wait_for_pipeline("etl").await;
    operator.wait_for_pipeline("other").await;

    // A failure of a pipeline the notifier does not select: nothing is sent for it.
    let unselected = operator.create_run("other", &[("EXIT", "4")]).await;
    // A failure of a selected one.
    let failed = operator.create_run("etl", &[("EXIT", "3")]).await;
    let run = operator.wait_finished(&failed).await;
    assert_eq!(phase(&run), "Failed", "{run:#}");

    let message = mail
        .wait_for("about the failed run", |m| m.contains(&failed))
        .await;
    let subject = format!("Subject: [Flotilla] Pipeline etl failed: run {failed} (Error, exit 3)");
    assert!(
        message.contains(&subject),
        "{subject:?} missing:\n{message}"
    );
    assert!(
        message.contains(&format!("X-Authenticated-As: {SMTP_USER}")),
        "{message}"
    );
    for needle in [
        "Pipeline: etl".to_owned(),
        format!("Run: {failed}"),
        "Reason: Error".to_owned(),
        "Exit code: 3".to_owned(),
        format!("Link: {PUBLIC_URL}/#/runs/default/{failed}"),
        "Last 20 line(s) of output:".to_owned(),
        "    line 25".to_owned(),
        "    token is [secret]".to_owned(),
    ] {
        assert!(message.contains(&needle), "{needle:?} missing:\n{message}");
    }
    assert!(
        !message.contains("    line 6\n"),
        "more than 20 lines:\n{message}"
    );
    assert!(
        !message.contains(APP_TOKEN),
        "the secret leaked:\n{message}"
    );

    let hook = receiver
        .wait_for("/hook", "RunFailed", |b| {
            b["event"] == "RunFailed" && b["run"] == failed.as_str()
        })
        .await;
    let timestamp = &hook.headers["x-flotilla-timestamp"];
    assert_eq!(
        hook.headers["x-flotilla-signature"],
        expected_signature(timestamp, &hook.body),
        "the signature does not match the body"
    );
    let age = Utc::now().timestamp() - timestamp.parse::<i64>().expect("unix seconds");
    assert!(
        (0..120).contains(&age),
        "timestamp {timestamp} is {age} s old"
    );
    let body: Value = serde_json::from_str(&hook.body).expect("JSON");
    assert_eq!(body["exitCode"], 3);
    assert_eq!(body["pipeline"], "etl");
    assert_eq!(body["logTail"].as_array().map(Vec::len), Some(20));
    assert!(!hook.body.contains(APP_TOKEN));
    assert!(hook.headers["x-flotilla-delivery"].ends_with("/RunFailed"));

    let teams = receiver
        .wait_for("/teams/hook-token-123", "a card", |b| {
            b["type"] == "message"
        })
        .await;
    assert!(teams.body.contains("AdaptiveCard") && teams.body.contains(&failed));
    let slack = receiver
        .wait_for("/slack/T000/B000/XXXX", "a message", |b| {
            b["text"].is_string()
        })
        .await;
    assert!(
        slack.body.contains(&format!("run {failed}")),
        "{}",
        slack.body
    );

    for channel in ["email", "teams", "slack", "webhook"] {
        wait_for_event(
            &operator,
            &failed,
            "NotificationSent",
            &format!("RunFailed to data-team/{channel} ("),
        )
        .await;
    }

    // The next run succeeds: it is a recovery.
    let recovered = operator.create_run("etl", &[]).await;
    operator.wait_succeeded(&recovered).await;
    receiver
        .wait_for("/hook", "RunRecovered", |b| {
            b["event"] == "RunRecovered" && b["run"] == recovered.as_str()
        })
        .await;
    mail.wait_for("about the recovery", |m| {
        m.contains(&format!(
            "Subject: [Flotilla] Pipeline etl recovered: run {recovered}"
        ))
    })
    .await;
    // A second success is no news.
    let quiet = operator.create_run("etl", &[]).await;
    operator.wait_succeeded(&quiet).await;
    operator.wait_finished(&unselected).await;
    // Every notice of the runs above is decided once their events exist: the quiet and
    // the unselected run have none, and nothing arrived about them.
    wait_for_event(
        &operator,
        &recovered,
        "NotificationSent",
        "RunRecovered to data-team/webhook (",
    )
    .await;
    assert!(
        run_events(&operator, &quiet)
            .await
            .iter()
            .all(|(r, _)| !r.starts_with("Notification"))
    );
    assert!(
        run_events(&operator, &unselected)
            .await
            .iter()
            .all(|(r, _)| !r.starts_with("Notification"))
    );
    assert!(
        receiver
            .on("/hook")
            .iter()
            .all(|r| !r.body.contains(&quiet) && !r.body.contains(&unselected))
    );
    // No secret value reached any event, nor the log of the operator.
    for (_, message) in run_events(&operator, &failed).await {
        assert!(
            !message.contains("hook-token-123") && !message.contains(SMTP_PASSWORD),
            "{message}"
        );
    }
    let log = operator.log_text();
    for secret in [SMTP_PASSWORD, "hook-token-123", HMAC_KEY, APP_TOKEN] {
        assert!(!log.contains(secret), "{secret} in the operator log");
    }

    // `flotilla notify test` goes through every channel and says so.
    let out = operator.cli(&["notify", "test", "data-team"], Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for channel in ["email", "teams", "slack", "webhook"] {
        assert!(
            stdout.contains(&format!("{channel}: delivered")),
            "{stdout}"
        );
    }
    mail.wait_for("from the test", |m| {
        m.contains("Subject: [Flotilla] Test notification from Flotilla")
    })
    .await;
    receiver
        .wait_for("/hook", "the test", |b| b["event"] == "Test")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_or_slow_channel_delays_neither_runs_nor_other_channels() {
    let fixture = Fixture::new();
    let receiver = Receiver::start().await;
    receiver.answer_slowly("/slow", Duration::from_secs(120));
    write_pipeline(&fixture, "etl", "data");
    write_secrets(&fixture, &[("SLACK_URL", receiver.url("/slack"))]);
    let down = format!("http://127.0.0.1:{}/down", free_port());
    fixture.write_manifest(
        "notifiers.yaml",
        &format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Notifier\nmetadata: {{ name: slow }}\nspec:\n  selector: {{ matchLabels: {{}} }}\n  webhook: {{ url: {} }}\n  slack: {{ urlSecretRef: {{ name: channels, key: SLACK_URL }} }}\n---\napiVersion: flotilla.dev/v1alpha1\nkind: Notifier\nmetadata: {{ name: down }}\nspec:\n  selector: {{ matchLabels: {{}} }}\n  webhook: {{ url: {down} }}\n",
            receiver.url("/slow")
        ),
    );
    let operator = start_operator(&fixture);
    operator.wait_for_object("notifiers", "down").await;
    operator.wait_for_pipeline("etl").await;

    let first = operator.create_run("etl", &[("EXIT", "1")]).await;
    let run = operator.wait_finished(&first).await;
    let finished = finished_at(&run);
    // Slack, beside a webhook that does not answer, is told at once.
    let slack = receiver
        .wait_for("/slack", "the failure", |b| {
            b["text"].as_str().is_some_and(|t| t.contains(&first))
        })
        .await;
    let waited = DateTime::<Utc>::from(slack.at) - finished;
    assert!(
        waited < chrono::Duration::seconds(3),
        "slack waited {waited} for the slow webhook"
    );
    // The slow webhook has the request and has not answered; meanwhile a new run starts
    // and ends as if nothing were pending.
    assert_eq!(receiver.on("/slow").len(), 1);
    let started = Instant::now();
    let second = operator.create_run("etl", &[]).await;
    operator.wait_succeeded(&second).await;
    let second_took = started.elapsed();
    assert!(
        receiver.on("/slow").len() <= 2,
        "the slow endpoint was retried faster than its timeout"
    );
    assert!(second_took < Duration::from_secs(60), "{second_took:?}");
    // The down endpoint is given up on after its tries, and says why.
    let failure = wait_for_event(
        &operator,
        &first,
        "NotificationFailed",
        "RunFailed to down/webhook (",
    )
    .await;
    assert!(
        failure.contains("3 attempt(s)") && failure.contains("HTTP request failed"),
        "{failure}"
    );
    // The slow one times out each try and fails too; Slack's success stands.
    let slow = wait_for_event(
        &operator,
        &first,
        "NotificationFailed",
        "RunFailed to slow/webhook (",
    )
    .await;
    assert!(slow.contains("no answer within 3s"), "{slow}");
    wait_for_event(
        &operator,
        &first,
        "NotificationSent",
        "RunFailed to slow/slack (",
    )
    .await;
    // Each outcome is counted by channel.
    let series = |text: &str, labels: &str| -> f64 {
        let prefix = format!("flotilla_notifications_total{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let (_, metrics) = operator.get_text("/metrics").await;
    assert!(
        series(&metrics, r#"channel="webhook",outcome="failed""#) >= 2.0
            && series(&metrics, r#"channel="slack",outcome="sent""#) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_finished_while_the_operator_was_down_is_notified_once() {
    let fixture = Fixture::new();
    let receiver = Receiver::start().await;
    write_pipeline(&fixture, "etl", "data");
    write_secrets(&fixture, &[]);
    fixture.write_manifest(
        "notifier.yaml",
        &format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Notifier\nmetadata: {{ name: hook }}\nspec:\n  selector: {{ matchLabels: {{ team: data }} }}\n  webhook: {{ url: {}, signingKeySecretRef: {{ name: channels, key: HMAC_KEY }} }}\n",
            receiver.url("/hook")
        ),
    );
    let operator = start_operator(&fixture);
    operator.wait_for_object("notifiers", "hook").await;
    operator.wait_for_pipeline("etl").await;
    // The run waits for a file `go` the test writes into its (bind-mounted) folder, so
    // it ends while no operator runs.
    let waits = format!(
        "import os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.05)\n{MAIN_PY}"
    );
    std::fs::write(fixture.pipelines_dir().join("etl/main.py"), waits).expect("main.py");
    let name = operator.create_run("etl", &[("EXIT", "7")]).await;
    let container = operator.wait_running_container(&name).await;
    operator.kill_9();
    std::fs::write(fixture.pipelines_dir().join("etl/go"), "").expect("go");
    let exited = support::docker::docker_ok(&["wait", &container]);
    assert_eq!(exited.trim(), "7", "the run's container exit code");

    let operator = start_operator(&fixture);
    let run = operator.wait_finished(&name).await;
    assert_eq!(phase(&run), "Failed");
    receiver
        .wait_for("/hook", "the failure", |b| b["run"] == name.as_str())
        .await;
    wait_for_event(
        &operator,
        &name,
        "NotificationSent",
        "RunFailed to hook/webhook (",
    )
    .await;
    operator.kill_9();

    // A third start finds the delivery recorded and sends nothing again.
    let operator = start_operator(&fixture);
    let line = operator
        .wait_until("the notifications to catch up", ARRIVAL, || async {
            operator
                .log_text()
                .lines()
                .find(|l| l.contains("notifications caught up"))
                .map(str::to_owned)
        })
        .await;
    assert!(line.contains("caught up: 0 delivery(ies)"), "{line}");
    assert_eq!(receiver.on("/hook").len(), 1, "{:#?}", receiver.on("/hook"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastflow_mail_and_teams_settings_make_a_default_notifier_with_a_secret() {
    let fixture = Fixture::new();
    let receiver = Receiver::start().await;
    let certificates = make_certificates(&fixture.scratch("tls"));
    let mail = MailServer::start(&fixture.scratch("smtp"), &certificates);
    write_pipeline(&fixture, "etl", "data");
    write_secrets(&fixture, &[]);
    let teams = receiver.url("/teams/ff-hook-secret-42");
    let port = mail.port.to_string();
    let ca = certificates.ca.display().to_string();
    let env = [
        ("SMTP_HOST", "localhost"),
        ("SMTP_PORT", port.as_str()),
        ("SMTP_USER", SMTP_USER),
        ("SMTP_PASSWORD", SMTP_PASSWORD),
        ("SMTP_FROM", "fastflow@example.test"),
        ("EMAIL_RECIPIENTS", "a@example.test, b@example.test"),
        ("TEAMS_WEBHOOK_URL", teams.as_str()),
        ("FRONTEND_URL", "https://ff.example.test/"),
        // The mail server's CA, trusted the way the operator trusts any other.
        ("SSL_CERT_FILE", ca.as_str()),
    ];
    let operator = fixture.start_operator(&OperatorOptions {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..OperatorOptions::default()
    });
    operator
        .wait_for_object("notifiers", "fastflow-default")
        .await;
    operator.wait_for_pipeline("etl").await;
    // The credentials are in the Secret, encrypted; the notifier only names them.
    let (_, notifier) = operator
        .get("/namespaces/default/notifiers/fastflow-default")
        .await;
    let (_, secret) = operator
        .get("/namespaces/default/secrets/fastflow-notifications")
        .await;
    for object in [&notifier, &secret] {
        let text = object.to_string();
        assert!(
            !text.contains(SMTP_PASSWORD) && !text.contains("ff-hook-secret"),
            "{text}"
        );
    }
    assert_eq!(
        notifier["metadata"]["managedBy"], "env:fastflow",
        "{notifier:#}"
    );

    let name = operator.create_run("etl", &[("EXIT", "5")]).await;
    operator.wait_finished(&name).await;
    let message = mail
        .wait_for("about the failure", |m| m.contains(&name))
        .await;
    assert!(
        message.contains("To: a@example.test, b@example.test"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "Link: https://ff.example.test/#/runs/default/{name}"
        )),
        "{message}"
    );
    receiver
        .wait_for("/teams/ff-hook-secret-42", "the card", |b| {
            b.to_string().contains(&name)
        })
        .await;

    // Without the variables the notifier and its Secret go.
    operator.kill_9();
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator
        .wait_until("the Fast-Flow notifier to be pruned", ARRIVAL, || async {
            (operator
                .get("/namespaces/default/notifiers/fastflow-default")
                .await
                .0
                == 404)
                .then_some(())
        })
        .await;
    let (status, _) = operator
        .get("/namespaces/default/secrets/fastflow-notifications")
        .await;
    assert_eq!(status, 404);
}

/// An operator whose notifier `hook` sends only `events` of every pipeline to the
/// receiver's `/hook`.
async fn hook_operator(
    fixture: &Fixture,
    receiver: &Receiver,
    events: &str,
    pipeline_spec: &str,
) -> Operator {
    write_pipeline(fixture, "etl", "data");
    if !pipeline_spec.is_empty() {
        let path = fixture.pipelines_dir().join("etl/pipeline.yaml");
        let mut yaml = std::fs::read_to_string(&path).expect("pipeline.yaml");
        yaml.push_str(pipeline_spec);
        std::fs::write(&path, yaml).expect("pipeline.yaml");
    }
    write_secrets(fixture, &[]);
    fixture.write_manifest(
        "notifier.yaml",
        &format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Notifier\nmetadata: {{ name: hook }}\nspec:\n  events: {events}\n  selector: {{ matchLabels: {{}} }}\n  webhook: {{ url: {} }}\n",
            receiver.url("/hook")
        ),
    );
    let operator = start_operator(fixture);
    operator.wait_for_object("notifiers", "hook").await;
    operator.wait_for_pipeline("etl").await;
    operator
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_its_soft_memory_limit_is_reported_and_not_stopped() {
    let fixture = Fixture::new();
    let receiver = Receiver::start().await;
    // Python in the runner uses about 12 MiB; 6Mi is the smallest size Flotilla takes.
    // Samples are taken every 2 s and the run lasts 3.
    let operator = hook_operator(
        &fixture,
        &receiver,
        "[SoftLimitExceeded]",
        "  resources: { memorySoftLimit: 6Mi }\n",
    )
    .await;
    let slow = format!("import time\ntime.sleep(3)\n{MAIN_PY}");
    std::fs::write(fixture.pipelines_dir().join("etl/main.py"), slow).expect("main.py");
    let name = operator.create_run("etl", &[]).await;
    operator.wait_succeeded(&name).await;
    let hook = receiver
        .wait_for("/hook", "the breach", |b| b["event"] == "SoftLimitExceeded")
        .await;
    let body: Value = serde_json::from_str(&hook.body).expect("JSON");
    assert_eq!(body["run"], name.as_str());
    assert_eq!(body["phase"], "Succeeded");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("memory peaked at") && d.contains("soft limit of 6Mi")),
        "{body:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_missed_while_the_operator_was_down_are_reported() {
    let fixture = Fixture::new();
    let receiver = Receiver::start().await;
    fixture.write_manifest(
        "schedule.yaml",
        "apiVersion: flotilla.dev/v1alpha1\nkind: Schedule\nmetadata: { name: often }\nspec:\n  pipelineRef: { name: etl }\n  every: 2s\n  startingDeadline: 1s\n",
    );
    let operator = hook_operator(&fixture, &receiver, "[ScheduleMissed]", "").await;
    operator.wait_for_object("schedules", "often").await;
    // The schedule has run at least once: its slots are being followed.
    operator
        .wait_until("a slot to be considered", ARRIVAL, || async {
            let (_, schedule) = operator.get("/namespaces/default/schedules/often").await;
            schedule["status"]["lastSlot"].as_str().map(str::to_owned)
        })
        .await;
    operator.kill_9();
    // Down for three slots.
    let back = Instant::now() + Duration::from_secs(7);
    while Instant::now() < back {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let operator = start_operator(&fixture);
    let hook = receiver
        .wait_for("/hook", "a missed slot", |b| b["event"] == "ScheduleMissed")
        .await;
    let body: Value = serde_json::from_str(&hook.body).expect("JSON");
    assert_eq!(body["schedule"], "often");
    assert_eq!(body["pipeline"], "etl");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("missed")),
        "{body:#}"
    );
    let _ = operator;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_git_source_cannot_apply_is_reported() {
    let fixture = Fixture::new();
    let receiver = Receiver::start().await;
    let remote = support::git::GitRemote::new();
    remote
        .write("etl/main.py", MAIN_PY)
        .write(
            "notifier.yaml",
            &format!(
                "apiVersion: flotilla.dev/v1alpha1\nkind: Notifier\nmetadata: {{ name: hook }}\nspec:\n  events: [SyncFailed]\n  webhook: {{ url: {} }}\n",
                receiver.url("/hook")
            ),
        );
    remote.commit_and_push("a notifier");
    let operator = fixture.start_operator(&OperatorOptions {
        git_url: Some(remote.file_url()),
        args: [
            "--auto-sync",
            "--auto-sync-interval",
            "1s",
            "--notify-backoff",
            "200ms",
        ]
        .map(str::to_owned)
        .to_vec(),
        ..OperatorOptions::default()
    });
    operator.wait_for_object("notifiers", "hook").await;
    operator.wait_for_pipeline("etl").await;
    remote.write(
        "broken.yaml",
        "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata: { name: broken }\nspec: { timeout: soon }\n",
    );
    remote.commit_and_push("a broken pipeline");
    let hook = receiver
        .wait_for("/hook", "the sync failure", |b| b["event"] == "SyncFailed")
        .await;
    let body: Value = serde_json::from_str(&hook.body).expect("JSON");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("broken.yaml") && detail.contains("spec.timeout"),
        "{body:#}"
    );
    // The same failure at every auto-sync is one notice.
    operator
        .wait_until("two more syncs", ARRIVAL, || async {
            let (_, sources) = operator.get("/sources").await;
            (sources.to_string().contains("\"syncs\":") && {
                let syncs = sources["items"][0]["syncs"].as_u64().unwrap_or(0);
                syncs >= 5
            })
            .then_some(())
        })
        .await;
    assert_eq!(receiver.on("/hook").len(), 1, "{:#?}", receiver.on("/hook"));
}
