//! [`identity::OutboxStore`] over SQL.

use async_trait::async_trait;
use identity::{AccountId, Millis, Notice, NoticeKind, OutboxStore, StoreError};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::changes::Arg::{Int, Text};
use crate::db::{Columns, Run, corrupt};

pub(super) fn notice_from(row: &AnyRow) -> Result<Notice, StoreError> {
    let kind: String = row.text("kind")?;
    let params: String = row.text("params")?;
    Ok(Notice {
        id: row.text("id")?,
        account_id: row.text_or_null("account_id")?.map(AccountId::new),
        to: row.text("to_addr")?,
        lang: row.text("lang")?,
        kind: NoticeKind::parse(&kind).ok_or_else(|| corrupt("mail kind"))?,
        params: serde_json::from_str(&params).map_err(|_| corrupt("mail parameters"))?,
        created_at: row.int("created_at")?,
        next_attempt_at: row.int("next_attempt_at")?,
        attempts: row.count("attempts")?,
    })
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn enqueue_notice(&self, m: &Notice) -> Result<(), StoreError> {
        let params = serde_json::to_string(&m.params).map_err(|e| StoreError::Backend(e.to_string()))?;
        sqlx::query(
            "INSERT INTO mail_queue (id, account_id, to_addr, lang, kind, params, created_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(m.id.as_str())
        .bind(m.account_id.as_ref().map(AccountId::as_str))
        .bind(m.to.as_str())
        .bind(m.lang.as_str())
        .bind(m.kind.as_str())
        .bind(params)
        .bind(m.created_at)
        .bind(m.next_attempt_at)
        .run(&*self.writer.turn().await)
        .await?;
        Ok(())
    }

    async fn claim_notice(&self, now: Millis, lease_until: Millis) -> Result<Option<Notice>, StoreError> {
        // Optimistic: take the oldest due message if nobody moved its next
        // attempt meanwhile; retry on a lost race.
        for _ in 0..5 {
            let Some(row) = sqlx::query(
                "SELECT id, account_id, to_addr, lang, kind, params, created_at, next_attempt_at, attempts
                 FROM mail_queue WHERE sent_at = 0 AND next_attempt_at <= $1
                 ORDER BY next_attempt_at, id LIMIT 1",
            )
            .bind(now)
            .optional(&self.pool)
            .await?
            else {
                return Ok(None);
            };
            let mut mail = notice_from(&row)?;
            let claimed = self
                .write(
                    "UPDATE mail_queue SET next_attempt_at = $3 WHERE id = $1 AND next_attempt_at = $2 AND sent_at = 0",
                    &[Text(mail.id.as_str()), Int(mail.next_attempt_at), Int(lease_until)],
                )
                .await?;
            if claimed == 1 {
                mail.next_attempt_at = lease_until;
                return Ok(Some(mail));
            }
        }
        Ok(None)
    }

    async fn notice_sent(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        self.write(
            "UPDATE mail_queue SET sent_at = $2, last_error = '' WHERE id = $1",
            &[Text(id), Int(now)],
        )
        .await?;
        Ok(())
    }

    async fn notice_failed(
        &self,
        id: &str,
        attempts: u32,
        next_attempt_at: Option<Millis>,
        error: &str,
    ) -> Result<(), StoreError> {
        // Given up: kept with sent_at = -1 for the operator to see.
        let (next, sent) = match next_attempt_at {
            Some(at) => (at, 0),
            None => (0, -1),
        };
        self.write(
            "UPDATE mail_queue SET attempts = $2, next_attempt_at = $3, sent_at = $4, last_error = $5 WHERE id = $1",
            &[Text(id), Int(i64::from(attempts)), Int(next), Int(sent), Text(error)],
        )
        .await?;
        Ok(())
    }

    async fn notice_opt_outs(&self, account_id: &AccountId) -> Result<Vec<NoticeKind>, StoreError> {
        let rows = sqlx::query("SELECT kind FROM mail_opt_outs WHERE account_id = $1")
            .bind(account_id.as_str())
            .all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("kind").ok())
            .filter_map(|k| NoticeKind::parse(&k))
            .collect())
    }

    async fn set_notice_opt_out(&self, account_id: &AccountId, kind: NoticeKind, off: bool) -> Result<(), StoreError> {
        let statement = if off {
            "INSERT INTO mail_opt_outs (account_id, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM mail_opt_outs WHERE account_id = $1 AND kind = $2"
        };
        self.write(statement, &[Text(account_id.as_str()), Text(kind.as_str())])
            .await?;
        Ok(())
    }
}
