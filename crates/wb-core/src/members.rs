//! Who may change whose membership of a company (the shared ledger model).
//!
//! Pure rules: the store applies them inside the transaction that changes
//! the membership, with the counts it read there, so two admins acting at
//! once cannot remove the last owner between them.

use crate::roles::Role;

/// Why a membership change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberRuleError {
    #[error("only an owner may grant, change or remove the owner role")]
    OwnerOnly,
    #[error("the {0} role may not manage members")]
    NotAManager(Role),
    #[error("a company must keep at least one owner: make another member owner first")]
    LastOwner,
}

/// A change to one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    /// Give the member another role.
    SetRole(Role),
    /// Take the member out of the company.
    Remove,
}

/// Whether changing a member from `from` to `to` takes permissions away:
/// the API keys they created may carry the old role, so they are revoked.
pub fn lowers(from: Role, to: Role) -> bool {
    let rank = |role: Role| match role {
        Role::Owner => 3,
        Role::Admin => 2,
        Role::Accountant => 1,
        Role::Viewer => 0,
    };
    rank(to) < rank(from)
}

/// May `actor` (with its role) give `role` to someone new, by invitation?
pub fn check_invite(actor: Role, role: Role) -> Result<(), MemberRuleError> {
    if !matches!(actor, Role::Owner | Role::Admin) {
        return Err(MemberRuleError::NotAManager(actor));
    }
    if !actor.may_grant(role) {
        return Err(MemberRuleError::OwnerOnly);
    }
    Ok(())
}

/// May `actor` apply `change` to a member whose role is now `current`, in a
/// company that has `owners` owners (the member included, if an owner)?
pub fn check_change(
    actor: Role,
    current: Role,
    change: MemberChange,
    owners: usize,
) -> Result<(), MemberRuleError> {
    if !matches!(actor, Role::Owner | Role::Admin) {
        return Err(MemberRuleError::NotAManager(actor));
    }
    let granted = match change {
        MemberChange::SetRole(role) => Some(role),
        MemberChange::Remove => None,
    };
    // An admin neither touches an owner nor makes one.
    if (current == Role::Owner || granted == Some(Role::Owner)) && actor != Role::Owner {
        return Err(MemberRuleError::OwnerOnly);
    }
    let stays_owner = granted == Some(Role::Owner);
    if current == Role::Owner && !stays_owner && owners <= 1 {
        return Err(MemberRuleError::LastOwner);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn role() -> impl Strategy<Value = Role> {
        prop::sample::select(Role::ALL.to_vec())
    }

    fn change() -> impl Strategy<Value = MemberChange> {
        prop_oneof![
            role().prop_map(MemberChange::SetRole),
            Just(MemberChange::Remove)
        ]
    }

    #[test]
    fn examples() {
        use MemberChange::*;
        use Role::*;
        assert_eq!(check_invite(Admin, Owner), Err(MemberRuleError::OwnerOnly));
        assert_eq!(check_invite(Admin, Accountant), Ok(()));
        assert_eq!(
            check_invite(Accountant, Viewer),
            Err(MemberRuleError::NotAManager(Accountant))
        );
        assert_eq!(
            check_change(Owner, Owner, Remove, 1),
            Err(MemberRuleError::LastOwner)
        );
        assert_eq!(
            check_change(Owner, Owner, SetRole(Admin), 1),
            Err(MemberRuleError::LastOwner)
        );
        assert_eq!(check_change(Owner, Owner, SetRole(Owner), 1), Ok(()));
        assert_eq!(check_change(Owner, Owner, Remove, 2), Ok(()));
        assert_eq!(
            check_change(Admin, Owner, Remove, 2),
            Err(MemberRuleError::OwnerOnly)
        );
        assert_eq!(
            check_change(Admin, Viewer, SetRole(Owner), 2),
            Err(MemberRuleError::OwnerOnly)
        );
        assert_eq!(check_change(Admin, Viewer, SetRole(Admin), 1), Ok(()));
    }

    /// A lower role never allows something the higher one did not.
    #[test]
    fn lowering_means_fewer_permissions() {
        use crate::roles::Permission::*;
        for from in Role::ALL {
            for to in Role::ALL {
                let lost = [
                    ReadBooks,
                    WriteBooks,
                    ManageMembers,
                    ManageApiKeys,
                    ManageSecurity,
                    ReadAudit,
                    Deprovision,
                    ExportData,
                    RestoreCopy,
                    ReadFiles,
                    WriteFiles,
                    RotateKey,
                    PurgeData,
                ]
                .iter()
                .any(|p| from.allows(*p) && !to.allows(*p));
                assert_eq!(lowers(from, to), lost, "{from} -> {to}");
            }
        }
    }

    proptest! {
        /// Whatever is allowed, the company keeps an owner afterwards.
        #[test]
        fn an_allowed_change_never_leaves_the_company_without_an_owner(
            actor in role(), current in role(), change in change(), owners in 0usize..4
        ) {
            // The member counts among the owners when it is one.
            let owners = if current == Role::Owner { owners.max(1) } else { owners };
            if check_change(actor, current, change, owners).is_ok() {
                let after = owners
                    - usize::from(current == Role::Owner)
                    + usize::from(change == MemberChange::SetRole(Role::Owner));
                prop_assert!(after >= 1 || owners == 0);
            }
        }

        /// Only owners and admins manage members, and only owners touch the owner role.
        #[test]
        fn only_owners_touch_owners(actor in role(), current in role(), change in change()) {
            let allowed = check_change(actor, current, change, 3).is_ok();
            let touches_owner = current == Role::Owner
                || change == MemberChange::SetRole(Role::Owner);
            if allowed {
                prop_assert!(matches!(actor, Role::Owner | Role::Admin));
                prop_assert!(!touches_owner || actor == Role::Owner);
            }
        }
    }
}
