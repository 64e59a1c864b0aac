//! A company's security policy over HTTPS, on both backends: the address
//! allowlist (clients bound to 127.0.0.1 and 127.0.0.2), the lockout
//! confirmation, session lifetime, API key lifetime, validation and audit.

use std::net::IpAddr;

use reqwest::Method;
use serde_json::json;

use super::harness::{Body, TestServer, PASSPHRASE};

const OTHER: &str = "127.0.0.2";

async fn put_policy(
    srv: &TestServer,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> super::harness::Resp {
    srv.send(Method::PUT, path, Some(token), Body::Json(body), &[])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlist_admits_only_its_addresses() {
    let srv = TestServer::start().await;
    let t = srv.signup("Allowlist Ltd").await;
    let stranger = srv.signup("Stranger Ltd").await;
    let key = srv
        .post(
            &t.path("/api-keys"),
            &t.token,
            json!({"name": "robot", "role": "viewer"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let policy = t.path("/security-policy");
    let defaults = srv.get(&policy, &t.token).await.ok(200);
    assert_eq!(defaults["ip_allowlist"], json!([]));
    assert_eq!(defaults["mfa_required"], false);

    // Excluding the caller's own address needs a confirmation.
    let refused = put_policy(
        &srv,
        &policy,
        &t.token,
        json!({"ip_allowlist": ["127.0.0.2/32"]}),
    )
    .await
    .problem(409, "lockout");
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("confirm_lockout"));
    assert_eq!(
        srv.get(&policy, &t.token).await.ok(200)["ip_allowlist"],
        json!([])
    );
    let set = put_policy(
        &srv,
        &policy,
        &t.token,
        json!({"ip_allowlist": ["127.0.0.2/32", "2001:db8::/32"], "confirm_lockout": true}),
    )
    .await
    .ok(200);
    assert_eq!(
        set["ip_allowlist"],
        json!(["127.0.0.2/32", "2001:db8::/32"])
    );

    // From 127.0.0.1: refused, session and API key alike, on record.
    for token in [&t.token, &key] {
        srv.get(&t.path("/accounts"), token)
            .await
            .problem(403, "ip-not-allowed");
    }
    let refusals = srv
        .platform
        .control
        .audit_events(Some(&t.id), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "access.address" && e.outcome == "failure")
        .count();
    assert_eq!(refusals, 2);
    // A stranger still learns nothing: 404, as for any company not theirs.
    srv.get(&t.path("/accounts"), &stranger.token)
        .await
        .problem(404, "not-found");
    // Other companies of the same caller are not affected.
    srv.get(&stranger.path("/accounts"), &stranger.token)
        .await
        .ok(200);

    // From 127.0.0.2: served, and the owner can lift the list from there.
    let other: IpAddr = OTHER.parse().unwrap();
    for token in [&t.token, &key] {
        srv.send_from(
            other,
            Method::GET,
            &t.path("/accounts"),
            Some(token),
            Body::None,
        )
        .await
        .ok(200);
    }
    srv.send_from(
        other,
        Method::PUT,
        &policy,
        Some(&t.token),
        Body::Json(json!({"ip_allowlist": []})),
    )
    .await
    .ok(200);
    srv.get(&t.path("/accounts"), &t.token).await.ok(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policies_change_nothing_and_every_change_is_on_record() {
    let srv = TestServer::start().await;
    let t = srv.signup("Policy Ltd").await;
    let policy = t.path("/security-policy");
    for (body, slug) in [
        (
            json!({"ip_allowlist": ["10.0.0.0/33"]}),
            "invalid-security-policy",
        ),
        (
            json!({"ip_allowlist": ["example.com"]}),
            "invalid-security-policy",
        ),
        (json!({"session_ttl_minutes": 1}), "invalid-security-policy"),
        (
            json!({"min_passphrase_strength": 2}),
            "invalid-security-policy",
        ),
        (json!({"api_key_max_days": 0}), "invalid-security-policy"),
    ] {
        put_policy(&srv, &policy, &t.token, body.clone())
            .await
            .problem(422, slug);
    }
    // Requiring a second factor from a session without one (see mfa.rs).
    put_policy(&srv, &policy, &t.token, json!({"mfa_required": true}))
        .await
        .problem(409, "mfa-enrol-first");
    put_policy(&srv, &policy, &t.token, json!({"bogus": 1}))
        .await
        .problem(422, "invalid-field");
    assert_eq!(
        srv.get(&policy, &t.token).await.ok(200),
        json!({"mfa_required": false, "session_ttl_minutes": null, "idle_timeout_minutes": null,
               "ip_allowlist": [], "min_passphrase_strength": 3, "api_key_max_days": null,
               "key_max_age_days": null})
    );

    // Fields left out keep their value; null clears a limit.
    put_policy(
        &srv,
        &policy,
        &t.token,
        json!({"session_ttl_minutes": 60, "api_key_max_days": 30}),
    )
    .await
    .ok(200);
    let kept = put_policy(
        &srv,
        &policy,
        &t.token,
        json!({"min_passphrase_strength": 4}),
    )
    .await
    .ok(200);
    assert_eq!(kept["session_ttl_minutes"], 60);
    assert_eq!(kept["min_passphrase_strength"], 4);
    let cleared = put_policy(
        &srv,
        &policy,
        &t.token,
        json!({"session_ttl_minutes": null}),
    )
    .await
    .ok(200);
    assert_eq!(cleared["session_ttl_minutes"], json!(null));
    assert_eq!(cleared["api_key_max_days"], 30);

    // The company's own trail has each change with before and after, and
    // the refusals (the audit view reads the central collection, which the
    // forwarder fills within moments).
    let mut events: Vec<serde_json::Value> = Vec::new();
    for _ in 0..100 {
        let audit = srv
            .get(
                &t.path("/audit?limit=1000&action=security_policy.set"),
                &t.token,
            )
            .await
            .ok(200);
        events = audit["events"].as_array().unwrap().clone();
        if events.len() >= 9 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let failures = events.iter().filter(|e| e["outcome"] == "failure").count();
    let successes: Vec<_> = events
        .iter()
        .filter(|e| e["outcome"] == "success")
        .collect();
    assert_eq!(failures, 6);
    assert_eq!(successes.len(), 3);
    let detail = successes[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("before: mfa_required=false session_ttl_minutes=none")
            && detail.contains("after: mfa_required=false session_ttl_minutes=60"),
        "{detail}"
    );

    // Only owners and admins: an accountant's API key is refused.
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
    put_policy(&srv, &policy, &key, json!({"ip_allowlist": []}))
        .await
        .problem(403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_may_shorten_sessions_and_keys() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().expect("manual clock");
    let t = srv.signup("Short Lived").await;
    put_policy(
        &srv,
        &t.path("/security-policy"),
        &t.token,
        json!({"session_ttl_minutes": 30, "api_key_max_days": 30}),
    )
    .await
    .ok(200);

    // Keys: at most 30 days, and 30 by default.
    srv.post(
        &t.path("/api-keys"),
        &t.token,
        json!({"name": "long", "role": "viewer", "expires_in_days": 90}),
    )
    .await
    .problem(422, "invalid-api-key");
    let key = srv
        .post(
            &t.path("/api-keys"),
            &t.token,
            json!({"name": "short", "role": "viewer"}),
        )
        .await
        .ok(201);
    let created = time::OffsetDateTime::parse(
        key["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        key["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires - created, time::Duration::days(30));

    // Sessions: this company's books close after 30 minutes of session age.
    clock.advance(time::Duration::minutes(29));
    srv.get(&t.path("/accounts"), &t.token).await.ok(200);
    clock.advance(time::Duration::minutes(2));
    srv.get(&t.path("/accounts"), &t.token)
        .await
        .problem(401, "session-expired");
    // Signing in again opens them.
    let fresh = srv.login(&t.email, PASSPHRASE).await.ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();
    srv.get(&t.path("/accounts"), &fresh).await.ok(200);
}
