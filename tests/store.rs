//! The store's behaviours, written once and run against a real SQLite file and a real,
//! throwaway PostgreSQL server (see `support/postgres.rs`). Each test gets its own temp dir
//! or database.

/// Only the helpers this suite uses, so other suites' helpers are not compiled here.
mod support {
    pub mod postgres;
}

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use flotilla::resource::kind::Kind;
use flotilla::resource::object::{Change, DesiredObject, ObjectKey, StoredObject};
use flotilla::store::{Store, StoreError};
use serde_json::{Value, json};
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;

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
);

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
