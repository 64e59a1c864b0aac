//! Bearer tokens and API keys: high-entropy random strings stored only as SHA-256.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::Secret;

pub struct NewToken {
    /// Shown once to its owner; never stored.
    pub token: Secret,
    /// What the store keeps and looks up by.
    pub hash: String,
}

/// A fresh token `<prefix>_<43 chars of base64url>` (256 bits of entropy).
pub fn new_token(prefix: &str) -> NewToken {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let token = Secret::new(format!("{prefix}_{body}"));
    let hash = token_hash(&token);
    NewToken { token, hash }
}

pub fn token_hash(token: &Secret) -> String {
    hex::encode(Sha256::digest(token.expose().as_bytes()))
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Hex SHA-256 of arbitrary bytes (request fingerprints for idempotency).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let a = new_token("wbs");
        let b = new_token("wbs");
        assert_ne!(a.token.expose(), b.token.expose());
        assert!(a.token.expose().starts_with("wbs_"));
        assert_eq!(a.token.expose().len(), 4 + 43);
        assert_eq!(token_hash(&a.token), a.hash);
        assert_ne!(a.hash, b.hash);
    }
}
