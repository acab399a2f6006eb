//! [`identity::SessionStore`] over SQL.

use async_trait::async_trait;
use identity::{
    Account, AccountId, EmailAddress, Millis, SecondFactor, SecondStepProof, SecurityEvent, Session, SessionId,
    SessionStage, SessionStore, SignInContext, StepContext, StoreError, ThrottleRecord, ThrottleRelease,
};

use super::accounts::account_from;
use super::events::event_change;
use super::factors::factor_from;
use super::throttle::{release_change, throttle_from};
use crate::SqlStore;
use crate::changes::Arg::{Int, Text};
use crate::changes::{Arg, Change, write_changes, write_each_changes_one};
use crate::db::{Columns, Prefixed, Run, corrupt};

pub(super) fn session_from(row: &(impl Columns + ?Sized)) -> Result<Session, StoreError> {
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
        // One write, one round trip (see `write_changes`).
        let mut changes = vec![Change::new(
            "INSERT INTO sessions (id, token_hash, account_id, created_at, last_seen_at, remember, ip, user_agent,
             stage, password_at, factor_failures) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            vec![
                Text(s.id.as_str()),
                Text(token_hash),
                Text(s.account_id.as_str()),
                Int(s.created_at),
                Int(s.last_seen_at),
                Int(i64::from(s.remember)),
                Text(&s.ip),
                Text(&s.user_agent),
                Text(s.stage.as_str()),
                Int(s.password_at),
                Int(i64::from(s.factor_failures)),
            ],
        )];
        changes.extend(event.map(event_change));
        changes.extend(release_change(releases));
        write_changes(&self.writer, &changes).await
    }

    async fn session_by_token_hash(&self, hash: &str) -> Result<Option<(Session, Account)>, StoreError> {
        let sql = concat!(
            "SELECT ",
            session_account_columns!(),
            " FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.token_hash = $1"
        );
        let mut rows = self.native_list(sql, &[Text(hash)], session_and_account).await?;
        Ok(rows.pop())
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
        let rows = self
            .native_list(sql, &[Text(hash), Text(throttle_prefix)], |row| {
                let throttle = match row.int_or_null("version")? {
                    Some(_) => Some(throttle_from(row)?),
                    None => None,
                };
                let factor = match row.text_or_null("f_id")? {
                    Some(_) => Some(factor_from(&Prefixed { row, prefix: "f_" })?),
                    None => None,
                };
                Ok((session_and_account(row)?, throttle, factor))
            })
            .await?;
        let mut rows = rows.into_iter();
        let Some(((session, account), throttle, first)) = rows.next() else {
            return Ok(None);
        };
        let factors = first
            .into_iter()
            .chain(rows.filter_map(|(_, _, factor)| factor))
            .collect();
        Ok(Some((session, account, StepContext { throttle, factors })))
    }

    async fn sign_in_context(&self, email: Option<&EmailAddress>, keys: &[&str]) -> Result<SignInContext, StoreError> {
        // On each engine's own driver: this read runs before every
        // password check.
        let sql = sign_in_context_sql(keys.len());
        let mut args = vec![Text(email.map_or("", EmailAddress::as_str))];
        args.extend(keys.iter().map(|key| Text(key)));
        let rows = self.native_list(&sql, &args, |row| SignInRow::from(row)).await?;
        let mut context = SignInContext {
            account: None,
            factors: Vec::new(),
            throttles: vec![None; keys.len()],
        };
        for row in rows {
            if context.account.is_none() {
                context.account = row.account;
            }
            if let Some(factor) = row.factor
                && context.factors.last().is_none_or(|f| f.id != factor.id)
            {
                context.factors.push(factor);
            }
            if let Some((key, record)) = row.throttle
                && let Some(i) = keys.iter().position(|k| *k == key)
            {
                context.throttles[i] = Some(record);
            }
        }
        Ok(context)
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

/// The query of `SessionStore::sign_in_context` for `keys` throttle keys:
/// one row per pair of a method and a throttle record found (or one row of
/// nulls); an account has a few methods and a sign-in reads two or three
/// keys.
fn sign_in_context_sql(keys: usize) -> String {
    let placeholders: Vec<String> = (2..keys + 2).map(|i| format!("${i}")).collect();
    format!(
        "SELECT a.id AS a_id, a.email AS a_email, a.name AS a_name, a.sync_user_id AS a_sync_user_id,
             a.password_hash AS a_password_hash, a.created_at AS a_created_at,
             a.password_changed_at AS a_password_changed_at, a.default_method AS a_default_method,
             a.lang AS a_lang, {}, t.key AS t_key, t.failures, t.last_failure, t.locked_until, t.version
         FROM (SELECT 1 AS one) base
         LEFT JOIN accounts a ON a.email = $1
         LEFT JOIN second_factors f ON f.account_id = a.id
         LEFT JOIN throttles t ON t.key IN ({})
         ORDER BY f.created_at, f.id",
        step_factor_columns!(),
        if keys == 0 {
            "NULL".to_owned()
        } else {
            placeholders.join(", ")
        }
    )
}

/// One row of [`sign_in_context_sql`], whichever driver read it.
struct SignInRow {
    account: Option<Account>,
    factor: Option<SecondFactor>,
    throttle: Option<(String, ThrottleRecord)>,
}

impl SignInRow {
    fn from(row: &dyn Columns) -> Result<Self, StoreError> {
        let account = match row.text_or_null("a_id")? {
            Some(_) => Some(account_from(&Prefixed { row, prefix: "a_" })?),
            None => None,
        };
        let factor = match row.text_or_null("f_id")? {
            Some(_) => Some(factor_from(&Prefixed { row, prefix: "f_" })?),
            None => None,
        };
        let throttle = match row.text_or_null("t_key")? {
            Some(key) => Some((key, throttle_from(row)?)),
            None => None,
        };
        Ok(Self {
            account,
            factor,
            throttle,
        })
    }
}

/// A session and its account from a row of `session_account_columns!`.
fn session_and_account(row: &dyn Columns) -> Result<(Session, Account), StoreError> {
    Ok((session_from(row)?, account_from(&Prefixed { row, prefix: "a_" })?))
}
