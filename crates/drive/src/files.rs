//! A drive's folders and files: paths, the quota, and writing contents so
//! that a file is either complete or absent.
//!
//! Contents go to the blob store first (streamed, synced); only then does
//! one transaction point the tree at them and charge the quota, refusing
//! when the drive would exceed it. The blob a file no longer uses is
//! deleted after that transaction.

use identity::{Account, Millis, StoreError};

use crate::blob::{BlobError, BlobReader};
use crate::{Access, Drives};

/// A folder or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub drive_id: u64,
    /// "" for the drive's top folder.
    pub parent_id: String,
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub blob_id: String,
    /// Changes whenever the contents do.
    pub etag: String,
    pub created_at: Millis,
    pub modified_at: Millis,
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
    #[error("someone changed this file at the same time; try again")]
    Conflict,
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Store(#[from] StoreError),
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

fn root(drive_id: u64) -> Node {
    Node {
        id: String::new(),
        drive_id,
        parent_id: String::new(),
        name: String::new(),
        is_dir: true,
        size: 0,
        blob_id: String::new(),
        etag: String::new(),
        created_at: 0,
        modified_at: 0,
    }
}

impl Drives {
    async fn usable(&self, account: &Account, drive_id: u64, write: bool) -> Result<crate::Drive, FileError> {
        let (drive, access) = self.access(account, drive_id).await?.ok_or(FileError::NoDrive)?;
        if write && access != Access::ReadWrite {
            return Err(FileError::ReadOnly);
        }
        Ok(drive)
    }

    /// The node at `names` (the top folder for none).
    async fn resolve(&self, drive_id: u64, names: &[&str]) -> Result<Option<Node>, FileError> {
        let mut node = root(drive_id);
        for name in names {
            if !node.is_dir {
                return Ok(None);
            }
            match self.store.child(drive_id, &node.id, name).await? {
                Some(child) => node = child,
                None => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    /// The folder that will hold the last name of `names`, and that name.
    async fn parent_of<'a>(&self, drive_id: u64, names: &[&'a str]) -> Result<(Node, &'a str), FileError> {
        let (last, parents) = names.split_last().ok_or(FileError::InvalidPath("the top folder"))?;
        let parent = self.resolve(drive_id, parents).await?.ok_or(FileError::NotFound)?;
        if !parent.is_dir {
            return Err(FileError::NotAFolder);
        }
        Ok((parent, last))
    }

    /// What is at `path`.
    pub async fn stat(&self, account: &Account, drive_id: u64, path: &str) -> Result<Node, FileError> {
        self.usable(account, drive_id, false).await?;
        self.resolve(drive_id, &split_path(path)?)
            .await?
            .ok_or(FileError::NotFound)
    }

    /// A folder's contents, by name.
    pub async fn list(&self, account: &Account, drive_id: u64, path: &str) -> Result<Vec<Node>, FileError> {
        let folder = self.stat(account, drive_id, path).await?;
        if !folder.is_dir {
            return Err(FileError::NotAFolder);
        }
        Ok(self.store.children(drive_id, &folder.id).await?)
    }

    /// Makes a folder (its parent must exist).
    pub async fn make_folder(&self, account: &Account, drive_id: u64, path: &str) -> Result<Node, FileError> {
        self.usable(account, drive_id, true).await?;
        let names = split_path(path)?;
        let (parent, name) = self.parent_of(drive_id, &names).await?;
        let now = self.identity.now();
        let node = Node {
            id: uuid_like(),
            drive_id,
            parent_id: parent.id,
            name: name.to_owned(),
            is_dir: true,
            size: 0,
            blob_id: String::new(),
            etag: format!("d{now}"),
            created_at: now,
            modified_at: now,
        };
        if !self.store.create_folder(&node).await? {
            return Err(FileError::Exists);
        }
        Ok(node)
    }

    /// Writes a file from `data` (streamed, constant memory), replacing
    /// one of the same name. With `expected_size`, refuses before reading
    /// a byte when it cannot fit.
    pub async fn put_file(
        &self,
        account: &Account,
        drive_id: u64,
        path: &str,
        data: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
        expected_size: Option<u64>,
    ) -> Result<Node, FileError> {
        let drive = self.usable(account, drive_id, true).await?;
        let names = split_path(path)?;
        let (parent, name) = self.parent_of(drive_id, &names).await?;
        let existing = self.store.child(drive_id, &parent.id, name).await?;
        if existing.as_ref().is_some_and(|n| n.is_dir) {
            return Err(FileError::IsAFolder);
        }
        let freed = existing.as_ref().map_or(0, |n| n.size);
        let room = (drive.quota_bytes + freed).saturating_sub(drive.used_bytes);
        if expected_size.is_some_and(|size| size > room) {
            return Err(FileError::InsufficientStorage);
        }
        let written = match self.blobs.write(data, room).await {
            Ok(w) => w,
            Err(BlobError::TooLarge) => return Err(FileError::InsufficientStorage),
            Err(e) => return Err(e.into()),
        };
        let now = self.identity.now();
        let node = Node {
            id: existing.as_ref().map_or_else(uuid_like, |n| n.id.clone()),
            drive_id,
            parent_id: parent.id,
            name: name.to_owned(),
            is_dir: false,
            size: written.size,
            blob_id: written.id.clone(),
            etag: written.sha256[..32].to_owned(),
            created_at: existing.as_ref().map_or(now, |n| n.created_at),
            modified_at: now,
        };
        let outcome = self.store.put_file(&node, existing.as_ref()).await;
        let error = match outcome {
            Ok(PutOutcome::Stored { replaced_blob }) => {
                if let Some(old) = replaced_blob {
                    self.blobs.delete(&old).await?;
                }
                return Ok(node);
            }
            Ok(PutOutcome::InsufficientStorage) => FileError::InsufficientStorage,
            Ok(PutOutcome::Conflict) => FileError::Conflict,
            Err(e) => FileError::Store(e),
        };
        // Nothing points at the new contents.
        self.blobs.delete(&written.id).await?;
        Err(error)
    }

    /// A file's node and contents.
    pub async fn open_file(
        &self,
        account: &Account,
        drive_id: u64,
        path: &str,
    ) -> Result<(Node, BlobReader), FileError> {
        let node = self.stat(account, drive_id, path).await?;
        if node.is_dir {
            return Err(FileError::IsAFolder);
        }
        let reader = self.blobs.read(&node.blob_id).await?;
        Ok((node, reader))
    }

    /// Deletes a file, or a folder with everything in it; frees the space.
    pub async fn delete(&self, account: &Account, drive_id: u64, path: &str) -> Result<(), FileError> {
        self.usable(account, drive_id, true).await?;
        let names = split_path(path)?;
        if names.is_empty() {
            return Err(FileError::InvalidPath("the top folder"));
        }
        let node = self.resolve(drive_id, &names).await?.ok_or(FileError::NotFound)?;
        for blob in self.store.delete_tree(&node).await? {
            self.blobs.delete(&blob).await?;
        }
        Ok(())
    }
}

fn uuid_like() -> String {
    use rand::Rng;
    format!("{:032x}", rand::thread_rng().r#gen::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        assert_eq!(split_path("/a//b/c.txt").unwrap(), ["a", "b", "c.txt"]);
        assert!(split_path("/").unwrap().is_empty());
        assert!(split_path("/a/../b").is_err());
        assert!(split_path("/a/\u{7}").is_err());
        assert!(split_path(&format!("/{}", "x".repeat(256))).is_err());
    }
}
