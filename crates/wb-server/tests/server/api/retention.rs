//! A company's retention rules over HTTPS, on both backends: the defaults
//! until set; owners and admins change them field by field; a rule below
//! the platform's statutory minimum is refused, names the rule, changes
//! nothing and is on record; the operator's minimum is what counts.

use reqwest::Method;
use serde_json::{json, Value};

use super::harness::{Body, Tenant, TestServer};

async fn put(srv: &TestServer, t: &Tenant, token: &str, body: Value) -> super::harness::Resp {
    srv.send(
        Method::PUT,
        &t.path("/retention"),
        Some(token),
        Body::Json(body),
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_rules_keep_to_the_statutory_minimum() {
    let srv = TestServer::start().await;
    let t = srv.signup("Keeping Ltd").await;
    let defaults = json!({"entries_years": 10, "attachments_years": 10, "audit_years": 10,
                          "exports_days": 90, "statutory_minimum_years": 10});
    assert_eq!(
        srv.get(&t.path("/retention"), &t.token).await.ok(200),
        defaults
    );

    let refused = put(&srv, &t, &t.token, json!({"entries_years": 5}))
        .await
        .problem(422, "below-statutory-minimum");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("entries_years"),
        "{refused}"
    );
    put(&srv, &t, &t.token, json!({"audit_years": 9}))
        .await
        .problem(422, "below-statutory-minimum");
    put(&srv, &t, &t.token, json!({"exports_days": 0}))
        .await
        .problem(422, "invalid-retention");
    put(&srv, &t, &t.token, json!({"keep": "everything"}))
        .await
        .problem(422, "invalid-field");
    assert_eq!(
        srv.get(&t.path("/retention"), &t.token).await.ok(200),
        defaults
    );

    let changed = put(
        &srv,
        &t,
        &t.token,
        json!({"attachments_years": 3, "exports_days": 30, "entries_years": 12}),
    )
    .await
    .ok(200);
    assert_eq!(
        changed,
        json!({"entries_years": 12, "attachments_years": 3, "audit_years": 10,
               "exports_days": 30, "statutory_minimum_years": 10})
    );
    assert_eq!(
        srv.get(&t.path("/retention"), &t.token).await.ok(200),
        changed
    );

    // An accountant may not change them.
    let key = srv
        .post(
            &t.path("/api-keys"),
            &t.token,
            json!({"name": "books", "role": "accountant"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        put(&srv, &t, &key, json!({"exports_days": 7})).await.status,
        403
    );

    // Every change and refusal is on record, the refusals naming the rule.
    let events = srv
        .platform
        .control
        .audit_events(Some(&t.id), 0, 10_000)
        .await
        .unwrap();
    let mut set: Vec<_> = events
        .iter()
        .filter(|e| e.action == "retention.set")
        .map(|e| (e.outcome.clone(), e.detail.clone().unwrap_or_default()))
        .collect();
    let company_trail = srv
        .platform
        .tenant(&t.id)
        .await
        .unwrap()
        .audit_events(0, 10_000)
        .await
        .unwrap();
    set.extend(
        company_trail
            .iter()
            .filter(|e| e.action == "retention.set")
            .map(|e| (e.outcome.clone(), e.detail.clone().unwrap_or_default())),
    );
    assert!(set
        .iter()
        .any(|(o, d)| o == "failure" && d.contains("refused by rule entries_years")));
    assert!(set
        .iter()
        .any(|(o, d)| o == "success" && d.contains("after: entries 12 y, attachments 3 y")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_minimum_is_the_one_that_counts() {
    let srv = TestServer::start_configured(|c| {
        c.statutory_minimum = wb_core::data_retention::StatutoryMinimum::years(5).unwrap();
    })
    .await;
    let t = srv.signup("Short Ltd").await;
    let rules = put(
        &srv,
        &t,
        &t.token,
        json!({"entries_years": 6, "audit_years": 5}),
    )
    .await
    .ok(200);
    assert_eq!(rules["statutory_minimum_years"], 5);
    assert_eq!(rules["entries_years"], 6);
    put(&srv, &t, &t.token, json!({"entries_years": 4}))
        .await
        .problem(422, "below-statutory-minimum");
}

/// Stored exports older than the company's `exports_days` go (file and
/// metadata), on record; younger ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_older_than_the_rules_keep_them_are_deleted() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Short Exports Ltd").await;
    srv.chart(&t).await;
    let recipient = wb_server::exports::age::x25519::Identity::generate()
        .to_public()
        .to_string();
    let old = srv
        .post(
            &t.path("/exports"),
            &t.token,
            json!({ "recipient": recipient }),
        )
        .await
        .ok(201);
    put(&srv, &t, &t.token, json!({"exports_days": 2}))
        .await
        .ok(200);
    clock.advance(time::Duration::days(1));
    assert!(srv.platform.expire_exports(&t.id).await.unwrap().is_empty());
    clock.advance(time::Duration::days(1));
    // Two days on, the owner signs in again.
    let t = srv.sign_in_again(&t).await;
    let young = srv
        .post(
            &t.path("/exports"),
            &t.token,
            json!({ "recipient": recipient }),
        )
        .await
        .ok(201);
    assert_eq!(
        srv.platform.expire_exports(&t.id).await.unwrap(),
        vec![old["id"].as_str().unwrap().to_string()]
    );
    let listed = srv.get(&t.path("/exports"), &t.token).await.ok(200);
    let ids: Vec<&str> = listed["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![young["id"].as_str().unwrap()]);
    let old_id = old["id"].as_str().unwrap();
    srv.get(&t.path(&format!("/exports/{old_id}")), &t.token)
        .await
        .problem(404, "not-found");
    let events = srv
        .platform
        .control
        .audit_events(Some(&t.id), 0, 10_000)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == "export.expire"
                && e.detail.as_deref().unwrap_or("").contains(old_id))
    );
}
