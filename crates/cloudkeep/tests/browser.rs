//! The console in a real browser (headless Chromium driven by
//! playwright-core, see `browser/console.mjs`), on SQLite and PostgreSQL.
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

#[tokio::test]
async fn console_in_headless_chromium() {
    if let Some(why) = browser_peers_missing() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "browser test needs its peers under CI: {why}"
        );
        eprintln!("SKIPPED (browser test): {why}");
        return;
    }
    for engine in ENGINES {
        let Some(server) = Server::start(engine).await else {
            continue;
        };
        let link = server.setup_link().expect("setup link");
        let shots = server.data.join("screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let out = Command::new("node")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.mjs"))
            .arg(&link)
            .arg(&shots)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "browser checks failed:\n{stdout}\n{stderr}\nserver log:\n{}",
            server.log()
        );
        assert!(stdout.contains("browser checks passed"));
        eprintln!("screenshots: {}", shots.display());
    }
}
