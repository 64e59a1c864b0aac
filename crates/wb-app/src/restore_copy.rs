//! A point-in-time restore asked for by a company's owner: the company's
//! backups replayed up to a chosen point into a new company with the same
//! members, in the background. The company itself is never changed.
//!
//! The owner confirms by typing the company's name; a session is required
//! (an API key, even an owner's, cannot ask). The request and its outcome
//! are recorded in the company's own trail (`company.restore`, target
//! `restore:ID`); a failure also raises an alert for the operators and is
//! told to the customer in plain words, the details staying in the log.

use std::sync::Arc;

use time::OffsetDateTime;
use wb_core::monitor::{AlertDraft, Severity};
use wb_core::Action;
use wb_store::{AuditEvent, Outcome};

use crate::access::CompanyScope;
use crate::backup::{self, RestoreTarget};
use crate::error::{ErrorKind, ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::Principal;
use crate::restore_jobs::{RestoreBusy, RestoreJob, RestoreState};

/// The alert raised when a customer's restore fails.
pub const RESTORE_FAILED_RULE: &str = "restore-failed";

/// What a caller refused for a busy restore slot is told to wait, in seconds.
pub const BUSY_RETRY_AFTER_SECS: u64 = 60;

/// An owner's request.
#[derive(Debug, Clone)]
pub struct RestoreCopyRequest {
    pub target: RestoreTarget,
    /// The company's name, typed by the owner.
    pub confirm: String,
}

fn busy(busy: RestoreBusy) -> ServiceError {
    let (kind, slug, title) = match busy {
        RestoreBusy::Company => (ErrorKind::Conflict, "restore-in-progress", "Conflict"),
        RestoreBusy::Node => (
            ErrorKind::Unavailable,
            "restores-busy",
            "Service unavailable",
        ),
    };
    ServiceError::new(kind, slug, title, busy.to_string()).retry_after(BUSY_RETRY_AFTER_SECS)
}

/// The point must lie between the company's creation and now.
pub fn check_target(
    target: RestoreTarget,
    created_at: OffsetDateTime,
    now: OffsetDateTime,
) -> ServiceResult<()> {
    match target {
        RestoreTarget::Latest => Ok(()),
        RestoreTarget::Seq(n) if n < 0 => Err(ServiceError::unprocessable(
            "invalid-restore-point",
            "a journal record number is at least 0",
        )),
        RestoreTarget::Seq(_) => Ok(()),
        RestoreTarget::Time(t) if t > now => Err(ServiceError::unprocessable(
            "invalid-restore-point",
            "the point to restore to is in the future",
        )),
        RestoreTarget::Time(t) if t < created_at => Err(ServiceError::unprocessable(
            "invalid-restore-point",
            "the point to restore to is before the company was created",
        )),
        RestoreTarget::Time(_) => Ok(()),
    }
}

/// Whether `typed` confirms `name`: the same text, surrounding spaces aside.
pub fn confirms(typed: &str, name: &str) -> bool {
    !typed.trim().is_empty() && typed.trim() == name.trim()
}

impl CompanyScope {
    /// Starts restoring this company into a new one; answers at once with
    /// the running job (poll `restore_job`). A refusal is recorded in the
    /// company's trail too.
    pub async fn start_restore_copy(
        &self,
        platform: &Arc<Platform>,
        request: RestoreCopyRequest,
    ) -> ServiceResult<RestoreJob> {
        match self.begin_restore_copy(platform, &request).await {
            Ok(guard) => {
                let job = guard.job.clone();
                tokio::spawn(async move {
                    // The restore runs in its own task so that a panic in it
                    // ends only this job, which is then recorded as failed.
                    let work = tokio::spawn(run(
                        Arc::clone(&guard.platform),
                        guard.job.source.clone(),
                        guard.job.id.clone(),
                        guard.job.target,
                    ));
                    let outcome = match work.await {
                        Ok(outcome) => outcome,
                        Err(e) => Err(anyhow::anyhow!("the restore task ended abnormally: {e}")),
                    };
                    conclude(guard, outcome).await;
                });
                Ok(job)
            }
            Err(e) => {
                let refused = self.restore_event(
                    platform,
                    None,
                    Outcome::Failure,
                    format!("restore into a new company refused: {}", e.detail),
                );
                self.note(refused).await;
                Err(e)
            }
        }
    }

    async fn begin_restore_copy(
        &self,
        platform: &Arc<Platform>,
        request: &RestoreCopyRequest,
    ) -> ServiceResult<JobGuard> {
        if !matches!(self.caller().principal, Principal::User { .. }) {
            return Err(ServiceError::forbidden(
                "a restore is asked for by the owner signed in, not with an API key",
            ));
        }
        let company = self.company(platform).await?;
        if !confirms(&request.confirm, &company.name) {
            return Err(ServiceError::unprocessable(
                "confirmation-mismatch",
                "type the company's name exactly as it is shown to confirm the restore",
            ));
        }
        let now = platform.now();
        check_target(request.target, company.created_at, now)?;
        let job = RestoreJob {
            id: crate::restore_jobs::new_restore_id(),
            source: company.id.clone(),
            target: request.target,
            requested_by: self.actor().id.clone(),
            started_at: now,
            ended_at: None,
            state: RestoreState::Running { done: 0, total: 0 },
        };
        platform.restores.begin(job.clone()).map_err(busy)?;
        // From here the job ends as failed however this is left (an error,
        // a dropped request, a panic), unless `conclude` ends it first.
        let guard = JobGuard {
            platform: Arc::clone(platform),
            job,
            actor: self.actor().clone(),
            done: false,
        };
        let asked = self.restore_event(
            platform,
            Some(&guard.job.id),
            Outcome::Success,
            format!(
                "restore into a new company asked for, to {}",
                describe(guard.job.target)
            ),
        );
        self.record(platform, asked).await?;
        Ok(guard)
    }

    fn restore_event(
        &self,
        platform: &Platform,
        job_id: Option<&str>,
        outcome: Outcome,
        detail: String,
    ) -> AuditEvent {
        AuditEvent {
            at: platform.now(),
            actor: self.actor().clone(),
            company_id: Some(self.company_id().to_string()),
            action: Action::CompanyRestore,
            target: job_id.map(|id| format!("restore:{id}")),
            outcome,
            detail: Some(detail),
        }
    }
}

impl CompanyScope {
    /// The company's restores on this node, newest first (reached through
    /// a recorded read, `restores.list`).
    pub fn restore_jobs(&self, platform: &Platform) -> Vec<RestoreJob> {
        platform.restores.of_company(self.company_id())
    }

    pub fn restore_job(&self, platform: &Platform, id: &str) -> ServiceResult<RestoreJob> {
        platform
            .restores
            .get(self.company_id(), id)
            .ok_or_else(|| ServiceError::not_found("restore"))
    }
}

/// The point in words (audit details, pages).
pub fn describe(target: RestoreTarget) -> String {
    match target {
        RestoreTarget::Latest => "the latest backed-up change".into(),
        RestoreTarget::Seq(n) => format!("journal record {n}"),
        RestoreTarget::Time(t) => t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string()),
    }
}

async fn run(
    platform: Arc<Platform>,
    source: String,
    id: String,
    target: RestoreTarget,
) -> anyhow::Result<backup::Restored> {
    let jobs = Arc::clone(&platform);
    let (company, job) = (source.clone(), id.clone());
    let progress: backup::Progress = Arc::new(move |done, total| {
        jobs.restores.progress(&company, &job, done, total);
    });
    backup::restore_with_progress(&platform, &source, target, Some(progress)).await
}

/// A running job's slot: ending it is certain. Dropped without `conclude`
/// (an error, a dropped request, a panic), it marks the job failed.
struct JobGuard {
    platform: Arc<Platform>,
    job: RestoreJob,
    actor: wb_store::Actor,
    done: bool,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if !self.done {
            self.platform.restores.finish(
                &self.job.source,
                &self.job.id,
                RestoreState::Failed {
                    reason: "the restore was interrupted".into(),
                },
                self.platform.now(),
            );
        }
    }
}

/// Records how the restore ended: the company's trail, for a failure an
/// alert and the log (with the details the customer is not shown), and last
/// the job, so whoever sees it end also finds its outcome on record.
async fn conclude(mut guard: JobGuard, outcome: anyhow::Result<backup::Restored>) {
    let platform = Arc::clone(&guard.platform);
    let (source, id) = (guard.job.source.clone(), guard.job.id.clone());
    let at = platform.now();
    let (state, event_outcome, detail) = match outcome {
        Ok(restored) => {
            let detail = format!(
                "restored into company:{} ({}) up to journal record {}",
                restored.company.id, restored.company.name, restored.last_seq
            );
            let state = RestoreState::Done {
                company_id: restored.company.id,
                company_name: restored.company.name,
                last_seq: restored.last_seq,
            };
            (state, Outcome::Success, detail)
        }
        Err(e) => {
            tracing::error!(company = %source, restore = %id, error = format!("{e:#}"), "a customer's restore failed");
            let draft = AlertDraft {
                rule: RESTORE_FAILED_RULE,
                severity: Severity::Medium,
                dedupe_key: format!("{RESTORE_FAILED_RULE}:{source}"),
                title: format!("A restore of company {source} failed"),
                detail: format!("restore {id}: see the server log"),
                company_id: Some(source.clone()),
                at,
            };
            if let Err(e) = platform.alerts.raise(&draft, at).await {
                tracing::error!(error = %e, "cannot raise the restore alert");
            }
            let reason =
                "the backups could not be replayed to that point; the operators have been alerted"
                    .to_string();
            (
                RestoreState::Failed {
                    reason: reason.clone(),
                },
                Outcome::Failure,
                reason,
            )
        }
    };
    let event = AuditEvent {
        at,
        actor: guard.actor.clone(),
        company_id: Some(source.clone()),
        action: Action::CompanyRestore,
        target: Some(format!("restore:{id}")),
        outcome: event_outcome,
        detail: Some(detail),
    };
    match platform.tenant(&source).await {
        Ok(store) => {
            let recorded = store.record(event).await;
            if let Err(e) = platform
                .checked(&source, Action::CompanyRestore, recorded)
                .await
            {
                tracing::error!(company = %source, restore = %id, error = %e, "the restore's outcome could not be recorded");
            }
        }
        Err(e) => {
            tracing::error!(company = %source, restore = %id, error = %e, "the restore's outcome could not be recorded")
        }
    }
    platform.restores.finish(&source, &id, state, at);
    guard.done = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_restore_point_lies_between_creation_and_now() {
        let created = datetime!(2026-01-01 0:00 UTC);
        let now = datetime!(2026-06-01 0:00 UTC);
        let ok = |t| check_target(t, created, now).is_ok();
        assert!(ok(RestoreTarget::Latest));
        assert!(ok(RestoreTarget::Seq(0)));
        assert!(!ok(RestoreTarget::Seq(-1)));
        assert!(ok(RestoreTarget::Time(created)));
        assert!(ok(RestoreTarget::Time(now)));
        assert!(!ok(RestoreTarget::Time(now + time::Duration::seconds(1))));
        assert!(!ok(RestoreTarget::Time(
            created - time::Duration::seconds(1)
        )));
    }

    #[test]
    fn only_the_exact_name_confirms() {
        assert!(confirms("Lindqvist Bakery", "Lindqvist Bakery"));
        assert!(confirms("  Lindqvist Bakery ", "Lindqvist Bakery"));
        assert!(!confirms("lindqvist bakery", "Lindqvist Bakery"));
        assert!(!confirms("Lindqvist", "Lindqvist Bakery"));
        assert!(!confirms("", ""));
        assert!(!confirms("  ", "  "));
    }
}
