//! What both backends' writers do alike for attachments: check a new file
//! and write its audit fields (its journal payload is in `journal.rs`).

use wb_core::attachments::{normalize_content_type, validate_file_name};

use crate::model::{FileRecord, NewFile};
use crate::StoreError;

/// Refuses a file the API would never have sent: the store's own guard.
pub(crate) fn check(file: &NewFile) -> Result<(), StoreError> {
    let invalid = |what: &str| StoreError::Conflict(format!("file {what} is not acceptable"));
    validate_file_name(&file.name).map_err(|_| invalid("name"))?;
    if normalize_content_type(Some(&file.content_type))
        .ok()
        .as_deref()
        != Some(file.content_type.as_str())
    {
        return Err(invalid("media type"));
    }
    if !wb_crypto::is_content_address(&file.address) {
        return Err(invalid("address"));
    }
    if i64::try_from(file.size).is_err() {
        return Err(invalid("size"));
    }
    if file.entry_id.is_some_and(|id| id <= 0) {
        return Err(StoreError::NotFound("entry"));
    }
    Ok(())
}

/// The record a new file becomes.
pub(crate) fn record(id: i64, file: NewFile, ctx: &crate::WriteContext) -> FileRecord {
    FileRecord {
        id,
        address: file.address,
        name: file.name,
        content_type: file.content_type,
        size: file.size,
        entry_id: file.entry_id,
        created_at: ctx.at,
        created_by: ctx.actor.id.clone(),
    }
}

/// Audit target and detail of an upload. The name stays out of the trail
/// (it is customer content, and the trail is forwarded to drains).
pub(crate) fn audit_fields(file: &FileRecord) -> (String, String) {
    let mut detail = format!("{} bytes", file.size);
    if let Some(entry) = file.entry_id {
        detail.push_str(&format!(", linked to entry:{entry}"));
    }
    (format!("file:{}", file.id), detail)
}

/// A size as stored (checked to fit by `check`).
pub(crate) fn stored_size(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// A stored size, refusing what no upload writes.
pub(crate) fn size_of(stored: i64) -> Result<u64, StoreError> {
    u64::try_from(stored).map_err(|_| StoreError::Corrupt("file size".into()))
}
