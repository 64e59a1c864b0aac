//! `workbooks bench` (no section flag): throughput, latency and memory of the embedded store,
//! each figure next to a baseline measured in the same run, written as a
//! Markdown table (BENCHMARKS.md). Not a test: numbers vary between machines
//! and, for disk flushes, between runs.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wb_core::Action;

use anyhow::Result;
use rusqlite::Connection;
use serde_json::json;
use wb_core::{EntryDraft, NewAccount};
use wb_crypto::MasterKey;
use wb_server::{Platform, ServerConfig, SystemClock};
use wb_store::{Actor, WriteContext};

use crate::harness::{
    client, companies_open, draft, entry_json, load, percentile, rss_mib, tempdir_in, Load, Target,
    CLIENTS, SPREAD_COMPANIES,
};
use crate::report::{cores, render_rows, verdict, write_results, Row};
use crate::BenchArgs;

const BATCH_SIZE: usize = 1000;
const BATCH_CLIENTS: usize = 4;

/// Raw SQLite on the same disk: small rows, WAL, synchronous=FULL, `per_tx` rows a commit.
fn raw_sqlite(dir: &Path, per_tx: usize, seconds: u64) -> Result<f64> {
    raw_sqlite_rows(dir, per_tx, seconds, "1000")
}

/// As `raw_sqlite`, with `account` holding `payload` (to match a row size).
fn raw_sqlite_rows(dir: &Path, per_tx: usize, seconds: u64, payload: &str) -> Result<f64> {
    let path = dir.join(format!("raw-{per_tx}-{}.db", payload.len()));
    let conn = Connection::open(&path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, account TEXT NOT NULL, amount INTEGER NOT NULL);",
    )?;
    let start = Instant::now();
    let mut rows = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        let tx = conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached("INSERT INTO t (account, amount) VALUES (?1, ?2)")?;
            for i in 0..per_tx {
                stmt.execute(rusqlite::params![payload, i as i64])?;
            }
        }
        tx.commit()?;
        rows += per_tx as u64;
    }
    Ok(rows as f64 / start.elapsed().as_secs_f64())
}

/// Target (a) has three parts; say which hold, and when ten times the disk
/// baseline is above what the server can do at all (its /healthz rate), say so.
fn a_verdict(l: &Load, raw_one: f64, ceiling: f64) -> String {
    let tenfold = 10.0 * raw_one;
    let mut parts = vec![
        format!("5,000/s {}", verdict(l.rate() >= 5000.0 && l.errors == 0)),
        format!("p99 {}", verdict(l.p99_ms < 50.0)),
        format!("10x {}", verdict(l.rate() >= tenfold)),
    ];
    if l.rate() < tenfold && tenfold > ceiling {
        parts.push(format!(
            "(10x = {tenfold:.0}/s exceeds this run's /healthz ceiling of {ceiling:.0}/s)"
        ));
    }
    parts.join("; ")
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let scratch = tempdir_in(args.data.as_deref())?;
    let dir = scratch.path().to_path_buf();
    let mut rows: Vec<Row> = Vec::new();
    eprintln!("bench: scratch data in {}", dir.display());

    // Memory first, in a fresh process: 1,000 companies open.
    let rss_start = rss_mib();
    let platform = Arc::new(Platform::open_embedded(
        &dir.join("data"),
        MasterKey::generate(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )?);
    let memory_busy = companies_open(&platform, args.companies).await?;
    // Idle companies release their caches after a second without writes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let memory = rss_mib();
    // SQLite's own accounting: page caches, schemas, prepared statements.
    // SAFETY: a read of a process-wide counter; SQLite is initialized by now.
    let sqlite_mib = unsafe { rusqlite::ffi::sqlite3_memory_used() } as f64 / (1024.0 * 1024.0);
    rows.push(Row {
        name: format!(
            "resident memory with {} companies open (each written once)",
            args.companies
        ),
        measured: format!(
            "{:.0} MiB idle (+{:.0} MiB over start; SQLite's own allocations {:.0} MiB); {:.0} MiB right after the writes",
            memory,
            memory - rss_start,
            sqlite_mib,
            memory_busy
        ),
        baseline: format!("{rss_start:.0} MiB at start"),
        ratio: "-".into(),
        target: "< 200 MiB".into(),
        verdict: verdict(memory < 200.0).into(),
    });

    let mut config = ServerConfig::new(dir.join("data"), "127.0.0.1:0".parse()?);
    config.batch_body_limit_bytes = 64 * 1024 * 1024;
    // The bench signs up many companies from one address.
    config.signups_per_address_per_hour = u32::MAX;
    let server = wb_server::start(platform.clone(), &config, None).await?;
    let target = Arc::new(Target {
        url: server.url(),
        client: client(&dir.join("data"))?,
    });

    eprintln!("bench: /healthz ceiling");
    let t = target.clone();
    let health = load(CLIENTS, args.seconds, 1, move |_, _| {
        let t = t.clone();
        async move {
            matches!(t.client.get(format!("{}/healthz", t.url)).send().await, Ok(r) if r.status().is_success())
        }
    })
    .await;

    eprintln!("bench: raw SQLite baselines");
    let raw_dir = dir.join("raw");
    std::fs::create_dir_all(&raw_dir)?;
    let seconds = args.seconds;
    let raw_one = tokio::task::spawn_blocking({
        let d = raw_dir.clone();
        move || raw_sqlite(&d, 1, seconds)
    })
    .await??;
    let raw_thousand = tokio::task::spawn_blocking({
        let d = raw_dir.clone();
        move || raw_sqlite(&d, 1000, seconds)
    })
    .await??;

    eprintln!("bench: 64 clients, one company");
    let (company, token) = target.signup("Bench One", "one@bench.example").await?;
    let t = target.clone();
    let one = load(CLIENTS, args.seconds, 1, move |client, i| {
        let (t, company, token) = (t.clone(), company.clone(), token.clone());
        async move {
            let url = format!("{}/api/v1/companies/{company}/entries", t.url);
            let body = entry_json(client as u64 * 1_000_000 + i);
            matches!(t.client.post(url).bearer_auth(token).json(&body).send().await, Ok(r) if r.status().as_u16() == 201)
        }
    })
    .await;

    eprintln!("bench: 64 clients over 16 companies");
    let mut spread_targets = Vec::new();
    for n in 0..SPREAD_COMPANIES {
        spread_targets.push(
            target
                .signup(
                    &format!("Bench Spread {n}"),
                    &format!("spread{n}@bench.example"),
                )
                .await?,
        );
    }
    let spread_targets = Arc::new(spread_targets);
    let t = target.clone();
    let spread = load(CLIENTS, args.seconds, 1, move |client, i| {
        let (t, targets) = (t.clone(), spread_targets.clone());
        async move {
            let (company, token) = &targets[client % SPREAD_COMPANIES];
            let url = format!("{}/api/v1/companies/{company}/entries", t.url);
            let body = entry_json(client as u64 * 1_000_000 + i);
            matches!(t.client.post(url).bearer_auth(token).json(&body).send().await, Ok(r) if r.status().as_u16() == 201)
        }
    })
    .await;

    eprintln!("bench: batch endpoint");
    let (company_b, token_b) = target.signup("Bench Batch", "batch@bench.example").await?;
    let t = target.clone();
    let batch = load(BATCH_CLIENTS, args.seconds, BATCH_SIZE as u64, move |client, i| {
        let (t, company, token) = (t.clone(), company_b.clone(), token_b.clone());
        async move {
            let base = (client as u64 * 1_000_000 + i) * BATCH_SIZE as u64;
            let entries: Vec<_> = (0..BATCH_SIZE as u64).map(|k| entry_json(base + k)).collect();
            let body = serde_json::to_vec(&json!({ "entries": entries })).unwrap_or_default();
            let url = format!("{}/api/v1/companies/{company}/entries/batch", t.url);
            matches!(t.client.post(url).bearer_auth(token).header("content-type", "application/json").body(body).send().await,
                Ok(r) if r.status().as_u16() == 201)
        }
    })
    .await;

    eprintln!("bench: trial balance over {} entries", args.large_entries);
    let (tb_p50, tb_p99, populate_rate) =
        large_company(&platform, &target, args.large_entries).await?;

    server.shutdown().await?;

    eprintln!("bench: audit append and the cost of audit on posting");
    let audit = audit_bench(&dir, args.seconds).await?;

    rows.push(Row {
        name: "GET /healthz over HTTPS, 64 clients (CPU ceiling)".into(),
        measured: format!(
            "{:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
            health.rate(),
            health.p50_ms,
            health.p99_ms
        ),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "-".into(),
        verdict: "-".into(),
    });
    rows.push(Row {
        name: "raw SQLite, 1 row per transaction, WAL + synchronous=FULL (disk ceiling)".into(),
        measured: format!("{raw_one:.0} rows/s"),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "-".into(),
        verdict: "-".into(),
    });
    rows.push(Row {
        name: "raw SQLite, 1,000 rows per transaction, WAL + synchronous=FULL".into(),
        measured: format!("{raw_thousand:.0} rows/s"),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "-".into(),
        verdict: "-".into(),
    });
    for (name, l) in [
        ("(a) POST /entries over HTTPS, 64 clients, 1 company", &one),
        (
            "(a) POST /entries over HTTPS, 64 clients, 16 companies",
            &spread,
        ),
    ] {
        let ratio = l.rate() / raw_one;
        rows.push(Row {
            name: name.into(),
            measured: format!(
                "{:.0} entries/s, p50 {:.1} ms, p99 {:.1} ms ({} errors)",
                l.rate(),
                l.p50_ms,
                l.p99_ms,
                l.errors
            ),
            baseline: format!("{raw_one:.0} rows/s (raw, 1 row/tx)"),
            ratio: format!("{ratio:.1}x"),
            target: ">= 10x baseline, >= 5,000/s, p99 < 50 ms".into(),
            verdict: a_verdict(l, raw_one, health.rate()),
        });
    }
    rows.push(Row {
        name: format!(
            "(b) POST /entries/batch, {BATCH_SIZE} entries a request, {BATCH_CLIENTS} clients"
        ),
        measured: format!(
            "{:.0} entries/s, p50 {:.0} ms per batch ({} errors)",
            batch.rate(),
            batch.p50_ms,
            batch.errors
        ),
        baseline: format!("{raw_thousand:.0} rows/s (raw, 1,000 rows/tx)"),
        ratio: format!("{:.2}x", batch.rate() / raw_thousand),
        target: ">= 50,000 entries/s".into(),
        verdict: verdict(batch.rate() >= 50_000.0 && batch.errors == 0).into(),
    });
    rows.push(Row {
        name: format!(
            "trial balance over {} entries (HTTPS GET, 20 runs)",
            args.large_entries
        ),
        measured: format!("p50 {tb_p50:.1} ms, p99 {tb_p99:.1} ms"),
        baseline: format!("populated at {populate_rate:.0} entries/s through the store"),
        ratio: "-".into(),
        target: "< 100 ms".into(),
        verdict: verdict(tb_p99 < 100.0).into(),
    });
    rows.push(Row {
        name: "audit events appended in batches of 1,000, durable (central collection; 500,000 pre-hashed events)".into(),
        measured: format!("{:.0} events/s", audit.batch_rate),
        baseline: format!(
            "{:.0} rows/s (raw SQLite, 1,000 rows of 400 bytes/tx, same disk)",
            audit.raw_same_size
        ),
        ratio: format!("{:.2}x", audit.batch_rate / audit.raw_same_size),
        target: ">= 200,000 events/s".into(),
        verdict: verdict(audit.batch_rate >= 200_000.0).into(),
    });
    rows.push(Row {
        name:
            "audit events recorded one per call, 64 concurrent callers, one company (group commit)"
                .into(),
        measured: format!("{:.0} events/s", audit.single_rate),
        baseline: format!("{raw_one:.0} rows/s (raw, 1 row/tx)"),
        ratio: format!("{:.1}x", audit.single_rate / raw_one),
        target: "-".into(),
        verdict: "-".into(),
    });
    let cost = 1.0 - audit.posting_on / audit.posting_off;
    rows.push(Row {
        name: "cost of audit on posting: 64 concurrent single-entry posts to one company, store level, audit on vs off (alternating, 2 rounds each)".into(),
        measured: format!("{:.0} entries/s with audit, {:.0} without: {:.1}% cost", audit.posting_on, audit.posting_off, cost * 100.0),
        baseline: format!("{:.0} entries/s without audit", audit.posting_off),
        ratio: format!("{:.2}x", audit.posting_on / audit.posting_off),
        target: "< 10% cost".into(),
        verdict: verdict(cost < 0.10).into(),
    });
    let table = render(&rows, &args);
    println!("{table}");
    write_results(&args.out, "bench", None, &table)?;
    eprintln!("bench: results written to {}", args.out.display());
    Ok(())
}

/// Fills one company with `entries` entries, then times its trial balance.
async fn large_company(
    platform: &Arc<Platform>,
    target: &Target,
    entries: u64,
) -> Result<(f64, f64, f64)> {
    let (company, token) = target.signup("Bench Large", "large@bench.example").await?;
    let store = platform.tenant(&company).await?;
    let start = Instant::now();
    let chunk = 5000u64;
    let mut posted = 0u64;
    let mut pending = Vec::new();
    while posted < entries {
        let n = chunk.min(entries - posted);
        let drafts: Vec<EntryDraft> = (posted..posted + n).map(draft).collect();
        let (store, ctx) = (
            store.clone(),
            WriteContext {
                actor: Actor::system("bench"),
                at: platform.now(),
            },
        );
        pending.push(tokio::spawn(async move {
            store.post_entries(drafts, None, ctx).await
        }));
        if pending.len() >= 4 {
            pending.remove(0).await??;
        }
        posted += n;
    }
    for p in pending {
        p.await??;
    }
    let populate_rate = entries as f64 / start.elapsed().as_secs_f64();
    let url = format!(
        "{}/api/v1/companies/{company}/reports/trial-balance?as_of=2026-12-31",
        target.url
    );
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let r = target.client.get(&url).bearer_auth(&token).send().await?;
        anyhow::ensure!(r.status().is_success(), "trial balance failed");
        let body: serde_json::Value = r.json().await?;
        times.push(t.elapsed().as_micros() as u32);
        anyhow::ensure!(
            body["totals"]["USD"] == "0.00",
            "trial balance does not balance"
        );
    }
    times.sort_unstable();
    Ok((
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        populate_rate,
    ))
}

fn render(rows: &[Row], args: &BenchArgs) -> String {
    render_rows(
        &format!(
            "Run: `workbooks bench --seconds {}` on {} cores, {} (release build), embedded SQLCipher store.",
            args.seconds,
            cores(),
            time::OffsetDateTime::now_utc().date()
        ),
        rows,
    )
}

struct AuditBench {
    batch_rate: f64,
    raw_same_size: f64,
    single_rate: f64,
    posting_on: f64,
    posting_off: f64,
}

/// Chained audit events `first..first+count` of one source.
fn chained_events(first: i64, count: i64, prev: &mut String) -> Vec<wb_store::StoredAuditEvent> {
    (first..first + count)
        .map(|seq| {
            let fields = wb_core::audit::AuditFields {
                at: "2026-11-22T10:00:00Z".into(),
                actor: "user:bench".into(),
                auth: "session".into(),
                client: "127.0.0.1".into(),
                request_id: format!("req-{seq}"),
                company_id: "bench".into(),
                action: Action::EntryRead.into(),
                target: format!("entry:{seq}"),
                outcome: "success".into(),
                detail: String::new(),
            };
            let hash = fields.hash(prev, seq);
            let event = wb_store::StoredAuditEvent {
                seq,
                at: fields.at,
                actor: fields.actor,
                auth: fields.auth,
                client: Some(fields.client),
                request_id: Some(fields.request_id),
                company_id: Some(fields.company_id),
                action: fields.action,
                target: Some(fields.target),
                outcome: fields.outcome,
                detail: None,
                prev_hash: prev.clone(),
                hash: hash.clone(),
            };
            *prev = hash;
            event
        })
        .collect()
}

/// Posts single entries from 64 concurrent tasks for `seconds`; entries/s.
async fn store_posting_rate(store: Arc<dyn wb_store::TenantStore>, seconds: u64) -> f64 {
    let l = load(CLIENTS, seconds, 1, move |client, i| {
        let store = store.clone();
        async move {
            let ctx = WriteContext {
                actor: Actor::system("bench"),
                at: time::OffsetDateTime::now_utc(),
            };
            store
                .post_entries(vec![draft(client as u64 * 1_000_000 + i)], None, ctx)
                .await
                .is_ok()
        }
    })
    .await;
    l.rate()
}

async fn audit_bench(dir: &Path, seconds: u64) -> Result<AuditBench> {
    use wb_store::{ControlStore, TenantDirectory};
    let base = dir.join("audit-bench");
    std::fs::create_dir_all(&base)?;
    // Batches into the central collection. Collected events arrive already
    // hashed by their source chain, so the batches are built before the clock
    // starts: 500 batches of 1,000 (about 200 MB), appended one after another.
    let control: Arc<dyn ControlStore> = Arc::new(wb_store::sqlite::SqliteControl::open(
        &base.join("control.db"),
        &wb_crypto::DataKey::generate(),
    )?);
    let mut prev = wb_core::audit::GENESIS.to_string();
    let batches: Vec<_> = (0..500)
        .map(|b| chained_events(b * 1000 + 1, 1000, &mut prev))
        .collect();
    let start = Instant::now();
    for batch in batches {
        control
            .central_append("company:bench", "bench-node", batch)
            .await?;
    }
    let appended = control.central_head("company:bench").await?;
    anyhow::ensure!(appended == 500_000, "every batch was appended");
    let batch_rate = appended as f64 / start.elapsed().as_secs_f64();
    // The same disk writing plain rows of the same size (an audit row is ~400 bytes).
    let payload = "x".repeat(400);
    let raw_dir = base.clone();
    let raw_same_size = tokio::task::spawn_blocking(move || {
        raw_sqlite_rows(&raw_dir, 1000, seconds.min(5), &payload)
    })
    .await??;

    let with_audit = wb_store::sqlite::SqliteTenants::new(base.join("on"))?;
    let without_audit =
        wb_store::sqlite::SqliteTenants::without_audit_for_benchmarks(base.join("off"))?;
    let mut stores = Vec::new();
    for tenants in [&with_audit, &without_audit] {
        let store = tenants
            .create("bench", &wb_crypto::DataKey::generate())
            .await?;
        let ctx = WriteContext {
            actor: Actor::system("bench"),
            at: time::OffsetDateTime::now_utc(),
        };
        store
            .create_account(
                NewAccount::validate("1000", "Cash", "asset", None, None)?,
                ctx.clone(),
            )
            .await?;
        store
            .create_account(
                NewAccount::validate("4000", "Sales", "income", None, None)?,
                ctx,
            )
            .await?;
        stores.push(store);
    }
    // One event per call, as reads are recorded.
    let store = stores[0].clone();
    let single = load(CLIENTS, seconds, 1, move |_, i| {
        let store = store.clone();
        async move {
            let event = wb_store::AuditEvent {
                at: time::OffsetDateTime::now_utc(),
                actor: Actor::system("bench"),
                company_id: Some("bench".into()),
                action: Action::EntryRead,
                target: Some(format!("entry:{i}")),
                outcome: wb_store::Outcome::Success,
                detail: None,
            };
            store.record(event).await.is_ok()
        }
    })
    .await;
    let half = (seconds / 2).max(1);
    let (mut on, mut off) = (0.0, 0.0);
    for _ in 0..2 {
        on += store_posting_rate(stores[0].clone(), half).await;
        off += store_posting_rate(stores[1].clone(), half).await;
    }
    Ok(AuditBench {
        batch_rate,
        raw_same_size,
        single_rate: single.rate(),
        posting_on: on / 2.0,
        posting_off: off / 2.0,
    })
}
