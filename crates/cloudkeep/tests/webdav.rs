//! Drives over WebDAV, black-box on SQLite and PostgreSQL: litmus's
//! suites, the protocol rules clients rely on (credentials, addresses,
//! ranges, conditions, quotas, locks, client quirks, hostile input), and
//! uploads cut short by a killed server.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A member (admin of "Org ana@example.org") with a drive and an
/// application password, and a server.
pub struct Dav {
    pub storage: Storage,
    pub server: Server,
    pub drive: u64,
    pub app_password: String,
    pub app_password_id: String,
    /// The member's signed-in browser.
    pub browser: reqwest::Client,
}

impl Dav {
    pub async fn new(engine: Engine, quota: Option<&str>) -> Option<Dav> {
        let storage = Storage::new(engine).await?;
        storage.create_user(MEMBER, "admin");
        let org = format!("Org {MEMBER}");
        let mut args = vec!["drive", "create", "--org", &org, "--name", "Shared"];
        if let Some(quota) = quota {
            args.extend(["--quota", quota]);
        }
        let (ok, out, err) = storage.admin(&args, "");
        assert!(ok, "{err}");
        let drive = out
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .unwrap()
            .parse()
            .unwrap();
        let server = Server::start_on(&storage, &[]);
        let browser = browser();
        api_sign_in(&server, &browser, MEMBER, PASSWORD, false).await;
        let (status, made) = json(
            browser
                .post(server.url("/api/v1/me/app-passwords"))
                .json(&serde_json::json!({"name": "WebDAV"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 201, "{made}");
        Some(Dav {
            storage,
            server,
            drive,
            app_password: made["password"].as_str().unwrap().to_owned(),
            app_password_id: made["id"].as_str().unwrap().to_owned(),
            browser,
        })
    }

    /// The path-form address of `path` in the drive.
    pub fn url(&self, path: &str) -> String {
        self.server.url(&format!("/dav/drives/{}{path}", self.drive))
    }

    pub fn request(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(Method::from_bytes(method.as_bytes()).unwrap(), self.url(path))
            .basic_auth(MEMBER, Some(&self.app_password))
    }

    pub async fn status(&self, method: &str, path: &str) -> u16 {
        self.request(method, path).send().await.unwrap().status().as_u16()
    }

    pub async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.request("PUT", path).body(body).send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let response = self.request("GET", path).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    pub async fn propfind(&self, path: &str, depth: &str, body: &str) -> (u16, String) {
        let response = self
            .request("PROPFIND", path)
            .header("Depth", depth)
            .header("Content-Type", "application/xml")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    fn basic(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{MEMBER}:{}", self.app_password))
    }
}

/// Sends `head` (request line and headers, without the blank line) and
/// `chunks` over one connection, chunked when the head says so; returns
/// the status and the whole response.
async fn raw(addr: &str, head: &str, chunks: &[&[u8]]) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    for chunk in chunks {
        if chunked {
            tcp.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await
                .unwrap();
            tcp.write_all(chunk).await.unwrap();
            tcp.write_all(b"\r\n").await.unwrap();
        } else {
            tcp.write_all(chunk).await.unwrap();
        }
    }
    if chunked {
        tcp.write_all(b"0\r\n\r\n").await.unwrap();
    }
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

const PROPS: &str = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#;

#[tokio::test]
async fn litmus_passes_every_suite() {
    if !peer("litmus", &["--help"], "WebDAV conformance", "apt-get install litmus") {
        return;
    }
    for engine in ENGINES {
        let Some(dav) = Dav::new(engine, None).await else {
            continue;
        };
        let url = format!("{}/", dav.url(""));
        // litmus writes its debug.log into its working folder.
        let out = tokio::process::Command::new("litmus")
            .current_dir(&dav.storage.data)
            .args(["-k", &url, MEMBER, &dav.app_password])
            .env("TESTS", "basic copymove props locks http")
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for suite in ["basic", "copymove", "props", "locks", "http"] {
            let summary = text
                .lines()
                .find(|l| l.contains(&format!("summary for `{suite}'")))
                .unwrap_or_else(|| panic!("{engine:?}: no summary for {suite}:\n{text}"));
            assert!(summary.contains(" 0 failed"), "{engine:?}: {summary}\n{text}");
        }
        assert!(!text.contains("FAIL"), "{engine:?}:\n{text}");
    }
}

#[tokio::test]
async fn credentials_addresses_and_organizations() {
    for engine in ENGINES {
        let Some(dav) = Dav::new(engine, None).await else {
            continue;
        };
        // No credentials, wrong ones: 401 with a Basic challenge.
        let anonymous = reqwest::Client::new()
            .request(Method::from_bytes(b"PROPFIND").unwrap(), dav.url("/"))
            .header("Depth", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401);
        assert!(
            anonymous.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        let wrong = reqwest::Client::new()
            .request(Method::from_bytes(b"PROPFIND").unwrap(), dav.url("/"))
            .basic_auth(MEMBER, Some("aaaa-bbbb-cccc-dddd-eeee-ffff-gggg"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);

        // The application password works on both address forms; the
        // host form is `<id>.connect.localhost` by default.
        assert_eq!(dav.propfind("/", "0", PROPS).await.0, 207);
        let by_host = reqwest::Client::new()
            .request(Method::from_bytes(b"PROPFIND").unwrap(), dav.server.url("/"))
            .header("Host", format!("{}.connect.localhost", dav.drive))
            .header("Depth", "1")
            .basic_auth(MEMBER, Some(&dav.app_password))
            .send()
            .await
            .unwrap();
        assert_eq!(by_host.status(), 207);
        let listing = by_host.text().await.unwrap();
        assert!(listing.contains("<D:href>/</D:href>"), "{listing}");

        // Without 2FA the account password is accepted too (flow 5).
        let with_password = reqwest::Client::new()
            .request(Method::from_bytes(b"PROPFIND").unwrap(), dav.url("/"))
            .header("Depth", "0")
            .basic_auth(MEMBER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(with_password.status(), 207);

        // Someone of another organization: the drive does not exist for them.
        dav.storage.create_user("bo@example.org", "user");
        let bo = browser();
        api_sign_in(&dav.server, &bo, "bo@example.org", PASSWORD, false).await;
        let (_, made) = json(
            bo.post(dav.server.url("/api/v1/me/app-passwords"))
                .json(&serde_json::json!({"name": "Mine"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let bo_password = made["password"].as_str().unwrap();
        let foreign = reqwest::Client::new()
            .get(dav.url("/"))
            .basic_auth("bo@example.org", Some(bo_password))
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status(), 404);
        let unknown = reqwest::Client::new()
            .get(dav.server.url("/dav/drives/99/"))
            .basic_auth(MEMBER, Some(&dav.app_password))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 404);

        // A revoked application password stops working.
        let revoked = dav
            .browser
            .delete(
                dav.server
                    .url(&format!("/api/v1/me/app-passwords/{}", dav.app_password_id)),
            )
            .send()
            .await
            .unwrap();
        assert!(revoked.status().is_success(), "{}", revoked.status());
        assert_eq!(dav.status("PROPFIND", "/").await, 401);
    }
}

#[tokio::test]
async fn files_ranges_conditions_and_locks() {
    for engine in ENGINES {
        let Some(dav) = Dav::new(engine, None).await else {
            continue;
        };
        let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let put = dav.put("/data.bin", body.clone()).await;
        assert_eq!(put.status(), 201);
        let etag = put.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(dav.get("/data.bin").await, (200, body.clone()));

        // Ranges.
        let ranged = dav
            .request("GET", "/data.bin")
            .header("Range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(ranged.status(), 206);
        assert_eq!(ranged.bytes().await.unwrap().as_ref(), &body[10..20]);
        let tail = dav
            .request("GET", "/data.bin")
            .header("Range", "bytes=-5")
            .send()
            .await
            .unwrap();
        assert_eq!(tail.bytes().await.unwrap().as_ref(), &body[995..]);

        // Conditional requests.
        let unchanged = dav
            .request("GET", "/data.bin")
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(unchanged.status(), 304);
        let stale = dav
            .request("PUT", "/data.bin")
            .header("If-Match", "\"not-the-etag\"")
            .body("lost update")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 412);
        let fresh = dav
            .request("PUT", "/data.bin")
            .header("If-Match", &etag)
            .body("second version")
            .send()
            .await
            .unwrap();
        assert_eq!(fresh.status(), 204);
        let new_etag = fresh.headers()["etag"].to_str().unwrap().to_owned();
        assert_ne!(new_etag, etag, "the ETag changes with the contents");
        let create_only = dav
            .request("PUT", "/data.bin")
            .header("If-None-Match", "*")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(create_only.status(), 412);

        // Folders, COPY and MOVE with Overwrite.
        assert_eq!(dav.status("MKCOL", "/docs").await, 201);
        assert_eq!(dav.status("MKCOL", "/docs").await, 405);
        assert_eq!(dav.status("MKCOL", "/missing/child").await, 409);
        let copy = dav
            .request("COPY", "/data.bin")
            .header("Destination", dav.url("/docs/copy.bin"))
            .send()
            .await
            .unwrap();
        assert_eq!(copy.status(), 201);
        let no_overwrite = dav
            .request("MOVE", "/docs/copy.bin")
            .header("Destination", dav.url("/data.bin"))
            .header("Overwrite", "F")
            .send()
            .await
            .unwrap();
        assert_eq!(no_overwrite.status(), 412);
        let moved = dav
            .request("MOVE", "/docs/copy.bin")
            .header("Destination", dav.url("/docs/moved.bin"))
            .send()
            .await
            .unwrap();
        assert_eq!(moved.status(), 201);
        assert_eq!(dav.get("/docs/moved.bin").await, (200, b"second version".to_vec()));
        assert_eq!(dav.get("/docs/copy.bin").await.0, 404);
        // Deleting the copy leaves the original's contents (shared blob) alone.
        assert_eq!(dav.status("DELETE", "/docs").await, 204);
        assert_eq!(dav.get("/data.bin").await, (200, b"second version".to_vec()));

        // Depth 1 lists children; infinity is refused.
        let (status, listing) = dav.propfind("/", "1", PROPS).await;
        assert_eq!(status, 207);
        assert!(listing.contains("data.bin") && listing.contains("getetag"), "{listing}");
        assert!(listing.contains("getlastmodified"), "{listing}");
        let (status, refusal) = dav.propfind("/", "infinity", PROPS).await;
        assert_eq!(status, 403);
        assert!(refusal.contains("propfind-finite-depth"));

        // LOCK: others (no token) are refused, the holder writes with it.
        let lock = dav
            .request("LOCK", "/data.bin")
            .header("Timeout", "Second-600")
            .body(
                r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>Finder</D:owner></D:lockinfo>"#,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(lock.status(), 200);
        let token = lock.headers()["lock-token"].to_str().unwrap().to_owned();
        let token = token.trim_matches(|c| c == '<' || c == '>').to_owned();
        assert_eq!(dav.put("/data.bin", "no token").await.status(), 423);
        assert_eq!(dav.status("DELETE", "/data.bin").await, 423);
        let with_token = dav
            .request("PUT", "/data.bin")
            .header("If", format!("(<{token}>)"))
            .body("locked write")
            .send()
            .await
            .unwrap();
        assert_eq!(with_token.status(), 204);
        let (_, discovered) = dav
            .propfind(
                "/data.bin",
                "0",
                r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>"#,
            )
            .await;
        assert!(
            discovered.contains(&token) && discovered.contains("Finder"),
            "{discovered}"
        );
        let unlock = dav
            .request("UNLOCK", "/data.bin")
            .header("Lock-Token", format!("<{token}>"))
            .send()
            .await
            .unwrap();
        assert_eq!(unlock.status(), 204);
        assert_eq!(dav.put("/data.bin", "after unlock").await.status(), 204);

        // Windows sends Win32 properties after each PUT; they are kept.
        let proppatch = dav
            .request("PROPPATCH", "/data.bin")
            .body(
                r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:" xmlns:O="urn:example:office"><D:set><D:prop><Z:Win32LastModifiedTime>Wed, 15 Nov 2023 10:00:00 GMT</Z:Win32LastModifiedTime><Z:Win32FileAttributes>00000020</Z:Win32FileAttributes><O:Author>Ana</O:Author></D:prop></D:set></D:propertyupdate>"#,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(proppatch.status(), 207);
        let answer = proppatch.text().await.unwrap();
        assert!(answer.contains("200 OK") && !answer.contains("HTTP/1.1 4"), "{answer}");
        let (_, props) = dav
            .propfind(
                "/data.bin",
                "0",
                r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:O="urn:example:office"><D:prop><O:Author/></D:prop></D:propfind>"#,
            )
            .await;
        assert!(props.contains(">Ana<"), "{props}");
    }
}

#[tokio::test]
async fn quotas_client_quirks_and_hostile_input() {
    for engine in ENGINES {
        // The smallest quota: 1 MiB.
        let Some(dav) = Dav::new(engine, Some("1048576")).await else {
            continue;
        };
        let addr = dav.server.addr.clone();
        let prefix = format!("/dav/drives/{}", dav.drive);
        let auth = format!("Authorization: Basic {}", dav.basic());

        // Beyond the quota: 507 before a byte is stored, with or without
        // a length, and nothing is left behind.
        let big = vec![7u8; 1_100_000];
        assert_eq!(dav.put("/big.bin", big.clone()).await.status(), 507);
        let (status, _) = raw(
            &addr,
            &format!("PUT {prefix}/big-chunked.bin HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\nTransfer-Encoding: chunked"),
            &[&big[..600_000], &big[600_000..]],
        )
        .await;
        assert_eq!(status, 507);
        assert_eq!(dav.get("/big.bin").await.0, 404);
        assert_eq!(dav.get("/big-chunked.bin").await.0, 404);
        assert_eq!(dav.put("/fits.bin", vec![1u8; 500_000]).await.status(), 201);
        let (_, quota) = dav
            .propfind(
                "/",
                "0",
                r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:quota-available-bytes/><D:quota-used-bytes/></D:prop></D:propfind>"#,
            )
            .await;
        assert!(quota.contains(">548576<") && quota.contains(">500000<"), "{quota}");

        // macOS Finder: chunked, with X-Expected-Entity-Length and no
        // Content-Length; the file keeps every byte.
        let finder_body: Vec<u8> = (0..70_000u32).map(|i| (i % 13) as u8).collect();
        let (status, _) = raw(
            &addr,
            &format!(
                "PUT {prefix}/finder.txt HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\nUser-Agent: WebDAVFS/3.0.0 (03008000) Darwin/22.1.0\r\nTransfer-Encoding: chunked\r\nX-Expected-Entity-Length: 70000"
            ),
            &[&finder_body[..30_000], &finder_body[30_000..]],
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(dav.get("/finder.txt").await, (200, finder_body.clone()));
        // Fewer bytes than announced: refused, nothing stored.
        let (status, _) = raw(
            &addr,
            &format!(
                "PUT {prefix}/short.txt HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\nTransfer-Encoding: chunked\r\nX-Expected-Entity-Length: 70000"
            ),
            &[&finder_body[..1000]],
        )
        .await;
        assert!(status >= 400, "{status}");
        assert_eq!(dav.get("/short.txt").await.0, 404);

        // rclone (owncloud vendor): modification time and checksum kept.
        let mtime_put = dav
            .request("PUT", "/synced.txt")
            .header("X-OC-Mtime", "1700000000")
            .header("OC-Checksum", "SHA1:aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(mtime_put.status(), 201);
        assert_eq!(mtime_put.headers()["x-oc-mtime"], "accepted");
        let (_, props) = dav
            .propfind(
                "/synced.txt",
                "0",
                r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns"><D:prop><D:getlastmodified/><oc:checksums/></D:prop></D:propfind>"#,
            )
            .await;
        assert!(props.contains("Tue, 14 Nov 2023 22:13:20 GMT"), "{props}");
        assert!(
            props.contains("SHA1:aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
            "{props}"
        );
        let lying = dav
            .request("PUT", "/lying.txt")
            .header("OC-Checksum", "SHA1:0000000000000000000000000000000000000000")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert!(lying.status().is_client_error(), "{}", lying.status());
        assert_eq!(dav.get("/lying.txt").await.0, 404);

        // Path traversal never leaves the drive, never errors out.
        for path in [
            "/../../../etc/passwd",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/a/..%2f..%2f..%2fetc/passwd",
            "/fits.bin/%2e%2e/%2e%2e",
        ] {
            let (status, text) = raw(
                &addr,
                &format!("GET {prefix}{path} HTTP/1.1\r\nHost: {addr}\r\n{auth}"),
                &[],
            )
            .await;
            assert!((400..500).contains(&status), "{path}: {status}");
            assert!(!text.contains("root:"), "{path}");
        }
        let (status, _) = raw(
            &addr,
            &format!("PUT {prefix}/nowhere%2Ffile.txt HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\nContent-Length: 2"),
            &[b"hi"],
        )
        .await;
        assert_eq!(status, 400, "a name cannot hold an encoded slash");
        assert_eq!(dav.propfind("/", "1", PROPS).await.1.matches("<D:response>").count(), 4);

        // Malformed and oversized XML: a clear 4xx, the server lives on.
        for body in [
            "<D:propfind xmlns:D=\"DAV:\"><D:prop>".to_owned(),
            "not xml at all".to_owned(),
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><x>&b;</x>"
                .to_owned(),
        ] {
            let (status, _) = dav.propfind("/", "0", &body).await;
            assert_eq!(status, 400, "{body}");
        }
        let huge = format!(
            "<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:prop>{}</D:prop></D:propfind>",
            "<D:getetag/>".repeat(10_000)
        );
        assert_eq!(dav.propfind("/", "0", &huge).await.0, 413);
        let bad_lock = dav.request("LOCK", "/fits.bin").body("<lockinfo").send().await.unwrap();
        assert_eq!(bad_lock.status(), 400);
        assert_eq!(dav.propfind("/", "0", PROPS).await.0, 207);
    }
}

#[tokio::test]
async fn killed_uploads_leave_whole_files_or_none() {
    for engine in ENGINES {
        let Some(dav) = Dav::new(engine, None).await else {
            continue;
        };
        let addr = dav.server.addr.clone();
        let prefix = format!("/dav/drives/{}", dav.drive);
        let auth = format!("Authorization: Basic {}", dav.basic());
        let whole: Vec<u8> = (0..4_000_000u32).map(|i| (i % 241) as u8).collect();

        // Acknowledged uploads, then uploads cut off midway by SIGKILL.
        for i in 0..3 {
            assert_eq!(dav.put(&format!("/done-{i}.bin"), whole.clone()).await.status(), 201);
        }
        let mut cut = Vec::new();
        for i in 0..4 {
            let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "PUT {prefix}/cut-{i}.bin HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\nContent-Length: {}\r\n\r\n",
                whole.len()
            );
            tcp.write_all(head.as_bytes()).await.unwrap();
            tcp.write_all(&whole[..1_500_000 + i * 500_000]).await.unwrap();
            cut.push(tcp);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let storage = dav.storage.clone();
        let Dav { server, .. } = dav;
        server.kill();
        drop(cut);

        let server = Server::start_on(&storage, &[]);
        let client = reqwest::Client::new();
        let fetch = |name: String| {
            let client = client.clone();
            let url = server.url(&format!("{prefix}/{name}"));
            async move {
                let response = client.get(url).basic_auth(MEMBER, Some(PASSWORD)).send().await.unwrap();
                (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
            }
        };
        for i in 0..3 {
            let (status, body) = fetch(format!("done-{i}.bin")).await;
            assert_eq!(status, 200, "{engine:?}: an acknowledged upload survives");
            assert!(body == whole, "{engine:?}: done-{i}.bin is complete");
        }
        for i in 0..4 {
            let (status, _) = fetch(format!("cut-{i}.bin")).await;
            assert_eq!(status, 404, "{engine:?}: a cut upload is absent");
        }
        // Nothing half-written stays on disk either.
        let tmp = storage.data.join("blobs").join("tmp");
        let leftovers: Vec<_> = walk(&tmp)
            .into_iter()
            .filter(|p| p.extension().is_none_or(|e| e != "lock"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The application password as rclone keeps it. Obscuring is salted:
/// do it once, since bisync names its state after the remote's settings.
async fn obscured(dav: &Dav) -> String {
    let out = tokio::process::Command::new("rclone")
        .args(["obscure", &dav.app_password])
        .output()
        .await
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs rclone with the drive as remote `drive:` (owncloud vendor, so
/// modification times and checksums round-trip); returns (ok, output).
async fn rclone(dav: &Dav, pass: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("rclone")
        .args(args)
        .args(["--config", "/dev/null", "--low-level-retries", "1", "--retries", "1"])
        .env("RCLONE_CONFIG_DRIVE_TYPE", "webdav")
        .env("RCLONE_CONFIG_DRIVE_URL", dav.url("/"))
        .env("RCLONE_CONFIG_DRIVE_VENDOR", "owncloud")
        .env("RCLONE_CONFIG_DRIVE_USER", MEMBER)
        .env("RCLONE_CONFIG_DRIVE_PASS", pass)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// 1,000 files of mixed sizes in nested folders, with spaces, accents and
/// emoji in their names.
fn mixed_tree(root: &std::path::Path) {
    let names = [
        "plain",
        "with space",
        "acentuación ñ",
        "emoji 🎉",
        "日本語",
        "dots.in.name",
    ];
    for i in 0..1000usize {
        let folder = root.join(format!("carpeta {}", i % 7)).join(names[i % names.len()]);
        std::fs::create_dir_all(&folder).unwrap();
        let size = match i % 10 {
            0 => 0,
            1 => 70_000 + i,
            _ => 100 + (i * 37) % 3000,
        };
        let body: Vec<u8> = (0..size).map(|b| ((b * 7 + i) % 256) as u8).collect();
        std::fs::write(
            folder.join(format!("{} file {i}.txt", names[(i / 3) % names.len()])),
            body,
        )
        .unwrap();
    }
}

#[tokio::test]
async fn rclone_syncs_both_ways() {
    if !peer("rclone", &["version"], "rclone sync", "apt-get install rclone") {
        return;
    }
    for engine in ENGINES {
        let Some(dav) = Dav::new(engine, None).await else {
            continue;
        };
        let pass = obscured(&dav).await;
        let work = dav.storage.data.join("rclone");
        let local = work.join("local");
        mixed_tree(&local);
        let local = local.to_str().unwrap().to_owned();

        // Up, then check: sizes, modification times and SHA-1 agree.
        let (ok, out) = rclone(&dav, &pass, &["sync", &local, "drive:tree", "--transfers", "8"]).await;
        assert!(ok, "{engine:?} sync up: {out}");
        let (ok, out) = rclone(&dav, &pass, &["check", &local, "drive:tree"]).await;
        assert!(ok && out.contains("0 differences found"), "{engine:?} check: {out}");
        assert!(out.contains("1000 matching files"), "{engine:?} check: {out}");
        // The server's SHA-1s (oc:checksums, nothing downloaded) match.
        let (ok, here) = rclone(&dav, &pass, &["hashsum", "sha1", &local]).await;
        assert!(ok, "{here}");
        let (ok, there) = rclone(&dav, &pass, &["hashsum", "sha1", "drive:tree"]).await;
        assert!(ok, "{there}");
        let sorted = |text: &str| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(&here).len(), 1000);
        assert_eq!(sorted(&here), sorted(&there), "{engine:?}: SHA-1 per file");

        // Down into an empty folder: identical, times kept.
        let down = work.join("down");
        let down = down.to_str().unwrap().to_owned();
        let (ok, out) = rclone(&dav, &pass, &["sync", "drive:tree", &down]).await;
        assert!(ok, "{engine:?} sync down: {out}");
        let (ok, out) = rclone(&dav, &pass, &["check", &local, &down, "--download"]).await;
        assert!(ok && out.contains("0 differences found"), "{engine:?}: {out}");
        // Sizes and modification times, to the second (what X-OC-Mtime carries).
        let to_seconds = |text: &str| {
            let mut lines: Vec<String> = text
                .lines()
                .map(|l| {
                    let mut parts = l.trim_start().splitn(4, ' ');
                    let size = parts.next().unwrap_or("");
                    let date = parts.next().unwrap_or("");
                    let time = parts.next().unwrap_or("").split('.').next().unwrap_or("");
                    format!("{size} {date} {time} {}", parts.next().unwrap_or(""))
                })
                .collect();
            lines.sort();
            lines
        };
        let (_, listed_local) = rclone(&dav, &pass, &["lsl", &local]).await;
        let (_, listed_down) = rclone(&dav, &pass, &["lsl", &down]).await;
        let (listed_local, listed_down) = (to_seconds(&listed_local), to_seconds(&listed_down));
        assert_eq!(listed_local.len(), 1000);
        let differs = listed_local.iter().zip(&listed_down).find(|(a, b)| a != b);
        assert!(differs.is_none(), "{engine:?}: sizes and times differ: {differs:?}");

        // Two-way: changes on both sides converge.
        let workdir = work.join("bisync");
        let workdir = workdir.to_str().unwrap();
        let (ok, out) = rclone(
            &dav,
            &pass,
            &["bisync", &local, "drive:tree", "--resync", "--workdir", workdir],
        )
        .await;
        assert!(ok, "{engine:?} bisync --resync: {out}");
        std::fs::write(format!("{local}/nuevo local 🆕.txt"), b"made on the NAS").unwrap();
        std::fs::remove_file(format!("{local}/carpeta 0/plain/plain file 0.txt")).unwrap();
        assert_eq!(
            dav.put("/tree/from%20server.txt", "made on the server").await.status(),
            201
        );
        assert_eq!(
            dav.status("DELETE", "/tree/carpeta%201/with%20space/plain%20file%201.txt")
                .await,
            204
        );
        let (ok, out) = rclone(&dav, &pass, &["bisync", &local, "drive:tree", "--workdir", workdir]).await;
        assert!(ok, "{engine:?} bisync: {out}");
        let (ok, out) = rclone(&dav, &pass, &["check", &local, "drive:tree"]).await;
        assert!(
            ok && out.contains("0 differences found"),
            "{engine:?} after bisync: {out}"
        );
        assert_eq!(
            std::fs::read(format!("{local}/from server.txt")).unwrap(),
            b"made on the server"
        );
        assert!(!std::path::Path::new(&format!("{local}/carpeta 1/with space/plain file 1.txt")).exists());
        assert_eq!(
            dav.get("/tree/nuevo%20local%20%F0%9F%86%95.txt").await.1,
            b"made on the NAS"
        );
        assert_eq!(dav.get("/tree/carpeta%200/plain/plain%20file%200.txt").await.0, 404);
    }
}

#[tokio::test]
async fn large_folders_are_listed_whole_across_pages() {
    // More entries than one page of the listing (2,500), both ways of
    // answering: named properties (read straight from the rows) and
    // `allprop`.
    const FILES: usize = 2_600;
    for engine in ENGINES {
        let Some(dav) = Dav::new(engine, None).await else {
            continue;
        };
        assert_eq!(dav.status("MKCOL", "/many").await, 201);
        // One client for all (a new one per request costs more than the
        // request).
        let client = reqwest::Client::new();
        let mut workers = Vec::new();
        for worker in 0..8 {
            let (client, url, password) = (client.clone(), dav.url("/many"), dav.app_password.clone());
            workers.push(tokio::spawn(async move {
                for i in (worker..FILES).step_by(8) {
                    let put = client
                        .put(format!("{url}/f{i:05}"))
                        .basic_auth(MEMBER, Some(&password))
                        .body("x")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(put.status(), 201);
                }
            }));
        }
        for worker in workers {
            worker.await.unwrap();
        }
        let named = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><D:getcontentlength/></D:prop></D:propfind>"#;
        for body in [named, PROPS] {
            let (status, listing) = dav.propfind("/many/", "1", body).await;
            assert_eq!(status, 207);
            assert!(listing.trim_end().ends_with("multistatus>"), "{engine:?}");
            let responses = listing.matches("response>").count() / 2;
            assert_eq!(responses, FILES + 1, "{engine:?}");
            for i in [0, 2_499, 2_500, FILES - 1] {
                assert_eq!(listing.matches(&format!("/many/f{i:05}<")).count(), 1, "{engine:?} {i}");
            }
        }
    }
}

/// Issue 21, item 3, over WebDAV: 300 concurrent requests with wrong
/// account passwords from one address ran 268 Argon2 verifications and
/// made a member elsewhere wait seconds. Now at most the network's
/// throttle worth are verified (each a 401); every other one is refused
/// at once with 429 and `Retry-After`; and a member on another address
/// (127.0.0.2) is served during the burst.
#[tokio::test]
async fn a_burst_of_wrong_passwords_from_one_address_is_refused_without_hashing() {
    for engine in ENGINES {
        let Some(dav) = Dav::new(engine, None).await else {
            continue;
        };
        let attacker = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 1]))
            .build()
            .unwrap();
        let member = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .unwrap();
        let first_refusal = tokio::sync::Notify::new();
        let burst = futures_util::future::join_all((0..300).map(|i| {
            let request = attacker
                .request(Method::from_bytes(b"PROPFIND").unwrap(), dav.url("/"))
                .basic_auth(format!("user{i}@example.org"), Some("wrong password!"))
                .header("Depth", "0")
                .send();
            let first_refusal = &first_refusal;
            async move {
                let response = request.await.unwrap();
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                if status == 429 {
                    first_refusal.notify_one();
                }
                (status, retry_after)
            }
        }));
        let burst = async {
            let outcomes = burst.await;
            first_refusal.notify_one();
            outcomes
        };
        let served = async {
            first_refusal.notified().await;
            member
                .request(Method::from_bytes(b"PROPFIND").unwrap(), dav.url("/"))
                .basic_auth(MEMBER, Some(PASSWORD))
                .header("Depth", "0")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        };
        let (outcomes, served) = tokio::join!(burst, served);
        assert_eq!(served, 207, "the member on another address is served");
        let verified = outcomes.iter().filter(|(status, _)| *status == 401).count();
        let refused = outcomes
            .iter()
            .filter(|(status, retry_after)| *status == 429 && *retry_after)
            .count();
        assert!(
            verified <= 31,
            "{verified} passwords verified, the network's throttle allows 31"
        );
        assert_eq!(verified + refused, 300, "{outcomes:?}");
    }
}
