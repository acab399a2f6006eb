//! [`BlobStore`] on a local folder (`<data>/blobs/`).
//!
//! A blob is streamed to `tmp/<instance>/<id>`, synced, then renamed to
//! `<namespace folder>/<first two hex digits>/<id>` and its folder synced:
//! once `finish` returns, the contents survive a power cut, and a crash
//! before that leaves only a temporary file that nothing points at.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha1::{Digest, Sha1};
use tokio::io::AsyncSeekExt;

use crate::{BlobChunks, BlobError, BlobKey, BlobReader, BlobSink, BlobStore, BlobWritten, Namespace};

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
            let file = owner_only_file(&tmp_root.join(format!("{instance}.lock")))?;
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

    /// The folder of a namespace's blobs. Drives' are at the top, where
    /// all blobs were before there were namespaces, so existing data
    /// folders are read as they are; the next namespace gets a folder
    /// named after it, which no two-hex-digit folder can be.
    fn folder(&self, namespace: Namespace) -> PathBuf {
        match namespace {
            Namespace::Drive => self.root.clone(),
        }
    }

    /// A key's ids are 32 hex digits (checked when it was made): nothing
    /// else reaches the file system.
    fn path_of(&self, key: &BlobKey) -> PathBuf {
        let id = key.id();
        self.folder(key.namespace()).join(&id[..2]).join(id)
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

/// Bytes gathered before each write to the file: one hand-off to a
/// blocking thread per MiB, whatever pieces the client's body arrives in.
const WRITE_CHUNK: usize = 1024 * 1024;

/// Bytes written after which the blob's pages start going to disk in the
/// background. The system would otherwise keep a large upload in memory
/// until `finish` syncs it, and the client would wait for all of it then;
/// this way the disk works while the upload goes on, and `finish` waits
/// for the last pieces only.
const FLUSH_EVERY: u64 = 32 * 1024 * 1024;

/// The file and the running hash of a blob, owned by the thread that
/// writes its next piece.
struct Writing {
    file: std::fs::File,
    hash: Sha1,
    /// The last piece's buffer, for the next one.
    spare: Vec<u8>,
}

/// A blob being written to `tmp/<instance>/<id>`; removed if dropped
/// unfinished.
///
/// Received bytes gather in `pending`; each full piece is hashed and
/// written on a blocking thread while the next one arrives, so hashing
/// and writing run beside receiving rather than after it.
struct LocalSink {
    key: BlobKey,
    tmp: PathBuf,
    target: PathBuf,
    /// The file and hash while no piece is being written.
    idle: Option<Writing>,
    /// The piece being written; it hands the file and hash back.
    busy: Option<tokio::task::JoinHandle<std::io::Result<Writing>>>,
    /// A second handle on the file, for the background flushes.
    flush_handle: std::sync::Arc<std::fs::File>,
    /// Received bytes not yet handed to the file.
    pending: Vec<u8>,
    /// Bytes handed to the file since the last background flush began.
    unflushed: u64,
    flushing: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    size: u64,
}

fn join(e: tokio::task::JoinError) -> BlobError {
    BlobError::Io(e.to_string())
}

impl LocalSink {
    /// The file and hash, once the piece being written (if any) is done;
    /// that piece's error is the blob's.
    async fn writer(&mut self) -> Result<Writing, BlobError> {
        if let Some(busy) = self.busy.take() {
            return busy.await.map_err(join)?.map_err(io);
        }
        self.idle.take().ok_or(BlobError::Io("the blob is finished".into()))
    }

    /// Hashes and writes the pending bytes on a blocking thread, and starts
    /// a background flush when enough were written since the last one
    /// (and it is done).
    async fn write_pending(&mut self) -> Result<(), BlobError> {
        let mut writing = self.writer().await?;
        let mut piece = std::mem::replace(&mut self.pending, std::mem::take(&mut writing.spare));
        self.pending.clear();
        self.unflushed += piece.len() as u64;
        self.busy = Some(tokio::task::spawn_blocking(move || {
            use std::io::Write;
            writing.hash.update(&piece);
            writing.file.write_all(&piece)?;
            piece.clear();
            writing.spare = piece;
            Ok(writing)
        }));
        if self.unflushed >= FLUSH_EVERY && self.flushing.as_ref().is_none_or(|f| f.is_finished()) {
            self.flushed().await?;
            self.unflushed = 0;
            let handle = self.flush_handle.clone();
            self.flushing = Some(tokio::task::spawn_blocking(move || handle.sync_data()));
        }
        Ok(())
    }

    /// Waits for the background flush, if one runs; its error is the
    /// blob's.
    async fn flushed(&mut self) -> Result<(), BlobError> {
        match self.flushing.take() {
            Some(flush) => flush.await.map_err(join)?.map_err(io),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl BlobSink for LocalSink {
    async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        if self.idle.is_none() && self.busy.is_none() {
            return Err(BlobError::Io("the blob is finished".into()));
        }
        self.size += data.len() as u64;
        self.pending.extend_from_slice(data);
        if self.pending.len() >= WRITE_CHUNK {
            self.write_pending().await?;
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.size
    }

    async fn finish(mut self: Box<Self>) -> Result<BlobWritten, BlobError> {
        if !self.pending.is_empty() {
            self.write_pending().await?;
        }
        let writing = self.writer().await?;
        self.flushed().await?;
        let digest = tokio::task::spawn_blocking(move || {
            writing.file.sync_all()?;
            Ok::<_, std::io::Error>(writing.hash.finalize())
        })
        .await
        .map_err(join)?
        .map_err(io)?;
        let dir = self.target.parent().expect("a blob path has a folder").to_owned();
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        tokio::fs::rename(&self.tmp, &self.target).await.map_err(io)?;
        sync_dir(&dir).await?;
        self.tmp = PathBuf::new();
        Ok(BlobWritten {
            key: self.key.clone(),
            size: self.size,
            sha1: hex::encode(digest),
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

/// A local blob read a buffer at a time, each read on a blocking thread
/// straight into the buffer that is sent (a `tokio::fs::File` reads into
/// its own buffer and copies from there: on a 1 GiB download that copy,
/// and zeroing each buffer first, took a third of the time).
///
/// One buffer is read ahead: while the caller sends a chunk, the next is
/// already being read, so the disk (or page cache) and the socket work at
/// the same time instead of in turn.
struct LocalChunks {
    /// The file, while no read runs.
    file: Option<std::fs::File>,
    /// The read ahead, started when the last chunk was handed out, and
    /// how many bytes it asked for.
    ahead: Option<(tokio::task::JoinHandle<ReadResult>, usize)>,
    /// Bytes read but not handed out yet (a caller asked for fewer).
    left: bytes::Bytes,
    /// The file has no more bytes.
    end: bool,
}

/// A blocking read's file (given back) and bytes.
type ReadResult = (std::fs::File, std::io::Result<Vec<u8>>);

impl LocalChunks {
    fn new(file: std::fs::File) -> Self {
        Self {
            file: Some(file),
            ahead: None,
            left: bytes::Bytes::new(),
            end: false,
        }
    }

    /// Reads up to `max` bytes on a blocking thread.
    fn read(file: std::fs::File, max: usize) -> tokio::task::JoinHandle<ReadResult> {
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = Vec::with_capacity(max);
            // `read_to_end` fills the spare capacity without zeroing it.
            let read = (&file).take(max as u64).read_to_end(&mut buf).map(|_| buf);
            (file, read)
        })
    }

    /// The next piece read from the file (the read ahead, or a new read of
    /// `max` bytes). A read shorter than it asked for ends the file.
    async fn next_read(&mut self, max: usize) -> Result<bytes::Bytes, BlobError> {
        let (pending, asked) = match self.ahead.take() {
            Some(ahead) => ahead,
            None => {
                let file = self.file.take().ok_or(BlobError::Io("an earlier read failed".into()))?;
                (Self::read(file, max), max)
            }
        };
        let (file, read) = pending.await.map_err(join)?;
        let buf = read.map_err(io)?;
        self.file = Some(file);
        self.end = buf.len() < asked;
        Ok(bytes::Bytes::from(buf))
    }
}

#[async_trait]
impl BlobChunks for LocalChunks {
    async fn next_chunk(&mut self, max: usize) -> Result<bytes::Bytes, BlobError> {
        if max == 0 {
            return Ok(bytes::Bytes::new());
        }
        // Usually one piece read ahead, handed out as it is; a caller that
        // changes `max` gets pieces joined or split to its size.
        let mut chunk = bytes::BytesMut::new();
        let out = loop {
            if self.left.is_empty() && !self.end {
                self.left = self.next_read(max).await?;
            }
            let take = self.left.len().min(max - chunk.len());
            let piece = self.left.split_to(take);
            if chunk.is_empty() && (piece.len() == max || self.end && self.left.is_empty()) {
                break piece;
            }
            chunk.extend_from_slice(&piece);
            if chunk.len() == max || self.end && self.left.is_empty() {
                break chunk.freeze();
            }
        };
        if !self.end
            && self.left.is_empty()
            && self.ahead.is_none()
            && let Some(file) = self.file.take()
        {
            self.ahead = Some((Self::read(file, max), max));
        }
        Ok(out)
    }
}

/// A new file only the server's user can read, whatever the umask: a blob
/// is renamed into place from here and keeps these permissions.
fn owner_only_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn create(&self, namespace: Namespace) -> Result<Box<dyn BlobSink>, BlobError> {
        let key = BlobKey::new(namespace);
        tokio::fs::create_dir_all(&self.tmp).await.map_err(io)?;
        let tmp = self.tmp.join(key.id());
        let path = tmp.clone();
        let (file, flush_handle) = tokio::task::spawn_blocking(move || {
            let file = owner_only_file(&path)?;
            let handle = file.try_clone()?;
            Ok::<_, std::io::Error>((file, std::sync::Arc::new(handle)))
        })
        .await
        .map_err(join)?
        .map_err(io)?;
        Ok(Box::new(LocalSink {
            target: self.path_of(&key),
            key,
            tmp,
            idle: Some(Writing {
                file,
                hash: Sha1::new(),
                spare: Vec::new(),
            }),
            busy: None,
            flush_handle,
            pending: Vec::new(),
            unflushed: 0,
            flushing: None,
            size: 0,
        }))
    }

    async fn read_from(&self, key: &BlobKey, offset: u64) -> Result<BlobReader, BlobError> {
        match tokio::fs::File::open(self.path_of(key)).await {
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

    async fn chunks_from(&self, key: &BlobKey, offset: u64) -> Result<Box<dyn BlobChunks>, BlobError> {
        let path = self.path_of(key);
        let file = tokio::task::spawn_blocking(move || {
            use std::io::Seek;
            let mut file = std::fs::File::open(path)?;
            file.seek(std::io::SeekFrom::Start(offset))?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(join)?;
        match file {
            Ok(file) => Ok(Box::new(LocalChunks::new(file))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound),
            Err(e) => Err(io(e)),
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path_of(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the system's temporary one.
    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cloudkeep-test-blobs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn blobs_are_whole_or_absent() {
        let root = temp_dir();
        let blobs = LocalBlobs::new(&root);
        let mut data: &[u8] = b"hello blobs";
        let written = blobs.write(Namespace::Drive, &mut data, 1024).await.unwrap();
        assert_eq!(written.size, 11);
        assert_eq!(written.sha1, "08e1c8b925edfe4755d9346e256dfb39bed67f2f");
        let mut back = String::new();
        use tokio::io::AsyncReadExt;
        blobs
            .read(&written.key)
            .await
            .unwrap()
            .read_to_string(&mut back)
            .await
            .unwrap();
        assert_eq!(back, "hello blobs");

        // Too large: refused, and no file is left behind.
        let mut big: &[u8] = &[7u8; 5000];
        assert!(matches!(
            blobs.write(Namespace::Drive, &mut big, 4096).await,
            Err(BlobError::TooLarge)
        ));
        assert_eq!(std::fs::read_dir(&blobs.tmp).unwrap().count(), 0);

        // A process that died mid-upload left a temporary file; the next
        // process to start removes it, but never a running one's.
        let dead = root.join("tmp").join("0123456789abcdef0123456789abcdef");
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(dead.join("partial"), b"half").unwrap();
        std::fs::write(dead.with_extension("lock"), b"").unwrap();
        let mut pending = blobs.create(Namespace::Drive).await.unwrap();
        pending.write(b"in flight").await.unwrap();
        let other = LocalBlobs::new(&root);
        assert!(!dead.exists());
        assert_eq!(std::fs::read_dir(&blobs.tmp).unwrap().count(), 1);
        drop(pending);
        assert_eq!(std::fs::read_dir(&blobs.tmp).unwrap().count(), 0);
        drop(other);

        blobs.delete(&written.key).await.unwrap();
        assert!(matches!(blobs.read(&written.key).await, Err(BlobError::NotFound)));
        blobs.delete(&written.key).await.unwrap();
        assert_eq!(
            BlobKey::parse(Namespace::Drive, "../../etc/passwd"),
            Err(crate::InvalidBlobKey)
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test]
    async fn large_blobs_arrive_whole_through_the_background_flushes() {
        // Past two background flushes, in pieces that never line up with
        // the write chunks.
        let size = 2 * FLUSH_EVERY as usize + 3 * WRITE_CHUNK / 2 + 123;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let root = temp_dir();
        let blobs = LocalBlobs::new(&root);
        let mut sink = blobs.create(Namespace::Drive).await.unwrap();
        for piece in data.chunks(100_003) {
            sink.write(piece).await.unwrap();
        }
        assert_eq!(sink.written(), size as u64);
        let written = sink.finish().await.unwrap();
        assert_eq!(written.size, size as u64);
        assert_eq!(written.sha1, hex::encode(Sha1::digest(&data)));
        let mut back = Vec::new();
        use tokio::io::AsyncReadExt;
        blobs
            .read(&written.key)
            .await
            .unwrap()
            .read_to_end(&mut back)
            .await
            .unwrap();
        assert!(back == data, "the stored blob differs from what was written");
        assert_eq!(std::fs::read_dir(&blobs.tmp).unwrap().count(), 0);

        // Read a buffer at a time, from an offset, as downloads read it:
        // full chunks until the end, then the rest, then nothing; the
        // same through the reader every other store offers.
        let offset = 1_000_001;
        let chunk = 256 * 1024;
        let local = blobs.chunks_from(&written.key, offset).await.unwrap();
        let generic: Box<dyn BlobChunks> = Box::new(crate::ReaderChunks(
            blobs.read_from(&written.key, offset).await.unwrap(),
        ));
        for mut chunks in [local, generic] {
            let mut back = Vec::new();
            loop {
                let piece = chunks.next_chunk(chunk).await.unwrap();
                if piece.is_empty() {
                    break;
                }
                let left = size - offset as usize - back.len();
                assert_eq!(piece.len(), chunk.min(left));
                back.extend_from_slice(&piece);
            }
            assert!(back == data[offset as usize..], "chunks differ from the blob");
        }
        assert!(matches!(
            blobs.chunks_from(&BlobKey::new(Namespace::Drive), 0).await,
            Err(BlobError::NotFound)
        ));
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A download reads one buffer ahead; a caller that asks for other
    /// sizes from one call to the next still gets exactly the bytes asked
    /// for, in order, and an empty chunk only at the end.
    #[tokio::test]
    async fn chunks_of_changing_sizes_come_joined_or_split_in_order() {
        let size = 3 * 65_536 + 17;
        let data: Vec<u8> = (0..size).map(|i| (i * 13 % 251) as u8).collect();
        let root = temp_dir();
        let blobs = LocalBlobs::new(&root);
        let mut source: &[u8] = &data;
        let written = blobs.write(Namespace::Drive, &mut source, u64::MAX).await.unwrap();
        let mut chunks = blobs.chunks_from(&written.key, 5).await.unwrap();
        let mut back = Vec::new();
        for max in [65_536, 1_000, 100_000, 0, 7, 65_536].into_iter().cycle() {
            let piece = chunks.next_chunk(max).await.unwrap();
            let left = size - 5 - back.len();
            assert_eq!(piece.len(), max.min(left), "asked {max} with {left} left");
            if max > 0 && piece.is_empty() {
                break;
            }
            back.extend_from_slice(&piece);
        }
        assert!(back == data[5..], "chunks differ from the blob");
        assert!(
            chunks.next_chunk(10).await.unwrap().is_empty(),
            "still empty after the end"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Data folders written before blobs had keys and namespaces: a
    /// drive's blob is `<root>/<first two hex digits>/<id>`, and stays so.
    #[tokio::test]
    async fn drive_blobs_keep_the_layout_of_existing_data_folders() {
        let root = temp_dir();
        let id = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
        std::fs::create_dir_all(root.join("0a")).unwrap();
        std::fs::write(root.join("0a").join(id), b"written by an older version").unwrap();
        let blobs = LocalBlobs::new(&root);
        let key = BlobKey::parse(Namespace::Drive, id).unwrap();
        let mut back = String::new();
        use tokio::io::AsyncReadExt;
        blobs.read(&key).await.unwrap().read_to_string(&mut back).await.unwrap();
        assert_eq!(back, "written by an older version");

        let mut data: &[u8] = b"new";
        let written = blobs.write(Namespace::Drive, &mut data, 16).await.unwrap();
        let new_id = written.key.id();
        assert!(root.join(&new_id[..2]).join(new_id).is_file());
        blobs.delete(&key).await.unwrap();
        assert!(!root.join("0a").join(id).exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
