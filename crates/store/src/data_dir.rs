//! The data folder: `cloudkeep.db` (SQLite), `blobs/` for file contents,
//! and `server.key`, the key for every HMAC and, later, for encryption at
//! rest. Created on first start with owner-only permissions.

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
