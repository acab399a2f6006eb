//! Persistence: one SQL store for SQLite (the embedded default) and
//! PostgreSQL (for several processes), plus the data folder's layout.
//!
//! Both engines run the same statements through sqlx's `any` driver;
//! only the migrations differ (integer widths). Times are integer
//! milliseconds. This crate implements the storage traits the domain crates
//! define and holds no rules of its own: whether a password is right or a
//! session alive is decided in `identity`.
#![forbid(unsafe_code)]

mod data_dir;
mod identity_store;
pub mod testing;

pub use data_dir::DataDir;

use anyhow::Context;
use sqlx::{AnyPool, any::AnyPoolOptions};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The SQL store shared by every service.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
}

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
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match engine {
            Engine::Sqlite => {
                // WAL lets readers (and `cloudkeep admin` while the server
                // runs) work beside the writer; it is stored in the file, so
                // setting it once on the first connection is enough.
                let pool = options.max_connections(8).connect(url).await;
                let pool = pool.with_context(|| "cannot open the SQLite database".to_string())?;
                sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await?;
                pool
            }
            Engine::Postgres => options
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
        Ok(Self { pool, engine })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// A write transaction. SQLite takes the write lock up front so two
    /// writers queue on the busy timeout instead of failing on upgrade.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Engine::Postgres => self.pool.begin().await,
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
