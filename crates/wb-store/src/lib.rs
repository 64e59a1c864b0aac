//! Storage for Work-books: the only crate that speaks SQL.
//!
//! Architecture invariants:
//! - A `TenantStore` is opened for one company; its methods take no company id,
//!   so no query can mix two companies' data.
//! - Every business change commits in one transaction with its change-journal
//!   record and its audit record (see `sqlite::tenant_writer`).
//! - Callers see `StoreError`, never a backend's error type.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod alerts;
mod chain;
mod entry_list;
mod error;
pub mod export_schedules;
pub mod factors;
mod file_records;
pub mod journal;
pub mod key_versions;
pub mod lifecycle;
pub mod members;
pub mod migrations;
mod model;
pub mod postgres;
pub mod purge;
pub mod retention_rules;
mod sealed;
pub mod sqlite;
pub mod staff;
mod traits;
mod writer_jobs;

pub use alerts::{Alert, AlertStore};
pub use chain::{link as chain_link, GENESIS};
pub use error::StoreError;
pub use export_schedules::{ExportSchedule, ExportScheduleStore, PushResult};
pub use factors::{
    Ceremony, FactorStore, MfaChallenge, PasskeyRecord, PassphraseReset, TotpRecord, UserFactors,
};
pub use key_versions::{CompanyKeyVersions, KeyVersionStore, RetiredKey};
pub use lifecycle::{Deprovisioning, LifecycleStore};
pub use members::{
    Accepted, Delivery, InvitationRecord, Joiner, MemberRecord, MemberStore, OutboxMessage,
};
pub use model::*;
pub use purge::{PurgeCounts, PurgePlan, PurgeReport};
pub use retention_rules::RetentionRuleStore;
pub use sealed::SealedColumn;
pub use traits::{ControlStore, DestroyedDatabase, RekeyReport, TenantDirectory, TenantStore};

/// Milliseconds since the Unix epoch, for columns compared as numbers.
pub(crate) fn unix_millis(at: time::OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The keys of one attempt (`ControlStore::reserve_attempt`), each once and
/// in one order, so concurrent attempts lock shared keys in the same order.
pub(crate) fn attempt_keys(budgets: &[(String, u32)]) -> Vec<(String, u32)> {
    let mut budgets = budgets.to_vec();
    // The same key twice keeps its smallest maximum.
    budgets.sort();
    budgets.dedup_by(|later, first| later.0 == first.0);
    budgets
}

pub(crate) fn from_unix_millis(millis: i64) -> Result<time::OffsetDateTime, StoreError> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map_err(|_| StoreError::Corrupt(format!("bad timestamp {millis}")))
}

#[cfg(test)]
mod journal_pin;
