//! [`identity::SessionStore`] over SQL.

use async_trait::async_trait;
use identity::{
    Account, AccountId, Millis, SecondStepProof, SecurityEvent, Session, SessionId, SessionStage, SessionStore,
    StepContext, StoreError, ThrottleRelease,
};
use sqlx::any::AnyRow;

use super::accounts::account_from;
use super::events::{event_change, insert_event};
use super::factors::step_context_from;
use super::throttle::release_throttle;
use crate::SqlStore;
use crate::changes::Arg::{Int, Text};
use crate::changes::{Arg, Change, write_each_changes_one};
use crate::db::{Columns, Prefixed, Run, corrupt};

pub(super) fn session_from(row: &AnyRow) -> Result<Session, StoreError> {
    let stage: String = row.text("stage")?;
    Ok(Session {
        id: SessionId::new(row.text("id")?),
        account_id: AccountId::new(row.text("account_id")?),
        created_at: row.int("created_at")?,
        last_seen_at: row.int("last_seen_at")?,
        remember: row.flag("remember")?,
        ip: row.text("ip")?,
        user_agent: row.text("user_agent")?,
        stage: SessionStage::parse(&stage).ok_or_else(|| corrupt("session stage"))?,
        password_at: row.int("password_at")?,
        factor_failures: row.count("factor_failures")?,
    })
}

pub(super) const SESSION_COLUMNS: &str =
    "id, account_id, created_at, last_seen_at, remember, ip, user_agent, stage, password_at, factor_failures";

#[async_trait]
impl SessionStore for SqlStore {
    async fn insert_session(
        &self,
        s: &Session,
        token_hash: &str,
        event: Option<&SecurityEvent>,
        releases: &[ThrottleRelease],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sessions (id, token_hash, account_id, created_at, last_seen_at, remember, ip, user_agent,
             stage, password_at, factor_failures) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(s.id.as_str())
        .bind(token_hash)
        .bind(s.account_id.as_str())
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(i64::from(s.remember))
        .bind(&s.ip)
        .bind(&s.user_agent)
        .bind(s.stage.as_str())
        .bind(s.password_at)
        .bind(i64::from(s.factor_failures))
        .run(&mut *tx)
        .await?;
        if let Some(event) = event {
            insert_event(&mut tx, event).await?;
        }
        for release in releases {
            release_throttle(&mut tx, release).await?;
        }
        tx.commit().await
    }

    async fn session_by_token_hash(&self, hash: &str) -> Result<Option<(Session, Account)>, StoreError> {
        let sql = concat!(
            "SELECT ",
            session_account_columns!(),
            " FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.token_hash = $1"
        );
        let row = sqlx::query(sql).bind(hash).optional(&self.pool).await?;
        row.as_ref()
            .map(|row| Ok((session_from(row)?, account_from(&Prefixed { row, prefix: "a_" })?)))
            .transpose()
    }

    async fn session_with_step_context(
        &self,
        hash: &str,
        throttle_prefix: &str,
    ) -> Result<Option<(Session, Account, StepContext)>, StoreError> {
        // One row per factor, or one without any; the session's, account's
        // and throttle's columns repeat on each.
        let sql = concat!(
            "SELECT ",
            session_account_columns!(),
            ", t.failures, t.last_failure, t.locked_until, t.version, ",
            step_factor_columns!(),
            " FROM sessions s JOIN accounts a ON a.id = s.account_id
             LEFT JOIN throttles t ON t.key = $2 || s.account_id
             LEFT JOIN second_factors f ON f.account_id = s.account_id
             WHERE s.token_hash = $1
             ORDER BY f.created_at, f.id"
        );
        let rows = sqlx::query(sql)
            .bind(hash)
            .bind(throttle_prefix)
            .all(&self.pool)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        Ok(Some((
            session_from(first)?,
            account_from(&Prefixed {
                row: first,
                prefix: "a_",
            })?,
            step_context_from(&rows)?,
        )))
    }

    async fn touch_session(&self, id: &SessionId, now: Millis, ip: &str) -> Result<(), StoreError> {
        self.write(
            "UPDATE sessions SET last_seen_at = $2, ip = $3 WHERE id = $1",
            &[Text(id.as_str()), Int(now), Text(ip)],
        )
        .await?;
        Ok(())
    }

    async fn sessions_of(&self, account_id: &AccountId) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE account_id = $1"
        )))
        .bind(account_id.as_str())
        .all(&self.pool)
        .await?;
        rows.iter().map(session_from).collect()
    }

    async fn delete_session(&self, account_id: &AccountId, id: &SessionId) -> Result<bool, StoreError> {
        let done = self
            .write(
                "DELETE FROM sessions WHERE account_id = $1 AND id = $2",
                &[Text(account_id.as_str()), Text(id.as_str())],
            )
            .await?;
        Ok(done > 0)
    }

    async fn delete_sessions_except(&self, account_id: &AccountId, keep: &SessionId) -> Result<u64, StoreError> {
        let done = self
            .write(
                "DELETE FROM sessions WHERE account_id = $1 AND id <> $2",
                &[Text(account_id.as_str()), Text(keep.as_str())],
            )
            .await?;
        Ok(done)
    }

    async fn complete_second_step(
        &self,
        session_id: &SessionId,
        token_hash: &str,
        now: Millis,
        event: &SecurityEvent,
        proof: &SecondStepProof,
    ) -> Result<bool, StoreError> {
        // What the proof uses up, then what it changes on its factor, then
        // the session and the sign-in event: each must change one row.
        let mut changes = Vec::with_capacity(4);
        changes.push(match proof {
            SecondStepProof::TotpStep { factor_id, step } => Change::new(
                "UPDATE second_factors SET counter = $2, last_used_at = $3 WHERE id = $1 AND active = 1 AND counter < $2",
                vec![Arg::Text(factor_id.as_str()), Arg::Int(*step), Arg::Int(now)],
            ),
            SecondStepProof::SmsCode { factor_id, digest } => Change::new(
                "DELETE FROM sms_codes WHERE factor_id = $1 AND digest = $2 AND expires_at > $3 AND attempts < $4",
                vec![
                    Arg::Text(factor_id.as_str()),
                    Arg::Text(digest),
                    Arg::Int(now),
                    Arg::Int(i64::from(identity::credential::sms::MAX_TRIES)),
                ],
            ),
            // The session's challenge is what a key's answer uses up.
            SecondStepProof::SecurityKey { .. } => Change::new(
                "DELETE FROM webauthn_challenges WHERE session_id = $1 AND expires_at > $2",
                vec![Arg::Text(session_id.as_str()), Arg::Int(now)],
            ),
            SecondStepProof::BackupCode { account_id, digest } => Change::new(
                "UPDATE backup_codes SET used_at = $3 WHERE account_id = $1 AND digest = $2 AND used_at = 0",
                vec![Arg::Text(account_id.as_str()), Arg::Text(digest), Arg::Int(now)],
            ),
            SecondStepProof::Push { request_id, .. } => Change::new(
                "UPDATE approval_requests SET status = 'used' WHERE id = $1 AND session_id = $2 AND status = 'approved'",
                vec![Arg::Text(request_id.as_str()), Arg::Text(session_id.as_str())],
            ),
        });
        match proof {
            SecondStepProof::SmsCode { factor_id, .. } | SecondStepProof::Push { factor_id, .. } => {
                changes.push(Change::new(
                    "UPDATE second_factors SET last_used_at = $2 WHERE id = $1 AND active = 1",
                    vec![Arg::Text(factor_id.as_str()), Arg::Int(now)],
                ));
            }
            // The key's new state and signature counter.
            SecondStepProof::SecurityKey {
                factor_id,
                secret,
                counter,
            } => changes.push(Change::new(
                "UPDATE second_factors SET last_used_at = $2, secret = $3, counter = $4 WHERE id = $1 AND active = 1",
                vec![
                    Arg::Text(factor_id.as_str()),
                    Arg::Int(now),
                    Arg::Text(secret),
                    Arg::Int(*counter),
                ],
            )),
            SecondStepProof::TotpStep { .. } | SecondStepProof::BackupCode { .. } => {}
        }
        changes.push(Change::new(
            "UPDATE sessions SET stage = 'signed_in', token_hash = $2, last_seen_at = $3
             WHERE id = $1 AND stage = 'second_factor'",
            vec![Arg::Text(session_id.as_str()), Arg::Text(token_hash), Arg::Int(now)],
        ));
        changes.push(event_change(event));
        write_each_changes_one(&self.writer, &changes).await
    }

    async fn count_factor_failure(&self, id: &SessionId) -> Result<u32, StoreError> {
        let row = sqlx::query(
            "UPDATE sessions SET factor_failures = factor_failures + 1 WHERE id = $1 RETURNING factor_failures",
        )
        .bind(id.as_str())
        .optional(&*self.writer.turn().await)
        .await?;
        let failures: i64 = match row {
            Some(row) => row.int("factor_failures")?,
            None => i64::MAX,
        };
        Ok(u32::try_from(failures).unwrap_or(u32::MAX))
    }

    async fn set_password_at(&self, id: &SessionId, now: Millis) -> Result<(), StoreError> {
        self.write(
            "UPDATE sessions SET password_at = $2 WHERE id = $1",
            &[Text(id.as_str()), Int(now)],
        )
        .await?;
        Ok(())
    }
}
