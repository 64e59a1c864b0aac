//! `workbooks bench --postgres`: the HTTP API on PostgreSQL, next to `pgbench`
//! on the same throwaway cluster (TLS only, `fsync = on`) in the same run, plus
//! both ceilings (the server's `/healthz` rate for CPU, raw `pgbench` for the
//! disk), the time to create a company and the memory an idle company costs.
//! Writes its own section of BENCHMARKS.md; the embedded store's stays as is.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wb_crypto::MasterKey;
use wb_pgtest::PgCluster;
use wb_server::{Platform, PostgresConfig, ServerConfig, StorageConfig, SystemClock};

mod measure;
mod pgbench;

use measure::{
    batches, database_of, enable_statements, fresh_database, load_average, report_statements,
    reset_statements, round_trip_us, settle, sql, Batches, Snapshot, Usage,
};
use pgbench::{pgbench, replay, url_parts, PgBench};

use crate::harness::{
    client, companies_open_range, draft, entry_json, load, percentile, rss_mib, tempdir_in, Load,
    Target,
};
use crate::report::{cores, render_rows, verdict, write_results, Row};
use crate::BenchArgs;

/// Concurrency of every load in this section (the figure).
const CLIENTS: usize = 16;
/// Companies of the spread load: one client each.
const SPREAD_COMPANIES: usize = 16;
/// Companies created one after another for the creation time.
const TIMED_CREATIONS: usize = 20;
/// The latency target of the HTTP loads.
const P99_TARGET_MS: f64 = 50.0;
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: BenchArgs) -> Result<()> {
    let load_at_start = load_average();
    // The platform logs what it hides behind a 500 (WORKBOOKS_LOG, default warn).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WORKBOOKS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let scratch = tempdir_in(args.data.as_deref())?;
    let dir = scratch.path().to_path_buf();
    let data = dir.join("data");
    eprintln!("bench: scratch data in {}", dir.display());
    eprintln!("bench: starting a throwaway PostgreSQL cluster (TLS, fsync on)");
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .context("starting PostgreSQL (initdb/pg_ctl from the system)")?,
    );
    if args.pg_statements {
        enable_statements(&cluster).await?;
    }
    let version = sql(&cluster, "postgres", "SHOW server_version").await?;
    let pgbench_url = fresh_database(&cluster, "bench_pgbench").await?;
    sql(
        &cluster,
        &url_parts(&pgbench_url)?.database,
        "CREATE TABLE t (id bigserial primary key, a bigint not null, b text not null);
         ALTER TABLE t OWNER TO workbooks;",
    )
    .await?;

    let rss_start = rss_mib();
    // Memory first, on a fresh heap and a platform of its own, closed
    // afterwards so its companies do not burden the loads.
    let idle = idle_companies(&cluster, &dir.join("data-memory"), &args).await?;
    settle(&cluster).await?;

    let platform = open_platform(&cluster, &data, "bench_control").await?;
    let pg = platform
        .postgres
        .clone()
        .context("the platform runs on PostgreSQL")?;

    eprintln!("bench: time to create a company ({TIMED_CREATIONS}, one after another)");
    let mut creations = Vec::new();
    for n in 0..TIMED_CREATIONS {
        let t = Instant::now();
        platform
            .create_company(&format!("Timed {n}"), None)
            .await
            .map_err(|e| anyhow::anyhow!("creating a company: {e:?}"))?;
        creations.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }
    creations.sort_unstable();

    // Creating databases writes much WAL and wakes autovacuum.
    eprintln!("bench: checkpoint, and wait for the cluster to idle");
    let settled = settle(&cluster).await?;

    let mut server_config = ServerConfig::new(data.clone(), "127.0.0.1:0".parse()?);
    // The bench signs up many companies from one address.
    server_config.signups_per_address_per_hour = u32::MAX;
    let server = wb_server::start(platform.clone(), &server_config, None).await?;
    let target = Arc::new(Target {
        url: server.url(),
        client: client(&data)?,
    });

    eprintln!("bench: PostgreSQL round trip over TLS");
    let rtt_us = round_trip_us(&pgbench_url, cluster.ca_file()).await?;

    eprintln!("bench: /healthz ceiling, {CLIENTS} clients");
    // A checkpoint now rather than one (and its full-page writes) during the phase.
    sql(&cluster, "postgres", "CHECKPOINT").await?;
    let before = Snapshot::take(&cluster).await?;
    let t = target.clone();
    let health = load(CLIENTS, args.seconds, 1, move |_, _| {
        let t = t.clone();
        async move {
            matches!(t.client.get(format!("{}/healthz", t.url)).send().await, Ok(r) if r.status().is_success())
        }
    })
    .await;
    let health_use = Snapshot::take(&cluster).await?.since(&before);

    let pgbench_dir = dir.join("pgbench");
    std::fs::create_dir_all(&pgbench_dir)?;
    let short = (args.seconds / 2).max(2);
    eprintln!("bench: pgbench, 1 client, {short} s (commit latency)");
    let solo = pgbench(&cluster, &pgbench_url, 1, short, &pgbench_dir, "solo").await?;
    eprintln!("bench: pgbench, {CLIENTS} clients (baseline, before the HTTP loads)");
    let bench_before = pgbench(
        &cluster,
        &pgbench_url,
        CLIENTS,
        args.seconds,
        &pgbench_dir,
        "before",
    )
    .await?;

    eprintln!("bench: {CLIENTS} HTTPS clients, one company");
    let (company, token) = target
        .signup("Bench PG One", "pg-one@bench.example")
        .await?;
    let one_db = database_of(&pg, &company).await?;
    reset_statements(&cluster, args.pg_statements).await?;
    // A checkpoint now rather than one (and its full-page writes) during the phase.
    sql(&cluster, "postgres", "CHECKPOINT").await?;
    let before = Snapshot::take(&cluster).await?;
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
    let one_use = Snapshot::take(&cluster).await?.since(&before);
    let one_batches = batches(&cluster, &[one_db]).await?;
    report_statements(&cluster, args.pg_statements, "one company", &one).await?;

    eprintln!("bench: {CLIENTS} HTTPS clients over {SPREAD_COMPANIES} companies");
    let mut spread_targets = Vec::new();
    let mut spread_dbs = Vec::new();
    for n in 0..SPREAD_COMPANIES {
        let (company, token) = target
            .signup(
                &format!("Bench PG Spread {n}"),
                &format!("pg-spread{n}@bench.example"),
            )
            .await?;
        spread_dbs.push(database_of(&pg, &company).await?);
        spread_targets.push((company, token));
    }
    let spread_targets = Arc::new(spread_targets);
    reset_statements(&cluster, args.pg_statements).await?;
    // A checkpoint now rather than one (and its full-page writes) during the phase.
    sql(&cluster, "postgres", "CHECKPOINT").await?;
    let before = Snapshot::take(&cluster).await?;
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
    let spread_use = Snapshot::take(&cluster).await?.since(&before);
    let spread_batches = batches(&cluster, &spread_dbs).await?;
    report_statements(&cluster, args.pg_statements, "spread", &spread).await?;

    // The same single-entry posts to one company without HTTP: what the
    // writer and the database do alone, on the same runtime.
    eprintln!("bench: {CLIENTS} tasks posting through the store, one company (no HTTP)");
    let (company, _) = target
        .signup("Bench PG Store", "pg-store@bench.example")
        .await?;
    let direct_db = database_of(&pg, &company).await?;
    let store = platform
        .tenant(&company)
        .await
        .map_err(|e| anyhow::anyhow!("opening a company: {e:?}"))?;
    reset_statements(&cluster, args.pg_statements).await?;
    // A checkpoint now rather than one (and its full-page writes) during the phase.
    sql(&cluster, "postgres", "CHECKPOINT").await?;
    let before = Snapshot::take(&cluster).await?;
    let direct = load(CLIENTS, args.seconds, 1, move |client, i| {
        let store = store.clone();
        async move {
            let ctx = wb_store::WriteContext {
                actor: wb_store::Actor::system("bench"),
                at: time::OffsetDateTime::now_utc(),
            };
            store
                .post_entries(vec![draft(client as u64 * 1_000_000 + i)], None, ctx)
                .await
                .is_ok()
        }
    })
    .await;
    let direct_use = Snapshot::take(&cluster).await?.since(&before);
    let direct_batches = batches(&cluster, &[direct_db]).await?;
    report_statements(&cluster, args.pg_statements, "store level", &direct).await?;

    eprintln!("bench: pgbench, {CLIENTS} clients (baseline, after the HTTP loads)");
    let bench_after = pgbench(
        &cluster,
        &pgbench_url,
        CLIENTS,
        args.seconds,
        &pgbench_dir,
        "after",
    )
    .await?;
    server.shutdown().await?;

    eprintln!("bench: the writer's SQL replayed by pgbench (diagnosis)");
    settle(&cluster).await?;
    let replays = replay(&cluster, &platform, &pgbench_url, short, &pgbench_dir).await?;

    // ------------------------------------------------------------ the table
    let baseline = (bench_before.tps + bench_after.tps) / 2.0;
    let mut rows = vec![Row {
        name: format!("GET /healthz over HTTPS, {CLIENTS} clients (CPU ceiling)"),
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
    }];
    rows.push(Row {
        name: format!(
            "pgbench, 1 INSERT per transaction, {CLIENTS} clients, TLS, prepared (disk ceiling; baseline)"
        ),
        measured: format!(
            "{baseline:.0} tps (mean of {:.0} before and {:.0} after the HTTP loads); latency avg {:.1} / {:.1} ms, p99 {:.1} / {:.1} ms",
            bench_before.tps,
            bench_after.tps,
            bench_before.latency_avg_ms,
            bench_after.latency_avg_ms,
            bench_before.p99_ms,
            bench_after.p99_ms
        ),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "-".into(),
        verdict: "-".into(),
    });
    rows.push(Row {
        name: "pgbench, 1 INSERT per transaction, 1 client (one durable commit at a time)".into(),
        measured: format!(
            "{:.0} tps, latency avg {:.2} ms, p99 {:.2} ms",
            solo.tps, solo.latency_avg_ms, solo.p99_ms
        ),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "-".into(),
        verdict: "-".into(),
    });
    for (name, l) in [
        (
            format!("POST /entries over HTTPS, {CLIENTS} clients, 1 company"),
            &one,
        ),
        (
            format!("POST /entries over HTTPS, {CLIENTS} clients, {SPREAD_COMPANIES} companies (1 client each)"),
            &spread,
        ),
    ] {
        rows.push(Row {
            name,
            measured: format!(
                "{:.0} entries/s, p50 {:.1} ms, p99 {:.1} ms ({} errors)",
                l.rate(),
                l.p50_ms,
                l.p99_ms,
                l.errors
            ),
            baseline: format!("{baseline:.0} tps (pgbench, {CLIENTS} clients)"),
            ratio: format!("{:.2}x", l.rate() / baseline),
            target: format!(">= baseline, p99 < {P99_TARGET_MS:.0} ms"),
            verdict: http_verdict(l, baseline),
        });
    }
    let median_create = percentile(&creations, 0.5) / 1000.0;
    let max_create = creations.last().map_or(0.0, |&us| f64::from(us) / 1e6);
    rows.push(Row {
        name: format!(
            "create a company (role + database + schema + placement), {TIMED_CREATIONS} one after another"
        ),
        measured: format!("median {median_create:.2} s, max {max_create:.2} s"),
        baseline: format!(
            "{:.2} s a company while creating {} with 8 at a time",
            idle.creating_s / idle.count.max(1) as f64,
            args.pg_companies
        ),
        ratio: "-".into(),
        target: "< 1 s".into(),
        verdict: verdict(max_create < 1.0).into(),
    });
    let added = (idle.count - idle.half).max(1) as f64;
    let per_company_kib = (idle.rss_idle - idle.rss_half) * 1024.0 / added;
    rows.push(Row {
        name: format!(
            "memory per idle company (companies open, each written once, server stopped, then {} s idle: {} vs {})",
            (IDLE_TIMEOUT + Duration::from_secs(3)).as_secs(),
            idle.half,
            idle.count,
        ),
        measured: format!(
            "{per_company_kib:.0} KiB a company: {:.1} MiB idle with {}, {:.1} MiB idle with {} ({:.0} MiB right after the writes); PostgreSQL connections held when idle: {} (PostgreSQL sees {} client backends), {} right after the writes",
            idle.rss_half, idle.half, idle.rss_idle, idle.open, idle.rss_busy,
            idle.connections_idle, idle.backends_idle, idle.connections_busy
        ),
        baseline: format!(
            "{:.0} MiB with the platform open, no company ({rss_start:.0} MiB at start)",
            idle.rss_platform
        ),
        ratio: "-".into(),
        target: "-".into(),
        verdict: "-".into(),
    });
    rows.push(Row {
        name: format!(
            "the same {} companies with the server running and idle (background jobs only, {} s)",
            idle.open, args.seconds
        ),
        measured: format!(
            "PostgreSQL {:.2} cores, this process {:.2} cores; {:.0} new PostgreSQL sessions/s; {} connections held; {:.0} MiB resident",
            idle.jobs.postgres_cores, idle.jobs.own_cores, idle.jobs_sessions_per_s, idle.jobs_connections, idle.rss_jobs
        ),
        baseline: format!(
            "{} connections held with the server stopped; budget {}",
            idle.connections_idle, idle.budget
        ),
        ratio: "-".into(),
        target: "-".into(),
        verdict: "-".into(),
    });

    let diagnostics = vec![
        pgbench_diagnostic("pgbench, 1 client", &solo),
        pgbench_diagnostic(
            &format!("pgbench, {CLIENTS} clients (before)"),
            &bench_before,
        ),
        pgbench_diagnostic(&format!("pgbench, {CLIENTS} clients (after)"), &bench_after),
        health_diagnostic(
            &format!("GET /healthz, {CLIENTS} clients"),
            &health,
            &health_use,
        ),
        idle_diagnostic(
            &format!("server idle, {} companies open", idle.open),
            &idle.jobs,
        ),
        writer_diagnostic(
            &format!("POST /entries, {CLIENTS} clients, 1 company"),
            &one,
            &one_use,
            &one_batches,
        ),
        writer_diagnostic(
            &format!("POST /entries, {CLIENTS} clients, {SPREAD_COMPANIES} companies"),
            &spread,
            &spread_use,
            &spread_batches,
        ),
        writer_diagnostic(
            &format!("store level, no HTTP: {CLIENTS} tasks posting single entries, 1 company"),
            &direct,
            &direct_use,
            &direct_batches,
        ),
    ];

    let mut table = render_rows(
        &format!(
            "Run: `workbooks bench --postgres --seconds {}` on {} cores, {} (release build), PostgreSQL {version} (throwaway local cluster: TLS only, scram-sha-256, fsync on, 128 MB shared buffers; default synchronous_commit and commit_delay). Load average (1 min) before the run {load_at_start}, after it {}.",
            args.seconds,
            cores(),
            time::OffsetDateTime::now_utc().date(),
            load_average()
        ),
        &rows,
    );
    table.push_str(&format!(
        "\nWhere the time goes (same run). Before the loads: a CHECKPOINT and {settled:.0} s until the cluster idled (creating the companies above wrote much WAL and woke autovacuum), and a CHECKPOINT before every timed phase, so none falls inside one. One PostgreSQL round trip over TLS (`SELECT 1`, prepared, one connection, before the loads): median {rtt_us:.0} µs. \
         CPU is in cores (of {}): this process (HTTPS server, its clients, the writers; pgbench in its phases) / the cluster's processes / everything else on the machine; \
         transactions are counted from `xmin` of the entries written (one per writer batch), WAL from `pg_current_wal_lsn()`.\n\n",
        cores()
    ));
    table.push_str("| phase | rate | CPU cores: own / PostgreSQL / other | transactions | entries per transaction (mean / median / max) | time per transaction | WAL per entry (row) |\n|---|---|---|---|---|---|---|\n");
    for d in &diagnostics {
        table.push_str(&format!("| {} |\n", d.join(" | ")));
    }
    table.push_str(&format!(
        "\nThe writer's SQL for posting entries (the same statements: heads locked, UNNEST inserts of entries, postings joined to accounts, day-balance upsert, journal and audit records, heads update, COMMIT), replayed by pgbench with the server stopped, {short} s each, on companies created for it:\n\n"
    ));
    table.push_str("| replay | companies x clients | entries per transaction | round trips per transaction | entries/s | latency avg (p99) per transaction | CPU cores: pgbench / PostgreSQL / other | WAL per entry |\n|---|---|---|---|---|---|---|---|\n");
    for r in &replays {
        let per_entry_wal = r.result.usage.wal_bytes as f64
            / (r.result.tps * r.result.usage.seconds * r.entries as f64).max(1.0);
        table.push_str(&format!(
            "| {} | {} x 1 | {} | {} | {:.0} | {:.2} ms ({:.2} ms) | {} | {:.0} B |\n",
            r.name,
            r.companies,
            r.entries,
            r.round_trips,
            r.result.tps * r.entries as f64,
            r.result.latency_avg_ms,
            r.result.p99_ms,
            r.result.usage.split(),
            per_entry_wal
        ));
    }
    println!("{table}");
    if args.pg_statements {
        eprintln!("bench: --pg-statements adds its own overhead; results not written");
    } else {
        write_results(
            &args.out,
            "bench-postgres",
            Some("## Latest run on PostgreSQL"),
            &table,
        )?;
        eprintln!("bench: results written to {}", args.out.display());
    }
    drop(platform);
    drop(cluster);
    Ok(())
}

async fn open_platform(
    cluster: &Arc<PgCluster>,
    data: &Path,
    control: &'static str,
) -> Result<Arc<Platform>> {
    let control_url = fresh_database(cluster, control).await?;
    let mut config = PostgresConfig::new(control_url, Some(cluster.ca_file().to_path_buf()));
    config.max_connections = 64;
    config.connections_per_company = 4;
    config.idle_timeout = IDLE_TIMEOUT;
    Ok(Arc::new(
        Platform::open(
            data,
            MasterKey::generate(),
            Arc::new(SystemClock),
            time::Duration::hours(12),
            &StorageConfig::Postgres(config),
        )
        .await?,
    ))
}

struct IdleCompanies {
    count: u64,
    half: u64,
    open: usize,
    creating_s: f64,
    rss_platform: f64,
    rss_half: f64,
    rss_busy: f64,
    rss_idle: f64,
    rss_jobs: f64,
    connections_busy: usize,
    connections_idle: usize,
    backends_idle: String,
    budget: usize,
    jobs: Usage,
    jobs_sessions_per_s: f64,
    jobs_connections: usize,
}

/// Opens `--pg-companies` companies (each written once) on a platform of
/// its own and measures the resident set once they idle; then starts a
/// server on them and measures what its background jobs cost while no
/// request arrives. The platform is closed before returning.
async fn idle_companies(
    cluster: &Arc<PgCluster>,
    data: &Path,
    args: &BenchArgs,
) -> Result<IdleCompanies> {
    let platform = open_platform(cluster, data, "bench_memory_control").await?;
    let pg = platform
        .postgres
        .clone()
        .context("the platform runs on PostgreSQL")?;
    // Opening computed an Argon2 hash (19 MiB); let the allocator settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_platform = rss_mib();
    // An idle company's cost is the growth of the settled (idle) resident
    // set from half the companies to all of them, so what the process holds
    // anyway (the allocator's retained pages, the runtime) cancels out.
    let count = args.pg_companies;
    let half = count / 2;
    eprintln!("bench: memory of idle companies ({half}, then {count})");
    let t = Instant::now();
    companies_open_range(&platform, 0..half).await?;
    let mut creating_s = t.elapsed().as_secs_f64();
    // Pools close connections idle for IDLE_TIMEOUT; the reaper runs every second.
    tokio::time::sleep(IDLE_TIMEOUT + Duration::from_secs(3)).await;
    let rss_half = rss_mib();
    let t = Instant::now();
    let rss_busy = companies_open_range(&platform, half..count).await?;
    creating_s += t.elapsed().as_secs_f64();
    let connections_busy = pg.budget().open();
    tokio::time::sleep(IDLE_TIMEOUT + Duration::from_secs(3)).await;
    let rss_idle = rss_mib();
    let connections_idle = pg.budget().open();
    let backends_idle = sql(
        cluster,
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename <> 'postgres'",
    )
    .await?;
    let open = platform.tenants.open_count();

    // The same companies with the server running: its background jobs visit
    // every open company (the shipper reads each one's journal every 200 ms).
    eprintln!("bench: the server idle with {open} companies open");
    settle(cluster).await?;
    let server_config = ServerConfig::new(data.to_path_buf(), "127.0.0.1:0".parse()?);
    let server = wb_server::start(platform.clone(), &server_config, None).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sessions = || async {
        sql(
            cluster,
            "postgres",
            "SELECT sum(sessions) FROM pg_stat_database",
        )
        .await
        .map(|n| n.trim().parse::<f64>().unwrap_or(0.0))
    };
    let sessions_before = sessions().await?;
    // A checkpoint now rather than one (and its full-page writes) during the phase.
    sql(cluster, "postgres", "CHECKPOINT").await?;
    let before = Snapshot::take(cluster).await?;
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let jobs = Snapshot::take(cluster).await?.since(&before);
    let jobs_sessions_per_s = (sessions().await? - sessions_before) / jobs.seconds;
    let jobs_connections = pg.budget().open();
    let rss_jobs = rss_mib();
    server.shutdown().await?;
    Ok(IdleCompanies {
        count,
        half,
        open,
        creating_s,
        rss_platform,
        rss_half,
        rss_busy,
        rss_idle,
        rss_jobs,
        connections_busy,
        connections_idle,
        backends_idle,
        budget: pg.budget().total(),
        jobs,
        jobs_sessions_per_s,
        jobs_connections,
    })
}

fn http_verdict(l: &Load, baseline: f64) -> String {
    let rate = l.rate() >= baseline && l.errors == 0;
    format!(
        "rate {}; p99 {}",
        verdict(rate),
        verdict(l.p99_ms < P99_TARGET_MS)
    )
}

fn pgbench_diagnostic(name: &str, b: &PgBench) -> [String; 7] {
    let transactions = b.tps * b.usage.seconds;
    [
        name.to_string(),
        format!("{:.0} tps", b.tps),
        b.usage.split(),
        format!("{transactions:.0}"),
        "1".into(),
        format!("{:.2} ms (latency avg)", b.latency_avg_ms),
        format!(
            "{:.0} B per row",
            b.usage.wal_bytes as f64 / transactions.max(1.0)
        ),
    ]
}

fn health_diagnostic(name: &str, l: &Load, usage: &Usage) -> [String; 7] {
    [
        name.to_string(),
        format!("{:.0} req/s", l.rate()),
        usage.split(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
    ]
}

fn idle_diagnostic(name: &str, usage: &Usage) -> [String; 7] {
    [
        name.to_string(),
        "-".into(),
        usage.split(),
        "-".into(),
        "-".into(),
        "-".into(),
        format!("{:.0} B/s", usage.wal_bytes as f64 / usage.seconds),
    ]
}

fn writer_diagnostic(name: &str, l: &Load, usage: &Usage, b: &Batches) -> [String; 7] {
    // Each company's writer commits its batches one after another.
    let writers = b.databases.max(1) as f64;
    [
        name.to_string(),
        format!("{:.0} entries/s", l.rate()),
        usage.split(),
        format!(
            "{} ({:.0}/s)",
            b.transactions,
            b.transactions as f64 / usage.seconds
        ),
        format!(
            "{:.1} / {:.0} / {}",
            b.rows as f64 / b.transactions.max(1) as f64,
            b.median,
            b.max
        ),
        format!(
            "{:.2} ms per batch per writer",
            usage.seconds * 1000.0 * writers / b.transactions.max(1) as f64
        ),
        format!(
            "{:.0} B per entry",
            usage.wal_bytes as f64 / b.rows.max(1) as f64
        ),
    ]
}
