//! Telling companies about staff access that changes by time alone: a grant
//! that opens at its requested start, one that ends at its end, a request
//! that expires unapproved, and a legal mandate's grant once it may be
//! disclosed. Decisions are told when they are made (`grants.rs`); this job
//! tells the rest exactly once (`grant_notices` records what each company
//! was last told; of two nodes only the one that records it sends it).
//!
//! It also sends each company's owners and admins a weekly digest of the
//! staff access of the past week (Monday to Monday, UTC), with what was done
//! under each grant; a company without staff access that week gets none.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wb_core::grants::{Grant, GrantState};
use wb_core::Role;

use crate::dto::rfc3339;
use crate::error::ServiceResult;
use crate::mail;
use crate::mailer::Message;
use crate::platform::Platform;

/// How often the job looks for changes.
pub const NOTICE_EVERY: Duration = Duration::from_secs(10);
/// The most grants looked at in one round.
const GRANTS_PER_ROUND: u32 = 1_000;
/// The job's lease (one node tells at a time).
const LEASE: &str = "grant-notices";
/// The start (unix seconds) of the week after the last digests all sent.
pub const DIGEST_CURSOR: &str = "grant-digest-week";

/// The same for one company.
fn company_digest_cursor(company_id: &str) -> String {
    format!("grant-digest-week:{company_id}")
}
const JOB: &str = "grant-notices";

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NoticeRound {
    /// Grants whose company was told of a new state.
    pub told: usize,
    /// Grants (or companies, for the digest) whose notice failed.
    pub failed: usize,
    /// Companies sent a weekly digest.
    pub digests: usize,
}

/// The subject of a notice that `grant` is now `state`.
fn subject(grant: &Grant, state: GrantState) -> String {
    match state {
        GrantState::Active => "Work-books staff access to your books has started".into(),
        GrantState::Pending => "A Work-books staff member asks for access to your books".into(),
        GrantState::Expired if grant.opens_at().is_none() => {
            "A staff access request expired without approval".into()
        }
        GrantState::Expired | GrantState::Denied | GrantState::Revoked => {
            "Work-books staff access to your books has ended".into()
        }
    }
}

/// Monday 00:00 UTC of the week holding `now`.
pub fn week_start(now: OffsetDateTime) -> OffsetDateTime {
    let now = now.to_offset(time::UtcOffset::UTC);
    let back = i64::from(now.weekday().number_days_from_monday());
    (now.date() - time::Duration::days(back))
        .midnight()
        .assume_utc()
}

/// Whether `grant` concerns the week `[from, to)`: asked for, open or ended
/// in it.
fn in_week(grant: &Grant, from: OffsetDateTime, to: OffsetDateTime) -> bool {
    let asked = grant.requested_at >= from && grant.requested_at < to;
    let open = match (grant.opens_at(), grant.closes_at()) {
        (Some(opens), Some(closes)) => {
            let closes = grant
                .ending
                .as_ref()
                .map_or(closes, |e| e.decision.at.min(closes));
            opens < to && closes > from
        }
        _ => false,
    };
    asked || open
}

impl Platform {
    /// Tells each company of the grant states it has not been told yet.
    pub async fn tell_grant_changes(&self) -> ServiceResult<NoticeRound> {
        let now = self.now();
        let mut round = NoticeRound::default();
        for stored in self.control.grants_to_tell(GRANTS_PER_ROUND).await? {
            let grant = stored.grant;
            let unit = crate::runner::unit(self, JOB, &grant.id, Some(&grant.company_id), async {
                self.tell_one(&grant, now).await
            })
            .await;
            match unit {
                Ok(Ok(true)) => round.told += 1,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(grant = %grant.id, error = %e, "a grant notice failed; retried next round");
                    round.failed += 1;
                }
                Err(_) => round.failed += 1,
            }
        }
        Ok(round)
    }

    async fn tell_one(&self, grant: &Grant, now: OffsetDateTime) -> ServiceResult<bool> {
        if !grant.disclosed_to_company(now) {
            return Ok(false);
        }
        let state = grant.state(now);
        let told = self.control.grant_told(&grant.id).await?;
        if told.as_deref() == Some(state.as_str()) {
            return Ok(false);
        }
        // Recorded first: of two nodes, only the one that records it tells.
        if !self
            .control
            .mark_grant_told(&grant.id, state.as_str())
            .await?
        {
            return Ok(false);
        }
        let mut subject = subject(grant, state);
        if grant.legal_mandate.is_some() && told.is_none() {
            subject = format!("{subject} (under a legal mandate, disclosed now)");
        }
        if let Err(e) = self.tell_owners(grant, &subject).await {
            // Not sent: put back what was told, so the next round tries again.
            if let Err(reset) = self
                .control
                .reset_grant_told(&grant.id, told.as_deref())
                .await
            {
                tracing::error!(grant = %grant.id, error = %reset, "a failed grant notice could not be put back");
            }
            return Err(e);
        }
        Ok(true)
    }

    async fn owners_and_admins(&self, company_id: &str) -> ServiceResult<Vec<String>> {
        Ok(self
            .control
            .members(company_id)
            .await?
            .into_iter()
            .filter(|m| matches!(m.role, Role::Owner | Role::Admin))
            .map(|m| m.email)
            .collect())
    }

    pub(crate) async fn tell_owners(&self, grant: &Grant, subject: &str) -> ServiceResult<()> {
        let body = format!(
            "{subject}.\n\nGrant {id}: {scope} for {minutes} minutes, asked by {by}.\nReason: {reason}\n\
             Opens: {opens}\nCloses: {closes}\n\n\
             You can see every grant and what was done under it, and revoke it, on the access page of your company.\n",
            id = grant.id,
            scope = grant.scope,
            minutes = grant.duration.whole_minutes(),
            by = grant.requested_by,
            reason = grant.reason,
            opens = grant.opens_at().map_or_else(|| "not approved".into(), rfc3339),
            closes = grant.closes_at().map_or_else(|| "-".into(), rfc3339),
        );
        for to in self.owners_and_admins(&grant.company_id).await? {
            let message = Message {
                to,
                subject: subject.to_string(),
                body: body.clone(),
            };
            mail::queue(self, &message).await?;
        }
        Ok(())
    }

    /// Sends the weekly digests when a week has ended since the last ones.
    /// Each company's digest is recorded as sent on its own, so a company
    /// that fails is tried again without sending the others theirs twice.
    pub async fn send_grant_digests(&self) -> ServiceResult<NoticeRound> {
        let mut round = NoticeRound::default();
        let to = week_start(self.now());
        let week = to.unix_timestamp();
        if self.control.cursor(DIGEST_CURSOR).await? >= week {
            return Ok(round);
        }
        let from = to - time::Duration::weeks(1);
        for company in self.control.companies().await? {
            if company.status == wb_store::CompanyStatus::Destroyed {
                continue;
            }
            let cursor = company_digest_cursor(&company.id);
            let unit = crate::runner::unit(self, JOB, &company.id, Some(&company.id), async {
                if self.control.cursor(&cursor).await? >= week {
                    return Ok(false);
                }
                let sent = self
                    .digest_for(&company.id, &company.name, from, to)
                    .await?;
                self.control.set_cursor(&cursor, week).await?;
                Ok::<_, crate::error::ServiceError>(sent)
            })
            .await;
            match unit {
                Ok(Ok(true)) => round.digests += 1,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(company = %company.id, error = %e, "a weekly access digest failed; tried again next round");
                    round.failed += 1;
                }
                Err(_) => round.failed += 1,
            }
        }
        if round.failed == 0 {
            self.control.set_cursor(DIGEST_CURSOR, week).await?;
        }
        Ok(round)
    }

    async fn digest_for(
        &self,
        company_id: &str,
        name: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> ServiceResult<bool> {
        let now = self.now();
        let grants: Vec<Grant> = self
            .control
            .company_grants(company_id, crate::grants::MAX_GRANTS_LISTED)
            .await?
            .into_iter()
            .map(|s| s.grant)
            .filter(|g| g.disclosed_to_company(now) && in_week(g, from, to))
            .collect();
        if grants.is_empty() {
            return Ok(false);
        }
        let mut body = format!(
            "Staff access to the books of {name} from {} to {} (UTC):\n\n",
            from.date(),
            (to - time::Duration::days(1)).date()
        );
        for grant in &grants {
            let actions = self.grant_actions(grant).await?;
            let in_week = actions
                .iter()
                .filter(|a| {
                    time::OffsetDateTime::parse(
                        &a.at,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .is_ok_and(|at| at >= from && at < to)
                })
                .count();
            body.push_str(&format!(
                "- {id} ({scope}), asked by {by}: {state} now; opened {opens}, closes {closes}; \
                 {in_week} actions this week.\n  Reason: {reason}\n",
                id = grant.id,
                scope = grant.scope,
                by = grant.requested_by,
                state = grant.state(now),
                opens = grant.opens_at().map_or_else(|| "never".into(), rfc3339),
                closes = grant.closes_at().map_or_else(|| "-".into(), rfc3339),
                reason = grant.reason,
            ));
        }
        body.push_str("\nThe access page of your company shows every grant and every action taken under it.\n");
        let subject = format!("Weekly staff access report for {name}");
        for to in self.owners_and_admins(company_id).await? {
            mail::queue(
                self,
                &Message {
                    to,
                    subject: subject.clone(),
                    body: body.clone(),
                },
            )
            .await?;
        }
        Ok(true)
    }

    /// One round of the job: notices, then digests.
    pub async fn grant_notice_round(&self) -> ServiceResult<NoticeRound> {
        // Either part failing does not keep the other from running.
        let notices = self.tell_grant_changes().await;
        let digests = self.send_grant_digests().await;
        let mut round = NoticeRound::default();
        match notices {
            Ok(n) => round = n,
            Err(e) => {
                tracing::warn!(error = %e, "grant notices failed this round");
                round.failed += 1;
            }
        }
        match digests {
            Ok(d) => {
                round.digests = d.digests;
                round.failed += d.failed;
            }
            Err(e) => {
                tracing::warn!(error = %e, "weekly access digests failed this round");
                round.failed += 1;
            }
        }
        Ok(round)
    }
}

/// Runs a round every `every` on the node that holds the lease.
pub fn spawn(
    platform: Arc<Platform>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if crate::runner::hold_lease(&*platform.control, &platform.node_id, LEASE).await {
                let round = platform.grant_notice_round();
                match crate::runner::unit(&platform, JOB, "round", None, round).await {
                    Ok(Ok(_)) | Err(_) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "grant notice round failed; retrying")
                    }
                }
            }
            if crate::runner::pause(&mut stop, every).await {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Weekday;

    #[test]
    fn weeks_start_on_monday_midnight_utc() {
        assert_eq!(
            week_start(datetime!(2026-12-04 14:33 UTC)),
            datetime!(2026-11-30 00:00 UTC)
        );
        assert_eq!(
            week_start(datetime!(2026-11-30 00:00 UTC)),
            datetime!(2026-11-30 00:00 UTC)
        );
        assert_eq!(
            week_start(datetime!(2026-11-29 23:59:59 UTC)),
            datetime!(2026-11-23 00:00 UTC)
        );
        assert_eq!(
            week_start(datetime!(2026-12-04 14:33 UTC)).weekday(),
            Weekday::Monday
        );
    }
}
