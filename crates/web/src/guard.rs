//! Cross-site request protection, applied to every request in one place so
//! no handler can forget it.
//!
//! - Console forms (any non-GET outside `/api/`) must carry a `csrf` field:
//!   an HMAC, under the server key, of the browser's session cookie or,
//!   before sign-in, of its `ck_csrf` cookie. The body is checked here and
//!   handed on unchanged; file uploads (`multipart/form-data`) carry the
//!   token in the query instead, so their bodies stream untouched.
//! - Every state-changing request, API included, is refused when the
//!   browser says it comes from another site (`Sec-Fetch-Site: cross-site`)
//!   or names a foreign `Origin`. The API takes JSON bodies only (checked
//!   by its extractor), which a cross-site form cannot send.
//!
//! Every response also gets headers that stop framing and sniffing.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::session_token;
use crate::cookies;
use crate::error::ApiError;

pub const CSRF_COOKIE: &str = "ck_csrf";
const CSRF_PURPOSE: &str = "csrf";
const MAX_FORM_BYTES: usize = 64 * 1024;

/// What a page's forms are bound to: the session cookie, else the
/// pre-sign-in cookie.
pub fn binding<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    session_token(state, headers).or_else(|| cookies::get(headers, CSRF_COOKIE).filter(|v| !v.is_empty()))
}

pub fn token_for(state: &AppState, binding: &str) -> String {
    state.identity().key().digest(CSRF_PURPOSE, binding.as_bytes())
}

fn same_site(state: &AppState, headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site == Some("cross-site") {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true; // not a browser, or a same-origin GET-like navigation
    };
    let Ok(origin) = origin.to_str() else { return false };
    match state.config().public_origin() {
        Some(expected) => origin.eq_ignore_ascii_case(&expected),
        None => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
            let bare = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            !host.is_empty() && bare.is_some_and(|o| o.eq_ignore_ascii_case(host))
        }
    }
}

pub async fn protect(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let api = request.uri().path().starts_with("/api/");
    let mut request = request;
    if changes_state {
        if !same_site(&state, request.headers()) {
            tracing::warn!("refused a cross-site request");
            return refuse(&state, api, request.headers());
        }
        let multipart = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !api && multipart {
            // Uploads stream to their handler: the token rides in the query.
            let sent = request.uri().query().and_then(|q| {
                serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                    .ok()?
                    .into_iter()
                    .find(|(k, _)| k == "csrf")
                    .map(|(_, v)| v)
            });
            let valid = binding(&state, request.headers())
                .zip(sent)
                .is_some_and(|(b, sent)| state.identity().key().verify(CSRF_PURPOSE, b.as_bytes(), &sent));
            if !valid {
                tracing::warn!("refused an upload without a valid CSRF token");
                return refuse(&state, api, request.headers());
            }
        } else if !api {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
                return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
            };
            let sent = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .ok()
                .and_then(|fields| fields.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v));
            let valid = binding(&state, &parts.headers)
                .zip(sent)
                .is_some_and(|(b, sent)| state.identity().key().verify(CSRF_PURPOSE, b.as_bytes(), &sent));
            if !valid {
                tracing::warn!("refused a form without a valid CSRF token");
                return refuse(&state, api, &parts.headers);
            }
            request = Request::from_parts(parts, Body::from(bytes));
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    ] {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}

fn refuse(state: &AppState, api: bool, headers: &HeaderMap) -> Response {
    if api {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin_request",
            "requests from other sites are not accepted",
        )
        .into_response()
    } else {
        crate::console::form_expired(state, headers)
    }
}
