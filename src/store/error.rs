//! What can go wrong in the store, with the stable machine codes the API reports.

use crate::resource::object::ObjectKey;

/// A failed store operation. Nothing of a failed [`crate::store::Store::commit`] is applied.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{0} not found")]
    NotFound(ObjectKey),
    /// A create named an object that already exists.
    #[error("{0} already exists")]
    AlreadyExists(ObjectKey),
    /// The writer quoted a resourceVersion that is no longer the stored one.
    #[error(
        "{key}: resourceVersion {expected} is stale, the stored one is {actual}; re-read and retry"
    )]
    Conflict {
        /// The object written.
        key: ObjectKey,
        /// The resourceVersion the writer quoted.
        expected: i64,
        /// The resourceVersion in the store.
        actual: i64,
    },
    /// The database could not be reached or refused a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row cannot be read back (bad JSON, unknown kind, bad timestamp).
    #[error("{key}: stored row is corrupt: {reason}")]
    Corrupt {
        /// `Kind/namespace/name` as stored; text, because a corrupt row may not name a
        /// kind this version knows.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A write or side effect of a leader that no longer holds its lease (another
    /// replica took over, or the lease was not renewed in time).
    #[error("fenced: this replica no longer leads under lease {lease} (epoch {epoch}): {reason}")]
    Fenced {
        /// The lease name.
        lease: &'static str,
        /// The epoch this replica acted under.
        epoch: i64,
        /// What the check found.
        reason: String,
    },
}

impl From<crate::resource::object::DecodeError> for StoreError {
    fn from(error: crate::resource::object::DecodeError) -> Self {
        StoreError::Corrupt {
            key: error.key.to_string(),
            reason: format!(
                "the stored {} cannot be read: {}",
                error.part, error.message
            ),
        }
    }
}

impl StoreError {
    /// Stable machine code for API problem documents and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "resource.not_found",
            StoreError::AlreadyExists(_) => "resource.already_exists",
            StoreError::Conflict { .. } => "resource.conflict",
            StoreError::Database(_) | StoreError::Migrate(_) => "store.unavailable",
            StoreError::Corrupt { .. } => "store.corrupt",
            StoreError::Fenced { .. } => "store.fenced",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::kind::Kind;

    #[test]
    fn conflict_message_names_the_object_and_both_versions() {
        let err = StoreError::Conflict {
            key: ObjectKey::new(Kind::Pipeline, "default", "etl"),
            expected: 7,
            actual: 9,
        };
        assert_eq!(
            err.to_string(),
            "Pipeline/default/etl: resourceVersion 7 is stale, the stored one is 9; re-read and retry"
        );
        assert_eq!(err.code(), "resource.conflict");
    }
}
