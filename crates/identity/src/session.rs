//! Browser and API sessions.
//!
//! The cookie carries a 256-bit random token; the database keeps only its
//! SHA-256, so a leaked table opens nothing. A session ends when signed
//! out or revoked, after `idle` without use (longer when "keep me signed
//! in" was ticked) and, whatever happens, `absolute` after sign-in.

use crate::account::AccountId;
use crate::clock::Millis;

pub use crate::ids::SessionId;

/// The secret a browser presents. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(pub String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

/// How far a session has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStage {
    /// The password was right and a second factor is awaited: the session
    /// reaches nothing but the second-step endpoints and sign-out.
    SecondFactor,
    SignedIn,
}

impl SessionStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecondFactor => "second_factor",
            Self::SignedIn => "signed_in",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::SecondFactor, Self::SignedIn]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub account_id: AccountId,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    /// "Keep me signed in": a persistent cookie and the longer idle time.
    pub remember: bool,
    pub ip: String,
    pub user_agent: String,
    pub stage: SessionStage,
    /// When the password was last given in this session (sign-in or
    /// re-confirmation); sensitive changes accept it for a few minutes.
    pub password_at: Millis,
    /// Wrong second-step codes in this sign-in attempt.
    pub factor_failures: u32,
}

/// How long a password given in a session counts as recent.
pub const RECENT_PASSWORD: Millis = 5 * 60_000;
/// Wrong second-step codes allowed per sign-in attempt; then the password
/// step starts over.
pub const MAX_FACTOR_FAILURES: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// How long a half-signed-in session waits for its second factor.
    pub second_factor: Millis,
    pub idle: Millis,
    pub remembered_idle: Millis,
    pub absolute: Millis,
}

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;

/// How stale `last_seen_at` may get before a request writes it again; keeps
/// a busy session from writing to the database on every request.
pub const TOUCH_EVERY: Millis = 60_000;

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            second_factor: 10 * 60_000,
            idle: 12 * HOUR,
            remembered_idle: 14 * DAY,
            absolute: 30 * DAY,
        }
    }
}

impl SessionPolicy {
    pub fn idle_for(&self, remember: bool) -> Millis {
        if remember { self.remembered_idle } else { self.idle }
    }

    pub fn is_live(&self, s: &Session, now: Millis) -> bool {
        match s.stage {
            SessionStage::SecondFactor => now - s.created_at < self.second_factor,
            SessionStage::SignedIn => {
                now - s.last_seen_at < self.idle_for(s.remember) && now - s.created_at < self.absolute
            }
        }
    }

    /// When the session ends at the latest if it keeps being used; the
    /// persistent cookie's `Max-Age` comes from this.
    pub fn expires_at(&self, s: &Session) -> Millis {
        (s.last_seen_at + self.idle_for(s.remember)).min(s.created_at + self.absolute)
    }

    pub fn needs_touch(&self, s: &Session, now: Millis) -> bool {
        now - s.last_seen_at >= TOUCH_EVERY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(remember: bool) -> Session {
        Session {
            id: SessionId::new("s"),
            account_id: AccountId::new("a"),
            created_at: 0,
            last_seen_at: 0,
            remember,
            ip: String::new(),
            user_agent: String::new(),
            stage: SessionStage::SignedIn,
            password_at: 0,
            factor_failures: 0,
        }
    }

    #[test]
    fn a_half_signed_in_session_waits_ten_minutes() {
        let p = SessionPolicy::default();
        let mut s = session(true);
        s.stage = SessionStage::SecondFactor;
        assert!(p.is_live(&s, 10 * 60_000 - 1));
        assert!(!p.is_live(&s, 10 * 60_000));
    }

    #[test]
    fn idle_sessions_end() {
        let p = SessionPolicy::default();
        let s = session(false);
        assert!(p.is_live(&s, 12 * HOUR - 1));
        assert!(!p.is_live(&s, 12 * HOUR));
        assert!(p.is_live(&session(true), 12 * HOUR), "remembered sessions idle longer");
        assert!(!p.is_live(&session(true), 14 * DAY));
    }

    #[test]
    fn the_absolute_lifetime_ends_even_a_busy_session() {
        let p = SessionPolicy::default();
        let mut s = session(true);
        s.last_seen_at = 30 * DAY - 1;
        assert!(p.is_live(&s, 30 * DAY - 1));
        assert!(!p.is_live(&s, 30 * DAY));
        assert_eq!(p.expires_at(&s), 30 * DAY);
    }

    #[test]
    fn touches_are_rate_limited() {
        let p = SessionPolicy::default();
        let s = session(false);
        assert!(!p.needs_touch(&s, TOUCH_EVERY - 1));
        assert!(p.needs_touch(&s, TOUCH_EVERY));
    }
}
