//! Two-step verification and application passwords, black-box, on SQLite
//! and PostgreSQL. TOTP codes come from `oathtool`, computed from the
//! secret the API hands out.

mod common;

use common::*;

#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn enrol_totp_then_sign_in_with_password_and_code() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let (_, status) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        assert_eq!(
            status,
            serde_json::json!({"enabled": false, "methods": [], "backup_codes_remaining": 0})
        );

        let (code, e) = json(
            member
                .post(server.url("/api/v1/me/two-factor/totp"))
                .json(&serde_json::json!({"name": "Phone"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(code, 200);
        let secret = e["secret"].as_str().unwrap();
        assert_eq!(secret.len(), 32, "160 bits in base32");
        let uri = e["otpauth_uri"].as_str().unwrap();
        assert!(
            uri.starts_with("otpauth://totp/cloudkeep:ana@example.org?") && uri.contains(&format!("secret={secret}"))
        );
        assert!(uri.contains("issuer=cloudkeep") && uri.contains("digits=6") && uri.contains("period=30"));
        assert!(e["qr_svg"].as_str().unwrap().starts_with("<svg"));
        let Some(right) = oathtool(secret, 0) else { return };
        let confirm = server.url(&format!(
            "/api/v1/me/two-factor/totp/{}/confirm",
            e["id"].as_str().unwrap()
        ));
        let wrong = if right == "000000" { "111111" } else { "000000" };
        let (status, body) = json(
            member
                .post(&confirm)
                .json(&serde_json::json!({"code": wrong}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_code")));
        let (status, body) = json(
            member
                .post(&confirm)
                .json(&serde_json::json!({"code": right}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        let codes: Vec<&str> = body["backup_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes.iter().collect::<std::collections::HashSet<_>>().len(), 10);

        let (_, status) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        assert_eq!(
            (status["enabled"].as_bool(), status["backup_codes_remaining"].as_u64()),
            (Some(true), Some(10))
        );
        assert_eq!(
            (
                status["methods"][0]["name"].as_str(),
                status["methods"][0]["kind"].as_str()
            ),
            (Some("Phone"), Some("totp"))
        );

        // A new sign-in now needs the second step.
        let laptop = browser();
        let answer = api_password_step(&server, &laptop).await;
        assert_eq!(answer["status"], "second_factor_required");
        assert_eq!(answer["default_method"], "totp");
        assert_eq!(answer["methods"][0]["name"], "Phone");
        let (status, body) = json(laptop.get(server.url("/api/v1/me")).send().await.unwrap()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("second_factor_required"))
        );
        // The enrolment used this step; the next one is accepted, once.
        let next = oathtool(secret, 1).unwrap();
        let (status, body) = api_second_step(&server, &laptop, "totp", &next).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("signed_in")), "{body}");
        assert_eq!(laptop.get(server.url("/api/v1/me")).send().await.unwrap().status(), 200);
        let (status, _) = api_second_step(&server, &laptop, "totp", &next).await;
        assert_eq!(status, 409, "already signed in");

        let replay = browser();
        api_password_step(&server, &replay).await;
        let (status, body) = api_second_step(&server, &replay, "totp", &next).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("code_reused")),
            "a replayed code"
        );
        // It cost no attempt: the wrong codes still allowed are all there.
        let (status, body) = api_second_step(&server, &replay, "totp", "000000").await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_code")));
        assert!(
            body["error"]["message"].as_str().unwrap().contains("4 attempts left"),
            "{body}"
        );

        // A second app: no new backup codes.
        let (_, e) = json(
            member
                .post(server.url("/api/v1/me/two-factor/totp"))
                .json(&serde_json::json!({"name": "Tablet"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let code = oathtool(e["secret"].as_str().unwrap(), 0).unwrap();
        let url = server.url(&format!(
            "/api/v1/me/two-factor/totp/{}/confirm",
            e["id"].as_str().unwrap()
        ));
        let (status, body) = json(
            member
                .post(&url)
                .json(&serde_json::json!({"code": code}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, body), (200, serde_json::json!({})));
        let (_, events) = json(member.get(server.url("/api/v1/me/events")).send().await.unwrap()).await;
        let kinds: Vec<&str> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"two_factor_enabled") && kinds.iter().filter(|k| **k == "second_factor_added").count() == 2
        );
    }
}

#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn wrong_codes_restart_the_sign_in_and_then_lock_the_account() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let Some((secret, _)) = enable_totp(&server, &member).await else {
            return;
        };
        let right = oathtool(&secret, 1).unwrap();
        let wrong = if right == "123456" { "654321" } else { "123456" };

        let c = browser();
        api_password_step(&server, &c).await;
        for left in (1..5).rev() {
            let (status, body) = api_second_step(&server, &c, "totp", wrong).await;
            assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_code")));
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("{left} attempts left"))
            );
        }
        let (status, body) = api_second_step(&server, &c, "totp", wrong).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("second_factor_restart"))
        );
        let (status, body) = api_second_step(&server, &c, "totp", &right).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("not_signed_in")),
            "the password step again"
        );

        api_password_step(&server, &c).await;
        let (status, _) = api_second_step(&server, &c, "totp", wrong).await;
        assert_eq!(status, 401);
        let r = c
            .post(server.url("/api/v1/session/second-factor"))
            .json(&serde_json::json!({"method": "totp", "code": right}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "the sixth wrong code locks the second step");
        assert!(r.headers().contains_key("retry-after"));
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
        assert_eq!(
            kinds.iter().filter(|k| **k == "second_factor_failed").count(),
            6,
            "{kinds:?}"
        );
        assert!(kinds.contains(&"second_factor_locked"));
    }
}

#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn backup_codes_work_once_even_at_the_same_moment() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let Some((_, codes)) = enable_totp(&server, &member).await else {
            return;
        };

        let typed = codes[0].to_uppercase().replace('-', " ");
        let c = browser();
        api_password_step(&server, &c).await;
        let (status, _) = api_second_step(&server, &c, "backup_code", &typed).await;
        assert_eq!(status, 200);
        let (_, s) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        assert_eq!(s["backup_codes_remaining"], 9);
        let again = browser();
        api_password_step(&server, &again).await;
        let (status, _) = api_second_step(&server, &again, "backup_code", &codes[0]).await;
        assert_eq!(status, 401, "a used code");

        // Two sign-ins racing with one code: exactly one gets in.
        let (a, b) = (browser(), browser());
        api_password_step(&server, &a).await;
        api_password_step(&server, &b).await;
        let (ra, rb) = tokio::join!(
            api_second_step(&server, &a, "backup_code", &codes[1]),
            api_second_step(&server, &b, "backup_code", &codes[1])
        );
        let wins = [ra.0, rb.0].iter().filter(|s| **s == 200).count();
        assert_eq!(wins, 1, "{ra:?} {rb:?}");

        // Regenerating: password needed; old codes stop at once.
        let post = |body: serde_json::Value| {
            member
                .post(server.url("/api/v1/me/two-factor/backup-codes"))
                .json(&body)
                .send()
        };
        let (status, body) = json(post(serde_json::json!({"password": "wrong wrong"})).await.unwrap()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("wrong_password")));
        let (status, body) = json(post(serde_json::json!({"password": PASSWORD})).await.unwrap()).await;
        assert_eq!(status, 200);
        let fresh: Vec<String> = body["backup_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        let old = browser();
        api_password_step(&server, &old).await;
        let (status, _) = api_second_step(&server, &old, "backup_code", &codes[2]).await;
        assert_eq!(status, 401, "an old code after regeneration");
        let (status, _) = api_second_step(&server, &old, "backup_code", &fresh[0]).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn removing_the_last_method_turns_two_factor_off() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let Some(_) = enable_totp(&server, &member).await else {
            return;
        };
        let (_, s) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        let id = s["methods"][0]["id"].as_str().unwrap();
        let url = server.url(&format!("/api/v1/me/two-factor/methods/{id}"));
        let (status, body) = json(
            member
                .delete(&url)
                .json(&serde_json::json!({"password": "wrong wrong"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("wrong_password")));
        // The password from sign-in (under five minutes ago) is enough.
        assert_eq!(member.delete(&url).send().await.unwrap().status(), 204);
        assert_eq!(member.delete(&url).send().await.unwrap().status(), 404);
        let (_, s) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        assert_eq!(
            s,
            serde_json::json!({"enabled": false, "methods": [], "backup_codes_remaining": 0})
        );
        let c = browser();
        assert_eq!(api_password_step(&server, &c).await["status"], "signed_in");
        let r = member
            .post(server.url("/api/v1/me/two-factor/backup-codes"))
            .json(&serde_json::json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(json(r).await.1["error"]["code"], "two_factor_off");
        let (_, events) = json(member.get(server.url("/api/v1/me/events")).send().await.unwrap()).await;
        let kinds: Vec<&str> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"two_factor_disabled") && kinds.contains(&"second_factor_removed"));
    }
}

/// Routes a half-signed-in session may use.
fn open_to_a_half_signed_in_session(method: &str, path: &str) -> bool {
    matches!(
        (method, path),
        ("post" | "POST", "/api/v1/session")
            | ("delete", "/api/v1/session")
            | ("post", "/api/v1/session/second-factor" | "/api/v1/authenticator/link")
            // An invitation's link works without a session.
            | ("post", "/api/v1/invitations/{token}/accept")
            // The waiting sign-in's own request; the app's signed calls.
            | ("get", "/api/v1/session/second-factor/authenticator/{request_id}")
            | (
                "post",
                "/api/v1/authenticator/requests" | "/api/v1/authenticator/requests/{request_id}/answer"
            )
            | ("get", "/api/v1/openapi.json" | "/healthz" | "/readyz" | "/metrics")
            | (
                "GET" | "POST",
                "/signin"
                    | "/signin/second-factor"
                    | "/signin/second-factor/authenticator/{id}"
                    | "/setup/{token}"
                    | "/invitations/{token}"
            )
            | ("POST", "/signout" | "/language")
            | (
                "GET",
                "/static/console.css"
                    | "/static/print.js"
                    | "/static/webauthn.js"
                    | "/static/push.js"
                    | "/static/favicon.svg"
                    | "/static/manifest.webmanifest"
            )
    )
}

#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn a_half_signed_in_session_reaches_nothing_else() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let Some(_) = enable_totp(&server, &member).await else {
            return;
        };
        let (_, before) = json(member.get(server.url("/api/v1/me/app-passwords")).send().await.unwrap()).await;

        let half = browser();
        assert_eq!(
            api_password_step(&server, &half).await["status"],
            "second_factor_required"
        );
        let page = half
            .get(server.url("/signin/second-factor"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = csrf_of(&page);

        // Every API route, from the generated document.
        let (_, doc) = json(half.get(server.url("/api/v1/openapi.json")).send().await.unwrap()).await;
        let mut walked = 0;
        for (path, methods) in doc["paths"].as_object().unwrap() {
            for method in methods.as_object().unwrap().keys() {
                if open_to_a_half_signed_in_session(method, path) {
                    continue;
                }
                let url = server.url(
                    &path
                        .replace("{id}", "x")
                        .replace("{drive}", "123456")
                        .replace("{*path}", "x"),
                );
                let r = half
                    .request(method.to_uppercase().parse().unwrap(), url)
                    .json(&serde_json::json!({"name": "x", "code": "123456", "password": PASSWORD}))
                    .send()
                    .await
                    .unwrap();
                let (status, body) = json(r).await;
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (401, Some("second_factor_required")),
                    "{method} {path}"
                );
                walked += 1;
            }
        }
        assert!(walked >= 12, "walked {walked} API routes");

        // Every console route, with a valid form token.
        for (method, path) in web::CONSOLE_ROUTES {
            if open_to_a_half_signed_in_session(method, path) {
                continue;
            }
            let url = server.url(
                &path
                    .replace("{id}", "x")
                    .replace("{drive}", "123456")
                    .replace("{*path}", "x"),
            );
            let form = [
                ("csrf", csrf.as_str()),
                ("name", "x"),
                ("password", PASSWORD),
                ("code", "123456"),
            ];
            let r = match *method {
                "GET" => half.get(url).send().await.unwrap(),
                _ => half.post(url).form(&form).send().await.unwrap(),
            };
            assert_eq!(r.status(), 303, "{method} {path}");
            assert_eq!(r.headers()["location"], "/signin/second-factor", "{method} {path}");
        }

        // Nothing changed behind the scenes.
        let (_, after) = json(member.get(server.url("/api/v1/me/app-passwords")).send().await.unwrap()).await;
        assert_eq!(before, after);
        let (_, s) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        assert_eq!(s["methods"].as_array().unwrap().len(), 1);
        // Signing out is allowed.
        assert_eq!(
            half.delete(server.url("/api/v1/session"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn application_passwords_are_made_listed_revoked_and_never_open_the_console() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let (status, created) = json(
            member
                .post(server.url("/api/v1/me/app-passwords"))
                .json(&serde_json::json!({"name": "NAS QNAP"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 201);
        let password = created["password"].as_str().unwrap();
        assert_eq!(password.len(), 34);
        assert!(
            password
                .split('-')
                .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_alphanumeric()))
        );
        let (status, body) = json(
            member
                .post(server.url("/api/v1/me/app-passwords"))
                .json(&serde_json::json!({"name": "  "}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_name")));

        let (_, list) = json(member.get(server.url("/api/v1/me/app-passwords")).send().await.unwrap()).await;
        let entry = &list["app_passwords"][0];
        assert_eq!(
            (entry["name"].as_str(), entry["last_used_at"].as_i64()),
            (Some("NAS QNAP"), Some(0))
        );
        assert!(
            entry.get("password").is_none() && entry.get("digest").is_none(),
            "never shown again"
        );

        // Not a console or API password.
        let r = reqwest::Client::new()
            .post(server.url("/api/v1/session"))
            .json(&serde_json::json!({"email": MEMBER, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(json(r).await.1["error"]["code"], "invalid_credentials");

        let url = server.url(&format!("/api/v1/me/app-passwords/{}", created["id"].as_str().unwrap()));
        assert_eq!(member.delete(&url).send().await.unwrap().status(), 204);
        assert_eq!(member.delete(&url).send().await.unwrap().status(), 404);
        let (_, events) = json(member.get(server.url("/api/v1/me/events")).send().await.unwrap()).await;
        assert_eq!(events["events"][0]["kind"], "app_password_revoked");
        assert_eq!(events["events"][0]["detail"], "NAS QNAP");
    }
}

/// Issue 24: in the console, a new application password is shown once on
/// a page a reload does not post again (and never in a URL); revoking it
/// asks first, naming it.
#[tokio::test]
async fn the_console_shows_a_new_application_password_once_and_asks_before_revoking() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let b = browser();
        api_sign_in(&server, &b, MEMBER, PASSWORD, false).await;
        let csrf = csrf_of(&page(&server, &b, "/security/app-passwords").await);
        let r = post_form(
            &server,
            &b,
            "/security/app-passwords",
            &[("csrf", csrf.as_str()), ("name", "NAS QNAP")],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers()["location"],
            "/security/app-passwords",
            "no secret in the URL"
        );
        let shown = page(&server, &b, "/security/app-passwords").await;
        assert!(
            shown.contains("The application password “NAS QNAP” was created."),
            "{shown}"
        );
        let password = shown
            .split("id=\"new-app-password\" class=\"secret big\">")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .unwrap()
            .to_owned();
        assert_eq!(password.len(), 34);
        let reload = page(&server, &b, "/security/app-passwords").await;
        assert!(
            !reload.contains(&password) && !reload.contains("new-app-password"),
            "shown once"
        );
        let (_, list) = json(b.get(server.url("/api/v1/me/app-passwords")).send().await.unwrap()).await;
        assert_eq!(list["app_passwords"].as_array().unwrap().len(), 1, "made once");
        let id = list["app_passwords"][0]["id"].as_str().unwrap().to_owned();

        let revoke = format!("/security/app-passwords/{id}/revoke");
        let asking = post_form(&server, &b, &revoke, &[("csrf", csrf.as_str())])
            .await
            .text()
            .await
            .unwrap();
        assert!(
            asking.contains("Programs that use “NAS QNAP” will be refused"),
            "{asking}"
        );
        let (_, list) = json(b.get(server.url("/api/v1/me/app-passwords")).send().await.unwrap()).await;
        assert_eq!(list["app_passwords"].as_array().unwrap().len(), 1, "not revoked yet");
        let r = post_form(&server, &b, &revoke, &[("csrf", csrf.as_str()), ("confirm", "yes")]).await;
        assert_eq!(r.headers()["location"], "/security/app-passwords");
        let (_, list) = json(b.get(server.url("/api/v1/me/app-passwords")).send().await.unwrap()).await;
        assert_eq!(list["app_passwords"].as_array().unwrap().len(), 0);
        assert!(
            page(&server, &b, "/security/app-passwords")
                .await
                .contains("was revoked")
        );
        // A reload or language switch at the form's address lands on the page.
        let r = b.get(server.url(&revoke)).send().await.unwrap();
        assert_eq!(r.headers()["location"], "/security/app-passwords");

        // Home: two-step verification off, with a nudge, and the sign-in.
        let home = page(&server, &b, "/").await;
        assert!(
            home.contains("id=\"two-factor-nudge\"") && home.contains("id=\"recent-sign-ins\""),
            "{home}"
        );
    }
}

/// Issue 24: removing the last method asks first (saying two-step
/// verification turns off); the backup codes are shown once, with the
/// account, server and date; signing in with a backup code says how many
/// are left; Home shows the methods.
#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn the_console_asks_before_turning_two_factor_off_and_counts_backup_codes() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let b = browser();
        api_sign_in(&server, &b, MEMBER, PASSWORD, false).await;
        let Some((_, codes)) = enable_totp(&server, &b).await else {
            return;
        };
        let home = page(&server, &b, "/").await;
        assert!(
            home.contains("Two-step verification is on.") && home.contains("Phone (") && home.contains("10 of 10"),
            "{home}"
        );

        // New codes: shown once, saying whose and where.
        let twofa = page(&server, &b, "/security/two-factor").await;
        let csrf = csrf_of(&twofa);
        let r = post_form(
            &server,
            &b,
            "/security/two-factor/backup-codes",
            &[("csrf", csrf.as_str()), ("password", PASSWORD)],
        )
        .await;
        assert_eq!(r.headers()["location"], "/security/two-factor/backup-codes");
        let shown = page(&server, &b, "/security/two-factor/backup-codes").await;
        assert!(shown.contains("id=\"backup-codes\""), "{shown}");
        assert!(
            shown.contains(&format!("Backup codes for {MEMBER} on {}, made ", server.base)),
            "{shown}"
        );
        let again = b
            .get(server.url("/security/two-factor/backup-codes"))
            .send()
            .await
            .unwrap();
        assert_eq!(again.headers()["location"], "/security/two-factor", "shown once");
        let fresh: Vec<String> = shown
            .split("<li><code>")
            .skip(1)
            .map(|rest| rest.split('<').next().unwrap().to_owned())
            .collect();
        assert_eq!(fresh.len(), 10);
        assert!(!fresh.contains(&codes[0]), "new codes");

        // Signing in with one says how many are left.
        let c = browser();
        let step = console_password_step(&server, &c).await;
        let r = c
            .post(server.url("/signin/second-factor"))
            .form(&[
                ("csrf", csrf_of(&step).as_str()),
                ("method", "backup_code"),
                ("code", fresh[0].as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], "/");
        let home = page(&server, &c, "/").await;
        assert!(
            home.contains("You signed in with a backup code. Backup codes left: 9."),
            "{home}"
        );

        // Removing the only method asks first and changes nothing until then.
        let (_, status) = json(b.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        let id = status["methods"][0]["id"].as_str().unwrap().to_owned();
        let remove = format!("/security/two-factor/methods/{id}/remove");
        let asking = post_form(&server, &b, &remove, &[("csrf", csrf.as_str())])
            .await
            .text()
            .await
            .unwrap();
        assert!(
            asking.contains("Turn two-step verification off") && asking.contains("is your last method"),
            "{asking}"
        );
        let (_, status) = json(b.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        assert_eq!(status["enabled"], true, "still on before the confirmation");
        let r = post_form(
            &server,
            &b,
            &remove,
            &[("csrf", csrf.as_str()), ("confirm", "yes"), ("password", PASSWORD)],
        )
        .await;
        assert_eq!(r.headers()["location"], "/security/two-factor");
        let (_, status) = json(b.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        assert_eq!(status["enabled"], false);
        let off = page(&server, &b, "/security/two-factor").await;
        assert!(off.contains("two-step verification is off and your backup codes were deleted"));
        assert!(
            !page(&server, &b, "/security/two-factor").await.contains("were deleted"),
            "said once"
        );
    }
}
