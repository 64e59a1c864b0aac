//! The one door: every company-scoped route, enumerated from the router's own
//! table and the OpenAPI document, refuses another company's caller with 404
//! and records the refusal; every successful read is recorded in the
//! company's own trail.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use super::harness::*;

/// The platform trail's refusals of `actor` at `company`.
async fn refusals(srv: &TestServer, company: &str, actor: &str) -> usize {
    srv.platform
        .control
        .audit_events(Some(company), 0, 100_000)
        .await
        .expect("platform trail")
        .into_iter()
        .filter(|e| e.action == "access.company" && e.outcome == "failure" && e.actor == actor)
        .count()
}

/// Events in the company's own trail by `actor`.
async fn recorded_by(srv: &TestServer, company: &str, actor: &str) -> usize {
    srv.platform
        .tenant(company)
        .await
        .expect("company store")
        .audit_events(0, 100_000)
        .await
        .expect("company trail")
        .into_iter()
        .filter(|e| e.actor == actor)
        .count()
}

/// (method, path template) of every company route the OpenAPI document lists.
async fn documented_company_routes(srv: &TestServer) -> Vec<(Method, String)> {
    let doc = srv.get_anon("/api/v1/openapi.json").await.ok(200);
    let paths = doc["paths"].as_object().expect("paths");
    let mut routes = Vec::new();
    for (path, item) in paths {
        if !path.starts_with("/api/v1/companies/{company}") {
            continue;
        }
        for method in item.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            routes.push((method, path.clone()));
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_company_route_goes_through_the_door() {
    // No pushes: the schedule below names a bucket that does not exist.
    let srv =
        TestServer::start_configured(|c| c.export_push_every = std::time::Duration::ZERO).await;
    let a = srv.signup("Door Alpha").await;
    let b = srv.signup("Door Beta").await;
    srv.chart(&a).await;
    let entry_id = srv
        .post_entry(
            &a,
            entry(
                "2026-02-01",
                "door",
                &[("1000", "5.00", "USD"), ("4000", "-5.00", "USD")],
            ),
        )
        .await;
    let key_id = srv
        .post(
            &a.path("/api-keys"),
            &a.token,
            json!({"name": "door-bot", "role": "viewer"}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .expect("key id")
        .to_string();
    let file_id = srv
        .send(
            Method::POST,
            &a.path("/files?name=door.txt"),
            Some(&a.token),
            Body::Raw {
                content_type: Some("text/plain"),
                bytes: b"door".to_vec(),
            },
            &[],
        )
        .await
        .ok(201)["id"]
        .to_string()
        .trim_matches('"')
        .to_string();
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let export_id = srv
        .post(
            &a.path("/exports"),
            &a.token,
            json!({ "recipient": recipient }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .expect("export id")
        .to_string();
    srv.send(
        Method::PUT,
        &a.path("/export-schedule"),
        Some(&a.token),
        Body::Json(json!({
            "destination": "s3://door-backups/workbooks?endpoint=https://s3.eu-west-1.example.com&region=eu-west-1",
            "access_key_id": "AKIADOOR",
            "secret_access_key": "door-secret-access-key",
            "recipient": recipient,
            "every_hours": 24
        })),
        &[],
    )
    .await
    .ok(200);

    let invitation_id = srv
        .post(
            &a.path("/invitations"),
            &a.token,
            json!({"email": "door-guest@example.com", "role": "viewer"}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();

    let restore_id = srv
        .post(
            &a.path("/restores"),
            &a.token,
            json!({"latest": true, "confirm": "Door Alpha"}),
        )
        .await
        .ok(202)["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Let it end first: its outcome event (by a's owner) must not land
    // while the reads below are counted.
    for _ in 0..600 {
        let job = srv
            .get(&a.path(&format!("/restores/{restore_id}")), &a.token)
            .await
            .ok(200);
        if job["state"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let routes = documented_company_routes(&srv).await;
    // The router's table and the documentation name the same routes, so no
    // company route escapes this test by being undocumented.
    let documented: BTreeSet<String> = routes.iter().map(|(_, p)| p.clone()).collect();
    let routed: BTreeSet<String> = wb_server::api::company_route_paths().into_iter().collect();
    assert_eq!(documented, routed, "router and OpenAPI disagree");
    assert!(routes.len() >= 25, "only {} company routes?", routes.len());

    let fill = |template: &str| {
        template
            .replace("{company}", &a.id)
            .replace("{entry}", &entry_id)
            .replace("{account}", "1000")
            .replace("{key}", &key_id)
            .replace("{export}", &export_id)
            .replace("{file}", &file_id)
            .replace("{invitation}", &invitation_id)
            .replace("{restore}", &restore_id)
            .replace("{grant}", "grt_00000000000000000000")
            .replace("{decision}", "approve")
            .replace("{user}", &a.user_id)
    };
    let b_actor = format!("user:{}", b.user_id);
    let a_actor = format!("user:{}", a.user_id);
    for (method, template) in &routes {
        let path = fill(template);
        assert!(!path.contains('{'), "unfilled {template}");

        // Another company's owner: 404, and the refusal is on record.
        let before = refusals(&srv, &a.id, &b_actor).await;
        let body = if *method == Method::GET || *method == Method::DELETE {
            Body::None
        } else {
            Body::Json(json!({}))
        };
        let resp = srv
            .send(method.clone(), &path, Some(&b.token), body, &[])
            .await;
        resp.problem(404, "not-found");
        assert_eq!(
            refusals(&srv, &a.id, &b_actor).await,
            before + 1,
            "{method} {template}: refusal not recorded"
        );

        // The company's own owner reads it, and the read is on record
        // before the answer.
        if *method == Method::GET {
            let before = recorded_by(&srv, &a.id, &a_actor).await;
            let resp = srv.get(&path, &a.token).await;
            assert!(
                resp.status.is_success(),
                "{method} {template}: {} {}",
                resp.status,
                resp.text
            );
            assert!(
                recorded_by(&srv, &a.id, &a_actor).await > before,
                "{method} {template}: read not recorded"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_the_permission_is_refused_on_record() {
    let srv = TestServer::start().await;
    let a = srv.signup("Door Roles").await;
    let key: Value = srv
        .post(
            &a.path("/api-keys"),
            &a.token,
            json!({"name": "reader", "role": "viewer"}),
        )
        .await
        .ok(201);
    let token = key["token"].as_str().expect("token");
    srv.post(
        &a.path("/accounts"),
        token,
        json!({"code": "1000", "name": "Cash", "type": "asset"}),
    )
    .await
    .problem(403, "forbidden");
    let refused = srv
        .platform
        .control
        .audit_events(Some(&a.id), 0, 1000)
        .await
        .expect("platform trail")
        .into_iter()
        .filter(|e| e.action == "access.permission" && e.outcome == "failure")
        .count();
    assert_eq!(refused, 1);
}
