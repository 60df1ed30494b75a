//! Downstream triggers on a real Docker engine through the socket proxy: chains on
//! success, failure and a route label the script writes; the chain recorded on both
//! ends; exactly one started run per parent outcome across kill -9 at both sides of
//! the write that ends the parent; loops refused at apply; the depth limit; Fast-Flow's
//! `downstream_triggers` and `FASTFLOW_ROUTE_FILE` unchanged; the graph; the chain and
//! the rerun button in the dashboard, in a real headless Chromium. The store is SQLite,
//! or PostgreSQL with `FLOTILLA_TEST_STORE=postgres`.

#[allow(dead_code)]
mod support;

use serde_json::Value;
use support::docker::{Fixture, Operator, OperatorOptions, RUN_TIMEOUT, phase};

/// Prints which run started it (the env a trigger passes), writes `ROUTE` (if set) to
/// the route file and exits with `EXIT` (default 0).
const STEP: &str = r#"import os, sys
print(f"upstream={os.environ.get('FLOTILLA_UPSTREAM_RUN', '-')}", flush=True)
print(f"mode={os.environ.get('MODE', '-')}", flush=True)
route = os.environ.get("ROUTE")
if route:
    with open(os.environ["FLOTILLA_ROUTE_FILE"], "w") as f:
        f.write(route + "\n")
sys.exit(int(os.environ.get("EXIT", "0")))
"#;

/// Waits until `pipeline` has `count` finished runs; returns them.
async fn wait_finished_runs(operator: &Operator, pipeline: &str, count: usize) -> Vec<Value> {
    operator
        .wait_until(
            &format!("{count} finished run(s) of {pipeline}"),
            RUN_TIMEOUT,
            || async {
                let runs = operator.runs_of(pipeline).await;
                let finished = runs
                    .iter()
                    .filter(|r| ["Succeeded", "Failed", "Cancelled"].contains(&phase(r)))
                    .count();
                (finished >= count).then_some(runs)
            },
        )
        .await
}

fn name(run: &Value) -> &str {
    run["metadata"]["name"].as_str().expect("name")
}

fn downstream(run: &Value) -> Vec<String> {
    run["status"]["downstream"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn chains_start_on_success_failure_and_the_route_the_script_wrote() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "extract",
        STEP,
        "",
        "env: { ROUTE: daily }\n\
         triggers:\n\
         - { pipeline: load, env: { MODE: from-trigger } }\n\
         - { pipeline: alert, when: Failed }\n\
         - { pipeline: daily-report, route: daily }\n\
         - { pipeline: weekly-report, route: weekly }",
    );
    fixture.write_pipeline(
        "breaks",
        STEP,
        "",
        "env: { EXIT: \"3\", ROUTE: daily }\n\
         triggers:\n\
         - { pipeline: alert, when: Failed }\n\
         - { pipeline: load }\n\
         - { pipeline: daily-report, route: daily }",
    );
    for child in ["load", "alert", "daily-report", "weekly-report"] {
        fixture.write_pipeline(child, STEP, "", "");
    }
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("weekly-report").await;

    let extract = operator.create_run("extract", &[]).await;
    let parent = operator.wait_finished(&extract).await;
    assert_eq!(phase(&parent), "Succeeded", "{parent:#}");
    assert_eq!(parent["status"]["route"], "daily", "{parent:#}");
    let started = downstream(&parent);
    assert_eq!(started.len(), 2, "load and daily-report: {parent:#}");

    for child in ["load", "daily-report"] {
        let runs = wait_finished_runs(&operator, child, 1).await;
        assert_eq!(runs.len(), 1, "{child}: {runs:#?}");
        let run = &runs[0];
        assert!(started.contains(&name(run).to_owned()), "{run:#}");
        assert_eq!(phase(run), "Succeeded", "{run:#}");
        assert_eq!(run["spec"]["trigger"], "downstream");
        assert_eq!(
            run["spec"]["triggeredBy"],
            format!("run/{extract}").as_str()
        );
        let log = operator.log(name(run), 1).await;
        assert!(log.contains(&format!("upstream={extract}")), "{log}");
        if child == "load" {
            assert!(log.contains("mode=from-trigger"), "{log}");
        }
    }

    let breaks = operator.create_run("breaks", &[]).await;
    let failed = operator.wait_finished(&breaks).await;
    assert_eq!(phase(&failed), "Failed", "{failed:#}");
    let alerts = wait_finished_runs(&operator, "alert", 1).await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(
        alerts[0]["spec"]["triggeredBy"],
        format!("run/{breaks}").as_str()
    );
    assert_eq!(downstream(&failed), vec![name(&alerts[0]).to_owned()]);

    // A failed run neither starts success triggers nor routes; weekly never matched.
    assert_eq!(operator.runs_of("load").await.len(), 1);
    assert_eq!(operator.runs_of("daily-report").await.len(), 1);
    assert!(operator.runs_of("weekly-report").await.is_empty());

    // The chain is visible from both ends.
    let describe = operator.cli(&["describe", "run", &extract], RUN_TIMEOUT);
    let text = String::from_utf8_lossy(&describe.stdout);
    assert!(text.contains("Route:        daily"), "{text}");
    for child in &started {
        assert!(text.contains(&format!("run/{child}")), "{text}");
    }
    let describe = operator.cli(&["describe", "run", name(&alerts[0])], RUN_TIMEOUT);
    let text = String::from_utf8_lossy(&describe.stdout);
    assert!(
        text.contains(&format!("Triggered by: run/{breaks}")),
        "{text}"
    );
    let (_, events) = operator
        .get(&format!("/namespaces/default/events?for=run/{extract}"))
        .await;
    assert!(
        events.to_string().contains("TriggeredDownstream"),
        "{events:#}"
    );

    // The graph, as a tree and through the API.
    let graph = operator.cli(&["graph"], RUN_TIMEOUT);
    let text = String::from_utf8_lossy(&graph.stdout);
    assert!(graph.status.success(), "{text}");
    assert!(text.contains("on route \"daily\" → daily-report"), "{text}");
    assert!(text.contains("on failure → alert"), "{text}");
    let (status, api) = operator.get("/namespaces/default/graph").await;
    assert_eq!(status, 200, "{api}");
    assert_eq!(api["edges"].as_array().map(Vec::len), Some(7), "{api:#}");
}

/// Kill -9 right before and right after the write that ends the parent: the restarted
/// operator ends it once and the child exists once.
async fn one_child_across_kill_9_at(point: &str) {
    let fixture = Fixture::new();
    fixture.write_pipeline("parent", STEP, "", "triggers:\n- { pipeline: child }");
    fixture.write_pipeline("child", STEP, "", "");
    let pause_dir = fixture.scratch("pause");
    let first = fixture.start_operator(&OperatorOptions {
        env: vec![
            ("FLOTILLA_TEST_PAUSE_AT".into(), point.into()),
            (
                "FLOTILLA_TEST_PAUSE_DIR".into(),
                pause_dir.display().to_string(),
            ),
        ],
        ..OperatorOptions::default()
    });
    first.wait_for_pipeline("child").await;
    let parent = first.create_run("parent", &[]).await;
    let marker = pause_dir.join(format!("{point}.reached"));
    first
        .wait_until(
            &format!("the operator to reach {point}"),
            RUN_TIMEOUT,
            || async { marker.exists().then_some(()) },
        )
        .await;
    first.kill_9();

    let second = fixture.start_operator(&OperatorOptions::default());
    let ended = second.wait_finished(&parent).await;
    assert_eq!(phase(&ended), "Succeeded", "{ended:#}");
    let children = wait_finished_runs(&second, "child", 1).await;
    assert_eq!(
        children.len(),
        1,
        "one child after kill -9 at {point}: {children:#?}"
    );
    assert_eq!(downstream(&ended), vec![name(&children[0]).to_owned()]);
    assert_eq!(phase(&children[0]), "Succeeded", "{:#}", children[0]);
    // Nothing else arrives later either: the parent is final, and a resync sees it so.
    second
        .wait_until(
            "the parent's containers to be removed",
            RUN_TIMEOUT,
            || async { fixture.containers().is_empty().then_some(()) },
        )
        .await;
    assert_eq!(second.runs_of("child").await.len(), 1);
}

#[tokio::test]
async fn kill_9_before_the_parent_is_recorded_still_starts_one_child() {
    one_child_across_kill_9_at("before-finish").await;
}

#[tokio::test]
async fn kill_9_after_the_parent_is_recorded_still_starts_one_child() {
    one_child_across_kill_9_at("after-finish").await;
}

#[tokio::test]
async fn loops_are_refused_at_apply_with_the_loop_named_and_nothing_written() {
    let fixture = Fixture::new();
    let operator = fixture.start_operator(&OperatorOptions::default());
    let dir = fixture.scratch("manifests");
    let pipeline = |name: &str, next: &str| {
        format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n  triggers:\n  - pipeline: {next}\n"
        )
    };
    std::fs::write(dir.join("a.yaml"), pipeline("a", "b")).expect("write");
    std::fs::write(dir.join("b.yaml"), pipeline("b", "c")).expect("write");
    let applied = operator.cli(
        &[
            "apply",
            "-f",
            &dir.display().to_string(),
            "--field-manager",
            "loops",
        ],
        RUN_TIMEOUT,
    );
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );

    // c closes the loop a → b → c → a, in a later apply.
    let closing = fixture.scratch("closing").join("c.yaml");
    std::fs::write(&closing, pipeline("c", "a")).expect("write");
    let refused = operator.cli(
        &["apply", "-f", &closing.display().to_string()],
        RUN_TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("c → a → b → c"), "{stderr}");
    assert!(stderr.contains("c.yaml"), "{stderr}");
    assert!(stderr.contains("spec.triggers"), "{stderr}");
    let (status, _) = operator.get("/namespaces/default/pipelines/c").await;
    assert_eq!(status, 404, "nothing of the refused apply is stored");

    // A pipeline that starts itself is a loop of one.
    let own = fixture.scratch("own").join("own.yaml");
    std::fs::write(&own, pipeline("own", "own")).expect("write");
    let refused = operator.cli(&["apply", "-f", &own.display().to_string()], RUN_TIMEOUT);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("own → own"), "{stderr}");

    // Bad trigger fields name the field.
    let bad = fixture.scratch("bad").join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: bad\nspec:\n  triggers:\n  - { pipeline: x, when: Failed, route: daily }\n",
    )
    .expect("write");
    let refused = operator.cli(&["apply", "-f", &bad.display().to_string()], RUN_TIMEOUT);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("spec.triggers[0].when"), "{stderr}");
}

#[tokio::test]
async fn the_depth_limit_ends_a_chain_with_an_event() {
    let fixture = Fixture::new();
    fixture.write_pipeline("one", STEP, "", "triggers:\n- { pipeline: two }");
    fixture.write_pipeline("two", STEP, "", "triggers:\n- { pipeline: three }");
    fixture.write_pipeline("three", STEP, "", "triggers:\n- { pipeline: four }");
    fixture.write_pipeline("four", STEP, "", "");
    let operator = fixture.start_operator(&OperatorOptions {
        args: vec!["--max-trigger-depth".into(), "2".into()],
        ..OperatorOptions::default()
    });
    operator.wait_for_pipeline("four").await;
    operator.create_run("one", &[]).await;
    let three = wait_finished_runs(&operator, "three", 1).await;
    let three = &three[0];
    assert_eq!(phase(three), "Succeeded", "{three:#}");
    assert_eq!(
        three["metadata"]["annotations"]["flotilla.dev/trigger-depth"],
        "2"
    );
    assert!(downstream(three).is_empty(), "{three:#}");
    let (_, events) = operator
        .get(&format!(
            "/namespaces/default/events?for=run/{}",
            name(three)
        ))
        .await;
    assert!(
        events.to_string().contains("TriggerDepthExceeded"),
        "{events:#}"
    );
    assert!(operator.runs_of("four").await.is_empty());
}

/// Fast-Flow's documented examples (its docs/pipelines/referenz.md), folders as they
/// were: route-based routing with `set_route` writing `$FASTFLOW_ROUTE_FILE`, a failure
/// handler, and a trigger with a `run_config_id` naming the started pipeline's
/// `schedules[]` entry.
#[tokio::test]
async fn fast_flow_folders_chain_through_their_route_file() {
    let fixture = Fixture::new();
    let folder = |name: &str, main: &str, json: &str| {
        let dir = fixture.pipelines_dir().join(name);
        std::fs::create_dir_all(&dir).expect("folder");
        std::fs::write(dir.join("main.py"), main).expect("main.py");
        std::fs::write(dir.join("pipeline.json"), json).expect("pipeline.json");
    };
    folder(
        "Data_Router",
        r#"import os, sys

def set_route(label: str) -> None:
    route_file = os.environ.get("FASTFLOW_ROUTE_FILE")
    if route_file:
        open(route_file, "w").write(label)

situation = os.environ.get("SITUATION", "full")
if situation in ("full", "partial"):
    set_route(situation)
    sys.exit(0)
sys.exit(1)
"#,
        r#"{
  "description": "Routing based on data situation",
  "downstream_triggers": [
    { "pipeline": "handler_full",    "on_route": "full",    "on_success": false },
    { "pipeline": "handler_partial", "on_route": "partial", "on_success": false },
    { "pipeline": "handler_error",   "on_failure": true,    "on_success": false },
    { "pipeline": "pipeline_b", "on_success": true, "on_failure": false, "run_config_id": "prod" }
  ]
}"#,
    );
    let prints_mode = "import os\nprint(f\"mode={os.environ.get('MODE', '-')}\", flush=True)\n";
    for handler in ["handler_full", "handler_partial", "handler_error"] {
        folder(handler, prints_mode, "{}");
    }
    folder(
        "pipeline_b",
        prints_mode,
        r#"{"schedules": [{"id": "prod", "schedule_cron": "0 0 1 1 *", "default_env": {"MODE": "prod"}}]}"#,
    );
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("pipeline-b").await;
    operator
        .wait_for_object("schedules", "pipeline-b-prod")
        .await;

    // full: handler_full and pipeline_b (with its prod configuration's env).
    let full = operator
        .create_run("data-router", &[("SITUATION", "full")])
        .await;
    let parent = operator.wait_finished(&full).await;
    assert_eq!(phase(&parent), "Succeeded", "{parent:#}");
    assert_eq!(parent["status"]["route"], "full", "{parent:#}");
    let handled = wait_finished_runs(&operator, "handler-full", 1).await;
    assert_eq!(phase(&handled[0]), "Succeeded", "{:#}", handled[0]);
    let b = wait_finished_runs(&operator, "pipeline-b", 1).await;
    let log = operator.log(name(&b[0]), 1).await;
    assert!(log.contains("mode=prod"), "{log}");

    // A failure: only the error handler.
    let broken = operator
        .create_run("data-router", &[("SITUATION", "broken")])
        .await;
    let failed = operator.wait_finished(&broken).await;
    assert_eq!(phase(&failed), "Failed", "{failed:#}");
    let errors = wait_finished_runs(&operator, "handler-error", 1).await;
    assert_eq!(
        errors[0]["spec"]["triggeredBy"],
        format!("run/{broken}").as_str()
    );
    assert!(operator.runs_of("handler-partial").await.is_empty());
    assert_eq!(operator.runs_of("handler-full").await.len(), 1);
    assert_eq!(operator.runs_of("pipeline-b").await.len(), 1);
}

/// The dashboard in a real browser: the runs table and a run's panel show the chain, and
/// the panel's Rerun button starts a run repeating it (annotated `flotilla.dev/rerun-of`),
/// whose output the page then follows.
#[tokio::test]
async fn the_dashboard_shows_the_chain_and_reruns_a_run() {
    let fixture = Fixture::new();
    fixture.write_pipeline("extract", STEP, "", "triggers:\n- { pipeline: load }");
    fixture.write_pipeline("load", STEP, "", "");
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("load").await;
    let extract = operator.create_run("extract", &[]).await;
    let parent = operator.wait_finished(&extract).await;
    let load = wait_finished_runs(&operator, "load", 1).await;
    let child = name(&load[0]).to_owned();
    assert_eq!(downstream(&parent), vec![child.clone()]);

    let mut browser = support::browser::Browser::start().await;
    let page = format!("{}/#/runs/default/{child}", operator.base());
    browser.navigate(&page).await;
    browser
        .wait_for("the page", "document.readyState === 'complete'")
        .await;
    browser
        .eval(&format!(
            "localStorage.setItem('flotilla-token', {})",
            Value::String(operator.token().to_owned())
        ))
        .await;
    browser.call("Page.reload", serde_json::json!({})).await;
    // The runs table: the parent names the child, the child its parent.
    browser
        .wait_for(
            "the chain in the runs table",
            &format!(
                "document.getElementById('runs').innerText.includes('→ run/{child}') && document.getElementById('runs').innerText.includes('← run/{extract}')"
            ),
        )
        .await;
    // The linked run's panel: its parent and a Rerun button.
    browser
        .wait_for(
            "the run's chain in its panel",
            &format!(
                "(document.getElementById('chain') || {{innerText: ''}}).innerText.includes('run/{extract}')"
            ),
        )
        .await;
    browser
        .eval("document.getElementById('rerun').click()")
        .await;
    let rerun =
        operator
            .wait_until("a rerun of the child", RUN_TIMEOUT, || async {
                operator.runs_of("load").await.into_iter().find(|r| {
                    r["metadata"]["annotations"]["flotilla.dev/rerun-of"] == child.as_str()
                })
            })
            .await;
    let rerun_name = name(&rerun).to_owned();
    // The page follows the new run's output.
    browser
        .wait_for(
            "the rerun's log",
            &format!(
                "document.getElementById('log-title').innerText.includes('{rerun_name}') && document.getElementById('log').innerText.includes('upstream=')"
            ),
        )
        .await;
    let finished = operator.wait_finished(&rerun_name).await;
    assert_eq!(phase(&finished), "Succeeded", "{finished:#}");
    assert_eq!(
        finished["spec"]["env"]["FLOTILLA_UPSTREAM_RUN"],
        extract.as_str()
    );
}
