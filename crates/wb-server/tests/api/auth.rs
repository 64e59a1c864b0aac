//! Sessions, API keys, roles, throttling.

use reqwest::Method;
use serde_json::json;
use wb_core::Role;
use wb_crypto::Secret;
use wb_store::Actor;

use crate::harness::*;

fn sale(date: &str) -> serde_json::Value {
    entry(
        date,
        "Sale",
        &[("1000", "10.00", "USD"), ("4000", "-10.00", "USD")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_require_valid_tokens_and_end_on_logout() {
    let srv = TestServer::start().await;
    let t = srv.signup("Auth Co").await;
    let accounts = t.path("/accounts");

    srv.get(&t.path(""), &t.token).await.ok(200);
    srv.get_anon(&accounts).await.problem(401, "unauthorized");
    srv.get_anon("/api/v1/me")
        .await
        .problem(401, "unauthorized");
    srv.post_anon(&t.path("/entries"), sale("2026-01-01"))
        .await
        .problem(401, "unauthorized");
    srv.get(&accounts, "garbage")
        .await
        .problem(401, "unauthorized");
    srv.get(&accounts, "wbs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await
        .problem(401, "unauthorized");
    srv.get(&accounts, "wbk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await
        .problem(401, "unauthorized");
    srv.get(&accounts, &"x".repeat(300))
        .await
        .problem(401, "unauthorized");
    // A scheme other than Bearer is not a token.
    srv.send(
        Method::GET,
        &accounts,
        None,
        Body::None,
        &[("authorization", &format!("Basic {}", t.token))],
    )
    .await
    .problem(401, "unauthorized");

    // Wrong passphrase and unknown email look the same.
    let wrong = srv
        .login(&t.email, "not the passphrase at all 99")
        .await
        .problem(401, "unauthorized");
    let unknown = srv
        .login("nobody@example.com", PASSPHRASE)
        .await
        .problem(401, "unauthorized");
    assert_eq!(wrong["detail"], unknown["detail"]);
    // Email is case-insensitive.
    let session = srv.login(&t.email.to_uppercase(), PASSPHRASE).await.ok(200);
    let token = session["token"].as_str().expect("token").to_string();
    srv.get(&accounts, &token).await.ok(200);

    let out = srv
        .send(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&token),
            Body::None,
            &[],
        )
        .await;
    assert_eq!(out.status.as_u16(), 204, "{}", out.text);
    srv.get(&accounts, &token)
        .await
        .problem(401, "unauthorized");
    srv.send(
        Method::POST,
        "/api/v1/auth/logout",
        Some(&token),
        Body::None,
        &[],
    )
    .await
    .problem(401, "unauthorized");
    // Other sessions of the same user live on.
    srv.get(&accounts, &t.token).await.ok(200);

    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Clock Co").await;
    let clock = srv.clock.clone().expect("manual clock");
    srv.get(&t.path(""), &t.token).await.ok(200);
    clock.advance(time::Duration::hours(11));
    srv.get(&t.path(""), &t.token).await.ok(200);
    clock.advance(time::Duration::hours(2));
    srv.get(&t.path(""), &t.token)
        .await
        .problem(401, "unauthorized");
    srv.get(&t.path("/accounts"), &t.token)
        .await
        .problem(401, "unauthorized");
    // Logging in again works.
    let fresh = srv.login(&t.email, PASSPHRASE).await.ok(200);
    srv.get(&t.path(""), fresh["token"].as_str().expect("token"))
        .await
        .ok(200);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_scoped_shown_once_and_revocable() {
    let srv = TestServer::start().await;
    let t = srv.signup("Keys Co").await;
    srv.chart(&t).await;
    let keys = t.path("/api-keys");

    let created = srv
        .post(&keys, &t.token, json!({"name": "ci", "role": "accountant"}))
        .await
        .ok(201);
    let acct_key = created["token"]
        .as_str()
        .expect("token shown at creation")
        .to_string();
    assert!(acct_key.starts_with("wbk_"), "{acct_key}");
    assert_eq!(created["role"], "accountant");
    assert_eq!(created["name"], "ci");
    assert!(created["revoked_at"].is_null());
    let acct_key_id = created["id"].as_str().expect("id").to_string();
    let expires = time::OffsetDateTime::parse(
        created["expires_at"].as_str().expect("expires_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    let days = (expires - time::OffsetDateTime::now_utc()).whole_days();
    assert!(
        (89..=90).contains(&days),
        "default expiry 90 days, got {days}"
    );

    // The accountant key reads and writes the books.
    srv.get(&t.path("/accounts"), &acct_key).await.ok(200);
    srv.get(
        &t.path("/reports/trial-balance?as_of=2026-12-31"),
        &acct_key,
    )
    .await
    .ok(200);
    let posted = srv
        .post(&t.path("/entries"), &acct_key, sale("2026-01-02"))
        .await
        .ok(201);
    assert_eq!(posted["created_by"], format!("api_key:{acct_key_id}"));
    srv.post(
        &t.path("/accounts"),
        &acct_key,
        json!({"code": "6000", "name": "Travel", "type": "expense"}),
    )
    .await
    .ok(201);
    // ...but manages no keys, and has no user.
    srv.post(
        &keys,
        &acct_key,
        json!({"name": "escalate", "role": "viewer"}),
    )
    .await
    .problem(403, "forbidden");
    srv.get(&keys, &acct_key).await.problem(403, "forbidden");
    srv.get("/api/v1/me", &acct_key)
        .await
        .problem(403, "forbidden");

    // A viewer key reads but cannot write.
    let viewer = srv
        .post(
            &keys,
            &t.token,
            json!({"name": "dashboard", "role": "viewer", "expires_in_days": 7}),
        )
        .await
        .ok(201);
    let viewer_key = viewer["token"].as_str().expect("token").to_string();
    let viewer_id = viewer["id"].as_str().expect("id").to_string();
    srv.get(&t.path("/entries"), &viewer_key).await.ok(200);
    srv.get(
        &t.path("/reports/balance-sheet?as_of=2026-12-31"),
        &viewer_key,
    )
    .await
    .ok(200);
    srv.post(&t.path("/entries"), &viewer_key, sale("2026-01-03"))
        .await
        .problem(403, "forbidden");
    srv.post(
        &t.path("/entries/batch"),
        &viewer_key,
        json!({"entries": [sale("2026-01-03")]}),
    )
    .await
    .problem(403, "forbidden");
    srv.post(
        &t.path("/accounts"),
        &viewer_key,
        json!({"code": "6100", "name": "x", "type": "expense"}),
    )
    .await
    .problem(403, "forbidden");
    let posted_id = posted["id"].as_str().expect("id");
    srv.post(
        &t.path(&format!("/entries/{posted_id}/reverse")),
        &viewer_key,
        json!({}),
    )
    .await
    .problem(403, "forbidden");
    assert_eq!(
        srv.all_entries(&t, &t.token).await.len(),
        1,
        "the viewer changed nothing"
    );

    // Bad key requests.
    srv.post(&keys, &t.token, json!({"name": "boss", "role": "owner"}))
        .await
        .problem(403, "forbidden");
    srv.post(&keys, &t.token, json!({"name": "x", "role": "root"}))
        .await
        .problem(422, "invalid-role");
    srv.post(
        &keys,
        &t.token,
        json!({"name": "x", "role": "viewer", "expires_in_days": 0}),
    )
    .await
    .problem(422, "invalid-api-key");
    srv.post(
        &keys,
        &t.token,
        json!({"name": "x", "role": "viewer", "expires_in_days": 366}),
    )
    .await
    .problem(422, "invalid-api-key");
    srv.post(&keys, &t.token, json!({"name": " ", "role": "viewer"}))
        .await
        .problem(422, "invalid-api-key");
    srv.post(
        &keys,
        &t.token,
        json!({"name": "x", "role": "viewer", "scope": "all"}),
    )
    .await
    .problem(422, "invalid-field");

    // An admin key may create keys up to admin.
    let admin = srv
        .post(&keys, &t.token, json!({"name": "ops", "role": "admin"}))
        .await
        .ok(201);
    let admin_key = admin["token"].as_str().expect("token").to_string();
    let sub = srv
        .post(&keys, &admin_key, json!({"name": "sub", "role": "viewer"}))
        .await
        .ok(201);
    srv.post(
        &keys,
        &admin_key,
        json!({"name": "sub-owner", "role": "owner"}),
    )
    .await
    .problem(403, "forbidden");

    // The list never shows a token or its hash.
    let list = srv.get(&keys, &t.token).await;
    let list_json = list.ok(200);
    let items = list_json.as_array().expect("list");
    assert_eq!(items.len(), 4);
    for item in items {
        assert!(
            item.get("token").is_none(),
            "listed key carries a token: {item}"
        );
        assert!(
            item["id"].is_string() && item["role"].is_string() && item["expires_at"].is_string()
        );
    }
    for secret in [
        acct_key.as_str(),
        viewer_key.as_str(),
        admin_key.as_str(),
        sub["token"].as_str().expect("token"),
    ] {
        assert!(!list.text.contains(secret), "token leaked in list");
        let hash = wb_crypto::token_hash(&Secret::new(secret.to_string()));
        assert!(!list.text.contains(&hash), "token hash leaked in list");
    }

    // Revocation takes effect at once.
    let revoked = srv
        .delete(&t.path(&format!("/api-keys/{viewer_id}")), &t.token)
        .await
        .ok(200);
    assert!(revoked["revoked_at"].is_string());
    assert!(revoked.get("token").is_none());
    srv.get(&t.path("/entries"), &viewer_key)
        .await
        .problem(401, "unauthorized");
    srv.delete(&t.path(&format!("/api-keys/{acct_key_id}")), &admin_key)
        .await
        .ok(200);
    srv.post(&t.path("/entries"), &acct_key, sale("2026-01-04"))
        .await
        .problem(401, "unauthorized");
    srv.delete(&t.path("/api-keys/no-such-key"), &t.token)
        .await
        .problem(404, "not-found");
    let list = srv.get(&keys, &t.token).await.ok(200);
    let revoked_count = list
        .as_array()
        .expect("list")
        .iter()
        .filter(|k| k["revoked_at"].is_string())
        .count();
    assert_eq!(revoked_count, 2);

    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contributor_roles_are_enforced_for_users() {
    let srv = TestServer::start().await;
    let t = srv.signup("Team Co").await;
    srv.chart(&t).await;
    // No invitation endpoint yet: add members through the platform, as the CLI does.
    let mut tokens = Vec::new();
    for role in [Role::Accountant, Role::Viewer] {
        let email = fresh_email(role.as_str());
        let user = srv
            .platform
            .create_user(
                &email,
                &Secret::new(PASSPHRASE.into()),
                None,
                Actor::system("test"),
            )
            .await
            .expect("create user");
        srv.platform
            .add_member(&t.id, &user.id, role, Actor::system("test"))
            .await
            .expect("add member");
        let session = srv.login(&email, PASSPHRASE).await.ok(200);
        tokens.push(session["token"].as_str().expect("token").to_string());
    }
    let (accountant, viewer) = (&tokens[0], &tokens[1]);

    let company = srv.get(&t.path(""), accountant).await.ok(200);
    assert_eq!(company["role"], "accountant");
    srv.post(&t.path("/entries"), accountant, sale("2026-02-01"))
        .await
        .ok(201);
    srv.post(
        &t.path("/api-keys"),
        accountant,
        json!({"name": "mine", "role": "viewer"}),
    )
    .await
    .problem(403, "forbidden");
    srv.post(
        &t.path("/api-keys"),
        accountant,
        json!({"name": "mine", "role": "accountant"}),
    )
    .await
    .problem(403, "forbidden");
    srv.get(&t.path("/api-keys"), accountant)
        .await
        .problem(403, "forbidden");

    let company = srv.get(&t.path(""), viewer).await.ok(200);
    assert_eq!(company["role"], "viewer");
    srv.get(&t.path("/entries"), viewer).await.ok(200);
    srv.post(&t.path("/entries"), viewer, sale("2026-02-02"))
        .await
        .problem(403, "forbidden");
    srv.post(
        &t.path("/api-keys"),
        viewer,
        json!({"name": "mine", "role": "viewer"}),
    )
    .await
    .problem(403, "forbidden");

    assert_eq!(srv.all_entries(&t, &t.token).await.len(), 1);
    assert!(srv
        .get(&t.path("/api-keys"), &t.token)
        .await
        .ok(200)
        .as_array()
        .expect("list")
        .is_empty());
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled() {
    let srv = TestServer::start().await;
    let t = srv.signup("Lockout Co").await;
    for i in 0..5 {
        srv.login(&t.email, &format!("wrong guess number {i} xyz"))
            .await
            .problem(401, "unauthorized");
    }
    let throttled = srv.login(&t.email, "wrong guess number 6 xyz").await;
    throttled.problem(429, "too-many-requests");
    let retry: u64 = throttled
        .header("retry-after")
        .expect("Retry-After header")
        .parse()
        .expect("Retry-After is seconds");
    assert!((1..=900).contains(&retry), "retry after {retry}");
    // While throttled, even the right passphrase is refused.
    srv.login(&t.email, PASSPHRASE)
        .await
        .problem(429, "too-many-requests");
    // The existing session is unaffected.
    srv.get(&t.path(""), &t.token).await.ok(200);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_ends_after_the_window() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Patience Co").await;
    for _ in 0..5 {
        srv.login(&t.email, "definitely not it 1234")
            .await
            .problem(401, "unauthorized");
    }
    srv.login(&t.email, PASSPHRASE)
        .await
        .problem(429, "too-many-requests");
    srv.clock
        .as_ref()
        .expect("clock")
        .advance(time::Duration::minutes(16));
    srv.login(&t.email, PASSPHRASE).await.ok(200);
    srv.shutdown().await;
}
