//! The keyring: every wrap and unwrap of a key by the master key (KEK), and
//! every encryption-context string the platform seals data under.
//!
//! Nothing else holds the master key or names a context, so master-key
//! rotation and crypto-shredding have one place to look. Each context string
//! is part of a stored format (wrapped keys, sealed segments, snapshots,
//! configuration backups, sealed credentials): changing one makes existing
//! data unreadable, so they are written here once and pinned by tests.

use std::path::Path;

use wb_crypto::{CryptoError, DataKey, MasterKey, NodeCertifier, NodeKey};

/// Wraps the control plane's own DEK (`<data>/control.key`).
const CONTROL_KEY_CONTEXT: &str = "workbooks:control-plane";
/// Wraps the platform backup key that seals configuration backups.
const PLATFORM_BACKUP_KEY_CONTEXT: &str = "workbooks:platform-backup-key";
/// Derives the key that seals messages in the email outbox.
const OUTBOX_KEY_PURPOSE: &str = "workbooks:outbox/v1";
/// Derives the key that seals users' TOTP secrets in the control store.
const MFA_KEY_PURPOSE: &str = "workbooks:mfa/v1";
/// Configuration backups sealed before the object path was bound in.
pub const LEGACY_CONFIG_BACKUP_AAD: &[u8] = b"workbooks-config-backup/v1";

/// The master key and the operations allowed with it.
pub struct Keyring {
    master: MasterKey,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(***)")
    }
}

impl Keyring {
    pub fn new(master: MasterKey) -> Keyring {
        Keyring { master }
    }

    /// A new company's DEK wrapped for storage; the company id is the
    /// associated data, so a wrapped key cannot be moved to another company.
    pub fn wrap_company_key(
        &self,
        company_id: &str,
        key: &DataKey,
    ) -> Result<Vec<u8>, CryptoError> {
        self.master.wrap(key, company_id)
    }

    /// A company's DEK from its stored wrapping.
    pub fn company_key(&self, company_id: &str, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        self.master.unwrap_key(wrapped, company_id)
    }

    pub fn wrap_control_key(&self, key: &DataKey) -> Result<Vec<u8>, CryptoError> {
        self.master.wrap(key, CONTROL_KEY_CONTEXT)
    }

    pub fn control_key(&self, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        self.master.unwrap_key(wrapped, CONTROL_KEY_CONTEXT)
    }

    pub fn wrap_platform_backup_key(&self, key: &DataKey) -> Result<Vec<u8>, CryptoError> {
        self.master.wrap(key, PLATFORM_BACKUP_KEY_CONTEXT)
    }

    pub fn platform_backup_key(&self, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        self.master.unwrap_key(wrapped, PLATFORM_BACKUP_KEY_CONTEXT)
    }

    /// The key outbox messages are sealed with: derived, so every node
    /// (whichever delivers) opens what any node queued.
    pub fn outbox_key(&self) -> DataKey {
        self.master.derive_key(OUTBOX_KEY_PURPOSE)
    }

    /// The key TOTP secrets are sealed with: derived, so every node opens
    /// what any node sealed, and a master-key rotation re-derives it.
    pub fn mfa_key(&self) -> DataKey {
        self.master.derive_key(MFA_KEY_PURPOSE)
    }

    /// This node's checkpoint-signing key, its seed wrapped by the master key.
    pub fn node_key(&self, path: &Path) -> Result<NodeKey, CryptoError> {
        NodeKey::load_or_create(path, &self.master)
    }

    /// The deployment's node-certification key (derived, never stored).
    pub fn node_certifier(&self) -> NodeCertifier {
        NodeCertifier::new(&self.master)
    }
}

/// Associated data of a sealed outbox message: its id.
pub fn outbox_message_aad(id: &str) -> Vec<u8> {
    format!("workbooks-outbox/v1:{id}").into_bytes()
}

/// Associated data of a user's sealed TOTP secret: the user's id, so a
/// sealed secret cannot be moved to another account.
pub fn totp_secret_aad(user_id: &str) -> Vec<u8> {
    format!("workbooks-totp-secret/v1:{user_id}").into_bytes()
}

/// Associated data of a change-journal segment (sealed with the company DEK).
pub fn journal_segment_aad(company_id: &str, first: i64, last: i64) -> Vec<u8> {
    format!("workbooks-journal-segment/v1\n{company_id}\n{first}\n{last}").into_bytes()
}

/// Associated data of a shipped audit-trail segment.
pub fn audit_segment_aad(company_id: &str, first: i64, last: i64) -> Vec<u8> {
    format!("workbooks-audit-segment/v1\n{company_id}\n{first}\n{last}").into_bytes()
}

/// Associated data of a snapshot's manifest.
pub fn snapshot_manifest_aad(company_id: &str, seq: i64) -> Vec<u8> {
    format!("workbooks-snapshot-manifest/v1\n{company_id}\n{seq}").into_bytes()
}

/// Associated data of a snapshot's n-th part.
pub fn snapshot_part_aad(company_id: &str, seq: i64, n: usize) -> Vec<u8> {
    format!("workbooks-snapshot-part/v1\n{company_id}\n{seq}\n{n}").into_bytes()
}

/// Associated data of an export destination's sealed credentials.
pub fn export_push_credentials_aad(company_id: &str, destination: &str) -> Vec<u8> {
    format!("workbooks-export-push-credentials/v1\n{company_id}\n{destination}").into_bytes()
}

/// Associated data of a configuration backup stored at `object_path`.
pub fn config_backup_aad(object_path: &str) -> Vec<u8> {
    format!("workbooks-config-backup/v2\n{object_path}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These strings are inside stored data: a change would orphan it.
    #[test]
    fn contexts_are_pinned() {
        assert_eq!(outbox_message_aad("m1"), b"workbooks-outbox/v1:m1");
        assert_eq!(OUTBOX_KEY_PURPOSE, "workbooks:outbox/v1");
        assert_eq!(MFA_KEY_PURPOSE, "workbooks:mfa/v1");
        assert_eq!(totp_secret_aad("u1"), b"workbooks-totp-secret/v1:u1");
        assert_eq!(
            journal_segment_aad("c", 1, 2),
            b"workbooks-journal-segment/v1\nc\n1\n2"
        );
        assert_eq!(
            audit_segment_aad("c", 1, 2),
            b"workbooks-audit-segment/v1\nc\n1\n2"
        );
        assert_eq!(
            snapshot_manifest_aad("c", 3),
            b"workbooks-snapshot-manifest/v1\nc\n3"
        );
        assert_eq!(
            snapshot_part_aad("c", 3, 4),
            b"workbooks-snapshot-part/v1\nc\n3\n4"
        );
        assert_eq!(
            export_push_credentials_aad("c", "s3://b/p"),
            b"workbooks-export-push-credentials/v1\nc\ns3://b/p"
        );
        assert_eq!(
            config_backup_aad("config/1-ab.v2.sealed"),
            b"workbooks-config-backup/v2\nconfig/1-ab.v2.sealed"
        );
        assert_eq!(CONTROL_KEY_CONTEXT, "workbooks:control-plane");
        assert_eq!(PLATFORM_BACKUP_KEY_CONTEXT, "workbooks:platform-backup-key");
    }

    #[test]
    fn a_company_key_opens_only_for_its_company() {
        let ring = Keyring::new(MasterKey::generate());
        let key = DataKey::generate();
        let wrapped = ring.wrap_company_key("a", &key).unwrap();
        assert!(ring.company_key("a", &wrapped).is_ok());
        assert!(ring.company_key("b", &wrapped).is_err());
        assert!(ring.control_key(&wrapped).is_err());
        assert_eq!(format!("{ring:?}"), "Keyring(***)");
    }
}
