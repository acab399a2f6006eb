//! Application-password checks per second on one core, through
//! `Identity::authenticate_protocol_client` (the call every WebDAV, CalDAV,
//! CardDAV and IMAP request makes), in-process on the embedded SQLite.
//!
//! Two figures: the steady state of a client repeating requests (the
//! credential remembered for ten seconds), and a cold check for every call
//! (the remembered credentials forgotten first, so each check looks the
//! account and its application passwords up in the database).
//!
//! `cargo bench --bench app_password` (`BENCH_SECONDS` per figure, default 3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use identity::{ClientInfo, Identity, IdentityConfig, PasswordHasher, ServerKey, SystemClock};

const PASSWORD: &str = "violet tractor sunrise 42";

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // One core: a single-threaded runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let url = store::testing::database_url(store::Engine::Sqlite).await.unwrap();
        let store = store::SqlStore::open(&url).await.unwrap();
        let identity = Identity::new(
            Arc::new(store),
            Arc::new(SystemClock),
            PasswordHasher::owasp_minimum(),
            ServerKey::generate(),
            IdentityConfig::default(),
        );
        let (account, _) = identity
            .create_account("nas@example.org", "NAS owner", PASSWORD, None)
            .await
            .unwrap();
        let client = ClientInfo {
            ip: "127.0.0.1".parse().unwrap(),
            user_agent: String::new(),
        };
        let (_, secret) = identity
            .create_app_password(&account, "NAS QNAP", &client)
            .await
            .unwrap();
        // A few more, as a real account has.
        for name in ["Thunderbird", "Phone", "rclone"] {
            identity.create_app_password(&account, name, &client).await.unwrap();
        }
        let ip = "192.0.2.10".parse().unwrap();

        let measure = |cold: bool| {
            let identity = identity.clone();
            let secret = secret.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(seconds);
                let started = Instant::now();
                let mut checks = 0u64;
                while Instant::now() < deadline {
                    for _ in 0..100 {
                        if cold {
                            identity.forget_protocol_credentials();
                        }
                        let who = identity
                            .authenticate_protocol_client("nas@example.org", &secret, ip)
                            .await;
                        assert!(who.is_ok());
                    }
                    checks += 100;
                }
                started.elapsed().as_secs_f64() / checks as f64 * 1e6
            }
        };
        let warm = measure(false).await;
        let cold = measure(true).await;
        println!("application-password checks through authenticate_protocol_client, one core, SQLite:");
        println!(
            "  repeated requests (remembered 10 s): {warm:8.2} µs per check  ({:9.0} /s)  target < 20 µs",
            1e6 / warm
        );
        println!(
            "  cold (database lookups every time):  {cold:8.2} µs per check  ({:9.0} /s)",
            1e6 / cold
        );
    });
}
