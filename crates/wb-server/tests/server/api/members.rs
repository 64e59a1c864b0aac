//! Members and invitations over HTTPS: the shared ledger model end to end,
//! on both backends (the two-node removal story is in `nodes.rs`).

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::harness::{fresh_email, Body, Tenant, TestServer, PASSPHRASE};

/// Invites `email` as `role`; returns (id, token).
async fn invite(srv: &TestServer, t: &Tenant, email: &str, role: &str) -> (String, String) {
    let body = srv
        .post(
            &t.path("/invitations"),
            &t.token,
            json!({"email": email, "role": role}),
        )
        .await
        .ok(201);
    assert_eq!(body["email"], email);
    assert_eq!(body["role"], role);
    assert!(body["expires_at"].is_string());
    (
        body["id"].as_str().unwrap().to_string(),
        body["token"].as_str().unwrap().to_string(),
    )
}

async fn accept(
    srv: &TestServer,
    token: &str,
    auth: Option<&str>,
    body: Value,
) -> super::harness::Resp {
    srv.send(
        Method::POST,
        &format!("/api/v1/invitations/{token}/accept"),
        auth,
        Body::Json(body),
        &[],
    )
    .await
}

async fn patch(srv: &TestServer, path: &str, token: &str, body: Value) -> super::harness::Resp {
    srv.send(Method::PATCH, path, Some(token), Body::Json(body), &[])
        .await
}

/// A member's role in a company, as `/me` lists it.
async fn role_in(srv: &TestServer, token: &str, company: &str) -> Option<String> {
    let me = srv.get("/api/v1/me", token).await.ok(200);
    me["companies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["company"]["id"] == company)
        .map(|m| m["role"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_makes_a_new_member_once() {
    let srv = TestServer::start().await;
    let t = srv.signup("Invite Ltd").await;
    srv.chart(&t).await;
    let email = fresh_email("bookkeeper");
    let (id, token) = invite(&srv, &t, &email, "accountant").await;
    assert_eq!(token.len(), 4 + 43, "wbi_ and 256 bits in base64url");

    // Listed without its token.
    let pending = srv.get(&t.path("/invitations"), &t.token).await.ok(200);
    assert_eq!(pending.as_array().unwrap().len(), 1);
    assert_eq!(pending[0]["id"], id.as_str());
    assert_eq!(pending[0]["email"], email.as_str());
    assert!(pending[0].get("token").is_none());
    assert!(!pending.to_string().contains(&token));

    // Emailed, with a working link.
    let message = srv.delivered(&email, "").await;
    assert!(
        message.contains("Subject: You are invited to Invite Ltd"),
        "{message}"
    );
    assert!(
        message.contains(&format!("/accept-invitation#{token}")),
        "{message}"
    );

    // A new account needs a passphrase, and a strong one.
    accept(&srv, &token, None, json!({}))
        .await
        .problem(400, "passphrase-required");
    accept(&srv, &token, None, json!({"passphrase": "password1"}))
        .await
        .problem(422, "weak-passphrase");
    let joined = accept(
        &srv,
        &token,
        None,
        json!({"passphrase": PASSPHRASE, "name": "Bea Keeper"}),
    )
    .await
    .ok(200);
    let member = joined["token"].as_str().unwrap().to_string();
    assert_eq!(
        role_in(&srv, &member, &t.id).await.as_deref(),
        Some("accountant")
    );
    srv.get(&t.path("/accounts"), &member).await.ok(200);
    // An accountant does not manage members.
    srv.get(&t.path("/members"), &member)
        .await
        .problem(403, "forbidden");
    // The new account logs in with its passphrase.
    srv.login(&email, PASSPHRASE).await.ok(200);

    // Used: the same answer as a token that never existed, and no longer listed.
    let used = accept(&srv, &token, None, json!({"passphrase": PASSPHRASE}))
        .await
        .problem(404, "invitation-invalid");
    let unknown = accept(&srv, &format!("wbi_{}", "A".repeat(43)), None, json!({}))
        .await
        .problem(404, "invitation-invalid");
    assert_eq!(used["detail"], unknown["detail"]);
    let pending = srv.get(&t.path("/invitations"), &t.token).await.ok(200);
    assert_eq!(pending, json!([]));

    // Members, with roles.
    let members = srv.get(&t.path("/members"), &t.token).await.ok(200);
    let mut roles: Vec<(String, String)> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap().to_string(),
                m["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    roles.sort();
    let mut expected = vec![
        (email.clone(), "accountant".to_string()),
        (t.email.clone(), "owner".to_string()),
    ];
    expected.sort();
    assert_eq!(roles, expected);
    let bea = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == email.as_str())
        .unwrap();
    assert_eq!(bea["name"], "Bea Keeper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_invitations_are_refused() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().expect("manual clock");
    let t = srv.signup("Revoke Ltd").await;
    let (id, token) = invite(&srv, &t, &fresh_email("revoked"), "viewer").await;
    srv.delete(&t.path(&format!("/invitations/{id}")), &t.token)
        .await
        .no_content();
    srv.delete(&t.path(&format!("/invitations/{id}")), &t.token)
        .await
        .problem(404, "not-found");
    accept(&srv, &token, None, json!({"passphrase": PASSPHRASE}))
        .await
        .problem(404, "invitation-invalid");

    let (_, token) = invite(&srv, &t, &fresh_email("late"), "viewer").await;
    clock.advance(time::Duration::days(7) + time::Duration::seconds(1));
    accept(&srv, &token, None, json!({"passphrase": PASSPHRASE}))
        .await
        .problem(404, "invitation-invalid");
    // (The owner's session expired too.)
    let owner = srv.login(&t.email, PASSPHRASE).await.ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        srv.get(&t.path("/invitations"), &owner).await.ok(200),
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_account_joins_only_when_signed_in() {
    let srv = TestServer::start().await;
    let a = srv.signup("Host Books").await;
    let b = srv.signup("Guest Books").await;
    let (_, token) = invite(&srv, &a, &b.email, "viewer").await;

    // The token alone does not hand over b's account.
    accept(
        &srv,
        &token,
        None,
        json!({"passphrase": "anything at all 123 xyz"}),
    )
    .await
    .problem(401, "unauthorized");
    // Nor does another account's session.
    let c = srv.signup("Third Books").await;
    accept(&srv, &token, Some(&c.token), json!({}))
        .await
        .problem(403, "forbidden");
    accept(&srv, &token, Some(&b.token), json!({}))
        .await
        .ok(200);

    // b is in both companies, with a role in each.
    assert_eq!(
        role_in(&srv, &b.token, &a.id).await.as_deref(),
        Some("viewer")
    );
    assert_eq!(
        role_in(&srv, &b.token, &b.id).await.as_deref(),
        Some("owner")
    );
    srv.get(&a.path("/accounts"), &b.token).await.ok(200);
    srv.post(
        &a.path("/accounts"),
        &b.token,
        json!({"code": "1000", "name": "Cash", "type": "asset"}),
    )
    .await
    .problem(403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_keeps_an_owner_and_admins_do_not_touch_owners() {
    let srv = TestServer::start().await;
    let t = srv.signup("Owner Rules").await;
    let own = t.path(&format!("/members/{}", t.user_id));
    let last = patch(&srv, &own, &t.token, json!({"role": "admin"}))
        .await
        .problem(409, "last-owner");
    assert!(last["detail"]
        .as_str()
        .unwrap()
        .contains("at least one owner"));
    srv.delete(&own, &t.token).await.problem(409, "last-owner");

    // An admin.
    let admin_email = fresh_email("admin");
    let (_, token) = invite(&srv, &t, &admin_email, "admin").await;
    let admin = accept(&srv, &token, None, json!({"passphrase": PASSPHRASE}))
        .await
        .ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();
    srv.post(
        &t.path("/invitations"),
        &admin,
        json!({"email": fresh_email("x"), "role": "owner"}),
    )
    .await
    .problem(403, "forbidden");
    patch(&srv, &own, &admin, json!({"role": "viewer"}))
        .await
        .problem(403, "forbidden");
    srv.delete(&own, &admin).await.problem(403, "forbidden");
    assert_eq!(
        role_in(&srv, &t.token, &t.id).await.as_deref(),
        Some("owner")
    );
    // An admin invites and manages the roles below owner.
    let (_, viewer_token) = invite(&srv, &t, &fresh_email("v"), "viewer").await;
    let viewer = accept(&srv, &viewer_token, None, json!({"passphrase": PASSPHRASE}))
        .await
        .ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let me = srv.get("/api/v1/me", &viewer).await.ok(200);
    let viewer_id = me["user"]["id"].as_str().unwrap().to_string();
    let changed = patch(
        &srv,
        &t.path(&format!("/members/{viewer_id}")),
        &admin,
        json!({"role": "accountant"}),
    )
    .await
    .ok(200);
    assert_eq!(changed["role"], "accountant");
    patch(
        &srv,
        &t.path(&format!("/members/{viewer_id}")),
        &admin,
        json!({"role": "emperor"}),
    )
    .await
    .problem(422, "invalid-role");

    // A second owner, then the first may step down.
    let me = srv.get("/api/v1/me", &admin).await.ok(200);
    let admin_id = me["user"]["id"].as_str().unwrap().to_string();
    patch(
        &srv,
        &t.path(&format!("/members/{admin_id}")),
        &t.token,
        json!({"role": "owner"}),
    )
    .await
    .ok(200);
    patch(&srv, &own, &t.token, json!({"role": "admin"}))
        .await
        .ok(200);
    assert_eq!(
        role_in(&srv, &t.token, &t.id).await.as_deref(),
        Some("admin")
    );

    // Refusals and changes are in the control trail, with the company's id.
    let events = srv
        .platform
        .control
        .audit_events(Some(&t.id), 0, 1000)
        .await
        .unwrap();
    let seen = |action: &str, outcome: &str| {
        events
            .iter()
            .any(|e| e.action == action && e.outcome == outcome)
    };
    assert!(seen("member.role", "failure"));
    assert!(seen("member.role", "success"));
    assert!(seen("member.remove", "failure"));
    assert!(seen("invitation.create", "failure"));
    assert!(seen("invitation.accept", "success"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_loses_access_and_keys_at_once() {
    let srv = TestServer::start().await;
    let t = srv.signup("Removal Ltd").await;
    srv.chart(&t).await;
    let email = fresh_email("leaver");
    let (_, token) = invite(&srv, &t, &email, "admin").await;
    let session = accept(&srv, &token, None, json!({"passphrase": PASSPHRASE}))
        .await
        .ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let key = srv
        .post(
            &t.path("/api-keys"),
            &session,
            json!({"name": "leaver's script", "role": "viewer"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Both work (and any cache is warm).
    srv.get(&t.path("/accounts"), &session).await.ok(200);
    srv.get(&t.path("/accounts"), &key).await.ok(200);

    let me = srv.get("/api/v1/me", &session).await.ok(200);
    let leaver = me["user"]["id"].as_str().unwrap().to_string();
    // Lowered: the keys they made (which may carry the old role) are revoked.
    patch(
        &srv,
        &t.path(&format!("/members/{leaver}")),
        &t.token,
        json!({"role": "viewer"}),
    )
    .await
    .ok(200);
    srv.get(&t.path("/accounts"), &key)
        .await
        .problem(401, "unauthorized");
    srv.get(&t.path("/members"), &session)
        .await
        .problem(403, "forbidden");
    // Removed: at once, on the very next request.
    srv.delete(&t.path(&format!("/members/{leaver}")), &t.token)
        .await
        .no_content();
    srv.get(&t.path("/accounts"), &session)
        .await
        .problem(404, "not-found");
    assert_eq!(role_in(&srv, &session, &t.id).await, None);
    srv.delete(&t.path(&format!("/members/{leaver}")), &t.token)
        .await
        .problem(404, "not-found");
}

/// The `auth.login` events of `user` that a company's audit view shows.
async fn sign_ins_seen(srv: &TestServer, t: &Tenant, user: &str, want: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..100 {
        let page = srv
            .get(&t.path("/audit?limit=1000&action=auth.login"), &t.token)
            .await
            .ok(200);
        seen = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == format!("user:{user}"))
            .cloned()
            .collect();
        if seen.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_see_their_members_sign_ins() {
    let srv = TestServer::start().await;
    let a = srv.signup("Watchful Books").await;
    let b = srv.signup("Busy Books").await;
    let outsider = srv.signup("Elsewhere Books").await;
    let (_, token) = invite(&srv, &a, &b.email, "viewer").await;
    accept(&srv, &token, Some(&b.token), json!({}))
        .await
        .ok(200);

    // b fails once, then signs in.
    srv.login(&b.email, "not the passphrase at all 99")
        .await
        .problem(401, "unauthorized");
    srv.login(&b.email, PASSPHRASE).await.ok(200);

    // Both companies b belongs to see both attempts; the outsider sees none.
    for company in [&a, &b] {
        let seen = sign_ins_seen(&srv, company, &b.user_id, 2).await;
        let outcomes: Vec<&str> = seen
            .iter()
            .map(|e| e["outcome"].as_str().unwrap())
            .collect();
        assert!(outcomes.contains(&"failure"), "{seen:?}");
        assert!(outcomes.contains(&"success"), "{seen:?}");
    }
    assert!(sign_ins_seen(&srv, &outsider, &b.user_id, 1)
        .await
        .is_empty());
}
