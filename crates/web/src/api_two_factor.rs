//! The JSON API for two-step verification and application passwords.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use identity::FactorId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{ApiJson, ApiJsonOrEmpty, ApiPath, request_lang};
use crate::auth::ApiUser;
use crate::error::{ApiError, ErrorBody};

#[derive(Serialize, ToSchema)]
pub struct TwoFactorBody {
    enabled: bool,
    methods: Vec<EnrolledMethod>,
    backup_codes_remaining: usize,
    /// The kind offered first at sign-in (`totp`, `sms`); absent while
    /// 2FA is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    default_method: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EnrolledMethod {
    id: String,
    /// `totp`
    kind: String,
    name: String,
    created_at: i64,
    /// 0 when never used.
    last_used_at: i64,
}

/// Whether two-step verification is on, the enrolled methods, and how many
/// backup codes are left.
#[utoipa::path(get, path = "/api/v1/me/two-factor", tag = "two-factor", security(("session" = [])),
    responses((status = 200, body = TwoFactorBody), (status = 401, description = "`not_signed_in`", body = ErrorBody)))]
pub async fn status(State(state): State<AppState>, ApiUser(user): ApiUser) -> Result<Json<TwoFactorBody>, ApiError> {
    let s = state.identity().two_factor(&user.account.id).await?;
    Ok(Json(TwoFactorBody {
        enabled: s.enabled,
        methods: s
            .methods
            .into_iter()
            .map(|m| EnrolledMethod {
                id: m.id.into_string(),
                kind: m.kind.as_str().to_owned(),
                name: m.name,
                created_at: m.created_at,
                last_used_at: m.last_used_at,
            })
            .collect(),
        backup_codes_remaining: s.backup_codes_remaining,
        default_method: s.default_method.map(|k| k.as_str().to_owned()),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct DefaultMethodBody {
    /// `totp` or `sms`: an enrolled kind.
    method: String,
}

/// Choose the method offered first at sign-in.
#[utoipa::path(put, path = "/api/v1/me/two-factor/default", tag = "two-factor", security(("session" = [])), request_body = DefaultMethodBody,
    responses(
        (status = 204, description = "Chosen"),
        (status = 400, description = "`invalid_request`: not a method kind", body = ErrorBody),
        (status = 404, description = "`not_found`: no such method is enrolled", body = ErrorBody),
    ))]
pub async fn set_default_method(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<DefaultMethodBody>,
) -> Result<StatusCode, ApiError> {
    let kind = identity::FactorKind::parse(&body.method)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", "method must be totp or sms"))?;
    state.identity().set_default_method(&user.account.id, kind).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct NameBody {
    /// The member's name for it ("Phone", "NAS QNAP"): 1 to 60 characters.
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrollmentBody {
    id: String,
    /// Base32, for typing into the app by hand.
    secret: String,
    otpauth_uri: String,
    /// The `otpauth_uri` as a QR code, an `<svg>` element.
    qr_svg: String,
}

/// Start enrolling an authenticator app (TOTP). Pending until confirmed
/// with a code; unconfirmed enrolments expire after ten minutes.
#[utoipa::path(post, path = "/api/v1/me/two-factor/totp", tag = "two-factor", security(("session" = [])), request_body = NameBody,
    responses((status = 200, body = TotpEnrollmentBody), (status = 422, description = "`invalid_name`", body = ErrorBody)))]
pub async fn begin_totp(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Json<TotpEnrollmentBody>, ApiError> {
    let e = state.identity().begin_totp(&user.account, &body.name).await?;
    let qr_svg = crate::qr::svg(&e.otpauth_uri).ok_or_else(|| ApiError::internal("QR code too long"))?;
    Ok(Json(TotpEnrollmentBody {
        id: e.id.into_string(),
        secret: e.secret,
        otpauth_uri: e.otpauth_uri,
        qr_svg,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct CodeBody {
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct BackupCodesBody {
    /// Present when this turned two-step verification on: the ten backup
    /// codes, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_codes: Option<Vec<String>>,
}

/// Confirm an enrolment with a current code from the app.
#[utoipa::path(post, path = "/api/v1/me/two-factor/totp/{id}/confirm", tag = "two-factor", security(("session" = [])),
    params(("id" = String, Path, description = "Enrolment id")), request_body = CodeBody,
    responses(
        (status = 200, description = "Enrolled; `backup_codes` when this turned 2FA on, else `{}`", body = BackupCodesBody),
        (status = 400, description = "`invalid_code`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such pending enrolment (it may have expired)", body = ErrorBody),
    ))]
pub async fn confirm_totp(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<FactorId>,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Json<BackupCodesBody>, ApiError> {
    let backup_codes = state
        .identity()
        .confirm_totp(&user.account.id, &id, &body.code, &user.client)
        .await?;
    Ok(Json(BackupCodesBody { backup_codes }))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct PasswordBody {
    /// The account password; may be left out within five minutes of
    /// giving it in this session.
    #[serde(default)]
    password: Option<String>,
}

/// Remove a method (or abandon a pending enrolment). Removing the last one
/// turns two-step verification off and deletes the backup codes.
#[utoipa::path(delete, path = "/api/v1/me/two-factor/methods/{id}", tag = "two-factor", security(("session" = [])),
    params(("id" = String, Path, description = "Method id")), request_body = PasswordBody,
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`wrong_password`", body = ErrorBody),
        (status = 403, description = "`password_required`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many wrong passwords; see `Retry-After`", body = ErrorBody),
    ))]
pub async fn remove_method(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<FactorId>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    state
        .identity()
        .remove_second_factor(
            &user.session,
            &user.account,
            &id,
            body.password.as_deref(),
            &user.client,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct RequiredPasswordBody {
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct NewBackupCodesBody {
    backup_codes: Vec<String>,
}

/// Ten new backup codes; the old ones stop working at once.
#[utoipa::path(post, path = "/api/v1/me/two-factor/backup-codes", tag = "two-factor", security(("session" = [])), request_body = RequiredPasswordBody,
    responses(
        (status = 200, body = NewBackupCodesBody),
        (status = 400, description = "`wrong_password`", body = ErrorBody),
        (status = 409, description = "`two_factor_off`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many wrong passwords; see `Retry-After`", body = ErrorBody),
    ))]
pub async fn regenerate_backup_codes(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<RequiredPasswordBody>,
) -> Result<Json<NewBackupCodesBody>, ApiError> {
    let backup_codes = state
        .identity()
        .regenerate_backup_codes(&user.session, &user.account, &body.password, &user.client)
        .await?;
    Ok(Json(NewBackupCodesBody { backup_codes }))
}

#[derive(Serialize, ToSchema)]
pub struct AppPasswordsBody {
    app_passwords: Vec<AppPasswordBody>,
}

#[derive(Serialize, ToSchema)]
pub struct AppPasswordBody {
    id: String,
    name: String,
    created_at: i64,
    /// 0 when never used.
    last_used_at: i64,
    last_used_ip: String,
}

/// The account's application passwords, newest first.
#[utoipa::path(get, path = "/api/v1/me/app-passwords", tag = "app-passwords", security(("session" = [])),
    responses((status = 200, body = AppPasswordsBody)))]
pub async fn list_app_passwords(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<AppPasswordsBody>, ApiError> {
    let list = state.identity().app_passwords(&user.account.id).await?;
    Ok(Json(AppPasswordsBody {
        app_passwords: list
            .into_iter()
            .map(|p| AppPasswordBody {
                id: p.id.into_string(),
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
                last_used_ip: p.last_used_ip,
            })
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct NewAppPasswordBody {
    id: String,
    name: String,
    /// Shown this once: `xxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxx`.
    password: String,
}

/// Create an application password for a sync, mail or calendar client.
/// It works for WebDAV, CalDAV, CardDAV and IMAP, never for the console or
/// this API.
#[utoipa::path(post, path = "/api/v1/me/app-passwords", tag = "app-passwords", security(("session" = [])), request_body = NameBody,
    responses((status = 201, body = NewAppPasswordBody), (status = 422, description = "`invalid_name`", body = ErrorBody)))]
pub async fn create_app_password(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Response, ApiError> {
    let (created, password) = state
        .identity()
        .create_app_password(&user.account, &body.name, &user.client)
        .await?;
    let body = NewAppPasswordBody {
        id: created.id.into_string(),
        name: created.name,
        password,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Revoke an application password; clients using it are refused at once.
#[utoipa::path(delete, path = "/api/v1/me/app-passwords/{id}", tag = "app-passwords", security(("session" = [])),
    params(("id" = String, Path, description = "Application password id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "`not_found`", body = ErrorBody)))]
pub async fn revoke_app_password(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<identity::AppPasswordId>,
) -> Result<StatusCode, ApiError> {
    if state
        .identity()
        .revoke_app_password(&user.account.id, &id, &user.client)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such application password",
        ))
    }
}

#[derive(Deserialize, ToSchema)]
pub struct PhoneBody {
    /// In international form: `+41 79 123 45 67`. Only numbers of the
    /// allowed countries (by default CH, FR, BE, DE) are accepted.
    phone: String,
}

#[derive(Serialize, ToSchema)]
pub struct SmsEnrollmentBody {
    id: String,
    /// The number, masked: `+41 •••• 4567`.
    phone: String,
}

/// Start enrolling a mobile number: a code is sent to it by SMS.
#[utoipa::path(post, path = "/api/v1/me/two-factor/sms", tag = "two-factor", security(("session" = [])), request_body = PhoneBody,
    responses(
        (status = 200, body = SmsEnrollmentBody),
        (status = 422, description = "`invalid_phone` or `phone_country_not_allowed` (the message names the allowed countries)", body = ErrorBody),
        (status = 429, description = "`sms_too_soon` or `sms_daily_limit`; see `Retry-After`", body = ErrorBody),
        (status = 502, description = "`sms_failed`", body = ErrorBody),
    ))]
pub async fn begin_sms(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PhoneBody>,
) -> Result<Json<SmsEnrollmentBody>, ApiError> {
    let e = state
        .identity()
        .begin_sms(&user.account, &body.phone, request_lang(&headers))
        .await?;
    Ok(Json(SmsEnrollmentBody {
        id: e.id.into_string(),
        phone: e.phone,
    }))
}

/// Confirm a number with the code it received.
#[utoipa::path(post, path = "/api/v1/me/two-factor/sms/{id}/confirm", tag = "two-factor", security(("session" = [])),
    params(("id" = String, Path, description = "Enrolment id")), request_body = CodeBody,
    responses(
        (status = 200, description = "Enrolled; `backup_codes` when this turned 2FA on, else `{}`", body = BackupCodesBody),
        (status = 400, description = "`invalid_code`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such pending enrolment (it may have expired)", body = ErrorBody),
    ))]
pub async fn confirm_sms(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<FactorId>,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Json<BackupCodesBody>, ApiError> {
    let backup_codes = state
        .identity()
        .confirm_sms(&user.account.id, &id, &body.code, &user.client)
        .await?;
    Ok(Json(BackupCodesBody { backup_codes }))
}

/// Send another code to a number being enrolled (after 60 seconds).
#[utoipa::path(post, path = "/api/v1/me/two-factor/sms/{id}/resend", tag = "two-factor", security(("session" = [])),
    params(("id" = String, Path, description = "Enrolment id")),
    responses(
        (status = 200, body = SmsEnrollmentBody),
        (status = 429, description = "`sms_too_soon` or `sms_daily_limit`", body = ErrorBody),
    ))]
pub async fn resend_sms(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    headers: HeaderMap,
    ApiPath(id): ApiPath<FactorId>,
) -> Result<Json<SmsEnrollmentBody>, ApiError> {
    let phone = state
        .identity()
        .resend_sms_enrolment(&user.account, &id, request_lang(&headers))
        .await?;
    Ok(Json(SmsEnrollmentBody {
        id: id.into_string(),
        phone,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct SecurityKeyChallengeBody {
    id: String,
    /// Options for `navigator.credentials.create` (`{"publicKey": …}`,
    /// buffers base64url-encoded).
    #[schema(value_type = Object)]
    public_key: serde_json::Value,
}

/// Start registering a security key (FIDO2/WebAuthn).
#[utoipa::path(post, path = "/api/v1/me/two-factor/security-keys", tag = "two-factor", security(("session" = [])), request_body = NameBody,
    responses(
        (status = 200, body = SecurityKeyChallengeBody),
        (status = 409, description = "`security_keys_unavailable`: `public_url` is not a domain name", body = ErrorBody),
        (status = 422, description = "`invalid_name`", body = ErrorBody),
    ))]
pub async fn begin_security_key(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Json<SecurityKeyChallengeBody>, ApiError> {
    let c = state.identity().begin_security_key(&user.account, &body.name).await?;
    Ok(Json(SecurityKeyChallengeBody {
        id: c.id.into_string(),
        public_key: c.options,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct CredentialBody {
    /// The `PublicKeyCredential` from `navigator.credentials.create`,
    /// buffers base64url-encoded.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
}

/// Finish registering a security key with the browser's answer.
#[utoipa::path(post, path = "/api/v1/me/two-factor/security-keys/{id}", tag = "two-factor", security(("session" = [])),
    params(("id" = String, Path, description = "Registration id")), request_body = CredentialBody,
    responses(
        (status = 200, description = "Enrolled; `backup_codes` when this turned 2FA on, else `{}`", body = BackupCodesBody),
        (status = 400, description = "`security_key_refused`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such registration (it may have expired)", body = ErrorBody),
    ))]
pub async fn finish_security_key(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<FactorId>,
    ApiJson(body): ApiJson<CredentialBody>,
) -> Result<Json<BackupCodesBody>, ApiError> {
    let backup_codes = state
        .identity()
        .finish_security_key(&user.account.id, &id, body.credential, &user.client)
        .await?;
    Ok(Json(BackupCodesBody { backup_codes }))
}

#[derive(Serialize, ToSchema)]
pub struct AuthenticatorLinkBody {
    id: String,
    /// The single-use link (ten minutes) for `cloudkeep-authenticator link`.
    link: String,
    /// The link as a QR code, an `<svg>` element.
    qr_svg: String,
}

/// The link that registers a device running the authenticator app.
pub(crate) fn authenticator_link(base: &str, token: &str) -> String {
    format!("{base}/authenticator/{token}")
}

/// Start linking the authenticator app: a single-use link for the device.
#[utoipa::path(post, path = "/api/v1/me/two-factor/authenticator", tag = "two-factor", security(("session" = [])), request_body = NameBody,
    responses((status = 200, body = AuthenticatorLinkBody), (status = 422, description = "`invalid_name`", body = ErrorBody)))]
pub async fn begin_authenticator(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Json<AuthenticatorLinkBody>, ApiError> {
    let created = state.identity().begin_authenticator(&user.account, &body.name).await?;
    let link = authenticator_link(&state.config().base_url(&headers), &created.token);
    let qr_svg = crate::qr::svg(&link).ok_or_else(|| ApiError::internal("QR code too long"))?;
    Ok(Json(AuthenticatorLinkBody {
        id: created.id.into_string(),
        link,
        qr_svg,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct DeviceLinkBody {
    /// The token at the end of the link.
    token: String,
    /// The device's Ed25519 public key, 32 bytes base64url.
    public_key: String,
}

#[derive(Serialize, ToSchema)]
pub struct LinkedDeviceBody {
    method_id: String,
    email: String,
    issuer: String,
    /// Base32 TOTP seed for the device's offline codes (SHA-1, 6 digits, 30 s).
    totp_secret: String,
    /// When this turned two-step verification on: the ten backup codes.
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_codes: Option<Vec<String>>,
}

/// Called by the app: registers the device behind a link. The link token is
/// the credential; it works once.
#[utoipa::path(post, path = "/api/v1/authenticator/link", tag = "authenticator", request_body = DeviceLinkBody,
    responses(
        (status = 200, body = LinkedDeviceBody),
        (status = 404, description = "`not_found`: the link was used or has expired", body = ErrorBody),
        (status = 422, description = "`invalid_device_key`", body = ErrorBody),
    ))]
pub async fn link_authenticator(
    State(state): State<AppState>,
    crate::auth::Client(client): crate::auth::Client,
    ApiJson(body): ApiJson<DeviceLinkBody>,
) -> Result<Json<LinkedDeviceBody>, ApiError> {
    let d = state
        .identity()
        .link_authenticator(&body.token, &body.public_key, &client)
        .await
        .map_err(|e| match e {
            identity::IdentityError::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "this link was used or has expired; make a new one",
            ),
            other => ApiError::from(other),
        })?;
    Ok(Json(LinkedDeviceBody {
        method_id: d.method_id.into_string(),
        email: d.email,
        issuer: d.issuer,
        totp_secret: d.totp_secret,
        backup_codes: d.backup_codes,
    }))
}
