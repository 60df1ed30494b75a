//! Hardening, against a real Docker engine through the HAProxy socket proxy:
//! - operators with their own stores never touch each other's containers, whatever
//!   their `--instance` says (the store identity decides);
//! - a pipeline folder whose real path leaves the source root is refused, never
//!   mounted; a link inside a folder resolves in the container, not on the host;
//! - what the operator writes for itself is readable by its owner only;
//! - stored state this version cannot read is reported, never overwritten.

mod support;

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::docker::{
    Fixture, Operator, OperatorOptions, RUN_TIMEOUT, WAITS_FOR_GO, forty_lines, inspect_container,
    phase, reason, stdout_lines,
};

const STORE_LABEL: &str = "flotilla.dev/store";

fn label(container: &str, name: &str) -> Option<String> {
    let state = inspect_container(container)?;
    state["Config"]["Labels"][name].as_str().map(str::to_owned)
}

async fn gc_passes(op: &Operator) -> f64 {
    op.metric("gc_passes_total").await
}

/// Waits for the first garbage collection pass of a freshly started operator (it runs
/// when the operator starts watching container events).
async fn wait_for_first_gc_pass(op: &Operator) {
    op.wait_until(
        "the operator's first garbage collection pass",
        Duration::from_secs(60),
        || async { (gc_passes(op).await >= 1.0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_with_their_own_stores_and_one_instance_name_never_touch_each_others_runs() {
    let a = Fixture::new();
    let b = Fixture::new();
    a.write_pipeline("waits", WAITS_FOR_GO, "", "");
    b.write_pipeline("waits", WAITS_FOR_GO, "", "");
    // The same human-readable instance name on both: it must not be what isolates them.
    let shared_name = OperatorOptions {
        instance: Some(a.instance().to_owned()),
        ..OperatorOptions::default()
    };
    let op_a = a.start_operator(&shared_name);
    let op_b = b.start_operator(&shared_name);
    op_a.wait_for_pipeline("waits").await;
    op_b.wait_for_pipeline("waits").await;
    let run_a = op_a.create_run("waits", &[]).await;
    let run_b = op_b.create_run("waits", &[]).await;
    let container_a = op_a.wait_for_line(&run_a, "line 20").await;
    let container_b = op_b.wait_for_line(&run_b, "line 20").await;

    let store_a = label(&container_a, STORE_LABEL).expect("A's container has a store label");
    let store_b = label(&container_b, STORE_LABEL).expect("B's container has a store label");
    assert!(uuid::Uuid::parse_str(&store_a).is_ok(), "{store_a}");
    assert!(uuid::Uuid::parse_str(&store_b).is_ok(), "{store_b}");
    assert_ne!(store_a, store_b, "two data dirs are two stores");
    for (op, store) in [(&op_a, &store_a), (&op_b, &store_b)] {
        let (_, ready) = op.get_text("/readyz").await;
        let ready: Value = serde_json::from_str(&ready).expect("readyz JSON");
        assert_eq!(ready["storeIdentity"], store.as_str(), "{ready}");
    }
    for container in [&container_a, &container_b] {
        assert_eq!(
            label(container, "flotilla.dev/managed-by").as_deref(),
            Some(a.instance())
        );
    }

    // Each operator in turn is killed and restarted: its start-up re-list and garbage
    // collection run while the other's container runs with the same instance label.
    op_a.kill_9();
    let op_a = a.start_operator(&shared_name);
    wait_for_first_gc_pass(&op_a).await;
    op_b.kill_9();
    let op_b = b.start_operator(&shared_name);
    wait_for_first_gc_pass(&op_b).await;
    for container in [&container_a, &container_b] {
        let state = inspect_container(container)
            .unwrap_or_else(|| panic!("{container} was removed\n{}", op_a.context()));
        assert_eq!(state["State"]["Status"], "running", "{container}");
    }
    // The restarted B kept its store's identity: its container is still its own.
    assert_eq!(label(&container_b, STORE_LABEL), Some(store_b));

    std::fs::write(a.pipelines_dir().join("waits/go"), "").expect("release A");
    std::fs::write(b.pipelines_dir().join("waits/go"), "").expect("release B");
    for (op, run) in [(&op_a, &run_a), (&op_b, &run_b)] {
        op.wait_succeeded(run).await;
        assert_eq!(
            stdout_lines(&op.log(run, 1).await),
            forty_lines(),
            "every line once, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_operator_on_the_same_sqlite_store_is_refused() {
    let f = Fixture::new();
    let first = f.start_operator(&OperatorOptions::default());
    let second = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("serve")
        .arg("--data-dir")
        .arg(f.data_dir())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--docker-host",
            "tcp://127.0.0.1:9",
        ])
        .env("ENCRYPTION_KEY", support::server::ENCRYPTION_KEY)
        .env_remove("DATABASE_URL")
        .env_remove("FLOTILLA_DATA_DIR")
        .output()
        .expect("run a second flotilla serve");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    let db = f.data_dir().join("flotilla.db");
    assert!(
        stderr.contains(&format!("the SQLite store {} is in use", db.display()))
            && stderr.contains("process ")
            && stderr.contains("PostgreSQL"),
        "{stderr}"
    );
    // The first one is untouched and still serves.
    let (status, _) = first.get_text("/healthz").await;
    assert_eq!(status, 200);
    // Once it is gone (even by kill -9), the store can be opened again.
    first.kill_9();
    let again = f.start_operator(&OperatorOptions::default());
    assert_eq!(again.get_text("/healthz").await.0, 200);
}

const SEES_THE_CONTAINER_ROOT: &str = r#"
import os
host_data = os.environ["HOST_DATA_DIR"]
print("link-shows-container-root", os.path.exists("rootlink/pipeline/main.py"))
print("link-shows-host-data-dir", os.path.exists("rootlink" + host_data))
# Look for the operator's own files through everything mounted into the run.
leaked = []
for top in ["/pipeline", "/cache", "/wheels", "/etc/flotilla", "/run/secrets"]:
    for root, dirs, files in os.walk(top):
        for name in files:
            if name in ("flotilla.db", "admin-token", "dev-encryption-key") or name.startswith("attempt-"):
                leaked.append(os.path.join(root, name))
print("operator-files-visible", leaked)
"#;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o777
}

/// Every file and folder under `dir` except the shared uv cache, which runs write.
fn private_entries(dir: &Path, out: &mut Vec<(String, u32)>) {
    for entry in std::fs::read_dir(dir).expect("read data dir").flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "uv-cache" || name == "uv-python" {
            continue;
        }
        out.push((path.display().to_string(), mode(&path)));
        if entry.file_type().expect("file type").is_dir() {
            private_entries(&path, out);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_folders_never_leave_the_source_root_and_operator_files_stay_private() {
    let f = Fixture::new();
    // A folder that is a link out of the pipelines directory, with a main.py where it
    // leads, and one that is a link to the data directory (the store and its keys).
    let outside = f.scratch("outside");
    std::fs::write(outside.join("main.py"), "print('mounted from outside')\n").expect("main.py");
    symlink(&outside, f.pipelines_dir().join("leak")).expect("link out");
    symlink(f.data_dir(), f.pipelines_dir().join("data-link")).expect("link to data");
    for name in ["leak", "data-link"] {
        f.write_manifest(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n  source: {{ path: {name} }}\n"
            ),
        );
    }
    // A link inside a pipeline folder is fine: it resolves in the container.
    f.write_pipeline("inside", SEES_THE_CONTAINER_ROOT, "", "");
    symlink("/", f.pipelines_dir().join("inside/rootlink")).expect("link to /");

    let op = f.start_operator(&OperatorOptions::default());
    for name in ["leak", "data-link", "inside"] {
        op.wait_for_pipeline(name).await;
    }
    for (name, leads_to) in [("leak", &outside), ("data-link", &f.data_dir())] {
        let run = op.create_run(name, &[]).await;
        let finished = op.wait_finished(&run).await;
        assert_eq!(phase(&finished), "Failed", "{finished:#}");
        assert_eq!(reason(&finished), "SourceOutsideRoot", "{finished:#}");
        let message = finished["status"]["message"].as_str().unwrap_or_default();
        let real = leads_to.canonicalize().expect("real path");
        assert!(
            message.contains(&format!("\"{name}\"")) && message.contains(&*real.to_string_lossy()),
            "the message names the folder and where it leads: {message}"
        );
        assert!(
            finished["status"]["attempts"]
                .as_array()
                .is_none_or(|a| a.iter().all(|attempt| attempt["container"].is_null())),
            "no container was created: {finished:#}"
        );
        let (_, events) = op
            .get(&format!("/namespaces/default/events?for=run/{run}"))
            .await;
        let reasons: Vec<&str> = events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["involved"]["name"] == run.as_str())
            .filter_map(|e| e["reason"].as_str())
            .collect();
        assert!(reasons.contains(&"SourceOutsideRoot"), "{events:#}");
    }
    assert!(
        f.containers().is_empty(),
        "nothing was mounted: {:?}",
        f.containers()
    );

    let data_dir = f.data_dir().canonicalize().expect("data dir");
    let run = op
        .create_run(
            "inside",
            &[("HOST_DATA_DIR", &data_dir.display().to_string())],
        )
        .await;
    let finished = op.wait_succeeded(&run).await;
    assert_eq!(
        stdout_lines(&op.log(&run, 1).await),
        [
            "link-shows-container-root True",
            "link-shows-host-data-dir False",
            "operator-files-visible []",
        ]
    );

    // Owner-only: the data dir, the database (and SQLite's -wal/-shm), run logs.
    assert_eq!(mode(&data_dir), 0o700, "{}", data_dir.display());
    let mut entries = Vec::new();
    private_entries(&data_dir, &mut entries);
    let names: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    let uid = finished["metadata"]["uid"].as_str().expect("uid");
    for expected in [
        "flotilla.db".to_owned(),
        format!("runs/{uid}/attempt-1.log"),
    ] {
        let path = data_dir.join(&expected).display().to_string();
        assert!(names.contains(&path.as_str()), "{expected} in {names:?}");
    }
    for (path, mode) in &entries {
        assert_eq!(
            mode & 0o077,
            0,
            "{path} is {mode:o}: readable by others than the operator's user"
        );
    }
    // The runner's uid (--run-user 10001:10001) cannot read them on the host either.
    let db = data_dir.join("flotilla.db");
    let read = Command::new("setpriv")
        .args(["--reuid=10001", "--regid=10001", "--clear-groups", "cat"])
        .arg(&db)
        .output()
        .expect("setpriv runs");
    assert!(!read.status.success(), "uid 10001 read {}", db.display());
    assert!(
        String::from_utf8_lossy(&read.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
}

async fn sqlite(f: &Fixture) -> sqlx::SqlitePool {
    let url = format!("sqlite://{}", f.data_dir().join("flotilla.db").display());
    sqlx::SqlitePool::connect(&url)
        .await
        .expect("open the store")
}

async fn stored(pool: &sqlx::SqlitePool, name: &str, column: &str) -> Option<String> {
    // `column` is one of this file's literals.
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {column} FROM objects WHERE kind = 'Run' AND name = $1"
    )))
    .bind(name)
    .fetch_one(pool)
    .await
    .expect("stored run")
}

async fn write_behind_the_api(pool: &sqlx::SqlitePool, name: &str, column: &str, text: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE objects SET {column} = $1 WHERE kind = 'Run' AND name = $2"
    )))
    .bind(text)
    .bind(name)
    .execute(pool)
    .await
    .expect("write behind the API's back");
}

fn events_of(events: &Value, run: &str, reason: &str) -> Vec<Value> {
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involved"]["name"] == run && e["reason"] == reason)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_state_this_version_cannot_read_is_reported_and_never_overwritten() {
    let f = Fixture::new();
    f.write_pipeline("waits", WAITS_FOR_GO, "", "");
    let op = f.start_operator(&OperatorOptions::default());
    op.wait_for_pipeline("waits").await;
    let run = op.create_run("waits", &[]).await;
    op.wait_for_line(&run, "line 20").await;
    let pool = sqlite(&f).await;

    // A spec from a newer schema (a field this version does not know).
    let original = stored(&pool, &run, "spec").await.expect("spec");
    let newer: String = {
        let mut spec: Value = serde_json::from_str(&original).expect("stored spec is JSON");
        spec["priority"] = Value::String("high".into());
        spec.to_string()
    };
    write_behind_the_api(&pool, &run, "spec", &newer).await;

    // Cancelling used to decode the spec into a default and write that back.
    let response = reqwest::Client::new()
        .post(op.api(&format!("/namespaces/default/runs/{run}/cancel")))
        .bearer_auth(op.token())
        .send()
        .await
        .expect("cancel");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("problem+json");
    assert_eq!(status, 500, "{body:#}");
    assert_eq!(body["code"], "store.corrupt", "{body:#}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("Run/default/{run}")), "{detail}");
    assert_eq!(stored(&pool, &run, "spec").await.as_deref(), Some(&*newer));

    // The controller meets it when the container exits: it reports, and writes nothing.
    let status_before = stored(&pool, &run, "status").await;
    std::fs::write(f.pipelines_dir().join("waits/go"), "").expect("release");
    op.wait_until(
        "an UnreadableObject event on the run",
        RUN_TIMEOUT,
        || async {
            let (_, events) = op.get("/namespaces/default/events").await;
            (!events_of(&events, &run, "UnreadableObject").is_empty()).then_some(())
        },
    )
    .await;
    let (_, events) = op.get("/namespaces/default/events").await;
    let event = &events_of(&events, &run, "UnreadableObject")[0];
    assert_eq!(event["type"], "Warning", "{event:#}");
    assert!(
        event["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec") && m.contains("priority")),
        "{event:#}"
    );
    assert!(op.metric("unreadable_objects_total").await >= 1.0);
    assert_eq!(stored(&pool, &run, "spec").await.as_deref(), Some(&*newer));
    assert_eq!(stored(&pool, &run, "status").await, status_before);

    // Repaired behind the API's back too: the next retry finishes the run normally.
    write_behind_the_api(&pool, &run, "spec", &original).await;
    op.wait_succeeded(&run).await;
    assert_eq!(stdout_lines(&op.log(&run, 1).await), forty_lines());

    // A status that is not even JSON: reads name the object and change nothing.
    write_behind_the_api(&pool, &run, "status", "{\"phase\": \"Succ").await;
    let (status, body) = op.get(&format!("/namespaces/default/runs/{run}")).await;
    assert_eq!(status, 500, "{body:#}");
    assert_eq!(body["code"], "store.corrupt");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("Run/default/{run}"))),
        "{body:#}"
    );
    assert_eq!(
        stored(&pool, &run, "status").await.as_deref(),
        Some("{\"phase\": \"Succ")
    );
    pool.close().await;
}
