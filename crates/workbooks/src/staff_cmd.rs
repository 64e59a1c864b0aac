//! `workbooks staff …`: the platform's staff accounts, managed on the
//! server host only (there is no API to create staff). Every change is
//! audited in the control trail.

use std::path::PathBuf;

use crate::cli::DeploymentArgs;
use crate::{open_platform, read_passphrase};
use anyhow::Result;
use clap::Subcommand;
use wb_core::staff::StaffRole;
use wb_server::staff::{host_actor, roles_of};

#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Create a staff member with one or more roles and a new authenticator
    /// (its otpauth:// URI is printed once: staff enrol at creation).
    Create {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        email: String,
        /// support, sales, security, operations or management (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// File holding the passphrase (first line); "-" reads standard input.
        #[arg(long)]
        passphrase_file: PathBuf,
    },
    /// List staff members and their roles.
    List {
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Give a staff member a role.
    GrantRole {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Take a role away (a staff member keeps at least one).
    RevokeRole {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Disable a staff member: their sessions end at once.
    Disable {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        email: String,
    },
    /// Give a staff member a new authenticator (the old one lost); their
    /// sessions end and the new otpauth:// URI is printed once.
    ResetMfa {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        email: String,
    },
}

fn record_json(r: &wb_store::staff::StaffRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "email": r.email,
        "roles": r.roles,
        "created_at": wb_server::dto::rfc3339(r.created_at),
        "disabled": r.disabled_at.is_some(),
    })
}

pub async fn run(cmd: StaffCommand) -> Result<()> {
    match cmd {
        StaffCommand::Create {
            deployment,
            email,
            roles,
            passphrase_file,
        } => {
            let d = deployment.resolve()?;
            let roles = roles
                .iter()
                .map(|r| r.parse::<StaffRole>())
                .collect::<Result<Vec<_>, _>>()?;
            let passphrase = read_passphrase(&passphrase_file)?;
            let platform = open_platform(&d).await?;
            let created = platform
                .create_staff(&email, &roles, &passphrase, host_actor())
                .await?;
            if d.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "id": created.record.id,
                        "email": created.record.email,
                        "roles": created.record.roles,
                        "totp_uri": created.totp_uri.expose(),
                    })
                );
            } else {
                println!(
                    "staff member {} created ({}); add this to their authenticator app now, it is not shown again:\n{}",
                    created.record.email,
                    created.record.roles.join(", "),
                    created.totp_uri.expose()
                );
            }
        }
        StaffCommand::List { deployment } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            let staff = platform.list_staff().await?;
            if d.json {
                let list: Vec<_> = staff.iter().map(record_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for s in &staff {
                    let roles: Vec<&str> = roles_of(s).iter().map(|r| r.as_str()).collect();
                    println!(
                        "{}  {:<32} {}{}",
                        s.id,
                        s.email,
                        roles.join(","),
                        if s.disabled_at.is_some() {
                            "  (disabled)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        StaffCommand::GrantRole {
            deployment,
            email,
            role,
        } => change_role(deployment, &email, role, true).await?,
        StaffCommand::RevokeRole {
            deployment,
            email,
            role,
        } => change_role(deployment, &email, role, false).await?,
        StaffCommand::Disable { deployment, email } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            platform.disable_staff(&email, host_actor()).await?;
            if d.json {
                println!(
                    "{}",
                    serde_json::json!({"email": email.trim().to_lowercase(), "disabled": true})
                );
            } else {
                println!(
                    "staff member {} disabled; their sessions ended",
                    email.trim()
                );
            }
        }
        StaffCommand::ResetMfa { deployment, email } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            let uri = platform.reset_staff_mfa(&email, host_actor()).await?;
            if d.json {
                println!(
                    "{}",
                    serde_json::json!({"email": email.trim().to_lowercase(), "totp_uri": uri.expose()})
                );
            } else {
                println!(
                    "new authenticator for {}; their sessions ended. Add this now, it is not shown again:\n{}",
                    email.trim(),
                    uri.expose()
                );
            }
        }
    }
    Ok(())
}

async fn change_role(
    deployment: DeploymentArgs,
    email: &str,
    role: String,
    grant: bool,
) -> Result<()> {
    let d = deployment.resolve()?;
    let role: StaffRole = role.parse()?;
    let platform = open_platform(&d).await?;
    let record = platform
        .change_staff_role(email, role, grant, host_actor())
        .await?;
    if d.json {
        println!("{}", record_json(&record));
    } else {
        println!("{}: roles now {}", record.email, record.roles.join(", "));
    }
    Ok(())
}
