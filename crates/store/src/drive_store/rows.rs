//! Reading drives, nodes and locks from rows, and the numbers columns hold.

use drive::{Drive, DriveId, Grant, Lock, MemberDrive, Node, NodeId, Standing};
use identity::{OrgId, Role, StoreError};
use sqlx::any::AnyRow;

use super::walk::walked_nodes;
use crate::db::{Columns, corrupt};

pub(super) const COLUMNS: &str =
    "SELECT d.id, d.org_id, o.name AS org_name, d.name, d.quota_bytes, d.used_bytes, d.created_at,
        d.member_access
     FROM drives d JOIN organizations o ON o.id = d.org_id";

/// [`COLUMNS`] with the member's role and own rule, for `m.account_id`.
pub(super) const MEMBER_COLUMNS: &str =
    "SELECT d.id, d.org_id, o.name AS org_name, d.name, d.quota_bytes, d.used_bytes,
        d.created_at, d.member_access, m.role, r.access AS own_access";
pub(super) const MEMBER_TABLES: &str = "FROM drives d JOIN organizations o ON o.id = d.org_id
     JOIN memberships m ON m.org_id = d.org_id
     LEFT JOIN drive_members r ON r.drive_id = d.id AND r.account_id = m.account_id";

pub(super) fn grant_of(text: &str) -> Result<Grant, StoreError> {
    text.parse()
        .map_err(|e: drive::UnknownGrant| corrupt(format_args!("drive access ({e})")))
}

pub(super) fn member_drive_from(row: &impl Columns) -> Result<(Drive, Standing), StoreError> {
    let role = row.text("role")?;
    let own = row.text_or_null("own_access")?;
    let standing = Standing {
        role: role.parse::<Role>().map_err(|e| corrupt(format_args!("role ({e})")))?,
        grant: own.as_deref().map(grant_of).transpose()?,
    };
    Ok((drive_from(row)?, standing))
}

pub(super) fn drive_from(row: &impl Columns) -> Result<Drive, StoreError> {
    Ok(Drive {
        id: DriveId::new(row.unsigned("id")?),
        org_id: OrgId::new(row.text("org_id")?),
        org_name: row.text("org_name")?,
        name: row.text("name")?,
        quota_bytes: row.unsigned("quota_bytes")?,
        used_bytes: row.unsigned("used_bytes")?,
        created_at: row.int("created_at")?,
        member_access: grant_of(&row.text("member_access")?)?,
    })
}

/// A [`member_walk_sql`] row: the drive, the member's standing, whether
/// anything on it is locked, and the nodes of a walk of `walked` names
/// (if the path was walked).
pub(super) fn member_walk_from(
    row: &impl Columns,
    drive_id: DriveId,
    walked: Option<usize>,
) -> Result<MemberDrive, StoreError> {
    let (drive, standing) = member_drive_from(row)?;
    Ok(MemberDrive {
        drive,
        standing,
        locked: row.flag("locked")?,
        walked: walked.map(|depth| walked_nodes(row, drive_id, depth)).transpose()?,
    })
}

pub(super) const NODE_COLUMNS: &str =
    "SELECT id, drive_id, parent_id, name, is_dir, size, blob_id, etag, created_at, modified_at,
        checksums, has_props
     FROM drive_nodes";

pub(super) fn node_from(row: &impl Columns) -> Result<Node, StoreError> {
    node_named(row, DriveId::new(row.unsigned("drive_id")?), |field| field)
}

/// A node of drive `drive_id` from a row that names the column of each
/// field (as [`NODE_COLUMNS`] does) as `column` says: a walk's row holds
/// several nodes, each level's columns under names of their own.
pub(super) fn node_named(
    row: &impl Columns,
    drive_id: DriveId,
    column: impl Fn(&'static str) -> &'static str,
) -> Result<Node, StoreError> {
    let text = |field| row.text(column(field));
    let flag = |field| row.flag(column(field));
    let int = |field| row.int(column(field));
    Ok(Node {
        id: NodeId::new(text("id")?),
        drive_id,
        parent_id: NodeId::new(text("parent_id")?),
        name: text("name")?,
        is_dir: flag("is_dir")?,
        size: row.unsigned(column("size"))?,
        blob_id: text("blob_id")?,
        etag: text("etag")?,
        created_at: int("created_at")?,
        modified_at: int("modified_at")?,
        checksums: text("checksums")?,
        has_props: flag("has_props")?,
    })
}

pub(super) fn lock_from(row: &AnyRow) -> Result<Lock, StoreError> {
    Ok(Lock {
        token: row.text("token")?,
        path: row.text("path")?,
        principal: row.text("principal")?,
        owner_xml: row.text("owner_xml")?,
        expires_at: row.int("expires_at")?,
        timeout_secs: u64::try_from(row.int("timeout_secs")?).unwrap_or(0),
        shared: row.flag("shared")?,
        deep: row.flag("deep")?,
    })
}

pub(super) const LOCK_COLUMNS: &str =
    "SELECT token, path, principal, owner_xml, expires_at, timeout_secs, shared, deep FROM drive_locks";

pub(super) fn signed(n: impl Into<u64>) -> Result<i64, StoreError> {
    i64::try_from(n.into()).map_err(|_| StoreError::Backend("a drive number is too large".into()))
}

/// A drive number as a column holds it, or `None` for one no drive can
/// have: numbers come from URLs, and one past `i64::MAX` names nothing
/// (a lookup that finds nothing), not a failure of the store.
pub(super) fn drive_number(id: DriveId) -> Option<i64> {
    i64::try_from(id.get()).ok()
}
