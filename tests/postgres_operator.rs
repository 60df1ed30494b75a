//! `flotilla serve --database postgres://…` end to end, against a throwaway PostgreSQL
//! server (`support/postgres.rs`) and a real Docker engine through the HAProxy socket
//! proxy (`support/docker.rs`): the directory source and `flotilla apply` write to
//! PostgreSQL, a real run succeeds with its log lines, a schedule slot gets its run, a
//! token is created, used and revoked, and the events are listed. Every step is also
//! checked in the database itself, so the test proves that PostgreSQL (and no SQLite
//! file) holds the operator's state.
//!
//! The test has its own proxy, operator instance, data dir and database; waits are
//! bounded and poll for a condition.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use support::docker::{Fixture, Operator, OperatorOptions, RUN_TIMEOUT, phase, stdout_lines};
use support::postgres::PgServer;
use support::server::bearer_client;

/// Prints two lines, one with the run's environment.
const HELLO: &str = "import os\nprint(\"hello\", os.environ[\"GREETING\"], flush=True)\nprint(\"done\", flush=True)\n";

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// A schedule of `hello` every 2 s that never overlaps its own runs and keeps them all.
fn schedule_yaml(suspend: bool) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: tick\nspec:\n  \
         pipelineRef: {{ name: hello }}\n  every: 2s\n  concurrencyPolicy: Forbid\n  \
         env: {{ GREETING: scheduled }}\n  history: {{ succeeded: 100, failed: 100 }}\n  \
         suspend: {suspend}\n"
    )
}

/// Runs `flotilla ARGS` against `operator` and returns its stdout; panics on failure.
fn cli_ok(operator: &Operator, args: &[&str]) -> String {
    let out = operator.cli(args, CLI_TIMEOUT);
    assert!(
        out.status.success(),
        "flotilla {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        operator.context()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn count(db: &PgPool, sql: &str, bind: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(bind.to_owned())
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The runs a schedule created, from the API.
async fn runs_of(operator: &Operator, schedule: &str) -> Vec<Value> {
    let (status, list) = operator.get("/namespaces/default/runs").await;
    assert_eq!(status, 200, "list runs: {list}");
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|run| run["metadata"]["labels"]["flotilla.dev/schedule"] == schedule)
        .collect()
}

/// `<schedule>-<minutes since the epoch>` for slots on whole minutes, else seconds (the
/// README's naming rule).
fn slot_run_name(schedule: &str, slot: &str) -> String {
    let seconds = chrono::DateTime::parse_from_rfc3339(slot)
        .unwrap_or_else(|e| panic!("slot {slot}: {e}"))
        .timestamp();
    if seconds % 60 == 0 {
        format!("{schedule}-{}", seconds / 60)
    } else {
        format!("{schedule}-{seconds}")
    }
}

#[tokio::test]
async fn serve_on_postgresql_applies_runs_schedules_and_authenticates() {
    // Dropped last: the operator stops before its database does.
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let fixture = Fixture::new();
    fixture.write_pipeline("hello", HELLO, "", "");
    let operator = fixture.start_operator(&OperatorOptions {
        args: vec!["--database".into(), url.clone()],
        ..OperatorOptions::default()
    });
    let db = PgPool::connect(&url)
        .await
        .expect("connect to the test database");

    // The directory source applied the pipeline into PostgreSQL; no SQLite file exists.
    operator.wait_for_pipeline("hello").await;
    let manager: Option<String> = sqlx::query_scalar(
        "SELECT managed_by FROM objects WHERE kind = 'Pipeline' AND namespace = 'default' AND name = 'hello'",
    )
    .fetch_one(&db)
    .await
    .expect("the pipeline row");
    assert_eq!(
        manager,
        Some(format!("dir:{}", fixture.pipelines_dir().display())),
        "the pipeline is in PostgreSQL under the directory's manager"
    );
    let sqlite_files: Vec<String> = std::fs::read_dir(fixture.data_dir())
        .expect("data dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".db") || name.contains(".db-"))
        .collect();
    assert!(
        sqlite_files.is_empty(),
        "an operator on PostgreSQL made SQLite files: {sqlite_files:?}"
    );

    // The store identity is PostgreSQL's, and /readyz names it.
    let identity: String = sqlx::query_scalar("SELECT uid FROM store_identity WHERE id = 1")
        .fetch_one(&db)
        .await
        .expect("the identity row");
    let ready: Value = reqwest::get(format!("{}/readyz", operator.base()))
        .await
        .expect("GET /readyz")
        .json()
        .await
        .expect("readyz JSON");
    assert_eq!(ready["storeIdentity"], identity.as_str(), "{ready}");

    // A real run succeeds, with its output stored.
    let run = operator
        .create_run("hello", &[("GREETING", "from postgres")])
        .await;
    let finished = operator.wait_finished(&run).await;
    assert_eq!(
        phase(&finished),
        "Succeeded",
        "{finished:#}\n{}",
        operator.context()
    );
    let log = operator.log(&run, 1).await;
    assert_eq!(stdout_lines(&log), ["hello from postgres", "done"], "{log}");
    let stored_phase: String = sqlx::query_scalar(
        "SELECT status::json->>'phase' FROM objects WHERE kind = 'Run' AND namespace = 'default' AND name = $1",
    )
    .bind(&run)
    .fetch_one(&db)
    .await
    .expect("the run row");
    assert_eq!(stored_phase, "Succeeded");
    // Its events are listed through the API and are rows in PostgreSQL.
    let events = operator
        .wait_until(
            "Started and Succeeded events of the run",
            RUN_TIMEOUT,
            || async {
                let (status, list) = operator
                    .get(&format!("/namespaces/default/events?for=run/{run}"))
                    .await;
                assert_eq!(status, 200, "{list}");
                let reasons: Vec<String> = list["items"]
                    .as_array()?
                    .iter()
                    .filter_map(|e| e["reason"].as_str().map(str::to_owned))
                    .collect();
                (reasons.contains(&"Started".to_owned())
                    && reasons.contains(&"Succeeded".to_owned()))
                .then_some(list)
            },
        )
        .await;
    for event in events["items"].as_array().into_iter().flatten() {
        assert_eq!(event["involved"]["name"], run.as_str(), "{event}");
    }
    let event_rows = count(
        &db,
        "SELECT count(*) FROM events WHERE kind = 'Run' AND namespace = 'default' AND name = $1 AND reason IN ('Started', 'Succeeded')",
        &run,
    )
    .await;
    assert_eq!(
        event_rows, 2,
        "Started and Succeeded are rows in PostgreSQL"
    );

    // `flotilla apply` creates a schedule; its slot gets exactly one run.
    let manifests = fixture.scratch("manifests");
    let schedule_file = manifests.join("schedule.yaml");
    std::fs::write(&schedule_file, schedule_yaml(false)).expect("schedule manifest");
    let file = schedule_file.to_string_lossy().into_owned();
    let applied = cli_ok(&operator, &["apply", "-f", &file]);
    assert_eq!(applied.trim(), "schedule/tick created");
    let scheduled = operator
        .wait_until(
            "a scheduled run of tick to succeed",
            RUN_TIMEOUT,
            || async {
                runs_of(&operator, "tick")
                    .await
                    .into_iter()
                    .find(|run| phase(run) == "Succeeded")
            },
        )
        .await;
    let slot = scheduled["spec"]["slot"]
        .as_str()
        .expect("a scheduled run names its slot")
        .to_owned();
    let name = scheduled["metadata"]["name"].as_str().expect("a name");
    assert_eq!(name, slot_run_name("tick", &slot), "{scheduled:#}");
    assert_eq!(scheduled["spec"]["trigger"], "schedule");
    assert_eq!(scheduled["spec"]["scheduleRef"]["name"], "tick");
    let scheduled_log = operator.log(name, 1).await;
    assert_eq!(stdout_lines(&scheduled_log), ["hello scheduled", "done"]);

    // Suspended by a second apply, it stops making runs; every slot had at most one.
    std::fs::write(&schedule_file, schedule_yaml(true)).expect("schedule manifest");
    let applied = cli_ok(&operator, &["apply", "-f", &file]);
    assert_eq!(applied.trim(), "schedule/tick configured");
    let suspended: bool = sqlx::query_scalar(
        "SELECT (spec::json->>'suspend')::boolean FROM objects WHERE kind = 'Schedule' AND name = 'tick'",
    )
    .fetch_one(&db)
    .await
    .expect("the schedule row");
    assert!(suspended, "the suspension is stored in PostgreSQL");
    let (runs, distinct_slots): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT spec::json->>'slot') FROM objects \
         WHERE kind = 'Run' AND labels::json->>'flotilla.dev/schedule' = 'tick'",
    )
    .fetch_one(&db)
    .await
    .expect("count the schedule's runs");
    assert!(
        runs >= 1 && runs == distinct_slots,
        "{runs} runs for {distinct_slots} slots"
    );
    // RunCreated is recorded right after the run is committed: wait for it rather than
    // assume it landed before the run finished.
    operator
        .wait_until(
            "tick's RunCreated event in PostgreSQL and the API",
            RUN_TIMEOUT,
            || async {
                let rows = count(
                    &db,
                    "SELECT count(*) FROM events WHERE kind = 'Schedule' AND name = 'tick' \
                 AND reason = 'RunCreated' AND message LIKE '%' || $1 || '%'",
                    name,
                )
                .await;
                let (status, events) = operator
                    .get("/namespaces/default/events?for=schedule/tick")
                    .await;
                assert_eq!(status, 200, "{events}");
                let listed = events["items"].as_array()?.iter().any(|e| {
                    e["reason"] == "RunCreated"
                        && e["message"]
                            .as_str()
                            .is_some_and(|m| m.contains(name) && m.contains(&slot))
                });
                (rows == 1 && listed).then_some(())
            },
        )
        .await;

    // A token made with the CLI is stored in PostgreSQL as a hash, works for its scope
    // only, and stops working when revoked.
    let token = cli_ok(
        &operator,
        &[
            "token",
            "create",
            "--name",
            "pg-reader",
            "--scopes",
            "runs:read",
        ],
    )
    .trim()
    .to_owned();
    assert!(token.starts_with("flt_"), "{token}");
    let stored_hash: String =
        sqlx::query_scalar("SELECT hash FROM tokens WHERE name = 'pg-reader'")
            .fetch_one(&db)
            .await
            .expect("the token row");
    assert_eq!(stored_hash, hex::encode(Sha256::digest(token.as_bytes())));
    let leaked = count(
        &db,
        "SELECT count(*) FROM tokens WHERE hash = $1 OR name = $1 OR scopes LIKE '%' || $1 || '%'",
        &token,
    )
    .await;
    assert_eq!(leaked, 0, "the token itself is not stored");
    let listed = cli_ok(&operator, &["token", "list"]);
    assert!(listed.contains("pg-reader"), "{listed}");

    let reader = bearer_client(&token, Duration::from_secs(30));
    let runs_url = operator.api("/namespaces/default/runs");
    let answer = reader.get(&runs_url).send().await.expect("GET runs");
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.expect("runs JSON");
    let names: Vec<&str> = body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["metadata"]["name"].as_str())
        .collect();
    assert!(names.contains(&run.as_str()), "{names:?}");
    let tokens_url = operator.api("/tokens");
    let answer = reader.get(&tokens_url).send().await.expect("GET tokens");
    assert_eq!(
        answer.status(),
        StatusCode::FORBIDDEN,
        "runs:read is not admin"
    );

    cli_ok(&operator, &["token", "revoke", "pg-reader"]);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM tokens WHERE name = $1",
            "pg-reader"
        )
        .await,
        0,
        "the revoked token's row is gone from PostgreSQL"
    );
    let answer = reader.get(&runs_url).send().await.expect("GET runs");
    assert_eq!(
        answer.status(),
        StatusCode::UNAUTHORIZED,
        "a revoke through the same operator takes effect at once"
    );

    // What the API lists is what PostgreSQL holds (once a slot evaluated before the
    // suspension, or a history prune, has settled).
    operator
        .wait_until(
            "the API and PostgreSQL to agree on the runs",
            RUN_TIMEOUT,
            || async {
                let (status, all) = operator.get("/namespaces/default/runs").await;
                assert_eq!(status, 200, "{all}");
                let api_runs = all["items"].as_array().map_or(0, Vec::len) as i64;
                let rows = count(
                    &db,
                    "SELECT count(*) FROM objects WHERE kind = 'Run' AND namespace = $1",
                    "default",
                )
                .await;
                (api_runs == rows && rows >= 2).then_some(())
            },
        )
        .await;
    db.close().await;
}
