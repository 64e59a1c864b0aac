//! Reaching PostgreSQL: always TLS, the server verified against a configured CA
//! and its name checked against the certificate (libpq's `sslmode=verify-full`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;
use wb_crypto::Secret;

use crate::StoreError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One PostgreSQL server and database with the credentials to use there.
#[derive(Clone)]
pub struct PgEndpoint {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    ca_file: PathBuf,
}

impl std::fmt::Debug for PgEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgEndpoint({})", self.describe())
    }
}

impl PgEndpoint {
    /// Parses `postgres://user:password@host:port/database`. The CA comes from
    /// the URL's `sslrootcert`, else `ca_file`; `sslmode`, when given, must be
    /// `verify-full`: anything weaker would not authenticate the server.
    pub fn parse(url: &str, ca_file: Option<&Path>) -> Result<PgEndpoint, StoreError> {
        let bad = |why: &str| StoreError::Connect(format!("bad PostgreSQL URL: {why}"));
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(bad("it must start with postgres://"));
        }
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut root_cert = ca_file.map(Path::to_path_buf);
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" if value == "verify-full" => {}
                "sslmode" => {
                    return Err(bad(&format!(
                        "sslmode={value} is not accepted; Work-books connects with sslmode=verify-full only"
                    )))
                }
                // A server's own CA (in its URL) wins over the deployment's.
                "sslrootcert" => root_cert = Some(PathBuf::from(value)),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| bad(&e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(bad("it names no host"));
        }
        if config.get_user().is_none() {
            return Err(bad("it names no user"));
        }
        let ca_file = root_cert.ok_or_else(|| {
            StoreError::Connect(
                "PostgreSQL needs a CA certificate to verify the server: give --database-ca FILE (or sslrootcert=FILE in the URL)"
                    .into(),
            )
        })?;
        config
            .ssl_mode(SslMode::Require)
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("workbooks");
        let tls = tls_connector(&ca_file)?;
        Ok(PgEndpoint {
            config,
            tls,
            ca_file,
        })
    }

    /// The same server as another database.
    pub fn with_database(&self, database: &str) -> PgEndpoint {
        let mut next = self.clone();
        next.config.dbname(database);
        next
    }

    /// The same server and database as another role.
    pub fn with_credentials(&self, user: &str, password: &Secret) -> PgEndpoint {
        let mut next = self.clone();
        next.config.user(user).password(password.expose());
        next
    }

    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or_default()
    }

    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// `host:port`, naming the server without credentials.
    pub fn server(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "?".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }

    /// `user@host:port/database`, for messages and logs.
    pub fn describe(&self) -> String {
        format!("{}@{}/{}", self.user(), self.server(), self.database())
    }

    /// Opens a connection; its driver task runs on the current runtime.
    pub async fn connect(&self) -> Result<Client, StoreError> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| connect_error(self, &e))?;
        let label = self.describe();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(database = %label, error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

fn tls_connector(ca_file: &Path) -> Result<MakeRustlsConnect, StoreError> {
    let unreadable = |why: String| {
        StoreError::Connect(format!(
            "cannot use {} as the PostgreSQL CA: {why}",
            ca_file.display()
        ))
    };
    let bytes = std::fs::read(ca_file).map_err(|e| unreadable(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| unreadable(format!("{e:?}")))?;
        roots
            .add(cert)
            .map_err(|e| unreadable(format!("not a usable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(unreadable("no PEM certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unreadable(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// One line naming the server and the cause, never a password.
fn connect_error(endpoint: &PgEndpoint, e: &tokio_postgres::Error) -> StoreError {
    let mut causes = Vec::new();
    if let Some(db) = e.as_db_error() {
        causes.push(db.message().to_string());
    } else {
        causes.push(e.to_string());
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let text = s.to_string();
            if !causes.contains(&text) {
                causes.push(text);
            }
            source = s.source();
        }
    }
    let cause = causes.join(": ");
    let hint = if cause.contains("does not support TLS") {
        " (Work-books only connects over TLS)"
    } else if cause.contains("UnknownIssuer") || cause.contains("invalid peer certificate") {
        " (the server's certificate is not signed by the configured CA, or does not name this host)"
    } else {
        ""
    };
    StoreError::Connect(format!(
        "cannot connect to PostgreSQL {}: {cause}{hint}",
        endpoint.describe()
    ))
}
