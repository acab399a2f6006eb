//! The console in a real browser (headless Chromium driven by
//! playwright-core, see `browser/*.mjs`), on SQLite and PostgreSQL.
//! Needs `/usr/bin/chromium`, `node` and `npm ci` in `tests/browser`:
//! skipped with a message when missing, a failure under `CI=true`.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn browser_peers_missing() -> Option<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is not installed (apt-get install chromium)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Some(format!(
            "playwright-core is not installed (npm ci in {})",
            dir.display()
        ));
    }
    None
}

/// `false` (after saying why) when the browser peers are missing outside CI.
fn peers_ready() -> bool {
    let Some(why) = browser_peers_missing() else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "browser test needs its peers under CI: {why}"
    );
    eprintln!("SKIPPED (browser test): {why}");
    false
}

/// Runs one browser script; it prints "browser checks passed" when done.
fn run_script(script: &str, args: &[&str], server: &Server) {
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser").join(script))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log()
    );
    assert!(stdout.contains("browser checks passed"));
    eprint!("{stdout}");
}

fn screenshot_dir(server: &Server) -> String {
    let shots = server.data.join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    eprintln!("screenshots: {}", shots.display());
    shots.display().to_string()
}

#[tokio::test]
#[cfg_attr(
    missing_browser,
    ignore = "Chromium, node or playwright-core is missing (apt-get install chromium nodejs npm; npm ci in crates/cloudkeep/tests/browser)"
)]
async fn console_in_headless_chromium() {
    if !peers_ready() {
        return;
    }
    for engine in ENGINES {
        let Some(server) = Server::start(engine).await else {
            continue;
        };
        let link = server.setup_link().expect("setup link");
        run_script("console.mjs", &[&link, &screenshot_dir(&server)], &server);
    }
}

#[tokio::test]
#[cfg_attr(
    missing_browser,
    ignore = "Chromium, node or playwright-core is missing (apt-get install chromium nodejs npm; npm ci in crates/cloudkeep/tests/browser)"
)]
async fn two_factor_in_headless_chromium() {
    if !peers_ready() {
        return;
    }
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let shots = screenshot_dir(&server);
        run_script("two_factor.mjs", &[&server.base, MEMBER, PASSWORD, &shots], &server);
    }
}

#[tokio::test]
#[cfg_attr(
    missing_browser,
    ignore = "Chromium, node or playwright-core is missing (apt-get install chromium nodejs npm; npm ci in crates/cloudkeep/tests/browser)"
)]
async fn security_keys_in_headless_chromium() {
    if !peers_ready() {
        return;
    }
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        // The relying party is localhost: the page must be opened there.
        let port = server.addr.rsplit(':').next().unwrap().to_owned();
        let base = format!("http://localhost:{port}");
        let shots = screenshot_dir(&server);
        run_script("security_key.mjs", &[&base, MEMBER, PASSWORD, &shots], &server);
    }
}

#[tokio::test]
#[cfg_attr(
    missing_browser,
    ignore = "Chromium, node or playwright-core is missing (apt-get install chromium nodejs npm; npm ci in crates/cloudkeep/tests/browser)"
)]
async fn push_approval_in_headless_chromium() {
    if !peers_ready() {
        return;
    }
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        let (state, _) = link_app(&server, &member, "Phone").await;
        let shots = screenshot_dir(&server);
        let app = env!("CARGO_BIN_EXE_cloudkeep-authenticator");
        let state = state.display().to_string();
        run_script(
            "push.mjs",
            &[&server.base, MEMBER, PASSWORD, &shots, app, &state],
            &server,
        );
    }
}

#[tokio::test]
#[cfg_attr(
    missing_browser,
    ignore = "Chromium, node or playwright-core is missing (apt-get install chromium nodejs npm; npm ci in crates/cloudkeep/tests/browser)"
)]
async fn drives_in_headless_chromium() {
    if !peers_ready() {
        return;
    }
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        let drive = storage.team_with_drive();
        let server = Server::start_on(&storage, &[]);
        let shots = screenshot_dir(&server);
        run_script(
            "drives.mjs",
            &[&server.base, MEMBER, COLLEAGUE, PASSWORD, &drive, &shots],
            &server,
        );
    }
}

/// What a hostile member uploads: documents whose script reads the
/// console's API with the session of whoever opens them, synchronously
/// (so it has run once the page has loaded), and writes the answer into
/// the page.
const EVIL_HTML: &str = r#"<!doctype html><title>Quarterly report</title>
<p id="out">nothing read</p>
<script>
var x = new XMLHttpRequest();
x.open('GET', '/api/v1/me', false);
x.send();
document.getElementById('out').textContent = 'stolen:' + x.status + ':' + x.responseText;
</script>"#;
const EVIL_SVG: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" width="400" height="100">
<text id="out" x="10" y="50">nothing read</text>
<script>
var x = new XMLHttpRequest();
x.open('GET', '/api/v1/me', false);
x.send();
document.getElementById('out').textContent = 'stolen:' + x.status + ':' + x.responseText;
</script></svg>"#;

#[tokio::test]
#[cfg_attr(
    missing_browser,
    ignore = "Chromium, node or playwright-core is missing (apt-get install chromium nodejs npm; npm ci in crates/cloudkeep/tests/browser)"
)]
async fn uploaded_pages_do_not_run_as_the_console() {
    if !peers_ready() {
        return;
    }
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        let drive = storage.team_with_drive();
        let server = Server::start_on(&storage, &[]);
        // Bo, an ordinary member, uploads over WebDAV.
        let bo = browser();
        api_sign_in(&server, &bo, COLLEAGUE, PASSWORD, false).await;
        let bo_password = new_app_password(&server, &bo, "WebDAV").await;
        for (name, body) in [("evil.html", EVIL_HTML), ("evil.svg", EVIL_SVG)] {
            let put = reqwest::Client::new()
                .put(server.url(&format!("/dav/drives/{drive}/{name}")))
                .basic_auth(COLLEAGUE, Some(&bo_password))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(put.status(), 201, "{name}");
        }
        // Ana, an admin, opens them.
        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let ana_password = new_app_password(&server, &ana, "WebDAV").await;
        let shots = screenshot_dir(&server);
        run_script(
            "active_content.mjs",
            &[&server.base, MEMBER, PASSWORD, &ana_password, &drive, &shots],
            &server,
        );
    }
}

/// Where the console tour keeps its screenshots: `CLOUDKEEP_SCREENSHOTS`
/// when set (CI keeps that folder as an artifact), else the test's data
/// folder.
fn tour_screenshot_dir(server: &Server, engine: Engine) -> String {
    match std::env::var("CLOUDKEEP_SCREENSHOTS") {
        Ok(root) if !root.is_empty() => {
            let shots = Path::new(&root).join(format!("{engine:?}").to_lowercase());
            std::fs::create_dir_all(&shots).unwrap();
            eprintln!("screenshots: {}", shots.display());
            shots.display().to_string()
        }
        _ => screenshot_dir(server),
    }
}

/// Every console page at 1280×800 and 390×844, in English and Spanish:
/// nothing scrolls sideways, axe-core finds nothing serious or critical,
/// and a keyboard alone signs in with a TOTP code, creates an application
/// password and removes a member (`browser/tour.mjs`). The data each page
/// needs is made here: an organization with two members, two-step
/// verification (a TOTP app and the authenticator app), an application
/// password, a drive with a folder and files, and an import.
#[tokio::test]
#[cfg_attr(
    missing_browser,
    ignore = "Chromium, node or playwright-core is missing (apt-get install chromium nodejs npm; npm ci in crates/cloudkeep/tests/browser)"
)]
#[cfg_attr(missing_oathtool, ignore = "oathtool is not installed (apt-get install oathtool)")]
async fn every_page_at_two_sizes_in_two_languages() {
    if !peers_ready() {
        return;
    }
    for engine in ENGINES {
        // A server still waiting for its setup, for the setup page.
        let Some(fresh) = Server::start(engine).await else {
            continue;
        };
        let setup = fresh.setup_link().expect("setup link");
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        let drive = storage.team_with_drive();
        let server = Server::start_on(&storage, &[]);
        // Security keys need the relying party's name: localhost.
        let port = server.addr.rsplit(':').next().unwrap().to_owned();
        let base = format!("http://localhost:{port}");

        let ana = browser();
        api_sign_in(&server, &ana, MEMBER, PASSWORD, false).await;
        let Some((secret, _codes)) = enable_totp(&server, &ana).await else {
            return;
        };
        link_app(&server, &ana, "Pixel 8").await;
        let app_password = new_app_password(&server, &ana, "NAS QNAP").await;
        for (path, body) in [
            ("Año 2026/", None),
            ("Imported/", None),
            ("Año 2026/informe trimestral.txt", Some("quarterly figures\n")),
            ("presupuesto-2026-versión-final-revisada.ods", Some("budget\n")),
            ("notes.txt", Some("notes\n")),
        ] {
            let url = server.url(&format!("/dav/drives/{drive}/{path}"));
            let request = match body {
                None => reqwest::Client::new().request(reqwest::Method::from_bytes(b"MKCOL").unwrap(), url),
                Some(body) => reqwest::Client::new().put(url).body(body),
            };
            let status = request
                .basic_auth(MEMBER, Some(&app_password))
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "{path}: {status}");
        }
        let (status, import) = json(
            ana.post(server.url(&format!("/api/v1/drives/{drive}/imports")))
                .json(&serde_json::json!({
                    "source_url": server.url(&format!("/dav/drives/{drive}/A%C3%B1o%202026/")),
                    "user": MEMBER,
                    "password": app_password,
                    "folder": "/Imported",
                }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!((200..300).contains(&status), "{import}");

        let shots = tour_screenshot_dir(&server, engine);
        let outbox = server.data.join("outbox").display().to_string();
        run_script(
            "tour.mjs",
            &[
                &setup, &base, MEMBER, COLLEAGUE, PASSWORD, &secret, &drive, &outbox, &shots,
            ],
            &server,
        );
    }
}
