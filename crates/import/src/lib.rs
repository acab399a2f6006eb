//! The worker behind "Import external data": copies a WebDAV folder (on
//! another server, or one of our own drives) into a drive, in the
//! background, several jobs at once per process and a bounded number per
//! organization, so one slow source does not stall everyone's imports.
//!
//! Jobs and their work lists are in the store (see `drive::imports`):
//! a job claimed by a process that dies is taken over when its lease
//! expires, and resumes from its work list. A job claimed
//! [`MAX_ATTEMPTS`] times in a row without finishing an item (its input
//! crashes the server, or the store keeps failing) is failed instead of
//! being run forever. A file already at the destination with the source's
//! size and modification time is not copied again. Whatever the ending
//! (done, failed, cancelled), the statement that ends the job erases the
//! sealed source password, and the member who started it gets an email.
//!
//! Every connection to a source goes through [`outbound::Guard`]; a
//! source that is one of our own drives is read in-process, through the
//! drive layer, after the same sign-in check as WebDAV.
#![forbid(unsafe_code)]

pub mod outbound;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dav::xml::{self, XmlError};
use drive::{
    DriveTree, Drives, FileError, IMPORT_LEASE, IMPORT_SECRET_PURPOSE, IMPORT_TOPIC, Import, ImportItem, ImportState,
    OwnDrive, import_reason,
};
use identity::{Account, Millis, NoticeKind, ProtocolAuthError};
use percent_encoding::percent_decode_str;

/// The largest PROPFIND answer read for one source folder.
const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;

/// Claims in a row without an item finished, after which a job is failed.
pub const MAX_ATTEMPTS: u32 = 3;

/// What one import may take, and how many run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From when the import was started to its end, restarts included.
    pub deadline: Duration,
    /// Files found in the source.
    pub max_files: u64,
    /// Folders below the source folder.
    pub max_depth: usize,
    /// Bytes copied (the drive's quota applies too).
    pub max_bytes: u64,
    /// Jobs this process runs at once.
    pub jobs: usize,
    /// Jobs of one organization running at once, across all processes.
    pub jobs_per_org: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(24 * 3600),
            max_files: 1_000_000,
            max_depth: 64,
            max_bytes: 1 << 40,
            jobs: 4,
            jobs_per_org: 2,
        }
    }
}

/// What the worker needs besides the drives.
#[derive(Clone)]
pub struct Worker {
    pub drives: Drives,
    pub guard: Arc<outbound::Guard>,
    pub limits: Limits,
}

/// The [`drive::SourceGuard`] the drive layer asks when an import is
/// started.
#[async_trait::async_trait]
impl drive::SourceGuard for outbound::Guard {
    async fn permits(&self, source_url: &str) -> bool {
        match reqwest::Url::parse(source_url) {
            Ok(url) => !matches!(self.check_url(&url).await, Err(Some(outbound::NotAllowed))),
            Err(_) => false,
        }
    }
}

/// Runs import jobs until the process stops: up to `limits.jobs` at
/// once, each in a task of its own.
pub async fn run_forever(worker: Worker) {
    let drives = worker.drives.clone();
    let wake = drives.identity().signals().subscribe(IMPORT_TOPIC);
    let slots = Arc::new(tokio::sync::Semaphore::new(worker.limits.jobs.max(1)));
    loop {
        let notified = wake.notified();
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let now = drives.identity().now();
        let claimed = drives
            .import_store()
            .claim_import(now, IMPORT_LEASE, worker.limits.jobs_per_org.max(1))
            .await;
        match claimed {
            Ok(Some(job)) => {
                let worker = worker.clone();
                tokio::spawn(async move {
                    let id = job.id.clone();
                    if let Err(e) = run(&worker, job).await {
                        // The lease runs out and another attempt resumes it.
                        tracing::warn!(import = %id, error = %e, "import interrupted; it will resume");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    drop(slot);
                });
                continue;
            }
            Ok(None) => drop(slot),
            Err(e) => {
                drop(slot);
                tracing::warn!(error = %e, "cannot look for import jobs");
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
    }
}

/// Why a job stops as a whole (the store failing is not one of them: the
/// job is then left for a later attempt).
enum Stop {
    Cancelled,
    Failed(String),
}

/// Where the files come from.
enum Source {
    /// A server elsewhere, reached through the guard.
    Remote {
        http: reqwest::Client,
        /// The decoded path of the source folder on its server.
        base_path: String,
    },
    /// One of our own drives, read through the drive layer as the
    /// account the source user name and password sign in to.
    Drive { reader: Account, drive: OwnDrive },
}

struct Job<'a> {
    drives: &'a Drives,
    guard: &'a outbound::Guard,
    limits: Limits,
    /// Who started the import: their access to the drive is checked
    /// again while it runs.
    account: &'a identity::Account,
    import: Import,
    tree: DriveTree,
    source: Source,
    password: String,
    /// Bytes copied so far, this attempt and earlier ones.
    bytes: AtomicU64,
}

/// The member-facing texts of a source that fails: the same whatever
/// went wrong on the way, so that an import is no port scanner.
/// (The sentences of `drive::IMPORT_REASONS`' `unreachable`, `not_allowed`
/// and `redirected`.)
const UNREACHABLE: &str = "the source cannot be reached";
const NOT_ALLOWED: &str = "this address is not allowed";
const REDIRECTED: &str = "the source sent the import to another address, which is not followed";

/// The redirect the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("{REDIRECTED}")]
struct Redirected;

/// An HTTP client for one source: it connects only to addresses the
/// guard permits, follows redirects only within the source's origin (so
/// the password is never sent elsewhere), and ignores proxy settings.
fn source_client(guard: &Arc<outbound::Guard>, url: &reqwest::Url) -> Result<reqwest::Client, reqwest::Error> {
    let origin = url.origin();
    let hops = guard.clone();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 3 || attempt.url().origin() != origin || hops.refuses_literal(attempt.url()) {
            attempt.error(Redirected)
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(120))
        .redirect(policy)
        .no_proxy()
        .dns_resolver(guard.resolver(url.port_or_known_default().unwrap_or(0)))
        .build()
}

/// What a member reads about an HTTP error: never the system's text.
fn http_failure(e: &reqwest::Error) -> String {
    if outbound::is_not_allowed(e) {
        NOT_ALLOWED.into()
    } else if e.is_redirect() {
        REDIRECTED.into()
    } else {
        tracing::debug!(error = %e, "an import source failed");
        UNREACHABLE.into()
    }
}

async fn run(worker: &Worker, import: Import) -> Result<(), identity::StoreError> {
    let drives = &worker.drives;
    let identity = drives.identity();
    let account = identity.account_by_id(&import.account_id).await?;
    let password = identity
        .key()
        .open(IMPORT_SECRET_PURPOSE, &import.id, &import.sealed_secret)
        .and_then(|p| String::from_utf8(p).ok());
    let outcome = if import.attempts > MAX_ATTEMPTS {
        tracing::warn!(import = %import.id, attempts = import.attempts, "import failed after repeated interruptions");
        Err(Stop::Failed(import_reason("interrupted", MAX_ATTEMPTS)))
    } else {
        match (&account, password) {
            (None, _) => Err(Stop::Failed(import_reason("account_gone", ""))),
            (_, None) => Err(Stop::Failed(import_reason("password_unreadable", ""))),
            (Some(account), Some(password)) => match drives.tree(account, import.drive_id).await {
                Ok(tree) => match source(worker, &import, &password).await? {
                    Ok(source) => {
                        let job = Job {
                            drives,
                            guard: &worker.guard,
                            limits: worker.limits,
                            account,
                            bytes: AtomicU64::new(import.bytes_done),
                            import: import.clone(),
                            tree,
                            source,
                            password,
                        };
                        job.copy().await
                    }
                    Err(stop) => Err(stop),
                },
                Err(FileError::Store(e)) => return Err(e),
                Err(_) => Err(Stop::Failed(import_reason("drive_gone", ""))),
            },
        }
    };
    let (state, reason) = match outcome {
        Ok(()) => (ImportState::Done, String::new()),
        Err(Stop::Cancelled) => (ImportState::Cancelled, String::new()),
        Err(Stop::Failed(reason)) => (ImportState::Failed, reason),
    };
    let store = drives.import_store();
    store.end_import(&import.id, state, &reason, identity.now()).await?;
    tracing::info!(import = %import.id, state = state.as_str(), "import ended; source password erased");
    if let Some(account) = account {
        notify(drives, &account, &import.id, &reason).await?;
    }
    Ok(())
}

/// The import's source: one of our own drives once the source's user
/// name and password sign in (as WebDAV's Basic sign-in would), or a
/// guarded HTTP client.
async fn source(
    worker: &Worker,
    import: &Import,
    password: &str,
) -> Result<Result<Source, Stop>, identity::StoreError> {
    if let Some(drive) = worker.drives.import_sources().own_drive(&import.source_url) {
        // Throttled like any sign-in; imports count as one local client.
        let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let signed_in = worker
            .drives
            .identity()
            .authenticate_protocol_client(&import.source_user, password, client)
            .await;
        return Ok(match signed_in {
            Ok(reader) => Ok(Source::Drive { reader, drive }),
            Err(ProtocolAuthError::InvalidCredentials) => Err(Stop::Failed(import_reason("source_refused", ""))),
            Err(ProtocolAuthError::TooManyAttempts { .. }) => Err(Stop::Failed(import_reason("source_locked", ""))),
            Err(ProtocolAuthError::TwoFactorRequired { organization }) => {
                Err(Stop::Failed(import_reason("two_factor_required", organization)))
            }
            Err(ProtocolAuthError::Store(e)) => return Err(e),
        });
    }
    let Ok(url) = reqwest::Url::parse(&import.source_url) else {
        return Ok(Err(Stop::Failed(UNREACHABLE.into())));
    };
    Ok(match source_client(&worker.guard, &url) {
        Ok(http) => Ok(Source::Remote {
            http,
            base_path: base_path(&import.source_url),
        }),
        Err(e) => return Err(identity::StoreError::Backend(e.to_string())),
    })
}

/// The email to the member who started the import.
async fn notify(drives: &Drives, account: &Account, id: &str, reason: &str) -> Result<(), identity::StoreError> {
    let Some(done) = drives.import_store().import(id).await? else {
        return Ok(());
    };
    let drive = drives.tree(account, done.drive_id).await.ok();
    let drive_name = drive
        .as_ref()
        .map_or_else(|| done.drive_id.to_string(), |t| t.drive().name.clone());
    // The email says why in the member's language: the reason's code and
    // value, or (a sentence that is not one of ours) the sentence itself.
    let (reason_code, reason_arg) = drive::explain_import_reason(reason).unwrap_or_default();
    let reason = if reason.is_empty() || !reason_code.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    };
    let params = [
        ("drive", drive_name.as_str()),
        ("folder", done.folder.as_str()),
        ("source", done.source_url.as_str()),
        ("files", &done.files_done.to_string()),
        ("bytes", &done.bytes_done.to_string()),
        ("failed", &done.files_failed.to_string()),
        ("outcome", done.state.as_str()),
        ("reason", &reason),
        ("reason_code", reason_code),
        ("reason_arg", &reason_arg),
    ];
    drives
        .identity()
        .notify_member(account, NoticeKind::ImportFinished, &params)
        .await
}

/// The decoded path part of a URL, without a trailing slash.
fn base_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    percent_decode_str(path)
        .decode_utf8_lossy()
        .trim_end_matches('/')
        .to_owned()
}

/// A source entry found in a PROPFIND answer.
#[derive(Debug, PartialEq)]
struct Found {
    /// Decoded path of the href.
    path: String,
    is_dir: bool,
    size: u64,
    modified_at: Millis,
}

/// What one `propstat` of a listed entry says.
#[derive(Default)]
struct Propstat {
    status: Option<String>,
    /// `Some(is a collection)` when it has `resourcetype`.
    collection: Option<bool>,
    length: Option<String>,
    modified: Option<String>,
}

/// One `response` of a listing, as read so far.
#[derive(Default)]
struct ListedResponse {
    href: Option<String>,
    propstats: Vec<Propstat>,
}

impl ListedResponse {
    fn found(self) -> Option<Found> {
        // An absolute URL or an absolute path.
        let href = self.href?;
        let href = href.trim();
        let path = match href.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_owned(),
            None => href.to_owned(),
        };
        let path = percent_decode_str(&path).decode_utf8_lossy().into_owned();
        let ok: Vec<&Propstat> = self
            .propstats
            .iter()
            .filter(|ps| ps.status.as_deref().is_none_or(|s| s.contains(" 200")))
            .collect();
        let is_dir = ok.iter().find_map(|ps| ps.collection).unwrap_or(false);
        let size = ok
            .iter()
            .find_map(|ps| ps.length.as_deref())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let modified_at = ok
            .iter()
            .find_map(|ps| ps.modified.as_deref())
            .and_then(|t| httpdate::parse_http_date(t.trim()).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as Millis);
        Some(Found {
            path: path.trim_end_matches('/').to_owned(),
            is_dir,
            size,
            modified_at,
        })
    }
}

/// The entries of a `multistatus` answer; `Ok(None)` when it is not one,
/// `Err` when the bounded reader refuses it (a DOCTYPE, entities, too
/// deep, too many elements...). Read as a stream of events, so a listing
/// of tens of thousands of entries is never held as a tree. Names are
/// matched by their local part, whatever the namespace.
fn parse_listing(xml: &[u8]) -> Result<Option<Vec<Found>>, XmlError> {
    let in_propstat = |open: &[String]| open.len() >= 3 && open[1] == "response" && open[2] == "propstat";
    let in_prop = |open: &[String]| in_propstat(open) && open.len() >= 4 && open[3] == "prop";
    let mut reader = xml::Reader::new(xml, xml::Limits::LISTING)?;
    // The local names of the open elements, the root first.
    let mut open: Vec<String> = Vec::new();
    // The text since the last tag: a leaf's text at its end.
    let mut text = String::new();
    let mut found = Vec::new();
    let mut listed = ListedResponse::default();
    let mut propstat = Propstat::default();
    while let Some(event) = reader.next_event()? {
        match event {
            xml::Event::Start { name, .. } => {
                let local = name.local;
                match (open.len(), local.as_str()) {
                    (0, "multistatus") => {}
                    (0, _) => return Ok(None),
                    (1, "response") => listed = ListedResponse::default(),
                    (2, "propstat") if open[1] == "response" => propstat = Propstat::default(),
                    (_, "resourcetype") if in_prop(&open) => {
                        propstat.collection.get_or_insert(false);
                    }
                    (_, "collection") if in_prop(&open) && open.iter().any(|n| n == "resourcetype") => {
                        propstat.collection = Some(true);
                    }
                    _ => {}
                }
                open.push(local);
                text.clear();
            }
            xml::Event::Text(piece) => text.push_str(&piece),
            xml::Event::End => {
                let local = open.pop().unwrap_or_default();
                let in_response = open.len() >= 2 && open[1] == "response";
                match local.as_str() {
                    "href" if in_response && listed.href.is_none() => listed.href = Some(text.clone()),
                    "status" if in_propstat(&open) && propstat.status.is_none() => {
                        propstat.status = Some(text.clone());
                    }
                    "getcontentlength" if in_prop(&open) && propstat.length.is_none() => {
                        propstat.length = Some(text.clone());
                    }
                    "getlastmodified" if in_prop(&open) && propstat.modified.is_none() => {
                        propstat.modified = Some(text.clone());
                    }
                    "propstat" if open.len() == 2 && in_response => {
                        listed.propstats.push(std::mem::take(&mut propstat));
                    }
                    "response" if open.len() == 1 => found.extend(std::mem::take(&mut listed).found()),
                    _ => {}
                }
                text.clear();
            }
        }
    }
    Ok(Some(found))
}

/// A download under way, from either kind of source.
enum Download {
    Remote(reqwest::Response),
    Drive(Box<dyn drive::BlobChunks>),
}

impl Download {
    /// The next bytes; `None` at the end.
    async fn next(&mut self) -> Result<Option<bytes::Bytes>, String> {
        match self {
            Self::Remote(response) => response.chunk().await.map_err(|e| {
                tracing::debug!(error = %e, "an import download was cut");
                import_reason("download_cut", "")
            }),
            Self::Drive(chunks) => match chunks.next_chunk(256 * 1024).await {
                Ok(chunk) if chunk.is_empty() => Ok(None),
                Ok(chunk) => Ok(Some(chunk)),
                Err(e) => {
                    tracing::warn!(error = %e, "reading an import's source drive failed");
                    Err(import_reason("file_unreadable", ""))
                }
            },
        }
    }
}

impl Job<'_> {
    /// The source URL of a path, checked: an address host never reaches
    /// the guarded resolver, so it is judged here before every request.
    fn url(&self, path: &str) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(&format!("{}{}", self.import.source_url, drive::url_path(path)))
            .map_err(|_| UNREACHABLE.to_owned())?;
        if self.guard.refuses_literal(&url) {
            return Err(NOT_ALLOWED.into());
        }
        Ok(url)
    }

    fn dest(&self, path: &str) -> String {
        format!("{}{path}", self.import.folder.trim_end_matches('/'))
    }

    /// Fails the job once it has run past its deadline (counted from
    /// when it was started, restarts included).
    fn in_time(&self) -> Result<(), Stop> {
        let deadline = self.import.created_at + self.limits.deadline.as_millis() as Millis;
        if self.drives.identity().now() > deadline {
            return Err(Stop::Failed(import_reason(
                "too_long",
                self.limits.deadline.as_secs().div_ceil(3600),
            )));
        }
        Ok(())
    }

    async fn copy(&self) -> Result<(), Stop> {
        let store = self.drives.import_store();
        let failed = |e: identity::StoreError| Stop::Failed(import_reason("storage", e));
        if store.next_import_item(&self.import.id).await.map_err(failed)?.is_none() && self.import.files_found == 0 {
            let root = ImportItem {
                path: String::new(),
                is_dir: true,
                size: 0,
                modified_at: 0,
            };
            store.add_import_items(&self.import.id, &[root]).await.map_err(failed)?;
        }
        let mut checked = std::time::Instant::now();
        loop {
            let Some(item) = store.next_import_item(&self.import.id).await.map_err(failed)? else {
                return Ok(());
            };
            self.in_time()?;
            if checked.elapsed() > Duration::from_secs(5) {
                // An admin may have taken the member's write access away.
                checked = std::time::Instant::now();
                let access = self
                    .drives
                    .access(self.account, self.import.drive_id)
                    .await
                    .map_err(failed)?;
                if !matches!(access, Some((_, drive::Access::ReadWrite))) {
                    return Err(Stop::Failed(import_reason("not_writable", "")));
                }
            }
            let lease_until = self.drives.identity().now() + IMPORT_LEASE;
            let current = if item.is_dir { "" } else { item.path.as_str() };
            if !store
                .renew_import(&self.import.id, lease_until, current)
                .await
                .map_err(failed)?
            {
                return Err(Stop::Cancelled);
            }
            let result = if item.is_dir {
                self.list(&item).await.map(|()| None)
            } else {
                self.copy_file(&item).await.map(Some)
            };
            let (bytes, error) = match result {
                Ok(bytes) => (bytes, None),
                Err(ItemError::Stop(stop)) => return Err(stop),
                Err(ItemError::Skip(why)) => (None, Some(why)),
            };
            store
                .finish_import_item(&self.import.id, &item.path, bytes, error.as_deref())
                .await
                .map_err(failed)?;
        }
    }

    /// Lists a source folder, adds what it holds, and makes the folder at
    /// the destination.
    async fn list(&self, item: &ImportItem) -> Result<(), ItemError> {
        let top = item.path.is_empty();
        let fail = |why: String| {
            if top {
                ItemError::Stop(Stop::Failed(why))
            } else {
                ItemError::Skip(why)
            }
        };
        if item.path.matches('/').count() > self.limits.max_depth {
            return Err(fail(import_reason("too_deep", self.limits.max_depth)));
        }
        let items = match &self.source {
            Source::Remote { http, base_path } => self.list_remote(http, base_path, item).await.map_err(fail)?,
            Source::Drive { reader, drive } => self.list_drive(reader, drive, item).await.map_err(|e| match e {
                Listed::Store(e) => ItemError::Stop(Stop::Failed(import_reason("storage", e))),
                Listed::Failed(why) => fail(why),
            })?,
        };
        let files = items.iter().filter(|i| !i.is_dir).count() as u64;
        let found = self
            .drives
            .import_store()
            .import(&self.import.id)
            .await
            .map_err(|e| ItemError::Stop(Stop::Failed(import_reason("storage", e))))?
            .map_or(0, |i| i.files_found);
        if found + files > self.limits.max_files {
            return Err(ItemError::Stop(Stop::Failed(import_reason(
                "too_many_files",
                self.limits.max_files,
            ))));
        }
        if !top {
            match self.tree.make_folder(&self.dest(&item.path)).await {
                Ok(_) | Err(FileError::Exists) => {}
                Err(FileError::Store(e)) => return Err(ItemError::Stop(Stop::Failed(import_reason("storage", e)))),
                Err(e) => return Err(ItemError::Skip(import_reason("folder_not_made", e))),
            }
        }
        self.drives
            .import_store()
            .add_import_items(&self.import.id, &items)
            .await
            .map_err(|e| ItemError::Stop(Stop::Failed(import_reason("storage", e))))
    }

    async fn list_remote(
        &self,
        http: &reqwest::Client,
        base_path: &str,
        item: &ImportItem,
    ) -> Result<Vec<ImportItem>, String> {
        let body = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>"#;
        let mut response = http
            .request(
                reqwest::Method::from_bytes(b"PROPFIND").expect("a method"),
                self.url(&format!("{}/", item.path))?,
            )
            .basic_auth(&self.import.source_user, Some(&self.password))
            .header("Depth", "1")
            .header("Content-Type", "application/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|e| http_failure(&e))?;
        match response.status().as_u16() {
            207 => {}
            401 | 403 => return Err(import_reason("source_refused", "")),
            404 => return Err(import_reason("folder_missing", "")),
            _ => return Err(import_reason("not_webdav", "")),
        }
        let mut xml = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| http_failure(&e))? {
            if xml.len() + chunk.len() > MAX_LISTING_BYTES {
                return Err(import_reason("listing_too_large", ""));
            }
            xml.extend_from_slice(&chunk);
        }
        let found = match parse_listing(&xml) {
            Ok(Some(found)) => found,
            Ok(None) => return Err(import_reason("listing_not_webdav", "")),
            Err(e) => return Err(import_reason("listing_refused", e)),
        };
        let folder = format!("{base_path}{}", item.path);
        let mut items = Vec::new();
        for entry in found {
            let Some(name) = entry.path.strip_prefix(&format!("{folder}/")) else {
                continue;
            };
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                continue;
            }
            items.push(ImportItem {
                path: format!("{}/{name}", item.path),
                is_dir: entry.is_dir,
                size: entry.size,
                modified_at: entry.modified_at,
            });
        }
        Ok(items)
    }

    async fn list_drive(
        &self,
        reader: &Account,
        drive: &OwnDrive,
        item: &ImportItem,
    ) -> Result<Vec<ImportItem>, Listed> {
        let path = format!("{}{}", drive.path, item.path);
        let nodes = match self.drives.list(reader, drive.drive_id, &path).await {
            Ok(nodes) => nodes,
            Err(FileError::Store(e)) => return Err(Listed::Store(e)),
            // Another organization's drive looks like no folder at all.
            Err(_) => return Err(Listed::Failed(import_reason("folder_missing", ""))),
        };
        Ok(nodes
            .into_iter()
            .map(|node| ImportItem {
                path: format!("{}/{}", item.path, node.name),
                is_dir: node.is_dir,
                size: node.size,
                modified_at: node.modified_at,
            })
            .collect())
    }

    /// Opens one source file; `Ok(None)` when the source has no such file.
    async fn download(&self, item: &ImportItem) -> Result<(Download, Option<u64>), ItemError> {
        match &self.source {
            Source::Remote { http, .. } => {
                let url = self.url(&item.path).map_err(ItemError::Skip)?;
                let response = http
                    .get(url)
                    .basic_auth(&self.import.source_user, Some(&self.password))
                    .send()
                    .await
                    .map_err(|e| ItemError::Skip(http_failure(&e)))?;
                match response.status().as_u16() {
                    200 => {}
                    401 | 403 => {
                        return Err(ItemError::Stop(Stop::Failed(import_reason("source_refused", ""))));
                    }
                    status => return Err(ItemError::Skip(import_reason("answered", status))),
                }
                let length = response.content_length();
                Ok((Download::Remote(response), length))
            }
            Source::Drive { reader, drive } => {
                let path = format!("{}{}", drive.path, item.path);
                match self.drives.open_chunks(reader, drive.drive_id, &path).await {
                    Ok((node, chunks)) => Ok((Download::Drive(chunks), Some(node.size))),
                    Err(FileError::Store(e)) => Err(ItemError::Stop(Stop::Failed(import_reason("storage", e)))),
                    Err(_) => Err(ItemError::Skip(import_reason("gone_from_source", ""))),
                }
            }
        }
    }

    /// Copies one file, unless an earlier attempt already did.
    async fn copy_file(&self, item: &ImportItem) -> Result<u64, ItemError> {
        let dest = self.dest(&item.path);
        if let Ok(existing) = self.tree.stat(&dest).await
            && !existing.is_dir
            && existing.size == item.size
            && existing.modified_at == item.modified_at
            && item.modified_at != 0
        {
            return Ok(existing.size);
        }
        let too_much = || ItemError::Stop(Stop::Failed(import_reason("too_big", self.limits.max_bytes)));
        let copied = self.bytes.load(Ordering::Relaxed);
        if copied + item.size > self.limits.max_bytes {
            return Err(too_much());
        }
        let (mut download, length) = self.download(item).await?;
        let mut write = self.tree.begin_write(&dest, length, false).await.map_err(file_error)?;
        let mut renewed = std::time::Instant::now();
        let mut written = 0_u64;
        while let Some(chunk) = download.next().await.map_err(ItemError::Skip)? {
            written += chunk.len() as u64;
            if copied + written > self.limits.max_bytes {
                return Err(too_much());
            }
            write.write(&chunk).await.map_err(file_error)?;
            if renewed.elapsed() > Duration::from_secs(5) {
                renewed = std::time::Instant::now();
                self.in_time().map_err(ItemError::Stop)?;
                let lease_until = self.drives.identity().now() + IMPORT_LEASE;
                let going_on = self
                    .drives
                    .import_store()
                    .renew_import(&self.import.id, lease_until, &item.path)
                    .await
                    .map_err(|e| ItemError::Stop(Stop::Failed(import_reason("storage", e))))?;
                if !going_on {
                    // Dropped unfinished: nothing of this file is kept.
                    return Err(ItemError::Stop(Stop::Cancelled));
                }
            }
        }
        let modified = (item.modified_at != 0).then_some(item.modified_at);
        let node = write.commit(modified, None, None).await.map_err(file_error)?;
        self.bytes.fetch_add(node.size, Ordering::Relaxed);
        Ok(node.size)
    }
}

/// Why listing one of our own drives failed.
enum Listed {
    Store(identity::StoreError),
    Failed(String),
}

enum ItemError {
    /// This item failed; the job goes on.
    Skip(String),
    Stop(Stop),
}

fn file_error(e: FileError) -> ItemError {
    match e {
        FileError::InsufficientStorage => ItemError::Stop(Stop::Failed(import_reason("drive_full", ""))),
        FileError::Store(e) => ItemError::Stop(Stop::Failed(import_reason("storage", e))),
        FileError::NoDrive | FileError::ReadOnly => ItemError::Stop(Stop::Failed(import_reason("not_writable", ""))),
        other => ItemError::Skip(import_reason("file_refused", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_read_whatever_the_prefixes() {
        let xml = br#"<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:"><d:response><d:href>/dav/Fotos/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
<d:response><d:href>http://nas:8080/dav/Fotos/Playa%20%C3%B1.jpg</d:href><d:propstat><d:prop><d:resourcetype/><d:getcontentlength>1234</d:getcontentlength><d:getlastmodified>Tue, 14 Nov 2023 22:13:20 GMT</d:getlastmodified></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"#;
        let found = parse_listing(xml).unwrap().unwrap();
        assert_eq!(found.len(), 2);
        assert!(found[0].is_dir && found[0].path == "/dav/Fotos");
        assert_eq!(
            found[1],
            Found {
                path: "/dav/Fotos/Playa ñ.jpg".into(),
                is_dir: false,
                size: 1234,
                modified_at: 1_700_000_000_000,
            }
        );
        assert_eq!(parse_listing(b"<html>no</html>"), Ok(None));
        assert!(parse_listing(b"not xml").is_err());
    }

    #[test]
    fn a_listing_of_tens_of_thousands_of_entries_is_read_whole() {
        let mut xml = String::from(r#"<?xml version="1.0"?><d:multistatus xmlns:d="DAV:">"#);
        for i in 0..30_000 {
            xml.push_str(&format!(
                "<d:response><d:href>/dav/f/file%20{i}.jpg</d:href><d:propstat><d:prop><d:resourcetype/>\
                 <d:getcontentlength>{i}</d:getcontentlength><d:getlastmodified>Tue, 14 Nov 2023 22:13:20 GMT</d:getlastmodified>\
                 </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>\n"
            ));
        }
        xml.push_str("</d:multistatus>");
        let found = parse_listing(xml.as_bytes()).unwrap().unwrap();
        assert_eq!(found.len(), 30_000);
        assert_eq!(found[29_999].path, "/dav/f/file 29999.jpg");
        assert_eq!(found[29_999].size, 29_999);
    }

    #[test]
    fn hostile_listings_are_refused_with_a_reason() {
        let nested = format!("<d:multistatus xmlns:d=\"DAV:\">{}", "<d:x>".repeat(100_000));
        assert_eq!(parse_listing(nested.as_bytes()), Err(XmlError::TooDeep { limit: 64 }));
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE m [<!ENTITY % a "xxxxxxxxxx"><!ENTITY % b "%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;">]><m/>"#;
        assert_eq!(parse_listing(bomb.as_bytes()), Err(XmlError::Doctype));
        // Unprefixed, another namespace, several propstats: still read.
        let plain = br#"<multistatus xmlns="DAV:"><response><href>/a/b</href><propstat><prop><getcontentlength/></prop><status>HTTP/1.1 404 Not Found</status></propstat><propstat><prop><getcontentlength> 7 </getcontentlength><resourcetype/></prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"#;
        assert_eq!(
            parse_listing(plain),
            Ok(Some(vec![Found {
                path: "/a/b".into(),
                is_dir: false,
                size: 7,
                modified_at: 0,
            }]))
        );
    }

    #[test]
    fn base_paths_are_decoded() {
        assert_eq!(base_path("https://nas.example.org/dav/Mis%20Fotos/"), "/dav/Mis Fotos");
        assert_eq!(base_path("http://127.0.0.1:8080"), "");
    }
}
