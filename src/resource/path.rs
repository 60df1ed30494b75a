//! Path containment: the one place that decides whether a path stays inside its source
//! root (the pipelines directory or a git checkout). Apply-time validation, the Fast-Flow
//! import, the git checkout and the run controller (right before a folder is
//! bind-mounted) all ask here.
//!
//! Two checks, for two moments:
//! - [`check_relative`] is lexical and needs no file system: absolute paths and `..`
//!   that climbs above the root are refused when a manifest is read.
//! - [`resolve_inside`] resolves every symbolic link of a path that exists and refuses a
//!   real path outside the real root. A lexical check cannot see that `etl` is a link
//!   to `/`, or that `a/b/..` leaves the root when `a/b` is a link to `..`.

use std::path::{Component, Path, PathBuf};

/// Why a path is not a usable path inside its root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is absolute or climbs out of the root lexically.
    #[error("{0}")]
    NotRelative(String),
    /// The path (or the root) does not exist or cannot be read.
    #[error("{path} cannot be read: {message}")]
    Unreadable {
        /// The path as given, joined to its root.
        path: String,
        /// What the file system said.
        message: String,
    },
    /// The path exists, but its real path (all symbolic links resolved) is outside the
    /// root.
    #[error(
        "{path} resolves to {resolved}, outside the source root {root} (a symbolic link leading out of it?)"
    )]
    OutsideRoot {
        /// The path as given, joined to its root.
        path: String,
        /// Where its symbolic links lead.
        resolved: String,
        /// The real path of the root.
        root: String,
    },
}

/// Rejects an empty path, an absolute path and any path that climbs out of its root
/// with `..`. Purely lexical: see [`resolve_inside`] for symbolic links.
pub fn check_relative(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::NotRelative("must not be empty".to_owned()));
    }
    let mut depth: i32 = 0;
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err(PathError::NotRelative(format!(
                        "{path:?} leaves the source root (path traversal); use a folder inside the pipelines directory or repository"
                    )));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::NotRelative(format!(
                    "{path:?} is absolute; use a path relative to the pipelines directory or repository root"
                )));
            }
        }
    }
    Ok(())
}

/// The real path of `root/relative` with every symbolic link resolved, refused when it
/// leaves the real path of `root`. `relative` must also pass [`check_relative`].
///
/// Returns the real path and the real root, so a caller that must name the same place
/// under another prefix (the Docker host's view of the root) can strip the root off.
pub fn resolve_inside(root: &Path, relative: &str) -> Result<Resolved, PathError> {
    check_relative(relative)?;
    let real_root = root.canonicalize().map_err(|e| PathError::Unreadable {
        path: root.display().to_string(),
        message: e.to_string(),
    })?;
    let joined = real_root.join(relative);
    let real = joined.canonicalize().map_err(|e| PathError::Unreadable {
        path: joined.display().to_string(),
        message: e.to_string(),
    })?;
    if !real.starts_with(&real_root) {
        return Err(PathError::OutsideRoot {
            path: joined.display().to_string(),
            resolved: real.display().to_string(),
            root: real_root.display().to_string(),
        });
    }
    Ok(Resolved {
        path: real,
        root: real_root,
    })
}

/// A path inside its root, both with every symbolic link resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The real path.
    pub path: PathBuf,
    /// The real path of the root it is inside.
    pub root: PathBuf,
}

impl Resolved {
    /// The path relative to its root (empty for the root itself).
    pub fn relative(&self) -> &Path {
        self.path.strip_prefix(&self.root).unwrap_or(Path::new(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn lexical_check_refuses_absolute_and_climbing_paths() {
        for ok in ["etl", "team/etl", "./etl", "a/../b", "a/b/../../c"] {
            assert_eq!(check_relative(ok), Ok(()), "{ok}");
        }
        for bad in ["", "/etc", "..", "../x", "a/../../x", "./../x"] {
            assert!(check_relative(bad).is_err(), "{bad}");
        }
    }

    /// root/
    ///   real/main.py
    ///   inner -> real            (stays inside)
    ///   up -> ..                 (the root's parent)
    ///   abs -> /                 (the host's root)
    ///   hop/back -> ..           (the root itself, via a nested link)
    struct Tree {
        _dir: tempfile::TempDir,
        root: PathBuf,
    }

    fn tree() -> Tree {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("real")).expect("mkdir");
        std::fs::create_dir_all(root.join("hop")).expect("mkdir");
        std::fs::write(root.join("real/main.py"), "print(1)\n").expect("write");
        symlink("real", root.join("inner")).expect("link");
        symlink("..", root.join("up")).expect("link");
        symlink("/", root.join("abs")).expect("link");
        symlink("..", root.join("hop/back")).expect("link");
        Tree { _dir: dir, root }
    }

    #[test]
    fn links_that_stay_inside_resolve_to_their_target() {
        let t = tree();
        let real_root = t.root.canonicalize().expect("root");
        let resolved = resolve_inside(&t.root, "inner").expect("inside");
        assert_eq!(resolved.path, real_root.join("real"));
        assert_eq!(resolved.relative(), Path::new("real"));
        // hop/back is the root itself: inside.
        let resolved = resolve_inside(&t.root, "hop/back").expect("inside");
        assert_eq!(resolved.path, real_root);
    }

    #[test]
    fn links_leading_out_of_the_root_are_refused_with_both_paths() {
        let t = tree();
        for (path, leads_to) in [
            ("up", t.root.parent().expect("parent").to_path_buf()),
            ("abs", PathBuf::from("/")),
            // Lexically inside (hop, back, .. = depth 1), really the root's parent.
            (
                "hop/back/..",
                t.root.parent().expect("parent").to_path_buf(),
            ),
        ] {
            match resolve_inside(&t.root, path) {
                Err(PathError::OutsideRoot { resolved, .. }) => {
                    assert_eq!(
                        PathBuf::from(resolved),
                        leads_to.canonicalize().expect("target"),
                        "{path}"
                    );
                }
                other => panic!("{path}: expected OutsideRoot, got {other:?}"),
            }
        }
    }

    #[test]
    fn missing_paths_are_unreadable_not_inside() {
        let t = tree();
        assert!(matches!(
            resolve_inside(&t.root, "nope"),
            Err(PathError::Unreadable { .. })
        ));
        assert!(matches!(
            resolve_inside(&t.root, "../x"),
            Err(PathError::NotRelative(_))
        ));
    }
}
