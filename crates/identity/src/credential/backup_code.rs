//! Backup codes: ten single-use codes shown once when two-step
//! verification is turned on (or regenerated), for when no other method is
//! at hand. Ten symbols each (49 bits; attempts are throttled), shown as
//! `xxxxx-xxxxx`, stored only as HMAC-SHA-256 digests under the server key.

use crate::secrets::ServerKey;

pub const COUNT: usize = 10;
const LENGTH: usize = 10;
const PURPOSE: &str = "backup-code";

/// Ten fresh codes, formatted for people.
pub fn generate() -> Vec<String> {
    (0..COUNT)
        .map(|_| super::grouped(&super::random_code(LENGTH), 5))
        .collect()
}

/// Whether text has the shape of a backup code.
pub fn well_formed(typed: &str) -> bool {
    super::normalize_code(typed, LENGTH).is_some()
}

/// The stored digest of a code as typed, if it can be a backup code.
pub fn digest(key: &ServerKey, typed: &str) -> Option<String> {
    super::normalize_code(typed, LENGTH).map(|code| key.digest(PURPOSE, code.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_distinct_codes_that_digest_however_typed() {
        let key = ServerKey::generate();
        let codes = generate();
        assert_eq!(codes.len(), 10);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 11);
            assert_eq!(digest(&key, code), digest(&key, &code.to_uppercase().replace('-', " ")));
        }
        assert_eq!(digest(&key, "short"), None);
    }
}
