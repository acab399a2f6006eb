//! The sync user id (`AB12345`): the user name calendar and contact clients
//! sign in with. Two capital letters and five digits; the store guarantees it
//! is unique and never handed out again.

use rand::Rng;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyncUserId(String);

impl SyncUserId {
    pub fn parse(raw: &str) -> Option<Self> {
        let bytes = raw.as_bytes();
        let ok = bytes.len() == 7
            && bytes[..2].iter().all(u8::is_ascii_uppercase)
            && bytes[2..].iter().all(u8::is_ascii_digit);
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn random(rng: &mut impl Rng) -> Self {
        let letter = |rng: &mut dyn rand::RngCore| char::from(b'A' + rng.gen_range(0..26u8));
        let a = letter(rng);
        let b = letter(rng);
        Self(format!("{a}{b}{:05}", rng.gen_range(0..100_000u32)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SyncUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_have_the_documented_shape() {
        let mut rng = rand::thread_rng();
        for _ in 0..1000 {
            let id = SyncUserId::random(&mut rng);
            assert_eq!(SyncUserId::parse(id.as_str()), Some(id));
        }
    }

    #[test]
    fn parse_refuses_other_shapes() {
        for bad in ["ab12345", "A123456", "AB1234", "AB123456", "ÁB12345"] {
            assert!(SyncUserId::parse(bad).is_none(), "{bad}");
        }
    }
}
