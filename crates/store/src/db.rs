//! How the store meets sqlx: a database error becomes a [`StoreError`]
//! in one place ([`backend`], which tells a transaction worth running
//! again by the database's own error code), queries run through [`Run`]
//! so every method can use `?`, and rows are read through [`Columns`]
//! whichever driver read them.

use std::future::Future;

use futures_util::TryFutureExt;
use identity::StoreError;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Row};

/// The codes PostgreSQL gives a transaction it aborted only to break a
/// deadlock (`40P01`) or a serialization conflict (`40001`): run again,
/// it will likely succeed. Two writers that lock the same rows in
/// different orders meet so: a move into a folder (the folder, then the
/// node) and the deletion of a tree that holds both (in the tree's
/// order), or a batch of files into several folders and the deletion of
/// their parent.
const RETRYABLE_CODES: [&str; 2] = ["40P01", "40001"];

/// A database error, as the services see it.
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    let code = e.as_database_error().and_then(|d| d.code());
    match code {
        Some(code) if RETRYABLE_CODES.contains(&code.as_ref()) => StoreError::Retryable(format!("{e} [{code}]")),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// A stored value that does not read as what it should be.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("stored {what} is not valid"))
}

/// `attempt`, a whole transaction, run again while PostgreSQL aborts it
/// to break a deadlock ([`StoreError::Retryable`]), three times in all
/// at most.
pub(crate) async fn retried<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e @ StoreError::Retryable(_)) if tries < 3 => {
                tracing::info!(error = %e, "a transaction was aborted to break a deadlock; running it again");
                tries += 1;
            }
            done => return done,
        }
    }
}

/// A statement run with its error already a [`StoreError`]:
/// `query.run(&pool).await?` where sqlx has
/// `query.execute(&pool).await.map_err(..)?`. For `Any` and for the
/// PostgreSQL driver's own statements on the hot paths.
pub(crate) trait Run<'q, DB: sqlx::Database> {
    /// [`sqlx::query::Query::execute`].
    fn run<'e, 'c: 'e, E>(self, on: E) -> impl Future<Output = Result<Done<DB>, StoreError>> + Send + 'e
    where
        'q: 'e,
        E: 'e + sqlx::Executor<'c, Database = DB>;

    /// [`sqlx::query::Query::fetch_one`].
    fn one<'e, 'c: 'e, E>(self, on: E) -> impl Future<Output = Result<RowOf<DB>, StoreError>> + Send + 'e
    where
        'q: 'e,
        E: 'e + sqlx::Executor<'c, Database = DB>;

    /// [`sqlx::query::Query::fetch_optional`].
    fn optional<'e, 'c: 'e, E>(self, on: E) -> impl Future<Output = Result<Option<RowOf<DB>>, StoreError>> + Send + 'e
    where
        'q: 'e,
        E: 'e + sqlx::Executor<'c, Database = DB>;

    /// [`sqlx::query::Query::fetch_all`].
    fn all<'e, 'c: 'e, E>(self, on: E) -> impl Future<Output = Result<Vec<RowOf<DB>>, StoreError>> + Send + 'e
    where
        'q: 'e,
        E: 'e + sqlx::Executor<'c, Database = DB>;
}

type Done<DB> = <DB as sqlx::Database>::QueryResult;
type RowOf<DB> = <DB as sqlx::Database>::Row;

macro_rules! run_on {
    ($db:ty, $arguments:ty) => {
        impl<'q> Run<'q, $db> for sqlx::query::Query<'q, $db, $arguments> {
            fn run<'e, 'c: 'e, E>(self, on: E) -> impl Future<Output = Result<Done<$db>, StoreError>> + Send + 'e
            where
                'q: 'e,
                E: 'e + sqlx::Executor<'c, Database = $db>,
            {
                self.execute(on).map_err(backend)
            }

            fn one<'e, 'c: 'e, E>(self, on: E) -> impl Future<Output = Result<RowOf<$db>, StoreError>> + Send + 'e
            where
                'q: 'e,
                E: 'e + sqlx::Executor<'c, Database = $db>,
            {
                self.fetch_one(on).map_err(backend)
            }

            fn optional<'e, 'c: 'e, E>(
                self,
                on: E,
            ) -> impl Future<Output = Result<Option<RowOf<$db>>, StoreError>> + Send + 'e
            where
                'q: 'e,
                E: 'e + sqlx::Executor<'c, Database = $db>,
            {
                self.fetch_optional(on).map_err(backend)
            }

            fn all<'e, 'c: 'e, E>(self, on: E) -> impl Future<Output = Result<Vec<RowOf<$db>>, StoreError>> + Send + 'e
            where
                'q: 'e,
                E: 'e + sqlx::Executor<'c, Database = $db>,
            {
                self.fetch_all(on).map_err(backend)
            }
        }
    };
}
run_on!(Any, AnyArguments);
run_on!(sqlx::Postgres, sqlx::postgres::PgArguments);

/// A row's columns by name, read the same way whichever driver read the
/// row: `Any` for most queries, each engine's own driver for the hot
/// paths (see `SqlStore::native`). Times, counts and flags are integers
/// in both schemas.
pub(crate) trait Columns {
    fn text(&self, name: &str) -> Result<String, StoreError>;
    fn text_or_null(&self, name: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, name: &str) -> Result<i64, StoreError>;
    fn int_or_null(&self, name: &str) -> Result<Option<i64>, StoreError>;

    /// A flag stored as 0 or 1.
    fn flag(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.int(name)? != 0)
    }

    /// A count, which only a damaged row holds beyond `u32` (read as the
    /// largest).
    fn count(&self, name: &str) -> Result<u32, StoreError> {
        Ok(u32::try_from(self.int(name)?).unwrap_or(u32::MAX))
    }

    /// A size or id, which is never negative.
    fn unsigned(&self, name: &str) -> Result<u64, StoreError> {
        u64::try_from(self.int(name)?).map_err(|_| corrupt(format_args!("{name}, a negative number,")))
    }
}

macro_rules! columns_of {
    ($row:ty, $get:ident, $error:path) => {
        impl Columns for $row {
            fn text(&self, name: &str) -> Result<String, StoreError> {
                self.$get(name).map_err($error)
            }
            fn text_or_null(&self, name: &str) -> Result<Option<String>, StoreError> {
                self.$get(name).map_err($error)
            }
            fn int(&self, name: &str) -> Result<i64, StoreError> {
                self.$get(name).map_err($error)
            }
            fn int_or_null(&self, name: &str) -> Result<Option<i64>, StoreError> {
                self.$get(name).map_err($error)
            }
        }
    };
}
columns_of!(AnyRow, try_get, backend);
columns_of!(sqlx::postgres::PgRow, try_get, backend);
columns_of!(rusqlite::Row<'_>, get, crate::sqlite_reads::failed);

/// The columns of a joined row named with a prefix (`a_email` for the
/// account's `email`), read under their own names.
pub(crate) struct Prefixed<'r, R: ?Sized> {
    pub(crate) row: &'r R,
    pub(crate) prefix: &'static str,
}

impl<R: Columns + ?Sized> Prefixed<'_, R> {
    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl<R: Columns + ?Sized> Columns for Prefixed<'_, R> {
    fn text(&self, name: &str) -> Result<String, StoreError> {
        self.row.text(&self.name(name))
    }
    fn text_or_null(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.row.text_or_null(&self.name(name))
    }
    fn int(&self, name: &str) -> Result<i64, StoreError> {
        self.row.int(&self.name(name))
    }
    fn int_or_null(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.row.int_or_null(&self.name(name))
    }
}
