//! The git source against real git: a bare repository as remote by file URL and over
//! HTTP (`git http-backend` with a token check), commits made and pushed with the `git`
//! CLI, a real SQLite store. Covers apply and prune, atomic checkouts, invalid commits,
//! tokens never written down, push deliveries and coalescing; and a real
//! `flotilla serve --git-url`: signed push webhooks through its API, `flotilla sync`
//! and `flotilla get sources`, and runs on Docker (through the HAProxy socket proxy)
//! that record the commit they ran and keep its checkout while new commits land.

mod support {
    pub mod docker;
    pub mod git;
    pub mod postgres;
    pub mod server;
    pub mod store;
}

use std::path::Path;
use std::time::Duration;

use flotilla::resource::{DesiredObject, Kind, ObjectKey, StoredObject};
use flotilla::source::git::push::{
    Delivery, DeliveryError, PushVerdict, WebhookSecret, classify, sign, verify,
};
use flotilla::source::git::{GitConfig, GitSource, SyncResult};
use flotilla::store::Store;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::docker::{Fixture, Operator, OperatorOptions, attempts, phase, stdout_lines};
use support::git::{
    GitRemote, HttpGitServer, add_pipeline, captured_logs, files_containing, git, temp_store,
};
use support::server::{TestServer, assert_exit, stderr, stdout};
use tokio_util::sync::CancellationToken;

fn source(url: &str, data: &Path) -> GitSource {
    GitSource::new(GitConfig::new(url), data).expect("valid git settings")
}

async fn pipeline(store: &Store, name: &str) -> Option<StoredObject> {
    store
        .get(&ObjectKey::new(Kind::Pipeline, "default", name))
        .await
        .expect("store answers")
}

async fn python_of(store: &Store, name: &str) -> String {
    let object = pipeline(store, name)
        .await
        .unwrap_or_else(|| panic!("pipeline {name} exists"));
    object.spec["python"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The commit `current` resolves to: what a run starting now would mount.
fn mounted_commit(git: &GitSource) -> String {
    let resolved = std::fs::canonicalize(git.source_root()).expect("current resolves");
    resolved
        .file_name()
        .expect("a checkout dir")
        .to_string_lossy()
        .into_owned()
}

const SCHEDULE: &str = "apiVersion: flotilla.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: etl-nightly\nspec:\n  pipelineRef: { name: etl }\n  cron: \"0 3 * * *\"\n";

#[tokio::test]
async fn pipelines_are_applied_updated_and_pruned() {
    let remote = GitRemote::new();
    add_pipeline(&remote, "", "etl", "3.12");
    remote
        .write("legacy/main.py", "print('legacy')\n")
        .write(
            "legacy/pipeline.json",
            r#"{"description": "Fast-Flow folder"}"#,
        )
        .write("schedules.yaml", SCHEDULE);
    let first = remote.commit_and_push("etl, legacy and a schedule");
    let (data, store) = temp_store().await;
    let git = source(&remote.file_url(), data.path());

    let attempt = git.sync(&store, None).await;
    assert_eq!(attempt.result, SyncResult::Applied, "{attempt:?}");
    assert_eq!(attempt.commit.as_deref(), Some(first.as_str()));
    assert_eq!(attempt.changes.created, 3, "{attempt:?}");
    let etl = pipeline(&store, "etl").await.expect("etl applied");
    assert_eq!(
        etl.managed_by.as_deref(),
        Some(format!("git:{}#main", remote.file_url()).as_str())
    );
    assert_eq!(git.manager(), format!("git:{}#main", remote.file_url()));
    assert!(pipeline(&store, "legacy").await.is_some());
    assert_eq!(mounted_commit(&git), first);
    assert!(git.source_root().join("etl/main.py").is_file());

    add_pipeline(&remote, "", "etl", "3.13");
    remote.remove("legacy");
    let second = remote.commit_and_push("newer python, legacy gone");
    let attempt = git.sync(&store, None).await;
    assert_eq!(attempt.result, SyncResult::Applied, "{attempt:?}");
    assert_eq!(
        (
            attempt.changes.created,
            attempt.changes.configured,
            attempt.changes.pruned,
            attempt.changes.unchanged
        ),
        (0, 1, 1, 1),
        "{attempt:?}"
    );
    assert_eq!(python_of(&store, "etl").await, "3.13");
    assert!(pipeline(&store, "legacy").await.is_none(), "pruned");
    assert_eq!(mounted_commit(&git), second);

    let again = git.sync(&store, None).await;
    assert_eq!(again.result, SyncResult::Unchanged, "{again:?}");
    let status = git.status();
    assert_eq!(status.live_commit.as_deref(), Some(second.as_str()));
    assert_eq!(status.last_applied.map(|c| c.commit), Some(second.clone()));
    assert_eq!(status.history, vec![second.clone(), first]);
    assert_eq!(status.syncs, 3);

    // The status survives a restart.
    let restarted = source(&remote.file_url(), data.path());
    let status = restarted.status();
    assert_eq!(status.live_commit.as_deref(), Some(second.as_str()));
    assert_eq!(
        status.last_sync.map(|s| s.result),
        Some(SyncResult::Unchanged)
    );
    let after_restart = restarted.sync(&store, None).await;
    assert_eq!(
        after_restart.result,
        SyncResult::Applied,
        "re-applied once after a restart"
    );
    assert_eq!(after_restart.changes.unchanged, 2, "{after_restart:?}");
}

const BAD_PIPELINE: &str = "apiVersion: flotilla.dev/v1alpha1
kind: Pipeline
metadata:
  name: bad
spec:
  python: \"3.12\"
  timeout: forever
";

#[tokio::test]
async fn an_invalid_commit_changes_nothing_and_names_file_and_line() {
    let remote = GitRemote::new();
    add_pipeline(&remote, "pipelines", "etl", "3.12");
    remote
        .write("README.md", "docs\n")
        .write("ci/broken.yaml", "not: [valid");
    let good = remote.commit_and_push("etl under pipelines/");
    let (data, store) = temp_store().await;
    let mut config = GitConfig::new(remote.file_url());
    config.path = Some("pipelines/".into());
    let git = GitSource::new(config, data.path()).expect("valid settings");
    let attempt = git.sync(&store, None).await;
    assert_eq!(attempt.result, SyncResult::Applied, "{attempt:?}");
    assert!(
        git.source_root().join("etl/main.py").is_file(),
        "only pipelines/ is checked out"
    );
    assert!(!git.source_root().join("README.md").exists());

    // A valid change and an invalid file in one commit: none of it is applied.
    add_pipeline(&remote, "pipelines", "etl", "3.13");
    remote.write("pipelines/bad.yaml", BAD_PIPELINE);
    let bad = remote.commit_and_push("newer python and a broken pipeline");
    let attempt = git.sync(&store, None).await;
    assert_eq!(attempt.result, SyncResult::Invalid, "{attempt:?}");
    assert_eq!(attempt.commit.as_deref(), Some(bad.as_str()));
    let problem = attempt.errors.first().expect("a problem is reported");
    assert_eq!(problem.file, "pipelines/bad.yaml");
    assert_eq!(problem.line, Some(7), "{problem:?}");
    assert!(
        problem.text.starts_with("pipelines/bad.yaml:7:"),
        "{}",
        problem.text
    );
    assert_eq!(
        python_of(&store, "etl").await,
        "3.12",
        "nothing of the commit applied"
    );
    assert!(pipeline(&store, "bad").await.is_none());
    assert_eq!(mounted_commit(&git), good, "the previous commit stays live");
    assert_eq!(git.status().live_commit.as_deref(), Some(good.as_str()));
    assert!(!data.path().join("git/checkouts").join(&bad).exists());

    let still = git.sync(&store, None).await;
    assert_eq!(still.result, SyncResult::Invalid);
    assert_eq!(still.errors, attempt.errors);

    remote.remove("pipelines/bad.yaml");
    let fixed = remote.commit_and_push("drop the broken pipeline");
    let attempt = git.sync(&store, None).await;
    assert_eq!(attempt.result, SyncResult::Applied, "{attempt:?}");
    assert_eq!(python_of(&store, "etl").await, "3.13");
    assert_eq!(mounted_commit(&git), fixed);
}

/// The webhook secret of the operators these tests start.
const WEBHOOK_SECRET: &str = "push-hook-secret";

/// `X-Hub-Signature-256` as GitHub documents it: `sha256=` and the hex HMAC-SHA256 of
/// the body keyed by the secret. HMAC is written out here from its definition (RFC 2104,
/// `H((K ^ opad) || H((K ^ ipad) || m))` with 64-byte blocks), so the test does not
/// trust the signing code of the server it checks.
fn github_signature(secret: &str, body: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut key = [0u8; BLOCK];
    if secret.len() > BLOCK {
        key[..32].copy_from_slice(&Sha256::digest(secret.as_bytes()));
    } else {
        key[..secret.len()].copy_from_slice(secret.as_bytes());
    }
    let inner = Sha256::new()
        .chain_update(key.map(|b| b ^ 0x36))
        .chain_update(body)
        .finalize();
    let outer = Sha256::new()
        .chain_update(key.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize();
    format!("sha256={}", hex::encode(outer))
}

#[test]
fn the_test_signature_matches_githubs_documented_example() {
    // From GitHub's "Validating webhook deliveries" page.
    assert_eq!(
        github_signature("It's a Secret to Everybody", b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    let long_secret = "k".repeat(100);
    assert_eq!(
        github_signature(&long_secret, b"body"),
        sign(&long_secret, b"body"),
        "keys longer than a block are hashed first"
    );
}

/// A GitHub push delivery of `after` on `main`, signed with `signed_with`, posted to
/// `POST {base}/hooks/git` the way GitHub sends it: no bearer token. Returns the status
/// and the JSON answer.
async fn deliver_push(base: &str, signed_with: &str, after: &str) -> (u16, Value) {
    let body = json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "repository": { "full_name": "flotilla/pipelines" },
    })
    .to_string();
    post_delivery(base, &github_signature(signed_with, body.as_bytes()), &body).await
}

async fn post_delivery(base: &str, signature: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
        .post(format!("{base}/hooks/git"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
        .header("x-hub-signature-256", signature)
        .body(body.to_owned())
        .send()
        .await
        .expect("the operator answers the delivery");
    let status = response.status().as_u16();
    let text = response.text().await.expect("answer body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The head of `main` in the remote, read with the `git` CLI.
fn remote_head(remote: &GitRemote) -> String {
    git(
        remote.root(),
        &["--git-dir", "remote.git", "rev-parse", "refs/heads/main"],
    )
}

/// A pipeline folder `<name>/main.py` and its manifest `<name>.yaml`, without a Python
/// version: the runner image's own interpreter runs it.
fn add_runnable_pipeline(remote: &GitRemote, name: &str, main_py: &str) {
    remote.write(&format!("{name}/main.py"), main_py).write(
        &format!("{name}.yaml"),
        &format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n  source: {{ path: {name} }}\n"
        ),
    );
}

/// The operator's git source status (`GET …/sources`, first item).
async fn source_status(operator: &Operator) -> Value {
    let (status, list) = operator.get("/sources").await;
    assert_eq!(status, 200, "GET sources: {list}");
    list["items"][0].clone()
}

/// Runs `pipeline` once and waits for the end; returns the run and its stdout lines.
async fn run_once(operator: &Operator, pipeline: &str) -> (Value, Vec<String>) {
    let name = operator.create_run(pipeline, &[]).await;
    let run = operator.wait_finished(&name).await;
    assert_eq!(phase(&run), "Succeeded", "{run:#}\n{}", operator.context());
    let log = operator.log(&name, 1).await;
    (run, stdout_lines(&log))
}

#[tokio::test]
async fn runs_of_a_git_pipeline_record_the_commit_they_ran_and_keep_its_checkout() {
    let fixture = Fixture::new();
    let remote = GitRemote::new();
    add_runnable_pipeline(&remote, "hello", "print('version one', flush=True)\n");
    add_runnable_pipeline(
        &remote,
        "sleeper",
        "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n",
    );
    remote.commit_and_push("hello and sleeper");
    let first = remote_head(&remote);
    let operator = fixture.start_operator(&OperatorOptions {
        git_url: Some(remote.file_url()),
        args: vec!["--webhook-secret".into(), WEBHOOK_SECRET.into()],
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("hello").await;

    let (run, lines) = run_once(&operator, "hello").await;
    assert_eq!(run["status"]["sourceRevision"], first.as_str(), "{run:#}");
    assert_eq!(lines, ["version one"]);
    let first_run = run["metadata"]["name"].as_str().expect("named").to_owned();

    // A run in flight on the first commit.
    let sleeper = operator.create_run("sleeper", &[]).await;
    operator.wait_running_container(&sleeper).await;
    let in_flight = operator.run(&sleeper).await;
    assert_eq!(
        in_flight["status"]["sourceRevision"],
        first.as_str(),
        "{in_flight:#}"
    );

    // A new main.py, pushed and announced by a signed webhook.
    remote.write("hello/main.py", "print('version two', flush=True)\n");
    remote.commit_and_push("version two");
    let second = remote_head(&remote);
    assert_ne!(first, second);
    let (status, answer) = deliver_push(operator.base(), WEBHOOK_SECRET, &second).await;
    assert_eq!(status, 202, "{answer}");
    operator
        .wait_until(
            "the pushed commit to be live",
            Duration::from_secs(60),
            || async {
                (source_status(&operator).await["liveCommit"] == second.as_str()).then_some(())
            },
        )
        .await;
    let (run, lines) = run_once(&operator, "hello").await;
    assert_eq!(run["status"]["sourceRevision"], second.as_str(), "{run:#}");
    assert_eq!(lines, ["version two"]);
    assert_eq!(
        operator.run(&first_run).await["status"]["sourceRevision"],
        first.as_str(),
        "the earlier run keeps its commit"
    );

    // Six more commits, each synced with `flotilla sync`: only the newest five checkouts
    // and the one the sleeper mounts are kept.
    let mut commits = Vec::new();
    for i in 3..9 {
        remote.write("hello/main.py", &format!("print('version {i}')\n"));
        remote.commit_and_push(&format!("version {i}"));
        commits.push(remote_head(&remote));
        let synced = operator.cli(&["sync"], Duration::from_secs(60));
        assert_exit(&synced, 0);
    }
    assert_eq!(
        source_status(&operator).await["liveCommit"],
        commits[5].as_str()
    );
    let checkouts = fixture.data_dir().join("git/checkouts");
    assert!(
        checkouts.join(&first).join("sleeper/main.py").is_file(),
        "the running sleeper's commit is kept"
    );
    assert!(
        !checkouts.join(&second).exists(),
        "older than the newest five"
    );
    assert!(
        !checkouts.join(&commits[0]).exists(),
        "older than the newest five"
    );
    for kept in &commits[1..] {
        assert!(checkouts.join(kept).is_dir(), "one of the newest five");
    }
    let running = operator.run(&sleeper).await;
    assert_eq!(phase(&running), "Running", "{running:#}");
    assert_eq!(attempts(&running).len(), 1, "{running:#}");

    // Once the sleeper has ended, the next sync lets its checkout go.
    operator.cancel(&sleeper).await;
    operator
        .wait_for_phase(&sleeper, &["Cancelled"], Duration::from_secs(60))
        .await;
    remote.write("hello/main.py", "print('final')\n");
    remote.commit_and_push("final");
    assert_exit(&operator.cli(&["sync"], Duration::from_secs(60)), 0);
    assert!(
        !checkouts.join(&first).exists(),
        "released once no run uses it"
    );
}

#[tokio::test]
async fn https_token_authenticates_and_is_never_written_down() {
    let logs = captured_logs();
    let token = format!("tok{}", uuid::Uuid::new_v4().simple());
    let remote = GitRemote::new();
    add_pipeline(&remote, "", "etl", "3.12");
    remote.commit_and_push("etl");
    let server = HttpGitServer::start(remote.root(), &token);
    let (data, store) = temp_store().await;

    let anonymous = GitSource::new(GitConfig::new(server.url()), &data.path().join("anon"))
        .expect("valid settings");
    let refused = anonymous.sync(&store, None).await;
    assert_eq!(refused.result, SyncResult::Failed, "{refused:?}");
    assert!(
        refused.message.contains("GIT_SYNC_TOKEN"),
        "{}",
        refused.message
    );

    let mut wrong = GitConfig::new(server.url());
    wrong.auth.token = Some("not-the-token".into());
    let wrong = GitSource::new(wrong, &data.path().join("wrong")).expect("valid settings");
    let refused = wrong.sync(&store, None).await;
    assert_eq!(refused.result, SyncResult::Failed, "{refused:?}");
    assert!(
        refused.message.contains("authentication failed"),
        "{}",
        refused.message
    );

    let mut config = GitConfig::new(server.url());
    config.auth.token = Some(token.clone());
    for shown in [format!("{:?}", config.auth), format!("{config:?}")] {
        assert!(shown.contains("<redacted>"), "the token is there: {shown}");
        assert!(!shown.contains(&token), "{shown}");
    }
    let git = GitSource::new(config, data.path()).expect("valid settings");
    let attempt = git.sync(&store, None).await;
    assert_eq!(attempt.result, SyncResult::Applied, "{attempt:?}");
    assert!(pipeline(&store, "etl").await.is_some());
    assert_eq!(git.sync(&store, None).await.result, SyncResult::Unchanged);

    // A password in the URL is used like a token and dropped from the URL.
    let with_password = format!("http://bot:{token}@127.0.0.1:{}/remote.git", server.port());
    let embedded = GitSource::new(GitConfig::new(with_password), &data.path().join("embedded"))
        .expect("valid settings");
    assert_eq!(
        embedded.manager(),
        git.manager(),
        "the manager names no credentials"
    );
    let attempt = embedded.sync(&store, None).await;
    assert_eq!(attempt.result, SyncResult::Applied, "{attempt:?}");
    assert_eq!(attempt.changes.unchanged, 1, "{attempt:?}");

    let config = std::fs::read_to_string(data.path().join("git/repo.git/config"))
        .expect("the mirror has a config");
    assert!(!config.contains("url"), "no remote is stored: {config}");
    assert_eq!(
        files_containing(data.path(), &token),
        Vec::<std::path::PathBuf>::new()
    );
    let status = serde_json::to_string(&embedded.status()).expect("serializes");
    assert!(!status.contains(&token), "{status}");
    let shown = format!("{git:?}");
    assert!(shown.contains("<redacted>"), "it holds the token: {shown}");
    assert!(!shown.contains(&token), "{shown}");
    let shown = format!("{embedded:?}");
    assert!(shown.contains("/remote.git"), "{shown}");
    assert!(
        !shown.contains(&token),
        "the URL's password is not shown: {shown}"
    );
    let logged = String::from_utf8_lossy(
        &logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    assert!(logged.contains("etl"), "logs are captured: {logged}");
    assert!(!logged.contains(&token), "token in the logs");
    assert!(!server.log().contains(&token), "token in the server's log");
}

#[tokio::test]
async fn drift_is_repaired_and_conflicts_keep_the_previous_commit() {
    let remote = GitRemote::new();
    add_pipeline(&remote, "", "etl", "3.12");
    let first = remote.commit_and_push("etl");
    let (data, store) = temp_store().await;
    let git = source(&remote.file_url(), data.path());
    assert_eq!(git.sync(&store, None).await.result, SyncResult::Applied);

    let etl = ObjectKey::new(Kind::Pipeline, "default", "etl");
    store
        .delete(&etl, None)
        .await
        .expect("deleted behind git's back");
    let repaired = git.sync(&store, None).await;
    assert_eq!(repaired.result, SyncResult::Applied, "{repaired:?}");
    assert!(repaired.message.contains("drifted"), "{}", repaired.message);
    assert!(pipeline(&store, "etl").await.is_some());
    assert_eq!(git.sync(&store, None).await.result, SyncResult::Unchanged);

    store
        .create(
            DesiredObject {
                key: ObjectKey::new(Kind::Pipeline, "default", "taken"),
                labels: Default::default(),
                annotations: Default::default(),
                spec: json!({ "python": "3.12" }).into(),
            },
            Some("cli".into()),
            None,
        )
        .await
        .expect("created by another manager");
    add_pipeline(&remote, "", "taken", "3.11");
    remote.commit_and_push("declares a pipeline the CLI owns");
    let refused = git.sync(&store, None).await;
    assert_eq!(refused.result, SyncResult::Failed, "{refused:?}");
    assert!(refused.message.contains("\"cli\""), "{}", refused.message);
    assert_eq!(mounted_commit(&git), first, "switched back");
    assert_eq!(git.status().live_commit.as_deref(), Some(first.as_str()));
}

#[tokio::test]
async fn only_the_configured_branch_is_followed() {
    let remote = GitRemote::new();
    add_pipeline(&remote, "", "etl", "3.12");
    remote.commit_and_push("etl");
    let (data, store) = temp_store().await;
    let git = source(&remote.file_url(), data.path());
    assert_eq!(git.sync(&store, None).await.result, SyncResult::Applied);

    remote.checkout_branch("feature");
    add_pipeline(&remote, "", "etl", "3.13");
    remote.commit_and_push("feature work");
    assert_eq!(git.sync(&store, None).await.result, SyncResult::Unchanged);
    assert_eq!(python_of(&store, "etl").await, "3.12");

    let mut config = GitConfig::new(remote.file_url());
    config.branch = "release".into();
    let missing = GitSource::new(config, &data.path().join("release")).expect("valid settings");
    let attempt = missing.sync(&store, None).await;
    assert_eq!(attempt.result, SyncResult::Failed);
    assert!(
        attempt.message.contains("\"release\" does not exist"),
        "{}",
        attempt.message
    );

    for (branch, path) in [("bad..name", None), ("main", Some("../outside"))] {
        let mut config = GitConfig::new(remote.file_url());
        config.branch = branch.into();
        config.path = path.map(str::to_owned);
        assert!(
            GitSource::new(config, data.path()).is_err(),
            "{branch} {path:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_a_sync_coalesce_into_one_follow_up() {
    let token = "coalesce-token";
    let remote = GitRemote::new();
    add_pipeline(&remote, "", "etl", "3.12");
    remote.commit_and_push("etl");
    let server = HttpGitServer::start(remote.root(), token);
    server.set_delay(Duration::from_secs(1));
    let (data, store) = temp_store().await;
    let mut config = GitConfig::new(server.url());
    config.auth.token = Some(token.into());
    let git = GitSource::new(config, data.path()).expect("valid settings");
    let shutdown = CancellationToken::new();
    let loop_task = tokio::spawn(git.clone().run(store.clone(), None, shutdown.clone()));

    tokio::time::timeout(Duration::from_secs(30), async {
        while !git.status().syncing {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first sync starts");
    let tickets: Vec<_> = (0..20).map(|_| git.sync_now()).collect();
    assert!(git.status().sync_requested);
    let last = *tickets.last().expect("twenty tickets");
    let status = tokio::time::timeout(Duration::from_secs(120), git.wait(last))
        .await
        .expect("the follow-up sync finishes");
    assert_eq!(
        status.syncs, 2,
        "one sync running, one follow-up: {status:?}"
    );
    assert!(!status.sync_requested);
    assert_eq!(
        status.last_sync.map(|s| s.result),
        Some(SyncResult::Unchanged)
    );
    shutdown.cancel();
    loop_task.await.expect("the loop ends");
}

/// `GET …/sources` of a test server: its one git source.
async fn served_source(server: &TestServer) -> Value {
    let (status, list) = server.get("/sources").await;
    assert_eq!(status, 200, "GET sources: {list}");
    list["items"][0].clone()
}

async fn has_pipeline(server: &TestServer, name: &str) -> bool {
    let (status, body) = server
        .get(&format!("/namespaces/default/pipelines/{name}"))
        .await;
    assert!(
        status == 200 || status == 404,
        "GET pipeline {name}: {status} {body}"
    );
    status == 200
}

#[tokio::test]
async fn the_operator_syncs_on_a_signed_push_and_refuses_a_forged_one() {
    let remote = GitRemote::new();
    add_pipeline(&remote, "", "etl", "3.12");
    remote.commit_and_push("etl");
    let first = remote_head(&remote);
    let url = remote.file_url();
    let server =
        TestServer::start_with_args(&["--git-url", &url, "--webhook-secret", WEBHOOK_SECRET]);
    let started = server
        .wait_for("the first sync at start", || async {
            let source = served_source(&server).await;
            (source["liveCommit"] == first.as_str()).then_some(source)
        })
        .await;
    assert_eq!(started["syncs"], 1, "{started}");
    assert!(has_pipeline(&server, "etl").await);

    add_pipeline(&remote, "", "reports", "3.12");
    remote.commit_and_push("reports");
    let second = remote_head(&remote);

    // Forged: signed with another secret; tampered: the body is not the one signed.
    let (status, problem) = deliver_push(server.base(), "not-the-secret", &second).await;
    assert_eq!(status, 401, "{problem}");
    let signed = json!({ "ref": "refs/heads/main", "after": first }).to_string();
    let tampered = json!({ "ref": "refs/heads/main", "after": second }).to_string();
    let (status, problem) = post_delivery(
        server.base(),
        &github_signature(WEBHOOK_SECRET, signed.as_bytes()),
        &tampered,
    )
    .await;
    assert_eq!(status, 401, "{problem}");
    let source = served_source(&server).await;
    assert_eq!(
        (
            &source["syncs"],
            &source["syncing"],
            &source["syncRequested"],
            &source["liveCommit"]
        ),
        (&json!(1), &json!(false), &json!(false), &json!(first)),
        "refused deliveries sync nothing: {source}"
    );
    assert!(!has_pipeline(&server, "reports").await);

    let (status, answer) = deliver_push(server.base(), WEBHOOK_SECRET, &second).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["after"], second.as_str(), "{answer}");
    // The live commit is recorded in the same step that ends the sync.
    let source = server
        .wait_for("the pushed commit to be live", || async {
            let source = served_source(&server).await;
            (source["liveCommit"] == second.as_str()).then_some(source)
        })
        .await;
    assert_eq!(
        source["syncs"], 2,
        "one sync for one accepted delivery: {source}"
    );
    assert!(has_pipeline(&server, "reports").await);

    // `flotilla sync` waits for the sync; `flotilla get sources` shows what is live.
    add_pipeline(&remote, "", "audit", "3.12");
    remote.commit_and_push("audit");
    let third = remote_head(&remote);
    let synced = server.cli(&["sync"]);
    assert_exit(&synced, 0);
    assert!(
        has_pipeline(&server, "audit").await,
        "applied when `flotilla sync` returns: {}{}",
        stdout(&synced),
        stderr(&synced)
    );
    assert_eq!(served_source(&server).await["liveCommit"], third.as_str());

    let shown = server.cli(&["get", "sources"]);
    assert_exit(&shown, 0);
    let table = stdout(&shown);
    let header = table.lines().next().unwrap_or_default();
    for column in ["REPOSITORY", "LIVE", "LAST SYNC"] {
        assert!(header.contains(column), "{table}");
    }
    let row = table
        .lines()
        .find(|line| line.starts_with(&format!("{url}#main")))
        .unwrap_or_else(|| panic!("a row for {url}#main:\n{table}"));
    assert!(row.contains(&third[..7]), "live commit {third}: {row}");
    assert!(row.contains("applied"), "{row}");
    let json_out = server.cli(&["get", "sources", "-o", "json"]);
    assert_exit(&json_out, 0);
    let listed: Value = serde_json::from_str(&stdout(&json_out)).expect("JSON");
    assert_eq!(listed["items"][0]["liveCommit"], third.as_str(), "{listed}");
    assert_eq!(listed["items"][0]["url"], url.as_str(), "{listed}");
}

#[test]
fn push_deliveries_are_verified_in_every_form() {
    let secret = WebhookSecret::new("s3cret");
    let secret = secret.as_ref();
    let body = br#"{"ref":"refs/heads/main","after":"abc123"}"#;
    let good = sign("s3cret", body);
    let github = |signature| Delivery {
        github_signature: Some(signature),
        github_event: Some("push"),
        body,
        ..Delivery::default()
    };
    assert_eq!(verify(secret, &github(&good)), Ok(()));
    let forged = sign("guess", body);
    for bad in [forged.as_str(), "sha256=00", "sha256=zz", "sha1=abc", ""] {
        assert_eq!(
            verify(secret, &github(bad)),
            Err(DeliveryError::BadSignature),
            "{bad:?}"
        );
    }
    let tampered = Delivery {
        body: br#"{"ref":"refs/heads/main","after":"evil"}"#,
        ..github(&good)
    };
    assert_eq!(verify(secret, &tampered), Err(DeliveryError::BadSignature));
    let unsigned = Delivery {
        github_event: Some("push"),
        body,
        ..Delivery::default()
    };
    assert_eq!(
        verify(secret, &unsigned),
        Err(DeliveryError::MissingSignature)
    );
    assert_eq!(verify(None, &github(&good)), Err(DeliveryError::NoSecret));
    assert!(WebhookSecret::new("").is_none());

    let gitlab = |token| Delivery {
        gitlab_token: Some(token),
        gitlab_event: Some("Push Hook"),
        body,
        ..Delivery::default()
    };
    assert_eq!(verify(secret, &gitlab("s3cret")), Ok(()));
    for bad in ["s3cre", "s3cret ", "S3CRET", ""] {
        assert_eq!(
            verify(secret, &gitlab(bad)),
            Err(DeliveryError::BadSignature)
        );
    }
    let generic = Delivery {
        generic_signature: Some(&good),
        body,
        ..Delivery::default()
    };
    assert_eq!(verify(secret, &generic), Ok(()));
    assert!(!format!("{secret:?}").contains("s3cret"));
}

#[test]
fn verified_deliveries_are_classified() {
    let push = |event: Option<&'static str>, body: &'static [u8]| Delivery {
        github_event: event,
        body,
        ..Delivery::default()
    };
    let table: &[(Delivery<'_>, PushVerdict)] = &[
        (push(Some("ping"), br#"{"zen":"hi"}"#), PushVerdict::Ping),
        (
            push(Some("push"), br#"{"ref":"refs/heads/main","after":"abc"}"#),
            PushVerdict::Sync {
                after: Some("abc".into()),
            },
        ),
        (
            push(Some("push"), br#"{"ref":"refs/heads/other-branch"}"#),
            PushVerdict::Ignored("ignored: push to other-branch".into()),
        ),
        (
            push(Some("push"), br#"{"ref":"refs/tags/v1"}"#),
            PushVerdict::Ignored("ignored: push to tag v1".into()),
        ),
        (
            push(Some("pull_request"), br#"{"ref":"refs/heads/main"}"#),
            PushVerdict::Ignored("ignored: GitHub event pull_request".into()),
        ),
        (
            push(
                Some("push"),
                b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D",
            ),
            PushVerdict::Sync { after: None },
        ),
        (push(None, b""), PushVerdict::Sync { after: None }),
        (
            Delivery {
                gitlab_event: Some("Tag Push Hook"),
                body: br#"{"ref":"refs/tags/v1"}"#,
                ..Delivery::default()
            },
            PushVerdict::Ignored("ignored: GitLab event Tag Push Hook".into()),
        ),
        (
            Delivery {
                gitlab_event: Some("Push Hook"),
                body: br#"{"ref":"refs/heads/main"}"#,
                ..Delivery::default()
            },
            PushVerdict::Sync { after: None },
        ),
    ];
    for (delivery, verdict) in table {
        assert_eq!(&classify("main", delivery), verdict, "{delivery:?}");
    }
}
