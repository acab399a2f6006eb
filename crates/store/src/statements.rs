//! The shape most store methods have, in one call each: one statement,
//! its arguments (see [`Arg`]) and how its rows are read. Looking one row
//! up, listing rows, and changing rows outside a transaction.

use identity::StoreError;
use sqlx::any::AnyRow;

use crate::changes::{Arg, Query, bind};
use crate::db::{Columns, Run};
use crate::{Native, SqlStore};

fn query<'q>(sql: impl sqlx::SqlSafeStr, args: &[Arg<'q>]) -> Query<'q> {
    args.iter().fold(sqlx::query(sql), bind)
}

impl SqlStore {
    /// Runs `sql` with `args` on its own, once it is this process's turn
    /// to write: how many rows it changed.
    pub(crate) async fn write(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let done = query(sql, args).run(&*self.writer.turn().await).await?;
        Ok(done.rows_affected())
    }

    /// The first row `sql` finds with `args`, read by `decode`.
    pub(crate) async fn find<T>(
        &self,
        sql: impl sqlx::SqlSafeStr + Send,
        args: &[Arg<'_>],
        decode: impl FnOnce(&AnyRow) -> Result<T, StoreError> + Send,
    ) -> Result<Option<T>, StoreError> {
        let row = query(sql, args).optional(&self.pool).await?;
        row.as_ref().map(decode).transpose()
    }

    /// Every row `sql` finds with `args`, each read by `decode`.
    pub(crate) async fn list<T>(
        &self,
        sql: impl sqlx::SqlSafeStr + Send,
        args: &[Arg<'_>],
        decode: impl FnMut(&AnyRow) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        let rows = query(sql, args).all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    /// [`list`](Self::list) on the engine's own driver (see `Native`):
    /// for the reads of every sign-in and every signed-in request, where
    /// `Any`'s copies of each row and the hand-offs to sqlx's SQLite thread
    /// cost more CPU than the query. On SQLite it reads on the calling task.
    pub(crate) async fn native_list<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl Fn(&dyn Columns) -> Result<T, StoreError> + Send + Sync,
    ) -> Result<Vec<T>, StoreError> {
        match &self.native {
            Native::Postgres(pg) => {
                let query = args
                    .iter()
                    .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |query, arg| match *arg {
                        Arg::Text(v) => query.bind(v),
                        Arg::Int(v) => query.bind(v),
                        Arg::Bytes(v) => query.bind(v),
                    });
                let rows = query.all(pg).await?;
                rows.iter().map(|row| decode(row)).collect()
            }
            Native::Sqlite(reads) => {
                let args: Vec<&dyn rusqlite::ToSql> = args
                    .iter()
                    .map(|arg| match arg {
                        Arg::Text(v) => v as &dyn rusqlite::ToSql,
                        Arg::Int(v) => v as &dyn rusqlite::ToSql,
                        Arg::Bytes(v) => v as &dyn rusqlite::ToSql,
                    })
                    .collect();
                reads.rows(sql, &args, |row| decode(row))
            }
        }
    }
}
