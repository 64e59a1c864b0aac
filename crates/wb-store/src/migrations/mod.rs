//! Ordered schema migrations, one list per backend and kind of database,
//! embedded from `crates/wb-store/migrations/{sqlite,postgres}/{control,tenant}/`.
//!
//! Each database records the last migration applied to it; opening one
//! applies the later migrations in order, each in the same transaction as
//! the new version (a failure leaves the database at the previous one), and
//! refuses a database recorded at a version newer than this build knows.
//! Where the version is recorded:
//! - company databases: `meta.schema_version` on both backends (the code
//!   recorded 1 or 2 there before migrations existed, so the tenant list
//!   starts at 2, and a company move copies `meta` with the data);
//! - the SQLCipher control database: `PRAGMA user_version`;
//! - the PostgreSQL control database: `schema_migrations`, one row per
//!   migration, written under the control schema's advisory lock so several
//!   nodes starting at once migrate it once.
//!
//! A new column or table is a new file `NNNN_name.sql` added to the end of
//! its list below (and usually the same change in the other backend).

pub mod postgres;
pub mod sqlite;

/// One schema change. Applied once per database, in version order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Which kind of database a list is for: it decides where the version is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Control,
    Tenant,
}

impl Database {
    fn name(self) -> &'static str {
        match self {
            Database::Control => "control",
            Database::Tenant => "company",
        }
    }
}

macro_rules! migration {
    ($version:expr, $dir:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $file,
            sql: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $dir,
                "/",
                $file,
                ".sql"
            )),
        }
    };
}

pub const SQLITE_CONTROL: &[Migration] = &[
    migration!(1, "sqlite/control", "0001_baseline"),
    migration!(2, "sqlite/control", "0002_invitations_outbox"),
    migration!(3, "sqlite/control", "0003_security_policies"),
    migration!(4, "sqlite/control", "0004_session_origin"),
    migration!(5, "sqlite/control", "0005_second_factors"),
    migration!(6, "sqlite/control", "0006_staff"),
    migration!(7, "sqlite/control", "0007_grant_notices"),
    migration!(8, "sqlite/control", "0008_company_lifecycle"),
    migration!(9, "sqlite/control", "0009_company_key_versions"),
    migration!(10, "sqlite/control", "0010_company_retention"),
];
pub const SQLITE_TENANT: &[Migration] = &[
    migration!(2, "sqlite/tenant", "0002_baseline"),
    migration!(3, "sqlite/tenant", "0003_postings_by_account_entry"),
];
pub const POSTGRES_CONTROL: &[Migration] = &[
    migration!(1, "postgres/control", "0001_baseline"),
    migration!(2, "postgres/control", "0002_invitations_outbox"),
    migration!(3, "postgres/control", "0003_security_policies"),
    migration!(4, "postgres/control", "0004_session_origin"),
    migration!(5, "postgres/control", "0005_second_factors"),
    migration!(6, "postgres/control", "0006_staff"),
    migration!(7, "postgres/control", "0007_grant_notices"),
    migration!(8, "postgres/control", "0008_company_lifecycle"),
    migration!(9, "postgres/control", "0009_company_key_versions"),
    migration!(10, "postgres/control", "0010_company_retention"),
];
pub const POSTGRES_TENANT: &[Migration] = &[
    migration!(2, "postgres/tenant", "0002_baseline"),
    migration!(3, "postgres/tenant", "0003_postings_by_account_entry"),
];

/// The version a database reaches with every migration of `list` applied.
pub fn latest(list: &[Migration]) -> i64 {
    list.last().map_or(0, |m| m.version)
}

/// The migrations of `list` a database at `current` still needs to reach
/// `target`; refuses a database newer than the list, and a list out of order.
fn pending(
    db: Database,
    list: &[Migration],
    current: i64,
    target: i64,
) -> Result<Vec<Migration>, crate::StoreError> {
    if list.windows(2).any(|w| w[0].version >= w[1].version) {
        return Err(crate::StoreError::Backend(
            "migrations are not in increasing version order".into(),
        ));
    }
    let supported = latest(list);
    if current > supported {
        return Err(crate::StoreError::SchemaTooNew {
            database: db.name(),
            found: current,
            supported,
        });
    }
    Ok(list
        .iter()
        .filter(|m| m.version > current && m.version <= target)
        .copied()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_ordered_and_named_after_their_version() {
        for list in [
            SQLITE_CONTROL,
            SQLITE_TENANT,
            POSTGRES_CONTROL,
            POSTGRES_TENANT,
        ] {
            assert!(list.windows(2).all(|w| w[0].version < w[1].version));
            for m in list {
                assert!(
                    m.name.starts_with(&format!("{:04}_", m.version)),
                    "{}",
                    m.name
                );
                assert!(!m.sql.trim().is_empty());
            }
        }
        // Both backends are at the same versions.
        let versions = |l: &[Migration]| l.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(SQLITE_CONTROL), versions(POSTGRES_CONTROL));
        assert_eq!(versions(SQLITE_TENANT), versions(POSTGRES_TENANT));
    }

    #[test]
    fn pending_refuses_newer_databases() {
        // The list as it was with the baseline alone (version 2).
        let list = &SQLITE_TENANT[..1];
        assert_eq!(pending(Database::Tenant, list, 0, 99).unwrap().len(), 1);
        assert_eq!(pending(Database::Tenant, list, 1, 99).unwrap().len(), 1);
        assert!(pending(Database::Tenant, list, 2, 99).unwrap().is_empty());
        assert!(pending(Database::Tenant, list, 0, 1).unwrap().is_empty());
        let err = pending(Database::Tenant, list, 3, 3).unwrap_err();
        assert!(matches!(
            err,
            crate::StoreError::SchemaTooNew {
                found: 3,
                supported: 2,
                ..
            }
        ));
    }
}
