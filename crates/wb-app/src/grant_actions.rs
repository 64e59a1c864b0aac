//! What a staff member did under an access grant, read back from the
//! central audit collection: every event the door and the store recorded
//! under the grant carries `grant:<id>` as its authentication, so the
//! grant's history is a query, not a second record that could disagree.
//!
//! The central collection is filled by the forwarder, so an action shows
//! here a few seconds after it happened.

use time::format_description::well_known::Rfc3339;
use time::Duration;
use wb_core::grants::Grant;
use wb_store::AuditQuery;

use crate::error::ServiceResult;
use crate::platform::Platform;

/// The most actions listed for one grant (the audit trail holds them all).
pub const MAX_ACTIONS_LISTED: u32 = 1_000;

/// One thing done under a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantAction {
    pub at: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
}

/// The authentication every event under `grant_id` carries.
pub fn grant_auth(grant_id: &str) -> String {
    format!("grant:{grant_id}")
}

impl Platform {
    /// The actions taken under `grant`, oldest first (none for a grant that
    /// never opened).
    pub async fn grant_actions(&self, grant: &Grant) -> ServiceResult<Vec<GrantAction>> {
        let Some(opened) = grant.opens_at() else {
            return Ok(Vec::new());
        };
        let auth = grant_auth(&grant.id);
        // A second early: `since` compares text, and a whole second sorts
        // after its own fractions.
        let since = (opened - Duration::seconds(1)).replace_nanosecond(0);
        let query = AuditQuery {
            limit: MAX_ACTIONS_LISTED,
            company_id: Some(grant.company_id.clone()),
            actor: Some(grant.requested_by.clone()),
            since: since.ok().and_then(|s| s.format(&Rfc3339).ok()),
            ..AuditQuery::default()
        };
        Ok(self
            .control
            .central_events(query)
            .await?
            .into_iter()
            .map(|c| c.event)
            .filter(|e| e.auth == auth)
            .map(|e| GrantAction {
                at: e.at,
                action: e.action,
                target: e.target,
                outcome: e.outcome,
            })
            .collect())
    }
}
