//! The storage interface. Backends: SQLCipher (`sqlite`), PostgreSQL (`postgres`).

use std::sync::Arc;

use async_trait::async_trait;
use time::{Date, Duration, OffsetDateTime};
use wb_core::audit::Checkpoint;
use wb_core::reports::{Amounts, BalanceRow, RegisterPosting};
use wb_core::{EntryDraft, NewAccount, Role};
use wb_crypto::DataKey;

use crate::export_schedules::ExportScheduleStore;
use crate::factors::FactorStore;
use crate::key_versions::KeyVersionStore;
use crate::lifecycle::LifecycleStore;
use crate::members::MemberStore;
use crate::model::*;
use crate::retention_rules::RetentionRuleStore;
use crate::staff::StaffStore;
use crate::StoreError;

/// The platform's own data: companies, users, memberships, sessions, API keys,
/// and (through `ExportScheduleStore`) companies' export schedules.
#[async_trait]
pub trait ControlStore:
    ExportScheduleStore
    + MemberStore
    + FactorStore
    + StaffStore
    + LifecycleStore
    + KeyVersionStore
    + RetentionRuleStore
    + Send
    + Sync
{
    /// Creates a company, its owner (or reuses the user) and the membership, atomically.
    async fn signup(
        &self,
        company: &CompanyRecord,
        owner: &UserRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    async fn create_company(
        &self,
        company: &CompanyRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    async fn company(&self, id: &str) -> Result<Option<CompanyRecord>, StoreError>;
    async fn companies(&self) -> Result<Vec<CompanyRecord>, StoreError>;
    /// Every row's (id, sealed bytes) of one column sealed under the master
    /// key or a key derived from it (for a master-key rotation).
    async fn sealed_values(
        &self,
        column: crate::SealedColumn,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Replaces row `id`'s sealed bytes with `new` if they are still `old`
    /// (false: the row changed or went since it was read; read it again).
    async fn reseal(
        &self,
        column: crate::SealedColumn,
        id: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError>;

    async fn create_user(&self, user: &UserRecord, audit: &AuditEvent) -> Result<(), StoreError>;
    async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Every user, by id (configuration backups).
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    async fn record_login(&self, user_id: &str, at: OffsetDateTime) -> Result<(), StoreError>;

    async fn add_member(
        &self,
        membership: &Membership,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    async fn role(&self, user_id: &str, company_id: &str) -> Result<Option<Role>, StoreError>;
    async fn memberships_of(&self, user_id: &str) -> Result<Vec<Membership>, StoreError>;
    /// Every membership of one company.
    async fn members_of(&self, company_id: &str) -> Result<Vec<Membership>, StoreError>;

    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    async fn revoke_session(&self, token_hash: &str, at: OffsetDateTime) -> Result<(), StoreError>;

    async fn create_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    async fn api_key(&self, token_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn api_keys(&self, company_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Replaces a live key of the company by `new` (same transaction): the
    /// old one works until `old_until` (earlier than its own expiry), and is
    /// revoked at once when `old_until` is `audit.at`. Returns the old key
    /// as it is now; NotFound when the company has no such live key.
    async fn rotate_api_key(
        &self,
        company_id: &str,
        key_id: &str,
        new: &ApiKeyRecord,
        old_until: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<ApiKeyRecord, StoreError>;
    /// Revokes a key of this company; NotFound when the company has no such key.
    async fn revoke_api_key(
        &self,
        company_id: &str,
        key_id: &str,
        audit: &AuditEvent,
    ) -> Result<ApiKeyRecord, StoreError>;

    /// Appends an event with no accompanying change (logins, refusals).
    async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    async fn audit_events(
        &self,
        company_id: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError>;

    /// Copies events of one source chain into the central collection; events
    /// already there (same source and sequence) are skipped. Returns how many were new.
    async fn central_append(
        &self,
        source: &str,
        node: &str,
        events: Vec<StoredAuditEvent>,
    ) -> Result<usize, StoreError>;
    /// The highest sequence of `source` in the central collection (0 when none).
    async fn central_head(&self, source: &str) -> Result<i64, StoreError>;
    async fn central_events(&self, query: AuditQuery) -> Result<Vec<CentralEvent>, StoreError>;
    /// One company's central events recorded under one authentication
    /// (`grant:<id>`: what was done under an access grant), oldest first,
    /// at most `limit` (indexed: a busy company's history is not scanned).
    async fn central_events_by_auth(
        &self,
        company_id: &str,
        auth: &str,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError>;
    async fn central_sources(&self) -> Result<Vec<String>, StoreError>;
    /// One source's events in the central collection, by source sequence.
    async fn central_source_events(
        &self,
        source: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError>;
    /// Removes a source's central copies through `through_seq`: a purge
    /// under the customer's retention rules removed those events from the
    /// source chain. The only delete of the collection (its guard is lifted
    /// inside this transaction alone). Returns how many went.
    async fn central_forget(&self, source: &str, through_seq: i64) -> Result<u64, StoreError>;
    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// Checkpoints of a source in the order they were written.
    async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>, StoreError>;
    /// The newest checkpoint of a source.
    async fn last_checkpoint(&self, source: &str) -> Result<Option<Checkpoint>, StoreError>;
    /// Records a node's public key and its certificate; a node registered
    /// before keeps its key (another key is a conflict) and takes the new
    /// certificate.
    async fn register_node(
        &self,
        id: &str,
        public_key_hex: &str,
        certificate: &[u8],
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Every registered node, by id.
    async fn node_keys(&self) -> Result<Vec<RegisteredNode>, StoreError>;
    async fn cursor(&self, name: &str) -> Result<i64, StoreError>;
    async fn set_cursor(&self, name: &str, seq: i64) -> Result<(), StoreError>;

    /// Counts one attempt (a login, a signup) against every key at once, or
    /// none: when each key has fewer than `max` attempts counted in its
    /// window, one more is counted against each (`Attempt::Counted`);
    /// otherwise nothing is (`Attempt::Refused`). A window starts at its
    /// key's first attempt; one that started `window` ago or earlier
    /// restarts at this attempt. Atomic across concurrent callers and nodes:
    /// however many race, at most `max` are counted per key and window.
    async fn reserve_attempt(
        &self,
        keys: &[String],
        at: OffsetDateTime,
        window: Duration,
        max: u32,
    ) -> Result<Attempt, StoreError> {
        let budgets: Vec<(String, u32)> = keys.iter().map(|k| (k.clone(), max)).collect();
        self.reserve_attempts(&budgets, at, window).await
    }
    /// `reserve_attempt` with a maximum of its own for each key.
    async fn reserve_attempts(
        &self,
        budgets: &[(String, u32)],
        at: OffsetDateTime,
        window: Duration,
    ) -> Result<Attempt, StoreError>;
    /// Takes back attempts `reserve_attempt` counted (the login succeeded, or
    /// was never judged): one less against each key, unless its window has
    /// since restarted (that count is another attempt's).
    async fn release_attempt(&self, counted: &[(String, OffsetDateTime)])
        -> Result<(), StoreError>;
    /// `(attempts, window start)` of each key that has any, in the order asked.
    async fn login_failures(
        &self,
        keys: &[String],
    ) -> Result<Vec<(u32, OffsetDateTime)>, StoreError>;
    /// Takes or renews the lease `name` for `node` until `until` when it is
    /// free, expired (at `now`) or already this node's. True when `node` holds it.
    async fn try_lease(
        &self,
        name: &str,
        node: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError>;
}

/// One company's books. Opened for one company; nothing here names another.
#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn create_account(
        &self,
        account: NewAccount,
        ctx: WriteContext,
    ) -> Result<Account, StoreError>;
    /// Posts the entries all-or-nothing, in one transaction shared with other
    /// writers of this company (group commit).
    async fn post_entries(
        &self,
        drafts: Vec<EntryDraft>,
        idempotency: Option<Idempotency>,
        ctx: WriteContext,
    ) -> Result<Posted, StoreError>;
    async fn reverse_entry(
        &self,
        entry_id: i64,
        date: Date,
        description: Option<String>,
        ctx: WriteContext,
    ) -> Result<Entry, StoreError>;

    /// Queues the changes in this order all at once, so the company's writer
    /// commits them in groups, and answers each in the same order (a journal
    /// replay). Meant for a store no one else writes to.
    async fn apply_in_order(
        &self,
        changes: Vec<(Change, WriteContext)>,
    ) -> Vec<Result<Applied, StoreError>>;

    /// Records an attachment whose object is already stored (journal record
    /// `file_added`, audit action `file.upload`). A linked entry must exist.
    async fn add_file(&self, file: NewFile, ctx: WriteContext) -> Result<FileRecord, StoreError>;
    /// Purges under the retention rules (`crate::purge`): one transaction,
    /// all or nothing; a dry run reports the same and changes nothing.
    async fn purge(
        &self,
        plan: crate::purge::PurgePlan,
        ctx: WriteContext,
    ) -> Result<crate::purge::PurgeReport, StoreError>;
    async fn files(&self, page: FilePage) -> Result<Vec<FileRecord>, StoreError>;
    async fn file(&self, id: i64) -> Result<Option<FileRecord>, StoreError>;

    async fn accounts(&self) -> Result<Vec<Account>, StoreError>;
    async fn entry(&self, id: i64) -> Result<Option<Entry>, StoreError>;
    async fn entries(&self, page: EntryPage) -> Result<Vec<Entry>, StoreError>;
    /// Signed balances of every account and currency, entries dated on or before `as_of`.
    async fn balances_as_of(&self, as_of: Date) -> Result<Vec<BalanceRow>, StoreError>;
    /// Signed movements of every account and currency between the dates, inclusive.
    async fn movements(&self, from: Date, to: Date) -> Result<Vec<BalanceRow>, StoreError>;
    /// Balances before `from`, then the postings of one account in order.
    async fn register(
        &self,
        account_code: &str,
        from: Date,
        to: Date,
        limit: u32,
    ) -> Result<(Amounts, Vec<RegisterPosting>), StoreError>;
    async fn journal(&self, after_seq: i64, limit: u32) -> Result<Vec<JournalRecord>, StoreError>;
    async fn audit_events(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError>;
    async fn stats(&self) -> Result<TenantStats, StoreError>;
    /// Appends an audit event with no change attached (reads, refusals); durable
    /// when this returns (it shares the company's group commit).
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError>;
    /// The last committed audit sequence number (cheap; for forwarders).
    fn audit_head(&self) -> i64;
    /// The last change-journal sequence this process committed or read at
    /// open (cheap; for the shipper). Writes by another node show up here
    /// only after this node's next write.
    fn journal_head(&self) -> i64;
    fn company_id(&self) -> &str;
}

/// Opens companies' stores. The caller unwraps the DEK; the directory never sees the KEK.
#[async_trait]
pub trait TenantDirectory: Send + Sync {
    async fn create(
        &self,
        company_id: &str,
        key: &DataKey,
    ) -> Result<Arc<dyn TenantStore>, StoreError>;
    async fn open(
        &self,
        company_id: &str,
        key: &DataKey,
    ) -> Result<Arc<dyn TenantStore>, StoreError>;
    /// An already-open store, without needing the key again.
    fn get_open(&self, company_id: &str) -> Option<Arc<dyn TenantStore>>;
    fn open_count(&self) -> usize;
    /// Every store currently open.
    fn open_tenants(&self) -> Vec<Arc<dyn TenantStore>>;
    /// Closes and deletes a company database that was never recorded (failed creation).
    async fn discard(&self, company_id: &str);
    /// Closes and deletes a company's database for good (its destruction):
    /// the SQLCipher file with its WAL and SHM, or the PostgreSQL database
    /// and its role. A database already gone is no error (a resumed
    /// destruction repeats the step).
    async fn destroy(&self, company_id: &str) -> Result<DestroyedDatabase, StoreError>;
    /// Re-keys a company's database from `from` to `to` while it serves
    /// (SQLCipher: an online copy under the new key swapped in; PostgreSQL:
    /// the role's password derived from `to`). Afterwards it opens with
    /// `to` only. A database under `to` already is left as it is
    /// (`already`): a rotation interrupted after its database was re-keyed
    /// is finished by running it again.
    async fn rekey(
        &self,
        company_id: &str,
        from: &DataKey,
        to: &DataKey,
    ) -> Result<RekeyReport, StoreError>;
}

/// What `TenantDirectory::rekey` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekeyReport {
    /// The database was under the new key already: nothing was done.
    pub already: bool,
    /// Size of the re-keyed database file (0 on PostgreSQL).
    pub bytes: u64,
    /// Copy steps taken (1 on PostgreSQL).
    pub steps: u64,
    /// How long writes waited for the swap.
    pub write_pause: std::time::Duration,
    pub took: std::time::Duration,
}

/// What `TenantDirectory::destroy` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestroyedDatabase {
    /// Files, or the database and its role.
    pub items: u64,
    /// The file names or the database and role, without any directory
    /// (and what was done about the server's WAL).
    pub names: Vec<String>,
    pub bytes: u64,
}
