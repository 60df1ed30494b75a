//! One sync: fetch → check out → scan and validate → switch `current` → apply →
//! status. Each step's failure ends the sync with the previous commit still live.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::Utc;

use super::checkout::{self, MissingPath};
use super::status::{
    self, ChangeCounts, CommitInfo, HISTORY, SyncAttempt, SyncProblem, SyncResult,
};
use super::transport::{Head, Transport};
use super::{GitError, GitSource};
use crate::resource::Kind;
use crate::resource::types::RunStatus;
use crate::secrets::Keyring;
use crate::source::apply::{Action, ApplyOptions, ApplyRequest, collect_objects};
use crate::source::dir::{DirScan, scan};
use crate::store::Store;
use crate::store::events::EventType;

/// What earlier syncs of this process learned.
#[derive(Debug, Default)]
pub(super) struct Memory {
    /// The commit last applied and a fingerprint of the objects it left in the store.
    applied: Option<(String, u64)>,
    /// The last commit refused as invalid (refused again without a new checkout).
    rejected: Option<String>,
}

impl GitSource {
    /// Runs one sync now (after any sync in progress) and returns what it did. The
    /// previous commit stays live unless this one is fetched, valid and applied.
    pub async fn sync(&self, store: &Store, keyring: Option<&Keyring>) -> SyncAttempt {
        let mut memory = self.inner.memory.lock().await;
        let covered = self.inner.trigger.begin();
        self.lock_status().syncing = true;
        let started_at = Utc::now();
        let clock = Instant::now();
        let mut attempt = match self.fetch().await {
            Ok(head) => self.sync_commit(&mut memory, &head, store, keyring).await,
            Err(error) => failed(None, format!("{error}")),
        };
        attempt.started_at = started_at;
        attempt.finished_at = Utc::now();
        attempt.duration_ms = clock.elapsed().as_millis() as u64;
        log_attempt(&self.manager(), &attempt);
        let snapshot = {
            let mut status = self.lock_status();
            status.syncing = false;
            status.syncs += 1;
            status.live_commit = self.inner.layout.live_commit();
            status.next_auto_sync = self
                .inner
                .config
                .auto_sync
                .and_then(|every| chrono::Duration::from_std(every).ok())
                .map(|every| Utc::now() + every);
            status.last_sync = Some(attempt.clone());
            status.clone()
        };
        if let Err(e) = status::save(&self.inner.layout.status_file(), &snapshot) {
            tracing::warn!("cannot persist the git sync status: {e}");
        }
        self.inner.trigger.finish(covered);
        attempt
    }

    /// Fetches on a blocking thread, abandoning a transfer that outlives the timeout.
    async fn fetch(&self) -> Result<Head, GitError> {
        let inner = self.inner.clone();
        inner.abort.store(false, Ordering::Relaxed);
        let task = tokio::task::spawn_blocking(move || {
            let pin_file = inner.layout.pin_file();
            let transport = Transport {
                url: &inner.url,
                auth: &inner.config.auth,
                pin_file: &pin_file,
                abort: &inner.abort,
            };
            transport.fetch(&inner.layout.repo(), &inner.config.branch)
        });
        match tokio::time::timeout(self.inner.config.fetch_timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(GitError::Fetch {
                url: self.inner.url.clean().to_owned(),
                message: format!("the fetch task failed: {join}"),
            }),
            Err(_) => {
                self.inner.abort.store(true, Ordering::Relaxed);
                Err(GitError::Fetch {
                    url: self.inner.url.clean().to_owned(),
                    message: format!(
                        "no answer within {}s; abandoned",
                        self.inner.config.fetch_timeout.as_secs()
                    ),
                })
            }
        }
    }

    async fn sync_commit(
        &self,
        memory: &mut Memory,
        head: &Head,
        store: &Store,
        keyring: Option<&Keyring>,
    ) -> SyncAttempt {
        let commit = head.commit.clone();
        let short_id = short(&commit);
        let manager = self.manager();
        let live = self.inner.layout.live_commit();
        let mut drifted = false;
        if let Some((applied, fingerprint)) = &memory.applied
            && *applied == commit
            && live.as_deref() == Some(commit.as_str())
        {
            match managed_fingerprint(store, &manager).await {
                Ok(now) if now == *fingerprint => {
                    return attempt(
                        Some(&commit),
                        SyncResult::Unchanged,
                        format!("{short_id} is live and applied"),
                    );
                }
                Ok(_) => drifted = true,
                Err(e) => return failed(Some(&commit), format!("cannot read the store: {e}")),
            }
        }
        if memory.rejected.as_deref() == Some(commit.as_str()) {
            let mut refused = self.lock_status().last_sync.clone().unwrap_or_default();
            refused.commit = Some(commit.clone());
            refused.result = SyncResult::Invalid;
            return refused;
        }

        let scanned = match self.check_out_and_scan(&commit).await {
            Ok(Ok(scanned)) => scanned,
            Ok(Err(problems)) => {
                memory.rejected = Some(commit.clone());
                self.discard_checkout(&commit);
                let mut refused = attempt(
                    Some(&commit),
                    SyncResult::Invalid,
                    format!(
                        "commit {short_id} is invalid ({} problem(s)); {} stays live",
                        problems.len(),
                        live.as_deref().map_or("nothing", short)
                    ),
                );
                refused.errors = problems;
                return refused;
            }
            Err(error) => return failed(Some(&commit), error.to_string()),
        };
        memory.rejected = None;

        let switched = live.as_deref() != Some(commit.as_str());
        if switched && let Err(e) = checkout::switch_current(&self.inner.layout, &commit) {
            return failed(Some(&commit), e.to_string());
        }
        let request = ApplyRequest {
            documents: &scanned.documents,
            options: ApplyOptions {
                manager: manager.clone(),
                prune: true,
                force: false,
                dry_run: false,
                diff: false,
            },
        };
        let outcome = match request.execute(store, keyring).await {
            Ok(outcome) => outcome,
            Err(error) => {
                memory.applied = None;
                if switched
                    && let Some(previous) = &live
                    && let Err(e) = checkout::switch_current(&self.inner.layout, previous)
                {
                    tracing::error!("cannot switch back to {previous}: {e}");
                }
                return failed(
                    Some(&commit),
                    format!(
                        "commit {short_id} was not applied: {error}; {} stays live",
                        live.as_deref().map_or("nothing", short)
                    ),
                );
            }
        };
        let fingerprint = managed_fingerprint(store, &manager).await.unwrap_or(0);
        memory.applied = Some((commit.clone(), fingerprint));
        self.record_applied(head, store, &outcome.items).await;
        let changes = ChangeCounts::of(&outcome);
        let mut applied = attempt(
            Some(&commit),
            SyncResult::Applied,
            if drifted {
                format!("re-applied {short_id}: the store had drifted from it")
            } else {
                format!("applied {short_id} {}", head.subject)
            },
        );
        applied.changes = changes;
        applied.warnings = scanned.warnings;
        applied
    }

    /// Writes the commit's tree and scans it on a blocking thread. `Ok(Err(_))` holds
    /// the validation problems of an invalid commit.
    async fn check_out_and_scan(
        &self,
        commit: &str,
    ) -> Result<Result<DirScan, Vec<SyncProblem>>, GitError> {
        let inner = self.inner.clone();
        let commit = commit.to_owned();
        let task = tokio::task::spawn_blocking(move || {
            let subdir = inner.config.path.as_deref();
            let dir = match checkout::materialize(&inner.layout, &commit, subdir)? {
                Ok(dir) => dir,
                Err(MissingPath(path)) => {
                    return Ok(Err(vec![SyncProblem {
                        file: path.clone(),
                        message: format!("is not a folder in commit {commit} (check --git-path)"),
                        text: format!(
                            "{path}: is not a folder in commit {commit} (check --git-path)"
                        ),
                        ..SyncProblem::default()
                    }]));
                }
            };
            let scanned = scan(&dir);
            let mut problems: Vec<SyncProblem> = scanned
                .errors
                .iter()
                .map(|e| SyncProblem::from_manifest(e, subdir))
                .collect();
            if problems.is_empty()
                && let Err(errors) = collect_objects(&scanned.documents)
            {
                problems.extend(
                    errors
                        .0
                        .iter()
                        .map(|e| SyncProblem::from_manifest(e, subdir)),
                );
            }
            Ok(if problems.is_empty() {
                Ok(scanned)
            } else {
                Err(problems)
            })
        });
        task.await.map_err(|join| GitError::Io {
            path: self.inner.layout.checkouts().display().to_string(),
            source: std::io::Error::other(join.to_string()),
        })?
    }

    /// Removes the checkout of a refused commit unless something still uses it.
    fn discard_checkout(&self, commit: &str) {
        let status = self.lock_status();
        if status.history.iter().any(|c| c == commit)
            || self.inner.layout.live_commit().as_deref() == Some(commit)
        {
            return;
        }
        drop(status);
        let _ = std::fs::remove_dir_all(self.inner.layout.checkout(commit));
    }

    /// History, events and garbage collection after a successful apply.
    async fn record_applied(
        &self,
        head: &Head,
        store: &Store,
        items: &[crate::source::apply::ApplyItem],
    ) {
        let history = {
            let mut status = self.lock_status();
            status.history.retain(|c| *c != head.commit);
            status.history.insert(0, head.commit.clone());
            status.history.truncate(HISTORY);
            status.last_applied = Some(CommitInfo {
                commit: head.commit.clone(),
                subject: head.subject.clone(),
                author: head.author.clone(),
                committed_at: head.time,
                applied_at: Some(Utc::now()),
            });
            status.history.clone()
        };
        let events = items
            .iter()
            .filter(|i| matches!(i.action, Action::Created | Action::Configured))
            .map(|i| {
                (
                    crate::resource::ObjectKey::new(i.kind, i.namespace.clone(), i.name.clone()),
                    EventType::Normal,
                    "Synced".to_owned(),
                    format!(
                        "{} from git commit {} ({})",
                        if i.action == Action::Created {
                            "created"
                        } else {
                            "updated"
                        },
                        short(&head.commit),
                        head.subject
                    ),
                )
            })
            .collect();
        if let Err(e) = store.record_events(events).await {
            tracing::warn!("cannot record sync events: {e}");
        }
        let mut keep: HashSet<String> = history.into_iter().collect();
        match revisions_in_use(store).await {
            Ok(in_use) => keep.extend(in_use),
            Err(e) => {
                tracing::warn!("cannot list runs, keeping every checkout for now: {e}");
                return;
            }
        }
        let removed = checkout::prune(&self.inner.layout, &keep);
        if !removed.is_empty() {
            tracing::debug!(removed = removed.len(), "old git checkouts removed");
        }
    }
}

/// Commits named by runs that have not finished: their containers may mount them. A run
/// whose status cannot be read is an error, so nothing is pruned that it might use.
async fn revisions_in_use(store: &Store) -> Result<HashSet<String>, crate::store::StoreError> {
    let mut in_use = HashSet::new();
    for run in store.list_raw(Kind::Run, None).await? {
        let status: RunStatus = run.status_as()?;
        if !status.phase.is_finished()
            && let Some(revision) = status.source_revision
        {
            in_use.insert(revision);
        }
    }
    Ok(in_use)
}

/// Identity, generation and metadata of every object the manager owns: changes when
/// anything but the status was written by someone else.
async fn managed_fingerprint(
    store: &Store,
    manager: &str,
) -> Result<u64, crate::store::StoreError> {
    let mut hasher = DefaultHasher::new();
    for object in store.list_managed_by(manager).await? {
        object.key.hash(&mut hasher);
        object.uid.hash(&mut hasher);
        object.generation.hash(&mut hasher);
        object.labels.hash(&mut hasher);
        object.annotations.hash(&mut hasher);
    }
    Ok(hasher.finish())
}

fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

fn attempt(commit: Option<&str>, result: SyncResult, message: String) -> SyncAttempt {
    SyncAttempt {
        started_at: Utc::now(),
        finished_at: Utc::now(),
        duration_ms: 0,
        commit: commit.map(str::to_owned),
        result,
        message,
        errors: Vec::new(),
        warnings: Vec::new(),
        changes: ChangeCounts::default(),
    }
}

fn failed(commit: Option<&str>, message: String) -> SyncAttempt {
    attempt(commit, SyncResult::Failed, message)
}

fn log_attempt(manager: &str, attempt: &SyncAttempt) {
    let commit = attempt.commit.as_deref().map(short).unwrap_or("-");
    match attempt.result {
        SyncResult::Unchanged => tracing::debug!(source = manager, commit, "git source unchanged"),
        SyncResult::Applied => tracing::info!(
            source = manager,
            commit,
            created = attempt.changes.created,
            configured = attempt.changes.configured,
            pruned = attempt.changes.pruned,
            ms = attempt.duration_ms,
            "{}",
            attempt.message
        ),
        SyncResult::Invalid => {
            tracing::warn!(source = manager, commit, "{}", attempt.message);
            for problem in &attempt.errors {
                tracing::warn!(source = manager, "{}", problem.text);
            }
        }
        SyncResult::Failed => tracing::error!(source = manager, commit, "{}", attempt.message),
    }
}
