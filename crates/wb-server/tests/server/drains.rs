//! Audit log drains, end to end: a real rsyslog collector over TCP (with an
//! outage in the middle), syslog over TLS against an in-test rustls collector
//! (and a wrong CA refused), a JSON-lines file verified offline, and an HTTPS
//! collector that fails for a while. Every delivery is checked for loss and
//! duplication by (source, seq).

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::watch;
use wb_core::audit::{verify, AuditFields, GENESIS};
use wb_core::Action;
use wb_crypto::DataKey;
use wb_server::drains::{
    cursor_name, forward_once, spawn_drain, DrainConfig, DrainError, DrainRecord,
};
use wb_store::sqlite::SqliteControl;
use wb_store::{ControlStore, StoredAuditEvent};

// ---------------------------------------------------------------- sources

/// One source chain whose events are built and hashed like the real ones.
struct Chain {
    source: String,
    company: Option<String>,
    seq: i64,
    prev: String,
    all: Vec<StoredAuditEvent>,
}

impl Chain {
    fn new(source: &str, company: Option<&str>) -> Chain {
        Chain {
            source: source.into(),
            company: company.map(str::to_string),
            seq: 0,
            prev: GENESIS.into(),
            all: Vec::new(),
        }
    }

    fn next(&mut self, n: usize) -> Vec<StoredAuditEvent> {
        let mut out = Vec::new();
        for _ in 0..n {
            self.seq += 1;
            let seq = self.seq;
            let fields = AuditFields {
                at: format!(
                    "2026-03-01T10:{:02}:{:02}.123456789Z",
                    (seq / 60) % 60,
                    seq % 60
                ),
                // Some actors need SD-PARAM escaping.
                actor: if seq % 4 == 0 {
                    r#"api_key:k"1]\x"#.into()
                } else {
                    "user:u1".into()
                },
                auth: "session".into(),
                client: "127.0.0.1".into(),
                request_id: format!("req-{seq}"),
                company_id: self.company.clone().unwrap_or_default(),
                action: if seq % 3 == 0 {
                    Action::AuthLogin.into()
                } else {
                    Action::EntryPost.into()
                },
                target: format!("entry:{seq}"),
                outcome: if seq % 5 == 0 {
                    "failure".into()
                } else {
                    "success".into()
                },
                detail: if seq % 7 == 0 {
                    "reason \"quoted\" [bracket] \\ é ✓".into()
                } else {
                    String::new()
                },
            };
            let hash = fields.hash(&self.prev, seq);
            let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
            let event = StoredAuditEvent {
                seq,
                at: fields.at.clone(),
                actor: fields.actor.clone(),
                auth: fields.auth.clone(),
                client: opt(&fields.client),
                request_id: opt(&fields.request_id),
                company_id: self.company.clone(),
                action: fields.action.clone(),
                target: opt(&fields.target),
                outcome: fields.outcome.clone(),
                detail: opt(&fields.detail),
                prev_hash: self.prev.clone(),
                hash: hash.clone(),
            };
            self.prev = hash;
            self.all.push(event.clone());
            out.push(event);
        }
        out
    }

    async fn append(&mut self, control: &dyn ControlStore, n: usize) {
        let events = self.next(n);
        let added = control
            .central_append(&self.source, "node-1", events.clone())
            .await
            .unwrap();
        assert_eq!(added, n);
    }
}

fn control_store(dir: &Path) -> Arc<dyn ControlStore> {
    Arc::new(SqliteControl::open(&dir.join("control.db"), &DataKey::generate()).unwrap())
}

fn free_port() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the records are exactly the given chains' events, each once, in
/// `central_seq` order, and that each source verifies offline.
fn assert_exactly_once(records: &[DrainRecord], chains: &[&Chain]) {
    let total: usize = chains.iter().map(|c| c.all.len()).sum();
    let mut seen = HashSet::new();
    for r in records {
        assert!(
            seen.insert((r.source.clone(), r.seq)),
            "duplicate: {} #{}",
            r.source,
            r.seq
        );
    }
    assert_eq!(records.len(), total, "lost events");
    for pair in records.windows(2) {
        assert!(pair[0].central_seq < pair[1].central_seq, "out of order");
    }
    for chain in chains {
        let mine: Vec<StoredAuditEvent> = records
            .iter()
            .filter(|r| r.source == chain.source)
            .map(DrainRecord::to_stored)
            .collect();
        assert_eq!(mine, chain.all, "events of {} differ", chain.source);
    }
    verify_offline(records);
}

/// What the lead's `audit verify --file` does: per source, `verify` over `to_stored().chained()`.
fn verify_offline(records: &[DrainRecord]) -> BTreeMap<String, u64> {
    let mut by_source: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in records {
        by_source
            .entry(r.source.clone())
            .or_default()
            .push(r.to_stored().chained());
    }
    by_source
        .into_iter()
        .map(|(source, events)| {
            let verified = verify(&events, &[], |_| true)
                .unwrap_or_else(|e| panic!("{source} does not verify: {e}"));
            (source, verified.events)
        })
        .collect()
}

// ---------------------------------------------------------------- rsyslog

fn rsyslogd_path() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("rsyslogd"))
                .collect()
        })
        .unwrap_or_default();
    candidates.extend(["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].map(PathBuf::from));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("rsyslogd not found: install rsyslog (apt-get install -y rsyslog); .ci/run does")
        })
}

/// A private rsyslogd: its own config, work directory, pid file and output
/// file in a temporary directory, listening with imtcp on 127.0.0.1:`port`.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    fn out_path(&self) -> PathBuf {
        self.dir.join("received.log")
    }

    fn start(dir: &Path, port: u16) -> Rsyslog {
        let dir = dir.to_path_buf();
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.join("received.log");
        // Each message as one JSON line: rsyslog's own parse of the RFC 5424
        // header and structured data, and the MSG as received.
        let conf = format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k" net.enableDNS="off")
main_queue(queue.workerThreads="1")
module(load="imtcp")
template(name="drain" type="string" option.json="on"
  string="{{\"pri\":\"%pri%\",\"app\":\"%app-name%\",\"procid\":\"%procid%\",\"msgid\":\"%msgid%\",\"host\":\"%hostname%\",\"sd\":\"%structured-data%\",\"msg\":\"%msg%\"}}\n")
ruleset(name="drain" queue.workerThreads="1") {{
  action(type="omfile" file="{out}" template="drain" flushOnTXEnd="on")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="drain")
"#,
            work = work.display(),
            out = out.display(),
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let mut r = Rsyslog {
            dir,
            port,
            child: None,
        };
        r.restart();
        r
    }

    fn restart(&mut self) {
        assert!(self.child.is_none());
        let pid_file = self.dir.join("rsyslogd.pid");
        let _ = std::fs::remove_file(&pid_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.stderr"))
            .unwrap();
        let child = Command::new(rsyslogd_path())
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting rsyslogd");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rsyslogd exited with {status}: {}", self.stderr());
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "rsyslogd did not listen on port {}: {}",
                self.port,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops rsyslogd gracefully (SIGTERM), killing it if it lingers.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default()
    }

    /// Lines received so far, parsed: (rsyslog's view of the message, the record in MSG).
    fn received(&self) -> Vec<(serde_json::Value, DrainRecord)> {
        let text = std::fs::read_to_string(self.out_path()).unwrap_or_default();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let parsed: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("rsyslog wrote {line:?}: {e}"));
                let msg = parsed["msg"].as_str().unwrap().trim_start();
                let record: DrainRecord = serde_json::from_str(msg)
                    .unwrap_or_else(|e| panic!("MSG is not a record: {msg:?}: {e}"));
                (parsed, record)
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What rsyslog parsed out of our RFC 5424 header and structured data matches the record.
fn assert_syslog_fields(parsed: &serde_json::Value, r: &DrainRecord) {
    let pri = if r.outcome == "success" { "85" } else { "84" };
    assert_eq!(parsed["pri"], pri, "{parsed}");
    assert_eq!(parsed["app"], "workbooks");
    assert_eq!(parsed["msgid"], r.action.as_str());
    assert_eq!(parsed["host"], r.node.as_str());
    let sd = parsed["sd"].as_str().unwrap();
    let escaped_actor = r
        .actor
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]");
    for needle in [
        "[workbooks@32473 ".to_string(),
        format!("seq=\"{}\"", r.seq),
        format!("source=\"{}\"", r.source),
        format!("actor=\"{escaped_actor}\""),
        format!("outcome=\"{}\"", r.outcome),
        format!("hash=\"{}\"]", r.hash),
    ] {
        assert!(sd.contains(&needle), "{needle} not in {sd}");
    }
    if let Some(company) = &r.company_id {
        assert!(sd.contains(&format!("company=\"{company}\"")), "{sd}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tcp_reaches_rsyslog_and_catches_up_after_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let control = control_store(dir.path());
    let mut platform = Chain::new("control", None);
    let mut acme = Chain::new("company:acme", Some("acme"));
    platform.append(&*control, 20).await;
    acme.append(&*control, 20).await;
    platform.append(&*control, 20).await;

    let port = free_port();
    let mut rsyslog = Rsyslog::start(dir.path(), port);
    let config = DrainConfig::parse(&format!("syslog+tcp://127.0.0.1:{port}"), None).unwrap();
    let name = config.name();
    let mut drain = config.open().unwrap();

    // Batches of 25 until caught up.
    let mut sent = Vec::new();
    loop {
        let n = forward_once(&*control, &name, drain.as_mut(), 25)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        sent.push(n);
    }
    assert_eq!(sent, vec![25, 25, 10]);
    wait_until("60 messages at rsyslog", Duration::from_secs(20), || {
        rsyslog.received().len() >= 60
    })
    .await;
    let received = rsyslog.received();
    for (parsed, record) in &received {
        assert_syslog_fields(parsed, record);
    }
    let records: Vec<DrainRecord> = received.into_iter().map(|(_, r)| r).collect();
    assert_exactly_once(&records, &[&platform, &acme]);
    let cursor = cursor_name(&name);
    assert_eq!(control.cursor(&cursor).await.unwrap(), 60);

    // The collector goes away; new events wait, the cursor stays put.
    rsyslog.stop();
    platform.append(&*control, 15).await;
    acme.append(&*control, 15).await;
    for _ in 0..3 {
        let err = forward_once(&*control, &name, drain.as_mut(), 25)
            .await
            .unwrap_err();
        assert!(
            matches!(err, DrainError::Io(_) | DrainError::Timeout(_)),
            "{err:?}"
        );
        assert_eq!(control.cursor(&cursor).await.unwrap(), 60);
    }
    drop(drain);

    // The background forwarder keeps retrying (with backoff) during the outage.
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = spawn_drain(
        control.clone(),
        "test-node".to_string(),
        name.clone(),
        config.clone(),
        Duration::from_millis(100),
        stop_rx,
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(control.cursor(&cursor).await.unwrap(), 60);
    assert_eq!(rsyslog.received().len(), 60);

    // Back on the same port: everything missed arrives, once, in order.
    rsyslog.restart();
    acme.append(&*control, 10).await;
    wait_until("100 messages at rsyslog", Duration::from_secs(30), || {
        rsyslog.received().len() >= 100
    })
    .await;
    let start = Instant::now();
    while control.cursor(&cursor).await.unwrap() != 100 {
        assert!(start.elapsed() < Duration::from_secs(10), "cursor stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = rsyslog.received();
    for (parsed, record) in &received {
        assert_syslog_fields(parsed, record);
    }
    let records: Vec<DrainRecord> = received.into_iter().map(|(_, r)| r).collect();
    assert_exactly_once(&records, &[&platform, &acme]);

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the drain task stops")
        .unwrap();
    rsyslog.stop();
}

// ---------------------------------------------------------------- TLS

struct Pki {
    ca_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    cert_pem: String,
    key_der: Vec<u8>,
    key_pem: String,
}

/// A CA and a server certificate it signs for localhost and 127.0.0.1.
fn pki(ca_name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "collector");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_der: cert.der().clone(),
        cert_pem: cert.pem(),
        key_der: key.serialize_der(),
        key_pem: key.serialize_pem(),
    }
}

fn server_tls(pki: &Pki, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pki.key_der.clone().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![pki.cert_der.clone()], key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A syslog-over-TLS collector: reads octet-counted frames from every connection.
async fn tls_collector(config: Arc<rustls::ServerConfig>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let sink = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let sink = sink.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return; // refused handshakes end here
                };
                let mut reader = BufReader::new(tls);
                loop {
                    let mut len = Vec::new();
                    match reader.read_until(b' ', &mut len).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let len: usize = std::str::from_utf8(&len[..len.len() - 1])
                        .unwrap()
                        .parse()
                        .expect("octet count");
                    let mut msg = vec![0; len];
                    if reader.read_exact(&mut msg).await.is_err() {
                        return;
                    }
                    sink.lock().unwrap().push(String::from_utf8(msg).unwrap());
                }
            });
        }
    });
    (port, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tls_verifies_the_collector_and_refuses_a_wrong_ca() {
    let dir = tempfile::tempdir().unwrap();
    let control = control_store(dir.path());
    let mut platform = Chain::new("control", None);
    platform.append(&*control, 15).await;

    let good = pki("Good test CA");
    let other = pki("Other test CA");
    let ca_file = dir.path().join("ca.pem");
    let wrong_ca_file = dir.path().join("wrong-ca.pem");
    std::fs::write(&ca_file, &good.ca_pem).unwrap();
    std::fs::write(&wrong_ca_file, &other.ca_pem).unwrap();
    let (port, received) = tls_collector(server_tls(&good, &[])).await;

    // A wrong CA: the handshake fails, nothing is delivered, the cursor stays.
    let wrong = DrainConfig::parse(
        &format!("syslog+tls://127.0.0.1:{port}"),
        Some(wrong_ca_file),
    )
    .unwrap();
    let mut drain = wrong.open().unwrap();
    let err = forward_once(&*control, "tls-wrong", drain.as_mut(), 100)
        .await
        .unwrap_err();
    assert!(matches!(err, DrainError::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(control.cursor("drain:tls-wrong").await.unwrap(), 0);

    // No CA given: the system's CAs do not vouch for a test CA either.
    let system = DrainConfig::parse(&format!("syslog+tls://localhost:{port}"), None).unwrap();
    let refused = match system.open() {
        Err(e) => Err(e),
        Ok(mut d) => forward_once(&*control, "tls-system", d.as_mut(), 100).await,
    };
    assert!(matches!(refused, Err(DrainError::Tls(_))), "{refused:?}");
    assert_eq!(control.cursor("drain:tls-system").await.unwrap(), 0);
    assert!(received.lock().unwrap().is_empty());

    // The right CA, by IP address and by name.
    for (host, name) in [("127.0.0.1", "tls-ip"), ("localhost", "tls-name")] {
        let config = DrainConfig::parse(
            &format!("syslog+tls://{host}:{port}"),
            Some(ca_file.clone()),
        )
        .unwrap();
        let mut drain = config.open().unwrap();
        let n = forward_once(&*control, name, drain.as_mut(), 100)
            .await
            .unwrap();
        assert_eq!(n, 15);
        assert_eq!(
            forward_once(&*control, name, drain.as_mut(), 100)
                .await
                .unwrap(),
            0
        );
        assert_eq!(control.cursor(&cursor_name(name)).await.unwrap(), 15);
    }
    wait_until("30 TLS messages", Duration::from_secs(10), || {
        received.lock().unwrap().len() >= 30
    })
    .await;
    let messages = received.lock().unwrap().clone();
    assert_eq!(messages.len(), 30);
    for half in messages.chunks(15) {
        let records: Vec<DrainRecord> = half
            .iter()
            .map(|m| {
                assert!(m.starts_with("<85>1 ") || m.starts_with("<84>1 "), "{m}");
                assert!(m.contains(" workbooks - "), "{m}");
                let (header, json) = m.split_once("\"] ").expect("SD then MSG");
                let record: DrainRecord = serde_json::from_str(json).unwrap();
                assert!(header.contains(&format!("seq=\"{}\"", record.seq)), "{m}");
                assert!(header.ends_with(&format!("hash=\"{}", record.hash)), "{m}");
                record
            })
            .collect();
        assert_exactly_once(&records, &[&platform]);
    }
}

// ---------------------------------------------------------------- JSONL

fn read_jsonl(path: &Path) -> Vec<DrainRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_file_is_written_once_and_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let control = control_store(dir.path());
    let mut platform = Chain::new("control", None);
    let mut a = Chain::new("company:a", Some("a"));
    let mut b = Chain::new("company:b", Some("b"));
    platform.append(&*control, 10).await;
    a.append(&*control, 7).await;
    platform.append(&*control, 5).await;
    b.append(&*control, 3).await;

    let path = dir.path().join("audit.jsonl");
    let config = DrainConfig::parse(&format!("jsonl://{}", path.display()), None).unwrap();
    let name = config.name();
    let mut drain = config.open().unwrap();
    let mut total = 0;
    loop {
        let n = forward_once(&*control, &name, drain.as_mut(), 8)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 25);
    // Forwarding again sends nothing new.
    assert_eq!(
        forward_once(&*control, &name, drain.as_mut(), 8)
            .await
            .unwrap(),
        0
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let records = read_jsonl(&path);
    assert_exactly_once(&records, &[&platform, &a, &b]);
    let verified = verify_offline(&records);
    assert_eq!(verified["control"], 15);
    assert_eq!(verified["company:a"], 7);
    assert_eq!(verified["company:b"], 3);

    // A lost cursor does not duplicate: the file itself says what it holds.
    control.set_cursor(&cursor_name(&name), 0).await.unwrap();
    let mut reopened = config.open().unwrap();
    assert_eq!(
        forward_once(&*control, &name, reopened.as_mut(), 100)
            .await
            .unwrap(),
        25
    );
    assert_eq!(read_jsonl(&path).len(), 25);

    // A torn last line (crash mid-write) is cut off before appending.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(br#"{"central_seq":26,"source":"comp"#).unwrap();
    }
    a.append(&*control, 5).await;
    let mut after_crash = config.open().unwrap();
    assert_eq!(
        forward_once(&*control, &name, after_crash.as_mut(), 100)
            .await
            .unwrap(),
        5
    );
    let records = read_jsonl(&path);
    assert_exactly_once(&records, &[&platform, &a, &b]);

    // And an edited line is caught by the offline verification.
    let mut tampered = records.clone();
    tampered[3].detail = Some("edited".into());
    let source = tampered[3].source.clone();
    let events: Vec<_> = tampered
        .iter()
        .filter(|r| r.source == source)
        .map(|r| r.to_stored().chained())
        .collect();
    assert!(verify(&events, &[], |_| true).is_err());
}

// ---------------------------------------------------------------- HTTPS

struct Collector {
    status: AtomicU16,
    requests: AtomicUsize,
    received: Mutex<Vec<DrainRecord>>,
}

async fn ingest(
    axum::extract::State(c): axum::extract::State<Arc<Collector>>,
    axum::Json(batch): axum::Json<Vec<DrainRecord>>,
) -> axum::http::StatusCode {
    c.requests.fetch_add(1, Ordering::SeqCst);
    let status = c.status.load(Ordering::SeqCst);
    if status == 200 {
        c.received.lock().unwrap().extend(batch);
    }
    axum::http::StatusCode::from_u16(status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoint_gets_every_event_once_across_503s() {
    let dir = tempfile::tempdir().unwrap();
    let control = control_store(dir.path());
    let mut platform = Chain::new("control", None);
    let mut acme = Chain::new("company:acme", Some("acme"));
    platform.append(&*control, 7).await;
    acme.append(&*control, 5).await;

    let good = pki("HTTPS test CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &good.ca_pem).unwrap();
    let wrong_ca_file = dir.path().join("wrong.pem");
    std::fs::write(&wrong_ca_file, pki("Wrong CA").ca_pem).unwrap();
    assert!(good.cert_pem.contains("BEGIN CERTIFICATE") && good.key_pem.contains("PRIVATE KEY"));

    let collector = Arc::new(Collector {
        status: AtomicU16::new(200),
        requests: AtomicUsize::new(0),
        received: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(ingest))
        .with_state(collector.clone());
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(server_tls(&good, &[b"http/1.1"]));
    let handle = axum_server::Handle::new();
    let server = tokio::spawn(
        axum_server::from_tcp_rustls(listener, tls)
            .handle(handle.clone())
            .serve(app.into_make_service()),
    );

    let url = format!("https://localhost:{port}/ingest?token=t0ken");
    let config = DrainConfig::parse(&url, Some(ca_file)).unwrap();
    let name = config.name();
    assert!(!name.contains("t0ken"));
    let cursor = cursor_name(&name);

    // A wrong CA is refused before anything is sent.
    let wrong = DrainConfig::parse(&url, Some(wrong_ca_file)).unwrap();
    let err = forward_once(
        &*control,
        "https-wrong",
        wrong.open().unwrap().as_mut(),
        100,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DrainError::Http(_)), "{err:?}");
    assert!(!err.to_string().contains("t0ken"), "{err}");
    assert_eq!(collector.requests.load(Ordering::SeqCst), 0);

    let mut drain = config.open().unwrap();
    assert_eq!(
        forward_once(&*control, &name, drain.as_mut(), 5)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        forward_once(&*control, &name, drain.as_mut(), 100)
            .await
            .unwrap(),
        7
    );
    assert_eq!(collector.received.lock().unwrap().len(), 12);
    assert_eq!(control.cursor(&cursor).await.unwrap(), 12);

    // The collector answers 503: nothing counts as delivered.
    collector.status.store(503, Ordering::SeqCst);
    platform.append(&*control, 4).await;
    acme.append(&*control, 4).await;
    let err = forward_once(&*control, &name, drain.as_mut(), 100)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(control.cursor(&cursor).await.unwrap(), 12);

    let (stop_tx, stop_rx) = watch::channel(false);
    let task = spawn_drain(
        control.clone(),
        "test-node".to_string(),
        name.clone(),
        config.clone(),
        Duration::from_millis(100),
        stop_rx,
    );
    let before = collector.requests.load(Ordering::SeqCst);
    wait_until("retries during the outage", Duration::from_secs(10), || {
        collector.requests.load(Ordering::SeqCst) >= before + 2
    })
    .await;
    assert_eq!(control.cursor(&cursor).await.unwrap(), 12);
    assert_eq!(collector.received.lock().unwrap().len(), 12);

    // Back to 200: the backlog and newer events arrive exactly once.
    collector.status.store(200, Ordering::SeqCst);
    platform.append(&*control, 5).await;
    wait_until(
        "25 records at the collector",
        Duration::from_secs(30),
        || collector.received.lock().unwrap().len() >= 25,
    )
    .await;
    let start = Instant::now();
    while control.cursor(&cursor).await.unwrap() != 25 {
        assert!(start.elapsed() < Duration::from_secs(10), "cursor stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let records = collector.received.lock().unwrap().clone();
    assert_exactly_once(&records, &[&platform, &acme]);

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the drain task stops")
        .unwrap();
    handle.shutdown();
    let _ = server.await;
}
