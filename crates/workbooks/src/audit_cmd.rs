//! `workbooks audit verify|search` and `workbooks logs`.

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use wb_server::audit_verify::{parse_jsonl, verify_deployment, verify_records, ChainReport};
use wb_store::AuditQuery;

use crate::cli::{AuditCommand, LogsArgs};
use crate::open_platform;

pub async fn run(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify { deployment, file } => {
            let d = deployment.resolve()?;
            let reports = match file {
                Some(file) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let records = parse_jsonl(&text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                    verify_records(&records)
                }
                None => {
                    let platform = open_platform(&d).await?;
                    verify_deployment(&platform).await?
                }
            };
            print_verification(&reports, d.json)
        }
        AuditCommand::Search {
            deployment,
            company,
            action,
            outcome,
            actor,
            since,
            limit,
        } => {
            let d = deployment.resolve()?;
            if let Some(o) = outcome.as_deref() {
                if !matches!(o, "success" | "failure") {
                    bail!("--outcome must be success or failure");
                }
            }
            let since = since.as_deref().map(parse_since).transpose()?;
            let platform = open_platform(&d).await?;
            let events = platform
                .control
                .central_events(AuditQuery {
                    after: 0,
                    limit: limit.clamp(1, 100_000),
                    company_id: company,
                    action,
                    outcome,
                    actor,
                    since,
                    ..Default::default()
                })
                .await?;
            if d.json {
                let list: Vec<_> = events
                    .iter()
                    .map(|c| {
                        let e = &c.event;
                        serde_json::json!({"position": c.central_seq, "source": c.source, "seq": e.seq, "at": e.at,
                            "node": c.node, "actor": e.actor, "auth": e.auth, "client": e.client,
                            "request_id": e.request_id, "company_id": e.company_id, "action": e.action,
                            "target": e.target, "outcome": e.outcome, "detail": e.detail, "hash": e.hash})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for c in &events {
                    let e = &c.event;
                    println!(
                        "{}  {:<8} {:<22} {:<28} {} {}{}",
                        e.at,
                        e.outcome,
                        e.action,
                        e.actor,
                        e.client.as_deref().unwrap_or("-"),
                        e.target.as_deref().unwrap_or(""),
                        e.detail
                            .as_deref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
    }
}

fn print_verification(reports: &[ChainReport], json: bool) -> Result<()> {
    let failed: Vec<&ChainReport> = reports.iter().filter(|r| r.problem.is_some()).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "verified": failed.is_empty(),
                "chains": reports,
            }))?
        );
    } else {
        for r in reports {
            match &r.problem {
                None => println!(
                    "ok    {} ({}): {} events, {} checkpoints{}",
                    r.source,
                    r.copy,
                    r.events,
                    r.checkpoints,
                    r.last_checkpoint_at
                        .as_deref()
                        .map(|t| format!(", last at {t}"))
                        .unwrap_or_default()
                ),
                Some(p) => println!("FAIL  {} ({}): {p}", r.source, r.copy),
            }
        }
    }
    if let Some(first) = failed.first() {
        bail!(
            "audit trail does not verify: {} ({}): {}",
            first.source,
            first.copy,
            first.problem.as_deref().unwrap_or("")
        );
    }
    let events: u64 = reports
        .iter()
        .filter(|r| r.copy != "central")
        .map(|r| r.events)
        .sum();
    let last = reports
        .iter()
        .filter_map(|r| r.last_checkpoint_at.clone())
        .max();
    if !json {
        println!(
            "verified {events} events in {} chains, last checkpoint at {}",
            reports.iter().filter(|r| r.copy != "central").count(),
            last.as_deref().unwrap_or("(none yet)")
        );
    }
    Ok(())
}

/// "90s", "15m", "1h", "7d", or an RFC 3339 time, as an RFC 3339 lower bound.
fn parse_since(text: &str) -> Result<String> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at.format(&Rfc3339)?);
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number
        .parse()
        .with_context(|| format!("--since {text:?}: use 90s, 15m, 1h, 7d or an RFC 3339 time"))?;
    let span = match unit {
        "s" => time::Duration::seconds(n),
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        _ => bail!("--since {text:?}: use 90s, 15m, 1h, 7d or an RFC 3339 time"),
    };
    Ok((OffsetDateTime::now_utc() - span).format(&Rfc3339)?)
}

/// The application log file of a data directory.
pub fn log_path(data: &std::path::Path) -> std::path::PathBuf {
    data.join("logs").join("workbooks.log")
}

pub async fn logs(args: LogsArgs) -> Result<()> {
    let d = args.deployment.resolve()?;
    let path = log_path(&d.data);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("no log at {} (has the server run?)", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let lines: Vec<String> = reader.by_ref().lines().collect::<Result<_, _>>()?;
    for line in lines.iter().skip(lines.len().saturating_sub(args.lines)) {
        println!("{line}");
    }
    if !args.tail {
        return Ok(());
    }
    let mut position = reader.stream_position()?;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        if len < position {
            position = 0; // rotated or truncated
        }
        file.seek(SeekFrom::Start(position))?;
        let mut reader = std::io::BufReader::new(file);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            print!("{line}");
            line.clear();
        }
        position = reader.stream_position()?;
    }
}
