//! Table tests of manifest parsing and validation: inline YAML fixtures through
//! `parse_documents` + `validate_document`, no server. Every error case pins the field
//! path, the line and column in the file, and a piece of the message.

use flotilla::resource::DesiredObject;
use flotilla::resource::Kind;
use flotilla::resource::error::ManifestError;
use flotilla::resource::manifest::parse_documents;
use flotilla::resource::validate::validate_document;
use flotilla::secrets::Keyring;

const FILE: &str = "fixtures/test.yaml";

/// Lines 1-5 of every Pipeline fixture; its spec fields start on line 6.
const PIPELINE_HEAD: &str =
    "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: etl\nspec:\n";

/// Lines 1-6 of every Schedule fixture; its further spec fields start on line 7.
const SCHEDULE_HEAD: &str = "apiVersion: flotilla.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: nightly\nspec:\n  pipelineRef: { name: etl }\n";

/// Lines 1-5 of every Secret fixture; its spec fields start on line 6.
const SECRET_HEAD: &str =
    "apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: warehouse\nspec:\n";

fn pipeline(spec: &str) -> String {
    format!("{PIPELINE_HEAD}{spec}")
}

fn schedule(spec: &str) -> String {
    format!("{SCHEDULE_HEAD}{spec}")
}

fn secret(spec: &str) -> String {
    format!("{SECRET_HEAD}{spec}")
}

/// Every object of a text, or every problem of it.
fn validate(text: &str) -> Result<Vec<DesiredObject>, Vec<ManifestError>> {
    let documents = parse_documents(FILE, text).map_err(|e| vec![e])?;
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for doc in &documents {
        match validate_document(doc) {
            Ok(object) => objects.push(object),
            Err(problems) => errors.extend(problems),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

fn valid(text: &str) -> Vec<DesiredObject> {
    match validate(text) {
        Ok(objects) => objects,
        Err(errors) => panic!(
            "expected valid, got:\n{}\n--- input:\n{text}",
            render(&errors)
        ),
    }
}

fn render(errors: &[ManifestError]) -> String {
    errors
        .iter()
        .map(|e| format!("{e}  [{e:?}]"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that `text` fails with an error on `field` at `line`:`column` whose message
/// contains `message`, located in document `document` of the file.
fn assert_error(text: &str, document: usize, field: &str, line: u64, column: u64, message: &str) {
    let errors = match validate(text) {
        Ok(objects) => panic!(
            "expected an error on {field}, got valid objects {objects:?}\n--- input:\n{text}"
        ),
        Err(errors) => errors,
    };
    let Some(error) = errors.iter().find(|e| e.field.as_deref() == Some(field)) else {
        panic!(
            "no error on {field}; errors:\n{}\n--- input:\n{text}",
            render(&errors)
        );
    };
    let context = format!("{}\n--- input:\n{text}", render(&errors));
    assert_eq!(error.code, "validation.failed", "{context}");
    assert_eq!(error.file, FILE, "{context}");
    assert_eq!(error.document, Some(document), "document index; {context}");
    assert_eq!(
        (error.line, error.column),
        (Some(line), Some(column)),
        "line and column of {field}; {context}"
    );
    assert!(
        error.message.contains(message),
        "message of {field} should contain {message:?}; {context}"
    );
    // The rendered form a user sees names everything.
    let shown = error.to_string();
    let prefix = format!("{FILE}:{line}:{column}: document {document}: {field}: ");
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} should start with {prefix:?}"
    );
}

/// Like [`assert_error`] for document 1, checking the line but not the column.
fn assert_error_on_line(text: &str, field: &str, line: u64, message: &str) {
    let errors = validate(text).expect_err("invalid");
    let context = format!("{}\n--- input:\n{text}", render(&errors));
    let Some(error) = errors.iter().find(|e| e.field.as_deref() == Some(field)) else {
        panic!("no error on {field}; errors:\n{context}");
    };
    assert_eq!(error.document, Some(1), "{context}");
    assert!(
        error.message.contains(message),
        "message of {field} should contain {message:?}; {context}"
    );
    assert_eq!(error.line, Some(line), "line of {field}; {context}");
}

/// One test per error case: `name => (text, field, line, column, message piece)`.
macro_rules! error_cases {
    ($($name:ident => ($text:expr, $field:expr, $line:expr, $column:expr, $message:expr);)*) => {
        $(
            #[test]
            fn $name() {
                assert_error(&$text, 1, $field, $line, $column, $message);
            }
        )*
    };
}

// ---------------------------------------------------------------- valid manifests

#[test]
fn full_pipeline_from_the_design_is_valid() {
    let objects = valid(&pipeline(
        r#"  source: { path: nightly-etl }
  entrypoint: main.py
  python: "3.12"
  env: { LOG_LEVEL: info }
  secretRefs: [ { name: warehouse } ]
  resources: { memory: 512Mi, cpus: "1.5", pids: 256 }
  timeout: 30m
  retries: { limit: 3, backoff: { kind: exponential, initial: 30s, max: 10m } }
  maxInstances: 1
  image: null
"#,
    ));
    assert_eq!(objects.len(), 1);
    let object = &objects[0];
    assert_eq!(object.key.kind, Kind::Pipeline);
    assert_eq!(object.key.namespace, "default");
    assert_eq!(object.key.name, "etl");
    assert_eq!(object.spec.to_value()["resources"]["memory"], "512Mi");
    assert_eq!(
        object.spec.to_value()["retries"]["backoff"]["initial"],
        "30s"
    );
    assert_eq!(object.spec.to_value()["secretRefs"][0]["name"], "warehouse");
}

#[test]
fn quantities_in_every_accepted_spelling_are_valid() {
    for (memory, cpus, timeout) in [
        ("512Mi", "1.5", "30s"),
        ("1G", "500m", "1h30m"),
        ("512m", "2", "10m"),
        ("1.5g", "0.25", "2d"),
        ("256MB", "1", "500ms"),
    ] {
        valid(&pipeline(&format!(
            "  resources: {{ memory: {memory}, cpus: \"{cpus}\" }}\n  timeout: {timeout}\n"
        )));
    }
}

#[test]
fn minimal_pipeline_with_metadata_is_valid() {
    let objects = valid(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: a\n  namespace: team-a\n  labels: { team: data }\n  annotations: { owner: ops }\nspec: {}\n",
    );
    let object = &objects[0];
    assert_eq!(object.key.namespace, "team-a");
    assert_eq!(object.labels.get("team").map(String::as_str), Some("data"));
    assert_eq!(
        object.annotations.get("owner").map(String::as_str),
        Some("ops")
    );
}

#[test]
fn server_set_metadata_is_accepted_so_get_output_can_be_reapplied() {
    valid(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: a\n  uid: 5b7e\n  generation: 3\n  resourceVersion: \"17\"\n  creationTimestamp: \"2026-01-01T00:00:00Z\"\n  managedBy: cli\nspec: {}\n",
    );
}

#[test]
fn schedules_with_cron_every_and_at_are_valid() {
    let objects = valid(&schedule(
        r#"  cron: "0 3 * * *"
  timeZone: Europe/Berlin
  concurrencyPolicy: Forbid
  startingDeadline: 10m
  suspend: false
  window: { start: 2026-01-01, end: null }
  history: { succeeded: 10, failed: 5 }
  env: { MODE: full }
"#,
    ));
    assert_eq!(objects[0].key.kind, Kind::Schedule);
    assert_eq!(objects[0].spec.to_value()["cron"], "0 3 * * *");
    valid(&schedule("  every: 15m\n"));
    valid(&schedule("  at: \"2026-03-29T02:30:00+02:00\"\n"));
    valid(&schedule("  cron: \"@daily\"\n"));
    valid(&schedule(
        "  cron: \"*/5 9-17 * * 1-5\"\n  window: { start: \"2026-01-01T00:00:00Z\", end: 2026-12-31 }\n",
    ));
}

#[test]
fn secrets_with_tokens_and_string_data_are_valid() {
    let keyring = Keyring::from_env_value(&Keyring::generate_key()).expect("key");
    let token = keyring.encrypt("hunter2");
    let objects = valid(&secret(&format!(
        "  encryptedData: {{ DB_PASSWORD: {token} }}\n  stringData: {{ API_TOKEN: abc }}\n"
    )));
    assert_eq!(objects[0].key.kind, Kind::Secret);
    assert_eq!(
        objects[0].spec.to_value()["encryptedData"]["DB_PASSWORD"],
        token.as_str()
    );
}

#[test]
fn run_is_valid() {
    let objects = valid(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Run\nmetadata: { name: nightly-etl-29431620 }\nspec: { pipelineRef: { name: nightly-etl }, trigger: schedule, env: {} }\n",
    );
    assert_eq!(objects[0].key.kind, Kind::Run);
    assert_eq!(objects[0].key.name, "nightly-etl-29431620");
}

#[test]
fn multi_document_files_yield_every_object_and_skip_empty_documents() {
    let text = format!(
        "---\n{}---\n{}---\n",
        pipeline("  python: \"3.12\"\n"),
        schedule("  every: 1h\n")
    );
    let objects = valid(&text);
    let kinds: Vec<Kind> = objects.iter().map(|o| o.key.kind).collect();
    assert_eq!(kinds, vec![Kind::Pipeline, Kind::Schedule]);
}

#[test]
fn a_missing_pipeline_reference_is_not_a_validation_error() {
    // References are status conditions later, not apply errors.
    valid(&schedule("  every: 1h\n"));
}

// ---------------------------------------------------------------- envelope errors

error_cases! {
    wrong_api_version => (
        PIPELINE_HEAD.replace("flotilla.dev/v1alpha1", "v1"),
        "apiVersion", 1, 13, "unknown apiVersion \"v1\""
    );
    unknown_kind => (
        PIPELINE_HEAD.replace("kind: Pipeline", "kind: Pod") + "  python: \"3.12\"\n",
        "kind", 2, 7, "unknown kind \"Pod\""
    );
    uppercase_name => (
        pipeline("  python: \"3.12\"\n").replace("name: etl", "name: NightlyETL"),
        "metadata.name", 4, 9, "not a DNS-1123 label"
    );
    name_with_underscore => (
        pipeline("  python: \"3.12\"\n").replace("name: etl", "name: nightly_etl"),
        "metadata.name", 4, 9, "not a DNS-1123 label"
    );
    name_of_300_characters => (
        pipeline("  python: \"3.12\"\n").replace("name: etl", &format!("name: {}", "a".repeat(300))),
        "metadata.name", 4, 9, "at most 63"
    );
    invalid_namespace => (
        pipeline("  python: \"3.12\"\n").replace("  name: etl\n", "  name: etl\n  namespace: Prod_NS\n"),
        "metadata.namespace", 5, 14, "not a DNS-1123 label"
    );
    unknown_metadata_field => (
        pipeline("  python: \"3.12\"\n").replace("  name: etl\n", "  name: etl\n  owner: me\n"),
        "metadata.owner", 5, 10, "unknown field"
    );
    unknown_top_level_field => (
        format!("{}statuss: {{}}\n", pipeline("  python: \"3.12\"\n")),
        "statuss", 7, 10, "unknown field"
    );
    label_value_not_a_string => (
        pipeline("  python: \"3.12\"\n").replace("  name: etl\n", "  name: etl\n  labels: { tier: 3 }\n"),
        "metadata.labels.tier", 5, 19, "expected a string"
    );
}

#[test]
fn missing_metadata_name_is_reported_on_the_metadata_line() {
    let text =
        pipeline("  python: \"3.12\"\n").replace("  name: etl\n", "  labels: { team: data }\n");
    assert_error_on_line(&text, "metadata.name", 3, "required");
}

#[test]
fn missing_spec_is_reported() {
    let text = "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: etl\n";
    let errors = validate(text).expect_err("no spec");
    assert!(
        errors
            .iter()
            .any(|e| e.field.as_deref() == Some("spec") && e.message.contains("required")),
        "{}",
        render(&errors)
    );
}

#[test]
fn a_document_that_is_not_a_mapping_is_rejected() {
    let errors = validate("- just\n- a list\n").expect_err("list");
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    assert_eq!(errors[0].field, None);
    assert_eq!(errors[0].line, Some(1));
    assert!(
        errors[0].message.contains("found a list"),
        "{}",
        render(&errors)
    );
}

#[test]
fn every_problem_of_a_document_is_reported_at_once() {
    let text = "apiVersion: v2\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec: {}\n";
    let errors = validate(text).expect_err("three problems");
    let fields: Vec<&str> = errors.iter().filter_map(|e| e.field.as_deref()).collect();
    for field in ["apiVersion", "kind", "metadata.name"] {
        assert!(
            fields.contains(&field),
            "missing {field}: {}",
            render(&errors)
        );
    }
}

// ---------------------------------------------------------------- Pipeline spec errors

error_cases! {
    unknown_spec_field => (
        pipeline("  python: \"3.12\"\n  resourcez: { memory: 1Gi }\n"),
        "spec.resourcez", 7, 14, "unknown field `resourcez`"
    );
    unknown_nested_field => (
        pipeline("  resources:\n    memory: 1Gi\n    memoryy: 2Gi\n"),
        "spec.resources.memoryy", 8, 14, "unknown field `memoryy`"
    );
    unknown_field_in_a_list_item => (
        pipeline("  secretRefs:\n    - name: warehouse\n      mount: env\n"),
        "spec.secretRefs[0].mount", 8, 14, "unknown field `mount`"
    );
    max_instances_of_wrong_type => (
        pipeline("  maxInstances: \"two\"\n"),
        "spec.maxInstances", 6, 17, "invalid type"
    );
    pids_of_wrong_type => (
        pipeline("  resources:\n    pids: many\n"),
        "spec.resources.pids", 7, 11, "invalid type"
    );
    env_value_not_a_string => (
        pipeline("  env:\n    RETRIES: [1, 2]\n"),
        "spec.env.RETRIES", 7, 14, "invalid type"
    );
    bad_memory => (
        pipeline("  resources:\n    memory: lots\n"),
        "spec.resources.memory", 7, 13, "invalid memory size \"lots\""
    );
    memory_below_docker_minimum => (
        pipeline("  resources:\n    memory: 1Mi\n"),
        "spec.resources.memory", 7, 13, "6Mi"
    );
    bad_cpus => (
        pipeline("  resources:\n    cpus: \"two\"\n"),
        "spec.resources.cpus", 7, 11, "invalid CPU count \"two\""
    );
    zero_cpus => (
        pipeline("  resources:\n    cpus: \"0\"\n"),
        "spec.resources.cpus", 7, 11, "greater than 0"
    );
    bad_timeout => (
        pipeline("  timeout: 30 minutes\n"),
        "spec.timeout", 6, 12, "invalid duration \"30 minutes\""
    );
    timeout_without_unit => (
        pipeline("  timeout: \"30\"\n"),
        "spec.timeout", 6, 12, "invalid duration"
    );
    zero_timeout => (
        pipeline("  timeout: \"0\"\n"),
        "spec.timeout", 6, 12, "longer than zero"
    );
    bad_backoff_duration => (
        pipeline("  retries:\n    limit: 3\n    backoff: { kind: fixed, initial: soon }\n"),
        "spec.retries.backoff.initial", 8, 38, "invalid duration \"soon\""
    );
    unknown_backoff_kind => (
        pipeline("  retries:\n    limit: 3\n    backoff: { kind: linear }\n"),
        "spec.retries.backoff.kind", 8, 22, "unknown variant `linear`"
    );
    source_path_traversal => (
        pipeline("  source:\n    path: ../../etc\n"),
        "spec.source.path", 7, 11, "path traversal"
    );
    source_path_climbing_out_after_a_folder => (
        pipeline("  source:\n    path: etl/../../etc\n"),
        "spec.source.path", 7, 11, "path traversal"
    );
    absolute_source_path => (
        pipeline("  source:\n    path: /etc\n"),
        "spec.source.path", 7, 11, "absolute"
    );
    absolute_entrypoint => (
        pipeline("  entrypoint: /usr/bin/python3.py\n"),
        "spec.entrypoint", 6, 15, "absolute"
    );
    entrypoint_not_python => (
        pipeline("  entrypoint: run.sh\n"),
        "spec.entrypoint", 6, 15, "not a Python file"
    );
    env_name_starting_with_a_digit => (
        pipeline("  env:\n    1BAD: x\n"),
        "spec.env.1BAD", 7, 11, "not a valid environment variable name"
    );
    env_name_with_a_dash => (
        pipeline("  env:\n    LOG-LEVEL: info\n"),
        "spec.env.LOG-LEVEL", 7, 16, "not a valid environment variable name"
    );
    secret_ref_name_invalid => (
        pipeline("  secretRefs:\n    - name: Warehouse\n"),
        "spec.secretRefs[0].name", 7, 13, "not a DNS-1123 label"
    );
    zero_max_instances => (
        pipeline("  maxInstances: 0\n"),
        "spec.maxInstances", 6, 17, "at least 1"
    );
}

// ---------------------------------------------------------------- Schedule spec errors

error_cases! {
    cron_out_of_range => (
        schedule("  cron: \"61 * * * *\"\n"),
        "spec.cron", 7, 9, "not a valid crontab line"
    );
    cron_with_six_fields => (
        schedule("  cron: \"0 0 3 * * *\"\n"),
        "spec.cron", 7, 9, "has 6 fields"
    );
    cron_that_is_prose => (
        schedule("  cron: every night\n"),
        "spec.cron", 7, 9, "crontab"
    );
    unknown_time_zone => (
        schedule("  cron: \"0 3 * * *\"\n  timeZone: Mars/Olympus\n"),
        "spec.timeZone", 8, 13, "not an IANA time zone"
    );
    bad_every => (
        schedule("  every: fortnightly\n"),
        "spec.every", 7, 10, "invalid duration"
    );
    every_below_one_second => (
        schedule("  every: 500ms\n"),
        "spec.every", 7, 10, "minimum of 1s"
    );
    bad_at => (
        schedule("  at: tomorrow\n"),
        "spec.at", 7, 7, "RFC 3339"
    );
    bad_window_start => (
        schedule("  every: 1h\n  window:\n    start: 2026-13-01\n"),
        "spec.window.start", 9, 12, "neither a day"
    );
    window_end_before_start => (
        schedule("  every: 1h\n  window:\n    start: 2026-06-01\n    end: 2026-01-01\n"),
        "spec.window.end", 10, 10, "must be after"
    );
    unknown_concurrency_policy => (
        schedule("  every: 1h\n  concurrencyPolicy: Sometimes\n"),
        "spec.concurrencyPolicy", 8, 22, "unknown variant `Sometimes`"
    );
}

// Errors about a field whose value is a block mapping (`spec:` followed by indented
// fields) belong on the line of its key, not on the line of its first child.

#[test]
fn cron_and_every_together_are_rejected_on_the_spec_line() {
    let text = schedule("  cron: \"0 3 * * *\"\n  every: 15m\n");
    assert_error_on_line(&text, "spec", 5, "only one of cron, every and at");
}

#[test]
fn a_schedule_without_a_trigger_is_rejected_on_the_spec_line() {
    let text = schedule("  timeZone: UTC\n");
    assert_error_on_line(&text, "spec", 5, "set one of cron, every or at");
}

#[test]
fn missing_pipeline_ref_is_reported_on_the_spec_line() {
    let text = SCHEDULE_HEAD.replace("  pipelineRef: { name: etl }\n", "  every: 1h\n");
    assert_error_on_line(&text, "spec", 5, "missing field `pipelineRef`");
}

#[test]
fn unknown_field_holding_a_block_mapping_is_reported_on_its_key_line() {
    let text = pipeline("  python: \"3.12\"\n  resourcez:\n    memory: 1Gi\n");
    assert_error_on_line(&text, "spec.resourcez", 7, "unknown field `resourcez`");
}

// ---------------------------------------------------------------- Secret and Run errors

error_cases! {
    encrypted_data_not_a_fernet_token => (
        secret("  encryptedData:\n    DB_PASSWORD: hunter2\n"),
        "spec.encryptedData.DB_PASSWORD", 7, 18, "not a Fernet token"
    );
    secret_key_not_an_env_name => (
        secret("  stringData:\n    db-password: hunter2\n"),
        "spec.stringData.db-password", 7, 18, "not a valid environment variable name"
    );
    run_with_unknown_trigger => (
        "apiVersion: flotilla.dev/v1alpha1\nkind: Run\nmetadata:\n  name: r1\nspec:\n  pipelineRef: { name: etl }\n  trigger: cron\n",
        "spec.trigger", 7, 12, "unknown variant `cron`"
    );
}

#[test]
fn a_key_in_both_string_data_and_encrypted_data_is_rejected() {
    let keyring = Keyring::from_env_value(&Keyring::generate_key()).expect("key");
    let token = keyring.encrypt("x");
    let text = secret(&format!(
        "  encryptedData:\n    DB_PASSWORD: {token}\n  stringData:\n    DB_PASSWORD: hunter2\n"
    ));
    assert_error(&text, 1, "spec.stringData.DB_PASSWORD", 9, 18, "keep one");
}

#[test]
fn secret_errors_never_echo_the_plaintext() {
    let errors = validate(&secret(
        "  encryptedData:\n    DB_PASSWORD: hunter2-plaintext\n",
    ))
    .expect_err("not a token");
    let shown = render(&errors);
    assert!(!shown.contains("hunter2-plaintext"), "{shown}");
}

// ---------------------------------------------------------------- multi-document files

#[test]
fn errors_name_the_document_index_and_the_line_in_the_whole_file() {
    // Document 1 spans lines 1-6, the separator is line 7, document 2 starts on line 8.
    let text = format!(
        "{}---\n{}",
        pipeline("  python: \"3.12\"\n"),
        schedule("  every: 15m\n  timeZone: Moon/Base\n")
    );
    assert_error(&text, 2, "spec.timeZone", 15, 13, "not an IANA time zone");
    let errors = validate(&text).expect_err("invalid");
    assert_eq!(
        errors.len(),
        1,
        "only document 2 is wrong: {}",
        render(&errors)
    );
}

#[test]
fn empty_documents_are_not_counted_but_lines_are() {
    // The empty document between the two `---` is skipped: the second resource is
    // "document 2", and the line still counts every line of the file.
    let text = format!(
        "---\n{}---\n---\n{}",
        pipeline("  python: \"3.12\"\n"),
        pipeline("  timeout: soon\n")
    );
    let errors = validate(&text).expect_err("invalid");
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    assert_eq!(errors[0].field.as_deref(), Some("spec.timeout"));
    assert_eq!(errors[0].document, Some(2), "{}", render(&errors));
    assert_eq!(errors[0].line, Some(15), "{}", render(&errors));
}

// ---------------------------------------------------------------- text-level errors

#[test]
fn yaml_syntax_errors_have_file_line_and_column() {
    let text = pipeline("  env: { A: 1\n  python: \"3.12\"\n");
    let err = parse_documents(FILE, &text).expect_err("unclosed flow mapping");
    assert_eq!(err.code, "validation.failed");
    assert_eq!(err.file, FILE);
    assert!(err.line.is_some_and(|l| l >= 6), "{err:?}");
    assert!(err.column.is_some(), "{err:?}");
    assert!(err.message.contains("not valid YAML"), "{err}");
}

#[test]
fn duplicate_keys_are_rejected() {
    let text = pipeline("  python: \"3.12\"\n  python: \"3.11\"\n");
    let err = parse_documents(FILE, &text).expect_err("duplicate key");
    assert_eq!(err.line, Some(7), "{err:?}");
    assert!(err.message.contains("not valid YAML"), "{err}");
}

#[test]
fn empty_and_comment_only_texts_are_rejected() {
    for text in ["", "\n\n", "# just a comment\n", "---\n"] {
        let err = parse_documents(FILE, text).expect_err("no resources");
        assert!(
            err.message.contains("contains no resources"),
            "{text:?}: {err}"
        );
    }
}

#[test]
fn binary_junk_is_rejected() {
    let junk: String = (0u8..=255).cycle().take(4096).map(char::from).collect();
    let err = parse_documents(FILE, &junk).expect_err("binary");
    assert!(err.message.contains("binary"), "{err}");
}

#[test]
fn billion_laughs_is_rejected() {
    let err = parse_documents(FILE, &billion_laughs()).expect_err("alias bomb");
    assert!(err.message.contains("not valid YAML"), "{err}");
}

#[test]
fn texts_over_the_size_limit_are_rejected_before_parsing() {
    let big = format!(
        "{}  description: \"{}\"\n",
        PIPELINE_HEAD,
        "x".repeat(17 * 1024 * 1024)
    );
    let err = parse_documents(FILE, &big).expect_err("too large");
    assert!(err.message.contains("limit is 16 MiB"), "{err}");
}

/// The classic alias bomb: nine levels of nine references, 9^9 strings when expanded.
pub fn billion_laughs() -> String {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut previous = 'a';
    for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
        let references = vec![format!("*{previous}"); 9].join(",");
        text.push_str(&format!("{name}: &{name} [{references}]\n"));
        previous = name;
    }
    text
}

#[test]
fn a_backoff_multiplier_out_of_range_and_a_custom_backoff_without_delays_are_rejected() {
    assert_error_on_line(
        &pipeline(
            "  retries:\n    limit: 3\n    backoff: { kind: exponential, multiplier: \"0.5\" }\n",
        ),
        "spec.retries.backoff.multiplier",
        8,
        "not a factor between 1 and 100",
    );
    assert_error_on_line(
        &pipeline("  retries:\n    limit: 3\n    backoff: { kind: custom }\n"),
        "spec.retries.backoff.delays",
        8,
        "needs a list of delays",
    );
    assert_error_on_line(
        &pipeline("  retries:\n    limit: 3\n    backoff: { kind: custom, delays: [1m, soon] }\n"),
        "spec.retries.backoff.delays[1]",
        8,
        "invalid duration \"soon\"",
    );
    let objects = valid(&pipeline(
        "  retries:\n    limit: 3\n    backoff: { kind: custom, delays: [1m, 5m, 1h] }\n",
    ));
    assert_eq!(
        objects[0].spec.to_value()["retries"]["backoff"]["delays"],
        serde_json::json!(["1m", "5m", "1h"])
    );
}
