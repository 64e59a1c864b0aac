//! Running background work: each job's work is made of units (one company,
//! schedule, drain batch or audit source), each run through [`unit`] (or
//! [`catch`]): a panic in one unit is caught there, logged, alerted
//! (`job-panicked`) and recorded against that unit by the job, and the job
//! goes on with the others and with its next round. Jobs that must run on one
//! node at a time take leases ([`hold_lease`]).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use time::OffsetDateTime;
use tokio::sync::watch;
use wb_core::monitor::{AlertDraft, Severity};
use wb_store::AlertStore;

use crate::platform::Platform;

/// The alert raised when a unit of a background job panics.
pub const JOB_PANIC_RULE: &str = "job-panicked";

/// A unit of a background job's work panicked. Its `Display` is what may be
/// recorded and shown ("internal error"); the panic's message went to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("internal error")]
pub struct Panicked {
    pub job: &'static str,
    pub unit: String,
}

/// A panic's message, one line, bounded.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect()
}

/// Runs one unit of job `job`'s work (`unit` names it: a company id, a
/// drain, a source) and catches a panic in it: logged with its message and
/// returned as [`Panicked`], for the caller to record against the unit.
pub async fn catch<F: Future>(
    job: &'static str,
    unit: &str,
    work: F,
) -> Result<F::Output, Panicked> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(out) => Ok(out),
        Err(payload) => {
            tracing::error!(
                job,
                unit,
                panic = %panic_message(&*payload),
                "a unit of a background job panicked; it is recorded as failed and the job goes on"
            );
            Err(Panicked {
                job,
                unit: unit.to_string(),
            })
        }
    }
}

/// Raises the `job-panicked` alert for `panicked` (high; one per job and
/// unit, a repeat bumps its count).
pub async fn alert_panic(
    alerts: &dyn AlertStore,
    panicked: &Panicked,
    company: Option<&str>,
    now: OffsetDateTime,
) {
    let Panicked { job, unit } = panicked;
    let draft = AlertDraft {
        rule: JOB_PANIC_RULE,
        severity: Severity::High,
        dedupe_key: format!("{JOB_PANIC_RULE}:{job}:{unit}"),
        title: format!("Background job {job} failed with an internal error for {unit}"),
        detail: format!(
            "a panic stopped the {job} job's work for {unit}; it was recorded as failed and the job went on with the rest. The server log has the panic's message."
        ),
        company_id: company.map(str::to_string),
        at: now,
    };
    match alerts.raise(&draft, now).await {
        Ok(raised) if raised.new => {
            tracing::warn!(alert = raised.alert.id, job, unit = %unit, rule = JOB_PANIC_RULE, "alert raised")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(job, unit = %unit, error = %e, "cannot raise the job-panicked alert")
        }
    }
}

/// [`catch`], raising the `job-panicked` alert when the unit panics.
pub async fn unit<F: Future>(
    platform: &Platform,
    job: &'static str,
    unit: &str,
    company: Option<&str>,
    work: F,
) -> Result<F::Output, Panicked> {
    let out = catch(job, unit, work).await;
    if let Err(panicked) = &out {
        alert_panic(&*platform.alerts, panicked, company, platform.now()).await;
    }
    out
}

/// How long a job's lease lasts; the holder renews it every round, and another
/// node takes the job over this long after the holder stops renewing.
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// True when this node holds (or has just taken) the lease `name`: jobs that
/// must run on one node at a time (checkpoints, monitor, drains, shipping a
/// company) do their round only then. Leases live in the control store, so
/// every node against the same control plane takes turns.
pub async fn hold_lease(control: &dyn wb_store::ControlStore, node: &str, name: &str) -> bool {
    // Wall-clock time: leases are compared across nodes, not with a test clock.
    let now = time::OffsetDateTime::now_utc();
    match control.try_lease(name, node, now, now + LEASE_TTL).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(lease = name, error = %e, "cannot take or renew a job lease");
            false
        }
    }
}

/// Sleeps for `period`, returning true when asked to stop instead.
pub async fn pause(stop: &mut watch::Receiver<bool>, period: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(period) => false,
        _ = stop.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_unit_is_caught_and_the_others_run() {
        let mut done = Vec::new();
        for company in ["a", "b", "c"] {
            let work = async move {
                if company == "b" {
                    panic!("boom for {company}");
                }
                company.to_uppercase()
            };
            done.push(catch("test-job", company, work).await);
        }
        assert_eq!(done[0], Ok("A".to_string()));
        assert_eq!(
            done[1],
            Err(Panicked {
                job: "test-job",
                unit: "b".into()
            })
        );
        assert_eq!(done[1].as_ref().unwrap_err().to_string(), "internal error");
        assert_eq!(done[2], Ok("C".to_string()));
    }

    #[test]
    fn panic_messages_are_one_bounded_line() {
        let long: Box<dyn std::any::Any + Send> = Box::new(format!("a\nb{}", "x".repeat(900)));
        let message = panic_message(&*long);
        assert!(message.starts_with("a b") && message.chars().count() == 500);
        let other: Box<dyn std::any::Any + Send> = Box::new(7u8);
        assert_eq!(panic_message(&*other), "(no message)");
    }
}
