//! Who may use a drive. Every member of the drive's organization gets the
//! drive's member access (read and write unless changed) unless a rule of
//! their own says otherwise; the organization's admins and legal
//! representative always read and write, since they can change the rules
//! anyway. Rules are read on every request, so a change applies at once in
//! every process.

use std::str::FromStr;

use identity::{Account, AccountId, MemberSummary, OPERATOR, OrgError, Role};

use crate::{Access, Drive, DriveError, DriveId, Drives};

/// What a drive lets a member do: the drive's default for members, or one
/// member's own rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The drive does not exist for them.
    None,
    Read,
    ReadWrite,
}

impl Grant {
    pub const ALL: [Grant; 3] = [Grant::ReadWrite, Grant::Read, Grant::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Read => "read",
            Self::ReadWrite => "read-write",
        }
    }

    pub fn access(self) -> Option<Access> {
        match self {
            Self::None => None,
            Self::Read => Some(Access::Read),
            Self::ReadWrite => Some(Access::ReadWrite),
        }
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown access '{0}': use read-write, read or none")]
pub struct UnknownGrant(pub String);

impl FromStr for Grant {
    type Err = UnknownGrant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Grant::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| UnknownGrant(s.chars().take(40).collect()))
    }
}

/// An account's place in a drive's organization, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub role: Role,
    /// Their own rule for this drive, if any.
    pub grant: Option<Grant>,
}

/// What someone with `standing` may do on `drive`.
pub fn access_of(drive: &Drive, standing: &Standing) -> Option<Access> {
    if standing.role.manages_organization() {
        return Some(Access::ReadWrite);
    }
    standing.grant.unwrap_or(drive.member_access).access()
}

/// One member of a drive's organization, and what they may do on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveMember {
    pub member: MemberSummary,
    /// Their own rule, if any.
    pub grant: Option<Grant>,
    /// What that comes to; `None` when they cannot see the drive.
    pub access: Option<Access>,
}

impl DriveMember {
    /// Admins and the legal representative always read and write.
    pub fn manages(&self) -> bool {
        self.member.role.manages_organization()
    }
}

impl Drives {
    /// The drive `id` if `actor` manages its organization; without an
    /// actor (the operator's command line) any drive.
    async fn managed_drive(&self, actor: Option<&Account>, id: DriveId) -> Result<Drive, DriveError> {
        let drive = self.store.drive(id).await?.ok_or(DriveError::NotFound)?;
        if let Some(actor) = actor {
            match self.identity.managed_organization(actor, &drive.org_id).await {
                Ok(_) => {}
                // Not a member at all: the drive does not exist for them.
                Err(OrgError::NotFound) => return Err(DriveError::NotFound),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(drive)
    }

    /// The drive and every member of its organization with what they may
    /// do on it, by email. Managers of the organization only.
    pub async fn members(&self, actor: Option<&Account>, id: DriveId) -> Result<(Drive, Vec<DriveMember>), DriveError> {
        let drive = self.managed_drive(actor, id).await?;
        let grants = self.store.grants(id).await?;
        let mut members: Vec<DriveMember> = self
            .identity
            .organization_members(&drive.org_id)
            .await?
            .into_iter()
            .map(|member| {
                let grant = grants.iter().find(|(a, _)| *a == member.account_id).map(|(_, g)| *g);
                let standing = Standing {
                    role: member.role,
                    grant,
                };
                DriveMember {
                    access: access_of(&drive, &standing),
                    grant,
                    member,
                }
            })
            .collect();
        members.sort_by(|a, b| a.member.email.cmp(&b.member.email));
        Ok((drive, members))
    }

    /// Sets what members without a rule of their own may do on the drive.
    pub async fn set_member_access(
        &self,
        actor: Option<&Account>,
        id: DriveId,
        grant: Grant,
    ) -> Result<Drive, DriveError> {
        let mut drive = self.managed_drive(actor, id).await?;
        let event = self.identity.new_org_event(
            &drive.org_id,
            &actor_name(actor),
            "drive_access_changed",
            &format!("{} ({}): {grant}", drive.name, drive.id),
        );
        self.store.set_member_access(id, grant, &event).await?;
        drive.member_access = grant;
        Ok(drive)
    }

    /// Gives the member `account_id` a rule of their own on the drive, or
    /// with `None` takes it away (they get the drive's member access).
    pub async fn set_grant(
        &self,
        actor: Option<&Account>,
        id: DriveId,
        account_id: &AccountId,
        grant: Option<Grant>,
    ) -> Result<DriveMember, DriveError> {
        let (drive, members) = self.members(actor, id).await?;
        let mut member = members
            .into_iter()
            .find(|m| &m.member.account_id == account_id)
            .ok_or(DriveError::NotAMember)?;
        if member.manages() && grant.is_some() {
            return Err(DriveError::ManagerAlwaysWrites);
        }
        let detail = format!(
            "{} ({}): {} → {}",
            drive.name,
            drive.id,
            member.member.email,
            grant.map_or("default", Grant::as_str)
        );
        let event = self.identity.new_org_event(
            &drive.org_id,
            &actor_name(actor),
            "drive_member_access_changed",
            &detail,
        );
        self.store.set_grant(id, account_id, grant, &event).await?;
        member.grant = grant;
        member.access = access_of(
            &drive,
            &Standing {
                role: member.member.role,
                grant,
            },
        );
        Ok(member)
    }
}

fn actor_name(actor: Option<&Account>) -> String {
    actor.map_or_else(|| OPERATOR.to_owned(), |a| a.email.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(member_access: Grant) -> Drive {
        Drive {
            id: DriveId::new(123456),
            org_id: identity::OrgId::new("o"),
            org_name: "Org".into(),
            name: "Shared".into(),
            quota_bytes: 1 << 30,
            used_bytes: 0,
            created_at: 0,
            member_access,
        }
    }

    #[test]
    fn a_rule_of_ones_own_wins_over_the_drive_default() {
        let read_only = drive(Grant::Read);
        let user = |grant| Standing {
            role: Role::User,
            grant,
        };
        assert_eq!(access_of(&read_only, &user(None)), Some(Access::Read));
        assert_eq!(
            access_of(&read_only, &user(Some(Grant::ReadWrite))),
            Some(Access::ReadWrite)
        );
        assert_eq!(access_of(&read_only, &user(Some(Grant::None))), None);
        assert_eq!(access_of(&drive(Grant::None), &user(None)), None);
        assert_eq!(
            access_of(&drive(Grant::ReadWrite), &user(None)),
            Some(Access::ReadWrite)
        );
    }

    #[test]
    fn managers_always_read_and_write() {
        let closed = drive(Grant::None);
        for role in [Role::Admin, Role::LegalRepresentative] {
            let standing = Standing {
                role,
                grant: Some(Grant::None),
            };
            assert_eq!(access_of(&closed, &standing), Some(Access::ReadWrite));
        }
    }

    #[test]
    fn grants_read_back() {
        for grant in Grant::ALL {
            assert_eq!(grant.as_str().parse::<Grant>(), Ok(grant));
        }
        assert!("write".parse::<Grant>().is_err());
    }
}
