//! Who a valid token belongs to.

use wb_core::Role;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    User {
        user_id: String,
        token_hash: String,
        /// When the session was opened (company session lifetimes).
        started: time::OffsetDateTime,
        /// Whether the session was opened (or later confirmed) with a
        /// second factor (companies that require one).
        second_factor: bool,
    },
    ApiKey {
        key_id: String,
        company_id: String,
        role: Role,
    },
    /// A Work-books staff member (their own realm and sessions). Staff hold
    /// no role in any company: on a company path the door admits them only
    /// under an active access grant whose scope covers the permission.
    Staff {
        staff_id: String,
        token_hash: String,
    },
}

/// The actor id of a staff member (`staff:ID`). Here, not in `staff.rs`,
/// so that the principal (which `platform` reaches) needs nothing of the
/// staff realm's services.
pub fn staff_actor_id(id: &str) -> String {
    format!("staff:{id}")
}

impl Principal {
    pub fn actor_id(&self) -> String {
        match self {
            Principal::User { user_id, .. } => format!("user:{user_id}"),
            Principal::ApiKey { key_id, .. } => format!("api_key:{key_id}"),
            Principal::Staff { staff_id, .. } => staff_actor_id(staff_id),
        }
    }
    pub fn auth_kind(&self) -> &'static str {
        match self {
            Principal::User { .. } => "session",
            Principal::ApiKey { .. } => "api_key",
            Principal::Staff { .. } => "staff_session",
        }
    }
}
