//! Regression tests for what fuzzing found (`make fuzz`: the cargo-fuzz targets under
//! `fuzz/` and schemathesis against `/openapi.json`). Each test names the input that
//! failed and what it must do instead; pure calls, no server, no Docker.

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
                assert_eq!(operation["requestBody"]["required"], false, "{method} {path}");
            } else {
                assert!(body.is_null(), "{method} {path} declares a body");
            }
        }
    }
    assert!(writes >= 10, "only {writes} write routes");
}
