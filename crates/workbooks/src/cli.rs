//! Command-line interface: flags, environment variables and the config file.
//!
//! Precedence: flag, then `WORKBOOKS_*` environment variable, then the config
//! file (`--config` / `WORKBOOKS_CONFIG`, TOML), then the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    name = "workbooks",
    version,
    about = "Work-books: multi-tenant bookkeeping with an enforced data-security policy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTPS API.
    Serve(ServeArgs),
    /// Serve with a sample company and a year of books, and print its login.
    Demo(ServeArgs),
    /// Create the data directory and master key without serving.
    Init(DeploymentArgs),
    /// Manage companies.
    #[command(subcommand)]
    Company(CompanyCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the platform's staff (on the server host only).
    #[command(subcommand)]
    Staff(crate::staff_cmd::StaffCommand),
    /// Triage monitoring alerts.
    #[command(subcommand)]
    Alerts(crate::alerts_cmd::AlertsCommand),
    /// Mark planned maintenance, so a shutdown soon after raises no alert.
    Maintenance(crate::alerts_cmd::MaintenanceArgs),
    /// Measure throughput and latency; writes a results table.
    #[cfg(feature = "bench")]
    Bench(wb_bench::BenchArgs),
    /// Measure throughput and latency (needs a build with `--features bench`).
    #[cfg(not(feature = "bench"))]
    Bench(BenchNotBuilt),
    /// Verify and search the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Read the application log.
    Logs(LogsArgs),
    /// Change-journal shipping (backups).
    #[command(subcommand)]
    Backup(crate::backup_cmd::BackupCommand),
    /// Restore a company from its shipped journal into a new company.
    Restore(crate::backup_cmd::RestoreArgs),
    /// Disaster recovery from the object store.
    #[command(subcommand)]
    Dr(crate::dr_cmd::DrCommand),
    /// Customer exports: decrypt and verify one offline.
    #[command(subcommand)]
    Export(crate::export_cmd::ExportCommand),
    /// Certificates of destruction: verify one offline.
    #[command(subcommand)]
    Certificate(crate::lifecycle_cmd::CertificateCommand),
    /// The master key: rotation and status.
    #[command(subcommand)]
    Keys(crate::keys_cmd::KeysCommand),
    /// Production data on a local machine, on management's approval:
    /// restored sanitized, served on loopback, destroyed at its expiry.
    #[command(subcommand)]
    Sandbox(crate::sandbox_cmd::SandboxCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify every audit chain (local and central) against its signed
    /// checkpoints, or a JSON-lines export with --file. Exit 0 only when all verify.
    Verify {
        #[command(flatten)]
        deployment: DeploymentArgs,
        /// A JSON-lines audit export (e.g. a jsonl:// drain file) to verify instead.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Search the central audit collection.
    Search {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        company: Option<String>,
        /// Exact action (auth.login) or its last part (login).
        #[arg(long)]
        action: Option<String>,
        /// success or failure
        #[arg(long)]
        outcome: Option<String>,
        /// Actor id, e.g. user:<id> or api_key:<id>.
        #[arg(long)]
        actor: Option<String>,
        /// How far back: 90s, 15m, 1h, 7d, or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// Print the last lines and keep following the log.
    #[arg(long)]
    pub tail: bool,
    /// How many past lines to print.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub lines: usize,
}

#[derive(Debug, Clone, Args)]
pub struct DeploymentArgs {
    /// Data directory (embedded default: SQLCipher files, master key, TLS).
    #[arg(long, env = "WORKBOOKS_DATA")]
    pub data: Option<PathBuf>,
    /// PostgreSQL control database, postgres://user:password@host:port/database
    /// (always TLS with sslmode=verify-full). Default: the embedded SQLCipher store.
    #[arg(long, env = "WORKBOOKS_DATABASE")]
    pub database: Option<String>,
    /// CA certificate (PEM) that signed the PostgreSQL servers' certificates.
    #[arg(long, env = "WORKBOOKS_DATABASE_CA")]
    pub database_ca: Option<PathBuf>,
    /// Object store for backups: file:///ABSOLUTE/PATH, or
    /// s3://BUCKET[/PREFIX][?endpoint=URL&region=R&timeout=10s] with credentials
    /// from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN (plain
    /// http endpoints only on loopback). Default: <data>/objects.
    #[arg(long, env = "WORKBOOKS_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// Master key file (64 hex characters). Default: <data>/master.key, or the
    /// WORKBOOKS_MASTER_KEY environment variable when set.
    #[arg(
        long,
        env = "WORKBOOKS_MASTER_KEY_FILE",
        conflicts_with = "master_key_command"
    )]
    pub master_key_file: Option<PathBuf>,
    /// A program that answers the master key (a KMS or HSM helper): run as
    /// `PROGRAM get master` without a shell, it prints 64 hex characters
    /// (docs/keys.md). Its absolute path.
    #[arg(long, env = "WORKBOOKS_MASTER_KEY_COMMAND")]
    pub master_key_command: Option<PathBuf>,
    /// TOML config file with the same keys as the long flags (data, listen, ...).
    #[arg(long, env = "WORKBOOKS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// Address to listen on (default 127.0.0.1:8443).
    #[arg(long, env = "WORKBOOKS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain; with --tls-key, replaces the generated self-signed one.
    #[arg(long, env = "WORKBOOKS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "WORKBOOKS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (only behind a TLS-terminating proxy).
    #[arg(long, env = "WORKBOOKS_INSECURE_HTTP", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub insecure_http: bool,
    /// Log format: human or json.
    #[arg(long, env = "WORKBOOKS_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Send email through this SMTP server: smtps://USER:PASS@HOST[:PORT],
    /// smtp://HOST?tls=required, or smtp://127.0.0.1:PORT (clear, loopback
    /// only). Default: messages are written to <data>/outbox/*.eml.
    #[arg(long, env = "WORKBOOKS_SMTP_URL", hide_env_values = true, value_parser = secret_arg)]
    pub smtp_url: Option<SecretArg>,
    /// When the audit trail cannot be written: refuse-writes (default; customers'
    /// own reads go on, an alert is raised) or refuse-all. Staff access is always refused.
    #[arg(long, env = "WORKBOOKS_AUDIT_FAILURE_POLICY")]
    pub audit_failure_policy: Option<String>,
    /// Forward the central audit trail to a drain (repeatable; the environment
    /// variable is comma-separated): syslog+tcp://HOST:PORT, syslog+tls://HOST:PORT,
    /// jsonl:///ABSOLUTE/PATH or https://HOST[:PORT]/PATH.
    #[arg(
        long = "audit-drain",
        env = "WORKBOOKS_AUDIT_DRAINS",
        value_delimiter = ','
    )]
    pub audit_drain: Vec<String>,
    /// PEM file of the CA that signs the TLS drains' certificates (default: the system's CAs).
    #[arg(long, env = "WORKBOOKS_AUDIT_DRAIN_CA")]
    pub audit_drain_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CompanyCommand {
    /// List companies.
    List(DeploymentArgs),
    /// Create a company, optionally owned by an existing user.
    Create {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        name: String,
        /// Email of an existing user to make owner.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Move a company's database to another PostgreSQL server (named in
    /// `database-servers`); writes pause while it is copied, none is lost.
    Move {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        company: String,
        /// The server's name in the configuration.
        #[arg(long)]
        to: String,
    },
    /// Where each company's database lives (PostgreSQL).
    Placements(DeploymentArgs),
    /// List a company's members and pending invitations.
    Members {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        company: String,
    },
    /// Show a company's security policy (the platform defaults when it set
    /// none); its owners and admins change it through the API.
    SecurityPolicy {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        company: String,
    },
    /// Destroy a de-provisioned company now, without waiting for its grace
    /// period (cannot be undone); prints the signed certificate.
    Destroy {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        company: String,
        /// Required: the destruction cannot be undone.
        #[arg(long)]
        confirm: bool,
    },
    /// Export a de-provisioned company for its owner during its grace period
    /// (the operator's decision; the export is in the company's trail).
    Export {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        company: String,
        /// The owner's age recipient (`age1…`) the export is encrypted to.
        #[arg(long)]
        recipient: String,
        /// Where to write the encrypted export (must not exist).
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
    /// Invite someone to a company (as its owner would); the link is emailed
    /// by a running server, and the token printed once.
    Invite {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        company: String,
        #[arg(long)]
        email: String,
        /// owner, admin, accountant or viewer
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user, optionally as a member of a company.
    Create {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        email: String,
        /// File holding the passphrase (first line); "-" reads standard input.
        #[arg(long)]
        passphrase_file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// Company to add the user to.
        #[arg(long, requires = "role")]
        company: Option<String>,
        /// Role in that company: owner, admin, accountant or viewer.
        #[arg(long, requires = "company")]
        role: Option<String>,
    },
    /// Remove a user's second factor (authenticator and recovery codes) when
    /// they lost both; ends their sessions, audited with the reason, and the
    /// user is told by email.
    ResetMfa {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        email: String,
        /// Why (recorded in the audit trail), e.g. a support ticket.
        #[arg(long)]
        reason: String,
    },
}

/// `workbooks bench` in a build without the `bench` feature: takes any
/// arguments, so every bench command line gets the same answer (how to build
/// it) rather than an error about its first flag.
#[cfg(not(feature = "bench"))]
#[derive(Debug, Args)]
pub struct BenchNotBuilt {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<std::ffi::OsString>,
}

/// A flag or config value that may hold a password: never printed.
#[derive(Clone)]
pub struct SecretArg(pub wb_crypto::Secret);

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for SecretArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SecretArg, D::Error> {
        String::deserialize(d).map(|s| SecretArg(wb_crypto::Secret::new(s)))
    }
}

fn secret_arg(text: &str) -> Result<SecretArg, std::convert::Infallible> {
    Ok(SecretArg(wb_crypto::Secret::new(text.to_string())))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    data: Option<PathBuf>,
    listen: Option<SocketAddr>,
    database: Option<String>,
    database_ca: Option<PathBuf>,
    /// More PostgreSQL servers for company databases: `name = "postgres://..."`.
    database_servers: Option<std::collections::BTreeMap<String, String>>,
    database_max_connections: Option<usize>,
    database_connections_per_company: Option<usize>,
    object_store: Option<String>,
    master_key_file: Option<PathBuf>,
    master_key_command: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_http: Option<bool>,
    log_format: Option<String>,
    audit_failure_policy: Option<String>,
    monitor: Option<wb_core::monitor::MonitorConfig>,
    audit_drain: Option<Vec<String>>,
    audit_drain_ca: Option<PathBuf>,
    /// Alert when a company's oldest unshipped change is older than this (default 60).
    backup_lag_alert_secs: Option<u64>,
    /// Hours between scheduled backup verifications (default 24; 0 disables).
    backup_verify_every_hours: Option<u64>,
    /// A company gets a snapshot this many hours after its last one, once it changed (default 24).
    snapshot_every_hours: Option<u64>,
    /// ...or once this many records were shipped since its last one (default 100000).
    snapshot_every_records: Option<i64>,
    /// Days of point-in-time restore kept (default 7).
    pitr_days: Option<u64>,
    /// Days daily snapshots are kept (default 30).
    snapshot_retention_days: Option<u64>,
    /// Company admins may push scheduled exports to file:///… directories
    /// inside this absolute directory (default: none, s3:// only).
    export_file_root: Option<PathBuf>,
    /// Allow scheduled-export endpoints on loopback or private addresses
    /// (a local MinIO); default false.
    export_allow_private_endpoints: Option<bool>,
    /// Largest attachment accepted, in MiB (default 1024).
    file_max_mib: Option<u64>,
    /// How long one attachment upload may take in all, in minutes (default 60).
    file_upload_timeout_minutes: Option<u64>,
    /// Connections served at once (default 1024); more wait until one closes.
    max_connections: Option<usize>,
    /// Connections from one address at once (default 256); more are closed.
    max_connections_per_address: Option<usize>,
    /// Seconds a client has to finish the TLS handshake (default 10).
    tls_handshake_timeout_seconds: Option<u64>,
    /// Seconds a request's head may take to arrive, also the longest wait
    /// for the next request on an idle HTTP/1.1 connection (default 10).
    header_read_timeout_seconds: Option<u64>,
    /// Seconds a connection may stay without a request in flight, or a
    /// client read nothing of a response (default 60).
    idle_timeout_seconds: Option<u64>,
    /// The slowest a request body may arrive, bytes per second (default
    /// 16384; 0 turns the check off).
    body_min_bytes_per_second: Option<u64>,
    /// ...measured over windows of this many seconds of waiting (default 10).
    body_min_rate_window_seconds: Option<u64>,
    /// Customer exports built at once on this node (default: half the cores, at least 1).
    max_concurrent_exports: Option<usize>,
    /// ...and for one company (default 1).
    max_concurrent_exports_per_company: Option<usize>,
    /// See `--smtp-url` (the flag or WORKBOOKS_SMTP_URL wins).
    smtp_url: Option<SecretArg>,
    /// The sender of every email (default "Work-books <no-reply@localhost>").
    mail_from: Option<String>,
    /// The console's public address, the base of links in emails (default:
    /// this server's own URL).
    public_url: Option<String>,
    /// Hours an invitation stays usable (default 168, at most 720).
    invitation_ttl_hours: Option<u64>,
    /// A staff session's absolute length in hours (default 8, 1 to 8).
    staff_session_hours: Option<i64>,
    /// Unused minutes that end a staff session (default 30, 1 to 30).
    staff_idle_minutes: Option<i64>,
    /// The longest staff access grant in minutes (default 4320, 1 to 4320).
    grant_max_minutes: Option<u32>,
    /// Days a de-provisioned company waits before it is destroyed
    /// (default 30, 1 to 90).
    deprovision_grace_days: Option<u32>,
    /// The least years any company keeps its entries and audit trail
    /// (default 10, 1 to 30): companies' retention rules never go below it.
    statutory_minimum_years: Option<u32>,
    /// The `[http]` table: trusted proxies, CORS origins, request budgets
    /// (`abuse_cfg`).
    http: Option<crate::abuse_cfg::AbuseFile>,
}

/// The `listen` key of a config file (`sandbox serve` reads only that).
pub fn config_listen(path: Option<&Path>) -> Result<Option<SocketAddr>> {
    Ok(read_config(path)?.listen)
}

fn read_config(path: Option<&Path>) -> Result<ConfigFile> {
    let Some(path) = path else {
        return Ok(ConfigFile::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.message()))
}

/// A deployment's settings after flags, environment and config file are merged.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub data: PathBuf,
    pub storage: wb_server::StorageConfig,
    pub master_key_file: Option<PathBuf>,
    /// A key provider command (`key_provider.rs`), instead of a key file.
    pub master_key_command: Option<PathBuf>,
    /// Object store URL for backups (None: `<data>/objects`).
    pub object_store: Option<String>,
    pub json: bool,
    /// Snapshot schedule and retention (config file keys).
    pub backup: wb_server::backup::BackupPolicy,
    pub backup_verify_every: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct Serve {
    pub deployment: Deployment,
    pub listen: SocketAddr,
    pub tls: wb_server::TlsMode,
    pub log_json: bool,
    pub audit_failure_policy: wb_server::config::AuditFailurePolicy,
    pub monitor: wb_core::monitor::MonitorConfig,
    pub audit_drains: Vec<wb_server::drains::DrainConfig>,
    pub backup_lag_alert: std::time::Duration,
    pub export_file_root: Option<PathBuf>,
    pub export_allow_private_endpoints: bool,
    pub file_max_bytes: u64,
    pub file_upload_timeout: std::time::Duration,
    pub connections: wb_server::config::ConnectionLimits,
    pub exports: wb_server::exports::ExportLimits,
    pub mail: wb_server::config::MailConfig,
    pub abuse: crate::abuse_cfg::Abuse,
    pub staff: wb_server::staff::StaffLimits,
    pub deprovision_grace: wb_core::lifecycle::GracePeriod,
    pub statutory_minimum: wb_core::data_retention::StatutoryMinimum,
}

impl DeploymentArgs {
    pub fn resolve(&self) -> Result<Deployment> {
        let file = read_config(self.config.as_deref())?;
        self.resolve_with(&file)
    }

    fn resolve_with(&self, file: &ConfigFile) -> Result<Deployment> {
        let object_store = self
            .object_store
            .clone()
            .or_else(|| file.object_store.clone())
            .filter(|url| !url.trim().is_empty());
        if let Some(url) = &object_store {
            wb_server::objects::ObjectStoreUrl::parse(url).context("--object-store")?;
        }
        let storage = match self.database.clone().or_else(|| file.database.clone()) {
            None => {
                if file.database_servers.is_some() {
                    bail!("database-servers needs database (the PostgreSQL control database)");
                }
                wb_server::StorageConfig::Embedded
            }
            Some(url) => {
                let ca = self
                    .database_ca
                    .clone()
                    .or_else(|| file.database_ca.clone());
                let mut config = wb_server::PostgresConfig::new(url, ca);
                if let Some(servers) = &file.database_servers {
                    config.servers = servers.clone().into_iter().collect();
                }
                if let Some(n) = file.database_max_connections {
                    config.max_connections = n;
                }
                if let Some(n) = file.database_connections_per_company {
                    config.connections_per_company = n;
                }
                if config.max_connections < 2 || config.connections_per_company < 1 {
                    bail!("database-max-connections must be at least 2 and database-connections-per-company at least 1");
                }
                wb_server::StorageConfig::Postgres(config)
            }
        };
        let (backup, backup_verify_every) = backup_policy(file)?;
        let master_key_file = self
            .master_key_file
            .clone()
            .or_else(|| file.master_key_file.clone());
        let master_key_command = self
            .master_key_command
            .clone()
            .or_else(|| file.master_key_command.clone());
        if master_key_file.is_some() && master_key_command.is_some() {
            bail!("give the master key either as a file or as a command, not both");
        }
        Ok(Deployment {
            backup,
            backup_verify_every,
            storage,
            data: self
                .data
                .clone()
                .or_else(|| file.data.clone())
                .unwrap_or_else(|| PathBuf::from("./workbooks-data")),
            master_key_file,
            master_key_command,
            object_store,
            json: self.json,
        })
    }
}

fn backup_policy(
    file: &ConfigFile,
) -> Result<(wb_server::backup::BackupPolicy, std::time::Duration)> {
    use std::time::Duration;
    let mut policy = wb_server::backup::BackupPolicy::default();
    let hours = |h: u64| Duration::from_secs(h.saturating_mul(3600));
    if let Some(h) = file.snapshot_every_hours {
        if h == 0 {
            bail!("snapshot-every-hours must be at least 1");
        }
        policy.snapshot_every = hours(h);
    }
    if let Some(n) = file.snapshot_every_records {
        if n < 1 {
            bail!("snapshot-every-records must be at least 1");
        }
        policy.snapshot_records = n;
    }
    if let Some(d) = file.pitr_days {
        if d == 0 || d > 3650 {
            bail!("pitr-days must be between 1 and 3650");
        }
        policy.retention.pitr = time::Duration::days(d as i64);
    }
    if let Some(d) = file.snapshot_retention_days {
        if d == 0 || d > 3650 {
            bail!("snapshot-retention-days must be between 1 and 3650");
        }
        policy.retention.daily = time::Duration::days(d as i64);
    }
    let verify = match file.backup_verify_every_hours {
        Some(h) => hours(h),
        None => wb_server::jobs::verifier::EVERY,
    };
    Ok((policy, verify))
}

impl ServeArgs {
    fn mail_config(&self, file: &ConfigFile) -> Result<wb_server::config::MailConfig> {
        let mut mail = wb_server::config::MailConfig {
            smtp_url: self.smtp_url.clone().or(file.smtp_url.clone()).map(|s| s.0),
            ..Default::default()
        };
        if let Some(from) = &file.mail_from {
            wb_server::mailer::mailbox(from)
                .map_err(|_| anyhow::anyhow!("mail-from is not a valid email address"))?;
            mail.from = from.clone();
        }
        if let Some(url) = &file.public_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let host_ok = rest.is_some_and(|r| {
                let host = r.split('/').next().unwrap_or("");
                !host.is_empty()
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            });
            if !host_ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("public-url must be an http(s) URL with a host");
            }
            mail.public_url = Some(url.trim_end_matches('/').to_string());
        }
        match file.invitation_ttl_hours {
            Some(hours) if !(1..=720).contains(&hours) => {
                bail!("invitation-ttl-hours must be 1 to 720")
            }
            Some(hours) => mail.invitation_ttl = std::time::Duration::from_secs(hours * 3600),
            None => {}
        }
        if let Some(url) = &mail.smtp_url {
            let from = wb_server::mailer::mailbox(&mail.from)
                .map_err(|_| anyhow::anyhow!("mail-from is not a valid email address"))?;
            wb_server::mailer::SmtpSender::from_url(url.expose(), from)?;
        }
        Ok(mail)
    }

    pub fn resolve(&self, default_data: &str) -> Result<Serve> {
        let file = read_config(self.deployment.config.as_deref())?;
        let mut deployment = self.deployment.resolve_with(&file)?;
        let connections = connection_limits(&file)?;
        let exports = export_limits(&file)?;
        let mail = self.mail_config(&file)?;
        let abuse = file.http.clone().unwrap_or_default().resolve()?;
        let defaults = wb_server::staff::StaffLimits::default();
        let staff = wb_server::staff::StaffLimits {
            session_hours: file.staff_session_hours.unwrap_or(defaults.session_hours),
            idle_minutes: file.staff_idle_minutes.unwrap_or(defaults.idle_minutes),
            grant_max_minutes: file.grant_max_minutes.unwrap_or(defaults.grant_max_minutes),
        };
        staff.check().map_err(|e| anyhow::anyhow!(e))?;
        let deprovision_grace = match file.deprovision_grace_days {
            Some(days) => wb_core::lifecycle::GracePeriod::days(days)
                .map_err(|e| anyhow::anyhow!("deprovision-grace-days: {e}"))?,
            None => Default::default(),
        };
        let statutory_minimum = match file.statutory_minimum_years {
            Some(years) => wb_core::data_retention::StatutoryMinimum::years(years)
                .map_err(|e| anyhow::anyhow!("statutory-minimum-years: {e}"))?,
            None => Default::default(),
        };
        let mut connections = connections;
        connections.max_header_bytes = abuse.max_header_bytes;
        if self.deployment.data.is_none() && file.data.is_none() {
            deployment.data = PathBuf::from(default_data);
        }
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443)));
        let insecure = self.insecure_http || file.insecure_http.unwrap_or(false);
        let cert = self.tls_cert.clone().or_else(|| file.tls_cert.clone());
        let key = self.tls_key.clone().or_else(|| file.tls_key.clone());
        let tls = match (insecure, cert, key) {
            (true, None, None) => wb_server::TlsMode::InsecureHttp,
            (true, _, _) => bail!("--insecure-http cannot be combined with --tls-cert/--tls-key"),
            (false, Some(cert), Some(key)) => wb_server::TlsMode::Files { cert, key },
            (false, None, None) => wb_server::TlsMode::SelfSigned,
            _ => bail!("--tls-cert and --tls-key must be given together"),
        };
        let log_format = self
            .log_format
            .clone()
            .or(file.log_format)
            .unwrap_or_else(|| "human".into());
        let log_json = match log_format.as_str() {
            "json" => true,
            "human" => false,
            other => bail!("--log-format must be human or json, not {other:?}"),
        };
        let drain_ca = self.audit_drain_ca.clone().or(file.audit_drain_ca);
        let drain_urls = if self.audit_drain.is_empty() {
            file.audit_drain.unwrap_or_default()
        } else {
            self.audit_drain.clone()
        };
        let audit_drains = drain_urls
            .iter()
            .filter(|url| !url.trim().is_empty())
            .map(|url| wb_server::drains::DrainConfig::parse(url, drain_ca.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let audit_failure_policy = self
            .audit_failure_policy
            .clone()
            .or(file.audit_failure_policy)
            .map(|p| {
                p.parse()
                    .map_err(|e: String| anyhow::anyhow!("--audit-failure-policy: {e}"))
            })
            .transpose()?
            .unwrap_or_default();
        let monitor = file.monitor.unwrap_or_default();
        monitor.validate()?;
        let backup_lag_alert = match file.backup_lag_alert_secs {
            Some(0) => bail!("backup-lag-alert-secs must be at least 1"),
            Some(secs) => std::time::Duration::from_secs(secs),
            None => wb_server::jobs::shipper::LAG_ALERT_AFTER,
        };
        let export_file_root = file.export_file_root.clone();
        if let Some(root) = &export_file_root {
            if !root.is_absolute() {
                bail!("export-file-root must be an absolute directory");
            }
        }
        let file_max_bytes = match file.file_max_mib {
            Some(0) => bail!("file-max-mib must be at least 1"),
            Some(mib) => mib.saturating_mul(1024 * 1024),
            None => wb_server::files::DEFAULT_MAX_BYTES,
        };
        let file_upload_timeout = match file.file_upload_timeout_minutes {
            Some(0) => bail!("file-upload-timeout-minutes must be at least 1"),
            Some(minutes) => std::time::Duration::from_secs(minutes.saturating_mul(60)),
            None => std::time::Duration::from_secs(60 * 60),
        };
        Ok(Serve {
            abuse,
            staff,
            deprovision_grace,
            statutory_minimum,
            mail,
            connections,
            exports,
            file_max_bytes,
            file_upload_timeout,
            export_file_root,
            export_allow_private_endpoints: file.export_allow_private_endpoints.unwrap_or(false),
            backup_lag_alert,
            audit_failure_policy,
            monitor,
            deployment,
            listen,
            tls,
            log_json,
            audit_drains,
        })
    }
}

/// Seconds from the config file: at least 1 when given.
fn seconds(
    value: Option<u64>,
    key: &str,
    default: std::time::Duration,
) -> Result<std::time::Duration> {
    match value {
        Some(0) => bail!("{key} must be at least 1"),
        Some(secs) => Ok(std::time::Duration::from_secs(secs)),
        None => Ok(default),
    }
}

fn connection_limits(file: &ConfigFile) -> Result<wb_server::config::ConnectionLimits> {
    let default = wb_server::config::ConnectionLimits::default();
    let max_connections = match file.max_connections {
        Some(0) => bail!("max-connections must be at least 1"),
        Some(n) => n,
        None => default.max_connections,
    };
    let default_rate = default.body_min_rate.unwrap_or(wb_server::config::MinRate {
        bytes_per_second: 16 * 1024,
        window: std::time::Duration::from_secs(10),
    });
    let window = seconds(
        file.body_min_rate_window_seconds,
        "body-min-rate-window-seconds",
        default_rate.window,
    )?;
    let body_min_rate = match file.body_min_bytes_per_second {
        Some(0) => None,
        Some(bytes_per_second) => Some(wb_server::config::MinRate {
            bytes_per_second,
            window,
        }),
        None => Some(wb_server::config::MinRate {
            window,
            ..default_rate
        }),
    };
    Ok(wb_server::config::ConnectionLimits {
        max_connections,
        tls_handshake_timeout: seconds(
            file.tls_handshake_timeout_seconds,
            "tls-handshake-timeout-seconds",
            default.tls_handshake_timeout,
        )?,
        header_read_timeout: seconds(
            file.header_read_timeout_seconds,
            "header-read-timeout-seconds",
            default.header_read_timeout,
        )?,
        idle_timeout: seconds(
            file.idle_timeout_seconds,
            "idle-timeout-seconds",
            default.idle_timeout,
        )?,
        body_min_rate,
        // From the `[http]` table (`abuse_cfg`), set by `ServeArgs::resolve`.
        max_header_bytes: default.max_header_bytes,
        max_connections_per_address: match file.max_connections_per_address {
            Some(0) => bail!("max-connections-per-address must be at least 1"),
            Some(n) => n,
            None => default.max_connections_per_address,
        },
    })
}

fn export_limits(file: &ConfigFile) -> Result<wb_server::exports::ExportLimits> {
    let default = wb_server::exports::ExportLimits::default();
    let at_least_one = |value: Option<usize>, key: &str, default: usize| match value {
        Some(0) => bail!("{key} must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    Ok(wb_server::exports::ExportLimits {
        per_node: at_least_one(
            file.max_concurrent_exports,
            "max-concurrent-exports",
            default.per_node,
        )?,
        per_company: at_least_one(
            file.max_concurrent_exports_per_company,
            "max-concurrent-exports-per-company",
            default.per_company,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_with_config(text: &str) -> Result<Serve> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("workbooks.toml");
        std::fs::write(&path, text)?;
        let cli = Cli::try_parse_from(["workbooks", "serve", "--config", path.to_str().unwrap()])?;
        match cli.command {
            Command::Serve(args) => args.resolve("./workbooks-data"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn export_push_destinations_are_opt_in() {
        let default = serve_with_config("").unwrap();
        assert_eq!(default.export_file_root, None);
        assert!(!default.export_allow_private_endpoints);
        let open = serve_with_config(
            "export-file-root = \"/srv/exports\"\nexport-allow-private-endpoints = true\n",
        )
        .unwrap();
        assert_eq!(open.export_file_root, Some(PathBuf::from("/srv/exports")));
        assert!(open.export_allow_private_endpoints);
        let relative = serve_with_config("export-file-root = \"exports\"\n").unwrap_err();
        assert!(relative.to_string().contains("absolute"), "{relative}");
    }

    #[test]
    fn attachment_limits_come_from_the_config_file() {
        let default = serve_with_config("").unwrap();
        assert_eq!(default.file_max_bytes, wb_server::files::DEFAULT_MAX_BYTES);
        let set =
            serve_with_config("file-max-mib = 25\nfile-upload-timeout-minutes = 5\n").unwrap();
        assert_eq!(set.file_max_bytes, 25 * 1024 * 1024);
        assert_eq!(set.file_upload_timeout, std::time::Duration::from_secs(300));
        let zero = serve_with_config("file-max-mib = 0\n").unwrap_err();
        assert!(zero.to_string().contains("file-max-mib"), "{zero}");
    }

    #[test]
    fn staff_limits_come_from_the_config_file_and_only_shorten() {
        let default = serve_with_config("").unwrap();
        assert_eq!(default.staff, wb_server::staff::StaffLimits::default());
        assert_eq!(
            (
                default.staff.session_hours,
                default.staff.idle_minutes,
                default.staff.grant_max_minutes
            ),
            (8, 30, 4320)
        );
        let set = serve_with_config(
            "staff-session-hours = 4\nstaff-idle-minutes = 10\ngrant-max-minutes = 240\n",
        )
        .unwrap();
        assert_eq!(
            set.staff,
            wb_server::staff::StaffLimits {
                session_hours: 4,
                idle_minutes: 10,
                grant_max_minutes: 240
            }
        );
        for (bad, key) in [
            (
                "staff-session-hours = 9",
                "staff-session-hours must be 1 to 8",
            ),
            (
                "staff-session-hours = 0",
                "staff-session-hours must be 1 to 8",
            ),
            (
                "staff-idle-minutes = 31",
                "staff-idle-minutes must be 1 to 30",
            ),
            (
                "grant-max-minutes = 4321",
                "grant-max-minutes must be 1 to 4320",
            ),
        ] {
            let err = serve_with_config(bad).expect_err(bad).to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn connection_and_export_limits_come_from_the_config_file() {
        use std::time::Duration;
        let default = serve_with_config("").unwrap();
        assert_eq!(
            default.connections,
            wb_server::config::ConnectionLimits::default()
        );
        assert_eq!(default.exports, wb_server::exports::ExportLimits::default());
        assert!(default.exports.per_node >= 1 && default.exports.per_company == 1);
        let set = serve_with_config(
            "max-connections = 50\ntls-handshake-timeout-seconds = 3\n\
             header-read-timeout-seconds = 4\nidle-timeout-seconds = 5\n\
             body-min-bytes-per-second = 100\nbody-min-rate-window-seconds = 6\n\
             max-concurrent-exports = 3\nmax-concurrent-exports-per-company = 2\n\
             [http]\nmax-header-kib = 16\ntrusted-proxies = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        assert_eq!(
            set.connections,
            wb_server::config::ConnectionLimits {
                max_connections: 50,
                tls_handshake_timeout: Duration::from_secs(3),
                header_read_timeout: Duration::from_secs(4),
                idle_timeout: Duration::from_secs(5),
                body_min_rate: Some(wb_server::config::MinRate {
                    bytes_per_second: 100,
                    window: Duration::from_secs(6),
                }),
                max_header_bytes: 16 * 1024,
                max_connections_per_address: 256,
            }
        );
        assert_eq!(set.abuse.trusted_proxies.len(), 1);
        assert_eq!(
            set.exports,
            wb_server::exports::ExportLimits {
                per_node: 3,
                per_company: 2
            }
        );
        let off = serve_with_config("body-min-bytes-per-second = 0\n").unwrap();
        assert_eq!(off.connections.body_min_rate, None);
        for zero in [
            "max-connections = 0",
            "idle-timeout-seconds = 0",
            "header-read-timeout-seconds = 0",
            "max-concurrent-exports = 0",
        ] {
            let err = serve_with_config(&format!("{zero}\n")).unwrap_err();
            let key = zero.split(' ').next().unwrap();
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}
