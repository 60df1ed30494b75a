//! Secrets end to end: a planted-value leak scan over everything Flotilla stores or
//! shows after a real run that prints its secrets (whole and split across two writes),
//! key rotation with two keys across operator restarts, a wrong key, a missing secret,
//! the start-up refusal without a usable `ENCRYPTION_KEY`, and `flotilla secret encrypt`
//! tokens pasted into `encryptedData`.
//!
//! Runs use real Docker through the per-test socket proxy (`support::docker`); secret
//! values are random per test, so tests run in parallel and twice in a row.

#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use flotilla::secrets::Keyring;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::docker::{
    Fixture, Operator, OperatorOptions, attempts, phase, reason, stdout_lines, uid,
};
use support::scenario::{
    Api, SecretsDir, files_below, files_containing, operator_logs, planted_value,
};
use support::server::{ENCRYPTION_KEY, run_cli};

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Prints each secret whole, then split across two writes of one line, and once on
/// stderr; the third value comes from a `mountAs: files` secret.
const PRINTS_SECRETS: &str = r#"import os, sys, time
values = [
    os.environ["APPLIED_TOKEN"],
    os.environ["SET_TOKEN"],
    open("/run/secrets/leak-files/FILE_TOKEN").read(),
]
for v in values:
    print("whole:", v, flush=True)
    sys.stdout.write("split:" + v[:5])
    sys.stdout.flush()
    time.sleep(0.3)
    sys.stdout.write(v[5:] + "\n")
    sys.stdout.flush()
    print("stderr:", v, file=sys.stderr, flush=True)
print("done", flush=True)
"#;

/// Prints `<NAME> <sha256 of $NAME>` for each variable named in `$DIGEST_OF` (comma
/// separated): proves the values arrived without printing them.
const PRINTS_DIGESTS: &str = r#"import hashlib, os
for name in os.environ["DIGEST_OF"].split(","):
    print(name, hashlib.sha256(os.environ[name].encode()).hexdigest(), flush=True)
"#;

const QUICK: &str = "print(\"tick\", flush=True)\n";

fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A Secret manifest with `stringData`.
fn string_data_secret(name: &str, data: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: {name}\nspec:\n  stringData:\n"
    );
    for (key, value) in data {
        yaml.push_str(&format!("    {key}: \"{value}\"\n"));
    }
    yaml
}

/// Operator options with `ENCRYPTION_KEY=<keys>` (and any further variables).
fn with_keys(keys: &str, more: &[(String, String)]) -> OperatorOptions {
    let mut env = vec![("ENCRYPTION_KEY".to_owned(), keys.to_owned())];
    env.extend(more.iter().cloned());
    OperatorOptions {
        env,
        ..OperatorOptions::default()
    }
}

/// Runs `pipeline` with `env` to its end; returns the run.
async fn run_to_end(operator: &Operator, pipeline: &str, env: &[(&str, &str)]) -> Value {
    let name = operator.create_run(pipeline, env).await;
    operator.wait_finished(&name).await
}

/// Runs the digest pipeline and checks it saw `expected` (variable → plaintext).
async fn assert_run_sees(
    operator: &Operator,
    pipeline: &str,
    expected: &[(&str, &str)],
    when: &str,
) {
    let names: Vec<&str> = expected.iter().map(|(k, _)| *k).collect();
    let run = run_to_end(operator, pipeline, &[("DIGEST_OF", &names.join(","))]).await;
    assert_eq!(
        phase(&run),
        "Succeeded",
        "{when}: {run:#}\n{}",
        operator.context()
    );
    let name = run["metadata"]["name"].as_str().expect("run name");
    let wanted: Vec<String> = expected
        .iter()
        .map(|(k, v)| format!("{k} {}", sha256_hex(v)))
        .collect();
    assert_eq!(
        stdout_lines(&operator.log(name, 1).await),
        wanted,
        "{when}: the run received the secret values"
    );
}

/// `flotilla ARGS` against `operator`; panics unless it exits 0; returns stdout+stderr.
fn cli_ok(operator: &Operator, args: &[&str]) -> String {
    let out = operator.cli(args, CLI_TIMEOUT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "flotilla {args:?} failed:\n{text}");
    text
}

// ---------------------------------------------------------------------------------------
// Leak scan

#[tokio::test]
async fn planted_secret_values_appear_nowhere_flotilla_stores_or_shows() {
    let fixture = Fixture::new();
    let secrets_dir = SecretsDir::for_fixture(&fixture);
    fixture.write_pipeline(
        "leaky",
        PRINTS_SECRETS,
        "",
        "secretRefs: [{ name: leak-applied }, { name: leak-set }, { name: leak-files, mountAs: files }]",
    );
    let operator = fixture.start_operator(&with_keys(ENCRYPTION_KEY, &[secrets_dir.env()]));
    operator.wait_for_pipeline("leaky").await;
    let api = Api::connect(&operator);

    let applied = planted_value("applied");
    let set = planted_value("set");
    let mounted = planted_value("mounted");
    // Only ever sent in dry runs and diffs.
    let dry = planted_value("dryrun");
    let planted = [&applied, &set, &mounted, &dry];

    let outcome = api
        .apply_ok(&format!(
            "{}---\n{}",
            string_data_secret("leak-applied", &[("APPLIED_TOKEN", &applied)]),
            string_data_secret("leak-files", &[("FILE_TOKEN", &mounted)])
        ))
        .await;
    assert_eq!(
        outcome["items"].as_array().map(Vec::len),
        Some(2),
        "{outcome}"
    );
    let changed = string_data_secret("leak-applied", &[("APPLIED_TOKEN", &dry)]);
    let (status, dry_run) = api.apply(&changed, "fieldManager=test&dryRun=true").await;
    assert_eq!(status, 200, "{dry_run}");
    assert_eq!(dry_run["items"][0]["action"], "configured", "{dry_run}");
    assert!(
        dry_run["diff"].as_str().is_some_and(|d| !d.is_empty()),
        "a dry run of a changed value shows a diff: {dry_run}"
    );

    let mut shown = Vec::new();
    let set_arg = format!("SET_TOKEN={set}");
    shown.push(cli_ok(&operator, &["secret", "set", "leak-set", &set_arg]));
    let manifests = fixture.scratch("manifests");
    let changed_file = manifests.join("leak-applied.yaml");
    std::fs::write(&changed_file, &changed).expect("manifest");
    let changed_path = changed_file.display().to_string();
    let diff = cli_ok(
        &operator,
        &["diff", "-f", &changed_path, "--field-manager", "test"],
    );
    assert!(diff.contains("leak-applied"), "diff output: {diff}");
    shown.push(diff);
    shown.push(cli_ok(
        &operator,
        &[
            "apply",
            "--dry-run",
            "-f",
            &changed_path,
            "--field-manager",
            "test",
        ],
    ));

    let (status, created) = api
        .send(
            Method::POST,
            "/namespaces/default/runs",
            Some((
                "application/json",
                json!({ "spec": { "pipelineRef": { "name": "leaky" } } }).to_string(),
            )),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let run_name = created["metadata"]["name"]
        .as_str()
        .expect("run name")
        .to_owned();
    let run = operator.wait_finished(&run_name).await;
    assert_eq!(phase(&run), "Succeeded", "{run:#}\n{}", operator.context());

    // The stored log has `[secret]` where the values were, also for the split writes.
    let (status, log) = api
        .send_text(
            Method::GET,
            &format!("/namespaces/default/runs/{run_name}/log?attempt=1"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{log}");
    let redacted: Vec<String> = ["whole: [secret]", "split:[secret]"]
        .iter()
        .cycle()
        .take(6)
        .map(|s| (*s).to_owned())
        .chain(["done".to_owned()])
        .collect();
    assert_eq!(stdout_lines(&log), redacted, "stored log:\n{log}");
    let stderr_lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once(" stderr "))
        .map(|(_, text)| text)
        .collect();
    assert_eq!(stderr_lines, ["stderr: [secret]"; 3], "stored log:\n{log}");

    // Everything the API shows about the secrets, the pipeline and the run.
    for path in [
        "/secrets",
        "/namespaces/default/secrets",
        "/namespaces/default/secrets/leak-applied",
        "/namespaces/default/secrets/leak-set",
        "/namespaces/default/secrets/leak-files",
        "/namespaces/default/secrets/leak-applied/keys",
        "/namespaces/default/secrets/leak-set/keys",
        "/namespaces/default/secrets/leak-files/keys",
        "/pipelines",
        "/namespaces/default/pipelines/leaky",
        "/runs",
        "/namespaces/default/runs",
        &format!("/namespaces/default/runs/{run_name}"),
        &format!("/namespaces/default/runs/{run_name}/metrics"),
        &format!("/namespaces/default/runs/{run_name}/log?attempt=1&follow=true"),
        "/events",
        "/namespaces/default/events",
        &format!("/namespaces/default/events?for=run/{run_name}"),
        "/namespaces/default/events?for=secret/leak-applied",
        "/metrics",
    ] {
        let (status, body) = api.send_text(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
    }
    for args in [
        vec!["get", "secret", "leak-applied"],
        vec!["get", "secret", "leak-set"],
        vec!["get", "secrets"],
        vec!["get", "secrets", "-o", "yaml"],
        vec!["get", "secrets", "-o", "json"],
        vec!["describe", "secret", "leak-applied"],
        vec!["describe", "secret", "leak-files"],
        vec!["describe", "pipeline", "leaky"],
        vec!["describe", "run", &run_name],
        vec!["get", "runs", "-o", "yaml"],
        vec!["logs", &run_name],
        vec!["logs", "--timestamps", &run_name],
        vec!["get", "events"],
    ] {
        shown.push(cli_ok(&operator, &args));
    }

    // The `mountAs: files` copy is gone once the run has ended.
    fixture.wait_no_containers(Duration::from_secs(30)).await;
    let container_dir = secrets_dir.path().join(format!("flotilla-{}-1", uid(&run)));
    assert!(
        !container_dir.exists(),
        "{} outlived the run",
        container_dir.display()
    );
    assert!(
        secrets_dir.entries().is_empty(),
        "{} holds {:?} after the run",
        secrets_dir.path().display(),
        secrets_dir.entries()
    );

    // The scan. The second part of each value (after the first 5 characters) is
    // searched: it also finds a value stored in two pieces.
    let data_dir = fixture.data_dir();
    let database = data_dir.join("flotilla.db");
    assert!(
        database.is_file(),
        "no SQLite file at {}",
        database.display()
    );
    let scanned = files_below(&data_dir, false);
    assert!(
        scanned
            .iter()
            .any(|p| p.ends_with(format!("runs/{}/attempt-1.log", uid(&run)))),
        "the run's log is among the scanned files: {scanned:?}"
    );
    let operator_logs = operator_logs(&fixture);
    assert!(
        operator_logs
            .iter()
            .any(|(_, text)| text.contains("started")),
        "the operator's stderr was captured: {operator_logs:?}"
    );
    let transcript = api.transcript();
    assert!(transcript.len() >= 20, "the API responses were recorded");
    // Control: the scan finds a value where the test itself wrote it in plaintext.
    assert_eq!(
        files_containing(&manifests, &dry[5..]),
        std::slice::from_ref(&changed_file),
        "the scan finds plaintext where it is"
    );
    for value in planted {
        let needle = &value[5..];
        let files = files_containing(&data_dir, needle);
        assert!(
            files.is_empty(),
            "a planted value is stored in plaintext in {files:?} (data dir {})",
            data_dir.display()
        );
        let files = files_containing(secrets_dir.path(), needle);
        assert!(files.is_empty(), "left in the secrets dir: {files:?}");
        for (path, text) in &operator_logs {
            assert!(
                !text.contains(needle),
                "the operator logged a planted value in {}",
                path.display()
            );
        }
        for response in &transcript {
            assert!(
                !response.contains(needle),
                "an API response shows a planted value:\n{response}"
            );
        }
        for output in &shown {
            assert!(
                !output.contains(needle),
                "CLI output shows a planted value:\n{output}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Keys

#[tokio::test]
async fn rotation_with_two_keys_re_encrypts_every_value() {
    let key_a = Keyring::generate_key();
    let key_b = Keyring::generate_key();
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "digest",
        PRINTS_DIGESTS,
        "",
        "secretRefs: [{ name: rot-applied }, { name: rot-set }]",
    );
    let applied = planted_value("applied");
    let set = planted_value("set");
    let expected = [("APPLIED", applied.as_str()), ("SET", set.as_str())];

    let operator = fixture.start_operator(&with_keys(&key_a, &[]));
    operator.wait_for_pipeline("digest").await;
    let mut api = Api::connect(&operator);
    api.apply_ok(&string_data_secret("rot-applied", &[("APPLIED", &applied)]))
        .await;
    cli_ok(
        &operator,
        &["secret", "set", "rot-set", &format!("SET={set}")],
    );
    assert_run_sees(&operator, "digest", &expected, "with key A").await;
    operator.kill_9();

    // B is new, A still decrypts.
    let operator = fixture.start_operator(&with_keys(&format!("{key_b},{key_a}"), &[]));
    api.reattach(&operator);
    assert_run_sees(
        &operator,
        "digest",
        &expected,
        "with keys B,A before rotation",
    )
    .await;
    for secret in ["rot-applied", "rot-set"] {
        let keys = api
            .get_ok(&format!("/namespaces/default/secrets/{secret}/keys"))
            .await;
        assert_eq!(keys["keys"][0]["readable"], true, "{keys}");
        assert_eq!(
            keys["keys"][0]["currentKey"], false,
            "still under A: {keys}"
        );
    }
    let report = cli_ok(&operator, &["secret", "rotate"]);
    assert!(
        report.contains("re-encrypted 2 value(s) in 2 of 2 secret(s)"),
        "rotate reports the count: {report}"
    );
    let only_a = Keyring::from_env_value(&key_a).expect("key A");
    let only_b = Keyring::from_env_value(&key_b).expect("key B");
    for (secret, key, value) in [
        ("rot-applied", "APPLIED", &applied),
        ("rot-set", "SET", &set),
    ] {
        let object = api
            .get_ok(&format!("/namespaces/default/secrets/{secret}"))
            .await;
        let token = object["spec"]["encryptedData"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no encryptedData.{key}: {object}"));
        assert_eq!(
            only_b
                .decrypt(token, key)
                .expect("B decrypts the rotated token"),
            *value
        );
        assert!(
            only_a.decrypt(token, key).is_err(),
            "the rotated token of {secret} is no longer under A"
        );
    }
    let again = cli_ok(&operator, &["secret", "rotate"]);
    assert!(
        again.contains("re-encrypted 0 value(s) in 0 of 2 secret(s)"),
        "a second rotation has nothing to do: {again}"
    );
    operator.kill_9();

    // Only B: the values were re-encrypted, so runs still get them.
    let operator = fixture.start_operator(&with_keys(&key_b, &[]));
    api.reattach(&operator);
    assert_run_sees(
        &operator,
        "digest",
        &expected,
        "with only key B after rotation",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_key_names_the_unreadable_secret_and_fails_only_runs_that_need_it() {
    let key_a = Keyring::generate_key();
    let key_c = Keyring::generate_key();
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "needs-secret",
        PRINTS_DIGESTS,
        "",
        "secretRefs: [{ name: wrong-key }]",
    );
    fixture.write_pipeline("unrelated", QUICK, "", "");
    let operator = fixture.start_operator(&with_keys(&key_a, &[]));
    operator.wait_for_pipeline("needs-secret").await;
    operator.wait_for_pipeline("unrelated").await;
    let mut api = Api::connect(&operator);
    let value = planted_value("wrong");
    api.apply_ok(&string_data_secret("wrong-key", &[("PASSWORD", &value)]))
        .await;
    operator.kill_9();

    let operator = fixture.start_operator(&with_keys(&key_c, &[]));
    api.reattach(&operator);
    let shown = cli_ok(&operator, &["get", "secret", "wrong-key"]);
    let line = shown
        .lines()
        .find(|l| l.starts_with("PASSWORD"))
        .unwrap_or_else(|| panic!("no PASSWORD row:\n{shown}"));
    assert!(
        line.contains("no:") && line.contains("Secret/default/wrong-key key PASSWORD"),
        "the key is reported unreadable, naming the secret and the key: {line:?}"
    );

    let failed = run_to_end(&operator, "needs-secret", &[("DIGEST_OF", "PASSWORD")]).await;
    assert_eq!(phase(&failed), "Failed", "{failed:#}");
    assert_eq!(reason(&failed), "SecretUnreadable", "{failed:#}");
    let message = failed["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("wrong-key") && message.contains("PASSWORD"),
        "the failure names the secret and the key: {message:?}"
    );
    assert!(
        attempts(&failed).is_empty(),
        "no container was started: {failed:#}"
    );

    let fine = run_to_end(&operator, "unrelated", &[]).await;
    assert_eq!(
        phase(&fine),
        "Succeeded",
        "{fine:#}\n{}",
        operator.context()
    );

    let report = operator.cli(&["secret", "rotate"], CLI_TIMEOUT);
    let stdout = String::from_utf8_lossy(&report.stdout);
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert!(report.status.success(), "rotate: {stdout}{stderr}");
    assert!(
        stdout.contains("re-encrypted 0 value(s)") && stderr.contains("wrong-key"),
        "rotation leaves the unreadable value alone and names it:\n{stdout}{stderr}"
    );
}

#[tokio::test]
async fn a_missing_secret_or_key_fails_runs_with_secret_not_found() {
    let fixture = Fixture::new();
    fixture.write_pipeline(
        "orphan",
        QUICK,
        "",
        "secretRefs: [{ name: does-not-exist }]",
    );
    fixture.write_pipeline(
        "wrong-key-name",
        QUICK,
        "",
        "secretRefs: [{ name: present, keys: [ABSENT] }]",
    );
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("orphan").await;
    operator.wait_for_pipeline("wrong-key-name").await;
    let api = Api::connect(&operator);
    api.set_secret("present", &[("PRESENT", &planted_value("present"))])
        .await;

    let run = run_to_end(&operator, "orphan", &[]).await;
    assert_eq!(phase(&run), "Failed", "{run:#}");
    assert_eq!(reason(&run), "SecretNotFound", "{run:#}");
    assert!(
        run["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does-not-exist")),
        "{run:#}"
    );
    let run = run_to_end(&operator, "wrong-key-name", &[]).await;
    assert_eq!(phase(&run), "Failed", "{run:#}");
    assert_eq!(reason(&run), "SecretNotFound", "{run:#}");
    assert!(
        run["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("present") && m.contains("ABSENT")),
        "{run:#}"
    );
}

// ---------------------------------------------------------------------------------------
// Start-up refusal (no Docker needed)

/// `flotilla serve` on a fresh dir with `ENCRYPTION_KEY` set to `key` (unset for
/// `None`); waits for it to exit (it must refuse before listening).
fn serve_with_key(dir: &Path, key: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0"]);
    for (name, _) in std::env::vars() {
        if name.starts_with("FLOTILLA_") || name.starts_with("UV_") {
            command.env_remove(name);
        }
    }
    for name in [
        "ENCRYPTION_KEY",
        "DATABASE_URL",
        "PIPELINES_DIR",
        "PORT",
        "DOCKER_HOST",
    ] {
        command.env_remove(name);
    }
    if let Some(key) = key {
        command.env("ENCRYPTION_KEY", key);
    }
    let mut child = command
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flotilla serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait for serve").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "flotilla serve with ENCRYPTION_KEY={key:?} did not exit within 30 s (it must refuse to start):\n{}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn serve_refuses_to_start_without_a_usable_encryption_key() {
    let malformed = "Zm9vYmFy-not-a-fernet-key-4711";
    let valid = Keyring::generate_key();
    let second_malformed = format!("{valid},{malformed}");
    for key in [
        None,
        Some(""),
        Some(malformed),
        Some(second_malformed.as_str()),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = serve_with_key(dir.path(), key);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "ENCRYPTION_KEY={key:?}: exit code; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains("flotilla secret gen-key"),
            "ENCRYPTION_KEY={key:?}: the message says how to make a key:\n{stderr}"
        );
        assert!(
            stderr.contains("ENCRYPTION_KEY"),
            "ENCRYPTION_KEY={key:?}: the message names the variable:\n{stderr}"
        );
        assert!(
            !stderr.contains(malformed),
            "the rejected key is not echoed:\n{stderr}"
        );
        assert!(
            !dir.path().join("data").exists(),
            "ENCRYPTION_KEY={key:?}: nothing is created before the refusal"
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let output = serve_with_key(dir.path(), Some(&second_malformed));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("entry 2"),
        "the malformed entry is named by position:\n{stderr}"
    );
}

#[test]
fn gen_key_prints_a_key_serve_would_accept() {
    let output = run_cli(&["secret", "gen-key"], b"", &[]);
    assert_eq!(output.status.code(), Some(0));
    let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let keyring = Keyring::from_env_value(&key).expect("gen-key prints a Fernet key");
    assert_eq!(
        keyring
            .decrypt(&keyring.encrypt("round trip"), "test")
            .expect("decrypts"),
        "round trip"
    );
}

// ---------------------------------------------------------------------------------------
// `flotilla secret encrypt`

fn encrypt(args: &[&str], stdin: &[u8], keys: &str) -> String {
    let mut all = vec!["secret", "encrypt"];
    all.extend_from_slice(args);
    let output = run_cli(&all, stdin, &[("ENCRYPTION_KEY", keys)]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "flotilla {all:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn encrypt_output_decrypts_and_can_be_applied_as_encrypted_data() {
    let value = planted_value("pasted");
    let keyring = Keyring::from_env_value(ENCRYPTION_KEY).expect("the test key");

    let from_stdin = encrypt(&[], format!("{value}\n").as_bytes(), ENCRYPTION_KEY);
    assert_eq!(
        keyring.decrypt(&from_stdin, "stdin").expect("decrypts"),
        value,
        "stdin (its trailing newline dropped)"
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let file: PathBuf = scratch.path().join("value.txt");
    std::fs::write(&file, &value).expect("value file");
    let from_file = encrypt(
        &["--from-file", &file.display().to_string()],
        b"",
        ENCRYPTION_KEY,
    );
    assert_eq!(
        keyring.decrypt(&from_file, "file").expect("decrypts"),
        value
    );
    let other = Keyring::generate_key();
    let with_two = encrypt(&[], value.as_bytes(), &format!("{other},{ENCRYPTION_KEY}"));
    assert!(
        keyring.decrypt(&with_two, "two keys").is_err(),
        "with several keys the first (newest) encrypts"
    );
    let newest = Keyring::from_env_value(&other).expect("the newest key alone");
    assert_eq!(
        newest
            .decrypt(&with_two, "two keys")
            .expect("the newest key decrypts what was encrypted with two"),
        value
    );

    let fixture = Fixture::new();
    fixture.write_pipeline(
        "digest",
        PRINTS_DIGESTS,
        "",
        "secretRefs: [{ name: pasted }]",
    );
    let operator = fixture.start_operator(&OperatorOptions::default());
    operator.wait_for_pipeline("digest").await;
    let api = Api::connect(&operator);
    let manifest = format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: pasted\nspec:\n  encryptedData:\n    FROM_STDIN: {from_stdin}\n    FROM_FILE: {from_file}\n"
    );
    let outcome = api.apply_ok(&manifest).await;
    assert_eq!(outcome["items"][0]["action"], "created", "{outcome}");
    let keys = api.get_ok("/namespaces/default/secrets/pasted/keys").await;
    for entry in keys["keys"].as_array().expect("keys") {
        assert_eq!(entry["readable"], true, "{keys}");
        assert_eq!(entry["size"], value.len(), "{keys}");
    }
    assert_run_sees(
        &operator,
        "digest",
        &[("FROM_FILE", &value), ("FROM_STDIN", &value)],
        "a secret applied from encrypt output",
    )
    .await;
}
