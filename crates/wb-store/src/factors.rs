//! Second factors (TOTP secrets and recovery codes), the pending second step
//! of a login, and passphrase resets.
//!
//! This module knows nothing of codes or keys: secrets arrive sealed and
//! codes arrive hashed. What it guarantees is single use under concurrency:
//! a TOTP step, a recovery code, a login challenge and a reset token are
//! each accepted at most once, whichever node asks first.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::AuditEvent;
use crate::StoreError;

/// A user's TOTP factor as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub user_id: String,
    /// The shared secret, sealed by the caller.
    pub sealed_secret: Vec<u8>,
    pub created_at: OffsetDateTime,
    /// None while enrolment waits for its first code.
    pub confirmed_at: Option<OffsetDateTime>,
    /// The last step a code was accepted for.
    pub last_step: i64,
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpRecord")
            .field("user_id", &self.user_id)
            .field("confirmed_at", &self.confirmed_at)
            .finish_non_exhaustive()
    }
}

/// The second step of a login: the passphrase was right, a second factor
/// is due. Looked up by the hash of the challenge token the client holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaChallenge {
    pub token_hash: String,
    pub user_id: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// Wrong second factors given for it so far.
    pub failures: u32,
    pub client: Option<String>,
    pub user_agent: Option<String>,
}

/// A passphrase reset sent by email, looked up by its token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassphraseReset {
    pub token_hash: String,
    pub user_id: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

/// A registered passkey (WebAuthn credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// The credential (public key, id, signature counter) as JSON; no
    /// secret, but the counter changes with each use.
    pub credential: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// A WebAuthn ceremony waiting for the authenticator's answer.
#[derive(Clone, PartialEq, Eq)]
pub struct Ceremony {
    pub token_hash: String,
    /// None for a passwordless login (the user is not known yet).
    pub user_id: Option<String>,
    /// `register`, `login` (second step) or `passwordless`.
    pub kind: String,
    /// The library's ceremony state as JSON (holds the challenge).
    pub state: String,
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for Ceremony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ceremony")
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Everything of a user's second factors that disaster recovery keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFactors {
    pub user_id: String,
    /// A confirmed authenticator (a pending one is not kept).
    pub totp: Option<TotpRecord>,
    /// `(hash, used_at)` of each recovery code.
    pub recovery_codes: Vec<(String, Option<OffsetDateTime>)>,
    pub passkeys: Vec<PasskeyRecord>,
}

#[async_trait]
pub trait FactorStore: Send + Sync {
    async fn totp(&self, user_id: &str) -> Result<Option<TotpRecord>, StoreError>;
    /// Stores a pending TOTP factor, replacing a pending one; `Conflict` when
    /// a confirmed one exists.
    async fn begin_totp(&self, record: &TotpRecord, audit: &AuditEvent) -> Result<(), StoreError>;
    /// Confirms the pending factor started at `pending_since` (the one whose
    /// code was checked, not one started since) with the step of its first
    /// code, and replaces the user's recovery codes with `recovery_hashes`;
    /// `NotFound` without that pending factor.
    async fn confirm_totp(
        &self,
        user_id: &str,
        pending_since: OffsetDateTime,
        step: i64,
        recovery_hashes: &[String],
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Accepts `step` for the user's confirmed factor if it is after the
    /// last accepted one; false otherwise (a replayed or older code).
    async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError>;
    /// Removes the TOTP factor and every recovery code.
    async fn remove_totp(&self, user_id: &str, audit: &AuditEvent) -> Result<(), StoreError>;
    /// Marks an unused recovery code used; false when there is none.
    async fn use_recovery_code(
        &self,
        user_id: &str,
        code_hash: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Replaces every recovery code of the user.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    async fn recovery_codes_left(&self, user_id: &str) -> Result<u32, StoreError>;

    async fn create_mfa_challenge(&self, challenge: &MfaChallenge) -> Result<(), StoreError>;
    /// The challenge if it exists, is unexpired and has fewer than
    /// `max_failures` failures.
    async fn mfa_challenge(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
        max_failures: u32,
    ) -> Result<Option<MfaChallenge>, StoreError>;
    /// Counts a wrong factor given for the challenge.
    async fn fail_mfa_challenge(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Deletes the challenge; false when another request took it first.
    async fn take_mfa_challenge(&self, token_hash: &str) -> Result<bool, StoreError>;

    /// Stores a reset, ending the user's earlier unused ones.
    async fn create_passphrase_reset(
        &self,
        reset: &PassphraseReset,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    async fn passphrase_reset(
        &self,
        token_hash: &str,
    ) -> Result<Option<PassphraseReset>, StoreError>;
    /// Uses the reset (if unused and unexpired at `audit.at`): sets the new
    /// passphrase hash and revokes every session of the user, returning
    /// their token hashes; `NotFound` when the reset cannot be used.
    async fn complete_passphrase_reset(
        &self,
        token_hash: &str,
        passphrase_hash: &str,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError>;

    /// Records that a session's holder proved a second factor (enrolment
    /// confirmed during it).
    async fn set_session_factor(&self, token_hash: &str, factor: &str) -> Result<(), StoreError>;

    async fn add_passkey(
        &self,
        passkey: &PasskeyRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    async fn passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, StoreError>;
    /// Stores a passkey's credential after a use (its counter moved).
    async fn touch_passkey(
        &self,
        user_id: &str,
        id: &str,
        credential: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// `NotFound` when the user has no such passkey.
    async fn remove_passkey(
        &self,
        user_id: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;

    async fn put_ceremony(&self, ceremony: &Ceremony) -> Result<(), StoreError>;
    /// Deletes and returns the ceremony if it is of `kind` and unexpired:
    /// each is answered once.
    async fn take_ceremony(
        &self,
        token_hash: &str,
        kind: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Ceremony>, StoreError>;

    /// A user's second factors, for the configuration backup.
    async fn user_factors(&self, user_id: &str) -> Result<UserFactors, StoreError>;
    /// Puts back a user's second factors from a backup (the user exists;
    /// nothing of theirs is stored yet).
    async fn restore_factors(
        &self,
        factors: &UserFactors,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
}
