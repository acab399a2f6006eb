//! Black-box harness: runs the real `cloudkeep` binary on port 0 with a
//! fresh data folder, on SQLite or on a fresh PostgreSQL schema, and talks
//! to it over HTTP like a browser or script would.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use store::Engine;

pub const PASSWORD: &str = "violet tractor sunrise 42";

pub const ENGINES: [Engine; 2] = [Engine::Sqlite, Engine::Postgres];

pub struct Server {
    child: Child,
    pub base: String,
    pub addr: String,
    pub data: PathBuf,
    pub database_url: Option<String>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
    /// Dropped after the process is killed (`Drop` runs before fields).
    cleanup: Arc<RemoveOnDrop>,
}

/// Where a test's server keeps its data, reusable across restarts.
#[derive(Clone)]
pub struct Storage {
    pub data: PathBuf,
    pub database_url: Option<String>,
    cleanup: Arc<RemoveOnDrop>,
}

/// Removes a test's data folder once nothing uses it, unless the test
/// failed: then it stays for a look.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Storage {
    /// `None` when PostgreSQL is unavailable outside CI (the harness said why).
    pub async fn new(engine: Engine) -> Option<Storage> {
        let data = store::testing::temp_dir("server");
        let database_url = match engine {
            Engine::Sqlite => None,
            Engine::Postgres => Some(store::testing::database_url(Engine::Postgres).await?),
        };
        let cleanup = Arc::new(RemoveOnDrop(data.clone()));
        Some(Storage {
            data,
            database_url,
            cleanup,
        })
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec!["--data".to_owned(), self.data.display().to_string()];
        if let Some(url) = &self.database_url {
            args.extend(["--database-url".to_owned(), url.clone()]);
        }
        args
    }

    /// Runs `cloudkeep admin ARGS`, feeding `stdin`; (success, stdout, stderr).
    pub fn admin(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cloudkeep"))
            .arg("admin")
            .args(self.args())
            .args(args)
            .env_remove("CLOUDKEEP_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cloudkeep admin");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// MEMBER as an admin of "Org MEMBER", [`COLLEAGUE`] as a plain member
    /// of it, and its drive "Shared"; returns the drive's id.
    pub fn team_with_drive(&self) -> String {
        self.create_user(MEMBER, "admin");
        let org = format!("Org {MEMBER}");
        let (ok, _, err) = self.admin(
            &[
                "user",
                "create",
                "--email",
                COLLEAGUE,
                "--name",
                "Bo",
                "--org",
                &org,
                "--role",
                "user",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        );
        assert!(ok, "{err}");
        let (ok, out, err) = self.admin(&["drive", "create", "--org", &org, "--name", "Shared"], "");
        assert!(ok, "{err}");
        out.lines().find_map(|l| l.strip_prefix("id: ")).unwrap().to_owned()
    }

    /// Creates an account (in a new organization "Org <email>") and
    /// returns the admin command's output.
    pub fn create_user(&self, email: &str, role: &str) -> String {
        let org = format!("Org {email}");
        let (ok, _, err) = self.admin(&["org", "create", "--name", &org], "");
        assert!(ok, "org create failed: {err}");
        let (ok, out, err) = self.admin(
            &[
                "user",
                "create",
                "--email",
                email,
                "--name",
                "Test Person",
                "--org",
                &org,
                "--role",
                role,
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        );
        assert!(ok, "user create failed: {err}");
        out
    }
}

impl Server {
    pub async fn start(engine: Engine) -> Option<Server> {
        let storage = Storage::new(engine).await?;
        Some(Server::start_on(&storage, &[]))
    }

    /// Starts on existing storage with extra environment variables.
    pub fn start_on(storage: &Storage, env: &[(&str, &str)]) -> Server {
        Self::start_with(storage, env, &[])
    }

    pub fn start_with(storage: &Storage, env: &[(&str, &str)], extra_args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cloudkeep"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(storage.args())
            .args(extra_args)
            .env_remove("CLOUDKEEP_DATABASE_URL")
            .env("CLOUDKEEP_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start cloudkeep serve");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), stdout.clone());
        collect(child.stderr.take().unwrap(), stderr.clone());
        let started = Instant::now();
        let addr = loop {
            let found = stderr.lock().unwrap().iter().find_map(|line| {
                let rest = line.split("listening on http://").nth(1)?;
                Some(rest.split(|c: char| c.is_whitespace() || c == '"').next()?.to_owned())
            });
            if let Some(addr) = found {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited with {status}: {}", stderr.lock().unwrap().join("\n"));
            }
            assert!(started.elapsed() < Duration::from_secs(30), "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child,
            base: format!("http://{addr}"),
            addr,
            data: storage.data.clone(),
            database_url: storage.database_url.clone(),
            stdout,
            stderr,
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            cleanup: storage.cleanup.clone(),
        }
    }

    pub fn storage(&self) -> Storage {
        Storage {
            data: self.data.clone(),
            database_url: self.database_url.clone(),
            cleanup: self.cleanup.clone(),
        }
    }

    /// The setup link the server printed, if any (waits briefly for it).
    pub fn setup_link(&self) -> Option<String> {
        for _ in 0..100 {
            if let Some(line) = self.stdout.lock().unwrap().iter().find(|l| l.starts_with("setup: ")) {
                return Some(line["setup: ".len()..].to_owned());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGTERM, without waiting for the process to stop.
    pub fn send_sigterm(&self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    }

    /// Whether the process has exited, and cleanly.
    pub fn exited_cleanly(&mut self) -> Option<bool> {
        self.child.try_wait().unwrap().map(|status| status.success())
    }

    /// SIGTERM, then waits; returns whether the process exited cleanly.
    pub fn terminate(mut self) -> bool {
        self.send_sigterm();
        let started = Instant::now();
        loop {
            if let Some(clean) = self.exited_cleanly() {
                return clean;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Server {
    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl std::io::Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
}

/// A browser-like client: cookie jar, no automatic redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
        .build()
        .unwrap()
}

/// The body of `GET path`, as text.
pub async fn page(server: &Server, client: &reqwest::Client, path: &str) -> String {
    client.get(server.url(path)).send().await.unwrap().text().await.unwrap()
}

/// `POST path` with the form `fields`, as a browser submits a form (no
/// redirect followed).
pub async fn post_form(
    server: &Server,
    client: &reqwest::Client,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    client.post(server.url(path)).form(fields).send().await.unwrap()
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("page has a CSRF field")
        .to_owned()
}

/// Signs in through the API; panics unless it works.
pub async fn api_sign_in(server: &Server, client: &reqwest::Client, email: &str, password: &str, remember: bool) {
    let response = client
        .post(server.url("/api/v1/session"))
        .json(&serde_json::json!({"email": email, "password": password, "remember": remember}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "sign-in failed: {body}");
    assert_eq!(body, r#"{"status":"signed_in"}"#);
}

/// A new application password named `name` for the member signed in on
/// `client`: its plaintext, shown once.
pub async fn new_app_password(server: &Server, client: &reqwest::Client, name: &str) -> String {
    let (status, made) = json(
        client
            .post(server.url("/api/v1/me/app-passwords"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    made["password"].as_str().unwrap().to_owned()
}

pub async fn json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, value)
}

/// The member most tests sign in as (role `user`, password [`PASSWORD`]).
pub const MEMBER: &str = "ana@example.org";
/// A plain member of MEMBER's organization (see [`Storage::team_with_drive`]).
pub const COLLEAGUE: &str = "bo@example.org";

/// Fresh storage with [`MEMBER`] already created, and a server on it.
pub async fn server_with_member(engine: Engine) -> Option<(Storage, Server)> {
    let storage = Storage::new(engine).await?;
    storage.create_user(MEMBER, "user");
    let server = Server::start_on(&storage, &[]);
    Some((storage, server))
}

/// A TOTP code from Debian's `oathtool` (an implementation independent of
/// ours) for `secret` at now + `steps` x 30 s. `None` (after saying why)
/// when oathtool is missing outside CI.
pub fn oathtool(secret: &str, steps: i64) -> Option<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = format!("@{}", now + steps * 30);
    match Command::new("oathtool")
        .args(["--totp", "--base32", "-N", &at, secret])
        .output()
    {
        Ok(out) if out.status.success() => Some(String::from_utf8(out.stdout).unwrap().trim().to_owned()),
        other => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "oathtool is required under CI: {other:?}"
            );
            eprintln!("SKIPPED (TOTP black-box test): oathtool is not installed (apt-get install oathtool)");
            None
        }
    }
}

/// Turns two-step verification on for a signed-in client with one TOTP app
/// named "Phone"; returns (secret, backup codes), or `None` without
/// oathtool.
pub async fn enable_totp(server: &Server, client: &reqwest::Client) -> Option<(String, Vec<String>)> {
    let (status, e) = json(
        client
            .post(server.url("/api/v1/me/two-factor/totp"))
            .json(&serde_json::json!({"name": "Phone"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{e}");
    let secret = e["secret"].as_str().unwrap().to_owned();
    let code = oathtool(&secret, 0)?;
    let (status, body) = json(
        client
            .post(server.url(&format!(
                "/api/v1/me/two-factor/totp/{}/confirm",
                e["id"].as_str().unwrap()
            )))
            .json(&serde_json::json!({"code": code}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let codes = body["backup_codes"]
        .as_array()
        .expect("backup codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    Some((secret, codes))
}

/// Password step through the API; returns the JSON answer.
pub async fn api_password_step(server: &Server, client: &reqwest::Client) -> serde_json::Value {
    let (status, body) = json(
        client
            .post(server.url("/api/v1/session"))
            .json(&serde_json::json!({"email": MEMBER, "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

pub async fn api_second_step(
    server: &Server,
    client: &reqwest::Client,
    method: &str,
    code: &str,
) -> (u16, serde_json::Value) {
    json(
        client
            .post(server.url("/api/v1/session/second-factor"))
            .json(&serde_json::json!({"method": method, "code": code}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Runs the real `cloudkeep-authenticator` with its state in `state`;
/// (success, stdout, stderr).
pub fn app(state: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    app_with_input(state, args, "")
}

/// Like [`app`], feeding `stdin`.
pub fn app_with_input(state: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudkeep-authenticator"))
        .arg("--state")
        .arg(state)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the app in the background (e.g. `answer`, which waits for a
/// request); join the handle for (success, stdout, stderr).
pub fn app_in_background(state: &std::path::Path, args: &[&str]) -> tokio::task::JoinHandle<(bool, String, String)> {
    let state = state.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        app(&state, &args)
    })
}

/// Links a new app state to the signed-in `client`'s account through the
/// console's link; returns the state folder and the app's output.
pub async fn link_app(server: &Server, client: &reqwest::Client, name: &str) -> (PathBuf, String) {
    let (status, created) = json(
        client
            .post(server.url("/api/v1/me/two-factor/authenticator"))
            .json(&serde_json::json!({"name": name}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let state = store::testing::temp_dir("authenticator").join("state");
    let (ok, out, err) = app(&state, &["link", created["link"].as_str().unwrap()]);
    assert!(ok, "{err}");
    (state, out)
}

/// What a [`post_receiver`] saw: (path, `Authorization` header, JSON body).
pub type Received = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

/// A stand-in provider (SMS gateway, push service) on loopback: records
/// every JSON POST, whatever the path; answers 500 while `failing` is set.
/// Returns its base address.
pub async fn post_receiver(failing: Arc<Mutex<bool>>) -> (String, Received) {
    let received: Received = Arc::default();
    let record = received.clone();
    let app = axum::Router::new().fallback(axum::routing::post(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, axum::Json(body): axum::Json<serde_json::Value>| {
            let (record, failing) = (record.clone(), failing.clone());
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                record.lock().unwrap().push((uri.path().to_owned(), auth, body));
                if *failing.lock().unwrap() {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, received)
}

/// The console's password step for [`MEMBER`] in `client`; returns the
/// second-step page it lands on.
pub async fn console_password_step(server: &Server, client: &reqwest::Client) -> String {
    let signin = client
        .get(server.url("/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = client
        .post(server.url("/signin"))
        .form(&[
            ("csrf", csrf_of(&signin).as_str()),
            ("email", MEMBER),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/signin/second-factor");
    page(server, client, "/signin/second-factor").await
}

/// The whole text of a server-sent event stream at `url`, until it ends.
pub async fn event_stream(client: &reqwest::Client, url: String) -> String {
    let mut response = client
        .get(url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), response.chunk())
        .await
        .expect("the stream moves within a minute")
        .unwrap()
    {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text
}

/// Waits for an email whose text holds `needle` in the server's outbox
/// folder (the zero-configuration transport); returns it.
pub async fn outbox_message(server: &Server, needle: &str) -> String {
    let outbox = server.data.join("outbox");
    let started = Instant::now();
    loop {
        let found = std::fs::read_dir(&outbox).ok().into_iter().flatten().find_map(|e| {
            let path = e.ok()?.path();
            let text = quoted_printable_decoded(&std::fs::read_to_string(&path).ok()?);
            (path.extension().is_some_and(|x| x == "eml") && text.contains(needle)).then_some(text)
        });
        if let Some(text) = found {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no email with '{needle}' in {}",
            outbox.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A message's text with quoted-printable soft line breaks and `=XX`
/// escapes undone (the parts lettre encodes so), for searching.
pub fn quoted_printable_decoded(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `program` is installed (`program args…` starts). Outside CI a
/// missing peer skips the test with a visible message; under CI it fails.
pub fn peer(program: &str, args: &[&str], test: &str, install: &str) -> bool {
    let found = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} is required under CI ({install})"
        );
        eprintln!("SKIPPED ({test}): {program} is not installed ({install})");
    }
    found
}
