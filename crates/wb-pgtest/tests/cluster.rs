//! The throwaway cluster is what production is meant to be: TLS only,
//! passwords only, a service role that is not a superuser.

use std::path::Path;
use std::process::{Command, Output};

use wb_pgtest::PgCluster;

/// psql (from PATH) as a client, connecting with a URL; `PG*` variables cleared.
fn psql(url: &str, sql: &str) -> Output {
    let mut cmd = Command::new("psql");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PGCONNECT_TIMEOUT", "10")
        .args(["-X", "-q", "-A", "-t", "-d", url, "-c", sql])
        .output()
        .expect("running psql")
}

fn with_params(url: &str, params: &str) -> String {
    format!("{url}?{params}")
}

fn verify_full(pg: &PgCluster, url: &str) -> String {
    with_params(
        url,
        &format!("sslmode=verify-full&sslrootcert={}", pg.ca_file().display()),
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

fn database_name(url: &str) -> &str {
    url.rsplit('/').next().expect("a database in the URL")
}

fn other_ca_pem() -> String {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "somebody else's CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn shared_cluster_is_tls_only_with_an_unprivileged_service_role() {
    let pg = PgCluster::shared();
    assert_eq!(pg.host(), "127.0.0.1");
    assert!(pg.port() > 0);
    assert!(pg.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(std::fs::read_to_string(pg.ca_file()).unwrap(), pg.ca_pem());
    assert!(
        std::ptr::eq(pg, PgCluster::shared()),
        "one cluster per process"
    );

    assert_eq!(pg.superuser_sql("postgres", "SHOW ssl"), "on");
    assert_eq!(pg.superuser_sql("postgres", "SHOW fsync"), "on");
    assert_eq!(
        pg.superuser_sql(
            "postgres",
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin \
             FROM pg_roles WHERE rolname = 'workbooks'"
        ),
        "f|t|t|t"
    );
    assert_eq!(
        pg.superuser_sql(
            "postgres",
            "SELECT rolsuper FROM pg_roles WHERE rolname='workbooks'"
        ),
        "f"
    );
    // Several statements, several rows.
    assert_eq!(
        pg.superuser_sql("postgres", "SELECT 1, 'a'; SELECT 2, 'b'"),
        "1|a\n2|b"
    );

    // Two fresh databases: different, existing, owned by the service role.
    let first = pg.fresh_database("pgtest");
    let second = pg.fresh_database("pgtest");
    assert_ne!(first, second);
    for url in [&first, &second] {
        let name = database_name(url);
        assert!(name.starts_with("pgtest_"), "{name}");
        assert_eq!(url, &pg.service_url(name));
        assert_eq!(
            pg.superuser_sql(
                "postgres",
                &format!(
                    "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{name}'"
                )
            ),
            "workbooks"
        );
        // The service URL works over verified TLS.
        let out = psql(
            &verify_full(pg, url),
            "SELECT current_user, current_database(), ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("workbooks|{name}|t"));
    }

    // Plaintext is refused by pg_hba.conf.
    let out = psql(&with_params(&first, "sslmode=disable"), "SELECT 1");
    assert!(!out.status.success(), "plaintext connection was accepted");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pg_hba.conf") && stderr.contains("no encryption"),
        "{stderr}"
    );

    // A client trusting another CA refuses the server.
    let other_ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other_ca.path(), other_ca_pem()).unwrap();
    let out = psql(
        &with_params(
            &first,
            &format!(
                "sslmode=verify-full&sslrootcert={}",
                other_ca.path().display()
            ),
        ),
        "SELECT 1",
    );
    assert!(!out.status.success(), "a foreign CA was accepted");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("certificate verify failed"), "{stderr}");

    // A wrong password is refused.
    let bad = first.replacen(&format!(":{}@", password(&first)), ":not-the-password@", 1);
    let out = psql(&verify_full(pg, &bad), "SELECT 1");
    assert!(!out.status.success(), "a wrong password was accepted");
    assert!(
        text(&out.stderr).contains("password authentication failed"),
        "{}",
        text(&out.stderr)
    );
}

fn password(url: &str) -> &str {
    let rest = url.strip_prefix("postgres://workbooks:").unwrap();
    &rest[..rest.find('@').unwrap()]
}

#[test]
fn private_cluster_stops_and_restarts() {
    let pg = PgCluster::start();
    assert_ne!(pg.port(), PgCluster::shared().port());
    let service = pg.fresh_database("restart");
    let name = database_name(&service).to_string();
    let url = verify_full(&pg, &service);
    let out = psql(
        &url,
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('durable')",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let port = pg.port();

    pg.stop();
    let out = psql(&url, "SELECT 1");
    assert!(!out.status.success(), "connected to a stopped server");

    pg.restart();
    assert_eq!(pg.port(), port);
    let out = psql(&url, "SELECT v FROM kept");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "durable");
    assert_eq!(pg.superuser_sql(&name, "SELECT count(*) FROM kept"), "1");

    let dir = pg.ca_file().parent().unwrap().to_path_buf();
    drop(pg);
    assert!(!Path::new(&dir).exists(), "temporary directory left behind");
}
