//! Second factors a member has enrolled: authenticator apps (TOTP), the
//! cloudkeep authenticator (push, with offline codes), security keys and
//! SMS. Every kind shares the same storage, listing, removal and second
//! sign-in step; backup codes stand beside them.

use crate::FactorId;
use crate::account::AccountId;
use crate::clock::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FactorKind {
    /// Any TOTP authenticator app.
    Totp,
    /// Codes by SMS, to a number of an allowed country.
    Sms,
    /// A FIDO2/WebAuthn security key.
    SecurityKey,
    /// The companion app, `cloudkeep-authenticator`.
    App,
}

impl FactorKind {
    pub const ALL: [FactorKind; 4] = [
        FactorKind::App,
        FactorKind::Totp,
        FactorKind::SecurityKey,
        FactorKind::Sms,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::Sms => "sms",
            FactorKind::SecurityKey => "security_key",
            FactorKind::App => "authenticator",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One enrolled (or being enrolled) method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondFactor {
    pub id: FactorId,
    pub account_id: AccountId,
    pub kind: FactorKind,
    /// The member's name for it ("Phone").
    pub name: String,
    /// Kind-specific secret, sealed with the server key (AES-256-GCM).
    pub secret: String,
    /// `false` until confirmed; unconfirmed enrolments expire.
    pub active: bool,
    pub created_at: Millis,
    /// When an unconfirmed enrolment lapses (0 once active).
    pub expires_at: Millis,
    /// 0 when never used.
    pub last_used_at: Millis,
    /// Kind-specific counter: for TOTP, the last accepted step.
    pub counter: i64,
}

/// How long an unconfirmed enrolment waits for its first code.
pub const ENROLMENT_LIFETIME: Millis = 10 * 60_000;

impl SecondFactor {
    /// A method being enrolled, made at `now`: inactive until confirmed,
    /// and lapsed after `lifetime` unless it is.
    pub fn pending(
        id: FactorId,
        account_id: AccountId,
        kind: FactorKind,
        name: String,
        secret: String,
        now: Millis,
        lifetime: Millis,
    ) -> Self {
        Self {
            secret,
            id,
            account_id,
            kind,
            name,
            active: false,
            created_at: now,
            expires_at: now + lifetime,
            last_used_at: 0,
            counter: 0,
        }
    }
}

/// A method as the member sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSummary {
    pub id: FactorId,
    pub kind: FactorKind,
    pub name: String,
    pub created_at: Millis,
    pub last_used_at: Millis,
}

impl From<&SecondFactor> for MethodSummary {
    fn from(f: &SecondFactor) -> Self {
        Self {
            id: f.id.clone(),
            kind: f.kind,
            name: f.name.clone(),
            created_at: f.created_at,
            last_used_at: f.last_used_at,
        }
    }
}

/// What the second sign-in step offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub methods: Vec<MethodSummary>,
    /// The kind shown first: the one used most recently.
    pub default_method: FactorKind,
}

impl Challenge {
    /// `None` when no method is active, i.e. two-step verification is off.
    /// The default is the member's choice when it is still enrolled, else
    /// the method used most recently.
    pub fn for_factors(factors: &[SecondFactor], preferred: Option<FactorKind>) -> Option<Self> {
        let active: Vec<&SecondFactor> = factors.iter().filter(|f| f.active).collect();
        let recent = active.iter().max_by_key(|f| (f.last_used_at, f.created_at))?;
        let default_method = preferred
            .filter(|kind| active.iter().any(|f| f.kind == *kind))
            .unwrap_or(recent.kind);
        Some(Self {
            default_method,
            methods: active.iter().map(|f| MethodSummary::from(*f)).collect(),
        })
    }
}

/// The member's two-step verification, as the 2FA page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoFactorStatus {
    pub enabled: bool,
    pub methods: Vec<MethodSummary>,
    pub backup_codes_remaining: usize,
    /// The kind offered first at sign-in.
    pub default_method: Option<FactorKind>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factor(id: &str, active: bool, last_used_at: Millis) -> SecondFactor {
        SecondFactor {
            id: FactorId::new(id),
            account_id: AccountId::new("a"),
            kind: FactorKind::Totp,
            name: id.into(),
            secret: String::new(),
            active,
            created_at: 1,
            expires_at: 0,
            last_used_at,
            counter: 0,
        }
    }

    #[test]
    fn the_challenge_lists_active_methods_only() {
        assert_eq!(Challenge::for_factors(&[factor("pending", false, 0)], None), None);
        let c = Challenge::for_factors(
            &[factor("a", true, 5), factor("b", true, 9), factor("p", false, 0)],
            None,
        )
        .unwrap();
        assert_eq!(c.methods.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(c.default_method, FactorKind::Totp);
    }

    #[test]
    fn the_members_choice_wins_while_it_is_enrolled() {
        let mut sms = factor("s", true, 1);
        sms.kind = FactorKind::Sms;
        let totp = factor("t", true, 9);
        let both = [sms.clone(), totp.clone()];
        assert_eq!(
            Challenge::for_factors(&both, None).unwrap().default_method,
            FactorKind::Totp,
            "most recent"
        );
        assert_eq!(
            Challenge::for_factors(&both, Some(FactorKind::Sms))
                .unwrap()
                .default_method,
            FactorKind::Sms
        );
        let only_totp = [totp];
        assert_eq!(
            Challenge::for_factors(&only_totp, Some(FactorKind::Sms))
                .unwrap()
                .default_method,
            FactorKind::Totp,
            "a removed choice falls back"
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in FactorKind::ALL {
            assert_eq!(FactorKind::parse(k.as_str()), Some(k));
        }
    }
}
