//! `pgbench` on the same throwaway cluster: the one-INSERT disk baseline,
//! and the writer's own statements replayed against real company databases.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result};
use wb_pgtest::PgCluster;
use wb_server::Platform;

use super::measure::{database_of, sql, Snapshot, Usage};
use super::SPREAD_COMPANIES;
use crate::harness::percentile;

pub(super) struct PgBench {
    pub(super) tps: f64,
    pub(super) latency_avg_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) usage: Usage,
}

/// `pgbench` with a one-INSERT script against `url`'s database (table `t`).
pub(super) async fn pgbench(
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

pub(super) struct Replay {
    pub(super) name: &'static str,
    pub(super) companies: usize,
    pub(super) entries: usize,
    pub(super) round_trips: usize,
    pub(super) result: PgBench,
}

/// The writer's statements for posting, driven by pgbench against real
/// company databases (schema, triggers and foreign keys as created by the
/// platform), to separate the cost of the SQL from that of the HTTPS path:
/// one statement per round trip, as the writer sends them (writes
/// pipelined), and with COMMIT pipelined too.
pub(super) async fn replay(
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

pub(super) struct UrlParts {
    pub(super) user: String,
    pub(super) password: String,
    pub(super) host: String,
    pub(super) port: String,
    pub(super) database: String,
}

/// `postgres://user:password@host:port/database` (as wb-pgtest writes them).
pub(super) fn url_parts(url: &str) -> Result<UrlParts> {
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
