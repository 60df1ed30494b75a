//! Atomic checkouts on disk:
//!
//! ```text
//! <data-dir>/git/repo.git/            bare mirror of the branch
//! <data-dir>/git/checkouts/<sha>/     the tree of one commit (only `--git-path`, if set)
//! <data-dir>/git/current -> checkouts/<sha>    the live commit
//! ```
//!
//! A commit's tree is written into a temporary directory and renamed to its sha only
//! once complete, so a `checkouts/<sha>` that exists is whole. `current` is switched by
//! renaming a fresh symlink over it, so readers see the old or the new commit, never a
//! mix. Runs mount `current` resolved when their container is created, and keep that
//! checkout after the pointer moves on; [`prune`] therefore keeps the newest few live
//! commits and every commit an unfinished run still names.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Tree};

use super::GitError;

/// Paths under `<data-dir>/git`.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `<data_dir>/git`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("git"),
        }
    }

    /// `<data-dir>/git`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bare mirror.
    pub fn repo(&self) -> PathBuf {
        self.root.join("repo.git")
    }

    /// Where commits are checked out.
    pub fn checkouts(&self) -> PathBuf {
        self.root.join("checkouts")
    }

    /// The checkout of one commit.
    pub fn checkout(&self, commit: &str) -> PathBuf {
        self.checkouts().join(commit)
    }

    /// The symlink to the live checkout: the source root of runs.
    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }

    /// Persisted sync status.
    pub fn status_file(&self) -> PathBuf {
        self.root.join("status.json")
    }

    /// SSH host keys pinned on first use.
    pub fn pin_file(&self) -> PathBuf {
        self.root.join("known_hosts")
    }

    /// The commit `current` points to, if any.
    pub fn live_commit(&self) -> Option<String> {
        let target = std::fs::read_link(self.current()).ok()?;
        let name = target.file_name()?.to_string_lossy().into_owned();
        self.checkout(&name).is_dir().then_some(name)
    }
}

/// Why a commit cannot be checked out; reported like a validation error of the commit.
#[derive(Debug)]
pub(super) struct MissingPath(pub String);

/// Writes the tree of `commit` (below `subdir`) to `checkouts/<commit>` unless it is
/// there already, and returns the directory. `Ok(Err(_))` when `subdir` is not a
/// folder in that commit.
pub(super) fn materialize(
    layout: &Layout,
    commit: &str,
    subdir: Option<&str>,
) -> Result<Result<PathBuf, MissingPath>, GitError> {
    let target = layout.checkout(commit);
    if target.is_dir() {
        return Ok(Ok(target));
    }
    let repo = Repository::open_bare(layout.repo()).map_err(GitError::Repository)?;
    let oid = Oid::from_str(commit).map_err(GitError::Repository)?;
    let root = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(GitError::Repository)?;
    let tree = match subdir {
        None => root,
        Some(path) => match root
            .get_path(Path::new(path))
            .ok()
            .filter(|entry| entry.kind() == Some(ObjectType::Tree))
        {
            Some(entry) => repo.find_tree(entry.id()).map_err(GitError::Repository)?,
            None => return Ok(Err(MissingPath(path.to_owned()))),
        },
    };
    let checkouts = layout.checkouts();
    let io_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| GitError::Io { path, source }
    };
    std::fs::create_dir_all(&checkouts).map_err(io_error(&checkouts))?;
    let temp = checkouts.join(format!(".tmp-{commit}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    std::fs::create_dir(&temp).map_err(io_error(&temp))?;
    if let Err(e) = write_tree(&repo, &tree, &temp, 0).and_then(|()| remove_escaping_links(&temp)) {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(GitError::Io {
            path: temp.display().to_string(),
            source: e,
        });
    }
    std::fs::rename(&temp, &target).map_err(io_error(&target))?;
    Ok(Ok(target))
}

/// Deepest folder nesting written (the scan stops earlier anyway).
const MAX_TREE_DEPTH: usize = 64;

fn write_tree(repo: &Repository, tree: &Tree<'_>, dir: &Path, depth: usize) -> io::Result<()> {
    if depth > MAX_TREE_DEPTH {
        return Err(io::Error::other("the tree is nested too deeply"));
    }
    for entry in tree.iter() {
        let Some(name) = entry.name().ok().filter(|n| is_safe_name(n)) else {
            tracing::warn!(dir = %dir.display(), "skipped a tree entry with an unsafe name");
            continue;
        };
        let path = dir.join(name);
        let git_error = |e: git2::Error| io::Error::other(e.message().to_owned());
        match entry.kind() {
            Some(ObjectType::Tree) => {
                std::fs::create_dir(&path)?;
                let subtree = repo.find_tree(entry.id()).map_err(git_error)?;
                write_tree(repo, &subtree, &path, depth + 1)?;
            }
            Some(ObjectType::Blob) => {
                let blob = repo.find_blob(entry.id()).map_err(git_error)?;
                match entry.filemode() {
                    0o120000 => write_symlink(&path, blob.content())?,
                    mode => {
                        std::fs::write(&path, blob.content())?;
                        if mode == 0o100755 {
                            set_executable(&path)?;
                        }
                    }
                }
            }
            // Submodules (commits) are not fetched; their folder stays empty.
            _ => std::fs::create_dir(&path)?,
        }
    }
    Ok(())
}

/// Entry names a hostile tree could use to escape the checkout are refused.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.eq_ignore_ascii_case(".git")
}

/// Writes a symbolic link as committed; [`remove_escaping_links`] then removes those
/// that do not resolve inside the checkout.
fn write_symlink(path: &Path, target: &[u8]) -> io::Result<()> {
    let target = String::from_utf8_lossy(target).into_owned();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, path)?;
    Ok(())
}

/// Removes every symbolic link under `root` whose real target is not inside `root`
/// (absolute, climbing out, through another link, or dangling), until none is left: a
/// link that resolved inside only through a removed one dangles on the next pass.
/// The check is [`crate::resource::path::resolve_inside`], the same one runs use.
fn remove_escaping_links(root: &Path) -> io::Result<()> {
    loop {
        let mut links = Vec::new();
        collect_links(root, root, &mut links)?;
        let mut removed = 0;
        for relative in links {
            if let Err(problem) = crate::resource::path::resolve_inside(root, &relative) {
                tracing::warn!(link = %relative, "skipped a symlink that does not resolve inside the checkout: {problem}");
                std::fs::remove_file(root.join(&relative))?;
                removed += 1;
            }
        }
        if removed == 0 {
            return Ok(());
        }
    }
}

/// Paths (relative to `root`) of the symbolic links under `dir`, without following any.
fn collect_links(root: &Path, dir: &Path, links: &mut Vec<String>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_symlink() {
            if let Ok(relative) = path.strip_prefix(root) {
                links.push(relative.to_string_lossy().into_owned());
            }
        } else if kind.is_dir() {
            collect_links(root, &path, links)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_executable(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// Points `current` at `checkouts/<commit>` atomically (a new symlink renamed over it).
pub(super) fn switch_current(layout: &Layout, commit: &str) -> Result<(), GitError> {
    let current = layout.current();
    let temp = layout
        .root()
        .join(format!(".current-{commit}-{}", std::process::id()));
    let io_error = |source| GitError::Io {
        path: current.display().to_string(),
        source,
    };
    let _ = std::fs::remove_file(&temp);
    #[cfg(unix)]
    std::os::unix::fs::symlink(Path::new("checkouts").join(commit), &temp).map_err(io_error)?;
    std::fs::rename(&temp, &current).map_err(io_error)
}

/// Removes checkouts that are not in `keep` (and leftovers of interrupted writes).
/// Returns the commits removed.
pub(super) fn prune(layout: &Layout, keep: &HashSet<String>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(layout.checkouts()) else {
        return Vec::new();
    };
    let live = layout.live_commit();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.contains(&name) || live.as_deref() == Some(name.as_str()) {
            continue;
        }
        if name.starts_with(".tmp-") && !name.ends_with(&format!("-{}", std::process::id())) {
            let _ = std::fs::remove_dir_all(entry.path());
            continue;
        }
        if name.starts_with('.') {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed.push(name),
            Err(e) => {
                tracing::warn!(checkout = %entry.path().display(), "cannot remove an old checkout: {e}")
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused() {
        for name in ["", ".", "..", "a/b", ".git", ".GIT", "a\\b"] {
            assert!(!is_safe_name(name), "{name:?}");
        }
        for name in ["main.py", ".github", "..hidden", "pipeline.yaml"] {
            assert!(is_safe_name(name), "{name:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_that_leave_the_checkout_are_removed() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("checkout");
        std::fs::create_dir_all(root.join("lib")).expect("mkdir");
        std::fs::create_dir_all(root.join("team/etl")).expect("mkdir");
        std::fs::write(root.join("lib/common.py"), "x = 1\n").expect("write");
        let links = [
            // (link, target, kept)
            ("team/etl/common.py", "../../lib/common.py", true),
            ("here", ".", true),
            ("etc", "/etc", false),
            ("up", "../..", false),
            ("team/back", "..", true),
            // Lexically inside (team, back, .. = depth 1); really the checkout's parent.
            ("sneaky", "team/back/..", false),
            // Through `up`: outside, and dangling once `up` is gone.
            ("through", "up/tmp", false),
            ("dangling", "nothing-here", false),
        ];
        for (link, target, _) in links {
            symlink(target, root.join(link)).expect("link");
        }
        remove_escaping_links(&root).expect("pass");
        for (link, target, kept) in links {
            let exists = root.join(link).symlink_metadata().is_ok();
            assert_eq!(exists, kept, "{link} -> {target}");
        }
    }
}
