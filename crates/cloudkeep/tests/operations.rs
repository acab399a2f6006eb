//! What an operator meets: the admin commands, settings layering, logs,
//! health, metrics, the OpenAPI document, shutdown.

mod common;

use common::*;
use std::process::{Command, Stdio};

fn field<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {output}"))
}

#[tokio::test]
async fn admin_commands_work_while_the_server_runs() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        let server = Server::start_on(&storage, &[]);
        let (ok, out, _) = storage.admin(&["org", "create", "--name", "Acme"], "");
        assert!(ok);
        let org_id = field(&out, "id").to_owned();
        assert_eq!(field(&out, "name"), "Acme");
        let (ok, _, err) = storage.admin(&["org", "create", "--name", "ACME"], "");
        assert!(!ok);
        assert!(err.contains("an organization with this name already exists"), "{err}");

        let (ok, out, err) = storage.admin(
            &[
                "user",
                "create",
                "--email",
                "lr@example.org",
                "--name",
                "Lee Rep",
                "--org",
                "Acme",
                "--role",
                "legal-representative",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        );
        assert!(ok, "{err}");
        assert_eq!(field(&out, "organization_id"), org_id);
        assert_eq!(field(&out, "role"), "legal-representative");
        let sync = field(&out, "sync_user_id").to_owned();

        let client = browser();
        api_sign_in(&server, &client, "lr@example.org", PASSWORD, false).await;
        let (_, me) = json(client.get(server.url("/api/v1/me")).send().await.unwrap()).await;
        assert_eq!(me["id"], field(&out, "id"));
        assert_eq!(me["sync_user_id"], sync);
        assert_eq!(me["organizations"][0]["role"], "legal-representative");
        assert!(
            server.setup_link().is_some(),
            "the server started before any account existed"
        );

        // Clear refusals.
        let cases: [(&[&str], &str, &str); 5] = [
            (
                &[
                    "user",
                    "create",
                    "--email",
                    "lr@example.org",
                    "--name",
                    "X",
                    "--password-stdin",
                ],
                PASSWORD,
                "already exists",
            ),
            (
                &[
                    "user",
                    "create",
                    "--email",
                    "new@example.org",
                    "--name",
                    "X",
                    "--password-stdin",
                ],
                "short",
                "at least 10 characters",
            ),
            (
                &[
                    "user",
                    "create",
                    "--email",
                    "not-an-email",
                    "--name",
                    "X",
                    "--password-stdin",
                ],
                PASSWORD,
                "is not an email address",
            ),
            (
                &[
                    "user",
                    "create",
                    "--email",
                    "n@example.org",
                    "--name",
                    "X",
                    "--org",
                    "Nope",
                    "--role",
                    "user",
                    "--password-stdin",
                ],
                PASSWORD,
                "no organization is named 'Nope'",
            ),
            (
                &[
                    "user",
                    "create",
                    "--email",
                    "n@example.org",
                    "--name",
                    "X",
                    "--org",
                    "Acme",
                    "--role",
                    "owner",
                    "--password-stdin",
                ],
                PASSWORD,
                "unknown role 'owner'",
            ),
        ];
        for (args, password, expected) in cases {
            let (ok, _, err) = storage.admin(args, &format!("{password}\n"));
            assert!(!ok, "{args:?} succeeded");
            assert!(err.contains(expected), "{args:?}: {err}");
        }
        let (ok, _, err) = storage.admin(&["user", "create", "--email", "n@example.org", "--name", "X"], "");
        assert!(
            !ok && err.contains("--password-stdin"),
            "passwords never come as arguments: {err}"
        );
    }
}

#[tokio::test]
async fn zero_configuration_uses_a_data_folder_in_the_working_directory() {
    let dir = store::testing::temp_dir("zeroconf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudkeep"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(&dir)
        .env_remove("CLOUDKEEP_DATABASE_URL")
        .env_remove("CLOUDKEEP_DATA")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        line.starts_with("setup: http://127.0.0.1:") && line.contains("/setup/"),
        "{line}"
    );
    let data = dir.join("cloudkeep-data");
    assert!(data.join("cloudkeep.db").is_file() && data.join("blobs").is_dir() && data.join("server.key").is_file());
    let mode = std::fs::read(data.join("cloudkeep.db")).unwrap();
    assert!(mode.starts_with(b"SQLite format 3"));
    let journal = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma journal_mode').fetchone()[0])",
        ])
        .arg(data.join("cloudkeep.db"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&journal.stdout).trim(), "wal");
}

#[tokio::test]
async fn settings_layer_file_then_environment_then_flags() {
    let Some(storage) = Storage::new(Engine::Sqlite).await else {
        return;
    };
    let config = storage.data.join("cloudkeep.toml");
    std::fs::write(&config, "log_format = \"json\"\n[session]\nidle_minutes = 30\n").unwrap();
    let config = config.display().to_string();
    let is_json = |server: &Server| server.log().lines().all(|l| l.starts_with('{'));

    let server = Server::start_with(&storage, &[], &["--config", &config]);
    assert!(is_json(&server), "file: {}", server.log());
    drop(server);
    let server = Server::start_with(&storage, &[("CLOUDKEEP_LOG_FORMAT", "text")], &["--config", &config]);
    assert!(!is_json(&server), "environment beats file");
    drop(server);
    let server = Server::start_with(
        &storage,
        &[("CLOUDKEEP_LOG_FORMAT", "text")],
        &["--config", &config, "--log-format", "json"],
    );
    assert!(is_json(&server), "flag beats environment");
    drop(server);

    std::fs::write(storage.data.join("bad.toml"), "listen_on = \"x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cloudkeep"))
        .args(["serve", "--config"])
        .arg(storage.data.join("bad.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid settings") && err.contains("listen_on"), "{err}");
}

#[tokio::test]
async fn logs_carry_request_ids_and_never_secrets() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        let server = Server::start_with(&storage, &[], &["--log-format", "json"]);
        let link = server.setup_link().unwrap();
        let token = link.rsplit('/').next().unwrap().to_owned();
        let b = browser();
        let page = b.get(&link).send().await.unwrap().text().await.unwrap();
        let r = b
            .post(&link)
            .form(&[
                ("csrf", csrf_of(&page).as_str()),
                ("organization", "Acme"),
                ("name", "Ana"),
                ("email", "ana@example.org"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let r = b
            .get(server.url("/api/v1/me"))
            .header("x-request-id", "trace-me-123")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-request-id"], "trace-me-123", "the id is echoed");
        let r = b.get(server.url("/healthz")).send().await.unwrap();
        assert!(
            !r.headers()["x-request-id"].is_empty(),
            "an id is made when none is sent"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));

        let log = server.log();
        for line in log.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            assert!(v["timestamp"].is_string() && v["level"].is_string());
        }
        assert!(log.contains("trace-me-123") && log.contains("/api/v1/me"), "{log}");
        assert!(
            log.contains("\"route\":\"/setup/{token}\""),
            "routes, not raw paths: {log}"
        );
        for secret in [token.as_str(), PASSWORD] {
            assert!(!log.contains(secret), "a secret reached the log");
        }
        let session = b.get(server.url("/")).send().await.unwrap();
        drop(session);
        assert!(!log.contains("ck_session="));
    }
}

/// What the operators' scraper sends in these tests.
const METRICS_TOKEN: &str = "3f9c1d0e8b7a6f5e4d3c2b1a09f8e7d6";

#[tokio::test]
async fn health_metrics_and_openapi() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");
        let server = Server::start_on(&storage, &[("CLOUDKEEP_METRICS_TOKEN", METRICS_TOKEN)]);
        let c = reqwest::Client::new();
        assert_eq!(
            c.get(server.url("/healthz"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "ok\n"
        );
        assert_eq!(
            c.get(server.url("/readyz")).send().await.unwrap().text().await.unwrap(),
            "ready\n"
        );
        let b = browser();
        api_sign_in(&server, &b, "ana@example.org", PASSWORD, false).await;
        let r = c
            .post(server.url("/api/v1/session"))
            .json(&serde_json::json!({"email": "ana@example.org", "password": "wrong wrong wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);

        let metrics = c
            .get(server.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for expected in [
            "cloudkeep_sign_ins_total{outcome=\"signed_in\"} 1",
            "cloudkeep_sign_ins_total{outcome=\"invalid_credentials\"} 1",
            "cloudkeep_http_requests_total{method=\"POST\",route=\"/api/v1/session\",status=\"200\"} 1",
            "cloudkeep_http_requests_total{method=\"POST\",route=\"/api/v1/session\",status=\"401\"} 1",
            "cloudkeep_http_request_duration_seconds_count{route=\"/api/v1/session\"} 2",
        ] {
            assert!(metrics.contains(expected), "missing {expected} in\n{metrics}");
        }

        let (status, doc) = json(c.get(server.url("/api/v1/openapi.json")).send().await.unwrap()).await;
        assert_eq!(status, 200);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        let expected = [
            ("/api/v1/session", vec!["post", "delete"]),
            ("/api/v1/me", vec!["get"]),
            ("/api/v1/me/notifications", vec!["get", "put"]),
            ("/api/v1/drives", vec!["get"]),
            ("/api/v1/orgs/{org}/drives", vec!["post"]),
            ("/api/v1/drives/{drive}/imports", vec!["get", "post"]),
            ("/api/v1/drives/{drive}/imports/{id}", vec!["get"]),
            ("/api/v1/drives/{drive}/imports/{id}/cancel", vec!["post"]),
            ("/api/v1/orgs/{org}/members", vec!["get"]),
            ("/api/v1/orgs/{org}/invitations", vec!["get", "post"]),
            ("/api/v1/orgs/{org}/invitations/{id}/resend", vec!["post"]),
            ("/api/v1/orgs/{org}/invitations/{id}", vec!["delete"]),
            ("/api/v1/orgs/{org}/members/{member}", vec!["patch", "delete"]),
            ("/api/v1/orgs/{org}/leave", vec!["post"]),
            ("/api/v1/orgs/{org}/members/{member}/security-alert", vec!["post"]),
            ("/api/v1/orgs/{org}/security-alerts", vec!["post"]),
            ("/api/v1/orgs/{org}/security-policy", vec!["get", "put"]),
            ("/api/v1/orgs/{org}/events", vec!["get"]),
            ("/api/v1/invitations/{token}/accept", vec!["post"]),
            ("/api/v1/me/password", vec!["put"]),
            ("/api/v1/me/sessions", vec!["get"]),
            ("/api/v1/me/sessions/{id}", vec!["delete"]),
            ("/api/v1/me/events", vec!["get"]),
            ("/api/v1/session/second-factor", vec!["post"]),
            ("/api/v1/me/two-factor", vec!["get"]),
            ("/api/v1/me/two-factor/default", vec!["put"]),
            ("/api/v1/me/two-factor/totp", vec!["post"]),
            ("/api/v1/me/two-factor/totp/{id}/confirm", vec!["post"]),
            ("/api/v1/me/two-factor/methods/{id}", vec!["delete"]),
            ("/api/v1/me/two-factor/backup-codes", vec!["post"]),
            ("/api/v1/me/two-factor/sms", vec!["post"]),
            ("/api/v1/me/two-factor/authenticator", vec!["post"]),
            ("/api/v1/authenticator/link", vec!["post"]),
            ("/api/v1/authenticator/requests", vec!["post"]),
            ("/api/v1/authenticator/requests/{request_id}/answer", vec!["post"]),
            ("/api/v1/session/second-factor/authenticator/{request_id}", vec!["get"]),
            ("/api/v1/me/two-factor/security-keys", vec!["post"]),
            ("/api/v1/me/two-factor/security-keys/{id}", vec!["post"]),
            ("/api/v1/me/two-factor/sms/{id}/confirm", vec!["post"]),
            ("/api/v1/me/two-factor/sms/{id}/resend", vec!["post"]),
            ("/api/v1/me/app-passwords", vec!["get", "post"]),
            ("/api/v1/me/app-passwords/{id}", vec!["delete"]),
            ("/api/v1/drives/{drive}/access", vec!["get", "put"]),
            ("/api/v1/drives/{drive}/access/{account}", vec!["put", "delete"]),
            ("/api/v1/openapi.json", vec!["get"]),
            ("/healthz", vec!["get"]),
            ("/readyz", vec!["get"]),
            ("/metrics", vec!["get"]),
        ];
        assert_eq!(paths.len(), expected.len(), "{:?}", paths.keys().collect::<Vec<_>>());
        for (path, methods) in expected {
            for method in methods {
                assert!(paths[path][method].is_object(), "{method} {path} undocumented");
                // And every documented route is really served.
                let r = c
                    .request(method.parse().unwrap(), server.url(&path.replace("{id}", "x")))
                    .send()
                    .await
                    .unwrap();
                assert_ne!(r.status(), 404, "{method} {path} documented but not served");
            }
        }
        let r = c.get(server.url("/api/v1/nope")).send().await.unwrap();
        assert_eq!(
            json(r).await,
            (
                404,
                serde_json::json!({"error":{"code":"not_found","message":"no such API route"}})
            )
        );
    }
}

#[tokio::test]
async fn sigterm_stops_gracefully() {
    let Some(server) = Server::start(Engine::Sqlite).await else {
        return;
    };
    assert_eq!(reqwest::get(server.url("/healthz")).await.unwrap().status(), 200);
    let stderr = server.stderr.clone();
    assert!(server.terminate(), "clean exit on SIGTERM");
    let log = stderr.lock().unwrap().join("\n");
    assert!(log.contains("shutting down") && log.contains("stopped"), "{log}");
}

/// The metrics address given in the server's log (announced before the
/// main address).
fn metrics_address(server: &Server) -> String {
    let log = server.log();
    let rest = log
        .split("metrics served at http://")
        .nth(1)
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    rest.split("/metrics").next().unwrap().to_owned()
}

/// `/metrics` tells who uses the server and how: not for anyone who can
/// reach the main address. Without settings it is not there; with a
/// token it answers only that token; on its own address it answers there
/// and only `/metrics`.
#[tokio::test]
async fn metrics_are_not_public() {
    let c = reqwest::Client::new();
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");

        // Nothing configured: nobody gets metrics from the main address.
        let server = Server::start_on(&storage, &[]);
        api_sign_in(&server, &browser(), MEMBER, PASSWORD, false).await;
        for token in [None, Some(METRICS_TOKEN), Some("")] {
            let mut request = c.get(server.url("/metrics"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 404, "{engine:?} {token:?}");
            assert!(!r.text().await.unwrap().contains("cloudkeep_"), "{engine:?} {token:?}");
        }
        drop(server);

        // A token: only it opens them.
        let server = Server::start_on(&storage, &[("CLOUDKEEP_METRICS_TOKEN", METRICS_TOKEN)]);
        api_sign_in(&server, &browser(), MEMBER, PASSWORD, false).await;
        let r = c.get(server.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{engine:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let wrong = format!("{}0", &METRICS_TOKEN[..METRICS_TOKEN.len() - 1]);
        for sent in [wrong.as_str(), &METRICS_TOKEN[1..], "", "Bearer"] {
            let r = c.get(server.url("/metrics")).bearer_auth(sent).send().await.unwrap();
            assert_eq!(r.status(), 401, "{engine:?} {sent}");
            assert!(!r.text().await.unwrap().contains("cloudkeep_"));
        }
        let r = c
            .get(server.url("/metrics"))
            .header("authorization", format!("Basic {METRICS_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{engine:?}");
        let r = c
            .get(server.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{engine:?}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains("cloudkeep_sign_ins_total{outcome=\"signed_in\"} 1"),
            "{text}"
        );
        drop(server);

        // Their own address (no token): served there, and only there.
        let server = Server::start_on(&storage, &[("CLOUDKEEP_METRICS_LISTEN", "127.0.0.1:0")]);
        api_sign_in(&server, &browser(), MEMBER, PASSWORD, false).await;
        let own = metrics_address(&server);
        assert_ne!(own, server.addr);
        assert_eq!(c.get(server.url("/metrics")).send().await.unwrap().status(), 404);
        let r = c.get(format!("http://{own}/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{engine:?}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains("cloudkeep_http_requests_total{method=\"POST\",route=\"/api/v1/session\",status=\"200\"} 1"),
            "{text}"
        );
        for other in ["/", "/healthz", "/api/v1/me", "/api/v1/openapi.json", "/signin"] {
            let r = c.get(format!("http://{own}{other}")).send().await.unwrap();
            assert_eq!(r.status(), 404, "{engine:?}: {other} on the metrics address");
        }
        drop(server);

        // Both: the token is asked for on the metrics address too.
        let server = Server::start_on(
            &storage,
            &[
                ("CLOUDKEEP_METRICS_LISTEN", "127.0.0.1:0"),
                ("CLOUDKEEP_METRICS_TOKEN", METRICS_TOKEN),
            ],
        );
        let own = metrics_address(&server);
        let url = format!("http://{own}/metrics");
        assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
        assert_eq!(
            c.get(&url).bearer_auth(METRICS_TOKEN).send().await.unwrap().status(),
            200
        );
        assert_eq!(
            c.get(server.url("/metrics"))
                .bearer_auth(METRICS_TOKEN)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}

/// A metrics token short enough to guess is refused at start.
#[test]
fn a_short_metrics_token_is_refused_at_start() {
    let data = store::testing::temp_dir("short-token");
    let out = Command::new(env!("CARGO_BIN_EXE_cloudkeep"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env_remove("CLOUDKEEP_DATABASE_URL")
        .env("CLOUDKEEP_METRICS_TOKEN", "secret")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics_token must have at least 16 characters"), "{err}");
    let _ = std::fs::remove_dir_all(&data);
}

/// Every file under `dir`, with its permission bits.
#[cfg(unix)]
fn files_with_modes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        if metadata.is_dir() {
            out.extend(files_with_modes(&path));
        } else {
            out.push((path, metadata.permissions().mode() & 0o777));
        }
    }
    out
}

/// The data folder holds the database, the server key, members' files and
/// emails with sign-in links: every file in it is owner-only, even when
/// the server runs with a umask that lets anyone read what it creates.
/// SQLite only (the database files are SQLite's; blobs and emails are the
/// same on both engines).
#[cfg(unix)]
#[tokio::test]
async fn every_file_in_the_data_folder_is_owner_only_whatever_the_umask() {
    let Some(storage) = Storage::new(Engine::Sqlite).await else {
        return;
    };
    let drive = storage.team_with_drive();
    // The server under `umask 000`: without explicit modes its files
    // would be 0666.
    let mut child = Command::new("sh")
        .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_cloudkeep"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&storage.data)
        .env_remove("CLOUDKEEP_DATABASE_URL")
        .env("CLOUDKEEP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let base = loop {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0,
            "the server exited"
        );
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break format!("http://{}", rest.split_whitespace().next().unwrap().trim_matches('"'));
        }
    };
    // Drain the log so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));

    // Writes of every kind: a session, a file, an email.
    let client = browser();
    let r = client
        .post(format!("{base}/api/v1/session"))
        .json(&serde_json::json!({"email": MEMBER, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .put(format!("{base}/dav/drives/{drive}/report.txt"))
        .basic_auth(MEMBER, Some(PASSWORD))
        // Large enough for a blob file of its own (small ones live in
        // the database).
        .body(vec![7u8; 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (_, me) = json(client.get(format!("{base}/api/v1/me")).send().await.unwrap()).await;
    let org = me["organizations"][0]["id"].as_str().unwrap().to_owned();
    let r = client
        .post(format!("{base}/api/v1/orgs/{org}/invitations"))
        .json(&serde_json::json!({"email": "new@example.org", "role": "user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let outbox = storage.data.join("outbox");
    for _ in 0..300 {
        let emails = std::fs::read_dir(&outbox).into_iter().flatten().flatten();
        if emails
            .into_iter()
            .any(|e| e.path().extension().is_some_and(|x| x == "eml"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // The outbox folder too: an email in it carries an invitation link,
    // and another local user must not list, plant or delete one.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&outbox).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "outbox is {mode:o}");
    }

    // Looked at while the server runs: the -wal and -shm files exist.
    let files = files_with_modes(&storage.data);
    let name = |p: &std::path::Path| p.file_name().unwrap().to_string_lossy().into_owned();
    for expected in ["cloudkeep.db", "cloudkeep.db-wal", "cloudkeep.db-shm", "server.key"] {
        assert!(
            files.iter().any(|(p, _)| name(p) == expected),
            "no {expected}: {files:?}"
        );
    }
    let blobs = storage.data.join("blobs");
    assert!(
        files
            .iter()
            .any(|(p, _)| p.starts_with(&blobs) && !p.starts_with(blobs.join("tmp"))),
        "no blob: {files:?}"
    );
    assert!(
        files.iter().any(|(p, _)| p.extension().is_some_and(|x| x == "eml")),
        "no email: {files:?}"
    );
    let open: Vec<_> = files.iter().filter(|(_, mode)| mode & 0o077 != 0).collect();
    assert!(open.is_empty(), "readable by others: {open:?}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The data folder, settings file and database options are accepted after
/// the subcommand too, as people write them.
#[test]
fn admin_takes_its_common_options_after_the_subcommand() {
    let work = store::testing::temp_dir("options-after");
    let data = work.join("data");
    let create = || {
        Command::new(env!("CARGO_BIN_EXE_cloudkeep"))
            .current_dir(&work)
            .args(["admin", "org", "create", "--name", "Acme", "--data"])
            .arg(&data)
            .env_remove("CLOUDKEEP_DATABASE_URL")
            .env_remove("CLOUDKEEP_DATA")
            .output()
            .unwrap()
    };
    let first = create();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(data.is_dir(), "the named data folder is used");
    assert!(!work.join("cloudkeep-data").exists(), "not the default one");
    // The same folder again: the name is taken there.
    let second = create();
    assert!(!second.status.success());
    let _ = std::fs::remove_dir_all(&work);
}
