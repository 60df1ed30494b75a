//! The "Bad input" list of the foundation issue, through the API and the CLI of a real
//! server: each input is refused with a clear error naming the file, field or value, and
//! nothing stored changes (the resourceVersion of every object is compared before and
//! after). Requests use a client timeout, so an input that hangs the server fails.

#[allow(dead_code)]
mod support;

use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;
use support::server::{
    TestServer, assert_exit, documents, pipeline_yaml, schedule_yaml, stderr, stdout,
};

/// A server holding a pipeline and a (suspended, so it creates no runs) schedule, so
/// "nothing changed" means something.
async fn seeded_server() -> TestServer {
    let server = TestServer::start();
    let seed = documents(&[
        pipeline_yaml("seed", "3.12"),
        schedule_yaml("seed", "seed", "0 3 * * *") + "  suspend: true\n",
    ]);
    let (status, body) = server.apply_yaml(&seed, "").await;
    assert_eq!(status, StatusCode::OK, "seed: {body}");
    server
}

/// The messages of a problem: its detail and every located error, one per line.
fn problem_text(problem: &Value) -> String {
    let mut lines = vec![problem["detail"].as_str().unwrap_or_default().to_owned()];
    for error in problem["errors"].as_array().into_iter().flatten() {
        lines.push(error.to_string());
    }
    lines.join("\n")
}

/// The located error on `field`, or a panic listing them all.
fn error_on<'a>(problem: &'a Value, field: &str) -> &'a Value {
    problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["field"] == field)
        .unwrap_or_else(|| panic!("no error on {field}: {problem}"))
}

/// Posts `body` raw, asserts a `validation.failed` problem and answers it.
async fn rejected(server: &TestServer, body: impl Into<reqwest::Body>) -> Value {
    let response = server
        .client()
        .post(server.api("/apply"))
        .body(body)
        .send()
        .await
        .expect("the server answers (no hang, no crash)");
    let status = response.status();
    let content_type = response.headers().get("content-type").cloned();
    let problem: Value = response.json().await.expect("problem json");
    assert!(status.is_client_error(), "{status}: {problem}");
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    assert_eq!(problem["code"], "validation.failed", "{problem}");
    problem
}

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("parent dir");
    }
    std::fs::write(&path, content).expect("write fixture");
    path.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------- empty and junk

#[tokio::test]
async fn an_empty_file_is_rejected() {
    let server = seeded_server().await;
    let before = server.snapshot().await;

    let problem = rejected(&server, "").await;
    assert!(
        problem_text(&problem).contains("contains no resources"),
        "{problem}"
    );
    let problem = rejected(&server, "# only a comment\n---\n").await;
    assert!(
        problem_text(&problem).contains("contains no resources"),
        "{problem}"
    );

    let file = write(&server.scratch(), "empty.yaml", "");
    let output = server.cli(&["apply", "-f", &file]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains("empty.yaml") && message.contains("contains no resources"),
        "{message}"
    );

    assert_eq!(server.snapshot().await, before);
}

#[tokio::test]
async fn binary_junk_is_rejected() {
    let server = seeded_server().await;
    let before = server.snapshot().await;
    // Not UTF-8 at all.
    let junk: Vec<u8> = (0..64 * 1024)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let problem = rejected(&server, junk.clone()).await;
    assert!(problem_text(&problem).contains("not UTF-8"), "{problem}");
    // UTF-8, but with control bytes, like an ELF header.
    let problem = rejected(&server, "\u{7f}ELF\u{2}\u{1}\u{1}\0\0\0\0".repeat(100)).await;
    assert!(problem_text(&problem).contains("binary"), "{problem}");

    let file = write(&server.scratch(), "junk.yaml", &junk);
    let output = server.cli(&["apply", "-f", &file]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains("junk.yaml") && message.contains("not UTF-8"),
        "{message}"
    );

    assert_eq!(server.snapshot().await, before);
}

// ---------------------------------------------------------------- billion laughs

/// Nine levels of nine references: 9^9 (387 million) strings once expanded.
fn billion_laughs() -> String {
    let mut text = String::from(
        "x-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut previous = 'a';
    for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
        let references = vec![format!("*{previous}"); 9].join(",");
        text.push_str(&format!("x-{name}: &{name} [{references}]\n"));
        previous = name;
    }
    text
}

#[tokio::test]
async fn a_billion_laughs_alias_bomb_is_rejected_without_hanging() {
    let server = seeded_server().await;
    let before = server.snapshot().await;

    let problem = rejected(&server, billion_laughs()).await;
    assert!(
        problem_text(&problem).contains("not valid YAML"),
        "{problem}"
    );

    // The bomb referenced from a real field of a real resource.
    let mut bomb = String::from(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: bomb\n  annotations:\n",
    );
    for line in billion_laughs().lines() {
        bomb.push_str(&format!("    {line}\n"));
    }
    bomb.push_str("spec:\n  tags: *i\n");
    let problem = rejected(&server, bomb.clone()).await;
    assert!(
        problem_text(&problem).contains("not valid YAML"),
        "{problem}"
    );

    let file = write(&server.scratch(), "bomb.yaml", &bomb);
    let output = server.cli(&["apply", "-f", &file]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("bomb.yaml"), "{}", stderr(&output));

    assert_eq!(server.snapshot().await, before);
}

// ---------------------------------------------------------------- size limits

/// A valid manifest padded to `megabytes` MiB with a long description.
fn big_manifest(megabytes: usize) -> String {
    let mut text = pipeline_yaml("big", "3.12");
    text.push_str("  description: \"");
    text.push_str(&"x".repeat(megabytes * 1024 * 1024));
    text.push_str("\"\n");
    text
}

#[tokio::test]
async fn a_50_mb_file_is_refused_by_the_cli_with_the_size_limit() {
    let server = seeded_server().await;
    let before = server.snapshot().await;
    let file = write(&server.scratch(), "big.yaml", big_manifest(50));
    let output = server.cli(&["apply", "-f", &file]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(message.contains("big.yaml"), "{message}");
    assert!(
        message.contains("limit") && message.contains("16 MiB"),
        "{message}"
    );

    // The same through stdin.
    let output = server.cli_with_stdin(&["apply", "-f", "-"], big_manifest(50).as_bytes());
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains("<stdin>") && message.contains("limit"),
        "{message}"
    );

    assert_eq!(server.snapshot().await, before);
}

#[tokio::test]
async fn a_50_mb_request_is_a_client_error_not_a_crash() {
    let mut server = seeded_server().await;
    let before = server.snapshot().await;
    let response = server
        .client()
        .post(server.api("/apply"))
        .body(big_manifest(50))
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert!(status.is_client_error(), "{status}: {body}");
            let problem: Value = serde_json::from_str(&body).expect("problem json");
            assert_eq!(problem["code"], "request.too_large", "{body}");
            assert!(body.contains("limit"), "{body}");
        }
        // Refusing early may close the connection while the body is still being sent.
        Err(e) => assert!(!e.is_timeout(), "the server hung on a 50 MB body: {e}"),
    }
    assert!(
        server.is_running(),
        "the server died; log:\n{}",
        server.log()
    );
    let health = server
        .client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(server.snapshot().await, before);
}

#[tokio::test]
async fn a_file_over_16_mib_inside_the_request_limit_names_the_file_and_the_limit() {
    let server = seeded_server().await;
    let before = server.snapshot().await;
    let big = big_manifest(20);
    let (status, problem) = server
        .apply_files(&[("pipelines/big.yaml", &big)], "")
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        problem_text(&problem)
    );
    assert_eq!(problem["code"], "validation.failed");
    assert_eq!(problem["errors"][0]["file"], "pipelines/big.yaml");
    assert!(
        problem_text(&problem).contains("limit is 16 MiB"),
        "{}",
        problem_text(&problem)
    );
    assert_eq!(server.snapshot().await, before);
}

// ---------------------------------------------------------------- set-level problems
#[tokio::test]
async fn a_request_without_any_file_is_rejected_and_prunes_nothing() {
    let server = seeded_server().await;
    let before = server.snapshot().await;
    let (status, problem) = server.apply_files(&[], "prune=true").await;
    assert!(
        status.is_client_error(),
        "an empty set was applied: {status} {problem}"
    );
    assert_eq!(
        server.snapshot().await,
        before,
        "an empty request pruned the store"
    );
}

#[tokio::test]
async fn a_json_body_that_is_not_an_apply_request_is_rejected() {
    let server = seeded_server().await;
    let before = server.snapshot().await;
    for body in [
        r#"{"files": "nope"}"#,
        "[1, 2]",
        "{",
        r#"{"files": [{"name": "a.yaml"}]}"#,
    ] {
        let response = server
            .client()
            .post(server.api("/apply?prune=true"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("answer");
        let status = response.status();
        let problem: Value = response.json().await.expect("problem json");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(problem["code"], "request.invalid", "{body}: {problem}");
    }
    assert_eq!(server.snapshot().await, before);
}

#[tokio::test]
async fn duplicate_names_in_one_set_name_both_locations() {
    let server = seeded_server().await;
    let before = server.snapshot().await;

    // Across two files of one request.
    let (status, problem) = server
        .apply_files(
            &[
                ("a.yaml", &pipeline_yaml("etl", "3.11")),
                (
                    "b.yaml",
                    &documents(&[
                        schedule_yaml("x", "etl", "@daily"),
                        pipeline_yaml("etl", "3.12"),
                    ]),
                ),
            ],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let error = error_on(&problem, "metadata.name");
    assert_eq!(error["file"], "b.yaml");
    assert_eq!(error["document"], 2);
    assert_eq!(error["line"], 13);
    let message = error["message"].as_str().expect("message");
    assert!(message.contains("declared twice"), "{message}");
    assert!(
        message.contains("a.yaml:4:9"),
        "the first location: {message}"
    );

    // Twice in the same file, through the CLI.
    let file = write(
        &server.scratch(),
        "twice.yaml",
        documents(&[pipeline_yaml("etl", "3.11"), pipeline_yaml("etl", "3.12")]),
    );
    let output = server.cli(&["apply", "-f", &file]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(message.contains("declared twice"), "{message}");
    assert!(
        message.contains("twice.yaml:14:9"),
        "second location: {message}"
    );
    assert!(
        message.contains("twice.yaml:4:9"),
        "first location: {message}"
    );

    assert_eq!(server.snapshot().await, before);
}

#[tokio::test]
async fn an_unknown_kind_is_rejected() {
    let server = seeded_server().await;
    let before = server.snapshot().await;
    let yaml = pipeline_yaml("etl", "3.12").replace("kind: Pipeline", "kind: CronJob");
    let problem = rejected(&server, yaml.clone()).await;
    let error = error_on(&problem, "kind");
    assert_eq!(error["line"], 2);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"CronJob\"")),
        "{error}"
    );

    let file = write(&server.scratch(), "cronjob.yaml", &yaml);
    let output = server.cli(&["apply", "-f", &file]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains("cronjob.yaml:2:7") && message.contains("unknown kind"),
        "{message}"
    );
    assert_eq!(server.snapshot().await, before);
}

#[tokio::test]
async fn an_unknown_api_version_is_rejected() {
    let server = seeded_server().await;
    let before = server.snapshot().await;
    for version in ["batch/v1", "flotilla.dev/v1", "flotilla.dev/v1beta1"] {
        let yaml = pipeline_yaml("etl", "3.12").replace("flotilla.dev/v1alpha1", version);
        let problem = rejected(&server, yaml).await;
        let error = error_on(&problem, "apiVersion");
        assert_eq!(error["line"], 1);
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains(version)),
            "{error}"
        );
    }
    assert_eq!(server.snapshot().await, before);
}

#[tokio::test]
async fn wrong_types_are_rejected_with_the_field() {
    let server = seeded_server().await;
    let before = server.snapshot().await;
    for (from, to, field) in [
        (
            "  timeout: 10m\n",
            "  timeout: 10m\n  maxInstances: \"two\"\n",
            "spec.maxInstances",
        ),
        (
            "  timeout: 10m\n",
            "  timeout: 10m\n  suspend: maybe\n",
            "spec.suspend",
        ),
        (
            "  timeout: 10m\n",
            "  timeout: 10m\n  env: [A, B]\n",
            "spec.env",
        ),
        (
            "  timeout: 10m\n",
            "  timeout: 10m\n  tags: a-tag\n",
            "spec.tags",
        ),
        ("name: etl", "name: 42", "metadata.name"),
    ] {
        let yaml = pipeline_yaml("etl", "3.12").replace(from, to);
        let problem = rejected(&server, yaml).await;
        error_on(&problem, field);
    }
    // One element of an otherwise valid set poisons the set.
    let set = documents(&[
        pipeline_yaml("fine", "3.12"),
        pipeline_yaml("etl", "3.12")
            .replace("  timeout: 10m\n", "  timeout: 10m\n  maxInstances: [1]\n"),
    ]);
    let problem = rejected(&server, set).await;
    assert_eq!(error_on(&problem, "spec.maxInstances")["document"], 2);
    assert_eq!(server.snapshot().await, before);
}

#[tokio::test]
async fn a_name_of_300_characters_is_rejected() {
    let server = seeded_server().await;
    let before = server.snapshot().await;
    let name = "a".repeat(300);
    let problem = rejected(&server, pipeline_yaml(&name, "3.12")).await;
    let error = error_on(&problem, "metadata.name");
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains("63")),
        "{error}"
    );
    assert_eq!(error["line"], 4);

    let output = server.cli(&["get", "pipeline", &name]);
    assert_exit(&output, 1);
    assert_eq!(server.snapshot().await, before);
}

#[tokio::test]
async fn source_paths_leaving_the_source_root_are_rejected() {
    let server = seeded_server().await;
    let before = server.snapshot().await;
    for (path, hint) in [
        ("../../etc", "path traversal"),
        ("pipelines/../../etc", "path traversal"),
        ("/etc", "absolute"),
        ("/work/pipelines/etl", "absolute"),
    ] {
        let yaml = pipeline_yaml("etl", "3.12").replace(
            "source: { path: etl }",
            &format!("source: {{ path: \"{path}\" }}"),
        );
        let problem = rejected(&server, yaml).await;
        let error = error_on(&problem, "spec.source.path");
        let message = error["message"].as_str().expect("message");
        assert!(
            message.contains(path) && message.contains(hint),
            "{path}: {message}"
        );
        assert_eq!(error["line"], 6, "{error}");
    }
    assert_eq!(server.snapshot().await, before);
}

// ---------------------------------------------------------------- pipelines directory

const GOOD_PIPELINE_JSON: &str = r#"{
  "python_version": "3.12",
  "mem_hard_limit": "512m",
  "timeout": 600,
  "description": "imported from Fast-Flow",
  "tags": ["etl"]
}
"#;

const TRAILING_COMMA_PIPELINE_JSON: &str = r#"{
  "python_version": "3.12",
  "tags": ["a", ]
}
"#;

#[tokio::test]
async fn a_trailing_comma_pipeline_json_breaks_only_its_own_pipeline() {
    let root = tempfile::tempdir().expect("pipelines dir");
    let dir = root.path();
    write(dir, "fastgood/main.py", "print('hello')\n");
    write(dir, "fastgood/pipeline.json", GOOD_PIPELINE_JSON);
    write(dir, "broken/main.py", "print('hello')\n");
    write(dir, "broken/pipeline.json", TRAILING_COMMA_PIPELINE_JSON);
    write(dir, "declared/main.py", "print('hello')\n");
    write(dir, "declared.yaml", pipeline_yaml("declared", "3.11"));

    let server = TestServer::start_with_pipelines_dir(dir);
    let manifest = server
        .wait_for("the directory's valid pipelines", || async {
            let (yaml_status, _) = server.get("/namespaces/default/pipelines/declared").await;
            let (status, body) = server.get("/namespaces/default/pipelines/fastgood").await;
            (yaml_status == StatusCode::OK && status == StatusCode::OK).then_some(body)
        })
        .await;
    assert_eq!(manifest["spec"]["python"], "3.12", "{manifest}");
    assert!(
        manifest["metadata"]["managedBy"]
            .as_str()
            .is_some_and(|m| m.starts_with("dir:")),
        "{manifest}"
    );

    let (status, body) = server.get("/namespaces/default/pipelines/broken").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the broken pipeline was stored: {body}"
    );
    // The problem is reported with the file, line and column of the trailing comma
    // (`]` on line 3, column 17), and says what is wrong.
    let report = server
        .wait_for("the broken pipeline.json to be reported", || async {
            server
                .log()
                .lines()
                .find(|l| l.contains("broken/pipeline.json:3:"))
                .map(str::to_owned)
        })
        .await;
    assert!(
        report.contains("broken/pipeline.json:3:17"),
        "line and column of the trailing comma: {report}"
    );
    assert!(
        report.to_lowercase().contains("trailing comma"),
        "the report says what is wrong: {report}"
    );
    assert!(
        !server.log().contains("fastgood/pipeline.json:"),
        "the valid pipeline.json is not reported:\n{}",
        server.log()
    );
}

#[tokio::test]
async fn a_traversing_source_path_in_the_pipelines_dir_is_not_stored() {
    let root = tempfile::tempdir().expect("pipelines dir");
    let dir = root.path();
    write(dir, "ok.yaml", pipeline_yaml("ok", "3.12"));
    write(
        dir,
        "escape.yaml",
        pipeline_yaml("escape", "3.12").replace("path: escape", "path: ../../etc"),
    );
    write(
        dir,
        "absolute.yaml",
        pipeline_yaml("absolute", "3.12").replace("path: absolute", "path: /etc"),
    );
    let server = TestServer::start_with_pipelines_dir(dir);
    server
        .wait_for("the valid manifest", || async {
            let (status, _) = server.get("/namespaces/default/pipelines/ok").await;
            (status == StatusCode::OK).then_some(())
        })
        .await;
    for name in ["escape", "absolute"] {
        let (status, body) = server
            .get(&format!("/namespaces/default/pipelines/{name}"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name} was stored: {body}");
    }
    let log = server
        .wait_for("the rejected manifests to be reported", || async {
            let log = server.log();
            (log.contains("escape.yaml") && log.contains("absolute.yaml")).then_some(log)
        })
        .await;
    assert!(log.contains("path traversal"), "{log}");
    assert!(stdout(&server.cli(&["get", "pl"])).contains("ok"));
}
