//! Sign-in throttling: growing, always temporary locks.
//!
//! Every failed password check counts against several keys at once: the
//! source network (an IPv4 address or an IPv6 /64), and either the login
//! email or, when the browser shows a device cookie from an earlier
//! successful sign-in to that account, that device. Each key follows the
//! same small state machine:
//!
//! ```text
//!            failure (count <= free)           failure (count > free)
//!   Open ─────────────────────────────▶ Open ──────────────────────────▶ Locked(until)
//!    ▲                                                                      │
//!    │  success, or `forget_after` with no failure        time >= until     │
//!    └──────────────────────────────────────────────── Open (count kept) ◀──┘
//! ```
//!
//! The n-th failure past the free ones locks the key for
//! `base_lock * 2^(n-1)`, capped at `max_lock`. Nothing is ever locked for
//! longer than `max_lock`, so an attacker can slow an account down but never
//! lock it for good. And because a known device has its own key, a member
//! who signed in from this browser before is not locked out by someone
//! guessing their password from elsewhere (the OWASP "device cookie"
//! defence). Unknown emails are throttled exactly like known ones, so the
//! lock reveals nothing about which accounts exist.
//!
//! Concurrency does not widen the gap: an attempt is checked against
//! [`ThrottlePolicy::open_attempts`] when it is reserved, before its secret
//! is verified, so however many arrive at once, no more are verified than
//! one after the other would have been (see `attempt.rs`).

use crate::clock::Millis;

/// The persisted state of one throttle key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleState {
    pub failures: u32,
    pub last_failure: Millis,
    pub locked_until: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed before the first lock.
    pub free_failures: u32,
    pub base_lock: Millis,
    pub max_lock: Millis,
    /// A key with no failure for this long starts again from zero.
    pub forget_after: Millis,
}

const SECOND: Millis = 1000;
const MINUTE: Millis = 60 * SECOND;

impl ThrottlePolicy {
    /// Per email address or known device.
    pub const ACCOUNT: Self = Self {
        free_failures: 5,
        base_lock: 30 * SECOND,
        max_lock: 15 * MINUTE,
        forget_after: 60 * MINUTE,
    };

    /// Per source network: roomier, since many people can share one
    /// address, but it stops one machine from walking through many accounts.
    pub const NETWORK: Self = Self {
        free_failures: 30,
        base_lock: MINUTE,
        max_lock: 60 * MINUTE,
        forget_after: 60 * MINUTE,
    };

    /// The longest any policy remembers a failure: keys quiet for longer
    /// are forgotten and may be deleted.
    pub const LONGEST_MEMORY: Millis = 60 * MINUTE;

    /// `Err(retry_after)` while the key is locked.
    pub fn check(&self, state: Option<ThrottleState>, now: Millis) -> Result<(), Millis> {
        match state {
            Some(s) if s.locked_until > now => Err(s.locked_until - now),
            _ => Ok(()),
        }
    }

    /// How many attempts may be verified at once from `state` at `now`:
    /// as many as could fail one after the other before one of them
    /// locks the key (the free failures left, plus the one that locks),
    /// and none while it is locked. Reservations in flight count against
    /// it, so a burst verifies no more guesses than a sequence would.
    pub fn open_attempts(&self, state: Option<ThrottleState>, now: Millis) -> u32 {
        if self.check(state, now).is_err() {
            return 0;
        }
        let failures = state
            .filter(|s| now - s.last_failure < self.forget_after)
            .map_or(0, |s| s.failures);
        (self.free_failures + 1).saturating_sub(failures).max(1)
    }

    /// The most attempts a key ever lets through before its first lock.
    pub fn attempts_before_lock(&self) -> u32 {
        self.free_failures + 1
    }

    /// The state after one more failure at `now`.
    pub fn after_failure(&self, state: Option<ThrottleState>, now: Millis) -> ThrottleState {
        let previous = state
            .filter(|s| now - s.last_failure < self.forget_after)
            .unwrap_or_default();
        let failures = previous.failures.saturating_add(1);
        let locked_until = match failures.checked_sub(self.free_failures) {
            None | Some(0) => previous.locked_until,
            Some(past_free) => {
                let doublings = (past_free - 1).min(30);
                let lock = self.base_lock.saturating_mul(1 << doublings).min(self.max_lock);
                now + lock
            }
        };
        ThrottleState {
            failures,
            last_failure: now,
            locked_until,
        }
    }

    /// Whether a stored state is worth keeping at `now`; lets the store
    /// sweep keys that have been forgotten.
    pub fn is_stale(&self, state: ThrottleState, now: Millis) -> bool {
        state.locked_until <= now && now - state.last_failure >= self.forget_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ThrottlePolicy = ThrottlePolicy::ACCOUNT;

    fn fail_times(n: u32, at: Millis) -> Option<ThrottleState> {
        (0..n).fold(None, |s, _| Some(P.after_failure(s, at)))
    }

    #[test]
    fn free_failures_do_not_lock() {
        let s = fail_times(5, 1_000);
        assert_eq!(s.unwrap().failures, 5);
        assert_eq!(P.check(s, 1_000), Ok(()));
    }

    #[test]
    fn the_first_failure_past_the_free_ones_locks_for_the_base_time() {
        let s = fail_times(6, 1_000);
        assert_eq!(P.check(s, 1_000), Err(30 * SECOND));
        assert_eq!(P.check(s, 1_000 + 30 * SECOND - 1), Err(1));
        assert_eq!(P.check(s, 1_000 + 30 * SECOND), Ok(()));
    }

    #[test]
    fn locks_double_and_are_capped() {
        let mut s = fail_times(6, 0);
        let mut now = 0;
        let mut expected = 30 * SECOND;
        for _ in 0..10 {
            now = s.unwrap().locked_until;
            s = Some(P.after_failure(s, now));
            expected = (expected * 2).min(P.max_lock);
            assert_eq!(P.check(s, now), Err(expected));
        }
        assert_eq!(P.check(s, now), Err(15 * MINUTE), "never more than the cap");
    }

    #[test]
    fn quiet_time_forgets_failures() {
        let s = fail_times(6, 0);
        let later = P.forget_after + 1;
        let after = P.after_failure(s, later);
        assert_eq!(after.failures, 1);
        assert_eq!(P.check(Some(after), later), Ok(()));
        assert!(P.is_stale(s.unwrap(), later));
        assert!(!P.is_stale(s.unwrap(), 10));
    }

    #[test]
    fn a_failure_while_unlocked_below_the_threshold_keeps_an_old_lock_expired() {
        let s = fail_times(3, 0);
        assert_eq!(s.unwrap().locked_until, 0);
        assert_eq!(P.check(s, 0), Ok(()));
    }

    #[test]
    fn no_policy_remembers_longer_than_the_purge_assumes() {
        for p in [ThrottlePolicy::ACCOUNT, ThrottlePolicy::NETWORK] {
            assert!(p.forget_after <= ThrottlePolicy::LONGEST_MEMORY);
        }
    }

    #[test]
    fn open_attempts_are_the_failures_a_sequence_could_make_before_the_lock() {
        assert_eq!(P.open_attempts(None, 0), 6);
        assert_eq!(P.open_attempts(fail_times(2, 0), 0), 4);
        assert_eq!(P.open_attempts(fail_times(5, 0), 0), 1, "the one that locks");
        let locked = fail_times(6, 0);
        assert_eq!(P.open_attempts(locked, 0), 0);
        let reopened = locked.unwrap().locked_until;
        assert_eq!(P.open_attempts(locked, reopened), 1, "after a lock, one at a time");
        assert_eq!(P.open_attempts(locked, P.forget_after + 1), 6, "forgotten");
        // Walking the sequence verifies exactly `attempts_before_lock`.
        let (mut state, mut verified) = (None, 0);
        while P.open_attempts(state, 0) > 0 {
            state = Some(P.after_failure(state, 0));
            verified += 1;
        }
        assert_eq!(verified, P.attempts_before_lock());
    }

    #[test]
    fn no_state_is_open() {
        assert_eq!(P.check(None, 123), Ok(()));
    }
}
