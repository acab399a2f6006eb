//! The organization two-step requirement check that runs on every console
//! and API request, in-process: warm (policies and memberships cached, the
//! normal case), and cold (caches dropped before each check, as after a
//! policy change), against the session lookup every signed-in request
//! already makes, measured in the same run.
//!
//! `cargo bench --bench enforcement` (SQLite; `BENCH_ENGINE=postgres` for
//! the test PostgreSQL server).

mod support;

use std::sync::Arc;
use std::time::Instant;

use identity::credential::totp::{TotpSecret, code_at_step, step_at};
use identity::{ClientInfo, Clock, Identity, IdentityConfig, PasswordHasher, Role, ServerKey, SignIn, SystemClock};

const PASSWORD: &str = "violet tractor sunrise 42";
const MEMBERS: usize = 200;

fn client() -> ClientInfo {
    ClientInfo {
        ip: "127.0.0.1".parse().unwrap(),
        user_agent: String::new(),
    }
}

/// Nanoseconds per call of `f`, over `n` calls.
async fn per_call<F, Fut>(n: u32, mut f: F) -> f64
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    for i in 0..n {
        f(i).await;
    }
    started.elapsed().as_nanos() as f64 / f64::from(n)
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("cloudkeep-bench-enforcement-{}", std::process::id()));
    let data = store::DataDir::open(&dir).unwrap();
    let url = match support::database_url().await {
        Some(url) => url,
        None => data.sqlite_url(),
    };
    let store = store::SqlStore::open(&url).await.unwrap();
    let identity = Identity::new(
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        PasswordHasher::owasp_minimum(),
        ServerKey::generate(),
        IdentityConfig::default(),
    );
    let org = identity.create_organization("Acme").await.unwrap();
    identity.create_organization("Other").await.unwrap();
    let (admin, _) = identity
        .create_account("admin@example.org", "Admin", PASSWORD, Some(("Acme", Role::Admin)))
        .await
        .unwrap();
    let e = identity.begin_totp(&admin, "Phone").await.unwrap();
    let secret = TotpSecret::from_bytes(data_encoding::BASE32_NOPAD.decode(e.secret.as_bytes()).unwrap());
    let code = code_at_step(&secret, step_at(SystemClock.now()));
    identity.confirm_totp(&admin.id, &e.id, &code, &client()).await.unwrap();
    identity.set_org_policy(&admin, &org.id, true, 0, true).await.unwrap();
    let tasks: Vec<_> = (0..MEMBERS)
        .map(|i| {
            let identity = identity.clone();
            tokio::spawn(async move {
                let org = if i % 2 == 0 { "Acme" } else { "Other" };
                let (account, _) = identity
                    .create_account(
                        &format!("m{i}@example.org"),
                        "Member",
                        PASSWORD,
                        Some((org, Role::User)),
                    )
                    .await
                    .unwrap();
                account
            })
        })
        .collect();
    let mut members = Vec::new();
    for t in tasks {
        members.push(t.await.unwrap());
    }
    let signed = identity
        .sign_in(SignIn {
            email: "m0@example.org".into(),
            password: PASSWORD.into(),
            remember: false,
            client: client(),
            device: None,
        })
        .await
        .unwrap();
    let token = signed.token.0.clone();

    // Correctness first: Acme's members are stopped, Other's are not, the
    // admin (with 2FA) is not.
    assert!(
        identity
            .two_factor_requirement(&members[0])
            .await
            .unwrap()
            .unwrap()
            .blocked
    );
    assert!(identity.two_factor_requirement(&members[1]).await.unwrap().is_none());
    assert!(identity.two_factor_requirement(&admin).await.unwrap().is_none());

    let warm_n = 200_000;
    let warm = per_call(warm_n, |i| {
        let (identity, account) = (&identity, &members[i as usize % MEMBERS]);
        async move {
            std::hint::black_box(identity.two_factor_requirement(account).await.unwrap());
        }
    })
    .await;
    let cold_n = 2_000;
    let cold = per_call(cold_n, |i| {
        let (identity, account) = (&identity, &members[i as usize % MEMBERS]);
        async move {
            identity.drop_org_caches();
            std::hint::black_box(identity.two_factor_requirement(account).await.unwrap());
        }
    })
    .await;
    let lookup = per_call(cold_n, |_| {
        let (identity, token) = (&identity, &token);
        async move {
            std::hint::black_box(identity.session(token, &client()).await.unwrap());
        }
    })
    .await;
    let engine = if url.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!(
        "two-step requirement check, in-process, {engine}, {MEMBERS} members in two organizations (one requires it):"
    );
    println!(
        "  warm (cached):            {:8.3} µs per check  (target < 10 µs)  {:.2}% of a session lookup",
        warm / 1000.0,
        warm / lookup * 100.0
    );
    println!("  cold (caches dropped):    {:8.3} µs per check", cold / 1000.0);
    println!("  session lookup (peer):    {:8.3} µs per request", lookup / 1000.0);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
