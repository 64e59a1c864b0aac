//! The end of a company: de-provisioning, its grace period, and the ordered
//! steps of its destruction (crypto-shredding last but one, the certificate
//! last). Plain rules; time is passed in.

use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// How long a de-provisioned company waits before it is destroyed, when the
/// deployment does not say.
pub const DEFAULT_GRACE_DAYS: u32 = 30;
/// The grace periods a deployment may choose.
pub const GRACE_DAYS: RangeInclusive<u32> = 1..=90;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("the grace period must be 1 to 90 days, not {0}")]
    GraceOutOfRange(u32),
    #[error("the company is not active")]
    NotActive,
    #[error("the company is not de-provisioned")]
    NotDeprovisioned,
    #[error("the grace period ended at {0}: the company can no longer be restored")]
    GraceOver(OffsetDateTime),
    #[error("the company's grace period runs until {0}")]
    StillInGrace(OffsetDateTime),
}

/// A deployment's grace period, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracePeriod(u32);

impl GracePeriod {
    pub fn days(days: u32) -> Result<GracePeriod, LifecycleError> {
        if GRACE_DAYS.contains(&days) {
            Ok(GracePeriod(days))
        } else {
            Err(LifecycleError::GraceOutOfRange(days))
        }
    }

    pub fn in_days(self) -> u32 {
        self.0
    }

    /// When a company de-provisioned at `at` is destroyed.
    pub fn destroy_after(self, at: OffsetDateTime) -> OffsetDateTime {
        at + Duration::days(i64::from(self.0))
    }
}

impl Default for GracePeriod {
    fn default() -> GracePeriod {
        GracePeriod(DEFAULT_GRACE_DAYS)
    }
}

/// Where a company is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Active,
    /// Access blocked; data kept until `destroy_after`.
    Deprovisioned {
        destroy_after: OffsetDateTime,
    },
    Destroyed,
}

impl Stage {
    /// May the owner cancel the de-provisioning at `now`? Only during the
    /// grace period: once it ends the destruction may already have begun.
    pub fn cancel(self, now: OffsetDateTime) -> Result<(), LifecycleError> {
        match self {
            Stage::Deprovisioned { destroy_after } if now < destroy_after => Ok(()),
            Stage::Deprovisioned { destroy_after } => Err(LifecycleError::GraceOver(destroy_after)),
            _ => Err(LifecycleError::NotDeprovisioned),
        }
    }

    /// May the company be de-provisioned?
    pub fn deprovision(self) -> Result<(), LifecycleError> {
        match self {
            Stage::Active => Ok(()),
            _ => Err(LifecycleError::NotActive),
        }
    }

    /// Is the destruction due at `now`? `override_grace` is the operator's
    /// `company destroy --confirm`, which does not wait for the grace period
    /// but still needs the company de-provisioned first.
    pub fn destroy(self, now: OffsetDateTime, override_grace: bool) -> Result<(), LifecycleError> {
        match self {
            Stage::Deprovisioned { destroy_after } if override_grace || now >= destroy_after => {
                Ok(())
            }
            Stage::Deprovisioned { destroy_after } => {
                Err(LifecycleError::StillInGrace(destroy_after))
            }
            _ => Err(LifecycleError::NotDeprovisioned),
        }
    }
}

/// One step of a destruction, in the order they are taken: data first,
/// then the backups, then every copy of the key (after which nothing left
/// anywhere could be opened), then the certificate that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestructionStep {
    /// The company database (SQLCipher file with its WAL and SHM, or the
    /// PostgreSQL database and its role).
    Database,
    Attachments,
    JournalSegments,
    Snapshots,
    AuditSegments,
    /// Exports and their sidecars.
    Exports,
    /// Anything else under the company's prefix in the object store.
    OtherObjects,
    /// The company's entries in every configuration backup.
    ConfigBackups,
    /// Every version of the company key and every wrapped copy of it.
    Keys,
}

impl DestructionStep {
    pub const ORDER: [DestructionStep; 9] = [
        DestructionStep::Database,
        DestructionStep::Attachments,
        DestructionStep::JournalSegments,
        DestructionStep::Snapshots,
        DestructionStep::AuditSegments,
        DestructionStep::Exports,
        DestructionStep::OtherObjects,
        DestructionStep::ConfigBackups,
        DestructionStep::Keys,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DestructionStep::Database => "database",
            DestructionStep::Attachments => "attachments",
            DestructionStep::JournalSegments => "journal_segments",
            DestructionStep::Snapshots => "snapshots",
            DestructionStep::AuditSegments => "audit_segments",
            DestructionStep::Exports => "exports",
            DestructionStep::OtherObjects => "other_objects",
            DestructionStep::ConfigBackups => "config_backups",
            DestructionStep::Keys => "keys",
        }
    }

    /// The next step to take after those `done` (in any order), or None
    /// when every step is done. A step is never taken before an earlier one
    /// is done, so a resumed destruction keeps the order.
    pub fn next(done: &[DestructionStep]) -> Option<DestructionStep> {
        DestructionStep::ORDER
            .into_iter()
            .find(|step| !done.contains(step))
    }
}

impl FromStr for DestructionStep {
    type Err = String;
    fn from_str(s: &str) -> Result<DestructionStep, String> {
        DestructionStep::ORDER
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| format!("unknown destruction step {s:?}"))
    }
}

/// What one step destroyed. Unknown fields are refused: it is part of a
/// signed certificate, which must not carry anything its signature does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    pub step: DestructionStep,
    /// Files, databases, objects or keys removed.
    pub items: u64,
    pub bytes: u64,
    /// RFC 3339.
    pub finished_at: String,
    /// What was removed, by name where a name says something (key ids and
    /// versions, the database's name), never any content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    #[test]
    fn grace_periods_are_one_to_ninety_days() {
        assert!(GracePeriod::days(0).is_err());
        assert!(GracePeriod::days(91).is_err());
        assert_eq!(GracePeriod::days(1).unwrap().in_days(), 1);
        assert_eq!(GracePeriod::default().in_days(), 30);
        let at = datetime!(2026-01-31 10:00 UTC);
        assert_eq!(
            GracePeriod::days(90).unwrap().destroy_after(at),
            datetime!(2026-05-01 10:00 UTC)
        );
    }

    #[test]
    fn cancel_only_within_grace() {
        let end = datetime!(2026-03-01 00:00 UTC);
        let stage = Stage::Deprovisioned { destroy_after: end };
        assert!(stage.cancel(end - Duration::seconds(1)).is_ok());
        assert_eq!(stage.cancel(end), Err(LifecycleError::GraceOver(end)));
        assert_eq!(
            Stage::Active.cancel(end),
            Err(LifecycleError::NotDeprovisioned)
        );
        assert_eq!(
            Stage::Destroyed.cancel(end),
            Err(LifecycleError::NotDeprovisioned)
        );
    }

    #[test]
    fn only_an_active_company_is_deprovisioned() {
        assert!(Stage::Active.deprovision().is_ok());
        assert!(Stage::Destroyed.deprovision().is_err());
        let stage = Stage::Deprovisioned {
            destroy_after: datetime!(2026-03-01 00:00 UTC),
        };
        assert_eq!(stage.deprovision(), Err(LifecycleError::NotActive));
    }

    #[test]
    fn destruction_waits_for_grace_unless_overridden() {
        let end = datetime!(2026-03-01 00:00 UTC);
        let stage = Stage::Deprovisioned { destroy_after: end };
        assert_eq!(
            stage.destroy(end - Duration::days(1), false),
            Err(LifecycleError::StillInGrace(end))
        );
        assert!(stage.destroy(end, false).is_ok());
        assert!(stage.destroy(end - Duration::days(1), true).is_ok());
        assert!(Stage::Active.destroy(end, true).is_err());
        assert!(Stage::Destroyed.destroy(end, true).is_err());
    }

    #[test]
    fn step_names_are_pinned_and_parse_back() {
        let names: Vec<_> = DestructionStep::ORDER.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "database",
                "attachments",
                "journal_segments",
                "snapshots",
                "audit_segments",
                "exports",
                "other_objects",
                "config_backups",
                "keys"
            ]
        );
        for step in DestructionStep::ORDER {
            assert_eq!(step.as_str().parse::<DestructionStep>(), Ok(step));
            let json = serde_json::to_string(&step).unwrap();
            assert_eq!(json, format!("\"{}\"", step.as_str()));
        }
        assert!("key".parse::<DestructionStep>().is_err());
    }

    proptest! {
        /// Whatever was recorded done (in any order, with repeats), the
        /// next step is the first not done, and the keys go only after
        /// every copy of the data.
        #[test]
        fn next_step_keeps_the_order(done in proptest::collection::vec(0usize..9, 0..12)) {
            let done: Vec<_> = done.into_iter().map(|i| DestructionStep::ORDER[i]).collect();
            match DestructionStep::next(&done) {
                None => {
                    for step in DestructionStep::ORDER {
                        prop_assert!(done.contains(&step));
                    }
                }
                Some(next) => {
                    prop_assert!(!done.contains(&next));
                    for earlier in DestructionStep::ORDER.iter().filter(|s| **s < next) {
                        prop_assert!(done.contains(earlier));
                    }
                }
            }
        }
    }
}
