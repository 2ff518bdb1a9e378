//! The data directory: created readable by this user only, its SQLite files private
//! before SQLite opens them. The server keeps its log, key and lock there, the app its
//! database; both use these.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The file in the data directory that holds the event log.
pub const LOG_FILE: &str = "herald.db";

/// The file in the data directory that holds the generated JWT key.
pub const KEY_FILE: &str = "jwt.key";

/// The file in the data directory that one `herald serve` at a time holds locked (and
/// writes its process id into): a second server on the same directory would append to the
/// same log, and its updates would reach only its own streams.
pub const LOCK_FILE: &str = "herald.lock";

/// The files SQLite keeps beside a database, which hold its data too.
const SQLITE_SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Creates the data directory (and its missing parents) readable by this user only (0700,
/// whatever the umask). An existing directory that other users may enter is made 0700 too
/// when it holds nothing but Herald's own files; one that holds anything else is shared
/// with something else, and is left as it is, with a warning: its files are private
/// anyway, their names are not.
///
/// # Errors
///
/// When the directory cannot be created or inspected.
pub fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let cannot = || format!("cannot create the data directory {}", dir.display());
    match std::fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 == 0 {
                return Ok(());
            }
            let ours = std::fs::read_dir(dir)
                .with_context(cannot)?
                .all(|entry| entry.is_ok_and(|e| is_herald_file(&e.file_name())));
            let tightened = ours
                && std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).is_ok();
            if !tightened {
                tracing::warn!(
                    path = %dir.display(),
                    mode = format!("{mode:o}"),
                    "other users may enter the data directory; `chmod 700` it"
                );
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(cannot)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(cannot)
        }
        Err(error) => Err(error).with_context(cannot),
    }
}

/// Whether `name` is one of the files Herald keeps in its data directory.
fn is_herald_file(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let database = [LOG_FILE, crate::db::APP_FILE, crate::db::IMPORTED_APP_FILE]
        .into_iter()
        .any(|db| {
            name.strip_prefix(db)
                .is_some_and(|rest| rest.is_empty() || SQLITE_SIDE_FILES.contains(&rest))
        });
    database || name == KEY_FILE || name == LOCK_FILE
}

/// Makes the SQLite database at `path` readable and writable by this user only (0600,
/// whatever the umask) before SQLite opens it: it creates a missing file empty with that
/// mode (SQLite gives its `-wal`, `-shm` and `-journal` files the mode of the database),
/// and tightens the mode of an existing one and of its side files, which older versions
/// created readable by everyone.
///
/// An existing database is never opened here, only `chmod`ed: SQLite's locks are POSIX
/// locks, which belong to the process, and closing any descriptor of the file releases
/// every one of them. A process whose connections lost their shared lock looks absent to
/// other processes, and the last connection of another one to close would then checkpoint
/// and delete the WAL that this process still writes to, losing its commits.
///
/// # Errors
///
/// When a file cannot be created or its mode changed.
pub fn private_db_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let private = std::fs::Permissions::from_mode(0o600);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot create {}", path.display()));
        }
    }
    for suffix in std::iter::once("").chain(SQLITE_SIDE_FILES) {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        match std::fs::set_permissions(&file, private.clone()) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => {}
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot make {} private", file.display()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_files_are_herald_s_own() {
        for name in [
            "herald.db",
            "herald.db-wal",
            "app.db-shm",
            "app.db-journal",
            "jwt.key",
            "herald.lock",
        ] {
            assert!(is_herald_file(name.as_ref()), "{name}");
        }
        for name in [
            "herald.db-x",
            "app.dbx",
            "notes.txt",
            ".bashrc",
            "jwt.key.bak",
        ] {
            assert!(!is_herald_file(name.as_ref()), "{name}");
        }
    }

    #[test]
    fn a_shared_directory_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let shared = tempfile::tempdir().unwrap();
        std::fs::write(shared.path().join("someone-else.txt"), "").unwrap();
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        create_data_dir(shared.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(shared.path()), 0o755);
        let ours = tempfile::tempdir().unwrap();
        std::fs::write(ours.path().join(LOG_FILE), "").unwrap();
        std::fs::set_permissions(ours.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        create_data_dir(ours.path()).unwrap();
        assert_eq!(mode(ours.path()), 0o700);
    }
}
