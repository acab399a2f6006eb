//! The companion authenticator app (`cloudkeep-authenticator`): its state,
//! linking a device to an account, and offline codes. The binary in the
//! `cloudkeep` package is a thin command line over this.
//!
//! State lives in one folder with owner-only permissions
//! (`accounts.json`, written to a temporary file and renamed). Each linked
//! account keeps its server, email, the TOTP seed shared with the server,
//! and the device's Ed25519 signing key (whose public half the server
//! keeps, for signing push approvals). The protocol is in
//! `docs/authenticator.md`.
#![forbid(unsafe_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use identity::credential::totp::{self, TotpSecret};
use serde::{Deserialize, Serialize};

/// One account linked on this device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkedAccount {
    /// The server's base address, e.g. `https://cloud.example.org`.
    pub server: String,
    pub email: String,
    pub issuer: String,
    /// The method's id on the server.
    pub method_id: String,
    /// Base32 TOTP seed.
    pub totp_secret: String,
    /// The device's Ed25519 signing key (32-byte seed, base64url).
    pub signing_key: String,
}

impl LinkedAccount {
    /// `ana@example.org (cloud.example.org)`.
    pub fn label(&self) -> String {
        let host = self.server.split("://").nth(1).unwrap_or(&self.server);
        format!("{} ({host})", self.email)
    }
}

/// The app's state folder.
pub struct State {
    dir: PathBuf,
    pub accounts: Vec<LinkedAccount>,
}

impl State {
    /// Opens (creating with owner-only permissions) the state folder.
    pub fn open(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        let file = dir.join("accounts.json");
        let accounts = match fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        Ok(Self { dir, accounts })
    }

    /// Writes the accounts atomically (temporary file, then rename).
    pub fn save(&self) -> anyhow::Result<()> {
        let file = self.dir.join("accounts.json");
        let tmp = self.dir.join(format!("accounts.json.{}.tmp", std::process::id()));
        let mut out = private_file(&tmp)?;
        out.write_all(&serde_json::to_vec_pretty(&self.accounts)?)?;
        out.sync_all()?;
        fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))?;
        Ok(())
    }

    /// The account `selector` names: its number in `accounts` (from 1), or
    /// its email.
    pub fn find(&self, selector: &str) -> anyhow::Result<usize> {
        if let Ok(n) = selector.parse::<usize>()
            && (1..=self.accounts.len()).contains(&n)
        {
            return Ok(n - 1);
        }
        let matches: Vec<usize> = (0..self.accounts.len())
            .filter(|i| self.accounts[*i].email.eq_ignore_ascii_case(selector) || self.accounts[*i].label() == selector)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => bail!("no linked account is '{selector}'; see 'accounts'"),
            _ => bail!("'{selector}' names several accounts; use its number from 'accounts'"),
        }
    }
}

/// What linking returns.
pub struct Linked {
    pub account: LinkedAccount,
    /// When this turned two-step verification on: the backup codes.
    pub backup_codes: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct LinkAnswer {
    method_id: String,
    email: String,
    issuer: String,
    totp_secret: String,
    backup_codes: Option<Vec<String>>,
}

/// Splits a link (`https://host/authenticator/<token>`) into the server's
/// address and the token.
pub fn parse_link(link: &str) -> anyhow::Result<(String, String)> {
    let link = link.trim();
    let (server, token) = link
        .rsplit_once("/authenticator/")
        .filter(|(s, t)| (s.starts_with("http://") || s.starts_with("https://")) && !t.is_empty() && !t.contains('/'))
        .context("this is not a cloudkeep authenticator link (https://…/authenticator/…)")?;
    Ok((server.to_owned(), token.to_owned()))
}

/// Registers this device with the server behind `link`, and remembers the
/// account.
pub async fn link(state: &mut State, link: &str) -> anyhow::Result<Linked> {
    let (server, token) = parse_link(link)?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public_key = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
    let response = reqwest::Client::new()
        .post(format!("{server}/api/v1/authenticator/link"))
        .json(&serde_json::json!({"token": token, "public_key": public_key}))
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or("no details");
        bail!("the server refused the link ({status}): {message}");
    }
    let answer: LinkAnswer = response.json().await.context("the server's answer is not understood")?;
    let account = LinkedAccount {
        server,
        email: answer.email,
        issuer: answer.issuer,
        method_id: answer.method_id,
        totp_secret: answer.totp_secret,
        signing_key: URL_SAFE_NO_PAD.encode(key.to_bytes()),
    };
    state
        .accounts
        .retain(|a| !(a.server == account.server && a.email == account.email));
    state.accounts.push(account.clone());
    state.save()?;
    Ok(Linked {
        account,
        backup_codes: answer.backup_codes,
    })
}

/// The current offline code of an account and the seconds it stays valid.
pub fn code(account: &LinkedAccount, now_ms: i64) -> anyhow::Result<(String, i64)> {
    let seed = data_encoding::BASE32_NOPAD
        .decode(account.totp_secret.as_bytes())
        .context("a stored seed is damaged")?;
    let step = totp::step_at(now_ms);
    let left = ((step + 1) * totp::PERIOD - now_ms + 999) / 1000;
    Ok((totp::code_at_step(&TotpSecret::from_bytes(seed), step), left))
}

#[cfg(unix)]
fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !path.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}

fn private_file(path: &Path) -> anyhow::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_parsed() {
        assert_eq!(
            parse_link(" https://cloud.example.org/authenticator/abc_DEF-1 ").unwrap(),
            ("https://cloud.example.org".to_owned(), "abc_DEF-1".to_owned())
        );
        assert!(parse_link("https://cloud.example.org/other/abc").is_err());
        assert!(parse_link("ftp://x/authenticator/abc").is_err());
        assert!(parse_link("https://x/authenticator/").is_err());
    }

    #[test]
    fn codes_match_the_rfc_and_count_down() {
        let account = LinkedAccount {
            server: "https://x".into(),
            email: "a@x.org".into(),
            issuer: "cloudkeep".into(),
            method_id: "m".into(),
            totp_secret: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into(),
            signing_key: String::new(),
        };
        assert_eq!(code(&account, 59_000).unwrap(), ("287082".to_owned(), 1));
        assert_eq!(code(&account, 31_000).unwrap().1, 29);
    }

    #[test]
    fn state_is_private_and_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("ck-authenticator-{}", std::process::id()));
        let mut state = State::open(&dir).unwrap();
        state.accounts.push(LinkedAccount {
            server: "https://cloud.example.org".into(),
            email: "ana@example.org".into(),
            issuer: "cloudkeep".into(),
            method_id: "m".into(),
            totp_secret: "AAAA".into(),
            signing_key: "k".into(),
        });
        state.save().unwrap();
        let again = State::open(&dir).unwrap();
        assert_eq!(again.accounts, state.accounts);
        assert_eq!(again.find("1").unwrap(), 0);
        assert_eq!(again.find("ANA@example.org").unwrap(), 0);
        assert!(again.find("2").is_err() && again.find("bo@example.org").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
            assert_eq!(
                fs::metadata(dir.join("accounts.json")).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        fs::remove_dir_all(dir).unwrap();
    }
}
