//! The SQLite connection the commit queue writes files with, on a thread
//! of its own (`drive_store::commit_files_on_sqlite`).
//!
//! Through sqlx, a batch of files was a hand-off to sqlx's connection
//! thread and a message back per statement, each waking the queue's task,
//! then a task spawned to hand the connection back and a round trip to
//! test it: with 8 clients uploading 4 KiB files, a batch of 4 took 700–1,000
//! µs where SQLite alone takes about 420. Here the queue's thread runs the
//! statements itself, and its turn to write is taken from the process's
//! other writer without waking anyone ([`crate::writer`]).

use std::path::Path;
use std::time::Duration;

use identity::StoreError;
use rusqlite::{Connection, OpenFlags, ToSql};

use crate::changes::{Arg, Change};
use crate::sqlite_reads::{bind_numbered, failed};

/// A read-write connection for the commit queue's transactions.
#[derive(Debug)]
pub(crate) struct CommitConnection {
    path: std::path::PathBuf,
    conn: Option<Connection>,
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    // Another process's writer (`cloudkeep admin`) may hold the lock; as
    // sqlx's connections do, wait up to five seconds for it.
    conn.busy_timeout(Duration::from_secs(5)).map_err(failed)?;
    // As sqlx's connections: an acknowledged file survives a power cut
    // (the log is synced at every commit), and drives' references hold.
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(failed)?;
    let synchronous: i64 = conn
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .map_err(failed)?;
    if synchronous != 2 {
        return Err(StoreError::Backend(format!(
            "SQLite would not sync every commit (synchronous = {synchronous})"
        )));
    }
    Ok(conn)
}

impl CommitConnection {
    /// For the database at `path`, which must exist and be in WAL mode.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = connect(path)?;
        Ok(Self {
            path: path.to_owned(),
            conn: Some(conn),
        })
    }

    /// Runs `changes` as one transaction, `BEGIN IMMEDIATE` to `COMMIT`,
    /// whatever their counts; those counts. On an error nothing is
    /// changed: the transaction is rolled back, and if that fails too the
    /// connection is closed and the next transaction opens a new one.
    pub(crate) fn commit_counts(&mut self, changes: &[Change<'_>]) -> Result<Vec<u64>, StoreError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let counts = run(&conn, changes);
        if counts.is_err() && !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            return counts;
        }
        self.conn = Some(conn);
        counts
    }
}

fn run(conn: &Connection, changes: &[Change<'_>]) -> Result<Vec<u64>, StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(failed)?;
    let mut counts = Vec::with_capacity(changes.len());
    let mut args: Vec<&dyn ToSql> = Vec::new();
    for change in changes {
        let mut statement = conn.prepare_cached(change.sql()).map_err(failed)?;
        args.clear();
        args.extend(change.args().iter().map(|arg| match arg {
            Arg::Text(v) => v as &dyn ToSql,
            Arg::Int(v) => v as &dyn ToSql,
            Arg::Bytes(v) => v as &dyn ToSql,
        }));
        bind_numbered(&mut statement, &args)?;
        counts.push(statement.raw_execute().map_err(failed)? as u64);
    }
    conn.execute_batch("COMMIT").map_err(failed)?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::changes::tests::{SET, one_writer, values};

    /// A SQLite database in WAL mode, as the store opens it, with the
    /// table of [`one_writer`]; its file.
    async fn database() -> (sqlx::AnyPool, std::path::PathBuf) {
        let path = crate::testing::temp_dir("sqlite-commits").join("test.db");
        let pool = one_writer(&format!("sqlite://{}?mode=rwc", path.display())).await;
        sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await.unwrap();
        (pool, path)
    }

    #[tokio::test]
    async fn a_transaction_commits_whatever_its_counts_and_an_error_undoes_it_all() {
        let (pool, path) = database().await;
        let mut commits = CommitConnection::open(&path).unwrap();

        // Counts of 1 and 0: both told, and what changed is kept.
        let missing = [
            Change::new(SET, vec![Arg::Int(1), Arg::Int(11)]),
            Change::new(SET, vec![Arg::Int(3), Arg::Int(30)]),
        ];
        assert_eq!(commits.commit_counts(&missing).unwrap(), [1, 0]);
        assert_eq!(values(&pool).await, [11, 0]);

        // An error undoes what came before it in the transaction.
        let failing = [
            Change::new(SET, vec![Arg::Int(1), Arg::Int(12)]),
            Change::new("INSERT INTO t (id, n) VALUES ($1, 0)", vec![Arg::Int(2)]),
        ];
        assert!(commits.commit_counts(&failing).is_err());
        assert_eq!(values(&pool).await, [11, 0]);

        // And the connection takes the next transaction; placeholders bind
        // by their number, not by where they first appear.
        let both = [
            Change::new(SET, vec![Arg::Int(1), Arg::Int(10)]),
            Change::new(SET, vec![Arg::Int(2), Arg::Int(20)]),
        ];
        assert_eq!(commits.commit_counts(&both).unwrap(), [1, 1]);
        assert_eq!(values(&pool).await, [10, 20]);
    }

    #[tokio::test]
    async fn every_commit_is_synced_and_references_are_enforced() {
        let (pool, path) = database().await;
        let commits = CommitConnection::open(&path).unwrap();
        let conn = commits.conn.as_ref().unwrap();
        let pragma = |name: &str| -> i64 { conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0)).unwrap() };
        assert_eq!(pragma("synchronous"), 2, "FULL");
        assert_eq!(pragma("foreign_keys"), 1);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
        assert_eq!(mode, "wal");
        pool.close().await;
    }
}
