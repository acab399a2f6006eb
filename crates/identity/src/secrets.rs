//! The server key and the random tokens derived from the system RNG.
//!
//! One 256-bit server key (a file in the data folder, or configuration)
//! keys every HMAC the server computes: CSRF tokens, device cookies, and
//! later application-password and backup-code digests. Each use derives its
//! own sub-key from a label so that a digest made for one purpose can never
//! be replayed for another.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct ServerKey([u8; 32]);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

impl ServerKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// HMAC-SHA-256 of `message` under the sub-key for `purpose`, hex encoded.
    pub fn digest(&self, purpose: &str, message: &[u8]) -> String {
        let mut sub = <HmacSha256 as Mac>::new_from_slice(&self.0).expect("any key length");
        sub.update(purpose.as_bytes());
        let sub_key = sub.finalize().into_bytes();
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&sub_key).expect("any key length");
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }

    fn sub_key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"encryption:");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Encrypts a secret for storage (AES-256-GCM under a key derived for
    /// `purpose`, random nonce). `context` (e.g. the row id) is
    /// authenticated, so a sealed value copied to another row does not open.
    pub fn seal(&self, purpose: &str, context: &str, plaintext: &[u8]) -> String {
        let cipher = Aes256Gcm::new(&self.sub_key(purpose).into());
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("encryption cannot fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The plaintext of [`ServerKey::seal`], if it was sealed with this key,
    /// purpose and context and not altered.
    pub fn open(&self, purpose: &str, context: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let cipher = Aes256Gcm::new(&self.sub_key(purpose).into());
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .ok()
    }

    /// Constant-time check of a digest made by [`ServerKey::digest`].
    pub fn verify(&self, purpose: &str, message: &[u8], digest: &str) -> bool {
        let expected = self.digest(purpose, message);
        expected.as_bytes().ct_eq(digest.as_bytes()).into()
    }
}

/// A URL-safe random token with `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of a high-entropy token, as stored in the database: a leaked
/// table of token hashes opens no session.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_bound_to_their_purpose() {
        let key = ServerKey::generate();
        let d = key.digest("csrf", b"abc");
        assert!(key.verify("csrf", b"abc", &d));
        assert!(!key.verify("device", b"abc", &d));
        assert!(!key.verify("csrf", b"abd", &d));
        assert!(!ServerKey::generate().verify("csrf", b"abc", &d));
    }

    #[test]
    fn sealed_secrets_open_only_in_their_context() {
        let key = ServerKey::generate();
        let sealed = key.seal("totp", "factor-1", b"seed");
        assert_eq!(key.open("totp", "factor-1", &sealed).as_deref(), Some(&b"seed"[..]));
        assert_eq!(key.open("totp", "factor-2", &sealed), None, "another row");
        assert_eq!(key.open("sms", "factor-1", &sealed), None, "another purpose");
        assert_eq!(
            ServerKey::generate().open("totp", "factor-1", &sealed),
            None,
            "another key"
        );
        assert_ne!(sealed, key.seal("totp", "factor-1", b"seed"), "fresh nonce each time");
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            key.open("totp", "factor-1", &String::from_utf8(tampered).unwrap()),
            None
        );
        assert_eq!(key.open("totp", "factor-1", "!!"), None);
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
    }
}
