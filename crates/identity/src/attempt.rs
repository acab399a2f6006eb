//! One attempt at a throttled secret (a password, a second-step code):
//! reserved on its throttle keys before the secret is checked, settled
//! after.
//!
//! Reading the keys, checking the secret and then counting a failure let
//! a burst of concurrent guesses all pass a check read before any of them
//! was counted. So an attempt first takes room on every key, in one
//! statement per key that checks and increments together
//! ([`IdentityStore::reserve_throttle`]); the room is what
//! [`ThrottlePolicy::open_attempts`] allows from the key's settled state,
//! so a burst verifies no more guesses than a sequence would. Then the
//! attempt is settled:
//!
//! - [`Attempt::failed`] counts the failure through the state machine
//!   (compare-and-swap on the key's version) and gives the room back; if
//!   the swap keeps losing, the failure is written regardless: it always
//!   counts, never becomes a server error;
//! - [`Attempt::releases`] / [`Attempt::succeeded`] give the room back
//!   (and forget the person's failures on a success).
//!
//! An attempt dropped unsettled (a client that went away mid-request)
//! gives its room back in the background; one whose process died lapses
//! after [`RESERVATION_LAPSE`].

use std::sync::Arc;

use crate::clock::Millis;
use crate::softlock::ThrottlePolicy;
use crate::store::{IdentityStore, StoreError, ThrottleRecord, ThrottleRelease, ThrottleReservation};

/// A reservation never settled stops holding room after this: far longer
/// than any check takes, short enough that a crash does not lock anyone
/// out for long.
pub(crate) const RESERVATION_LAPSE: Millis = 60_000;

/// What a refused attempt is told to wait when its keys are not locked but
/// full of attempts in flight: they settle within a hash or two.
pub(crate) const BUSY_RETRY: Millis = 1_000;

/// How often a reservation or a failure is tried again when another
/// attempt settled on the same key in between.
const RETRIES: usize = 32;

/// What failures of one kind are counted against: a person (or what
/// stands for one) or a network. Each kind has its rule and its text in
/// the store; [`stored`](Self::stored) must keep giving the same text, or
/// existing counts and locks would be forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ThrottleKey {
    /// Console and API sign-in from a device that signed in before (the id
    /// in its cookie): its failures do not lock the account for others.
    Device(String),
    /// Console and API sign-in naming a login: the first 32 hex digits of
    /// its hash (the login itself is not stored).
    Login(String),
    /// Console and API sign-in from a network (see `network_of`).
    Network(String),
    /// The account password over WebDAV (and the other protocols), by the
    /// login's hash.
    ProtocolLogin(String),
    /// The account password over the protocols, from a network.
    ProtocolNetwork(String),
    /// Second-step codes of an account (its id).
    SecondStep(crate::AccountId),
    /// The password that confirms a sensitive change, of an account (its id).
    PasswordCheck(crate::AccountId),
}

impl ThrottleKey {
    /// The prefix of [`ThrottleKey::SecondStep`] keys, for the store's
    /// joint read of a session with its second-step record.
    pub(crate) const SECOND_STEP_PREFIX: &'static str = "second-factor:";

    pub(crate) fn policy(&self) -> ThrottlePolicy {
        if self.is_person() {
            ThrottlePolicy::ACCOUNT
        } else {
            ThrottlePolicy::NETWORK
        }
    }

    /// A person's key, whose failures a success forgets and whose lock is
    /// reported; a network's are neither: one valid account must not let
    /// a machine reset its own counter.
    pub(crate) fn is_person(&self) -> bool {
        !matches!(self, Self::Network(_) | Self::ProtocolNetwork(_))
    }

    /// The key's text in the store.
    pub(crate) fn stored(&self) -> String {
        match self {
            Self::Device(id) => format!("device:{id}"),
            Self::Login(hash) => format!("email:{hash}"),
            Self::Network(network) => format!("net:{network}"),
            Self::ProtocolLogin(hash) => format!("proto:{hash}"),
            Self::ProtocolNetwork(network) => format!("proto-net:{network}"),
            Self::SecondStep(account) => format!("{}{account}", Self::SECOND_STEP_PREFIX),
            Self::PasswordCheck(account) => format!("password-check:{account}"),
        }
    }
}

/// Room held on throttle keys for one check of a secret.
pub(crate) struct Attempt {
    store: Arc<dyn IdentityStore>,
    /// The keys (as stored, with their kind), each with the record its
    /// room was computed from.
    keys: Vec<((String, ThrottleKey), Option<ThrottleRecord>)>,
    settled: bool,
}

/// Reads the keys' records and reserves one attempt on every key.
/// `Ok(Err(retry_after))` when a key is locked or full: nothing is left
/// reserved then.
pub(crate) async fn reserve(
    store: &Arc<dyn IdentityStore>,
    keys: Vec<ThrottleKey>,
    now: Millis,
) -> Result<Result<Attempt, Millis>, StoreError> {
    let stored: Vec<String> = keys.iter().map(ThrottleKey::stored).collect();
    let records = store
        .throttles(&stored.iter().map(String::as_str).collect::<Vec<_>>())
        .await?;
    reserve_read(store, stored.into_iter().zip(keys).collect(), records, now).await
}

/// [`reserve`] with the keys' records already read (in the same order).
pub(crate) async fn reserve_read(
    store: &Arc<dyn IdentityStore>,
    keys: Vec<(String, ThrottleKey)>,
    records: Vec<Option<ThrottleRecord>>,
    now: Millis,
) -> Result<Result<Attempt, Millis>, StoreError> {
    // A locked key refuses before anything is written, as before.
    let wait = keys
        .iter()
        .zip(&records)
        .filter_map(|((_, kind), record)| kind.policy().check(record.map(|r| r.state), now).err())
        .max();
    if let Some(wait) = wait {
        return Ok(Err(wait));
    }
    let mut attempt = Attempt {
        store: Arc::clone(store),
        keys: Vec::with_capacity(keys.len()),
        settled: false,
    };
    // The common case, every key with room as read: all of them reserved
    // with one commit. Otherwise (a key full, or changed since it was
    // read) key by key below, reading again where a key changed.
    let reservations: Vec<(&str, ThrottleReservation)> = keys
        .iter()
        .zip(&records)
        .map(|((key, kind), record)| {
            let reservation = ThrottleReservation {
                version: record.map_or(0, |r| r.version),
                open: kind.policy().open_attempts(record.map(|r| r.state), now),
                now,
                lapsed_before: now - RESERVATION_LAPSE,
            };
            (key.as_str(), reservation)
        })
        .collect();
    if reservations.iter().all(|(_, r)| r.open > 0) && store.reserve_throttles(&reservations).await? {
        attempt.keys = keys.into_iter().zip(records).collect();
        return Ok(Ok(attempt));
    }
    for ((key, kind), mut record) in keys.into_iter().zip(records) {
        let policy = kind.policy();
        let mut reserved = false;
        for _ in 0..RETRIES {
            let open = policy.open_attempts(record.map(|r| r.state), now);
            if open == 0 {
                break;
            }
            let reservation = ThrottleReservation {
                version: record.map_or(0, |r| r.version),
                open,
                now,
                lapsed_before: now - RESERVATION_LAPSE,
            };
            if store.reserve_throttle(&key, reservation).await? {
                reserved = true;
                break;
            }
            // Either the key is full, or a failure settled meanwhile and
            // the room must be computed again from the new state.
            let current = store.throttle(&key).await?;
            let unchanged = current.map(|r| r.version) == record.map(|r| r.version)
                || (record.is_none() && current.is_some_and(|r| r.version == 0));
            record = current;
            if unchanged {
                break;
            }
        }
        if !reserved {
            let wait = policy.check(record.map(|r| r.state), now).err().unwrap_or(BUSY_RETRY);
            attempt.release_now(false).await?;
            return Ok(Err(wait));
        }
        attempt.keys.push(((key, kind), record));
    }
    Ok(Ok(attempt))
}

impl Attempt {
    /// Counts the failure on every key and gives the room back; returns
    /// how long the person's key became locked for, if this failure locked
    /// it.
    pub(crate) async fn failed(mut self, now: impl Fn() -> Millis) -> Result<Option<Millis>, StoreError> {
        self.settled = true;
        let mut locked = None;
        for ((key, kind), seen) in &self.keys {
            let policy = kind.policy();
            let mut record = *seen;
            let mut counted = false;
            for _ in 0..RETRIES {
                let at = now();
                let next = policy.after_failure(record.map(|r| r.state), at);
                let version = record.map_or(0, |r| r.version);
                if self.store.swap_throttle(key, Some(version), next).await? {
                    counted = true;
                    let was_locked = record.is_some_and(|r| r.state.locked_until > at);
                    if kind.is_person() && next.locked_until > at && !was_locked {
                        locked = Some(next.locked_until - at);
                    }
                    break;
                }
                record = self.store.throttle(key).await?;
            }
            if !counted {
                // Still losing to other writers: write this failure over
                // whatever is there rather than not count it at all.
                let at = now();
                let next = policy.after_failure(record.map(|r| r.state), at);
                self.store.swap_throttle(key, None, next).await?;
            }
        }
        Ok(locked)
    }

    /// Settles the attempt as a success now, forgetting the failures of
    /// the person's key but not a network's.
    pub(crate) async fn succeeded(mut self) -> Result<(), StoreError> {
        self.settled = true;
        self.release_now(true).await
    }

    /// Settles the attempt as a success inside another write: what to hand
    /// to it (see [`succeeded`](Self::succeeded)).
    pub(crate) fn releases(mut self) -> Vec<ThrottleRelease> {
        self.settled = true;
        self.release_list(true)
    }

    fn release_list(&self, success: bool) -> Vec<ThrottleRelease> {
        self.keys
            .iter()
            .map(|((key, kind), _)| ThrottleRelease {
                key: key.clone(),
                forget: success && kind.is_person(),
            })
            .collect()
    }

    async fn release_now(&mut self, success: bool) -> Result<(), StoreError> {
        let releases = self.release_list(success);
        self.keys.clear();
        if releases.is_empty() {
            return Ok(());
        }
        self.store.release_throttles(&releases).await
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.settled || self.keys.is_empty() {
            return;
        }
        // Not checked (the request was cancelled, or an error came first):
        // the room goes back without counting anything.
        let releases = self.release_list(false);
        let store = Arc::clone(&self.store);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.release_throttles(&releases).await {
                    tracing::warn!("could not release a throttle reservation: {e}");
                }
            });
        }
    }
}
