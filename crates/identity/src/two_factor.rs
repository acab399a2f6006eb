//! Two-step verification: enrolling TOTP apps, backup codes, removing
//! methods, and the second sign-in step.
//!
//! Turning 2FA on is confirming the first method: that is when the ten
//! backup codes are made. Removing the last method turns it off and deletes
//! the codes. Nothing here lets anyone turn off another person's 2FA.

use crate::{ApprovalRequestId, FactorId};
use subtle::ConstantTimeEq;

use crate::account::{Account, AccountId};
use crate::attempt::ThrottleKey;
use crate::audit::EventKind;
use crate::clock::Millis;
use crate::credential::totp::{self, TotpSecret};
use crate::credential::{backup_code, parse_label};
use crate::notices::NoticeKind;
use crate::second_factor::{Challenge, ENROLMENT_LIFETIME, FactorKind, MethodSummary, SecondFactor, TwoFactorStatus};
use crate::secrets::{random_token, token_hash};
use crate::service::{ClientInfo, Identity, IdentityError, SignedIn};
use crate::session::{MAX_FACTOR_FAILURES, Session, SessionStage, SessionToken};
use crate::store::{SecondStepProof, StepContext, StoreError};

const TOTP_PURPOSE: &str = "totp-secret";

/// What an authenticator app needs to be set up.
#[derive(Debug, Clone)]
pub struct TotpEnrollment {
    pub id: FactorId,
    /// Base32, for typing by hand.
    pub secret: String,
    pub otpauth_uri: String,
}

/// What the member gives at the second step.
#[derive(Debug, Clone)]
pub enum SecondStep {
    Totp(String),
    BackupCode(String),
    /// The code sent by SMS (see [`Identity::send_sign_in_sms`]).
    Sms(String),
    /// A security key's answer (a WebAuthn `PublicKeyCredential`) to the
    /// challenge from [`Identity::begin_security_key_sign_in`].
    SecurityKey(serde_json::Value),
    /// A push request approved on the device `factor_id` (see
    /// [`Identity::finish_push`]).
    Push {
        request_id: ApprovalRequestId,
        factor_id: FactorId,
    },
}

/// What a request to the second step asks for. A method that first sends
/// or shows something (an SMS code, a push request, a security key's
/// challenge), named without its proof, asks for that; anything else is a
/// proof to check.
#[derive(Debug, Clone)]
pub enum StepRequest {
    /// Send a code by SMS ([`Identity::send_sign_in_sms`]).
    SendSms,
    /// Ask the authenticator app to approve ([`Identity::begin_push`]).
    Push,
    /// The challenge for a security key
    /// ([`Identity::begin_security_key_sign_in`]).
    SecurityKeyChallenge,
    Check(SecondStep),
}

impl StepRequest {
    /// Reads `method`, `code` and `credential` as the API's JSON and the
    /// console's form both send them; `None` for an unknown method.
    pub fn parse(method: &str, code: String, credential: Option<serde_json::Value>) -> Option<Self> {
        let blank = code.trim().is_empty();
        Some(match method {
            "totp" => Self::Check(SecondStep::Totp(code)),
            "backup_code" => Self::Check(SecondStep::BackupCode(code)),
            "sms" if blank => Self::SendSms,
            "sms" => Self::Check(SecondStep::Sms(code)),
            "authenticator" if blank => Self::Push,
            // The app's offline code is a TOTP code.
            "authenticator" => Self::Check(SecondStep::Totp(code)),
            "security_key" => {
                credential.map_or(Self::SecurityKeyChallenge, |c| Self::Check(SecondStep::SecurityKey(c)))
            }
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecondStepError {
    #[error("the code is wrong; {attempts_left} attempts left")]
    WrongCode { attempts_left: u32 },
    /// A code of the authenticator app that was already used: typed
    /// twice. It costs no attempt (it can never work, and says nothing
    /// about the codes still to come).
    #[error("this code was already used; wait for the next one")]
    CodeReused,
    #[error("too many wrong codes: sign in again with your password")]
    Restart,
    #[error("too many attempts; retry in {retry_after} ms")]
    TooManyAttempts { retry_after: Millis },
    #[error("this session is not waiting for a second factor")]
    NotPending,
    #[error(transparent)]
    Sms(#[from] crate::sms::SmsError),
    #[error("no security key is set up")]
    NoSecurityKey,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn backup_digests(identity: &Identity, codes: &[String]) -> Vec<String> {
    codes
        .iter()
        .filter_map(|c| backup_code::digest(identity.key(), c))
        .collect()
}

impl Identity {
    pub async fn two_factor(&self, account_id: &AccountId) -> Result<TwoFactorStatus, StoreError> {
        let factors = self.store().second_factors(account_id).await?;
        let methods: Vec<MethodSummary> = factors.iter().filter(|f| f.active).map(MethodSummary::from).collect();
        let backup_codes_remaining = if methods.is_empty() {
            0
        } else {
            self.store().unused_backup_codes(account_id).await?.len()
        };
        let preferred = FactorKind::parse(&self.store().default_method(account_id).await?);
        let default_method = Challenge::for_factors(&factors, preferred).map(|c| c.default_method);
        Ok(TwoFactorStatus {
            enabled: !methods.is_empty(),
            methods,
            backup_codes_remaining,
            default_method,
        })
    }

    /// What the second sign-in step offers the account, and which method
    /// first: the one rule the API's answer and the console's page follow.
    pub async fn challenge(&self, account: &Account) -> Result<Option<Challenge>, StoreError> {
        let factors = self.store().second_factors(&account.id).await?;
        Ok(Challenge::for_factors(&factors, account.default_method))
    }

    /// The kind to offer first at sign-in; it must be enrolled.
    pub async fn set_default_method(&self, account_id: &AccountId, kind: FactorKind) -> Result<(), IdentityError> {
        let enrolled = self
            .store()
            .second_factors(account_id)
            .await?
            .iter()
            .any(|f| f.active && f.kind == kind);
        if !enrolled {
            return Err(IdentityError::NotFound);
        }
        Ok(self.store().set_default_method(account_id, kind.as_str()).await?)
    }

    /// Starts enrolling a TOTP app; it stays pending until
    /// [`Identity::confirm_totp`] sees a code, and lapses after ten minutes.
    pub async fn begin_totp(&self, account: &Account, name: &str) -> Result<TotpEnrollment, IdentityError> {
        let name = parse_label(name).ok_or(IdentityError::InvalidName)?;
        let secret = TotpSecret::generate();
        let id = FactorId::generate();
        let now = self.now();
        let factor = SecondFactor::pending(
            id.clone(),
            account.id.clone(),
            FactorKind::Totp,
            name,
            self.key().seal(TOTP_PURPOSE, id.as_str(), secret.as_bytes()),
            now,
            ENROLMENT_LIFETIME,
        );
        self.store().insert_second_factor(&factor).await?;
        Ok(TotpEnrollment {
            id,
            secret: secret.base32(),
            otpauth_uri: totp::otpauth_uri(self.issuer(), account.email.as_str(), &secret),
        })
    }

    /// The name of a pending enrolment (for SMS: the masked number).
    pub async fn pending_method_name(
        &self,
        account_id: &AccountId,
        id: &FactorId,
    ) -> Result<Option<String>, StoreError> {
        let now = self.now();
        Ok(self
            .store()
            .second_factors(account_id)
            .await?
            .into_iter()
            .find(|f| &f.id == id && !f.active && f.expires_at > now)
            .map(|f| f.name))
    }

    /// A pending enrolment again (to show its QR code after a wrong code).
    pub async fn pending_totp(&self, account: &Account, id: &FactorId) -> Result<Option<TotpEnrollment>, StoreError> {
        let now = self.now();
        let factors = self.store().second_factors(&account.id).await?;
        let Some(factor) = factors
            .iter()
            .find(|f| &f.id == id && !f.active && f.expires_at > now && f.kind == FactorKind::Totp)
        else {
            return Ok(None);
        };
        let secret = self.totp_secret(factor)?;
        Ok(Some(TotpEnrollment {
            id: factor.id.clone(),
            secret: secret.base32(),
            otpauth_uri: totp::otpauth_uri(self.issuer(), account.email.as_str(), &secret),
        }))
    }

    fn totp_secret(&self, factor: &SecondFactor) -> Result<TotpSecret, StoreError> {
        self.key()
            .open(TOTP_PURPOSE, factor.id.as_str(), &factor.secret)
            .map(TotpSecret::from_bytes)
            .ok_or_else(|| StoreError::Corrupt(format!("the secret of factor {} does not decrypt", factor.id)))
    }

    /// Confirms a pending TOTP app with a current code. When this turns
    /// two-step verification on, returns the ten new backup codes (shown
    /// once; only their digests are kept).
    pub async fn confirm_totp(
        &self,
        account_id: &AccountId,
        id: &FactorId,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Option<Vec<String>>, IdentityError> {
        let now = self.now();
        let factors = self.store().second_factors(account_id).await?;
        let factor = factors
            .iter()
            .find(|f| &f.id == id && !f.active && f.expires_at > now && f.kind == FactorKind::Totp)
            .ok_or(IdentityError::NotFound)?;
        let secret = self.totp_secret(factor)?;
        let step = totp::verify(&secret, code, now, 0).ok_or(IdentityError::WrongCode)?;
        self.activate_factor(account_id, factor, step, client).await
    }

    /// Activates a confirmed enrolment. When this turns two-step
    /// verification on, makes and returns the ten backup codes.
    pub(crate) async fn activate_factor(
        &self,
        account_id: &AccountId,
        factor: &SecondFactor,
        counter: i64,
        client: &ClientInfo,
    ) -> Result<Option<Vec<String>>, IdentityError> {
        let turning_on = !self.store().second_factors(account_id).await?.iter().any(|f| f.active);
        let codes = turning_on.then(backup_code::generate);
        let digests = codes.as_ref().map(|c| backup_digests(self, c));
        let activated = self
            .store()
            .activate_second_factor(account_id, &factor.id, self.now(), counter, digests.as_deref())
            .await?;
        if !activated {
            return Err(IdentityError::NotFound);
        }
        self.record(account_id, EventKind::SecondFactorAdded, client, &factor.name)
            .await?;
        let mail = if turning_on {
            NoticeKind::TwoFactorEnabled
        } else {
            NoticeKind::MethodAdded
        };
        self.alert_by_id(account_id, mail, client, &[("name", &factor.name)])
            .await?;
        if turning_on {
            // Lifts an organization's block at once, in every process.
            self.org_changed().await;
            self.record(account_id, EventKind::TwoFactorEnabled, client, "").await?;
            // Protocol clients may no longer use the account password.
            self.protocol_cache().forget_account(account_id);
        }
        Ok(codes)
    }

    /// Removes a method (or abandons a pending enrolment). Needs the
    /// password, or one given in this session in the last five minutes.
    pub async fn remove_second_factor(
        &self,
        session: &Session,
        account: &Account,
        id: &FactorId,
        password: Option<&str>,
        client: &ClientInfo,
    ) -> Result<(), IdentityError> {
        let factors = self.store().second_factors(&account.id).await?;
        let factor = factors.iter().find(|f| &f.id == id).ok_or(IdentityError::NotFound)?;
        self.confirm_password(session, account, password).await?;
        let remaining = self
            .store()
            .delete_second_factor(&account.id, id)
            .await?
            .ok_or(IdentityError::NotFound)?;
        if factor.active {
            self.record(&account.id, EventKind::SecondFactorRemoved, client, &factor.name)
                .await?;
            if remaining == 0 {
                self.org_changed().await;
                self.record(&account.id, EventKind::TwoFactorDisabled, client, "")
                    .await?;
                self.alert(
                    account,
                    NoticeKind::TwoFactorDisabled,
                    client,
                    &[("name", &factor.name)],
                )
                .await?;
            } else {
                self.alert(account, NoticeKind::MethodRemoved, client, &[("name", &factor.name)])
                    .await?;
            }
        }
        Ok(())
    }

    /// Ten new backup codes; the old ones stop working at once. Always asks
    /// for the password.
    pub async fn regenerate_backup_codes(
        &self,
        session: &Session,
        account: &Account,
        password: &str,
        client: &ClientInfo,
    ) -> Result<Vec<String>, IdentityError> {
        self.check_password(account, password).await?;
        self.store().set_password_at(&session.id, self.now()).await?;
        if !self.two_factor(&account.id).await?.enabled {
            return Err(IdentityError::TwoFactorOff);
        }
        let codes = backup_code::generate();
        self.store()
            .replace_backup_codes(&account.id, &backup_digests(self, &codes), self.now())
            .await?;
        self.record(&account.id, EventKind::BackupCodesRegenerated, client, "")
            .await?;
        Ok(codes)
    }

    /// [`session`](Self::session) together with what the second sign-in
    /// step of its account checks a code against, in one query: for the
    /// request that brings the code.
    pub async fn session_with_step_context(
        &self,
        token: &str,
        client: &ClientInfo,
    ) -> Result<Option<(Session, Account, StepContext)>, StoreError> {
        let found = self
            .store()
            .session_with_step_context(&token_hash(token), ThrottleKey::SECOND_STEP_PREFIX)
            .await?;
        let Some((session, account, context)) = found else {
            return Ok(None);
        };
        Ok(self.live_session(session, client).await?.map(|s| (s, account, context)))
    }

    /// The second sign-in step of a half-signed-in session of `account`.
    /// On success the session is signed in under a new token. Wrong codes
    /// count per sign-in attempt (five, then the password step starts over)
    /// and per account (the same softlock as passwords).
    pub async fn second_step(
        &self,
        session: &Session,
        account: &Account,
        step: SecondStep,
        device_cookie: Option<&str>,
        client: &ClientInfo,
    ) -> Result<SignedIn, SecondStepError> {
        let context = self
            .store()
            .step_context(&ThrottleKey::SecondStep(account.id.clone()).stored(), &account.id)
            .await?;
        self.second_step_in(session, account, context, step, device_cookie, client)
            .await
    }

    /// [`second_step`](Self::second_step) with its `context` already read
    /// with the session, by
    /// [`session_with_step_context`](Self::session_with_step_context).
    pub async fn second_step_in(
        &self,
        session: &Session,
        account: &Account,
        context: StepContext,
        step: SecondStep,
        device_cookie: Option<&str>,
        client: &ClientInfo,
    ) -> Result<SignedIn, SecondStepError> {
        if session.stage != SessionStage::SecondFactor || session.account_id != account.id {
            return Err(SecondStepError::NotPending);
        }
        let key = ThrottleKey::SecondStep(account.id.clone());
        let StepContext {
            throttle: record,
            factors,
        } = context;
        // The key is the account's, not the session's: however many
        // half-signed-in sessions send codes at once, no more are checked
        // than one session could check one after the other.
        let keys = vec![(key.stored(), key)];
        let attempt = match crate::attempt::reserve_read(self.store_arc(), keys, vec![record], self.now()).await? {
            Ok(attempt) => attempt,
            Err(retry_after) => return Err(SecondStepError::TooManyAttempts { retry_after }),
        };

        let now = self.now();
        let (proof, method, backup_left) = match step {
            // A code typed twice returns here: dropping the attempt gives
            // its room back without counting a failure.
            SecondStep::Totp(code) => (self.totp_proof(factors, &code)?, "totp", None),
            SecondStep::BackupCode(code) => {
                let (proof, left) = self.backup_code_proof(account, &code).await?;
                (proof, "backup_code", left)
            }
            SecondStep::Sms(code) => (self.sms_proof(factors, &code).await?, "sms", None),
            SecondStep::SecurityKey(credential) => (
                self.security_key_proof(session, account, credential, client).await?,
                "security_key",
                None,
            ),
            SecondStep::Push { request_id, factor_id } => (
                Some(SecondStepProof::Push { request_id, factor_id }),
                "authenticator",
                None,
            ),
        };
        let token = SessionToken(random_token(32));
        let event = self.event(&account.id, EventKind::SignIn, client, method);
        let completed = match &proof {
            Some(proof) => {
                self.store()
                    .complete_second_step(&session.id, &token_hash(&token.0), now, &event, proof)
                    .await?
            }
            None => false,
        };
        if !completed {
            let failures = self.store().count_factor_failure(&session.id).await?;
            let locked = attempt.failed(|| self.now()).await?;
            self.record(&account.id, EventKind::SecondFactorFailed, client, "")
                .await?;
            if let Some(ms) = locked {
                let seconds = (ms / 1000).to_string();
                self.record(&account.id, EventKind::SecondFactorLocked, client, &seconds)
                    .await?;
            }
            if failures >= MAX_FACTOR_FAILURES {
                self.store().delete_session(&account.id, &session.id).await?;
                return Err(SecondStepError::Restart);
            }
            return Err(SecondStepError::WrongCode {
                attempts_left: MAX_FACTOR_FAILURES.saturating_sub(failures),
            });
        }
        attempt.succeeded().await?;
        if let Some(left) = backup_left {
            self.record(&account.id, EventKind::BackupCodeUsed, client, &left.to_string())
                .await?;
            self.alert(
                account,
                NoticeKind::BackupCodeUsed,
                client,
                &[("left", &left.to_string())],
            )
            .await?;
        }
        let mut session = session.clone();
        session.stage = SessionStage::SignedIn;
        session.last_seen_at = now;
        let known = self.known_device(&account.id, device_cookie);
        if known.is_none() {
            self.alert(account, NoticeKind::NewDevice, client, &[]).await?;
        }
        Ok(SignedIn {
            token,
            session,
            account: account.clone(),
            device_cookie: Some(self.device_cookie(&account.id, known)),
            second_factor: None,
        })
    }

    /// The step of an active TOTP app among `factors` that `code` matches,
    /// if any.
    fn totp_proof(&self, factors: Vec<SecondFactor>, code: &str) -> Result<Option<SecondStepProof>, SecondStepError> {
        let now = self.now();
        let mut reused = false;
        for factor in factors {
            // TOTP apps, and the offline codes of the companion app.
            let secret = match (factor.active, factor.kind) {
                (true, FactorKind::Totp) => self.totp_secret(&factor)?,
                (true, FactorKind::App) => self.app_totp_secret(&factor)?,
                _ => continue,
            };
            if let Some(step) = totp::verify(&secret, code, now, factor.counter) {
                return Ok(Some(SecondStepProof::TotpStep {
                    factor_id: factor.id,
                    step,
                }));
            }
            reused |= totp::used_before(&secret, code, now, factor.counter);
        }
        if reused {
            return Err(SecondStepError::CodeReused);
        }
        Ok(None)
    }

    /// The unused backup code `code` is, compared in constant time, and how
    /// many would be left once it is used.
    async fn backup_code_proof(
        &self,
        account: &Account,
        code: &str,
    ) -> Result<(Option<SecondStepProof>, Option<usize>), StoreError> {
        let Some(digest) = backup_code::digest(self.key(), code) else {
            return Ok((None, None));
        };
        let unused = self.store().unused_backup_codes(&account.id).await?;
        let known = unused.iter().fold(false, |found, d| {
            found | bool::from(d.as_bytes().ct_eq(digest.as_bytes()))
        });
        if !known {
            return Ok((None, None));
        }
        let proof = SecondStepProof::BackupCode {
            account_id: account.id.clone(),
            digest,
        };
        Ok((Some(proof), Some(unused.len() - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(method: &str, code: &str, credential: Option<serde_json::Value>) -> String {
        format!("{:?}", StepRequest::parse(method, code.into(), credential))
    }

    #[test]
    fn a_method_without_its_proof_asks_for_one() {
        assert_eq!(parsed("sms", " ", None), "Some(SendSms)");
        assert_eq!(parsed("authenticator", "", None), "Some(Push)");
        assert_eq!(parsed("security_key", "", None), "Some(SecurityKeyChallenge)");
        assert_eq!(parsed("sms", "123456", None), r#"Some(Check(Sms("123456")))"#);
        assert_eq!(
            parsed("authenticator", "123456", None),
            r#"Some(Check(Totp("123456")))"#
        );
        assert_eq!(
            parsed("security_key", "", Some(serde_json::json!({}))),
            "Some(Check(SecurityKey(Object {})))"
        );
        assert_eq!(parsed("totp", "", None), r#"Some(Check(Totp("")))"#);
        assert_eq!(parsed("backup_code", "x", None), r#"Some(Check(BackupCode("x")))"#);
        assert_eq!(parsed("pigeon", "1", None), "None");
    }
}
