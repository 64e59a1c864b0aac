//! # wb-pgtest: a throwaway PostgreSQL cluster for tests
//!
//! Test binaries of the Work-books crates (add `wb-pgtest` as a dev-dependency)
//! talk to a **real** PostgreSQL server, configured the way production is meant
//! to be: TLS only, passwords only, a service role that is not a superuser.
//!
//! ```no_run
//! let pg = wb_pgtest::PgCluster::shared();          // one cluster per test process
//! let url = pg.fresh_database("ledger");            // empty database owned by the service role
//! // connect to `url` with TLS, trusting `pg.ca_pem()` / `pg.ca_file()`
//! assert_eq!(pg.superuser_sql("postgres", "SHOW ssl"), "on");
//! ```
//!
//! ## What a cluster is
//!
//! * `initdb` and `pg_ctl` are looked up on `PATH` first, then in the highest
//!   version of `/usr/lib/postgresql/*/bin`. Without them every test panics with
//!   "PostgreSQL is not installed (initdb not found); `apt-get install postgresql`
//!   or run .ci/run". `psql` (used for all setup SQL) is taken from the same
//!   directory as `initdb`, else from `PATH`.
//! * Everything lives in a fresh temporary directory (under
//!   [`std::env::temp_dir`]): the data directory, the server log
//!   (`postgres.log`), the Unix socket directory and `ca.crt`.
//! * `initdb --auth=scram-sha-256 -U postgres --encoding=UTF8 --locale=C` with a
//!   random 24-character superuser password.
//! * `initdb` refuses to run as root. When the tests run as root (`id -u` is
//!   `0`), `initdb` and `pg_ctl` run as the `postgres` system user through
//!   `runuser -u postgres --`, and the temporary directory is handed to that user.
//! * TLS: a CA and a server certificate it signs (SANs `localhost` and
//!   `127.0.0.1`) are generated with rcgen for every cluster. The server listens
//!   on `127.0.0.1` only, on a random free port, with `fsync = on` (durability
//!   stays real) and `max_connections = 300`.
//! * `pg_hba.conf` holds a single line,
//!   `hostssl all all 127.0.0.1/32 scram-sha-256`: no Unix-socket access, no
//!   plaintext TCP. The harness itself connects like everyone else, over TLS
//!   with `sslmode=verify-full` and a password.
//! * The service role `workbooks` has `LOGIN CREATEDB CREATEROLE` and a random
//!   password, and is **not** a superuser. [`PgCluster::service_url`] and
//!   [`PgCluster::fresh_database`] give `postgres://workbooks:…@127.0.0.1:PORT/DB`
//!   URLs (without TLS parameters: clients configure TLS from [`PgCluster::ca_pem`]).
//!
//! ## Cleaning up
//!
//! Rust never runs destructors of statics, so the cluster behind
//! [`PgCluster::shared`] would outlive the test process. Each cluster therefore
//! gets a detached watchdog (`sh`, in its own process group so a terminal's
//! Ctrl-C does not kill it) that polls the test process once a second and, once
//! it is gone, runs `pg_ctl stop -m immediate` and deletes the temporary
//! directory. Clusters from [`PgCluster::start`] are also stopped and deleted
//! when dropped.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use rand::distributions::Alphanumeric;
use rand::Rng;

/// Name of the Work-books service role in every cluster.
const SERVICE_ROLE: &str = "workbooks";
/// Loopback address the server listens on.
const HOST: &str = "127.0.0.1";
/// The bootstrap superuser created by `initdb -U`.
const SUPERUSER: &str = "postgres";
/// How many times a start is retried when the chosen port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// A running (or stopped, see [`PgCluster::stop`]) PostgreSQL cluster in a temporary directory.
pub struct PgCluster {
    bin: PgBin,
    as_postgres: bool,
    port: u16,
    data_dir: PathBuf,
    log_file: PathBuf,
    ca_file: PathBuf,
    ca_pem: String,
    superuser_password: String,
    service_password: String,
    watchdog: Mutex<Option<Child>>,
    // Declared last: removed after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("host", &HOST)
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl PgCluster {
    /// One cluster per test process, started on first use. Panics with a clear
    /// message when PostgreSQL can't start (every later call panics with the
    /// same message instead of retrying).
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();
        match SHARED.get_or_init(PgCluster::try_start) {
            Ok(cluster) => cluster,
            Err(message) => panic!("{message}"),
        }
    }

    /// A new private cluster (for tests that stop it or need a second server).
    /// Stopped and deleted when dropped.
    pub fn start() -> PgCluster {
        match PgCluster::try_start() {
            Ok(cluster) => cluster,
            Err(message) => panic!("{message}"),
        }
    }

    /// The cluster's data directory (to look at what PostgreSQL keeps on disk).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        HOST
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// PEM file of the CA that signed the server certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// URL of the Work-books service role (`LOGIN CREATEDB CREATEROLE`, not a
    /// superuser): `postgres://workbooks:PASSWORD@127.0.0.1:PORT/DATABASE`.
    pub fn service_url(&self, database: &str) -> String {
        format!(
            "postgres://{SERVICE_ROLE}:{}@{HOST}:{}/{}",
            self.service_password,
            self.port,
            percent_encode(database)
        )
    }

    /// Creates a new empty database owned by the service role and returns its
    /// [`service_url`](Self::service_url). The name is `prefix` (reduced to
    /// lowercase ASCII letters, digits and `_`) plus a counter and a random suffix.
    pub fn fresh_database(&self, prefix: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut clean: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        if clean.is_empty() || clean.starts_with(|c: char| c.is_ascii_digit()) {
            clean.insert_str(0, "db_");
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{clean}_{n}_{}", random_string(8).to_ascii_lowercase());
        self.superuser_sql(
            "postgres",
            &format!("CREATE DATABASE \"{name}\" OWNER {SERVICE_ROLE}"),
        );
        self.service_url(&name)
    }

    /// Runs `sql` (any number of statements, fed to `psql -f -`, stopping at the
    /// first error) as the bootstrap superuser in `database`, over TLS with a
    /// password. Returns psql's stdout in `-At` form (rows as `a|b` lines,
    /// no command tags) without the trailing newline. Panics with psql's stderr
    /// on failure.
    pub fn superuser_sql(&self, database: &str, sql: &str) -> String {
        let conninfo = format!(
            "host={HOST} port={} user={SUPERUSER} dbname={} sslmode=verify-full sslrootcert={} connect_timeout=10",
            self.port,
            conninfo_value(database),
            conninfo_value(&self.ca_file.to_string_lossy()),
        );
        match psql(&self.bin.psql, &conninfo, &self.superuser_password, sql) {
            Ok(output) if output.status.success() => {
                let mut stdout = String::from_utf8_lossy(&output.stdout).into_owned();
                while stdout.ends_with('\n') {
                    stdout.pop();
                }
                stdout
            }
            Ok(output) => panic!(
                "wb-pgtest: psql as superuser in database {database:?} failed ({}):\n{}\nSQL:\n{sql}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            ),
            Err(e) => panic!("wb-pgtest: could not run {}: {e}", self.bin.psql.display()),
        }
    }

    /// Stops the cluster now (`pg_ctl stop -m fast`). Later connections fail.
    pub fn stop(&self) {
        if let Err(message) = self.pg_ctl(&["stop", "-m", "fast"]) {
            panic!("wb-pgtest: stopping PostgreSQL failed: {message}");
        }
    }

    /// Starts the cluster again after [`stop`](Self::stop): same port, same data.
    pub fn restart(&self) {
        if let Err(message) = self.pg_ctl_start() {
            panic!("wb-pgtest: restarting PostgreSQL failed: {message}");
        }
    }

    // ------------------------------------------------------------ internals

    fn try_start() -> Result<PgCluster, String> {
        let bin = PgBin::find()?;
        let as_postgres = running_as_root()?;
        if as_postgres {
            let ok = Command::new("id")
                .args(["-u", "postgres"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err(
                    "wb-pgtest: running as root, and initdb refuses root, but there is \
                            no `postgres` system user to run PostgreSQL as"
                        .to_string(),
                );
            }
        }

        let dir = tempfile::Builder::new()
            .prefix("wb-pgtest-")
            .tempdir_in(std::env::temp_dir())
            .map_err(|e| format!("wb-pgtest: creating a temporary directory: {e}"))?;
        let root = dir.path().to_path_buf();
        let data_dir = root.join("data");
        let log_file = root.join("postgres.log");
        let ca_file = root.join("ca.crt");
        let pwfile = root.join("superuser.pw");

        let superuser_password = random_string(24);
        let service_password = random_string(24);
        write_file(&pwfile, superuser_password.as_bytes(), 0o600)?;
        if as_postgres {
            chown_postgres(&root)?;
        }

        let mut cluster = PgCluster {
            bin,
            as_postgres,
            port: 0,
            data_dir,
            log_file,
            ca_file,
            ca_pem: String::new(),
            superuser_password,
            service_password,
            watchdog: Mutex::new(None),
            dir,
        };
        // From here on, dropping `cluster` on an error stops what was started
        // and removes the directory; the watchdog covers a dying test process.
        cluster.spawn_watchdog()?;

        let data = cluster.data_dir.to_string_lossy().into_owned();
        let pw_arg = format!("--pwfile={}", pwfile.display());
        let out = cluster.run_pg(
            &cluster.bin.initdb,
            &[
                "-D",
                &data,
                "--auth=scram-sha-256",
                &pw_arg,
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
        )?;
        if !out.status.success() {
            return Err(format!(
                "wb-pgtest: initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let _ = fs::remove_file(&pwfile);

        cluster.ca_pem = cluster.write_tls_files()?;
        cluster.write_config()?;
        if as_postgres {
            chown_postgres(&root)?;
        }
        fs::set_permissions(&cluster.data_dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("wb-pgtest: chmod 0700 {}: {e}", cluster.data_dir.display()))?;

        cluster.start_on_free_port()?;

        // What a deployment grants its service role so that destroying a
        // company can also push its rows out of the WAL (docs/lifecycle.md).
        let role_sql = format!(
            "CREATE ROLE {SERVICE_ROLE} LOGIN CREATEDB CREATEROLE NOSUPERUSER PASSWORD '{}';
             GRANT pg_checkpoint TO {SERVICE_ROLE};
             GRANT EXECUTE ON FUNCTION pg_switch_wal() TO {SERVICE_ROLE};",
            cluster.service_password
        );
        let conninfo = format!(
            "host={HOST} port={} user={SUPERUSER} dbname=postgres sslmode=verify-full sslrootcert={} connect_timeout=10",
            cluster.port,
            conninfo_value(&cluster.ca_file.to_string_lossy()),
        );
        let out = psql(
            &cluster.bin.psql,
            &conninfo,
            &cluster.superuser_password,
            &role_sql,
        )
        .map_err(|e| {
            format!(
                "wb-pgtest: could not run {}: {e}",
                cluster.bin.psql.display()
            )
        })?;
        if !out.status.success() {
            return Err(format!(
                "wb-pgtest: creating the service role over TLS failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(cluster)
    }

    /// CA + server certificate; returns the CA PEM.
    fn write_tls_files(&self) -> Result<String, String> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let err = |e: rcgen::Error| format!("wb-pgtest: generating certificates: {e}");
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wb-pgtest CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).map_err(err)?;

        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().map_err(err)?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;

        let ca_pem = ca.pem();
        write_file(&self.ca_file, ca_pem.as_bytes(), 0o644)?;
        write_file(
            &self.data_dir.join("server.crt"),
            cert.pem().as_bytes(),
            0o644,
        )?;
        write_file(
            &self.data_dir.join("server.key"),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        Ok(ca_pem)
    }

    fn write_config(&self) -> Result<(), String> {
        let socket_dir = self.dir.path().to_string_lossy().into_owned();
        let conf = format!(
            "\n# ---- wb-pgtest\n\
             ssl = on\n\
             ssl_cert_file = {}\n\
             ssl_key_file = {}\n\
             listen_addresses = '{HOST}'\n\
             unix_socket_directories = {}\n\
             max_connections = 300\n\
             fsync = on\n\
             wal_recycle = off\n\
             shared_buffers = 128MB\n\
             log_min_messages = warning\n",
            conf_string(&self.data_dir.join("server.crt").to_string_lossy()),
            conf_string(&self.data_dir.join("server.key").to_string_lossy()),
            conf_string(&socket_dir),
        );
        append_file(&self.data_dir.join("postgresql.conf"), &conf)?;
        let hba = self.data_dir.join("pg_hba.conf");
        fs::write(&hba, "hostssl all all 127.0.0.1/32 scram-sha-256\n")
            .map_err(|e| format!("wb-pgtest: writing {}: {e}", hba.display()))
    }

    /// Picks a free port (bind, read, drop) and starts the server on it,
    /// retrying when somebody else took the port in between.
    fn start_on_free_port(&mut self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            append_file(
                &self.data_dir.join("postgresql.conf"),
                &format!("port = {port}\n"),
            )?;
            self.port = port;
            let log_before = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(message) => {
                    let log = read_log_from(&self.log_file, log_before);
                    if !(log.contains("could not bind") || log.contains("already in use")) {
                        return Err(message);
                    }
                    last = message;
                }
            }
        }
        Err(last)
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let log_before = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
        let log = self.log_file.to_string_lossy().into_owned();
        self.pg_ctl(&["-l", &log, "start"]).map_err(|message| {
            format!(
                "PostgreSQL did not start:\n{message}\nserver log ({}):\n{}",
                self.log_file.display(),
                read_log_from(&self.log_file, log_before)
            )
        })
    }

    /// `pg_ctl -D DATA -w ARGS…`; Err carries pg_ctl's output.
    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = self.data_dir.to_string_lossy().into_owned();
        let mut all = vec!["-D", &data, "-w"];
        all.extend_from_slice(args);
        let out = self.run_pg(&self.bin.pg_ctl, &all)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {} ({}):\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Runs a server-side program, as `postgres` when we are root.
    fn run_pg(&self, program: &Path, args: &[&str]) -> Result<Output, String> {
        let mut cmd = pg_command(self.as_postgres, program);
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd.output()
            .map_err(|e| format!("wb-pgtest: could not run {}: {e}", program.display()))
    }

    /// A detached `sh` that stops the server and deletes the directory once
    /// this process is gone (statics are never dropped).
    fn spawn_watchdog(&self) -> Result<(), String> {
        let pg_ctl = if self.as_postgres {
            format!(
                "runuser -u postgres -- {}",
                sh_quote(&self.bin.pg_ctl.to_string_lossy())
            )
        } else {
            sh_quote(&self.bin.pg_ctl.to_string_lossy())
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {pg_ctl} -D {data} stop -m immediate; rm -rf {dir}",
            pid = std::process::id(),
            data = sh_quote(&self.data_dir.to_string_lossy()),
            dir = sh_quote(&self.dir.path().to_string_lossy()),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("wb-pgtest: spawning the watchdog: {e}"))?;
        *self.watchdog.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Ignore errors: the server may already be stopped, or never started.
        if self.data_dir.join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        }
        let watchdog = self
            .watchdog
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut child) = watchdog {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `self.dir` (a TempDir) removes the directory after this.
    }
}

// ---------------------------------------------------------------- helpers

struct PgBin {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    psql: PathBuf,
}

impl PgBin {
    fn find() -> Result<PgBin, String> {
        const MISSING: &str = "PostgreSQL is not installed (initdb not found); \
                               `apt-get install postgresql` or run .ci/run";
        let initdb = find_program("initdb").ok_or_else(|| MISSING.to_string())?;
        // Keep the versions together: prefer pg_ctl and psql next to the real initdb.
        let bin_dir = fs::canonicalize(&initdb)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let sibling = |name: &str| {
            bin_dir
                .as_ref()
                .map(|d| d.join(name))
                .filter(|p| is_executable(p))
        };
        let pg_ctl = sibling("pg_ctl")
            .or_else(|| find_program("pg_ctl"))
            .ok_or_else(|| {
                format!(
                    "PostgreSQL is incomplete: initdb at {} but no pg_ctl",
                    initdb.display()
                )
            })?;
        let psql = sibling("psql")
            .or_else(|| find_on_path("psql"))
            .unwrap_or_else(|| PathBuf::from("/usr/bin/psql"));
        Ok(PgBin {
            initdb,
            pg_ctl,
            psql,
        })
    }
}

/// `PATH` first, then the highest `/usr/lib/postgresql/<version>/bin`.
fn find_program(name: &str) -> Option<PathBuf> {
    find_on_path(name).or_else(|| {
        let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let version = entry
                    .file_name()
                    .to_str()?
                    .split('.')
                    .map(|part| part.parse::<u32>().ok())
                    .collect::<Option<Vec<u32>>>()?;
                let program = entry.path().join("bin").join(name);
                is_executable(&program).then_some((version, program))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, program)| program)
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn running_as_root() -> Result<bool, String> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("wb-pgtest: could not run `id -u`: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn pg_command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn chown_postgres(dir: &Path) -> Result<(), String> {
    let out = Command::new("chown")
        .arg("-R")
        .arg("postgres:postgres")
        .arg(dir)
        .output()
        .map_err(|e| format!("wb-pgtest: could not run chown: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "wb-pgtest: chown -R postgres:postgres {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs psql with `sql` on stdin; the environment's `PG*` variables are
/// removed so they can't redirect the connection.
fn psql(program: &Path, conninfo: &str, password: &str, sql: &str) -> std::io::Result<Output> {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PGPASSWORD", password)
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
        ])
        .arg(conninfo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let sql = sql.to_string();
    // Write from a thread so a large script can't deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(sql.as_bytes());
    });
    let output = child.wait_with_output();
    let _ = writer.join();
    output
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((HOST, 0))
        .map_err(|e| format!("wb-pgtest: binding {HOST}:0 to find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("wb-pgtest: reading a free port: {e}"))
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let result = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)));
    result.map_err(|e| format!("wb-pgtest: writing {}: {e}", path.display()))
}

fn append_file(path: &Path, text: &str) -> Result<(), String> {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("wb-pgtest: appending to {}: {e}", path.display()))
}

/// The server log from byte `from` on (at most the last 8 KiB).
fn read_log_from(path: &Path, from: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = fs::File::open(path) {
        let _ = file.read_to_end(&mut text);
    }
    let start = usize::try_from(from)
        .unwrap_or(0)
        .min(text.len())
        .max(text.len().saturating_sub(8192));
    String::from_utf8_lossy(&text[start..]).into_owned()
}

fn random_string(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A single-quoted libpq conninfo value.
fn conninfo_value(value: &str) -> String {
    let mut out = String::from("'");
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A single-quoted postgresql.conf string.
fn conf_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A single-quoted `sh` word.
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(percent_encode("a_b-1.x~"), "a_b-1.x~");
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(conninfo_value(r"it's a\b"), r"'it\'s a\\b'");
        assert_eq!(conf_string("/tmp/it's"), "'/tmp/it''s'");
        assert_eq!(sh_quote("/tmp/it's"), r"'/tmp/it'\''s'");
    }

    #[test]
    fn random_strings_are_alphanumeric() {
        let a = random_string(24);
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_string(24));
    }
}
