//! Contract tests for the storage interface.
//!
//! The stories below take trait objects (`ControlStore`, `TenantDirectory`,
//! `TenantStore`) and know nothing of SQLite, so another backend (PostgreSQL)
//! can be run through the same stories by adding a constructor next to
//! `sqlite_backend`. Tests that look beneath the interface (files on disk, raw
//! connections) are marked `sqlite_only_*`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::date;
use time::{Date, Duration, OffsetDateTime};
use wb_core::ledger::MAX_POSTINGS;
use wb_core::reports::{balance_sheet, trial_balance, AccountInfo, BalanceRow};
use wb_core::Action;
use wb_core::{
    AccountType, Currency, EntryDraft, LedgerError, MoneyError, NewAccount, PostingDraft, Role,
};
use wb_crypto::{new_token, DataKey, MasterKey};
use wb_store::sqlite::{open_encrypted, OpenMode, SqliteControl, SqliteTenants};
use wb_store::{
    chain_link, Account, Actor, ApiKeyRecord, Applied, AuditEvent, Change, CompanyRecord,
    CompanyStatus, ControlStore, Entry, EntryPage, Idempotency, JournalRecord, Membership, Outcome,
    ReplayedContent, ReplayedRecord, RestoredEntry, SessionRecord, StoreError, StoredAuditEvent,
    TenantDirectory, TenantStore, UserRecord, WriteContext, GENESIS,
};

use crate::pg_backend;

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

struct Backend {
    /// Keeps the data directory alive for the test's duration.
    dir: tempfile::TempDir,
    control: Arc<dyn ControlStore>,
    tenants: Arc<dyn TenantDirectory>,
}

impl Backend {
    fn control_path(&self) -> PathBuf {
        self.dir.path().join("control.db")
    }
    fn companies_dir(&self) -> PathBuf {
        self.dir.path().join("companies")
    }
}

fn sqlite_backend_with_key(control_key: &DataKey) -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let control =
        SqliteControl::open(&dir.path().join("control.db"), control_key).expect("open control");
    let tenants = SqliteTenants::new(dir.path().join("companies")).expect("tenant directory");
    Backend {
        dir,
        control: Arc::new(control),
        tenants: Arc::new(tenants),
    }
}

fn sqlite_backend() -> Backend {
    sqlite_backend_with_key(&DataKey::generate())
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn actor(id: &str) -> Actor {
    Actor {
        id: id.into(),
        auth: "session".into(),
        client: Some("contract-test".into()),
        request_id: Some(format!("req-{}", uuid::Uuid::new_v4())),
    }
}

fn ctx() -> WriteContext {
    WriteContext {
        actor: actor("user:contract"),
        at: OffsetDateTime::now_utc(),
    }
}

fn audit_event(company_id: Option<&str>, action: Action, target: Option<&str>) -> AuditEvent {
    AuditEvent {
        at: OffsetDateTime::now_utc(),
        actor: actor("user:contract"),
        company_id: company_id.map(str::to_string),
        action,
        target: target.map(str::to_string),
        outcome: Outcome::Success,
        detail: None,
    }
}

fn new_account(
    code: &str,
    name: &str,
    kind: &str,
    parent: Option<&str>,
    currency: Option<&str>,
) -> NewAccount {
    NewAccount::validate(code, name, kind, parent, currency).expect("valid account")
}

fn p(account: &str, amount: &str, currency: &str) -> PostingDraft {
    PostingDraft {
        account: account.into(),
        amount: amount.into(),
        currency: currency.into(),
    }
}

fn draft(date: Date, description: &str, postings: Vec<PostingDraft>) -> EntryDraft {
    EntryDraft {
        date,
        description: description.into(),
        reference: None,
        postings,
    }
}

fn usd() -> Currency {
    Currency::parse("USD").expect("USD")
}

fn eur() -> Currency {
    Currency::parse("EUR").expect("EUR")
}

struct Company {
    id: String,
    key: DataKey,
    store: Arc<dyn TenantStore>,
}

/// Registers a company in the control plane and creates its books.
async fn new_company(
    control: &dyn ControlStore,
    tenants: &dyn TenantDirectory,
    name: &str,
) -> Company {
    let kek = MasterKey::generate();
    let id = uuid::Uuid::new_v4().to_string();
    let key = DataKey::generate();
    let record = CompanyRecord {
        id: id.clone(),
        name: name.into(),
        status: CompanyStatus::Active,
        wrapped_dek: kek.wrap(&key, &id).expect("wrap"),
        created_at: OffsetDateTime::now_utc(),
    };
    control
        .create_company(
            &record,
            &audit_event(Some(&id), Action::CompanyCreate, None),
        )
        .await
        .expect("create company");
    let store = tenants.create(&id, &key).await.expect("create books");
    Company { id, key, store }
}

/// A small chart: 1000 Cash, 1100 Bank (child of 1000), 1200 Euro cash (EUR only),
/// 2000 Payables, 3000 Capital, 4000 Sales, 5000 Rent.
async fn standard_chart(store: &dyn TenantStore) -> Vec<Account> {
    let chart = [
        new_account("1000", "Cash", "asset", None, None),
        new_account("1100", "Bank", "asset", Some("1000"), None),
        new_account("1200", "Euro cash", "asset", None, Some("EUR")),
        new_account("2000", "Payables", "liability", None, None),
        new_account("3000", "Capital", "equity", None, None),
        new_account("4000", "Sales", "income", None, None),
        new_account("5000", "Rent", "expense", None, None),
    ];
    let mut out = Vec::new();
    for account in chart {
        out.push(
            store
                .create_account(account, ctx())
                .await
                .expect("create account"),
        );
    }
    out
}

fn infos(accounts: &[Account]) -> Vec<AccountInfo> {
    accounts
        .iter()
        .map(|a| AccountInfo {
            code: a.code.clone(),
            name: a.name.clone(),
            account_type: a.account_type,
        })
        .collect()
}

type BalanceMap = BTreeMap<(String, String), i128>;

/// Balance rows as a map, without zero balances (a backend may or may not keep them).
fn balance_map(rows: &[BalanceRow]) -> BalanceMap {
    let mut map = BalanceMap::new();
    for row in rows {
        *map.entry((row.code.clone(), row.currency.code().to_string()))
            .or_default() += row.amount;
    }
    map.retain(|_, v| *v != 0);
    map
}

const FAR_FUTURE: Date = date!(2199 - 12 - 31);

async fn balances(store: &dyn TenantStore, as_of: Date) -> BalanceMap {
    balance_map(&store.balances_as_of(as_of).await.expect("balances"))
}

async fn all_journal(store: &dyn TenantStore) -> Vec<JournalRecord> {
    let mut out: Vec<JournalRecord> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r.seq);
        let page = store.journal(after, 1000).await.expect("journal");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

async fn all_tenant_audit(store: &dyn TenantStore) -> Vec<StoredAuditEvent> {
    let mut out: Vec<StoredAuditEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r.seq);
        let page = store.audit_events(after, 1000).await.expect("audit");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

async fn all_control_audit(
    control: &dyn ControlStore,
    company: Option<&str>,
) -> Vec<StoredAuditEvent> {
    let mut out: Vec<StoredAuditEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r.seq);
        let page = control
            .audit_events(company, after, 1000)
            .await
            .expect("control audit");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

async fn all_entries(store: &dyn TenantStore) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    loop {
        let page = store
            .entries(EntryPage {
                after: out.last().map(|e| e.id),
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("entries");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("format timestamp")
}

/// Each record links to the previous one, starting from GENESIS, with no gaps.
fn verify_journal_chain(records: &[JournalRecord]) {
    let mut prev = GENESIS.to_string();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as i64 + 1, "journal sequence has a gap");
        assert_eq!(r.prev_hash, prev, "journal record {} prev_hash", r.seq);
        let at = rfc3339(r.at);
        let expected = chain_link(&prev, r.seq, &[&at, &r.kind, &r.payload]);
        assert_eq!(r.hash, expected, "journal record {} hash", r.seq);
        // A changed payload would not produce the same link.
        let tampered = format!("{} ", r.payload);
        assert_ne!(chain_link(&prev, r.seq, &[&at, &r.kind, &tampered]), r.hash);
        prev = r.hash.clone();
    }
}

/// An audit chain verifies with wb-core's verifier and links from GENESIS without gaps.
fn verify_audit_chain(events: &[StoredAuditEvent]) {
    let chained: Vec<_> = events.iter().map(StoredAuditEvent::chained).collect();
    let verified = wb_core::audit::verify(&chained, &[], |_| true).expect("audit chain verifies");
    assert_eq!(verified.events as usize, events.len());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "audit sequence has a gap");
    }
}

fn verify_tenant_audit_chain(events: &[StoredAuditEvent]) {
    verify_audit_chain(events);
}

fn verify_control_audit_chain(events: &[StoredAuditEvent]) {
    verify_audit_chain(events);
}

/// Everything a refused write must leave untouched.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    accounts: i64,
    entries: i64,
    journal_seq: i64,
    journal_len: usize,
    audit_len: usize,
    entry_count: usize,
    balances: BalanceMap,
}

async fn snapshot(store: &dyn TenantStore) -> Snapshot {
    let stats = store.stats().await.expect("stats");
    Snapshot {
        accounts: stats.accounts,
        entries: stats.entries,
        journal_seq: stats.journal_seq,
        journal_len: all_journal(store).await.len(),
        // Refusals are audited as failures; only successful changes count here.
        audit_len: all_tenant_audit(store)
            .await
            .iter()
            .filter(|e| e.outcome == "success")
            .count(),
        entry_count: all_entries(store).await.len(),
        balances: balances(store, FAR_FUTURE).await,
    }
}

/// Trial balance totals are zero in every currency that appears; returns the totals' currencies.
async fn assert_trial_balance_zero(store: &dyn TenantStore, as_of: Date) -> BTreeSet<String> {
    let accounts = store.accounts().await.expect("accounts");
    let rows = store.balances_as_of(as_of).await.expect("balances");
    let tb = trial_balance(as_of, &infos(&accounts), &rows);
    for (currency, total) in &tb.totals {
        assert_eq!(*total, 0, "trial balance total in {currency} as of {as_of}");
    }
    let sheet = balance_sheet(as_of, &infos(&accounts), &rows);
    assert!(
        sheet.balanced,
        "balance sheet as of {as_of} does not balance"
    );
    tb.totals.keys().map(|c| c.code().to_string()).collect()
}

// ---------------------------------------------------------------------------
// Stories (backend-agnostic)
// ---------------------------------------------------------------------------

async fn accounts_story(control: Arc<dyn ControlStore>, tenants: Arc<dyn TenantDirectory>) {
    let company = new_company(&*control, &*tenants, "Accounts Ltd").await;
    let store = company.store.clone();

    // Created out of code order on purpose.
    let sales = store
        .create_account(new_account("4000", "Sales", "income", None, None), ctx())
        .await
        .expect("create 4000");
    assert!(sales.id > 0);
    assert_eq!(sales.code, "4000");
    assert_eq!(sales.name, "Sales");
    assert_eq!(sales.account_type, AccountType::Income);
    assert_eq!(sales.parent, None);
    assert_eq!(sales.currency, None);
    let cash = store
        .create_account(new_account("1000", "Cash", "asset", None, None), ctx())
        .await
        .expect("create 1000");
    let petty = store
        .create_account(
            new_account("1010", "Petty cash", "asset", Some("1000"), Some("EUR")),
            ctx(),
        )
        .await
        .expect("create 1010 under 1000");
    assert_eq!(petty.parent.as_deref(), Some("1000"));
    assert_eq!(petty.currency, Some(eur()));
    let rent = store
        .create_account(new_account("5000", "Rent", "expense", None, None), ctx())
        .await
        .expect("create 5000");
    assert_ne!(cash.id, sales.id);

    let before = snapshot(&*store).await;
    assert_eq!(before.accounts, 4);

    // Duplicate code.
    let err = store
        .create_account(
            new_account("1000", "Other cash", "asset", None, None),
            ctx(),
        )
        .await
        .expect_err("duplicate code must be refused");
    assert!(
        matches!(&err, StoreError::Ledger(LedgerError::DuplicateAccountCode(c)) if c == "1000"),
        "{err:?}"
    );
    // Parent of another type.
    let err = store
        .create_account(
            new_account("4100", "Service sales", "income", Some("1000"), None),
            ctx(),
        )
        .await
        .expect_err("parent of another type must be refused");
    assert!(
        matches!(
            &err,
            StoreError::Ledger(LedgerError::ParentTypeMismatch {
                parent,
                parent_type: AccountType::Asset,
                child_type: AccountType::Income,
            }) if parent == "1000"
        ),
        "{err:?}"
    );
    // Unknown parent.
    let err = store
        .create_account(
            new_account("1020", "Till", "asset", Some("1999"), None),
            ctx(),
        )
        .await
        .expect_err("unknown parent must be refused");
    assert!(
        matches!(&err, StoreError::Ledger(LedgerError::UnknownParent(p)) if p == "1999"),
        "{err:?}"
    );
    assert_eq!(
        snapshot(&*store).await,
        before,
        "a refused account wrote something"
    );

    let listed = store.accounts().await.expect("accounts");
    let codes: Vec<&str> = listed.iter().map(|a| a.code.as_str()).collect();
    assert_eq!(codes, ["1000", "1010", "4000", "5000"]);
    let by_code: BTreeMap<&str, &Account> = listed.iter().map(|a| (a.code.as_str(), a)).collect();
    for created in [&sales, &cash, &petty, &rent] {
        let stored = by_code[created.code.as_str()];
        assert_eq!(stored.id, created.id);
        assert_eq!(stored.name, created.name);
        assert_eq!(stored.account_type, created.account_type);
        assert_eq!(stored.parent, created.parent);
        assert_eq!(stored.currency, created.currency);
        assert_eq!(stored.created_at, created.created_at);
    }

    // One journal record per created account; one audit event per attempt,
    // refusals recorded as failures with their reason.
    let journal = all_journal(&*store).await;
    assert_eq!(journal.len(), 4);
    assert!(journal.iter().all(|r| r.kind == "account_created"));
    verify_journal_chain(&journal);
    let audit = all_tenant_audit(&*store).await;
    assert!(audit
        .iter()
        .all(|e| e.action == Action::AccountCreate.as_str()));
    assert_eq!(audit.iter().filter(|e| e.outcome == "success").count(), 4);
    let failures: Vec<_> = audit.iter().filter(|e| e.outcome == "failure").collect();
    assert_eq!(failures.len(), 3);
    assert!(failures
        .iter()
        .all(|e| e.detail.as_deref().is_some_and(|d| !d.is_empty())));
    verify_tenant_audit_chain(&audit);
}

async fn posting_story(control: Arc<dyn ControlStore>, tenants: Arc<dyn TenantDirectory>) {
    let company = new_company(&*control, &*tenants, "Posting Ltd").await;
    let store = company.store.clone();
    standard_chart(&*store).await;

    let mut sale = draft(
        date!(2026 - 03 - 14),
        "  Sale of widgets  ",
        vec![
            p("1100", "1234.50", "USD"),
            p("4000", "-1234.5", "USD"),
            p("1200", "10", "EUR"),
            p("3000", "-10.00", "EUR"),
        ],
    );
    sale.reference = Some("INV-001".into());
    let posted = store
        .post_entries(vec![sale], None, ctx())
        .await
        .expect("post a balanced entry");
    assert!(!posted.replayed);
    assert_eq!(posted.entries.len(), 1);
    let entry = &posted.entries[0];
    assert!(entry.id > 0);
    assert_eq!(entry.date, date!(2026 - 03 - 14));
    assert_eq!(entry.description, "Sale of widgets");
    assert_eq!(entry.reference.as_deref(), Some("INV-001"));
    assert_eq!(entry.reverses, None);
    assert_eq!(entry.reversed_by, None);
    assert_eq!(entry.created_by, "user:contract");
    let amounts: Vec<(&str, i64, &str)> = entry
        .postings
        .iter()
        .map(|p| (p.account.as_str(), p.amount, p.currency.code()))
        .collect();
    assert_eq!(
        amounts,
        [
            ("1100", 123450, "USD"),
            ("4000", -123450, "USD"),
            ("1200", 1000, "EUR"),
            ("3000", -1000, "EUR"),
        ]
    );
    let stored = store
        .entry(entry.id)
        .await
        .expect("read")
        .expect("entry exists");
    assert_eq!(&stored, entry, "stored entry differs from the posted one");
    assert_eq!(store.entry(entry.id + 1000).await.expect("read"), None);

    let after_first = snapshot(&*store).await;
    assert_eq!(after_first.entry_count, 1);
    assert_eq!(after_first.entries, 1);
    assert_eq!(
        after_first.balances,
        BalanceMap::from([
            (("1100".into(), "USD".into()), 123450),
            (("4000".into(), "USD".into()), -123450),
            (("1200".into(), "EUR".into()), 1000),
            (("3000".into(), "EUR".into()), -1000),
        ])
    );

    // Refusals: each with the ledger's reason, none writing anything.
    let d = date!(2026 - 03 - 15);
    let unbalanced = draft(
        d,
        "Unbalanced",
        vec![p("1000", "1.00", "USD"), p("4000", "-0.99", "USD")],
    );
    let err = store
        .post_entries(vec![unbalanced], None, ctx())
        .await
        .expect_err("unbalanced entry must be refused");
    assert!(
        matches!(&err, StoreError::Ledger(LedgerError::Unbalanced { currency, sum }) if *currency == usd() && sum == "0.01"),
        "{err:?}"
    );
    let unknown = draft(
        d,
        "Unknown",
        vec![p("1000", "1.00", "USD"), p("4999", "-1.00", "USD")],
    );
    let err = store
        .post_entries(vec![unknown], None, ctx())
        .await
        .expect_err("unknown account must be refused");
    assert!(
        matches!(&err, StoreError::Ledger(LedgerError::UnknownAccount { index: 1, code }) if code == "4999"),
        "{err:?}"
    );
    let decimals = draft(
        d,
        "Decimals",
        vec![p("1000", "1.001", "USD"), p("4000", "-1.001", "USD")],
    );
    let err = store
        .post_entries(vec![decimals], None, ctx())
        .await
        .expect_err("too many decimals must be refused");
    assert!(
        matches!(
            &err,
            StoreError::Ledger(LedgerError::Money {
                index: 0,
                source: MoneyError::TooManyDecimals { allowed: 2, .. }
            })
        ),
        "{err:?}"
    );
    let wrong_currency = draft(
        d,
        "Wrong currency",
        vec![p("1200", "5", "USD"), p("4000", "-5", "USD")],
    );
    let err = store
        .post_entries(vec![wrong_currency], None, ctx())
        .await
        .expect_err("currency restriction must hold");
    assert!(
        matches!(
            &err,
            StoreError::Ledger(LedgerError::CurrencyNotAllowed { index: 0, .. })
        ),
        "{err:?}"
    );
    let too_many = draft(
        d,
        "Too many",
        (0..=MAX_POSTINGS)
            .map(|i| p("1000", if i % 2 == 0 { "1" } else { "-1" }, "USD"))
            .collect(),
    );
    let err = store
        .post_entries(vec![too_many], None, ctx())
        .await
        .expect_err("too many postings must be refused");
    assert!(
        matches!(&err, StoreError::Ledger(LedgerError::TooManyPostings)),
        "{err:?}"
    );
    assert_eq!(
        snapshot(&*store).await,
        after_first,
        "a refused entry wrote something"
    );

    // A batch with one bad entry writes none of its entries.
    let mut batch: Vec<EntryDraft> = (0..5)
        .map(|i| {
            draft(
                d,
                &format!("Batch {i}"),
                vec![
                    p("1000", &format!("{}.00", i + 1), "USD"),
                    p("4000", &format!("-{}.00", i + 1), "USD"),
                ],
            )
        })
        .collect();
    batch[3].postings[1].amount = "-3.99".into();
    let err = store
        .post_entries(batch.clone(), None, ctx())
        .await
        .expect_err("a batch with a bad entry must be refused");
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("entry 3")),
        "{err:?}"
    );
    assert_eq!(
        snapshot(&*store).await,
        after_first,
        "a refused batch wrote something"
    );

    // The corrected batch posts all of its entries, in order, with consecutive ids.
    batch[3].postings[1].amount = "-4.00".into();
    let posted = store
        .post_entries(batch, None, ctx())
        .await
        .expect("post a batch");
    assert_eq!(posted.entries.len(), 5);
    let ids: Vec<i64> = posted.entries.iter().map(|e| e.id).collect();
    assert_eq!(ids, (entry.id + 1..=entry.id + 5).collect::<Vec<_>>());
    for (i, e) in posted.entries.iter().enumerate() {
        assert_eq!(e.description, format!("Batch {i}"));
        assert_eq!(e.postings[0].amount, (i as i64 + 1) * 100);
    }
    let after_batch = snapshot(&*store).await;
    assert_eq!(after_batch.entry_count, 6);
    assert_eq!(
        after_batch.journal_len,
        after_first.journal_len + 1,
        "one journal record per command"
    );
    assert_eq!(
        after_batch.audit_len,
        after_first.audit_len + 1,
        "one audit event per command"
    );
    assert_eq!(
        after_batch.balances[&("1000".to_string(), "USD".to_string())],
        1500,
        "1 + 2 + 3 + 4 + 5 dollars"
    );

    // Date filters on the entry list.
    let march_15 = store
        .entries(EntryPage {
            limit: 100,
            from: Some(d),
            to: Some(d),
            ..Default::default()
        })
        .await
        .expect("entries by date");
    assert_eq!(march_15.len(), 5);
    assert!(march_15.iter().all(|e| e.date == d));

    verify_journal_chain(&all_journal(&*store).await);
    verify_tenant_audit_chain(&all_tenant_audit(&*store).await);
    assert_trial_balance_zero(&*store, FAR_FUTURE).await;
}

async fn idempotency_story(control: Arc<dyn ControlStore>, tenants: Arc<dyn TenantDirectory>) {
    let company = new_company(&*control, &*tenants, "Idempotent Ltd").await;
    let store = company.store.clone();
    standard_chart(&*store).await;
    let d = date!(2026 - 04 - 01);
    let request = vec![
        draft(
            d,
            "Rent April",
            vec![p("5000", "900.00", "USD"), p("1100", "-900.00", "USD")],
        ),
        draft(
            d,
            "Rent deposit",
            vec![p("1000", "100.00", "USD"), p("1100", "-100.00", "USD")],
        ),
    ];
    let key = Idempotency {
        key: "key-1".into(),
        request_hash: "hash-a".into(),
    };

    let first = store
        .post_entries(request.clone(), Some(key.clone()), ctx())
        .await
        .expect("first post");
    assert!(!first.replayed);
    assert_eq!(first.entries.len(), 2);
    let after_first = snapshot(&*store).await;

    let again = store
        .post_entries(request.clone(), Some(key.clone()), ctx())
        .await
        .expect("replay");
    assert!(again.replayed, "same key and hash must replay");
    assert_eq!(
        again.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        first.entries.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    assert_eq!(
        again.entries, first.entries,
        "replay must answer the stored entries"
    );
    assert_eq!(
        snapshot(&*store).await,
        after_first,
        "a replay wrote something"
    );

    let mismatch = Idempotency {
        key: "key-1".into(),
        request_hash: "hash-b".into(),
    };
    let err = store
        .post_entries(request.clone(), Some(mismatch), ctx())
        .await
        .expect_err("same key, different request");
    assert!(matches!(err, StoreError::IdempotencyMismatch), "{err:?}");
    assert_eq!(
        snapshot(&*store).await,
        after_first,
        "a mismatch wrote something"
    );

    // A refused request does not use up its key.
    let bad = vec![draft(
        d,
        "Bad",
        vec![p("1000", "1.00", "USD"), p("4000", "-2.00", "USD")],
    )];
    let key2 = Idempotency {
        key: "key-2".into(),
        request_hash: "hash-bad".into(),
    };
    store
        .post_entries(bad, Some(key2.clone()), ctx())
        .await
        .expect_err("unbalanced");
    assert_eq!(snapshot(&*store).await, after_first);
    let good = vec![draft(
        d,
        "Good",
        vec![p("1000", "2.00", "USD"), p("4000", "-2.00", "USD")],
    )];
    let key2b = Idempotency {
        key: "key-2".into(),
        request_hash: "hash-good".into(),
    };
    let posted = store
        .post_entries(good, Some(key2b), ctx())
        .await
        .expect("key of a refused request is free");
    assert!(!posted.replayed);

    // A different key posts again.
    let other = store
        .post_entries(
            request.clone(),
            Some(Idempotency {
                key: "key-3".into(),
                request_hash: "hash-a".into(),
            }),
            ctx(),
        )
        .await
        .expect("another key");
    assert!(!other.replayed);
    assert!(other.entries[0].id > first.entries[1].id);

    // Twenty concurrent requests with one key create one entry.
    let before = snapshot(&*store).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let drafts = vec![draft(
                date!(2026 - 04 - 02),
                "Concurrent",
                vec![p("1000", "7.00", "USD"), p("4000", "-7.00", "USD")],
            )];
            let key = Idempotency {
                key: "key-concurrent".into(),
                request_hash: "hash-c".into(),
            };
            store.post_entries(drafts, Some(key), ctx()).await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task").expect("concurrent post"));
    }
    let fresh = results.iter().filter(|r| !r.replayed).count();
    assert_eq!(fresh, 1, "exactly one concurrent request must post");
    let ids: BTreeSet<Vec<i64>> = results
        .iter()
        .map(|r| r.entries.iter().map(|e| e.id).collect())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "every concurrent request must answer the same entry"
    );
    let after = snapshot(&*store).await;
    assert_eq!(after.entry_count, before.entry_count + 1);
    assert_eq!(after.entries, before.entries + 1);
    assert_eq!(after.journal_len, before.journal_len + 1);
    assert_eq!(after.audit_len, before.audit_len + 1);
    assert_eq!(
        after.balances[&("1000".to_string(), "USD".to_string())]
            - before.balances[&("1000".to_string(), "USD".to_string())],
        700
    );
}

async fn reversal_story(control: Arc<dyn ControlStore>, tenants: Arc<dyn TenantDirectory>) {
    let company = new_company(&*control, &*tenants, "Reversal Ltd").await;
    let store = company.store.clone();
    standard_chart(&*store).await;
    let day1 = date!(2026 - 05 - 01);
    let day2 = date!(2026 - 05 - 10);
    let day3 = date!(2026 - 05 - 20);

    store
        .post_entries(
            vec![draft(
                day1,
                "Capital",
                vec![p("1100", "5000", "USD"), p("3000", "-5000", "USD")],
            )],
            None,
            ctx(),
        )
        .await
        .expect("capital");
    let before = balances(&*store, FAR_FUTURE).await;
    let original = store
        .post_entries(
            vec![draft(
                day1,
                "Invoice paid",
                vec![
                    p("1100", "250.00", "USD"),
                    p("4000", "-250.00", "USD"),
                    p("1200", "3.50", "EUR"),
                    p("4000", "-3.50", "EUR"),
                ],
            )],
            None,
            ctx(),
        )
        .await
        .expect("original")
        .entries
        .remove(0);
    let with_original = balances(&*store, FAR_FUTURE).await;
    assert_ne!(with_original, before);

    let reversal = store
        .reverse_entry(original.id, day2, None, ctx())
        .await
        .expect("reverse");
    assert_eq!(reversal.reverses, Some(original.id));
    assert_eq!(reversal.reversed_by, None);
    assert_eq!(reversal.date, day2);
    assert_eq!(reversal.description, "Reversal of: Invoice paid");
    assert_eq!(reversal.postings.len(), original.postings.len());
    for (r, o) in reversal.postings.iter().zip(&original.postings) {
        assert_eq!(r.account, o.account);
        assert_eq!(r.currency, o.currency);
        assert_eq!(r.amount, -o.amount);
    }
    let reread = store
        .entry(original.id)
        .await
        .expect("read")
        .expect("original");
    assert_eq!(reread.reversed_by, Some(reversal.id));
    assert_eq!(reread.postings, original.postings);
    let reread_rev = store
        .entry(reversal.id)
        .await
        .expect("read")
        .expect("reversal");
    assert_eq!(reread_rev, reversal);

    // Balances after the reversal date are back; between the dates the original still counts.
    assert_eq!(balances(&*store, FAR_FUTURE).await, before);
    assert_eq!(balances(&*store, day2).await, before);
    assert_eq!(balances(&*store, day1).await, with_original);
    assert_eq!(
        balances(&*store, day2.previous_day().expect("day")).await,
        with_original
    );
    let moved = balance_map(&store.movements(day2, day2).await.expect("movements"));
    assert_eq!(
        moved.get(&("1100".to_string(), "USD".to_string())),
        Some(&-25000)
    );

    let settled = snapshot(&*store).await;
    let err = store
        .reverse_entry(original.id, day3, None, ctx())
        .await
        .expect_err("second reversal");
    assert!(
        matches!(&err, StoreError::Ledger(LedgerError::AlreadyReversed(id)) if *id == original.id.to_string()),
        "{err:?}"
    );
    let err = store
        .reverse_entry(reversal.id, day3, None, ctx())
        .await
        .expect_err("reversal of a reversal");
    assert!(
        matches!(&err, StoreError::Ledger(LedgerError::ReversalOfReversal(id)) if *id == reversal.id.to_string()),
        "{err:?}"
    );
    let err = store
        .reverse_entry(999_999, day3, None, ctx())
        .await
        .expect_err("unknown entry");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(
        snapshot(&*store).await,
        settled,
        "a refused reversal wrote something"
    );

    // A reversal with its own description, dated on the original's day.
    let second = store
        .post_entries(
            vec![draft(
                day3,
                "Rent",
                vec![p("5000", "80", "USD"), p("1100", "-80", "USD")],
            )],
            None,
            ctx(),
        )
        .await
        .expect("rent")
        .entries
        .remove(0);
    let rev2 = store
        .reverse_entry(second.id, day3, Some("Posted twice".into()), ctx())
        .await
        .expect("reverse same day");
    assert_eq!(rev2.description, "Posted twice");
    assert_eq!(balances(&*store, day3).await, before);

    let journal = all_journal(&*store).await;
    assert_eq!(
        journal
            .iter()
            .filter(|r| r.kind == "entry_reversed")
            .count(),
        2
    );
    verify_journal_chain(&journal);
    let audit = all_tenant_audit(&*store).await;
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == Action::EntryReverse.as_str() && e.outcome == "success")
            .count(),
        2
    );
    verify_tenant_audit_chain(&audit);
    assert_trial_balance_zero(&*store, FAR_FUTURE).await;

    // An entry and its reversal queued together (one group commit): the
    // reversal sees the entry posted just before it in the same transaction,
    // and a second reversal of it in the same group is refused.
    let next_id = store.stats().await.expect("stats").entries + 1;
    let (posted, reversed, twice) = tokio::join!(
        store.post_entries(
            vec![draft(
                day2,
                "Posted and reversed together",
                vec![p("1100", "9.00", "USD"), p("4000", "-9.00", "USD")],
            )],
            None,
            ctx(),
        ),
        store.reverse_entry(next_id, day3, None, ctx()),
        store.reverse_entry(next_id, day3, None, ctx()),
    );
    assert_eq!(posted.expect("posted").entries[0].id, next_id);
    let reversal = reversed.expect("reversed in the same group");
    assert_eq!(reversal.reverses, Some(next_id));
    assert!(matches!(
        twice.expect_err("reversed twice"),
        StoreError::Ledger(LedgerError::AlreadyReversed(_))
    ));
    assert_eq!(
        store
            .entry(next_id)
            .await
            .expect("read")
            .expect("entry")
            .reversed_by,
        Some(reversal.id)
    );
    verify_journal_chain(&all_journal(&*store).await);
}

async fn overflow_story(control: Arc<dyn ControlStore>, tenants: Arc<dyn TenantDirectory>) {
    let company = new_company(&*control, &*tenants, "Overflow Ltd").await;
    let store = company.store.clone();
    standard_chart(&*store).await;
    const MAX: &str = "92233720368547758.07"; // i64::MAX cents
    let d = date!(2026 - 06 - 01);
    let huge = |date: Date, what: &str| {
        draft(
            date,
            what,
            vec![p("1000", MAX, "USD"), p("2000", &format!("-{MAX}"), "USD")],
        )
    };

    let first = store
        .post_entries(vec![huge(d, "Huge 1")], None, ctx())
        .await
        .expect("i64::MAX fits");
    assert_eq!(first.entries[0].postings[0].amount, i64::MAX);
    let settled = snapshot(&*store).await;

    // Same account, same day, separate entry: the day balance would pass i64::MAX.
    let err = store
        .post_entries(vec![huge(d, "Huge 2")], None, ctx())
        .await
        .expect_err("day balance overflow");
    assert!(
        matches!(err, StoreError::Ledger(LedgerError::Overflow)),
        "{err:?}"
    );
    assert_eq!(
        snapshot(&*store).await,
        settled,
        "an overflowing entry wrote something"
    );

    // Same, in one batch whose first entry alone would be fine.
    let small = draft(
        d,
        "Small",
        vec![p("1100", "1.00", "USD"), p("4000", "-1.00", "USD")],
    );
    let err = store
        .post_entries(vec![small.clone(), huge(d, "Huge 3")], None, ctx())
        .await
        .expect_err("batch with an overflowing entry");
    assert!(
        matches!(err, StoreError::Ledger(LedgerError::Overflow)),
        "{err:?}"
    );
    assert_eq!(
        snapshot(&*store).await,
        settled,
        "an overflowing batch wrote something"
    );

    // Within one entry: two postings to one account that balance but overflow together.
    let err = store
        .post_entries(
            vec![draft(
                date!(2026 - 06 - 02),
                "Self overflow",
                vec![
                    p("5000", MAX, "USD"),
                    p("5000", MAX, "USD"),
                    p("2000", &format!("-{MAX}"), "USD"),
                    p("3000", &format!("-{MAX}"), "USD"),
                ],
            )],
            None,
            ctx(),
        )
        .await
        .expect_err("per-entry overflow");
    assert!(
        matches!(err, StoreError::Ledger(LedgerError::Overflow)),
        "{err:?}"
    );
    assert_eq!(snapshot(&*store).await, settled);

    // The writer keeps working after the refusals, and they used up no entry ids.
    let next = store
        .post_entries(vec![small], None, ctx())
        .await
        .expect("writer still works");
    assert_eq!(
        next.entries[0].id,
        settled.entries + 1,
        "a refused entry used up an id"
    );

    // On another day the day balance fits; cumulative balances must then be
    // reported exactly (they are i128) or the entry refused, never a read error.
    let d2 = date!(2026 - 06 - 03);
    match store
        .post_entries(vec![huge(d2, "Huge next day")], None, ctx())
        .await
    {
        Ok(_) => {
            let b = store
                .balances_as_of(d2)
                .await
                .expect("balances past i64 must still be readable");
            let map = balance_map(&b);
            assert_eq!(
                map[&("1000".to_string(), "USD".to_string())],
                2 * i128::from(i64::MAX)
            );
            assert_eq!(
                map[&("2000".to_string(), "USD".to_string())],
                -2 * i128::from(i64::MAX)
            );
            let m = balance_map(&store.movements(d, d2).await.expect("movements past i64"));
            assert_eq!(
                m[&("1000".to_string(), "USD".to_string())],
                2 * i128::from(i64::MAX)
            );
            let (opening, _) = store
                .register("1000", date!(2026 - 07 - 01), date!(2026 - 07 - 31), 10)
                .await
                .expect("register opening past i64");
            assert_eq!(opening[&usd()], 2 * i128::from(i64::MAX));
            assert_trial_balance_zero(&*store, d2).await;
        }
        Err(err) => {
            assert!(
                matches!(err, StoreError::Ledger(LedgerError::Overflow)),
                "{err:?}"
            );
        }
    }
    verify_journal_chain(&all_journal(&*store).await);
    // Each refusal is in the company's trail, whichever layer caught it.
    let trail = all_tenant_audit(&*store).await;
    let refusals = trail
        .iter()
        .filter(|e| e.action == Action::EntryPost.as_str() && e.outcome == "failure")
        .count();
    assert!(refusals >= 3, "overflow refusals are audited: {refusals}");
    verify_tenant_audit_chain(&trail);
}

/// 64 writers, 20 entries each, plus one refused entry each mixed into the stream.
/// A company database re-keyed while writers keep posting: nothing is lost
/// or refused, the old key opens nothing afterwards, the new one opens the
/// same books (also after the directory is opened again), and a second
/// re-key to the same key changes nothing.
async fn rekey_story(
    control: Arc<dyn ControlStore>,
    tenants: Arc<dyn TenantDirectory>,
    reopen: Option<Arc<dyn TenantDirectory>>,
) {
    let company = new_company(&*control, &*tenants, "Rekeyed Ltd").await;
    let store = company.store.clone();
    standard_chart(&*store).await;
    // Several MiB of books, so the copy takes many steps with writes between.
    let long = "x".repeat(450);
    for batch in 0..60 {
        let drafts = (0..100)
            .map(|i| {
                draft(
                    date!(2026 - 05 - 01),
                    &format!("bulk {batch}/{i} {long}"),
                    vec![p("1100", "1.00", "USD"), p("4000", "-1.00", "USD")],
                )
            })
            .collect();
        store.post_entries(drafts, None, ctx()).await.expect("bulk");
    }
    let before = snapshot(&*store).await;
    let new_key = DataKey::generate();
    const WRITERS: usize = 8;
    const POSTS: usize = 40;
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..POSTS {
                    store
                        .post_entries(
                            vec![draft(
                                date!(2026 - 05 - 02),
                                &format!("during {t}/{i}"),
                                vec![p("1100", "2.00", "USD"), p("4000", "-2.00", "USD")],
                            )],
                            None,
                            ctx(),
                        )
                        .await
                        .expect("a post while re-keying");
                }
            })
        })
        .collect();
    let report = tenants
        .rekey(&company.id, &company.key, &new_key)
        .await
        .expect("re-key");
    assert!(!report.already);
    if reopen.is_some() {
        // SQLCipher: copied in several steps, writes taken between them.
        assert!(report.steps > 3, "{report:?}");
        assert!(report.bytes > 3 * 1024 * 1024, "{report:?}");
    }
    for w in writers {
        w.await.expect("writer");
    }
    let store = tenants
        .open(&company.id, &new_key)
        .await
        .expect("opens with the new key");
    let after = snapshot(&*store).await;
    assert_eq!(after.entries, before.entries + (WRITERS * POSTS) as i64);
    assert_eq!(after.journal_len, before.journal_len + WRITERS * POSTS);
    let bank = after
        .balances
        .get(&("1100".to_string(), "USD".to_string()))
        .copied()
        .unwrap_or_default();
    assert_eq!(bank, 6000 * 100 + (WRITERS * POSTS) as i128 * 200);
    assert!(
        tenants.open(&company.id, &company.key).await.is_err(),
        "the old key opens nothing"
    );
    let again = tenants
        .rekey(&company.id, &company.key, &new_key)
        .await
        .expect("a second re-key to the same key");
    assert_eq!(after.entries, snapshot(&*store).await.entries);
    if reopen.is_some() {
        assert!(again.already, "{again:?}");
    }
    // Writes go on afterwards.
    store
        .post_entries(
            vec![draft(
                date!(2026 - 05 - 03),
                "after",
                vec![p("1100", "3.00", "USD"), p("4000", "-3.00", "USD")],
            )],
            None,
            ctx(),
        )
        .await
        .expect("a post after the re-key");
    if let Some(reopened) = reopen {
        assert!(matches!(
            reopened.open(&company.id, &company.key).await,
            Err(StoreError::WrongKey)
        ));
        let store = reopened
            .open(&company.id, &new_key)
            .await
            .expect("opens again with the new key");
        assert_eq!(snapshot(&*store).await.entries, after.entries + 1);
    }
}

async fn group_commit_story(control: Arc<dyn ControlStore>, tenants: Arc<dyn TenantDirectory>) {
    const TASKS: usize = 64;
    const PER_TASK: usize = 20;
    let company = new_company(&*control, &*tenants, "Busy Ltd").await;
    let store = company.store.clone();
    standard_chart(&*store).await;
    let before = snapshot(&*store).await;

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut expected: BalanceMap = BalanceMap::new();
            for i in 0..PER_TASK {
                if i == PER_TASK / 2 {
                    let bad = draft(
                        date!(2026 - 07 - 01),
                        "Refused",
                        vec![p("1000", "1.00", "USD"), p("4000", "-1.01", "USD")],
                    );
                    let err = store
                        .post_entries(vec![bad], None, ctx())
                        .await
                        .expect_err("unbalanced");
                    assert!(matches!(
                        err,
                        StoreError::Ledger(LedgerError::Unbalanced { .. })
                    ));
                }
                let cents = (t * 100 + i + 1) as i64;
                let amount = usd().format(i128::from(cents));
                let date = date!(2026 - 07 - 01) + Duration::days((i % 5) as i64);
                let (debit, credit, currency, minor) = if (t + i) % 3 == 0 {
                    ("1200", "4000", "EUR", cents)
                } else {
                    ("1100", "4000", "USD", cents)
                };
                let posted = store
                    .post_entries(
                        vec![draft(
                            date,
                            &format!("task {t} entry {i}"),
                            vec![
                                p(debit, &amount, currency),
                                p(credit, &format!("-{amount}"), currency),
                            ],
                        )],
                        None,
                        ctx(),
                    )
                    .await
                    .expect("concurrent post");
                assert!(!posted.replayed);
                assert_eq!(posted.entries.len(), 1);
                ids.push(posted.entries[0].id);
                *expected
                    .entry((debit.to_string(), currency.to_string()))
                    .or_default() += i128::from(minor);
                *expected
                    .entry((credit.to_string(), currency.to_string()))
                    .or_default() -= i128::from(minor);
            }
            (ids, expected)
        }));
    }
    let mut ids = Vec::new();
    let mut expected = BalanceMap::new();
    for task in tasks {
        let (task_ids, task_expected) = task.await.expect("writer task");
        ids.extend(task_ids);
        for (k, v) in task_expected {
            *expected.entry(k).or_default() += v;
        }
    }
    let total = TASKS * PER_TASK;
    ids.sort_unstable();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), total, "entry ids must be unique");
    assert_eq!(
        ids,
        (before.entries + 1..=before.entries + total as i64).collect::<Vec<_>>(),
        "refused commands must not leave gaps in entry ids"
    );

    let after = snapshot(&*store).await;
    assert_eq!(after.entries, before.entries + total as i64);
    assert_eq!(after.entry_count, before.entry_count + total);
    assert_eq!(
        after.balances, expected,
        "balances must equal the sum of what was posted"
    );
    let currencies = assert_trial_balance_zero(&*store, FAR_FUTURE).await;
    assert_eq!(
        currencies,
        BTreeSet::from(["EUR".to_string(), "USD".to_string()])
    );
    for offset in 0..5 {
        assert_trial_balance_zero(&*store, date!(2026 - 07 - 01) + Duration::days(offset)).await;
    }

    // Change journal: one record per command, chained, naming every entry once.
    let journal = all_journal(&*store).await;
    assert_eq!(journal.len(), before.journal_len + total);
    assert_eq!(after.journal_seq, journal.len() as i64);
    verify_journal_chain(&journal);
    let mut journaled = Vec::new();
    for record in journal.iter().filter(|r| r.kind == "entries_posted") {
        let payload: Value =
            serde_json::from_str(&record.payload).expect("journal payload is JSON");
        for e in payload["entries"].as_array().expect("entries array") {
            journaled.push(e["id"].as_i64().expect("entry id"));
        }
    }
    journaled.sort_unstable();
    assert_eq!(
        journaled, ids,
        "the journal must name each posted entry exactly once"
    );

    // Audit: one success event per successful command and one failure event
    // per refused one, all in one chain.
    let audit = all_tenant_audit(&*store).await;
    verify_tenant_audit_chain(&audit);
    let refused = audit.iter().filter(|e| e.outcome == "failure").count();
    assert_eq!(
        refused, 64,
        "each task's refused entry is audited as a failure"
    );
    let successes: Vec<_> = audit.iter().filter(|e| e.outcome == "success").collect();
    assert_eq!(successes.len(), before.audit_len + total);
    let targets: BTreeSet<String> = successes[before.audit_len..]
        .iter()
        .map(|e| {
            assert_eq!(e.action, Action::EntryPost.as_str());
            assert_eq!(e.outcome, "success");
            assert_eq!(e.actor, "user:contract");
            e.target.clone().expect("target")
        })
        .collect();
    let expected_targets: BTreeSet<String> = ids.iter().map(|id| format!("entry:{id}")).collect();
    assert_eq!(targets, expected_targets);
}

async fn control_story(control: Arc<dyn ControlStore>) {
    let kek = MasterKey::generate();
    let now = OffsetDateTime::now_utc();
    let company_record = |name: &str, status: CompanyStatus| {
        let id = uuid::Uuid::new_v4().to_string();
        CompanyRecord {
            wrapped_dek: kek.wrap(&DataKey::generate(), &id).expect("wrap"),
            id,
            name: name.into(),
            status,
            created_at: OffsetDateTime::now_utc(),
        }
    };
    let user_record = |email: &str| UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.into(),
        name: Some("Test User".into()),
        passphrase_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at: OffsetDateTime::now_utc(),
        last_login_at: None,
    };

    // Signup: company, owner and membership together.
    let start_companies = control.companies().await.expect("companies").len();
    let company = company_record("Signup Ltd", CompanyStatus::Active);
    let owner = user_record("owner@example.com");
    control
        .signup(
            &company,
            &owner,
            &audit_event(Some(&company.id), Action::CompanySignup, Some(&company.id)),
        )
        .await
        .expect("signup");
    let stored = control
        .company(&company.id)
        .await
        .expect("company")
        .expect("exists");
    assert_eq!(stored.name, "Signup Ltd");
    assert_eq!(stored.status, CompanyStatus::Active);
    assert_eq!(stored.wrapped_dek, company.wrapped_dek);
    assert!(kek.unwrap_key(&stored.wrapped_dek, &company.id).is_ok());
    // Sealed columns (a master-key rotation): every value read, one replaced
    // only while it is still the value read.
    use wb_store::SealedColumn;
    for column in SealedColumn::ALL {
        control.sealed_values(column).await.expect("sealed values");
    }
    let sealed = control
        .sealed_values(SealedColumn::CompanyKey)
        .await
        .expect("sealed values");
    assert!(sealed
        .iter()
        .any(|(id, w)| id == &company.id && w == &company.wrapped_dek));
    let rewrapped = kek.wrap(&DataKey::generate(), &company.id).expect("wrap");
    let reseal = |old: Vec<u8>, new: Vec<u8>| {
        let (control, id) = (control.clone(), company.id.clone());
        async move {
            control
                .reseal(SealedColumn::CompanyKey, &id, &old, &new)
                .await
                .expect("reseal")
        }
    };
    assert!(!reseal(b"stale".to_vec(), rewrapped.clone()).await);
    assert!(reseal(company.wrapped_dek.clone(), rewrapped.clone()).await);
    let changed = control.company(&company.id).await.expect("company");
    assert_eq!(changed.expect("exists").wrapped_dek, rewrapped);
    assert!(reseal(rewrapped, company.wrapped_dek.clone()).await);
    assert_eq!(
        control.companies().await.expect("companies").len(),
        start_companies + 1
    );
    let stored_owner = control
        .user_by_email("owner@example.com")
        .await
        .expect("user")
        .expect("owner exists");
    assert_eq!(stored_owner.id, owner.id);
    assert_eq!(stored_owner.passphrase_hash, owner.passphrase_hash);
    assert_eq!(stored_owner.last_login_at, None);
    assert_eq!(
        control
            .user(&owner.id)
            .await
            .expect("user")
            .map(|u| u.email),
        Some(owner.email.clone())
    );
    assert_eq!(
        control.role(&owner.id, &company.id).await.expect("role"),
        Some(Role::Owner)
    );
    assert_eq!(
        control
            .memberships_of(&owner.id)
            .await
            .expect("memberships"),
        vec![Membership {
            company_id: company.id.clone(),
            user_id: owner.id.clone(),
            role: Role::Owner,
        }]
    );

    // Signup with a taken email (in another case): refused, and no company left behind.
    let audit_before = all_control_audit(&*control, None).await.len();
    let company2 = company_record("Copycat Ltd", CompanyStatus::Active);
    let copycat = user_record("OWNER@Example.com");
    let err = control
        .signup(
            &company2,
            &copycat,
            &audit_event(Some(&company2.id), Action::CompanySignup, None),
        )
        .await
        .expect_err("email taken");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        control.companies().await.expect("companies").len(),
        start_companies + 1
    );
    assert!(control
        .company(&company2.id)
        .await
        .expect("company")
        .is_none());
    assert!(control.user(&copycat.id).await.expect("user").is_none());
    assert!(control
        .memberships_of(&copycat.id)
        .await
        .expect("memberships")
        .is_empty());
    assert_eq!(
        all_control_audit(&*control, None).await.len(),
        audit_before,
        "refused signup audited as success"
    );

    // Roles: none for a stranger, upsert on add_member, none in a deprovisioned company.
    let stranger = user_record("stranger@example.com");
    control
        .create_user(
            &stranger,
            &audit_event(None, Action::UserCreate, Some(&stranger.id)),
        )
        .await
        .expect("create user");
    assert_eq!(
        control.role(&stranger.id, &company.id).await.expect("role"),
        None
    );
    assert_eq!(
        control
            .role(&owner.id, "no-such-company")
            .await
            .expect("role"),
        None
    );
    assert!(control
        .memberships_of(&stranger.id)
        .await
        .expect("memberships")
        .is_empty());
    let err = control
        .create_user(
            &user_record("Stranger@example.com"),
            &audit_event(None, Action::UserCreate, None),
        )
        .await
        .expect_err("duplicate email");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let membership = |role| Membership {
        company_id: company.id.clone(),
        user_id: stranger.id.clone(),
        role,
    };
    control
        .add_member(
            &membership(Role::Viewer),
            &audit_event(Some(&company.id), Action::MemberAdd, Some(&stranger.id)),
        )
        .await
        .expect("add member");
    assert_eq!(
        control.role(&stranger.id, &company.id).await.expect("role"),
        Some(Role::Viewer)
    );
    control
        .add_member(
            &membership(Role::Accountant),
            &audit_event(Some(&company.id), Action::MemberAdd, Some(&stranger.id)),
        )
        .await
        .expect("change role");
    assert_eq!(
        control.role(&stranger.id, &company.id).await.expect("role"),
        Some(Role::Accountant)
    );
    assert_eq!(
        control
            .memberships_of(&stranger.id)
            .await
            .expect("memberships")
            .len(),
        1
    );

    let gone = company_record("Gone Ltd", CompanyStatus::Deprovisioned);
    control
        .create_company(
            &gone,
            &audit_event(Some(&gone.id), Action::CompanyCreate, None),
        )
        .await
        .expect("create company");
    control
        .add_member(
            &Membership {
                company_id: gone.id.clone(),
                user_id: stranger.id.clone(),
                role: Role::Owner,
            },
            &audit_event(Some(&gone.id), Action::MemberAdd, None),
        )
        .await
        .expect("add member");
    assert_eq!(
        control.role(&stranger.id, &gone.id).await.expect("role"),
        None,
        "a deprovisioned company grants no role"
    );

    let login_at = now + Duration::seconds(5);
    control
        .record_login(&owner.id, login_at)
        .await
        .expect("login");
    assert_eq!(
        control
            .user(&owner.id)
            .await
            .expect("user")
            .expect("owner")
            .last_login_at,
        Some(login_at)
    );

    // Sessions.
    let token = new_token("wbs");
    let session = SessionRecord {
        token_hash: token.hash.clone(),
        user_id: owner.id.clone(),
        created_at: now,
        expires_at: now + Duration::hours(12),
        revoked_at: None,
        client: Some("192.0.2.7".into()),
        user_agent: Some("Contract/1".into()),
        last_seen_at: None,
        second_factor: None,
    };
    control
        .create_session(&session)
        .await
        .expect("create session");
    let found = control
        .session(&token.hash)
        .await
        .expect("session")
        .expect("exists");
    assert_eq!(found.user_id, owner.id);
    assert_eq!(found.created_at, session.created_at);
    assert_eq!(found.expires_at, session.expires_at);
    assert_eq!(found.revoked_at, None);
    assert_eq!(found.client.as_deref(), Some("192.0.2.7"));
    assert_eq!(found.user_agent.as_deref(), Some("Contract/1"));
    assert_eq!(found.last_seen_at, None);
    // Stored to the millisecond.
    let seen = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    control
        .touch_session(&token.hash, seen)
        .await
        .expect("touch");
    assert_eq!(
        control.session_last_seen(&token.hash).await.expect("seen"),
        Some(seen)
    );
    // A second session of the same user: listed, and ended by its prefix
    // or as "every other one"; a non-hex prefix matches nothing.
    let second = new_token("wbs");
    control
        .create_session(&SessionRecord {
            token_hash: second.hash.clone(),
            ..session.clone()
        })
        .await
        .expect("second session");
    assert_eq!(
        control
            .sessions_of(&owner.id, now)
            .await
            .expect("list")
            .len(),
        2
    );
    assert!(control
        .revoke_sessions_of(&owner.id, "%", None, now)
        .await
        .expect("wildcard")
        .is_empty());
    let ended = control
        .revoke_sessions_of(&owner.id, "", Some(&token.hash), now)
        .await
        .expect("others");
    assert_eq!(ended, vec![second.hash.clone()]);
    let live = control.sessions_of(&owner.id, now).await.expect("list");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].token_hash, token.hash);
    assert!(control
        .session(&new_token("wbs").hash)
        .await
        .expect("session")
        .is_none());
    let revoked_at = now + Duration::minutes(1);
    control
        .revoke_session(&token.hash, revoked_at)
        .await
        .expect("revoke");
    assert_eq!(
        control
            .session(&token.hash)
            .await
            .expect("session")
            .expect("exists")
            .revoked_at,
        Some(revoked_at)
    );
    control
        .revoke_session(&token.hash, revoked_at + Duration::minutes(1))
        .await
        .expect("revoke again");
    assert_eq!(
        control
            .session(&token.hash)
            .await
            .expect("session")
            .expect("exists")
            .revoked_at,
        Some(revoked_at),
        "a second revocation must not move the revocation time"
    );

    // API keys.
    let other = company_record("Other Ltd", CompanyStatus::Active);
    control
        .create_company(
            &other,
            &audit_event(Some(&other.id), Action::CompanyCreate, None),
        )
        .await
        .expect("create company");
    let api_token = new_token("wbk");
    let key = ApiKeyRecord {
        id: uuid::Uuid::new_v4().to_string(),
        company_id: company.id.clone(),
        name: "CI".into(),
        role: Role::Accountant,
        token_hash: api_token.hash.clone(),
        created_by: format!("user:{}", owner.id),
        created_at: now,
        expires_at: now + Duration::days(90),
        revoked_at: None,
    };
    control
        .create_api_key(
            &key,
            &audit_event(Some(&company.id), Action::ApiKeyCreate, Some(&key.id)),
        )
        .await
        .expect("create api key");
    let found = control
        .api_key(&api_token.hash)
        .await
        .expect("api key")
        .expect("exists");
    assert_eq!(found.id, key.id);
    assert_eq!(found.company_id, company.id);
    assert_eq!(found.role, Role::Accountant);
    assert_eq!(found.name, "CI");
    assert_eq!(found.expires_at, key.expires_at);
    assert_eq!(found.revoked_at, None);
    assert!(control
        .api_key(&new_token("wbk").hash)
        .await
        .expect("api key")
        .is_none());
    let listed = control.api_keys(&company.id).await.expect("api keys");
    assert_eq!(
        listed.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        [key.id.as_str()]
    );
    assert!(control
        .api_keys(&other.id)
        .await
        .expect("api keys")
        .is_empty());

    let err = control
        .revoke_api_key(
            &other.id,
            &key.id,
            &audit_event(Some(&other.id), Action::ApiKeyRevoke, Some(&key.id)),
        )
        .await
        .expect_err("another company's key");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(
        control
            .api_key(&api_token.hash)
            .await
            .expect("api key")
            .expect("exists")
            .revoked_at,
        None,
        "another company revoked the key"
    );
    let err = control
        .revoke_api_key(
            &company.id,
            "no-such-key",
            &audit_event(Some(&company.id), Action::ApiKeyRevoke, None),
        )
        .await
        .expect_err("unknown key");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let revoke_event = audit_event(Some(&company.id), Action::ApiKeyRevoke, Some(&key.id));
    let revoked = control
        .revoke_api_key(&company.id, &key.id, &revoke_event)
        .await
        .expect("revoke own key");
    assert_eq!(revoked.id, key.id);
    assert_eq!(revoked.revoked_at, Some(revoke_event.at));
    assert_eq!(
        control
            .api_key(&api_token.hash)
            .await
            .expect("api key")
            .expect("exists")
            .revoked_at,
        Some(revoke_event.at)
    );

    // Audit: a standalone event, then the whole chain.
    let refusal = AuditEvent {
        outcome: Outcome::Failure,
        detail: Some("wrong passphrase".into()),
        ..audit_event(None, Action::AuthLogin, Some("user:unknown"))
    };
    control.audit(&refusal).await.expect("audit");
    let events = all_control_audit(&*control, None).await;
    verify_control_audit_chain(&events);
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            Action::CompanySignup.as_str(),
            Action::UserCreate.as_str(),
            Action::MemberAdd.as_str(),
            Action::MemberAdd.as_str(),
            Action::CompanyCreate.as_str(),
            Action::MemberAdd.as_str(),
            Action::CompanyCreate.as_str(),
            Action::ApiKeyCreate.as_str(),
            Action::ApiKeyRevoke.as_str(),
            Action::AuthLogin.as_str(),
        ],
        "refused writes must not be audited as if they happened"
    );
    let last = events.last().expect("events");
    assert_eq!(last.outcome, "failure");
    assert_eq!(last.detail.as_deref(), Some("wrong passphrase"));
    assert_eq!(last.company_id, None);
    let of_company = all_control_audit(&*control, Some(&company.id)).await;
    assert_eq!(of_company.len(), 5);
    assert!(of_company
        .iter()
        .all(|e| e.company_id.as_deref() == Some(company.id.as_str())));
}

// ---------------------------------------------------------------------------
// Model-based property: the store's balances equal balances recomputed here.
// ---------------------------------------------------------------------------

const MODEL_CHART: [(&str, &str); 7] = [
    ("1000", "asset"),
    ("1100", "asset"),
    ("2000", "liability"),
    ("3000", "equity"),
    ("4000", "income"),
    ("5000", "expense"),
    ("5100", "expense"),
];
const MODEL_CURRENCIES: [&str; 3] = ["USD", "EUR", "JPY"];
const MODEL_BASE: Date = date!(2026 - 01 - 01);

#[derive(Debug, Clone)]
struct ModelEntry {
    day: i64,
    /// (debit account, credit account, currency, minor units > 0)
    legs: Vec<(usize, usize, usize, i64)>,
}

#[derive(Debug, Clone)]
struct ModelCase {
    entries: Vec<ModelEntry>,
    /// Batch sizes used to split the entries into post_entries calls.
    batches: Vec<usize>,
    /// (index of the entry to reverse, reversal day offset)
    reversals: Vec<(usize, i64)>,
    as_of: i64,
    window: (i64, i64),
}

fn model_case() -> impl Strategy<Value = ModelCase> {
    let leg = (
        0..MODEL_CHART.len(),
        0..MODEL_CHART.len(),
        0..MODEL_CURRENCIES.len(),
        1i64..5_000_000,
    );
    let entry = (0i64..40, prop::collection::vec(leg, 1..4))
        .prop_map(|(day, legs)| ModelEntry { day, legs });
    (
        prop::collection::vec(entry, 1..30),
        prop::collection::vec(1usize..6, 1..8),
        prop::collection::vec((0usize..100, 0i64..45), 0..5),
        -2i64..45,
        (0i64..45, 0i64..45),
    )
        .prop_map(|(entries, batches, reversals, as_of, (a, b))| ModelCase {
            entries,
            batches,
            reversals,
            as_of,
            window: (a.min(b), a.max(b)),
        })
}

fn model_date(offset: i64) -> Date {
    MODEL_BASE + Duration::days(offset)
}

fn model_draft(i: usize, e: &ModelEntry) -> EntryDraft {
    let mut postings = Vec::new();
    for &(debit, credit, currency, minor) in &e.legs {
        let code = MODEL_CURRENCIES[currency];
        let c = Currency::parse(code).expect("currency");
        postings.push(p(MODEL_CHART[debit].0, &c.format(i128::from(minor)), code));
        postings.push(p(
            MODEL_CHART[credit].0,
            &c.format(-i128::from(minor)),
            code,
        ));
    }
    draft(model_date(e.day), &format!("model entry {i}"), postings)
}

/// Signed postings per (account, currency) of entries dated within [from, to].
fn model_balances(postings: &[(Date, String, String, i64)], from: Date, to: Date) -> BalanceMap {
    let mut map = BalanceMap::new();
    for (date, account, currency, amount) in postings {
        if *date >= from && *date <= to {
            *map.entry((account.clone(), currency.clone())).or_default() += i128::from(*amount);
        }
    }
    map.retain(|_, v| *v != 0);
    map
}

async fn ledger_model_story(tenants: Arc<dyn TenantDirectory>, case: ModelCase) {
    let id = uuid::Uuid::new_v4().to_string();
    let store = tenants
        .create(&id, &DataKey::generate())
        .await
        .expect("create books");
    for (code, kind) in MODEL_CHART {
        store
            .create_account(
                new_account(code, &format!("Account {code}"), kind, None, None),
                ctx(),
            )
            .await
            .expect("account");
    }

    // Post in batches, the batches concurrently.
    let drafts: Vec<EntryDraft> = case
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| model_draft(i, e))
        .collect();
    let mut chunks = Vec::new();
    let mut rest = drafts.as_slice();
    let mut sizes = case.batches.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().expect("batch size")).min(rest.len());
        chunks.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    let mut tasks = Vec::new();
    for chunk in chunks {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.post_entries(chunk, None, ctx()).await
        }));
    }
    let mut posted: Vec<Entry> = Vec::new();
    for task in tasks {
        posted.extend(
            task.await
                .expect("task")
                .expect("valid entries post")
                .entries,
        );
    }
    assert_eq!(posted.len(), case.entries.len());

    // Reversals; a second reversal of an entry must be refused.
    posted.sort_by_key(|e| e.id);
    let mut all_postings: Vec<(Date, String, String, i64)> = Vec::new();
    for e in &posted {
        for p in &e.postings {
            all_postings.push((
                e.date,
                p.account.clone(),
                p.currency.code().to_string(),
                p.amount,
            ));
        }
    }
    let mut reversed = BTreeSet::new();
    for &(index, day) in &case.reversals {
        let original = &posted[index % posted.len()];
        let result = store
            .reverse_entry(original.id, model_date(day), None, ctx())
            .await;
        if reversed.insert(original.id) {
            let reversal = result.expect("reversal");
            for p in &reversal.postings {
                all_postings.push((
                    reversal.date,
                    p.account.clone(),
                    p.currency.code().to_string(),
                    p.amount,
                ));
            }
        } else {
            assert!(matches!(
                result,
                Err(StoreError::Ledger(LedgerError::AlreadyReversed(_)))
            ));
        }
    }

    let as_of = model_date(case.as_of);
    let got = balances(&*store, as_of).await;
    let want = model_balances(&all_postings, Date::MIN, as_of);
    assert_eq!(got, want, "balances as of {as_of}");
    assert_eq!(
        balances(&*store, FAR_FUTURE).await,
        model_balances(&all_postings, Date::MIN, FAR_FUTURE)
    );
    let (from, to) = (model_date(case.window.0), model_date(case.window.1));
    let moved = balance_map(&store.movements(from, to).await.expect("movements"));
    assert_eq!(
        moved,
        model_balances(&all_postings, from, to),
        "movements {from}..{to}"
    );

    assert_trial_balance_zero(&*store, as_of).await;
    assert_trial_balance_zero(&*store, FAR_FUTURE).await;

    let journal = all_journal(&*store).await;
    verify_journal_chain(&journal);
    verify_tenant_audit_chain(&all_tenant_audit(&*store).await);
}

// ---------------------------------------------------------------------------
// SQLCipher backend: the stories
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_accounts() {
    let b = sqlite_backend();
    accounts_story(b.control.clone(), b.tenants.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_posting() {
    let b = sqlite_backend();
    posting_story(b.control.clone(), b.tenants.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_idempotency() {
    let b = sqlite_backend();
    idempotency_story(b.control.clone(), b.tenants.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reversal() {
    let b = sqlite_backend();
    reversal_story(b.control.clone(), b.tenants.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_overflow() {
    let b = sqlite_backend();
    overflow_story(b.control.clone(), b.tenants.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_group_commit() {
    let b = sqlite_backend();
    group_commit_story(b.control.clone(), b.tenants.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rekey_while_writing() {
    let b = sqlite_backend();
    let reopened: Arc<dyn TenantDirectory> =
        Arc::new(SqliteTenants::new(b.companies_dir()).expect("tenant directory"));
    rekey_story(b.control.clone(), b.tenants.clone(), Some(reopened)).await;
    let leftovers: Vec<_> = std::fs::read_dir(b.companies_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".rekey"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_control() {
    let b = sqlite_backend();
    control_story(b.control.clone()).await;
}

#[test]
fn sqlite_ledger_model() {
    let config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(16)
    };
    proptest!(config, |(case in model_case())| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let b = sqlite_backend();
            ledger_model_story(b.tenants.clone(), case).await;
        });
    });
}

// ---------------------------------------------------------------------------
// PostgreSQL backend: the same stories
// ---------------------------------------------------------------------------

async fn pg_backend(prefix: &str) -> (Arc<dyn ControlStore>, Arc<dyn TenantDirectory>) {
    let (control, tenants) = pg_backend::pg_stores(prefix).await;
    (control, tenants)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_accounts() {
    let (control, tenants) = pg_backend("accounts").await;
    accounts_story(control, tenants).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_posting() {
    let (control, tenants) = pg_backend("posting").await;
    posting_story(control, tenants).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_idempotency() {
    let (control, tenants) = pg_backend("idempotency").await;
    idempotency_story(control, tenants).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reversal() {
    let (control, tenants) = pg_backend("reversal").await;
    reversal_story(control, tenants).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_overflow() {
    let (control, tenants) = pg_backend("overflow").await;
    overflow_story(control, tenants).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_group_commit() {
    let (control, tenants) = pg_backend("group_commit").await;
    group_commit_story(control, tenants).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rekey_while_writing() {
    let (control, tenants) = pg_backend("rekey").await;
    rekey_story(control, tenants, None).await;
}

#[test]
fn postgres_ledger_model() {
    let config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(8)
    };
    proptest!(config, |(case in model_case())| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (_control, tenants) = pg_backend("model").await;
            ledger_model_story(tenants, case).await;
        });
    });
}

// ---------------------------------------------------------------------------
// SQLCipher backend: beneath the interface
// ---------------------------------------------------------------------------

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_only_encryption_at_rest() {
    const CANARY: &str = "CANARY-7f3a9c";
    const COMPANY_NAME: &str = "Canary Widgets CANARYCO-51d0e";
    const EMAIL: &str = "canary-owner-51d0e@example.com";
    let control_key = DataKey::generate();
    let b = sqlite_backend_with_key(&control_key);
    let kek = MasterKey::generate();

    let company_id = uuid::Uuid::new_v4().to_string();
    let company_key = DataKey::generate();
    let company = CompanyRecord {
        id: company_id.clone(),
        name: COMPANY_NAME.into(),
        status: CompanyStatus::Active,
        wrapped_dek: kek.wrap(&company_key, &company_id).expect("wrap"),
        created_at: OffsetDateTime::now_utc(),
    };
    let owner = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        email: EMAIL.into(),
        name: Some(format!("Owner {CANARY}")),
        passphrase_hash: "$argon2id$fake".into(),
        created_at: OffsetDateTime::now_utc(),
        last_login_at: None,
    };
    b.control
        .signup(
            &company,
            &owner,
            &audit_event(Some(&company_id), Action::CompanySignup, None),
        )
        .await
        .expect("signup");
    let store = b
        .tenants
        .create(&company_id, &company_key)
        .await
        .expect("create books");
    store
        .create_account(
            new_account("1000", &format!("Vault {CANARY}"), "asset", None, None),
            ctx(),
        )
        .await
        .expect("account");
    store
        .create_account(new_account("4000", "Sales", "income", None, None), ctx())
        .await
        .expect("account");
    let mut entry = draft(
        date!(2026 - 08 - 01),
        &format!("Payment {CANARY} received"),
        vec![p("1000", "42.00", "USD"), p("4000", "-42.00", "USD")],
    );
    entry.reference = Some(format!("REF-{CANARY}"));
    store
        .post_entries(vec![entry], None, ctx())
        .await
        .expect("post");

    // The data is there, readable through the store...
    let accounts = store.accounts().await.expect("accounts");
    assert!(accounts.iter().any(|a| a.name.contains(CANARY)));
    let entries = all_entries(&*store).await;
    assert!(entries[0].description.contains(CANARY));
    assert_eq!(
        b.control
            .company(&company_id)
            .await
            .expect("company")
            .expect("exists")
            .name,
        COMPANY_NAME
    );

    // ...and in no file in plain text, WAL and shared-memory files included.
    let files = files_under(b.dir.path());
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "control.db"), "{names:?}");
    assert!(
        names.iter().any(|n| n == &format!("{company_id}.db")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with("-wal")), "{names:?}");
    let mut total = 0;
    for file in &files {
        let bytes = std::fs::read(file).expect("read file");
        total += bytes.len();
        for needle in [
            CANARY,
            COMPANY_NAME,
            "CANARYCO-51d0e",
            EMAIL,
            "Canary Widgets",
            "canary-owner",
        ] {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{needle:?} found in plain text in {}",
                file.display()
            );
        }
        // Nor the SQLite header, which an unencrypted database starts with.
        assert!(
            !bytes.starts_with(b"SQLite format 3\0"),
            "{} is not encrypted",
            file.display()
        );
    }
    assert!(
        total > 8192,
        "the data directory holds almost nothing ({total} bytes)"
    );

    // The wrong key opens nothing.
    let err = SqliteTenants::new(b.companies_dir())
        .expect("directory")
        .open(&company_id, &DataKey::generate())
        .await
        .err()
        .expect("wrong company key must fail");
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    let err = SqliteControl::open(&b.control_path(), &DataKey::generate())
        .expect_err("wrong control key must fail");
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    let err = open_encrypted(
        &b.companies_dir().join(format!("{company_id}.db")),
        &control_key,
        OpenMode::Existing,
    )
    .expect_err("another key");
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    // Nor may a directory hand out an already-open company for a wrong key.
    let err = b
        .tenants
        .open(&company_id, &DataKey::generate())
        .await
        .err()
        .expect("wrong key for an open company must fail");
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");

    // The right keys do.
    let reopened = SqliteTenants::new(b.companies_dir())
        .expect("directory")
        .open(&company_id, &company_key)
        .await
        .expect("right key");
    assert_eq!(reopened.accounts().await.expect("accounts"), accounts);
    let again = b
        .tenants
        .open(&company_id, &company_key)
        .await
        .expect("open company");
    assert_eq!(again.stats().await.expect("stats").entries, 1);
    let control = SqliteControl::open(&b.control_path(), &control_key).expect("right control key");
    assert_eq!(control.companies().await.expect("companies").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_only_immutability() {
    let control_key = DataKey::generate();
    let b = sqlite_backend_with_key(&control_key);
    let company = new_company(&*b.control, &*b.tenants, "Immutable Ltd").await;
    let store = company.store.clone();
    standard_chart(&*store).await;
    let posted = store
        .post_entries(
            vec![
                draft(
                    date!(2026 - 09 - 01),
                    "One",
                    vec![p("1000", "10", "USD"), p("4000", "-10", "USD")],
                ),
                draft(
                    date!(2026 - 09 - 02),
                    "Two",
                    vec![p("1000", "20", "USD"), p("4000", "-20", "USD")],
                ),
            ],
            None,
            ctx(),
        )
        .await
        .expect("post");
    let reversed = posted.entries[0].id;
    store
        .reverse_entry(reversed, date!(2026 - 09 - 03), None, ctx())
        .await
        .expect("reverse");
    let before = snapshot(&*store).await;

    let path = b.companies_dir().join(format!("{}.db", company.id));
    let conn = open_encrypted(&path, &company.key, OpenMode::Existing).expect("raw connection");
    let unlink = format!("UPDATE entries SET reversed_by = NULL WHERE id = {reversed}");
    let refused = [
        ("UPDATE postings SET amount = 1", "immutable"),
        ("DELETE FROM postings", "immutable"),
        ("DELETE FROM entries", "immutable"),
        ("UPDATE entries SET description = 'edited'", "immutable"),
        ("UPDATE entries SET date = '2020-01-01'", "immutable"),
        (unlink.as_str(), "immutable"),
        ("UPDATE change_journal SET payload = '{}'", "append-only"),
        ("DELETE FROM change_journal", "append-only"),
        (
            "DELETE FROM change_journal WHERE seq = (SELECT MAX(seq) FROM change_journal)",
            "append-only",
        ),
        ("UPDATE audit_events SET actor = 'nobody'", "append-only"),
        ("DELETE FROM audit_events", "append-only"),
    ];
    for (sql, reason) in refused {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains(reason), "{sql}: {err}");
    }
    drop(conn);
    assert_eq!(snapshot(&*store).await, before, "raw SQL changed the books");

    // The control plane's audit log is append-only too.
    let conn =
        open_encrypted(&b.control_path(), &control_key, OpenMode::Existing).expect("raw control");
    for sql in [
        "UPDATE audit_events SET action = 'x'",
        "DELETE FROM audit_events",
    ] {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let events = all_control_audit(&*b.control, None).await;
    assert_eq!(events.len(), 1);
    verify_control_audit_chain(&events);
}

// ---------------------------------------------------------------------------
// PostgreSQL backend: the stories
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_control() {
    let control = pg_backend::pg_control("contract_control").await;
    control_story(Arc::new(control)).await;
}

// ---------------------------------------------------------------------------
// Replay: a restore writes another company's journal records verbatim
// ---------------------------------------------------------------------------

fn replayed(record: &JournalRecord) -> ReplayedRecord {
    let payload: Value = serde_json::from_str(&record.payload).expect("payload");
    let text = |v: &Value| v.as_str().map(str::to_string);
    let entry = |e: &Value, reverses: Option<i64>| RestoredEntry {
        id: e["id"].as_i64().expect("id"),
        draft: EntryDraft {
            date: Date::parse(
                e["date"].as_str().expect("date"),
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .expect("date"),
            description: text(&e["description"]).expect("description"),
            reference: text(&e["reference"]),
            postings: e["postings"]
                .as_array()
                .expect("postings")
                .iter()
                .map(|line| {
                    p(
                        line["account"].as_str().unwrap(),
                        line["amount"].as_str().unwrap(),
                        line["currency"].as_str().unwrap(),
                    )
                })
                .collect(),
        },
        reverses: reverses.or(e["reverses"].as_i64()),
        created_at: OffsetDateTime::parse(e["created_at"].as_str().expect("created_at"), &Rfc3339)
            .expect("time"),
        created_by: text(&e["created_by"]).expect("author"),
    };
    let content = match record.kind.as_str() {
        "account_created" => ReplayedContent::Account {
            id: payload["id"].as_i64().expect("id"),
            account: new_account(
                payload["code"].as_str().unwrap(),
                payload["name"].as_str().unwrap(),
                payload["type"].as_str().unwrap(),
                payload["parent"].as_str(),
                payload["currency"].as_str(),
            ),
            created_at: record.at,
        },
        "entries_posted" => ReplayedContent::Entries(
            payload["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .map(|e| entry(e, None))
                .collect(),
        ),
        "entry_reversed" => {
            ReplayedContent::Entries(vec![entry(&payload["entry"], payload["reverses"].as_i64())])
        }
        other => panic!("unexpected record kind {other}"),
    };
    ReplayedRecord {
        seq: record.seq,
        at: rfc3339(record.at),
        kind: record.kind.clone(),
        payload: record.payload.clone(),
        hash: record.hash.clone(),
        content,
    }
}

async fn replay_story(control: Arc<dyn ControlStore>, tenants: Arc<dyn TenantDirectory>) {
    let source = new_company(&*control, &*tenants, "Source").await;
    standard_chart(&*source.store).await;
    let d = date!(2026 - 02 - 01);
    source
        .store
        .post_entries(
            vec![
                draft(
                    d,
                    "one",
                    vec![p("1000", "10.00", "USD"), p("4000", "-10.00", "USD")],
                ),
                draft(
                    d,
                    "two",
                    vec![p("1100", "2.50", "USD"), p("4000", "-2.50", "USD")],
                ),
            ],
            None,
            ctx(),
        )
        .await
        .expect("post");
    source
        .store
        .reverse_entry(1, date!(2026 - 02 - 03), None, ctx())
        .await
        .expect("reverse");
    let journal = all_journal(&*source.store).await;
    let records: Vec<ReplayedRecord> = journal.iter().map(replayed).collect();

    // In two changes queued at once: the same journal, hashes and books.
    let target = new_company(&*control, &*tenants, "Target").await;
    let (first, rest) = records.split_at(3);
    let results = target
        .store
        .apply_in_order(vec![
            (Change::Replay(first.to_vec()), ctx()),
            (Change::Replay(rest.to_vec()), ctx()),
        ])
        .await;
    let heads: Vec<i64> = results
        .into_iter()
        .map(|r| match r.expect("replayed") {
            Applied::Replayed { last_seq } => last_seq,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(heads, vec![3, journal.len() as i64]);
    assert_eq!(all_journal(&*target.store).await, journal);
    assert_eq!(
        all_entries(&*target.store).await,
        all_entries(&*source.store).await
    );
    let day = date!(2026 - 12 - 31);
    assert_eq!(
        balances(&*target.store, day).await,
        balances(&*source.store, day).await
    );

    // Disaster recovery: the same company's store recreated empty takes its
    // audit trail verbatim, then its journal; a gap, or another company's
    // trail, is refused.
    let trail = all_tenant_audit(&*source.store).await;
    let other = new_company(&*control, &*tenants, "Other").await;
    let refused = other
        .store
        .apply_in_order(vec![(Change::ImportAudit(trail.clone()), ctx())])
        .await;
    assert!(refused[0].is_err(), "another company's trail is refused");
    let gap = new_company(&*control, &*tenants, "Gap").await;
    let mut gapped: Vec<StoredAuditEvent> = trail[1..].to_vec();
    for event in &mut gapped {
        event.company_id = Some(gap.id.clone());
    }
    let refused = gap
        .store
        .apply_in_order(vec![(Change::ImportAudit(gapped), ctx())])
        .await;
    assert!(refused[0].is_err(), "an audit trail with a gap is refused");
    let Company { id, key, store } = source;
    drop(store);
    tenants.discard(&id).await;
    let recovered = tenants.create(&id, &key).await.expect("recreate");
    let imported = recovered
        .apply_in_order(vec![
            (Change::ImportAudit(trail.clone()), ctx()),
            (Change::Replay(records.clone()), ctx()),
        ])
        .await;
    assert!(
        matches!(
            imported[0],
            Ok(Applied::AuditImported { last_seq }) if last_seq == trail.len() as i64
        ),
        "{:?}",
        imported[0]
    );
    assert!(imported[1].is_ok(), "{:?}", imported[1]);
    let after = all_tenant_audit(&*recovered).await;
    assert_eq!(after[..trail.len()], trail[..]);
    verify_tenant_audit_chain(&after);
    assert_eq!(all_journal(&*recovered).await, journal);

    // Refused, and nothing of the change written: a record whose content does
    // not match its hash, a record out of sequence, an entry under another id.
    for (what, broken) in [
        ("hash", {
            let mut r = records.clone();
            r[0].payload.push(' ');
            r
        }),
        ("sequence", records[1..].to_vec()),
        ("entry id", {
            let mut r = records.clone();
            let at = r
                .iter()
                .position(|x| matches!(x.content, ReplayedContent::Entries(_)))
                .unwrap();
            if let ReplayedContent::Entries(entries) = &mut r[at].content {
                entries[0].id += 10;
            }
            r
        }),
    ] {
        let fresh = new_company(&*control, &*tenants, "Broken").await;
        let result = fresh
            .store
            .apply_in_order(vec![(Change::Replay(broken), ctx())])
            .await;
        assert!(result[0].is_err(), "a broken {what} must be refused");
        assert_eq!(fresh.store.stats().await.unwrap().journal_seq, 0, "{what}");
        assert!(fresh.store.accounts().await.unwrap().is_empty(), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replay() {
    let b = sqlite_backend();
    replay_story(b.control.clone(), b.tenants.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replay() {
    let (control, tenants) = pg_backend("replay").await;
    replay_story(control, tenants).await;
}
