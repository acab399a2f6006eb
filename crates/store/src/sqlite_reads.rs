//! SQLite's hot reads without sqlx's hand-off: every request's
//! access-and-walk query, path walks, folder pages and small files'
//! contents.
//!
//! sqlx runs each SQLite connection on a thread of its own: a query is
//! sent to that thread, and its rows come back one message at a time, each
//! waking the task that waits for them. For the access-and-walk query that
//! every request runs (a few index lookups, tens of microseconds), those
//! hand-offs and wake-ups cost more CPU than the query. Here the short
//! reads run on the calling task instead, and a folder page (milliseconds)
//! on a blocking thread, one hand-off per page, on read-only connections
//! of our own (rusqlite, over the same SQLite library sqlx links). In WAL
//! mode a reader never waits for the writer, so the task is held only for
//! the lookups themselves.
//!
//! Writes go through sqlx's writer connection, or for files through the
//! commit queue's own (`sqlite_commits`); these connections cannot write
//! (they are opened read-only).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use identity::StoreError;
use rusqlite::{Connection, OpenFlags, ToSql};

/// Connections kept open between reads; more are opened while more
/// requests read at once, and closed afterwards.
const IDLE_READERS: usize = 8;

/// Reads at once on blocking threads (folder pages). Each holds a
/// connection, so this bounds how many a burst of listings opens; the
/// reads on the calling task are bounded by the runtime's threads.
const BLOCKING_READERS: usize = 8;

/// Read-only connections to the SQLite database, used on the calling task
/// or, for folder pages, on a blocking thread.
#[derive(Debug)]
pub(crate) struct SqliteReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    blocking: Arc<tokio::sync::Semaphore>,
}

pub(crate) fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteReads {
    /// For the database of `url` (`sqlite://PATH...`), which must exist:
    /// opens one connection at once, so that a database it cannot read is
    /// an error when the store opens rather than on the first request.
    pub(crate) fn open(url: &str) -> anyhow::Result<Self> {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
        let reads = Self {
            path: options.get_filename().to_owned(),
            idle: Mutex::new(Vec::new()),
            blocking: Arc::new(tokio::sync::Semaphore::new(BLOCKING_READERS)),
        };
        let first = reads
            .connect()
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database for reading: {e}"))?;
        reads.put_back(first);
        Ok(reads)
    }

    /// The database file.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// A turn to read on a blocking thread, held while it reads.
    pub(crate) async fn blocking_turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        self.blocking
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        // The same patience as sqlx's connections, for the rare moments a
        // WAL reader must wait (a checkpoint resetting the log).
        conn.busy_timeout(Duration::from_secs(5)).map_err(failed)?;
        // Every depth of the access-and-walk query and of the walk stays
        // prepared (nine and eight of them).
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
    }

    /// Runs `read` on an idle connection (or a new one), then keeps the
    /// connection for the next read unless it was left inside a
    /// transaction.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = read(&conn);
        if conn.is_autocommit() {
            self.put_back(conn);
        }
        result
    }

    /// `sql` (its statement prepared once per connection) run with `args`
    /// bound to `$1`, `$2`, ..., its rows handed to `take`.
    fn query<T>(
        &self,
        sql: &str,
        args: &[&dyn ToSql],
        take: impl FnOnce(rusqlite::Rows<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(sql).map_err(failed)?;
            bind_numbered(&mut statement, args)?;
            take(statement.raw_query())
        })
    }

    /// Every row of `sql` with `args`, as `decode` reads each.
    pub(crate) fn rows<T>(
        &self,
        sql: &str,
        args: &[&dyn ToSql],
        decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.query(sql, args, |mut rows| {
            let mut all = Vec::new();
            while let Some(row) = rows.next().map_err(failed)? {
                all.push(decode(row)?);
            }
            Ok(all)
        })
    }

    /// The first row of `sql` with `args`, as `decode` reads it.
    pub(crate) fn first_row<T>(
        &self,
        sql: &str,
        args: &[&dyn ToSql],
        decode: impl FnOnce(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.query(sql, args, |mut rows| {
            rows.next().map_err(failed)?.map(decode).transpose()
        })
    }
}

/// Binds `args` to the placeholders `$1`, `$2`, ... of `statement`, by
/// name: SQLite numbers named placeholders in the order they first appear
/// in the text, which need not be theirs.
pub(crate) fn bind_numbered(statement: &mut rusqlite::Statement<'_>, args: &[&dyn ToSql]) -> Result<(), StoreError> {
    use std::fmt::Write;
    let mut name = String::with_capacity(4);
    for (i, arg) in args.iter().enumerate() {
        name.clear();
        let _ = write!(name, "${}", i + 1);
        if let Some(at) = statement.parameter_index(&name).map_err(failed)? {
            statement.raw_bind_parameter(at, arg).map_err(failed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SQLite database in WAL mode, as the store opens it, with one
    /// table; its URL.
    async fn database() -> (sqlx::SqlitePool, String) {
        let dir = crate::testing::temp_dir("sqlite-reads");
        let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await.unwrap();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        (pool, url)
    }

    fn value_of(reads: &SqliteReads, key: &str) -> Option<i64> {
        reads
            .first_row("SELECT v FROM t WHERE k = $1", &[&key], |row| {
                row.get(0).map_err(failed)
            })
            .unwrap()
    }

    #[tokio::test]
    async fn placeholders_bind_by_their_number_wherever_they_first_appear() {
        let (_pool, url) = database().await;
        let reads = SqliteReads::open(&url).unwrap();
        let row = reads
            .first_row("SELECT $3 || $1, $2", &[&"a", &7_i64, &"c"], |row| {
                Ok((
                    row.get::<_, String>(0).map_err(failed)?,
                    row.get::<_, i64>(1).map_err(failed)?,
                ))
            })
            .unwrap();
        assert_eq!(row, Some(("ca".to_owned(), 7)));
    }

    #[tokio::test]
    async fn reads_see_each_commit_of_the_writer_at_once() {
        let (pool, url) = database().await;
        let reads = SqliteReads::open(&url).unwrap();
        assert_eq!(value_of(&reads, "a"), None);
        for v in 1..=3_i64 {
            sqlx::query("INSERT INTO t (k, v) VALUES ('a', $1) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
                .bind(v)
                .execute(&pool)
                .await
                .unwrap();
            assert_eq!(value_of(&reads, "a"), Some(v));
        }
    }

    #[tokio::test]
    async fn the_read_connections_cannot_write() {
        let (pool, url) = database().await;
        let reads = SqliteReads::open(&url).unwrap();
        let wrote = reads.read(|conn| conn.execute("INSERT INTO t (k, v) VALUES ('b', 1)", []).map_err(failed));
        let error = wrote.unwrap_err().to_string();
        assert!(error.contains("readonly"), "{error}");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 0);
    }

    #[tokio::test]
    async fn blocking_reads_beyond_their_turns_wait_for_one() {
        let (_pool, url) = database().await;
        let reads = SqliteReads::open(&url).unwrap();
        let mut turns = Vec::new();
        for _ in 0..BLOCKING_READERS {
            turns.push(reads.blocking_turn().await.unwrap());
        }
        let waiting = reads.blocking_turn();
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err(),
            "a read beyond the turns started at once"
        );
        turns.pop();
        let _turn = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("a turn handed back goes to the read waiting")
            .unwrap();
    }

    #[test]
    fn a_database_that_is_not_there_is_an_error_when_opened() {
        let dir = crate::testing::temp_dir("sqlite-reads");
        let url = format!("sqlite://{}?mode=rwc", dir.join("missing.db").display());
        let error = SqliteReads::open(&url).unwrap_err().to_string();
        assert!(error.contains("cannot open the SQLite database for reading"), "{error}");
    }
}
