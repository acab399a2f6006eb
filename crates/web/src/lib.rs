//! The web front: the console (server-rendered HTML, usable without
//! JavaScript, in Spanish and English) and the JSON API under `/api/v1`
//! with its OpenAPI document, plus `/healthz`, `/readyz` and `/metrics`
//! (the last only with a token, or on a listener of its own).
//!
//! This crate turns HTTP into calls on the `identity` service and back. It
//! owns cookies, CSRF and origin checks, language negotiation, request ids
//! and metrics; it must not decide anything about credentials itself, and
//! never touches the database directly.
#![forbid(unsafe_code)]

mod api;
mod api_drive;
mod api_org;
mod api_push;
mod api_two_factor;
mod auth;
mod console;
mod console_app_passwords;
mod console_drive;
mod console_drive_access;
mod console_import;
mod console_org;
mod console_style;
mod console_two_factor;
mod cookies;
mod dav;
mod error;
mod flash;
mod fmt;
mod guard;
mod i18n;
mod metrics;
mod qr;
mod readiness;
mod refusal;

use axum::Router;
use axum::http::{HeaderName, Request};
use std::sync::Arc;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use i18n::Lang;
pub use readiness::{Phase, Readiness};

/// What the web layer needs to know about how it is reached.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// The address people use, e.g. `https://cloud.example.org`. Decides
    /// the expected `Origin` and, when `https`, `Secure` cookies with the
    /// `__Host-` prefix. Without it, the `Host` header is trusted.
    pub public_url: Option<String>,
    /// Take the client address from the last `X-Forwarded-For` entry (set
    /// this only behind a reverse proxy that writes that header).
    pub trust_forwarded_for: bool,
    /// Drives answer WebDAV at `<drive id>.connect.<dav_domain>` (and at
    /// `/dav/drives/<drive id>/` on every address). Empty means
    /// `localhost`.
    pub dav_domain: String,
    /// The bearer token `/metrics` asks for. Without one, the main router
    /// does not serve `/metrics` at all (see [`metrics_router`]).
    pub metrics_token: Option<String>,
}

impl WebConfig {
    pub fn secure_cookies(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }

    /// `scheme://host[:port]` of the public URL, without any path.
    /// The address links sent to people start with: `public_url`, else
    /// this request's `Host`.
    pub(crate) fn base_url(&self, headers: &axum::http::HeaderMap) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let host = headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        })
    }

    pub(crate) fn dav_domain(&self) -> &str {
        if self.dav_domain.is_empty() {
            "localhost"
        } else {
            &self.dav_domain
        }
    }

    fn public_origin(&self) -> Option<String> {
        let url = self.public_url.as_deref()?;
        let (scheme, rest) = url.split_once("://")?;
        let host = rest.split('/').next()?;
        Some(format!("{scheme}://{host}"))
    }
}

struct Inner {
    identity: identity::Identity,
    drives: drive::Drives,
    config: WebConfig,
    metrics: metrics::Metrics,
    readiness: Readiness,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// `readiness` is what `/readyz` reports besides the database.
    pub fn new(identity: identity::Identity, drives: drive::Drives, config: WebConfig, readiness: Readiness) -> Self {
        Self(Arc::new(Inner {
            identity,
            drives,
            config,
            metrics: metrics::Metrics::default(),
            readiness,
        }))
    }

    fn identity(&self) -> &identity::Identity {
        &self.0.identity
    }

    fn drives(&self) -> &drive::Drives {
        &self.0.drives
    }

    fn config(&self) -> &WebConfig {
        &self.0.config
    }

    fn metrics(&self) -> &metrics::Metrics {
        &self.0.metrics
    }

    fn readiness(&self) -> &Readiness {
        &self.0.readiness
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let request_span = |req: &Request<_>| {
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        // The matched route, never the raw path: setup links and cursors
        // carry secrets or personal data.
        let route = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("unmatched", axum::extract::MatchedPath::as_str);
        tracing::info_span!("request", id = %id, method = %req.method(), route = %route)
    };
    Router::new()
        .merge(api::routes())
        .merge(console::routes())
        .fallback(console::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::protect))
        // WebDAV clients authenticate on every request and send no CSRF
        // token: their requests leave before the console's guard.
        .layer(axum::middleware::from_fn_with_state(state.clone(), dav::dispatch))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Only `/metrics`, for a listener of its own on an internal address
/// (`metrics_listen`): there the address is the protection, and the
/// token, when one is set, is asked for too.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics::serve_on_own_listener))
        .with_state(state)
}

/// Every console route as (method, path); the API's are in the OpenAPI
/// document. A test checks this list against the router's source, and the
/// black-box tests walk it (e.g. to prove a half-signed-in session reaches
/// nothing).
pub const CONSOLE_ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/setup/{token}"),
    ("POST", "/setup/{token}"),
    ("GET", "/signin"),
    ("POST", "/signin"),
    ("POST", "/signout"),
    ("GET", "/security"),
    ("POST", "/security/password"),
    ("POST", "/security/notifications"),
    ("GET", "/drives"),
    ("POST", "/drives"),
    ("GET", "/drives/{drive}/files"),
    ("GET", "/drives/{drive}/files/{*path}"),
    ("POST", "/drives/{drive}/upload"),
    ("POST", "/drives/{drive}/folders"),
    ("POST", "/drives/{drive}/delete"),
    ("GET", "/drives/{drive}/imports"),
    ("POST", "/drives/{drive}/imports"),
    ("GET", "/drives/{drive}/imports/{id}"),
    ("POST", "/drives/{drive}/imports/{id}/cancel"),
    ("GET", "/drives/{drive}/access"),
    ("POST", "/drives/{drive}/access"),
    ("POST", "/drives/{drive}/access/member"),
    ("GET", "/orgs/{org}/members"),
    ("POST", "/orgs/{org}/invitations"),
    ("POST", "/orgs/{org}/invitations/{id}/resend"),
    ("POST", "/orgs/{org}/invitations/{id}/revoke"),
    ("POST", "/orgs/{org}/members/{member}/role"),
    ("POST", "/orgs/{org}/members/{member}/remove"),
    ("POST", "/orgs/{org}/members/{member}/alert"),
    ("POST", "/orgs/{org}/alerts"),
    ("GET", "/orgs/{org}/security"),
    ("POST", "/orgs/{org}/security"),
    ("POST", "/orgs/{org}/leave"),
    ("GET", "/invitations/{token}"),
    ("POST", "/invitations/{token}"),
    ("POST", "/security/sessions/{id}/revoke"),
    ("POST", "/language"),
    ("GET", "/static/console.css"),
    ("GET", "/static/print.js"),
    ("GET", "/static/webauthn.js"),
    ("GET", "/static/push.js"),
    ("GET", "/static/favicon.svg"),
    ("GET", "/static/manifest.webmanifest"),
    ("GET", "/console/style"),
    ("GET", "/signin/second-factor/authenticator/{id}"),
    ("POST", "/signin/second-factor/authenticator/{id}"),
    ("POST", "/security/two-factor/security_key"),
    ("POST", "/security/two-factor/security_key/{id}/finish"),
    ("GET", "/signin/second-factor"),
    ("POST", "/signin/second-factor"),
    ("GET", "/security/two-factor"),
    ("POST", "/security/two-factor/totp"),
    ("POST", "/security/two-factor/totp/{id}/confirm"),
    ("POST", "/security/two-factor/sms"),
    ("POST", "/security/two-factor/authenticator"),
    ("POST", "/security/two-factor/authenticator/{id}/linked"),
    ("POST", "/security/two-factor/sms/{id}/confirm"),
    ("POST", "/security/two-factor/sms/{id}/resend"),
    ("POST", "/security/two-factor/methods/{id}/remove"),
    ("POST", "/security/two-factor/default"),
    ("GET", "/security/two-factor/backup-codes"),
    ("POST", "/security/two-factor/backup-codes"),
    ("POST", "/security/two-factor/backup-codes.txt"),
    ("GET", "/security/app-passwords"),
    ("POST", "/security/app-passwords"),
    ("POST", "/security/app-passwords/{id}/revoke"),
];

/// Whether a member blocked by an organization's two-step requirement may
/// still open this console path (enrolment, sign-out, language, static
/// files, leaving).
pub fn console_open_while_blocked(path: &str) -> bool {
    console::purpose(path) != identity::Purpose::Other
}

/// The OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn openapi_json() -> String {
    api::openapi_document()
}

#[cfg(test)]
mod tests {
    /// The list above names exactly the routes the console modules register.
    #[test]
    fn console_routes_list_every_registered_route() {
        let mut registered = Vec::new();
        for source in [
            include_str!("console.rs"),
            include_str!("console_two_factor.rs"),
            include_str!("console_app_passwords.rs"),
            include_str!("console_org.rs"),
            include_str!("console_drive.rs"),
            include_str!("console_import.rs"),
            include_str!("console_drive_access.rs"),
        ] {
            // Whitespace removed, so however rustfmt wraps a call it reads the same.
            let compact: String = source.split_whitespace().collect();
            for piece in compact.split(".route(\"").skip(1) {
                let (path, rest) = piece.split_once('"').unwrap();
                let end = [rest.find(".route("), rest.find('}')]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(rest.len());
                let call = &rest[..end];
                for (needle, method) in [("get(", "GET"), ("post(", "POST")] {
                    if call.contains(needle) {
                        registered.push((method, path.to_owned()));
                    }
                }
            }
        }
        registered.sort();
        let mut listed: Vec<(&str, String)> = super::CONSOLE_ROUTES
            .iter()
            .map(|(m, p)| (*m, (*p).to_owned()))
            .collect();
        listed.sort();
        assert_eq!(registered, listed);
    }
}
