//! Audit log drains: the central collection's events, forwarded to an outside
//! collector in `central_seq` order.
//!
//! Kinds (one URL each):
//! - `syslog+tcp://HOST:PORT` — RFC 5424 over TCP, octet-counting framing (RFC 6587);
//! - `syslog+tls://HOST:PORT` — the same over TLS (RFC 5425); the server
//!   certificate is verified against the CA file given with the drain, or the
//!   system's CA bundle when none is given;
//! - `jsonl:///ABSOLUTE/PATH` — one JSON record per line, fsynced per batch;
//! - `https://HOST[:PORT]/PATH` — a JSON array of records per POST; any 2xx
//!   status means delivered.
//!
//! Delivery: each drain has a cursor (`drain:<name>`) in the control store,
//! advanced only after a batch was delivered, so a collector that was down
//! receives everything it missed once it is back. The JSONL drain skips events
//! already in its file, so it never writes a duplicate even when the cursor
//! was lost. For syslog, "delivered" means written to a connection that was
//! open and not closed by the peer just before the batch; plain syslog has no
//! acknowledgement, so a receiver should deduplicate by (`source`, `seq`),
//! which every message carries.

pub mod https;
pub mod json;
pub mod jsonl;
pub mod syslog;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wb_store::{AlertStore, AuditQuery, CentralEvent, ControlStore, StoreError};

pub use json::DrainRecord;

/// Largest batch a drain sends at once.
pub const MAX_BATCH: u32 = 10_000;
/// Batch size used by `spawn_drain`.
pub const DEFAULT_BATCH: u32 = 500;
/// How often `spawn_all` drains look for new events.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait between retries after failures.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Connecting (TCP and TLS handshake) gives up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Sending one batch gives up after this long.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

const SYSLOG_TCP_PORT: u16 = 514;
const SYSLOG_TLS_PORT: u16 = 6514;

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("invalid audit drain {url:?}: {reason}")]
    Config { url: String, reason: String },
    #[error("audit drain CA file {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("audit drain I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("audit drain TLS error: {0}")]
    Tls(String),
    #[error("audit drain timed out while {0}")]
    Timeout(&'static str),
    #[error("audit drain HTTP error: {0}")]
    Http(String),
    #[error("audit drain file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("audit drain could not read its events or cursor: {0}")]
    Store(#[from] StoreError),
    #[error("audit drain internal error (a panic; see the log)")]
    Panicked,
}

/// The drains' name in logs and the `job-panicked` alert.
const JOB: &str = "audit-drain";

/// Where a drain sends events.
#[derive(Clone, PartialEq, Eq)]
pub enum DrainTarget {
    Syslog { host: String, port: u16, tls: bool },
    Jsonl { path: PathBuf },
    Https { url: reqwest::Url },
}

impl fmt::Debug for DrainTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainTarget::Syslog { host, port, tls } => f
                .debug_struct("Syslog")
                .field("host", host)
                .field("port", port)
                .field("tls", tls)
                .finish(),
            DrainTarget::Jsonl { path } => f.debug_struct("Jsonl").field("path", path).finish(),
            // Never the credentials or query string.
            DrainTarget::Https { url } => f
                .debug_struct("Https")
                .field("host", &url.host_str())
                .field("path", &url.path())
                .finish(),
        }
    }
}

/// One configured drain: its target and, for TLS targets, the CA to trust.
#[derive(Clone, PartialEq, Eq)]
pub struct DrainConfig {
    pub target: DrainTarget,
    /// PEM file of the CA(s) that sign the collector's certificate (TLS
    /// targets only; default: the system's CA bundle).
    pub ca: Option<PathBuf>,
}

impl fmt::Debug for DrainConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never prints an HTTPS URL's credentials or query string.
        f.debug_struct("DrainConfig")
            .field("target", &self.name())
            .field("ca", &self.ca)
            .finish()
    }
}

impl fmt::Display for DrainConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The URL as it may be shown: no user, password, query or fragment.
fn redacted(url: &str) -> String {
    let without_tail = url.split(['?', '#']).next().unwrap_or("");
    match without_tail.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            let path = if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            };
            format!("{scheme}://{host}{path}")
        }
        None => without_tail.chars().take(64).collect(),
    }
}

fn bad(url: &str, reason: impl Into<String>) -> DrainError {
    DrainError::Config {
        url: redacted(url),
        reason: reason.into(),
    }
}

impl DrainConfig {
    /// Parses a drain URL; `ca` applies to the TLS kinds and is ignored by the others.
    pub fn parse(url: &str, ca: Option<PathBuf>) -> Result<DrainConfig, DrainError> {
        const KINDS: &str = "expected syslog+tcp://HOST:PORT, syslog+tls://HOST:PORT, \
                             jsonl:///ABSOLUTE/PATH or https://HOST[:PORT]/PATH";
        let text = url.trim();
        let parsed = reqwest::Url::parse(text).map_err(|e| bad(text, format!("{e}; {KINDS}")))?;
        let target = match parsed.scheme() {
            scheme @ ("syslog+tcp" | "syslog+tls") => {
                let tls = scheme == "syslog+tls";
                // IPv6 literals come bracketed: "[::1]".
                let host = parsed
                    .host_str()
                    .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad(text, "a syslog drain needs a host"))?
                    .to_string();
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err(bad(text, "a syslog drain URL takes no credentials"));
                }
                if !matches!(parsed.path(), "" | "/")
                    || parsed.query().is_some()
                    || parsed.fragment().is_some()
                {
                    return Err(bad(text, "a syslog drain URL takes no path or query"));
                }
                let port = parsed.port().unwrap_or(if tls {
                    SYSLOG_TLS_PORT
                } else {
                    SYSLOG_TCP_PORT
                });
                if port == 0 {
                    return Err(bad(text, "port 0 is not a collector's port"));
                }
                DrainTarget::Syslog { host, port, tls }
            }
            "jsonl" => {
                if parsed.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(bad(
                        text,
                        "a JSONL drain names a local file: jsonl:///ABSOLUTE/PATH (three slashes)",
                    ));
                }
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(bad(text, "a JSONL drain URL takes no query"));
                }
                let path = parsed
                    .to_file_path()
                    .map_err(|()| bad(text, "not an absolute file path"))?;
                if !path.is_absolute() || path.file_name().is_none() {
                    return Err(bad(text, "the JSONL drain needs an absolute file path"));
                }
                DrainTarget::Jsonl { path }
            }
            "https" => {
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(bad(text, "an HTTPS drain needs a host"));
                }
                if parsed.fragment().is_some() {
                    return Err(bad(text, "an HTTPS drain URL takes no fragment"));
                }
                DrainTarget::Https { url: parsed }
            }
            "http" => {
                return Err(bad(
                    text,
                    "audit events are not sent over plain HTTP; use https://",
                ))
            }
            "syslog" | "syslog+udp" | "udp" => {
                return Err(bad(
                    text,
                    format!("syslog over UDP loses events silently; {KINDS}"),
                ))
            }
            other => return Err(bad(text, format!("unknown drain kind {other:?}; {KINDS}"))),
        };
        let ca = match target {
            DrainTarget::Syslog { tls: true, .. } | DrainTarget::Https { .. } => ca,
            _ => None,
        };
        Ok(DrainConfig { target, ca })
    }

    /// A stable name without secrets (no credentials, no query): names the
    /// drain's cursor (`drain:<name>`) and appears in logs.
    pub fn name(&self) -> String {
        match &self.target {
            DrainTarget::Syslog { host, port, tls } => {
                let scheme = if *tls { "syslog+tls" } else { "syslog+tcp" };
                if host.contains(':') {
                    format!("{scheme}://[{host}]:{port}")
                } else {
                    format!("{scheme}://{host}:{port}")
                }
            }
            DrainTarget::Jsonl { path } => format!("jsonl://{}", path.display()),
            DrainTarget::Https { url } => format!(
                "https://{}:{}{}",
                url.host_str().unwrap_or_default(),
                url.port_or_known_default().unwrap_or(443),
                url.path()
            ),
        }
    }

    /// A drain for this target. Reads the CA file but connects lazily: the
    /// first `send` connects, and a failed one reconnects on the next.
    pub fn open(&self) -> Result<Box<dyn Drain>, DrainError> {
        Ok(match &self.target {
            DrainTarget::Syslog { host, port, tls } => {
                let tls = if *tls {
                    Some(tls_client_config(self.ca.as_deref())?)
                } else {
                    None
                };
                Box::new(syslog::SyslogDrain::new(host.clone(), *port, tls)?)
            }
            DrainTarget::Jsonl { path } => Box::new(jsonl::JsonlDrain::new(path.clone())),
            DrainTarget::Https { url } => Box::new(https::HttpsDrain::new(
                url.clone(),
                tls_client_config(self.ca.as_deref())?,
            )?),
        })
    }
}

impl std::str::FromStr for DrainConfig {
    type Err = DrainError;
    fn from_str(s: &str) -> Result<DrainConfig, DrainError> {
        DrainConfig::parse(s, None)
    }
}

/// A collector that events are sent to.
#[async_trait]
pub trait Drain: Send {
    /// Delivers the events, in order. `Ok` only when every one was delivered;
    /// on `Err` none is taken as delivered (a retry sends them all again).
    async fn send(&mut self, events: &[CentralEvent]) -> Result<(), DrainError>;
}

/// The cursor of drain `name` in the control store.
pub fn cursor_name(name: &str) -> String {
    format!("drain:{name}")
}

/// Sends the next batch (at most `batch` events) after the drain's cursor and
/// advances the cursor to the last event sent. Returns how many were sent;
/// on error the cursor is left where it was.
pub async fn forward_once(
    control: &dyn ControlStore,
    name: &str,
    drain: &mut dyn Drain,
    batch: u32,
) -> Result<usize, DrainError> {
    let cursor = cursor_name(name);
    let after = control.cursor(&cursor).await?;
    let events = control
        .central_events(AuditQuery {
            after,
            limit: batch.clamp(1, MAX_BATCH),
            ..AuditQuery::default()
        })
        .await?;
    let Some(last) = events.last().map(|e| e.central_seq) else {
        return Ok(0);
    };
    drain.send(&events).await?;
    control.set_cursor(&cursor, last).await?;
    Ok(events.len())
}

/// Wait after `failures` consecutive failures: doubling from `interval`, at most `BACKOFF_MAX`.
fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.min(16);
    interval.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Forwards events to one drain until `stop` becomes true (or its sender is
/// dropped): a batch every `interval`, at once while there is a backlog, and
/// with exponential backoff (reconnecting) after failures.
pub fn spawn_drain(
    control: Arc<dyn ControlStore>,
    node: String,
    name: String,
    config: DrainConfig,
    interval: Duration,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    spawn_drain_alerting(control, None, node, name, config, interval, stop)
}

/// [`spawn_drain`], raising the `job-panicked` alert in `alerts` when
/// sending a batch panics. A panic is caught (`crate::runner::catch`) and
/// taken as a failed delivery: the drain reconnects and retries with backoff.
pub fn spawn_drain_alerting(
    control: Arc<dyn ControlStore>,
    alerts: Option<Arc<dyn AlertStore>>,
    node: String,
    name: String,
    config: DrainConfig,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let interval = interval.clamp(Duration::from_millis(10), Duration::from_secs(3600));
    tokio::spawn(async move {
        let mut drain: Option<Box<dyn Drain>> = None;
        let mut failures: u32 = 0;
        let mut was_failing = false;
        loop {
            if *stop.borrow() {
                break;
            }
            let mut wait = interval;
            if drain.is_none() {
                match config.open() {
                    Ok(d) => drain = Some(d),
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        wait = backoff(interval, failures);
                        tracing::error!(drain = %name, error = %e, "cannot open the audit drain");
                    }
                }
            }
            // One node delivers to a drain at a time; the cursor is shared.
            let lease = format!("drain:{name}");
            if !crate::runner::hold_lease(&*control, &node, &lease).await {
                if crate::runner::pause(&mut stop, interval).await {
                    break;
                }
                continue;
            }
            if let Some(d) = drain.as_mut() {
                let batch = forward_once(&*control, &name, d.as_mut(), DEFAULT_BATCH);
                let sent = match crate::runner::catch(JOB, &name, batch).await {
                    Ok(sent) => sent,
                    Err(panicked) => {
                        if let Some(alerts) = &alerts {
                            let now = time::OffsetDateTime::now_utc();
                            crate::runner::alert_panic(&**alerts, &panicked, None, now).await;
                        }
                        Err(DrainError::Panicked)
                    }
                };
                match sent {
                    Ok(sent) => {
                        if was_failing {
                            tracing::info!(drain = %name, "audit drain delivering again");
                            was_failing = false;
                        }
                        failures = 0;
                        if sent == DEFAULT_BATCH as usize {
                            wait = Duration::ZERO;
                        }
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        wait = backoff(interval, failures);
                        if !matches!(e, DrainError::Store(_)) {
                            // Start afresh: new connection, file reopened and checked.
                            drain = None;
                        }
                        if !was_failing || failures % 10 == 1 {
                            tracing::warn!(drain = %name, error = %e, retry_in = ?wait,
                                "audit drain delivery failed; will retry from the same event");
                        }
                        was_failing = true;
                    }
                }
            }
            if wait.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Starts one task per distinct drain (by name), checking every
/// `DEFAULT_INTERVAL`; a panic while sending raises the `job-panicked` alert
/// in `alerts`.
pub fn spawn_all(
    control: Arc<dyn ControlStore>,
    alerts: Arc<dyn AlertStore>,
    node: &str,
    configs: &[DrainConfig],
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut names = std::collections::HashSet::new();
    configs
        .iter()
        .filter(|c| names.insert(c.name()))
        .map(|c| {
            tracing::info!(drain = %c, "starting audit drain");
            spawn_drain_alerting(
                control.clone(),
                Some(alerts.clone()),
                node.to_string(),
                c.name(),
                c.clone(),
                DEFAULT_INTERVAL,
                stop.clone(),
            )
        })
        .collect()
}

const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, DrainError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let ca_err = |reason: String| DrainError::Ca {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| ca_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ca_err("no usable PEM certificate in it".into()));
    }
    Ok(roots)
}

/// A rustls client configuration (ring provider, safe defaults) trusting the
/// given CA file, or the system's CA bundle. Certificates are always verified.
pub fn tls_client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, DrainError> {
    let roots = match ca {
        Some(path) => load_roots(path)?,
        None => {
            let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
            let bundle = env
                .into_iter()
                .chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    DrainError::Tls(
                        "no CA file given (--audit-drain-ca) and no system CA bundle found".into(),
                    )
                })?;
            load_roots(&bundle)?
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| DrainError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An error and its causes on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_never_show_credentials() {
        let err = DrainConfig::parse(
            "http://alice:s3cret@collector.example/in?token=t0k3n#frag",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            !err.contains("s3cret") && !err.contains("t0k3n") && !err.contains("alice"),
            "{err}"
        );
        assert!(err.contains("collector.example"), "{err}");
    }

    #[test]
    fn parses_each_kind() {
        let c = DrainConfig::parse("syslog+tcp://logs.example:1514", None).unwrap();
        assert_eq!(
            c.target,
            DrainTarget::Syslog {
                host: "logs.example".into(),
                port: 1514,
                tls: false
            }
        );
        assert_eq!(c.name(), "syslog+tcp://logs.example:1514");

        let c = DrainConfig::parse("syslog+tls://[::1]", Some("/ca.pem".into())).unwrap();
        assert_eq!(
            c.target,
            DrainTarget::Syslog {
                host: "::1".into(),
                port: 6514,
                tls: true
            }
        );
        assert_eq!(c.ca, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.name(), "syslog+tls://[::1]:6514");

        let c = DrainConfig::parse("jsonl:///var/log/wb/audit.jsonl", Some("/ca".into())).unwrap();
        assert_eq!(
            c.target,
            DrainTarget::Jsonl {
                path: "/var/log/wb/audit.jsonl".into()
            }
        );
        assert_eq!(c.ca, None);

        let c = DrainConfig::parse("https://u:secret@collector:8443/in?token=abc", None).unwrap();
        assert_eq!(c.name(), "https://collector:8443/in");
        assert!(!format!("{c:?}").contains("secret"));
        assert!(!format!("{c:?}").contains("abc"));
    }

    #[test]
    fn refuses_anything_else() {
        for url in [
            "",
            "logs.example:514",
            "syslog://host:514",
            "syslog+udp://host:514",
            "http://host/in",
            "ftp://host/x",
            "syslog+tcp://host:514/path",
            "syslog+tcp://:514",
            "jsonl://host/file.jsonl",
            "jsonl:relative.jsonl",
            "jsonl:///",
            "https://",
            "https://host/in#frag",
        ] {
            let err = DrainConfig::parse(url, None).unwrap_err();
            assert!(matches!(err, DrainError::Config { .. }), "{url}: {err:?}");
        }
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let i = Duration::from_millis(100);
        assert_eq!(backoff(i, 1), Duration::from_millis(200));
        assert_eq!(backoff(i, 3), Duration::from_millis(800));
        assert_eq!(backoff(i, 1000), BACKOFF_MAX);
    }
}
