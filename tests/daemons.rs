//! Long-running pipelines (`spec.restart`) on a real Docker engine through the socket
//! proxy: crash loops back off (CrashLoopBackOff), periodic restarts, every attempt's
//! log kept, cancel stops a daemon for good, and kill -9 of the operator never leaves
//! two copies running.

#[allow(dead_code)]
mod support;

use flotilla::controller::runtime::labels;
use serde_json::Value;
use support::docker::{
    Fixture, Operator, OperatorOptions, RUN_TIMEOUT, attempts, docker_ok, phase, reason, time, uid,
};

/// Prints its attempt, then exits with `EXIT` after `SLEEP` seconds.
const CRASHES: &str = r#"import os, sys, time
print(f"attempt {os.environ['FLOTILLA_ATTEMPT']} up", flush=True)
time.sleep(float(os.environ.get("SLEEP", "0")))
sys.exit(int(os.environ.get("EXIT", "1")))
"#;

/// Runs until stopped.
const FOREVER: &str = r#"import os, time
print(f"attempt {os.environ['FLOTILLA_ATTEMPT']} up", flush=True)
while True:
    time.sleep(0.2)
"#;

/// Waits until the run's attempt `count` has started; returns it.
async fn wait_attempts(operator: &Operator, name: &str, count: usize) -> Value {
    operator
        .wait_until(
            &format!("{count} attempts of {name}"),
            RUN_TIMEOUT * 2,
            || async {
                let run = operator.run(name).await;
                let started = attempts(&run)
                    .get(count - 1)
                    .is_some_and(|a| a["startedAt"].is_string());
                started.then_some(run)
            },
        )
        .await
}

/// Cancels the run and checks it ends for good, with its containers gone.
async fn cancel_for_good(fixture: &Fixture, operator: &Operator, name: &str) {
    operator.cancel(name).await;
    let run = operator.wait_finished(name).await;
    assert_eq!(phase(&run), "Cancelled", "{run:#}");
    fixture.wait_no_containers(RUN_TIMEOUT).await;
    let after = operator.run(name).await;
    assert_eq!(
        attempts(&after).len(),
        attempts(&run).len(),
        "no attempt after cancel"
    );
}

/// Attempts are numbered 1…n and never overlapped in time.
fn one_at_a_time(run: &Value) {
    let list = attempts(run);
    for (i, attempt) in list.iter().enumerate() {
        assert_eq!(attempt["number"], i as u64 + 1, "{run:#}");
        if let Some(next) = list.get(i + 1)
            && next["startedAt"].is_string()
        {
            assert!(
                time(&attempt["finishedAt"]) <= time(&next["startedAt"]),
                "attempt {} overlaps the next: {run:#}",
                i + 1
            );
        }
    }
}

#[tokio::test]
async fn a_crashing_daemon_backs_off_doubling_and_keeps_every_attempts_log() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "crasher",
        CRASHES,
        "",
        "restart: { policy: OnFailure, cooldown: 2s }",
    );
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("crasher").await;
    let name = operator.create_run("crasher", &[]).await;

    // After the second crash in a row the status says so, with the doubled wait.
    let looping = operator
        .wait_until("CrashLoopBackOff", RUN_TIMEOUT, || async {
            let run = operator.run(&name).await;
            (reason(&run) == "CrashLoopBackOff").then_some(run)
        })
        .await;
    assert_eq!(phase(&looping), "Pending", "{looping:#}");
    let list = attempts(&looping);
    let last_end = time(&list[list.len() - 1]["finishedAt"]);
    let next_at = time(&looping["status"]["nextAttemptAt"]);
    assert_eq!(
        (next_at - last_end).num_seconds(),
        2 * 2i64.pow(list.len() as u32 - 1),
        "{looping:#}"
    );

    let run = wait_attempts(&operator, &name, 3).await;
    let list = attempts(&run);
    // The second attempt waited the cooldown, the third twice as long.
    let gap = |i: usize| time(&list[i + 1]["startedAt"]) - time(&list[i]["finishedAt"]);
    assert!(gap(0) >= chrono::Duration::seconds(2), "{run:#}");
    assert!(gap(1) >= chrono::Duration::seconds(4), "{run:#}");
    one_at_a_time(&run);
    for attempt in 1..=3 {
        let log = operator.log(&name, attempt).await;
        assert!(log.contains(&format!("attempt {attempt} up")), "{log}");
    }
    // Each restart is an event: the first after the cooldown, the next in a loop.
    let (_, events) = operator
        .get(&format!("/namespaces/default/events?for=run/{name}"))
        .await;
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"Restarting"), "{events:#}");
    assert!(reasons.contains(&"CrashLoopBackOff"), "{events:#}");
    cancel_for_good(&fixture, &operator, &name).await;
}

#[tokio::test]
async fn on_failure_ends_a_daemon_that_exits_0() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "finishes",
        CRASHES,
        "",
        "env: { EXIT: \"0\" }\nrestart: { policy: OnFailure, cooldown: 1s }",
    );
    fixture.write_pipeline(
        "always",
        CRASHES,
        "",
        "env: { EXIT: \"0\" }\nrestart: { cooldown: 1s }",
    );
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("always").await;
    let finishes = operator.create_run("finishes", &[]).await;
    let run = operator.wait_finished(&finishes).await;
    assert_eq!(phase(&run), "Succeeded", "{run:#}");
    assert_eq!(attempts(&run).len(), 1);
    // Always restarts a clean exit too.
    let always = operator.create_run("always", &[]).await;
    let run = wait_attempts(&operator, &always, 2).await;
    assert_eq!(attempts(&run)[0]["exitCode"], 0, "{run:#}");
    cancel_for_good(&fixture, &operator, &always).await;
}

#[tokio::test]
async fn a_periodic_restart_stops_and_restarts_a_running_daemon() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "worker",
        FOREVER,
        "",
        "restart: { policy: OnFailure, periodic: 3s }",
    );
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("worker").await;
    let name = operator.create_run("worker", &[]).await;
    let run = wait_attempts(&operator, &name, 3).await;
    for attempt in &attempts(&run)[..2] {
        assert_eq!(attempt["reason"], "PeriodicRestart", "{run:#}");
        let ran = time(&attempt["finishedAt"]) - time(&attempt["startedAt"]);
        assert!(ran >= chrono::Duration::seconds(3), "{run:#}");
    }
    one_at_a_time(&run);
    let log = operator.log(&name, 2).await;
    assert!(log.contains("attempt 2 up"), "{log}");
    cancel_for_good(&fixture, &operator, &name).await;
}

#[tokio::test]
async fn kill_9_of_the_operator_never_runs_two_copies_of_a_daemon() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "crasher",
        CRASHES,
        "",
        "env: { SLEEP: \"1\" }\nrestart: { cooldown: 1s }",
    );
    let first = fixture.start_operator(&OperatorOptions::default());
    first.wait_for_pipeline("crasher").await;
    let name = first.create_run("crasher", &[]).await;
    let run = wait_attempts(&first, &name, 2).await;
    let run_uid = uid(&run).to_owned();
    first.kill_9();

    let second = fixture.start_operator(&OperatorOptions::default());
    let filter = format!("label={}={run_uid}", labels::RUN);
    // While the restarted operator carries on, no two containers of the run run at once.
    let run = second
        .wait_until(
            "four attempts after the restart",
            RUN_TIMEOUT * 2,
            || async {
                let running = docker_ok(&["ps", "-q", "--filter", &filter]);
                assert!(
                    running.lines().count() <= 1,
                    "two copies running: {running}"
                );
                let run = second.run(&name).await;
                (attempts(&run).len() >= 4).then_some(run)
            },
        )
        .await;
    one_at_a_time(&run);
    cancel_for_good(&fixture, &second, &name).await;
}
