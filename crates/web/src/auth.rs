//! Who is asking: the client's address, and the session behind the cookie.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use identity::{Account, ClientInfo, Session};

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

/// `Set-Cookie` values for a fresh sign-in: the session and the device.
pub fn sign_in_cookies(state: &AppState, signed: &identity::SignedIn) -> [String; 2] {
    let secure = state.config().secure_cookies();
    let lifetime = if signed.session.remember {
        Lifetime::Seconds(state.identity().session_policy().absolute / 1000)
    } else {
        Lifetime::BrowserSession
    };
    [
        cookies::set(session_cookie_name(state), &signed.token.0, lifetime, secure),
        cookies::set(
            DEVICE_COOKIE,
            &signed.device_cookie,
            Lifetime::Seconds(400 * 86_400),
            secure,
        ),
    ]
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

/// A signed-in request.
pub struct Authed {
    pub session: Session,
    pub account: Account,
    pub client: ClientInfo,
}

/// The live session behind the request's cookie, if any.
pub async fn current(state: &AppState, parts: &Parts) -> Result<Option<Authed>, identity::StoreError> {
    let client = client_info(state, parts);
    let Some(token) = session_token(state, &parts.headers) else {
        return Ok(None);
    };
    Ok(state
        .identity()
        .session(token, &client)
        .await?
        .map(|(session, account)| Authed {
            session,
            account,
            client,
        }))
}

/// The JSON API's signed-in user; 401 `not_signed_in` otherwise.
pub struct ApiUser(pub Authed);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        current(state, parts)
            .await?
            .map(ApiUser)
            .ok_or_else(ApiError::not_signed_in)
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
