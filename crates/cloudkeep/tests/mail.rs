//! Security email, black-box on SQLite and PostgreSQL, through a real SMTP
//! server process (Python's aiosmtpd writing a Maildir): what arrives, its
//! headers and language, the member's choices, the outbox default, and an
//! SMTP outage that loses nothing and sends nothing twice.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const PYTHON: &str = "/usr/bin/python3";

/// A real SMTP server on loopback that files each message in a Maildir.
struct SmtpSink {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl SmtpSink {
    /// `None` (after saying why) when aiosmtpd is missing outside CI.
    fn available() -> bool {
        let ok = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "aiosmtpd is required under CI (apt-get install python3-aiosmtpd)"
            );
            eprintln!("SKIPPED (email test): aiosmtpd is not installed (apt-get install python3-aiosmtpd)");
        }
        ok
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn start(port: u16, maildir: PathBuf) -> SmtpSink {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpSink { child, port, maildir }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every message received so far.
    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }

    /// Waits until `count` messages whose subject line holds `subject` have
    /// arrived; returns them.
    async fn wait_for(&self, subject: &str, count: usize) -> Vec<String> {
        let started = Instant::now();
        loop {
            let found: Vec<String> = self
                .messages()
                .into_iter()
                .filter(|m| subject_of(m).contains(subject))
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "{count} x '{subject}' did not arrive; got {}",
                self.messages().len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CLOUDKEEP_MAIL_TRANSPORT", "smtp".to_owned()),
            ("CLOUDKEEP_MAIL_HOST", "127.0.0.1".to_owned()),
            ("CLOUDKEEP_MAIL_PORT", self.port.to_string()),
            ("CLOUDKEEP_MAIL_TLS", "none".to_owned()),
            (
                "CLOUDKEEP_MAIL_FROM",
                "cloudkeep <security@cloud.example.org>".to_owned(),
            ),
        ]
    }
}

fn start_server(storage: &Storage, env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_on(storage, &env)
}

async fn create_app_password(server: &Server, client: &reqwest::Client, name: &str) {
    let (status, body) = json(
        client
            .post(server.url("/api/v1/me/app-passwords"))
            .json(&serde_json::json!({"name": name}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// A message's subject, unfolded, with RFC 2047 encoded words decoded.
fn subject_of(message: &str) -> String {
    use base64::Engine as _;
    let mut lines = message.lines().skip_while(|l| !l.starts_with("Subject:"));
    let Some(first) = lines.next() else {
        return String::new();
    };
    let mut raw = first.trim_start_matches("Subject:").to_owned();
    for more in lines.take_while(|l| l.starts_with(' ') || l.starts_with('\t')) {
        raw.push_str(more);
    }
    raw.split_whitespace()
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            match lower.strip_prefix("=?utf-8?b?").and_then(|w| w.strip_suffix("?=")) {
                Some(_) => {
                    let encoded = &word[10..word.len() - 2];
                    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
                }
                None => format!("{word} "),
            }
        })
        .collect::<String>()
}

/// The decoded text part of a message (quoted-printable or base64 aside,
/// the plain part is short ASCII/UTF-8 in these tests).
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(": ")))
}

#[tokio::test]
#[cfg_attr(
    missing_aiosmtpd,
    ignore = "aiosmtpd is not installed (apt-get install python3-aiosmtpd)"
)]
async fn security_emails_arrive_over_smtp_in_the_members_language() {
    if !SmtpSink::available() {
        return;
    }
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");
        let sink = SmtpSink::start(SmtpSink::free_port(), store::testing::temp_dir("maildir"));
        let server = start_server(&storage, &sink.env());
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        create_app_password(&server, &member, "NAS QNAP").await;

        let mail = sink.wait_for("A new application password", 1).await.remove(0);
        assert_eq!(header(&mail, "To"), Some(MEMBER));
        assert_eq!(header(&mail, "From"), Some("cloudkeep <security@cloud.example.org>"));
        assert_eq!(header(&mail, "Auto-Submitted"), Some("auto-generated"));
        assert!(header(&mail, "Message-ID").is_some_and(|id| id.ends_with("@cloud.example.org>")));
        assert!(header(&mail, "Date").is_some());
        assert!(
            mail.contains("multipart/alternative") && mail.contains("text/html"),
            "{mail}"
        );
        assert!(mail.contains("NAS QNAP") && mail.contains("Firefox on Linux"), "{mail}");
        sink.wait_for("Sign-in from a new device", 1).await;

        // The member reads the console in Spanish: so are the emails.
        let csrf = csrf_of(&page(&server, &member, "/security").await);
        member
            .post(server.url("/language"))
            .form(&[("csrf", csrf.as_str()), ("lang", "es"), ("back", "/")])
            .send()
            .await
            .unwrap();
        create_app_password(&server, &member, "Thunderbird").await;
        sink.wait_for("Una nueva contrase", 1).await;

        // Turned off: no more of that kind; the required kinds stay on.
        let (status, body) = json(
            member
                .put(server.url("/api/v1/me/notifications"))
                .json(&serde_json::json!({"kind": "app_password_created", "enabled": false}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = json(
            member
                .put(server.url("/api/v1/me/notifications"))
                .json(&serde_json::json!({"kind": "password_changed", "enabled": false}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("mail_required")));
        create_app_password(&server, &member, "Phone sync").await;
        let (status, _) = json(
            member
                .put(server.url("/api/v1/me/password"))
                .json(&serde_json::json!({"current_password": PASSWORD, "new_password": "indigo lantern orchard 77"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        sink.wait_for("Se ha cambiado tu contrase", 1).await;
        let all = sink.messages();
        assert!(
            !all.iter().any(|m| m.contains("Phone sync")),
            "the member turned application-password emails off"
        );

        // An administrator of the member's organization sends a security alert.
        let args = [
            "user",
            "create",
            "--email",
            "boss@example.org",
            "--name",
            "Boss",
            "--org",
            &format!("Org {MEMBER}"),
            "--role",
            "admin",
            "--password-stdin",
        ];
        let (ok, _, err) = storage.admin(&args, &format!("{PASSWORD}\n"));
        assert!(ok, "{err}");
        let boss = browser();
        api_sign_in(&server, &boss, "boss@example.org", PASSWORD, false).await;
        let (_, me) = json(boss.get(server.url("/api/v1/me")).send().await.unwrap()).await;
        let org = me["organizations"][0]["id"].as_str().unwrap().to_owned();
        let (_, list) = json(
            boss.get(server.url(&format!("/api/v1/orgs/{org}/members")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let member = list["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == MEMBER)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = boss
            .post(server.url(&format!("/api/v1/orgs/{org}/members/{member}/security-alert")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // The member reads Spanish now.
        let alert = quoted_printable_decoded(&sink.wait_for("La seguridad de tu cuenta", 1).await.remove(0));
        assert!(alert.contains("Boss (Org ana@example.org) te pide"), "{alert}");
        assert!(alert.contains("Verificación en dos pasos: desactivada"), "{alert}");
        assert!(alert.contains("Contraseñas de aplicación: 3"), "{alert}");
        assert!(alert.contains("/security/two-factor"), "{alert}");
        sink.stop();
    }
}

#[tokio::test]
#[cfg_attr(
    missing_aiosmtpd,
    ignore = "aiosmtpd is not installed (apt-get install python3-aiosmtpd)"
)]
async fn an_smtp_outage_loses_nothing_and_sends_nothing_twice() {
    if !SmtpSink::available() {
        return;
    }
    for engine in ENGINES {
        let Some(storage) = Storage::new(engine).await else {
            continue;
        };
        storage.create_user(MEMBER, "user");
        let port = SmtpSink::free_port();
        let maildir = store::testing::temp_dir("maildir");
        let sink = SmtpSink::start(port, maildir.clone());
        let server = start_server(&storage, &sink.env());
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        sink.wait_for("Sign-in from a new device", 1).await;
        sink.stop();

        for name in ["one", "two", "three"] {
            create_app_password(&server, &member, name).await;
        }
        // The server tries, fails, and says it will retry.
        let started = Instant::now();
        while !server.log().contains("email not delivered; will retry") {
            assert!(started.elapsed() < Duration::from_secs(30), "{}", server.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sink = SmtpSink::start(port, maildir);
        let arrived = sink.wait_for("A new application password", 3).await;
        // Give retries time to (wrongly) send again.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let again: Vec<String> = sink
            .messages()
            .into_iter()
            .filter(|m| m.contains("A new application password"))
            .collect();
        assert_eq!(again.len(), 3, "exactly once each");
        let mut ids: Vec<&str> = arrived.iter().filter_map(|m| header(m, "Message-ID")).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        sink.stop();
    }
}

#[tokio::test]
async fn without_smtp_the_outbox_folder_gets_each_email() {
    for engine in ENGINES {
        let Some((_, server)) = server_with_member(engine).await else {
            continue;
        };
        let member = browser();
        api_sign_in(&server, &member, MEMBER, PASSWORD, false).await;
        create_app_password(&server, &member, "NAS").await;
        outbox_message(&server, "A new application password").await;
        assert!(server.log().contains("email written to the outbox"));
    }
}
