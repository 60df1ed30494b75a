//! Where the API reads a run's output: the local file when this replica has it, else the
//! chunks the leader shipped to a shared store ([`crate::controller::run::logs::ship`]).
//!
//! The stored bytes of a file are a prefix of the leader's file at the same offsets, so a
//! reader can move from one to the other mid-stream without losing or repeating a line.
//! The choice, made when a reader starts:
//!
//! - not shared (SQLite): the local file, as always;
//! - shared and the local file holds at least what the store holds: the local file (this
//!   replica writes it, or wrote it when it led);
//! - otherwise the store; a follower that started before the local file existed moves to
//!   it once it appears (the leader before the first line), and a follower of a local
//!   file that stopped growing moves to the store when the attempt ends with the store
//!   holding more (a replica that lost the lead mid-run).
//!
//! Reads hold at most a window of the file (64 KiB of a local file, 2 MiB of chunks), so a
//! 200 MB log is served with as little memory as a small one.

use std::io::{BufRead, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use super::AppState;
use crate::controller::run::logs::read_samples;
use crate::controller::runtime::ResourceSample;
use crate::store::{Store, StoreError};

/// Lines a follower reads from a local file at a time.
const LOCAL_LINES: usize = 4_096;
/// Bytes read from a local file at a time for a text response.
const LOCAL_BLOCK: usize = 64 * 1024;
/// Longest wait between reads of a live local log when no output is announced.
const LOCAL_POLL: Duration = Duration::from_millis(500);
/// How often a follower of stored output asks the store for more (nothing announces it).
const STORED_POLL: Duration = Duration::from_millis(250);

/// One file of a run's output, and where it is read from.
pub(super) struct RunOutput {
    path: PathBuf,
    /// `(store, run uid, file name)` when the store is shared.
    shipped: Option<(Store, String, String)>,
    source: Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Local,
    /// The store; `until_local` when the local file did not exist at the start.
    Stored {
        until_local: bool,
    },
}

impl RunOutput {
    /// Chooses where to read `path` (a file of [`AppState::files`]) from.
    pub(super) async fn open(state: &AppState, path: PathBuf) -> Result<Self, StoreError> {
        let shipped = match state.files.output_key(&path) {
            Some((run_uid, file)) if state.store.is_shared() => {
                Some((state.store.clone(), run_uid, file))
            }
            _ => None,
        };
        let source = match &shipped {
            None => Source::Local,
            Some((store, run_uid, file)) => {
                let stored = store.output_extent(run_uid, file).await?;
                match std::fs::metadata(&path).map(|m| m.len()) {
                    Ok(length) if length >= stored => Source::Local,
                    Ok(_) => Source::Stored { until_local: false },
                    Err(_) => Source::Stored { until_local: true },
                }
            }
        };
        Ok(Self {
            path,
            shipped,
            source,
        })
    }

    /// The whole file as a streamed response body (empty when there is none).
    pub(super) fn body(self) -> Body {
        match (self.source, self.shipped) {
            (Source::Stored { .. }, Some((store, run_uid, file))) => {
                let chunks = futures::stream::try_unfold(0u64, move |offset| {
                    let (store, run_uid, file) = (store.clone(), run_uid.clone(), file.clone());
                    async move {
                        let bytes = store.read_output(&run_uid, &file, offset).await?;
                        let next = offset + bytes.len() as u64;
                        Ok::<_, StoreError>((!bytes.is_empty()).then(|| (Bytes::from(bytes), next)))
                    }
                });
                Body::from_stream(chunks)
            }
            _ => Body::from_stream(local_blocks(self.path)),
        }
    }

    /// The resource samples the file holds.
    pub(super) async fn samples(self) -> Result<Vec<ResourceSample>, StoreError> {
        let (Source::Stored { .. }, Some((store, run_uid, file))) = (self.source, &self.shipped)
        else {
            return Ok(read_samples(&self.path));
        };
        let mut samples = Vec::new();
        let mut offset = 0u64;
        let mut line = Vec::new();
        loop {
            let bytes = store.read_output(run_uid, file, offset).await?;
            if bytes.is_empty() {
                break;
            }
            offset += bytes.len() as u64;
            for piece in bytes.split_inclusive(|b| *b == b'\n') {
                line.extend_from_slice(piece);
                if line.ends_with(b"\n") {
                    samples.extend(serde_json::from_slice::<ResourceSample>(&line).ok());
                    line.clear();
                }
            }
        }
        samples.extend(serde_json::from_slice::<ResourceSample>(&line).ok());
        Ok(samples)
    }

    /// Complete lines from byte `offset` on (without their newlines), and the offset after
    /// the last one.
    pub(super) async fn lines(&mut self, offset: u64) -> Result<(Vec<String>, u64), StoreError> {
        if self.source == (Source::Stored { until_local: true }) && self.path.exists() {
            self.source = Source::Local;
        }
        match (self.source, &self.shipped) {
            (Source::Stored { .. }, Some((store, run_uid, file))) => {
                stored_lines(store, run_uid, file, offset).await
            }
            _ => Ok(local_lines(&self.path, offset)),
        }
    }

    /// Called when the attempt is over and `offset` is the end of what was read: moves a
    /// reader of a local file to the store when the store holds more. Answers whether it
    /// did (there is more to read).
    pub(super) async fn prefer_store_at_end(&mut self, offset: u64) -> Result<bool, StoreError> {
        let (Source::Local, Some((store, run_uid, file))) = (self.source, &self.shipped) else {
            return Ok(false);
        };
        if store.output_extent(run_uid, file).await? > offset {
            self.source = Source::Stored { until_local: false };
            return Ok(true);
        }
        Ok(false)
    }

    /// Longest wait for more output before reading again.
    pub(super) fn poll_interval(&self) -> Duration {
        match self.source {
            Source::Local => LOCAL_POLL,
            Source::Stored { .. } => STORED_POLL,
        }
    }
}

/// Complete lines of the stored file from `offset` on: what one read of the store holds,
/// more only when that holds no line end yet (a line longer than the read).
async fn stored_lines(
    store: &Store,
    run_uid: &str,
    file: &str,
    offset: u64,
) -> Result<(Vec<String>, u64), StoreError> {
    let mut bytes = Vec::new();
    loop {
        let more = store
            .read_output(run_uid, file, offset + bytes.len() as u64)
            .await?;
        if more.is_empty() {
            break;
        }
        let has_line_end = more.contains(&b'\n');
        bytes.extend_from_slice(&more);
        if has_line_end {
            break;
        }
    }
    let Some(last) = bytes.iter().rposition(|b| *b == b'\n') else {
        return Ok((Vec::new(), offset));
    };
    let lines = bytes[..last]
        .split(|b| *b == b'\n')
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect();
    Ok((lines, offset + last as u64 + 1))
}

/// Complete lines of a local file from `offset` on (at most [`LOCAL_LINES`]), and the
/// offset after the last complete one.
fn local_lines(path: &PathBuf, offset: u64) -> (Vec<String>, u64) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return (Vec::new(), offset);
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let mut reader = std::io::BufReader::new(file);
    let mut lines = Vec::new();
    let mut position = offset;
    let mut buffer = String::new();
    while lines.len() < LOCAL_LINES {
        buffer.clear();
        match reader.read_line(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) if buffer.ends_with('\n') => {
                position += n as u64;
                lines.push(buffer.trim_end_matches('\n').to_owned());
            }
            Ok(_) => break, // partial last line: wait for its end
        }
    }
    (lines, position)
}

/// A local file in blocks of [`LOCAL_BLOCK`] bytes; nothing when it does not exist.
fn local_blocks(
    path: PathBuf,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::once(async move {
        match tokio::fs::File::open(&path).await {
            Ok(file) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read run output: {e}");
                None
            }
        }
    })
    .filter_map(std::future::ready)
    .flat_map(|file| {
        futures::stream::try_unfold(file, |mut file| async move {
            let mut block = vec![0; LOCAL_BLOCK];
            let read = file.read(&mut block).await?;
            block.truncate(read);
            Ok((read > 0).then(|| (Bytes::from(block), file)))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::local_lines;

    #[test]
    fn local_lines_stop_before_a_partial_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        std::fs::write(&path, "one\ntwo\nthr").expect("write");
        assert_eq!(
            local_lines(&path, 0),
            (vec!["one".to_owned(), "two".to_owned()], 8)
        );
        assert_eq!(local_lines(&path, 8), (Vec::new(), 8));
        assert_eq!(local_lines(&dir.path().join("missing"), 0), (Vec::new(), 0));
    }
}
