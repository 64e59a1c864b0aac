//! Ships every open company's change journal to object storage in encrypted
//! segments, so a company can be restored to any shipped point.
//!
//! A segment is the JSON lines of records `first..=last`, sealed with the
//! company's DEK (XChaCha20-Poly1305) with the company id and the sequence range
//! as associated data, stored at `companies/{id}/journal/{first:020}-{last:020}.seg`.
//! The shipped position is the control-store cursor `ship:company:{id}`; a
//! crash between upload and cursor update re-ships the same range under the
//! same name, so nothing is lost or duplicated.
//!
//! Lag: for every company it ships, the shipper keeps the commit time of the
//! oldest record not yet shipped (`ShippingStats`, on the Platform, read by
//! `GET /metrics`). When a company's lag passes the threshold or its uploads
//! keep failing, it raises the `backup-lag` alert (one per company, its count
//! grows while the condition lasts). When an upload fails, the rest of the
//! round only measures (the store is likely down for everyone), so a round
//! stays as short as one failed request; the next round tries again.
//!
//! Each company is a unit of work (`crate::runner::unit`): a panic while shipping
//! one is caught, counted as a failed round for that company (so its
//! `backup-lag` alert follows), alerted (`job-panicked`), and the others
//! are shipped.

use std::collections::HashMap;

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use wb_store::TenantStore;

use crate::error::ServiceResult;
use crate::platform::Platform;

/// The job's name in logs and the `job-panicked` alert.
const JOB: &str = "shipper";
/// At most this many records in one segment.
pub const SEGMENT_RECORDS: u32 = 10_000;
pub const SHIP_EVERY: Duration = Duration::from_millis(200);
pub use crate::platform::shipping::{
    ShippingSnapshot, ShippingStats, BACKUP_LAG_RULE, FAILURES_ALERT_AFTER, LAG_ALERT_AFTER,
};

pub fn cursor_name(company_id: &str) -> String {
    format!("ship:company:{company_id}")
}

pub fn journal_prefix(company_id: &str) -> ObjectPath {
    ObjectPath::from(format!("companies/{company_id}/journal"))
}

pub fn segment_path(company_id: &str, first: i64, last: i64) -> ObjectPath {
    ObjectPath::from(format!(
        "companies/{company_id}/journal/{first:020}-{last:020}.seg"
    ))
}

/// One journal record as stored in a segment line (its format is the store's).
pub use wb_store::journal::SegmentRecord;

/// What the shipper knows between rounds: each company's shipped sequence.
#[derive(Default)]
pub struct ShipperState {
    companies: HashMap<String, Slot>,
}

/// What the shipper remembers of one company between rounds.
#[derive(Default)]
struct Slot {
    /// The last sequence this node shipped.
    shipped: Option<i64>,
    /// Until when this node may ship it without renewing its lease (half the
    /// lease's life after the last renewal).
    lease_until: Option<std::time::Instant>,
    /// When the database was last asked for records after `shipped`.
    checked: Option<std::time::Instant>,
}

/// How often a company with nothing new in this process is looked up anyway
/// (another node may have written to it).
const RECHECK: Duration = Duration::from_secs(5);

/// Companies shipped at once in a round.
const SHIP_CONCURRENCY: usize = 8;

async fn ship_tenant(
    platform: &Platform,
    slot: &mut Slot,
    store_down: &std::sync::atomic::AtomicBool,
    tenant: &Arc<dyn TenantStore>,
) -> anyhow::Result<usize> {
    let id = tenant.company_id().to_string();
    let stats = &platform.shipping;
    let cursor = cursor_name(&id);
    if let Some(shipped) = slot.shipped {
        // Idle companies cost no query: this process's writer publishes what
        // it commits; other nodes' writes are picked up every RECHECK.
        let recent = slot.checked.is_some_and(|t| t.elapsed() < RECHECK);
        if tenant.journal_head() <= shipped && recent {
            stats.caught_up(&id);
            return Ok(0);
        }
        slot.checked = Some(std::time::Instant::now());
        match tenant.journal(shipped, 1).await?.first() {
            None => {
                stats.caught_up(&id);
                return Ok(0);
            }
            Some(next) => stats.pending(&id, next.at),
        }
    }
    // One node ships a company at a time; the holder reads the shared cursor,
    // so a lease that moves between nodes never re-ships or skips records.
    // Renewing the lease is a durable write: do it every half lease, not
    // every round. While it is held without a gap, this node's own record of
    // what it shipped is the cursor.
    let held = slot
        .lease_until
        .is_some_and(|until| std::time::Instant::now() < until);
    let cached = if held { slot.shipped } else { None };
    if cached.is_none() {
        let lease = format!("ship:{id}");
        let asked = std::time::Instant::now();
        if !crate::runner::hold_lease(&*platform.control, &platform.node_id, &lease).await {
            // Another node ships it (and reports its lag).
            slot.lease_until = None;
            stats.caught_up(&id);
            return Ok(0);
        }
        slot.lease_until = Some(asked + crate::runner::LEASE_TTL / 2);
    }
    let mut after = match cached {
        Some(shipped) => shipped,
        None => platform.control.cursor(&cursor).await?,
    };
    if store_down.load(std::sync::atomic::Ordering::Relaxed) {
        // Measure only: the store failed earlier in this round.
        if let Some(next) = tenant.journal(after, 1).await?.first() {
            stats.pending(&id, next.at);
        }
        return Ok(0);
    }
    let mut key = None;
    let mut total = 0;
    loop {
        let records = tenant.journal(after, SEGMENT_RECORDS).await?;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            break;
        };
        stats.pending(&id, first.at);
        let (first, last) = (first.seq, last.seq);
        let key = match &key {
            Some(k) => k,
            None => {
                // A store open but not recorded (a restore in progress) has no
                // key yet; a de-provisioned company ships nothing more.
                let active = platform
                    .control
                    .company(&id)
                    .await?
                    .is_some_and(|c| c.status == wb_store::CompanyStatus::Active);
                if !active {
                    stats.caught_up(&id);
                    return Ok(total);
                }
                key.insert(platform.company_key(&id).await?)
            }
        };
        let mut plain = Vec::new();
        for record in &records {
            let line = serde_json::to_vec(&SegmentRecord::from(record))
                .map_err(|e| anyhow::anyhow!("encoding a journal segment: {e}"))?;
            plain.extend_from_slice(&line);
            plain.push(b'\n');
        }
        let sealed = key
            .seal(
                &plain,
                &crate::keyring::journal_segment_aad(&id, first, last),
            )
            .map_err(|e| anyhow::anyhow!("sealing a journal segment: {e}"))?;
        if let Err(e) = platform
            .objects
            .put(&segment_path(&id, first, last), PutPayload::from(sealed))
            .await
        {
            store_down.store(true, std::sync::atomic::Ordering::Relaxed);
            anyhow::bail!("uploading journal segment {first}-{last}: {e}");
        }
        platform.control.set_cursor(&cursor, last).await?;
        slot.shipped = Some(last);
        let failed_before = stats.shipped(&id, records.len());
        if failed_before > 0 {
            tracing::info!(company = %id, failed_rounds = failed_before, "shipping works again; catching up");
        }
        total += records.len();
        after = last;
    }
    stats.caught_up(&id);
    Ok(total)
}

/// Ships one company's new records now, outside the rounds (a purge needs
/// its journal shipped before it deletes it).
pub(crate) async fn ship_one(
    platform: &Platform,
    tenant: &Arc<dyn TenantStore>,
) -> anyhow::Result<usize> {
    let down = std::sync::atomic::AtomicBool::new(false);
    ship_tenant(platform, &mut Slot::default(), &down, tenant).await
}

/// One round: ships what is new in every open company. A company that fails is
/// logged and retried next round; the others go on. Returns records shipped.
/// Companies that fall behind raise the `backup-lag` alert.
pub async fn ship_once(platform: &Platform, state: &mut ShipperState) -> ServiceResult<usize> {
    use futures_util::stream::StreamExt;
    let mut total = 0;
    let store_down = std::sync::atomic::AtomicBool::new(false);
    let tenants = platform.tenants.open_tenants();
    let open = tenants.iter().map(|t| t.company_id()).collect();
    platform.shipping.retain_open(&open);
    let work: Vec<_> = tenants
        .iter()
        .map(|t| {
            (
                t,
                state.companies.remove(t.company_id()).unwrap_or_default(),
            )
        })
        .collect();
    let store_down = &store_down;
    type Shipped<'a> = (&'a Arc<dyn TenantStore>, Slot, anyhow::Result<usize>);
    let mut rounds: Vec<
        std::pin::Pin<Box<dyn std::future::Future<Output = Shipped<'_>> + Send + '_>>,
    > = Vec::with_capacity(work.len());
    for (tenant, mut slot) in work {
        rounds.push(Box::pin(async move {
            let id = tenant.company_id();
            let shipping = ship_tenant(platform, &mut slot, store_down, tenant);
            let result = match crate::runner::unit(platform, JOB, id, Some(id), shipping).await {
                Ok(result) => result,
                Err(panicked) => {
                    // Forget what this node knew of the company: the next
                    // round starts again from the shared cursor.
                    slot = Slot::default();
                    Err(anyhow::Error::new(panicked))
                }
            };
            (tenant, slot, result)
        }));
    }
    let done: Vec<Shipped<'_>> = futures_util::stream::iter(rounds)
        .buffer_unordered(SHIP_CONCURRENCY)
        .collect()
        .await;
    for (tenant, slot, result) in done {
        let id = tenant.company_id();
        state.companies.insert(id.to_string(), slot);
        match result {
            Ok(n) => total += n,
            Err(e) => {
                let in_a_row = platform.shipping.failed(id, &format!("{e:#}"));
                // An outage fails every round: log the first and then every 50th.
                if in_a_row % 50 == 1 {
                    tracing::error!(company = id, error = %format!("{e:#}"), rounds = in_a_row, "shipping a company's change journal failed; retrying every round")
                }
            }
        }
        let now = platform.now();
        if let Some(draft) = platform.shipping.alert_due(id, now) {
            match platform.alerts.raise(&draft, now).await {
                Ok(raised) if raised.new => tracing::warn!(
                    alert = raised.alert.id,
                    rule = draft.rule,
                    company = id,
                    detail = %draft.detail,
                    "alert raised"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(company = id, error = %e, "cannot raise the backup-lag alert")
                }
            }
        }
    }
    Ok(total)
}

pub fn spawn(
    platform: Arc<Platform>,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut state = ShipperState::default();
        loop {
            let round = ship_once(&platform, &mut state);
            match crate::runner::unit(&platform, JOB, "round", None, round).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "shipping change journals failed"),
                // What the round knew may be half-updated: start afresh.
                Err(_) => state = ShipperState::default(),
            }
            if crate::runner::pause(&mut stop, period).await {
                // Ship what was written up to the stop.
                let round = ship_once(&platform, &mut state);
                let _ = crate::runner::unit(&platform, JOB, "round", None, round).await;
                return;
            }
        }
    })
}
