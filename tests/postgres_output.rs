//! Run output on replicas sharing one PostgreSQL store: the leader ships each attempt log
//! and the samples into the store while it writes them, and any replica serves them.
//!
//! Three tiers, each on its own throwaway PostgreSQL server (`support/postgres.rs`):
//!
//! - the shipper and the store alone: a file written while it ships (a line longer than
//!   a chunk, bytes that are not text) reads back byte for byte, in chunks of whole lines
//!   of at most 1 MiB, re-shipping stores nothing twice, and a restore rebuilds the file
//!   (and replaces one that disagrees with the store);
//! - the API of a replica without the files (the production router in this process):
//!   text, follow (with `Last-Event-ID`) and samples equal the leader's;
//! - two `flotilla serve` on real Docker through the socket proxy: a follower serves a
//!   run's log and samples as the leader does, while it runs and after; and a new leader
//!   after a `kill -9` restores the log and stores every line once.
//!
//! Waits are bounded and poll for a condition; every test has its own database, temp
//! dirs and (for Docker) instance label, removed when it ends.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use flotilla::controller::run::logs::RunFiles;
use flotilla::controller::run::logs::ship::{self, CHUNK_BYTES, FileShipper};
use flotilla::resource::object::DesiredObject;
use flotilla::resource::{Kind, ObjectKey};
use flotilla::store::Store;
use serde_json::{Value, json};
use sqlx::PgPool;

use support::docker::{
    Fixture, Operator, OperatorOptions, RUN_TIMEOUT, WAITS_FOR_GO, forty_lines, stdout_lines, uid,
};
use support::postgres::PgServer;

/// Longest wait for anything that polls.
const WAIT: Duration = Duration::from_secs(60);

/// Creates a run object (output is only stored for runs that exist); returns its key and
/// uid.
async fn create_run(store: &Store, name: &str, status: Value) -> (ObjectKey, String) {
    let key = ObjectKey::new(Kind::Run, "default", name);
    let object = DesiredObject {
        key: key.clone(),
        labels: Default::default(),
        annotations: Default::default(),
        spec: json!({ "pipelineRef": { "name": "p" } }).into(),
    };
    let run = store
        .create(object, None, Some(status))
        .await
        .expect("create the run");
    (key, run.uid)
}

fn running() -> Value {
    json!({ "phase": "Running", "attempts": [{ "number": 1, "container": "c-1" }] })
}

/// Everything stored of `file`, read the way replicas read it.
async fn stored_bytes(store: &Store, run_uid: &str, file: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let more = store
            .read_output(run_uid, file, bytes.len() as u64)
            .await
            .expect("read stored output");
        if more.is_empty() {
            return bytes;
        }
        bytes.extend_from_slice(&more);
    }
}

/// `(byte_offset, end_offset, last byte)` of every stored chunk of a run, in order.
async fn chunks(db: &PgPool, run_uid: &str) -> Vec<(i64, i64, i32)> {
    sqlx::query_as(
        "SELECT byte_offset, end_offset, get_byte(data, octet_length(data) - 1) \
         FROM run_output WHERE run_uid = $1 ORDER BY file, byte_offset",
    )
    .bind(run_uid)
    .fetch_all(db)
    .await
    .expect("list chunks")
}

/// A log line as the follower stores it.
fn log_line(second: u32, index: usize, stream: &str, text: &str) -> String {
    format!(
        "2026-01-01T00:{:02}:{:02}.{index:09}Z {stream} {text}\n",
        second / 60,
        second % 60
    )
}

/// About 4 MiB of output in pieces as a follower appends them: numbered lines, a line of
/// 2.5 MiB (longer than a chunk; two-byte characters, so chunk cuts split characters,
/// and a NUL byte), stderr lines, and pieces that end in the middle of a line.
fn output_pieces() -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut index = 0;
    for batch in 0..20 {
        let mut piece = String::new();
        for _ in 0..1_000 {
            index += 1;
            let stream = if index % 97 == 0 { "stderr" } else { "stdout" };
            piece.push_str(&log_line(batch, index, stream, &format!("line {index}")));
        }
        pieces.push(piece.into_bytes());
    }
    let long = log_line(
        20,
        0,
        "stdout",
        &format!("{}\0{}", "é".repeat(700_000), "ü".repeat(600_000)),
    );
    let (head, tail) = long.as_bytes().split_at(1_000_001);
    pieces.push(head.to_vec());
    pieces.push(tail.to_vec());
    for batch in 21..31 {
        let mut piece = String::new();
        for _ in 0..1_000 {
            index += 1;
            piece.push_str(&log_line(batch, index, "stdout", &format!("line {index}")));
        }
        let (whole, cut) = piece.split_at(piece.len() - 7);
        pieces.push(whole.as_bytes().to_vec());
        pieces.push(cut.as_bytes().to_vec());
    }
    pieces
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = flotilla::private_fs::append(path).expect("open the log");
    file.write_all(bytes).expect("append");
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_output_reads_back_identical_restores_and_is_stored_once() {
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let store = Store::connect(&url).await.expect("open the store");
    let db = PgPool::connect(&url).await.expect("connect");
    let dirs = tempfile::tempdir().expect("temp dir");
    let (key, run_uid) = create_run(&store, "shipped", running()).await;

    // The leader: a shipper started before the first line, the file written piece by
    // piece as the log follower writes it.
    let leader = RunFiles::new(&dirs.path().join("leader"));
    let path = leader.attempt_log(&run_uid, 1);
    flotilla::private_fs::create_dir(path.parent().expect("run dir")).expect("run dir");
    let shipper = FileShipper::start(&store, &leader, &path)
        .await
        .expect("start");
    let pieces = output_pieces();
    for piece in &pieces {
        append(&path, piece);
        leader.announce_output();
        tokio::task::yield_now().await;
    }
    // Whole lines are shipped while the file is written, without waiting for the end.
    let shipped_while_written = Instant::now();
    loop {
        let stored = store
            .output_extent(&run_uid, "attempt-1.log")
            .await
            .expect("extent");
        if stored > 3 * CHUNK_BYTES as u64 {
            break;
        }
        assert!(
            shipped_while_written.elapsed() < WAIT,
            "only {stored} bytes shipped while the file was written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shipper.finish().await;
    let written = std::fs::read(&path).expect("read the log");
    assert!(written.len() > 4_000_000, "{} bytes", written.len());
    assert!(
        stored_bytes(&store, &run_uid, "attempt-1.log").await == written,
        "stored bytes differ from the file"
    );

    // Chunks follow each other, hold at most 1 MiB and end at a line end, unless they are
    // part of the line longer than a chunk.
    let stored = chunks(&db, &run_uid).await;
    let mut end = 0;
    for (offset, chunk_end, last_byte) in &stored {
        assert_eq!(*offset, end, "chunks follow each other: {stored:?}");
        let length = (chunk_end - offset) as usize;
        assert!(length <= CHUNK_BYTES, "a chunk of {length} bytes");
        assert!(
            *last_byte == i32::from(b'\n') || length == CHUNK_BYTES,
            "a chunk of {length} bytes ending inside a line"
        );
        end = *chunk_end;
    }
    assert_eq!(end as usize, written.len());

    // Shipping again stores nothing twice: from the stored end, from a new shipper, or a
    // chunk at an offset already stored.
    ship::ship_pending(&store, &leader, &path)
        .await
        .expect("ship pending");
    FileShipper::start(&store, &leader, &path)
        .await
        .expect("start")
        .finish()
        .await;
    assert!(
        !store
            .put_output_chunk(&run_uid, "attempt-1.log", 0, b"x\n".to_vec())
            .await
            .expect("put")
    );
    assert_eq!(chunks(&db, &run_uid).await, stored, "nothing stored twice");

    // A replica without the file restores it, owner-only; then appends and ships on.
    let follower = RunFiles::new(&dirs.path().join("follower"));
    let restored_path = follower.attempt_log(&run_uid, 1);
    let restored = ship::restore_file(&store, &follower, &restored_path)
        .await
        .expect("restore");
    assert_eq!(restored as usize, written.len());
    assert!(
        std::fs::read(&restored_path).expect("restored") == written,
        "restored bytes differ"
    );
    let mode = std::fs::metadata(&restored_path)
        .expect("restored")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "restored run output is owner-only");
    let shipper = FileShipper::start(&store, &follower, &restored_path)
        .await
        .expect("start");
    let more = log_line(40, 1, "stdout", "after the restore");
    append(&restored_path, more.as_bytes());
    follower.announce_output();
    shipper.finish().await;
    let mut expected = written.clone();
    expected.extend_from_slice(more.as_bytes());
    assert!(
        stored_bytes(&store, &run_uid, "attempt-1.log").await == expected,
        "the new lines are shipped once"
    );
    assert_eq!(chunks(&db, &run_uid).await.len(), stored.len() + 1);

    // A file that disagrees with the store (written by a replica that lost the lead) is
    // replaced; one holding the stored bytes and more is kept as it is.
    let other = RunFiles::new(&dirs.path().join("other"));
    let other_path = other.attempt_log(&run_uid, 1);
    flotilla::private_fs::create_dir(other_path.parent().expect("run dir")).expect("run dir");
    std::fs::write(&other_path, vec![b'z'; expected.len() + 10]).expect("write");
    ship::restore_file(&store, &other, &other_path)
        .await
        .expect("restore");
    assert!(
        std::fs::read(&other_path).expect("read") == expected,
        "a disagreeing file is replaced"
    );
    let mut longer = expected.clone();
    longer.extend_from_slice(log_line(41, 1, "stdout", "not shipped yet").as_bytes());
    std::fs::write(&other_path, &longer).expect("write");
    ship::restore_file(&store, &other, &other_path)
        .await
        .expect("restore");
    assert!(
        std::fs::read(&other_path).expect("read") == longer,
        "an agreeing file is kept"
    );

    // Deleting the run's output deletes every chunk; a run that is gone gets none.
    assert_eq!(
        store.delete_run_output(&run_uid).await.expect("delete"),
        stored.len() as u64 + 1
    );
    assert!(
        store
            .read_output(&run_uid, "attempt-1.log", 0)
            .await
            .expect("read")
            .is_empty()
    );
    store.delete(&key, None).await.expect("delete the run");
    assert!(
        !store
            .put_output_chunk(&run_uid, "attempt-1.log", 0, b"late\n".to_vec())
            .await
            .expect("put")
    );
    assert!(
        chunks(&db, &run_uid).await.is_empty(),
        "no chunk of a deleted run"
    );
    db.close().await;
    store.close().await;
}

/// One replica's API served by this process, reads allowed without a token (`--dev`).
struct Replica {
    base: String,
    files: RunFiles,
    _stop: tokio_util::sync::DropGuard,
}

async fn replica(url: &str, data_dir: &Path) -> Replica {
    let store = Store::connect(url).await.expect("open the store");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let hooks = flotilla::server::hooks::HooksState::new(store.clone(), None, None);
    let mut state = flotilla::server::AppState::new(store, data_dir, hooks, shutdown.clone());
    state.dev_mode = true;
    let files = state.files.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = flotilla::server::serve(listener, state, Default::default(), stop).await;
    });
    Replica {
        base,
        files,
        _stop: shutdown.drop_guard(),
    }
}

impl Replica {
    fn url(&self, run: &str, rest: &str) -> String {
        format!(
            "{}/apis/flotilla.dev/v1alpha1/namespaces/default/runs/{run}{rest}",
            self.base
        )
    }
}

/// `GET` answering 200; the whole body.
async fn get_ok(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    last_event_id: Option<&str>,
) -> String {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .unwrap_or_else(|_| panic!("GET {url} did not answer within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    // A followed log ends with its run: the whole run may take this long.
    let body_wait = 2 * RUN_TIMEOUT;
    tokio::time::timeout(body_wait, response.text())
        .await
        .unwrap_or_else(|_| panic!("the body of {url} did not end within {body_wait:?}"))
        .unwrap_or_else(|e| panic!("body of {url}: {e}"))
}

/// The events of a whole server-sent event stream: `(id, event, data)`; keep-alive
/// comments left out.
fn sse_events(body: &str) -> Vec<(String, String, String)> {
    body.split("\n\n")
        .filter_map(|block| {
            let (mut id, mut event, mut data) = (String::new(), String::new(), Vec::new());
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => id = value.to_owned(),
                    "event" => event = value.to_owned(),
                    "data" => data.push(value),
                    _ => {}
                }
            }
            (!data.is_empty()).then(|| (id, event, data.join("\n")))
        })
        .collect()
}

/// Checks a followed attempt-1 log: lines with ids `1-<first>`, `1-<first + 1>`, … carrying
/// `expected` in order, then one `end` event saying `phase`.
fn assert_followed(
    events: &[(String, String, String)],
    first: usize,
    expected: &[String],
    phase: &str,
) {
    let (end, lines) = events.split_last().expect("events");
    assert_eq!(end.1, "end", "the last event is `end`: {end:?}");
    let end: Value = serde_json::from_str(&end.2).expect("end data");
    assert_eq!(end["phase"], phase, "{end}");
    let ids: Vec<&str> = lines.iter().map(|(id, _, _)| id.as_str()).collect();
    let expected_ids: Vec<String> = (first..first + expected.len())
        .map(|n| format!("1-{n}"))
        .collect();
    assert!(ids == expected_ids, "ids are consecutive from 1-{first}");
    let data: Vec<&String> = lines.iter().map(|(_, _, data)| data).collect();
    assert!(
        data.iter().copied().eq(expected.iter()),
        "every line once, in order"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_without_the_files_serves_log_and_samples_from_the_store() {
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let dirs = tempfile::tempdir().expect("temp dir");
    let leader = replica(&url, &dirs.path().join("leader")).await;
    let follower = replica(&url, &dirs.path().join("follower")).await;
    let store = Store::connect(&url).await.expect("open the store");
    let (key, run_uid) = create_run(&store, "served", running()).await;
    let client = reqwest::Client::new();

    // Followers open before the first line, on both replicas.
    let follow = |replica: &Replica| {
        let (client, url) = (client.clone(), replica.url("served", "/log?follow=true"));
        tokio::spawn(async move { get_ok(&client, &url, None, None).await })
    };
    let on_follower = follow(&follower);
    let on_leader = follow(&leader);

    let log = leader.files.attempt_log(&run_uid, 1);
    let samples = leader.files.metrics(&run_uid);
    flotilla::private_fs::create_dir(log.parent().expect("run dir")).expect("run dir");
    let log_shipper = FileShipper::start(&store, &leader.files, &log)
        .await
        .expect("start");
    let sample_shipper = FileShipper::start(&store, &leader.files, &samples)
        .await
        .expect("start");
    let mut lines = Vec::new();
    for batch in 0..30 {
        let mut piece = String::new();
        for i in 0..100 {
            let text = if i == 50 {
                "y".repeat(40_000)
            } else {
                format!("line {batch}-{i}")
            };
            let line = log_line(
                batch,
                i,
                if i % 7 == 0 { "stderr" } else { "stdout" },
                &text,
            );
            lines.push(line.trim_end_matches('\n').to_owned());
            piece.push_str(&line);
        }
        append(&log, piece.as_bytes());
        let sample = json!({ "at": format!("2026-01-01T00:00:{batch:02}Z"), "cpu_percent": batch as f64 / 2.0, "memory_bytes": 1_000 * batch });
        append(&samples, format!("{sample}\n").as_bytes());
        leader.files.announce_output();
    }
    // The follower serves the lines while the run still runs.
    let last = lines.last().expect("lines").clone();
    let deadline = Instant::now() + WAIT;
    while !get_ok(&client, &follower.url("served", "/log"), None, None)
        .await
        .contains(&last)
    {
        assert!(
            Instant::now() < deadline,
            "the follower never served the last line while running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    log_shipper.finish().await;
    sample_shipper.finish().await;
    let finished =
        json!({ "phase": "Succeeded", "attempts": [{ "number": 1, "container": "c-1" }] });
    store
        .update_status(&key, None, finished)
        .await
        .expect("finish the run");

    for (replica, followed) in [("follower", on_follower), ("leader", on_leader)] {
        let body = followed.await.expect("follow task");
        assert_followed(&sse_events(&body), 1, &lines, "Succeeded");
        eprintln!("{replica}: followed {} lines", lines.len());
    }
    let text = get_ok(&client, &follower.url("served", "/log"), None, None).await;
    assert!(
        text.as_bytes() == std::fs::read(&log).expect("log"),
        "the follower's text is the leader's file"
    );
    assert!(text == get_ok(&client, &leader.url("served", "/log"), None, None).await);
    let resumed = get_ok(
        &client,
        &follower.url("served", "/log?follow=true"),
        None,
        Some("1-2000"),
    )
    .await;
    assert_followed(&sse_events(&resumed), 2001, &lines[2000..], "Succeeded");

    let samples_of = |replica: &Replica| {
        let (client, url) = (client.clone(), replica.url("served", "/metrics"));
        async move {
            serde_json::from_str::<Value>(&get_ok(&client, &url, None, None).await).expect("JSON")
        }
    };
    let served = samples_of(&follower).await;
    assert_eq!(
        served["samples"].as_array().map(Vec::len),
        Some(30),
        "{served}"
    );
    assert_eq!(served, samples_of(&leader).await);
    store.close().await;
}

/// A pipeline printing 200 numbered lines (some on stderr) and a 40,000-character line
/// (three Docker log entries), then, once the test writes `go`, 200 more lines.
const LOUD_THEN_WAITS: &str = r#"
import os, sys, time
for i in range(1, 201):
    print(f"line {i}", flush=True)
    if i % 50 == 0:
        print(f"err {i}", file=sys.stderr, flush=True)
print("x" * 40000, flush=True)
deadline = time.time() + 600
while not os.path.exists("go"):
    if time.time() > deadline:
        sys.exit(3)
    time.sleep(0.05)
for i in range(201, 401):
    print(f"line {i}", flush=True)
"#;

fn replica_options(url: &str, data_dir: Option<std::path::PathBuf>) -> OperatorOptions {
    OperatorOptions {
        args: vec![
            "--database".into(),
            url.to_owned(),
            "--lease-ttl".into(),
            "6s".into(),
            "--lease-renew-interval".into(),
            "1s".into(),
        ],
        data_dir,
        ..OperatorOptions::default()
    }
}

async fn leads(op: &Operator) -> bool {
    let (status, body) = op.get_text("/readyz").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).expect("readyz JSON")["leader"]["self"] == true
}

/// How many `x` the stdout lines of the 40,000-character line hold (Docker splits it).
fn long_line_length(stdout: &[String]) -> usize {
    stdout
        .iter()
        .filter(|l| l.starts_with('x'))
        .map(|l| l.chars().filter(|c| *c == 'x').count())
        .sum()
}

/// The samples of a run as `op` serves them.
async fn samples_of(op: &Operator, run: &str) -> Value {
    let (status, body) = op
        .get(&format!("/namespaces/default/runs/{run}/metrics"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["samples"].clone()
}

/// The text log of a run's first attempt as `op` serves it, without asserting on it.
async fn served_log(op: &Operator, run: &str) -> String {
    op.log(run, 1).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_replica_serves_a_runs_log_and_samples_as_the_leader_does() {
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let f = Fixture::new();
    f.write_pipeline("loud", LOUD_THEN_WAITS, "", "");
    let leader = f.start_operator(&replica_options(&url, None));
    leader
        .wait_until("the first replica to lead", WAIT, || async {
            leads(&leader).await.then_some(())
        })
        .await;
    let follower = f.start_operator(&replica_options(&url, Some(f.scratch("follower-data"))));
    assert!(!leads(&follower).await);
    leader.wait_for_pipeline("loud").await;

    let run = follower.create_run("loud", &[]).await;
    let client = reqwest::Client::new();
    let follow_url = follower.api(&format!("/namespaces/default/runs/{run}/log?follow=true"));
    let followed = {
        let (client, token, url) = (
            client.clone(),
            follower.token().to_owned(),
            follow_url.clone(),
        );
        tokio::spawn(async move { get_ok(&client, &url, Some(&token), None).await })
    };
    // While the run waits for `go`, the follower serves what it printed, and samples.
    follower
        .wait_until(
            "the follower to serve all the running run printed",
            WAIT,
            || async {
                let printed = stdout_lines(&served_log(&follower, &run).await);
                (printed.iter().any(|l| l == "line 200") && long_line_length(&printed) == 40_000)
                    .then_some(())
            },
        )
        .await;
    follower
        .wait_until("the follower to serve a sample", WAIT, || async {
            samples_of(&follower, &run)
                .await
                .as_array()
                .is_some_and(|s| !s.is_empty())
                .then_some(())
        })
        .await;

    std::fs::write(f.pipelines_dir().join("loud/go"), "").expect("release the run");
    let finished = follower.wait_succeeded(&run).await;
    let on_leader = served_log(&leader, &run).await;
    let on_follower = served_log(&follower, &run).await;
    assert!(
        on_follower == on_leader,
        "the follower serves the leader's log byte for byte"
    );
    let printed: Vec<String> = stdout_lines(&on_leader);
    let numbered: Vec<String> = (1..=400).map(|i| format!("line {i}")).collect();
    let without_long: Vec<String> = printed
        .iter()
        .filter(|l| !l.starts_with('x'))
        .cloned()
        .collect();
    assert_eq!(without_long, numbered, "every stdout line once, in order");
    assert_eq!(long_line_length(&printed), 40_000);
    assert_eq!(
        on_leader
            .lines()
            .filter(|l| l.contains(" stderr err "))
            .count(),
        4
    );

    let stored_lines: Vec<String> = on_leader.lines().map(str::to_owned).collect();
    let body = tokio::time::timeout(WAIT, followed)
        .await
        .expect("the follow ended")
        .expect("follow task");
    assert_followed(&sse_events(&body), 1, &stored_lines, "Succeeded");
    // Opened after the end, from the store only.
    let after = get_ok(&client, &follow_url, Some(follower.token()), None).await;
    assert_followed(&sse_events(&after), 1, &stored_lines, "Succeeded");
    assert_eq!(
        samples_of(&follower, &run).await,
        samples_of(&leader, &run).await,
        "samples as the leader serves them"
    );

    // Deleting the run through the follower deletes what was shipped of it.
    let db = PgPool::connect(&url).await.expect("connect");
    let run_uid = uid(&finished).to_owned();
    assert!(!chunks(&db, &run_uid).await.is_empty());
    follower.delete_run(&run).await;
    assert!(
        chunks(&db, &run_uid).await.is_empty(),
        "the chunks of a deleted run are gone"
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_restores_the_log_and_stores_every_line_once() {
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let f = Fixture::new();
    f.write_pipeline("waits", WAITS_FOR_GO, "", "");
    let first = f.start_operator(&replica_options(&url, None));
    first
        .wait_until("the first replica to lead", WAIT, || async {
            leads(&first).await.then_some(())
        })
        .await;
    let second_dir = f.scratch("second-data");
    let second = f.start_operator(&replica_options(&url, Some(second_dir.clone())));
    first.wait_for_pipeline("waits").await;
    let run = second.create_run("waits", &[]).await;
    // The second replica serves the first 20 lines from the store: they were shipped.
    second
        .wait_until("line 20 to be shipped", WAIT, || async {
            stdout_lines(&served_log(&second, &run).await)
                .iter()
                .any(|l| l == "line 20")
                .then_some(())
        })
        .await;
    first.kill_9();
    second
        .wait_until(
            "the second replica to take the lease over",
            WAIT,
            || async { leads(&second).await.then_some(()) },
        )
        .await;
    std::fs::write(f.pipelines_dir().join("waits/go"), "").expect("release the run");
    let finished = second.wait_succeeded(&run).await;
    let served = served_log(&second, &run).await;
    assert_eq!(
        stdout_lines(&served),
        forty_lines(),
        "every line once, in order"
    );

    // The new leader's file was restored from the store and continued: the store holds
    // that file, byte for byte, nothing twice.
    let run_uid = uid(&finished);
    let local = std::fs::read(second_dir.join("runs").join(run_uid).join("attempt-1.log"))
        .expect("the new leader's log");
    let store = Store::connect(&url).await.expect("open the store");
    assert!(
        stored_bytes(&store, run_uid, "attempt-1.log").await == local,
        "the store holds the new leader's file"
    );
    assert!(served.as_bytes() == local);
    // It did restore: the second replica (the fixture's second start) says so in its log.
    let second_log = f
        .data_dir()
        .parent()
        .map(|dir| dir.join("serve-1.log"))
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    assert!(
        second_log.contains("restored run output from the store"),
        "no restore in the new leader's log:\n{}",
        second.log_tail()
    );
    let samples = stored_bytes(&store, run_uid, "metrics.jsonl").await;
    let samples: Vec<&[u8]> = samples
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut distinct = samples.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), samples.len(), "no sample stored twice");
    store.close().await;
}
