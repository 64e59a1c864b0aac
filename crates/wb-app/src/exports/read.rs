//! Reading an export: unpack and verify, streaming. The manifest and the
//! books parts are held in memory (as the server holds them when writing);
//! each attachment is hashed as it passes to a [`FileSink`] (memory, a
//! directory, or nowhere), so an export of any size is verified in bounded
//! memory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use wb_crypto::sha256_hex;

use super::archive::is_safe_path;
use super::{
    Counts, ExportAccount, ExportAuditEvent, ExportContents, ExportEntry, FileRef, Manifest,
    ReadError, ACCOUNTS, AUDIT, ENTRIES, FILES_DIR, FORMAT, JOURNAL, MANIFEST, PARTS,
    READABLE_VERSIONS,
};
use crate::backup::shipper::SegmentRecord;

/// Bytes read at once from an attachment entry.
const BUFFER: usize = 64 * 1024;

fn integrity(what: impl Into<String>) -> ReadError {
    ReadError::Integrity(what.into())
}

/// Where a reader puts each attachment's bytes as it reads them. `begin` is
/// called only for a file the manifest lists (its path checked safe), and
/// `end` always follows: `verified` false when the file turned out not to
/// match the manifest (or reading failed), and the sink should then drop
/// what it was given.
pub trait FileSink {
    fn begin(&mut self, file: &FileRef) -> io::Result<()>;
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    fn end(&mut self, file: &FileRef, verified: bool) -> io::Result<()>;
}

/// Keeps every verified attachment in memory (path → bytes).
#[derive(Debug, Default)]
pub struct KeepFiles {
    pub files: BTreeMap<String, Vec<u8>>,
    current: Vec<u8>,
}

impl FileSink for KeepFiles {
    fn begin(&mut self, _: &FileRef) -> io::Result<()> {
        self.current = Vec::new();
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.current.extend_from_slice(bytes);
        Ok(())
    }

    fn end(&mut self, file: &FileRef, verified: bool) -> io::Result<()> {
        let bytes = std::mem::take(&mut self.current);
        if verified {
            self.files.insert(file.path.clone(), bytes);
        }
        Ok(())
    }
}

/// Verifies attachments without keeping them.
#[derive(Debug, Default)]
pub struct DiscardFiles;

impl FileSink for DiscardFiles {
    fn begin(&mut self, _: &FileRef) -> io::Result<()> {
        Ok(())
    }

    fn write(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn end(&mut self, _: &FileRef, _: bool) -> io::Result<()> {
        Ok(())
    }
}

/// A verified export's manifest and books (its attachments went to the sink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub manifest: Manifest,
    pub accounts: Vec<ExportAccount>,
    pub entries: Vec<ExportEntry>,
    pub audit: Vec<ExportAuditEvent>,
    pub journal: Vec<SegmentRecord>,
    /// `manifest.json` and the books parts as stored (name → bytes).
    pub parts: BTreeMap<String, Vec<u8>>,
}

impl Verified {
    /// With the attachments a [`KeepFiles`] sink kept.
    pub fn into_contents(self, kept: KeepFiles) -> ExportContents {
        let mut files = self.parts;
        files.extend(kept.files);
        ExportContents {
            manifest: self.manifest,
            accounts: self.accounts,
            entries: self.entries,
            audit: self.audit,
            journal: self.journal,
            files,
        }
    }
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

/// Unpacks and verifies a decrypted export held in memory, keeping every
/// file in memory.
pub fn read(plain: &[u8]) -> Result<ExportContents, ReadError> {
    let mut kept = KeepFiles::default();
    let verified = read_from(plain, &mut kept)?;
    Ok(verified.into_contents(kept))
}

/// Remembers the first error of the reader below the archive (a chunk of
/// the age file that does not authenticate, a cut file, a disk error), so
/// that it is reported as such rather than as a malformed archive.
struct Watch<R> {
    inner: R,
    failed: Option<String>,
}

impl<R: Read> Read for Watch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if self.failed.is_none() {
                self.failed = Some(e.to_string());
            }
        })
    }
}

/// What has been read so far.
#[derive(Default)]
struct Progress {
    manifest: Option<Manifest>,
    parts: BTreeMap<String, Vec<u8>>,
    books: Option<Books>,
    seen: BTreeSet<String>,
}

#[derive(Clone)]
struct Books {
    accounts: Vec<ExportAccount>,
    entries: Vec<ExportEntry>,
    audit: Vec<ExportAuditEvent>,
    journal: Vec<SegmentRecord>,
}

/// Unpacks and verifies a decrypted export as it is read from `input`:
/// the manifest (it must precede the attachments), every books part's size
/// and SHA-256, record counts, both hash chains (all before the first
/// attachment), then each attachment's size and SHA-256 as it passes to
/// `sink`, and finally that no listed attachment is missing. Whatever
/// follows the archive is read to the end, so a damaged age file is always
/// noticed.
pub fn read_from<R: Read>(input: R, sink: &mut dyn FileSink) -> Result<Verified, ReadError> {
    let mut archive = tar::Archive::new(Watch {
        inner: input,
        failed: None,
    });
    let mut progress = Progress::default();
    let walked = walk(&mut archive, &mut progress, sink);
    let mut rest = archive.into_inner();
    let drained = match walked {
        Ok(()) => io::copy(&mut rest, &mut io::sink()).map(|_| ()),
        Err(_) => Ok(()),
    };
    if let Some(why) = rest.failed {
        return Err(ReadError::Decrypt(format!(
            "the file is damaged or truncated: {why}"
        )));
    }
    walked?;
    drained.map_err(|e| ReadError::Decrypt(format!("the file is damaged or truncated: {e}")))?;
    let manifest = progress
        .manifest
        .ok_or_else(|| ReadError::Format("no manifest.json".into()))?;
    let books = match progress.books {
        Some(books) => books,
        None => verify_books(&manifest, &progress.parts)?,
    };
    if let Some(missing) = manifest
        .files
        .iter()
        .find(|f| !progress.seen.contains(&f.path))
    {
        return Err(integrity(format!("{} is missing", missing.path)));
    }
    Ok(Verified {
        manifest,
        accounts: books.accounts,
        entries: books.entries,
        audit: books.audit,
        journal: books.journal,
        parts: progress.parts,
    })
}

fn walk<R: Read>(
    archive: &mut tar::Archive<R>,
    progress: &mut Progress,
    sink: &mut dyn FileSink,
) -> Result<(), ReadError> {
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
        if !matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            return Err(ReadError::Format(format!(
                "unexpected entry {name:?} in the archive (not a regular file)"
            )));
        }
        if name == MANIFEST || PARTS.contains(&name.as_str()) {
            if progress.parts.contains_key(&name) {
                return Err(integrity(format!("{name} appears twice")));
            }
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| ReadError::Format(format!("{name}: {e}")))?;
            if name == MANIFEST {
                progress.manifest = Some(parse_manifest(&bytes)?);
            }
            progress.parts.insert(name, bytes);
        } else if name.starts_with(FILES_DIR) {
            let manifest = progress
                .manifest
                .as_ref()
                .ok_or_else(|| ReadError::Format(format!("{name} comes before manifest.json")))?;
            if progress.books.is_none() {
                progress.books = Some(verify_books(manifest, &progress.parts)?);
            }
            let file = manifest
                .files
                .iter()
                .find(|f| f.path == name)
                .ok_or_else(|| {
                    integrity(format!("{name} is in the archive but not in the manifest"))
                })?;
            if !progress.seen.insert(name.clone()) {
                return Err(integrity(format!("{name} appears twice")));
            }
            if entry.size() != file.bytes {
                return Err(integrity(format!(
                    "{name} has {} bytes, the manifest says {}",
                    entry.size(),
                    file.bytes
                )));
            }
            sink.begin(file)
                .map_err(|e| ReadError::Output(format!("{name}: {e}")))?;
            let copied = copy_hashing(&mut entry, &name, sink);
            let verified = copied.as_ref().is_ok_and(|sha256| *sha256 == file.sha256);
            let ended = sink.end(file, verified);
            copied?;
            if !verified {
                return Err(integrity(format!(
                    "{name} does not match its SHA-256 in the manifest"
                )));
            }
            ended.map_err(|e| ReadError::Output(format!("{name}: {e}")))?;
        } else {
            return Err(ReadError::Format(format!(
                "unexpected file {name:?} in the archive"
            )));
        }
    }
    Ok(())
}

/// Copies an entry to the sink; returns the hex SHA-256 of what passed.
fn copy_hashing(
    entry: &mut impl Read,
    name: &str,
    sink: &mut dyn FileSink,
) -> Result<String, ReadError> {
    let mut digest = Sha256::new();
    let mut buffer = vec![0; BUFFER];
    loop {
        let n = entry
            .read(&mut buffer)
            .map_err(|e| ReadError::Format(format!("{name}: {e}")))?;
        if n == 0 {
            return Ok(hex::encode(digest.finalize()));
        }
        digest.update(&buffer[..n]);
        sink.write(&buffer[..n])
            .map_err(|e| ReadError::Output(format!("{name}: {e}")))?;
    }
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ReadError> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| ReadError::Format(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(ReadError::Format(format!(
            "manifest format is {:?}, not {FORMAT:?}",
            manifest.format
        )));
    }
    if !READABLE_VERSIONS.contains(&manifest.version) {
        return Err(ReadError::Format(format!(
            "format version {} is not supported (this reader knows versions {READABLE_VERSIONS:?})",
            manifest.version
        )));
    }
    if manifest.version == 1 && !manifest.files.is_empty() {
        return Err(ReadError::Format(
            "a version 1 export lists no attachments".into(),
        ));
    }
    let mut paths = BTreeSet::new();
    for file in &manifest.files {
        if !is_safe_path(&file.path) {
            return Err(ReadError::Format(format!(
                "the manifest names an unsafe attachment path {:?}",
                file.path
            )));
        }
        if !paths.insert(file.path.as_str()) {
            return Err(integrity(format!("the manifest lists {} twice", file.path)));
        }
    }
    Ok(manifest)
}

/// The books parts against the manifest: sizes, digests, counts, chains.
fn verify_books(
    manifest: &Manifest,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Books, ReadError> {
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
        files: manifest.files.len() as u64,
        file_bytes: manifest.files.iter().map(|f| f.bytes).sum(),
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
    // A trail purged under the retention rules starts later: its own
    // `data.purge` event must account for the start.
    let purged_start: Vec<wb_core::audit::Checkpoint> = match chained.first() {
        Some(first) if first.seq > 1 => {
            if !crate::audit_verify::purge_accounts_for(&chained, first.seq - 1) {
                return Err(integrity(format!(
                    "audit chain: it starts at event {} and no purge in it accounts for that",
                    first.seq
                )));
            }
            vec![wb_core::audit::Checkpoint {
                source: String::new(),
                seq: first.seq - 1,
                hash: first.prev_hash.clone(),
                at: String::new(),
                node: String::new(),
                prev: wb_core::audit::GENESIS.to_string(),
                signature: Vec::new(),
            }]
        }
        _ => Vec::new(),
    };
    let verified = wb_core::audit::verify(&chained, &purged_start, |_| true)
        .map_err(|e| integrity(format!("audit chain: {e}")))?;
    if verified.last_seq != manifest.audit_seq {
        return Err(integrity(format!(
            "the audit chain ends at {}, the manifest says {}",
            verified.last_seq, manifest.audit_seq
        )));
    }
    verify_journal(&journal, manifest.journal_seq)?;
    Ok(Books {
        accounts,
        entries,
        audit,
        journal,
    })
}

/// The journal runs from record 1 to `last`, each record linked to the one
/// before and hashing to its stored hash (as restore checks segments).
fn verify_journal(journal: &[SegmentRecord], last: i64) -> Result<(), ReadError> {
    let mut prev = wb_core::audit::GENESIS.to_string();
    let mut start = 1;
    // After a purge the journal starts at its anchor, which names the
    // record it follows (its signature is checked where the deployment's
    // key is known: restores and `backup verify`).
    if let Some(first) = journal.first() {
        if let Some(anchor) = wb_store::purge::Anchor::of(&first.kind, &first.payload) {
            if anchor.through_seq + 1 != first.seq || anchor.through_hash != first.prev_hash {
                return Err(integrity("journal chain: the purge anchor does not link"));
            }
            start = first.seq;
            prev.clone_from(&first.prev_hash);
        }
    }
    for (i, record) in journal.iter().enumerate() {
        let expected = start + i as i64;
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
