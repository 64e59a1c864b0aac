//! Policies the services apply, set by the operator's configuration.

use std::path::PathBuf;

/// What happens to a request when the audit trail cannot record it. Writes are
/// always refused (their audit record shares their transaction); staff access
/// under a grant is always refused (`AccessKind::Staff`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuditFailurePolicy {
    /// Refuse writes, serve customers' own reads, raise an alert.
    #[default]
    RefuseWrites,
    /// Refuse every request that cannot be audited.
    RefuseAll,
}

impl std::str::FromStr for AuditFailurePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "refuse-writes" => Ok(AuditFailurePolicy::RefuseWrites),
            "refuse-all" => Ok(AuditFailurePolicy::RefuseAll),
            other => Err(format!(
                "audit failure policy must be refuse-writes or refuse-all, not {other:?}"
            )),
        }
    }
}

/// Whose access is being audited, for the fail-closed decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    CustomerRead,
    /// Platform staff acting under an access grant: never served unaudited.
    Staff,
}

impl AuditFailurePolicy {
    /// True when a request of this kind may proceed although its audit event failed.
    pub fn allows_unaudited(self, kind: AccessKind) -> bool {
        matches!(
            (self, kind),
            (AuditFailurePolicy::RefuseWrites, AccessKind::CustomerRead)
        )
    }
}

/// Signups accepted from one client address per hour, by default.
pub const DEFAULT_SIGNUPS_PER_ADDRESS_PER_HOUR: u32 = 10;

/// What the operator lets customers name as an export-push destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// `file:///…` destinations must lie under this directory; None refuses them.
    pub file_root: Option<PathBuf>,
    /// Allow S3 endpoints on loopback, private and link-local addresses.
    pub allow_private_endpoints: bool,
}
