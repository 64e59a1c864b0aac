//! `workbooks bench --backup`: continuous protection. Shipping lag (RPO) of
//! every record under the foundation posting load, measured from each
//! record's commit time to the time its segment landed in the object store;
//! the replay rate of a restore; and the time to restore a company of
//! `--large-entries` entries (one entry per journal record).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use wb_crypto::MasterKey;
use wb_server::backup::{self, RestoreTarget};
use wb_server::{Platform, ServerConfig, SystemClock};
use wb_store::{Actor, WriteContext};

use crate::harness::{client, draft, entry_json, load, percentile, tempdir_in, Target};
use crate::harness::{CLIENTS, SPREAD_COMPANIES};
use crate::report::{cores, render_rows, verdict, Row};
use crate::BenchArgs;

pub async fn run(args: &BenchArgs) -> Result<()> {
    let scratch = tempdir_in(args.data.as_deref())?;
    let dir = scratch.path().join("data");
    eprintln!("bench --backup: scratch data in {}", dir.display());
    let master = MasterKey::generate();
    let platform = Arc::new(Platform::open_embedded(
        &dir,
        master.clone(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )?);
    let mut config = ServerConfig::new(dir.clone(), "127.0.0.1:0".parse()?);
    // The bench signs up many companies from one address.
    config.signups_per_address_per_hour = u32::MAX;
    let server = wb_server::start(platform.clone(), &config, None).await?;
    let target = Arc::new(Target {
        url: server.url(),
        client: client(&dir)?,
    });
    let mut rows = Vec::new();

    eprintln!(
        "bench --backup: shipping lag under {CLIENTS} clients over {SPREAD_COMPANIES} companies"
    );
    let mut companies = Vec::new();
    for n in 0..SPREAD_COMPANIES {
        companies.push(
            target
                .signup(&format!("Ship {n}"), &format!("ship{n}@bench.example"))
                .await?,
        );
    }
    let companies = Arc::new(companies);
    let t = target.clone();
    let c = companies.clone();
    let posting = load(CLIENTS, args.seconds, 1, move |client, i| {
        let (t, c) = (t.clone(), c.clone());
        async move {
            let (company, token) = &c[client % SPREAD_COMPANIES];
            let url = format!("{}/api/v1/companies/{company}/entries", t.url);
            let body = entry_json(client as u64 * 1_000_000 + i);
            matches!(t.client.post(url).bearer_auth(token).json(&body).send().await, Ok(r) if r.status().as_u16() == 201)
        }
    })
    .await;
    // Let the shipper catch up with the tail of the load.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut delays_us: Vec<u32> = Vec::new();
    let mut largest: Option<(String, usize)> = None;
    for (company, _) in companies.iter() {
        let landed = backup::segment_landings(&platform, company).await?;
        let store = platform.tenant(company).await?;
        let mut after = 0;
        let mut count = 0;
        loop {
            let records = store.journal(after, 10_000).await?;
            let Some(last) = records.last().map(|r| r.seq) else {
                break;
            };
            for r in &records {
                if let Some((_, at)) = landed.range(r.seq..).next() {
                    let delay = (*at - r.at).whole_microseconds().max(0);
                    delays_us.push(u32::try_from(delay).unwrap_or(u32::MAX));
                }
            }
            count += records.len();
            after = last;
        }
        if largest.as_ref().is_none_or(|(_, n)| count > *n) {
            largest = Some((company.clone(), count));
        }
    }
    delays_us.sort_unstable();
    let (p50, p99) = (percentile(&delays_us, 0.50), percentile(&delays_us, 0.99));
    rows.push(Row {
        name: format!(
            "shipping lag per record (commit → segment in the object store), {CLIENTS} HTTPS clients over {SPREAD_COMPANIES} companies"
        ),
        measured: format!(
            "p50 {p50:.0} ms, p99 {p99:.0} ms over {} records",
            delays_us.len()
        ),
        baseline: format!(
            "posting load {:.0} entries/s (p99 {:.1} ms); shipper runs every 200 ms",
            posting.rate(),
            posting.p99_ms
        ),
        ratio: "-".into(),
        target: "RPO p99 < 1 s".into(),
        verdict: verdict(p99 < 1000.0).into(),
    });

    if let Some((company, records)) = largest {
        eprintln!("bench --backup: restore of a company with {records} records");
        let started = Instant::now();
        let restored = backup::restore(&platform, &company, RestoreTarget::Latest).await?;
        let seconds = started.elapsed().as_secs_f64();
        rows.push(Row {
            name: format!(
                "restore replay rate ({} records, one entry each)",
                restored.records
            ),
            measured: format!("{:.0} records/s", restored.records as f64 / seconds),
            baseline: format!("posting rate of the load above {:.0}/s", posting.rate()),
            ratio: format!(
                "{:.2}x",
                restored.records as f64 / seconds / posting.rate().max(1.0)
            ),
            target: "≥ 100,000 records/s".into(),
            verdict: verdict(restored.records as f64 / seconds >= 100_000.0).into(),
        });
    }
    server.shutdown().await?;

    eprintln!(
        "bench --backup: a company with {} entries",
        args.large_entries
    );
    let (company, populate_rate) = large_company(&platform, args.large_entries).await?;
    let mut state = wb_server::jobs::shipper::ShipperState::default();
    let ship_started = Instant::now();
    while wb_server::jobs::shipper::ship_once(&platform, &mut state).await? > 0 {}
    let ship_seconds = ship_started.elapsed().as_secs_f64();
    let write_seconds = args.large_entries as f64 / populate_rate;
    let verdict_1m = |seconds: f64| {
        if args.large_entries >= 1_000_000 {
            verdict(seconds < 30.0).to_string()
        } else {
            let per_million = seconds * 1_000_000.0 / args.large_entries as f64;
            format!(
                "{} (extrapolated: {per_million:.0} s for 1,000,000)",
                verdict(per_million < 30.0)
            )
        }
    };

    eprintln!("bench --backup: restore from segments only");
    let started = Instant::now();
    let restored = backup::restore(&platform, &company, RestoreTarget::Latest).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rate = restored.records as f64 / seconds;
    rows.push(Row {
        name: format!(
            "restore replay rate, segments only ({} journal records, one entry each)",
            restored.records
        ),
        measured: format!("{rate:.0} records/s"),
        baseline: format!("writing them: {populate_rate:.0} entries/s"),
        ratio: format!("{:.1}x", rate / populate_rate.max(1.0)),
        target: "≥ 100,000 records/s".into(),
        verdict: verdict(rate >= 100_000.0).into(),
    });
    rows.push(Row {
        name: format!(
            "restore of a company with {} entries, segments only",
            args.large_entries
        ),
        measured: format!("{seconds:.1} s"),
        baseline: format!("writing it: {write_seconds:.1} s; shipping it: {ship_seconds:.1} s"),
        ratio: format!("{:.2}x of write time", seconds / write_seconds),
        target: "1,000,000 entries in < 30 s".into(),
        verdict: verdict_1m(seconds),
    });
    drop(restored);

    eprintln!("bench --backup: raw SQLCipher ceiling for the same rows");
    let ceiling = raw_replay_ceiling(scratch.path(), args.large_entries)?;
    rows.push(Row {
        name: "raw SQLCipher ceiling: the rows one replayed record writes (entry, 2 postings with their indexes, journal row), prepared statements, 20,000 per transaction, no validation, hashing or JSON".into(),
        measured: format!("{ceiling:.0} records/s"),
        baseline: "same database settings as a company store (WAL, 256 MiB cache while replaying)".into(),
        ratio: "-".into(),
        target: "-".into(),
        verdict: "ceiling".into(),
    });

    eprintln!("bench --backup: snapshot, then restore from it");
    let started = Instant::now();
    let manifest = backup::snapshot::take(&platform, &company)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no snapshot taken"))?;
    let snapshot_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let restored = backup::restore(&platform, &company, RestoreTarget::Latest).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rate = manifest.seq as f64 / seconds;
    rows.push(Row {
        name: format!(
            "restore of a company with {} entries from its snapshot ({} records, {} parts, {:.0} MiB sealed)",
            args.large_entries,
            manifest.seq,
            manifest.parts.len(),
            manifest.bytes as f64 / (1024.0 * 1024.0)
        ),
        measured: format!("{seconds:.1} s ({rate:.0} records/s)"),
        baseline: format!(
            "writing it: {write_seconds:.1} s; taking the snapshot: {snapshot_seconds:.1} s"
        ),
        ratio: format!("{:.2}x of write time", seconds / write_seconds),
        target: "1,000,000 entries in < 30 s".into(),
        verdict: verdict_1m(seconds),
    });
    if restored.snapshot != Some(manifest.seq) {
        anyhow::bail!("the restore did not start from the snapshot");
    }

    eprintln!("bench --backup: disaster recovery of the whole deployment on a fresh node");
    let audit_started = Instant::now();
    for company in platform.control.companies().await? {
        platform.tenant(&company.id).await?;
    }
    wb_server::backup::audit_trail::ship_once(
        &platform,
        &mut wb_server::backup::audit_trail::AuditShipperState::default(),
    )
    .await?;
    let audit_seconds = audit_started.elapsed().as_secs_f64();
    let mut config_state = wb_server::dr::ConfigBackupState::default();
    wb_server::dr::backup_config_once(&platform, &mut config_state).await?;
    let fresh_dir = scratch.path().join("fresh");
    let mut fresh = Platform::open_embedded(
        &fresh_dir,
        master,
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )?;
    fresh.objects = platform.objects.clone();
    let report = wb_server::dr::restore(&fresh).await?;
    let recovered = report.companies.iter().filter(|c| c.restored).count();
    let records: usize = report.companies.iter().map(|c| c.records).sum();
    rows.push(Row {
        name: format!(
            "disaster recovery (RTO) on a fresh node: configuration, {} companies incl. the {}-entry one (from its snapshot), every company's audit trail",
            report.companies.len(),
            args.large_entries
        ),
        measured: format!(
            "{:.1} s, {recovered} of {} companies recovered ({records} segment records after snapshots)",
            report.seconds,
            report.companies.len()
        ),
        baseline: format!(
            "shipping the audit trails first: {audit_seconds:.1} s"
        ),
        ratio: "-".into(),
        target: "minutes, not hours (SPEC)".into(),
        verdict: verdict(report.seconds < 600.0 && recovered == report.companies.len()).into(),
    });

    let table = render_rows(
        &format!(
            "Run: `workbooks bench --backup --seconds {} --large-entries {}` on {} cores, {} (release build), embedded SQLCipher store, local-directory object store.",
            args.seconds,
            args.large_entries,
            cores(),
            time::OffsetDateTime::now_utc().date()
        ),
        &rows,
    );
    print!("{table}");
    crate::report::write_results(
        &args.out,
        "backup",
        Some("## Continuous protection (`workbooks bench --backup`)"),
        &table,
    )
}

/// One entry per journal record, many requests in flight (as many clients would).
pub(crate) async fn large_company(platform: &Arc<Platform>, entries: u64) -> Result<(String, f64)> {
    let company = platform.create_company("Bench Restore", None).await?;
    let store = platform.tenant(&company.id).await?;
    for (code, kind) in [("1000", "asset"), ("4000", "income")] {
        store
            .create_account(
                wb_core::NewAccount::validate(code, &format!("Account {code}"), kind, None, None)?,
                WriteContext {
                    actor: Actor::system("bench"),
                    at: platform.now(),
                },
            )
            .await?;
    }
    let started = Instant::now();
    let in_flight = 512u64;
    let mut tasks = Vec::new();
    for worker in 0..in_flight {
        let (store, platform) = (store.clone(), platform.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = worker;
            while i < entries {
                let ctx = WriteContext {
                    actor: Actor::system("bench"),
                    at: platform.now(),
                };
                store.post_entries(vec![draft(i)], None, ctx).await?;
                i += in_flight;
            }
            Ok::<_, wb_store::StoreError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((company.id, entries as f64 / started.elapsed().as_secs_f64()))
}

/// Writes `records` replay-shaped rows straight into a fresh SQLCipher file:
/// what the disk and SQLCipher allow before any of our code runs.
fn raw_replay_ceiling(dir: &std::path::Path, records: u64) -> Result<f64> {
    let path = dir.join("raw-ceiling.db");
    let conn = wb_store::sqlite::open_encrypted(
        &path,
        &wb_crypto::DataKey::generate(),
        wb_store::sqlite::OpenMode::Create,
    )?;
    conn.execute_batch(
        "PRAGMA cache_size = -262144;
         CREATE TABLE entries (id INTEGER PRIMARY KEY, date TEXT NOT NULL, description TEXT NOT NULL,
             reference TEXT, reverses INTEGER UNIQUE, reversed_by INTEGER, created_at TEXT NOT NULL,
             created_by TEXT NOT NULL) STRICT;
         CREATE INDEX entries_by_date ON entries(date, id);
         CREATE TABLE postings (entry_id INTEGER NOT NULL, line INTEGER NOT NULL, account_id INTEGER NOT NULL,
             currency TEXT NOT NULL, amount INTEGER NOT NULL, date TEXT NOT NULL,
             PRIMARY KEY (entry_id, line)) STRICT, WITHOUT ROWID;
         CREATE INDEX postings_by_account ON postings(account_id, date, entry_id);
         CREATE TABLE change_journal (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL,
             payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL) STRICT;",
    )?;
    let payload = "x".repeat(330);
    let hash = "0".repeat(64);
    let started = Instant::now();
    let mut n = 0u64;
    while n < records {
        let tx = conn.unchecked_transaction()?;
        {
            let mut entry = tx.prepare_cached(
                "INSERT INTO entries (id, date, description, reference, reverses, created_at, created_by)
                 VALUES (?1, ?2, ?3, NULL, NULL, ?4, ?5)",
            )?;
            let mut posting = tx.prepare_cached(
                "INSERT INTO postings (entry_id, line, account_id, currency, amount, date)
                 VALUES (?1, ?2, ?3, 'EUR', ?4, ?5)",
            )?;
            let mut journal = tx.prepare_cached(
                "INSERT INTO change_journal (seq, at, kind, payload, prev_hash, hash)
                 VALUES (?1, ?2, 'entries_posted', ?3, ?4, ?4)",
            )?;
            for _ in 0..20_000.min(records - n) {
                n += 1;
                let id = n as i64;
                let date = format!("2026-{:02}-{:02}", id % 12 + 1, id % 28 + 1);
                entry.execute(rusqlite::params![
                    id,
                    date,
                    "Sale",
                    "2026-11-22T10:00:00Z",
                    "system:bench"
                ])?;
                posting.execute(rusqlite::params![id, 0, 1, 100 + id, date])?;
                posting.execute(rusqlite::params![id, 1, 2, -100 - id, date])?;
                journal.execute(rusqlite::params![id, "2026-11-22T10:00:00Z", payload, hash])?;
            }
        }
        tx.commit()?;
    }
    Ok(records as f64 / started.elapsed().as_secs_f64())
}
