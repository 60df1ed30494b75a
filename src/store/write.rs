//! Atomic batches of writes.
//!
//! A batch runs in one transaction: it first reserves one revision per write from the
//! `revision` counter row (which also serialises writers), then applies the writes in
//! order. Runs of creates are buffered and go in as multi-row inserts ([`super::insert`]);
//! updates, status writes and deletes are single conditional statements
//! ([`super::statement`]). Any error drops the transaction, which rolls everything back.
//!
//! On PostgreSQL a batch also checks the writer's lease epoch first when it writes
//! through a fenced handle ([`super::fence`]), copies deleted objects into `deletions`,
//! and notifies the other replicas at commit ([`super::Store::follow_other_writers`]).

use serde_json::Value;

use super::backend::{Backend, Param, Tx};
use super::error::StoreError;
use super::fence::Fence;
use super::insert::{INSERT_CHUNK, insert};
use super::row::{json_text, map_json, now, object_columns, object_params};
use super::statement::Statement;
use crate::resource::object::{Change, DesiredObject, ObjectKey, RawObject};

/// Tells the replicas listening on channel `$1` (all that share this PostgreSQL store)
/// that revisions up to `$2` were written.
const NOTIFY: &str = "SELECT pg_notify($1, $2)::text";

/// A deleted object, as of its delete (see `migrations/postgres/0007_deletions.sql`).
const RECORD_DELETION: &str = concat!(
    "INSERT INTO deletions (",
    object_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
);

/// Deletions more than this many revisions old are forgotten.
const DELETIONS_KEPT: i64 = 100_000;

const PRUNE_DELETIONS: &str = "DELETE FROM deletions WHERE resource_version < $1";

const RESERVE_REVISIONS: &str =
    "UPDATE revision SET value = value + $1 WHERE id = 1 RETURNING value";

/// One write of a batch: a public [`Change`] or one of the store's own operations.
pub(super) enum Write {
    /// See [`Change::Create`].
    Create {
        object: DesiredObject,
        managed_by: Option<String>,
        status: Option<Value>,
    },
    /// See [`Change::Update`].
    Update {
        object: DesiredObject,
        managed_by: Option<String>,
        expected: i64,
    },
    /// Replace the status only; `None` skips the resourceVersion check.
    Status {
        key: ObjectKey,
        expected: Option<i64>,
        status: Value,
    },
    /// See [`Change::Delete`]; `None` skips the resourceVersion check.
    Delete {
        key: ObjectKey,
        expected: Option<i64>,
    },
}

impl Write {
    /// The object written.
    pub(super) fn key(&self) -> &ObjectKey {
        match self {
            Write::Create { object, .. } | Write::Update { object, .. } => &object.key,
            Write::Status { key, .. } | Write::Delete { key, .. } => key,
        }
    }
}

impl From<Change> for Write {
    fn from(change: Change) -> Self {
        match change {
            Change::Create {
                object,
                managed_by,
                status,
            } => Write::Create {
                object,
                managed_by,
                status,
            },
            Change::Update {
                object,
                managed_by,
                expected_resource_version,
            } => Write::Update {
                object,
                managed_by,
                expected: expected_resource_version,
            },
            Change::Delete {
                key,
                expected_resource_version,
            } => Write::Delete {
                key,
                expected: Some(expected_resource_version),
            },
        }
    }
}

/// Applies `writes` in order in one transaction and returns the objects after each write
/// (for a delete, the object as it was), with their JSON parts as the stored text.
///
/// With `skip_taken`, creates of taken keys are skipped (and absent from the result)
/// instead of failing the transaction.
///
/// Also returns the revision of the first write: write `i` took `first + i`.
pub(super) async fn apply_with(
    backend: &Backend,
    writes: Vec<Write>,
    skip_taken: bool,
    fence: Option<&Fence>,
) -> Result<(Vec<RawObject>, i64), StoreError> {
    if writes.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let count = i64::try_from(writes.len()).unwrap_or(i64::MAX);
    let mut tx = backend.begin().await?;
    if let Some(fence) = fence {
        fence.check(&mut tx).await?;
    }
    let last = tx
        .fetch::<(i64,)>(RESERVE_REVISIONS, vec![Param::Int(count)])
        .await?
        .first()
        .map(|(value,)| *value)
        .ok_or_else(|| StoreError::Corrupt {
            key: "revision".into(),
            reason: "the revision counter row is missing".into(),
        })?;
    let mut revision = last - count;
    let now = now();
    let now_millis = now.timestamp_millis();
    let mut results = Vec::with_capacity(writes.len());
    let mut pending_creates = Vec::new();
    for write in writes {
        revision += 1;
        let statement = match write {
            Write::Create {
                object,
                managed_by,
                status,
            } => {
                pending_creates.push(RawObject {
                    key: object.key,
                    uid: uuid::Uuid::new_v4().to_string(),
                    generation: 1,
                    resource_version: revision,
                    managed_by,
                    labels: map_json(&object.labels),
                    annotations: map_json(&object.annotations),
                    spec: object.spec.as_str().to_owned(),
                    status: status.as_ref().map(json_text),
                    created_at: now,
                    updated_at: now,
                });
                if pending_creates.len() == INSERT_CHUNK {
                    insert(&mut tx, &mut pending_creates, &mut results, skip_taken).await?;
                }
                continue;
            }
            Write::Update {
                object,
                managed_by,
                expected,
            } => Statement::update(object, managed_by, expected, revision, now_millis),
            Write::Status {
                key,
                expected,
                status,
            } => Statement::status(key, expected, status, revision, now_millis),
            Write::Delete { key, expected } => {
                insert(&mut tx, &mut pending_creates, &mut results, skip_taken).await?;
                let deleted = Statement::delete(key, expected).run(&mut tx).await?;
                if tx.is_postgres() {
                    record_deletion(&mut tx, &deleted, revision, now).await?;
                }
                results.push(deleted);
                continue;
            }
        };
        insert(&mut tx, &mut pending_creates, &mut results, skip_taken).await?;
        results.push(statement.run(&mut tx).await?);
    }
    insert(&mut tx, &mut pending_creates, &mut results, skip_taken).await?;
    if tx.is_postgres() {
        // Delivered at commit (and only then) to every replica listening: they read
        // the writes after the revisions they have seen ([`super::Store::follow_other_writers`]).
        tx.fetch::<(String,)>(
            NOTIFY,
            vec![
                Param::Text(super::WRITES_CHANNEL.to_owned()),
                Param::Text(last.to_string()),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((results, last - count + 1))
}

/// Copies a deleted object into `deletions` under the revision its delete took, for the
/// replicas following this store's writes, and forgets deletions long past.
async fn record_deletion(
    tx: &mut Tx,
    deleted: &RawObject,
    revision: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    let mut params = Vec::with_capacity(13);
    object_params(
        &RawObject {
            resource_version: revision,
            updated_at: now,
            ..deleted.clone()
        },
        &mut params,
    );
    tx.execute(RECORD_DELETION, params).await?;
    tx.execute(PRUNE_DELETIONS, vec![Param::Int(revision - DELETIONS_KEPT)])
        .await?;
    Ok(())
}
