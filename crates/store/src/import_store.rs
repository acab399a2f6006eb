//! [`drive::ImportStore`] over SQL.

use async_trait::async_trait;
use drive::{DriveId, Import, ImportItem, ImportState, ImportStore, MAX_REPORTED_FAILURES};
use identity::{AccountId, Millis, StoreError};
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::changes::Arg::{Int, Text};
use crate::db::{Columns, Run, corrupt};

fn signed(n: impl Into<u64>) -> Result<i64, StoreError> {
    i64::try_from(n.into()).map_err(|_| StoreError::Backend("an import number is too large".into()))
}

/// The job's organization has fewer than `$2` jobs whose lease is live
/// at `$1` (the job's own row, its lease expired, is not one of them).
const BELOW_ORG_LIMIT: &str = "(SELECT COUNT(*) FROM drive_imports live JOIN drives d ON d.id = live.drive_id
        WHERE d.org_id = (SELECT org_id FROM drives WHERE id = drive_imports.drive_id)
          AND live.state = 'running' AND live.lease_until >= $1) < $2";

const COLUMNS: &str = "SELECT id, drive_id, account_id, source_url, source_user, sealed_secret, folder, state,
        files_done, bytes_done, files_failed, files_found, current_file, error, cancel_requested, attempts,
        created_at, finished_at
     FROM drive_imports";

fn import_from(row: &AnyRow) -> Result<Import, StoreError> {
    let state: String = row.text("state")?;
    Ok(Import {
        id: row.text("id")?,
        drive_id: DriveId::new(row.unsigned("drive_id")?),
        account_id: AccountId::new(row.text("account_id")?),
        source_url: row.text("source_url")?,
        source_user: row.text("source_user")?,
        sealed_secret: row.text("sealed_secret")?,
        folder: row.text("folder")?,
        state: ImportState::parse(&state).ok_or_else(|| corrupt(format_args!("import state {state}")))?,
        files_done: row.unsigned("files_done")?,
        bytes_done: row.unsigned("bytes_done")?,
        files_failed: row.unsigned("files_failed")?,
        files_found: row.unsigned("files_found")?,
        current_file: row.text("current_file")?,
        error: row.text("error")?,
        cancel_requested: row.flag("cancel_requested")?,
        attempts: row.count("attempts")?,
        created_at: row.int("created_at")?,
        finished_at: row.int_or_null("finished_at")?,
    })
}

#[async_trait]
impl ImportStore for SqlStore {
    async fn insert_import(&self, i: &Import) -> Result<(), StoreError> {
        self.write("INSERT INTO drive_imports (id, drive_id, account_id, source_url, source_user, sealed_secret, folder, state,
                created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", &[Text(i.id.as_str()), Int(signed(i.drive_id)?), Text(i.account_id.as_str()), Text(i.source_url.as_str()), Text(i.source_user.as_str()), Text(i.sealed_secret.as_str()), Text(i.folder.as_str()), Text(i.state.as_str()), Int(i.created_at)]).await?;
        Ok(())
    }

    async fn import(&self, id: &str) -> Result<Option<Import>, StoreError> {
        let sql = format!("{COLUMNS} WHERE id = $1");
        self.find(sqlx::AssertSqlSafe(sql), &[Text(id)], import_from).await
    }

    async fn imports_of_drive(&self, drive_id: DriveId) -> Result<Vec<Import>, StoreError> {
        let sql = format!("{COLUMNS} WHERE drive_id = $1 ORDER BY created_at DESC, id LIMIT 50");
        self.list(sqlx::AssertSqlSafe(sql), &[Int(signed(drive_id)?)], import_from)
            .await
    }

    async fn request_import_cancel(&self, id: &str) -> Result<bool, StoreError> {
        let done = self
            .write(
                "UPDATE drive_imports SET cancel_requested = 1 WHERE id = $1 AND state IN ('queued', 'running')",
                &[Text(id)],
            )
            .await?;
        Ok(done == 1)
    }

    async fn claim_import(&self, now: Millis, lease: Millis, per_org: u32) -> Result<Option<Import>, StoreError> {
        // An organization at its limit is skipped, so its jobs never hold
        // back another organization's.
        let candidates = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM drive_imports WHERE state IN ('queued', 'running') AND lease_until < $1
                AND {BELOW_ORG_LIMIT}
             ORDER BY created_at LIMIT 20"
        )))
        .bind(now)
        .bind(i64::from(per_org))
        .all(&self.pool)
        .await?;
        for row in candidates {
            let id: String = row.text("id")?;
            // Claims of one organization take turns on its row (a lock
            // until commit on PostgreSQL, the write lock on SQLite), so
            // processes claiming at the same instant each count the
            // others' claims.
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "UPDATE organizations SET name = name WHERE id =
                    (SELECT d.org_id FROM drive_imports j JOIN drives d ON d.id = j.drive_id WHERE j.id = $1)",
            )
            .bind(id.as_str())
            .run(&mut *tx)
            .await?;
            // Only one process wins a job: the lease must still be expired,
            // and the organization still below its limit.
            let taken = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE drive_imports SET state = 'running', lease_until = $3, attempts = attempts + 1
                 WHERE id = $4 AND state IN ('queued', 'running') AND lease_until < $1 AND {BELOW_ORG_LIMIT}"
            )))
            .bind(now)
            .bind(i64::from(per_org))
            .bind(now + lease)
            .bind(id.as_str())
            .run(&mut *tx)
            .await?;
            tx.commit().await?;
            if taken.rows_affected() == 1 {
                return self.import(&id).await;
            }
        }
        Ok(None)
    }

    async fn renew_import(&self, id: &str, lease_until: Millis, current_file: &str) -> Result<bool, StoreError> {
        sqlx::query("UPDATE drive_imports SET lease_until = $2, current_file = $3 WHERE id = $1")
            .bind(id)
            .bind(lease_until)
            .bind(current_file)
            .run(&*self.writer.turn().await)
            .await?;
        let row = sqlx::query("SELECT cancel_requested FROM drive_imports WHERE id = $1")
            .bind(id)
            .optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.int("cancel_requested")? == 0,
            None => false,
        })
    }

    async fn add_import_items(&self, id: &str, items: &[ImportItem]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let mut files = 0;
        for item in items {
            let added = sqlx::query(
                "INSERT INTO drive_import_items (import_id, path, is_dir, size, modified_at, state)
                 VALUES ($1, $2, $3, $4, $5, 'pending') ON CONFLICT (import_id, path) DO NOTHING",
            )
            .bind(id)
            .bind(item.path.as_str())
            .bind(i64::from(item.is_dir))
            .bind(signed(item.size)?)
            .bind(item.modified_at)
            .run(&mut *tx)
            .await?;
            if added.rows_affected() == 1 && !item.is_dir {
                files += 1;
            }
        }
        sqlx::query("UPDATE drive_imports SET files_found = files_found + $2 WHERE id = $1")
            .bind(id)
            .bind(files)
            .run(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn next_import_item(&self, id: &str) -> Result<Option<ImportItem>, StoreError> {
        let row = sqlx::query(
            "SELECT path, is_dir, size, modified_at FROM drive_import_items
             WHERE import_id = $1 AND state = 'pending' ORDER BY is_dir DESC, path LIMIT 1",
        )
        .bind(id)
        .optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ImportItem {
                path: row.text("path")?,
                is_dir: row.flag("is_dir")?,
                size: u64::try_from(row.int("size")?).unwrap_or(0),
                modified_at: row.int("modified_at")?,
            })
        })
        .transpose()
    }

    async fn finish_import_item(
        &self,
        id: &str,
        path: &str,
        bytes: Option<u64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let state = if error.is_some() { "failed" } else { "done" };
        let changed = sqlx::query(
            "UPDATE drive_import_items SET state = $3, error = $4
             WHERE import_id = $1 AND path = $2 AND state = 'pending'",
        )
        .bind(id)
        .bind(path)
        .bind(state)
        .bind(error.unwrap_or(""))
        .run(&mut *tx)
        .await?;
        if changed.rows_affected() == 1 {
            let (done, failed, size) = match (bytes, error) {
                (_, Some(_)) => (0_i64, 1_i64, 0_i64),
                (Some(size), None) => (1, 0, signed(size)?),
                (None, None) => (0, 0, 0),
            };
            sqlx::query(
                "UPDATE drive_imports SET files_done = files_done + $2, files_failed = files_failed + $3,
                    bytes_done = bytes_done + $4, attempts = 0 WHERE id = $1",
            )
            .bind(id)
            .bind(done)
            .bind(failed)
            .bind(size)
            .run(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn import_failures(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT path, error FROM drive_import_items WHERE import_id = $1 AND state = 'failed'
             ORDER BY path LIMIT $2",
        )
        .bind(id)
        .bind(i64::from(MAX_REPORTED_FAILURES))
        .all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.text("path")?, r.text("error")?))).collect()
    }

    async fn end_import(&self, id: &str, state: ImportState, error: &str, now: Millis) -> Result<(), StoreError> {
        self.write(
            "UPDATE drive_imports SET state = $2, error = $3, finished_at = $4, sealed_secret = '',
                current_file = '', lease_until = 0
             WHERE id = $1",
            &[Text(id), Text(state.as_str()), Text(error), Int(now)],
        )
        .await?;
        Ok(())
    }
}
