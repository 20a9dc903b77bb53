//! What the store keeps of an account.

use std::fmt;

/// An account: a name that belongs to whoever knows its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The name folded to its unique key (ASCII lower case).
    pub key: String,
    /// The name as its owner spelled it when creating the account.
    pub name: String,
    /// The password's hash in PHC string form (`$argon2id$...`).
    pub hash: String,
    /// When the account was created, in seconds since the Unix epoch.
    pub created: i64,
}

/// Leaves the hash out: it must not reach a log.
impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("key", &self.key)
            .field("name", &self.name)
            .field("hash", &"***")
            .field("created", &self.created)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_hides_the_hash() {
        let a = super::Account {
            key: "alice".into(),
            name: "Alice".into(),
            hash: "$argon2id$secret".into(),
            created: 1,
        };
        assert!(!format!("{a:?}").contains("secret"));
    }
}
