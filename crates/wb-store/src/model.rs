//! Records the stores read and write. Plain data; no behaviour.

use time::{Date, OffsetDateTime};
use wb_core::{AccountType, Currency, Posting, Role};

/// The type of [`AuditEvent::action`], re-exported for the stores' users.
pub use wb_core::audit::Action;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompanyStatus {
    Active,
    Deprovisioned,
    /// Its data and every copy of its key are gone; the record stays.
    Destroyed,
}

impl CompanyStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            CompanyStatus::Active => "active",
            CompanyStatus::Deprovisioned => "deprovisioned",
            CompanyStatus::Destroyed => "destroyed",
        }
    }
    pub fn parse(s: &str) -> CompanyStatus {
        match s {
            "active" => CompanyStatus::Active,
            "destroyed" => CompanyStatus::Destroyed,
            _ => CompanyStatus::Deprovisioned,
        }
    }
}

#[derive(Clone)]
pub struct CompanyRecord {
    pub id: String,
    pub name: String,
    pub status: CompanyStatus,
    /// The company's DEK wrapped by the master key, bound to the company id.
    pub wrapped_dek: Vec<u8>,
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for CompanyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanyRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("status", &self.status)
            .field("wrapped_dek", &"***")
            .finish()
    }
}

#[derive(Clone)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub passphrase_hash: String,
    pub created_at: OffsetDateTime,
    pub last_login_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("passphrase_hash", &"***")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub company_id: String,
    pub user_id: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub token_hash: String,
    pub user_id: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    /// The client address it was opened from.
    pub client: Option<String>,
    /// The browser or tool that opened it (bounded, printable).
    pub user_agent: Option<String>,
    /// When it was last used (None: not since it was opened).
    pub last_seen_at: Option<OffsetDateTime>,
    /// The second factor its login was verified with (`totp`,
    /// `recovery_code`, `passkey`), or None for a passphrase alone.
    pub second_factor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: String,
    pub company_id: String,
    pub name: String,
    pub role: Role,
    pub token_hash: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// The answer of `ControlStore::reserve_attempt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Counted against every key: each with the start of the window it was
    /// counted in (what `ControlStore::release_attempt` takes back).
    Counted(Vec<(String, OffsetDateTime)>),
    /// A key already had its maximum in its window, so nothing was counted;
    /// the last such window ends at `until`.
    Refused { until: OffsetDateTime },
}

/// Who did something, how they authenticated, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// "user:<id>", "api_key:<id>", "staff:<id>", "system".
    pub id: String,
    /// "session", "api_key", "passphrase", "cli".
    pub auth: String,
    pub client: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn system(what: &str) -> Actor {
        Actor {
            id: "system".into(),
            auth: what.into(),
            client: None,
            request_id: None,
        }
    }
}

/// An audit event to append. No secrets: targets are ids, details are reasons.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: OffsetDateTime,
    pub actor: Actor,
    pub company_id: Option<String>,
    pub action: Action,
    pub target: Option<String>,
    pub outcome: Outcome,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// An audit event as stored in its source's hash chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredAuditEvent {
    pub seq: i64,
    /// RFC 3339, exactly as hashed.
    pub at: String,
    pub actor: String,
    pub auth: String,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub company_id: Option<String>,
    /// Exactly as hashed: a name this build may not know (written by a newer
    /// node, or imported), so it stays a string; see [`Self::known_action`].
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredAuditEvent {
    /// The action, when this build knows its name.
    pub fn known_action(&self) -> Option<Action> {
        Action::parse(&self.action)
    }

    pub fn fields(&self) -> wb_core::audit::AuditFields {
        wb_core::audit::AuditFields {
            at: self.at.clone(),
            actor: self.actor.clone(),
            auth: self.auth.clone(),
            client: self.client.clone().unwrap_or_default(),
            request_id: self.request_id.clone().unwrap_or_default(),
            company_id: self.company_id.clone().unwrap_or_default(),
            action: self.action.clone(),
            target: self.target.clone().unwrap_or_default(),
            outcome: self.outcome.clone(),
            detail: self.detail.clone().unwrap_or_default(),
        }
    }

    pub fn chained(&self) -> wb_core::audit::ChainedEvent {
        wb_core::audit::ChainedEvent {
            seq: self.seq,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
            fields: self.fields(),
        }
    }
}

/// An event in the central collection: a copy of a source chain's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralEvent {
    /// Position in the central collection (what drains and monitors page by).
    pub central_seq: i64,
    /// "control" or "company:<id>": the chain the event belongs to.
    pub source: String,
    /// The node that collected it.
    pub node: String,
    pub event: StoredAuditEvent,
}

/// A node's checkpoint-signing key as registered in the control store, with
/// the certificate the node made for it with the master key (None for a node
/// registered by a version before certification). The row itself is only as
/// trustworthy as the database: check the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredNode {
    pub id: String,
    pub public_key: String,
    pub certificate: Option<Vec<u8>>,
}

/// A search over the central collection; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub after: i64,
    pub limit: u32,
    pub company_id: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub actor: Option<String>,
    /// RFC 3339 lower bound on `at`.
    pub since: Option<String>,
    /// With `company_id`: also the platform trail's sign-ins and sign-outs
    /// (`auth.login`, `auth.logout`, `auth.passphrase_change`,
    /// `auth.passphrase_reset`, `auth.mfa_enrol`, `auth.mfa_remove`,
    /// `auth.recovery_codes`) of the
    /// company's current members, so an
    /// owner sees who tried to get into their books.
    pub member_sign_ins: bool,
}

/// Context of one write: who and when. Time comes from the caller's clock.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub actor: Actor,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub account_type: AccountType,
    pub parent: Option<String>,
    pub currency: Option<Currency>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub date: Date,
    pub description: String,
    pub reference: Option<String>,
    pub postings: Vec<Posting>,
    /// The entry this one reverses.
    pub reverses: Option<i64>,
    /// The entry that reversed this one.
    pub reversed_by: Option<i64>,
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

/// A client's idempotency key with a digest of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// An entry as a restore reproduces it: the source's id, reversal link,
/// author and time are kept, so the restored books equal the source's.
#[derive(Debug, Clone)]
pub struct RestoredEntry {
    pub id: i64,
    pub draft: wb_core::EntryDraft,
    pub reverses: Option<i64>,
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

/// A source journal record a restore writes into the restored store's journal
/// unchanged (so both chains carry the same hashes), with what it holds.
#[derive(Debug, Clone)]
pub struct ReplayedRecord {
    pub seq: i64,
    /// The record's time exactly as the source's journal holds it (hashed).
    pub at: String,
    pub kind: String,
    pub payload: String,
    pub hash: String,
    pub content: ReplayedContent,
}

#[derive(Debug, Clone)]
pub enum ReplayedContent {
    Account {
        id: i64,
        account: wb_core::NewAccount,
        created_at: OffsetDateTime,
    },
    Entries(Vec<RestoredEntry>),
    /// Entries a purge kept, re-stated in id order: ids may skip the purged ones.
    KeptEntries(Vec<RestoredEntry>),
    /// A purge's anchor: the store is emptied and its journal continues
    /// from record `through_seq` (hash `through_hash`); the baseline follows.
    Purged {
        through_seq: i64,
        through_hash: String,
    },
    /// An attachment's record, under its recorded id (its object is checked
    /// and copied by the restore, not by the store).
    File(FileRecord),
}

/// One change to apply with `TenantStore::apply_in_order` (journal replay).
#[derive(Debug, Clone)]
pub enum Change {
    CreateAccount(wb_core::NewAccount),
    Post(Vec<wb_core::EntryDraft>),
    /// Journal records replayed in bulk by a restore, kept verbatim: each
    /// must be the next in this store's chain, and what it holds is applied
    /// under its recorded ids (entries validated like a post).
    Replay(Vec<ReplayedRecord>),
    /// A company's audit events, copied verbatim into a new, empty store
    /// (disaster recovery): each must be the next in the chain.
    ImportAudit(Vec<StoredAuditEvent>),
    Reverse {
        entry_id: i64,
        date: time::Date,
        description: Option<String>,
    },
}

/// What an applied `Change` produced.
#[derive(Debug, Clone)]
pub enum Applied {
    Account(Account),
    Posted(Posted),
    Entry(Entry),
    /// The store's journal now ends at this replayed record.
    Replayed {
        last_seq: i64,
    },
    /// The store's audit trail now ends at this imported event.
    AuditImported {
        last_seq: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub entries: Vec<Entry>,
    /// True when an earlier request with the same Idempotency-Key is answered again.
    pub replayed: bool,
}

/// Which entries to list, and in which order. Every filter given must hold;
/// `..Default::default()` leaves the rest out (oldest first, all entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryPage {
    /// Only ids greater than this: the cursor of the ascending order (the
    /// last id of the previous page).
    pub after: Option<i64>,
    /// Only ids smaller than this: the cursor of `newest_first` (the last id
    /// of the previous page).
    pub before: Option<i64>,
    /// 1 to the backend's maximum page; other values are clamped.
    pub limit: u32,
    /// Entries dated on or after this day.
    pub from: Option<Date>,
    /// Entries dated on or before this day.
    pub to: Option<Date>,
    /// Ids descending instead of ascending.
    pub newest_first: bool,
    /// Only entries with a posting to the account with this code; an unknown
    /// code matches nothing.
    pub account: Option<String>,
    /// Only entries whose description or reference contains this text,
    /// ignoring the case of ASCII letters (other characters match exactly);
    /// `%`, `_` and `\` are plain characters.
    pub text: Option<String>,
    pub amount: Option<AmountFilter>,
}

/// Only entries with a posting in `currency` whose absolute amount (minor
/// units) is within `[min, max]`; a bound left out does not limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountFilter {
    pub currency: Currency,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

/// An attachment to record; its encrypted object is already stored under `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    /// The content address (64 hex characters) of the object holding it.
    pub address: String,
    pub name: String,
    /// A media type, as `wb_core::attachments::normalize_content_type` gives it.
    pub content_type: String,
    /// Plaintext bytes.
    pub size: u64,
    /// The entry it belongs to, if any (entries stay immutable: the file points at it).
    pub entry_id: Option<i64>,
}

/// An attachment's metadata. Immutable once recorded; its content is the
/// company's object at `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: i64,
    pub address: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub entry_id: Option<i64>,
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

/// A page of attachments in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilePage {
    pub after: Option<i64>,
    pub limit: u32,
    /// Only the files linked to this entry.
    pub entry_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantStats {
    pub accounts: i64,
    pub entries: i64,
    pub journal_seq: i64,
    pub storage_bytes: u64,
    /// Attachments, and their bytes (as uploaded).
    pub files: i64,
    pub file_bytes: i64,
}

/// A change-journal record: enough to replay the change on a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    pub seq: i64,
    pub at: OffsetDateTime,
    pub kind: String,
    pub payload: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What a company's writer last committed, readable without a query (the
/// audit forwarder and the journal shipper poll it).
#[derive(Debug, Default)]
pub struct Published {
    pub audit_seq: std::sync::atomic::AtomicI64,
    pub journal_seq: std::sync::atomic::AtomicI64,
}

impl Published {
    pub(crate) fn set(&self, audit_seq: i64, journal_seq: i64) {
        use std::sync::atomic::Ordering::Release;
        self.audit_seq.store(audit_seq, Release);
        self.journal_seq.store(journal_seq, Release);
    }
}
