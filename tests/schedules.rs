//! The schedule reconciler against a real Docker engine (through the HAProxy socket
//! proxy) with `every: 2s` schedules: concurrency policies Forbid and Replace, kill -9
//! restarts around a slot without a duplicate run, history pruning that deletes logs,
//! missed slots after downtime with and without a starting deadline, time zones in
//! `get`/`describe` (and an unknown zone that only the store can hold), suspend/resume.
//!
//! Every test has its own proxy, operator instance, data dir and store
//! (`support::docker`), so the tests run in parallel and twice in a row. The store is
//! SQLite, or PostgreSQL with `FLOTILLA_TEST_STORE=postgres` (`make test` runs both).
//! Assertions are about which runs exist for which slots, never about how long something
//! took; waits are bounded and say what they waited for.

#[allow(dead_code)]
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flotilla::controller::run::container::container_name;
use flotilla::controller::runtime::labels;
use flotilla::controller::schedule::naming::slot_run_name;
use flotilla::resource::types::{LocalRef, RunSpec, RunStatus, Trigger};
use flotilla::resource::{Change, DesiredObject, Kind, ObjectKey};
use flotilla::store::Store;
use serde_json::{Value, json};
use support::docker::{
    Fixture, MANAGED_BY, Operator, OperatorOptions, RUN_TIMEOUT, RunningCounter, attempts,
    inspect_container, phase, reason, time, uid,
};
use support::scenario::{Api, SCHEDULE_LABEL, name, reasons, sleep_until, slot, slot_at_or_before};

/// Exits at once.
const QUICK: &str = "print(\"tick\", flush=True)\n";

/// Runs for about five seconds: longer than two `every: 2s` slots.
const FIVE_SECONDS: &str =
    "import time\nprint(\"start\", flush=True)\ntime.sleep(5)\nprint(\"end\", flush=True)\n";

/// Runs for half a minute unless stopped.
const HALF_A_MINUTE: &str = "import time\nprint(\"start\", flush=True)\ntime.sleep(30)\n";

/// Enough history that nothing is pruned while a test counts runs.
const KEEP_ALL: &str = "history: { succeeded: 100, failed: 100 }";

/// A Schedule manifest; `fields` are YAML lines at spec level.
fn schedule_yaml(name: &str, pipeline: &str, fields: &[&str]) -> String {
    let mut yaml = format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: {name}\nspec:\n  pipelineRef: {{ name: {pipeline} }}\n"
    );
    for field in fields {
        yaml.push_str("  ");
        yaml.push_str(field);
        yaml.push('\n');
    }
    yaml
}

/// A fixture with one pipeline `pipeline` running `main_py`, its operator and a session.
async fn start(pipeline: &str, main_py: &str) -> (Fixture, Operator, Api) {
    start_with(pipeline, main_py, &OperatorOptions::default()).await
}

async fn start_with(
    pipeline: &str,
    main_py: &str,
    options: &OperatorOptions,
) -> (Fixture, Operator, Api) {
    let fixture = Fixture::new();
    fixture.write_pipeline(pipeline, main_py, "", "");
    let operator = fixture.start_operator(options);
    operator.wait_for_pipeline(pipeline).await;
    let api = Api::connect(&operator);
    (fixture, operator, api)
}

/// Restarts the operator on the same data dir and points the session at it.
fn restart(fixture: &Fixture, api: &mut Api) -> Operator {
    restart_with(fixture, api, &OperatorOptions::default())
}

fn restart_with(fixture: &Fixture, api: &mut Api, options: &OperatorOptions) -> Operator {
    let operator = fixture.start_operator(options);
    api.reattach(&operator);
    operator
}

/// Runs created at their slot, not ahead: the downtime tests tell the runs of slots
/// before a kill from those after it by slot alone.
fn at_the_slot() -> OperatorOptions {
    OperatorOptions {
        args: vec!["--schedule-lead".into(), "0s".into()],
        ..OperatorOptions::default()
    }
}

fn is_finished(run: &Value) -> bool {
    matches!(phase(run), "Succeeded" | "Failed" | "Cancelled")
}

/// Polls the runs of `schedule` every 200 ms until `done` holds for them; panics with
/// `what`, the runs and the operator context after `timeout`.
async fn wait_for_runs(
    api: &Api,
    operator: &Operator,
    schedule: &str,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let runs = api.runs_of(schedule).await;
        if done(&runs) {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; runs of {schedule}: {:?}\n{}",
            summary(&runs),
            operator.context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until an event of `involved` satisfies `matches`; returns it.
async fn wait_for_event(
    api: &Api,
    operator: &Operator,
    involved: &str,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = api.events_for(involved).await;
        if let Some(event) = events.iter().find(|e| matches(e)) {
            return event.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} on {involved}; its events: {events:#?}\n{}",
            operator.context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `name phase slot` of each run, for failure messages.
fn summary(runs: &[Value]) -> Vec<String> {
    runs.iter()
        .map(|r| {
            format!(
                "{} {} slot={}",
                name(r),
                phase(r),
                r["spec"]["slot"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Suspends `schedule` (re-applying it) so no further runs appear, then waits until all
/// of its runs have finished.
async fn suspend_and_settle(
    api: &Api,
    operator: &Operator,
    schedule: &str,
    pipeline: &str,
    fields: &[&str],
) -> Vec<Value> {
    let mut suspended = fields.to_vec();
    suspended.push("suspend: true");
    api.apply_ok(&schedule_yaml(schedule, pipeline, &suspended))
        .await;
    wait_for_runs(
        api,
        operator,
        schedule,
        "every run to finish after suspending",
        RUN_TIMEOUT,
        |runs| runs.iter().all(is_finished),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Concurrency policies

#[tokio::test]
async fn forbid_never_overlaps_runs_and_records_run_already_active() {
    let (fixture, operator, api) = start("slow", FIVE_SECONDS).await;
    let counter = RunningCounter::start(&[
        format!("{MANAGED_BY}={}", fixture.instance()),
        format!("{}=slow", labels::PIPELINE),
    ]);
    let fields = ["every: 2s", "concurrencyPolicy: Forbid", KEEP_ALL];
    api.apply_ok(&schedule_yaml("forbid", "slow", &fields))
        .await;

    // Every observation of the runs has at most one unfinished run.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = api.runs_of("forbid").await;
        let active: Vec<String> = runs.iter().filter(|r| !is_finished(r)).map(name).collect();
        assert!(
            active.len() <= 1,
            "two runs of a Forbid schedule are active at once: {active:?}"
        );
        let succeeded = runs.iter().filter(|r| phase(r) == "Succeeded").count();
        let events = api.events_for("schedule/forbid").await;
        if succeeded >= 2 && reasons(&events).iter().any(|r| r == "RunAlreadyActive") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "waiting for two succeeded runs and a RunAlreadyActive event; runs: {:?}\nevents: {events:#?}\n{}",
            summary(&runs),
            operator.context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let runs = suspend_and_settle(&api, &operator, "forbid", "slow", &fields).await;
    assert_eq!(
        counter.stop(),
        1,
        "containers of the Forbid schedule running at once (sampled)"
    );
    // The attempts, ordered by start, never overlap.
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>, String)> = runs
        .iter()
        .filter(|r| phase(r) == "Succeeded")
        .map(|r| {
            let attempt = &attempts(r)[0];
            (
                time(&attempt["startedAt"]),
                time(&attempt["finishedAt"]),
                name(r),
            )
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "{} started at {} before {} finished at {}",
            pair[1].2,
            pair[1].0,
            pair[0].2,
            pair[0].1
        );
    }
    let events = api.events_for("schedule/forbid").await;
    let skipped: Vec<&Value> = events
        .iter()
        .filter(|e| e["reason"] == "RunAlreadyActive")
        .collect();
    assert!(
        skipped.iter().all(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("still active") && m.contains("forbid-"))),
        "RunAlreadyActive names the active run: {skipped:#?}"
    );
    // No skipped slot got a run.
    let run_names: BTreeSet<String> = runs.iter().map(name).collect();
    for event in &skipped {
        let message = event["message"].as_str().unwrap_or_default();
        let slot_text = message
            .strip_prefix("slot ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected RunAlreadyActive message {message:?}"));
        let skipped_slot = DateTime::parse_from_rfc3339(slot_text)
            .unwrap_or_else(|e| panic!("slot {slot_text:?} in {message:?}: {e}"))
            .with_timezone(&Utc);
        let would_be = slot_run_name("forbid", skipped_slot);
        assert!(
            !run_names.contains(&would_be),
            "slot {slot_text} was skipped (RunAlreadyActive) yet {would_be} exists"
        );
    }
}

#[tokio::test]
async fn replace_cancels_the_active_run_and_starts_a_newer_one() {
    let (_fixture, operator, api) = start("long", HALF_A_MINUTE).await;
    let fields = ["every: 2s", "concurrencyPolicy: Replace", KEEP_ALL];
    api.apply_ok(&schedule_yaml("replace", "long", &fields))
        .await;

    let runs = wait_for_runs(
        &api,
        &operator,
        "replace",
        "a replaced run to end Cancelled",
        Duration::from_secs(90),
        |runs| runs.iter().any(|r| phase(r) == "Cancelled") && runs.len() >= 2,
    )
    .await;
    let events = api.events_for("schedule/replace").await;
    let replaced: Vec<&Value> = events
        .iter()
        .filter(|e| e["reason"] == "RunReplaced")
        .collect();
    assert!(
        !replaced.is_empty(),
        "a RunReplaced event is recorded: {events:#?}"
    );
    let first = runs
        .iter()
        .min_by_key(|r| slot(r))
        .expect("at least one run");
    assert!(
        replaced.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("{} cancelled", name(first))))),
        "the first run {} is named by a RunReplaced event: {replaced:#?}",
        name(first)
    );

    // Stop replacing; the newest run must then start (and not be replaced any more).
    let runs = {
        let mut suspended = fields.to_vec();
        suspended.push("suspend: true");
        api.apply_ok(&schedule_yaml("replace", "long", &suspended))
            .await;
        wait_for_runs(
            &api,
            &operator,
            "replace",
            "all but the newest run to finish",
            RUN_TIMEOUT,
            |runs| runs.iter().filter(|r| !is_finished(r)).count() <= 1,
        )
        .await
    };
    let newest = runs
        .iter()
        .max_by_key(|r| slot(r))
        .expect("at least one run");
    let first = operator.wait_finished(&name(first)).await;
    assert_eq!(phase(&first), "Cancelled", "the earlier run: {first:#}");
    assert!(
        slot(newest) > slot(&first),
        "a newer run exists: {:?}",
        summary(&runs)
    );
    for run in runs.iter().filter(|r| name(r) != name(newest)) {
        assert_eq!(
            phase(run),
            "Cancelled",
            "every replaced run ends Cancelled: {:?}",
            summary(&runs)
        );
    }
    let newest_name = name(newest);
    operator.wait_running_container(&newest_name).await;
    // Docker shows the container running a moment before the operator records it.
    let newest = operator
        .wait_for_phase(
            &newest_name,
            &["Running", "Succeeded", "Failed", "Cancelled"],
            RUN_TIMEOUT,
        )
        .await;
    assert_eq!(phase(&newest), "Running", "{newest:#}");
    operator.cancel(&newest_name).await;
    operator.wait_finished(&newest_name).await;
}

// ---------------------------------------------------------------------------------------
// Exactly once per slot

/// The run a second writer (another operator on the same database) would create for
/// `slot` of schedule `schedule`, marked with an annotation.
fn foreign_run(schedule: &str, pipeline: &str, slot: DateTime<Utc>) -> (DesiredObject, Value) {
    let spec = RunSpec {
        pipeline_ref: LocalRef {
            name: pipeline.to_owned(),
        },
        trigger: Trigger::Schedule,
        schedule_ref: Some(LocalRef {
            name: schedule.to_owned(),
        }),
        slot: Some(slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ..RunSpec::default()
    };
    let object = DesiredObject {
        key: ObjectKey::new(Kind::Run, "default", slot_run_name(schedule, slot)),
        labels: BTreeMap::from([(SCHEDULE_LABEL.to_owned(), schedule.to_owned())]),
        annotations: BTreeMap::from([("test/written-by".to_owned(), "second-writer".to_owned())]),
        spec: serde_json::to_value(spec).expect("run spec").into(),
    };
    let status = serde_json::to_value(RunStatus::default()).expect("run status");
    (object, status)
}

async fn open_store(fixture: &Fixture) -> Store {
    let url = fixture.store_url();
    Store::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"))
}

#[tokio::test]
async fn kill_9_around_slots_never_creates_a_second_run_for_a_slot() {
    let (fixture, mut operator, mut api) = start("quick", QUICK).await;
    let fields = ["every: 2s", KEEP_ALL];
    api.apply_ok(&schedule_yaml("restart", "quick", &fields))
        .await;
    wait_for_runs(
        &api,
        &operator,
        "restart",
        "a first run",
        Duration::from_secs(60),
        |runs| !runs.is_empty(),
    )
    .await;

    // Kill the operator just before, at and just after slot boundaries, and restart it
    // on the same data dir each time.
    let mut foreign_slot = None;
    for offset_ms in [-40i64, 0, 10, 30, 60, 90] {
        let boundary = slot_at_or_before(Utc::now(), 2) + chrono::Duration::seconds(2);
        sleep_until(boundary + chrono::Duration::milliseconds(offset_ms)).await;
        operator.kill_9();
        if foreign_slot.is_none() {
            // While it is down, a second writer takes the next free slot (as another
            // operator sharing the database would); the restart must not add a twin.
            let store = open_store(&fixture).await;
            let mut candidate = boundary;
            loop {
                let created = store
                    .create_absent(vec![{
                        let (object, status) = foreign_run("restart", "quick", candidate);
                        (object, Some(status))
                    }])
                    .await
                    .expect("create_absent");
                if !created.is_empty() {
                    break;
                }
                candidate += chrono::Duration::seconds(2);
            }
            // A second attempt at a taken slot creates nothing.
            let again = store
                .create_absent(vec![{
                    let (object, status) = foreign_run("restart", "quick", candidate);
                    (object, Some(status))
                }])
                .await
                .expect("create_absent");
            assert!(again.is_empty(), "the store created a twin: {again:?}");
            store.close().await;
            foreign_slot = Some(candidate);
        }
        operator = restart(&fixture, &mut api);
        let restarted_at = Utc::now();
        wait_for_runs(
            &api,
            &operator,
            "restart",
            "a run for a slot after the restart",
            Duration::from_secs(60),
            |runs| runs.iter().any(|r| slot(r) > restarted_at),
        )
        .await;
    }

    let runs = suspend_and_settle(&api, &operator, "restart", "quick", &fields).await;
    let mut by_slot: HashMap<DateTime<Utc>, Vec<String>> = HashMap::new();
    for run in &runs {
        by_slot.entry(slot(run)).or_default().push(name(run));
    }
    let twins: Vec<_> = by_slot
        .iter()
        .filter(|(_, names)| names.len() > 1)
        .collect();
    assert!(twins.is_empty(), "slots with two runs: {twins:?}");
    for run in &runs {
        let slot = slot(run);
        assert_eq!(
            slot.timestamp() % 2,
            0,
            "{} has a slot off the 2 s grid",
            name(run)
        );
        assert_eq!(
            name(run),
            slot_run_name("restart", slot),
            "run names follow <schedule>-<slot number>"
        );
        let number = name(run)
            .strip_prefix("restart-")
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("{} is not restart-<n>", name(run)));
        assert!(
            number == slot.timestamp() || number * 60 == slot.timestamp(),
            "{} is numbered by its slot {slot}",
            name(run)
        );
    }
    let foreign_slot = foreign_slot.expect("a slot taken by the second writer");
    let foreign = runs
        .iter()
        .find(|r| slot(r) == foreign_slot)
        .unwrap_or_else(|| panic!("no run for the slot {foreign_slot}: {:?}", summary(&runs)));
    assert_eq!(
        foreign["metadata"]["annotations"]["test/written-by"], "second-writer",
        "the slot's run is the second writer's, not a new one: {foreign:#}"
    );
    // Every scheduled run also survives the restarts with one container: a kill -9
    // during a container create must be adopted or retried, never end the run.
    for run in &runs {
        assert_eq!(
            phase(run),
            "Succeeded",
            "run {} did not survive the restarts: {run:#}",
            name(run)
        );
        assert_eq!(
            attempts(run).len(),
            1,
            "one container per run across restarts: {run:#}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// History

#[tokio::test]
async fn history_pruning_deletes_old_runs_with_their_logs_and_events() {
    let (fixture, operator, api) = start("quick", QUICK).await;
    let fields = ["every: 2s", "history: { succeeded: 2, failed: 1 }"];
    api.apply_ok(&schedule_yaml("pruned", "quick", &fields))
        .await;

    let runs_dir = fixture.data_dir().join("runs");
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut dir_seen: BTreeSet<String> = BTreeSet::new();
    wait_for_runs(
        &api,
        &operator,
        "pruned",
        "six runs to have been created",
        Duration::from_secs(120),
        |runs| {
            for run in runs {
                let run_uid = uid(run).to_owned();
                if runs_dir.join(&run_uid).is_dir() {
                    dir_seen.insert(run_uid.clone());
                }
                seen.insert(name(run), run_uid);
            }
            seen.len() >= 6
        },
    )
    .await;

    let mut suspended = fields.to_vec();
    suspended.push("suspend: true");
    api.apply_ok(&schedule_yaml("pruned", "quick", &suspended))
        .await;
    let remaining = wait_for_runs(
        &api,
        &operator,
        "pruned",
        "every run to finish and the history to be pruned to 2 succeeded",
        RUN_TIMEOUT,
        |runs| {
            runs.iter().all(is_finished)
                && runs.iter().filter(|r| phase(r) == "Succeeded").count() <= 2
        },
    )
    .await;
    let succeeded = remaining.iter().filter(|r| phase(r) == "Succeeded").count();
    let failed = remaining.iter().filter(|r| phase(r) == "Failed").count();
    assert_eq!(succeeded, 2, "{:?}", summary(&remaining));
    assert!(failed <= 1, "{:?}", summary(&remaining));
    for run in &remaining {
        seen.insert(name(run), uid(run).to_owned());
        assert!(
            runs_dir.join(uid(run)).join("attempt-1.log").is_file(),
            "the kept run {} still has its log",
            name(run)
        );
    }
    let kept: BTreeSet<String> = remaining.iter().map(name).collect();
    let pruned: Vec<(&String, &String)> = seen.iter().filter(|(n, _)| !kept.contains(*n)).collect();
    assert!(
        pruned.len() >= 4,
        "at least 4 of the {} runs seen were pruned: kept {kept:?}",
        seen.len()
    );
    let mut pruned_with_logs = 0;
    for (run_name, run_uid) in &pruned {
        let dir = runs_dir.join(run_uid);
        assert!(
            !dir.exists(),
            "the data of pruned run {run_name} is still at {}",
            dir.display()
        );
        let (status, _) = api
            .get(&format!("/namespaces/default/runs/{run_name}"))
            .await;
        assert_eq!(status, 404, "pruned run {run_name} is gone from the API");
        let events = api.events_for(&format!("run/{run_name}")).await;
        assert!(
            events.is_empty(),
            "events of pruned run {run_name} are deleted: {events:#?}"
        );
        if dir_seen.contains(*run_uid) {
            pruned_with_logs += 1;
        }
    }
    assert!(
        pruned_with_logs >= 3,
        "the log directories of at least 3 pruned runs were seen before pruning (saw {pruned_with_logs})"
    );
}

// ---------------------------------------------------------------------------------------
// Missed slots

#[tokio::test]
async fn after_downtime_only_the_latest_missed_slot_runs_within_the_starting_deadline() {
    let (fixture, operator, mut api) = start_with("quick", QUICK, &at_the_slot()).await;
    let fields = ["every: 2s", "startingDeadline: 10s", KEEP_ALL];
    api.apply_ok(&schedule_yaml("catchup", "quick", &fields))
        .await;
    wait_for_runs(
        &api,
        &operator,
        "catchup",
        "a first run",
        Duration::from_secs(60),
        |runs| !runs.is_empty(),
    )
    .await;

    operator.kill_9();
    let killed_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let restarting_at = Utc::now();
    let operator = restart_with(&fixture, &mut api, &at_the_slot());

    let missed = wait_for_event(
        &api,
        &operator,
        "schedule/catchup",
        "a MissedSchedule event about earlier missed slots",
        |e| {
            e["reason"] == "MissedSchedule"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("earlier slot(s) were missed"))
        },
    )
    .await;
    let evaluated_at = time(&missed["firstSeen"]);
    let runs = wait_for_runs(
        &api,
        &operator,
        "catchup",
        "a run for a slot after the downtime",
        Duration::from_secs(60),
        |runs| runs.iter().any(|r| slot(r) > killed_at),
    )
    .await;
    let mut after_kill: Vec<&Value> = runs.iter().filter(|r| slot(r) > killed_at).collect();
    after_kill.sort_by_key(|r| slot(r));
    let catch_up = after_kill[0];
    let missed_slots = (slot(catch_up) - slot_at_or_before(killed_at, 2)).num_seconds() / 2 - 1;
    assert!(
        missed_slots >= 2,
        "the downtime spans at least 2 older slots before {} (killed at {killed_at})",
        name(catch_up)
    );
    assert!(
        slot(catch_up) <= evaluated_at,
        "the first run after the restart is for a missed slot (slot {} before the restart's evaluation at {evaluated_at}), not merely the next one: {:?}",
        slot(catch_up),
        summary(&runs)
    );
    // The restarted operator evaluates at some instant between `restarting_at` and
    // `evaluated_at`: the most recent missed slot is no older than the last slot before
    // the restart began.
    assert!(
        slot(catch_up) >= slot_at_or_before(restarting_at, 2),
        "the catch-up run {} is for the most recent missed slot (restart began at {restarting_at})",
        name(catch_up)
    );
    // Exactly one run for the missed slots: nothing between the kill and the catch-up.
    let in_downtime: Vec<String> = runs
        .iter()
        .filter(|r| slot(r) > killed_at && slot(r) <= slot(catch_up))
        .map(name)
        .collect();
    assert_eq!(
        in_downtime,
        [name(catch_up)],
        "one catch-up run for all missed slots"
    );
    let events = api.events_for("schedule/catchup").await;
    assert!(
        !events.iter().any(|e| e["reason"] == "MissedSchedule"
            && e["message"].as_str().is_some_and(|m| m.contains("skipped"))),
        "nothing is skipped within a 10s startingDeadline: {events:#?}"
    );
}

#[tokio::test]
async fn after_downtime_a_slot_older_than_the_starting_deadline_is_skipped_with_an_event() {
    // `every: 6s` and a restart 1.5 s after a slot make that slot older than the 1 s
    // deadline however the restart's first evaluation falls (up to 4.5 s of start-up);
    // with `every: 2s` the outcome would depend on where in the interval it falls.
    let (fixture, operator, mut api) = start_with("quick", QUICK, &at_the_slot()).await;
    let fields = ["every: 6s", "startingDeadline: 1s", KEEP_ALL];
    api.apply_ok(&schedule_yaml("deadline", "quick", &fields))
        .await;
    wait_for_runs(
        &api,
        &operator,
        "deadline",
        "a first run",
        Duration::from_secs(60),
        |runs| !runs.is_empty(),
    )
    .await;

    operator.kill_9();
    let killed_at = Utc::now();
    let earliest = killed_at + chrono::Duration::seconds(7);
    let mut restart_at = slot_at_or_before(earliest, 6) + chrono::Duration::milliseconds(1_500);
    if restart_at < earliest {
        restart_at += chrono::Duration::seconds(6);
    }
    sleep_until(restart_at).await;
    let latest_missed = slot_at_or_before(restart_at, 6);
    let operator = restart_with(&fixture, &mut api, &at_the_slot());

    let wanted = format!(
        "slot {} was missed by more than startingDeadline 1s; skipped",
        latest_missed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    wait_for_event(
        &api,
        &operator,
        "schedule/deadline",
        &format!("MissedSchedule {wanted:?}"),
        |e| e["reason"] == "MissedSchedule" && e["message"] == wanted.as_str(),
    )
    .await;
    let runs = wait_for_runs(
        &api,
        &operator,
        "deadline",
        "the next regular run after the skipped slot",
        Duration::from_secs(60),
        |runs| runs.iter().any(|r| slot(r) > latest_missed),
    )
    .await;
    let in_downtime: Vec<String> = runs
        .iter()
        .filter(|r| slot(r) > killed_at && slot(r) <= latest_missed)
        .map(name)
        .collect();
    assert!(
        in_downtime.is_empty(),
        "no run for slots missed by more than the deadline: {in_downtime:?}"
    );
    let next = runs
        .iter()
        .filter(|r| slot(r) > latest_missed)
        .map(slot)
        .min()
        .expect("a run after the skipped slot");
    assert_eq!(
        next,
        latest_missed + chrono::Duration::seconds(6),
        "the schedule continues with the slot after the skipped one"
    );
}

// ---------------------------------------------------------------------------------------
// Time zones and visibility

/// The cell under `column` in the row starting with `row_name` of an aligned table.
fn table_cell(table: &str, row_name: &str, column: &str) -> String {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_else(|| panic!("empty table"));
    // A column starts at a non-blank after three blanks (titles hold single blanks).
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|(i, c)| *c != ' ' && (*i == 0 || header[..*i].ends_with("   ")))
        .map(|(i, _)| i)
        .collect();
    let titles: Vec<&str> = starts
        .iter()
        .enumerate()
        .map(|(n, &s)| header[s..starts.get(n + 1).copied().unwrap_or(header.len())].trim())
        .collect();
    let index = titles
        .iter()
        .position(|t| *t == column)
        .unwrap_or_else(|| panic!("no column {column:?} in {titles:?}:\n{table}"));
    let row = lines
        .find(|l| l.split(' ').next() == Some(row_name))
        .unwrap_or_else(|| panic!("no row {row_name:?}:\n{table}"));
    let end = starts
        .get(index + 1)
        .copied()
        .unwrap_or(row.len())
        .min(row.len());
    row[starts[index].min(row.len())..end].trim().to_owned()
}

/// Applies schedule `berlin` (04:30 daily in Europe/Berlin) and waits for its
/// `status.nextSlot`.
async fn berlin_schedule(api: &Api, operator: &Operator) -> DateTime<Utc> {
    api.apply_ok(&schedule_yaml(
        "berlin",
        "quick",
        &["cron: \"30 4 * * *\"", "timeZone: Europe/Berlin"],
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let next_slot = loop {
        let schedule = api.get_ok("/namespaces/default/schedules/berlin").await;
        if schedule["status"]["nextSlot"].is_string() {
            break time(&schedule["status"]["nextSlot"]);
        }
        assert!(
            Instant::now() < deadline,
            "no status.nextSlot: {schedule:#}\n{}",
            operator.context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        next_slot
            .with_timezone(&berlin())
            .format("%H:%M:%S")
            .to_string(),
        "04:30:00",
        "nextSlot {next_slot} is 04:30 in Berlin"
    );
    next_slot
}

fn berlin() -> chrono_tz::Tz {
    "Europe/Berlin".parse().expect("a zone")
}

#[tokio::test]
async fn get_schedules_shows_the_zone_and_the_next_slot_in_that_zone() {
    let (_fixture, operator, api) = start("quick", QUICK).await;
    let next_slot = berlin_schedule(&api, &operator).await;

    let out = operator.cli(&["get", "schedules"], Duration::from_secs(30));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "get schedules: {table}");
    assert_eq!(table_cell(&table, "berlin", "ZONE"), "Europe/Berlin");
    let local = next_slot.with_timezone(&berlin());
    let (zone_name, offset) = (
        local.format("%Z").to_string(),
        local.format("%:z").to_string(),
    );
    let cell = table_cell(&table, "berlin", "NEXT SLOT");
    assert!(
        cell.contains("04:30") && (cell.contains(&zone_name) || cell.contains(&offset)),
        "NEXT SLOT is shown in the schedule's zone (04:30 {zone_name} / {offset}), got {cell:?}:\n{table}"
    );
}

#[tokio::test]
async fn describe_schedule_lists_the_next_five_slots_in_the_schedules_zone() {
    let (_fixture, operator, api) = start("quick", QUICK).await;
    let next_slot = berlin_schedule(&api, &operator).await;

    let out = operator.cli(&["describe", "schedule", "berlin"], Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "describe schedule: {text}");
    let slots: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "Next Slots:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(slots.len(), 5, "five next slots:\n{text}");
    let mut previous: Option<DateTime<Utc>> = None;
    for line in &slots {
        let (local, utc) = line
            .trim()
            .split_once("  (")
            .unwrap_or_else(|| panic!("unexpected slot line {line:?}"));
        let utc = DateTime::parse_from_rfc3339(utc.trim_end_matches(')'))
            .unwrap_or_else(|e| panic!("bad UTC time in {line:?}: {e}"))
            .with_timezone(&Utc);
        let in_zone = utc.with_timezone(&berlin());
        assert!(
            local.ends_with(" CET") || local.ends_with(" CEST"),
            "slot {line:?} carries CET/CEST"
        );
        assert_eq!(
            local,
            in_zone.format("%Y-%m-%d %H:%M:%S %Z").to_string(),
            "the local time is the UTC slot in Europe/Berlin"
        );
        assert_eq!(in_zone.format("%H:%M").to_string(), "04:30", "{line}");
        match previous {
            Some(previous) => {
                let gap = (utc - previous).num_hours();
                assert!((23..=25).contains(&gap), "daily slots: {slots:#?}");
            }
            None => assert_eq!(utc, next_slot, "the first listed slot is status.nextSlot"),
        }
        previous = Some(utc);
    }
}

#[tokio::test]
async fn an_unknown_zone_is_refused_at_apply_and_a_stored_one_never_runs() {
    let (fixture, operator, mut api) = start("quick", QUICK).await;
    let mars = schedule_yaml(
        "mars",
        "quick",
        &["every: 2s", "timeZone: Mars/Olympus_Mons"],
    );
    let (status, body) = api.apply(&mars, "fieldManager=test").await;
    assert!(
        (400..500).contains(&status),
        "an unknown zone is refused: {status} {body}"
    );
    let text = body.to_string();
    assert!(
        text.contains("spec.timeZone") && text.contains("Mars/Olympus_Mons"),
        "the error names the field and the zone: {text}"
    );
    assert_eq!(api.get("/namespaces/default/schedules/mars").await.0, 404);

    // Only a write behind validation's back (an older version, a hand edit of the
    // database) can store one: the controller sets UnknownTimeZone and creates no runs.
    operator.kill_9();
    let store = open_store(&fixture).await;
    store
        .commit(vec![Change::Create {
            object: DesiredObject {
                key: ObjectKey::new(Kind::Schedule, "default", "mars"),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                spec: json!({
                    "pipelineRef": { "name": "quick" },
                    "every": "2s",
                    "timeZone": "Mars/Olympus_Mons"
                })
                .into(),
            },
            managed_by: Some("test".to_owned()),
            status: None,
        }])
        .await
        .expect("store the schedule directly");
    store.close().await;
    let operator = restart(&fixture, &mut api);
    let deadline = Instant::now() + Duration::from_secs(30);
    let condition = loop {
        let schedule = api.get_ok("/namespaces/default/schedules/mars").await;
        let ready = schedule["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned();
        if let Some(ready) = ready {
            break ready;
        }
        assert!(
            Instant::now() < deadline,
            "no Ready condition: {schedule:#}\n{}",
            operator.context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(condition["status"], "False", "{condition:#}");
    assert_eq!(condition["reason"], "UnknownTimeZone", "{condition:#}");
    wait_for_event(
        &api,
        &operator,
        "schedule/mars",
        "an UnknownTimeZone event",
        |e| e["reason"] == "UnknownTimeZone",
    )
    .await;
    // Three slots of `every: 2s` pass without a run.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let runs = api.runs_of("mars").await;
    assert!(runs.is_empty(), "no runs: {:?}", summary(&runs));
}

// ---------------------------------------------------------------------------------------
// Suspend

#[tokio::test]
async fn a_suspended_schedule_creates_nothing_and_resumes_with_one_catch_up_run() {
    let (_fixture, operator, api) = start("quick", QUICK).await;
    let applied_at = Utc::now();
    api.apply_ok(&schedule_yaml(
        "paused",
        "quick",
        &["every: 2s", "suspend: true", KEEP_ALL],
    ))
    .await;
    // Wait past at least two slots.
    sleep_until(slot_at_or_before(applied_at, 2) + chrono::Duration::seconds(5)).await;
    let runs = api.runs_of("paused").await;
    assert!(
        runs.is_empty(),
        "a suspended schedule creates no runs: {:?}",
        summary(&runs)
    );
    let out = operator.cli(&["get", "schedules"], Duration::from_secs(30));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(table_cell(&table, "paused", "SUSPEND"), "true", "{table}");

    let resumed_at = Utc::now();
    api.apply_ok(&schedule_yaml("paused", "quick", &["every: 2s", KEEP_ALL]))
        .await;
    let runs = wait_for_runs(
        &api,
        &operator,
        "paused",
        "a regular run after resuming",
        Duration::from_secs(60),
        |runs| {
            runs.iter()
                .filter(|r| slot(r) > resumed_at + chrono::Duration::seconds(2))
                .count()
                >= 1
        },
    )
    .await;
    // README: "After downtime or a suspension only the most recent missed slot runs"
    // (no startingDeadline here, so it always runs). The resume is evaluated at some
    // instant between `resumed_at` and the MissedSchedule event it records; the slots up
    // to that instant are the missed ones.
    let missed = wait_for_event(
        &api,
        &operator,
        "schedule/paused",
        "a MissedSchedule event for the slots missed while suspended",
        |e| e["reason"] == "MissedSchedule",
    )
    .await;
    let evaluated_by = time(&missed["firstSeen"]);
    // Nothing ran while suspended, so the earliest run is the catch-up.
    let catch_up = runs
        .iter()
        .min_by_key(|r| slot(r))
        .expect("a run after resuming");
    assert!(
        slot(catch_up) <= evaluated_by,
        "the first run after resuming is for a missed slot (at or before the resume's evaluation by {evaluated_by}), not merely the next one: {:?}",
        summary(&runs)
    );
    assert!(
        slot(catch_up) >= slot_at_or_before(resumed_at, 2),
        "the catch-up run {} is for the most recent missed slot (resumed at {resumed_at}), the only one that runs: {:?}",
        name(catch_up),
        summary(&runs)
    );
}

// ---------------------------------------------------------------------------------------
// Runs created ahead of their slot

/// `--schedule-lead` of the tests below: long enough that creating a container on a
/// loaded machine is over well before the slot.
const LEAD: &str = "8s";

/// A slot this many seconds ahead of now: the run is created `LEAD` before it.
const SLOT_IN: i64 = 14;

/// A fixture with pipeline `quick` and an operator that creates runs `LEAD` ahead.
async fn start_with_lead() -> (Fixture, Operator, Api) {
    let fixture = Fixture::new();
    fixture.write_pipeline("quick", QUICK, "", "");
    let operator = fixture.start_operator(&lead_options());
    operator.wait_for_pipeline("quick").await;
    let api = Api::connect(&operator);
    (fixture, operator, api)
}

fn lead_options() -> OperatorOptions {
    OperatorOptions {
        args: vec!["--schedule-lead".into(), LEAD.into()],
        ..OperatorOptions::default()
    }
}

/// A one-shot slot `SLOT_IN` seconds from now, on a whole second.
fn slot_ahead() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp() + SLOT_IN, 0).expect("a valid instant")
}

fn at(slot: DateTime<Utc>) -> String {
    format!("at: \"{}\"", slot.to_rfc3339())
}

/// Waits for the only run of `schedule`, then for its first attempt's container to be
/// created (not started); asserts both happened before `at_slot`. Returns the run.
async fn wait_created_ahead(
    api: &Api,
    operator: &Operator,
    schedule: &str,
    at_slot: DateTime<Utc>,
) -> Value {
    let runs = wait_for_runs(
        api,
        operator,
        schedule,
        "the run of the slot, created ahead of it",
        Duration::from_secs(60),
        |runs| !runs.is_empty(),
    )
    .await;
    assert_eq!(runs.len(), 1, "one run: {:?}", summary(&runs));
    let run = runs[0].clone();
    assert_eq!(slot(&run), at_slot, "the run stands for the slot");
    let container = container_name(uid(&run), 1);
    let state = operator
        .wait_until(
            &format!("container {container} to be created"),
            Duration::from_secs(60),
            || {
                let container = container.clone();
                async move { inspect_container(&container).map(|c| c["State"].clone()) }
            },
        )
        .await;
    let now = Utc::now();
    assert!(
        now < at_slot,
        "the container was created at {now}, not ahead of the slot {at_slot}"
    );
    assert_eq!(
        state["Status"], "created",
        "created ahead, not started: {state:#}"
    );
    // Read again: the attempt is claimed (and said to wait) before its container exists.
    operator.run(&name(&run)).await
}

/// Waits until the `which` run's container `container` is gone from Docker.
async fn wait_container_removed(operator: &Operator, container: &str, which: &str) {
    operator
        .wait_until(
            &format!("the {which} run's container {container} to be removed"),
            Duration::from_secs(60),
            || async move { inspect_container(container).is_none().then_some(()) },
        )
        .await;
}

#[tokio::test]
async fn a_run_created_ahead_starts_at_its_slot_once_even_after_kill_9_before_the_slot() {
    let (fixture, operator, mut api) = start_with_lead().await;
    let slot = slot_ahead();
    api.apply_ok(&schedule_yaml("ahead", "quick", &[&at(slot)]))
        .await;
    let run = wait_created_ahead(&api, &operator, "ahead", slot).await;
    let run_name = name(&run);
    assert_eq!(
        reason(&run),
        "WaitingForStart",
        "a run created ahead says so: {run:#}"
    );

    // Killed between the create and the slot: the restarted operator starts it once.
    operator.kill_9();
    let operator = fixture.start_operator(&lead_options());
    api.reattach(&operator);
    let finished = operator.wait_finished(&run_name).await;
    assert_eq!(phase(&finished), "Succeeded", "{finished:#}");
    assert_eq!(uid(&finished), uid(&run), "the same run");
    let attempts = attempts(&finished);
    assert_eq!(attempts.len(), 1, "one attempt: {finished:#}");
    let started = time(&attempts[0]["startedAt"]);
    assert!(
        started >= slot,
        "the container started at {started}, before its slot {slot}"
    );
    let log = operator.log(&run_name, 1).await;
    assert_eq!(
        log.matches(" tick").count(),
        1,
        "the pipeline ran once: {log}"
    );
    let runs = api.runs_of("ahead").await;
    assert_eq!(runs.len(), 1, "no second run: {:?}", summary(&runs));
    let events = api.events_for(&format!("runs/{run_name}")).await;
    assert_eq!(
        reasons(&events).iter().filter(|r| *r == "Started").count(),
        1,
        "started once: {events:#?}"
    );
}

/// Forbid and Replace decide at the slot only when a run of the schedule is active;
/// with none active when the lead begins, their runs are created ahead like Allow's
/// and start at the slot, once.
#[tokio::test]
async fn forbid_and_replace_schedules_with_nothing_active_get_their_run_ahead_too() {
    let (_fixture, operator, api) = start_with_lead().await;
    let slot = slot_ahead();
    for (schedule, policy) in [("forbid", "Forbid"), ("replace", "Replace")] {
        let policy = format!("concurrencyPolicy: {policy}");
        api.apply_ok(&schedule_yaml(schedule, "quick", &[&at(slot), &policy]))
            .await;
    }
    let mut ahead = Vec::new();
    for schedule in ["forbid", "replace"] {
        ahead.push((
            schedule,
            wait_created_ahead(&api, &operator, schedule, slot).await,
        ));
    }
    for (schedule, run) in ahead {
        let finished = operator.wait_finished(&name(&run)).await;
        assert_eq!(phase(&finished), "Succeeded", "{schedule}: {finished:#}");
        let attempts = attempts(&finished);
        assert_eq!(attempts.len(), 1, "{schedule}: one attempt: {finished:#}");
        let started = time(&attempts[0]["startedAt"]);
        assert!(
            started >= slot,
            "{schedule}: the container started at {started}, before its slot {slot}"
        );
        let runs = api.runs_of(schedule).await;
        assert_eq!(runs.len(), 1, "{schedule}: one run: {:?}", summary(&runs));
        let events = api.events_for(&format!("schedules/{schedule}")).await;
        let decided: Vec<_> = reasons(&events)
            .into_iter()
            .filter(|r| r == "RunAlreadyActive" || r == "RunReplaced")
            .collect();
        assert!(
            decided.is_empty(),
            "{schedule}: its own run neither skipped nor replaced the slot: {events:#?}"
        );
    }
}

#[tokio::test]
async fn a_run_created_ahead_is_withdrawn_when_its_schedule_changes_and_can_be_cancelled() {
    let (_fixture, operator, api) = start_with_lead().await;

    // Changed before the slot: the run made ahead and its container go, the new slot
    // gets its own run.
    let first = slot_ahead();
    api.apply_ok(&schedule_yaml("moved", "quick", &[&at(first)]))
        .await;
    let stale = wait_created_ahead(&api, &operator, "moved", first).await;
    let moved_to = first + chrono::Duration::seconds(2);
    api.apply_ok(&schedule_yaml("moved", "quick", &[&at(moved_to)]))
        .await;
    wait_for_event(&api, &operator, "schedules/moved", "RunWithdrawn", |e| {
        e["reason"] == "RunWithdrawn"
    })
    .await;
    wait_container_removed(&operator, &container_name(uid(&stale), 1), "withdrawn").await;
    let runs = wait_for_runs(
        &api,
        &operator,
        "moved",
        "the moved slot's run to finish",
        RUN_TIMEOUT,
        |runs| runs.len() == 1 && runs.iter().all(is_finished) && slot(&runs[0]) == moved_to,
    )
    .await;
    assert_ne!(uid(&runs[0]), uid(&stale), "a new run for the new slot");
    assert_eq!(phase(&runs[0]), "Succeeded", "{:#}", runs[0]);
    assert!(time(&attempts(&runs[0])[0]["startedAt"]) >= moved_to);

    // Cancelled before the slot: it ends Cancelled without ever starting.
    let second = slot_ahead();
    api.apply_ok(&schedule_yaml("cancelled", "quick", &[&at(second)]))
        .await;
    let run = wait_created_ahead(&api, &operator, "cancelled", second).await;
    operator.cancel(&name(&run)).await;
    let ended = operator.wait_finished(&name(&run)).await;
    assert_eq!(phase(&ended), "Cancelled", "{ended:#}");
    assert!(
        attempts(&ended).iter().all(|a| a["startedAt"].is_null()),
        "never started: {ended:#}"
    );
    wait_container_removed(&operator, &container_name(uid(&run), 1), "cancelled").await;
    // Its slot passes without a second run.
    sleep_until(second + chrono::Duration::seconds(1)).await;
    let runs = api.runs_of("cancelled").await;
    assert_eq!(
        runs.len(),
        1,
        "the slot's run is the cancelled one: {:?}",
        summary(&runs)
    );
}
