//! Runs of creates, written as multi-row inserts.
//!
//! One statement per [`INSERT_CHUNK`] objects instead of one per object; `ON CONFLICT DO
//! NOTHING RETURNING uid` tells which object's key was taken without aborting the
//! statement.

use std::collections::HashSet;
use std::fmt::Write as _;

use sqlx::AssertSqlSafe;

use super::backend::Tx;
use super::error::StoreError;
use super::row::{COLUMN_COUNT, object_columns, object_params};
use crate::resource::object::RawObject;

/// Rows per multi-row insert: 13 parameters each stays far below the bind limits of
/// SQLite (32766) and PostgreSQL (65535).
pub(super) const INSERT_CHUNK: usize = 500;

/// Inserts `pending` (emptying it) with one multi-row statement and appends the objects to
/// `results`; an object whose key is taken, already or earlier in the same run, is
/// [`StoreError::AlreadyExists`] — or, with `skip_taken`, silently left out.
pub(super) async fn insert(
    tx: &mut Tx,
    pending: &mut Vec<RawObject>,
    results: &mut Vec<RawObject>,
    skip_taken: bool,
) -> Result<(), StoreError> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut params = Vec::with_capacity(pending.len() * COLUMN_COUNT);
    for object in pending.iter() {
        object_params(object, &mut params);
    }
    let sql = insert_sql(pending.len(), tx.wants_anonymous_placeholders());
    let inserted: Vec<(String,)> = tx.fetch(AssertSqlSafe(sql), params).await?;
    if inserted.len() != pending.len() {
        let inserted: HashSet<String> = inserted.into_iter().map(|(uid,)| uid).collect();
        if skip_taken {
            pending.retain(|o| inserted.contains(&o.uid));
        } else if let Some(taken) = pending.iter().find(|o| !inserted.contains(&o.uid)) {
            return Err(StoreError::AlreadyExists(taken.key.clone()));
        }
    }
    results.append(pending);
    Ok(())
}

/// `INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING RETURNING uid` for `rows` objects,
/// with `$1, $2, …` placeholders or, if `anonymous`, `?, ?, …` (same binding order).
fn insert_sql(rows: usize, anonymous: bool) -> String {
    let mut sql = String::with_capacity(200 + rows * COLUMN_COUNT * 7);
    sql.push_str(concat!(
        "INSERT INTO objects (",
        object_columns!(),
        ") VALUES "
    ));
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..COLUMN_COUNT {
            if column > 0 {
                sql.push_str(", ");
            }
            if anonymous {
                sql.push('?');
            } else {
                // Writing to a String cannot fail.
                let _ = write!(sql, "${}", row * COLUMN_COUNT + column + 1);
            }
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (kind, namespace, name) DO NOTHING RETURNING uid");
    sql
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_numbers_every_placeholder_once() {
        let sql = insert_sql(2, false);
        assert!(sql.contains("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13), ($14,"));
        assert!(sql.ends_with("$26) ON CONFLICT (kind, namespace, name) DO NOTHING RETURNING uid"));
        let anonymous = insert_sql(2, true);
        assert_eq!(anonymous.matches('?').count(), 2 * COLUMN_COUNT);
        assert!(!anonymous.contains('$'));
    }
}
