//! The run reconciler on a real Docker engine, reached only through the project's
//! HAProxy socket proxy: lifecycle paths (success, limits, OOM, timeout, retries,
//! cancel), concurrency queueing, the CLI, environment layers, a real third-party
//! requirement, kill -9 restarts, garbage, name conflicts, proxy rules and Docker
//! outages. Each test has its own proxy, operator instance, data dir and store (see
//! `support::docker`), so tests run in parallel and twice in a row. The store is SQLite,
//! or PostgreSQL with `FLOTILLA_TEST_STORE=postgres` (`make test` runs both).

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla::controller::runtime::{ContainerRuntime, ContainerSpec, Created, labels};
use flotilla::docker::DockerRuntime;
use serde_json::{Value, json};
use support::docker::{
    Fixture, MANAGED_BY, OperatorOptions, RUN_TIMEOUT, RUNNER_IMAGE, RunningCounter, attempts,
    docker, docker_ok, inspect_container, phase, reason, stdout_lines, time, uid,
};

const HELLO: &str = "print(\"hello from flotilla\", flush=True)\n";

/// Like [`HELLO`], plus one line on stderr.
const HELLO_BOTH_STREAMS: &str = "import sys\nprint(\"hello from flotilla\", flush=True)\nprint(\"to stderr\", file=sys.stderr, flush=True)\n";

/// Prints `line 1` … `line N` (N from `LINES`, default 30), one every `EVERY` seconds
/// (default 0.2).
const NUMBERED: &str = r#"import os, time
count = int(os.environ.get("LINES", "30"))
every = float(os.environ.get("EVERY", "0.2"))
for i in range(1, count + 1):
    print(f"line {i}", flush=True)
    time.sleep(every)
"#;

/// Prints `start`, sleeps `SLEEP` seconds.
const SLEEP_FROM_ENV: &str = r#"import os, time
print("start", flush=True)
time.sleep(float(os.environ.get("SLEEP", "3")))
"#;

/// Prints a tick every half second for half a minute.
const SLOW: &str = r#"import time
for i in range(60):
    print(f"tick {i}", flush=True)
    time.sleep(0.5)
"#;

const EXITS_THREE: &str = "import sys\nprint(\"failing on purpose\", flush=True)\nsys.exit(3)\n";

fn numbered(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("line {i}")).collect()
}

fn attempt_log_path(fixture: &Fixture, run: &Value, attempt: u32) -> std::path::PathBuf {
    fixture
        .data_dir()
        .join("runs")
        .join(uid(run))
        .join(format!("attempt-{attempt}.log"))
}

fn stored_lines(fixture: &Fixture, run: &Value, attempt: u32) -> Vec<String> {
    stdout_lines(
        &std::fs::read_to_string(attempt_log_path(fixture, run, attempt)).unwrap_or_default(),
    )
}

fn assert_succeeded_once(run: &Value) {
    assert_eq!(phase(run), "Succeeded", "{run:#}");
    let attempts = attempts(run);
    assert_eq!(
        attempts.len(),
        1,
        "exactly one container (attempt) for the run: {run:#}"
    );
    assert_eq!(attempts[0]["exitCode"], 0, "{run:#}");
}

// ---------------------------------------------------------------------------------------
// Lifecycle

#[tokio::test]
async fn hello_succeeds_with_its_output_stored_and_its_container_removed() {
    let fixture = Fixture::new();
    fixture.write_pipeline("hello", HELLO_BOTH_STREAMS, "", "");
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("hello").await;

    let name = operator.create_run("hello", &[]).await;
    let run = operator.wait_finished(&name).await;
    assert_succeeded_once(&run);
    let attempt = &attempts(&run)[0];
    assert_eq!(attempt["number"], 1);
    assert!(
        attempt["setupSeconds"].as_f64().is_some(),
        "setupSeconds must be recorded: {run:#}"
    );
    assert!(
        attempt["startedAt"].is_string() && attempt["finishedAt"].is_string(),
        "{run:#}"
    );

    let api_log = operator.log(&name, 1).await;
    assert_eq!(
        stdout_lines(&api_log),
        ["hello from flotilla"],
        "log: {api_log}"
    );
    assert!(
        api_log
            .lines()
            .any(|l| l.split_once(' ').map(|(_, rest)| rest) == Some("stderr to stderr")),
        "stderr lines are stored tagged `stderr`: {api_log}"
    );
    assert_eq!(
        stored_lines(&fixture, &run, 1),
        ["hello from flotilla"],
        "the log file under the data dir"
    );
    let container = attempt["container"].as_str().expect("container name");
    assert_eq!(container, format!("flotilla-{}-1", uid(&run)));
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn limits_and_hardening_are_applied_to_the_container() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "limited",
        SLEEP_FROM_ENV,
        "",
        "resources: { memory: 64Mi, cpus: \"0.5\", pids: 64 }",
    );
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("limited").await;
    let name = operator.create_run("limited", &[("SLEEP", "5")]).await;
    let container = operator.wait_running_container(&name).await;
    let run = operator.run(&name).await;

    let inspected = inspect_container(&container).expect("the running container");
    let host = &inspected["HostConfig"];
    let mib64 = 64 * 1024 * 1024;
    assert_eq!(host["Memory"], mib64, "{host:#}");
    assert_eq!(
        host["MemorySwap"], mib64,
        "memory = memswap (no swap): {host:#}"
    );
    assert_eq!(host["NanoCpus"], 500_000_000, "{host:#}");
    assert_eq!(host["PidsLimit"], 64, "{host:#}");
    assert_eq!(host["CapDrop"], json!(["ALL"]), "{host:#}");
    assert_eq!(
        host["SecurityOpt"],
        json!(["no-new-privileges"]),
        "{host:#}"
    );
    assert_eq!(host["ReadonlyRootfs"], true, "{host:#}");
    assert!(host["Tmpfs"].get("/tmp").is_some(), "tmpfs /tmp: {host:#}");
    assert_eq!(inspected["Config"]["User"], "10001:10001");
    assert_eq!(inspected["Config"]["WorkingDir"], "/pipeline");

    let folder = std::fs::canonicalize(fixture.pipelines_dir().join("limited")).expect("folder");
    let mounts = inspected["Mounts"].as_array().expect("mounts");
    let code = mounts
        .iter()
        .find(|m| m["Destination"] == "/pipeline")
        .unwrap_or_else(|| panic!("no /pipeline mount: {mounts:#?}"));
    assert_eq!(
        code["RW"], false,
        "pipeline code is mounted read-only: {code}"
    );
    assert_eq!(code["Source"], folder.display().to_string());
    let cache = mounts
        .iter()
        .find(|m| m["Destination"] == "/cache/uv")
        .unwrap_or_else(|| panic!("no uv cache mount: {mounts:#?}"));
    assert_eq!(cache["RW"], true, "{cache}");

    let container_labels = &inspected["Config"]["Labels"];
    assert_eq!(container_labels[labels::RUN], uid(&run));
    assert_eq!(
        container_labels[labels::RUN_NAME],
        format!("default/{name}")
    );
    assert_eq!(container_labels[labels::PIPELINE], "limited");
    assert_eq!(container_labels[labels::ATTEMPT], "1");
    assert_eq!(container_labels[labels::MANAGED_BY], fixture.instance());

    let run = operator.wait_finished(&name).await;
    assert_succeeded_once(&run);
    let (status, metrics) = operator
        .get(&format!("/namespaces/default/runs/{name}/metrics"))
        .await;
    assert_eq!(status, 200, "{metrics}");
    let samples = metrics["samples"].as_array().expect("samples");
    assert!(
        !samples.is_empty(),
        "a 5 s run is sampled every 2 s: {metrics}"
    );
    for sample in samples {
        let mut fields: Vec<&str> = sample
            .as_object()
            .expect("a sample is an object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["at", "cpu_percent", "memory_bytes"],
            "the fields of a sample: {metrics}"
        );
    }
    assert!(
        samples
            .iter()
            .any(|s| s["memory_bytes"].as_u64().is_some_and(|b| b > 0)),
        "samples hold memory use: {metrics}"
    );
}

#[tokio::test]
async fn a_run_past_its_memory_limit_fails_oom_killed() {
    let fixture = Fixture::new();
    let main = "print(\"allocating past the limit\", flush=True)\nblocks = []\nfor _ in range(256):\n    blocks.append(b\"\\x01\" * (8 << 20))\nprint(\"unreachable\", flush=True)\n";
    fixture.write_pipeline("oom", main, "", "resources: { memory: 64Mi }");
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("oom").await;
    let name = operator.create_run("oom", &[]).await;
    let run = operator.wait_finished(&name).await;
    assert_eq!(phase(&run), "Failed", "{run:#}");
    assert_eq!(reason(&run), "OOMKilled", "{run:#}");
    let attempt = &attempts(&run)[0];
    assert_eq!(attempt["exitCode"], 137, "{run:#}");
    assert_eq!(attempt["oomKilled"], true, "{run:#}");
    let log = operator.log(&name, 1).await;
    assert!(
        !stdout_lines(&log).contains(&"unreachable".to_owned()),
        "{log}"
    );
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_run_past_its_timeout_is_stopped_deadline_exceeded() {
    let fixture = Fixture::new();
    let main = "import time\nprint(\"sleeping\", flush=True)\ntime.sleep(60)\n";
    fixture.write_pipeline("too-slow", main, "", "timeout: 3s");
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("too-slow").await;
    let name = operator.create_run("too-slow", &[]).await;
    let run = operator.wait_finished(&name).await;
    assert_eq!(phase(&run), "Failed", "{run:#}");
    assert_eq!(reason(&run), "DeadlineExceeded", "{run:#}");
    assert_eq!(attempts(&run).len(), 1, "{run:#}");
    assert_eq!(attempts(&run)[0]["reason"], "DeadlineExceeded", "{run:#}");
    assert_eq!(stdout_lines(&operator.log(&name, 1).await), ["sleeping"]);
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn failing_run_is_retried_with_backoff_then_fails() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "failing",
        EXITS_THREE,
        "",
        "retries: { limit: 2, backoff: { kind: fixed, initial: 1s } }",
    );
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("failing").await;
    let name = operator.create_run("failing", &[]).await;
    let run = operator.wait_finished(&name).await;
    assert_eq!(phase(&run), "Failed", "{run:#}");
    assert_eq!(reason(&run), "BackoffLimitExceeded", "{run:#}");
    let attempts = attempts(&run);
    assert_eq!(attempts.len(), 3, "1 attempt + 2 retries: {run:#}");
    for (index, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["number"], index + 1, "{run:#}");
        assert_eq!(attempt["exitCode"], 3, "{run:#}");
        let log = operator.log(&name, index as u32 + 1).await;
        assert_eq!(
            stdout_lines(&log),
            ["failing on purpose"],
            "attempt {}",
            index + 1
        );
    }
    for pair in attempts.windows(2) {
        let finished = time(&pair[0]["finishedAt"]);
        let next_started = time(&pair[1]["startedAt"]);
        assert!(
            next_started - finished >= chrono::Duration::seconds(1),
            "attempt {} started before the 1 s backoff after attempt {} ended: {run:#}",
            pair[1]["number"],
            pair[0]["number"]
        );
    }
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn cancel_of_a_pending_and_of_a_running_run() {
    let fixture = Fixture::new();
    fixture.write_pipeline("slow", SLOW, "", "");
    let operator = fixture.start_operator(&OperatorOptions {
        max_concurrent_runs: Some(1),
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("slow").await;
    let holder = operator.create_run("slow", &[]).await;
    let container = operator.wait_running_container(&holder).await;
    let queued = operator.create_run("slow", &[]).await;
    operator
        .wait_until(
            "the second run to be Queued",
            Duration::from_secs(30),
            || async {
                let run = operator.run(&queued).await;
                (phase(&run) == "Pending" && reason(&run) == "Queued").then_some(())
            },
        )
        .await;

    let out = operator.cli(&["cancel", &queued], Duration::from_secs(30));
    assert!(
        out.status.success(),
        "flotilla cancel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cancelled = operator
        .wait_for_phase(&queued, &["Cancelled"], Duration::from_secs(30))
        .await;
    assert_eq!(reason(&cancelled), "Cancelled", "{cancelled:#}");
    assert!(
        attempts(&cancelled).is_empty(),
        "never started: {cancelled:#}"
    );
    assert_eq!(phase(&operator.run(&holder).await), "Running");

    operator.cancel(&holder).await;
    let run = operator
        .wait_for_phase(&holder, &["Cancelled"], RUN_TIMEOUT)
        .await;
    assert_eq!(reason(&run), "Cancelled", "{run:#}");
    let attempts = attempts(&run);
    assert_eq!(attempts.len(), 1, "{run:#}");
    let code = attempts[0]["exitCode"].as_i64();
    assert!(
        matches!(code, Some(143 | 137)),
        "SIGTERM (143) or SIGKILL after the grace period (137): {run:#}"
    );
    operator
        .wait_until(
            "the cancelled run's container to be removed",
            Duration::from_secs(30) + fixture.finished_container_kept_for(),
            || async { inspect_container(&container).is_none().then_some(()) },
        )
        .await;
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn cancel_during_retry_backoff_ends_the_run_at_once() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "failing",
        EXITS_THREE,
        "",
        "retries: { limit: 2, backoff: { kind: fixed, initial: 30s } }",
    );
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("failing").await;
    let name = operator.create_run("failing", &[]).await;
    operator
        .wait_until("the run to wait for its retry", RUN_TIMEOUT, || async {
            let run = operator.run(&name).await;
            (reason(&run) == "BackOff").then_some(())
        })
        .await;
    operator.cancel(&name).await;
    // Well inside the 30 s backoff: the cancel does not wait for the retry.
    let run = operator
        .wait_for_phase(&name, &["Cancelled"], Duration::from_secs(20))
        .await;
    assert_eq!(reason(&run), "Cancelled", "{run:#}");
    assert_eq!(
        attempts(&run).len(),
        1,
        "no attempt after the cancel: {run:#}"
    );
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_run_of_a_missing_pipeline_waits_then_starts_once_it_is_applied() {
    let fixture = Fixture::new();
    let operator = fixture.start_operator(&OperatorOptions::default());
    let name = operator.create_run("late", &[]).await;
    let waiting = operator
        .wait_until(
            "reason PipelineNotFound",
            Duration::from_secs(30),
            || async {
                let run = operator.run(&name).await;
                (reason(&run) == "PipelineNotFound").then_some(run)
            },
        )
        .await;
    assert_eq!(phase(&waiting), "Pending", "{waiting:#}");
    assert!(attempts(&waiting).is_empty());

    fixture.write_pipeline("late", HELLO, "", "");
    let run = operator.wait_finished(&name).await;
    assert_succeeded_once(&run);
    assert_eq!(
        stdout_lines(&operator.log(&name, 1).await),
        ["hello from flotilla"]
    );
}

#[tokio::test]
async fn a_missing_image_fails_the_run_with_image_not_found() {
    let fixture = Fixture::new();
    fixture.write_pipeline("no-image", HELLO, "", "image: flotilla/no-such-image:0.0.0");
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("no-image").await;
    let name = operator.create_run("no-image", &[]).await;
    let run = operator.wait_finished(&name).await;
    assert_eq!(phase(&run), "Failed", "{run:#}");
    assert_eq!(reason(&run), "ImageNotFound", "{run:#}");
    let message = run["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("flotilla/no-such-image:0.0.0"),
        "{message}"
    );
    assert!(fixture.containers().is_empty());
}

#[tokio::test]
async fn deleting_a_running_run_stops_its_container_before_its_slot_is_reused() {
    let fixture = Fixture::new();
    fixture.write_pipeline("slow", SLOW, "", "");
    fixture.write_pipeline("hello", HELLO, "", "");
    let operator = fixture.start_operator(&OperatorOptions {
        max_concurrent_runs: Some(1),
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("slow").await;
    operator.wait_for_pipeline("hello").await;
    let counter = RunningCounter::start(&[format!("{MANAGED_BY}={}", fixture.instance())]);
    let victim = operator.create_run("slow", &[]).await;
    let container = operator.wait_running_container(&victim).await;
    let next = operator.create_run("hello", &[]).await;
    operator
        .wait_until(
            "the second run to be Queued",
            Duration::from_secs(30),
            || async { (reason(&operator.run(&next).await) == "Queued").then_some(()) },
        )
        .await;

    operator.delete_run(&victim).await;
    operator
        .wait_until(
            "the deleted run's container to be removed (at the latest by the 30 s resync)",
            Duration::from_secs(75),
            || async { inspect_container(&container).is_none().then_some(()) },
        )
        .await;
    let run = operator.wait_finished(&next).await;
    assert_succeeded_once(&run);
    assert_eq!(
        counter.stop(),
        1,
        "with --max-concurrent-runs 1 the queued run must not run beside the deleted run's still-running container"
    );
}

// ---------------------------------------------------------------------------------------
// Concurrency

/// Creates runs one after another, each reconciled by the run controller (it started a
/// container or queued the run) before the next is created, in distinct milliseconds.
/// The queue orders the runs that asked for a slot by creation time (the store keeps
/// milliseconds), then by name, but a run the controller has not reconciled yet has not
/// asked: runs created faster than the controller reconciles them are admitted in work
/// queue order (measured: of e, d, c, b, a created within half a second of the start, a
/// and c started first). The API shows creationTimestamp in whole seconds, so the
/// millisecond wait uses the clock the operator shares with the test (same host): a run
/// is created before its create request answers, so once the clock is in a later
/// millisecond than that answer, the next run's creation time is later.
#[derive(Default)]
struct CreationOrder {
    answered: Option<chrono::DateTime<chrono::Utc>>,
}

impl CreationOrder {
    async fn create(&mut self, operator: &support::docker::Operator, body: Value) -> String {
        if let Some(answered) = self.answered {
            let next_millisecond =
                chrono::DateTime::from_timestamp_millis(answered.timestamp_millis() + 1)
                    .expect("a time");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while chrono::Utc::now() < next_millisecond {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the clock did not pass {next_millisecond}"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let run = operator.create_run_with(body).await;
        self.answered = Some(chrono::Utc::now());
        let name = run["metadata"]["name"]
            .as_str()
            .expect("created run has a name")
            .to_owned();
        operator
            .wait_until(
                &format!("the run controller to start or queue {name}"),
                RUN_TIMEOUT,
                || async {
                    let run = operator.run(&name).await;
                    (!attempts(&run).is_empty() || reason(&run) == "Queued").then_some(())
                },
            )
            .await;
        name
    }
}

/// Prints `start`, then waits until a file `open-$GATE` (default `open`) appears next to
/// it: the pipeline folder is bind-mounted, so the test opens the gate from the host and
/// decides when each run ends. Fails after two minutes.
const WAITS_FOR_THE_GATE: &str = r#"import os, sys, time
print("start", flush=True)
name = "open-" + os.environ["GATE"] if "GATE" in os.environ else "open"
gate = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
for _ in range(1200):
    if os.path.exists(gate):
        sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
"#;

/// Opens the gate `open-<gate>` of the pipeline folder `pipeline`.
fn open_gate(fixture: &Fixture, pipeline: &str, gate: &str) {
    std::fs::write(
        fixture
            .pipelines_dir()
            .join(pipeline)
            .join(format!("open-{gate}")),
        "",
    )
    .expect("gate file");
}

/// Asserts that none of `names` has started an attempt.
async fn assert_waiting(operator: &support::docker::Operator, names: &[&str], why: &str) {
    for name in names {
        let run = operator.run(name).await;
        assert!(
            phase(&run) == "Pending" && attempts(&run).is_empty(),
            "{name} waits ({why}): {run:#}"
        );
    }
}

#[tokio::test]
async fn global_limit_queues_runs_in_creation_order() {
    let fixture = Fixture::new();
    fixture.write_pipeline("queued", WAITS_FOR_THE_GATE, "", "");
    let operator = fixture.start_operator(&OperatorOptions {
        max_concurrent_runs: Some(2),
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("queued").await;
    let counter = RunningCounter::start(&[format!("{MANAGED_BY}={}", fixture.instance())]);
    // Names run against creation order, so a queue ordered by name would show. Each run
    // ends only when the test opens its gate, so which run a freed slot admits does not
    // depend on timing.
    let mut created = CreationOrder::default();
    for name in ["fifo-e", "fifo-d", "fifo-c", "fifo-b", "fifo-a"] {
        created
            .create(
                &operator,
                json!({
                    "metadata": { "name": name },
                    "spec": { "pipelineRef": { "name": "queued" }, "env": { "GATE": name } }
                }),
            )
            .await;
    }
    operator.wait_running_container("fifo-e").await;
    operator.wait_running_container("fifo-d").await;
    assert_waiting(
        &operator,
        &["fifo-c", "fifo-b", "fifo-a"],
        "two runs hold both slots",
    )
    .await;

    // The second run ends first: its slot goes to the oldest waiting run.
    open_gate(&fixture, "queued", "fifo-d");
    assert_succeeded_once(&operator.wait_finished("fifo-d").await);
    operator.wait_running_container("fifo-c").await;
    assert_waiting(&operator, &["fifo-b", "fifo-a"], "fifo-e and fifo-c run").await;

    open_gate(&fixture, "queued", "fifo-e");
    assert_succeeded_once(&operator.wait_finished("fifo-e").await);
    operator.wait_running_container("fifo-b").await;
    assert_waiting(&operator, &["fifo-a"], "fifo-c and fifo-b run").await;

    open_gate(&fixture, "queued", "fifo-c");
    assert_succeeded_once(&operator.wait_finished("fifo-c").await);
    operator.wait_running_container("fifo-a").await;

    for name in ["fifo-b", "fifo-a"] {
        open_gate(&fixture, "queued", name);
        assert_succeeded_once(&operator.wait_finished(name).await);
    }
    assert_eq!(
        counter.stop(),
        2,
        "at most 2 containers of the instance run at once, and 2 did"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_created_in_a_burst_start_in_creation_order() {
    // Eight runs are created at once, faster than the controller reconciles them:
    // several workers look at them in no particular order, yet with one slot they must
    // start in queue order: creation time (milliseconds, as stored), then name.
    let fixture = Fixture::new();
    fixture.write_pipeline("burst", "print('ran', flush=True)\n", "", "");
    let operator = fixture.start_operator(&OperatorOptions {
        max_concurrent_runs: Some(1),
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("burst").await;
    let names: Vec<String> = (0..8).map(|i| format!("burst-{i}")).collect();
    futures::future::join_all(names.iter().map(|name| {
        operator.create_run_with(json!({
            "metadata": { "name": name },
            "spec": { "pipelineRef": { "name": "burst" } }
        }))
    }))
    .await;
    // The queue order, from the store itself.
    let queue_order = fixture
        .store()
        .query_text("SELECT name FROM objects WHERE kind = 'Run' ORDER BY created_at, name")
        .await;
    let mut started = Vec::new();
    for name in &names {
        let run = operator.wait_finished(name).await;
        assert_succeeded_once(&run);
        started.push((time(&attempts(&run)[0]["startedAt"]), name.clone()));
    }
    started.sort();
    assert_eq!(
        started.into_iter().map(|(_, n)| n).collect::<Vec<_>>(),
        queue_order,
        "start order with one slot"
    );
}

#[tokio::test]
async fn max_instances_queues_runs_of_its_pipeline_only() {
    let fixture = Fixture::new();
    fixture.write_pipeline("single", WAITS_FOR_THE_GATE, "", "maxInstances: 1");
    fixture.write_pipeline("other", SLEEP_FROM_ENV, "", "");
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("single").await;
    operator.wait_for_pipeline("other").await;
    let counter = RunningCounter::start(&[
        format!("{MANAGED_BY}={}", fixture.instance()),
        format!("{}=single", labels::PIPELINE),
    ]);
    let mut created = CreationOrder::default();
    let mut singles = Vec::new();
    for _ in 0..3 {
        singles.push(
            created
                .create(
                    &operator,
                    json!({ "spec": { "pipelineRef": { "name": "single" } } }),
                )
                .await,
        );
    }
    let other = operator.create_run("other", &[("SLEEP", "1")]).await;

    // While the first `single` holds the pipeline's one instance (it cannot finish before
    // the gate opens), a run of another pipeline starts and finishes: it is not held
    // behind `single`'s queue.
    let other_run = operator.wait_finished(&other).await;
    assert_succeeded_once(&other_run);
    operator.wait_running_container(&singles[0]).await;
    for queued in &singles[1..] {
        let run = operator.run(queued).await;
        assert!(
            phase(&run) == "Pending" && attempts(&run).is_empty(),
            "{queued} waits while {} holds the only instance: {run:#}",
            singles[0]
        );
    }

    std::fs::write(fixture.pipelines_dir().join("single").join("open"), "").expect("gate file");
    let mut starts = Vec::new();
    for name in &singles {
        let run = operator.wait_finished(name).await;
        assert_succeeded_once(&run);
        starts.push(time(&attempts(&run)[0]["startedAt"]));
    }
    assert_eq!(
        counter.stop(),
        1,
        "maxInstances: 1 lets one run of `single` at a time"
    );
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "runs of `single` start in creation order: {starts:?}"
    );
}

// ---------------------------------------------------------------------------------------
// CLI and environment

#[tokio::test]
async fn cli_run_wait_exits_with_the_run_exit_code_and_logs_follow_ends_with_the_run() {
    let fixture = Fixture::new();
    fixture.write_pipeline("hello", HELLO, "", "");
    fixture.write_pipeline(
        "exits-three",
        EXITS_THREE,
        "",
        "retries: { limit: 1, backoff: { kind: fixed, initial: 1s } }",
    );
    fixture.write_pipeline(
        "ticker",
        NUMBERED,
        "",
        "env: { LINES: \"5\", EVERY: \"0.3\" }",
    );
    let operator = fixture.start_operator(&OperatorOptions::default());
    for pipeline in ["hello", "exits-three", "ticker"] {
        operator.wait_for_pipeline(pipeline).await;
    }

    let ok = operator.cli(&["run", "hello", "--wait"], RUN_TIMEOUT);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.lines().any(|l| l == "hello from flotilla"),
        "stdout: {stdout}"
    );

    // Followed across both attempts; the exit code is the last attempt's.
    let failed = operator.cli(&["run", "exits-three", "--wait"], RUN_TIMEOUT);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(
        failed.status.code(),
        Some(3),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| *l == "failing on purpose")
            .count(),
        2,
        "the output of both attempts: {stdout}"
    );

    let name = operator.create_run("ticker", &[]).await;
    let follower = operator.spawn_cli(&["logs", "-f", &name]);
    let out = follower.wait(RUN_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "logs -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(
        lines,
        numbered(5),
        "logs -f printed every line once: {stdout}"
    );
    let run = operator.run(&name).await;
    assert_eq!(
        phase(&run),
        "Succeeded",
        "logs -f exits once the run ended: {run:#}"
    );
}

#[tokio::test]
async fn env_layers_merge_and_uv_settings_pass_through() {
    let fixture = Fixture::new();
    let main = "import os\nfor key in (\"A\", \"B\", \"C\", \"UV_SOMETHING\"):\n    print(f\"{key}={os.environ.get(key)}\", flush=True)\n";
    fixture.write_pipeline(
        "env-merge",
        main,
        "",
        "env: { A: pipeline, B: pipeline, C: pipeline }",
    );
    fixture.write_manifest(
        "schedule.yaml",
        "apiVersion: flotilla.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: env-schedule\nspec:\n  pipelineRef: { name: env-merge }\n  every: 1h\n  suspend: true\n  env: { B: schedule, C: schedule }\n",
    );
    let operator = fixture.start_operator(&OperatorOptions {
        env: vec![("UV_SOMETHING".into(), "x".into())],
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("env-merge").await;
    operator.wait_for_object("schedules", "env-schedule").await;
    let run = operator
        .create_run_with(json!({ "spec": {
            "pipelineRef": { "name": "env-merge" },
            "scheduleRef": { "name": "env-schedule" },
            "env": { "C": "run" }
        }}))
        .await;
    let name = run["metadata"]["name"].as_str().expect("name").to_owned();
    let run = operator.wait_finished(&name).await;
    assert_succeeded_once(&run);
    assert_eq!(
        stdout_lines(&operator.log(&name, 1).await),
        ["A=pipeline", "B=schedule", "C=run", "UV_SOMETHING=x"]
    );
}

/// Downloads the `six==1.16.0` wheel into `dir` with the host's pip.
fn download_six(dir: &std::path::Path) {
    let download = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "six==1.16.0",
            "-d",
        ])
        .arg(dir)
        .output()
        .expect("run python3 -m pip (python3 with pip is needed to build the wheelhouse)");
    assert!(
        download.status.success(),
        "pip download six==1.16.0 failed (PyPI must be reachable from the host): {}",
        String::from_utf8_lossy(&download.stderr)
    );
}

const USES_SIX: &str = "import six\nprint(f\"six {six.__version__}\", flush=True)\n";

/// Runs `uses-six` twice (cold, then warm uv cache): both succeed, print the version and
/// record a setup time that reaches the user's first line.
async fn run_six_twice(operator: &support::docker::Operator) {
    for round in ["first (cold uv cache)", "second (warm uv cache)"] {
        let name = operator.create_run("uses-six", &[]).await;
        let run = operator.wait_finished(&name).await;
        let log = operator.log(&name, 1).await;
        assert_eq!(
            phase(&run),
            "Succeeded",
            "{round} run: {run:#}\nlog:\n{log}"
        );
        assert_eq!(stdout_lines(&log), ["six 1.16.0"], "{log}");
        let attempt = &attempts(&run)[0];
        let setup = attempt["setupSeconds"].as_f64();
        eprintln!("{round} run: setupSeconds = {setup:?}");
        let setup = setup.unwrap_or_else(|| panic!("setupSeconds recorded: {run:#}"));
        // Setup lasts until the user's first line, not until uv's own "Installed 1
        // package" on stderr: at least until the first stdout line.
        let first_user_line = log
            .lines()
            .find(|l| l.split(' ').nth(1) == Some("stdout"))
            .and_then(|l| l.split(' ').next())
            .map(|t| time(&Value::String(t.to_owned())))
            .expect("a stdout line");
        let to_user_line = (first_user_line - time(&attempt["startedAt"])).num_milliseconds();
        assert!(
            setup * 1000.0 >= (to_user_line - 1) as f64,
            "{round} run: setupSeconds {setup} ends before the user's first line ({to_user_line} ms after the start)\nlog:\n{log}"
        );
    }
}

#[tokio::test]
async fn a_third_party_requirement_installs_offline_from_a_wheelhouse() {
    let fixture = Fixture::new();
    let wheels = fixture.scratch("wheelhouse");
    download_six(&wheels);
    fixture.write_pipeline("uses-six", USES_SIX, "six==1.16.0\n", "");
    let operator = fixture.start_operator(&OperatorOptions {
        wheelhouse: Some(wheels),
        env: vec![("UV_OFFLINE".into(), "1".into())],
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("uses-six").await;
    run_six_twice(&operator).await;
}

/// Fast-Flow's lock file wins over `requirements.txt`: the ranges ask for a version the
/// offline wheelhouse does not hold, the lock pins the one it does; the run only succeeds
/// (printing that version) when uv installs from the lock.
#[tokio::test]
async fn requirements_txt_lock_is_used_in_preference_to_requirements_txt() {
    let fixture = Fixture::new();
    let wheels = fixture.scratch("wheelhouse");
    download_six(&wheels);
    fixture.write_pipeline("uses-six", USES_SIX, "six>=1.17\n", "");
    std::fs::write(
        fixture
            .pipelines_dir()
            .join("uses-six")
            .join("requirements.txt.lock"),
        "# uv pip compile requirements.txt -o requirements.txt.lock\nsix==1.16.0\n",
    )
    .expect("write the lock file");
    let operator = fixture.start_operator(&OperatorOptions {
        wheelhouse: Some(wheels),
        env: vec![("UV_OFFLINE".into(), "1".into())],
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("uses-six").await;
    let (run, log) = run_to_end(&operator, "uses-six").await;
    assert_eq!(phase(&run), "Succeeded", "{run:#}\nlog:\n{log}");
    assert_eq!(stdout_lines(&log), ["six 1.16.0"], "{log}");
}

/// The pyproject.toml of a uv project needing `six==1.16.0`.
const SIX_PROJECT: &str = "[project]\nname = \"uses-six\"\nversion = \"0.1.0\"\nrequires-python = \">=3.9\"\ndependencies = [\"six==1.16.0\"]\n";

/// Locks [`SIX_PROJECT`] with the runner image's uv against the wheelhouse (offline,
/// as runs install) and answers its `uv.lock` and the `pylock.toml` uv exports from it.
fn lock_six_project(wheels: &std::path::Path) -> (String, String) {
    let script = format!(
        "set -e; mkdir /tmp/p; cd /tmp/p; printf '%s' '{SIX_PROJECT}' > pyproject.toml; \
         uv lock --quiet --offline --find-links /wheels; cat uv.lock; echo '=====8<====='; \
         uv export --quiet --frozen --no-emit-project --format pylock.toml"
    );
    let wheels_mount = format!("{}:/wheels:ro", wheels.display());
    let output = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "10001:10001",
        "--tmpfs",
        "/tmp:exec",
        "-e",
        "UV_CACHE_DIR=/tmp/uv",
        "-v",
        &wheels_mount,
        "--entrypoint",
        "sh",
        RUNNER_IMAGE,
        "-c",
        &script,
    ]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "uv lock failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (uv_lock, pylock) = text.split_once("=====8<=====\n").expect("both files");
    (uv_lock.to_owned(), pylock.to_owned())
}

/// A uv project's `uv.lock` (with its pyproject.toml) and a PEP 751 `pylock.toml` are
/// installed in preference to `requirements.txt`: its range asks for a version the
/// offline wheelhouse does not hold, each lock pins the one it does. The project's
/// folder stays read-only (no `.venv` is made in it).
#[tokio::test]
async fn uv_lock_and_pylock_toml_are_used_in_preference_to_requirements_txt() {
    let fixture = Fixture::new();
    let wheels = fixture.scratch("wheelhouse");
    download_six(&wheels);
    let (uv_lock, pylock) = lock_six_project(&wheels);
    assert!(uv_lock.contains("name = \"six\""), "{uv_lock}");
    assert!(pylock.contains("lock-version"), "{pylock}");
    let projects = [
        (
            "six-uv-project",
            vec![
                ("uv.lock", uv_lock.as_str()),
                ("pyproject.toml", SIX_PROJECT),
            ],
        ),
        ("six-pylock", vec![("pylock.toml", pylock.as_str())]),
    ];
    for (name, files) in &projects {
        fixture.write_pipeline(name, USES_SIX, "six>=1.17\n", "");
        for (file, content) in files {
            std::fs::write(fixture.pipelines_dir().join(name).join(file), content)
                .expect("write a lock");
        }
    }
    let operator = fixture.start_operator(&OperatorOptions {
        wheelhouse: Some(wheels),
        env: vec![("UV_OFFLINE".into(), "1".into())],
        ..OperatorOptions::default()
    });
    for ((name, _), file) in projects.iter().zip(["uv.lock", "pylock.toml"]) {
        operator.wait_for_pipeline(name).await;
        let (run, log) = run_to_end(&operator, name).await;
        assert_eq!(phase(&run), "Succeeded", "{name}: {run:#}\nlog:\n{log}");
        assert_eq!(stdout_lines(&log), ["six 1.16.0"], "{name}: {log}");
        // The versions that ran are recorded on the attempt and the pipeline.
        let packages = &attempts(&run)[0]["packages"];
        assert_eq!(packages["file"], file, "{run:#}");
        assert_eq!(packages["requirements"], json!(["six==1.16.0"]), "{run:#}");
        assert_eq!(packages["pinned"], true);
        let path = format!("/namespaces/default/pipelines/{name}");
        operator
            .wait_until("the pipeline's packages", RUN_TIMEOUT, || async {
                let (_, pipeline) = operator.get(&path).await;
                (pipeline["status"]["packages"] == *packages).then_some(())
            })
            .await;
        let described = operator.cli(&["describe", "pipeline", name], RUN_TIMEOUT);
        let text = String::from_utf8_lossy(&described.stdout);
        assert!(
            text.contains(&format!("From:         {file} (every version pinned)"))
                && text.contains("six==1.16.0"),
            "{text}"
        );
    }
}

/// Creates a run of `pipeline` and waits for its end; returns it with its first
/// attempt's stored log.
async fn run_to_end(operator: &support::docker::Operator, pipeline: &str) -> (Value, String) {
    let name = operator.create_run(pipeline, &[]).await;
    let run = operator.wait_finished(&name).await;
    let log = operator.log(&name, 1).await;
    (run, log)
}

/// Fast-Flow ran pipelines that set no `python_version` on its default Python (3.11):
/// imported ones do the same here, `--default-python` changes it for all of them, and
/// native pipelines keep the image's Python.
#[tokio::test]
async fn imported_pipelines_without_python_version_run_the_default_python() {
    const VERSION: &str =
        "import sys\nprint(f\"python {sys.version_info[0]}.{sys.version_info[1]}\", flush=True)\n";
    let fixture = Fixture::new();
    let folder = fixture.pipelines_dir().join("ff-etl");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(folder.join("main.py"), VERSION).expect("main.py");
    std::fs::write(
        folder.join("pipeline.json"),
        r#"{"description": "from Fast-Flow"}"#,
    )
    .expect("pipeline.json");
    fixture.write_pipeline("native", VERSION, "", "");
    let offline = vec![
        ("UV_OFFLINE".to_owned(), "1".to_owned()),
        ("UV_PYTHON_DOWNLOADS".to_owned(), "never".to_owned()),
    ];
    let operator = fixture.start_operator(&OperatorOptions {
        env: offline.clone(),
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("ff-etl").await;
    let (run, log) = run_to_end(&operator, "ff-etl").await;
    assert_eq!(phase(&run), "Succeeded", "{run:#}\n{log}");
    assert_eq!(stdout_lines(&log), ["python 3.11"], "{log}");
    drop(operator);

    // A Python this image lacks (and may not download): the import asks for it and
    // fails saying so; the native pipeline is not affected.
    let operator = fixture.start_operator(&OperatorOptions {
        env: offline,
        args: vec!["--default-python".into(), "3.99".into()],
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("ff-etl").await;
    let (run, log) = run_to_end(&operator, "ff-etl").await;
    assert_eq!(phase(&run), "Failed", "{run:#}\n{log}");
    assert!(
        log.contains("3.99"),
        "uv names the Python it could not find: {log}"
    );
    let (run, _) = run_to_end(&operator, "native").await;
    assert_eq!(phase(&run), "Succeeded", "{run:#}");
}

/// Fast-Flow stopped runs of pipelines without `timeout` after its CONTAINER_TIMEOUT:
/// imported ones do the same here (`--default-timeout`, or CONTAINER_TIMEOUT itself),
/// and a native pipeline without timeout is not limited by it.
#[tokio::test]
async fn imported_pipelines_without_timeout_stop_at_the_default_timeout() {
    const SLEEPS: &str = "import time\nprint(\"start\", flush=True)\ntime.sleep(120)\n";
    let fixture = Fixture::new();
    let folder = fixture.pipelines_dir().join("ff-slow");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(folder.join("main.py"), SLEEPS).expect("main.py");
    std::fs::write(
        folder.join("pipeline.json"),
        r#"{"python_version": "3.11"}"#,
    )
    .expect("pipeline.json");
    fixture.write_pipeline("native-slow", SLEEPS, "", "");
    let operator = fixture.start_operator(&OperatorOptions {
        env: vec![("CONTAINER_TIMEOUT".to_owned(), "2".to_owned())],
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("ff-slow").await;
    operator.wait_for_pipeline("native-slow").await;
    let native = operator.create_run("native-slow", &[]).await;
    operator
        .wait_for_phase(&native, &["Running"], RUN_TIMEOUT)
        .await;
    let (run, log) = run_to_end(&operator, "ff-slow").await;
    assert_eq!(phase(&run), "Failed", "{run:#}\n{log}");
    assert_eq!(reason(&run), "DeadlineExceeded", "{run:#}");
    // The native run, running before the imported one started, still runs after it
    // was stopped: the default is not its timeout.
    let still = operator.run(&native).await;
    assert_eq!(phase(&still), "Running", "{still:#}");
    operator.cancel(&native).await;
    operator.wait_finished(&native).await;
}

/// Fast-Flow's pipelines could write beside main.py: an imported one gets a writable
/// copy of its folder per run (the folder itself stays as it was), a native one keeps
/// its folder read-only.
#[tokio::test]
async fn imported_pipelines_write_to_their_own_copy_of_the_folder() {
    const WRITES: &str = r#"import pathlib
pathlib.Path("out.txt").write_text("written by the run")
print(pathlib.Path("out.txt").read_text(), flush=True)
print(pathlib.Path("data.csv").read_text().strip(), flush=True)
"#;
    let fixture = Fixture::new();
    let folder = fixture.pipelines_dir().join("ff-writer");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(folder.join("main.py"), WRITES).expect("main.py");
    std::fs::write(folder.join("data.csv"), "a,b\n").expect("data.csv");
    std::fs::write(
        folder.join("pipeline.json"),
        r#"{"python_version": "3.11"}"#,
    )
    .expect("pipeline.json");
    fixture.write_pipeline("native-writer", WRITES, "", "");
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("ff-writer").await;
    operator.wait_for_pipeline("native-writer").await;
    for _ in 0..2 {
        let (run, log) = run_to_end(&operator, "ff-writer").await;
        assert_eq!(phase(&run), "Succeeded", "{run:#}\n{log}");
        assert_eq!(stdout_lines(&log), ["written by the run", "a,b"], "{log}");
    }
    assert!(
        !folder.join("out.txt").exists(),
        "the folder itself is never written"
    );
    let (run, log) = run_to_end(&operator, "native-writer").await;
    assert_eq!(phase(&run), "Failed", "{run:#}\n{log}");
    assert!(log.contains("Read-only file system"), "{log}");
}

/// A notebook of `cells` (code, or markdown when it starts with `#`), as Jupyter saves it.
fn notebook(cells: &[&str]) -> String {
    let cells: Vec<Value> = cells
        .iter()
        .map(|source| {
            let lines: Vec<String> = source.split_inclusive('\n').map(str::to_owned).collect();
            if source.starts_with('#') {
                json!({ "cell_type": "markdown", "metadata": {}, "source": lines })
            } else {
                json!({ "cell_type": "code", "metadata": {}, "source": lines,
                        "outputs": [], "execution_count": null })
            }
        })
        .collect();
    json!({ "cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5 }).to_string()
}

/// A notebook entrypoint runs its code cells in order in one process: a failing cell is
/// tried again as its policy (or its own metadata) says, the last expression's value is
/// printed, magics are skipped; a cell that fails for good fails the run with reason `CellFailed` and the
/// cell named in the message.
#[tokio::test]
async fn notebook_cells_run_in_order_with_retries_and_the_failing_cell_is_named() {
    let fixture = Fixture::new();
    let good = notebook(&[
        "%matplotlib inline\nimport pathlib\ntries = pathlib.Path('/tmp/tries')\n",
        "# Flaky: fails twice, then works\n",
        "n = int(tries.read_text()) if tries.exists() else 0\ntries.write_text(str(n + 1))\nif n < 2:\n    raise RuntimeError(f'flaky {n}')\nprint('third try worked', flush=True)\n",
        "x = 21\nx * 2\n",
    ]);
    // Cell 1's own metadata (Fast-Flow's key) overrides the spec's 2 retries with 1.
    let mut bad: Value =
        serde_json::from_str(&notebook(&["y = 1\n", "y / 0\n", "print('never')\n"])).expect("json");
    bad["cells"][1]["metadata"] = json!({ "fastflow": { "retries": 1, "delay_seconds": 0 } });
    let bad = bad.to_string();
    for (name, content) in [("nb-good", &good), ("nb-bad", &bad)] {
        fixture.write_pipeline(
            name,
            "",
            "",
            "entrypoint: main.ipynb\nnotebook: { cells: [ {}, { retries: 2, delay: 0s } ] }",
        );
        std::fs::write(
            fixture.pipelines_dir().join(name).join("main.ipynb"),
            content,
        )
        .expect("main.ipynb");
    }
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("nb-good").await;
    operator.wait_for_pipeline("nb-bad").await;

    let (run, log) = run_to_end(&operator, "nb-good").await;
    assert_eq!(phase(&run), "Succeeded", "{run:#}\n{log}");
    assert_eq!(
        stdout_lines(&log),
        [
            "cell 0: start",
            "cell 0: line 1 skipped (IPython magic or shell escape: %matplotlib inline)",
            "cell 0: done",
            "cell 1: start",
            "cell 1: attempt 1 of 3 failed (RuntimeError: flaky 0); again in 0s",
            "cell 1: attempt 2 of 3 failed (RuntimeError: flaky 1); again in 0s",
            "third try worked",
            "cell 1: done",
            "cell 2: start",
            "42",
            "cell 2: done",
        ],
        "{log}"
    );

    let (run, log) = run_to_end(&operator, "nb-bad").await;
    assert_eq!(phase(&run), "Failed", "{run:#}\n{log}");
    assert_eq!(reason(&run), "CellFailed", "{run:#}");
    let message = run["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cell 1 failed after 2 attempts: ZeroDivisionError: division by zero"),
        "{message}"
    );
    assert_eq!(attempts(&run)[0]["reason"], "CellFailed");
    assert!(!log.contains("never"), "{log}");
}

/// `flotilla rerun RUN` runs the pipeline again with the run's env (its trigger
/// parameters), by hand, and says which run it repeats; a missing run is named.
#[tokio::test]
async fn rerun_repeats_a_run_with_its_env() {
    const PRINTS_X: &str = "import os\nprint(f\"x={os.environ['X']}\", flush=True)\n";
    let fixture = Fixture::new();
    fixture.write_pipeline("prints-x", PRINTS_X, "", "");
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("prints-x").await;
    let first = operator
        .create_run("prints-x", &[("X", "from-the-trigger")])
        .await;
    operator.wait_finished(&first).await;

    let output = operator.cli(&["rerun", &first, "--wait"], RUN_TIMEOUT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("x=from-the-trigger"), "{stdout}\n{stderr}");
    let (_, runs) = operator.get("/namespaces/default/runs").await;
    let rerun = runs["items"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["metadata"]["annotations"]["flotilla.dev/rerun-of"] == first.as_str())
        .unwrap_or_else(|| panic!("a run repeating {first}: {runs:#}"))
        .clone();
    assert_eq!(phase(&rerun), "Succeeded", "{rerun:#}");
    assert_eq!(rerun["spec"]["trigger"], "manual");
    assert_eq!(rerun["spec"]["env"]["X"], "from-the-trigger");
    assert_ne!(rerun["metadata"]["name"], first.as_str());

    let output = operator.cli(&["rerun", "no-such-run"], RUN_TIMEOUT);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-run"), "{stderr}");
}

/// The same requirement through `UV_*` passthrough alone: the wheels sit in the
/// pipeline folder (mounted at /pipeline) and `UV_FIND_LINKS` points there.
#[tokio::test]
async fn a_third_party_requirement_installs_through_uv_settings_and_setup_time_is_recorded() {
    let fixture = Fixture::new();
    fixture.write_pipeline("uses-six", USES_SIX, "six==1.16.0\n", "");
    let wheels = fixture.pipelines_dir().join("uses-six").join("wheels");
    std::fs::create_dir_all(&wheels).expect("wheels dir");
    download_six(&wheels);
    let operator = fixture.start_operator(&OperatorOptions {
        env: vec![
            ("UV_OFFLINE".into(), "1".into()),
            ("UV_FIND_LINKS".into(), "/pipeline/wheels".into()),
        ],
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("uses-six").await;
    run_six_twice(&operator).await;
}

// ---------------------------------------------------------------------------------------
// Restart safety (kill -9)

#[tokio::test]
async fn kill_9_while_running_loses_and_repeats_no_line() {
    let fixture = Fixture::new();
    fixture.write_pipeline("numbered", NUMBERED, "", "");
    let first = fixture.start_operator(&OperatorOptions::default());
    first.wait_for_pipeline("numbered").await;
    let name = first.create_run("numbered", &[]).await;
    let run = first.run(&name).await;
    first
        .wait_until("5 stored lines", RUN_TIMEOUT, || async {
            (stored_lines(&fixture, &run, 1).len() >= 5).then_some(())
        })
        .await;
    first.kill_9();
    // The run goes on printing while no operator watches.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let second = fixture.start_operator(&OperatorOptions::default());
    let run = second.wait_finished(&name).await;
    assert_succeeded_once(&run);
    assert_eq!(
        stored_lines(&fixture, &run, 1),
        numbered(30),
        "every line exactly once"
    );
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

/// Prints long lines (Docker's log splits them at 16 KiB), one before and one after a
/// gate, with a short line on stderr in between. The first is of two-byte characters: it
/// is read attached, where no character is cut. The second is ASCII: it is read from
/// Docker's log, whose json-file driver itself replaces a character cut at its 16 KiB
/// split by U+FFFD.
const LONG_LINES: &str = r#"import os, sys, time
sys.stdout.write("first " + "é" * 100000 + "\n")
sys.stdout.flush()
sys.stderr.write("between\n")
sys.stderr.flush()
print("part 1 done", flush=True)
gate = os.path.join(os.path.dirname(os.path.abspath(__file__)), "open-long")
while not os.path.exists(gate):
    time.sleep(0.1)
sys.stdout.write("second " + "x" * 150000 + "\nlast")
"#;

/// A log's stdout as Flotilla stores it: the lines longer than 64 KiB in pieces of at
/// most 64 KiB, never within a character.
fn joined_long_lines(stored: &[String]) -> Vec<String> {
    let mut joined: Vec<String> = Vec::new();
    let mut continues = false;
    for line in stored {
        assert!(
            line.len() <= 64 * 1024,
            "a stored line of {} bytes",
            line.len()
        );
        assert!(!line.contains('\u{fffd}'), "a character was cut");
        match joined.last_mut() {
            Some(last) if continues => last.push_str(line),
            _ => joined.push(line.clone()),
        }
        // A piece of the maximum size (within a character's width) continues.
        continues = line.len() > 64 * 1024 - 4;
    }
    joined
}

#[tokio::test]
async fn long_lines_are_stored_alike_whether_read_attached_or_from_dockers_log() {
    let fixture = Fixture::new();
    fixture.write_pipeline("long", LONG_LINES, "", "");
    let first = fixture.start_operator(&OperatorOptions::default());
    first.wait_for_pipeline("long").await;
    let name = first.create_run("long", &[]).await;
    let run = first.run(&name).await;
    // Read attached up to here; after the restart, from Docker's log (16 KiB entries),
    // where the first line's pieces must count as the stored ones.
    first
        .wait_until("part 1 stored", RUN_TIMEOUT, || async {
            stored_lines(&fixture, &run, 1)
                .iter()
                .any(|l| l == "part 1 done")
                .then_some(())
        })
        .await;
    first.kill_9();
    open_gate(&fixture, "long", "long");
    let second = fixture.start_operator(&OperatorOptions::default());
    let run = second.wait_finished(&name).await;
    assert_succeeded_once(&run);
    let stored = stored_lines(&fixture, &run, 1);
    assert_eq!(
        joined_long_lines(&stored),
        [
            format!("first {}", "é".repeat(100_000)),
            "part 1 done".to_owned(),
            format!("second {}", "x".repeat(150_000)),
            "last".to_owned(),
        ],
        "every line once, the long ones whole when joined"
    );
    let log = std::fs::read_to_string(attempt_log_path(&fixture, &run, 1)).expect("log");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains(" stderr between"))
            .count(),
        1,
        "the stderr line once"
    );
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn kill_9_while_pending_on_unreachable_docker() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "numbered",
        NUMBERED,
        "",
        "env: { LINES: \"3\", EVERY: \"0.1\" }",
    );
    fixture.proxy.down();
    let first = fixture.start_operator(&OperatorOptions::default());
    first.wait_for_pipeline("numbered").await;
    let name = first.create_run("numbered", &[]).await;
    first
        .wait_until(
            "the run to wait for Docker",
            Duration::from_secs(30),
            || async {
                let run = first.run(&name).await;
                (phase(&run) == "Pending" && reason(&run) == "ContainerRuntimeUnavailable")
                    .then_some(())
            },
        )
        .await;
    assert!(fixture.containers().is_empty());
    first.kill_9();

    fixture.proxy.up();
    let second = fixture.start_operator(&OperatorOptions::default());
    let run = second.wait_finished(&name).await;
    assert_succeeded_once(&run);
    assert_eq!(stored_lines(&fixture, &run, 1), numbered(3));
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn kill_9_while_the_container_is_being_created() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "numbered",
        NUMBERED,
        "",
        "env: { LINES: \"3\", EVERY: \"0.1\" }",
    );
    let first = fixture.start_operator(&OperatorOptions::default());
    first.wait_for_pipeline("numbered").await;
    let run = first
        .create_run_with(json!({ "spec": { "pipelineRef": { "name": "numbered" } } }))
        .await;
    let name = run["metadata"]["name"].as_str().expect("name").to_owned();
    // Kill as soon as the container exists, in whatever state.
    let filter = format!("label={}={}", labels::RUN, uid(&run));
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    while docker_ok(&["ps", "-aq", "--filter", &filter]).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no container appeared\n{}",
            first.context()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill_9();

    let second = fixture.start_operator(&OperatorOptions::default());
    let run = second.wait_finished(&name).await;
    assert_succeeded_once(&run);
    assert_eq!(stored_lines(&fixture, &run, 1), numbered(3));
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn kill_9_then_the_container_exits_unobserved() {
    let fixture = Fixture::new();
    let main = "import time\nprint(\"line 1\", flush=True)\ntime.sleep(4)\nprint(\"line 2\", flush=True)\n";
    fixture.write_pipeline("short", main, "", "");
    let first = fixture.start_operator(&OperatorOptions::default());
    first.wait_for_pipeline("short").await;
    let name = first.create_run("short", &[]).await;
    let container = first.wait_running_container(&name).await;
    first.kill_9();
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    loop {
        let state =
            inspect_container(&container).expect("nobody removes it while no operator runs");
        if state["State"]["Status"] == "exited" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{container} did not exit: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let second = fixture.start_operator(&OperatorOptions::default());
    let run = second.wait_finished(&name).await;
    assert_succeeded_once(&run);
    assert_eq!(stored_lines(&fixture, &run, 1), numbered(2));
    assert!(attempts(&run)[0]["finishedAt"].is_string(), "{run:#}");
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn kill_9_as_soon_as_the_container_exited() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "numbered",
        NUMBERED,
        "",
        "env: { LINES: \"3\", EVERY: \"0.1\" }",
    );
    let first = fixture.start_operator(&OperatorOptions::default());
    first.wait_for_pipeline("numbered").await;
    let run = first
        .create_run_with(json!({ "spec": { "pipelineRef": { "name": "numbered" } } }))
        .await;
    let name = run["metadata"]["name"].as_str().expect("name").to_owned();
    let container = format!("flotilla-{}-1", uid(&run));
    // Kill the moment the container shows exited (or is already gone, if the operator
    // was faster than one poll).
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    let mut seen = false;
    loop {
        match inspect_container(&container) {
            Some(state) if state["State"]["Status"] == "exited" => break,
            Some(_) => seen = true,
            None if seen => break,
            None => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{container} never exited\n{}",
            first.context()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill_9();

    let second = fixture.start_operator(&OperatorOptions::default());
    let run = second.wait_finished(&name).await;
    assert_succeeded_once(&run);
    assert_eq!(stored_lines(&fixture, &run, 1), numbered(3));
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn kill_9_during_retry_backoff_runs_each_attempt_once() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "failing",
        EXITS_THREE,
        "",
        "retries: { limit: 1, backoff: { kind: fixed, initial: 4s } }",
    );
    let first = fixture.start_operator(&OperatorOptions::default());
    first.wait_for_pipeline("failing").await;
    let name = first.create_run("failing", &[]).await;
    first
        .wait_until("the run to wait for its retry", RUN_TIMEOUT, || async {
            let run = first.run(&name).await;
            (reason(&run) == "BackOff").then_some(())
        })
        .await;
    first.kill_9();

    let second = fixture.start_operator(&OperatorOptions::default());
    let run = second.wait_finished(&name).await;
    assert_eq!(phase(&run), "Failed", "{run:#}");
    assert_eq!(reason(&run), "BackoffLimitExceeded", "{run:#}");
    let attempts = attempts(&run);
    assert_eq!(
        attempts.len(),
        2,
        "attempt 1 and one retry, nothing more: {run:#}"
    );
    for (index, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["number"], index + 1, "{run:#}");
        assert_eq!(attempt["exitCode"], 3, "{run:#}");
    }
    let gap = time(&attempts[1]["startedAt"]) - time(&attempts[0]["finishedAt"]);
    assert!(
        gap >= chrono::Duration::seconds(4),
        "the backoff survives the restart: {run:#}"
    );
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn kill_9_keeps_the_concurrency_limit_across_restart() {
    let fixture = Fixture::new();
    fixture.write_pipeline("queued", SLEEP_FROM_ENV, "", "");
    let options = OperatorOptions {
        max_concurrent_runs: Some(1),
        ..OperatorOptions::default()
    };
    let counter = RunningCounter::start(&[format!("{MANAGED_BY}={}", fixture.instance())]);
    let first = fixture.start_operator(&options);
    first.wait_for_pipeline("queued").await;
    let holder = first.create_run("queued", &[("SLEEP", "4")]).await;
    first.wait_running_container(&holder).await;
    let waiting = first.create_run("queued", &[("SLEEP", "1")]).await;
    first
        .wait_until(
            "the second run to be Queued",
            Duration::from_secs(30),
            || async { (reason(&first.run(&waiting).await) == "Queued").then_some(()) },
        )
        .await;
    first.kill_9();

    let second = fixture.start_operator(&options);
    let holder_run = second.wait_finished(&holder).await;
    let waiting_run = second.wait_finished(&waiting).await;
    assert_succeeded_once(&holder_run);
    assert_succeeded_once(&waiting_run);
    assert_eq!(
        counter.stop(),
        1,
        "never two runs at once with --max-concurrent-runs 1"
    );
    assert!(
        time(&attempts(&waiting_run)[0]["startedAt"])
            >= time(&attempts(&holder_run)[0]["finishedAt"]),
        "the queued run started only after the running one ended"
    );
}

// ---------------------------------------------------------------------------------------
// Garbage and name conflicts

/// The identity of the fixture's store, creating the store first if need be (as the
/// operator would on its first start).
async fn store_identity(fixture: &Fixture) -> String {
    let store = flotilla::store::Store::connect(&fixture.store_url())
        .await
        .expect("open the fixture's store");
    let identity = store.identity().to_owned();
    store.close().await;
    identity
}

/// A container that looks like a run container of `store` (labelled with `instance`)
/// whose run does not exist.
fn start_ghost(fixture: &Fixture, instance: &str, store: &str, run_name: &str) -> String {
    let name = format!("flotilla-ghost-{}", uuid::Uuid::new_v4().simple());
    fixture.remove_on_drop(&name);
    let labels = [
        format!("{MANAGED_BY}={instance}"),
        format!("{}={store}", labels::STORE),
        format!("{}=default/{run_name}", labels::RUN_NAME),
        format!("{}={}", labels::RUN, uuid::Uuid::new_v4()),
        format!("{}=1", labels::ATTEMPT),
    ];
    let mut args = vec!["run", "-d", "--name", &name];
    for label in &labels {
        args.extend(["--label", label.as_str()]);
    }
    args.extend([RUNNER_IMAGE, "sleep", "300"]);
    docker_ok(&args);
    name
}

#[tokio::test]
async fn containers_of_no_live_run_are_removed() {
    let fixture = Fixture::new();
    let instance = fixture.instance().to_owned();
    let store = store_identity(&fixture).await;
    let before_start = start_ghost(&fixture, &instance, &store, "ghost");
    // Same instance name, another store: never this operator's to remove.
    let other_store = uuid::Uuid::new_v4().to_string();
    let not_ours = start_ghost(&fixture, &instance, &other_store, "ghost");
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator
        .wait_until(
            "the orphan found at start-up to be removed",
            Duration::from_secs(30),
            || async { inspect_container(&before_start).is_none().then_some(()) },
        )
        .await;
    let while_running = start_ghost(&fixture, &instance, &store, "ghost2");
    operator
        .wait_until(
            "the orphan created while running to be removed (resync every 30 s)",
            Duration::from_secs(75),
            || async { inspect_container(&while_running).is_none().then_some(()) },
        )
        .await;
    let other = inspect_container(&not_ours).expect("another store's container is left alone");
    assert_eq!(other["State"]["Status"], "running");
}

#[tokio::test]
async fn create_with_a_taken_name_returns_the_existing_container() {
    let fixture = Fixture::new();
    let runtime = DockerRuntime::connect(&fixture.proxy.docker_host())
        .expect("docker host URL")
        .negotiate()
        .await
        .expect("the engine answers through the proxy");
    let name = format!("flotilla-conflict-{}", uuid::Uuid::new_v4().simple());
    let labels_of = |run: &str| {
        BTreeMap::from([
            (labels::RUN.to_owned(), run.to_owned()),
            (labels::MANAGED_BY.to_owned(), fixture.instance().to_owned()),
        ])
    };
    let spec = ContainerSpec {
        name: name.clone(),
        image: RUNNER_IMAGE.to_owned(),
        command: vec!["true".to_owned()],
        env: BTreeMap::new(),
        labels: labels_of("somebody-else"),
        working_dir: "/".to_owned(),
        mounts: Vec::new(),
        tmpfs: BTreeMap::new(),
        memory_bytes: None,
        nano_cpus: None,
        pids_limit: None,
        user: "10001:10001".to_owned(),
        log_max_size: "1g".to_owned(),
    };
    assert_eq!(
        runtime.create(&spec).await.expect("first create"),
        Created::New
    );
    let again = ContainerSpec {
        labels: labels_of("mine"),
        ..spec.clone()
    };
    match runtime.create(&again).await.expect("second create") {
        Created::Existing(existing) => {
            assert_eq!(existing.name, name);
            assert_eq!(
                existing.labels.get(labels::RUN).map(String::as_str),
                Some("somebody-else")
            );
        }
        Created::New => panic!("a second container named {name} was created"),
    }
    runtime.remove(&name).await.expect("remove");
    assert!(inspect_container(&name).is_none());
}

#[tokio::test]
async fn a_foreign_container_holding_the_name_is_reported_then_the_run_starts() {
    let fixture = Fixture::new();
    fixture.write_pipeline("hello", HELLO, "", "");
    // Docker is unreachable while the run is created, so its uid can be read and its
    // container name taken before the operator tries.
    fixture.proxy.down();
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("hello").await;
    let run = operator
        .create_run_with(json!({ "spec": { "pipelineRef": { "name": "hello" } } }))
        .await;
    let name = run["metadata"]["name"].as_str().expect("name").to_owned();
    let taken = format!("flotilla-{}-1", uid(&run));
    fixture.remove_on_drop(&taken);
    docker_ok(&[
        "create",
        "--name",
        &taken,
        "--label",
        "owner=someone-else",
        RUNNER_IMAGE,
        "true",
    ]);
    fixture.proxy.up();

    let conflicted = operator
        .wait_until("reason ContainerNameConflict", RUN_TIMEOUT, || async {
            let run = operator.run(&name).await;
            (reason(&run) == "ContainerNameConflict").then_some(run)
        })
        .await;
    assert_eq!(phase(&conflicted), "Pending", "{conflicted:#}");
    let message = conflicted["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("container.name.conflict") && message.contains(&taken),
        "the message names the code and the container: {message}"
    );
    let foreign = inspect_container(&taken).expect("the foreign container is not touched");
    assert_eq!(foreign["Config"]["Labels"]["owner"], "someone-else");

    docker_ok(&["rm", "-f", &taken]);
    let run = operator.wait_finished(&name).await;
    assert_succeeded_once(&run);
}

// ---------------------------------------------------------------------------------------
// The socket proxy and Docker outages

#[tokio::test]
async fn the_proxy_refuses_exec_build_image_deletion_and_stdin() {
    let fixture = Fixture::new();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let ping = client
        .get(fixture.proxy.url("/_ping"))
        .send()
        .await
        .expect("ping");
    assert_eq!(ping.status().as_u16(), 200);
    assert_eq!(ping.text().await.expect("body"), "OK");
    let list = client
        .get(fixture.proxy.url("/containers/json"))
        .send()
        .await
        .expect("list");
    assert_eq!(list.status().as_u16(), 200, "listing containers is allowed");

    let refused = [
        (reqwest::Method::POST, "/containers/x/exec"),
        (reqwest::Method::POST, "/v1.41/containers/x/exec"),
        (reqwest::Method::POST, "/build"),
        (reqwest::Method::POST, "/v1.41/build"),
        (reqwest::Method::DELETE, "/images/x"),
        (reqwest::Method::DELETE, "/v1.41/images/flotilla%2Frunner"),
        // Attach only to read: stdin in any spelling Docker would read, the websocket form.
        (
            reqwest::Method::POST,
            "/containers/x/attach?stream=1&stdin=1",
        ),
        (
            reqwest::Method::POST,
            "/containers/x/attach?stream=1&stdin=false",
        ),
        (
            reqwest::Method::POST,
            "/containers/x/attach?stdin=0&stdin=1",
        ),
        (
            reqwest::Method::POST,
            "/v1.41/containers/x/attach?std%69n=1",
        ),
        (reqwest::Method::GET, "/containers/x/attach/ws?stream=1"),
    ];
    for (method, path) in refused {
        let response = client
            .request(method.clone(), fixture.proxy.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(response.status().as_u16(), 403, "{method} {path}");
        let body: Value = response.json().await.expect("JSON error body");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("forbidden"),
            "{method} {path}: {body}"
        );
    }
    // Docker reads form values from a urlencoded body before the query string.
    let with_body = client
        .post(fixture.proxy.url("/containers/x/attach?stream=1"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("stdin=1")
        .send()
        .await
        .expect("attach with a body");
    assert_eq!(with_body.status().as_u16(), 403, "attach with a body");
    // Reading output passes the proxy: Docker itself answers (no such container).
    let read = client
        .post(
            fixture
                .proxy
                .url("/v1.41/containers/x/attach?stream=1&stdout=1&stderr=1"),
        )
        .send()
        .await
        .expect("attach");
    assert_eq!(read.status().as_u16(), 404, "attach to read reaches Docker");
}

#[tokio::test]
async fn an_idle_log_stream_cut_by_the_proxy_resumes_without_loss() {
    let fixture = Fixture::with_proxy_env(&[("PROXY_IDLE_TIMEOUT", "2s")]);
    // Bursts of lines, then silences longer than the idle cut: the stream attached before
    // the start is cut first, then each stream of Docker's log, and each resume (Docker's
    // log from its start) must skip exactly the lines already stored.
    let main = "import time\nfor burst in range(3):\n    for i in range(5):\n        print(f\"line {burst * 5 + i + 1}\", flush=True)\n    time.sleep(3.5)\n";
    fixture.write_pipeline("bursts", main, "", "");
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("bursts").await;
    let name = operator.create_run("bursts", &[]).await;
    let run = operator.wait_finished(&name).await;
    assert_succeeded_once(&run);
    assert_eq!(
        stored_lines(&fixture, &run, 1),
        numbered(15),
        "every line exactly once"
    );
    let cuts = fixture.proxy.log();
    // HAProxy's termination flags: an idle timeout during data, on the server side for
    // a response, on either side (here the client's) for an upgraded attach tunnel.
    for (stream, flag) in [("/attach", " cD"), ("/logs", " sD")] {
        assert!(
            cuts.lines().any(|l| l.contains(stream) && l.contains(flag)),
            "the proxy cut an idle {stream} stream (flag{flag}), so the resume path ran:\n{cuts}"
        );
    }
}

#[tokio::test]
async fn an_event_stream_reconnect_relists_and_removes_orphans() {
    let fixture = Fixture::with_proxy_env(&[("PROXY_EVENTS_TIMEOUT", "2s")]);
    // The operator's timed resync comes 30 s after its start, so after `started`.
    let started = std::time::Instant::now();
    let operator = fixture.start_operator(&OperatorOptions::default());
    // The start-up re-lists are over once the proxy has cut the first event stream: the
    // watcher opens it after its start-up re-list, and it is cut only after 2 s idle.
    operator
        .wait_until(
            "the proxy to cut the first idle event stream",
            Duration::from_secs(30),
            || async { (!event_stream_cuts(&fixture.proxy.log()).is_empty()).then_some(()) },
        )
        .await;
    let instance = fixture.instance().to_owned();
    let store = store_identity(&fixture).await;
    let before_ghost = fixture.proxy.log().lines().count();
    let ghost = start_ghost(&fixture, &instance, &store, "ghost");
    operator
        .wait_until(
            "the orphan to be removed by the re-list after an event-stream reconnect",
            Duration::from_secs(20),
            || async { inspect_container(&ghost).is_none().then_some(()) },
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the orphan went before the first timed resync (30 s after the start) could take it"
    );
    // Through the proxy: the ghost was deleted after a container list that ended after
    // the ghost existed. Containers are listed (with no runs) only by the start-up
    // re-lists, which ended before the first cut waited for above, by the timed resync,
    // which the bound above rules out, and by the re-list after each event-stream
    // reconnect: so that list was a reconnect's. (HAProxy logs a stream when it ends, so
    // a cut is logged before the re-list it causes; the ghost may start between the two.)
    let log = fixture.proxy.log();
    let lines: Vec<&str> = log.lines().collect();
    let delete = lines
        .iter()
        .position(|l| l.contains("DELETE /") && l.contains(&ghost))
        .unwrap_or_else(|| panic!("the ghost's removal is not in the proxy log:\n{log}"));
    assert!(
        lines[before_ghost.min(delete)..delete]
            .iter()
            .any(|l| l.contains("GET /") && l.contains("/containers/json")),
        "no container list between the ghost's start and its removal:\n{log}"
    );
}

/// Lines of the proxy log for `/events` streams the proxy cut when idle (flag `sD`).
fn event_stream_cuts(log: &str) -> Vec<&str> {
    log.lines().filter(|l| is_event_stream_cut(l)).collect()
}

fn is_event_stream_cut(line: &str) -> bool {
    line.contains("/events") && line.contains(" sD")
}

#[tokio::test]
async fn a_proxy_outage_mid_run_loses_no_line() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "numbered",
        NUMBERED,
        "",
        "env: { LINES: \"20\", EVERY: \"0.25\" }",
    );
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("numbered").await;
    let name = operator.create_run("numbered", &[]).await;
    let run = operator.run(&name).await;
    operator
        .wait_until("2 stored lines", RUN_TIMEOUT, || async {
            (stored_lines(&fixture, &run, 1).len() >= 2).then_some(())
        })
        .await;
    fixture.proxy.down();
    tokio::time::sleep(Duration::from_secs(3)).await;
    fixture.proxy.up();

    let run = operator.wait_finished(&name).await;
    assert_succeeded_once(&run);
    assert_eq!(
        stored_lines(&fixture, &run, 1),
        numbered(20),
        "every line exactly once"
    );
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_run_created_while_docker_is_unreachable_starts_once_it_is_back() {
    let fixture = Fixture::new();
    fixture.write_pipeline("hello", HELLO, "", "");
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("hello").await;
    fixture.proxy.down();
    let name = operator.create_run("hello", &[]).await;
    // Nothing else holds a slot, so the run is admitted; creating its container meets
    // the unreachable Docker, and the run says so.
    let waiting = operator
        .wait_until(
            "the run to report that Docker is unreachable",
            Duration::from_secs(30),
            || async {
                let run = operator.run(&name).await;
                (reason(&run) == "ContainerRuntimeUnavailable").then_some(run)
            },
        )
        .await;
    assert_eq!(phase(&waiting), "Pending", "{waiting:#}");
    let message = waiting["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("container.runtime.unavailable"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = operator.run(&name).await;
    assert_eq!(phase(&still), "Pending", "no Docker, no start: {still:#}");
    assert!(fixture.containers().is_empty());

    fixture.proxy.up();
    let run = operator.wait_finished(&name).await;
    assert_succeeded_once(&run);
    assert_eq!(
        stdout_lines(&operator.log(&name, 1).await),
        ["hello from flotilla"]
    );
    fixture.wait_no_containers(Duration::from_secs(30)).await;
}
