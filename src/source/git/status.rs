//! The sync status of the git source: what is live, what the last sync did and when the
//! next automatic one is due. Kept in memory, shown by the API (`GET …/sources`) and
//! `flotilla get sources`, and persisted to `<data-dir>/git/status.json` so a restart
//! still shows why the last commit was refused.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::resource::error::ManifestError;
use crate::source::apply::{Action, ApplyOutcome};

/// Status of the git source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// Always `git`.
    pub kind: String,
    /// Repository URL, without credentials.
    pub url: String,
    /// Branch followed.
    pub branch: String,
    /// Folder of the repository that holds the manifests (`--git-path`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Field manager of the applied set: `git:<url>#<branch>`.
    pub manager: String,
    /// Commit whose checkout is live (`<data-dir>/git/current`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_commit: Option<String>,
    /// The last commit applied successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<CommitInfo>,
    /// The last sync, whatever its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<SyncAttempt>,
    /// True while a sync runs.
    pub syncing: bool,
    /// True when a sync was requested and has not started yet.
    pub sync_requested: bool,
    /// Seconds between automatic syncs; none when auto-sync is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_sync_interval_seconds: Option<u64>,
    /// When the next automatic sync is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_auto_sync: Option<DateTime<Utc>>,
    /// Syncs since the process started.
    pub syncs: u64,
    /// Commits applied, newest first (at most [`HISTORY`]); their checkouts are kept.
    #[serde(default)]
    pub history: Vec<String>,
}

/// How many applied commits are remembered (and their checkouts kept).
pub const HISTORY: usize = 5;

/// A commit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitInfo {
    /// Full commit id.
    pub commit: String,
    /// First line of its message.
    #[serde(default)]
    pub subject: String,
    /// Author name.
    #[serde(default)]
    pub author: String,
    /// Commit time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<DateTime<Utc>>,
    /// When it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<DateTime<Utc>>,
}

/// Outcome of one sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncResult {
    /// A new commit (or drift) was applied.
    Applied,
    /// The branch head is live already and the store matches it.
    #[default]
    Unchanged,
    /// The commit failed validation; the previous commit stays live.
    Invalid,
    /// Fetching or applying failed; the previous commit stays live.
    Failed,
}

/// One sync.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncAttempt {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Branch head it looked at, when the fetch got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Result.
    pub result: SyncResult,
    /// One line for humans.
    pub message: String,
    /// Validation problems, each with file and line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SyncProblem>,
    /// Non-fatal notes of the scan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Objects created, configured and pruned.
    #[serde(default)]
    pub changes: ChangeCounts,
}

/// What an apply changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeCounts {
    /// New objects.
    pub created: usize,
    /// Changed objects.
    pub configured: usize,
    /// Deleted objects.
    pub pruned: usize,
    /// Objects already as declared.
    pub unchanged: usize,
}

impl ChangeCounts {
    /// Counts the items of an apply.
    pub fn of(outcome: &ApplyOutcome) -> Self {
        let mut counts = Self::default();
        for item in &outcome.items {
            match item.action {
                Action::Created => counts.created += 1,
                Action::Configured => counts.configured += 1,
                Action::Pruned => counts.pruned += 1,
                Action::Unchanged => counts.unchanged += 1,
            }
        }
        counts
    }
}

/// A validation problem of a commit, located in the repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncProblem {
    /// File, relative to the repository root.
    pub file: String,
    /// 1-based line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 1-based column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// Field path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// `file:line:column: …`, ready to print.
    pub text: String,
}

impl SyncProblem {
    /// Converts a scan error, naming the file relative to the repository root.
    pub fn from_manifest(error: &ManifestError, subdir: Option<&str>) -> Self {
        let mut error = error.clone();
        if let Some(subdir) = subdir {
            error.file = format!("{}/{}", subdir.trim_end_matches('/'), error.file);
        }
        Self {
            text: error.to_string(),
            file: error.file,
            line: error.line,
            column: error.column,
            field: error.field,
            message: error.message,
        }
    }
}

/// Reads a persisted status; anything unreadable is treated as none.
pub fn load(path: &Path) -> Option<SyncStatus> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the status atomically (temporary file renamed over the old one).
pub fn save(path: &Path, status: &SyncStatus) -> std::io::Result<()> {
    let temp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path)
}
