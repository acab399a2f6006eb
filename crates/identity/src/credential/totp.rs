//! Time-based one-time passwords (RFC 6238) as every authenticator app
//! computes them: HMAC-SHA-1, 6 digits, 30-second steps.
//!
//! A code is accepted for the previous, the current or the next step (clock
//! drift and typing time), and only for a step after the last one this
//! credential accepted: a code seen once, even by an attacker looking over
//! a shoulder, never works again.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::clock::Millis;

pub const DIGITS: usize = 6;
pub const PERIOD: Millis = 30_000;
/// 160 bits, the length RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;

/// A TOTP seed. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Base32 without padding, as apps expect it typed or in a QR code.
    pub fn base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }
}

/// The step a moment falls in.
pub fn step_at(now: Millis) -> i64 {
    now.div_euclid(PERIOD)
}

/// The code for a step (RFC 4226 dynamic truncation).
pub fn code_at_step(secret: &TotpSecret, step: i64) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:0width$}", binary % 10u32.pow(DIGITS as u32), width = DIGITS)
}

/// The step `code` matches at `now`: within one step of now and strictly
/// after `last_step`, the last step this credential accepted.
pub fn verify(secret: &TotpSecret, code: &str, now: Millis, last_step: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    let mut matched = None;
    // Every candidate is computed and compared, match or not, so timing
    // does not tell which step matched.
    for step in [current - 1, current, current + 1] {
        let equal: bool = code_at_step(secret, step).as_bytes().ct_eq(code.as_bytes()).into();
        if equal && step > last_step && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// Whether `code` is the code of a step around `now` that this credential
/// already accepted (at or before `last_step`): a code typed twice, not a
/// wrong one.
pub fn used_before(secret: &TotpSecret, code: &str, now: Millis, last_step: i64) -> bool {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let current = step_at(now);
    [current - 1, current, current + 1]
        .into_iter()
        .filter(|step| *step <= last_step)
        .any(|step| bool::from(code_at_step(secret, step).as_bytes().ct_eq(code.as_bytes())))
}

/// The `otpauth://` URI an authenticator app reads from the QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &TotpSecret) -> String {
    let label = format!("{}:{}", percent_encode(issuer), percent_encode(account));
    format!(
        "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={}",
        secret.base32(),
        percent_encode(issuer),
        PERIOD / 1000
    )
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec())
    }

    /// RFC 6238 appendix B, SHA-1 column (8-digit values; a 6-digit code
    /// is the same number modulo 10^6).
    #[test]
    fn rfc_6238_test_vectors() {
        for (seconds, eight_digits) in [
            (59i64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let code = code_at_step(&rfc_secret(), step_at(seconds * 1000));
            assert_eq!(code, eight_digits[2..], "at {seconds}");
        }
    }

    #[test]
    fn one_step_of_drift_is_accepted_and_no_more() {
        let s = rfc_secret();
        let now = 1_234_567_890_000;
        let step = step_at(now);
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = code_at_step(&s, step + offset);
            assert_eq!(verify(&s, &code, now, 0).is_some(), accepted, "offset {offset}");
        }
    }

    #[test]
    fn a_step_is_never_accepted_twice() {
        let s = rfc_secret();
        let now = 1_234_567_890_000;
        let step = step_at(now);
        let code = code_at_step(&s, step);
        assert_eq!(verify(&s, &code, now, 0), Some(step));
        assert_eq!(verify(&s, &code, now, step), None, "replay");
        let next = code_at_step(&s, step + 1);
        assert_eq!(verify(&s, &next, now, step), Some(step + 1));
        let previous = code_at_step(&s, step - 1);
        assert_eq!(
            verify(&s, &previous, now, step),
            None,
            "an older step after a newer one"
        );
    }

    #[test]
    fn malformed_codes_are_refused() {
        let s = rfc_secret();
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(verify(&s, bad, 59_000, 0), None, "{bad}");
        }
        let spaced = code_at_step(&s, 1);
        let spaced = format!("{} {}", &spaced[..3], &spaced[3..]);
        assert_eq!(verify(&s, &spaced, 59_000, 0), Some(1), "spaces are ignored");
    }

    /// Agreement with an independent implementation on random seeds and
    /// times. Needs Debian's `oathtool`: skipped with a message when it is
    /// missing, a failure under `CI=true`.
    #[test]
    fn agrees_with_oathtool() {
        if std::process::Command::new("oathtool")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "oathtool is required under CI"
            );
            eprintln!("SKIPPED (TOTP cross-check): oathtool is not installed (apt-get install oathtool)");
            return;
        }
        for round in 0..20i64 {
            let secret = TotpSecret::generate();
            let seconds = 1_700_000_000 + round * 7_919;
            let out = std::process::Command::new("oathtool")
                .args(["--totp", "--base32", "-N", &format!("@{seconds}"), &secret.base32()])
                .output()
                .unwrap();
            let theirs = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                code_at_step(&secret, step_at(seconds * 1000)),
                theirs.trim(),
                "at {seconds}"
            );
        }
    }

    #[test]
    fn uri_names_issuer_and_account() {
        let uri = otpauth_uri("cloudkeep", "ana garcía@example.org", &rfc_secret());
        assert_eq!(
            uri,
            "otpauth://totp/cloudkeep:ana%20garc%C3%ADa@example.org?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=cloudkeep&algorithm=SHA1&digits=6&period=30"
        );
    }
}
