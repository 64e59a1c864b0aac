//! What security and operations staff see to run the platform, without an
//! access grant: the system's state, each company's backup position, and
//! the central audit with the details that may carry customer content
//! withheld (`wb_core::audit::staff_detail`). Like the support and sales
//! views, each is built field by field, recorded as `staff.view` before it
//! is answered, and refused on record to a role that does not open it.

use std::collections::BTreeMap;

use wb_core::audit::staff_detail::staff_may_read_detail;
use wb_core::monitor::AlertState;
use wb_core::staff::StaffView;
use wb_store::{AuditQuery, CentralEvent};

use crate::backup::BackupStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::staff::StaffCaller;

/// The most central audit events one page answers.
pub const MAX_AUDIT_PAGE: u32 = 1_000;
/// The most alerts counted for the system state.
const ALERTS_COUNTED: u32 = 10_000;

/// The platform at a glance.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemStatus {
    /// The node that answered.
    pub node: String,
    pub version: &'static str,
    /// Every node registered in the deployment.
    pub nodes: Vec<String>,
    /// Companies by status (`active`, …).
    pub companies: BTreeMap<String, usize>,
    /// Open and acknowledged alerts by severity.
    pub open_alerts: BTreeMap<String, usize>,
    pub acknowledged_alerts: BTreeMap<String, usize>,
}

/// One central audit event as staff see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffAuditEvent {
    pub position: i64,
    pub source: String,
    pub seq: i64,
    pub at: String,
    pub node: String,
    pub actor: String,
    pub auth: String,
    pub client: Option<String>,
    pub company_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    /// None when withheld (or there is none).
    pub detail: Option<String>,
    /// The event has a detail staff may not read.
    pub detail_withheld: bool,
    pub hash: String,
}

impl From<CentralEvent> for StaffAuditEvent {
    fn from(c: CentralEvent) -> Self {
        let e = c.event;
        let open = staff_may_read_detail(&e.action);
        StaffAuditEvent {
            position: c.central_seq,
            source: c.source,
            seq: e.seq,
            at: e.at,
            node: c.node,
            actor: e.actor,
            auth: e.auth,
            client: e.client,
            company_id: e.company_id,
            detail_withheld: !open && e.detail.is_some(),
            detail: if open { e.detail } else { None },
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            hash: e.hash,
        }
    }
}

fn count_by<T>(
    items: impl Iterator<Item = T>,
    key: impl Fn(T) -> String,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for item in items {
        *out.entry(key(item)).or_insert(0) += 1;
    }
    out
}

impl Platform {
    /// Security, operations, management: the system's state.
    pub async fn staff_system_status(&self, staff: &StaffCaller) -> ServiceResult<SystemStatus> {
        self.require_staff_view(staff, StaffView::SystemStatus, None)
            .await?;
        let nodes = self
            .control
            .node_keys()
            .await?
            .into_iter()
            .map(|n| n.id)
            .collect();
        let companies = self.control.companies().await?;
        let alerts = self.alerts.list(None, ALERTS_COUNTED).await?;
        let severity = |a: &&wb_store::alerts::Alert| a.severity.as_str().to_string();
        let status = SystemStatus {
            node: self.node_id.clone(),
            version: env!("CARGO_PKG_VERSION"),
            nodes,
            companies: count_by(companies.iter(), |c| c.status.as_str().to_string()),
            open_alerts: count_by(alerts.iter().filter(|a| a.state == AlertState::Open), |a| {
                severity(&a)
            }),
            acknowledged_alerts: count_by(
                alerts
                    .iter()
                    .filter(|a| a.state == AlertState::Acknowledged),
                |a| severity(&a),
            ),
        };
        self.record_view(staff, None, "operations: system status")
            .await?;
        Ok(status)
    }

    /// Security, operations, management: every company's backup position
    /// (sequence numbers, lag and snapshot time; no content).
    pub async fn staff_backup_status(
        &self,
        staff: &StaffCaller,
    ) -> ServiceResult<Vec<BackupStatus>> {
        self.require_staff_view(staff, StaffView::SystemStatus, None)
            .await?;
        let status = crate::backup::status(self).await.map_err(|e| {
            tracing::error!(error = %e, "backup status could not be read");
            ServiceError::internal()
        })?;
        self.record_view(staff, None, "operations: backup status")
            .await?;
        Ok(status)
    }

    /// Security, operations, management: the central audit, details that
    /// may carry customer content withheld.
    pub async fn staff_central_audit(
        &self,
        staff: &StaffCaller,
        mut query: AuditQuery,
    ) -> ServiceResult<Vec<StaffAuditEvent>> {
        self.require_staff_view(staff, StaffView::CentralAudit, query.company_id.as_deref())
            .await?;
        query.limit = query.limit.clamp(1, MAX_AUDIT_PAGE);
        query.after = query.after.max(0);
        // The company filter shows the company's own events, nothing more.
        query.member_sign_ins = false;
        let events = self.control.central_events(query.clone()).await?;
        self.record_view(
            staff,
            query.company_id.as_deref(),
            "security: central audit",
        )
        .await?;
        Ok(events.into_iter().map(StaffAuditEvent::from).collect())
    }
}
