//! Company key rotation, on both backends: the owner rotates while writers
//! post and nothing is lost; attachments and backups sealed before open
//! beside those sealed after; restores to points before and after the
//! rotation hold the books as they were; the old version stays while
//! anything kept needs it and goes when nothing does; a key older than the
//! policy allows raises an alert once per version.

use std::time::Duration;

use object_store::ObjectStoreExt;
use reqwest::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use wb_server::backup::{self, snapshot};

use super::harness::{entry, Body, Tenant, TestServer};

pub(super) async fn wait_shipped(srv: &TestServer, company: &str) {
    for _ in 0..400 {
        let head = srv
            .platform
            .tenant(company)
            .await
            .expect("tenant")
            .journal_head();
        let status = backup::status(&srv.platform).await.expect("backup status");
        if status
            .iter()
            .any(|s| s.company_id == company && s.shipped_seq >= head && s.lag_records == 0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("company {company} was not shipped in 20 s");
}

async fn restored(srv: &TestServer, t: &Tenant, body: Value) -> Tenant {
    let asked = srv.post(&t.path("/restores"), &t.token, body).await.ok(202);
    let job = super::restores::ended(srv, t, asked["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    Tenant {
        id: job["company"]["id"].as_str().unwrap().to_string(),
        ..t.clone()
    }
}

fn descriptions(entries: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = entries
        .iter()
        .map(|e| e["description"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

async fn upload(srv: &TestServer, t: &Tenant, bytes: &[u8]) -> String {
    srv.send(
        Method::POST,
        &t.path("/files?name=receipt.txt"),
        Some(&t.token),
        Body::Raw {
            content_type: Some("text/plain"),
            bytes: bytes.to_vec(),
        },
        &[],
    )
    .await
    .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn download(srv: &TestServer, t: &Tenant, id: &str) -> Vec<u8> {
    let response = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(srv.url(&t.path(&format!("/files/{id}"))))
        .bearer_auth(&t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

fn version(status: &Value, n: u64) -> &Value {
    status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == n)
        .unwrap_or_else(|| panic!("no version {n} in {status}"))
}

fn sale(description: &str) -> Value {
    entry(
        "2026-02-01",
        description,
        &[("1000", "10.00", "EUR"), ("4000", "-10.00", "EUR")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_key_rotates_under_load_and_restores_on_both_sides_of_it() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Rekey Bakery").await;
    srv.chart(&t).await;
    srv.post_entry(&t, sale("before the rotation")).await;
    let old_file = upload(&srv, &t, b"receipt sealed under version 1").await;
    wait_shipped(&srv, &t.id).await;
    snapshot::take(&srv.platform, &t.id)
        .await
        .expect("a snapshot under version 1");
    clock.advance(time::Duration::hours(1));
    let before_rotation = (srv.platform.now() - time::Duration::minutes(30))
        .format(&Rfc3339)
        .unwrap();

    // Only the owner rotates: an admin's API key is refused.
    let admin_key = srv
        .post(
            &t.path("/api-keys"),
            &t.token,
            json!({"name": "bot", "role": "admin"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    srv.post(&t.path("/keys/rotate"), &admin_key, json!({}))
        .await
        .problem(403, "forbidden");
    // Admins may read the versions.
    assert_eq!(
        srv.get(&t.path("/keys"), &admin_key).await.ok(200)["current_version"],
        1
    );

    // Writers post while the owner rotates.
    const WRITERS: usize = 4;
    const POSTS: usize = 10;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (srv_url, t) = (srv.url(&t.path("/entries")), t.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .danger_accept_invalid_certs(true)
                    .build()
                    .unwrap();
                for i in 0..POSTS {
                    let response = client
                        .post(&srv_url)
                        .bearer_auth(&t.token)
                        .json(&sale(&format!("during {w}/{i}")))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
                }
            })
        })
        .collect();
    let rotated = srv
        .post(&t.path("/keys/rotate"), &t.token, json!({}))
        .await
        .ok(200);
    assert_eq!(rotated["version"], 2);
    assert_eq!(rotated["previous_version"], 1);
    assert!(rotated["database_write_pause_ms"].as_f64().unwrap() < 1000.0);
    for w in writers {
        w.await.unwrap();
    }
    srv.post_entry(&t, sale("after the rotation")).await;
    let new_file = upload(&srv, &t, b"receipt sealed under version 2").await;
    let all = srv.all_entries(&t, &t.token).await;
    assert_eq!(all.len(), 2 + WRITERS * POSTS);

    // Both attachments open; the new one is sealed under version 2.
    assert_eq!(
        download(&srv, &t, &old_file).await,
        b"receipt sealed under version 1"
    );
    assert_eq!(
        download(&srv, &t, &new_file).await,
        b"receipt sealed under version 2"
    );
    wait_shipped(&srv, &t.id).await;
    let status = srv.get(&t.path("/keys"), &t.token).await.ok(200);
    assert_eq!(status["current_version"], 2);
    let (v1, v2) = (version(&status, 1), version(&status, 2));
    assert_eq!(v1["state"], "retired");
    assert_eq!(v2["state"], "current");
    assert_eq!(v2["database"], true);
    assert!(
        v1["depends"]["by_kind"]["files"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(
        v1["depends"]["by_kind"]["snapshots"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(
        v2["depends"]["by_kind"]["files"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(
        v2["depends"]["by_kind"]["journal"].as_u64().unwrap() >= 1,
        "{status}"
    );
    // The rotation is in the company's trail.
    let control = srv
        .platform
        .control
        .audit_events(Some(&t.id), 0, 10_000)
        .await
        .unwrap();
    assert!(control.iter().any(|e| e.action == "company.key.rotate"));

    // A backup verifies across the versions.
    let verified = wb_server::backup_verify::verify(&srv.platform, Some(&t.id))
        .await
        .unwrap();
    assert!(verified[0].verified(), "{:?}", verified[0]);

    // Restores to either side of the rotation.
    let before = restored(
        &srv,
        &t,
        json!({"to": before_rotation, "confirm": "Rekey Bakery"}),
    )
    .await;
    assert_eq!(
        descriptions(&srv.all_entries(&before, &t.token).await),
        vec!["before the rotation"]
    );
    let latest = restored(&srv, &t, json!({"latest": true, "confirm": "Rekey Bakery"})).await;
    let restored_all = srv.all_entries(&latest, &t.token).await;
    assert_eq!(descriptions(&restored_all), descriptions(&all));

    // Version 1 stays: an attachment kept is sealed under it.
    assert!(srv.platform.key_upkeep(&t.id).await.unwrap().is_empty());
    let status = srv.get(&t.path("/keys"), &t.token).await.ok(200);
    assert_eq!(version(&status, 1)["state"], "retired");
    let retired_copy = format!("keys/companies/{}.v1.dek", t.id);
    assert!(srv
        .platform
        .objects
        .head(&object_store::path::Path::from(retired_copy.as_str()))
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_version_goes_once_nothing_kept_needs_it_and_old_keys_alert() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Short Memory Ltd").await;
    srv.chart(&t).await;
    srv.post_entry(&t, sale("under version 1")).await;
    wait_shipped(&srv, &t.id).await;
    snapshot::take(&srv.platform, &t.id).await.unwrap();

    // The policy allows keys 30 days; at 31 the alert is raised, once.
    srv.send(
        Method::PUT,
        &t.path("/security-policy"),
        Some(&t.token),
        Body::Json(json!({"key_max_age_days": 30})),
        &[],
    )
    .await
    .ok(200);
    srv.send(
        Method::PUT,
        &t.path("/security-policy"),
        Some(&t.token),
        Body::Json(json!({"key_max_age_days": 5})),
        &[],
    )
    .await
    .problem(422, "invalid-security-policy");
    let key_alerts = |srv: &TestServer| {
        let platform = srv.platform.clone();
        let company = t.id.clone();
        async move {
            platform
                .alerts
                .list(None, 1000)
                .await
                .unwrap()
                .into_iter()
                .filter(|a| {
                    a.rule == wb_server::company_keys::KEY_AGE_RULE
                        && a.company_id.as_deref() == Some(company.as_str())
                })
                .count()
        }
    };
    srv.platform.key_upkeep(&t.id).await.unwrap();
    assert_eq!(key_alerts(&srv).await, 0);
    clock.advance(time::Duration::days(31));
    srv.platform.key_upkeep(&t.id).await.unwrap();
    srv.platform.key_upkeep(&t.id).await.unwrap();
    assert_eq!(key_alerts(&srv).await, 1);
    // A month later the owner signs in again.
    let t = srv.sign_in_again(&t).await;

    let rotated = srv
        .post(&t.path("/keys/rotate"), &t.token, json!({}))
        .await
        .ok(200);
    assert_eq!(rotated["version"], 2);
    srv.post_entry(&t, sale("under version 2")).await;
    wait_shipped(&srv, &t.id).await;
    // Still needed: segments and the snapshot under version 1.
    assert!(srv.platform.key_upkeep(&t.id).await.unwrap().is_empty());
    assert_eq!(key_alerts(&srv).await, 1, "a fresh version raises nothing");

    // A snapshot under version 2, then retention that keeps only it.
    clock.advance(time::Duration::hours(1));
    snapshot::take(&srv.platform, &t.id).await.unwrap();
    clock.advance(time::Duration::days(60));
    let t = srv.sign_in_again(&t).await;
    backup::prune(
        &srv.platform,
        &t.id,
        wb_core::retention::RetentionPolicy {
            pitr: time::Duration::days(1),
            daily: time::Duration::days(1),
        },
    )
    .await
    .unwrap();
    let status = srv.get(&t.path("/keys"), &t.token).await.ok(200);
    assert!(
        version(&status, 1)["depends"]["objects"].as_u64().unwrap() == 0,
        "{status}"
    );
    assert_eq!(srv.platform.key_upkeep(&t.id).await.unwrap(), vec![1]);
    let status = srv.get(&t.path("/keys"), &t.token).await.ok(200);
    assert_eq!(version(&status, 1)["state"], "destroyed");
    let retired_copy = format!("keys/companies/{}.v1.dek", t.id);
    assert!(srv
        .platform
        .objects
        .head(&object_store::path::Path::from(retired_copy.as_str()))
        .await
        .is_err());
    let versions = srv
        .platform
        .control
        .company_key_versions(&t.id)
        .await
        .unwrap()
        .unwrap();
    assert!(versions.retired[0].wrapped_dek.is_empty());
    // The books are whole, and still restore.
    assert_eq!(srv.all_entries(&t, &t.token).await.len(), 2);
    let verified = wb_server::backup_verify::verify(&srv.platform, Some(&t.id))
        .await
        .unwrap();
    assert!(verified[0].verified(), "{:?}", verified[0]);
}

/// PostgreSQL: a rotation on one node reaches another node serving the same
/// company within its next look (a second): it opens the company again with
/// the new role password and goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_reopens_a_company_rotated_elsewhere() {
    if super::BACKEND != super::harness::Backend::Postgres {
        return;
    }
    let a = TestServer::start_manual().await;
    let t = a.signup("Two Nodes Ltd").await;
    a.chart(&t).await;
    let b = a.another_node_on_this_clock().await;
    b.post_entry(&t, sale("on b before")).await;
    assert!(b.platform.refresh_rotated_keys().await.unwrap().is_empty());
    a.post(&t.path("/keys/rotate"), &t.token, json!({}))
        .await
        .ok(200);
    assert_eq!(
        b.platform.refresh_rotated_keys().await.unwrap(),
        vec![t.id.clone()]
    );
    assert!(b.platform.refresh_rotated_keys().await.unwrap().is_empty());
    b.post_entry(&t, sale("on b after")).await;
    a.post_entry(&t, sale("on a after")).await;
    assert_eq!(
        descriptions(&b.all_entries(&t, &t.token).await),
        vec!["on a after", "on b after", "on b before"]
    );
}
