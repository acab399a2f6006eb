//! A drive as a `dav-server` file system: the tree and dead properties
//! from the store, contents from the blob store.
//!
//! One [`DriveFs`] serves one request for one account on one drive.

use std::collections::{HashMap, HashSet};
use std::io::SeekFrom;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsResult, FsStream, OpenOptions,
    ReadDirMeta,
};
use drive::{BlobChunks, DeadProp, DriveTree, FileError, FileWrite, Node, PropChange};
use futures_util::FutureExt;
use http::StatusCode;
use identity::Millis;
use md5::Md5;
use sha1::Digest;

/// Entries read from the store per query while listing a folder.
const PAGE: u32 = 500;
/// Nodes remembered within one request (a listing's current pages).
const CACHE_LIMIT: usize = 2 * PAGE as usize;

pub const OC_NS: &str = "http://owncloud.org/ns";

#[derive(Clone)]
pub struct DriveFs {
    tree: DriveTree,
    /// The client's modification time for the file this request writes.
    mtime: Option<Millis>,
    /// Nodes already read in this request, by path: a listing's entries
    /// are asked about again one by one.
    seen: Arc<Mutex<HashMap<String, Node>>>,
    /// Paths found free in this request (their folder, when it exists, is
    /// in `seen`): a PUT asks about its target before it opens it.
    absent: Arc<Mutex<HashSet<String>>>,
}

impl DriveFs {
    pub fn new(tree: DriveTree, mtime: Option<Millis>) -> Self {
        Self {
            tree,
            mtime,
            seen: Arc::default(),
            absent: Arc::default(),
        }
    }

    /// Tells this request what is at `path` (as [`drive_path`](crate::drive_path)
    /// gives it), read when the drive was opened.
    pub fn seed(&self, path: &str, located: drive::Located) {
        let Ok(names) = drive::split_path(path) else {
            return;
        };
        // The form `relative` gives dav-server's paths: `/a/b`, "" for the top.
        let key: String = names.iter().flat_map(|n| ["/", n]).collect();
        self.learn(key, located);
    }

    /// Remembers what a walk to `path` found.
    fn learn(&self, path: String, located: drive::Located) {
        if let (Some(parent), Some((folder, _))) = (located.parent, path.rsplit_once('/')) {
            self.remember(folder.to_owned(), parent);
        }
        match located.node {
            Some(node) => self.remember(path, node),
            None => {
                let mut absent = self.absent.lock().unwrap_or_else(|e| e.into_inner());
                if absent.len() >= CACHE_LIMIT {
                    absent.clear();
                }
                absent.insert(path);
            }
        }
    }

    fn remember(&self, path: String, node: Node) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= CACHE_LIMIT {
            seen.clear();
        }
        seen.insert(path, node);
    }

    fn forget(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.absent.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    async fn node(&self, path: &DavPath) -> FsResult<Node> {
        let path = relative(path)?;
        if let Some(node) = self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&path) {
            return Ok(node.clone());
        }
        // Every change this request makes forgets what it knew, so a path
        // found free is still free.
        if self.absent.lock().unwrap_or_else(|e| e.into_inner()).contains(&path) {
            return Err(FsError::NotFound);
        }
        let located = self.tree.locate(&path).await.map_err(fs_error)?;
        let node = located.node.clone();
        self.learn(path, located);
        node.ok_or(FsError::NotFound)
    }

    /// Starts writing `rel`, from what this request already read about it
    /// when it can (a PUT reads its target's metadata first).
    async fn begin_write(&self, rel: &str, options: &OpenOptions) -> Result<drive::FileWrite, drive::FileError> {
        if let Some((folder, name)) = rel.rsplit_once('/') {
            let parent = self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(folder).cloned();
            let existing = if self.absent.lock().unwrap_or_else(|e| e.into_inner()).contains(rel) {
                Some(None)
            } else {
                self.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(rel)
                    .map(|n| Some(n.clone()))
            };
            if let (Some(parent), Some(existing)) = (parent, existing) {
                return self
                    .tree
                    .begin_write_in(parent, name, existing, options.size, options.create_new)
                    .await;
            }
        }
        self.tree.begin_write(rel, options.size, options.create_new).await
    }
}

/// The decoded path from the drive's top, without a trailing slash
/// ("" for the top). Names must be UTF-8.
pub fn relative(path: &DavPath) -> FsResult<String> {
    let path = std::str::from_utf8(path.as_bytes()).map_err(|_| FsError::Forbidden)?;
    Ok(path.trim_end_matches('/').to_owned())
}

pub fn fs_error(e: FileError) -> FsError {
    match e {
        FileError::NoDrive | FileError::NotFound => FsError::NotFound,
        FileError::Exists => FsError::Exists,
        // MKCOL or PUT below a file: the "parent" is missing (409).
        FileError::NotAFolder => FsError::NotFound,
        FileError::InvalidPath(_) | FileError::IsAFolder | FileError::ReadOnly => FsError::Forbidden,
        FileError::ChecksumMismatch => {
            tracing::warn!("refused an upload whose contents do not match its OC-Checksum");
            FsError::Forbidden
        }
        FileError::InsufficientStorage => FsError::InsufficientStorage,
        FileError::Incomplete | FileError::Conflict | FileError::Blob(_) | FileError::Store(_) => {
            tracing::error!(error = %e, "drive operation failed");
            FsError::GeneralFailure
        }
    }
}

fn time(ms: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[derive(Debug, Clone)]
struct Meta(Node);

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.0.size
    }

    fn modified(&self) -> FsResult<SystemTime> {
        Ok(time(self.0.modified_at))
    }

    fn created(&self) -> FsResult<SystemTime> {
        Ok(time(self.0.created_at))
    }

    fn is_dir(&self) -> bool {
        self.0.is_dir
    }

    fn etag(&self) -> Option<String> {
        if self.0.id.is_top() {
            // The top folder.
            return Some("top".into());
        }
        Some(self.0.etag.clone())
    }
}

struct Entry(Node);

impl DavDirEntry for Entry {
    fn name(&self) -> Vec<u8> {
        self.0.name.as_bytes().to_vec()
    }

    fn metadata(&self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(Meta(self.0.clone()));
        Box::pin(std::future::ready(Ok(meta)))
    }
}

/// `oc:checksums`, as ownCloud clients (and rclone) read them.
fn checksums_prop(node: &Node, do_content: bool) -> DavProp {
    let xml = do_content.then(|| {
        format!(
            "<oc:checksums xmlns:oc=\"{OC_NS}\"><oc:checksum>{}</oc:checksum></oc:checksums>",
            crate::xml::escape(&node.checksums)
        )
        .into_bytes()
    });
    DavProp {
        name: "checksums".into(),
        prefix: Some("oc".into()),
        namespace: Some(OC_NS.into()),
        xml,
    }
}

/// Whether a stored dead property passes the bounded reader: `dav-server`
/// parses what it is given with a recursive parser. It was written from a
/// checked PROPPATCH body, so only a damaged store can fail this.
pub(crate) fn stored_prop_reads(prop: &DeadProp) -> bool {
    let ok = crate::xml::check(prop.xml.as_bytes(), crate::xml::Limits::LISTING).is_ok();
    if !ok {
        tracing::warn!(name = %prop.name, "a stored property is not XML the bounded reader accepts; left out");
    }
    ok
}

fn is_checksums(prop: &DavProp) -> bool {
    prop.name == "checksums" && prop.namespace.as_deref() == Some(OC_NS)
}

impl DavFileSystem for DriveFs {
    fn open<'a>(&'a self, path: &'a DavPath, options: OpenOptions) -> FsFuture<'a, Box<dyn DavFile>> {
        async move {
            let rel = relative(path)?;
            if !options.write {
                let node = self.node(path).await?;
                if node.is_dir {
                    return Err(FsError::Forbidden);
                }
                let file: Box<dyn DavFile> = Box::new(ReadFile {
                    tree: self.tree.clone(),
                    node,
                    pos: 0,
                    reader: None,
                });
                return Ok(file);
            }
            if options.append {
                return Err(FsError::NotImplemented);
            }
            if !options.create {
                // `If-Match: *`: only over an existing file.
                self.node(path).await?;
            }
            let claimed = options.checksum.as_deref().and_then(Claim::parse);
            let write = self.begin_write(&rel, &options).await.map_err(fs_error)?;
            self.forget();
            let file: Box<dyn DavFile> = Box::new(WriteFile {
                write: Some(write),
                mtime: self.mtime,
                claimed,
                done: None,
            });
            Ok(file)
        }
        .boxed()
    }

    fn read_dir<'a>(&'a self, path: &'a DavPath, _meta: ReadDirMeta) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            let folder = self.node(path).await?;
            if !folder.is_dir {
                return Err(FsError::Forbidden);
            }
            let base = relative(path)?;
            let fs = self.clone();
            // Pages of the folder, read as the response is written: memory
            // stays flat however large the folder.
            let pages = futures_util::stream::unfold(Some(String::new()), move |after| {
                let fs = fs.clone();
                let folder = folder.clone();
                let base = base.clone();
                async move {
                    let after = after?;
                    match fs.tree.children_after(&folder, &after, PAGE).await {
                        Ok(page) => {
                            let next = (page.len() == PAGE as usize).then(|| page.last().map(|n| n.name.clone()));
                            let entries: Vec<FsResult<Box<dyn DavDirEntry>>> = page
                                .into_iter()
                                .map(|node| {
                                    fs.remember(format!("{base}/{}", node.name), node.clone());
                                    Ok(Box::new(Entry(node)) as Box<dyn DavDirEntry>)
                                })
                                .collect();
                            Some((futures_util::stream::iter(entries), next.flatten()))
                        }
                        Err(e) => Some((futures_util::stream::iter(vec![Err(fs_error(e))]), None)),
                    }
                }
            });
            let stream: FsStream<Box<dyn DavDirEntry>> = Box::pin(futures_util::StreamExt::flatten(pages));
            Ok(stream)
        }
        .boxed()
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            let meta: Box<dyn DavMetaData> = Box::new(Meta(self.node(path).await?));
            Ok(meta)
        }
        .boxed()
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let rel = relative(path)?;
            self.forget();
            self.tree.make_folder(&rel).await.map_err(fs_error)?;
            Ok(())
        }
        .boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        self.remove_file(path)
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let rel = relative(path)?;
            self.forget();
            self.tree.delete(&rel).await.map_err(fs_error)
        }
        .boxed()
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let (from, to) = (relative(from)?, relative(to)?);
            self.forget();
            self.tree.rename(&from, &to).await.map_err(fs_error)?;
            Ok(())
        }
        .boxed()
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let (from, to) = (relative(from)?, relative(to)?);
            self.forget();
            self.tree.copy_file(&from, &to).await.map_err(fs_error)?;
            Ok(())
        }
        .boxed()
    }

    /// Whether the path can hold dead properties: every node can.
    fn have_props<'a>(&'a self, path: &'a DavPath) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        async move { self.node(path).await.is_ok() }.boxed()
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        async move {
            let node = self.node(path).await?;
            let mut changes = Vec::new();
            for (is_set, prop) in &patch {
                let namespace = prop.namespace.clone().unwrap_or_default();
                let name = prop.name.clone();
                changes.push(if *is_set {
                    let xml = prop.xml.as_deref().unwrap_or_default();
                    let xml = String::from_utf8(xml.to_vec()).map_err(|_| FsError::Forbidden)?;
                    PropChange::Set(DeadProp { namespace, name, xml })
                } else {
                    PropChange::Remove { namespace, name }
                });
            }
            self.forget();
            let status = match self.tree.patch_props(&node, &changes).await {
                Ok(()) => StatusCode::OK,
                Err(FileError::InvalidPath(why)) if node.id.is_top() => {
                    tracing::info!(why, "refused a PROPPATCH");
                    StatusCode::FORBIDDEN
                }
                // Too large, too many, or over the drive's quota: RFC 4918
                // §9.2 "insufficient space to record the property".
                Err(FileError::InvalidPath(why)) => {
                    tracing::info!(why, "refused a PROPPATCH");
                    StatusCode::INSUFFICIENT_STORAGE
                }
                Err(FileError::InsufficientStorage) => StatusCode::INSUFFICIENT_STORAGE,
                Err(e) => return Err(fs_error(e)),
            };
            Ok(patch
                .into_iter()
                .map(|(_, p)| (status, DavProp { xml: None, ..p }))
                .collect())
        }
        .boxed()
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool) -> FsFuture<'a, Vec<DavProp>> {
        async move {
            let node = self.node(path).await?;
            let mut props: Vec<DavProp> = self
                .tree
                .props(&node)
                .await
                .map_err(fs_error)?
                .into_iter()
                .filter(stored_prop_reads)
                .map(|p| DavProp {
                    prefix: None,
                    namespace: (!p.namespace.is_empty()).then_some(p.namespace),
                    xml: do_content.then(|| p.xml.into_bytes()),
                    name: p.name,
                })
                .collect();
            if !node.checksums.is_empty() {
                props.push(checksums_prop(&node, do_content));
            }
            Ok(props)
        }
        .boxed()
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        async move {
            let node = self.node(path).await?;
            if is_checksums(&prop) {
                if node.checksums.is_empty() {
                    return Err(FsError::NotFound);
                }
                return checksums_prop(&node, true).xml.ok_or(FsError::NotFound);
            }
            let namespace = prop.namespace.unwrap_or_default();
            self.tree
                .props(&node)
                .await
                .map_err(fs_error)?
                .into_iter()
                .find(|p| p.namespace == namespace && p.name == prop.name)
                .filter(stored_prop_reads)
                .map(|p| p.xml.into_bytes())
                .ok_or(FsError::NotFound)
        }
        .boxed()
    }

    fn get_quota(&self) -> FsFuture<'_, (u64, Option<u64>)> {
        async move {
            let (used, quota) = self.tree.usage().await.map_err(fs_error)?;
            Ok((used, Some(quota)))
        }
        .boxed()
    }
}

/// A checksum the client announced (`OC-Checksum: SHA1:…` or `MD5:…`),
/// verified against what arrives before the file is stored. SHA-1 is
/// what the blob store computes anyway; MD5 is computed only when asked.
#[derive(Debug)]
enum Claim {
    Sha1(String),
    Md5(String, Md5),
}

impl Claim {
    fn parse(header: &str) -> Option<Self> {
        let (kind, value) = header.trim().split_once(':')?;
        let value = value.trim().to_ascii_lowercase();
        match kind.to_ascii_uppercase().as_str() {
            "SHA1" => Some(Self::Sha1(value)),
            "MD5" => Some(Self::Md5(value, Md5::new())),
            _ => None,
        }
    }
}

struct WriteFile {
    write: Option<FileWrite>,
    mtime: Option<Millis>,
    claimed: Option<Claim>,
    done: Option<Node>,
}

impl std::fmt::Debug for WriteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteFile").field("write", &self.write).finish()
    }
}

impl WriteFile {
    async fn append(&mut self, data: &[u8]) -> FsResult<()> {
        let write = self.write.as_mut().ok_or(FsError::GeneralFailure)?;
        if let Some(Claim::Md5(_, hash)) = &mut self.claimed {
            hash.update(data);
        }
        write.write(data).await.map_err(fs_error)
    }
}

impl DavFile for WriteFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta = self.done.clone().map(|n| Box::new(Meta(n)) as Box<dyn DavMetaData>);
        Box::pin(std::future::ready(meta.ok_or(FsError::NotFound)))
    }

    fn write_buf(&mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        async move {
            while buf.has_remaining() {
                let chunk = buf.chunk().to_vec();
                buf.advance(chunk.len());
                self.append(&chunk).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move { self.append(&buf).await }.boxed()
    }

    fn read_bytes(&mut self, _count: usize) -> FsFuture<'_, Bytes> {
        Box::pin(std::future::ready(Err(FsError::NotImplemented)))
    }

    fn seek(&mut self, _pos: SeekFrom) -> FsFuture<'_, u64> {
        // Partial writes (Content-Range) are not offered.
        Box::pin(std::future::ready(Err(FsError::NotImplemented)))
    }

    /// The end of the body: the file is stored now, or not at all.
    fn flush(&mut self) -> FsFuture<'_, ()> {
        async move {
            let Some(write) = self.write.take() else {
                return Ok(());
            };
            let (sha1, md5) = match self.claimed.take() {
                None => (None, None),
                Some(Claim::Sha1(sha1)) => (Some(sha1), None),
                Some(Claim::Md5(claimed, hash)) => {
                    let actual = hex::encode(hash.finalize());
                    if actual != claimed {
                        return Err(fs_error(FileError::ChecksumMismatch));
                    }
                    (None, Some(format!("MD5:{actual}")))
                }
            };
            let node = write.commit(self.mtime, sha1.as_deref(), md5).await.map_err(fs_error)?;
            self.done = Some(node);
            Ok(())
        }
        .boxed()
    }
}

struct ReadFile {
    tree: DriveTree,
    node: Node,
    pos: u64,
    reader: Option<Box<dyn BlobChunks>>,
}

impl std::fmt::Debug for ReadFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadFile")
            .field("node", &self.node.id)
            .field("pos", &self.pos)
            .finish()
    }
}

impl DavFile for ReadFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(Meta(self.node.clone()));
        Box::pin(std::future::ready(Ok(meta)))
    }

    fn write_buf(&mut self, _buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        Box::pin(std::future::ready(Err(FsError::Forbidden)))
    }

    fn write_bytes(&mut self, _buf: Bytes) -> FsFuture<'_, ()> {
        Box::pin(std::future::ready(Err(FsError::Forbidden)))
    }

    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        async move {
            if self.reader.is_none() {
                let reader = self.tree.chunks_from(&self.node, self.pos).await.map_err(fs_error)?;
                self.reader = Some(reader);
            }
            let reader = self.reader.as_mut().ok_or(FsError::GeneralFailure)?;
            let failed = |e: drive::BlobError| {
                tracing::error!(error = %e, "reading a blob failed");
                FsError::GeneralFailure
            };
            // A chunk is `count` bytes unless the file ends first.
            let chunk = reader.next_chunk(count).await.map_err(failed)?;
            self.pos += chunk.len() as u64;
            Ok(chunk)
        }
        .boxed()
    }

    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        let size = self.node.size;
        let target = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let result = match target {
            Some(n) => {
                if n != self.pos {
                    self.reader = None;
                    self.pos = n;
                }
                Ok(n)
            }
            None => Err(FsError::GeneralFailure),
        };
        Box::pin(std::future::ready(result))
    }

    fn flush(&mut self) -> FsFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}
