//! The ids of the drive domain as types. A drive's id is the `<id>` of
//! `<id>.connect.<domain>`, a number that cannot be passed where a size,
//! a quota or another count is expected; it reads from a URL path exactly
//! as a `u64` does. A node's id names a file or folder of a drive's tree,
//! and cannot be passed where a name, a path or a blob id is expected.

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

/// A file or folder of a drive's tree: 32 hex digits (see
/// [`NodeId::generate`]), or "" for the drive's top folder, which has no
/// row of its own. Made by [`NodeId::generate`] for a new node or
/// [`NodeId::new`] for one read back from the store; any text is a
/// well-formed id to look up (one that names nothing is simply not
/// found). The store binds it with [`as_str`](NodeId::as_str).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(String);

impl NodeId {
    /// An id read back from the store.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The drive's top folder (also the parent the top folder names).
    pub const fn top() -> Self {
        Self(String::new())
    }

    pub fn is_top(&self) -> bool {
        self.0.is_empty()
    }

    /// A new node's id: [`uuid_like`](crate::files::uuid_like), so ids
    /// made one after another sort one after another.
    pub fn generate() -> Self {
        Self(crate::files::uuid_like())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeId({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::{DriveId, NodeId};

    #[test]
    fn a_node_id_shows_as_its_text_and_the_top_folder_as_nothing() {
        let id = NodeId::new("0190ab");
        assert_eq!((id.as_str(), id.to_string()), ("0190ab", "0190ab".to_owned()));
        assert_eq!(format!("{id:?}"), "NodeId(\"0190ab\")");
        assert!(!id.is_top());
        assert!(NodeId::top().is_top());
        assert_eq!(NodeId::top(), NodeId::new(""));
        assert_ne!(NodeId::generate(), NodeId::generate());
    }

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
