//! Backup status and point-in-time restore from shipped change-journal segments
//! (see `jobs/shipper.rs` for the segment format).
//!
//! A restore creates a NEW company: its store is created but the company is
//! recorded in the control plane only after every record up to the target has
//! been decrypted, chain-verified and replayed; on any failure the store is
//! discarded, so no half-restored company remains.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use wb_core::{EntryDraft, NewAccount, PostingDraft};
use wb_crypto::DataKey;
use wb_store::{Actor, Applied, Change, CompanyRecord, TenantStore, WriteContext};

use crate::jobs::shipper::{cursor_name, journal_prefix, segment_aad, SegmentRecord};
use crate::platform::Platform;

/// One company's shipping position.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupStatus {
    pub company_id: String,
    pub name: String,
    /// The last change-journal sequence committed in the company's store.
    pub journal_seq: i64,
    /// The last sequence shipped to object storage.
    pub shipped_seq: i64,
    /// Records not yet shipped.
    pub lag_records: i64,
    /// Age of the oldest record not yet shipped (0 when caught up): how much
    /// time of changes would be lost if this node's disk were lost now.
    pub lag_seconds: f64,
}

/// The shipping position of every company (opens each company's store).
pub async fn status(platform: &Platform) -> anyhow::Result<Vec<BackupStatus>> {
    let mut out = Vec::new();
    for company in platform.control.companies().await? {
        let tenant = platform
            .tenant(&company.id)
            .await
            .map_err(|e| anyhow!("opening company {}: {e}", company.id))?;
        let journal_seq = tenant.stats().await?.journal_seq;
        let shipped_seq = platform.control.cursor(&cursor_name(&company.id)).await?;
        let lag_seconds = match tenant.journal(shipped_seq, 1).await?.first() {
            Some(oldest) => {
                let age = (platform.now() - oldest.at).as_seconds_f64().max(0.0);
                (age * 1000.0).round() / 1000.0
            }
            None => 0.0,
        };
        out.push(BackupStatus {
            company_id: company.id.clone(),
            name: company.name.clone(),
            journal_seq,
            shipped_seq,
            lag_records: (journal_seq - shipped_seq).max(0),
            lag_seconds,
        });
    }
    Ok(out)
}

/// How far to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Everything shipped.
    Latest,
    /// Up to and including this journal sequence.
    Seq(i64),
    /// Every record committed at or before this time.
    Time(OffsetDateTime),
}

#[derive(Debug, Clone)]
pub struct Restored {
    pub company: CompanyRecord,
    /// The last source journal sequence replayed (0 when none).
    pub last_seq: i64,
    pub records: usize,
}

/// A shipped segment, from its object name.
#[derive(Debug, Clone)]
struct Segment {
    path: ObjectPath,
    first: i64,
    last: i64,
}

fn parse_segment_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(".seg")?;
    let (first, last) = stem.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

async fn segments(platform: &Platform, company_id: &str) -> anyhow::Result<Vec<Segment>> {
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

async fn read_segment(
    platform: &Platform,
    key: &DataKey,
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
            &segment_aad(company_id, segment.first, segment.last),
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

/// Restores a company from its shipped journal into a new company that has the
/// source's members. Nothing is left behind when this fails.
pub async fn restore(
    platform: &Platform,
    source_id: &str,
    target: RestoreTarget,
) -> anyhow::Result<Restored> {
    let staged = stage_restore(platform, source_id, target, "restored").await?;
    let members: Vec<_> = match platform.control.members_of(source_id).await {
        Ok(members) => members.into_iter().map(|m| (m.user_id, m.role)).collect(),
        Err(e) => {
            staged.discard(platform).await;
            return Err(e.into());
        }
    };
    let StagedRestore {
        company,
        store,
        last_seq,
        records,
    } = staged;
    drop(store);
    platform
        .record_staged_company(
            &company,
            &members,
            Actor::system("restore"),
            format!("restored from company:{source_id} up to journal record {last_seq}"),
        )
        .await
        .map_err(|e| anyhow!("recording the restored company: {e}"))?;
    Ok(Restored {
        company,
        last_seq,
        records,
    })
}

/// A company's shipped journal replayed into a staged store: the company is
/// not in the control plane. `restore` records it; backup verification
/// compares it with the source and discards it.
pub(crate) struct StagedRestore {
    pub(crate) company: CompanyRecord,
    pub(crate) store: Arc<dyn TenantStore>,
    /// The last source journal sequence replayed (0 when none).
    pub(crate) last_seq: i64,
    pub(crate) records: usize,
}

impl StagedRestore {
    /// Closes and deletes the staged store; nothing of it remains.
    pub(crate) async fn discard(self, platform: &Platform) {
        drop(self.store);
        platform.tenants.discard(&self.company.id).await;
    }
}

/// Replays `source_id`'s shipped journal up to `target` into a new staged
/// company named after the source (`"{name} ({label} {time})"`). On failure
/// the staged store is discarded.
pub(crate) async fn stage_restore(
    platform: &Platform,
    source_id: &str,
    target: RestoreTarget,
    label: &str,
) -> anyhow::Result<StagedRestore> {
    let source = platform
        .control
        .company(source_id)
        .await?
        .ok_or_else(|| anyhow!("no company {source_id}"))?;
    let key = platform
        .company_key(source_id)
        .await
        .map_err(|e| anyhow!("the key of company {source_id}: {e}"))?;
    let segments = segments(platform, source_id).await?;
    // The shipper's cursor says how far the object store must reach: a missing
    // last segment is a gap too.
    let shipped = platform.control.cursor(&cursor_name(source_id)).await?;
    if let RestoreTarget::Seq(n) = target {
        if n < 0 {
            bail!("--to-seq must be at least 0");
        }
    }

    let now = platform.now();
    let stamp = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default();
    let suffix = format!(" ({label} {stamp})");
    let base: String = source
        .name
        .chars()
        .take(200 - suffix.chars().count())
        .collect();
    let (company, store) = platform
        .stage_company(&format!("{base}{suffix}"))
        .await
        .map_err(|e| anyhow!("creating the restored company: {e}"))?;

    match replay_segments(
        platform, &key, source_id, &segments, target, shipped, &store,
    )
    .await
    {
        Ok((last_seq, records, _)) => Ok(StagedRestore {
            company,
            store,
            last_seq,
            records,
        }),
        Err(e) => {
            drop(store);
            platform.tenants.discard(&company.id).await;
            Err(e)
        }
    }
}

async fn replay_segments(
    platform: &Platform,
    key: &DataKey,
    source_id: &str,
    segments: &[Segment],
    target: RestoreTarget,
    shipped: i64,
    store: &Arc<dyn TenantStore>,
) -> anyhow::Result<(i64, usize, Option<OffsetDateTime>)> {
    let mut expected = 1;
    let mut prev_hash = wb_core::audit::GENESIS.to_string();
    let mut records = 0;
    let mut last_at = None;
    let mut batch = Vec::new();
    // True once the target was reached (rather than the segments running out).
    let mut stopped = false;
    let reached = |seq: i64, at: OffsetDateTime| match target {
        RestoreTarget::Latest => false,
        RestoreTarget::Seq(n) => seq > n,
        RestoreTarget::Time(t) => at > t,
    };
    'segments: for segment in segments {
        if let RestoreTarget::Seq(n) = target {
            if expected > n {
                stopped = true;
                break;
            }
        }
        if segment.last < expected {
            continue; // covered by a longer segment (re-shipped after a crash)
        }
        if segment.first > expected {
            bail!(
                "journal segment missing: records {expected}..{} of company {source_id} are not in the object store",
                segment.first - 1
            );
        }
        for record in read_segment(platform, key, source_id, segment).await? {
            if record.seq < expected {
                continue;
            }
            let at = OffsetDateTime::parse(&record.at, &Rfc3339).with_context(|| {
                format!("journal record {}: bad time {:?}", record.seq, record.at)
            })?;
            if reached(record.seq, at) {
                stopped = true;
                break 'segments;
            }
            verify(&record, expected, &prev_hash)?;
            prev_hash = record.hash.clone();
            expected += 1;
            records += 1;
            last_at = Some(at);
            let (change, ctx, expect) = change_of(&record, at)
                .with_context(|| format!("replaying journal record {}", record.seq))?;
            batch.push((record.seq, change, ctx, expect));
            if batch.len() >= REPLAY_BATCH {
                apply_batch(store, std::mem::take(&mut batch)).await?;
            }
        }
    }
    apply_batch(store, batch).await?;
    let last = expected - 1;
    if let RestoreTarget::Seq(n) = target {
        stopped |= last >= n;
    }
    if !stopped && last < shipped {
        bail!(
            "journal segment missing: records {}..{shipped} of company {source_id} were shipped but are not in the object store",
            last + 1
        );
    }
    if let RestoreTarget::Seq(n) = target {
        if last < n {
            bail!("company {source_id}'s journal is shipped only up to record {last}, not {n}");
        }
    }
    Ok((last, records, last_at))
}

/// What replaying a company's shipped journal reached.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub last_seq: i64,
    pub records: usize,
    /// Commit time of the last record replayed (None when nothing was shipped).
    pub last_at: Option<OffsetDateTime>,
}

/// Replays every shipped record of `company_id` into `store` (new and empty),
/// checking authentication, order and the hash chain; `shipped` is how far the
/// object store must reach at least. Disaster recovery restores each company
/// under its own id with this.
pub async fn replay_shipped(
    platform: &Platform,
    key: &DataKey,
    company_id: &str,
    shipped: i64,
    store: &Arc<dyn TenantStore>,
) -> anyhow::Result<Replayed> {
    let segments = segments(platform, company_id).await?;
    let (last_seq, records, last_at) = replay_segments(
        platform,
        key,
        company_id,
        &segments,
        RestoreTarget::Latest,
        shipped,
        store,
    )
    .await?;
    Ok(Replayed {
        last_seq,
        records,
        last_at,
    })
}

fn verify(record: &SegmentRecord, expected: i64, prev_hash: &str) -> anyhow::Result<()> {
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

#[derive(Deserialize)]
struct AccountCreated {
    id: i64,
    code: String,
    name: String,
    #[serde(rename = "type")]
    account_type: String,
    parent: Option<String>,
    currency: Option<String>,
}

#[derive(Deserialize)]
struct EntriesPosted {
    entries: Vec<EntryRecord>,
}

#[derive(Deserialize)]
struct EntryReversed {
    reverses: i64,
    entry: EntryRecord,
}

#[derive(Deserialize)]
struct EntryRecord {
    id: i64,
    date: String,
    description: String,
    reference: Option<String>,
    created_by: String,
    postings: Vec<PostingRecord>,
}

#[derive(Deserialize)]
struct PostingRecord {
    account: String,
    amount: String,
    currency: String,
}

fn parse_date(text: &str) -> anyhow::Result<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format).with_context(|| format!("bad date {text:?}"))
}

fn author(created_by: &str) -> Actor {
    Actor {
        id: created_by.to_string(),
        auth: "restore".into(),
        client: None,
        request_id: None,
    }
}

/// What a replayed record must produce: the source's ids.
enum Expect {
    Account { code: String, id: i64 },
    Entries(Vec<i64>),
    Reversal { of: i64, id: i64 },
}

/// Journal records queued to the restored store at once: its writer commits
/// them in groups, in order.
const REPLAY_BATCH: usize = 1000;

async fn apply_batch(
    store: &Arc<dyn TenantStore>,
    batch: Vec<(i64, Change, WriteContext, Expect)>,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let (meta, changes): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|(seq, change, ctx, expect)| ((seq, expect), (change, ctx)))
        .unzip();
    let results = store.apply_in_order(changes).await;
    for ((seq, expect), result) in meta.into_iter().zip(results) {
        check(expect, result?).with_context(|| format!("replaying journal record {seq}"))?;
    }
    Ok(())
}

fn check(expect: Expect, applied: Applied) -> anyhow::Result<()> {
    match (expect, applied) {
        (Expect::Account { code, id }, Applied::Account(account)) => {
            if account.id != id {
                bail!(
                    "account {code} was restored with id {}, not {id}",
                    account.id
                );
            }
        }
        (Expect::Entries(ids), Applied::Posted(posted)) => {
            let got: Vec<i64> = posted.entries.iter().map(|e| e.id).collect();
            if got != ids {
                bail!("entries were restored with ids {got:?}, not {ids:?}");
            }
        }
        (Expect::Reversal { of, id }, Applied::Entry(entry)) => {
            if entry.id != id {
                bail!(
                    "the reversal of entry {of} was restored with id {}, not {id}",
                    entry.id
                );
            }
        }
        _ => bail!("the store answered a replayed record with the wrong kind of result"),
    }
    Ok(())
}

fn change_of(
    record: &SegmentRecord,
    at: OffsetDateTime,
) -> anyhow::Result<(Change, WriteContext, Expect)> {
    match record.kind.as_str() {
        "account_created" => {
            let a: AccountCreated = serde_json::from_str(&record.payload)?;
            let new = NewAccount::validate(
                &a.code,
                &a.name,
                &a.account_type,
                a.parent.as_deref(),
                a.currency.as_deref(),
            )?;
            let ctx = WriteContext {
                actor: Actor::system("restore"),
                at,
            };
            Ok((
                Change::CreateAccount(new),
                ctx,
                Expect::Account {
                    code: a.code,
                    id: a.id,
                },
            ))
        }
        "entries_posted" => {
            let p: EntriesPosted = serde_json::from_str(&record.payload)?;
            let actor = match p.entries.first() {
                Some(first) => author(&first.created_by),
                None => Actor::system("restore"),
            };
            let ids: Vec<i64> = p.entries.iter().map(|e| e.id).collect();
            let drafts = p
                .entries
                .into_iter()
                .map(|e| {
                    Ok(EntryDraft {
                        date: parse_date(&e.date)?,
                        description: e.description,
                        reference: e.reference,
                        postings: e
                            .postings
                            .into_iter()
                            .map(|p| PostingDraft {
                                account: p.account,
                                amount: p.amount,
                                currency: p.currency,
                            })
                            .collect(),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((
                Change::Post(drafts),
                WriteContext { actor, at },
                Expect::Entries(ids),
            ))
        }
        "entry_reversed" => {
            let r: EntryReversed = serde_json::from_str(&record.payload)?;
            let ctx = WriteContext {
                actor: author(&r.entry.created_by),
                at,
            };
            Ok((
                Change::Reverse {
                    entry_id: r.reverses,
                    date: parse_date(&r.entry.date)?,
                    description: Some(r.entry.description),
                },
                ctx,
                Expect::Reversal {
                    of: r.reverses,
                    id: r.entry.id,
                },
            ))
        }
        other => bail!("unknown journal record kind {other:?}; this build cannot replay it"),
    }
}
