//! SMS codes as a second factor: enrolling a number (confirmed with a code)
//! and sending codes at sign-in. The rules are in `credential/sms.rs`.

use crate::FactorId;
use subtle::ConstantTimeEq;

use crate::account::{Account, AccountId};
use crate::clock::Millis;
use crate::credential::sms::{self, PhoneNumber, PhoneRejected, SendRefused, SmsCode};
use crate::second_factor::{ENROLMENT_LIFETIME, FactorKind, SecondFactor};
use crate::service::{ClientInfo, Identity, IdentityError};
use crate::session::{Session, SessionStage};
use crate::sms_gateway::SmsSendError;
use crate::store::{SecondStepProof, StoreError};
use crate::two_factor::SecondStepError;

const NUMBER_PURPOSE: &str = "sms-number";
const DAY: Millis = 24 * 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error(transparent)]
    Phone(#[from] PhoneRejected),
    #[error("a code was sent a moment ago; ask again in {} seconds", (retry_after + 999) / 1000)]
    TooSoon { retry_after: Millis },
    #[error("the daily limit of SMS messages is reached")]
    DailyCap { retry_after: Millis },
    #[error(transparent)]
    Send(#[from] SmsSendError),
    #[error("no mobile number is set up for SMS codes")]
    NoNumber,
}

/// A number being enrolled: the code is on its way.
#[derive(Debug, Clone)]
pub struct SmsEnrollment {
    pub id: FactorId,
    /// `+41 •••• 4567`
    pub phone: String,
}

impl Identity {
    fn sms_number(&self, factor: &SecondFactor) -> Result<PhoneNumber, StoreError> {
        let bytes = self
            .key()
            .open(NUMBER_PURPOSE, factor.id.as_str(), &factor.secret)
            .ok_or_else(|| StoreError::Corrupt(format!("the number of factor {} does not decrypt", factor.id)))?;
        let number = String::from_utf8(bytes).map_err(|_| StoreError::Corrupt("a stored number is not text".into()))?;
        Ok(PhoneNumber::from_stored(number))
    }

    /// Sends a fresh code for `factor`, within the resend and daily limits.
    async fn send_code(&self, account_id: &AccountId, factor: &SecondFactor, lang: &str) -> Result<(), IdentityError> {
        let number = self.sms_number(factor)?;
        let now = self.now();
        let number_digest = number.digest(self.key());
        let waiting = self.store().sms_code(&factor.id).await?;
        let (to_number, for_account) = self.store().sms_sends(account_id, &number_digest, now - DAY).await?;
        sms::may_send(waiting.as_ref(), &to_number, &for_account, now).map_err(|refused| match refused {
            SendRefused::TooSoon(retry_after) => SmsError::TooSoon { retry_after },
            SendRefused::DailyCap(retry_after) => SmsError::DailyCap { retry_after },
        })?;
        let code = sms::generate_code();
        let digest = sms::code_digest(self.key(), &code).expect("a generated code has the right shape");
        let waiting = SmsCode {
            factor_id: factor.id.clone(),
            digest,
            sent_at: now,
            expires_at: now + sms::CODE_LIFETIME,
            attempts: 0,
        };
        // Recorded before sending, so the limits hold even when the gateway
        // fails half-way.
        self.store().put_sms_code(&waiting, account_id, &number_digest).await?;
        let text = sms::message(self.issuer(), &code, lang);
        self.sms_gateway()
            .send(number.as_str(), &text)
            .await
            .map_err(SmsError::Send)?;
        Ok(())
    }

    /// Starts enrolling a mobile number: checks its country, stores it
    /// sealed and sends a code to confirm it.
    pub async fn begin_sms(&self, account: &Account, phone: &str, lang: &str) -> Result<SmsEnrollment, IdentityError> {
        let number = PhoneNumber::parse(phone, self.sms_regions()).map_err(SmsError::Phone)?;
        let id = FactorId::generate();
        let now = self.now();
        let factor = SecondFactor::pending(
            id.clone(),
            account.id.clone(),
            FactorKind::Sms,
            number.masked(),
            self.key().seal(NUMBER_PURPOSE, id.as_str(), number.as_str().as_bytes()),
            now,
            ENROLMENT_LIFETIME,
        );
        self.store().insert_second_factor(&factor).await?;
        self.send_code(&account.id, &factor, lang).await?;
        Ok(SmsEnrollment {
            id,
            phone: number.masked(),
        })
    }

    async fn pending_sms(&self, account_id: &AccountId, id: &FactorId) -> Result<SecondFactor, IdentityError> {
        let now = self.now();
        self.store()
            .second_factors(account_id)
            .await?
            .into_iter()
            .find(|f| &f.id == id && !f.active && f.expires_at > now && f.kind == FactorKind::Sms)
            .ok_or(IdentityError::NotFound)
    }

    /// Sends another code for a number being enrolled.
    pub async fn resend_sms_enrolment(
        &self,
        account: &Account,
        id: &FactorId,
        lang: &str,
    ) -> Result<String, IdentityError> {
        let factor = self.pending_sms(&account.id, id).await?;
        self.send_code(&account.id, &factor, lang).await?;
        Ok(factor.name)
    }

    /// Confirms a number being enrolled with the code it received. When
    /// this turns two-step verification on, returns the backup codes.
    pub async fn confirm_sms(
        &self,
        account_id: &AccountId,
        id: &FactorId,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Option<Vec<String>>, IdentityError> {
        let factor = self.pending_sms(account_id, id).await?;
        if !self.matches_waiting_code(&factor, code).await? {
            return Err(IdentityError::WrongCode);
        }
        let digest = sms::code_digest(self.key(), code).ok_or(IdentityError::WrongCode)?;
        if !self.store().consume_sms_code(&factor.id, &digest, self.now()).await? {
            return Err(IdentityError::WrongCode);
        }
        self.activate_factor(account_id, &factor, 0, client).await
    }

    /// Whether `code` is the usable code waiting for `factor`; a wrong
    /// code counts as one of its tries.
    async fn matches_waiting_code(&self, factor: &SecondFactor, code: &str) -> Result<bool, StoreError> {
        let Some(waiting) = self.store().sms_code(&factor.id).await? else {
            return Ok(false);
        };
        if !waiting.usable(self.now()) {
            return Ok(false);
        }
        let matches = sms::code_digest(self.key(), code)
            .is_some_and(|d| bool::from(d.as_bytes().ct_eq(waiting.digest.as_bytes())));
        if !matches {
            self.store().sms_code_failed(&factor.id).await?;
        }
        Ok(matches)
    }

    /// At the second step: sends a code to the member's number (the one
    /// used most recently); returns it masked.
    pub async fn send_sign_in_sms(
        &self,
        session: &Session,
        account: &Account,
        lang: &str,
    ) -> Result<String, SecondStepError> {
        if session.stage != SessionStage::SecondFactor || session.account_id != account.id {
            return Err(SecondStepError::NotPending);
        }
        let factors = self.store().second_factors(&account.id).await?;
        let factor = factors
            .iter()
            .filter(|f| f.active && f.kind == FactorKind::Sms)
            .max_by_key(|f| (f.last_used_at, f.created_at))
            .ok_or(SecondStepError::Sms(SmsError::NoNumber))?;
        match self.send_code(&account.id, factor, lang).await {
            Ok(()) => Ok(factor.name.clone()),
            Err(IdentityError::Sms(e)) => Err(SecondStepError::Sms(e)),
            Err(IdentityError::Store(e)) => Err(SecondStepError::Store(e)),
            Err(other) => Err(SecondStepError::Store(StoreError::Backend(other.to_string()))),
        }
    }

    /// The active SMS factor among `factors` whose waiting code `code` is.
    pub(crate) async fn sms_proof(
        &self,
        factors: Vec<SecondFactor>,
        code: &str,
    ) -> Result<Option<SecondStepProof>, StoreError> {
        for factor in factors {
            if !factor.active || factor.kind != FactorKind::Sms {
                continue;
            }
            if self.matches_waiting_code(&factor, code).await?
                && let Some(digest) = sms::code_digest(self.key(), code)
            {
                return Ok(Some(SecondStepProof::SmsCode {
                    factor_id: factor.id,
                    digest,
                }));
            }
        }
        Ok(None)
    }
}
