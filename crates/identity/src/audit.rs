//! Security activity: what happened to an account, when and from where.
//! Members read their own; later issues add organization audit logs.

use crate::clock::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    AccountCreated,
    SignIn,
    SignInFailed,
    /// Too many failures: sign-in is paused for a while (detail: seconds).
    SignInLocked,
    SignOut,
    PasswordChanged,
    SessionRevoked,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        Self::AccountCreated,
        Self::SignIn,
        Self::SignInFailed,
        Self::SignInLocked,
        Self::SignOut,
        Self::PasswordChanged,
        Self::SessionRevoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountCreated => "account_created",
            Self::SignIn => "sign_in",
            Self::SignInFailed => "sign_in_failed",
            Self::SignInLocked => "sign_in_locked",
            Self::SignOut => "sign_out",
            Self::PasswordChanged => "password_changed",
            Self::SessionRevoked => "session_revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// Time-ordered (UUIDv7), so it doubles as the pagination cursor.
    pub id: String,
    pub account_id: String,
    pub at: Millis,
    pub kind: EventKind,
    pub ip: String,
    pub user_agent: String,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }
}
