//! Retention on a real Docker engine through the socket proxy: finished runs beyond the
//! number kept or older than the age kept are deleted with their logs (per pipeline,
//! and the operator's default), disk use per pipeline is measured into the pipeline's
//! status, `get pipelines -o wide` and `/metrics`, and a log past `--log-max-size` ends
//! with a mark.

#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;
use std::path::Path;

use support::docker::{Fixture, Operator, OperatorOptions, RUN_TIMEOUT, phase};

/// Prints `LINES` numbered lines (default 200).
const CHATTY: &str = r#"import os
for i in range(int(os.environ.get("LINES", "200"))):
    print(f"line {i} of the chatty pipeline", flush=True)
"#;

/// Names of the stored runs of `pipeline`.
async fn run_names(operator: &Operator, pipeline: &str) -> BTreeSet<String> {
    operator
        .runs_of(pipeline)
        .await
        .iter()
        .map(|r| r["metadata"]["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Runs `pipeline` `count` times, one after the other; returns the names in order.
async fn run_in_turn(operator: &Operator, pipeline: &str, count: usize) -> Vec<(String, String)> {
    let mut names = Vec::new();
    for _ in 0..count {
        let name = operator.create_run(pipeline, &[]).await;
        let run = operator.wait_finished(&name).await;
        assert_eq!(phase(&run), "Succeeded", "{run:#}");
        let uid = run["metadata"]["uid"].as_str().expect("uid").to_owned();
        names.push((name, uid));
    }
    names
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn finished_runs_beyond_the_kept_number_go_with_their_logs_and_disk_use_is_measured() {
    let fixture = Fixture::new();
    fixture.write_pipeline("chatty", CHATTY, "", "");
    fixture.write_pipeline("keeps-more", CHATTY, "", "retention: { runs: 3 }");
    let operator = fixture.start_operator(&OperatorOptions {
        args: vec![
            "--retain-runs".into(),
            "2".into(),
            "--retention-interval".into(),
            "1s".into(),
        ],
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("keeps-more").await;
    let chatty = run_in_turn(&operator, "chatty", 4).await;
    let more = run_in_turn(&operator, "keeps-more", 4).await;

    let newest = |runs: &[(String, String)], n: usize| -> BTreeSet<String> {
        runs[runs.len() - n..]
            .iter()
            .map(|(name, _)| name.clone())
            .collect()
    };
    for (pipeline, runs, kept) in [("chatty", &chatty, 2), ("keeps-more", &more, 3)] {
        let want = newest(runs, kept);
        operator
            .wait_until(
                &format!("{pipeline} to keep its newest {kept} runs"),
                RUN_TIMEOUT,
                || async { (run_names(&operator, pipeline).await == want).then_some(()) },
            )
            .await;
        for (name, uid) in &runs[..runs.len() - kept] {
            let (status, _) = operator
                .get(&format!("/namespaces/default/runs/{name}/log"))
                .await;
            assert_eq!(status, 404, "the log of {name} is gone");
            assert!(
                !fixture.data_dir().join("runs").join(uid).exists(),
                "the output of {name} is gone"
            );
        }
    }

    // Disk use: what the kept runs' files take, in the status, the table and /metrics.
    let expected: u64 = chatty[2..]
        .iter()
        .map(|(_, uid)| dir_bytes(&fixture.data_dir().join("runs").join(uid)))
        .sum();
    assert!(expected > 2 * 200 * 20, "two logs of 200 lines: {expected}");
    operator
        .wait_until("chatty's disk use in its status", RUN_TIMEOUT, || async {
            let (_, pipeline) = operator.get("/namespaces/default/pipelines/chatty").await;
            (pipeline["status"]["diskBytes"].as_u64() == Some(expected)).then_some(())
        })
        .await;
    let metric = format!(
        "flotilla_pipeline_disk_bytes{{namespace=\"default\",pipeline=\"chatty\"}} {expected}"
    );
    let (_, metrics) = operator.get_text("/metrics").await;
    assert!(metrics.contains(&metric), "{metric} missing");
    let table = operator.cli(&["get", "pipelines", "-o", "wide"], RUN_TIMEOUT);
    let text = String::from_utf8_lossy(&table.stdout);
    let header = text.lines().next().unwrap_or_default();
    assert!(header.contains("DISK"), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains(" chatty "))
        .unwrap_or_else(|| panic!("no chatty row:\n{text}"));
    assert!(row.contains("KiB"), "{row}");
}

#[tokio::test]
async fn finished_runs_older_than_the_age_kept_go() {
    let fixture = Fixture::new();
    fixture.write_pipeline("chatty", CHATTY, "", "");
    let operator = fixture.start_operator(&OperatorOptions {
        args: vec![
            "--retain-for".into(),
            "2s".into(),
            "--retention-interval".into(),
            "1s".into(),
        ],
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("chatty").await;
    let runs = run_in_turn(&operator, "chatty", 1).await;
    let (name, uid) = &runs[0];
    operator
        .wait_until("the old run to go", RUN_TIMEOUT, || async {
            let (status, _) = operator
                .get(&format!("/namespaces/default/runs/{name}"))
                .await;
            (status == 404).then_some(())
        })
        .await;
    assert!(!fixture.data_dir().join("runs").join(uid).exists());
}

#[tokio::test]
async fn a_log_past_the_size_cap_ends_with_a_mark() {
    let fixture = Fixture::new();
    fixture.write_pipeline("chatty", CHATTY, "", "env: { LINES: \"5000\" }");
    let operator = fixture.start_operator(&OperatorOptions {
        args: vec!["--log-max-size".into(), "16Ki".into()],
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("chatty").await;
    let runs = run_in_turn(&operator, "chatty", 1).await;
    let (name, uid) = &runs[0];
    let log = operator.log(name, 1).await;
    assert!(log.contains("line 0 of the chatty pipeline"), "{log}");
    assert!(!log.contains("line 4999 of"), "the end was dropped");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("log truncated") && last.contains("16384 bytes"),
        "{last}"
    );
    let stored = std::fs::metadata(
        fixture
            .data_dir()
            .join("runs")
            .join(uid)
            .join("attempt-1.log"),
    )
    .map(|m| m.len())
    .unwrap_or_else(|e| panic!("stored log: {e}"));
    assert!(stored <= 16 * 1024 + 300, "{stored} bytes stored");
    assert!(stored >= 12 * 1024, "{stored} bytes stored");
}
