//! KEK (master key) wraps one DEK per company with XChaCha20-Poly1305.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const WRAP_VERSION: u8 = 1;
/// A key wrapped by a master key that names it (`[2][KEK id][nonce][sealed]`).
/// Version 1 (`[1][nonce][sealed]`, written before rotation existed) names
/// none: it is a legacy wrapping, opened by trying the keys held.
const WRAP_V2: u8 = 2;
const KEK_ID_LEN: usize = 8;
/// HKDF info of a master key's id: a fingerprint, never the key.
const KEK_ID_PURPOSE: &str = "workbooks:kek-id/v1";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("master key is malformed: expected 64 hex characters")]
    MalformedMasterKey,
    #[error("wrapped key is malformed or was wrapped by another master key")]
    Unwrap,
    #[error(
        "wrapped by master key {wrapped_by}, which is not held here (this master key is {held})"
    )]
    UnknownKek { wrapped_by: KekId, held: KekId },
    #[error("master key {held} was rotated away (the deployment's is {current}): restart this node with the current master key")]
    RetiredKek { held: KekId, current: String },
    #[error("encryption failed")]
    Encrypt,
    #[error("ciphertext is malformed, tampered with, or under another key")]
    Decrypt,
}

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct KeyBytes([u8; KEY_LEN]);

impl KeyBytes {
    fn random() -> KeyBytes {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        KeyBytes(bytes)
    }

    fn from_hex(text: &str) -> Result<KeyBytes, CryptoError> {
        let text = Zeroizing::new(text.trim().to_string());
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(text.as_bytes(), &mut bytes)
            .map_err(|_| CryptoError::MalformedMasterKey)?;
        Ok(KeyBytes(bytes))
    }

    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(WRAP_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != WRAP_VERSION {
            return Err(CryptoError::Decrypt);
        }
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
        cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// Writes key material (wrapped or not) to a new file readable by its owner only.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A master key's id: the first 8 bytes of HKDF-SHA256(key, "workbooks:kek-id/v1"),
/// shown as 16 hex characters. Stored in each v2 wrapping; it names the key
/// without revealing anything that helps find it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KekId([u8; KEK_ID_LEN]);

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekId({self})")
    }
}

/// How a stored wrapping says which master key made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappedBy {
    /// Written before wrappings named their key: opened by trying.
    Legacy,
    Kek(KekId),
}

impl WrappedBy {
    /// Reads the header of a wrapped key (not its contents: no key needed).
    pub fn of(wrapped: &[u8]) -> Result<WrappedBy, CryptoError> {
        match wrapped.first() {
            Some(&WRAP_VERSION) if wrapped.len() > 1 + NONCE_LEN => Ok(WrappedBy::Legacy),
            Some(&WRAP_V2) if wrapped.len() > 1 + KEK_ID_LEN + NONCE_LEN => {
                let mut id = [0u8; KEK_ID_LEN];
                id.copy_from_slice(&wrapped[1..1 + KEK_ID_LEN]);
                Ok(WrappedBy::Kek(KekId(id)))
            }
            _ => Err(CryptoError::Unwrap),
        }
    }
}

/// Associated data of a v2 wrapping: its version and KEK id beside the
/// caller's context, so the header cannot be rewritten (e.g. stripped back to
/// a v1 wrapping) without failing authentication.
fn v2_aad(id: &KekId, context: &str) -> Vec<u8> {
    format!("workbooks-wrap/v2\n{id}\n{context}").into_bytes()
}

/// The key-encryption key. Never leaves this process unwrapped.
#[derive(Clone)]
pub struct MasterKey(KeyBytes);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        MasterKey(KeyBytes::random())
    }

    /// Parses 64 hex characters (the `WORKBOOKS_MASTER_KEY` form).
    pub fn from_hex(text: &str) -> Result<MasterKey, CryptoError> {
        KeyBytes::from_hex(text).map(MasterKey)
    }

    /// Loads the key file, creating it (mode 0600) with a fresh key when absent.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        if path.exists() {
            return MasterKey::load(path);
        }
        let key = MasterKey::generate();
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| err(e.to_string()))?;
        let encoded = Zeroizing::new(hex::encode(key.0 .0));
        file.write_all(encoded.as_bytes())
            .and_then(|_| file.write_all(b"\n"))
            .and_then(|_| file.sync_all())
            .map_err(|e| err(e.to_string()))?;
        Ok(key)
    }

    pub fn load(path: &Path) -> Result<MasterKey, CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "permissions {:o} let others read it; chmod 600",
                    mode & 0o777
                )));
            }
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
        MasterKey::from_hex(&text)
    }

    /// This key's id (see `KekId`).
    pub fn id(&self) -> KekId {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(None, &self.0 .0);
        let mut bytes = [0u8; KEK_ID_LEN];
        // 8 bytes is far below HKDF-SHA256's limit: cannot fail.
        let _ = hkdf.expand(KEK_ID_PURPOSE.as_bytes(), &mut bytes);
        KekId(bytes)
    }

    /// Wraps a data key; `context` (e.g. the company id) is bound as associated data,
    /// so a wrapped key moved to another company does not unwrap. The
    /// wrapping names this key's id (format v2).
    pub fn wrap(&self, key: &DataKey, context: &str) -> Result<Vec<u8>, CryptoError> {
        self.wrap_bytes(&key.0, context)
    }

    /// Wraps another master key (a rotation's handover to running nodes).
    pub fn wrap_master(&self, next: &MasterKey, context: &str) -> Result<Vec<u8>, CryptoError> {
        self.wrap_bytes(&next.0, context)
    }

    pub fn unwrap_master(&self, wrapped: &[u8], context: &str) -> Result<MasterKey, CryptoError> {
        self.unwrap_bytes(wrapped, context).map(MasterKey)
    }

    fn wrap_bytes(&self, key: &KeyBytes, context: &str) -> Result<Vec<u8>, CryptoError> {
        let id = self.id();
        let sealed = self.0.seal(&key.0, &v2_aad(&id, context))?;
        // `seal` writes [1][nonce][sealed]; the v2 header replaces its version byte.
        let mut out = Vec::with_capacity(sealed.len() + KEK_ID_LEN);
        out.push(WRAP_V2);
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&sealed[1..]);
        Ok(out)
    }

    fn unwrap_bytes(&self, wrapped: &[u8], context: &str) -> Result<KeyBytes, CryptoError> {
        let bytes = match WrappedBy::of(wrapped)? {
            WrappedBy::Legacy => self.0.open(wrapped, context.as_bytes()),
            WrappedBy::Kek(id) if id == self.id() => {
                let mut v1 = Vec::with_capacity(wrapped.len() - KEK_ID_LEN);
                v1.push(WRAP_VERSION);
                v1.extend_from_slice(&wrapped[1 + KEK_ID_LEN..]);
                self.0.open(&v1, &v2_aad(&id, context))
            }
            WrappedBy::Kek(id) => {
                return Err(CryptoError::UnknownKek {
                    wrapped_by: id,
                    held: self.id(),
                })
            }
        }
        .map_err(|_| CryptoError::Unwrap)?;
        let array: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Unwrap)?;
        Ok(KeyBytes(array))
    }

    /// The raw key, for deriving purpose-bound keys inside this crate only.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0 .0
    }

    /// A key bound to `purpose`, derived from this one (HKDF-SHA256): the
    /// same on every node of a deployment, never stored. For data every node
    /// must read and that lives briefly (the email outbox).
    pub fn derive_key(&self, purpose: &str) -> DataKey {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(None, &self.0 .0);
        let mut bytes = [0u8; KEY_LEN];
        // KEY_LEN is far below HKDF-SHA256's limit of 255 * 32: cannot fail.
        let _ = hkdf.expand(purpose.as_bytes(), &mut bytes);
        DataKey(KeyBytes(bytes))
    }

    /// Opens a wrapping of either format; a v2 wrapping made by another
    /// master key fails with `UnknownKek` (which names both ids).
    pub fn unwrap_key(&self, wrapped: &[u8], context: &str) -> Result<DataKey, CryptoError> {
        self.unwrap_bytes(wrapped, context).map(DataKey)
    }
}

/// A company's data-encryption key.
#[derive(Clone)]
pub struct DataKey(KeyBytes);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(***)")
    }
}

impl DataKey {
    pub fn generate() -> DataKey {
        DataKey(KeyBytes::random())
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0 .0
    }

    /// The SQLCipher raw-key literal `x'…'`, zeroized when dropped.
    pub fn sqlcipher_pragma_value(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("x'{}'", hex::encode(self.0 .0)))
    }

    /// A password derived from this key for one purpose (a company's database
    /// role): never stored, so it exists only while the wrapped DEK does.
    pub fn derived_password(&self, purpose: &str) -> crate::Secret {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(b"workbooks derived password v1\0");
        hasher.update((purpose.len() as u64).to_be_bytes());
        hasher.update(purpose.as_bytes());
        hasher.update(self.bytes());
        let digest = Zeroizing::new(hasher.finalize().to_vec());
        crate::Secret::new(hex::encode(&*digest))
    }

    /// A public name of this key (SHA-256 of a fixed label under it): two
    /// wrappings hold the same key exactly when their fingerprints match.
    /// Reveals nothing of the key.
    pub fn fingerprint(&self) -> String {
        self.derived_password("workbooks key fingerprint")
            .expose()
            .chars()
            .take(32)
            .collect()
    }

    /// Authenticated encryption of a blob (attachments, segments, exports).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.0.seal(plaintext, aad)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.0.open(sealed, aad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_passwords_depend_on_key_and_purpose() {
        let a = DataKey::generate();
        let b = DataKey::generate();
        let pa = a.derived_password("postgres-role");
        assert_eq!(pa.expose(), a.derived_password("postgres-role").expose());
        assert_ne!(pa.expose(), a.derived_password("other").expose());
        assert_ne!(pa.expose(), b.derived_password("postgres-role").expose());
        assert_eq!(pa.expose().len(), 64);
    }

    #[test]
    fn derived_keys_depend_on_master_and_purpose() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        let sealed = a.derive_key("outbox").seal(b"hello", b"m1").unwrap();
        assert_eq!(
            &*a.derive_key("outbox").open(&sealed, b"m1").unwrap(),
            b"hello"
        );
        assert!(a.derive_key("other").open(&sealed, b"m1").is_err());
        assert!(b.derive_key("outbox").open(&sealed, b"m1").is_err());
    }

    #[test]
    fn wrap_round_trips_and_binds_context() {
        let kek = MasterKey::generate();
        let dek = DataKey::generate();
        let wrapped = kek.wrap(&dek, "company-a").unwrap();
        let back = kek.unwrap_key(&wrapped, "company-a").unwrap();
        assert_eq!(back.0 .0, dek.0 .0);
        assert!(kek.unwrap_key(&wrapped, "company-b").is_err());
        assert!(MasterKey::generate()
            .unwrap_key(&wrapped, "company-a")
            .is_err());
        let mut tampered = wrapped.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(kek.unwrap_key(&tampered, "company-a").is_err());
    }

    /// A legacy (v1) wrapping, as written before wrappings named their KEK.
    fn legacy_wrap(kek: &MasterKey, dek: &DataKey, context: &str) -> Vec<u8> {
        kek.0.seal(&dek.0 .0, context.as_bytes()).unwrap()
    }

    /// The v2 layout is a stored format: pinned byte for byte here.
    #[test]
    fn wrap_format_v2_is_pinned() {
        let kek = MasterKey::from_hex(&"11".repeat(32)).unwrap();
        let dek = DataKey(KeyBytes([7u8; KEY_LEN]));
        assert_eq!(kek.id().to_string(), "55ca49a386d15e8f");
        let wrapped = kek.wrap(&dek, "company-a").unwrap();
        assert_eq!(wrapped.len(), 1 + KEK_ID_LEN + NONCE_LEN + KEY_LEN + 16);
        assert_eq!(wrapped[0], 2);
        assert_eq!(&wrapped[1..9], &kek.id().0);
        assert_eq!(WrappedBy::of(&wrapped).unwrap(), WrappedBy::Kek(kek.id()));
        // Opened by hand from the documented layout and associated data.
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&wrapped[9..]);
        let aad = format!("workbooks-wrap/v2\n{}\ncompany-a", kek.id());
        assert_eq!(&*kek.0.open(&v1, aad.as_bytes()).unwrap(), &[7u8; KEY_LEN]);
        // Stripping the header back to v1 does not open.
        assert!(kek.unwrap_key(&v1, "company-a").is_err());
    }

    #[test]
    fn legacy_wrappings_still_open_and_name_no_kek() {
        let kek = MasterKey::generate();
        let dek = DataKey::generate();
        let old = legacy_wrap(&kek, &dek, "c");
        assert_eq!(WrappedBy::of(&old).unwrap(), WrappedBy::Legacy);
        assert_eq!(kek.unwrap_key(&old, "c").unwrap().0 .0, dek.0 .0);
        assert!(MasterKey::generate().unwrap_key(&old, "c").is_err());
    }

    #[test]
    fn another_keks_wrapping_names_both_ids() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        let wrapped = a.wrap(&DataKey::generate(), "c").unwrap();
        match b.unwrap_key(&wrapped, "c") {
            Err(CryptoError::UnknownKek { wrapped_by, held }) => {
                assert_eq!((wrapped_by, held), (a.id(), b.id()))
            }
            other => panic!("{other:?}"),
        }
        let next = b.clone();
        let handover = a.wrap_master(&next, "h").unwrap();
        assert_eq!(a.unwrap_master(&handover, "h").unwrap().id(), b.id());
        assert!(a.unwrap_master(&handover, "other").is_err());
    }

    #[test]
    fn wrapped_by_rejects_garbage() {
        for bad in [&[][..], &[1u8; 10][..], &[2u8; 20][..], &[3u8; 80][..]] {
            assert!(WrappedBy::of(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// A KEK id depends on the key only, differs between keys, and is
        /// never a piece of the key's bytes.
        #[test]
        fn kek_ids_name_keys(a in proptest::array::uniform32(0u8..), b in proptest::array::uniform32(0u8..)) {
            let (ka, kb) = (MasterKey(KeyBytes(a)), MasterKey(KeyBytes(b)));
            proptest::prop_assert_eq!(ka.id(), MasterKey(KeyBytes(a)).id());
            if a != b {
                proptest::prop_assert_ne!(ka.id(), kb.id());
            }
            let id = ka.id().to_string();
            proptest::prop_assert_eq!(id.len(), 16);
            proptest::prop_assert!(!hex::encode(a).contains(&id));
            let dek = DataKey(KeyBytes(b));
            let wrapped = ka.wrap(&dek, "ctx").unwrap();
            proptest::prop_assert_eq!(WrappedBy::of(&wrapped).unwrap(), WrappedBy::Kek(ka.id()));
            proptest::prop_assert_eq!(ka.unwrap_key(&wrapped, "ctx").unwrap().0 .0, b);
        }
    }

    #[test]
    fn debug_never_prints_key_material() {
        let dek = DataKey::generate();
        let hexed = hex::encode(dek.0 .0);
        assert_eq!(format!("{dek:?}"), "DataKey(***)");
        assert!(!format!("{:?}", MasterKey::generate()).contains(&hexed));
    }

    #[test]
    fn key_file_is_created_private_and_reloads() {
        let dir = std::env::temp_dir().join(format!("wbkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("master.key");
        let _ = std::fs::remove_file(&path);
        let a = MasterKey::load_or_create(&path).unwrap();
        let b = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(a.0 .0, b.0 .0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(MasterKey::load(&path).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_master_key_is_refused() {
        assert!(MasterKey::from_hex("abc").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(MasterKey::from_hex(&"ab".repeat(32)).is_ok());
    }
}
