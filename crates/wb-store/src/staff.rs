//! The platform's staff (their own accounts and sessions, apart from
//! customer users) and staff access grants, in the control store.
//!
//! This module knows nothing of passphrases, codes or the grant rules:
//! hashes and secrets arrive hashed or sealed, and a grant arrives decided
//! (`wb_core::grants`). What it guarantees: an email names one staff member;
//! a TOTP step is accepted once; a grant is changed only from the version
//! the caller read (two nodes deciding at once: one wins, the other gets
//! `Conflict`); grants are never deleted.

use async_trait::async_trait;
use time::OffsetDateTime;
use wb_core::grants::Grant;

use crate::model::AuditEvent;
use crate::StoreError;

#[derive(Clone, PartialEq, Eq)]
pub struct StaffRecord {
    pub id: String,
    /// Normalized (lower case).
    pub email: String,
    pub passphrase_hash: String,
    /// Staff role names (`support`, `sales`, …).
    pub roles: Vec<String>,
    /// The TOTP secret, sealed by the caller: staff enrol at creation.
    pub sealed_totp: Vec<u8>,
    /// The last accepted TOTP step: a code is accepted once.
    pub totp_last_step: i64,
    pub created_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for StaffRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("roles", &self.roles)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

/// A staff session, looked up by its token's hash. Its `Debug` leaves the
/// hash out: it is what a bearer token is checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct StaffSession {
    pub token_hash: String,
    pub staff_id: String,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// The absolute end.
    pub expires_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
    pub client: Option<String>,
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for StaffSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffSession")
            .field("token_hash", &"***")
            .field("staff_id", &self.staff_id)
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .field("ended_at", &self.ended_at)
            .field("client", &self.client)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// A grant as stored, with the version a change must start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGrant {
    pub grant: Grant,
    pub version: i64,
}

#[async_trait]
pub trait StaffStore: Send + Sync {
    /// `Conflict` when the email is taken.
    async fn create_staff(&self, staff: &StaffRecord, audit: &AuditEvent)
        -> Result<(), StoreError>;
    async fn staff(&self, id: &str) -> Result<Option<StaffRecord>, StoreError>;
    async fn staff_by_email(&self, email: &str) -> Result<Option<StaffRecord>, StoreError>;
    async fn list_staff(&self) -> Result<Vec<StaffRecord>, StoreError>;
    /// `NotFound` for an unknown id.
    async fn set_staff_roles(
        &self,
        id: &str,
        roles: &[String],
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Disables the account and ends its sessions (their token hashes).
    async fn disable_staff(&self, id: &str, audit: &AuditEvent) -> Result<Vec<String>, StoreError>;
    /// A new TOTP secret; ends the account's sessions (their token hashes).
    async fn reset_staff_totp(
        &self,
        id: &str,
        sealed_totp: &[u8],
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError>;
    /// Accepts `step` once (false when it or a later one was used).
    async fn use_staff_totp_step(&self, id: &str, step: i64) -> Result<bool, StoreError>;

    async fn create_staff_session(
        &self,
        session: &StaffSession,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    async fn staff_session(&self, token_hash: &str) -> Result<Option<StaffSession>, StoreError>;
    async fn touch_staff_session(
        &self,
        token_hash: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// `NotFound` when it already ended.
    async fn end_staff_session(
        &self,
        token_hash: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Stores a new grant (version 1).
    async fn create_grant(&self, grant: &Grant, audit: &AuditEvent) -> Result<(), StoreError>;
    async fn grant(&self, id: &str) -> Result<Option<StoredGrant>, StoreError>;
    /// Writes a decided grant if it is still at `version`; `Conflict` if
    /// someone else changed it first.
    async fn update_grant(
        &self,
        grant: &Grant,
        version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// A company's grants, newest first.
    async fn company_grants(
        &self,
        company_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredGrant>, StoreError>;
    /// Every grant, newest first (`requested_by` narrows to one requester).
    async fn grants(
        &self,
        requested_by: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredGrant>, StoreError>;
    /// The grants of one staff member for one company that are not denied
    /// or revoked (the caller decides which are active at its time).
    async fn live_grants(
        &self,
        requested_by: &str,
        company_id: &str,
    ) -> Result<Vec<StoredGrant>, StoreError>;
    /// Grants whose company may not have been told of their current state:
    /// never told, or last told `pending` or `active` (oldest first).
    async fn grants_to_tell(&self, limit: u32) -> Result<Vec<StoredGrant>, StoreError>;
    /// Records that the company was told of `state` (`pending`, `active`,
    /// `expired`, `denied`, `revoked`); false when it already was, so of
    /// two nodes only one tells.
    async fn mark_grant_told(&self, grant_id: &str, state: &str) -> Result<bool, StoreError>;
    /// Puts back what the company was last told (None: nothing), after a
    /// notice that was recorded could not be sent.
    async fn reset_grant_told(&self, grant_id: &str, told: Option<&str>) -> Result<(), StoreError>;
    /// What the company was last told of the grant (None: nothing yet).
    async fn grant_told(&self, grant_id: &str) -> Result<Option<String>, StoreError>;
}

/// Roles as stored: comma-separated names.
pub(crate) fn split_roles(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

/// A grant as the columns of `access_grants` (times in Unix milliseconds),
/// shared by both backends.
#[derive(Debug, Clone)]
pub(crate) struct GrantRow {
    pub id: String,
    pub company_id: String,
    pub requested_by: String,
    pub reason: String,
    pub scope: String,
    pub duration_minutes: i64,
    pub ticket: Option<String>,
    pub mandate_reference: Option<String>,
    pub mandate_disclose_after: Option<i64>,
    pub requested_at: i64,
    pub starts_at: Option<i64>,
    pub company_by: Option<String>,
    pub company_at: Option<i64>,
    pub management_by: Option<String>,
    pub management_at: Option<i64>,
    pub ended_kind: Option<String>,
    pub ended_side: Option<String>,
    pub ended_by: Option<String>,
    pub ended_at: Option<i64>,
    pub version: i64,
}

/// The columns in `GrantRow`'s order.
pub(crate) const GRANT_COLUMNS: &str = "id, company_id, requested_by, reason, scope, \
    duration_minutes, ticket, mandate_reference, mandate_disclose_after, requested_at, starts_at, \
    company_by, company_at, management_by, management_at, ended_kind, ended_side, ended_by, \
    ended_at, version";

mod grant_row {
    use time::Duration;
    use wb_core::grants::{Decision, EndKind, Ending, Grant, LegalMandate, Side};

    use super::{GrantRow, StoredGrant};
    use crate::{from_unix_millis, unix_millis, StoreError};

    fn decision(by: Option<String>, at: Option<i64>) -> Result<Option<Decision>, StoreError> {
        match (by, at) {
            (Some(by), Some(at)) => Ok(Some(Decision {
                by,
                at: from_unix_millis(at)?,
            })),
            (None, None) => Ok(None),
            _ => Err(StoreError::Corrupt(
                "a grant decision without its actor or time".into(),
            )),
        }
    }

    fn side(text: &str) -> Result<Side, StoreError> {
        match text {
            "company" => Ok(Side::Company),
            "management" => Ok(Side::Management),
            other => Err(StoreError::Corrupt(format!("grant side {other:?}"))),
        }
    }

    impl GrantRow {
        pub(crate) fn of(grant: &Grant, version: i64) -> GrantRow {
            let split = |d: &Option<Decision>| match d {
                Some(d) => (Some(d.by.clone()), Some(unix_millis(d.at))),
                None => (None, None),
            };
            let (company_by, company_at) = split(&grant.company_approval);
            let (management_by, management_at) = split(&grant.management_approval);
            let ending = grant.ending.as_ref();
            GrantRow {
                id: grant.id.clone(),
                company_id: grant.company_id.clone(),
                requested_by: grant.requested_by.clone(),
                reason: grant.reason.clone(),
                scope: grant.scope.as_str().to_string(),
                duration_minutes: grant.duration.whole_minutes(),
                ticket: grant.ticket.clone(),
                mandate_reference: grant.legal_mandate.as_ref().map(|m| m.reference.clone()),
                mandate_disclose_after: grant
                    .legal_mandate
                    .as_ref()
                    .and_then(|m| m.disclose_after)
                    .map(unix_millis),
                requested_at: unix_millis(grant.requested_at),
                starts_at: grant.starts_at.map(unix_millis),
                company_by,
                company_at,
                management_by,
                management_at,
                ended_kind: ending.map(|e| {
                    match e.kind {
                        EndKind::Denied => "denied",
                        EndKind::Revoked => "revoked",
                    }
                    .to_string()
                }),
                ended_side: ending.map(|e| e.side.as_str().to_string()),
                ended_by: ending.map(|e| e.decision.by.clone()),
                ended_at: ending.map(|e| unix_millis(e.decision.at)),
                version,
            }
        }

        pub(crate) fn into_stored(self) -> Result<StoredGrant, StoreError> {
            let ending = match (self.ended_kind, self.ended_side) {
                (Some(kind), Some(by_side)) => Some(Ending {
                    kind: match kind.as_str() {
                        "denied" => EndKind::Denied,
                        "revoked" => EndKind::Revoked,
                        other => {
                            return Err(StoreError::Corrupt(format!("grant ending {other:?}")))
                        }
                    },
                    side: side(&by_side)?,
                    decision: decision(self.ended_by, self.ended_at)?.ok_or_else(|| {
                        StoreError::Corrupt("a grant ending without its actor".into())
                    })?,
                }),
                (None, None) => None,
                _ => {
                    return Err(StoreError::Corrupt(
                        "a grant ending without its side".into(),
                    ))
                }
            };
            let grant = Grant {
                id: self.id,
                company_id: self.company_id,
                requested_by: self.requested_by,
                reason: self.reason,
                scope: self
                    .scope
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
                duration: Duration::minutes(self.duration_minutes),
                ticket: self.ticket,
                legal_mandate: match self.mandate_reference {
                    Some(reference) => Some(LegalMandate {
                        reference,
                        disclose_after: self
                            .mandate_disclose_after
                            .map(from_unix_millis)
                            .transpose()?,
                    }),
                    None => None,
                },
                requested_at: from_unix_millis(self.requested_at)?,
                starts_at: self.starts_at.map(from_unix_millis).transpose()?,
                company_approval: decision(self.company_by, self.company_at)?,
                management_approval: decision(self.management_by, self.management_at)?,
                ending,
            };
            Ok(StoredGrant {
                grant,
                version: self.version,
            })
        }
    }
}
