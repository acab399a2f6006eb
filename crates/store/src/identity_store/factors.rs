//! [`identity::FactorStore`] over SQL.

use async_trait::async_trait;
use identity::credential::sms::SmsCode;
use identity::{
    AccountId, FactorId, FactorKind, FactorStore, Millis, SecondFactor, SessionId, StepContext, StoreError,
};
use sqlx::any::AnyRow;

use super::Tx;
use super::throttle::throttle_from;
use crate::SqlStore;
use crate::changes::Arg::{Int, Text};
use crate::db::{Columns, Prefixed, Run, corrupt};

pub(super) fn factor_from(row: &(impl Columns + ?Sized)) -> Result<SecondFactor, StoreError> {
    Ok(SecondFactor {
        id: FactorId::new(row.text("id")?),
        account_id: AccountId::new(row.text("account_id")?),
        kind: FactorKind::parse(&row.text("kind")?).ok_or_else(|| corrupt("factor kind"))?,
        name: row.text("name")?,
        secret: row.text("secret")?,
        active: row.flag("active")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        last_used_at: row.int("last_used_at")?,
        counter: row.int("counter")?,
    })
}

/// The [`StepContext`] in rows that LEFT JOIN the throttle record and the
/// factors (named with `f_`) onto one row: the throttle's columns repeat on
/// each row, and a row without a factor has NULL factor columns.
pub(super) fn step_context_from(rows: &[AnyRow]) -> Result<StepContext, StoreError> {
    let Some(first) = rows.first() else {
        return Err(corrupt("throttle and factors"));
    };
    let throttle = match first.int_or_null("version")? {
        Some(_) => Some(throttle_from(first)?),
        None => None,
    };
    let mut factors = Vec::with_capacity(rows.len());
    for row in rows {
        if row.text_or_null("f_id")?.is_some() {
            factors.push(factor_from(&Prefixed { row, prefix: "f_" })?);
        }
    }
    Ok(StepContext { throttle, factors })
}

pub(super) async fn insert_backup_codes(
    tx: &mut Tx,
    account_id: &AccountId,
    digests: &[String],
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM backup_codes WHERE account_id = $1")
        .bind(account_id.as_str())
        .run(&mut **tx)
        .await?;
    for digest in digests {
        sqlx::query("INSERT INTO backup_codes (account_id, digest, created_at, used_at) VALUES ($1, $2, $3, 0)")
            .bind(account_id.as_str())
            .bind(digest)
            .bind(now)
            .run(&mut **tx)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl FactorStore for SqlStore {
    async fn insert_second_factor(&self, f: &SecondFactor) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO second_factors (id, account_id, kind, name, secret, active, created_at, expires_at, last_used_at, counter)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(f.id.as_str())
        .bind(f.account_id.as_str())
        .bind(f.kind.as_str())
        .bind(&f.name)
        .bind(&f.secret)
        .bind(i64::from(f.active))
        .bind(f.created_at)
        .bind(f.expires_at)
        .bind(f.last_used_at)
        .bind(f.counter)
        .run(&*self.writer.turn().await).await?;
        Ok(())
    }

    async fn second_factors(&self, account_id: &AccountId) -> Result<Vec<SecondFactor>, StoreError> {
        self.list(
            "SELECT id, account_id, kind, name, secret, active, created_at, expires_at, last_used_at, counter
             FROM second_factors WHERE account_id = $1 ORDER BY created_at, id",
            &[Text(account_id.as_str())],
            factor_from,
        )
        .await
    }

    async fn second_factor(&self, id: &FactorId) -> Result<Option<SecondFactor>, StoreError> {
        self.find(
            "SELECT id, account_id, kind, name, secret, active, created_at, expires_at, last_used_at, counter
             FROM second_factors WHERE id = $1",
            &[Text(id.as_str())],
            factor_from,
        )
        .await
    }

    async fn step_context(&self, key: &str, account_id: &AccountId) -> Result<StepContext, StoreError> {
        // One row when there are no factors, else one per factor.
        let sql = concat!(
            "SELECT t.failures, t.last_failure, t.locked_until, t.version, ",
            step_factor_columns!(),
            " FROM (SELECT 1 AS one) AS o
             LEFT JOIN throttles t ON t.key = $1
             LEFT JOIN second_factors f ON f.account_id = $2
             ORDER BY f.created_at, f.id"
        );
        let rows = sqlx::query(sql)
            .bind(key)
            .bind(account_id.as_str())
            .all(&self.pool)
            .await?;
        step_context_from(&rows)
    }

    async fn activate_second_factor(
        &self,
        account_id: &AccountId,
        id: &FactorId,
        now: Millis,
        counter: i64,
        backup_codes: Option<&[String]>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE second_factors SET active = 1, expires_at = 0, counter = $4, last_used_at = $3
             WHERE id = $2 AND account_id = $1 AND active = 0 AND expires_at > $3",
        )
        .bind(account_id.as_str())
        .bind(id.as_str())
        .bind(now)
        .bind(counter)
        .run(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(digests) = backup_codes {
            insert_backup_codes(&mut tx, account_id, digests, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_second_factor(&self, account_id: &AccountId, id: &FactorId) -> Result<Option<usize>, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM second_factors WHERE account_id = $1 AND id = $2 RETURNING id")
            .bind(account_id.as_str())
            .bind(id.as_str())
            .optional(&mut *tx)
            .await?;
        if deleted.is_none() {
            return Ok(None);
        }
        let active: i64 = sqlx::query("SELECT COUNT(*) AS n FROM second_factors WHERE account_id = $1 AND active = 1")
            .bind(account_id.as_str())
            .one(&mut *tx)
            .await?
            .int("n")?;
        if active == 0 {
            insert_backup_codes(&mut tx, account_id, &[], 0).await?;
        }
        tx.commit().await?;
        Ok(Some(usize::try_from(active).unwrap_or(0)))
    }

    async fn replace_backup_codes(
        &self,
        account_id: &AccountId,
        digests: &[String],
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_backup_codes(&mut tx, account_id, digests, now).await?;
        tx.commit().await
    }

    async fn unused_backup_codes(&self, account_id: &AccountId) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT digest FROM backup_codes WHERE account_id = $1 AND used_at = 0")
            .bind(account_id.as_str())
            .all(&self.pool)
            .await?;
        rows.iter().map(|r| r.text("digest")).collect()
    }

    async fn put_linked_backup_codes(
        &self,
        factor_id: &FactorId,
        account_id: &AccountId,
        sealed: &str,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        self.write(
            "INSERT INTO linked_backup_codes (factor_id, account_id, sealed, expires_at) VALUES ($1, $2, $3, $4)",
            &[
                Text(factor_id.as_str()),
                Text(account_id.as_str()),
                Text(sealed),
                Int(expires_at),
            ],
        )
        .await?;
        Ok(())
    }

    async fn take_linked_backup_codes(
        &self,
        factor_id: &FactorId,
        account_id: &AccountId,
        now: Millis,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM linked_backup_codes WHERE factor_id = $1 AND account_id = $2 AND expires_at > $3
             RETURNING sealed",
        )
        .bind(factor_id.as_str())
        .bind(account_id.as_str())
        .bind(now)
        .optional(&*self.writer.turn().await)
        .await?;
        row.map(|r| r.text("sealed")).transpose()
    }

    async fn put_sms_code(
        &self,
        code: &SmsCode,
        account_id: &AccountId,
        number_digest: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sms_codes WHERE factor_id = $1")
            .bind(code.factor_id.as_str())
            .run(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sms_codes (factor_id, digest, sent_at, expires_at, attempts) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(code.factor_id.as_str())
        .bind(&code.digest)
        .bind(code.sent_at)
        .bind(code.expires_at)
        .bind(i64::from(code.attempts))
        .run(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO sms_sends (id, account_id, number_digest, sent_at) VALUES ($1, $2, $3, $4)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(account_id.as_str())
            .bind(number_digest)
            .bind(code.sent_at)
            .run(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn sms_code(&self, factor_id: &FactorId) -> Result<Option<SmsCode>, StoreError> {
        let row =
            sqlx::query("SELECT factor_id, digest, sent_at, expires_at, attempts FROM sms_codes WHERE factor_id = $1")
                .bind(factor_id.as_str())
                .optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(SmsCode {
                factor_id: FactorId::new(row.text("factor_id")?),
                digest: row.text("digest")?,
                sent_at: row.int("sent_at")?,
                expires_at: row.int("expires_at")?,
                attempts: row.count("attempts")?,
            })
        })
        .transpose()
    }

    async fn sms_sends(
        &self,
        account_id: &AccountId,
        number_digest: &str,
        since: Millis,
    ) -> Result<(Vec<Millis>, Vec<Millis>), StoreError> {
        let times =
            |rows: Vec<AnyRow>| -> Result<Vec<Millis>, StoreError> { rows.iter().map(|r| r.int("sent_at")).collect() };
        let to_number = sqlx::query("SELECT sent_at FROM sms_sends WHERE number_digest = $1 AND sent_at > $2")
            .bind(number_digest)
            .bind(since)
            .all(&self.pool)
            .await?;
        let for_account = sqlx::query("SELECT sent_at FROM sms_sends WHERE account_id = $1 AND sent_at > $2")
            .bind(account_id.as_str())
            .bind(since)
            .all(&self.pool)
            .await?;
        Ok((times(to_number)?, times(for_account)?))
    }

    async fn sms_code_failed(&self, factor_id: &FactorId) -> Result<(), StoreError> {
        self.write(
            "UPDATE sms_codes SET attempts = attempts + 1 WHERE factor_id = $1",
            &[Text(factor_id.as_str())],
        )
        .await?;
        Ok(())
    }

    async fn consume_sms_code(&self, factor_id: &FactorId, digest: &str, now: Millis) -> Result<bool, StoreError> {
        let done = self
            .write(
                "DELETE FROM sms_codes WHERE factor_id = $1 AND digest = $2 AND expires_at > $3 AND attempts < $4",
                &[
                    Text(factor_id.as_str()),
                    Text(digest),
                    Int(now),
                    Int(i64::from(identity::credential::sms::MAX_TRIES)),
                ],
            )
            .await?;
        Ok(done == 1)
    }

    async fn put_authenticator_link(
        &self,
        token_hash: &str,
        factor_id: &FactorId,
        account_id: &AccountId,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        self.write(
            "INSERT INTO authenticator_links (token_hash, factor_id, account_id, expires_at) VALUES ($1, $2, $3, $4)",
            &[
                Text(token_hash),
                Text(factor_id.as_str()),
                Text(account_id.as_str()),
                Int(expires_at),
            ],
        )
        .await?;
        Ok(())
    }

    async fn take_authenticator_link(
        &self,
        token_hash: &str,
        now: Millis,
    ) -> Result<Option<(FactorId, AccountId)>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM authenticator_links WHERE token_hash = $1 AND expires_at > $2 RETURNING factor_id, account_id",
        )
        .bind(token_hash)
        .bind(now)
        .optional(&*self.writer.turn().await)
        .await?;
        row.map(|r| {
            Ok((
                FactorId::new(r.text("factor_id")?),
                AccountId::new(r.text("account_id")?),
            ))
        })
        .transpose()
    }

    async fn set_factor_secret(&self, factor_id: &FactorId, secret: &str) -> Result<(), StoreError> {
        self.write(
            "UPDATE second_factors SET secret = $2 WHERE id = $1",
            &[Text(factor_id.as_str()), Text(secret)],
        )
        .await?;
        Ok(())
    }

    async fn put_webauthn_challenge(
        &self,
        session_id: &SessionId,
        state: &str,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM webauthn_challenges WHERE session_id = $1")
            .bind(session_id.as_str())
            .run(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO webauthn_challenges (session_id, state, expires_at) VALUES ($1, $2, $3)")
            .bind(session_id.as_str())
            .bind(state)
            .bind(expires_at)
            .run(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn webauthn_challenge(&self, session_id: &SessionId, now: Millis) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT state FROM webauthn_challenges WHERE session_id = $1 AND expires_at > $2")
            .bind(session_id.as_str())
            .bind(now)
            .optional(&self.pool)
            .await?;
        row.map(|r| r.text("state")).transpose()
    }
}
