//! The server key and the random tokens derived from the system RNG.
//!
//! One 256-bit server key (a file in the data folder, or configuration)
//! keys every HMAC the server computes: CSRF tokens, device cookies, and
//! later application-password and backup-code digests. Each use derives its
//! own sub-key from a label so that a digest made for one purpose can never
//! be replayed for another.

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
        let mut sub = HmacSha256::new_from_slice(&self.0).expect("any key length");
        sub.update(purpose.as_bytes());
        let sub_key = sub.finalize().into_bytes();
        let mut mac = HmacSha256::new_from_slice(&sub_key).expect("any key length");
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
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
    fn tokens_are_long_and_distinct() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
    }
}
