//! Password sign-ins per second through the HTTP API, against the physical
//! limit: raw Argon2id verifications per second with the same parameters
//! on every core, measured in the same run.
//!
//! `cargo bench --bench signin` (SQLite). `BENCH_ENGINE=postgres` runs the
//! server on a fresh schema of the test PostgreSQL server
//! (`CLOUDKEEP_TEST_DATABASE_URL`, default the local one); `BENCH_SECONDS`
//! sets the measured time of each side (default 12) and
//! `BENCH_CONCURRENCY` the number of clients (default 4 per core).
//!
//! The two measurements alternate in rounds (raw, HTTP, raw, HTTP, ...) so
//! that a virtual machine's drifting speed affects both alike.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PASSWORD: &str = "violet tractor sunrise 42";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn cloudkeep(data: &std::path::Path, database_url: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cloudkeep"));
    c.env_remove("CLOUDKEEP_DATABASE_URL").env("CLOUDKEEP_DATA", data);
    if let Some(url) = database_url {
        c.env("CLOUDKEEP_DATABASE_URL", url);
    }
    c
}

/// Raw verifications per second, one thread per core, for `seconds`.
fn raw_rate(seconds: f64, threads: usize) -> f64 {
    let hasher = identity::PasswordHasher::owasp_minimum();
    let phc = hasher.hash_blocking(PASSWORD);
    // Each thread keeps its working memory, exactly as the server's hashing
    // threads do: the fastest the machine can verify.

    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (hasher, phc, done, stop) = (hasher.clone(), phc.clone(), done.clone(), stop.clone());
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

/// Successful API sign-ins per second with `concurrency` clients.
async fn http_rate(base: &str, seconds: f64, concurrency: usize) -> f64 {
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v1/session");
    let body = serde_json::json!({"email": "bench@example.org", "password": PASSWORD});
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let mut ok = 0u64;
                while Instant::now() < deadline {
                    let r = client.post(&url).json(&body).send().await.expect("request");
                    assert_eq!(r.status(), 200, "sign-in failed");
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

#[tokio::main]
async fn main() {
    let seconds = env_number("BENCH_SECONDS", 12);
    const ROUNDS: u64 = 4;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let concurrency = env_number("BENCH_CONCURRENCY", 4 * cores as u64) as usize;
    let database_url = match std::env::var("BENCH_ENGINE").as_deref() {
        Ok("postgres") => Some(
            store::testing::database_url(store::Engine::Postgres)
                .await
                .expect("BENCH_ENGINE=postgres needs a reachable PostgreSQL server"),
        ),
        _ => None,
    };
    let data = std::env::temp_dir().join(format!("cloudkeep-bench-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();

    let mut admin = cloudkeep(&data, database_url.as_deref())
        .args([
            "admin",
            "user",
            "create",
            "--email",
            "bench@example.org",
            "--name",
            "Bench",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    admin
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(admin.wait().unwrap().success(), "could not create the bench account");

    let mut server = cloudkeep(&data, database_url.as_deref())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CLOUDKEEP_LOG", "warn,cloudkeep=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let base = format!("http://{address}");

    let engine = if database_url.is_some() { "PostgreSQL" } else { "SQLite" };
    println!(
        "sign-in benchmark: {cores} cores, {concurrency} clients, {ROUNDS} rounds of {seconds}/{ROUNDS} s each side, {engine}"
    );
    http_rate(&base, 2.0, concurrency).await; // warm-up
    let phase = (seconds as f64 / ROUNDS as f64).max(1.0);
    let (mut http, mut raw) = (0.0, 0.0);
    for _ in 0..ROUNDS {
        raw += raw_rate(phase, cores) / ROUNDS as f64;
        http += http_rate(&base, phase, concurrency).await / ROUNDS as f64;
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);

    println!("  HTTP API password sign-ins:            {http:8.1} /s");
    println!("  raw Argon2id verifications ({cores} threads): {raw:8.1} /s  (m=19456 KiB, t=2, p=1)");
    println!(
        "  ratio sign-ins / raw hashes:           {:8.3}  (target >= 0.9)",
        http / raw
    );
}
