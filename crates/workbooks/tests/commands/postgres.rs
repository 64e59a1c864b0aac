//! The `workbooks` binary on PostgreSQL (the throwaway cluster of
//! `wb-pgtest`): a bad database configuration fails at start with one clear
//! line that never shows the password, and the operational commands work
//! against the real thing.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use wb_pgtest::PgCluster;

/// Runs `workbooks` with nothing from the caller's environment but `env`.
fn workbooks(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_workbooks"));
    command.args(args);
    for name in [
        "WORKBOOKS_DATA",
        "WORKBOOKS_DATABASE",
        "WORKBOOKS_DATABASE_CA",
        "WORKBOOKS_MASTER_KEY",
        "WORKBOOKS_MASTER_KEY_FILE",
        "WORKBOOKS_CONFIG",
        "WORKBOOKS_OBJECT_STORE",
        "WORKBOOKS_LOG",
    ] {
        command.env_remove(name);
    }
    command
        .env("WORKBOOKS_OPERATOR", "olga")
        .envs(env.iter().copied())
        .output()
        .expect("run workbooks")
}

/// `workbooks init` against `url`, with `--database-ca ca` when given.
fn init(data: &Path, url: &str, ca: Option<&Path>) -> Output {
    let data = data.to_str().unwrap();
    let mut args = vec!["init", "--data", data, "--database", url];
    let ca = ca.map(|p| p.to_str().unwrap().to_string());
    if let Some(ca) = &ca {
        args.extend(["--database-ca", ca.as_str()]);
    }
    workbooks(&args, &[])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure: non-zero exit, nothing on stdout, and exactly one line on
/// stderr, `workbooks: error: ...`, holding every `expected` text and none
/// of the `secrets`.
#[track_caller]
fn fails_with(out: &Output, expected: &[&str], secrets: &[&str]) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "succeeded; stdout: {}; stderr: {err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.lines().count(), 1, "one line on stderr, got:\n{err}");
    assert!(err.ends_with('\n'), "{err:?}");
    let line = err.trim_end().to_string();
    assert!(line.starts_with("workbooks: error: "), "{line}");
    for text in expected {
        assert!(line.contains(text), "expected {text:?} in: {line}");
    }
    for secret in secrets {
        assert!(!line.contains(secret), "a password leaked: {line}");
    }
    line
}

/// The service role's password, from its URL.
fn service_password(cluster: &PgCluster) -> String {
    let url = cluster.service_url("postgres");
    let rest = url.strip_prefix("postgres://workbooks:").unwrap();
    rest.split('@').next().unwrap().to_string()
}

/// The database name at the end of a URL of the cluster.
fn database_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// A port where nothing listens (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server that answers every SSLRequest with `N` (no TLS); it serves until
/// the test process ends.
fn plaintext_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut socket in listener.incoming().flatten() {
            let mut request = [0u8; 8];
            if socket.read_exact(&mut request).is_ok() {
                let _ = socket.write_all(b"N");
            }
        }
    });
    port
}

#[test]
fn bad_database_configuration_fails_at_start_with_one_line() {
    let cluster = PgCluster::shared();
    let ca = cluster.ca_file();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let control = cluster.fresh_database("cli_bad");
    let db = database_of(&control).to_string();
    let password = service_password(cluster);

    // (a) Nothing listens there.
    let port = free_port();
    let secret = "Unreachable-s3cret-pw";
    let out = init(
        &data,
        &format!("postgres://workbooks:{secret}@127.0.0.1:{port}/{db}"),
        Some(ca),
    );
    fails_with(
        &out,
        &["cannot connect", &format!("127.0.0.1:{port}")],
        &[secret],
    );

    // (b) The right server, a wrong password.
    let wrong = "Wrong-horse-battery-staple";
    let out = init(
        &data,
        &format!(
            "postgres://workbooks:{wrong}@127.0.0.1:{}/{db}",
            cluster.port()
        ),
        Some(ca),
    );
    fails_with(
        &out,
        &["password authentication failed", "workbooks"],
        &[wrong, &password],
    );

    // (c) No CA: the server could not be verified, so there is no attempt.
    let out = init(&data, &control, None);
    fails_with(&out, &["CA", "--database-ca"], &[&password]);

    // (d) A CA file that does not exist is named.
    let missing = dir.path().join("no-such-ca.pem");
    let out = init(&data, &control, Some(&missing));
    fails_with(&out, &[missing.to_str().unwrap()], &[&password]);

    // (e) A CA file that is not PEM is named.
    let not_pem = dir.path().join("not-pem.crt");
    std::fs::write(&not_pem, b"\x00\x01 definitely not a certificate\n").unwrap();
    let out = init(&data, &control, Some(&not_pem));
    fails_with(&out, &[not_pem.to_str().unwrap()], &[&password]);

    // (f) A CA that did not sign the server's certificate.
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, other_ca_pem()).unwrap();
    let out = init(&data, &control, Some(&other_ca));
    fails_with(&out, &["cannot connect", "certificate"], &[&password]);

    // (g) A weaker sslmode in the URL is refused, naming verify-full.
    for mode in ["disable", "require"] {
        let out = init(&data, &format!("{control}?sslmode={mode}"), Some(ca));
        fails_with(
            &out,
            &[&format!("sslmode={mode}"), "verify-full"],
            &[&password],
        );
    }

    // (h) A server without TLS.
    let port = plaintext_server();
    let out = init(
        &data,
        &format!("postgres://workbooks:{secret}@127.0.0.1:{port}/{db}"),
        Some(ca),
    );
    fails_with(&out, &["TLS", &format!("127.0.0.1:{port}")], &[secret]);

    // (i) Not a PostgreSQL URL at all.
    let out = init(&data, "mysql://workbooks@127.0.0.1/books", Some(ca));
    fails_with(&out, &["postgres://"], &[]);

    // None of this created anything in the control database.
    let tables = cluster.superuser_sql(
        &db,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    );
    assert_eq!(tables, "0", "a failed start left tables behind");
}

#[test]
fn init_and_company_commands_work_on_postgresql() {
    let cluster = PgCluster::shared();
    let ca = cluster.ca_file().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_string();
    let control = cluster.fresh_database("cli_ok");
    let db = database_of(&control).to_string();
    let password = service_password(cluster);
    let pg = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--data",
            &data_arg,
            "--database",
            &control,
            "--database-ca",
            &ca,
        ]);
        workbooks(&all, &[])
    };
    let ok = |out: &Output| {
        assert!(out.status.success(), "{}", stderr(out));
        assert!(
            !stderr(out).contains(&password)
                && !String::from_utf8_lossy(&out.stdout).contains(&password),
            "the password leaked"
        );
    };

    let out = pg(&["init", "--json"]);
    ok(&out);
    let initialized: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(initialized["data"], data_arg.as_str());
    // The control plane lives in PostgreSQL, the keys stay in the data directory.
    assert!(data.join("master.key").exists());
    assert!(
        !data.join("control.db").exists(),
        "no SQLCipher control file"
    );
    let tables = cluster.superuser_sql(
        &db,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('companies', 'users', 'placements')",
    );
    assert_eq!(tables, "3");

    let out = pg(&["company", "create", "--name", "Globex PG", "--json"]);
    ok(&out);
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["name"], "Globex PG");
    assert!(
        !data.join("companies").join(format!("{id}.db")).exists(),
        "no SQLCipher company file"
    );
    // Its own database and role exist on the server, and the control
    // database knows where.
    let name = format!("wb_{}", id.to_ascii_lowercase().replace('-', "_"));
    assert_eq!(
        cluster.superuser_sql(
            "postgres",
            &format!(
                "SELECT d.datname || '|' || pg_get_userbyid(d.datdba) FROM pg_database d WHERE d.datname = '{name}'"
            )
        ),
        format!("{name}|{name}")
    );
    assert_eq!(
        cluster.superuser_sql(
            &db,
            &format!("SELECT database FROM placements WHERE company_id = '{id}'")
        ),
        name
    );

    let pass = dir.path().join("pass");
    std::fs::write(&pass, "violet orbit cactus thunder\n").unwrap();
    let out = pg(&[
        "user",
        "create",
        "--email",
        "Ann@Globex.example",
        "--passphrase-file",
        pass.to_str().unwrap(),
        "--company",
        &id,
        "--role",
        "accountant",
        "--json",
    ]);
    ok(&out);
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["email"], "ann@globex.example");

    let out = pg(&["company", "list", "--json"]);
    ok(&out);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["name"], "Globex PG");

    // A second init on the same control database: the schema is idempotent
    // and nothing is lost.
    ok(&pg(&["init"]));
    // So is a first init of another node (its own data directory, the same
    // master key), configured through the environment this time.
    let key = std::fs::read_to_string(data.join("master.key")).unwrap();
    let node2 = dir.path().join("node2");
    let env = [
        ("WORKBOOKS_DATA", node2.to_str().unwrap()),
        ("WORKBOOKS_DATABASE", control.as_str()),
        ("WORKBOOKS_DATABASE_CA", ca.as_str()),
        ("WORKBOOKS_MASTER_KEY", key.trim()),
    ];
    ok(&workbooks(&["init"], &env));
    assert!(
        !node2.join("master.key").exists(),
        "the key came from the environment"
    );
    let out = workbooks(&["company", "list", "--json"], &env);
    ok(&out);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    // The second node creates companies in the same deployment.
    let out = workbooks(
        &["company", "create", "--name", "Initech PG", "--json"],
        &env,
    );
    ok(&out);
    let out = pg(&["company", "list", "--json"]);
    ok(&out);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

/// A fresh self-signed CA that signed nothing the test cluster uses.
fn other_ca_pem() -> String {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "not the cluster's CA");
    params.self_signed(&key).unwrap().pem()
}
