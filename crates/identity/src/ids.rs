//! The ids of the identity domain as types, so that an account id can
//! never be passed where an organization or a session id is expected (and
//! two ids in a row cannot be swapped unnoticed).
//!
//! An id is made in one of two ways: [`generate`](AccountId::generate) for
//! a new one, or [`new`](AccountId::new) for one read back from the store,
//! a URL or a form. Any text is a well-formed id to look up: an id that
//! names nothing is "not found", never a parse error, as it was when ids
//! were strings. The store binds them with [`as_str`](AccountId::as_str).

/// Declares a text id: a private `String` (a random UUID when made here,
/// unless another way to make one is given), shown as itself, serialized
/// as a plain JSON string.
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        text_id! { $(#[$doc])* $name, made by uuid::Uuid::new_v4().to_string() }
    };
    ($(#[$doc:meta])* $name:ident, made by $make:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// An id read back from the store, a URL or a form.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }

            /// A new id.
            pub fn generate() -> Self {
                Self($make)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

text_id! {
    /// An account: the person behind a login email (a random UUID).
    AccountId
}

text_id! {
    /// An organization (a random UUID).
    OrgId
}

text_id! {
    /// A session, signed in or half signed in (a random UUID). Not a
    /// secret: the browser proves a session with its
    /// [`SessionToken`](crate::SessionToken), and the id is what the
    /// member's list of sessions shows and revokes.
    SessionId
}

text_id! {
    /// A second-step method of an account (a [`SecondFactor`](crate::SecondFactor):
    /// an authenticator app, a phone for SMS, a security key, a linked
    /// device; a random UUID). The API calls it a method.
    FactorId
}

text_id! {
    /// An application password (a random UUID; the password itself is
    /// shown once and stored only as a digest).
    AppPasswordId
}

text_id! {
    /// A push approval request sent to an account's linked devices. Not a
    /// random UUID but a random token (16 bytes): the browser that waits
    /// for the answer polls by it, and only its own session may finish it.
    ApprovalRequestId, made by crate::secrets::random_token(16)
}

#[cfg(test)]
mod tests {
    use super::{AccountId, ApprovalRequestId};

    #[test]
    fn an_id_shows_and_serializes_as_its_text() {
        let id = AccountId::new("3b0c-x");
        assert_eq!(id.to_string(), "3b0c-x");
        assert_eq!(id.as_str(), "3b0c-x");
        assert_eq!(format!("{id:?}"), "AccountId(\"3b0c-x\")");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"3b0c-x\"");
        let back: AccountId = serde_json::from_str("\"3b0c-x\"").unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(AccountId::generate(), AccountId::generate());
        assert_ne!(ApprovalRequestId::generate(), ApprovalRequestId::generate());
    }
}
