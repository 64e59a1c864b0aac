//! Runs the built `workbooks` binary: exit codes, output, and the demo end to end.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{stderr_line, workbooks, Killed};

#[test]
fn company_and_user_commands_round_trip_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = workbooks(&["init", "--json"], &data);
    assert!(out.status.success(), "{}", stderr_line(&out));
    let key = data.join("master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [key.clone(), data.join("control.key"), data.join("node.key")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
    }

    let out = workbooks(
        &["company", "create", "--name", "Globex Corp", "--json"],
        &data,
    );
    assert!(out.status.success(), "{}", stderr_line(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["name"], "Globex Corp");

    let out = workbooks(&["company", "list", "--json"], &data);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());

    let pass = dir.path().join("pass");
    std::fs::write(&pass, "violet orbit cactus thunder\n").unwrap();
    let out = workbooks(
        &[
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
        ],
        &data,
    );
    assert!(out.status.success(), "{}", stderr_line(&out));
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["email"], "ann@globex.example");

    // The same email again: one clear line, non-zero exit.
    let out = workbooks(
        &[
            "user",
            "create",
            "--email",
            "ann@globex.example",
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        &data,
    );
    assert!(!out.status.success());
    let line = stderr_line(&out);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("already exists"), "{line}");
}

#[test]
fn bad_input_fails_with_one_line_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init"], &data).status.success());
    let weak = dir.path().join("weak");
    std::fs::write(&weak, "password").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "user",
                "create",
                "--email",
                "a@b.example",
                "--passphrase-file",
                weak.to_str().unwrap(),
            ],
            "too weak",
        ),
        (
            vec![
                "user",
                "create",
                "--email",
                "not-an-email",
                "--passphrase-file",
                weak.to_str().unwrap(),
            ],
            "email",
        ),
        (
            vec![
                "user",
                "create",
                "--email",
                "a@b.example",
                "--passphrase-file",
                "/nonexistent/pass",
            ],
            "cannot read passphrase file",
        ),
        (vec!["company", "create", "--name", ""], "company name"),
        (
            vec!["company", "list", "--database", "postgres://x"],
            "bad PostgreSQL URL",
        ),
        (
            vec!["company", "list", "--config", "/nonexistent.toml"],
            "cannot read config file",
        ),
        (
            vec!["company", "list", "--master-key-file", "/nonexistent.key"],
            "master key file",
        ),
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--audit-failure-policy",
                "maybe",
            ],
            "audit-failure-policy",
        ),
    ];
    for (args, expected) in cases {
        let out = workbooks(&args, &data);
        assert!(!out.status.success(), "{args:?} succeeded");
        let line = stderr_line(&out);
        assert_eq!(line.lines().count(), 1, "{args:?}: {line}");
        assert!(line.starts_with("workbooks: error:"), "{line}");
        assert!(line.contains(expected), "{args:?}: {line}");
    }
    let out = workbooks(&["company", "list", "--json"], &data);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );

    // A wrong master key cannot open the data directory.
    let out = Command::new(env!("CARGO_BIN_EXE_workbooks"))
        .args(["company", "list"])
        .env("WORKBOOKS_DATA", &data)
        .env("WORKBOOKS_MASTER_KEY", "ab".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_line(&out).contains("master key"),
        "{}",
        stderr_line(&out)
    );
}

/// The shipped build has no benchmarks: any bench command line says how to
/// build them, writes no results file, and fails.
#[cfg(not(feature = "bench"))]
#[test]
fn bench_without_the_feature_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("BENCHMARKS.md");
    for args in [
        vec!["bench"],
        vec!["bench", "--postgres", "--seconds", "1"],
        vec!["bench", "--backup", "--out", out_file.to_str().unwrap()],
    ] {
        let out = workbooks(&args, &dir.path().join("data"));
        common::fails_with(&out, "cargo run --release --features bench -- bench");
    }
    assert!(!out_file.exists());
}

#[test]
fn config_file_sets_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-config");
    let config = dir.path().join("workbooks.toml");
    std::fs::write(&config, format!("data = {:?}\n", data.to_str().unwrap())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_workbooks"))
        .args(["init", "--config", config.to_str().unwrap()])
        .env_remove("WORKBOOKS_DATA")
        .env_remove("WORKBOOKS_MASTER_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_line(&out));
    assert!(data.join("master.key").exists());
    std::fs::write(&config, "bogus = 1\n").unwrap();
    let out = workbooks(&["init", "--config", config.to_str().unwrap()], &data);
    assert!(!out.status.success());
    assert!(
        stderr_line(&out).contains("unknown field"),
        "{}",
        stderr_line(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_real_books_over_https() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_workbooks"))
        .args([
            "demo",
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
    let guard = Killed(child);
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.starts_with("Try:");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(120), lines)
        .await
        .unwrap()
        .unwrap();
    let field = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
            .unwrap()
    };
    let url = field("Work-books demo is running at");
    let email = field("email:");
    let passphrase = field("passphrase:");
    let company = field("company:");
    let company_id = company
        .rsplit('(')
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_string();

    let pem = std::fs::read(data.join("tls/cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let login: serde_json::Value = client
        .post(format!("{url}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "passphrase": passphrase}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    let tb: serde_json::Value = client
        .get(format!(
            "{url}/api/v1/companies/{company_id}/reports/trial-balance"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tb["totals"]["USD"], "0.00");
    assert_eq!(tb["totals"]["EUR"], "0.00");
    assert!(tb["accounts"].as_array().unwrap().len() >= 10, "{tb}");
    let entries: serde_json::Value = client
        .get(format!(
            "{url}/api/v1/companies/{company_id}/entries?limit=1000"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        entries["entries"].as_array().unwrap().len(),
        1000,
        "a year of books"
    );
    drop(guard);
}

#[test]
fn an_operator_invites_and_lists_members() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init", "--json"], &data).status.success());
    let out = workbooks(
        &["company", "create", "--name", "Invitees", "--json"],
        &data,
    );
    let id = common::ok_json(&out)["id"].as_str().unwrap().to_string();

    let out = workbooks(
        &[
            "company",
            "invite",
            "--company",
            &id,
            "--email",
            "Kim@Example.com",
            "--role",
            "accountant",
            "--json",
        ],
        &data,
    );
    let invited = common::ok_json(&out);
    assert!(invited["token"].as_str().unwrap().starts_with("wbi_"));
    let out = workbooks(&["company", "members", "--company", &id, "--json"], &data);
    let listed = common::ok_json(&out);
    assert_eq!(listed["members"], serde_json::json!([]));
    assert_eq!(listed["invitations"][0]["email"], "kim@example.com");
    assert_eq!(listed["invitations"][0]["role"], "accountant");
    assert!(!listed
        .to_string()
        .contains(invited["token"].as_str().unwrap()));
    // The message waits in the outbox for a server to deliver it.

    // The company's security policy: the defaults until it sets one.
    let out = workbooks(
        &["company", "security-policy", "--company", &id, "--json"],
        &data,
    );
    let policy = common::ok_json(&out);
    assert_eq!(policy["mfa_required"], false);
    assert_eq!(policy["min_passphrase_strength"], 3);
    assert_eq!(policy["ip_allowlist"], serde_json::json!([]));
    let out = workbooks(&["company", "security-policy", "--company", "nope"], &data);
    common::fails_with(&out, "no company");
    // Resetting a second factor: a reason, and someone who has one.
    let out = workbooks(
        &[
            "user",
            "reset-mfa",
            "--email",
            "kim@example.com",
            "--reason",
            " ",
        ],
        &data,
    );
    common::fails_with(&out, "reason");
    let out = workbooks(
        &[
            "user",
            "reset-mfa",
            "--email",
            "nobody@example.com",
            "--reason",
            "ticket 7",
        ],
        &data,
    );
    common::fails_with(&out, "not found");

    // Bad input: one line, non-zero, nothing invited.
    let out = workbooks(
        &[
            "company",
            "invite",
            "--company",
            &id,
            "--email",
            "x@example.com",
            "--role",
            "emperor",
        ],
        &data,
    );
    common::fails_with(&out, "--role: unknown role");
    let out = workbooks(
        &[
            "company",
            "invite",
            "--company",
            "nope",
            "--email",
            "x@example.com",
            "--role",
            "viewer",
        ],
        &data,
    );
    common::fails_with(&out, "no company");
    let out = workbooks(&["company", "members", "--company", &id, "--json"], &data);
    assert_eq!(
        common::ok_json(&out)["invitations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn an_operator_manages_staff_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init", "--json"], &data).status.success());
    let pass = dir.path().join("staff-pass");
    std::fs::write(&pass, "orbit lantern quarry 58 mossy anvil\n").unwrap();
    let pass = pass.to_str().unwrap();

    let out = workbooks(
        &[
            "staff",
            "create",
            "--email",
            "Lee@Ops.Example",
            "--role",
            "support",
            "--role",
            "management",
            "--passphrase-file",
            pass,
            "--json",
        ],
        &data,
    );
    let created = common::ok_json(&out);
    assert_eq!(created["email"], "lee@ops.example");
    assert_eq!(
        created["roles"],
        serde_json::json!(["management", "support"])
    );
    assert!(created["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(created["totp_uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));

    let out = workbooks(
        &[
            "staff",
            "grant-role",
            "--email",
            "lee@ops.example",
            "--role",
            "security",
            "--json",
        ],
        &data,
    );
    assert_eq!(
        common::ok_json(&out)["roles"],
        serde_json::json!(["management", "security", "support"])
    );
    let out = workbooks(
        &[
            "staff",
            "revoke-role",
            "--email",
            "lee@ops.example",
            "--role",
            "support",
            "--json",
        ],
        &data,
    );
    assert_eq!(
        common::ok_json(&out)["roles"],
        serde_json::json!(["management", "security"])
    );
    let out = workbooks(
        &["staff", "reset-mfa", "--email", "lee@ops.example", "--json"],
        &data,
    );
    assert!(common::ok_json(&out)["totp_uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://"));
    let out = workbooks(
        &["staff", "disable", "--email", "lee@ops.example", "--json"],
        &data,
    );
    assert_eq!(common::ok_json(&out)["disabled"], true);
    let out = workbooks(&["staff", "list", "--json"], &data);
    let list = common::ok_json(&out);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["disabled"], true);
    assert!(!out_text(&out).contains("otpauth"), "no secret in the list");

    // Bad input: one line, non-zero, nothing changed.
    let out = workbooks(
        &[
            "staff",
            "create",
            "--email",
            "x@ops.example",
            "--role",
            "janitor",
            "--passphrase-file",
            pass,
        ],
        &data,
    );
    common::fails_with(&out, "unknown staff role");
    let out = workbooks(
        &[
            "staff",
            "create",
            "--email",
            "lee@ops.example",
            "--role",
            "sales",
            "--passphrase-file",
            pass,
        ],
        &data,
    );
    common::fails_with(&out, "exists");
    let out = workbooks(
        &["staff", "disable", "--email", "nobody@ops.example"],
        &data,
    );
    common::fails_with(&out, "not found");
    let out = workbooks(&["staff", "list", "--json"], &data);
    assert_eq!(common::ok_json(&out).as_array().unwrap().len(), 1);
}

fn out_text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A key provider command answers the master key (`COMMAND get master`):
/// a deployment made with it opens with the same key from a file, and a
/// failing or lying command stops every command with one clear line.
#[test]
fn a_key_provider_command_answers_the_master_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hex = "5c".repeat(32);
    let key_file = dir.path().join("master.hex");
    std::fs::write(&key_file, format!("{hex}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let helper = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let kms = helper(
        "kms-helper",
        &format!(
            "[ \"$1\" = get ] && [ \"$2\" = master ] || exit 2\ncat {}",
            key_file.display()
        ),
    );
    let created = common::ok_json(&workbooks(
        &[
            "company",
            "create",
            "--name",
            "Vaulted Ltd",
            "--master-key-command",
            &kms,
            "--json",
        ],
        &data,
    ));
    let listed = common::ok_json(&workbooks(
        &[
            "company",
            "list",
            "--master-key-file",
            key_file.to_str().unwrap(),
            "--json",
        ],
        &data,
    ));
    assert_eq!(listed[0]["id"], created["id"]);
    assert!(!data.join("master.key").exists(), "no key file was made");

    let failing = helper("failing-helper", "echo 'kms says no' >&2\nexit 4");
    let lying = helper("lying-helper", "echo hunter2");
    for (command, expected) in [
        (failing.as_str(), "exit status: 4"),
        (lying.as_str(), "64 hex characters"),
        ("relative/helper", "absolute path"),
    ] {
        let out = workbooks(
            &["company", "list", "--master-key-command", command, "--json"],
            &data,
        );
        common::fails_with(&out, expected);
        assert!(!stderr_line(&out).contains("hunter2"));
    }
    let out = workbooks(
        &[
            "company",
            "list",
            "--master-key-command",
            &kms,
            "--master-key-file",
            key_file.to_str().unwrap(),
        ],
        &data,
    );
    assert!(!out.status.success());
}
