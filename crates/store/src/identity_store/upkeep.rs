//! [`identity::UpkeepStore`] over SQL.

use async_trait::async_trait;
use identity::{ExpiryCutoffs, StoreError, UpkeepStore};

use crate::SqlStore;
use crate::db::Run;

#[async_trait]
impl UpkeepStore for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").run(&self.pool).await?;
        Ok(())
    }

    async fn publish(&self, topic: &str) -> Result<(), StoreError> {
        if self.engine == crate::Engine::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::SIGNAL_CHANNEL)
                .bind(topic)
                .run(&*self.writer.turn().await)
                .await?;
        }
        Ok(())
    }

    async fn purge_expired(&self, c: ExpiryCutoffs) -> Result<u64, StoreError> {
        let sessions = sqlx::query(
            "DELETE FROM sessions WHERE created_at <= $1
             OR (remember = 0 AND last_seen_at <= $2) OR (remember <> 0 AND last_seen_at <= $3)",
        )
        .bind(c.created_before)
        .bind(c.idle_before)
        .bind(c.remembered_idle_before)
        .run(&*self.writer.turn().await)
        .await?;
        let throttles = sqlx::query(
            "DELETE FROM throttles WHERE locked_until <= $1 AND last_failure <= $2
             AND reserved_at <= $2",
        )
        .bind(c.now)
        .bind(c.throttle_failure_before)
        .run(&*self.writer.turn().await)
        .await?;
        let mut purged = sessions.rows_affected() + throttles.rows_affected();
        for (statement, cutoff) in [
            ("DELETE FROM setup_tokens WHERE expires_at <= $1", c.now),
            (
                "DELETE FROM second_factors WHERE active = 0 AND expires_at <= $1",
                c.now,
            ),
            ("DELETE FROM authenticator_links WHERE expires_at <= $1", c.now),
            ("DELETE FROM linked_backup_codes WHERE expires_at <= $1", c.now),
            ("DELETE FROM invitations WHERE expires_at <= $1", c.now),
            // The alert log only serves the rate limit.
            (
                "DELETE FROM security_alerts WHERE sent_at <= $1",
                c.now - 2 * 24 * 3_600_000,
            ),
            ("DELETE FROM webauthn_challenges WHERE expires_at <= $1", c.now),
            ("DELETE FROM sms_codes WHERE expires_at <= $1", c.now),
            // Kept a day: the push fatigue rules read this history.
            (
                "DELETE FROM approval_requests WHERE expires_at <= $1",
                c.now - 24 * 3_600_000,
            ),
            // The send log only serves the daily caps.
            ("DELETE FROM sms_sends WHERE sent_at <= $1", c.now - 24 * 3_600_000),
        ] {
            let done = sqlx::query(statement)
                .bind(cutoff)
                .run(&*self.writer.turn().await)
                .await?;
            purged += done.rows_affected();
        }
        Ok(purged)
    }
}
