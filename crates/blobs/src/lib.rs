//! Blobs: contents stored whole before anything points at them, so a
//! crash never leaves a visible half-written file.
//!
//! A blob is named by a [`BlobKey`]: the [`Namespace`] of the service that
//! owns it and a random id, checked when the key is made, so nothing but
//! 32 hex digits ever reaches a path (or, later, an object key). Drives
//! keep file contents here today; mail and calendars will add namespaces
//! of their own. [`BlobStore`] is the seam: [`LocalBlobs`] keeps blobs in
//! a local folder; an S3-compatible store will implement the same trait.
//!
//! This crate knows nothing of drives, accounts or SQL: which blob a file
//! uses, and when one is no longer used, is the owner's business.
#![forbid(unsafe_code)]

mod local;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};

pub use local::LocalBlobs;

/// Whose blobs: each service keeps its own apart, so that a key of one can
/// never name another's blob, and a store can lay them out (and an
/// operator count them) per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// The contents of drives' files (`drive`).
    Drive,
}

/// A blob's name: its namespace and 128 random bits as 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey {
    namespace: Namespace,
    id: String,
}

/// An id that is not 32 hex digits: no blob has it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a blob id")]
pub struct InvalidBlobKey;

impl BlobKey {
    /// A new key, unique (random) in `namespace`.
    pub fn new(namespace: Namespace) -> Self {
        Self {
            namespace,
            id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// The key of `id` (as [`Self::id`] gave it) in `namespace`.
    pub fn parse(namespace: Namespace, id: &str) -> Result<Self, InvalidBlobKey> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidBlobKey);
        }
        Ok(Self {
            namespace,
            id: id.to_owned(),
        })
    }

    pub fn namespace(&self) -> Namespace {
        self.namespace
    }

    /// What the owner keeps to find the blob again (its namespace is
    /// implied by who keeps it).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A blob safely stored (synced to disk): its key, size and SHA-1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobWritten {
    pub key: BlobKey,
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
    /// A new blob in `namespace` to write piece by piece. Dropped without
    /// [`BlobSink::finish`], it leaves nothing behind.
    async fn create(&self, namespace: Namespace) -> Result<Box<dyn BlobSink>, BlobError>;

    /// Streams `data` into a new blob, in constant memory, refusing (and
    /// discarding) it past `limit` bytes. Returns once the blob is durable.
    async fn write(
        &self,
        namespace: Namespace,
        data: &mut (dyn AsyncRead + Unpin + Send),
        limit: u64,
    ) -> Result<BlobWritten, BlobError> {
        let mut sink = self.create(namespace).await?;
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
    async fn read_from(&self, key: &BlobKey, offset: u64) -> Result<BlobReader, BlobError>;

    async fn read(&self, key: &BlobKey) -> Result<BlobReader, BlobError> {
        self.read_from(key, 0).await
    }

    /// The contents from byte `offset` on, a buffer at a time: what a
    /// download sends on as it is, without copying it again.
    async fn chunks_from(&self, key: &BlobKey, offset: u64) -> Result<Box<dyn BlobChunks>, BlobError> {
        Ok(Box::new(ReaderChunks(self.read_from(key, offset).await?)))
    }

    /// Removes a blob nothing points at any more; a missing one is fine.
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError>;
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
