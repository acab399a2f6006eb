//! Persistence: one SQL store for SQLite (the embedded default) and
//! PostgreSQL (for several processes), plus the data folder's layout.
//!
//! Both engines run the same statements through sqlx's `any` driver;
//! only the migrations differ (integer widths). Times are integer
//! milliseconds. This crate implements the storage traits the domain crates
//! define and holds no rules of its own: whether a password is right or a
//! session alive is decided in `identity`.
#![forbid(unsafe_code)]

mod changes;
mod data_dir;
mod db;
mod drive_store;
mod identity_store;
mod import_store;
mod sqlite_commits;
mod sqlite_reads;
mod statements;
pub mod testing;
mod writer;

pub use data_dir::DataDir;

use anyhow::Context;
use sqlx::{AnyPool, any::AnyPoolOptions};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use identity::Signals;

async fn listen(url: &str, signals: &Signals) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(SIGNAL_CHANNEL).await?;
    loop {
        let notification = listener.recv().await?;
        signals.raise(notification.payload());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The SQL store shared by every service.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    /// Where writes run (see [`writer`]). On SQLite, one connection: the
    /// process's writers queue for it in order instead of meeting on the
    /// file lock, where SQLite's busy handler makes each loser sleep
    /// (1 ms, 2 ms, 5 ms, … on every retry). On PostgreSQL, `pool`.
    writer: writer::Writer,
    /// Connections of each engine's own driver, for the hot paths `Any`
    /// serves poorly (see [`Native`]).
    native: Native,
    /// Files waiting to be committed (see `drive_store::commit_files_on_sqlite`
    /// and `commit_files_on_postgres`).
    files: tokio::sync::mpsc::UnboundedSender<drive_store::FileCommit>,
    engine: Engine,
    url: String,
}

/// Connections used through each engine's own driver rather than `Any`,
/// for the hot paths: every request's access-and-walk query, path walks,
/// folder listings and, on PostgreSQL, batches of new files (on SQLite,
/// small files' contents too).
#[derive(Debug, Clone)]
enum Native {
    /// The PostgreSQL driver's own pool: through `Any` every row is copied
    /// into owned values with its own list of columns (a third of a
    /// 10,000-entry PROPFIND's time), and `Any` cannot bind the arrays a
    /// batch of new files is sent as. Four connections: sixteen measured
    /// worse on two cores. Same schema (the options of `url`); connected
    /// only when first used.
    Postgres(sqlx::PgPool),
    /// Read-only connections used on the calling task (see
    /// `sqlite_reads`): sqlx's SQLite driver hands every query to a thread
    /// of its own and back.
    Sqlite(Arc<sqlite_reads::SqliteReads>),
}

impl Native {
    fn pg(&self) -> Option<&sqlx::PgPool> {
        match self {
            Native::Postgres(pg) => Some(pg),
            Native::Sqlite(_) => None,
        }
    }
}

/// How long a pooled connection may sit idle before it is tested again
/// before use.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(30);

/// Before a pooled connection is handed out: pinged only if it sat idle
/// for [`IDLE_BEFORE_PING`] (see `SqlStore::open`).
fn ping_if_idle<C: sqlx::Connection>(
    conn: &mut C,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        if meta.idle_for >= IDLE_BEFORE_PING {
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// The PostgreSQL channel that carries signals between processes.
pub const SIGNAL_CHANNEL: &str = "cloudkeep_signals";

impl SqlStore {
    /// Connects and brings the schema up to date. `url` is
    /// `sqlite://PATH` or `postgres://...`.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            anyhow::bail!("unsupported database URL: use sqlite://PATH or postgres://...");
        };
        let options = || {
            AnyPoolOptions::new()
                .acquire_timeout(Duration::from_secs(10))
                // sqlx pings every connection it hands out, and again when it
                // is handed back: one extra round trip per query on top of
                // the release's (to the worker thread on SQLite, to the
                // server on PostgreSQL). The release's ping already catches a
                // connection a query broke; only one that sat idle long
                // enough for the server to drop it is worth testing again.
                .test_before_acquire(false)
                .before_acquire(ping_if_idle)
        };
        let pool = match engine {
            Engine::Sqlite => {
                let file = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
                if file.get_filename() != Path::new(":memory:") {
                    data_dir::keep_database_private(file.get_filename())?;
                }
                // WAL lets readers (and `cloudkeep admin` while the server
                // runs) work beside the writer; it is stored in the file, so
                // setting it once on the first connection is enough.
                let pool = options().max_connections(8).connect(url).await;
                let pool = pool.with_context(|| "cannot open the SQLite database".to_string())?;
                sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await?;
                pool
            }
            Engine::Postgres => options()
                .max_connections(16)
                .connect(url)
                .await
                .context("cannot connect to PostgreSQL")?,
        };
        let migrator = match engine {
            Engine::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Engine::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator.run(&pool).await.context("cannot migrate the database")?;
        let writer = match engine {
            Engine::Sqlite => options()
                .max_connections(1)
                // A queue of writers may be long under load; each holds
                // the connection for one short transaction.
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await
                .context("cannot open the SQLite database")?,
            Engine::Postgres => pool.clone(),
        };
        let native = match engine {
            Engine::Sqlite => Native::Sqlite(Arc::new(sqlite_reads::SqliteReads::open(url)?)),
            Engine::Postgres => Native::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    .idle_timeout(Duration::from_secs(60))
                    // As for `pool`: only a connection idle long enough
                    // to have been dropped is pinged before use.
                    .test_before_acquire(false)
                    .before_acquire(ping_if_idle)
                    .connect_lazy(url)
                    .context("cannot read the PostgreSQL address")?,
            ),
        };
        let writer = writer::Writer::new(writer, engine);
        let (files, queue) = tokio::sync::mpsc::unbounded_channel();
        match &native {
            Native::Postgres(pg) => {
                tokio::spawn(drive_store::commit_files_on_postgres(writer.clone(), pg.clone(), queue));
            }
            Native::Sqlite(reads) => {
                let commits = sqlite_commits::CommitConnection::open(reads.path())
                    .map_err(|e| anyhow::anyhow!("cannot open the SQLite database for writing files: {e}"))?;
                let (writer, runtime) = (writer.clone(), tokio::runtime::Handle::current());
                std::thread::Builder::new()
                    .name("sqlite-commits".into())
                    .spawn(move || drive_store::commit_files_on_sqlite(writer, commits, queue, runtime))
                    .context("cannot start the thread that commits files")?;
            }
        }
        Ok(Self {
            pool,
            writer,
            native,
            files,
            engine,
            url: url.to_owned(),
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// A write transaction (see [`writer::Writer::begin`]).
    async fn begin_write(&self) -> Result<writer::WriteTx, identity::StoreError> {
        self.writer.begin().await
    }

    /// On PostgreSQL, relays the signals every process publishes (LISTEN
    /// on [`SIGNAL_CHANNEL`]) to this process's waiters, reconnecting when
    /// the connection drops. Nothing to do on SQLite, which one process
    /// uses. Waiters re-read the database every few seconds anyway, so a
    /// signal lost while reconnecting only delays them.
    pub fn spawn_signal_listener(&self, signals: Arc<Signals>) -> Option<tokio::task::JoinHandle<()>> {
        if self.engine != Engine::Postgres {
            return None;
        }
        let url = self.url.clone();
        Some(tokio::spawn(async move {
            loop {
                match listen(&url, &signals).await {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(error = %e, "signal listener lost PostgreSQL; reconnecting"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }

    pub async fn close(&self) {
        if let Some(pg) = self.native.pg() {
            pg.close().await;
        }
        self.writer.close().await;
        self.pool.close().await;
    }
}
