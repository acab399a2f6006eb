//! Drives: the shared folders of an organization that members reach over
//! WebDAV. This crate owns what a drive is (a numeric id, a name, a quota,
//! its organization), who may use it, and the file tree with its rules
//! (quotas, locks, properties, imports). The WebDAV protocol is the `dav`
//! crate's; file contents are kept in a blob store.
//!
//! It must not touch SQL or HTTP: persistence comes in through
//! [`DriveStore`], people and organizations through [`identity::Identity`].
#![forbid(unsafe_code)]

mod contents;
mod files;
mod id;
mod imports;
mod locks;
mod moves;
mod sharing;

/// The blob types this crate's own interface takes and gives.
pub use blobs::{BlobChunks, BlobError, BlobReader, BlobStore};
pub use contents::{Contents, is_inline};
pub use files::{
    DriveTree, FOLDER_BYTES, FileError, FileWrite, INLINE_LIMIT, ListColumns, ListEntry, Located, Node, Opened,
    PutOutcome, push_url_path, split_path, url_path,
};
pub use id::{DriveId, NodeId};
pub use imports::{
    IMPORT_LEASE, IMPORT_REASONS, IMPORT_TOPIC, Import, ImportError, ImportItem, ImportSources, ImportState,
    ImportStore, MAX_REPORTED_FAILURES, NewImport, OwnDrive, SECRET_PURPOSE as IMPORT_SECRET_PURPOSE, SourceGuard,
    explain_import_reason, import_reason,
};
pub use locks::{
    Lock, LockRefusal, MAX_LOCK_SECS, MAX_LOCKS_PER_MEMBER, MAX_LOCKS_PER_NAME, Unlocked, conflict as lock_conflict,
    may_lock, may_unlock, within,
};
pub use moves::{DeadProp, MAX_PROP_BYTES, MAX_PROPS_PER_NODE, PropChange, prop_bytes};
pub use sharing::{DriveMember, Grant, Standing, UnknownGrant, access_of};

use std::sync::Arc;

use async_trait::async_trait;
use identity::{Account, AccountId, Identity, Millis, OrgError, OrgEvent, OrgId, StoreError};
use rand::Rng;

/// 10 GiB unless given.
pub const DEFAULT_QUOTA: u64 = 10 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    /// The `<id>` of `<id>.connect.<domain>`.
    pub id: DriveId,
    pub org_id: OrgId,
    pub org_name: String,
    pub name: String,
    pub quota_bytes: u64,
    pub used_bytes: u64,
    pub created_at: Millis,
    /// What members without a rule of their own may do.
    pub member_access: Grant,
}

/// What a member may do on a drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::ReadWrite => "read-write",
        }
    }
}

/// A drive as [`DriveStore::drive_of_member`] finds it.
#[derive(Debug, Clone)]
pub struct MemberDrive {
    pub drive: Drive,
    pub standing: Standing,
    /// Whether any lock on the drive was live.
    pub locked: bool,
    /// The nodes along the names asked for, as [`DriveStore::walk`] finds
    /// them; `None` when the store did not walk them in the same query.
    pub walked: Option<Vec<Node>>,
}

#[async_trait]
pub trait DriveStore: Send + Sync {
    /// Stores a new drive; `false` when its id is taken.
    async fn insert_drive(&self, drive: &Drive) -> Result<bool, StoreError>;
    async fn drive(&self, id: DriveId) -> Result<Option<Drive>, StoreError>;
    /// The drive and the account's standing in it, when the account is a
    /// member of its organization, whether any lock on the drive is live
    /// at `now`, and the nodes along `names` when the store can walk them
    /// in the same query.
    async fn drive_of_member(
        &self,
        id: DriveId,
        account_id: &AccountId,
        now: Millis,
        names: &[&str],
    ) -> Result<Option<MemberDrive>, StoreError>;
    /// The drives of the organizations the account belongs to, by
    /// organization and name, with the account's standing in each.
    async fn drives_for_account(&self, account_id: &AccountId) -> Result<Vec<(Drive, Standing)>, StoreError>;
    /// The members' own rules on a drive: (account id, grant).
    async fn grants(&self, drive_id: DriveId) -> Result<Vec<(AccountId, Grant)>, StoreError>;
    /// In one transaction with `event`: sets the drive's member access.
    async fn set_member_access(&self, drive_id: DriveId, grant: Grant, event: &OrgEvent) -> Result<(), StoreError>;
    /// In one transaction with `event`: sets or (with `None`) removes a
    /// member's own rule.
    async fn set_grant(
        &self,
        drive_id: DriveId,
        account_id: &AccountId,
        grant: Option<Grant>,
        event: &OrgEvent,
    ) -> Result<(), StoreError>;

    /// The nodes along `names` from the top folder down, as far as they
    /// exist (all of them when the whole path does), in as few queries
    /// as the store can.
    async fn walk(&self, drive_id: DriveId, names: &[&str]) -> Result<Vec<Node>, StoreError>;
    /// A folder's children, by name.
    async fn children(&self, drive_id: DriveId, parent_id: &NodeId) -> Result<Vec<Node>, StoreError>;
    /// In one transaction: adds the folder and charges [`FOLDER_BYTES`]
    /// to the drive's quota. `Conflict`
    /// when the name is taken (or its folder is gone), before a full
    /// quota.
    async fn create_folder(&self, node: &Node) -> Result<PutOutcome, StoreError>;
    /// In one transaction: points `node` at its blob (inserting it, or
    /// replacing `replaced` if that is still what the tree holds) and
    /// charges the size difference to the drive's quota.
    /// With `inline`, the contents are stored in the same transaction
    /// under `node.blob_id` (see [`INLINE_LIMIT`]).
    async fn put_file(
        &self,
        node: &Node,
        replaced: Option<&Node>,
        inline: Option<&[u8]>,
    ) -> Result<PutOutcome, StoreError>;
    /// The contents of a small file kept in the database.
    async fn inline_data(&self, blob_id: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// In one transaction: deletes the node and everything under it and
    /// frees their space (contents, [`FOLDER_BYTES`] and dead
    /// properties' [`DeadProp::charged_bytes`]); returns the blobs nobody
    /// uses any more.
    async fn delete_tree(&self, node: &Node) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` children of a folder whose names sort after `after`.
    async fn children_after(
        &self,
        drive_id: DriveId,
        parent_id: &NodeId,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Node>, StoreError>;
    /// [`Self::children_after`] as a listing shows them, with only the
    /// optional `columns` asked for read.
    async fn entries_after(
        &self,
        drive_id: DriveId,
        parent_id: &NodeId,
        after: &str,
        limit: u32,
        columns: ListColumns,
    ) -> Result<Vec<ListEntry>, StoreError>;
    /// Moves a node under `parent_id` as `name`; `false` when that name is taken.
    async fn move_node(&self, node: &Node, parent_id: &NodeId, name: &str) -> Result<bool, StoreError>;
    /// In one transaction: adds `copy` (sharing `source`'s blob and dead
    /// properties) and charges its size and its properties' to the quota.
    async fn copy_file(&self, source: &Node, copy: &Node) -> Result<PutOutcome, StoreError>;
    async fn set_modified(&self, node_id: &NodeId, modified_at: Millis) -> Result<(), StoreError>;
    async fn props(&self, node_id: &NodeId) -> Result<Vec<DeadProp>, StoreError>;
    /// The dead properties of several nodes at once (a page of a
    /// listing), as (node id, property), by node.
    async fn props_of(&self, node_ids: &[&NodeId]) -> Result<Vec<(NodeId, DeadProp)>, StoreError>;
    /// In one transaction, in order: stores (replacing same-named ones)
    /// and removes dead properties of `node`, and charges the change in
    /// their [`DeadProp::charged_bytes`] to the drive's quota; `false`
    /// (and nothing changed) when that would exceed the quota.
    async fn patch_props(&self, node: &Node, changes: &[PropChange]) -> Result<bool, StoreError>;

    /// The drive's locks that have not expired at `now`.
    async fn locks(&self, drive_id: DriveId, now: Millis) -> Result<Vec<Lock>, StoreError>;
    /// Atomically (against every process): reads the drive's live locks,
    /// and stores `lock` unless `conflict` names one of them, which is
    /// then returned.
    async fn add_lock(
        &self,
        drive_id: DriveId,
        lock: &Lock,
        now: Millis,
        conflict: &(dyn for<'x> Fn(&'x [Lock]) -> Option<Lock> + Send + Sync),
    ) -> Result<Option<Lock>, StoreError>;
    async fn refresh_lock(
        &self,
        drive_id: DriveId,
        token: &str,
        expires_at: Millis,
        timeout_secs: u64,
    ) -> Result<Option<Lock>, StoreError>;
    async fn remove_lock(&self, drive_id: DriveId, token: &str) -> Result<bool, StoreError>;
    /// In one statement where the engine allows it: stores `lock` when no
    /// lock live at `now` conflicts with it (see [`conflict`], as for a
    /// new lock) and fewer than `max_on_name` live locks are on its path
    /// and fewer than `max_of_member` are its principal's; `false` (and
    /// nothing stored) otherwise. [`Self::add_lock`] then tells which lock
    /// stands in the way.
    async fn add_lock_if_free(
        &self,
        drive_id: DriveId,
        lock: &Lock,
        now: Millis,
        max_on_name: usize,
        max_of_member: usize,
    ) -> Result<bool, StoreError>;
    /// In one statement: removes the lock `token` if it is on `path` or
    /// above it (see [`within`]) and `principal` took it (anyone's with
    /// `manages`), and every lock of the drive expired at `now`; whether
    /// the lock `token` was removed.
    async fn remove_held_lock(
        &self,
        drive_id: DriveId,
        token: &str,
        path: &str,
        principal: &str,
        manages: bool,
        now: Millis,
    ) -> Result<bool, StoreError>;
    /// Removes the locks on `path` and under it.
    async fn remove_locks_within(&self, drive_id: DriveId, path: &str) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("a drive name has 1 to 100 characters")]
    InvalidName,
    #[error("a quota is at least 1 MiB")]
    InvalidQuota,
    #[error("no such drive")]
    NotFound,
    #[error("no such member of the drive's organization")]
    NotAMember,
    #[error("admins and the legal representative always read and write every drive of their organization")]
    ManagerAlwaysWrites,
    #[error(transparent)]
    Org(#[from] OrgError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The drive service.
#[derive(Clone)]
pub struct Drives {
    store: Arc<dyn DriveStore>,
    imports: Arc<dyn ImportStore>,
    blobs: Arc<dyn BlobStore>,
    identity: Identity,
    sources: Arc<ImportSources>,
}

impl Drives {
    pub fn new(
        store: Arc<dyn DriveStore>,
        imports: Arc<dyn ImportStore>,
        blobs: Arc<dyn BlobStore>,
        identity: Identity,
    ) -> Self {
        Self {
            store,
            imports,
            blobs,
            identity,
            sources: Arc::new(ImportSources::default()),
        }
    }

    /// How import sources are judged: which addresses are this server's
    /// own drives, and the guard for the others. Without it, only our own
    /// drives may be imported from.
    pub fn with_import_sources(mut self, sources: ImportSources) -> Self {
        self.sources = Arc::new(sources);
        self
    }

    /// Creates a drive in `org_id`. With an `actor`, only the
    /// organization's managers may; without one (the admin command line,
    /// run by the operator) anyone may.
    pub async fn create(
        &self,
        actor: Option<&Account>,
        org_id: &OrgId,
        name: &str,
        quota_bytes: Option<u64>,
    ) -> Result<Drive, DriveError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(DriveError::InvalidName);
        }
        let quota_bytes = quota_bytes.unwrap_or(DEFAULT_QUOTA);
        if quota_bytes < 1024 * 1024 {
            return Err(DriveError::InvalidQuota);
        }
        let org = match actor {
            Some(actor) => self.identity.managed_organization(actor, org_id).await?,
            None => self.identity.organization(org_id).await?.ok_or(OrgError::NotFound)?,
        };
        for _ in 0..20 {
            let drive = Drive {
                id: DriveId::new(rand::thread_rng().gen_range(100_000..10_000_000)),
                org_id: org.id.clone(),
                org_name: org.name.clone(),
                name: name.to_owned(),
                quota_bytes,
                used_bytes: 0,
                created_at: self.identity.now(),
                member_access: Grant::ReadWrite,
            };
            if self.store.insert_drive(&drive).await? {
                return Ok(drive);
            }
        }
        Err(DriveError::Store(StoreError::Backend(
            "no free drive id after 20 tries".into(),
        )))
    }

    /// The drives the account may use, with what it may do on each.
    pub async fn of_account(&self, account: &Account) -> Result<Vec<(Drive, Access)>, StoreError> {
        Ok(self
            .store
            .drives_for_account(&account.id)
            .await?
            .into_iter()
            .filter_map(|(d, standing)| access_of(&d, &standing).map(|a| (d, a)))
            .collect())
    }

    /// The drive `id` and what the account may do on it; `None` when it
    /// does not exist or is not theirs (the same answer, on purpose).
    pub async fn access(&self, account: &Account, id: DriveId) -> Result<Option<(Drive, Access)>, StoreError> {
        let found = self
            .store
            .drive_of_member(id, &account.id, self.identity.now(), &[])
            .await?;
        Ok(found.and_then(|m| access_of(&m.drive, &m.standing).map(|a| (m.drive, a))))
    }
}
