//! The audit trail's tamper evidence: hash-chained events and checkpoints, and
//! the verification that finds the first altered, deleted, inserted or
//! reordered event, or a truncated tail. Pure: signatures are checked by a
//! function the caller passes in.

use sha2::{Digest, Sha256};

pub mod action;
pub mod staff_detail;

pub use action::{Action, UnknownAction};

/// The hash before the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 over the previous hash, the sequence number and each field, every
/// field length-prefixed so that no two field lists hash alike.
pub fn link(prev_hash: &str, seq: i64, fields: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(seq.to_be_bytes());
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The fields of an audit event that its hash covers, in hashing order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFields {
    pub at: String,
    pub actor: String,
    pub auth: String,
    pub client: String,
    pub request_id: String,
    pub company_id: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

impl AuditFields {
    pub fn hash(&self, prev_hash: &str, seq: i64) -> String {
        link(
            prev_hash,
            seq,
            &[
                &self.at,
                &self.actor,
                &self.auth,
                &self.client,
                &self.request_id,
                &self.company_id,
                &self.action,
                &self.target,
                &self.outcome,
                &self.detail,
            ],
        )
    }
}

/// One event as stored: its place in the chain and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedEvent {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub fields: AuditFields,
}

/// A signed statement that a chain had `seq` events ending in `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub source: String,
    pub seq: i64,
    pub hash: String,
    pub at: String,
    pub node: String,
    /// Hash of the previous checkpoint of this source (GENESIS for the first).
    pub prev: String,
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The bytes that are signed.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "workbooks-audit-checkpoint/v1\n{}\n{}\n{}\n{}\n{}\n{}",
            self.source, self.seq, self.hash, self.at, self.node, self.prev
        )
        .into_bytes()
    }

    /// What the next checkpoint of this source links to.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.message());
        hasher.update(&self.signature);
        hex::encode(hasher.finalize())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("event {seq} was altered: its hash does not match its contents")]
    Altered { seq: i64 },
    #[error("event {expected} is missing (deleted): the chain jumps to {found}")]
    Deleted { expected: i64, found: i64 },
    #[error("event {seq} was inserted or reordered: it does not follow event {after}")]
    Inserted { seq: i64, after: i64 },
    #[error("the chain is truncated: it ends at event {last}, but checkpoint at {checkpoint_seq} vouches for more")]
    Truncated { last: i64, checkpoint_seq: i64 },
    #[error("checkpoint at event {seq} does not match the chain")]
    CheckpointMismatch { seq: i64 },
    #[error("checkpoint at event {seq} has an invalid signature")]
    BadSignature { seq: i64 },
    #[error("checkpoint at event {seq} is out of order or replayed")]
    CheckpointReplayed { seq: i64 },
    #[error("checkpoint at event {seq} is signed by node {node}, whose key is not certified by this deployment's master key (a forged node, or one that never ran a version that certifies its key)")]
    Uncertified { seq: i64, node: String },
}

/// What a checkpoint's signature establishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// Not signed by the key its node is registered with.
    Invalid,
    /// Signed by its node's registered key, which nothing vouches for: the
    /// register lives in the database the checkpoints protect.
    Uncertified,
    /// Signed by a node key certified by a holder of the master key.
    Certified,
}

/// What a successful verification establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub events: u64,
    pub last_seq: i64,
    pub last_checkpoint: Option<Checkpoint>,
    /// The last event a purge dropped (0: the chain starts at event 1).
    pub purged_through: i64,
}

/// Verifies events (in stored order, starting at sequence 1) and the
/// checkpoints of their source, oldest first; every checkpoint whose signature
/// checks counts as certified.
pub fn verify(
    events: &[ChainedEvent],
    checkpoints: &[Checkpoint],
    signature_ok: impl Fn(&Checkpoint) -> bool,
) -> Result<Verified, ChainError> {
    verify_certified(events, checkpoints, |cp| {
        if signature_ok(cp) {
            Signer::Certified
        } else {
            Signer::Invalid
        }
    })
}

/// Verifies as `verify`, and requires the newest checkpoint to be signed by a
/// certified node key. Checkpoints signed by an uncertified (but registered)
/// key are accepted only before a certified one: each checkpoint links to the
/// digest of the one before it and vouches for the chain hash at its event,
/// so a certified checkpoint vouches for everything before it, those older
/// checkpoints included. (Node keys registered before certification existed
/// thus stop mattering once a certified node signs a newer checkpoint; a
/// forged node key can never be the last word.)
pub fn verify_certified(
    events: &[ChainedEvent],
    checkpoints: &[Checkpoint],
    signer: impl Fn(&Checkpoint) -> Signer,
) -> Result<Verified, ChainError> {
    // A chain purged under the customer's retention rules starts after the
    // events it dropped: that start must be vouched for by a certified
    // checkpoint at the last dropped event, carrying the hash the first kept
    // event links to (the purge anchor).
    let purged_through = match events.first() {
        Some(first) if first.seq > 1 => {
            let anchor = first.seq - 1;
            let vouched = checkpoints.iter().any(|cp| {
                cp.seq == anchor && cp.hash == first.prev_hash && signer(cp) == Signer::Certified
            });
            if !vouched {
                return Err(ChainError::Deleted {
                    expected: 1,
                    found: first.seq,
                });
            }
            anchor
        }
        _ => 0,
    };
    let mut expected_seq = purged_through + 1;
    let mut prev_hash = match events.first() {
        Some(first) if purged_through > 0 => first.prev_hash.clone(),
        _ => GENESIS.to_string(),
    };
    let mut hash_at: Vec<(i64, String)> = Vec::with_capacity(events.len());
    for event in events {
        if event.seq < expected_seq {
            return Err(ChainError::Inserted {
                seq: event.seq,
                after: expected_seq - 1,
            });
        }
        if event.seq > expected_seq {
            return Err(ChainError::Deleted {
                expected: expected_seq,
                found: event.seq,
            });
        }
        if event.fields.hash(&event.prev_hash, event.seq) != event.hash {
            return Err(ChainError::Altered { seq: event.seq });
        }
        if event.prev_hash != prev_hash {
            return Err(ChainError::Inserted {
                seq: event.seq,
                after: expected_seq - 1,
            });
        }
        prev_hash = event.hash.clone();
        hash_at.push((event.seq, event.hash.clone()));
        expected_seq += 1;
    }
    let last_seq = expected_seq - 1;
    let mut prev_checkpoint = GENESIS.to_string();
    let mut prev_checkpoint_seq = 0;
    // The first checkpoint after the last certified one, if any.
    let mut uncertified: Option<&Checkpoint> = None;
    for cp in checkpoints {
        match signer(cp) {
            Signer::Invalid => return Err(ChainError::BadSignature { seq: cp.seq }),
            Signer::Uncertified => {
                uncertified.get_or_insert(cp);
            }
            Signer::Certified => uncertified = None,
        }
        if cp.prev != prev_checkpoint || cp.seq < prev_checkpoint_seq {
            return Err(ChainError::CheckpointReplayed { seq: cp.seq });
        }
        if cp.seq > last_seq {
            return Err(ChainError::Truncated {
                last: last_seq,
                checkpoint_seq: cp.seq,
            });
        }
        if cp.seq <= purged_through {
            // Vouches for events the purge dropped (the anchor itself was
            // checked above); the checkpoints still chain.
            prev_checkpoint = cp.digest();
            prev_checkpoint_seq = cp.seq;
            continue;
        }
        let at = hash_at.binary_search_by_key(&cp.seq, |(s, _)| *s);
        match at {
            Ok(i) if hash_at[i].1 == cp.hash => {}
            Ok(_) => return Err(ChainError::CheckpointMismatch { seq: cp.seq }),
            Err(_) => return Err(ChainError::CheckpointMismatch { seq: cp.seq }),
        }
        prev_checkpoint = cp.digest();
        prev_checkpoint_seq = cp.seq;
    }
    if let Some(cp) = uncertified {
        return Err(ChainError::Uncertified {
            seq: cp.seq,
            node: cp.node.clone(),
        });
    }
    Ok(Verified {
        events: events.len() as u64,
        last_seq,
        last_checkpoint: checkpoints.last().cloned(),
        purged_through,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chain(n: i64) -> Vec<ChainedEvent> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let fields = AuditFields {
                    at: format!("2026-01-01T00:00:{:02}Z", seq % 60),
                    actor: "user:1".into(),
                    action: Action::EntryPost.into(),
                    target: format!("entry:{seq}"),
                    outcome: "success".into(),
                    ..Default::default()
                };
                let hash = fields.hash(&prev, seq);
                let e = ChainedEvent {
                    seq,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                    fields,
                };
                prev = hash;
                e
            })
            .collect()
    }

    fn checkpoint(events: &[ChainedEvent], seq: i64, prev: &str) -> Checkpoint {
        Checkpoint {
            source: "company:x".into(),
            seq,
            hash: events[(seq - 1) as usize].hash.clone(),
            at: "2026-01-01T00:01:00Z".into(),
            node: "n1".into(),
            prev: prev.into(),
            signature: b"sig".to_vec(),
        }
    }

    fn signed(cp: &Checkpoint) -> bool {
        cp.signature == b"sig"
    }

    #[test]
    fn a_purged_chain_verifies_from_a_certified_checkpoint_at_its_start() {
        let events = chain(12);
        let cp4 = checkpoint(&events, 4, GENESIS);
        let cp10 = checkpoint(&events, 10, &cp4.digest());
        let kept = &events[4..];
        let v = verify(kept, &[cp4.clone(), cp10.clone()], signed).unwrap();
        assert_eq!((v.events, v.last_seq, v.purged_through), (8, 12, 4));
        // No checkpoint at the last dropped event: a deleted prefix.
        assert_eq!(
            verify(&events[3..], &[cp4.clone(), cp10.clone()], signed),
            Err(ChainError::Deleted {
                expected: 1,
                found: 4
            })
        );
        // A checkpoint there that is not signed does not vouch.
        let mut forged = cp4.clone();
        forged.signature = b"forged".to_vec();
        assert!(verify(kept, &[forged], signed).is_err());
        // A kept prefix re-linked to another start does not verify.
        let mut relinked = kept.to_vec();
        relinked[0].prev_hash = events[2].hash.clone();
        assert!(verify(&relinked, &[cp4, cp10], signed).is_err());
    }

    #[test]
    fn untouched_chain_verifies() {
        let events = chain(10);
        let cp1 = checkpoint(&events, 5, GENESIS);
        let cp2 = checkpoint(&events, 10, &cp1.digest());
        let v = verify(&events, &[cp1, cp2.clone()], signed).unwrap();
        assert_eq!(v.events, 10);
        assert_eq!(v.last_checkpoint, Some(cp2));
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let events = chain(10);
        let cp = checkpoint(&events, 10, GENESIS);

        let mut edited = events.clone();
        edited[3].fields.detail = "changed".into();
        assert_eq!(
            verify(&edited, &[], signed),
            Err(ChainError::Altered { seq: 4 })
        );

        let mut deleted = events.clone();
        deleted.remove(6);
        assert_eq!(
            verify(&deleted, &[], signed),
            Err(ChainError::Deleted {
                expected: 7,
                found: 8
            })
        );

        let mut swapped = events.clone();
        swapped.swap(2, 3);
        assert!(matches!(
            verify(&swapped, &[], signed),
            Err(ChainError::Deleted {
                expected: 3,
                found: 4
            })
        ));

        let mut inserted = events.clone();
        let extra = inserted[4].clone();
        inserted.insert(5, extra);
        assert!(matches!(
            verify(&inserted, &[], signed),
            Err(ChainError::Inserted { seq: 5, .. })
        ));

        let truncated = events[..7].to_vec();
        assert_eq!(
            verify(&truncated, std::slice::from_ref(&cp), signed),
            Err(ChainError::Truncated {
                last: 7,
                checkpoint_seq: 10
            })
        );

        let mut forged = cp.clone();
        forged.signature = b"forged".to_vec();
        assert_eq!(
            verify(&events, &[forged], signed),
            Err(ChainError::BadSignature { seq: 10 })
        );

        // An old checkpoint replayed after a newer one.
        let cp5 = checkpoint(&events, 5, GENESIS);
        let cp10 = checkpoint(&events, 10, &cp5.digest());
        let replay = checkpoint(&events, 5, GENESIS);
        assert_eq!(
            verify(&events, &[cp5, cp10, replay], signed),
            Err(ChainError::CheckpointReplayed { seq: 5 })
        );

        // A rewritten chain (every hash recomputed) no longer matches its checkpoint.
        let mut rewritten = chain(10);
        rewritten[0].fields.detail = "rewritten".into();
        let mut prev = GENESIS.to_string();
        for e in rewritten.iter_mut() {
            e.prev_hash = prev.clone();
            e.hash = e.fields.hash(&prev, e.seq);
            prev = e.hash.clone();
        }
        assert_eq!(
            verify(&rewritten, &[checkpoint(&events, 10, GENESIS)], signed),
            Err(ChainError::CheckpointMismatch { seq: 10 })
        );
    }

    /// A chain of checkpoints at events 1..=n, signed by the nodes named.
    fn checkpoints_by(events: &[ChainedEvent], nodes: &[&str]) -> Vec<Checkpoint> {
        let mut out: Vec<Checkpoint> = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let prev = out.last().map_or(GENESIS.to_string(), Checkpoint::digest);
            let mut cp = checkpoint(events, i as i64 + 1, &prev);
            cp.node = node.to_string();
            out.push(cp);
        }
        out
    }

    fn by_node(cp: &Checkpoint) -> Signer {
        match cp.node.as_str() {
            "certified" => Signer::Certified,
            "legacy" | "forged" => Signer::Uncertified,
            _ => Signer::Invalid,
        }
    }

    #[test]
    fn the_newest_checkpoint_must_be_certified() {
        let events = chain(6);
        // Keys registered before certification existed, then a certified node.
        let upgraded = checkpoints_by(&events, &["legacy", "legacy", "certified"]);
        assert!(verify_certified(&events, &upgraded, by_node).is_ok());
        // A forged node re-signed the tail.
        let forged = checkpoints_by(&events, &["certified", "forged", "forged"]);
        assert_eq!(
            verify_certified(&events, &forged, by_node),
            Err(ChainError::Uncertified {
                seq: 2,
                node: "forged".into()
            })
        );
        let message = verify_certified(&events, &forged, by_node)
            .unwrap_err()
            .to_string();
        assert!(message.contains("node forged") && !message.contains('\n'));
        // Nothing certified at all.
        let legacy = checkpoints_by(&events, &["legacy"]);
        assert!(matches!(
            verify_certified(&events, &legacy, by_node),
            Err(ChainError::Uncertified { seq: 1, .. })
        ));
        // A checkpoint no registered key signed is a bad signature, certified or not.
        let unknown = checkpoints_by(&events, &["unknown", "certified"]);
        assert_eq!(
            verify_certified(&events, &unknown, by_node),
            Err(ChainError::BadSignature { seq: 1 })
        );
        // `verify` treats every valid signature as certified.
        assert!(verify(&events, &forged, |_| true).is_ok());
    }

    proptest! {
        #[test]
        fn certified_iff_the_last_checkpoint_is(certified in proptest::collection::vec(any::<bool>(), 0..8)) {
            let events = chain(8);
            let nodes: Vec<&str> = certified.iter().map(|c| if *c { "certified" } else { "legacy" }).collect();
            let cps = checkpoints_by(&events, &nodes);
            let result = verify_certified(&events, &cps, by_node);
            match certified.iter().rposition(|c| *c) {
                _ if certified.is_empty() => prop_assert!(result.is_ok()),
                Some(last) if last + 1 == certified.len() => prop_assert!(result.is_ok()),
                last => {
                    let first_after = last.map_or(0, |l| l + 1);
                    prop_assert_eq!(result, Err(ChainError::Uncertified {
                        seq: first_after as i64 + 1,
                        node: "legacy".into(),
                    }));
                }
            }
        }

        #[test]
        fn verifies_iff_untouched(n in 1i64..40, victim in 0usize..40, byte in 0usize..8) {
            let events = chain(n);
            prop_assert!(verify(&events, &[], signed).is_ok());
            let victim = victim % events.len();
            let mut tampered = events.clone();
            let mut target = tampered[victim].fields.target.clone().into_bytes();
            let at = byte % target.len();
            target[at] ^= 1;
            tampered[victim].fields.target = String::from_utf8_lossy(&target).into_owned();
            prop_assert!(verify(&tampered, &[], signed).is_err());
        }
    }
}
