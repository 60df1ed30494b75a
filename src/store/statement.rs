//! The single-object writes of a batch: update, status write and delete.
//!
//! Each is one conditional statement (key and, when given, resourceVersion) whose
//! `RETURNING` row is the result; only a statement that matched nothing pays a second
//! query, to tell [`StoreError::NotFound`] from [`StoreError::Conflict`].

use serde_json::Value;

use super::backend::{Param, Tx};
use super::error::StoreError;
use super::row::{ObjectRow, json_text, key_params, map_json, object_columns};
use crate::resource::object::{DesiredObject, ObjectKey, RawObject};

const CURRENT_VERSION: &str =
    "SELECT resource_version FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3";

/// In SQL `SET` expressions read the old row, so the `CASE` compares the old spec.
const UPDATE_OBJECT: &str = concat!(
    "UPDATE objects SET managed_by = $4, labels = $5, annotations = $6, ",
    "generation = CASE WHEN spec = $7 THEN generation ELSE generation + 1 END, ",
    "spec = $7, resource_version = $8, updated_at = $9 ",
    "WHERE kind = $1 AND namespace = $2 AND name = $3 AND resource_version = $10 ",
    "RETURNING ",
    object_columns!()
);

const UPDATE_STATUS: &str = concat!(
    "UPDATE objects SET status = $4, resource_version = $5, updated_at = $6 ",
    "WHERE kind = $1 AND namespace = $2 AND name = $3 ",
    "AND ($7 IS NULL OR resource_version = $7) ",
    "RETURNING ",
    object_columns!()
);

const DELETE_OBJECT: &str = concat!(
    "DELETE FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3 ",
    "AND ($4 IS NULL OR resource_version = $4) ",
    "RETURNING ",
    object_columns!()
);

/// A conditional single-row statement that returns the row it wrote (or deleted).
pub(super) struct Statement {
    key: ObjectKey,
    expected: Option<i64>,
    sql: &'static str,
    params: Vec<Param>,
}

impl Statement {
    /// Replaces spec, labels, annotations and manager; bumps the generation only if the
    /// spec text differs.
    pub(super) fn update(
        object: DesiredObject,
        managed_by: Option<String>,
        expected: i64,
        revision: i64,
        now_millis: i64,
    ) -> Self {
        let mut params = key_params(&object.key).to_vec();
        params.extend([
            Param::OptText(managed_by),
            Param::Text(map_json(&object.labels)),
            Param::Text(map_json(&object.annotations)),
            Param::Text(object.spec.as_str().to_owned()),
            Param::Int(revision),
            Param::Int(now_millis),
            Param::Int(expected),
        ]);
        Statement {
            key: object.key,
            expected: Some(expected),
            sql: UPDATE_OBJECT,
            params,
        }
    }

    /// Replaces the status only.
    pub(super) fn status(
        key: ObjectKey,
        expected: Option<i64>,
        status: Value,
        revision: i64,
        now_millis: i64,
    ) -> Self {
        let mut params = key_params(&key).to_vec();
        params.extend([
            Param::Text(json_text(&status)),
            Param::Int(revision),
            Param::Int(now_millis),
            Param::OptInt(expected),
        ]);
        Statement {
            key,
            expected,
            sql: UPDATE_STATUS,
            params,
        }
    }

    /// Deletes the object, returning it as it was.
    pub(super) fn delete(key: ObjectKey, expected: Option<i64>) -> Self {
        let mut params = key_params(&key).to_vec();
        params.push(Param::OptInt(expected));
        Statement {
            key,
            expected,
            sql: DELETE_OBJECT,
            params,
        }
    }

    /// Runs the statement in `tx` and returns the object it wrote (or deleted).
    pub(super) async fn run(self, tx: &mut Tx) -> Result<RawObject, StoreError> {
        let written = tx.fetch::<ObjectRow>(self.sql, self.params).await?;
        match written.into_iter().next() {
            Some(row) => row.into_raw(),
            None => Err(explain_miss(tx, self.key, self.expected).await),
        }
    }
}

/// Why a conditional statement on `key` matched no row: it is absent, or its
/// resourceVersion is not `expected`.
async fn explain_miss(tx: &mut Tx, key: ObjectKey, expected: Option<i64>) -> StoreError {
    let current = tx
        .fetch::<(i64,)>(CURRENT_VERSION, key_params(&key).to_vec())
        .await;
    match (current, expected) {
        (Err(error), _) => StoreError::Database(error),
        (Ok(rows), Some(expected)) => match rows.first() {
            Some((actual,)) => StoreError::Conflict {
                key,
                expected,
                actual: *actual,
            },
            None => StoreError::NotFound(key),
        },
        (Ok(_), None) => StoreError::NotFound(key),
    }
}
