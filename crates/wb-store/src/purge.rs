//! A purge under the customer's retention rules, as both backends' writers
//! carry it out: what the caller asks for (`PurgePlan`), what it removed
//! (`PurgeReport`), and the journal records that restart the company's
//! change journal after it.
//!
//! The journal is the company's history, and what a purge removes must
//! leave it too, so the writer deletes every journal record and writes:
//! 1. `purged`, the anchor: "purged through record N, whose hash is H",
//!    signed by the node (`PurgePlan::signer`). Its `prev_hash` is H, so the
//!    chain read across the purge (older segments, then the anchor) still
//!    links; a chain that starts at the anchor is vouched for by its
//!    signature.
//! 2. the baseline: every account (`account_kept`), every kept entry with
//!    the opening entries last (`entries_kept`, ids may skip the purged
//!    ones) and every kept attachment record (`file_added`).
//!
//! A restore that replays the anchor empties the store and rebuilds it from
//! the baseline, so replaying across a purge and replaying from a snapshot
//! taken after it give the same books.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::model::{Entry, FileRecord};

/// The journal anchor a purge writes.
pub const PURGED: &str = "purged";
/// An account, re-stated after a purge (its `created_at` from the payload).
pub const ACCOUNT_KEPT: &str = "account_kept";
/// Entries kept by a purge, re-stated in id order (ids may skip).
pub const ENTRIES_KEPT: &str = "entries_kept";
/// Entries re-stated per `entries_kept` record.
pub const ENTRIES_PER_RECORD: usize = 500;

/// What signs an anchor: the node, its public key and the certificate the
/// deployment's master key gave that key (so the anchor can be checked
/// where the node's registration is not at hand, e.g. after disaster
/// recovery), and the signature over the anchor's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorSignature {
    pub node: String,
    pub public_key: String,
    pub certificate: String,
    pub signature: Vec<u8>,
}

/// Signs a purge anchor's message.
pub type AnchorSigner = Arc<dyn Fn(&[u8]) -> AnchorSignature + Send + Sync>;

/// What to purge.
#[derive(Clone)]
pub struct PurgePlan {
    /// Entries dated before this go (a reversal pair goes only whole).
    pub horizon: Date,
    /// Attachments created before this go unless linked to a kept entry
    /// (those linked to a purged entry go whatever their age).
    pub files_before: OffsetDateTime,
    /// Audit events up to this sequence go; the event there must carry this
    /// hash (a certified checkpoint vouches for it). None: none go.
    pub audit_through: Option<(i64, String)>,
    /// The journal head the caller shipped: the purge refuses if the
    /// journal has moved on (records it would delete were never shipped).
    pub journal_head: i64,
    /// Computes and reports everything, then rolls it back.
    pub dry_run: bool,
    pub signer: AnchorSigner,
}

impl std::fmt::Debug for PurgePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgePlan")
            .field("horizon", &self.horizon)
            .field("files_before", &self.files_before)
            .field("audit_through", &self.audit_through)
            .field("journal_head", &self.journal_head)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// Row counts of a company database, before and after a purge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeCounts {
    pub entries: u64,
    pub postings: u64,
    pub files: u64,
    pub audit_events: u64,
    pub journal_records: u64,
}

/// What a purge removed (or, dry, would remove) and what replaced it.
#[derive(Debug, Clone)]
pub struct PurgeReport {
    pub horizon: Date,
    /// Ids of the entries removed, ascending.
    pub entries: Vec<i64>,
    pub postings: u64,
    /// The attachment records removed (their objects are the caller's to delete).
    pub files: Vec<FileRecord>,
    /// Content addresses still used by a kept attachment record.
    pub kept_addresses: Vec<String>,
    /// The opening-balance entries written, one per currency.
    pub opening: Vec<Entry>,
    /// The last audit event removed (0: none), and how many went.
    pub audit_through: i64,
    pub audit_events: u64,
    /// The journal record the anchor names, and the anchor's own record.
    pub journal_through: i64,
    pub journal_through_hash: String,
    pub anchor_seq: i64,
    /// The last record of the baseline the anchor starts.
    pub baseline_end: i64,
    pub before: PurgeCounts,
    pub after: PurgeCounts,
    pub dry_run: bool,
}

/// The anchor record's payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Anchor {
    pub company_id: String,
    pub horizon: String,
    pub through_seq: i64,
    pub through_hash: String,
    pub entries_removed: u64,
    pub files_removed: u64,
    pub node: String,
    /// The node's public key (hex) and its certificate from the master key.
    #[serde(default)]
    pub public_key: String,
    #[serde(default)]
    pub certificate: String,
    /// Hex of the node's signature over `message()`.
    pub signature: String,
}

impl Anchor {
    /// The bytes the node signs.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "workbooks-purge-anchor/v1\n{}\n{}\n{}\n{}\n{}\n{}",
            self.company_id,
            self.horizon,
            self.through_seq,
            self.through_hash,
            self.entries_removed,
            self.files_removed
        )
        .into_bytes()
    }

    pub fn signature_bytes(&self) -> Option<Vec<u8>> {
        hex::decode(&self.signature).ok()
    }

    /// The anchor of a journal record, if it is one.
    pub fn of(kind: &str, payload: &str) -> Option<Anchor> {
        (kind == PURGED)
            .then(|| serde_json::from_str(payload).ok())
            .flatten()
    }

    pub(crate) fn signed(
        company_id: &str,
        horizon: Date,
        through: (i64, &str),
        removed: (u64, u64),
        signer: &AnchorSigner,
    ) -> Anchor {
        let mut anchor = Anchor {
            company_id: company_id.to_string(),
            horizon: horizon.to_string(),
            through_seq: through.0,
            through_hash: through.1.to_string(),
            entries_removed: removed.0,
            files_removed: removed.1,
            node: String::new(),
            public_key: String::new(),
            certificate: String::new(),
            signature: String::new(),
        };
        let signed = signer(&anchor.message());
        anchor.node = signed.node;
        anchor.public_key = signed.public_key;
        anchor.certificate = signed.certificate;
        anchor.signature = hex::encode(signed.signature);
        anchor
    }
}

/// Whether a restore is still replaying a purge's baseline after a record
/// of `kind`: from the anchor through the records that re-state what it
/// kept, up to the first record of any other kind. Kept attachment records
/// (`file_added`) may skip the ids of purged ones there, as `entries_kept`
/// records may skip entry ids.
pub(crate) fn continues_baseline(in_baseline: bool, kind: &str) -> bool {
    match kind {
        PURGED => true,
        ACCOUNT_KEPT | ENTRIES_KEPT | crate::journal::FILE_ADDED => in_baseline,
        _ => false,
    }
}

impl PurgeReport {
    /// The report of a purge with nothing to remove: it changes nothing
    /// (no anchor, the journal and backups stay as they are).
    pub(crate) fn nothing(
        horizon: Date,
        journal: (i64, String),
        counts: PurgeCounts,
        dry_run: bool,
    ) -> PurgeReport {
        PurgeReport {
            horizon,
            entries: Vec::new(),
            postings: 0,
            files: Vec::new(),
            kept_addresses: Vec::new(),
            opening: Vec::new(),
            audit_through: 0,
            audit_events: 0,
            journal_through: journal.0,
            journal_through_hash: journal.1,
            anchor_seq: 0,
            baseline_end: 0,
            before: counts,
            after: counts,
            dry_run,
        }
    }
}

/// The audit detail of a purge: before/after counts and what went.
pub fn audit_detail(report: &PurgeReport) -> String {
    serde_json::json!({
        "horizon": report.horizon.to_string(),
        "entries_removed": report.entries.len(),
        "postings_removed": report.postings,
        "files_removed": report.files.len(),
        "audit_through": report.audit_through,
        "audit_events_removed": report.audit_events,
        "journal_through": report.journal_through,
        "journal_through_hash": report.journal_through_hash,
        "anchor_seq": report.anchor_seq,
        "opening_entries": report.opening.iter().map(|e| e.id).collect::<Vec<_>>(),
        "before": report.before,
        "after": report.after,
    })
    .to_string()
}
