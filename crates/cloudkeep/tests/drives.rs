//! Drives, black-box on SQLite and PostgreSQL: created from the admin
//! command line (numeric id printed), the API and the console; listed for
//! the members of their organization only.

mod common;

use common::*;

fn admin_drive(storage: &Storage, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["drive", "create"];
    all.extend_from_slice(args);
    storage.admin(&all, "")
}

#[tokio::test]
async fn drives_are_made_by_managers_and_seen_by_members() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        // MEMBER is an admin of "Org ana@example.org".
        storage.create_user(MEMBER, "admin");
        storage.create_user("bo@example.org", "user");
        let org = format!("Org {MEMBER}");
        let (ok, out, err) = admin_drive(&storage, &["--org", &org, "--name", "Shared", "--quota", "2147483648"]);
        assert!(ok, "{err}");
        let id: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((100_000..10_000_000).contains(&id), "{id}");
        assert!(out.contains("quota_bytes: 2147483648"));
        let (ok, _, err) = admin_drive(&storage, &["--org", "Nope", "--name", "X"]);
        assert!(!ok && err.contains("no organization is named 'Nope'"), "{err}");
        let (ok, _, err) = admin_drive(&storage, &["--org", &org, "--name", "Tiny", "--quota", "10"]);
        assert!(!ok && err.contains("at least 1 MiB"), "{err}");

        let server = Server::start_on(&storage, &[]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let (_, me) = json(ana.get(server.url("/api/v1/me")).send().await.unwrap()).await;
        let org_id = me["organizations"][0]["id"].as_str().unwrap().to_owned();
        let (status, made) = json(
            ana.post(server.url(&format!("/api/v1/orgs/{org_id}/drives")))
                .json(&serde_json::json!({"name": "Projects"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 201, "{made}");
        assert_eq!(made["quota_bytes"], 10_u64 * 1024 * 1024 * 1024);
        let (_, list) = json(ana.get(server.url("/api/v1/drives")).send().await.unwrap()).await;
        let names: Vec<&str> = list["drives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Projects", "Shared"]);
        assert_eq!(list["drives"][1]["id"], id);
        assert_eq!(list["drives"][1]["access"], "read-write");
        let port = server.addr.rsplit(':').next().unwrap();
        assert_eq!(
            list["drives"][1]["connect_url"],
            format!("http://{id}.connect.localhost:{port}/")
        );
        assert_eq!(
            list["drives"][1]["webdav_url"],
            format!("{}/dav/drives/{id}/", server.base)
        );

        // Someone of another organization sees none and cannot create one there.
        let bo = browser();
        api_sign_in(&server, &bo, "bo@example.org", PASSWORD, false).await;
        let (_, list) = json(bo.get(server.url("/api/v1/drives")).send().await.unwrap()).await;
        assert_eq!(list["drives"].as_array().unwrap().len(), 0);
        let (status, _) = json(
            bo.post(server.url(&format!("/api/v1/orgs/{org_id}/drives")))
                .json(&serde_json::json!({"name": "Mine"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 404);

        // The console lists them and makes one.
        let page_text = page(&server, &ana, "/drives").await;
        assert!(page_text.contains(&format!("<code>{id}</code>")) && page_text.contains("2.0 GiB"));
        let r = ana
            .post(server.url("/drives"))
            .form(&[
                ("csrf", csrf_of(&page_text).as_str()),
                ("org", org_id.as_str()),
                ("name", "Archive"),
                ("quota_gib", "5"),
            ])
            .send()
            .await
            .unwrap();
        let at = r.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(at, "/drives", "the drives page, which a reload does not post again");
        let after = page(&server, &ana, &at).await;
        assert!(
            after.contains("5.0 GiB") && after.contains("The drive “Archive” was created."),
            "{after}"
        );
        let again = page(&server, &ana, &at).await;
        assert!(
            !again.contains("was created") && again.matches(">Archive<").count() == after.matches(">Archive<").count()
        );
        let bo_page = page(&server, &bo, "/drives").await;
        assert!(bo_page.contains("has a drive yet") && !bo_page.contains("new-drive-heading"));
    }
}

/// The console's file browser: folders, uploads (streamed, multipart),
/// downloads, the quota (507) and deleting.
#[tokio::test]
async fn members_browse_upload_and_download_in_the_console() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");
        storage.create_user("bo@example.org", "user");
        let org = format!("Org {MEMBER}");
        let (ok, out, err) = admin_drive(&storage, &["--org", &org, "--name", "Shared", "--quota", "1048576"]);
        assert!(ok, "{err}");
        let id = out.lines().find_map(|l| l.strip_prefix("id: ")).unwrap().to_owned();
        let server = Server::start_on(&storage, &[]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let root = format!("/drives/{id}/files");
        let listing = page(&server, &ana, &root).await;
        assert!(listing.contains("id=\"empty-folder\""), "{listing}");
        let csrf = csrf_of(&listing);

        let r = ana
            .post(server.url(&format!("/drives/{id}/folders")))
            .form(&[("csrf", csrf.as_str()), ("folder", "/"), ("name", "Año 2026")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let made = page(&server, &ana, &root).await;
        assert!(made.contains("The folder “Año 2026” was created."), "{made}");
        assert!(!page(&server, &ana, &root).await.contains("was created"), "said once");
        // A name with a slash is refused, saying why.
        let r = ana
            .post(server.url(&format!("/drives/{id}/folders")))
            .form(&[("csrf", csrf.as_str()), ("folder", "/"), ("name", "a/b")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        assert!(r.text().await.unwrap().contains("cannot contain “/”"));
        let folder = format!("{root}/A%C3%B1o%202026");
        let upload = |path: &str, name: &str, body: Vec<u8>, token: &str| {
            let part = reqwest::multipart::Part::bytes(body).file_name(name.to_owned());
            let form = reqwest::multipart::Form::new().part("file", part);
            ana.post(server.url(&format!("/drives/{id}/upload?folder={path}&csrf={token}")))
                .multipart(form)
                .send()
        };
        let contents: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let r = upload("%2FA%C3%B1o%202026", "datos.bin", contents.clone(), &csrf)
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], folder.as_str());
        let inside = page(&server, &ana, &folder).await;
        assert!(inside.contains("datos.bin") && inside.contains("195.3 KiB"), "{inside}");
        assert!(inside.contains("“datos.bin” was uploaded."), "{inside}");
        // The same name again is refused unless replacing was asked for.
        let r = upload("%2FA%C3%B1o%202026", "datos.bin", vec![7; 10], &csrf)
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        assert!(r.text().await.unwrap().contains("already in this folder"));
        let kept = ana
            .get(server.url(&format!("{folder}/datos.bin")))
            .send()
            .await
            .unwrap();
        assert_eq!(kept.bytes().await.unwrap().len(), contents.len(), "not overwritten");
        let replacing = reqwest::multipart::Form::new().text("replace", "1").part(
            "file",
            reqwest::multipart::Part::bytes(vec![7; 10]).file_name("datos.bin"),
        );
        let r = ana
            .post(server.url(&format!("/drives/{id}/upload?folder=%2FA%C3%B1o%202026&csrf={csrf}")))
            .multipart(replacing)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let replaced = ana
            .get(server.url(&format!("{folder}/datos.bin")))
            .send()
            .await
            .unwrap();
        assert_eq!(replaced.bytes().await.unwrap().as_ref(), &[7u8; 10]);
        let r = upload("%2FA%C3%B1o%202026", "datos.bin", contents.clone(), &csrf)
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        let r = ana
            .post(server.url(&format!("/drives/{id}/upload?folder=%2FA%C3%B1o%202026&csrf={csrf}")))
            .multipart(reqwest::multipart::Form::new().text("replace", "1").part(
                "file",
                reqwest::multipart::Part::bytes(contents.clone()).file_name("datos.bin"),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        // How to connect a WebDAV client to this folder, both address forms.
        let port = server.addr.rsplit(':').next().unwrap();
        assert!(
            inside.contains(&format!("http://{id}.connect.localhost:{port}/A%C3%B1o%202026/")),
            "{inside}"
        );
        assert!(inside.contains(&format!("{}/dav/drives/{id}/A%C3%B1o%202026/", server.base)));
        assert!(inside.contains("vendor=owncloud") && inside.contains(MEMBER));
        let got = ana
            .get(server.url(&format!("{folder}/datos.bin")))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert!(
            got.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .contains("datos.bin")
        );
        assert_eq!(got.bytes().await.unwrap().as_ref(), contents.as_slice());

        // Without the token, or beyond the quota, nothing is stored.
        let r = upload("%2F", "sneaky.bin", vec![1; 10], "forged").await.unwrap();
        assert_eq!(r.status(), 403);
        let r = upload("%2F", "huge.bin", vec![1; 1_000_000], &csrf).await.unwrap();
        assert_eq!(r.status(), 507);
        assert!(r.text().await.unwrap().contains("not enough space"));
        let listing = page(&server, &ana, &root).await;
        assert!(!listing.contains("huge.bin") && !listing.contains("sneaky.bin"));

        // Someone outside the organization sees nothing.
        let bo = browser();
        api_sign_in(&server, &bo, "bo@example.org", PASSWORD, false).await;
        assert_eq!(bo.get(server.url(&folder)).send().await.unwrap().status(), 404);

        // Deleting asks first, naming the folder; nothing goes before that.
        let r = ana
            .post(server.url(&format!("/drives/{id}/delete")))
            .form(&[("csrf", csrf.as_str()), ("path", "/Año 2026")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let asking = r.text().await.unwrap();
        assert!(
            asking.contains("The folder “Año 2026” and everything in it will be deleted"),
            "{asking}"
        );
        assert!(
            page(&server, &ana, &folder).await.contains("datos.bin"),
            "not deleted yet"
        );
        let r = ana
            .post(server.url(&format!("/drives/{id}/delete")))
            .form(&[("csrf", csrf.as_str()), ("path", "/Año 2026"), ("confirm", "yes")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], root.as_str());
        let after = page(&server, &ana, &root).await;
        assert!(after.contains("id=\"empty-folder\"") && after.contains("“Año 2026” was deleted."));
        assert!(!page(&server, &ana, &root).await.contains("was deleted"), "said once");
        let (_, list) = json(ana.get(server.url("/api/v1/drives")).send().await.unwrap()).await;
        assert_eq!(list["drives"][0]["used_bytes"], 0);
    }
}

/// Sends a WebDAV request as `login` with the account password (no 2FA).
async fn dav(server: &Server, login: &str, method: &str, path: &str) -> u16 {
    let mut request = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            server.url(path),
        )
        .basic_auth(login, Some(PASSWORD));
    request = match method {
        "PUT" => request.body("changed"),
        "PROPFIND" => request.header("Depth", "0"),
        "COPY" | "MOVE" => request.header("Destination", server.url(&format!("{path}.copy"))),
        "PROPPATCH" => request.body(
            r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x"><D:set><D:prop><Z:a>1</Z:a></D:prop></D:set></D:propertyupdate>"#,
        ),
        "LOCK" => request.body(
            r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#,
        ),
        _ => request,
    };
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn members_get_the_access_their_drive_gives() {
    const BO: &str = COLLEAGUE;
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        let id = storage.team_with_drive();
        let server = Server::start_on(&storage, &[]);
        let top = format!("/dav/drives/{id}");
        let file = format!("{top}/notes.txt");

        // By default every member reads and writes.
        assert_eq!(dav(&server, BO, "PUT", &file).await, 201);

        // The command line makes members read-only; the admin still writes.
        let (ok, out, err) = storage.admin(&["drive", "access", "--drive", &id, "--members", "read"], "");
        assert!(ok, "{err}");
        assert!(out.contains("member_access: read\n"), "{out}");
        assert!(
            out.contains(&format!("member: {BO} role=user rule=default access=read")),
            "{out}"
        );
        assert!(
            out.contains(&format!("member: {MEMBER} role=admin rule=default access=read-write")),
            "{out}"
        );
        for method in ["GET", "HEAD", "PROPFIND", "OPTIONS"] {
            let status = dav(&server, BO, method, &file).await;
            assert!((200..300).contains(&status), "{engine:?} {method}: {status}");
        }
        for method in ["PUT", "DELETE", "MKCOL", "COPY", "MOVE", "PROPPATCH", "LOCK"] {
            assert_eq!(dav(&server, BO, method, &file).await, 403, "{engine:?} {method}");
        }
        assert_eq!(dav(&server, MEMBER, "PUT", &file).await, 204);

        // The API, as the admin: Bo's own rule wins over the default.
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let (status, sharing) = json(
            ana.get(server.url(&format!("/api/v1/drives/{id}/access")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{sharing}");
        assert_eq!(sharing["member_access"], "read");
        let bo_entry = sharing["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == BO)
            .unwrap()
            .clone();
        assert_eq!(bo_entry["access"], "read");
        assert!(bo_entry["rule"].is_null());
        let bo_id = bo_entry["account_id"].as_str().unwrap().to_owned();
        let rule_url = server.url(&format!("/api/v1/drives/{id}/access/{bo_id}"));
        let (status, changed) = json(
            ana.put(&rule_url)
                .json(&serde_json::json!({"access": "read-write"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{changed}");
        assert_eq!(changed["access"], "read-write");
        assert_eq!(dav(&server, BO, "MKCOL", &format!("{top}/Bo")).await, 201);
        // Unknown words and rules for managers are refused.
        let (status, _) = json(
            ana.put(&rule_url)
                .json(&serde_json::json!({"access": "write"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 422);
        let (_, me) = json(ana.get(server.url("/api/v1/me")).send().await.unwrap()).await;
        let ana_id = me["id"].as_str().unwrap();
        let (status, refused) = json(
            ana.put(server.url(&format!("/api/v1/drives/{id}/access/{ana_id}")))
                .json(&serde_json::json!({"access": "read"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (422, Some("manager_always_writes"))
        );

        // No access: the drive does not exist for Bo any more.
        let (status, _) = json(
            ana.put(&rule_url)
                .json(&serde_json::json!({"access": "none"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(dav(&server, BO, "PROPFIND", &top).await, 404);
        let bo = browser();
        api_sign_in(&server, &bo, BO, PASSWORD, false).await;
        let (_, list) = json(bo.get(server.url("/api/v1/drives")).send().await.unwrap()).await;
        assert_eq!(list["drives"].as_array().unwrap().len(), 0, "{list}");
        assert_eq!(
            bo.get(server.url(&format!("/drives/{id}/files")))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
        // Only managers see or change the rules.
        let (status, _) = json(
            bo.get(server.url(&format!("/api/v1/drives/{id}/access")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403);

        // Taking the rule away brings the default (read) back.
        let (status, back) = json(ana.delete(&rule_url).send().await.unwrap()).await;
        assert_eq!((status, back["access"].as_str()), (200, Some("read")), "{back}");
        assert_eq!(dav(&server, BO, "GET", &file).await, 200);
        assert_eq!(dav(&server, BO, "PUT", &file).await, 403);

        // The console: Bo sees a read-only drive, without upload forms.
        let files = page(&server, &bo, &format!("/drives/{id}/files")).await;
        assert!(
            files.contains("id=\"read-only-note\"") && files.contains("notes.txt"),
            "{files}"
        );
        assert!(
            !files.contains("upload-file") && !files.contains("/delete\""),
            "{files}"
        );
        let csrf = csrf_of(&files);
        let r = bo
            .post(server.url(&format!("/drives/{id}/folders")))
            .form(&[("csrf", csrf.as_str()), ("folder", "/"), ("name", "Sneaky")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let drives_page = page(&server, &bo, "/drives").await;
        assert!(drives_page.contains("Read only"), "{drives_page}");
        assert_eq!(
            bo.get(server.url(&format!("/drives/{id}/access")))
                .send()
                .await
                .unwrap()
                .status(),
            403
        );

        // The admin's access page changes Bo's rule and the default.
        let access_page = page(&server, &ana, &format!("/drives/{id}/access")).await;
        assert!(
            access_page.contains(BO) && access_page.contains("Always reads and writes"),
            "{access_page}"
        );
        let csrf = csrf_of(&access_page);
        let r = ana
            .post(server.url(&format!("/drives/{id}/access/member")))
            .form(&[("csrf", csrf.as_str()), ("account", &bo_id), ("access", "read-write")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(dav(&server, BO, "PUT", &file).await, 204);
        let r = ana
            .post(server.url(&format!("/drives/{id}/access")))
            .form(&[("csrf", csrf.as_str()), ("member_access", "none")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let saved = page(&server, &ana, &format!("/drives/{id}/access?saved=1")).await;
        assert!(saved.contains("id=\"access-saved\""), "{saved}");
        assert!(
            saved.contains(&format!("data-member=\"{BO}\">Read and write</td>")),
            "{saved}"
        );
        let r = ana
            .post(server.url(&format!("/drives/{id}/access")))
            .form(&[("csrf", csrf.as_str()), ("member_access", "everything")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);

        // Every change is in the organization's activity log.
        let org_id = me["organizations"][0]["id"].as_str().unwrap();
        let (_, events) = json(
            ana.get(server.url(&format!("/api/v1/orgs/{org_id}/events")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let kinds: Vec<(&str, &str)> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str().unwrap()))
            .collect();
        assert!(
            kinds.contains(&("drive_access_changed", "operator (command line)")),
            "{kinds:?}"
        );
        assert!(kinds.contains(&("drive_access_changed", MEMBER)), "{kinds:?}");
        assert!(kinds.contains(&("drive_member_access_changed", MEMBER)), "{kinds:?}");

        // Someone who leaves takes their rule along.
        let r = ana
            .delete(server.url(&format!("/api/v1/orgs/{org_id}/members/{bo_id}")))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let (ok, out, err) = storage.admin(&["drive", "access", "--drive", &id], "");
        assert!(ok, "{err}");
        assert!(!out.contains(BO), "{out}");
        let (ok, _, err) = storage.admin(
            &["drive", "access", "--drive", &id, "--member", BO, "--access", "read"],
            "",
        );
        assert!(!ok && err.contains("is not a member"), "{err}");
    }
}
