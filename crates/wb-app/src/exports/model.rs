//! What an export holds: the manifest and the records of each part.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wb_store::{FileRecord, StoredAuditEvent};

use crate::backup::shipper::SegmentRecord;

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
    /// Attachments (absent, so 0, in version 1 exports).
    #[serde(default)]
    pub files: u64,
    /// Their plaintext bytes, all together.
    #[serde(default)]
    pub file_bytes: u64,
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

/// An attachment as the manifest describes it (the first three fields are
/// version 1's placeholder; version 2 added the others).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Where it is in the archive: `files/{id}-{safe name}`.
    pub path: String,
    /// Plaintext bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the plaintext, as `sha256sum` prints it.
    pub sha256: String,
    pub id: String,
    /// The name it was uploaded with (may hold any characters but `/` and `\`).
    pub name: String,
    pub content_type: String,
    /// The entry it is linked to.
    pub entry: Option<String>,
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
    /// Every attachment, by id, in archive order (empty in version 1).
    pub files: Vec<FileRef>,
}

/// Accounts, entries and postings are written exactly as the API returns
/// them (`GET …/accounts`, `GET …/entries/{id}`): one type for both, so the
/// export cannot drift from the API.
pub type ExportAccount = crate::dto::AccountView;
pub type ExportEntry = crate::dto::EntryView;
pub type ExportPosting = crate::dto::PostingBody;

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
    pub(super) fn chained(&self) -> wb_core::audit::ChainedEvent {
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
    /// The attachments recorded up to `journal_seq`, by id.
    pub files: Vec<ExportFile>,
}

/// An attachment as the snapshot found it (its content is read later, from
/// the object store, twice: see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub id: i64,
    /// The content address of its object (not exported).
    pub address: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub entry_id: Option<i64>,
}

impl From<&FileRecord> for ExportFile {
    fn from(f: &FileRecord) -> Self {
        ExportFile {
            id: f.id,
            address: f.address.clone(),
            name: f.name.clone(),
            content_type: f.content_type.clone(),
            size: f.size,
            entry_id: f.entry_id,
        }
    }
}

impl ExportFile {
    /// Its manifest entry, given the SHA-256 of its plaintext.
    pub fn file_ref(&self, sha256: String) -> FileRef {
        FileRef {
            path: super::file_path(self.id, &self.name),
            bytes: self.size,
            sha256,
            id: self.id.to_string(),
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            entry: self.entry_id.map(|e| e.to_string()),
        }
    }
}

/// A decrypted, verified export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportContents {
    pub manifest: Manifest,
    pub accounts: Vec<ExportAccount>,
    pub entries: Vec<ExportEntry>,
    pub audit: Vec<ExportAuditEvent>,
    pub journal: Vec<SegmentRecord>,
    /// Every file of the archive, as stored (name → bytes), manifest and
    /// attachments included (`decrypt_and_read` keeps them all in memory).
    pub files: BTreeMap<String, Vec<u8>>,
}
