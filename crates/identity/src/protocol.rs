//! Sign-in for protocol clients: WebDAV, CalDAV, CardDAV and IMAP all call
//! [`Identity::authenticate_protocol_client`], the one place their
//! credentials are checked.
//!
//! The login is the email or the sync user id (`AB12345`). The secret is
//! an application password; the account password is accepted only while
//! the account has no two-step verification, and not while an
//! organization's two-step requirement blocks the account (the help
//! center's rule: tools keep working through application passwords, the
//! account password must not). The decision is made here, so WebDAV,
//! CalDAV/CardDAV and IMAP all inherit it.
//!
//! This runs on every DAV and IMAP request, so a verified credential is
//! remembered in memory for ten seconds (keyed by an HMAC of login and
//! secret, never the secret itself) and its last use is written at most
//! once a minute. Revoking an application password, changing the password
//! or turning 2FA on forgets the account's entries at once in this
//! process; other processes forget them within the ten seconds.
//!
//! A correct application password is never refused because of throttling
//! (its 138 bits cannot be guessed, and a locked account must not stop the
//! member's NAS); failures, and the account password, go through the same
//! softlock as web sign-in, on keys of their own so a misconfigured sync
//! client does not lock its owner out of the console.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use subtle::ConstantTimeEq;

use crate::account::{Account, AccountId};
use crate::attempt::ThrottleKey;
use crate::audit::EventKind;
use crate::clock::Millis;
use crate::credential::app_password::{self, AppPassword};
use crate::email::EmailAddress;
use crate::ids::AppPasswordId;
use crate::second_factor::Challenge;
use crate::secrets::token_hash;
use crate::service::{ClientInfo, Identity, IdentityError, network_of};
use crate::store::StoreError;
use crate::sync_user_id::SyncUserId;

#[derive(Debug, thiserror::Error)]
pub enum ProtocolAuthError {
    #[error("wrong user name or password")]
    InvalidCredentials,
    #[error("too many attempts; retry in {retry_after} ms")]
    TooManyAttempts { retry_after: Millis },
    /// The account password was right, but an organization requires
    /// two-step verification the account does not have yet.
    #[error("{organization} requires two-step verification: turn it on, then sign in with an application password")]
    TwoFactorRequired { organization: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

const CACHE_TTL: Millis = 10_000;
const TOUCH_EVERY: Millis = 60_000;
const CACHE_LIMIT: usize = 10_000;

#[derive(Clone)]
struct Entry {
    account: Account,
    app_password: Option<AppPasswordId>,
    verified_at: Millis,
    touched_at: Millis,
}

/// Recently verified protocol credentials of this process.
#[derive(Default)]
pub(crate) struct Cache(Mutex<HashMap<String, Entry>>);

impl Cache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &str, now: Millis) -> Option<Entry> {
        let mut entries = self.entries();
        let entry = entries.get_mut(key).filter(|e| now - e.verified_at < CACHE_TTL)?;
        let snapshot = entry.clone();
        if now - entry.touched_at >= TOUCH_EVERY {
            entry.touched_at = now;
        }
        Some(snapshot)
    }

    fn put(&self, key: String, entry: Entry) {
        let mut entries = self.entries();
        if entries.len() >= CACHE_LIMIT {
            let now = entry.verified_at;
            entries.retain(|_, e| now - e.verified_at < CACHE_TTL);
            if entries.len() >= CACHE_LIMIT {
                entries.clear();
            }
        }
        entries.insert(key, entry);
    }

    pub(crate) fn forget_account(&self, account_id: &AccountId) {
        self.entries().retain(|_, e| &e.account.id != account_id);
    }

    /// Empties the cache (for measuring the uncached path).
    pub(crate) fn clear(&self) {
        self.entries().clear();
    }
}

impl Identity {
    /// The account behind a protocol client's credentials.
    pub async fn authenticate_protocol_client(
        &self,
        login: &str,
        secret: &str,
        source_ip: IpAddr,
    ) -> Result<Account, ProtocolAuthError> {
        let now = self.now();
        let login = login.trim();
        let cache_key = self
            .key()
            .digest("protocol-cache", format!("{}:{login}{secret}", login.len()).as_bytes());
        if let Some(entry) = self.protocol_cache().get(&cache_key, now) {
            if entry.app_password.is_none() {
                // Read from memory: a requirement applied since the entry
                // was cached refuses it at once.
                if let Err(refused) = self.refuse_if_password_blocked(&entry.account, source_ip).await {
                    self.protocol_cache().forget_account(&entry.account.id);
                    return Err(refused);
                }
            }
            if let Some(id) = &entry.app_password
                && now - entry.touched_at >= TOUCH_EVERY
            {
                self.store().touch_app_password(id, now, &source_ip.to_string()).await?;
            }
            return Ok(entry.account);
        }

        let account = match SyncUserId::parse(&login.to_ascii_uppercase()) {
            Some(sync_id) => self.store().account_by_sync_user_id(&sync_id).await?,
            None => match EmailAddress::parse(login) {
                Ok(email) => self.store().account_by_email(&email).await?,
                Err(_) => None,
            },
        };
        let remember = |account: &Account, app_password: Option<AppPasswordId>| {
            let entry = Entry {
                account: account.clone(),
                app_password,
                verified_at: now,
                touched_at: now,
            };
            self.protocol_cache().put(cache_key.clone(), entry);
        };

        if let (Some(account), Some(digest)) = (&account, app_password::digest(self.key(), secret)) {
            let passwords = self.store().app_passwords(&account.id).await?;
            let matched = passwords
                .iter()
                .find(|(_, stored)| bool::from(stored.as_bytes().ct_eq(digest.as_bytes())));
            if let Some((password, _)) = matched {
                if now - password.last_used_at >= TOUCH_EVERY {
                    self.store()
                        .touch_app_password(&password.id, now, &source_ip.to_string())
                        .await?;
                }
                remember(account, Some(password.id.clone()));
                return Ok(account.clone());
            }
        }

        // The account password, only without two-step verification.
        let keys = vec![
            ThrottleKey::ProtocolLogin(token_hash(&login.to_lowercase())[..32].to_owned()),
            ThrottleKey::ProtocolNetwork(network_of(source_ip)),
        ];
        let sources = crate::service::hash_sources(source_ip, account.as_ref(), &keys[0]);
        let Some(_ticket) = self.hasher().admit(&[&sources[0], &sources[1]]).await else {
            return Err(ProtocolAuthError::TooManyAttempts {
                retry_after: crate::attempt::BUSY_RETRY,
            });
        };
        let attempt = match crate::attempt::reserve(self.store_arc(), keys, now).await? {
            Ok(attempt) => attempt,
            Err(retry_after) => return Err(ProtocolAuthError::TooManyAttempts { retry_after }),
        };
        let usable = match &account {
            Some(a) => Challenge::for_factors(&self.store().second_factors(&a.id).await?, None)
                .is_none()
                .then_some(a.password_hash.as_str()),
            None => None,
        };
        // Unknown logins and 2FA accounts verify against the dummy hash:
        // the same time and the same answer.
        if self.hasher().verify(secret, usable).await
            && let Some(account) = account
        {
            attempt.succeeded().await?;
            self.refuse_if_password_blocked(&account, source_ip).await?;
            remember(&account, None);
            return Ok(account);
        }
        attempt.failed(|| self.now()).await?;
        if let Some(account) = &account {
            let client = ClientInfo {
                ip: source_ip,
                user_agent: String::new(),
            };
            let shown: String = login.chars().take(100).collect();
            self.record(&account.id, EventKind::ProtocolSignInFailed, &client, &shown)
                .await?;
        }
        Err(ProtocolAuthError::InvalidCredentials)
    }

    /// Refuses the account password (right as it is) while an
    /// organization's two-step requirement blocks the account, and
    /// records it in the member's security activity.
    async fn refuse_if_password_blocked(&self, account: &Account, source_ip: IpAddr) -> Result<(), ProtocolAuthError> {
        let Some(requirement) = self.two_factor_requirement(account).await? else {
            return Ok(());
        };
        if !requirement.blocked {
            return Ok(());
        }
        let client = ClientInfo {
            ip: source_ip,
            user_agent: String::new(),
        };
        self.record(
            &account.id,
            EventKind::ProtocolPasswordBlocked,
            &client,
            &requirement.org_name,
        )
        .await?;
        Err(ProtocolAuthError::TwoFactorRequired {
            organization: requirement.org_name,
        })
    }

    /// Creates an application password; returns it with its one-time
    /// plaintext, formatted for typing.
    pub async fn create_app_password(
        &self,
        account: &Account,
        name: &str,
        client: &ClientInfo,
    ) -> Result<(AppPassword, String), IdentityError> {
        let name = crate::credential::parse_label(name).ok_or(IdentityError::InvalidName)?;
        let plaintext = app_password::generate();
        let digest = app_password::digest(self.key(), &plaintext).expect("a generated password has the right shape");
        let password = AppPassword {
            id: AppPasswordId::generate(),
            account_id: account.id.clone(),
            name,
            created_at: self.now(),
            last_used_at: 0,
            last_used_ip: String::new(),
        };
        self.store().insert_app_password(&password, &digest).await?;
        self.record(&account.id, EventKind::AppPasswordCreated, client, &password.name)
            .await?;
        self.alert(
            account,
            crate::notices::NoticeKind::AppPasswordCreated,
            client,
            &[("name", &password.name)],
        )
        .await?;
        Ok((password, plaintext))
    }

    pub async fn app_passwords(&self, account_id: &AccountId) -> Result<Vec<AppPassword>, StoreError> {
        let mut list: Vec<AppPassword> = self
            .store()
            .app_passwords(account_id)
            .await?
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        list.sort_by_key(|p| std::cmp::Reverse(p.created_at));
        Ok(list)
    }

    /// Revokes one; `false` if the account has none with that id.
    pub async fn revoke_app_password(
        &self,
        account_id: &AccountId,
        id: &AppPasswordId,
        client: &ClientInfo,
    ) -> Result<bool, StoreError> {
        let Some(name) = self.store().delete_app_password(account_id, id).await? else {
            return Ok(false);
        };
        self.protocol_cache().forget_account(account_id);
        self.record(account_id, EventKind::AppPasswordRevoked, client, &name)
            .await?;
        Ok(true)
    }

    /// Forgets every remembered protocol credential of this process; the
    /// benchmark uses it to measure the uncached path.
    pub fn forget_protocol_credentials(&self) {
        self.protocol_cache().clear();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_tokens_never_look_like_app_passwords() {
        // A session token pasted as a password must not pass the shape test
        // and reach the digest comparison by accident.
        let token = crate::secrets::random_token(32);
        assert!(super::app_password::digest(&crate::secrets::ServerKey::generate(), &token).is_none());
    }
}
