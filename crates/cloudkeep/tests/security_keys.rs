//! Security keys (WebAuthn), black-box, on SQLite and PostgreSQL, with a
//! software FIDO2 authenticator (webauthn-authenticator-rs's soft token)
//! playing the key and the browser's WebAuthn client.

mod common;

use common::*;
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};

fn origin(server: &Server) -> Url {
    // WebAuthn needs a domain: the browser would be on localhost.
    Url::parse(&format!("http://localhost:{}", server.addr.rsplit(':').next().unwrap())).unwrap()
}

async fn post(client: &reqwest::Client, url: String, body: serde_json::Value) -> (u16, serde_json::Value) {
    json(client.post(url).json(&body).send().await.unwrap()).await
}

/// Registers `token` as a security key named `name`; returns the answer.
async fn register(server: &Server, member: &reqwest::Client, token: &mut SoftToken, name: &str) -> serde_json::Value {
    let (status, begin) = post(
        member,
        server.url("/api/v1/me/two-factor/security-keys"),
        serde_json::json!({"name": name}),
    )
    .await;
    assert_eq!(status, 200, "{begin}");
    let options: CreationChallengeResponse = serde_json::from_value(begin["public_key"].clone()).unwrap();
    let credential = token
        .do_registration(origin(server), options)
        .expect("the soft token registers");
    let url = server.url(&format!(
        "/api/v1/me/two-factor/security-keys/{}",
        begin["id"].as_str().unwrap()
    ));
    let (status, body) = post(member, url, serde_json::json!({"credential": credential})).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Password step, then the key; returns the second step's answer.
async fn sign_in_with_key(server: &Server, token: &mut SoftToken) -> (reqwest::Client, u16, serde_json::Value) {
    let c = browser();
    api_password_step(server, &c).await;
    let (status, challenge) = api_second_step_json(server, &c, serde_json::json!({"method": "security_key"})).await;
    assert_eq!(
        (status, challenge["status"].as_str()),
        (200, Some("challenge")),
        "{challenge}"
    );
    let options: RequestChallengeResponse = serde_json::from_value(challenge["public_key"].clone()).unwrap();
    let credential = token
        .do_authentication(origin(server), options)
        .expect("the soft token signs");
    let (status, body) = api_second_step_json(
        server,
        &c,
        serde_json::json!({"method": "security_key", "credential": credential}),
    )
    .await;
    (c, status, body)
}

async fn api_second_step_json(
    server: &Server,
    client: &reqwest::Client,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    post(client, server.url("/api/v1/session/second-factor"), body).await
}

#[tokio::test]
async fn enrol_a_security_key_and_sign_in_by_touching_it() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let (mut key, _) = SoftToken::new(true).unwrap();
        let answer = register(&server, &member, &mut key, "YubiKey 5").await;
        assert_eq!(
            answer["backup_codes"].as_array().unwrap().len(),
            10,
            "the first method turns 2FA on"
        );
        let (mut spare, _) = SoftToken::new(true).unwrap();
        assert_eq!(
            register(&server, &member, &mut spare, "Spare key").await,
            serde_json::json!({})
        );
        let (_, s) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        let kinds: Vec<&str> = s["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["security_key", "security_key"]);

        let (c, status, body) = sign_in_with_key(&server, &mut key).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("signed_in")), "{body}");
        assert_eq!(c.get(server.url("/api/v1/me")).send().await.unwrap().status(), 200);
        let (_, status, _) = sign_in_with_key(&server, &mut spare).await;
        assert_eq!(status, 200, "either key works");

        // A key the account does not know is refused.
        let (mut stranger, _) = SoftToken::new(true).unwrap();
        let c = browser();
        api_password_step(&server, &c).await;
        let (_, challenge) = api_second_step_json(&server, &c, serde_json::json!({"method": "security_key"})).await;
        let options: RequestChallengeResponse = serde_json::from_value(challenge["public_key"].clone()).unwrap();
        assert!(
            stranger.do_authentication(origin(&server), options).is_err(),
            "no credential for this account"
        );
        let (status, body) = api_second_step_json(
            &server,
            &c,
            serde_json::json!({"method": "security_key", "credential": {"id": "x", "rawId": "eA", "type": "public-key", "response": {}}}),
        )
        .await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_code")));
    }
}

#[tokio::test]
async fn a_cloned_key_whose_counter_goes_back_is_refused_and_logged() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let (mut key, _) = SoftToken::new(true).unwrap();
        register(&server, &member, &mut key, "YubiKey").await;
        // A copy of the key as it is now...
        let mut clone = SoftToken::from_cbor(&key.to_cbor().unwrap()).unwrap();
        // ...then the real key is used, moving its counter on.
        let (_, status, _) = sign_in_with_key(&server, &mut key).await;
        assert_eq!(status, 200);
        let (_, status, body) = sign_in_with_key(&server, &mut clone).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("invalid_code")),
            "{body}"
        );
        let (_, events) = json(
            member
                .get(server.url("/api/v1/me/events?limit=100"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let kinds: Vec<&str> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"security_key_cloned"), "{kinds:?}");
        let (_, status, _) = sign_in_with_key(&server, &mut key).await;
        assert_eq!(status, 200, "the real key still works");
    }
}
