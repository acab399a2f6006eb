//! The SQL store, on SQLite and on PostgreSQL.

use identity::credential::app_password::AppPassword;
use identity::softlock::ThrottleState;
use identity::{
    AccountId, AppPasswordId, Constraint, EmailAddress, EventKind, FactorId, NewAccount, NewOrganization, OrgId, Role,
    SecurityEvent, Session, SessionId, SessionStage, StepContext, StoreError, SyncUserId, ThrottleRelease,
    ThrottleReservation,
};
use identity::{AccountStore, AppPasswordStore, EventStore, FactorStore, OrgStore, SessionStore, ThrottleStore};
use identity::{FactorKind, SecondFactor, SecondStepProof};
use store::{Engine, SqlStore};

async fn stores() -> Vec<SqlStore> {
    let mut out = Vec::new();
    for engine in [Engine::Sqlite, Engine::Postgres] {
        if let Some(url) = store::testing::database_url(engine).await {
            out.push(SqlStore::open(&url).await.expect("open store"));
        }
    }
    out
}

fn new_account(email: &str) -> NewAccount {
    NewAccount {
        id: AccountId::generate(),
        email: EmailAddress::parse(email).unwrap(),
        name: "Ana".into(),
        password_hash: "$argon2id$stub".into(),
        created_at: 1_000,
    }
}

fn ids(list: &[&str]) -> impl Iterator<Item = SyncUserId> + Send {
    list.iter()
        .map(|s| SyncUserId::parse(s).unwrap())
        .collect::<Vec<_>>()
        .into_iter()
}

#[tokio::test]
async fn accounts_organizations_and_memberships() {
    for s in stores().await {
        let org = s
            .create_organization(&OrgId::new("o1"), &NewOrganization::parse("Acme").unwrap(), 5)
            .await
            .unwrap();
        assert!(matches!(
            s.create_organization(&OrgId::new("o2"), &NewOrganization::parse("ACME").unwrap(), 5)
                .await,
            Err(StoreError::Conflict(Constraint::OrganizationName))
        ));
        assert_eq!(s.organization_by_name("acme").await.unwrap().unwrap().id, org.id);

        let a = s
            .create_account(
                &new_account("ana@example.org"),
                Some((&org.id, Role::Admin)),
                &mut ids(&["AB12345"]),
            )
            .await
            .unwrap();
        assert_eq!(a.sync_user_id.as_str(), "AB12345");
        let again = s
            .create_account(&new_account("ana@example.org"), None, &mut ids(&["CD12345"]))
            .await;
        assert!(
            matches!(again, Err(StoreError::Conflict(Constraint::Email))),
            "{again:?}"
        );

        // The id reserved by the failed attempt was rolled back with it, but
        // AB12345 stays taken: the next account skips to the next candidate.
        let b = s
            .create_account(&new_account("bo@example.org"), None, &mut ids(&["AB12345", "EF00001"]))
            .await
            .unwrap();
        assert_eq!(b.sync_user_id.as_str(), "EF00001");

        let found = s
            .account_by_email(&EmailAddress::parse("ANA@example.org").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, a.id);
        assert_eq!(
            s.account_by_id(&b.id).await.unwrap().unwrap().email.as_str(),
            "bo@example.org"
        );
        let m = s.memberships(&a.id).await.unwrap();
        assert_eq!((m.len(), m[0].role, m[0].org_name.as_str()), (1, Role::Admin, "Acme"));
        assert!(s.memberships(&b.id).await.unwrap().is_empty());
        assert_eq!(s.count_accounts().await.unwrap(), 2);

        s.set_password(&a.id, "$argon2id$new", 9).await.unwrap();
        let changed = s.account_by_id(&a.id).await.unwrap().unwrap();
        assert_eq!(
            (changed.password_hash.as_str(), changed.password_changed_at),
            ("$argon2id$new", 9)
        );
    }
}

#[tokio::test]
async fn setup_link_is_single_use_and_expires() {
    for s in stores().await {
        let org = NewOrganization::parse("First").unwrap();
        s.put_setup_token("old", 10_000).await.unwrap();
        s.put_setup_token("h", 10_000).await.unwrap();
        assert!(
            !s.setup_token_valid("old", 0).await.unwrap(),
            "a new link replaces the old"
        );
        assert!(s.setup_token_valid("h", 9_999).await.unwrap());
        assert!(!s.setup_token_valid("h", 10_000).await.unwrap());
        let expired = s
            .complete_setup("h", 10_000, &org, &new_account("a@example.org"), &mut ids(&["AA00001"]))
            .await;
        assert!(matches!(expired, Err(StoreError::SetupUnavailable)));

        let (o, a) = s
            .complete_setup("h", 5, &org, &new_account("a@example.org"), &mut ids(&["AA00001"]))
            .await
            .unwrap();
        assert_eq!(s.memberships(&a.id).await.unwrap()[0].role, Role::LegalRepresentative);
        assert_eq!(o.name, "First");
        let twice = s
            .complete_setup("h", 6, &org, &new_account("b@example.org"), &mut ids(&["AA00002"]))
            .await;
        assert!(matches!(twice, Err(StoreError::SetupUnavailable)));

        // Even a fresh link cannot run setup once an account exists.
        s.put_setup_token("h2", 10_000).await.unwrap();
        let late = s
            .complete_setup("h2", 6, &org, &new_account("c@example.org"), &mut ids(&["AA00003"]))
            .await;
        assert!(matches!(late, Err(StoreError::SetupUnavailable)));
        assert_eq!(s.count_accounts().await.unwrap(), 1);
    }
}

#[tokio::test]
async fn sessions_are_found_by_token_hash_and_deleted() {
    for s in stores().await {
        let a = s
            .create_account(&new_account("s@example.org"), None, &mut ids(&["SS00001"]))
            .await
            .unwrap();
        let session = |id: &str| Session {
            id: SessionId::new(id),
            account_id: a.id.clone(),
            created_at: 1,
            last_seen_at: 1,
            remember: id == "one",
            ip: "127.0.0.1".into(),
            user_agent: "test".into(),
            stage: if id == "two" {
                SessionStage::SecondFactor
            } else {
                SessionStage::SignedIn
            },
            password_at: 1,
            factor_failures: 0,
        };
        let failed = ThrottleState {
            failures: 3,
            last_failure: 1,
            locked_until: 0,
        };
        s.swap_throttle("email:s", None, failed).await.unwrap();
        for (id, hash) in [("one", "h1"), ("two", "h2"), ("three", "h3")] {
            let event = SecurityEvent {
                id: format!("event-{id}"),
                account_id: a.id.clone(),
                at: 1,
                kind: EventKind::SignIn,
                ip: "127.0.0.1".into(),
                user_agent: "test".into(),
                detail: String::new(),
            };
            let release = ThrottleRelease {
                key: "email:s".into(),
                forget: true,
            };
            let releases = if id == "three" { vec![release] } else { vec![] };
            s.insert_session(&session(id), hash, Some(&event), &releases)
                .await
                .unwrap();
        }
        assert_eq!(
            s.events(&a.id, None, 10).await.unwrap().len(),
            3,
            "each session records its event"
        );
        assert_eq!(
            s.throttle("email:s").await.unwrap().map(|r| r.state),
            Some(ThrottleState::default()),
            "and forgets the throttle key's failures when asked"
        );
        assert_eq!(
            s.session_by_token_hash("h1").await.unwrap().map(|(session, _)| session),
            Some(session("one"))
        );
        s.touch_session(&SessionId::new("one"), 50, "::1").await.unwrap();
        let touched = s
            .session_by_token_hash("h1")
            .await
            .unwrap()
            .map(|(session, _)| session)
            .unwrap();
        assert_eq!(
            (touched.last_seen_at, touched.ip.as_str(), touched.remember),
            (50, "::1", true)
        );
        assert!(
            !s.delete_session(&AccountId::new("someone-else"), &SessionId::new("two"))
                .await
                .unwrap()
        );
        assert!(s.delete_session(&a.id, &SessionId::new("two")).await.unwrap());
        assert_eq!(
            s.session_by_token_hash("h2").await.unwrap().map(|(session, _)| session),
            None
        );
        assert_eq!(
            s.delete_sessions_except(&a.id, &SessionId::new("one")).await.unwrap(),
            1
        );
        let left: Vec<_> = s.sessions_of(&a.id).await.unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(left, [SessionId::new("one")]);
    }
}

#[tokio::test]
async fn throttle_updates_never_lose_a_concurrent_write() {
    for s in stores().await {
        let state = |n| ThrottleState {
            failures: n,
            last_failure: 7,
            locked_until: 0,
        };
        assert!(s.throttle("k").await.unwrap().is_none());
        assert!(s.swap_throttle("k", None, state(1)).await.unwrap());
        assert!(s.swap_throttle("j", None, state(5)).await.unwrap());
        let both = s.throttles(&["none", "k", "j"]).await.unwrap();
        let failures: Vec<_> = both.iter().map(|r| r.map(|r| r.state.failures)).collect();
        assert_eq!(failures, [None, Some(1), Some(5)], "in the order asked");
        assert!(
            s.swap_throttle("k", None, state(1)).await.unwrap(),
            "without a version, written whatever is there"
        );
        let r = s.throttle("k").await.unwrap().unwrap();
        assert_eq!(r.state, state(1));
        assert!(s.swap_throttle("k", Some(r.version), state(2)).await.unwrap());
        assert!(
            !s.swap_throttle("k", Some(r.version), state(9)).await.unwrap(),
            "stale version"
        );
        assert_eq!(s.throttle("k").await.unwrap().unwrap().state, state(2));
        let release = ThrottleRelease {
            key: "k".into(),
            forget: true,
        };
        s.release_throttles(&[release]).await.unwrap();
        assert_eq!(
            s.throttle("k").await.unwrap().unwrap().state,
            ThrottleState::default(),
            "forgotten"
        );
    }
}

/// A sign-in reserves its keys together, in one statement: all of them, or
/// (when one has no room) none, the others left as they were. Room held
/// longer than the lapse is taken again.
#[tokio::test]
async fn keys_are_reserved_together_or_not_at_all() {
    for s in stores().await {
        let at = |version, open| ThrottleReservation {
            version,
            open,
            now: 100_000,
            lapsed_before: 40_000,
        };
        assert!(s.reserve_throttles(&[("a", at(0, 1)), ("b", at(0, 2))]).await.unwrap());
        // "a" is full: nothing is reserved, "b" keeps its one reservation.
        assert!(!s.reserve_throttles(&[("b", at(0, 2)), ("a", at(0, 1))]).await.unwrap());
        assert!(
            s.reserve_throttle("b", at(0, 2)).await.unwrap(),
            "b had room for one more"
        );
        assert!(!s.reserve_throttle("b", at(0, 2)).await.unwrap(), "and now it is full");

        // A minute later, those reservations lapsed (a process that died
        // holding them): each key counts one in flight again.
        let later = |version, open| ThrottleReservation {
            version,
            open,
            now: 200_000,
            lapsed_before: 140_000,
        };
        assert!(
            s.reserve_throttles(&[("a", later(0, 1)), ("b", later(0, 2))])
                .await
                .unwrap()
        );
        assert!(!s.reserve_throttle("a", later(0, 1)).await.unwrap(), "a holds one");
        assert!(
            s.reserve_throttle("b", later(0, 2)).await.unwrap(),
            "b holds one of two"
        );
        // A settled failure since (a newer version) refuses room computed
        // from the older state, and nothing stays reserved.
        assert!(s.swap_throttle("b", Some(0), ThrottleState::default()).await.unwrap());
        assert!(
            !s.reserve_throttles(&[("c", later(0, 1)), ("b", later(0, 6))])
                .await
                .unwrap()
        );
        assert!(s.reserve_throttle("c", later(0, 1)).await.unwrap(), "c was given back");
    }
}

#[tokio::test]
async fn reservations_check_and_take_room_in_one_statement() {
    for s in stores().await {
        let s = std::sync::Arc::new(s);
        let reserve = |key: &'static str, version: i64, open: u32, now: i64| {
            let s = std::sync::Arc::clone(&s);
            async move {
                let r = ThrottleReservation {
                    version,
                    open,
                    now,
                    lapsed_before: now - 60_000,
                };
                s.reserve_throttle(key, r).await.unwrap()
            }
        };
        // Sixty at once against room for six: exactly six get it.
        let burst = futures_util::future::join_all((0..60).map(|_| reserve("r", 0, 6, 100_000))).await;
        assert_eq!(burst.iter().filter(|ok| **ok).count(), 6);
        let row = s.throttle("r").await.unwrap().unwrap();
        assert_eq!((row.version, row.state), (0, ThrottleState::default()));

        // Room computed from an older state is refused.
        let failed = ThrottleState {
            failures: 1,
            last_failure: 100_000,
            locked_until: 0,
        };
        assert!(s.swap_throttle("r", Some(0), failed).await.unwrap(), "settles one");
        assert!(!reserve("r", 0, 6, 100_000).await, "stale version");
        assert!(reserve("r", 1, 6, 100_000).await, "five in flight, room for six");
        assert!(!reserve("r", 1, 6, 100_000).await, "full");

        // Releasing gives room back; a success also forgets the failures.
        let release = |forget| ThrottleRelease {
            key: "r".into(),
            forget,
        };
        s.release_throttles(&[release(false)]).await.unwrap();
        assert!(reserve("r", 1, 6, 100_000).await);
        s.release_throttles(&[release(true)]).await.unwrap();
        let row = s.throttle("r").await.unwrap().unwrap();
        assert_eq!((row.version, row.state), (2, ThrottleState::default()));

        // Reservations never settled (a crashed process) lapse.
        assert!(!reserve("r", 2, 5, 100_000).await, "five still in flight");
        assert!(reserve("r", 2, 5, 160_000).await, "lapsed: room again");
        assert!(reserve("r", 2, 2, 160_001).await);
        assert!(!reserve("r", 2, 2, 160_002).await, "counted from one again");
    }
}

#[tokio::test]
async fn events_page_newest_first() {
    for s in stores().await {
        let a = s
            .create_account(&new_account("e@example.org"), None, &mut ids(&["EE00001"]))
            .await
            .unwrap();
        for i in 0..5 {
            s.record_event(&SecurityEvent {
                id: format!("0000000{i}"),
                account_id: a.id.clone(),
                at: i,
                kind: EventKind::SignIn,
                ip: "192.0.2.1".into(),
                user_agent: "ua".into(),
                detail: String::new(),
            })
            .await
            .unwrap();
        }
        let first = s.events(&a.id, None, 2).await.unwrap();
        assert_eq!(first.iter().map(|e| e.at).collect::<Vec<_>>(), [4, 3]);
        let next = s.events(&a.id, Some(&first[1].id), 10).await.unwrap();
        assert_eq!(next.iter().map(|e| e.at).collect::<Vec<_>>(), [2, 1, 0]);
        assert!(s.events(&AccountId::new("nobody"), None, 10).await.unwrap().is_empty());
    }
}

fn pending_session(id: &str, account_id: &AccountId) -> Session {
    Session {
        id: SessionId::new(id),
        account_id: account_id.clone(),
        created_at: 1,
        last_seen_at: 1,
        remember: false,
        ip: "127.0.0.1".into(),
        user_agent: "test".into(),
        stage: SessionStage::SecondFactor,
        password_at: 1,
        factor_failures: 0,
    }
}

fn sign_in_event(id: &str, account_id: &AccountId) -> SecurityEvent {
    SecurityEvent {
        id: id.into(),
        account_id: account_id.clone(),
        at: 5,
        kind: EventKind::SignIn,
        ip: "127.0.0.1".into(),
        user_agent: "test".into(),
        detail: "totp".into(),
    }
}

async fn done(s: &SqlStore, account: &AccountId, session: &str, hash: &str, proof: SecondStepProof) -> bool {
    let event = sign_in_event(hash, account);
    s.complete_second_step(&SessionId::new(session), hash, 5, &event, &proof)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_second_step_consumes_its_proof_and_signs_in_once() {
    for s in stores().await {
        let a = s
            .create_account(&new_account("p@example.org"), None, &mut ids(&["PP00001"]))
            .await
            .unwrap();
        for (id, hash) in [("p1", "h1"), ("p2", "h2"), ("p3", "h3")] {
            s.insert_session(&pending_session(id, &a.id), hash, None, &[])
                .await
                .unwrap();
        }
        assert!(
            s.events(&a.id, None, 10).await.unwrap().is_empty(),
            "nothing recorded before the second step"
        );
        assert_eq!(s.count_factor_failure(&SessionId::new("p1")).await.unwrap(), 1);
        assert_eq!(s.count_factor_failure(&SessionId::new("p1")).await.unwrap(), 2);
        let factor = SecondFactor {
            id: FactorId::new("f"),
            account_id: a.id.clone(),
            kind: FactorKind::Totp,
            name: "Phone".into(),
            secret: "sealed".into(),
            active: false,
            created_at: 1,
            expires_at: 100,
            last_used_at: 0,
            counter: 0,
        };
        s.insert_second_factor(&factor).await.unwrap();
        let codes = ["code-a".to_owned(), "code-b".to_owned()];
        assert!(
            s.activate_second_factor(&a.id, &FactorId::new("f"), 2, 7, Some(&codes))
                .await
                .unwrap()
        );
        let totp = |step| SecondStepProof::TotpStep {
            factor_id: FactorId::new("f"),
            step,
        };
        let backup = |code: &str| SecondStepProof::BackupCode {
            account_id: a.id.clone(),
            digest: code.into(),
        };

        assert!(!done(&s, &a.id, "p1", "n0", totp(7)).await, "not above the counter");
        assert!(done(&s, &a.id, "p1", "n1", totp(8)).await);
        assert!(!done(&s, &a.id, "p2", "n2", totp(8)).await, "a step works once");
        assert!(done(&s, &a.id, "p2", "n3", backup("code-a")).await);
        assert!(
            !done(&s, &a.id, "p3", "n4", backup("code-a")).await,
            "a code works once"
        );
        assert!(
            !done(&s, &a.id, "p1", "n5", backup("code-b")).await,
            "p1 is signed in already"
        );
        assert_eq!(
            s.unused_backup_codes(&a.id).await.unwrap(),
            ["code-b"],
            "and code-b was not spent"
        );

        assert!(
            s.session_by_token_hash("h1")
                .await
                .unwrap()
                .map(|(session, _)| session)
                .is_none(),
            "the old token is dead"
        );
        let promoted = s
            .session_by_token_hash("n1")
            .await
            .unwrap()
            .map(|(session, _)| session)
            .unwrap();
        assert_eq!(
            (promoted.stage, promoted.factor_failures, promoted.last_seen_at),
            (SessionStage::SignedIn, 2, 5)
        );
        let f = &s.second_factors(&a.id).await.unwrap()[0];
        assert_eq!((f.counter, f.last_used_at), (8, 5));
        assert_eq!(
            s.session_by_token_hash("h3")
                .await
                .unwrap()
                .map(|(session, _)| session)
                .unwrap()
                .stage,
            SessionStage::SecondFactor
        );
        s.set_password_at(&SessionId::new("p1"), 9).await.unwrap();
        assert_eq!(
            s.session_by_token_hash("n1")
                .await
                .unwrap()
                .map(|(session, _)| session)
                .unwrap()
                .password_at,
            9
        );
        assert_eq!(
            s.events(&a.id, None, 10).await.unwrap().len(),
            2,
            "one sign-in event per completed step"
        );
    }
}

#[tokio::test]
async fn second_factors_and_backup_codes() {
    for s in stores().await {
        let a = s
            .create_account(&new_account("f@example.org"), None, &mut ids(&["FF00001"]))
            .await
            .unwrap();
        let factor = |id: &str, expires_at| SecondFactor {
            id: FactorId::new(id),
            account_id: a.id.clone(),
            kind: FactorKind::Totp,
            name: format!("Phone {id}"),
            secret: "sealed".into(),
            active: false,
            created_at: 10,
            expires_at,
            last_used_at: 0,
            counter: 0,
        };
        s.insert_second_factor(&factor("one", 100)).await.unwrap();
        s.insert_second_factor(&factor("two", 100)).await.unwrap();
        s.insert_second_factor(&factor("late", 50)).await.unwrap();
        let codes: Vec<String> = (0..10).map(|i| format!("digest-{i}")).collect();
        assert!(
            !s.activate_second_factor(&a.id, &FactorId::new("late"), 60, 7, Some(&codes))
                .await
                .unwrap(),
            "expired"
        );
        assert!(
            !s.activate_second_factor(
                &AccountId::new("someone-else"),
                &FactorId::new("one"),
                60,
                7,
                Some(&codes)
            )
            .await
            .unwrap()
        );
        assert!(
            s.activate_second_factor(&a.id, &FactorId::new("one"), 60, 7, Some(&codes))
                .await
                .unwrap()
        );
        assert!(
            !s.activate_second_factor(&a.id, &FactorId::new("one"), 61, 8, None)
                .await
                .unwrap(),
            "already active"
        );
        assert!(
            s.activate_second_factor(&a.id, &FactorId::new("two"), 61, 8, None)
                .await
                .unwrap()
        );
        let all = s.second_factors(&a.id).await.unwrap();
        let one = all.iter().find(|f| f.id.as_str() == "one").unwrap();
        assert!(one.active && one.counter == 7 && one.expires_at == 0 && one.last_used_at == 60);
        assert_eq!(s.unused_backup_codes(&a.id).await.unwrap().len(), 10);

        s.replace_backup_codes(&a.id, &["fresh".to_owned()], 90).await.unwrap();
        assert_eq!(s.unused_backup_codes(&a.id).await.unwrap(), ["fresh"]);

        assert_eq!(
            s.delete_second_factor(&a.id, &FactorId::new("nope")).await.unwrap(),
            None
        );
        assert_eq!(
            s.delete_second_factor(&a.id, &FactorId::new("one")).await.unwrap(),
            Some(1)
        );
        assert_eq!(
            s.unused_backup_codes(&a.id).await.unwrap().len(),
            1,
            "kept while a method remains"
        );
        assert_eq!(
            s.delete_second_factor(&a.id, &FactorId::new("two")).await.unwrap(),
            Some(0)
        );
        assert!(
            s.unused_backup_codes(&a.id).await.unwrap().is_empty(),
            "gone with the last method"
        );
    }
}

/// The session under `hash` with its step context, read in one query and
/// in two, which must agree. Accounts are compared by what identifies them:
/// they do not compare or print (they hold the password hash).
async fn both(
    s: &SqlStore,
    hash: &str,
    prefix: &str,
    account: &AccountId,
) -> Option<(Session, AccountId, EmailAddress, StepContext)> {
    let joint = s
        .session_with_step_context(hash, prefix)
        .await
        .unwrap()
        .map(|(session, found, context)| (session, found.id, found.email, context));
    let apart = match s.session_by_token_hash(hash).await.unwrap() {
        Some((session, found)) => Some((
            session,
            found.id,
            found.email,
            s.step_context(&format!("{prefix}{account}"), account).await.unwrap(),
        )),
        None => None,
    };
    assert_eq!(joint, apart, "{hash}");
    joint
}

/// The request that brings a second-step code reads its session and the
/// step's context in one query; it must find what the two reads find.
#[tokio::test]
async fn a_session_read_with_its_step_context_matches_the_two_reads() {
    for s in stores().await {
        let a = s
            .create_account(&new_account("c@example.org"), None, &mut ids(&["CC00001"]))
            .await
            .unwrap();
        let b = s
            .create_account(&new_account("d@example.org"), None, &mut ids(&["CC00002"]))
            .await
            .unwrap();
        s.insert_session(&pending_session("c1", &a.id), "hc1", None, &[])
            .await
            .unwrap();
        let prefix = "second-factor:";
        let key = format!("{prefix}{}", a.id);
        // No factor and no throttle record: one row of NULLs beside them.
        let (session, account, _, context) = both(&s, "hc1", prefix, &a.id).await.unwrap();
        assert_eq!((session.id.as_str(), account.as_str()), ("c1", a.id.as_str()));
        assert_eq!(context.throttle, None);
        assert!(context.factors.is_empty());

        // Factors (one pending), another account's factor and throttle
        // record, and this account's record.
        let factor = |id: &str, account: &AccountId, created_at, active| SecondFactor {
            id: FactorId::new(id),
            account_id: account.clone(),
            kind: FactorKind::Totp,
            name: format!("Phone {id}"),
            secret: format!("sealed {id}"),
            active,
            created_at,
            expires_at: if active { 0 } else { 500 },
            last_used_at: 3,
            counter: 4,
        };
        for f in [
            factor("later", &a.id, 20, true),
            factor("first", &a.id, 10, true),
            factor("waiting", &a.id, 30, false),
            factor("theirs", &b.id, 5, true),
        ] {
            s.insert_second_factor(&f).await.unwrap();
        }
        let failed = ThrottleState {
            failures: 2,
            last_failure: 9,
            locked_until: 0,
        };
        assert!(s.swap_throttle(&key, None, failed).await.unwrap());
        assert!(
            s.swap_throttle(&format!("{prefix}{}", b.id), None, ThrottleState::default())
                .await
                .unwrap()
        );
        let (_, _, _, context) = both(&s, "hc1", prefix, &a.id).await.unwrap();
        assert_eq!(context.throttle.map(|t| t.state), Some(failed));
        let found: Vec<_> = context.factors.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            found,
            ["first", "later", "waiting"],
            "oldest first, this account's only"
        );
        assert_eq!(context.factors[0], factor("first", &a.id, 10, true));

        assert_eq!(both(&s, "unknown", prefix, &a.id).await, None);
    }
}

/// A password sign-in reads the account, its methods and its throttle
/// records in one query; it must find what the separate reads find.
#[tokio::test]
async fn a_sign_in_context_matches_the_separate_reads() {
    for s in stores().await {
        let a = s
            .create_account(&new_account("e@example.org"), None, &mut ids(&["EE00001"]))
            .await
            .unwrap();
        let b = s
            .create_account(&new_account("f@example.org"), None, &mut ids(&["EE00002"]))
            .await
            .unwrap();
        let email = |e: &str| EmailAddress::parse(e).unwrap();
        let keys = ["email:e", "net:e", "device:e"];

        // Nobody with that email, no records: nothing found, one slot per key.
        let context = s
            .sign_in_context(Some(&email("nobody@example.org")), &keys)
            .await
            .unwrap();
        assert!(context.account.is_none() && context.factors.is_empty());
        assert_eq!(context.throttles, vec![None; 3]);
        let context = s.sign_in_context(None, &keys[..2]).await.unwrap();
        assert!(context.account.is_none());
        assert_eq!(context.throttles.len(), 2);

        // Methods of both accounts, records for two of the keys and another.
        for (id, account, created_at, active) in [
            ("second", &a.id, 20, true),
            ("first", &a.id, 10, true),
            ("pending", &a.id, 30, false),
            ("other", &b.id, 5, true),
        ] {
            let f = SecondFactor {
                id: FactorId::new(id),
                account_id: account.clone(),
                kind: FactorKind::Totp,
                name: id.into(),
                secret: "sealed".into(),
                active,
                created_at,
                expires_at: 0,
                last_used_at: 0,
                counter: 0,
            };
            s.insert_second_factor(&f).await.unwrap();
        }
        let state = |failures| ThrottleState {
            failures,
            last_failure: 7,
            locked_until: 0,
        };
        for (key, failures) in [("net:e", 3), ("device:e", 1), ("email:other", 9)] {
            assert!(s.swap_throttle(key, None, state(failures)).await.unwrap());
        }
        let context = s.sign_in_context(Some(&email("e@example.org")), &keys).await.unwrap();
        assert_eq!(context.account.as_ref().map(|a| &a.id), Some(&a.id));
        assert_eq!(context.factors, s.second_factors(&a.id).await.unwrap());
        let ids: Vec<_> = context.factors.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["first", "second", "pending"], "oldest first, this account's only");
        assert_eq!(
            context.throttles,
            s.throttles(&keys).await.unwrap(),
            "each key's record in its place"
        );
        assert_eq!(context.throttles[1].map(|r| r.state), Some(state(3)));
        assert_eq!(context.throttles[0], None);
    }
}

/// A sign-in's two keys are settled by one statement: the person's
/// forgets its failures, the network's keeps them; each gives back one.
#[tokio::test]
async fn releases_settle_each_key_once() {
    for s in stores().await {
        let r = |version| ThrottleReservation {
            version,
            open: 5,
            now: 100_000,
            lapsed_before: 40_000,
        };
        let failed = ThrottleState {
            failures: 2,
            last_failure: 90_000,
            locked_until: 0,
        };
        for key in ["person", "network"] {
            assert!(s.swap_throttle(key, None, failed).await.unwrap());
            for _ in 0..2 {
                assert!(s.reserve_throttle(key, r(1)).await.unwrap());
            }
        }
        let release = |key: &str, forget| ThrottleRelease {
            key: key.into(),
            forget,
        };
        s.release_throttles(&[release("person", true), release("network", false)])
            .await
            .unwrap();
        let person = s.throttle("person").await.unwrap().unwrap();
        let network = s.throttle("network").await.unwrap().unwrap();
        assert_eq!((person.version, person.state), (2, ThrottleState::default()));
        assert_eq!((network.version, network.state), (1, failed));
        // One of two in flight left on each: room for four more of five.
        for key in ["person", "network"] {
            let version = if key == "person" { 2 } else { 1 };
            for _ in 0..4 {
                assert!(s.reserve_throttle(key, r(version)).await.unwrap(), "{key}");
            }
            assert!(!s.reserve_throttle(key, r(version)).await.unwrap(), "{key} full");
        }
        // A key named twice gives back twice.
        s.release_throttles(&[release("network", false), release("network", false)])
            .await
            .unwrap();
        assert!(s.reserve_throttle("network", r(1)).await.unwrap());
        assert!(s.reserve_throttle("network", r(1)).await.unwrap());
        assert!(!s.reserve_throttle("network", r(1)).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_backup_code_used_twice_at_once_works_once() {
    for s in stores().await {
        let a = s
            .create_account(&new_account("c@example.org"), None, &mut ids(&["CC00001"]))
            .await
            .unwrap();
        s.replace_backup_codes(&a.id, &["only".to_owned()], 1).await.unwrap();
        let uses: Vec<_> = (0..8)
            .map(|i| {
                let (s, account) = (s.clone(), a.id.clone());
                tokio::spawn(async move {
                    let id = format!("race-{i}");
                    s.insert_session(&pending_session(&id, &account), &format!("h-{i}"), None, &[])
                        .await
                        .unwrap();
                    let proof = SecondStepProof::BackupCode {
                        account_id: account.clone(),
                        digest: "only".into(),
                    };
                    let event = sign_in_event(&format!("e-{i}"), &account);
                    s.complete_second_step(&SessionId::new(id.as_str()), &format!("n-{i}"), 5, &event, &proof)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut successes = 0;
        for u in uses {
            successes += usize::from(u.await.unwrap());
        }
        assert_eq!(successes, 1);
    }
}

#[tokio::test]
async fn application_passwords() {
    for s in stores().await {
        let a = s
            .create_account(&new_account("ap@example.org"), None, &mut ids(&["AP00001"]))
            .await
            .unwrap();
        let password = AppPassword {
            id: AppPasswordId::new("p1"),
            account_id: a.id.clone(),
            name: "NAS QNAP".into(),
            created_at: 5,
            last_used_at: 0,
            last_used_ip: String::new(),
        };
        s.insert_app_password(&password, "digest-1").await.unwrap();
        let listed = s.app_passwords(&a.id).await.unwrap();
        assert_eq!(listed, vec![(password.clone(), "digest-1".to_owned())]);
        s.touch_app_password(&AppPasswordId::new("p1"), 99, "192.0.2.4")
            .await
            .unwrap();
        let touched = &s.app_passwords(&a.id).await.unwrap()[0].0;
        assert_eq!((touched.last_used_at, touched.last_used_ip.as_str()), (99, "192.0.2.4"));
        assert_eq!(
            s.delete_app_password(&AccountId::new("other"), &AppPasswordId::new("p1"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s.delete_app_password(&a.id, &AppPasswordId::new("p1"))
                .await
                .unwrap()
                .as_deref(),
            Some("NAS QNAP")
        );
        assert!(s.app_passwords(&a.id).await.unwrap().is_empty());
        assert_eq!(
            s.account_by_sync_user_id(&SyncUserId::parse("AP00001").unwrap())
                .await
                .unwrap()
                .unwrap()
                .id,
            a.id
        );
    }
}
