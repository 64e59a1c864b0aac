//! What an export is encrypted to and what opens it.

use std::io::{BufRead, Read, Write};
use std::iter;

use wb_crypto::{check_strength, PassphraseError, Secret};

use super::read::{read_from, KeepFiles};
use super::{ExportContents, MAX_PASSPHRASE_WORK_FACTOR, PASSPHRASE_WORK_FACTOR};
use crate::platform::MIN_PASSPHRASE_SCORE;

/// What an export is encrypted to. Holds no key the platform could decrypt with.
pub enum ExportKey {
    /// An age X25519 recipient (public key); the customer keeps the identity.
    Recipient(age::x25519::Recipient),
    /// A passphrase (age scrypt recipient); never stored, logged or echoed.
    Passphrase(Secret),
}

impl std::fmt::Debug for ExportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportKey::Recipient(r) => write!(f, "Recipient({r})"),
            ExportKey::Passphrase(_) => f.write_str("Passphrase(***)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("recipient is not an age X25519 recipient (age1…): {0}")]
    BadRecipient(&'static str),
    #[error("passphrase is too weak: {0}")]
    WeakPassphrase(String),
}

impl ExportKey {
    pub fn recipient(text: &str) -> Result<ExportKey, KeyError> {
        text.trim()
            .parse::<age::x25519::Recipient>()
            .map(ExportKey::Recipient)
            .map_err(KeyError::BadRecipient)
    }

    /// A passphrase that passes the same strength check as user passphrases
    /// (`related` are words that make it guessable: company name, email).
    pub fn passphrase(passphrase: Secret, related: &[&str]) -> Result<ExportKey, KeyError> {
        check_strength(&passphrase, related, MIN_PASSPHRASE_SCORE).map_err(|e| match e {
            PassphraseError::Weak(reason) => KeyError::WeakPassphrase(reason),
            PassphraseError::Hash => KeyError::WeakPassphrase("it cannot be checked".into()),
        })?;
        Ok(ExportKey::Passphrase(passphrase))
    }

    /// `age-x25519` or `age-scrypt`.
    pub fn encryption(&self) -> &'static str {
        match self {
            ExportKey::Recipient(_) => "age-x25519",
            ExportKey::Passphrase(_) => "age-scrypt",
        }
    }

    /// The public recipient, for the metadata and the audit trail.
    pub fn public_recipient(&self) -> Option<String> {
        match self {
            ExportKey::Recipient(r) => Some(r.to_string()),
            ExportKey::Passphrase(_) => None,
        }
    }
}

/// Wraps `output` in an age encryptor to the key (binary age format): what
/// is written to the result is encrypted as it goes; `finish` writes the
/// last chunk. CPU-bound (a passphrase costs about a second of scrypt):
/// call it off the async runtime.
pub fn encrypting_writer<W: Write>(
    output: W,
    key: &ExportKey,
) -> anyhow::Result<age::stream::StreamWriter<W>> {
    let writer = match key {
        ExportKey::Recipient(r) => {
            age::Encryptor::with_recipients(iter::once(r as &dyn age::Recipient))?
                .wrap_output(output)?
        }
        ExportKey::Passphrase(p) => {
            let mut r = age::scrypt::Recipient::new(age::secrecy::SecretString::from(
                p.expose().to_owned(),
            ));
            r.set_work_factor(PASSPHRASE_WORK_FACTOR);
            age::Encryptor::with_recipients(iter::once(&r as &dyn age::Recipient))?
                .wrap_output(output)?
        }
    };
    Ok(writer)
}

/// Encrypts `plain` to the key (binary age format). CPU-bound: call it off
/// the async runtime.
pub fn encrypt(plain: &[u8], key: &ExportKey) -> anyhow::Result<Vec<u8>> {
    let mut writer = encrypting_writer(Vec::with_capacity(plain.len() + 1024), key)?;
    writer.write_all(plain)?;
    Ok(writer.finish()?)
}

/// What opens an export: age identities (`AGE-SECRET-KEY-1…`) or the passphrase.
pub enum Unlock {
    Identities(Vec<Box<dyn age::Identity + Send + Sync>>),
    Passphrase(Secret),
}

impl Unlock {
    pub fn identity(identity: age::x25519::Identity) -> Unlock {
        Unlock::Identities(vec![Box::new(identity)])
    }

    /// Parses an age identity file (`age-keygen` output: comments and one
    /// `AGE-SECRET-KEY-1…` per line).
    pub fn identity_file(text: &str) -> Result<Unlock, ReadError> {
        let file = age::IdentityFile::from_buffer(text.as_bytes())
            .map_err(|e| ReadError::Key(format!("not an age identity file: {e}")))?;
        let identities = file
            .into_identities()
            .map_err(|e| ReadError::Key(format!("not an age identity file: {e}")))?;
        if identities.is_empty() {
            return Err(ReadError::Key("the identity file holds no identity".into()));
        }
        Ok(Unlock::Identities(identities))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Key(String),
    #[error("cannot decrypt the export: {0}")]
    Decrypt(String),
    #[error("not a readable Work-books export: {0}")]
    Format(String),
    #[error("the export fails verification: {0}")]
    Integrity(String),
    /// A verified attachment could not be written where the reader puts it.
    #[error("cannot write the export's files: {0}")]
    Output(String),
}

/// Opens an age file for reading: what the result reads is the plaintext,
/// each 64 KiB chunk authenticated before it is released (a damaged or cut
/// file is an error from `read`, at the latest at the end).
pub fn decrypting_reader<R: BufRead>(
    input: R,
    unlock: &Unlock,
) -> Result<age::stream::StreamReader<R>, ReadError> {
    let decryptor = age::Decryptor::new_buffered(input)
        .map_err(|e| ReadError::Decrypt(format!("not an age file: {e}")))?;
    let reader = match unlock {
        Unlock::Identities(ids) => {
            if decryptor.is_scrypt() {
                return Err(ReadError::Decrypt(
                    "this export is encrypted to a passphrase, not to an identity".into(),
                ));
            }
            decryptor
                .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::NoMatchingKeys => ReadError::Decrypt(
                        "the identity does not match the export's recipient".into(),
                    ),
                    other => ReadError::Decrypt(other.to_string()),
                })?
        }
        Unlock::Passphrase(p) => {
            if !decryptor.is_scrypt() {
                return Err(ReadError::Decrypt(
                    "this export is encrypted to an age recipient, not to a passphrase".into(),
                ));
            }
            let mut identity =
                age::scrypt::Identity::new(age::secrecy::SecretString::from(p.expose().to_owned()));
            identity.set_max_work_factor(MAX_PASSPHRASE_WORK_FACTOR);
            decryptor
                .decrypt(iter::once(&identity as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::DecryptionFailed
                    | age::DecryptError::NoMatchingKeys
                    | age::DecryptError::KeyDecryptionFailed => {
                        ReadError::Decrypt("wrong passphrase".into())
                    }
                    other => ReadError::Decrypt(other.to_string()),
                })?
        }
    };
    Ok(reader)
}

/// Decrypts an export (binary age file) to its plaintext tar, in memory.
pub fn decrypt(bytes: &[u8], unlock: &Unlock) -> Result<Vec<u8>, ReadError> {
    let mut reader = decrypting_reader(bytes, unlock)?;
    let mut plain = Vec::new();
    reader
        .read_to_end(&mut plain)
        .map_err(|e| ReadError::Decrypt(format!("the file is damaged or truncated: {e}")))?;
    Ok(plain)
}

/// Decrypts, unpacks and verifies an export held in memory, keeping every
/// file (attachments included) in memory: for tests and small exports.
/// `read_from` over `decrypting_reader` streams instead.
pub fn decrypt_and_read(bytes: &[u8], unlock: &Unlock) -> Result<ExportContents, ReadError> {
    let mut kept = KeepFiles::default();
    let verified = read_from(decrypting_reader(bytes, unlock)?, &mut kept)?;
    Ok(verified.into_contents(kept))
}
