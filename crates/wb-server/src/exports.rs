//! Customer exports ("customer backups", SPEC §3.12): a full copy of one
//! company — its books, its audit trail and its change journal — encrypted
//! with `age` to a key the customer holds, so that neither the platform's
//! master key nor the company's data key is needed to read it.
//!
//! # Format (version 1)
//!
//! The export file is an [age](https://age-encryption.org/v1) file (binary,
//! not armored) encrypted either to one X25519 recipient (`age1…`) or to a
//! passphrase (scrypt, work factor 2^18). Its plaintext is an uncompressed
//! POSIX tar archive of flat files, in this order:
//!
//! | file             | content                                                                 |
//! |------------------|-------------------------------------------------------------------------|
//! | `manifest.json`  | [`Manifest`]: format, version, company, creation time, journal and audit positions, counts, and the size and SHA-256 of every other file |
//! | `accounts.jsonl` | one [`ExportAccount`] per line (the shape `GET …/accounts` returns)     |
//! | `entries.jsonl`  | one [`ExportEntry`] per line, with its postings (the shape `GET …/entries/{id}` returns), by id |
//! | `audit.jsonl`    | the company's hash-chained audit trail from event 1, one [`ExportAuditEvent`] per line |
//! | `journal.jsonl`  | the company's hash-chained change journal from record 1 to `journal_seq`, one [`SegmentRecord`] per line (what `workbooks restore` replays) |
//!
//! So `age -d -i key.txt export.age | tar -x` and `sha256sum` read an export
//! with standard tools; `workbooks export decrypt` does the same and also checks
//! both hash chains. Attachments do not exist in the product yet: the manifest
//! says so with `"files": []`.
//!
//! The books, the journal and the journal position are one consistent
//! snapshot: the export reads the journal position before and after reading
//! the books and retries (a few times) when a change committed in between.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::iter;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use wb_crypto::{check_strength, sha256_hex, PassphraseError, Secret};
use wb_store::{Account, Entry, EntryPage, StoredAuditEvent, TenantStore};

pub use age;

use crate::dto::rfc3339;
use crate::jobs::shipper::SegmentRecord;
use crate::platform::{Platform, MIN_PASSPHRASE_SCORE};
use crate::problem::{ApiError, ApiResult};

/// The `format` field of every manifest.
pub const FORMAT: &str = "workbooks-export";
/// The manifest `version` this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const ACCOUNTS: &str = "accounts.jsonl";
pub const ENTRIES: &str = "entries.jsonl";
pub const AUDIT: &str = "audit.jsonl";
pub const JOURNAL: &str = "journal.jsonl";
/// The data parts, in archive order (the manifest comes first).
pub const PARTS: [&str; 4] = [ACCOUNTS, ENTRIES, AUDIT, JOURNAL];
/// scrypt work factor (N = 2^18, 256 MiB, about a second) for passphrase exports.
pub const PASSPHRASE_WORK_FACTOR: u8 = 18;
/// The largest scrypt work factor a reader accepts (bounds the memory and
/// time a hostile file can make it spend: 2^20 is 1 GiB).
pub const MAX_PASSPHRASE_WORK_FACTOR: u8 = 20;
/// Attempts at a consistent snapshot before giving up (the company is busy).
const SNAPSHOT_ATTEMPTS: usize = 3;
const PAGE: u32 = 1000;

// ---------------------------------------------------------------- keys

/// What an export is encrypted to. Holds no key the platform could decrypt with.
pub enum ExportKey {
    /// An age X25519 recipient (public key); the customer keeps the identity.
    Recipient(age::x25519::Recipient),
    /// A passphrase (age scrypt recipient); never stored, logged or echoed.
    Passphrase(Secret),
}

impl std::fmt::Debug for ExportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportKey::Recipient(r) => write!(f, "Recipient({r})"),
            ExportKey::Passphrase(_) => f.write_str("Passphrase(***)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("recipient is not an age X25519 recipient (age1…): {0}")]
    BadRecipient(&'static str),
    #[error("passphrase is too weak: {0}")]
    WeakPassphrase(String),
}

impl ExportKey {
    pub fn recipient(text: &str) -> Result<ExportKey, KeyError> {
        text.trim()
            .parse::<age::x25519::Recipient>()
            .map(ExportKey::Recipient)
            .map_err(KeyError::BadRecipient)
    }

    /// A passphrase that passes the same strength check as user passphrases
    /// (`related` are words that make it guessable: company name, email).
    pub fn passphrase(passphrase: Secret, related: &[&str]) -> Result<ExportKey, KeyError> {
        check_strength(&passphrase, related, MIN_PASSPHRASE_SCORE).map_err(|e| match e {
            PassphraseError::Weak(reason) => KeyError::WeakPassphrase(reason),
            PassphraseError::Hash => KeyError::WeakPassphrase("it cannot be checked".into()),
        })?;
        Ok(ExportKey::Passphrase(passphrase))
    }

    /// `age-x25519` or `age-scrypt`.
    pub fn encryption(&self) -> &'static str {
        match self {
            ExportKey::Recipient(_) => "age-x25519",
            ExportKey::Passphrase(_) => "age-scrypt",
        }
    }

    /// The public recipient, for the metadata and the audit trail.
    pub fn public_recipient(&self) -> Option<String> {
        match self {
            ExportKey::Recipient(r) => Some(r.to_string()),
            ExportKey::Passphrase(_) => None,
        }
    }
}

/// Encrypts `plain` to the key (binary age format). CPU-bound (a passphrase
/// costs about a second of scrypt): call it off the async runtime.
pub fn encrypt(plain: &[u8], key: &ExportKey) -> anyhow::Result<Vec<u8>> {
    let out = match key {
        ExportKey::Recipient(r) => age::encrypt(r, plain)?,
        ExportKey::Passphrase(p) => {
            let mut r = age::scrypt::Recipient::new(age::secrecy::SecretString::from(
                p.expose().to_owned(),
            ));
            r.set_work_factor(PASSPHRASE_WORK_FACTOR);
            age::encrypt(&r, plain)?
        }
    };
    Ok(out)
}

/// What opens an export: age identities (`AGE-SECRET-KEY-1…`) or the passphrase.
pub enum Unlock {
    Identities(Vec<Box<dyn age::Identity + Send + Sync>>),
    Passphrase(Secret),
}

impl Unlock {
    pub fn identity(identity: age::x25519::Identity) -> Unlock {
        Unlock::Identities(vec![Box::new(identity)])
    }

    /// Parses an age identity file (`age-keygen` output: comments and one
    /// `AGE-SECRET-KEY-1…` per line).
    pub fn identity_file(text: &str) -> Result<Unlock, ReadError> {
        let file = age::IdentityFile::from_buffer(text.as_bytes())
            .map_err(|e| ReadError::Key(format!("not an age identity file: {e}")))?;
        let identities = file
            .into_identities()
            .map_err(|e| ReadError::Key(format!("not an age identity file: {e}")))?;
        if identities.is_empty() {
            return Err(ReadError::Key("the identity file holds no identity".into()));
        }
        Ok(Unlock::Identities(identities))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Key(String),
    #[error("cannot decrypt the export: {0}")]
    Decrypt(String),
    #[error("not a readable Work-books export: {0}")]
    Format(String),
    #[error("the export fails verification: {0}")]
    Integrity(String),
}

/// Decrypts an export (binary age file) to its plaintext tar.
pub fn decrypt(bytes: &[u8], unlock: &Unlock) -> Result<Vec<u8>, ReadError> {
    let decryptor = age::Decryptor::new_buffered(bytes)
        .map_err(|e| ReadError::Decrypt(format!("not an age file: {e}")))?;
    let mut reader = match unlock {
        Unlock::Identities(ids) => {
            if decryptor.is_scrypt() {
                return Err(ReadError::Decrypt(
                    "this export is encrypted to a passphrase, not to an identity".into(),
                ));
            }
            decryptor
                .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::NoMatchingKeys => ReadError::Decrypt(
                        "the identity does not match the export's recipient".into(),
                    ),
                    other => ReadError::Decrypt(other.to_string()),
                })?
        }
        Unlock::Passphrase(p) => {
            if !decryptor.is_scrypt() {
                return Err(ReadError::Decrypt(
                    "this export is encrypted to an age recipient, not to a passphrase".into(),
                ));
            }
            let mut identity =
                age::scrypt::Identity::new(age::secrecy::SecretString::from(p.expose().to_owned()));
            identity.set_max_work_factor(MAX_PASSPHRASE_WORK_FACTOR);
            decryptor
                .decrypt(iter::once(&identity as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::DecryptionFailed
                    | age::DecryptError::NoMatchingKeys
                    | age::DecryptError::KeyDecryptionFailed => {
                        ReadError::Decrypt("wrong passphrase".into())
                    }
                    other => ReadError::Decrypt(other.to_string()),
                })?
        }
    };
    let mut plain = Vec::new();
    reader
        .read_to_end(&mut plain)
        .map_err(|e| ReadError::Decrypt(format!("the file is damaged or truncated: {e}")))?;
    Ok(plain)
}

/// Decrypts, unpacks and verifies an export: every part's size and SHA-256
/// against the manifest, record counts, and both hash chains.
pub fn decrypt_and_read(bytes: &[u8], unlock: &Unlock) -> Result<ExportContents, ReadError> {
    read(&decrypt(bytes, unlock)?)
}

// ---------------------------------------------------------------- contents

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompanyInfo {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    pub accounts: u64,
    pub entries: u64,
    pub postings: u64,
    pub audit_events: u64,
    pub journal_records: u64,
}

/// One file of the archive as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    pub name: String,
    /// Lines (records) in the file.
    pub records: u64,
    pub bytes: u64,
    /// Hex SHA-256 of the file, as `sha256sum` prints it.
    pub sha256: String,
}

/// An attached file (none exist in the product yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `workbooks-export`.
    pub format: String,
    pub version: u32,
    pub export_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// The actor who asked for it (`user:<id>`, `api_key:<id>`).
    pub created_by: String,
    pub company: CompanyInfo,
    /// The last change-journal record included (the books are as of this record).
    pub journal_seq: i64,
    /// The last audit event included.
    pub audit_seq: i64,
    pub counts: Counts,
    pub parts: Vec<PartInfo>,
    /// Attachments: the product stores none yet, so always empty.
    pub files: Vec<FileRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportAccount {
    pub id: String,
    pub code: String,
    pub name: String,
    #[serde(rename = "type")]
    pub account_type: String,
    pub parent: Option<String>,
    pub currency: Option<String>,
    pub created_at: String,
}

impl From<&Account> for ExportAccount {
    fn from(a: &Account) -> Self {
        ExportAccount {
            id: a.id.to_string(),
            code: a.code.clone(),
            name: a.name.clone(),
            account_type: a.account_type.as_str().into(),
            parent: a.parent.clone(),
            currency: a.currency.map(|c| c.code().to_string()),
            created_at: rfc3339(a.created_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPosting {
    pub account: String,
    /// Signed decimal string, debit positive.
    pub amount: String,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEntry {
    pub id: String,
    pub date: String,
    pub description: String,
    pub reference: Option<String>,
    pub postings: Vec<ExportPosting>,
    pub reverses: Option<String>,
    pub reversed_by: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

impl From<&Entry> for ExportEntry {
    fn from(e: &Entry) -> Self {
        ExportEntry {
            id: e.id.to_string(),
            date: e.date.to_string(),
            description: e.description.clone(),
            reference: e.reference.clone(),
            postings: e
                .postings
                .iter()
                .map(|p| ExportPosting {
                    account: p.account.clone(),
                    amount: p.currency.format(i128::from(p.amount)),
                    currency: p.currency.code().to_string(),
                })
                .collect(),
            reverses: e.reverses.map(|id| id.to_string()),
            reversed_by: e.reversed_by.map(|id| id.to_string()),
            created_at: rfc3339(e.created_at),
            created_by: e.created_by.clone(),
        }
    }
}

/// An event of the company's audit chain, with its links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportAuditEvent {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub auth: String,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub company_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&StoredAuditEvent> for ExportAuditEvent {
    fn from(e: &StoredAuditEvent) -> Self {
        ExportAuditEvent {
            seq: e.seq,
            at: e.at.clone(),
            actor: e.actor.clone(),
            auth: e.auth.clone(),
            client: e.client.clone(),
            request_id: e.request_id.clone(),
            company_id: e.company_id.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            detail: e.detail.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

impl ExportAuditEvent {
    fn chained(&self) -> wb_core::audit::ChainedEvent {
        wb_core::audit::ChainedEvent {
            seq: self.seq,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
            fields: wb_core::audit::AuditFields {
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
            },
        }
    }
}

/// A company's data as read for an export (before packaging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub company: CompanyInfo,
    pub journal_seq: i64,
    pub accounts: Vec<ExportAccount>,
    pub entries: Vec<ExportEntry>,
    pub audit: Vec<ExportAuditEvent>,
    pub journal: Vec<SegmentRecord>,
}

/// A decrypted, verified export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportContents {
    pub manifest: Manifest,
    pub accounts: Vec<ExportAccount>,
    pub entries: Vec<ExportEntry>,
    pub audit: Vec<ExportAuditEvent>,
    pub journal: Vec<SegmentRecord>,
    /// Every file of the archive, as stored (name → bytes), manifest included.
    pub files: BTreeMap<String, Vec<u8>>,
}

// ---------------------------------------------------------------- building

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "the company changed during each of {SNAPSHOT_ATTEMPTS} attempts to read it; try again"
    )]
    Busy,
    #[error(transparent)]
    Store(#[from] wb_store::StoreError),
}

/// Reads everything of one company: the books as of one journal position,
/// the journal up to it, and the audit trail as it stands.
pub async fn snapshot(
    store: &dyn TenantStore,
    company: CompanyInfo,
) -> Result<Snapshot, SnapshotError> {
    for _ in 0..SNAPSHOT_ATTEMPTS {
        let before = store.stats().await?.journal_seq;
        let accounts: Vec<ExportAccount> = store.accounts().await?.iter().map(Into::into).collect();
        let mut entries = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .entries(EntryPage {
                    after,
                    limit: PAGE,
                    from: None,
                    to: None,
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            entries.extend(page.iter().map(ExportEntry::from));
        }
        if store.stats().await?.journal_seq != before {
            continue;
        }
        let mut journal = Vec::new();
        let mut seq = 0;
        'journal: while seq < before {
            let page = store.journal(seq, PAGE * 10).await?;
            if page.is_empty() {
                break;
            }
            for record in &page {
                if record.seq > before {
                    break 'journal;
                }
                journal.push(SegmentRecord::from(record));
                seq = record.seq;
            }
        }
        let mut audit = Vec::new();
        let mut seq = 0;
        loop {
            let page = store.audit_events(seq, PAGE).await?;
            let Some(last) = page.last() else { break };
            seq = last.seq;
            audit.extend(page.iter().map(ExportAuditEvent::from));
        }
        return Ok(Snapshot {
            company,
            journal_seq: before,
            accounts,
            entries,
            audit,
            journal,
        });
    }
    Err(SnapshotError::Busy)
}

fn json_lines<T: Serialize>(records: &[T]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for record in records {
        serde_json::to_writer(&mut out, record)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Packs a snapshot as the plaintext archive; returns its manifest too.
pub fn package(
    snapshot: &Snapshot,
    export_id: &str,
    created_at: OffsetDateTime,
    created_by: &str,
) -> anyhow::Result<(Manifest, Vec<u8>)> {
    let parts: [(&str, Vec<u8>, usize); 4] = [
        (
            ACCOUNTS,
            json_lines(&snapshot.accounts)?,
            snapshot.accounts.len(),
        ),
        (
            ENTRIES,
            json_lines(&snapshot.entries)?,
            snapshot.entries.len(),
        ),
        (AUDIT, json_lines(&snapshot.audit)?, snapshot.audit.len()),
        (
            JOURNAL,
            json_lines(&snapshot.journal)?,
            snapshot.journal.len(),
        ),
    ];
    let manifest = Manifest {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        export_id: export_id.into(),
        created_at: rfc3339(created_at),
        created_by: created_by.into(),
        company: snapshot.company.clone(),
        journal_seq: snapshot.journal_seq,
        audit_seq: snapshot.audit.last().map_or(0, |e| e.seq),
        counts: Counts {
            accounts: snapshot.accounts.len() as u64,
            entries: snapshot.entries.len() as u64,
            postings: snapshot
                .entries
                .iter()
                .map(|e| e.postings.len() as u64)
                .sum(),
            audit_events: snapshot.audit.len() as u64,
            journal_records: snapshot.journal.len() as u64,
        },
        parts: parts
            .iter()
            .map(|(name, bytes, records)| PartInfo {
                name: (*name).into(),
                records: *records as u64,
                bytes: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            })
            .collect(),
        files: Vec::new(),
    };
    let mut manifest_json = serde_json::to_vec_pretty(&manifest)?;
    manifest_json.push(b'\n');
    let mtime = u64::try_from(created_at.unix_timestamp()).unwrap_or(0);
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in iter::once((MANIFEST, &manifest_json))
        .chain(parts.iter().map(|(name, bytes, _)| (*name, bytes)))
    {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        tar.append_data(&mut header, name, bytes.as_slice())?;
    }
    Ok((manifest, tar.into_inner()?))
}

// ---------------------------------------------------------------- reading

fn integrity(what: impl Into<String>) -> ReadError {
    ReadError::Integrity(what.into())
}

fn parse_lines<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<Vec<T>, ReadError> {
    let mut out = Vec::new();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        out.push(
            serde_json::from_slice(line)
                .map_err(|e| integrity(format!("{name} line {}: {e}", n + 1)))?,
        );
    }
    Ok(out)
}

/// Unpacks and verifies a decrypted export.
pub fn read(plain: &[u8]) -> Result<ExportContents, ReadError> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(Cursor::new(plain));
    let entries = archive
        .entries()
        .map_err(|e| ReadError::Format(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ReadError::Format(format!("bad archive entry: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| ReadError::Format(format!("bad archive entry name: {e}")))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| ReadError::Format(format!("{name}: {e}")))?;
        if files.insert(name.clone(), bytes).is_some() {
            return Err(integrity(format!("{name} appears twice")));
        }
    }
    let manifest: Manifest = serde_json::from_slice(
        files
            .get(MANIFEST)
            .ok_or_else(|| ReadError::Format("no manifest.json".into()))?,
    )
    .map_err(|e| ReadError::Format(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(ReadError::Format(format!(
            "manifest format is {:?}, not {FORMAT:?}",
            manifest.format
        )));
    }
    if manifest.version != FORMAT_VERSION {
        return Err(ReadError::Format(format!(
            "format version {} is not supported (this reader knows version {FORMAT_VERSION})",
            manifest.version
        )));
    }
    for name in files.keys() {
        if name != MANIFEST && !PARTS.contains(&name.as_str()) {
            return Err(ReadError::Format(format!(
                "unexpected file {name:?} in the archive"
            )));
        }
    }
    if manifest.parts.len() != PARTS.len() {
        return Err(integrity(
            "the manifest does not list exactly the four parts",
        ));
    }
    for name in PARTS {
        let part = manifest
            .parts
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| integrity(format!("the manifest does not list {name}")))?;
        let bytes = files
            .get(name)
            .ok_or_else(|| integrity(format!("{name} is missing")))?;
        if bytes.len() as u64 != part.bytes {
            return Err(integrity(format!(
                "{name} has {} bytes, the manifest says {}",
                bytes.len(),
                part.bytes
            )));
        }
        if sha256_hex(bytes) != part.sha256 {
            return Err(integrity(format!(
                "{name} does not match its SHA-256 in the manifest"
            )));
        }
    }
    let part = |name: &str| files.get(name).map(Vec::as_slice).unwrap_or_default();
    let accounts: Vec<ExportAccount> = parse_lines(ACCOUNTS, part(ACCOUNTS))?;
    let entries: Vec<ExportEntry> = parse_lines(ENTRIES, part(ENTRIES))?;
    let audit: Vec<ExportAuditEvent> = parse_lines(AUDIT, part(AUDIT))?;
    let journal: Vec<SegmentRecord> = parse_lines(JOURNAL, part(JOURNAL))?;
    let counted = Counts {
        accounts: accounts.len() as u64,
        entries: entries.len() as u64,
        postings: entries.iter().map(|e| e.postings.len() as u64).sum(),
        audit_events: audit.len() as u64,
        journal_records: journal.len() as u64,
    };
    if counted != manifest.counts {
        return Err(integrity(format!(
            "the parts hold {counted:?}, the manifest says {:?}",
            manifest.counts
        )));
    }
    for p in &manifest.parts {
        let lines = part(&p.name).iter().filter(|b| **b == b'\n').count() as u64;
        if lines != p.records {
            return Err(integrity(format!(
                "{} has {lines} records, the manifest says {}",
                p.name, p.records
            )));
        }
    }
    let chained: Vec<_> = audit.iter().map(ExportAuditEvent::chained).collect();
    let verified = wb_core::audit::verify(&chained, &[], |_| true)
        .map_err(|e| integrity(format!("audit chain: {e}")))?;
    if verified.last_seq != manifest.audit_seq {
        return Err(integrity(format!(
            "the audit chain ends at {}, the manifest says {}",
            verified.last_seq, manifest.audit_seq
        )));
    }
    verify_journal(&journal, manifest.journal_seq)?;
    Ok(ExportContents {
        manifest,
        accounts,
        entries,
        audit,
        journal,
        files,
    })
}

/// The journal runs from record 1 to `last`, each record linked to the one
/// before and hashing to its stored hash (as restore checks segments).
fn verify_journal(journal: &[SegmentRecord], last: i64) -> Result<(), ReadError> {
    let mut prev = wb_core::audit::GENESIS.to_string();
    for (i, record) in journal.iter().enumerate() {
        let expected = i as i64 + 1;
        if record.seq != expected {
            return Err(integrity(format!(
                "journal chain: expected record {expected}, found {}",
                record.seq
            )));
        }
        let hash = wb_core::audit::link(
            &prev,
            record.seq,
            &[&record.at, &record.kind, &record.payload],
        );
        if record.prev_hash != prev || hash != record.hash {
            return Err(integrity(format!(
                "journal chain broken at record {}",
                record.seq
            )));
        }
        prev.clone_from(&record.hash);
    }
    let end = journal.last().map_or(0, |r| r.seq);
    if end != last {
        return Err(integrity(format!(
            "the journal ends at {end}, the manifest says {last}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- storage

/// What the platform keeps about an export (next to the encrypted file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportRecord {
    pub id: String,
    pub company_id: String,
    /// `ready` (exports are built before the creating request returns).
    pub status: String,
    pub created_at: String,
    pub created_by: String,
    /// Size of the encrypted file.
    pub size_bytes: u64,
    /// Hex SHA-256 of the encrypted file (what the download returns).
    pub sha256: String,
    /// `age-x25519` or `age-scrypt`.
    pub encryption: String,
    /// The age recipient it is encrypted to (absent for a passphrase).
    pub recipient: Option<String>,
    pub journal_seq: i64,
    pub audit_seq: i64,
    pub counts: Counts,
}

/// A built, encrypted export not yet stored.
pub struct Prepared {
    pub record: ExportRecord,
    pub bytes: Vec<u8>,
}

pub fn prefix(company_id: &str) -> ObjectPath {
    ObjectPath::from(format!("companies/{company_id}/exports"))
}

pub fn blob_path(company_id: &str, export_id: &str) -> ObjectPath {
    ObjectPath::from(format!("companies/{company_id}/exports/{export_id}.age"))
}

pub fn meta_path(company_id: &str, export_id: &str) -> ObjectPath {
    ObjectPath::from(format!("companies/{company_id}/exports/{export_id}.json"))
}

/// Export ids are UUIDs in canonical form; anything else names no export
/// (and so never reaches an object path).
fn valid_id(export_id: &str) -> bool {
    uuid::Uuid::parse_str(export_id).is_ok_and(|u| u.hyphenated().to_string() == export_id)
}

/// Reads the company and encrypts a full export of it (nothing stored yet).
pub async fn prepare(
    platform: &Platform,
    store: &dyn TenantStore,
    key: ExportKey,
    created_by: &str,
) -> ApiResult<Prepared> {
    let company_id = store.company_id().to_string();
    let company = platform
        .control
        .company(&company_id)
        .await?
        .ok_or_else(|| ApiError::not_found("company"))?;
    let snapshot = snapshot(
        store,
        CompanyInfo {
            id: company.id.clone(),
            name: company.name.clone(),
        },
    )
    .await
    .map_err(|e| match e {
        SnapshotError::Busy => ApiError::conflict("export-busy", e.to_string()),
        SnapshotError::Store(s) => s.into(),
    })?;
    let export_id = uuid::Uuid::now_v7().hyphenated().to_string();
    let created_at = platform.now();
    let encryption = key.encryption().to_string();
    let recipient = key.public_recipient();
    let created_by = created_by.to_string();
    let id = export_id.clone();
    let (manifest, bytes) = tokio::task::spawn_blocking(move || {
        let (manifest, plain) = package(&snapshot, &id, created_at, &created_by)?;
        let bytes = encrypt(&plain, &key)?;
        anyhow::Ok((manifest, bytes))
    })
    .await
    .map_err(|e| anyhow::anyhow!("building an export: {e}"))??;
    Ok(Prepared {
        record: ExportRecord {
            id: export_id,
            company_id,
            status: "ready".into(),
            created_at: manifest.created_at,
            created_by: manifest.created_by,
            size_bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
            encryption,
            recipient,
            journal_seq: manifest.journal_seq,
            audit_seq: manifest.audit_seq,
            counts: manifest.counts,
        },
        bytes,
    })
}

/// Stores the encrypted file, then its metadata (an export is listed only
/// once its file is in place).
pub async fn save(platform: &Platform, prepared: Prepared) -> anyhow::Result<ExportRecord> {
    let record = prepared.record;
    platform
        .objects
        .put(
            &blob_path(&record.company_id, &record.id),
            PutPayload::from(prepared.bytes),
        )
        .await?;
    platform
        .objects
        .put(
            &meta_path(&record.company_id, &record.id),
            PutPayload::from(serde_json::to_vec(&record)?),
        )
        .await?;
    Ok(record)
}

async fn get_object(platform: &Platform, path: &ObjectPath) -> anyhow::Result<Option<Vec<u8>>> {
    match platform.objects.get(path).await {
        Ok(got) => Ok(Some(got.bytes().await?.to_vec())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One export's metadata, or `None` when the company has no such export.
pub async fn get(
    platform: &Platform,
    company_id: &str,
    export_id: &str,
) -> anyhow::Result<Option<ExportRecord>> {
    if !valid_id(export_id) {
        return Ok(None);
    }
    let Some(bytes) = get_object(platform, &meta_path(company_id, export_id)).await? else {
        return Ok(None);
    };
    let record: ExportRecord = serde_json::from_slice(&bytes)?;
    Ok((record.company_id == company_id && record.id == export_id).then_some(record))
}

/// The encrypted file of an export.
pub async fn download(
    platform: &Platform,
    company_id: &str,
    export_id: &str,
) -> anyhow::Result<Option<(ExportRecord, Vec<u8>)>> {
    let Some(record) = get(platform, company_id, export_id).await? else {
        return Ok(None);
    };
    let Some(bytes) = get_object(platform, &blob_path(company_id, export_id)).await? else {
        return Ok(None);
    };
    Ok(Some((record, bytes)))
}

/// Every export of a company, newest first.
pub async fn list(platform: &Platform, company_id: &str) -> anyhow::Result<Vec<ExportRecord>> {
    let listing = match platform
        .objects
        .list_with_delimiter(Some(&prefix(company_id)))
        .await
    {
        Ok(listing) => listing,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for meta in listing.objects {
        let Some(id) = meta
            .location
            .filename()
            .and_then(|f| f.strip_suffix(".json"))
        else {
            continue;
        };
        if let Some(record) = get(platform, company_id, id).await? {
            out.push(record);
        }
    }
    // Ids are UUIDv7: ordered by creation time.
    out.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(n: i64) -> Vec<SegmentRecord> {
        let mut prev = wb_core::audit::GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let at = format!("2026-01-01T00:00:{seq:02}Z");
                let payload = format!("{{\"n\":{seq}}}");
                let hash = wb_core::audit::link(&prev, seq, &[&at, "account_created", &payload]);
                let record = SegmentRecord {
                    seq,
                    at,
                    kind: "account_created".into(),
                    payload,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                record
            })
            .collect()
    }

    fn audit(n: i64) -> Vec<ExportAuditEvent> {
        let mut prev = wb_core::audit::GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let mut e = ExportAuditEvent {
                    seq,
                    at: format!("2026-01-01T00:00:{seq:02}Z"),
                    actor: "user:u1".into(),
                    auth: "session".into(),
                    client: None,
                    request_id: Some(format!("r{seq}")),
                    company_id: Some("c1".into()),
                    action: "entry.post".into(),
                    target: Some(format!("entry:{seq}")),
                    outcome: "success".into(),
                    detail: None,
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = e.chained().fields.hash(&prev, seq);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn sample() -> Snapshot {
        Snapshot {
            company: CompanyInfo {
                id: "c1".into(),
                name: "Acme".into(),
            },
            journal_seq: 3,
            accounts: vec![ExportAccount {
                id: "1".into(),
                code: "1000".into(),
                name: "Cash".into(),
                account_type: "asset".into(),
                parent: None,
                currency: None,
                created_at: "2026-01-01T00:00:01Z".into(),
            }],
            entries: vec![ExportEntry {
                id: "1".into(),
                date: "2026-01-02".into(),
                description: "Sale".into(),
                reference: None,
                postings: vec![
                    ExportPosting {
                        account: "1000".into(),
                        amount: "10.00".into(),
                        currency: "EUR".into(),
                    },
                    ExportPosting {
                        account: "4000".into(),
                        amount: "-10.00".into(),
                        currency: "EUR".into(),
                    },
                ],
                reverses: None,
                reversed_by: None,
                created_at: "2026-01-02T00:00:00Z".into(),
                created_by: "user:u1".into(),
            }],
            audit: audit(4),
            journal: journal(3),
        }
    }

    fn packed(s: &Snapshot) -> Vec<u8> {
        package(s, "e1", OffsetDateTime::UNIX_EPOCH, "user:u1")
            .unwrap()
            .1
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, bytes) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o600);
            tar.append_data(&mut header, name, *bytes).unwrap();
        }
        tar.into_inner().unwrap()
    }

    fn integrity_error(plain: &[u8]) -> String {
        match read(plain) {
            Err(ReadError::Integrity(why)) => why,
            other => panic!("expected an integrity error, got {other:?}"),
        }
    }

    #[test]
    fn package_and_read_round_trip() {
        let s = sample();
        let (manifest, plain) = package(&s, "e1", OffsetDateTime::UNIX_EPOCH, "user:u1").unwrap();
        let read = read(&plain).unwrap();
        assert_eq!(read.manifest, manifest);
        assert_eq!(read.accounts, s.accounts);
        assert_eq!(read.entries, s.entries);
        assert_eq!(read.audit, s.audit);
        assert_eq!(read.journal, s.journal);
        assert_eq!(manifest.counts.postings, 2);
        assert_eq!((manifest.journal_seq, manifest.audit_seq), (3, 4));
        assert!(manifest.files.is_empty());
        let names: Vec<&str> = read.files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [ACCOUNTS, AUDIT, ENTRIES, JOURNAL, MANIFEST],
            "every file, by name"
        );
        for part in &manifest.parts {
            assert_eq!(sha256_hex(&read.files[&part.name]), part.sha256);
        }
    }

    #[test]
    fn an_empty_company_exports() {
        let mut s = sample();
        s.accounts.clear();
        s.entries.clear();
        s.journal.clear();
        s.journal_seq = 0;
        let read = read(&packed(&s)).unwrap();
        assert_eq!(read.manifest.counts.journal_records, 0);
    }

    #[test]
    fn a_part_that_does_not_match_its_digest_is_refused() {
        let s = sample();
        let good = read(&packed(&s)).unwrap();
        let mut entries = good.files[ENTRIES].clone();
        let at = entries.iter().position(|b| *b == b'S').unwrap();
        entries[at] = b's';
        let files: Vec<(&str, &[u8])> = good
            .files
            .iter()
            .map(|(n, b)| {
                (
                    n.as_str(),
                    if n == ENTRIES {
                        entries.as_slice()
                    } else {
                        b.as_slice()
                    },
                )
            })
            .collect();
        let why = integrity_error(&tar_of(&files));
        assert!(
            why.contains("entries.jsonl does not match its SHA-256"),
            "{why}"
        );

        let without: Vec<(&str, &[u8])> = good
            .files
            .iter()
            .filter(|(n, _)| n.as_str() != AUDIT)
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        assert!(integrity_error(&tar_of(&without)).contains("audit.jsonl is missing"));

        let mut extra: Vec<(&str, &[u8])> = good
            .files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        extra.push(("notes.txt", b"x"));
        assert!(matches!(read(&tar_of(&extra)), Err(ReadError::Format(_))));
        assert!(matches!(read(b"not a tar"), Err(ReadError::Format(_))));
    }

    #[test]
    fn broken_chains_are_refused_even_with_matching_digests() {
        let mut s = sample();
        s.journal[1].payload = "{\"n\":99}".into();
        assert!(integrity_error(&packed(&s)).contains("journal chain broken at record 2"));

        let mut s = sample();
        s.journal.remove(1);
        assert!(integrity_error(&packed(&s)).contains("journal chain"));

        let mut s = sample();
        s.journal_seq = 5;
        assert!(integrity_error(&packed(&s)).contains("the journal ends at 3"));

        let mut s = sample();
        s.audit[2].detail = Some("edited".into());
        assert!(integrity_error(&packed(&s)).contains("audit chain"));
    }

    #[test]
    fn keys_are_checked() {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        let key = ExportKey::recipient(&recipient).unwrap();
        assert_eq!(key.public_recipient(), Some(recipient.clone()));
        assert_eq!(key.encryption(), "age-x25519");
        assert!(matches!(
            ExportKey::recipient("age1qqqq"),
            Err(KeyError::BadRecipient(_))
        ));
        assert!(matches!(
            ExportKey::recipient(&recipient.replace("age1", "agf1")),
            Err(KeyError::BadRecipient(_))
        ));
        let weak = ExportKey::passphrase(Secret::new("acme acme acme".into()), &["acme"]);
        assert!(matches!(weak, Err(KeyError::WeakPassphrase(_))));
        let strong =
            ExportKey::passphrase(Secret::new("cobalt weasel orbit 71 fennel".into()), &[])
                .unwrap();
        assert_eq!(format!("{strong:?}"), "Passphrase(***)");
        assert_eq!(strong.encryption(), "age-scrypt");
        assert_eq!(strong.public_recipient(), None);

        let plain = packed(&sample());
        let sealed = encrypt(&plain, &key).unwrap();
        assert_eq!(
            decrypt(&sealed, &Unlock::identity(identity)).unwrap(),
            plain
        );
        let text = format!(
            "# a comment\n\n{}\n",
            age::secrecy::ExposeSecret::expose_secret(
                &age::x25519::Identity::generate().to_string()
            )
        );
        let other = Unlock::identity_file(&text).unwrap();
        assert_eq!(
            decrypt(&sealed, &other).unwrap_err(),
            ReadError::Decrypt("the identity does not match the export's recipient".into())
        );
        assert!(Unlock::identity_file("# only a comment\n").is_err());
        assert!(Unlock::identity_file("AGE-SECRET-KEY-1NOPE\n").is_err());
    }

    #[test]
    fn snapshot_retries_until_the_books_are_still() {
        // The journal head must not move while the books are read; a store
        // whose head keeps moving gives up with `Busy`.
        use std::sync::atomic::{AtomicI64, Ordering};
        struct Moving(AtomicI64);
        #[async_trait::async_trait]
        impl TenantStore for Moving {
            async fn create_account(
                &self,
                _: wb_core::NewAccount,
                _: wb_store::WriteContext,
            ) -> Result<Account, wb_store::StoreError> {
                unimplemented!()
            }
            async fn post_entries(
                &self,
                _: Vec<wb_core::EntryDraft>,
                _: Option<wb_store::Idempotency>,
                _: wb_store::WriteContext,
            ) -> Result<wb_store::Posted, wb_store::StoreError> {
                unimplemented!()
            }
            async fn reverse_entry(
                &self,
                _: i64,
                _: time::Date,
                _: Option<String>,
                _: wb_store::WriteContext,
            ) -> Result<Entry, wb_store::StoreError> {
                unimplemented!()
            }
            async fn apply_in_order(
                &self,
                _: Vec<(wb_store::Change, wb_store::WriteContext)>,
            ) -> Vec<Result<wb_store::Applied, wb_store::StoreError>> {
                unimplemented!()
            }
            fn journal_head(&self) -> i64 {
                self.0.load(Ordering::SeqCst)
            }
            async fn add_file(
                &self,
                _: wb_store::NewFile,
                _: wb_store::WriteContext,
            ) -> Result<wb_store::FileRecord, wb_store::StoreError> {
                unimplemented!()
            }
            async fn files(
                &self,
                _: wb_store::FilePage,
            ) -> Result<Vec<wb_store::FileRecord>, wb_store::StoreError> {
                Ok(Vec::new())
            }
            async fn file(
                &self,
                _: i64,
            ) -> Result<Option<wb_store::FileRecord>, wb_store::StoreError> {
                Ok(None)
            }
            async fn accounts(&self) -> Result<Vec<Account>, wb_store::StoreError> {
                Ok(Vec::new())
            }
            async fn entry(&self, _: i64) -> Result<Option<Entry>, wb_store::StoreError> {
                Ok(None)
            }
            async fn entries(&self, _: EntryPage) -> Result<Vec<Entry>, wb_store::StoreError> {
                Ok(Vec::new())
            }
            async fn balances_as_of(
                &self,
                _: time::Date,
            ) -> Result<Vec<wb_core::reports::BalanceRow>, wb_store::StoreError> {
                Ok(Vec::new())
            }
            async fn movements(
                &self,
                _: time::Date,
                _: time::Date,
            ) -> Result<Vec<wb_core::reports::BalanceRow>, wb_store::StoreError> {
                Ok(Vec::new())
            }
            async fn register(
                &self,
                _: &str,
                _: time::Date,
                _: time::Date,
                _: u32,
            ) -> Result<
                (
                    wb_core::reports::Amounts,
                    Vec<wb_core::reports::RegisterPosting>,
                ),
                wb_store::StoreError,
            > {
                unimplemented!()
            }
            async fn journal(
                &self,
                _: i64,
                _: u32,
            ) -> Result<Vec<wb_store::JournalRecord>, wb_store::StoreError> {
                Ok(Vec::new())
            }
            async fn audit_events(
                &self,
                _: i64,
                _: u32,
            ) -> Result<Vec<StoredAuditEvent>, wb_store::StoreError> {
                Ok(Vec::new())
            }
            async fn stats(&self) -> Result<wb_store::TenantStats, wb_store::StoreError> {
                Ok(wb_store::TenantStats {
                    accounts: 0,
                    entries: 0,
                    journal_seq: self.0.fetch_add(1, Ordering::SeqCst),
                    storage_bytes: 0,
                })
            }
            async fn record(&self, _: wb_store::AuditEvent) -> Result<(), wb_store::StoreError> {
                Ok(())
            }
            fn audit_head(&self) -> i64 {
                0
            }
            fn company_id(&self) -> &str {
                "c1"
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = Moving(AtomicI64::new(0));
        let company = CompanyInfo {
            id: "c1".into(),
            name: "Acme".into(),
        };
        let result = runtime.block_on(super::snapshot(&store, company));
        assert!(matches!(result, Err(SnapshotError::Busy)), "{result:?}");
        assert_eq!(store.0.load(Ordering::SeqCst), 2 * SNAPSHOT_ATTEMPTS as i64);
    }
}
