//! Every example in `examples/` does what the README and its own comments promise, run
//! the way the README tells a newcomer to (`flotilla run NAME --wait` against an operator
//! reconciling `examples/`), on a real Docker engine through the socket proxy.
//!
//! `with-requirements` installs `six` from the package index at run time: the run
//! container must trust what this host trusts (its CA bundle is mounted by default), as
//! on networks whose TLS is re-signed by a proxy.

mod support;

use std::path::Path;
use std::time::Duration;

use support::docker::{Fixture, OperatorOptions, attempts, phase, reason};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read examples").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// What one example must do: CLI exit code, output lines it must print, and the run's
/// phase, reason and number of attempts.
struct Expected {
    name: &'static str,
    exit: i32,
    prints: &'static [&'static str],
    phase: &'static str,
    reason: &'static str,
    attempts: usize,
}

const EXAMPLES: &[Expected] = &[
    Expected {
        name: "hello",
        exit: 0,
        prints: &["hello from flotilla on Python 3.11"],
        phase: "Succeeded",
        reason: "",
        attempts: 1,
    },
    Expected {
        name: "failing",
        exit: 3,
        prints: &["about to fail with exit code 3"],
        phase: "Failed",
        reason: "BackoffLimitExceeded",
        attempts: 2,
    },
    Expected {
        name: "oom",
        exit: 137,
        prints: &["allocating 512 MiB with a 64 MiB limit"],
        phase: "Failed",
        reason: "OOMKilled",
        attempts: 1,
    },
    Expected {
        name: "env-and-secret",
        exit: 0,
        prints: &[
            "GREETING=hello MODE=demo",
            "API_TOKEN is set: True (28 characters)",
        ],
        phase: "Succeeded",
        reason: "",
        attempts: 1,
    },
    Expected {
        name: "slow",
        exit: 0,
        prints: &["tick 1/30", "tick 30/30"],
        phase: "Succeeded",
        reason: "",
        attempts: 1,
    },
    Expected {
        name: "with-requirements",
        exit: 0,
        prints: &["six 1.16.0 imported from the shared uv cache"],
        phase: "Succeeded",
        reason: "",
        attempts: 1,
    },
];

#[tokio::test(flavor = "multi_thread")]
async fn every_example_does_what_the_readme_says() {
    let f = Fixture::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    copy_dir(&examples, &f.pipelines_dir());
    let listed: Vec<String> = std::fs::read_dir(&examples)
        .expect("examples")
        .flatten()
        .filter(|e| e.path().join("main.py").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in &listed {
        assert!(
            EXAMPLES.iter().any(|e| e.name == name),
            "examples/{name} has no expectation in this test: add one"
        );
    }

    let op = f.start_operator(&OperatorOptions::default());
    for example in EXAMPLES {
        op.wait_for_pipeline(example.name).await;
    }
    // All at once, as separate `flotilla run NAME --wait` processes.
    let running: Vec<_> = EXAMPLES
        .iter()
        .map(|e| (e, op.spawn_cli(&["run", e.name, "--wait"])))
        .collect();
    for (example, process) in running {
        let output = process.wait(Duration::from_secs(300));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let context = format!(
            "flotilla run {} --wait\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
            example.name,
            op.context()
        );
        assert_eq!(output.status.code(), Some(example.exit), "{context}");
        let printed = format!("{stdout}{stderr}");
        for line in example.prints {
            assert!(printed.contains(line), "{line:?} missing\n{context}");
        }
        assert!(
            !printed.contains("example-token-not-a-real-one"),
            "a secret value was shown\n{context}"
        );
    }

    let (_, runs) = op.get("/namespaces/default/runs").await;
    for example in EXAMPLES {
        let run = runs["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| {
                r["spec"]["pipelineRef"]["name"] == example.name
                    && r["spec"]["trigger"] != "schedule"
            })
            .unwrap_or_else(|| panic!("no run of {}: {runs:#}", example.name));
        assert_eq!(phase(run), example.phase, "{}: {run:#}", example.name);
        assert_eq!(reason(run), example.reason, "{}: {run:#}", example.name);
        assert_eq!(
            attempts(run).len(),
            example.attempts,
            "{}: {run:#}",
            example.name
        );
    }
}

const SHOWS_ITS_CA_BUNDLE: &str = r#"
import os
path = os.environ.get("SSL_CERT_FILE")
print("SSL_CERT_FILE", path)
print("REQUESTS_CA_BUNDLE", os.environ.get("REQUESTS_CA_BUNDLE"))
print("bytes", os.path.getsize(path) if path and os.path.exists(path) else None)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn runs_trust_the_host_ca_bundle_unless_told_not_to() {
    let host_bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    let size = std::fs::metadata(host_bundle)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; this test expects Debian's CA bundle (apt-get install ca-certificates)",
                host_bundle.display()
            )
        })
        .len();
    let f = Fixture::new();
    f.write_pipeline("ca", SHOWS_ITS_CA_BUNDLE, "", "");
    for (env, expected) in [
        (
            vec![(
                "SSL_CERT_FILE".to_owned(),
                host_bundle.display().to_string(),
            )],
            vec![
                "SSL_CERT_FILE /etc/flotilla/ca.pem".to_owned(),
                "REQUESTS_CA_BUNDLE /etc/flotilla/ca.pem".to_owned(),
                format!("bytes {size}"),
            ],
        ),
        (
            vec![("FLOTILLA_NO_HOST_CA_BUNDLE".to_owned(), "true".to_owned())],
            vec![
                "SSL_CERT_FILE None".to_owned(),
                "REQUESTS_CA_BUNDLE None".to_owned(),
                "bytes None".to_owned(),
            ],
        ),
    ] {
        let op = f.start_operator(&OperatorOptions {
            env,
            ..OperatorOptions::default()
        });
        op.wait_for_pipeline("ca").await;
        let run = op.create_run("ca", &[]).await;
        let finished = op.wait_finished(&run).await;
        assert_eq!(phase(&finished), "Succeeded", "{finished:#}");
        assert_eq!(
            support::docker::stdout_lines(&op.log(&run, 1).await),
            expected
        );
        op.kill_9();
    }
}
