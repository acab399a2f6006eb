//! The identity service over the real SQL store, with time injected: the
//! throttling, session and setup rules as a client meets them.

use std::sync::Arc;

use identity::softlock::ThrottlePolicy;
use identity::{
    AccountId, ClientInfo, EventKind, Identity, IdentityConfig, IdentityError, ManualClock, PasswordHasher, Role,
    ServerKey, SetupRequest, SignIn, SignInError,
};
use store::{Engine, SqlStore};

const PASSWORD: &str = "violet tractor sunrise 42";
const START: i64 = 1_800_000_000_000;

struct World {
    identity: Identity,
    clock: ManualClock,
    /// Ana's account id.
    ana: AccountId,
    /// The identity's hasher, to count verifications.
    hasher: PasswordHasher,
}

async fn worlds() -> Vec<World> {
    worlds_with(|h| h).await
}

/// [`worlds`] with the hasher adjusted by `hasher`.
async fn worlds_with(hasher: impl Fn(PasswordHasher) -> PasswordHasher) -> Vec<World> {
    let mut out = Vec::new();
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let store = SqlStore::open(&url).await.unwrap();
        let clock = ManualClock::at(START);
        let hasher = hasher(PasswordHasher::owasp_minimum());
        let identity = Identity::new(
            Arc::new(store),
            Arc::new(clock.clone()),
            hasher.clone(),
            ServerKey::generate(),
            IdentityConfig::default(),
        );
        identity.create_organization("Acme").await.unwrap();
        let (ana, _) = identity
            .create_account("ana@example.org", "Ana", PASSWORD, Some(("Acme", Role::User)))
            .await
            .unwrap();
        out.push(World {
            identity,
            clock,
            ana: ana.id,
            hasher,
        });
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

/// How many of the account's security events are of `kind`.
async fn count_events(id: &Identity, account_id: &AccountId, kind: EventKind) -> usize {
    let events = id.events(account_id, None, 200).await.unwrap().events;
    events.iter().filter(|e| e.kind == kind).count()
}

/// Runs `burst` concurrently, and `last` once one of them was refused
/// (or all are done): a refusal means the burst already holds all the room
/// there is, so `last` comes at the end of the burst whatever the order in
/// which the database answered. Returns the burst's outcomes and `last`'s.
async fn burst_then<T, L>(
    burst: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + '_>>>,
    refused: impl Fn(&T) -> bool,
    last: impl std::future::Future<Output = L>,
) -> (Vec<T>, L) {
    let first_refusal = tokio::sync::Notify::new();
    // Both sides are polled together: a burst attempt may hold what the
    // last one needs (a connection, SQLite's write turn) until it resumes.
    let burst = async {
        let outcomes = futures_util::future::join_all(burst.into_iter().map(|f| async {
            let outcome = f.await;
            if refused(&outcome) {
                first_refusal.notify_one();
            }
            outcome
        }))
        .await;
        first_refusal.notify_one();
        outcomes
    };
    let last = async {
        first_refusal.notified().await;
        last.await
    };
    let (outcomes, last) = tokio::join!(burst, last);
    (outcomes, last)
}

/// Issue 21, item 3: sixty wrong passwords at once, then the right one at
/// the end of the burst. Checks read before failures were counted let all
/// sixty be verified and the right one in; now an attempt is reserved
/// before its password is verified, so no more are verified than one
/// after the other (the free failures and the one that locks).
#[tokio::test]
async fn a_burst_of_wrong_passwords_verifies_no_more_than_a_sequence() {
    for w in worlds_with(|h| h.with_share_per_source(64)).await {
        let id = &w.identity;
        let burst = (0..60)
            .map(|_| Box::pin(id.sign_in(attempt("ana@example.org", "wrong password!", "198.51.100.7", None))) as _)
            .collect();
        let refused =
            |r: &Result<identity::SignedIn, SignInError>| matches!(r, Err(SignInError::TooManyAttempts { .. }));
        let right = id.sign_in(attempt("ana@example.org", PASSWORD, "198.51.100.7", None));
        let (outcomes, right) = burst_then(burst, refused, right).await;

        let verified = outcomes
            .iter()
            .filter(|r| matches!(r, Err(SignInError::InvalidCredentials)))
            .count();
        let bound = ThrottlePolicy::ACCOUNT.attempts_before_lock() as usize;
        assert_eq!(verified, bound, "verified wrong passwords");
        assert_eq!(outcomes.iter().filter(|r| refused(r)).count(), 60 - bound);
        assert!(refused(&right), "the right password at the end is refused: {right:?}");

        assert_eq!(count_events(id, &w.ana, EventKind::SignInFailed).await, bound);
        assert_eq!(count_events(id, &w.ana, EventKind::SignInLocked).await, 1);
        // Once the lock is over, the member signs in as before.
        w.clock.advance(30_000);
        id.sign_in(attempt("ana@example.org", PASSWORD, "198.51.100.7", None))
            .await
            .unwrap();
    }
}

/// Issue 21, item 3: 300 concurrent protocol sign-ins with wrong
/// passwords from one address ran 268 Argon2 verifications and made a
/// member's sign-in from elsewhere wait seconds. Now that network holds
/// at most its share of the hashing threads (the rest are refused at
/// once), its throttle bounds the total, and the member is served.
#[tokio::test]
async fn a_burst_from_one_network_neither_hashes_unbounded_nor_starves_others() {
    for w in worlds().await {
        let id = &w.identity;
        let before = w.hasher.verifications();
        let attacker: std::net::IpAddr = "203.0.113.50".parse().unwrap();
        let burst = futures_util::future::join_all((0..300).map(|i| {
            let login = format!("user{i}@example.org");
            async move {
                id.authenticate_protocol_client(&login, "wrong password!", attacker)
                    .await
            }
        }));
        let member = async {
            // Inside the burst: once some of it was refused.
            tokio::task::yield_now().await;
            id.sign_in(attempt("ana@example.org", PASSWORD, "198.51.100.20", None))
                .await
        };
        let (outcomes, member) = tokio::join!(burst, member);
        member.expect("a member on another network is served during the burst");

        let hashed = (w.hasher.verifications() - before) as usize;
        let bound = ThrottlePolicy::NETWORK.attempts_before_lock() as usize + 1;
        assert!(
            hashed <= bound,
            "{hashed} verifications, at most {bound} (the burst's network, the member)"
        );
        let refused = outcomes
            .iter()
            .filter(|r| matches!(r, Err(identity::ProtocolAuthError::TooManyAttempts { .. })))
            .count();
        assert_eq!(refused + hashed - 1, 300, "every other request refused, none failed");
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
            4,
            "the idle session and the three throttle keys (the sign-ins' network's too)"
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
            lang: "es".into(),
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
        // Emails (the first is about this sign-in) in the setup page's language.
        assert_eq!(done.account.lang, "es");
        let stored = id.account_by_id(&done.account.id).await.unwrap().unwrap();
        assert_eq!(stored.lang, "es");
        assert!(!id.needs_setup().await.unwrap());
        let again = id.complete_setup(&token, request(), client("127.0.0.1")).await;
        assert!(matches!(again, Err(IdentityError::SetupUnavailable)));
    }
}

mod two_factor {
    use super::*;
    use identity::Clock;
    use identity::credential::totp::{TotpSecret, code_at_step, step_at};
    use identity::{IdentityError, ProtocolAuthError, SecondStep, SecondStepError, SessionStage};

    fn code_now(secret_b32: &str, now: i64, offset: i64) -> String {
        let bytes = data_encoding::BASE32_NOPAD.decode(secret_b32.as_bytes()).unwrap();
        code_at_step(&TotpSecret::from_bytes(bytes), step_at(now) + offset)
    }

    /// Signs in Ana and turns 2FA on with one TOTP app; returns its secret
    /// and the backup codes.
    async fn enrol(w: &World) -> (String, Vec<String>) {
        let id = &w.identity;
        let signed = id
            .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
            .await
            .unwrap();
        let e = id.begin_totp(&signed.account, "Phone").await.unwrap();
        assert!(
            e.otpauth_uri
                .starts_with("otpauth://totp/cloudkeep:ana@example.org?secret=")
        );
        let right = code_now(&e.secret, w.clock.now(), 0);
        let wrong: String = right
            .chars()
            .map(|c| if c == '9' { '0' } else { char::from(c as u8 + 1) })
            .collect();
        let refused = id
            .confirm_totp(&signed.account.id, &e.id, &wrong, &client("192.0.2.1"))
            .await;
        assert!(matches!(refused, Err(IdentityError::WrongCode)));
        let codes = id
            .confirm_totp(
                &signed.account.id,
                &e.id,
                &code_now(&e.secret, w.clock.now(), 0),
                &client("192.0.2.1"),
            )
            .await
            .unwrap()
            .expect("turning 2FA on shows backup codes");
        assert_eq!(codes.len(), 10);
        (e.secret, codes)
    }

    #[tokio::test]
    async fn password_then_totp_and_replays_are_refused() {
        for w in worlds().await {
            let id = &w.identity;
            let (secret, _) = enrol(&w).await;
            // The enrolment used the current step: the next sign-in needs a later one.
            let pending = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            assert_eq!(pending.session.stage, SessionStage::SecondFactor);
            assert!(pending.device_cookie.is_none());
            let challenge = pending.second_factor.clone().unwrap();
            assert_eq!(
                (challenge.methods.len(), challenge.default_method.as_str()),
                (1, "totp")
            );

            let c = client("192.0.2.1");
            let replay = id
                .second_step(
                    &pending.session,
                    &pending.account,
                    SecondStep::Totp(code_now(&secret, w.clock.now(), 0)),
                    None,
                    &c,
                )
                .await;
            assert!(matches!(replay, Err(SecondStepError::CodeReused)), "{replay:?}");
            let next = code_now(&secret, w.clock.now(), 1);
            let done = id
                .second_step(
                    &pending.session,
                    &pending.account,
                    SecondStep::Totp(next.clone()),
                    None,
                    &c,
                )
                .await
                .unwrap();
            assert_eq!(done.session.stage, SessionStage::SignedIn);
            assert_ne!(done.token, pending.token, "a new token once signed in");
            assert!(id.session(&pending.token.0, &c).await.unwrap().is_none());
            assert_eq!(
                id.session(&done.token.0, &c).await.unwrap().unwrap().0.stage,
                SessionStage::SignedIn
            );

            let again = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let replay = id
                .second_step(&again.session, &again.account, SecondStep::Totp(next), None, &c)
                .await;
            assert!(
                matches!(replay, Err(SecondStepError::CodeReused)),
                "a used step never works again"
            );
            w.clock.advance(60_000);
            id.second_step(
                &again.session,
                &again.account,
                SecondStep::Totp(code_now(&secret, w.clock.now(), 0)),
                None,
                &c,
            )
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn five_wrong_codes_restart_and_the_account_is_throttled() {
        for w in worlds().await {
            let id = &w.identity;
            let (secret, _) = enrol(&w).await;
            let c = client("192.0.2.1");
            let pending = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            for left in (1..5).rev() {
                let r = id
                    .second_step(
                        &pending.session,
                        &pending.account,
                        SecondStep::Totp("111111".into()),
                        None,
                        &c,
                    )
                    .await;
                assert!(
                    matches!(r, Err(SecondStepError::WrongCode { attempts_left }) if attempts_left == left),
                    "{r:?}"
                );
            }
            let r = id
                .second_step(
                    &pending.session,
                    &pending.account,
                    SecondStep::Totp("111111".into()),
                    None,
                    &c,
                )
                .await;
            assert!(matches!(r, Err(SecondStepError::Restart)), "{r:?}");
            assert!(
                id.session(&pending.token.0, &c).await.unwrap().is_none(),
                "back to the password step"
            );

            // The sixth wrong code for the account locks the second step.
            let pending = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let r = id
                .second_step(
                    &pending.session,
                    &pending.account,
                    SecondStep::Totp("111111".into()),
                    None,
                    &c,
                )
                .await;
            assert!(matches!(r, Err(SecondStepError::WrongCode { .. })));
            let r = id
                .second_step(
                    &pending.session,
                    &pending.account,
                    SecondStep::Totp(code_now(&secret, w.clock.now(), 1)),
                    None,
                    &c,
                )
                .await;
            assert!(
                matches!(r, Err(SecondStepError::TooManyAttempts { retry_after: 30_000 })),
                "{r:?}"
            );
            let events = id.events(&pending.account.id, None, 50).await.unwrap().events;
            assert_eq!(
                events
                    .iter()
                    .filter(|e| e.kind == EventKind::SecondFactorFailed)
                    .count(),
                6
            );
            assert!(events.iter().any(|e| e.kind == EventKind::SecondFactorLocked));
        }
    }

    /// Issue 21, item 3: twenty half-signed-in sessions send four wrong
    /// codes each and the right one, all at once. The limit is the
    /// account's, not each session's: no more codes are checked than one
    /// session could check one after the other, and the right code at the
    /// end of the burst is refused.
    #[tokio::test]
    async fn a_burst_of_wrong_codes_across_sessions_checks_no_more_than_a_sequence() {
        for w in worlds().await {
            let id = &w.identity;
            let (secret, _) = enrol(&w).await;
            let c = client("192.0.2.1");
            let mut pending = Vec::new();
            for _ in 0..20 {
                let p = id
                    .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                    .await
                    .unwrap();
                assert!(p.second_factor.is_some());
                pending.push(p);
            }
            let burst = pending
                .iter()
                .flat_map(|p| std::iter::repeat_n(p, 4))
                .map(|p| {
                    Box::pin(id.second_step(&p.session, &p.account, SecondStep::Totp("111111".into()), None, &c)) as _
                })
                .collect();
            let refused = |r: &Result<identity::SignedIn, SecondStepError>| {
                matches!(r, Err(SecondStepError::TooManyAttempts { .. }))
            };
            let last = &pending[19];
            let right = id.second_step(
                &last.session,
                &last.account,
                SecondStep::Totp(code_now(&secret, w.clock.now(), 1)),
                None,
                &c,
            );
            let (outcomes, right) = burst_then(burst, refused, right).await;

            let checked = outcomes.iter().filter(|r| !refused(r)).count();
            let bound = ThrottlePolicy::ACCOUNT.attempts_before_lock() as usize;
            assert_eq!(checked, bound, "wrong codes checked");
            assert!(
                outcomes
                    .iter()
                    .all(|r| refused(r) || matches!(r, Err(SecondStepError::WrongCode { .. }))),
                "{outcomes:?}"
            );
            assert!(refused(&right), "the right code at the end is refused: {right:?}");
            assert_eq!(count_events(id, &w.ana, EventKind::SecondFactorFailed).await, bound);
            assert_eq!(count_events(id, &w.ana, EventKind::SecondFactorLocked).await, 1);

            // After the lock, the member finishes signing in.
            w.clock.advance(30_000);
            id.second_step(
                &last.session,
                &last.account,
                SecondStep::Totp(code_now(&secret, w.clock.now(), 1)),
                None,
                &c,
            )
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn backup_codes_work_once_and_regeneration_replaces_them() {
        for w in worlds().await {
            let id = &w.identity;
            let (_, codes) = enrol(&w).await;
            let c = client("192.0.2.1");
            let pending = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let typed = codes[0].to_uppercase().replace('-', " ");
            let done = id
                .second_step(
                    &pending.session,
                    &pending.account,
                    SecondStep::BackupCode(typed),
                    None,
                    &c,
                )
                .await
                .unwrap();
            assert_eq!(id.two_factor(&done.account.id).await.unwrap().backup_codes_remaining, 9);
            let pending = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let r = id
                .second_step(
                    &pending.session,
                    &pending.account,
                    SecondStep::BackupCode(codes[0].clone()),
                    None,
                    &c,
                )
                .await;
            assert!(matches!(r, Err(SecondStepError::WrongCode { .. })), "used once");

            let wrong = id
                .regenerate_backup_codes(&done.session, &done.account, "not my password", &c)
                .await;
            assert!(matches!(wrong, Err(IdentityError::WrongPassword)));
            let fresh = id
                .regenerate_backup_codes(&done.session, &done.account, PASSWORD, &c)
                .await
                .unwrap();
            assert_eq!(
                id.two_factor(&done.account.id).await.unwrap().backup_codes_remaining,
                10
            );
            let r = id
                .second_step(
                    &pending.session,
                    &pending.account,
                    SecondStep::BackupCode(codes[1].clone()),
                    None,
                    &c,
                )
                .await;
            assert!(
                matches!(r, Err(SecondStepError::WrongCode { .. })),
                "old codes stop working"
            );
            id.second_step(
                &pending.session,
                &pending.account,
                SecondStep::BackupCode(fresh[5].clone()),
                None,
                &c,
            )
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn removing_the_last_method_turns_two_factor_off() {
        for w in worlds().await {
            let id = &w.identity;
            let (secret, _) = enrol(&w).await;
            let c = client("192.0.2.1");
            let pending = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let done = id
                .second_step(
                    &pending.session,
                    &pending.account,
                    SecondStep::Totp(code_now(&secret, w.clock.now(), 1)),
                    None,
                    &c,
                )
                .await
                .unwrap();
            let status = id.two_factor(&done.account.id).await.unwrap();
            let method = status.methods[0].id.clone();
            // The password given at sign-in counts for five minutes.
            w.clock.advance(5 * 60_000);
            let r = id
                .remove_second_factor(&done.session, &done.account, &method, None, &c)
                .await;
            assert!(matches!(r, Err(IdentityError::PasswordRequired)), "{r:?}");
            let r = id
                .remove_second_factor(&done.session, &done.account, &method, Some("wrong"), &c)
                .await;
            assert!(matches!(r, Err(IdentityError::WrongPassword)));
            id.remove_second_factor(&done.session, &done.account, &method, Some(PASSWORD), &c)
                .await
                .unwrap();
            let status = id.two_factor(&done.account.id).await.unwrap();
            assert!(!status.enabled && status.methods.is_empty() && status.backup_codes_remaining == 0);
            let signed = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            assert!(signed.second_factor.is_none(), "a password is enough again");
            let kinds: Vec<_> = id
                .events(&signed.account.id, None, 50)
                .await
                .unwrap()
                .events
                .iter()
                .map(|e| e.kind)
                .collect();
            assert!(kinds.contains(&EventKind::TwoFactorDisabled) && kinds.contains(&EventKind::SecondFactorRemoved));
        }
    }

    #[tokio::test]
    async fn protocol_clients_use_application_passwords() {
        for w in worlds().await {
            let id = &w.identity;
            let ip: std::net::IpAddr = "192.0.2.50".parse().unwrap();
            let c = client("192.0.2.1");
            let signed = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let account = signed.account.clone();
            // Without 2FA the account password also works.
            assert_eq!(
                id.authenticate_protocol_client("ana@example.org", PASSWORD, ip)
                    .await
                    .unwrap()
                    .id,
                account.id
            );
            let (nas, secret) = id.create_app_password(&account, "NAS QNAP", &c).await.unwrap();
            let sync_id = account.sync_user_id.to_string();
            for login in [
                "ana@example.org",
                "ANA@example.org",
                sync_id.as_str(),
                &sync_id.to_lowercase(),
            ] {
                assert_eq!(
                    id.authenticate_protocol_client(login, &secret, ip).await.unwrap().id,
                    account.id,
                    "{login}"
                );
            }
            let listed = id.app_passwords(&account.id).await.unwrap();
            assert_eq!(
                (listed[0].name.as_str(), listed[0].last_used_ip.as_str()),
                ("NAS QNAP", "192.0.2.50")
            );

            enrol(&w).await;
            let r = id.authenticate_protocol_client("ana@example.org", PASSWORD, ip).await;
            assert!(
                matches!(r, Err(ProtocolAuthError::InvalidCredentials)),
                "account password refused with 2FA"
            );
            id.authenticate_protocol_client("ana@example.org", &secret, ip)
                .await
                .unwrap();

            assert!(id.revoke_app_password(&account.id, &nas.id, &c).await.unwrap());
            let r = id.authenticate_protocol_client("ana@example.org", &secret, ip).await;
            assert!(
                matches!(r, Err(ProtocolAuthError::InvalidCredentials)),
                "revoked at once"
            );
            let r = id.authenticate_protocol_client("nobody@example.org", &secret, ip).await;
            assert!(matches!(r, Err(ProtocolAuthError::InvalidCredentials)));
            // Application passwords never open the console or the API.
            let (_, other) = id.create_app_password(&account, "Thunderbird", &c).await.unwrap();
            let r = id.sign_in(attempt("ana@example.org", &other, "192.0.2.1", None)).await;
            assert!(matches!(r, Err(SignInError::InvalidCredentials)));
            let events = id.events(&account.id, None, 50).await.unwrap().events;
            assert!(events.iter().any(|e| e.kind == EventKind::ProtocolSignInFailed));
        }
    }

    #[tokio::test]
    async fn protocol_failures_are_throttled_but_never_block_a_valid_app_password() {
        for w in worlds().await {
            let id = &w.identity;
            let ip: std::net::IpAddr = "198.51.100.7".parse().unwrap();
            let signed = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let (_, secret) = id
                .create_app_password(&signed.account, "NAS", &client("192.0.2.1"))
                .await
                .unwrap();
            for _ in 0..6 {
                let r = id
                    .authenticate_protocol_client("ana@example.org", "guess guess guess", ip)
                    .await;
                assert!(matches!(r, Err(ProtocolAuthError::InvalidCredentials)));
            }
            let r = id.authenticate_protocol_client("ana@example.org", PASSWORD, ip).await;
            assert!(matches!(r, Err(ProtocolAuthError::TooManyAttempts { .. })), "{r:?}");
            id.forget_protocol_credentials();
            id.authenticate_protocol_client("ana@example.org", &secret, ip)
                .await
                .unwrap();
            // The console is not locked by the sync client's failures.
            id.sign_in(attempt("ana@example.org", PASSWORD, "198.51.100.7", None))
                .await
                .unwrap();
        }
    }
}

mod sms {
    use super::*;
    use identity::credential::sms::PhoneRejected;
    use identity::{IdentityError, SecondStep, SecondStepError, SmsError, SmsGateway, SmsSendError};
    use std::sync::Mutex;

    /// Keeps what would have been sent, for reading the codes.
    #[derive(Default)]
    struct Outbox(Mutex<Vec<(String, String)>>);

    #[async_trait::async_trait]
    impl SmsGateway for Outbox {
        async fn send(&self, to: &str, message: &str) -> Result<(), SmsSendError> {
            self.0.lock().unwrap().push((to.to_owned(), message.to_owned()));
            Ok(())
        }
    }

    impl Outbox {
        fn last_code(&self) -> String {
            let (_, message) = self.0.lock().unwrap().last().cloned().expect("a message");
            message[..6].to_owned()
        }

        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    async fn with_outbox() -> Vec<(World, Arc<Outbox>)> {
        let mut out = Vec::new();
        for w in worlds().await {
            let outbox = Arc::new(Outbox::default());
            let identity = w.identity.clone().with_sms_gateway(outbox.clone());
            out.push((
                World {
                    identity,
                    clock: w.clock,
                    ana: w.ana,
                    hasher: w.hasher,
                },
                outbox,
            ));
        }
        out
    }

    #[tokio::test]
    async fn enrol_a_swiss_number_and_sign_in_with_sms_codes() {
        for (w, outbox) in with_outbox().await {
            let id = &w.identity;
            let c = client("192.0.2.1");
            let signed = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let a = &signed.account;
            for (phone, refused) in [
                (
                    "+1 202 555 0143",
                    PhoneRejected::CountryNotAllowed {
                        allowed: "CH, FR, BE, DE".into(),
                    },
                ),
                ("079 123 45 67", PhoneRejected::Invalid),
            ] {
                let r = id.begin_sms(a, phone, "en").await;
                assert!(
                    matches!(r, Err(IdentityError::Sms(SmsError::Phone(ref p))) if *p == refused),
                    "{phone}: {r:?}"
                );
            }
            assert_eq!(outbox.count(), 0);

            let e = id.begin_sms(a, "+41 79 123 45 67", "es").await.unwrap();
            assert_eq!(e.phone, "+41 •••• 4567");
            let (to, message) = outbox.0.lock().unwrap()[0].clone();
            assert_eq!(to, "+41791234567");
            assert!(message.contains("es tu código de cloudkeep"), "{message}");
            let first = outbox.last_code();
            let r = id.resend_sms_enrolment(a, &e.id, "en").await;
            assert!(
                matches!(r, Err(IdentityError::Sms(SmsError::TooSoon { retry_after: 60_000 }))),
                "{r:?}"
            );
            w.clock.advance(60_000);
            id.resend_sms_enrolment(a, &e.id, "en").await.unwrap();
            let second = outbox.last_code();
            if first != second {
                let r = id.confirm_sms(&a.id, &e.id, &first, &c).await;
                assert!(matches!(r, Err(IdentityError::WrongCode)), "a replaced code");
            }
            let codes = id.confirm_sms(&a.id, &e.id, &second, &c).await.unwrap();
            assert_eq!(codes.map(|c| c.len()), Some(10), "the first method turns 2FA on");
            let status = id.two_factor(&a.id).await.unwrap();
            assert_eq!(
                (status.methods[0].kind.as_str(), status.methods[0].name.as_str()),
                ("sms", "+41 •••• 4567")
            );

            // Sign-in: ask for a code, then give it.
            let pending = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            assert_eq!(pending.second_factor.as_ref().unwrap().default_method.as_str(), "sms");
            let sent_to = id
                .send_sign_in_sms(&pending.session, &pending.account, "en")
                .await
                .unwrap();
            assert_eq!(sent_to, "+41 •••• 4567");
            let code = outbox.last_code();
            let done = id
                .second_step(
                    &pending.session,
                    &pending.account,
                    SecondStep::Sms(code.clone()),
                    None,
                    &c,
                )
                .await
                .unwrap();
            assert_eq!(done.session.stage, identity::SessionStage::SignedIn);
            let again = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let r = id
                .second_step(&again.session, &again.account, SecondStep::Sms(code), None, &c)
                .await;
            assert!(matches!(r, Err(SecondStepError::WrongCode { .. })), "a code works once");
        }
    }

    #[tokio::test]
    async fn codes_expire_allow_five_tries_and_days_are_capped() {
        for (w, outbox) in with_outbox().await {
            let id = &w.identity;
            let c = client("192.0.2.1");
            let signed = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let a = &signed.account;
            let e = id.begin_sms(a, "+33 6 12 34 56 78", "en").await.unwrap();
            id.confirm_sms(&a.id, &e.id, &outbox.last_code(), &c).await.unwrap();

            // Expiry: ten minutes.
            w.clock.advance(60_000);
            let p = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            id.send_sign_in_sms(&p.session, &p.account, "en").await.unwrap();
            let code = outbox.last_code();
            w.clock.advance(10 * 60_000);
            let p = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let r = id
                .second_step(&p.session, &p.account, SecondStep::Sms(code), None, &c)
                .await;
            assert!(matches!(r, Err(SecondStepError::WrongCode { .. })), "expired");

            // Five tries per code: then even the right one is refused.
            id.send_sign_in_sms(&p.session, &p.account, "en").await.unwrap();
            let code = outbox.last_code();
            let wrong = if code == "000000" { "111111" } else { "000000" };
            let p2 = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            for session in [&p, &p, &p, &p2, &p2] {
                let _ = id
                    .second_step(
                        &session.session,
                        &session.account,
                        SecondStep::Sms(wrong.into()),
                        None,
                        &c,
                    )
                    .await;
            }
            w.clock.advance(60_000); // past the account lock of the second step
            let p3 = id
                .sign_in(attempt("ana@example.org", PASSWORD, "192.0.2.1", None))
                .await
                .unwrap();
            let r = id
                .second_step(&p3.session, &p3.account, SecondStep::Sms(code), None, &c)
                .await;
            assert!(
                matches!(r, Err(SecondStepError::WrongCode { .. })),
                "the code is spent after five tries: {r:?}"
            );

            // A daily cap per number and per account.
            let mut sent = outbox.count();
            loop {
                w.clock.advance(61_000);
                match id.send_sign_in_sms(&p3.session, &p3.account, "en").await {
                    Ok(_) => sent += 1,
                    Err(SecondStepError::Sms(SmsError::DailyCap { .. })) => break,
                    Err(e) => panic!("{e:?}"),
                }
                assert!(sent <= 20, "no cap");
            }
            assert_eq!(outbox.count(), 10, "ten messages in 24 hours");
        }
    }
}
