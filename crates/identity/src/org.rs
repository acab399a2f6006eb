//! Organizations, memberships and roles, and the one place that decides who
//! may manage what inside an organization.

use crate::clock::Millis;
use std::fmt;
use std::str::FromStr;

pub use crate::ids::OrgId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewOrganization {
    pub name: String,
}

impl NewOrganization {
    pub fn parse(name: &str) -> Result<Self, RoleError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(RoleError::InvalidOrgName);
        }
        Ok(Self { name: name.to_owned() })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub org_id: OrgId,
    pub org_name: String,
    pub role: Role,
}

/// A member's role in one organization. The legal representative is the
/// person who answers for the organization; admins manage it day to day;
/// users are members; external members (contractors, guests) may leave on
/// their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    LegalRepresentative,
    Admin,
    User,
    External,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error("unknown role '{0}': use legal-representative, admin, user or external")]
    Unknown(String),
    #[error("an organization name has 1 to 100 characters")]
    InvalidOrgName,
    #[error("only admins and the legal representative manage members")]
    NotAManager,
    #[error("only a legal representative can name or remove a legal representative")]
    LegalRepresentativeOnly,
    #[error("an organization always keeps at least one legal representative")]
    LastLegalRepresentative,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::LegalRepresentative, Role::Admin, Role::User, Role::External];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::LegalRepresentative => "legal-representative",
            Role::Admin => "admin",
            Role::User => "user",
            Role::External => "external",
        }
    }

    /// Admins and the legal representative manage members and the
    /// organization's security settings.
    pub fn manages_organization(self) -> bool {
        matches!(self, Role::LegalRepresentative | Role::Admin)
    }

    /// Whether someone with this role may give `target` role to a member, or
    /// take it away. `legal_representatives` is how many the organization
    /// has now, so the last one can never be demoted or removed.
    pub fn may_change_role(
        self,
        from: Option<Role>,
        to: Option<Role>,
        legal_representatives: usize,
    ) -> Result<(), RoleError> {
        if !self.manages_organization() {
            return Err(RoleError::NotAManager);
        }
        let touches_lr = from == Some(Role::LegalRepresentative) || to == Some(Role::LegalRepresentative);
        if touches_lr && self != Role::LegalRepresentative {
            return Err(RoleError::LegalRepresentativeOnly);
        }
        let loses_lr = from == Some(Role::LegalRepresentative) && to != Some(Role::LegalRepresentative);
        if loses_lr && legal_representatives <= 1 {
            return Err(RoleError::LastLegalRepresentative);
        }
        Ok(())
    }

    /// External members may leave an organization by themselves.
    pub fn may_leave(self) -> bool {
        self == Role::External
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = RoleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| RoleError::Unknown(s.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("owner".parse::<Role>().is_err());
    }

    #[test]
    fn only_managers_change_roles() {
        for r in [User, External] {
            assert_eq!(r.may_change_role(None, Some(User), 1), Err(RoleError::NotAManager));
        }
        assert_eq!(Admin.may_change_role(None, Some(User), 1), Ok(()));
        assert_eq!(Admin.may_change_role(Some(User), Some(Admin), 1), Ok(()));
        assert_eq!(Admin.may_change_role(Some(Admin), None, 1), Ok(()));
    }

    #[test]
    fn legal_representatives_are_named_by_legal_representatives() {
        assert_eq!(
            Admin.may_change_role(Some(User), Some(LegalRepresentative), 1),
            Err(RoleError::LegalRepresentativeOnly)
        );
        assert_eq!(
            Admin.may_change_role(Some(LegalRepresentative), None, 2),
            Err(RoleError::LegalRepresentativeOnly)
        );
        assert_eq!(
            LegalRepresentative.may_change_role(Some(User), Some(LegalRepresentative), 1),
            Ok(())
        );
    }

    #[test]
    fn the_last_legal_representative_stays() {
        assert_eq!(
            LegalRepresentative.may_change_role(Some(LegalRepresentative), Some(Admin), 1),
            Err(RoleError::LastLegalRepresentative)
        );
        assert_eq!(
            LegalRepresentative.may_change_role(Some(LegalRepresentative), None, 1),
            Err(RoleError::LastLegalRepresentative)
        );
        assert_eq!(
            LegalRepresentative.may_change_role(Some(LegalRepresentative), None, 2),
            Ok(())
        );
    }

    #[test]
    fn only_externals_leave_by_themselves() {
        assert!(External.may_leave());
        assert!(!User.may_leave() && !Admin.may_leave() && !LegalRepresentative.may_leave());
    }

    #[test]
    fn organization_names_are_checked() {
        assert!(NewOrganization::parse("  Acme  ").is_ok_and(|o| o.name == "Acme"));
        assert!(NewOrganization::parse("   ").is_err());
        assert!(NewOrganization::parse(&"x".repeat(101)).is_err());
    }
}
