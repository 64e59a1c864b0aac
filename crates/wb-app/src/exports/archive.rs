//! The plaintext archive: the books parts (in memory), the manifest, and the
//! tar stream that carries them and the attachments (read as they are
//! written, never held whole).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use wb_crypto::sha256_hex;

use super::{
    CompanyInfo, Counts, FileRef, Manifest, PartInfo, Snapshot, ACCOUNTS, AUDIT, ENTRIES,
    FILES_DIR, FORMAT, FORMAT_VERSION, JOURNAL, MANIFEST, MAX_SAFE_NAME,
};
use crate::dto::rfc3339;

/// The longest extension `safe_name` keeps when it shortens a name.
const MAX_EXTENSION: usize = 16;

/// An attachment's name reduced to characters every file system and tar
/// accepts (ASCII letters, digits, `.`, `-`, `_`; anything else becomes
/// `_`), at most [`MAX_SAFE_NAME`] characters, keeping the extension.
pub fn safe_name(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // ASCII only from here: bytes are characters.
    let short = if mapped.len() <= MAX_SAFE_NAME {
        mapped
    } else {
        match mapped.rfind('.') {
            Some(dot) if dot > 0 && mapped.len() - dot <= MAX_EXTENSION => {
                let extension = &mapped[dot..];
                format!("{}{extension}", &mapped[..MAX_SAFE_NAME - extension.len()])
            }
            _ => mapped[..MAX_SAFE_NAME].to_string(),
        }
    };
    if short.is_empty() {
        "file".into()
    } else {
        short
    }
}

/// Where attachment `id` named `name` goes in the archive:
/// `files/{id}-{safe name}`, one flat file.
pub fn file_path(id: i64, name: &str) -> String {
    format!("{FILES_DIR}{id}-{}", safe_name(name))
}

/// True for a path `file_path` could have written: under `files/`, one
/// component of safe characters, never `.` or `..` (checked on every path a
/// manifest names before anything is written).
pub(super) fn is_safe_path(path: &str) -> bool {
    let Some(name) = path.strip_prefix(FILES_DIR) else {
        return false;
    };
    !name.is_empty()
        && name.len() <= 21 + MAX_SAFE_NAME
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// One books part, serialized.
pub(super) struct Part {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub records: u64,
}

fn json_lines<T: Serialize>(records: &[T]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for record in records {
        serde_json::to_writer(&mut out, record)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The four books parts, in archive order.
pub(super) fn book_parts(snapshot: &Snapshot) -> anyhow::Result<Vec<Part>> {
    Ok(vec![
        Part {
            name: ACCOUNTS,
            bytes: json_lines(&snapshot.accounts)?,
            records: snapshot.accounts.len() as u64,
        },
        Part {
            name: ENTRIES,
            bytes: json_lines(&snapshot.entries)?,
            records: snapshot.entries.len() as u64,
        },
        Part {
            name: AUDIT,
            bytes: json_lines(&snapshot.audit)?,
            records: snapshot.audit.len() as u64,
        },
        Part {
            name: JOURNAL,
            bytes: json_lines(&snapshot.journal)?,
            records: snapshot.journal.len() as u64,
        },
    ])
}

/// Who made an export, when, under which id.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub export_id: String,
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

/// The manifest of a snapshot whose attachments are `files` (with digests).
pub(super) fn manifest(
    snapshot: &Snapshot,
    parts: &[Part],
    files: Vec<FileRef>,
    origin: &Origin,
) -> Manifest {
    Manifest {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        export_id: origin.export_id.clone(),
        created_at: rfc3339(origin.created_at),
        created_by: origin.created_by.clone(),
        company: CompanyInfo::clone(&snapshot.company),
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
            files: files.len() as u64,
            file_bytes: files.iter().map(|f| f.bytes).sum(),
        },
        parts: parts
            .iter()
            .map(|p| PartInfo {
                name: p.name.into(),
                records: p.records,
                bytes: p.bytes.len() as u64,
                sha256: sha256_hex(&p.bytes),
            })
            .collect(),
        files,
    }
}

fn header(size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header
}

/// Hashes and counts what passes through.
struct Hashing<R> {
    inner: R,
    digest: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Opens an attachment's plaintext for the archive.
pub(super) type OpenFile<'a> = dyn FnMut(&FileRef) -> io::Result<Box<dyn Read>> + 'a;

/// Writes the archive to `out`: the manifest, the books parts, then every
/// attachment the manifest lists, read from `open` as it is written. An
/// attachment whose size or SHA-256 is not the manifest's fails the write
/// (the archive is then incomplete and must be discarded).
pub(super) fn write_archive<W: Write>(
    out: W,
    manifest: &Manifest,
    parts: &[Part],
    open: &mut OpenFile<'_>,
) -> anyhow::Result<W> {
    let mtime = OffsetDateTime::parse(
        &manifest.created_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map_or(0, |t| u64::try_from(t.unix_timestamp()).unwrap_or(0));
    let mut manifest_json = serde_json::to_vec_pretty(manifest)?;
    manifest_json.push(b'\n');
    let mut tar = tar::Builder::new(out);
    tar.append_data(
        &mut header(manifest_json.len() as u64, mtime),
        MANIFEST,
        manifest_json.as_slice(),
    )?;
    for part in parts {
        tar.append_data(
            &mut header(part.bytes.len() as u64, mtime),
            part.name,
            part.bytes.as_slice(),
        )?;
    }
    for file in &manifest.files {
        let mut content = Hashing {
            inner: open(file)?.take(file.bytes + 1),
            digest: Sha256::new(),
            bytes: 0,
        };
        tar.append_data(&mut header(file.bytes, mtime), &file.path, &mut content)?;
        let sha256 = hex::encode(content.digest.finalize());
        if content.bytes != file.bytes || sha256 != file.sha256 {
            anyhow::bail!(
                "attachment {} changed while it was exported ({} bytes, the first read found {})",
                file.id,
                content.bytes,
                file.bytes
            );
        }
    }
    Ok(tar.into_inner()?)
}

/// Packs a snapshot without attachments as the plaintext archive (in
/// memory); returns its manifest too.
pub fn package(
    snapshot: &Snapshot,
    export_id: &str,
    created_at: OffsetDateTime,
    created_by: &str,
) -> anyhow::Result<(Manifest, Vec<u8>)> {
    package_with_files(
        snapshot,
        export_id,
        created_at,
        created_by,
        &BTreeMap::new(),
    )
}

/// Packs a snapshot as the plaintext archive in memory, with each
/// attachment's content given by id (tests and small tools; the server
/// streams, see `stream.rs`).
pub fn package_with_files(
    snapshot: &Snapshot,
    export_id: &str,
    created_at: OffsetDateTime,
    created_by: &str,
    contents: &BTreeMap<i64, Vec<u8>>,
) -> anyhow::Result<(Manifest, Vec<u8>)> {
    let mut refs = Vec::new();
    for file in &snapshot.files {
        let bytes = contents
            .get(&file.id)
            .ok_or_else(|| anyhow::anyhow!("no content for attachment {}", file.id))?;
        anyhow::ensure!(
            bytes.len() as u64 == file.size,
            "attachment {} has {} bytes, its record says {}",
            file.id,
            bytes.len(),
            file.size
        );
        refs.push(file.file_ref(sha256_hex(bytes)));
    }
    let parts = book_parts(snapshot)?;
    let origin = Origin {
        export_id: export_id.into(),
        created_at,
        created_by: created_by.into(),
    };
    let manifest = manifest(snapshot, &parts, refs, &origin);
    let by_path: BTreeMap<String, &[u8]> = snapshot
        .files
        .iter()
        .filter_map(|f| {
            let bytes = contents.get(&f.id)?;
            Some((file_path(f.id, &f.name), bytes.as_slice()))
        })
        .collect();
    let mut open = |file: &FileRef| -> io::Result<Box<dyn Read>> {
        let bytes = by_path
            .get(&file.path)
            .ok_or_else(|| io::Error::other(format!("no content for {}", file.path)))?;
        Ok(Box::new(io::Cursor::new(bytes.to_vec())))
    };
    let plain = write_archive(Vec::new(), &manifest, &parts, &mut open)?;
    Ok((manifest, plain))
}
