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
    Fixture, Operator, OperatorOptions, WAITS_FOR_GO, forty_lines, stdout_lines, uid,
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
