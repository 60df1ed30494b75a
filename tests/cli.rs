//! End to end with the `flotilla` binary against a real server: apply (files,
//! directories, stdin, dry run, prune), diff, get (tables, yaml, json), describe,
//! delete, version, and the exit code contract: 0 success, 1 error (message on stderr),
//! 2 usage.

#[allow(dead_code)]
mod support;

use std::path::Path;

use serde_json::Value;
use support::server::{
    TestServer, assert_exit, documents, pipeline_yaml, run_cli, schedule_yaml, stderr, stdout,
};

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(&path, content).expect("write");
    path.to_string_lossy().into_owned()
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// The objects of `get KIND -o json`.
fn items(server: &TestServer, kind: &str) -> Vec<Value> {
    let output = server.cli(&["get", kind, "-A", "-o", "json"]);
    assert_exit(&output, 0);
    let list: Value = serde_json::from_str(&stdout(&output)).expect("json list");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn names(server: &TestServer, kind: &str) -> Vec<String> {
    let mut names: Vec<String> = items(server, kind)
        .iter()
        .map(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn apply_a_directory_then_again_unchanged() {
    let server = TestServer::start();
    let dir = server.scratch().join("manifests");
    write(
        &dir,
        "a.yaml",
        &documents(&[
            pipeline_yaml("alpha", "3.12"),
            schedule_yaml("alpha", "alpha", "0 * * * *"),
        ]),
    );
    write(&dir, "b.yml", &pipeline_yaml("beta", "3.11"));
    write(&dir, "notes.txt", "not a manifest");
    let dir = dir.to_string_lossy().into_owned();

    let output = server.cli(&["apply", "-f", &dir]);
    assert_exit(&output, 0);
    assert_eq!(
        sorted_lines(&stdout(&output)),
        [
            "pipeline/alpha created",
            "pipeline/beta created",
            "schedule/alpha created"
        ]
    );
    let output = server.cli(&["apply", "-f", &dir]);
    assert_exit(&output, 0);
    assert_eq!(
        sorted_lines(&stdout(&output)),
        [
            "pipeline/alpha unchanged",
            "pipeline/beta unchanged",
            "schedule/alpha unchanged"
        ]
    );
    assert_eq!(names(&server, "pipelines"), ["alpha", "beta"]);
}

#[test]
fn apply_from_stdin() {
    let server = TestServer::start();
    let output = server.cli_with_stdin(
        &["apply", "-f", "-"],
        pipeline_yaml("piped", "3.12").as_bytes(),
    );
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "pipeline/piped created\n");
    assert_eq!(names(&server, "pl"), ["piped"]);
}

#[test]
fn several_files_are_one_set() {
    let server = TestServer::start();
    let scratch = server.scratch();
    let a = write(&scratch, "a.yaml", &pipeline_yaml("a", "3.12"));
    let b = write(&scratch, "b.yaml", &pipeline_yaml("b", "3.12"));
    let output = server.cli(&["apply", "-f", &a, "-f", &b]);
    assert_exit(&output, 0);
    assert_eq!(
        sorted_lines(&stdout(&output)),
        ["pipeline/a created", "pipeline/b created"]
    );
    // Applying only `a` with --prune removes `b`.
    let output = server.cli(&["apply", "--prune", "-f", &a]);
    assert_exit(&output, 0);
    assert_eq!(
        sorted_lines(&stdout(&output)),
        ["pipeline/a unchanged", "pipeline/b pruned"]
    );
    assert_eq!(names(&server, "pipelines"), ["a"]);
}

#[test]
fn get_prints_an_aligned_table_with_headers() {
    let server = TestServer::start();
    let set = documents(&[
        pipeline_yaml("a-rather-long-pipeline-name", "3.12"),
        pipeline_yaml("b", "3.11").replace("memory: 256Mi", "memory: 1Gi"),
    ]);
    assert_exit(
        &server.cli_with_stdin(&["apply", "-f", "-"], set.as_bytes()),
        0,
    );

    let output = server.cli(&["get", "pipelines"]);
    assert_exit(&output, 0);
    let table = stdout(&output);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let headers: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        headers,
        ["NAME", "PYTHON", "MEMORY", "CPUS", "SUSPENDED", "AGE"],
        "{table}"
    );
    // Every column starts at the same offset on every line, like kubectl.
    let starts: Vec<usize> = headers
        .iter()
        .map(|h| lines[0].find(h).expect("header"))
        .collect();
    for line in &lines[1..] {
        for (column, start) in starts.iter().enumerate().skip(1) {
            let before = &line[..*start];
            assert!(
                before.ends_with("   "),
                "column {column} misaligned in:\n{table}"
            );
            assert_ne!(
                line.as_bytes()[*start],
                b' ',
                "column {column} misaligned in:\n{table}"
            );
        }
    }
    let row_b: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("b "))
        .expect("row b")
        .split_whitespace()
        .collect();
    assert_eq!(&row_b[..5], ["b", "3.11", "1Gi", "0.5", "false"], "{table}");

    // AGE is the time since creation when the table was printed: a whole number of
    // seconds/minutes/... (kubectl style), small here because the objects are new.
    for line in &lines[1..] {
        let age = line.split_whitespace().last().expect("age");
        assert!(is_age(age), "AGE {age:?} in:\n{table}");
    }

    // Every spelling of the kind lists the same. AGE is taken when each table is
    // printed, so it may move on between two calls; everything before it must not.
    let without_age = without_last_column(&table);
    for kind in ["pipeline", "pl", "Pipelines", "PIPELINE"] {
        let output = server.cli(&["get", kind]);
        assert_exit(&output, 0);
        assert_eq!(
            without_last_column(&stdout(&output)),
            without_age,
            "get {kind}"
        );
    }
}

/// Each line of a table with its last column (AGE) cut off, columns kept at their
/// offsets.
fn without_last_column(table: &str) -> Vec<String> {
    table
        .lines()
        .map(|line| {
            let line = line.trim_end();
            let cut = line.rfind(' ').map_or(0, |i| i + 1);
            line[..cut].to_owned()
        })
        .collect()
}

/// A kubectl-style age: digits followed by one unit letter, e.g. `0s`, `12m`, `3d`.
fn is_age(text: &str) -> bool {
    let Some(digits) = text.strip_suffix(['s', 'm', 'h', 'd']) else {
        return false;
    };
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn get_wide_adds_namespace_source_and_manager() {
    let server = TestServer::start();
    assert_exit(
        &server.cli_with_stdin(
            &["apply", "-f", "-"],
            pipeline_yaml("etl", "3.12").as_bytes(),
        ),
        0,
    );
    let output = server.cli(&["get", "pl", "-o", "wide"]);
    assert_exit(&output, 0);
    let table = stdout(&output);
    let header = table.lines().next().expect("header");
    assert!(header.starts_with("NAMESPACE"), "{table}");
    assert!(
        header.contains("SOURCE") && header.ends_with("MANAGED BY"),
        "{table}"
    );
    let row = table.lines().nth(1).expect("row");
    assert!(
        row.starts_with("default") && row.ends_with("cli"),
        "{table}"
    );
}

#[test]
fn get_one_as_yaml_and_a_list_as_json() {
    let server = TestServer::start();
    let set = documents(&[
        pipeline_yaml("etl", "3.12"),
        schedule_yaml("etl", "etl", "*/5 * * * *"),
    ]);
    assert_exit(
        &server.cli_with_stdin(&["apply", "-f", "-"], set.as_bytes()),
        0,
    );

    let output = server.cli(&["get", "pl", "etl", "-o", "yaml"]);
    assert_exit(&output, 0);
    let object: Value = serde_saphyr::from_str(&stdout(&output)).expect("yaml");
    assert_eq!(object["apiVersion"], "flotilla.dev/v1alpha1");
    assert_eq!(object["kind"], "Pipeline");
    assert_eq!(object["metadata"]["name"], "etl");
    assert_eq!(object["spec"]["python"], "3.12");

    // The YAML of `get` can be applied again and changes nothing.
    let output = server.cli_with_stdin(
        &["apply", "-f", "-"],
        stdout(&server.cli(&["get", "pl", "etl", "-o", "yaml"])).as_bytes(),
    );
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "pipeline/etl unchanged\n");

    let output = server.cli(&["get", "schedules", "-o", "json"]);
    assert_exit(&output, 0);
    let list: Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(list["kind"], "ScheduleList");
    assert_eq!(list["apiVersion"], "flotilla.dev/v1alpha1");
    assert_eq!(list["items"][0]["kind"], "Schedule");
    assert_eq!(list["items"][0]["spec"]["cron"], "*/5 * * * *");

    let output = server.cli(&["get", "pl", "etl", "-o", "json"]);
    assert_exit(&output, 0);
    let object: Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(object["kind"], "Pipeline");
}

#[test]
fn get_of_nothing_says_so_on_stderr() {
    let server = TestServer::start();
    let output = server.cli(&["get", "runs"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("No runs found"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn describe_shows_metadata_and_spec() {
    let server = TestServer::start();
    let labelled = pipeline_yaml("etl", "3.12")
        .replace("  name: etl\n", "  name: etl\n  labels: { team: data }\n");
    assert_exit(
        &server.cli_with_stdin(&["apply", "-f", "-"], labelled.as_bytes()),
        0,
    );
    let output = server.cli(&["describe", "pipeline", "etl"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    for expected in [
        "Name:              etl",
        "Namespace:         default",
        "Kind:              Pipeline",
        "Generation:        1",
        "Managed By:        cli",
        "Labels:            team=data",
        "Spec:",
        "  python: \"3.12\"",
        "    memory: 256Mi",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let output = server.cli(&["describe", "pipeline", "nope"]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("not found"), "{}", stderr(&output));
}

#[test]
fn delete_by_name_and_by_file() {
    let server = TestServer::start();
    let scratch = server.scratch();
    let file = write(
        &scratch,
        "set.yaml",
        &documents(&[
            pipeline_yaml("a", "3.12"),
            schedule_yaml("a", "a", "@hourly"),
            pipeline_yaml("b", "3.12"),
        ]),
    );
    assert_exit(&server.cli(&["apply", "-f", &file]), 0);

    let output = server.cli(&["delete", "pipeline", "b"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "pipeline/b deleted\n");
    assert_eq!(names(&server, "pipelines"), ["a"]);

    let output = server.cli(&["delete", "pipeline", "b"]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("not found"), "{}", stderr(&output));
    assert_exit(
        &server.cli(&["delete", "pipeline", "b", "--ignore-not-found"]),
        0,
    );

    // `delete -f` removes what the file declares; `b` is already gone.
    let output = server.cli(&["delete", "-f", &file, "--ignore-not-found"]);
    assert_exit(&output, 0);
    assert_eq!(
        sorted_lines(&stdout(&output)),
        ["pipeline/a deleted", "schedule/a deleted"]
    );
    assert!(names(&server, "pipelines").is_empty());
    assert!(names(&server, "schedules").is_empty());
}

#[test]
fn diff_and_dry_run_change_nothing() {
    let server = TestServer::start();
    let scratch = server.scratch();
    let v1 = write(&scratch, "v1.yaml", &pipeline_yaml("etl", "3.11"));
    let v2 = write(&scratch, "v2.yaml", &pipeline_yaml("etl", "3.12"));
    assert_exit(&server.cli(&["apply", "-f", &v1]), 0);
    let before = items(&server, "pipelines");

    let output = server.cli(&["diff", "-f", &v2]);
    assert_exit(&output, 0);
    let diff = stdout(&output);
    assert!(
        diff.contains("--- a/pipelines/default/etl")
            && diff.contains("+++ b/pipelines/default/etl"),
        "{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains("3.11")),
        "{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains("3.12")),
        "{diff}"
    );
    let output = server.cli(&["diff", "-f", &v1]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "", "no difference, no output");

    let output = server.cli(&["apply", "--dry-run", "-f", &v2]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "pipeline/etl configured (dry run)\n");
    assert_eq!(
        items(&server, "pipelines"),
        before,
        "diff and dry run must not write"
    );
}

#[test]
fn validation_errors_exit_1_with_located_messages_on_stderr() {
    let server = TestServer::start();
    let file = write(
        &server.scratch(),
        "bad.yaml",
        &pipeline_yaml("etl", "3.12").replace("timeout: 10m", "timeout: forever"),
    );
    let output = server.cli(&["apply", "-f", &file]);
    assert_exit(&output, 1);
    assert_eq!(stdout(&output), "");
    let message = stderr(&output);
    assert!(
        message.contains("bad.yaml:9:12: document 1: spec.timeout:"),
        "{message}"
    );
    assert!(message.contains("\"forever\""), "{message}");
    assert!(names(&server, "pipelines").is_empty());
}

#[test]
fn unknown_kind_exits_1_and_lists_the_known_ones() {
    let server = TestServer::start();
    let output = server.cli(&["get", "pods"]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains("unknown resource type \"pods\""),
        "{message}"
    );
    assert!(message.contains("pipelines (pl)"), "{message}");
    let output = server.cli(&["delete", "deployment", "x"]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("\"deployment\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["get", "pipelines", "--bogus"],
        vec!["apply"],
        vec!["get"],
        vec!["frobnicate"],
        vec!["get", "pl", "-o", "xml"],
    ] {
        let output = run_cli(&args, b"", &[]);
        assert_exit(&output, 2);
        let message = stderr(&output);
        assert!(
            message.starts_with("error:") && message.contains("--help"),
            "{args:?}: {message}"
        );
        assert_eq!(stdout(&output), "", "{args:?}");
    }
    // --help and --version are successes.
    assert_exit(&run_cli(&["--help"], b"", &[]), 0);
    assert_exit(&run_cli(&["apply", "--help"], b"", &[]), 0);
}

#[test]
fn delete_needs_either_a_name_or_files() {
    let server = TestServer::start();
    // Both arguments are optional to clap (either KIND NAME or -f), so the missing name
    // is the command's own error, not clap's usage error: exit 1 naming the two forms.
    let output = server.cli(&["delete", "pipeline"]);
    assert_exit(&output, 1);
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("give either KIND NAME or -f FILE"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn version_names_client_and_server() {
    let server = TestServer::start();
    let output = server.cli(&["version"]);
    assert_exit(&output, 0);
    let version = env!("CARGO_PKG_VERSION");
    let text = stdout(&output);
    assert!(
        text.contains(&format!("Client Version: {version}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("Server Version: {version}")),
        "{text}"
    );
    let output = run_cli(&["--version"], b"", &[]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains(version));
}

/// A loopback URL nothing listens on: port 1 (tcpmux) is privileged and unused, so the
/// connection is refused at once and no parallel test can take the port.
fn dead_server() -> String {
    "http://127.0.0.1:1".to_owned()
}

#[test]
fn an_unreachable_server_exits_1_naming_it() {
    let dead = dead_server();
    for args in [
        vec!["get", "pipelines"],
        vec!["describe", "pl", "x"],
        vec!["delete", "pl", "x"],
    ] {
        let output = run_cli(&args, b"", &[("FLOTILLA_SERVER", &dead)]);
        assert_exit(&output, 1);
        let message = stderr(&output);
        assert!(message.contains(&dead), "{args:?}: {message}");
        assert!(message.contains("flotilla serve"), "{args:?}: {message}");
    }
    // --server wins over the environment.
    let server = TestServer::start();
    let output = run_cli(
        &["get", "pipelines", "--server", &dead],
        b"",
        &[("FLOTILLA_SERVER", server.base())],
    );
    assert_exit(&output, 1);
    assert!(stderr(&output).contains(&dead), "{}", stderr(&output));

    let file = write(&server.scratch(), "p.yaml", &pipeline_yaml("etl", "3.12"));
    let output = run_cli(&["apply", "-f", &file, "--server", &dead], b"", &[]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains(&dead), "{}", stderr(&output));
}

#[test]
fn version_without_a_server_still_prints_the_client_version() {
    let dead = dead_server();
    let output = run_cli(&["version"], b"", &[("FLOTILLA_SERVER", &dead)]);
    // The client version is printed, and the unreachable server is an error (exit 1)
    // naming it on stderr.
    assert_exit(&output, 1);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        stdout(&output),
        format!("Client Version: {version}\nServer Version: unavailable\n")
    );
    assert!(stderr(&output).contains(&dead), "{}", stderr(&output));
}

#[test]
fn a_missing_file_exits_1_naming_it() {
    let server = TestServer::start();
    let output = server.cli(&["apply", "-f", "/nonexistent/manifest.yaml"]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("/nonexistent/manifest.yaml"),
        "{}",
        stderr(&output)
    );
    let empty = server.scratch().join("empty-dir");
    std::fs::create_dir_all(&empty).expect("dir");
    let output = server.cli(&["apply", "-f", &empty.to_string_lossy()]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("no *.yaml"), "{}", stderr(&output));
}

#[test]
fn conflicts_exit_1_naming_both_managers_and_force_takes_over() {
    let server = TestServer::start();
    let file = write(&server.scratch(), "p.yaml", &pipeline_yaml("etl", "3.12"));
    assert_exit(
        &server.cli(&["apply", "-f", &file, "--field-manager", "git:repo#main"]),
        0,
    );
    let output = server.cli(&["apply", "-f", &file]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains("git:repo#main") && message.contains("\"cli\""),
        "{message}"
    );
    assert!(message.contains("--force"), "{message}");
    let output = server.cli(&["apply", "-f", &file, "--force"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "pipeline/etl configured\n");
    assert_eq!(
        items(&server, "pipelines")[0]["metadata"]["managedBy"],
        "cli"
    );
}

#[test]
fn fastflow_variables_are_taken_under_their_names_and_idle_ones_are_named() {
    let server = TestServer::start_with_env(&[
        ("MAX_CONCURRENT_RUNS", "3"),
        ("LOG_RETENTION_DAYS", "7"),
        ("S3_BUCKET", "logs"),
    ]);
    let log = server.log();
    assert!(
        log.contains(
            "MAX_CONCURRENT_RUNS=\"3\" (Fast-Flow's name) sets FLOTILLA_MAX_CONCURRENT_RUNS"
        ),
        "{log}"
    );
    assert!(
        log.contains("LOG_RETENTION_DAYS=\"7\" (Fast-Flow's name) sets FLOTILLA_RETAIN_FOR"),
        "{log}"
    );
    assert!(
        log.contains("Fast-Flow settings with no effect in Flotilla: S3_BUCKET;"),
        "{log}"
    );
}

#[test]
fn a_fastflow_variable_disagreeing_with_flotillas_own_stops_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // No valid encryption key either: were the conflict not caught first, the start
    // would still end, with an error about the key instead.
    let output = run_cli(
        &[
            "serve",
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ],
        b"",
        &[
            ("MAX_CONCURRENT_RUNS", "2"),
            ("FLOTILLA_MAX_CONCURRENT_RUNS", "5"),
            ("ENCRYPTION_KEY", ""),
        ],
    );
    assert_exit(&output, 1);
    let error = stderr(&output);
    assert!(
        error.contains("MAX_CONCURRENT_RUNS=\"2\"")
            && error.contains("FLOTILLA_MAX_CONCURRENT_RUNS=\"5\"")
            && error.contains("disagree"),
        "{error}"
    );
    assert!(!data.exists(), "nothing was created: {}", data.display());
}
