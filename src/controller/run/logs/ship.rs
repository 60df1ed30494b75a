//! Shipping run output into a store shared by replicas (PostgreSQL), so that any replica
//! can serve a run's log and samples and a new leader can pick up where the last one was.
//!
//! The leader captures output into its local files exactly as a lone operator does
//! ([`super::follow_attempt`], [`super::sample_attempt`]): the file stays the streaming
//! buffer and the resume logic keeps working on it. A [`FileShipper`] copies what a file
//! gains into the store while it is written, as chunks keyed by (run uid, file name, byte
//! offset), so a repeated ship stores nothing twice. Three rules keep this simple:
//!
//! - **The store holds a prefix of the file.** A shipper appends from the stored end
//!   ([`Store::output_extent`]) only, one chunk after the other, so stored bytes have no
//!   gaps and sit at the offsets they have in the file.
//! - **Chunks are whole lines**, at most [`CHUNK_BYTES`] long (a line longer than that,
//!   which Docker's 16 KiB split makes impossible for logs, spans chunks): readers of the
//!   store never see half a line. Full chunks go as soon as the file holds them (woken by
//!   [`RunFiles::announce_output`]); the rest every [`PARTIAL_EVERY`], so a quiet run makes
//!   at most two rows a second and a loud one rows of 1 MiB.
//! - **Memory is one chunk**: the file is read by offset, never whole, so a 200 MB log
//!   costs the same as a small one.
//!
//! Before a replica appends to a file it did not write last (a new leader after a
//! failover), [`FileShipper::start`] restores the file from the store when it is missing
//! or does not agree with the store, so the resume logic skips what is stored and no byte
//! sits in the store twice.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::RunFiles;
use crate::resource::ObjectKey;
use crate::store::{Store, StoreError};

/// Largest chunk stored, in bytes (1 MiB).
pub const CHUNK_BYTES: usize = crate::store::output::MAX_OUTPUT_CHUNK;

/// How often bytes short of a full chunk are shipped while a file grows.
pub const PARTIAL_EVERY: Duration = Duration::from_millis(500);

/// How much of the end of the stored bytes is compared with the local file to tell
/// whether the file holds what the store holds.
const AGREEMENT_WINDOW: u64 = 64 * 1024;

/// Attempts of the last ship when a file is finished, one second apart.
const FINAL_ATTEMPTS: u32 = 3;

/// Why output could not be shipped or restored. Either is retried by the caller.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The store did not answer.
    #[error("cannot ship run output: {0}")]
    Store(#[from] StoreError),
    /// The local file could not be read or restored.
    #[error("cannot ship run output: {path}: {source}")]
    Io {
        /// The local file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl ShipError {
    /// Stable machine code, for logs and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            ShipError::Store(e) => e.code(),
            ShipError::Io { .. } => "run_output.io",
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ShipError + '_ {
        move |source| ShipError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Ships one file of run data while it is written; inert when the store is not shared.
/// Dropping it stops shipping at once; [`FileShipper::finish`] ships the rest first.
#[derive(Debug)]
pub struct FileShipper {
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl FileShipper {
    /// Restores `path` from the store if needed (see [`restore_file`]), then ships what it
    /// gains until [`FileShipper::finish`]. Call it before anything appends to the file.
    pub async fn start(store: &Store, files: &RunFiles, path: &Path) -> Result<Self, ShipError> {
        let inert = Self { running: None };
        if !store.is_shared() {
            return Ok(inert);
        }
        let Some((run_uid, file)) = files.output_key(path) else {
            return Ok(inert);
        };
        let shipped = restore_file(store, files, path).await?;
        let stop = CancellationToken::new();
        let shipping = Shipping {
            store: store.clone(),
            path: path.to_owned(),
            run_uid,
            file,
        };
        let task = tokio::spawn(shipping.run(files.clone(), shipped, stop.clone()));
        Ok(Self {
            running: Some((stop, task)),
        })
    }

    /// Ships what the file holds now and stops (the writer is done with it).
    pub async fn finish(mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            let _ = task.await;
        }
    }
}

impl Drop for FileShipper {
    fn drop(&mut self) {
        if let Some((_, task)) = self.running.take() {
            task.abort();
        }
    }
}

/// Ships whatever `path` holds beyond the stored bytes, now, and reports any failure:
/// called before a finished attempt's status is written, so a run is only seen finished
/// once its output is in the store. A no-op when the store is not shared, or when the
/// file is missing or does not agree with the store (it was not this replica's to ship).
pub async fn ship_pending(store: &Store, files: &RunFiles, path: &Path) -> Result<(), ShipError> {
    if !store.is_shared() {
        return Ok(());
    }
    let Some((run_uid, file)) = files.output_key(path) else {
        return Ok(());
    };
    let extent = store.output_extent(&run_uid, &file).await?;
    let length = local_length(path).map_err(ShipError::io(path))?;
    if length.is_none_or(|length| length <= extent) {
        return Ok(());
    }
    if !local_agrees(store, path, &run_uid, &file, extent).await? {
        tracing::warn!(path = %path.display(), "not shipped: the local file does not hold what the store holds");
        return Ok(());
    }
    let shipping = Shipping {
        store: store.clone(),
        path: path.to_owned(),
        run_uid,
        file,
    };
    shipping.pass(extent, Pass::Everything).await.map(|_| ())
}

/// Deletes a deleted run's output wherever it is kept: the local files and the chunks
/// shipped to a shared store (a chunk shipped after this finds no run and is dropped).
/// Failures are logged: the run itself is already gone.
pub async fn delete_run_output(store: &Store, files: &RunFiles, key: &ObjectKey, run_uid: &str) {
    if let Err(e) = files.delete_run(run_uid) {
        tracing::warn!(run = %key, "cannot delete the run's local output: {e}");
    }
    if let Err(e) = store.delete_run_output(run_uid).await {
        tracing::warn!(run = %key, code = e.code(), "cannot delete the run's stored output: {e}");
    }
}

/// Makes `path` hold what the store holds of it, before anything appends to it, and
/// answers how many bytes are stored. The file is left as it is when nothing is stored
/// or when it holds the stored bytes (it may hold more: output this replica captured and
/// has not shipped yet). Otherwise (missing, shorter, or different: written by a replica
/// that lost the lead since) it is replaced by the stored bytes, written to a temporary
/// file first and renamed over it, reading a few chunks at a time.
pub async fn restore_file(store: &Store, files: &RunFiles, path: &Path) -> Result<u64, ShipError> {
    let Some((run_uid, file)) = files.output_key(path) else {
        return Ok(0);
    };
    let extent = store.output_extent(&run_uid, &file).await?;
    if extent == 0 || local_agrees(store, path, &run_uid, &file, extent).await? {
        return Ok(extent);
    }
    if let Some(dir) = path.parent() {
        crate::private_fs::create_dir(dir).map_err(ShipError::io(path))?;
    }
    let partial = path.with_file_name(format!(".{file}.restoring"));
    crate::private_fs::write(&partial, b"").map_err(ShipError::io(&partial))?;
    let mut out = std::io::BufWriter::new(
        crate::private_fs::append(&partial).map_err(ShipError::io(&partial))?,
    );
    let mut restored = 0u64;
    loop {
        let bytes = store.read_output(&run_uid, &file, restored).await?;
        if bytes.is_empty() {
            break;
        }
        out.write_all(&bytes).map_err(ShipError::io(&partial))?;
        restored += bytes.len() as u64;
    }
    out.flush().map_err(ShipError::io(&partial))?;
    drop(out);
    std::fs::rename(&partial, path).map_err(ShipError::io(path))?;
    files.announce_output();
    if restored < extent {
        tracing::warn!(path = %path.display(), restored, extent, "the stored output has a gap; restored up to it");
    }
    tracing::info!(path = %path.display(), bytes = restored, "restored run output from the store");
    Ok(restored)
}

/// Whether the local file holds the `extent` stored bytes: it is at least as long and
/// the last [`AGREEMENT_WINDOW`] bytes stored are the file's bytes at the same offsets
/// (lines carry nanosecond timestamps, so other output does not match by chance).
async fn local_agrees(
    store: &Store,
    path: &Path,
    run_uid: &str,
    file: &str,
    extent: u64,
) -> Result<bool, ShipError> {
    let Some(length) = local_length(path).map_err(ShipError::io(path))? else {
        return Ok(false);
    };
    if length < extent {
        return Ok(false);
    }
    let from = extent.saturating_sub(AGREEMENT_WINDOW);
    let stored = store.read_output(run_uid, file, from).await?;
    let local = read_range(path, from, stored.len()).map_err(ShipError::io(path))?;
    Ok(local == stored)
}

fn local_length(path: &Path) -> std::io::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_range(path: &Path, from: u64, length: usize) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::with_capacity(length);
    file.take(length as u64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// What a shipping pass sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Only full chunks (as soon as the file holds one).
    WholeChunks,
    /// Every whole line.
    Lines,
    /// Everything, a last line without its newline too (the writer is done).
    Everything,
}

/// One file being shipped.
struct Shipping {
    store: Store,
    path: PathBuf,
    run_uid: String,
    file: String,
}

impl Shipping {
    /// Ships from `shipped` on while the file grows, until `stop`; then ships the rest.
    async fn run(self, files: RunFiles, mut shipped: u64, stop: CancellationToken) {
        let mut grew = files.output_signal();
        let mut partial = tokio::time::interval(PARTIAL_EVERY);
        partial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            let pass = tokio::select! {
                _ = stop.cancelled() => break,
                _ = partial.tick() => Pass::Lines,
                _ = grew.changed() => {
                    // Some file grew (the signal is shared): a stat tells whether this one
                    // holds a full chunk, without a read.
                    let holds_a_chunk = local_length(&self.path)
                        .ok()
                        .flatten()
                        .is_some_and(|length| length >= shipped + CHUNK_BYTES as u64);
                    if !holds_a_chunk {
                        continue;
                    }
                    Pass::WholeChunks
                }
            };
            match self.pass(shipped, pass).await {
                Ok(Some(end)) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(path = %self.path.display(), "shipping run output again");
                    }
                    shipped = end;
                }
                Ok(None) => return, // the run was deleted
                // Said once, not at every tick while the store is away.
                Err(e) if !std::mem::replace(&mut failing, true) => {
                    tracing::warn!(path = %self.path.display(), code = e.code(), "shipping run output, retrying: {e}")
                }
                Err(_) => {}
            }
        }
        for attempt in 1..=FINAL_ATTEMPTS {
            match self.pass(shipped, Pass::Everything).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), code = e.code(), attempt, "shipping the rest of run output: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Ships chunks from `shipped` on as long as the file has some for `pass`; answers the
    /// new stored end, or `None` when the run no longer exists.
    async fn pass(&self, mut shipped: u64, pass: Pass) -> Result<Option<u64>, ShipError> {
        loop {
            let path = self.path.clone();
            let chunk = tokio::task::spawn_blocking(move || next_chunk(&path, shipped, pass))
                .await
                .map_err(|e| ShipError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(e),
                })?
                .map_err(ShipError::io(&self.path))?;
            let Some(chunk) = chunk else {
                return Ok(Some(shipped));
            };
            let length = chunk.len() as u64;
            if self
                .store
                .put_output_chunk(&self.run_uid, &self.file, shipped, chunk)
                .await?
            {
                shipped += length;
                continue;
            }
            // Stored already (by this replica before a restart, or another replica that
            // led), or the run is gone: the stored end tells which.
            let extent = self.store.output_extent(&self.run_uid, &self.file).await?;
            if extent <= shipped {
                return Ok(None);
            }
            shipped = extent;
        }
    }
}

/// The next chunk of `path` from byte `from` for `pass`, if it has one.
fn next_chunk(path: &Path, from: u64, pass: Pass) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let available = file.metadata()?.len().saturating_sub(from);
    if available == 0 || (pass == Pass::WholeChunks && available < CHUNK_BYTES as u64) {
        return Ok(None);
    }
    let wanted = available.min(CHUNK_BYTES as u64);
    file.seek(SeekFrom::Start(from))?;
    let mut chunk = Vec::with_capacity(wanted as usize);
    file.take(wanted).read_to_end(&mut chunk)?;
    if pass == Pass::Everything {
        return Ok((!chunk.is_empty()).then_some(chunk));
    }
    match chunk.iter().rposition(|b| *b == b'\n') {
        Some(last) => {
            chunk.truncate(last + 1);
            Ok(Some(chunk))
        }
        // One line longer than a chunk: it spans chunks.
        None if chunk.len() == CHUNK_BYTES => Ok(Some(chunk)),
        // A line still being written.
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_whole_lines_of_at_most_a_mebibyte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        assert_eq!(next_chunk(&path, 0, Pass::Lines).expect("missing"), None);
        std::fs::write(&path, "one\ntwo\nthr").expect("write");
        let chunk = |from, pass| next_chunk(&path, from, pass).expect("read");
        assert_eq!(chunk(0, Pass::Lines), Some(b"one\ntwo\n".to_vec()));
        assert_eq!(chunk(4, Pass::Lines), Some(b"two\n".to_vec()));
        assert_eq!(chunk(8, Pass::Lines), None, "a line being written waits");
        assert_eq!(chunk(8, Pass::Everything), Some(b"thr".to_vec()));
        assert_eq!(chunk(11, Pass::Everything), None);
        assert_eq!(chunk(0, Pass::WholeChunks), None, "less than a chunk");

        // 1.5 MiB of 100-byte lines: a full chunk ends at the last line end within it.
        let line = format!("{}\n", "x".repeat(99));
        std::fs::write(&path, line.repeat(15 * 1024 * 1024 / 1000)).expect("write");
        let first = chunk(0, Pass::WholeChunks).expect("a full chunk");
        assert!(first.len() <= CHUNK_BYTES && first.len() > CHUNK_BYTES - 100);
        assert_eq!(first.len() % 100, 0);
        assert_eq!(
            chunk(first.len() as u64, Pass::WholeChunks),
            None,
            "the rest is short of a chunk"
        );

        // A line longer than a chunk spans chunks.
        std::fs::write(&path, "y".repeat(CHUNK_BYTES + 10) + "\n").expect("write");
        assert_eq!(chunk(0, Pass::Lines).map(|c| c.len()), Some(CHUNK_BYTES));
        assert_eq!(
            chunk(CHUNK_BYTES as u64, Pass::Lines).map(|c| c.len()),
            Some(11)
        );
    }
}
