//! Hash chains for the change journal and the audit log: each record commits to
//! the previous record's hash, so editing, deleting or reordering breaks the chain.

use sha2::{Digest, Sha256};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 over the previous hash, the sequence number and each field, every
/// field length-prefixed so that no two field lists hash alike.
pub fn link(prev_hash: &str, seq: i64, fields: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(seq.to_be_bytes());
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_unambiguous() {
        assert_ne!(
            link(GENESIS, 1, &["ab", "c"]),
            link(GENESIS, 1, &["a", "bc"])
        );
        assert_ne!(link(GENESIS, 1, &["a"]), link(GENESIS, 2, &["a"]));
        assert_eq!(link(GENESIS, 1, &["a"]), link(GENESIS, 1, &["a"]));
    }
}
