//! What the notification controller reads before it decides: the notifiers covering a
//! pipeline, the tail of a run's stored output and its
//! resource samples. Reads only; every decision is in [`super::decide`].

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::controller::run::logs::LogLine;
use crate::resource::types::{NotifierSpec, PipelineSpec};
use crate::resource::{Kind, ObjectKey};
use crate::store::{Store, StoreError};

/// A notifier as the controller uses it.
#[derive(Clone, Debug)]
pub struct NotifierEntry {
    /// Its key.
    pub key: ObjectKey,
    /// When it was created: it hears of nothing older.
    pub created: DateTime<Utc>,
    /// Its spec.
    pub spec: NotifierSpec,
}

/// A pipeline's labels and spec (defaults when it is gone).
#[derive(Clone, Debug, Default)]
pub struct PipelineFacts {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its spec.
    pub spec: PipelineSpec,
}

/// Reads the pipeline `name` of `namespace`; defaults when it does not exist.
pub async fn pipeline(
    store: &Store,
    namespace: &str,
    name: &str,
) -> Result<PipelineFacts, StoreError> {
    let key = ObjectKey::new(Kind::Pipeline, namespace, name);
    Ok(match store.get(&key).await? {
        Some(object) => PipelineFacts {
            spec: object.spec_as().unwrap_or_default(),
            labels: object.labels,
        },
        None => PipelineFacts::default(),
    })
}

/// Every notifier of `namespace` (or of all namespaces) whose spec can be read.
pub async fn notifiers(
    store: &Store,
    namespace: Option<&str>,
) -> Result<Vec<NotifierEntry>, StoreError> {
    let objects = store.list_raw(Kind::Notifier, namespace).await?;
    Ok(objects
        .into_iter()
        .filter_map(|object| match object.spec_as::<NotifierSpec>() {
            Ok(spec) => Some(NotifierEntry {
                key: object.key,
                created: object.created_at,
                spec,
            }),
            Err(e) => {
                tracing::warn!("notifier skipped: {e}");
                None
            }
        })
        .collect())
}

/// The notifiers among `all` of `namespace` covering `pipeline`.
pub fn covering<'a>(
    all: &'a [NotifierEntry],
    namespace: &'a str,
    pipeline: &'a PipelineFacts,
) -> impl Iterator<Item = NotifierEntry> + 'a {
    all.iter()
        .filter(move |n| {
            n.key.namespace == namespace
                && n.spec
                    .covers(&n.key.name, &pipeline.labels, &pipeline.spec.notify)
        })
        .cloned()
}

/// Bytes read from the end of a log for its last lines.
const TAIL_BYTES: u64 = 64 * 1024;

/// The text of the last `count` lines of a stored attempt log (without timestamps and
/// stream names); empty when there is none.
pub fn log_tail(path: &Path, count: usize) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = length.saturating_sub(TAIL_BYTES);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line read may be the end of a longer one.
        lines.remove(0);
    }
    let from = lines.len().saturating_sub(count);
    lines[from..]
        .iter()
        .map(|line| LogLine::parse(line).map_or_else(|| (*line).to_owned(), |l| l.text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_the_text_of_the_last_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("attempt-1.log");
        let mut content = String::new();
        for i in 1..=30 {
            content.push_str(&format!(
                "2027-01-15T08:00:{i:02}.000000000Z stdout line {i}\n"
            ));
        }
        std::fs::write(&path, content).expect("log");
        let tail = log_tail(&path, 20);
        assert_eq!(tail.len(), 20);
        assert_eq!(tail[0], "line 11");
        assert_eq!(tail[19], "line 30");
        assert!(log_tail(&dir.path().join("missing.log"), 20).is_empty());
    }
}
