//! Account passwords: what we accept, and how we hash and check them.
//!
//! Hashing is Argon2id (OWASP minimum m = 19 MiB, t = 2, p = 1, stronger
//! when configured). It is the most expensive thing the server does, so it
//! runs on one dedicated thread per core that keeps its 19 MiB of working
//! memory between hashes: a burst of sign-ins queues instead of allocating
//! (and page-faulting) 19 MiB per request. An unknown email is checked against a dummy hash with the same
//! parameters so that it costs the same time as a wrong password.
//!
//! A queue alone let one address fill it: 300 concurrent wrong logins
//! from one machine made everyone else's sign-in wait seconds. So a
//! verification first gets a [`HashTicket`] for its sources (its network
//! and the account or login it names). Each source has a queue of its own:
//! it runs at most half the threads' worth of verifications at once, so
//! one network, or one account attacked from many, can never take every
//! thread; a few more of its requests wait their turn (people behind one
//! office address signing in at the same moment are served, one after
//! the other); whatever asks beyond that is refused at once, without
//! hashing (the caller answers "too many attempts", 429 with
//! `Retry-After`).
//!
//! The hashing threads run at a lower priority ([`HASH_NICENESS`]) than
//! the rest of the server. A hash is batch work that keeps a core busy for
//! tens of milliseconds; everything else (the database's threads, the HTTP
//! workers, WebDAV transfers) runs for microseconds and then waits, and
//! should not wait behind a hash for the scheduler's turn, above all while
//! a flood of sign-ins keeps every hashing thread busy. The hashes get all
//! the CPU the rest leaves.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use subtle::ConstantTimeEq;

use crate::email::EmailAddress;

pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    #[error("a password has at least {MIN_LENGTH} characters")]
    TooShort,
    #[error("a password has at most {MAX_LENGTH} characters")]
    TooLong,
    #[error("the password must not contain your email address or name")]
    ContainsPersonalData,
    #[error("this password is too common or too easy to guess; add unrelated words")]
    TooGuessable,
}

impl PasswordRejected {
    /// Stable code for the API and the console's translations.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooShort => "password_too_short",
            Self::TooLong => "password_too_long",
            Self::ContainsPersonalData => "password_contains_personal_data",
            Self::TooGuessable => "password_too_guessable",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PasswordPolicy;

impl PasswordPolicy {
    /// Judges a new password for the account with this email and name.
    pub fn check(&self, password: &str, email: &EmailAddress, name: &str) -> Result<(), PasswordRejected> {
        let length = password.chars().count();
        if length < MIN_LENGTH {
            return Err(PasswordRejected::TooShort);
        }
        if length > MAX_LENGTH {
            return Err(PasswordRejected::TooLong);
        }
        let lower = password.to_lowercase();
        let local = email.local_part();
        if local.chars().count() >= 3 && lower.contains(local) {
            return Err(PasswordRejected::ContainsPersonalData);
        }
        let name_words: Vec<String> = name
            .split_whitespace()
            .filter(|w| w.chars().count() >= 3)
            .map(str::to_lowercase)
            .collect();
        let mut inputs: Vec<&str> = vec![local, email.as_str()];
        inputs.extend(name_words.iter().map(String::as_str));
        if u8::from(zxcvbn::zxcvbn(password, &inputs).score()) < 3 {
            return Err(PasswordRejected::TooGuessable);
        }
        Ok(())
    }
}

/// The Argon2 working memory of one hashing thread, kept between hashes:
/// allocating 19 MiB per verification costs thousands of page faults.
#[derive(Default)]
pub struct HashMemory(Vec<Block>);

impl HashMemory {
    pub fn new() -> Self {
        Self::default()
    }
}

type Job = Box<dyn FnOnce(&mut HashMemory) + Send>;

/// Argon2id hashing and verification on a small pool of dedicated threads,
/// one per core, each with its own reusable [`HashMemory`]. Requests queue
/// for a thread instead of each allocating 19 MiB at once, so memory stays
/// at cores x m whatever the load.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    jobs: Arc<mpsc::Sender<Job>>,
    dummy_hash: Arc<str>,
    sources: Arc<Sources>,
    verifications: Arc<AtomicU64>,
}

/// Each source's queue, and how many verifications one source may run
/// and have waiting at once.
struct Sources {
    queues: Mutex<HashMap<String, Arc<SourceQueue>>>,
    per_source: usize,
    waiting_per_source: usize,
}

/// One source's turn at the threads: `running` permits, and how many of
/// its requests hold or wait for one.
struct SourceQueue {
    running: Arc<tokio::sync::Semaphore>,
    queued: AtomicUsize,
}

impl Sources {
    fn new(per_source: usize) -> Self {
        let per_source = per_source.max(1);
        Self {
            queues: Mutex::default(),
            per_source,
            waiting_per_source: 4 * per_source,
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SourceQueue>>> {
        self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Leave for one verification on behalf of its sources; given back when
/// dropped, also while still waiting for its turn.
pub struct HashTicket {
    sources: Arc<Sources>,
    keys: Vec<String>,
    _turns: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for HashTicket {
    fn drop(&mut self) {
        let mut queues = self.sources.queues();
        for key in &self.keys {
            if let Some(queue) = queues.get(key)
                && queue.queued.fetch_sub(1, Ordering::AcqRel) == 1
            {
                queues.remove(key);
            }
        }
    }
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").field("params", &self.params).finish()
    }
}

/// The hashing threads' nice value (see the module's comment).
pub const HASH_NICENESS: i32 = 10;

/// Lowers the calling thread's priority to [`HASH_NICENESS`]. On Linux a
/// nice value belongs to each thread; elsewhere the threads keep the
/// process's priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, HASH_NICENESS) {
        tracing::warn!("could not lower the hashing threads' priority: {e}");
    }
}

/// Starts `threads` hashing threads; they end when the last sender is
/// dropped.
fn start_pool(threads: usize) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    for index in 0..threads {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("argon2-{index}"))
            .spawn(move || {
                lower_priority();
                let mut memory = HashMemory::new();
                loop {
                    let next = receiver
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .recv();
                    let Ok(job) = next else { return };
                    job(&mut memory);
                }
            })
            .expect("cannot start a hashing thread");
    }
    sender
}

impl PasswordHasher {
    /// `memory_kib`, `iterations` and `parallelism` below the OWASP minimum
    /// are refused.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, String> {
        if memory_kib < 19 * 1024 || iterations < 2 || parallelism < 1 {
            return Err("Argon2id parameters below m = 19456 KiB, t = 2, p = 1 are not allowed".into());
        }
        let params = Params::new(memory_kib, iterations, parallelism, None).map_err(|e| e.to_string())?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let dummy_hash = hash_with(&params, &crate::secrets::random_token(24)).into();
        Ok(Self {
            params,
            jobs: Arc::new(start_pool(cores)),
            dummy_hash,
            sources: Arc::new(Sources::new(cores / 2)),
            verifications: Arc::default(),
        })
    }

    /// Leave to verify a password for `sources` (a network, an account),
    /// once each of them has a free turn; `None` at once, when one of them
    /// already has its share of the threads and its queue full.
    pub async fn admit(&self, sources: &[&str]) -> Option<HashTicket> {
        let mut keys: Vec<String> = sources.iter().map(|s| (*s).to_owned()).collect();
        // One order for every request, so two never wait on each other.
        keys.sort();
        keys.dedup();
        let queues: Vec<Arc<SourceQueue>> = {
            let mut queues = self.sources.queues();
            let limit = self.sources.per_source + self.sources.waiting_per_source;
            if keys
                .iter()
                .any(|k| queues.get(k).is_some_and(|q| q.queued.load(Ordering::Acquire) >= limit))
            {
                return None;
            }
            keys.iter()
                .map(|key| {
                    let queue = queues.entry(key.clone()).or_insert_with(|| {
                        Arc::new(SourceQueue {
                            running: Arc::new(tokio::sync::Semaphore::new(self.sources.per_source)),
                            queued: AtomicUsize::new(0),
                        })
                    });
                    queue.queued.fetch_add(1, Ordering::AcqRel);
                    Arc::clone(queue)
                })
                .collect()
        };
        let mut ticket = HashTicket {
            sources: Arc::clone(&self.sources),
            keys,
            _turns: Vec::with_capacity(queues.len()),
        };
        for queue in queues {
            // The semaphore is never closed.
            let turn = Arc::clone(&queue.running).acquire_owned().await.ok()?;
            ticket._turns.push(turn);
        }
        Some(ticket)
    }

    /// Lets each source run `share` verifications at once instead of half
    /// the threads (tests that look at the throttle alone).
    pub fn with_share_per_source(mut self, share: usize) -> Self {
        self.sources = Arc::new(Sources::new(share));
        self
    }

    /// How many verifications one source may run at once.
    pub fn per_source_limit(&self) -> usize {
        self.sources.per_source
    }

    /// How many more of one source's verifications may wait for a turn.
    pub fn per_source_waiting(&self) -> usize {
        self.sources.waiting_per_source
    }

    /// Verifications run since start (a counter for metrics and tests).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    pub fn owasp_minimum() -> Self {
        Self::new(19 * 1024, 2, 1).expect("valid parameters")
    }

    /// A PHC string (`$argon2id$v=19$m=...`).
    pub async fn hash(&self, password: &str) -> String {
        let params = self.params.clone();
        let password = password.to_owned();
        self.on_pool(move |_| hash_with(&params, &password)).await
    }

    /// Checks `password` against a stored PHC string, or against the dummy
    /// hash when there is none, so both cases take the same time.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let known = stored.is_some();
        let phc: Arc<str> = stored.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let password = password.to_owned();
        let ok = self.on_pool(move |memory| verify_with(&phc, &password, memory)).await;
        ok && known
    }

    async fn on_pool<T: Send + 'static>(&self, work: impl FnOnce(&mut HashMemory) -> T + Send + 'static) -> T {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = reply.send(work(memory));
        });
        self.jobs
            .send(job)
            .expect("hashing threads run while the hasher exists");
        answer.await.expect("hashing threads do not panic")
    }

    /// Verifies on the calling thread with its own memory; the benchmark
    /// uses it to measure the raw rate the server is compared against.
    pub fn verify_blocking(&self, password: &str, phc: &str, memory: &mut HashMemory) -> bool {
        verify_with(phc, password, memory)
    }

    pub fn hash_blocking(&self, password: &str) -> String {
        hash_with(&self.params, password)
    }
}

fn hash_with(params: &Params, password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing with valid parameters cannot fail")
        .to_string()
}

fn verify_with(phc: &str, password: &str, memory: &mut HashMemory) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    // The stored string carries its own parameters, so hashes made under
    // older settings keep verifying after the configuration is raised.
    let (Ok(algorithm), Ok(params), Some(expected), Some(salt)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.hash,
        parsed.salt,
    ) else {
        return false;
    };
    let version = parsed.version.map_or(Ok(Version::V0x13), Version::try_from);
    let Ok(version) = version else { return false };
    let mut salt_buffer = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buffer) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.0.len() < blocks {
        memory.0.resize(blocks, Block::default());
    }
    let mut output = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut output, &mut memory.0[..blocks])
        .is_err()
    {
        return false;
    }
    output.ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> EmailAddress {
        EmailAddress::parse("ana.garcia@example.org").unwrap()
    }

    /// A thread's name and nice value from its `/proc/…/stat` line (the
    /// name in parentheses, the nice value 19th).
    #[cfg(target_os = "linux")]
    fn name_and_niceness(stat: &str) -> (&str, i32) {
        let (head, rest) = stat.rsplit_once(") ").unwrap();
        let name = head.split_once('(').unwrap().1;
        (name, rest.split(' ').nth(16).unwrap().parse().unwrap())
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_below_the_servers_priority() {
        let h = PasswordHasher::owasp_minimum();
        // The pool's threads have started once they have hashed.
        let phc = h.hash("violet tractor sunrise").await;
        assert!(h.verify("violet tractor sunrise", Some(&phc)).await);
        let mut hashing = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue; // the thread ended meanwhile
            };
            let (name, nice) = name_and_niceness(&stat);
            if name.starts_with("argon2-") {
                hashing.push(nice);
            }
        }
        assert!(!hashing.is_empty(), "the hashing threads are found");
        assert!(hashing.iter().all(|n| *n == HASH_NICENESS), "{hashing:?}");
        // Only those threads: this one keeps the process's priority.
        let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let process = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert_eq!(name_and_niceness(&own).1, name_and_niceness(&process).1);
    }

    #[test]
    fn policy_refuses_short_common_and_personal_passwords() {
        let p = PasswordPolicy;
        assert_eq!(p.check("short", &email(), "Ana"), Err(PasswordRejected::TooShort));
        assert_eq!(
            p.check(&"x".repeat(257), &email(), "Ana"),
            Err(PasswordRejected::TooLong)
        );
        assert_eq!(
            p.check("password123", &email(), "Ana"),
            Err(PasswordRejected::TooGuessable)
        );
        assert_eq!(
            p.check("qwertyuiop", &email(), "Ana"),
            Err(PasswordRejected::TooGuessable)
        );
        assert_eq!(
            p.check("Ana.Garcia-rocks-2024!", &email(), "Ana"),
            Err(PasswordRejected::ContainsPersonalData)
        );
        assert_eq!(
            p.check("garciagarcia1990", &email(), "Ana Garcia"),
            Err(PasswordRejected::TooGuessable)
        );
        assert_eq!(p.check("correct horse battery staple", &email(), "Ana"), Ok(()));
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let h = PasswordHasher::owasp_minimum();
        let phc = h.hash("correct horse battery staple").await;
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("correct horse battery staple", Some(&phc)).await);
        assert!(!h.verify("correct horse battery stapler", Some(&phc)).await);
        assert!(!h.verify("anything", None).await, "the dummy hash never admits");
        assert!(!h.verify("anything", Some("not a phc string")).await);
    }

    #[test]
    fn memory_is_reused_across_parameters() {
        let h = PasswordHasher::new(32 * 1024, 3, 1).unwrap();
        let stronger = h.hash_blocking("correct horse battery staple");
        let standard = PasswordHasher::owasp_minimum().hash_blocking("correct horse battery staple");
        let mut memory = HashMemory::new();
        for phc in [&stronger, &standard, &stronger] {
            assert!(h.verify_blocking("correct horse battery staple", phc, &mut memory));
            assert!(!h.verify_blocking("correct horse battery stapler", phc, &mut memory));
        }
    }

    /// Polls once: whether the future is still waiting.
    fn pending<T>(future: std::pin::Pin<&mut impl std::future::Future<Output = T>>) -> bool {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        future.poll(&mut context).is_pending()
    }

    #[tokio::test]
    async fn one_source_never_holds_more_than_its_share() {
        let h = PasswordHasher::owasp_minimum();
        let share = h.per_source_limit();
        let mut running = Vec::new();
        for _ in 0..share {
            running.push(h.admit(&["net:a", "acct:1"]).await.unwrap());
        }
        // The network's next requests wait for a turn; past its queue they
        // are refused at once.
        let mut waiting = Vec::new();
        for i in 0..h.per_source_waiting() {
            let (h, account) = (h.clone(), format!("acct:w{i}"));
            let mut admit = Box::pin(async move { h.admit(&["net:a", &account]).await });
            assert!(pending(admit.as_mut()), "waits its turn");
            waiting.push(admit);
        }
        assert!(
            h.admit(&["net:a", "acct:2"]).await.is_none(),
            "the network's queue is full"
        );
        // Another network is served at once, even for another account.
        let other = h.admit(&["net:b", "acct:2"]).await.expect("others are served");
        drop(other);
        // A waiting request dropped gives its place back.
        waiting.pop();
        let mut late = Box::pin(h.admit(&["net:a", "acct:3"]));
        assert!(pending(late.as_mut()), "queued in the place given back");
        drop(running);
        for admit in waiting {
            drop(admit.await.expect("served in turn"));
        }
        drop(late.await.expect("served in turn"));
        assert!(h.sources.queues().is_empty(), "nothing left behind");
    }

    #[test]
    fn weak_parameters_are_refused() {
        assert!(PasswordHasher::new(1024, 2, 1).is_err());
        assert!(PasswordHasher::new(19 * 1024, 1, 1).is_err());
        assert!(PasswordHasher::new(64 * 1024, 3, 1).is_ok());
    }
}
