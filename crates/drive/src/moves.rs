//! Renaming, moving and copying within a drive, and what WebDAV clients
//! keep on a node besides its contents: dead properties and times.

use identity::Millis;

use crate::NodeId;
use crate::files::{DriveTree, FileError, Node, PutOutcome, split_path};

/// A property a client set with PROPPATCH, kept as the XML it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadProp {
    pub namespace: String,
    pub name: String,
    /// The whole element, e.g. `<Z:Author xmlns:Z="urn:x">Ana</Z:Author>`.
    pub xml: String,
}

/// One instruction of a PROPPATCH; they apply in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropChange {
    Set(DeadProp),
    Remove { namespace: String, name: String },
}

/// Largest dead property a client may store, and most per node.
pub const MAX_PROP_BYTES: usize = 64 * 1024;
pub const MAX_PROPS_PER_NODE: usize = 100;

impl DeadProp {
    /// What the property takes from the drive's quota: every byte stored
    /// for it (namespace, name and element), so a member cannot keep data
    /// in properties beside the quota.
    pub fn charged_bytes(&self) -> u64 {
        prop_bytes(&self.namespace, &self.name, &self.xml)
    }
}

/// [`DeadProp::charged_bytes`] of a property as stored.
pub fn prop_bytes(namespace: &str, name: &str, xml: &str) -> u64 {
    (namespace.len() + name.len() + xml.len()) as u64
}

impl DriveTree {
    /// Moves (or renames) what is at `from` to `to`, whose name must be
    /// free and whose folder must exist.
    pub async fn rename(&self, from: &str, to: &str) -> Result<Node, FileError> {
        self.writable()?;
        let from_names = split_path(from)?;
        let to_names = split_path(to)?;
        if from_names.is_empty() || to_names.is_empty() {
            return Err(FileError::InvalidPath("the top folder"));
        }
        if to_names.starts_with(&from_names) {
            return Err(FileError::InvalidPath("a folder cannot move into itself"));
        }
        let node = self.stat(from).await?;
        let (parent, name) = self.parent_of(to).await?;
        if !self.store().move_node(&node, &parent.id, name).await? {
            // The name is taken, or the node or the folder it goes to
            // was deleted meanwhile: then that is missing.
            self.stat(from).await?;
            self.parent_of(to).await?;
            return Err(FileError::Exists);
        }
        Ok(Node {
            parent_id: parent.id,
            name: name.to_owned(),
            ..node
        })
    }

    /// Copies the file at `from` to `to` (whose name must be free): the
    /// copy shares the contents, is charged to the quota, and keeps the
    /// dead properties.
    pub async fn copy_file(&self, from: &str, to: &str) -> Result<Node, FileError> {
        self.writable()?;
        let source = self.stat(from).await?;
        if source.is_dir {
            return Err(FileError::IsAFolder);
        }
        let (parent, name) = self.parent_of(to).await?;
        let now = self.now();
        let copy = Node {
            id: NodeId::generate(),
            parent_id: parent.id,
            name: name.to_owned(),
            created_at: now,
            modified_at: source.modified_at,
            ..source.clone()
        };
        match self.store().copy_file(&source, &copy).await? {
            PutOutcome::Stored { .. } => Ok(copy),
            PutOutcome::InsufficientStorage => Err(FileError::InsufficientStorage),
            PutOutcome::Conflict => {
                // The name is taken, or the folder was deleted meanwhile.
                self.parent_of(to).await?;
                Err(FileError::Exists)
            }
        }
    }

    /// Sets a node's modification time (clients that keep their own).
    pub async fn set_modified(&self, node: &Node, modified_at: Millis) -> Result<(), FileError> {
        self.writable()?;
        Ok(self.store().set_modified(&node.id, modified_at).await?)
    }

    pub async fn props(&self, node: &Node) -> Result<Vec<DeadProp>, FileError> {
        if !node.has_props {
            return Ok(Vec::new());
        }
        Ok(self.store().props(&node.id).await?)
    }

    /// Sets and removes dead properties in order, all or nothing; their
    /// size is charged to the drive's quota (given back when removed).
    pub async fn patch_props(&self, node: &Node, changes: &[PropChange]) -> Result<(), FileError> {
        self.writable()?;
        if node.id.is_top() {
            // The top folder is no row of its own, so its properties would
            // belong to no drive in particular.
            return Err(FileError::InvalidPath("the top folder keeps no properties"));
        }
        let set = changes.iter().filter(|c| matches!(c, PropChange::Set(_))).count();
        if changes
            .iter()
            .any(|c| matches!(c, PropChange::Set(p) if p.xml.len() > MAX_PROP_BYTES))
        {
            return Err(FileError::InvalidPath("a property is larger than 64 KiB"));
        }
        if set > 0 && self.props(node).await?.len() + set > MAX_PROPS_PER_NODE {
            return Err(FileError::InvalidPath("a file has at most 100 properties"));
        }
        if !self.store().patch_props(node, changes).await? {
            return Err(FileError::InsufficientStorage);
        }
        Ok(())
    }
}
