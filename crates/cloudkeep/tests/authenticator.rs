//! The companion app, black-box, on SQLite and PostgreSQL: the console's
//! link, the real `cloudkeep-authenticator` binary, and a sign-in with its
//! offline code.

mod common;

use common::*;

#[tokio::test]
async fn link_the_app_and_sign_in_with_its_offline_code() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let (status, created) = json(
            member
                .post(server.url("/api/v1/me/two-factor/authenticator"))
                .json(&serde_json::json!({"name": "Phone"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{created}");
        let link = created["link"].as_str().unwrap().to_owned();
        assert!(link.starts_with(&format!("{}/authenticator/", server.base)), "{link}");
        assert!(created["qr_svg"].as_str().unwrap().starts_with("<svg"));

        let state = store::testing::temp_dir("authenticator").join("state");
        let (ok, out, err) = app(&state, &["link", &link]);
        assert!(ok, "{err}");
        assert!(out.starts_with(&format!("linked {MEMBER} (")), "{out}");
        let codes: Vec<&str> = out.lines().filter(|l| l.starts_with("  ")).map(str::trim).collect();
        assert_eq!(
            codes.len(),
            10,
            "this turned 2FA on: the app shows the backup codes\n{out}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.join("accounts.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "owner-only state");
        }
        let (ok, _, err) = app(&state, &["link", &link]);
        assert!(
            !ok && err.contains("this link was used or has expired"),
            "single use: {err}"
        );

        let (ok, out, _) = app(&state, &["accounts"]);
        assert!(ok && out.starts_with(&format!("1. {MEMBER} (127.0.0.1:")), "{out}");
        let (_, s) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        assert_eq!(
            (s["enabled"].as_bool(), s["methods"][0]["kind"].as_str()),
            (Some(true), Some("authenticator"))
        );
        assert_eq!(s["methods"][0]["name"], "Phone");

        // The offline code signs in like a TOTP app's.
        let (ok, out, _) = app(&state, &["code", MEMBER]);
        assert!(ok, "{out}");
        let code = &out[..6];
        assert!(
            code.bytes().all(|b| b.is_ascii_digit()) && out.contains("s left)"),
            "{out}"
        );
        let c = browser();
        let answer = api_password_step(&server, &c).await;
        assert_eq!(answer["default_method"], "authenticator");
        let (status, body) = api_second_step(&server, &c, "totp", code).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("signed_in")), "{body}");

        let (ok, out, _) = app(&state, &["remove", "1"]);
        assert!(ok && out.contains("forgot"), "{out}");
        let (_, out, _) = app(&state, &["accounts"]);
        assert_eq!(out.trim(), "no linked accounts");
        let (ok, _, err) = app(&state, &["link", "https://example.org/not-a-link"]);
        assert!(!ok && err.contains("not a cloudkeep authenticator link"), "{err}");
    }
}

/// The console's link page: "I have linked the app" waits for the app,
/// then shows the backup codes that linking made, once.
#[tokio::test]
async fn the_console_shows_the_backup_codes_when_linking_turned_two_step_on() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let csrf = csrf_of(&page(&server, &member, "/security/two-factor").await);
        let linking = member
            .post(server.url("/security/two-factor/authenticator"))
            .form(&[("csrf", csrf.as_str()), ("name", "Phone")])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let link = linking
            .split("name=\"link\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        let action = linking
            .split("action=\"/security/two-factor/authenticator/")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(|rest| format!("/security/two-factor/authenticator/{rest}"))
            .unwrap();
        let press = || {
            member
                .post(server.url(&action))
                .form(&[("csrf", csrf.as_str()), ("link", link.as_str())])
                .send()
        };

        let early = press().await.unwrap().text().await.unwrap();
        assert!(
            early.contains("id=\"not-linked\"") && early.contains(&link),
            "the same link again"
        );

        let state = store::testing::temp_dir("authenticator").join("state");
        let (ok, out, err) = app(&state, &["link", &link]);
        assert!(ok, "{err}");
        let app_codes: Vec<&str> = out.lines().filter(|l| l.starts_with("  ")).map(str::trim).collect();
        let r = press().await.unwrap();
        assert_eq!(r.headers()["location"], "/security/two-factor/backup-codes");
        let shown = page(&server, &member, "/security/two-factor/backup-codes").await;
        assert!(shown.contains("id=\"backup-codes\""), "{shown}");
        // Shown once: a reload of that page does not show them again.
        let reload = member
            .get(server.url("/security/two-factor/backup-codes"))
            .send()
            .await
            .unwrap();
        assert_eq!(reload.headers()["location"], "/security/two-factor");
        for code in &app_codes {
            assert!(shown.contains(code), "the console shows the same codes as the app");
        }
        let again = press().await.unwrap();
        assert_eq!(again.headers()["location"], "/security/two-factor", "only once");

        // A link from elsewhere is not echoed back.
        let r = member
            .post(server.url(&action.replace("/linked", "x/linked")))
            .form(&[
                ("csrf", csrf.as_str()),
                ("link", "https://evil.example/authenticator/x"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], "/security/two-factor");
    }
}
