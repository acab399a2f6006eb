//! XML that used to kill the server, black-box on SQLite and PostgreSQL:
//! deeply nested WebDAV bodies (from a read-only member too), entity
//! bombs, a DOCTYPE reaching for a local file, oversized bodies, and an
//! import source answering its listing with the same. Each is refused
//! with a short reason and the server answers the next request.
//!
//! Escaping (issue 21, 6f): a dead property whose namespace and value
//! hold `"`, `<`, `&` comes back in well-formed XML from both PROPFIND
//! paths.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Ana (admin, writes) and Bo (a member the drive makes read-only), each
/// with an application password, on a running server.
struct Team {
    _storage: Storage,
    server: Server,
    drive: String,
    ana: String,
    bo: String,
}

async fn app_password(server: &Server, email: &str) -> String {
    let client = browser();
    api_sign_in(server, &client, email, PASSWORD, false).await;
    new_app_password(server, &client, "WebDAV").await
}

impl Team {
    async fn new(engine: Engine) -> Option<Team> {
        let storage = Storage::new(engine).await?;
        let drive = storage.team_with_drive();
        let (ok, _, err) = storage.admin(&["drive", "access", "--drive", &drive, "--members", "read"], "");
        assert!(ok, "{err}");
        let server = Server::start_on(&storage, &[]);
        let ana = app_password(&server, MEMBER).await;
        let bo = app_password(&server, COLLEAGUE).await;
        Some(Team {
            _storage: storage,
            server,
            drive,
            ana,
            bo,
        })
    }

    /// `method` on `path` with `body`, as `who`; the status (0 when the
    /// server did not answer) and the body.
    async fn send(&self, who: &str, method: &str, path: &str, body: &str) -> (u16, String) {
        self.send_with_depth(who, method, path, body, "0").await
    }

    async fn send_with_depth(&self, who: &str, method: &str, path: &str, body: &str, depth: &str) -> (u16, String) {
        let password = if who == MEMBER { &self.ana } else { &self.bo };
        let sent = reqwest::Client::new()
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                self.server.url(&format!("/dav/drives/{}{path}", self.drive)),
            )
            .basic_auth(who, Some(password))
            .header("Depth", depth)
            .header("Content-Type", "application/xml; charset=utf-8")
            .body(body.to_owned())
            .timeout(Duration::from_secs(60))
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    /// The server still answers a plain listing.
    async fn assert_alive(&self, after: &str) {
        let (status, _) = self
            .send(
                MEMBER,
                "PROPFIND",
                "/",
                r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>"#,
            )
            .await;
        assert_eq!(status, 207, "the server no longer answers after {after}");
    }
}

/// `<outer>` then `depth` nested `<x>` elements: about 7 bytes each.
fn nested(open: &str, close: &str, depth: usize) -> String {
    format!(
        "<?xml version=\"1.0\"?>{open}{}{}{close}",
        "<x>".repeat(depth),
        "</x>".repeat(depth)
    )
}

/// Parameter entities, each ten of the one before, declared in a
/// DOCTYPE: `levels` 8 is about 500 bytes that expand to 1 GB, 9 to 10 GB.
fn entity_bomb(levels: u8) -> String {
    let mut doctype = String::from("<!ENTITY % a \"xxxxxxxxxx\">");
    for level in 1..=levels {
        let (name, previous) = ((b'a' + level) as char, (b'a' + level - 1) as char);
        doctype.push_str(&format!(
            "<!ENTITY % {name} \"{}\">",
            format!("%{previous};").repeat(10)
        ));
    }
    format!(
        "<?xml version=\"1.0\"?><!DOCTYPE D:propfind [{doctype}]><D:propfind xmlns:D=\"DAV:\"><D:allprop/></D:propfind>"
    )
}

const PROPFIND_OPEN: &str = "<D:propfind xmlns:D=\"DAV:\"><D:prop>";
const PROPFIND_CLOSE: &str = "</D:prop></D:propfind>";

#[tokio::test]
async fn nested_bodies_are_refused_and_the_server_lives_on() {
    for engine in ENGINES {
        let Some(team) = Team::new(engine).await else {
            continue;
        };
        // 2,000 nested elements, 14 KB: it overflowed the stack.
        let deep = nested(PROPFIND_OPEN, PROPFIND_CLOSE, 2000);
        assert!(deep.len() < 15_000);
        for who in [MEMBER, COLLEAGUE] {
            let (status, reason) = team.send(who, "PROPFIND", "/", &deep).await;
            assert_eq!(status, 400, "{engine:?} {who}: {reason}");
            assert!(reason.contains("deeper than 64"), "{reason}");
            team.assert_alive("a nested PROPFIND").await;
        }
        let proppatch = nested(
            "<D:propertyupdate xmlns:D=\"DAV:\"><D:set><D:prop>",
            "</D:prop></D:set></D:propertyupdate>",
            2000,
        );
        let lock = nested(
            "<D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>",
            "</D:owner></D:lockinfo>",
            // Within the 8 KiB a LOCK body may take, far past the depth.
            500,
        );
        let report = nested("<D:sync-collection xmlns:D=\"DAV:\">", "</D:sync-collection>", 2000);
        for (method, body) in [("PROPPATCH", &proppatch), ("LOCK", &lock), ("REPORT", &report)] {
            let (status, reason) = team.send(MEMBER, method, "/", body).await;
            assert_eq!(status, 400, "{engine:?} {method}: {reason}");
            team.assert_alive(method).await;
        }
        // What clients send still works: nesting well inside the limit.
        let (status, _) = team
            .send(MEMBER, "PROPFIND", "/", &nested(PROPFIND_OPEN, PROPFIND_CLOSE, 40))
            .await;
        assert_eq!(status, 207);
        let (status, answer) = team
            .send(
                MEMBER,
                "LOCK",
                "/",
                "<D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>mailto:ana@example.org</D:href></D:owner></D:lockinfo>",
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("mailto:ana@example.org"), "{answer}");
    }
}

#[tokio::test]
async fn entity_bombs_and_doctypes_are_refused_and_the_server_lives_on() {
    for engine in ENGINES {
        let Some(team) = Team::new(engine).await else {
            continue;
        };
        for levels in [8, 9] {
            let bomb = entity_bomb(levels);
            assert!(bomb.len() < 560, "{}", bomb.len());
            // A read-only member may send a PROPFIND.
            let (status, reason) = team.send(COLLEAGUE, "PROPFIND", "/", &bomb).await;
            assert_eq!(status, 400, "{engine:?} {levels}: {reason}");
            assert!(reason.contains("DOCTYPE"), "{reason}");
            team.assert_alive("an entity bomb").await;
            let (status, _) = team.send(MEMBER, "PROPPATCH", "/", &bomb).await;
            assert_eq!(status, 400);
            team.assert_alive("an entity bomb in a PROPPATCH").await;
        }
        // An external entity naming a local file: refused, nothing read.
        let xxe = "<?xml version=\"1.0\"?><!DOCTYPE D:propertyupdate [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\
            <D:propertyupdate xmlns:D=\"DAV:\" xmlns:Z=\"urn:z\"><D:set><D:prop><Z:leak>&x;</Z:leak></D:prop></D:set></D:propertyupdate>";
        let (status, reason) = team.send(MEMBER, "PROPPATCH", "/", xxe).await;
        assert_eq!(status, 400, "{reason}");
        assert!(!reason.contains("root:"));
        let (_, listing) = team
            .send(
                MEMBER,
                "PROPFIND",
                "/",
                "<D:propfind xmlns:D=\"DAV:\" xmlns:Z=\"urn:z\"><D:prop><Z:leak/></D:prop></D:propfind>",
            )
            .await;
        assert!(!listing.contains("root:"), "{listing}");
        // An entity no DOCTYPE declares is an error too, not an empty string.
        let (status, reason) = team
            .send(
                MEMBER,
                "PROPFIND",
                "/",
                "<D:propfind xmlns:D=\"DAV:\"><D:prop><D:getetag/>&x;</D:prop></D:propfind>",
            )
            .await;
        assert_eq!(status, 400, "{reason}");
        team.assert_alive("an external entity").await;
    }
}

#[tokio::test]
async fn oversized_and_malformed_bodies_get_clear_errors() {
    for engine in ENGINES {
        let Some(team) = Team::new(engine).await else {
            continue;
        };
        // Over 64 KiB: 413 before parsing.
        let huge = format!("{PROPFIND_OPEN}{}{PROPFIND_CLOSE}", "<D:getetag/>".repeat(10_000));
        for method in ["PROPFIND", "PROPPATCH", "LOCK"] {
            let (status, reason) = team.send(MEMBER, method, "/", &huge).await;
            assert_eq!(status, 413, "{engine:?} {method}: {reason}");
            assert!(reason.contains("larger than"), "{reason}");
        }
        // Many elements, shallow and under the size limit.
        let wide = format!("{PROPFIND_OPEN}{}{PROPFIND_CLOSE}", "<a/>".repeat(12_000));
        let (status, reason) = team.send(MEMBER, "PROPFIND", "/", &wide).await;
        assert_eq!(status, 400, "{reason}");
        assert!(reason.contains("more than 10000 elements"), "{reason}");
        for bad in ["<D:propfind xmlns:D=\"DAV:\"><D:prop>", "not xml", "<a></b>", "<p:a/>"] {
            let (status, reason) = team.send(COLLEAGUE, "PROPFIND", "/", bad).await;
            assert_eq!(status, 400, "{bad}: {reason}");
            assert!(reason.starts_with("the XML"), "{reason}");
        }
        team.assert_alive("oversized bodies").await;
    }
}

/// A property whose namespace and value hold the characters XML must
/// escape, set by PROPPATCH and read back through the fast PROPFIND path
/// (named properties) and through `dav-server` (`allprop`): both answers
/// parse, and give back the same namespace and value.
#[tokio::test]
async fn properties_with_quotes_and_markup_round_trip_as_well_formed_xml() {
    use dav::xml::{Limits, parse};
    const NS: &str = "urn:x\"<&'>";
    const VALUE: &str = "a \"quoted\" <b>&amp; 'it'";
    for engine in ENGINES {
        let Some(team) = Team::new(engine).await else {
            continue;
        };
        let ns = dav::xml::escape(NS);
        let value = dav::xml::escape(VALUE);
        let patch = format!(
            "<?xml version=\"1.0\"?><D:propertyupdate xmlns:D=\"DAV:\" xmlns:Z=\"{ns}\"><D:set><D:prop>\
             <Z:note kind=\"{value}\">{value}</Z:note></D:prop></D:set></D:propertyupdate>"
        );
        assert_eq!(team.send(MEMBER, "PUT", "/note.txt", "hello").await.0, 201);
        let (status, answer) = team.send(MEMBER, "PROPPATCH", "/note.txt", &patch).await;
        assert_eq!(status, 207, "{engine:?}: {answer}");
        parse(answer.as_bytes(), Limits::LISTING).unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert!(answer.contains("200 OK"), "{answer}");

        let named = format!(
            "<D:propfind xmlns:D=\"DAV:\" xmlns:Z=\"{ns}\"><D:prop><Z:note/><Z:missing/></D:prop></D:propfind>"
        );
        for body in ["<D:propfind xmlns:D=\"DAV:\"><D:allprop/></D:propfind>", named.as_str()] {
            let (status, answer) = team.send(MEMBER, "PROPFIND", "/note.txt", body).await;
            assert_eq!(status, 207, "{answer}");
            let root = parse(answer.as_bytes(), Limits::LISTING).unwrap_or_else(|e| panic!("{e}: {answer}"));
            // Depth-first search for the property, without recursion.
            let mut stack = vec![&root];
            let mut note = None;
            while let Some(e) = stack.pop() {
                if e.is(NS, "note") {
                    note = Some(e);
                    break;
                }
                stack.extend(e.elements());
            }
            let note = note.unwrap_or_else(|| panic!("no property in {answer}"));
            assert_eq!(note.text(), VALUE, "{answer}");
            assert_eq!(note.attributes[0].1, VALUE, "{answer}");
        }
        // A name with `&` and `'` (left as they are in a URL path) in a
        // listing of named properties.
        assert_eq!(team.send(MEMBER, "PUT", "/a%26b'c.txt", "hello").await.0, 201);
        let rclone = "<d:propfind xmlns:d=\"DAV:\"><d:prop><d:getetag/><d:resourcetype/></d:prop></d:propfind>";
        let (status, answer) = team.send_with_depth(MEMBER, "PROPFIND", "/", rclone, "1").await;
        assert_eq!(status, 207, "{answer}");
        let root = parse(answer.as_bytes(), Limits::LISTING).unwrap_or_else(|e| panic!("{e}: {answer}"));
        let hrefs: Vec<String> = root
            .elements()
            .filter_map(|r| r.elements().find(|e| e.is("DAV:", "href")).map(|h| h.text()))
            .collect();
        assert!(hrefs.iter().any(|h| h.ends_with("/a&b'c.txt")), "{hrefs:?}");

        // The fast path's 404 list names the missing one in that namespace.
        let (_, answer) = team.send(MEMBER, "PROPFIND", "/note.txt", &named).await;
        let root = parse(answer.as_bytes(), Limits::LISTING).unwrap();
        let mut stack = vec![&root];
        let mut missing = false;
        while let Some(e) = stack.pop() {
            missing |= e.is(NS, "missing");
            stack.extend(e.elements());
        }
        assert!(missing, "{answer}");
    }
}

/// A source that answers every request with `status` and `body`: a
/// hostile WebDAV server.
async fn hostile_source(body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/share/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                // Read the request head and whatever body came with it.
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await;
                let head = format!(
                    "HTTP/1.1 207 Multi-Status\r\nContent-Type: application/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(body.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test]
async fn a_hostile_import_source_fails_the_import_not_the_server() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        let drive = storage.team_with_drive();
        // Imports from loopback are refused unless the operator allows it.
        let server = Server::start_on(&storage, &[("CLOUDKEEP_IMPORT_ALLOW_NETWORKS", "127.0.0.0/8")]);
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let deep = format!(
            "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\">{}",
            "<D:response>".repeat(100_000)
        );
        let bomb = entity_bomb(9).replace("D:propfind", "D:multistatus");
        for (what, body, reason) in [("nested", deep, "deeper than 64"), ("entity bomb", bomb, "DOCTYPE")] {
            let source = hostile_source(body).await;
            let (status, import) = json(
                ana.post(server.url(&format!("/api/v1/drives/{drive}/imports")))
                    .json(&serde_json::json!({
                        "source_url": source,
                        "user": "nas",
                        "password": "secret",
                        "folder": "/",
                    }))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 201, "{engine:?} {what}: {import}");
            let id = import["id"].as_str().unwrap();
            let started = Instant::now();
            let report = loop {
                let (status, report) = json(
                    ana.get(server.url(&format!("/api/v1/drives/{drive}/imports/{id}")))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{engine:?} {what}: the server stopped answering: {e}")),
                )
                .await;
                assert_eq!(status, 200, "{report}");
                if report["state"] != "running" && report["state"] != "queued" {
                    break report;
                }
                assert!(started.elapsed() < Duration::from_secs(60), "import stuck: {report}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!(report["state"], "failed", "{engine:?} {what}: {report}");
            let error = report["error"].as_str().unwrap();
            assert!(error.contains("refused") && error.contains(reason), "{what}: {error}");
            assert_eq!(
                ana.get(server.url("/api/v1/me")).send().await.unwrap().status(),
                200,
                "{what}"
            );
        }
    }
}
