//! Which audit details staff may read in the central audit without an
//! access grant. A detail is free text written by the code that recorded
//! the event, and some carry customer content (a file's name, an account's
//! name, why an entry was refused). Security and operations staff read the
//! trail to run the platform, so they get every event's who, what, when and
//! outcome, and the detail only of actions that describe the platform
//! itself: access decisions, sign-ins, staff work, alerts, the system. The
//! list is exhaustive, so a new action must say which side it is on; an
//! action this build does not know keeps its detail withheld.

use super::action::Action;

impl Action {
    /// Whether staff may read this action's detail in the central audit.
    pub const fn detail_open_to_staff(self) -> bool {
        match self {
            // Access decisions, sign-ins and sessions: the platform's own
            // reasons (wrong code, address not allowed, session too old).
            Action::AccessCompany
            | Action::AccessPermission
            | Action::AccessAddress
            | Action::AccessSession
            | Action::AuthLogin
            | Action::AuthLogout
            | Action::AuthPassphraseChange
            | Action::AuthPassphraseReset
            | Action::AuthSessionRevoke
            | Action::AuthMfaEnrol
            | Action::AuthMfaRemove
            | Action::AuthRecoveryCodes
            | Action::SecurityPolicySet => true,
            // The platform and its trail.
            Action::AlertAcknowledge
            | Action::AlertRaise
            | Action::AlertResolve
            | Action::AuditChainBreak
            | Action::AuditCheckpoint
            | Action::AuditUnavailable
            | Action::BackupVerify
            // A company's end: dates, counts, key ids and a name's hash.
            | Action::CompanyDeprovision
            | Action::CompanyDeprovisionCancel
            | Action::CompanyDestroyStep
            | Action::CompanyDestroyed
            | Action::DestructionCertificateRead
            // Key versions: numbers, dates and counts.
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
            | Action::SystemMaintenance
            | Action::SystemShutdown
            | Action::SystemStart => true,
            // Staff and their grants: staff wrote these words themselves.
            Action::StaffCreate
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
            | Action::GrantUse
            // KEK ids and counts: no customer content.
            | Action::KeysRotateMaster => true,
            // The books, files, exports, restores and the people in a
            // company: details may name or quote the customer's content.
            Action::AccountCreate
            | Action::AccountRegister
            | Action::AccountsList
            | Action::ApiKeyCreate
            | Action::ApiKeyRevoke
            | Action::ApiKeyRotate
            | Action::ApiKeysList
            | Action::AuditImport
            | Action::AuditList
            | Action::AuditRecord
            | Action::CompanyCreate
            | Action::CompanyMove
            | Action::CompanyRead
            | Action::CompanyRestore
            | Action::CompanyRestoreInPlace
            | Action::CompanySignup
            | Action::DashboardRead
            | Action::DrRestore
            | Action::DrRestoreApiKey
            | Action::DrRestoreExportSchedule
            | Action::DrRestoreMember
            | Action::DrRestoreSecondFactors
            | Action::DrRestoreSecurityPolicy
            | Action::DrRestoreGrant
            | Action::DrRestoreUser
            | Action::EntriesList
            | Action::EntryPost
            | Action::EntryRead
            | Action::EntryReverse
            | Action::ExportCreate
            | Action::ExportDownload
            | Action::ExportPush
            | Action::ExportScheduleDelete
            | Action::ExportScheduleRead
            | Action::ExportScheduleSet
            | Action::ExportsGet
            | Action::ExportsList
            | Action::FileDownload
            | Action::FileUpload
            | Action::FilesList
            | Action::InvitationAccept
            | Action::InvitationCreate
            | Action::InvitationRevoke
            | Action::InvitationsList
            | Action::JournalReplay
            | Action::MailUndeliverable
            | Action::MemberAdd
            | Action::MemberRemove
            | Action::MemberRole
            | Action::MembersList
            | Action::ReportBalanceSheet
            | Action::ReportIncomeStatement
            | Action::ReportTrialBalance
            | Action::RestoresList
            | Action::SecurityPolicyRead
            | Action::UserCreate => false,
        }
    }
}

/// Whether staff may read the detail of an event recorded as `action` (a
/// name from the trail, which a newer node may have written).
pub fn staff_may_read_detail(action: &str) -> bool {
    Action::parse(action).is_some_and(Action::detail_open_to_staff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_stays_withheld_and_unknown_actions_too() {
        for withheld in [
            "file.upload",
            "entry.post",
            "account.create",
            "export.create",
        ] {
            assert!(!staff_may_read_detail(withheld), "{withheld}");
        }
        for open in [
            "auth.login",
            "staff.refused",
            "access_grant.use",
            "alert.raise",
        ] {
            assert!(staff_may_read_detail(open), "{open}");
        }
        assert!(!staff_may_read_detail("books.new_thing_from_a_newer_node"));
        assert!(!staff_may_read_detail(""));
    }
}
