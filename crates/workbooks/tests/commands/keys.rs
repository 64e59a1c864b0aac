//! `workbooks keys rotate-master` and `keys status` through the built binary:
//! an interrupted rotation resumes, a node running with the old key learns
//! the new one, and afterwards the new key alone opens the deployment and
//! its backups while the old one opens nothing.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use wb_core::staff::StaffRole;
use wb_crypto::{MasterKey, Secret, TotpSecret};
use wb_server::{Platform, SystemClock};
use wb_store::Actor;

use common::{fails_with, https_client, ok_json, open, spawn_serve, workbooks};

const PASSPHRASE: &str = "orbit lantern quarry 58 mossy anvil";

/// `keys rotate-master` with the data directory's own (old) key as the
/// current one; `stop_after` interrupts it.
fn rotate(data: &Path, new_key: &Path, stop_after: Option<usize>) -> Output {
    rotate_with_grace(data, new_key, stop_after, 0)
}

fn rotate_with_grace(
    data: &Path,
    new_key: &Path,
    stop_after: Option<usize>,
    grace_seconds: u64,
) -> Output {
    let grace = grace_seconds.to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_workbooks"));
    command
        .args([
            "keys",
            "rotate-master",
            "--new-key-file",
            new_key.to_str().unwrap(),
            "--grace-seconds",
            &grace,
            "--json",
        ])
        .env_remove("WORKBOOKS_MASTER_KEY")
        .env_remove("WORKBOOKS_CONFIG")
        .env("WORKBOOKS_DATA", data)
        .env("WORKBOOKS_OPERATOR", "olga");
    if let Some(n) = stop_after {
        command.env("WORKBOOKS_ROTATION_STOP_AFTER", n.to_string());
    }
    command.output().unwrap()
}

fn open_with(data: &Path, key: &Path) -> Platform {
    Platform::open_embedded(
        data,
        MasterKey::load(key).unwrap(),
        Arc::new(SystemClock),
        time::Duration::hours(1),
    )
    .unwrap()
}

/// A code `steps_ahead` 30-second steps from now (each code is accepted
/// once, and a neighbouring step is accepted).
fn code(secret: &TotpSecret, steps_ahead: u64) -> Secret {
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    secret.code_at(now + 30 * steps_ahead).unwrap()
}

fn secret_in(uri_or_base32: &str) -> TotpSecret {
    let base32 = uri_or_base32
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap_or(uri_or_base32);
    TotpSecret::from_base32(base32).unwrap()
}

/// A user with a confirmed authenticator; answers its secret.
async fn user_with_totp(platform: &Platform) -> TotpSecret {
    let actor = || Actor::system("test");
    let pass = Secret::from(PASSPHRASE.to_string());
    let (_, session) = platform
        .signup("Owned Ltd", "owner@example.com", &pass, actor())
        .await
        .unwrap();
    let principal = platform.authenticate(&session.token).await.unwrap();
    let enrolment = platform
        .begin_totp(&principal, &pass, actor())
        .await
        .unwrap();
    let secret = secret_in(enrolment.secret.expose());
    platform
        .confirm_totp(&principal, &code(&secret, 0), actor())
        .await
        .unwrap();
    secret
}

/// A user login with passphrase and code on `platform`.
async fn user_login(platform: &Platform, secret: &TotpSecret) {
    let step = platform
        .login_step(
            "owner@example.com",
            &Secret::from(PASSPHRASE.to_string()),
            Some(&code(secret, 1)),
            Actor::system("test"),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(step, wb_server::login::LoginStep::Session(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_master_resumes_and_leaves_only_the_new_key_needed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init"], &data).status.success());
    let company = crate::backup::books(&data, 1).await;
    let old_key = data.join("master.key");
    let new_key = dir.path().join("new.key");
    let new_id = MasterKey::load_or_create(&new_key)
        .unwrap()
        .id()
        .to_string();
    let (totp, user_totp) = {
        let platform = open(&data);
        let user_totp = user_with_totp(&platform).await;
        let created = platform
            .create_staff(
                "ops@example.com",
                &[StaffRole::Operations],
                &Secret::from(PASSPHRASE.to_string()),
                Actor::system("test"),
            )
            .await
            .unwrap();
        platform.register_node().await.unwrap();
        let mut state = wb_server::dr::ConfigBackupState::default();
        wb_server::dr::backup_config_once(&platform, &mut state)
            .await
            .unwrap();
        (secret_in(created.totp_uri.expose()), user_totp)
    };
    let before = ok_json(&workbooks(&["keys", "status", "--json"], &data));
    assert_eq!(before["rotation"], "complete", "{before}");
    let old_id = MasterKey::load(&old_key).unwrap().id().to_string();
    // Two companies' keys (control and object store), platform key,
    // control.key, node.key.
    assert_eq!(before["wrapped"][&old_id], 7, "{before}");

    // Interrupted midway: the old key still opens everything, status says so.
    fails_with(
        &rotate(&data, &new_key, Some(2)),
        "rotation stopped after 2 changes",
    );
    let midway = ok_json(&workbooks(&["keys", "status", "--json"], &data));
    assert_eq!(midway["rotation"], "in-progress", "{midway}");
    assert_eq!(midway["handover"], true, "{midway}");
    assert_eq!(midway["wrapped"][&new_id], 2, "{midway}");
    // Another rotation, to another key, while this one is under way: refused.
    let other_key = data.join("other.key");
    std::fs::write(&other_key, format!("{}\n", "5c".repeat(32))).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    fails_with(&rotate(&data, &other_key, None), "is under way");

    // A node still running with the old key learns the new one.
    let running = open(&data);
    assert!(wb_server::keys_handover::learn_once(&running)
        .await
        .unwrap());
    let made_while_rotating = running.create_company("Beta", None).await.unwrap();

    let report = ok_json(&rotate(&data, &new_key, None));
    assert_eq!(report["status"]["rotation"], "complete", "{report}");
    assert_eq!(report["status"]["need_other_kek"], 0, "{report}");
    // platform.dek and control.key (node.key moved when the node learned).
    assert!(report["rewrapped"].as_u64().unwrap() >= 2, "{report}");
    // The user's and the staff member's TOTP secrets (and any queued email).
    assert!(report["resealed"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(report["recertified"], 1, "{report}");
    // Nothing left: a rerun changes nothing.
    let again = ok_json(&rotate(&data, &new_key, None));
    assert_eq!(again["rewrapped"], 0, "{again}");
    // The running node opens a company whose key moved under it.
    assert!(running.tenant(&company).await.is_ok());
    drop(running);

    // The new key alone: status, the books, a staff login with TOTP.
    let key_arg = ["--master-key-file", new_key.to_str().unwrap()];
    let status = ok_json(&workbooks(
        &["keys", "status", "--json", key_arg[0], key_arg[1]],
        &data,
    ));
    assert_eq!(status["kek"], new_id.as_str());
    assert_eq!(status["rotation"], "complete", "{status}");
    assert_eq!(status["wrapped"].as_object().unwrap().len(), 1, "{status}");
    {
        let platform = open_with(&data, &new_key);
        // Audited: the interrupted run and the refused second rotation as
        // failures, the finished ones.
        let rotations: Vec<String> = platform
            .control
            .audit_events(None, 0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "keys.rotate_master")
            .map(|e| e.outcome)
            .collect();
        assert_eq!(rotations, ["failure", "failure", "success", "success"]);
        let books = platform.tenant(&company).await.unwrap();
        assert_eq!(books.accounts().await.unwrap().len(), 2);
        user_login(&platform, &user_totp).await;
        platform.tenant(&made_while_rotating.id).await.unwrap();
        platform
            .staff_login(
                "ops@example.com",
                &Secret::from(PASSPHRASE.to_string()),
                &code(&totp, 0),
                Actor::system("test"),
                None,
            )
            .await
            .unwrap();
    }
    // The old key opens nothing.
    fails_with(
        &workbooks(&["keys", "status"], &data),
        "does not open this data directory",
    );

    // DR on fresh nodes: the new key alone works, the old key fails in one line.
    let objects = format!("file://{}", data.join("objects").display());
    let dr = |fresh: &str, key: &Path| {
        workbooks(
            &[
                "dr",
                "restore",
                "--from",
                &objects,
                "--master-key-file",
                key.to_str().unwrap(),
                "--json",
            ],
            &dir.path().join(fresh),
        )
    };
    fails_with(&dr("fresh-old", &old_key), "was the master key rotated?");
    let restored = ok_json(&dr("fresh-new", &new_key));
    assert!(
        restored["companies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["company_id"] == company.as_str() && c["restored"] == true),
        "{restored}"
    );
    // Staff live on the host, not in backups; what DR restored opens with
    // the new key alone.
    let status = ok_json(&workbooks(
        &["keys", "status", "--json", key_arg[0], key_arg[1]],
        &dir.path().join("fresh-new"),
    ));
    assert_eq!(status["rotation"], "complete", "{status}");
    user_login(
        &open_with(&dir.path().join("fresh-new"), &new_key),
        &user_totp,
    )
    .await;
}

/// POSTs `body` and answers the status and the JSON answer.
async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

async fn get_status(client: &reqwest::Client, url: String, token: &str) -> u16 {
    let answer = client.get(url).bearer_auth(token).send().await.unwrap();
    answer.status().as_u16()
}

/// `workbooks serve` keeps working through a rotation without a restart
/// (it learns the new key from the handover within the grace period), and
/// afterwards starts and serves with the new key alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_server_learns_the_new_key_and_then_the_new_key_alone_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init"], &data).status.success());
    let new_key = dir.path().join("new.key");
    MasterKey::load_or_create(&new_key).unwrap();
    let (user_totp, staff_totp, owned) = {
        let platform = open(&data);
        let user_totp = user_with_totp(&platform).await;
        let created = platform
            .create_staff(
                "ops@example.com",
                &[StaffRole::Operations],
                &Secret::from(PASSPHRASE.to_string()),
                Actor::system("test"),
            )
            .await
            .unwrap();
        let owned = platform.control.companies().await.unwrap()[0].id.clone();
        (user_totp, secret_in(created.totp_uri.expose()), owned)
    };
    let (server, url) = spawn_serve(&data);
    let client = https_client(&data);
    let (busy_status, busy) = post(
        &client,
        format!("{url}/api/v1/signup"),
        None,
        serde_json::json!({"company_name": "Busy Ltd", "email": "busy@example.com",
                           "passphrase": "violet orbit cactus thunder"}),
    )
    .await;
    assert_eq!(busy_status, 201, "{busy}");
    let busy_token = busy["token"].as_str().unwrap().to_string();
    let busy_accounts = |url: &str| {
        let company = busy["company"]["id"].as_str().unwrap();
        format!("{url}/api/v1/companies/{company}/accounts")
    };
    // Writes go on while the rotation runs (its grace is longer than the
    // server's look interval, 5 s): none may fail.
    let rotation = {
        let (data, new_key) = (data.clone(), new_key.clone());
        std::thread::spawn(move || rotate_with_grace(&data, &new_key, None, 6))
    };
    let mut written = 0;
    while !rotation.is_finished() {
        let (status, answer) = post(
            &client,
            busy_accounts(&url),
            Some(&busy_token),
            serde_json::json!({"code": format!("{}", 1000 + written), "name": "A", "type": "asset"}),
        )
        .await;
        match status {
            201 => written += 1,
            429 => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            _ => panic!("a write during the rotation failed: {status} {answer}"),
        }
    }
    assert!(written > 0);
    let report = ok_json(&rotation.join().unwrap());
    assert_eq!(report["status"]["rotation"], "complete", "{report}");

    // The server that started with the old key: a TOTP login (the secret
    // is sealed under the new key now), the books, a new company.
    let login = json_login(&client, &url, &user_totp).await;
    let token = login["token"].as_str().unwrap().to_string();
    let accounts = format!("{url}/api/v1/companies/{owned}/accounts");
    let (created, _) = post(
        &client,
        accounts.clone(),
        Some(&token),
        serde_json::json!({"code": "1000", "name": "Cash", "type": "asset"}),
    )
    .await;
    assert_eq!(created, 201);
    let (signed_up, signup) = post(
        &client,
        format!("{url}/api/v1/signup"),
        None,
        serde_json::json!({"company_name": "After Ltd", "email": "after@example.com",
                           "passphrase": "violet orbit cactus thunder"}),
    )
    .await;
    assert_eq!(signed_up, 201, "{signup}");
    let after = signup["company"]["id"].as_str().unwrap().to_string();
    let after_token = signup["token"].as_str().unwrap().to_string();
    drop(server);

    // The new key alone (moved over the old key file).
    std::fs::copy(&new_key, data.join("master.key")).unwrap();
    let (_server, url) = spawn_serve(&data);
    let (staff, answer) = post(
        &client,
        format!("{url}/api/v1/staff/auth/login"),
        None,
        serde_json::json!({"email": "ops@example.com", "passphrase": PASSPHRASE,
                           "otp": code(&staff_totp, 0).expose()}),
    )
    .await;
    assert_eq!(staff, 200, "{answer}");
    let accounts = format!("{url}/api/v1/companies/{owned}/accounts");
    assert_eq!(get_status(&client, accounts, &token).await, 200);
    let listed: serde_json::Value = client
        .get(busy_accounts(&url))
        .bearer_auth(&busy_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(written),
        "every write during the rotation is there"
    );
    let after_accounts = format!("{url}/api/v1/companies/{after}/accounts");
    assert_eq!(get_status(&client, after_accounts, &after_token).await, 200);
}

async fn json_login(client: &reqwest::Client, url: &str, secret: &TotpSecret) -> serde_json::Value {
    let (status, answer) = post(
        client,
        format!("{url}/api/v1/auth/login"),
        None,
        serde_json::json!({"email": "owner@example.com", "passphrase": PASSPHRASE,
                           "otp": code(secret, 1).expose()}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// `keys rotate --company` re-keys the company's books (the server stopped,
/// on the embedded store), `keys status --company` lists both versions, and
/// a master-key rotation afterwards re-wraps the retired version too, so
/// the new master key alone opens every version.
#[tokio::test(flavor = "multi_thread")]
async fn a_company_key_rotates_from_the_cli_and_its_versions_survive_a_master_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init"], &data).status.success());
    let company = crate::backup::books(&data, 3).await;
    let before = ok_json(&workbooks(
        &["keys", "status", "--company", &company, "--json"],
        &data,
    ));
    assert_eq!(before["current_version"], 1, "{before}");
    assert_eq!(before["versions"].as_array().unwrap().len(), 1);

    // Refused while a server holds the books open.
    {
        let (_server, _url) = spawn_serve(&data);
        fails_with(
            &workbooks(&["keys", "rotate", "--company", &company, "--json"], &data),
            "needs the server stopped",
        );
    }
    fails_with(
        &workbooks(&["keys", "rotate", "--company", "no-such-company"], &data),
        "company no-such-company: ",
    );
    let rotated = ok_json(&workbooks(
        &["keys", "rotate", "--company", &company, "--json"],
        &data,
    ));
    assert_eq!(rotated["version"], 2, "{rotated}");
    assert_eq!(rotated["previous_version"], 1, "{rotated}");
    let status = ok_json(&workbooks(
        &["keys", "status", "--company", &company, "--json"],
        &data,
    ));
    let states: Vec<(u64, String)> = status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![(2, "current".to_string()), (1, "retired".to_string())]
    );
    // What was shipped before the rotation is sealed under version 1.
    assert!(
        status["versions"][1]["depends"]["objects"]
            .as_u64()
            .unwrap()
            >= 1,
        "{status}"
    );
    {
        let platform = open(&data);
        let store = platform.tenant(&company).await.unwrap();
        assert_eq!(store.stats().await.unwrap().entries, 3);
    }

    // A new master key: both versions are re-wrapped and open with it alone.
    let new_key = dir.path().join("new.key");
    MasterKey::load_or_create(&new_key).unwrap();
    let report = ok_json(&rotate(&data, &new_key, None));
    assert_eq!(report["status"]["rotation"], "complete", "{report}");
    std::fs::copy(&new_key, data.join("master.key")).unwrap();
    let platform = open_with(&data, &new_key);
    let status = platform.company_key_status(&company).await.unwrap();
    assert_eq!(status.versions.len(), 2);
    let keys = platform.tenant(&company).await.unwrap();
    assert_eq!(keys.stats().await.unwrap().entries, 3);
    let verified = wb_server::backup_verify::verify(&platform, Some(&company))
        .await
        .unwrap();
    assert!(verified[0].verified(), "{:?}", verified[0]);
}
