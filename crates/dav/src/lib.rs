//! WebDAV for drives: a drive's tree as a `dav-server` file system with
//! locks and dead properties kept in the store, so several processes can
//! serve the same drive.
//!
//! This crate speaks WebDAV for one already-authenticated account on one
//! drive; finding the drive from the address and checking credentials is
//! the web layer's job. It also owns the one bounded XML reader
//! ([`xml`]) that every XML body, and every listing an import reads,
//! passes before anything else parses it.
#![forbid(unsafe_code)]

mod fs;
#[cfg(test)]
mod fuzz;
mod locks;
mod propfind;
pub mod xml;

pub use fs::{DriveFs, OC_NS};
pub use locks::DriveLocks;

use bytes::Bytes;
use dav_server::DavHandler;
use drive::DriveTree;
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, LengthLimitError, Limited, StreamBody};
use identity::Millis;

/// A response body: `dav-server`'s, or a streamed listing.
pub type DavBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Methods whose body is XML that `dav-server` would parse (it reads no
/// other method's body as XML: PUT's is the file, the rest must be empty).
fn carries_xml(method: &http::Method) -> bool {
    matches!(
        method.as_str(),
        "PROPFIND" | "PROPPATCH" | "LOCK" | "REPORT" | "MKCALENDAR" | "MKADDRESSBOOK"
    )
}

/// The largest LOCK body read.
const MAX_LOCK_BODY_BYTES: usize = 8 * 1024;

/// Who a WebDAV request is for, and on what.
pub struct Target {
    pub tree: DriveTree,
    /// Owns the locks taken (the account's email).
    pub principal: String,
    /// The part of the URL path before the drive's top ("" when the host
    /// names the drive).
    pub prefix: String,
    /// The modification time the client gave for the file it writes
    /// (`X-OC-Mtime`).
    pub mtime: Option<Millis>,
    /// Whether any lock on the drive was live when the request began;
    /// when none was, its lock checks need not read the locks.
    pub locked: bool,
    /// What was at the request's path ([`drive_path`]) when the drive was
    /// opened, if that query read it: the request need not walk it again.
    pub located: Option<drive::Located>,
}

/// The request's path inside the drive, decoded, without a trailing
/// slash (`/a/b.txt`, "" for the top); `None` when it is not under
/// `prefix` or not UTF-8.
pub fn drive_path(uri: &http::Uri, prefix: &str) -> Option<String> {
    let full = percent_encoding::percent_decode(uri.path().as_bytes())
        .decode_utf8()
        .ok()?;
    Some(full.strip_prefix(prefix)?.trim_end_matches('/').to_owned())
}

/// Answers one WebDAV request.
pub async fn serve<B, D, E>(target: Target, request: http::Request<B>) -> http::Response<DavBody>
where
    B: http_body::Body<Data = D, Error = E> + Send + 'static,
    D: bytes::Buf + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    if !carries_xml(request.method()) {
        return dav_server(target, request).await;
    }
    // The body is read whole (it is small), checked by the bounded reader,
    // and only then handed to `dav-server`, whose own parser recurses and
    // expands entities.
    let (parts, body) = request.into_parts();
    // A LOCK body is a scope, a type and an owner: its owner is stored and
    // read back with every lock listing, so it gets a small bound.
    let limit = if parts.method.as_str() == "LOCK" {
        MAX_LOCK_BODY_BYTES
    } else {
        xml::Limits::REQUEST.max_bytes
    };
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return refused(&xml::XmlError::TooLarge { limit });
        }
        Err(_) => return plain(http::StatusCode::BAD_REQUEST),
    };
    let document = match body_document(&bytes) {
        Ok(document) => document,
        Err(e) => {
            tracing::info!(method = %parts.method, reason = %e, "refused a WebDAV body");
            return refused(&e);
        }
    };
    if parts.method.as_str() == "PROPFIND" {
        if document
            .as_ref()
            .is_some_and(|d| propfind::asked_for(d) > propfind::MAX_NAMED)
        {
            // Every property named is answered for every entry: 1,700
            // names over 300 files made a 19 MB answer from a 61 KB body.
            let reason = format!("a PROPFIND may name at most {} properties", propfind::MAX_NAMED);
            return text(http::StatusCode::BAD_REQUEST, &reason);
        }
        let located = target.located.clone();
        let fast = fast_propfind(
            &target.tree,
            &target.prefix,
            located,
            target.locked,
            &parts,
            document.as_ref(),
        );
        if let Some(response) = fast.await {
            return response;
        }
    }
    let request = http::Request::from_parts(parts, Full::new(bytes));
    dav_server(target, request).await
}

/// A request body checked by the bounded reader; `None` when empty (an
/// empty body means `allprop` to PROPFIND and a refresh to LOCK).
fn body_document(bytes: &[u8]) -> Result<Option<xml::Element>, xml::XmlError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    xml::parse(bytes, xml::Limits::REQUEST).map(Some)
}

/// A body the bounded reader refused: 413 when too large, else 400, with
/// the reason as text.
fn refused(e: &xml::XmlError) -> http::Response<DavBody> {
    let status = match e {
        xml::XmlError::TooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
        _ => http::StatusCode::BAD_REQUEST,
    };
    text(status, &e.to_string())
}

/// A refusal with its reason as text.
fn text(status: http::StatusCode, reason: &str) -> http::Response<DavBody> {
    let body = Full::new(Bytes::from(format!("{reason}\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn plain(status: http::StatusCode) -> http::Response<DavBody> {
    let mut response = http::Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    response
}

/// Listings of named properties or of all of them (`allprop`, an empty
/// body) at depth 0 or 1, answered from the tree.
async fn fast_propfind(
    tree: &DriveTree,
    prefix: &str,
    located: Option<drive::Located>,
    locked: bool,
    parts: &http::request::Parts,
    body: Option<&xml::Element>,
) -> Option<http::Response<DavBody>> {
    let depth_one = match parts.headers.get("depth").and_then(|d| d.to_str().ok()).map(str::trim) {
        Some("0") => false,
        Some("1") => true,
        _ => return None,
    };
    let asked = propfind::asked(body)?;
    // Windows is given its Win32 properties with `allprop`, by `dav-server`.
    let windows = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .is_some_and(|ua| ua.contains("Microsoft"));
    if windows && asked == propfind::Asked::All {
        return None;
    }
    let relative = drive_path(&parts.uri, prefix)?;
    if relative.split('/').any(|n| n == "." || n == "..") {
        return None;
    }
    let answer = propfind::answer(
        tree.clone(),
        prefix.to_owned(),
        relative,
        located,
        depth_one,
        asked,
        locked,
    );
    match answer.await {
        Ok(stream) => {
            let body = BodyExt::boxed_unsync(StreamBody::new(stream.map(|piece| piece.map(Frame::data))));
            let mut response = http::Response::new(body);
            *response.status_mut() = http::StatusCode::MULTI_STATUS;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/xml; charset=utf-8"),
            );
            Some(response)
        }
        Err(drive::FileError::NotFound) | Err(drive::FileError::NotAFolder) => Some(plain(http::StatusCode::NOT_FOUND)),
        Err(drive::FileError::InvalidPath(_)) => Some(plain(http::StatusCode::BAD_REQUEST)),
        Err(e) => {
            tracing::error!(error = %e, "listing failed");
            Some(plain(http::StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

async fn dav_server<B, D, E>(target: Target, request: http::Request<B>) -> http::Response<DavBody>
where
    B: http_body::Body<Data = D, Error = E>,
    D: bytes::Buf + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let Target {
        tree,
        principal,
        prefix,
        mtime,
        locked,
        located,
    } = target;
    let fs = DriveFs::new(tree.clone(), mtime);
    if let (Some(located), Some(path)) = (located, drive_path(request.uri(), &prefix)) {
        fs.seed(&path, located);
    }
    let handler = DavHandler::builder()
        .filesystem(Box::new(fs))
        .locksystem(Box::new(DriveLocks::new(
            tree,
            principal.clone(),
            prefix.clone(),
            locked,
        )))
        .strip_prefix(prefix)
        .principal(principal)
        .autoindex(false)
        // Large reads: a GET streams the file in 256 KiB pieces.
        .read_buf_size(256 * 1024)
        .build_handler();
    handler.handle(request).await.map(BodyExt::boxed_unsync)
}
