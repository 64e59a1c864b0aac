//! The `workbooks` binary.

mod abuse_cfg;
mod alerts_cmd;
mod audit_cmd;
mod backup_cmd;
mod backup_verify_cmd;
mod cli;
mod demo;
mod dr_cmd;
mod export_cmd;
mod key_provider;
mod keys_cmd;
mod lifecycle_cmd;
mod members_cmd;
mod sandbox_cmd;
mod staff_cmd;

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use wb_crypto::{MasterKey, Secret};
use wb_server::{Platform, ServerConfig, SystemClock};
use wb_store::Actor;

use cli::{Cli, Command, CompanyCommand, Deployment, UserCommand};

// Many small, short-lived allocations across threads (requests, SQL rows, JSON):
// mimalloc measured faster than the system allocator in `workbooks bench`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("workbooks: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, joined.
            eprintln!("workbooks: error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args.resolve("./workbooks-data")?, false).await,
        Command::Demo(args) => serve(args.resolve("./workbooks-demo")?, true).await,
        Command::Init(args) => {
            let d = args.resolve()?;
            open_platform(&d).await?;
            if d.json {
                println!("{}", serde_json::json!({ "data": d.data }));
            } else {
                println!("initialized {}", d.data.display());
            }
            Ok(())
        }
        Command::Company(cmd) => company(cmd).await,
        Command::User(cmd) => user(cmd).await,
        Command::Staff(cmd) => staff_cmd::run(cmd).await,
        #[cfg(feature = "bench")]
        Command::Bench(args) => wb_bench::run(args).await,
        #[cfg(not(feature = "bench"))]
        Command::Bench(_) => anyhow::bail!(
            "this build has no benchmarks; run them with `cargo run --release --features bench -- bench`"
        ),
        Command::Alerts(cmd) => alerts_cmd::run(cmd).await,
        Command::Maintenance(args) => alerts_cmd::maintenance(args).await,
        Command::Audit(cmd) => audit_cmd::run(cmd).await,
        Command::Logs(args) => audit_cmd::logs(args).await,
        Command::Backup(cmd) => backup_cmd::run(cmd).await,
        Command::Restore(args) => backup_cmd::restore(args).await,
        Command::Dr(cmd) => dr_cmd::run(cmd).await,
        Command::Export(cmd) => export_cmd::run(cmd),
        Command::Certificate(lifecycle_cmd::CertificateCommand::Verify(args)) => {
            lifecycle_cmd::verify(args)
        }
        Command::Keys(cmd) => keys_cmd::run(cmd).await,
        Command::Sandbox(cmd) => sandbox_cmd::run(cmd).await,
    }
}

pub fn master_key(d: &Deployment) -> Result<MasterKey> {
    use key_provider::KeyProvider;
    if let Some(command) = &d.master_key_command {
        return key_provider::KeyCommand::new(command)?.key(key_provider::MASTER_KEY_ID);
    }
    if let Some(file) = &d.master_key_file {
        return key_provider::KeyFile(file.clone()).key(key_provider::MASTER_KEY_ID);
    }
    if let Ok(hex) = std::env::var("WORKBOOKS_MASTER_KEY") {
        return MasterKey::from_hex(&hex).context("WORKBOOKS_MASTER_KEY");
    }
    create_private_dir(&d.data)?;
    Ok(MasterKey::load_or_create(&d.data.join("master.key"))?)
}

fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    Ok(())
}

pub async fn open_platform(d: &Deployment) -> Result<Arc<Platform>> {
    if wb_server::sandbox::local::is_sandbox(&d.data) {
        anyhow::bail!(
            "{} is a sandbox of production data: only `workbooks sandbox serve|destroy` open it",
            d.data.display()
        );
    }
    let key = master_key(d)?;
    let platform = Platform::open(
        &d.data,
        key,
        Arc::new(SystemClock),
        time::Duration::hours(12),
        &d.storage,
    )
    .await?;
    let objects = wb_server::objects::open(d.object_store.as_deref(), &d.data)?;
    Ok(Arc::new(platform.with_object_store(objects)))
}

/// Structured logs to standard error (human or JSON) and, always as JSON lines,
/// to `<data>/logs/workbooks.log`, which `workbooks logs --tail` follows.
fn init_logging(json: bool, data: &Path) -> Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("WORKBOOKS_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let path = audit_cmd::log_path(data);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open log file {}", path.display()))?;
    let to_file = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::sync::Mutex::new(file))
        .with_filter(filter());
    let to_stderr = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(to_stderr)
        .with(to_file)
        .try_init();
    Ok(())
}

async fn serve(settings: cli::Serve, demo: bool) -> Result<()> {
    init_logging(settings.log_json, &settings.deployment.data)?;
    let platform = open_platform(&settings.deployment).await?;
    let login = if demo {
        Some(demo::ensure(&platform, &settings.deployment.data).await?)
    } else {
        None
    };
    let mut config = ServerConfig::new(settings.deployment.data.clone(), settings.listen);
    config.tls = settings.tls.clone();
    config.monitor = settings.monitor.clone();
    platform.set_audit_policy(settings.audit_failure_policy);
    config.audit_drains = settings.audit_drains.clone();
    config.backup_lag_alert = settings.backup_lag_alert;
    config.export_file_root = settings.export_file_root.clone();
    config.export_allow_private_endpoints = settings.export_allow_private_endpoints;
    config.file_max_bytes = settings.file_max_bytes;
    config.file_upload_timeout = settings.file_upload_timeout;
    config.connections = settings.connections;
    config.exports = settings.exports;
    config.mail = settings.mail.clone();
    config.staff = settings.staff;
    config.deprovision_grace = settings.deprovision_grace;
    config.statutory_minimum = settings.statutory_minimum;
    config.trusted_proxies = settings.abuse.trusted_proxies.clone();
    config.cors_origins = settings.abuse.cors_origins.clone();
    config.rate_limits = settings.abuse.rate_limits;
    config.expensive = settings.abuse.expensive;
    config.backup = settings.deployment.backup;
    config.backup_verify_every = settings.deployment.backup_verify_every;
    let server = wb_server::start(platform, &config, None).await?;
    let url = server.url();
    tracing::info!(%url, data = %settings.deployment.data.display(), "serving");
    if let Some(login) = login {
        println!("Work-books demo is running at {url}");
        println!(
            "  company:    {} ({})",
            login.company_name, login.company_id
        );
        println!("  email:      {}", login.email);
        println!("  passphrase: {}", login.passphrase.expose());
        println!("Try:");
        println!("  curl -sk {url}/api/v1/auth/login -H 'content-type: application/json' \\");
        println!(
            "    -d '{{\"email\":\"{}\",\"passphrase\":\"{}\"}}'",
            login.email,
            login.passphrase.expose()
        );
        println!("  curl -sk {url}/api/v1/companies/{}/reports/trial-balance -H \"authorization: Bearer $TOKEN\"", login.company_id);
        println!(
            "The certificate is self-signed ({}); press Ctrl-C to stop.",
            settings.deployment.data.join("tls/cert.pem").display()
        );
    } else {
        println!(
            "Work-books is serving at {url} (data: {})",
            settings.deployment.data.display()
        );
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn company(cmd: CompanyCommand) -> Result<()> {
    match cmd {
        CompanyCommand::List(args) => {
            let d = args.resolve()?;
            let platform = open_platform(&d).await?;
            let companies = platform.control.companies().await?;
            if d.json {
                let list: Vec<_> = companies
                    .iter()
                    .map(|c| {
                        serde_json::json!({"id": c.id, "name": c.name, "status": c.status.as_str(),
                        "created_at": wb_server::dto::rfc3339(c.created_at)})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for c in companies {
                    println!("{}  {:<14} {}", c.id, c.status.as_str(), c.name);
                }
            }
            Ok(())
        }
        CompanyCommand::Create {
            deployment,
            name,
            owner,
        } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            let company = platform.create_company(&name, owner.as_deref()).await?;
            if d.json {
                println!(
                    "{}",
                    serde_json::json!({"id": company.id, "name": company.name})
                );
            } else {
                println!("{}", company.id);
            }
            Ok(())
        }
        CompanyCommand::Members {
            deployment,
            company,
        } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            members_cmd::list(&platform, &company, d.json).await
        }
        CompanyCommand::SecurityPolicy {
            deployment,
            company,
        } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            members_cmd::security_policy(&platform, &company, d.json).await
        }
        CompanyCommand::Destroy {
            deployment,
            company,
            confirm,
        } => {
            let d = deployment.resolve()?;
            // On the embedded store a running server holds the company's
            // files open and its jobs could write under its prefix: the
            // override runs with the server stopped (the server's own job
            // destroys what is due while it runs).
            let _lock = match d.storage {
                wb_server::StorageConfig::Embedded => {
                    Some(wb_server::data_lock::lock(&d.data).context(
                        "company destroy on the embedded store needs the server stopped",
                    )?)
                }
                wb_server::StorageConfig::Postgres(_) => None,
            };
            let platform = open_platform(&d).await?;
            lifecycle_cmd::destroy(&platform, &company, confirm, d.json).await
        }
        CompanyCommand::Export {
            deployment,
            company,
            recipient,
            out,
        } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            lifecycle_cmd::export(&platform, &company, &recipient, &out, d.json).await
        }
        CompanyCommand::Invite {
            deployment,
            company,
            email,
            role,
        } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            members_cmd::invite(&platform, &company, &email, &role, d.json).await
        }
        CompanyCommand::Move {
            deployment,
            company,
            to,
        } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            let report = platform
                .move_company(&company, &to, Actor::system("cli"))
                .await?;
            if d.json {
                println!(
                    "{}",
                    serde_json::json!({"company": report.company_id, "from": report.from,
                        "to": report.to, "rows": report.rows, "journal_seq": report.journal_seq,
                        "write_pause_ms": report.write_pause.as_millis() as u64})
                );
            } else {
                println!(
                    "moved {} from {} to {}: {} rows, journal at {}, writes paused {} ms",
                    report.company_id,
                    report.from,
                    report.to,
                    report.rows,
                    report.journal_seq,
                    report.write_pause.as_millis()
                );
            }
            Ok(())
        }
        CompanyCommand::Placements(args) => {
            let d = args.resolve()?;
            let platform = open_platform(&d).await?;
            let Some(postgres) = &platform.postgres else {
                anyhow::bail!("placements exist only with the PostgreSQL backend (--database)");
            };
            let placements = postgres.placements().all().await?;
            if d.json {
                let list: Vec<_> = placements
                    .iter()
                    .map(|p| serde_json::json!({"company": p.company_id, "server": p.server, "database": p.database}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for p in placements {
                    println!("{}  {:<12} {}", p.company_id, p.server, p.database);
                }
            }
            Ok(())
        }
    }
}

pub(crate) fn read_passphrase(path: &Path) -> Result<Secret> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the passphrase from standard input")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read passphrase file {}", path.display()))?;
    }
    let line = text.lines().next().unwrap_or("").to_string();
    Ok(Secret::from(line))
}

async fn user(cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::ResetMfa {
            deployment,
            email,
            reason,
        } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            let user = platform
                .operator_reset_mfa(&email, &reason, Actor::system("cli"))
                .await?;
            if d.json {
                println!(
                    "{}",
                    serde_json::json!({"id": user.id, "email": user.email, "mfa": "none"})
                );
            } else {
                println!("second factor of {} removed; sessions ended", user.email);
            }
            Ok(())
        }
        UserCommand::Create {
            deployment,
            email,
            passphrase_file,
            name,
            company,
            role,
        } => {
            let d = deployment.resolve()?;
            let passphrase = read_passphrase(&passphrase_file)?;
            let role = role.map(|r| r.parse::<wb_core::Role>()).transpose()?;
            let platform = open_platform(&d).await?;
            if let Some(company) = &company {
                platform
                    .control
                    .company(company)
                    .await?
                    .context("no such company")?;
            }
            let user = platform
                .create_user(&email, &passphrase, name, Actor::system("cli"))
                .await?;
            if let (Some(company), Some(role)) = (&company, role) {
                platform
                    .add_member(company, &user.id, role, Actor::system("cli"))
                    .await?;
            }
            if d.json {
                println!(
                    "{}",
                    serde_json::json!({"id": user.id, "email": user.email})
                );
            } else {
                println!("{}", user.id);
            }
            Ok(())
        }
    }
}
