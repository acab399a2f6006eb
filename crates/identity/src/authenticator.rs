//! The companion authenticator app (`cloudkeep-authenticator`) as a second
//! factor: linking a device, and its offline codes.
//!
//! The console (or API) makes a single-use link, valid ten minutes; the app
//! takes it, sends the public half of a new Ed25519 device key, and gets a
//! TOTP seed shared with the server, so it can show 30-second codes without
//! network. The device key will sign push approvals; the codes are accepted
//! at the second step like any TOTP app's. The protocol is in
//! `docs/authenticator.md`.

use crate::FactorId;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::credential::totp::TotpSecret;
use crate::second_factor::{ENROLMENT_LIFETIME, FactorKind, SecondFactor};
use crate::secrets::{random_token, token_hash};
use crate::service::{ClientInfo, Identity, IdentityError};
use crate::store::StoreError;

const APP_PURPOSE: &str = "authenticator-device";
const CODES_PURPOSE: &str = "authenticator-backup-codes";
pub const LINK_LIFETIME: Millis = ENROLMENT_LIFETIME;

/// What the server keeps about a linked device (sealed).
#[derive(Serialize, Deserialize)]
struct Device {
    /// Base32 TOTP seed shared with the app.
    totp: String,
    /// The device's Ed25519 public key, base64url.
    public_key: String,
}

/// A link waiting for a device.
#[derive(Debug, Clone)]
pub struct AuthenticatorLink {
    pub id: FactorId,
    /// The single-use token in the link.
    pub token: String,
}

/// What the app receives when it links.
#[derive(Debug, Clone, Serialize)]
pub struct LinkedDevice {
    pub method_id: FactorId,
    pub email: String,
    pub issuer: String,
    /// Base32 TOTP seed for offline codes.
    pub totp_secret: String,
    /// When this turned two-step verification on: the ten backup codes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_codes: Option<Vec<String>>,
}

impl Identity {
    /// Prepares a device link for `name` ("Phone"); valid ten minutes.
    pub async fn begin_authenticator(
        &self,
        account: &crate::Account,
        name: &str,
    ) -> Result<AuthenticatorLink, IdentityError> {
        let name = crate::credential::parse_label(name).ok_or(IdentityError::InvalidName)?;
        let id = FactorId::generate();
        let now = self.now();
        // The device's key becomes the secret once it is linked.
        let factor = SecondFactor::pending(
            id.clone(),
            account.id.clone(),
            FactorKind::App,
            name,
            String::new(),
            now,
            LINK_LIFETIME,
        );
        self.store().insert_second_factor(&factor).await?;
        let token = random_token(32);
        self.store()
            .put_authenticator_link(&token_hash(&token), &id, &account.id, now + LINK_LIFETIME)
            .await?;
        Ok(AuthenticatorLink { id, token })
    }

    /// Registers the device that presents a link token and its public key.
    pub async fn link_authenticator(
        &self,
        token: &str,
        public_key: &str,
        client: &ClientInfo,
    ) -> Result<LinkedDevice, IdentityError> {
        let key = URL_SAFE_NO_PAD
            .decode(public_key.trim())
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok());
        if key.is_none() {
            return Err(IdentityError::InvalidDeviceKey);
        }
        let now = self.now();
        let (factor_id, account_id) = self
            .store()
            .take_authenticator_link(&token_hash(token), now)
            .await?
            .ok_or(IdentityError::NotFound)?;
        let account = self
            .store()
            .account_by_id(&account_id)
            .await?
            .ok_or(IdentityError::NotFound)?;
        let factor = self
            .store()
            .second_factors(&account_id)
            .await?
            .into_iter()
            .find(|f| f.id == factor_id && !f.active && f.expires_at > now)
            .ok_or(IdentityError::NotFound)?;
        let secret = TotpSecret::generate();
        let device = Device {
            totp: secret.base32(),
            public_key: public_key.trim().to_owned(),
        };
        let sealed = self.key().seal(
            APP_PURPOSE,
            factor.id.as_str(),
            &serde_json::to_vec(&device).expect("a device serializes"),
        );
        self.store().set_factor_secret(&factor.id, &sealed).await?;
        let backup_codes = self.activate_factor(&account_id, &factor, 0, client).await?;
        if let Some(codes) = &backup_codes {
            // The console that made the link shows them too, once.
            let sealed = self
                .key()
                .seal(CODES_PURPOSE, factor.id.as_str(), codes.join("\n").as_bytes());
            self.store()
                .put_linked_backup_codes(&factor.id, &account_id, &sealed, now + LINK_LIFETIME)
                .await?;
        }
        Ok(LinkedDevice {
            method_id: factor.id,
            email: account.email.to_string(),
            issuer: self.issuer().to_owned(),
            totp_secret: secret.base32(),
            backup_codes,
        })
    }

    /// Whether the device behind a link has linked (the method is active),
    /// and, the first time it is asked after linking turned two-step
    /// verification on, the backup codes to show.
    pub async fn linked_device(
        &self,
        account: &crate::Account,
        factor_id: &FactorId,
    ) -> Result<(bool, Option<Vec<String>>), StoreError> {
        let linked = self
            .store()
            .second_factor(factor_id)
            .await?
            .is_some_and(|f| f.account_id == account.id && f.active && f.kind == FactorKind::App);
        if !linked {
            return Ok((false, None));
        }
        let sealed = self
            .store()
            .take_linked_backup_codes(factor_id, &account.id, self.now())
            .await?;
        let codes = sealed
            .and_then(|s| self.key().open(CODES_PURPOSE, factor_id.as_str(), &s))
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map(|text| text.lines().map(str::to_owned).collect());
        Ok((true, codes))
    }

    fn app_device(&self, factor: &SecondFactor) -> Result<Device, StoreError> {
        let bytes = self
            .key()
            .open(APP_PURPOSE, factor.id.as_str(), &factor.secret)
            .ok_or_else(|| StoreError::Corrupt(format!("the device of factor {} does not decrypt", factor.id)))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("a stored device does not read: {e}")))
    }

    /// The public key a linked device signs with.
    pub(crate) fn app_public_key(&self, factor: &SecondFactor) -> Result<ed25519_dalek::VerifyingKey, StoreError> {
        let device = self.app_device(factor)?;
        URL_SAFE_NO_PAD
            .decode(device.public_key.as_bytes())
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
            .ok_or_else(|| StoreError::Corrupt(format!("the device key of factor {} is damaged", factor.id)))
    }

    /// The TOTP seed of a linked device.
    pub(crate) fn app_totp_secret(&self, factor: &SecondFactor) -> Result<TotpSecret, StoreError> {
        let device = self.app_device(factor)?;
        let seed = data_encoding::BASE32_NOPAD
            .decode(device.totp.as_bytes())
            .map_err(|_| StoreError::Corrupt("a stored device seed is not base32".into()))?;
        Ok(TotpSecret::from_bytes(seed))
    }
}
