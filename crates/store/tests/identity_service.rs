//! The identity service over the real SQL store, with time injected: the
//! throttling, session and setup rules as a client meets them.

use std::sync::Arc;

use identity::{
    ClientInfo, EventKind, Identity, IdentityConfig, IdentityError, ManualClock, PasswordHasher, Role, ServerKey,
    SetupRequest, SignIn, SignInError,
};
use store::{Engine, SqlStore};

const PASSWORD: &str = "violet tractor sunrise 42";
const START: i64 = 1_800_000_000_000;

struct World {
    identity: Identity,
    clock: ManualClock,
}

async fn worlds() -> Vec<World> {
    let mut out = Vec::new();
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let store = SqlStore::open(&url).await.unwrap();
        let clock = ManualClock::at(START);
        let identity = Identity::new(
            Arc::new(store),
            Arc::new(clock.clone()),
            PasswordHasher::owasp_minimum(),
            ServerKey::generate(),
            IdentityConfig::default(),
        );
        identity.create_organization("Acme").await.unwrap();
        identity
            .create_account("ana@example.org", "Ana", PASSWORD, Some(("Acme", Role::User)))
            .await
            .unwrap();
        out.push(World { identity, clock });
    }
    out
}

fn client(ip: &str) -> ClientInfo {
    ClientInfo {
        ip: ip.parse().unwrap(),
        user_agent: "test".into(),
    }
}

fn attempt(email: &str, password: &str, ip: &str, device: Option<&str>) -> SignIn {
    SignIn {
        email: email.into(),
        password: password.into(),
        remember: false,
        client: client(ip),
        device: device.map(str::to_owned),
    }
}

#[tokio::test]
async fn account_throttling_grows_and_never_locks_a_known_device_out() {
    for w in worlds().await {
        let id = &w.identity;
        // A real sign-in from the member's browser earns a device cookie.
        let device = id
            .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.10", None))
            .await
            .unwrap()
            .device_cookie
            .unwrap();

        // An attacker elsewhere: five free failures, then a 30 s lock.
        for _ in 0..5 {
            let e = id
                .sign_in(attempt("ana@example.org", "wrong password!", "198.51.100.1", None))
                .await;
            assert!(matches!(e, Err(SignInError::InvalidCredentials)));
        }
        let e = id
            .sign_in(attempt("ana@example.org", "wrong password!", "198.51.100.1", None))
            .await;
        assert!(matches!(e, Err(SignInError::InvalidCredentials)));
        let locked = id
            .sign_in(attempt("ana@example.org", PASSWORD, "198.51.100.2", None))
            .await;
        assert!(
            matches!(locked, Err(SignInError::TooManyAttempts { retry_after: 30_000 })),
            "{locked:?}"
        );

        // The member, on their known device, is not locked out.
        id.sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.10", Some(&device)))
            .await
            .unwrap();
        // A forged device cookie does not escape the lock.
        let forged = id
            .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.10", Some("abc.def")))
            .await;
        assert!(matches!(forged, Err(SignInError::TooManyAttempts { .. })));

        // The lock is temporary.
        w.clock.advance(30_000);
        id.sign_in(attempt("ana@example.org", PASSWORD, "198.51.100.2", None))
            .await
            .unwrap();

        let member = id
            .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.10", Some(&device)))
            .await
            .unwrap();
        let events = id.events(&member.account.id, None, 50).await.unwrap().events;
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds.iter().filter(|k| **k == EventKind::SignInFailed).count(), 6);
        assert_eq!(kinds.iter().filter(|k| **k == EventKind::SignInLocked).count(), 1);
        let lock = events.iter().find(|e| e.kind == EventKind::SignInLocked).unwrap();
        assert_eq!((lock.ip.as_str(), lock.detail.as_str()), ("198.51.100.1", "30"));
    }
}

#[tokio::test]
async fn unknown_emails_are_throttled_exactly_like_known_ones() {
    for w in worlds().await {
        let id = &w.identity;
        for email in ["ana@example.org", "nobody@example.org"] {
            for _ in 0..6 {
                let e = id.sign_in(attempt(email, "wrong password!", "203.0.113.5", None)).await;
                assert!(matches!(e, Err(SignInError::InvalidCredentials)));
            }
            let e = id.sign_in(attempt(email, "wrong password!", "203.0.113.5", None)).await;
            assert!(
                matches!(e, Err(SignInError::TooManyAttempts { retry_after: 30_000 })),
                "{email}: {e:?}"
            );
        }
    }
}

#[tokio::test]
async fn one_network_cannot_walk_through_many_accounts() {
    for w in worlds().await {
        let id = &w.identity;
        for i in 0..30 {
            let e = id
                .sign_in(attempt(
                    &format!("user{i}@example.org"),
                    "wrong password!",
                    "2001:db8::1",
                    None,
                ))
                .await;
            assert!(matches!(e, Err(SignInError::InvalidCredentials)), "attempt {i}");
        }
        let e = id
            .sign_in(attempt("user99@example.org", "wrong password!", "2001:db8::2", None))
            .await;
        assert!(
            matches!(e, Err(SignInError::InvalidCredentials)),
            "the 31st failure locks"
        );
        let e = id
            .sign_in(attempt("ana@example.org", PASSWORD, "2001:db8::3", None))
            .await;
        assert!(
            matches!(e, Err(SignInError::TooManyAttempts { retry_after: 60_000 })),
            "same /64: {e:?}"
        );
        id.sign_in(attempt("ana@example.org", PASSWORD, "2001:db9::3", None))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn sessions_expire_when_idle_and_password_change_ends_the_others() {
    for w in worlds().await {
        let id = &w.identity;
        let c = client("192.0.2.1");
        let a = id
            .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
            .await
            .unwrap();
        let b = id
            .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.2", None))
            .await
            .unwrap();
        assert_ne!(a.token, b.token);
        assert!(id.session(&a.token.0, &c).await.unwrap().is_some());
        assert!(id.session("not-a-token", &c).await.unwrap().is_none());

        let wrong = id
            .change_password(&a.session, "not my password", "another fine passphrase 7", &c)
            .await;
        assert!(matches!(wrong, Err(IdentityError::WrongPassword)));
        let weak = id.change_password(&a.session, PASSWORD, "password1234", &c).await;
        assert!(matches!(weak, Err(IdentityError::Password(_))));
        id.change_password(&a.session, PASSWORD, "another fine passphrase 7", &c)
            .await
            .unwrap();
        assert!(
            id.session(&a.token.0, &c).await.unwrap().is_some(),
            "the current session stays"
        );
        assert!(id.session(&b.token.0, &c).await.unwrap().is_none(), "the others end");
        let old = id
            .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
            .await;
        assert!(matches!(old, Err(SignInError::InvalidCredentials)));

        w.clock.advance(12 * 3_600_000);
        assert!(id.session(&a.token.0, &c).await.unwrap().is_none(), "idle for 12 h");
    }
}

#[tokio::test]
async fn the_purge_deletes_only_what_expired() {
    for w in worlds().await {
        let id = &w.identity;
        let c = client("192.0.2.1");
        let short = id
            .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
            .await
            .unwrap();
        let mut remembered = attempt("ana@example.org", PASSWORD, "192.0.2.1", None);
        remembered.remember = true;
        let long = id.sign_in(remembered).await.unwrap();
        let _ = id
            .sign_in(attempt("ana@example.org", "wrong password!", "203.0.113.9", None))
            .await;
        let account = short.account.id.clone();
        assert_eq!(id.purge_expired().await.unwrap(), 0, "nothing has expired yet");

        w.clock.advance(12 * 3_600_000);
        assert_eq!(
            id.purge_expired().await.unwrap(),
            3,
            "the idle session and both throttle keys"
        );
        let left: Vec<_> = id.sessions(&account).await.unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(left, std::slice::from_ref(&long.session.id));
        assert!(id.session(&long.token.0, &c).await.unwrap().is_some());

        w.clock.advance(30 * 24 * 3_600_000);
        assert_eq!(id.purge_expired().await.unwrap(), 1, "past the absolute lifetime");
        assert!(id.sessions(&account).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn setup_runs_once_with_a_valid_link() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let clock = ManualClock::at(START);
        let id = Identity::new(
            Arc::new(SqlStore::open(&url).await.unwrap()),
            Arc::new(clock.clone()),
            PasswordHasher::owasp_minimum(),
            ServerKey::generate(),
            IdentityConfig::default(),
        );
        assert!(id.needs_setup().await.unwrap());
        let token = id.issue_setup_link().await.unwrap();
        let request = || SetupRequest {
            organization: "Acme".into(),
            name: "Ana".into(),
            email: "ana@example.org".into(),
            password: PASSWORD.into(),
        };
        let bad = id.complete_setup("forged", request(), client("127.0.0.1")).await;
        assert!(matches!(bad, Err(IdentityError::SetupUnavailable)));
        clock.advance(3_600_000);
        let late = id.complete_setup(&token, request(), client("127.0.0.1")).await;
        assert!(matches!(late, Err(IdentityError::SetupUnavailable)), "valid one hour");

        let token = id.issue_setup_link().await.unwrap();
        let done = id.complete_setup(&token, request(), client("127.0.0.1")).await.unwrap();
        assert_eq!(
            id.memberships(&done.account.id).await.unwrap()[0].role,
            Role::LegalRepresentative
        );
        assert!(!id.needs_setup().await.unwrap());
        let again = id.complete_setup(&token, request(), client("127.0.0.1")).await;
        assert!(matches!(again, Err(IdentityError::SetupUnavailable)));
    }
}
