//! Security keys (FIDO2/WebAuthn: YubiKey and others) as a second factor,
//! with webauthn-rs's security-key policy.
//!
//! The relying party is the public address (`public_url`; `localhost` on
//! any port for the zero-config start). Registration and sign-in are two
//! round trips; the state in between is sealed into the database (the
//! pending factor, or a per-session challenge), never kept in one
//! process's memory, so any process can finish what another started. A
//! signature counter that goes backwards means a cloned key: refused and
//! recorded.

use crate::FactorId;
use serde_json::Value;
use url::Url;
use webauthn_rs::prelude::{
    PublicKeyCredential, RegisterPublicKeyCredential, SecurityKey, SecurityKeyAuthentication, SecurityKeyRegistration,
    Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::account::{Account, AccountId};
use crate::audit::EventKind;
use crate::clock::Millis;
use crate::second_factor::{ENROLMENT_LIFETIME, FactorKind, SecondFactor};
use crate::service::{ClientInfo, Identity, IdentityError};
use crate::session::{Session, SessionStage};
use crate::store::{SecondStepProof, StoreError};
use crate::two_factor::SecondStepError;

const REGISTRATION_PURPOSE: &str = "webauthn-registration";
const KEY_PURPOSE: &str = "webauthn-key";
const CHALLENGE_PURPOSE: &str = "webauthn-authentication";
/// How long the browser has to touch the key at sign-in.
const CHALLENGE_LIFETIME: Millis = 5 * 60_000;

/// The relying party for `origin`; `None` when the origin cannot be one
/// (an IP address, say), in which case security keys are unavailable.
pub(crate) fn relying_party(origin: &Url, name: &str) -> Option<Webauthn> {
    let rp_id = origin.domain()?;
    WebauthnBuilder::new(rp_id, origin)
        .ok()?
        .allow_any_port(rp_id == "localhost")
        .rp_name(name)
        .build()
        .ok()
}

/// A key registration waiting for the touch.
#[derive(Debug, Clone)]
pub struct SecurityKeyChallenge {
    pub id: FactorId,
    /// `PublicKeyCredentialCreationOptions` (or request options at sign-in)
    /// for `navigator.credentials`, base64url-encoded buffers.
    pub options: Value,
}

fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("stored WebAuthn state does not read: {e}"))
}

impl Identity {
    fn relying_party(&self) -> Result<&Webauthn, IdentityError> {
        self.webauthn().ok_or(IdentityError::SecurityKeysUnavailable)
    }

    fn security_key(&self, factor: &SecondFactor) -> Result<SecurityKey, StoreError> {
        let bytes = self
            .key()
            .open(KEY_PURPOSE, factor.id.as_str(), &factor.secret)
            .ok_or_else(|| StoreError::Corrupt(format!("the key of factor {} does not decrypt", factor.id)))?;
        serde_json::from_slice(&bytes).map_err(json_error)
    }

    fn active_keys(&self, factors: &[SecondFactor]) -> Result<Vec<(FactorId, SecurityKey)>, StoreError> {
        factors
            .iter()
            .filter(|f| f.active && f.kind == FactorKind::SecurityKey)
            .map(|f| Ok((f.id.clone(), self.security_key(f)?)))
            .collect()
    }

    /// Starts registering a security key named `name`.
    pub async fn begin_security_key(
        &self,
        account: &Account,
        name: &str,
    ) -> Result<SecurityKeyChallenge, IdentityError> {
        let webauthn = self.relying_party()?;
        let name = crate::credential::parse_label(name).ok_or(IdentityError::InvalidName)?;
        let existing = self.active_keys(&self.store().second_factors(&account.id).await?)?;
        let exclude = existing.iter().map(|(_, k)| k.cred_id().clone()).collect();
        let user = uuid::Uuid::parse_str(account.id.as_str()).unwrap_or_else(|_| uuid::Uuid::new_v4());
        let (options, state) = webauthn
            .start_securitykey_registration(user, account.email.as_str(), &account.name, Some(exclude), None, None)
            .map_err(|e| IdentityError::SecurityKeyRefused(e.to_string()))?;
        let id = FactorId::generate();
        let now = self.now();
        let state = serde_json::to_vec(&state).map_err(|e| IdentityError::Store(json_error(e)))?;
        let factor = SecondFactor::pending(
            id.clone(),
            account.id.clone(),
            FactorKind::SecurityKey,
            name,
            self.key().seal(REGISTRATION_PURPOSE, id.as_str(), &state),
            now,
            ENROLMENT_LIFETIME,
        );
        self.store().insert_second_factor(&factor).await?;
        let options = serde_json::to_value(options).map_err(|e| IdentityError::Store(json_error(e)))?;
        Ok(SecurityKeyChallenge { id, options })
    }

    /// Finishes registering a key with the browser's answer. When this turns
    /// two-step verification on, returns the backup codes.
    pub async fn finish_security_key(
        &self,
        account_id: &AccountId,
        id: &FactorId,
        credential: Value,
        client: &ClientInfo,
    ) -> Result<Option<Vec<String>>, IdentityError> {
        let webauthn = self.relying_party()?;
        let now = self.now();
        let factor = self
            .store()
            .second_factors(account_id)
            .await?
            .into_iter()
            .find(|f| &f.id == id && !f.active && f.expires_at > now && f.kind == FactorKind::SecurityKey)
            .ok_or(IdentityError::NotFound)?;
        let state = self
            .key()
            .open(REGISTRATION_PURPOSE, factor.id.as_str(), &factor.secret)
            .ok_or_else(|| StoreError::Corrupt("a registration state does not decrypt".into()))?;
        let state: SecurityKeyRegistration = serde_json::from_slice(&state).map_err(json_error)?;
        let credential: RegisterPublicKeyCredential = serde_json::from_value(credential)
            .map_err(|e| IdentityError::SecurityKeyRefused(format!("not a WebAuthn credential: {e}")))?;
        let key = webauthn
            .finish_securitykey_registration(&credential, &state)
            .map_err(|e| IdentityError::SecurityKeyRefused(e.to_string()))?;
        let sealed = self.key().seal(
            KEY_PURPOSE,
            factor.id.as_str(),
            &serde_json::to_vec(&key).map_err(|e| IdentityError::Store(json_error(e)))?,
        );
        self.store().set_factor_secret(&factor.id, &sealed).await?;
        self.activate_factor(account_id, &factor, 0, client).await
    }

    /// At the second step: the options for `navigator.credentials.get`,
    /// covering every key of the account.
    pub async fn begin_security_key_sign_in(
        &self,
        session: &Session,
        account: &Account,
    ) -> Result<Value, SecondStepError> {
        if session.stage != SessionStage::SecondFactor || session.account_id != account.id {
            return Err(SecondStepError::NotPending);
        }
        let webauthn = self.relying_party().map_err(|_| SecondStepError::NoSecurityKey)?;
        let keys = self.active_keys(&self.store().second_factors(&account.id).await?)?;
        if keys.is_empty() {
            return Err(SecondStepError::NoSecurityKey);
        }
        let keys: Vec<SecurityKey> = keys.into_iter().map(|(_, k)| k).collect();
        let (options, state) = webauthn
            .start_securitykey_authentication(&keys)
            .map_err(|e| SecondStepError::Store(StoreError::Backend(e.to_string())))?;
        let state = serde_json::to_vec(&state).map_err(json_error)?;
        let sealed = self.key().seal(CHALLENGE_PURPOSE, session.id.as_str(), &state);
        self.store()
            .put_webauthn_challenge(&session.id, &sealed, self.now() + CHALLENGE_LIFETIME)
            .await?;
        Ok(serde_json::to_value(options).map_err(json_error)?)
    }

    /// The key a sign-in answer proves, with its updated counter.
    pub(crate) async fn security_key_proof(
        &self,
        session: &Session,
        account: &Account,
        credential: Value,
        client: &ClientInfo,
    ) -> Result<Option<SecondStepProof>, StoreError> {
        let Some(webauthn) = self.webauthn() else {
            return Ok(None);
        };
        let Some(sealed) = self.store().webauthn_challenge(&session.id, self.now()).await? else {
            return Ok(None);
        };
        let Some(state) = self.key().open(CHALLENGE_PURPOSE, session.id.as_str(), &sealed) else {
            return Ok(None);
        };
        let state: SecurityKeyAuthentication = serde_json::from_slice(&state).map_err(json_error)?;
        let Ok(credential) = serde_json::from_value::<PublicKeyCredential>(credential) else {
            return Ok(None);
        };
        let result = match webauthn.finish_securitykey_authentication(&credential, &state) {
            Ok(result) => result,
            Err(WebauthnError::CredentialPossibleCompromise) => {
                tracing::warn!(account = %account.id, "a security key's counter went backwards");
                self.record(&account.id, EventKind::SecurityKeyCloned, client, "")
                    .await?;
                return Ok(None);
            }
            Err(e) => {
                tracing::info!(error = %e, "a security key answer was refused");
                return Ok(None);
            }
        };
        for (factor_id, mut key) in self.active_keys(&self.store().second_factors(&account.id).await?)? {
            if key.cred_id() != result.cred_id() {
                continue;
            }
            key.update_credential(&result);
            let secret = self.key().seal(
                KEY_PURPOSE,
                factor_id.as_str(),
                &serde_json::to_vec(&key).map_err(json_error)?,
            );
            return Ok(Some(SecondStepProof::SecurityKey {
                factor_id,
                secret,
                counter: i64::from(result.counter()),
            }));
        }
        Ok(None)
    }
}
