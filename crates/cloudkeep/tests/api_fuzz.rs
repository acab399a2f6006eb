//! The JSON API fuzzed from its own OpenAPI document by a real,
//! independent client: schemathesis (PyPI) reads `/api/v1/openapi.json`
//! from the running server and sends, signed in, examples built from each
//! operation's parameters and body (valid ones and broken ones), then
//! checks that no answer is a server error and that every status answered
//! is one the document declares for that operation.
//!
//! schemathesis is found through `CLOUDKEEP_SCHEMATHESIS` (the path of its
//! `schemathesis` program), else `/opt/schemathesis/bin/schemathesis` (where
//! `.ci/run` installs it), else `schemathesis` on the `PATH`. Each run draws
//! new examples; a failing run prints its seed, and
//! `CLOUDKEEP_FUZZ_SEED=<seed>` runs the same examples again.

mod common;

use common::*;
use std::process::Command;

/// Examples per operation and phase: enough to reach every extractor and
/// error path, bounded so one engine's run takes well under a minute.
const EXAMPLES_PER_OPERATION: &str = "20";

/// Operations that would end the signed-in session the run uses, which
/// would leave every later example answering `401`: signing out, and
/// revoking a session (the run's own id is in the session list it reads).
const EXCLUDED_OPERATIONS: [&str; 2] = ["delete_session", "revoke_session"];

fn schemathesis() -> Option<String> {
    let program = std::env::var("CLOUDKEEP_SCHEMATHESIS")
        .ok()
        .filter(|p| !p.is_empty())
        .or_else(|| {
            let installed = "/opt/schemathesis/bin/schemathesis";
            std::path::Path::new(installed).exists().then(|| installed.to_owned())
        })
        .unwrap_or_else(|| "schemathesis".to_owned());
    peer(
        &program,
        &["--version"],
        "API fuzzing",
        "python3 -m venv /opt/schemathesis && /opt/schemathesis/bin/pip install 'schemathesis>=4,<5', or set CLOUDKEEP_SCHEMATHESIS",
    )
    .then_some(program)
}

/// The session cookie's value after signing in as `email`.
async fn session_cookie(server: &Server, email: &str) -> String {
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/session"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("ck_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

#[tokio::test]
#[cfg_attr(
    missing_schemathesis,
    ignore = "schemathesis is not installed (see .ci/run, or set CLOUDKEEP_SCHEMATHESIS)"
)]
async fn the_api_fuzzed_from_its_own_document_answers_no_server_error_and_only_declared_statuses() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        // An admin of an organization with a drive and a colleague, so the
        // run reaches real drives, members and policies, not only 404s.
        storage.team_with_drive();
        let server = Server::start_on(&storage, &[]);
        let cookie = session_cookie(&server, MEMBER).await;

        let work = store::testing::temp_dir("schemathesis");
        let mut command = Command::new(&schemathesis);
        command
            .current_dir(&work)
            .arg("run")
            .arg(server.url("/api/v1/openapi.json"))
            .args(["--checks", "not_a_server_error,status_code_conformance"])
            .args(["--max-examples", EXAMPLES_PER_OPERATION])
            .args(["--workers", "1"])
            .args(["--request-timeout", "30"])
            .args(["--generation-database", "none"])
            .args(["--header", &format!("Cookie: ck_session={cookie}")])
            .arg("--no-color");
        for operation in EXCLUDED_OPERATIONS {
            command.args(["--exclude-operation-id", operation]);
        }
        if let Ok(seed) = std::env::var("CLOUDKEEP_FUZZ_SEED") {
            command.args(["--seed", &seed]);
        }
        let output = command.output().expect("run schemathesis");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "{engine:?}: schemathesis found answers the document does not allow:\n{report}\n\nserver log:\n{}",
            server.log()
        );
        // It really ran: every operation but the excluded ones was tested.
        let tested = report
            .lines()
            .find_map(|l| l.trim().strip_prefix("Tested: "))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no count of tested operations in:\n{report}"));
        assert!(tested >= 40, "{engine:?}: only {tested} operations tested:\n{report}");
        assert!(
            !server.log().contains("panicked"),
            "{engine:?}: a handler panicked:\n{}",
            server.log()
        );
        let _ = std::fs::remove_dir_all(&work);
    }
}

/// A `PROPFIND` of drive `drive`'s root as [`MEMBER`]; its status.
async fn dav_status(server: &Server, drive: &str) -> u16 {
    reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
            server.url(&format!("/dav/drives/{drive}/")),
        )
        .basic_auth(MEMBER, Some(PASSWORD))
        .header("Depth", "0")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The fuzz run's first findings, kept as a fixed check: a drive number
/// of 2^63 or more (a `u64` no column holds), or one that is not a
/// number, names no drive on every way in — API, console, WebDAV — and
/// never fails the server.
#[tokio::test]
async fn drive_numbers_past_what_a_column_holds_name_no_drive() {
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.team_with_drive();
        let server = Server::start_on(&storage, &[]);
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        for drive in [
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "x",
        ] {
            for path in [
                format!("/api/v1/drives/{drive}/access"),
                format!("/api/v1/drives/{drive}/imports"),
                format!("/api/v1/drives/{drive}/imports/0"),
            ] {
                let (status, body) = json(member.get(server.url(&path)).send().await.unwrap()).await;
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (404, Some("not_found")),
                    "{engine:?} {path}"
                );
            }
            let r = member
                .post(server.url(&format!("/api/v1/drives/{drive}/imports/0/cancel")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{engine:?} cancel {drive}");
            let r = member
                .get(server.url(&format!("/drives/{drive}/files")))
                .send()
                .await
                .unwrap();
            // The console reads its drive number as a `u64`: past that
            // range (or not a number) the URL is malformed, a `400`.
            let expected = if drive.parse::<u64>().is_ok() { 404 } else { 400 };
            assert_eq!(r.status(), expected, "{engine:?} console {drive}");
            // WebDAV takes drive numbers of at most 12 digits as drive
            // addresses; longer ones are no WebDAV address at all.
            let status = dav_status(&server, drive).await;
            assert!((400..500).contains(&status), "{engine:?} WebDAV {drive}: {status}");
        }
        assert!(
            !server.log().contains("internal_error") && !server.log().contains("request failed"),
            "{}",
            server.log()
        );
    }
}
