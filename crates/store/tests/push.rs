//! Push approval through the identity service over the real SQL store,
//! with time injected: expiry, the fatigue windows, and the device's
//! signature rules, on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use identity::{
    Account, ApprovalRequestId, ApprovalStatus, ClientInfo, DeviceError, DeviceProof, Identity, IdentityConfig,
    ManualClock, PasswordHasher, PushError, PushOutcome, PushState, Role, ServerKey, Session, SignIn, answer_extra,
    device_message,
};
use store::{Engine, SqlStore};

const PASSWORD: &str = "violet tractor sunrise 42";
const START: i64 = 1_800_000_000_000;
const MINUTE: i64 = 60_000;

struct World {
    identity: Identity,
    clock: ManualClock,
    device: SigningKey,
    method_id: identity::FactorId,
}

fn client() -> ClientInfo {
    ClientInfo {
        ip: "192.0.2.10".parse().unwrap(),
        user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into(),
    }
}

async fn worlds() -> Vec<(Engine, World)> {
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
        let (account, _) = identity
            .create_account("ana@example.org", "Ana", PASSWORD, Some(("Acme", Role::User)))
            .await
            .unwrap();
        let link = identity.begin_authenticator(&account, "Phone").await.unwrap();
        let device = SigningKey::generate(&mut rand::rngs::OsRng);
        let public_key = URL_SAFE_NO_PAD.encode(device.verifying_key().to_bytes());
        let linked = identity
            .link_authenticator(&link.token, &public_key, &client())
            .await
            .unwrap();
        out.push((
            engine,
            World {
                identity,
                clock,
                device,
                method_id: linked.method_id,
            },
        ));
    }
    out
}

impl World {
    /// A fresh half-signed-in session.
    async fn password_step(&self) -> (Session, Account) {
        let signed = self
            .identity
            .sign_in(SignIn {
                email: "ana@example.org".into(),
                password: PASSWORD.into(),
                remember: false,
                client: client(),
                device: None,
            })
            .await
            .unwrap();
        assert!(signed.second_factor.is_some());
        (signed.session, signed.account)
    }

    fn proof(&self, purpose: &str, extra: &str) -> DeviceProof {
        let timestamp = self.identity.now();
        let message = device_message(purpose, self.method_id.as_str(), timestamp, extra);
        DeviceProof {
            method_id: self.method_id.clone(),
            timestamp,
            signature: URL_SAFE_NO_PAD.encode(self.device.sign(message.as_bytes()).to_bytes()),
        }
    }

    async fn answer(&self, id: &ApprovalRequestId, number: u8, approve: bool) -> Result<ApprovalStatus, DeviceError> {
        let proof = self.proof("answer", &answer_extra(id.as_str(), number, approve));
        self.identity.answer_push(&proof, id, number, approve, &client()).await
    }
}

#[tokio::test]
async fn requests_expire_after_two_minutes() {
    for (engine, w) in worlds().await {
        let (session, account) = w.password_step().await;
        let request = w.identity.begin_push(&session, &account, &client()).await.unwrap();
        let open = w
            .identity
            .device_requests(&w.proof("poll", ""), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(open.len(), 1, "{engine:?}");
        assert_eq!(open[0].browser, "Firefox on Linux");
        assert!(open[0].numbers.contains(&request.number));

        w.clock.advance(2 * MINUTE);
        let (_, state) = w.identity.push_state(&request.id).await.unwrap().unwrap();
        assert_eq!(state, PushState::Expired);
        assert!(
            w.identity
                .device_requests(&w.proof("poll", ""), Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        let late = w.answer(&request.id, request.number, true).await;
        assert!(matches!(late, Err(DeviceError::Closed("expired"))), "{late:?}");
        let outcome = w
            .identity
            .finish_push(&session, &account, &request.id, None, &client())
            .await
            .unwrap();
        assert!(matches!(outcome, PushOutcome::Expired));
        // The session may send another request.
        let again = w.identity.begin_push(&session, &account, &client()).await.unwrap();
        assert_ne!(again.id, request.id);
    }
}

#[tokio::test]
async fn the_fatigue_windows_lift_with_time() {
    for (_, w) in worlds().await {
        for _ in 0..3 {
            let (session, account) = w.password_step().await;
            w.identity.begin_push(&session, &account, &client()).await.unwrap();
        }
        let (session, account) = w.password_step().await;
        let refused = w.identity.begin_push(&session, &account, &client()).await;
        assert!(
            matches!(refused, Err(PushError::TooManyRequests { retry_after }) if retry_after == 10 * MINUTE),
            "{refused:?}"
        );
        w.clock.advance(10 * MINUTE);
        let (session, account) = w.password_step().await;
        let a = w.identity.begin_push(&session, &account, &client()).await.unwrap();
        w.answer(&a.id, a.number, false).await.unwrap();
        let (session, account) = w.password_step().await;
        let b = w.identity.begin_push(&session, &account, &client()).await.unwrap();
        let wrong = if b.number == 99 { 98 } else { b.number + 1 };
        assert_eq!(w.answer(&b.id, wrong, true).await.unwrap(), ApprovalStatus::WrongNumber);
        let (session, account) = w.password_step().await;
        let paused = w.identity.begin_push(&session, &account, &client()).await;
        assert!(
            matches!(paused, Err(PushError::Paused { retry_after }) if retry_after == 15 * MINUTE),
            "{paused:?}"
        );
        assert!(w.identity.push_paused_until(&account.id).await.unwrap().is_some());
        w.clock.advance(15 * MINUTE);
        let c = w.identity.begin_push(&session, &account, &client()).await.unwrap();
        assert_eq!(w.answer(&c.id, c.number, true).await.unwrap(), ApprovalStatus::Approved);
        let signed = w
            .identity
            .finish_push(&session, &account, &c.id, None, &client())
            .await
            .unwrap();
        assert!(matches!(signed, PushOutcome::SignedIn(_)));
    }
}

#[tokio::test]
async fn only_the_device_key_signs_and_only_for_a_while() {
    for (_, w) in worlds().await {
        let (session, account) = w.password_step().await;
        let request = w.identity.begin_push(&session, &account, &client()).await.unwrap();

        // Another key.
        let stranger = SigningKey::generate(&mut rand::rngs::OsRng);
        let extra = answer_extra(request.id.as_str(), request.number, true);
        let mut forged = w.proof("answer", &extra);
        let message = device_message("answer", w.method_id.as_str(), forged.timestamp, &extra);
        forged.signature = URL_SAFE_NO_PAD.encode(stranger.sign(message.as_bytes()).to_bytes());
        let r = w
            .identity
            .answer_push(&forged, &request.id, request.number, true, &client())
            .await;
        assert!(matches!(r, Err(DeviceError::BadSignature)), "{r:?}");

        // A signature over a deny, replayed as an approval.
        let deny = w.proof("answer", &answer_extra(request.id.as_str(), request.number, false));
        let r = w
            .identity
            .answer_push(&deny, &request.id, request.number, true, &client())
            .await;
        assert!(matches!(r, Err(DeviceError::BadSignature)), "{r:?}");

        // A poll signature is not an answer.
        let poll = w.proof("poll", "");
        let r = w
            .identity
            .answer_push(&poll, &request.id, request.number, true, &client())
            .await;
        assert!(matches!(r, Err(DeviceError::BadSignature)), "{r:?}");

        // Garbage.
        let mut garbage = w.proof("poll", "");
        garbage.signature = "not base64 at all!".into();
        let r = w.identity.device_requests(&garbage, Duration::ZERO).await;
        assert!(matches!(r, Err(DeviceError::BadSignature)), "{r:?}");

        // A signature made six minutes ago.
        let stale = w.proof("answer", &extra);
        w.clock.advance(6 * MINUTE);
        let r = w
            .identity
            .answer_push(&stale, &request.id, request.number, true, &client())
            .await;
        assert!(matches!(r, Err(DeviceError::ClockSkew)), "{r:?}");

        // Timestamps at the ends of the range: refused, not an overflow.
        for timestamp in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let mut extreme = w.proof("poll", "");
            extreme.timestamp = timestamp;
            let r = w.identity.device_requests(&extreme, Duration::ZERO).await;
            assert!(matches!(r, Err(DeviceError::ClockSkew)), "{timestamp}: {r:?}");
        }

        // An unknown method is a revoked device.
        let mut unknown = w.proof("poll", "");
        unknown.method_id = identity::FactorId::new("nope");
        let r = w.identity.device_requests(&unknown, Duration::ZERO).await;
        assert!(matches!(r, Err(DeviceError::Revoked)), "{r:?}");
    }
}

#[tokio::test]
async fn a_waiting_poll_wakes_when_a_request_arrives() {
    for (_, w) in worlds().await {
        let identity = w.identity.clone();
        let proof = w.proof("poll", "");
        let waiting = tokio::spawn(async move { identity.device_requests(&proof, Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (session, account) = w.password_step().await;
        let request = w.identity.begin_push(&session, &account, &client()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the poll returns")
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, request.id);

        let identity = w.identity.clone();
        let id = request.id.clone();
        let watcher = tokio::spawn(async move { identity.wait_push_state(&id, Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        w.answer(&request.id, request.number, true).await.unwrap();
        let state = tokio::time::timeout(Duration::from_secs(10), watcher)
            .await
            .expect("the watcher returns")
            .unwrap()
            .unwrap();
        assert_eq!(state, Some(PushState::Approved));
    }
}
