//! How long staff sessions and access grants may last on this deployment:
//! the defaults, and the bounds a configuration may shorten them within.
//! A leaf (the platform holds one; the staff realm and grants read it).

/// A staff session's absolute length.
pub const STAFF_SESSION_HOURS: i64 = 8;
/// A staff session ends after this long unused.
pub const STAFF_IDLE_MINUTES: i64 = 30;

/// A deployment's limits on staff sessions and grants (the config file's
/// `staff-session-hours`, `staff-idle-minutes`, `grant-max-minutes`): only
/// ever shorter than the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaffLimits {
    /// A staff session's absolute length (1 to 8 hours; default 8).
    pub session_hours: i64,
    /// Unused minutes that end a staff session (1 to 30; default 30).
    pub idle_minutes: i64,
    /// The longest grant (1 to 4,320 minutes; default 4,320, 72 hours).
    pub grant_max_minutes: u32,
}

impl Default for StaffLimits {
    fn default() -> StaffLimits {
        StaffLimits {
            session_hours: STAFF_SESSION_HOURS,
            idle_minutes: STAFF_IDLE_MINUTES,
            grant_max_minutes: wb_core::grants::MAX_DURATION_MINUTES,
        }
    }
}

impl StaffLimits {
    /// Each limit within its bounds, or which one is not.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=STAFF_SESSION_HOURS).contains(&self.session_hours) {
            return Err(format!(
                "staff-session-hours must be 1 to {STAFF_SESSION_HOURS}"
            ));
        }
        if !(1..=STAFF_IDLE_MINUTES).contains(&self.idle_minutes) {
            return Err(format!(
                "staff-idle-minutes must be 1 to {STAFF_IDLE_MINUTES}"
            ));
        }
        let max = wb_core::grants::MAX_DURATION_MINUTES;
        if !(1..=max).contains(&self.grant_max_minutes) {
            return Err(format!("grant-max-minutes must be 1 to {max}"));
        }
        Ok(())
    }
}
