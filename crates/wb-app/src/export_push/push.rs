//! One round of scheduled pushes: every due schedule whose company lease
//! this node holds is claimed, its export built (`crate::exports::prepare`)
//! and streamed (multipart, `crate::exports::write_to_store`) to the customer's destination as
//! `{prefix}/workbooks-{company}-{YYYYMMDDTHHMMSSZ}.age`, then a JSON sidecar
//! (`.json`: the export's id, size, SHA-256 of the encrypted file, journal
//! and audit positions, counts) written last, so a sidecar means a complete
//! export.
//!
//! Each attempt is recorded on the schedule and audited (`export.push`,
//! success or failure) in one control-store transaction. What a failure
//! records is a coarse class (`crate::egress::Failure`: could not connect,
//! timed out, TLS handshake failed, refused: internal address, HTTP 403, …),
//! never the destination's answer, so the record cannot be used to probe
//! what answers where. A push is one unit of the job's work
//! (`crate::runner::unit`): if it panics, it is recorded and audited as failed
//! ("internal error"), alerted, and the other pushes go on. A failure is
//! retried with backoff (`schedule::retry_at`); after
//! [`FAILURES_ALERT_AFTER`] in a row the company's `export-push-failing`
//! alert is raised (one per company; later failures bump its count).
//!
//! A claim moves the schedule's due time forward before the work starts, so
//! another node (or a slow attempt outliving its lease) never pushes the
//! same period twice; a node that dies mid-push leaves the claim to expire.

use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;
use time::OffsetDateTime;
use wb_core::monitor::{AlertDraft, Severity};
use wb_core::Action;
use wb_store::{Actor, AuditEvent, ExportSchedule, Outcome, PushResult};

use super::destination::object_names;
use super::schedule::{describe_url, next_at, retry_at, target};
use super::{Credentials, Destination};
use crate::egress::Egress;
use crate::exports::{self, ExportKey, ExportRecord};
use crate::platform::Platform;

/// The alert rule raised when a company's pushes keep failing.
pub const EXPORT_PUSH_RULE: &str = "export-push-failing";
/// Failed pushes in a row that raise the alert.
pub const FAILURES_ALERT_AFTER: u32 = 3;
/// How long a claimed attempt may take before the schedule is due again:
/// longer than an upload can last (`destination::MAX_TIMEOUT`, twice for
/// retries), so a slow push is never started again by another node.
pub const CLAIM_FOR: time::Duration = time::Duration::hours(1);
/// Schedules looked at per round (the rest wait for the next one).
const PER_ROUND: u32 = 200;
/// Pushes under way at once on one node.
const CONCURRENCY: usize = 4;
/// Longest error kept on a schedule.
const MAX_ERROR_CHARS: usize = 500;

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Companies whose export was pushed.
    pub pushed: Vec<String>,
    /// Companies whose push failed, with the recorded reason.
    pub failed: Vec<(String, String)>,
}

/// The sidecar object written after each export.
#[derive(Debug, Serialize)]
struct Sidecar<'a> {
    /// Always `workbooks-export-push`.
    format: &'static str,
    version: u32,
    /// The export's object name, beside this file.
    object: &'a str,
    #[serde(flatten)]
    export: &'a ExportRecord,
}

fn lease(company_id: &str) -> String {
    format!("export-push:{company_id}")
}

/// The job name pushes are alerted and logged under when they panic.
pub const JOB: &str = "export-push";

/// A hook called in each push's unit of work before it starts.
pub type BeforePush<'a> = &'a (dyn Fn(&ExportSchedule) + Sync);

/// Pushes every schedule due at `now` (the job calls this every minute;
/// tests call it with any `now`).
pub async fn push_due(platform: &Platform, now: OffsetDateTime) -> anyhow::Result<PushReport> {
    push_due_with(platform, now, &|_| {}).await
}

/// [`push_due`], calling `before` inside each push's unit of work (tests
/// make one company's push panic with it).
#[doc(hidden)]
pub async fn push_due_with(
    platform: &Platform,
    now: OffsetDateTime,
    before: BeforePush<'_>,
) -> anyhow::Result<PushReport> {
    use futures_util::stream::StreamExt;
    let due = platform
        .control
        .due_export_schedules(now, PER_ROUND)
        .await?;
    let outcomes: Vec<Option<(String, Result<(), String>)>> = futures_util::stream::iter(due)
        .map(|schedule| async move {
            let company = schedule.company_id.clone();
            attempt(platform, schedule, now, before)
                .await
                .map(|outcome| (company, outcome))
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut report = PushReport::default();
    for (company, outcome) in outcomes.into_iter().flatten() {
        match outcome {
            Ok(()) => report.pushed.push(company),
            Err(why) => report.failed.push((company, why)),
        }
    }
    Ok(report)
}

/// Claims, pushes and records one schedule; None when another node has it.
async fn attempt(
    platform: &Platform,
    schedule: ExportSchedule,
    now: OffsetDateTime,
    before: BeforePush<'_>,
) -> Option<Result<(), String>> {
    let company = schedule.company_id.as_str();
    if !crate::runner::hold_lease(&*platform.control, &platform.node_id, &lease(company)).await {
        return None;
    }
    match platform
        .control
        .claim_export_push(
            company,
            &schedule.id,
            schedule.next_push_at,
            now + CLAIM_FOR,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(company, error = %e, "cannot claim a scheduled export push");
            return None;
        }
    }
    let work = async {
        before(&schedule);
        push(platform, &schedule).await
    };
    let outcome = match crate::runner::unit(platform, JOB, company, Some(company), work).await {
        Ok(outcome) => outcome,
        Err(panicked) => Err(panicked.to_string()),
    };
    let (result, detail) = match &outcome {
        Ok(pushed) => (
            PushResult {
                at: now,
                ok: true,
                error: None,
                object: Some(pushed.object.clone()),
                next_push_at: next_at(now, schedule.every_hours),
                failures: 0,
            },
            format!(
                "pushed {} ({} bytes, sha256 {}, journal at {}) encrypted to age recipient {}",
                pushed.object,
                pushed.record.size_bytes,
                pushed.record.sha256,
                pushed.record.journal_seq,
                schedule.recipient
            ),
        ),
        Err(why) => {
            let failures = schedule.failures.saturating_add(1);
            (
                PushResult {
                    at: now,
                    ok: false,
                    error: Some(why.clone()),
                    object: None,
                    next_push_at: retry_at(now, failures, schedule.every_hours),
                    failures,
                },
                format!(
                    "push to {} failed ({failures} in a row): {why}",
                    describe_url(&schedule.destination)
                ),
            )
        }
    };
    let audit = AuditEvent {
        at: platform.now(),
        actor: Actor::system("export-push"),
        company_id: Some(company.to_string()),
        action: Action::ExportPush,
        target: Some(target(&schedule.id)),
        outcome: if result.ok {
            Outcome::Success
        } else {
            Outcome::Failure
        },
        detail: Some(detail),
    };
    if let Err(e) = platform
        .control
        .record_export_push(company, &schedule.id, &result, &audit)
        .await
    {
        tracing::error!(company, error = %e, "cannot record a scheduled export push");
    }
    match outcome {
        Ok(pushed) => {
            tracing::info!(company, object = %pushed.object, bytes = pushed.record.size_bytes, "scheduled export pushed");
            Some(Ok(()))
        }
        Err(why) => {
            tracing::warn!(company, failures = result.failures, error = %why, "scheduled export push failed");
            if result.failures >= FAILURES_ALERT_AFTER {
                raise_alert(platform, &schedule, result.failures, &why, now).await;
            }
            Some(Err(why))
        }
    }
}

async fn raise_alert(
    platform: &Platform,
    schedule: &ExportSchedule,
    failures: u32,
    why: &str,
    now: OffsetDateTime,
) {
    let company = &schedule.company_id;
    let draft = AlertDraft {
        rule: EXPORT_PUSH_RULE,
        severity: Severity::Medium,
        dedupe_key: format!("{EXPORT_PUSH_RULE}:company:{company}"),
        title: format!("Scheduled export pushes are failing for company {company}"),
        detail: format!(
            "{failures} pushes in a row to {} failed; last error: {why}",
            describe_url(&schedule.destination)
        ),
        company_id: Some(company.clone()),
        at: now,
    };
    match platform.alerts.raise(&draft, platform.now()).await {
        Ok(raised) if raised.new => {
            tracing::warn!(alert = raised.alert.id, company = %company, rule = EXPORT_PUSH_RULE, "alert raised")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(company = %company, error = %e, "cannot raise the export-push alert")
        }
    }
}

/// A successful push.
struct Pushed {
    /// Where the export went, as the customer names it.
    object: String,
    record: ExportRecord,
}

/// One line, no control characters, no secrets, bounded.
fn clean(text: &str, credentials: Option<&Credentials>) -> String {
    let text = match credentials {
        Some(c) => c.scrub(text),
        None => text.to_string(),
    };
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_CHARS)
        .collect()
}

/// Builds the export and uploads it; the error is fit to store and show.
async fn push(platform: &Platform, schedule: &ExportSchedule) -> Result<Pushed, String> {
    let company = schedule.company_id.as_str();
    let destination =
        Destination::parse(&schedule.destination, &platform.export_destination_policy())
            .map_err(|e| format!("this server no longer accepts the destination: {e}"))?;
    let credentials = match &schedule.sealed_credentials {
        Some(sealed) => {
            let key = platform
                .company_key(company)
                .await
                .map_err(|_| "the company's key is unavailable".to_string())?;
            Some(
                Credentials::open(sealed, &key, company, &schedule.destination)
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let credentials = credentials.as_ref();
    let egress = Egress::new(platform.export_destination_policy().allow_private_endpoints);
    let store = destination
        .open(credentials, &egress)
        .map_err(|e| clean(&format!("{e:#}"), credentials))?;
    let key = ExportKey::recipient(&schedule.recipient).map_err(|e| e.to_string())?;
    let tenant = platform
        .tenant(company)
        .await
        .map_err(|e| format!("the company's books cannot be opened: {e}"))?;
    // Shares the node's export slots with on-demand exports; waits for one.
    let _slot = platform.export_slots.acquire(company).await;
    let prepared = exports::prepare(platform, &*tenant, key, &target(&schedule.id))
        .await
        .map_err(|e| format!("the export could not be built: {e}"))?;
    let (blob, sidecar) = object_names(company, platform.now());
    // Streamed to the customer's store (multipart), never held in memory.
    let record = exports::write_to_store(prepared, store.clone(), &blob)
        .await
        .map_err(|e| upload_failed("age", e.as_ref(), &egress, company, credentials))?;
    let sidecar_json = serde_json::to_vec_pretty(&Sidecar {
        format: "workbooks-export-push",
        version: 1,
        object: blob.filename().unwrap_or_default(),
        export: &record,
    })
    .map_err(|e| format!("the sidecar could not be written: {e}"))?;
    store
        .put(&sidecar, PutPayload::from(sidecar_json))
        .await
        .map_err(|e| upload_failed("json", &e, &egress, company, credentials))?;
    Ok(Pushed {
        object: destination.describe(&blob),
        record,
    })
}

/// What a failed upload records: its class only. The whole error (which
/// may hold the destination's answer) goes to the operator's log.
fn upload_failed(
    what: &str,
    error: &(dyn std::error::Error + 'static),
    egress: &Egress,
    company: &str,
    credentials: Option<&Credentials>,
) -> String {
    tracing::warn!(
        company,
        error = %clean(&crate::drains::error_chain(error), credentials),
        "uploading a scheduled export failed"
    );
    format!(
        "uploading the {what} file failed: {}",
        egress.classify(error)
    )
}
