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

/// A new empty folder under the system temp dir. Folders that earlier
/// runs left there (over an hour old, as with PostgreSQL schemas) are
/// removed the first time a process asks for one.
pub fn temp_dir(label: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| sweep_temp_dirs(&std::env::temp_dir(), std::time::Duration::from_secs(3600)));
    let dir = std::env::temp_dir().join(format!("{TEMP_PREFIX}{label}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

const TEMP_PREFIX: &str = "cloudkeep-test-";

/// Removes the test folders in `root` not changed for `age`.
fn sweep_temp_dirs(root: &std::path::Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if stale && entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_folders_left_for_over_an_hour_are_swept() {
        let root = temp_dir("sweep");
        let old = root.join(format!("{TEMP_PREFIX}old"));
        let recent = root.join(format!("{TEMP_PREFIX}recent"));
        let other = root.join("someone-else");
        for dir in [&old, &recent, &other] {
            std::fs::create_dir_all(dir.join("inside")).unwrap();
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for dir in [&old, &other] {
            std::fs::File::open(dir).unwrap().set_modified(two_hours_ago).unwrap();
        }
        sweep_temp_dirs(&root, std::time::Duration::from_secs(3600));
        assert!(!old.exists(), "an old test folder goes");
        assert!(recent.exists(), "a test folder in use stays");
        assert!(other.exists(), "what is not a test folder stays");
        std::fs::remove_dir_all(root).unwrap();
    }
}
