//! [`drive::BlobStore`] on a local folder (`<data>/blobs/`).
//!
//! A blob is streamed to `tmp/<id>`, synced, then renamed to
//! `<first two hex digits>/<id>` and its folder synced: once `write`
//! returns, the contents survive a power cut, and a crash before that
//! leaves only a temporary file that no tree row points at.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use drive::{BlobError, BlobReader, BlobStore, BlobWritten};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

pub struct LocalBlobs {
    root: PathBuf,
}

fn io(e: std::io::Error) -> BlobError {
    BlobError::Io(e.to_string())
}

impl LocalBlobs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
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

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn write(&self, data: &mut (dyn AsyncRead + Unpin + Send), limit: u64) -> Result<BlobWritten, BlobError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await.map_err(io)?;
        let tmp = tmp_dir.join(&id);
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
            let mut hash = Sha256::new();
            let mut size: u64 = 0;
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n = data.read(&mut buffer).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                if size > limit {
                    return Err(BlobError::TooLarge);
                }
                hash.update(&buffer[..n]);
                file.write_all(&buffer[..n]).await.map_err(io)?;
            }
            file.flush().await.map_err(io)?;
            file.sync_all().await.map_err(io)?;
            Ok((size, hex::encode(hash.finalize())))
        }
        .await;
        let (size, sha256) = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let target = self.path_of(&id)?;
        let dir = target.parent().expect("a blob path has a folder").to_owned();
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        tokio::fs::rename(&tmp, &target).await.map_err(io)?;
        sync_dir(&dir).await?;
        Ok(BlobWritten { id, size, sha256 })
    }

    async fn read(&self, id: &str) -> Result<BlobReader, BlobError> {
        match tokio::fs::File::open(self.path_of(id)?).await {
            Ok(file) => Ok(Box::new(file)),
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
        assert_eq!(
            written.sha256,
            "0e4ab7734cca19155d6d73d4f04defe5381f3376d6c237ea52087aab31f2ccab"
        );
        let mut back = String::new();
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
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);

        blobs.delete(&written.id).await.unwrap();
        assert!(matches!(blobs.read(&written.id).await, Err(BlobError::NotFound)));
        blobs.delete(&written.id).await.unwrap();
        assert!(matches!(blobs.read("../../etc/passwd").await, Err(BlobError::NotFound)));
    }
}
