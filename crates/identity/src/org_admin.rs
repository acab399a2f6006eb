//! Running an organization: members and invitations, roles, security
//! alerts, the audit log, and requiring two-step verification of every
//! member (with a grace period), including the check every console and API
//! request makes.
//!
//! The check reads two in-memory maps: the policies of the organizations
//! that require two-step verification, and each account's organizations.
//! Both are filled from the database on first use and dropped whenever a
//! policy or a membership changes, here or (through the store's signals)
//! in another process sharing the database.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::account::{Account, AccountId};
use crate::clock::Millis;
use crate::email::EmailAddress;
use crate::notices::NoticeKind;
use crate::org::{OrgId, Organization, Role, RoleError};
use crate::secrets::{random_token, token_hash};
use crate::service::{Identity, IdentityError};
use crate::store::StoreError;

pub const DAY: Millis = 86_400_000;
pub const INVITATION_LIFETIME: Millis = 7 * DAY;
/// One security alert per member per organization in this time.
pub const ALERT_INTERVAL: Millis = DAY;
/// The legal-representative count handed to the role rules: the real
/// count is checked inside the store's transaction, where two changes at
/// once cannot both pass it.
const LR_COUNTED_IN_STORE: usize = usize::MAX;
/// Who did it, in the activity log, when the operator's command line did.
pub const OPERATOR: &str = "operator (command line)";
/// The topic that drops cached policies and memberships everywhere.
pub const ORG_TOPIC: &str = "org-policy";

/// A member as the members list shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    pub account_id: AccountId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub joined_at: Millis,
    /// Active two-step methods; 0 means two-step verification is off.
    pub methods: u32,
    /// 0 when never.
    pub last_sign_in: Millis,
}

impl MemberSummary {
    pub fn two_factor(&self) -> bool {
        self.methods > 0
    }
}

/// An organization's two-step verification requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPolicy {
    pub org_id: OrgId,
    pub org_name: String,
    pub require_two_factor: bool,
    pub grace_days: u32,
    /// When it was last switched.
    pub since: Millis,
    /// Who switched it (email).
    pub by: String,
}

impl OrgPolicy {
    /// From when members without two-step verification are stopped.
    pub fn deadline(&self) -> Millis {
        self.since + Millis::from(self.grace_days) * DAY
    }
}

/// An entry of an organization's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgEvent {
    pub id: String,
    pub org_id: OrgId,
    pub at: Millis,
    /// The email of who did it.
    pub actor: String,
    /// `member_invited`, `invitation_accepted`, `role_changed`,
    /// `invitation_revoked`, `member_removed`, `member_left`,
    /// `two_factor_required`,
    /// `two_factor_not_required`, `security_alert_sent`.
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub org_id: OrgId,
    pub org_name: String,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// An invitation waiting for an answer, as the organization's managers
/// see it; `id` names it in their requests (it is not the link's token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInvitation {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// What stops (or will stop) a member without two-step verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub org_id: OrgId,
    pub org_name: String,
    /// Who required it.
    pub by: String,
    pub deadline: Millis,
    /// The deadline has passed: the member must enrol now.
    pub blocked: bool,
}

/// The outcome a store reports for a membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    Done,
    NotMember,
    /// It would leave the organization without a legal representative.
    LastLegalRepresentative,
}

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("no such organization or member")]
    NotFound,
    #[error(transparent)]
    NotAllowed(#[from] RoleError),
    #[error("turn on two-step verification for your own account first")]
    ActorNeedsTwoFactor,
    #[error("confirm the change")]
    NotConfirmed,
    #[error("a grace period is 0 to 90 days")]
    InvalidGrace,
    #[error("'{0}' is not an email address")]
    InvalidEmail(String),
    #[error("{0} is already a member")]
    AlreadyMember(String),
    #[error("this invitation is for another email address")]
    WrongInvitee,
    #[error("this invitation was used or has expired")]
    InvitationUnavailable,
    #[error("a security alert was sent to this member recently; try again in {retry_after} ms")]
    AlertTooSoon { retry_after: Millis },
    #[error(transparent)]
    Identity(Box<IdentityError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<IdentityError> for OrgError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Store(s) => Self::Store(s),
            other => Self::Identity(Box::new(other)),
        }
    }
}

/// Counts at the top of the members list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberCounts {
    pub total: usize,
    pub with_two_factor: usize,
}

impl MemberCounts {
    pub fn without_two_factor(&self) -> usize {
        self.total - self.with_two_factor
    }

    /// Percent with two-step verification, rounded down.
    pub fn percent(&self) -> usize {
        (self.with_two_factor * 100).checked_div(self.total).unwrap_or(0)
    }
}

/// An account's organizations and whether it has two-step verification.
type MemberEntry = Arc<(Vec<OrgId>, bool)>;

/// The cached maps behind [`Identity::two_factor_requirement`].
#[derive(Default)]
pub struct PolicyCache {
    /// Organizations that require two-step verification.
    policies: RwLock<Option<Arc<HashMap<OrgId, OrgPolicy>>>>,
    /// Each account's organizations and whether it has two-step
    /// verification.
    memberships: RwLock<HashMap<AccountId, MemberEntry>>,
}

impl PolicyCache {
    /// Forgets everything; the next checks read the database again.
    pub fn clear(&self) {
        *self.policies.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.memberships.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Identity {
    /// The organization and the actor's role in it.
    async fn org_role(&self, actor: &Account, org_id: &OrgId) -> Result<(Organization, Role), OrgError> {
        let org = self.store().organization(org_id).await?.ok_or(OrgError::NotFound)?;
        let role = self
            .store()
            .membership_role(org_id, &actor.id)
            .await?
            .ok_or(OrgError::NotFound)?;
        Ok((org, role))
    }

    async fn member_role(&self, org_id: &OrgId, member_id: &AccountId) -> Result<Role, OrgError> {
        self.store()
            .membership_role(org_id, member_id)
            .await?
            .ok_or(OrgError::NotFound)
    }

    async fn manager(&self, actor: &Account, org_id: &OrgId) -> Result<(Organization, Role), OrgError> {
        let (org, role) = self.org_role(actor, org_id).await?;
        if !role.manages_organization() {
            return Err(OrgError::NotAllowed(RoleError::NotAManager));
        }
        Ok((org, role))
    }

    fn org_event(&self, org_id: &OrgId, actor: &Account, kind: &str, detail: &str) -> OrgEvent {
        self.new_org_event(org_id, &actor.email.to_string(), kind, detail)
    }

    /// An entry for the organization's activity log, for services that
    /// store it with their own change (`actor` is an email, or
    /// [`OPERATOR`] for the command line).
    pub fn new_org_event(&self, org_id: &OrgId, actor: &str, kind: &str, detail: &str) -> OrgEvent {
        OrgEvent {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org_id.to_owned(),
            at: self.now(),
            actor: actor.to_owned(),
            kind: kind.to_owned(),
            detail: detail.to_owned(),
        }
    }

    /// Every member of the organization, with no permission check: for
    /// services that checked the caller already, and the operator's
    /// command line.
    pub async fn organization_members(&self, org_id: &OrgId) -> Result<Vec<MemberSummary>, StoreError> {
        self.store().org_members(org_id).await
    }

    /// Drops cached policies and memberships here and in other processes
    /// (also when a member's two-step verification turns on or off).
    pub(crate) async fn org_changed(&self) {
        self.policy_cache().clear();
        self.publish(ORG_TOPIC).await;
    }

    /// The organization `org_id` if `actor` manages it (admin or legal
    /// representative).
    pub async fn managed_organization(&self, actor: &Account, org_id: &OrgId) -> Result<Organization, OrgError> {
        Ok(self.manager(actor, org_id).await?.0)
    }

    pub async fn organization(&self, org_id: &OrgId) -> Result<Option<Organization>, StoreError> {
        self.store().organization(org_id).await
    }

    pub async fn organization_named(&self, name: &str) -> Result<Option<Organization>, StoreError> {
        self.store().organization_by_name(name).await
    }

    /// The members, with their two-step status; `two_factor` filters.
    /// Admins and legal representatives only.
    pub async fn members(
        &self,
        actor: &Account,
        org_id: &OrgId,
        two_factor: Option<bool>,
    ) -> Result<(Organization, Vec<MemberSummary>, MemberCounts), OrgError> {
        let (org, _) = self.manager(actor, org_id).await?;
        let all = self.store().org_members(org_id).await?;
        let counts = MemberCounts {
            total: all.len(),
            with_two_factor: all.iter().filter(|m| m.two_factor()).count(),
        };
        let members = all
            .into_iter()
            .filter(|m| two_factor.is_none_or(|want| m.two_factor() == want))
            .collect();
        Ok((org, members, counts))
    }

    /// Invites `email` with `role`; emails the link. Returns the link's
    /// token.
    pub async fn invite(
        &self,
        actor: &Account,
        org_id: &OrgId,
        email: &str,
        role: Role,
        base_url: &str,
    ) -> Result<String, OrgError> {
        let (org, actor_role) = self.manager(actor, org_id).await?;
        actor_role.may_change_role(None, Some(role), LR_COUNTED_IN_STORE)?;
        let email =
            EmailAddress::parse(email).map_err(|_| OrgError::InvalidEmail(email.chars().take(100).collect()))?;
        if let Some(existing) = self.store().account_by_email(&email).await?
            && self.store().membership_role(org_id, &existing.id).await?.is_some()
        {
            return Err(OrgError::AlreadyMember(email.to_string()));
        }
        let token = random_token(32);
        let now = self.now();
        let invitation = Invitation {
            org_id: org.id.clone(),
            org_name: org.name.clone(),
            email: email.to_string(),
            role,
            invited_by: actor.email.to_string(),
            created_at: now,
            expires_at: now + INVITATION_LIFETIME,
        };
        let event = self.org_event(org_id, actor, "member_invited", &format!("{email} ({role})"));
        self.store()
            .put_invitation(&token_hash(&token), &invitation, &event)
            .await?;
        let link = format!("{base_url}/invitations/{token}");
        self.queue_notice(
            None,
            &email,
            &actor.lang,
            NoticeKind::Invitation,
            &[("organization", &org.name), ("sender", &actor.name), ("link", &link)],
        )
        .await?;
        Ok(token)
    }

    /// The organization's invitations still waiting for an answer (for
    /// its managers), newest first.
    pub async fn invitations(&self, actor: &Account, org_id: &OrgId) -> Result<Vec<PendingInvitation>, OrgError> {
        self.manager(actor, org_id).await?;
        Ok(self.operator_invitations(org_id).await?)
    }

    /// [`Identity::invitations`] for the operator's command line.
    pub async fn operator_invitations(&self, org_id: &OrgId) -> Result<Vec<PendingInvitation>, StoreError> {
        let found = self.store().org_invitations(org_id, self.now()).await?;
        Ok(found
            .into_iter()
            .map(|(id, i)| PendingInvitation {
                id,
                email: i.email,
                role: i.role,
                invited_by: i.invited_by,
                created_at: i.created_at,
                expires_at: i.expires_at,
            })
            .collect())
    }

    /// One of [`Identity::invitations`], by id.
    async fn pending_invitation(
        &self,
        actor: &Account,
        org_id: &OrgId,
        id: &str,
    ) -> Result<PendingInvitation, OrgError> {
        self.invitations(actor, org_id)
            .await?
            .into_iter()
            .find(|i| i.id == id)
            .ok_or(OrgError::NotFound)
    }

    /// Withdraws a pending invitation: its link stops working.
    pub async fn revoke_invitation(&self, actor: &Account, org_id: &OrgId, id: &str) -> Result<(), OrgError> {
        let pending = self.pending_invitation(actor, org_id, id).await?;
        let event = self.org_event(org_id, actor, "invitation_revoked", &pending.email);
        if !self.store().delete_invitation(org_id, id, Some(&event)).await? {
            return Err(OrgError::NotFound);
        }
        Ok(())
    }

    /// Withdraws a pending invitation from the operator's command line
    /// (`false` when there is none with that id).
    pub async fn operator_revoke_invitation(&self, org_id: &OrgId, id: &str) -> Result<bool, StoreError> {
        let Some(pending) = self
            .operator_invitations(org_id)
            .await?
            .into_iter()
            .find(|i| i.id == id)
        else {
            return Ok(false);
        };
        let event = self.new_org_event(org_id, OPERATOR, "invitation_revoked", &pending.email);
        self.store().delete_invitation(org_id, id, Some(&event)).await
    }

    /// Sends a pending invitation again, with a new link (the old one
    /// stops working) valid for [`INVITATION_LIFETIME`] from now. Returns
    /// the new link's token.
    pub async fn resend_invitation(
        &self,
        actor: &Account,
        org_id: &OrgId,
        id: &str,
        base_url: &str,
    ) -> Result<String, OrgError> {
        let pending = self.pending_invitation(actor, org_id, id).await?;
        // Checked before the old link goes: the actor may still invite.
        let (_, actor_role) = self.manager(actor, org_id).await?;
        actor_role.may_change_role(None, Some(pending.role), LR_COUNTED_IN_STORE)?;
        if !self.store().delete_invitation(org_id, id, None).await? {
            return Err(OrgError::NotFound);
        }
        self.invite(actor, org_id, &pending.email, pending.role, base_url).await
    }

    /// The invitation behind a link, if it is still valid.
    pub async fn invitation(&self, token: &str) -> Result<Option<Invitation>, StoreError> {
        self.store().invitation(&token_hash(token), self.now()).await
    }

    /// Accepts an invitation: as the signed-in `account` (whose email it
    /// must be), or by creating the account with `name` and `password`.
    pub async fn accept_invitation(
        &self,
        token: &str,
        account: Option<&Account>,
        new_account: Option<(&str, &str)>,
    ) -> Result<(Organization, Account), OrgError> {
        let invitation = self.invitation(token).await?.ok_or(OrgError::InvitationUnavailable)?;
        let account = match (account, new_account) {
            (Some(a), _) => {
                if !a.email.to_string().eq_ignore_ascii_case(&invitation.email) {
                    return Err(OrgError::WrongInvitee);
                }
                a.clone()
            }
            (None, Some((name, password))) => {
                let (created, _) = self.create_account(&invitation.email, name, password, None).await?;
                created
            }
            (None, None) => return Err(OrgError::WrongInvitee),
        };
        let event = OrgEvent {
            actor: account.email.to_string(),
            ..self.org_event(
                &invitation.org_id,
                &account,
                "invitation_accepted",
                invitation.role.as_str(),
            )
        };
        let joined = self
            .store()
            .accept_invitation(&token_hash(token), self.now(), &account.id, &event)
            .await?;
        if !joined {
            return Err(OrgError::InvitationUnavailable);
        }
        self.org_changed().await;
        let org = self
            .store()
            .organization(&invitation.org_id)
            .await?
            .ok_or(OrgError::NotFound)?;
        Ok((org, account))
    }

    /// Gives a member another role.
    pub async fn set_member_role(
        &self,
        actor: &Account,
        org_id: &OrgId,
        member_id: &AccountId,
        role: Role,
    ) -> Result<(), OrgError> {
        let (_, actor_role) = self.manager(actor, org_id).await?;
        let current = self.member_role(org_id, member_id).await?;
        actor_role.may_change_role(Some(current), Some(role), LR_COUNTED_IN_STORE)?;
        let event = self.org_event(
            org_id,
            actor,
            "role_changed",
            &format!("{member_id}: {current} → {role}"),
        );
        self.change_membership(org_id, member_id, Some(role), &event).await
    }

    /// Removes a member from the organization.
    pub async fn remove_member(&self, actor: &Account, org_id: &OrgId, member_id: &AccountId) -> Result<(), OrgError> {
        let (_, actor_role) = self.manager(actor, org_id).await?;
        let current = self.member_role(org_id, member_id).await?;
        actor_role.may_change_role(Some(current), None, LR_COUNTED_IN_STORE)?;
        let event = self.org_event(org_id, actor, "member_removed", member_id.as_str());
        self.change_membership(org_id, member_id, None, &event).await
    }

    /// An external member leaves by themselves.
    pub async fn leave(&self, actor: &Account, org_id: &OrgId) -> Result<(), OrgError> {
        let (_, role) = self.org_role(actor, org_id).await?;
        if !role.may_leave() {
            return Err(OrgError::NotAllowed(RoleError::NotAManager));
        }
        let event = self.org_event(org_id, actor, "member_left", "");
        self.change_membership(org_id, &actor.id, None, &event).await
    }

    async fn change_membership(
        &self,
        org_id: &OrgId,
        member_id: &AccountId,
        role: Option<Role>,
        event: &OrgEvent,
    ) -> Result<(), OrgError> {
        match self.store().change_membership(org_id, member_id, role, event).await? {
            MembershipChange::Done => {
                self.org_changed().await;
                Ok(())
            }
            MembershipChange::NotMember => Err(OrgError::NotFound),
            MembershipChange::LastLegalRepresentative => Err(OrgError::NotAllowed(RoleError::LastLegalRepresentative)),
        }
    }

    /// Emails a member a summary of their security settings with a link
    /// to the two-step page. At most one per member per day.
    pub async fn send_security_alert(
        &self,
        actor: &Account,
        org_id: &OrgId,
        member_id: &AccountId,
    ) -> Result<(), OrgError> {
        let (org, _) = self.manager(actor, org_id).await?;
        self.member_role(org_id, member_id).await?;
        self.alert_member(actor, &org, member_id).await
    }

    /// Sends the alert to every member without two-step verification
    /// (skipping those alerted in the last day); returns how many got it.
    pub async fn alert_members_without_two_factor(&self, actor: &Account, org_id: &OrgId) -> Result<usize, OrgError> {
        let (org, _) = self.manager(actor, org_id).await?;
        let mut sent = 0;
        for member in self.store().org_members(org_id).await? {
            if member.two_factor() {
                continue;
            }
            match self.alert_member(actor, &org, &member.account_id).await {
                Ok(()) => sent += 1,
                Err(OrgError::AlertTooSoon { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    async fn alert_member(&self, actor: &Account, org: &Organization, member_id: &AccountId) -> Result<(), OrgError> {
        let now = self.now();
        if let Some(last) = self.store().last_security_alert(&org.id, member_id).await?
            && last + ALERT_INTERVAL > now
        {
            return Err(OrgError::AlertTooSoon {
                retry_after: last + ALERT_INTERVAL - now,
            });
        }
        let account = self.store().account_by_id(member_id).await?.ok_or(OrgError::NotFound)?;
        let status = self.two_factor(member_id).await?;
        let methods: Vec<String> = status.methods.iter().map(|m| m.name.clone()).collect();
        let app_passwords = self.store().app_passwords(member_id).await?.len();
        let page = self.store().events(member_id, None, 50).await?;
        let sign_ins: Vec<i64> = page
            .iter()
            .filter(|e| e.kind == crate::audit::EventKind::SignIn)
            .take(3)
            .map(|e| e.at)
            .collect();
        // English for a message queued before an upgrade; the email writes
        // the times from `last_sign_ins_at` in the member's language.
        let english: Vec<String> = sign_ins.iter().map(|at| crate::clock::utc_datetime(*at)).collect();
        let times: Vec<String> = sign_ins.iter().map(i64::to_string).collect();
        let none = "—".to_owned();
        let event = self.org_event(&org.id, actor, "security_alert_sent", &account.email.to_string());
        self.store()
            .record_security_alert(&org.id, member_id, now, &event)
            .await?;
        self.notify_member(
            &account,
            NoticeKind::SecurityAlert,
            &[
                ("sender", &actor.name),
                ("organization", &org.name),
                ("two_factor", if status.enabled { "on" } else { "off" }),
                (
                    "methods",
                    &if methods.is_empty() {
                        none.clone()
                    } else {
                        methods.join(", ")
                    },
                ),
                ("app_passwords", &app_passwords.to_string()),
                (
                    "last_sign_ins",
                    &if english.is_empty() { none } else { english.join(", ") },
                ),
                ("last_sign_ins_at", &times.join(",")),
            ],
        )
        .await?;
        Ok(())
    }

    /// The organization's two-step requirement (any member may read it).
    pub async fn org_policy(&self, actor: &Account, org_id: &OrgId) -> Result<OrgPolicy, OrgError> {
        self.org_role(actor, org_id).await?;
        self.store().org_policy(org_id).await?.ok_or(OrgError::NotFound)
    }

    /// Requires (or stops requiring) two-step verification of every
    /// member. Admins and legal representatives, who must have it
    /// themselves; `confirmed` is the dialog's yes. Logged in the audit log
    /// and emailed to the organization's managers.
    pub async fn set_org_policy(
        &self,
        actor: &Account,
        org_id: &OrgId,
        require: bool,
        grace_days: u32,
        confirmed: bool,
    ) -> Result<OrgPolicy, OrgError> {
        let (org, _) = self.manager(actor, org_id).await?;
        if !confirmed {
            return Err(OrgError::NotConfirmed);
        }
        if grace_days > 90 {
            return Err(OrgError::InvalidGrace);
        }
        if require && !self.two_factor(&actor.id).await?.enabled {
            return Err(OrgError::ActorNeedsTwoFactor);
        }
        let policy = OrgPolicy {
            org_id: org.id.clone(),
            org_name: org.name.clone(),
            require_two_factor: require,
            grace_days: if require { grace_days } else { 0 },
            since: self.now(),
            by: actor.email.to_string(),
        };
        let kind = if require {
            "two_factor_required"
        } else {
            "two_factor_not_required"
        };
        let event = self.org_event(org_id, actor, kind, &format!("grace {} days", policy.grace_days));
        self.store().set_org_policy(&policy, &event).await?;
        self.org_changed().await;
        let state = if require { "on" } else { "off" };
        for member in self.store().org_members(org_id).await? {
            if member.role.manages_organization()
                && let Some(admin) = self.store().account_by_id(&member.account_id).await?
            {
                self.notify_member(
                    &admin,
                    NoticeKind::PolicyChanged,
                    &[("sender", &actor.name), ("organization", &org.name), ("state", state)],
                )
                .await?;
            }
        }
        Ok(policy)
    }

    /// The audit log, newest first.
    pub async fn org_events(&self, actor: &Account, org_id: &OrgId, limit: u32) -> Result<Vec<OrgEvent>, OrgError> {
        self.manager(actor, org_id).await?;
        Ok(self.store().org_events(org_id, limit).await?)
    }

    /// Whether an organization of `account` requires two-step verification
    /// that the account does not have: the strictest requirement, with
    /// `blocked` once its grace period is over. Runs on every console and
    /// API request, from memory once warm.
    pub async fn two_factor_requirement(&self, account: &Account) -> Result<Option<Requirement>, StoreError> {
        let policies = self.cached_policies().await?;
        if policies.is_empty() {
            return Ok(None);
        }
        let member = self.cached_memberships(&account.id).await?;
        let (orgs, two_factor_on) = (&member.0, member.1);
        if two_factor_on {
            return Ok(None);
        }
        let now = self.now();
        Ok(orgs
            .iter()
            .filter_map(|org| policies.get(org))
            .min_by_key(|p| p.deadline())
            .map(|p| Requirement {
                org_id: p.org_id.clone(),
                org_name: p.org_name.clone(),
                by: p.by.clone(),
                deadline: p.deadline(),
                blocked: p.deadline() <= now,
            }))
    }

    async fn cached_policies(&self) -> Result<Arc<HashMap<OrgId, OrgPolicy>>, StoreError> {
        let cache = self.policy_cache();
        if let Some(p) = cache.policies.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(Arc::clone(p));
        }
        let loaded: HashMap<OrgId, OrgPolicy> = self
            .store()
            .required_policies()
            .await?
            .into_iter()
            .map(|p| (p.org_id.clone(), p))
            .collect();
        let loaded = Arc::new(loaded);
        *cache.policies.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&loaded));
        Ok(loaded)
    }

    async fn cached_memberships(&self, account_id: &AccountId) -> Result<MemberEntry, StoreError> {
        let cache = self.policy_cache();
        if let Some(m) = cache
            .memberships
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(account_id)
        {
            return Ok(Arc::clone(m));
        }
        let orgs: Vec<OrgId> = self
            .store()
            .memberships(account_id)
            .await?
            .into_iter()
            .map(|m| m.org_id)
            .collect();
        let two_factor_on = self.store().second_factors(account_id).await?.iter().any(|f| f.active);
        let orgs = Arc::new((orgs, two_factor_on));
        let mut map = cache.memberships.write().unwrap_or_else(|e| e.into_inner());
        // Bounded: a busy server forgets and reloads rather than grows.
        if map.len() >= 100_000 {
            map.clear();
        }
        map.insert(account_id.clone(), Arc::clone(&orgs));
        Ok(orgs)
    }

    /// Drops the cached policies and memberships of this process (what a
    /// change elsewhere does); for benchmarks and tests.
    pub fn drop_org_caches(&self) {
        self.policy_cache().clear();
    }

    /// Drops the cached policies when another process changed one (run by
    /// the server for as long as it runs).
    pub async fn follow_org_changes(&self) {
        let notify = self.signals().subscribe(ORG_TOPIC);
        loop {
            notify.notified().await;
            self.policy_cache().clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_deadlines() {
        let c = MemberCounts {
            total: 3,
            with_two_factor: 2,
        };
        assert_eq!((c.without_two_factor(), c.percent()), (1, 66));
        assert_eq!(MemberCounts::default().percent(), 0);
        let p = OrgPolicy {
            org_id: OrgId::new("o"),
            org_name: "Acme".into(),
            require_two_factor: true,
            since: 1000,
            grace_days: 2,
            by: "Ana".into(),
        };
        assert_eq!(p.deadline(), 1000 + 2 * DAY);
    }
}
