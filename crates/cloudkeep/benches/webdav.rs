//! Drives over WebDAV against Apache `mod_dav` and nginx (dav + dav-ext)
//! serving the same data on this machine, all on loopback, in one run,
//! the way clients use them (each peer started fresh, the three servers'
//! data under the same temporary folder, so on the same file system):
//!
//! - a big file (`BENCH_BIG_BYTES`, default 256 MiB) PUT then GET over
//!   one connection (throughput). Our PUT answers once the file is synced
//!   to disk, nginx's and Apache's before, so the run also writes and
//!   syncs the same size itself the way our blob store does: the
//!   physical limit of a durable upload;
//! - 1,000 files of 4 KiB PUT by 8 clients (files per second, with our
//!   fsync before every answer and theirs off);
//! - PROPFIND of a folder of 10,000 files: `Depth: 1` with named
//!   properties, with `<allprop/>`, with an empty body, and
//!   `Depth: infinity` with `<allprop/>` where the server allows it
//!   (time per listing);
//! - LOCK + UNLOCK pairs by 8 clients, each on its own file (pairs per
//!   second), as Windows and macOS take them on every save;
//! - each server's peak memory (`VmHWM`, summed over its processes);
//! - our memory during a PROPFIND of a 100,000-entry folder (written
//!   straight into the database in one transaction, zero-byte files,
//!   since a listing reads only rows).
//!
//! It ends with one table of the three servers' figures and our ratios.
//! `cargo bench --bench webdav` (SQLite; `BENCH_ENGINE=postgres` for
//! PostgreSQL). Needs `apache2` and `nginx` with
//! `libnginx-mod-http-dav-ext` (Debian); a missing peer is skipped with a
//! message. Run as root (Apache and nginx switch to `www-data`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const PASSWORD: &str = "violet tractor sunrise 42";
const EMAIL: &str = "bench@example.org";
const GIB: u64 = 1024 * 1024 * 1024;

/// A WebDAV server under test: where its root is, how to authenticate.
struct Target {
    name: &'static str,
    addr: String,
    /// URL path of the WebDAV root, ending in `/`.
    root: String,
    auth: Option<String>,
    pid: u32,
}

/// A peer process, stopped when dropped.
struct Peer {
    child: Child,
    main_pid: u32,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SIGTERM: Apache and nginx stop their workers too.
        let _ = Command::new("kill")
            .args(["-TERM", &self.main_pid.to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(addr: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "{addr} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn chown_www(path: &Path) {
    let _ = Command::new("chown")
        .args(["-R", "www-data:www-data"])
        .arg(path)
        .status();
}

fn start_apache(dir: &Path) -> Option<(Peer, String, PathBuf)> {
    if Command::new("apache2").arg("-v").output().is_err() {
        eprintln!("SKIPPED (Apache comparison): apache2 is not installed (apt-get install apache2)");
        return None;
    }
    let port = free_port();
    let root = dir.join("apache-root");
    std::fs::create_dir_all(&root).unwrap();
    chown_www(dir);
    let modules = "/usr/lib/apache2/modules";
    let conf = format!(
        "ServerRoot {dir}\nListen 127.0.0.1:{port}\nServerName localhost\n\
         LoadModule mpm_event_module {modules}/mod_mpm_event.so\n\
         LoadModule authz_core_module {modules}/mod_authz_core.so\n\
         LoadModule dav_module {modules}/mod_dav.so\n\
         LoadModule dav_fs_module {modules}/mod_dav_fs.so\n\
         User www-data\nGroup www-data\nPidFile {dir}/apache.pid\nErrorLog {dir}/apache-error.log\n\
         DavLockDB {dir}/apache-lock\nDocumentRoot {root}\nLimitRequestBody 0\nKeepAliveTimeout 30\n\
         MaxKeepAliveRequests 0\n\
         <Directory {root}>\n  Dav On\n  DavDepthInfinity On\n  Require all granted\n</Directory>\n",
        dir = dir.display(),
        root = root.display(),
    );
    let conf_path = dir.join("apache.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut command = Command::new("apache2");
    command
        .args(["-D", "FOREGROUND", "-f"])
        .arg(&conf_path)
        .env("APACHE_RUN_DIR", dir);
    Some(spawn_peer(command, port, root))
}

/// Starts a peer and waits until it accepts connections on `port`.
fn spawn_peer(mut command: Command, port: u16, root: PathBuf) -> (Peer, String, PathBuf) {
    let child = command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
    let addr = format!("127.0.0.1:{port}");
    wait_for(&addr);
    let main_pid = child.id();
    (Peer { child, main_pid }, addr, root)
}

fn start_nginx(dir: &Path) -> Option<(Peer, String, PathBuf)> {
    let module = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so";
    if Command::new("nginx").arg("-v").output().is_err() || !Path::new(module).exists() {
        eprintln!(
            "SKIPPED (nginx comparison): nginx with dav-ext is not installed \
             (apt-get install nginx libnginx-mod-http-dav-ext)"
        );
        return None;
    }
    let port = free_port();
    let root = dir.join("nginx-root");
    std::fs::create_dir_all(dir.join("nginx-tmp")).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    chown_www(dir);
    let conf = format!(
        "load_module {module};\ndaemon off;\nworker_processes 2;\nuser www-data;\npid {dir}/nginx.pid;\n\
         error_log {dir}/nginx-error.log;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  dav_ext_lock_zone zone=bench:10m;\n  client_body_temp_path {dir}/nginx-tmp;\n  client_max_body_size 0;\n\
           server {{\n    listen 127.0.0.1:{port};\n    root {root};\n    location / {{\n\
             dav_methods PUT DELETE MKCOL COPY MOVE;\n      dav_ext_methods PROPFIND OPTIONS LOCK UNLOCK;\n      dav_ext_lock zone=bench;\n\
             create_full_put_path on;\n      dav_access user:rw;\n    }}\n  }}\n}}\n",
        dir = dir.display(),
        root = root.display(),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut command = Command::new("nginx");
    command.args(["-e", "stderr", "-c"]).arg(&conf_path);
    Some(spawn_peer(command, port, root))
}

/// Our server with a member, a drive and an application password.
async fn start_ours(dir: &Path) -> (support::BenchServer, Target, u64, Option<String>) {
    let database_url = support::database_url().await;
    let admin = |args: &[&str], stdin: &str| {
        let mut command = Command::new(support::server_bin());
        command
            .arg("admin")
            .env_remove("CLOUDKEEP_DATABASE_URL")
            .env("CLOUDKEEP_DATA", dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(url) = &database_url {
            command.env("CLOUDKEEP_DATABASE_URL", url);
        }
        let mut child = command.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "cloudkeep admin {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    };
    admin(&["org", "create", "--name", "Bench"], "");
    admin(
        &[
            "user",
            "create",
            "--email",
            EMAIL,
            "--name",
            "Bench",
            "--org",
            "Bench",
            "--role",
            "admin",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    let out = admin(
        &[
            "drive",
            "create",
            "--org",
            "Bench",
            "--name",
            "Bench",
            "--quota",
            &(100 * GIB).to_string(),
        ],
        "",
    );
    let drive: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .parse()
        .unwrap();
    let server = support::BenchServer::start(dir, database_url.as_deref());
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let signed = client
        .post(format!("{}/api/v1/session", server.base))
        .json(&serde_json::json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(signed.status().is_success());
    let made: serde_json::Value = client
        .post(format!("{}/api/v1/me/app-passwords", server.base))
        .json(&serde_json::json!({"name": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{EMAIL}:{}", made["password"].as_str().unwrap()));
    let target = Target {
        name: "cloudkeep",
        addr: server.base.trim_start_matches("http://").to_owned(),
        root: format!("/dav/drives/{drive}/"),
        auth: Some(format!("Basic {basic}")),
        pid: server.pid,
    };
    (server, target, drive, database_url)
}

fn auth_header(target: &Target) -> String {
    target
        .auth
        .as_ref()
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default()
}

/// Reads a response head; returns (status, content length).
async fn read_head(reader: &mut BufReader<tokio::net::TcpStream>) -> (u16, Option<u64>) {
    let mut status = 0;
    let mut length = None;
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if status == 0 {
            status = trimmed.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        } else if let Some((name, value)) = trimmed.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok();
        }
    }
    (status, length)
}

/// PUTs `size` bytes to `path` over one connection; returns the seconds.
async fn put_big(target: &Target, path: &str, size: u64) -> f64 {
    let tcp = tokio::net::TcpStream::connect(&target.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(tcp);
    let head = format!(
        "PUT {}{path} HTTP/1.1\r\nHost: {}\r\n{}Content-Length: {size}\r\n\r\n",
        target.root,
        target.addr,
        auth_header(target)
    );
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let started = Instant::now();
    reader.get_mut().write_all(head.as_bytes()).await.unwrap();
    let mut sent = 0;
    while sent < size {
        let n = chunk.len().min((size - sent) as usize);
        reader.get_mut().write_all(&chunk[..n]).await.unwrap();
        sent += n as u64;
    }
    let (status, _) = read_head(&mut reader).await;
    let seconds = started.elapsed().as_secs_f64();
    assert!((200..300).contains(&status), "{}: PUT answered {status}", target.name);
    seconds
}

/// GETs `path` and discards the body; returns (bytes, seconds).
async fn get_big(target: &Target, path: &str) -> (u64, f64) {
    let tcp = tokio::net::TcpStream::connect(&target.addr).await.unwrap();
    let mut reader = BufReader::with_capacity(1024 * 1024, tcp);
    let head = format!(
        "GET {}{path} HTTP/1.1\r\nHost: {}\r\n{}\r\n",
        target.root,
        target.addr,
        auth_header(target)
    );
    let started = Instant::now();
    reader.get_mut().write_all(head.as_bytes()).await.unwrap();
    let (status, length) = read_head(&mut reader).await;
    assert_eq!(status, 200, "{}: GET", target.name);
    let length = length.expect("a length");
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut got = 0;
    while got < length {
        let n = reader.read(&mut buffer).await.unwrap();
        assert!(n > 0, "{}: GET ended early", target.name);
        got += n as u64;
    }
    (got, started.elapsed().as_secs_f64())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(16).build().unwrap()
}

fn request(client: &reqwest::Client, target: &Target, method: &str, path: &str) -> reqwest::RequestBuilder {
    let url = format!("http://{}{}{path}", target.addr, target.root);
    let mut builder = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(auth) = &target.auth {
        builder = builder.header("Authorization", auth);
    }
    builder
}

/// PUTs `count` small files under `folder` with `clients` at once; returns
/// files per second.
async fn put_many(target: &Arc<Target>, folder: &str, count: usize, size: usize, clients: usize) -> f64 {
    let http = client();
    let status = request(&http, target, "MKCOL", &format!("{folder}/"))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{}: MKCOL {status}", target.name);
    let next = Arc::new(AtomicU64::new(0));
    // Random bytes, like most files people store: contents that compress
    // well would let PostgreSQL keep each small file in a few bytes.
    let mut body = vec![0u8; size];
    rand::Rng::fill(&mut rand::thread_rng(), &mut body[..]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, target, next, body) = (http.clone(), target.clone(), next.clone(), body.clone());
        let folder = folder.to_owned();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= count {
                    break;
                }
                let path = format!("{folder}/file-{i:06}.txt");
                let response = request(&http, &target, "PUT", &path)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(
                    response.status().is_success(),
                    "{}: PUT {}",
                    target.name,
                    response.status()
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

const PROPFIND: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/></D:prop></D:propfind>"#;
const ALLPROP: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#;

/// A PROPFIND as clients send it: its depth and body.
#[derive(Clone, Copy)]
struct Listing {
    what: &'static str,
    depth: &'static str,
    /// "" for an empty body (which means `allprop`).
    body: &'static str,
}

const LISTINGS: [Listing; 4] = [
    Listing {
        what: "PROPFIND depth 1, named properties",
        depth: "1",
        body: PROPFIND,
    },
    Listing {
        what: "PROPFIND depth 1, allprop",
        depth: "1",
        body: ALLPROP,
    },
    Listing {
        what: "PROPFIND depth 1, empty body",
        depth: "1",
        body: "",
    },
    Listing {
        what: "PROPFIND depth infinity, allprop",
        depth: "infinity",
        body: ALLPROP,
    },
];

/// One PROPFIND of `folder`; returns (seconds, entries), or the status
/// when the server refuses it.
async fn propfind_once(
    http: &reqwest::Client,
    target: &Target,
    folder: &str,
    listing: Listing,
) -> Result<(f64, usize), u16> {
    let started = Instant::now();
    let mut builder = request(http, target, "PROPFIND", folder).header("Depth", listing.depth);
    if !listing.body.is_empty() {
        builder = builder.header("Content-Type", "application/xml").body(listing.body);
    }
    let response = builder.send().await.unwrap();
    if response.status() != 207 {
        return Err(response.status().as_u16());
    }
    let text = response.text().await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    // Closing `</…response>` tags: one per entry, whatever the prefix.
    let entries = text
        .split('<')
        .filter(|t| t.starts_with('/') && t.split('>').next().is_some_and(|n| n.ends_with("response")))
        .count();
    Ok((seconds, entries))
}

/// PROPFIND depth 1 of named properties on `folder`, best of `rounds`;
/// returns (seconds, entries).
async fn propfind(target: &Target, folder: &str, rounds: usize) -> (f64, usize) {
    let http = client();
    let mut best = (f64::MAX, 0);
    for _ in 0..rounds {
        let (seconds, entries) = propfind_once(&http, target, folder, LISTINGS[0])
            .await
            .unwrap_or_else(|status| panic!("{}: PROPFIND answered {status}", target.name));
        best = (best.0.min(seconds), entries);
    }
    best
}

const LOCKINFO: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>bench</D:href></D:owner></D:lockinfo>"#;

/// `pairs` LOCK + UNLOCK pairs by `clients` at once, each client on its
/// own file (made first); returns the pairs done per second and how many
/// failed (Apache's lock database loses and keeps locks when its workers
/// change it at once: it answers 423 to a LOCK and 400 to an UNLOCK).
async fn lock_pairs(target: &Arc<Target>, folder: &str, pairs: usize, clients: usize) -> (f64, u64) {
    let http = client();
    let status = request(&http, target, "MKCOL", &format!("{folder}/"))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{}: MKCOL {status}", target.name);
    for c in 0..clients {
        let path = format!("{folder}/doc-{c}.txt");
        let status = request(&http, target, "PUT", &path)
            .body("x")
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{}: PUT {status}", target.name);
    }
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, target, next, failed) = (http.clone(), target.clone(), next.clone(), failed.clone());
        let path = format!("{folder}/doc-{c}.txt");
        tasks.push(tokio::spawn(async move {
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < pairs {
                let locked = request(&http, &target, "LOCK", &path)
                    .header("Depth", "0")
                    .header("Timeout", "Second-600")
                    .header("Content-Type", "application/xml")
                    .body(LOCKINFO)
                    .send()
                    .await
                    .unwrap();
                if locked.status() != 200 {
                    assert_eq!(locked.status(), 423, "{}: LOCK", target.name);
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let token = locked.headers()["lock-token"].to_str().unwrap().to_owned();
                let _ = locked.bytes().await.unwrap();
                let unlocked = request(&http, &target, "UNLOCK", &path)
                    .header("Lock-Token", token)
                    .send()
                    .await
                    .unwrap();
                if unlocked.status() != 204 {
                    assert_eq!(unlocked.status(), 400, "{}: UNLOCK", target.name);
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let failed = failed.load(Ordering::Relaxed);
    (
        pairs.saturating_sub(failed as usize) as f64 / started.elapsed().as_secs_f64(),
        failed,
    )
}

/// The peak resident memory (`VmHWM`) of `pid` and of the processes it
/// started (Apache's and nginx's workers), summed, in MiB.
fn peak_mib(pid: u32) -> f64 {
    let status = |pid: u32, field: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    let mut family = vec![pid];
    let mut i = 0;
    while i < family.len() {
        let parent = family[i];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for child in entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            {
                if status(child, "PPid:") == Some(u64::from(parent)) && !family.contains(&child) {
                    family.push(child);
                }
            }
        }
        i += 1;
    }
    family.iter().filter_map(|&p| status(p, "VmHWM:")).sum::<u64>() as f64 / 1024.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the process's resident memory every 5 ms until stopped.
struct PeakMemory {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl PeakMemory {
    fn watch(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Self { stop, peak, thread }
    }

    /// Peak resident memory in MiB.
    fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// Writes `count` zero-byte files into a new top folder of the drive,
/// straight into the database in one transaction.
async fn seed_folder(dir: &Path, database_url: Option<&str>, drive: u64, folder: &str, count: usize) {
    sqlx::any::install_default_drivers();
    let url = match database_url {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}", dir.join("cloudkeep.db").display()),
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let folder_id = format!("{:032x}", rand::random::<u128>());
    let insert =
        "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, size, blob_id, etag, created_at, modified_at)
                  VALUES ($1, $2, $3, $4, $5, 0, '', $6, 1700000000000, 1700000000000)";
    sqlx::query(insert)
        .bind(folder_id.as_str())
        .bind(drive as i64)
        .bind("")
        .bind(folder)
        .bind(1_i64)
        .bind("dseed")
        .execute(&mut *tx)
        .await
        .unwrap();
    for i in 0..count {
        sqlx::query(insert)
            .bind(format!("{:032x}", rand::random::<u128>()))
            .bind(drive as i64)
            .bind(folder_id.as_str())
            .bind(format!("entry-{i:06}.txt"))
            .bind(0_i64)
            .bind(format!("e{i}"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;
}

/// The physical limit of a durable upload: `size` bytes written to a file
/// in `dir` as our blob store writes them (1 MiB pieces, a background
/// `fdatasync` every 32 MiB, `fsync` at the end); MiB/s.
async fn synced_disk_rate(dir: &std::path::Path, size: u64) -> f64 {
    let path = dir.join("synced-disk-probe");
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let started = Instant::now();
        let mut file = std::fs::File::create(&path).unwrap();
        let piece = vec![7u8; 1024 * 1024];
        let mut flush: Option<std::thread::JoinHandle<()>> = None;
        let mut written = 0u64;
        while written < size {
            let n = piece.len().min((size - written) as usize);
            file.write_all(&piece[..n]).unwrap();
            written += n as u64;
            if written.is_multiple_of(32 * 1024 * 1024) && flush.as_ref().is_none_or(|f| f.is_finished()) {
                if let Some(done) = flush.take() {
                    done.join().unwrap();
                }
                let handle = file.try_clone().unwrap();
                flush = Some(std::thread::spawn(move || handle.sync_data().unwrap()));
            }
        }
        if let Some(done) = flush.take() {
            done.join().unwrap();
        }
        file.sync_all().unwrap();
        let seconds = started.elapsed().as_secs_f64();
        std::fs::remove_file(&path).unwrap();
        size as f64 / 1024.0 / 1024.0 / seconds
    })
    .await
    .unwrap()
}

/// A figure of the final table for each server (by the order of the
/// targets), or why there is none.
struct Row {
    what: String,
    unit: &'static str,
    /// Times: lower is better; rates: higher.
    lower_is_better: bool,
    figures: Vec<Result<f64, String>>,
}

fn print_table(rows: &[Row], names: &[&str]) {
    let peer = |name: &str| names.iter().position(|n| *n == name);
    println!("| workload | {} | ours/Apache | ours/nginx |", names.join(" | "));
    println!("|---|{}---|---|", "---|".repeat(names.len()));
    for row in rows {
        let cells: Vec<String> = row
            .figures
            .iter()
            .map(|f| match f {
                Ok(v) if *v >= 100.0 => format!("{v:.0} {}", row.unit),
                Ok(v) => format!("{v:.1} {}", row.unit),
                Err(why) => why.clone(),
            })
            .collect();
        let ratio = |name: &str| match (row.figures.first(), peer(name).and_then(|i| row.figures.get(i))) {
            (Some(Ok(ours)), Some(Ok(theirs))) if *theirs > 0.0 => format!("{:.2}", ours / theirs),
            _ => "-".to_owned(),
        };
        println!(
            "| {} ({} is better) | {} | {} | {} |",
            row.what,
            if row.lower_is_better { "lower" } else { "higher" },
            cells.join(" | "),
            ratio("apache"),
            ratio("nginx")
        );
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cloudkeep-bench-webdav-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours_dir = dir.join("cloudkeep");
    std::fs::create_dir_all(&ours_dir).unwrap();
    let (server, ours, drive, database_url) = start_ours(&ours_dir).await;
    let ours = Arc::new(ours);
    let apache = start_apache(&dir.join("apache"));
    let nginx = start_nginx(&dir.join("nginx"));
    let file_system = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(&dir)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "data of all three servers under {} ({file_system}); engine {}",
        dir.display(),
        if database_url.is_some() { "PostgreSQL" } else { "SQLite" }
    );
    let mut targets = vec![ours.clone()];
    if let Some((peer, addr, _)) = &apache {
        targets.push(Arc::new(Target {
            name: "apache",
            addr: addr.clone(),
            root: "/".into(),
            auth: None,
            pid: peer.main_pid,
        }));
    }
    if let Some((peer, addr, _)) = &nginx {
        targets.push(Arc::new(Target {
            name: "nginx",
            addr: addr.clone(),
            root: "/".into(),
            auth: None,
            pid: peer.main_pid,
        }));
    }
    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    let size = env_number("BENCH_BIG_BYTES", 256 * 1024 * 1024);
    // The machine's speed drifts (it is a virtual machine): each
    // measurement runs in rounds that take the servers in turn, and the
    // best round of each counts.
    let rounds = env_number("BENCH_ROUNDS", 3) as usize;
    let lock_count = env_number("BENCH_LOCK_PAIRS", 2000) as usize;
    let mib = size as f64 / 1024.0 / 1024.0;

    let only = std::env::var("BENCH_ONLY").ok();
    // `BENCH_ONLY=propfind`: only our PROPFIND of 10,000 entries, each
    // round printed (to watch one change, or to attach a profiler);
    // `BENCH_LISTING=allprop|empty` for those bodies.
    if only.as_deref() == Some("propfind") {
        let listing = match std::env::var("BENCH_LISTING").as_deref() {
            Ok("allprop") => LISTINGS[1],
            Ok("empty") => LISTINGS[2],
            _ => LISTINGS[0],
        };
        put_many(&ours, "ten-thousand", 10_000, 16, 8).await;
        let http = client();
        // CPU is counted in ticks of 10 ms: over all the rounds.
        let (cpu, pg) = (support::cpu_seconds(ours.pid), support::cpu_seconds_of("postgres"));
        for round in 0..rounds {
            let (seconds, entries) = propfind_once(&http, &ours, "ten-thousand/", listing).await.unwrap();
            assert_eq!(entries, 10_001);
            println!(
                "cloudkeep: round {round}: {} of 10,000 in {:.1} ms",
                listing.what,
                seconds * 1000.0
            );
        }
        let cpu = (support::cpu_seconds(ours.pid) - cpu) * 1000.0 / rounds as f64;
        let pg = (support::cpu_seconds_of("postgres") - pg) * 1000.0 / rounds as f64;
        println!("cloudkeep: CPU per PROPFIND: the server's {cpu:.1} ms, PostgreSQL's {pg:.1} ms");
        drop((server, apache, nginx));
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    // `BENCH_ONLY=small` (4 KiB PUTs) and `BENCH_ONLY=lock` (LOCK +
    // UNLOCK pairs): only that, each round printed with its CPU, for
    // comparing one change on a machine that drifts.
    if let Some(kind @ ("small" | "lock")) = only.as_deref() {
        // `BENCH_PEERS=none`: ours alone, without the peers' disk writes
        // between its rounds.
        let alone = std::env::var("BENCH_PEERS").as_deref() == Ok("none");
        let me = std::process::id();
        for round in 0..rounds {
            for target in targets.iter().filter(|t| !alone || t.name == "cloudkeep") {
                let (cpu, mine, pg) = (
                    support::cpu_seconds(target.pid),
                    support::cpu_seconds(me),
                    support::cpu_seconds_of("postgres"),
                );
                let (rate, count, unit) = if kind == "small" {
                    let rate = put_many(target, &format!("small-{round}"), 1000, 4096, 8).await;
                    (rate, 1000, "files/s")
                } else {
                    let (rate, failed) = lock_pairs(target, &format!("locks-{round}"), lock_count, 8).await;
                    println!("{}: round {round}: {failed} pairs failed", target.name);
                    (rate, lock_count, "LOCK+UNLOCK pairs/s")
                };
                let per = |seconds: f64| seconds * 1e6 / count as f64;
                println!(
                    "{}: round {round}: {rate:.0} {unit}, main-process CPU {:.0} µs each \
                     (the clients' {:.0} µs, PostgreSQL's {:.0} µs)",
                    target.name,
                    per(support::cpu_seconds(target.pid) - cpu),
                    per(support::cpu_seconds(me) - mine),
                    per(support::cpu_seconds_of("postgres") - pg),
                );
            }
        }
        drop((server, apache, nginx));
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    let mut rows = Vec::new();
    let best_of = |rounds: &[Vec<f64>], lower: bool| -> Vec<Result<f64, String>> {
        (0..targets.len())
            .map(|i| {
                let all = rounds.iter().map(|r| r[i]);
                Ok(if lower {
                    all.fold(f64::MAX, f64::min)
                } else {
                    all.fold(0.0, f64::max)
                })
            })
            .collect()
    };

    // The big file, PUT then GET; our memory watched.
    let idle = rss_kib(ours.pid) as f64 / 1024.0;
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    let mut upload_peak: f64 = 0.0;
    let mut disk: f64 = 0.0;
    let big_rounds = rounds.min(2);
    for round in 0..big_rounds {
        disk = disk.max(synced_disk_rate(&dir, size).await);
        let (mut put, mut get) = (Vec::new(), Vec::new());
        for target in &targets {
            let name = format!("big-{round}.bin");
            let watch = (target.name == "cloudkeep").then(|| PeakMemory::watch(target.pid));
            let seconds = put_big(target, &name, size).await;
            if let Some(peak) = watch.map(PeakMemory::finish) {
                upload_peak = upload_peak.max(peak - idle);
            }
            let (got, get_seconds) = get_big(target, &name).await;
            assert_eq!(got, size);
            put.push(mib / seconds);
            get.push(mib / get_seconds);
        }
        puts.push(put);
        gets.push(get);
    }
    let mut put_row = Row {
        what: format!("{mib:.0} MiB PUT (best of {big_rounds}; synced disk {disk:.0} MiB/s)"),
        unit: "MiB/s",
        lower_is_better: false,
        figures: best_of(&puts, false),
    };
    if let Ok(ours) = put_row.figures[0] {
        put_row.what = format!("{} [ours/synced disk {:.2}]", put_row.what, ours / disk);
    }
    rows.push(put_row);
    rows.push(Row {
        what: format!("{mib:.0} MiB GET (best of {big_rounds})"),
        unit: "MiB/s",
        lower_is_better: false,
        figures: best_of(&gets, false),
    });
    println!("cloudkeep: memory during the upload: {upload_peak:.1} MiB above idle ({idle:.1} MiB idle)");

    // 1,000 files of 4 KiB, 8 clients.
    let mut small = Vec::new();
    for round in 0..rounds {
        let mut rates = Vec::new();
        for target in &targets {
            rates.push(put_many(target, &format!("small-{round}"), 1000, 4096, 8).await);
        }
        small.push(rates);
    }
    rows.push(Row {
        what: format!("1,000 x 4 KiB PUT, 8 clients (best of {rounds})"),
        unit: "files/s",
        lower_is_better: false,
        figures: best_of(&small, false),
    });

    // LOCK + UNLOCK pairs, 8 clients.
    let mut locks = Vec::new();
    let mut failures = vec![0; targets.len()];
    for round in 0..rounds {
        let mut rates = Vec::new();
        for (target, failures) in targets.iter().zip(failures.iter_mut()) {
            let (rate, failed) = lock_pairs(target, &format!("locks-{round}"), lock_count, 8).await;
            rates.push(rate);
            *failures += failed;
        }
        locks.push(rates);
    }
    let failures: Vec<String> = names
        .iter()
        .zip(&failures)
        .filter(|(_, f)| **f > 0)
        .map(|(n, f)| format!("{n} {f} failed"))
        .collect();
    rows.push(Row {
        what: format!(
            "{lock_count} LOCK + UNLOCK pairs, 8 clients (best of {rounds}; pairs done{})",
            if failures.is_empty() {
                String::new()
            } else {
                format!("; {}", failures.join(", "))
            }
        ),
        unit: "pairs/s",
        lower_is_better: false,
        figures: best_of(&locks, false),
    });

    // PROPFINDs of 10,000 files (written over WebDAV everywhere).
    for target in &targets {
        put_many(target, "ten-thousand", 10_000, 16, 8).await;
    }
    let http = client();
    for listing in LISTINGS {
        let mut figures = Vec::new();
        for target in &targets {
            let mut best: Result<f64, String> = Ok(f64::MAX);
            for _ in 0..rounds {
                match propfind_once(&http, target, "ten-thousand/", listing).await {
                    Ok((seconds, entries)) => {
                        assert_eq!(entries, 10_001, "{}: {}", target.name, listing.what);
                        best = best.map(|b| b.min(seconds * 1000.0));
                    }
                    Err(status) => {
                        best = Err(format!("refused ({status})"));
                        break;
                    }
                }
            }
            figures.push(best);
        }
        rows.push(Row {
            what: format!("{}, 10,000 entries (best of {rounds})", listing.what),
            unit: "ms",
            lower_is_better: true,
            figures,
        });
    }

    // Peak memory over all of the above.
    rows.push(Row {
        what: "peak memory of the server (VmHWM, all its processes)".into(),
        unit: "MiB",
        lower_is_better: true,
        figures: targets.iter().map(|t| Ok(peak_mib(t.pid))).collect(),
    });

    // Memory during a 100,000-entry PROPFIND.
    seed_folder(&ours_dir, database_url.as_deref(), drive, "hundred-thousand", 100_000).await;
    let idle = rss_kib(ours.pid) as f64 / 1024.0;
    let watch = PeakMemory::watch(ours.pid);
    let (seconds, entries) = propfind(&ours, "hundred-thousand/", 1).await;
    let peak = watch.finish();
    assert_eq!(entries, 100_001);
    println!(
        "cloudkeep: PROPFIND depth 1, 100,000 entries: {:.0} ms, memory {:.1} MiB above idle ({idle:.1} MiB idle)",
        seconds * 1000.0,
        peak - idle
    );

    println!();
    print_table(&rows, &names);
    drop(server);
    drop(apache);
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
}
