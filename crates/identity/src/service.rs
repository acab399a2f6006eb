//! The identity service: setup, sign-in, sessions, password changes and
//! security activity, over an [`IdentityStore`] and a [`Clock`].

use std::net::IpAddr;
use std::sync::Arc;

use crate::access::Access;
use crate::account::{Account, AccountId, NewAccount, parse_name};
use crate::attempt::ThrottleKey;
use crate::audit::{EventKind, SecurityEvent};
use crate::clock::{Clock, Millis};
use crate::email::EmailAddress;
use crate::org::{Membership, NewOrganization, OrgId, Organization, Role, RoleError};
use crate::password::{PasswordHasher, PasswordPolicy, PasswordRejected};
use crate::second_factor::Challenge;
use crate::secrets::{ServerKey, random_token, token_hash};
use crate::session::{RECENT_PASSWORD, Session, SessionId, SessionPolicy, SessionStage, SessionToken};
use crate::softlock::ThrottlePolicy;
use crate::store::{Constraint, EventPage, ExpiryCutoffs, IdentityStore, StoreError, ThrottleRelease};
use crate::sync_user_id::SyncUserId;

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub session: SessionPolicy,
    pub setup_link_lifetime: Millis,
    /// The issuer authenticator apps show next to the account.
    pub issuer: String,
    /// Regions (ISO 3166 alpha-2) whose numbers may receive SMS codes.
    pub sms_regions: Vec<String>,
    /// The origin browsers use (`public_url`); the WebAuthn relying party.
    pub public_origin: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            session: SessionPolicy::default(),
            setup_link_lifetime: 3_600_000,
            issuer: "cloudkeep".to_owned(),
            sms_regions: crate::credential::sms::DEFAULT_REGIONS
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
            public_origin: "http://localhost".to_owned(),
        }
    }
}

/// Where a request comes from, as recorded in sessions and activity.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: String,
}

impl ClientInfo {
    fn user_agent(&self) -> String {
        self.user_agent.chars().take(300).collect()
    }
}

pub struct SignIn {
    pub email: String,
    pub password: String,
    pub remember: bool,
    pub client: ClientInfo,
    /// The device cookie this browser got at an earlier sign-in, if any.
    pub device: Option<String>,
}

#[derive(Debug)]
pub struct SignedIn {
    pub token: SessionToken,
    pub session: Session,
    pub account: Account,
    /// To set (or renew) as the browser's device cookie; only once the
    /// session is fully signed in.
    pub device_cookie: Option<String>,
    /// When two-step verification is on: the session waits for one of
    /// these methods before it is signed in.
    pub second_factor: Option<Challenge>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("too many attempts; retry in {retry_after} ms")]
    TooManyAttempts { retry_after: Millis },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Password(#[from] PasswordRejected),
    #[error("'{0}' is not an email address")]
    InvalidEmail(String),
    #[error("a name has 1 to 100 characters")]
    InvalidName,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("an organization with this name already exists")]
    OrganizationNameTaken,
    #[error("no organization is named '{0}'")]
    UnknownOrganization(String),
    #[error("this setup link is not valid: it was used, has expired, or setup is done")]
    SetupUnavailable,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("too many attempts; retry in {retry_after} ms")]
    TooManyAttempts { retry_after: Millis },
    #[error("confirm your password first")]
    PasswordRequired,
    #[error("the code is wrong or has expired")]
    WrongCode,
    #[error("two-step verification is off")]
    TwoFactorOff,
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Sms(#[from] crate::sms::SmsError),
    #[error("the device key must be a 32-byte Ed25519 public key, base64url")]
    InvalidDeviceKey,
    #[error("security keys need the server's public address to be a domain name (public_url)")]
    SecurityKeysUnavailable,
    #[error("the security key was not accepted: {0}")]
    SecurityKeyRefused(String),
    #[error("this security email cannot be turned off")]
    MailRequired,
    #[error(transparent)]
    Role(#[from] RoleError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for IdentityError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(Constraint::Email) => Self::EmailTaken,
            StoreError::Conflict(Constraint::OrganizationName) => Self::OrganizationNameTaken,
            StoreError::SetupUnavailable => Self::SetupUnavailable,
            other => Self::Store(other),
        }
    }
}

pub struct SetupRequest {
    pub organization: String,
    pub name: String,
    pub email: String,
    pub password: String,
    /// The language the setup page was read in: the account's emails
    /// (the first is about this very sign-in) are written in it.
    pub lang: String,
}

#[derive(Clone)]
pub struct Identity {
    store: Arc<dyn IdentityStore>,
    clock: Arc<dyn Clock>,
    hasher: PasswordHasher,
    key: ServerKey,
    config: IdentityConfig,
    protocol_cache: Arc<crate::protocol::Cache>,
    sms: Arc<dyn crate::sms_gateway::SmsGateway>,
    webauthn: Option<Arc<webauthn_rs::prelude::Webauthn>>,
    signals: Arc<crate::signals::Signals>,
    push: Option<Arc<dyn crate::push::PushNotifier>>,
    policies: Arc<crate::org_admin::PolicyCache>,
}

const DEVICE_PURPOSE: &str = "device-cookie";

impl Identity {
    pub fn new(
        store: Arc<dyn IdentityStore>,
        clock: Arc<dyn Clock>,
        hasher: PasswordHasher,
        key: ServerKey,
        config: IdentityConfig,
    ) -> Self {
        let webauthn = url::Url::parse(&config.public_origin)
            .ok()
            .and_then(|origin| crate::security_key::relying_party(&origin, &config.issuer))
            .map(Arc::new);
        Self {
            webauthn,
            store,
            clock,
            hasher,
            key,
            config,
            protocol_cache: Arc::default(),
            sms: Arc::new(crate::sms_gateway::NoSmsGateway),
            signals: Arc::default(),
            push: None,
            policies: Arc::default(),
        }
    }

    pub(crate) fn policy_cache(&self) -> &crate::org_admin::PolicyCache {
        &self.policies
    }

    /// Also tells devices about approval requests through `notifier` (a
    /// push provider), besides their own long polls.
    pub fn with_push_notifier(mut self, notifier: Arc<dyn crate::push::PushNotifier>) -> Self {
        self.push = Some(notifier);
        self
    }

    pub(crate) fn push_notifier(&self) -> Option<&Arc<dyn crate::push::PushNotifier>> {
        self.push.as_ref()
    }

    /// This process's wake-ups; the store's listener feeds other
    /// processes' signals into it.
    pub fn signals(&self) -> &Arc<crate::signals::Signals> {
        &self.signals
    }

    /// Sends SMS codes through `gateway`.
    pub fn with_sms_gateway(mut self, gateway: Arc<dyn crate::sms_gateway::SmsGateway>) -> Self {
        self.sms = gateway;
        self
    }

    pub(crate) fn webauthn(&self) -> Option<&webauthn_rs::prelude::Webauthn> {
        self.webauthn.as_deref()
    }

    pub(crate) fn sms_gateway(&self) -> &dyn crate::sms_gateway::SmsGateway {
        self.sms.as_ref()
    }

    /// The countries whose numbers may receive SMS codes.
    pub fn sms_regions(&self) -> &[String] {
        &self.config.sms_regions
    }

    pub(crate) fn store(&self) -> &dyn IdentityStore {
        self.store.as_ref()
    }

    pub(crate) fn store_arc(&self) -> &Arc<dyn IdentityStore> {
        &self.store
    }

    pub(crate) fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    pub(crate) fn protocol_cache(&self) -> &crate::protocol::Cache {
        &self.protocol_cache
    }

    pub(crate) fn issuer(&self) -> &str {
        &self.config.issuer
    }

    pub fn key(&self) -> &ServerKey {
        &self.key
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    pub fn session_policy(&self) -> &SessionPolicy {
        &self.config.session
    }

    pub async fn ready(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    // ---- first start -------------------------------------------------------

    pub async fn needs_setup(&self) -> Result<bool, StoreError> {
        Ok(self.store.count_accounts().await? == 0)
    }

    /// A fresh single-use setup link token; earlier ones stop working.
    pub async fn issue_setup_link(&self) -> Result<String, StoreError> {
        let token = random_token(32);
        let expires = self.now() + self.config.setup_link_lifetime;
        self.store.put_setup_token(&token_hash(&token), expires).await?;
        Ok(token)
    }

    /// Whether the link can still be used: unexpired, unused, and no account
    /// exists yet (`cloudkeep admin` may have created one meanwhile).
    pub async fn setup_link_valid(&self, token: &str) -> Result<bool, StoreError> {
        Ok(self.store.setup_token_valid(&token_hash(token), self.now()).await? && self.needs_setup().await?)
    }

    /// Creates the first organization and its legal representative, and
    /// signs them in.
    pub async fn complete_setup(
        &self,
        token: &str,
        request: SetupRequest,
        client: ClientInfo,
    ) -> Result<SignedIn, IdentityError> {
        if !self.setup_link_valid(token).await? {
            return Err(IdentityError::SetupUnavailable);
        }
        let org = NewOrganization::parse(&request.organization)?;
        let account = self
            .new_account(&request.email, &request.name, &request.password)
            .await?;
        let now = self.now();
        let mut ids = sync_id_candidates();
        let (_org, mut account) = self
            .store
            .complete_setup(&token_hash(token), now, &org, &account, &mut ids)
            .await?;
        let lang = crate::locale::supported(&request.lang);
        if account.lang != lang {
            self.store.set_account_lang(&account.id, lang).await?;
            lang.clone_into(&mut account.lang);
        }
        let opened = self.open_session(account, false, &client, None, Some(EventKind::AccountCreated), &[]);
        Ok(opened.await?)
    }

    // ---- administration ----------------------------------------------------

    pub async fn create_organization(&self, name: &str) -> Result<Organization, IdentityError> {
        let org = NewOrganization::parse(name)?;
        Ok(self
            .store
            .create_organization(&OrgId::generate(), &org, self.now())
            .await?)
    }

    pub async fn create_account(
        &self,
        email: &str,
        name: &str,
        password: &str,
        membership: Option<(&str, Role)>,
    ) -> Result<(Account, Option<Organization>), IdentityError> {
        let org = match membership {
            Some((org_name, _)) => Some(
                self.store
                    .organization_by_name(org_name.trim())
                    .await?
                    .ok_or_else(|| IdentityError::UnknownOrganization(org_name.to_owned()))?,
            ),
            None => None,
        };
        let new = self.new_account(email, name, password).await?;
        let member = org.as_ref().zip(membership).map(|(o, (_, role))| (&o.id, role));
        let account = self
            .store
            .create_account(&new, member, &mut sync_id_candidates())
            .await?;
        Ok((account, org))
    }

    async fn new_account(&self, email: &str, name: &str, password: &str) -> Result<NewAccount, IdentityError> {
        let email = EmailAddress::parse(email).map_err(|e| IdentityError::InvalidEmail(e.0))?;
        let name = parse_name(name).ok_or(IdentityError::InvalidName)?;
        PasswordPolicy.check(password, &email, &name)?;
        if self.store.account_by_email(&email).await?.is_some() {
            return Err(IdentityError::EmailTaken);
        }
        Ok(NewAccount {
            id: AccountId::generate(),
            email,
            name,
            password_hash: self.hasher.hash(password).await,
            created_at: self.now(),
        })
    }

    // ---- sign-in -----------------------------------------------------------

    pub async fn sign_in(&self, request: SignIn) -> Result<SignedIn, SignInError> {
        let email = EmailAddress::parse(&request.email).ok();
        let login = ThrottleKey::Login(
            token_hash(
                &email
                    .as_ref()
                    .map_or_else(|| request.email.trim().to_lowercase(), |e| e.to_string()),
            )[..32]
                .to_owned(),
        );
        let network = ThrottleKey::Network(network_of(request.client.ip));
        // The device a cookie names is only known to be this account's once
        // the account is read, so its key is read beside the login's, in
        // the same query as the account and its methods.
        let cookie_device = request
            .device
            .as_deref()
            .and_then(|cookie| cookie.split_once('.'))
            .map(|(device, _)| ThrottleKey::Device(device.to_owned()));
        let keys: Vec<String> = [Some(&login), Some(&network), cookie_device.as_ref()]
            .into_iter()
            .flatten()
            .map(ThrottleKey::stored)
            .collect();
        let stored: Vec<&str> = keys.iter().map(String::as_str).collect();
        let context = self.store.sign_in_context(email.as_ref(), &stored).await?;
        let mut records = context.throttles.into_iter();
        let login_record = records.next().flatten();
        let network_record = records.next().flatten();
        let device_record = records.next().flatten();
        let account = context.account;
        let known_device = account
            .as_ref()
            .zip(request.device.as_deref())
            .and_then(|(a, cookie)| self.device_id(&a.id, cookie));
        // A known device's key stands for the person; otherwise the login's.
        let (person_key, person_record) = match (&known_device, cookie_device) {
            (Some(_), Some(device)) => (device, device_record),
            _ => (login, login_record),
        };

        // Refused at once, before the hash, when this network or account
        // already has its share of the hashing threads and its queue full.
        let sources = hash_sources(request.client.ip, account.as_ref(), &person_key);
        let Some(_ticket) = self.hasher.admit(&[&sources[0], &sources[1]]).await else {
            return Err(SignInError::TooManyAttempts {
                retry_after: crate::attempt::BUSY_RETRY,
            });
        };
        let attempt = crate::attempt::reserve_read(
            &self.store,
            vec![(person_key.stored(), person_key), (network.stored(), network)],
            vec![person_record, network_record],
            self.now(),
        )
        .await?;
        let attempt = match attempt {
            Ok(attempt) => attempt,
            Err(retry_after) => return Err(SignInError::TooManyAttempts { retry_after }),
        };

        let verified = self
            .hasher
            .verify(&request.password, account.as_ref().map(|a| a.password_hash.as_str()))
            .await;
        let account = match account {
            Some(account) if verified => account,
            other => {
                let locked_for = attempt.failed(|| self.now()).await?;
                if let Some(account) = other {
                    self.record(&account.id, EventKind::SignInFailed, &request.client, "")
                        .await?;
                    if let Some(ms) = locked_for {
                        let detail = (ms / 1000).to_string();
                        self.record(&account.id, EventKind::SignInLocked, &request.client, &detail)
                            .await?;
                    }
                }
                return Err(SignInError::InvalidCredentials);
            }
        };
        // Success forgets this person's failures, but not the network's: one
        // valid account must not let a machine reset its own counter.
        let releases = attempt.releases();
        let Some(challenge) = Challenge::for_factors(&context.factors, account.default_method) else {
            let opened = self.open_session(
                account,
                request.remember,
                &request.client,
                known_device,
                Some(EventKind::SignIn),
                &releases,
            );
            return Ok(opened.await?);
        };
        // Half signed in: the session waits for the second factor; the
        // sign-in is recorded when it comes.
        let mut pending = self
            .open_session(account, request.remember, &request.client, None, None, &releases)
            .await?;
        pending.second_factor = Some(challenge);
        Ok(pending)
    }

    /// Opens a session and records `kind` with it, in one write. Without
    /// `kind`, the session only passed the password and awaits a second
    /// factor.
    async fn open_session(
        &self,
        account: Account,
        remember: bool,
        client: &ClientInfo,
        device: Option<String>,
        kind: Option<EventKind>,
        releases: &[ThrottleRelease],
    ) -> Result<SignedIn, StoreError> {
        let now = self.now();
        let token = SessionToken(random_token(32));
        let session = Session {
            id: SessionId::generate(),
            account_id: account.id.clone(),
            created_at: now,
            last_seen_at: now,
            remember,
            ip: client.ip.to_string(),
            user_agent: client.user_agent(),
            stage: if kind.is_some() {
                SessionStage::SignedIn
            } else {
                SessionStage::SecondFactor
            },
            password_at: now,
            factor_failures: 0,
        };
        let event = kind.map(|kind| self.event(&account.id, kind, client, ""));
        let hash = token_hash(&token.0);
        self.store
            .insert_session(&session, &hash, event.as_ref(), releases)
            .await?;
        if kind.is_some() && device.is_none() {
            self.alert(&account, crate::notices::NoticeKind::NewDevice, client, &[])
                .await?;
        }
        let device_cookie = kind.map(|_| self.device_cookie(&account.id, device));
        Ok(SignedIn {
            token,
            session,
            account,
            device_cookie,
            second_factor: None,
        })
    }

    /// A device cookie for this account: the browser's own when it is
    /// valid, else a new device.
    pub(crate) fn device_cookie(&self, account_id: &AccountId, known: Option<String>) -> String {
        let device = known.unwrap_or_else(|| random_token(16));
        format!("{device}.{}", self.device_digest(account_id, &device))
    }

    /// The device id of a browser's device cookie, when it is valid for
    /// this account.
    pub fn known_device(&self, account_id: &AccountId, cookie: Option<&str>) -> Option<String> {
        self.device_id(account_id, cookie?)
    }

    fn device_digest(&self, account_id: &AccountId, device: &str) -> String {
        self.key
            .digest(DEVICE_PURPOSE, format!("{account_id}\n{device}").as_bytes())
    }

    /// The device id in a device cookie, if the cookie was issued by this
    /// server for this account.
    fn device_id(&self, account_id: &AccountId, cookie: &str) -> Option<String> {
        let (device, digest) = cookie.split_once('.')?;
        let message = format!("{account_id}\n{device}");
        self.key
            .verify(DEVICE_PURPOSE, message.as_bytes(), digest)
            .then(|| device.to_owned())
    }

    // ---- sessions ----------------------------------------------------------

    /// The live session and account behind a cookie token, and what the
    /// session may do now, refreshing its last-seen time now and then.
    /// Expired sessions are deleted.
    pub async fn session(
        &self,
        token: &str,
        client: &ClientInfo,
    ) -> Result<Option<(Session, Account, Access)>, StoreError> {
        let Some((session, account)) = self.store.session_by_token_hash(&token_hash(token)).await? else {
            return Ok(None);
        };
        let Some(session) = self.live_session(session, client).await? else {
            return Ok(None);
        };
        let access = match session.stage {
            SessionStage::SignedIn => Access::signed_in(self.two_factor_requirement(&account).await?),
            SessionStage::SecondFactor => Access::SecondStep,
        };
        Ok(Some((session, account, access)))
    }

    /// `session` unless it has expired (then it is deleted), its last-seen
    /// time refreshed now and then.
    pub(crate) async fn live_session(
        &self,
        mut session: Session,
        client: &ClientInfo,
    ) -> Result<Option<Session>, StoreError> {
        let now = self.now();
        if !self.config.session.is_live(&session, now) {
            self.store.delete_session(&session.account_id, &session.id).await?;
            return Ok(None);
        }
        if self.config.session.needs_touch(&session, now) {
            session.last_seen_at = now;
            session.ip = client.ip.to_string();
            self.store.touch_session(&session.id, now, &session.ip).await?;
        }
        Ok(Some(session))
    }

    pub async fn sign_out(&self, session: &Session, client: &ClientInfo) -> Result<(), StoreError> {
        self.store.delete_session(&session.account_id, &session.id).await?;
        self.record(&session.account_id, EventKind::SignOut, client, "").await
    }

    pub async fn sessions(&self, account_id: &AccountId) -> Result<Vec<Session>, StoreError> {
        let now = self.now();
        let mut sessions = self.store.sessions_of(account_id).await?;
        sessions.retain(|s| self.config.session.is_live(s, now));
        sessions.sort_by_key(|s| std::cmp::Reverse(s.last_seen_at));
        Ok(sessions)
    }

    /// Ends one of the account's sessions; `false` if there was none.
    pub async fn revoke_session(
        &self,
        account_id: &AccountId,
        id: &SessionId,
        client: &ClientInfo,
    ) -> Result<bool, StoreError> {
        let existed = self.store.delete_session(account_id, id).await?;
        if existed {
            let short: String = id.as_str().chars().take(8).collect();
            self.record(account_id, EventKind::SessionRevoked, client, &short)
                .await?;
        }
        Ok(existed)
    }

    /// Changes the password after checking the current one, and ends every
    /// other session of the account.
    pub async fn change_password(
        &self,
        session: &Session,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<(), IdentityError> {
        let account = self
            .store
            .account_by_id(&session.account_id)
            .await?
            .ok_or(IdentityError::WrongPassword)?;
        self.check_password(&account, current).await?;
        PasswordPolicy.check(new, &account.email, &account.name)?;
        let hash = self.hasher.hash(new).await;
        self.store.set_password(&account.id, &hash, self.now()).await?;
        self.store.delete_sessions_except(&account.id, &session.id).await?;
        self.protocol_cache.forget_account(&account.id);
        self.record(&account.id, EventKind::PasswordChanged, client, "").await?;
        self.alert(&account, crate::notices::NoticeKind::PasswordChanged, client, &[])
            .await?;
        Ok(())
    }

    /// Deletes expired sessions, used-up setup links and forgotten throttle
    /// keys. Idempotent: several processes may run it at once.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = self.now();
        let policy = &self.config.session;
        let cutoffs = ExpiryCutoffs {
            now,
            idle_before: now - policy.idle,
            remembered_idle_before: now - policy.remembered_idle,
            created_before: now - policy.absolute,
            throttle_failure_before: now - ThrottlePolicy::LONGEST_MEMORY,
        };
        self.store.purge_expired(cutoffs).await
    }

    /// Checks the account password given to confirm a sensitive change,
    /// throttled like sign-in so a stolen session cannot guess it.
    pub(crate) async fn check_password(&self, account: &Account, password: &str) -> Result<(), IdentityError> {
        let sources = hash_sources_of_account(account);
        let Some(_ticket) = self.hasher.admit(&[&sources]).await else {
            return Err(IdentityError::TooManyAttempts {
                retry_after: crate::attempt::BUSY_RETRY,
            });
        };
        let keys = vec![ThrottleKey::PasswordCheck(account.id.clone())];
        let attempt = match crate::attempt::reserve(&self.store, keys, self.now()).await? {
            Ok(attempt) => attempt,
            Err(retry_after) => return Err(IdentityError::TooManyAttempts { retry_after }),
        };
        if !self.hasher.verify(password, Some(&account.password_hash)).await {
            attempt.failed(|| self.now()).await?;
            return Err(IdentityError::WrongPassword);
        }
        attempt.succeeded().await?;
        Ok(())
    }

    /// For a sensitive change: the password given now, or one given in this
    /// session in the last five minutes.
    pub(crate) async fn confirm_password(
        &self,
        session: &Session,
        account: &Account,
        password: Option<&str>,
    ) -> Result<(), IdentityError> {
        match password.filter(|p| !p.is_empty()) {
            Some(password) => {
                self.check_password(account, password).await?;
                self.store.set_password_at(&session.id, self.now()).await?;
                Ok(())
            }
            None if self.now() - session.password_at < RECENT_PASSWORD => Ok(()),
            None => Err(IdentityError::PasswordRequired),
        }
    }

    /// Whether an account uses this email.
    pub async fn account_exists(&self, email: &EmailAddress) -> Result<bool, StoreError> {
        Ok(self.store.account_by_email(email).await?.is_some())
    }

    /// The account with this id, if it still exists.
    pub async fn account_by_id(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        self.store.account_by_id(id).await
    }

    pub async fn memberships(&self, account_id: &AccountId) -> Result<Vec<Membership>, StoreError> {
        self.store.memberships(account_id).await
    }

    // ---- activity ----------------------------------------------------------

    pub async fn events(
        &self,
        account_id: &AccountId,
        before: Option<&str>,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        let limit = limit.clamp(1, 200);
        let mut events = self.store.events(account_id, before, limit + 1).await?;
        let next = if events.len() > limit as usize {
            events.truncate(limit as usize);
            events.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    pub(crate) fn event(
        &self,
        account_id: &AccountId,
        kind: EventKind,
        client: &ClientInfo,
        detail: &str,
    ) -> SecurityEvent {
        SecurityEvent {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: account_id.to_owned(),
            at: self.now(),
            kind,
            ip: client.ip.to_string(),
            user_agent: client.user_agent(),
            detail: detail.to_owned(),
        }
    }

    pub(crate) async fn record(
        &self,
        account_id: &AccountId,
        kind: EventKind,
        client: &ClientInfo,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.store
            .record_event(&self.event(account_id, kind, client, detail))
            .await
    }
}

/// Whom a password verification is for, for the hashing threads' shares
/// ([`PasswordHasher::admit`]): the source network, and the account (or,
/// when no account has that login, the throttle key standing for it).
pub(crate) fn hash_sources(ip: IpAddr, account: Option<&Account>, unknown: &ThrottleKey) -> [String; 2] {
    let person = account.map_or_else(|| unknown.stored(), hash_sources_of_account);
    [format!("net:{}", network_of(ip)), person]
}

fn hash_sources_of_account(account: &Account) -> String {
    format!("account:{}", account.id)
}

/// The throttling unit for an address: the address itself for IPv4, its /64
/// for IPv6 (one subscriber usually holds a whole /64).
pub(crate) fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn sync_id_candidates() -> impl Iterator<Item = SyncUserId> + Send {
    std::iter::repeat_with(|| SyncUserId::random(&mut rand::thread_rng())).take(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_are_throttled_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(network_of(a), network_of(b));
        assert_eq!(network_of("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(network_of("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
