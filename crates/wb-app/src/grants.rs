//! Staff access grants as a service: a staff member asks, the company (an
//! owner or admin) and management (a manager who is not the requester)
//! decide, and the company sees every grant that may be disclosed to it.
//! The rules are `wb_core::grants`; using a grant is the door's business
//! (`access.rs`), not this module's.
//!
//! Every request and decision is an event in the control trail carrying the
//! company's id; owners and admins are told by email of each request,
//! activation and end.

use time::OffsetDateTime;
use wb_core::grants::{
    check_request, Decision, Grant, GrantError, GrantRequest, GrantScope, GrantState, LegalMandate,
    Side,
};
use wb_core::staff::{self, StaffView};
use wb_core::Action;
use wb_store::staff::StoredGrant;
use wb_store::{Actor, AuditEvent, CompanyStatus, Outcome, StoreError};

use crate::access::CompanyScope;
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::staff::StaffCaller;

/// The most grants a list answers.
pub const MAX_GRANTS_LISTED: u32 = 500;
/// The most requests one staff member may have waiting for one company:
/// each emails the company's owners, so requests are not a mail flood.
pub const MAX_PENDING_PER_COMPANY: usize = 3;

/// What a staff member asks for.
#[derive(Debug, Clone)]
pub struct GrantAsk {
    pub company_id: String,
    pub reason: String,
    pub scope: GrantScope,
    pub duration_minutes: u32,
    pub ticket: Option<String>,
    pub legal_mandate: Option<LegalMandate>,
    pub starts_at: Option<OffsetDateTime>,
}

/// A decision on a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decide {
    /// `mandate_reference`: a legal mandate's reference, quoted by the
    /// manager who approves it.
    Approve {
        mandate_reference: Option<String>,
    },
    Deny,
    Revoke,
}

impl Decide {
    fn action(&self) -> Action {
        match self {
            Decide::Approve { .. } => Action::GrantApprove,
            Decide::Deny => Action::GrantDeny,
            Decide::Revoke => Action::GrantRevoke,
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            Decide::Approve { .. } => "approved",
            Decide::Deny => "denied",
            Decide::Revoke => "revoked",
        }
    }
}

/// A grant's refusal in the service's words.
pub fn grant_error(e: GrantError) -> ServiceError {
    let detail = e.to_string();
    match e {
        GrantError::Reason
        | GrantError::Duration(_)
        | GrantError::Ticket
        | GrantError::MandateReference
        | GrantError::Start
        | GrantError::Disclosure => ServiceError::unprocessable("invalid-grant", detail),
        GrantError::MandateMismatch => ServiceError::unprocessable("mandate-mismatch", detail),
        GrantError::WrongRealm => ServiceError::forbidden(detail),
        GrantError::SelfApproval => ServiceError::new(
            crate::error::ErrorKind::Forbidden,
            "self-approval",
            "Forbidden",
            detail,
        ),
        GrantError::AlreadyDecided
        | GrantError::Ended(_)
        | GrantError::AlreadyApproved
        | GrantError::NotApproved
        | GrantError::MandateNeedsNoCompany => ServiceError::conflict("grant-conflict", detail),
    }
}

fn changed_meanwhile(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict(_) => ServiceError::conflict(
            "grant-changed",
            "the grant was decided by someone else meanwhile; read it again",
        ),
        other => other.into(),
    }
}

fn grant_event(
    actor: &Actor,
    action: Action,
    grant: &Grant,
    outcome: Outcome,
    detail: String,
    at: OffsetDateTime,
) -> AuditEvent {
    AuditEvent {
        at,
        actor: actor.clone(),
        company_id: Some(grant.company_id.clone()),
        action,
        target: Some(format!("grant:{}", grant.id)),
        outcome,
        detail: Some(detail),
    }
}

/// A new grant id: `grt_` and 20 lowercase hex digits.
pub fn new_grant_id() -> String {
    format!("grt_{}", &uuid::Uuid::new_v4().simple().to_string()[..20])
}

/// Whether `id` can be a grant id (checked before it is looked up).
pub fn is_grant_id(id: &str) -> bool {
    id.strip_prefix("grt_").is_some_and(|hex| {
        hex.len() == 20
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn apply(
    grant: &mut Grant,
    side: Side,
    decide: &Decide,
    decision: Decision,
) -> Result<(), GrantError> {
    match decide {
        Decide::Approve { mandate_reference } => {
            grant.approve(side, decision, mandate_reference.as_deref())
        }
        Decide::Deny => grant.deny(side, decision),
        Decide::Revoke => grant.revoke(side, decision),
    }
}

impl Platform {
    /// Refuses a staff request, on record (`staff.refused`, which the
    /// monitor alerts on).
    pub async fn refuse_staff(
        &self,
        staff: &StaffCaller,
        company_id: Option<&str>,
        what: String,
    ) -> ServiceError {
        // A company id from the request: bounded before it is recorded.
        let company_id = company_id.map(|c| c.chars().take(64).collect::<String>());
        let event = AuditEvent {
            at: self.now(),
            actor: staff.actor.clone(),
            company_id: company_id.clone(),
            action: Action::StaffRefused,
            target: company_id.map(|c| format!("company:{c}")),
            outcome: Outcome::Failure,
            detail: Some(what.clone()),
        };
        if let Err(e) = self.control.audit(&event).await {
            tracing::error!(error = %e, "a refused staff request could not be recorded");
            return ServiceError::audit_unavailable();
        }
        ServiceError::forbidden(what)
    }

    /// 403 on record unless one of the staff member's roles opens `view`.
    pub async fn require_staff_view(
        &self,
        staff: &StaffCaller,
        view: StaffView,
        company_id: Option<&str>,
    ) -> ServiceResult<()> {
        if staff::opens(&staff.roles, view) {
            return Ok(());
        }
        Err(self
            .refuse_staff(
                staff,
                company_id,
                format!("no role of this staff member opens {view:?}"),
            )
            .await)
    }

    /// A staff member asks for access to a company's content.
    pub async fn request_grant(&self, staff: &StaffCaller, ask: GrantAsk) -> ServiceResult<Grant> {
        self.require_staff_view(staff, StaffView::RequestGrants, Some(&ask.company_id))
            .await?;
        let company = self
            .control
            .company(&ask.company_id)
            .await?
            .filter(|c| c.status == CompanyStatus::Active)
            .ok_or_else(|| ServiceError::not_found("company"))?;
        let now = self.now();
        let waiting = self
            .control
            .live_grants(&staff.actor.id, &company.id)
            .await?
            .iter()
            .filter(|s| s.grant.state(now) == GrantState::Pending && s.grant.opens_at().is_none())
            .count();
        if waiting >= MAX_PENDING_PER_COMPANY {
            return Err(ServiceError::too_many(
                format!(
                    "at most {MAX_PENDING_PER_COMPANY} requests may wait for one company: \
                     let one be decided or ask management to deny it"
                ),
                3600,
            ));
        }
        let request = GrantRequest {
            company_id: company.id.clone(),
            requested_by: staff.actor.id.clone(),
            reason: ask.reason,
            scope: ask.scope,
            duration_minutes: ask.duration_minutes,
            ticket: ask.ticket,
            legal_mandate: ask.legal_mandate,
            starts_at: ask.starts_at,
        };
        check_request(&request, self.staff_limits().grant_max_minutes, now).map_err(grant_error)?;
        let grant = Grant::new(new_grant_id(), request, now);
        let event = grant_event(
            &staff.actor,
            Action::GrantRequest,
            &grant,
            Outcome::Success,
            format!(
                "{} for {} minutes: {}",
                grant.scope,
                grant.duration.whole_minutes(),
                grant.reason
            ),
            now,
        );
        self.control.create_grant(&grant, &event).await?;
        self.tell_company(
            &grant,
            "A Work-books staff member asks for access to your books",
            now,
        )
        .await;
        Ok(grant)
    }

    /// Management's decision (a manager; never on their own request).
    pub async fn management_decides(
        &self,
        staff: &StaffCaller,
        grant_id: &str,
        decide: Decide,
    ) -> ServiceResult<Grant> {
        self.require_staff_view(staff, StaffView::ApproveGrants, None)
            .await?;
        let stored = self.stored_grant(grant_id).await?;
        self.decide(stored, Side::Management, &staff.actor, decide)
            .await
    }

    /// Grants as staff see them: a manager every grant, others their own.
    pub async fn staff_grants(&self, staff: &StaffCaller) -> ServiceResult<Vec<Grant>> {
        let mine = (!staff::opens(&staff.roles, StaffView::ApproveGrants))
            .then_some(staff.actor.id.as_str());
        Ok(self
            .control
            .grants(mine, MAX_GRANTS_LISTED)
            .await?
            .into_iter()
            .map(|s| s.grant)
            .collect())
    }

    async fn stored_grant(&self, grant_id: &str) -> ServiceResult<StoredGrant> {
        if !is_grant_id(grant_id) {
            return Err(ServiceError::not_found("grant"));
        }
        self.control
            .grant(grant_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("grant"))
    }

    async fn decide(
        &self,
        stored: StoredGrant,
        side: Side,
        actor: &Actor,
        decide: Decide,
    ) -> ServiceResult<Grant> {
        let now = self.now();
        let mut grant = stored.grant;
        let was = grant.state(now);
        let decision = Decision {
            by: actor.id.clone(),
            at: now,
        };
        // One person on both sides (a staff member who is also the
        // company's owner or admin, by email) is refused like self-approval.
        let same_person = match decide {
            Decide::Approve { .. } => self.one_person_both_sides(&grant, side, actor).await?,
            _ => false,
        };
        let applied = if same_person {
            Err(wb_core::grants::GrantError::SelfApproval)
        } else {
            apply(&mut grant, side, &decide, decision)
        };
        if let Err(e) = applied {
            let refused = grant_event(
                actor,
                decide.action(),
                &grant,
                Outcome::Failure,
                format!("{} refused: {e}", side.as_str()),
                now,
            );
            self.control.audit(&refused).await?;
            return Err(grant_error(e));
        }
        let after = grant.state(now);
        let event = grant_event(
            actor,
            decide.action(),
            &grant,
            Outcome::Success,
            format!("{} by the {}; now {after}", decide.verb(), side.as_str()),
            now,
        );
        self.control
            .update_grant(&grant, stored.version, &event)
            .await
            .map_err(changed_meanwhile)?;
        // A revocation holds at once on this node (within a second on others).
        self.staff_cache.forget_access();
        // Both sides approved a grant that opens later: told now, and
        // again when it opens (the notice job).
        let opens = grant.opens_at().filter(|_| after == GrantState::Pending);
        if after != was || matches!(decide, Decide::Revoke | Decide::Deny) || opens.is_some() {
            let subject = match (after, opens) {
                (GrantState::Active, _) => {
                    "Work-books staff access to your books has started".into()
                }
                (GrantState::Pending, Some(opens)) => format!(
                    "Work-books staff access to your books was approved and opens at {}",
                    crate::dto::rfc3339(opens)
                ),
                (GrantState::Pending, None) => {
                    "A staff access request was approved by one side".into()
                }
                _ => "Work-books staff access to your books has ended".into(),
            };
            self.tell_company(&grant, &subject, now).await;
        }
        Ok(grant)
    }

    /// Emails the company's owners and admins about a grant, unless a legal
    /// mandate forbids telling them yet, and records what they were told so
    /// the notice job does not tell it again; when it cannot be sent, what
    /// was told before is put back and the job tells it on a later round.
    pub(crate) async fn tell_company(&self, grant: &Grant, subject: &str, now: OffsetDateTime) {
        if !grant.disclosed_to_company(now) {
            return;
        }
        let told = async {
            let before = self.control.grant_told(&grant.id).await?;
            let claimed = self
                .control
                .mark_grant_told(&grant.id, grant.state(now).as_str())
                .await?;
            if let Err(e) = self.tell_owners(grant, subject).await {
                if claimed {
                    self.control
                        .reset_grant_told(&grant.id, before.as_deref())
                        .await?;
                }
                return Err(e);
            }
            Ok::<_, ServiceError>(())
        };
        if let Err(e) = told.await {
            tracing::warn!(grant = %grant.id, error = %e, "a grant notice was not sent; the notice job tries again");
        }
    }
}

impl Platform {
    /// The email behind an actor id (`user:ID` or `staff:ID`), if any.
    async fn email_of(&self, actor_id: &str) -> ServiceResult<Option<String>> {
        if let Some(id) = actor_id.strip_prefix("user:") {
            return Ok(self.control.user(id).await?.map(|u| u.email));
        }
        if let Some(id) = actor_id.strip_prefix("staff:") {
            return Ok(self.control.staff(id).await?.map(|s| s.email));
        }
        Ok(None)
    }

    /// Whether `actor` approving on `side` would be the person who asked,
    /// or who approved on the other side, under another realm's account.
    async fn one_person_both_sides(
        &self,
        grant: &Grant,
        side: Side,
        actor: &Actor,
    ) -> ServiceResult<bool> {
        let Some(mine) = self.email_of(&actor.id).await? else {
            return Ok(false);
        };
        let other_approval = match side {
            Side::Company => grant.management_approval.as_ref(),
            Side::Management => grant.company_approval.as_ref(),
        };
        let mut others = vec![grant.requested_by.clone()];
        others.extend(other_approval.map(|d| d.by.clone()));
        for other in others {
            if self.email_of(&other).await?.as_deref() == Some(mine.as_str()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The company's grants that a legal mandate still hides from it.
    pub async fn hidden_grants(&self, company_id: &str) -> ServiceResult<Vec<String>> {
        let now = self.now();
        Ok(self
            .control
            .company_grants(company_id, MAX_GRANTS_LISTED)
            .await?
            .into_iter()
            .filter(|s| !s.grant.disclosed_to_company(now))
            .map(|s| s.grant.id)
            .collect())
    }
}

impl CompanyScope {
    /// The company's grants (newest first), the ones a legal mandate still
    /// hides left out.
    pub async fn access_grants(&self, platform: &Platform) -> ServiceResult<Vec<Grant>> {
        let now = platform.now();
        Ok(platform
            .control
            .company_grants(self.company_id(), MAX_GRANTS_LISTED)
            .await?
            .into_iter()
            .map(|s| s.grant)
            .filter(|g| g.disclosed_to_company(now))
            .collect())
    }

    /// The company's decision on one of its grants.
    pub async fn decide_grant(
        &self,
        platform: &Platform,
        grant_id: &str,
        decide: Decide,
    ) -> ServiceResult<Grant> {
        let stored = platform.stored_grant(grant_id).await?;
        if stored.grant.company_id != self.company_id()
            || !stored.grant.disclosed_to_company(platform.now())
        {
            return Err(ServiceError::not_found("grant"));
        }
        platform
            .decide(stored, Side::Company, self.actor(), decide)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_ids_have_one_shape() {
        let id = new_grant_id();
        assert!(is_grant_id(&id), "{id}");
        for bad in [
            "",
            "grt_",
            "grt_0123456789abcdef012",
            "grt_0123456789ABCDEF0123",
            "rst_0123456789abcdef0123",
        ] {
            assert!(!is_grant_id(bad), "{bad}");
        }
    }

    #[test]
    fn refusals_map_to_the_right_problems() {
        assert_eq!(grant_error(GrantError::Reason).slug, "invalid-grant");
        assert_eq!(grant_error(GrantError::SelfApproval).slug, "self-approval");
        assert_eq!(grant_error(GrantError::NotApproved).slug, "grant-conflict");
        assert_eq!(
            grant_error(GrantError::MandateMismatch).slug,
            "mandate-mismatch"
        );
    }
}
