//! One company's credentials never reach another company.

use reqwest::Method;
use serde_json::{json, Value};

use super::harness::*;

async fn snapshot(srv: &TestServer, b: &Tenant) -> (Vec<Value>, Value, Value, Value, Value) {
    let entries = srv.all_entries(b, &b.token).await;
    let accounts = srv.get(&b.path("/accounts"), &b.token).await.ok(200);
    let keys = srv.get(&b.path("/api-keys"), &b.token).await.ok(200);
    let tb = srv.trial_balance(b, &b.token, "2199-12-31").await;
    let company = srv.get(&b.path(""), &b.token).await.ok(200);
    (entries, accounts, keys, tb, company)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_company_route_is_isolated() {
    let srv = TestServer::start().await;
    let a = srv.signup("Alpha").await;
    let b = srv.signup("Beta").await;
    srv.chart(&a).await;
    srv.chart(&b).await;
    // Entry ids are per company, so id 1 exists in both; B gets a few more than A.
    srv.post_entry(
        &a,
        entry(
            "2026-01-01",
            "A only",
            &[("1000", "1.00", "USD"), ("4000", "-1.00", "USD")],
        ),
    )
    .await;
    let mut b_entry = String::new();
    for i in 0..3 {
        b_entry = srv
            .post_entry(
                &b,
                entry(
                    "2026-01-02",
                    &format!("B secret {i}"),
                    &[("1000", "500.00", "USD"), ("4000", "-500.00", "USD")],
                ),
            )
            .await;
    }
    let b_key = srv
        .post(
            &b.path("/api-keys"),
            &b.token,
            json!({"name": "b-bot", "role": "admin"}),
        )
        .await
        .ok(201);
    let b_key_id = b_key["id"].as_str().expect("id").to_string();
    let b_key_token = b_key["token"].as_str().expect("token").to_string();
    let a_key = srv
        .post(
            &a.path("/api-keys"),
            &a.token,
            json!({"name": "a-bot", "role": "admin"}),
        )
        .await
        .ok(201);
    let a_key_token = a_key["token"].as_str().expect("token").to_string();

    let before = snapshot(&srv, &b).await;

    let good_entry = entry(
        "2026-01-03",
        "intrusion",
        &[("1000", "1.00", "USD"), ("4000", "-1.00", "USD")],
    );
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, b.path(""), None),
        (Method::GET, b.path("/accounts"), None),
        (
            Method::POST,
            b.path("/accounts"),
            Some(json!({"code": "9000", "name": "Mine", "type": "asset"})),
        ),
        (Method::GET, b.path("/entries"), None),
        (Method::POST, b.path("/entries"), Some(good_entry.clone())),
        (
            Method::POST,
            b.path("/entries/batch"),
            Some(json!({"entries": [good_entry.clone()]})),
        ),
        (Method::GET, b.path(&format!("/entries/{b_entry}")), None),
        (Method::GET, b.path("/entries/1"), None),
        (
            Method::POST,
            b.path(&format!("/entries/{b_entry}/reverse")),
            Some(json!({})),
        ),
        (
            Method::GET,
            b.path("/reports/trial-balance?as_of=2026-12-31"),
            None,
        ),
        (
            Method::GET,
            b.path("/reports/balance-sheet?as_of=2026-12-31"),
            None,
        ),
        (
            Method::GET,
            b.path("/reports/income-statement?from=2026-01-01&to=2026-12-31"),
            None,
        ),
        (Method::GET, b.path("/accounts/1000/register"), None),
        (Method::GET, b.path("/audit"), None),
        (Method::GET, b.path("/api-keys"), None),
        (
            Method::POST,
            b.path("/api-keys"),
            Some(json!({"name": "backdoor", "role": "admin"})),
        ),
        (
            Method::DELETE,
            b.path(&format!("/api-keys/{b_key_id}")),
            None,
        ),
    ];
    for credential in [&a.token, &a_key_token] {
        for (method, path, body) in &routes {
            let body = match body {
                Some(v) => Body::Json(v.clone()),
                None => Body::None,
            };
            let resp = srv
                .send(method.clone(), path, Some(credential), body, &[])
                .await;
            assert_eq!(resp.status.as_u16(), 404, "{method} {path}: {}", resp.text);
            let problem = resp.problem(404, "not-found");
            assert!(
                !resp.text.contains("B secret"),
                "{method} {path} leaked: {problem}"
            );
            // With an Idempotency-Key too: no replay of B's requests.
            if *method == Method::POST {
                let resp = srv
                    .send(
                        method.clone(),
                        path,
                        Some(credential),
                        Body::Json(json!({})),
                        &[("Idempotency-Key", "k")],
                    )
                    .await;
                assert!(
                    matches!(resp.status.as_u16(), 404 | 422),
                    "{method} {path} with junk body: {}",
                    resp.text
                );
                assert!(!resp.text.contains("B secret"));
            }
        }
    }
    // A's own route cannot revoke B's key either.
    srv.delete(&a.path(&format!("/api-keys/{b_key_id}")), &a.token)
        .await
        .problem(404, "not-found");
    srv.delete(&a.path(&format!("/api-keys/{b_key_id}")), &a_key_token)
        .await
        .problem(404, "not-found");
    // An unknown company looks exactly like someone else's.
    let unknown = srv
        .get(
            "/api/v1/companies/00000000-0000-0000-0000-000000000000",
            &a.token,
        )
        .await;
    let foreign = srv.get(&b.path(""), &a.token).await;
    assert_eq!(
        unknown.problem(404, "not-found"),
        foreign.problem(404, "not-found")
    );

    // B's books, keys and company are untouched; B's key still works.
    let after = snapshot(&srv, &b).await;
    assert_eq!(after, before);
    srv.get(&b.path("/entries"), &b_key_token).await.ok(200);
    // And B's key cannot reach A.
    srv.get(&a.path("/entries"), &b_key_token)
        .await
        .problem(404, "not-found");
    // A still has only its own entry.
    let a_entries = srv.all_entries(&a, &a.token).await;
    assert_eq!(a_entries.len(), 1);
    assert_eq!(a_entries[0]["description"], "A only");

    srv.shutdown().await;
}
