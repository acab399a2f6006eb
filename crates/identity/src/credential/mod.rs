//! Credentials other than the account password, one kind per file:
//! [`totp`] one-time codes, [`backup_code`]s, [`app_password`]s.
//!
//! Backup codes and application passwords are typed by people, so both
//! use one alphabet without look-alike characters (no 0/o, 1/i/l) and are
//! accepted in any case, with or without dashes and spaces.

pub mod app_password;
pub mod backup_code;
pub mod sms;
pub mod totp;

use rand::Rng;

/// 31 symbols: digits 2-9 and the letters without i, l and o.
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";

/// `len` random symbols of [`ALPHABET`] (log2 31 = 4.95 bits each).
fn random_code(len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// The canonical form of what someone typed, if it can be a code of `len`
/// symbols.
fn normalize_code(input: &str, len: usize) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = code.len() == len && code.bytes().all(|b| ALPHABET.contains(&b));
    valid.then_some(code)
}

/// A name a member gives a credential ("Phone", "NAS QNAP"): 1 to 60
/// characters, no control characters.
pub fn parse_label(raw: &str) -> Option<String> {
    let name = raw.trim();
    let ok = !name.is_empty() && name.chars().count() <= 60 && !name.chars().any(char::is_control);
    ok.then(|| name.to_owned())
}

/// `abcd-efgh-...`: groups of `size` joined by dashes.
fn grouped(code: &str, size: usize) -> String {
    code.as_bytes()
        .chunks(size)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_only_the_alphabet_and_survive_retyping() {
        let code = random_code(28);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)));
        let typed = grouped(&code, 4).to_uppercase().replace('-', " - ");
        assert_eq!(normalize_code(&typed, 28), Some(code));
    }

    #[test]
    fn lookalikes_and_wrong_lengths_are_refused() {
        assert_eq!(normalize_code("abcde-fghj0", 10), None, "0 is not in the alphabet");
        assert_eq!(normalize_code("abcde-fghjk", 11), None);
        assert_eq!(normalize_code("", 10), None);
        assert_eq!(ALPHABET.len(), 31);
    }
}
