//! Several statements in one round trip on SQLite.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every
//! statement sent is a hand-off to that thread and back: on short
//! statements that costs more CPU than the statements themselves. A string
//! of statements is one hand-off, and each statement's row count still
//! comes back on its own. SQLite binds `$n` to the n-th argument of the
//! whole string, so each statement's placeholders are renumbered to follow
//! on from the statements before. PostgreSQL prepares one statement at a
//! time, so there they go one by one.

use futures_util::TryStreamExt;
use identity::StoreError;
use sqlx::Executor;

use crate::drive_store::backend;

/// A value for one of a [`Change`]'s placeholders.
pub(crate) enum Arg<'a> {
    Text(&'a str),
    Int(i64),
    Bytes(&'a [u8]),
}

/// A statement with its arguments for `$1`, `$2`, ... in order.
pub(crate) struct Change<'a> {
    sql: &'static str,
    args: Vec<Arg<'a>>,
}

impl<'a> Change<'a> {
    pub(crate) fn new(sql: &'static str, args: Vec<Arg<'a>>) -> Self {
        Self { sql, args }
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind<'q>(query: Query<'q>, arg: &Arg<'q>) -> Query<'q> {
    match *arg {
        Arg::Text(v) => query.bind(v),
        Arg::Int(v) => query.bind(v),
        Arg::Bytes(v) => query.bind(v),
    }
}

/// Runs `changes` in order in `tx`; `true` if each changed exactly one row.
/// On `false` the caller drops `tx`, which undoes what did change. On
/// PostgreSQL it stops at the first that fails.
pub(crate) async fn each_changes_one(
    tx: &mut sqlx::AnyConnection,
    engine: crate::Engine,
    changes: &[Change<'_>],
) -> Result<bool, StoreError> {
    if engine == crate::Engine::Postgres {
        for change in changes {
            let query = change.args.iter().fold(sqlx::query(change.sql), bind);
            if query.execute(&mut *tx).await.map_err(backend)?.rows_affected() != 1 {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    let counts = sqlite_counts(tx, changes).await?;
    Ok(counts.iter().all(|&n| n == 1))
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
        sql.push_str(&renumber_placeholders(change.sql, offset));
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
mod tests {
    use super::renumber_placeholders;

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
