//! `workbooks sandbox`: production data restored on a local machine under
//! management's approval, served on loopback only, destroyed at its expiry.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use wb_crypto::Secret;
use wb_server::restore_target::RestoreTarget;
use wb_server::sandbox::{self, local};
use wb_server::{Clock, ServerConfig, SystemClock};

use crate::cli::DeploymentArgs;
use crate::{open_platform, read_passphrase};

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Management approves one restore of a company into a sandbox: a
    /// single-use token bound to company, reason, approver and expiry.
    Approve(ApproveArgs),
    /// Restores a company into a new sandbox directory with an approval:
    /// fresh passphrases, no keys, sessions, factors, grants or schedules.
    Restore(RestoreArgs),
    /// Serves a sandbox on a loopback address until its expiry, then
    /// destroys it.
    Serve(ServeArgs),
    /// Destroys a sandbox now (its master key first, then every file).
    Destroy(DestroyArgs),
    /// The sandboxes the production audit trail records as live.
    List(ListArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[arg(long)]
    pub company: String,
    /// Why production data must leave production (recorded; the restore
    /// must give the same words).
    #[arg(long)]
    pub reason: String,
    /// How long the sandbox may live, in hours (1 to 168).
    #[arg(long)]
    pub ttl_hours: u32,
    /// The approving staff member (management role).
    #[arg(long)]
    pub staff_email: String,
    /// A file holding the staff member's passphrase.
    #[arg(long)]
    pub passphrase_file: PathBuf,
    /// The staff member's current authenticator code.
    #[arg(long)]
    pub otp: String,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[arg(long)]
    pub company: String,
    #[arg(long)]
    pub reason: String,
    /// The token `sandbox approve` printed.
    #[arg(long, env = "WORKBOOKS_SANDBOX_APPROVAL")]
    pub approval: String,
    /// A new, empty directory for the sandbox.
    #[arg(long)]
    pub sandbox: PathBuf,
    /// Restore the books as they were at this time (RFC 3339); default: latest.
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[arg(long, env = "WORKBOOKS_SANDBOX")]
    pub sandbox: PathBuf,
    /// A loopback address (anything else is refused).
    #[arg(long, env = "WORKBOOKS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// A config file; only its `listen` key is read.
    #[arg(long, env = "WORKBOOKS_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DestroyArgs {
    #[arg(long, env = "WORKBOOKS_SANDBOX")]
    pub sandbox: PathBuf,
    /// `--data`: the production deployment, to record the destruction in
    /// its audit trail; without it the record is left beside the sandbox
    /// for `sandbox list` to carry in.
    #[command(flatten)]
    pub deployment: DeploymentArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
}

pub async fn run(cmd: SandboxCommand) -> Result<()> {
    match cmd {
        SandboxCommand::Approve(args) => approve(args).await,
        SandboxCommand::Restore(args) => restore(args).await,
        SandboxCommand::Serve(args) => serve(args).await,
        SandboxCommand::Destroy(args) => destroy(args).await,
        SandboxCommand::List(args) => list(args).await,
    }
}

async fn approve(args: ApproveArgs) -> Result<()> {
    let d = args.deployment.resolve()?;
    let passphrase = read_passphrase(&args.passphrase_file)?;
    let platform = open_platform(&d).await?;
    let approved = platform
        .sandbox_approve(
            &args.company,
            &args.reason,
            args.ttl_hours,
            &args.staff_email,
            &passphrase,
            &Secret::from(args.otp),
        )
        .await
        .map_err(|e| anyhow::anyhow!("sandbox approve refused: {e}"))?;
    if d.json {
        println!("{}", serde_json::to_string(&approved)?);
    } else {
        println!("approval (single use, until {}):", approved.expires_at);
        println!("{}", approved.token);
    }
    Ok(())
}

async fn restore(args: RestoreArgs) -> Result<()> {
    let d = args.deployment.resolve()?;
    let target = match &args.to {
        Some(t) => RestoreTarget::Time(
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("--to must be an RFC 3339 time, not {t:?}"))?,
        ),
        None => RestoreTarget::Latest,
    };
    let platform = open_platform(&d).await?;
    let created = platform
        .sandbox_restore(
            &args.company,
            &args.reason,
            &args.approval,
            &args.sandbox,
            target,
        )
        .await?;
    if d.json {
        println!("{}", serde_json::to_string(&created)?);
    } else {
        println!(
            "sandbox {} (company {}) until {}",
            created.sandbox, created.company, created.expires_at
        );
        println!("  owner:      {}", created.owner_email);
        println!("  passphrase: {} (shown once)", created.owner_passphrase);
        println!(
            "serve it with: workbooks sandbox serve --sandbox {} --listen 127.0.0.1:8444",
            created.sandbox
        );
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    let listen = match args.listen {
        Some(l) => l,
        None => crate::cli::config_listen(args.config.as_deref())?
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8444))),
    };
    local::loopback_only(listen)?;
    let dir = args.sandbox.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if let Some(destroyed) = local::expire_if_due(&dir, clock.now())? {
        let record = local::write_destruction_record(&destroyed)?;
        anyhow::bail!(
            "the sandbox expired at {}; it is destroyed (record: {})",
            destroyed.manifest.map(|m| m.expires_at).unwrap_or_default(),
            record.display()
        );
    }
    let manifest = local::read_manifest(&dir)?;
    let platform = Arc::new(local::open(&dir, clock.clone()).await?);
    // The expiry kept in the sandbox's encrypted store counts (an edited
    // sandbox.json extends nothing); the deadline runs on a monotonic clock
    // from here, so setting the wall clock back extends nothing either.
    let expires = local::expiry(&platform, &dir).await?;
    let left = (expires - clock.now()).max(time::Duration::ZERO);
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::try_from(left).unwrap_or_default();
    let config = ServerConfig::new(dir.clone(), listen);
    let server = wb_server::start(platform.clone(), &config, None).await?;
    let url = server.url();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"url": url, "sandbox": dir, "expires_at": wb_server::dto::rfc3339(expires)})
        );
    } else {
        println!(
            "sandbox of company {} serving at {url} until {}",
            manifest.source_company,
            wb_server::dto::rfc3339(expires)
        );
    }
    let expired = async {
        loop {
            if clock.now() >= expires || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        _ = crate::shutdown_signal() => {
            server.shutdown().await?;
            Ok(())
        }
        _ = expired => {
            // Destroyed even when the shutdown fails.
            if let Err(e) = server.shutdown().await {
                eprintln!("stopping the sandbox server: {e:#}");
            }
            drop(platform);
            let destroyed = local::destroy(&dir, "expired", clock.now())?;
            let record = local::write_destruction_record(&destroyed)?;
            eprintln!("the sandbox reached its expiry and is destroyed (record: {})", record.display());
            Ok(())
        }
    }
}

async fn destroy(args: DestroyArgs) -> Result<()> {
    let d = args.deployment.resolve()?;
    // The production deployment when one is named (flag, environment or
    // config file) and is not the sandbox itself.
    let named = args.deployment.data.is_some() || args.deployment.config.is_some();
    let production = if named && !wb_server::sandbox::local::is_sandbox(&d.data) {
        Some(open_platform(&d).await?)
    } else {
        None
    };
    let destroyed = sandbox::destroy_and_report(
        &args.sandbox,
        "by hand",
        SystemClock.now(),
        production.as_ref(),
    )
    .await?;
    if d.json {
        println!("{}", serde_json::to_string(&destroyed)?);
    } else {
        println!(
            "destroyed {}: {} files, {} bytes",
            destroyed.sandbox, destroyed.files, destroyed.bytes
        );
    }
    Ok(())
}

async fn list(args: ListArgs) -> Result<()> {
    let d = args.deployment.resolve()?;
    let platform = open_platform(&d).await?;
    let live = platform
        .live_sandboxes()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if d.json {
        println!("{}", serde_json::to_string(&live)?);
    } else if live.is_empty() {
        println!("no live sandboxes");
    } else {
        for s in live {
            println!(
                "{} company {} (from {}) until {}{} — {}",
                s.sandbox,
                s.company,
                s.source_company,
                s.expires_at,
                if s.expired { " (expired)" } else { "" },
                s.reason
            );
        }
    }
    Ok(())
}
