//! What the identity service needs from persistence. The SQL adapter lives
//! in the `store` crate; the domain never sees SQL.

use crate::{AppPasswordId, ApprovalRequestId, FactorId};
use async_trait::async_trait;

use crate::account::{Account, AccountId, NewAccount};
use crate::audit::SecurityEvent;
use crate::clock::Millis;
use crate::credential::app_password::AppPassword;
use crate::credential::sms::SmsCode;
use crate::email::EmailAddress;
use crate::notices::{Notice, NoticeKind};
use crate::org::{Membership, NewOrganization, OrgId, Organization, Role};
use crate::org_admin::{Invitation, MemberSummary, MembershipChange, OrgEvent, OrgPolicy};
use crate::push::{ApprovalRequest, ApprovalStatus};
use crate::second_factor::SecondFactor;
use crate::session::{Session, SessionId};
use crate::softlock::ThrottleState;
use crate::sync_user_id::SyncUserId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was hit.
    #[error("{0} is already taken")]
    Conflict(Constraint),
    /// The setup link is unknown, used or expired, or setup already happened.
    #[error("setup is not possible with this link")]
    SetupUnavailable,
    /// The database aborted the transaction to break a deadlock or a
    /// serialization conflict, as its own error code says: running the
    /// whole transaction again will likely succeed.
    #[error("storage error, worth another try: {0}")]
    Retryable(String),
    /// Something stored does not read: it does not decrypt, parse, or hold
    /// a value the domain allows.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("storage error: {0}")]
    Backend(String),
}

/// The uniqueness rules a write can hit, named for the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    /// An account with this email address exists.
    Email,
    /// An organization with this name (in any case) exists.
    OrganizationName,
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Constraint::Email => "email",
            Constraint::OrganizationName => "org_name",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRecord {
    pub state: ThrottleState,
    /// Bumped on every write; updates compare it so that two processes
    /// counting failures at once never lose one.
    pub version: i64,
}

/// One attempt to reserve on a throttle key; see
/// [`ThrottleStore::reserve_throttle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleReservation {
    /// The version the room was computed from (0 when there was no row).
    pub version: i64,
    /// How many attempts may be in flight at once, this one included
    /// ([`ThrottlePolicy::open_attempts`](crate::softlock::ThrottlePolicy::open_attempts)).
    pub open: u32,
    pub now: Millis,
    /// Reservations made at or before this were never settled (their
    /// process died) and no longer hold room.
    pub lapsed_before: Millis,
}

/// A reserved attempt that did not fail: it gives its room back, and
/// `forget` (a success) also forgets the key's failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleRelease {
    pub key: String,
    pub forget: bool,
}

/// What a second sign-in step reads before it checks a code: the
/// account's second-factor throttle record and its methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepContext {
    pub throttle: Option<ThrottleRecord>,
    /// Active and pending ones, oldest first.
    pub factors: Vec<SecondFactor>,
}

/// What a password sign-in reads before it checks the password.
#[derive(Debug, Clone)]
pub struct SignInContext {
    /// The account with the email given, if any.
    pub account: Option<Account>,
    /// Its second-step methods, active and pending, oldest first.
    pub factors: Vec<SecondFactor>,
    /// The throttle records of the keys asked for, in their order.
    pub throttles: Vec<Option<ThrottleRecord>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<SecurityEvent>,
    /// Pass as `before` to get the next (older) page.
    pub next: Option<String>,
}

/// What has expired, as computed by the identity service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryCutoffs {
    pub now: Millis,
    /// Sessions without "keep me signed in" last seen at or before this.
    pub idle_before: Millis,
    /// Remembered sessions last seen at or before this.
    pub remembered_idle_before: Millis,
    /// Any session created at or before this.
    pub created_before: Millis,
    /// Unlocked throttle keys whose last failure is at or before this.
    pub throttle_failure_before: Millis,
}

/// What a second step presents, to be consumed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondStepProof {
    /// A TOTP step of an active factor.
    TotpStep { factor_id: FactorId, step: i64 },
    /// A backup code's digest.
    BackupCode { account_id: AccountId, digest: String },
    /// The digest of the SMS code waiting for a factor (unexpired, tries
    /// left).
    SmsCode { factor_id: FactorId, digest: String },
    /// A security key's answer to the session's challenge: consumes the
    /// challenge and stores the key's updated state and counter.
    SecurityKey {
        factor_id: FactorId,
        secret: String,
        counter: i64,
    },
    /// A push request of this session, approved on the device
    /// `factor_id`: becomes used.
    Push {
        request_id: ApprovalRequestId,
        factor_id: FactorId,
    },
}

pub type SyncIds<'a> = &'a mut (dyn Iterator<Item = SyncUserId> + Send);

/// Everything the identity service keeps, one trait per aggregate so that
/// each part of the store (and its SQL) stands on its own; a store is all
/// of them, and callers hold an `Arc<dyn IdentityStore>`.
pub trait IdentityStore:
    AccountStore
    + SessionStore
    + FactorStore
    + OrgStore
    + PushStore
    + AppPasswordStore
    + ThrottleStore
    + OutboxStore
    + EventStore
    + UpkeepStore
{
}

impl<
    T: AccountStore
        + SessionStore
        + FactorStore
        + OrgStore
        + PushStore
        + AppPasswordStore
        + ThrottleStore
        + OutboxStore
        + EventStore
        + UpkeepStore,
> IdentityStore for T
{
}

/// Accounts: the first setup, sign-up, look-ups, password, language and default second step.
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn count_accounts(&self) -> Result<i64, StoreError>;
    /// Replaces every earlier setup link with this one.
    async fn put_setup_token(&self, hash: &str, expires_at: Millis) -> Result<(), StoreError>;
    async fn setup_token_valid(&self, hash: &str, now: Millis) -> Result<bool, StoreError>;
    /// In one transaction: consumes the setup link, checks that no account
    /// exists, creates the organization, the account and its
    /// legal-representative membership.
    async fn complete_setup(
        &self,
        token_hash: &str,
        now: Millis,
        org: &NewOrganization,
        account: &NewAccount,
        sync_ids: SyncIds<'_>,
    ) -> Result<(Organization, Account), StoreError>;
    /// Creates the account (reserving the first free sync user id that
    /// `sync_ids` yields) and, when given, its membership, atomically.
    async fn create_account(
        &self,
        account: &NewAccount,
        membership: Option<(&OrgId, Role)>,
        sync_ids: SyncIds<'_>,
    ) -> Result<Account, StoreError>;
    async fn account_by_email(&self, email: &EmailAddress) -> Result<Option<Account>, StoreError>;
    async fn account_by_id(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;
    async fn account_by_sync_user_id(&self, id: &SyncUserId) -> Result<Option<Account>, StoreError>;
    async fn memberships(&self, account_id: &AccountId) -> Result<Vec<Membership>, StoreError>;
    async fn set_password(&self, account_id: &AccountId, hash: &str, now: Millis) -> Result<(), StoreError>;
    /// The second-factor kind offered first at sign-in ("" for none).
    async fn default_method(&self, account_id: &AccountId) -> Result<String, StoreError>;
    async fn set_default_method(&self, account_id: &AccountId, kind: &str) -> Result<(), StoreError>;
    async fn set_account_lang(&self, account_id: &AccountId, lang: &str) -> Result<(), StoreError>;
}

/// Sessions: signed in, half signed in (waiting for a second step), and what finishes one.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// In one transaction: stores the session, records `event` when given,
    /// and settles the sign-in's reserved attempts (`releases`).
    async fn insert_session(
        &self,
        session: &Session,
        token_hash: &str,
        event: Option<&SecurityEvent>,
        releases: &[ThrottleRelease],
    ) -> Result<(), StoreError>;
    /// The session with this token hash and its account, in one query: it
    /// runs on every signed-in request.
    async fn session_by_token_hash(&self, hash: &str) -> Result<Option<(Session, Account)>, StoreError>;
    /// [`session_by_token_hash`](Self::session_by_token_hash) together
    /// with the [`StepContext`] of its account, its throttle record being
    /// the one under `throttle_prefix` followed by the account id: one
    /// query for the request that brings a second-step code.
    async fn session_with_step_context(
        &self,
        hash: &str,
        throttle_prefix: &str,
    ) -> Result<Option<(Session, Account, StepContext)>, StoreError>;
    /// The [`SignInContext`] of a password sign-in, in one query: the
    /// account with `email` (none for `None`) with its methods, and the
    /// throttle records of `keys`.
    async fn sign_in_context(&self, email: Option<&EmailAddress>, keys: &[&str]) -> Result<SignInContext, StoreError>;
    async fn touch_session(&self, id: &SessionId, now: Millis, ip: &str) -> Result<(), StoreError>;
    async fn sessions_of(&self, account_id: &AccountId) -> Result<Vec<Session>, StoreError>;
    /// Whether a session of that account with that id existed.
    async fn delete_session(&self, account_id: &AccountId, id: &SessionId) -> Result<bool, StoreError>;
    async fn delete_sessions_except(&self, account_id: &AccountId, keep: &SessionId) -> Result<u64, StoreError>;
    /// In one transaction: consumes `proof` (a TOTP step above the
    /// factor's counter, or an unused backup code), signs the half-signed-in
    /// session in under a new token, and records `event`. `false`, with
    /// nothing changed, when the proof was already used (even a moment ago
    /// by a concurrent request) or the session is not waiting.
    async fn complete_second_step(
        &self,
        session_id: &SessionId,
        token_hash: &str,
        now: Millis,
        event: &SecurityEvent,
        proof: &SecondStepProof,
    ) -> Result<bool, StoreError>;
    /// Counts a wrong second-step code; returns the session's new total.
    async fn count_factor_failure(&self, id: &SessionId) -> Result<u32, StoreError>;
    async fn set_password_at(&self, id: &SessionId, now: Millis) -> Result<(), StoreError>;
}

/// Second factors and what each kind keeps on the side: backup codes, SMS codes, authenticator links, WebAuthn challenges.
#[async_trait]
pub trait FactorStore: Send + Sync {
    async fn insert_second_factor(&self, factor: &SecondFactor) -> Result<(), StoreError>;
    /// Active and pending ones.
    async fn second_factors(&self, account_id: &AccountId) -> Result<Vec<SecondFactor>, StoreError>;
    /// One factor by id, whatever its account.
    async fn second_factor(&self, id: &FactorId) -> Result<Option<SecondFactor>, StoreError>;
    /// The throttle record under `key` and the account's factors (as
    /// [`second_factors`](Self::second_factors)), in one query: what every
    /// second sign-in step reads first.
    async fn step_context(&self, key: &str, account_id: &AccountId) -> Result<StepContext, StoreError>;
    /// In one transaction: activates a pending, unexpired factor with its
    /// first accepted `counter`, and when `backup_codes` are given, makes
    /// them the account's backup codes. `false` if there was no such
    /// pending factor.
    async fn activate_second_factor(
        &self,
        account_id: &AccountId,
        id: &FactorId,
        now: Millis,
        counter: i64,
        backup_codes: Option<&[String]>,
    ) -> Result<bool, StoreError>;
    /// In one transaction: deletes the factor and, when no active factor is
    /// left, the backup codes. `None` if there was no such factor, else how
    /// many active factors remain.
    async fn delete_second_factor(&self, account_id: &AccountId, id: &FactorId) -> Result<Option<usize>, StoreError>;
    async fn replace_backup_codes(
        &self,
        account_id: &AccountId,
        digests: &[String],
        now: Millis,
    ) -> Result<(), StoreError>;
    async fn unused_backup_codes(&self, account_id: &AccountId) -> Result<Vec<String>, StoreError>;
    /// Keeps backup codes (sealed) for the console to show once.
    async fn put_linked_backup_codes(
        &self,
        factor_id: &FactorId,
        account_id: &AccountId,
        sealed: &str,
        expires_at: Millis,
    ) -> Result<(), StoreError>;
    /// Takes (deletes) the unexpired sealed codes waiting for a factor.
    async fn take_linked_backup_codes(
        &self,
        factor_id: &FactorId,
        account_id: &AccountId,
        now: Millis,
    ) -> Result<Option<String>, StoreError>;
    /// In one transaction: makes `code` the one waiting for its factor
    /// (replacing any earlier one) and records the message in the send log.
    async fn put_sms_code(&self, code: &SmsCode, account_id: &AccountId, number_digest: &str)
    -> Result<(), StoreError>;
    async fn sms_code(&self, factor_id: &FactorId) -> Result<Option<SmsCode>, StoreError>;
    /// Times of the messages sent since `since` to this number and for this
    /// account.
    async fn sms_sends(
        &self,
        account_id: &AccountId,
        number_digest: &str,
        since: Millis,
    ) -> Result<(Vec<Millis>, Vec<Millis>), StoreError>;
    /// Counts a wrong try against the waiting code.
    async fn sms_code_failed(&self, factor_id: &FactorId) -> Result<(), StoreError>;
    /// Consumes the waiting code if it matches (for confirming an
    /// enrolment); `false` if not, or already used.
    async fn consume_sms_code(&self, factor_id: &FactorId, digest: &str, now: Millis) -> Result<bool, StoreError>;
    async fn put_authenticator_link(
        &self,
        token_hash: &str,
        factor_id: &FactorId,
        account_id: &AccountId,
        expires_at: Millis,
    ) -> Result<(), StoreError>;
    /// Consumes an unexpired link: (factor id, account id).
    async fn take_authenticator_link(
        &self,
        token_hash: &str,
        now: Millis,
    ) -> Result<Option<(FactorId, AccountId)>, StoreError>;
    /// Replaces a factor's sealed secret (a security key's state).
    async fn set_factor_secret(&self, factor_id: &FactorId, secret: &str) -> Result<(), StoreError>;
    /// Makes `state` the session's pending WebAuthn challenge.
    async fn put_webauthn_challenge(
        &self,
        session_id: &SessionId,
        state: &str,
        expires_at: Millis,
    ) -> Result<(), StoreError>;
    /// The session's unexpired WebAuthn challenge.
    async fn webauthn_challenge(&self, session_id: &SessionId, now: Millis) -> Result<Option<String>, StoreError>;
}

/// Organizations: members and roles, invitations, the two-step policy, the organization log and security alerts.
#[async_trait]
pub trait OrgStore: Send + Sync {
    async fn create_organization(
        &self,
        id: &OrgId,
        org: &NewOrganization,
        now: Millis,
    ) -> Result<Organization, StoreError>;
    async fn organization_by_name(&self, name: &str) -> Result<Option<Organization>, StoreError>;
    async fn organization(&self, org_id: &OrgId) -> Result<Option<Organization>, StoreError>;
    async fn membership_role(&self, org_id: &OrgId, account_id: &AccountId) -> Result<Option<Role>, StoreError>;
    /// Every member with their active two-step methods count and last
    /// sign-in, by email.
    async fn org_members(&self, org_id: &OrgId) -> Result<Vec<MemberSummary>, StoreError>;
    /// In one transaction, serialized per organization: gives the member
    /// `role` (`None` removes them) unless that leaves no legal
    /// representative; records `event`.
    async fn change_membership(
        &self,
        org_id: &OrgId,
        account_id: &AccountId,
        role: Option<Role>,
        event: &OrgEvent,
    ) -> Result<MembershipChange, StoreError>;
    async fn put_invitation(
        &self,
        token_hash: &str,
        invitation: &Invitation,
        event: &OrgEvent,
    ) -> Result<(), StoreError>;
    async fn invitation(&self, token_hash: &str, now: Millis) -> Result<Option<Invitation>, StoreError>;
    /// The unexpired invitations of an organization, newest first, each
    /// with its token hash.
    async fn org_invitations(&self, org_id: &OrgId, now: Millis) -> Result<Vec<(String, Invitation)>, StoreError>;
    /// In one transaction: deletes the organization's invitation and
    /// records `event` (`false` if it was gone).
    async fn delete_invitation(
        &self,
        org_id: &OrgId,
        token_hash: &str,
        event: Option<&OrgEvent>,
    ) -> Result<bool, StoreError>;
    /// In one transaction: consumes the unexpired invitation and makes the
    /// account a member with its role (`false` if it was gone).
    async fn accept_invitation(
        &self,
        token_hash: &str,
        now: Millis,
        account_id: &AccountId,
        event: &OrgEvent,
    ) -> Result<bool, StoreError>;
    async fn org_policy(&self, org_id: &OrgId) -> Result<Option<OrgPolicy>, StoreError>;
    /// The policies of every organization that requires two-step
    /// verification.
    async fn required_policies(&self) -> Result<Vec<OrgPolicy>, StoreError>;
    async fn set_org_policy(&self, policy: &OrgPolicy, event: &OrgEvent) -> Result<(), StoreError>;
    async fn org_events(&self, org_id: &OrgId, limit: u32) -> Result<Vec<OrgEvent>, StoreError>;
    async fn last_security_alert(&self, org_id: &OrgId, account_id: &AccountId) -> Result<Option<Millis>, StoreError>;
    async fn record_security_alert(
        &self,
        org_id: &OrgId,
        account_id: &AccountId,
        at: Millis,
        event: &OrgEvent,
    ) -> Result<(), StoreError>;
}

/// Push approvals: the requests a linked device answers.
#[async_trait]
pub trait PushStore: Send + Sync {
    /// In one transaction, serialized per account: stores `request` unless
    /// the account already has `max_in_window` requests created after
    /// `window_start` (`false` then).
    async fn insert_approval_request(
        &self,
        request: &ApprovalRequest,
        window_start: Millis,
        max_in_window: usize,
    ) -> Result<bool, StoreError>;
    async fn approval_request(&self, id: &ApprovalRequestId) -> Result<Option<ApprovalRequest>, StoreError>;
    /// The account's requests created after `since`, newest first.
    async fn approval_requests(
        &self,
        account_id: &AccountId,
        since: Millis,
    ) -> Result<Vec<ApprovalRequest>, StoreError>;
    /// In one transaction: answers a request still pending and unexpired
    /// at `now` (`false` otherwise); a denial also ends its half-signed-in
    /// session and records `event`.
    async fn answer_approval_request(
        &self,
        request: &ApprovalRequest,
        status: ApprovalStatus,
        factor_id: &FactorId,
        now: Millis,
        event: Option<&SecurityEvent>,
    ) -> Result<bool, StoreError>;
}

/// Application passwords, for clients that cannot do a second step.
#[async_trait]
pub trait AppPasswordStore: Send + Sync {
    async fn insert_app_password(&self, password: &AppPassword, digest: &str) -> Result<(), StoreError>;
    /// The account's application passwords with their digests.
    async fn app_passwords(&self, account_id: &AccountId) -> Result<Vec<(AppPassword, String)>, StoreError>;
    /// The deleted password's name, if it existed.
    async fn delete_app_password(
        &self,
        account_id: &AccountId,
        id: &AppPasswordId,
    ) -> Result<Option<String>, StoreError>;
    async fn touch_app_password(&self, id: &AppPasswordId, now: Millis, ip: &str) -> Result<(), StoreError>;
}

/// Throttle records: the failures and reserved attempts of each key a sign-in is limited by.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    async fn throttle(&self, key: &str) -> Result<Option<ThrottleRecord>, StoreError>;
    /// Several keys in one query, in the order asked.
    async fn throttles(&self, keys: &[&str]) -> Result<Vec<Option<ThrottleRecord>>, StoreError>;
    /// In one statement: reserves one attempt on `key` if its version is
    /// still `reservation.version` (0: no row yet) and fewer than
    /// `reservation.open` attempts are in flight (reservations made at or
    /// before `reservation.lapsed_before` no longer count). `false`, with
    /// nothing changed, otherwise.
    async fn reserve_throttle(&self, key: &str, reservation: ThrottleReservation) -> Result<bool, StoreError>;
    /// [`Self::reserve_throttle`] for several keys in one transaction:
    /// all reserved, or (`false`) none. A sign-in reserves its keys with
    /// one commit rather than one each.
    async fn reserve_throttles(&self, reservations: &[(&str, ThrottleReservation)]) -> Result<bool, StoreError>;
    /// Settles one reserved attempt as a failure: writes `state` if the
    /// stored version is still `expected` (`None`: whatever it is).
    /// `false` when someone else wrote first.
    async fn swap_throttle(&self, key: &str, expected: Option<i64>, state: ThrottleState) -> Result<bool, StoreError>;
    /// Settles reserved attempts that did not fail, in one transaction.
    async fn release_throttles(&self, releases: &[ThrottleRelease]) -> Result<(), StoreError>;
}

/// The outbox of notices (security emails, import reports), and what each account opted out of.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    async fn enqueue_notice(&self, notice: &Notice) -> Result<(), StoreError>;
    /// Reserves the oldest message due at `now` (unsent, next attempt
    /// passed) until `lease_until`; two processes never get the same one.
    async fn claim_notice(&self, now: Millis, lease_until: Millis) -> Result<Option<Notice>, StoreError>;
    async fn notice_sent(&self, id: &str, now: Millis) -> Result<(), StoreError>;
    /// Counts a failed attempt; `next_attempt_at` `None` gives it up.
    async fn notice_failed(
        &self,
        id: &str,
        attempts: u32,
        next_attempt_at: Option<Millis>,
        error: &str,
    ) -> Result<(), StoreError>;
    async fn notice_opt_outs(&self, account_id: &AccountId) -> Result<Vec<NoticeKind>, StoreError>;
    async fn set_notice_opt_out(&self, account_id: &AccountId, kind: NoticeKind, off: bool) -> Result<(), StoreError>;
}

/// The security log of each account.
#[async_trait]
pub trait EventStore: Send + Sync {
    async fn record_event(&self, event: &SecurityEvent) -> Result<(), StoreError>;
    /// Newest first, strictly older than `before` when given.
    async fn events(
        &self,
        account_id: &AccountId,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, StoreError>;
}

/// What keeps the store healthy and its processes in step: a liveness check, signals between processes, the purge of what expired.
#[async_trait]
pub trait UpkeepStore: Send + Sync {
    async fn ping(&self) -> Result<(), StoreError>;
    /// Tells every process sharing this store that `topic` changed (see
    /// [`Signals`](crate::Signals)); a store only one process uses does
    /// nothing.
    async fn publish(&self, topic: &str) -> Result<(), StoreError>;
    /// Deletes expired sessions, setup links and forgotten throttle keys;
    /// returns how many rows went.
    async fn purge_expired(&self, cutoffs: ExpiryCutoffs) -> Result<u64, StoreError>;
}
