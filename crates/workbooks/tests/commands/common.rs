//! Helpers shared by the tests that run the built `workbooks` binary.
#![allow(dead_code)] // each test module uses its own subset

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use wb_crypto::MasterKey;
use wb_server::{Platform, SystemClock};

/// Runs `workbooks` on the data directory `data`, with no key or config from
/// the caller's environment.
pub fn workbooks(args: &[&str], data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_workbooks"))
        .args(args)
        .env_remove("WORKBOOKS_MASTER_KEY")
        .env_remove("WORKBOOKS_CONFIG")
        .env("WORKBOOKS_DATA", data)
        .env("WORKBOOKS_OPERATOR", "olga")
        .output()
        .expect("run workbooks")
}

pub fn stderr_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[track_caller]
pub fn ok_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr_line(out));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// A failure is one line starting `workbooks: error:` and a non-zero exit.
#[track_caller]
pub fn fails_with(out: &Output, expected: &str) {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let line = stderr_line(out);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.starts_with("workbooks: error:"), "{line}");
    assert!(line.contains(expected), "expected {expected:?} in {line}");
}

/// The deployment in `data`, opened in-process with its own master key file.
pub fn open(data: &Path) -> Platform {
    Platform::open_embedded(
        data,
        MasterKey::load(&data.join("master.key")).unwrap(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )
    .unwrap()
}

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `workbooks serve` on a random port and returns it with its URL.
pub fn spawn_serve(data: &Path) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_workbooks"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
        ])
        .env_remove("WORKBOOKS_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    (Killed(child), url)
}

/// An HTTPS client that trusts only the deployment's self-signed certificate.
pub fn https_client(data: &Path) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(data.join("tls/cert.pem")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
}
