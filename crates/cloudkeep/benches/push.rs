//! Push approval: how fast a waiting sign-in continues once the phone
//! approves, and what a waiting sign-in costs the server.
//!
//! Against the real server over HTTP, with this program as both the
//! browser (password step, push request, the event stream the waiting page
//! listens to, the final call that signs in) and the phone (answers signed
//! with the device key):
//! - latency: from sending the device's approval to the browser being
//!   signed in (its event stream said `approved` and the following call set
//!   the session cookie), over `BENCH_SIGNINS` sign-ins (default 200),
//!   median and 99th percentile, against the floor measured in the same run:
//!   the same number of HTTP exchanges (three) to `/healthz`;
//! - memory: `BENCH_WAITING` sign-ins (default 1000) waiting at once on
//!   their event streams; the server's resident memory and threads before
//!   and after they connect.
//!
//! `cargo bench --bench push` (SQLite); `BENCH_ENGINE=postgres` for the
//! test PostgreSQL server.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use identity::{ClientInfo, Identity, IdentityConfig, PasswordHasher, ServerKey, SystemClock};

const PASSWORD: &str = "violet tractor sunrise 42";
/// Requests an account may have per ten minutes (the fatigue limit).
const PER_ACCOUNT: usize = 3;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Device {
    email: String,
    method_id: String,
    key: SigningKey,
}

impl Device {
    fn signed(&self, purpose: &str, extra: &str) -> serde_json::Value {
        let timestamp = identity::Clock::now(&SystemClock);
        let message = identity::device_message(purpose, &self.method_id, timestamp, extra);
        serde_json::json!({
            "method_id": self.method_id,
            "timestamp": timestamp,
            "signature": URL_SAFE_NO_PAD.encode(self.key.sign(message.as_bytes()).to_bytes()),
        })
    }
}

/// Accounts with a linked device each, made in-process before the server
/// starts on the same storage.
async fn prepare(data: &std::path::Path, database_url: Option<&str>, accounts: usize) -> Vec<Device> {
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
    let client = ClientInfo {
        ip: "127.0.0.1".parse().unwrap(),
        user_agent: String::new(),
    };
    let tasks: Vec<_> = (0..accounts)
        .map(|i| {
            let (identity, client) = (identity.clone(), client.clone());
            tokio::spawn(async move {
                let email = format!("push{i}@example.org");
                let (account, _) = identity.create_account(&email, "Bench", PASSWORD, None).await.unwrap();
                let link = identity.begin_authenticator(&account, "Phone").await.unwrap();
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let public_key = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
                let linked = identity
                    .link_authenticator(&link.token, &public_key, &client)
                    .await
                    .unwrap();
                Device {
                    email,
                    method_id: linked.method_id.into_string(),
                    key,
                }
            })
        })
        .collect();
    let mut devices = Vec::new();
    for t in tasks {
        devices.push(t.await.unwrap());
    }
    store.close().await;
    devices
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .pool_max_idle_per_host(4)
        .build()
        .unwrap()
}

/// Password step and push request: (client, request id, number).
async fn waiting_sign_in(base: &str, device: &Device) -> (reqwest::Client, String, u64) {
    let c = browser();
    let r: serde_json::Value = c
        .post(format!("{base}/api/v1/session"))
        .json(&serde_json::json!({"email": device.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "second_factor_required", "{r}");
    let r: serde_json::Value = c
        .post(format!("{base}/api/v1/session/second-factor"))
        .json(&serde_json::json!({"method": "authenticator"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "pending", "{r}");
    (
        c,
        r["request_id"].as_str().unwrap().to_owned(),
        r["number"].as_u64().unwrap(),
    )
}

/// The waiting page's event stream, once its first event (`pending`) came.
async fn open_stream(base: &str, c: &reqwest::Client, id: &str) -> reqwest::Response {
    let mut stream = c
        .get(format!("{base}/api/v1/session/second-factor/authenticator/{id}"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let first = stream.chunk().await.unwrap().expect("a first event");
    assert!(std::str::from_utf8(&first).unwrap().contains("pending"));
    stream
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let signins = env_number("BENCH_SIGNINS", 200);
    let waiting = env_number("BENCH_WAITING", 1000);
    let database_url = support::database_url().await;
    let data = std::env::temp_dir().join(format!("cloudkeep-bench-push-{}", std::process::id()));
    let for_latency = signins.div_ceil(PER_ACCOUNT);
    let for_memory = waiting.div_ceil(PER_ACCOUNT);
    let devices = prepare(&data, database_url.as_deref(), for_latency + for_memory).await;

    let server = support::BenchServer::start(&data, database_url.as_deref());
    let base = server.base.clone();
    let pid = server.pid;
    let engine = if database_url.is_some() { "PostgreSQL" } else { "SQLite" };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("push approval benchmark: {cores} cores, {engine}");

    // The floor: three HTTP exchanges on a kept-alive connection, as the
    // approval path makes (the answer, the event, the finishing call).
    let plain = reqwest::Client::new();
    let mut floor = Vec::new();
    for _ in 0..signins {
        let t = Instant::now();
        for _ in 0..3 {
            plain
                .get(format!("{base}/healthz"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
        }
        floor.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    floor.sort_by(f64::total_cmp);

    // Latency, one sign-in at a time.
    let phone = reqwest::Client::new();
    let mut to_event = Vec::new();
    let mut to_signed_in = Vec::new();
    for i in 0..signins {
        let device = &devices[i / PER_ACCOUNT];
        let (c, id, number) = waiting_sign_in(&base, device).await;
        let mut stream = open_stream(&base, &c, &id).await;
        let mut body = device.signed("answer", &identity::answer_extra(&id, number as u8, true));
        body["number"] = number.into();
        body["approve"] = true.into();
        let started = Instant::now();
        let answered = phone
            .post(format!("{base}/api/v1/authenticator/requests/{id}/answer"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answered.status(), 200);
        loop {
            let chunk = stream.chunk().await.unwrap().expect("the approval event");
            if std::str::from_utf8(&chunk).unwrap().contains("approved") {
                break;
            }
        }
        to_event.push(started.elapsed().as_secs_f64() * 1000.0);
        let done: serde_json::Value = c
            .get(format!("{base}/api/v1/session/second-factor/authenticator/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(done["status"], "signed_in");
        to_signed_in.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    to_event.sort_by(f64::total_cmp);
    to_signed_in.sort_by(f64::total_cmp);
    let floor_p50 = percentile(&floor, 0.5);
    println!("  approval -> page continues, {signins} sign-ins:");
    println!(
        "    event stream says approved: p50 {:6.2} ms  p99 {:6.2} ms",
        percentile(&to_event, 0.5),
        percentile(&to_event, 0.99)
    );
    println!(
        "    signed in (cookie set):     p50 {:6.2} ms  p99 {:6.2} ms",
        percentile(&to_signed_in, 0.5),
        percentile(&to_signed_in, 0.99)
    );
    println!(
        "    floor, 3 HTTP exchanges:    p50 {floor_p50:6.2} ms  p99 {:6.2} ms  -> p50 ratio {:.2}",
        percentile(&floor, 0.99),
        percentile(&to_signed_in, 0.5) / floor_p50
    );

    // Memory: many sign-ins waiting at once.
    let memory_devices = &devices[for_latency..];
    let mut sessions = Vec::new();
    for i in 0..waiting {
        sessions.push(waiting_sign_in(&base, &memory_devices[i / PER_ACCOUNT]).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_before, threads_before) = (proc_status(pid, "VmRSS:"), proc_status(pid, "Threads:"));
    let mut streams = Vec::new();
    for (c, id, _) in &sessions {
        streams.push(open_stream(&base, c, id).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_after, threads_after) = (proc_status(pid, "VmRSS:"), proc_status(pid, "Threads:"));
    let per = (rss_after.saturating_sub(rss_before) as f64) * 1024.0 / waiting as f64;
    println!("  {waiting} sign-ins waiting at once on their event streams:");
    println!(
        "    server resident memory {:.1} MiB -> {:.1} MiB: {:.1} KiB per waiting sign-in; threads {threads_before} -> {threads_after}",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        per / 1024.0
    );
    drop(streams);
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}
