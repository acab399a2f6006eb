//! Push approval with number matching: after a correct password, the
//! member approves the sign-in on a device running the authenticator app.
//!
//! The sign-in page shows a number; each linked device, holding a long
//! poll, receives the request with three numbers and answers with the one
//! the member picked and Yes or No, signed with the device's Ed25519 key.
//! The right number and Yes approve the request; the waiting browser then
//! completes its second step with it (once). No, or a wrong number, denies
//! it, ends the half-signed-in session and is recorded as suspicious.
//!
//! Requests live in the database (any process may create, deliver or
//! answer one); [`Signals`](crate::signals::Signals) only wake waiters.
//! Push fatigue: at most [`MAX_REQUESTS`] per account per
//! [`REQUEST_WINDOW`], and after [`DENIALS_TO_PAUSE`] denials in a row push
//! is paused for [`PAUSE`] (other methods still work).

use crate::{ApprovalRequestId, FactorId};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::account::{Account, AccountId};
use crate::audit::EventKind;
use crate::clock::Millis;
use crate::second_factor::{FactorKind, SecondFactor};
use crate::service::{ClientInfo, Identity, SignedIn};
use crate::session::SessionId;
use crate::session::{Session, SessionStage};
use crate::store::StoreError;
use crate::two_factor::{SecondStep, SecondStepError};

/// How long a request waits for an answer.
pub const REQUEST_LIFETIME: Millis = 2 * 60_000;
/// At most this many requests per account per [`REQUEST_WINDOW`].
pub const MAX_REQUESTS: usize = 3;
pub const REQUEST_WINDOW: Millis = 10 * 60_000;
/// Denials in a row that pause push for the account.
pub const DENIALS_TO_PAUSE: usize = 2;
pub const PAUSE: Millis = 15 * 60_000;
/// How far a device's clock may be from the server's.
pub const CLOCK_SKEW: Millis = 5 * 60_000;
/// The longest a long poll or a wait is held.
pub const MAX_WAIT: Duration = Duration::from_secs(55);
/// How far back the request history is read for the fatigue rules.
const HISTORY: Millis = 24 * 3_600_000;
/// Waiters re-read the database at least this often, whatever the signals.
const RECHECK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    /// Approved on a device; the browser has not used it yet.
    Approved,
    Denied,
    /// The device picked another number than the page showed.
    WrongNumber,
    /// Approved and used by the browser: the session is signed in.
    Used,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::WrongNumber => "wrong_number",
            Self::Used => "used",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Approved,
            Self::Denied,
            Self::WrongNumber,
            Self::Used,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    pub fn is_denial(self) -> bool {
        matches!(self, Self::Denied | Self::WrongNumber)
    }
}

/// A request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    pub id: ApprovalRequestId,
    pub account_id: AccountId,
    pub session_id: SessionId,
    /// The number the sign-in page shows.
    pub number: u8,
    /// The three numbers the app offers (one is `number`).
    pub choices: [u8; 3],
    pub status: ApprovalStatus,
    pub ip: String,
    pub user_agent: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub answered_at: Millis,
    /// The device (method id) that answered, once one did.
    pub answered_by: Option<FactorId>,
}

impl ApprovalRequest {
    /// Pending and unexpired.
    pub fn is_open(&self, now: Millis) -> bool {
        self.status == ApprovalStatus::Pending && self.expires_at > now
    }
}

/// What the waiting browser (or API client) is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushState {
    Pending,
    /// Approved: the next call with the session completes the sign-in.
    Approved,
    Denied,
    Expired,
    /// Already used to sign in.
    Used,
}

impl PushState {
    pub fn of(request: &ApprovalRequest, now: Millis) -> Self {
        match request.status {
            ApprovalStatus::Pending if request.expires_at <= now => Self::Expired,
            ApprovalStatus::Pending => Self::Pending,
            ApprovalStatus::Approved => Self::Approved,
            ApprovalStatus::Denied | ApprovalStatus::WrongNumber => Self::Denied,
            ApprovalStatus::Used => Self::Used,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Used => "signed_in",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("no authenticator app is linked")]
    NoDevice,
    #[error("approval requests are paused after refused ones; use another method")]
    Paused { retry_after: Millis },
    #[error("too many approval requests in ten minutes; use another method")]
    TooManyRequests { retry_after: Millis },
    #[error("this sign-in is not waiting for a second step")]
    NotPending,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the browser's check of its request ended.
#[derive(Debug)]
pub enum PushOutcome {
    SignedIn(Box<SignedIn>),
    Pending,
    Denied,
    Expired,
}

/// A device's proof that it holds its key: a signature over
/// `cloudkeep-authenticator/1\n<purpose>\n<method id>\n<timestamp>\n<extra>`.
#[derive(Debug, Clone)]
pub struct DeviceProof {
    pub method_id: FactorId,
    /// Milliseconds since the epoch, within [`CLOCK_SKEW`] of the server.
    pub timestamp: Millis,
    /// Ed25519 signature, base64url.
    pub signature: String,
}

/// The message a device signs.
pub fn device_message(purpose: &str, method_id: &str, timestamp: Millis, extra: &str) -> String {
    format!("cloudkeep-authenticator/1\n{purpose}\n{method_id}\n{timestamp}\n{extra}")
}

/// The signed `extra` of an answer.
pub fn answer_extra(request_id: &str, number: u8, approve: bool) -> String {
    let decision = if approve { "approve" } else { "deny" };
    format!("{request_id}\n{number}\n{decision}")
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The method was removed (or never existed): the device is unlinked.
    #[error("this device is no longer linked to the account (the method was removed)")]
    Revoked,
    #[error("the device's signature is not valid")]
    BadSignature,
    #[error("the device's clock is more than five minutes off")]
    ClockSkew,
    #[error("no such request")]
    NotFound,
    #[error("the request is already {0}")]
    Closed(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request as the app shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceRequest {
    pub id: ApprovalRequestId,
    pub email: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub ip: String,
    /// "Firefox on Linux", from the user agent.
    pub browser: String,
    /// The approximate place, when the server knows one (no GeoIP
    /// database ships today, so `null`).
    pub place: Option<String>,
    pub numbers: [u8; 3],
}

/// What delivers a request to phones that are not holding a connection
/// (a push provider): it carries only the request id.
#[async_trait::async_trait]
pub trait PushNotifier: Send + Sync {
    /// Tells the device linked as `method_id` that `request_id` waits.
    async fn notify(&self, method_id: &FactorId, request_id: &ApprovalRequestId) -> Result<(), String>;
}

fn account_topic(account_id: &AccountId) -> String {
    format!("account:{account_id}")
}

pub fn request_topic(request_id: &ApprovalRequestId) -> String {
    format!("request:{request_id}")
}

/// The number to show and three numbers (10–99, distinct, shuffled).
fn numbers() -> (u8, [u8; 3]) {
    let mut rng = rand::thread_rng();
    let mut picked: Vec<u8> = Vec::with_capacity(3);
    while picked.len() < 3 {
        let n = rng.gen_range(10..=99);
        if !picked.contains(&n) {
            picked.push(n);
        }
    }
    let number = picked[0];
    picked.shuffle(&mut rng);
    (number, [picked[0], picked[1], picked[2]])
}

/// The browser (or client) and the operating system a `User-Agent` names,
/// as far as it says.
pub fn browser_and_system(user_agent: &str) -> (Option<&'static str>, Option<&'static str>) {
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("python", "Python"),
        ("reqwest", "reqwest"),
    ];
    let system = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ];
    let find = |table: &[(&str, &'static str)]| {
        table
            .iter()
            .find(|(needle, _)| user_agent.contains(needle))
            .map(|(_, name)| *name)
    };
    (find(&browser), find(&system))
}

/// "Firefox on Linux" (or the start of the user agent), for the app.
pub fn browser_of(user_agent: &str) -> String {
    match browser_and_system(user_agent) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(s)) => format!("a browser on {s}"),
        (None, None) if user_agent.trim().is_empty() => "an unknown client".to_owned(),
        (None, None) => user_agent.chars().take(60).collect(),
    }
}

impl Identity {
    /// Sends an approval request for a half-signed-in session to the
    /// account's devices, or returns the one already open for it.
    pub async fn begin_push(
        &self,
        session: &Session,
        account: &Account,
        client: &ClientInfo,
    ) -> Result<ApprovalRequest, PushError> {
        if session.stage != SessionStage::SecondFactor || session.account_id != account.id {
            return Err(PushError::NotPending);
        }
        let now = self.now();
        let devices: Vec<SecondFactor> = self
            .store()
            .second_factors(&account.id)
            .await?
            .into_iter()
            .filter(|f| f.active && f.kind == FactorKind::App)
            .collect();
        if devices.is_empty() {
            return Err(PushError::NoDevice);
        }
        let recent = self.store().approval_requests(&account.id, now - HISTORY).await?;
        if let Some(open) = recent.iter().find(|r| r.session_id == session.id && r.is_open(now)) {
            return Ok(open.clone());
        }
        if let Some(until) = paused_until(&recent)
            && until > now
        {
            return Err(PushError::Paused {
                retry_after: until - now,
            });
        }
        let (number, choices) = numbers();
        let request = ApprovalRequest {
            id: ApprovalRequestId::generate(),
            account_id: account.id.clone(),
            session_id: session.id.clone(),
            number,
            choices,
            status: ApprovalStatus::Pending,
            ip: client.ip.to_string(),
            user_agent: client.user_agent.chars().take(300).collect(),
            created_at: now,
            expires_at: now + REQUEST_LIFETIME,
            answered_at: 0,
            answered_by: None,
        };
        let inserted = self
            .store()
            .insert_approval_request(&request, now - REQUEST_WINDOW, MAX_REQUESTS)
            .await?;
        if !inserted {
            let oldest = recent
                .iter()
                .filter(|r| r.created_at > now - REQUEST_WINDOW)
                .map(|r| r.created_at)
                .min()
                .unwrap_or(now);
            return Err(PushError::TooManyRequests {
                retry_after: (oldest + REQUEST_WINDOW - now).max(1000),
            });
        }
        self.publish(&account_topic(&account.id)).await;
        if let Some(notifier) = self.push_notifier() {
            for device in devices {
                let notifier = Arc::clone(notifier);
                let request_id = request.id.clone();
                tokio::spawn(async move {
                    if let Err(e) = notifier.notify(&device.id, &request_id).await {
                        tracing::warn!(error = %e, method = %device.id, "push notification failed");
                    }
                });
            }
        }
        Ok(request)
    }

    /// The request `id` and what the waiting browser should be told.
    pub async fn push_state(&self, id: &ApprovalRequestId) -> Result<Option<(ApprovalRequest, PushState)>, StoreError> {
        let now = self.now();
        Ok(self.store().approval_request(id).await?.map(|r| {
            let state = PushState::of(&r, now);
            (r, state)
        }))
    }

    /// Waits (at most `wait`) until the request leaves `Pending`, and
    /// returns its state then; `None` if there is no such request.
    pub async fn wait_push_state(
        &self,
        id: &ApprovalRequestId,
        wait: Duration,
    ) -> Result<Option<PushState>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let notify = self.signals().subscribe(&request_topic(id));
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some((request, state)) = self.push_state(id).await? else {
                return Ok(None);
            };
            if state != PushState::Pending {
                return Ok(Some(state));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Some(state));
            }
            // Wake at expiry too, to say so.
            let to_expiry = Duration::from_millis(u64::try_from(request.expires_at - self.now()).unwrap_or(0) + 1);
            let nap = RECHECK.min(deadline - now).min(to_expiry);
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    /// The browser's check of its request: completes the second step once
    /// the request is approved; ends the session if it was denied.
    pub async fn finish_push(
        &self,
        session: &Session,
        account: &Account,
        request_id: &ApprovalRequestId,
        device_cookie: Option<&str>,
        client: &ClientInfo,
    ) -> Result<PushOutcome, SecondStepError> {
        let found = self.push_state(request_id).await?;
        let Some((request, state)) = found.filter(|(r, _)| r.session_id == session.id) else {
            return Err(SecondStepError::NotPending);
        };
        match state {
            PushState::Pending => Ok(PushOutcome::Pending),
            PushState::Expired => Ok(PushOutcome::Expired),
            PushState::Denied => {
                self.store().delete_session(&account.id, &session.id).await?;
                Ok(PushOutcome::Denied)
            }
            PushState::Used => Err(SecondStepError::NotPending),
            PushState::Approved => {
                // Approved means answered: a request without its device
                // is not one this session can use.
                let Some(factor_id) = request.answered_by else {
                    return Err(SecondStepError::NotPending);
                };
                let step = SecondStep::Push {
                    request_id: request.id,
                    factor_id,
                };
                let signed = self.second_step(session, account, step, device_cookie, client).await?;
                Ok(PushOutcome::SignedIn(Box::new(signed)))
            }
        }
    }

    /// Checks a device's signature; returns its method (active, an app).
    async fn device(
        &self,
        proof: &DeviceProof,
        purpose: &str,
        extra: &str,
    ) -> Result<(SecondFactor, Account), DeviceError> {
        // `abs_diff`: a device's timestamp is untrusted and may be any
        // i64, where a subtraction would overflow.
        if proof.timestamp.abs_diff(self.now()) > CLOCK_SKEW.unsigned_abs() {
            return Err(DeviceError::ClockSkew);
        }
        let factor = self
            .store()
            .second_factor(&proof.method_id)
            .await?
            .filter(|f| f.active && f.kind == FactorKind::App)
            .ok_or(DeviceError::Revoked)?;
        let public_key = self.app_public_key(&factor)?;
        let message = device_message(purpose, proof.method_id.as_str(), proof.timestamp, extra);
        let signature = URL_SAFE_NO_PAD
            .decode(proof.signature.trim())
            .ok()
            .and_then(|s| ed25519_dalek::Signature::from_slice(&s).ok())
            .ok_or(DeviceError::BadSignature)?;
        public_key
            .verify_strict(message.as_bytes(), &signature)
            .map_err(|_| DeviceError::BadSignature)?;
        let account = self
            .store()
            .account_by_id(&factor.account_id)
            .await?
            .ok_or(DeviceError::Revoked)?;
        Ok((factor, account))
    }

    /// The open requests for the device's account, waiting (at most
    /// `wait`) until there is one.
    pub async fn device_requests(
        &self,
        proof: &DeviceProof,
        wait: Duration,
    ) -> Result<Vec<DeviceRequest>, DeviceError> {
        let (factor, account) = self.device(proof, "poll", "").await?;
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let notify = self.signals().subscribe(&account_topic(&account.id));
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.now();
            let open: Vec<DeviceRequest> = self
                .store()
                .approval_requests(&account.id, now - REQUEST_LIFETIME)
                .await?
                .into_iter()
                .filter(|r| r.is_open(now))
                .map(|r| DeviceRequest {
                    browser: browser_of(&r.user_agent),
                    id: r.id,
                    email: account.email.to_string(),
                    created_at: r.created_at,
                    expires_at: r.expires_at,
                    ip: r.ip,
                    place: None,
                    numbers: r.choices,
                })
                .collect();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !open.is_empty() || left.is_zero() {
                return Ok(open);
            }
            let _ = tokio::time::timeout(RECHECK.min(left), notified).await;
            // Removing the method revokes the device while it waits.
            if self.store().second_factor(&factor.id).await?.is_none_or(|f| !f.active) {
                return Err(DeviceError::Revoked);
            }
        }
    }

    /// A device's answer to a request.
    pub async fn answer_push(
        &self,
        proof: &DeviceProof,
        request_id: &ApprovalRequestId,
        number: u8,
        approve: bool,
        client: &ClientInfo,
    ) -> Result<ApprovalStatus, DeviceError> {
        let extra = answer_extra(request_id.as_str(), number, approve);
        let (factor, account) = self.device(proof, "answer", &extra).await?;
        let now = self.now();
        let request = self
            .store()
            .approval_request(request_id)
            .await?
            .filter(|r| r.account_id == account.id)
            .ok_or(DeviceError::NotFound)?;
        if !request.is_open(now) {
            return Err(DeviceError::Closed(PushState::of(&request, now).as_str()));
        }
        let status = match (approve, number == request.number) {
            (true, true) => ApprovalStatus::Approved,
            (true, false) => ApprovalStatus::WrongNumber,
            (false, _) => ApprovalStatus::Denied,
        };
        // What the activity log says: about the browser that asked, seen
        // from the device that answered.
        let asking = ClientInfo {
            ip: request.ip.parse().unwrap_or(client.ip),
            user_agent: request.user_agent.clone(),
        };
        let event = match status {
            ApprovalStatus::WrongNumber => {
                Some(self.event(&account.id, EventKind::PushWrongNumber, &asking, &factor.name))
            }
            ApprovalStatus::Denied => Some(self.event(&account.id, EventKind::PushDenied, &asking, &factor.name)),
            _ => None,
        };
        let answered = self
            .store()
            .answer_approval_request(&request, status, &factor.id, now, event.as_ref())
            .await?;
        if !answered {
            let state = self
                .push_state(request_id)
                .await?
                .map_or(PushState::Expired, |(_, s)| s);
            return Err(DeviceError::Closed(state.as_str()));
        }
        if status.is_denial() {
            self.alert(
                &account,
                crate::notices::NoticeKind::PushDenied,
                &asking,
                &[("name", &factor.name)],
            )
            .await?;
            let recent = self.store().approval_requests(&account.id, now - HISTORY).await?;
            if paused_until(&recent).is_some_and(|until| until > now) {
                let minutes = (PAUSE / 60_000).to_string();
                self.record(&account.id, EventKind::PushPaused, &asking, &minutes)
                    .await?;
                self.alert(
                    &account,
                    crate::notices::NoticeKind::PushPaused,
                    &asking,
                    &[("minutes", &minutes)],
                )
                .await?;
            }
        }
        self.publish(&request_topic(request_id)).await;
        Ok(status)
    }

    /// Whether push is paused for the account now, and until when.
    pub async fn push_paused_until(&self, account_id: &AccountId) -> Result<Option<Millis>, StoreError> {
        let now = self.now();
        let recent = self.store().approval_requests(account_id, now - HISTORY).await?;
        Ok(paused_until(&recent).filter(|until| *until > now))
    }

    /// Wakes this topic's waiters here and in every other process.
    pub async fn publish(&self, topic: &str) {
        self.signals().raise(topic);
        if let Err(e) = self.store().publish(topic).await {
            tracing::warn!(error = %e, "cannot signal other processes");
        }
    }
}

/// When the last [`DENIALS_TO_PAUSE`] answered requests are all denials:
/// the end of the pause that the newest one started.
fn paused_until(requests: &[ApprovalRequest]) -> Option<Millis> {
    let mut answered: Vec<&ApprovalRequest> = requests.iter().filter(|r| r.answered_at > 0).collect();
    answered.sort_by_key(|r| std::cmp::Reverse(r.answered_at));
    let last = &answered.get(..DENIALS_TO_PAUSE)?;
    last.iter()
        .all(|r| r.status.is_denial())
        .then(|| last[0].answered_at + PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(at: Millis, status: ApprovalStatus) -> ApprovalRequest {
        ApprovalRequest {
            id: ApprovalRequestId::new(at.to_string()),
            account_id: AccountId::new("a"),
            session_id: SessionId::new("s"),
            number: 10,
            choices: [10, 11, 12],
            status,
            ip: String::new(),
            user_agent: String::new(),
            created_at: at - 1000,
            expires_at: at + REQUEST_LIFETIME,
            answered_at: at,
            answered_by: Some(FactorId::new("m")),
        }
    }

    #[test]
    fn two_denials_in_a_row_pause_push() {
        use ApprovalStatus::*;
        assert_eq!(paused_until(&[answered(1, Denied)]), None);
        assert_eq!(
            paused_until(&[answered(1, Denied), answered(2, WrongNumber)]),
            Some(2 + PAUSE)
        );
        assert_eq!(
            paused_until(&[answered(1, Denied), answered(3, Used), answered(2, Denied)]),
            None,
            "an approval after them breaks the row"
        );
        let mut open = answered(5, Pending);
        open.answered_at = 0;
        assert_eq!(
            paused_until(&[answered(1, Denied), answered(2, Denied), open]),
            Some(2 + PAUSE)
        );
    }

    #[test]
    fn three_distinct_numbers_one_of_them_shown() {
        for _ in 0..500 {
            let (number, choices) = numbers();
            assert!(choices.contains(&number));
            assert!(choices.iter().all(|n| (10..=99).contains(n)));
            assert!(choices[0] != choices[1] && choices[1] != choices[2] && choices[0] != choices[2]);
        }
    }

    #[test]
    fn browsers_are_named_briefly() {
        assert_eq!(
            browser_of("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
            "Firefox on Linux"
        );
        assert_eq!(
            browser_of(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0"
            ),
            "Edge on Windows"
        );
        assert_eq!(browser_of(""), "an unknown client");
        assert_eq!(browser_of("reqwest"), "reqwest");
        assert_eq!(browser_of("SomeTool/1"), "SomeTool/1");
    }
}
