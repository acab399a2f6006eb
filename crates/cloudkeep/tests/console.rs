//! The console as a browser uses it (forms, cookies, redirects), on SQLite
//! and PostgreSQL.

mod common;

use common::*;

async fn get_html(client: &reqwest::Client, url: &str) -> (u16, String) {
    let r = client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn location(r: &reqwest::Response) -> &str {
    r.headers()["location"].to_str().unwrap()
}

#[tokio::test]
async fn setup_link_works_once_and_signs_in() {
    for engine in ENGINES {
        let Some(server) = Server::start(engine).await else {
            continue;
        };
        let link = server.setup_link().expect("setup link printed");
        assert!(link.starts_with(&format!("{}/setup/", server.base)), "{link}");
        let browser = browser();
        let (status, home) = get_html(&browser, &server.url("/")).await;
        assert_eq!(status, 200);
        assert!(home.contains("not set up yet"), "home explains the setup link");

        let (status, page) = get_html(&browser, &link).await;
        assert_eq!(status, 200);
        let csrf = csrf_of(&page);
        let mut form = vec![
            ("csrf", csrf.as_str()),
            ("organization", "Acme Cooperative"),
            ("name", "Ana García"),
            ("email", "ana@example.org"),
            ("password", PASSWORD),
            ("password_confirm", "something else entirely"),
        ];
        let r = browser.post(&link).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 422);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("The two new passwords are not the same.")
        );
        form[5].1 = PASSWORD;
        form[4].1 = "password123";
        form[5].1 = "password123";
        let r = browser.post(&link).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 422);
        let body = r.text().await.unwrap();
        assert!(
            body.contains("The password is too short") || body.contains("too common"),
            "{body}"
        );
        assert!(
            body.contains("value=\"Acme Cooperative\""),
            "the form keeps what was typed"
        );

        form[4].1 = PASSWORD;
        form[5].1 = PASSWORD;
        let r = browser.post(&link).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), "/");
        let (status, home) = get_html(&browser, &server.url("/")).await;
        assert_eq!(status, 200);
        assert!(home.contains("Welcome, Ana García"), "{home}");
        assert!(home.contains("Acme Cooperative — Legal representative"));

        // Used: the link is gone, for this browser and any other.
        let (status, page) = get_html(&common::browser(), &link).await;
        assert_eq!(status, 410);
        assert!(page.contains("This setup link does not work"));
        let r = common::browser().post(&link).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 403, "no CSRF cookie in a fresh browser");
        let stranger = common::browser();
        let (_, page) = get_html(&stranger, &server.url("/signin")).await;
        let csrf = csrf_of(&page);
        form[0].1 = &csrf;
        form[3].1 = "eve@example.org";
        let r = stranger.post(&link).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 410);

        // A restart prints no link once setup is done.
        let storage = server.storage();
        drop(server);
        let again = Server::start_on(&storage, &[]);
        assert_eq!(again.setup_link(), None);
    }
}

#[tokio::test]
async fn a_new_setup_link_at_each_start_until_setup_is_done() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        let first = Server::start_on(&storage, &[]);
        let old = first.setup_link().unwrap();
        drop(first);
        let second = Server::start_on(&storage, &[]);
        let new = second.setup_link().unwrap();
        assert_ne!(old, new);
        let old_on_new_port = new.rsplit_once('/').unwrap().0.to_owned() + "/" + old.rsplit('/').next().unwrap();
        assert_eq!(
            get_html(&browser(), &old_on_new_port).await.0,
            410,
            "the old link stops working"
        );
        assert_eq!(get_html(&browser(), &new).await.0, 200);

        // An account made from the command line ends setup: the link goes.
        storage.create_user("ops@example.org", "admin");
        assert_eq!(get_html(&browser(), &new).await.0, 410);
    }
}

#[tokio::test]
async fn sign_in_and_out_in_the_browser() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let b = browser();
        let r = b.get(server.url("/")).send().await.unwrap();
        assert_eq!((r.status().as_u16(), location(&r)), (303, "/signin"));
        let r = b.get(server.url("/security")).send().await.unwrap();
        assert_eq!((r.status().as_u16(), location(&r)), (303, "/signin"));
        let (_, page) = get_html(&b, &server.url("/signin")).await;
        assert!(page.contains("<label for=\"email\">Email</label>"));
        let csrf = csrf_of(&page);

        let r = b
            .post(server.url("/signin"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("email", "ana@example.org"),
                ("password", "wrong wrong wrong"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let page = r.text().await.unwrap();
        assert!(page.contains("role=\"alert\"") && page.contains("Wrong email or password."));
        assert!(page.contains("value=\"ana@example.org\""));

        let r = b
            .post(server.url("/signin"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("email", "ana@example.org"),
                ("password", PASSWORD),
                ("remember", "1"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!((r.status().as_u16(), location(&r)), (303, "/"));
        let session = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("ck_session="))
            .unwrap();
        assert!(session.contains("Max-Age="), "keep me signed in: persistent cookie");

        let (_, home) = get_html(&b, &server.url("/")).await;
        assert!(home.contains("Welcome, Test Person"));
        let (status, security) = get_html(&b, &server.url("/security")).await;
        assert_eq!(status, 200);
        assert!(security.contains("Firefox · Linux") && security.contains("(this session)"));
        assert!(security.contains("Failed sign-in attempt") && security.contains("Signed in"));

        // The form token is bound to the session now.
        let csrf = csrf_of(&home);
        let r = b
            .post(server.url("/signout"))
            .form(&[("csrf", "forged")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = b
            .post(server.url("/signout"))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!((r.status().as_u16(), location(&r)), (303, "/signin"));
        assert_eq!(b.get(server.url("/api/v1/me")).send().await.unwrap().status(), 401);
    }
}

#[tokio::test]
async fn forms_without_a_valid_token_or_from_another_site_are_refused() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let b = browser();
        let (_, page) = get_html(&b, &server.url("/signin")).await;
        let csrf = csrf_of(&page);
        let good = [
            ("csrf", csrf.as_str()),
            ("email", "ana@example.org"),
            ("password", PASSWORD),
        ];
        let missing = [("email", "ana@example.org"), ("password", PASSWORD)];
        let r = b.post(server.url("/signin")).form(&missing).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("This form has expired"));
        // A token from another browser does not fit this one.
        let other = browser();
        let (_, page) = get_html(&other, &server.url("/signin")).await;
        let foreign = csrf_of(&page);
        let r = b
            .post(server.url("/signin"))
            .form(&[
                ("csrf", foreign.as_str()),
                ("email", "ana@example.org"),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = b
            .post(server.url("/signin"))
            .header("origin", "http://evil.example")
            .form(&good)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "foreign origin even with the token");
        let r = b
            .post(server.url("/signin"))
            .header("origin", server.base.clone())
            .form(&good)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);

        // Signed in: changing the password needs the session-bound token.
        let (_, page) = get_html(&b, &server.url("/security")).await;
        let fields = |token: &str| {
            vec![
                ("csrf", token.to_owned()),
                ("current_password", PASSWORD.to_owned()),
                ("new_password", "completely different words 9".to_owned()),
                ("new_password_confirm", "completely different words 9".to_owned()),
            ]
        };
        let r = b
            .post(server.url("/security/password"))
            .form(&fields(&csrf))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "the pre-sign-in token no longer applies");
        let r = b
            .post(server.url("/security/password"))
            .form(&fields(&csrf_of(&page)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), "/security");
        let (_, page) = get_html(&b, &server.url("/security")).await;
        assert!(page.contains("Your password was changed."));
        assert!(page.contains("Password changed"));
        let (_, again) = get_html(&b, &server.url("/security")).await;
        assert!(!again.contains("Your password was changed."), "said once");
    }
}

#[tokio::test]
async fn revoking_a_session_from_the_security_page() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let b = browser();
        let phone = browser();
        api_sign_in(&server, &b, "ana@example.org", PASSWORD, false).await;
        api_sign_in(&server, &phone, "ana@example.org", PASSWORD, false).await;
        let (_, list) = json(phone.get(server.url("/api/v1/me/sessions")).send().await.unwrap()).await;
        let phone_id = list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == true)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, page) = get_html(&b, &server.url("/security")).await;
        assert!(page.contains(&format!("/security/sessions/{phone_id}/revoke")));
        let r = b
            .post(server.url(&format!("/security/sessions/{phone_id}/revoke")))
            .form(&[("csrf", csrf_of(&page))])
            .send()
            .await
            .unwrap();
        assert_eq!(location(&r), "/security");
        assert_eq!(phone.get(server.url("/api/v1/me")).send().await.unwrap().status(), 401);
        let (_, page) = get_html(&b, &server.url("/security")).await;
        assert!(page.contains("The session was ended.") && page.contains("Session ended ("));
    }
}

#[tokio::test]
async fn pages_speak_spanish_and_english() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let spanish =
            |c: &reqwest::Client, url: String| c.get(url).header("accept-language", "es-ES,es;q=0.9,en;q=0.5").send();
        let b = browser();
        let page = spanish(&b, server.url("/signin")).await.unwrap().text().await.unwrap();
        assert!(page.contains("<html lang=\"es\">") && page.contains("<h1>Iniciar sesión</h1>"));
        assert!(page.contains("Mantener la sesión iniciada"));
        let in_language = |c: &reqwest::Client, accept: &'static str| {
            c.get(server.url("/signin")).header("accept-language", accept).send()
        };
        for (accept, lang, title) in [
            ("de-CH, en;q=0.3", "de", "Anmelden"),
            ("fr-FR, en;q=0.3", "fr", "Connexion"),
            ("it, en;q=0.3", "it", "Accedi"),
        ] {
            let page = in_language(&b, accept).await.unwrap().text().await.unwrap();
            assert!(page.contains(&format!("<html lang=\"{lang}\">")), "{accept}");
            assert!(page.contains(&format!("<h1>{title}</h1>")), "{accept}");
        }
        let page = in_language(&b, "pt, ja;q=0.3").await.unwrap().text().await.unwrap();
        assert!(page.contains("<html lang=\"en\">") && page.contains("<h1>Sign in</h1>"));

        // The switcher remembers the choice over Accept-Language.
        let r = b
            .post(server.url("/language"))
            .form(&[("csrf", csrf_of(&page).as_str()), ("lang", "es"), ("back", "/signin")])
            .send()
            .await
            .unwrap();
        assert_eq!((r.status().as_u16(), location(&r)), (303, "/signin"));
        let page = b
            .get(server.url("/signin"))
            .header("accept-language", "en")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("<h1>Iniciar sesión</h1>"));
        let r = b
            .post(server.url("/signin"))
            .form(&[
                ("csrf", csrf_of(&page).as_str()),
                ("email", "ana@example.org"),
                ("password", "nope nope nope"),
            ])
            .send()
            .await
            .unwrap();
        assert!(r.text().await.unwrap().contains("Correo o contraseña incorrectos."));
        // Never an open redirect.
        let r = b
            .post(server.url("/language"))
            .form(&[
                ("csrf", csrf_of(&page).as_str()),
                ("lang", "en"),
                ("back", "//evil.example/"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(location(&r), "/");

        api_sign_in(&server, &b, "ana@example.org", PASSWORD, false).await;
        let page = spanish(&b, server.url("/security"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("<h1>Security</h1>"),
            "the cookie (en) wins over the header"
        );
        let c = browser();
        api_sign_in(&server, &c, "ana@example.org", PASSWORD, false).await;
        let page = spanish(&c, server.url("/security"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("<h1>Seguridad</h1>")
                && page.contains("Sesiones abiertas")
                && page.contains("Inicio de sesión")
        );
        let page = spanish(&c, server.url("/")).await.unwrap().text().await.unwrap();
        assert!(page.contains("Hola, Test Person") && !page.contains("Representante legal"));
        assert!(page.contains("Miembro"));
        let (status, page) = get_html(&c, &server.url("/no/such/page")).await;
        assert_eq!(status, 404);
        assert!(page.contains("Page not found") || page.contains("Página no encontrada"));
    }
}

/// Issue 21, item 3, through the console's sign-in form: 60 wrong
/// passwords at once, then the right one at the end of the burst. At most
/// the email key's six are verified (each a 401 page); the others, and the
/// right one, get 429 with `Retry-After`.
#[tokio::test]
async fn a_burst_of_wrong_passwords_on_the_sign_in_form_cannot_carry_the_right_one_in() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let b = browser();
        let (_, page) = get_html(&b, &server.url("/signin")).await;
        let csrf = csrf_of(&page);
        let post = |password: &'static str| {
            b.post(server.url("/signin"))
                .form(&[("csrf", csrf.as_str()), ("email", MEMBER), ("password", password)])
                .send()
        };
        let first_refusal = tokio::sync::Notify::new();
        let burst = async {
            let outcomes = futures_util::future::join_all((0..60).map(|_| {
                let request = post("wrong wrong wrong");
                let first_refusal = &first_refusal;
                async move {
                    let response = request.await.unwrap();
                    let status = response.status().as_u16();
                    if status == 429 {
                        first_refusal.notify_one();
                    }
                    (status, response.headers().contains_key("retry-after"))
                }
            }))
            .await;
            first_refusal.notify_one();
            outcomes
        };
        let right = async {
            first_refusal.notified().await;
            let response = post(PASSWORD).await.unwrap();
            (
                response.status().as_u16(),
                response.headers().contains_key("retry-after"),
            )
        };
        let (outcomes, right) = tokio::join!(burst, right);
        let verified = outcomes.iter().filter(|(status, _)| *status == 401).count();
        let refused = outcomes
            .iter()
            .filter(|(status, retry)| *status == 429 && *retry)
            .count();
        // As over the API: at most six guesses checked, the right one
        // included; it is refused (with `Retry-After`) while the burst holds
        // the room or the lock.
        let right_verified = usize::from(right.0 != 429 && right.0 != 401);
        assert!(
            verified + right_verified <= 6,
            "{verified} wrong passwords and {right_verified} right one verified, the email key allows 6"
        );
        assert_eq!(verified + refused, 60, "{outcomes:?}");
        assert!(
            right == (429, true) || right_verified == 1,
            "the right password got {right:?}"
        );
    }
}
