//! Each company's own audit trail, shipped to object storage so disaster
//! recovery restores it: sealed segments like the journal's, at
//! `companies/{id}/audit/{first:020}-{last:020}.seg` (associated data
//! `workbooks-audit-segment/v1\n{company}\n{first}\n{last}`), cursor
//! `ship-audit:company:{id}`. Not on the 200 ms journal path: the trail is
//! also copied into the central collection within a second; this copy is for
//! losing the whole deployment, and ships every few seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wb_crypto::CompanyKeys;
use wb_store::{Applied, Change, StoredAuditEvent, TenantStore, WriteContext};

use super::segments::parse_segment_name;
use crate::platform::Platform;

pub const SHIP_EVERY: Duration = Duration::from_secs(5);
/// The job's name in logs and the `job-panicked` alert.
const JOB: &str = "audit-shipper";
/// Ask the store for events written on other nodes this often.
const RECHECK: Duration = Duration::from_secs(30);
const SEGMENT_EVENTS: u32 = 5_000;

pub fn cursor_name(company_id: &str) -> String {
    format!("ship-audit:company:{company_id}")
}

pub fn prefix(company_id: &str) -> ObjectPath {
    ObjectPath::from(format!("companies/{company_id}/audit"))
}

fn segment_path(company_id: &str, first: i64, last: i64) -> ObjectPath {
    ObjectPath::from(format!(
        "companies/{company_id}/audit/{first:020}-{last:020}.seg"
    ))
}

/// What the audit shipper remembers between rounds, per company.
#[derive(Default)]
pub struct AuditShipperState {
    shipped: HashMap<String, (i64, Instant)>,
}

/// Ships new audit events of every open company this node may ship.
pub async fn ship_once(
    platform: &Platform,
    state: &mut AuditShipperState,
) -> anyhow::Result<usize> {
    let mut total = 0;
    for tenant in platform.tenants.open_tenants() {
        let id = tenant.company_id().to_string();
        let work = ship_company(platform, state, &tenant);
        let shipped = match crate::runner::unit(platform, JOB, &id, Some(&id), work).await {
            Ok(shipped) => shipped,
            Err(panicked) => Err(panicked.into()),
        };
        match shipped {
            Ok(n) => total += n,
            Err(e) => {
                state.shipped.remove(&id);
                tracing::warn!(company = %id, error = %format!("{e:#}"), "shipping the audit trail failed");
            }
        }
    }
    Ok(total)
}

async fn ship_company(
    platform: &Platform,
    state: &mut AuditShipperState,
    tenant: &Arc<dyn TenantStore>,
) -> anyhow::Result<usize> {
    let id = tenant.company_id().to_string();
    if let Some((shipped, checked)) = state.shipped.get(&id) {
        if tenant.audit_head() <= *shipped && checked.elapsed() < RECHECK {
            return Ok(0);
        }
    }
    let lease = format!("ship-audit:{id}");
    if !crate::runner::hold_lease(&*platform.control, &platform.node_id, &lease).await {
        state.shipped.remove(&id);
        return Ok(0);
    }
    // A store open but not recorded (a restore in progress) has no key yet.
    if platform.control.company(&id).await?.is_none() {
        return Ok(0);
    }
    let cursor = cursor_name(&id);
    let mut after = platform.control.cursor(&cursor).await?;
    let mut key: Option<CompanyKeys> = None;
    let mut total = 0;
    loop {
        let events = tenant.audit_events(after, SEGMENT_EVENTS).await?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            break;
        };
        let (first, last) = (first.seq, last.seq);
        let key = match &key {
            Some(k) => k,
            None => {
                // A de-provisioned company's trail ships nothing more.
                let active = platform
                    .control
                    .company(&id)
                    .await?
                    .is_some_and(|c| c.status == wb_store::CompanyStatus::Active);
                if !active {
                    return Ok(total);
                }
                key.insert(platform.company_key(&id).await?)
            }
        };
        let mut plain = Vec::new();
        for event in &events {
            serde_json::to_writer(&mut plain, event)?;
            plain.push(b'\n');
        }
        let sealed = key
            .seal(&plain, &crate::keyring::audit_segment_aad(&id, first, last))
            .map_err(|e| anyhow!("sealing an audit segment: {e}"))?;
        platform
            .objects
            .put(&segment_path(&id, first, last), PutPayload::from(sealed))
            .await
            .with_context(|| format!("uploading audit segment {first}-{last}"))?;
        platform.control.set_cursor(&cursor, last).await?;
        total += events.len();
        after = last;
    }
    state.shipped.insert(id, (after, Instant::now()));
    Ok(total)
}

pub fn spawn(platform: Arc<Platform>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut state = AuditShipperState::default();
        loop {
            if crate::runner::pause(&mut stop, SHIP_EVERY).await {
                return;
            }
            let round = ship_once(&platform, &mut state);
            match crate::runner::unit(&platform, JOB, "round", None, round).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "audit shipping round failed"),
                Err(_) => state = AuditShipperState::default(),
            }
        }
    })
}

/// How much of a company's shipped audit trail an import restored.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    pub last_seq: i64,
    /// Why it stopped short (a missing or damaged segment): the trail is
    /// restored up to `last_seq` and continues from there.
    pub problem: Option<String>,
}

/// Copies a company's shipped audit trail, verified, into `store` (new and
/// empty, before anything else is written to it). A missing or damaged
/// segment stops the import there (the books are still worth restoring);
/// only an unreadable listing is an error.
pub async fn import(
    platform: &Platform,
    key: &CompanyKeys,
    company_id: &str,
    store: &Arc<dyn TenantStore>,
) -> anyhow::Result<Imported> {
    let listing = platform
        .objects
        .list_with_delimiter(Some(&prefix(company_id)))
        .await
        .with_context(|| format!("listing the audit segments of company {company_id}"))?;
    let mut segments: Vec<(i64, i64, ObjectPath)> = listing
        .objects
        .into_iter()
        .filter_map(|meta| {
            let (first, last) = parse_segment_name(meta.location.filename()?)?;
            Some((first, last, meta.location))
        })
        .collect();
    segments.sort_by_key(|(first, last, _)| (*first, std::cmp::Reverse(*last)));
    let mut expected = 1;
    for (first, last, path) in segments {
        if last < expected {
            continue;
        }
        if expected == 1 {
            // A trail purged under the retention rules starts later.
            expected = first;
        }
        match import_segment(
            platform,
            key,
            company_id,
            store,
            (first, last, &path),
            expected,
        )
        .await
        {
            Ok(Some(end)) => expected = end + 1,
            Ok(None) => {}
            Err(e) => {
                return Ok(Imported {
                    last_seq: expected - 1,
                    problem: Some(format!("{e:#}")),
                })
            }
        }
    }
    Ok(Imported {
        last_seq: expected - 1,
        problem: None,
    })
}

/// Imports one segment's events from `expected` on; the last event imported.
async fn import_segment(
    platform: &Platform,
    key: &CompanyKeys,
    company_id: &str,
    store: &Arc<dyn TenantStore>,
    (first, last, path): (i64, i64, &ObjectPath),
    expected: i64,
) -> anyhow::Result<Option<i64>> {
    if first > expected {
        bail!(
            "audit segment missing: events {expected}..{} of company {company_id}",
            first - 1
        );
    }
    let sealed = platform
        .objects
        .get(path)
        .await
        .with_context(|| format!("reading {path}"))?
        .bytes()
        .await
        .with_context(|| format!("reading {path}"))?;
    let plain = key
        .open(
            &sealed,
            &crate::keyring::audit_segment_aad(company_id, first, last),
        )
        .map_err(|_| anyhow!("audit segment {path} fails authentication"))?;
    let mut events = Vec::new();
    for line in plain.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let event: StoredAuditEvent = serde_json::from_slice(line)
            .with_context(|| format!("audit segment {path} holds a malformed line"))?;
        if event.seq >= expected {
            events.push(event);
        }
    }
    let Some(end) = events.last().map(|e| e.seq) else {
        return Ok(None);
    };
    let ctx = WriteContext {
        actor: wb_store::Actor::system("dr"),
        at: platform.now(),
    };
    let result = store
        .apply_in_order(vec![(Change::ImportAudit(events), ctx)])
        .await
        .pop()
        .ok_or_else(|| anyhow!("the store answered nothing"))?
        .with_context(|| format!("importing audit segment {path}"))?;
    match result {
        Applied::AuditImported { last_seq } if last_seq == end => Ok(Some(end)),
        _ => bail!("importing audit segment {path} did not end at event {end}"),
    }
}

/// After a purge dropped the company's audit events through `through`:
/// deletes every shipped segment holding one of them. A segment that also
/// held kept events is shipped again from the first kept event (the cursor
/// goes back), so a segment past `through` may exist twice; an import skips
/// what it has. Returns the segments deleted.
pub(crate) async fn forget_through(
    platform: &Platform,
    company_id: &str,
    through: i64,
) -> anyhow::Result<usize> {
    let listing = platform
        .objects
        .list_with_delimiter(Some(&prefix(company_id)))
        .await
        .with_context(|| format!("listing the audit segments of company {company_id}"))?;
    let mut deleted = 0;
    let mut held_kept_events = false;
    for meta in listing.objects {
        let Some((first, last)) = meta.location.filename().and_then(parse_segment_name) else {
            continue;
        };
        if first <= through {
            platform
                .objects
                .delete(&meta.location)
                .await
                .with_context(|| format!("deleting {}", meta.location))?;
            deleted += 1;
            held_kept_events |= last > through;
        }
    }
    let cursor = cursor_name(company_id);
    if held_kept_events && platform.control.cursor(&cursor).await? > through {
        platform.control.set_cursor(&cursor, through).await?;
    }
    Ok(deleted)
}
