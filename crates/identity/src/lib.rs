//! Accounts, organizations and the rules that guard them.
//!
//! This crate owns the identity domain: who an account is ([`Account`],
//! [`EmailAddress`], [`SyncUserId`]), which organizations it belongs to and
//! what its [`Role`] lets it do, how a password is judged and hashed, how
//! sign-in attempts are throttled ([`softlock`]), how sessions live and die,
//! and the security activity recorded along the way. The [`Identity`] service
//! is the one path every transport (console, JSON API, and later WebDAV,
//! CalDAV and IMAP) goes through to check a credential.
//!
//! It must not touch HTTP, SQL or the network: persistence comes in through
//! the [`IdentityStore`] trait, time through [`Clock`], and both are wired by
//! the binary.
#![forbid(unsafe_code)]

mod access;
mod account;
mod attempt;
mod audit;
mod authenticator;
mod clock;
pub mod credential;
mod email;
mod ids;
pub mod locale;
pub use ids::{AppPasswordId, ApprovalRequestId, FactorId};
mod notices;
mod org;
mod org_admin;
pub mod password;
mod protocol;
mod push;
mod second_factor;
mod secrets;
mod security_key;
mod service;
mod session;
mod signals;
mod sms;
mod sms_gateway;
pub mod softlock;
mod store;
mod sync_user_id;
mod two_factor;

pub use access::{Access, Purpose};
pub use account::{Account, AccountId, NewAccount};
pub use audit::{EventKind, SecurityEvent};
pub use authenticator::{AuthenticatorLink, LinkedDevice};
pub use clock::{Clock, ManualClock, Millis, SystemClock, utc_datetime, utc_rfc3339};
pub use email::{EmailAddress, InvalidEmail};
pub use notices::{NOTICE_TOPIC, Notice, NoticeKind, backoff};
pub use org::{Membership, NewOrganization, OrgId, Organization, Role, RoleError};
pub use org_admin::{
    ALERT_INTERVAL, INVITATION_LIFETIME, Invitation, MemberCounts, MemberSummary, MembershipChange, OPERATOR,
    ORG_TOPIC, OrgError, OrgEvent, OrgPolicy, PendingInvitation, Requirement,
};
pub use password::{HashMemory, HashTicket, PasswordHasher, PasswordPolicy, PasswordRejected};
pub use protocol::ProtocolAuthError;
pub use push::{
    ApprovalRequest, ApprovalStatus, DeviceError, DeviceProof, DeviceRequest, PushError, PushNotifier, PushOutcome,
    PushState, answer_extra, browser_and_system, browser_of, device_message,
};
pub use second_factor::{Challenge, FactorKind, MethodSummary, SecondFactor, TwoFactorStatus};
pub use secrets::{ServerKey, random_token};
pub use security_key::SecurityKeyChallenge;
pub use service::{ClientInfo, Identity, IdentityConfig, IdentityError, SetupRequest, SignIn, SignInError, SignedIn};
pub use session::{Session, SessionId, SessionPolicy, SessionStage, SessionToken};
pub use signals::Signals;
pub use sms::{SmsEnrollment, SmsError};
pub use sms_gateway::{SmsGateway, SmsSendError};
pub use store::{
    AccountStore, AppPasswordStore, Constraint, EventPage, EventStore, ExpiryCutoffs, FactorStore, IdentityStore,
    OrgStore, OutboxStore, PushStore, SecondStepProof, SessionStore, SignInContext, StepContext, StoreError,
    ThrottleRecord, ThrottleRelease, ThrottleReservation, ThrottleStore, UpkeepStore,
};
pub use sync_user_id::SyncUserId;
pub use two_factor::{SecondStep, SecondStepError, StepRequest, TotpEnrollment};
