//! API key rotation, on both backends: a new secret with the same name,
//! role and term; the old one keeps working for the overlap the caller
//! chose (0 to 24 hours), then stops; only sessions rotate keys.

use serde_json::{json, Value};

use super::harness::{Tenant, TestServer};

async fn new_key(srv: &TestServer, t: &Tenant, days: i64) -> Value {
    srv.post(
        &t.path("/api-keys"),
        &t.token,
        json!({"name": "ledger sync", "role": "accountant", "expires_in_days": days}),
    )
    .await
    .ok(201)
}

fn secret(key: &Value) -> String {
    key["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_overlaps_for_the_chosen_hours_then_stops() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Rotating Ltd").await;
    let clock = srv.clock.clone().unwrap();
    let old = new_key(&srv, &t, 30).await;
    let old_id = old["id"].as_str().unwrap();
    let rotate = |id: &str| t.path(&format!("/api-keys/{id}/rotate"));

    // Bad overlaps change nothing.
    for overlap in [-1, 25] {
        srv.post(&rotate(old_id), &t.token, json!({"overlap_hours": overlap}))
            .await
            .problem(422, "invalid-api-key");
    }
    srv.post(&rotate("no-such-key"), &t.token, json!({}))
        .await
        .problem(404, "not-found");
    // A key cannot rotate keys (not even itself).
    srv.post(&rotate(old_id), &secret(&old), json!({}))
        .await
        .problem(403, "forbidden");

    let rotated = srv
        .post(&rotate(old_id), &t.token, json!({"overlap_hours": 2}))
        .await
        .ok(201);
    let new = &rotated["key"];
    assert_eq!(new["name"], "ledger sync");
    assert_eq!(new["role"], "accountant");
    assert_ne!(new["id"], old["id"]);
    assert_ne!(secret(new), secret(&old));
    assert_eq!(rotated["previous"]["id"], old["id"]);
    assert!(
        rotated["previous"].get("token").is_none(),
        "never the old secret"
    );
    assert!(rotated["previous"]["revoked_at"].is_null());
    // The same term as the old key: 30 days from now.
    let expires = time::OffsetDateTime::parse(
        new["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let term = expires - srv.platform.clock.now();
    assert!(
        (term - time::Duration::days(30)).abs() < time::Duration::minutes(1),
        "{term}"
    );

    // Both work during the overlap.
    srv.get(&t.path("/accounts"), &secret(&old)).await.ok(200);
    srv.get(&t.path("/accounts"), &secret(new)).await.ok(200);
    clock.advance(time::Duration::hours(2));
    srv.get(&t.path("/accounts"), &secret(&old))
        .await
        .problem(401, "unauthorized");
    srv.get(&t.path("/accounts"), &secret(new)).await.ok(200);

    // Without an overlap, the old secret stops at once.
    let next = srv
        .post(&rotate(new["id"].as_str().unwrap()), &t.token, json!({}))
        .await
        .ok(201);
    assert!(next["previous"]["revoked_at"].is_string());
    srv.get(&t.path("/accounts"), &secret(new))
        .await
        .problem(401, "unauthorized");
    srv.get(&t.path("/accounts"), &secret(&next["key"]))
        .await
        .ok(200);
    // A revoked key is not rotated back to life.
    srv.post(&rotate(new["id"].as_str().unwrap()), &t.token, json!({}))
        .await
        .problem(404, "not-found");

    // On record, without secrets.
    let mut audit = String::new();
    for _ in 0..100 {
        audit = srv
            .get(&t.path("/audit?limit=1000&action=api_key.rotate"), &t.token)
            .await
            .ok(200)
            .to_string();
        if audit.matches("\"api_key.rotate\"").count() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(audit.matches("\"api_key.rotate\"").count(), 2, "{audit}");
    assert!(audit.contains("for 2 more hour(s)"), "{audit}");
    assert!(!audit.contains(&secret(new)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_keeps_within_the_company_limit() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Short Keys Ltd").await;
    let old = new_key(&srv, &t, 90).await;
    srv.send(
        reqwest::Method::PUT,
        &t.path("/security-policy"),
        Some(&t.token),
        super::harness::Body::Json(json!({"api_key_max_days": 7})),
        &[],
    )
    .await
    .ok(200);
    let rotated = srv
        .post(
            &t.path(&format!("/api-keys/{}/rotate", old["id"].as_str().unwrap())),
            &t.token,
            json!({"overlap_hours": 24}),
        )
        .await
        .ok(201);
    let expires = time::OffsetDateTime::parse(
        rotated["key"]["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let term = expires - srv.platform.clock.now();
    assert!(term <= time::Duration::days(7), "{term}");
}
