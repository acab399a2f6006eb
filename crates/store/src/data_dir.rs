//! The data folder: `cloudkeep.db` (SQLite), `blobs/` for file contents,
//! and `server.key`, the key for every HMAC and, later, for encryption at
//! rest. Created on first start with owner-only permissions: the folders
//! `0700`, the files in them `0600`, whatever the process's umask.

use anyhow::Context;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens the folder, creating it and its layout when absent.
    pub fn open(root: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let root = root.into();
        create_private_dir(&root)?;
        create_private_dir(&root.join("blobs"))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.root.join("cloudkeep.db").display())
    }

    /// The 32-byte server key, generated on first use. Written to a
    /// temporary file and renamed, so a crash never leaves half a key.
    pub fn server_key(&self) -> anyhow::Result<[u8; 32]> {
        let path = self.root.join("server.key");
        match fs::read(&path) {
            Ok(bytes) => bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} must hold exactly 32 bytes", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = *identity::ServerKey::generate().as_bytes();
                let tmp = self.root.join(format!("server.key.{}.tmp", std::process::id()));
                let mut file = private_file(&tmp)?;
                file.write_all(&key)?;
                file.sync_all()?;
                // Another process may have won the race; keep its key.
                if fs::hard_link(&tmp, &path).is_err() {
                    fs::remove_file(&tmp)?;
                    return self.server_key();
                }
                fs::remove_file(&tmp)?;
                Ok(key)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// Makes a SQLite database file owner-only before SQLite opens it: a new
/// one is created here, empty and `0600` (SQLite takes an empty file as a
/// new database), and one left readable by others (by an older version,
/// or copied in) is set to `0600`, with its `-wal` and `-shm` files.
/// SQLite gives the `-wal` and `-shm` files it creates the database
/// file's permissions, so they follow.
pub(crate) fn keep_database_private(db: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(db) {
            Ok(_) => {}
            // Either there already, or a folder that does not exist, which
            // SQLite reports better.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotFound
                ) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", db.display())),
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            let path = PathBuf::from(name);
            let Ok(metadata) = fs::metadata(&path) else { continue };
            if metadata.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot make {} owner-only", path.display()))?;
                tracing::info!(file = %path.display(), "made the database file owner-only (0600)");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !path.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}

fn private_file(path: &Path) -> anyhow::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn database_files_are_made_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ck-datadir-{}", uuid::Uuid::new_v4()));
        DataDir::open(&dir).unwrap();
        let db = dir.join("cloudkeep.db");
        keep_database_private(&db).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&db), 0o600);
        assert_eq!(fs::metadata(&db).unwrap().len(), 0);
        // Left readable by others: tightened, contents untouched.
        for name in ["cloudkeep.db", "cloudkeep.db-wal", "cloudkeep.db-shm"] {
            fs::write(dir.join(name), b"x").unwrap();
            fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o644)).unwrap();
        }
        keep_database_private(&db).unwrap();
        for name in ["cloudkeep.db", "cloudkeep.db-wal", "cloudkeep.db-shm"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
            assert_eq!(fs::read(dir.join(name)).unwrap(), b"x");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn creates_layout_and_keeps_the_key() {
        let dir = std::env::temp_dir().join(format!("ck-datadir-{}", uuid::Uuid::new_v4()));
        let data = DataDir::open(&dir).unwrap();
        assert!(dir.join("blobs").is_dir());
        let key = data.server_key().unwrap();
        assert_eq!(DataDir::open(&dir).unwrap().server_key().unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("server.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(dir).unwrap();
    }
}
