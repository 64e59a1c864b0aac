//! `workbooks alerts list|ack|resolve` (triage of monitoring alerts) and
//! `workbooks maintenance` (the planned-maintenance mark that keeps the next
//! shutdown from raising an alert).

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use wb_core::monitor::AlertState;
use wb_core::Action;
use wb_server::monitor_job::AlertView;
use wb_store::{Actor, AuditEvent, Outcome, StoreError};

use crate::cli::DeploymentArgs;
use crate::open_platform;

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// List alerts, newest first.
    List {
        #[command(flatten)]
        deployment: DeploymentArgs,
        /// Only alerts in this state: open, acknowledged or resolved.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Acknowledge an open alert (someone is on it).
    Ack(TriageArgs),
    /// Resolve an open or acknowledged alert.
    Resolve(TriageArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TriageArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// The alert's id (from `workbooks alerts list`).
    pub id: i64,
    /// Why: recorded with the alert and in the audit trail.
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Clone, Args)]
pub struct MaintenanceArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// What the maintenance is for: recorded in the audit trail.
    #[arg(long)]
    pub reason: String,
}

/// The operator running the CLI, as recorded in alerts and audit events.
pub fn operator() -> Actor {
    let name = ["WORKBOOKS_OPERATOR", "USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into());
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        .take(64)
        .collect();
    Actor {
        id: format!("operator:{name}"),
        auth: "cli".into(),
        client: None,
        request_id: None,
    }
}

fn reason(text: &str) -> Result<String> {
    let text = text.trim();
    if text.is_empty() {
        bail!("--reason must not be empty");
    }
    if text.chars().count() > 500 {
        bail!("--reason must be at most 500 characters");
    }
    Ok(text.to_string())
}

fn triage_error(id: i64, e: StoreError) -> anyhow::Error {
    match e {
        StoreError::NotFound(_) => anyhow::anyhow!("no alert with id {id}"),
        StoreError::Conflict(detail) => anyhow::anyhow!("{detail}"),
        other => other.into(),
    }
}

pub async fn run(cmd: AlertsCommand) -> Result<()> {
    match cmd {
        AlertsCommand::List {
            deployment,
            state,
            limit,
        } => {
            let d = deployment.resolve()?;
            let state = state
                .as_deref()
                .map(str::parse::<AlertState>)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--state: {e}"))?;
            let platform = open_platform(&d).await?;
            let alerts = platform.alerts.list(state, limit).await?;
            let views: Vec<AlertView> = alerts.iter().map(AlertView::from).collect();
            if d.json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else if views.is_empty() {
                println!("no alerts");
            } else {
                println!(
                    "{:>6}  {:<8}  {:<12}  {:>5}  {:<20}  TITLE",
                    "ID", "SEVERITY", "STATE", "COUNT", "LAST SEEN"
                );
                for a in &views {
                    println!(
                        "{:>6}  {:<8}  {:<12}  {:>5}  {:<20}  {}",
                        a.id, a.severity, a.state, a.count, a.last_seen, a.title
                    );
                }
            }
            Ok(())
        }
        AlertsCommand::Ack(args) => triage(args, AlertState::Acknowledged).await,
        AlertsCommand::Resolve(args) => triage(args, AlertState::Resolved).await,
    }
}

async fn triage(args: TriageArgs, to: AlertState) -> Result<()> {
    let d = args.deployment.resolve()?;
    let reason = reason(&args.reason)?;
    let platform = open_platform(&d).await?;
    let by = operator();
    let at = platform.now();
    let alert = match to {
        AlertState::Acknowledged => platform.alerts.acknowledge(args.id, &by, &reason, at).await,
        _ => platform.alerts.resolve(args.id, &by, &reason, at).await,
    }
    .map_err(|e| triage_error(args.id, e))?;
    if d.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&AlertView::from(&alert))?
        );
    } else {
        println!("alert {} {}", alert.id, alert.state);
    }
    Ok(())
}

/// Records a `system.maintenance` mark: a shutdown within the monitor's
/// maintenance window after it is planned.
pub async fn maintenance(args: MaintenanceArgs) -> Result<()> {
    let d = args.deployment.resolve()?;
    let reason = reason(&args.reason)?;
    let platform = open_platform(&d).await?;
    let at = platform.now();
    platform
        .control
        .audit(&AuditEvent {
            at,
            actor: operator(),
            company_id: None,
            action: Action::SystemMaintenance,
            target: None,
            outcome: Outcome::Success,
            detail: Some(reason),
        })
        .await?;
    let at = wb_server::dto::rfc3339(at);
    if d.json {
        println!(
            "{}",
            serde_json::json!({ "action": Action::SystemMaintenance, "at": at })
        );
    } else {
        println!("maintenance marked at {at}");
    }
    Ok(())
}
