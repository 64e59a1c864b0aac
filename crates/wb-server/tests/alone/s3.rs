//! Change-journal shipping to a real S3-protocol server: moto (`moto[server]`
//! from PyPI, installed by scripts/test.sh) started on 127.0.0.1 for each test.
//! Segments land in the bucket encrypted and restore to the same books; when
//! the store stops answering (SIGSTOP), writes go on, the lag grows, the
//! backup-lag alert is raised once and counts up, and when it answers again
//! (SIGCONT) shipping catches up and a restore holds every acknowledged entry.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crate::moto::Moto;
use time::macros::date;
use time::OffsetDateTime;
use wb_core::reports::{trial_balance, AccountInfo, TrialBalance};
use wb_core::{EntryDraft, NewAccount, PostingDraft};
use wb_crypto::MasterKey;
use wb_server::backup::{self, BackupStatus, RestoreTarget};
use wb_server::jobs::shipper::{ship_once, ShipperState, BACKUP_LAG_RULE};
use wb_server::{Platform, ServerConfig, SystemClock, TlsMode};
use wb_store::{Actor, Alert, Entry, EntryPage, TenantStore, WriteContext};

/// Written into an entry's description: must never appear in a stored object.
const SECRET_DESCRIPTION: &str = "Confidential sale to Zanzibar Widgets 8472";

/// Fake credentials for moto, set once before any store is built (each test
/// first runs this with no other test running: `crate::beside_others`).
fn credentials() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_SESSION_TOKEN", "testing");
    });
}

fn open(dir: &Path, url: &str) -> Platform {
    credentials();
    let store = wb_server::objects::open(Some(url), dir).unwrap();
    Platform::open_embedded(
        dir,
        MasterKey::generate(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )
    .unwrap()
    .with_object_store(store)
}

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

fn ctx() -> WriteContext {
    WriteContext {
        actor: Actor::system("test"),
        at: OffsetDateTime::now_utc(),
    }
}

async fn accounts(store: &Arc<dyn TenantStore>) {
    for (code, name, kind) in [("1000", "Cash", "asset"), ("4000", "Sales", "income")] {
        let account = NewAccount::validate(code, name, kind, None, None).unwrap();
        store.create_account(account, ctx()).await.unwrap();
    }
}

/// Posts one entry and returns its id (the write is acknowledged).
async fn post(store: &Arc<dyn TenantStore>, description: &str, cents: u64) -> i64 {
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let draft = EntryDraft {
        date: date!(2026 - 05 - 04),
        description: description.into(),
        reference: None,
        postings: vec![
            PostingDraft {
                account: "1000".into(),
                amount: amount.clone(),
                currency: "EUR".into(),
            },
            PostingDraft {
                account: "4000".into(),
                amount: format!("-{amount}"),
                currency: "EUR".into(),
            },
        ],
    };
    let posted = store
        .post_entries(vec![draft], None, ctx())
        .await
        .expect("writes go on whatever the object store does");
    posted.entries[0].id
}

async fn status_of(platform: &Platform, company: &str) -> BackupStatus {
    backup::status(platform)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.company_id == company)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_segments_land_in_s3_encrypted_and_restore() {
    let _tests = crate::beside_others(credentials).await;
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path(), &moto.url("backups/eu", ""));
    let company = platform.create_company("Acme", None).await.unwrap();
    let store = platform.tenant(&company.id).await.unwrap();
    accounts(&store).await;
    let mut state = ShipperState::default();
    assert_eq!(ship_once(&platform, &mut state).await.unwrap(), 2);
    post(&store, SECRET_DESCRIPTION, 12_345).await;
    for n in 0..5 {
        post(&store, &format!("Sale {n}"), 100 + n).await;
    }
    assert_eq!(ship_once(&platform, &mut state).await.unwrap(), 6);

    let status = status_of(&platform, &company.id).await;
    assert_eq!(
        (status.journal_seq, status.shipped_seq, status.lag_records),
        (8, 8, 0)
    );
    assert_eq!(status.lag_seconds, 0.0);
    let snapshot = platform.shipping.snapshot(platform.now());
    assert_eq!(snapshot.shipped_records_total, 8);
    assert_eq!(snapshot.lag_seconds_max, 0.0);

    // In the bucket, under the prefix: two segments, neither readable.
    let prefix = format!("backups/eu/companies/{}/journal/", company.id);
    let keys = moto.keys(&prefix).await;
    assert_eq!(
        keys,
        vec![
            format!("{prefix}00000000000000000001-00000000000000000002.seg"),
            format!("{prefix}00000000000000000003-00000000000000000008.seg"),
        ]
    );
    for key in &keys {
        let bytes = moto.object(key).await;
        assert!(
            bytes.len() > 40,
            "{key}: {}",
            String::from_utf8_lossy(&bytes)
        );
        for needle in [SECRET_DESCRIPTION, "Zanzibar", "entries_posted", "1000"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{key} holds {needle:?} in clear"
            );
        }
    }
    assert!(
        moto.keys("companies/").await.is_empty(),
        "nothing outside the prefix"
    );

    let restored = backup::restore(&platform, &company.id, RestoreTarget::Latest)
        .await
        .unwrap();
    assert_eq!((restored.last_seq, restored.records), (8, 8));
    let copy = platform.tenant(&restored.company.id).await.unwrap();
    let (source, copy) = (books(&store).await, books(&copy).await);
    assert_eq!(copy, source);
    assert!(source
        .entries
        .iter()
        .any(|e| e.description == SECRET_DESCRIPTION));
}

async fn backup_lag_alerts(platform: &Platform, company: &str) -> Vec<Alert> {
    platform
        .alerts
        .list(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.rule == BACKUP_LAG_RULE && a.company_id.as_deref() == Some(company))
        .collect()
}

/// The value of a metric in a Prometheus text page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from\n{page}"))
        .trim()
        .parse()
        .unwrap()
}

async fn metrics(addr: SocketAddr) -> String {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipping_survives_an_object_store_outage() {
    let _tests = crate::beside_others(credentials).await;
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A short client timeout and no client retries: a request to the stopped
    // store fails after 2 s, and the shipper's next round tries again.
    let url = moto.url("outage", "&timeout=2s&connect-timeout=1s&retries=0");
    let platform = Arc::new(open(dir.path(), &url));
    let mut config = ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    config.tls = TlsMode::InsecureHttp;
    config.backup_lag_alert = Duration::from_secs(2);
    let server = wb_server::start(platform.clone(), &config, None)
        .await
        .unwrap();
    let addr = server.addr;
    let company = platform.create_company("Acme", None).await.unwrap();
    let id = company.id.clone();
    let store = platform.tenant(&id).await.unwrap();
    accounts(&store).await;
    let mut acknowledged: Vec<(i64, String)> = Vec::new();
    for n in 0..10 {
        let description = format!("Before the outage {n}");
        acknowledged.push((post(&store, &description, 100 + n).await, description));
    }
    wait_for(
        "shipping before the outage",
        Duration::from_secs(20),
        || async { status_of(&platform, &id).await.lag_records == 0 },
    )
    .await;
    let page = metrics(addr).await;
    assert!(
        metric(&page, "workbooks_backup_shipped_records_total") >= 12.0,
        "{page}"
    );
    assert_eq!(
        metric(&page, "workbooks_backup_companies_lagging"),
        0.0,
        "{page}"
    );

    // The store stops answering; writes go on and the lag grows.
    moto.signal("-STOP");
    let outage = Instant::now();
    let mut n = 0;
    let mut samples = Vec::new();
    while outage.elapsed() < Duration::from_secs(8) {
        let description = format!("During the outage {n}");
        acknowledged.push((post(&store, &description, 1_000 + n).await, description));
        n += 1;
        if n % 10 == 0 {
            samples.push(status_of(&platform, &id).await);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let during = status_of(&platform, &id).await;
    assert!(during.lag_records >= n as i64, "{during:?}");
    assert!(during.lag_seconds >= 6.0, "{during:?}");
    assert!(
        samples
            .windows(2)
            .all(|w| w[1].lag_seconds > w[0].lag_seconds && w[1].lag_records > w[0].lag_records),
        "the lag grows: {samples:?}"
    );

    // One alert for the company, raised again (count) while the outage lasts.
    wait_for("the backup-lag alert", Duration::from_secs(20), || async {
        backup_lag_alerts(&platform, &id)
            .await
            .first()
            .is_some_and(|a| a.count >= 2)
    })
    .await;
    let alerts = backup_lag_alerts(&platform, &id).await;
    assert_eq!(alerts.len(), 1, "deduplicated: {alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert.severity, wb_core::monitor::Severity::High);
    assert!(alert.title.contains(&id), "{alert:?}");
    let page = metrics(addr).await;
    assert!(
        metric(&page, "workbooks_backup_lag_seconds_max") > 6.0,
        "{page}"
    );
    assert_eq!(
        metric(&page, "workbooks_backup_companies_lagging"),
        1.0,
        "{page}"
    );
    assert!(
        metric(&page, "workbooks_backup_ship_failures_total") >= 1.0,
        "{page}"
    );
    assert!(!page.contains(&id), "no company ids: {page}");

    // The store answers again: shipping catches up without loss.
    moto.signal("-CONT");
    for n in 0..5 {
        let description = format!("After the outage {n}");
        acknowledged.push((post(&store, &description, 5_000 + n).await, description));
    }
    wait_for("shipping to catch up", Duration::from_secs(60), || async {
        status_of(&platform, &id).await.lag_records == 0
    })
    .await;
    let caught_up = status_of(&platform, &id).await;
    assert_eq!(caught_up.lag_seconds, 0.0, "{caught_up:?}");
    assert_eq!(caught_up.shipped_seq, caught_up.journal_seq);
    wait_for(
        "the metrics to show it",
        Duration::from_secs(10),
        || async {
            let page = metrics(addr).await;
            metric(&page, "workbooks_backup_lag_seconds_max") == 0.0
                && metric(&page, "workbooks_backup_companies_lagging") == 0.0
        },
    )
    .await;
    assert_eq!(
        backup_lag_alerts(&platform, &id).await.len(),
        1,
        "still one alert after the outage"
    );
    server.shutdown().await.unwrap();

    // Every acknowledged entry, once, with the books equal to the source's.
    let restored = backup::restore(&platform, &id, RestoreTarget::Latest)
        .await
        .unwrap();
    assert_eq!(restored.last_seq, caught_up.journal_seq);
    let copy = platform.tenant(&restored.company.id).await.unwrap();
    let (source, copy) = (books(&store).await, books(&copy).await);
    assert_eq!(copy, source);
    let restored_entries: Vec<(i64, String)> = copy
        .entries
        .iter()
        .map(|e| (e.id, e.description.clone()))
        .collect();
    let unique: BTreeSet<i64> = restored_entries.iter().map(|(id, _)| *id).collect();
    assert_eq!(unique.len(), restored_entries.len(), "no duplicates");
    let mut expected = acknowledged.clone();
    expected.sort();
    let mut got = restored_entries;
    got.sort();
    assert_eq!(got, expected, "every acknowledged entry, nothing else");
}

/// Attachments on S3: a multipart upload (two parts), deduplication without
/// an atomic copy-if-absent (plain S3), a streamed download, a refused
/// oversized upload leaving nothing, and deleting a company's files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_stream_through_s3() {
    let _tests = crate::beside_others(credentials).await;
    use futures_util::StreamExt;
    use wb_server::files::{self, UploadLimits};

    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    credentials();
    let master = MasterKey::generate();
    let platform = Platform::open_embedded(
        dir.path(),
        master.clone(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )
    .unwrap()
    .with_object_store(wb_server::objects::open(Some(&moto.url("eu", "")), dir.path()).unwrap());
    let company = platform.create_company("Acme", None).await.unwrap();
    let key = wb_crypto::CompanyKeys::single(
        master
            .unwrap_key(&company.wrapped_dek, &company.id)
            .unwrap(),
    );
    let marker = SECRET_DESCRIPTION.as_bytes();
    let mut content: Vec<u8> = (0..6 * 1024 * 1024 + 4321)
        .map(|i: usize| (i % 251) as u8)
        .collect();
    content[3_000_000..3_000_000 + marker.len()].copy_from_slice(marker);
    let body = || {
        futures_util::stream::iter(
            content
                .chunks(100_000)
                .map(|c| Ok::<_, std::io::Error>(axum::body::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )
    };
    let limits = UploadLimits {
        max_bytes: 64 * 1024 * 1024,
        idle: Duration::from_secs(10),
    };
    let first = files::upload(&*platform.objects, &key, &company.id, body(), limits)
        .await
        .unwrap();
    assert!(!first.deduplicated);
    let second = files::upload(&*platform.objects, &key, &company.id, body(), limits)
        .await
        .unwrap();
    assert!(second.deduplicated);
    assert_eq!(first.address, second.address);
    let prefix = format!("eu/companies/{}/files/", company.id);
    let object = format!("{prefix}{}", first.address);
    assert_eq!(moto.keys(&prefix).await, std::slice::from_ref(&object));
    let sealed = moto.object(&object).await;
    assert_eq!(
        sealed.len() as u64,
        files::sealed_size(content.len() as u64)
    );
    assert!(!sealed.windows(marker.len()).any(|w| w == marker));

    let record = wb_store::FileRecord {
        id: 1,
        address: first.address.clone(),
        name: "scan.tiff".into(),
        content_type: "image/tiff".into(),
        size: first.size,
        entry_id: None,
        created_at: OffsetDateTime::now_utc(),
        created_by: "user:test".into(),
    };
    let mut plain = files::download(platform.objects.clone(), &key, &company.id, &record)
        .await
        .unwrap();
    let mut back = Vec::new();
    while let Some(piece) = plain.next().await {
        back.extend_from_slice(&piece.unwrap());
    }
    assert!(back == content);

    let small = UploadLimits {
        max_bytes: 1024 * 1024,
        ..limits
    };
    let refused = files::upload(&*platform.objects, &key, &company.id, body(), small).await;
    assert!(
        matches!(refused, Err(files::UploadError::TooLarge(_))),
        "{refused:?}"
    );
    assert_eq!(moto.keys(&prefix).await, [object]);

    files::delete_all(&*platform.objects, &company.id)
        .await
        .unwrap();
    assert!(moto.keys(&prefix).await.is_empty());
}
