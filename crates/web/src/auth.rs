//! Who is asking: the client's address, and the session behind the cookie.
//!
//! A session that passed only the password is not signed in: API handlers
//! get a user only through [`ApiUser`], and console pages only through
//! `ConsoleUser`, which both refuse it, so it reaches nothing but the
//! second step ([`ApiPending`], `ConsolePending`) and sign-out
//! ([`ApiSession`]).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use identity::{Access, Account, ClientInfo, Purpose, Session, SessionStage, StepContext};

use crate::AppState;
use crate::cookies::{self, Lifetime};
use crate::error::ApiError;

pub const DEVICE_COOKIE: &str = "ck_device";

/// The session cookie's name: `__Host-` prefixed over TLS, which pins it
/// to this host, path `/` and `Secure`.
pub fn session_cookie_name(state: &AppState) -> &'static str {
    if state.config().secure_cookies() {
        "__Host-ck_session"
    } else {
        "ck_session"
    }
}

pub fn session_token<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    cookies::get(headers, session_cookie_name(state)).filter(|t| !t.is_empty())
}

/// `Set-Cookie` values for a sign-in: the session, and the device once
/// fully signed in.
pub fn sign_in_cookies(state: &AppState, signed: &identity::SignedIn) -> Vec<String> {
    let secure = state.config().secure_cookies();
    let lifetime = if signed.session.remember {
        Lifetime::Seconds(state.identity().session_policy().absolute / 1000)
    } else {
        Lifetime::BrowserSession
    };
    let mut out = vec![cookies::set(
        session_cookie_name(state),
        &signed.token.0,
        lifetime,
        secure,
    )];
    if let Some(device) = &signed.device_cookie {
        out.push(cookies::set(
            DEVICE_COOKIE,
            device,
            Lifetime::Seconds(400 * 86_400),
            secure,
        ));
    }
    out
}

pub fn sign_out_cookie(state: &AppState) -> String {
    cookies::set(
        session_cookie_name(state),
        "",
        Lifetime::Expired,
        state.config().secure_cookies(),
    )
}

pub fn client_info(state: &AppState, parts: &Parts) -> ClientInfo {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    let forwarded = state
        .config()
        .trust_forwarded_for
        .then(|| {
            parts
                .headers
                .get("x-forwarded-for")?
                .to_str()
                .ok()?
                .rsplit(',')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .flatten();
    let user_agent = parts
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    ClientInfo {
        ip: forwarded.unwrap_or(peer),
        user_agent,
    }
}

/// A request with a live session; `session.stage` says how far it came.
#[derive(Clone)]
pub struct Authed {
    pub session: Session,
    pub account: Account,
    pub client: ClientInfo,
    /// What the session may do, as `identity` decided.
    pub access: Access,
}

/// The live session behind the request's cookie, at any stage.
pub async fn any_session(state: &AppState, parts: &Parts) -> Result<Option<Authed>, identity::StoreError> {
    let client = client_info(state, parts);
    let Some(token) = session_token(state, &parts.headers) else {
        return Ok(None);
    };
    Ok(state
        .identity()
        .session(token, &client)
        .await?
        .map(|(session, account, access)| Authed {
            session,
            account,
            client,
            access,
        }))
}

/// The JSON API's signed-in user: 401 `not_signed_in`, or
/// `second_factor_required` for a half-signed-in session.
pub struct ApiUser(pub Authed);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(a) = any_session(state, parts).await? else {
            return Err(ApiError::not_signed_in());
        };
        match &a.access {
            Access::SecondStep => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "second_factor_required",
                "finish signing in first: POST /api/v1/session/second-factor",
            )),
            Access::Enrolment(r) if !a.access.allows(api_purpose(parts.method.as_str(), parts.uri.path())) => {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "two_factor_enrollment_required",
                    format!(
                        "{} requires two-step verification (required by {}): add a method under /api/v1/me/two-factor first",
                        r.org_name, r.by
                    ),
                ))
            }
            _ => Ok(ApiUser(a)),
        }
    }
}

/// What an API route is for, for [`Access::allows`] (signing out needs no
/// [`ApiUser`]).
fn api_purpose(method: &str, path: &str) -> Purpose {
    if path.starts_with("/api/v1/me/two-factor") {
        Purpose::Enrol
    } else if method == "GET" && path == "/api/v1/me" {
        Purpose::ReadOwnAccount
    } else if method == "POST" && path.starts_with("/api/v1/orgs/") && path.ends_with("/leave") {
        Purpose::LeaveOrganization
    } else {
        Purpose::Other
    }
}

/// A session at any stage; for signing out.
pub struct ApiSession(pub Authed);

impl FromRequestParts<AppState> for ApiSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        any_session(state, parts)
            .await?
            .map(ApiSession)
            .ok_or_else(ApiError::not_signed_in)
    }
}

/// A session waiting for its second factor, and what its second step
/// checks a code against (read with the session, in one query).
pub struct ApiPending(pub Authed, pub StepContext);

impl FromRequestParts<AppState> for ApiPending {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let client = client_info(state, parts);
        let found = match session_token(state, &parts.headers) {
            Some(token) => state.identity().session_with_step_context(token, &client).await?,
            None => None,
        };
        match found {
            Some((session, account, context)) if session.stage == SessionStage::SecondFactor => Ok(ApiPending(
                Authed {
                    session,
                    account,
                    client,
                    access: Access::SecondStep,
                },
                context,
            )),
            Some(_) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_signed_in",
                "this session is already signed in",
            )),
            None => Err(ApiError::not_signed_in()),
        }
    }
}

/// The client's address and browser, for calls that need no session.
pub struct Client(pub ClientInfo);

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Client(client_info(state, parts)))
    }
}
