//! What the HTTP benchmarks share: which database to run on, and the
//! server process (the release binary on a free port, stopped however the
//! benchmark ends).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `BENCH_ENGINE=postgres`: a fresh schema on the test PostgreSQL server;
/// else `None` (SQLite in the data folder).
pub async fn database_url() -> Option<String> {
    match std::env::var("BENCH_ENGINE").as_deref() {
        Ok("postgres") => Some(
            store::testing::database_url(store::Engine::Postgres)
                .await
                .expect("BENCH_ENGINE=postgres needs a reachable PostgreSQL server"),
        ),
        _ => None,
    }
}

/// The server binary: this build's, or `BENCH_SERVER_BIN` (another
/// build's, to compare two in the same benchmark).
pub fn server_bin() -> std::path::PathBuf {
    std::env::var_os("BENCH_SERVER_BIN").map_or_else(|| env!("CARGO_BIN_EXE_cloudkeep").into(), Into::into)
}

/// `cloudkeep serve` on `data` (and `database_url`), killed when dropped.
pub struct BenchServer {
    child: Child,
    pub base: String,
    pub pid: u32,
}

impl BenchServer {
    pub fn start(data: &Path, database_url: Option<&str>) -> Self {
        let mut command = Command::new(server_bin());
        command.env_remove("CLOUDKEEP_DATABASE_URL").env("CLOUDKEEP_DATA", data);
        if let Some(url) = database_url {
            command.env("CLOUDKEEP_DATABASE_URL", url);
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("CLOUDKEEP_LOG", "warn,cloudkeep=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = lines.next().expect("server output").unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let pid = child.id();
        Self {
            child,
            base: format!("http://{address}"),
            pid,
        }
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds used so far by every running process whose command name is
/// `name` (`postgres`: the database server's backends and helpers).
#[allow(dead_code)]
pub fn cpu_seconds_of(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == name))
        .map(cpu_seconds)
        .sum()
}

/// CPU seconds used so far by the threads of process `pid` whose name
/// starts with `prefix` (from the scheduler's nanosecond counts; a thread
/// that has ended no longer counts).
#[allow(dead_code)]
pub fn thread_cpu_seconds(pid: u32, prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|comm| comm.starts_with(prefix)))
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1e9
}

/// CPU seconds (user + system) a process has used, all its threads
/// included, those that have ended too.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}
