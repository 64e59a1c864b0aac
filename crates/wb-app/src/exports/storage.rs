//! Exports in the platform's object store: building one (`prepare`),
//! storing it (`save`), and reading what is stored.

use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{GetResult, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wb_store::TenantStore;

use super::archive::{book_parts, manifest, Origin, Part};
use super::stream::{write_to_store, Job, Source, Written};
use super::{snapshot, CompanyInfo, Counts, ExportKey, Manifest, SnapshotError};
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;

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

/// An export read and described (manifest, digests of every part and
/// attachment), ready to be written; nothing encrypted or stored yet.
pub struct Prepared {
    pub id: String,
    pub company_id: String,
    pub manifest: Manifest,
    encryption: String,
    recipient: Option<String>,
    parts: Vec<Part>,
    key: ExportKey,
    source: Option<Source>,
}

/// The record of an export being written (everything but what the writing
/// tells: the encrypted file's size and digest).
pub(super) struct Pending {
    id: String,
    company_id: String,
    manifest: Manifest,
    encryption: String,
    recipient: Option<String>,
}

impl Pending {
    pub(super) fn record(self, written: Written) -> ExportRecord {
        ExportRecord {
            id: self.id,
            company_id: self.company_id,
            status: "ready".into(),
            created_at: self.manifest.created_at,
            created_by: self.manifest.created_by,
            size_bytes: written.size,
            sha256: written.sha256,
            encryption: self.encryption,
            recipient: self.recipient,
            journal_seq: self.manifest.journal_seq,
            audit_seq: self.manifest.audit_seq,
            counts: self.manifest.counts,
        }
    }
}

impl Prepared {
    pub(super) fn into_job(self) -> (Pending, Job) {
        let pending = Pending {
            id: self.id,
            company_id: self.company_id,
            manifest: self.manifest.clone(),
            encryption: self.encryption,
            recipient: self.recipient,
        };
        let job = Job {
            manifest: self.manifest,
            parts: self.parts,
            key: self.key,
            source: self.source,
        };
        (pending, job)
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("id", &self.id)
            .field("company_id", &self.company_id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
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

/// Reads the company (one consistent snapshot) and reads every attachment
/// once to take its SHA-256 for the manifest; nothing is encrypted or
/// stored yet (`save` or `write_to_store` do that).
pub async fn prepare(
    platform: &Platform,
    store: &dyn TenantStore,
    key: ExportKey,
    created_by: &str,
) -> ServiceResult<Prepared> {
    let company_id = store.company_id().to_string();
    let company = platform
        .control
        .company(&company_id)
        .await?
        .ok_or_else(|| ServiceError::not_found("company"))?;
    let mut snapshot = snapshot(
        store,
        CompanyInfo {
            id: company.id.clone(),
            name: company.name.clone(),
        },
    )
    .await
    .map_err(|e| match e {
        SnapshotError::Busy => ServiceError::conflict("export-busy", e.to_string()),
        SnapshotError::Store(s) => s.into(),
    })?;
    let files = std::mem::take(&mut snapshot.files);
    let (source, refs) = if files.is_empty() {
        (None, Vec::new())
    } else {
        let source = Source {
            objects: platform.objects.clone(),
            key: platform.company_key(&company_id).await?,
            company_id: company_id.clone(),
            files,
        };
        let refs = source.digests().await.map_err(|e| {
            tracing::error!(error = %e, company = %company_id, "an attachment cannot be read for an export");
            anyhow::anyhow!("an attachment cannot be read: {e}")
        })?;
        (Some(source), refs)
    };
    let origin = Origin {
        export_id: uuid::Uuid::now_v7().hyphenated().to_string(),
        created_at: platform.now(),
        created_by: created_by.to_string(),
    };
    let (manifest, parts) = tokio::task::spawn_blocking(move || {
        let parts = book_parts(&snapshot)?;
        let manifest = manifest(&snapshot, &parts, refs, &origin);
        anyhow::Ok((manifest, parts))
    })
    .await
    .map_err(|e| anyhow::anyhow!("building an export: {e}"))??;
    Ok(Prepared {
        id: manifest.export_id.clone(),
        company_id,
        encryption: key.encryption().to_string(),
        recipient: key.public_recipient(),
        manifest,
        parts,
        key,
        source,
    })
}

/// Stores the encrypted file (streaming), then its metadata (an export is
/// listed only once its file is in place).
pub async fn save(platform: &Platform, prepared: Prepared) -> anyhow::Result<ExportRecord> {
    let path = blob_path(&prepared.company_id, &prepared.id);
    let record = write_to_store(prepared, Arc::clone(&platform.objects), &path).await?;
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
pub(crate) async fn get(
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

/// The encrypted file of an export, as a stream from the object store
/// (`GetResult::into_stream`; never read whole into memory).
pub(crate) async fn download(
    platform: &Platform,
    company_id: &str,
    export_id: &str,
) -> anyhow::Result<Option<(ExportRecord, GetResult)>> {
    let Some(record) = get(platform, company_id, export_id).await? else {
        return Ok(None);
    };
    match platform
        .objects
        .get(&blob_path(company_id, export_id))
        .await
    {
        Ok(found) => Ok(Some((record, found))),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the company's stored exports older than its `exports_days`
/// (each file before its metadata, so a half-deleted export is never
/// listed); returns the ids deleted.
pub(crate) async fn expire(
    platform: &Platform,
    company_id: &str,
    rules: &wb_core::data_retention::DataRetention,
    now: time::OffsetDateTime,
) -> anyhow::Result<Vec<String>> {
    let mut gone = Vec::new();
    for record in list(platform, company_id).await? {
        let created = time::OffsetDateTime::parse(
            &record.created_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| anyhow::anyhow!("export {}: bad created_at: {e}", record.id))?;
        if !rules.export_expired(created, now) {
            continue;
        }
        for path in [
            blob_path(company_id, &record.id),
            meta_path(company_id, &record.id),
        ] {
            match platform.objects.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(anyhow::anyhow!("deleting {path}: {e}")),
            }
        }
        gone.push(record.id);
    }
    Ok(gone)
}

/// Deletes the company's stored exports made before `before` (a purge:
/// they hold what it removed); returns the ids deleted.
pub(crate) async fn delete_made_before(
    platform: &Platform,
    company_id: &str,
    before: time::OffsetDateTime,
) -> anyhow::Result<Vec<String>> {
    let mut gone = Vec::new();
    for record in list(platform, company_id).await? {
        let created = time::OffsetDateTime::parse(
            &record.created_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| anyhow::anyhow!("export {}: bad created_at: {e}", record.id))?;
        if created >= before {
            continue;
        }
        for path in [
            blob_path(company_id, &record.id),
            meta_path(company_id, &record.id),
        ] {
            match platform.objects.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(anyhow::anyhow!("deleting {path}: {e}")),
            }
        }
        gone.push(record.id);
    }
    Ok(gone)
}

/// Every export of a company, newest first.
pub(crate) async fn list(
    platform: &Platform,
    company_id: &str,
) -> anyhow::Result<Vec<ExportRecord>> {
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
