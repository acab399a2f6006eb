//! [`drive::DriveStore`] over SQL, by concern: the rows it reads (`rows`),
//! walks and listings (`walk`), writes on the tree (`tree`), the quota rule
//! (`quota`), dead properties (`props`), the commit queue (`commits`), and
//! what only one engine does (`postgres`, `sqlite`). The trait's methods
//! are here, each short or handing over to those modules.

use async_trait::async_trait;
use drive::{
    DeadProp, Drive, DriveId, DriveStore, Grant, ListColumns, ListEntry, Lock, MemberDrive, Node, NodeId, PropChange,
    PutOutcome, Standing,
};
use identity::{AccountId, Millis, OrgEvent, StoreError};
use sqlx::Row;

use crate::changes::Arg::{Int, Text};
use crate::db::{Columns, Run, backend, retried};
use crate::sqlite_reads::failed;
use crate::{Native, SqlStore};
use props::{mark_props, props_bytes};
use quota::charge;
use rows::{
    COLUMNS, LOCK_COLUMNS, MEMBER_COLUMNS, MEMBER_TABLES, NODE_COLUMNS, drive_from, drive_number, grant_of, lock_from,
    member_drive_from, member_walk_from, node_from, signed,
};
use tree::insert_node;
use walk::{WALK_DEPTH, made_once, member_walk_sql, walk_sql, walked_nodes};

/// The condition that the folder whose id is `$parent` is still there:
/// the drive's top (`''`) or a folder's row. A node is only ever written
/// into a folder that passes it, in the statement that writes the node,
/// so a folder deleted while a file was being uploaded into it (or a
/// folder made, or a node moved) makes the write a conflict instead of a
/// node nobody can reach, whose size the quota would keep counting.
///
/// On PostgreSQL (`lock` = `" FOR KEY SHARE"`) the folder's row stays
/// share-locked until the write commits. A deletion of the folder then
/// waits for the write and finds the new node when it looks again
/// (`delete_tree`); a write that comes after the deletion
/// waits for it and finds no folder. On SQLite, which lets one writer
/// at a time, the write lock puts the two in order anyway.
macro_rules! live_folder {
    ($parent:literal, $lock:literal) => {
        concat!(
            "(",
            $parent,
            " = '' OR EXISTS (SELECT 1 FROM drive_nodes p WHERE p.id = ",
            $parent,
            " AND p.is_dir = 1",
            $lock,
            "))"
        )
    };
}

mod commits;
mod postgres;
mod props;
mod quota;
mod rows;
mod sqlite;
#[cfg(test)]
mod tests;
mod tree;
mod walk;

pub(crate) use commits::FileCommit;
pub(crate) use postgres::commit_files_on_postgres;
pub(crate) use sqlite::commit_files_on_sqlite;

#[async_trait]
impl DriveStore for SqlStore {
    async fn insert_drive(&self, d: &Drive) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO drives (id, org_id, name, quota_bytes, used_bytes, created_at, member_access)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(signed(d.id)?)
        .bind(d.org_id.as_str())
        .bind(d.name.as_str())
        .bind(signed(d.quota_bytes)?)
        .bind(signed(d.used_bytes)?)
        .bind(d.created_at)
        .bind(d.member_access.as_str())
        .run(&*self.writer.turn().await)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn drive(&self, id: DriveId) -> Result<Option<Drive>, StoreError> {
        let Some(number) = drive_number(id) else {
            return Ok(None);
        };
        let sql = format!("{COLUMNS} WHERE d.id = $1");
        self.find(sqlx::AssertSqlSafe(sql), &[Int(number)], drive_from).await
    }

    async fn drive_of_member(
        &self,
        id: DriveId,
        account_id: &AccountId,
        now: Millis,
        names: &[&str],
    ) -> Result<Option<MemberDrive>, StoreError> {
        let account_id = account_id.as_str();
        let Some(number) = drive_number(id) else {
            return Ok(None);
        };
        // The path is walked in the same query when it is short enough for
        // one walk.
        static MADE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let depth = if names.len() <= WALK_DEPTH { names.len() } else { 0 };
        let sql = made_once(&MADE, member_walk_sql, self.engine, depth);
        let walked = (names.len() <= WALK_DEPTH).then_some(depth);
        match &self.native {
            Native::Postgres(pg) => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(number)
                    .bind(account_id)
                    .bind(now);
                for name in &names[..depth] {
                    query = query.bind(*name);
                }
                let row = query.optional(pg).await?;
                row.as_ref().map(|row| member_walk_from(row, id, walked)).transpose()
            }
            Native::Sqlite(reads) => {
                let mut args: Vec<&dyn rusqlite::ToSql> = vec![&number, &account_id, &now];
                args.extend(names[..depth].iter().map(|name| name as &dyn rusqlite::ToSql));
                reads.first_row(sql, &args, |row| member_walk_from(row, id, walked))
            }
        }
    }

    async fn drives_for_account(&self, account_id: &AccountId) -> Result<Vec<(Drive, Standing)>, StoreError> {
        let sql = format!("{MEMBER_COLUMNS} {MEMBER_TABLES} WHERE m.account_id = $1 ORDER BY o.name, d.name, d.id");
        self.list(
            sqlx::AssertSqlSafe(sql),
            &[Text(account_id.as_str())],
            member_drive_from,
        )
        .await
    }

    async fn grants(&self, drive_id: DriveId) -> Result<Vec<(AccountId, Grant)>, StoreError> {
        let rows = sqlx::query("SELECT account_id, access FROM drive_members WHERE drive_id = $1")
            .bind(signed(drive_id)?)
            .all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let access: String = row.text("access")?;
                Ok((AccountId::new(row.text("account_id")?), grant_of(&access)?))
            })
            .collect()
    }

    async fn set_member_access(&self, drive_id: DriveId, grant: Grant, event: &OrgEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE drives SET member_access = $2 WHERE id = $1")
            .bind(signed(drive_id)?)
            .bind(grant.as_str())
            .run(&mut *tx)
            .await?;
        crate::identity_store::insert_org_event(&mut tx, event).await?;
        tx.commit().await
    }

    async fn set_grant(
        &self,
        drive_id: DriveId,
        account_id: &AccountId,
        grant: Option<Grant>,
        event: &OrgEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let change = match grant {
            Some(grant) => sqlx::query(
                "INSERT INTO drive_members (drive_id, account_id, access) VALUES ($1, $2, $3)
                 ON CONFLICT (drive_id, account_id) DO UPDATE SET access = excluded.access",
            )
            .bind(signed(drive_id)?)
            .bind(account_id.as_str())
            .bind(grant.as_str()),
            None => sqlx::query("DELETE FROM drive_members WHERE drive_id = $1 AND account_id = $2")
                .bind(signed(drive_id)?)
                .bind(account_id.as_str()),
        };
        change.run(&mut *tx).await?;
        crate::identity_store::insert_org_event(&mut tx, event).await?;
        tx.commit().await
    }

    async fn walk(&self, drive_id: DriveId, names: &[&str]) -> Result<Vec<Node>, StoreError> {
        let mut found: Vec<Node> = Vec::new();
        for chunk in names.chunks(WALK_DEPTH) {
            static MADE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
            let sql = made_once(&MADE, walk_sql, self.engine, chunk.len());
            let parent = found.last().map_or("", |n| n.id.as_str());
            let found_here = match &self.native {
                Native::Postgres(pg) => {
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(signed(drive_id)?)
                        .bind(parent);
                    for name in chunk {
                        query = query.bind(*name);
                    }
                    let row = query.optional(pg).await?;
                    row.as_ref()
                        .map(|row| walked_nodes(row, drive_id, chunk.len()))
                        .transpose()?
                }
                Native::Sqlite(reads) => {
                    let drive = signed(drive_id)?;
                    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&drive, &parent];
                    args.extend(chunk.iter().map(|name| name as &dyn rusqlite::ToSql));
                    reads.first_row(sql, &args, |row| walked_nodes(row, drive_id, chunk.len()))?
                }
            };
            let Some(level) = found_here else {
                return Ok(found);
            };
            let whole = level.len() == chunk.len();
            found.extend(level);
            if !whole {
                return Ok(found);
            }
        }
        Ok(found)
    }

    async fn children(&self, drive_id: DriveId, parent_id: &NodeId) -> Result<Vec<Node>, StoreError> {
        let sql = format!("{NODE_COLUMNS} WHERE drive_id = $1 AND parent_id = $2 ORDER BY name");
        self.list(
            sqlx::AssertSqlSafe(sql),
            &[Int(signed(drive_id)?), Text(parent_id.as_str())],
            node_from,
        )
        .await
    }

    async fn create_folder(&self, node: &Node) -> Result<PutOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        if !insert_node(&mut tx, self.engine, node).await? {
            return Ok(PutOutcome::Conflict);
        }
        // Dropped without a commit, the transaction takes the folder back.
        if !charge(&mut tx, node.drive_id, signed(drive::FOLDER_BYTES)?).await? {
            return Ok(PutOutcome::InsufficientStorage);
        }
        tx.commit().await?;
        Ok(PutOutcome::Stored { replaced_blob: None })
    }

    async fn put_file(
        &self,
        node: &Node,
        replaced: Option<&Node>,
        inline: Option<&[u8]>,
    ) -> Result<PutOutcome, StoreError> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let commit = FileCommit {
            node: node.clone(),
            replaced: replaced.cloned(),
            inline: inline.map(<[u8]>::to_vec),
            reply,
        };
        self.files
            .send(commit)
            .map_err(|_| StoreError::Backend("the file commit queue has stopped".into()))?;
        outcome
            .await
            .map_err(|_| StoreError::Backend("the file commit queue has stopped".into()))?
    }

    async fn delete_tree(&self, node: &Node) -> Result<Vec<String>, StoreError> {
        retried(|| self.delete_tree_once(node)).await
    }

    async fn children_after(
        &self,
        drive_id: DriveId,
        parent_id: &NodeId,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Node>, StoreError> {
        let page = "SELECT id, name, is_dir, size, blob_id, etag, created_at, modified_at, checksums, has_props
             FROM drive_nodes n WHERE drive_id = $1 AND parent_id = $2 AND name > $3 ORDER BY name LIMIT $4";
        let mut nodes = self
            .folder_page(page, (drive_id, parent_id, after, limit), |row| {
                Ok(Node {
                    id: NodeId::new(row.text(0)?),
                    drive_id: DriveId::new(0),
                    parent_id: NodeId::top(),
                    name: row.text(1)?,
                    is_dir: row.int(2)? != 0,
                    size: u64::try_from(row.int(3)?).unwrap_or(0),
                    blob_id: row.text(4)?,
                    etag: row.text(5)?,
                    created_at: row.int(6)?,
                    modified_at: row.int(7)?,
                    checksums: row.text(8)?,
                    has_props: row.int(9)? != 0,
                })
            })
            .await?;
        for node in &mut nodes {
            node.drive_id = drive_id;
            node.parent_id = parent_id.clone();
        }
        Ok(nodes)
    }

    /// The same paging as [`Self::children_after`], reading only what a
    /// listing shows: on a folder of 10,000 files, leaving out the ids,
    /// blob ids and checksums nobody asked for took a quarter off a
    /// PROPFIND on SQLite.
    async fn entries_after(
        &self,
        drive_id: DriveId,
        parent_id: &NodeId,
        after: &str,
        limit: u32,
        columns: ListColumns,
    ) -> Result<Vec<ListEntry>, StoreError> {
        let created = if columns.created_at {
            "created_at"
        } else {
            "CAST(0 AS BIGINT) AS created_at"
        };
        let checksums = if columns.checksums {
            "checksums"
        } else {
            "'' AS checksums"
        };
        // The id only for entries with dead properties, which are read by it.
        let page = format!(
            "SELECT name, is_dir, size, etag, modified_at, {created}, {checksums},
                CASE WHEN has_props = 1 THEN id ELSE '' END AS props_of
             FROM drive_nodes n WHERE drive_id = $1 AND parent_id = $2 AND name > $3 ORDER BY name LIMIT $4"
        );
        self.folder_page(&page, (drive_id, parent_id, after, limit), |row| {
            let props_of = row.text(7)?;
            Ok(ListEntry {
                name: row.text(0)?,
                is_dir: row.int(1)? != 0,
                size: u64::try_from(row.int(2)?).unwrap_or(0),
                etag: row.text(3)?,
                modified_at: row.int(4)?,
                created_at: row.int(5)?,
                checksums: row.text(6)?,
                props_of: (!props_of.is_empty()).then(|| NodeId::new(props_of)),
            })
        })
        .await
    }

    async fn move_node(&self, node: &Node, parent_id: &NodeId, name: &str) -> Result<bool, StoreError> {
        retried(|| self.move_node_once(node, parent_id, name)).await
    }

    async fn copy_file(&self, source: &Node, copy: &Node) -> Result<PutOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        // The copy keeps the source's dead properties: they are charged too.
        let props = if source.has_props {
            props_bytes(&mut tx, &source.id).await?
        } else {
            0
        };
        if !charge(&mut tx, copy.drive_id, signed(copy.size)? + props).await? {
            return Ok(PutOutcome::InsufficientStorage);
        }
        if !insert_node(&mut tx, self.engine, copy).await? {
            return Ok(PutOutcome::Conflict);
        }
        sqlx::query(
            "INSERT INTO drive_props (node_id, namespace, name, xml)
             SELECT $2, namespace, name, xml FROM drive_props WHERE node_id = $1",
        )
        .bind(source.id.as_str())
        .bind(copy.id.as_str())
        .run(&mut *tx)
        .await?;
        mark_props(&mut tx, &copy.id).await?;
        tx.commit().await?;
        Ok(PutOutcome::Stored { replaced_blob: None })
    }

    async fn set_modified(&self, node_id: &NodeId, modified_at: Millis) -> Result<(), StoreError> {
        sqlx::query("UPDATE drive_nodes SET modified_at = $2 WHERE id = $1")
            .bind(node_id.as_str())
            .bind(modified_at)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(())
    }

    async fn props(&self, node_id: &NodeId) -> Result<Vec<DeadProp>, StoreError> {
        let rows =
            sqlx::query("SELECT namespace, name, xml FROM drive_props WHERE node_id = $1 ORDER BY namespace, name")
                .bind(node_id.as_str())
                .all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadProp {
                    namespace: row.text("namespace")?,
                    name: row.text("name")?,
                    xml: row.text("xml")?,
                })
            })
            .collect()
    }

    async fn props_of(&self, node_ids: &[&NodeId]) -> Result<Vec<(NodeId, DeadProp)>, StoreError> {
        let mut found = Vec::new();
        // Well under either engine's limit of bound values per statement.
        for ids in node_ids.chunks(500) {
            let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT node_id, namespace, name, xml FROM drive_props WHERE node_id IN ({})
                 ORDER BY node_id, namespace, name",
                marks.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(id.as_str());
            }
            for row in query.all(&self.pool).await? {
                let prop = DeadProp {
                    namespace: row.text("namespace")?,
                    name: row.text("name")?,
                    xml: row.text("xml")?,
                };
                found.push((NodeId::new(row.text("node_id")?), prop));
            }
        }
        Ok(found)
    }

    async fn patch_props(&self, node: &Node, changes: &[PropChange]) -> Result<bool, StoreError> {
        let node_id = &node.id;
        let mut tx = self.begin_write().await?;
        let before = props_bytes(&mut tx, node_id).await?;
        for change in changes {
            let query = match change {
                PropChange::Set(prop) => sqlx::query(
                    "INSERT INTO drive_props (node_id, namespace, name, xml) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (node_id, namespace, name) DO UPDATE SET xml = excluded.xml",
                )
                .bind(node_id.as_str())
                .bind(prop.namespace.as_str())
                .bind(prop.name.as_str())
                .bind(prop.xml.as_str()),
                PropChange::Remove { namespace, name } => {
                    sqlx::query("DELETE FROM drive_props WHERE node_id = $1 AND namespace = $2 AND name = $3")
                        .bind(node_id.as_str())
                        .bind(namespace.as_str())
                        .bind(name.as_str())
                }
            };
            query.run(&mut *tx).await?;
        }
        let after = props_bytes(&mut tx, node_id).await?;
        // Dropped without a commit, the transaction undoes the changes.
        if !charge(&mut tx, node.drive_id, after - before).await? {
            return Ok(false);
        }
        mark_props(&mut tx, node_id).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn locks(&self, drive_id: DriveId, now: Millis) -> Result<Vec<Lock>, StoreError> {
        let sql = format!("{LOCK_COLUMNS} WHERE drive_id = $1 AND (expires_at = 0 OR expires_at > $2) ORDER BY path");
        self.list(sqlx::AssertSqlSafe(sql), &[Int(signed(drive_id)?), Int(now)], lock_from)
            .await
    }

    async fn add_lock(
        &self,
        drive_id: DriveId,
        lock: &Lock,
        now: Millis,
        conflict: &(dyn for<'x> Fn(&'x [Lock]) -> Option<Lock> + Send + Sync),
    ) -> Result<Option<Lock>, StoreError> {
        let mut tx = self.begin_write().await?;
        // Serializes lock changes on this drive across processes (a row
        // lock on PostgreSQL; SQLite's write transaction already does).
        sqlx::query("UPDATE drives SET used_bytes = used_bytes WHERE id = $1")
            .bind(signed(drive_id)?)
            .run(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM drive_locks WHERE drive_id = $1 AND expires_at <> 0 AND expires_at <= $2")
            .bind(signed(drive_id)?)
            .bind(now)
            .run(&mut *tx)
            .await?;
        let sql = format!("{LOCK_COLUMNS} WHERE drive_id = $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(signed(drive_id)?)
            .all(&mut *tx)
            .await?;
        let live = rows.iter().map(lock_from).collect::<Result<Vec<_>, _>>()?;
        if let Some(other) = conflict(&live) {
            return Ok(Some(other));
        }
        let insert = sqlx::query(
            "INSERT INTO drive_locks (token, drive_id, path, principal, owner_xml, expires_at, timeout_secs, shared, deep)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        );
        bind_lock(insert, drive_id, lock)?.run(&mut *tx).await?;
        tx.commit().await?;
        Ok(None)
    }

    async fn refresh_lock(
        &self,
        drive_id: DriveId,
        token: &str,
        expires_at: Millis,
        timeout_secs: u64,
    ) -> Result<Option<Lock>, StoreError> {
        sqlx::query("UPDATE drive_locks SET expires_at = $3, timeout_secs = $4 WHERE drive_id = $1 AND token = $2")
            .bind(signed(drive_id)?)
            .bind(token)
            .bind(expires_at)
            .bind(signed(timeout_secs)?)
            .run(&*self.writer.turn().await)
            .await?;
        let sql = format!("{LOCK_COLUMNS} WHERE drive_id = $1 AND token = $2");
        self.find(
            sqlx::AssertSqlSafe(sql),
            &[Int(signed(drive_id)?), Text(token)],
            lock_from,
        )
        .await
    }

    async fn remove_lock(&self, drive_id: DriveId, token: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM drive_locks WHERE drive_id = $1 AND token = $2")
            .bind(signed(drive_id)?)
            .bind(token)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_lock_if_free(
        &self,
        drive_id: DriveId,
        lock: &Lock,
        now: Millis,
        max_on_name: usize,
        max_of_member: usize,
    ) -> Result<bool, StoreError> {
        // `within(a, b)`: `a` is `b` or below it, on whole names.
        macro_rules! within {
            ($a:literal, $b:literal) => {
                concat!(
                    "(",
                    $a,
                    " = ",
                    $b,
                    " OR substr(",
                    $a,
                    ", 1, length(",
                    $b,
                    ") + 1) = ",
                    $b,
                    " || '/')"
                )
            };
        }
        const LIVE: &str = "(l.expires_at = 0 OR l.expires_at > $10)";
        let sql = format!(
            "INSERT INTO drive_locks (token, drive_id, path, principal, owner_xml, expires_at, timeout_secs, shared, deep)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
             WHERE NOT EXISTS (SELECT 1 FROM drive_locks l WHERE l.drive_id = $2 AND {LIVE}
                 AND NOT (l.shared = 1 AND $8 = 1)
                 AND (l.path = $3 OR (l.deep = 1 AND {}) OR ($9 = 1 AND {})))
             AND (SELECT count(*) FROM drive_locks l WHERE l.drive_id = $2 AND {LIVE} AND l.path = $3) < $11
             AND (SELECT count(*) FROM drive_locks l WHERE l.drive_id = $2 AND {LIVE} AND l.principal = $4) < $12",
            within!("$3", "l.path"),
            within!("l.path", "$3"),
        );
        let insert = bind_lock(sqlx::query(sqlx::AssertSqlSafe(sql)), drive_id, lock)?
            .bind(now)
            .bind(i64::try_from(max_on_name).unwrap_or(i64::MAX))
            .bind(i64::try_from(max_of_member).unwrap_or(i64::MAX));
        let done = match self.engine {
            // One writer at a time: the statement is the check and the write.
            crate::Engine::Sqlite => insert.run(&*self.writer.turn().await).await?,
            // Lock changes on a drive wait for each other on its row, as in
            // `add_lock`; the insert's own snapshot is taken after that.
            crate::Engine::Postgres => {
                let mut tx = self.begin_write().await?;
                sqlx::query("SELECT id FROM drives WHERE id = $1 FOR UPDATE")
                    .bind(signed(drive_id)?)
                    .all(&mut *tx)
                    .await?;
                let done = insert.run(&mut *tx).await?;
                tx.commit().await?;
                done
            }
        };
        Ok(done.rows_affected() == 1)
    }

    async fn remove_held_lock(
        &self,
        drive_id: DriveId,
        token: &str,
        path: &str,
        principal: &str,
        manages: bool,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let removed = sqlx::query(
            "DELETE FROM drive_locks WHERE drive_id = $1
             AND ((expires_at <> 0 AND expires_at <= $6)
                  OR (token = $2 AND (principal = $4 OR $5 = 1)
                      AND ($3 = path OR substr($3, 1, length(path) + 1) = path || '/')))
             RETURNING token",
        )
        .bind(signed(drive_id)?)
        .bind(token)
        .bind(path)
        .bind(principal)
        .bind(i64::from(manages))
        .bind(now)
        .all(&*self.writer.turn().await)
        .await?;
        removed
            .iter()
            .map(|row| row.text("token"))
            .collect::<Result<Vec<_>, _>>()
            .map(|tokens| tokens.iter().any(|t| t == token))
    }

    async fn remove_locks_within(&self, drive_id: DriveId, path: &str) -> Result<(), StoreError> {
        let below = format!("{path}/");
        sqlx::query(
            "DELETE FROM drive_locks WHERE drive_id = $1
             AND (path = $2 OR substr(path, 1, $4) = $3)",
        )
        .bind(signed(drive_id)?)
        .bind(path)
        .bind(below.as_str())
        .bind(i64::try_from(below.chars().count()).unwrap_or(i64::MAX))
        .run(&*self.writer.turn().await)
        .await?;
        Ok(())
    }

    async fn inline_data(&self, blob_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        const DATA: &str = "SELECT data FROM drive_inline WHERE blob_id = $1";
        if let Native::Sqlite(reads) = &self.native {
            return reads.first_row(DATA, &[&blob_id], |row| row.get(0).map_err(failed));
        }
        let row = sqlx::query(DATA).bind(blob_id).optional(&self.pool).await?;
        row.map(|r| r.try_get::<Vec<u8>, _>("data").map_err(backend))
            .transpose()
    }
}

/// Binds a lock's columns as `$1`–`$9` of `drive_locks`' insert (token,
/// drive, path, principal, owner, expiry, timeout, shared, deep).
fn bind_lock<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    drive_id: DriveId,
    lock: &'q drive::Lock,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>, StoreError> {
    Ok(query
        .bind(lock.token.as_str())
        .bind(signed(drive_id)?)
        .bind(lock.path.as_str())
        .bind(lock.principal.as_str())
        .bind(lock.owner_xml.as_str())
        .bind(lock.expires_at)
        .bind(signed(lock.timeout_secs)?)
        .bind(i64::from(lock.shared))
        .bind(i64::from(lock.deep)))
}
