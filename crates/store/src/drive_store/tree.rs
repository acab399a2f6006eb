//! Writes on the tree of nodes: inserting a node into a folder that is
//! still there, deleting a tree, moving a node, and the inline contents a
//! node may keep.

use drive::{Node, NodeId};
use identity::StoreError;

use super::props::charged_props;
use super::rows::signed;
use crate::SqlStore;
use crate::db::{Columns, Run, backend};

/// Inserts `n` unless its name is taken or its folder is gone: whether
/// it did.
pub(super) async fn insert_node(
    conn: &mut sqlx::AnyConnection,
    engine: crate::Engine,
    n: &Node,
) -> Result<bool, StoreError> {
    macro_rules! insert_sql {
        ($lock:literal) => {
            concat!(
                "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, size, blob_id, etag, created_at,
                    modified_at, checksums)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 WHERE ",
                live_folder!("$3", $lock),
                " ON CONFLICT (drive_id, parent_id, name) DO NOTHING"
            )
        };
    }
    let sql = match engine {
        crate::Engine::Sqlite => insert_sql!(""),
        crate::Engine::Postgres => insert_sql!(" FOR KEY SHARE"),
    };
    let done = sqlx::query(sql)
        .bind(n.id.as_str())
        .bind(signed(n.drive_id)?)
        .bind(n.parent_id.as_str())
        .bind(n.name.as_str())
        .bind(i64::from(n.is_dir))
        .bind(signed(n.size)?)
        .bind(n.blob_id.as_str())
        .bind(n.etag.as_str())
        .bind(n.created_at)
        .bind(n.modified_at)
        .bind(n.checksums.as_str())
        .run(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn blob_in_use(conn: &mut sqlx::AnyConnection, blob: &str) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT 1 FROM drive_nodes WHERE blob_id = $1 LIMIT 1")
        .bind(blob)
        .optional(conn)
        .await?;
    Ok(row.is_some())
}

/// Deletes the contents of a small file kept in the database, once no
/// node uses them.
pub(super) async fn drop_inline(conn: &mut sqlx::AnyConnection, blob: &str) -> Result<(), StoreError> {
    if drive::is_inline(blob) {
        sqlx::query("DELETE FROM drive_inline WHERE blob_id = $1")
            .bind(blob)
            .run(conn)
            .await?;
    }
    Ok(())
}

/// What [`SqlStore::delete_tree`] has deleted so far.
#[derive(Default)]
pub(super) struct Gone {
    /// The bytes the deleted nodes took from the quota: files' contents,
    /// folders and dead properties.
    freed: i64,
    /// Their contents, which the drive may still use elsewhere (copies).
    blobs: Vec<String>,
    /// The folders deleted, for what may have landed in them meanwhile.
    folders: Vec<String>,
}

impl Gone {
    /// Deletes node `id` and its dead properties. Its size and contents
    /// are those of the row deleted, as it is when deleted (an upload
    /// that replaced it meanwhile included).
    pub(super) async fn delete(&mut self, tx: &mut sqlx::AnyConnection, id: &str) -> Result<(), StoreError> {
        let props = sqlx::query("DELETE FROM drive_props WHERE node_id = $1 RETURNING namespace, name, xml")
            .bind(id)
            .all(&mut *tx)
            .await?;
        self.freed += charged_props(&props)?;
        let row = sqlx::query("DELETE FROM drive_nodes WHERE id = $1 RETURNING size, blob_id, is_dir")
            .bind(id)
            .optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(());
        };
        self.freed += row.int("size")?;
        let blob: String = row.text("blob_id")?;
        if !blob.is_empty() {
            self.blobs.push(blob);
        }
        if row.flag("is_dir")? {
            self.freed += signed(drive::FOLDER_BYTES)?;
            self.folders.push(id.to_owned());
        }
        Ok(())
    }
}

impl SqlStore {
    /// [`DriveStore::delete_tree`], once: [`crate::retried`] runs it again
    /// when PostgreSQL aborts it to break a deadlock.
    pub(super) async fn delete_tree_once(&self, node: &Node) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let tree: Vec<String> = sqlx::query_scalar(
            "WITH RECURSIVE tree(id) AS (
                SELECT id FROM drive_nodes WHERE id = $1
                UNION ALL
                SELECT n.id FROM drive_nodes n JOIN tree t ON n.drive_id = $2 AND n.parent_id = t.id
             )
             SELECT id FROM tree",
        )
        .bind(node.id.as_str())
        // The index on a folder's entries starts with the drive: without
        // it, each level below would read every drive's nodes.
        .bind(signed(node.drive_id)?)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut gone = Gone::default();
        for id in &tree {
            gone.delete(&mut tx, id).await?;
        }
        // On PostgreSQL, a node written into one of these folders by a
        // transaction that committed after the tree was read is not in
        // it: its write held the folder's row (see `live_folder`), so it
        // committed before that folder's row could be deleted, and a
        // statement that starts now sees it. Each folder deleted is looked
        // at once more. On SQLite, one writer at a time leaves nothing to find.
        if self.engine == crate::Engine::Postgres {
            while let Some(folder) = gone.folders.pop() {
                let late: Vec<String> =
                    sqlx::query_scalar("SELECT id FROM drive_nodes WHERE drive_id = $1 AND parent_id = $2")
                        .bind(signed(node.drive_id)?)
                        .bind(&folder)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(backend)?;
                for id in &late {
                    gone.delete(&mut tx, id).await?;
                }
            }
        }
        let Gone { freed, blobs, .. } = gone;
        // Copies share blobs: keep those another node still uses.
        let mut unused = Vec::new();
        for blob in blobs {
            if !blob_in_use(&mut tx, &blob).await? {
                drop_inline(&mut tx, &blob).await?;
                unused.push(blob);
            }
        }
        let blobs = unused;
        sqlx::query("UPDATE drives SET used_bytes = used_bytes - $2 WHERE id = $1")
            .bind(signed(node.drive_id)?)
            .bind(freed)
            .run(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(blobs)
    }

    /// [`DriveStore::move_node`], once (see [`Self::delete_tree_once`]).
    pub(super) async fn move_node_once(&self, node: &Node, parent_id: &NodeId, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT 1 FROM drive_nodes WHERE drive_id = $1 AND parent_id = $2 AND name = $3")
            .bind(signed(node.drive_id)?)
            .bind(parent_id.as_str())
            .bind(name)
            .optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Ok(false);
        }
        macro_rules! move_sql {
            ($lock:literal) => {
                concat!(
                    "UPDATE drive_nodes SET parent_id = $2, name = $3 WHERE id = $1 AND ",
                    live_folder!("$2", $lock)
                )
            };
        }
        let sql = match self.engine {
            crate::Engine::Sqlite => move_sql!(""),
            crate::Engine::Postgres => move_sql!(" FOR KEY SHARE"),
        };
        let moved = sqlx::query(sql)
            .bind(node.id.as_str())
            .bind(parent_id.as_str())
            .bind(name)
            .run(&mut *tx)
            .await?;
        // The node or the folder it goes to gone meanwhile: nothing moves.
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }
}
