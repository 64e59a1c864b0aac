//! `workbooks bench --postgres`: the HTTP API on PostgreSQL, next to `pgbench`
//! on the same throwaway cluster (TLS only, `fsync = on`) in the same run, plus
//! both ceilings (the server's `/healthz` rate for CPU, raw `pgbench` for the
//! disk), the time to create a company and the memory an idle company costs.
//! Writes its own section of BENCHMARKS.md; the embedded store's stays as is.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wb_crypto::MasterKey;
use wb_pgtest::PgCluster;
use wb_server::{Platform, PostgresConfig, ServerConfig, StorageConfig, SystemClock};
use wb_store::postgres::PgEndpoint;

use crate::bench::{
    client, companies_open_range, cores, draft, entry_json, load, percentile, render_rows, rss_mib,
    tempdir_in, verdict, write_results, Load, Row, Target,
};
use crate::cli::BenchArgs;

/// Concurrency of every load in this section (the issue's figure).
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

// ---------------------------------------------------------------- pgbench

struct PgBench {
    tps: f64,
    latency_avg_ms: f64,
    p99_ms: f64,
    usage: Usage,
}

/// `pgbench` with a one-INSERT script against `url`'s database (table `t`).
async fn pgbench(
    cluster: &Arc<PgCluster>,
    url: &str,
    clients: usize,
    seconds: u64,
    dir: &Path,
    tag: &str,
) -> Result<PgBench> {
    let parts = url_parts(url)?;
    let script = dir.join("insert.sql");
    std::fs::write(
        &script,
        "INSERT INTO t (a, b) VALUES (:client_id, 'sale');\n",
    )?;
    pgbench_run(
        cluster,
        &parts,
        &[(parts.database.clone(), script)],
        clients,
        seconds,
        dir,
        tag,
    )
    .await
}

/// One `pgbench` process per (database, script), all at once, `clients`
/// each, as the service role over TLS (`verify-full` against the cluster's
/// CA). Transactions per second are summed; latency is averaged over the
/// processes, and the p99 comes from their per-transaction logs.
async fn pgbench_run(
    cluster: &Arc<PgCluster>,
    service: &UrlParts,
    targets: &[(String, PathBuf)],
    clients: usize,
    seconds: u64,
    dir: &Path,
    tag: &str,
) -> Result<PgBench> {
    let mut children = Vec::new();
    // A checkpoint now rather than one (and its full-page writes) during the phase.
    sql(cluster, "postgres", "CHECKPOINT").await?;
    let before = Snapshot::take(cluster).await?;
    for (n, (database, script)) in targets.iter().enumerate() {
        let mut cmd = Command::new(find_pgbench());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PGHOST", &service.host)
            .env("PGPORT", &service.port)
            .env("PGUSER", &service.user)
            .env("PGPASSWORD", &service.password)
            .env("PGDATABASE", database)
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", cluster.ca_file())
            .args(["-n", "-M", "prepared", "--log"])
            .arg(format!("-c{clients}"))
            .arg(format!("-j{}", clients.min(2)))
            .arg(format!("-T{seconds}"))
            .arg(format!(
                "--log-prefix={}",
                dir.join(format!("pgbench-{tag}-{n}")).display()
            ))
            .arg("-f")
            .arg(script)
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(cmd.spawn().context("starting pgbench")?);
    }
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output())
            .collect::<std::io::Result<Vec<_>>>()
    })
    .await?
    .context("running pgbench")?;
    let usage = Snapshot::take(cluster).await?.since(&before);
    let (mut tps, mut latency_sum) = (0.0, 0.0);
    for output in &outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let number_after = |label: &str| -> Option<f64> {
            stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        };
        anyhow::ensure!(
            output.status.success()
                && number_after("number of failed transactions: ").unwrap_or(0.0) == 0.0,
            "pgbench failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        tps += number_after("tps = ").context("pgbench printed no tps")?;
        latency_sum += number_after("latency average = ").unwrap_or(0.0);
    }
    // Per-transaction log lines: client_id transaction_no time_us script_no epoch epoch_us.
    let mut latencies: Vec<u32> = Vec::new();
    let name = format!("pgbench-{tag}-");
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&name) {
            let text = std::fs::read_to_string(entry.path())?;
            latencies.extend(
                text.lines()
                    .filter_map(|l| l.split_whitespace().nth(2))
                    .filter_map(|us| us.parse::<u32>().ok()),
            );
        }
    }
    latencies.sort_unstable();
    Ok(PgBench {
        tps,
        latency_avg_ms: latency_sum / outputs.len().max(1) as f64,
        p99_ms: percentile(&latencies, 0.99),
        usage,
    })
}

/// `pgbench` on `PATH`, else next to the highest installed server version.
fn find_pgbench() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("pgbench"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| {
            let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e
                        .file_name()
                        .to_str()?
                        .split('.')
                        .map(|p| p.parse().ok())
                        .collect::<Option<Vec<u32>>>()?;
                    let program = e.path().join("bin/pgbench");
                    program.is_file().then_some((version, program))
                })
                .collect();
            found.sort();
            found.pop().map(|(_, p)| p)
        })
        .unwrap_or_else(|| PathBuf::from("pgbench"))
}

struct Replay {
    name: &'static str,
    companies: usize,
    entries: usize,
    round_trips: usize,
    result: PgBench,
}

/// The writer's statements for posting, driven by pgbench against real
/// company databases (schema, triggers and foreign keys as created by the
/// platform), to separate the cost of the SQL from that of the HTTPS path:
/// one statement per round trip, as the writer sends them (writes
/// pipelined), and with COMMIT pipelined too.
async fn replay(
    cluster: &Arc<PgCluster>,
    platform: &Arc<Platform>,
    service_url: &str,
    seconds: u64,
    dir: &Path,
) -> Result<Vec<Replay>> {
    use wb_core::NewAccount;
    use wb_store::{Actor, WriteContext};
    let service = url_parts(service_url)?;
    let pg = platform
        .postgres
        .clone()
        .context("the platform runs on PostgreSQL")?;
    let mut companies = Vec::new();
    for n in 0..SPREAD_COMPANIES {
        let company = platform
            .create_company(&format!("Replay {n}"), None)
            .await
            .map_err(|e| anyhow::anyhow!("creating a company: {e:?}"))?;
        let store = platform
            .tenant(&company.id)
            .await
            .map_err(|e| anyhow::anyhow!("opening a company: {e:?}"))?;
        for (code, name, kind) in [("1000", "Cash", "asset"), ("4000", "Sales", "income")] {
            let ctx = WriteContext {
                actor: Actor::system("bench"),
                at: platform.now(),
            };
            store
                .create_account(NewAccount::validate(code, name, kind, None, None)?, ctx)
                .await?;
        }
        let database = database_of(&pg, &company.id).await?;
        sql(
            cluster,
            &database,
            &format!(
                "GRANT CONNECT ON DATABASE {database} TO workbooks;
                 GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO workbooks;"
            ),
        )
        .await?;
        let ids = sql(
            cluster,
            &database,
            "SELECT id FROM accounts WHERE code IN ('1000', '4000') ORDER BY code",
        )
        .await?;
        let ids: Vec<i64> = ids.lines().filter_map(|l| l.trim().parse().ok()).collect();
        anyhow::ensure!(ids.len() == 2, "two accounts");
        companies.push((database, (ids[0], ids[1])));
    }
    use Trips::{All, Each, Writer};
    let variants: [(&'static str, usize, usize, Trips); 7] = [
        (
            "one statement per round trip (the writer before pipelining), one company each",
            SPREAD_COMPANIES,
            1,
            Each,
        ),
        (
            "as the writer sends them (writes pipelined), one company each",
            SPREAD_COMPANIES,
            1,
            Writer,
        ),
        (
            "COMMIT pipelined with the writes too, one company each",
            SPREAD_COMPANIES,
            1,
            All,
        ),
        (
            "one statement per round trip, batches of 8, one company",
            1,
            8,
            Each,
        ),
        (
            "as the writer sends them, batches of 8, one company",
            1,
            8,
            Writer,
        ),
        (
            "COMMIT pipelined with the writes too, batches of 8, one company",
            1,
            8,
            All,
        ),
        (
            "as the writer sends them, one company each, postings without their 2 foreign keys",
            SPREAD_COMPANIES,
            1,
            Writer,
        ),
    ];
    let mut out = Vec::new();
    for (v, (name, count, entries, trips)) in variants.into_iter().enumerate() {
        if name.contains("without") {
            for (database, _) in &companies {
                sql(
                    cluster,
                    database,
                    "ALTER TABLE postings DROP CONSTRAINT postings_entry_id_fkey,
                                      DROP CONSTRAINT postings_account_id_fkey",
                )
                .await?;
            }
        }
        let mut targets = Vec::new();
        for (i, (database, accounts)) in companies.iter().take(count).enumerate() {
            let path = dir.join(format!("replay-{v}-{i}.sql"));
            std::fs::write(&path, writer_script(entries, trips, *accounts))?;
            targets.push((database.clone(), path));
        }
        let result = pgbench_run(
            cluster,
            &service,
            &targets,
            1,
            seconds,
            dir,
            &format!("replay{v}"),
        )
        .await?;
        out.push(Replay {
            name,
            companies: count,
            entries,
            round_trips: trips.count(),
            result,
        });
    }
    Ok(out)
}

/// How a replayed batch reaches the server.
#[derive(Clone, Copy)]
enum Trips {
    /// BEGIN, the heads lock, each of the 6 writes and COMMIT apart: 9.
    Each,
    /// As the writer does now: BEGIN, the heads lock, the writes pipelined, COMMIT: 4.
    Writer,
    /// BEGIN, the heads lock, then the writes and COMMIT pipelined: 3.
    All,
}

impl Trips {
    fn count(self) -> usize {
        match self {
            Trips::Each => 9,
            Trips::Writer => 4,
            Trips::All => 3,
        }
    }
}

/// A pgbench script doing what the writer does for a batch of `entries`
/// single entries (two postings each): BEGIN; lock heads; one statement per
/// table; update heads; COMMIT, in `trips` round trips.
fn writer_script(entries: usize, trips: Trips, (cash, sales): (i64, i64)) -> String {
    let pipelined = !matches!(trips, Trips::Each);
    // pgbench reads any `:name` as a variable, even inside quotes: the
    // texts keep their real lengths with `.` and `=` where `:` would be.
    const AT: &str = "2026-11-22T12.00.00.123456Z";
    const DAY: &str = "2026-06-30";
    let hash = "9f".repeat(32);
    let payload = format!(
        r#"{{"entries":[{{"id":1,"date":"{DAY}","description":"Sale 1","reference":null,"reverses":null,"created_at":"{AT}","created_by":"user-0b6f0a1c-5d7e-4c1a-9a53-1f0e2d3c4b5a","postings":[{{"account":"1000","amount":"1.00","currency":"USD"}},{{"account":"4000","amount":"-1.00","currency":"USD"}}]}}]}}"#
    )
    .replace(':', "=");
    let n = entries;
    let list = |value: &str, times: usize| vec![value.to_string(); times].join(", ");
    let offsets = |base: &str, times: usize| {
        (0..times)
            .map(|k| format!("CAST(:{base} AS bigint) + {}", k + 1))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let entry_ids = (0..n)
        .map(|k| format!("CAST(:eid AS bigint) + {k}"))
        .collect::<Vec<_>>();
    let posting_ids = entry_ids
        .iter()
        .flat_map(|id| [id.clone(), id.clone()])
        .collect::<Vec<_>>()
        .join(", ");
    let amounts = (0..n)
        .flat_map(|k| [100 + k as i64, -(100 + k as i64)])
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let total: i64 = (0..n).map(|k| 100 + k as i64).sum();
    let mut script = String::from("BEGIN;\n");
    script.push_str("SELECT journal_seq AS js, journal_hash AS jh, audit_seq AS aus, audit_hash AS ah, next_entry_id AS eid, next_account_id AS aid, moved AS mv FROM heads WHERE id = 1 FOR UPDATE \\gset\n");
    if pipelined {
        script.push_str("\\startpipeline\n");
    }
    script.push_str(&format!(
        "INSERT INTO entries (id, date, description, reference, reverses, created_at, created_by) SELECT * FROM UNNEST(ARRAY[{}]::bigint[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::bigint[], ARRAY[{}]::text[], ARRAY[{}]::text[]);\n",
        entry_ids.join(", "),
        list(&format!("'{DAY}'"), n),
        list("'Sale 1'", n),
        list("NULL", n),
        list("NULL", n),
        list(&format!("'{AT}'"), n),
        list("'user-0b6f0a1c-5d7e-4c1a-9a53-1f0e2d3c4b5a'", n),
    ));
    script.push_str(&format!(
        "INSERT INTO postings (entry_id, line, account_id, currency, amount, date) SELECT u.entry_id, u.line, a.id, u.currency, u.amount, u.date FROM UNNEST(ARRAY[{posting_ids}]::bigint[], ARRAY[{}]::int[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{amounts}]::bigint[], ARRAY[{}]::text[]) AS u(entry_id, line, code, currency, amount, date) JOIN accounts a ON a.code = u.code;\n",
        list("0, 1", n),
        list("'1000', '4000'", n),
        list("'USD'", 2 * n),
        list(&format!("'{DAY}'"), 2 * n),
    ));
    script.push_str(&format!(
        "INSERT INTO day_balances (account_id, currency, day, amount) SELECT * FROM UNNEST(ARRAY[{cash}, {sales}]::bigint[], ARRAY['USD', 'USD']::text[], ARRAY['{DAY}', '{DAY}']::text[], ARRAY[{total}, -{total}]::bigint[]) ON CONFLICT (account_id, currency, day) DO UPDATE SET amount = day_balances.amount + EXCLUDED.amount;\n"
    ));
    script.push_str(&format!(
        "INSERT INTO change_journal (seq, at, kind, payload, prev_hash, hash) SELECT * FROM UNNEST(ARRAY[{}]::bigint[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[]);\n",
        offsets("js", n),
        list(&format!("'{AT}'"), n),
        list("'entries_posted'", n),
        list(&format!("'{payload}'"), n),
        list(&format!("'{hash}'"), n),
        list(&format!("'{hash}'"), n),
    ));
    script.push_str(&format!(
        "INSERT INTO audit_events (seq, at, actor, auth, client, request_id, action, target, outcome, detail, prev_hash, hash) SELECT * FROM UNNEST(ARRAY[{}]::bigint[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[], ARRAY[{}]::text[]);\n",
        offsets("aus", n),
        list(&format!("'{AT}'"), n),
        list("'user-0b6f0a1c-5d7e-4c1a-9a53-1f0e2d3c4b5a'", n),
        list("'session'", n),
        list("'127.0.0.1'", n),
        list("'5c1e8f2a-7b3d-4e6f-8a9b-0c1d2e3f4a5b'", n),
        list("'entry.post'", n),
        list("'entry-1'", n),
        list("'success'", n),
        list("NULL", n),
        list(&format!("'{hash}'"), n),
        list(&format!("'{hash}'"), n),
    ));
    script.push_str(&format!(
        "UPDATE heads SET journal_seq = CAST(:js AS bigint) + {n}, journal_hash = '{hash}', audit_seq = CAST(:aus AS bigint) + {n}, audit_hash = '{hash}', next_entry_id = CAST(:eid AS bigint) + {n}, next_account_id = next_account_id WHERE id = 1;\n"
    ));
    match trips {
        Trips::Each => script.push_str("COMMIT;\n"),
        Trips::Writer => script.push_str("\\endpipeline\nCOMMIT;\n"),
        Trips::All => script.push_str("COMMIT;\n\\endpipeline\n"),
    }
    script
}

struct UrlParts {
    user: String,
    password: String,
    host: String,
    port: String,
    database: String,
}

/// `postgres://user:password@host:port/database` (as wb-pgtest writes them).
fn url_parts(url: &str) -> Result<UrlParts> {
    let rest = url
        .strip_prefix("postgres://")
        .context("a postgres:// URL")?;
    let (userinfo, rest) = rest.rsplit_once('@').context("user and password")?;
    let (user, password) = userinfo.split_once(':').context("a password")?;
    let (hostport, database) = rest.split_once('/').context("a database")?;
    let (host, port) = hostport.rsplit_once(':').context("a port")?;
    let database = database.split('?').next().unwrap_or(database);
    Ok(UrlParts {
        user: user.into(),
        password: password.into(),
        host: host.into(),
        port: port.into(),
        database: database.into(),
    })
}

// ------------------------------------------------------------ measurements

/// Loads pg_stat_statements (a restart of the throwaway cluster).
async fn enable_statements(cluster: &Arc<PgCluster>) -> Result<()> {
    sql(
        cluster,
        "postgres",
        "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
    )
    .await?;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.stop();
        c.restart();
    })
    .await?;
    sql(cluster, "postgres", "CREATE EXTENSION pg_stat_statements").await?;
    Ok(())
}

async fn reset_statements(cluster: &Arc<PgCluster>, enabled: bool) -> Result<()> {
    if enabled {
        sql(cluster, "postgres", "SELECT pg_stat_statements_reset()").await?;
    }
    Ok(())
}

/// Server time per statement since the last reset, company databases summed.
async fn report_statements(
    cluster: &Arc<PgCluster>,
    enabled: bool,
    phase: &str,
    l: &Load,
) -> Result<()> {
    if !enabled {
        return Ok(());
    }
    let out = sql(
        cluster,
        "postgres",
        r"SELECT sum(calls),
                 round(sum(total_exec_time)::numeric, 0),
                 round((1000 * sum(total_exec_time) / sum(calls))::numeric, 0),
                 CASE WHEN d.datname LIKE 'wb\_%' THEN 'company' ELSE d.datname END,
                 left(regexp_replace(query, '\s+', ' ', 'g'), 90)
          FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
          WHERE query NOT LIKE '%pg_stat_statements%'
          GROUP BY 4, 5 ORDER BY 2 DESC LIMIT 25",
    )
    .await?;
    let entries = l.ops.max(1) as f64;
    println!(
        "\nServer time per statement, {phase} ({} entries in {:.1} s):\n",
        l.ops, l.seconds
    );
    println!("| calls | calls per entry | total ms | µs per call | µs per entry | database | statement |\n|---|---|---|---|---|---|---|");
    let mut total = 0.0;
    for line in out.lines() {
        let f: Vec<&str> = line.splitn(5, '|').collect();
        if f.len() < 5 {
            continue;
        }
        let calls: f64 = f[0].parse().unwrap_or(0.0);
        let ms: f64 = f[1].parse().unwrap_or(0.0);
        total += ms;
        println!(
            "| {} | {:.2} | {} | {} | {:.0} | {} | `{}` |",
            f[0],
            calls / entries,
            f[1],
            f[2],
            ms * 1000.0 / entries,
            f[3],
            f[4]
        );
    }
    println!(
        "\nserver execution in total: {total:.0} ms = {:.0} µs per entry, {:.2} backend-seconds per second",
        total * 1000.0 / entries,
        total / 1000.0 / l.seconds
    );
    Ok(())
}

async fn sql(cluster: &Arc<PgCluster>, database: &str, sql: &str) -> Result<String> {
    let (cluster, database, sql) = (cluster.clone(), database.to_string(), sql.to_string());
    Ok(tokio::task::spawn_blocking(move || cluster.superuser_sql(&database, &sql)).await?)
}

async fn fresh_database(cluster: &Arc<PgCluster>, prefix: &'static str) -> Result<String> {
    let cluster = cluster.clone();
    Ok(tokio::task::spawn_blocking(move || cluster.fresh_database(prefix)).await?)
}

async fn database_of(pg: &wb_store::postgres::PgTenants, company: &str) -> Result<String> {
    Ok(pg
        .placements()
        .get(company)
        .await?
        .context("the company has a placement")?
        .database)
}

/// Median of 2,000 `SELECT 1` round trips on one TLS connection.
async fn round_trip_us(url: &str, ca: &Path) -> Result<f64> {
    let client = PgEndpoint::parse(url, Some(ca))?.connect().await?;
    let statement = client.prepare("SELECT 1").await?;
    for _ in 0..200 {
        client.query_one(&statement, &[]).await?;
    }
    let mut times = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        client.query_one(&statement, &[]).await?;
        times.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }
    times.sort_unstable();
    Ok(percentile(&times, 0.5) * 1000.0)
}

#[derive(Default)]
struct Batches {
    databases: usize,
    transactions: u64,
    rows: u64,
    median: f64,
    max: u64,
}

/// Writer batches in company databases: entries written by one transaction
/// share its `xmin`, and the writer commits one transaction per batch.
async fn batches(cluster: &Arc<PgCluster>, databases: &[String]) -> Result<Batches> {
    let mut sizes: Vec<u32> = Vec::new();
    for database in databases {
        let out = sql(
            cluster,
            database,
            "SELECT count(*) FROM entries GROUP BY xmin::text::bigint ORDER BY 1",
        )
        .await?;
        sizes.extend(out.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    sizes.sort_unstable();
    Ok(Batches {
        databases: databases.len(),
        transactions: sizes.len() as u64,
        rows: sizes.iter().map(|&n| u64::from(n)).sum(),
        median: percentile(&sizes, 0.5) * 1000.0,
        max: sizes.last().copied().map_or(0, u64::from),
    })
}

/// CPU counters (the machine, this process with its waited-for children,
/// the cluster's processes) and the WAL position.
struct Snapshot {
    at: Instant,
    machine_busy: u64,
    machine_total: u64,
    own: u64,
    postgres: u64,
    wal: u64,
}

struct Usage {
    seconds: f64,
    /// Cores in use, all processes.
    busy_cores: f64,
    /// Cores used by this process (HTTPS server, its clients, the writers)
    /// or, in pgbench phases, by pgbench (a waited-for child).
    own_cores: f64,
    /// Cores used by the cluster's processes (backends, WAL writer, ...).
    postgres_cores: f64,
    wal_bytes: u64,
}

impl Usage {
    /// Cores used by everything else on the machine (other work skews the figures).
    fn other_cores(&self) -> f64 {
        (self.busy_cores - self.own_cores - self.postgres_cores).max(0.0)
    }

    /// "own / PostgreSQL / other" in cores.
    fn split(&self) -> String {
        format!(
            "{:.2} / {:.2} / {:.2}",
            self.own_cores,
            self.postgres_cores,
            self.other_cores()
        )
    }
}

impl Snapshot {
    async fn take(cluster: &Arc<PgCluster>) -> Result<Snapshot> {
        let wal = sql(cluster, "postgres", "SELECT pg_current_wal_lsn() - '0/0'")
            .await?
            .trim()
            .split('.')
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let (machine_busy, machine_total) = machine_ticks();
        Ok(Snapshot {
            at: Instant::now(),
            machine_busy,
            machine_total,
            own: own_ticks(),
            postgres: cluster_ticks(cluster),
            wal,
        })
    }

    fn since(&self, before: &Snapshot) -> Usage {
        let total = self
            .machine_total
            .saturating_sub(before.machine_total)
            .max(1) as f64;
        let cores_of =
            |after: u64, before: u64| after.saturating_sub(before) as f64 / total * cores() as f64;
        Usage {
            seconds: self.at.duration_since(before.at).as_secs_f64(),
            busy_cores: cores_of(self.machine_busy, before.machine_busy),
            own_cores: cores_of(self.own, before.own),
            postgres_cores: cores_of(self.postgres, before.postgres),
            wal_bytes: self.wal.saturating_sub(before.wal),
        }
    }
}

/// CHECKPOINT, then waits (at most a minute) until the cluster's processes
/// use under 5% of a core; returns the seconds waited.
async fn settle(cluster: &Arc<PgCluster>) -> Result<f64> {
    let start = Instant::now();
    sql(cluster, "postgres", "CHECKPOINT").await?;
    while start.elapsed() < Duration::from_secs(60) {
        let (before, machine_before) = (cluster_ticks(cluster), machine_ticks().1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (after, machine_after) = (cluster_ticks(cluster), machine_ticks().1);
        let total = machine_after.saturating_sub(machine_before).max(1) as f64;
        let used = after.saturating_sub(before) as f64 / total * cores() as f64;
        if used < 0.05 {
            break;
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The 1-minute load average (other work on the machine skews every figure).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// (busy, total) clock ticks of all cores, from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// (pid, ppid, utime + stime, cutime + cstime) from a /proc/<pid>/stat.
fn process_ticks(pid: &str) -> Option<(u32, u32, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let (head, rest) = stat.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // ppid is field 4; utime, stime, cutime, cstime are fields 14 to 17.
    let ppid = fields.get(1)?.parse().ok()?;
    Some((pid, ppid, get(11)? + get(12)?, get(13)? + get(14)?))
}

/// Clock ticks of this process and of the children it has waited for (pgbench).
fn own_ticks() -> u64 {
    process_ticks("self").map_or(0, |(_, _, own, children)| own + children)
}

/// Clock ticks of the cluster: the postmaster, its live children, and the
/// children it has reaped (backends of closed connections).
fn cluster_ticks(cluster: &PgCluster) -> u64 {
    let Some(postmaster) = cluster
        .ca_file()
        .parent()
        .and_then(|root| std::fs::read_to_string(root.join("data/postmaster.pid")).ok())
        .and_then(|text| {
            text.lines()
                .next()
                .and_then(|l| l.trim().parse::<u32>().ok())
        })
    else {
        return 0;
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(process_ticks))
        .map(|(pid, ppid, own, children)| {
            if pid == postmaster {
                own + children
            } else if ppid == postmaster {
                own
            } else {
                0
            }
        })
        .sum()
}
