//! `flotilla import fastflow` against a Fast-Flow installation made by Fast-Flow's own
//! schema (tests/fixtures/fastflow, built by scripts/fastflow-fixture.py from its
//! models and Alembic head): the report, the dry run, the import, its idempotence, and
//! then an operator that serves the imported history and runs an imported pipeline with
//! the imported secrets. What the fixture holds is read from its `expected.json`,
//! written by the generator, never from the code under test. The store is SQLite, or
//! PostgreSQL with `FLOTILLA_TEST_STORE=postgres` (`make test` runs both).

#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::docker::{Fixture, OperatorOptions, phase};
use support::server::{ENCRYPTION_KEY, stderr, stdout};

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fastflow")
}

fn expected() -> Value {
    let text =
        std::fs::read_to_string(fixture_root().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A copy of the Fast-Flow installation (database, logs) in the fixture's temp dir and
/// its pipelines in the operator's pipelines dir.
fn install(fixture: &Fixture) -> PathBuf {
    let root = fixture.scratch("fast-flow");
    copy_dir(&fixture_root().join("data"), &root.join("data"));
    copy_dir(&fixture_root().join("logs"), &root.join("logs"));
    copy_dir(&fixture_root().join("pipelines"), &fixture.pipelines_dir());
    root
}

/// `flotilla import fastflow` on the fixture's data dir and store.
fn import(fixture: &Fixture, from: &Path, fastflow_key: &str, extra: &[&str]) -> Output {
    let url = fixture.store_url();
    let database = (!url.starts_with("sqlite:")).then_some(url.as_str());
    import_into(
        fixture,
        &fixture.data_dir(),
        database,
        from,
        fastflow_key,
        extra,
    )
}

/// `flotilla import fastflow` into `data_dir` (and `database`, when not SQLite there).
fn import_into(
    fixture: &Fixture,
    data_dir: &Path,
    database: Option<&str>,
    from: &Path,
    fastflow_key: &str,
    extra: &[&str],
) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .args(["import", "fastflow", "--from"])
        .arg(from)
        .arg("--pipelines")
        .arg(fixture.pipelines_dir())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--encryption-key", fastflow_key])
        .args(extra)
        .env("ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env_remove("DATABASE_URL")
        .env_remove("FASTFLOW_ENCRYPTION_KEY");
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    command.output().expect("run flotilla import")
}

/// Every imported run as stored: name, labels, annotations, spec and status.
async fn imported_runs(url: &str) -> Vec<Value> {
    let store = flotilla::store::Store::connect(url).await.expect("store");
    let mut runs: Vec<Value> = store
        .list(flotilla::resource::Kind::Run, None)
        .await
        .expect("runs")
        .into_iter()
        .map(|run| {
            serde_json::json!([
                run.key.name,
                run.labels,
                run.annotations,
                run.spec,
                run.status
            ])
        })
        .collect();
    store.close().await;
    runs.sort_by_key(|r| r[0].as_str().unwrap_or_default().to_owned());
    runs
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "import failed:\n{}\n{}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

fn run_name(run: &Value) -> String {
    let pipeline = run["pipeline"].as_str().expect("text").replace('_', "-");
    let id = run["id"].as_str().expect("text").replace('-', "");
    format!("{pipeline}-ff-{id}")
}

/// Fast-Flow's run statuses in Flotilla's phases: a failed run failed; INTERRUPTED is a
/// stop (by a user or Fast-Flow's shutdown); WARNING, Fast-Flow's "stopped while
/// active, outcome unknown", is not a success.
fn phase_of(status: &str) -> Option<&'static str> {
    match status {
        "SUCCESS" => Some("Succeeded"),
        "FAILED" | "WARNING" => Some("Failed"),
        "INTERRUPTED" => Some("Cancelled"),
        _ => None,
    }
}

fn instant(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .with_timezone(&chrono::Utc)
}

#[tokio::test]
async fn a_fast_flow_installation_imports_in_one_command_and_runs_here() {
    let fixture = Fixture::new();
    let expected = expected();
    let from = install(&fixture);
    let database = from.join("data/fastflow.db");
    let database_before = sha256_hex(&std::fs::read(&database).expect("db"));
    let key = expected["encryption_key"].as_str().expect("text");

    // The dry run reports every pipeline and the database, and writes nothing.
    let report = succeeded(&import(&fixture, &from, key, &["--dry-run"]));
    for needle in [
        expected["alembic_head"].as_str().expect("text"),
        "hello",
        "nightly_etl",
        "\"0 7 * * 0\" is written \"0 7 * * MON\"",
        "max_instances 1",
        "downstream trigger hello → nightly_etl",
        r#"add {"on_failure":false,"on_success":true,"pipeline":"nightly_etl"} to "downstream_triggers" in hello/pipeline.json"#,
        "--max-concurrent-runs 4",
        "--default-timeout 3600s",
        "writable copy",
        "Secret default/fastflow-secrets would be created",
        "dry run: nothing was written",
    ] {
        assert!(
            report.contains(needle),
            "{needle:?} missing from:\n{report}"
        );
    }
    assert!(
        !fixture.data_dir().join("runs").exists(),
        "a dry run writes no run files"
    );

    let finished: Vec<&Value> = expected["runs"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| phase_of(r["status"].as_str().expect("text")).is_some())
        .collect();
    let report = succeeded(&import(&fixture, &from, key, &[]));
    assert!(
        report.contains("Secret default/fastflow-secrets created"),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "runs: {} were created, 0 were there already",
            finished.len()
        )),
        "{report}"
    );

    // Twice changes nothing.
    let again = succeeded(&import(&fixture, &from, key, &[]));
    assert!(!again.contains(" created\n"), "{again}");
    assert!(!again.contains("configured"), "{again}");
    assert!(
        again.contains(&format!(
            "runs: 0 were created, {} were there already",
            finished.len()
        )),
        "{again}"
    );
    assert!(
        again.contains("run files: 0 logs and 0 sample files written"),
        "{again}"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&database).expect("db")),
        database_before,
        "Fast-Flow's database is only read"
    );

    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("hello").await;
    operator.wait_for_pipeline("nightly-etl").await;

    // The history: every finished run with its phase, times, exit code, parameters,
    // revision and log; the one still running in Fast-Flow is not history.
    for run in expected["runs"].as_array().expect("a list") {
        let name = run_name(run);
        let Some(want) = phase_of(run["status"].as_str().expect("text")) else {
            let (status, _) = operator
                .get(&format!("/namespaces/default/runs/{name}"))
                .await;
            assert_eq!(status, 404, "an unfinished run is not imported: {name}");
            continue;
        };
        let stored = operator.run(&name).await;
        assert_eq!(phase(&stored), want, "{stored:#}");
        let attempt = &stored["status"]["attempts"][0];
        assert_eq!(
            instant(attempt["startedAt"].as_str().expect("text")),
            instant(run["started_at"].as_str().expect("text")),
            "{stored:#}"
        );
        assert_eq!(
            instant(attempt["finishedAt"].as_str().expect("text")),
            instant(run["finished_at"].as_str().expect("text"))
        );
        assert_eq!(attempt["exitCode"], run["exit_code"], "{stored:#}");
        assert_eq!(attempt["setupSeconds"], run["setup_duration"], "{stored:#}");
        assert_eq!(
            stored["spec"]["env"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
            run["parameters"].as_object().cloned().expect("an object"),
            "parameters are the run's env: {stored:#}"
        );
        assert_eq!(stored["status"]["sourceRevision"], run["git_sha"]);
        let log = operator.log(&name, 1).await;
        let texts: Vec<&str> = log
            .lines()
            .map(|l| l.splitn(3, ' ').nth(2).unwrap_or(""))
            .collect();
        let lines: Vec<&str> = run["lines"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|l| l.as_str().expect("text"))
            .collect();
        assert_eq!(texts, lines, "log of {name}:\n{log}");
        let (status, samples) = operator
            .get(&format!("/namespaces/default/runs/{name}/metrics"))
            .await;
        assert_eq!(status, 200, "{samples}");
        let count = samples
            .as_array()
            .or_else(|| samples["samples"].as_array())
            .map_or(0, Vec::len);
        assert_eq!(
            count as u64,
            run["samples"].as_u64().expect("a count"),
            "{samples}"
        );
    }

    // The schedules made in the UI, the disabled one suspended.
    for job in expected["ui_schedules"].as_array().expect("a list") {
        let pipeline = job["pipeline"].as_str().expect("text").replace('_', "-");
        let id: String = job["id"].as_str().expect("text").chars().take(8).collect();
        let name = format!("{pipeline}-ui-{id}");
        let (status, schedule) = operator
            .get(&format!("/namespaces/default/schedules/{name}"))
            .await;
        assert_eq!(status, 200, "{name}: {schedule}");
        let spec = &schedule["spec"];
        assert_eq!(
            spec["suspend"].as_bool().unwrap_or(false),
            !job["enabled"].as_bool().expect("a flag"),
            "{schedule:#}"
        );
        assert_eq!(spec["pipelineRef"]["name"], pipeline.as_str());
        match job["type"].as_str().expect("text") {
            "INTERVAL" => assert_eq!(
                spec["every"].as_str().expect("text"),
                format!("{}s", job["value"].as_str().expect("text"))
            ),
            "CRON" => assert!(spec["cron"].is_string(), "{schedule:#}"),
            other => panic!("the fixture has no {other} job"),
        }
        for (bound, field) in [("start", "start"), ("end", "end")] {
            if let Some(at) = job[bound].as_str() {
                assert_eq!(
                    instant(spec["window"][field].as_str().expect("text")),
                    instant(&format!("{at}Z")),
                    "{schedule:#}"
                );
            }
        }
    }

    // An imported pipeline runs with the imported secret store.
    let name = operator.create_run("hello", &[]).await;
    let run = operator.wait_finished(&name).await;
    let log = operator.log(&name, 1).await;
    assert_eq!(phase(&run), "Succeeded", "{run:#}\n{log}");
    let token = expected["secrets"]["API_TOKEN"]["plaintext"]
        .as_str()
        .expect("text");
    let region = expected["parameters"]["REGION"].as_str().expect("text");
    for line in [
        format!("API_TOKEN sha256={}", sha256_hex(token.as_bytes())),
        format!("REGION sha256={}", sha256_hex(region.as_bytes())),
    ] {
        assert!(log.contains(&line), "{line:?} missing:\n{log}");
    }

    // A run configuration with settings of its own runs through Fast-Flow's route under
    // its own key, with its env and timeout.
    for config in expected["run_configs"].as_array().expect("a list") {
        let folder = config["pipeline"].as_str().expect("text");
        let key = config["webhook_key"].as_str().expect("text");
        let response = reqwest::Client::new()
            .post(format!("{}/api/webhooks/{folder}/{key}", operator.base()))
            .body("{}")
            .send()
            .await
            .expect("Fast-Flow's route");
        assert_eq!(response.status().as_u16(), 200);
        let answer: Value = response.json().await.expect("json");
        let pipeline = answer["run"]["spec"]["pipelineRef"]["name"]
            .as_str()
            .expect("text")
            .to_owned();
        let (_, spec) = operator
            .get(&format!("/namespaces/default/pipelines/{pipeline}"))
            .await;
        assert_eq!(
            spec["spec"]["timeout"].as_str().expect("a timeout"),
            format!("{}s", config["timeout_seconds"]),
            "{spec:#}"
        );
        let name = answer["id"].as_str().expect("text").to_owned();
        let run = operator.wait_finished(&name).await;
        let log = operator.log(&name, 1).await;
        assert_eq!(phase(&run), "Succeeded", "{run:#}\n{log}");
        let target = config["env"]["TARGET"].as_str().expect("text");
        assert!(log.contains(&format!("target={target}")), "{log}");
    }
}

#[tokio::test]
async fn a_wrong_key_or_a_broken_folder_imports_nothing_and_says_why() {
    let fixture = Fixture::new();
    let from = install(&fixture);
    let other_key = "Zm9yLXRoZS10ZXN0LW9ubHktMzItYnl0ZXMtbG9uZyE=";

    let output = import(&fixture, &from, other_key, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let error = stderr(&output);
    assert!(error.contains("\"API_TOKEN\""), "{error}");
    assert!(error.contains("--encryption-key"), "{error}");

    let right_key = expected()["encryption_key"]
        .as_str()
        .expect("text")
        .to_owned();
    let broken = fixture.pipelines_dir().join("nightly_etl/pipeline.json");
    std::fs::write(&broken, "{\"timeout\": \"ten\"}\n").expect("break the folder");
    let output = import(&fixture, &from, &right_key, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let error = stderr(&output);
    assert!(
        error.contains("nightly_etl/pipeline.json") && error.contains("timeout"),
        "{error}"
    );

    // Nothing was written by either.
    assert!(!fixture.data_dir().join("runs").exists());
    std::fs::copy(
        fixture_root().join("pipelines/nightly_etl/pipeline.json"),
        &broken,
    )
    .expect("mend the folder");
    let report = succeeded(&import(&fixture, &from, &right_key, &["--dry-run"]));
    assert!(
        report.contains("Secret default/fastflow-secrets would be created"),
        "{report}"
    );
}

/// Fast-Flow's DATABASE_URL may name PostgreSQL: the same installation, written there
/// by Fast-Flow's own models (the fixture's pg_dump), imports to exactly the objects
/// the SQLite database gives: importing the SQLite one afterwards changes nothing.
#[tokio::test]
async fn a_fast_flow_database_on_postgresql_imports_the_same() {
    let fixture = Fixture::new();
    let from = install(&fixture);
    let key = expected()["encryption_key"]
        .as_str()
        .expect("text")
        .to_owned();
    let server = support::postgres::PgServer::shared();
    let url = server.create_database().await;
    let load = std::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-f"])
        .arg(fixture_root().join("data/fastflow-postgres.sql"))
        .output()
        .expect("run psql");
    assert!(load.status.success(), "{}", stderr(&load));
    let logs = from.join("logs");
    let logs = logs.to_str().expect("a path");

    let report = succeeded(&import(
        &fixture,
        Path::new(&url),
        &key,
        &["--logs-dir", logs],
    ));
    let finished = expected()["runs"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| phase_of(r["status"].as_str().expect("text")).is_some())
        .count();
    assert!(
        report.contains(&format!("runs: {finished} were created")),
        "{report}"
    );
    assert!(!report.contains("postgres@"), "no credentials: {report}");

    let again = succeeded(&import(&fixture, &from, &key, &[]));
    assert!(!again.contains(" created\n"), "{again}");
    assert!(!again.contains("configured"), "{again}");
    assert!(
        again.contains(&format!(
            "runs: 0 were created, {finished} were there already"
        )),
        "{again}"
    );
    assert!(
        again.contains("run files: 0 logs and 0 sample files written"),
        "{again}"
    );

    // The runs themselves: the same as those the SQLite database gives in a store of
    // their own.
    let other = fixture.scratch("other-data");
    succeeded(&import_into(&fixture, &other, None, &from, &key, &[]));
    let from_sqlite =
        imported_runs(&format!("sqlite://{}", other.join("flotilla.db").display())).await;
    assert_eq!(from_sqlite.len(), finished);
    assert_eq!(imported_runs(&fixture.store_url()).await, from_sqlite);
}
