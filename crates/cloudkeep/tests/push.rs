//! Push approval with number matching, black-box on SQLite and PostgreSQL:
//! the real server, the real `cloudkeep-authenticator` answering, a
//! browser-like client waiting over server-sent events, the console's
//! waiting page, fatigue limits, revocation, the webhook push provider,
//! linking from the device, and two server processes on one PostgreSQL.

mod common;

use std::time::Duration;

use common::*;

/// Asks for a push approval at the second step: (request id, number).
async fn push(server: &Server, client: &reqwest::Client) -> (String, u8) {
    let (status, body) = api_second_step(server, client, "authenticator", "").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")), "{body}");
    (
        body["request_id"].as_str().unwrap().to_owned(),
        u8::try_from(body["number"].as_u64().unwrap()).unwrap(),
    )
}

async fn push_status(server: &Server, client: &reqwest::Client, id: &str) -> (u16, serde_json::Value) {
    json(client.get(status_url(server, id)).send().await.unwrap()).await
}

fn status_url(server: &Server, id: &str) -> String {
    server.url(&format!("/api/v1/session/second-factor/authenticator/{id}"))
}

/// The `status` events of the request's stream, until it ends.
async fn events(server: &Server, client: &reqwest::Client, id: &str) -> Vec<String> {
    let text = event_stream(client, status_url(server, id)).await;
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The request's events, followed in the background.
fn events_in_background(server: &Server, client: &reqwest::Client, id: &str) -> tokio::task::JoinHandle<String> {
    let (url, client) = (status_url(server, id), client.clone());
    tokio::spawn(async move { event_stream(&client, url).await })
}

/// A number of the three that is not `number`.
/// A console sign-in now waiting for the phone: the page's CSRF token and
/// the waiting page's address.
async fn console_waiting(server: &Server, client: &reqwest::Client) -> (String, String) {
    let page = console_password_step(server, client).await;
    let csrf = csrf_of(&page);
    let fields = [("csrf", csrf.as_str()), ("method", "authenticator"), ("code", "")];
    let r = post_form(server, client, "/signin/second-factor", &fields).await;
    let waiting_at = r.headers()["location"].to_str().unwrap().to_owned();
    (csrf, waiting_at)
}

fn another(number: u8) -> u8 {
    if number == 99 { 98 } else { number + 1 }
}

async fn event_kinds(server: &Server, client: &reqwest::Client) -> Vec<String> {
    let (_, events) = json(client.get(server.url("/api/v1/me/events")).send().await.unwrap()).await;
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// The app's current offline code for the first account.
fn offline_code(state: &std::path::Path) -> String {
    let (ok, out, err) = app(state, &["code", "1"]);
    assert!(ok, "{err}");
    out[..6].to_owned()
}

/// A server whose [`MEMBER`] is signed in (the client) and has linked
/// the app (its state folder) as "Phone".
async fn member_with_app(engine: Engine) -> Option<(Server, reqwest::Client, std::path::PathBuf)> {
    let (_, server) = server_with_member(engine).await?;
    let member = browser();
    api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
    let (state, _) = link_app(&server, &member, "Phone").await;
    Some((server, member, state))
}

#[tokio::test]
async fn approving_with_the_right_number_signs_the_waiting_browser_in() {
    for engine in ENGINES {
        let Some((server, member, state)) = member_with_app(engine).await else {
            continue;
        };

        let waiting = browser();
        let answer = api_password_step(&server, &waiting).await;
        assert_eq!(answer["default_method"], "authenticator");
        let (id, number) = push(&server, &waiting).await;
        // Asking again from the same sign-in gives the same request.
        assert_eq!(push(&server, &waiting).await, (id.clone(), number));
        let (status, body) = push_status(&server, &waiting, &id).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("pending")));

        let stream = events_in_background(&server, &waiting, &id);
        let number_text = number.to_string();
        let (ok, out, err) = app_in_background(
            &state,
            &["answer", "--number", &number_text, "--approve", "--wait", "30"],
        )
        .await
        .unwrap();
        assert!(ok, "{err}");
        assert!(
            out.contains(&format!("Sign-in to {MEMBER}"))
                && out.contains("from 127.0.0.1")
                && out.contains("Firefox on Linux"),
            "the app shows who asks: {out}"
        );
        assert!(out.trim_end().ends_with("Approved: the sign-in continues."), "{out}");
        let text = tokio::time::timeout(Duration::from_secs(30), stream)
            .await
            .unwrap()
            .unwrap();
        let statuses: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        assert_eq!(
            statuses.last().copied(),
            Some(r#"{"status":"approved"}"#),
            "the waiting page hears the approval: {text}"
        );

        // Not signed in until the browser itself finishes, once.
        let (status, _) = json(waiting.get(server.url("/api/v1/me")).send().await.unwrap()).await;
        assert_eq!(status, 401);
        let (status, body) = push_status(&server, &waiting, &id).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("signed_in")), "{body}");
        let (status, _) = json(waiting.get(server.url("/api/v1/me")).send().await.unwrap()).await;
        assert_eq!(status, 200);
        let (status, body) = push_status(&server, &waiting, &id).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("signed_in")),
            "asking again is harmless"
        );

        // Someone else's session cannot use the request id.
        let other = browser();
        api_password_step(&server, &other).await;
        let (status, _) = push_status(&server, &other, &id).await;
        assert_eq!(status, 404);

        let (ok, _, err) = app(
            &state,
            &["answer", "--number", &number_text, "--approve", "--wait", "1"],
        );
        assert!(!ok && err.contains("no sign-in request arrived"), "{err}");
        assert!(event_kinds(&server, &member).await.contains(&"sign_in".to_owned()));
    }
}

#[tokio::test]
async fn a_wrong_number_or_no_ends_the_attempt_and_two_in_a_row_pause_push() {
    for engine in ENGINES {
        let Some((server, member, state)) = member_with_app(engine).await else {
            continue;
        };

        // The wrong number, with Yes.
        let first = browser();
        api_password_step(&server, &first).await;
        let (id, number) = push(&server, &first).await;
        let wrong = another(number).to_string();
        let (ok, out, err) = app(&state, &["answer", "--number", &wrong, "--approve", "--wait", "10"]);
        assert!(
            ok && out.contains("Refused: that is not the number the sign-in page shows"),
            "{out}{err}"
        );
        assert_eq!(events(&server, &first, &id).await, ["denied"]);
        let (status, body) = push_status(&server, &first, &id).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("denied")));
        let (status, body) = api_second_step(&server, &first, "totp", &offline_code(&state)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("not_signed_in")),
            "the attempt is over: {body}"
        );

        // No.
        let second = browser();
        api_password_step(&server, &second).await;
        let (id, _) = push(&server, &second).await;
        let (ok, out, err) = app(&state, &["answer", "--deny", "--wait", "10"]);
        assert!(
            ok && out
                .trim_end()
                .ends_with("Refused: the attempt was stopped and recorded."),
            "{out}{err}"
        );
        let (_, body) = push_status(&server, &second, &id).await;
        assert_eq!(body["status"], "denied");

        // Two denials in a row: push pauses; other methods still work.
        let third = browser();
        api_password_step(&server, &third).await;
        let (status, body) = api_second_step(&server, &third, "authenticator", "").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (429, Some("push_paused")),
            "{body}"
        );
        let (status, body) = api_second_step(&server, &third, "totp", &offline_code(&state)).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("signed_in")), "{body}");

        let kinds = event_kinds(&server, &member).await;
        for kind in ["push_wrong_number", "push_denied", "push_paused"] {
            assert!(kinds.contains(&kind.to_owned()), "{kind} in {kinds:?}");
        }
        // And by email (the zero-configuration outbox).
        for subject in ["A sign-in was refused on your phone", "Approval requests are paused"] {
            outbox_message(&server, subject).await;
        }
        // The console's activity list says it plainly.
        let page = member
            .get(server.url("/security"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("suspicious"), "the activity list marks refusals");
    }
}

#[tokio::test]
async fn at_most_three_requests_per_ten_minutes() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        link_app(&server, &member, "Phone").await;
        for _ in 0..3 {
            let c = browser();
            api_password_step(&server, &c).await;
            push(&server, &c).await;
        }
        let c = browser();
        api_password_step(&server, &c).await;
        let response = c
            .post(server.url("/api/v1/session/second-factor"))
            .json(&serde_json::json!({"method": "authenticator"}))
            .send()
            .await
            .unwrap();
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        let (status, body) = json(response).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (429, Some("too_many_push_requests")),
            "{body}"
        );
        assert!((500..=600).contains(&retry_after), "{retry_after}");
    }
}

#[tokio::test]
async fn removing_the_method_revokes_the_device_at_its_next_contact() {
    for engine in ENGINES {
        let Some((server, member, state)) = member_with_app(engine).await else {
            continue;
        };
        let (state2, _) = link_app(&server, &member, "Tablet").await;

        let (_, s) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        let phone = s["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "Phone")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let waiting = browser();
        api_password_step(&server, &waiting).await;
        let (_, number) = push(&server, &waiting).await;
        let removed = member
            .delete(server.url(&format!("/api/v1/me/two-factor/methods/{phone}")))
            .json(&serde_json::json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(removed.status(), 204);

        let (ok, _, err) = app(
            &state,
            &["answer", "--number", &number.to_string(), "--approve", "--wait", "10"],
        );
        assert!(!ok && err.contains("removed"), "{err}");
        let (_, out, _) = app(&state, &["accounts"]);
        assert!(out.contains("(removed on the server)"), "{out}");
        let (ok, _, err) = app(&state, &["watch"]);
        assert!(!ok && err.contains("no linked accounts"), "{err}");

        // The other device still answers.
        let (ok, out, err) = app(
            &state2,
            &["answer", "--number", &number.to_string(), "--approve", "--wait", "10"],
        );
        assert!(
            ok && out.trim_end().ends_with("Approved: the sign-in continues."),
            "{out}{err}"
        );
    }
}

#[tokio::test]
async fn the_console_waiting_page_continues_once_approved() {
    for engine in ENGINES {
        let Some((server, _, state)) = member_with_app(engine).await else {
            continue;
        };

        let c = browser();
        let page = console_password_step(&server, &c).await;
        assert!(page.contains("id=\"push-send\""), "the app's method offers a request");
        let csrf = csrf_of(&page);
        let r = c
            .post(server.url("/signin/second-factor"))
            .form(&[("csrf", csrf.as_str()), ("method", "authenticator"), ("code", "")])
            .send()
            .await
            .unwrap();
        let waiting_at = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            waiting_at.starts_with("/signin/second-factor/authenticator/"),
            "{waiting_at}"
        );
        let page = c
            .get(server.url(&waiting_at))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let number: String = page
            .split("id=\"push-number\"")
            .nth(1)
            .and_then(|rest| rest.split('>').nth(1))
            .and_then(|rest| rest.split('<').next())
            .unwrap()
            .to_owned();
        assert!(
            page.contains("/static/push.js")
                && page.contains("data-events=\"/api/v1/session/second-factor/authenticator/")
        );

        // Continue before the phone answers: still waiting.
        let r = c
            .post(server.url(&waiting_at))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("has not answered yet"));

        let (ok, _, err) = app(&state, &["answer", "--number", &number, "--approve", "--wait", "10"]);
        assert!(ok, "{err}");
        let r = c
            .post(server.url(&waiting_at))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], "/");
        let home = c.get(server.url("/")).send().await.unwrap();
        assert_eq!(home.status(), 200);

        // A refusal sends the page back to sign-in, saying why.
        let d = browser();
        let (csrf, waiting_at) = console_waiting(&server, &d).await;
        let (ok, _, err) = app(&state, &["answer", "--deny", "--wait", "10"]);
        assert!(ok, "{err}");
        let r = post_form(&server, &d, &waiting_at, &[("csrf", &csrf)]).await;
        assert_eq!(r.headers()["location"], "/signin");
        let page = d.get(server.url("/signin")).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("refused on your phone"));
        assert!(
            !d.get(server.url("/signin"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .contains("refused on your phone"),
            "said once"
        );

        // A wrong number is said to be one (most often a mistap), not
        // that someone knows the password.
        let e = browser();
        let (csrf, waiting_at) = console_waiting(&server, &e).await;
        let waiting = e
            .get(server.url(&waiting_at))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let shown: u8 = waiting
            .split("id=\"push-number\"")
            .nth(1)
            .and_then(|rest| rest.split('>').nth(1))
            .and_then(|rest| rest.split('<').next())
            .unwrap()
            .parse()
            .unwrap();
        let wrong = another(shown).to_string();
        let (ok, out, err) = app(&state, &["answer", "--number", &wrong, "--approve", "--wait", "10"]);
        assert!(ok && !out.contains("wrong_number"), "{out}{err}");
        let r = post_form(&server, &e, &waiting_at, &[("csrf", &csrf)]).await;
        assert_eq!(r.headers()["location"], "/signin");
        let page = e.get(server.url("/signin")).send().await.unwrap().text().await.unwrap();
        assert!(
            page.contains("a different number was chosen") && page.contains("mistapped"),
            "{page}"
        );
        assert!(!page.contains("someone knows your password") && !page.contains("wrong_number"));
    }
}

#[tokio::test]
async fn the_push_provider_gets_only_the_request_id() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");
        let (receiver, seen) = post_receiver(Default::default()).await;
        let template = format!("{receiver}/cloudkeep-{{device}}");
        let server = Server::start_on(&storage, &[("CLOUDKEEP_PUSH_WEBHOOK", &template)]);
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        link_app(&server, &member, "Phone").await;
        let (_, s) = json(member.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        let method = s["methods"][0]["id"].as_str().unwrap().to_owned();

        let c = browser();
        api_password_step(&server, &c).await;
        let (id, _) = push(&server, &c).await;
        let mut delivered = Vec::new();
        for _ in 0..100 {
            delivered = seen.lock().unwrap().clone();
            if !delivered.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            delivered,
            vec![(
                format!("/cloudkeep-{method}"),
                String::new(),
                serde_json::json!({"request_id": id})
            )]
        );
    }
}

#[tokio::test]
async fn link_from_the_device_with_the_password_and_the_current_second_factor() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        // Without 2FA: the password, then the member's yes.
        let state = store::testing::temp_dir("authenticator").join("state");
        let args = [
            "link",
            "--server",
            server.base.as_str(),
            "--email",
            MEMBER,
            "--password-stdin",
            "--name",
            "Laptop",
        ];
        let (ok, _, err) = app_with_input(&state, &args, &format!("{PASSWORD}\n"));
        assert!(!ok && err.contains("did not authorize"), "asks first: {err}");
        let mut yes = args.to_vec();
        yes.push("--yes");
        let (ok, _, err) = app_with_input(&state, &yes, "wrong password\n");
        assert!(!ok && err.contains("wrong email or password"), "{err}");
        let (ok, out, err) = app_with_input(&state, &yes, &format!("{PASSWORD}\n"));
        assert!(ok, "{err}");
        assert!(out.starts_with(&format!("linked {MEMBER}")), "{out}");
        assert_eq!(
            out.lines().filter(|l| l.starts_with("  ")).count(),
            10,
            "backup codes: {out}"
        );

        // With 2FA on: the current second factor, here the first device's code.
        let state2 = store::testing::temp_dir("authenticator").join("state");
        let code = offline_code(&state);
        let (ok, out, err) = app_with_input(&state2, &yes, &format!("{PASSWORD}\n{code}\n"));
        assert!(ok, "{err}");
        assert!(
            out.starts_with(&format!("linked {MEMBER}")) && !out.contains("backup"),
            "{out}"
        );
        let c = browser();
        api_password_step(&server, &c).await;
        let (id, number) = push(&server, &c).await;
        let (ok, out, err) = app(
            &state2,
            &["answer", "--number", &number.to_string(), "--approve", "--wait", "10"],
        );
        assert!(
            ok && out.trim_end().ends_with("Approved: the sign-in continues."),
            "{out}{err}"
        );
        let (_, body) = push_status(&server, &c, &id).await;
        assert_eq!(body["status"], "signed_in");
        let (_, s) = json(c.get(server.url("/api/v1/me/two-factor")).send().await.unwrap()).await;
        let names: Vec<&str> = s["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Laptop", "Laptop"]);
    }
}

/// Two server processes on one PostgreSQL: the sign-in waits on the first,
/// the device is connected to the second.
#[tokio::test]
async fn a_request_made_on_one_process_is_approved_through_another() {
    let Some(storage) = Storage::new(Engine::Postgres).await else {
        return;
    };
    storage.create_user(MEMBER, "user");
    let one = Server::start_on(&storage, &[]);
    let two = Server::start_on(&storage, &[]);
    let member = browser();
    api_sign_in(&two, &member, MEMBER, PASSWORD, false).await;
    let (state, _) = link_app(&two, &member, "Phone").await;
    let (_, out, _) = app(&state, &["accounts"]);
    assert!(out.contains(&two.addr), "the device talks to the second process: {out}");

    let waiting = browser();
    api_password_step(&one, &waiting).await;
    // The device waits first, on process two; the request is made on one.
    let device = app_in_background(&state, &["answer", "--number", "0", "--deny", "--wait", "30"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (id, _) = push(&one, &waiting).await;
    let (ok, out, err) = device.await.unwrap();
    assert!(
        ok && out
            .trim_end()
            .ends_with("Refused: the attempt was stopped and recorded."),
        "{out}{err}"
    );
    assert_eq!(events(&one, &waiting, &id).await, ["denied"]);

    // And an approval the other way round.
    let c = browser();
    api_password_step(&one, &c).await;
    let (id, number) = push(&one, &c).await;
    let stream = events_in_background(&one, &c, &id);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, _, err) = app(
        &state,
        &["answer", "--number", &number.to_string(), "--approve", "--wait", "10"],
    );
    assert!(ok, "{err}");
    let text = tokio::time::timeout(Duration::from_secs(30), stream)
        .await
        .unwrap()
        .unwrap();
    assert!(text.contains(r#"{"status":"approved"}"#), "{text}");
    let (_, body) = push_status(&one, &c, &id).await;
    assert_eq!(body["status"], "signed_in");
}

/// `watch`, interactively: it shows the request and the three numbers, and
/// typing the page's number approves.
#[tokio::test]
async fn watch_asks_for_the_number_and_approves() {
    use std::io::{BufRead, BufReader, Write};
    for engine in ENGINES {
        let Some((server, _, state)) = member_with_app(engine).await else {
            continue;
        };
        let mut watch = std::process::Command::new(env!("CARGO_BIN_EXE_cloudkeep-authenticator"))
            .arg("--state")
            .arg(&state)
            .arg("watch")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = watch.stdout.take().unwrap();
        std::thread::spawn(move || {
            // The prompt has no line end: read byte-wise into lines and prompts.
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            while reader.read_until(b' ', &mut buf).map(|n| n > 0).unwrap_or(false) {
                let text = String::from_utf8_lossy(&buf).into_owned();
                if text.ends_with("refuse: ") || text.ends_with('\n') || text.contains("Approved") {
                    let _ = tx.send(text);
                    buf.clear();
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
        let c = browser();
        api_password_step(&server, &c).await;
        let (id, number) = push(&server, &c).await;
        let mut seen = String::new();
        while !seen.contains("refuse: ") {
            seen.push_str(
                &rx.recv_timeout(Duration::from_secs(30))
                    .expect("watch shows the request"),
            );
        }
        assert!(seen.contains(&format!("Sign-in to {MEMBER}")), "{seen}");
        assert!(seen.contains(&number.to_string()), "{seen}");
        writeln!(watch.stdin.as_mut().unwrap(), "{number}").unwrap();
        while !seen.contains("Approved") {
            seen.push_str(&rx.recv_timeout(Duration::from_secs(30)).expect("watch says approved"));
        }
        let _ = watch.kill();
        let _ = watch.wait();
        let (_, body) = push_status(&server, &c, &id).await;
        assert_eq!(body["status"], "signed_in");
    }
}
