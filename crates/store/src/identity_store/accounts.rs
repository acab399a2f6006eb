//! [`identity::AccountStore`] over SQL.

use async_trait::async_trait;
use identity::{
    Account, AccountId, AccountStore, Constraint, EmailAddress, FactorKind, Membership, Millis, NewAccount,
    NewOrganization, OrgId, Organization, Role, StoreError, SyncUserId,
};

use super::Tx;
use super::orgs::insert_organization;
use crate::SqlStore;
use crate::changes::Arg::{Int, Text};
use crate::db::{Columns, Run, corrupt};

pub(super) fn account_from(row: &(impl Columns + ?Sized)) -> Result<Account, StoreError> {
    Ok(Account {
        id: AccountId::new(row.text("id")?),
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

pub(super) const ACCOUNT_COLUMNS: &str =
    "id, email, name, sync_user_id, password_hash, created_at, password_changed_at, default_method, lang";

/// Inserts the account with the first sync user id nobody ever had.
pub(super) async fn insert_account(
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
    .bind(account.id.as_str())
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

pub(super) async fn insert_membership(
    tx: &mut Tx,
    org_id: &OrgId,
    account_id: &AccountId,
    role: Role,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO memberships (org_id, account_id, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(org_id.as_str())
        .bind(account_id.as_str())
        .bind(role.as_str())
        .bind(now)
        .run(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl AccountStore for SqlStore {
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
        let sql = "SELECT 1 AS ok FROM setup_tokens WHERE token_hash = $1 AND expires_at > $2";
        let found = self.find(sql, &[Text(hash), Int(now)], |_| Ok(())).await?;
        Ok(found.is_some())
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
        let accounts = sqlx::query("SELECT COUNT(*) AS n FROM accounts")
            .one(&mut *tx)
            .await?
            .int("n")?;
        if consumed.is_none() || accounts > 0 {
            return Err(StoreError::SetupUnavailable);
        }
        let org_id = OrgId::generate();
        let organization = insert_organization(&mut tx, &org_id, org, now).await?;
        let account = insert_account(&mut tx, account, sync_ids).await?;
        insert_membership(&mut tx, &organization.id, &account.id, Role::LegalRepresentative, now).await?;
        tx.commit().await?;
        Ok((organization, account))
    }

    async fn create_account(
        &self,
        account: &NewAccount,
        membership: Option<(&OrgId, Role)>,
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
        self.account_where("email", email.as_str()).await
    }

    async fn account_by_id(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        self.account_where("id", id.as_str()).await
    }

    async fn account_by_sync_user_id(&self, id: &SyncUserId) -> Result<Option<Account>, StoreError> {
        self.account_where("sync_user_id", id.as_str()).await
    }

    async fn memberships(&self, account_id: &AccountId) -> Result<Vec<Membership>, StoreError> {
        let sql = "SELECT o.id, o.name, m.role FROM memberships m JOIN organizations o ON o.id = m.org_id
             WHERE m.account_id = $1 ORDER BY o.name_key";
        self.list(sql, &[Text(account_id.as_str())], |row| {
            Ok(Membership {
                org_id: OrgId::new(row.text("id")?),
                org_name: row.text("name")?,
                role: row.text("role")?.parse().map_err(|_| corrupt("role"))?,
            })
        })
        .await
    }

    async fn set_password(&self, account_id: &AccountId, hash: &str, now: Millis) -> Result<(), StoreError> {
        let sql = "UPDATE accounts SET password_hash = $2, password_changed_at = $3 WHERE id = $1";
        self.write(sql, &[Text(account_id.as_str()), Text(hash), Int(now)])
            .await?;
        Ok(())
    }

    async fn default_method(&self, account_id: &AccountId) -> Result<String, StoreError> {
        let sql = "SELECT default_method FROM accounts WHERE id = $1";
        let found = self
            .find(sql, &[Text(account_id.as_str())], |r| r.text("default_method"))
            .await?;
        Ok(found.unwrap_or_default())
    }

    async fn set_default_method(&self, account_id: &AccountId, kind: &str) -> Result<(), StoreError> {
        let sql = "UPDATE accounts SET default_method = $2 WHERE id = $1";
        self.write(sql, &[Text(account_id.as_str()), Text(kind)]).await?;
        Ok(())
    }

    async fn set_account_lang(&self, account_id: &AccountId, lang: &str) -> Result<(), StoreError> {
        self.write(
            "UPDATE accounts SET lang = $2 WHERE id = $1",
            &[Text(account_id.as_str()), Text(lang)],
        )
        .await?;
        Ok(())
    }
}

impl SqlStore {
    /// The account whose `column` (a unique one) holds `value`.
    async fn account_where(&self, column: &'static str, value: &str) -> Result<Option<Account>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {column} = $1"));
        self.find(sql, &[Text(value)], account_from).await
    }
}
