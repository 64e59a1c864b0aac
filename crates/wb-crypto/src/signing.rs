//! A node's ed25519 signing key for audit checkpoints. The secret seed is a
//! data key wrapped by the master key; only the public key leaves this module.

use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::keys::{CryptoError, DataKey, MasterKey};

const CONTEXT: &str = "workbooks:node-signing-key";

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
}
