//! A drive's folders and files: paths, the quota, and writing contents so
//! that a file is either complete or absent.
//!
//! Contents go to the blob store first (streamed, synced); only then does
//! one transaction point the tree at them and charge the quota, refusing
//! when the drive would exceed it. The blob a file no longer uses is
//! deleted after that transaction.

use identity::{Account, Millis, StoreError};

use blobs::{BlobChunks, BlobError, BlobReader, BlobSink, Namespace, ReaderChunks};

use crate::contents::Contents;
use crate::{Access, Drive, DriveId, Drives, NodeId, access_of};

/// Files up to this size are kept in the database, written with their
/// row in one transaction: for the many small files of a sync, that is
/// one sync to disk instead of three and no file to create.
pub const INLINE_LIMIT: usize = 32 * 1024;

/// What a folder takes from the drive's quota, whatever its name: about
/// what its row, its index entries and a name of up to 255 bytes take.
/// Folders cost little, but not nothing: else a member could store
/// without limit in empty folders' names. One flat amount, so that a
/// rename changes nothing.
pub const FOLDER_BYTES: u64 = 512;

/// A folder or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// [`NodeId::top`] for the drive's top folder.
    pub id: NodeId,
    pub drive_id: DriveId,
    /// [`NodeId::top`] for the drive's top folder and what is in it.
    pub parent_id: NodeId,
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    /// Where the contents are, as [`Contents::parse`] reads it; "" for a
    /// folder.
    pub blob_id: String,
    /// Changes whenever the contents do.
    pub etag: String,
    pub created_at: Millis,
    pub modified_at: Millis,
    /// Checksums a client sent and the server verified, e.g. `SHA1:…`
    /// (space-separated); "" when none.
    pub checksums: String,
    /// Whether the node has dead properties (PROPPATCH).
    pub has_props: bool,
}

/// A folder's entry as a listing shows it (PROPFIND): a [`Node`] without
/// what only reading or changing the file needs, and without the
/// optional columns a listing did not ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    /// `top` for the drive's top folder.
    pub etag: String,
    pub modified_at: Millis,
    /// 0 unless the listing asked for it.
    pub created_at: Millis,
    /// "" unless the listing asked for them.
    pub checksums: String,
    /// The node's id when it has dead properties (to read them by).
    pub props_of: Option<NodeId>,
}

impl From<&Node> for ListEntry {
    fn from(node: &Node) -> Self {
        ListEntry {
            name: node.name.clone(),
            is_dir: node.is_dir,
            size: node.size,
            etag: if node.id.is_top() {
                "top".into()
            } else {
                node.etag.clone()
            },
            modified_at: node.modified_at,
            created_at: node.created_at,
            checksums: node.checksums.clone(),
            props_of: node.has_props.then(|| node.id.clone()),
        }
    }
}

/// The optional columns a listing reads: every byte a listing of 100,000
/// entries does not carry from the database is time saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListColumns {
    pub created_at: bool,
    pub checksums: bool,
}

/// What a store answers when asked to point a file at new contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Done; the blob the file used before, if any, is free.
    Stored { replaced_blob: Option<String> },
    /// The drive would exceed its quota; nothing changed.
    InsufficientStorage,
    /// Someone else changed the same name meanwhile; nothing changed.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("no such drive, or it is not yours")]
    NoDrive,
    #[error("no such file or folder")]
    NotFound,
    #[error("the path is not valid: {0}")]
    InvalidPath(&'static str),
    #[error("something with that name already exists")]
    Exists,
    #[error("the parent is not a folder")]
    NotAFolder,
    #[error("this is a folder")]
    IsAFolder,
    #[error("this drive only allows reading")]
    ReadOnly,
    #[error("the drive has not enough space left")]
    InsufficientStorage,
    #[error("fewer bytes arrived than announced; nothing was stored")]
    Incomplete,
    #[error("the contents do not match the checksum sent with them; nothing was stored")]
    ChecksumMismatch,
    #[error("someone changed this file at the same time; try again")]
    Conflict,
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What must be escaped to put a decoded path in a URL.
const URL_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// A decoded path (`/Año 2026/a b.txt`) as a URL path.
pub fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    push_url_path(&mut out, path);
    out
}

/// [`url_path`], appended to `out`.
pub fn push_url_path(out: &mut String, path: &str) {
    out.extend(percent_encoding::utf8_percent_encode(path, URL_PATH));
}

/// The names of a path (`/a/b/c.txt` → `a`, `b`, `c.txt`), checked.
pub fn split_path(path: &str) -> Result<Vec<&str>, FileError> {
    let mut names = Vec::new();
    for name in path.split('/').filter(|n| !n.is_empty()) {
        if name == "." || name == ".." {
            return Err(FileError::InvalidPath("'.' and '..' are not names"));
        }
        if name.len() > 255 {
            return Err(FileError::InvalidPath("a name has at most 255 bytes"));
        }
        if name.chars().any(char::is_control) {
            return Err(FileError::InvalidPath("a name has no control characters"));
        }
        names.push(name);
    }
    Ok(names)
}

fn root(drive_id: DriveId) -> Node {
    Node {
        id: NodeId::top(),
        drive_id,
        parent_id: NodeId::top(),
        name: String::new(),
        is_dir: true,
        size: 0,
        blob_id: String::new(),
        etag: String::new(),
        created_at: 0,
        modified_at: 0,
        checksums: String::new(),
        has_props: false,
    }
}

impl Drives {
    /// The tree of drive `drive_id`, once the account's access is checked.
    pub async fn tree(&self, account: &Account, drive_id: DriveId) -> Result<DriveTree, FileError> {
        Ok(self.open(account, drive_id, "").await?.tree)
    }

    /// The tree of drive `drive_id` for one request on `path`: the access
    /// check, whether any lock is live and, when the store can, what is at
    /// `path`, all in one query (this runs on every WebDAV request). A
    /// path that is no valid path is not walked; what the request does
    /// with it tells the error.
    pub async fn open(&self, account: &Account, drive_id: DriveId, path: &str) -> Result<Opened, FileError> {
        let names = split_path(path).ok();
        let found = self
            .store
            .drive_of_member(
                drive_id,
                &account.id,
                self.identity.now(),
                names.as_deref().unwrap_or(&[]),
            )
            .await?
            .ok_or(FileError::NoDrive)?;
        let access = access_of(&found.drive, &found.standing).ok_or(FileError::NoDrive)?;
        let manages = found.standing.role.manages_organization();
        let located = names
            .zip(found.walked)
            .map(|(names, walked)| located_from(drive_id, names.len(), walked));
        Ok(Opened {
            tree: DriveTree {
                drives: self.clone(),
                drive: found.drive,
                access,
                manages,
            },
            locked: found.locked,
            located,
        })
    }

    /// What is at `path`.
    pub async fn stat(&self, account: &Account, drive_id: DriveId, path: &str) -> Result<Node, FileError> {
        self.tree(account, drive_id).await?.stat(path).await
    }

    /// A folder's contents, by name.
    pub async fn list(&self, account: &Account, drive_id: DriveId, path: &str) -> Result<Vec<Node>, FileError> {
        let tree = self.tree(account, drive_id).await?;
        let folder = tree.stat(path).await?;
        if !folder.is_dir {
            return Err(FileError::NotAFolder);
        }
        Ok(self.store.children(drive_id, &folder.id).await?)
    }

    /// Makes a folder (its parent must exist).
    pub async fn make_folder(&self, account: &Account, drive_id: DriveId, path: &str) -> Result<Node, FileError> {
        self.tree(account, drive_id).await?.make_folder(path).await
    }

    /// Writes a file from `data` (streamed, constant memory), replacing
    /// one of the same name. With `expected_size`, refuses before reading
    /// a byte when it cannot fit.
    pub async fn put_file(
        &self,
        account: &Account,
        drive_id: DriveId,
        path: &str,
        data: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
        expected_size: Option<u64>,
    ) -> Result<Node, FileError> {
        use tokio::io::AsyncReadExt;
        let tree = self.tree(account, drive_id).await?;
        let mut write = tree.begin_write(path, expected_size, false).await?;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = data.read(&mut buffer).await.map_err(|e| BlobError::Io(e.to_string()))?;
            if n == 0 {
                break;
            }
            write.write(&buffer[..n]).await?;
        }
        write.commit(None, None, None).await
    }

    /// A file's node and contents.
    pub async fn open_file(
        &self,
        account: &Account,
        drive_id: DriveId,
        path: &str,
    ) -> Result<(Node, BlobReader), FileError> {
        let tree = self.tree(account, drive_id).await?;
        let node = tree.stat(path).await?;
        let reader = tree.read_from(&node, 0).await?;
        Ok((node, reader))
    }

    /// A file's node and contents, read a buffer at a time into the
    /// buffers that are sent (see [`DriveTree::chunks_from`]): what a
    /// download reads.
    pub async fn open_chunks(
        &self,
        account: &Account,
        drive_id: DriveId,
        path: &str,
    ) -> Result<(Node, Box<dyn BlobChunks>), FileError> {
        let tree = self.tree(account, drive_id).await?;
        let node = tree.stat(path).await?;
        let chunks = tree.chunks_from(&node, 0).await?;
        Ok((node, chunks))
    }

    /// Deletes a file, or a folder with everything in it; frees the space.
    pub async fn delete(&self, account: &Account, drive_id: DriveId, path: &str) -> Result<(), FileError> {
        self.tree(account, drive_id).await?.delete(path).await
    }
}

/// What [`DriveTree::locate`] found.
#[derive(Debug, Clone)]
pub struct Located {
    /// The folder that holds (or would hold) the last name; `None` for the
    /// top folder, or when the path's folders do not exist.
    pub parent: Option<Node>,
    pub node: Option<Node>,
}

/// What [`Drives::open`] found.
#[derive(Clone)]
pub struct Opened {
    pub tree: DriveTree,
    /// Whether any lock on the drive was live when it was opened: true for
    /// one request, not for a tree kept longer.
    pub locked: bool,
    /// What was at the path asked for (as [`DriveTree::locate`] tells), when
    /// the store could read it in the same query.
    pub located: Option<Located>,
}

/// What a [`DriveStore::walk`] of `depth` names found, as [`Located`]; the
/// top folder itself for no names.
fn located_from(drive_id: DriveId, depth: usize, mut found: Vec<Node>) -> Located {
    if depth == 0 {
        return Located {
            parent: None,
            node: Some(root(drive_id)),
        };
    }
    let node = if found.len() == depth { found.pop() } else { None };
    let parent = if found.len() == depth - 1 {
        found.pop().or_else(|| Some(root(drive_id)))
    } else {
        None
    };
    Located {
        parent: parent.filter(|p| p.is_dir),
        node,
    }
}

/// One drive's folders and files, for an account whose access was
/// checked when this was made.
#[derive(Clone)]
pub struct DriveTree {
    drives: Drives,
    drive: Drive,
    access: Access,
    /// Whether the account manages the drive's organization (an admin or
    /// the legal representative): they may undo what members do (remove
    /// anyone's lock, lock the whole drive).
    manages: bool,
}

impl std::fmt::Debug for DriveTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriveTree").field("drive", &self.drive.id).finish()
    }
}

impl DriveTree {
    pub fn drive(&self) -> &Drive {
        &self.drive
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// Whether the account manages the drive's organization.
    pub fn manages(&self) -> bool {
        self.manages
    }

    pub(crate) fn store(&self) -> &dyn crate::DriveStore {
        self.drives.store.as_ref()
    }

    pub(crate) fn now(&self) -> Millis {
        self.drives.identity.now()
    }

    pub(crate) fn writable(&self) -> Result<(), FileError> {
        if self.access != Access::ReadWrite {
            return Err(FileError::ReadOnly);
        }
        Ok(())
    }

    /// The drive's space: (used, quota), read afresh.
    pub async fn usage(&self) -> Result<(u64, u64), FileError> {
        let drive = self
            .drives
            .store
            .drive(self.drive.id)
            .await?
            .ok_or(FileError::NoDrive)?;
        Ok((drive.used_bytes, drive.quota_bytes))
    }

    /// The node at `names` (the top folder for none).
    async fn resolve(&self, names: &[&str]) -> Result<Option<Node>, FileError> {
        if names.is_empty() {
            return Ok(Some(root(self.drive.id)));
        }
        let mut found = self.drives.store.walk(self.drive.id, names).await?;
        Ok(if found.len() == names.len() { found.pop() } else { None })
    }

    /// The folder that will hold the last name of `path`, and that name.
    pub(crate) async fn parent_of<'a>(&self, path: &'a str) -> Result<(Node, &'a str), FileError> {
        let names = split_path(path)?;
        let (last, parents) = names.split_last().ok_or(FileError::InvalidPath("the top folder"))?;
        let parent = self.resolve(parents).await?.ok_or(FileError::NotFound)?;
        if !parent.is_dir {
            return Err(FileError::NotAFolder);
        }
        Ok((parent, last))
    }

    /// What is at `path`.
    pub async fn stat(&self, path: &str) -> Result<Node, FileError> {
        self.resolve(&split_path(path)?).await?.ok_or(FileError::NotFound)
    }

    /// What is at `path`, and the folder that holds it (or would hold it:
    /// a caller that learns the name is free can then write there without
    /// walking the path again, see [`DriveTree::begin_write_in`]).
    pub async fn locate(&self, path: &str) -> Result<Located, FileError> {
        let names = split_path(path)?;
        // One walk finds the folder and the name in it (none for the top).
        let found = if names.is_empty() {
            Vec::new()
        } else {
            self.drives.store.walk(self.drive.id, &names).await?
        };
        Ok(located_from(self.drive.id, names.len(), found))
    }

    /// Up to `limit` children of `folder` whose names sort after `after`.
    pub async fn children_after(&self, folder: &Node, after: &str, limit: u32) -> Result<Vec<Node>, FileError> {
        Ok(self
            .drives
            .store
            .children_after(self.drive.id, &folder.id, after, limit)
            .await?)
    }

    /// [`Self::children_after`] as a listing shows them, reading only the
    /// optional `columns` asked for.
    pub async fn entries_after(
        &self,
        folder: &Node,
        after: &str,
        limit: u32,
        columns: ListColumns,
    ) -> Result<Vec<ListEntry>, FileError> {
        Ok(self
            .drives
            .store
            .entries_after(self.drive.id, &folder.id, after, limit, columns)
            .await?)
    }

    /// The dead properties of a listed entry.
    pub async fn entry_props(&self, entry: &ListEntry) -> Result<Vec<crate::DeadProp>, FileError> {
        match &entry.props_of {
            Some(id) => Ok(self.drives.store.props(id).await?),
            None => Ok(Vec::new()),
        }
    }

    /// The dead properties of the entries of a page that have any, in one
    /// query, by node id.
    pub async fn page_props(
        &self,
        page: &[ListEntry],
    ) -> Result<std::collections::HashMap<NodeId, Vec<crate::DeadProp>>, FileError> {
        let ids: Vec<&NodeId> = page.iter().filter_map(|e| e.props_of.as_ref()).collect();
        let mut found: std::collections::HashMap<NodeId, Vec<crate::DeadProp>> = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(found);
        }
        for (id, prop) in self.drives.store.props_of(&ids).await? {
            found.entry(id).or_default().push(prop);
        }
        Ok(found)
    }

    /// Makes a folder (its parent must exist).
    pub async fn make_folder(&self, path: &str) -> Result<Node, FileError> {
        self.writable()?;
        let (parent, name) = self.parent_of(path).await?;
        let now = self.now();
        let node = Node {
            id: NodeId::generate(),
            drive_id: self.drive.id,
            parent_id: parent.id,
            name: name.to_owned(),
            is_dir: true,
            size: 0,
            blob_id: String::new(),
            etag: format!("d{now}"),
            created_at: now,
            modified_at: now,
            checksums: String::new(),
            has_props: false,
        };
        match self.drives.store.create_folder(&node).await? {
            PutOutcome::Stored { .. } => Ok(node),
            PutOutcome::InsufficientStorage => Err(FileError::InsufficientStorage),
            PutOutcome::Conflict => {
                // The name is taken, or the folder was deleted meanwhile:
                // then the path is missing, like any missing folder.
                self.parent_of(path).await?;
                Err(FileError::Exists)
            }
        }
    }

    /// Starts writing the file at `path` (its folder must exist): the
    /// contents go to a new blob, and [`FileWrite::commit`] points the
    /// tree at them. With `expected_size`, refuses at once when it cannot
    /// fit. With `create_new`, refuses when the name is taken.
    pub async fn begin_write(
        &self,
        path: &str,
        expected_size: Option<u64>,
        create_new: bool,
    ) -> Result<FileWrite, FileError> {
        self.writable()?;
        let names = split_path(path)?;
        let name = *names.last().ok_or(FileError::InvalidPath("the top folder"))?;
        // One walk finds the folder and the file.
        let located = self.locate(path).await?;
        let Some(parent) = located.parent else {
            // No such folder: walk again only to say why.
            self.parent_of(path).await?;
            return Err(FileError::NotFound);
        };
        self.begin_write_in(parent, name, located.node, expected_size, create_new)
            .await
    }

    /// [`DriveTree::begin_write`] for the file `name` of `parent`, whose
    /// current node (`existing`) the caller has just read: saves walking
    /// the path again. What changes meanwhile is caught by the commit,
    /// which stores only over the node it was given.
    pub async fn begin_write_in(
        &self,
        parent: Node,
        name: &str,
        existing: Option<Node>,
        expected_size: Option<u64>,
        create_new: bool,
    ) -> Result<FileWrite, FileError> {
        self.writable()?;
        if !parent.is_dir || parent.drive_id != self.drive.id {
            return Err(FileError::NotAFolder);
        }
        if split_path(name)?.len() != 1 {
            return Err(FileError::InvalidPath("one name, without '/'"));
        }
        match &existing {
            Some(n) if n.is_dir => return Err(FileError::IsAFolder),
            Some(_) if create_new => return Err(FileError::Exists),
            _ => {}
        }
        // The space known when this tree was opened; read again only when
        // it seems too small (the commit checks the quota exactly anyway).
        let freed = existing.as_ref().map_or(0, |n| n.size);
        let mut room = (self.drive.quota_bytes + freed).saturating_sub(self.drive.used_bytes);
        if expected_size.is_some_and(|size| size > room) {
            let (used, quota) = self.usage().await?;
            room = (quota + freed).saturating_sub(used);
            if expected_size.is_some_and(|size| size > room) {
                return Err(FileError::InsufficientStorage);
            }
        }
        Ok(FileWrite {
            drives: self.drives.clone(),
            parent_id: parent.id,
            name: name.to_owned(),
            drive_id: self.drive.id,
            existing,
            room,
            freed,
            expected_size,
            small: Some(Vec::new()),
            sink: None,
        })
    }

    /// A file's contents from byte `offset` on.
    pub async fn read_from(&self, node: &Node, offset: u64) -> Result<BlobReader, FileError> {
        if node.is_dir {
            return Err(FileError::IsAFolder);
        }
        match Contents::parse(&node.blob_id)? {
            Contents::Inline(id) => {
                let mut data = self.drives.store.inline_data(&id).await?.ok_or(BlobError::NotFound)?;
                data.drain(..(offset as usize).min(data.len()));
                Ok(Box::new(std::io::Cursor::new(data)))
            }
            Contents::Blob(key) => Ok(self.drives.blobs.read_from(&key, offset).await?),
        }
    }

    /// A file's contents from `offset` on, a buffer at a time (see
    /// [`blobs::BlobStore::chunks_from`]).
    pub async fn chunks_from(&self, node: &Node, offset: u64) -> Result<Box<dyn BlobChunks>, FileError> {
        if node.is_dir {
            return Err(FileError::IsAFolder);
        }
        match Contents::parse(&node.blob_id)? {
            Contents::Inline(_) => Ok(Box::new(ReaderChunks(self.read_from(node, offset).await?))),
            Contents::Blob(key) => Ok(self.drives.blobs.chunks_from(&key, offset).await?),
        }
    }

    /// Deletes a file, or a folder with everything in it; frees the space.
    pub async fn delete(&self, path: &str) -> Result<(), FileError> {
        self.writable()?;
        let names = split_path(path)?;
        if names.is_empty() {
            return Err(FileError::InvalidPath("the top folder"));
        }
        let node = self.resolve(&names).await?.ok_or(FileError::NotFound)?;
        self.free(self.drives.store.delete_tree(&node).await?).await
    }

    /// Discards the contents the store reports no node uses any more.
    pub(crate) async fn free(&self, blob_ids: Vec<String>) -> Result<(), FileError> {
        for blob_id in blob_ids {
            self.drives.discard(&Contents::parse(&blob_id)?).await?;
        }
        Ok(())
    }
}

impl Drives {
    /// Deletes contents nothing points at: a blob (inline contents go with
    /// their row, in the store's transaction).
    async fn discard(&self, contents: &Contents) -> Result<(), BlobError> {
        match contents {
            Contents::Inline(_) => Ok(()),
            Contents::Blob(key) => self.blobs.delete(key).await,
        }
    }
}

/// A file being written; see [`Drives::begin_write`]. Dropped without a
/// commit, it leaves nothing behind.
pub struct FileWrite {
    drives: Drives,
    drive_id: DriveId,
    parent_id: NodeId,
    name: String,
    existing: Option<Node>,
    room: u64,
    /// The size of the file this one replaces.
    freed: u64,
    expected_size: Option<u64>,
    /// Contents so far while they fit [`INLINE_LIMIT`].
    small: Option<Vec<u8>>,
    sink: Option<Box<dyn BlobSink>>,
}

impl std::fmt::Debug for FileWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWrite")
            .field("drive_id", &self.drive_id)
            .field("name", &self.name)
            .field("written", &self.written())
            .finish()
    }
}

impl FileWrite {
    /// Appends `data`; refuses past the space the drive has left.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), FileError> {
        if self.written() + data.len() as u64 > self.room {
            // The room known at the start may be out of date: look again.
            let drive = self
                .drives
                .store
                .drive(self.drive_id)
                .await?
                .ok_or(FileError::NoDrive)?;
            self.room = (drive.quota_bytes + self.freed).saturating_sub(drive.used_bytes);
        }
        if self.written() + data.len() as u64 > self.room {
            self.sink = None;
            self.small = None;
            return Err(FileError::InsufficientStorage);
        }
        if let Some(small) = &mut self.small {
            if small.len() + data.len() <= INLINE_LIMIT {
                small.extend_from_slice(data);
                return Ok(());
            }
            // Too large to keep in the database: on to the blob store.
            let mut sink = self.drives.blobs.create(Namespace::Drive).await?;
            sink.write(small).await?;
            self.small = None;
            self.sink = Some(sink);
        }
        let sink = self.sink.as_mut().ok_or(FileError::Conflict)?;
        Ok(sink.write(data).await?)
    }

    pub fn written(&self) -> u64 {
        match (&self.small, &self.sink) {
            (Some(small), _) => small.len() as u64,
            (None, Some(sink)) => sink.written(),
            (None, None) => 0,
        }
    }

    /// The name being written.
    pub fn existed(&self) -> bool {
        self.existing.is_some()
    }

    /// Makes the contents durable, then in one transaction points the tree
    /// at them and charges the quota. Refuses a body shorter than the size
    /// announced, or whose SHA-1 is not `expected_sha1` when given.
    /// `modified_at` is the client's modification time, when it keeps one
    /// (rclone's `X-OC-Mtime`); `more_checksums` are others the caller
    /// verified (`MD5:…`), stored beside the SHA-1.
    pub async fn commit(
        mut self,
        modified_at: Option<Millis>,
        expected_sha1: Option<&str>,
        more_checksums: Option<String>,
    ) -> Result<Node, FileError> {
        if self.expected_size.is_some_and(|size| size != self.written()) {
            return Err(FileError::Incomplete);
        }
        let small = self.small.take();
        let (contents, size, sha1) = match (&small, self.sink.take()) {
            (Some(small), _) => {
                use sha1::Digest;
                let sha1 = hex::encode(sha1::Sha1::digest(small));
                (Contents::new_inline(), small.len() as u64, sha1)
            }
            (None, Some(sink)) => {
                let written = sink.finish().await?;
                (Contents::Blob(written.key), written.size, written.sha1)
            }
            (None, None) => return Err(FileError::Conflict),
        };
        if expected_sha1.is_some_and(|expected| !expected.eq_ignore_ascii_case(&sha1)) {
            self.drives.discard(&contents).await?;
            return Err(FileError::ChecksumMismatch);
        }
        let mut checksums = format!("SHA1:{sha1}");
        if let Some(more) = more_checksums {
            checksums.push(' ');
            checksums.push_str(&more);
        }
        let drives = &self.drives;
        let now = drives.identity.now();
        let existing = self.existing.as_ref();
        let node = Node {
            id: existing.map_or_else(NodeId::generate, |n| n.id.clone()),
            drive_id: self.drive_id,
            parent_id: std::mem::take(&mut self.parent_id),
            name: std::mem::take(&mut self.name),
            is_dir: false,
            size,
            blob_id: contents.blob_id().to_owned(),
            etag: sha1[..32].to_owned(),
            created_at: existing.map_or(now, |n| n.created_at),
            modified_at: modified_at.unwrap_or(now),
            checksums,
            has_props: existing.is_some_and(|n| n.has_props),
        };
        let error = match drives.store.put_file(&node, existing, small.as_deref()).await {
            Ok(PutOutcome::Stored { replaced_blob }) => {
                if let Some(old) = replaced_blob {
                    drives.discard(&Contents::parse(&old)?).await?;
                }
                return Ok(node);
            }
            Ok(PutOutcome::InsufficientStorage) => FileError::InsufficientStorage,
            Ok(PutOutcome::Conflict) => FileError::Conflict,
            Err(e) => FileError::Store(e),
        };
        // Nothing points at the new contents.
        drives.discard(&contents).await?;
        Err(error)
    }
}

/// A new node's id, or a small file's contents' (after its `i`): 32 hex
/// digits, a UUIDv7, so ids made one after another sort one after
/// another. Each index on them then takes new rows at its end instead of
/// at random places: a batch of small files dirties (and the commit
/// writes and syncs) a page or two of each index instead of one page per
/// file, on SQLite and PostgreSQL alike. The 74 random bits keep ids
/// unguessable and distinct across processes; an id reveals only when
/// its node was made, which the node's creation date tells anyway.
pub(crate) fn uuid_like() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_one_after_another_sort_one_after_another() {
        let ids: Vec<String> = (0..1000).map(|_| uuid_like()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(
            ids.iter()
                .all(|id| id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        );
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(split_path("/a//b/c.txt").unwrap(), ["a", "b", "c.txt"]);
        assert!(split_path("/").unwrap().is_empty());
        assert!(split_path("/a/../b").is_err());
        assert!(split_path("/a/\u{7}").is_err());
        assert!(split_path(&format!("/{}", "x".repeat(256))).is_err());
    }
}
