//! The change-journal record format, encoded and decoded here only.
//!
//! Every business change commits with one journal record `(seq, at, kind,
//! payload, prev_hash, hash)`; the hash covers `at`, `kind` and `payload`
//! as text, and records leave the database verbatim (object-store segments,
//! snapshots, exports, restores). So the bytes below are a stored format:
//! existing journals must keep decoding and new payloads must be identical
//! (pinned by `journal_pin.rs`). Both backends' writers encode through this
//! module; restores decode through it.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use wb_core::{EntryDraft, NewAccount, PostingDraft};

use crate::model::{Account, Entry, FileRecord, JournalRecord, ReplayedContent, RestoredEntry};
use crate::StoreError;

/// A new account (`Account` with its id).
pub const ACCOUNT_CREATED: &str = "account_created";
/// One or more entries posted in one command.
pub const ENTRIES_POSTED: &str = "entries_posted";
/// The reversal of an entry.
pub const ENTRY_REVERSED: &str = "entry_reversed";
/// An attachment's record (its content lives in the object store).
pub const FILE_ADDED: &str = "file_added";

/// A journal payload this build cannot read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("unknown journal record kind {0:?}; this build cannot replay it")]
    UnknownKind(String),
    #[error(transparent)]
    Malformed(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Ledger(#[from] wb_core::LedgerError),
}

// ---- Encoding (the writers) ----

/// The payload of `account_created` (keys in sorted order: a JSON object).
pub(crate) fn account_created(account: &Account, at: &str) -> String {
    json!({
        "id": account.id, "code": account.code, "name": account.name,
        "type": account.account_type.as_str(), "parent": account.parent,
        "currency": account.currency.map(|c| c.code().to_string()), "created_at": at,
    })
    .to_string()
}

/// The payload of `entries_posted`: everything needed to replay the entries.
pub(crate) fn entries_posted(entries: &[Entry], at: &str) -> Result<String, StoreError> {
    to_json(&EntriesPosted {
        entries: entries.iter().map(|e| EntryOut::new(e, at)).collect(),
    })
}

/// The payload of `entries_kept` (a purge's baseline): each entry with its
/// own creation time (`created_at` holds each one's, as journal text).
pub(crate) fn entries_kept(entries: &[(Entry, String)]) -> Result<String, StoreError> {
    to_json(&EntriesPosted {
        entries: entries.iter().map(|(e, at)| EntryOut::new(e, at)).collect(),
    })
}

/// The payload of `entry_reversed`: the reversed entry's id and the reversal.
pub(crate) fn entry_reversed(
    reverses: i64,
    reversal: &Entry,
    at: &str,
) -> Result<String, StoreError> {
    to_json(&EntryReversedOut {
        reverses,
        entry: EntryOut::new(reversal, at),
    })
}

/// The payload of `file_added`: everything a replay needs to restore the record.
pub(crate) fn file_added(file: &FileRecord, at: &str) -> String {
    json!({
        "id": file.id, "address": file.address, "name": file.name,
        "content_type": file.content_type, "size": file.size, "entry_id": file.entry_id,
        "created_at": at, "created_by": file.created_by,
    })
    .to_string()
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("encoding a journal record: {e}")))
}

#[derive(Serialize)]
struct EntriesPosted<'a> {
    entries: Vec<EntryOut<'a>>,
}

#[derive(Serialize)]
struct EntryReversedOut<'a> {
    reverses: i64,
    entry: EntryOut<'a>,
}

/// An entry as payloads carry it; fields in this order (struct order is
/// serialization order).
#[derive(Serialize)]
struct EntryOut<'a> {
    id: i64,
    date: String,
    description: &'a str,
    reference: Option<&'a str>,
    reverses: Option<i64>,
    created_at: &'a str,
    created_by: &'a str,
    postings: Vec<PostingOut<'a>>,
}

#[derive(Serialize)]
struct PostingOut<'a> {
    account: &'a str,
    amount: String,
    currency: &'a str,
}

impl<'a> EntryOut<'a> {
    fn new(entry: &'a Entry, created_at: &'a str) -> EntryOut<'a> {
        EntryOut {
            id: entry.id,
            // `YYYY-MM-DD`, as the `date` columns hold it.
            date: entry.date.to_string(),
            description: &entry.description,
            reference: entry.reference.as_deref(),
            reverses: entry.reverses,
            created_at,
            created_by: &entry.created_by,
            postings: entry
                .postings
                .iter()
                .map(|p| PostingOut {
                    account: &p.account,
                    amount: p.currency.format(i128::from(p.amount)),
                    currency: p.currency.code(),
                })
                .collect(),
        }
    }
}

// ---- Decoding (restores) ----

#[derive(Deserialize)]
struct AccountIn {
    id: i64,
    code: String,
    name: String,
    #[serde(rename = "type")]
    account_type: String,
    parent: Option<String>,
    currency: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

/// An entry as payloads carry it (`entries_posted`, and inside `entry_reversed`).
#[derive(Deserialize)]
struct EntryIn {
    id: i64,
    date: String,
    description: String,
    reference: Option<String>,
    #[serde(default)]
    reverses: Option<i64>,
    /// Absent in records written before it was added: the record's time.
    #[serde(default)]
    created_at: Option<String>,
    created_by: String,
    postings: Vec<PostingIn>,
}

#[derive(Deserialize)]
struct PostingIn {
    account: String,
    amount: String,
    currency: String,
}

#[derive(Deserialize)]
struct EntriesIn {
    entries: Vec<EntryIn>,
}

#[derive(Deserialize)]
struct EntryReversedIn {
    reverses: i64,
    entry: EntryIn,
}

#[derive(Deserialize)]
struct FileIn {
    id: i64,
    address: String,
    name: String,
    content_type: String,
    size: u64,
    entry_id: Option<i64>,
    created_at: String,
    created_by: String,
}

/// What a record of `kind` holds, decoded into what a store replays: entries
/// come back with their time and reversal link filled in, so they can be
/// regrouped freely (snapshots do). `at` is the record's own time.
pub fn replay_content(
    kind: &str,
    payload: &str,
    at: &str,
) -> Result<ReplayedContent, JournalError> {
    match kind {
        ACCOUNT_CREATED => {
            let a: AccountIn = serde_json::from_str(payload)?;
            let account = NewAccount::validate(
                &a.code,
                &a.name,
                &a.account_type,
                a.parent.as_deref(),
                a.currency.as_deref(),
            )?;
            let created_at = parse_time(at).map_err(|_| bad_time("", at))?;
            Ok(ReplayedContent::Account {
                id: a.id,
                account,
                created_at,
            })
        }
        ENTRIES_POSTED => {
            let p: EntriesIn = serde_json::from_str(payload)?;
            let entries = p
                .entries
                .into_iter()
                .map(|e| restored_entry(e, None, at))
                .collect::<Result<_, _>>()?;
            Ok(ReplayedContent::Entries(entries))
        }
        ENTRY_REVERSED => {
            let r: EntryReversedIn = serde_json::from_str(payload)?;
            Ok(ReplayedContent::Entries(vec![restored_entry(
                r.entry,
                Some(r.reverses),
                at,
            )?]))
        }
        crate::purge::ACCOUNT_KEPT => {
            let a: AccountIn = serde_json::from_str(payload)?;
            let when = a.created_at.clone().unwrap_or_else(|| at.to_string());
            let account = NewAccount::validate(
                &a.code,
                &a.name,
                &a.account_type,
                a.parent.as_deref(),
                a.currency.as_deref(),
            )?;
            let created_at = parse_time(&when).map_err(|_| bad_time("", &when))?;
            Ok(ReplayedContent::Account {
                id: a.id,
                account,
                created_at,
            })
        }
        crate::purge::ENTRIES_KEPT => {
            let p: EntriesIn = serde_json::from_str(payload)?;
            let entries = p
                .entries
                .into_iter()
                .map(|e| restored_entry(e, None, at))
                .collect::<Result<_, _>>()?;
            Ok(ReplayedContent::KeptEntries(entries))
        }
        crate::purge::PURGED => {
            let anchor: crate::purge::Anchor = serde_json::from_str(payload)?;
            Ok(ReplayedContent::Purged {
                through_seq: anchor.through_seq,
                through_hash: anchor.through_hash,
            })
        }
        FILE_ADDED => {
            let f: FileIn = serde_json::from_str(payload)?;
            let created_at = parse_time(&f.created_at)
                .map_err(|_| bad_time(&format!("file {}: ", f.id), &f.created_at))?;
            Ok(ReplayedContent::File(FileRecord {
                id: f.id,
                address: f.address,
                name: f.name,
                content_type: f.content_type,
                size: f.size,
                entry_id: f.entry_id,
                created_at,
                created_by: f.created_by,
            }))
        }
        other => Err(JournalError::UnknownKind(other.to_string())),
    }
}

/// The ids of the entries a record posted (`entries_posted`,
/// `entry_reversed`); `None` for a record of another kind. Reads only the
/// ids, so it accepts what a full decode would refuse elsewhere in the record.
pub fn entry_ids(kind: &str, payload: &str) -> Result<Option<Vec<i64>>, JournalError> {
    if kind != ENTRIES_POSTED && kind != ENTRY_REVERSED {
        return Ok(None);
    }
    let payload: serde_json::Value = serde_json::from_str(payload)?;
    Ok(Some(
        payload["entries"]
            .as_array()
            .map(|list| list.iter().filter_map(|e| e["id"].as_i64()).collect())
            .unwrap_or_else(|| payload["entry"]["id"].as_i64().into_iter().collect()),
    ))
}

fn parse_time(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &Rfc3339)
}

fn bad_time(prefix: &str, text: &str) -> JournalError {
    JournalError::Invalid(format!("{prefix}bad time {text:?}"))
}

fn restored_entry(
    e: EntryIn,
    reverses: Option<i64>,
    at: &str,
) -> Result<RestoredEntry, JournalError> {
    let when = e.created_at.as_deref().unwrap_or(at);
    let created_at = parse_time(when).map_err(|_| bad_time(&format!("entry {}: ", e.id), when))?;
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(&e.date, &format)
        .map_err(|_| JournalError::Invalid(format!("entry {}: bad date {:?}", e.id, e.date)))?;
    Ok(RestoredEntry {
        id: e.id,
        draft: EntryDraft {
            date,
            description: e.description,
            reference: e.reference,
            postings: e
                .postings
                .into_iter()
                .map(|p| PostingDraft {
                    account: p.account,
                    amount: p.amount,
                    currency: p.currency,
                })
                .collect(),
        },
        reverses: reverses.or(e.reverses),
        created_at,
        created_by: e.created_by,
    })
}

// ---- Lines (segments, snapshots, exports) ----

/// One journal record as a JSON line of a shipped segment, a snapshot or an
/// export's `journal.jsonl`: the record's columns as text, `at` exactly as
/// the journal holds (and hashes) it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegmentRecord {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub payload: String,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&JournalRecord> for SegmentRecord {
    fn from(r: &JournalRecord) -> SegmentRecord {
        SegmentRecord {
            seq: r.seq,
            at: r.at.format(&Rfc3339).unwrap_or_default(),
            kind: r.kind.clone(),
            payload: r.payload.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        }
    }
}
