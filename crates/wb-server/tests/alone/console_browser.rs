//! The web console in a real browser: starts a server and runs
//! `console-tests/console.test.mjs` (the customer console) and
//! `console-tests/staff.test.mjs` (the staff console and the company's
//! staff-access page) against it, each with playwright-core driving Debian's
//! Chromium and axe-core on every page. The scripts' own steps assert what
//! each page shows; a test fails when any of them fails.
//!
//! Screenshots of every page land in `target/console-screenshots/` (the
//! staff run's in `target/console-screenshots/staff/`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use wb_core::staff::StaffRole;
use wb_crypto::Secret;
use wb_server::staff::host_actor;

use crate::harness::TestServer;

/// The whole browser run, with a margin for a loaded 2-core machine.
const RUN_LIMIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_works_in_a_real_browser() {
    let _running = crate::alone().await;
    // A host name, not an IP address: a passkey's relying party must be one.
    let server = TestServer::start_configured(|c| {
        c.mail.public_url = Some(format!("https://localhost:{}", c.listen.port()));
    })
    .await;
    run_script(&server, "console.test.mjs", "", &[]).await;
}

/// The staff members' passphrase in the staff run.
const STAFF_PASSPHRASE: &str = "copper lagoon thistle 83 rowan ledger";

/// A staff member made on the host (as `workbooks staff create` does); the
/// base32 secret of their authenticator.
async fn staff_member(server: &TestServer, email: &str, role: StaffRole) -> String {
    let created = server
        .platform
        .create_staff(
            email,
            &[role],
            &Secret::from(STAFF_PASSPHRASE.to_string()),
            host_actor(),
        )
        .await
        .expect("staff member created");
    created
        .totp_uri
        .expose()
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .expect("a secret in the otpauth URI")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_staff_console_works_in_a_real_browser() {
    let _running = crate::alone().await;
    let server = TestServer::start_configured(|c| {
        c.mail.public_url = Some(format!("https://localhost:{}", c.listen.port()));
    })
    .await;
    let support = "sam.support@ops.example";
    let manager = "max.manager@ops.example";
    let support_totp = staff_member(&server, support, StaffRole::Support).await;
    let manager_totp = staff_member(&server, manager, StaffRole::Management).await;
    run_script(
        &server,
        "staff.test.mjs",
        "staff",
        &[
            ("WB_STAFF_PASSPHRASE", STAFF_PASSPHRASE),
            ("WB_SUPPORT_EMAIL", support),
            ("WB_SUPPORT_TOTP", &support_totp),
            ("WB_MANAGER_EMAIL", manager),
            ("WB_MANAGER_TOTP", &manager_totp),
        ],
    )
    .await;
}

/// Runs one browser script against `server`; fails the test when any of its
/// steps fails.
async fn run_script(server: &TestServer, script: &str, shots: &str, env: &[(&str, &str)]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("console-tests").join(script);
    assert!(
        root.join("console-tests/node_modules/playwright-core")
            .is_dir(),
        "console-tests/node_modules is missing: run scripts/test.sh (it runs npm ci)"
    );
    let screenshots = root.join("target/console-screenshots").join(shots);
    // Only this run's pages (the numbering changes as steps are added).
    if shots.is_empty() {
        // The customer run's own files; the staff run keeps its folder.
        if let Ok(dir) = std::fs::read_dir(&screenshots) {
            for entry in dir.flatten() {
                if entry.path().is_file() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    } else {
        let _ = std::fs::remove_dir_all(&screenshots);
    }
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .env("WB_URL", &server.base)
        .env("WB_SCREENSHOTS", &screenshots);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/test.sh installs it)");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut text)
            .await
            .ok();
        text
    };
    let out = tokio::spawn(read(Box::new(stdout)));
    let err = tokio::spawn(read(Box::new(stderr)));
    let status = tokio::time::timeout(RUN_LIMIT, child.wait())
        .await
        .expect("the browser run finishes in time")
        .expect("node ran");
    let out = out.await.unwrap();
    let err = err.await.unwrap();
    println!("{out}");
    eprintln!("{err}");
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{out}\n{err}"
    );
    assert!(out.contains("ok - no CSP violation"), "{out}");
    assert!(!out.contains("not ok"), "{out}");
}
