//! Customer exports ("customer backups", SPEC §3.12): a full copy of one
//! company — its books, its attachments, its audit trail and its change
//! journal — encrypted with `age` to a key the customer holds, so that
//! neither the platform's master key nor the company's data key is needed to
//! read it.
//!
//! # Format (version 2)
//!
//! The export file is an [age](https://age-encryption.org/v1) file (binary,
//! not armored) encrypted either to one X25519 recipient (`age1…`) or to a
//! passphrase (scrypt, work factor 2^18). Its plaintext is an uncompressed
//! POSIX (ustar) tar archive, in this order:
//!
//! | file                       | content                                                                 |
//! |----------------------------|-------------------------------------------------------------------------|
//! | `manifest.json`            | [`Manifest`]: format, version, company, creation time, journal and audit positions, counts, the size and SHA-256 of every part, and every attachment ([`FileRef`]) |
//! | `accounts.jsonl`           | one [`ExportAccount`] per line (the shape `GET …/accounts` returns)     |
//! | `entries.jsonl`            | one [`ExportEntry`] per line, with its postings (the shape `GET …/entries/{id}` returns), by id |
//! | `audit.jsonl`              | the company's hash-chained audit trail from event 1, one [`ExportAuditEvent`] per line |
//! | `journal.jsonl`            | the company's hash-chained change journal from record 1 to `journal_seq`, one [`SegmentRecord`] per line (what `workbooks restore` replays) |
//! | `files/{id}-{safe name}`   | each attachment's plaintext, by id, exactly as uploaded                 |
//!
//! Each attachment's manifest entry gives its archive `path`, plaintext
//! `bytes` and `sha256`, and its `id`, `name` (as uploaded), `content_type`
//! and linked `entry` (if any). The path's name part is the upload name
//! reduced to ASCII letters, digits, `.`, `-` and `_` (anything else becomes
//! `_`, at most [`MAX_SAFE_NAME`] characters, keeping the extension), after
//! the file id: always one flat file under `files/`, never a path that could
//! leave the directory it is extracted to, and unique because of the id.
//!
//! So `age -d -i key.txt export.age | tar -x` and `sha256sum` read an export
//! with standard tools; `workbooks export decrypt` does the same, streaming,
//! and also checks both hash chains and every attachment.
//!
//! Version 1 (before attachments were exported) had the same five books
//! files and `"files": []`; readers still accept it. Version 2 adds the
//! `files/` entries and the attachment fields. It is a new version because
//! a version 1 reader was promised `files` is always empty: one that
//! trusted that would take an export for complete without its attachments.
//!
//! # Consistency
//!
//! The books, the list of attachments, the journal and the journal position
//! are one consistent snapshot: the export reads the journal position before
//! and after reading the books and the file records, and retries (a few
//! times) when a change committed in between. An attachment is recorded in
//! the same transaction as its `file_added` journal record, so the files
//! exported are exactly those recorded up to `journal_seq`.
//!
//! # Streaming, and why the digests come first
//!
//! Attachments may be 1 GiB each, so an export is never held in memory: the
//! books parts are (as JSON lines, like before), the attachments and the
//! encrypted output are not. The archive is written as a stream, tar → age →
//! object-store multipart upload, in a blocking task whose output reaches
//! the async upload through a bounded channel (`stream.rs`): memory holds a
//! multipart part (5 MiB), two more in flight and a few 64 KiB buffers,
//! whatever the attachments weigh.
//!
//! The manifest is the first archive entry and names each attachment's
//! SHA-256, so the export reads every attachment twice: a first pass
//! (download, decrypt, hash; nothing stored) computes the digests, and the
//! second writes the archive, hashing again and failing the export if any
//! digest differs. The alternative, digests in a trailing entry, would save
//! the platform that read but make every reader buffer or re-read the
//! archive before it could trust a single file (the manifest would no longer
//! describe what follows); keeping the manifest first lets `tar -x`, a
//! script reading `manifest.json` first, and `workbooks export decrypt`
//! verify each file as it arrives. Objects are immutable and
//! content-addressed, so both passes read the same bytes.

mod archive;
mod keys;
mod model;
mod read;
mod snapshot;
pub(crate) mod storage;
mod stream;

pub use age;

pub use crate::export_slots::{default_per_node, Busy, ExportLimits, ExportSlot, ExportSlots};
pub use archive::{file_path, package, package_with_files, safe_name};
pub use keys::{
    decrypt, decrypt_and_read, decrypting_reader, encrypt, encrypting_writer, ExportKey, KeyError,
    ReadError, Unlock,
};
pub use model::{
    CompanyInfo, Counts, ExportAccount, ExportAuditEvent, ExportContents, ExportEntry, ExportFile,
    ExportPosting, FileRef, Manifest, PartInfo, Snapshot,
};
pub use read::{read, read_from, DiscardFiles, FileSink, KeepFiles, Verified};
pub use snapshot::{snapshot, SnapshotError};
pub use storage::{blob_path, meta_path, prefix, prepare, save, ExportRecord, Prepared};
pub(crate) use storage::{download, get, list};
pub use stream::{write_to_store, Written};

/// The `format` field of every manifest.
pub const FORMAT: &str = "workbooks-export";
/// The manifest `version` this code writes.
pub const FORMAT_VERSION: u32 = 2;
/// The versions this code reads.
pub const READABLE_VERSIONS: [u32; 2] = [1, 2];
pub const MANIFEST: &str = "manifest.json";
pub const ACCOUNTS: &str = "accounts.jsonl";
pub const ENTRIES: &str = "entries.jsonl";
pub const AUDIT: &str = "audit.jsonl";
pub const JOURNAL: &str = "journal.jsonl";
/// The data parts, in archive order (the manifest comes first).
pub const PARTS: [&str; 4] = [ACCOUNTS, ENTRIES, AUDIT, JOURNAL];
/// The directory of the attachments in the archive.
pub const FILES_DIR: &str = "files/";
/// The longest name part of an attachment's archive path (so that
/// `files/{id}-{name}` fits a plain ustar header).
pub const MAX_SAFE_NAME: usize = 64;
/// scrypt work factor (N = 2^18, 256 MiB, about a second) for passphrase exports.
pub const PASSPHRASE_WORK_FACTOR: u8 = 18;
/// The largest scrypt work factor a reader accepts (bounds the memory and
/// time a hostile file can make it spend: 2^20 is 1 GiB).
pub const MAX_PASSPHRASE_WORK_FACTOR: u8 = 20;
/// Attempts at a consistent snapshot before giving up (the company is busy).
const SNAPSHOT_ATTEMPTS: usize = 3;
const PAGE: u32 = 1000;

#[cfg(test)]
mod tests;
