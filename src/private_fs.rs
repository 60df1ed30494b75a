//! Files and folders only the operator's user may read: the data directory, the SQLite
//! database, the admin token, run logs and samples. Run containers run as another uid
//! (`--run-user`) and see the host only through their mounts; everything Flotilla writes
//! for itself is created owner-only (files 0600, folders 0700), so even a mount that
//! reached it would show nothing readable.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of files only the owner may read and write.
pub const FILE_MODE: u32 = 0o600;
/// Mode of folders only the owner may enter.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and any missing parents as owner-only folders, and makes `dir` itself
/// owner-only if it already existed.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Writes `contents` to `path` (replacing it), readable only by the owner.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    file.write_all(contents)
}

/// Opens `path` for appending, creating it readable only by the owner.
pub fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates `path` empty and owner-only if it is missing, and makes an existing one
/// owner-only (for files other libraries then open, such as the SQLite database, whose
/// `-wal` and `-shm` files SQLite creates with the database file's mode).
pub fn touch(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
}

/// Takes the exclusive lock of `<path>.lock` (created owner-only) for as long as the
/// returned file stays open, and writes this process's id into it. Fails at once, naming
/// the holder's process id, when another process holds it.
pub fn lock_exclusively(path: &Path) -> io::Result<File> {
    use std::io::{Read, Seek};
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&lock_path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                if holder.is_empty() {
                    "another process holds its lock".to_owned()
                } else {
                    format!("process {holder} holds its lock")
                },
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").mode() & 0o777
    }

    #[test]
    fn everything_created_here_is_owner_only_even_over_an_open_umask_default() {
        let dir = tempfile::tempdir().expect("temp dir");
        let nested = dir.path().join("a/b");
        create_dir(&nested).expect("dir");
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);

        let token = nested.join("token");
        std::fs::write(&token, "old").expect("world-readable first");
        std::fs::set_permissions(&token, Permissions::from_mode(0o644)).expect("chmod");
        write(&token, b"new").expect("write");
        assert_eq!(mode(&token), 0o600);
        assert_eq!(std::fs::read(&token).expect("read"), b"new");

        let log = nested.join("log");
        append(&log)
            .expect("append")
            .write_all(b"1\n")
            .expect("line");
        assert_eq!(mode(&log), 0o600);

        let db = nested.join("db");
        std::fs::write(&db, "keep").expect("db");
        std::fs::set_permissions(&db, Permissions::from_mode(0o664)).expect("chmod");
        touch(&db).expect("touch");
        assert_eq!(mode(&db), 0o600);
        assert_eq!(std::fs::read(&db).expect("read"), b"keep");
        create_dir(dir.path()).expect("existing dir");
        assert_eq!(mode(dir.path()), 0o700);
    }

    #[test]
    fn a_held_lock_is_refused_with_its_holder_and_free_once_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("flotilla.db");
        let held = lock_exclusively(&db).expect("first lock");
        let refused = lock_exclusively(&db).expect_err("second lock");
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        assert!(
            refused
                .to_string()
                .contains(&format!("process {}", std::process::id())),
            "{refused}"
        );
        assert_eq!(mode(&dir.path().join("flotilla.db.lock")), 0o600);
        drop(held);
        lock_exclusively(&db).expect("free again");
    }
}
