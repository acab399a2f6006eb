//! Sign-in throughput through the HTTP API, against the physical limit:
//! raw Argon2id verifications per second with the same parameters on every
//! core, measured in the same run.
//!
//! The measurements alternate in short rounds, each round starting with a
//! different one, so that a virtual machine's drifting speed affects all
//! alike:
//! - raw: Argon2id verifications per second, one thread per core, memory
//!   reused (the fastest this machine can check a password);
//! - password: successful `POST /api/v1/session` per second, over 600
//!   password-only accounts in turn;
//! - password + TOTP: full two-step sign-ins per second (`POST
//!   /api/v1/session`, then `POST /api/v1/session/second-factor` with the
//!   current code), over 1,500 accounts with an authenticator app each,
//!   since a code is accepted once per 30-second step;
//! - the two steps of such sign-ins measured apart (below).
//!
//! Beside the rates, the server's CPU time per sign-in (from `/proc`: our
//! process, and on PostgreSQL every `postgres` process too) compares the
//! two kinds directly: it is what the second step
//! costs, whatever the machine's speed did meanwhile. A hash's CPU time
//! varies from round to round by more than a second step costs, so each
//! round also measures second steps alone: the password steps of a batch
//! of TOTP accounts first (not measured), then the server's CPU over their
//! second steps only, reported as a share of a password sign-in. And since
//! the hashes run on their own threads (`argon2-N`), whose CPU the
//! scheduler counts apart, the whole sign-ins are also compared outside
//! the hash: the server's CPU per sign-in, database included, minus its
//! hashing threads' CPU. The difference between the two kinds is what the
//! second step adds to a sign-in where it happens, between hashes, one at
//! a time rather than in a batch.
//!
//! `cargo bench --bench signin` (SQLite). `BENCH_ENGINE=postgres` runs the
//! server on a fresh schema of the test PostgreSQL server (on this machine,
//! so its CPU can be counted);
//! `BENCH_SECONDS` sets the measured time of each kind (default 24),
//! `BENCH_ROUNDS` how many rounds it is cut into (default 24) and
//! `BENCH_CONCURRENCY` the number of clients (default 4 per core).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use identity::credential::totp::{TotpSecret, code_at_step, step_at};
use identity::{ClientInfo, Clock, Identity, IdentityConfig, PasswordHasher, ServerKey, SystemClock};

const PASSWORD: &str = "violet tractor sunrise 42";
const TOTP_ACCOUNTS: usize = 1500;
/// Password-only accounts, signed in in turn: sign-ins spread over many
/// accounts as they do on a real server, like the TOTP ones.
const PASSWORD_ACCOUNTS: usize = 600;
static NEXT_PASSWORD_ACCOUNT: AtomicUsize = AtomicUsize::new(0);

fn password_account(i: usize) -> String {
    format!("password{}@example.org", i % PASSWORD_ACCOUNTS)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Raw verifications per second, one thread per core, for `seconds`.
fn raw_rate(seconds: f64, threads: usize) -> f64 {
    let hasher = PasswordHasher::owasp_minimum();
    let phc = hasher.hash_blocking(PASSWORD);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (hasher, phc, done, stop) = (hasher.clone(), phc.clone(), done.clone(), stop.clone());
            // Each thread keeps its working memory, exactly as the server's
            // hashing threads do.
            std::thread::spawn(move || {
                let mut memory = identity::HashMemory::new();
                while !stop.load(Ordering::Relaxed) {
                    assert!(hasher.verify_blocking(PASSWORD, &phc, &mut memory));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The session cookie (name=value) a response sets.
fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("ck_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// The device cookie a response sets, if any (name=value).
fn device_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("ck_device="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

/// Each account's device cookie, kept across rounds as a returning browser
/// keeps it: only a first sign-in counts as a new device (and queues that
/// email).
static DEVICES: std::sync::LazyLock<Mutex<HashMap<String, String>>> = std::sync::LazyLock::new(Mutex::default);

/// Accounts with an authenticator app, handed out so that no TOTP step is
/// used twice for one account.
struct TotpPool {
    accounts: Vec<(String, TotpSecret)>,
    last_step: Mutex<HashMap<usize, i64>>,
    next: AtomicUsize,
}

impl TotpPool {
    /// An account and a code it has not used yet, if any is left now.
    fn take(&self) -> Option<(String, String)> {
        let now = step_at(SystemClock.now());
        for _ in 0..self.accounts.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.accounts.len();
            let mut used = self.last_step.lock().unwrap();
            let last = used[&i];
            // Not the previous step: it would fall out of the server's
            // window if a 30-second boundary passes while the request waits.
            let step = now.max(last + 1);
            if step <= now + 1 {
                used.insert(i, step);
                let (email, secret) = &self.accounts[i];
                return Some((email.clone(), code_at_step(secret, step)));
            }
        }
        None
    }
}

/// The server's CPU seconds so far: our process's, and on PostgreSQL the
/// database server's too (a query's cost is split between the two).
#[derive(Clone, Copy)]
struct ServerCpu {
    pid: u32,
    postgres: bool,
}

/// CPU seconds used so far.
#[derive(Clone, Copy)]
struct CpuReading {
    /// Our process.
    ours: f64,
    /// Our process's Argon2id threads.
    hashing: f64,
    /// PostgreSQL's processes (none on SQLite).
    database: f64,
}

impl ServerCpu {
    fn seconds(self) -> CpuReading {
        let database = if self.postgres {
            support::cpu_seconds_of("postgres")
        } else {
            0.0
        };
        CpuReading {
            ours: support::cpu_seconds(self.pid),
            hashing: support::thread_cpu_seconds(self.pid, "argon2-"),
            database,
        }
    }
}

/// What one kind of sign-in cost over the rounds.
#[derive(Default)]
struct Tally {
    sign_ins: u64,
    seconds: f64,
    /// Our process's CPU seconds.
    server_cpu: f64,
    /// Of which in hashing passwords.
    hashing_cpu: f64,
    /// PostgreSQL's CPU seconds (none on SQLite).
    database_cpu: f64,
}

impl Tally {
    fn rate(&self) -> f64 {
        self.sign_ins as f64 / self.seconds
    }

    /// Server CPU per sign-in, database included.
    fn cpu_ms(&self) -> f64 {
        (self.server_cpu + self.database_cpu) / self.sign_ins as f64 * 1000.0
    }

    fn database_ms(&self) -> f64 {
        self.database_cpu / self.sign_ins as f64 * 1000.0
    }

    /// Server CPU per sign-in (database included) outside password
    /// hashing: what the rest of a sign-in costs, without the hashes'
    /// round-to-round variation.
    fn beside_hash_ms(&self) -> f64 {
        (self.server_cpu - self.hashing_cpu + self.database_cpu) / self.sign_ins as f64 * 1000.0
    }

    /// Adds the CPU used since `before`.
    fn add_cpu(&mut self, server: ServerCpu, before: CpuReading) {
        let now = server.seconds();
        self.server_cpu += now.ours - before.ours;
        self.hashing_cpu += now.hashing - before.hashing;
        self.database_cpu += now.database - before.database;
    }
}

/// Runs clients for `seconds` and adds what it measured to `tally`.
async fn measure(
    tally: &mut Tally,
    server: ServerCpu,
    base: &str,
    seconds: f64,
    clients: &[reqwest::Client],
    pool: Option<Arc<TotpPool>>,
) {
    let cpu = server.seconds();
    let started = Instant::now();
    let rate = http_rate(base, seconds, clients, pool).await;
    let elapsed = started.elapsed().as_secs_f64();
    tally.add_cpu(server, cpu);
    tally.sign_ins += (rate * elapsed).round() as u64;
    tally.seconds += elapsed;
}

/// Sign-ins per second with each of `clients` signing in in turn; with `pool`, each is a
/// full password + TOTP sign-in.
async fn http_rate(base: &str, seconds: f64, clients: &[reqwest::Client], pool: Option<Arc<TotpPool>>) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, base, pool) = (client.clone(), base.to_owned(), pool.clone());
            tokio::spawn(async move {
                let mut ok = 0u64;
                while Instant::now() < deadline {
                    sign_in_once(&client, &base, pool.as_deref()).await;
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Signs every account in once, so that the measured sign-ins come from
/// browsers the server already knows (no new-device email).
async fn prime_devices(base: &str, clients: &[reqwest::Client], pool: &Arc<TotpPool>) {
    let left = Arc::new(AtomicUsize::new(pool.accounts.len() + PASSWORD_ACCOUNTS));
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, base, pool, left) = (client.clone(), base.to_owned(), pool.clone(), left.clone());
            tokio::spawn(async move {
                while let Ok(n) = left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)) {
                    let pool = (n > PASSWORD_ACCOUNTS).then_some(&*pool);
                    sign_in_once(&client, &base, pool).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// The second steps alone: the `clients` first take a password
/// step each for `per_client` TOTP accounts (not measured), then the server's
/// CPU is measured over their second steps only. This is what the second
/// step itself costs, without the noise of the Argon2id hashes around it.
async fn measure_second_steps(
    tally: &mut Tally,
    server: ServerCpu,
    base: &str,
    per_client: usize,
    clients: &[reqwest::Client],
    pool: &Arc<TotpPool>,
) {
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, base, pool) = (client.clone(), base.to_owned(), pool.clone());
            tokio::spawn(async move {
                let mut pending = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    pending.push(password_step(&client, &base, &pool).await);
                }
                pending
            })
        })
        .collect();
    let mut batches = Vec::new();
    for t in tasks {
        batches.push(t.await.unwrap());
    }
    let count: usize = batches.iter().map(Vec::len).sum();
    let cpu = server.seconds();
    let started = Instant::now();
    let tasks: Vec<_> = batches
        .into_iter()
        .zip(clients)
        .map(|(batch, client)| {
            let (client, base) = (client.clone(), base.to_owned());
            tokio::spawn(async move {
                for (email, known, r_cookie, code) in batch {
                    second_step(&client, &base, email, &known, &r_cookie, code).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    tally.seconds += started.elapsed().as_secs_f64();
    tally.add_cpu(server, cpu);
    tally.sign_ins += count as u64;
}

/// The password step of a TOTP account: its email, device cookie, session
/// cookie, and the code for its second step.
async fn password_step(client: &reqwest::Client, base: &str, pool: &TotpPool) -> (String, String, String, String) {
    let Some((email, code)) = pool.take() else {
        panic!("the TOTP accounts ran out of unused steps; raise TOTP_ACCOUNTS");
    };
    let (known, r) = post_password(client, base, &email).await;
    let session = session_cookie(&r);
    (email, known, session, code)
}

/// Client `i`, from an address of its own (127.0.0.2, 127.0.0.3, …): the
/// members of a real server sign in from many networks, and each network
/// may hold only its share of the hashing threads at once.
fn member_client(i: usize) -> reqwest::Client {
    let address = std::net::Ipv4Addr::new(127, 0, (i / 250) as u8, (i % 250 + 2) as u8);
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(address))
        .build()
        .unwrap()
}

/// `POST /api/v1/session` for `email` with its device cookie, if it has
/// one: the cookie sent and the (successful) answer.
async fn post_password(client: &reqwest::Client, base: &str, email: &str) -> (String, reqwest::Response) {
    let body = serde_json::json!({"email": email, "password": PASSWORD});
    let known = DEVICES.lock().unwrap().get(email).cloned().unwrap_or_default();
    let r = client
        .post(format!("{base}/api/v1/session"))
        .header("cookie", &known)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "password step failed");
    (known, r)
}

/// The second step of a half-signed-in session.
async fn second_step(client: &reqwest::Client, base: &str, email: String, known: &str, session: &str, code: String) {
    let cookie = format!("{session}; {known}");
    let body = serde_json::json!({"method": "totp", "code": code});
    let r = client
        .post(format!("{base}/api/v1/session/second-factor"))
        .header("cookie", cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let device = device_cookie(&r);
    if status != 200 {
        panic!("second step failed ({status}): {}", r.text().await.unwrap_or_default());
    }
    if let Some(device) = device {
        DEVICES.lock().unwrap().insert(email, device);
    }
}

/// One sign-in: the password, and with `pool` the current TOTP code, with
/// the account's device cookie when the server gave one before.
async fn sign_in_once(client: &reqwest::Client, base: &str, pool: Option<&TotpPool>) {
    let (email, code) = match pool {
        Some(pool) => match pool.take() {
            Some((email, code)) => (email, Some(code)),
            None => panic!("the TOTP accounts ran out of unused steps; raise TOTP_ACCOUNTS"),
        },
        None => (
            password_account(NEXT_PASSWORD_ACCOUNT.fetch_add(1, Ordering::Relaxed)),
            None,
        ),
    };
    let (known, r) = post_password(client, base, &email).await;
    if let Some(device) = device_cookie(&r) {
        DEVICES.lock().unwrap().insert(email.clone(), device);
    }
    let Some(code) = code else {
        return;
    };
    second_step(client, base, email, &known, &session_cookie(&r), code).await;
}

/// Creates the password-only account and the TOTP accounts directly in the
/// data folder the server will use.
async fn prepare(data: &std::path::Path, database_url: Option<&str>) -> Vec<(String, TotpSecret, i64)> {
    let dir = store::DataDir::open(data).unwrap();
    let url = database_url.map_or_else(|| dir.sqlite_url(), str::to_owned);
    let store = store::SqlStore::open(&url).await.unwrap();
    let identity = Identity::new(
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        PasswordHasher::owasp_minimum(),
        ServerKey::from_bytes(dir.server_key().unwrap()),
        IdentityConfig::default(),
    );
    let tasks: Vec<_> = (0..PASSWORD_ACCOUNTS)
        .map(|i| {
            let identity = identity.clone();
            tokio::spawn(async move {
                identity
                    .create_account(&password_account(i), "Bench", PASSWORD, None)
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let client = ClientInfo {
        ip: "127.0.0.1".parse().unwrap(),
        user_agent: String::new(),
    };
    let tasks: Vec<_> = (0..TOTP_ACCOUNTS)
        .map(|i| {
            let (identity, client) = (identity.clone(), client.clone());
            tokio::spawn(async move {
                let email = format!("totp{i}@example.org");
                let (account, _) = identity.create_account(&email, "Bench", PASSWORD, None).await.unwrap();
                let e = identity.begin_totp(&account, "Phone").await.unwrap();
                let secret = TotpSecret::from_bytes(data_encoding::BASE32_NOPAD.decode(e.secret.as_bytes()).unwrap());
                // Enrol with the previous step, so that the current one and
                // the next stay free for the benchmark.
                let step = step_at(SystemClock.now()) - 1;
                let code = code_at_step(&secret, step);
                identity.confirm_totp(&account.id, &e.id, &code, &client).await.unwrap();
                (email, secret, step)
            })
        })
        .collect();
    let mut accounts = Vec::new();
    for t in tasks {
        accounts.push(t.await.unwrap());
    }
    store.close().await;
    accounts
}

#[tokio::main]
async fn main() {
    let seconds = env_number("BENCH_SECONDS", 24);
    // Short, many rounds: a hash's cost drifts with what the machine's
    // neighbours do, and fine interleaving spreads that drift evenly.
    let rounds = env_number("BENCH_ROUNDS", 24);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let concurrency = env_number("BENCH_CONCURRENCY", 4 * cores as u64) as usize;
    let database_url = support::database_url().await;
    let data = std::env::temp_dir().join(format!("cloudkeep-bench-{}", std::process::id()));
    let accounts = prepare(&data, database_url.as_deref()).await;
    let last_step = accounts.iter().enumerate().map(|(i, a)| (i, a.2)).collect();
    let accounts = accounts.into_iter().map(|(email, secret, _)| (email, secret)).collect();
    let pool = Arc::new(TotpPool {
        accounts,
        last_step: Mutex::new(last_step),
        next: AtomicUsize::new(0),
    });

    let server = support::BenchServer::start(&data, database_url.as_deref());
    let base = server.base.clone();

    let engine = if database_url.is_some() {
        "PostgreSQL (server CPU counts PostgreSQL's processes too)"
    } else {
        "SQLite"
    };
    println!(
        "sign-in benchmark: {cores} cores, {concurrency} clients, {rounds} rounds of {seconds}/{rounds} s per kind, {engine}"
    );
    // Made once, as a browser is: building a client loads the system's
    // root certificates, which would otherwise be timed at the start of
    // every phase while the server waits.
    let clients: Vec<reqwest::Client> = (0..concurrency).map(member_client).collect();
    prime_devices(&base, &clients, &pool).await;
    let phase = (seconds as f64 / rounds as f64).max(0.5);
    let pid = ServerCpu {
        pid: server.pid,
        postgres: database_url.is_some(),
    };
    let (mut raw, mut password, mut two_step, mut second) = (0.0, Tally::default(), Tally::default(), Tally::default());
    // As many second steps per round as the two-step phase signs in.
    let per_client = ((phase * 60.0) as usize / concurrency).max(4);
    for round in 0..rounds {
        // Each round starts with a different kind, so that no kind always
        // follows the same one (what ran just before shows in the next).
        for kind in (0..4).map(|k| (k + round) % 4) {
            match kind {
                0 => raw += raw_rate(phase, cores) / rounds as f64,
                1 => measure(&mut password, pid, &base, phase, &clients, None).await,
                2 => measure(&mut two_step, pid, &base, phase, &clients, Some(pool.clone())).await,
                _ => measure_second_steps(&mut second, pid, &base, per_client, &clients, &pool).await,
            }
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data);

    let raw_cpu_ms = cores as f64 / raw * 1000.0;
    println!(
        "  raw Argon2id verifications ({cores} threads): {raw:8.1} /s  {raw_cpu_ms:6.2} ms CPU each  (m=19456 KiB, t=2, p=1)"
    );
    println!(
        "  password sign-ins (HTTP API):         {:8.1} /s  ratio to raw {:.3} (target >= 0.9)  server {:6.2} ms CPU each",
        password.rate(),
        password.rate() / raw,
        password.cpu_ms()
    );
    println!(
        "  password + TOTP sign-ins (HTTP API):  {:8.1} /s  ratio to raw {:.3}                 server {:6.2} ms CPU each",
        two_step.rate(),
        two_step.rate() / raw,
        two_step.cpu_ms()
    );
    println!(
        "  second steps alone ({} of them):            server {:6.3} ms CPU each = {:.1}% of a password sign-in (target < 5%)",
        second.sign_ins,
        second.cpu_ms(),
        second.cpu_ms() / password.cpu_ms() * 100.0
    );
    println!(
        "  whole sign-ins: the second step adds {:+.1}% CPU (noisier: the hashes vary by more than a step costs); throughput {:+.1}%",
        (two_step.cpu_ms() / password.cpu_ms() - 1.0) * 100.0,
        (password.rate() / two_step.rate() - 1.0) * 100.0
    );
    let added = two_step.beside_hash_ms() - password.beside_hash_ms();
    println!(
        "  whole sign-ins outside the hash: password {:.3} ms, password + TOTP {:.3} ms CPU: the second step adds {added:.3} ms = {:.1}% of a password sign-in (target < 5%)",
        password.beside_hash_ms(),
        two_step.beside_hash_ms(),
        added / password.cpu_ms() * 100.0
    );
    if database_url.is_some() {
        println!(
            "  of which PostgreSQL's CPU: password sign-in {:.3} ms, password + TOTP {:.3} ms, second step alone {:.3} ms",
            password.database_ms(),
            two_step.database_ms(),
            second.database_ms()
        );
    }
}
