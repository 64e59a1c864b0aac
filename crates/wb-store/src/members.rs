//! Members of a company and invitations to join one (the shared ledger
//! model: contributors are invited, accounts are never shared), and the
//! email outbox that carries invitations and notices.
//!
//! Every change is audited in the same transaction. Membership changes
//! apply `wb_core::members` inside that transaction, with the owner count
//! read there, so concurrent changes cannot leave a company without an owner.

use async_trait::async_trait;
use time::OffsetDateTime;
use wb_core::members::MemberChange;
use wb_core::security_policy::{parse_block, SecurityPolicy};
use wb_core::Role;

use crate::model::{AuditEvent, SessionRecord, UserRecord};
use crate::StoreError;

/// An invitation as stored: its token only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRecord {
    pub id: String,
    pub company_id: String,
    pub email: String,
    pub role: Role,
    pub token_hash: String,
    /// The actor who sent it (`user:<id>`, `api_key:<id>`).
    pub invited_by: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub accepted_at: Option<OffsetDateTime>,
    pub accepted_by: Option<String>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// Who accepts an invitation.
#[derive(Debug, Clone)]
pub enum Joiner {
    /// A new account, created in the same transaction (its email is the
    /// invitation's).
    NewUser(UserRecord),
    /// An existing account, signed in, whose email is the invitation's.
    Existing { user_id: String },
}

/// What an accepted invitation made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub company_id: String,
    pub user_id: String,
    pub role: Role,
}

/// A member of a company, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub last_login_at: Option<OffsetDateTime>,
}

/// A message waiting in the outbox.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: String,
    pub recipient: String,
    /// Subject and body, sealed by the caller (opaque here).
    pub sealed_message: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub attempts: u32,
    pub next_attempt_at: OffsetDateTime,
}

impl std::fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMessage")
            .field("id", &self.id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent {
        at: OffsetDateTime,
    },
    /// Failed; try again at `retry_at`.
    Retry {
        retry_at: OffsetDateTime,
        error: String,
    },
    /// Failed for the last time.
    GiveUp {
        at: OffsetDateTime,
        error: String,
    },
}

#[async_trait]
pub trait MemberStore: Send + Sync {
    async fn create_invitation(
        &self,
        invitation: &InvitationRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Invitations neither accepted, revoked nor expired at `now`, oldest first.
    async fn pending_invitations(
        &self,
        company_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<InvitationRecord>, StoreError>;
    /// Revokes a pending invitation; false when there is none by that id.
    async fn revoke_invitation(
        &self,
        company_id: &str,
        id: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// The invitation a token hash names, whatever its state.
    async fn invitation_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<InvitationRecord>, StoreError>;
    /// Uses a pending invitation once: creates the user when new, adds the
    /// membership and marks the invitation accepted, atomically.
    /// `NotFound("invitation")` when it is not pending at `now` (used,
    /// revoked, expired or unknown); `Conflict` when the email has an account
    /// already (for `NewUser`) or the user is already a member.
    async fn accept_invitation(
        &self,
        token_hash: &str,
        joiner: &Joiner,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<Accepted, StoreError>;
    async fn members(&self, company_id: &str) -> Result<Vec<MemberRecord>, StoreError>;
    /// Changes one member's role or removes them, as `actor_role` may
    /// (`StoreError::Members` when the rules refuse, `NotFound("member")`
    /// when they are not a member). Removal, and a role that no longer
    /// manages API keys, revoke the API keys they created for the company.
    async fn change_member(
        &self,
        company_id: &str,
        user_id: &str,
        actor_role: Role,
        change: MemberChange,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<Option<MemberRecord>, StoreError>;

    /// What the access door needs about `company_id` in one read: the role
    /// of `user_id` there (None: not a member, or the company is not active;
    /// always None without a user) and the company's policy, if it set one.
    async fn access_facts(
        &self,
        user_id: Option<&str>,
        company_id: &str,
    ) -> Result<(Option<Role>, Option<SecurityPolicy>), StoreError>;
    /// A company's security policy; None when it never set one.
    async fn company_policy(&self, company_id: &str) -> Result<Option<SecurityPolicy>, StoreError>;
    async fn put_company_policy(
        &self,
        company_id: &str,
        policy: &SecurityPolicy,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Records that a session was used at `at`.
    async fn touch_session(&self, token_hash: &str, at: OffsetDateTime) -> Result<(), StoreError>;
    /// When a session was last used (None: not since it was opened).
    async fn session_last_seen(
        &self,
        token_hash: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError>;

    /// A user's sessions neither revoked nor expired at `now`, newest first.
    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>, StoreError>;
    /// Revokes a user's live sessions whose token hash starts with `prefix`
    /// (all of them for ""), except `keep`; answers the hashes revoked.
    async fn revoke_sessions_of(
        &self,
        user_id: &str,
        prefix: &str,
        keep: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError>;
    /// Replaces a user's passphrase hash and revokes their other sessions,
    /// atomically with its audit event; answers the hashes revoked.
    async fn change_passphrase(
        &self,
        user_id: &str,
        passphrase_hash: &str,
        keep: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError>;

    async fn enqueue_message(&self, message: &OutboxMessage) -> Result<(), StoreError>;
    /// Messages due at `now`, oldest first, at most `limit`.
    async fn due_messages(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    async fn record_delivery(&self, id: &str, delivery: &Delivery) -> Result<(), StoreError>;
}

/// The allowlist as stored: blocks separated by spaces.
pub(crate) fn allowlist_text(policy: &SecurityPolicy) -> String {
    policy
        .ip_allowlist
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A stored policy row back into a policy.
pub(crate) fn policy_from_row(
    mfa_required: i64,
    session_ttl_minutes: Option<i64>,
    idle_timeout_minutes: Option<i64>,
    ip_allowlist: &str,
    min_passphrase_strength: i64,
    api_key_max_days: Option<i64>,
    key_max_age_days: Option<i64>,
) -> Result<SecurityPolicy, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("security policy {what}"));
    let small = |v: Option<i64>, what: &str| {
        v.map(|v| u32::try_from(v).map_err(|_| corrupt(what)))
            .transpose()
    };
    Ok(SecurityPolicy {
        mfa_required: mfa_required != 0,
        session_ttl_minutes: small(session_ttl_minutes, "session_ttl_minutes")?,
        idle_timeout_minutes: small(idle_timeout_minutes, "idle_timeout_minutes")?,
        ip_allowlist: ip_allowlist
            .split_whitespace()
            .map(|b| parse_block(b).map_err(|_| corrupt("ip_allowlist")))
            .collect::<Result<_, _>>()?,
        min_passphrase_strength: u8::try_from(min_passphrase_strength)
            .map_err(|_| corrupt("min_passphrase_strength"))?,
        api_key_max_days: small(api_key_max_days, "api_key_max_days")?,
        key_max_age_days: small(key_max_age_days, "key_max_age_days")?,
    })
}
