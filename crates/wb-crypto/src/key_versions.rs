//! A company's data keys by version: the current one seals everything new,
//! each version opens what it sealed.
//!
//! What a version ≥ 2 seals starts with an envelope, `WBKV` and the version
//! (u32, big-endian), so a reader picks the key without trying them all and
//! an object store can be counted by the version each object needs. Version
//! 1 writes no envelope: that is the format every company used before keys
//! had versions, so nothing stored before is rewritten.
//!
//! A legacy blob (`seal` output) starts with a random nonce, so one in 2^32
//! begins with `WBKV` by chance: opening then falls back to version 1, and
//! the dependency count may place it under another version, which only
//! delays that version's retirement (never destroys a key still needed: a
//! version is destroyed only when nothing counts for it *and* no older one
//! is held, see `wb_app`'s retirement).

use std::fmt;

use crate::files::{ChunkOpener, ChunkSealer, ContentHasher, FileCryptoError, SealedTail};
use crate::keys::{CryptoError, DataKey};

const ENVELOPE_MAGIC: &[u8; 4] = b"WBKV";
/// Bytes of the envelope before what a version ≥ 2 sealed.
pub const ENVELOPE_LEN: usize = 8;

/// The version an object needs, from its first bytes (fewer than
/// `ENVELOPE_LEN` bytes, or no envelope: version 1).
pub fn sealed_key_version(head: &[u8]) -> u32 {
    match head {
        [m0, m1, m2, m3, v0, v1, v2, v3, ..] if [*m0, *m1, *m2, *m3] == *ENVELOPE_MAGIC => {
            u32::from_be_bytes([*v0, *v1, *v2, *v3]).max(1)
        }
        _ => 1,
    }
}

fn envelope(version: u32) -> [u8; ENVELOPE_LEN] {
    let mut out = [0u8; ENVELOPE_LEN];
    out[..4].copy_from_slice(ENVELOPE_MAGIC);
    out[4..].copy_from_slice(&version.to_be_bytes());
    out
}

/// The versions of a company's key held now: the current one and the older
/// ones not yet destroyed.
#[derive(Clone)]
pub struct CompanyKeys {
    current_version: u32,
    current: DataKey,
    /// Older versions still held, newest first.
    older: Vec<(u32, DataKey)>,
}

impl fmt::Debug for CompanyKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompanyKeys")
            .field("current_version", &self.current_version)
            .field(
                "older",
                &self.older.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl CompanyKeys {
    /// A company whose key never rotated (version 1 only).
    pub fn single(key: DataKey) -> CompanyKeys {
        CompanyKeys::new(1, key, Vec::new())
    }

    /// `current` at `current_version` (at least 1) and older versions still held.
    pub fn new(current_version: u32, current: DataKey, older: Vec<(u32, DataKey)>) -> CompanyKeys {
        let mut older: Vec<_> = older
            .into_iter()
            .filter(|(v, _)| *v != current_version)
            .collect();
        older.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
        CompanyKeys {
            current_version: current_version.max(1),
            current,
            older,
        }
    }

    /// The key everything new is sealed with (and the company database is keyed with).
    pub fn current(&self) -> &DataKey {
        &self.current
    }

    pub fn current_version(&self) -> u32 {
        self.current_version
    }

    /// Every version held, the current first.
    pub fn versions(&self) -> Vec<u32> {
        std::iter::once(self.current_version)
            .chain(self.older.iter().map(|(v, _)| *v))
            .collect()
    }

    /// The key of one version, when held.
    pub fn version(&self, version: u32) -> Option<&DataKey> {
        if version == self.current_version {
            return Some(&self.current);
        }
        self.older
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, k)| k)
    }

    /// Seals a blob under the current version.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let sealed = self.current.seal(plaintext, aad)?;
        if self.current_version == 1 {
            return Ok(sealed);
        }
        let mut out = Vec::with_capacity(ENVELOPE_LEN + sealed.len());
        out.extend_from_slice(&envelope(self.current_version));
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a blob with the version it names (or version 1).
    pub fn open(
        &self,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
        let version = sealed_key_version(sealed);
        if version != 1 {
            if let Some(key) = self.version(version) {
                if let Ok(plain) = key.open(&sealed[ENVELOPE_LEN..], aad) {
                    return Ok(plain);
                }
            }
        }
        // No envelope, or a legacy nonce that happened to look like one.
        match self.version(1) {
            Some(key) => key.open(sealed, aad),
            None => Err(CryptoError::Decrypt),
        }
    }

    /// A hasher computing content addresses under the current version.
    pub fn content_hasher(&self) -> ContentHasher {
        self.current.content_hasher()
    }

    /// The content address of `data` under the current version.
    pub fn content_address(&self, data: &[u8]) -> String {
        self.current.content_address(data)
    }

    /// Encrypts a new object of `company_id` under the current version.
    pub fn file_sealer(&self, company_id: &str) -> VersionedSealer {
        VersionedSealer {
            inner: self.current.file_sealer(company_id),
            envelope: (self.current_version != 1).then(|| envelope(self.current_version)),
        }
    }

    /// Decrypts an object of `company_id` stored under `address`, with the
    /// version its first bytes name.
    pub fn file_opener(&self, company_id: &str, address: &str) -> VersionedOpener {
        VersionedOpener {
            keys: self.clone(),
            company_id: company_id.to_string(),
            address: address.to_string(),
            head: Vec::with_capacity(ENVELOPE_LEN),
            inner: None,
        }
    }
}

/// `ChunkSealer` with the envelope of its version in front.
pub struct VersionedSealer {
    inner: ChunkSealer,
    envelope: Option<[u8; ENVELOPE_LEN]>,
}

impl fmt::Debug for VersionedSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionedSealer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl VersionedSealer {
    fn with_envelope(&mut self, sealed: Vec<u8>) -> Vec<u8> {
        match self.envelope.take() {
            Some(head) => {
                let mut out = Vec::with_capacity(ENVELOPE_LEN + sealed.len());
                out.extend_from_slice(&head);
                out.extend_from_slice(&sealed);
                out
            }
            None => sealed,
        }
    }

    /// Plaintext bytes taken so far.
    pub fn size(&self) -> u64 {
        self.inner.size()
    }

    /// Plaintext bytes held back, not yet sealed.
    pub fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>, FileCryptoError> {
        let sealed = self.inner.push(data)?;
        Ok(self.with_envelope(sealed))
    }

    pub fn finish(mut self) -> Result<SealedTail, FileCryptoError> {
        let head = self.envelope.take();
        let mut tail = self.inner.finish()?;
        if let Some(head) = head {
            tail.bytes.splice(0..0, head);
        }
        Ok(tail)
    }

    pub fn finish_as(mut self, address: &str) -> Result<SealedTail, FileCryptoError> {
        let head = self.envelope.take();
        let mut tail = self.inner.finish_as(address)?;
        if let Some(head) = head {
            tail.bytes.splice(0..0, head);
        }
        Ok(tail)
    }
}

/// `ChunkOpener` that picks its key from the object's first bytes.
pub struct VersionedOpener {
    keys: CompanyKeys,
    company_id: String,
    address: String,
    /// The first bytes, until there are enough to read the envelope.
    head: Vec<u8>,
    inner: Option<ChunkOpener>,
}

impl fmt::Debug for VersionedOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionedOpener")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl VersionedOpener {
    /// Sealed bytes held back, not yet opened.
    pub fn buffered(&self) -> usize {
        self.head.len() + self.inner.as_ref().map_or(0, ChunkOpener::buffered)
    }

    /// Chooses the key from `head` and feeds it what followed the envelope.
    fn start(&mut self) -> Result<Vec<u8>, FileCryptoError> {
        let version = sealed_key_version(&self.head);
        let key = self
            .keys
            .version(version)
            .ok_or(FileCryptoError::KeyVersion(version))?;
        let mut opener = key.file_opener(&self.company_id, &self.address);
        let skip = if version == 1 { 0 } else { ENVELOPE_LEN };
        let head = std::mem::take(&mut self.head);
        let out = opener.push(&head[skip..])?;
        self.inner = Some(opener);
        Ok(out)
    }

    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<u8>, FileCryptoError> {
        let mut out = Vec::new();
        if self.inner.is_none() {
            let take = (ENVELOPE_LEN - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.head.len() < ENVELOPE_LEN {
                return Ok(out);
            }
            out = self.start()?;
        }
        if let Some(inner) = self.inner.as_mut() {
            out.extend(inner.push(data)?);
        }
        Ok(out)
    }

    pub fn finish(mut self) -> Result<Vec<u8>, FileCryptoError> {
        if self.inner.is_none() {
            if self.head.is_empty() {
                return Err(FileCryptoError::Truncated);
            }
            // Shorter than an envelope: only a (cut short) version-1 object.
            self.start()?;
        }
        match self.inner {
            Some(inner) => inner.finish(),
            None => Err(FileCryptoError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const COMPANY: &str = "0190c0de-0000-7000-8000-000000000001";

    fn rotated() -> (CompanyKeys, CompanyKeys) {
        let v1 = DataKey::generate();
        let v2 = DataKey::generate();
        (
            CompanyKeys::single(v1.clone()),
            CompanyKeys::new(2, v2, vec![(1, v1)]),
        )
    }

    #[test]
    fn version_one_writes_the_legacy_format() {
        let key = DataKey::generate();
        let keys = CompanyKeys::single(key.clone());
        let sealed = keys.seal(b"hello", b"aad").unwrap();
        assert_eq!(&*key.open(&sealed, b"aad").unwrap(), b"hello");
        let mut sealer = keys.file_sealer(COMPANY);
        let mut object = sealer.push(b"file").unwrap();
        object.extend(sealer.finish().unwrap().bytes);
        assert_eq!(&object[..4], b"WBF1");
    }

    #[test]
    fn a_rotated_key_opens_old_and_new_and_seals_new() {
        let (before, after) = rotated();
        let old = before.seal(b"old", b"a").unwrap();
        let new = after.seal(b"new", b"a").unwrap();
        assert_eq!(sealed_key_version(&old), 1);
        assert_eq!(sealed_key_version(&new), 2);
        assert_eq!(&*after.open(&old, b"a").unwrap(), b"old");
        assert_eq!(&*after.open(&new, b"a").unwrap(), b"new");
        assert!(
            before.open(&new, b"a").is_err(),
            "v1 alone opens no v2 blob"
        );
        assert!(after.open(&new, b"b").is_err(), "aad still bound");
        // Version 1 destroyed: what it sealed opens no more.
        let only_v2 = CompanyKeys::new(2, after.current().clone(), Vec::new());
        assert!(only_v2.open(&old, b"a").is_err());
        assert_eq!(&*only_v2.open(&new, b"a").unwrap(), b"new");
    }

    #[test]
    fn a_changed_envelope_version_fails() {
        let (_, after) = rotated();
        let mut new = after.seal(b"new", b"a").unwrap();
        new[7] = 1;
        assert!(after.open(&new, b"a").is_err());
        new[7] = 9;
        assert!(after.open(&new, b"a").is_err());
    }

    fn seal_file(keys: &CompanyKeys, data: &[u8], pieces: usize) -> (Vec<u8>, String) {
        let mut sealer = keys.file_sealer(COMPANY);
        let mut out = Vec::new();
        for piece in data.chunks((data.len() / pieces.max(1)).max(1)) {
            out.extend(sealer.push(piece).unwrap());
        }
        let tail = sealer.finish().unwrap();
        out.extend(tail.bytes);
        (out, tail.address)
    }

    fn open_file(
        keys: &CompanyKeys,
        object: &[u8],
        address: &str,
        piece: usize,
    ) -> Result<Vec<u8>, FileCryptoError> {
        let mut opener = keys.file_opener(COMPANY, address);
        let mut plain = Vec::new();
        for p in object.chunks(piece.max(1)) {
            plain.extend(opener.push(p)?);
        }
        plain.extend(opener.finish()?);
        Ok(plain)
    }

    #[test]
    fn an_empty_file_round_trips_under_both_versions() {
        let (before, after) = rotated();
        for keys in [&before, &after] {
            let (object, address) = seal_file(keys, b"", 1);
            assert_eq!(open_file(&after, &object, &address, 3).unwrap(), b"");
        }
        assert_eq!(
            open_file(&after, b"", "x", 1).unwrap_err(),
            FileCryptoError::Truncated
        );
    }

    #[test]
    fn a_file_of_a_destroyed_version_names_it() {
        let (_, after) = rotated();
        let v3 = CompanyKeys::new(3, DataKey::generate(), Vec::new());
        let (object, address) = seal_file(&after, b"data", 1);
        assert_eq!(
            open_file(&v3, &object, &address, 5).unwrap_err(),
            FileCryptoError::KeyVersion(2)
        );
    }

    proptest! {
        #[test]
        fn files_round_trip_across_versions(
            data in proptest::collection::vec(any::<u8>(), 0..200_000),
            pieces in 1usize..5,
            read_piece in 1usize..100_000,
            old in any::<bool>(),
        ) {
            let (before, after) = rotated();
            let sealing = if old { &before } else { &after };
            let (object, address) = seal_file(sealing, &data, pieces);
            prop_assert_eq!(sealed_key_version(&object), if old { 1 } else { 2 });
            prop_assert_eq!(&open_file(&after, &object, &address, read_piece).unwrap(), &data);
            let mut cut = object.clone();
            cut.truncate(object.len() - 1);
            prop_assert!(open_file(&after, &cut, &address, read_piece).is_err());
        }

        #[test]
        fn blobs_round_trip_across_versions(
            data in proptest::collection::vec(any::<u8>(), 0..2_000),
            old in any::<bool>(),
        ) {
            let (before, after) = rotated();
            let sealing = if old { &before } else { &after };
            let sealed = sealing.seal(&data, b"aad").unwrap();
            prop_assert_eq!(&after.open(&sealed, b"aad").unwrap()[..], &data[..]);
        }
    }
}
