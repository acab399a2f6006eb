//! WebDAV locks (RFC 4918 §6–7) on a drive's paths, kept in the store so
//! every process serving the drive sees them.
//!
//! A lock is on a path, not a node: it may reserve a name before anything
//! is there. Paths are decoded, from the drive's top, without a trailing
//! slash ("" is the top folder).
//!
//! A lock stops everyone else from writing, so on a shared drive who may
//! take and remove one is a rule of its own ([`LockRefusal`]):
//! - a lock is removed by who took it, or by a manager of the drive's
//!   organization (a token seen in a listing is not enough);
//! - a lock on the top folder that reaches everything under it
//!   (`Depth: infinity`) is for managers only: it would shut every member
//!   out of the whole drive. A shared one does too here: a member without
//!   it may not write under it;
//! - no lock lasts longer than [`MAX_LOCK_SECS`] without being refreshed,
//!   whatever the client asks (`Timeout: Infinite` included), so a client
//!   that vanishes frees its names within the hour.

use identity::Millis;

use crate::files::{DriveTree, FileError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// `urn:uuid:…`, what clients send back in `If:` headers.
    pub token: String,
    pub path: String,
    /// Who took it (the account's email).
    pub principal: String,
    /// The client's `<owner>` element, kept as sent ("" for none).
    pub owner_xml: String,
    /// 0 for a lock without a timeout.
    pub expires_at: Millis,
    /// The timeout granted, 0 for none.
    pub timeout_secs: u64,
    pub shared: bool,
    /// Covers everything under the path (`Depth: infinity`).
    pub deep: bool,
}

/// The longest lock a client gets, whatever it asks for: a client that
/// vanishes frees its names within this time. Clients refresh the locks
/// they keep (Office, Finder and Windows every few minutes).
pub const MAX_LOCK_SECS: u64 = 3600;

/// The most locks one name may carry at once (shared locks pile up; each
/// is read back on every request that touches the name).
pub const MAX_LOCKS_PER_NAME: usize = 16;

/// The most locks one member may hold on one drive at once.
pub const MAX_LOCKS_PER_MEMBER: usize = 1000;

/// Why a member may not take or remove a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LockRefusal {
    #[error("this lock was taken by someone else; only they or an admin of the organization may remove it")]
    NotYours,
    #[error("only an admin of the organization may lock the whole drive")]
    WholeDrive,
}

/// Whether someone may take a lock on `path` (`deep`: with everything
/// under it); `manages`: whether they manage the drive's organization.
pub fn may_lock(path: &str, deep: bool, manages: bool) -> Result<(), LockRefusal> {
    if path.is_empty() && deep && !manages {
        return Err(LockRefusal::WholeDrive);
    }
    Ok(())
}

/// Whether `principal` may remove `lock`.
pub fn may_unlock(lock: &Lock, principal: &str, manages: bool) -> Result<(), LockRefusal> {
    if manages || lock.principal == principal {
        return Ok(());
    }
    Err(LockRefusal::NotYours)
}

/// Whether `path` is `ancestor` or lies under it.
pub fn within(path: &str, ancestor: &str) -> bool {
    path == ancestor || (path.starts_with(ancestor) && path[ancestor.len()..].starts_with('/'))
}

/// What a request on `path` may do given the drive's locks: `None` when
/// nothing stands in its way, else the first lock that does.
///
/// A lock on the path, or a deep lock above it, must be held (its token
/// submitted, by the same principal unless `ignore_principal`); a shared
/// lock only blocks when `shared_ok` is false and no lock on the path is
/// held. With `deep`, locks below the path count too.
pub fn conflict<'a>(
    locks: &'a [Lock],
    path: &str,
    principal: Option<&str>,
    ignore_principal: bool,
    deep: bool,
    tokens: &[String],
    shared_ok: bool,
) -> Option<&'a Lock> {
    let holds =
        |lock: &Lock| tokens.contains(&lock.token) && (ignore_principal || principal == Some(lock.principal.as_str()));
    let mut held = false;
    let mut shared_seen = None;
    for lock in locks {
        let applies = lock.path == path || (lock.deep && within(path, &lock.path));
        if !applies {
            continue;
        }
        if holds(lock) {
            held = true;
        } else if !lock.shared {
            return Some(lock);
        } else if !shared_ok {
            shared_seen.get_or_insert(lock);
        }
    }
    if !held && let Some(lock) = shared_seen {
        return Some(lock);
    }
    if deep {
        return locks
            .iter()
            .filter(|l| within(&l.path, path))
            .find(|l| (!l.shared || !shared_ok) && !holds(l));
    }
    None
}

/// What an UNLOCK did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlocked {
    Removed,
    /// The lock is there, but the rules keep this account from removing it.
    Refused(LockRefusal),
    /// No lock with that token is in force on the path or above it.
    NoSuchLock,
}

impl DriveTree {
    /// The locks in force on this drive.
    pub async fn locks(&self) -> Result<Vec<Lock>, FileError> {
        Ok(self.store().locks(self.drive().id, self.now()).await?)
    }

    /// Takes a lock unless another one conflicts; then returns that one.
    pub async fn lock(&self, mut lock: Lock) -> Result<Result<Lock, Lock>, FileError> {
        lock.timeout_secs = match lock.timeout_secs {
            0 => MAX_LOCK_SECS,
            secs => secs.min(MAX_LOCK_SECS),
        };
        lock.expires_at = self.now() + lock.timeout_secs as Millis * 1000;
        let (path, shared, deep) = (lock.path.clone(), lock.shared, lock.deep);
        let principal = lock.principal.clone();
        let check = move |locks: &[Lock]| {
            if let Some(other) = conflict(locks, &path, None, true, deep, &[], shared) {
                return Some(other.clone());
            }
            // Past either bound the lock is refused as if taken (423): the
            // client sees a name it cannot lock now.
            let on_name = locks.iter().filter(|l| l.path == path).count();
            let mine = locks.iter().filter(|l| l.principal == principal).count();
            if on_name >= MAX_LOCKS_PER_NAME || mine >= MAX_LOCKS_PER_MEMBER {
                return locks
                    .iter()
                    .find(|l| l.path == path || l.principal == principal)
                    .cloned();
            }
            None
        };
        // Most locks meet none: one statement takes them.
        let store = self.store();
        let now = self.now();
        if store
            .add_lock_if_free(self.drive().id, &lock, now, MAX_LOCKS_PER_NAME, MAX_LOCKS_PER_MEMBER)
            .await?
        {
            return Ok(Ok(lock));
        }
        let refused = store.add_lock(self.drive().id, &lock, now, &check).await?;
        Ok(match refused {
            Some(other) => Err(other),
            None => Ok(lock),
        })
    }

    /// Extends a lock on `path` (or above it); `None` when there is none.
    pub async fn refresh_lock(&self, path: &str, token: &str, timeout_secs: u64) -> Result<Option<Lock>, FileError> {
        let Some(lock) = self.locks().await?.into_iter().find(|l| l.token == token) else {
            return Ok(None);
        };
        if !within(path, &lock.path) {
            return Ok(None);
        }
        let secs = match timeout_secs {
            0 => MAX_LOCK_SECS,
            secs => secs.min(MAX_LOCK_SECS),
        };
        let expires_at = self.now() + secs as Millis * 1000;
        Ok(self
            .store()
            .refresh_lock(self.drive().id, token, expires_at, secs)
            .await?)
    }

    /// Whether this account may take a lock on `path` (see [`may_lock`]).
    pub fn may_lock(&self, path: &str, deep: bool) -> Result<(), LockRefusal> {
        may_lock(path, deep, self.manages())
    }

    /// The lock `token` on `path` (or above it), if it is in force, and
    /// whether `principal` may remove it (see [`may_unlock`]).
    pub async fn lock_to_remove(
        &self,
        path: &str,
        token: &str,
        principal: &str,
    ) -> Result<Option<Result<Lock, LockRefusal>>, FileError> {
        let found = self
            .locks()
            .await?
            .into_iter()
            .find(|l| l.token == token && within(path, &l.path));
        Ok(found.map(|lock| may_unlock(&lock, principal, self.manages()).map(|()| lock)))
    }

    /// Removes the lock `token` on `path` (or above it) if `principal` may
    /// (see [`may_unlock`]); `false` when there is no such lock or they
    /// may not.
    pub async fn unlock(&self, path: &str, token: &str, principal: &str) -> Result<bool, FileError> {
        Ok(self.unlock_as(path, token, principal).await? == Unlocked::Removed)
    }

    /// Removes the lock `token` on `path` (or above it) if `principal` may
    /// (see [`may_unlock`]), in one statement that also clears the drive's
    /// expired locks; when it was not removed, tells why.
    pub async fn unlock_as(&self, path: &str, token: &str, principal: &str) -> Result<Unlocked, FileError> {
        let store = self.store();
        let (drive, manages) = (self.drive().id, self.manages());
        if store
            .remove_held_lock(drive, token, path, principal, manages, self.now())
            .await?
        {
            return Ok(Unlocked::Removed);
        }
        Ok(match self.lock_to_remove(path, token, principal).await? {
            Some(Err(refusal)) => Unlocked::Refused(refusal),
            // Only a lock taken since: removed as before.
            Some(Ok(_)) if store.remove_lock(drive, token).await? => Unlocked::Removed,
            Some(Ok(_)) | None => Unlocked::NoSuchLock,
        })
    }

    /// Removes every lock on `path` and under it (after a delete or move).
    pub async fn drop_locks(&self, path: &str) -> Result<(), FileError> {
        Ok(self.store().remove_locks_within(self.drive().id, path).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(token: &str, path: &str, shared: bool, deep: bool) -> Lock {
        Lock {
            token: token.into(),
            path: path.into(),
            principal: "ana@example.org".into(),
            owner_xml: String::new(),
            expires_at: 0,
            timeout_secs: 0,
            shared,
            deep,
        }
    }

    #[test]
    fn paths_nest_on_whole_names() {
        assert!(within("/a/b", "/a"));
        assert!(within("/a", "/a"));
        assert!(within("/a", ""));
        assert!(!within("/ab", "/a"));
    }

    #[test]
    fn exclusive_locks_block_unless_held() {
        let locks = [lock("t1", "/a", false, true)];
        let me = Some("ana@example.org");
        assert!(conflict(&locks, "/a/b", me, false, false, &[], false).is_some());
        assert!(conflict(&locks, "/a/b", me, false, false, &["t1".into()], false).is_none());
        // Someone else with the token is still refused.
        assert!(
            conflict(
                &locks,
                "/a/b",
                Some("eve@example.org"),
                false,
                false,
                &["t1".into()],
                false
            )
            .is_some()
        );
        assert!(conflict(&locks, "/c", me, false, false, &[], false).is_none());
        // A shallow lock does not reach below its path.
        let shallow = [lock("t2", "/a", false, false)];
        assert!(conflict(&shallow, "/a/b", me, false, false, &[], false).is_none());
        // A deep request sees locks below it.
        let below = [lock("t3", "/a/b/c", false, false)];
        assert!(conflict(&below, "/a", me, false, true, &[], false).is_some());
        assert!(conflict(&below, "/a", me, false, false, &[], false).is_none());
    }

    #[test]
    fn only_managers_lock_the_whole_drive() {
        assert_eq!(may_lock("", true, false), Err(LockRefusal::WholeDrive));
        assert_eq!(may_lock("", true, true), Ok(()));
        assert_eq!(may_lock("", false, false), Ok(()));
        assert_eq!(may_lock("/Projects", true, false), Ok(()));
    }

    #[test]
    fn locks_are_removed_by_their_holder_or_a_manager() {
        let taken = lock("t1", "/a", false, false);
        assert_eq!(may_unlock(&taken, "ana@example.org", false), Ok(()));
        assert_eq!(may_unlock(&taken, "eve@example.org", false), Err(LockRefusal::NotYours));
        assert_eq!(may_unlock(&taken, "eve@example.org", true), Ok(()));
    }

    #[test]
    fn shared_locks_share() {
        let locks = [lock("s1", "/f", true, false)];
        // Another shared lock may be taken; an exclusive one may not.
        assert!(conflict(&locks, "/f", None, true, false, &[], true).is_none());
        assert!(conflict(&locks, "/f", None, true, false, &[], false).is_some());
    }
}
