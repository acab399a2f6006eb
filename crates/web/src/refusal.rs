//! Every domain refusal told once, for both faces of the web: the status
//! and stable code the API answers with, and the catalog key (with the
//! values it names) the console shows in the member's language. The API's
//! message is the domain error's own English text unless a row says
//! otherwise.
//!
//! A new error variant is added here, in one row, and both the API and the
//! console follow; the compiler points at the row when a variant is missing.

use axum::http::StatusCode as S;
use identity::credential::sms::PhoneRejected;
use identity::{IdentityError, OrgError, RoleError, SmsError};

use crate::error::ApiError;
use crate::i18n::Catalog;

/// How one refusal is told.
#[derive(Debug)]
pub struct Refusal {
    status: S,
    code: &'static str,
    /// The API's message.
    message: String,
    /// The console's message: a catalog key and the values it names.
    key: String,
    values: Vec<(&'static str, String)>,
    /// For a plural message: how many (`{count}`), which picks its form.
    count: Option<u64>,
    /// When trying again makes sense (the API's `Retry-After`).
    retry_after_ms: Option<i64>,
}

impl Refusal {
    fn new(status: S, code: &'static str, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            key: key.into(),
            values: Vec::new(),
            count: None,
            retry_after_ms: None,
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.values.push((name, value.into()));
        self
    }

    /// The number a plural message is about.
    fn count(mut self, n: i64) -> Self {
        self.count = Some(u64::try_from(n).unwrap_or(0));
        self
    }

    fn retry_after(mut self, ms: i64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }

    /// An unexpected failure: the detail goes to the log, never to people.
    fn internal(detail: impl std::fmt::Display) -> Self {
        let api = ApiError::internal(detail);
        Self::new(api.status, api.code, "error.internal", api.message)
    }

    /// Too many attempts: the console says seconds for a wait under a
    /// minute (a hashing turn, a first lock), minutes beyond.
    pub fn too_many_attempts(retry_after_ms: i64) -> Self {
        let api = ApiError::too_many_attempts(retry_after_ms);
        let refusal = Self::new(api.status, api.code, "", api.message).retry_after(retry_after_ms);
        if retry_after_ms < 60_000 {
            let seconds = ((retry_after_ms + 999) / 1000).max(1);
            Self {
                key: "signin.locked_seconds".into(),
                ..refusal
            }
            .count(seconds)
        } else {
            let minutes = (retry_after_ms + 59_999) / 60_000;
            Self {
                key: "signin.locked".into(),
                ..refusal
            }
            .count(minutes)
        }
    }

    /// The console's text, in the language of `t`.
    pub fn text(&self, t: &Catalog) -> String {
        let values: Vec<(&str, &str)> = self.values.iter().map(|(n, v)| (*n, v.as_str())).collect();
        match self.count {
            Some(n) => t.plural(&self.key, n, &values),
            None => t.tf(&self.key, &values),
        }
    }

    pub fn identity(e: &IdentityError) -> Self {
        let message = e.to_string();
        match e {
            IdentityError::Password(rejected) => Self::new(
                S::UNPROCESSABLE_ENTITY,
                rejected.code(),
                format!("password.{}", rejected.code()),
                rejected.to_string(),
            ),
            IdentityError::InvalidEmail(_) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_email", "error.invalid_email", message)
            }
            IdentityError::InvalidName => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_name", "error.invalid_name", message)
            }
            IdentityError::EmailTaken => Self::new(S::CONFLICT, "email_taken", "error.email_taken", message),
            IdentityError::OrganizationNameTaken => Self::new(
                S::CONFLICT,
                "organization_name_taken",
                "error.invalid_organization",
                message,
            ),
            IdentityError::Role(_) => Self::new(S::FORBIDDEN, "not_allowed", "error.invalid_organization", message),
            IdentityError::UnknownOrganization(_) => {
                Self::new(S::NOT_FOUND, "unknown_organization", "error.internal", message)
            }
            IdentityError::SetupUnavailable => Self::new(S::GONE, "setup_unavailable", "error.internal", message),
            IdentityError::WrongPassword => Self::new(
                S::BAD_REQUEST,
                "wrong_password",
                "password.wrong_current",
                "the current password is wrong",
            ),
            IdentityError::PasswordRequired => Self::new(
                S::FORBIDDEN,
                "password_required",
                "password.required",
                "confirm with your password (it counts for five minutes)",
            ),
            IdentityError::WrongCode => Self::new(S::BAD_REQUEST, "invalid_code", "two_factor.wrong_code", message),
            IdentityError::TwoFactorOff => Self::new(S::CONFLICT, "two_factor_off", "two_factor.off", message),
            // What the console can lose under its feet is an enrolment.
            IdentityError::NotFound => Self::new(S::NOT_FOUND, "not_found", "two_factor.enrolment_expired", message),
            IdentityError::Sms(inner) => Self::sms(inner),
            IdentityError::InvalidDeviceKey => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_device_key", "error.internal", message)
            }
            IdentityError::SecurityKeysUnavailable => Self::new(
                S::CONFLICT,
                "security_keys_unavailable",
                "security_key.unavailable",
                message,
            ),
            IdentityError::SecurityKeyRefused(_) => {
                Self::new(S::BAD_REQUEST, "security_key_refused", "security_key.refused", message)
            }
            IdentityError::TooManyAttempts { retry_after } => Self::too_many_attempts(*retry_after),
            IdentityError::MailRequired => Self::new(
                S::UNPROCESSABLE_ENTITY,
                "mail_required",
                "notifications.required",
                message,
            ),
            IdentityError::Store(inner) => Self::internal(inner),
        }
    }

    pub fn sms(e: &SmsError) -> Self {
        let message = e.to_string();
        match e {
            SmsError::Phone(PhoneRejected::Invalid) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_phone", "sms.invalid_phone", message)
            }
            SmsError::Phone(PhoneRejected::CountryNotAllowed { allowed }) => Self::new(
                S::UNPROCESSABLE_ENTITY,
                "phone_country_not_allowed",
                "sms.country_not_allowed",
                message,
            )
            .with("countries", allowed.clone()),
            SmsError::TooSoon { retry_after } => {
                Self::new(S::TOO_MANY_REQUESTS, "sms_too_soon", "sms.too_soon", message)
                    .count((retry_after + 999) / 1000)
                    .retry_after(*retry_after)
            }
            SmsError::DailyCap { retry_after } => {
                Self::new(S::TOO_MANY_REQUESTS, "sms_daily_limit", "sms.daily_limit", message).retry_after(*retry_after)
            }
            SmsError::Send(inner) => {
                tracing::warn!(error = %inner, "SMS delivery failed");
                Self::new(
                    S::BAD_GATEWAY,
                    "sms_failed",
                    "sms.failed",
                    "the SMS could not be sent; try again later or use another method",
                )
            }
            SmsError::NoNumber => Self::new(S::CONFLICT, "no_sms_method", "sms.no_number", message),
        }
    }

    pub fn org(e: &OrgError) -> Self {
        let message = e.to_string();
        match e {
            OrgError::NotFound => Self::new(S::NOT_FOUND, "not_found", "org.not_found", message),
            OrgError::NotAllowed(RoleError::LastLegalRepresentative) => {
                Self::new(S::CONFLICT, "last_legal_representative", "org.last_lr", message)
            }
            OrgError::NotAllowed(RoleError::LegalRepresentativeOnly) => {
                Self::new(S::FORBIDDEN, "not_allowed", "org.lr_only", message)
            }
            OrgError::NotAllowed(_) => Self::new(S::FORBIDDEN, "not_allowed", "org.not_allowed", message),
            OrgError::ActorNeedsTwoFactor => Self::new(
                S::FORBIDDEN,
                "two_factor_required_for_you",
                "org.actor_needs_2fa",
                message,
            ),
            OrgError::NotConfirmed => Self::new(S::BAD_REQUEST, "confirmation_required", "org.confirm_needed", message),
            OrgError::InvalidGrace => Self::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_grace_days",
                "org.invalid_grace",
                message,
            ),
            OrgError::InvalidEmail(_) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_email", "error.invalid_email", message)
            }
            OrgError::AlreadyMember(email) => {
                Self::new(S::CONFLICT, "already_member", "org.already_member", message).with("email", email.clone())
            }
            OrgError::WrongInvitee => Self::new(S::FORBIDDEN, "wrong_invitee", "org.wrong_invitee", message),
            OrgError::InvitationUnavailable => {
                Self::new(S::GONE, "invitation_unavailable", "org.invitation_unavailable", message)
            }
            OrgError::AlertTooSoon { retry_after } => {
                Self::new(S::TOO_MANY_REQUESTS, "alert_too_soon", "org.alert_too_soon", message)
                    .retry_after(*retry_after)
            }
            OrgError::Identity(inner) => Self::identity(inner),
            OrgError::Store(inner) => Self::internal(inner),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        Self {
            status: r.status,
            code: r.code,
            message: r.message,
            retry_after_secs: r.retry_after_ms.map(|ms| ((ms + 999) / 1000).max(1)),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        Refusal::identity(&e).into()
    }
}

impl From<SmsError> for ApiError {
    fn from(e: SmsError) -> Self {
        Refusal::sms(&e).into()
    }
}

impl From<OrgError> for ApiError {
    fn from(e: OrgError) -> Self {
        Refusal::org(&e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    /// Every key a refusal names exists in every language.
    #[test]
    fn every_refusal_has_a_message_in_every_language() {
        let refusals = [
            Refusal::identity(&IdentityError::WrongPassword),
            Refusal::identity(&IdentityError::NotFound),
            Refusal::identity(&IdentityError::MailRequired),
            Refusal::too_many_attempts(5_000),
            Refusal::too_many_attempts(600_000),
            Refusal::sms(&SmsError::NoNumber),
            Refusal::sms(&SmsError::TooSoon { retry_after: 30_000 }),
            Refusal::org(&OrgError::InvalidGrace),
            Refusal::org(&OrgError::AlreadyMember("a@example.org".into())),
        ];
        for lang in Lang::ALL {
            for r in &refusals {
                let text = r.text(lang.catalog());
                assert_ne!(text, r.key, "{} missing in {}", r.key, lang.code());
                assert!(!text.contains('{'), "{text}: a value is missing");
            }
        }
    }

    #[test]
    fn the_api_and_the_console_tell_a_wait_alike() {
        let api = ApiError::from(Refusal::too_many_attempts(90_000));
        assert_eq!(
            (api.status, api.code, api.retry_after_secs),
            (S::TOO_MANY_REQUESTS, "too_many_attempts", Some(90))
        );
        let text = Refusal::too_many_attempts(90_000).text(Lang::En.catalog());
        assert!(text.contains("in 2 minutes"), "{text}: rounded up to minutes");
        let text = Refusal::too_many_attempts(30_000).text(Lang::Es.catalog());
        assert!(text.ends_with("dentro de 30 segundos."), "{text}");
        let text = Refusal::too_many_attempts(60_000).text(Lang::Es.catalog());
        assert!(text.ends_with("dentro de 1 minuto."), "{text}: singular");
    }
}
