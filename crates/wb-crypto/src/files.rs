//! Attachments: keyed content addresses and streaming authenticated encryption.
//!
//! An object is a header (`WBF1` and a random 19-byte nonce prefix) followed
//! by chunks of `CHUNK_LEN` plaintext bytes, each sealed with
//! XChaCha20-Poly1305 under a key derived from the company's DEK. A chunk's
//! nonce is the prefix, its index (u32, big-endian) and a final flag; its
//! associated data names the company, the index and the flag, and the final
//! chunk's also the object's content address. So a chunk moved to another
//! position or object, an object cut short (even at a chunk boundary), an
//! object of another company, or an object filed under another address fails
//! authentication. Every chunk but the last is full; the last holds
//! 0..=`CHUNK_LEN` bytes.
//!
//! The content address is HMAC-SHA256 of the plaintext under another key
//! derived from the DEK: equal files of one company share an address, and
//! whoever can read the object store cannot confirm a guess of a file.
//!
//! Sealing and opening hold at most one chunk besides the caller's input.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::DataKey;

/// Plaintext bytes per chunk.
pub const CHUNK_LEN: usize = 64 * 1024;
const TAG_LEN: usize = 16;
/// Sealed bytes of a full chunk.
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
const MAGIC: &[u8; 4] = b"WBF1";
const PREFIX_LEN: usize = 19;
/// Bytes before the first chunk.
pub const HEADER_LEN: usize = MAGIC.len() + PREFIX_LEN;

const CHUNK_KEY_PURPOSE: &[u8] = b"workbooks-file-chunks/v1";
const ADDRESS_KEY_PURPOSE: &[u8] = b"workbooks-content-address/v1";
const AAD_PREFIX: &[u8] = b"workbooks-file/v1\n";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileCryptoError {
    #[error("the object does not start with a Work-books file header")]
    Header,
    #[error(
        "chunk {0} of the object fails authentication (altered, reordered, cut short, \
         or another file's or company's)"
    )]
    Chunk(u64),
    #[error("the object ends before its final chunk (cut short)")]
    Truncated,
    #[error("the object is larger than a file may be")]
    TooLarge,
    #[error("encryption failed")]
    Encrypt,
    #[error("the object is sealed under company key version {0}, which is no longer held")]
    KeyVersion(u32),
}

type HmacSha256 = Hmac<Sha256>;

/// A 32-byte key for one purpose, derived from the DEK (HMAC-SHA256).
fn derive(key: &DataKey, purpose: &[u8]) -> Zeroizing<[u8; 32]> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key.bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(purpose);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// Computes a content address over data fed in pieces.
pub struct ContentHasher(HmacSha256);

impl fmt::Debug for ContentHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentHasher(***)")
    }
}

impl ContentHasher {
    fn new(key: &DataKey) -> ContentHasher {
        let derived = derive(key, ADDRESS_KEY_PURPOSE);
        ContentHasher(
            <HmacSha256 as Mac>::new_from_slice(&derived[..])
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length")),
        )
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The address: 64 lowercase hex characters.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize().into_bytes())
    }

    fn address(&self) -> String {
        hex::encode(self.0.clone().finalize().into_bytes())
    }
}

/// True for a string shaped like a content address (what object paths may hold).
pub fn is_content_address(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

struct ChunkCipher {
    cipher: XChaCha20Poly1305,
    /// `AAD_PREFIX`, the company id and a newline.
    aad_base: Vec<u8>,
}

impl ChunkCipher {
    fn new(key: &DataKey, company_id: &str) -> ChunkCipher {
        let derived = derive(key, CHUNK_KEY_PURPOSE);
        let mut aad_base = AAD_PREFIX.to_vec();
        aad_base.extend_from_slice(company_id.as_bytes());
        aad_base.push(b'\n');
        ChunkCipher {
            cipher: XChaCha20Poly1305::new((&*derived).into()),
            aad_base,
        }
    }

    fn nonce(prefix: &[u8; PREFIX_LEN], index: u32, last: bool) -> XNonce {
        let mut nonce = [0u8; 24];
        nonce[..PREFIX_LEN].copy_from_slice(prefix);
        nonce[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
        nonce[23] = u8::from(last);
        XNonce::from(nonce)
    }

    fn aad(&self, index: u32, last: Option<&str>) -> Vec<u8> {
        let mut aad = self.aad_base.clone();
        aad.extend_from_slice(&u64::from(index).to_be_bytes());
        match last {
            Some(address) => {
                aad.push(1);
                aad.extend_from_slice(address.as_bytes());
            }
            None => aad.push(0),
        }
        aad
    }
}

/// Encrypts a file fed in pieces, computing its content address on the way.
pub struct ChunkSealer {
    cipher: ChunkCipher,
    prefix: [u8; PREFIX_LEN],
    header_sent: bool,
    index: u32,
    /// Plaintext not yet sealed: at most one chunk.
    pending: Zeroizing<Vec<u8>>,
    hasher: ContentHasher,
    size: u64,
}

impl fmt::Debug for ChunkSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkSealer")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The end of a sealed object.
#[derive(Debug)]
pub struct SealedTail {
    /// The last sealed bytes to write (the final chunk, and the header when
    /// nothing was pushed).
    pub bytes: Vec<u8>,
    /// The content address the object was sealed under.
    pub address: String,
    /// Plaintext bytes in the object.
    pub size: u64,
}

impl ChunkSealer {
    fn new(key: &DataKey, company_id: &str) -> ChunkSealer {
        let mut prefix = [0u8; PREFIX_LEN];
        rand::rngs::OsRng.fill_bytes(&mut prefix);
        ChunkSealer {
            cipher: ChunkCipher::new(key, company_id),
            prefix,
            header_sent: false,
            index: 0,
            pending: Zeroizing::new(Vec::with_capacity(CHUNK_LEN)),
            hasher: ContentHasher::new(key),
            size: 0,
        }
    }

    /// Plaintext bytes taken so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Plaintext bytes held back, not yet sealed (never more than `CHUNK_LEN`).
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if !self.header_sent {
            out.extend_from_slice(MAGIC);
            out.extend_from_slice(&self.prefix);
            self.header_sent = true;
        }
    }

    fn seal_pending(
        &mut self,
        last: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Result<(), FileCryptoError> {
        let nonce = ChunkCipher::nonce(&self.prefix, self.index, last.is_some());
        let aad = self.cipher.aad(self.index, last);
        let sealed = self
            .cipher
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &self.pending,
                    aad: &aad,
                },
            )
            .map_err(|_| FileCryptoError::Encrypt)?;
        out.extend_from_slice(&sealed);
        self.pending.clear();
        if last.is_none() {
            self.index = self.index.checked_add(1).ok_or(FileCryptoError::TooLarge)?;
        }
        Ok(())
    }

    /// Takes the next plaintext; returns the sealed bytes ready to write (the
    /// header first, then whole chunks). A full chunk is sealed only once more
    /// data follows it, since the last chunk is sealed differently.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<u8>, FileCryptoError> {
        let mut out = Vec::new();
        self.header(&mut out);
        self.hasher.update(data);
        self.size += data.len() as u64;
        while !data.is_empty() {
            if self.pending.len() == CHUNK_LEN {
                self.seal_pending(None, &mut out)?;
            }
            let take = (CHUNK_LEN - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(out)
    }

    /// Seals the last chunk under the content address of what was pushed.
    pub fn finish(self) -> Result<SealedTail, FileCryptoError> {
        let address = self.hasher.address();
        self.finish_as(&address)
    }

    /// Seals the last chunk under a given address: re-encrypting a stored
    /// object for another company keeps the address its records name.
    pub fn finish_as(mut self, address: &str) -> Result<SealedTail, FileCryptoError> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + SEALED_CHUNK_LEN);
        self.header(&mut bytes);
        self.seal_pending(Some(address), &mut bytes)?;
        Ok(SealedTail {
            bytes,
            address: address.to_string(),
            size: self.size,
        })
    }
}

/// Decrypts an object fed in pieces, releasing plaintext only once its chunk
/// authenticates; the final chunk is released by `finish`.
pub struct ChunkOpener {
    cipher: ChunkCipher,
    address: String,
    header: Vec<u8>,
    prefix: Option<[u8; PREFIX_LEN]>,
    index: u32,
    /// Sealed bytes not yet opened: at most one sealed chunk.
    pending: Vec<u8>,
}

impl fmt::Debug for ChunkOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkOpener")
            .field("address", &self.address)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl ChunkOpener {
    fn new(key: &DataKey, company_id: &str, address: &str) -> ChunkOpener {
        ChunkOpener {
            cipher: ChunkCipher::new(key, company_id),
            address: address.to_string(),
            header: Vec::with_capacity(HEADER_LEN),
            prefix: None,
            index: 0,
            pending: Vec::with_capacity(SEALED_CHUNK_LEN),
        }
    }

    /// Sealed bytes held back, not yet opened (never more than `SEALED_CHUNK_LEN`).
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    fn open_pending(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), FileCryptoError> {
        let prefix = self.prefix.ok_or(FileCryptoError::Header)?;
        let nonce = ChunkCipher::nonce(&prefix, self.index, last);
        let aad = self
            .cipher
            .aad(self.index, last.then_some(self.address.as_str()));
        let plain = self
            .cipher
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &self.pending,
                    aad: &aad,
                },
            )
            .map_err(|_| FileCryptoError::Chunk(u64::from(self.index)))?;
        out.extend_from_slice(&plain);
        self.pending.clear();
        if !last {
            self.index = self.index.checked_add(1).ok_or(FileCryptoError::TooLarge)?;
        }
        Ok(())
    }

    /// Takes the next sealed bytes; returns the plaintext of every chunk
    /// that is complete, authentic and known not to be the last.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<u8>, FileCryptoError> {
        if self.prefix.is_none() {
            let take = (HEADER_LEN - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.header.len() < HEADER_LEN {
                return Ok(Vec::new());
            }
            if &self.header[..MAGIC.len()] != MAGIC {
                return Err(FileCryptoError::Header);
            }
            let mut prefix = [0u8; PREFIX_LEN];
            prefix.copy_from_slice(&self.header[MAGIC.len()..]);
            self.prefix = Some(prefix);
        }
        let mut out = Vec::new();
        while !data.is_empty() {
            if self.pending.len() == SEALED_CHUNK_LEN {
                self.open_pending(false, &mut out)?;
            }
            let take = (SEALED_CHUNK_LEN - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(out)
    }

    /// Opens the final chunk: the object is whole and authentic only when this succeeds.
    pub fn finish(mut self) -> Result<Vec<u8>, FileCryptoError> {
        if self.prefix.is_none() {
            return Err(if self.header.is_empty() {
                FileCryptoError::Truncated
            } else {
                FileCryptoError::Header
            });
        }
        if self.pending.len() < TAG_LEN {
            return Err(FileCryptoError::Truncated);
        }
        let mut out = Vec::new();
        self.open_pending(true, &mut out)?;
        Ok(out)
    }
}

impl DataKey {
    /// A hasher computing content addresses under this key.
    pub fn content_hasher(&self) -> ContentHasher {
        ContentHasher::new(self)
    }

    /// The content address of `data` under this key.
    pub fn content_address(&self, data: &[u8]) -> String {
        let mut hasher = self.content_hasher();
        hasher.update(data);
        hasher.finish()
    }

    /// Encrypts a new object of `company_id` in chunks.
    pub fn file_sealer(&self, company_id: &str) -> ChunkSealer {
        ChunkSealer::new(self, company_id)
    }

    /// Decrypts an object of `company_id` stored under `address`.
    pub fn file_opener(&self, company_id: &str, address: &str) -> ChunkOpener {
        ChunkOpener::new(self, company_id, address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPANY: &str = "0190c0de-0000-7000-8000-000000000001";

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Seals `plain` in pieces of `piece` bytes; returns the object and its address.
    fn seal(key: &DataKey, company: &str, plain: &[u8], piece: usize) -> (Vec<u8>, String) {
        let mut sealer = key.file_sealer(company);
        let mut object = Vec::new();
        for part in plain.chunks(piece.max(1)) {
            object.extend(sealer.push(part).unwrap());
            assert!(sealer.buffered() <= CHUNK_LEN);
        }
        let tail = sealer.finish().unwrap();
        assert_eq!(tail.size, plain.len() as u64);
        object.extend(tail.bytes);
        (object, tail.address)
    }

    fn open(
        key: &DataKey,
        company: &str,
        address: &str,
        object: &[u8],
        piece: usize,
    ) -> Result<Vec<u8>, FileCryptoError> {
        let mut opener = key.file_opener(company, address);
        let mut plain = Vec::new();
        for part in object.chunks(piece.max(1)) {
            plain.extend(opener.push(part)?);
            assert!(opener.buffered() <= SEALED_CHUNK_LEN);
        }
        plain.extend(opener.finish()?);
        Ok(plain)
    }

    fn chunk_range(n: usize) -> std::ops::Range<usize> {
        HEADER_LEN + n * SEALED_CHUNK_LEN..HEADER_LEN + (n + 1) * SEALED_CHUNK_LEN
    }

    #[test]
    fn round_trips_at_every_boundary_and_piece_size() {
        let key = DataKey::generate();
        for len in [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            3 * CHUNK_LEN,
            3 * CHUNK_LEN + 17,
        ] {
            let plain = data(len);
            for piece in [1000, 7919, CHUNK_LEN, 5 * CHUNK_LEN] {
                let (object, address) = seal(&key, COMPANY, &plain, piece);
                let chunks = len.div_ceil(CHUNK_LEN).max(1);
                assert_eq!(
                    object.len(),
                    HEADER_LEN + len + chunks * TAG_LEN,
                    "len {len}"
                );
                assert_eq!(address, key.content_address(&plain));
                for open_piece in [1, 4099, SEALED_CHUNK_LEN, 1 << 20] {
                    if len > CHUNK_LEN && open_piece == 1 {
                        continue; // slow, and covered by the small sizes
                    }
                    let back = open(&key, COMPANY, &address, &object, open_piece).unwrap();
                    assert!(back == plain, "len {len} piece {piece}/{open_piece}");
                }
            }
        }
    }

    #[test]
    fn addresses_are_keyed_and_deterministic() {
        let a = DataKey::generate();
        let b = DataKey::generate();
        let receipt = b"receipt: 4 coffees, 12.00 EUR";
        assert_eq!(a.content_address(receipt), a.content_address(receipt));
        assert_ne!(a.content_address(receipt), b.content_address(receipt));
        assert_ne!(a.content_address(receipt), a.content_address(b"other"));
        assert!(is_content_address(&a.content_address(receipt)));
        assert!(!is_content_address("../etc/passwd"));
        // Two seals of one file differ (fresh nonce prefix) but share the address.
        let (one, addr_one) = seal(&a, COMPANY, receipt, 8);
        let (two, addr_two) = seal(&a, COMPANY, receipt, 8);
        assert_ne!(one, two);
        assert_eq!(addr_one, addr_two);
    }

    #[test]
    fn any_altered_byte_fails() {
        let key = DataKey::generate();
        let plain = data(2 * CHUNK_LEN + 100);
        let (object, address) = seal(&key, COMPANY, &plain, 10_000);
        for at in [0, 5, HEADER_LEN, HEADER_LEN + 70_000, object.len() - 1] {
            let mut tampered = object.clone();
            tampered[at] ^= 0x40;
            assert!(
                open(&key, COMPANY, &address, &tampered, 50_000).is_err(),
                "byte {at}"
            );
        }
    }

    #[test]
    fn cut_short_objects_fail() {
        let key = DataKey::generate();
        let plain = data(3 * CHUNK_LEN + 5);
        let (object, address) = seal(&key, COMPANY, &plain, 65_536);
        // At a chunk boundary: the last chunk left was not sealed as final.
        let at_boundary = &object[..chunk_range(2).end];
        assert_eq!(
            open(&key, COMPANY, &address, at_boundary, 4096),
            Err(FileCryptoError::Chunk(2))
        );
        // Inside a chunk, inside the header, or nothing at all.
        assert!(open(&key, COMPANY, &address, &object[..object.len() - 3], 4096).is_err());
        assert_eq!(
            open(&key, COMPANY, &address, &object[..HEADER_LEN + 5], 4096),
            Err(FileCryptoError::Truncated)
        );
        assert_eq!(
            open(&key, COMPANY, &address, &object[..10], 4096),
            Err(FileCryptoError::Header)
        );
        assert_eq!(
            open(&key, COMPANY, &address, &[], 4096),
            Err(FileCryptoError::Truncated)
        );
        // An extra chunk appended (a chunk repeated) fails too.
        let mut longer = object.clone();
        longer.extend_from_slice(&object[chunk_range(0)]);
        assert!(open(&key, COMPANY, &address, &longer, 4096).is_err());
    }

    #[test]
    fn reordered_or_swapped_chunks_fail() {
        let key = DataKey::generate();
        let plain = data(3 * CHUNK_LEN + 9);
        let (object, address) = seal(&key, COMPANY, &plain, 100_000);
        let mut reordered = object.clone();
        let (first, second) = (chunk_range(0), chunk_range(1));
        let copy_first = object[first.clone()].to_vec();
        reordered[first.clone()].copy_from_slice(&object[second.clone()]);
        reordered[second].copy_from_slice(&copy_first);
        assert_eq!(
            open(&key, COMPANY, &address, &reordered, 9000),
            Err(FileCryptoError::Chunk(0))
        );
        // A chunk of another object of the same company, same position.
        let (other, _) = seal(&key, COMPANY, &data(3 * CHUNK_LEN + 9), 100_000);
        let mut spliced = object.clone();
        spliced[chunk_range(1)].copy_from_slice(&other[chunk_range(1)]);
        assert_eq!(
            open(&key, COMPANY, &address, &spliced, 9000),
            Err(FileCryptoError::Chunk(1))
        );
    }

    #[test]
    fn another_company_key_or_address_fails() {
        let key = DataKey::generate();
        let plain = data(CHUNK_LEN + 1);
        let (object, address) = seal(&key, COMPANY, &plain, 4096);
        let other_company = "0190c0de-0000-7000-8000-000000000002";
        assert_eq!(
            open(&key, other_company, &address, &object, 4096),
            Err(FileCryptoError::Chunk(0))
        );
        assert!(open(&DataKey::generate(), COMPANY, &address, &object, 4096).is_err());
        // Filed under another address: the final chunk does not open.
        let wrong = key.content_address(b"something else");
        assert_eq!(
            open(&key, COMPANY, &wrong, &object, 4096),
            Err(FileCryptoError::Chunk(1))
        );
    }

    #[test]
    fn re_sealing_under_another_key_keeps_the_address() {
        let source = DataKey::generate();
        let target = DataKey::generate();
        let plain = data(2 * CHUNK_LEN + 3);
        let (object, address) = seal(&source, COMPANY, &plain, 30_000);
        let restored = "0190c0de-0000-7000-8000-00000000000f";
        let mut opener = source.file_opener(COMPANY, &address);
        let mut sealer = target.file_sealer(restored);
        let mut copy = Vec::new();
        for part in object.chunks(20_000) {
            copy.extend(sealer.push(&opener.push(part).unwrap()).unwrap());
        }
        copy.extend(sealer.push(&opener.finish().unwrap()).unwrap());
        let tail = sealer.finish_as(&address).unwrap();
        copy.extend(tail.bytes);
        assert_eq!(tail.address, address);
        assert_eq!(
            open(&target, restored, &address, &copy, 7777).unwrap(),
            plain
        );
        assert!(open(&source, COMPANY, &address, &copy, 7777).is_err());
    }

    #[test]
    fn debug_hides_state() {
        let key = DataKey::generate();
        assert_eq!(format!("{:?}", key.content_hasher()), "ContentHasher(***)");
        let mut sealer = key.file_sealer(COMPANY);
        sealer.push(b"secret receipt").unwrap();
        assert!(!format!("{sealer:?}").contains("secret"));
    }
}
