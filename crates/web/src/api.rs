//! The JSON API under `/api/v1`, plus `/healthz`, `/readyz` and
//! `/metrics`. Every route is registered through utoipa-axum's `routes!`,
//! so the OpenAPI document is generated from the same code that serves it
//! and cannot miss a route.

use std::sync::OnceLock;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use identity::{SecondStepError, SignIn, SignInError, StepRequest};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{ApiPending, ApiSession, ApiUser, Client, DEVICE_COOKIE, sign_in_cookies, sign_out_cookie};
use crate::cookies;
use crate::error::{ApiError, ErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(title = "cloudkeep", description = "Account and sync server. Times are milliseconds since the Unix epoch. Errors are {\"error\":{\"code\",\"message\"}} with stable codes."),
    modifiers(&CookieAuth),
    tags((name = "session", description = "Signing in and out"), (name = "me", description = "The signed-in account"),
        (name = "two-factor", description = "Two-step verification"), (name = "app-passwords", description = "Application passwords for sync and mail clients"),
        (name = "authenticator", description = "The protocol of the cloudkeep-authenticator app"),
        (name = "drives", description = "Drives: an organization's shared folders"),
        (name = "organizations", description = "Members, invitations, security alerts and the two-step verification requirement"), (name = "operations", description = "Health and metrics"))
)]
struct ApiDoc;

struct CookieAuth;

impl Modify for CookieAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(utoipa::openapi::security::HttpAuthScheme::Bearer)
                    .description(Some("The operator's `metrics_token` (`CLOUDKEEP_METRICS_TOKEN`)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "ck_session",
                "Set by POST /api/v1/session (named __Host-ck_session over TLS)",
            ))),
        );
    }
}

fn build() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_session, delete_session))
        .routes(routes!(second_factor))
        .routes(routes!(crate::api_two_factor::status))
        .routes(routes!(crate::api_two_factor::set_default_method))
        .routes(routes!(crate::api_two_factor::begin_totp))
        .routes(routes!(crate::api_two_factor::confirm_totp))
        .routes(routes!(crate::api_two_factor::remove_method))
        .routes(routes!(crate::api_two_factor::regenerate_backup_codes))
        .routes(routes!(crate::api_two_factor::begin_sms))
        .routes(routes!(crate::api_two_factor::confirm_sms))
        .routes(routes!(crate::api_two_factor::resend_sms))
        .routes(routes!(crate::api_two_factor::begin_authenticator))
        .routes(routes!(crate::api_two_factor::link_authenticator))
        .routes(routes!(crate::api_push::status))
        .routes(routes!(crate::api_push::poll))
        .routes(routes!(crate::api_push::answer))
        .routes(routes!(crate::api_two_factor::begin_security_key))
        .routes(routes!(crate::api_two_factor::finish_security_key))
        .routes(routes!(
            crate::api_two_factor::list_app_passwords,
            crate::api_two_factor::create_app_password
        ))
        .routes(routes!(crate::api_two_factor::revoke_app_password))
        .routes(routes!(crate::api_drive::list))
        .routes(routes!(crate::api_drive::create))
        .routes(routes!(crate::api_drive::start_import, crate::api_drive::imports))
        .routes(routes!(crate::api_drive::import))
        .routes(routes!(crate::api_drive::cancel_import))
        .routes(routes!(crate::api_drive::access, crate::api_drive::set_member_access))
        .routes(routes!(crate::api_drive::set_rule, crate::api_drive::remove_rule))
        .routes(routes!(crate::api_org::members))
        .routes(routes!(crate::api_org::invite, crate::api_org::invitations))
        .routes(routes!(crate::api_org::resend_invitation))
        .routes(routes!(crate::api_org::revoke_invitation))
        .routes(routes!(crate::api_org::set_role, crate::api_org::remove_member))
        .routes(routes!(crate::api_org::leave))
        .routes(routes!(crate::api_org::security_alert))
        .routes(routes!(crate::api_org::security_alerts))
        .routes(routes!(crate::api_org::policy, crate::api_org::set_policy))
        .routes(routes!(crate::api_org::events))
        .routes(routes!(crate::api_org::accept))
        .routes(routes!(me))
        .routes(routes!(notifications, set_notification))
        .routes(routes!(change_password))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(list_events))
        .routes(routes!(openapi_json))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .split_for_parts()
}

static DOCUMENT: OnceLock<String> = OnceLock::new();

pub fn openapi_document() -> String {
    DOCUMENT
        .get_or_init(|| {
            let mut document = build().1;
            declare_common_responses(&mut document);
            document.to_pretty_json().expect("the OpenAPI document serializes")
        })
        .clone()
}

/// Declares, on every operation, the refusals that come from the shared
/// extractors and guards rather than from the handler, so each
/// operation's annotation lists only what its own logic answers. The
/// rules follow what the code does, from what the annotation already
/// says:
///
/// - signed in (the `session` security scheme, through [`ApiUser`],
///   [`ApiSession`] or [`ApiPending`]): `401` `not_signed_in` / `second_factor_required`,
///   and `403` `two_factor_enrollment_required` ([`ApiUser`]);
/// - anything but `GET`: `403` `cross_origin_request` (`guard::protect`);
/// - path parameters ([`ApiPath`]): `404` `not_found`;
/// - query parameters ([`ApiQuery`]): `400` `invalid_request`;
/// - a JSON body ([`ApiJson`]): `400` `invalid_json` / `invalid_request`
///   and `415` `unsupported_media_type`.
///
/// A status an operation already declares keeps its description, with the
/// common one added after it. The
/// black-box fuzz test (`tests/api_fuzz.rs`) checks that every status
/// answered is declared.
fn declare_common_responses(document: &mut utoipa::openapi::OpenApi) {
    use std::collections::btree_map::Entry;
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in document.paths.paths.values_mut() {
        let operations = [
            (false, item.get.as_mut()),
            (true, item.put.as_mut()),
            (true, item.post.as_mut()),
            (true, item.delete.as_mut()),
            (true, item.patch.as_mut()),
        ];
        for (changes_state, operation) in operations {
            let Some(operation) = operation else { continue };
            // (A requirement's schemes are private fields: read as JSON.)
            let signed_in = operation
                .security
                .iter()
                .flatten()
                .any(|r| serde_json::to_value(r).is_ok_and(|v| v.get("session").is_some()));
            let takes = |place: ParameterIn| operation.parameters.iter().flatten().any(|p| p.parameter_in == place);
            let (path_ids, query) = (takes(ParameterIn::Path), takes(ParameterIn::Query));
            let body = operation.request_body.is_some();
            let mut common = Vec::new();
            if body {
                common.push((
                    "400",
                    "`invalid_json` or `invalid_request`: the body is not JSON of the expected shape",
                ));
            } else if query {
                common.push(("400", "`invalid_request`: a query parameter does not parse"));
            }
            if signed_in {
                common.push((
                    "401",
                    "`not_signed_in`, or `second_factor_required` for a session that passed only the password",
                ));
            }
            match (signed_in, changes_state) {
                (true, true) => common.push((
                    "403",
                    "`two_factor_enrollment_required` (an organization requires two-step verification) or `cross_origin_request`",
                )),
                (true, false) => common.push((
                    "403",
                    "`two_factor_enrollment_required`: an organization requires two-step verification",
                )),
                (false, true) => common.push(("403", "`cross_origin_request`: sent by another site")),
                (false, false) => {}
            }
            if path_ids {
                common.push(("404", "`not_found`: nothing has that id (or it is not yours)"));
            }
            if body {
                common.push(("415", "`unsupported_media_type`: send `Content-Type: application/json`"));
            }
            for (status, description) in common {
                match operation.responses.responses.entry(status.to_owned()) {
                    Entry::Vacant(entry) => {
                        entry.insert(error(description).into());
                    }
                    Entry::Occupied(mut entry) => {
                        if let RefOr::T(declared) = entry.get_mut() {
                            declared.description = if declared.description.is_empty() {
                                description.to_owned()
                            } else {
                                format!("{}; or {description}", declared.description)
                            };
                        }
                    }
                }
            }
        }
    }
}

pub fn routes() -> Router<AppState> {
    build().0
}

/// Path parameters. A segment that cannot be what the route takes (a
/// drive number that is not a number, or too large for one) names
/// nothing: `404 not_found`, the answer for an id that does not exist,
/// never axum's plain-text `400`.
pub struct ApiPath<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => {
                tracing::debug!(reason = %rejection.body_text(), "path parameters name nothing");
                Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource"))
            }
        }
    }
}

/// Query parameters; ones that do not parse are `400 invalid_request`
/// in JSON, like a body that does not.
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))
    }
}

/// A JSON body; anything else is refused with a JSON error.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send a JSON body with Content-Type: application/json",
            )),
            Err(JsonRejection::JsonSyntaxError(_)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the body is not valid JSON",
            )),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the JSON body does not have the expected fields: {}", e.body_text()),
            )),
            Err(other) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                other.body_text(),
            )),
        }
    }
}

/// A JSON body that may also be left out (then `T::default()`).
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T: serde::de::DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req.headers().get(header::CONTENT_TYPE).is_none()
            && req
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_none_or(|l| l.as_bytes() == b"0");
        if empty {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| ApiJsonOrEmpty(v))
    }
}

#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    status: String,
}

pub(crate) fn status(s: &str) -> Json<StatusBody> {
    Json(StatusBody { status: s.to_owned() })
}

#[derive(Deserialize, ToSchema)]
pub struct SignInBody {
    email: String,
    password: String,
    /// Keep me signed in: a persistent cookie instead of one that ends
    /// with the browser.
    #[serde(default)]
    remember: bool,
}

/// Sign in with email and password. With two-step verification on, the
/// answer is `second_factor_required` and the session cookie is set but
/// reaches nothing until `POST /api/v1/session/second-factor`.
#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = SignInBody,
    responses(
        (status = 200, description = "`signed_in`, or `second_factor_required` with the methods; the session cookie is set", body = SecondFactorRequired),
        (status = 401, description = "`invalid_credentials`, the same for an unknown email and a wrong password", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`; see `Retry-After`", body = ErrorBody),
    ))]
async fn create_session(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignInBody>,
) -> Result<Response, ApiError> {
    let attempt = SignIn {
        email: body.email,
        password: body.password,
        remember: body.remember,
        client,
        device: cookies::get(&headers, DEVICE_COOKIE).map(str::to_owned),
    };
    match state.identity().sign_in(attempt).await {
        Ok(signed) => {
            let cookies = sign_in_cookies(&state, &signed);
            let Some(challenge) = signed.second_factor else {
                state.metrics().sign_in("signed_in");
                return Ok(with_cookies(cookies, status("signed_in")));
            };
            state.metrics().sign_in("second_factor_required");
            let body = SecondFactorRequired {
                status: "second_factor_required".to_owned(),
                methods: challenge
                    .methods
                    .into_iter()
                    .map(|m| MethodBody {
                        id: m.id.into_string(),
                        kind: m.kind.as_str().to_owned(),
                        name: m.name,
                    })
                    .collect(),
                default_method: challenge.default_method.as_str().to_owned(),
            };
            Ok(with_cookies(cookies, Json(body)))
        }
        Err(SignInError::InvalidCredentials) => {
            state.metrics().sign_in("invalid_credentials");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong email or password",
            ))
        }
        Err(SignInError::TooManyAttempts { retry_after }) => {
            state.metrics().sign_in("too_many_attempts");
            Err(ApiError::too_many_attempts(retry_after))
        }
        Err(SignInError::Store(e)) => Err(ApiError::internal(e)),
    }
}

/// A response with `Set-Cookie` headers added.
pub fn with_cookies(cookies: Vec<String>, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    for cookie in cookies {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[derive(Serialize, ToSchema)]
pub struct MethodBody {
    id: String,
    /// `totp`
    kind: String,
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SecondFactorRequired {
    /// `second_factor_required`
    status: String,
    methods: Vec<MethodBody>,
    /// The kind to offer first: `totp`.
    default_method: String,
}

#[derive(Deserialize, ToSchema)]
pub struct SecondFactorBody {
    /// `totp` (also the authenticator app's offline code), `backup_code`,
    /// `sms`, `security_key` or `authenticator` (push approval: answers
    /// `pending` with the request id and the number to show)
    method: String,
    /// Leave out with `sms` to have a code sent.
    #[serde(default)]
    code: String,
    /// With `security_key`: the `PublicKeyCredential` from
    /// `navigator.credentials.get` (buffers base64url-encoded); leave out
    /// to get the challenge.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    credential: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct ChallengeBody {
    /// `challenge`
    status: String,
    /// Options for `navigator.credentials.get` (`{"publicKey": …}`).
    #[schema(value_type = Object)]
    public_key: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct CodeSentBody {
    /// `code_sent`
    status: String,
    /// Where it went: `+41 •••• 4567`.
    phone: String,
}

/// The language of messages sent on behalf of an API request.
pub(crate) fn request_lang(headers: &HeaderMap) -> &'static str {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::Lang::negotiate)
        .unwrap_or(crate::Lang::En)
        .code()
}

/// The second sign-in step: a TOTP code, a backup code, an SMS code
/// (`{"method":"sms"}` first, to have it sent), or a security key
/// (`{"method":"security_key"}` first, for the challenge).
#[utoipa::path(post, path = "/api/v1/session/second-factor", tag = "session", security(("session" = [])), request_body = SecondFactorBody,
    responses(
        (status = 200, description = "`signed_in` (a new session cookie is set), or `code_sent` for `sms` without a code", body = CodeSentBody),
        (status = 401, description = "`invalid_code` (wrong code, attempts left in the message), `code_reused` (an app code already used: wait for the next; not counted), `second_factor_restart` (five wrong codes: sign in again) or `not_signed_in`", body = ErrorBody),
        (status = 409, description = "`already_signed_in`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`", body = ErrorBody),
    ))]
async fn second_factor(
    State(state): State<AppState>,
    ApiPending(pending, context): ApiPending,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SecondFactorBody>,
) -> Result<Response, ApiError> {
    let request = StepRequest::parse(&body.method, body.code, body.credential).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "method must be totp, backup_code, sms, security_key or authenticator",
        )
    })?;
    let step = match request {
        StepRequest::Check(step) => step,
        StepRequest::SendSms => {
            let sent = state
                .identity()
                .send_sign_in_sms(&pending.session, &pending.account, request_lang(&headers))
                .await;
            return match sent {
                Ok(phone) => Ok(Json(CodeSentBody {
                    status: "code_sent".to_owned(),
                    phone,
                })
                .into_response()),
                Err(SecondStepError::Sms(e)) => Err(ApiError::from(e)),
                Err(SecondStepError::Store(e)) => Err(ApiError::internal(e)),
                Err(_) => Err(ApiError::not_signed_in()),
            };
        }
        StepRequest::Push => return crate::api_push::begin(&state, &pending).await,
        StepRequest::SecurityKeyChallenge => {
            let options = state
                .identity()
                .begin_security_key_sign_in(&pending.session, &pending.account)
                .await;
            return match options {
                Ok(public_key) => Ok(Json(ChallengeBody {
                    status: "challenge".to_owned(),
                    public_key,
                })
                .into_response()),
                Err(SecondStepError::NoSecurityKey) => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "no_security_key",
                    "no security key is set up",
                )),
                Err(SecondStepError::Store(e)) => Err(ApiError::internal(e)),
                Err(_) => Err(ApiError::not_signed_in()),
            };
        }
    };
    let device = cookies::get(&headers, DEVICE_COOKIE);
    match state
        .identity()
        .second_step_in(
            &pending.session,
            &pending.account,
            context,
            step,
            device,
            &pending.client,
        )
        .await
    {
        Ok(signed) => {
            state.metrics().sign_in("signed_in");
            Ok(with_cookies(sign_in_cookies(&state, &signed), status("signed_in")))
        }
        Err(SecondStepError::WrongCode { attempts_left }) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_code",
            format!("the code is wrong; {attempts_left} attempts left"),
        )),
        Err(SecondStepError::CodeReused) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "code_reused",
            "this code was already used; wait for the next one (no attempt was counted)",
        )),
        Err(SecondStepError::Restart) => {
            let error = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "second_factor_restart",
                "too many wrong codes: sign in again with your password",
            );
            Ok(with_cookies(vec![sign_out_cookie(&state)], error))
        }
        Err(SecondStepError::TooManyAttempts { retry_after }) => Err(ApiError::too_many_attempts(retry_after)),
        Err(SecondStepError::NotPending) => Err(ApiError::not_signed_in()),
        Err(SecondStepError::Sms(e)) => Err(ApiError::from(e)),
        Err(SecondStepError::NoSecurityKey) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_security_key",
            "no security key is set up",
        )),
        Err(SecondStepError::Store(e)) => Err(ApiError::internal(e)),
    }
}

/// Sign out: ends this session.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session", security(("session" = [])),
    responses((status = 200, body = StatusBody), (status = 401, description = "`not_signed_in`", body = ErrorBody)))]
async fn delete_session(State(state): State<AppState>, ApiSession(user): ApiSession) -> Result<Response, ApiError> {
    state.identity().sign_out(&user.session, &user.client).await?;
    Ok(([(header::SET_COOKIE, sign_out_cookie(&state))], status("signed_out")).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct MeBody {
    id: String,
    email: String,
    name: String,
    /// User name for calendar and contact sync (`AB12345`).
    sync_user_id: String,
    organizations: Vec<OrganizationBody>,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationBody {
    id: String,
    name: String,
    /// `legal-representative`, `admin`, `user` or `external`.
    role: String,
}

#[derive(Serialize, ToSchema)]
pub struct EmailChoiceBody {
    /// `two_factor_enabled`, `method_added`, `new_device`, …
    kind: String,
    enabled: bool,
    /// `false` for the emails that always go out.
    optional: bool,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationsBody {
    emails: Vec<EmailChoiceBody>,
}

#[derive(Deserialize, ToSchema)]
pub struct EmailChoice {
    kind: String,
    enabled: bool,
}

async fn notifications_of(state: &AppState, account_id: &identity::AccountId) -> Result<NotificationsBody, ApiError> {
    let off = state.identity().notice_opt_outs(account_id).await?;
    let always = [
        identity::NoticeKind::TwoFactorDisabled,
        identity::NoticeKind::PasswordChanged,
    ];
    let emails = identity::NoticeKind::OPTIONAL
        .into_iter()
        .chain(always)
        .map(|kind| EmailChoiceBody {
            kind: kind.as_str().to_owned(),
            enabled: !off.contains(&kind),
            optional: kind.optional(),
        })
        .collect();
    Ok(NotificationsBody { emails })
}

/// Which security emails the member gets.
#[utoipa::path(get, path = "/api/v1/me/notifications", tag = "me", security(("session" = [])),
    responses((status = 200, body = NotificationsBody), (status = 401, description = "`not_signed_in`", body = ErrorBody)))]
async fn notifications(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<NotificationsBody>, ApiError> {
    Ok(Json(notifications_of(&state, &user.account.id).await?))
}

/// Turns one kind of security email on or off. "Two-step verification
/// turned off" and "password changed" cannot be turned off.
#[utoipa::path(put, path = "/api/v1/me/notifications", tag = "me", security(("session" = [])), request_body = EmailChoice,
    responses(
        (status = 200, body = NotificationsBody),
        (status = 404, description = "`not_found`: no such kind", body = ErrorBody),
        (status = 422, description = "`mail_required`", body = ErrorBody),
    ))]
async fn set_notification(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<EmailChoice>,
) -> Result<Json<NotificationsBody>, ApiError> {
    let kind = identity::NoticeKind::parse(&body.kind)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such kind of email"))?;
    state
        .identity()
        .set_notice_wanted(&user.account.id, kind, body.enabled)
        .await?;
    Ok(Json(notifications_of(&state, &user.account.id).await?))
}

/// The signed-in account.
#[utoipa::path(get, path = "/api/v1/me", tag = "me", security(("session" = [])),
    responses((status = 200, body = MeBody), (status = 401, description = "`not_signed_in`", body = ErrorBody)))]
async fn me(State(state): State<AppState>, ApiUser(user): ApiUser) -> Result<Json<MeBody>, ApiError> {
    let memberships = state.identity().memberships(&user.account.id).await?;
    let a = user.account;
    Ok(Json(MeBody {
        id: a.id.into_string(),
        email: a.email.to_string(),
        name: a.name,
        sync_user_id: a.sync_user_id.to_string(),
        organizations: memberships
            .into_iter()
            .map(|m| OrganizationBody {
                id: m.org_id.into_string(),
                name: m.org_name,
                role: m.role.as_str().to_owned(),
            })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordChangeBody {
    current_password: String,
    new_password: String,
}

/// Change the password; every other session of the account ends.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "me", security(("session" = [])), request_body = PasswordChangeBody,
    responses(
        (status = 200, body = StatusBody),
        (status = 400, description = "`wrong_password`", body = ErrorBody),
        (status = 422, description = "`password_too_short`, `password_too_long`, `password_contains_personal_data` or `password_too_guessable`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`", body = ErrorBody),
    ))]
async fn change_password(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<PasswordChangeBody>,
) -> Result<Json<StatusBody>, ApiError> {
    state
        .identity()
        .change_password(&user.session, &body.current_password, &body.new_password, &user.client)
        .await?;
    Ok(status("password_changed"))
}

#[derive(Serialize, ToSchema)]
pub struct SessionsBody {
    sessions: Vec<SessionBody>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionBody {
    id: String,
    /// The session making this request.
    current: bool,
    ip: String,
    user_agent: String,
    /// A short description of the browser and system.
    browser: String,
    created_at: i64,
    last_seen_at: i64,
    remember: bool,
}

/// The account's open sessions, most recently used first.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "me", security(("session" = [])),
    responses((status = 200, body = SessionsBody), (status = 401, description = "`not_signed_in`", body = ErrorBody)))]
async fn list_sessions(State(state): State<AppState>, ApiUser(user): ApiUser) -> Result<Json<SessionsBody>, ApiError> {
    let sessions = state.identity().sessions(&user.account.id).await?;
    Ok(Json(SessionsBody {
        sessions: sessions
            .into_iter()
            .map(|s| SessionBody {
                current: s.id == user.session.id,
                browser: crate::fmt::browser(&s.user_agent),
                id: s.id.into_string(),
                ip: s.ip,
                user_agent: s.user_agent,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
                remember: s.remember,
            })
            .collect(),
    }))
}

/// End one of the account's sessions (the current one too, which signs out).
#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "me", security(("session" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "`not_found`", body = ErrorBody)))]
async fn revoke_session(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<identity::SessionId>,
) -> Result<Response, ApiError> {
    if !state
        .identity()
        .revoke_session(&user.account.id, &id, &user.client)
        .await?
    {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such session"));
    }
    if id == user.session.id {
        return Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, sign_out_cookie(&state))]).into_response());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// The `next` cursor of the previous page.
    before: Option<String>,
    /// 1 to 200; default 50.
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct EventsBody {
    events: Vec<EventBody>,
    /// Cursor for the next (older) page; absent on the last page.
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventBody {
    id: String,
    /// `account_created`, `sign_in`, `sign_in_failed`, `sign_in_locked`,
    /// `sign_out`, `password_changed` or `session_revoked`.
    kind: String,
    at: i64,
    ip: String,
    user_agent: String,
    detail: String,
}

/// The account's security activity, newest first.
#[utoipa::path(get, path = "/api/v1/me/events", tag = "me", security(("session" = [])), params(EventsQuery),
    responses((status = 200, body = EventsBody), (status = 401, description = "`not_signed_in`", body = ErrorBody)))]
async fn list_events(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<EventsBody>, ApiError> {
    let page = state
        .identity()
        .events(&user.account.id, q.before.as_deref(), q.limit.unwrap_or(50))
        .await?;
    Ok(Json(EventsBody {
        events: page
            .events
            .into_iter()
            .map(|e| EventBody {
                id: e.id,
                kind: e.kind.as_str().to_owned(),
                at: e.at,
                ip: e.ip,
                user_agent: e.user_agent,
                detail: e.detail,
            })
            .collect(),
        next: page.next,
    }))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3 document")))]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_document()).into_response()
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "ok")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Every listener accepts, the server is not shutting down, and the
/// database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "starting, shutting down, or database unreachable")))]
async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness().phase() {
        crate::Phase::Ready => {}
        crate::Phase::Starting => return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
        crate::Phase::Stopping => return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
    match state.identity().ready().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

/// Prometheus metrics: only when the operator set a metrics token, and
/// only for requests that carry it (or on the operator's own metrics
/// address, `metrics_listen`).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(("metrics_token" = [])),
    responses(
        (status = 200, description = "Prometheus text format"),
        (status = 401, description = "`invalid_token`: no token, or not the configured one", body = ErrorBody),
        (status = 404, description = "`not_found`: no metrics token is configured, so there are no metrics here", body = ErrorBody),
    ))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    crate::metrics::serve_on_main_listener(&state, &headers)
}
