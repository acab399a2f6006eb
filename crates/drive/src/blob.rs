//! File contents: written whole to a blob store before the tree points at
//! them, so a crash never leaves a visible half-written file.

use async_trait::async_trait;
use tokio::io::AsyncRead;

/// A blob safely stored (synced to disk): its id, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobWritten {
    pub id: String,
    pub size: u64,
    /// Hex SHA-256 of the contents; the file's ETag derives from it.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// More bytes arrived than allowed; nothing was kept.
    #[error("the contents are larger than the space left")]
    TooLarge,
    #[error("no such blob")]
    NotFound,
    #[error("blob storage error: {0}")]
    Io(String),
}

pub type BlobReader = Box<dyn AsyncRead + Unpin + Send>;

/// Where contents live: a local folder by default, an object store later.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Streams `data` into a new blob, in constant memory, refusing (and
    /// discarding) it past `limit` bytes. Returns once the blob is durable.
    async fn write(&self, data: &mut (dyn AsyncRead + Unpin + Send), limit: u64) -> Result<BlobWritten, BlobError>;
    async fn read(&self, id: &str) -> Result<BlobReader, BlobError>;
    /// Removes a blob no file points at any more; a missing one is fine.
    async fn delete(&self, id: &str) -> Result<(), BlobError>;
}
