//! Staff access grants over HTTPS: a staff member asks, the company's owner
//! or admin AND a manager who is not the requester approve (either order),
//! either side denies or revokes, a legal mandate is management's alone and
//! hidden from the company until it may be told, and every refusal is on
//! record.

use super::harness::{Tenant, TestServer};
use super::staff::{staff_member, staff_token};
use serde_json::{json, Value};
use wb_core::staff::StaffRole;

/// A staff member, signed in: (actor id, token).
pub(super) async fn staff(srv: &TestServer, email: &str, roles: &[StaffRole]) -> (String, String) {
    let secret = staff_member(srv, email, roles).await;
    let token = staff_token(srv, email, &secret).await;
    let me = srv.get("/api/v1/staff/me", &token).await.ok(200);
    (format!("staff:{}", me["id"].as_str().unwrap()), token)
}

pub(super) fn ask(company: &str, scope: &str) -> Value {
    json!({
        "company": company,
        "reason": "Ticket 812: the customer cannot find a missing invoice",
        "scope": scope,
        "duration_minutes": 60,
        "ticket": "SUP-812",
    })
}

pub(super) async fn request(srv: &TestServer, token: &str, body: Value) -> Value {
    srv.post("/api/v1/staff/access-grants", token, body)
        .await
        .ok(201)
}

pub(super) fn staff_path(grant: &Value, decision: &str) -> String {
    format!(
        "/api/v1/staff/access-grants/{}/{decision}",
        grant["id"].as_str().unwrap()
    )
}

pub(super) fn company_path(t: &Tenant, grant: &Value, decision: &str) -> String {
    t.path(&format!(
        "/access-grants/{}/{decision}",
        grant["id"].as_str().unwrap()
    ))
}

pub(super) async fn company_grant(srv: &TestServer, t: &Tenant, id: &str) -> Option<Value> {
    srv.get(&t.path("/access-grants"), &t.token).await.ok(200)["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == id)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_opens_only_with_both_approvals_in_either_order_and_ends_on_time() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Transparent Books Ltd").await;
    let (sam, sam_token) = staff(&srv, "sam@ops.example", &[StaffRole::Support]).await;
    let (max, max_token) = staff(&srv, "max@ops.example", &[StaffRole::Management]).await;

    // Company first, then management.
    let g = request(&srv, &sam_token, ask(&t.id, "books:read")).await;
    assert_eq!(g["state"], "pending");
    assert_eq!(g["requested_by"], sam.as_str());
    assert!(g["id"].as_str().unwrap().starts_with("grt_"));
    // The owner is told, with the grant's id and reason.
    let mail = srv.delivered(&t.email, g["id"].as_str().unwrap()).await;
    assert!(mail.contains("missing invoice"), "{mail}");
    // Support cannot approve: refused on record.
    srv.post(&staff_path(&g, "approve"), &sam_token, json!({}))
        .await
        .problem(403, "forbidden");
    let approved = srv
        .post(&company_path(&t, &g, "approve"), &t.token, json!({}))
        .await
        .ok(200);
    assert_eq!(approved["state"], "pending", "one side is not enough");
    srv.post(&company_path(&t, &g, "approve"), &t.token, json!({}))
        .await
        .problem(409, "grant-conflict");
    let active = srv
        .post(&staff_path(&g, "approve"), &max_token, json!({}))
        .await
        .ok(200);
    assert_eq!(active["state"], "active");
    assert_eq!(active["approvals"].as_array().unwrap().len(), 2);
    assert_eq!(active["approvals"][1]["by"], max.as_str());
    let listed = company_grant(&srv, &t, g["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(listed["state"], "active");
    assert_eq!(listed["reason"], g["reason"]);
    assert_eq!(listed["ticket"], "SUP-812");
    // It ends at its end exactly (the staff keep their sessions alive).
    for minutes in [29, 29, 2] {
        clock.advance(time::Duration::minutes(minutes));
        for token in [&sam_token, &max_token] {
            srv.get("/api/v1/staff/me", token).await.ok(200);
        }
    }
    assert_eq!(
        company_grant(&srv, &t, g["id"].as_str().unwrap())
            .await
            .unwrap()["state"],
        "expired"
    );

    // Management first, then the company denies: denied, never active.
    let g = request(&srv, &sam_token, ask(&t.id, "files")).await;
    srv.post(&staff_path(&g, "approve"), &max_token, json!({}))
        .await
        .ok(200);
    let denied = srv
        .post(&company_path(&t, &g, "deny"), &t.token, json!({}))
        .await
        .ok(200);
    assert_eq!(denied["state"], "denied");
    assert_eq!(denied["ended"]["side"], "company");
    srv.post(&company_path(&t, &g, "approve"), &t.token, json!({}))
        .await
        .problem(409, "grant-conflict");

    // Both approve, then either side revokes at once.
    for revoker in ["company", "management"] {
        let g = request(&srv, &sam_token, ask(&t.id, "books:write")).await;
        srv.post(&staff_path(&g, "approve"), &max_token, json!({}))
            .await
            .ok(200);
        srv.post(&company_path(&t, &g, "approve"), &t.token, json!({}))
            .await
            .ok(200);
        let revoked = match revoker {
            "company" => {
                srv.post(&company_path(&t, &g, "revoke"), &t.token, json!({}))
                    .await
            }
            _ => {
                srv.post(&staff_path(&g, "revoke"), &max_token, json!({}))
                    .await
            }
        }
        .ok(200);
        assert_eq!(revoked["state"], "revoked");
        assert_eq!(revoked["ended"]["side"], revoker);
    }

    // A manager cannot approve their own request.
    let own = request(&srv, &max_token, ask(&t.id, "books:read")).await;
    srv.post(&staff_path(&own, "approve"), &max_token, json!({}))
        .await
        .problem(403, "self-approval");

    // The company's viewers and accountants may not decide (their keys here).
    for role in ["viewer", "accountant"] {
        let key = srv
            .post(
                &t.path("/api-keys"),
                &t.token,
                json!({"name": role, "role": role}),
            )
            .await
            .ok(201)["token"]
            .as_str()
            .unwrap()
            .to_string();
        srv.post(&company_path(&t, &own, "approve"), &key, json!({}))
            .await
            .problem(403, "forbidden");
        srv.get(&t.path("/access-grants"), &key)
            .await
            .problem(403, "forbidden");
    }
    // Another company's owner does not see or reach this one's grants.
    let other = srv.signup("Elsewhere Ltd").await;
    srv.post(
        &company_path(&other, &own, "approve"),
        &other.token,
        json!({}),
    )
    .await
    .problem(404, "not-found");

    // Realms do not mix on grant paths either.
    srv.get("/api/v1/staff/access-grants", &t.token)
        .await
        .problem(401, "unauthorized");
    // Staff reach company paths only under a grant, and no grant opens
    // the company's own decisions.
    srv.get(&t.path("/access-grants"), &sam_token)
        .await
        .problem(403, "grant-required");
    // Staff see their own requests; a manager sees all.
    let mine = srv
        .get("/api/v1/staff/access-grants", &sam_token)
        .await
        .ok(200);
    assert!(mine["grants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["requested_by"] == sam.as_str()));
    let all = srv
        .get("/api/v1/staff/access-grants", &max_token)
        .await
        .ok(200);
    assert!(all["grants"].as_array().unwrap().len() > mine["grants"].as_array().unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_checked_and_refusals_are_on_record() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Careful Books Ltd").await;
    let (_, sam_token) = staff(&srv, "sam@ops.example", &[StaffRole::Support]).await;
    let (_, sally_token) = staff(&srv, "sally@ops.example", &[StaffRole::Sales]).await;
    let bad = |f: &dyn Fn(&mut Value)| {
        let mut body = ask(&t.id, "books:read");
        f(&mut body);
        body
    };
    for (body, slug) in [
        (bad(&|b| b["reason"] = json!("because")), "invalid-grant"),
        (
            bad(&|b| b["duration_minutes"] = json!(73 * 60)),
            "invalid-grant",
        ),
        (bad(&|b| b["duration_minutes"] = json!(0)), "invalid-grant"),
        (bad(&|b| b["scope"] = json!("admin")), "invalid-grant"),
        (
            bad(&|b| b["ticket"] = json!("no spaces allowed")),
            "invalid-grant",
        ),
        (
            bad(&|b| b["starts_at"] = json!("tomorrow")),
            "invalid-grant",
        ),
    ] {
        srv.post("/api/v1/staff/access-grants", &sam_token, body)
            .await
            .problem(422, slug);
    }
    srv.post(
        "/api/v1/staff/access-grants",
        &sam_token,
        bad(&|b| b["company"] = json!("no-such-company")),
    )
    .await
    .problem(404, "not-found");
    // Sales may not ask at all: refused, recorded, alerted.
    srv.post(
        "/api/v1/staff/access-grants",
        &sally_token,
        ask(&t.id, "books:read"),
    )
    .await
    .problem(403, "forbidden");
    let refused = srv
        .platform
        .control
        .audit_events(None, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "staff.refused" && e.company_id.as_deref() == Some(t.id.as_str()))
        .count();
    assert_eq!(refused, 1);
    assert!(
        srv.get(&t.path("/access-grants"), &t.token).await.ok(200)["grants"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legal_mandate_is_managements_alone_and_disclosed_when_allowed() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Mandated Ltd").await;
    let (_, sec_token) = staff(&srv, "sec@ops.example", &[StaffRole::Security]).await;
    let (_, mia_token) = staff(&srv, "mia@ops.example", &[StaffRole::Management]).await;
    let disclose = (srv.platform.now() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut body = ask(&t.id, "full");
    body["legal_mandate"] =
        json!({"reference": "Court order 2026/481", "disclose_after": disclose});
    let g = request(&srv, &sec_token, body).await;
    assert_eq!(g["legal_mandate"], "Court order 2026/481");
    // Hidden from the company, which cannot decide it either.
    assert!(company_grant(&srv, &t, g["id"].as_str().unwrap())
        .await
        .is_none());
    srv.post(&company_path(&t, &g, "deny"), &t.token, json!({}))
        .await
        .problem(404, "not-found");
    srv.post(
        &staff_path(&g, "approve"),
        &mia_token,
        json!({"mandate_reference": "Court order 2026/999"}),
    )
    .await
    .problem(422, "mandate-mismatch");
    let active = srv
        .post(
            &staff_path(&g, "approve"),
            &mia_token,
            json!({"mandate_reference": "Court order 2026/481"}),
        )
        .await
        .ok(200);
    assert_eq!(active["state"], "active");
    // Used: the reads are in the company's trail, which the company cannot
    // see yet either.
    let id = g["id"].as_str().unwrap().to_string();
    srv.get(&t.path("/entries"), &sec_token).await.ok(200);
    srv.get(&t.path("/accounts"), &sec_token).await.ok(200);
    let grant_events = |events: &[wb_store::CentralEvent]| {
        events
            .iter()
            .filter(|c| {
                c.event.auth == format!("grant:{id}")
                    || c.event.target.as_deref() == Some(&format!("grant:{id}"))
            })
            .count()
    };
    let mut collected = 0;
    for _ in 0..100 {
        let events = srv
            .platform
            .control
            .central_events(wb_store::AuditQuery {
                limit: 10_000,
                company_id: Some(t.id.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        collected = grant_events(&events);
        // The request, the refused and the good approval, two reads.
        if collected >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(collected >= 5, "{collected}");
    let seen = srv
        .get(&t.path("/audit?limit=1000"), &t.token)
        .await
        .ok(200)
        .to_string();
    assert!(!seen.contains(&id), "{seen}");
    assert!(!seen.contains("Court order"), "{seen}");
    // A small page still fills up, reading on past the hidden events.
    let page = srv.get(&t.path("/audit?limit=2"), &t.token).await.ok(200);
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    // Told once the prohibition ends (the grant has long expired by then).
    clock.advance(time::Duration::days(30));
    let login = srv
        .login(&t.email, super::harness::PASSPHRASE)
        .await
        .ok(200);
    let t = Tenant {
        token: login["token"].as_str().unwrap().to_string(),
        ..t
    };
    let shown = company_grant(&srv, &t, g["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(shown["state"], "expired");
    assert_eq!(shown["legal_mandate"], "Court order 2026/481");
    let seen = srv
        .get(&t.path("/audit?limit=1000"), &t.token)
        .await
        .ok(200)
        .to_string();
    assert!(seen.contains(&format!("grant:{id}")), "{seen}");
}
