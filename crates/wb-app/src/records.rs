//! The plain records services take and give: adapters name them from here,
//! so they need no dependency on the stores (`wb-server` has none).

pub use wb_store::{
    Account, Actor, AmountFilter, ApiKeyRecord, AuditEvent, AuditQuery, CentralEvent,
    CompanyRecord, Entry, EntryPage, ExportSchedule, FilePage, FileRecord, Idempotency,
    InvitationRecord, MemberRecord, Membership, NewFile, Outcome, Posted, StoreError, UserRecord,
};
