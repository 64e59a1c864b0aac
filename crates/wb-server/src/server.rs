//! Starting and stopping the HTTPS server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::Handle;
use wb_app::records::{Actor, AuditEvent, Outcome};
use wb_core::Action;

use crate::config::{ConnectionLimits, ServerConfig, TlsMode};
use crate::jobs::Jobs;
use crate::platform::Platform;
use crate::tls;
use crate::{api, connections};

pub struct RunningServer {
    pub addr: SocketAddr,
    pub https: bool,
    config_digest: String,
    handle: Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    platform: Arc<Platform>,
    jobs: Jobs,
    /// Held while the server runs (see `data_lock`).
    _data_lock: std::fs::File,
}

impl RunningServer {
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.addr
        )
    }

    /// Stops accepting, lets requests in flight finish (up to 10 s), records the stop.
    pub async fn shutdown(self) -> Result<()> {
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        self.task.await.context("server task")??;
        audit_system(&self.platform, Action::SystemShutdown, &self.config_digest).await;
        // Jobs stop last, so their final round collects the shutdown event.
        self.jobs.stop().await;
        Ok(())
    }
}

/// A digest of the configuration the process started with (no secrets in it).
fn config_digest(config: &ServerConfig) -> String {
    let text = format!("{config:?}");
    format!("sha256:{}", &wb_crypto::sha256_hex(text.as_bytes())[..16])
}

async fn audit_system(platform: &Platform, action: Action, config_digest: &str) {
    let event = AuditEvent {
        at: platform.now(),
        actor: Actor::system("process"),
        company_id: None,
        action,
        target: None,
        outcome: Outcome::Success,
        detail: Some(format!(
            "workbooks {} on node {}, config {config_digest}",
            env!("CARGO_PKG_VERSION"),
            platform.node_id
        )),
    };
    if let Err(e) = platform.control.audit(&event).await {
        tracing::error!(error = %e, action = action.as_str(), "could not audit");
    }
}

/// The email sender this node delivers with, and the base of links.
fn configure_mail(platform: &Platform, config: &ServerConfig, own_url: &str) -> Result<()> {
    let mail = &config.mail;
    let from = crate::mailer::mailbox(&mail.from)
        .map_err(|_| anyhow::anyhow!("mail-from is not a valid address: {:?}", mail.from))?;
    let sender: Arc<dyn crate::mailer::MailSender> = match &mail.smtp_url {
        Some(url) => Arc::new(crate::mailer::SmtpSender::from_url(url.expose(), from)?),
        None => Arc::new(crate::mailer::FileSender::new(
            config.data_dir.join("outbox"),
            from,
        )),
    };
    let invitation_ttl = time::Duration::try_from(mail.invitation_ttl)
        .map_err(|_| anyhow::anyhow!("invitation-ttl is out of range"))?;
    platform.set_mail_settings(crate::platform::MailSettings {
        sender: Some(sender),
        public_url: mail
            .public_url
            .clone()
            .unwrap_or_else(|| own_url.to_string()),
        invitation_ttl,
    });
    Ok(())
}

/// hyper's own limits: without a timer its header-read timeout does nothing.
fn time_limits(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limits: &ConnectionLimits,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // The request line and headers must fit (431 beyond).
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
}

/// Binds `config.listen` (or uses `listener`, e.g. one bound to port 0 by a test)
/// and serves the API over TLS unless `TlsMode::InsecureHttp`.
pub async fn start(
    platform: Arc<Platform>,
    config: &ServerConfig,
    listener: Option<std::net::TcpListener>,
) -> Result<RunningServer> {
    tls::install_crypto_provider();
    let data_lock = crate::data_lock::lock(&config.data_dir)?;
    // A sandbox of production data serves on loopback only, until its
    // expiry (kept in its encrypted control store), and pushes nothing out.
    let sandboxed;
    let config =
        match crate::sandbox::local::guard(&platform, &config.data_dir, config.listen).await? {
            Some(()) => {
                let mut c = config.clone();
                c.export_push_every = std::time::Duration::ZERO;
                c.audit_drains.clear();
                c.mail = Default::default();
                sandboxed = c;
                &sandboxed
            }
            None => config,
        };
    platform.set_export_destination_policy(crate::export_push::DestinationPolicy {
        file_root: config.export_file_root.clone(),
        allow_private_endpoints: config.export_allow_private_endpoints,
    });
    platform.set_signup_limit(config.signups_per_address_per_hour);
    config.staff.check().map_err(|e| anyhow::anyhow!(e))?;
    platform.set_staff_limits(config.staff);
    platform.set_grace_period(config.deprovision_grace);
    platform.set_statutory_minimum(config.statutory_minimum);
    platform.export_slots.set_limits(config.exports);
    let listener = match listener {
        Some(l) => l,
        None => std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?,
    };
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let limits = config.connections;
    let limiters = Arc::new(crate::rate_limit::Limiters::new(config.rate_limits));
    let app = connections::Limited::new(
        api::router(platform.clone(), config, limiters.clone())
            .into_make_service_with_connect_info::<SocketAddr>(),
        limits.max_connections,
    );
    let guard = connections::GuardAcceptor::new(&limits, &config.trusted_proxies);
    let handle = Handle::new();
    let (https, task) = match &config.tls {
        TlsMode::InsecureHttp => {
            let mut server = axum_server::from_tcp(listener)
                .acceptor(guard)
                .handle(handle.clone());
            time_limits(server.http_builder(), &limits);
            (false, tokio::spawn(server.serve(app)))
        }
        mode => {
            let (cert, key) = match mode {
                TlsMode::Files { cert, key } => (cert.clone(), key.clone()),
                _ => tls::self_signed(&config.data_dir)?,
            };
            let tls_config = RustlsConfig::from_pem_file(&cert, &key)
                .await
                .with_context(|| {
                    format!(
                        "loading TLS certificate {} and key {}",
                        cert.display(),
                        key.display()
                    )
                })?;
            let acceptor = RustlsAcceptor::new(tls_config)
                .handshake_timeout(limits.tls_handshake_timeout)
                .acceptor(guard);
            let mut server = axum_server::from_tcp(listener)
                .acceptor(acceptor)
                .handle(handle.clone());
            time_limits(server.http_builder(), &limits);
            (true, tokio::spawn(server.serve(app)))
        }
    };
    let digest = config_digest(config);
    audit_system(&platform, Action::SystemStart, &digest).await;
    platform
        .register_node()
        .await
        .map_err(|e| anyhow::anyhow!("registering this node's audit key: {e}"))?;
    platform
        .shipping
        .configure(config.backup_lag_alert, config.backup_failures_alert);
    let mut jobs = Jobs::start(platform.clone());
    jobs.add(crate::rate_limit::spawn_sweeper(limiters, jobs.stopper()));
    jobs.add(crate::monitor_job::spawn_monitor(
        platform.clone(),
        config.monitor.clone(),
        Duration::from_secs(1),
        jobs.stopper(),
    ));
    jobs.add(crate::jobs::verifier::spawn(
        platform.clone(),
        config.backup_verify_every,
        crate::jobs::verifier::FIRST_AFTER,
        jobs.stopper(),
    ));
    jobs.add(crate::grant_notices::spawn(
        platform.clone(),
        crate::grant_notices::NOTICE_EVERY,
        jobs.stopper(),
    ));
    if platform.postgres.is_some() {
        jobs.add(wb_app::company_keys::spawn_refresh(
            platform.clone(),
            wb_app::company_keys::REFRESH_EVERY,
            jobs.stopper(),
        ));
    }
    jobs.add(wb_app::destruction::spawn(
        platform.clone(),
        wb_app::destruction::DESTRUCTION_EVERY,
        jobs.stopper(),
    ));
    jobs.add(crate::jobs::snapshotter::spawn(
        platform.clone(),
        config.backup,
        jobs.stopper(),
    ));
    if !config.export_push_every.is_zero() {
        jobs.add(crate::jobs::export_pusher::spawn(
            platform.clone(),
            config.export_push_every,
            jobs.stopper(),
        ));
    }
    configure_mail(
        &platform,
        config,
        &format!("{}://{addr}", if https { "https" } else { "http" }),
    )?;
    jobs.add(crate::mail::deliverer::spawn(
        platform.clone(),
        config.mail.deliver_every,
        jobs.stopper(),
    ));
    for drain in crate::drains::spawn_all(
        platform.control.clone(),
        platform.alerts.clone(),
        &platform.node_id,
        &config.audit_drains,
        jobs.stopper(),
    ) {
        jobs.add(drain);
    }
    Ok(RunningServer {
        _data_lock: data_lock,
        config_digest: digest,
        jobs,
        addr,
        https,
        handle,
        task,
        platform,
    })
}
