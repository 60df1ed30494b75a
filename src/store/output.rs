//! Run output in the store: the bytes of a run's files (attempt logs, resource samples)
//! as chunks keyed by (run uid, file name, byte offset), so that every replica sharing a
//! PostgreSQL store can serve them.
//!
//! The store only keeps bytes where it is told to: the leader's shipper
//! ([`crate::controller::run::logs::ship`]) decides what a chunk holds, readers ask for
//! the bytes from an offset on. A file is the chunks in offset order; what a reader gets is
//! always contiguous from the offset it asked for: a chunk overlapping bytes already read
//! (two shippers cutting differently) is trimmed, and a gap ends the read there.

use super::Store;
use super::backend::Param;
use super::error::StoreError;
use crate::resource::ObjectKey;

/// Adds a chunk unless one starts at that offset, and only while the run exists (a chunk
/// shipped after its run was deleted would never be deleted).
const PUT: &str = "\
    INSERT INTO run_output (run_uid, file, byte_offset, end_offset, data) \
    SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM objects WHERE uid = $1) \
    ON CONFLICT (run_uid, file, byte_offset) DO NOTHING \
    RETURNING byte_offset";

/// The end of the last chunk (chunks follow each other, so it is the stored length),
/// found by a backward scan of the primary key.
const EXTENT: &str = "\
    SELECT end_offset FROM run_output WHERE run_uid = $1 AND file = $2 \
    ORDER BY byte_offset DESC LIMIT 1";

/// The chunks holding bytes from `$3` (exclusive of chunks ending at or before it) that
/// start before `$4`, in offset order. `$5` is `$3` minus the largest chunk, so the
/// primary key is scanned over that window only, however many chunks the file has.
const CHUNKS_IN_WINDOW: &str = "\
    SELECT byte_offset, data FROM run_output \
    WHERE run_uid = $1 AND file = $2 AND byte_offset > $5 AND byte_offset < $4 \
      AND end_offset > $3 \
    ORDER BY byte_offset";

/// `RETURNING` counts the rows on both backends alike.
const DELETE_RUN: &str = "DELETE FROM run_output WHERE run_uid = $1 RETURNING byte_offset";

/// Largest chunk the store takes, in bytes.
pub const MAX_OUTPUT_CHUNK: usize = 1 << 20;

/// Bytes a read starts chunks within: a read holds at most this plus one chunk (2 MiB),
/// however large the file.
const READ_WINDOW: u64 = 1 << 20;

impl Store {
    /// Stores `data` (at most [`MAX_OUTPUT_CHUNK`] bytes) as the bytes of `run_uid`'s
    /// `file` from `offset` on. Answers false when nothing was written: a chunk already
    /// starts there (a repeated ship), or the run no longer exists.
    pub async fn put_output_chunk(
        &self,
        run_uid: &str,
        file: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<bool, StoreError> {
        if data.len() > MAX_OUTPUT_CHUNK {
            // Reads find a chunk only within this distance of the bytes they want.
            return Err(StoreError::Database(sqlx::Error::Encode(
                format!(
                    "a chunk of run output holds at most {MAX_OUTPUT_CHUNK} bytes, not {}",
                    data.len()
                )
                .into(),
            )));
        }
        let end = offset + data.len() as u64;
        let rows: Vec<(i64,)> = self
            .backend
            .fetch(
                PUT,
                vec![
                    Param::Text(run_uid.to_owned()),
                    Param::Text(file.to_owned()),
                    Param::Int(to_i64(offset)),
                    Param::Int(to_i64(end)),
                    Param::Bytes(data),
                ],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// How many bytes of `run_uid`'s `file` are stored (0 when none).
    pub async fn output_extent(&self, run_uid: &str, file: &str) -> Result<u64, StoreError> {
        let rows: Vec<(i64,)> = self
            .backend
            .fetch(
                EXTENT,
                vec![
                    Param::Text(run_uid.to_owned()),
                    Param::Text(file.to_owned()),
                ],
            )
            .await?;
        Ok(rows
            .first()
            .map_or(0, |(end,)| u64::try_from(*end).unwrap_or(0)))
    }

    /// Stored bytes of `run_uid`'s `file` from `offset` on: the chunks starting within
    /// 1 MiB of it (at most 2 MiB), contiguous from `offset`; empty when nothing is stored
    /// from there.
    pub async fn read_output(
        &self,
        run_uid: &str,
        file: &str,
        offset: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let rows: Vec<(i64, Vec<u8>)> = self
            .backend
            .fetch(
                CHUNKS_IN_WINDOW,
                vec![
                    Param::Text(run_uid.to_owned()),
                    Param::Text(file.to_owned()),
                    Param::Int(to_i64(offset)),
                    Param::Int(to_i64(offset + READ_WINDOW)),
                    Param::Int(to_i64(offset) - MAX_OUTPUT_CHUNK as i64),
                ],
            )
            .await?;
        Ok(contiguous(offset, rows))
    }

    /// Deletes the events and the stored output of deleted runs (`(run, uid)`) in one
    /// transaction.
    pub async fn delete_run_records(&self, runs: &[(ObjectKey, String)]) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let mut tx = self.backend.begin().await?;
        for (key, uid) in runs {
            tx.execute(
                super::events::DELETE_OF,
                super::events::involved_params(key),
            )
            .await?;
            tx.execute(DELETE_RUN, vec![Param::Text(uid.clone())])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes everything stored of a run's output; answers how many chunks were.
    pub async fn delete_run_output(&self, run_uid: &str) -> Result<u64, StoreError> {
        let rows: Vec<(i64,)> = self
            .backend
            .fetch(DELETE_RUN, vec![Param::Text(run_uid.to_owned())])
            .await?;
        Ok(rows.len() as u64)
    }
}

/// The bytes from `offset` on that `chunks` (in offset order) hold without a gap.
fn contiguous(offset: u64, chunks: Vec<(i64, Vec<u8>)>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut position = offset;
    for (start, data) in chunks {
        let start = u64::try_from(start).unwrap_or(0);
        if start > position {
            break; // a gap: what follows it is not readable yet
        }
        let skip = usize::try_from(position - start).unwrap_or(usize::MAX);
        if let Some(rest) = data.get(skip..) {
            if bytes.is_empty() {
                bytes = if skip == 0 { data } else { rest.to_vec() };
            } else {
                bytes.extend_from_slice(rest);
            }
        }
        position = offset + bytes.len() as u64;
    }
    bytes
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::contiguous;

    #[test]
    fn reads_are_contiguous_from_the_offset() {
        let chunk = |at: i64, text: &str| (at, text.as_bytes().to_vec());
        // Whole chunks, and a read starting inside the first one.
        assert_eq!(
            contiguous(0, vec![chunk(0, "abc"), chunk(3, "de")]),
            b"abcde"
        );
        assert_eq!(
            contiguous(1, vec![chunk(0, "abc"), chunk(3, "de")]),
            b"bcde"
        );
        // A chunk overlapping what was read is trimmed; one covered entirely adds nothing.
        assert_eq!(
            contiguous(0, vec![chunk(0, "abc"), chunk(2, "cdef"), chunk(3, "d")]),
            b"abcdef"
        );
        // A gap ends the read; nothing stored from the offset reads as empty.
        assert_eq!(contiguous(0, vec![chunk(0, "ab"), chunk(5, "fg")]), b"ab");
        assert!(contiguous(4, vec![chunk(5, "fg")]).is_empty());
    }
}
