//! The web console in a real browser: starts a server and runs
//! `console-tests/console.test.mjs` (playwright-core driving Debian's
//! Chromium, axe-core on every page) against it. The script's own steps
//! assert what each page shows; this test fails when any of them fails.
//!
//! Screenshots of every page land in `target/console-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

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
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("console-tests/console.test.mjs");
    assert!(
        root.join("console-tests/node_modules/playwright-core")
            .is_dir(),
        "console-tests/node_modules is missing: run scripts/test.sh (it runs npm ci)"
    );
    let screenshots = root.join("target/console-screenshots");
    // Only this run's pages (the numbering changes as steps are added).
    let _ = std::fs::remove_dir_all(&screenshots);
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .env("WB_URL", &server.base)
        .env("WB_SCREENSHOTS", &screenshots)
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
