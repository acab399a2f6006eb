//! The companion authenticator app (`cloudkeep-authenticator`): its state,
//! linking a device to an account, and offline codes. The binary in the
//! `cloudkeep` package is a thin command line over this.
//!
//! State lives in one folder with owner-only permissions
//! (`accounts.json`, written to a temporary file and renamed). Each linked
//! account keeps its server, email, the TOTP seed shared with the server,
//! and the device's Ed25519 signing key (whose public half the server
//! keeps, for signing push approvals). The app waits for approval requests
//! with a signed long poll and answers them with a signed message. The
//! protocol is in `docs/authenticator.md`.
#![forbid(unsafe_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
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
    /// The server said the method was removed: this device no longer
    /// approves sign-ins for the account.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
}

impl LinkedAccount {
    /// `ana@example.org (cloud.example.org)`.
    pub fn label(&self) -> String {
        let host = self.server.split("://").nth(1).unwrap_or(&self.server);
        format!("{} ({host})", self.email)
    }

    fn signing_key(&self) -> anyhow::Result<SigningKey> {
        let bytes = URL_SAFE_NO_PAD
            .decode(self.signing_key.as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .context("this account's device key is damaged; link it again")?;
        Ok(SigningKey::from_bytes(&bytes))
    }

    /// The signed fields every device call carries.
    fn proof(&self, purpose: &str, extra: &str) -> anyhow::Result<serde_json::Value> {
        let timestamp = now_ms();
        let message = identity::device_message(purpose, &self.method_id, timestamp, extra);
        let signature = self.signing_key()?.sign(message.as_bytes());
        Ok(serde_json::json!({
            "method_id": self.method_id,
            "timestamp": timestamp,
            "signature": URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        }))
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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An approval request, as the server sends it to the device.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ApprovalRequest {
    pub id: String,
    pub email: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub ip: String,
    pub browser: String,
    pub place: Option<String>,
    pub numbers: [u8; 3],
}

/// Why a call to the server for an account failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The method was removed in the console: the device is unlinked.
    #[error("{0} was removed from this device's server (the method was removed in the console); 'remove' it here")]
    Revoked(String),
    #[error("{0}")]
    Refused(String),
    #[error("cannot reach {server}: {error}")]
    Unreachable { server: String, error: String },
}

/// Sends a call of `account`'s device: the server's answer when it
/// accepted the call, else why not.
async fn call(account: &LinkedAccount, request: reqwest::RequestBuilder) -> Result<reqwest::Response, CallError> {
    let response = request.send().await.map_err(|e| CallError::Unreachable {
        server: account.server.clone(),
        error: e.to_string(),
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status == reqwest::StatusCode::GONE && body["error"]["code"] == "device_revoked" {
        return Err(CallError::Revoked(account.label()));
    }
    let message = body["error"]["message"].as_str().unwrap_or("no details");
    Err(CallError::Refused(format!("the server refused ({status}): {message}")))
}

/// Waits up to `wait` seconds (the server holds at most 55) for the
/// account's open approval requests.
pub async fn poll(
    client: &reqwest::Client,
    account: &LinkedAccount,
    wait: u64,
) -> Result<Vec<ApprovalRequest>, CallError> {
    let mut body = account
        .proof("poll", "")
        .map_err(|e| CallError::Refused(e.to_string()))?;
    body["wait"] = wait.min(55).into();
    let request = client
        .post(format!("{}/api/v1/authenticator/requests", account.server))
        .timeout(std::time::Duration::from_secs(wait.min(55) + 15))
        .json(&body);
    let response = call(account, request).await?;
    #[derive(Deserialize)]
    struct Requests {
        requests: Vec<ApprovalRequest>,
    }
    let answer: Requests = response
        .json()
        .await
        .map_err(|e| CallError::Refused(format!("the server's answer is not understood: {e}")))?;
    Ok(answer.requests)
}

/// Answers a request: the number the member picked, and Yes or No. Returns
/// the server's verdict: `approved`, `denied` or `wrong_number`.
pub async fn answer(
    client: &reqwest::Client,
    account: &LinkedAccount,
    request_id: &str,
    number: u8,
    approve: bool,
) -> Result<String, CallError> {
    let extra = identity::answer_extra(request_id, number, approve);
    let mut body = account
        .proof("answer", &extra)
        .map_err(|e| CallError::Refused(e.to_string()))?;
    body["number"] = number.into();
    body["approve"] = approve.into();
    let url = format!("{}/api/v1/authenticator/requests/{request_id}/answer", account.server);
    let response = call(account, client.post(url).json(&body)).await?;
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    Ok(body["status"].as_str().unwrap_or("unknown").to_owned())
}

/// Asks the member for something (a second-step code).
pub type Ask = Box<dyn FnOnce() -> anyhow::Result<String> + Send>;
/// Asks the member a yes/no question.
pub type Confirm = Box<dyn FnOnce(&str) -> anyhow::Result<bool> + Send>;

/// Linking from the device itself: what the member types.
pub struct Credentials {
    pub email: String,
    pub password: String,
    /// Asked only when the account already has two-step verification.
    pub second_factor: Ask,
    /// "Link this device?" — the member's explicit yes.
    pub authorize: Confirm,
    /// The name the console lists the device under.
    pub device_name: String,
}

async fn api_error(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or("no details");
    anyhow::anyhow!("the server refused ({status}): {message}")
}

/// Signs in to `server` as the member (password, then the current second
/// factor if 2FA is on), asks them to authorize, makes a link and links
/// this device with it, and signs out again.
pub async fn link_from_device(state: &mut State, server: &str, credentials: Credentials) -> anyhow::Result<Linked> {
    let server = server.trim().trim_end_matches('/').to_owned();
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        bail!("the server address must start with https:// (or http://)");
    }
    let client = reqwest::Client::builder().cookie_store(true).build()?;
    let signed = client
        .post(format!("{server}/api/v1/session"))
        .json(&serde_json::json!({"email": credentials.email, "password": credentials.password, "remember": false}))
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    if !signed.status().is_success() {
        return Err(api_error(signed).await);
    }
    let signed: serde_json::Value = signed.json().await?;
    if signed["status"] == "second_factor_required" {
        let code = (credentials.second_factor)()?;
        let code = code.trim().to_owned();
        let method = if code.chars().all(|c| c.is_ascii_digit() || c == ' ') {
            "totp"
        } else {
            "backup_code"
        };
        let step = client
            .post(format!("{server}/api/v1/session/second-factor"))
            .json(&serde_json::json!({"method": method, "code": code}))
            .send()
            .await?;
        if !step.status().is_success() {
            return Err(api_error(step).await);
        }
    }
    let question = format!(
        "Link this device to {} on {server}? It will approve your sign-ins.",
        credentials.email
    );
    let result = async {
        if !(credentials.authorize)(&question)? {
            bail!("not linked: you did not authorize this device");
        }
        let made = client
            .post(format!("{server}/api/v1/me/two-factor/authenticator"))
            .json(&serde_json::json!({"name": credentials.device_name}))
            .send()
            .await?;
        if !made.status().is_success() {
            return Err(api_error(made).await);
        }
        let made: serde_json::Value = made.json().await?;
        let link_text = made["link"].as_str().context("the server sent no link")?.to_owned();
        link(state, &link_text).await
    }
    .await;
    // Sign out whatever happened: the session was only for linking.
    let _ = client.delete(format!("{server}/api/v1/session")).send().await;
    result
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

/// Marks an account revoked in the state (the server said so).
pub fn mark_revoked(state: &mut State, account: &LinkedAccount) -> anyhow::Result<()> {
    for a in &mut state.accounts {
        if a.server == account.server && a.method_id == account.method_id {
            a.revoked = true;
        }
    }
    state.save()
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
        revoked: false,
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
            revoked: false,
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
            revoked: false,
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
