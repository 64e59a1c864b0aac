//! The audit vocabulary: every action name an audit event can carry.
//!
//! The names are a storage format. Each is hashed into its event's chain
//! link, exported, shipped to drains and shown by the audit API, so
//! [`Action::as_str`] must keep returning exactly the string below for as
//! long as any trail holds it: rename a variant freely, never its name.
//!
//! Events written by this build always carry an `Action`. Events read back
//! (a company's chain, the central collection, an imported trail or one
//! written by a newer node during a rolling upgrade) keep the stored string
//! as it is, and [`Action::parse`] says whether this build knows it. There is
//! deliberately no "unrecognized" variant: the hash covers the stored bytes,
//! so readers must keep them anyway, and a catch-all variant would let a
//! writer record a name that is not in this list, which is what the enum
//! exists to prevent. A name this build does not know is verified and shown
//! like any other; it just matches no monitor rule.

use std::fmt;
use std::str::FromStr;

/// Declares the enum, its name table and the two conversions from one list,
/// so a variant and its name cannot drift apart.
macro_rules! actions {
    ($($(#[doc = $doc:literal])+ $variant:ident = $name:literal,)+) => {
        /// What an audit event records. See the module documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Action {
            /// Every action, in declaration order.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)+];

            /// The stored name, byte for byte what earlier builds wrote.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)+
                }
            }

            /// The action a stored name stands for; None for a name this
            /// build does not know (see the module documentation).
            pub fn parse(name: &str) -> Option<Action> {
                match name {
                    $($name => Some(Action::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

actions! {
    /// A caller refused by the access door because the company's policy
    /// does not allow their address (platform trail; 403 ip-not-allowed).
    AccessAddress = "access.address",
    /// A session refused by the access door because the company's policy
    /// ended it (too old or idle; platform trail; 401).
    AccessSession = "access.session",
    /// A company's security policy read.
    SecurityPolicyRead = "security_policy.read",
    /// A company's security policy changed, or a change refused.
    SecurityPolicySet = "security_policy.set",
    /// A user changed their passphrase (platform trail; failure: the
    /// current one was wrong or the new one refused).
    AuthPassphraseChange = "auth.passphrase_change",
    /// A user ended one or more of their own sessions.
    AuthSessionRevoke = "auth.session_revoke",
    /// A second factor enrolled: an authenticator started or confirmed,
    /// or a passkey registered (platform trail; failure: refused).
    AuthMfaEnrol = "auth.mfa_enrol",
    /// A second factor removed (platform trail; failure: refused).
    AuthMfaRemove = "auth.mfa_remove",
    /// A user's recovery codes replaced by a new set.
    AuthRecoveryCodes = "auth.recovery_codes",
    /// A passphrase reset asked for by email, or completed with its token.
    AuthPassphraseReset = "auth.passphrase_reset",
    /// An API key replaced by a new secret, the old one kept for an overlap.
    ApiKeyRotate = "api_key.rotate",
    /// A caller refused by the access door because their role does not
    /// allow the operation (platform trail; 403).
    AccessPermission = "access.permission",
    /// A company's API keys listed (company trail).
    ApiKeysList = "api_keys.list",
    /// A company's audit trail read through the API (company trail).
    AuditList = "audit.list",
    /// A company's export schedule read (company trail).
    ExportScheduleRead = "export_schedule.read",
    /// A company's exports listed (company trail).
    ExportsList = "exports.list",
    /// One export's record read (company trail).
    ExportsGet = "exports.get",
    /// An account added to a company's chart (company trail).
    AccountCreate = "account.create",
    /// One account's register read.
    AccountRegister = "account.register",
    /// The chart of accounts read.
    AccountsList = "accounts.list",
    /// A request for a company the caller has no access to, refused
    /// (platform trail; the monitor counts bursts of them).
    AccessCompany = "access.company",
    /// Staff acknowledged an alert.
    AlertAcknowledge = "alert.acknowledge",
    /// The monitor raised a new alert.
    AlertRaise = "alert.raise",
    /// Staff resolved an alert.
    AlertResolve = "alert.resolve",
    /// An API key issued (or refused).
    ApiKeyCreate = "api_key.create",
    /// An API key revoked.
    ApiKeyRevoke = "api_key.revoke",
    /// An explicit report that a trail's chain is broken. No code path of
    /// this build records it; the monitor alerts when one arrives.
    AuditChainBreak = "audit.chain_break",
    /// A signed checkpoint of a trail was made.
    AuditCheckpoint = "audit.checkpoint",
    /// Importing a trail into a company was refused (only failures are
    /// recorded under this name; imported events keep their own).
    AuditImport = "audit.import",
    /// Recording a standalone audit event was refused.
    AuditRecord = "audit.record",
    /// A company's trail could not be written and the fail-closed policy
    /// applied (platform trail; target names the action that was lost).
    AuditUnavailable = "audit.unavailable",
    /// A login, successful or not.
    AuthLogin = "auth.login",
    /// A session ended by its holder.
    AuthLogout = "auth.logout",
    /// A backup was verified.
    BackupVerify = "backup.verify",
    /// A company created by an operator.
    CompanyCreate = "company.create",
    /// A company moved to another database.
    CompanyMove = "company.move",
    /// A company de-provisioned by its owner: access blocked, destruction
    /// scheduled after the grace period (or the attempt refused).
    CompanyDeprovision = "company.deprovision",
    /// A de-provisioning cancelled by the owner within the grace period.
    CompanyDeprovisionCancel = "company.deprovision.cancel",
    /// One step of a company's destruction done (what and how much went).
    CompanyDestroyStep = "company.destroy.step",
    /// A company destroyed; the detail is the signed certificate.
    CompanyDestroyed = "company.destroyed",
    /// A destruction certificate fetched (or a wrong token refused).
    DestructionCertificateRead = "company.destruction_certificate.read",
    /// A company's key rotated to a new version (its database re-keyed).
    CompanyKeyRotate = "company.key.rotate",
    /// A company's retention rules set (before and after), or a change refused.
    RetentionSet = "retention.set",
    /// A company's retention rules read.
    RetentionRead = "retention.read",
    /// Stored exports older than the company's `exports_days` deleted.
    ExportExpire = "export.expire",
    /// Data purged under the retention rules (before/after counts), or a purge refused.
    DataPurge = "data.purge",
    /// A purge's dry run: what it would remove.
    DataPurgePreview = "data.purge.preview",
    /// Backups made before a purge deleted once a snapshot after it was shipped.
    DataPurgeBackups = "data.purge.backups",
    /// Management approved restoring a company into a local sandbox (or a request refused).
    SandboxApprove = "sandbox.approve",
    /// A company restored into a sanitized sandbox (or a restore refused).
    SandboxRestore = "sandbox.restore",
    /// A sandbox destroyed (at its expiry or by hand): files and key gone.
    SandboxDestroy = "sandbox.destroy",
    /// A company's key versions read (what depends on each).
    CompanyKeyStatusRead = "company.key.status.read",
    /// A retired version of a company's key destroyed: nothing kept needed it.
    CompanyKeyVersionDestroy = "company.key.version.destroy",
    /// A company's profile read.
    CompanyRead = "company.read",
    /// A company's dashboard read in the console (balances, recent entries,
    /// backup position, alerts).
    DashboardRead = "dashboard.read",
    /// A company restored from backup into a new or empty place.
    CompanyRestore = "company.restore",
    /// A company reverted in place to an earlier point.
    CompanyRestoreInPlace = "company.restore.in_place",
    /// The status of a company's restores read (an owner's request, its
    /// progress, the new company).
    RestoresList = "restores.list",
    /// A self-service signup (a company and its owner).
    CompanySignup = "company.signup",
    /// A disaster-recovery restore of the control data.
    DrRestore = "dr.restore",
    /// An API key brought back by a disaster-recovery restore.
    DrRestoreApiKey = "dr.restore_api_key",
    /// An export schedule brought back by a disaster-recovery restore.
    DrRestoreExportSchedule = "dr.restore_export_schedule",
    /// A user's second factors brought back by a disaster-recovery restore.
    DrRestoreSecondFactors = "dr.restore_second_factors",
    /// A membership brought back by a disaster-recovery restore.
    DrRestoreMember = "dr.restore_member",
    /// A company's security policy restored from a configuration backup.
    DrRestoreSecurityPolicy = "dr.restore_security_policy",
    /// A staff access grant, with its approvals and ending, restored from a
    /// configuration backup.
    DrRestoreGrant = "dr.restore_grant",
    /// A user brought back by a disaster-recovery restore.
    DrRestoreUser = "dr.restore_user",
    /// The journal entries listed.
    EntriesList = "entries.list",
    /// A journal entry posted (or refused).
    EntryPost = "entry.post",
    /// One journal entry read.
    EntryRead = "entry.read",
    /// A journal entry reversed (or refused).
    EntryReverse = "entry.reverse",
    /// A customer asked for an export of the company's data.
    ExportCreate = "export.create",
    /// A stored export downloaded.
    ExportDownload = "export.download",
    /// A scheduled export pushed to the company's destination (by the
    /// system, at most hourly).
    ExportPush = "export.push",
    /// An export schedule removed.
    ExportScheduleDelete = "export.schedule.delete",
    /// An export schedule set or changed.
    ExportScheduleSet = "export.schedule.set",
    /// An attachment downloaded.
    FileDownload = "file.download",
    /// An attachment uploaded (or refused).
    FileUpload = "file.upload",
    /// The attachments listed.
    FilesList = "files.list",
    /// Change-journal records replayed into a company (a restore).
    JournalReplay = "journal.replay",
    /// The master key rotated: every wrapped key, sealed secret and node
    /// certificate moved to the new key (detail: KEK ids and counts only).
    KeysRotateMaster = "keys.rotate_master",
    /// An invitation to a company accepted, or a refused attempt (platform
    /// trail for a token that matches no live invitation).
    InvitationAccept = "invitation.accept",
    /// An invitation to a company sent.
    InvitationCreate = "invitation.create",
    /// A pending invitation revoked.
    InvitationRevoke = "invitation.revoke",
    /// A company's pending invitations listed.
    InvitationsList = "invitations.list",
    /// An email given up after its last delivery attempt (platform trail).
    MailUndeliverable = "mail.undeliverable",
    /// A user added to a company.
    MemberAdd = "member.add",
    /// A member taken out of a company.
    MemberRemove = "member.remove",
    /// A member given another role.
    MemberRole = "member.role",
    /// A company's members listed.
    MembersList = "members.list",
    /// The balance sheet read.
    ReportBalanceSheet = "report.balance_sheet",
    /// The income statement read.
    ReportIncomeStatement = "report.income_statement",
    /// The trial balance read.
    ReportTrialBalance = "report.trial_balance",
    /// An operator announced planned maintenance (a shutdown soon after is
    /// expected).
    SystemMaintenance = "system.maintenance",
    /// A node shut down cleanly.
    SystemShutdown = "system.shutdown",
    /// A node started.
    SystemStart = "system.start",
    /// A user account created by an operator.
    UserCreate = "user.create",
    /// A staff account created (control trail).
    StaffCreate = "staff.create",
    /// A staff member's roles changed.
    StaffRoles = "staff.roles",
    /// A staff account disabled (its sessions end).
    StaffDisable = "staff.disable",
    /// A staff member's authenticator replaced (its sessions end).
    StaffResetMfa = "staff.reset_mfa",
    /// A staff login, successful or not.
    StaffLogin = "staff.login",
    /// A staff session ended by its holder.
    StaffLogout = "staff.logout",
    /// A staff view read (support, sales, alerts, status).
    StaffView = "staff.view",
    /// A staff request refused (a view the roles do not open, a company
    /// path outside an active grant).
    StaffRefused = "staff.refused",
    /// A staff member asked for access to a company's content.
    GrantRequest = "access_grant.request",
    /// An access grant approved by one side.
    GrantApprove = "access_grant.approve",
    /// An access grant denied by one side.
    GrantDeny = "access_grant.deny",
    /// An access grant revoked by one side.
    GrantRevoke = "access_grant.revoke",
    /// A company's access grants read (access transparency).
    GrantsList = "access_grants.list",
    /// A staff member opened a company's content under an access grant for
    /// a change (in the company's trail, before the change itself).
    GrantUse = "access_grant.use",
}

impl Action {
    /// Whether the mass-export rule counts this action: data a person asked
    /// to take out. Schedule changes and the scheduled pushes themselves are
    /// not a burst anyone asked for. Exhaustive, so a new action must say.
    pub const fn is_export_of_data(self) -> bool {
        match self {
            Action::ExportCreate | Action::ExportDownload => true,
            Action::ExportPush | Action::ExportScheduleDelete | Action::ExportScheduleSet => false,
            // Reading export records and schedules takes no data out.
            Action::ExportsList | Action::ExportsGet | Action::ExportScheduleRead => false,
            Action::AccessPermission | Action::ApiKeysList | Action::AuditList => false,
            Action::AccountCreate
            | Action::AccountRegister
            | Action::AccountsList
            | Action::AccessCompany
            | Action::AlertAcknowledge
            | Action::AlertRaise
            | Action::AlertResolve
            | Action::ApiKeyCreate
            | Action::ApiKeyRevoke
            | Action::AuditChainBreak
            | Action::AuditCheckpoint
            | Action::AuditImport
            | Action::AuditRecord
            | Action::AuditUnavailable
            | Action::AuthLogin
            | Action::AuthLogout
            | Action::BackupVerify
            | Action::CompanyCreate
            | Action::CompanyMove
            | Action::CompanyDeprovision
            | Action::CompanyDeprovisionCancel
            | Action::CompanyDestroyStep
            | Action::CompanyDestroyed
            | Action::DestructionCertificateRead
            | Action::CompanyKeyRotate
            | Action::CompanyKeyStatusRead
            | Action::CompanyKeyVersionDestroy
            | Action::RetentionSet
            | Action::RetentionRead
            | Action::ExportExpire
            | Action::DataPurge
            | Action::DataPurgePreview
            | Action::DataPurgeBackups
            | Action::SandboxApprove
            | Action::SandboxRestore
            | Action::SandboxDestroy
            | Action::CompanyRead
            | Action::DashboardRead
            | Action::CompanyRestore
            | Action::CompanyRestoreInPlace
            | Action::RestoresList
            | Action::CompanySignup
            | Action::DrRestore
            | Action::DrRestoreApiKey
            | Action::DrRestoreExportSchedule
            | Action::DrRestoreMember
            | Action::DrRestoreSecondFactors
            | Action::DrRestoreGrant
            | Action::DrRestoreSecurityPolicy
            | Action::DrRestoreUser
            | Action::EntriesList
            | Action::EntryPost
            | Action::EntryRead
            | Action::EntryReverse
            | Action::FileDownload
            | Action::FileUpload
            | Action::FilesList
            | Action::JournalReplay
            | Action::KeysRotateMaster
            | Action::AccessAddress
            | Action::AccessSession
            | Action::AuthPassphraseChange
            | Action::AuthSessionRevoke
            | Action::AuthMfaEnrol
            | Action::AuthMfaRemove
            | Action::AuthRecoveryCodes
            | Action::AuthPassphraseReset
            | Action::ApiKeyRotate
            | Action::SecurityPolicyRead
            | Action::SecurityPolicySet
            | Action::InvitationAccept
            | Action::InvitationCreate
            | Action::InvitationRevoke
            | Action::InvitationsList
            | Action::MailUndeliverable
            | Action::MemberAdd
            | Action::MemberRemove
            | Action::MemberRole
            | Action::MembersList
            | Action::ReportBalanceSheet
            | Action::ReportIncomeStatement
            | Action::ReportTrialBalance
            | Action::SystemMaintenance
            | Action::SystemShutdown
            | Action::SystemStart
            | Action::UserCreate
            | Action::StaffCreate
            | Action::StaffRoles
            | Action::StaffDisable
            | Action::StaffResetMfa
            | Action::StaffLogin
            | Action::StaffLogout
            | Action::StaffView
            | Action::StaffRefused
            | Action::GrantRequest
            | Action::GrantApprove
            | Action::GrantDeny
            | Action::GrantRevoke
            | Action::GrantsList
            | Action::GrantUse => false,
        }
    }
}

/// A name that is not in this build's audit vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action {0:?}")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Action, UnknownAction> {
        Action::parse(s).ok_or_else(|| UnknownAction(s.to_string()))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Action> for String {
    fn from(action: Action) -> String {
        action.as_str().to_string()
    }
}

impl serde::Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Action, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn every_action_round_trips_and_names_are_unique() {
        let mut names = HashSet::new();
        for &action in Action::ALL {
            let name = action.as_str();
            assert!(names.insert(name), "{name} is used twice");
            assert_eq!(Action::parse(name), Some(action));
            assert_eq!(name.parse::<Action>(), Ok(action));
            assert_eq!(action.to_string(), name);
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), action);
        }
        // ALL lists each variant once (the macro builds both from one list).
        assert_eq!(names.len(), Action::ALL.len());
    }

    #[test]
    fn names_keep_the_grammar_of_the_stored_trails() {
        for &action in Action::ALL {
            let name = action.as_str();
            let parts: Vec<&str> = name.split('.').collect();
            assert!(
                parts.len() >= 2
                    && parts
                        .iter()
                        .all(|p| !p.is_empty()
                            && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')),
                "{name}"
            );
        }
    }

    /// These strings are in hash-chained trails already written: changing one
    /// breaks verification of every old event that carries it.
    #[test]
    fn stored_names_are_pinned() {
        let pinned = [
            (Action::AuthLogin, "auth.login"),
            (Action::AccessCompany, "access.company"),
            (Action::EntryPost, "entry.post"),
            (Action::CompanyRestoreInPlace, "company.restore.in_place"),
            (
                Action::DrRestoreExportSchedule,
                "dr.restore_export_schedule",
            ),
            (Action::ApiKeyCreate, "api_key.create"),
            (Action::ExportScheduleSet, "export.schedule.set"),
            (Action::AuditUnavailable, "audit.unavailable"),
            (Action::ReportTrialBalance, "report.trial_balance"),
            (Action::SystemMaintenance, "system.maintenance"),
            (Action::AccessPermission, "access.permission"),
            (Action::ApiKeysList, "api_keys.list"),
            (Action::AuditList, "audit.list"),
            (Action::ExportsList, "exports.list"),
            (Action::ExportsGet, "exports.get"),
            (Action::ExportScheduleRead, "export_schedule.read"),
            (Action::InvitationAccept, "invitation.accept"),
            (Action::MemberRole, "member.role"),
            (Action::MemberRemove, "member.remove"),
            (Action::KeysRotateMaster, "keys.rotate_master"),
        ];
        for (action, name) in pinned {
            assert_eq!(action.as_str(), name);
        }
        assert_eq!(Action::ALL.len(), 111);
    }

    #[test]
    fn only_asked_for_exports_count_as_exports() {
        let counted: Vec<&str> = Action::ALL
            .iter()
            .filter(|a| a.is_export_of_data())
            .map(|a| a.as_str())
            .collect();
        assert_eq!(counted, ["export.create", "export.download"]);
    }

    proptest! {
        #[test]
        fn unknown_names_are_refused_not_guessed(name in "[a-z_.]{0,30}") {
            match Action::parse(&name) {
                Some(action) => prop_assert_eq!(action.as_str(), name.as_str()),
                None => {
                    prop_assert!(Action::ALL.iter().all(|a| a.as_str() != name));
                    prop_assert_eq!(name.parse::<Action>(), Err(UnknownAction(name.clone())));
                    let json = serde_json::to_string(&name).unwrap();
                    prop_assert!(serde_json::from_str::<Action>(&json).is_err());
                }
            }
        }
    }
}
