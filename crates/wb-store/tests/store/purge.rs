//! The retention purge on both backends (`TenantStore::purge`,
//! `wb_store::purge`): entries before the horizon replaced by opening
//! entries (a reversal pair goes only whole), attachments and audit events
//! removed, the journal restarted at a signed anchor with the kept books
//! re-stated after it; a dry run reporting the same and changing nothing;
//! the purged journal replayed into a fresh store, alone and after the
//! journal from before the purge; and the refusals (a moved journal, an
//! audit checkpoint that does not match).

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use time::macros::{date, datetime};
use time::{Date, OffsetDateTime};
use wb_core::{Action, EntryDraft, NewAccount, PostingDraft};
use wb_crypto::DataKey;
use wb_store::purge::{self, Anchor, AnchorSigner, PurgePlan, PurgeReport};
use wb_store::sqlite::SqliteTenants;
use wb_store::{
    chain_link, Account, Actor, Applied, Change, Entry, EntryPage, FilePage, FileRecord,
    Idempotency, JournalRecord, NewFile, ReplayedRecord, StoreError, StoredAuditEvent,
    TenantDirectory, TenantStore, WriteContext,
};

/// Runs each story (taking the company directory) on SQLCipher and on PostgreSQL.
macro_rules! on_both_backends {
    ($($story:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let tenants: std::sync::Arc<dyn wb_store::TenantDirectory> = std::sync::Arc::new(
                        wb_store::sqlite::SqliteTenants::new(dir.path().to_path_buf())
                            .expect("tenant directory"),
                    );
                    super::$story(tenants).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    let (_control, tenants) =
                        crate::pg_backend::pg_stores(&format!("purge_{}", stringify!($story))).await;
                    super::$story(tenants).await;
                }
            )*
        }
    };
}

on_both_backends!(purge_story, replay_story, netted_out_story, refusal_story);

/// The same books purged on both backends leave the same journal (anchor
/// and baseline byte for byte) and the same audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_write_the_same_records() {
    let id = uuid::Uuid::now_v7().to_string();
    let key = DataKey::generate();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite: Arc<dyn TenantDirectory> =
        Arc::new(SqliteTenants::new(dir.path().to_path_buf()).expect("tenant directory"));
    let (_control, postgres) = crate::pg_backend::pg_stores("purge_same_records").await;
    let mut trails = Vec::new();
    for tenants in [sqlite, postgres] {
        let Book { store, .. } = book_of(&*tenants, &id, key.clone()).await;
        let head = store.journal_head();
        let audit = all_audit(&*store).await;
        let report = store
            .purge(
                plan(head, false, Some((audit[2].seq, audit[2].hash.clone()))),
                ctx(),
            )
            .await
            .expect("purge");
        trails.push((
            all_journal(&*store).await,
            all_audit(&*store).await,
            purge::audit_detail(&report),
        ));
    }
    assert_eq!(trails[0].0, trails[1].0);
    assert_eq!(trails[0].1, trails[1].1);
    assert_eq!(trails[0].2, trails[1].2);
}

const HORIZON: Date = date!(2024 - 01 - 01);
const FILES_BEFORE: OffsetDateTime = datetime!(2024-01-01 00:00 UTC);
const OLD: OffsetDateTime = datetime!(2020-06-01 12:00 UTC);
const NEW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);
const NOW: OffsetDateTime = datetime!(2026-01-15 10:00 UTC);
const LATER: OffsetDateTime = datetime!(2026-02-01 10:00 UTC);

fn ctx_at(at: OffsetDateTime) -> WriteContext {
    WriteContext {
        actor: Actor {
            id: "user:purge".into(),
            auth: "session".into(),
            client: None,
            request_id: None,
        },
        at,
    }
}

fn ctx() -> WriteContext {
    ctx_at(NOW)
}

/// The test node's "signature": the message's digest.
fn signer() -> AnchorSigner {
    Arc::new(|message: &[u8]| purge::AnchorSignature {
        node: "node-1".to_string(),
        public_key: "key-1".to_string(),
        certificate: "certificate-1".to_string(),
        signature: Sha256::digest(message).to_vec(),
    })
}

fn plan(journal_head: i64, dry_run: bool, audit_through: Option<(i64, String)>) -> PurgePlan {
    PurgePlan {
        horizon: HORIZON,
        files_before: FILES_BEFORE,
        audit_through,
        journal_head,
        dry_run,
        signer: signer(),
    }
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

fn sale(date: Date, amount: &str, currency: &str) -> EntryDraft {
    let (cash, minus) = match currency {
        "EUR" => ("1200", format!("-{amount}")),
        _ => ("1000", format!("-{amount}")),
    };
    draft(
        date,
        &format!("Sale of {amount} {currency}"),
        vec![p(cash, amount, currency), p("4000", &minus, currency)],
    )
}

fn new_file(key: &DataKey, content: &[u8], name: &str, entry_id: Option<i64>) -> NewFile {
    NewFile {
        address: key.content_address(content),
        name: name.into(),
        content_type: "application/pdf".into(),
        size: content.len() as u64,
        entry_id,
    }
}

/// A company's books: entries before and after the horizon in USD and EUR,
/// a reversal pair wholly before it (3, reversed by 5) and one straddling it
/// (4, reversed by 6), a late entry dated before it (9, the highest id),
/// and attachments linked to a purged entry (1), to a kept one (2), and
/// unlinked old (3, and 5 sharing the address of 4) and new (4).
struct Book {
    store: Arc<dyn TenantStore>,
    key: DataKey,
    files: Vec<FileRecord>,
}

const PURGED: [i64; 5] = [1, 2, 3, 5, 9];
const KEPT: [i64; 4] = [4, 6, 7, 8];

async fn book(tenants: &dyn TenantDirectory) -> Book {
    book_of(
        tenants,
        &uuid::Uuid::now_v7().to_string(),
        DataKey::generate(),
    )
    .await
}

async fn book_of(tenants: &dyn TenantDirectory, id: &str, key: DataKey) -> Book {
    let store = tenants.create(id, &key).await.expect("create books");
    for (code, kind, currency) in [
        ("1000", "asset", None),
        ("1200", "asset", Some("EUR")),
        ("4000", "income", None),
        ("5000", "expense", None),
    ] {
        let account = NewAccount::validate(code, &format!("Account {code}"), kind, None, currency)
            .expect("valid account");
        store
            .create_account(account, ctx_at(OLD))
            .await
            .expect("account");
    }
    let post = |d: EntryDraft, key: Option<&str>, at: OffsetDateTime| {
        let store = store.clone();
        let idempotency = key.map(|k| Idempotency {
            key: k.into(),
            request_hash: format!("hash-{k}"),
        });
        async move {
            let posted = store
                .post_entries(vec![d], idempotency, ctx_at(at))
                .await
                .expect("post");
            posted.entries[0].id
        }
    };
    assert_eq!(
        post(
            sale(date!(2022 - 03 - 01), "100.00", "USD"),
            Some("old"),
            OLD
        )
        .await,
        1
    );
    assert_eq!(
        post(sale(date!(2022 - 06 - 01), "50.00", "EUR"), None, OLD).await,
        2
    );
    let expense = draft(
        date!(2023 - 05 - 01),
        "Rent",
        vec![p("5000", "30.00", "USD"), p("1000", "-30.00", "USD")],
    );
    assert_eq!(post(expense, None, OLD).await, 3);
    assert_eq!(
        post(sale(date!(2023 - 09 - 01), "20.00", "USD"), None, OLD).await,
        4
    );
    let reversal = store
        .reverse_entry(3, date!(2023 - 06 - 01), None, ctx_at(OLD))
        .await
        .expect("reverse 3");
    assert_eq!(reversal.id, 5);
    let reversal = store
        .reverse_entry(4, date!(2024 - 02 - 01), Some("Refund".into()), ctx_at(NEW))
        .await
        .expect("reverse 4");
    assert_eq!(reversal.id, 6);
    assert_eq!(
        post(
            sale(date!(2024 - 03 - 01), "10.00", "USD"),
            Some("new"),
            NEW
        )
        .await,
        7
    );
    assert_eq!(
        post(sale(date!(2024 - 04 - 01), "5.00", "EUR"), None, NEW).await,
        8
    );
    assert_eq!(
        post(sale(date!(2021 - 12 - 31), "1.00", "USD"), None, NEW).await,
        9
    );
    let mut files = Vec::new();
    for (content, name, entry, at) in [
        (&b"invoice one"[..], "one.pdf", Some(1), NEW),
        (b"invoice seven", "seven.pdf", Some(7), OLD),
        (b"old loose", "old.pdf", None, OLD),
        (b"shared", "new.pdf", None, NEW),
        (b"shared", "old-copy.pdf", None, OLD),
    ] {
        files.push(
            store
                .add_file(new_file(&key, content, name, entry), ctx_at(at))
                .await
                .expect("add file"),
        );
    }
    assert_eq!(
        files.iter().map(|f| f.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    Book { store, key, files }
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

async fn all_audit(store: &dyn TenantStore) -> Vec<StoredAuditEvent> {
    let mut out: Vec<StoredAuditEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = store.audit_events(after, 1000).await.expect("audit");
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

async fn all_files(store: &dyn TenantStore) -> Vec<FileRecord> {
    let mut out: Vec<FileRecord> = Vec::new();
    loop {
        let page = store
            .files(FilePage {
                after: out.last().map(|f| f.id),
                limit: 1000,
                entry_id: None,
            })
            .await
            .expect("files");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

type Balances = BTreeMap<(String, String), i128>;
/// An opening entry as (id, date, reference, postings as (account, amount, currency)).
type OpeningSummary = (i64, Date, Option<String>, Vec<(String, i64, String)>);

/// Balances as of `day`, without the accounts that sum to zero (a purge
/// leaves no rows where the purged entries netted out).
async fn balances(store: &dyn TenantStore, day: Date) -> Balances {
    store
        .balances_as_of(day)
        .await
        .expect("balances")
        .into_iter()
        .filter(|r| r.amount != 0)
        .map(|r| ((r.code, r.currency.code().to_string()), r.amount))
        .collect()
}

/// Days on and after the horizon whose balances a purge keeps.
const DAYS: [Date; 6] = [
    date!(2024 - 01 - 01),
    date!(2024 - 02 - 01),
    date!(2024 - 03 - 15),
    date!(2024 - 04 - 01),
    date!(2025 - 12 - 31),
    date!(2030 - 01 - 01),
];

#[derive(Debug, PartialEq)]
struct Books {
    accounts: Vec<Account>,
    entries: Vec<Entry>,
    files: Vec<FileRecord>,
    journal: Vec<JournalRecord>,
    balances: Vec<Balances>,
}

async fn books(store: &dyn TenantStore) -> Books {
    let mut by_day = Vec::new();
    for day in DAYS {
        by_day.push(balances(store, day).await);
    }
    Books {
        accounts: store.accounts().await.expect("accounts"),
        entries: all_entries(store).await,
        files: all_files(store).await,
        journal: all_journal(store).await,
        balances: by_day,
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("format timestamp")
}

/// Each record after the first links to the one before it.
fn assert_links(records: &[JournalRecord]) {
    for pair in records.windows(2) {
        let (prev, r) = (&pair[0], &pair[1]);
        assert_eq!(r.seq, prev.seq + 1, "journal sequence has a gap");
        assert_eq!(r.prev_hash, prev.hash, "journal record {} prev_hash", r.seq);
        let at = rfc3339(r.at);
        assert_eq!(
            r.hash,
            chain_link(&prev.hash, r.seq, &[&at, &r.kind, &r.payload]),
            "journal record {} hash",
            r.seq
        );
    }
}

/// What the two reports of a purge (dry and real) must both say.
fn same_report(dry: &PurgeReport, real: &PurgeReport) {
    assert!(dry.dry_run && !real.dry_run);
    assert_eq!(dry.horizon, real.horizon);
    assert_eq!(dry.entries, real.entries);
    assert_eq!(dry.postings, real.postings);
    assert_eq!(dry.files, real.files);
    assert_eq!(dry.kept_addresses, real.kept_addresses);
    assert_eq!(dry.opening, real.opening);
    assert_eq!(dry.audit_through, real.audit_through);
    assert_eq!(dry.audit_events, real.audit_events);
    assert_eq!(dry.journal_through, real.journal_through);
    assert_eq!(dry.journal_through_hash, real.journal_through_hash);
    assert_eq!(dry.anchor_seq, real.anchor_seq);
    assert_eq!(dry.baseline_end, real.baseline_end);
    assert_eq!(dry.before, real.before);
    assert_eq!(dry.after, real.after);
}

async fn purge_story(tenants: Arc<dyn TenantDirectory>) {
    let Book { store, key, files } = book(&*tenants).await;
    let before = books(&*store).await;
    let audit_before = all_audit(&*store).await;
    let head = before.journal.last().expect("a journal").clone();

    // A dry run reports everything and changes nothing.
    let dry = store
        .purge(plan(head.seq, true, None), ctx())
        .await
        .expect("dry run");
    assert_eq!(books(&*store).await, before);
    assert_eq!(all_audit(&*store).await, audit_before);
    assert_eq!(store.journal_head(), head.seq);

    let report = store
        .purge(plan(head.seq, false, None), ctx())
        .await
        .expect("purge");
    same_report(&dry, &report);

    // What went, and what replaced it.
    assert_eq!(report.horizon, HORIZON);
    assert_eq!(report.entries, PURGED.to_vec());
    assert_eq!(report.postings, 10);
    let removed: Vec<FileRecord> = [0, 2, 4].iter().map(|&i| files[i].clone()).collect();
    assert_eq!(report.files, removed);
    assert_eq!(report.kept_addresses, vec![key.content_address(b"shared")]);
    assert_eq!(report.audit_through, 0);
    assert_eq!(report.audit_events, 0);
    assert_eq!(report.journal_through, head.seq);
    assert_eq!(report.journal_through_hash, head.hash);
    let opening: Vec<OpeningSummary> = report
        .opening
        .iter()
        .map(|e| {
            (
                e.id,
                e.date,
                e.reference.clone(),
                e.postings
                    .iter()
                    .map(|p| (p.account.clone(), p.amount, p.currency.code().to_string()))
                    .collect(),
            )
        })
        .collect();
    let eur = |account: &str, amount| (account.to_string(), amount, "EUR".to_string());
    let usd = |account: &str, amount| (account.to_string(), amount, "USD".to_string());
    let reference = Some("purge:2024-01-01".to_string());
    assert_eq!(
        opening,
        vec![
            (
                10,
                HORIZON,
                reference.clone(),
                vec![eur("1200", 5000), eur("4000", -5000)]
            ),
            (
                11,
                HORIZON,
                reference,
                vec![usd("1000", 10100), usd("4000", -10100)]
            ),
        ]
    );
    for e in &report.opening {
        assert_eq!(
            e.description,
            "Opening balance at 2024-01-01: entries before it purged under the retention rules"
        );
        assert_eq!(e.created_by, "user:purge");
        assert_eq!(e.created_at, NOW);
    }
    assert_eq!(report.before.entries, 9);
    assert_eq!(report.before.postings, 18);
    assert_eq!(report.before.files, 5);
    assert_eq!(report.before.audit_events, audit_before.len() as u64);
    assert_eq!(report.before.journal_records, head.seq as u64);
    assert_eq!(report.after.entries, 6);
    assert_eq!(report.after.postings, 12);
    assert_eq!(report.after.files, 2);
    assert_eq!(report.after.audit_events, audit_before.len() as u64 + 1);
    // The anchor, four accounts, one record of entries, two files.
    assert_eq!(report.after.journal_records, 8);
    assert_eq!(report.anchor_seq, head.seq + 1);
    assert_eq!(report.baseline_end, head.seq + 8);

    // The books on and after the horizon are as they were.
    let after = books(&*store).await;
    assert_eq!(after.balances, before.balances);
    assert_eq!(after.accounts, before.accounts);
    let ids: Vec<i64> = after.entries.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![4, 6, 7, 8, 10, 11]);
    for e in &after.entries {
        if KEPT.contains(&e.id) {
            let was = before.entries.iter().find(|b| b.id == e.id).unwrap();
            assert_eq!(e, was, "kept entry {}", e.id);
        }
    }
    assert!(after.entries.iter().all(|e| e.date >= HORIZON || e.id == 4));
    assert_eq!(after.entries[4..], report.opening[..]);
    assert_eq!(after.files, vec![files[1].clone(), files[3].clone()]);
    assert_eq!(
        store.stats().await.unwrap().journal_seq,
        report.baseline_end
    );

    // The journal starts at the anchor, which links to the old head and
    // carries the test node's signature; the baseline links after it.
    let journal = &after.journal;
    assert_eq!(journal.len(), 8);
    let first = &journal[0];
    assert_eq!(first.seq, head.seq + 1);
    assert_eq!(first.kind, purge::PURGED);
    assert_eq!(first.prev_hash, head.hash);
    assert_eq!(
        first.hash,
        chain_link(
            &head.hash,
            first.seq,
            &[&rfc3339(first.at), &first.kind, &first.payload]
        )
    );
    let anchor = Anchor::of(&first.kind, &first.payload).expect("an anchor");
    assert_eq!(anchor.company_id, store.company_id());
    assert_eq!(anchor.horizon, "2024-01-01");
    assert_eq!(anchor.through_seq, head.seq);
    assert_eq!(anchor.through_hash, head.hash);
    assert_eq!(anchor.entries_removed, 5);
    assert_eq!(anchor.files_removed, 3);
    assert_eq!(anchor.node, "node-1");
    assert_eq!(anchor.public_key, "key-1");
    assert_eq!(anchor.certificate, "certificate-1");
    assert_eq!(
        anchor.signature_bytes(),
        Some(Sha256::digest(anchor.message()).to_vec())
    );
    assert_links(journal);
    let kinds: Vec<&str> = journal.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            purge::PURGED,
            purge::ACCOUNT_KEPT,
            purge::ACCOUNT_KEPT,
            purge::ACCOUNT_KEPT,
            purge::ACCOUNT_KEPT,
            purge::ENTRIES_KEPT,
            wb_store::journal::FILE_ADDED,
            wb_store::journal::FILE_ADDED,
        ]
    );
    let kept: serde_json::Value = serde_json::from_str(&journal[5].payload).unwrap();
    let kept: Vec<i64> = kept["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, vec![4, 6, 7, 8, 10, 11]);

    // The purge's own audit event, with its report.
    let audit = all_audit(&*store).await;
    assert_eq!(audit[..audit_before.len()], audit_before[..]);
    let event = audit.last().unwrap();
    assert_eq!(audit.len(), audit_before.len() + 1);
    assert_eq!(event.action, Action::DataPurge.as_str());
    assert_eq!(event.target.as_deref(), Some("horizon:2024-01-01"));
    assert_eq!(event.outcome, "success");
    assert_eq!(
        event.detail.as_deref(),
        Some(purge::audit_detail(&report).as_str())
    );

    // An idempotency key that answered with a purged entry is forgotten; one
    // that answered with a kept entry still answers with it.
    let again = |d: EntryDraft, k: &str| {
        let store = store.clone();
        let idempotency = Some(Idempotency {
            key: k.into(),
            request_hash: format!("hash-{k}"),
        });
        async move {
            store
                .post_entries(vec![d], idempotency, ctx_at(LATER))
                .await
                .expect("post again")
        }
    };
    let kept = again(sale(date!(2024 - 03 - 01), "10.00", "USD"), "new").await;
    assert!(kept.replayed);
    assert_eq!(kept.entries[0].id, 7);
    let fresh = again(sale(date!(2024 - 05 - 01), "100.00", "USD"), "old").await;
    assert!(!fresh.replayed);
    // The next entry follows the kept ones.
    assert_eq!(fresh.entries[0].id, 12);
}

/// The records of `journal` as a restore replays them.
fn replayed(journal: &[JournalRecord]) -> Vec<ReplayedRecord> {
    journal
        .iter()
        .map(|r| {
            let at = rfc3339(r.at);
            ReplayedRecord {
                seq: r.seq,
                content: wb_store::journal::replay_content(&r.kind, &r.payload, &at)
                    .expect("decode a record"),
                at,
                kind: r.kind.clone(),
                payload: r.payload.clone(),
                hash: r.hash.clone(),
            }
        })
        .collect()
}

async fn replay(store: &dyn TenantStore, changes: Vec<Vec<ReplayedRecord>>) {
    let expected: Vec<i64> = changes
        .iter()
        .map(|c| c.last().expect("a record").seq)
        .collect();
    let results = store
        .apply_in_order(
            changes
                .into_iter()
                .map(|c| (Change::Replay(c), ctx_at(LATER)))
                .collect(),
        )
        .await;
    let heads: Vec<i64> = results
        .into_iter()
        .map(|r| match r.expect("replayed") {
            Applied::Replayed { last_seq } => last_seq,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(heads, expected);
}

async fn replay_story(tenants: Arc<dyn TenantDirectory>) {
    let Book { store, key, .. } = book(&*tenants).await;
    let original = all_journal(&*store).await;
    let head = original.last().unwrap().seq;
    store
        .purge(plan(head, false, None), ctx())
        .await
        .expect("purge");
    // Books go on after the purge.
    store
        .post_entries(
            vec![sale(date!(2024 - 06 - 01), "7.00", "USD")],
            None,
            ctx_at(LATER),
        )
        .await
        .expect("post after the purge");
    let file = store
        .add_file(
            new_file(&key, b"after", "after.pdf", Some(12)),
            ctx_at(LATER),
        )
        .await
        .expect("file after the purge");
    // Its id follows the kept ones (5, the purged old copy's, is free).
    assert_eq!(file.id, 5);
    let source = books(&*store).await;
    let purged = source.journal.clone();
    assert_eq!(purged[0].kind, purge::PURGED);

    // The anchor, baseline and later records into a fresh store, in three
    // changes queued at once (the baseline's attachments in the last one).
    let fresh = tenants
        .create(&uuid::Uuid::now_v7().to_string(), &key)
        .await
        .expect("fresh store");
    let records = replayed(&purged);
    let files_at = records
        .iter()
        .position(|r| r.kind == wb_store::journal::FILE_ADDED)
        .unwrap();
    replay(
        &*fresh,
        vec![
            records[..2].to_vec(),
            records[2..files_at + 1].to_vec(),
            records[files_at + 1..].to_vec(),
        ],
    )
    .await;
    assert_eq!(books(&*fresh).await, source);

    // The journal from before the purge, then the anchor (which empties
    // the store) and what follows it, in one change.
    let across = tenants
        .create(&uuid::Uuid::now_v7().to_string(), &key)
        .await
        .expect("fresh store");
    let mut records = replayed(&original);
    records.extend(replayed(&purged));
    replay(&*across, vec![records]).await;
    assert_eq!(books(&*across).await, source);

    // The same in two changes queued at once: before the anchor, and from it.
    let split = tenants
        .create(&uuid::Uuid::now_v7().to_string(), &key)
        .await
        .expect("fresh store");
    replay(&*split, vec![replayed(&original), replayed(&purged)]).await;
    assert_eq!(books(&*split).await, source);

    // All of them go on alike.
    for s in [&store, &fresh, &across, &split] {
        let posted = s
            .post_entries(
                vec![sale(date!(2024 - 07 - 01), "3.00", "EUR")],
                None,
                ctx_at(LATER),
            )
            .await
            .expect("post");
        assert_eq!(posted.entries[0].id, 13);
        let file = s
            .add_file(new_file(&key, b"later", "later.pdf", None), ctx_at(LATER))
            .await
            .expect("file");
        assert_eq!(file.id, 6);
    }
}

/// Purged entries that net out leave no opening entry; when they held the
/// highest ids, the next entry takes the id after the kept ones, in the
/// store and in one restored from its journal alike.
async fn netted_out_story(tenants: Arc<dyn TenantDirectory>) {
    let key = DataKey::generate();
    let store = tenants
        .create(&uuid::Uuid::now_v7().to_string(), &key)
        .await
        .expect("create books");
    for (code, kind) in [("1000", "asset"), ("4000", "income")] {
        let account = NewAccount::validate(code, code, kind, None, None).unwrap();
        store.create_account(account, ctx_at(OLD)).await.unwrap();
    }
    for d in [
        sale(date!(2024 - 03 - 01), "4.00", "USD"),
        sale(date!(2023 - 02 - 01), "9.00", "USD"),
    ] {
        store
            .post_entries(vec![d], None, ctx_at(OLD))
            .await
            .unwrap();
    }
    store
        .reverse_entry(2, date!(2023 - 03 - 01), None, ctx_at(OLD))
        .await
        .unwrap();
    let before = books(&*store).await;
    let head = store.journal_head();
    let report = store
        .purge(plan(head, false, None), ctx())
        .await
        .expect("purge");
    assert_eq!(report.entries, vec![2, 3]);
    assert!(report.opening.is_empty());
    let after = books(&*store).await;
    assert_eq!(after.balances, before.balances);
    assert_eq!(
        after.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![1]
    );
    let posted = store
        .post_entries(
            vec![sale(date!(2024 - 05 - 01), "1.00", "USD")],
            None,
            ctx_at(LATER),
        )
        .await
        .unwrap();
    assert_eq!(posted.entries[0].id, 2);
    let source = books(&*store).await;
    let fresh = tenants
        .create(&uuid::Uuid::now_v7().to_string(), &key)
        .await
        .expect("fresh store");
    replay(&*fresh, vec![replayed(&source.journal)]).await;
    assert_eq!(books(&*fresh).await, source);
    for s in [&store, &fresh] {
        let posted = s
            .post_entries(
                vec![sale(date!(2024 - 06 - 01), "1.00", "USD")],
                None,
                ctx_at(LATER),
            )
            .await
            .unwrap();
        assert_eq!(posted.entries[0].id, 3);
    }
}

async fn refusal_story(tenants: Arc<dyn TenantDirectory>) {
    let Book { store, .. } = book(&*tenants).await;
    let before = books(&*store).await;
    let audit = all_audit(&*store).await;
    let head = before.journal.last().unwrap().seq;
    let through = audit[4].clone();

    // Refused, with nothing changed (but the refusal's own audit event).
    let refusals = [
        plan(head, false, Some((through.seq, "0".repeat(64)))),
        plan(head - 1, false, None),
        plan(head + 1, true, None),
    ];
    let mut seen = audit.clone();
    for refused in refusals {
        let err = store.purge(refused.clone(), ctx()).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{refused:?}: {err}");
        assert_eq!(books(&*store).await, before);
        let now = all_audit(&*store).await;
        assert_eq!(now[..seen.len()], seen[..]);
        assert_eq!(now.len(), seen.len() + 1);
        let event = now.last().unwrap();
        assert_eq!(event.action, Action::DataPurge.as_str());
        assert_eq!(event.outcome, "failure");
        seen = now;
    }

    // The checkpoint's event and every one before it go.
    let report = store
        .purge(
            plan(head, false, Some((through.seq, through.hash.clone()))),
            ctx(),
        )
        .await
        .expect("purge");
    assert_eq!(report.audit_through, through.seq);
    assert_eq!(report.audit_events, through.seq as u64);
    let left = all_audit(&*store).await;
    assert_eq!(left.len() as u64, report.after.audit_events);
    assert_eq!(left[0].seq, through.seq + 1);
    assert_eq!(left[0].prev_hash, through.hash);
    assert_eq!(left[..left.len() - 1], seen[through.seq as usize..]);
    for pair in left.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    assert_eq!(
        left.last().unwrap().action,
        Action::DataPurge.as_str().to_string()
    );
    // The checkpoint is gone: the same plan is refused now.
    let err = store
        .purge(
            plan(report.baseline_end, true, Some((through.seq, through.hash))),
            ctx(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    // Purged again with nothing left to go: nothing changes, not even the
    // journal (no second anchor, so the backups stay as they are).
    let journal = all_journal(&*store).await;
    let books_now = books(&*store).await;
    let head = store.journal_head();
    let again = store.purge(plan(head, false, None), ctx()).await.unwrap();
    assert_eq!(again.anchor_seq, 0);
    assert!(again.entries.is_empty() && again.files.is_empty());
    assert_eq!(again.before, again.after);
    assert_eq!(all_journal(&*store).await, journal);
    assert_eq!(books(&*store).await, books_now);
}
