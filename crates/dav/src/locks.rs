//! The drive's locks as a `dav-server` lock system. Locks live in the
//! store, so every process serving the drive honours them; one request
//! reads them at most once unless it changes them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use dav_server::davpath::DavPath;
use dav_server::ls::{DavLock, DavLockSystem, LsFuture};
use drive::{DriveTree, Lock, lock_conflict, within};
use futures_util::FutureExt;
use xmltree::Element;

#[derive(Clone)]
pub struct DriveLocks {
    tree: DriveTree,
    /// Who makes the request (the account's email): only they, or a
    /// manager of the organization, remove their locks.
    principal: String,
    /// The URL prefix the drive is served under ("" or `/dav/drives/<id>`).
    prefix: String,
    known: Arc<Mutex<Option<Vec<Lock>>>>,
}

impl std::fmt::Debug for DriveLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriveLocks")
            .field("drive", &self.tree.drive().id)
            .finish()
    }
}

fn relative(path: &DavPath) -> String {
    String::from_utf8_lossy(path.as_bytes())
        .trim_end_matches('/')
        .to_owned()
}

/// Elements parsed by `dav-server` may carry a prefix that only an outer
/// element declared; declare it where it is used, so the stored XML
/// parses again on its own.
fn declare_prefixes(element: &mut Element) {
    if let (Some(prefix), Some(namespace)) = (&element.prefix, &element.namespace) {
        element
            .namespaces
            .get_or_insert_with(xmltree::Namespace::empty)
            .force_put(prefix.clone(), namespace.clone());
    }
    for child in &mut element.children {
        if let xmltree::XMLNode::Element(child) = child {
            declare_prefixes(child);
        }
    }
}

/// A lock's owner as stored, for `dav-server`; checked by the bounded
/// reader first, like every XML parsed here (it came from a checked LOCK
/// body, but the store is not the place to trust that).
fn stored_owner(owner_xml: &str) -> Option<Box<Element>> {
    if owner_xml.is_empty() || crate::xml::check(owner_xml.as_bytes(), crate::xml::Limits::LISTING).is_err() {
        return None;
    }
    Element::parse(owner_xml.as_bytes()).ok().map(Box::new)
}

impl DriveLocks {
    /// The lock system of one request. `locked`: whether any lock on the
    /// drive was live when the request began; when none was, the locks are
    /// known to be none until this request changes them. (A lock taken by
    /// someone else meanwhile is the same race as one taken just after
    /// the check.)
    pub fn new(tree: DriveTree, principal: String, prefix: String, locked: bool) -> Self {
        Self {
            tree,
            principal,
            prefix,
            known: Arc::new(Mutex::new((!locked).then(Vec::new))),
        }
    }

    async fn current(&self) -> Result<Vec<Lock>, drive::FileError> {
        if let Some(locks) = self.known.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(locks);
        }
        let locks = self.tree.locks().await?;
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = Some(locks.clone());
        Ok(locks)
    }

    fn forget(&self) {
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn to_dav(&self, lock: &Lock) -> DavLock {
        let url = format!("{}{}", self.prefix, drive::url_path(&lock.path));
        let url = if url.is_empty() { "/".to_owned() } else { url };
        let mut path = DavPath::new(&url).unwrap_or_else(|_| DavPath::new("/").expect("/ is a path"));
        if !self.prefix.is_empty() {
            let _ = path.set_prefix(&self.prefix);
        }
        let timeout = (lock.timeout_secs > 0).then(|| Duration::from_secs(lock.timeout_secs));
        DavLock {
            token: lock.token.clone(),
            path: Box::new(path),
            principal: Some(lock.principal.clone()),
            owner: stored_owner(&lock.owner_xml),
            timeout_at: (lock.expires_at > 0)
                .then(|| UNIX_EPOCH + Duration::from_millis(u64::try_from(lock.expires_at).unwrap_or(0))),
            timeout,
            shared: lock.shared,
            deep: lock.deep,
        }
    }
}

impl DavLockSystem for DriveLocks {
    fn lock(
        &self,
        path: &DavPath,
        principal: Option<&str>,
        owner: Option<&Element>,
        timeout: Option<Duration>,
        shared: bool,
        deep: bool,
    ) -> LsFuture<'_, Result<DavLock, DavLock>> {
        let mut owner_xml = Vec::new();
        if let Some(owner) = owner {
            let mut owner = owner.clone();
            declare_prefixes(&mut owner);
            let _ = owner.write(&mut owner_xml);
        }
        let lock = Lock {
            token: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            path: relative(path),
            principal: principal.unwrap_or_default().to_owned(),
            owner_xml: String::from_utf8(owner_xml).unwrap_or_default(),
            expires_at: 0,
            timeout_secs: timeout.map_or(0, |t| t.as_secs().max(1)),
            shared,
            deep,
        };
        async move {
            if let Err(refusal) = self.tree.may_lock(&lock.path, lock.deep) {
                // The web layer refuses these first, with the reason.
                tracing::warn!(%refusal, "refused a lock");
                return Err(self.to_dav(&lock));
            }
            self.forget();
            match self.tree.lock(lock.clone()).await {
                Ok(Ok(taken)) => Ok(self.to_dav(&taken)),
                Ok(Err(other)) => Err(self.to_dav(&other)),
                Err(e) => {
                    // Answered as "locked": the client retries later.
                    tracing::error!(error = %e, "storing a lock failed");
                    Err(self.to_dav(&lock))
                }
            }
        }
        .boxed()
    }

    fn unlock(&self, path: &DavPath, token: &str) -> LsFuture<'_, Result<(), ()>> {
        let (path, token) = (relative(path), token.to_owned());
        async move {
            self.forget();
            match self.tree.unlock(&path, &token, &self.principal).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(()),
                Err(e) => {
                    tracing::error!(error = %e, "removing a lock failed");
                    Err(())
                }
            }
        }
        .boxed()
    }

    fn refresh(&self, path: &DavPath, token: &str, timeout: Option<Duration>) -> LsFuture<'_, Result<DavLock, ()>> {
        let (path, token) = (relative(path), token.to_owned());
        async move {
            self.forget();
            let secs = timeout.map_or(0, |t| t.as_secs().max(1));
            match self.tree.refresh_lock(&path, &token, secs).await {
                Ok(Some(lock)) => Ok(self.to_dav(&lock)),
                Ok(None) => Err(()),
                Err(e) => {
                    tracing::error!(error = %e, "refreshing a lock failed");
                    Err(())
                }
            }
        }
        .boxed()
    }

    fn check(
        &self,
        path: &DavPath,
        principal: Option<&str>,
        ignore_principal: bool,
        deep: bool,
        submitted_tokens: &[String],
    ) -> LsFuture<'_, Result<(), DavLock>> {
        let path = relative(path);
        let principal = principal.map(str::to_owned);
        let tokens = submitted_tokens.to_vec();
        async move {
            let locks = match self.current().await {
                Ok(locks) => locks,
                Err(e) => {
                    tracing::error!(error = %e, "reading locks failed");
                    // Refuse the change rather than ignore a lock.
                    let blocked = Lock {
                        token: String::new(),
                        path: path.clone(),
                        principal: String::new(),
                        owner_xml: String::new(),
                        expires_at: 0,
                        timeout_secs: 0,
                        shared: false,
                        deep: false,
                    };
                    return Err(self.to_dav(&blocked));
                }
            };
            match lock_conflict(
                &locks,
                &path,
                principal.as_deref(),
                ignore_principal,
                deep,
                &tokens,
                false,
            ) {
                Some(lock) => Err(self.to_dav(lock)),
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn discover(&self, path: &DavPath) -> LsFuture<'_, Vec<DavLock>> {
        let path = relative(path);
        async move {
            let locks = self.current().await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "reading locks failed");
                Vec::new()
            });
            locks
                .iter()
                .filter(|l| l.path == path || (l.deep && within(&path, &l.path)))
                .map(|l| self.to_dav(l))
                .collect()
        }
        .boxed()
    }

    fn delete(&self, path: &DavPath) -> LsFuture<'_, Result<(), ()>> {
        let path = relative(path);
        async move {
            self.forget();
            self.tree.drop_locks(&path).await.map_err(|e| {
                tracing::error!(error = %e, "removing locks failed");
            })
        }
        .boxed()
    }
}
