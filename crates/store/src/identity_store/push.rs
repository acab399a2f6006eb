//! [`identity::PushStore`] over SQL.

use async_trait::async_trait;
use identity::{
    AccountId, ApprovalRequest, ApprovalRequestId, ApprovalStatus, FactorId, Millis, PushStore, SecurityEvent,
    SessionId, StoreError,
};
use sqlx::any::AnyRow;

use super::events::insert_event;
use crate::SqlStore;
use crate::changes::Arg::{Int, Text};
use crate::db::{Columns, Run, corrupt};

pub(super) const APPROVAL_COLUMNS: &str = "SELECT id, account_id, session_id, number, choices, status, ip, user_agent,
    created_at, expires_at, answered_at, answered_by FROM approval_requests";

pub(super) fn approval_from(row: &AnyRow) -> Result<ApprovalRequest, StoreError> {
    let number: i64 = row.int("number")?;
    let choices: String = row.text("choices")?;
    let choices: Vec<u8> = choices.split(',').filter_map(|n| n.parse().ok()).collect();
    let status: String = row.text("status")?;
    Ok(ApprovalRequest {
        id: ApprovalRequestId::new(row.text("id")?),
        account_id: AccountId::new(row.text("account_id")?),
        session_id: SessionId::new(row.text("session_id")?),
        number: u8::try_from(number).map_err(|_| corrupt("approval number"))?,
        choices: <[u8; 3]>::try_from(choices).map_err(|_| corrupt("approval choices"))?,
        status: ApprovalStatus::parse(&status).ok_or_else(|| corrupt("approval status"))?,
        ip: row.text("ip")?,
        user_agent: row.text("user_agent")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        answered_at: row.int("answered_at")?,
        answered_by: Some(row.text("answered_by")?)
            .filter(|by| !by.is_empty())
            .map(FactorId::new),
    })
}

#[async_trait]
impl PushStore for SqlStore {
    async fn insert_approval_request(
        &self,
        r: &ApprovalRequest,
        window_start: Millis,
        max_in_window: usize,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        // Touching the account's row serializes its requests on PostgreSQL
        // (a row lock); SQLite's write lock already does.
        sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
            .bind(r.account_id.as_str())
            .run(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM approval_requests WHERE account_id = $1 AND created_at > $2")
            .bind(r.account_id.as_str())
            .bind(window_start)
            .one(&mut *tx)
            .await?;
        let recent: i64 = row.int("n")?;
        if usize::try_from(recent).unwrap_or(usize::MAX) >= max_in_window {
            return Ok(false);
        }
        let choices = r.choices.map(|n| n.to_string()).join(",");
        sqlx::query(
            "INSERT INTO approval_requests (id, account_id, session_id, number, choices, status, ip, user_agent,
                created_at, expires_at, answered_at, answered_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(r.id.as_str())
        .bind(r.account_id.as_str())
        .bind(r.session_id.as_str())
        .bind(i64::from(r.number))
        .bind(choices)
        .bind(r.status.as_str())
        .bind(r.ip.as_str())
        .bind(r.user_agent.as_str())
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.answered_at)
        .bind(r.answered_by.as_ref().map_or("", FactorId::as_str))
        .run(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn approval_request(&self, id: &ApprovalRequestId) -> Result<Option<ApprovalRequest>, StoreError> {
        let sql = format!("{APPROVAL_COLUMNS} WHERE id = $1");
        self.find(sqlx::AssertSqlSafe(sql), &[Text(id.as_str())], approval_from)
            .await
    }

    async fn approval_requests(
        &self,
        account_id: &AccountId,
        since: Millis,
    ) -> Result<Vec<ApprovalRequest>, StoreError> {
        let sql = format!("{APPROVAL_COLUMNS} WHERE account_id = $1 AND created_at > $2 ORDER BY created_at DESC");
        self.list(
            sqlx::AssertSqlSafe(sql),
            &[Text(account_id.as_str()), Int(since)],
            approval_from,
        )
        .await
    }

    async fn answer_approval_request(
        &self,
        request: &ApprovalRequest,
        status: ApprovalStatus,
        factor_id: &FactorId,
        now: Millis,
        event: Option<&SecurityEvent>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let answered = sqlx::query(
            "UPDATE approval_requests SET status = $2, answered_at = $3, answered_by = $4
             WHERE id = $1 AND status = 'pending' AND expires_at > $3",
        )
        .bind(request.id.as_str())
        .bind(status.as_str())
        .bind(now)
        .bind(factor_id.as_str())
        .run(&mut *tx)
        .await?;
        if answered.rows_affected() != 1 {
            return Ok(false);
        }
        if status.is_denial() {
            sqlx::query("DELETE FROM sessions WHERE id = $1 AND stage = 'second_factor'")
                .bind(request.session_id.as_str())
                .run(&mut *tx)
                .await?;
        }
        if let Some(event) = event {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
