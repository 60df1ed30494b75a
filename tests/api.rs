//! The HTTP API of a real `flotilla serve`: apply sets (created / unchanged /
//! configured / pruned, dry runs, ownership), Kubernetes-shaped list/get/delete paths,
//! and problem+json errors.

#[allow(dead_code)]
mod support;

use flotilla::secrets::Keyring;
use reqwest::StatusCode;
use serde_json::Value;
use support::server::{ENCRYPTION_KEY, TestServer, documents, pipeline_yaml, schedule_yaml};

/// `(kind, name, action)` of every item of an apply answer.
fn actions(outcome: &Value) -> Vec<(String, String, String)> {
    outcome["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {outcome}"))
        .iter()
        .map(|item| {
            (
                item["kind"].as_str().unwrap_or_default().to_owned(),
                item["name"].as_str().unwrap_or_default().to_owned(),
                item["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn action(kind: &str, name: &str, action: &str) -> (String, String, String) {
    (kind.to_owned(), name.to_owned(), action.to_owned())
}

async fn get_object(server: &TestServer, plural: &str, name: &str) -> Value {
    let (status, body) = server
        .get(&format!("/namespaces/default/{plural}/{name}"))
        .await;
    assert_eq!(status, StatusCode::OK, "get {plural}/{name}: {body}");
    body
}

fn metadata_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object["metadata"][field]
        .as_str()
        .unwrap_or_else(|| panic!("metadata.{field} missing in {object}"))
}

#[tokio::test]
async fn apply_creates_and_reapply_is_unchanged() {
    let server = TestServer::start();
    let set = documents(&[
        pipeline_yaml("etl", "3.11"),
        schedule_yaml("etl-nightly", "etl", "0 3 * * *"),
    ]);
    let (status, outcome) = server.apply_yaml(&set, "fieldManager=cli").await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(
        actions(&outcome),
        vec![
            action("Pipeline", "etl", "created"),
            action("Schedule", "etl-nightly", "created")
        ]
    );
    let pipeline = get_object(&server, "pipelines", "etl").await;
    assert_eq!(pipeline["apiVersion"], "flotilla.dev/v1alpha1");
    assert_eq!(pipeline["kind"], "Pipeline");
    assert_eq!(pipeline["metadata"]["generation"], 1);
    assert_eq!(metadata_str(&pipeline, "managedBy"), "cli");
    assert_eq!(metadata_str(&pipeline, "namespace"), "default");
    assert!(!metadata_str(&pipeline, "uid").is_empty());
    assert!(!metadata_str(&pipeline, "creationTimestamp").is_empty());
    assert_eq!(pipeline["spec"]["python"], "3.11");
    let before = server.snapshot().await;

    let (status, again) = server.apply_yaml(&set, "fieldManager=cli").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        actions(&again),
        vec![
            action("Pipeline", "etl", "unchanged"),
            action("Schedule", "etl-nightly", "unchanged")
        ]
    );
    assert_eq!(again["diff"], "", "an unchanged apply has an empty diff");
    assert_eq!(
        server.snapshot().await,
        before,
        "resourceVersions must not move"
    );
}

#[tokio::test]
async fn a_change_is_configured_with_a_unified_diff_and_a_new_generation() {
    let server = TestServer::start();
    let (status, _) = server.apply_yaml(&pipeline_yaml("etl", "3.11"), "").await;
    assert_eq!(status, StatusCode::OK);
    let first = get_object(&server, "pipelines", "etl").await;

    let (status, outcome) = server.apply_yaml(&pipeline_yaml("etl", "3.12"), "").await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(
        actions(&outcome),
        vec![action("Pipeline", "etl", "configured")]
    );
    let diff = outcome["diff"].as_str().expect("diff text");
    assert!(diff.contains("--- a/pipelines/default/etl"), "{diff}");
    assert!(diff.contains("+++ b/pipelines/default/etl"), "{diff}");
    assert!(diff.contains("@@"), "{diff}");
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains("python") && l.contains("3.11")),
        "{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains("python") && l.contains("3.12")),
        "{diff}"
    );

    let second = get_object(&server, "pipelines", "etl").await;
    assert_eq!(second["metadata"]["generation"], 2);
    assert_eq!(metadata_str(&second, "uid"), metadata_str(&first, "uid"));
    let version = |o: &Value| {
        metadata_str(o, "resourceVersion")
            .parse::<i64>()
            .expect("number")
    };
    assert!(version(&second) > version(&first));
    assert_eq!(second["spec"]["python"], "3.12");
}

#[tokio::test]
async fn a_label_change_is_configured_without_bumping_the_generation() {
    let server = TestServer::start();
    server.apply_yaml(&pipeline_yaml("etl", "3.11"), "").await;
    let labelled = pipeline_yaml("etl", "3.11")
        .replace("  name: etl\n", "  name: etl\n  labels: { team: data }\n");
    let (status, outcome) = server.apply_yaml(&labelled, "").await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(
        actions(&outcome),
        vec![action("Pipeline", "etl", "configured")]
    );
    let object = get_object(&server, "pipelines", "etl").await;
    assert_eq!(object["metadata"]["labels"]["team"], "data");
    assert_eq!(
        object["metadata"]["generation"], 1,
        "generation counts spec changes only"
    );
}

const PLAINTEXT: &str = "pl41ntext-hunter2-value";

fn secret_yaml(keys: &[(&str, &str)]) -> String {
    let data: Vec<String> = keys
        .iter()
        .map(|(k, v)| format!("    {k}: {v}\n"))
        .collect();
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: warehouse\nspec:\n  stringData:\n{}",
        data.concat()
    )
}

#[tokio::test]
async fn secret_string_data_is_encrypted_unchanged_on_reapply_and_never_returned() {
    let server = TestServer::start();
    let yaml = secret_yaml(&[("DB_PASSWORD", PLAINTEXT)]);
    let mut bodies = Vec::new();

    let (status, created) = server.apply_yaml(&yaml, "").await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(
        actions(&created),
        vec![action("Secret", "warehouse", "created")]
    );
    bodies.push(("apply", created.to_string()));

    let (status, again) = server.apply_yaml(&yaml, "").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        actions(&again),
        vec![action("Secret", "warehouse", "unchanged")],
        "re-applying the same stringData must be a no-op"
    );
    bodies.push(("re-apply", again.to_string()));

    let (_, dry) = server.apply_yaml(&yaml, "dryRun=true").await;
    bodies.push(("dry run", dry.to_string()));

    // A diff of a changed secret (a new key beside the old one) shows no plaintext.
    let changed = secret_yaml(&[
        ("DB_PASSWORD", PLAINTEXT),
        ("API_TOKEN", "another-plaintext"),
    ]);
    let (status, diff) = server.apply_yaml(&changed, "dryRun=true").await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert_eq!(
        actions(&diff),
        vec![action("Secret", "warehouse", "configured")]
    );
    assert!(!diff.to_string().contains("another-plaintext"), "{diff}");
    bodies.push(("diff", diff.to_string()));

    let (status, object) = server
        .get_text("/namespaces/default/secrets/warehouse")
        .await;
    assert_eq!(status, StatusCode::OK);
    bodies.push(("get", object.clone()));
    let (_, list) = server.get_text("/secrets").await;
    bodies.push(("list", list));
    let (_, namespaced) = server.get_text("/namespaces/default/secrets").await;
    bodies.push(("namespaced list", namespaced));

    for (what, body) in &bodies {
        assert!(
            !body.contains(PLAINTEXT),
            "{what} answer contains the plaintext: {body}"
        );
    }

    // What is stored is a Fernet token of the operator's key, and stringData is gone.
    let object: Value = serde_json::from_str(&object).expect("json");
    assert!(object["spec"].get("stringData").is_none(), "{object}");
    let token = object["spec"]["encryptedData"]["DB_PASSWORD"]
        .as_str()
        .expect("encrypted value");
    let keyring = Keyring::from_env_value(ENCRYPTION_KEY).expect("key");
    assert_eq!(
        keyring.decrypt(token, "DB_PASSWORD").expect("decrypts"),
        PLAINTEXT
    );

    // Nor does the answer of a delete.
    let deleted = server
        .client()
        .delete(server.api("/namespaces/default/secrets/warehouse"))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::OK);
    let body = deleted.text().await.expect("body");
    assert!(
        !body.contains(PLAINTEXT),
        "delete answer contains the plaintext: {body}"
    );
}

#[tokio::test]
async fn a_changed_secret_value_is_configured_and_its_diff_hides_both_values() {
    let server = TestServer::start();
    server
        .apply_yaml(&secret_yaml(&[("DB_PASSWORD", PLAINTEXT)]), "")
        .await;
    let (status, outcome) = server
        .apply_yaml(&secret_yaml(&[("DB_PASSWORD", "n3w-plaintext-value")]), "")
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(
        actions(&outcome),
        vec![action("Secret", "warehouse", "configured")]
    );
    let text = outcome.to_string();
    assert!(
        !text.contains(PLAINTEXT) && !text.contains("n3w-plaintext-value"),
        "{text}"
    );
    assert!(
        outcome["diff"]
            .as_str()
            .is_some_and(|d| d.contains("encrypted")),
        "{outcome}"
    );
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let server = TestServer::start();
    server
        .apply_yaml(
            &documents(&[pipeline_yaml("keep", "3.11"), pipeline_yaml("old", "3.11")]),
            "",
        )
        .await;
    let before = server.snapshot().await;

    // Would create one, configure one and prune one.
    let set = documents(&[pipeline_yaml("keep", "3.12"), pipeline_yaml("new", "3.12")]);
    let (status, outcome) = server.apply_yaml(&set, "prune=true&dryRun=true").await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(
        actions(&outcome),
        vec![
            action("Pipeline", "keep", "configured"),
            action("Pipeline", "new", "created"),
            action("Pipeline", "old", "pruned"),
        ]
    );
    assert!(!outcome["diff"].as_str().unwrap_or_default().is_empty());
    assert_eq!(
        server.snapshot().await,
        before,
        "a dry run changed the store"
    );
    let keep = get_object(&server, "pipelines", "keep").await;
    assert_eq!(keep["spec"]["python"], "3.11");
}

#[tokio::test]
async fn prune_deletes_what_the_manager_no_longer_declares_but_never_runs() {
    let server = TestServer::start();
    let run = "apiVersion: flotilla.dev/v1alpha1\nkind: Run\nmetadata:\n  name: a-1\nspec:\n  pipelineRef: { name: a }\n".to_owned();
    let first = documents(&[
        pipeline_yaml("a", "3.12"),
        pipeline_yaml("b", "3.12"),
        schedule_yaml("b-hourly", "b", "0 * * * *") + "  suspend: true\n",
        run,
    ]);
    let (status, outcome) = server.apply_yaml(&first, "fieldManager=cli").await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    // Another manager's object is never pruned by this one.
    let (status, _) = server
        .apply_yaml(
            &pipeline_yaml("other", "3.12"),
            "fieldManager=git:repo%23main",
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, outcome) = server
        .apply_yaml(&pipeline_yaml("a", "3.12"), "fieldManager=cli&prune=true")
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(
        actions(&outcome),
        vec![
            action("Pipeline", "a", "unchanged"),
            action("Pipeline", "b", "pruned"),
            action("Schedule", "b-hourly", "pruned"),
        ]
    );
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| metadata_str(i, "name").to_owned())
            .collect()
    };
    let mut pipelines = names(&server.list("pipelines").await);
    pipelines.sort();
    assert_eq!(pipelines, vec!["a", "other"]);
    assert!(names(&server.list("schedules").await).is_empty());
    assert_eq!(
        names(&server.list("runs").await),
        vec!["a-1"],
        "runs are never pruned"
    );

    // Without prune, nothing is deleted.
    let (_, outcome) = server
        .apply_yaml(&pipeline_yaml("z", "3.12"), "fieldManager=cli")
        .await;
    assert_eq!(actions(&outcome), vec![action("Pipeline", "z", "created")]);
    assert_eq!(
        server.list("pipelines").await["items"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

#[tokio::test]
async fn applying_another_managers_object_is_a_conflict_unless_forced() {
    let server = TestServer::start();
    let (status, _) = server
        .apply_yaml(&pipeline_yaml("etl", "3.11"), "fieldManager=dir:/x")
        .await;
    assert_eq!(status, StatusCode::OK);
    let before = server.snapshot().await;

    let response = server
        .client()
        .post(server.api("/apply?fieldManager=cli"))
        .body(pipeline_yaml("etl", "3.12"))
        .send()
        .await
        .expect("apply");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("problem json");
    assert_eq!(problem["code"], "resource.conflict");
    assert_eq!(problem["status"], 409);
    let detail = problem["detail"].as_str().expect("detail");
    assert!(
        detail.contains("dir:/x") && detail.contains("\"cli\""),
        "{detail}"
    );
    assert!(detail.contains("etl"), "{detail}");
    assert_eq!(server.snapshot().await, before, "a conflict must not write");

    let (status, outcome) = server
        .apply_yaml(&pipeline_yaml("etl", "3.12"), "fieldManager=cli&force=true")
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(
        actions(&outcome),
        vec![action("Pipeline", "etl", "configured")]
    );
    let object = get_object(&server, "pipelines", "etl").await;
    assert_eq!(metadata_str(&object, "managedBy"), "cli");
    assert_eq!(object["spec"]["python"], "3.12");
}

#[tokio::test]
async fn taking_over_an_identical_object_with_force_changes_only_the_manager() {
    let server = TestServer::start();
    server
        .apply_yaml(&pipeline_yaml("etl", "3.11"), "fieldManager=dir:/x")
        .await;
    let (status, outcome) = server
        .apply_yaml(&pipeline_yaml("etl", "3.11"), "fieldManager=cli&force=true")
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    let object = get_object(&server, "pipelines", "etl").await;
    assert_eq!(metadata_str(&object, "managedBy"), "cli");
    assert_eq!(
        object["metadata"]["generation"], 1,
        "the spec did not change"
    );
}

#[tokio::test]
async fn get_list_and_delete_paths() {
    let server = TestServer::start();
    let in_team =
        pipeline_yaml("etl", "3.12").replace("  name: etl\n", "  name: etl\n  namespace: team-a\n");
    let set = documents(&[pipeline_yaml("etl", "3.11"), in_team]);
    let (status, outcome) = server.apply_yaml(&set, "").await;
    assert_eq!(status, StatusCode::OK, "{outcome}");

    let all = server.list("pipelines").await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2));
    let (status, team) = server.get("/namespaces/team-a/pipelines").await;
    assert_eq!(status, StatusCode::OK);
    let team_items = team["items"].as_array().expect("items");
    assert_eq!(team_items.len(), 1);
    assert_eq!(team_items[0]["spec"]["python"], "3.12");
    let (_, empty) = server.get("/namespaces/nobody/pipelines").await;
    assert_eq!(empty["items"], Value::Array(vec![]));

    let object = get_object(&server, "pipelines", "etl").await;
    assert_eq!(object["spec"]["python"], "3.11");
    // Singular and short names work in paths too.
    let (status, _) = server.get("/namespaces/default/pl/etl").await;
    assert_eq!(status, StatusCode::OK);

    let response = server
        .client()
        .delete(server.api("/namespaces/default/pipelines/etl"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::OK);
    let deleted: Value = response.json().await.expect("json");
    assert_eq!(metadata_str(&deleted, "name"), "etl");
    assert_eq!(metadata_str(&deleted, "namespace"), "default");

    let (status, problem) = server.get("/namespaces/default/pipelines/etl").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["code"], "resource.not_found");
    let response = server
        .client()
        .delete(server.api("/namespaces/default/pipelines/etl"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // The other namespace's object is untouched.
    let (status, _) = server.get("/namespaces/team-a/pipelines/etl").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_kinds_and_names_are_404_problems() {
    let server = TestServer::start();
    for path in [
        "/pods",
        "/namespaces/default/pods",
        "/namespaces/default/pods/x",
        "/namespaces/default/pipelines/nope",
        "/namespaces/default/runs/nope",
    ] {
        let response = server
            .client()
            .get(server.api(path))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = response.json().await.expect("problem json");
        assert_eq!(problem["code"], "resource.not_found", "{path}: {problem}");
        assert_eq!(problem["status"], 404, "{path}");
        assert!(
            problem["type"].as_str().is_some_and(|t| !t.is_empty()),
            "{problem}"
        );
        assert!(problem["title"].as_str().is_some(), "{problem}");
        let detail = problem["detail"].as_str().expect("detail");
        let named = if path.contains("pods") {
            "pods"
        } else {
            "nope"
        };
        assert!(detail.contains(named), "{path}: {detail}");
    }
}

#[tokio::test]
async fn lists_are_kubernetes_style_lists() {
    let server = TestServer::start();
    server
        .apply_yaml(
            &documents(&[
                pipeline_yaml("a", "3.12"),
                schedule_yaml("a", "a", "*/5 * * * *"),
            ]),
            "",
        )
        .await;
    for (plural, kind) in [
        ("pipelines", "Pipeline"),
        ("schedules", "Schedule"),
        ("secrets", "Secret"),
        ("runs", "Run"),
    ] {
        let list = server.list(plural).await;
        assert_eq!(list["apiVersion"], "flotilla.dev/v1alpha1", "{list}");
        assert_eq!(list["kind"], format!("{kind}List"), "{list}");
        assert!(list["metadata"]["resourceVersion"].is_string(), "{list}");
        for item in list["items"].as_array().expect("items array") {
            assert_eq!(item["kind"], kind);
            assert_eq!(item["apiVersion"], "flotilla.dev/v1alpha1");
            assert!(item["metadata"]["name"].is_string());
            assert!(item["spec"].is_object());
        }
    }
    assert_eq!(
        server.list("schedules").await["items"][0]["spec"]["cron"],
        "*/5 * * * *"
    );
}

#[tokio::test]
async fn validation_errors_are_located_problems() {
    let server = TestServer::start();
    let good = pipeline_yaml("good", "3.12");
    let bad = pipeline_yaml("bad", "3.12").replace("memory: 256Mi", "memory: lots");
    let (status, problem) = server
        .apply_files(
            &[("pipelines/good.yaml", &good), ("pipelines/bad.yaml", &bad)],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], "validation.failed");
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{problem}");
    let error = &errors[0];
    assert_eq!(error["file"], "pipelines/bad.yaml");
    assert_eq!(error["document"], 1);
    assert_eq!(error["line"], 8);
    assert_eq!(error["column"], 24);
    assert_eq!(error["field"], "spec.resources.memory");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("lots")),
        "{error}"
    );
    // The set is all or nothing: the valid file was not applied either.
    assert_eq!(server.snapshot().await, Vec::<Value>::new());
}

#[tokio::test]
async fn health_and_version_answer() {
    let server = TestServer::start();
    let response = server
        .client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::OK);
    // Test servers have no container runtime, so they are alive but not ready.
    let response = server
        .client()
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = response.json().await.expect("problem json");
    assert_eq!(
        problem["code"], "container.runtime.unavailable",
        "{problem}"
    );
    let version: Value = server
        .client()
        .get(server.url("/version"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version["apiVersion"], "flotilla.dev/v1alpha1");
}

#[tokio::test]
async fn concurrent_applies_of_distinct_objects_all_succeed() {
    let server = TestServer::start();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let client = server.client().clone();
        let url = server.api("/apply?fieldManager=cli");
        let body = documents(&[
            pipeline_yaml(&format!("p{i}"), "3.12"),
            schedule_yaml(&format!("s{i}"), &format!("p{i}"), "* * * * *"),
        ]);
        tasks.push(tokio::spawn(async move {
            let response = client.post(url).body(body).send().await.expect("apply");
            let status = response.status();
            (status, response.text().await.unwrap_or_default())
        }));
    }
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(
        server.list("pipelines").await["items"]
            .as_array()
            .map(Vec::len),
        Some(16)
    );
    assert_eq!(
        server.list("schedules").await["items"]
            .as_array()
            .map(Vec::len),
        Some(16)
    );
}

#[tokio::test]
async fn concurrent_applies_of_the_same_object_never_fail_with_a_server_error() {
    let server = TestServer::start();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = server.client().clone();
        let url = server.api("/apply?fieldManager=cli");
        let body = pipeline_yaml("shared", if i % 2 == 0 { "3.11" } else { "3.12" });
        tasks.push(tokio::spawn(async move {
            let response = client.post(url).body(body).send().await.expect("apply");
            let status = response.status();
            (status, response.text().await.unwrap_or_default())
        }));
    }
    for task in tasks {
        let (status, body) = task.await.expect("task");
        // Losing a race is a 409 the client can retry, never a 5xx.
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status}: {body}"
        );
    }
    let object = get_object(&server, "pipelines", "shared").await;
    assert_eq!(object["metadata"]["managedBy"], "cli");
}

#[tokio::test]
async fn applies_are_not_refused_because_a_controller_wrote_status() {
    // Schedules firing every second get their status written by the schedule controller
    // all the time; a user's apply of the same objects must still go through.
    let server = TestServer::start();
    let set = |round: usize| {
        let schedules: Vec<String> = (0..20)
            .map(|i| {
                format!(
                    "apiVersion: flotilla.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: s{i}\nspec:\n  pipelineRef: {{ name: p }}\n  every: 1s\n  env: {{ ROUND: \"{round}\" }}\n"
                )
            })
            .collect();
        documents(&schedules)
    };
    let (status, body) = server.apply_yaml(&set(0), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut refused = Vec::new();
    // The slots each schedule's status recorded between the applies: the premise of the
    // test is that the controller kept writing status while the applies went on.
    let mut slots_seen: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for round in 1..=60 {
        let (status, body) = server.apply_yaml(&set(round), "prune=true").await;
        if status != StatusCode::OK {
            refused.push(format!("round {round}: {status} {body}"));
        }
        for schedule in server.list("schedules").await["items"]
            .as_array()
            .expect("items")
        {
            if let Some(slot) = schedule["status"]["lastSlot"].as_str() {
                slots_seen
                    .entry(
                        schedule["metadata"]["name"]
                            .as_str()
                            .expect("name")
                            .to_owned(),
                    )
                    .or_default()
                    .insert(slot.to_owned());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        refused.is_empty(),
        "{} of 60 applies refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
    let quiet: Vec<String> = (0..20)
        .map(|i| format!("s{i}"))
        .filter(|name| slots_seen.get(name).is_none_or(|slots| slots.len() < 2))
        .collect();
    assert!(
        quiet.is_empty(),
        "the schedule controller moved every schedule's lastSlot at least once during the applies; these it did not: {quiet:?} (seen: {slots_seen:?})"
    );
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let server = TestServer::start();
    let manifests: String = (0..7)
        .map(|i| format!("apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: page-{i}\nspec: {{}}\n---\n"))
        .collect();
    let (status, body) = server.apply_yaml(&manifests, "fieldManager=cli").await;
    assert!(status.is_success(), "{body}");
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/namespaces/default/pipelines?limit=3".to_owned();
        if let Some(token) = &token {
            path.push_str(&format!("&continue={token}"));
        }
        let (status, page) = server.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for item in page["items"].as_array().expect("items") {
            names.push(item["metadata"]["name"].as_str().expect("name").to_owned());
        }
        match page["metadata"]["continue"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).map(|i| format!("page-{i}")).collect();
    assert_eq!(names, expected);
    let (status, bad) = server
        .get("/namespaces/default/pipelines?limit=3&continue=zz")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    // A page asked for again is served from the rendered copy until a write moves the
    // revision; then it shows the write.
    let first = |page: &serde_json::Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let (_, before) = server.get("/namespaces/default/pipelines?limit=3").await;
    let hits = page_cache_count(&server, "hit").await;
    let misses = page_cache_count(&server, "miss").await;
    let (_, again) = server.get("/namespaces/default/pipelines?limit=3").await;
    assert_eq!(before, again);
    assert_eq!(
        (
            page_cache_count(&server, "hit").await,
            page_cache_count(&server, "miss").await
        ),
        (hits + 1, misses),
        "the page asked for again with nothing written is served from the cache"
    );
    let (status, body) = server
        .apply_yaml(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: page-0a\nspec: {}\n",
            "fieldManager=other",
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (_, after) = server.get("/namespaces/default/pipelines?limit=3").await;
    assert_eq!(first(&after), ["page-0", "page-0a", "page-1"]);
    assert_eq!(
        (
            page_cache_count(&server, "hit").await,
            page_cache_count(&server, "miss").await
        ),
        (hits + 1, misses + 1),
        "after a write the page is rendered again"
    );
    assert_ne!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
}

/// `flotilla_list_page_cache_requests_total{result="…"}` from `/metrics` (0 before the
/// first request of that result).
async fn page_cache_count(server: &TestServer, result: &str) -> u64 {
    let response = server
        .client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("metrics text");
    let series = format!("flotilla_list_page_cache_requests_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse().expect("a counter value"))
}
