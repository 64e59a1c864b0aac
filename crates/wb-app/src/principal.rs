//! Who a valid token belongs to.

use wb_core::Role;

/// An authenticated caller. Its `Debug` leaves token hashes out.
#[derive(Clone)]
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
        /// Their roles now (a grant is used only while one of them may ask
        /// for grants).
        roles: Vec<wb_core::staff::StaffRole>,
    },
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::User {
                user_id,
                started,
                second_factor,
                ..
            } => f
                .debug_struct("User")
                .field("user_id", user_id)
                .field("token_hash", &"***")
                .field("started", started)
                .field("second_factor", second_factor)
                .finish(),
            Principal::ApiKey {
                key_id,
                company_id,
                role,
            } => f
                .debug_struct("ApiKey")
                .field("key_id", key_id)
                .field("company_id", company_id)
                .field("role", role)
                .finish(),
            Principal::Staff {
                staff_id, roles, ..
            } => f
                .debug_struct("Staff")
                .field("staff_id", staff_id)
                .field("token_hash", &"***")
                .field("roles", roles)
                .finish(),
        }
    }
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
