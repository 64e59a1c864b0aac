//! What a staff member did under an access grant, read back from the
//! central audit collection: every event the door and the store recorded
//! under the grant carries `grant:<id>` as its authentication, so the
//! grant's history is a query, not a second record that could disagree.
//!
//! The central collection is filled by the forwarder, so an action shows
//! here a few seconds after it happened.

use wb_core::grants::Grant;

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
        if grant.opens_at().is_none() {
            return Ok(Vec::new());
        }
        // Indexed by company and authentication: only this grant's events
        // are read, however long the company's history.
        Ok(self
            .control
            .central_events_by_auth(
                &grant.company_id,
                &grant_auth(&grant.id),
                MAX_ACTIONS_LISTED,
            )
            .await?
            .into_iter()
            .map(|c| c.event)
            .map(|e| GrantAction {
                at: e.at,
                action: e.action,
                target: e.target,
                outcome: e.outcome,
            })
            .collect())
    }
}
