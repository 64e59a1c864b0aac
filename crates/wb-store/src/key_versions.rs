//! A company's key versions in the control store. The current version's
//! wrapping is `companies.wrapped_dek` (version `companies.key_version`);
//! each rotation moves it to `company_key_versions`, retired, where it
//! stays until nothing kept needs it and its wrapping is erased. Which
//! version may be destroyed, and when, is the caller's decision; this module
//! guarantees that a rotation is one transaction with its audit event, that
//! two rotations at once cannot both win (`Conflict` for the one that read
//! an older version), and that the current version is never destroyed.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::AuditEvent;
use crate::StoreError;

/// One retired version of a company's key.
#[derive(Clone, PartialEq, Eq)]
pub struct RetiredKey {
    pub version: u32,
    pub created_at: OffsetDateTime,
    pub retired_at: OffsetDateTime,
    pub destroyed_at: Option<OffsetDateTime>,
    /// Wrapped by the master key (the company id as context); empty once destroyed.
    pub wrapped_dek: Vec<u8>,
}

impl std::fmt::Debug for RetiredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetiredKey")
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .field("destroyed_at", &self.destroyed_at)
            .finish_non_exhaustive()
    }
}

/// Every version of one company's key.
#[derive(Clone, PartialEq, Eq)]
pub struct CompanyKeyVersions {
    pub current_version: u32,
    /// When the current version was made.
    pub current_created_at: OffsetDateTime,
    /// The current version's wrapping (`companies.wrapped_dek`).
    pub current_wrapped: Vec<u8>,
    /// Older versions, newest first.
    pub retired: Vec<RetiredKey>,
}

impl std::fmt::Debug for CompanyKeyVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanyKeyVersions")
            .field("current_version", &self.current_version)
            .field("current_created_at", &self.current_created_at)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

/// The row id of a retired version (`company_key_versions.id`).
pub fn retired_key_id(company_id: &str, version: u32) -> String {
    format!("{company_id}/v{version}")
}

/// The company a retired version's row id names.
pub fn company_of_retired_key(id: &str) -> &str {
    id.rsplit_once("/v").map_or(id, |(company, _)| company)
}

#[async_trait]
pub trait KeyVersionStore: Send + Sync {
    /// Makes `wrapped` the company's current key at version
    /// `expected_current + 1`, made `at`; the version it replaces is kept,
    /// retired at `at`. With `audit`, in one transaction. `Conflict` when
    /// the current version is not `expected_current` (another rotation won)
    /// or the company is not active. Returns the new version.
    async fn rotate_company_key(
        &self,
        company_id: &str,
        expected_current: u32,
        wrapped: &[u8],
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<u32, StoreError>;

    /// Every version of a company's key; None when there is no such company.
    async fn company_key_versions(
        &self,
        company_id: &str,
    ) -> Result<Option<CompanyKeyVersions>, StoreError>;

    /// Erases a retired version's wrapping (nothing opens what it sealed any
    /// more), with `audit`. `Conflict` for the current version or a version
    /// the company never had; a version destroyed already is no error (and
    /// records nothing again).
    async fn destroy_key_version(
        &self,
        company_id: &str,
        version: u32,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Records retired versions of a company brought back by disaster
    /// recovery (the company is recorded already), and its current version's
    /// number and age. Versions recorded already are left as they are.
    async fn restore_key_versions(
        &self,
        company_id: &str,
        current_version: u32,
        current_created_at: OffsetDateTime,
        retired: &[RetiredKey],
    ) -> Result<(), StoreError>;

    /// Companies holding a retired version not yet destroyed.
    async fn companies_with_retired_keys(&self) -> Result<Vec<String>, StoreError>;

    /// (company, current key version) of every active company whose key
    /// was rotated at least once: another node compares it with the
    /// version it opened the company's database with.
    async fn rotated_key_versions(&self) -> Result<Vec<(String, u32)>, StoreError>;
}
