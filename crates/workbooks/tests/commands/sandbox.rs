//! `workbooks sandbox` from the command line: the JSON shapes of approve and
//! restore (SPEC §6), a non-loopback address refused from the flag, the
//! environment and the config file, serving on loopback, and destruction
//! reported to the production trail.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use wb_crypto::TotpSecret;

use crate::common::{self, fails_with, ok_json, workbooks, Killed};

const REASON: &str = "reproduce ticket 88";

fn sandbox_cmd(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_workbooks"));
    command
        .args(args)
        .env_remove("WORKBOOKS_MASTER_KEY")
        .env_remove("WORKBOOKS_CONFIG")
        .env_remove("WORKBOOKS_LISTEN")
        .env_remove("WORKBOOKS_DATA");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn a_sandbox_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sandbox = dir.path().join("sandbox");
    let sandbox_arg = sandbox.to_str().unwrap();
    assert!(workbooks(&["init", "--json"], &data).status.success());
    let company = ok_json(&workbooks(
        &["company", "create", "--name", "Initech", "--json"],
        &data,
    ))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "violet orbit cactus thunder\n").unwrap();
    let pass = pass.to_str().unwrap();
    ok_json(&workbooks(
        &[
            "user",
            "create",
            "--email",
            "peter@initech.example",
            "--passphrase-file",
            pass,
            "--company",
            &company,
            "--role",
            "owner",
            "--json",
        ],
        &data,
    ));
    let staff = ok_json(&workbooks(
        &[
            "staff",
            "create",
            "--email",
            "bill@ops.example",
            "--role",
            "management",
            "--passphrase-file",
            pass,
            "--json",
        ],
        &data,
    ));
    let uri = staff["totp_uri"].as_str().unwrap();
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap();
    let secret = TotpSecret::from_base32(secret).unwrap();
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    let otp = secret.code_at(now).unwrap().expose().to_string();

    let approved = ok_json(&workbooks(
        &[
            "sandbox",
            "approve",
            "--company",
            &company,
            "--reason",
            REASON,
            "--ttl-hours",
            "2",
            "--staff-email",
            "bill@ops.example",
            "--passphrase-file",
            pass,
            "--otp",
            &otp,
            "--json",
        ],
        &data,
    ));
    let mut keys: Vec<&String> = approved.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["expires_at", "token"]);
    let token = approved["token"].as_str().unwrap();

    fails_with(
        &workbooks(
            &[
                "sandbox",
                "restore",
                "--company",
                &company,
                "--reason",
                REASON,
                "--approval",
                "wbsbx_nothing.00",
                "--sandbox",
                sandbox_arg,
            ],
            &data,
        ),
        "malformed",
    );
    let created = ok_json(&workbooks(
        &[
            "sandbox",
            "restore",
            "--company",
            &company,
            "--reason",
            REASON,
            "--approval",
            token,
            "--sandbox",
            sandbox_arg,
            "--json",
        ],
        &data,
    ));
    let mut keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "company",
            "expires_at",
            "owner_email",
            "owner_passphrase",
            "sandbox"
        ]
    );
    assert_eq!(created["owner_email"], "peter@initech.example");
    assert_eq!(created["expires_at"], approved["expires_at"]);
    let listed = ok_json(&workbooks(&["sandbox", "list", "--json"], &data));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Any address but a loopback one is refused: flag, environment, config.
    fails_with(
        &sandbox_cmd(
            &[
                "sandbox",
                "serve",
                "--sandbox",
                sandbox_arg,
                "--listen",
                "0.0.0.0:0",
            ],
            &[],
        ),
        "loopback",
    );
    fails_with(
        &sandbox_cmd(
            &["sandbox", "serve", "--sandbox", sandbox_arg],
            &[("WORKBOOKS_LISTEN", "192.0.2.7:8444")],
        ),
        "loopback",
    );
    let config = dir.path().join("workbooks.toml");
    std::fs::write(&config, "listen = \"[::]:8444\"\n").unwrap();
    fails_with(
        &sandbox_cmd(
            &[
                "sandbox",
                "serve",
                "--sandbox",
                sandbox_arg,
                "--config",
                config.to_str().unwrap(),
            ],
            &[],
        ),
        "loopback",
    );

    // On loopback it serves.
    let mut child = Command::new(env!("CARGO_BIN_EXE_workbooks"))
        .args([
            "sandbox",
            "serve",
            "--sandbox",
            sandbox_arg,
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("WORKBOOKS_MASTER_KEY")
        .env_remove("WORKBOOKS_CONFIG")
        .env_remove("WORKBOOKS_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("https://127.0.0.1:"), "{line}");
    drop(Killed(child));

    // Ordinary commands do not open a sandbox (so it cannot be served
    // elsewhere or past its expiry by `workbooks serve`).
    fails_with(
        &sandbox_cmd(
            &["serve", "--data", sandbox_arg, "--listen", "0.0.0.0:0"],
            &[],
        ),
        "sandbox",
    );
    // A directory that is not a sandbox is not destroyed.
    fails_with(
        &sandbox_cmd(
            &["sandbox", "destroy", "--sandbox", data.to_str().unwrap()],
            &[],
        ),
        "not a sandbox",
    );
    assert!(data.join("master.key").exists());

    // Destroyed without the production deployment at hand: the record is
    // left beside it, and `sandbox list` carries it into the trail.
    let destroyed = ok_json(&sandbox_cmd(
        &["sandbox", "destroy", "--sandbox", sandbox_arg, "--json"],
        &[],
    ));
    assert_eq!(destroyed["cause"], "by hand");
    assert!(!sandbox.exists());
    let record = dir.path().join("sandbox.destroyed.json");
    assert!(record.exists());
    let listed = ok_json(&workbooks(&["sandbox", "list", "--json"], &data));
    assert!(!record.exists(), "the record was carried in");
    assert_eq!(listed, serde_json::json!([]));
    let trail = common::open(&data);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let actions: Vec<String> = rt.block_on(async {
        trail
            .control
            .audit_events(None, 0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .filter(|a| a.starts_with("sandbox."))
            .collect()
    });
    assert_eq!(
        actions,
        [
            "sandbox.approve",
            "sandbox.restore",
            "sandbox.restore",
            "sandbox.destroy"
        ]
    );
}
