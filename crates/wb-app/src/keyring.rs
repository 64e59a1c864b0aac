//! The keyring: every wrap and unwrap of a key by the master key (KEK), and
//! every encryption-context string the platform seals data under.
//!
//! Nothing else holds the master key or names a context, so master-key
//! rotation and crypto-shredding have one place to look. Each context string
//! is part of a stored format (wrapped keys, sealed segments, snapshots,
//! configuration backups, sealed credentials): changing one makes existing
//! data unreadable, so they are written here once and pinned by tests.

use std::path::Path;
use std::sync::RwLock;

use wb_crypto::{CryptoError, DataKey, KekId, MasterKey, NodeCertifier, NodeKey, WrappedBy};

/// Wraps the control plane's own DEK (`<data>/control.key`).
const CONTROL_KEY_CONTEXT: &str = "workbooks:control-plane";
/// Wraps the platform backup key that seals configuration backups.
const PLATFORM_BACKUP_KEY_CONTEXT: &str = "workbooks:platform-backup-key";
/// Wraps a node's checkpoint-signing seed (`<data>/node.key`); the string
/// wb-crypto used before the keyring wrapped it.
const NODE_KEY_CONTEXT: &str = "workbooks:node-signing-key";
/// Wraps the next master key under the current one while a rotation runs
/// (`keys/master-handover.kek`, see `crate::keys_rotation`).
const HANDOVER_CONTEXT: &str = "workbooks:master-handover";
/// Derives the key that seals messages in the email outbox.
const OUTBOX_KEY_PURPOSE: &str = "workbooks:outbox/v1";
/// Derives the key that seals users' TOTP secrets in the control store.
const MFA_KEY_PURPOSE: &str = "workbooks:mfa/v1";
/// Configuration backups sealed before the object path was bound in.
pub const LEGACY_CONFIG_BACKUP_AAD: &[u8] = b"workbooks-config-backup/v1";

/// The master keys held and the operations allowed with them. One is
/// current (every new wrapping and sealing uses it); during a master-key
/// rotation the other is held too, so whatever is still under it opens.
pub struct Keyring {
    keks: RwLock<Keks>,
    /// The deployment's current KEK id when this node holds none of it (a
    /// rotation it missed): it then wraps nothing, since no other node could
    /// open what it wrapped.
    retired_by: RwLock<Option<String>>,
}

struct Keks {
    current: MasterKey,
    /// Keys still held to open what they wrapped, newest first.
    older: Vec<MasterKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(***)")
    }
}

impl Keyring {
    pub fn new(master: MasterKey) -> Keyring {
        Keyring {
            keks: RwLock::new(Keks {
                current: master,
                older: Vec::new(),
            }),
            retired_by: RwLock::new(None),
        }
    }

    fn keks(&self) -> std::sync::RwLockReadGuard<'_, Keks> {
        self.keks.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `next` the current master key; the one it replaces stays held
    /// for what it still wraps. Learning the current key again changes nothing.
    pub fn learn(&self, next: MasterKey) {
        let mut keks = self.keks.write().unwrap_or_else(|e| e.into_inner());
        if keks.current.id() == next.id() {
            return;
        }
        *self.retired_by.write().unwrap_or_else(|e| e.into_inner()) = None;
        let previous = std::mem::replace(&mut keks.current, next);
        let current = keks.current.id();
        keks.older
            .retain(|k| k.id() != current && k.id() != previous.id());
        keks.older.insert(0, previous);
    }

    /// The id of the master key new wrappings are made with.
    pub fn current_kek(&self) -> KekId {
        self.keks().current.id()
    }

    /// Every master key id held, the current first.
    pub fn held_keks(&self) -> Vec<KekId> {
        let keks = self.keks();
        std::iter::once(&keks.current)
            .chain(&keks.older)
            .map(MasterKey::id)
            .collect()
    }

    fn wrap(&self, key: &DataKey, context: &str) -> Result<Vec<u8>, CryptoError> {
        let keks = self.keks();
        if let Some(current) = self
            .retired_by
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(CryptoError::RetiredKek {
                held: keks.current.id(),
                current,
            });
        }
        keks.current.wrap(key, context)
    }

    /// Notes the deployment's current KEK id (`keys/kek.id`, written by a
    /// completed rotation): a node holding none of it stops wrapping keys.
    pub fn note_deployment_kek(&self, current: &str) -> bool {
        let held = self.held_keks().iter().any(|k| k.to_string() == current);
        *self.retired_by.write().unwrap_or_else(|e| e.into_inner()) =
            (!held).then(|| current.to_string());
        !held
    }

    /// Opens a wrapping with the key it names, or (legacy, naming none) with
    /// each key held in turn.
    fn unwrap(&self, wrapped: &[u8], context: &str) -> Result<DataKey, CryptoError> {
        let keks = self.keks();
        let mut held = std::iter::once(&keks.current).chain(&keks.older);
        match WrappedBy::of(wrapped)? {
            WrappedBy::Kek(id) => match held.find(|k| k.id() == id) {
                Some(kek) => kek.unwrap_key(wrapped, context),
                None => Err(CryptoError::UnknownKek {
                    wrapped_by: id,
                    held: keks.current.id(),
                }),
            },
            WrappedBy::Legacy => held
                .find_map(|k| k.unwrap_key(wrapped, context).ok())
                .ok_or(CryptoError::Unwrap),
        }
    }

    /// `wrapped` under the current key: None when it already is, else the
    /// new wrapping (for a rotation; the caller stores it).
    pub fn rewrap(
        &self,
        kind: Wrapped<'_>,
        wrapped: &[u8],
    ) -> Result<Option<Vec<u8>>, CryptoError> {
        if WrappedBy::of(wrapped)? == WrappedBy::Kek(self.current_kek()) {
            return Ok(None);
        }
        let key = self.unwrap(wrapped, kind.context())?;
        self.wrap(&key, kind.context()).map(Some)
    }

    /// Whether the current key alone opens `wrapped` (a legacy wrapping is
    /// tried; a v2 one is judged by its header).
    pub fn opens_with_current(&self, kind: Wrapped<'_>, wrapped: &[u8]) -> bool {
        let keks = self.keks();
        match WrappedBy::of(wrapped) {
            Ok(WrappedBy::Kek(id)) => id == keks.current.id(),
            Ok(WrappedBy::Legacy) => keks.current.unwrap_key(wrapped, kind.context()).is_ok(),
            Err(_) => false,
        }
    }

    /// `sealed` under the current key's derived key: None when it already
    /// is, else sealed again (opened with an older key's derived key).
    pub fn reseal(
        &self,
        kind: Derived,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Option<Vec<u8>>, CryptoError> {
        let keys = self.derived(kind.purpose());
        if keys[0].open(sealed, aad).is_ok() {
            return Ok(None);
        }
        let plain = open_with_any(&keys[1..], sealed, aad).ok_or(CryptoError::Decrypt)?;
        keys[0].seal(&plain, aad).map(Some)
    }

    /// Whether the current key's derived key opens `sealed`.
    pub fn opens_derived_with_current(&self, kind: Derived, sealed: &[u8], aad: &[u8]) -> bool {
        self.keks()
            .current
            .derive_key(kind.purpose())
            .open(sealed, aad)
            .is_ok()
    }

    /// A new company's DEK wrapped for storage; the company id is the
    /// associated data, so a wrapped key cannot be moved to another company.
    pub fn wrap_company_key(
        &self,
        company_id: &str,
        key: &DataKey,
    ) -> Result<Vec<u8>, CryptoError> {
        self.wrap(key, company_id)
    }

    /// A company's DEK from its stored wrapping.
    pub fn company_key(&self, company_id: &str, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        self.unwrap(wrapped, company_id)
    }

    pub fn wrap_control_key(&self, key: &DataKey) -> Result<Vec<u8>, CryptoError> {
        self.wrap(key, CONTROL_KEY_CONTEXT)
    }

    pub fn control_key(&self, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        self.unwrap(wrapped, CONTROL_KEY_CONTEXT)
    }

    pub fn wrap_platform_backup_key(&self, key: &DataKey) -> Result<Vec<u8>, CryptoError> {
        self.wrap(key, PLATFORM_BACKUP_KEY_CONTEXT)
    }

    pub fn platform_backup_key(&self, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        self.unwrap(wrapped, PLATFORM_BACKUP_KEY_CONTEXT)
    }

    /// This node's checkpoint-signing key, its seed wrapped by the master
    /// key at `path` (created on first use).
    pub fn node_key(&self, path: &Path) -> Result<NodeKey, CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        if path.exists() {
            let wrapped = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            return Ok(NodeKey::from_seed(
                &self.unwrap(&wrapped, Wrapped::Node.context())?,
            ));
        }
        let seed = DataKey::generate();
        let wrapped = self.wrap(&seed, Wrapped::Node.context())?;
        wb_crypto::write_private_file(path, &wrapped).map_err(|e| err(e.to_string()))?;
        Ok(NodeKey::from_seed(&seed))
    }

    /// `next` wrapped under the newest key held that is not `next`, for
    /// nodes that hold only that one; None when no other key is held.
    pub fn handover(&self, next: &MasterKey) -> Result<Option<Vec<u8>>, CryptoError> {
        let keks = self.keks();
        std::iter::once(&keks.current)
            .chain(&keks.older)
            .find(|k| k.id() != next.id())
            .map(|k| k.wrap_master(next, HANDOVER_CONTEXT))
            .transpose()
    }

    /// The master key a handover carries, opened with the **current** key
    /// only: a key this node has rotated away from (perhaps the disclosed
    /// one a rotation answered) can neither hand it a key of an attacker's
    /// choosing nor roll it back with an old handover replayed.
    pub fn open_handover(&self, wrapped: &[u8]) -> Result<MasterKey, CryptoError> {
        self.keks().current.unwrap_master(wrapped, HANDOVER_CONTEXT)
    }

    /// A published handover opened with any key held: only for the rotation
    /// itself, to tell whether another rotation's handover is out there.
    pub(crate) fn open_handover_any(&self, wrapped: &[u8]) -> Result<MasterKey, CryptoError> {
        let keks = self.keks();
        std::iter::once(&keks.current)
            .chain(&keks.older)
            .find_map(|k| k.unwrap_master(wrapped, HANDOVER_CONTEXT).ok())
            .ok_or(CryptoError::Unwrap)
    }

    /// Drops every key but the current one: once the deployment names the
    /// current key as its own (a rotation completed), nothing needs the
    /// older ones and this node stops trusting them.
    pub fn forget_older(&self) -> usize {
        let mut keks = self.keks.write().unwrap_or_else(|e| e.into_inner());
        let dropped = keks.older.len();
        keks.older.clear();
        dropped
    }

    /// The keys derived for `purpose` from every master key held, the
    /// current one first: what the current one sealed opens first, what an
    /// older one sealed (until a rotation re-seals it) still opens.
    fn derived(&self, purpose: &str) -> Vec<DataKey> {
        let keks = self.keks();
        std::iter::once(&keks.current)
            .chain(&keks.older)
            .map(|k| k.derive_key(purpose))
            .collect()
    }

    /// The key outbox messages are sealed with: derived, so every node
    /// (whichever delivers) opens what any node queued.
    pub fn outbox_key(&self) -> DataKey {
        self.keks().current.derive_key(OUTBOX_KEY_PURPOSE)
    }

    /// Outbox keys of every master key held (for opening), current first.
    pub fn outbox_keys(&self) -> Vec<DataKey> {
        self.derived(OUTBOX_KEY_PURPOSE)
    }

    /// The key TOTP secrets are sealed with: derived, so every node opens
    /// what any node sealed, and a master-key rotation re-derives it.
    pub fn mfa_key(&self) -> DataKey {
        self.keks().current.derive_key(MFA_KEY_PURPOSE)
    }

    /// MFA keys of every master key held (for opening), current first.
    pub fn mfa_keys(&self) -> Vec<DataKey> {
        self.derived(MFA_KEY_PURPOSE)
    }

    /// The deployment's node-certification key (derived, never stored).
    pub fn node_certifier(&self) -> NodeCertifier {
        NodeCertifier::new(&self.keks().current)
    }

    /// Certification keys of every master key held, current first: a
    /// certificate made under an older one stays valid until re-issued.
    pub fn node_certifiers(&self) -> Vec<NodeCertifier> {
        let keks = self.keks();
        std::iter::once(&keks.current)
            .chain(&keks.older)
            .map(NodeCertifier::new)
            .collect()
    }
}

/// What a wrapped key is, which names the context it is wrapped under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapped<'a> {
    /// A company's DEK (the company id is the context).
    Company(&'a str),
    /// `<data>/control.key`.
    Control,
    /// `keys/platform.dek`.
    PlatformBackup,
    /// `<data>/node.key`.
    Node,
}

impl Wrapped<'_> {
    fn context(&self) -> &str {
        match self {
            Wrapped::Company(id) => id,
            Wrapped::Control => CONTROL_KEY_CONTEXT,
            Wrapped::PlatformBackup => PLATFORM_BACKUP_KEY_CONTEXT,
            Wrapped::Node => NODE_KEY_CONTEXT,
        }
    }
}

/// A key derived from the master key that seals stored data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derived {
    /// TOTP secrets of users and staff.
    Mfa,
    /// Queued email.
    Outbox,
}

impl Derived {
    fn purpose(self) -> &'static str {
        match self {
            Derived::Mfa => MFA_KEY_PURPOSE,
            Derived::Outbox => OUTBOX_KEY_PURPOSE,
        }
    }
}

/// Opens `sealed` with the first of `keys` that opens it (keys derived from
/// each master key held, current first).
pub fn open_with_any(
    keys: &[DataKey],
    sealed: &[u8],
    aad: &[u8],
) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    keys.iter().find_map(|k| k.open(sealed, aad).ok())
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
        assert_eq!(NODE_KEY_CONTEXT, "workbooks:node-signing-key");
        assert_eq!(HANDOVER_CONTEXT, "workbooks:master-handover");
    }

    #[test]
    fn a_rotating_keyring_opens_both_and_wraps_with_the_new() {
        let (old, new) = (MasterKey::generate(), MasterKey::generate());
        let ring = Keyring::new(old.clone());
        let key = DataKey::generate();
        let under_old = ring.wrap_company_key("a", &key).unwrap();
        let sealed = ring.mfa_key().seal(b"s", b"u").unwrap();
        ring.learn(new.clone());
        ring.learn(new.clone());
        assert_eq!(ring.held_keks(), vec![new.id(), old.id()]);
        assert!(ring.company_key("a", &under_old).is_ok());
        assert!(!ring.note_deployment_kek(&new.id().to_string()));
        assert!(open_with_any(&ring.mfa_keys(), &sealed, b"u").is_some());
        let under_new = ring
            .rewrap(Wrapped::Company("a"), &under_old)
            .unwrap()
            .unwrap();
        assert_eq!(WrappedBy::of(&under_new).unwrap(), WrappedBy::Kek(new.id()));
        assert!(ring
            .rewrap(Wrapped::Company("a"), &under_new)
            .unwrap()
            .is_none());
        let resealed = ring.reseal(Derived::Mfa, &sealed, b"u").unwrap().unwrap();
        assert!(ring
            .reseal(Derived::Mfa, &resealed, b"u")
            .unwrap()
            .is_none());
        assert!(ring.opens_derived_with_current(Derived::Mfa, &resealed, b"u"));
        assert!(!ring.opens_derived_with_current(Derived::Mfa, &sealed, b"u"));
        assert!(ring.opens_with_current(Wrapped::Company("a"), &under_new));
        assert!(!ring.opens_with_current(Wrapped::Company("a"), &under_old));
        // The new key alone opens the rewrapped key, not the old wrapping.
        // A node left with the old key alone, once rotation completed, wraps nothing.
        let left_behind = Keyring::new(old);
        assert!(left_behind.note_deployment_kek(&new.id().to_string()));
        assert!(matches!(
            left_behind.wrap_company_key("b", &key),
            Err(CryptoError::RetiredKek { .. })
        ));
        let alone = Keyring::new(new);
        assert!(alone.company_key("a", &under_new).is_ok());
        assert!(matches!(
            alone.company_key("a", &under_old),
            Err(CryptoError::UnknownKek { .. })
        ));
    }

    /// What `keys status` counts as needing another key, by wrapping.
    #[test]
    fn which_wrappings_the_current_key_alone_opens() {
        let (old, new) = (MasterKey::generate(), MasterKey::generate());
        let key = DataKey::generate();
        let ring = Keyring::new(new.clone());
        ring.learn(new.clone());
        let cases = [
            ("under the current key", new.wrap(&key, "c").unwrap(), true),
            ("under the old key", old.wrap(&key, "c").unwrap(), false),
            ("another context", new.wrap(&key, "d").unwrap(), true),
            ("garbage", vec![2u8; 70], false),
            ("empty", Vec::new(), false),
        ];
        for (case, wrapped, opens) in cases {
            assert_eq!(
                ring.opens_with_current(Wrapped::Company("c"), &wrapped),
                opens,
                "{case}"
            );
        }
        // Held but not current: opens, yet still counts as needing it.
        ring.learn(old.clone());
        ring.learn(new);
        let under_old = old.wrap(&key, "c").unwrap();
        assert!(ring.company_key("c", &under_old).is_ok());
        assert!(!ring.opens_with_current(Wrapped::Company("c"), &under_old));
    }

    /// A node that rotated from `leaked` to `next` takes no handover sealed
    /// under `leaked` (an attacker's key, or an old handover replayed), and
    /// once the rotation completed it stops trusting `leaked` at all.
    #[test]
    fn a_handover_opens_only_with_the_current_key_and_older_keys_are_dropped() {
        let (leaked, next, evil) = (
            MasterKey::generate(),
            MasterKey::generate(),
            MasterKey::generate(),
        );
        let rotating = Keyring::new(leaked.clone());
        let genuine = rotating.handover(&next).unwrap().unwrap();
        let node = Keyring::new(leaked.clone());
        assert_eq!(node.open_handover(&genuine).unwrap().id(), next.id());
        node.learn(next.clone());
        // Planted with the leaked key, or the genuine one replayed: refused.
        let planted = leaked.wrap_master(&evil, HANDOVER_CONTEXT).unwrap();
        assert!(node.open_handover(&planted).is_err());
        assert!(node.open_handover(&genuine).is_err());
        // What the rotation itself reads still opens with any key it holds.
        assert!(node.open_handover_any(&planted).is_ok());
        let key = DataKey::generate();
        let under_leaked = leaked.wrap(&key, "c").unwrap();
        assert!(node.company_key("c", &under_leaked).is_ok());
        assert_eq!(node.forget_older(), 1);
        assert_eq!(node.held_keks(), vec![next.id()]);
        assert!(node.company_key("c", &under_leaked).is_err());
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
