//! What only PostgreSQL does: the commit queue's task, new files sent as
//! arrays in one statement through the PostgreSQL driver's own pool, and
//! folder pages read through it.

use drive::{Node, PutOutcome};
use identity::{Millis, StoreError};
use sqlx::Row;

use super::commits::{COMMIT_BATCH, FileCommit, answer, commit_batch, new_file_groups, outcomes_of};
use super::quota::fits_quota;
use super::rows::signed;
use super::walk::PageRow;
use crate::db::{backend, retried};
use crate::writer::Writer;

/// Checks that a folder page's columns are all `BIGINT` or `TEXT`, as
/// the schema makes them, once per page: its values are then read as a
/// [`PageRow`], which does not check each value's type again
/// (that check was about a tenth of a 10,000-entry PROPFIND's CPU).
pub(super) fn pg_page_columns(row: &sqlx::postgres::PgRow) -> Result<(), StoreError> {
    use sqlx::{Column, TypeInfo};
    for column in row.columns() {
        let kind = column.type_info().name();
        if kind != "INT8" && kind != "TEXT" {
            return Err(StoreError::Backend(format!(
                "a folder page's column {} is {kind}, not BIGINT or TEXT",
                column.name()
            )));
        }
    }
    Ok(())
}

/// Columns checked once per page by [`pg_page_columns`], then read
/// unchecked.
impl PageRow for sqlx::postgres::PgRow {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.try_get_unchecked(i).map_err(backend)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.try_get_unchecked(i).map_err(backend)
    }
}

/// The commit queue: the files that arrive while a transaction runs are
/// committed together in the next one, so several clients' uploads share
/// one `BEGIN`, one `COMMIT` and one sync to disk. Nobody waits for a
/// batch to fill: a lone file is committed at once. Each file is answered
/// only once its transaction is committed. A file that does not fit the
/// quota or lost a race gets its outcome and changes nothing; the others
/// of its batch are unaffected. An error of the database fails the files
/// it was storing (none of them is stored) and each of them is told so.
///
/// This is the queue on PostgreSQL, a task of the runtime: a batch's new
/// files of one drive go as one statement to `pg`, the PostgreSQL
/// driver's own pool (see [`NEW_FILES_PG`]); the others through `writer`.
pub(crate) async fn commit_files_on_postgres(
    writer: Writer,
    pg: sqlx::PgPool,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<FileCommit>,
) {
    let mut batch = Vec::with_capacity(COMMIT_BATCH);
    while queue.recv_many(&mut batch, COMMIT_BATCH).await > 0 {
        let mut outcomes: Vec<Option<Result<PutOutcome, String>>> = Vec::new();
        outcomes.resize_with(batch.len(), || None);
        for group in new_file_groups(&batch) {
            let files: Vec<&FileCommit> = group.iter().map(|&i| &batch[i]).collect();
            let outcome = match insert_new_files_pg(&pg, &files).await {
                // Not stored: each file through the transaction below.
                Ok(false) => continue,
                Err(StoreError::Retryable(_)) => continue,
                Ok(true) => Ok(PutOutcome::Stored { replaced_blob: None }),
                Err(e) => Err(e.to_string()),
            };
            for i in group {
                outcomes[i] = Some(outcome.clone());
            }
        }
        let rest: Vec<&FileCommit> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.is_none())
            .map(|(file, _)| file)
            .collect();
        if !rest.is_empty() {
            let committed = retried(|| commit_batch(&writer, &rest)).await;
            let mut committed = outcomes_of(rest.len(), committed).into_iter();
            for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
                *outcome = committed.next();
            }
        }
        answer(&mut batch, outcomes);
    }
}

/// New files of one drive on PostgreSQL, in one statement that stores
/// all of them or changes nothing: their sizes charged to the quota at
/// once if they all fit, none of their names is taken and all their
/// folders are there (share-locked, see [`live_folder`]), then every
/// node inserted, then the small contents. It runs on its own, so its
/// commit is the statement's: one round trip and one sync for the whole
/// group. Each folder is looked up by its id on its own (`LATERAL`): as
/// `id = ANY(...)`, the plan a connection kept from a new drive's first
/// uploads scanned the whole table for the folders, a cost that grew
/// with every file. A name taken meanwhile by a writer outside the
/// batch makes the insert fail as a duplicate, which undoes the charge
/// too.
pub(super) const NEW_FILES_PG: &str = concat!(
    "WITH input AS (
        SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[], $8::int8[],
            $9::int8[], $10::text[], $11::bytea[], $12::bool[])
            AS t(id, parent_id, name, size, blob_id, etag, created_at, modified_at, checksums, data, inline)
    ), folders AS (
        SELECT 1 FROM (SELECT DISTINCT parent_id FROM input WHERE parent_id <> '') f,
            LATERAL (SELECT 1 FROM drive_nodes WHERE id = f.parent_id AND is_dir = 1 FOR KEY SHARE) p
    ), charged AS (
        UPDATE drives SET used_bytes = used_bytes + $13
        WHERE id = $1 AND ",
    fits_quota!("$13"),
    "
          AND (SELECT COUNT(*) FROM folders) = (SELECT COUNT(DISTINCT parent_id) FROM input WHERE parent_id <> '')
          AND NOT EXISTS (SELECT 1 FROM input i, LATERAL (SELECT 1 FROM drive_nodes n
                WHERE n.drive_id = $1 AND n.parent_id = i.parent_id AND n.name = i.name LIMIT 1) taken)
        RETURNING id
    ), stored AS (
        INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, size, blob_id, etag, created_at,
            modified_at, checksums)
        SELECT id, $1, parent_id, name, 0, size, blob_id, etag, created_at, modified_at, checksums
        FROM input WHERE EXISTS (SELECT 1 FROM charged)
    ), contents AS (
        INSERT INTO drive_inline (blob_id, data)
        SELECT blob_id, data FROM input WHERE inline AND EXISTS (SELECT 1 FROM charged)
    )
    SELECT COUNT(*) FROM charged"
);

/// Stores `files` (new, one drive, distinct names) with [`NEW_FILES_PG`]:
/// true if all were stored, false if nothing was (a name is taken or
/// they do not all fit), to be committed one by one instead.
pub(super) async fn insert_new_files_pg(pg: &sqlx::PgPool, files: &[&FileCommit]) -> Result<bool, StoreError> {
    let Some(first) = files.first() else {
        return Ok(true);
    };
    let mut total: i64 = 0;
    for file in files {
        total = total
            .checked_add(signed(file.node.size)?)
            .ok_or_else(|| StoreError::Backend("a batch of files is too large".into()))?;
    }
    let column = |get: fn(&Node) -> &str| files.iter().map(|f| get(&f.node)).collect::<Vec<_>>();
    let times = |get: fn(&Node) -> Millis| files.iter().map(|f| get(&f.node)).collect::<Vec<_>>();
    let sizes = files
        .iter()
        .map(|f| signed(f.node.size))
        .collect::<Result<Vec<_>, _>>()?;
    let data: Vec<&[u8]> = files.iter().map(|f| f.inline.as_deref().unwrap_or_default()).collect();
    let inline: Vec<bool> = files.iter().map(|f| f.inline.is_some()).collect();
    let charged = sqlx::query_scalar::<_, i64>(NEW_FILES_PG)
        .bind(signed(first.node.drive_id)?)
        .bind(column(|n| n.id.as_str()))
        .bind(column(|n| n.parent_id.as_str()))
        .bind(column(|n| n.name.as_str()))
        .bind(sizes)
        .bind(column(|n| n.blob_id.as_str()))
        .bind(column(|n| n.etag.as_str()))
        .bind(times(|n| n.created_at))
        .bind(times(|n| n.modified_at))
        .bind(column(|n| n.checksums.as_str()))
        .bind(data)
        .bind(inline)
        .bind(total)
        .fetch_one(pg)
        .await;
    match charged {
        Ok(charged) => Ok(charged == 1),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(backend(e)),
    }
}

/// One new file on PostgreSQL, in one statement: charged to the quota
/// unless its name is taken or its folder is gone (the folder's row
/// share-locked, see [`live_folder`]), inserted if charged, its small
/// contents stored if inserted. All parts see the database as it was
/// when the statement began, so `taken` and `folder` tell a conflict
/// from a full quota.
pub(super) const NEW_FILE_PG: &str = concat!(
    "WITH folder AS (
        SELECT 1 FROM drive_nodes WHERE id = $3 AND is_dir = 1 FOR KEY SHARE
    ), charged AS (
        UPDATE drives SET used_bytes = used_bytes + $5
        WHERE id = $2 AND ",
    fits_quota!("$5"),
    "
          AND ($3 = '' OR EXISTS (SELECT 1 FROM folder))
          AND NOT EXISTS (SELECT 1 FROM drive_nodes WHERE drive_id = $2 AND parent_id = $3 AND name = $4)
        RETURNING id
    ), stored AS (
        INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, size, blob_id, etag, created_at,
            modified_at, checksums)
        SELECT $1, $2, $3, $4, 0, $5, $6, $7, $8, $9, $10 FROM charged
        ON CONFLICT (drive_id, parent_id, name) DO NOTHING
        RETURNING id
    ), contents AS (
        INSERT INTO drive_inline (blob_id, data) SELECT $6, $11 FROM stored WHERE $12
    )
    SELECT (SELECT COUNT(*) FROM charged) AS charged, (SELECT COUNT(*) FROM stored) AS stored,
        (SELECT COUNT(*) FROM drive_nodes WHERE drive_id = $2 AND parent_id = $3 AND name = $4) AS taken,
        CAST(CASE WHEN $3 = '' OR EXISTS (SELECT 1 FROM folder) THEN 1 ELSE 0 END AS BIGINT) AS folder"
);
