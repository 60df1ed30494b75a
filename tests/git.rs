//! The git source against real git: a bare repository as remote by file URL and over
//! HTTP (`git http-backend` with a token check), commits made and pushed with the `git`
//! CLI, a real SQLite store. Covers apply and prune, atomic checkouts, invalid commits,
//! runs keeping their code, tokens never written down, push deliveries and coalescing.

mod support {
    pub mod git;
}

use std::path::Path;
use std::time::Duration;

use flotilla::resource::{DesiredObject, Kind, ObjectKey, StoredObject};
use flotilla::source::git::push::{
    Delivery, DeliveryError, PushVerdict, WebhookSecret, classify, sign, verify,
};
use flotilla::source::git::{GitConfig, GitSource, SyncResult};
use flotilla::store::Store;
use serde_json::json;
use support::git::{
    GitRemote, HttpGitServer, add_pipeline, captured_logs, files_containing, temp_store,
};
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

#[tokio::test]
async fn a_run_in_flight_keeps_its_checkout_while_new_commits_land() {
    let remote = GitRemote::new();
    add_pipeline(&remote, "", "etl", "3.12");
    let first = remote.commit_and_push("first");
    let (data, store) = temp_store().await;
    let git = source(&remote.file_url(), data.path());
    assert_eq!(git.sync(&store, None).await.result, SyncResult::Applied);

    // What the run controller does when it creates a container: resolve `current`.
    let mounted = std::fs::canonicalize(git.source_root()).expect("resolves");
    let run_key = ObjectKey::new(Kind::Run, "default", "etl-inflight");
    let run = store
        .create(
            DesiredObject {
                key: run_key.clone(),
                labels: Default::default(),
                annotations: Default::default(),
                spec: json!({ "pipelineRef": { "name": "etl" } }).into(),
            },
            None,
            Some(json!({ "phase": "Running", "sourceRevision": first })),
        )
        .await
        .expect("run created");

    let mut commits = Vec::new();
    for i in 0..7 {
        remote.write("etl/main.py", &format!("print('version {i}')\n"));
        commits.push(remote.commit_and_push(&format!("version {i}")));
        assert_eq!(git.sync(&store, None).await.result, SyncResult::Applied);
    }
    assert_eq!(mounted_commit(&git), commits[6]);
    assert_eq!(
        std::fs::read_to_string(mounted.join("etl/main.py")).expect("old code still there"),
        "print('etl')\n"
    );
    let checkouts = data.path().join("git/checkouts");
    assert!(
        !checkouts.join(&commits[0]).exists(),
        "older than the newest five"
    );
    assert!(
        !checkouts.join(&commits[1]).exists(),
        "older than the newest five"
    );
    for kept in &commits[2..] {
        assert!(checkouts.join(kept).is_dir(), "one of the newest five");
    }

    store
        .update_status(
            &run_key,
            Some(run.resource_version),
            json!({ "phase": "Succeeded", "sourceRevision": first }),
        )
        .await
        .expect("run finished");
    remote.write("etl/main.py", "print('final')\n");
    remote.commit_and_push("final");
    assert_eq!(git.sync(&store, None).await.result, SyncResult::Applied);
    assert!(!mounted.exists(), "released once no run uses it");
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
    assert!(!format!("{:?}", GitConfig::new("x").auth).contains(&token));
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

#[tokio::test]
async fn a_signed_push_delivery_syncs_the_branch() {
    let secret = WebhookSecret::new("hook-secret");
    let remote = GitRemote::new();
    add_pipeline(&remote, "", "etl", "3.12");
    remote.commit_and_push("etl");
    let (data, store) = temp_store().await;
    let git = source(&remote.file_url(), data.path());
    let shutdown = CancellationToken::new();
    let loop_task = tokio::spawn(git.clone().run(store.clone(), None, shutdown.clone()));
    git.wait(git.sync_now()).await;
    assert_eq!(python_of(&store, "etl").await, "3.12");

    add_pipeline(&remote, "", "etl", "3.13");
    let pushed = remote.commit_and_push("newer python");
    let body = json!({ "ref": "refs/heads/main", "after": pushed }).to_string();
    let signature = sign("hook-secret", body.as_bytes());
    let delivery = Delivery {
        github_signature: Some(&signature),
        github_event: Some("push"),
        body: body.as_bytes(),
        ..Delivery::default()
    };
    verify(secret.as_ref(), &delivery).expect("signed by the secret");
    assert_eq!(
        classify(git.branch(), &delivery),
        PushVerdict::Sync {
            after: Some(pushed.clone())
        }
    );
    let status = git.wait(git.sync_now()).await;
    assert_eq!(status.live_commit.as_deref(), Some(pushed.as_str()));
    assert_eq!(python_of(&store, "etl").await, "3.13");
    shutdown.cancel();
    loop_task.await.expect("the loop ends");
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
