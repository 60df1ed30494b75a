//! The git repository as a source (git2 only; no `git` binary at run time).
//!
//! One branch of one repository is followed. Each sync fetches the branch into a bare
//! mirror, checks a new head out into its own directory, scans it with
//! [`crate::source::dir::scan`] and validates it; only a fully valid commit is made
//! live (the `current` symlink, see [`checkout`]) and applied as one set under manager
//! `git:<url>#<branch>` with prune. An invalid commit changes nothing: the previous
//! commit stays live and the status lists the problems with file and line.
//!
//! Syncs run one at a time, at start, every auto-sync interval and on request
//! ([`GitSource::sync_now`], from the API or a push webhook); requests made during a
//! sync coalesce into one follow-up sync ([`trigger`]). Credentials only ever reach
//! libgit2 through its credential callback ([`transport`]).
//!
//! This module must not know HTTP: webhook signatures are checked in [`push`], the
//! routes live in `server::hooks`.

pub mod checkout;
pub mod known_hosts;
pub mod push;
pub mod remote;
pub mod status;
mod sync;
mod transport;
mod trigger;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use self::checkout::Layout;
use self::remote::RemoteUrl;
use self::status::SyncStatus;
use self::trigger::SyncTrigger;
use crate::resource::validate::check_relative_path;
use crate::secrets::Keyring;
use crate::source::apply::ApplyError;
use crate::store::Store;

pub use self::status::{SyncAttempt, SyncResult};
pub use self::transport::{DeployKey, GitAuth};
pub use self::trigger::SyncTicket;

/// Settings of the git source.
#[derive(Clone, Debug)]
pub struct GitConfig {
    /// Repository URL (`GIT_REPO_URL`): https, http, ssh, scp-like, git or file.
    pub url: String,
    /// Branch followed (`GIT_BRANCH`, default `main`).
    pub branch: String,
    /// Folder of the repository holding the manifests and pipeline folders
    /// (`PIPELINES_SUBDIR`); the whole repository when none.
    pub path: Option<String>,
    /// Credentials and SSH host trust.
    pub auth: GitAuth,
    /// Interval of automatic syncs (`AUTO_SYNC_INTERVAL` when `AUTO_SYNC_ENABLED`).
    pub auto_sync: Option<Duration>,
    /// Longest a fetch may take before it is abandoned.
    pub fetch_timeout: Duration,
}

impl GitConfig {
    /// A config for `url` on branch `main`, no auth, no auto-sync.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            branch: "main".into(),
            path: None,
            auth: GitAuth::default(),
            auto_sync: None,
            fetch_timeout: Duration::from_secs(300),
        }
    }
}

/// What went wrong in a sync (or in setting the source up).
#[derive(Debug, Error)]
pub enum GitError {
    /// The settings are unusable.
    #[error("invalid git source settings: {0}")]
    Config(String),
    /// The remote could not be reached or refused us.
    #[error("cannot fetch from {url}: {message}")]
    Fetch {
        /// URL without credentials.
        url: String,
        /// libgit2's message.
        message: String,
    },
    /// The remote has no such branch.
    #[error("branch {branch:?} does not exist in {url}")]
    BranchNotFound {
        /// URL without credentials.
        url: String,
        /// The configured branch.
        branch: String,
    },
    /// The local mirror is unusable.
    #[error("local git mirror: {}", .0.message())]
    Repository(git2::Error),
    /// A checkout or status file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Applying the commit's set failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl GitError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            GitError::Config(_) => "git.config.invalid",
            GitError::Fetch { .. } => "git.fetch.failed",
            GitError::BranchNotFound { .. } => "git.branch.not_found",
            GitError::Repository(_) => "git.mirror.failed",
            GitError::Io { .. } => "git.checkout.failed",
            GitError::Apply(e) => e.code(),
        }
    }
}

/// The git source; clones share one state and one sync loop.
#[derive(Clone, Debug)]
pub struct GitSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: GitConfig,
    url: RemoteUrl,
    layout: Layout,
    status: std::sync::Mutex<SyncStatus>,
    trigger: SyncTrigger,
    /// Held for the whole of a sync; holds what the last syncs learned.
    memory: tokio::sync::Mutex<sync::Memory>,
    /// Set to abandon a fetch that outlived `fetch_timeout`.
    abort: Arc<AtomicBool>,
}

impl GitSource {
    /// Checks the settings and prepares `<data_dir>/git`; nothing is fetched yet.
    pub fn new(mut config: GitConfig, data_dir: &Path) -> Result<Self, GitError> {
        let url = RemoteUrl::parse(&config.url).map_err(GitError::Config)?;
        // A password in the URL is kept in `url` alone (used like a token): the stored
        // settings, which `Debug` prints, hold the URL without it.
        config.url = url.clean().to_owned();
        let branch = config.branch.trim().to_owned();
        if branch.is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
            return Err(GitError::Config(format!(
                "{branch:?} is not a valid branch name"
            )));
        }
        config.branch = branch;
        config.path = normalize_subdir(config.path.as_deref())?;
        if config.auto_sync.is_some_and(|d| d.is_zero()) {
            return Err(GitError::Config(
                "the auto-sync interval must be longer than zero".into(),
            ));
        }
        let layout = Layout::new(data_dir);
        for dir in [layout.root().to_path_buf(), layout.checkouts()] {
            std::fs::create_dir_all(&dir).map_err(|source| GitError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let manager = format!("git:{}#{}", url.clean(), config.branch);
        let mut status = status::load(&layout.status_file())
            .filter(|s| s.manager == manager)
            .unwrap_or_default();
        status.kind = "git".into();
        status.url = url.clean().to_owned();
        status.branch = config.branch.clone();
        status.path = config.path.clone();
        status.manager = manager;
        status.live_commit = layout.live_commit();
        status.syncing = false;
        status.syncs = 0;
        status.auto_sync_interval_seconds = config.auto_sync.map(|d| d.as_secs().max(1));
        status.next_auto_sync = None;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                url,
                layout,
                status: std::sync::Mutex::new(status),
                trigger: SyncTrigger::new(),
                memory: tokio::sync::Mutex::new(sync::Memory::default()),
                abort: Arc::new(AtomicBool::new(false)),
            }),
        })
    }

    /// The field manager of the applied set: `git:<url without credentials>#<branch>`.
    pub fn manager(&self) -> String {
        self.lock_status().manager.clone()
    }

    /// The branch followed.
    pub fn branch(&self) -> &str {
        &self.inner.config.branch
    }

    /// `<data-dir>/git/current`: the source root runs mount, resolved when a container
    /// is created (its final component is then the commit id, the run's
    /// `sourceRevision`). Checkouts hold only `--git-path`, so this is the root of
    /// `spec.source.path` with or without a subdirectory.
    pub fn source_root(&self) -> PathBuf {
        self.inner.layout.current()
    }

    /// A snapshot of the sync status.
    pub fn status(&self) -> SyncStatus {
        let mut status = self.lock_status().clone();
        status.sync_requested = self.inner.trigger.pending();
        status
    }

    /// Asks for a sync as soon as possible. Requests made while a sync runs coalesce
    /// into one follow-up sync. The ticket can be waited on with [`GitSource::wait`].
    pub fn sync_now(&self) -> SyncTicket {
        self.inner.trigger.request()
    }

    /// Waits until a sync that started after the ticket's request has finished, and
    /// returns the status then.
    pub async fn wait(&self, ticket: SyncTicket) -> SyncStatus {
        self.inner.trigger.wait(ticket).await;
        self.status()
    }

    /// Syncs at start, on every request and every auto-sync interval, until `shutdown`.
    pub async fn run(
        self,
        store: Store,
        keyring: Option<Arc<Keyring>>,
        shutdown: CancellationToken,
    ) {
        let mut ticker = self.inner.config.auto_sync.map(|every| {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        let mut first = true;
        loop {
            if !first {
                let requested = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.inner.trigger.requested() => true,
                    _ = next_tick(&mut ticker) => false,
                };
                if requested && !self.inner.trigger.pending() {
                    continue; // already covered by a sync that started after the request
                }
            }
            first = false;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.sync(&store, keyring.as_deref()) => {}
            }
            if let Some(ticker) = &mut ticker {
                ticker.reset();
            }
        }
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, SyncStatus> {
        // A panic while holding the lock cannot leave the status half-written in a way
        // that matters more than losing it; keep serving it.
        self.inner
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn next_tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn normalize_subdir(path: Option<&str>) -> Result<Option<String>, GitError> {
    let Some(path) = path.map(|p| p.trim().trim_matches('/')) else {
        return Ok(None);
    };
    let path = path.trim_start_matches("./");
    if path.is_empty() || path == "." {
        return Ok(None);
    }
    check_relative_path(path)
        .map_err(|problem| GitError::Config(format!("--git-path {path:?}: {problem}")))?;
    Ok(Some(path.to_owned()))
}
