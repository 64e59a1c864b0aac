//! Server configuration, built by the CLI from flags, environment and defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum TlsMode {
    /// Generate (once) and use a self-signed certificate under `<data>/tls/`.
    SelfSigned,
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Plain HTTP, only when explicitly asked for (behind a TLS-terminating proxy).
    InsecureHttp,
}

pub use wb_app::policy::{AccessKind, AuditFailurePolicy, DEFAULT_SIGNUPS_PER_ADDRESS_PER_HOUR};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: TlsMode,
    /// Largest JSON request body accepted.
    pub body_limit_bytes: usize,
    /// Largest batch-posting request body accepted.
    pub batch_body_limit_bytes: usize,
    pub request_timeout: Duration,
    /// Largest attachment accepted (bytes of the file).
    pub file_max_bytes: u64,
    /// How long one attachment upload may take in all; each piece of its
    /// body must still arrive within `request_timeout` of the last.
    pub file_upload_timeout: Duration,
    /// Thresholds and windows of the monitoring rules.
    pub monitor: wb_core::monitor::MonitorConfig,
    /// Where the central audit collection is forwarded (syslog, JSONL, HTTPS).
    pub audit_drains: Vec<crate::drains::DrainConfig>,
    /// How often every company's backup is restored into a scratch store and
    /// compared with the source (`jobs/verifier.rs`); the first round runs a
    /// minute after start. Zero disables the scheduled verification.
    pub backup_verify_every: Duration,
    /// Raise the backup-lag alert when a company's oldest unshipped change is
    /// older than this, or after this many failed shipping rounds in a row.
    pub backup_lag_alert: Duration,
    pub backup_failures_alert: u32,
    /// Snapshot schedule and retention of snapshots and segments.
    pub backup: crate::backup::BackupPolicy,
    /// Company admins may name `file:///…` export-push destinations inside
    /// this directory (self-hosting, tests). None (default): s3:// only.
    pub export_file_root: Option<PathBuf>,
    /// Allow export-push endpoints on loopback, private or link-local
    /// addresses (a local MinIO, tests). Default false: a customer could
    /// otherwise make the server send requests into its own network.
    pub export_allow_private_endpoints: bool,
    /// How often due export schedules are pushed (`jobs/export_pusher.rs`);
    /// zero disables the job (tests call `export_push::push_due` instead).
    pub export_push_every: Duration,
    /// Signups accepted from one client address per hour, counted in the
    /// control store (so across nodes); more are answered 429.
    pub signups_per_address_per_hour: u32,
    /// How many connections, and for how long slow or idle clients may hold them.
    pub connections: ConnectionLimits,
    /// How many customer exports may be built at once.
    pub exports: crate::exports::ExportLimits,
    /// Where email goes and what its links point at.
    pub mail: MailConfig,
    /// Staff session lengths and the longest access grant.
    pub staff: crate::staff::StaffLimits,
    /// How long a de-provisioned company waits before its destruction
    /// (`deprovision-grace-days`, 1 to 90; default 30).
    pub deprovision_grace: wb_core::lifecycle::GracePeriod,
    /// The least years any company keeps its entries and audit trail
    /// (`statutory-minimum-years`, 1 to 30; default 10).
    pub statutory_minimum: wb_core::data_retention::StatutoryMinimum,
    /// Proxies whose `X-Forwarded-For` names the client (empty: the
    /// socket's peer is the client, and the header is ignored).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Request budgets per address, sign-in door and account.
    pub rate_limits: crate::rate_limit::RateLimits,
    /// Origins a browser may call the API from (CORS); empty: none but
    /// the server's own.
    pub cors_origins: Vec<String>,
    /// Report, audit and register requests served at once by this node
    /// (more wait briefly, then get 503) and by one caller (more get 429).
    pub expensive: ExpensiveLimits,
}

/// How many costly reads (reports over any range, the audit trail, an
/// account register) run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpensiveLimits {
    pub per_node: usize,
    /// Per session or API key (an anonymous caller: per address).
    pub per_caller: usize,
}

impl Default for ExpensiveLimits {
    fn default() -> Self {
        ExpensiveLimits {
            per_node: 16,
            per_caller: 4,
        }
    }
}

/// Email: invitations, password resets, security notices (`wb_app::mail`).
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `smtps://user:pass@host`, `smtp://host?tls=required`, or clear SMTP
    /// to a loopback host. None: messages are written to `<data>/outbox/`.
    /// A secret (it may hold a password): never printed.
    pub smtp_url: Option<wb_crypto::Secret>,
    /// The sender of every message.
    pub from: String,
    /// The console's public address, the base of links in messages
    /// (default: this server's own URL).
    pub public_url: Option<String>,
    /// How long an invitation stays usable.
    pub invitation_ttl: Duration,
    /// How often the outbox is delivered.
    pub deliver_every: Duration,
}

impl Default for MailConfig {
    fn default() -> MailConfig {
        MailConfig {
            smtp_url: None,
            from: "Work-books <no-reply@localhost>".into(),
            public_url: None,
            invitation_ttl: Duration::from_secs(7 * 24 * 3600),
            deliver_every: wb_app::mail::deliverer::EVERY,
        }
    }
}

/// What keeps slow or idle clients from holding the server's connections
/// (`crate::connections`, `crate::body_rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// A client must finish the TLS handshake within this.
    pub tls_handshake_timeout: Duration,
    /// A request's head (request line and headers) must arrive within this,
    /// counted from when the connection is ready for it: after the
    /// handshake, or after the previous response on a kept-alive HTTP/1.1
    /// connection (so an idle HTTP/1.1 connection is closed after this too).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (any
    /// protocol), and so is one whose client reads nothing of a response
    /// for this long.
    pub idle_timeout: Duration,
    /// The slowest a request body may arrive; None: not enforced.
    pub body_min_rate: Option<MinRate>,
    /// The largest request head (request line and headers) read, in bytes
    /// (at least 8 KiB).
    pub max_header_bytes: usize,
    /// Connections from one address (IPv6: one /64) at once; trusted
    /// proxies are exempt.
    pub max_connections_per_address: usize,
}

/// At least `bytes_per_second * window` bytes of a request body must arrive
/// in each `window` of time the server spends waiting for it (the first
/// window is the grace period; time the server is busy with what it already
/// received does not count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_second: u64,
    pub window: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_min_rate: Some(MinRate {
                bytes_per_second: 16 * 1024,
                window: Duration::from_secs(10),
            }),
            max_header_bytes: 32 * 1024,
            max_connections_per_address: 256,
        }
    }
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            data_dir,
            listen,
            tls: TlsMode::SelfSigned,
            body_limit_bytes: 1024 * 1024,
            batch_body_limit_bytes: 32 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            file_max_bytes: crate::files::DEFAULT_MAX_BYTES,
            file_upload_timeout: Duration::from_secs(60 * 60),
            monitor: Default::default(),
            audit_drains: Vec::new(),
            backup_verify_every: crate::jobs::verifier::EVERY,
            backup_lag_alert: crate::jobs::shipper::LAG_ALERT_AFTER,
            backup_failures_alert: crate::jobs::shipper::FAILURES_ALERT_AFTER,
            backup: Default::default(),
            export_file_root: None,
            export_allow_private_endpoints: false,
            export_push_every: crate::jobs::export_pusher::EVERY,
            signups_per_address_per_hour: DEFAULT_SIGNUPS_PER_ADDRESS_PER_HOUR,
            connections: ConnectionLimits::default(),
            exports: Default::default(),
            mail: MailConfig::default(),
            staff: Default::default(),
            deprovision_grace: Default::default(),
            statutory_minimum: Default::default(),
            trusted_proxies: Vec::new(),
            rate_limits: Default::default(),
            cors_origins: Vec::new(),
            expensive: Default::default(),
        }
    }
}
