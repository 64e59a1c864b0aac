//! What staff see without a grant: account basics for support, summary
//! counts for sales. Each view is built field by field from an explicit
//! list (never a record passed through), so a field added to a record does
//! not reach staff. Every view read is an event in the control trail
//! (`staff.view`) before it is answered; a role that does not open the view
//! is refused on record (`staff.refused`).

use time::OffsetDateTime;
use wb_core::staff::StaffView;
use wb_core::Action;
use wb_store::{AuditEvent, CompanyRecord, Outcome};

use crate::error::{ServiceError, ServiceResult};
use crate::platform::{normalize_email, Platform};
use crate::staff::StaffCaller;

/// Companies a search answers per page.
pub const COMPANIES_PER_PAGE: usize = 50;
/// The longest search text.
pub const MAX_QUERY_CHARS: usize = 200;

/// A company in a support search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyListing {
    pub id: String,
    pub name: String,
    pub status: String,
    pub created_at: OffsetDateTime,
}

/// A member as support sees them: never a passphrase hash, a key or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberBasics {
    pub name: Option<String>,
    pub email: String,
    pub role: String,
    pub last_login_at: Option<OffsetDateTime>,
    pub mfa_enrolled: bool,
}

/// Support's view of one company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyBasics {
    pub company: CompanyListing,
    pub members: Vec<MemberBasics>,
}

/// Sales' view of one company: counts only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanySummary {
    pub id: String,
    pub members: usize,
    pub accounts: i64,
    pub entries: i64,
    pub files: i64,
    /// The company's database and its attachments.
    pub storage_bytes: u64,
    /// The latest login of any member.
    pub last_activity: Option<OffsetDateTime>,
}

fn member_basics(m: &wb_store::MemberRecord, mfa_enrolled: bool) -> MemberBasics {
    MemberBasics {
        name: m.name.clone(),
        email: m.email.clone(),
        role: m.role.as_str().to_string(),
        last_login_at: m.last_login_at,
        mfa_enrolled,
    }
}

fn listing(c: &CompanyRecord) -> CompanyListing {
    CompanyListing {
        id: c.id.clone(),
        name: c.name.clone(),
        status: c.status.as_str().to_string(),
        created_at: c.created_at,
    }
}

impl Platform {
    /// Records the view before it is answered; fails closed.
    pub(crate) async fn record_view(
        &self,
        staff: &StaffCaller,
        company_id: Option<&str>,
        what: &str,
    ) -> ServiceResult<()> {
        let event = AuditEvent {
            at: self.now(),
            actor: staff.actor.clone(),
            company_id: company_id.map(str::to_string),
            action: Action::StaffView,
            target: company_id.map(|c| format!("company:{c}")),
            outcome: Outcome::Success,
            detail: Some(what.to_string()),
        };
        self.control.audit(&event).await.map_err(|e| {
            tracing::error!(error = %e, "a staff view could not be recorded; refused");
            ServiceError::audit_unavailable()
        })
    }

    async fn company_or_404(&self, company_id: &str) -> ServiceResult<CompanyRecord> {
        self.control
            .company(company_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("company"))
    }

    /// Companies whose name contains `query` (any case), or of which the
    /// person with that email is a member; newest first, `page` from 0.
    pub async fn staff_find_companies(
        &self,
        staff: &StaffCaller,
        query: Option<&str>,
        page: u32,
    ) -> ServiceResult<Vec<CompanyListing>> {
        self.require_staff_view(staff, StaffView::CompanyBasics, None)
            .await?;
        let query = query.map(str::trim).filter(|q| !q.is_empty());
        if query
            .is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS || q.chars().any(char::is_control))
        {
            return Err(ServiceError::unprocessable(
                "invalid-query",
                format!("q is at most {MAX_QUERY_CHARS} printable characters"),
            ));
        }
        let mut companies = self.control.companies().await?;
        if let Some(q) = query {
            if q.contains('@') {
                let members_of: Vec<String> = match normalize_email(q) {
                    Ok(email) => match self.control.user_by_email(&email).await? {
                        Some(user) => self
                            .control
                            .memberships_of(&user.id)
                            .await?
                            .into_iter()
                            .map(|m| m.company_id)
                            .collect(),
                        None => Vec::new(),
                    },
                    Err(_) => Vec::new(),
                };
                companies.retain(|c| members_of.contains(&c.id));
            } else {
                let q = q.to_lowercase();
                companies.retain(|c| c.name.to_lowercase().contains(&q));
            }
        }
        companies.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        self.record_view(staff, None, "support: company search")
            .await?;
        Ok(companies
            .iter()
            .skip(
                usize::try_from(page)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(COMPANIES_PER_PAGE),
            )
            .take(COMPANIES_PER_PAGE)
            .map(listing)
            .collect())
    }

    /// Support's account basics of one company.
    pub async fn staff_company_basics(
        &self,
        staff: &StaffCaller,
        company_id: &str,
    ) -> ServiceResult<CompanyBasics> {
        self.require_staff_view(staff, StaffView::CompanyBasics, Some(company_id))
            .await?;
        let company = self.company_or_404(company_id).await?;
        let mut members = Vec::new();
        for m in self.control.members(&company.id).await? {
            // What a login of theirs would ask for: any method means enrolled.
            let enrolled = !self.second_factors_of(&m.user_id).await?.is_empty();
            members.push(member_basics(&m, enrolled));
        }
        self.record_view(staff, Some(&company.id), "support: account basics")
            .await?;
        Ok(CompanyBasics {
            company: listing(&company),
            members,
        })
    }

    /// Sales' summary counts of one company.
    pub async fn staff_company_summary(
        &self,
        staff: &StaffCaller,
        company_id: &str,
    ) -> ServiceResult<CompanySummary> {
        self.require_staff_view(staff, StaffView::CompanySummary, Some(company_id))
            .await?;
        let company = self.company_or_404(company_id).await?;
        let members = self.control.members(&company.id).await?;
        // Counts only: the store answers its statistics, no row of content.
        let stats = self.tenant(&company.id).await?.stats().await?;
        self.record_view(staff, Some(&company.id), "sales: summary counts")
            .await?;
        Ok(CompanySummary {
            id: company.id,
            members: members.len(),
            accounts: stats.accounts,
            entries: stats.entries,
            files: stats.files,
            storage_bytes: stats
                .storage_bytes
                .saturating_add(u64::try_from(stats.file_bytes).unwrap_or(0)),
            last_activity: members.iter().filter_map(|m| m.last_login_at).max(),
        })
    }
}

/// The most alerts a list answers.
pub const MAX_ALERTS_LISTED: u32 = 200;

impl Platform {
    /// Security, operations, management: the alerts, newest first.
    pub async fn staff_alerts(
        &self,
        staff: &StaffCaller,
        state: Option<wb_core::monitor::AlertState>,
    ) -> ServiceResult<Vec<crate::monitor_job::AlertView>> {
        self.require_staff_view(staff, StaffView::Alerts, None)
            .await?;
        let alerts = self.alerts.list(state, MAX_ALERTS_LISTED).await?;
        self.record_view(staff, None, "security: alerts").await?;
        Ok(alerts
            .iter()
            .map(crate::monitor_job::AlertView::from)
            .collect())
    }

    /// Acknowledges (`resolve` false) or resolves an alert with a reason;
    /// the alert store records the attempt either way.
    pub async fn staff_triage(
        &self,
        staff: &StaffCaller,
        id: i64,
        resolve: bool,
        reason: &str,
    ) -> ServiceResult<crate::monitor_job::AlertView> {
        self.require_staff_view(staff, StaffView::Alerts, None)
            .await?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control)
        {
            return Err(ServiceError::unprocessable(
                "invalid-reason",
                "reason must be 1 to 500 printable characters",
            ));
        }
        let at = self.now();
        let done = if resolve {
            self.alerts.resolve(id, &staff.actor, reason, at).await
        } else {
            self.alerts.acknowledge(id, &staff.actor, reason, at).await
        };
        match done {
            Ok(alert) => Ok(crate::monitor_job::AlertView::from(&alert)),
            Err(wb_store::StoreError::NotFound(_)) => Err(ServiceError::not_found("alert")),
            Err(wb_store::StoreError::Conflict(detail)) => {
                Err(ServiceError::conflict("alert-state", detail))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use wb_store::{CompanyStatus, MemberRecord};

    /// Every record a view is built from, written out field by field (so a
    /// field added to one does not compile here until it gets a sentinel),
    /// with a sentinel in each: a view shows exactly its own fields' ones.
    #[test]
    fn views_take_exactly_their_fields_from_the_records() {
        let company = CompanyRecord {
            id: "SENTINEL-id".into(),
            name: "SENTINEL-name".into(),
            status: CompanyStatus::Active,
            wrapped_dek: b"SENTINEL-dek".to_vec(),
            created_at: datetime!(2026-01-02 03:04 UTC),
        };
        let shown = format!("{:?}", listing(&company));
        for present in ["SENTINEL-id", "SENTINEL-name", "\"active\"", "2026-01-02"] {
            assert!(shown.contains(present), "{present}: {shown}");
        }
        assert!(!shown.contains("dek"), "{shown}");
        assert!(
            !shown.contains(&format!("{:?}", b"SENTINEL-dek".to_vec())),
            "{shown}"
        );

        let member = MemberRecord {
            user_id: "SENTINEL-user".into(),
            email: "SENTINEL-email".into(),
            name: Some("SENTINEL-person".into()),
            role: wb_core::Role::Accountant,
            last_login_at: Some(datetime!(2026-05-06 07:08 UTC)),
        };
        let shown = format!("{:?}", member_basics(&member, true));
        for present in [
            "SENTINEL-email",
            "SENTINEL-person",
            "accountant",
            "2026-05-06",
            "true",
        ] {
            assert!(shown.contains(present), "{present}: {shown}");
        }
        assert!(!shown.contains("SENTINEL-user"), "{shown}");
    }
}
