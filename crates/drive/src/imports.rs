//! "Import external data": a durable job that copies a WebDAV source (a
//! folder on another server, or one of our own drives) into a drive's
//! folder in the background.
//!
//! The job and its work list are in the store, so it survives a restart
//! and resumes where it stopped: every source folder and file is an item,
//! done or not. The source password is sealed (AES-256-GCM under the
//! server key) while the job runs and erased in the same statement that
//! ends it. The copying itself (HTTP) is the `import` crate's.
//!
//! A source is either one of this server's own drives (named by its
//! WebDAV address: `/dav/drives/<id>/…` on our own origin, or
//! `<id>.connect.<domain>`), which the worker reads in-process with the
//! same sign-in and access rules as WebDAV, or a server elsewhere, which
//! the [`SourceGuard`] must permit: when the import is started, and again
//! at every connection the worker makes.

use async_trait::async_trait;
use identity::{Account, AccountId, Millis, StoreError};

use percent_encoding::percent_decode_str;

use crate::files::{FileError, split_path, uuid_like};
use crate::{DriveId, Drives};

/// Why an import stopped or a file was not copied: each reason has a code
/// (`import.reason.<code>` in the console's and the emails' catalogues)
/// and the English sentence the store keeps and the API answers with, `{}`
/// standing for the one value some of them name. [`import_reason`] writes
/// the sentence; [`explain_import_reason`] finds the code and the value
/// back in a stored one, for the reader's language.
pub const IMPORT_REASONS: &[(&str, &str)] = &[
    ("unreachable", "the source cannot be reached"),
    ("not_allowed", "this address is not allowed"),
    (
        "redirected",
        "the source sent the import to another address, which is not followed",
    ),
    (
        "interrupted",
        "the import was interrupted {} times in a row without progress; the source may hold something the server cannot read",
    ),
    ("account_gone", "the account that started it no longer exists"),
    ("password_unreadable", "the source password cannot be read"),
    ("drive_gone", "the drive no longer exists or is no longer yours"),
    ("source_refused", "the source refused the user name or password"),
    (
        "source_locked",
        "the source refused the user name or password too many times; try again later",
    ),
    (
        "two_factor_required",
        "{} requires two-step verification: turn it on, then sign in with an application password",
    ),
    (
        "too_long",
        "the import took longer than {} hours, the most an import may take",
    ),
    ("storage", "storage error: {}"),
    ("too_deep", "folders nested deeper than {} are not imported"),
    (
        "too_many_files",
        "the source holds more than {} files, the most one import may copy",
    ),
    (
        "too_big",
        "the source holds more than {} bytes, the most one import may copy",
    ),
    ("folder_not_made", "cannot make the folder: {}"),
    ("answered", "the source answered {}"),
    ("gone_from_source", "the file is no longer in the source"),
    ("drive_full", "the drive is full"),
    ("not_writable", "the drive is no longer yours to write"),
    ("download_cut", "the download was cut"),
    ("file_unreadable", "the file cannot be read"),
    ("folder_missing", "the source folder does not exist"),
    ("not_webdav", "the source is not a WebDAV server"),
    ("listing_too_large", "the folder listing is too large"),
    ("listing_not_webdav", "the source's listing is not WebDAV"),
    ("listing_refused", "the source's listing was refused: {}"),
    ("file_refused", "the drive refused the file: {}"),
];

/// The English sentence of the reason `code`, with `value` for its `{}`.
pub fn import_reason(code: &str, value: impl std::fmt::Display) -> String {
    let sentence = IMPORT_REASONS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("{}", |(_, sentence)| *sentence);
    sentence.replacen("{}", &value.to_string(), 1)
}

/// The code and the value of a stored reason; `None` for a sentence that
/// is not one of ours (an older server's).
pub fn explain_import_reason(text: &str) -> Option<(&'static str, String)> {
    IMPORT_REASONS
        .iter()
        .find_map(|(code, sentence)| match sentence.split_once("{}") {
            None => (text == *sentence).then(|| (*code, String::new())),
            Some((before, after)) => {
                let value = text.strip_prefix(before)?.strip_suffix(after)?;
                Some((*code, value.to_owned()))
            }
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl ImportState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Done, Self::Failed, Self::Cancelled]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    pub fn ended(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub id: String,
    pub drive_id: DriveId,
    /// Who started it (and gets the email when it ends).
    pub account_id: AccountId,
    /// The source folder's address, without credentials.
    pub source_url: String,
    pub source_user: String,
    /// The sealed source password; empty once the job has ended.
    pub sealed_secret: String,
    /// Where the copy goes in the drive, e.g. `/From NAS`.
    pub folder: String,
    pub state: ImportState,
    pub files_done: u64,
    pub bytes_done: u64,
    pub files_failed: u64,
    /// Files found in the source so far.
    pub files_found: u64,
    pub current_file: String,
    /// Why the whole job stopped, when it failed.
    pub error: String,
    pub cancel_requested: bool,
    /// Times the job was claimed since an item last finished: a job whose
    /// input crashes the server is failed after a few, not run forever.
    pub attempts: u32,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
}

impl Import {
    /// Members who may only read the drive do not see where an import
    /// came from: a source address and user name can point at a server
    /// (and an account on it) that the organization keeps to writers.
    fn shown_to(&mut self, access: crate::Access) {
        if access != crate::Access::ReadWrite {
            self.source_url.clear();
            self.source_user.clear();
        }
    }
}

/// One folder or file of the source, copied or not yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportItem {
    /// Decoded, relative to the source folder: "" for itself, `/a/b.txt`.
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified_at: Millis,
}

/// How long a claimed job stays with the process running it without news
/// (renewed at every item, and every few seconds during a long copy).
pub const IMPORT_LEASE: Millis = 30_000;
/// The per-file errors a job keeps for its report.
pub const MAX_REPORTED_FAILURES: u32 = 1000;

#[async_trait]
pub trait ImportStore: Send + Sync {
    async fn insert_import(&self, import: &Import) -> Result<(), StoreError>;
    async fn import(&self, id: &str) -> Result<Option<Import>, StoreError>;
    /// A drive's imports, newest first.
    async fn imports_of_drive(&self, drive_id: DriveId) -> Result<Vec<Import>, StoreError>;
    async fn request_import_cancel(&self, id: &str) -> Result<bool, StoreError>;
    /// Takes a job that is queued, or running with an expired lease (its
    /// process died), for `lease` ms, and counts the attempt; never one of
    /// an organization that already has `per_org` jobs with a live lease.
    async fn claim_import(&self, now: Millis, lease: Millis, per_org: u32) -> Result<Option<Import>, StoreError>;
    /// Extends the lease and records progress; `false` when cancelled.
    async fn renew_import(&self, id: &str, lease_until: Millis, current_file: &str) -> Result<bool, StoreError>;
    /// Adds items not already listed (by path).
    async fn add_import_items(&self, id: &str, items: &[ImportItem]) -> Result<(), StoreError>;
    /// The next item not yet handled: folders first, then files, by path.
    async fn next_import_item(&self, id: &str) -> Result<Option<ImportItem>, StoreError>;
    /// Marks an item handled and counts it: copied (`bytes`) or failed
    /// (`error`). The job made progress: its attempts start again at 0.
    async fn finish_import_item(
        &self,
        id: &str,
        path: &str,
        bytes: Option<u64>,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// The per-file errors, by path.
    async fn import_failures(&self, id: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Ends the job and erases its secret in one statement.
    async fn end_import(&self, id: &str, state: ImportState, error: &str, now: Millis) -> Result<(), StoreError>;
}

/// The outbound guard as the drive layer sees it (the `import` crate's
/// adapter resolves names; this crate touches no network).
#[async_trait]
pub trait SourceGuard: Send + Sync {
    /// Whether the server may connect to the source's host. A name that
    /// does not resolve is let through: the job then says the source
    /// cannot be reached.
    async fn permits(&self, source_url: &str) -> bool;
}

/// Where imports may come from.
#[derive(Clone, Default)]
pub struct ImportSources {
    /// Judges sources elsewhere; `None`: only our own drives.
    pub guard: Option<std::sync::Arc<dyn SourceGuard>>,
    /// This server's own origins (`http://127.0.0.1:8080`, the public
    /// URL), under which `/dav/drives/<id>/…` names one of our drives.
    pub own_origins: Vec<String>,
    /// Drives also answer at `<id>.connect.<dav_domain>`.
    pub dav_domain: String,
}

/// A source that is one of this server's own drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnDrive {
    pub drive_id: DriveId,
    /// The decoded folder path in the drive, `""` for its top.
    pub path: String,
}

const DAV_PREFIX: &str = "/dav/drives/";

impl ImportSources {
    /// The drive (and folder) `source_url` names when it is one of ours.
    pub fn own_drive(&self, source_url: &str) -> Option<OwnDrive> {
        let url = url::Url::parse(source_url).ok()?;
        let decoded = |path: &str| {
            percent_decode_str(path)
                .decode_utf8()
                .ok()
                .map(|p| p.trim_end_matches('/').to_owned())
        };
        if let Some(url::Host::Domain(host)) = url.host()
            && !self.dav_domain.is_empty()
            && let Some(id) = host
                .trim_end_matches('.')
                .strip_suffix(self.dav_domain.as_str())
                .and_then(|h| h.strip_suffix(".connect."))
        {
            return Some(OwnDrive {
                drive_id: drive_number(id)?,
                path: decoded(url.path())?,
            });
        }
        let origin = url.origin();
        if !self
            .own_origins
            .iter()
            .filter_map(|o| url::Url::parse(o).ok())
            .any(|o| o.origin() == origin)
        {
            return None;
        }
        let rest = url.path().strip_prefix(DAV_PREFIX)?;
        let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
        Some(OwnDrive {
            drive_id: drive_number(id)?,
            path: decoded(&format!("/{path}"))?,
        })
    }
}

fn drive_number(text: &str) -> Option<DriveId> {
    (!text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the source address must start with http:// or https:// and hold no user name or password")]
    InvalidSource,
    /// Loopback, private, link-local… (or this server itself, outside
    /// its drives): never whether anything listens there.
    #[error("this address is not allowed; ask your administrator if the source is on your own network")]
    SourceNotAllowed,
    #[error("the destination folder does not exist")]
    NoFolder,
    #[error("no such import")]
    NotFound,
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a member asks for when starting an import.
#[derive(Debug, Clone)]
pub struct NewImport<'a> {
    pub source_url: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    pub folder: &'a str,
}

pub const SECRET_PURPOSE: &str = "import-source";

fn valid_source(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    (scheme == "http" || scheme == "https")
        && !authority.is_empty()
        && !authority.contains('@')
        && url.len() <= 2000
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

impl Drives {
    /// Queues a copy of `new.source_url` into `new.folder` of the drive,
    /// which must exist; the account must be able to write the drive.
    pub async fn start_import(
        &self,
        account: &Account,
        drive_id: DriveId,
        new: NewImport<'_>,
    ) -> Result<Import, ImportError> {
        let source_url = new.source_url.trim();
        if !valid_source(source_url) || new.user.len() > 320 || new.password.len() > 1024 {
            return Err(ImportError::InvalidSource);
        }
        let tree = self.tree(account, drive_id).await?;
        tree.writable()?;
        if self.sources.own_drive(source_url).is_none() {
            let permitted = match &self.sources.guard {
                Some(guard) => guard.permits(source_url).await,
                None => false,
            };
            if !permitted {
                return Err(ImportError::SourceNotAllowed);
            }
        }
        let names = split_path(new.folder)?;
        let folder = format!("/{}", names.join("/"));
        match tree.stat(&folder).await {
            Ok(node) if node.is_dir => {}
            Ok(_) | Err(FileError::NotFound) => return Err(ImportError::NoFolder),
            Err(e) => return Err(e.into()),
        }
        let id = uuid_like();
        let import = Import {
            sealed_secret: self.identity.key().seal(SECRET_PURPOSE, &id, new.password.as_bytes()),
            id,
            drive_id,
            account_id: account.id.clone(),
            source_url: source_url.trim_end_matches('/').to_owned(),
            source_user: new.user.to_owned(),
            folder,
            state: ImportState::Queued,
            files_done: 0,
            bytes_done: 0,
            files_failed: 0,
            files_found: 0,
            current_file: String::new(),
            error: String::new(),
            cancel_requested: false,
            attempts: 0,
            created_at: self.identity.now(),
            finished_at: None,
        };
        self.imports.insert_import(&import).await?;
        self.identity.publish(IMPORT_TOPIC).await;
        Ok(import)
    }

    /// The drive's imports, newest first (anyone who can use the drive
    /// sees them; where they came from only those who may write it).
    pub async fn imports(&self, account: &Account, drive_id: DriveId) -> Result<Vec<Import>, ImportError> {
        let access = self.tree(account, drive_id).await?.access();
        let mut list = self.imports.imports_of_drive(drive_id).await?;
        list.iter_mut().for_each(|i| i.shown_to(access));
        Ok(list)
    }

    /// The sources this server imports from.
    pub fn import_sources(&self) -> &ImportSources {
        &self.sources
    }

    /// One import of the drive, with its per-file errors.
    pub async fn import(
        &self,
        account: &Account,
        drive_id: DriveId,
        id: &str,
    ) -> Result<(Import, Vec<(String, String)>), ImportError> {
        let access = self.tree(account, drive_id).await?.access();
        let mut import = self
            .imports
            .import(id)
            .await?
            .filter(|i| i.drive_id == drive_id)
            .ok_or(ImportError::NotFound)?;
        import.shown_to(access);
        let failures = self.imports.import_failures(id).await?;
        Ok((import, failures))
    }

    /// Asks a running or queued import to stop; it ends as cancelled.
    /// Members who may only read the drive cannot.
    pub async fn cancel_import(&self, account: &Account, drive_id: DriveId, id: &str) -> Result<(), ImportError> {
        self.tree(account, drive_id).await?.writable()?;
        let (import, _) = self.import(account, drive_id, id).await?;
        if !import.state.ended() {
            self.imports.request_import_cancel(id).await?;
            self.identity.publish(IMPORT_TOPIC).await;
        }
        Ok(())
    }

    /// The store of import jobs (for the worker).
    pub fn import_store(&self) -> &dyn ImportStore {
        self.imports.as_ref()
    }

    pub fn identity(&self) -> &identity::Identity {
        &self.identity
    }
}

/// Signalled when an import is queued or cancelled.
pub const IMPORT_TOPIC: &str = "imports";

#[cfg(test)]
mod tests {
    use super::{explain_import_reason, import_reason};

    #[test]
    fn every_import_reason_is_found_back() {
        assert_eq!(
            explain_import_reason(&import_reason("too_many_files", 5)),
            Some(("too_many_files", "5".to_owned()))
        );
        assert_eq!(
            explain_import_reason(&import_reason("too_big", 1024)),
            Some(("too_big", "1024".to_owned()))
        );
        assert_eq!(
            explain_import_reason("the source cannot be reached"),
            Some(("unreachable", String::new()))
        );
        assert_eq!(
            explain_import_reason(&import_reason("storage", "disk I/O error")),
            Some(("storage", "disk I/O error".to_owned()))
        );
        assert_eq!(explain_import_reason("something an older server wrote"), None);
        for (i, (code, sentence)) in super::IMPORT_REASONS.iter().enumerate() {
            assert!(
                super::IMPORT_REASONS[..i].iter().all(|(earlier, _)| earlier != code),
                "{code} names two reasons"
            );
            let value = if sentence.contains("{}") { "7" } else { "" };
            assert_eq!(
                explain_import_reason(&import_reason(code, 7)),
                Some((*code, value.to_owned())),
                "{code}: its value is kept"
            );
        }
    }

    use super::*;

    #[test]
    fn sources_are_plain_web_addresses() {
        assert!(valid_source("https://nas.example.org/remote.php/dav/files/ana/Photos"));
        assert!(valid_source("http://127.0.0.1:8080/dav/drives/123456/"));
        assert!(!valid_source("ftp://nas.example.org/"));
        assert!(!valid_source("https://ana:secret@nas.example.org/"));
        assert!(!valid_source("https:///nothing"));
        assert!(!valid_source("https://nas.example.org/a b"));
    }

    #[test]
    fn our_own_drives_are_recognised_whatever_the_form() {
        let sources = ImportSources {
            guard: None,
            own_origins: vec!["http://127.0.0.1:8080".into(), "https://cloud.example.org".into()],
            dav_domain: "example.org".into(),
        };
        let own = |drive_id, path: &str| {
            Some(OwnDrive {
                drive_id: DriveId::new(drive_id),
                path: path.into(),
            })
        };
        assert_eq!(
            sources.own_drive("http://127.0.0.1:8080/dav/drives/123456"),
            own(123456, "")
        );
        assert_eq!(
            sources.own_drive("http://127.0.0.1:8080/dav/drives/123456/Mis%20Fotos/"),
            own(123456, "/Mis Fotos")
        );
        // Other spellings of the same origin.
        assert_eq!(sources.own_drive("http://2130706433:8080/dav/drives/7/a"), own(7, "/a"));
        assert_eq!(
            sources.own_drive("https://CLOUD.example.org:443/dav/drives/7/"),
            own(7, "")
        );
        assert_eq!(
            sources.own_drive("https://123456.connect.example.org/Fotos"),
            own(123456, "/Fotos")
        );
        assert_eq!(
            sources.own_drive("http://123456.connect.example.org:8080/"),
            own(123456, "")
        );
        // Not ours, or not a drive.
        assert_eq!(sources.own_drive("http://127.0.0.1:8081/dav/drives/7/"), None);
        assert_eq!(sources.own_drive("http://127.0.0.1:8080/api/v1/me"), None);
        assert_eq!(sources.own_drive("http://127.0.0.1:8080/dav/drives/x7/"), None);
        assert_eq!(sources.own_drive("https://123456.connect.evil.org/"), None);
        assert_eq!(sources.own_drive("https://abc.connect.example.org/"), None);
        assert_eq!(sources.own_drive("http://nas.example.org/dav/drives/7/"), None);
    }
}
