//! A node's ed25519 signing key for audit checkpoints. The secret seed is a
//! data key wrapped by the master key; only the public key leaves this module.
//!
//! The node keys themselves are listed in the control store, which anyone with
//! write access to that database could add to. So each node key is certified by
//! the deployment's certification key, an ed25519 key derived from the master
//! key (HKDF-SHA256) that is never stored: a node row whose certificate does not
//! verify under it was not written by a holder of the master key.

use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::keys::{CryptoError, DataKey, MasterKey};

const CONTEXT: &str = "workbooks:node-signing-key";
/// HKDF info for the certification key, and the domain of what it signs.
const CERTIFICATION: &str = "workbooks-node-certification/v1";

// Clone: a purge signs its anchor from inside the company writer.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey(public {})", self.public_key_hex())
    }
}

impl NodeKey {
    fn from_data_key(key: &DataKey) -> NodeKey {
        NodeKey(SigningKey::from_bytes(key.bytes()))
    }

    /// Loads the wrapped key at `path`, creating it on first use.
    pub fn load_or_create(path: &Path, master: &MasterKey) -> Result<NodeKey, CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        if path.exists() {
            let wrapped = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            let key = master.unwrap_key(&wrapped, CONTEXT)?;
            return Ok(NodeKey::from_data_key(&key));
        }
        let key = DataKey::generate();
        let wrapped = master.wrap(&key, CONTEXT)?;
        crate::keys::write_private_file(path, &wrapped).map_err(|e| err(e.to_string()))?;
        Ok(NodeKey::from_data_key(&key))
    }

    /// The node key whose seed is `seed` (unwrapped by the keyring).
    pub fn from_seed(seed: &DataKey) -> NodeKey {
        NodeKey::from_data_key(seed)
    }

    pub fn generate() -> NodeKey {
        NodeKey::from_data_key(&DataKey::generate())
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).to_bytes().to_vec()
    }
}

/// The deployment's node-certification key: derived from the master key each
/// time it is needed, never stored, so only a holder of the master key can
/// certify a node key. (A master-key rotation changes it: rotation must
/// re-certify every node whose certificate verifies under the old key.)
pub struct NodeCertifier(SigningKey);

impl fmt::Debug for NodeCertifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeCertifier(public {})", self.public_key_hex())
    }
}

impl NodeCertifier {
    pub fn new(master: &MasterKey) -> NodeCertifier {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(None, master.bytes());
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: cannot fail.
        let _ = hkdf.expand(CERTIFICATION.as_bytes(), seed.as_mut());
        NodeCertifier(SigningKey::from_bytes(&seed))
    }

    /// What a certificate signs: the node's id and its public key, each
    /// length-prefixed so no two (id, key) pairs share a message.
    fn message(node_id: &str, public_key_hex: &str) -> Vec<u8> {
        let mut message = Vec::with_capacity(64 + node_id.len() + public_key_hex.len());
        message.extend_from_slice(CERTIFICATION.as_bytes());
        for field in [node_id, public_key_hex] {
            message.extend_from_slice(&(field.len() as u64).to_be_bytes());
            message.extend_from_slice(field.as_bytes());
        }
        message
    }

    /// A certificate binding `public_key_hex` to `node_id`.
    pub fn certify(&self, node_id: &str, public_key_hex: &str) -> Vec<u8> {
        self.0
            .sign(&NodeCertifier::message(node_id, public_key_hex))
            .to_bytes()
            .to_vec()
    }

    /// True when `certificate` was made by `certify` for this node and key.
    pub fn is_certified(&self, node_id: &str, public_key_hex: &str, certificate: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(certificate) else {
            return false;
        };
        self.0
            .verifying_key()
            .verify_strict(&NodeCertifier::message(node_id, public_key_hex), &signature)
            .is_ok()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }
}

/// Checks, without the master key, that `certificate` was made by the
/// certification key whose public half is `certifier_public_hex` for this
/// node id and node key (offline verification of what a node signed).
pub fn verify_node_certificate(
    certifier_public_hex: &str,
    node_id: &str,
    node_public_key_hex: &str,
    certificate: &[u8],
) -> bool {
    verify_signature(
        certifier_public_hex,
        &NodeCertifier::message(node_id, node_public_key_hex),
        certificate,
    )
}

/// Checks a signature made by `NodeKey::sign`; false for any malformed input.
pub fn verify_signature(public_key_hex: &str, message: &[u8], signature: &[u8]) -> bool {
    let Ok(bytes) = hex::decode(public_key_hex) else {
        return false;
    };
    let Ok(bytes): Result<[u8; 32], _> = bytes.try_into() else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&bytes) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify(message, &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_reloads() {
        let dir = std::env::temp_dir().join(format!("wbnode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.key");
        let _ = std::fs::remove_file(&path);
        let master = MasterKey::generate();
        let a = NodeKey::load_or_create(&path, &master).unwrap();
        let b = NodeKey::load_or_create(&path, &master).unwrap();
        assert_eq!(a.public_key_hex(), b.public_key_hex());
        let sig = a.sign(b"checkpoint");
        assert!(verify_signature(&b.public_key_hex(), b"checkpoint", &sig));
        assert!(!verify_signature(&b.public_key_hex(), b"checkpoinT", &sig));
        assert!(!verify_signature(
            &NodeKey::generate().public_key_hex(),
            b"checkpoint",
            &sig
        ));
        assert!(!verify_signature("zz", b"checkpoint", &sig));
        assert!(NodeKey::load_or_create(&path, &MasterKey::generate()).is_err());
        assert!(!format!("{a:?}").contains(&hex::encode(a.0.to_bytes())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn certificates_bind_node_key_and_master_key() {
        let master = MasterKey::generate();
        let certifier = NodeCertifier::new(&master);
        let again = NodeCertifier::new(&master);
        assert_eq!(certifier.public_key_hex(), again.public_key_hex());
        let node = NodeKey::generate();
        let cert = certifier.certify("node-a", &node.public_key_hex());
        assert!(again.is_certified("node-a", &node.public_key_hex(), &cert));
        // Another node's key, another node id, another master key, garbage.
        let other = NodeKey::generate().public_key_hex();
        assert!(!certifier.is_certified("node-a", &other, &cert));
        assert!(!certifier.is_certified("node-b", &node.public_key_hex(), &cert));
        let foreign = NodeCertifier::new(&MasterKey::generate());
        assert!(!foreign.is_certified("node-a", &node.public_key_hex(), &cert));
        assert!(!certifier.is_certified("node-a", &node.public_key_hex(), b"short"));
        let mut flipped = cert.clone();
        flipped[7] ^= 1;
        assert!(!certifier.is_certified("node-a", &node.public_key_hex(), &flipped));
        // Length prefixes: moving bytes between id and key changes the message.
        assert_ne!(
            NodeCertifier::message("ab", "c"),
            NodeCertifier::message("a", "bc")
        );
        // The certification key is derived, not the master key itself.
        assert!(!format!("{certifier:?}").contains(&hex::encode(master.bytes())));
        assert_ne!(certifier.public_key_hex(), hex::encode(master.bytes()));
    }
}
