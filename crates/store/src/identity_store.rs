//! [`identity::IdentityStore`] over SQL.

use async_trait::async_trait;
use identity::SecondStepProof;
use identity::credential::app_password::AppPassword;
use identity::credential::sms::SmsCode;
use identity::softlock::ThrottleState;
use identity::{
    Account, ApprovalRequest, ApprovalStatus, Constraint, EmailAddress, EventKind, ExpiryCutoffs, FactorKind,
    IdentityStore, Invitation, MailKind, MemberSummary, Membership, MembershipChange, Millis, NewAccount,
    NewOrganization, OrgEvent, OrgPolicy, Organization, QueuedMail, Role, SecondFactor, SecurityEvent, Session,
    SessionStage, StepContext, StoreError, SyncUserId, ThrottleRecord, ThrottleRelease, ThrottleReservation,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::changes::{Arg, Change, write_each_changes_one};
use crate::db::{Columns, Prefixed, Run, backend, corrupt};

type Tx = crate::writer::WriteTx;

fn account_from(row: &impl Columns) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.text("id")?,
        email: EmailAddress::parse(&row.text("email")?).map_err(|_| corrupt("email"))?,
        name: row.text("name")?,
        sync_user_id: SyncUserId::parse(&row.text("sync_user_id")?).ok_or_else(|| corrupt("sync user id"))?,
        password_hash: row.text("password_hash")?,
        created_at: row.int("created_at")?,
        password_changed_at: row.int("password_changed_at")?,
        default_method: FactorKind::parse(&row.text("default_method")?),
        lang: row.text("lang")?,
    })
}

fn org_from(row: &AnyRow) -> Result<Organization, StoreError> {
    Ok(Organization {
        id: row.text("id")?,
        name: row.text("name")?,
        created_at: row.int("created_at")?,
    })
}

fn session_from(row: &AnyRow) -> Result<Session, StoreError> {
    let stage: String = row.text("stage")?;
    let failures: i64 = row.int("factor_failures")?;
    Ok(Session {
        id: row.text("id")?,
        account_id: row.text("account_id")?,
        created_at: row.int("created_at")?,
        last_seen_at: row.int("last_seen_at")?,
        remember: row.int("remember")? != 0,
        ip: row.text("ip")?,
        user_agent: row.text("user_agent")?,
        stage: SessionStage::parse(&stage).ok_or_else(|| corrupt("session stage"))?,
        password_at: row.int("password_at")?,
        factor_failures: u32::try_from(failures).unwrap_or(u32::MAX),
    })
}

/// Gives back the room of one reserved attempt; a success (`forget`) also
/// forgets the key's failures. The row stays while other attempts are in
/// flight: deleting it would free their room too.
/// Reserves one attempt on `key` (see `IdentityStore::reserve_throttle`).
/// The check and the increment are one statement: two concurrent attempts
/// cannot both take the last room. Reservations do not bump the version;
/// a settled failure does, so room computed from an older state is
/// refused and computed again.
fn reserve_throttle<'q>(
    key: &'q str,
    r: &ThrottleReservation,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO throttles (key, failures, last_failure, locked_until, version, in_flight, reserved_at)
         VALUES ($1, 0, 0, 0, 0, 1, $2)
         ON CONFLICT (key) DO UPDATE SET
             in_flight = CASE WHEN throttles.reserved_at <= $3 THEN 1 ELSE throttles.in_flight + 1 END,
             reserved_at = $2
         WHERE throttles.version = $4 AND (throttles.in_flight < $5 OR throttles.reserved_at <= $3)",
    )
    .bind(key)
    .bind(r.now)
    .bind(r.lapsed_before)
    .bind(r.version)
    .bind(i64::from(r.open))
}

async fn release_throttle(conn: &mut sqlx::AnyConnection, release: &ThrottleRelease) -> Result<(), StoreError> {
    let sql = if release.forget {
        "UPDATE throttles SET in_flight = CASE WHEN in_flight > 0 THEN in_flight - 1 ELSE 0 END,
             failures = 0, last_failure = 0, locked_until = 0, version = version + 1
         WHERE key = $1"
    } else {
        "UPDATE throttles SET in_flight = CASE WHEN in_flight > 0 THEN in_flight - 1 ELSE 0 END WHERE key = $1"
    };
    sqlx::query(sql)
        .bind(&release.key)
        .execute(conn)
        .await
        .map_err(backend)?;
    Ok(())
}

/// A throttle record from a row with its columns.
fn throttle_from(row: &AnyRow) -> Result<ThrottleRecord, StoreError> {
    let failures: i64 = row.int("failures")?;
    Ok(ThrottleRecord {
        state: ThrottleState {
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            last_failure: row.int("last_failure")?,
            locked_until: row.int("locked_until")?,
        },
        version: row.int("version")?,
    })
}

fn factor_from(row: &impl Columns) -> Result<SecondFactor, StoreError> {
    Ok(SecondFactor {
        id: row.text("id")?,
        account_id: row.text("account_id")?,
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
fn step_context_from(rows: &[AnyRow]) -> Result<StepContext, StoreError> {
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

/// The factor columns [`step_context_from`] reads, from `second_factors f`.
macro_rules! step_factor_columns {
    () => {
        "f.id AS f_id, f.account_id AS f_account_id, f.kind AS f_kind, f.name AS f_name,
     f.secret AS f_secret, f.active AS f_active, f.created_at AS f_created_at, f.expires_at AS f_expires_at,
     f.last_used_at AS f_last_used_at, f.counter AS f_counter"
    };
}

/// The columns [`session_from`] and `account_from` (prefixed `a_`) read,
/// from `sessions s JOIN accounts a`.
macro_rules! session_account_columns {
    () => {
        "s.id, s.account_id, s.created_at, s.last_seen_at, s.remember, s.ip, s.user_agent,
     s.stage, s.password_at, s.factor_failures,
     a.id AS a_id, a.email AS a_email, a.name AS a_name, a.sync_user_id AS a_sync_user_id,
     a.password_hash AS a_password_hash, a.created_at AS a_created_at,
     a.password_changed_at AS a_password_changed_at, a.default_method AS a_default_method, a.lang AS a_lang"
    };
}

fn mail_from(row: &AnyRow) -> Result<QueuedMail, StoreError> {
    let kind: String = row.text("kind")?;
    let params: String = row.text("params")?;
    let attempts: i64 = row.int("attempts")?;
    Ok(QueuedMail {
        id: row.text("id")?,
        account_id: row.text_or_null("account_id")?,
        to: row.text("to_addr")?,
        lang: row.text("lang")?,
        kind: MailKind::parse(&kind).ok_or_else(|| corrupt("mail kind"))?,
        params: serde_json::from_str(&params).map_err(|_| corrupt("mail parameters"))?,
        created_at: row.int("created_at")?,
        next_attempt_at: row.int("next_attempt_at")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
    })
}

pub(crate) async fn insert_org_event(conn: &mut sqlx::AnyConnection, e: &OrgEvent) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO org_events (id, org_id, at, actor, kind, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(e.id.as_str())
        .bind(e.org_id.as_str())
        .bind(e.at)
        .bind(e.actor.as_str())
        .bind(e.kind.as_str())
        .bind(e.detail.as_str())
        .run(conn)
        .await?;
    Ok(())
}

const POLICY_COLUMNS: &str =
    "SELECT id, name, require_two_factor, grace_days, policy_since, policy_by FROM organizations";

fn policy_from(row: &AnyRow) -> Result<OrgPolicy, StoreError> {
    let grace: i64 = row.int("grace_days")?;
    Ok(OrgPolicy {
        org_id: row.text("id")?,
        org_name: row.text("name")?,
        require_two_factor: row.int("require_two_factor")? != 0,
        grace_days: u32::try_from(grace).unwrap_or(0),
        since: row.int("policy_since")?,
        by: row.text("policy_by")?,
    })
}

fn role_of(row: &AnyRow) -> Result<Role, StoreError> {
    let role: String = row.text("role")?;
    role.parse().map_err(|_| corrupt("role"))
}

const APPROVAL_COLUMNS: &str = "SELECT id, account_id, session_id, number, choices, status, ip, user_agent,
    created_at, expires_at, answered_at, answered_by FROM approval_requests";

fn approval_from(row: &AnyRow) -> Result<ApprovalRequest, StoreError> {
    let number: i64 = row.int("number")?;
    let choices: String = row.text("choices")?;
    let choices: Vec<u8> = choices.split(',').filter_map(|n| n.parse().ok()).collect();
    let status: String = row.text("status")?;
    Ok(ApprovalRequest {
        id: row.text("id")?,
        account_id: row.text("account_id")?,
        session_id: row.text("session_id")?,
        number: u8::try_from(number).map_err(|_| corrupt("approval number"))?,
        choices: <[u8; 3]>::try_from(choices).map_err(|_| corrupt("approval choices"))?,
        status: ApprovalStatus::parse(&status).ok_or_else(|| corrupt("approval status"))?,
        ip: row.text("ip")?,
        user_agent: row.text("user_agent")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        answered_at: row.int("answered_at")?,
        answered_by: row.text("answered_by")?,
    })
}

async fn insert_backup_codes(tx: &mut Tx, account_id: &str, digests: &[String], now: Millis) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM backup_codes WHERE account_id = $1")
        .bind(account_id)
        .run(&mut **tx)
        .await?;
    for digest in digests {
        sqlx::query("INSERT INTO backup_codes (account_id, digest, created_at, used_at) VALUES ($1, $2, $3, 0)")
            .bind(account_id)
            .bind(digest)
            .bind(now)
            .run(&mut **tx)
            .await?;
    }
    Ok(())
}

const SESSION_COLUMNS: &str =
    "id, account_id, created_at, last_seen_at, remember, ip, user_agent, stage, password_at, factor_failures";

fn event_from(row: &AnyRow) -> Result<SecurityEvent, StoreError> {
    let kind: String = row.text("kind")?;
    Ok(SecurityEvent {
        id: row.text("id")?,
        account_id: row.text("account_id")?,
        at: row.int("at")?,
        kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind"))?,
        ip: row.text("ip")?,
        user_agent: row.text("user_agent")?,
        detail: row.text("detail")?,
    })
}

async fn insert_event(conn: &mut sqlx::AnyConnection, e: &SecurityEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO security_events (id, account_id, at, kind, ip, user_agent, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&e.id)
    .bind(&e.account_id)
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
fn event_change(e: &SecurityEvent) -> Change<'_> {
    Change::new(
        "INSERT INTO security_events (id, account_id, at, kind, ip, user_agent, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            Arg::Text(&e.id),
            Arg::Text(&e.account_id),
            Arg::Int(e.at),
            Arg::Text(e.kind.as_str()),
            Arg::Text(&e.ip),
            Arg::Text(&e.user_agent),
            Arg::Text(&e.detail),
        ],
    )
}

const ACCOUNT_COLUMNS: &str =
    "id, email, name, sync_user_id, password_hash, created_at, password_changed_at, default_method, lang";

async fn insert_organization(
    tx: &mut Tx,
    id: &str,
    org: &NewOrganization,
    now: Millis,
) -> Result<Organization, StoreError> {
    let row = sqlx::query(
        "INSERT INTO organizations (id, name, name_key, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name_key) DO NOTHING RETURNING id, name, created_at",
    )
    .bind(id)
    .bind(&org.name)
    .bind(org.name.to_lowercase())
    .bind(now)
    .optional(&mut **tx)
    .await?;
    row.as_ref()
        .map(org_from)
        .unwrap_or(Err(StoreError::Conflict(Constraint::OrganizationName)))
}

/// Inserts the account with the first sync user id nobody ever had.
async fn insert_account(
    tx: &mut Tx,
    account: &NewAccount,
    sync_ids: &mut (dyn Iterator<Item = SyncUserId> + Send),
) -> Result<Account, StoreError> {
    let sync_id = loop {
        let candidate = sync_ids
            .next()
            .ok_or_else(|| StoreError::Backend("no free sync user id found".into()))?;
        let reserved = sqlx::query(
            "INSERT INTO sync_user_ids (id, assigned_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(candidate.as_str())
        .bind(account.created_at)
        .optional(&mut **tx)
        .await?;
        if reserved.is_some() {
            break candidate;
        }
    };
    let inserted = sqlx::query(
        "INSERT INTO accounts (id, email, name, sync_user_id, password_hash, created_at, password_changed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (email) DO NOTHING RETURNING id",
    )
    .bind(&account.id)
    .bind(account.email.as_str())
    .bind(&account.name)
    .bind(sync_id.as_str())
    .bind(&account.password_hash)
    .bind(account.created_at)
    .optional(&mut **tx)
    .await?;
    if inserted.is_none() {
        return Err(StoreError::Conflict(Constraint::Email));
    }
    Ok(Account {
        id: account.id.clone(),
        email: account.email.clone(),
        name: account.name.clone(),
        sync_user_id: sync_id,
        password_hash: account.password_hash.clone(),
        created_at: account.created_at,
        password_changed_at: account.created_at,
        default_method: None,
        lang: "en".to_owned(),
    })
}

async fn insert_membership(
    tx: &mut Tx,
    org_id: &str,
    account_id: &str,
    role: Role,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO memberships (org_id, account_id, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(org_id)
        .bind(account_id)
        .bind(role.as_str())
        .bind(now)
        .run(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl IdentityStore for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").run(&self.pool).await?;
        Ok(())
    }

    async fn count_accounts(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM accounts")
            .one(&self.pool)
            .await?;
        row.int("n")
    }

    async fn put_setup_token(&self, hash: &str, expires_at: Millis) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM setup_tokens").run(&mut *tx).await?;
        sqlx::query("INSERT INTO setup_tokens (token_hash, expires_at) VALUES ($1, $2)")
            .bind(hash)
            .bind(expires_at)
            .run(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn setup_token_valid(&self, hash: &str, now: Millis) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS ok FROM setup_tokens WHERE token_hash = $1 AND expires_at > $2")
            .bind(hash)
            .bind(now)
            .optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn complete_setup(
        &self,
        token_hash: &str,
        now: Millis,
        org: &NewOrganization,
        account: &NewAccount,
        sync_ids: &mut (dyn Iterator<Item = SyncUserId> + Send),
    ) -> Result<(Organization, Account), StoreError> {
        let mut tx = self.begin_write().await?;
        let consumed =
            sqlx::query("DELETE FROM setup_tokens WHERE token_hash = $1 AND expires_at > $2 RETURNING token_hash")
                .bind(token_hash)
                .bind(now)
                .optional(&mut *tx)
                .await?;
        let accounts: i64 = sqlx::query("SELECT COUNT(*) AS n FROM accounts")
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(backend)?;
        if consumed.is_none() || accounts > 0 {
            return Err(StoreError::SetupUnavailable);
        }
        let org_id = uuid::Uuid::new_v4().to_string();
        let organization = insert_organization(&mut tx, &org_id, org, now).await?;
        let account = insert_account(&mut tx, account, sync_ids).await?;
        insert_membership(&mut tx, &organization.id, &account.id, Role::LegalRepresentative, now).await?;
        tx.commit().await?;
        Ok((organization, account))
    }

    async fn create_organization(
        &self,
        id: &str,
        org: &NewOrganization,
        now: Millis,
    ) -> Result<Organization, StoreError> {
        let mut tx = self.begin_write().await?;
        let created = insert_organization(&mut tx, id, org, now).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn organization_by_name(&self, name: &str) -> Result<Option<Organization>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM organizations WHERE name_key = $1")
            .bind(name.to_lowercase())
            .optional(&self.pool)
            .await?;
        row.as_ref().map(org_from).transpose()
    }

    async fn create_account(
        &self,
        account: &NewAccount,
        membership: Option<(&str, Role)>,
        sync_ids: &mut (dyn Iterator<Item = SyncUserId> + Send),
    ) -> Result<Account, StoreError> {
        let mut tx = self.begin_write().await?;
        let created = insert_account(&mut tx, account, sync_ids).await?;
        if let Some((org_id, role)) = membership {
            insert_membership(&mut tx, org_id, &created.id, role, account.created_at).await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn account_by_email(&self, email: &EmailAddress) -> Result<Option<Account>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = $1"));
        let row = sqlx::query(sql).bind(email.as_str()).optional(&self.pool).await?;
        row.as_ref().map(account_from).transpose()
    }

    async fn account_by_id(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"));
        let row = sqlx::query(sql).bind(id).optional(&self.pool).await?;
        row.as_ref().map(account_from).transpose()
    }

    async fn memberships(&self, account_id: &str) -> Result<Vec<Membership>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, o.name, m.role FROM memberships m JOIN organizations o ON o.id = m.org_id
             WHERE m.account_id = $1 ORDER BY o.name_key",
        )
        .bind(account_id)
        .all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.text("role")?;
                Ok(Membership {
                    org_id: row.text("id")?,
                    org_name: row.text("name")?,
                    role: role.parse().map_err(|_| corrupt("role"))?,
                })
            })
            .collect()
    }

    async fn set_password(&self, account_id: &str, hash: &str, now: Millis) -> Result<(), StoreError> {
        sqlx::query("UPDATE accounts SET password_hash = $2, password_changed_at = $3 WHERE id = $1")
            .bind(account_id)
            .bind(hash)
            .bind(now)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(())
    }

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
        .bind(&s.id)
        .bind(token_hash)
        .bind(&s.account_id)
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

    async fn touch_session(&self, id: &str, now: Millis, ip: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = $2, ip = $3 WHERE id = $1")
            .bind(id)
            .bind(now)
            .bind(ip)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(())
    }

    async fn sessions_of(&self, account_id: &str) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE account_id = $1"
        )))
        .bind(account_id)
        .all(&self.pool)
        .await?;
        rows.iter().map(session_from).collect()
    }

    async fn delete_session(&self, account_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND id = $2")
            .bind(account_id)
            .bind(id)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_sessions_except(&self, account_id: &str, keep: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND id <> $2")
            .bind(account_id)
            .bind(keep)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(done.rows_affected())
    }

    async fn throttle(&self, key: &str) -> Result<Option<ThrottleRecord>, StoreError> {
        Ok(self.throttles(&[key]).await?.pop().flatten())
    }

    async fn throttles(&self, keys: &[&str]) -> Result<Vec<Option<ThrottleRecord>>, StoreError> {
        let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT key, failures, last_failure, locked_until, version FROM throttles WHERE key IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for key in keys {
            query = query.bind(*key);
        }
        let rows = query.all(&self.pool).await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let key: String = row.text("key")?;
            found.push((key, throttle_from(row)?));
        }
        Ok(keys
            .iter()
            .map(|k| found.iter().find(|(key, _)| key == k).map(|(_, r)| *r))
            .collect())
    }

    async fn reserve_throttle(&self, key: &str, r: ThrottleReservation) -> Result<bool, StoreError> {
        let done = reserve_throttle(key, &r)
            .execute(&*self.writer.turn().await)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn reserve_throttles(&self, reservations: &[(&str, ThrottleReservation)]) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        for (key, r) in reservations {
            let done = reserve_throttle(key, r).execute(&mut *tx).await.map_err(backend)?;
            if done.rows_affected() != 1 {
                // Dropped unfinished: rolled back before the next turn.
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn swap_throttle(&self, key: &str, expected: Option<i64>, state: ThrottleState) -> Result<bool, StoreError> {
        let failures = i64::from(state.failures);
        let done = match expected {
            None => sqlx::query(
                "INSERT INTO throttles (key, failures, last_failure, locked_until, version) VALUES ($1, $2, $3, $4, 1)
                 ON CONFLICT (key) DO UPDATE SET failures = $2, last_failure = $3, locked_until = $4,
                     version = throttles.version + 1,
                     in_flight = CASE WHEN throttles.in_flight > 0 THEN throttles.in_flight - 1 ELSE 0 END",
            )
            .bind(key)
            .bind(failures)
            .bind(state.last_failure)
            .bind(state.locked_until)
            .execute(&*self.writer.turn().await)
            .await,
            Some(version) => {
                sqlx::query(
                    "UPDATE throttles SET failures = $2, last_failure = $3, locked_until = $4, version = version + 1,
                         in_flight = CASE WHEN in_flight > 0 THEN in_flight - 1 ELSE 0 END
                     WHERE key = $1 AND version = $5",
                )
                .bind(key)
                .bind(failures)
                .bind(state.last_failure)
                .bind(state.locked_until)
                .bind(version)
                .execute(&*self.writer.turn().await)
                .await
            }
        };
        Ok(done.map_err(backend)?.rows_affected() == 1)
    }

    async fn release_throttles(&self, releases: &[ThrottleRelease]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for release in releases {
            release_throttle(&mut tx, release).await?;
        }
        tx.commit().await
    }

    async fn default_method(&self, account_id: &str) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT default_method FROM accounts WHERE id = $1")
            .bind(account_id)
            .optional(&self.pool)
            .await?;
        row.map_or(Ok(String::new()), |r| r.text("default_method"))
    }

    async fn set_default_method(&self, account_id: &str, kind: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE accounts SET default_method = $2 WHERE id = $1")
            .bind(account_id)
            .bind(kind)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(())
    }

    async fn account_by_sync_user_id(&self, id: &SyncUserId) -> Result<Option<Account>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE sync_user_id = $1"
        ));
        let row = sqlx::query(sql).bind(id.as_str()).optional(&self.pool).await?;
        row.as_ref().map(account_from).transpose()
    }

    async fn complete_second_step(
        &self,
        session_id: &str,
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
                vec![Arg::Text(factor_id), Arg::Int(*step), Arg::Int(now)],
            ),
            SecondStepProof::SmsCode { factor_id, digest } => Change::new(
                "DELETE FROM sms_codes WHERE factor_id = $1 AND digest = $2 AND expires_at > $3 AND attempts < $4",
                vec![
                    Arg::Text(factor_id),
                    Arg::Text(digest),
                    Arg::Int(now),
                    Arg::Int(i64::from(identity::credential::sms::MAX_TRIES)),
                ],
            ),
            // The session's challenge is what a key's answer uses up.
            SecondStepProof::SecurityKey { .. } => Change::new(
                "DELETE FROM webauthn_challenges WHERE session_id = $1 AND expires_at > $2",
                vec![Arg::Text(session_id), Arg::Int(now)],
            ),
            SecondStepProof::BackupCode { account_id, digest } => Change::new(
                "UPDATE backup_codes SET used_at = $3 WHERE account_id = $1 AND digest = $2 AND used_at = 0",
                vec![Arg::Text(account_id), Arg::Text(digest), Arg::Int(now)],
            ),
            SecondStepProof::Push { request_id, .. } => Change::new(
                "UPDATE approval_requests SET status = 'used' WHERE id = $1 AND session_id = $2 AND status = 'approved'",
                vec![Arg::Text(request_id), Arg::Text(session_id)],
            ),
        });
        match proof {
            SecondStepProof::SmsCode { factor_id, .. } | SecondStepProof::Push { factor_id, .. } => {
                changes.push(Change::new(
                    "UPDATE second_factors SET last_used_at = $2 WHERE id = $1 AND active = 1",
                    vec![Arg::Text(factor_id), Arg::Int(now)],
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
                    Arg::Text(factor_id),
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
            vec![Arg::Text(session_id), Arg::Text(token_hash), Arg::Int(now)],
        ));
        changes.push(event_change(event));
        write_each_changes_one(&self.writer, &changes).await
    }

    async fn count_factor_failure(&self, id: &str) -> Result<u32, StoreError> {
        let row = sqlx::query(
            "UPDATE sessions SET factor_failures = factor_failures + 1 WHERE id = $1 RETURNING factor_failures",
        )
        .bind(id)
        .optional(&*self.writer.turn().await)
        .await?;
        let failures: i64 = match row {
            Some(row) => row.int("factor_failures")?,
            None => i64::MAX,
        };
        Ok(u32::try_from(failures).unwrap_or(u32::MAX))
    }

    async fn set_password_at(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET password_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(())
    }

    async fn insert_second_factor(&self, f: &SecondFactor) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO second_factors (id, account_id, kind, name, secret, active, created_at, expires_at, last_used_at, counter)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&f.id)
        .bind(&f.account_id)
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

    async fn second_factors(&self, account_id: &str) -> Result<Vec<SecondFactor>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account_id, kind, name, secret, active, created_at, expires_at, last_used_at, counter
             FROM second_factors WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account_id)
        .all(&self.pool)
        .await?;
        rows.iter().map(factor_from).collect()
    }

    async fn step_context(&self, key: &str, account_id: &str) -> Result<StepContext, StoreError> {
        // One row when there are no factors, else one per factor.
        let sql = concat!(
            "SELECT t.failures, t.last_failure, t.locked_until, t.version, ",
            step_factor_columns!(),
            " FROM (SELECT 1 AS one) AS o
             LEFT JOIN throttles t ON t.key = $1
             LEFT JOIN second_factors f ON f.account_id = $2
             ORDER BY f.created_at, f.id"
        );
        let rows = sqlx::query(sql).bind(key).bind(account_id).all(&self.pool).await?;
        step_context_from(&rows)
    }

    async fn activate_second_factor(
        &self,
        account_id: &str,
        id: &str,
        now: Millis,
        counter: i64,
        backup_codes: Option<&[String]>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE second_factors SET active = 1, expires_at = 0, counter = $4, last_used_at = $3
             WHERE id = $2 AND account_id = $1 AND active = 0 AND expires_at > $3",
        )
        .bind(account_id)
        .bind(id)
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

    async fn delete_second_factor(&self, account_id: &str, id: &str) -> Result<Option<usize>, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM second_factors WHERE account_id = $1 AND id = $2 RETURNING id")
            .bind(account_id)
            .bind(id)
            .optional(&mut *tx)
            .await?;
        if deleted.is_none() {
            return Ok(None);
        }
        let active: i64 = sqlx::query("SELECT COUNT(*) AS n FROM second_factors WHERE account_id = $1 AND active = 1")
            .bind(account_id)
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(backend)?;
        if active == 0 {
            insert_backup_codes(&mut tx, account_id, &[], 0).await?;
        }
        tx.commit().await?;
        Ok(Some(usize::try_from(active).unwrap_or(0)))
    }

    async fn replace_backup_codes(&self, account_id: &str, digests: &[String], now: Millis) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_backup_codes(&mut tx, account_id, digests, now).await?;
        tx.commit().await
    }

    async fn unused_backup_codes(&self, account_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT digest FROM backup_codes WHERE account_id = $1 AND used_at = 0")
            .bind(account_id)
            .all(&self.pool)
            .await?;
        rows.iter().map(|r| r.text("digest")).collect()
    }

    async fn put_authenticator_link(
        &self,
        token_hash: &str,
        factor_id: &str,
        account_id: &str,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO authenticator_links (token_hash, factor_id, account_id, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(factor_id)
        .bind(account_id)
        .bind(expires_at)
        .run(&*self.writer.turn().await)
        .await?;
        Ok(())
    }

    async fn take_authenticator_link(
        &self,
        token_hash: &str,
        now: Millis,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM authenticator_links WHERE token_hash = $1 AND expires_at > $2 RETURNING factor_id, account_id",
        )
        .bind(token_hash)
        .bind(now)
        .optional(&*self.writer.turn().await)
        .await?;
        row.map(|r| Ok((r.text("factor_id")?, r.text("account_id")?)))
            .transpose()
    }

    async fn set_account_lang(&self, account_id: &str, lang: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE accounts SET lang = $2 WHERE id = $1")
            .bind(account_id)
            .bind(lang)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(())
    }

    async fn enqueue_mail(&self, m: &QueuedMail) -> Result<(), StoreError> {
        let params = serde_json::to_string(&m.params).map_err(|e| StoreError::Backend(e.to_string()))?;
        sqlx::query(
            "INSERT INTO mail_queue (id, account_id, to_addr, lang, kind, params, created_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(m.id.as_str())
        .bind(m.account_id.as_deref())
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

    async fn claim_mail(&self, now: Millis, lease_until: Millis) -> Result<Option<QueuedMail>, StoreError> {
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
            let mut mail = mail_from(&row)?;
            let claimed = sqlx::query(
                "UPDATE mail_queue SET next_attempt_at = $3 WHERE id = $1 AND next_attempt_at = $2 AND sent_at = 0",
            )
            .bind(mail.id.as_str())
            .bind(mail.next_attempt_at)
            .bind(lease_until)
            .run(&*self.writer.turn().await)
            .await?;
            if claimed.rows_affected() == 1 {
                mail.next_attempt_at = lease_until;
                return Ok(Some(mail));
            }
        }
        Ok(None)
    }

    async fn mail_sent(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        sqlx::query("UPDATE mail_queue SET sent_at = $2, last_error = '' WHERE id = $1")
            .bind(id)
            .bind(now)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(())
    }

    async fn mail_failed(
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
        sqlx::query(
            "UPDATE mail_queue SET attempts = $2, next_attempt_at = $3, sent_at = $4, last_error = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(i64::from(attempts))
        .bind(next)
        .bind(sent)
        .bind(error)
        .run(&*self.writer.turn().await)
        .await?;
        Ok(())
    }

    async fn mail_opt_outs(&self, account_id: &str) -> Result<Vec<MailKind>, StoreError> {
        let rows = sqlx::query("SELECT kind FROM mail_opt_outs WHERE account_id = $1")
            .bind(account_id)
            .all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("kind").ok())
            .filter_map(|k| MailKind::parse(&k))
            .collect())
    }

    async fn set_mail_opt_out(&self, account_id: &str, kind: MailKind, off: bool) -> Result<(), StoreError> {
        let statement = if off {
            "INSERT INTO mail_opt_outs (account_id, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM mail_opt_outs WHERE account_id = $1 AND kind = $2"
        };
        sqlx::query(statement)
            .bind(account_id)
            .bind(kind.as_str())
            .run(&*self.writer.turn().await)
            .await?;
        Ok(())
    }

    async fn organization(&self, org_id: &str) -> Result<Option<Organization>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = $1")
            .bind(org_id)
            .optional(&self.pool)
            .await?;
        row.as_ref().map(org_from).transpose()
    }

    async fn membership_role(&self, org_id: &str, account_id: &str) -> Result<Option<Role>, StoreError> {
        let row = sqlx::query("SELECT role FROM memberships WHERE org_id = $1 AND account_id = $2")
            .bind(org_id)
            .bind(account_id)
            .optional(&self.pool)
            .await?;
        row.as_ref().map(role_of).transpose()
    }

    async fn org_members(&self, org_id: &str) -> Result<Vec<MemberSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.email, a.name, m.role, m.created_at,
                (SELECT COUNT(*) FROM second_factors f WHERE f.account_id = a.id AND f.active = 1) AS methods,
                (SELECT COALESCE(MAX(e.at), 0) FROM security_events e
                 WHERE e.account_id = a.id AND e.kind = 'sign_in') AS last_sign_in
             FROM memberships m JOIN accounts a ON a.id = m.account_id
             WHERE m.org_id = $1 ORDER BY a.email",
        )
        .bind(org_id)
        .all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let methods: i64 = r.int("methods")?;
                Ok(MemberSummary {
                    account_id: r.text("id")?,
                    email: r.text("email")?,
                    name: r.text("name")?,
                    role: role_of(r)?,
                    joined_at: r.int("created_at")?,
                    methods: u32::try_from(methods).unwrap_or(0),
                    last_sign_in: r.int("last_sign_in")?,
                })
            })
            .collect()
    }

    async fn change_membership(
        &self,
        org_id: &str,
        account_id: &str,
        role: Option<Role>,
        event: &OrgEvent,
    ) -> Result<MembershipChange, StoreError> {
        let mut tx = self.begin_write().await?;
        // Serializes changes per organization, so two demotions at once
        // cannot both pass the legal-representative count.
        sqlx::query("UPDATE organizations SET id = id WHERE id = $1")
            .bind(org_id)
            .run(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT role FROM memberships WHERE org_id = $1 AND account_id = $2")
            .bind(org_id)
            .bind(account_id)
            .optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(MembershipChange::NotMember);
        };
        if role_of(&row)? == Role::LegalRepresentative && role != Some(Role::LegalRepresentative) {
            let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM memberships WHERE org_id = $1 AND role = $2")
                .bind(org_id)
                .bind(Role::LegalRepresentative.as_str())
                .one(&mut *tx)
                .await?
                .int("n")?;
            if n <= 1 {
                return Ok(MembershipChange::LastLegalRepresentative);
            }
        }
        let change = match role {
            Some(role) => sqlx::query("UPDATE memberships SET role = $3 WHERE org_id = $1 AND account_id = $2")
                .bind(org_id)
                .bind(account_id)
                .bind(role.as_str()),
            None => sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND account_id = $2")
                .bind(org_id)
                .bind(account_id),
        };
        change.run(&mut *tx).await?;
        if role.is_none() {
            // Someone who leaves takes their drive rules along: rejoining
            // starts from each drive's default.
            sqlx::query(
                "DELETE FROM drive_members WHERE account_id = $1
                 AND drive_id IN (SELECT id FROM drives WHERE org_id = $2)",
            )
            .bind(account_id)
            .bind(org_id)
            .run(&mut *tx)
            .await?;
        }
        insert_org_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(MembershipChange::Done)
    }

    async fn put_invitation(&self, token_hash: &str, i: &Invitation, event: &OrgEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO invitations (token_hash, org_id, email, role, invited_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token_hash)
        .bind(i.org_id.as_str())
        .bind(i.email.as_str())
        .bind(i.role.as_str())
        .bind(i.invited_by.as_str())
        .bind(i.created_at)
        .bind(i.expires_at)
        .run(&mut *tx)
        .await?;
        insert_org_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn invitation(&self, token_hash: &str, now: Millis) -> Result<Option<Invitation>, StoreError> {
        let row = sqlx::query(
            "SELECT i.org_id, o.name, i.email, i.role, i.invited_by, i.created_at, i.expires_at
             FROM invitations i JOIN organizations o ON o.id = i.org_id
             WHERE i.token_hash = $1 AND i.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Invitation {
                org_id: r.text("org_id")?,
                org_name: r.text("name")?,
                email: r.text("email")?,
                role: role_of(&r)?,
                invited_by: r.text("invited_by")?,
                created_at: r.int("created_at")?,
                expires_at: r.int("expires_at")?,
            })
        })
        .transpose()
    }

    async fn accept_invitation(
        &self,
        token_hash: &str,
        now: Millis,
        account_id: &str,
        event: &OrgEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let row =
            sqlx::query("DELETE FROM invitations WHERE token_hash = $1 AND expires_at > $2 RETURNING org_id, role")
                .bind(token_hash)
                .bind(now)
                .optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let org_id: String = row.text("org_id")?;
        sqlx::query(
            "INSERT INTO memberships (org_id, account_id, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (org_id, account_id) DO NOTHING",
        )
        .bind(org_id.as_str())
        .bind(account_id)
        .bind(role_of(&row)?.as_str())
        .bind(now)
        .run(&mut *tx)
        .await?;
        insert_org_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn org_policy(&self, org_id: &str) -> Result<Option<OrgPolicy>, StoreError> {
        let sql = format!("{POLICY_COLUMNS} WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id)
            .optional(&self.pool)
            .await?;
        row.as_ref().map(policy_from).transpose()
    }

    async fn required_policies(&self) -> Result<Vec<OrgPolicy>, StoreError> {
        let sql = format!("{POLICY_COLUMNS} WHERE require_two_factor = 1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).all(&self.pool).await?;
        rows.iter().map(policy_from).collect()
    }

    async fn set_org_policy(&self, p: &OrgPolicy, event: &OrgEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE organizations SET require_two_factor = $2, grace_days = $3, policy_since = $4, policy_by = $5
             WHERE id = $1",
        )
        .bind(p.org_id.as_str())
        .bind(i64::from(p.require_two_factor))
        .bind(i64::from(p.grace_days))
        .bind(p.since)
        .bind(p.by.as_str())
        .run(&mut *tx)
        .await?;
        insert_org_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn org_events(&self, org_id: &str, limit: u32) -> Result<Vec<OrgEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, org_id, at, actor, kind, detail FROM org_events WHERE org_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(org_id)
        .bind(i64::from(limit))
        .all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OrgEvent {
                    id: r.text("id")?,
                    org_id: r.text("org_id")?,
                    at: r.int("at")?,
                    actor: r.text("actor")?,
                    kind: r.text("kind")?,
                    detail: r.text("detail")?,
                })
            })
            .collect()
    }

    async fn last_security_alert(&self, org_id: &str, account_id: &str) -> Result<Option<Millis>, StoreError> {
        let row = sqlx::query(
            "SELECT sent_at FROM security_alerts WHERE org_id = $1 AND account_id = $2 ORDER BY sent_at DESC LIMIT 1",
        )
        .bind(org_id)
        .bind(account_id)
        .optional(&self.pool)
        .await?;
        row.map(|r| r.int("sent_at")).transpose()
    }

    async fn record_security_alert(
        &self,
        org_id: &str,
        account_id: &str,
        at: Millis,
        event: &OrgEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO security_alerts (org_id, account_id, sent_at) VALUES ($1, $2, $3)")
            .bind(org_id)
            .bind(account_id)
            .bind(at)
            .run(&mut *tx)
            .await?;
        insert_org_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_linked_backup_codes(
        &self,
        factor_id: &str,
        account_id: &str,
        sealed: &str,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO linked_backup_codes (factor_id, account_id, sealed, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(factor_id)
        .bind(account_id)
        .bind(sealed)
        .bind(expires_at)
        .run(&*self.writer.turn().await)
        .await?;
        Ok(())
    }

    async fn take_linked_backup_codes(
        &self,
        factor_id: &str,
        account_id: &str,
        now: Millis,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM linked_backup_codes WHERE factor_id = $1 AND account_id = $2 AND expires_at > $3
             RETURNING sealed",
        )
        .bind(factor_id)
        .bind(account_id)
        .bind(now)
        .optional(&*self.writer.turn().await)
        .await?;
        row.map(|r| r.text("sealed")).transpose()
    }

    async fn second_factor(&self, id: &str) -> Result<Option<SecondFactor>, StoreError> {
        let row = sqlx::query(
            "SELECT id, account_id, kind, name, secret, active, created_at, expires_at, last_used_at, counter
             FROM second_factors WHERE id = $1",
        )
        .bind(id)
        .optional(&self.pool)
        .await?;
        row.as_ref().map(factor_from).transpose()
    }

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
        .bind(r.answered_by.as_str())
        .run(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn approval_request(&self, id: &str) -> Result<Option<ApprovalRequest>, StoreError> {
        let sql = format!("{APPROVAL_COLUMNS} WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .optional(&self.pool)
            .await?;
        row.as_ref().map(approval_from).transpose()
    }

    async fn approval_requests(&self, account_id: &str, since: Millis) -> Result<Vec<ApprovalRequest>, StoreError> {
        let sql = format!("{APPROVAL_COLUMNS} WHERE account_id = $1 AND created_at > $2 ORDER BY created_at DESC");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(since)
            .all(&self.pool)
            .await?;
        rows.iter().map(approval_from).collect()
    }

    async fn answer_approval_request(
        &self,
        request: &ApprovalRequest,
        status: ApprovalStatus,
        factor_id: &str,
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
        .bind(factor_id)
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

    async fn set_factor_secret(&self, factor_id: &str, secret: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE second_factors SET secret = $2 WHERE id = $1")
            .bind(factor_id)
            .bind(secret)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(())
    }

    async fn put_webauthn_challenge(
        &self,
        session_id: &str,
        state: &str,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM webauthn_challenges WHERE session_id = $1")
            .bind(session_id)
            .run(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO webauthn_challenges (session_id, state, expires_at) VALUES ($1, $2, $3)")
            .bind(session_id)
            .bind(state)
            .bind(expires_at)
            .run(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn webauthn_challenge(&self, session_id: &str, now: Millis) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT state FROM webauthn_challenges WHERE session_id = $1 AND expires_at > $2")
            .bind(session_id)
            .bind(now)
            .optional(&self.pool)
            .await?;
        row.map(|r| r.text("state")).transpose()
    }

    async fn put_sms_code(&self, code: &SmsCode, account_id: &str, number_digest: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sms_codes WHERE factor_id = $1")
            .bind(&code.factor_id)
            .run(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sms_codes (factor_id, digest, sent_at, expires_at, attempts) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&code.factor_id)
        .bind(&code.digest)
        .bind(code.sent_at)
        .bind(code.expires_at)
        .bind(i64::from(code.attempts))
        .run(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO sms_sends (id, account_id, number_digest, sent_at) VALUES ($1, $2, $3, $4)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(account_id)
            .bind(number_digest)
            .bind(code.sent_at)
            .run(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn sms_code(&self, factor_id: &str) -> Result<Option<SmsCode>, StoreError> {
        let row =
            sqlx::query("SELECT factor_id, digest, sent_at, expires_at, attempts FROM sms_codes WHERE factor_id = $1")
                .bind(factor_id)
                .optional(&self.pool)
                .await?;
        row.map(|row| {
            let attempts: i64 = row.int("attempts")?;
            Ok(SmsCode {
                factor_id: row.text("factor_id")?,
                digest: row.text("digest")?,
                sent_at: row.int("sent_at")?,
                expires_at: row.int("expires_at")?,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            })
        })
        .transpose()
    }

    async fn sms_sends(
        &self,
        account_id: &str,
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
            .bind(account_id)
            .bind(since)
            .all(&self.pool)
            .await?;
        Ok((times(to_number)?, times(for_account)?))
    }

    async fn sms_code_failed(&self, factor_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE sms_codes SET attempts = attempts + 1 WHERE factor_id = $1")
            .bind(factor_id)
            .run(&*self.writer.turn().await)
            .await?;
        Ok(())
    }

    async fn consume_sms_code(&self, factor_id: &str, digest: &str, now: Millis) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM sms_codes WHERE factor_id = $1 AND digest = $2 AND expires_at > $3 AND attempts < $4",
        )
        .bind(factor_id)
        .bind(digest)
        .bind(now)
        .bind(i64::from(identity::credential::sms::MAX_TRIES))
        .run(&*self.writer.turn().await)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_app_password(&self, p: &AppPassword, digest: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO app_passwords (id, account_id, name, digest, created_at, last_used_at, last_used_ip)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&p.id)
        .bind(&p.account_id)
        .bind(&p.name)
        .bind(digest)
        .bind(p.created_at)
        .bind(p.last_used_at)
        .bind(&p.last_used_ip)
        .run(&*self.writer.turn().await)
        .await?;
        Ok(())
    }

    async fn app_passwords(&self, account_id: &str) -> Result<Vec<(AppPassword, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account_id, name, digest, created_at, last_used_at, last_used_ip
             FROM app_passwords WHERE account_id = $1",
        )
        .bind(account_id)
        .all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let password = AppPassword {
                    id: row.text("id")?,
                    account_id: row.text("account_id")?,
                    name: row.text("name")?,
                    created_at: row.int("created_at")?,
                    last_used_at: row.int("last_used_at")?,
                    last_used_ip: row.text("last_used_ip")?,
                };
                Ok((password, row.text("digest")?))
            })
            .collect()
    }

    async fn delete_app_password(&self, account_id: &str, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("DELETE FROM app_passwords WHERE account_id = $1 AND id = $2 RETURNING name")
            .bind(account_id)
            .bind(id)
            .optional(&*self.writer.turn().await)
            .await?;
        row.map(|r| r.text("name")).transpose()
    }

    async fn touch_app_password(&self, id: &str, now: Millis, ip: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE app_passwords SET last_used_at = $2, last_used_ip = $3 WHERE id = $1")
            .bind(id)
            .bind(now)
            .bind(ip)
            .run(&*self.writer.turn().await)
            .await?;
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

    async fn record_event(&self, e: &SecurityEvent) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        insert_event(&mut conn, e).await
    }

    async fn events(
        &self,
        account_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        const COLUMNS: &str = "SELECT id, account_id, at, kind, ip, user_agent, detail FROM security_events";
        let limit = i64::from(limit);
        let rows = match before {
            Some(cursor) => {
                let sql = format!("{COLUMNS} WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(account_id)
                    .bind(cursor)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                let sql = format!("{COLUMNS} WHERE account_id = $1 ORDER BY id DESC LIMIT $2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(account_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
        };
        rows.map_err(backend)?.iter().map(event_from).collect()
    }
}
