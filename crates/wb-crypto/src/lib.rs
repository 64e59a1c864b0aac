//! Key hierarchy and secrets for Work-books.
//!
//! Architecture invariant: this is the only crate that handles raw key material.
//! Every secret type zeroizes on drop and prints `***` in `Debug`.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod breached;
mod files;
mod key_versions;
mod keys;
mod passphrase;
mod secret;
mod signing;
mod token;
mod totp;

pub use breached::{breached_list_len, is_breached};
pub use files::{
    is_content_address, ChunkOpener, ChunkSealer, ContentHasher, FileCryptoError, SealedTail,
    CHUNK_LEN, HEADER_LEN, SEALED_CHUNK_LEN,
};
pub use key_versions::{
    sealed_key_version, CompanyKeys, VersionedOpener, VersionedSealer, ENVELOPE_LEN,
};
pub use keys::{write_private_file, CryptoError, DataKey, KekId, MasterKey, WrappedBy};
pub use passphrase::{
    check_strength, hash_passphrase, verify_passphrase, PassphraseError, MAX_PASSPHRASE_BYTES,
};
pub use secret::Secret;
pub use signing::{verify_node_certificate, verify_signature, NodeCertifier, NodeKey};
pub use token::{constant_time_eq, new_token, sha256_hex, token_hash, NewToken};
pub use totp::{new_recovery_codes, recovery_code_hash, TotpError, TotpSecret, RECOVERY_CODES};
