//! Security activity: what happened to an account, when and from where.
//! Members read their own; later issues add organization audit logs.

use crate::account::AccountId;
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
    TwoFactorEnabled,
    TwoFactorDisabled,
    /// detail: the method's name.
    SecondFactorAdded,
    /// detail: the method's name.
    SecondFactorRemoved,
    SecondFactorFailed,
    /// Too many wrong codes: the second step is paused (detail: seconds).
    SecondFactorLocked,
    /// detail: how many codes are left.
    BackupCodeUsed,
    BackupCodesRegenerated,
    /// detail: the application password's name.
    AppPasswordCreated,
    /// detail: the application password's name.
    AppPasswordRevoked,
    /// A sync or mail client was refused (detail: the login it used).
    ProtocolSignInFailed,
    /// A sync or mail client gave the account password while an
    /// organization's two-step requirement blocks it (detail: the
    /// organization's name): only application passwords work then.
    ProtocolPasswordBlocked,
    /// A security key's counter went backwards: possibly a cloned key.
    SecurityKeyCloned,
    /// Suspicious: a push approval request was refused on a device
    /// (detail: the device's name).
    PushDenied,
    /// Suspicious: a device picked another number than the sign-in page
    /// showed (detail: the device's name).
    PushWrongNumber,
    /// Denials in a row paused push approval (detail: minutes).
    PushPaused,
}

impl EventKind {
    pub const ALL: [EventKind; 23] = [
        Self::AccountCreated,
        Self::SignIn,
        Self::SignInFailed,
        Self::SignInLocked,
        Self::SignOut,
        Self::PasswordChanged,
        Self::SessionRevoked,
        Self::TwoFactorEnabled,
        Self::TwoFactorDisabled,
        Self::SecondFactorAdded,
        Self::SecondFactorRemoved,
        Self::SecondFactorFailed,
        Self::SecondFactorLocked,
        Self::BackupCodeUsed,
        Self::BackupCodesRegenerated,
        Self::AppPasswordCreated,
        Self::AppPasswordRevoked,
        Self::ProtocolSignInFailed,
        Self::ProtocolPasswordBlocked,
        Self::SecurityKeyCloned,
        Self::PushDenied,
        Self::PushWrongNumber,
        Self::PushPaused,
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
            Self::TwoFactorEnabled => "two_factor_enabled",
            Self::TwoFactorDisabled => "two_factor_disabled",
            Self::SecondFactorAdded => "second_factor_added",
            Self::SecondFactorRemoved => "second_factor_removed",
            Self::SecondFactorFailed => "second_factor_failed",
            Self::SecondFactorLocked => "second_factor_locked",
            Self::BackupCodeUsed => "backup_code_used",
            Self::BackupCodesRegenerated => "backup_codes_regenerated",
            Self::AppPasswordCreated => "app_password_created",
            Self::AppPasswordRevoked => "app_password_revoked",
            Self::ProtocolSignInFailed => "protocol_sign_in_failed",
            Self::ProtocolPasswordBlocked => "protocol_password_blocked",
            Self::SecurityKeyCloned => "security_key_cloned",
            Self::PushDenied => "push_denied",
            Self::PushWrongNumber => "push_wrong_number",
            Self::PushPaused => "push_paused",
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
    pub account_id: AccountId,
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
