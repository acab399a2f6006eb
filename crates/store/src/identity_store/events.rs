//! [`identity::EventStore`] over SQL.

use async_trait::async_trait;
use identity::{AccountId, EventKind, EventStore, SecurityEvent, StoreError};
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::changes::{Arg, Change};
use crate::db::{Columns, Run, corrupt};

pub(super) fn event_from(row: &AnyRow) -> Result<SecurityEvent, StoreError> {
    let kind: String = row.text("kind")?;
    Ok(SecurityEvent {
        id: row.text("id")?,
        account_id: AccountId::new(row.text("account_id")?),
        at: row.int("at")?,
        kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind"))?,
        ip: row.text("ip")?,
        user_agent: row.text("user_agent")?,
        detail: row.text("detail")?,
    })
}

pub(super) async fn insert_event(conn: &mut sqlx::AnyConnection, e: &SecurityEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO security_events (id, account_id, at, kind, ip, user_agent, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&e.id)
    .bind(e.account_id.as_str())
    .bind(e.at)
    .bind(e.kind.as_str())
    .bind(&e.ip)
    .bind(&e.user_agent)
    .bind(&e.detail)
    .run(conn)
    .await?;
    Ok(())
}

/// The statement that records `e` (as [`insert_event`]).
pub(super) fn event_change(e: &SecurityEvent) -> Change<'_> {
    Change::new(
        "INSERT INTO security_events (id, account_id, at, kind, ip, user_agent, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            Arg::Text(&e.id),
            Arg::Text(e.account_id.as_str()),
            Arg::Int(e.at),
            Arg::Text(e.kind.as_str()),
            Arg::Text(&e.ip),
            Arg::Text(&e.user_agent),
            Arg::Text(&e.detail),
        ],
    )
}

#[async_trait]
impl EventStore for SqlStore {
    async fn record_event(&self, e: &SecurityEvent) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        insert_event(&mut conn, e).await
    }

    async fn events(
        &self,
        account_id: &AccountId,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        const COLUMNS: &str = "SELECT id, account_id, at, kind, ip, user_agent, detail FROM security_events";
        let limit = i64::from(limit);
        let rows = match before {
            Some(cursor) => {
                let sql = format!("{COLUMNS} WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(account_id.as_str())
                    .bind(cursor)
                    .bind(limit)
                    .all(&self.pool)
                    .await
            }
            None => {
                let sql = format!("{COLUMNS} WHERE account_id = $1 ORDER BY id DESC LIMIT $2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(account_id.as_str())
                    .bind(limit)
                    .all(&self.pool)
                    .await
            }
        };
        rows?.iter().map(event_from).collect()
    }
}
