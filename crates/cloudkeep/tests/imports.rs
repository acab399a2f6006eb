//! "Import external data", black-box on SQLite and PostgreSQL: copying a
//! sub-folder of a real WebDAV server (`rclone serve webdav`) into a
//! drive in the background, progress in the API and the console, a server
//! killed midway that resumes without copying anything twice, the source
//! password erased from the database at the end (whatever the ending), the
//! completion email, cancelling, a refused password, and drive → drive
//! (read in-process, with loopback refused).
//!
//! And the attacks on it (issue 21): imports from internal addresses in
//! every spelling, a job checked again when it connects, redirects out of
//! the source, a slow source of one organization against the others, and
//! what read-only members see, a job that keeps killing its server. The hostile and internal servers are small
//! real HTTP servers in the test ([`Peer`]); the loopback sources are
//! reached because the tests allow 127.0.0.1/32, as an operator would
//! allow a NAS's network.

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
#[cfg_attr(missing_rclone, ignore = "rclone is not installed (apt-get install rclone)")]
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

        let server = Server::start_on(&storage, &[ALLOW_LOOPBACK_ONE]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let password = new_app_password(&server, &ana, "import").await;
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
        let server = Server::start_on(&storage, &[ALLOW_LOOPBACK_ONE]);
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

        // Drive → drive: one of our own drives is a WebDAV source too, read
        // in-process: it works with loopback refused.
        assert!(server.terminate());
        let server = Server::start_on(&storage, &[]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
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
#[cfg_attr(missing_rclone, ignore = "rclone is not installed (apt-get install rclone)")]
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
        let server = Server::start_on(&storage, &[ALLOW_LOOPBACK_ONE]);
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

/// What [`Peer`] does with one request.
enum Reply {
    /// Status, headers, body.
    Answer(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Keeps the connection open without a word until the peer is dropped.
    Hold,
}

/// A small real HTTP server inside the test: a hostile or slow import
/// source, or an internal service the import must not reach. Counts the
/// requests it got, and the connections it holds.
struct Peer {
    address: std::net::SocketAddr,
    requests: std::sync::Arc<Mutex<Vec<(String, String, bool)>>>,
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

use std::sync::Mutex;
use std::sync::atomic::Ordering;

impl Peer {
    /// Listens on `bind` (e.g. `127.0.0.2:0`); `answer(method, path)`.
    fn start(bind: &str, answer: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Peer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind(bind).unwrap();
        let address = listener.local_addr().unwrap();
        let requests = std::sync::Arc::new(Mutex::new(Vec::new()));
        let held = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answer = std::sync::Arc::new(answer);
        let (seen, holding, stopped) = (requests.clone(), held.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let (answer, seen, holding, stopped) = (answer.clone(), seen.clone(), holding.clone(), stopped.clone());
                std::thread::spawn(move || {
                    loop {
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            match stream.read(&mut byte) {
                                Ok(1) => head.push(byte[0]),
                                _ => return,
                            }
                        }
                        let head = String::from_utf8_lossy(&head).into_owned();
                        let mut words = head.split_whitespace();
                        let method = words.next().unwrap_or("").to_owned();
                        let path = words.next().unwrap_or("").to_owned();
                        let header = |name: &str| {
                            head.lines().find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                            })
                        };
                        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                        let mut body = vec![0u8; length];
                        if stream.read_exact(&mut body).is_err() {
                            return;
                        }
                        seen.lock()
                            .unwrap()
                            .push((method.clone(), path.clone(), header("authorization").is_some()));
                        match answer(&method, &path) {
                            Reply::Hold => {
                                holding.fetch_add(1, Ordering::SeqCst);
                                while !stopped.load(Ordering::SeqCst) {
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                                return;
                            }
                            Reply::Answer(status, headers, body) => {
                                let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                                for (k, v) in headers {
                                    out.push_str(&format!("{k}: {v}\r\n"));
                                }
                                out.push_str("\r\n");
                                if stream.write_all(out.as_bytes()).is_err() || stream.write_all(&body).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Peer {
            address,
            requests,
            held,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn requests(&self) -> Vec<(String, String, bool)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.address);
    }
}

/// A WebDAV listing of `folder` (ending in `/`) holding `files`.
fn listing(folder: &str, files: &[(&str, usize)]) -> Vec<u8> {
    let mut xml = format!(
        r#"<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"><d:response><d:href>{folder}</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"#
    );
    for (name, size) in files {
        xml.push_str(&format!(
            r#"<d:response><d:href>{folder}{name}</d:href><d:propstat><d:prop><d:resourcetype/><d:getcontentlength>{size}</d:getcontentlength></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"#
        ));
    }
    xml.push_str("</d:multistatus>");
    xml.into_bytes()
}

fn multistatus(body: Vec<u8>) -> Reply {
    Reply::Answer(207, vec![("Content-Type", "application/xml".into())], body)
}

/// An internal service: a WebDAV folder holding one secret file.
fn internal_service(bind: &str) -> Peer {
    Peer::start(bind, |method, path| match (method, path) {
        ("PROPFIND", _) => multistatus(listing(path, &[("secret.txt", 15)])),
        ("GET", _) => Reply::Answer(200, vec![], b"internal secret".to_vec()),
        _ => Reply::Answer(405, vec![], Vec::new()),
    })
}

const NOT_ALLOWED: &str = "this address is not allowed";

/// Imports through the loopback sources of these tests: the operator
/// allows 127.0.0.1 (only).
const ALLOW_LOOPBACK_ONE: (&str, &str) = ("CLOUDKEEP_IMPORT_ALLOW_NETWORKS", "127.0.0.1/32");

#[tokio::test]
async fn imports_from_internal_addresses_are_refused_whatever_the_spelling() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");
        let drive = drive_create(&storage, "Shared");
        let internal = internal_service("127.0.0.1:0");
        let port = internal.address.port();
        // A port nothing listens on: the answer must be the same.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Server::start_on(&storage, &[]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        for source in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
            format!("http://0:{port}/"),
            format!("http://2130706433:{port}/"),
            format!("http://0x7f.1:{port}/"),
            format!("http://127.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://[::ffff:7f00:1]:{port}/"),
            format!("http://[::1]:{port}/"),
            format!("http://127.0.0.1:{closed}/"),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "http://10.0.0.1/".to_owned(),
            // The server itself, outside its drives.
            server.url("/api/v1/me"),
        ] {
            let (status, error) = start(
                &ana,
                &server,
                drive,
                serde_json::json!({"source_url": source, "user": "x", "password": "y"}),
            )
            .await;
            assert_eq!(status, 422, "{engine:?} {source}: {error}");
            assert_eq!(error["error"]["code"], "source_not_allowed", "{source}");
            assert!(
                error["error"]["message"].as_str().unwrap().starts_with(NOT_ALLOWED),
                "{error}"
            );
        }
        // The console says the same.
        let imports_page = page(&server, &ana, &format!("/drives/{drive}/imports")).await;
        let refused = ana
            .post(server.url(&format!("/drives/{drive}/imports")))
            .form(&[
                ("csrf", csrf_of(&imports_page).as_str()),
                ("source_url", format!("http://localhost:{port}/").as_str()),
                ("user", "x"),
                ("password", "y"),
                ("folder", "/"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 422);
        assert!(refused.text().await.unwrap().contains("This address is not allowed"));
        assert!(internal.requests().is_empty(), "{:?}", internal.requests());
    }
}

/// Sets a job's lease as expired, as if its process had died long ago.
async fn expire_lease(storage: &Storage, id: &str) {
    sqlx::any::install_default_drivers();
    let url = storage
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", storage.data.join("cloudkeep.db").display()));
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("UPDATE drive_imports SET lease_until = 0 WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// Waits until `peer` holds `count` connections.
async fn held(peer: &Peer, count: usize) {
    let started = Instant::now();
    while peer.held.load(Ordering::SeqCst) < count {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the source was not reached"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_job_is_checked_again_when_it_connects() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");
        let drive = drive_create(&storage, "Shared");
        // Allowed when the import is started; the operator then takes the
        // permission back (the same holds for a name that resolves
        // elsewhere by the time the job runs).
        let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let hold_first = first.clone();
        let source = Peer::start("127.0.0.1:0", move |method, path| {
            if hold_first.swap(false, Ordering::SeqCst) {
                Reply::Hold
            } else if method == "PROPFIND" {
                multistatus(listing(path, &[("secret.txt", 15)]))
            } else {
                Reply::Answer(200, vec![], b"internal secret".to_vec())
            }
        });
        let server = Server::start_on(&storage, &[ALLOW_LOOPBACK_ONE]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let (status, started) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({"source_url": source.url(), "user": "x", "password": "y"}),
        )
        .await;
        assert_eq!(status, 201, "{started}");
        let id = started["id"].as_str().unwrap().to_owned();
        held(&source, 1).await;
        server.kill();
        expire_lease(&storage, &id).await;

        let server = Server::start_on(&storage, &[]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let report = wait_for(&ana, &server, drive, &id, ended).await;
        assert_eq!(report["state"], "failed", "{engine:?}: {report}");
        assert_eq!(report["error"], NOT_ALLOWED);
        assert_eq!(source.requests().len(), 1, "{:?}", source.requests());
    }
}

#[tokio::test]
async fn redirects_are_followed_only_within_the_source() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");
        let drive = drive_create(&storage, "Shared");
        // 127.0.0.2 is loopback too, and not in the allowed network; the
        // other port is in it, but another origin.
        let internal = internal_service("127.0.0.2:0");
        let other_port = internal_service("127.0.0.1:0");
        let (to_internal, to_other) = (internal.url(), other_port.url());
        let hostile = Peer::start("127.0.0.1:0", move |method, path| match (method, path) {
            ("PROPFIND", "/redirected/") => Reply::Answer(302, vec![("Location", format!("{to_internal}/"))], vec![]),
            ("PROPFIND", _) => multistatus(listing(path, &[("a.txt", 3), ("b.txt", 3), ("c.txt", 3)])),
            ("GET", "/files/a.txt") => {
                Reply::Answer(302, vec![("Location", format!("{to_internal}/secret.txt"))], vec![])
            }
            ("GET", "/files/b.txt") => Reply::Answer(302, vec![("Location", "/files/b2.txt".into())], vec![]),
            ("GET", "/files/b2.txt") => Reply::Answer(200, vec![], b"bee".to_vec()),
            ("GET", "/files/c.txt") => Reply::Answer(307, vec![("Location", format!("{to_other}/secret.txt"))], vec![]),
            _ => Reply::Answer(404, vec![], vec![]),
        });
        let server = Server::start_on(&storage, &[ALLOW_LOOPBACK_ONE]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;

        // A listing that redirects elsewhere: the job fails, says why.
        let (status, started) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({"source_url": format!("{}/redirected/", hostile.url()), "user": "x", "password": "y"}),
        )
        .await;
        assert_eq!(status, 201, "{started}");
        let report = wait_for(&ana, &server, drive, started["id"].as_str().unwrap(), ended).await;
        assert_eq!(report["state"], "failed", "{engine:?}: {report}");
        assert!(
            report["error"].as_str().unwrap().contains("another address"),
            "{report}"
        );

        // Downloads: a redirect within the source is followed (with the
        // password), one to another origin is not (without it).
        let (_, started) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({"source_url": format!("{}/files", hostile.url()), "user": "x", "password": "y"}),
        )
        .await;
        let report = wait_for(&ana, &server, drive, started["id"].as_str().unwrap(), ended).await;
        assert_eq!(report["state"], "done", "{report}");
        assert_eq!(
            (report["files_done"].as_u64(), report["files_failed"].as_u64()),
            (Some(1), Some(2)),
            "{report}"
        );
        for failure in report["failures"].as_array().unwrap() {
            assert!(failure.to_string().contains("another address"), "{failure}");
        }
        let password = new_app_password(&server, &ana, "import").await;
        assert_eq!(fetch(&server, drive, "/b.txt", &password).await, (200, b"bee".to_vec()));
        assert_eq!(fetch(&server, drive, "/a.txt", &password).await.0, 404);
        assert!(
            hostile
                .requests()
                .iter()
                .any(|(_, path, auth)| path == "/files/b2.txt" && *auth),
            "{:?}",
            hostile.requests()
        );
        assert!(internal.requests().is_empty(), "{:?}", internal.requests());
        assert!(other_port.requests().is_empty(), "{:?}", other_port.requests());
    }
}

#[tokio::test]
async fn a_slow_source_of_one_organization_does_not_stall_the_others() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        // Org A: a source that takes every connection and never answers.
        storage.create_user(MEMBER, "user");
        let slow_drive = drive_create(&storage, "Slow");
        let slow = Peer::start("127.0.0.1:0", |_, _| Reply::Hold);
        // Org B: a quick one.
        storage.create_user("carla@example.org", "user");
        let (ok, out, err) = storage.admin(
            &["drive", "create", "--org", "Org carla@example.org", "--name", "Quick"],
            "",
        );
        assert!(ok, "{err}");
        let quick_drive: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .unwrap()
            .parse()
            .unwrap();
        let quick = Peer::start("127.0.0.1:0", |method, path| match method {
            "PROPFIND" => multistatus(listing(path, &[("report.txt", 5)])),
            _ => Reply::Answer(200, vec![], b"hello".to_vec()),
        });

        let server = Server::start_on(&storage, &[ALLOW_LOOPBACK_ONE, ("CLOUDKEEP_IMPORT_JOBS_PER_ORG", "2")]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        for _ in 0..3 {
            let (status, started) = start(
                &ana,
                &server,
                slow_drive,
                serde_json::json!({"source_url": slow.url(), "user": "x", "password": "y"}),
            )
            .await;
            assert_eq!(status, 201, "{started}");
        }
        held(&slow, 2).await;

        let carla = browser();
        api_sign_in(&server, &carla, "carla@example.org", PASSWORD, false).await;
        let (status, started) = start(
            &carla,
            &server,
            quick_drive,
            serde_json::json!({"source_url": quick.url(), "user": "x", "password": "y"}),
        )
        .await;
        assert_eq!(status, 201, "{started}");
        let report = wait_for(&carla, &server, quick_drive, started["id"].as_str().unwrap(), ended).await;
        assert_eq!(report["state"], "done", "{engine:?}: {report}");
        assert_eq!(report["files_done"], 1);
        // Org A's third import waits for one of its first two.
        assert_eq!(slow.requests().len(), 2, "{:?}", slow.requests());
    }
}

#[tokio::test]
async fn read_only_members_do_not_see_where_an_import_came_from() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        let drive: u64 = storage.team_with_drive().parse().unwrap();
        let source = internal_service("127.0.0.1:0");
        let server = Server::start_on(&storage, &[ALLOW_LOOPBACK_ONE]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let source_url = format!("{}/nas-folder", source.url());
        let (status, started) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({"source_url": source_url, "user": "nas-account", "password": "y"}),
        )
        .await;
        assert_eq!(status, 201, "{started}");
        let id = started["id"].as_str().unwrap().to_owned();
        wait_for(&ana, &server, drive, &id, ended).await;

        let bo = browser();
        api_sign_in(&server, &bo, COLLEAGUE, PASSWORD, false).await;
        let (_, me) = json(bo.get(server.url("/api/v1/me")).send().await.unwrap()).await;
        let changed = ana
            .put(server.url(&format!("/api/v1/drives/{drive}/access/{}", me["id"].as_str().unwrap())))
            .json(&serde_json::json!({"access": "read"}))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 200);

        // The writer sees where it came from, the reader does not.
        for (who, sees) in [(&ana, true), (&bo, false)] {
            let (status, one) = json(
                who.get(server.url(&format!("/api/v1/drives/{drive}/imports/{id}")))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 200);
            let (_, all) = json(
                who.get(server.url(&format!("/api/v1/drives/{drive}/imports")))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            let pages = page(&server, who, &format!("/drives/{drive}/imports")).await
                + &page(&server, who, &format!("/drives/{drive}/imports/{id}")).await;
            for text in [one.to_string(), all.to_string(), pages] {
                assert_eq!(text.contains("nas-folder"), sees, "{engine:?} {sees}: {text}");
                assert_eq!(text.contains("nas-account"), sees, "{engine:?} {sees}: {text}");
            }
        }

        // One of our own drives as the source, read in-process: the same
        // sign-in check as WebDAV.
        let (status, wrong) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({"source_url": server.url(&format!("/dav/drives/{drive}/")), "user": MEMBER, "password": "not the password"}),
        )
        .await;
        assert_eq!(status, 201, "{wrong}");
        let report = wait_for(&ana, &server, drive, wrong["id"].as_str().unwrap(), ended).await;
        assert_eq!(report["state"], "failed", "{report}");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .contains("refused the user name or password"),
            "{report}"
        );
    }
}

#[tokio::test]
async fn a_job_that_keeps_bringing_its_server_down_is_failed_not_resumed_forever() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");
        let drive = drive_create(&storage, "Shared");
        // Every process that takes the job dies while reading its source
        // (as a source whose listing crashed the parser would make it).
        let source = Peer::start("127.0.0.1:0", |_, _| Reply::Hold);
        let mut id = String::new();
        for attempt in 1..=3 {
            let server = Server::start_on(&storage, &[ALLOW_LOOPBACK_ONE]);
            if attempt == 1 {
                let ana = browser();
                api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
                let (status, started) = start(
                    &ana,
                    &server,
                    drive,
                    serde_json::json!({"source_url": source.url(), "user": "x", "password": "y"}),
                )
                .await;
                assert_eq!(status, 201, "{started}");
                id = started["id"].as_str().unwrap().to_owned();
            }
            held(&source, attempt).await;
            server.kill();
            expire_lease(&storage, &id).await;
        }
        let server = Server::start_on(&storage, &[ALLOW_LOOPBACK_ONE]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let report = wait_for(&ana, &server, drive, &id, ended).await;
        assert_eq!(report["state"], "failed", "{engine:?}: {report}");
        assert!(
            report["error"].as_str().unwrap().contains("interrupted 3 times"),
            "{report}"
        );
        assert_eq!(stored_secret(&storage, &id).await, "");
        assert_eq!(source.requests().len(), 3, "{:?}", source.requests());
    }
}

#[tokio::test]
async fn a_source_without_end_is_cut_at_the_limits() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");
        let drive = drive_create(&storage, "Shared");
        // Every folder holds a deeper one and two files, for ever.
        let endless = Peer::start("127.0.0.1:0", |method, path| match method {
            "PROPFIND" => {
                let xml = String::from_utf8(listing(path, &[("a.txt", 1), ("b.txt", 1)])).unwrap();
                let deeper = format!(
                    r#"<d:response><d:href>{path}deeper/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"#
                );
                multistatus(xml.replace("</d:multistatus>", &deeper).into_bytes())
            }
            _ => Reply::Answer(200, vec![], b"x".to_vec()),
        });
        let server = Server::start_on(&storage, &[ALLOW_LOOPBACK_ONE, ("CLOUDKEEP_IMPORT_MAX_DEPTH", "4")]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let (status, started) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({"source_url": endless.url(), "user": "x", "password": "y"}),
        )
        .await;
        assert_eq!(status, 201, "{started}");
        let report = wait_for(&ana, &server, drive, started["id"].as_str().unwrap(), ended).await;
        assert_eq!(report["state"], "done", "{engine:?}: {report}");
        assert_eq!(report["files_done"], 10, "{report}");
        assert!(report.to_string().contains("nested deeper than 4"), "{report}");
        let listings = endless.requests().iter().filter(|(m, _, _)| m == "PROPFIND").count();
        assert_eq!(listings, 5, "{:?}", endless.requests());
        server.kill();

        // Too many files: the job stops and says why.
        let server = Server::start_on(&storage, &[ALLOW_LOOPBACK_ONE, ("CLOUDKEEP_IMPORT_MAX_FILES", "5")]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let (_, started) = start(
            &ana,
            &server,
            drive,
            serde_json::json!({"source_url": endless.url(), "user": "x", "password": "y", "folder": "/"}),
        )
        .await;
        let report = wait_for(&ana, &server, drive, started["id"].as_str().unwrap(), ended).await;
        assert_eq!(report["state"], "failed", "{engine:?}: {report}");
        assert!(
            report["error"].as_str().unwrap().contains("more than 5 files"),
            "{report}"
        );
    }
}
