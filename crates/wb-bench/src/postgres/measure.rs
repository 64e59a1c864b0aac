//! What the PostgreSQL section measures beside throughput: CPU split between
//! this process, the cluster and the rest of the machine, WAL bytes, writer
//! batch sizes, round-trip time, and per-statement server time.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wb_pgtest::PgCluster;
use wb_store::postgres::PgEndpoint;

use crate::harness::{percentile, Load};
use crate::report::cores;

/// Loads pg_stat_statements (a restart of the throwaway cluster).
pub(super) async fn enable_statements(cluster: &Arc<PgCluster>) -> Result<()> {
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

pub(super) async fn reset_statements(cluster: &Arc<PgCluster>, enabled: bool) -> Result<()> {
    if enabled {
        sql(cluster, "postgres", "SELECT pg_stat_statements_reset()").await?;
    }
    Ok(())
}

/// Server time per statement since the last reset, company databases summed.
pub(super) async fn report_statements(
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

pub(super) async fn sql(cluster: &Arc<PgCluster>, database: &str, sql: &str) -> Result<String> {
    let (cluster, database, sql) = (cluster.clone(), database.to_string(), sql.to_string());
    Ok(tokio::task::spawn_blocking(move || cluster.superuser_sql(&database, &sql)).await?)
}

pub(super) async fn fresh_database(
    cluster: &Arc<PgCluster>,
    prefix: &'static str,
) -> Result<String> {
    let cluster = cluster.clone();
    Ok(tokio::task::spawn_blocking(move || cluster.fresh_database(prefix)).await?)
}

pub(super) async fn database_of(
    pg: &wb_store::postgres::PgTenants,
    company: &str,
) -> Result<String> {
    Ok(pg
        .placements()
        .get(company)
        .await?
        .context("the company has a placement")?
        .database)
}

/// Median of 2,000 `SELECT 1` round trips on one TLS connection.
pub(super) async fn round_trip_us(url: &str, ca: &Path) -> Result<f64> {
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
pub(super) struct Batches {
    pub(super) databases: usize,
    pub(super) transactions: u64,
    pub(super) rows: u64,
    pub(super) median: f64,
    pub(super) max: u64,
}

/// Writer batches in company databases: entries written by one transaction
/// share its `xmin`, and the writer commits one transaction per batch.
pub(super) async fn batches(cluster: &Arc<PgCluster>, databases: &[String]) -> Result<Batches> {
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
pub(super) struct Snapshot {
    at: Instant,
    machine_busy: u64,
    machine_total: u64,
    own: u64,
    postgres: u64,
    wal: u64,
}

pub(super) struct Usage {
    pub(super) seconds: f64,
    /// Cores in use, all processes.
    pub(super) busy_cores: f64,
    /// Cores used by this process (HTTPS server, its clients, the writers)
    /// or, in pgbench phases, by pgbench (a waited-for child).
    pub(super) own_cores: f64,
    /// Cores used by the cluster's processes (backends, WAL writer, ...).
    pub(super) postgres_cores: f64,
    pub(super) wal_bytes: u64,
}

impl Usage {
    /// Cores used by everything else on the machine (other work skews the figures).
    pub(super) fn other_cores(&self) -> f64 {
        (self.busy_cores - self.own_cores - self.postgres_cores).max(0.0)
    }

    /// "own / PostgreSQL / other" in cores.
    pub(super) fn split(&self) -> String {
        format!(
            "{:.2} / {:.2} / {:.2}",
            self.own_cores,
            self.postgres_cores,
            self.other_cores()
        )
    }
}

impl Snapshot {
    pub(super) async fn take(cluster: &Arc<PgCluster>) -> Result<Snapshot> {
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

    pub(super) fn since(&self, before: &Snapshot) -> Usage {
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
pub(super) async fn settle(cluster: &Arc<PgCluster>) -> Result<f64> {
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
pub(super) fn load_average() -> String {
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
