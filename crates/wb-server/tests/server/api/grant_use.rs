//! Staff using an access grant over HTTPS: the door admits a staff token on
//! a company's paths only under an active grant whose scope covers the
//! request, from an address the company's allowlist accepts; every request
//! under it is in the company's trail with the grant, and the company sees
//! it on the grant; outside a grant the refusal is on record and alerts; a
//! revocation or the end of a grant holds from the next request.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wb_core::staff::StaffRole;

use super::grants::{ask, company_path, request, staff, staff_path};
use super::harness::{entry, Body, Tenant, TestServer};

/// A grant of `scope` for `requester`, approved by the company and `manager`.
pub(super) async fn active_grant(
    srv: &TestServer,
    t: &Tenant,
    requester: &str,
    manager: &str,
    scope: &str,
) -> Value {
    let g = request(srv, requester, ask(&t.id, scope)).await;
    srv.post(&company_path(t, &g, "approve"), &t.token, json!({}))
        .await
        .ok(200);
    let active = srv
        .post(&staff_path(&g, "approve"), manager, json!({}))
        .await
        .ok(200);
    assert_eq!(active["state"], "active");
    active
}

pub(super) async fn upload(
    srv: &TestServer,
    t: &Tenant,
    token: &str,
    bytes: &[u8],
) -> super::harness::Resp {
    srv.send(
        Method::POST,
        &t.path("/files?name=receipt.txt"),
        Some(token),
        Body::Raw {
            content_type: Some("text/plain"),
            bytes: bytes.to_vec(),
        },
        &[],
    )
    .await
}

/// The control trail's `staff.refused` events for the company.
async fn refusals(srv: &TestServer, company: &str) -> Vec<wb_store::StoredAuditEvent> {
    srv.platform
        .control
        .audit_events(Some(company), 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "staff.refused")
        .collect()
}

/// Waits (bounded) for the background monitor to raise the alert.
async fn outside_grant_alert(srv: &TestServer, actor: &str, company: &str) {
    for _ in 0..100 {
        let alerts = srv.platform.alerts.list(None, 1000).await.unwrap();
        if alerts.iter().any(|a| {
            a.rule == "staff-access-outside-grant"
                && a.dedupe_key.contains(actor)
                && a.company_id.as_deref() == Some(company)
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no staff-access-outside-grant alert for {actor} in {company}");
}

/// Waits (bounded) until the forwarder has brought `ready` events of the
/// company's trail to the central collection; the owner reads them.
async fn company_trail(
    srv: &TestServer,
    t: &Tenant,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..100 {
        let page = srv
            .get(&t.path("/audit?limit=1000"), &t.token)
            .await
            .ok(200);
        let events = page["events"].as_array().unwrap().clone();
        if ready(&events) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the company's trail never showed the staff member's requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_admits_its_scope_only_and_everything_under_it_is_on_record() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Granted Books Ltd").await;
    srv.chart(&t).await;
    let sale = entry(
        "2026-03-01",
        "Sale",
        &[("1000", "10.00", "USD"), ("4000", "-10.00", "USD")],
    );
    let entry_id = srv.post_entry(&t, sale.clone()).await;
    upload(&srv, &t, &t.token, b"receipt 1").await.ok(201);
    let (sam, sam_token) = staff(&srv, "sam@ops.example", &[StaffRole::Support]).await;
    let (_, max_token) = staff(&srv, "max@ops.example", &[StaffRole::Management]).await;

    // No grant: refused, on record, alerting; a pending grant changes nothing.
    srv.get(&t.path("/entries"), &sam_token)
        .await
        .problem(403, "grant-required");
    let pending = request(&srv, &sam_token, ask(&t.id, "books:read")).await;
    srv.get(&t.path("/entries"), &sam_token)
        .await
        .problem(403, "grant-required");
    let refused = refusals(&srv, &t.id).await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused
        .iter()
        .all(|e| e.actor == sam && e.outcome == "failure"));
    outside_grant_alert(&srv, &sam, &t.id).await;
    srv.post(&staff_path(&pending, "deny"), &max_token, json!({}))
        .await
        .ok(200);

    // books:read reads the books, and nothing else.
    let read = active_grant(&srv, &t, &sam_token, &max_token, "books:read").await;
    let read_id = read["id"].as_str().unwrap().to_string();
    let listed = srv.all_entries(&t, &sam_token).await;
    assert_eq!(listed.len(), 1);
    srv.get(&t.path(&format!("/entries/{entry_id}")), &sam_token)
        .await
        .ok(200);
    srv.get(
        &t.path("/reports/trial-balance?as_of=2026-12-31"),
        &sam_token,
    )
    .await
    .ok(200);
    let company = srv.get(&t.path(""), &sam_token).await.ok(200);
    assert_eq!(company["role"], "staff:books:read");
    let refused_paths = [
        (Method::POST, "/entries", Body::Json(sale.clone())),
        (Method::GET, "/files", Body::None),
        (Method::GET, "/audit", Body::None),
        (Method::GET, "/members", Body::None),
        (Method::GET, "/api-keys", Body::None),
        (Method::GET, "/security-policy", Body::None),
        (Method::GET, "/access-grants", Body::None),
        (Method::GET, "/exports", Body::None),
        (Method::POST, "/exports", Body::Json(json!({}))),
        (Method::GET, "/export-schedule", Body::None),
        (Method::GET, "/restores", Body::None),
        (Method::POST, "/restores", Body::Json(json!({}))),
        (Method::GET, "/invitations", Body::None),
    ];
    let refused_count = refused_paths.len();
    for (method, path, body) in refused_paths {
        srv.send(method.clone(), &t.path(path), Some(&sam_token), body, &[])
            .await
            .problem(403, "grant-required");
    }
    // A staff member cannot approve a grant as the company either.
    srv.post(&company_path(&t, &read, "approve"), &sam_token, json!({}))
        .await
        .problem(403, "grant-required");
    assert_eq!(refusals(&srv, &t.id).await.len(), 2 + refused_count + 1);
    // Revoked by the company: refused from the very next request.
    srv.post(&company_path(&t, &read, "revoke"), &t.token, json!({}))
        .await
        .ok(200);
    srv.get(&t.path("/entries"), &sam_token)
        .await
        .problem(403, "grant-required");

    // files reads and adds attachments, never entries.
    let files = active_grant(&srv, &t, &sam_token, &max_token, "files").await;
    srv.get(&t.path("/files"), &sam_token).await.ok(200);
    let receipt = srv.get(&t.path("/files/1"), &sam_token).await;
    assert_eq!(
        (receipt.status.as_u16(), receipt.text.as_str()),
        (200, "receipt 1")
    );
    upload(&srv, &t, &sam_token, b"scanned by support")
        .await
        .ok(201);
    srv.get(&t.path("/entries"), &sam_token)
        .await
        .problem(403, "grant-required");
    srv.post(&staff_path(&files, "revoke"), &max_token, json!({}))
        .await
        .ok(200);
    srv.get(&t.path("/files"), &sam_token)
        .await
        .problem(403, "grant-required");

    // full posts, reads files and the trail; still no administration.
    let full = active_grant(&srv, &t, &sam_token, &max_token, "full").await;
    let full_id = full["id"].as_str().unwrap().to_string();
    let posted = srv
        .post(&t.path("/entries"), &sam_token, sale.clone())
        .await
        .ok(201);
    srv.get(&t.path("/files"), &sam_token).await.ok(200);
    srv.get(&t.path("/audit"), &sam_token).await.ok(200);
    srv.get(&t.path("/members"), &sam_token)
        .await
        .problem(403, "grant-required");

    // The company's trail names the grant, the staff member and the reason
    // for every request under a grant; the change itself too.
    let events = company_trail(&srv, &t, |ev| {
        ev.iter()
            .any(|e| e["action"] == "entry.post" && e["actor"] == sam.as_str())
    })
    .await;
    let under = |grant: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["auth"] == format!("grant:{grant}"))
            .collect()
    };
    let reads = under(&read_id);
    assert!(reads.len() >= 4, "{reads:#?}");
    for e in &reads {
        assert_eq!(e["actor"], sam.as_str());
        let detail = e["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&read_id), "{e}");
        assert!(detail.contains("missing invoice"), "{e}");
    }
    let full_events = under(&full_id);
    let used = full_events
        .iter()
        .find(|e| e["action"] == "access_grant.use")
        .expect("the grant's use for a change is recorded");
    assert!(used["detail"].as_str().unwrap().contains("WriteBooks"));
    let post = full_events
        .iter()
        .find(|e| e["action"] == "entry.post")
        .expect("the change is recorded under the grant");
    assert_eq!(
        post["target"],
        format!("entry:{}", posted["id"].as_str().unwrap())
    );
    // No event of the staff member's is outside a grant, except refusals.
    assert!(events
        .iter()
        .filter(|e| e["actor"] == sam.as_str())
        .all(|e| e["auth"].as_str().unwrap().starts_with("grant:")
            || e["action"] == "staff.refused"
            || e["action"].as_str().unwrap().starts_with("access_grant")));

    // The company sees on each grant what was done under it.
    let grants = srv.get(&t.path("/access-grants"), &t.token).await.ok(200);
    let of = |id: &str| {
        grants["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == id)
            .unwrap()["actions"]
            .as_array()
            .unwrap()
            .clone()
    };
    let actions = of(&full_id);
    assert!(
        actions.iter().any(|a| a["action"] == "entry.post"
            && a["outcome"] == "success"
            && a["target"] == format!("entry:{}", posted["id"].as_str().unwrap())),
        "{actions:#?}"
    );
    assert!(of(&read_id).iter().any(|a| a["action"] == "entries.list"));
    assert!(of(pending["id"].as_str().unwrap()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_obeys_the_allowlist_and_ends_on_time() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Listed Books Ltd").await;
    srv.chart(&t).await;
    let (_, sam_token) = staff(&srv, "sam@ops.example", &[StaffRole::Support]).await;
    let (_, max_token) = staff(&srv, "max@ops.example", &[StaffRole::Management]).await;
    active_grant(&srv, &t, &sam_token, &max_token, "books:read").await;
    srv.get(&t.path("/accounts"), &sam_token).await.ok(200);

    let other: IpAddr = "127.0.0.2".parse().unwrap();
    srv.send(
        Method::PUT,
        &t.path("/security-policy"),
        Some(&t.token),
        Body::Json(json!({"ip_allowlist": ["127.0.0.2/32"], "confirm_lockout": true})),
        &[],
    )
    .await
    .ok(200);
    srv.get(&t.path("/accounts"), &sam_token)
        .await
        .problem(403, "ip-not-allowed");
    srv.send_from(
        other,
        Method::GET,
        &t.path("/accounts"),
        Some(&sam_token),
        Body::None,
    )
    .await
    .ok(200);

    // The grant lasts 60 minutes; the staff keep their sessions alive.
    for _ in 0..2 {
        clock.advance(time::Duration::minutes(29));
        srv.send_from(
            other,
            Method::GET,
            &t.path("/accounts"),
            Some(&sam_token),
            Body::None,
        )
        .await
        .ok(200);
        srv.get("/api/v1/staff/me", &max_token).await.ok(200);
    }
    clock.advance(time::Duration::minutes(2));
    srv.send_from(
        other,
        Method::GET,
        &t.path("/accounts"),
        Some(&sam_token),
        Body::None,
    )
    .await
    .problem(403, "grant-required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_and_staff_tokens_stay_in_their_realms() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Realms Ltd").await;
    let (_, sam_token) = staff(&srv, "sam@ops.example", &[StaffRole::Support]).await;
    let (_, max_token) = staff(&srv, "max@ops.example", &[StaffRole::Management]).await;
    active_grant(&srv, &t, &sam_token, &max_token, "full").await;
    // A staff token is no customer token, even with a full grant.
    for path in ["/api/v1/me", "/api/v1/me/sessions", "/api/v1/me/mfa"] {
        srv.get(path, &sam_token).await.problem(401, "unauthorized");
    }
    // A customer token is no staff token.
    for path in ["/api/v1/staff/me", "/api/v1/staff/companies"] {
        srv.get(path, &t.token).await.problem(401, "unauthorized");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_used_only_while_its_holder_may_ask_for_one_and_requests_are_capped() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Capped Books Ltd").await;
    srv.chart(&t).await;
    let (_, sam) = staff(
        &srv,
        "sam@ops.example",
        &[StaffRole::Support, StaffRole::Sales],
    )
    .await;
    let (_, max) = staff(&srv, "max@ops.example", &[StaffRole::Management]).await;
    active_grant(&srv, &t, &sam, &max, "books:read").await;
    srv.get(&t.path("/accounts"), &sam).await.ok(200);
    // Moved to sales alone: the approved grant no longer opens anything.
    srv.platform
        .change_staff_role(
            "sam@ops.example",
            StaffRole::Support,
            false,
            wb_server::staff::host_actor(),
        )
        .await
        .unwrap();
    srv.get(&t.path("/accounts"), &sam)
        .await
        .problem(403, "grant-required");

    // Requests waiting for one company are capped (each emails the owners).
    let (_, ivy) = staff(&srv, "ivy@ops.example", &[StaffRole::Support]).await;
    for _ in 0..3 {
        request(&srv, &ivy, ask(&t.id, "files")).await;
    }
    srv.post("/api/v1/staff/access-grants", &ivy, ask(&t.id, "files"))
        .await
        .problem(429, "too-many-requests");
    // Another company is not affected.
    let other = srv.signup("Other Books Ltd").await;
    request(&srv, &ivy, ask(&other.id, "files")).await;
}

/// One person is never both sides: a manager who is also the company's
/// owner (same email) cannot give the second approval, and a requester who
/// is the company's owner cannot approve for the company.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_cannot_approve_on_both_sides() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Two Hats Ltd").await;
    let (_, sam) = staff(&srv, "sam@ops.example", &[StaffRole::Support]).await;
    let (_, owner_as_manager) = staff(&srv, &t.email, &[StaffRole::Management]).await;
    let g = request(&srv, &sam, ask(&t.id, "books:read")).await;
    srv.post(&company_path(&t, &g, "approve"), &t.token, json!({}))
        .await
        .ok(200);
    srv.post(&staff_path(&g, "approve"), &owner_as_manager, json!({}))
        .await
        .problem(403, "self-approval");

    let other = srv.signup("Own Request Ltd").await;
    let (_, owner_as_support) = staff(&srv, &other.email, &[StaffRole::Support]).await;
    let g = request(&srv, &owner_as_support, ask(&other.id, "books:read")).await;
    srv.post(
        &company_path(&other, &g, "approve"),
        &other.token,
        json!({}),
    )
    .await
    .problem(403, "self-approval");
}

/// A deployment may shorten staff sessions and grants (never lengthen them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_shortens_grants_and_staff_sessions() {
    let srv = TestServer::start_manual_configured(|c| {
        c.staff.grant_max_minutes = 30;
        c.staff.idle_minutes = 10;
    })
    .await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Short Leash Ltd").await;
    let (_, sam) = staff(&srv, "sam@ops.example", &[StaffRole::Support]).await;
    // `ask` asks for 60 minutes: more than this deployment allows.
    let refused = srv
        .post("/api/v1/staff/access-grants", &sam, ask(&t.id, "files"))
        .await
        .problem(422, "invalid-grant");
    assert!(
        refused["detail"].as_str().unwrap().contains("30"),
        "{refused}"
    );
    let mut shorter = ask(&t.id, "files");
    shorter["duration_minutes"] = json!(30);
    request(&srv, &sam, shorter).await;
    // Ten unused minutes end a staff session here.
    clock.advance(time::Duration::minutes(10));
    srv.get("/api/v1/staff/me", &sam)
        .await
        .problem(401, "unauthorized");
}
