//! The few things the staff console needs that the JSON staff API answers
//! in other shapes: the caller a staff session is at the door (to act under
//! a grant), a staff member's own requests, and management's inbox. Each is
//! a view over the same services (`grants.rs`), with the same refusals.

use wb_core::grants::{Grant, GrantState};
use wb_core::staff::StaffView;

use crate::access::Caller;
use crate::error::ServiceResult;
use crate::platform::Platform;
use crate::principal::Principal;
use crate::staff::StaffCaller;

impl StaffCaller {
    /// This staff session as a caller at the door (`Platform::admit`), which
    /// admits it to a company only under an active access grant.
    pub fn door_caller(&self) -> Caller {
        Caller {
            principal: Principal::Staff {
                staff_id: self.staff_id.clone(),
                token_hash: self.token_hash.clone(),
                roles: self.roles.clone(),
            },
            actor: self.actor.clone(),
        }
    }
}

impl Platform {
    /// The grants this staff member asked for, newest first.
    pub async fn my_grant_requests(&self, staff: &StaffCaller) -> ServiceResult<Vec<Grant>> {
        Ok(self
            .staff_grants(staff)
            .await?
            .into_iter()
            .filter(|g| g.requested_by == staff.actor.id)
            .collect())
    }

    /// Management's inbox: other staff members' grants that wait for a
    /// decision or may still be revoked (pending and active ones). Other
    /// roles are refused on record, as when they try to decide.
    pub async fn management_inbox(&self, staff: &StaffCaller) -> ServiceResult<Vec<Grant>> {
        self.require_staff_view(staff, StaffView::ApproveGrants, None)
            .await?;
        let now = self.now();
        Ok(self
            .staff_grants(staff)
            .await?
            .into_iter()
            .filter(|g| g.requested_by != staff.actor.id)
            .filter(|g| matches!(g.state(now), GrantState::Pending | GrantState::Active))
            .collect())
    }
}
