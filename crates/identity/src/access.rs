//! What a session may reach, decided here once so that no transport (the
//! console, the API, and the calendar and mail protocols to come) decides
//! again: each only says what a request is for ([`Purpose`]) and turns a
//! refusal into its own answer (a redirect, a status).
//!
//! ```text
//!   password given ──▶ SecondStep ──second factor──▶ Full
//!                                                    │ an organization's
//!                                                    │ requirement passes
//!                                                    ▼ its grace period
//!                                                 Enrolment ──method added──▶ Full
//! ```
//!
//! Protocol clients sign in with application passwords, which a
//! requirement does not touch; their account password is refused in
//! `protocol.rs` while one blocks the account.

use crate::org_admin::Requirement;

/// What a request is for, as far as access cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Adding a second step, and the pages that lead there.
    Enrol,
    /// Reading one's own account.
    ReadOwnAccount,
    SignOut,
    /// Choosing the language of pages and emails.
    Language,
    /// Leaving an organization (instead of enrolling for it).
    LeaveOrganization,
    /// Anything else.
    Other,
}

/// What a session may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The password was given, the second factor not yet.
    SecondStep,
    /// An organization requires two-step verification and its grace
    /// period is over: only enrolling, and the ways out.
    Enrolment(Requirement),
    /// Everything the member's roles allow; a requirement still in its
    /// grace period comes along, to be announced.
    Full(Option<Requirement>),
}

impl Access {
    /// The signed-in member's access under `requirement` (see
    /// [`Identity::two_factor_requirement`](crate::Identity::two_factor_requirement)).
    pub fn signed_in(requirement: Option<Requirement>) -> Self {
        match requirement {
            Some(r) if r.blocked => Self::Enrolment(r),
            other => Self::Full(other),
        }
    }

    pub fn allows(&self, purpose: Purpose) -> bool {
        match self {
            Self::SecondStep => matches!(purpose, Purpose::SignOut | Purpose::Language),
            Self::Enrolment(_) => purpose != Purpose::Other,
            Self::Full(_) => true,
        }
    }

    /// The requirement to announce or enforce, if any.
    pub fn requirement(&self) -> Option<&Requirement> {
        match self {
            Self::Enrolment(r) | Self::Full(Some(r)) => Some(r),
            Self::SecondStep | Self::Full(None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirement(blocked: bool) -> Requirement {
        Requirement {
            org_id: crate::OrgId::new("o"),
            org_name: "Acme".into(),
            by: "Ana".into(),
            deadline: 10,
            blocked,
        }
    }

    const ALL: [Purpose; 6] = [
        Purpose::Enrol,
        Purpose::ReadOwnAccount,
        Purpose::SignOut,
        Purpose::Language,
        Purpose::LeaveOrganization,
        Purpose::Other,
    ];

    #[test]
    fn a_requirement_in_its_grace_period_only_warns() {
        let access = Access::signed_in(Some(requirement(false)));
        assert!(ALL.into_iter().all(|p| access.allows(p)));
        assert_eq!(access.requirement(), Some(&requirement(false)));
        assert!(ALL.into_iter().all(|p| Access::signed_in(None).allows(p)));
    }

    #[test]
    fn a_blocking_requirement_leaves_enrolment_and_the_ways_out() {
        let access = Access::signed_in(Some(requirement(true)));
        for p in ALL {
            assert_eq!(access.allows(p), p != Purpose::Other, "{p:?}");
        }
        assert_eq!(access.requirement(), Some(&requirement(true)));
    }

    #[test]
    fn half_signed_in_reaches_nothing_but_the_way_out() {
        for p in ALL {
            assert_eq!(
                Access::SecondStep.allows(p),
                matches!(p, Purpose::SignOut | Purpose::Language),
                "{p:?}"
            );
        }
        assert_eq!(Access::SecondStep.requirement(), None);
    }
}
