//! Finds the peers the black-box tests run against (litmus, rclone,
//! oathtool, aiosmtpd, schemathesis, Chromium with playwright-core), so
//! that a test whose peer is missing shows in `cargo test`'s output as
//! ignored, with what to install, instead of passing without running.
//!
//! For each missing peer it sets a `missing_<peer>` cfg, which the tests
//! use as `#[cfg_attr(missing_litmus, ignore = "…")]`. Under `CI=true`
//! nothing is ignored: the test runs, and its own check of the peer fails
//! it, so CI never passes without its peers.
//!
//! In a debug build (the tests') the script runs again when the places a
//! peer would be installed to change (the directories of `PATH`, the
//! Python packages, the browser test's `node_modules`), or when `PATH`,
//! `CI` or `CLOUDKEEP_SCHEMATHESIS` change. Tests built in release
//! (`cargo test --release`) are never marked ignored: a missing peer
//! skips them at run time with a message, as outside this script.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the API fuzzing test looks for schemathesis when
/// `CLOUDKEEP_SCHEMATHESIS` is not set (`.ci/run` installs it there).
const SCHEMATHESIS_VENV: &str = "/opt/schemathesis/bin/schemathesis";

/// The Python the email test runs its SMTP server with (Debian's, where
/// `python3-aiosmtpd` goes).
const PYTHON: &str = "/usr/bin/python3";

const PEERS: [&str; 6] = ["litmus", "rclone", "oathtool", "aiosmtpd", "schemathesis", "browser"];

fn main() {
    for peer in PEERS {
        println!("cargo::rustc-check-cfg=cfg(missing_{peer})");
    }
    println!("cargo::rerun-if-changed=build.rs");
    // The cfgs only matter to the tests, which build in the debug profile:
    // a release build (`cargo run --release -- serve`, the benchmarks)
    // neither runs the peers nor is rebuilt when a package is installed.
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        return;
    }
    for variable in ["PATH", "CI", "CLOUDKEEP_SCHEMATHESIS"] {
        println!("cargo::rerun-if-env-changed={variable}");
    }
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).filter(|d| d.is_dir()).collect())
        .unwrap_or_default();
    for dir in &path_dirs {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let modules = browser_dir.join("node_modules");
    let watched = if modules.is_dir() { modules.clone() } else { browser_dir };
    println!("cargo::rerun-if-changed={}", watched.display());
    for dir in python_package_dirs() {
        println!("cargo::rerun-if-changed={}", dir.display());
    }

    if std::env::var("CI").as_deref() == Ok("true") {
        return;
    }
    let on_path = |program: &str| path_dirs.iter().any(|d| d.join(program).is_file());
    let schemathesis = std::env::var("CLOUDKEEP_SCHEMATHESIS")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| SCHEMATHESIS_VENV.to_owned());
    let found = [
        ("litmus", on_path("litmus")),
        ("rclone", on_path("rclone")),
        ("oathtool", on_path("oathtool")),
        ("aiosmtpd", runs(PYTHON, &["-c", "import aiosmtpd"])),
        (
            "schemathesis",
            runs(&schemathesis, &["--version"]) || runs("schemathesis", &["--version"]),
        ),
        (
            "browser",
            Path::new("/usr/bin/chromium").exists() && on_path("node") && modules.join("playwright-core").is_dir(),
        ),
    ];
    for (peer, present) in found {
        if !present {
            println!("cargo::rustc-cfg=missing_{peer}");
        }
    }
}

/// Whether `program args…` runs and succeeds.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The directories Python installs packages into (to notice aiosmtpd
/// being installed).
fn python_package_dirs() -> Vec<PathBuf> {
    let Ok(out) = Command::new(PYTHON)
        .args(["-c", "import site; print('\\n'.join(site.getsitepackages()))"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .collect()
}
