//! [`identity::OrgStore`] over SQL.

use async_trait::async_trait;
use identity::{
    AccountId, Constraint, Invitation, MemberSummary, MembershipChange, Millis, NewOrganization, OrgEvent, OrgId,
    OrgPolicy, OrgStore, Organization, Role, StoreError,
};
use sqlx::any::AnyRow;

use super::Tx;
use crate::SqlStore;
use crate::changes::Arg::Text;
use crate::db::{Columns, Run, corrupt};

pub(super) fn org_from(row: &AnyRow) -> Result<Organization, StoreError> {
    Ok(Organization {
        id: OrgId::new(row.text("id")?),
        name: row.text("name")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) async fn insert_organization(
    tx: &mut Tx,
    id: &OrgId,
    org: &NewOrganization,
    now: Millis,
) -> Result<Organization, StoreError> {
    let row = sqlx::query(
        "INSERT INTO organizations (id, name, name_key, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name_key) DO NOTHING RETURNING id, name, created_at",
    )
    .bind(id.as_str())
    .bind(&org.name)
    .bind(org.name.to_lowercase())
    .bind(now)
    .optional(&mut **tx)
    .await?;
    row.as_ref()
        .map(org_from)
        .unwrap_or(Err(StoreError::Conflict(Constraint::OrganizationName)))
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

pub(super) const POLICY_COLUMNS: &str =
    "SELECT id, name, require_two_factor, grace_days, policy_since, policy_by FROM organizations";

pub(super) fn policy_from(row: &AnyRow) -> Result<OrgPolicy, StoreError> {
    let grace: i64 = row.int("grace_days")?;
    Ok(OrgPolicy {
        org_id: OrgId::new(row.text("id")?),
        org_name: row.text("name")?,
        require_two_factor: row.flag("require_two_factor")?,
        grace_days: u32::try_from(grace).unwrap_or(0),
        since: row.int("policy_since")?,
        by: row.text("policy_by")?,
    })
}

pub(super) fn role_of(row: &AnyRow) -> Result<Role, StoreError> {
    let role: String = row.text("role")?;
    role.parse().map_err(|_| corrupt("role"))
}

const INVITATION_COLUMNS: &str =
    "SELECT i.token_hash, i.org_id, o.name, i.email, i.role, i.invited_by, i.created_at, i.expires_at
     FROM invitations i JOIN organizations o ON o.id = i.org_id";

fn invitation_from(r: &AnyRow) -> Result<Invitation, StoreError> {
    Ok(Invitation {
        org_id: OrgId::new(r.text("org_id")?),
        org_name: r.text("name")?,
        email: r.text("email")?,
        role: role_of(r)?,
        invited_by: r.text("invited_by")?,
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
    })
}

#[async_trait]
impl OrgStore for SqlStore {
    async fn create_organization(
        &self,
        id: &OrgId,
        org: &NewOrganization,
        now: Millis,
    ) -> Result<Organization, StoreError> {
        let mut tx = self.begin_write().await?;
        let created = insert_organization(&mut tx, id, org, now).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn organization_by_name(&self, name: &str) -> Result<Option<Organization>, StoreError> {
        let sql = "SELECT id, name, created_at FROM organizations WHERE name_key = $1";
        self.find(sql, &[Text(&name.to_lowercase())], org_from).await
    }

    async fn organization(&self, org_id: &OrgId) -> Result<Option<Organization>, StoreError> {
        self.find(
            "SELECT id, name, created_at FROM organizations WHERE id = $1",
            &[Text(org_id.as_str())],
            org_from,
        )
        .await
    }

    async fn membership_role(&self, org_id: &OrgId, account_id: &AccountId) -> Result<Option<Role>, StoreError> {
        self.find(
            "SELECT role FROM memberships WHERE org_id = $1 AND account_id = $2",
            &[Text(org_id.as_str()), Text(account_id.as_str())],
            role_of,
        )
        .await
    }

    async fn org_members(&self, org_id: &OrgId) -> Result<Vec<MemberSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.email, a.name, m.role, m.created_at,
                (SELECT COUNT(*) FROM second_factors f WHERE f.account_id = a.id AND f.active = 1) AS methods,
                (SELECT COALESCE(MAX(e.at), 0) FROM security_events e
                 WHERE e.account_id = a.id AND e.kind = 'sign_in') AS last_sign_in
             FROM memberships m JOIN accounts a ON a.id = m.account_id
             WHERE m.org_id = $1 ORDER BY a.email",
        )
        .bind(org_id.as_str())
        .all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let methods: i64 = r.int("methods")?;
                Ok(MemberSummary {
                    account_id: AccountId::new(r.text("id")?),
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
        org_id: &OrgId,
        account_id: &AccountId,
        role: Option<Role>,
        event: &OrgEvent,
    ) -> Result<MembershipChange, StoreError> {
        let mut tx = self.begin_write().await?;
        // Serializes changes per organization, so two demotions at once
        // cannot both pass the legal-representative count.
        sqlx::query("UPDATE organizations SET id = id WHERE id = $1")
            .bind(org_id.as_str())
            .run(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT role FROM memberships WHERE org_id = $1 AND account_id = $2")
            .bind(org_id.as_str())
            .bind(account_id.as_str())
            .optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(MembershipChange::NotMember);
        };
        if role_of(&row)? == Role::LegalRepresentative && role != Some(Role::LegalRepresentative) {
            let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM memberships WHERE org_id = $1 AND role = $2")
                .bind(org_id.as_str())
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
                .bind(org_id.as_str())
                .bind(account_id.as_str())
                .bind(role.as_str()),
            None => sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND account_id = $2")
                .bind(org_id.as_str())
                .bind(account_id.as_str()),
        };
        change.run(&mut *tx).await?;
        if role.is_none() {
            // Someone who leaves takes their drive rules along: rejoining
            // starts from each drive's default.
            sqlx::query(
                "DELETE FROM drive_members WHERE account_id = $1
                 AND drive_id IN (SELECT id FROM drives WHERE org_id = $2)",
            )
            .bind(account_id.as_str())
            .bind(org_id.as_str())
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
        let sql = format!("{INVITATION_COLUMNS} WHERE i.token_hash = $1 AND i.expires_at > $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .bind(now)
            .optional(&self.pool)
            .await?;
        row.as_ref().map(invitation_from).transpose()
    }

    async fn org_invitations(&self, org_id: &OrgId, now: Millis) -> Result<Vec<(String, Invitation)>, StoreError> {
        let sql = format!(
            "{INVITATION_COLUMNS} WHERE i.org_id = $1 AND i.expires_at > $2 ORDER BY i.created_at DESC, i.token_hash"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id.as_str())
            .bind(now)
            .all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.text("token_hash")?, invitation_from(r)?)))
            .collect()
    }

    async fn delete_invitation(
        &self,
        org_id: &OrgId,
        token_hash: &str,
        event: Option<&OrgEvent>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let gone = sqlx::query("DELETE FROM invitations WHERE token_hash = $1 AND org_id = $2 RETURNING token_hash")
            .bind(token_hash)
            .bind(org_id.as_str())
            .optional(&mut *tx)
            .await?;
        if gone.is_none() {
            return Ok(false);
        }
        if let Some(event) = event {
            insert_org_event(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn accept_invitation(
        &self,
        token_hash: &str,
        now: Millis,
        account_id: &AccountId,
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
        let org_id: OrgId = OrgId::new(row.text("org_id")?);
        sqlx::query(
            "INSERT INTO memberships (org_id, account_id, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (org_id, account_id) DO NOTHING",
        )
        .bind(org_id.as_str())
        .bind(account_id.as_str())
        .bind(role_of(&row)?.as_str())
        .bind(now)
        .run(&mut *tx)
        .await?;
        insert_org_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn org_policy(&self, org_id: &OrgId) -> Result<Option<OrgPolicy>, StoreError> {
        let sql = format!("{POLICY_COLUMNS} WHERE id = $1");
        self.find(sqlx::AssertSqlSafe(sql), &[Text(org_id.as_str())], policy_from)
            .await
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

    async fn org_events(&self, org_id: &OrgId, limit: u32) -> Result<Vec<OrgEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, org_id, at, actor, kind, detail FROM org_events WHERE org_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(org_id.as_str())
        .bind(i64::from(limit))
        .all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OrgEvent {
                    id: r.text("id")?,
                    org_id: OrgId::new(r.text("org_id")?),
                    at: r.int("at")?,
                    actor: r.text("actor")?,
                    kind: r.text("kind")?,
                    detail: r.text("detail")?,
                })
            })
            .collect()
    }

    async fn last_security_alert(&self, org_id: &OrgId, account_id: &AccountId) -> Result<Option<Millis>, StoreError> {
        let row = sqlx::query(
            "SELECT sent_at FROM security_alerts WHERE org_id = $1 AND account_id = $2 ORDER BY sent_at DESC LIMIT 1",
        )
        .bind(org_id.as_str())
        .bind(account_id.as_str())
        .optional(&self.pool)
        .await?;
        row.map(|r| r.int("sent_at")).transpose()
    }

    async fn record_security_alert(
        &self,
        org_id: &OrgId,
        account_id: &AccountId,
        at: Millis,
        event: &OrgEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO security_alerts (org_id, account_id, sent_at) VALUES ($1, $2, $3)")
            .bind(org_id.as_str())
            .bind(account_id.as_str())
            .bind(at)
            .run(&mut *tx)
            .await?;
        insert_org_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }
}
