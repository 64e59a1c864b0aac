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
//! Each company is a unit of work (`super::unit`): a panic while shipping
//! one is caught, counted as a failed round for that company (so its
//! `backup-lag` alert follows), alerted (`job-panicked`), and the others
//! are shipped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wb_core::monitor::{AlertDraft, Severity};
use wb_store::TenantStore;

use crate::error::ServiceResult;
use crate::platform::Platform;

/// The job's name in logs and the `job-panicked` alert.
const JOB: &str = "shipper";
/// At most this many records in one segment.
pub const SEGMENT_RECORDS: u32 = 10_000;
pub const SHIP_EVERY: Duration = Duration::from_millis(200);
/// The alert rule raised when a company's shipping falls behind.
pub const BACKUP_LAG_RULE: &str = "backup-lag";
/// Default: alert when a company's oldest unshipped record is older than this.
pub const LAG_ALERT_AFTER: Duration = Duration::from_secs(60);
/// Default: alert after this many consecutive failed rounds for a company.
pub const FAILURES_ALERT_AFTER: u32 = 5;

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

/// Associated data of a segment: binds it to its company and range.
pub fn segment_aad(company_id: &str, first: i64, last: i64) -> Vec<u8> {
    crate::keyring::journal_segment_aad(company_id, first, last)
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

/// One company's shipping lag as this node's shipper sees it.
#[derive(Debug, Clone, Default)]
struct CompanyLag {
    /// Commit time of the oldest record not yet shipped (None: caught up).
    oldest_unshipped: Option<OffsetDateTime>,
    /// Rounds in a row that failed.
    failures: u32,
    last_error: Option<String>,
    /// When the alert was last raised (or bumped) for this company.
    alerted_at: Option<OffsetDateTime>,
}

/// Shipping counters and per-company lag, shared by the shipper, the
/// `/metrics` handler and anyone else holding the Platform. Only aggregates
/// leave through `snapshot`.
#[derive(Debug)]
pub struct ShippingStats {
    companies: Mutex<HashMap<String, CompanyLag>>,
    shipped_records: AtomicU64,
    failures: AtomicU64,
    lag_alert_after_ms: AtomicU64,
    failures_alert_after: AtomicU32,
}

impl Default for ShippingStats {
    fn default() -> ShippingStats {
        ShippingStats {
            companies: Mutex::new(HashMap::new()),
            shipped_records: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            lag_alert_after_ms: AtomicU64::new(LAG_ALERT_AFTER.as_millis() as u64),
            failures_alert_after: AtomicU32::new(FAILURES_ALERT_AFTER),
        }
    }
}

/// The aggregates `GET /metrics` exports (no company ids).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShippingSnapshot {
    /// Age of the oldest unshipped record over every company (0: all caught up).
    pub lag_seconds_max: f64,
    /// Companies whose lag is past the alert threshold or whose last rounds failed.
    pub companies_lagging: u64,
    pub shipped_records_total: u64,
    pub ship_failures_total: u64,
}

fn age(now: OffsetDateTime, at: OffsetDateTime) -> Duration {
    (now - at).try_into().unwrap_or(Duration::ZERO)
}

impl ShippingStats {
    /// Sets the alert thresholds (`ServerConfig::backup_lag_alert`,
    /// `backup_failures_alert`).
    pub fn configure(&self, lag_alert_after: Duration, failures_alert_after: u32) {
        self.lag_alert_after_ms
            .store(lag_alert_after.as_millis().max(1) as u64, Ordering::Relaxed);
        self.failures_alert_after
            .store(failures_alert_after.max(1), Ordering::Relaxed);
    }

    pub fn lag_alert_after(&self) -> Duration {
        Duration::from_millis(self.lag_alert_after_ms.load(Ordering::Relaxed))
    }

    fn failures_alert_after(&self) -> u32 {
        self.failures_alert_after.load(Ordering::Relaxed)
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, CompanyLag>) -> T) -> T {
        let mut map = self.companies.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut map)
    }

    /// Records not shipped yet, the oldest committed at `at`.
    fn pending(&self, company: &str, at: OffsetDateTime) {
        self.with(|m| {
            m.entry(company.to_string()).or_default().oldest_unshipped = Some(at);
        });
    }

    /// Forgets companies that are no longer open (closed, discarded).
    fn retain_open(&self, open: &std::collections::HashSet<&str>) {
        self.with(|m| m.retain(|id, _| open.contains(id.as_str())));
    }

    /// Everything shipped.
    fn caught_up(&self, company: &str) {
        self.with(|m| {
            m.remove(company);
        });
    }

    /// A segment was uploaded: the store works again for this company.
    /// Returns how many rounds had failed in a row before.
    fn shipped(&self, company: &str, records: usize) -> u32 {
        self.shipped_records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.with(|m| match m.get_mut(company) {
            Some(lag) => std::mem::take(&mut lag.failures),
            None => 0,
        })
    }

    /// A round failed for `company`; returns how many in a row did.
    fn failed(&self, company: &str, error: &str) -> u32 {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.with(|m| {
            let lag = m.entry(company.to_string()).or_default();
            lag.failures = lag.failures.saturating_add(1);
            lag.last_error = Some(
                error
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(300)
                    .collect(),
            );
            lag.failures
        })
    }

    fn is_lagging(&self, lag: &CompanyLag, now: OffsetDateTime) -> bool {
        lag.oldest_unshipped
            .is_some_and(|at| age(now, at) > self.lag_alert_after())
            || lag.failures >= self.failures_alert_after()
    }

    pub fn snapshot(&self, now: OffsetDateTime) -> ShippingSnapshot {
        let (lag_max, lagging) = self.with(|m| {
            let mut max = Duration::ZERO;
            let mut lagging = 0;
            for lag in m.values() {
                if let Some(at) = lag.oldest_unshipped {
                    max = max.max(age(now, at));
                }
                if self.is_lagging(lag, now) {
                    lagging += 1;
                }
            }
            (max, lagging)
        });
        ShippingSnapshot {
            lag_seconds_max: lag_max.as_secs_f64(),
            companies_lagging: lagging,
            shipped_records_total: self.shipped_records.load(Ordering::Relaxed),
            ship_failures_total: self.failures.load(Ordering::Relaxed),
        }
    }

    /// The alert to raise for `company` now, if it is lagging and was not
    /// alerted on within the last threshold period.
    fn alert_due(&self, company: &str, now: OffsetDateTime) -> Option<AlertDraft> {
        let repeat = self.lag_alert_after().min(Duration::from_secs(60));
        self.with(|m| {
            let lag = m.get(company)?.clone();
            if !self.is_lagging(&lag, now) {
                return None;
            }
            if lag.alerted_at.is_some_and(|t| age(now, t) < repeat) {
                return None;
            }
            if let Some(entry) = m.get_mut(company) {
                entry.alerted_at = Some(now);
            }
            let behind = lag
                .oldest_unshipped
                .map(|at| {
                    format!(
                        "the oldest unshipped change was committed {:.1} s ago",
                        age(now, at).as_secs_f64()
                    )
                })
                .unwrap_or_else(|| "nothing unshipped".into());
            let failing = match (&lag.last_error, lag.failures) {
                (Some(error), n) if n > 0 => {
                    format!("; {n} round(s) in a row failed, last error: {error}")
                }
                _ => String::new(),
            };
            Some(AlertDraft {
                rule: BACKUP_LAG_RULE,
                severity: Severity::High,
                dedupe_key: format!("{BACKUP_LAG_RULE}:company:{company}"),
                title: format!("Change-journal shipping is behind for company {company}"),
                detail: format!(
                    "{behind} (alert threshold {} s){failing}",
                    self.lag_alert_after().as_secs_f64()
                ),
                company_id: Some(company.to_string()),
                at: now,
            })
        })
    }
}

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
        if !super::hold_lease(&*platform.control, &platform.node_id, &lease).await {
            // Another node ships it (and reports its lag).
            slot.lease_until = None;
            stats.caught_up(&id);
            return Ok(0);
        }
        slot.lease_until = Some(asked + super::LEASE_TTL / 2);
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
                // A store open but not recorded (a restore in progress) has no key yet.
                if platform.control.company(&id).await?.is_none() {
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
            .seal(&plain, &segment_aad(&id, first, last))
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
            let result = match super::unit(platform, JOB, id, Some(id), shipping).await {
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
            match super::unit(&platform, JOB, "round", None, round).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "shipping change journals failed"),
                // What the round knew may be half-updated: start afresh.
                Err(_) => state = ShipperState::default(),
            }
            if super::pause(&mut stop, period).await {
                // Ship what was written up to the stop.
                let round = ship_once(&platform, &mut state);
                let _ = super::unit(&platform, JOB, "round", None, round).await;
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn lag_is_the_age_of_the_oldest_unshipped_record_and_alerts_repeat_per_threshold() {
        let stats = ShippingStats::default();
        stats.configure(Duration::from_secs(10), 3);
        let t0 = datetime!(2026-11-22 10:00:00 UTC);
        let secs = |n: i64| t0 + time::Duration::seconds(n);

        stats.pending("a", t0);
        stats.pending("b", secs(5));
        let snap = stats.snapshot(secs(8));
        assert_eq!(snap.lag_seconds_max, 8.0);
        assert_eq!(snap.companies_lagging, 0);
        assert!(stats.alert_due("a", secs(8)).is_none());

        // Past the threshold: one alert, repeated once per threshold period.
        let draft = stats.alert_due("a", secs(11)).unwrap();
        assert_eq!(draft.rule, BACKUP_LAG_RULE);
        assert_eq!(draft.severity, Severity::High);
        assert_eq!(draft.dedupe_key, "backup-lag:company:a");
        assert_eq!(draft.company_id.as_deref(), Some("a"));
        assert!(draft.detail.contains("11.0 s ago"), "{}", draft.detail);
        assert!(stats.alert_due("a", secs(15)).is_none());
        assert!(stats.alert_due("a", secs(21)).is_some());
        assert_eq!(stats.snapshot(secs(21)).companies_lagging, 2);

        // Uploads failing in a row alert before the lag threshold.
        assert_eq!(stats.failed("c", "first\nline"), 1);
        stats.failed("c", "x");
        assert!(stats.alert_due("c", secs(1)).is_none());
        assert_eq!(stats.failed("c", "connection refused"), 3);
        let draft = stats.alert_due("c", secs(1)).unwrap();
        assert!(draft
            .detail
            .contains("3 round(s) in a row failed, last error: connection refused"));
        assert_eq!(stats.shipped("c", 7), 3);
        assert_eq!(stats.snapshot(secs(1)).ship_failures_total, 3);

        // Caught up or closed: no lag left; the counters stay.
        stats.caught_up("a");
        stats.retain_open(&["a", "c"].into_iter().collect());
        let snap = stats.snapshot(secs(30));
        assert_eq!(snap.lag_seconds_max, 0.0);
        assert_eq!(snap.companies_lagging, 0);
        assert_eq!(snap.shipped_records_total, 7);
    }
}
