//! Two `flotilla serve` replicas on one PostgreSQL store (a real throwaway server), each
//! with its own data dir, on a real Docker engine through the socket proxy: one leader
//! runs the controllers, the follower serves the API; when the leader is killed (-9) in
//! the middle of a run, the follower takes the lease over and finishes the run, which
//! was started once and stores every line once.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::docker::{
    Fixture, Operator, OperatorOptions, WAITS_FOR_GO, forty_lines, phase, stdout_lines, uid,
};
use support::postgres::PgServer;

const TTL: &str = "6s";
const RENEW: &str = "1s";

async fn leader_view(op: &Operator) -> Value {
    let (status, body) = op.get_text("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).expect("readyz JSON");
    ready["leader"].clone()
}

/// Docker `start` events of `container` since `since` (seconds since the epoch).
fn starts_of(container: &str, since: i64) -> usize {
    let out = Command::new("docker")
        .args([
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &chrono::Utc::now().timestamp().saturating_add(1).to_string(),
            "--filter",
            &format!("container={container}"),
            "--filter",
            "event=start",
            "--format",
            "{{.Action}}",
        ])
        .output()
        .expect("docker events");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == "start")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_leader_runs_the_controllers_and_a_follower_takes_over_a_killed_leader() {
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let f = Fixture::new();
    f.write_pipeline("waits", WAITS_FOR_GO, "", "");
    let replica = |data_dir: Option<std::path::PathBuf>| OperatorOptions {
        args: vec![
            "--database".into(),
            url.clone(),
            "--lease-ttl".into(),
            TTL.into(),
            "--lease-renew-interval".into(),
            RENEW.into(),
        ],
        data_dir,
        ..OperatorOptions::default()
    };
    let since = chrono::Utc::now().timestamp() - 1;
    let first = f.start_operator(&replica(None));
    first
        .wait_until(
            "the first replica to lead",
            Duration::from_secs(30),
            || async { (leader_view(&first).await["self"] == true).then_some(()) },
        )
        .await;
    let other_dir = f.scratch("replica-b-data");
    let second = f.start_operator(&replica(Some(other_dir)));
    let seen_by_second = leader_view(&second).await;
    let seen_by_first = leader_view(&first).await;
    assert_eq!(seen_by_second["self"], false, "{seen_by_second}");
    assert_eq!(seen_by_second["holder"], seen_by_first["holder"]);
    let first_epoch = seen_by_first["epoch"].as_i64().expect("epoch");
    assert_eq!(second.metric("leader").await, 0.0);
    assert_eq!(first.metric("leader").await, 1.0);
    // `flotilla get leader` against the follower names the leader and itself.
    let out = second.cli(&["get", "leader", "-o", "json"], Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("get leader JSON");
    assert_eq!(answer["holder"], seen_by_first["holder"], "{answer}");
    assert_eq!(answer["epoch"], first_epoch, "{answer}");
    assert_ne!(answer["answeredBy"], answer["holder"], "{answer}");
    let table = second.cli(&["get", "leader"], Duration::from_secs(30));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("EPOCH")
            && table.contains(seen_by_first["holder"].as_str().expect("holder")),
        "{table}"
    );

    // Created through the follower's API, run by the leader's controller.
    first.wait_for_pipeline("waits").await;
    let run = second.create_run("waits", &[]).await;
    let container = first.wait_for_line(&run, "line 20").await;

    let killed = Instant::now();
    first.kill_9();
    let taken_over = second
        .wait_until(
            "the follower to take the lease over",
            Duration::from_secs(30),
            || async {
                let view = leader_view(&second).await;
                (view["self"] == true).then_some(view)
            },
        )
        .await;
    eprintln!(
        "takeover after {:?} (ttl {TTL}, renewals every {RENEW})",
        killed.elapsed()
    );
    assert!(
        taken_over["epoch"].as_i64().expect("epoch") > first_epoch,
        "a new holder takes a new epoch: {taken_over}"
    );
    assert_eq!(second.metric("leader").await, 1.0);

    std::fs::write(f.pipelines_dir().join("waits/go"), "").expect("release");
    let finished = second.wait_succeeded(&run).await;
    let expected = forty_lines();
    // The new leader stored the whole output in its own data dir.
    assert_eq!(stdout_lines(&second.log(&run, 1).await), expected);
    assert_eq!(
        finished["status"]["attempts"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(uid(&finished), uid(&second.run(&run).await));
    assert_eq!(
        starts_of(&container, since),
        1,
        "the container started once"
    );

    // The new leader runs new work too.
    let after = second.create_run("waits", &[]).await;
    second.wait_succeeded(&after).await;
    assert_eq!(stdout_lines(&second.log(&after, 1).await), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lease_has_one_holder_and_a_new_epoch_for_each_new_holder() {
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let store = flotilla::store::Store::connect(&url)
        .await
        .expect("open the store");
    assert!(store.is_shared());
    let lease = "test-lease";
    assert_eq!(store.lease(lease).await.expect("read"), None);
    // A takes it (epoch 1) and renews it; B is refused while it runs.
    assert_eq!(
        store.take_lease(lease, "a", 60_000).await.expect("take"),
        Some(1)
    );
    assert_eq!(
        store.take_lease(lease, "b", 60_000).await.expect("take"),
        None
    );
    assert_eq!(
        store.take_lease(lease, "a", 300).await.expect("renew"),
        Some(1)
    );
    let held = store.lease(lease).await.expect("read").expect("a lease");
    assert_eq!(
        (held.holder.as_str(), held.epoch, held.ttl_ms),
        ("a", 1, 300)
    );
    assert!((0..300).contains(&held.age_ms), "{held:?}");
    // Once A's 300 ms have run out on the database's clock, B takes it with epoch 2.
    let deadline = Instant::now() + Duration::from_secs(30);
    let epoch = loop {
        if let Some(epoch) = store.take_lease(lease, "b", 60_000).await.expect("take") {
            break epoch;
        }
        assert!(Instant::now() < deadline, "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(epoch, 2);
    assert_eq!(
        store.take_lease(lease, "a", 60_000).await.expect("take"),
        None
    );
    store.close().await;
}

// ---------------------------------------------------------------------------------------
// Failure windows of the leader. Each pauses the leader at an exact step (the operator's
// test pause points, `FLOTILLA_TEST_PAUSE_AT`), then does the real thing to it: kill -9,
// SIGSTOP past the ttl, or cutting it off from PostgreSQL.

/// Options of a replica on `url`, pausing at `pause` (a point and the directory where
/// it marks it reached and waits for its release).
fn replica(
    url: &str,
    data_dir: Option<std::path::PathBuf>,
    pause: Option<(&str, &std::path::Path)>,
) -> OperatorOptions {
    let env = pause
        .map(|(point, dir)| {
            vec![
                ("FLOTILLA_TEST_PAUSE_AT".to_owned(), point.to_owned()),
                (
                    "FLOTILLA_TEST_PAUSE_DIR".to_owned(),
                    dir.display().to_string(),
                ),
            ]
        })
        .unwrap_or_default();
    OperatorOptions {
        args: vec![
            "--database".into(),
            url.to_owned(),
            "--lease-ttl".into(),
            TTL.into(),
            "--lease-renew-interval".into(),
            RENEW.into(),
        ],
        data_dir,
        env,
        ..OperatorOptions::default()
    }
}

async fn wait_leading(op: &Operator) -> i64 {
    op.wait_until("the replica to lead", Duration::from_secs(60), || async {
        let view = leader_view(op).await;
        (view["self"] == true).then(|| view["epoch"].as_i64().expect("epoch"))
    })
    .await
}

async fn wait_paused(op: &Operator, dir: &std::path::Path, point: &str) {
    let marker = dir.join(format!("{point}.reached"));
    op.wait_until(
        &format!("the leader to reach {point}"),
        Duration::from_secs(60),
        || async { marker.exists().then_some(()) },
    )
    .await;
}

/// Waits (60 s at most) for `operator` to exit by itself with an error; returns its log.
async fn exits_with_error(operator: &mut Operator, what: &str) -> String {
    let status = operator.wait_exit(Duration::from_secs(60)).await;
    let log = operator.log_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "{what}: {status:?}\n{log}"
    );
    log
}

/// Waits (up to `seconds`) until Docker no longer has `container`.
async fn wait_gone(op: &Operator, container: &str, what: &str, seconds: u64) {
    op.wait_until(
        &format!("{what} to be removed"),
        Duration::from_secs(seconds),
        || async {
            support::docker::inspect_container(container)
                .is_none()
                .then_some(())
        },
    )
    .await;
}

fn release(dir: &std::path::Path, point: &str) {
    std::fs::write(dir.join(format!("{point}.go")), "").expect("release the pause point");
}

fn epoch_label(container: &str) -> Option<i64> {
    support::docker::inspect_container(container)?["Config"]["Labels"]["flotilla.dev/epoch"]
        .as_str()?
        .parse()
        .ok()
}

fn signal(op: &Operator, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &op.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// The leader is killed right after `point` (the attempt claimed in the store, or its
/// container created too); the next leader finishes the run with the same attempt, its
/// container started exactly once.
async fn leader_killed_at(point: &str) {
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let f = Fixture::new();
    f.write_pipeline("waits", WAITS_FOR_GO, "", "");
    let pauses = f.scratch("pauses");
    let since = chrono::Utc::now().timestamp() - 1;
    let first = f.start_operator(&replica(&url, None, Some((point, &pauses))));
    let first_epoch = wait_leading(&first).await;
    let second = f.start_operator(&replica(&url, Some(f.scratch("replica-b")), None));
    first.wait_for_pipeline("waits").await;
    let run = second.create_run("waits", &[]).await;
    wait_paused(&first, &pauses, point).await;

    // The claim is in the store before any container exists.
    let claimed = second.run(&run).await;
    let attempt = &support::docker::attempts(&claimed)[0];
    assert_eq!(attempt["number"], 1, "{claimed:#}");
    assert_eq!(attempt["epoch"], first_epoch, "{claimed:#}");
    assert!(attempt.get("startedAt").is_none(), "{claimed:#}");
    let container = attempt["container"].as_str().expect("container").to_owned();
    let created_by_first = support::docker::inspect_container(&container).is_some();
    assert_eq!(created_by_first, point == "after-create", "{point}");

    first.kill_9();
    let second_epoch = wait_leading(&second).await;
    assert!(second_epoch > first_epoch);
    assert_eq!(second.wait_for_line(&run, "line 20").await, container);
    let creator = epoch_label(&container);
    std::fs::write(f.pipelines_dir().join("waits/go"), "").expect("release");
    let finished = second.wait_succeeded(&run).await;
    assert_eq!(
        creator,
        Some(if created_by_first {
            first_epoch
        } else {
            second_epoch
        }),
        "the container is labelled with the epoch of the leader that created it"
    );
    assert_eq!(
        support::docker::attempts(&finished).len(),
        1,
        "{finished:#}"
    );
    assert_eq!(stdout_lines(&second.log(&run, 1).await), forty_lines());
    assert_eq!(
        starts_of(&container, since),
        1,
        "the container started once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_after_claiming_an_attempt_leaves_it_to_the_next_leader() {
    leader_killed_at("after-claim").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_after_creating_a_container_leaves_it_to_be_started_once() {
    leader_killed_at("after-create").await;
}

/// How a paused leader is taken out of the game.
enum Isolation {
    /// SIGSTOP until the other replica has finished the run, then SIGCONT.
    Stopped,
    /// Its connections to PostgreSQL stall (a proxy stops forwarding, sockets stay open).
    CutOff,
}

/// The leader claimed an attempt and is about to create its container when it is
/// isolated past the ttl; the other replica takes over and runs the attempt.
/// - Stopped: when the old leader comes back to its create, it is fenced: it creates and
///   starts nothing, and exits saying it lost the lease.
/// - Cut off: it cannot renew, so it stops acting and exits on its own (the create it
///   was about to make is dropped when its shutdown gives up waiting), whatever the
///   other replica does.
async fn deposed_leader_acts_on_nothing(isolation: Isolation) {
    let postgres = PgServer::start();
    let direct = postgres.create_database().await;
    let proxy = StallingProxy::start(&direct).await;
    let f = Fixture::new();
    f.write_pipeline("waits", WAITS_FOR_GO, "", "");
    let pauses = f.scratch("pauses");
    let point = "before-create";
    let since = chrono::Utc::now().timestamp() - 1;
    let first_url = match isolation {
        Isolation::Stopped => direct.clone(),
        Isolation::CutOff => proxy.url(),
    };
    let mut first = f.start_operator(&replica(&first_url, None, Some((point, &pauses))));
    let first_epoch = wait_leading(&first).await;
    let second = f.start_operator(&replica(&direct, Some(f.scratch("replica-b")), None));
    first.wait_for_pipeline("waits").await;
    let run = second.create_run("waits", &[]).await;
    wait_paused(&first, &pauses, point).await;
    match isolation {
        Isolation::Stopped => signal(&first, "STOP"),
        Isolation::CutOff => {
            proxy.stall();
            let log = exits_with_error(&mut first, "cut off, the leader exits on its own").await;
            assert!(
                log.contains("lost the controller lease")
                    && log.contains("the controllers did not stop within 10 s"),
                "it gave the lease up and dropped the create it was waiting to make:\n{log}"
            );
        }
    }

    let second_epoch = wait_leading(&second).await;
    assert!(second_epoch > first_epoch);
    let container = second.wait_for_line(&run, "line 20").await;
    assert_eq!(epoch_label(&container), Some(second_epoch));
    std::fs::write(f.pipelines_dir().join("waits/go"), "").expect("release");
    let finished = second.wait_succeeded(&run).await;
    // Its tombstone gone, the container's name is free: a create by the old leader would
    // now make and start a second container of the attempt.
    wait_gone(&second, &container, "the finished attempt's tombstone", 120).await;

    if let Isolation::Stopped = isolation {
        // The old leader comes back exactly where it stopped: about to create the
        // container.
        release(&pauses, point);
        signal(&first, "CONT");
        let log = exits_with_error(&mut first, "the deposed leader exits with an error").await;
        assert!(
            support::docker::inspect_container(&container).is_none(),
            "the deposed leader created nothing"
        );
        assert!(
            log.contains("lost the controller lease"),
            "the deposed leader says why it exits:\n{log}"
        );
        assert!(
            log.contains("store.fenced"),
            "the deposed leader's create was refused by the fence:\n{log}"
        );
    }
    assert!(support::docker::inspect_container(&container).is_none());
    assert_eq!(
        starts_of(&container, since),
        1,
        "the container started once"
    );
    assert_eq!(
        support::docker::attempts(&finished).len(),
        1,
        "{finished:#}"
    );
    assert_eq!(stdout_lines(&second.log(&run, 1).await), forty_lines());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_stopped_past_its_lease_creates_nothing_when_it_continues() {
    deposed_leader_acts_on_nothing(Isolation::Stopped).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_postgres_stops_acting_and_exits_on_its_own() {
    deposed_leader_acts_on_nothing(Isolation::CutOff).await;
}

/// A TCP proxy in front of PostgreSQL that can stall: it stops forwarding in both
/// directions but keeps every socket open, as a partition does (no reset, no error:
/// only timeouts tell).
struct StallingProxy {
    /// The database URL through the proxy.
    url: String,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl StallingProxy {
    /// A proxy to the server of `url` (`postgres://user@host:port/database`).
    async fn start(url: &str) -> Self {
        let (prefix, rest) = url.split_once('@').expect("user@ in the database URL");
        let (target, database) = rest.split_once('/').expect("/database in the URL");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let (target, stalled) = (target.to_owned(), stalled.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (target, stalled) = (target.clone(), stalled.clone());
                    tokio::spawn(async move {
                        let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                            return;
                        };
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(
                            pump(client_read, server_write, stalled.clone()),
                            pump(server_read, client_write, stalled)
                        );
                    });
                }
            })
        };
        Self {
            url: format!("{prefix}@{address}/{database}"),
            stalled,
            task,
        }
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn stall(&self) {
        self.stalled
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes until either side closes; once `stalled`, holds what it reads.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if stalled.load(std::sync::atomic::Ordering::SeqCst) {
            // Partitioned: nothing gets through any more, and nothing is closed.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// Runs by schedule: schedule name → slot (minutes since the epoch) → run uids.
async fn scheduled_runs(
    op: &Operator,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<i64, Vec<String>>> {
    let (status, list) = op.get("/namespaces/default/runs").await;
    assert_eq!(status, 200, "{list}");
    let mut runs: std::collections::BTreeMap<_, std::collections::BTreeMap<_, Vec<_>>> =
        Default::default();
    for run in list["items"].as_array().expect("items") {
        let name = run["metadata"]["name"].as_str().expect("name");
        let Some(schedule) = run["metadata"]["labels"]["flotilla.dev/schedule"].as_str() else {
            continue;
        };
        let slot: i64 = name
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a slot number ends the run name");
        runs.entry(schedule.to_owned())
            .or_default()
            .entry(slot)
            .or_default()
            .push(uid(run).to_owned());
    }
    runs
}

/// 1,000 every-minute schedules; the leader is killed -9 in the middle of a slot (its
/// runs created, the schedules' statuses not yet written). The next leader creates no
/// second run for that slot and one run for each schedule in the next slot.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_every_minute_schedules_get_one_run_per_slot_across_a_leader_killed_mid_slot() {
    const SCHEDULES: usize = 1000;
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let f = Fixture::new();
    // The pipeline does not exist: the runs wait (PipelineNotFound) and no container is
    // made; only the schedule controller's work is measured here.
    let manifests: Vec<String> = (0..SCHEDULES)
        .map(|i| {
            format!(
                "apiVersion: flotilla.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: s{i:04}\nspec:\n  pipelineRef: {{ name: absent }}\n  cron: \"* * * * *\"\n"
            )
        })
        .collect();
    f.write_manifest("schedules.yaml", &manifests.join("---\n"));
    let pauses = f.scratch("pauses");
    let point = "after-slot-runs";
    let first = f.start_operator(&replica(&url, None, Some((point, &pauses))));
    wait_leading(&first).await;
    let second = f.start_operator(&replica(&url, Some(f.scratch("replica-b")), None));
    first
        .wait_until(
            "the leader to create a slot's runs",
            Duration::from_secs(180),
            || async {
                pauses
                    .join(format!("{point}.reached"))
                    .exists()
                    .then_some(())
            },
        )
        .await;
    let before = scheduled_runs(&second).await;
    assert_eq!(
        before.len(),
        SCHEDULES,
        "every schedule has its run of the slot"
    );
    let slot = *before
        .values()
        .next()
        .and_then(|slots| slots.keys().next())
        .expect("a slot");
    for (schedule, slots) in &before {
        assert_eq!(
            slots.keys().copied().collect::<Vec<_>>(),
            vec![slot],
            "{schedule}"
        );
    }
    first.kill_9();
    wait_leading(&second).await;

    let after = second
        .wait_until(
            "every schedule's run of the next slot",
            Duration::from_secs(180),
            || async {
                let runs = scheduled_runs(&second).await;
                runs.values()
                    .all(|slots| slots.contains_key(&(slot + 1)))
                    .then_some(runs)
            },
        )
        .await;
    assert_eq!(after.len(), SCHEDULES);
    for (schedule, slots) in &after {
        assert_eq!(
            slots.keys().copied().collect::<Vec<_>>(),
            vec![slot, slot + 1],
            "{schedule}: one run per slot, none missed"
        );
        assert!(slots.values().all(|uids| uids.len() == 1), "{schedule}");
        assert_eq!(
            slots[&slot], before[schedule][&slot],
            "{schedule}: the killed leader's run of the slot is kept, not made again"
        );
    }
}

/// Reads NDJSON watch events from `response` until `wanted` accepts one; returns it.
async fn watch_until(
    response: &mut reqwest::Response,
    timeout: Duration,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    let mut buffer = Vec::new();
    loop {
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            if let Ok(event) = serde_json::from_slice::<Value>(&line)
                && wanted(&event)
            {
                return event;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(chunk))) => buffer.extend_from_slice(&chunk),
            Ok(other) => panic!("the watch ended: {other:?}"),
            Err(_) => panic!("no wanted watch event within {timeout:?}"),
        }
    }
}

/// A replica that does not lead serves what the leader writes as it commits: its watch
/// streams the status writes of the leader's run controller and the leader's deletes,
/// its reads and pages show them. The replicas poll for each other's writes only once an hour here, so what
/// arrives came through the commit notifications.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_serves_the_leaders_writes_as_they_commit() {
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let f = Fixture::new();
    f.write_pipeline("waits", WAITS_FOR_GO, "", "");
    std::fs::write(f.pipelines_dir().join("waits/go"), "").expect("release");
    let options = |data_dir| {
        let mut options = replica(&url, data_dir, None);
        options
            .args
            .extend(["--follow-poll-interval".to_owned(), "1h".to_owned()]);
        options
    };
    let leader = f.start_operator(&options(None));
    wait_leading(&leader).await;
    let follower = f.start_operator(&options(Some(f.scratch("replica-b"))));
    assert_eq!(leader_view(&follower).await["self"], false);
    leader.wait_for_pipeline("waits").await;
    // Read once, so the follower's page cache holds the page the run must appear on.
    let (status, page) = follower.get("/namespaces/default/runs?limit=10").await;
    assert_eq!(status, 200, "{page}");

    let mut watch = reqwest::Client::new()
        .get(follower.api("/namespaces/default/runs?watch=true"))
        .bearer_auth(follower.token())
        .send()
        .await
        .expect("open the watch");
    assert_eq!(watch.status(), 200);
    let run = leader.create_run("waits", &[]).await;
    let event = watch_until(&mut watch, Duration::from_secs(60), |event| {
        event["object"]["metadata"]["name"] == run.as_str()
            && event["object"]["status"]["phase"] == "Succeeded"
    })
    .await;
    assert_eq!(event["type"], "MODIFIED", "{event}");
    assert_eq!(phase(&follower.run(&run).await), "Succeeded");
    let (status, page) = follower.get("/namespaces/default/runs?limit=10").await;
    assert_eq!(status, 200, "{page}");
    let listed = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["metadata"]["name"] == run.as_str())
        .unwrap_or_else(|| panic!("the run is on the follower's page: {page}"));
    assert_eq!(phase(listed), "Succeeded");

    // Deletes too.
    leader.delete_run(&run).await;
    let deleted = watch_until(&mut watch, Duration::from_secs(60), |event| {
        event["object"]["metadata"]["name"] == run.as_str() && event["type"] == "DELETED"
    })
    .await;
    assert_eq!(uid(&deleted["object"]), uid(&event["object"]));
    let (status, _) = follower
        .get(&format!("/namespaces/default/runs/{run}"))
        .await;
    assert_eq!(status, 404);
}

/// Two stores on one database, as two replicas hold them: each one's feed announces the
/// other's create, status write and delete once, and its own writes once (as written,
/// not again when read back).
#[tokio::test(flavor = "multi_thread")]
async fn each_replica_feed_carries_every_write_once() {
    use flotilla::resource::{Change, DesiredObject, Kind, ObjectKey};
    use flotilla::store::{ChangeKind, Store};
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let (a, b) = (
        Store::connect(&url).await.expect("open a"),
        Store::connect(&url).await.expect("open b"),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Catch-up polls far apart: what arrives comes through the notifications.
    for store in [&a, &b] {
        store.follow_other_writers(Duration::from_secs(3600), shutdown.clone());
    }
    let (mut seen_by_a, mut seen_by_b) = (a.subscribe(), b.subscribe());
    let create = |name: &str| {
        vec![Change::Create {
            object: DesiredObject {
                key: ObjectKey::new(Kind::Pipeline, "default", name),
                labels: Default::default(),
                annotations: Default::default(),
                spec: serde_json::json!({"entrypoint": "main.py"}).into(),
            },
            managed_by: None,
            status: None,
        }]
    };
    // Each follows the other before the writes under test: a sentinel write of the
    // other arrives (written again until one does: a follower that started after a
    // write counts it as past).
    for (writer, name, feed) in [
        (&a, "ready-a", &mut seen_by_b),
        (&b, "ready-b", &mut seen_by_a),
    ] {
        let mut tries = 0;
        'wait: loop {
            tries += 1;
            assert!(tries <= 60, "{name} never reached the other store's feed");
            writer
                .commit(create(&format!("{name}-{tries}")))
                .await
                .expect("sentinel");
            while let Ok(Ok(event)) =
                tokio::time::timeout(Duration::from_millis(500), feed.recv()).await
            {
                if event.key.name.starts_with(name) {
                    break 'wait;
                }
            }
        }
    }
    // A sentinel written more than once may still arrive from the other store: the
    // writes under test are told apart from them by name.
    let sentinel = |event: &flotilla::store::StoreEvent| event.key.name.starts_with("ready-");
    // B reads rows as they are when notified, so it is heard after each write (three
    // writes in a row may reach it as their last state only).
    let mut by_b = Vec::new();
    let mut heard_by_b = async || loop {
        let event = tokio::time::timeout(Duration::from_secs(30), seen_by_b.recv())
            .await
            .expect("b hears of a's writes")
            .expect("feed open");
        if !sentinel(&event) {
            return event.change;
        }
    };
    let key = ObjectKey::new(Kind::Pipeline, "default", "p");
    let created = a.commit(create("p")).await.expect("create").remove(0);
    by_b.push(heard_by_b().await);
    let status = a
        .update_status(
            &key,
            Some(created.resource_version),
            serde_json::json!({"x": 1}),
        )
        .await
        .expect("status");
    by_b.push(heard_by_b().await);
    a.delete(&key, Some(status.resource_version))
        .await
        .expect("delete");
    by_b.push(heard_by_b().await);
    let expected = [
        ChangeKind::Added,
        ChangeKind::StatusModified,
        ChangeKind::Deleted,
    ];
    // B cannot tell a status write from another update when reading the row back.
    assert_eq!(
        by_b,
        vec![ChangeKind::Added, ChangeKind::Modified, ChangeKind::Deleted]
    );
    let by_a: Vec<ChangeKind> = std::iter::from_fn(|| seen_by_a.try_recv().ok())
        .filter(|e| !sentinel(e))
        .map(|e| e.change)
        .collect();
    assert_eq!(by_a, expected);
    // B's write reaches A, then nothing more is pending on A: A's own writes, read back
    // by its poll, were not announced a second time.
    b.commit(create("q")).await.expect("create q");
    let next = loop {
        let event = tokio::time::timeout(Duration::from_secs(30), seen_by_a.recv())
            .await
            .expect("a hears of b's write")
            .expect("feed open");
        if !sentinel(&event) {
            break event;
        }
    };
    assert_eq!(next.key.name, "q", "{next:?}");
    assert!(
        std::iter::from_fn(|| seen_by_a.try_recv().ok())
            .find(|e| !sentinel(e))
            .is_none()
    );
    shutdown.cancel();
}

/// A container of an attempt the store does not record, carrying an epoch label (what a
/// deposed leader whose claim never landed would leave), is removed with a
/// `StaleContainer` Warning event; the run's recorded attempt is not disturbed.
#[tokio::test(flavor = "multi_thread")]
async fn a_container_no_claim_covers_is_removed_as_stale() {
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let f = Fixture::new();
    f.write_pipeline("waits", WAITS_FOR_GO, "", "");
    let leader = f.start_operator(&replica(&url, None, None));
    let epoch = wait_leading(&leader).await;
    leader.wait_for_pipeline("waits").await;
    let run = leader.create_run("waits", &[]).await;
    let container = leader.wait_for_line(&run, "line 20").await;
    let (status, ready) = leader.get_text("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let ready: Value = serde_json::from_str(&ready).expect("readyz JSON");
    let run_object = leader.run(&run).await;
    let run_uid = uid(&run_object).to_owned();
    // Attempt 2 under an older epoch, never claimed in the store.
    let stale = format!("flotilla-{run_uid}-2");
    f.remove_on_drop(&stale);
    let labels = [
        format!("flotilla.dev/run={run_uid}"),
        format!("flotilla.dev/run-name=default/{run}"),
        "flotilla.dev/attempt=2".to_owned(),
        format!(
            "flotilla.dev/store={}",
            ready["storeIdentity"].as_str().expect("identity")
        ),
        format!("flotilla.dev/epoch={}", epoch - 1),
        format!("{}={}", support::docker::MANAGED_BY, f.instance()),
    ];
    let mut args = vec!["run", "-d", "--name", &stale];
    for label in &labels {
        args.extend(["--label", label]);
    }
    args.extend([
        "--entrypoint",
        "sleep",
        support::docker::RUNNER_IMAGE,
        "600",
    ]);
    support::docker::docker_ok(&args);

    wait_gone(&leader, &stale, "the stale container", 90).await;
    let (status, events) = leader
        .get(&format!("/namespaces/default/events?for=run/{run}"))
        .await;
    assert_eq!(status, 200, "{events}");
    let warning = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["reason"] == "StaleContainer")
        .unwrap_or_else(|| panic!("a StaleContainer event: {events:#}"));
    assert_eq!(warning["type"], "Warning", "{warning}");
    assert!(
        warning["message"]
            .as_str()
            .is_some_and(|m| m.contains(&stale)),
        "{warning}"
    );
    std::fs::write(f.pipelines_dir().join("waits/go"), "").expect("release");
    let finished = leader.wait_succeeded(&run).await;
    let attempts = support::docker::attempts(&finished);
    assert_eq!(attempts.len(), 1, "{finished:#}");
    assert_eq!(attempts[0]["container"], container.as_str());
}

/// A leader stopped with SIGTERM (a rolling restart) gives the lease up once its
/// controllers have stopped: the follower takes over at its next try, long before the
/// 60 s ttl would have run out.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_shut_down_gracefully_hands_the_lease_over() {
    let postgres = PgServer::start();
    let url = postgres.create_database().await;
    let f = Fixture::new();
    let options = |data_dir| OperatorOptions {
        args: vec![
            "--database".into(),
            url.clone(),
            "--lease-ttl".into(),
            "60s".into(),
            "--lease-renew-interval".into(),
            "1s".into(),
        ],
        data_dir,
        ..OperatorOptions::default()
    };
    let mut first = f.start_operator(&options(None));
    let first_epoch = wait_leading(&first).await;
    let second = f.start_operator(&options(Some(f.scratch("replica-b"))));
    assert_eq!(leader_view(&second).await["self"], false);
    signal(&first, "TERM");
    let status = first.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        first.log_text()
    );
    assert!(
        first.log_text().contains("gave the controller lease up"),
        "{}",
        first.log_text()
    );
    let epoch = second
        .wait_until(
            "the follower to take the released lease (the ttl is 60 s)",
            Duration::from_secs(30),
            || async {
                let view = leader_view(&second).await;
                (view["self"] == true).then(|| view["epoch"].as_i64().expect("epoch"))
            },
        )
        .await;
    assert!(epoch > first_epoch);
}
