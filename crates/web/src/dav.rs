//! WebDAV entry: finds the drive a request is for, from the host
//! (`<id>.connect.<domain>`) or the path (`/dav/drives/<id>/…`), checks the
//! client's Basic credentials through
//! [`identity::Identity::authenticate_protocol_client`], and hands the
//! request to the `dav` crate.
//!
//! Drive files are members' uploads served on the console's own origin
//! (the path form), so every answer here is marked as content, never as
//! a page of the console: see [`mark_as_content`].

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use drive::{Access, DriveId, FileError};
use identity::ProtocolAuthError;

use crate::AppState;
use crate::auth::client_info;

const PATH_PREFIX: &str = "/dav/drives/";

/// Where a request goes: the drive, and the URL prefix of its top.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    drive_id: DriveId,
    prefix: String,
}

fn drive_id(text: &str) -> Option<DriveId> {
    (!text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// The drive `host` names (`123456.connect.<domain>[:port]`), if any.
fn host_target(host: &str, domain: &str) -> Option<DriveId> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let id = name.strip_suffix(domain)?.strip_suffix(".connect.")?;
    drive_id(id)
}

fn target(state: &AppState, request: &Request) -> Option<Target> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host());
    if let Some(id) = host.and_then(|h| host_target(h, state.config().dav_domain())) {
        return Some(Target {
            drive_id: id,
            prefix: String::new(),
        });
    }
    let rest = request.uri().path().strip_prefix(PATH_PREFIX)?;
    let id_text = rest.split('/').next().unwrap_or(rest);
    Some(Target {
        drive_id: drive_id(id_text)?,
        prefix: format!("{PATH_PREFIX}{id_text}"),
    })
}

/// Whether a path has a `.` or `..` segment, however encoded: such a
/// path could reach above the drive's top.
fn escapes(path: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    decoded
        .split(['/', '\\'])
        .any(|segment| segment == "." || segment == "..")
}

/// The two WebDAV addresses of a drive (optionally of a folder in it),
/// as people should type them: the host form and the path form.
pub(crate) struct Addresses {
    /// `http://<id>.connect.<domain>[:port]/<folder>/`
    pub host: String,
    /// `<base>/dav/drives/<id>/<folder>/`
    pub path: String,
}

pub(crate) fn addresses(state: &AppState, base: &str, drive: DriveId, folder: &str) -> Addresses {
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let authority = rest.split('/').next().unwrap_or(rest);
    let port = match authority.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => format!(":{port}"),
        _ => String::new(),
    };
    let mut folder: String = folder
        .split('/')
        .filter(|n| !n.is_empty())
        .map(|n| {
            format!(
                "/{}",
                percent_encoding::utf8_percent_encode(n, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    folder.push('/');
    Addresses {
        host: format!(
            "{scheme}://{drive}.connect.{}{port}{folder}",
            state.config().dav_domain()
        ),
        path: format!("{base}{PATH_PREFIX}{drive}{folder}"),
    }
}

/// `(login, secret)` from `Authorization: Basic …`.
fn basic_credentials(request: &Request) -> Option<(String, String)> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (login, secret) = text.split_once(':')?;
    Some((login.to_owned(), secret.to_owned()))
}

fn challenge(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (status, message.into()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"cloudkeep\", charset=\"UTF-8\""),
    );
    response
}

/// Whether a method leaves the drive as it is.
fn reads_only(method: &Method) -> bool {
    matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS" | "PROPFIND")
}

/// `X-OC-Mtime` (seconds since the epoch, as rclone and ownCloud clients
/// send it) in milliseconds.
fn client_mtime(request: &Request) -> Option<i64> {
    let seconds: f64 = request
        .headers()
        .get("x-oc-mtime")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (0.0..1e11).contains(&seconds).then_some((seconds * 1000.0) as i64)
}

/// The outermost handler for WebDAV addresses; everything else goes on
/// to the console and the API.
pub async fn dispatch(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(target) = target(&state, &request) else {
        return next.run(request).await;
    };
    let serves_contents = matches!(request.method().as_str(), "GET" | "HEAD");
    let mut response = answer(state, target, request).await;
    mark_as_content(response.headers_mut(), serves_contents);
    response
}

/// Answers a request for a drive's WebDAV addresses.
async fn answer(state: AppState, target: Target, request: Request) -> Response {
    if escapes(request.uri().path()) {
        return (StatusCode::BAD_REQUEST, "'.' and '..' are not names").into_response();
    }
    let Some((login, secret)) = basic_credentials(&request) else {
        return challenge(
            StatusCode::UNAUTHORIZED,
            "sign in with your email and an application password",
        );
    };
    let (parts, body) = request.into_parts();
    let client = client_info(&state, &parts);
    let account = match state
        .identity()
        .authenticate_protocol_client(&login, &secret, client.ip)
        .await
    {
        Ok(account) => account,
        Err(ProtocolAuthError::InvalidCredentials) => {
            return challenge(StatusCode::UNAUTHORIZED, "wrong user name or password");
        }
        Err(e @ ProtocolAuthError::TwoFactorRequired { .. }) => {
            // 401 so that the client asks again: for an application password.
            return challenge(StatusCode::UNAUTHORIZED, e.to_string());
        }
        Err(ProtocolAuthError::TooManyAttempts { retry_after }) => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "too many attempts; try again later").into_response();
            let seconds = (retry_after / 1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        Err(ProtocolAuthError::Store(e)) => {
            tracing::error!(error = %e, "checking WebDAV credentials failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
    };
    // The path is walked in the same query as the access check.
    let path = dav::drive_path(&parts.uri, &target.prefix);
    let opened = state
        .drives()
        .open(&account, target.drive_id, path.as_deref().unwrap_or_default());
    let drive::Opened { tree, locked, located } = match opened.await {
        Ok(opened) => opened,
        // Another organization's drive looks like no drive at all.
        Err(FileError::NoDrive) => return (StatusCode::NOT_FOUND, "no such drive").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "opening a drive failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
    };
    if tree.access() == Access::Read && !reads_only(&parts.method) {
        // Also LOCK: a client told it cannot lock mounts the drive
        // read-only (Finder, Windows), which is what this member has.
        return (
            StatusCode::FORBIDDEN,
            "you may read this drive but not change it; ask an admin of its organization",
        )
            .into_response();
    }
    if let Some(refused) = lock_refusal(&tree, &parts, account.email.as_str(), path.as_deref()).await {
        return refused;
    }
    if parts.method.as_str() == "PROPFIND"
        && parts
            .headers
            .get("depth")
            .and_then(|d| d.to_str().ok())
            .is_some_and(|d| d.trim().eq_ignore_ascii_case("infinity"))
    {
        // RFC 4918 §9.1: a server may refuse a whole-tree listing.
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>\n",
        )
            .into_response();
    }
    let request = Request::from_parts(parts, body);
    let writes_with_mtime = request.method() == Method::PUT;
    let mtime = writes_with_mtime.then(|| client_mtime(&request)).flatten();
    let target = dav::Target {
        tree,
        principal: account.email.to_string(),
        prefix: target.prefix,
        mtime,
        locked,
        located: path.and(located),
    };
    let response = dav::serve(target, request).await;
    let (mut parts, body) = response.into_parts();
    if mtime.is_some() && parts.status.is_success() {
        parts.headers.insert("x-oc-mtime", HeaderValue::from_static("accepted"));
    }
    Response::from_parts(parts, Body::new(body))
}

/// A LOCK or UNLOCK the drive's lock rules refuse ([`drive::LockRefusal`]),
/// answered with `403` and the reason; `dav-server` would only tell
/// `423 Locked` or `409 Conflict`, which clients take for a lock held by
/// someone else. (The lock system applies the same rules again.) An
/// UNLOCK the rules allow is done here (`204`).
async fn lock_refusal(
    tree: &drive::DriveTree,
    parts: &axum::http::request::Parts,
    principal: &str,
    path: Option<&str>,
) -> Option<Response> {
    let path = path?;
    let refusal = match parts.method.as_str() {
        "LOCK" => {
            // A LOCK without a body refreshes a lock already taken.
            let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
                || parts
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|l| l.to_str().ok())
                    .is_some_and(|l| l.trim() != "0");
            // RFC 4918 §9.10.3: a LOCK without `Depth` is `infinity`.
            let deep = parts
                .headers
                .get("depth")
                .and_then(|d| d.to_str().ok())
                .is_none_or(|d| d.trim().eq_ignore_ascii_case("infinity"));
            if !has_body {
                return None;
            }
            tree.may_lock(path, deep).err()?
        }
        "UNLOCK" => {
            let token = parts.headers.get("lock-token")?.to_str().ok()?;
            let token = token.trim().trim_start_matches('<').trim_end_matches('>');
            // Removed here, in one statement, when the rules allow it.
            match tree.unlock_as(path, token, principal).await {
                Ok(drive::Unlocked::Removed) => return Some(StatusCode::NO_CONTENT.into_response()),
                Ok(drive::Unlocked::Refused(refusal)) => refusal,
                // No such lock, or the store failed: dav-server tells.
                _ => return None,
            }
        }
        _ => return None,
    };
    Some((StatusCode::FORBIDDEN, refusal.to_string()).into_response())
}

/// What a browser may show in place without running anything a member
/// wrote: pictures (but SVG, which is a document with scripts), sound,
/// video and plain text. Everything else a browser is given to save.
fn shown_in_place(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("image", sub)) => !sub.starts_with("svg"),
        Some(("audio" | "video", _)) => true,
        _ => essence == "text/plain",
    }
}

/// Marks an answer of the WebDAV entry as a member's content rather than
/// the console's: the path form shares the console's origin, so an HTML
/// or SVG file whose script ran there could act as whoever opened it
/// (read the API with their session, make an application password).
///
/// - `Content-Security-Policy: sandbox` (without `allow-same-origin` or
///   `allow-scripts`): whatever a browser renders runs no script and gets
///   an opaque origin, so it reaches neither the session nor the API;
///   `frame-ancestors 'none'` keeps other pages from framing it.
/// - `X-Content-Type-Options: nosniff`: a file is only what its type says
///   (plain text stays text, whatever it holds).
/// - With `contents` (GET, HEAD): files a browser would render as a
///   document (HTML, SVG, XML, PDF, scripts, anything unknown) come as
///   `Content-Disposition: attachment`, to be saved, not opened.
///
/// WebDAV clients ignore all three.
fn mark_as_content(headers: &mut axum::http::HeaderMap, contents: bool) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; frame-ancestors 'none'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let shown = headers
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(shown_in_place);
    if contents && !shown {
        headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_refused() {
        assert!(escapes("/dav/drives/1/../x"));
        assert!(escapes("/dav/drives/1/a/%2e%2e/x"));
        assert!(escapes("/dav/drives/1/a/..%2fb"));
        assert!(escapes("/a/.%2E/b"));
        assert!(!escapes("/dav/drives/1/a..b/.hidden"));
    }

    #[test]
    fn only_passive_types_are_shown_in_place() {
        for shown in [
            "image/png",
            "image/JPEG",
            "video/mp4",
            "audio/ogg",
            "text/plain; charset=utf-8",
        ] {
            assert!(shown_in_place(shown), "{shown}");
        }
        for saved in [
            "text/html",
            "TEXT/HTML; charset=utf-8",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/xml",
            "application/xml",
            "text/javascript",
            "application/pdf",
            "application/octet-stream",
            "text/xsl",
            "",
        ] {
            assert!(!shown_in_place(saved), "{saved}");
        }
    }

    #[test]
    fn every_answer_is_sandboxed_and_documents_are_saved() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        mark_as_content(&mut headers, true);
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            "sandbox; frame-ancestors 'none'"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::CONTENT_DISPOSITION], "attachment");
        // A listing (PROPFIND) is sandboxed too, but not "saved".
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        mark_as_content(&mut headers, false);
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            "sandbox; frame-ancestors 'none'"
        );
        assert!(headers.get(header::CONTENT_DISPOSITION).is_none());
    }

    #[test]
    fn drive_hosts() {
        assert_eq!(
            host_target("123456.connect.localhost:8080", "localhost"),
            Some(DriveId::new(123456))
        );
        assert_eq!(
            host_target("123456.CONNECT.example.org", "example.org"),
            Some(DriveId::new(123456))
        );
        assert_eq!(
            host_target("123456.connect.example.org.", "example.org"),
            Some(DriveId::new(123456))
        );
        assert_eq!(host_target("connect.localhost", "localhost"), None);
        assert_eq!(host_target("abc.connect.localhost", "localhost"), None);
        assert_eq!(host_target("123.connect.evil.org", "example.org"), None);
        assert_eq!(host_target("localhost:8080", "localhost"), None);
        assert_eq!(host_target("1.connect.localhostx", "localhost"), None);
    }
}
