//! What security and operations staff read to run the platform over HTTPS:
//! the system's state, each company's backup position, and the central
//! audit with every detail that may carry customer content withheld; other
//! roles refused on record.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use wb_core::staff::StaffRole;

use super::grants::staff;
use super::harness::{Body, TestServer};

/// Waits (bounded) for the forwarder to bring `ready` events to the
/// central collection; security reads them.
async fn central(
    srv: &TestServer,
    token: &str,
    path: &str,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..100 {
        let events = srv.get(path, token).await.ok(200)["events"]
            .as_array()
            .unwrap()
            .clone();
        if ready(&events) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the central audit never showed the company's events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_see_the_platform_and_never_the_content() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Secretive Widgets Ltd").await;
    srv.chart(&t).await;
    srv.send(
        Method::POST,
        &t.path("/files?name=Merger-Plan-Confidential.pdf"),
        Some(&t.token),
        Body::Raw {
            content_type: Some("application/pdf"),
            bytes: b"%PDF secret".to_vec(),
        },
        &[],
    )
    .await
    .ok(201);
    let (_, ops) = staff(&srv, "olga@ops.example", &[StaffRole::Operations]).await;
    let (_, sec) = staff(&srv, "sid@ops.example", &[StaffRole::Security]).await;
    let (sam, support) = staff(&srv, "sam@ops.example", &[StaffRole::Support]).await;

    let system = srv.get("/api/v1/staff/system", &ops).await.ok(200);
    assert_eq!(system["node"], srv.platform.node_id.as_str());
    assert!(system["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == srv.platform.node_id.as_str()));
    assert!(system["companies"]["active"].as_u64().unwrap() >= 1);
    assert!(system["open_alerts"].is_object());

    let backups = srv.get("/api/v1/staff/backups", &ops).await.ok(200);
    let ours = backups["companies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["company"] == t.id.as_str())
        .unwrap()
        .clone();
    assert!(ours["journal_seq"].as_i64().unwrap() > 0);
    let mut keys: Vec<&str> = ours
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "company",
            "journal_seq",
            "lag_records",
            "lag_seconds",
            "name",
            "shipped_seq",
            "snapshot_seq",
            "snapshot_taken_at"
        ]
    );

    // The central audit: the upload is there, its file name is not.
    let path = format!("/api/v1/staff/audit?company={}&limit=1000", t.id);
    let events = central(&srv, &sec, &path, |ev| {
        ev.iter().any(|e| e["action"] == "file.upload")
    })
    .await;
    let upload = events
        .iter()
        .find(|e| e["action"] == "file.upload")
        .unwrap();
    assert_eq!(upload["detail"], Value::Null);
    assert_eq!(upload["detail_withheld"], true);
    assert_eq!(upload["company"], t.id.as_str());
    assert!(upload["hash"].as_str().unwrap().len() == 64);
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("Merger-Plan"), "{text}");
    assert!(!text.contains("Receivables"), "account names are content");
    // A sign-in's detail is the platform's own and stays readable.
    let failed = srv.login(&t.email, "not the passphrase at all").await;
    assert_eq!(failed.status.as_u16(), 401);
    let logins = central(
        &srv,
        &sec,
        "/api/v1/staff/audit?action=auth.login&outcome=failure",
        |ev| !ev.is_empty(),
    )
    .await;
    assert!(logins
        .iter()
        .any(|e| e["detail"].is_string() && e["detail_withheld"] == false));

    // Bad filters change nothing; other roles are refused on record.
    for (bad, status, slug) in [
        ("action=bogus", 422, "invalid-query"),
        ("outcome=maybe", 422, "invalid-query"),
        ("actor=", 422, "invalid-query"),
        ("since=yesterday", 422, "invalid-date"),
        ("nope=1", 400, "invalid-query"),
    ] {
        srv.get(&format!("/api/v1/staff/audit?{bad}"), &sec)
            .await
            .problem(status, slug);
    }
    for path in [
        "/api/v1/staff/system",
        "/api/v1/staff/backups",
        "/api/v1/staff/audit",
    ] {
        srv.get(path, &support).await.problem(403, "forbidden");
        srv.get(path, &t.token).await.problem(401, "unauthorized");
    }
    let refused = srv
        .platform
        .control
        .audit_events(None, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "staff.refused" && e.actor == sam)
        .count();
    assert_eq!(refused, 3);
    let views = srv
        .platform
        .control
        .audit_events(None, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "staff.view")
        .filter_map(|e| e.detail)
        .collect::<Vec<_>>();
    for what in [
        "operations: system status",
        "operations: backup status",
        "security: central audit",
    ] {
        assert!(views.iter().any(|v| v == what), "{what}: {views:?}");
    }
}

/// Every staff view answers an explicit list of fields: a column added to
/// the records beneath them (here with a canary in every row) reaches none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_field_in_the_records_reaches_no_staff_view() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Canary Farms Ltd").await;
    srv.chart(&t).await;
    let (_, manager) = staff(
        &srv,
        "max@ops.example",
        &[
            StaffRole::Support,
            StaffRole::Sales,
            StaffRole::Security,
            StaffRole::Management,
        ],
    )
    .await;
    let (_, sam) = staff(&srv, "sam@ops.example", &[StaffRole::Support]).await;
    let grant = super::grants::request(&srv, &sam, super::grants::ask(&t.id, "books:read")).await;
    let mut sql = String::new();
    for table in [
        "companies",
        "users",
        "memberships",
        "staff",
        "access_grants",
        "alerts",
        "audit_events",
        "collected_events",
        "nodes",
    ] {
        sql.push_str(&format!(
            "ALTER TABLE {table} ADD COLUMN internal_note TEXT DEFAULT 'CANARY-FIELD';"
        ));
    }
    srv.control_sql(&sql, &sql).await;
    let paths = [
        "/api/v1/staff/me".to_string(),
        format!("/api/v1/staff/companies?q={}", t.email),
        "/api/v1/staff/companies?q=canary".to_string(),
        format!("/api/v1/staff/companies/{}", t.id),
        format!("/api/v1/staff/companies/{}/summary", t.id),
        "/api/v1/staff/alerts".to_string(),
        "/api/v1/staff/access-grants".to_string(),
        "/api/v1/staff/system".to_string(),
        "/api/v1/staff/backups".to_string(),
        "/api/v1/staff/audit?limit=1000".to_string(),
    ];
    for path in &paths {
        let body = srv.get(path, &manager).await.ok(200).to_string();
        assert!(!body.contains("CANARY-FIELD"), "{path}: {body}");
        assert!(!body.contains("internal_note"), "{path}: {body}");
    }
    // The grant's own answer too.
    let denied = srv
        .post(
            &super::grants::staff_path(&grant, "deny"),
            &manager,
            serde_json::json!({}),
        )
        .await
        .ok(200)
        .to_string();
    assert!(!denied.contains("CANARY-FIELD"), "{denied}");
}
