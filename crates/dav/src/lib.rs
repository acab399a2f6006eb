//! WebDAV for drives: a drive's tree as a `dav-server` file system with
//! locks and dead properties kept in the store, so several processes can
//! serve the same drive.
//!
//! This crate speaks WebDAV for one already-authenticated account on one
//! drive; finding the drive from the address and checking credentials is
//! the web layer's job.
#![forbid(unsafe_code)]

mod fs;
mod locks;

pub use fs::{DriveFs, OC_NS};
pub use locks::DriveLocks;

use dav_server::DavHandler;
use dav_server::body::Body;
use drive::DriveTree;
use identity::Millis;

/// Answers one WebDAV request on `tree`. `prefix` is the part of the URL
/// path before the drive's top ("" when the host names the drive);
/// `principal` owns the locks taken; `mtime` is the modification time
/// the client gave for the file it writes (`X-OC-Mtime`).
pub async fn serve<B, D, E>(
    tree: DriveTree,
    principal: String,
    prefix: String,
    mtime: Option<Millis>,
    request: http::Request<B>,
) -> http::Response<Body>
where
    B: http_body::Body<Data = D, Error = E>,
    D: bytes::Buf + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let handler = DavHandler::builder()
        .filesystem(Box::new(DriveFs::new(tree.clone(), mtime)))
        .locksystem(Box::new(DriveLocks::new(tree, prefix.clone())))
        .strip_prefix(prefix)
        .principal(principal)
        .autoindex(false)
        // Large reads: a GET streams the file in 256 KiB pieces.
        .read_buf_size(256 * 1024)
        .build_handler();
    handler.handle(request).await
}
