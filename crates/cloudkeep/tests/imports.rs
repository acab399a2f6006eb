//! "Import external data", black-box on SQLite and PostgreSQL: copying a
//! sub-folder of a real WebDAV server (`rclone serve webdav`) into a
//! drive in the background, progress in the API and the console, a server
//! killed midway that resumes without copying anything twice, the source
//! password erased from the database at the end (whatever the ending), the
//! completion email, cancelling, a refused password, and drive → drive.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SOURCE_PASSWORD: &str = "source-secret-Zq7!";

/// `rclone serve webdav` on a folder, with a user and password.
struct Source {
    child: Child,
    url: String,
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_source(root: &Path) -> Source {
    serve_source_with(root, &[])
}

/// [`serve_source`] with more rclone options.
fn serve_source_with(root: &Path, options: &[&str]) -> Source {
    let mut child = Command::new("rclone")
        .args(["serve", "webdav"])
        .arg(root)
        .args(options)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--user",
            "nas",
            "--pass",
            SOURCE_PASSWORD,
            "--config",
            "/dev/null",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("rclone output").unwrap();
        if let Some(rest) = line.split("started on ").nth(1) {
            break rest.trim().trim_end_matches('/').to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Source { child, url }
}

/// A tree of `count` files in nested folders, with accents and spaces;
/// returns their paths (relative) and contents.
fn source_tree(root: &Path, count: usize) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for i in 0..count {
        let folder = format!("Fotos/año {}/día {}", i % 3, i % 5);
        std::fs::create_dir_all(root.join(&folder)).unwrap();
        let name = format!("{folder}/foto {i}.jpg");
        let body: Vec<u8> = (0..(500 + (i * 97) % 4000)).map(|b| ((b + i) % 251) as u8).collect();
        std::fs::write(root.join(&name), &body).unwrap();
        files.push((name.trim_start_matches("Fotos").to_owned(), body));
    }
    // Outside the sub-folder being imported: must not be copied.
    std::fs::write(root.join("private.txt"), b"not imported").unwrap();
    files
}

async fn app_password(server: &Server, client: &reqwest::Client) -> String {
    let (status, made) = json(
        client
            .post(server.url("/api/v1/me/app-passwords"))
            .json(&serde_json::json!({"name": "import"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    made["password"].as_str().unwrap().to_owned()
}

fn drive_create(storage: &Storage, name: &str) -> u64 {
    let org = format!("Org {MEMBER}");
    let (ok, out, err) = storage.admin(&["drive", "create", "--org", &org, "--name", name], "");
    assert!(ok, "{err}");
    out.lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .parse()
        .unwrap()
}

async fn start(
    client: &reqwest::Client,
    server: &Server,
    drive: u64,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    json(
        client
            .post(server.url(&format!("/api/v1/drives/{drive}/imports")))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Polls the import until `done(report)` holds; returns the report.
async fn wait_for(
    client: &reqwest::Client,
    server: &Server,
    drive: u64,
    id: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (status, report) = json(
            client
                .get(server.url(&format!("/api/v1/drives/{drive}/imports/{id}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{report}");
        if done(&report) {
            return report;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "import stuck: {report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ended(report: &serde_json::Value) -> bool {
    ["done", "failed", "cancelled"].contains(&report["state"].as_str().unwrap_or(""))
}

/// The import's stored secret, read straight from the database.
async fn stored_secret(storage: &Storage, id: &str) -> String {
    sqlx::any::install_default_drivers();
    let url = storage
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", storage.data.join("cloudkeep.db").display()));
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let secret: String = sqlx::query_scalar("SELECT sealed_secret FROM drive_imports WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    secret
}

async fn fetch(server: &Server, drive: u64, path: &str, password: &str) -> (u16, Vec<u8>) {
    let encoded: String = path
        .split('/')
        .map(|n| n.replace(' ', "%20"))
        .collect::<Vec<_>>()
        .join("/");
    let response = reqwest::Client::new()
        .get(server.url(&format!("/dav/drives/{drive}{encoded}")))
        .basic_auth(MEMBER, Some(password))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
}

/// `false` (after saying why) when rclone, the source server, is missing
/// outside CI.
fn rclone_ready() -> bool {
    peer(
        "rclone",
        &["version"],
        "import from a WebDAV server",
        "apt-get install rclone",
    )
}

#[tokio::test]
async fn a_webdav_folder_is_imported_in_the_background_and_resumes_after_a_crash() {
    if !rclone_ready() {
        return;
    }
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "admin");
        let drive = drive_create(&storage, "Shared");
        let source_root = storage.data.join("nas");
        let files = source_tree(&source_root, 400);
        let source = serve_source(&source_root);

        let server = Server::start_on(&storage, &[]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let password = app_password(&server, &ana).await;
        assert_eq!(
            reqwest::Client::new()
                .request(
                    reqwest::Method::from_bytes(b"MKCOL").unwrap(),
                    server.url(&format!("/dav/drives/{drive}/Desde el NAS"))
                )
                .basic_auth(MEMBER, Some(&password))
                .send()
                .await
                .unwrap()
                .status(),
            201
        );

        // Bad requests get clear errors.
        let (status, error) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({"source_url": "ftp://nas/x", "user": "nas", "password": "x", "folder": "/"}),
        )
        .await;
        assert_eq!((status, error["error"]["code"].as_str()), (422, Some("invalid_source")));
        let (status, error) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({"source_url": source.url, "user": "nas", "password": "x", "folder": "/Nope"}),
        )
        .await;
        assert_eq!((status, error["error"]["code"].as_str()), (422, Some("no_such_folder")));

        // A sub-folder of the source into a folder of the drive.
        let (status, import) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({
                "source_url": format!("{}/Fotos/", source.url),
                "user": "nas",
                "password": SOURCE_PASSWORD,
                "folder": "/Desde el NAS",
            }),
        )
        .await;
        assert_eq!(status, 201, "{import}");
        assert!(import.get("password").is_none() && import.get("sealed_secret").is_none());
        let id = import["id"].as_str().unwrap().to_owned();
        // While it runs, the password is stored sealed, never in clear.
        let sealed = stored_secret(&storage, &id).await;
        assert!(!sealed.is_empty() && !sealed.contains(SOURCE_PASSWORD));

        // Kill the server once some files are in; a new one resumes.
        let midway = wait_for(&ana, &server, drive, &id, |r| {
            r["files_done"].as_u64().unwrap_or(0) >= 30 || ended(r)
        })
        .await;
        assert_eq!(midway["state"], "running", "{midway}");
        server.kill();
        let server = Server::start_on(&storage, &[]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        // The console shows the progress meanwhile.
        let page_text = page(&server, &ana, &format!("/drives/{drive}/imports/{id}")).await;
        assert!(page_text.contains("id=\"import-progress\""), "{page_text}");
        let report = wait_for(&ana, &server, drive, &id, ended).await;
        assert_eq!(report["state"], "done", "{report}");
        let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
        assert_eq!(report["files_found"], 400, "{report}");
        assert_eq!(report["files_done"], 400, "each file counted once: {report}");
        assert_eq!(report["bytes_done"], total, "no file copied twice: {report}");
        assert_eq!(report["files_failed"], 0);
        assert_eq!(report["failures"].as_array().unwrap().len(), 0);

        // Every file is there, whole; nothing outside the sub-folder.
        for (path, body) in files.iter().step_by(37) {
            let (status, got) = fetch(&server, drive, &format!("/Desde el NAS{path}"), &password).await;
            assert_eq!(status, 200, "{path}");
            assert!(got == *body, "{path}");
        }
        assert_eq!(
            fetch(&server, drive, "/Desde el NAS/private.txt", &password).await.0,
            404
        );
        assert_eq!(fetch(&server, drive, "/private.txt", &password).await.0, 404);

        // The password is gone from the database; an email says it ended.
        assert_eq!(stored_secret(&storage, &id).await, "");
        let mail = outbox_message(&server, "Desde el NAS").await;
        assert!(mail.contains("Files copied: 400"), "{mail}");
        assert!(mail.contains("The source password has been deleted"), "{mail}");
        let listing = page(&server, &ana, &format!("/drives/{drive}/imports")).await;
        assert!(
            listing.contains("Finished") && listing.contains("400 of 400"),
            "{listing}"
        );

        // A wrong password: the import fails, says why, keeps nothing secret.
        let (_, refused) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({"source_url": source.url, "user": "nas", "password": "wrong", "folder": "/"}),
        )
        .await;
        let refused_id = refused["id"].as_str().unwrap();
        let report = wait_for(&ana, &server, drive, refused_id, ended).await;
        assert_eq!(report["state"], "failed");
        assert!(report["error"].as_str().unwrap().contains("refused"), "{report}");
        assert_eq!(stored_secret(&storage, refused_id).await, "");

        // The console's form: a clear error, then a started import.
        let imports_page = page(&server, &ana, &format!("/drives/{drive}/imports")).await;
        let csrf = csrf_of(&imports_page);
        let refused_form = ana
            .post(server.url(&format!("/drives/{drive}/imports")))
            .form(&[
                ("csrf", csrf.as_str()),
                ("source_url", "nas.example.org/Fotos"),
                ("user", "nas"),
                ("password", "x"),
                ("folder", "/"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(refused_form.status(), 422);
        assert!(refused_form.text().await.unwrap().contains("must start with http://"));
        let started_form = ana
            .post(server.url(&format!("/drives/{drive}/imports")))
            .form(&[
                ("csrf", csrf.as_str()),
                ("source_url", format!("{}/Fotos/a%C3%B1o%202", source.url).as_str()),
                ("user", "nas"),
                ("password", SOURCE_PASSWORD),
                ("folder", "/"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(started_form.status(), 303);
        let detail = started_form.headers()["location"].to_str().unwrap().to_owned();
        let form_id = detail.rsplit('/').next().unwrap().to_owned();
        let report = wait_for(&ana, &server, drive, &form_id, ended).await;
        assert_eq!(report["state"], "done", "{report}");
        let in_year_two = files.iter().filter(|(p, _)| p.starts_with("/año 2/")).count();
        assert_eq!(report["files_done"], in_year_two as u64);
        let detail_page = page(&server, &ana, &detail).await;
        assert!(detail_page.contains("Finished") && detail_page.contains("source password has been deleted"));

        // Cancelled right away: ends cancelled, secret erased.
        let (_, queued) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({"source_url": source.url, "user": "nas", "password": SOURCE_PASSWORD, "folder": "/"}),
        )
        .await;
        let queued_id = queued["id"].as_str().unwrap();
        let (status, _) = json(
            ana.post(server.url(&format!("/api/v1/drives/{drive}/imports/{queued_id}/cancel")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 202);
        let report = wait_for(&ana, &server, drive, queued_id, ended).await;
        assert_eq!(report["state"], "cancelled", "{report}");
        assert_eq!(stored_secret(&storage, queued_id).await, "");

        // Drive → drive: one of our own drives is a WebDAV source too.
        let other = drive_create(&storage, "Archive");
        let (status, copy) = start(
            &ana,
            &server,
            other,
            serde_json::json!({
                "source_url": server.url(&format!("/dav/drives/{drive}/Desde%20el%20NAS/a%C3%B1o%201")),
                "user": MEMBER,
                "password": password,
            }),
        )
        .await;
        assert_eq!(status, 201, "{copy}");
        let report = wait_for(&ana, &server, other, copy["id"].as_str().unwrap(), ended).await;
        assert_eq!(report["state"], "done", "{report}");
        let in_year_one = files.iter().filter(|(p, _)| p.starts_with("/año 1/")).count();
        assert_eq!(report["files_done"], in_year_one as u64);
        let (path, body) = files.iter().find(|(p, _)| p.starts_with("/año 1/")).unwrap();
        let (status, got) = fetch(&server, other, path.trim_start_matches("/año 1"), &password).await;
        assert_eq!(status, 200);
        assert!(got == *body);

        // Another organization's member sees none of it.
        storage.create_user("bo@example.org", "user");
        let bo = browser();
        api_sign_in(&server, &bo, "bo@example.org", PASSWORD, false).await;
        let (status, _) = json(
            bo.get(server.url(&format!("/api/v1/drives/{drive}/imports/{id}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 404);
    }
}

#[tokio::test]
async fn an_import_stops_when_its_starter_may_no_longer_write() {
    if !rclone_ready() {
        return;
    }
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        let drive: u64 = storage.team_with_drive().parse().unwrap();
        // A slow source: 12 files of 20 KiB at 20 KiB/s take about 12 s.
        let source_root = storage.data.join("slow-source");
        std::fs::create_dir_all(&source_root).unwrap();
        for i in 0..12 {
            std::fs::write(source_root.join(format!("part {i:02}.bin")), vec![i as u8; 20 * 1024]).unwrap();
        }
        let source = serve_source_with(&source_root, &["--bwlimit", "20K"]);
        let server = Server::start_on(&storage, &[]);
        let bo = browser();
        api_sign_in(&server, &bo, COLLEAGUE, PASSWORD, false).await;
        let (status, started) = start(
            &bo,
            &server,
            drive,
            serde_json::json!({"source_url": format!("{}/", source.url), "user": "nas", "password": SOURCE_PASSWORD}),
        )
        .await;
        assert_eq!(status, 201, "{started}");
        let id = started["id"].as_str().unwrap().to_owned();
        wait_for(&bo, &server, drive, &id, |r| r["files_done"].as_u64().unwrap_or(0) >= 1).await;

        // The admin makes members read-only while it runs.
        let (_, me) = json(bo.get(server.url("/api/v1/me")).send().await.unwrap()).await;
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let changed = ana
            .put(server.url(&format!("/api/v1/drives/{drive}/access/{}", me["id"].as_str().unwrap())))
            .json(&serde_json::json!({"access": "read"}))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 200);
        let report = wait_for(&bo, &server, drive, &id, ended).await;
        assert_eq!(report["state"], "failed", "{engine:?}: {report}");
        assert!(
            report["error"].as_str().unwrap().contains("no longer yours to write"),
            "{report}"
        );
        assert!(report["files_done"].as_u64().unwrap() < 12, "{report}");
        assert_eq!(stored_secret(&storage, &id).await, "", "the password is erased");
    }
}
