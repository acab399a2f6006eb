//! File contents: written whole to a blob store before the tree points at
//! them, so a crash never leaves a visible half-written file.

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A blob safely stored (synced to disk): its id, size and SHA-1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobWritten {
    pub id: String,
    pub size: u64,
    /// Hex SHA-1 of the contents: the checksum sync clients compare
    /// (`oc:checksums`); the file's ETag derives from it.
    pub sha1: String,
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

pub type BlobReader = Box<dyn AsyncRead + Unpin + Send + Sync>;

/// Where contents live: a local folder by default, an object store later.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// A new blob to write piece by piece. Dropped without
    /// [`BlobSink::finish`], it leaves nothing behind.
    async fn create(&self) -> Result<Box<dyn BlobSink>, BlobError>;

    /// Streams `data` into a new blob, in constant memory, refusing (and
    /// discarding) it past `limit` bytes. Returns once the blob is durable.
    async fn write(&self, data: &mut (dyn AsyncRead + Unpin + Send), limit: u64) -> Result<BlobWritten, BlobError> {
        let mut sink = self.create().await?;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = data.read(&mut buffer).await.map_err(|e| BlobError::Io(e.to_string()))?;
            if n == 0 {
                break;
            }
            if sink.written() + n as u64 > limit {
                return Err(BlobError::TooLarge);
            }
            sink.write(&buffer[..n]).await?;
        }
        sink.finish().await
    }

    /// The contents from byte `offset` on.
    async fn read_from(&self, id: &str, offset: u64) -> Result<BlobReader, BlobError>;

    async fn read(&self, id: &str) -> Result<BlobReader, BlobError> {
        self.read_from(id, 0).await
    }

    /// The contents from byte `offset` on, a buffer at a time: what a
    /// download sends on as it is, without copying it again.
    async fn chunks_from(&self, id: &str, offset: u64) -> Result<Box<dyn BlobChunks>, BlobError> {
        Ok(Box::new(ReaderChunks(self.read_from(id, offset).await?)))
    }
    /// Removes a blob no file points at any more; a missing one is fine.
    async fn delete(&self, id: &str) -> Result<(), BlobError>;
}

/// A blob read a buffer at a time.
#[async_trait]
pub trait BlobChunks: Send + Sync {
    /// The next bytes, `max` of them unless the blob ends first (then
    /// fewer, and empty at the end).
    async fn next_chunk(&mut self, max: usize) -> Result<bytes::Bytes, BlobError>;
}

/// [`BlobChunks`] over any reader.
pub struct ReaderChunks(pub BlobReader);

#[async_trait]
impl BlobChunks for ReaderChunks {
    async fn next_chunk(&mut self, max: usize) -> Result<bytes::Bytes, BlobError> {
        let mut buf = bytes::BytesMut::with_capacity(max);
        let mut limited = (&mut self.0).take(max as u64);
        while buf.len() < max {
            // `read_buf` fills the spare capacity without zeroing it first.
            let n = limited
                .read_buf(&mut buf)
                .await
                .map_err(|e| BlobError::Io(e.to_string()))?;
            if n == 0 {
                break;
            }
        }
        Ok(buf.freeze())
    }
}

/// A blob being written.
#[async_trait]
pub trait BlobSink: Send + Sync {
    async fn write(&mut self, data: &[u8]) -> Result<(), BlobError>;
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// Makes the blob durable (synced) and returns it.
    async fn finish(self: Box<Self>) -> Result<BlobWritten, BlobError>;
}
