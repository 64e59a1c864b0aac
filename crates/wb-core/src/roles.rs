//! Company roles and what each may do. Enforced on every company-scoped route.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Owner,
    Admin,
    Accountant,
    Viewer,
}

/// What a request needs. Routes name one; roles grant a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadBooks,
    WriteBooks,
    ManageMembers,
    ManageApiKeys,
    ManageSecurity,
    ReadAudit,
    Deprovision,
    /// Take a full export of the company (books, audit trail, journal).
    ExportData,
    /// Restore the company's backups into a new company.
    RestoreCopy,
    /// Download attachments (and list them).
    ReadFiles,
    /// Upload attachments.
    WriteFiles,
    /// Rotate the company's key to a new version.
    RotateKey,
    /// Purge data under the retention rules (irreversible, backups included).
    PurgeData,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Accountant, Role::Viewer];

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(
                permission,
                Deprovision | RestoreCopy | RotateKey | PurgeData
            ),
            Role::Accountant => {
                matches!(permission, ReadBooks | WriteBooks | ReadFiles | WriteFiles)
            }
            Role::Viewer => matches!(permission, ReadBooks | ReadFiles),
        }
    }

    /// A grantor may hand out only roles at or below its own; only an owner makes owners.
    pub fn may_grant(self, granted: Role) -> bool {
        match self {
            Role::Owner => true,
            Role::Admin => granted != Role::Owner,
            Role::Accountant | Role::Viewer => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Accountant => "accountant",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use owner, admin, accountant or viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.chars().take(32).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table() {
        use Permission::*;
        let table = [
            (Role::Owner, [true, true, true, true, true, true, true]),
            (Role::Admin, [true, true, true, true, true, true, false]),
            (
                Role::Accountant,
                [true, true, false, false, false, false, false],
            ),
            (
                Role::Viewer,
                [true, false, false, false, false, false, false],
            ),
        ];
        let perms = [
            ReadBooks,
            WriteBooks,
            ManageMembers,
            ManageApiKeys,
            ManageSecurity,
            ReadAudit,
            Deprovision,
        ];
        for (role, expected) in table {
            for (perm, allowed) in perms.iter().zip(expected) {
                assert_eq!(role.allows(*perm), allowed, "{role} {perm:?}");
            }
        }
    }

    #[test]
    fn only_owners_purge() {
        let purgers: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.allows(Permission::PurgeData))
            .collect();
        assert_eq!(purgers, [Role::Owner]);
    }

    #[test]
    fn only_owners_rotate_keys() {
        let rotators: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.allows(Permission::RotateKey))
            .collect();
        assert_eq!(rotators, [Role::Owner]);
    }

    #[test]
    fn only_owners_and_admins_export() {
        let exporters: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.allows(Permission::ExportData))
            .collect();
        assert_eq!(exporters, [Role::Owner, Role::Admin]);
    }

    #[test]
    fn grants_only_downwards() {
        assert!(Role::Owner.may_grant(Role::Owner));
        assert!(!Role::Admin.may_grant(Role::Owner));
        assert!(Role::Admin.may_grant(Role::Viewer));
        assert!(!Role::Accountant.may_grant(Role::Viewer));
    }

    #[test]
    fn parses_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
