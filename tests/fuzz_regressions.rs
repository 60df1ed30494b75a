//! Regression tests for what fuzzing found (`make fuzz`: the cargo-fuzz targets under
//! `fuzz/` and schemathesis against `/openapi.json`). Each test names the input that
//! failed and what it must do instead; pure calls, no server, no Docker.

use flotilla::controller::schedule::slots::{CompileError, CompiledSchedule};
use flotilla::resource::schedule_time::parse_cron;
use flotilla::resource::types::ScheduleSpec;
use flotilla::server::routes::openapi;

/// Schemathesis only sends bodies the document declares: without a `requestBody` the
/// write routes (apply, runs, tokens, secret data, webhooks) were only ever called empty.
#[test]
fn openapi_declares_a_json_body_on_every_write_route() {
    let doc = openapi();
    let paths = doc["paths"].as_object().expect("paths");
    let mut writes = 0;
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().expect("operations") {
            let body = &operation["requestBody"]["content"]["application/json"]["schema"];
            if method == "post" || method == "put" {
                writes += 1;
                assert_eq!(body["type"], "object", "{method} {path}");
                assert_eq!(
                    operation["requestBody"]["required"], false,
                    "{method} {path}"
                );
            } else {
                assert!(body.is_null(), "{method} {path} declares a body");
            }
        }
    }
    assert!(writes >= 10, "only {writes} write routes");
}

/// `fuzz/artifacts/schedule/timeout-dc57e317…`: the cron line `, * 15 * 1` parsed, and
/// croner reads the empty list element as a minute field matching nothing, so every search
/// for the next or previous slot ran to croner's search limit (1.7 s in a release build,
/// on every reconcile of the schedule). Empty list elements are refused at parse time.
#[test]
fn cron_lines_with_an_empty_list_element_are_refused() {
    for line in [
        ", * 15 * 1",
        "0 , * * *",
        "1,,2 * * * *",
        "0 3 * * 1,",
        "0 3 ,5 * *",
    ] {
        let problem = parse_cron(line).expect_err(line);
        assert!(problem.contains("empty list element"), "{line}: {problem}");
    }
    for line in ["0,30 * * * *", "0 9-17 * * 1-5", "0 0 1,15 * *", "@daily"] {
        assert!(parse_cron(line).is_ok(), "{line}");
    }
    let spec = ScheduleSpec {
        cron: Some(", * 15 * 1".to_owned()),
        ..ScheduleSpec::default()
    };
    assert!(matches!(
        CompiledSchedule::compile(&spec),
        Err(CompileError::Invalid(problem)) if problem.contains("empty list element")
    ));
}
