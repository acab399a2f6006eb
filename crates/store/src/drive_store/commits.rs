//! The commit queue shared by both engines: files that arrive while a
//! transaction runs are committed together in the next one.

use drive::{Node, PutOutcome};
use identity::StoreError;

use super::postgres::NEW_FILE_PG;
use super::quota::fits_quota;
use super::rows::signed;
use super::tree::{blob_in_use, drop_inline};
use crate::changes::{Arg, Change, sqlite_counts};
use crate::db::{Columns, Run};
use crate::writer::Writer;

/// A file waiting in the commit queue, and who waits for it.
#[derive(Debug)]
pub(crate) struct FileCommit {
    pub(super) node: Node,
    pub(super) replaced: Option<Node>,
    pub(super) inline: Option<Vec<u8>>,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<PutOutcome, StoreError>>,
}

/// Files committed per transaction at most.
pub(super) const COMMIT_BATCH: usize = 64;

/// The outcome of each of a batch's `count` files from the batch's.
pub(super) fn outcomes_of(
    count: usize,
    committed: Result<Vec<PutOutcome>, StoreError>,
) -> Vec<Result<PutOutcome, String>> {
    match committed {
        Ok(done) => done.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(e.to_string()); count],
    }
}

/// Tells each file of `batch` its outcome, and empties the batch.
pub(super) fn answer(batch: &mut Vec<FileCommit>, outcomes: Vec<Option<Result<PutOutcome, String>>>) {
    for (file, outcome) in batch.drain(..).zip(outcomes) {
        let outcome = outcome.unwrap_or_else(|| Err("the file was not committed".into()));
        let _ = file.reply.send(outcome.map_err(StoreError::Backend));
    }
}

/// The new files of a batch (nothing replaced) in groups of one drive
/// each, by their place in the batch, leaving out a file whose folder and
/// name another file of the batch already has: [`NEW_FILES_PG`] stores a
/// whole group or nothing, and such a file is left for the transaction
/// that tells it lost the race.
pub(super) fn new_file_groups(batch: &[FileCommit]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(drive::DriveId, Vec<usize>)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, file) in batch.iter().enumerate() {
        let n = &file.node;
        if file.replaced.is_some() || !names.insert((n.drive_id, n.parent_id.as_str(), n.name.as_str())) {
            continue;
        }
        match groups.iter_mut().find(|(drive, _)| *drive == n.drive_id) {
            Some((_, group)) => group.push(i),
            None => groups.push((n.drive_id, vec![i])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// `batch` in one transaction of `writer`, each file as it comes.
pub(super) async fn commit_batch(writer: &Writer, batch: &[&FileCommit]) -> Result<Vec<PutOutcome>, StoreError> {
    let engine = writer.engine();
    let mut tx = writer.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut rest = batch;
    while let Some(file) = rest.first() {
        if let Some(old) = &file.replaced {
            outcomes.push(replace_in(&mut tx, &file.node, old, file.inline.as_deref()).await?);
            rest = &rest[1..];
        } else if engine == crate::Engine::Sqlite {
            // New files, in order, in one round trip.
            let run = rest.iter().take_while(|f| f.replaced.is_none()).count();
            outcomes.extend(insert_new_files(&mut tx, &rest[..run]).await?);
            rest = &rest[run..];
        } else {
            outcomes.push(insert_new_file(&mut tx, file).await?);
            rest = &rest[1..];
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Statements that store one new file on SQLite, to run in a row: the
/// node is inserted unless its name is taken or its folder is gone
/// ([`live_folder`]), charged to the quota if it was inserted, taken
/// out again if the quota refused it, and its small contents stored if
/// it stayed. `changes()` is the count of the statement before.
pub(super) const NEW_FILE: [&str; 4] = [
    concat!(
        "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, size, blob_id, etag, created_at, modified_at,
            checksums)
         SELECT $1, $2, $3, $4, 0, $5, $6, $7, $8, $9, $10 WHERE ",
        live_folder!("$3", ""),
        " ON CONFLICT (drive_id, parent_id, name) DO NOTHING"
    ),
    concat!(
        "UPDATE drives SET used_bytes = used_bytes + $2 WHERE id = $1 AND ",
        fits_quota!("$2"),
        " AND changes() = 1"
    ),
    "DELETE FROM drive_nodes WHERE id = $1 AND changes() = 0",
    "INSERT INTO drive_inline (blob_id, data) SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM drive_nodes WHERE id = $3)",
];

/// A new file (nothing replaced) in `tx` on PostgreSQL, as [`put_in`]
/// stores it, in one round trip.
pub(super) async fn insert_new_file(tx: &mut sqlx::AnyConnection, file: &FileCommit) -> Result<PutOutcome, StoreError> {
    let n = &file.node;
    let size = signed(n.size)?;
    let row = sqlx::query(NEW_FILE_PG)
        .bind(n.id.as_str())
        .bind(signed(n.drive_id)?)
        .bind(n.parent_id.as_str())
        .bind(n.name.as_str())
        .bind(size)
        .bind(n.blob_id.as_str())
        .bind(n.etag.as_str())
        .bind(n.created_at)
        .bind(n.modified_at)
        .bind(n.checksums.as_str())
        .bind(file.inline.clone().unwrap_or_default())
        .bind(file.inline.is_some())
        .one(&mut *tx)
        .await?;
    let count = |name: &str| row.int(name);
    if count("stored")? == 1 {
        return Ok(PutOutcome::Stored { replaced_blob: None });
    }
    if count("charged")? == 1 {
        // Another writer took the name after this statement began.
        sqlx::query("UPDATE drives SET used_bytes = used_bytes - $2 WHERE id = $1")
            .bind(signed(n.drive_id)?)
            .bind(size)
            .run(&mut *tx)
            .await?;
        return Ok(PutOutcome::Conflict);
    }
    Ok(if count("taken")? > 0 || count("folder")? == 0 {
        PutOutcome::Conflict
    } else {
        PutOutcome::InsufficientStorage
    })
}

/// New files (nothing replaced) in `tx` on SQLite, each as [`put_in`]
/// stores it, all in one round trip to the database's thread.
pub(super) async fn insert_new_files(
    tx: &mut sqlx::AnyConnection,
    files: &[&FileCommit],
) -> Result<Vec<PutOutcome>, StoreError> {
    let counts = sqlite_counts(tx, &new_file_changes(files)?).await?;
    Ok(new_file_outcomes(files, counts))
}

/// The [`NEW_FILE`] statements of `files`, in order.
pub(super) fn new_file_changes<'a>(files: &[&'a FileCommit]) -> Result<Vec<Change<'a>>, StoreError> {
    let mut changes = Vec::with_capacity(files.len() * NEW_FILE.len());
    for file in files {
        let n = &file.node;
        let (drive, size) = (signed(n.drive_id)?, signed(n.size)?);
        changes.push(Change::new(
            NEW_FILE[0],
            vec![
                Arg::Text(n.id.as_str()),
                Arg::Int(drive),
                Arg::Text(n.parent_id.as_str()),
                Arg::Text(&n.name),
                Arg::Int(size),
                Arg::Text(&n.blob_id),
                Arg::Text(&n.etag),
                Arg::Int(n.created_at),
                Arg::Int(n.modified_at),
                Arg::Text(&n.checksums),
            ],
        ));
        changes.push(Change::new(NEW_FILE[1], vec![Arg::Int(drive), Arg::Int(size)]));
        changes.push(Change::new(NEW_FILE[2], vec![Arg::Text(n.id.as_str())]));
        if let Some(data) = &file.inline {
            changes.push(Change::new(
                NEW_FILE[3],
                vec![Arg::Text(&n.blob_id), Arg::Bytes(data), Arg::Text(n.id.as_str())],
            ));
        }
    }
    Ok(changes)
}

/// Each file's outcome from the counts of its [`new_file_changes`].
pub(super) fn new_file_outcomes(files: &[&FileCommit], counts: Vec<u64>) -> Vec<PutOutcome> {
    let mut counts = counts.into_iter();
    let mut outcomes = Vec::with_capacity(files.len());
    for file in files {
        let inserted = counts.next() == Some(1);
        let charged = counts.next() == Some(1);
        counts.next();
        if file.inline.is_some() {
            counts.next();
        }
        outcomes.push(match (inserted, charged) {
            (false, _) => PutOutcome::Conflict,
            (true, false) => PutOutcome::InsufficientStorage,
            (true, true) => PutOutcome::Stored { replaced_blob: None },
        });
    }
    outcomes
}

/// A file of a batch that replaces `old`, in the batch's transaction:
/// charges the quota, then points the row at the new contents (undoing
/// the charge if the node changed or went meanwhile), then stores the
/// small contents.
pub(super) async fn replace_in(
    conn: &mut sqlx::AnyConnection,
    node: &Node,
    old: &Node,
    inline: Option<&[u8]>,
) -> Result<PutOutcome, StoreError> {
    let delta = signed(node.size)? - signed(old.size)?;
    let charged = sqlx::query(concat!(
        "UPDATE drives SET used_bytes = used_bytes + $2 WHERE id = $1 AND ",
        fits_quota!("$2")
    ))
    .bind(signed(node.drive_id)?)
    .bind(delta)
    .run(&mut *conn)
    .await?;
    if charged.rows_affected() != 1 {
        return Ok(PutOutcome::InsufficientStorage);
    }
    let stored = sqlx::query(
        "UPDATE drive_nodes SET size = $3, blob_id = $4, etag = $5, modified_at = $6, checksums = $7
         WHERE id = $1 AND blob_id = $2",
    )
    .bind(old.id.as_str())
    .bind(old.blob_id.as_str())
    .bind(signed(node.size)?)
    .bind(node.blob_id.as_str())
    .bind(node.etag.as_str())
    .bind(node.modified_at)
    .bind(node.checksums.as_str())
    .run(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !stored {
        sqlx::query("UPDATE drives SET used_bytes = used_bytes - $2 WHERE id = $1")
            .bind(signed(node.drive_id)?)
            .bind(delta)
            .run(&mut *conn)
            .await?;
        return Ok(PutOutcome::Conflict);
    }
    if let Some(data) = inline {
        sqlx::query("INSERT INTO drive_inline (blob_id, data) VALUES ($1, $2)")
            .bind(node.blob_id.as_str())
            .bind(data.to_vec())
            .run(&mut *conn)
            .await?;
    }
    let mut replaced_blob = None;
    if !old.blob_id.is_empty() && !blob_in_use(&mut *conn, &old.blob_id).await? {
        drop_inline(&mut *conn, &old.blob_id).await?;
        replaced_blob = Some(old.blob_id.clone());
    }
    Ok(PutOutcome::Stored { replaced_blob })
}
