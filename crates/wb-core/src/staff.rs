//! The platform's staff: their roles and what each role may see without an
//! access grant. Staff are not company members; customer content is reached
//! only under a grant (`grants`).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StaffRole {
    /// Helps customers: account basics only.
    Support,
    /// Product acceptance and licensing: summary counts only.
    Sales,
    /// Runs the platform's security: alerts, the central audit.
    Security,
    /// Runs the platform: alerts, system and backup status.
    Operations,
    /// Approves staff access grants and sandbox restores.
    Management,
}

/// A staff view or action outside customer content: each is open to an
/// explicit list of roles (an allow-list; nothing is open by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffView {
    /// Companies by name or member email, and one company's account basics.
    CompanyBasics,
    /// One company's summary counts.
    CompanySummary,
    /// Alerts: list, acknowledge, resolve.
    Alerts,
    /// System state and each company's backup position.
    SystemStatus,
    /// The central audit trail (without details that carry customer content).
    CentralAudit,
    /// Approve or deny another staff member's access grant.
    ApproveGrants,
    /// Ask for an access grant to a company's content.
    RequestGrants,
}

impl StaffRole {
    pub const ALL: [StaffRole; 5] = [
        StaffRole::Support,
        StaffRole::Sales,
        StaffRole::Security,
        StaffRole::Operations,
        StaffRole::Management,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Support => "support",
            StaffRole::Sales => "sales",
            StaffRole::Security => "security",
            StaffRole::Operations => "operations",
            StaffRole::Management => "management",
        }
    }

    /// Whether this role opens `view`.
    pub fn opens(self, view: StaffView) -> bool {
        use StaffRole::*;
        use StaffView::*;
        match view {
            CompanyBasics => matches!(self, Support | Security | Operations | Management),
            CompanySummary => matches!(self, Sales | Management),
            Alerts | SystemStatus | CentralAudit => {
                matches!(self, Security | Operations | Management)
            }
            ApproveGrants => matches!(self, Management),
            RequestGrants => matches!(self, Support | Security | Operations | Management),
        }
    }
}

/// Whether any of `roles` opens `view`.
pub fn opens(roles: &[StaffRole], view: StaffView) -> bool {
    roles.iter().any(|r| r.opens(view))
}

impl fmt::Display for StaffRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown staff role {0:?}: use support, sales, security, operations or management")]
pub struct UnknownStaffRole(pub String);

impl FromStr for StaffRole {
    type Err = UnknownStaffRole;
    fn from_str(s: &str) -> Result<StaffRole, UnknownStaffRole> {
        StaffRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownStaffRole(s.chars().take(32).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        for role in StaffRole::ALL {
            assert_eq!(role.as_str().parse::<StaffRole>(), Ok(role));
        }
        assert!("admin".parse::<StaffRole>().is_err());
        assert!("".parse::<StaffRole>().is_err());
    }

    #[test]
    fn each_role_opens_exactly_its_views() {
        use StaffView::*;
        let views = [
            CompanyBasics,
            CompanySummary,
            Alerts,
            SystemStatus,
            CentralAudit,
            ApproveGrants,
            RequestGrants,
        ];
        let table = [
            (
                StaffRole::Support,
                [true, false, false, false, false, false, true],
            ),
            (
                StaffRole::Sales,
                [false, true, false, false, false, false, false],
            ),
            (
                StaffRole::Security,
                [true, false, true, true, true, false, true],
            ),
            (
                StaffRole::Operations,
                [true, false, true, true, true, false, true],
            ),
            (
                StaffRole::Management,
                [true, true, true, true, true, true, true],
            ),
        ];
        for (role, expected) in table {
            for (view, open) in views.iter().zip(expected) {
                assert_eq!(role.opens(*view), open, "{role} {view:?}");
            }
        }
        assert!(!opens(&[], CompanyBasics), "no role, no view");
        assert!(opens(
            &[StaffRole::Sales, StaffRole::Support],
            CompanyBasics
        ));
    }
}
