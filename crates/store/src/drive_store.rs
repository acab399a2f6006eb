//! [`drive::DriveStore`] over SQL.

use async_trait::async_trait;
use drive::{Drive, DriveStore, Node, PutOutcome};
use identity::StoreError;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

const COLUMNS: &str = "SELECT d.id, d.org_id, o.name AS org_name, d.name, d.quota_bytes, d.used_bytes, d.created_at
     FROM drives d JOIN organizations o ON o.id = d.org_id";

fn drive_from(row: &AnyRow) -> Result<Drive, StoreError> {
    let number = |name: &str| -> Result<u64, StoreError> {
        let n: i64 = row.try_get(name).map_err(backend)?;
        u64::try_from(n).map_err(|_| StoreError::Backend(format!("stored drive {name} is negative")))
    };
    Ok(Drive {
        id: number("id")?,
        org_id: row.try_get("org_id").map_err(backend)?,
        org_name: row.try_get("org_name").map_err(backend)?,
        name: row.try_get("name").map_err(backend)?,
        quota_bytes: number("quota_bytes")?,
        used_bytes: number("used_bytes")?,
        created_at: row.try_get("created_at").map_err(backend)?,
    })
}

const NODE_COLUMNS: &str = "SELECT id, drive_id, parent_id, name, is_dir, size, blob_id, etag, created_at, modified_at
     FROM drive_nodes";

fn node_from(row: &AnyRow) -> Result<Node, StoreError> {
    let number = |name: &str| -> Result<u64, StoreError> {
        let n: i64 = row.try_get(name).map_err(backend)?;
        u64::try_from(n).map_err(|_| StoreError::Backend(format!("stored node {name} is negative")))
    };
    Ok(Node {
        id: row.try_get("id").map_err(backend)?,
        drive_id: number("drive_id")?,
        parent_id: row.try_get("parent_id").map_err(backend)?,
        name: row.try_get("name").map_err(backend)?,
        is_dir: row.try_get::<i64, _>("is_dir").map_err(backend)? != 0,
        size: number("size")?,
        blob_id: row.try_get("blob_id").map_err(backend)?,
        etag: row.try_get("etag").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        modified_at: row.try_get("modified_at").map_err(backend)?,
    })
}

async fn insert_node(conn: &mut sqlx::AnyConnection, n: &Node) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, size, blob_id, etag, created_at, modified_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (drive_id, parent_id, name) DO NOTHING",
    )
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
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() == 1)
}

fn signed(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Backend("a drive number is too large".into()))
}

#[async_trait]
impl DriveStore for SqlStore {
    async fn insert_drive(&self, d: &Drive) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO drives (id, org_id, name, quota_bytes, used_bytes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(signed(d.id)?)
        .bind(d.org_id.as_str())
        .bind(d.name.as_str())
        .bind(signed(d.quota_bytes)?)
        .bind(signed(d.used_bytes)?)
        .bind(d.created_at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn drive(&self, id: u64) -> Result<Option<Drive>, StoreError> {
        let sql = format!("{COLUMNS} WHERE d.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(signed(id)?)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(drive_from).transpose()
    }

    async fn drives_for_account(&self, account_id: &str) -> Result<Vec<Drive>, StoreError> {
        let sql = format!(
            "{COLUMNS} JOIN memberships m ON m.org_id = d.org_id WHERE m.account_id = $1 ORDER BY o.name, d.name, d.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(drive_from).collect()
    }

    async fn child(&self, drive_id: u64, parent_id: &str, name: &str) -> Result<Option<Node>, StoreError> {
        let sql = format!("{NODE_COLUMNS} WHERE drive_id = $1 AND parent_id = $2 AND name = $3");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(signed(drive_id)?)
            .bind(parent_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(node_from).transpose()
    }

    async fn children(&self, drive_id: u64, parent_id: &str) -> Result<Vec<Node>, StoreError> {
        let sql = format!("{NODE_COLUMNS} WHERE drive_id = $1 AND parent_id = $2 ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(signed(drive_id)?)
            .bind(parent_id)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(node_from).collect()
    }

    async fn create_folder(&self, node: &Node) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        insert_node(&mut conn, node).await
    }

    async fn put_file(&self, node: &Node, replaced: Option<&Node>) -> Result<PutOutcome, StoreError> {
        let mut tx = self.begin_write().await.map_err(backend)?;
        let delta = signed(node.size)? - replaced.map_or(Ok(0), |r| signed(r.size))?;
        let charged = sqlx::query(
            "UPDATE drives SET used_bytes = used_bytes + $2 WHERE id = $1 AND used_bytes + $2 <= quota_bytes",
        )
        .bind(signed(node.drive_id)?)
        .bind(delta)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if charged.rows_affected() != 1 {
            return Ok(PutOutcome::InsufficientStorage);
        }
        let stored = match replaced {
            Some(old) => {
                sqlx::query(
                    "UPDATE drive_nodes SET size = $3, blob_id = $4, etag = $5, modified_at = $6
                     WHERE id = $1 AND blob_id = $2",
                )
                .bind(old.id.as_str())
                .bind(old.blob_id.as_str())
                .bind(signed(node.size)?)
                .bind(node.blob_id.as_str())
                .bind(node.etag.as_str())
                .bind(node.modified_at)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected()
                    == 1
            }
            None => insert_node(&mut tx, node).await?,
        };
        if !stored {
            return Ok(PutOutcome::Conflict);
        }
        tx.commit().await.map_err(backend)?;
        Ok(PutOutcome::Stored {
            replaced_blob: replaced.map(|r| r.blob_id.clone()).filter(|b| !b.is_empty()),
        })
    }

    async fn delete_tree(&self, node: &Node) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await.map_err(backend)?;
        let rows = sqlx::query(
            "WITH RECURSIVE tree(id) AS (
                SELECT id FROM drive_nodes WHERE id = $1
                UNION ALL
                SELECT n.id FROM drive_nodes n JOIN tree t ON n.parent_id = t.id
             )
             SELECT d.id, d.size, d.blob_id FROM drive_nodes d JOIN tree ON tree.id = d.id",
        )
        .bind(node.id.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut freed: i64 = 0;
        let mut blobs = Vec::new();
        for row in &rows {
            let id: String = row.try_get("id").map_err(backend)?;
            freed += row.try_get::<i64, _>("size").map_err(backend)?;
            let blob: String = row.try_get("blob_id").map_err(backend)?;
            if !blob.is_empty() {
                blobs.push(blob);
            }
            sqlx::query("DELETE FROM drive_nodes WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        sqlx::query("UPDATE drives SET used_bytes = used_bytes - $2 WHERE id = $1")
            .bind(signed(node.drive_id)?)
            .bind(freed)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(blobs)
    }
}
