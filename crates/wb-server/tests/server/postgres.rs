//! The PostgreSQL backend's security and resource boundaries, against the
//! real throwaway cluster of `wb-pgtest` (TLS only, passwords only, a service
//! role that is not a superuser):
//!
//! * a company's role reaches its own database and nothing else, and
//!   PostgreSQL itself (not Work-books) refuses the rest;
//! * a server without TLS, a certificate from another CA or for another name,
//!   a missing CA, a weaker `sslmode` and a wrong password are all refused,
//!   with one line that never carries the password;
//! * a node keeps its connections within its budget, and idle ones close.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wb_core::{EntryDraft, NewAccount, PostingDraft};
use wb_crypto::{DataKey, MasterKey};
use wb_pgtest::PgCluster;
use wb_server::{Platform, PostgresConfig, StorageConfig, SystemClock};
use wb_store::postgres::{PgEndpoint, PgTenants, Placement};
use wb_store::{Actor, StoreError, WriteContext};

// ------------------------------------------------------------------ helpers

async fn cluster() -> &'static PgCluster {
    tokio::task::spawn_blocking(PgCluster::shared)
        .await
        .expect("start the PostgreSQL test cluster")
}

async fn fresh_database(prefix: &'static str) -> String {
    let cluster = cluster().await;
    tokio::task::spawn_blocking(move || cluster.fresh_database(prefix))
        .await
        .expect("create a database")
}

/// `superuser_sql` off the async threads (it runs psql).
async fn superuser_sql(database: &str, sql: &str) -> String {
    let cluster = cluster().await;
    let (database, sql) = (database.to_string(), sql.to_string());
    tokio::task::spawn_blocking(move || cluster.superuser_sql(&database, &sql))
        .await
        .expect("superuser SQL")
}

/// A platform on a fresh control database of the test cluster; also returns
/// its master key (the platform keeps its own copy private).
async fn open_platform(
    dir: &Path,
    tune: impl FnOnce(&mut PostgresConfig),
) -> (Platform, MasterKey, String) {
    let cluster = cluster().await;
    let control_url = fresh_database("pg_control").await;
    let mut config = PostgresConfig::new(control_url.clone(), Some(cluster.ca_file().into()));
    tune(&mut config);
    let master = MasterKey::generate();
    let platform = Platform::open(
        dir,
        master.clone(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
        &StorageConfig::Postgres(config),
    )
    .await
    .expect("open a platform on PostgreSQL");
    (platform, master, control_url)
}

fn pg(platform: &Platform) -> &Arc<PgTenants> {
    platform
        .postgres
        .as_ref()
        .expect("the platform runs on PostgreSQL")
}

async fn placement(platform: &Platform, company_id: &str) -> Placement {
    pg(platform)
        .placements()
        .get(company_id)
        .await
        .expect("read the placement")
        .expect("the company has a placement")
}

async fn company_key(platform: &Platform, master: &MasterKey, company_id: &str) -> DataKey {
    let record = platform
        .control
        .company(company_id)
        .await
        .expect("read the company")
        .expect("the company exists");
    master
        .unwrap_key(&record.wrapped_dek, company_id)
        .expect("unwrap the company's DEK")
}

/// The one-line refusal of a connection attempt that must fail.
async fn refused(endpoint: &PgEndpoint) -> String {
    match endpoint.connect().await {
        Ok(_) => panic!("connecting as {endpoint:?} succeeded"),
        Err(StoreError::Connect(line)) => {
            assert_eq!(line.lines().count(), 1, "one line: {line}");
            line
        }
        Err(other) => panic!("expected a connection error, got {other:?}"),
    }
}

fn parse_refused(url: &str, ca: Option<&Path>) -> String {
    match PgEndpoint::parse(url, ca) {
        Ok(endpoint) => panic!("{endpoint:?} was accepted"),
        Err(StoreError::Connect(line)) => line,
        Err(other) => panic!("expected a configuration error, got {other:?}"),
    }
}

fn ctx() -> WriteContext {
    WriteContext {
        actor: Actor::system("test"),
        at: time::OffsetDateTime::now_utc(),
    }
}

// -------------------------------------------------------------- isolation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_role_cannot_reach_another_company_database() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster().await;
    let (platform, master, control_url) = open_platform(dir.path(), |_| {}).await;
    let a = platform.create_company("Acme A", None).await.unwrap();
    let b = platform.create_company("Bravo B", None).await.unwrap();
    let place_a = placement(&platform, &a.id).await;
    let place_b = placement(&platform, &b.id).await;
    assert_ne!(place_a.database, place_b.database);
    assert_ne!(place_a.role, place_b.role);
    let key_a = company_key(&platform, &master, &a.id).await;
    let as_a = pg(&platform).company_endpoint(&place_a, &key_a).unwrap();

    // A's role opens A's database, as itself.
    let client = as_a.connect().await.expect("A's role reaches A's database");
    let row = client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), place_a.role);
    assert_eq!(row.get::<_, String>(1), place_a.database);
    drop(client);

    // A's role, with its right password, is turned away from B's database by
    // PostgreSQL's CONNECT privilege, not by anything in Work-books.
    let line = refused(&as_a.with_database(&place_b.database)).await;
    assert!(
        line.contains("permission denied for database"),
        "A's role in B's database: {line}"
    );
    assert!(line.contains(&place_b.database), "{line}");

    // The service role that created B's database cannot open it either.
    let service = PgEndpoint::parse(
        &cluster.service_url(&place_b.database),
        Some(cluster.ca_file()),
    )
    .unwrap();
    let line = refused(&service).await;
    assert!(
        line.contains("permission denied for database"),
        "the service role in B's database: {line}"
    );

    // Nobody holds CONNECT through PUBLIC: the ACL is explicit (NULL would
    // mean the defaults, which grant PUBLIC CONNECT) and has no PUBLIC entry
    // (written `=c/owner`, `=Tc/owner`, ...).
    for place in [&place_a, &place_b] {
        let acl = superuser_sql(
            "postgres",
            &format!(
                "SELECT coalesce(datacl::text, 'NULL') FROM pg_database WHERE datname = '{}'",
                place.database
            ),
        )
        .await;
        assert!(
            acl.starts_with('{'),
            "explicit ACL on {}: {acl}",
            place.database
        );
        let entries: Vec<&str> = acl
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .collect();
        assert!(
            entries
                .iter()
                .all(|e| !e.trim_matches('"').starts_with('=')),
            "PUBLIC has privileges on {}: {acl}",
            place.database
        );
        assert!(
            entries
                .iter()
                .any(|e| e.trim_matches('"').starts_with(&format!("{}=", place.role))),
            "the owner role keeps its privileges on {}: {acl}",
            place.database
        );
        // Only the company's own role may connect.
        let can_connect = superuser_sql(
            "postgres",
            &format!(
                "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles
                 WHERE has_database_privilege(oid, '{}', 'CONNECT') AND NOT rolsuper",
                place.database
            ),
        )
        .await;
        assert_eq!(
            can_connect, place.role,
            "roles with CONNECT on {}",
            place.database
        );
    }

    // A company role is powerless outside its database.
    let attrs = superuser_sql(
        "postgres",
        &format!(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls
             FROM pg_roles WHERE rolname = '{}'",
            place_a.role
        ),
    )
    .await;
    assert_eq!(attrs, "f|f|f|f|f", "attributes of {}", place_a.role);
    let memberships = superuser_sql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
             WHERE r.rolname = '{}'",
            place_a.role
        ),
    )
    .await;
    assert_eq!(memberships, "0", "{} is a member of no role", place_a.role);
    // The service role no longer belongs to the company roles it created.
    let service_memberships = superuser_sql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_auth_members m
             JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
             WHERE u.rolname = 'workbooks' AND g.rolname IN ('{}', '{}')",
            place_a.role, place_b.role
        ),
    )
    .await;
    assert_eq!(service_memberships, "0");

    // And what PostgreSQL lets it do at all, tried as A's role in A's database.
    let client = as_a.connect().await.unwrap();
    for attempt in [
        format!("CREATE DATABASE {}_x", place_a.database),
        format!("CREATE ROLE {}_x", place_a.role),
        format!("SET ROLE {}", place_b.role),
        format!("GRANT {} TO CURRENT_USER", place_b.role),
    ] {
        let error = client
            .batch_execute(&attempt)
            .await
            .expect_err(&format!("{attempt} is refused"));
        let text = error
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| error.to_string());
        assert!(
            text.contains("permission denied") || text.contains("must have admin option"),
            "{attempt}: {text}"
        );
    }
    drop(client);

    // The control database (wrapped DEKs, users, sessions) is no company's to read.
    let control_db = control_url.rsplit('/').next().unwrap().to_string();
    match as_a.with_database(&control_db).connect().await {
        Err(StoreError::Connect(line)) => {
            assert!(line.contains("permission denied"), "{line}")
        }
        Err(other) => panic!("unexpected error: {other:?}"),
        Ok(client) => {
            for table in ["companies", "users", "sessions", "placements"] {
                let error = client
                    .query(&format!("SELECT * FROM {table} LIMIT 1"), &[])
                    .await
                    .expect_err(&format!("{} reads {table}", place_a.role));
                let text = error
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| error.to_string());
                assert!(text.contains("permission denied"), "{table}: {text}");
            }
        }
    }
}

// ------------------------------------------------------------ TLS and auth

/// What a stand-in server saw of its one client: the first 8 bytes (the
/// SSLRequest) and whatever came after its answer, in clear or, when the
/// TLS handshake succeeded, inside TLS (`None`: the client broke the handshake off).
type Seen = ([u8; 8], Option<Vec<u8>>);

/// Length 8, then the SSLRequest code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Reads until the client hangs up (or 5 s pass).
async fn rest_of<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    rest
}

/// A server that answers the SSLRequest with `N` (no TLS), as a plaintext
/// PostgreSQL (or a downgrading attacker) would. Serves one client.
async fn plaintext_server() -> (u16, tokio::task::JoinHandle<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        socket.read_exact(&mut request).await.unwrap();
        socket.write_all(b"N").await.unwrap();
        (request, Some(rest_of(&mut socket).await))
    });
    (port, task)
}

/// A fresh CA (PEM) and its signer.
fn new_ca(name: &str) -> (String, rcgen::Certificate, rcgen::KeyPair) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), cert, key)
}

/// A server that does TLS with a certificate the CA `ca` signed for
/// `other.example` only (not for 127.0.0.1, where it listens).
async fn tls_server_for_another_name(
    ca: &rcgen::Certificate,
    ca_key: &rcgen::KeyPair,
) -> (u16, tokio::task::JoinHandle<Seen>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["other.example".to_string()]).unwrap();
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        socket.read_exact(&mut request).await.unwrap();
        socket.write_all(b"S").await.unwrap();
        match acceptor.accept(socket).await {
            // A client that accepted this certificate sends its startup
            // message (user name, database) now.
            Ok(mut tls) => (request, Some(rest_of(&mut tls).await)),
            Err(_) => (request, None),
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_servers_and_wrong_cas_are_refused() {
    let cluster = cluster().await;
    let ca = cluster.ca_file().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-Password-of-the-test";

    // (a) A server that does not offer TLS: refused before anything is sent in clear.
    let (port, fake) = plaintext_server().await;
    let endpoint = PgEndpoint::parse(
        &format!("postgres://someone:{secret}@127.0.0.1:{port}/books"),
        Some(&ca),
    )
    .unwrap();
    let line = refused(&endpoint).await;
    assert!(line.contains("does not support TLS"), "{line}");
    assert!(line.contains("only connects over TLS"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(!line.contains(secret), "the password leaked: {line}");
    let (request, after) = fake.await.unwrap();
    assert_eq!(request, SSL_REQUEST, "the client asks for TLS first");
    assert_eq!(
        after,
        Some(Vec::new()),
        "after N the client hangs up without sending anything in clear"
    );

    // (b) The real cluster, but trusting another CA: its certificate is refused.
    let (other_pem, other_ca, other_key) = new_ca("not the cluster's CA");
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, &other_pem).unwrap();
    let endpoint =
        PgEndpoint::parse(&cluster.service_url("postgres"), Some(&other_ca_file)).unwrap();
    let line = refused(&endpoint).await;
    assert!(
        line.contains("invalid peer certificate") || line.contains("UnknownIssuer"),
        "{line}"
    );
    assert!(line.contains("not signed by the configured CA"), "{line}");
    let service_password = service_password(cluster);
    assert!(
        !line.contains(&service_password),
        "the password leaked: {line}"
    );

    // (c) A certificate from the trusted CA, but for another name: verify-full
    // checks the name too (the cluster itself only listens where its
    // certificate is valid, so a stand-in server plays the part).
    let (port, fake) = tls_server_for_another_name(&other_ca, &other_key).await;
    let endpoint = PgEndpoint::parse(
        &format!("postgres://someone:{secret}@127.0.0.1:{port}/books"),
        Some(&other_ca_file),
    )
    .unwrap();
    let line = refused(&endpoint).await;
    assert!(line.contains("invalid peer certificate"), "{line}");
    assert!(line.contains("not valid for name"), "{line}");
    assert!(line.contains("does not name this host"), "{line}");
    assert!(!line.contains(secret), "the password leaked: {line}");
    let (request, after) = fake.await.unwrap();
    assert_eq!(request, SSL_REQUEST);
    assert_eq!(after, None, "the client broke the handshake off");

    // (d) No CA at all, or a weaker sslmode: refused before connecting.
    let url = cluster.service_url("postgres");
    let line = parse_refused(&url, None);
    assert!(line.contains("CA certificate"), "{line}");
    assert!(line.contains("--database-ca"), "{line}");
    for mode in ["disable", "allow", "prefer", "require", "verify-ca"] {
        let line = parse_refused(&format!("{url}?sslmode={mode}"), Some(&ca));
        assert!(line.contains(&format!("sslmode={mode}")), "{line}");
        assert!(line.contains("verify-full"), "{line}");
        assert!(
            !line.contains(&service_password),
            "the password leaked: {line}"
        );
    }
    // A CA file that is missing or holds no certificate is named.
    let missing = dir.path().join("missing-ca.pem");
    let line = parse_refused(&url, Some(&missing));
    assert!(line.contains(&missing.display().to_string()), "{line}");
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello, I am not a certificate\n").unwrap();
    let line = parse_refused(&url, Some(&not_pem));
    assert!(line.contains(&not_pem.display().to_string()), "{line}");
    assert!(
        !line.contains(&service_password),
        "the password leaked: {line}"
    );
    // The strict forms are accepted: sslmode=verify-full, the CA in the URL.
    let ok = PgEndpoint::parse(
        &format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display()),
        None,
    )
    .unwrap();
    let client = ok.connect().await.expect("verify-full with sslrootcert");
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the connection is encrypted");
    drop(client);

    // (e) A wrong password: PostgreSQL says so; the line never repeats it.
    let wrong = "Wr0ng-horse-battery-staple";
    let endpoint = PgEndpoint::parse(
        &format!(
            "postgres://workbooks:{wrong}@127.0.0.1:{}/postgres",
            cluster.port()
        ),
        Some(&ca),
    )
    .unwrap();
    let line = refused(&endpoint).await;
    assert!(line.contains("password authentication failed"), "{line}");
    assert!(!line.contains(wrong), "the password leaked: {line}");
    assert!(!format!("{endpoint:?}").contains(wrong), "{endpoint:?}");
}

/// The service role's password, from its URL.
fn service_password(cluster: &PgCluster) -> String {
    let url = cluster.service_url("postgres");
    let rest = url.strip_prefix("postgres://workbooks:").unwrap();
    rest.split('@').next().unwrap().to_string()
}

// ------------------------------------------------------------ connections

const MAX_CONNECTIONS: usize = 6;
const PER_COMPANY: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stay_within_the_budget_and_idle_ones_close() {
    let dir = tempfile::tempdir().unwrap();
    let (platform, _master, _control) = open_platform(dir.path(), |config| {
        config.max_connections = MAX_CONNECTIONS;
        config.connections_per_company = PER_COMPANY;
        config.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let platform = Arc::new(platform);
    let budget = pg(&platform).budget().clone();
    assert_eq!(budget.total(), MAX_CONNECTIONS);

    // Watch the budget from the first company on.
    let done = Arc::new(AtomicBool::new(false));
    let most_open = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (budget, done, most_open) = (budget.clone(), done.clone(), most_open.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                most_open.fetch_max(budget.open(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            platform
                .create_company(&format!("Budget Co {i}"), None)
                .await
                .unwrap()
                .id,
        );
    }
    let mut roles = Vec::new();
    for id in &ids {
        roles.push(placement(&platform, id).await.role);
    }
    let role_list = roles
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(",");

    // Ask PostgreSQL, too, while the companies work: per company role and in total.
    let cluster = cluster().await;
    let server_view: Arc<Mutex<(usize, HashMap<String, usize>)>> = Arc::default();
    let sampler = {
        let (done, view, role_list) = (done.clone(), server_view.clone(), role_list.clone());
        tokio::task::spawn_blocking(move || {
            let sql = format!(
                "SELECT usename, count(*) FROM pg_stat_activity
                 WHERE usename IN ({role_list}) GROUP BY usename"
            );
            let mut samples = 0;
            while !done.load(Ordering::Relaxed) || samples == 0 {
                let out = cluster.superuser_sql("postgres", &sql);
                let mut total = 0;
                let mut view = view.lock().unwrap();
                for line in out.lines().filter(|l| !l.is_empty()) {
                    let (role, count) = line.split_once('|').unwrap();
                    let count: usize = count.parse().unwrap();
                    total += count;
                    let most = view.1.entry(role.to_string()).or_default();
                    *most = (*most).max(count);
                }
                view.0 = view.0.max(total);
                samples += 1;
            }
            samples
        })
    };

    // Every company at once: a chart, entries, reads.
    let mut work = tokio::task::JoinSet::new();
    for (n, id) in ids.iter().enumerate() {
        let (platform, id) = (platform.clone(), id.clone());
        work.spawn(async move {
            let store = platform.tenant(&id).await.unwrap();
            for (code, name, kind) in [("1000", "Cash", "asset"), ("4000", "Sales", "income")] {
                store
                    .create_account(
                        NewAccount::validate(code, name, kind, None, None).unwrap(),
                        ctx(),
                    )
                    .await
                    .unwrap();
            }
            for round in 0..5 {
                let amount = format!("{}.00", 10 + n + round);
                let drafts = (0..3)
                    .map(|k| EntryDraft {
                        date: time::macros::date!(2026 - 03 - 01),
                        description: format!("sale {round}/{k}"),
                        reference: None,
                        postings: vec![
                            PostingDraft {
                                account: "1000".into(),
                                amount: amount.clone(),
                                currency: "EUR".into(),
                            },
                            PostingDraft {
                                account: "4000".into(),
                                amount: format!("-{amount}"),
                                currency: "EUR".into(),
                            },
                        ],
                    })
                    .collect();
                store.post_entries(drafts, None, ctx()).await.unwrap();
                // Reads in parallel with each other (and with the other companies).
                let (accounts, balances) = tokio::join!(
                    store.accounts(),
                    store.balances_as_of(time::macros::date!(2026 - 12 - 31))
                );
                assert_eq!(accounts.unwrap().len(), 2);
                assert_eq!(balances.unwrap().len(), 2);
            }
            let stats = store.stats().await.unwrap();
            assert_eq!(stats.entries, 15);
            id
        });
    }
    let mut finished = 0;
    while let Some(result) = work.join_next().await {
        result.expect("a company's work");
        finished += 1;
    }
    assert_eq!(finished, ids.len());
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    let samples = sampler.await.unwrap();

    let most = most_open.load(Ordering::Relaxed);
    eprintln!(
        "DEBUG most={most} samples={samples} view={:?}",
        server_view.lock().unwrap()
    );
    assert!(
        most <= MAX_CONNECTIONS,
        "{most} connections were open at once (budget {MAX_CONNECTIONS})"
    );
    assert!(most >= 2, "the run used connections ({most})");
    let (most_total, per_role) = server_view.lock().unwrap().clone();
    assert!(samples >= 1);
    assert!(
        most_total <= MAX_CONNECTIONS,
        "PostgreSQL saw {most_total} company-role connections at once (budget {MAX_CONNECTIONS})"
    );
    for (role, most) in &per_role {
        assert!(
            *most <= PER_COMPANY,
            "{role} had {most} connections (per-company cap {PER_COMPANY})"
        );
    }

    // Idle: the reaper closes every connection, while the companies stay open
    // (their writers hold no connection between batches).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(platform.tenants.open_count(), ids.len());
    assert_eq!(budget.open(), 0, "connections still open after 2 s idle");
    // PostgreSQL agrees, once the closed backends have exited.
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE usename IN ({role_list})");
    let mut left = String::new();
    for _ in 0..50 {
        left = superuser_sql("postgres", &sql).await;
        if left == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, "0", "company-role connections left on the server");

    // Work resumes after the reaper: connections open again on demand.
    let store = platform.tenant(&ids[0]).await.unwrap();
    assert_eq!(store.accounts().await.unwrap().len(), 2);
    assert!(budget.open() >= 1 && budget.open() <= MAX_CONNECTIONS);
}

/// Company creation (signup) counts against the budget too: a burst of
/// signups must not open connections beyond it. On a private cluster, so
/// every client connection PostgreSQL reports is this node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn company_creation_stays_within_the_budget() {
    let private = Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("start a private cluster"),
    );
    let url = {
        let private = private.clone();
        tokio::task::spawn_blocking(move || private.fresh_database("burst_control"))
            .await
            .unwrap()
    };
    let mut config = PostgresConfig::new(url, Some(private.ca_file().into()));
    config.max_connections = MAX_CONNECTIONS;
    config.connections_per_company = PER_COMPANY;
    config.idle_timeout = Duration::from_millis(500);
    let dir = tempfile::tempdir().unwrap();
    let platform = Arc::new(
        Platform::open(
            dir.path(),
            MasterKey::generate(),
            Arc::new(SystemClock),
            time::Duration::hours(12),
            &StorageConfig::Postgres(config),
        )
        .await
        .unwrap(),
    );

    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, private) = (done.clone(), private.clone());
        tokio::task::spawn_blocking(move || {
            let sql = "SELECT count(*) FROM pg_stat_activity
                       WHERE backend_type = 'client backend' AND usename <> 'postgres'";
            // A backend whose client has closed the connection (and given
            // its place back) is still listed until its process exits, a
            // few milliseconds later: under load, a new connection can
            // overlap with it. Two samples in a row see a real excess, which
            // the pool holds; they rarely both see such a passing overlap.
            let mut most = 0usize;
            let mut previous = 0usize;
            while !done.load(Ordering::Relaxed) {
                let now: usize = private.superuser_sql("postgres", sql).parse().unwrap();
                most = most.max(now.min(previous));
                previous = now;
            }
            most
        })
    };
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..24 {
        let platform = platform.clone();
        burst.spawn(async move {
            platform
                .create_company(&format!("Burst {i}"), None)
                .await
                .unwrap();
        });
    }
    while let Some(created) = burst.join_next().await {
        created.expect("a company creation");
    }
    done.store(true, Ordering::Relaxed);
    let most = sampler.await.unwrap();
    assert!(
        most <= MAX_CONNECTIONS,
        "PostgreSQL saw {most} connections of this node during a burst of company \
         creations (budget {MAX_CONNECTIONS})"
    );
}
