//! Where a file's contents are. A node's `blob_id` column holds one of two
//! kinds of reference, told apart here and nowhere else: a small file's
//! contents kept in the database with their row (`i` and 32 hex digits, a
//! row of `drive_inline`), or a blob in the blob store's drive namespace
//! (its 32 hex digits).

use blobs::{BlobError, BlobKey, Namespace};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// In the database; the reference is the `drive_inline` row's id.
    Inline(String),
    /// In the blob store.
    Blob(BlobKey),
}

impl Contents {
    /// New inline contents' reference.
    pub(crate) fn new_inline() -> Self {
        Self::Inline(format!("i{}", crate::files::uuid_like()))
    }

    /// What a node's `blob_id` names. A reference that is neither kind
    /// names no contents: [`BlobError::NotFound`].
    pub fn parse(blob_id: &str) -> Result<Self, BlobError> {
        if blob_id.starts_with('i') {
            return Ok(Self::Inline(blob_id.to_owned()));
        }
        BlobKey::parse(Namespace::Drive, blob_id)
            .map(Self::Blob)
            .map_err(|_| BlobError::NotFound)
    }

    /// The reference as a node's `blob_id` keeps it.
    pub fn blob_id(&self) -> &str {
        match self {
            Self::Inline(id) => id,
            Self::Blob(key) => key.id(),
        }
    }
}

/// Whether a node's `blob_id` names contents kept in the database: the
/// store drops those with the last node using them.
pub fn is_inline(blob_id: &str) -> bool {
    matches!(Contents::parse(blob_id), Ok(Contents::Inline(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_told_apart_and_round_trip() {
        let inline = Contents::new_inline();
        assert!(is_inline(inline.blob_id()));
        assert_eq!(Contents::parse(inline.blob_id()).unwrap(), inline);
        let blob = Contents::Blob(BlobKey::new(Namespace::Drive));
        assert!(!is_inline(blob.blob_id()));
        assert_eq!(Contents::parse(blob.blob_id()).unwrap(), blob);
        assert!(matches!(Contents::parse(""), Err(BlobError::NotFound)));
        assert!(matches!(Contents::parse("../etc/passwd"), Err(BlobError::NotFound)));
    }
}
