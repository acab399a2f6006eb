//! [`identity::AppPasswordStore`] over SQL.

use async_trait::async_trait;
use identity::credential::app_password::AppPassword;
use identity::{AccountId, AppPasswordId, AppPasswordStore, Millis, StoreError};

use crate::SqlStore;
use crate::changes::Arg::{Int, Text};
use crate::db::{Columns, Run};

#[async_trait]
impl AppPasswordStore for SqlStore {
    async fn insert_app_password(&self, p: &AppPassword, digest: &str) -> Result<(), StoreError> {
        self.write(
            "INSERT INTO app_passwords (id, account_id, name, digest, created_at, last_used_at, last_used_ip)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                Text(p.id.as_str()),
                Text(p.account_id.as_str()),
                Text(&p.name),
                Text(digest),
                Int(p.created_at),
                Int(p.last_used_at),
                Text(&p.last_used_ip),
            ],
        )
        .await?;
        Ok(())
    }

    async fn app_passwords(&self, account_id: &AccountId) -> Result<Vec<(AppPassword, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account_id, name, digest, created_at, last_used_at, last_used_ip
             FROM app_passwords WHERE account_id = $1",
        )
        .bind(account_id.as_str())
        .all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let password = AppPassword {
                    id: AppPasswordId::new(row.text("id")?),
                    account_id: AccountId::new(row.text("account_id")?),
                    name: row.text("name")?,
                    created_at: row.int("created_at")?,
                    last_used_at: row.int("last_used_at")?,
                    last_used_ip: row.text("last_used_ip")?,
                };
                Ok((password, row.text("digest")?))
            })
            .collect()
    }

    async fn delete_app_password(
        &self,
        account_id: &AccountId,
        id: &AppPasswordId,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("DELETE FROM app_passwords WHERE account_id = $1 AND id = $2 RETURNING name")
            .bind(account_id.as_str())
            .bind(id.as_str())
            .optional(&*self.writer.turn().await)
            .await?;
        row.map(|r| r.text("name")).transpose()
    }

    async fn touch_app_password(&self, id: &AppPasswordId, now: Millis, ip: &str) -> Result<(), StoreError> {
        self.write(
            "UPDATE app_passwords SET last_used_at = $2, last_used_ip = $3 WHERE id = $1",
            &[Text(id.as_str()), Int(now), Text(ip)],
        )
        .await?;
        Ok(())
    }
}
