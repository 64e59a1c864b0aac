//! Shipping counters and per-company lag: written by the shipper
//! (`crate::backup::shipper`), read by `/metrics` and the backup-lag alert.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use wb_core::monitor::{AlertDraft, Severity};

/// The alert rule raised when a company's shipping falls behind.
pub const BACKUP_LAG_RULE: &str = "backup-lag";
/// Default: alert when a company's oldest unshipped record is older than this.
pub const LAG_ALERT_AFTER: Duration = Duration::from_secs(60);
/// Default: alert after this many consecutive failed rounds for a company.
pub const FAILURES_ALERT_AFTER: u32 = 5;

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
    pub(crate) fn pending(&self, company: &str, at: OffsetDateTime) {
        self.with(|m| {
            m.entry(company.to_string()).or_default().oldest_unshipped = Some(at);
        });
    }

    /// Forgets companies that are no longer open (closed, discarded).
    pub(crate) fn retain_open(&self, open: &std::collections::HashSet<&str>) {
        self.with(|m| m.retain(|id, _| open.contains(id.as_str())));
    }

    /// Everything shipped.
    pub(crate) fn caught_up(&self, company: &str) {
        self.with(|m| {
            m.remove(company);
        });
    }

    /// A segment was uploaded: the store works again for this company.
    /// Returns how many rounds had failed in a row before.
    pub(crate) fn shipped(&self, company: &str, records: usize) -> u32 {
        self.shipped_records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.with(|m| match m.get_mut(company) {
            Some(lag) => std::mem::take(&mut lag.failures),
            None => 0,
        })
    }

    /// A round failed for `company`; returns how many in a row did.
    pub(crate) fn failed(&self, company: &str, error: &str) -> u32 {
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
    pub(crate) fn alert_due(&self, company: &str, now: OffsetDateTime) -> Option<AlertDraft> {
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
