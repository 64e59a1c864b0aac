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
    pub session_ttl: time::Duration,
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
            session_ttl: time::Duration::hours(12),
        }
    }
}
