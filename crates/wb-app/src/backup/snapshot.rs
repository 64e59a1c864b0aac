//! Snapshots: a company's change journal from its first record up to a
//! sequence, consolidated into a few large sealed objects. A ledger's entries
//! are never deleted, so its state at a point is its history up to it; what
//! a snapshot bounds is the number of objects a restore reads and how far
//! retention may delete segments (those it covers). A restore loads the
//! newest usable snapshot in bulk, then the segments after it.
//!
//! Layout under `companies/{id}/snapshots/{seq:020}/`: `part-{n:06}` objects
//! of journal records as JSON lines (the segment line format), each at most
//! `PART_BYTES` before sealing, then `manifest`, written last (a snapshot without one does not
//! exist). Every object is sealed with the company's DEK; the associated data
//! binds it to the company, the sequence and, for parts, their position, and
//! the manifest lists each part's SHA-256, so a swapped, altered, missing or
//! truncated part fails the restore with its name.

use anyhow::{anyhow, bail, Context};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use wb_crypto::CompanyKeys;

use super::replay::Replayer;
use super::segments::verify;
use crate::backup::shipper::SegmentRecord;
use crate::dto::rfc3339;
use crate::platform::Platform;

/// Plaintext bytes per part before it is sealed and uploaded.
pub const PART_BYTES: usize = 8 << 20;
/// Journal records read from the company store at a time.
const READ_PAGE: u32 = 10_000;

pub fn snapshots_prefix(company_id: &str) -> ObjectPath {
    ObjectPath::from(format!("companies/{company_id}/snapshots"))
}

fn snapshot_dir(company_id: &str, seq: i64) -> String {
    format!("companies/{company_id}/snapshots/{seq:020}")
}

fn manifest_path(company_id: &str, seq: i64) -> ObjectPath {
    ObjectPath::from(format!("{}/manifest", snapshot_dir(company_id, seq)))
}

/// Parts live under a directory of their own per attempt, so two nodes
/// snapshotting the same point never overwrite each other's parts: the
/// manifest written last names the attempt whose parts it lists.
fn part_path(company_id: &str, seq: i64, attempt: &str, n: usize) -> ObjectPath {
    ObjectPath::from(format!(
        "{}/{attempt}/part-{n:06}",
        snapshot_dir(company_id, seq)
    ))
}

/// The control-store cursors holding a company's last snapshot.
pub fn seq_cursor(company_id: &str) -> String {
    format!("snapshot:company:{company_id}")
}

pub fn time_cursor(company_id: &str) -> String {
    format!("snapshot-at:company:{company_id}")
}

/// What a snapshot holds; sealed as its `manifest`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub company_id: String,
    /// The last journal record the snapshot covers.
    pub seq: i64,
    /// That record's chain hash: the next segment's first record links to it.
    pub hash: String,
    /// That record's commit time.
    pub at: String,
    pub taken_at: String,
    /// The attempt whose parts this manifest lists.
    pub attempt: String,
    /// SHA-256 of each sealed part, in order.
    pub parts: Vec<String>,
    /// Sealed bytes of all parts.
    pub bytes: u64,
}

impl Manifest {
    pub fn at(&self) -> anyhow::Result<OffsetDateTime> {
        OffsetDateTime::parse(&self.at, &Rfc3339)
            .with_context(|| format!("snapshot {}: bad time {:?}", self.seq, self.at))
    }
}

/// The sequences of a company's complete snapshots (those with a manifest), ascending.
pub async fn list(platform: &Platform, company_id: &str) -> anyhow::Result<Vec<i64>> {
    let listing = platform
        .objects
        .list_with_delimiter(Some(&snapshots_prefix(company_id)))
        .await
        .with_context(|| format!("listing the snapshots of company {company_id}"))?;
    let mut seqs = Vec::new();
    for dir in listing.common_prefixes {
        let Some(seq) = dir.filename().and_then(|n| n.parse::<i64>().ok()) else {
            continue;
        };
        match platform.objects.head(&manifest_path(company_id, seq)).await {
            Ok(_) => seqs.push(seq),
            // Parts of an attempt that never finished: no snapshot.
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading the snapshots of company {company_id}"))
            }
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

pub async fn read_manifest(
    platform: &Platform,
    key: &CompanyKeys,
    company_id: &str,
    seq: i64,
) -> anyhow::Result<Manifest> {
    let path = manifest_path(company_id, seq);
    let sealed = get(platform, &path).await?;
    let plain = key
        .open(&sealed, &crate::keyring::snapshot_manifest_aad(company_id, seq))
        .map_err(|_| anyhow!("snapshot manifest {path} fails authentication (tampered, truncated, or not this company's)"))?;
    let manifest: Manifest = serde_json::from_slice(&plain)
        .with_context(|| format!("snapshot manifest {path} is malformed"))?;
    if manifest.format != 1 || manifest.company_id != company_id || manifest.seq != seq {
        bail!("snapshot manifest {path} describes another snapshot");
    }
    Ok(manifest)
}

async fn get(platform: &Platform, path: &ObjectPath) -> anyhow::Result<Vec<u8>> {
    platform
        .objects
        .get(path)
        .await
        .with_context(|| format!("reading {path}"))?
        .bytes()
        .await
        .map(|b| b.to_vec())
        .with_context(|| format!("reading {path}"))
}

/// Loads a snapshot's records into `replayer` (which must start empty),
/// checking every part and the chain from the first record to the manifest's.
pub(crate) async fn load(
    platform: &Platform,
    key: &CompanyKeys,
    manifest: &Manifest,
    replayer: &mut Replayer,
) -> anyhow::Result<()> {
    let company_id = &manifest.company_id;
    let mut expected = 1;
    let mut prev_hash = wb_core::audit::GENESIS.to_string();
    for (n, digest) in manifest.parts.iter().enumerate() {
        let path = part_path(company_id, manifest.seq, &manifest.attempt, n);
        let sealed = get(platform, &path).await.with_context(|| {
            format!(
                "snapshot {} of company {company_id} is incomplete",
                manifest.seq
            )
        })?;
        if hex::encode(Sha256::digest(&sealed)) != *digest {
            bail!("snapshot part {path} does not match its manifest (altered or replaced)");
        }
        let plain = key
            .open(
                &sealed,
                &crate::keyring::snapshot_part_aad(company_id, manifest.seq, n),
            )
            .map_err(|_| anyhow!("snapshot part {path} fails authentication"))?;
        for line in plain.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let record: SegmentRecord = serde_json::from_slice(line)
                .with_context(|| format!("snapshot part {path} holds a malformed line"))?;
            if expected == 1 && record.seq > 1 {
                // Taken after a purge: the chain starts at its signed anchor.
                crate::backup::purge_anchor::vouched(platform, company_id, &record)
                    .await
                    .with_context(|| format!("snapshot part {path}"))?;
                expected = record.seq;
                prev_hash.clone_from(&record.prev_hash);
            }
            verify(&record, expected, &prev_hash)
                .with_context(|| format!("snapshot part {path}"))?;
            expected += 1;
            prev_hash = record.hash.clone();
            replayer
                .push(&record)
                .await
                .with_context(|| format!("replaying journal record {}", record.seq))?;
        }
    }
    if expected - 1 != manifest.seq || prev_hash != manifest.hash {
        bail!(
            "snapshot {} of company {company_id} ends at record {}, not where its manifest says",
            manifest.seq,
            expected - 1
        );
    }
    Ok(())
}

/// Seals and uploads parts as they fill.
struct Parts<'a> {
    platform: &'a Platform,
    key: &'a CompanyKeys,
    company_id: &'a str,
    seq: i64,
    attempt: String,
    buffer: Vec<u8>,
    digests: Vec<String>,
    bytes: u64,
}

impl Parts<'_> {
    async fn push(&mut self, record: &SegmentRecord) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.buffer, record)?;
        self.buffer.push(b'\n');
        if self.buffer.len() >= PART_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let n = self.digests.len();
        let sealed = self
            .key
            .seal(
                &self.buffer,
                &crate::keyring::snapshot_part_aad(self.company_id, self.seq, n),
            )
            .map_err(|e| anyhow!("sealing a snapshot part: {e}"))?;
        self.buffer.clear();
        self.digests.push(hex::encode(Sha256::digest(&sealed)));
        self.bytes += sealed.len() as u64;
        let path = part_path(self.company_id, self.seq, &self.attempt, n);
        self.platform
            .objects
            .put(&path, PutPayload::from(sealed))
            .await
            .with_context(|| format!("uploading {path}"))?;
        Ok(())
    }
}

/// Snapshots a company's journal as it stands now; None when it is empty or
/// its newest snapshot already covers it. The company's writers go on.
pub async fn take(platform: &Platform, company_id: &str) -> anyhow::Result<Option<Manifest>> {
    let key = platform
        .company_key(company_id)
        .await
        .map_err(|e| anyhow!("the key of company {company_id}: {e}"))?;
    let tenant = platform
        .tenant(company_id)
        .await
        .map_err(|e| anyhow!("opening company {company_id}: {e}"))?;
    // Never ahead of what was shipped: a snapshot must extend the shipped
    // chain, not a local tail the object store has not seen.
    let shipped = platform
        .control
        .cursor(&crate::backup::shipper::cursor_name(company_id))
        .await?;
    let head = tenant.stats().await?.journal_seq.min(shipped);
    if head == 0 || list(platform, company_id).await?.last() == Some(&head) {
        return Ok(None);
    }
    let mut parts = Parts {
        platform,
        key: &key,
        company_id,
        seq: head,
        attempt: uuid::Uuid::now_v7().to_string(),
        buffer: Vec::with_capacity(PART_BYTES + (1 << 20)),
        digests: Vec::new(),
        bytes: 0,
    };
    let mut expected = 1;
    let mut prev_hash = wb_core::audit::GENESIS.to_string();
    // After a purge the company's journal starts at its anchor.
    if let Some(first) = tenant.journal(0, 1).await?.first() {
        if first.seq > 1 {
            let first = SegmentRecord::from(first);
            crate::backup::purge_anchor::vouched(platform, company_id, &first).await?;
            expected = first.seq;
            prev_hash = first.prev_hash;
        }
    }
    if expected > head {
        // The purge's anchor is not shipped yet: nothing to snapshot.
        return Ok(None);
    }
    let mut last_at = String::new();
    while expected <= head {
        let limit = READ_PAGE.min(u32::try_from(head - expected + 1).unwrap_or(READ_PAGE));
        let page = tenant.journal(expected - 1, limit).await?;
        if page.is_empty() {
            bail!(
                "company {company_id}'s journal ends at record {}, before {head}",
                expected - 1
            );
        }
        for record in &page {
            let record = SegmentRecord::from(record);
            verify(&record, expected, &prev_hash)
                .with_context(|| format!("company {company_id}'s own journal"))?;
            expected += 1;
            prev_hash = record.hash.clone();
            parts.push(&record).await?;
            last_at = record.at;
        }
    }
    parts.flush().await?;
    let manifest = Manifest {
        format: 1,
        company_id: company_id.to_string(),
        seq: head,
        hash: prev_hash,
        at: last_at,
        taken_at: rfc3339(platform.now()),
        attempt: parts.attempt,
        parts: parts.digests,
        bytes: parts.bytes,
    };
    let sealed = key
        .seal(
            &serde_json::to_vec(&manifest)?,
            &crate::keyring::snapshot_manifest_aad(company_id, head),
        )
        .map_err(|e| anyhow!("sealing a snapshot manifest: {e}"))?;
    let path = manifest_path(company_id, head);
    platform
        .objects
        .put(&path, PutPayload::from(sealed))
        .await
        .with_context(|| format!("uploading {path}"))?;
    platform
        .control
        .set_cursor(&seq_cursor(company_id), head)
        .await?;
    platform
        .control
        .set_cursor(&time_cursor(company_id), platform.now().unix_timestamp())
        .await?;
    Ok(Some(manifest))
}

/// Deletes a snapshot: its manifest first, so it stops existing before its
/// parts go.
pub async fn delete(platform: &Platform, company_id: &str, seq: i64) -> anyhow::Result<()> {
    use futures_util::TryStreamExt;
    let manifest = manifest_path(company_id, seq);
    match platform.objects.delete(&manifest).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e).with_context(|| format!("deleting {manifest}")),
    }
    let prefix = ObjectPath::from(snapshot_dir(company_id, seq));
    let parts: Vec<_> = platform
        .objects
        .list(Some(&prefix))
        .try_collect()
        .await
        .with_context(|| format!("listing {prefix}"))?;
    for part in parts {
        platform
            .objects
            .delete(&part.location)
            .await
            .with_context(|| format!("deleting {}", part.location))?;
    }
    Ok(())
}
