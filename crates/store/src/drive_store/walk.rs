//! Reading the tree: the walk of a path in one query (with the member's
//! access to the drive), and folder listings page by page.

use drive::{DriveId, Node, NodeId};
use identity::StoreError;

use super::postgres::pg_page_columns;
use super::rows::{MEMBER_COLUMNS, MEMBER_TABLES, node_named, signed};
use crate::db::{Columns, Run};
use crate::{Native, SqlStore};

/// A folder page's row, its columns by position, whichever driver read
/// it.
pub(super) trait PageRow {
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn text(&self, i: usize) -> Result<String, StoreError>;
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
    pub(super) async fn folder_page<T: Send + 'static>(
        &self,
        page: &str,
        (drive_id, parent_id, after, limit): (DriveId, &NodeId, &str, u32),
        decode: fn(&dyn PageRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let (drive, limit) = (signed(drive_id)?, i64::from(limit));
        match &self.native {
            Native::Postgres(pg) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(page.to_owned()))
                    .bind(drive)
                    .bind(parent_id.as_str())
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
                let (page, parent, after) = (page.to_owned(), parent_id.as_str().to_owned(), after.to_owned());
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

/// Names resolved per query by [`DriveStore::walk`]: deeper paths take
/// one more query per this many names.
pub(super) const WALK_DEPTH: usize = 8;

/// The query that finds up to `depth` names below one folder: one row,
/// each level's columns prefixed `l<i>_`, NULL from the first name that
/// does not exist on.
pub(super) fn walk_sql(engine: crate::Engine, depth: usize) -> String {
    let (columns, joins) = walk_parts(engine, depth, "$2", 3);
    format!("SELECT d.id{columns} FROM drives d{joins} WHERE d.id = $1")
}

/// The query that reads a member's drive, its standing, whether anything
/// on it is locked, and walks up to `depth` names from its top folder
/// (the top folder's id is '').
pub(super) fn member_walk_sql(engine: crate::Engine, depth: usize) -> String {
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
pub(super) fn made_once(
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
pub(super) const NODE_FIELDS: [&str; 11] = [
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
pub(super) fn level_columns(i: usize) -> &'static [String] {
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
pub(super) fn walk_parts(engine: crate::Engine, depth: usize, parent: &str, first_name: usize) -> (String, String) {
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
pub(super) fn walked_nodes(row: &impl Columns, drive_id: DriveId, depth: usize) -> Result<Vec<Node>, StoreError> {
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
pub(super) fn walked_node(row: &impl Columns, drive_id: DriveId, i: usize) -> Result<Option<Node>, StoreError> {
    let names = level_columns(i);
    let column = |field: &str| -> &'static str {
        let at = NODE_FIELDS.iter().position(|f| *f == field);
        at.map_or("", |at| names[at].as_str())
    };
    // A name that does not exist leaves its level NULL.
    if row.text_or_null(column("id"))?.is_none() {
        return Ok(None);
    }
    node_named(row, drive_id, column).map(Some)
}
