//! The organization two-step requirement through the identity service over
//! the real SQL store: who it stops and when, that protocol clients keep
//! working, and that caches follow changes.

use std::sync::Arc;

use identity::credential::totp::{TotpSecret, code_at_step, step_at};
use identity::{
    ClientInfo, EventKind, Identity, IdentityConfig, ManualClock, PasswordHasher, ProtocolAuthError, Role, ServerKey,
};
use store::{Engine, SqlStore};

const PASSWORD: &str = "violet tractor sunrise 42";
const START: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn client() -> ClientInfo {
    ClientInfo {
        ip: "192.0.2.10".parse().unwrap(),
        user_agent: "test".into(),
    }
}

#[tokio::test]
async fn the_requirement_stops_the_console_not_sync_clients_and_follows_the_grace_period() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let clock = ManualClock::at(START);
        let identity = Identity::new(
            Arc::new(SqlStore::open(&url).await.unwrap()),
            Arc::new(clock.clone()),
            PasswordHasher::owasp_minimum(),
            ServerKey::generate(),
            IdentityConfig::default(),
        );
        let org = identity.create_organization("Acme").await.unwrap();
        let (admin, _) = identity
            .create_account("admin@example.org", "Admin", PASSWORD, Some(("Acme", Role::Admin)))
            .await
            .unwrap();
        let (member, _) = identity
            .create_account("ana@example.org", "Ana", PASSWORD, Some(("Acme", Role::User)))
            .await
            .unwrap();
        let (_, app_password) = identity.create_app_password(&member, "NAS", &client()).await.unwrap();
        let e = identity.begin_totp(&admin, "Phone").await.unwrap();
        let secret = TotpSecret::from_bytes(data_encoding::BASE32_NOPAD.decode(e.secret.as_bytes()).unwrap());
        let code = code_at_step(&secret, step_at(START));
        identity.confirm_totp(&admin.id, &e.id, &code, &client()).await.unwrap();

        assert_eq!(identity.two_factor_requirement(&member).await.unwrap(), None);
        // The member also belongs to an organization that does not require it.
        let beta = identity.create_organization("Beta").await.unwrap();
        let (beta_admin, _) = identity
            .create_account("bo@example.org", "Bo", PASSWORD, Some(("Beta", Role::Admin)))
            .await
            .unwrap();
        let token = identity
            .invite(&beta_admin, &beta.id, "ana@example.org", Role::User, "http://localhost")
            .await
            .unwrap();
        identity.accept_invitation(&token, Some(&member), None).await.unwrap();
        identity.set_org_policy(&admin, &org.id, true, 2, true).await.unwrap();
        let warned = identity.two_factor_requirement(&member).await.unwrap().unwrap();
        assert_eq!(
            (warned.blocked, warned.deadline, warned.org_name.as_str()),
            (false, START + 2 * DAY, "Acme"),
            "one organization requiring it is enough"
        );
        assert_eq!(identity.two_factor_requirement(&admin).await.unwrap(), None);
        // Inside the grace period (its last millisecond), the account
        // password still signs in sync clients, and is remembered for ten
        // seconds.
        clock.advance(2 * DAY - 1);
        let ip = "192.0.2.20".parse().unwrap();
        let account = identity
            .authenticate_protocol_client("ana@example.org", PASSWORD, ip)
            .await
            .unwrap();
        assert_eq!(account.id, member.id);
        clock.advance(1);
        assert!(identity.two_factor_requirement(&member).await.unwrap().unwrap().blocked);

        // Sync and mail clients are not stopped: the application password
        // works; the account password no longer does (issue 21, item 4),
        // not even the entry remembered before the block.
        let account = identity
            .authenticate_protocol_client("ana@example.org", &app_password, ip)
            .await
            .unwrap();
        assert_eq!(account.id, member.id);
        let refused = identity
            .authenticate_protocol_client("ana@example.org", PASSWORD, ip)
            .await;
        assert!(
            matches!(&refused, Err(ProtocolAuthError::TwoFactorRequired { organization }) if organization == "Acme"),
            "{refused:?}"
        );
        let events = identity.events(&member.id, None, 50).await.unwrap().events;
        assert!(events.iter().any(|e| e.kind == EventKind::ProtocolPasswordBlocked));

        identity.set_org_policy(&admin, &org.id, false, 0, true).await.unwrap();
        assert_eq!(identity.two_factor_requirement(&member).await.unwrap(), None);
    }
}
