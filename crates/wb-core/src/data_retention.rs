//! A company's own retention rules (what it keeps, and for how long), and
//! the platform's statutory minimum that no company goes below.
//!
//! Plain rules, no IO: the store keeps them, the purge (later) reads them.

use serde::{Deserialize, Serialize};

/// Entries are kept at least this many years unless the company says more.
pub const DEFAULT_ENTRIES_YEARS: u32 = 10;
pub const DEFAULT_ATTACHMENTS_YEARS: u32 = 10;
pub const DEFAULT_AUDIT_YEARS: u32 = 10;
pub const DEFAULT_EXPORTS_DAYS: u32 = 90;
/// The platform's minimum for entries when its operator sets none.
pub const DEFAULT_STATUTORY_MINIMUM_YEARS: u32 = 10;
/// The range an operator may set the statutory minimum to.
pub const STATUTORY_MINIMUM_YEARS: std::ops::RangeInclusive<u32> = 1..=30;
/// Longest any rule may keep something.
pub const MAX_YEARS: u32 = 100;
pub const MAX_EXPORTS_DAYS: u32 = 3650;

/// A company's retention rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRetention {
    /// Entries (with their postings) are kept at least this many years.
    pub entries_years: u32,
    /// Attachments older than this go, unless linked to an entry still kept.
    pub attachments_years: u32,
    /// Audit events are kept this many years.
    pub audit_years: u32,
    /// Stored exports are kept this many days.
    pub exports_days: u32,
}

impl Default for DataRetention {
    fn default() -> DataRetention {
        DataRetention {
            entries_years: DEFAULT_ENTRIES_YEARS,
            attachments_years: DEFAULT_ATTACHMENTS_YEARS,
            audit_years: DEFAULT_AUDIT_YEARS,
            exports_days: DEFAULT_EXPORTS_DAYS,
        }
    }
}

/// The platform's statutory minimum for entries, in years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatutoryMinimum(u32);

impl StatutoryMinimum {
    pub fn years(years: u32) -> Result<StatutoryMinimum, RetentionError> {
        if STATUTORY_MINIMUM_YEARS.contains(&years) {
            Ok(StatutoryMinimum(years))
        } else {
            Err(RetentionError::MinimumOutOfRange(years))
        }
    }

    pub fn in_years(self) -> u32 {
        self.0
    }
}

impl Default for StatutoryMinimum {
    fn default() -> StatutoryMinimum {
        StatutoryMinimum(DEFAULT_STATUTORY_MINIMUM_YEARS)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// A rule below the platform's statutory minimum: names the rule.
    #[error(
        "{rule} is {asked}, below the statutory minimum of {minimum} years this platform keeps entries for"
    )]
    BelowStatutoryMinimum {
        rule: &'static str,
        asked: u32,
        minimum: u32,
    },
    #[error("{rule} is 1 to {max}")]
    OutOfRange { rule: &'static str, max: u32 },
    #[error("the statutory minimum is 1 to 30 years, not {0}")]
    MinimumOutOfRange(u32),
}

impl RetentionError {
    /// The rule that refused, for the caller's error (`rule` in problem JSON).
    pub fn rule(&self) -> &'static str {
        match self {
            RetentionError::BelowStatutoryMinimum { rule, .. }
            | RetentionError::OutOfRange { rule, .. } => rule,
            RetentionError::MinimumOutOfRange(_) => "statutory_minimum",
        }
    }
}

impl DataRetention {
    /// These rules with entries and the audit trail kept at least `minimum`.
    pub fn at_least(self, minimum: StatutoryMinimum) -> DataRetention {
        DataRetention {
            entries_years: self.entries_years.max(minimum.0),
            audit_years: self.audit_years.max(minimum.0),
            ..self
        }
    }

    /// Whether an export made at `created` is past `exports_days` at `now`.
    pub fn export_expired(&self, created: time::OffsetDateTime, now: time::OffsetDateTime) -> bool {
        now - created >= time::Duration::days(i64::from(self.exports_days))
    }

    /// Checks every rule's range, and that entries (and the audit trail
    /// that proves them) are kept at least the statutory minimum.
    pub fn validate(&self, minimum: StatutoryMinimum) -> Result<(), RetentionError> {
        for (rule, value, max) in [
            ("entries_years", self.entries_years, MAX_YEARS),
            ("attachments_years", self.attachments_years, MAX_YEARS),
            ("audit_years", self.audit_years, MAX_YEARS),
            ("exports_days", self.exports_days, MAX_EXPORTS_DAYS),
        ] {
            if !(1..=max).contains(&value) {
                return Err(RetentionError::OutOfRange { rule, max });
            }
        }
        for (rule, asked) in [
            ("entries_years", self.entries_years),
            ("audit_years", self.audit_years),
        ] {
            if asked < minimum.0 {
                return Err(RetentionError::BelowStatutoryMinimum {
                    rule,
                    asked,
                    minimum: minimum.0,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_defaults_pass_the_default_minimum() {
        assert_eq!(
            DataRetention::default().validate(StatutoryMinimum::default()),
            Ok(())
        );
    }

    #[test]
    fn a_rule_below_the_minimum_names_itself() {
        let minimum = StatutoryMinimum::years(7).unwrap();
        let rules = DataRetention {
            entries_years: 5,
            ..Default::default()
        };
        let refused = rules.validate(minimum).unwrap_err();
        assert_eq!(refused.rule(), "entries_years");
        assert!(refused.to_string().contains("statutory minimum of 7 years"));
        let rules = DataRetention {
            audit_years: 6,
            ..Default::default()
        };
        assert_eq!(rules.validate(minimum).unwrap_err().rule(), "audit_years");
        // Attachments and exports are the company's own choice.
        let rules = DataRetention {
            attachments_years: 1,
            exports_days: 1,
            ..Default::default()
        };
        assert_eq!(rules.validate(minimum), Ok(()));
    }

    #[test]
    fn an_export_expires_at_its_day() {
        let made = time::macros::datetime!(2026-01-01 00:00 UTC);
        let rules = DataRetention {
            exports_days: 2,
            ..Default::default()
        };
        assert!(!rules.export_expired(made, made + time::Duration::hours(47)));
        assert!(rules.export_expired(made, made + time::Duration::days(2)));
    }

    #[test]
    fn rules_below_a_raised_minimum_are_read_as_it() {
        let minimum = StatutoryMinimum::years(15).unwrap();
        let kept = DataRetention::default().at_least(minimum);
        assert_eq!((kept.entries_years, kept.audit_years), (15, 15));
        assert_eq!(kept.validate(minimum), Ok(()));
        let longer = DataRetention {
            entries_years: 20,
            ..Default::default()
        };
        assert_eq!(longer.at_least(minimum).entries_years, 20);
    }

    #[test]
    fn ranges_are_checked() {
        assert!(StatutoryMinimum::years(0).is_err());
        assert!(StatutoryMinimum::years(31).is_err());
        for rules in [
            DataRetention {
                exports_days: 0,
                ..Default::default()
            },
            DataRetention {
                attachments_years: 101,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                rules.validate(StatutoryMinimum::default()),
                Err(RetentionError::OutOfRange { .. })
            ));
        }
    }

    proptest! {
        /// Whatever passes keeps entries and the audit trail at least the
        /// minimum, and nothing above the ranges.
        #[test]
        fn what_passes_keeps_the_minimum(
            entries in 0u32..120, attachments in 0u32..120, audit in 0u32..120,
            exports in 0u32..4000, minimum in 1u32..=30,
        ) {
            let rules = DataRetention {
                entries_years: entries,
                attachments_years: attachments,
                audit_years: audit,
                exports_days: exports,
            };
            let minimum = StatutoryMinimum::years(minimum).unwrap();
            if rules.validate(minimum).is_ok() {
                prop_assert!(entries >= minimum.in_years() && audit >= minimum.in_years());
                prop_assert!(entries <= MAX_YEARS && attachments <= MAX_YEARS && audit <= MAX_YEARS);
                prop_assert!((1..=MAX_EXPORTS_DAYS).contains(&exports) && attachments >= 1);
            }
        }
    }
}
