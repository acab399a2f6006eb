//! Several statements in one round trip on SQLite.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every
//! statement sent is a hand-off to that thread and back: on short
//! statements that costs more CPU than the statements themselves. A string
//! of statements is one hand-off, and each statement's row count still
//! comes back on its own. SQLite binds `$n` to the n-th argument of the
//! whole string, so each statement's placeholders are renumbered to follow
//! on from the statements before. PostgreSQL prepares one statement at a
//! time; there, changes that must happen together become the parts of one
//! statement ([`write_each_changes_one`]).

use std::borrow::Cow;

use futures_util::TryStreamExt;
use identity::StoreError;
use sqlx::Executor;

use crate::db::backend;
use crate::writer::Writer;

/// A value for one of a [`Change`]'s placeholders.
#[derive(Clone, Copy)]
pub(crate) enum Arg<'a> {
    Text(&'a str),
    Int(i64),
    Bytes(&'a [u8]),
}

/// A statement with its arguments for `$1`, `$2`, ... in order.
#[derive(Clone)]
pub(crate) struct Change<'a> {
    sql: Cow<'static, str>,
    args: Vec<Arg<'a>>,
}

impl<'a> Change<'a> {
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>, args: Vec<Arg<'a>>) -> Self {
        Self { sql: sql.into(), args }
    }

    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    pub(crate) fn args(&self) -> &[Arg<'a>] {
        &self.args
    }
}

pub(crate) type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

pub(crate) fn bind<'q>(query: Query<'q>, arg: &Arg<'q>) -> Query<'q> {
    match *arg {
        Arg::Text(v) => query.bind(v),
        Arg::Int(v) => query.bind(v),
        Arg::Bytes(v) => query.bind(v),
    }
}

/// Runs `changes` as one write transaction in which each must change one
/// row: `true` when they did and it committed, `false` when one did not
/// (and nothing changed). The changes must touch different rows and not
/// depend on each other's effects.
///
/// On SQLite, `BEGIN IMMEDIATE` and the statements are one round trip,
/// `COMMIT` (or `ROLLBACK`) a second. On PostgreSQL they are one
/// statement: each change a `WITH` part that returns its rows, and a final
/// `SELECT` that divides by zero unless each part returned exactly one; the
/// error undoes the whole statement.
pub(crate) async fn write_each_changes_one(writer: &Writer, changes: &[Change<'_>]) -> Result<bool, StoreError> {
    write_together(writer, changes, true).await
}

/// Runs `changes` as one write transaction, whatever rows each changes:
/// on SQLite one round trip (a second to roll back after an error), on
/// PostgreSQL one statement. As for [`write_each_changes_one`], the
/// changes must touch different rows and not depend on each other's
/// effects.
pub(crate) async fn write_changes(writer: &Writer, changes: &[Change<'_>]) -> Result<(), StoreError> {
    write_together(writer, changes, false).await.map(|_| ())
}

/// [`write_each_changes_one`] when `each_one`, else [`write_changes`].
async fn write_together(writer: &Writer, changes: &[Change<'_>], each_one: bool) -> Result<bool, StoreError> {
    if let [change] = changes
        && !each_one
    {
        // One statement needs no transaction around it.
        let query = change
            .args
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(change.sql())), bind);
        query.execute(&*writer.turn().await).await.map_err(backend)?;
        return Ok(true);
    }
    if writer.engine() == crate::Engine::Postgres {
        let mut parts = Vec::with_capacity(changes.len());
        let mut checks = Vec::with_capacity(changes.len());
        let mut offset = 0;
        for (i, change) in changes.iter().enumerate() {
            parts.push(format!(
                "c{i} AS ({} RETURNING 1)",
                renumber_placeholders(&change.sql, offset)
            ));
            checks.push(format!("(SELECT COUNT(*) FROM c{i}) = 1"));
            offset += change.args.len();
        }
        // Every part runs, read or not.
        let sql = if each_one {
            format!(
                "WITH {} SELECT 1 / (CASE WHEN {} THEN 1 ELSE 0 END) AS kept",
                parts.join(", "),
                checks.join(" AND ")
            )
        } else {
            format!("WITH {} SELECT 1 AS kept", parts.join(", "))
        };
        let query = changes
            .iter()
            .flat_map(|c| &c.args)
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), bind);
        return match query.fetch_one(&*writer.turn().await).await {
            Ok(_) => Ok(true),
            // division_by_zero: a change missed its row.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("22012") => Ok(false),
            Err(e) => Err(backend(e)),
        };
    }
    let mut conn = writer.acquire().await?;
    if !each_one {
        // Nothing to decide before the end: `COMMIT` goes in the same
        // round trip, and only a failure needs a second one.
        let mut all = with_begin(changes);
        all.push(Change::new("COMMIT", Vec::new()));
        let done = sqlite_counts(&mut conn, &all).await;
        // A statement failed: whatever ran is undone. When the failure
        // left no transaction open, ROLLBACK fails too; the connection is
        // then closed rather than trusted.
        if done.is_err() && sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
            conn.close_on_drop();
        }
        return done.map(|_| true);
    }
    let begun = sqlite_counts(&mut conn, &with_begin(changes)).await;
    let keep = match &begun {
        Ok(counts) => !each_one || counts[1..].iter().all(|&n| n == 1),
        Err(_) => false,
    };
    let end = if keep { "COMMIT" } else { "ROLLBACK" };
    if let Err(e) = sqlx::query(end).execute(&mut *conn).await {
        // No transaction left open on a pooled connection, whatever
        // state it is in.
        conn.close_on_drop();
        begun?;
        return Err(backend(e));
    }
    begun?;
    Ok(keep)
}

/// `changes` after `BEGIN IMMEDIATE`.
fn with_begin<'a>(changes: &[Change<'a>]) -> Vec<Change<'a>> {
    let mut all = Vec::with_capacity(changes.len() + 1);
    all.push(Change::new("BEGIN IMMEDIATE", Vec::new()));
    all.extend(changes.iter().cloned());
    all
}

/// Runs `changes` in order as one string of statements on a SQLite
/// connection; each one's count of changed rows.
pub(crate) async fn sqlite_counts(
    conn: &mut sqlx::AnyConnection,
    changes: &[Change<'_>],
) -> Result<Vec<u64>, StoreError> {
    let mut sql = String::new();
    let mut offset = 0;
    for change in changes {
        sql.push_str(&renumber_placeholders(&change.sql, offset));
        sql.push_str(";\n");
        offset += change.args.len();
    }
    let query = changes
        .iter()
        .flat_map(|c| &c.args)
        .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), bind);
    let mut steps = conn.fetch_many(query);
    let mut counts = Vec::with_capacity(changes.len());
    while let Some(step) = steps.try_next().await.map_err(backend)? {
        if let sqlx::Either::Left(done) = step {
            counts.push(done.rows_affected());
        }
    }
    if counts.len() != changes.len() {
        return Err(StoreError::Backend(format!(
            "{} statements sent, {} answered",
            changes.len(),
            counts.len()
        )));
    }
    Ok(counts)
}

/// `sql` with each `$n` placeholder raised by `offset`.
fn renumber_placeholders(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A one-connection pool to `url`, with a table `t` of two rows (ids
    /// 1 and 2, `n` 0).
    pub(crate) async fn one_writer(url: &str) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (id, n) VALUES (1, 0), (2, 0)")
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    /// `t`'s `n`, by id.
    pub(crate) async fn values(pool: &sqlx::AnyPool) -> Vec<i64> {
        sqlx::query_scalar("SELECT n FROM t ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    pub(crate) const SET: &str = "UPDATE t SET n = $2 WHERE id = $1";

    #[tokio::test]
    async fn changes_that_must_each_change_one_row_happen_all_or_not_at_all() {
        for engine in [crate::Engine::Sqlite, crate::Engine::Postgres] {
            let Some(url) = crate::testing::database_url(engine).await else {
                continue;
            };
            let pool = one_writer(&url).await;
            let writer = Writer::new(pool.clone(), engine);
            let both = [
                Change::new(SET, vec![Arg::Int(1), Arg::Int(10)]),
                Change::new(SET, vec![Arg::Int(2), Arg::Int(20)]),
            ];
            assert!(write_each_changes_one(&writer, &both).await.unwrap());
            assert_eq!(values(&pool).await, [10, 20], "{engine:?}");
            // The second changes no row: the first is undone.
            let missing = [
                Change::new(SET, vec![Arg::Int(1), Arg::Int(11)]),
                Change::new(SET, vec![Arg::Int(3), Arg::Int(30)]),
            ];
            assert!(!write_each_changes_one(&writer, &missing).await.unwrap());
            assert_eq!(values(&pool).await, [10, 20], "{engine:?}");
            // An error undoes what came before it, and the next change works.
            let failing = [
                Change::new(SET, vec![Arg::Int(1), Arg::Int(12)]),
                Change::new("INSERT INTO t (id, n) VALUES ($1, 0)", vec![Arg::Int(2)]),
            ];
            assert!(write_each_changes_one(&writer, &failing).await.is_err());
            assert_eq!(values(&pool).await, [10, 20], "{engine:?}");
            let one = [Change::new(SET, vec![Arg::Int(2), Arg::Int(21)])];
            assert!(write_each_changes_one(&writer, &one).await.unwrap());
            assert_eq!(values(&pool).await, [10, 21], "{engine:?}");
            pool.close().await;
        }
    }

    #[tokio::test]
    async fn changes_written_together_happen_all_or_not_at_all() {
        for engine in [crate::Engine::Sqlite, crate::Engine::Postgres] {
            let Some(url) = crate::testing::database_url(engine).await else {
                continue;
            };
            let pool = one_writer(&url).await;
            let writer = Writer::new(pool.clone(), engine);
            // Whatever rows each changes (here the second none), they commit.
            let some = [
                Change::new(SET, vec![Arg::Int(1), Arg::Int(10)]),
                Change::new(SET, vec![Arg::Int(3), Arg::Int(30)]),
                Change::new("UPDATE t SET n = n + 1 WHERE id = 2", vec![]),
            ];
            write_changes(&writer, &some).await.unwrap();
            assert_eq!(values(&pool).await, [10, 1], "{engine:?}");
            // An error undoes what came before it, and the writer goes on.
            let failing = [
                Change::new(SET, vec![Arg::Int(1), Arg::Int(12)]),
                Change::new("INSERT INTO t (id, n) VALUES ($1, 0)", vec![Arg::Int(2)]),
                Change::new(SET, vec![Arg::Int(2), Arg::Int(22)]),
            ];
            assert!(write_changes(&writer, &failing).await.is_err());
            assert_eq!(values(&pool).await, [10, 1], "{engine:?}");
            // One change alone, and then two again on the same connection.
            write_changes(&writer, &[Change::new(SET, vec![Arg::Int(2), Arg::Int(2)])])
                .await
                .unwrap();
            write_changes(&writer, &some[..1]).await.unwrap();
            write_changes(&writer, &some[1..]).await.unwrap();
            assert_eq!(values(&pool).await, [10, 3], "{engine:?}");
            pool.close().await;
        }
    }

    #[test]
    fn placeholders_follow_on_from_the_statements_before() {
        let sql = "UPDATE t SET a = $2, b = $10 WHERE id = $1 AND c < $2";
        assert_eq!(renumber_placeholders(sql, 0), sql);
        assert_eq!(
            renumber_placeholders(sql, 3),
            "UPDATE t SET a = $5, b = $13 WHERE id = $4 AND c < $5"
        );
        // A dollar sign that is not a placeholder stays as it is.
        assert_eq!(renumber_placeholders("SELECT '$' || $1, $", 7), "SELECT '$' || $8, $");
    }
}
