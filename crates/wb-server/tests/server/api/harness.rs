//! A real Work-books HTTPS server on a free port, and a client that trusts its
//! self-signed certificate.
// Shared by the SQLCipher and PostgreSQL modules and the `alone` test binary;
// each uses part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use wb_crypto::MasterKey;
use wb_server::clock::ManualClock;
use wb_server::{
    Clock, Platform, PostgresConfig, RunningServer, ServerConfig, StorageConfig, SystemClock,
    TlsMode,
};

/// Which storage backend a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // each backend module constructs one
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A passphrase the strength check accepts.
pub const PASSPHRASE: &str = "quasar marmot plinth 47 ferrous kettle";

pub struct TestServer {
    pub platform: Arc<Platform>,
    pub storage: StorageConfig,
    pub master: MasterKey,
    pub data_dir: std::path::PathBuf,
    pub clock: Option<Arc<ManualClock>>,
    pub base: String,
    pub client: reqwest::Client,
    server: RunningServer,
    _dir: TempDir,
}

/// A company created by signup, with its owner's session.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub token: String,
}

impl Tenant {
    pub fn path(&self, rest: &str) -> String {
        format!("/api/v1/companies/{}{rest}", self.id)
    }
}

/// A response read in full.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {} {}", self.status, self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a success status and returns the JSON body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self.json()
    }

    /// Asserts 204 No Content.
    #[track_caller]
    pub fn no_content(&self) {
        assert_eq!(
            self.status.as_u16(),
            204,
            "unexpected status; body: {}",
            self.text
        );
        assert!(self.text.is_empty());
    }

    /// Asserts an RFC 9457 problem document with this status and type slug.
    #[track_caller]
    pub fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "error responses are problem documents; body: {}",
            self.text
        );
        let body = self.json();
        assert_eq!(
            body["type"].as_str(),
            Some(format!("urn:workbooks:problem:{slug}").as_str()),
            "problem type; body: {}",
            self.text
        );
        assert_eq!(
            body["status"].as_u64(),
            Some(u64::from(status)),
            "problem status field"
        );
        assert!(body["title"].is_string(), "problem title");
        assert!(body["detail"].is_string(), "problem detail");
        body
    }
}

/// A body to send.
pub enum Body {
    None,
    Json(Value),
    Raw {
        content_type: Option<&'static str>,
        bytes: Vec<u8>,
    },
}

static EMAILS: AtomicUsize = AtomicUsize::new(0);

/// A fresh email address (unique in this test process).
/// The CSRF token console tests send (cookie and form field).
pub const CONSOLE_CSRF: &str = "csrf_consoletesttoken0123456789";

pub fn fresh_email(prefix: &str) -> String {
    format!(
        "{prefix}{}@example.com",
        EMAILS.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(Arc::new(SystemClock), None, |_| {}).await
    }

    /// A server whose configuration the test adjusts first (e.g. export-push
    /// destinations); `config.data_dir` is the server's fresh data directory.
    pub async fn start_configured(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let storage = TestServer::test_storage().await;
        TestServer::start_node_with(
            Arc::new(SystemClock),
            None,
            storage,
            MasterKey::generate(),
            configure,
        )
        .await
    }

    /// A server whose platform object store the test wraps (e.g. to hold
    /// uploads at a gate) and whose configuration it adjusts.
    pub async fn start_with_objects(
        wrap: impl FnOnce(Arc<dyn object_store::ObjectStore>) -> Arc<dyn object_store::ObjectStore>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let storage = TestServer::test_storage().await;
        TestServer::start_node_wrapped(
            Arc::new(SystemClock),
            None,
            storage,
            MasterKey::generate(),
            wrap,
            configure,
        )
        .await
    }

    /// A server whose clock the test moves by hand.
    pub async fn start_manual() -> TestServer {
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        TestServer::start_with(clock.clone(), Some(clock), |_| {}).await
    }

    /// A server on a hand-moved clock whose configuration the test adjusts.
    pub async fn start_manual_configured(configure: fn(&mut ServerConfig)) -> TestServer {
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        TestServer::start_with(clock.clone(), Some(clock), configure).await
    }

    async fn start_with(
        clock: Arc<dyn Clock>,
        manual: Option<Arc<ManualClock>>,
        configure: fn(&mut ServerConfig),
    ) -> TestServer {
        let storage = TestServer::test_storage().await;
        TestServer::start_node(clock, manual, storage, MasterKey::generate(), configure).await
    }

    async fn test_storage() -> StorageConfig {
        match super::BACKEND {
            Backend::Sqlite => StorageConfig::Embedded,
            Backend::Postgres => {
                let cluster = tokio::task::spawn_blocking(wb_pgtest::PgCluster::shared)
                    .await
                    .expect("start the PostgreSQL test cluster");
                let url = tokio::task::spawn_blocking(|| cluster.fresh_database("api_control"))
                    .await
                    .expect("create a control database");
                let mut config = PostgresConfig::new(url, Some(cluster.ca_file().to_path_buf()));
                config.max_connections = 32;
                StorageConfig::Postgres(config)
            }
        }
    }

    /// A server on the given storage, with a fresh master key.
    pub async fn start_with_storage(storage: StorageConfig) -> TestServer {
        TestServer::start_node(
            Arc::new(SystemClock),
            None,
            storage,
            MasterKey::generate(),
            |_| {},
        )
        .await
    }

    /// Another node of the same deployment: same storage and master key, its
    /// own data directory (node id, node key, TLS certificate).
    pub async fn another_node(&self) -> TestServer {
        TestServer::start_node(
            Arc::new(SystemClock),
            None,
            self.storage.clone(),
            self.master.clone(),
            |_| {},
        )
        .await
    }

    /// Another node of the same deployment whose clock is this node's
    /// hand-moved clock (both see the same time).
    pub async fn another_node_on_this_clock(&self) -> TestServer {
        let clock = self.clock.clone().expect("a manual clock");
        TestServer::start_node(
            clock.clone(),
            Some(clock),
            self.storage.clone(),
            self.master.clone(),
            |_| {},
        )
        .await
    }

    async fn start_node(
        clock: Arc<dyn Clock>,
        manual: Option<Arc<ManualClock>>,
        storage: StorageConfig,
        master: MasterKey,
        configure: fn(&mut ServerConfig),
    ) -> TestServer {
        TestServer::start_node_with(clock, manual, storage, master, configure).await
    }

    async fn start_node_with(
        clock: Arc<dyn Clock>,
        manual: Option<Arc<ManualClock>>,
        storage: StorageConfig,
        master: MasterKey,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        TestServer::start_node_wrapped(clock, manual, storage, master, |o| o, configure).await
    }

    async fn start_node_wrapped(
        clock: Arc<dyn Clock>,
        manual: Option<Arc<ManualClock>>,
        storage: StorageConfig,
        master: MasterKey,
        wrap_objects: impl FnOnce(
            Arc<dyn object_store::ObjectStore>,
        ) -> Arc<dyn object_store::ObjectStore>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("temp dir");
        let platform = Platform::open(
            dir.path(),
            master.clone(),
            clock,
            time::Duration::hours(12),
            &storage,
        )
        .await
        .expect("open platform");
        let objects = wrap_objects(platform.objects.clone());
        let platform = Arc::new(platform.with_object_store(objects));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut config = ServerConfig::new(
            dir.path().to_path_buf(),
            listener.local_addr().expect("addr"),
        );
        config.tls = TlsMode::SelfSigned;
        // Every test signs up from 127.0.0.1; tests of the limit lower it.
        config.signups_per_address_per_hour = 10_000;
        // Every test's clients share 127.0.0.1 too; `abuse.rs` tests the
        // budgets with small ones.
        let plenty = wb_server::rate_limit::Budget {
            per_minute: 1_000_000,
            burst: 100_000,
        };
        config.rate_limits = wb_server::rate_limit::RateLimits {
            per_address: plenty,
            sign_in_per_address: plenty,
            per_principal: plenty,
            unauthorized_per_address: plenty,
        };
        configure(&mut config);
        let server = wb_server::start(platform.clone(), &config, Some(listener))
            .await
            .expect("start server");
        assert!(server.https, "the server speaks HTTPS by default");
        let pem = std::fs::read(dir.path().join("tls").join("cert.pem")).expect("cert.pem");
        let cert = reqwest::Certificate::from_pem(&pem).expect("parse cert");
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert)
            .redirect(reqwest::redirect::Policy::none())
            // The server closes a kept-alive connection that sends no request
            // within its header-read timeout (10 s by default): a well-behaved
            // client drops pooled connections before that, or a request can be
            // sent on one the server is closing.
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("client");
        let base = format!("https://localhost:{}", server.addr.port());
        TestServer {
            platform,
            storage,
            master,
            data_dir: dir.path().to_path_buf(),
            clock: manual,
            base,
            client,
            server,
            _dir: dir,
        }
    }

    /// Makes a company's audit table refuse every insert, as a failing disk
    /// would, by reaching beneath the server into the company's database.
    pub async fn break_company_audit(&self, company_id: &str) {
        self.company_sql(
            company_id,
            "CREATE TRIGGER broken BEFORE INSERT ON audit_events
             BEGIN SELECT RAISE(ABORT, 'I/O error'); END;",
            "CREATE FUNCTION broken() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'I/O error'; END $$;
             CREATE TRIGGER broken BEFORE INSERT ON audit_events
               FOR EACH ROW EXECUTE FUNCTION broken();",
        )
        .await;
    }

    pub async fn repair_company_audit(&self, company_id: &str) {
        self.company_sql(
            company_id,
            "DROP TRIGGER broken;",
            "DROP TRIGGER broken ON audit_events;",
        )
        .await;
    }

    /// Runs SQL in a company's own database, beneath the server (the text for
    /// this module's backend).
    pub async fn company_sql(&self, company_id: &str, sqlite: &str, postgres: &str) {
        let company = self
            .platform
            .control
            .company(company_id)
            .await
            .unwrap()
            .unwrap();
        let key = self
            .master
            .unwrap_key(&company.wrapped_dek, company_id)
            .unwrap();
        match super::BACKEND {
            Backend::Sqlite => {
                let db = wb_store::sqlite::open_encrypted(
                    &self
                        .data_dir
                        .join("companies")
                        .join(format!("{company_id}.db")),
                    &key,
                    wb_store::sqlite::OpenMode::Existing,
                )
                .unwrap();
                db.execute_batch(sqlite).unwrap();
            }
            Backend::Postgres => {
                let tenants = self.platform.postgres.as_ref().unwrap();
                let placement = tenants.placements().get(company_id).await.unwrap().unwrap();
                let client = tenants
                    .company_endpoint(&placement, &key)
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                client.batch_execute(postgres).await.unwrap();
            }
        }
    }

    /// Runs SQL in the control database beneath the running server.
    pub async fn control_sql(&self, sqlite: &str, postgres: &str) {
        control_sql(
            &self.storage,
            &self.master,
            &self.data_dir,
            sqlite,
            postgres,
        )
        .await;
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await.expect("graceful shutdown");
    }

    /// Stops the server (its background jobs run their last rounds) and keeps
    /// its platform and data for the test to inspect.
    pub async fn stop(self) -> Stopped {
        self.server.shutdown().await.expect("graceful shutdown");
        Stopped {
            platform: self.platform,
            storage: self.storage,
            master: self.master,
            data_dir: self.data_dir,
            _dir: self._dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A console page asked for with `cookie` (a session or staff cookie).
    pub async fn console_get(&self, path: &str, cookie: &str) -> Resp {
        self.send(Method::GET, path, None, Body::None, &[("cookie", cookie)])
            .await
    }

    /// A console form POST from this origin with `cookie` and the CSRF
    /// cookie [`CONSOLE_CSRF`]; the form's `_csrf` field is the caller's.
    pub async fn console_post(&self, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Resp {
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            body.append_pair(k, v);
        }
        let cookie = format!("{cookie}; __Host-wb_csrf={CONSOLE_CSRF}");
        self.send(
            Method::POST,
            path,
            None,
            Body::Raw {
                content_type: Some("application/x-www-form-urlencoded"),
                bytes: body.finish().into_bytes(),
            },
            &[("cookie", &cookie), ("origin", &self.base)],
        )
        .await
    }

    /// Sends a JSON request authenticated by a `Cookie` header only.
    pub async fn send_cookie(&self, method: Method, path: &str, cookie: &str, body: Value) -> Resp {
        self.send(method, path, None, Body::Json(body), &[("cookie", cookie)])
            .await
    }

    /// A client whose connections come from `local` (a loopback address
    /// other than 127.0.0.1), for address-based tests.
    pub fn client_from(&self, local: std::net::IpAddr) -> reqwest::Client {
        let pem = std::fs::read(self.data_dir.join("tls").join("cert.pem")).expect("cert.pem");
        let cert = reqwest::Certificate::from_pem(&pem).expect("parse cert");
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert)
            .redirect(reqwest::redirect::Policy::none())
            .local_address(local)
            .resolve("localhost", self.server.addr)
            .build()
            .expect("client")
    }

    /// `send`, from the address `local`.
    pub async fn send_from(
        &self,
        local: std::net::IpAddr,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
    ) -> Resp {
        self.send_via(&self.client_from(local), method, path, token, body, &[])
            .await
    }

    /// `send_from` with extra headers.
    pub async fn send_from_with(
        &self,
        local: std::net::IpAddr,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.send_via(&self.client_from(local), method, path, token, body, headers)
            .await
    }

    /// Sends a request with optional bearer token, body and extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.send_via(&self.client, method, path, token, body, headers)
            .await
    }

    async fn send_via(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw {
                content_type,
                bytes,
            } => {
                let req = match content_type {
                    Some(ct) => req.header(CONTENT_TYPE, ct),
                    None => req,
                };
                req.body(bytes)
            }
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path} failed: {e:?}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("read body");
        Resp {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(Method::GET, path, Some(token), Body::None, &[])
            .await
    }

    pub async fn get_anon(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None, Body::None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(token), Body::Json(body), &[])
            .await
    }

    pub async fn post_anon(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, None, Body::Json(body), &[])
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.send(Method::DELETE, path, Some(token), Body::None, &[])
            .await
    }

    /// How many messages the file sender wrote to `email` that contain
    /// `containing` (without waiting).
    pub fn delivered_count(&self, email: &str, containing: &str) -> usize {
        let Ok(entries) = std::fs::read_dir(self.data_dir.join("outbox")) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|e| e == "eml"))
            .map(|entry| {
                std::fs::read_to_string(entry.path())
                    .unwrap_or_default()
                    .replace("=\r\n", "")
                    .replace("=\n", "")
            })
            .filter(|text| text.contains(&format!("To: {email}")) && text.contains(containing))
            .count()
    }

    /// The message the file sender wrote to `email` that contains
    /// `containing`, once the deliverer ran (quoted-printable soft line
    /// breaks undone).
    pub async fn delivered(&self, email: &str, containing: &str) -> String {
        let outbox = self.data_dir.join("outbox");
        for _ in 0..100 {
            if let Ok(entries) = std::fs::read_dir(&outbox) {
                for entry in entries.flatten() {
                    let text = std::fs::read_to_string(entry.path())
                        .unwrap_or_default()
                        .replace("=\r\n", "")
                        .replace("=\n", "");
                    if entry.path().extension().is_some_and(|e| e == "eml")
                        && text.contains(&format!("To: {email}"))
                        && text.contains(containing)
                    {
                        return text;
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no message to {email} in {}", outbox.display());
    }

    pub async fn signup(&self, company_name: &str) -> Tenant {
        let email = fresh_email("owner");
        let resp = self
            .post_anon(
                "/api/v1/signup",
                json!({"company_name": company_name, "email": email, "passphrase": PASSPHRASE}),
            )
            .await;
        let body = resp.ok(201);
        let id = body["company"]["id"]
            .as_str()
            .expect("company.id")
            .to_string();
        assert_eq!(body["company"]["name"], company_name);
        assert_eq!(body["user"]["email"], email.as_str());
        let user_id = body["user"]["id"].as_str().expect("user.id").to_string();
        let token = body["token"].as_str().expect("token").to_string();
        assert!(!id.is_empty() && !user_id.is_empty() && !token.is_empty());
        Tenant {
            id,
            user_id,
            email,
            token,
        }
    }

    pub async fn login(&self, email: &str, passphrase: &str) -> Resp {
        self.post_anon(
            "/api/v1/auth/login",
            json!({"email": email, "passphrase": passphrase}),
        )
        .await
    }

    /// The tenant's owner signed in again (a session that outlived a
    /// clock moved days ahead).
    pub async fn sign_in_again(&self, tenant: &Tenant) -> Tenant {
        let token = self.login(&tenant.email, PASSPHRASE).await.ok(200)["token"]
            .as_str()
            .unwrap()
            .to_string();
        Tenant {
            token,
            ..tenant.clone()
        }
    }

    /// Creates the standard chart of accounts used across the tests.
    pub async fn chart(&self, tenant: &Tenant) {
        for (code, name, kind) in CHART {
            let resp = self
                .post(
                    &tenant.path("/accounts"),
                    &tenant.token,
                    json!({"code": code, "name": name, "type": kind}),
                )
                .await;
            let body = resp.ok(201);
            assert_eq!(body["code"], *code);
            assert_eq!(body["name"], *name);
            assert_eq!(body["type"], *kind);
            assert!(body["id"].is_string());
        }
    }

    /// Posts an entry and returns its id.
    pub async fn post_entry(&self, tenant: &Tenant, entry: Value) -> String {
        let body = self
            .post(&tenant.path("/entries"), &tenant.token, entry)
            .await
            .ok(201);
        body["id"].as_str().expect("entry id").to_string()
    }

    /// Every entry of the company, following the paging cursor.
    pub async fn all_entries(&self, tenant: &Tenant, token: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => tenant.path(&format!("/entries?limit=1000&after={a}")),
                None => tenant.path("/entries?limit=1000"),
            };
            let page = self.get(&path, token).await.ok(200);
            all.extend(page["entries"].as_array().expect("entries").iter().cloned());
            match page["next_after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => return all,
            }
        }
    }

    pub async fn trial_balance(&self, tenant: &Tenant, token: &str, as_of: &str) -> Value {
        self.get(
            &tenant.path(&format!("/reports/trial-balance?as_of={as_of}")),
            token,
        )
        .await
        .ok(200)
    }
}

pub const CHART: &[(&str, &str, &str)] = &[
    ("1000", "Cash", "asset"),
    ("1100", "Receivables", "asset"),
    ("2000", "Loans", "liability"),
    ("3000", "Capital", "equity"),
    ("4000", "Sales", "income"),
    ("5000", "Rent", "expense"),
];

/// An entry body with postings given as (account, amount, currency).
pub fn entry(date: &str, description: &str, postings: &[(&str, &str, &str)]) -> Value {
    json!({
        "date": date,
        "description": description,
        "postings": postings
            .iter()
            .map(|(a, amt, c)| json!({"account": a, "amount": amt, "currency": c}))
            .collect::<Vec<_>>(),
    })
}

/// A stopped server's platform and data.
pub struct Stopped {
    pub platform: Arc<Platform>,
    pub storage: StorageConfig,
    pub master: MasterKey,
    pub data_dir: std::path::PathBuf,
    _dir: TempDir,
}

impl Stopped {
    /// Runs SQL in the control database beneath the platform, as someone with
    /// write access to it would (the text for this module's backend).
    pub async fn control_sql(&self, sqlite: &str, postgres: &str) {
        control_sql(
            &self.storage,
            &self.master,
            &self.data_dir,
            sqlite,
            postgres,
        )
        .await;
    }
}

/// Runs SQL in a deployment's control database, beneath its platform.
async fn control_sql(
    storage: &StorageConfig,
    master: &MasterKey,
    data_dir: &std::path::Path,
    sqlite: &str,
    postgres: &str,
) {
    match storage {
        StorageConfig::Embedded => {
            let wrapped = std::fs::read(data_dir.join("control.key")).unwrap();
            let key = master
                .unwrap_key(&wrapped, "workbooks:control-plane")
                .unwrap();
            let db = wb_store::sqlite::open_encrypted(
                &data_dir.join("control.db"),
                &key,
                wb_store::sqlite::OpenMode::Existing,
            )
            .unwrap();
            db.execute_batch(sqlite).unwrap();
        }
        StorageConfig::Postgres(config) => {
            let client = wb_store::postgres::PgEndpoint::parse(
                &config.control_url,
                config.ca_file.as_deref(),
            )
            .unwrap()
            .connect()
            .await
            .unwrap();
            client.batch_execute(postgres).await.unwrap();
        }
    }
}
