//! Databases for tests: a temporary SQLite file, or a fresh schema on the
//! PostgreSQL server named by `CLOUDKEEP_TEST_DATABASE_URL` (default: the
//! local server, `postgres://postgres@127.0.0.1:5432/test`).
//!
//! When PostgreSQL cannot be reached, a test run by hand prints why and
//! skips the PostgreSQL half; under `CI=true` that is a failure.

use sqlx::Connection;
use std::path::PathBuf;

pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database URL for one test, on the named engine; `None` when PostgreSQL
/// is unavailable outside CI.
pub async fn database_url(engine: crate::Engine) -> Option<String> {
    match engine {
        crate::Engine::Sqlite => {
            let dir = temp_dir("sqlite");
            Some(format!("sqlite://{}?mode=rwc", dir.join("test.db").display()))
        }
        crate::Engine::Postgres => fresh_postgres_schema().await,
    }
}

/// A new empty folder under the system temp dir.
pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cloudkeep-test-{label}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

async fn fresh_postgres_schema() -> Option<String> {
    sqlx::any::install_default_drivers();
    let base = std::env::var("CLOUDKEEP_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.to_owned());
    let mut conn = match sqlx::AnyConnection::connect(&base).await {
        Ok(conn) => conn,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL is required under CI=true but {base} is unreachable: {e}"
            );
            eprintln!("SKIPPED (PostgreSQL half): {base} is unreachable: {e}");
            return None;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Sweep schemas that earlier runs left behind (over an hour old).
    let old: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'cktest\\_%' ESCAPE '\\'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for name in old {
        let stamp = name.split('_').nth(1).and_then(|s| s.parse::<u64>().ok());
        if stamp.is_some_and(|s| s + 3600 < now) {
            let drop = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut conn).await;
        }
    }
    let schema = format!("cktest_{now}_{}", uuid::Uuid::new_v4().simple());
    let create = format!("CREATE SCHEMA {schema}");
    sqlx::query(sqlx::AssertSqlSafe(create))
        .execute(&mut conn)
        .await
        .expect("create test schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{separator}options[search_path]={schema}"))
}
