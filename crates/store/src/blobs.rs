//! [`drive::BlobStore`] on a local folder (`<data>/blobs/`).
//!
//! A blob is streamed to `tmp/<id>`, synced, then renamed to
//! `<first two hex digits>/<id>` and its folder synced: once `write`
//! returns, the contents survive a power cut, and a crash before that
//! leaves only a temporary file that no tree row points at.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use drive::{BlobError, BlobReader, BlobSink, BlobStore, BlobWritten};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

pub struct LocalBlobs {
    root: PathBuf,
    /// This process's folder for blobs being written, `tmp/<uuid>/`,
    /// claimed by an exclusive lock on `tmp/<uuid>.lock` while it runs.
    tmp: PathBuf,
    _claim: Option<std::fs::File>,
}

fn io(e: std::io::Error) -> BlobError {
    BlobError::Io(e.to_string())
}

impl LocalBlobs {
    /// Blobs under `root`. Uploads cut short by a crash leave temporary
    /// files behind; those of processes no longer running are removed
    /// here (several processes may share the folder: each claims its own
    /// temporary folder with a file lock the system drops when it dies).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let tmp_root = root.join("tmp");
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let claim = (|| {
            std::fs::create_dir_all(tmp_root.join(&instance))?;
            let file = std::fs::File::create(tmp_root.join(format!("{instance}.lock")))?;
            file.try_lock().map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(file)
        })();
        let claim = match claim {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a temporary blob folder");
                None
            }
        };
        let blobs = Self {
            tmp: tmp_root.join(&instance),
            root,
            _claim: claim,
        };
        blobs.sweep_abandoned();
        blobs
    }

    /// Removes the temporary folders of processes that are gone.
    fn sweep_abandoned(&self) {
        let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "lock") || path.with_extension("") == self.tmp {
                continue;
            }
            let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
                continue;
            };
            if file.try_lock().is_ok() {
                let folder = path.with_extension("");
                let _ = std::fs::remove_dir_all(&folder);
                let _ = std::fs::remove_file(&path);
                tracing::info!(folder = %folder.display(), "removed uploads abandoned by a stopped process");
            }
        }
    }

    /// Ids are UUIDs (hex): nothing else reaches the file system.
    fn path_of(&self, id: &str) -> Result<PathBuf, BlobError> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BlobError::NotFound);
        }
        Ok(self.root.join(&id[..2]).join(id))
    }
}

async fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    tokio::fs::File::open(dir)
        .await
        .map_err(io)?
        .sync_all()
        .await
        .map_err(io)
}

/// A blob being written to `tmp/<id>`; removed if dropped unfinished.
struct LocalSink {
    id: String,
    tmp: PathBuf,
    target: PathBuf,
    file: Option<tokio::fs::File>,
    hash: Sha1,
    size: u64,
}

#[async_trait]
impl BlobSink for LocalSink {
    async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        let file = self.file.as_mut().ok_or(BlobError::Io("the blob is finished".into()))?;
        self.hash.update(data);
        self.size += data.len() as u64;
        file.write_all(data).await.map_err(io)
    }

    fn written(&self) -> u64 {
        self.size
    }

    async fn finish(mut self: Box<Self>) -> Result<BlobWritten, BlobError> {
        let mut file = self.file.take().ok_or(BlobError::Io("the blob is finished".into()))?;
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        drop(file);
        let dir = self.target.parent().expect("a blob path has a folder").to_owned();
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        tokio::fs::rename(&self.tmp, &self.target).await.map_err(io)?;
        sync_dir(&dir).await?;
        let sha1 = hex::encode(std::mem::take(&mut self.hash).finalize());
        self.tmp = PathBuf::new();
        Ok(BlobWritten {
            id: std::mem::take(&mut self.id),
            size: self.size,
            sha1,
        })
    }
}

impl Drop for LocalSink {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn create(&self) -> Result<Box<dyn BlobSink>, BlobError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        tokio::fs::create_dir_all(&self.tmp).await.map_err(io)?;
        let tmp = self.tmp.join(&id);
        let file = tokio::fs::File::create(&tmp).await.map_err(io)?;
        Ok(Box::new(LocalSink {
            target: self.path_of(&id)?,
            id,
            tmp,
            file: Some(file),
            hash: Sha1::new(),
            size: 0,
        }))
    }

    async fn read_from(&self, id: &str, offset: u64) -> Result<BlobReader, BlobError> {
        match tokio::fs::File::open(self.path_of(id)?).await {
            Ok(mut file) => {
                if offset > 0 {
                    file.seek(std::io::SeekFrom::Start(offset)).await.map_err(io)?;
                }
                Ok(Box::new(file))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound),
            Err(e) => Err(io(e)),
        }
    }

    async fn delete(&self, id: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path_of(id)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_are_whole_or_absent() {
        let root = crate::testing::temp_dir("blobs");
        let blobs = LocalBlobs::new(&root);
        let mut data: &[u8] = b"hello blobs";
        let written = blobs.write(&mut data, 1024).await.unwrap();
        assert_eq!(written.size, 11);
        assert_eq!(written.sha1, "08e1c8b925edfe4755d9346e256dfb39bed67f2f");
        let mut back = String::new();
        use tokio::io::AsyncReadExt;
        blobs
            .read(&written.id)
            .await
            .unwrap()
            .read_to_string(&mut back)
            .await
            .unwrap();
        assert_eq!(back, "hello blobs");

        // Too large: refused, and no file is left behind.
        let mut big: &[u8] = &[7u8; 5000];
        assert!(matches!(blobs.write(&mut big, 4096).await, Err(BlobError::TooLarge)));
        assert_eq!(std::fs::read_dir(&blobs.tmp).unwrap().count(), 0);

        // A process that died mid-upload left a temporary file; the next
        // process to start removes it, but never a running one's.
        let dead = root.join("tmp").join("0123456789abcdef0123456789abcdef");
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(dead.join("partial"), b"half").unwrap();
        std::fs::write(dead.with_extension("lock"), b"").unwrap();
        let mut pending = blobs.create().await.unwrap();
        pending.write(b"in flight").await.unwrap();
        let other = LocalBlobs::new(&root);
        assert!(!dead.exists());
        assert_eq!(std::fs::read_dir(&blobs.tmp).unwrap().count(), 1);
        drop(pending);
        assert_eq!(std::fs::read_dir(&blobs.tmp).unwrap().count(), 0);
        drop(other);

        blobs.delete(&written.id).await.unwrap();
        assert!(matches!(blobs.read(&written.id).await, Err(BlobError::NotFound)));
        blobs.delete(&written.id).await.unwrap();
        assert!(matches!(blobs.read("../../etc/passwd").await, Err(BlobError::NotFound)));
    }
}
