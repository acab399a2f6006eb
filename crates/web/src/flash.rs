//! One-time messages for Post/Redirect/Get: a form's handler does the
//! work, puts what to say in a `ck_flash` cookie and redirects to a page
//! people may reload; that page shows the message once and deletes the
//! cookie.
//!
//! The cookie is sealed (AES-GCM under the server key), so it can carry
//! what is shown once (a new application password, backup codes) without
//! it ever being in a URL or readable on the way. A flash that carries
//! such a secret is bound to the page's CSRF token, i.e. to the session it
//! was made in; plain messages are not bound, so they survive a change of
//! session (signing in or out).

use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::cookies::{self, Lifetime};

pub const FLASH_COOKIE: &str = "ck_flash";
const PURPOSE: &str = "flash";
/// Long enough for any redirect, short enough that a stale one is gone.
const LIFETIME_SECONDS: i64 = 300;
/// Browsers keep cookies up to 4096 bytes.
const MAX_COOKIE: usize = 3800;

/// Something shown once, besides the message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Secret {
    /// A new application password: its name and plaintext.
    AppPassword { name: String, password: String },
    /// New backup codes; `first_time` when two-step verification just
    /// turned on.
    BackupCodes { codes: Vec<String>, first_time: bool },
}

/// A message for the next page: a catalogue key and its arguments, so it
/// is shown in the language the page is read in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flash {
    pub key: String,
    pub args: Vec<(String, String)>,
    /// An error rather than a confirmation of success.
    #[serde(default)]
    pub error: bool,
    /// A value in the email field of the next form (sign-in after
    /// accepting an invitation).
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub secret: Option<Secret>,
}

impl Flash {
    pub fn notice(key: &str) -> Self {
        Self {
            key: key.to_owned(),
            args: Vec::new(),
            error: false,
            email: None,
            secret: None,
        }
    }

    pub fn error(key: &str) -> Self {
        Self {
            error: true,
            ..Self::notice(key)
        }
    }

    /// The message in `t`'s language: a plural entry takes its form from
    /// the `count` argument (see [`Flash::count`]).
    pub fn text(&self, t: &crate::i18n::Catalog) -> String {
        let args: Vec<(&str, &str)> = self.args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let count = self
            .args
            .iter()
            .find(|(k, _)| k == "count")
            .and_then(|(_, v)| v.parse().ok());
        match count {
            Some(n) if t.is_plural(&self.key) => {
                let others: Vec<(&str, &str)> = args.into_iter().filter(|(k, _)| *k != "count").collect();
                t.plural(&self.key, n, &others)
            }
            _ => t.tf(&self.key, &args),
        }
    }

    /// The number a plural message counts.
    pub fn count(self, n: u64) -> Self {
        self.arg("count", n.to_string())
    }

    pub fn arg(mut self, name: &str, value: impl Into<String>) -> Self {
        self.args.push((name.to_owned(), value.into()));
        self
    }

    pub fn with_secret(mut self, secret: Secret) -> Self {
        self.secret = Some(secret);
        self
    }

    pub fn with_email(mut self, email: &str) -> Self {
        self.email = Some(email.to_owned());
        self
    }

    /// The `Set-Cookie` value carrying this flash for the page bound to
    /// `csrf` (only used when the flash carries a secret).
    pub fn cookie(&self, state: &AppState, csrf: &str) -> String {
        let context = if self.secret.is_some() { csrf } else { "" };
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut sealed = state.identity().key().seal(PURPOSE, context, &json);
        if sealed.len() > MAX_COOKIE {
            // Never the case for what the console says; better no message
            // than a cookie the browser drops along with the redirect.
            tracing::warn!(key = %self.key, "flash message too long, dropped");
            sealed.clear();
        }
        cookies::set(
            FLASH_COOKIE,
            &sealed,
            Lifetime::Seconds(LIFETIME_SECONDS),
            state.config().secure_cookies(),
        )
    }

    /// The flash a request carries, if the server sealed it (for this
    /// session, when it holds a secret).
    pub fn read(state: &AppState, sealed: &str, csrf: &str) -> Option<Flash> {
        let key = state.identity().key();
        if let Some(bytes) = key.open(PURPOSE, csrf, sealed) {
            return serde_json::from_slice(&bytes).ok();
        }
        let bytes = key.open(PURPOSE, "", sealed)?;
        let flash: Flash = serde_json::from_slice(&bytes).ok()?;
        flash.secret.is_none().then_some(flash)
    }

    /// Deletes the cookie once its page was shown.
    pub fn clear(state: &AppState) -> String {
        cookies::set(FLASH_COOKIE, "", Lifetime::Expired, state.config().secure_cookies())
    }
}

/// Where a `GET` of a form's address (a reload after a redirect was lost,
/// a language switch on a page a form answered) goes instead of a 405:
/// the page the form belongs to.
pub fn page_of(path: &str) -> String {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["orgs", _, "leave"] => "/".to_owned(),
        ["orgs", org, "security", ..] => format!("/orgs/{org}/security"),
        ["orgs", org, ..] => format!("/orgs/{org}/members"),
        ["drives", drive, "imports", ..] => format!("/drives/{drive}/imports"),
        ["drives", drive, "access", ..] => format!("/drives/{drive}/access"),
        ["drives", drive, ..] => format!("/drives/{drive}/files"),
        ["security", "two-factor", ..] => "/security/two-factor".to_owned(),
        ["security", "app-passwords", ..] => "/security/app-passwords".to_owned(),
        ["security", ..] => "/security".to_owned(),
        ["signin", ..] => "/signin".to_owned(),
        _ => "/".to_owned(),
    }
    .chars()
    .filter(|c| !c.is_control())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_address_leads_to_its_page() {
        assert_eq!(page_of("/orgs/o1/members/a1/remove"), "/orgs/o1/members");
        assert_eq!(page_of("/orgs/o1/leave"), "/");
        assert_eq!(page_of("/orgs/o1/security"), "/orgs/o1/security");
        assert_eq!(page_of("/drives/d1/upload"), "/drives/d1/files");
        assert_eq!(page_of("/drives/d1/imports/i1/cancel"), "/drives/d1/imports");
        assert_eq!(page_of("/security/two-factor/totp/x/confirm"), "/security/two-factor");
        assert_eq!(page_of("/security/app-passwords/x/revoke"), "/security/app-passwords");
        assert_eq!(page_of("/security/password"), "/security");
        assert_eq!(page_of("/signout"), "/");
        assert_eq!(page_of("/language"), "/");
    }
}
