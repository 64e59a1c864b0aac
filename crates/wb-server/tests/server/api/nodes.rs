//! Several server nodes on one deployment (PostgreSQL control plane and
//! company databases): any node serves any request, and background jobs run
//! on one node at a time.

use std::collections::BTreeSet;
use std::time::Duration;

use super::harness::{entry, TestServer, PASSPHRASE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_serve_one_deployment() {
    // Leaked so the concurrent requests below may borrow them freely.
    let a: &'static TestServer = Box::leak(Box::new(TestServer::start().await));
    let b: &'static TestServer = Box::leak(Box::new(a.another_node().await));
    assert_ne!(a.platform.node_id, b.platform.node_id);

    // Signed up on A; the session works on B.
    let t = a.signup("Two Nodes Ltd").await;
    a.chart(&t).await;
    b.get(&t.path("/accounts"), &t.token).await.ok(200);

    // Entries posted through both nodes at once, into one company database.
    let path = t.path("/entries");
    let post = |node: &'static TestServer, i: usize| {
        let body = entry(
            "2026-03-01",
            &format!("Sale {i}"),
            &[("1000", "10.00", "USD"), ("4000", "-10.00", "USD")],
        );
        let (path, token) = (path.clone(), t.token.clone());
        async move {
            node.post(&path, &token, body).await.ok(201)["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let mut ids = BTreeSet::new();
    for round in 0..5 {
        let from_a: Vec<_> = (0..8).map(|i| post(a, round * 100 + i)).collect();
        let from_b: Vec<_> = (0..8).map(|i| post(b, round * 100 + 50 + i)).collect();
        let (ra, rb) = tokio::join!(join_all(from_a), join_all(from_b));
        ids.extend(ra);
        ids.extend(rb);
    }
    assert_eq!(ids.len(), 80, "every post got its own id");
    let on_a = a.all_entries(&t, &t.token).await;
    let on_b = b.all_entries(&t, &t.token).await;
    assert_eq!(on_a.len(), 80);
    assert_eq!(on_a, on_b, "both nodes see the same books");
    let tb_a = a.trial_balance(&t, &t.token, "2026-12-31").await;
    let tb_b = b.trial_balance(&t, &t.token, "2026-12-31").await;
    assert_eq!(tb_a, tb_b);

    // The company's audit chain stayed one gap-free chain across the two writers.
    let tenant = a.platform.tenant(&t.id).await.unwrap();
    let events = tenant.audit_events(0, 1000).await.unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "audit sequence has no gaps");
        if i > 0 {
            assert_eq!(e.prev_hash, events[i - 1].hash, "audit chain links");
        }
    }
    let journal = tenant.journal(0, 10_000).await.unwrap();
    for (i, r) in journal.iter().enumerate() {
        assert_eq!(r.seq, i as i64 + 1);
        if i > 0 {
            assert_eq!(r.prev_hash, journal[i - 1].hash, "journal chain links");
        }
    }

    // Failed logins counted on A throttle the account on B.
    for i in 0..5 {
        a.login(&t.email, &format!("wrong guess number {i} xyz"))
            .await
            .problem(401, "unauthorized");
    }
    b.login(&t.email, PASSPHRASE)
        .await
        .problem(429, "too-many-requests");

    // Background jobs: checkpoints are signed by one node only.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let checkpoints = a
        .platform
        .control
        .checkpoints(wb_server::jobs::forwarder::CONTROL_SOURCE)
        .await
        .unwrap();
    assert!(!checkpoints.is_empty(), "a checkpoint was taken");
    let signers: BTreeSet<_> = checkpoints.iter().map(|c| c.node.clone()).collect();
    assert_eq!(
        signers.len(),
        1,
        "one node holds the checkpoint lease: {signers:?}"
    );
    // The lease is held: the other node cannot take it while it is renewed.
    let holder = signers.into_iter().next().unwrap();
    let other = if holder == a.platform.node_id {
        &b.platform.node_id
    } else {
        &a.platform.node_id
    };
    let now = time::OffsetDateTime::now_utc();
    assert!(!a
        .platform
        .control
        .try_lease(
            wb_server::jobs::forwarder::CHECKPOINT_LEASE,
            other,
            now,
            now + time::Duration::seconds(15)
        )
        .await
        .unwrap());
}

/// Runs the futures concurrently and collects their outputs in order.
async fn join_all<F: std::future::Future<Output = String>>(futures: Vec<F>) -> Vec<String> {
    futures_util::future::join_all(futures).await
}

/// A member removed through one node loses access on the other at once:
/// the door reads memberships uncached and API keys are never cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_on_one_node_is_out_on_every_node_at_once() {
    let a = TestServer::start().await;
    let b = a.another_node().await;
    let t = a.signup("Two Node Members").await;
    let email = super::harness::fresh_email("member");
    let token = a
        .post(
            &t.path("/invitations"),
            &t.token,
            serde_json::json!({"email": email, "role": "admin"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let session = b
        .post_anon(
            &format!("/api/v1/invitations/{token}/accept"),
            serde_json::json!({"passphrase": PASSPHRASE}),
        )
        .await
        .ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let key = b
        .post(
            &t.path("/api-keys"),
            &session,
            serde_json::json!({"name": "script", "role": "viewer"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Served on B (any per-node cache there is warm).
    b.get(&t.path(""), &session).await.ok(200);
    b.get(&t.path(""), &key).await.ok(200);
    let user = b.get("/api/v1/me", &session).await.ok(200)["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Removed on A; B refuses both on the very next request.
    a.delete(&t.path(&format!("/members/{user}")), &t.token)
        .await
        .no_content();
    b.get(&t.path(""), &session).await.problem(404, "not-found");
    b.get(&t.path(""), &key).await.problem(401, "unauthorized");
}

/// A revocation holds at once on the node that made it and within a second
/// on the others (the door remembers a staff member's grants for at most a
/// second); the end of a grant holds exactly everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_is_refused_at_once_here_and_within_a_second_on_the_other_node() {
    use super::grants::{ask, company_path, request, staff, staff_path};
    use serde_json::json;
    use wb_core::staff::StaffRole;

    let a = TestServer::start_manual().await;
    let b = a.another_node_on_this_clock().await;
    let clock = a.clock.clone().unwrap();
    let t = a.signup("Two Node Grants Ltd").await;
    a.chart(&t).await;
    let (_, sam) = staff(&a, "sam@ops.example", &[StaffRole::Support]).await;
    let (_, max) = staff(&a, "max@ops.example", &[StaffRole::Management]).await;
    let g = request(&a, &sam, ask(&t.id, "books:read")).await;
    a.post(&company_path(&t, &g, "approve"), &t.token, json!({}))
        .await
        .ok(200);
    b.get(&t.path("/accounts"), &sam)
        .await
        .problem(403, "grant-required");
    a.post(&staff_path(&g, "approve"), &max, json!({}))
        .await
        .ok(200);
    // B remembered "no grant" for at most a second; A forgot at once.
    a.get(&t.path("/accounts"), &sam).await.ok(200);
    clock.advance(time::Duration::seconds(1));
    b.get(&t.path("/accounts"), &sam).await.ok(200);
    // Revoked on A: A refuses the very next request; B within a second.
    a.post(&company_path(&t, &g, "revoke"), &t.token, json!({}))
        .await
        .ok(200);
    a.get(&t.path("/accounts"), &sam)
        .await
        .problem(403, "grant-required");
    clock.advance(time::Duration::seconds(1));
    b.get(&t.path("/accounts"), &sam)
        .await
        .problem(403, "grant-required");

    // Management's revocation on B: at once on B, within a second on A.
    let g = request(&a, &sam, ask(&t.id, "books:read")).await;
    a.post(&company_path(&t, &g, "approve"), &t.token, json!({}))
        .await
        .ok(200);
    a.post(&staff_path(&g, "approve"), &max, json!({}))
        .await
        .ok(200);
    clock.advance(time::Duration::seconds(1));
    for node in [&a, &b] {
        node.get(&t.path("/accounts"), &sam).await.ok(200);
    }
    b.post(&staff_path(&g, "revoke"), &max, json!({}))
        .await
        .ok(200);
    b.get(&t.path("/accounts"), &sam)
        .await
        .problem(403, "grant-required");
    clock.advance(time::Duration::seconds(1));
    a.get(&t.path("/accounts"), &sam)
        .await
        .problem(403, "grant-required");

    // The end of a grant holds exactly on both nodes, cache or not.
    let g = request(&a, &sam, ask(&t.id, "books:read")).await;
    a.post(&company_path(&t, &g, "approve"), &t.token, json!({}))
        .await
        .ok(200);
    a.post(&staff_path(&g, "approve"), &max, json!({}))
        .await
        .ok(200);
    clock.advance(time::Duration::seconds(1));
    for node in [&a, &b] {
        node.get(&t.path("/accounts"), &sam).await.ok(200);
    }
    // The grant lasts 60 minutes; keep the sessions alive to its end.
    for _ in 0..2 {
        clock.advance(time::Duration::minutes(29));
        for node in [&a, &b] {
            node.get(&t.path("/accounts"), &sam).await.ok(200);
        }
        a.get("/api/v1/staff/me", &max).await.ok(200);
    }
    // 58 minutes and a second since it opened: a millisecond before its end.
    clock.advance(time::Duration::seconds(119) - time::Duration::milliseconds(1));
    b.get(&t.path("/accounts"), &sam).await.ok(200);
    clock.advance(time::Duration::milliseconds(1));
    for node in [&a, &b] {
        node.get(&t.path("/accounts"), &sam)
            .await
            .problem(403, "grant-required");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deprovisioned_company_is_closed_to_every_credential_on_every_node_at_once() {
    use super::grant_use::active_grant;
    use super::grants::staff;
    use serde_json::json;
    use wb_core::staff::StaffRole;

    let a = TestServer::start_manual().await;
    let b = a.another_node_on_this_clock().await;
    let t = a.signup("Two Node Ending Ltd").await;
    a.chart(&t).await;
    let key = a
        .post(
            &t.path("/api-keys"),
            &t.token,
            json!({"name": "sync", "role": "viewer"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, sam) = staff(&a, "sam.nodes@ops.example", &[StaffRole::Support]).await;
    let (_, max) = staff(&a, "max.nodes@ops.example", &[StaffRole::Management]).await;
    active_grant(&a, &t, &sam, &max, "books:read").await;
    // B has seen every credential work (and remembers the staff grant).
    for token in [&t.token, &key, &sam] {
        b.get(&t.path("/accounts"), token).await.ok(200);
    }
    a.post(
        &t.path("/deprovision"),
        &t.token,
        json!({"passphrase": PASSPHRASE}),
    )
    .await
    .ok(202);
    // The very next request on B, without the clock moving.
    b.get(&t.path("/accounts"), &t.token)
        .await
        .problem(404, "not-found");
    b.get(&t.path("/accounts"), &key)
        .await
        .problem(404, "not-found");
    b.get(&t.path("/accounts"), &sam)
        .await
        .problem(403, "grant-required");
    // And the cancel, made on B, opens A again at once.
    b.post(&t.path("/deprovision/cancel"), &t.token, json!({}))
        .await
        .ok(200);
    a.get(&t.path("/accounts"), &t.token).await.ok(200);
    a.get(&t.path("/accounts"), &key).await.ok(200);
}
