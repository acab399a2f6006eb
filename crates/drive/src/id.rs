//! A drive's id as a type: the `<id>` of `<id>.connect.<domain>`, a
//! number that cannot be passed where a size, a quota or another count is
//! expected. It reads from a URL path exactly as a `u64` does.

/// Numeric, random (6 or 7 digits), never reused while the drive exists.
/// Made by [`DriveId::new`] for a new drive or one read back from the
/// store, a URL or a host name; any `u64` is a well-formed id to look up
/// (one the store cannot hold, ≥ 2^63, is simply not found).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct DriveId(u64);

impl DriveId {
    pub const fn new(id: u64) -> Self {
        Self(id)
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// For the store, which binds it as a number.
impl From<DriveId> for u64 {
    fn from(id: DriveId) -> u64 {
        id.0
    }
}

impl std::fmt::Display for DriveId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Debug for DriveId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DriveId({})", self.0)
    }
}

impl std::str::FromStr for DriveId {
    type Err = std::num::ParseIntError;

    /// A drive id as a URL or a host name spells it (decimal digits).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::DriveId;

    #[test]
    fn a_drive_id_reads_and_shows_as_its_number() {
        let id: DriveId = "1234567".parse().unwrap();
        assert_eq!((id.get(), id.to_string()), (1_234_567, "1234567".to_owned()));
        assert_eq!(format!("{id:?}"), "DriveId(1234567)");
        assert_eq!(serde_json::to_string(&id).unwrap(), "1234567");
        assert!("12x".parse::<DriveId>().is_err());
        assert!("".parse::<DriveId>().is_err());
        assert_eq!("18446744073709551615".parse::<DriveId>().unwrap().get(), u64::MAX);
    }
}
