//! A company's end over HTTPS, on both backends: its owner de-provisions it
//! (re-authenticated), which blocks the owner's session, its API keys and
//! staff grants at once; a cancel within the grace period brings members
//! and keys back (not the grants); after the grace period the destruction
//! leaves nothing of the company in the data directory or the object store,
//! restores and backup verification refuse it in one line, and the signed
//! certificate is served to the token's holder and verifies offline.

use std::path::{Path, PathBuf};

use object_store::ObjectStoreExt;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use wb_core::staff::StaffRole;
use wb_server::destruction::certificate;
use wb_server::exports::age::x25519;

use super::grant_use::{active_grant, upload};
use super::grants::staff;
use super::harness::{entry, Backend, Tenant, TestServer, PASSPHRASE};

/// Planted in entries and an attachment (and so in exports and backups).
const CANARY: &str = "CANARY-7f3a9c1e-ledger-secret";
/// Planted in the company's name (which the platform's own trail keeps in
/// the signup event: the name is the company's, the event the platform's).
const NAME_CANARY: &str = "NAMECANARY-52be";

async fn deprovision(srv: &TestServer, t: &Tenant, passphrase: &str) -> super::harness::Resp {
    srv.post(
        &t.path("/deprovision"),
        &t.token,
        json!({ "passphrase": passphrase }),
    )
    .await
}

/// A fresh session of the tenant's owner.
async fn signed_in(srv: &TestServer, t: &Tenant) -> String {
    srv.login(&t.email, PASSPHRASE).await.ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn at(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap()
}

/// Every file under `dir` but the test's mail sink (`outbox/`: the
/// messages sent to people, standing in for their mailboxes).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.ends_with("outbox") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The files under `dir` whose name or bytes hold `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|f| {
            f.to_string_lossy()
                .as_bytes()
                .windows(needle.len())
                .any(|w| w == needle)
                || std::fs::read(f).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprovisioning_blocks_every_credential_at_once_and_cancel_restores_within_grace() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Ending Soon Ltd").await;
    srv.chart(&t).await;
    let key = srv
        .post(
            &t.path("/api-keys"),
            &t.token,
            json!({"name": "sync", "role": "accountant"}),
        )
        .await
        .ok(201);
    let key = key["token"].as_str().unwrap().to_string();
    let (_, sam) = staff(&srv, "sam.end@ops.example", &[StaffRole::Support]).await;
    let (_, max) = staff(&srv, "max.end@ops.example", &[StaffRole::Management]).await;
    active_grant(&srv, &t, &sam, &max, "books:read").await;
    for token in [&t.token, &key, &sam] {
        srv.get(&t.path("/entries"), token).await.ok(200);
    }

    // Refused, and nothing changes: an API key, no passphrase, a wrong one.
    srv.post(
        &t.path("/deprovision"),
        &key,
        json!({"passphrase": PASSPHRASE}),
    )
    .await
    .problem(403, "forbidden");
    srv.post(&t.path("/deprovision"), &t.token, json!({}))
        .await
        .problem(422, "passphrase-required");
    deprovision(&srv, &t, "not the passphrase at all")
        .await
        .problem(403, "wrong-passphrase");
    srv.get(&t.path("/entries"), &t.token).await.ok(200);

    let now = srv.platform.now();
    let done = deprovision(&srv, &t, PASSPHRASE).await.ok(202);
    assert_eq!(done["state"], "deprovisioned");
    assert_eq!(done["grants_ended"], 1);
    let after = at(done["destroy_after"].as_str().unwrap());
    assert_eq!((after - now).whole_days(), 30, "{after} vs {now}");

    // At once: the owner's session, the API key and the staff grant.
    srv.get(&t.path("/entries"), &t.token)
        .await
        .problem(404, "not-found");
    srv.get(&t.path("/entries"), &key)
        .await
        .problem(404, "not-found");
    srv.get(&t.path("/entries"), &sam)
        .await
        .problem(403, "grant-required");
    deprovision(&srv, &t, PASSPHRASE)
        .await
        .problem(404, "not-found");
    // The owner is told, with the certificate's token.
    let mail = srv
        .delivered(&t.email, "was de-provisioned")
        .await
        .replace("=3D", "=");
    assert!(mail.contains("/api/v1/destruction-certificates/"), "{mail}");
    assert!(mail.contains("X-Certificate-Token: wbc_"), "{mail}");
    assert!(mail.contains("--deployment-key "), "{mail}");

    // A disaster recovery meanwhile brings the company back closed, with
    // the same grace period.
    if super::BACKEND == Backend::Sqlite {
        let p = &srv.platform;
        wb_server::jobs::shipper::ship_once(p, &mut Default::default())
            .await
            .unwrap();
        wb_server::backup::audit_trail::ship_once(p, &mut Default::default())
            .await
            .unwrap();
        wb_server::dr::backup_config_once(p, &mut Default::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fresh = wb_server::Platform::open(
            dir.path(),
            srv.master.clone(),
            std::sync::Arc::new(wb_server::SystemClock),
            time::Duration::hours(1),
            &wb_server::StorageConfig::Embedded,
        )
        .await
        .unwrap()
        .with_object_store(p.objects.clone());
        let report = wb_server::dr::restore(&fresh).await.unwrap();
        let back = report
            .companies
            .iter()
            .find(|c| c.company_id == t.id)
            .unwrap();
        assert!(back.restored, "{back:?}");
        let company = fresh.control.company(&t.id).await.unwrap().unwrap();
        assert_eq!(company.status, wb_store::CompanyStatus::Deprovisioned);
        let lifecycle = fresh.control.deprovisioning(&t.id).await.unwrap().unwrap();
        let millis = |t: OffsetDateTime| t.unix_timestamp_nanos() / 1_000_000;
        assert_eq!(millis(lifecycle.destroy_after), millis(after));
    }

    // Only an owner cancels; then members and keys work again, the grant
    // stays ended.
    srv.post(&t.path("/deprovision/cancel"), &key, json!({}))
        .await
        .problem(404, "not-found");
    let back = srv
        .post(&t.path("/deprovision/cancel"), &t.token, json!({}))
        .await
        .ok(200);
    assert_eq!(back["state"], "active");
    srv.get(&t.path("/entries"), &t.token).await.ok(200);
    srv.get(&t.path("/entries"), &key).await.ok(200);
    srv.get(&t.path("/entries"), &sam)
        .await
        .problem(403, "grant-required");

    // Once the grace period is over, no cancel.
    deprovision(&srv, &t, PASSPHRASE).await.ok(202);
    clock.advance(time::Duration::days(30));
    // (A session lasts hours: the owner signs in again.)
    let t = Tenant {
        token: signed_in(&srv, &t).await,
        ..t
    };
    srv.post(&t.path("/deprovision/cancel"), &t.token, json!({}))
        .await
        .problem(409, "grace-period-over");

    // Every step is on record in the platform trail.
    let trail = srv
        .platform
        .control
        .audit_events(Some(&t.id), 0, 100_000)
        .await
        .unwrap();
    let count = |action: &str, outcome: &str| {
        trail
            .iter()
            .filter(|e| e.action == action && e.outcome == outcome)
            .count()
    };
    assert_eq!(count("company.deprovision", "success"), 2);
    assert_eq!(count("company.deprovision.cancel", "success"), 1);
    // The wrong passphrase is in the account's trail.
    let refused = srv
        .platform
        .control
        .audit_events(None, 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.action == "company.deprovision"
                && e.outcome == "failure"
                && e.actor == format!("user:{}", t.user_id)
        })
        .count();
    assert_eq!(refused, 1, "the wrong passphrase");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destruction_after_grace_leaves_nothing_and_a_certificate_that_verifies() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup(&format!("Shredded Ltd {NAME_CANARY}")).await;
    srv.chart(&t).await;
    for i in 0..3 {
        srv.post_entry(
            &t,
            entry(
                "2026-02-01",
                &format!("{CANARY} sale {i}"),
                &[("1000", "10.00", "USD"), ("4000", "-10.00", "USD")],
            ),
        )
        .await;
    }
    upload(&srv, &t, &t.token, format!("receipt {CANARY}").as_bytes())
        .await
        .ok(201);
    let recipient = x25519::Identity::generate().to_public().to_string();
    srv.post(
        &t.path("/exports"),
        &t.token,
        json!({ "recipient": recipient }),
    )
    .await
    .ok(201);
    // Backups of every kind: journal segments, a snapshot, audit segments,
    // the configuration and the wrapped key.
    let p = &srv.platform;
    wb_server::jobs::shipper::ship_once(p, &mut Default::default())
        .await
        .unwrap();
    wb_server::backup::snapshot::take(p, &t.id).await.unwrap();
    wb_server::backup::audit_trail::ship_once(p, &mut Default::default())
        .await
        .unwrap();
    assert!(
        wb_server::dr::backup_config_once(p, &mut Default::default())
            .await
            .unwrap()
    );
    let wrapped = p.control.company(&t.id).await.unwrap().unwrap().wrapped_dek;
    let prefix = object_store::path::Path::from(format!("companies/{}", t.id));
    let listed = |p: &wb_server::Platform| {
        let objects = p.objects.clone();
        let prefix = prefix.clone();
        async move {
            use futures_util::TryStreamExt;
            objects
                .list(Some(&prefix))
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
                .len()
        }
    };
    assert!(
        listed(p).await >= 5,
        "backups, snapshot, audit, file, export"
    );

    if super::BACKEND == Backend::Postgres {
        // The search below can fail: before, the rows are there in plain.
        let cluster = wb_pgtest::PgCluster::shared();
        assert!(!holding(cluster.data_dir(), CANARY.as_bytes()).is_empty());
    }
    let done = deprovision(&srv, &t, PASSPHRASE).await.ok(202);
    let certificate_id = done["certificate_id"].as_str().unwrap().to_string();
    let mail = srv
        .delivered(&t.email, "was de-provisioned")
        .await
        .replace("=3D", "=");
    let token = mail
        .split("X-Certificate-Token: ")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap()
        .to_string();
    assert!(token.starts_with("wbc_"), "{token}");
    let cert_path = format!("/api/v1/destruction-certificates/{certificate_id}");
    // Not yet destroyed: the token says so, and nothing goes before its time.
    srv.get_anon(&format!("{cert_path}?token={token}"))
        .await
        .problem(409, "not-destroyed-yet");
    clock.advance(time::Duration::days(29));
    assert_eq!(p.destroy_due_companies().await.unwrap().destroyed, 0);
    assert!(listed(p).await >= 5);

    clock.advance(time::Duration::days(1));
    let owner = signed_in(&srv, &t).await;
    let round = p.destroy_due_companies().await.unwrap();
    if round.failed > 0 {
        let err = p
            .destroy_company(&t.id, false, wb_store::Actor::system("test"))
            .await
            .unwrap_err();
        panic!("the destruction failed: {err:?}");
    }
    assert_eq!((round.destroyed, round.failed), (1, 0));

    // Nothing of it anywhere the product writes: no database file, no
    // object under its prefix, no wrapped key, no canary, no key bytes.
    assert_eq!(listed(p).await, 0);
    let dek = object_store::path::Path::from(format!("keys/companies/{}.dek", t.id));
    assert!(
        p.objects.head(&dek).await.is_err(),
        "the wrapped key object is gone"
    );
    let company = p.control.company(&t.id).await.unwrap().unwrap();
    assert!(company.wrapped_dek.is_empty() && company.name.is_empty());
    for needle in [
        CANARY.as_bytes(),
        NAME_CANARY.as_bytes(),
        &wrapped,
        t.id.as_bytes(),
    ] {
        let found = holding(&srv.data_dir, needle);
        assert!(found.is_empty(), "{found:?}");
    }
    // On PostgreSQL the company's rows were plain in the server's files:
    // its database is dropped and the WAL that held them checkpointed away.
    if super::BACKEND == Backend::Postgres {
        let cluster = wb_pgtest::PgCluster::shared();
        let found = holding(cluster.data_dir(), CANARY.as_bytes());
        assert!(found.is_empty(), "{found:?}");
    }

    // Restores and verification refuse it in one line that says when.
    let err = wb_server::backup::restore(p, &t.id, wb_server::backup::RestoreTarget::Latest)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("was destroyed at") && !err.contains('\n'),
        "{err}"
    );
    let err = wb_server::backup_verify::verify(p, Some(&t.id))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("was destroyed at"), "{err}");
    srv.get(&t.path("/entries"), &owner)
        .await
        .problem(404, "not-found");

    // The certificate: only with the token; it verifies offline and an edit fails.
    srv.get_anon(&format!("{cert_path}?token=wbc_wrong"))
        .await
        .problem(404, "not-found");
    let resp = srv
        .send(
            reqwest::Method::GET,
            &cert_path,
            None,
            super::harness::Body::None,
            &[("x-certificate-token", token.as_str())],
        )
        .await;
    let text = resp.text.clone();
    let fetched: Value = resp.ok(200);
    assert_eq!(fetched["certificate"]["company_id"], t.id.as_str());
    let checked = certificate::verify(&text, None).unwrap();
    assert_eq!(checked.certificate.id, certificate_id);
    let steps: Vec<_> = checked
        .certificate
        .steps
        .iter()
        .map(|s| s.step.as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "database",
            "attachments",
            "journal_segments",
            "snapshots",
            "audit_segments",
            "exports",
            "other_objects",
            "config_backups",
            "keys"
        ]
    );
    let by = |name: &str| {
        checked
            .certificate
            .steps
            .iter()
            .find(|s| s.step.as_str() == name)
            .unwrap()
            .items
    };
    assert!(by("attachments") >= 1 && by("snapshots") >= 1 && by("exports") >= 1);
    assert!(by("journal_segments") >= 1 && by("config_backups") >= 1 && by("keys") >= 1);
    assert!(!checked.certificate.grace_overridden);
    let edited = text.replacen(
        "\"grace_overridden\": false",
        "\"grace_overridden\": true",
        1,
    );
    assert!(certificate::verify(&edited, None).is_err());
    // Kept in the platform trail, whole.
    let trail = p
        .control
        .audit_events(Some(&t.id), 0, 100_000)
        .await
        .unwrap();
    let destroyed = trail
        .iter()
        .find(|e| e.action == "company.destroyed")
        .unwrap();
    assert_eq!(destroyed.detail.as_deref(), Some(text.as_str()));
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.action == "company.destroy.step")
            .count(),
        9
    );

    // A fresh node recovering from the object store finds a tombstone,
    // before and after the next configuration backup.
    if super::BACKEND == Backend::Sqlite {
        // Debris of a destruction the lost control store never finished:
        // the recovery removes it.
        let late = object_store::path::Path::from(format!("companies/{}/files/late", t.id));
        p.objects
            .put(&late, object_store::PutPayload::from(vec![7u8; 16]))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fresh = wb_server::Platform::open(
            dir.path(),
            srv.master.clone(),
            std::sync::Arc::new(wb_server::SystemClock),
            time::Duration::hours(1),
            &wb_server::StorageConfig::Embedded,
        )
        .await
        .unwrap()
        .with_object_store(p.objects.clone());
        let report = wb_server::dr::restore(&fresh).await.unwrap();
        let gone = report
            .companies
            .iter()
            .find(|c| c.company_id == t.id)
            .unwrap();
        assert!(!gone.restored);
        assert!(gone.name.is_empty());
        let why = gone.error.as_deref().unwrap();
        assert!(
            why.contains("was destroyed after") && why.contains(&certificate_id),
            "{why}"
        );
        assert!(why.contains("1 objects it left behind removed"), "{why}");
        assert!(p.objects.head(&late).await.is_err());
        assert!(
            wb_server::dr::backup_config_once(p, &mut Default::default())
                .await
                .unwrap()
        );
        let dir = tempfile::tempdir().unwrap();
        let fresh = wb_server::Platform::open(
            dir.path(),
            srv.master.clone(),
            std::sync::Arc::new(wb_server::SystemClock),
            time::Duration::hours(1),
            &wb_server::StorageConfig::Embedded,
        )
        .await
        .unwrap()
        .with_object_store(p.objects.clone());
        let report = wb_server::dr::restore(&fresh).await.unwrap();
        let why = report
            .companies
            .iter()
            .find(|c| c.company_id == t.id)
            .and_then(|c| c.error.clone())
            .unwrap();
        assert!(
            why.contains("was destroyed at") && why.contains(&certificate_id),
            "{why}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_owner_with_their_second_factor_deprovisions_and_invitations_die() {
    use super::mfa::{code, enrol, member_of};

    let srv = TestServer::start_manual().await;
    let t = srv.signup("Careful Ltd").await;
    let admin = member_of(&srv, &t, "admin").await;
    srv.post(
        &t.path("/deprovision"),
        &admin,
        json!({"passphrase": PASSPHRASE}),
    )
    .await
    .problem(403, "forbidden");

    let (secret, _) = enrol(&srv, &t.token).await;
    deprovision(&srv, &t, PASSPHRASE)
        .await
        .problem(403, "mfa-required");
    srv.post(
        &t.path("/deprovision"),
        &t.token,
        json!({"passphrase": PASSPHRASE, "otp": "000000"}),
    )
    .await
    .problem(401, "mfa-invalid");
    let invited = srv
        .post(
            &t.path("/invitations"),
            &t.token,
            json!({"email": "late.owner@example.com", "role": "owner"}),
        )
        .await
        .ok(201);
    srv.get(&t.path("/entries"), &t.token).await.ok(200);

    srv.post(
        &t.path("/deprovision"),
        &t.token,
        json!({"passphrase": PASSPHRASE, "otp": code(&srv, &secret)}),
    )
    .await
    .ok(202);
    // The pending owner invitation went with it: nobody joins to cancel.
    let accept = format!(
        "/api/v1/invitations/{}/accept",
        invited["token"].as_str().unwrap()
    );
    let refused = srv
        .post_anon(&accept, json!({"passphrase": PASSPHRASE}))
        .await;
    assert!(refused.status.is_client_error(), "{}", refused.text);
    // Backup status still answers, without the company.
    let status = wb_server::backup::status(&srv.platform).await.unwrap();
    assert!(status.iter().all(|s| s.company_id != t.id));
}
