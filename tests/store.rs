//! The store's behaviours, written once and run against a real SQLite file and a real,
//! throwaway PostgreSQL server (see `support/postgres.rs`). Each test gets its own temp dir
//! or database.

/// Only the helpers this suite uses, so other suites' helpers are not compiled here.
mod support {
    pub mod postgres;
}

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use flotilla::resource::kind::Kind;
use flotilla::resource::object::{Change, DesiredObject, ObjectKey, RawObject, StoredObject};
use flotilla::store::events::{Event, EventType};
use flotilla::store::{ChangeKind, Store, StoreError};
use serde_json::{Value, json};
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;
use tokio::sync::broadcast::error::TryRecvError;

type DateTimeUtc = chrono::DateTime<chrono::Utc>;

use support::postgres::PgServer;

/// Generates `sqlite::<behaviour>` and `postgres::<behaviour>` tests for each behaviour.
macro_rules! on_both_backends {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $behaviour() -> anyhow::Result<()> {
                    let (_dir, store) = super::sqlite_store().await?;
                    let outcome = super::$behaviour(&store).await;
                    store.close().await;
                    outcome
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $behaviour() -> anyhow::Result<()> {
                    let (_server, store) = super::postgres_store().await?;
                    let outcome = super::$behaviour(&store).await;
                    store.close().await;
                    outcome
                }
            )*
        }
    };
}

on_both_backends!(
    create_get_list,
    create_existing_is_already_exists,
    update_bumps_generation_only_on_spec_change,
    stale_update_conflicts_and_changes_nothing,
    status_is_written_separately,
    delete_checks_resource_version,
    commit_is_atomic,
    list_managed_by_spans_kinds,
    lookups_by_key_and_owner_pages,
    resource_versions_increase_across_kinds,
    concurrent_updates_one_wins,
    ten_thousand_creates_in_one_commit,
    create_absent_skips_taken_keys,
    concurrent_create_absent_creates_each_key_once,
    update_statuses_writes_all_or_none,
    revision_follows_every_write,
    subscribers_see_each_write_once,
    raw_pages_are_canonical_text_in_key_order,
    events_are_counted_listed_and_deleted,
    event_batches_are_recorded_together,
    tokens_are_found_by_hash_until_revoked,
    unfinished_runs_are_counted_in_all_and_per_pipeline,
);

/// Generates `sqlite_unopened::<behaviour>` and `postgres_unopened::<behaviour>` tests
/// for behaviours about opening stores: each gets the URLs of two fresh databases that
/// nothing has opened yet.
macro_rules! on_both_backends_unopened {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite_unopened {
            $(
                #[tokio::test]
                async fn $behaviour() -> anyhow::Result<()> {
                    let dir = tempfile::tempdir()?;
                    let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
                    super::$behaviour(&url("a.db"), &url("b.db")).await
                }
            )*
        }
        mod postgres_unopened {
            $(
                #[tokio::test]
                async fn $behaviour() -> anyhow::Result<()> {
                    let server = super::PgServer::start();
                    let (a, b) = (server.create_database().await, server.create_database().await);
                    super::$behaviour(&a, &b).await
                }
            )*
        }
    };
}

on_both_backends_unopened!(identity_is_made_once_per_store);

async fn sqlite_store() -> Result<(TempDir, Store)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open_sqlite(&dir.path().join("flotilla.db")).await?;
    Ok((dir, store))
}

async fn postgres_store() -> Result<(PgServer, Store)> {
    let server = PgServer::start();
    let store = Store::connect(&server.create_database().await).await?;
    Ok((server, store))
}

fn key(kind: Kind, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new(kind, namespace, name)
}

fn desired(key: &ObjectKey, spec: Value) -> DesiredObject {
    DesiredObject {
        key: key.clone(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        spec: spec.into(),
    }
}

fn create(key: &ObjectKey, manager: Option<&str>) -> Change {
    Change::Create {
        object: desired(key, json!({"entrypoint": "main.py"})),
        managed_by: manager.map(str::to_owned),
        status: None,
    }
}

fn update(object: DesiredObject, expected: i64) -> Change {
    Change::Update {
        object,
        managed_by: Some("cli".into()),
        expected_resource_version: expected,
    }
}

fn names(objects: &[StoredObject]) -> Vec<String> {
    objects
        .iter()
        .map(|o| format!("{}/{}", o.key.namespace, o.key.name))
        .collect()
}

async fn create_get_list(store: &Store) -> Result<()> {
    store.ping().await?;
    let keys = [
        key(Kind::Pipeline, "team-b", "alpha"),
        key(Kind::Pipeline, "default", "zeta"),
        key(Kind::Pipeline, "default", "beta"),
        key(Kind::Schedule, "default", "beta"),
    ];
    let mut created = Vec::new();
    for key in &keys {
        let status = Some(json!({"phase": "Pending"}));
        created.push(
            store
                .create(desired(key, json!({"n": 1})), None, status)
                .await?,
        );
    }
    let first = &created[0];
    ensure!(first.generation == 1 && first.created_at == first.updated_at);
    ensure!(uuid::Uuid::parse_str(&first.uid)?.get_version_num() == 4);
    ensure!(first.status == Some(json!({"phase": "Pending"})));
    for object in &created {
        ensure!(
            store.get(&object.key).await?.as_ref() == Some(object),
            "{}",
            object.key
        );
    }
    ensure!(
        store
            .get(&key(Kind::Pipeline, "default", "none"))
            .await?
            .is_none()
    );

    let all = store.list(Kind::Pipeline, None).await?;
    ensure!(names(&all) == ["default/beta", "default/zeta", "team-b/alpha"]);
    let default = store.list(Kind::Pipeline, Some("default")).await?;
    ensure!(names(&default) == ["default/beta", "default/zeta"]);
    ensure!(store.list(Kind::Run, None).await?.is_empty());
    Ok(())
}

async fn create_existing_is_already_exists(store: &Store) -> Result<()> {
    let key = key(Kind::Secret, "default", "warehouse");
    let original = store
        .create(desired(&key, json!({"a": 1})), None, None)
        .await?;
    let err = store
        .create(desired(&key, json!({"a": 2})), None, None)
        .await
        .expect_err("second create must fail");
    ensure!(
        matches!(&err, StoreError::AlreadyExists(k) if *k == key),
        "{err}"
    );
    ensure!(err.code() == "resource.already_exists");
    ensure!(store.get(&key).await?.as_ref() == Some(&original));
    Ok(())
}

async fn update_bumps_generation_only_on_spec_change(store: &Store) -> Result<()> {
    let key = key(Kind::Pipeline, "default", "etl");
    let status = Some(json!({"observedGeneration": 1}));
    let spec = json!({"entrypoint": "main.py", "env": {"A": "1", "B": "2"}});
    let created = store
        .create(desired(&key, spec.clone()), None, status)
        .await?;

    let mut relabelled = desired(&key, spec.clone());
    relabelled.labels.insert("team".into(), "data".into());
    let [after_labels] = store
        .commit(vec![update(relabelled.clone(), created.resource_version)])
        .await?
        .try_into()
        .ok()
        .context("one result")?;
    ensure!(
        after_labels.generation == 1,
        "a label change keeps the generation"
    );
    ensure!(after_labels.resource_version > created.resource_version);
    ensure!(after_labels.labels.get("team").map(String::as_str) == Some("data"));
    ensure!(after_labels.managed_by.as_deref() == Some("cli"));
    ensure!(
        after_labels.status == created.status,
        "updates leave status alone"
    );
    ensure!(after_labels.uid == created.uid && after_labels.created_at == created.created_at);

    let mut respecified = relabelled;
    respecified.spec = json!({"entrypoint": "main.py", "env": {"A": "1", "B": "3"}}).into();
    let after_spec = store
        .commit(vec![update(respecified, after_labels.resource_version)])
        .await?;
    ensure!(
        after_spec[0].generation == 2,
        "a spec change bumps the generation"
    );
    ensure!(store.get(&key).await?.as_ref() == Some(&after_spec[0]));
    Ok(())
}

async fn stale_update_conflicts_and_changes_nothing(store: &Store) -> Result<()> {
    let key = key(Kind::Pipeline, "default", "etl");
    let created = store
        .create(desired(&key, json!({"v": 1})), None, None)
        .await?;
    let current = store
        .commit(vec![update(
            desired(&key, json!({"v": 2})),
            created.resource_version,
        )])
        .await?;
    let err = store
        .commit(vec![update(
            desired(&key, json!({"v": 3})),
            created.resource_version,
        )])
        .await
        .expect_err("stale update must fail");
    match &err {
        StoreError::Conflict {
            key: k,
            expected,
            actual,
        } => ensure!(
            *k == key
                && *expected == created.resource_version
                && *actual == current[0].resource_version
        ),
        other => anyhow::bail!("expected a conflict, got {other}"),
    }
    ensure!(err.code() == "resource.conflict");
    ensure!(
        err.to_string()
            .starts_with("Pipeline/default/etl: resourceVersion")
    );
    ensure!(store.get(&key).await?.as_ref() == Some(&current[0]));

    let missing = key_of_missing();
    let err = store
        .commit(vec![update(desired(&missing, json!({})), 1)])
        .await
        .expect_err("update of a missing object must fail");
    ensure!(
        matches!(&err, StoreError::NotFound(k) if *k == missing),
        "{err}"
    );
    ensure!(err.code() == "resource.not_found");
    Ok(())
}

fn key_of_missing() -> ObjectKey {
    key(Kind::Pipeline, "default", "missing")
}

async fn status_is_written_separately(store: &Store) -> Result<()> {
    let key = key(Kind::Run, "default", "etl-1");
    let spec = json!({"pipelineRef": {"name": "etl"}});
    let created = store
        .create(desired(&key, spec.clone()), None, None)
        .await?;
    let running = json!({"phase": "Running"});
    let written = store
        .update_status(&key, Some(created.resource_version), running.clone())
        .await?;
    ensure!(written.status == Some(running.clone()));
    ensure!(written.spec == spec && written.generation == 1);
    ensure!(written.resource_version > created.resource_version);
    ensure!(store.get(&key).await?.as_ref() == Some(&written));

    let err = store
        .update_status(
            &key,
            Some(created.resource_version),
            json!({"phase": "Failed"}),
        )
        .await
        .expect_err("stale status write must fail");
    ensure!(matches!(err, StoreError::Conflict { .. }), "{err}");
    ensure!(store.get(&key).await?.and_then(|o| o.status) == Some(running));

    let done = store
        .update_status(&key, None, json!({"phase": "Succeeded"}))
        .await?;
    ensure!(done.resource_version > written.resource_version);
    let err = store
        .update_status(&key_of_missing(), None, json!({}))
        .await
        .expect_err("status of a missing object");
    ensure!(matches!(err, StoreError::NotFound(_)), "{err}");
    Ok(())
}

async fn delete_checks_resource_version(store: &Store) -> Result<()> {
    let key = key(Kind::Schedule, "default", "nightly");
    let created = store
        .create(desired(&key, json!({"cron": "0 3 * * *"})), None, None)
        .await?;
    let current = store
        .update_status(&key, None, json!({"lastSlot": 1}))
        .await?;

    let err = store
        .delete(&key, Some(created.resource_version))
        .await
        .expect_err("stale delete must fail");
    ensure!(
        matches!(err, StoreError::Conflict { actual, .. } if actual == current.resource_version)
    );
    ensure!(
        store.get(&key).await?.is_some(),
        "a failed delete keeps the object"
    );

    let deleted = store.delete(&key, Some(current.resource_version)).await?;
    ensure!(deleted == current, "a delete returns the object as it was");
    ensure!(store.get(&key).await?.is_none());
    let err = store.delete(&key, None).await.expect_err("already deleted");
    ensure!(matches!(err, StoreError::NotFound(_)), "{err}");

    let other = key_of_missing();
    store.create(desired(&other, json!({})), None, None).await?;
    store.delete(&other, None).await?;
    ensure!(
        store.get(&other).await?.is_none(),
        "delete without a version is unconditional"
    );
    Ok(())
}

async fn commit_is_atomic(store: &Store) -> Result<()> {
    let existing = key(Kind::Pipeline, "default", "existing");
    let before = store
        .create(desired(&existing, json!({"v": 1})), None, None)
        .await?;
    let a = key(Kind::Pipeline, "default", "a");
    let b = key(Kind::Secret, "default", "b");

    let stale = update(
        desired(&existing, json!({"v": 2})),
        before.resource_version - 1,
    );
    let err = store
        .commit(vec![create(&a, None), create(&b, None), stale])
        .await
        .expect_err("the third change conflicts");
    ensure!(matches!(err, StoreError::Conflict { .. }), "{err}");
    ensure!(store.get(&a).await?.is_none() && store.get(&b).await?.is_none());
    ensure!(store.get(&existing).await?.as_ref() == Some(&before));

    let err = store
        .commit(vec![
            create(&a, None),
            create(&existing, None),
            create(&b, None),
        ])
        .await
        .expect_err("the second change creates an existing object");
    ensure!(
        matches!(&err, StoreError::AlreadyExists(k) if *k == existing),
        "{err}"
    );
    ensure!(store.get(&a).await?.is_none() && store.get(&b).await?.is_none());

    let err = store
        .commit(vec![create(&a, None), create(&a, None)])
        .await
        .expect_err("the same key twice in one batch");
    ensure!(
        matches!(&err, StoreError::AlreadyExists(k) if *k == a),
        "{err}"
    );
    ensure!(store.get(&a).await?.is_none());

    // Order matters within a batch: delete then re-create the same key.
    let replace = vec![
        Change::Delete {
            key: existing.clone(),
            expected_resource_version: before.resource_version,
        },
        create(&existing, Some("cli")),
        create(&a, None),
    ];
    let results = store.commit(replace).await?;
    ensure!(results.len() == 3 && results[0] == before);
    ensure!(results[1].uid != before.uid && results[1].generation == 1);
    ensure!(store.get(&existing).await?.as_ref() == Some(&results[1]));
    Ok(())
}

async fn list_managed_by_spans_kinds(store: &Store) -> Result<()> {
    let manager = "dir:/srv/pipelines";
    store
        .commit(vec![
            create(&key(Kind::Schedule, "default", "s"), Some(manager)),
            create(&key(Kind::Pipeline, "team", "p"), Some(manager)),
            create(&key(Kind::Pipeline, "default", "p"), Some(manager)),
            create(&key(Kind::Pipeline, "default", "q"), Some("cli")),
            create(&key(Kind::Run, "default", "r"), None),
        ])
        .await?;
    let owned = store.list_managed_by(manager).await?;
    let keys: Vec<String> = owned.iter().map(|o| o.key.to_string()).collect();
    ensure!(
        keys == [
            "Pipeline/default/p",
            "Pipeline/team/p",
            "Schedule/default/s"
        ],
        "{keys:?}"
    );
    ensure!(store.list_managed_by("git:elsewhere").await?.is_empty());
    Ok(())
}

async fn lookups_by_key_and_owner_pages(store: &Store) -> Result<()> {
    let manager = "git:repo#main";
    // More keys than one lookup query takes, in two namespaces and two kinds.
    let mut changes = Vec::new();
    for i in 0..700 {
        let namespace = if i % 2 == 0 { "default" } else { "team" };
        let owner = if i % 7 == 0 { "cli" } else { manager };
        changes.push(create(
            &key(Kind::Pipeline, namespace, &format!("p{i:03}")),
            Some(owner),
        ));
    }
    changes.push(create(&key(Kind::Schedule, "default", "s"), Some(manager)));
    store.commit(changes).await?;

    let mut wanted: Vec<ObjectKey> = (0..650)
        .map(|i| {
            key(
                Kind::Pipeline,
                if i % 2 == 0 { "default" } else { "team" },
                &format!("p{i:03}"),
            )
        })
        .collect();
    wanted.push(key(Kind::Pipeline, "default", "p001")); // wrong namespace: absent
    wanted.push(key(Kind::Schedule, "default", "s"));
    wanted.push(key(Kind::Run, "default", "p000")); // wrong kind: absent
    let found = store.get_raw_many(&wanted).await?;
    ensure!(found.len() == 651, "found {}", found.len());
    let mut found_keys: Vec<&ObjectKey> = found.iter().map(|o| &o.key).collect();
    found_keys.sort();
    found_keys.dedup();
    ensure!(found_keys.len() == 651);
    ensure!(!found_keys.contains(&&key(Kind::Run, "default", "p000")));

    let mut paged = Vec::new();
    let mut after: Option<ObjectKey> = None;
    loop {
        let page = store
            .list_managed_by_page(manager, after.as_ref(), 250)
            .await?;
        after = page.last().map(|o| o.key.clone());
        let done = page.len() < 250;
        paged.extend(page.into_iter().map(|o| o.key));
        if done {
            break;
        }
    }
    let whole: Vec<ObjectKey> = store
        .list_managed_by(manager)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    ensure!(paged.len() == 700 - 100 + 1, "paged {}", paged.len());
    ensure!(paged == whole, "pages differ from the whole list");
    Ok(())
}

async fn resource_versions_increase_across_kinds(store: &Store) -> Result<()> {
    let mut versions = Vec::new();
    for (i, kind) in [Kind::Secret, Kind::Pipeline, Kind::Schedule, Kind::Run]
        .into_iter()
        .enumerate()
    {
        let key = key(kind, "default", &format!("o{i}"));
        versions.push(
            store
                .create(desired(&key, json!({})), None, None)
                .await?
                .resource_version,
        );
        versions.push(
            store
                .update_status(&key, None, json!({"i": i}))
                .await?
                .resource_version,
        );
    }
    let batch = store
        .commit(vec![
            create(&key(Kind::Run, "default", "x"), None),
            create(&key(Kind::Pipeline, "default", "x"), None),
        ])
        .await?;
    versions.extend(batch.iter().map(|o| o.resource_version));
    let deleted = key(Kind::Run, "default", "x");
    store.delete(&deleted, None).await?;
    // The delete took a revision too: the next write gets a later one than the delete's
    // predecessor plus one.
    let after = store
        .create(desired(&deleted, json!({})), None, None)
        .await?;
    ensure!(after.resource_version > batch[1].resource_version + 1);
    versions.push(after.resource_version);
    ensure!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    Ok(())
}

async fn concurrent_updates_one_wins(store: &Store) -> Result<()> {
    let key = key(Kind::Pipeline, "default", "contended");
    let created = store
        .create(desired(&key, json!({"v": 0})), None, None)
        .await?;
    let mut tasks = Vec::new();
    for writer in 1..=8 {
        let store = store.clone();
        let change = update(
            desired(&key, json!({"v": writer})),
            created.resource_version,
        );
        tasks.push(tokio::spawn(
            async move { store.commit(vec![change]).await },
        ));
    }
    let (mut won, mut conflicted) = (0, 0);
    for task in tasks {
        match task.await? {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => conflicted += 1,
            Err(other) => anyhow::bail!("unexpected error: {other}"),
        }
    }
    ensure!(
        won == 1 && conflicted == 7,
        "won {won}, conflicted {conflicted}"
    );
    ensure!(store.get(&key).await?.map(|o| o.generation) == Some(2));
    Ok(())
}

async fn ten_thousand_creates_in_one_commit(store: &Store) -> Result<()> {
    let changes: Vec<Change> = (0..10_000)
        .map(|i| Change::Create {
            object: desired(
                &key(Kind::Run, "default", &format!("run-{i:05}")),
                json!({"pipelineRef": {"name": "etl"}, "trigger": "schedule", "env": {}}),
            ),
            managed_by: Some("bench".into()),
            status: Some(json!({"phase": "Pending"})),
        })
        .collect();
    let started = Instant::now();
    let created = store.commit(changes).await?;
    eprintln!(
        "{}: 10000 creates in one commit took {:?}",
        store.backend_name(),
        started.elapsed()
    );
    ensure!(created.len() == 10_000);
    ensure!(
        created
            .windows(2)
            .all(|w| w[0].resource_version < w[1].resource_version)
    );
    ensure!(store.list(Kind::Run, None).await?.len() == 10_000);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// What the controllers, the API and the auth layer use beyond plain objects: slot runs
// (`create_absent`), status batches, the revision and the change feed, raw pages,
// events and tokens.

fn slot_run(name: &str, slot: &str) -> (DesiredObject, Option<Value>) {
    let mut object = desired(
        &key(Kind::Run, "default", name),
        json!({"pipelineRef": {"name": "etl"}, "trigger": "schedule", "slot": slot}),
    );
    object
        .labels
        .insert("flotilla.dev/schedule".into(), "nightly".into());
    (object, Some(json!({"phase": "Pending"})))
}

fn raw_names(objects: &[Arc<RawObject>]) -> Vec<String> {
    objects.iter().map(|o| o.key.name.clone()).collect()
}

async fn create_absent_skips_taken_keys(store: &Store) -> Result<()> {
    let (first, status) = slot_run("nightly-1", "2026-01-01T00:01:00Z");
    let original = store.create(first, None, status).await?;

    let created = store
        .create_absent(vec![
            slot_run("nightly-1", "2026-01-01T00:09:00Z"),
            slot_run("nightly-2", "2026-01-01T00:02:00Z"),
            slot_run("nightly-2", "2026-01-01T00:08:00Z"),
            slot_run("nightly-3", "2026-01-01T00:03:00Z"),
        ])
        .await?;
    ensure!(
        raw_names(&created) == ["nightly-2", "nightly-3"],
        "created {:?}",
        raw_names(&created)
    );
    // The stored text, as the schedule controller reads it back.
    let two = &created[0];
    ensure!(
        two.spec.contains(r#""slot":"2026-01-01T00:02:00Z""#),
        "{}",
        two.spec
    );
    ensure!(
        two.labels == r#"{"flotilla.dev/schedule":"nightly"}"#,
        "{}",
        two.labels
    );
    ensure!(two.status.as_deref() == Some(r#"{"phase":"Pending"}"#));
    ensure!(two.managed_by.is_none() && two.generation == 1);
    ensure!(two.resource_version > original.resource_version);
    ensure!(created[1].resource_version > two.resource_version);
    ensure!(uuid::Uuid::parse_str(&two.uid).is_ok());

    // What was returned is what is stored; the taken key kept its first object.
    let stored = store
        .get_raw_many(&[created[0].key.clone(), created[1].key.clone()])
        .await?;
    for object in &created {
        ensure!(
            stored.iter().any(|s| s == object.as_ref()),
            "{} differs from the stored row",
            object.key
        );
    }
    ensure!(store.get(&original.key).await?.as_ref() == Some(&original));
    ensure!(store.list(Kind::Run, None).await?.len() == 3);

    let again = store
        .create_absent(vec![
            slot_run("nightly-2", "2026-01-01T00:02:00Z"),
            slot_run("nightly-3", "2026-01-01T00:03:00Z"),
        ])
        .await?;
    ensure!(
        again.is_empty(),
        "re-creating taken slots created {:?}",
        raw_names(&again)
    );
    ensure!(store.create_absent(Vec::new()).await?.is_empty());
    Ok(())
}

async fn concurrent_create_absent_creates_each_key_once(store: &Store) -> Result<()> {
    // Eight evaluations of the same 60 slots at once (restarts, a second operator): every
    // slot gets exactly one run.
    let slots: Vec<String> = (0..60).map(|i| format!("nightly-{i:02}")).collect();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let runs: Vec<_> = slots
            .iter()
            .map(|name| slot_run(name, "2026-01-01T00:00:00Z"))
            .collect();
        tasks.push(tokio::spawn(async move { store.create_absent(runs).await }));
    }
    let mut created = Vec::new();
    for task in tasks {
        created.extend(raw_names(&task.await??));
    }
    created.sort();
    ensure!(
        created == slots,
        "created {} runs: {created:?}",
        created.len()
    );
    ensure!(store.list(Kind::Run, None).await?.len() == 60);
    Ok(())
}

async fn update_statuses_writes_all_or_none(store: &Store) -> Result<()> {
    let a = key(Kind::Schedule, "default", "a");
    let b = key(Kind::Schedule, "team", "b");
    let spec = json!({"every": "1m"});
    let created_a = store.create(desired(&a, spec.clone()), None, None).await?;
    let created_b = store.create(desired(&b, spec.clone()), None, None).await?;

    store
        .update_statuses(vec![
            (a.clone(), None, json!({"lastSlot": "2026-01-01T00:01:00Z"})),
            (
                b.clone(),
                Some(created_b.resource_version),
                json!({"active": ["b-29453761"]}),
            ),
        ])
        .await?;
    let after_a = store.get(&a).await?.context("a")?;
    let after_b = store.get(&b).await?.context("b")?;
    ensure!(after_a.status == Some(json!({"lastSlot": "2026-01-01T00:01:00Z"})));
    ensure!(after_b.status == Some(json!({"active": ["b-29453761"]})));
    ensure!(after_a.spec == spec && after_a.generation == 1 && after_a.uid == created_a.uid);
    ensure!(after_b.resource_version > after_a.resource_version);
    ensure!(after_a.resource_version > created_b.resource_version);

    // A stale version in the batch: neither status is written.
    let err = store
        .update_statuses(vec![
            (a.clone(), None, json!({"lastSlot": "2026-01-01T00:02:00Z"})),
            (
                b.clone(),
                Some(created_b.resource_version),
                json!({"active": []}),
            ),
        ])
        .await
        .expect_err("a stale resourceVersion fails the batch");
    ensure!(matches!(err, StoreError::Conflict { .. }), "{err}");
    ensure!(store.get(&a).await?.as_ref() == Some(&after_a));
    ensure!(store.get(&b).await?.as_ref() == Some(&after_b));

    // A schedule deleted meanwhile: NotFound, and the batch is not applied.
    let err = store
        .update_statuses(vec![
            (a.clone(), None, json!({"lastSlot": "2026-01-01T00:03:00Z"})),
            (key_of_missing(), None, json!({})),
        ])
        .await
        .expect_err("a missing object fails the batch");
    ensure!(matches!(err, StoreError::NotFound(_)), "{err}");
    ensure!(store.get(&a).await?.as_ref() == Some(&after_a));
    store.update_statuses(Vec::new()).await?;
    Ok(())
}

async fn revision_follows_every_write(store: &Store) -> Result<()> {
    ensure!(store.revision().await? == 0, "a new store is at revision 0");
    let etl = key(Kind::Pipeline, "default", "etl");
    let created = store.create(desired(&etl, json!({})), None, None).await?;
    ensure!(store.revision().await? == created.resource_version);
    let status = store.update_status(&etl, None, json!({"n": 1})).await?;
    ensure!(store.revision().await? == status.resource_version);
    let batch = store
        .commit(vec![
            create(&key(Kind::Secret, "default", "s1"), None),
            create(&key(Kind::Secret, "default", "s2"), None),
        ])
        .await?;
    ensure!(store.revision().await? == batch[1].resource_version);
    // A delete takes the next revision itself.
    store.delete(&etl, None).await?;
    ensure!(store.revision().await? == batch[1].resource_version + 1);
    // A failed write moves nothing.
    let before = store.revision().await?;
    store
        .create(
            desired(&key(Kind::Secret, "default", "s1"), json!({})),
            None,
            None,
        )
        .await
        .expect_err("taken");
    ensure!(store.revision().await? == before);
    let page = store.list_raw_page(Kind::Secret, None, None, 10).await?;
    ensure!(
        page.revision == before,
        "a page carries the revision it was read at"
    );
    Ok(())
}

async fn subscribers_see_each_write_once(store: &Store) -> Result<()> {
    let mut feed = store.subscribe();
    let nightly = key(Kind::Schedule, "default", "nightly");
    let created = store
        .create(
            desired(&nightly, json!({"every": "1m"})),
            Some("cli".into()),
            None,
        )
        .await?;
    let updated = store
        .commit(vec![update(
            desired(&nightly, json!({"every": "2m"})),
            created.resource_version,
        )])
        .await?;
    let status = store
        .update_status(&nightly, None, json!({"active": []}))
        .await?;
    store
        .commit(vec![update(
            desired(&nightly, json!({})),
            created.resource_version,
        )])
        .await
        .expect_err("stale");
    let runs = store
        .create_absent(vec![
            slot_run("nightly-1", "2026-01-01T00:01:00Z"),
            slot_run("nightly-1", "2026-01-01T00:01:00Z"),
        ])
        .await?;
    store.delete(&nightly, None).await?;
    let deleted_at = store.revision().await?;

    let mut seen = Vec::new();
    loop {
        match feed.try_recv() {
            Ok(event) => seen.push(event),
            Err(TryRecvError::Empty) => break,
            Err(other) => anyhow::bail!("the feed failed: {other}"),
        }
    }
    let summary: Vec<(String, ChangeKind, i64)> = seen
        .iter()
        .map(|e| (e.key.to_string(), e.change, e.resource_version))
        .collect();
    let schedule = "Schedule/default/nightly".to_owned();
    let expected = vec![
        (
            schedule.clone(),
            ChangeKind::Added,
            created.resource_version,
        ),
        (
            schedule.clone(),
            ChangeKind::Modified,
            updated[0].resource_version,
        ),
        (
            schedule.clone(),
            ChangeKind::StatusModified,
            status.resource_version,
        ),
        (
            "Run/default/nightly-1".to_owned(),
            ChangeKind::Added,
            runs[0].resource_version,
        ),
        (schedule, ChangeKind::Deleted, deleted_at),
    ];
    ensure!(summary == expected, "{summary:#?}");
    // Events carry the object as written (before, for the delete).
    ensure!(seen[1].object.spec == r#"{"every":"2m"}"#);
    ensure!(seen[2].object.status.as_deref() == Some(r#"{"active":[]}"#));
    ensure!(seen[4].object.resource_version == status.resource_version);
    Ok(())
}

async fn raw_pages_are_canonical_text_in_key_order(store: &Store) -> Result<()> {
    let mut changes = Vec::new();
    for (namespace, name) in [
        ("team", "a"),
        ("default", "c"),
        ("default", "a"),
        ("default", "b"),
    ] {
        let mut object = desired(
            &key(Kind::Pipeline, namespace, name),
            json!({"timeout": "30m", "source": {"path": name}, "env": {"B": "2", "A": "1"}}),
        );
        object.labels.insert("team".into(), namespace.into());
        changes.push(Change::Create {
            object,
            managed_by: Some("cli".into()),
            status: Some(json!({"phase": "Ready", "observedGeneration": 1})),
        });
    }
    changes.push(create(&key(Kind::Schedule, "default", "a"), None));
    ensure!(store.commit_many(changes).await? == 5);
    let revision = store.revision().await?;

    let first = store.list_raw_page(Kind::Pipeline, None, None, 2).await?;
    let keys = |objects: &[RawObject]| -> Vec<String> {
        objects
            .iter()
            .map(|o| format!("{}/{}", o.key.namespace, o.key.name))
            .collect()
    };
    ensure!(keys(&first.objects) == ["default/a", "default/b"]);
    ensure!(first.revision == revision);
    let second = store
        .list_raw_page(Kind::Pipeline, None, Some(("default", "b")), 2)
        .await?;
    ensure!(keys(&second.objects) == ["default/c", "team/a"]);
    let last = store
        .list_raw_page(Kind::Pipeline, None, Some(("team", "a")), 2)
        .await?;
    ensure!(last.objects.is_empty() && last.revision == revision);
    let in_team = store
        .list_raw_page(Kind::Pipeline, Some("team"), None, 10)
        .await?;
    ensure!(keys(&in_team.objects) == ["team/a"]);
    let after_a = store
        .list_raw_page(Kind::Pipeline, Some("default"), Some(("", "a")), 10)
        .await?;
    ensure!(keys(&after_a.objects) == ["default/b", "default/c"]);

    // Stored text is canonical: keys sorted, no spaces (equal values, equal text).
    let object = &first.objects[0];
    ensure!(
        object.spec == r#"{"env":{"A":"1","B":"2"},"source":{"path":"a"},"timeout":"30m"}"#,
        "{}",
        object.spec
    );
    ensure!(object.labels == r#"{"team":"default"}"# && object.annotations == "{}");
    ensure!(object.status.as_deref() == Some(r#"{"observedGeneration":1,"phase":"Ready"}"#));
    ensure!(object.managed_by.as_deref() == Some("cli"));

    let whole = store.list_raw(Kind::Pipeline, None).await?;
    let mut paged = first.objects;
    paged.extend(second.objects);
    ensure!(whole == paged, "list_raw differs from its pages");
    Ok(())
}

fn event_rows(events: &[Event]) -> Vec<(String, EventType, String, String, i64)> {
    events
        .iter()
        .map(|e| {
            (
                e.involved.to_string(),
                e.event_type,
                e.reason.clone(),
                e.message.clone(),
                e.count,
            )
        })
        .collect()
}

async fn events_are_counted_listed_and_deleted(store: &Store) -> Result<()> {
    let run = key(Kind::Run, "default", "etl-1");
    let other_run = key(Kind::Run, "default", "etl-2");
    let schedule = key(Kind::Schedule, "team", "nightly");
    let started = chrono::Utc::now();
    let not_before =
        DateTimeUtc::from_timestamp_millis(started.timestamp_millis()).context("ms")?;
    store
        .record_event(&run, EventType::Normal, "Started", "attempt 1 started")
        .await?;
    store
        .record_event(
            &other_run,
            EventType::Normal,
            "Started",
            "attempt 1 started",
        )
        .await?;
    store
        .record_event(
            &schedule,
            EventType::Warning,
            "MissedSchedule",
            "2 earlier slot(s)",
        )
        .await?;
    store
        .record_event(&run, EventType::Warning, "BackOff", "attempt 1 failed")
        .await?;
    // The same reason and message again is counted, not added.
    store
        .record_event(&run, EventType::Normal, "Started", "attempt 1 started")
        .await?;
    let finished = chrono::Utc::now();

    let of_run = store
        .list_events(Some("default"), Some((Kind::Run, "etl-1")), 100)
        .await?;
    let mut rows = event_rows(&of_run);
    rows.sort_by(|a, b| a.2.cmp(&b.2));
    ensure!(
        rows == [
            (
                "Run/default/etl-1".into(),
                EventType::Warning,
                "BackOff".into(),
                "attempt 1 failed".into(),
                1
            ),
            (
                "Run/default/etl-1".into(),
                EventType::Normal,
                "Started".into(),
                "attempt 1 started".into(),
                2
            ),
        ],
        "{rows:#?}"
    );
    for event in &of_run {
        ensure!(not_before <= event.first_seen && event.first_seen <= event.last_seen);
        ensure!(event.last_seen <= finished, "{event:?}");
    }

    let in_default = store.list_events(Some("default"), None, 100).await?;
    ensure!(in_default.len() == 3, "{:#?}", event_rows(&in_default));
    ensure!(in_default.iter().all(|e| e.involved.namespace == "default"));
    let all = store.list_events(None, None, 100).await?;
    ensure!(all.len() == 4);
    ensure!(
        all.windows(2).all(|w| w[0].last_seen >= w[1].last_seen),
        "newest first: {:#?}",
        event_rows(&all)
    );
    // Events recorded one after another without repeats list newest first.
    let in_team = store.list_events(Some("team"), None, 100).await?;
    ensure!(
        event_rows(&in_team)
            == [(
                "Schedule/team/nightly".into(),
                EventType::Warning,
                "MissedSchedule".into(),
                "2 earlier slot(s)".into(),
                1
            )]
    );
    ensure!(
        store.list_events(None, None, 2).await?.len() == 2,
        "the limit holds"
    );
    ensure!(
        store
            .list_events(Some("default"), Some((Kind::Schedule, "etl-1")), 10)
            .await?
            .is_empty(),
        "the kind is part of the object's identity"
    );

    store.delete_events(&run).await?;
    ensure!(
        store
            .list_events(Some("default"), Some((Kind::Run, "etl-1")), 10)
            .await?
            .is_empty()
    );
    ensure!(
        store.list_events(None, None, 100).await?.len() == 2,
        "other objects keep theirs"
    );
    store.delete_events(&run).await?;
    Ok(())
}

async fn event_batches_are_recorded_together(store: &Store) -> Result<()> {
    store.record_events(Vec::new()).await?;
    let schedule = key(Kind::Schedule, "default", "nightly");
    let batch = |message: &str| {
        (
            schedule.clone(),
            EventType::Normal,
            "RunCreated".to_owned(),
            message.to_owned(),
        )
    };
    store
        .record_events(vec![
            batch("created nightly-1 for slot 2026-01-01T00:01:00Z"),
            batch("created nightly-2 for slot 2026-01-01T00:02:00Z"),
            batch("created nightly-1 for slot 2026-01-01T00:01:00Z"),
        ])
        .await?;
    let listed = store
        .list_events(Some("default"), Some((Kind::Schedule, "nightly")), 10)
        .await?;
    let mut rows: Vec<(String, i64)> = listed
        .iter()
        .map(|e| (e.message.clone(), e.count))
        .collect();
    rows.sort();
    ensure!(
        rows == [
            (
                "created nightly-1 for slot 2026-01-01T00:01:00Z".to_owned(),
                2
            ),
            (
                "created nightly-2 for slot 2026-01-01T00:02:00Z".to_owned(),
                1
            ),
        ],
        "{rows:?}"
    );
    // A repeat with another type keeps one row and takes the newer type.
    store
        .record_events(vec![(
            schedule.clone(),
            EventType::Warning,
            "RunCreated".to_owned(),
            "created nightly-2 for slot 2026-01-01T00:02:00Z".to_owned(),
        )])
        .await?;
    let listed = store.list_events(Some("default"), None, 10).await?;
    let two = listed
        .iter()
        .find(|e| e.message.contains("nightly-2"))
        .context("nightly-2 event")?;
    ensure!(
        two.count == 2 && two.event_type == EventType::Warning,
        "{two:?}"
    );
    Ok(())
}

async fn tokens_are_found_by_hash_until_revoked(store: &Store) -> Result<()> {
    let scopes = |list: &[&str]| -> Vec<String> { list.iter().map(|s| (*s).to_owned()).collect() };
    let expires = DateTimeUtc::from_timestamp_millis(1_900_000_000_123).context("instant")?;
    let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    ensure!(
        store
            .create_token(
                "ci",
                "hash-ci",
                &scopes(&["runs:read", "runs:write"]),
                Some(expires)
            )
            .await?
    );
    ensure!(
        !store
            .create_token("ci", "hash-other", &scopes(&["admin"]), None)
            .await?,
        "a taken name is refused"
    );
    ensure!(
        store
            .create_token("backup", "hash-backup", &scopes(&[]), None)
            .await?
    );

    let found = store
        .find_token("hash-ci")
        .await?
        .context("ci by its hash")?;
    ensure!(found.name == "ci");
    ensure!(found.scopes == ["runs:read", "runs:write"], "{found:?}");
    ensure!(found.expires_at == Some(expires), "{found:?}");
    ensure!(found.created_at >= before && found.created_at <= chrono::Utc::now());
    ensure!(
        store.find_token("hash-other").await?.is_none(),
        "the refused token was not stored"
    );
    ensure!(store.find_token("nope").await?.is_none());

    let listed: Vec<String> = store
        .list_tokens()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    ensure!(listed == ["backup", "ci"], "{listed:?}");

    // put_token replaces the hash and scopes and clears the expiry (the admin token).
    store
        .put_token("admin", "hash-admin-1", &scopes(&["admin"]))
        .await?;
    store
        .put_token("admin", "hash-admin-2", &scopes(&["admin"]))
        .await?;
    ensure!(
        store.find_token("hash-admin-1").await?.is_none(),
        "the old secret stops working"
    );
    let admin = store.find_token("hash-admin-2").await?.context("admin")?;
    ensure!(admin.scopes == ["admin"] && admin.expires_at.is_none());
    store
        .put_token("ci", "hash-ci-2", &scopes(&["runs:read"]))
        .await?;
    let ci = store
        .find_token("hash-ci-2")
        .await?
        .context("ci replaced")?;
    ensure!(
        ci.scopes == ["runs:read"] && ci.expires_at.is_none(),
        "{ci:?}"
    );

    ensure!(store.revoke_token("ci").await?);
    ensure!(
        !store.revoke_token("ci").await?,
        "revoking twice finds nothing"
    );
    ensure!(store.find_token("hash-ci-2").await?.is_none());
    let listed: Vec<String> = store
        .list_tokens()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    ensure!(listed == ["admin", "backup"], "{listed:?}");
    Ok(())
}

async fn identity_is_made_once_per_store(url: &str, other_url: &str) -> Result<()> {
    let first = Store::connect(url).await?;
    let identity = first.identity().to_owned();
    let uuid = uuid::Uuid::parse_str(&identity).context("the identity is a UUID")?;
    ensure!(uuid.get_version_num() == 4, "{identity}");
    // Every handle on the store reads the same identity, also while the first is open.
    let more = futures::future::try_join_all((0..3).map(|_| Store::connect(url))).await?;
    for store in &more {
        ensure!(
            store.identity() == identity,
            "{} != {identity}",
            store.identity()
        );
        store.close().await;
    }
    first.close().await;
    // It is kept by the store, not made per process.
    let reopened = Store::connect(url).await?;
    ensure!(reopened.identity() == identity);
    reopened.close().await;
    // Another store has its own.
    let other = Store::connect(other_url).await?;
    ensure!(other.identity() != identity);
    ensure!(uuid::Uuid::parse_str(other.identity()).is_ok());
    other.close().await;
    Ok(())
}

/// Operators sharing one PostgreSQL may all start on a new database at once: they agree
/// on one identity. (Not on SQLite: an embedded file is opened by one operator.)
#[tokio::test]
async fn postgres_operators_opening_a_new_store_at_once_agree_on_its_identity() -> Result<()> {
    let server = PgServer::start();
    let url = server.create_database().await;
    let opened = futures::future::try_join_all((0..4).map(|_| Store::connect(&url))).await?;
    let identity = opened[0].identity().to_owned();
    ensure!(uuid::Uuid::parse_str(&identity).is_ok(), "{identity}");
    for store in &opened {
        ensure!(
            store.identity() == identity,
            "{} != {identity}",
            store.identity()
        );
        store.close().await;
    }
    Ok(())
}

#[tokio::test]
async fn sqlite_reopen_keeps_data_in_wal_mode() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("nested").join("flotilla.db");
    std::fs::create_dir_all(path.parent().context("parent")?)?;
    let url = format!("sqlite://{}", path.display());
    let key = key(Kind::Pipeline, "default", "etl");

    let store = Store::connect(&url).await?;
    ensure!(store.backend_name() == "sqlite");
    let created = store
        .create(desired(&key, json!({"v": 1})), None, None)
        .await?;
    store.close().await;

    let reopened = Store::connect(&url).await?;
    ensure!(reopened.get(&key).await?.as_ref() == Some(&created));
    let next = reopened.update_status(&key, None, json!({})).await?;
    ensure!(
        next.resource_version > created.resource_version,
        "the counter survives"
    );
    reopened.close().await;

    let mut raw = SqliteConnection::connect(&url).await?;
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await?;
    ensure!(mode == "wal", "journal mode is {mode}");
    raw.close().await?;
    Ok(())
}

#[tokio::test]
async fn unsupported_url_is_refused() -> Result<()> {
    let err = Store::connect("mysql://localhost/flotilla")
        .await
        .expect_err("mysql is not a backend");
    ensure!(err.code() == "store.unavailable");
    ensure!(err.to_string().contains("\"mysql\""), "{err}");
    Ok(())
}

/// Runs without a status, `Pending` or `Running` count; finished ones do not; the
/// pipeline's count is of its namespace only; a status written later moves the count.
async fn unfinished_runs_are_counted_in_all_and_per_pipeline(store: &Store) -> Result<()> {
    let runs = [
        ("default", "etl-1", "etl", None),
        ("default", "etl-2", "etl", Some("Pending")),
        ("default", "etl-3", "etl", Some("Running")),
        ("default", "etl-4", "etl", Some("Succeeded")),
        ("default", "etl-5", "etl", Some("Failed")),
        ("default", "etl-6", "etl", Some("Cancelled")),
        ("default", "report-1", "report", Some("Running")),
        ("team", "etl-1", "etl", Some("Running")),
    ];
    for (namespace, name, pipeline, phase) in runs {
        let object = desired(
            &key(Kind::Run, namespace, name),
            json!({ "pipelineRef": { "name": pipeline } }),
        );
        store
            .create(object, None, phase.map(|p| json!({ "phase": p })))
            .await?;
    }
    let unfinished = |ns: &str, p: &str| {
        runs.iter()
            .filter(|(n, _, q, phase)| {
                *n == ns && *q == p && matches!(phase, None | Some("Pending" | "Running"))
            })
            .count() as i64
    };
    let all = runs
        .iter()
        .filter(|r| matches!(r.3, None | Some("Pending" | "Running")))
        .count() as i64;
    ensure!(store.unfinished_runs("default", "etl").await? == (all, unfinished("default", "etl")));
    ensure!(store.unfinished_runs("team", "etl").await? == (all, unfinished("team", "etl")));
    ensure!(store.unfinished_runs("default", "none").await? == (all, 0));
    store
        .update_status(
            &key(Kind::Run, "default", "etl-3"),
            None,
            json!({ "phase": "Succeeded" }),
        )
        .await?;
    ensure!(
        store.unfinished_runs("default", "etl").await?
            == (all - 1, unfinished("default", "etl") - 1)
    );
    Ok(())
}
