//! A sanitized sandbox restore, on the five conditions: refused without a
//! management approval, with another company's, a used or an expired one,
//! or a different reason; the copy holds production's books and its
//! attachments under its own master key; no production passphrase, session
//! or API key works in it and production's key opens nothing in it; it is
//! destroyed at its expiry (injected clock); every step, refusals included,
//! is in the production control trail.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use wb_core::staff::StaffRole;
use wb_crypto::{token_hash, MasterKey, Secret};
use wb_server::restore_target::RestoreTarget;
use wb_server::sandbox::local;
use wb_server::{Clock, Platform};
use wb_store::Actor;

use super::harness::{entry, Tenant, TestServer, PASSPHRASE};
use super::staff::{code, next_step, staff_member, STAFF_PASSPHRASE};

const REASON: &str = "reproduce ticket 4711: wrong VAT totals in March";

async fn approve(
    srv: &TestServer,
    company: &str,
    email: &str,
    otp: &str,
    ttl_hours: u32,
) -> Result<wb_server::sandbox::Approved, String> {
    srv.platform
        .sandbox_approve(
            company,
            REASON,
            ttl_hours,
            email,
            &Secret::from(STAFF_PASSPHRASE.to_string()),
            &Secret::from(otp.to_string()),
        )
        .await
        .map_err(|e| e.to_string())
}

async fn restore(
    srv: &TestServer,
    company: &str,
    reason: &str,
    token: &str,
    dir: &Path,
) -> Result<wb_server::sandbox::SandboxCreated, String> {
    srv.platform
        .sandbox_restore(company, reason, token, dir, RestoreTarget::Latest)
        .await
        .map_err(|e| format!("{e:#}"))
}

async fn trail(srv: &TestServer, action: &str) -> Vec<(String, String)> {
    srv.platform
        .control
        .audit_events(None, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| (e.outcome, e.detail.unwrap_or_default()))
        .collect()
}

async fn books(platform: &Platform, company: &str) -> (Vec<String>, Vec<String>) {
    let store = platform.tenant(company).await.unwrap();
    let entries = store
        .entries(wb_store::EntryPage {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {} {:?}", e.date, e.description, e.postings))
        .collect();
    let mut balances: Vec<String> = store
        .balances_as_of(time::macros::date!(2199 - 12 - 31))
        .await
        .unwrap()
        .into_iter()
        .map(|b| format!("{b:?}"))
        .collect();
    balances.sort();
    (entries, balances)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_is_restored_only_on_approval_sanitized_and_destroyed_at_its_expiry() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Sandboxed Ltd").await;
    let other = srv.signup("Other Ltd").await;
    srv.chart(&t).await;
    srv.post_entry(
        &t,
        entry(
            "2026-03-01",
            "March sale",
            &[("1000", "119.00", "EUR"), ("4000", "-119.00", "EUR")],
        ),
    )
    .await;
    let receipt = srv
        .send(
            reqwest::Method::POST,
            &t.path("/files?name=receipt.txt"),
            Some(&t.token),
            super::harness::Body::Raw {
                content_type: Some("text/plain"),
                bytes: b"VAT receipt".to_vec(),
            },
            &[],
        )
        .await
        .ok(201);
    assert!(receipt["id"].is_string());
    clock.advance(time::Duration::minutes(1));
    let before_rent = clock.now();
    clock.advance(time::Duration::minutes(1));
    srv.post_entry(
        &t,
        entry(
            "2026-03-02",
            "Rent",
            &[("5000", "40.00", "EUR"), ("1000", "-40.00", "EUR")],
        ),
    )
    .await;
    let api_key = srv
        .post(
            &t.path("/api-keys"),
            &t.token,
            json!({"name": "ci", "role": "viewer"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    // The owner has an authenticator in production.
    let _ = super::mfa::enrol(&srv, &t.token).await;
    super::company_keys::wait_shipped(&srv, &t.id).await;

    let manager = staff_member(&srv, "mia@ops.example", &[StaffRole::Management]).await;
    let support = staff_member(&srv, "sam@ops.example", &[StaffRole::Support]).await;
    let work = tempfile::tempdir().unwrap();
    let sandbox_dir = work.path().join("sandbox");

    // Only management approves, with passphrase and a current code.
    let refused = approve(&srv, &t.id, "sam@ops.example", &code(&srv, &support), 4).await;
    assert!(refused.unwrap_err().contains("management"));
    next_step(&srv);
    assert!(approve(&srv, &t.id, "mia@ops.example", "000000", 4)
        .await
        .is_err());
    next_step(&srv);
    let approved = approve(&srv, &t.id, "mia@ops.example", &code(&srv, &manager), 4)
        .await
        .unwrap();
    assert!(approved.token.starts_with("wbsbx_"));

    // Restores refused: no token, another company's, another reason.
    let err = restore(&srv, &t.id, REASON, "wbsbx_forged.00", &sandbox_dir)
        .await
        .unwrap_err();
    assert!(err.contains("malformed"), "{err}");
    let mut forged = approved.token.clone();
    forged.pop();
    forged.push(if approved.token.ends_with('0') {
        '1'
    } else {
        '0'
    });
    let err = restore(&srv, &t.id, REASON, &forged, &sandbox_dir)
        .await
        .unwrap_err();
    assert!(err.contains("not signed"), "{err}");
    next_step(&srv);
    let theirs = approve(&srv, &other.id, "mia@ops.example", &code(&srv, &manager), 4)
        .await
        .unwrap();
    let err = restore(&srv, &t.id, REASON, &theirs.token, &sandbox_dir)
        .await
        .unwrap_err();
    assert!(err.contains("another company"), "{err}");
    let err = restore(&srv, &t.id, "curiosity", &approved.token, &sandbox_dir)
        .await
        .unwrap_err();
    assert!(err.contains("reason"), "{err}");
    assert!(!sandbox_dir.exists(), "a refusal leaves no sandbox");

    // The approved restore.
    let created = restore(&srv, &t.id, REASON, &approved.token, &sandbox_dir)
        .await
        .unwrap();
    assert_eq!(created.owner_email, t.email);
    assert_eq!(created.expires_at, approved.expires_at);
    assert_ne!(created.owner_passphrase, PASSPHRASE);
    // Single use.
    let err = restore(
        &srv,
        &t.id,
        REASON,
        &approved.token,
        &work.path().join("again"),
    )
    .await
    .unwrap_err();
    assert!(err.contains("already used"), "{err}");
    let live = srv.platform.live_sandboxes().await.unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].source_company, t.id);

    // Production's master key opens nothing in the sandbox.
    let production_key = std::fs::read(srv.platform.data_dir().join("master.key"));
    let sandbox_key = std::fs::read(sandbox_dir.join("master.key")).unwrap();
    if let Ok(production_key) = production_key {
        assert_ne!(production_key, sandbox_key);
    }
    let foreign = Platform::open_embedded(
        &sandbox_dir,
        MasterKey::generate(),
        Arc::new(wb_server::SystemClock),
        time::Duration::hours(12),
    );
    assert!(foreign.is_err(), "another master key opened the sandbox");

    {
        let sandbox = local::open(&sandbox_dir, clock.clone()).await.unwrap();
        // The books are production's.
        assert_eq!(
            books(&sandbox, &created.company).await,
            books(&srv.platform, &t.id).await
        );
        // Production's passphrase, session and API key do not work there,
        // and the owner's authenticator stayed in production (`login`
        // refuses an account with a second factor).
        for (pass, works) in [
            (PASSPHRASE, false),
            (created.owner_passphrase.as_str(), true),
        ] {
            let secret = Secret::from(pass.to_string());
            let login = sandbox
                .login(&t.email, &secret, Actor::system("test"))
                .await;
            assert_eq!(login.is_ok(), works, "{pass}");
        }
        for token in [&t.token, &api_key] {
            let hash = token_hash(&Secret::from(token.to_string()));
            assert!(sandbox.control.session(&hash).await.unwrap().is_none());
            assert!(sandbox.control.api_key(&hash).await.unwrap().is_none());
        }
        assert!(sandbox
            .control
            .api_keys(&created.company)
            .await
            .unwrap()
            .is_empty());
        // Served (on loopback), the owner signs in with the new passphrase
        // and the attachment opens under the sandbox's own key.
        let sandbox = Arc::new(sandbox);
        let config =
            wb_server::ServerConfig::new(sandbox_dir.clone(), "127.0.0.1:0".parse().unwrap());
        let server = wb_server::start(sandbox.clone(), &config, None)
            .await
            .unwrap();
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let url = server.url();
        let signed_in: serde_json::Value = client
            .post(format!("{url}/api/v1/auth/login"))
            .json(&json!({"email": t.email, "passphrase": created.owner_passphrase}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = signed_in["token"].as_str().unwrap().to_string();
        let base = format!("{url}/api/v1/companies/{}", created.company);
        let listed: serde_json::Value = client
            .get(format!("{base}/files"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = listed["files"][0]["id"].as_str().unwrap().to_string();
        let bytes = client
            .get(format!("{base}/files/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"VAT receipt");
        server.shutdown().await.unwrap();
        assert!(sandbox
            .control
            .staff_by_email("mia@ops.example")
            .await
            .unwrap()
            .is_none());
    }

    // Editing sandbox.json extends nothing: the expiry in its encrypted
    // store counts.
    let mut manifest = local::read_manifest(&sandbox_dir).unwrap();
    manifest.expires_at = "2099-01-01T00:00:00Z".into();
    std::fs::write(
        sandbox_dir.join("sandbox.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    {
        let sandbox = local::open(&sandbox_dir, clock.clone()).await.unwrap();
        let expires = local::expiry(&sandbox, &sandbox_dir).await.unwrap();
        assert_eq!(wb_server::dto::rfc3339(expires), created.expires_at);
    }

    // Its time runs out (the injected clock): the host destroys it, master
    // key first, the next time it looks (`sandbox list`), and says so.
    assert_eq!(srv.platform.live_sandboxes().await.unwrap().len(), 1);
    clock.advance(time::Duration::hours(5));
    assert!(srv.platform.live_sandboxes().await.unwrap().is_empty());
    assert!(!sandbox_dir.exists());
    // A sandbox being served is not destroyed under its server, and a
    // directory that is not a sandbox (or a link to one) is refused.
    let not_a_sandbox = work.path().join("plain");
    std::fs::create_dir(&not_a_sandbox).unwrap();
    assert!(local::destroy(&not_a_sandbox, "by hand", clock.now()).is_err());
    assert!(not_a_sandbox.exists());

    // A point in time: the books as they were then.
    next_step(&srv);
    let earlier = approve(&srv, &t.id, "mia@ops.example", &code(&srv, &manager), 4)
        .await
        .unwrap();
    let earlier_dir = work.path().join("earlier");
    let created = srv
        .platform
        .sandbox_restore(
            &t.id,
            REASON,
            &earlier.token,
            &earlier_dir,
            RestoreTarget::Time(before_rent),
        )
        .await
        .unwrap();
    {
        let sandbox = local::open(&earlier_dir, clock.clone()).await.unwrap();
        let (entries, _) = books(&sandbox, &created.company).await;
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(entries[0].contains("March sale"));
    }
    let destroyed = wb_server::sandbox::destroy_and_report(
        &earlier_dir,
        "by hand",
        clock.now(),
        Some(&srv.platform),
    )
    .await
    .unwrap();
    assert_eq!(destroyed.cause, "by hand");
    assert!(!earlier_dir.exists());

    // An expired approval is refused.
    next_step(&srv);
    let short = approve(&srv, &t.id, "mia@ops.example", &code(&srv, &manager), 1)
        .await
        .unwrap();
    clock.advance(time::Duration::hours(2));
    let err = restore(&srv, &t.id, REASON, &short.token, &work.path().join("late"))
        .await
        .unwrap_err();
    assert!(err.contains("expired"), "{err}");

    // Every step is in the production control trail.
    let approvals = trail(&srv, "sandbox.approve").await;
    assert_eq!(
        approvals.iter().filter(|(o, _)| o == "success").count(),
        4,
        "{approvals:?}"
    );
    assert!(approvals
        .iter()
        .any(|(o, d)| o == "failure" && d.contains("management")));
    let restores = trail(&srv, "sandbox.restore").await;
    assert_eq!(restores.iter().filter(|(o, _)| o == "success").count(), 2);
    assert_eq!(
        restores.iter().filter(|(o, _)| o == "failure").count(),
        6,
        "{restores:?}"
    );
    let destructions = trail(&srv, "sandbox.destroy").await;
    assert_eq!(destructions.len(), 2, "{destructions:?}");
    assert!(destructions[0].1.contains("expired"));
    assert!(destructions[1].1.contains("by hand"));
    let _: &Tenant = &t;
}
