//! Where a process's writes run, and the turns its SQLite writers take.
//!
//! SQLite lets one connection write at a time, and a connection that finds
//! the file locked sleeps in SQLite's busy handler (1 ms, 2 ms, 5 ms, … on
//! every retry). A process has two SQLite writers: sqlx's writer
//! connection, for every write but files, and the commit queue's own
//! connection, which commits batches of files on a thread of its own
//! (`drive_store::commit_files_on_sqlite`). They take turns here before
//! they write, in the order they asked, so neither ever meets the other on
//! the file lock. Another process (`cloudkeep admin` while the server
//! runs) still meets them there. On PostgreSQL, whose connections write
//! side by side, a turn is given at once.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::{Mutex, OwnedMutexGuard};

use identity::StoreError;

use crate::Engine;
use crate::db::backend;

/// The pool writes go to: on SQLite one connection, so that the
/// process's writers queue for it in order; on PostgreSQL, the store's
/// pool.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    pool: AnyPool,
    engine: Engine,
    turns: Arc<Mutex<()>>,
}

/// This process's turn to write, held until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    /// None on PostgreSQL.
    guard: Option<OwnedMutexGuard<()>>,
}

/// The writer pool during a turn: for one statement, the turn lasting as
/// long as the statement that takes it (`.execute(&*writer.turn().await)`).
pub(crate) struct Turn<'a> {
    pool: &'a AnyPool,
    _held: Held,
}

impl Deref for Turn<'_> {
    type Target = AnyPool;

    fn deref(&self) -> &AnyPool {
        self.pool
    }
}

/// A write transaction, with the turn it holds until it ends.
pub(crate) struct WriteTx {
    // Both there until `commit` or `drop` takes them.
    tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
    held: Option<Held>,
}

impl WriteTx {
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let _held = self.held.take();
        match self.tx.take() {
            Some(tx) => tx.commit().await.map_err(backend),
            None => Ok(()),
        }
    }
}

/// A transaction dropped before it committed: sqlx sends the rollback on
/// its way without waiting for it (to SQLite's connection thread, or with
/// the connection's next use on PostgreSQL), so the turn is kept until the
/// rollback has run; otherwise the next writer could find SQLite's lock
/// still held and sleep in the busy handler.
impl Drop for WriteTx {
    fn drop(&mut self) {
        let (Some(tx), Some(held)) = (self.tx.take(), self.held.take()) else {
            return;
        };
        if held.guard.is_none() {
            // PostgreSQL: no turn to keep; sqlx's own rollback will do.
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "rolling back a write transaction failed");
                }
                drop(held);
            });
        }
    }
}

impl Deref for WriteTx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &sqlx::AnyConnection {
        self.tx.as_ref().expect("a transaction is there until it ends")
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        self.tx.as_mut().expect("a transaction is there until it ends")
    }
}

/// The writer connection, with the turn it holds until dropped.
pub(crate) struct WriteConnection {
    conn: sqlx::pool::PoolConnection<sqlx::Any>,
    _held: Held,
}

impl WriteConnection {
    /// Closes the connection instead of handing it back to the pool.
    pub(crate) fn close_on_drop(&mut self) {
        self.conn.close_on_drop();
    }
}

impl Deref for WriteConnection {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &sqlx::AnyConnection {
        &self.conn
    }
}

impl DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.conn
    }
}

impl Writer {
    pub(crate) fn new(pool: AnyPool, engine: Engine) -> Self {
        Self {
            pool,
            engine,
            turns: Arc::new(Mutex::new(())),
        }
    }

    pub(crate) fn engine(&self) -> Engine {
        self.engine
    }

    async fn held(&self) -> Held {
        match self.engine {
            Engine::Sqlite => Held {
                guard: Some(self.turns.clone().lock_owned().await),
            },
            Engine::Postgres => Held { guard: None },
        }
    }

    /// This process's turn to write, for a thread outside the runtime;
    /// it waits for the writer before it.
    pub(crate) fn blocking_turn(&self) -> Held {
        match self.engine {
            Engine::Sqlite => Held {
                guard: Some(self.turns.clone().blocking_lock_owned()),
            },
            Engine::Postgres => Held { guard: None },
        }
    }

    /// The pool, once it is this process's turn to write.
    pub(crate) async fn turn(&self) -> Turn<'_> {
        Turn {
            pool: &self.pool,
            _held: self.held().await,
        }
    }

    /// A write transaction. SQLite takes the write lock up front, so that
    /// another process's writer queues on the busy timeout instead of
    /// failing when it would upgrade its lock.
    pub(crate) async fn begin(&self) -> Result<WriteTx, StoreError> {
        let held = self.held().await;
        let tx = match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Engine::Postgres => self.pool.begin().await,
        }
        .map_err(backend)?;
        Ok(WriteTx {
            tx: Some(tx),
            held: Some(held),
        })
    }

    /// The writer connection itself, for statements sent by hand.
    pub(crate) async fn acquire(&self) -> Result<WriteConnection, StoreError> {
        let held = self.held().await;
        let conn = self.pool.acquire().await.map_err(backend)?;
        Ok(WriteConnection { conn, _held: held })
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A writer on a new SQLite database, and the database's file.
    async fn sqlite_writer() -> (Writer, std::path::PathBuf) {
        sqlx::any::install_default_drivers();
        let path = crate::testing::temp_dir("writer").join("test.db");
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        (Writer::new(pool, Engine::Sqlite), path)
    }

    #[tokio::test]
    async fn a_thread_writes_only_once_no_statement_or_transaction_is_writing() {
        let (writer, _) = sqlite_writer().await;
        let tx = writer.begin().await.unwrap();
        let other = writer.clone();
        let thread = std::thread::spawn(move || {
            let _held = other.blocking_turn();
            std::time::Instant::now()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !thread.is_finished(),
            "the thread took a turn while a transaction was open"
        );
        let ended = std::time::Instant::now();
        tx.commit().await.unwrap();
        let took = tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        assert!(took >= ended, "the thread's turn began before the transaction ended");

        // A statement waits for the thread's turn, and runs once it ends.
        let held = writer.held().await;
        let statement = {
            let writer = writer.clone();
            tokio::spawn(async move {
                sqlx::query("CREATE TABLE t (n INTEGER)")
                    .execute(&*writer.turn().await)
                    .await
                    .unwrap();
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!statement.is_finished(), "a statement ran during another writer's turn");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), statement)
            .await
            .expect("the statement runs once the turn is given back")
            .unwrap();
    }

    #[tokio::test]
    async fn a_transaction_dropped_unfinished_is_rolled_back_before_the_next_turn() {
        let (writer, path) = sqlite_writer().await;
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&*writer.turn().await)
            .await
            .unwrap();
        let mut tx = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO t (n) VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        drop(tx);
        let _turn = writer.held().await;
        // Another connection that would not wait finds the file free, and
        // the insert undone.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        other.execute_batch("BEGIN IMMEDIATE; COMMIT;").unwrap();
        let rows: i64 = other.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0)).unwrap();
        assert_eq!(rows, 0);
    }

    #[tokio::test]
    async fn postgres_writers_never_wait_for_a_turn() {
        let Some(url) = crate::testing::database_url(Engine::Postgres).await else {
            return;
        };
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new().connect(&url).await.unwrap();
        let writer = Writer::new(pool, Engine::Postgres);
        let _tx = writer.begin().await.unwrap();
        let turn = tokio::time::timeout(Duration::from_secs(5), writer.turn()).await;
        assert!(turn.is_ok(), "a PostgreSQL statement waited for an open transaction");
    }
}
