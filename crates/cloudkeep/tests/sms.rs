//! SMS codes, black-box, on SQLite and PostgreSQL, through both gateways:
//! `log` (the code is read from `<data>/outbox/sms.log`) and `http` (a
//! small HTTP receiver started by the test stands in for the provider).

mod common;

use common::*;
use std::sync::{Arc, Mutex};

fn last_logged_code(server: &Server) -> String {
    let log = std::fs::read_to_string(server.data.join("outbox/sms.log")).expect("the SMS outbox");
    let line = log.lines().last().expect("a message");
    line.split("message=").nth(1).unwrap()[..6].to_owned()
}

async fn post(client: &reqwest::Client, url: String, body: serde_json::Value) -> (u16, serde_json::Value) {
    json(client.post(url).json(&body).send().await.unwrap()).await
}

/// Enrols +41 79 123 45 67 for a signed-in client; `code` reads the code
/// that was sent.
async fn enrol(server: &Server, member: &reqwest::Client, code: impl Fn() -> String) -> String {
    let (status, e) = post(
        member,
        server.url("/api/v1/me/two-factor/sms"),
        serde_json::json!({"phone": "+41 79 123 45 67"}),
    )
    .await;
    assert_eq!((status, e["phone"].as_str()), (200, Some("+41 •••• 4567")), "{e}");
    let id = e["id"].as_str().unwrap().to_owned();
    let (status, body) = post(
        member,
        server.url(&format!("/api/v1/me/two-factor/sms/{id}/resend")),
        serde_json::json!({}),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("sms_too_soon")));
    let (status, body) = post(
        member,
        server.url(&format!("/api/v1/me/two-factor/sms/{id}/confirm")),
        serde_json::json!({"code": code()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backup_codes"].as_array().unwrap().len(), 10);
    id
}

async fn sign_in_with_sms(server: &Server, code: impl Fn() -> String) {
    let c = browser();
    let answer = api_password_step(server, &c).await;
    assert_eq!(
        (answer["status"].as_str(), answer["default_method"].as_str()),
        (Some("second_factor_required"), Some("sms"))
    );
    let (status, sent) = api_second_step(server, &c, "sms", "").await;
    assert_eq!(
        (status, sent["status"].as_str(), sent["phone"].as_str()),
        (200, Some("code_sent"), Some("+41 •••• 4567"))
    );
    let (status, body) = api_second_step(server, &c, "sms", &code()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("signed_in")), "{body}");
    assert_eq!(c.get(server.url("/api/v1/me")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn sms_codes_through_the_log_gateway() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let (status, body) = post(
            &member,
            server.url("/api/v1/me/two-factor/sms"),
            serde_json::json!({"phone": "+1 202 555 0143"}),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some("phone_country_not_allowed"))
        );
        assert!(body["error"]["message"].as_str().unwrap().contains("CH, FR, BE, DE"));
        let (status, body) = post(
            &member,
            server.url("/api/v1/me/two-factor/sms"),
            serde_json::json!({"phone": "0791234567"}),
        )
        .await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_phone")));

        enrol(&server, &member, || last_logged_code(&server)).await;
        let (_, s) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        assert_eq!(
            (s["methods"][0]["kind"].as_str(), s["methods"][0]["name"].as_str()),
            (Some("sms"), Some("+41 •••• 4567"))
        );
        sign_in_with_sms(&server, || last_logged_code(&server)).await;
        let log = std::fs::read_to_string(server.data.join("outbox/sms.log")).unwrap();
        assert!(log.lines().all(|l| l.starts_with("to=+41791234567 message=")));
        assert!(server.log().contains("SMS written to the outbox"));
    }
}

#[tokio::test]
async fn sms_codes_through_the_http_gateway() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");
        let failing = Arc::new(Mutex::new(false));
        let (base, received) = post_receiver(failing.clone()).await;
        let url = format!("{base}/sms");
        let env = [
            ("CLOUDKEEP_SMS_GATEWAY", "http"),
            ("CLOUDKEEP_SMS_URL", url.as_str()),
            ("CLOUDKEEP_SMS_TOKEN", "provider-token"),
        ];
        let server = Server::start_on(&storage, &env);
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let last_code = || {
            let received = received.lock().unwrap();
            let (path, auth, body) = received.last().expect("a POST").clone();
            assert_eq!(path, "/sms");
            assert_eq!(auth, "Bearer provider-token");
            assert_eq!(body["to"], "+41791234567");
            body["message"].as_str().unwrap()[..6].to_owned()
        };
        enrol(&server, &member, last_code).await;
        sign_in_with_sms(&server, last_code).await;
        assert!(
            !server.data.join("outbox/sms.log").exists(),
            "nothing in the log outbox"
        );

        // The provider fails: a clear error, nothing half-done.
        *failing.lock().unwrap() = true;
        let c = browser();
        api_password_step(&server, &c).await;
        let (status, body) = api_second_step(&server, &c, "sms", "").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (502, Some("sms_failed")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn the_allowed_countries_are_configurable() {
    let Some(storage) = Storage::new(Engine::Sqlite).await else {
        return;
    };
    storage.create_user(MEMBER, "user");
    let server = Server::start_on(&storage, &[("CLOUDKEEP_SMS_ALLOWED_COUNTRIES", "US,CA")]);
    let member = browser();
    api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
    let (status, body) = post(
        &member,
        server.url("/api/v1/me/two-factor/sms"),
        serde_json::json!({"phone": "+41 79 123 45 67"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("phone_country_not_allowed"))
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("US, CA"));
    let (status, _) = post(
        &member,
        server.url("/api/v1/me/two-factor/sms"),
        serde_json::json!({"phone": "+1 202 555 0143"}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn the_member_picks_the_method_offered_first() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let Some(_) = enable_totp(&server, &member).await else {
            return;
        };
        let (_, e) = post(
            &member,
            server.url("/api/v1/me/two-factor/sms"),
            serde_json::json!({"phone": "+49 151 23456789"}),
        )
        .await;
        let url = server.url(&format!(
            "/api/v1/me/two-factor/sms/{}/confirm",
            e["id"].as_str().unwrap()
        ));
        let (status, body) = post(&member, url, serde_json::json!({"code": last_logged_code(&server)})).await;
        assert_eq!(
            (status, body),
            (200, serde_json::json!({})),
            "2FA was already on: no new backup codes"
        );

        let put = |method: &str| {
            member
                .put(server.url("/api/v1/me/two-factor/default"))
                .json(&serde_json::json!({"method": method}))
                .send()
        };
        // The console's second step opens on the method the API offers first.
        let console_offers = |kind: &str| {
            let input = format!(r#"name="method" value="{kind}""#);
            let server = &server;
            async move { console_password_step(server, &browser()).await.contains(&input) }
        };
        assert_eq!(put("totp").await.unwrap().status(), 204);
        assert_eq!(api_password_step(&server, &browser()).await["default_method"], "totp");
        assert!(
            console_offers("totp").await,
            "the console offers the member's choice, TOTP"
        );
        let (_, s) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        assert_eq!(s["default_method"], "totp");
        assert_eq!(put("sms").await.unwrap().status(), 204);
        assert_eq!(api_password_step(&server, &browser()).await["default_method"], "sms");
        assert!(
            console_offers("sms").await,
            "the console offers the member's choice, SMS"
        );
        let (status, body) = json(put("pigeon").await.unwrap()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")));
    }
}

#[tokio::test]
async fn sms_in_the_console() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let b = browser();
        api_sign_in(&server, &b, MEMBER, PASSWORD, false).await;
        let page = b
            .get(server.url("/security/two-factor"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Only numbers of these countries are accepted: CH, FR, BE, DE."));
        let csrf = csrf_of(&page);
        let r = b
            .post(server.url("/security/two-factor/sms"))
            .form(&[("csrf", csrf.as_str()), ("phone", "+1 202 555 0143")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("SMS codes can be sent only to numbers of these countries: CH, FR, BE, DE.")
        );
        let page = b
            .post(server.url("/security/two-factor/sms"))
            .form(&[("csrf", csrf.as_str()), ("phone", "+41 79 123 45 67")])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("We sent a code by SMS to +41 •••• 4567."));
        let action = page
            .split("action=\"/security/two-factor/sms/")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let r = b
            .post(server.url(&format!("/security/two-factor/sms/{action}")))
            .form(&[("csrf", csrf.as_str()), ("code", &last_logged_code(&server))])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], "/security/two-factor/backup-codes");
        let page = b
            .get(server.url("/security/two-factor/backup-codes"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Two-step verification is now on.") && page.contains("id=\"backup-codes\""));

        // Sign in again: the SMS page sends a code, then takes it.
        let c = browser();
        let page = console_password_step(&server, &c).await;
        assert!(page.contains("Send a code by SMS"), "SMS is the default method here");
        let csrf = csrf_of(&page);
        let page = c
            .post(server.url("/signin/second-factor"))
            .form(&[("csrf", csrf.as_str()), ("method", "sms")])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("We sent a code by SMS to +41 •••• 4567."));
        let r = c
            .post(server.url("/signin/second-factor"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("method", "sms"),
                ("code", &last_logged_code(&server)),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], "/");
        let home = c.get(server.url("/")).send().await.unwrap().text().await.unwrap();
        assert!(home.contains("Welcome, Test Person"));
    }
}

/// Issue 24: a method added in the console does not silently become the
/// one offered first; the page says which one still is.
#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn a_method_added_in_the_console_keeps_the_default() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let b = browser();
        api_sign_in(&server, &b, MEMBER, PASSWORD, false).await;
        let Some(_) = enable_totp(&server, &b).await else {
            return;
        };
        let csrf = csrf_of(&page(&server, &b, "/security/two-factor").await);
        let enrolling = post_form(
            &server,
            &b,
            "/security/two-factor/sms",
            &[("csrf", csrf.as_str()), ("phone", "+41 79 123 45 67")],
        )
        .await
        .text()
        .await
        .unwrap();
        let action = enrolling
            .split("action=\"/security/two-factor/sms/")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let r = post_form(
            &server,
            &b,
            &format!("/security/two-factor/sms/{action}"),
            &[("csrf", csrf.as_str()), ("code", &last_logged_code(&server))],
        )
        .await;
        assert_eq!(r.headers()["location"], "/security/two-factor");
        let shown = page(&server, &b, "/security/two-factor").await;
        assert!(shown.contains("The method was added. Authenticator app"), "{shown}");
        let (_, s) = json(b.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        assert_eq!(
            (s["methods"].as_array().unwrap().len(), s["default_method"].as_str()),
            (2, Some("totp"))
        );
    }
}
