//! Accounts: the person behind a login email.

use crate::clock::Millis;
use crate::email::EmailAddress;
pub use crate::ids::AccountId;
use crate::sync_user_id::SyncUserId;

#[derive(Clone)]
pub struct Account {
    pub id: AccountId,
    pub email: EmailAddress,
    pub name: String,
    pub sync_user_id: SyncUserId,
    /// Argon2id PHC string; never leaves the identity crate's checks.
    pub password_hash: String,
    pub created_at: Millis,
    pub password_changed_at: Millis,
    /// The second-factor kind offered first at sign-in, if chosen. Loaded
    /// with the account so a sign-in needs no extra query for it.
    pub default_method: Option<crate::second_factor::FactorKind>,
    /// The language emails to the member are written in (`en`, `es`, `fr`,
    /// `de`, `it`).
    pub lang: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("sync_user_id", &self.sync_user_id)
            .finish_non_exhaustive()
    }
}

/// A validated account, ready to be stored; the store assigns the sync
/// user id.
#[derive(Clone)]
pub struct NewAccount {
    pub id: AccountId,
    pub email: EmailAddress,
    pub name: String,
    pub password_hash: String,
    pub created_at: Millis,
}

/// A display name: 1 to 100 characters, no control characters.
pub(crate) fn parse_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    let ok = !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control);
    ok.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(super::parse_name("  Ana García "), Some("Ana García".into()));
        assert_eq!(super::parse_name(" "), None);
        assert_eq!(super::parse_name("a\u{0}b"), None);
        assert_eq!(super::parse_name(&"n".repeat(101)), None);
    }
}
