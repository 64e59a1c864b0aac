//! Change-journal shipping and point-in-time restore, end to end: books written
//! through a real Platform, shipped as encrypted segments to the local object
//! store, restored into new companies and compared with the source's state at
//! that point; tampered and missing segments are refused with nothing left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};
use wb_core::reports::{trial_balance, AccountInfo, TrialBalance};
use wb_core::{EntryDraft, NewAccount, PostingDraft, Role};
use wb_crypto::Secret;
use wb_server::backup::{self, RestoreTarget};
use wb_server::jobs::shipper::{ship_once, ShipperState};
use wb_server::{Platform, SystemClock};
use wb_store::{Actor, Entry, EntryPage, TenantStore, WriteContext};

use crate::support::platforms;

const PASSPHRASE: &str = "quasar marmot plinth 47 ferrous kettle";
const T0: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

/// What a company's books look like at one journal sequence.
#[derive(Debug, Clone, PartialEq)]
struct Books {
    trial_balance: TrialBalance,
    entries: Vec<Entry>,
}

async fn books(store: &Arc<dyn TenantStore>) -> Books {
    let accounts: Vec<AccountInfo> = store
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| AccountInfo {
            code: a.code,
            name: a.name,
            account_type: a.account_type,
        })
        .collect();
    let as_of = date!(2026 - 12 - 31);
    let rows = store.balances_as_of(as_of).await.unwrap();
    let entries = store
        .entries(EntryPage {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    Books {
        trial_balance: trial_balance(as_of, &accounts, &rows),
        entries,
    }
}

fn ctx(minute: i64) -> WriteContext {
    WriteContext {
        actor: Actor {
            id: "user:test".into(),
            auth: "session".into(),
            client: None,
            request_id: None,
        },
        at: T0 + Duration::minutes(minute),
    }
}

fn entry(day: u8, description: &str, lines: &[(&str, &str)]) -> EntryDraft {
    EntryDraft {
        date: time::Date::from_calendar_date(2026, time::Month::March, day).unwrap(),
        description: description.into(),
        reference: Some(format!("ref-{day}")),
        postings: lines
            .iter()
            .map(|(account, amount)| PostingDraft {
                account: (*account).into(),
                amount: (*amount).into(),
                currency: "USD".into(),
            })
            .collect(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    platform: Platform,
    source: String,
    owner: String,
    /// The source's books after each journal sequence.
    history: BTreeMap<i64, Books>,
}

/// A company with accounts, entries and a reversal, shipped in three segments.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let platform = platforms::open(&data, Arc::new(SystemClock), super::POSTGRES).await;
    let (company, session) = platform
        .signup(
            "Acme",
            "owner@acme.example",
            &Secret::new(PASSPHRASE.into()),
            Actor::system("test"),
        )
        .await
        .unwrap();
    let store = platform.tenant(&company.id).await.unwrap();
    let mut history = BTreeMap::new();
    let mut state = ShipperState::default();
    let mut minute = 0;
    snap(&store, &mut history).await;

    for (code, name, kind) in [
        ("1000", "Cash", "asset"),
        ("4000", "Sales", "income"),
        ("5000", "Rent", "expense"),
    ] {
        minute += 1;
        let account = NewAccount::validate(code, name, kind, None, None).unwrap();
        store.create_account(account, ctx(minute)).await.unwrap();
        snap(&store, &mut history).await;
    }
    ship_once(&platform, &mut state).await.unwrap();

    minute += 1;
    store
        .post_entries(
            vec![
                entry(1, "Sale one", &[("1000", "100.00"), ("4000", "-100.00")]),
                entry(2, "Sale two", &[("1000", "250.50"), ("4000", "-250.50")]),
            ],
            None,
            ctx(minute),
        )
        .await
        .unwrap();
    snap(&store, &mut history).await;
    minute += 1;
    store
        .post_entries(
            vec![entry(3, "Rent", &[("5000", "80.00"), ("1000", "-80.00")])],
            None,
            ctx(minute),
        )
        .await
        .unwrap();
    snap(&store, &mut history).await;
    ship_once(&platform, &mut state).await.unwrap();

    minute += 1;
    store
        .reverse_entry(
            2,
            date!(2026 - 03 - 10),
            Some("Sale two cancelled".into()),
            ctx(minute),
        )
        .await
        .unwrap();
    snap(&store, &mut history).await;
    minute += 1;
    store
        .post_entries(
            vec![entry(
                12,
                "Sale three",
                &[("1000", "42.00"), ("4000", "-42.00")],
            )],
            None,
            ctx(minute),
        )
        .await
        .unwrap();
    snap(&store, &mut history).await;
    ship_once(&platform, &mut state).await.unwrap();

    Fixture {
        _dir: dir,
        data,
        platform,
        source: company.id,
        owner: session.user.id,
        history,
    }
}

/// Records the books as they are after the latest journal record.
async fn snap(store: &Arc<dyn TenantStore>, history: &mut BTreeMap<i64, Books>) {
    let seq = store.stats().await.unwrap().journal_seq;
    history.insert(seq, books(store).await);
}

fn segment_files(data: &Path, company: &str) -> Vec<PathBuf> {
    let dir = data.join("objects/companies").join(company).join("journal");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

async fn restored_books(platform: &Platform, id: &str) -> Books {
    books(&platform.tenant(id).await.unwrap()).await
}

#[tokio::test]
async fn shipped_journal_restores_to_latest_and_to_a_point() {
    let f = fixture().await;
    let head = *f.history.keys().last().unwrap();
    assert_eq!(head, 7);
    assert_eq!(segment_files(&f.data, &f.source).len(), 3);

    let status = backup::status(&f.platform).await.unwrap();
    let row = status.iter().find(|s| s.company_id == f.source).unwrap();
    assert_eq!(
        (row.journal_seq, row.shipped_seq, row.lag_records),
        (7, 7, 0)
    );

    // Latest: the same books, entry ids, dates, authors and times.
    let latest = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap();
    assert_eq!((latest.last_seq, latest.records), (7, 7));
    assert!(latest.company.name.starts_with("Acme (restored "));
    assert_eq!(
        restored_books(&f.platform, &latest.company.id).await,
        f.history[&head]
    );
    assert_eq!(
        f.platform
            .control
            .role(&f.owner, &latest.company.id)
            .await
            .unwrap(),
        Some(Role::Owner),
        "the source's owner owns the restored company"
    );

    // Every intermediate point, including ones inside a segment.
    for seq in [0, 3, 4, 5] {
        let restored = backup::restore(&f.platform, &f.source, RestoreTarget::Seq(seq))
            .await
            .unwrap();
        assert_eq!(restored.last_seq, seq);
        assert_eq!(
            restored_books(&f.platform, &restored.company.id).await,
            f.history[&seq],
            "restored to record {seq}"
        );
    }

    // By time: record 6 (the reversal) was written at T0 + 6 min.
    let by_time = backup::restore(
        &f.platform,
        &f.source,
        RestoreTarget::Time(T0 + Duration::minutes(6) + Duration::seconds(30)),
    )
    .await
    .unwrap();
    assert_eq!(by_time.last_seq, 6);
    assert_eq!(
        restored_books(&f.platform, &by_time.company.id).await,
        f.history[&6]
    );

    // Beyond what is shipped: refused, nothing created.
    let companies = f.platform.control.companies().await.unwrap().len();
    let err = backup::restore(&f.platform, &f.source, RestoreTarget::Seq(99))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("shipped only up to record 7"),
        "{err}"
    );
    assert_eq!(
        f.platform.control.companies().await.unwrap().len(),
        companies
    );
}

#[tokio::test]
async fn tampered_or_missing_segments_are_refused_and_leave_nothing_behind() {
    let f = fixture().await;
    let companies = f.platform.control.companies().await.unwrap().len();
    let files = platforms::company_databases(&f.platform, &f.data).await;
    let segments = segment_files(&f.data, &f.source);
    let middle = segments[1].clone();
    let original = std::fs::read(&middle).unwrap();

    let mut flipped = original.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    std::fs::write(&middle, &flipped).unwrap();
    let err = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("fails authentication"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(
        f.platform.control.companies().await.unwrap().len(),
        companies
    );
    assert_eq!(
        platforms::company_databases(&f.platform, &f.data).await,
        files,
        "no half-restored store left"
    );

    // A point before the damaged segment is still restorable.
    let early = backup::restore(&f.platform, &f.source, RestoreTarget::Seq(3))
        .await
        .unwrap();
    assert_eq!(
        restored_books(&f.platform, &early.company.id).await,
        f.history[&3]
    );
    let companies = companies + 1;
    let files = platforms::company_databases(&f.platform, &f.data).await;

    // A segment swapped in from another range fails authentication too.
    std::fs::write(&middle, std::fs::read(&segments[2]).unwrap()).unwrap();
    let err = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("fails authentication"),
        "{err:#}"
    );

    std::fs::remove_file(&middle).unwrap();
    let err = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("journal segment missing: records 4..5"),
        "{message}"
    );
    assert_eq!(
        f.platform.control.companies().await.unwrap().len(),
        companies
    );
    assert_eq!(
        platforms::company_databases(&f.platform, &f.data).await,
        files
    );

    // Put back, the journal restores again.
    std::fs::write(&middle, &original).unwrap();
    // ... unless the last segment is gone: the shipper's cursor says it existed.
    let last = segments[2].clone();
    let tail = std::fs::read(&last).unwrap();
    std::fs::remove_file(&last).unwrap();
    let err = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("journal segment missing: records 6..7"),
        "{err:#}"
    );
    assert_eq!(
        f.platform.control.companies().await.unwrap().len(),
        companies
    );
    std::fs::write(&last, &tail).unwrap();
    let latest = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap();
    assert_eq!(latest.last_seq, 7);
}

#[tokio::test]
async fn the_server_job_ships_new_records_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let platform =
        Arc::new(platforms::open(dir.path(), Arc::new(SystemClock), super::POSTGRES).await);
    let company = platform.create_company("Shipped", None).await.unwrap();
    let store = platform.tenant(&company.id).await.unwrap();
    // Nothing shipped yet: an empty company restores to an empty company.
    let empty = backup::restore(&platform, &company.id, RestoreTarget::Latest)
        .await
        .unwrap();
    assert_eq!((empty.last_seq, empty.records), (0, 0));
    let jobs = wb_server::jobs::Jobs::start(platform.clone());
    let account = NewAccount::validate("1000", "Cash", "asset", None, None).unwrap();
    store.create_account(account, ctx(1)).await.unwrap();
    let cursor = wb_server::jobs::shipper::cursor_name(&company.id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while platform.control.cursor(&cursor).await.unwrap() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "not shipped within 1 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    jobs.stop().await;
    assert_eq!(segment_files(dir.path(), &company.id).len(), 1);
}

fn snapshot_parts(data: &Path, company: &str, seq: i64) -> Vec<PathBuf> {
    let dir = data
        .join("objects/companies")
        .join(company)
        .join("snapshots")
        .join(format!("{seq:020}"));
    // Parts sit in one directory per attempt; the test takes one attempt.
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .flat_map(|attempt| {
            std::fs::read_dir(attempt)
                .unwrap()
                .map(|e| e.unwrap().path())
        })
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn snapshots_shorten_restores_and_retention_keeps_the_window() {
    let f = fixture().await;
    let mut history = f.history.clone();
    let store = f.platform.tenant(&f.source).await.unwrap();
    let manifest = backup::snapshot::take(&f.platform, &f.source)
        .await
        .unwrap()
        .expect("a snapshot of seven records");
    assert_eq!((manifest.seq, manifest.parts.len()), (7, 1));
    assert!(
        backup::snapshot::take(&f.platform, &f.source)
            .await
            .unwrap()
            .is_none(),
        "nothing new: no second snapshot"
    );

    store
        .post_entries(
            vec![entry(20, "After", &[("1000", "7.00"), ("4000", "-7.00")])],
            None,
            ctx(10),
        )
        .await
        .unwrap();
    snap(&store, &mut history).await;
    ship_once(&f.platform, &mut ShipperState::default())
        .await
        .unwrap();

    // Latest: the snapshot, then one record from a segment.
    let latest = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap();
    assert_eq!(
        (latest.snapshot, latest.last_seq, latest.records),
        (Some(7), 8, 1)
    );
    assert_eq!(
        restored_books(&f.platform, &latest.company.id).await,
        history[&8]
    );
    // Before the snapshot: from the segments alone.
    let early = backup::restore(&f.platform, &f.source, RestoreTarget::Seq(5))
        .await
        .unwrap();
    assert_eq!(early.snapshot, None);
    assert_eq!(
        restored_books(&f.platform, &early.company.id).await,
        history[&5]
    );

    // A damaged or missing part: the snapshot is stepped over and the company
    // is rebuilt from the segments, which are still kept.
    let part = snapshot_parts(&f.data, &f.source, 7)[0].clone();
    let original = std::fs::read(&part).unwrap();
    let mut flipped = original.clone();
    flipped[original.len() / 3] ^= 0x40;
    std::fs::write(&part, &flipped).unwrap();
    let fallback = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap();
    assert_eq!((fallback.snapshot, fallback.records), (None, 8));
    assert_eq!(
        restored_books(&f.platform, &fallback.company.id).await,
        history[&8]
    );
    std::fs::remove_file(&part).unwrap();
    let fallback = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap();
    assert_eq!(fallback.snapshot, None);
    std::fs::write(&part, &original).unwrap();

    // The job takes a snapshot once enough records were shipped since the last.
    let policy = backup::BackupPolicy {
        snapshot_records: 1,
        ..Default::default()
    };
    let taken = wb_server::jobs::snapshotter::snapshot_round(&f.platform, &policy)
        .await
        .unwrap();
    assert_eq!(taken, 1);
    assert_eq!(
        backup::snapshot::list(&f.platform, &f.source)
            .await
            .unwrap(),
        vec![7, 8]
    );

    // Retention with a one-minute window: the records are hours old, so the
    // newest snapshot is the base; snapshot 7 (same day) and every segment
    // it covers go.
    let retention = wb_core::retention::RetentionPolicy {
        pitr: Duration::minutes(1),
        daily: Duration::days(30),
    };
    let pruned = backup::prune(&f.platform, &f.source, retention)
        .await
        .unwrap();
    assert_eq!(pruned.snapshots_deleted, vec![7]);
    assert_eq!((pruned.segments_deleted, pruned.segments_kept), (4, 0));
    let latest = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap();
    assert_eq!((latest.snapshot, latest.records), (Some(8), 0));
    assert_eq!(
        restored_books(&f.platform, &latest.company.id).await,
        history[&8]
    );
    let err = backup::restore(&f.platform, &f.source, RestoreTarget::Seq(5))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("outside the retention window"),
        "{err:#}"
    );

    // With the segments it covers gone, a damaged base snapshot fails the
    // restore with its name, and leaves nothing behind.
    let companies = f.platform.control.companies().await.unwrap().len();
    let files = platforms::company_databases(&f.platform, &f.data).await;
    let part = snapshot_parts(&f.data, &f.source, 8)[0].clone();
    let mut flipped = std::fs::read(&part).unwrap();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&part, &flipped).unwrap();
    let err = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.contains("snapshot 8 cannot be loaded")
            && message.contains("does not match its manifest")
            && message.contains("not in the object store"),
        "{message}"
    );
    assert_eq!(
        f.platform.control.companies().await.unwrap().len(),
        companies
    );
    assert_eq!(
        platforms::company_databases(&f.platform, &f.data).await,
        files
    );
}

#[tokio::test]
async fn restore_in_place_brings_the_books_back_with_compensating_entries() {
    let f = fixture().await;
    let store = f.platform.tenant(&f.source).await.unwrap();
    // Balances per account, and non-zero totals: after a revert a currency
    // that was used shows a total of zero where the point had none.
    let balances = |b: &Books| {
        let mut totals = b.trial_balance.totals.clone();
        totals.retain(|_, amount| *amount != 0);
        (b.trial_balance.lines.clone(), totals)
    };

    // Record 5 is before the reversal of entry 2 (record 6) and entry 4 (record 7).
    let reverted = backup::revert_in_place(
        &f.platform,
        &f.source,
        RestoreTarget::Seq(5),
        Actor::system("test"),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!((reverted.to_seq, reverted.from_seq), (5, 7));
    assert_eq!((reverted.reversed, reverted.reinstated), (1, 1));
    let now = books(&store).await;
    assert_eq!(balances(&now), balances(&f.history[&5]));
    assert_eq!(now.entries.len(), 4 + 1 + 1 + 1, "nothing deleted");
    assert!(reverted.last_seq > 7, "the journal goes on");

    // Further back, by time: before any entry (record 3 at T0 + 3 min).
    let reverted = backup::revert_in_place(
        &f.platform,
        &f.source,
        RestoreTarget::Time(T0 + Duration::minutes(3) + Duration::seconds(10)),
        Actor::system("test"),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(reverted.to_seq, 3);
    assert_eq!(balances(&books(&store).await), balances(&f.history[&3]));

    // The journal after the reverts still ships and restores to the same books.
    ship_once(&f.platform, &mut ShipperState::default())
        .await
        .unwrap();
    let latest = backup::restore(&f.platform, &f.source, RestoreTarget::Latest)
        .await
        .unwrap();
    assert_eq!(
        restored_books(&f.platform, &latest.company.id).await,
        books(&store).await
    );

    // Beyond the journal: refused, nothing written.
    let head = store.stats().await.unwrap().journal_seq;
    let err = backup::revert_in_place(
        &f.platform,
        &f.source,
        RestoreTarget::Seq(head + 5),
        Actor::system("test"),
        &|_, _| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    assert_eq!(store.stats().await.unwrap().journal_seq, head);
}

/// The audit forwarder opens every company once at start (to collect events a
/// crash left behind), which puts each in view of the shipper too.
#[tokio::test]
async fn after_a_restart_unshipped_changes_of_unused_companies_are_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let master = wb_crypto::MasterKey::generate();
    let storage = platforms::storage(super::POSTGRES).await;
    let open = || async {
        Platform::open(
            dir.path(),
            master.clone(),
            Arc::new(SystemClock),
            Duration::hours(12),
            &storage,
        )
        .await
        .unwrap()
    };
    let (id, _shipped) = {
        let platform = open().await;
        let shipped = platform.create_company("Shipped", None).await.unwrap();
        let store = platform.tenant(&shipped.id).await.unwrap();
        let account = NewAccount::validate("1000", "Cash", "asset", None, None).unwrap();
        store.create_account(account, ctx(1)).await.unwrap();
        ship_once(&platform, &mut ShipperState::default())
            .await
            .unwrap();
        wb_server::backup::audit_trail::ship_once(&platform, &mut Default::default())
            .await
            .unwrap();
        let company = platform.create_company("Quiet", None).await.unwrap();
        let store = platform.tenant(&company.id).await.unwrap();
        let account = NewAccount::validate("1000", "Cash", "asset", None, None).unwrap();
        store.create_account(account, ctx(1)).await.unwrap();
        (company.id, shipped.id)
        // The process goes away before its shipper ran again.
    };
    let platform = Arc::new(open().await);
    assert_eq!(platform.tenants.open_count(), 0, "nobody uses the company");
    let jobs = wb_server::jobs::Jobs::start(platform.clone());
    let cursor = wb_server::jobs::shipper::cursor_name(&id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while platform.control.cursor(&cursor).await.unwrap() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the change committed before the restart was not shipped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    jobs.stop().await;
}
