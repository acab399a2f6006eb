//! [`drive::DriveStore`] over SQL.

use async_trait::async_trait;
use drive::{Drive, DriveStore};
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
}
