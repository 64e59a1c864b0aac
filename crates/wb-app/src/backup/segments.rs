//! Shipped change-journal segments: listing, reading, authenticating and
//! chain-checking them (the format is in `jobs/shipper.rs`).

use anyhow::{anyhow, bail, Context};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use time::OffsetDateTime;
use wb_crypto::CompanyKeys;

use crate::backup::shipper::{journal_prefix, SegmentRecord};
use crate::platform::Platform;

/// A shipped segment, from its object name.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) path: ObjectPath,
    pub(crate) first: i64,
    pub(crate) last: i64,
}

pub(crate) fn parse_segment_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(".seg")?;
    let (first, last) = stem.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

pub(crate) async fn segments(
    platform: &Platform,
    company_id: &str,
) -> anyhow::Result<Vec<Segment>> {
    let listing = platform
        .objects
        .list_with_delimiter(Some(&journal_prefix(company_id)))
        .await
        .with_context(|| format!("listing the journal segments of company {company_id}"))?;
    let mut out: Vec<Segment> = listing
        .objects
        .into_iter()
        .filter_map(|meta| {
            let (first, last) = parse_segment_name(meta.location.filename()?)?;
            Some(Segment {
                path: meta.location,
                first,
                last,
            })
        })
        .collect();
    out.sort_by_key(|s| (s.first, std::cmp::Reverse(s.last)));
    Ok(out)
}

/// When each shipped segment of a company landed in the object store, by the
/// sequence of its last record (for measuring shipping lag).
pub async fn segment_landings(
    platform: &Platform,
    company_id: &str,
) -> anyhow::Result<std::collections::BTreeMap<i64, OffsetDateTime>> {
    let listing = platform
        .objects
        .list_with_delimiter(Some(&journal_prefix(company_id)))
        .await
        .with_context(|| format!("listing the journal segments of company {company_id}"))?;
    let mut out = std::collections::BTreeMap::new();
    for meta in listing.objects {
        let Some((_, last)) = meta.location.filename().and_then(parse_segment_name) else {
            continue;
        };
        let nanos = meta.last_modified.timestamp_nanos_opt().unwrap_or(0);
        let landed = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))?;
        // A range re-shipped after a crash keeps its first landing.
        out.entry(last)
            .and_modify(|t: &mut OffsetDateTime| *t = (*t).min(landed))
            .or_insert(landed);
    }
    Ok(out)
}

pub(crate) async fn read_segment(
    platform: &Platform,
    key: &CompanyKeys,
    company_id: &str,
    segment: &Segment,
) -> anyhow::Result<Vec<SegmentRecord>> {
    let bytes = platform
        .objects
        .get(&segment.path)
        .await
        .with_context(|| format!("reading journal segment {}", segment.path))?
        .bytes()
        .await
        .with_context(|| format!("reading journal segment {}", segment.path))?;
    let plain = key
        .open(
            &bytes,
            &crate::keyring::journal_segment_aad(company_id, segment.first, segment.last),
        )
        .map_err(|_| {
            anyhow!(
                "journal segment {} fails authentication (tampered, truncated, or not this company's)",
                segment.path
            )
        })?;
    let mut records = Vec::new();
    for (n, line) in plain.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let record: SegmentRecord = serde_json::from_slice(line).with_context(|| {
            format!(
                "journal segment {}: line {} is malformed",
                segment.path,
                n + 1
            )
        })?;
        records.push(record);
    }
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        bail!("journal segment {} is empty", segment.path);
    };
    if first.seq != segment.first || last.seq != segment.last {
        bail!(
            "journal segment {} holds records {}..{}, not the range its name says",
            segment.path,
            first.seq,
            last.seq
        );
    }
    Ok(records)
}

/// Checks that `record` is the one expected next in the chain.
pub(crate) fn verify(record: &SegmentRecord, expected: i64, prev_hash: &str) -> anyhow::Result<()> {
    if record.seq != expected {
        bail!(
            "journal chain broken: expected record {expected}, found {}",
            record.seq
        );
    }
    if record.prev_hash != prev_hash {
        bail!(
            "journal chain broken at record {}: it does not link to the previous record",
            record.seq
        );
    }
    let hash = wb_core::audit::link(
        prev_hash,
        record.seq,
        &[&record.at, &record.kind, &record.payload],
    );
    if hash != record.hash {
        bail!(
            "journal chain broken at record {}: its content does not match its hash",
            record.seq
        );
    }
    Ok(())
}
