//! [`drive::DriveStore`] over SQL.

use async_trait::async_trait;
use drive::{
    DeadProp, Drive, DriveStore, Grant, ListColumns, ListEntry, Lock, MemberDrive, Node, PropChange, PutOutcome,
    Standing,
};
use identity::StoreError;
use identity::{Millis, OrgEvent, Role};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::changes::{Arg, Change, sqlite_counts};
use crate::db::{Columns, Run, backend, corrupt, retried};
use crate::sqlite_commits::CommitConnection;
use crate::sqlite_reads::failed;
use crate::writer::Writer;
use crate::{Native, SqlStore};

const COLUMNS: &str = "SELECT d.id, d.org_id, o.name AS org_name, d.name, d.quota_bytes, d.used_bytes, d.created_at,
        d.member_access
     FROM drives d JOIN organizations o ON o.id = d.org_id";

/// [`COLUMNS`] with the member's role and own rule, for `m.account_id`.
const MEMBER_COLUMNS: &str = "SELECT d.id, d.org_id, o.name AS org_name, d.name, d.quota_bytes, d.used_bytes,
        d.created_at, d.member_access, m.role, r.access AS own_access";
const MEMBER_TABLES: &str = "FROM drives d JOIN organizations o ON o.id = d.org_id
     JOIN memberships m ON m.org_id = d.org_id
     LEFT JOIN drive_members r ON r.drive_id = d.id AND r.account_id = m.account_id";

fn grant_of(text: &str) -> Result<Grant, StoreError> {
    text.parse()
        .map_err(|e: drive::UnknownGrant| corrupt(format_args!("drive access ({e})")))
}

fn member_drive_from(row: &impl Columns) -> Result<(Drive, Standing), StoreError> {
    let role = row.text("role")?;
    let own = row.text_or_null("own_access")?;
    let standing = Standing {
        role: role.parse::<Role>().map_err(|e| corrupt(format_args!("role ({e})")))?,
        grant: own.as_deref().map(grant_of).transpose()?,
    };
    Ok((drive_from(row)?, standing))
}

fn drive_from(row: &impl Columns) -> Result<Drive, StoreError> {
    Ok(Drive {
        id: row.unsigned("id")?,
        org_id: row.text("org_id")?,
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
fn member_walk_from(row: &impl Columns, drive_id: u64, walked: Option<usize>) -> Result<MemberDrive, StoreError> {
    let (drive, standing) = member_drive_from(row)?;
    Ok(MemberDrive {
        drive,
        standing,
        locked: row.int("locked")? != 0,
        walked: walked.map(|depth| walked_nodes(row, drive_id, depth)).transpose()?,
    })
}

const NODE_COLUMNS: &str = "SELECT id, drive_id, parent_id, name, is_dir, size, blob_id, etag, created_at, modified_at,
        checksums, has_props
     FROM drive_nodes";

fn node_from(row: &impl Columns) -> Result<Node, StoreError> {
    Ok(Node {
        id: row.text("id")?,
        drive_id: row.unsigned("drive_id")?,
        parent_id: row.text("parent_id")?,
        name: row.text("name")?,
        is_dir: row.flag("is_dir")?,
        size: row.unsigned("size")?,
        blob_id: row.text("blob_id")?,
        etag: row.text("etag")?,
        created_at: row.int("created_at")?,
        modified_at: row.int("modified_at")?,
        checksums: row.text("checksums")?,
        has_props: row.flag("has_props")?,
    })
}

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

/// Inserts `n` unless its name is taken or its folder is gone: whether
/// it did.
async fn insert_node(conn: &mut sqlx::AnyConnection, engine: crate::Engine, n: &Node) -> Result<bool, StoreError> {
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

/// Charges `bytes` to the drive's quota in the transaction (a negative
/// amount gives space back); `false` when the drive would exceed its
/// quota. Giving back always succeeds.
async fn charge(conn: &mut sqlx::AnyConnection, drive_id: u64, bytes: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE drives SET used_bytes = used_bytes + $2 WHERE id = $1 AND ($2 <= 0 OR used_bytes + $2 <= quota_bytes)",
    )
    .bind(signed(drive_id)?)
    .bind(bytes)
    .run(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What the dead properties of node `id` take from the quota
/// ([`drive::prop_bytes`]), as the transaction sees them.
async fn props_bytes(conn: &mut sqlx::AnyConnection, id: &str) -> Result<i64, StoreError> {
    let rows = sqlx::query("SELECT namespace, name, xml FROM drive_props WHERE node_id = $1")
        .bind(id)
        .all(conn)
        .await?;
    charged_props(&rows)
}

/// [`drive::prop_bytes`] of rows of `namespace, name, xml`.
fn charged_props(rows: &[sqlx::any::AnyRow]) -> Result<i64, StoreError> {
    let mut total = 0;
    for row in rows {
        let text = |column: &str| row.text(column);
        total += drive::prop_bytes(&text("namespace")?, &text("name")?, &text("xml")?);
    }
    signed(total)
}

/// Sets the node's `has_props` to whether it has dead properties now,
/// in the transaction that changed them.
async fn mark_props(conn: &mut sqlx::AnyConnection, node_id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE drive_nodes
         SET has_props = CASE WHEN EXISTS (SELECT 1 FROM drive_props p WHERE p.node_id = $1) THEN 1 ELSE 0 END
         WHERE id = $1",
    )
    .bind(node_id)
    .run(conn)
    .await?;
    Ok(())
}

async fn blob_in_use(conn: &mut sqlx::AnyConnection, blob: &str) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT 1 FROM drive_nodes WHERE blob_id = $1 LIMIT 1")
        .bind(blob)
        .optional(conn)
        .await?;
    Ok(row.is_some())
}

/// Deletes the contents of a small file kept in the database, once no
/// node uses them.
async fn drop_inline(conn: &mut sqlx::AnyConnection, blob: &str) -> Result<(), StoreError> {
    if drive::is_inline(blob) {
        sqlx::query("DELETE FROM drive_inline WHERE blob_id = $1")
            .bind(blob)
            .run(conn)
            .await?;
    }
    Ok(())
}

fn lock_from(row: &AnyRow) -> Result<Lock, StoreError> {
    Ok(Lock {
        token: row.text("token")?,
        path: row.text("path")?,
        principal: row.text("principal")?,
        owner_xml: row.text("owner_xml")?,
        expires_at: row.int("expires_at")?,
        timeout_secs: u64::try_from(row.int("timeout_secs")?).unwrap_or(0),
        shared: row.int("shared")? != 0,
        deep: row.int("deep")? != 0,
    })
}

/// Checks that a folder page's columns are all `BIGINT` or `TEXT`, as
/// the schema makes them, once per page: its values are then read as a
/// [`PageRow`], which does not check each value's type again
/// (that check was about a tenth of a 10,000-entry PROPFIND's CPU).
fn pg_page_columns(row: &sqlx::postgres::PgRow) -> Result<(), StoreError> {
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

/// A folder page's row, its columns by position, whichever driver read
/// it.
trait PageRow {
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn text(&self, i: usize) -> Result<String, StoreError>;
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

impl PageRow for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.get(i).map_err(failed)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.get(i).map_err(failed)
    }
}

impl SqlStore {
    /// A folder page: `page` (binding drive, folder, the name to start
    /// after and the limit) read as `decode` reads each row. On
    /// PostgreSQL through the driver's own connections (packing the page
    /// with `json_agg` measured slower). On SQLite on a read-only
    /// connection of our own, on a blocking thread: a page of 2,500 rows
    /// takes milliseconds, too long to hold a task's thread, and one
    /// hand-off per page is nothing beside one per row (sqlx's driver
    /// sends every row across to the task on its own).
    async fn folder_page<T: Send + 'static>(
        &self,
        page: &str,
        (drive_id, parent_id, after, limit): (u64, &str, &str, u32),
        decode: fn(&dyn PageRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let (drive, limit) = (signed(drive_id)?, i64::from(limit));
        match &self.native {
            Native::Postgres(pg) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(page.to_owned()))
                    .bind(drive)
                    .bind(parent_id)
                    .bind(after)
                    .bind(limit)
                    .all(pg)
                    .await?;
                if let Some(first) = rows.first() {
                    pg_page_columns(first)?;
                }
                rows.iter().map(|row| decode(row)).collect()
            }
            Native::Sqlite(reads) => {
                let reads = reads.clone();
                let (page, parent, after) = (page.to_owned(), parent_id.to_owned(), after.to_owned());
                let turn = reads.blocking_turn().await?;
                tokio::task::spawn_blocking(move || {
                    let rows = reads.rows(&page, &[&drive, &parent, &after, &limit], |row| decode(row));
                    drop(turn);
                    rows
                })
                .await
                .map_err(|e| StoreError::Backend(format!("a folder page: {e}")))?
            }
        }
    }
}

const LOCK_COLUMNS: &str =
    "SELECT token, path, principal, owner_xml, expires_at, timeout_secs, shared, deep FROM drive_locks";

fn signed(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Backend("a drive number is too large".into()))
}

/// A drive number as a column holds it, or `None` for one no drive can
/// have: numbers come from URLs, and one past `i64::MAX` names nothing
/// (a lookup that finds nothing), not a failure of the store.
fn drive_number(id: u64) -> Option<i64> {
    i64::try_from(id).ok()
}

/// Names resolved per query by [`DriveStore::walk`]: deeper paths take
/// one more query per this many names.
const WALK_DEPTH: usize = 8;

/// The query that finds up to `depth` names below one folder: one row,
/// each level's columns prefixed `l<i>_`, NULL from the first name that
/// does not exist on.
fn walk_sql(engine: crate::Engine, depth: usize) -> String {
    let (columns, joins) = walk_parts(engine, depth, "$2", 3);
    format!("SELECT d.id{columns} FROM drives d{joins} WHERE d.id = $1")
}

/// The query that reads a member's drive, its standing, whether anything
/// on it is locked, and walks up to `depth` names from its top folder
/// (the top folder's id is '').
fn member_walk_sql(engine: crate::Engine, depth: usize) -> String {
    let (walk_columns, walk_joins) = walk_parts(engine, depth, "''", 4);
    format!(
        "{MEMBER_COLUMNS},
         CAST(CASE WHEN EXISTS (SELECT 1 FROM drive_locks l
                                WHERE l.drive_id = d.id AND (l.expires_at = 0 OR l.expires_at > $3))
              THEN 1 ELSE 0 END AS BIGINT) AS locked{walk_columns}
         {MEMBER_TABLES}{walk_joins} WHERE d.id = $1 AND m.account_id = $2"
    )
}

/// `make(engine, depth)` for the engine and depth asked, made once for
/// every engine and every depth up to [`WALK_DEPTH`] the first time
/// `made` is read: these queries run on every request, and making their
/// text was a twentieth of a small PUT's CPU.
fn made_once(
    made: &'static std::sync::OnceLock<Vec<String>>,
    make: fn(crate::Engine, usize) -> String,
    engine: crate::Engine,
    depth: usize,
) -> &'static str {
    let all = made.get_or_init(|| {
        [crate::Engine::Sqlite, crate::Engine::Postgres]
            .into_iter()
            .flat_map(|engine| (0..=WALK_DEPTH).map(move |depth| make(engine, depth)))
            .collect()
    });
    let first = match engine {
        crate::Engine::Sqlite => 0,
        crate::Engine::Postgres => WALK_DEPTH + 1,
    };
    &all[first + depth.min(WALK_DEPTH)]
}

/// A node's columns, as each level of a walk reads them.
const NODE_FIELDS: [&str; 11] = [
    "id",
    "parent_id",
    "name",
    "is_dir",
    "size",
    "blob_id",
    "etag",
    "created_at",
    "modified_at",
    "checksums",
    "has_props",
];

/// The names of level `i`'s columns in a walk's row (`l<i>_<field>`, in
/// the order of [`NODE_FIELDS`]), made once.
fn level_columns(i: usize) -> &'static [String] {
    static MADE: std::sync::OnceLock<Vec<Vec<String>>> = std::sync::OnceLock::new();
    let levels = MADE.get_or_init(|| {
        (1..=WALK_DEPTH)
            .map(|i| NODE_FIELDS.iter().map(|field| format!("l{i}_{field}")).collect())
            .collect()
    });
    &levels[i - 1]
}

/// The columns (each after a comma) and joins of a walk of `depth` names
/// from the folder `parent` (an SQL expression), the names bound from
/// `$<first_name>` on; the drive is `d` and its id `$1`.
fn walk_parts(engine: crate::Engine, depth: usize, parent: &str, first_name: usize) -> (String, String) {
    let mut columns = String::new();
    let mut joins = String::new();
    for i in 1..=depth {
        let parent = if i == 1 {
            parent.to_owned()
        } else {
            format!("n{}.id", i - 1)
        };
        let name = format!("${}", first_name + i - 1);
        joins.push_str(&match engine {
            crate::Engine::Sqlite => format!(
                " LEFT JOIN drive_nodes n{i} ON n{i}.drive_id = $1 AND n{i}.parent_id = {parent} AND n{i}.name = {name}"
            ),
            // Each name looked up in the folder the level above found,
            // whatever PostgreSQL knows of the table: as a join, a plan
            // made while the table had no statistics yet (a new
            // installation's first uploads, whose prepared statements keep
            // it) scanned the whole index for the name and checked the
            // folder afterwards. `LIMIT 1` keeps the lookup from being
            // turned back into a join.
            crate::Engine::Postgres => format!(
                " LEFT JOIN LATERAL (SELECT * FROM drive_nodes
                    WHERE drive_id = $1 AND parent_id = {parent} AND name = {name} LIMIT 1) n{i} ON true"
            ),
        });
        for column in NODE_FIELDS {
            columns.push_str(&format!(", n{i}.{column} AS l{i}_{column}"));
        }
    }
    (columns, joins)
}

/// The nodes of a walk's row, down to the first name missing.
fn walked_nodes(row: &impl Columns, drive_id: u64, depth: usize) -> Result<Vec<Node>, StoreError> {
    let mut found = Vec::with_capacity(depth);
    for i in 1..=depth {
        match walked_node(row, drive_id, i)? {
            Some(node) => found.push(node),
            None => break,
        }
    }
    Ok(found)
}

/// Level `i` of a [`walk_sql`] row, if that name exists.
fn walked_node(row: &impl Columns, drive_id: u64, i: usize) -> Result<Option<Node>, StoreError> {
    let names = level_columns(i);
    let column = |field: &str| -> &str {
        let at = NODE_FIELDS.iter().position(|f| *f == field);
        at.map_or("", |at| names[at].as_str())
    };
    let Some(id) = row.text_or_null(column("id"))? else {
        return Ok(None);
    };
    let text = |name: &str| row.text(column(name));
    let flag = |name: &str| row.flag(column(name));
    Ok(Some(Node {
        id,
        drive_id,
        parent_id: text("parent_id")?,
        name: text("name")?,
        is_dir: flag("is_dir")?,
        size: row.unsigned(column("size"))?,
        blob_id: text("blob_id")?,
        etag: text("etag")?,
        created_at: row.int(column("created_at"))?,
        modified_at: row.int(column("modified_at"))?,
        checksums: text("checksums")?,
        has_props: flag("has_props")?,
    }))
}

/// A file waiting in the commit queue, and who waits for it.
#[derive(Debug)]
pub(crate) struct FileCommit {
    node: Node,
    replaced: Option<Node>,
    inline: Option<Vec<u8>>,
    reply: tokio::sync::oneshot::Sender<Result<PutOutcome, StoreError>>,
}

/// Files committed per transaction at most.
const COMMIT_BATCH: usize = 64;

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

/// The commit queue (see [`commit_files_on_postgres`]) on SQLite, on a
/// thread of its own: a batch of new files is one transaction of its own
/// connection (`commits`, see [`crate::sqlite_commits`]), which the thread
/// runs once it is the process's turn to write; a batch that replaces
/// files goes through `writer`, on `runtime`.
pub(crate) fn commit_files_on_sqlite(
    writer: Writer,
    mut commits: CommitConnection,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<FileCommit>,
    runtime: tokio::runtime::Handle,
) {
    let mut batch = Vec::with_capacity(COMMIT_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < COMMIT_BATCH {
            let Ok(file) = queue.try_recv() else { break };
            batch.push(file);
        }
        let files: Vec<&FileCommit> = batch.iter().collect();
        let committed = if files.iter().all(|f| f.replaced.is_none()) {
            new_file_changes(&files)
                .and_then(|changes| {
                    let _turn = writer.blocking_turn();
                    commits.commit_counts(&changes)
                })
                .map(|counts| new_file_outcomes(&files, counts))
        } else {
            runtime.block_on(commit_batch(&writer, &files))
        };
        let outcomes = outcomes_of(files.len(), committed).into_iter().map(Some).collect();
        answer(&mut batch, outcomes);
    }
}

/// The outcome of each of a batch's `count` files from the batch's.
fn outcomes_of(count: usize, committed: Result<Vec<PutOutcome>, StoreError>) -> Vec<Result<PutOutcome, String>> {
    match committed {
        Ok(done) => done.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(e.to_string()); count],
    }
}

/// Tells each file of `batch` its outcome, and empties the batch.
fn answer(batch: &mut Vec<FileCommit>, outcomes: Vec<Option<Result<PutOutcome, String>>>) {
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
fn new_file_groups(batch: &[FileCommit]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(u64, Vec<usize>)> = Vec::new();
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
const NEW_FILES_PG: &str = "WITH input AS (
        SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[], $8::int8[],
            $9::int8[], $10::text[], $11::bytea[], $12::bool[])
            AS t(id, parent_id, name, size, blob_id, etag, created_at, modified_at, checksums, data, inline)
    ), folders AS (
        SELECT 1 FROM (SELECT DISTINCT parent_id FROM input WHERE parent_id <> '') f,
            LATERAL (SELECT 1 FROM drive_nodes WHERE id = f.parent_id AND is_dir = 1 FOR KEY SHARE) p
    ), charged AS (
        UPDATE drives SET used_bytes = used_bytes + $13
        WHERE id = $1 AND used_bytes + $13 <= quota_bytes
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
    SELECT COUNT(*) FROM charged";

/// Stores `files` (new, one drive, distinct names) with [`NEW_FILES_PG`]:
/// true if all were stored, false if nothing was (a name is taken or
/// they do not all fit), to be committed one by one instead.
async fn insert_new_files_pg(pg: &sqlx::PgPool, files: &[&FileCommit]) -> Result<bool, StoreError> {
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

/// `batch` in one transaction of `writer`, each file as it comes.
async fn commit_batch(writer: &Writer, batch: &[&FileCommit]) -> Result<Vec<PutOutcome>, StoreError> {
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
const NEW_FILE: [&str; 4] = [
    concat!(
        "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, size, blob_id, etag, created_at, modified_at,
            checksums)
         SELECT $1, $2, $3, $4, 0, $5, $6, $7, $8, $9, $10 WHERE ",
        live_folder!("$3", ""),
        " ON CONFLICT (drive_id, parent_id, name) DO NOTHING"
    ),
    "UPDATE drives SET used_bytes = used_bytes + $2 WHERE id = $1 AND used_bytes + $2 <= quota_bytes AND changes() = 1",
    "DELETE FROM drive_nodes WHERE id = $1 AND changes() = 0",
    "INSERT INTO drive_inline (blob_id, data) SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM drive_nodes WHERE id = $3)",
];

/// One new file on PostgreSQL, in one statement: charged to the quota
/// unless its name is taken or its folder is gone (the folder's row
/// share-locked, see [`live_folder`]), inserted if charged, its small
/// contents stored if inserted. All parts see the database as it was
/// when the statement began, so `taken` and `folder` tell a conflict
/// from a full quota.
const NEW_FILE_PG: &str = "WITH folder AS (
        SELECT 1 FROM drive_nodes WHERE id = $3 AND is_dir = 1 FOR KEY SHARE
    ), charged AS (
        UPDATE drives SET used_bytes = used_bytes + $5
        WHERE id = $2 AND used_bytes + $5 <= quota_bytes
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
        CAST(CASE WHEN $3 = '' OR EXISTS (SELECT 1 FROM folder) THEN 1 ELSE 0 END AS BIGINT) AS folder";

/// A new file (nothing replaced) in `tx` on PostgreSQL, as [`put_in`]
/// stores it, in one round trip.
async fn insert_new_file(tx: &mut sqlx::AnyConnection, file: &FileCommit) -> Result<PutOutcome, StoreError> {
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
async fn insert_new_files(tx: &mut sqlx::AnyConnection, files: &[&FileCommit]) -> Result<Vec<PutOutcome>, StoreError> {
    let counts = sqlite_counts(tx, &new_file_changes(files)?).await?;
    Ok(new_file_outcomes(files, counts))
}

/// The [`NEW_FILE`] statements of `files`, in order.
fn new_file_changes<'a>(files: &[&'a FileCommit]) -> Result<Vec<Change<'a>>, StoreError> {
    let mut changes = Vec::with_capacity(files.len() * NEW_FILE.len());
    for file in files {
        let n = &file.node;
        let (drive, size) = (signed(n.drive_id)?, signed(n.size)?);
        changes.push(Change::new(
            NEW_FILE[0],
            vec![
                Arg::Text(&n.id),
                Arg::Int(drive),
                Arg::Text(&n.parent_id),
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
        changes.push(Change::new(NEW_FILE[2], vec![Arg::Text(&n.id)]));
        if let Some(data) = &file.inline {
            changes.push(Change::new(
                NEW_FILE[3],
                vec![Arg::Text(&n.blob_id), Arg::Bytes(data), Arg::Text(&n.id)],
            ));
        }
    }
    Ok(changes)
}

/// Each file's outcome from the counts of its [`new_file_changes`].
fn new_file_outcomes(files: &[&FileCommit], counts: Vec<u64>) -> Vec<PutOutcome> {
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
async fn replace_in(
    conn: &mut sqlx::AnyConnection,
    node: &Node,
    old: &Node,
    inline: Option<&[u8]>,
) -> Result<PutOutcome, StoreError> {
    let delta = signed(node.size)? - signed(old.size)?;
    let charged =
        sqlx::query("UPDATE drives SET used_bytes = used_bytes + $2 WHERE id = $1 AND used_bytes + $2 <= quota_bytes")
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

/// What [`SqlStore::delete_tree`] has deleted so far.
#[derive(Default)]
struct Gone {
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
    async fn delete(&mut self, tx: &mut sqlx::AnyConnection, id: &str) -> Result<(), StoreError> {
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
        if row.int("is_dir")? != 0 {
            self.freed += signed(drive::FOLDER_BYTES)?;
            self.folders.push(id.to_owned());
        }
        Ok(())
    }
}

impl SqlStore {
    /// [`DriveStore::delete_tree`], once: [`crate::retried`] runs it again
    /// when PostgreSQL aborts it to break a deadlock.
    async fn delete_tree_once(&self, node: &Node) -> Result<Vec<String>, StoreError> {
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
    async fn move_node_once(&self, node: &Node, parent_id: &str, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT 1 FROM drive_nodes WHERE drive_id = $1 AND parent_id = $2 AND name = $3")
            .bind(signed(node.drive_id)?)
            .bind(parent_id)
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
            .bind(parent_id)
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

    async fn drive(&self, id: u64) -> Result<Option<Drive>, StoreError> {
        let Some(number) = drive_number(id) else {
            return Ok(None);
        };
        let sql = format!("{COLUMNS} WHERE d.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(number)
            .optional(&self.pool)
            .await?;
        row.as_ref().map(drive_from).transpose()
    }

    async fn drive_of_member(
        &self,
        id: u64,
        account_id: &str,
        now: Millis,
        names: &[&str],
    ) -> Result<Option<MemberDrive>, StoreError> {
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

    async fn drives_for_account(&self, account_id: &str) -> Result<Vec<(Drive, Standing)>, StoreError> {
        let sql = format!("{MEMBER_COLUMNS} {MEMBER_TABLES} WHERE m.account_id = $1 ORDER BY o.name, d.name, d.id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .all(&self.pool)
            .await?;
        rows.iter().map(member_drive_from).collect()
    }

    async fn grants(&self, drive_id: u64) -> Result<Vec<(String, Grant)>, StoreError> {
        let rows = sqlx::query("SELECT account_id, access FROM drive_members WHERE drive_id = $1")
            .bind(signed(drive_id)?)
            .all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let access: String = row.text("access")?;
                Ok((row.text("account_id")?, grant_of(&access)?))
            })
            .collect()
    }

    async fn set_member_access(&self, drive_id: u64, grant: Grant, event: &OrgEvent) -> Result<(), StoreError> {
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
        drive_id: u64,
        account_id: &str,
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
            .bind(account_id)
            .bind(grant.as_str()),
            None => sqlx::query("DELETE FROM drive_members WHERE drive_id = $1 AND account_id = $2")
                .bind(signed(drive_id)?)
                .bind(account_id),
        };
        change.run(&mut *tx).await?;
        crate::identity_store::insert_org_event(&mut tx, event).await?;
        tx.commit().await
    }

    async fn walk(&self, drive_id: u64, names: &[&str]) -> Result<Vec<Node>, StoreError> {
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

    async fn children(&self, drive_id: u64, parent_id: &str) -> Result<Vec<Node>, StoreError> {
        let sql = format!("{NODE_COLUMNS} WHERE drive_id = $1 AND parent_id = $2 ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(signed(drive_id)?)
            .bind(parent_id)
            .all(&self.pool)
            .await?;
        rows.iter().map(node_from).collect()
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
        drive_id: u64,
        parent_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Node>, StoreError> {
        let page = "SELECT id, name, is_dir, size, blob_id, etag, created_at, modified_at, checksums, has_props
             FROM drive_nodes n WHERE drive_id = $1 AND parent_id = $2 AND name > $3 ORDER BY name LIMIT $4";
        let mut nodes = self
            .folder_page(page, (drive_id, parent_id, after, limit), |row| {
                Ok(Node {
                    id: row.text(0)?,
                    drive_id: 0,
                    parent_id: String::new(),
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
            node.parent_id = parent_id.to_owned();
        }
        Ok(nodes)
    }

    /// The same paging as [`Self::children_after`], reading only what a
    /// listing shows: on a folder of 10,000 files, leaving out the ids,
    /// blob ids and checksums nobody asked for took a quarter off a
    /// PROPFIND on SQLite.
    async fn entries_after(
        &self,
        drive_id: u64,
        parent_id: &str,
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
                props_of: (!props_of.is_empty()).then_some(props_of),
            })
        })
        .await
    }

    async fn move_node(&self, node: &Node, parent_id: &str, name: &str) -> Result<bool, StoreError> {
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

    async fn set_modified(&self, node_id: &str, modified_at: Millis) -> Result<(), StoreError> {
        sqlx::query("UPDATE drive_nodes SET modified_at = $2 WHERE id = $1")
            .bind(node_id)
            .bind(modified_at)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(())
    }

    async fn props(&self, node_id: &str) -> Result<Vec<DeadProp>, StoreError> {
        let rows =
            sqlx::query("SELECT namespace, name, xml FROM drive_props WHERE node_id = $1 ORDER BY namespace, name")
                .bind(node_id)
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

    async fn patch_props(&self, node: &Node, changes: &[PropChange]) -> Result<bool, StoreError> {
        let node_id = node.id.as_str();
        let mut tx = self.begin_write().await?;
        let before = props_bytes(&mut tx, node_id).await?;
        for change in changes {
            let query = match change {
                PropChange::Set(prop) => sqlx::query(
                    "INSERT INTO drive_props (node_id, namespace, name, xml) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (node_id, namespace, name) DO UPDATE SET xml = excluded.xml",
                )
                .bind(node_id)
                .bind(prop.namespace.as_str())
                .bind(prop.name.as_str())
                .bind(prop.xml.as_str()),
                PropChange::Remove { namespace, name } => {
                    sqlx::query("DELETE FROM drive_props WHERE node_id = $1 AND namespace = $2 AND name = $3")
                        .bind(node_id)
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

    async fn locks(&self, drive_id: u64, now: Millis) -> Result<Vec<Lock>, StoreError> {
        let sql = format!("{LOCK_COLUMNS} WHERE drive_id = $1 AND (expires_at = 0 OR expires_at > $2) ORDER BY path");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(signed(drive_id)?)
            .bind(now)
            .all(&self.pool)
            .await?;
        rows.iter().map(lock_from).collect()
    }

    async fn add_lock(
        &self,
        drive_id: u64,
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
        sqlx::query(
            "INSERT INTO drive_locks (token, drive_id, path, principal, owner_xml, expires_at, timeout_secs, shared, deep)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(lock.token.as_str())
        .bind(signed(drive_id)?)
        .bind(lock.path.as_str())
        .bind(lock.principal.as_str())
        .bind(lock.owner_xml.as_str())
        .bind(lock.expires_at)
        .bind(signed(lock.timeout_secs)?)
        .bind(i64::from(lock.shared))
        .bind(i64::from(lock.deep))
        .run(&mut *tx).await?;
        tx.commit().await?;
        Ok(None)
    }

    async fn refresh_lock(
        &self,
        drive_id: u64,
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
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(signed(drive_id)?)
            .bind(token)
            .optional(&self.pool)
            .await?;
        row.as_ref().map(lock_from).transpose()
    }

    async fn remove_lock(&self, drive_id: u64, token: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM drive_locks WHERE drive_id = $1 AND token = $2")
            .bind(signed(drive_id)?)
            .bind(token)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn remove_locks_within(&self, drive_id: u64, path: &str) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a folder was made.
    fn stored(outcome: PutOutcome) -> bool {
        matches!(outcome, PutOutcome::Stored { .. })
    }

    /// How each engine reads the nodes of a three-name walk on tables it
    /// has no statistics for, the lines of the plan that look nodes up.
    /// On PostgreSQL, as a prepared statement on a new installation
    /// keeps it: planned while the tables were empty, used after the
    /// first uploads filled them.
    async fn walk_plan(engine: crate::Engine) -> Option<Vec<String>> {
        let url = crate::testing::database_url(engine).await?;
        let store = SqlStore::open(&url).await.unwrap();
        let sql = walk_sql(engine, 3);
        let fill = "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, created_at, modified_at)
            VALUES ($1, 1, $2, $3, 0, 0, 0)";
        let mut conn = store.pool.acquire().await.unwrap();
        for setup in [
            "INSERT INTO organizations (id, name, name_key, created_at) VALUES ('org', 'Org', 'org', 0)",
            "INSERT INTO drives (id, org_id, name, quota_bytes, created_at) VALUES (1, 'org', 'Drive', 1000, 0)",
        ] {
            sqlx::query(setup).execute(&mut *conn).await.unwrap();
        }
        let lines: Vec<String> = match engine {
            crate::Engine::Postgres => {
                sqlx::query(sqlx::AssertSqlSafe(format!("PREPARE walk AS {sql}")))
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                // After five runs PostgreSQL keeps a generic plan.
                for _ in 0..6 {
                    sqlx::query("EXECUTE walk(1, '', 'a', 'b', 'c')")
                        .execute(&mut *conn)
                        .await
                        .unwrap();
                }
                for i in 0..2000 {
                    // Ten folders at the top, the rest spread in them.
                    let (folder, name) = if i < 10 {
                        (String::new(), format!("name-{i}"))
                    } else {
                        (format!("node-{}", i % 10), format!("name-{}", i / 10))
                    };
                    sqlx::query(fill)
                        .bind(format!("node-{i}"))
                        .bind(folder)
                        .bind(name)
                        .execute(&mut *conn)
                        .await
                        .unwrap();
                }
                sqlx::query_scalar("EXPLAIN EXECUTE walk(1, '', 'name-0', 'name-5', 'c')")
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap()
            }
            crate::Engine::Sqlite => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .bind(1_i64)
                    .bind("")
                    .bind("a")
                    .bind("b")
                    .bind("c")
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap();
                rows.iter().map(|r| r.try_get::<String, _>("detail").unwrap()).collect()
            }
        };
        drop(conn);
        store.close().await;
        Some(
            lines
                .into_iter()
                .filter(|l| l.contains(" n") || l.contains("Cond"))
                .collect(),
        )
    }

    #[tokio::test]
    async fn the_has_props_migration_marks_the_nodes_that_already_had_properties() {
        for engine in [crate::Engine::Sqlite, crate::Engine::Postgres] {
            let Some(url) = crate::testing::database_url(engine).await else {
                continue;
            };
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            let migrator = || match engine {
                crate::Engine::Sqlite => sqlx::migrate!("migrations/sqlite"),
                crate::Engine::Postgres => sqlx::migrate!("migrations/postgres"),
            };
            // The schema as it was before the column.
            let mut before = migrator();
            before.migrations = before.migrations.iter().filter(|m| m.version < 17).cloned().collect();
            before.run(&pool).await.unwrap();
            for setup in [
                "INSERT INTO organizations (id, name, name_key, created_at) VALUES ('org', 'Org', 'org', 0)",
                "INSERT INTO drives (id, org_id, name, quota_bytes, created_at) VALUES (1, 'org', 'Drive', 1000, 0)",
                "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, created_at, modified_at)
                 VALUES ('with', 1, '', 'with', 0, 0, 0), ('without', 1, '', 'without', 0, 0, 0)",
                "INSERT INTO drive_props (node_id, namespace, name, xml) VALUES ('with', 'urn:x', 'p', '<p/>')",
            ] {
                sqlx::query(setup).execute(&pool).await.unwrap();
            }
            migrator().run(&pool).await.unwrap();
            let marked: Vec<(String, i64)> =
                sqlx::query_as("SELECT id, CAST(has_props AS BIGINT) FROM drive_nodes ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            assert_eq!(
                marked,
                [("with".to_owned(), 1), ("without".to_owned(), 0)],
                "{engine:?}"
            );
            pool.close().await;
        }
    }

    #[test]
    fn queries_made_once_are_the_ones_asked_for() {
        static MADE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        for engine in [crate::Engine::Sqlite, crate::Engine::Postgres] {
            for depth in 0..=WALK_DEPTH {
                assert_eq!(
                    made_once(&MADE, member_walk_sql, engine, depth),
                    member_walk_sql(engine, depth)
                );
            }
        }
        for i in 1..=WALK_DEPTH {
            assert_eq!(level_columns(i)[4], format!("l{i}_size"));
        }
    }

    #[tokio::test]
    async fn a_walk_looks_each_name_up_in_its_folder_even_without_statistics() {
        for engine in [crate::Engine::Sqlite, crate::Engine::Postgres] {
            let Some(plan) = walk_plan(engine).await else {
                continue;
            };
            let text = plan.join("\n");
            // Each of the three names found through the index, by drive,
            // folder and name.
            let lookups = match engine {
                // `SEARCH n2 USING INDEX … (drive_id=? AND parent_id=? AND name=?)`
                crate::Engine::Sqlite => plan
                    .iter()
                    .filter(|l| l.starts_with("SEARCH n") && l.contains("(drive_id=? AND parent_id=? AND name=?)"))
                    .count(),
                // `Index Cond: ((drive_id = $1) AND (parent_id = drive_nodes.id) AND (name = $4))`
                crate::Engine::Postgres => plan
                    .iter()
                    .filter(|l| {
                        l.contains("Index Cond: ((drive_id = ")
                            && l.contains("AND (parent_id = ")
                            && l.contains("AND (name = ")
                    })
                    .count(),
            };
            assert_eq!(lookups, 3, "{engine:?}: a name is not looked up by its folder:\n{text}");
        }
    }

    /// A new file of drive 1 for [`insert_new_files_pg`], and the
    /// receiver its outcome would go to.
    fn new_file(name: &str, size: u64, inline: bool) -> FileCommit {
        let (reply, _) = tokio::sync::oneshot::channel();
        FileCommit {
            node: Node {
                id: format!("node-{name}"),
                drive_id: 1,
                parent_id: String::new(),
                name: name.to_owned(),
                is_dir: false,
                size,
                blob_id: format!("blob-{name}"),
                etag: format!("etag-{name}"),
                created_at: 1,
                modified_at: 2,
                checksums: String::new(),
                has_props: false,
            },
            replaced: None,
            inline: inline.then(|| vec![7; usize::try_from(size).unwrap()]),
            reply,
        }
    }

    /// Returns once a statement whose text starts with `start` waits for
    /// a row another transaction holds; fails if `task`, which runs it,
    /// ends first or it never waits.
    async fn until_waiting_for_a_row<T>(pg: &sqlx::PgPool, start: &str, task: &tokio::task::JoinHandle<T>) {
        let pattern = format!("{start}%");
        for _ in 0..1000 {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
            )
            .bind(&pattern)
            .fetch_one(pg)
            .await
            .unwrap();
            if waiting > 0 {
                return;
            }
            assert!(
                !task.is_finished(),
                "`{start}…` ended without waiting for the other writer"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("`{start}…` never waited for the other writer");
    }

    /// A store on `engine` with organization `org` and drive 1 (quota
    /// 10,000 bytes), or `None` without that engine's database.
    async fn store_with_drive(engine: crate::Engine) -> Option<SqlStore> {
        let url = crate::testing::database_url(engine).await?;
        let store = SqlStore::open(&url).await.unwrap();
        for setup in [
            "INSERT INTO organizations (id, name, name_key, created_at) VALUES ('org', 'Org', 'org', 0)",
            "INSERT INTO drives (id, org_id, name, quota_bytes, created_at) VALUES (1, 'org', 'Drive', 10000, 0)",
        ] {
            sqlx::query(setup).execute(&*store.writer.turn().await).await.unwrap();
        }
        Some(store)
    }

    /// Drive 1's used bytes and node ids.
    async fn drive_state(store: &SqlStore) -> (i64, Vec<String>) {
        let used = sqlx::query_scalar("SELECT used_bytes FROM drives WHERE id = 1")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        let ids = sqlx::query_scalar("SELECT id FROM drive_nodes ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        (used, ids)
    }

    fn folder(id: &str, parent_id: &str) -> Node {
        Node {
            is_dir: true,
            size: 0,
            blob_id: String::new(),
            parent_id: parent_id.to_owned(),
            ..new_file(id, 0, false).node
        }
    }

    #[tokio::test]
    async fn nothing_is_written_into_a_folder_that_is_gone() {
        for engine in [crate::Engine::Sqlite, crate::Engine::Postgres] {
            let Some(store) = store_with_drive(engine).await else {
                continue;
            };
            let gone = folder("gone", "");
            assert!(stored(store.create_folder(&gone).await.unwrap()));
            let top = new_file("top", 100, true).node;
            assert_eq!(
                store.put_file(&top, None, Some(&[7; 100])).await.unwrap(),
                PutOutcome::Stored { replaced_blob: None }
            );
            store.delete_tree(&gone).await.unwrap();
            assert_eq!(
                drive_state(&store).await,
                (100, vec!["node-top".to_owned()]),
                "{engine:?}"
            );

            // An upload into the folder, small or not, a folder made in
            // it, a node moved or copied into it: each is refused and
            // changes nothing.
            for (name, inline) in [("small", true), ("large", false)] {
                let mut file = new_file(name, 50, inline);
                file.node.parent_id = gone.id.clone();
                let outcome = store.put_file(&file.node, None, file.inline.as_deref()).await.unwrap();
                assert_eq!(outcome, PutOutcome::Conflict, "{engine:?} {name}");
            }
            assert!(
                !stored(store.create_folder(&folder("inner", &gone.id)).await.unwrap()),
                "{engine:?}"
            );
            assert!(!store.move_node(&top, &gone.id, "moved").await.unwrap(), "{engine:?}");
            let copy = Node {
                id: "node-copy".into(),
                parent_id: gone.id.clone(),
                ..top.clone()
            };
            assert_eq!(
                store.copy_file(&top, &copy).await.unwrap(),
                PutOutcome::Conflict,
                "{engine:?}"
            );
            assert_eq!(
                drive_state(&store).await,
                (100, vec!["node-top".to_owned()]),
                "{engine:?}"
            );

            // Into a folder that is there, all of them work.
            let here = folder("here", "");
            assert!(stored(store.create_folder(&here).await.unwrap()));
            let mut file = new_file("small", 50, true);
            file.node.parent_id = here.id.clone();
            let outcome = store.put_file(&file.node, None, file.inline.as_deref()).await.unwrap();
            assert_eq!(outcome, PutOutcome::Stored { replaced_blob: None }, "{engine:?}");
            assert!(stored(store.create_folder(&folder("inner", &here.id)).await.unwrap()));
            assert!(store.move_node(&top, &here.id, "moved").await.unwrap());
            let copy = Node {
                parent_id: here.id.clone(),
                ..copy
            };
            assert_eq!(
                store.copy_file(&top, &copy).await.unwrap(),
                PutOutcome::Stored { replaced_blob: None }
            );
            // Two folders ("here", "inner") and the files' 250 bytes.
            let folders = 2 * signed(drive::FOLDER_BYTES).unwrap();
            assert_eq!(drive_state(&store).await.0, 250 + folders, "{engine:?}");
            store.close().await;
        }
    }

    #[tokio::test]
    async fn a_group_of_new_files_looks_its_folders_and_names_up_even_without_statistics() {
        let Some(store) = store_with_drive(crate::Engine::Postgres).await else {
            return;
        };
        let pg = store.native.pg().cloned().unwrap();
        let mut conn = pg.acquire().await.unwrap();
        // A new drive's first folder and its first files.
        let fill = "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, created_at, modified_at)
             SELECT 'node-' || i, 1, CASE WHEN i = 0 THEN '' ELSE 'node-0' END, 'name-' || i, CASE WHEN i = 0 THEN 1 ELSE 0 END,
                0, 0
             FROM generate_series($1::int8, $2::int8) i";
        sqlx::query(fill)
            .bind(0_i64)
            .bind(10_i64)
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PREPARE files(int8, text[], text[], text[], int8[], text[], text[], int8[], int8[], text[], bytea[],
                bool[], int8) AS {NEW_FILES_PG}"
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
        // Planned while the tables are nearly empty; after five runs
        // PostgreSQL keeps a generic plan. The folder is missing: nothing
        // is stored.
        let run = "files(1, '{a}', '{missing}', '{a}', '{1}', '{b}', '{e}', '{1}', '{1}', '{\"\"}', '{\"\\\\x00\"}',
            '{true}', 1)";
        for _ in 0..6 {
            let stored: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXECUTE {run}")))
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(stored, 0);
        }
        sqlx::query(fill)
            .bind(11_i64)
            .bind(5000_i64)
            .execute(&mut *conn)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE {run}")))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert!(
            !plan.iter().any(|line| line.contains("Seq Scan on drive_nodes")),
            "{}",
            plan.join("\n")
        );
        drop(conn);
        store.close().await;
    }

    /// A transaction of another writer that holds `first`'s row, starts
    /// `task` and, once `task` waits for that row (its statement starting
    /// with `waiting`), asks for `second`'s, which `task` holds: a
    /// deadlock, which PostgreSQL breaks by aborting `task`'s transaction
    /// (it waited first; this one waits 10 s before looking). Gives both
    /// rows back once it has them; `task`.
    async fn deadlock<T>(
        pg: &sqlx::PgPool,
        [first, second]: [&str; 2],
        waiting: &str,
        task: impl FnOnce() -> tokio::task::JoinHandle<T>,
    ) -> tokio::task::JoinHandle<T> {
        let mut other = pg.begin().await.unwrap();
        sqlx::query("SET LOCAL deadlock_timeout = '10s'")
            .execute(&mut *other)
            .await
            .unwrap();
        let lock = "SELECT 1 FROM drive_nodes WHERE id = $1 FOR UPDATE";
        sqlx::query(lock).bind(first).execute(&mut *other).await.unwrap();
        let task = task();
        until_waiting_for_a_row(pg, waiting, &task).await;
        sqlx::query(lock).bind(second).execute(&mut *other).await.unwrap();
        other.rollback().await.unwrap();
        task
    }

    #[tokio::test]
    async fn postgres_runs_a_move_or_a_deletion_again_when_it_aborts_it_to_break_a_deadlock() {
        let Some(store) = store_with_drive(crate::Engine::Postgres).await else {
            return;
        };
        let pg = store.native.pg().cloned().unwrap();
        let top = folder("top", "");
        let into = folder("into", &top.id);
        assert!(stored(store.create_folder(&top).await.unwrap()));
        assert!(stored(store.create_folder(&into).await.unwrap()));
        let mut file = new_file("file", 100, true).node;
        file.parent_id = top.id.clone();
        store.put_file(&file, None, Some(&[7; 100])).await.unwrap();

        // The move holds the folder it moves into and waits for the file,
        // which the other writer holds before asking for the folder.
        let moving = deadlock(&pg, [&file.id, &into.id], "UPDATE drive_nodes SET parent_id", || {
            let (store, file, into) = (store.clone(), file.clone(), into.id.clone());
            tokio::spawn(async move { store.move_node(&file, &into, "moved").await })
        })
        .await;
        assert!(moving.await.unwrap().unwrap(), "the move, run again, is done");
        file.parent_id = into.id.clone();
        file.name = "moved".into();

        // The deletion holds the top folder and waits for the file, which
        // the other writer holds before asking for the top folder.
        let deleting = deadlock(&pg, [&file.id, &top.id], "DELETE FROM drive_nodes", || {
            let (store, top) = (store.clone(), top.clone());
            tokio::spawn(async move { store.delete_tree(&top).await })
        })
        .await;
        deleting.await.unwrap().unwrap();
        assert_eq!(drive_state(&store).await, (0, Vec::<String>::new()));
        store.close().await;
    }

    #[tokio::test]
    async fn postgres_commits_a_group_of_files_aborted_for_a_deadlock_file_by_file() {
        let Some(store) = store_with_drive(crate::Engine::Postgres).await else {
            return;
        };
        let pg = store.native.pg().cloned().unwrap();
        let (a, b) = (folder("a", ""), folder("b", ""));
        assert!(stored(store.create_folder(&a).await.unwrap()));
        assert!(stored(store.create_folder(&b).await.unwrap()));
        // The group holds its folders one after the other, in an order of
        // PostgreSQL's choosing; the other writer takes them one way, then
        // the other, and one of the two meets the group the other way
        // round.
        for (round, (first, second)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
            let (files, queue) = tokio::sync::mpsc::unbounded_channel();
            let mut answers = Vec::new();
            for (name, into) in [("x", &a), ("y", &b)] {
                let mut file = new_file(&format!("{name}{round}"), 10, true);
                file.node.parent_id = into.id.clone();
                let (reply, answer) = tokio::sync::oneshot::channel();
                file.reply = reply;
                files.send(file).unwrap();
                answers.push(answer);
            }
            drop(files);
            let committing = deadlock(&pg, [&first.id, &second.id], "WITH input AS", || {
                tokio::spawn(commit_files_on_postgres(store.writer.clone(), pg.clone(), queue))
            })
            .await;
            committing.await.unwrap();
            for answer in answers {
                assert_eq!(
                    answer.await.unwrap().unwrap(),
                    PutOutcome::Stored { replaced_blob: None },
                    "round {round}"
                );
            }
        }
        let (used, nodes) = drive_state(&store).await;
        let folders = 2 * signed(drive::FOLDER_BYTES).unwrap();
        assert_eq!((used, nodes.len()), (40 + folders, 6));
        store.close().await;
    }

    #[tokio::test]
    async fn a_folder_deleted_while_a_file_is_written_into_it_takes_the_file_along_on_postgres() {
        let Some(store) = store_with_drive(crate::Engine::Postgres).await else {
            return;
        };
        let pg = store.native.pg().cloned().unwrap();
        let gone = folder("gone", "");
        assert!(stored(store.create_folder(&gone).await.unwrap()));

        // Another process writes a file into the folder, as the commit
        // of an upload does: the folder's row share-locked, the file
        // charged and inserted. It has not committed when the deletion
        // reads the folder's tree.
        let mut other = pg.begin().await.unwrap();
        let mut file = new_file("late", 40, true);
        file.node.parent_id = gone.id.clone();
        // Small contents' ids start with `i`.
        file.node.blob_id = "ilate".into();
        let stored = sqlx::query_scalar::<_, i64>(NEW_FILES_PG)
            .bind(1_i64)
            .bind(vec![file.node.id.as_str()])
            .bind(vec![gone.id.as_str()])
            .bind(vec!["late"])
            .bind(vec![40_i64])
            .bind(vec![file.node.blob_id.as_str()])
            .bind(vec!["etag"])
            .bind(vec![1_i64])
            .bind(vec![2_i64])
            .bind(vec![""])
            .bind(vec![file.inline.as_deref().unwrap()])
            .bind(vec![true])
            .bind(40_i64)
            .fetch_one(&mut *other)
            .await
            .unwrap();
        assert_eq!(stored, 1);
        let deleting = {
            let store = store.clone();
            let gone = gone.clone();
            tokio::spawn(async move { store.delete_tree(&gone).await })
        };
        // The deletion waits for the folder's row; then the write commits.
        until_waiting_for_a_row(&pg, "DELETE FROM drive_nodes", &deleting).await;
        other.commit().await.unwrap();
        deleting.await.unwrap().unwrap();
        // The file went with its folder, and its bytes with it.
        assert_eq!(drive_state(&store).await, (0, Vec::<String>::new()));
        let contents: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drive_inline")
            .fetch_one(&pg)
            .await
            .unwrap();
        assert_eq!(contents, 0);
        store.close().await;
    }

    #[tokio::test]
    async fn a_group_of_new_files_is_stored_whole_or_not_at_all_on_postgres() {
        let Some(store) = store_with_drive(crate::Engine::Postgres).await else {
            return;
        };
        let pg = store.native.pg().cloned().unwrap();
        let state = || async {
            let used: i64 = sqlx::query_scalar("SELECT used_bytes FROM drives WHERE id = 1")
                .fetch_one(&pg)
                .await
                .unwrap();
            let nodes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drive_nodes")
                .fetch_one(&pg)
                .await
                .unwrap();
            let inline: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drive_inline")
                .fetch_one(&pg)
                .await
                .unwrap();
            (used, nodes, inline)
        };
        let (a, b) = (new_file("a", 1000, true), new_file("b", 2000, false));
        assert!(insert_new_files_pg(&pg, &[&a, &b]).await.unwrap());
        assert_eq!(state().await, (3000, 2, 1));
        let stored: (String, i64, String, i64, i64) = sqlx::query_as(
            "SELECT n.parent_id, n.size, n.etag, n.created_at, n.modified_at
             FROM drive_nodes n JOIN drive_inline i ON i.blob_id = n.blob_id WHERE n.name = 'a'",
        )
        .fetch_one(&pg)
        .await
        .unwrap();
        assert_eq!(stored, (String::new(), 1000, "etag-a".to_owned(), 1, 2));

        // One name of the group taken, or the group past the quota:
        // nothing of it is stored or charged.
        let (c, taken) = (new_file("c", 10, true), new_file("a", 10, true));
        assert!(!insert_new_files_pg(&pg, &[&c, &taken]).await.unwrap());
        let (d, big) = (new_file("d", 10, false), new_file("e", 7000, false));
        assert!(!insert_new_files_pg(&pg, &[&d, &big]).await.unwrap());
        assert_eq!(state().await, (3000, 2, 1));

        // A name taken by a writer whose transaction commits while the
        // statement waits on it: the statement's check did not see it,
        // the insert fails as a duplicate, and the charge is undone.
        let mut other = pg.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, created_at, modified_at)
             VALUES ('other', 1, '', 'f', 1, 0, 0)",
        )
        .execute(&mut *other)
        .await
        .unwrap();
        let (f, g) = (new_file("f", 10, true), new_file("g", 10, true));
        let pool = pg.clone();
        let waiting = tokio::spawn(async move { insert_new_files_pg(&pool, &[&g, &f]).await });
        // Committed once the statement waits on the row (so its check
        // ran before the row was there).
        until_waiting_for_a_row(&pg, "WITH input AS", &waiting).await;
        other.commit().await.unwrap();
        assert!(!waiting.await.unwrap().unwrap());
        assert_eq!(state().await, (3000, 3, 1));
        store.close().await;
    }
}
