//! Organizations, black-box on SQLite and PostgreSQL: the members list
//! with two-step status, roles and the legal-representative rule,
//! invitations, security alerts, and requiring two-step verification of
//! every member (the block on console and API, what stays open, grace
//! period, enrolment lifting it, several processes).

mod common;

use common::*;

const LR: &str = "lr@example.org";
const ADMIN: &str = "admin@example.org";
const USER: &str = "user@example.org";
const EXTERNAL: &str = "ext@example.org";

/// Storage with organization "Acme" and one member of each role.
async fn acme(engine: Engine) -> Option<Storage> {
    let storage = Storage::new(engine).await?;
    let (ok, _, err) = storage.admin(&["org", "create", "--name", "Acme"], "");
    assert!(ok, "{err}");
    for (email, role) in [
        (LR, "legal-representative"),
        (ADMIN, "admin"),
        (USER, "user"),
        (EXTERNAL, "external"),
    ] {
        let args = [
            "user",
            "create",
            "--email",
            email,
            "--name",
            email.split('@').next().unwrap(),
            "--org",
            "Acme",
            "--role",
            role,
            "--password-stdin",
        ];
        let (ok, _, err) = storage.admin(&args, &format!("{PASSWORD}\n"));
        assert!(ok, "{err}");
    }
    Some(storage)
}

/// A signed-in client for `email` and the id of its first organization.
async fn member(server: &Server, email: &str) -> (reqwest::Client, String) {
    let c = browser();
    api_sign_in(server, &c, email, PASSWORD, false).await;
    let (_, me) = json(c.get(server.url("/api/v1/me")).send().await.unwrap()).await;
    (c, me["organizations"][0]["id"].as_str().unwrap().to_owned())
}

async fn call(
    c: &reqwest::Client,
    method: &str,
    url: String,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = c.request(method.parse().unwrap(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// `PATCH` a member's role; (status, error code).
async fn patch_role(c: &reqwest::Client, url: String, role: &str) -> (u16, Option<String>) {
    let (status, body) = call(c, "PATCH", url, Some(serde_json::json!({"role": role}))).await;
    (status, body["error"]["code"].as_str().map(str::to_owned))
}

async fn member_id(server: &Server, c: &reqwest::Client, org: &str, email: &str) -> String {
    let (_, list) = call(c, "GET", server.url(&format!("/api/v1/orgs/{org}/members")), None).await;
    list["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == email)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn the_members_list_shows_who_lacks_two_step_verification() {
    for engine in ENGINES {
        let Some(storage) = acme(engine).await else {
            continue;
        };
        let server = Server::start_on(&storage, &[]);
        let (lr, org) = member(&server, LR).await;
        let url = server.url(&format!("/api/v1/orgs/{org}/members"));
        let (status, list) = call(&lr, "GET", url.clone(), None).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["organization"], "Acme");
        assert_eq!(list["counts"]["total"], 4);
        assert_eq!(list["counts"]["without_two_factor"], 4);

        let (user, _) = member(&server, USER).await;
        let Some(_) = enable_totp(&server, &user).await else {
            return;
        };
        let (_, list) = call(&lr, "GET", url.clone(), None).await;
        assert_eq!(
            (
                list["counts"]["with_two_factor"].as_u64(),
                list["counts"]["percent"].as_u64()
            ),
            (Some(1), Some(25))
        );
        let (_, without) = call(&lr, "GET", format!("{url}?two_factor=disabled"), None).await;
        let emails: Vec<&str> = without["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["email"].as_str().unwrap())
            .collect();
        assert_eq!(emails, [ADMIN, EXTERNAL, LR]);
        let (_, with) = call(&lr, "GET", format!("{url}?two_factor=enabled"), None).await;
        assert_eq!(with["members"][0]["email"], USER);
        assert_eq!(with["members"][0]["methods"], 1);
        assert!(with["members"][0]["last_sign_in"].as_i64().unwrap() > 0);

        // Plain members do not see the list.
        let (status, body) = call(&user, "GET", url, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("not_allowed")));

        // The console page: counts, the chart, and the marker for screen readers.
        let page = page(&server, &lr, &format!("/orgs/{org}/members")).await;
        assert!(page.contains("<svg") && page.contains("25%"), "{page}");
        assert!(page.contains("class=\"no-2fa\""));
        assert!(page.contains("Without two-step verification"));
    }
}

#[tokio::test]
async fn roles_change_but_a_legal_representative_always_remains() {
    for engine in ENGINES {
        let Some(storage) = acme(engine).await else {
            continue;
        };
        let server = Server::start_on(&storage, &[]);
        let (lr, org) = member(&server, LR).await;
        let (admin, _) = member(&server, ADMIN).await;
        let user_id = member_id(&server, &lr, &org, USER).await;
        let lr_id = member_id(&server, &lr, &org, LR).await;
        let admin_id = member_id(&server, &lr, &org, ADMIN).await;
        let member_url = |id: &str| server.url(&format!("/api/v1/orgs/{org}/members/{id}"));

        assert_eq!(
            patch_role(&admin, member_url(&user_id), "legal-representative").await.0,
            403,
            "only a legal representative names one"
        );
        assert_eq!(patch_role(&admin, member_url(&user_id), "admin").await.0, 200);
        let last = (409, Some("last_legal_representative".to_owned()));
        assert_eq!(patch_role(&lr, member_url(&lr_id), "admin").await, last);
        let (status, body) = call(&lr, "DELETE", member_url(&lr_id), None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (409, last.1.as_deref()));
        assert_eq!(
            patch_role(&lr, member_url(&admin_id), "legal-representative").await.0,
            200
        );
        assert_eq!(
            patch_role(&lr, member_url(&lr_id), "user").await.0,
            200,
            "two legal representatives: one may step down"
        );
        let (status, _) = call(&admin, "DELETE", member_url(&user_id), None).await;
        assert_eq!(status, 200);
        assert_eq!(patch_role(&admin, member_url(&user_id), "user").await.0, 404, "removed");
        assert_eq!(
            patch_role(&admin, member_url(&lr_id), "boss").await,
            (422, Some("invalid_role".to_owned()))
        );

        // An external member leaves by themselves; others cannot.
        let (ext, _) = member(&server, EXTERNAL).await;
        let (status, _) = call(&ext, "POST", server.url(&format!("/api/v1/orgs/{org}/leave")), None).await;
        assert_eq!(status, 200);
        let (status, _) = call(&lr, "POST", server.url(&format!("/api/v1/orgs/{org}/leave")), None).await;
        assert_eq!(status, 403);

        let (_, log) = call(&admin, "GET", server.url(&format!("/api/v1/orgs/{org}/events")), None).await;
        let kinds: Vec<&str> = log["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        for kind in ["role_changed", "member_removed", "member_left"] {
            assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
        }
    }
}

#[tokio::test]
async fn invitations_create_an_account_or_add_an_existing_one() {
    for engine in ENGINES {
        let Some(storage) = acme(engine).await else {
            continue;
        };
        storage.create_user("bo@example.org", "user");
        let server = Server::start_on(&storage, &[]);
        let (lr, org) = member(&server, LR).await;
        let invite = |email: &str, role: &str| {
            call(
                &lr,
                "POST",
                server.url(&format!("/api/v1/orgs/{org}/invitations")),
                Some(serde_json::json!({"email": email, "role": role})),
            )
        };
        let (status, created) = invite("New.Person@example.org", "user").await;
        assert_eq!(status, 201, "{created}");
        let link = created["link"].as_str().unwrap().to_owned();
        let token = link.rsplit('/').next().unwrap().to_owned();
        let mail = outbox_message(&server, "Join Acme").await;
        assert!(mail.contains(&token[..20]), "the email carries the link");

        // A new account, from the link.
        let newcomer = browser();
        let accept = server.url(&format!("/api/v1/invitations/{token}/accept"));
        let (status, body) = call(
            &newcomer,
            "POST",
            accept.clone(),
            Some(serde_json::json!({"name": "New", "password": "quiet harbor lantern 9"})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["email"], "new.person@example.org");
        let (status, body) = call(
            &newcomer,
            "POST",
            accept,
            Some(serde_json::json!({"name": "New", "password": "quiet harbor lantern 9"})),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (410, Some("invitation_unavailable"))
        );
        api_sign_in(
            &server,
            &newcomer,
            "new.person@example.org",
            "quiet harbor lantern 9",
            false,
        )
        .await;

        // An existing account joins while signed in as itself, not as another.
        let (status, created) = invite("bo@example.org", "external").await;
        assert_eq!(status, 201);
        let token = created["link"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
        let accept = server.url(&format!("/api/v1/invitations/{token}/accept"));
        let (status, body) = call(&newcomer, "POST", accept.clone(), None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("wrong_invitee")));
        let bo = browser();
        api_sign_in(&server, &bo, "bo@example.org", PASSWORD, false).await;
        let (status, _) = call(&bo, "POST", accept, None).await;
        assert_eq!(status, 200);

        let (_, list) = call(&lr, "GET", server.url(&format!("/api/v1/orgs/{org}/members")), None).await;
        assert_eq!(list["counts"]["total"], 6);
        let (status, body) = invite("bo@example.org", "user").await;
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("already_member")));
        let (status, _) = invite("not an email", "user").await;
        assert_eq!(status, 422);
        let (user, _) = member(&server, USER).await;
        let (status, _) = call(
            &user,
            "POST",
            server.url(&format!("/api/v1/orgs/{org}/invitations")),
            Some(serde_json::json!({"email": "x@example.org", "role": "user"})),
        )
        .await;
        assert_eq!(status, 403);
    }
}

#[tokio::test]
async fn security_alerts_reach_members_at_most_daily() {
    for engine in ENGINES {
        let Some(storage) = acme(engine).await else {
            continue;
        };
        let server = Server::start_on(&storage, &[]);
        let (lr, org) = member(&server, LR).await;
        let user_id = member_id(&server, &lr, &org, USER).await;
        let alert = server.url(&format!("/api/v1/orgs/{org}/members/{user_id}/security-alert"));
        let (status, _) = call(&lr, "POST", alert.clone(), None).await;
        assert_eq!(status, 200);
        let mail = outbox_message(&server, "Your account's security settings").await;
        assert!(
            mail.contains("Two-step verification: off") && mail.contains("/security/two-factor"),
            "{mail}"
        );
        let (status, body) = call(&lr, "POST", alert, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (429, Some("alert_too_soon")));
        let (status, body) = call(
            &lr,
            "POST",
            server.url(&format!("/api/v1/orgs/{org}/security-alerts")),
            Some(serde_json::json!({"filter": "two_factor_disabled"})),
        )
        .await;
        assert_eq!(
            (status, body["sent"].as_u64()),
            (200, Some(3)),
            "everyone without 2FA but the one just alerted"
        );
    }
}

#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn requiring_two_step_verification_stops_members_without_it_until_they_enrol() {
    for engine in ENGINES {
        let Some(storage) = acme(engine).await else {
            continue;
        };
        let server = Server::start_on(&storage, &[]);
        let (admin, org) = member(&server, ADMIN).await;
        let (user, _) = member(&server, USER).await;
        let policy = server.url(&format!("/api/v1/orgs/{org}/security-policy"));
        let on = serde_json::json!({"require_two_factor": true, "grace_days": 0, "confirm": true});

        let (status, body) = call(&admin, "PUT", policy.clone(), Some(on.clone())).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("two_factor_required_for_you")),
            "no lock-out of the admin"
        );
        let (status, _) = call(&user, "PUT", policy.clone(), Some(on.clone())).await;
        assert_eq!(status, 403, "plain members cannot");
        let Some(_) = enable_totp(&server, &admin).await else {
            return;
        };
        let (status, body) = call(
            &admin,
            "PUT",
            policy.clone(),
            Some(serde_json::json!({"require_two_factor": true})),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("confirmation_required"))
        );
        let (status, body) = call(&admin, "PUT", policy.clone(), Some(on.clone())).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["require_two_factor"], true);
        outbox_message(&server, "two-step verification requirement changed").await;

        // The member without 2FA: every API route but enrolment answers 403.
        let (status, body) = call(&user, "GET", server.url("/api/v1/me/app-passwords"), None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("two_factor_enrollment_required"))
        );
        assert!(body["error"]["message"].as_str().unwrap().contains("Acme"));
        let (_, doc) = json(user.get(server.url("/api/v1/openapi.json")).send().await.unwrap()).await;
        let mut walked = 0;
        for (path, methods) in doc["paths"].as_object().unwrap() {
            for method in methods.as_object().unwrap().keys() {
                let open = path.starts_with("/api/v1/me/two-factor")
                    || (method == "get" && path == "/api/v1/me")
                    || path.ends_with("/leave")
                    || !path.starts_with("/api/v1/me") && !path.starts_with("/api/v1/orgs");
                if open {
                    continue;
                }
                let url = server.url(
                    &path
                        .replace("{org}", &org)
                        .replace("{id}", "x")
                        .replace("{member}", "x"),
                );
                let (status, body) = call(&user, &method.to_uppercase(), url, Some(serde_json::json!({}))).await;
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (403, Some("two_factor_enrollment_required")),
                    "{method} {path}"
                );
                walked += 1;
            }
        }
        assert!(walked >= 15, "walked {walked}");
        let (status, _) = call(&user, "GET", server.url("/api/v1/me"), None).await;
        assert_eq!(status, 200);
        // The console sends every page to enrolment, which says why.
        let csrf = csrf_of(&page(&server, &user, "/security/two-factor").await);
        let mut walked = 0;
        for (method, path) in web::CONSOLE_ROUTES {
            let public =
                path.starts_with("/setup/") || path.starts_with("/invitations/") || path.starts_with("/signin");
            if public || web::console_open_while_blocked(path) {
                continue;
            }
            let url = server.url(
                &path
                    .replace("{org}", &org)
                    .replace("{id}", "x")
                    .replace("{member}", "x")
                    .replace("{drive}", "123456")
                    .replace("{*path}", "x"),
            );
            let r = match *method {
                "GET" => user.get(url).send().await.unwrap(),
                _ => user.post(url).form(&[("csrf", csrf.as_str())]).send().await.unwrap(),
            };
            assert_eq!(r.status(), 303, "{method} {path}");
            assert_eq!(r.headers()["location"], "/security/two-factor", "{method} {path}");
            walked += 1;
        }
        assert!(walked >= 15, "walked {walked} console routes");
        let enrol = page(&server, &user, "/security/two-factor").await;
        assert!(
            enrol.contains("Acme requires two-step verification (required by admin@example.org)"),
            "{enrol}"
        );

        // An external member may leave instead; the enrolment page offers it.
        let (ext, _) = member(&server, EXTERNAL).await;
        let enrol = page(&server, &ext, "/security/two-factor").await;
        assert!(enrol.contains(&format!("action=\"/orgs/{org}/leave\"")), "{enrol}");
        assert!(
            !page(&server, &user, "/security/two-factor")
                .await
                .contains("id=\"leave-instead\"")
        );
        let (status, _) = call(&ext, "GET", server.url("/api/v1/me/sessions"), None).await;
        assert_eq!(status, 403);
        let (status, _) = call(&ext, "POST", server.url(&format!("/api/v1/orgs/{org}/leave")), None).await;
        assert_eq!(status, 200);
        let (status, _) = call(&ext, "GET", server.url("/api/v1/me/sessions"), None).await;
        assert_eq!(status, 200, "no longer in an organization that requires it");

        // Enrolling lifts the block at once.
        let Some(_) = enable_totp(&server, &user).await else {
            return;
        };
        let (status, _) = call(&user, "GET", server.url("/api/v1/me/app-passwords"), None).await;
        assert_eq!(status, 200);

        // A grace period: warned, not stopped, until the deadline.
        let (status, body) = call(
            &admin,
            "PUT",
            policy.clone(),
            Some(serde_json::json!({"require_two_factor": true, "grace_days": 7, "confirm": true})),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["grace_days"], 7);
        let (lr, _) = member(&server, LR).await;
        let (status, _) = call(&lr, "GET", server.url("/api/v1/me/sessions"), None).await;
        assert_eq!(status, 200, "inside the grace period");
        let home = page(&server, &lr, "/").await;
        assert!(
            home.contains("requires two-step verification from"),
            "the deadline is shown"
        );

        let (status, _) = call(
            &admin,
            "PUT",
            policy,
            Some(serde_json::json!({"require_two_factor": false, "confirm": true})),
        )
        .await;
        assert_eq!(status, 200);
        let (_, log) = call(&admin, "GET", server.url(&format!("/api/v1/orgs/{org}/events")), None).await;
        let kinds: Vec<&str> = log["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"two_factor_required") && kinds.contains(&"two_factor_not_required"));
    }
}

/// The policy is cached per process; a change on one process reaches a
/// member signed in through another at once (LISTEN/NOTIFY).
#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn a_policy_change_reaches_every_process() {
    let Some(storage) = acme(Engine::Postgres).await else {
        return;
    };
    let one = Server::start_on(&storage, &[]);
    let two = Server::start_on(&storage, &[]);
    let (admin, org) = member(&one, ADMIN).await;
    let (user, _) = member(&two, USER).await;
    let (status, _) = call(&user, "GET", two.url("/api/v1/me/sessions"), None).await;
    assert_eq!(status, 200, "warms process two's cache");
    let Some(_) = enable_totp(&one, &admin).await else {
        return;
    };
    let (status, _) = call(
        &admin,
        "PUT",
        one.url(&format!("/api/v1/orgs/{org}/security-policy")),
        Some(serde_json::json!({"require_two_factor": true, "confirm": true})),
    )
    .await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    loop {
        let (status, _) = call(&user, "GET", two.url("/api/v1/me/sessions"), None).await;
        if status == 403 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "process two never heard of the change"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The console: the switch asks for confirmation before it acts, and an
/// invitation link creates the account from its page.
#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn the_console_confirms_the_switch_and_takes_invitations() {
    for engine in ENGINES {
        let Some(storage) = acme(engine).await else {
            continue;
        };
        let server = Server::start_on(&storage, &[]);
        let (admin, org) = member(&server, ADMIN).await;
        let Some(_) = enable_totp(&server, &admin).await else {
            return;
        };
        let security = format!("/orgs/{org}/security");
        let csrf = csrf_of(&page(&server, &admin, &security).await);
        let first = admin
            .post(server.url(&security))
            .form(&[("csrf", csrf.as_str()), ("require", "1"), ("grace_days", "0")])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            first.contains("role=\"alertdialog\"") && first.contains("id=\"confirm-policy\""),
            "asks first"
        );
        let (_, policy) = call(
            &admin,
            "GET",
            server.url(&format!("/api/v1/orgs/{org}/security-policy")),
            None,
        )
        .await;
        assert_eq!(
            policy["require_two_factor"], false,
            "nothing changed before the confirmation"
        );
        let r = admin
            .post(server.url(&security))
            .form(&[
                ("csrf", csrf.as_str()),
                ("require", "1"),
                ("grace_days", "0"),
                ("confirm", "1"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], security.as_str());
        let after = page(&server, &admin, &security).await;
        assert!(after.contains("is required for every member") && after.contains("Two-step verification required"));

        // An invitation from the console, accepted on its page by someone new.
        let members = format!("/orgs/{org}/members");
        admin
            .post(server.url(&format!("/orgs/{org}/invitations")))
            .form(&[
                ("csrf", csrf.as_str()),
                ("email", "new@example.org"),
                ("role", "external"),
            ])
            .send()
            .await
            .unwrap();
        let mail = outbox_message(&server, "Join Acme").await;
        let link = mail
            .split_whitespace()
            .find(|w| w.contains("/invitations/"))
            .unwrap()
            .trim_end_matches(|c: char| !c.is_alphanumeric())
            .to_owned();
        let path = &link[link.find("/invitations/").unwrap()..];
        let guest = browser();
        let invitation = page(&server, &guest, path).await;
        assert!(
            invitation.contains("invites new@example.org to join Acme as External member"),
            "{invitation}"
        );
        let r = guest
            .post(server.url(path))
            .form(&[
                ("csrf", csrf_of(&invitation).as_str()),
                ("name", "New Person"),
                ("password", "quiet harbor lantern 9"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], "/signin");
        let signin = page(&server, &guest, "/signin").await;
        assert!(
            signin.contains("You joined Acme. Sign in with your new password."),
            "{signin}"
        );
        assert!(signin.contains("value=\"new@example.org\""), "the email is filled in");
        assert!(
            !page(&server, &guest, "/signin").await.contains("You joined"),
            "said once"
        );
        let list = page(&server, &admin, &members).await;
        assert!(list.contains("new@example.org") && list.contains("class=\"no-2fa\""));
    }
}

/// Issue 21, item 4: with "require two-step verification" on (no grace),
/// a member without it is refused by the API and the console, and so must
/// be their account password over WebDAV (it listed and wrote the drive);
/// application passwords keep working, as the help center promises tools.
#[tokio::test]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn a_two_step_requirement_refuses_the_account_password_over_webdav_not_app_passwords() {
    for engine in ENGINES {
        let Some(storage) = acme(engine).await else {
            continue;
        };
        let (ok, out, err) = storage.admin(&["drive", "create", "--org", "Acme", "--name", "Shared"], "");
        assert!(ok, "{err}");
        let drive: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .unwrap()
            .parse()
            .unwrap();
        let server = Server::start_on(&storage, &[]);
        let (admin, org) = member(&server, ADMIN).await;
        let (user, _) = member(&server, USER).await;
        let (status, made) = call(
            &user,
            "POST",
            server.url("/api/v1/me/app-passwords"),
            Some(serde_json::json!({"name": "NAS"})),
        )
        .await;
        assert_eq!(status, 201, "{made}");
        let app_password = made["password"].as_str().unwrap().to_owned();
        let dav = reqwest::Client::new();
        let list = |secret: &str| {
            dav.request(
                "PROPFIND".parse().unwrap(),
                server.url(&format!("/dav/drives/{drive}/")),
            )
            .basic_auth(USER, Some(secret))
            .header("Depth", "1")
            .send()
        };
        let put = |secret: &str, name: &str| {
            dav.put(server.url(&format!("/dav/drives/{drive}/{name}")))
                .basic_auth(USER, Some(secret))
                .body("hello")
                .send()
        };
        assert_eq!(
            list(PASSWORD).await.unwrap().status().as_u16(),
            207,
            "no requirement yet"
        );

        let Some(_) = enable_totp(&server, &admin).await else {
            return;
        };
        let on = serde_json::json!({"require_two_factor": true, "grace_days": 0, "confirm": true});
        let policy = server.url(&format!("/api/v1/orgs/{org}/security-policy"));
        let (status, body) = call(&admin, "PUT", policy, Some(on)).await;
        assert_eq!(status, 200, "{body}");

        // The account password: refused, saying why and what to use.
        for response in [
            list(PASSWORD).await.unwrap(),
            put(PASSWORD, "by-password.txt").await.unwrap(),
        ] {
            assert_eq!(response.status().as_u16(), 401);
            assert!(response.headers().contains_key("www-authenticate"));
            let reason = response.text().await.unwrap();
            assert!(
                reason.contains("Acme requires two-step verification") && reason.contains("application password"),
                "{reason}"
            );
        }
        // An application password: the tools keep working.
        assert_eq!(list(&app_password).await.unwrap().status().as_u16(), 207);
        assert_eq!(put(&app_password, "by-app.txt").await.unwrap().status().as_u16(), 201);
        let listing = list(&app_password).await.unwrap().text().await.unwrap();
        assert!(listing.contains("by-app.txt") && !listing.contains("by-password.txt"));

        // The refusal is in the member's security activity (readable once
        // they enrol, which lifts the block).
        let Some(_) = enable_totp(&server, &user).await else {
            return;
        };
        let (status, log) = call(&user, "GET", server.url("/api/v1/me/events"), None).await;
        assert_eq!(status, 200, "{log}");
        let blocked: Vec<_> = log["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "protocol_password_blocked")
            .collect();
        assert_eq!(blocked.len(), 2, "{log}");
        assert_eq!(blocked[0]["detail"], "Acme");
    }
}

/// Issue 24: removing a member, the bulk alert and leaving ask first,
/// naming who and what; nothing happens before the confirmation; after
/// it, the page a reload shows says so once and does nothing again.
#[tokio::test]
async fn removing_alerting_and_leaving_ask_first_and_a_reload_repeats_nothing() {
    for engine in ENGINES {
        let Some(storage) = acme(engine).await else {
            continue;
        };
        let server = Server::start_on(&storage, &[]);
        let (admin, org) = member(&server, ADMIN).await;
        let members = format!("/orgs/{org}/members");
        let csrf = csrf_of(&page(&server, &admin, &members).await);
        let user_id = member_id(&server, &admin, &org, USER).await;
        let remove = format!("/orgs/{org}/members/{user_id}/remove");

        let r = post_form(&server, &admin, &remove, &[("csrf", csrf.as_str())]).await;
        assert_eq!(r.status(), 200);
        let asking = r.text().await.unwrap();
        assert!(
            asking.contains("user (user@example.org) will be removed from Acme")
                && asking.contains("name=\"confirm\" value=\"yes\""),
            "{asking}"
        );
        assert!(page(&server, &admin, &members).await.contains(USER), "not removed yet");
        let r = post_form(&server, &admin, &remove, &[("csrf", csrf.as_str()), ("confirm", "yes")]).await;
        assert_eq!(
            (r.status().as_u16(), r.headers()["location"].to_str().unwrap()),
            (303, members.as_str())
        );
        let after = page(&server, &admin, &members).await;
        assert!(
            after.contains("The member was removed.") && !after.contains(USER),
            "{after}"
        );
        let reload = page(&server, &admin, &members).await;
        assert!(!reload.contains("The member was removed."), "said once");
        // A language switch on that page lands on it, not on a 405.
        let r = admin.get(server.url(&remove)).send().await.unwrap();
        assert_eq!(
            (r.status().as_u16(), r.headers()["location"].to_str().unwrap()),
            (303, members.as_str())
        );

        // The bulk alert: asks, naming how many; sends only when confirmed.
        let events = || async {
            let (_, e) = call(&admin, "GET", server.url(&format!("/api/v1/orgs/{org}/events")), None).await;
            e.to_string().matches("security_alert_sent").count()
        };
        let alerts = format!("/orgs/{org}/alerts");
        let asking = post_form(&server, &admin, &alerts, &[("csrf", csrf.as_str())])
            .await
            .text()
            .await
            .unwrap();
        assert!(
            asking.contains("Each member of Acme without two-step verification") && asking.contains(": 3."),
            "{asking}"
        );
        assert_eq!(events().await, 0, "nothing sent before the confirmation");
        let r = post_form(&server, &admin, &alerts, &[("csrf", csrf.as_str()), ("confirm", "yes")]).await;
        let landed = r.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(landed, format!("{members}?filter=without"));
        let sent = events().await;
        assert!(sent >= 1);
        let shown = page(&server, &admin, &landed).await;
        assert!(shown.contains("The security alert was sent to 3 members."), "{shown}");
        let reload = page(&server, &admin, &landed).await;
        assert!(!reload.contains("was sent to"));
        assert_eq!(events().await, sent, "a reload sends nothing");

        // Leaving: asks, naming the organization; stays until confirmed.
        let (ext, _) = member(&server, EXTERNAL).await;
        let home = page(&server, &ext, "/").await;
        let ext_csrf = csrf_of(&home);
        let leave = format!("/orgs/{org}/leave");
        let asking = post_form(&server, &ext, &leave, &[("csrf", ext_csrf.as_str())])
            .await
            .text()
            .await
            .unwrap();
        assert!(asking.contains("You will leave Acme"), "{asking}");
        assert!(page(&server, &ext, "/").await.contains("Acme"), "still a member");
        let r = post_form(
            &server,
            &ext,
            &leave,
            &[("csrf", ext_csrf.as_str()), ("confirm", "yes")],
        )
        .await;
        assert_eq!(r.headers()["location"], "/");
        let home = page(&server, &ext, "/").await;
        assert!(home.contains("You left Acme."), "{home}");
        assert!(!page(&server, &ext, "/").await.contains("You left Acme."), "said once");
    }
}

/// Issue 24: the pending invitations of an organization, in the console
/// and the API: listed, sent again with a new link (the old one stops
/// working), withdrawn.
#[tokio::test]
async fn pending_invitations_are_listed_resent_and_withdrawn() {
    for engine in ENGINES {
        let Some(storage) = acme(engine).await else {
            continue;
        };
        // Another organization with an admin of its own.
        let (ok, _, err) = storage.admin(&["org", "create", "--name", "Globex"], "");
        assert!(ok, "{err}");
        let globex_admin = [
            "user",
            "create",
            "--email",
            "g@example.org",
            "--name",
            "G",
            "--org",
            "Globex",
            "--role",
            "admin",
            "--password-stdin",
        ];
        let (ok, _, err) = storage.admin(&globex_admin, &format!("{PASSWORD}\n"));
        assert!(ok, "{err}");
        let server = Server::start_on(&storage, &[]);
        let (admin, org) = member(&server, ADMIN).await;
        let list_url = server.url(&format!("/api/v1/orgs/{org}/invitations"));
        let (status, made) = call(
            &admin,
            "POST",
            list_url.clone(),
            Some(serde_json::json!({"email": "guest@example.org", "role": "external"})),
        )
        .await;
        assert_eq!(status, 201, "{made}");
        let first_link = made["link"].as_str().unwrap().to_owned();
        let (status, list) = call(&admin, "GET", list_url.clone(), None).await;
        assert_eq!(status, 200, "{list}");
        let pending = list["invitations"].as_array().unwrap();
        assert_eq!(pending.len(), 1, "{list}");
        assert_eq!(
            (
                pending[0]["email"].as_str(),
                pending[0]["role"].as_str(),
                pending[0]["invited_by"].as_str()
            ),
            (Some("guest@example.org"), Some("external"), Some(ADMIN))
        );
        let id = pending[0]["id"].as_str().unwrap().to_owned();
        assert!(!first_link.contains(&id), "the id is not the link's token");

        // A plain member sees none of it.
        let (user, _) = member(&server, USER).await;
        let (status, _) = call(&user, "GET", list_url.clone(), None).await;
        assert_eq!(status, 403);

        // Another organization's admin can neither see nor touch it, on
        // this organization's routes or with the id on their own.
        let (other, globex) = member(&server, "g@example.org").await;
        assert_ne!(globex, org);
        let (status, _) = call(&other, "GET", list_url.clone(), None).await;
        assert_eq!(status, 404, "to a non-member the organization does not exist");
        for (method, action) in [("DELETE", ""), ("POST", "/resend")] {
            for on in [&org, &globex] {
                let url = server.url(&format!("/api/v1/orgs/{on}/invitations/{id}{action}"));
                let (status, body) = call(&other, method, url, None).await;
                assert!(
                    [403, 404].contains(&status),
                    "{method} {action} on {on}: {status} {body}"
                );
            }
        }
        let (_, list) = call(&admin, "GET", list_url.clone(), None).await;
        assert_eq!(
            list["invitations"][0]["id"].as_str(),
            Some(id.as_str()),
            "still pending"
        );

        // The console lists it; sending again gives a new link.
        let members = format!("/orgs/{org}/members");
        let listing = page(&server, &admin, &members).await;
        assert!(listing.contains("id=\"pending-invitations\"") && listing.contains("guest@example.org"));
        let csrf = csrf_of(&listing);
        let r = post_form(
            &server,
            &admin,
            &format!("/orgs/{org}/invitations/{id}/resend"),
            &[("csrf", csrf.as_str())],
        )
        .await;
        assert_eq!(r.headers()["location"], members.as_str());
        let shown = page(&server, &admin, &members).await;
        assert!(shown.contains("sent again with a new link"), "{shown}");
        let old_path = &first_link[first_link.find("/invitations/").unwrap()..];
        assert_eq!(browser().get(server.url(old_path)).send().await.unwrap().status(), 410);
        let (_, list) = call(&admin, "GET", list_url.clone(), None).await;
        let pending = list["invitations"].as_array().unwrap();
        assert_eq!(pending.len(), 1, "{list}");
        let new_id = pending[0]["id"].as_str().unwrap().to_owned();
        assert_ne!(new_id, id);

        // Through the API too, then withdrawn.
        let (status, again) = call(
            &admin,
            "POST",
            server.url(&format!("/api/v1/orgs/{org}/invitations/{new_id}/resend")),
            None,
        )
        .await;
        assert_eq!(status, 200, "{again}");
        let link = again["link"].as_str().unwrap().to_owned();
        let path = &link[link.find("/invitations/").unwrap()..];
        assert_eq!(browser().get(server.url(path)).send().await.unwrap().status(), 200);
        let (_, list) = call(&admin, "GET", list_url.clone(), None).await;
        let latest = list["invitations"][0]["id"].as_str().unwrap().to_owned();
        let (status, _) = call(
            &admin,
            "DELETE",
            server.url(&format!("/api/v1/orgs/{org}/invitations/{latest}")),
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(browser().get(server.url(path)).send().await.unwrap().status(), 410);
        let (_, list) = call(&admin, "GET", list_url.clone(), None).await;
        assert_eq!(list["invitations"].as_array().unwrap().len(), 0, "{list}");
        let (status, _) = call(
            &admin,
            "DELETE",
            server.url(&format!("/api/v1/orgs/{org}/invitations/{latest}")),
            None,
        )
        .await;
        assert_eq!(status, 404);

        // Withdrawn from the console.
        call(
            &admin,
            "POST",
            list_url.clone(),
            Some(serde_json::json!({"email": "later@example.org", "role": "user"})),
        )
        .await;
        let (_, list) = call(&admin, "GET", list_url.clone(), None).await;
        let id = list["invitations"][0]["id"].as_str().unwrap().to_owned();
        let r = post_form(
            &server,
            &admin,
            &format!("/orgs/{org}/invitations/{id}/revoke"),
            &[("csrf", csrf.as_str())],
        )
        .await;
        assert_eq!(r.headers()["location"], members.as_str());
        let shown = page(&server, &admin, &members).await;
        assert!(
            shown.contains("The invitation was withdrawn") && shown.contains("id=\"no-pending\""),
            "{shown}"
        );
        let (_, events) = call(&admin, "GET", server.url(&format!("/api/v1/orgs/{org}/events")), None).await;
        assert!(events.to_string().contains("invitation_revoked"), "{events}");
    }
}

/// The operator's command line lists an organization's pending
/// invitations and withdraws one.
#[tokio::test]
async fn the_command_line_lists_and_withdraws_invitations() {
    for engine in ENGINES {
        let Some(storage) = acme(engine).await else {
            continue;
        };
        let server = Server::start_on(&storage, &[]);
        let (admin, org) = member(&server, ADMIN).await;
        let (status, made) = call(
            &admin,
            "POST",
            server.url(&format!("/api/v1/orgs/{org}/invitations")),
            Some(serde_json::json!({"email": "cli@example.org", "role": "user"})),
        )
        .await;
        assert_eq!(status, 201, "{made}");
        let (ok, out, err) = storage.admin(&["org", "invitations", "--org", "Acme"], "");
        assert!(
            ok && out.contains("cli@example.org  user  invited by admin@example.org"),
            "{out}{err}"
        );
        let id = out.split_whitespace().next().unwrap().to_owned();
        let (ok, _, err) = storage.admin(&["org", "invitations", "--org", "Acme", "--revoke", "nope"], "");
        assert!(!ok && err.contains("no pending invitation with id nope"), "{err}");
        let (ok, out, err) = storage.admin(&["org", "invitations", "--org", "Acme", "--revoke", &id], "");
        assert!(
            ok && out.contains("invitation withdrawn") && !out.contains("cli@example.org"),
            "{out}{err}"
        );
        let link = made["link"].as_str().unwrap();
        let path = &link[link.find("/invitations/").unwrap()..];
        assert_eq!(browser().get(server.url(path)).send().await.unwrap().status(), 410);
    }
}
