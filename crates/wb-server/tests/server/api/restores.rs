//! An owner's point-in-time restore into a new company, over HTTPS: the
//! confirmation and the point are checked before anything starts, only an
//! owner in a session may ask, the job runs in the background and ends with
//! a new company holding the books as they were, the company itself is
//! untouched, and a failure is told plainly, alerted and audited.

use std::time::Duration;

use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use wb_server::backup::{self, shipper};

use super::harness::{entry, Tenant, TestServer};

async fn wait_shipped(srv: &TestServer, company: &str) {
    for _ in 0..200 {
        let status = backup::status(&srv.platform).await.expect("backup status");
        if status
            .iter()
            .any(|s| s.company_id == company && s.lag_records == 0 && s.shipped_seq > 0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("company {company} was not shipped in 10 s");
}

/// Polls the restore until it ends (a bounded number of times).
pub(super) async fn ended(srv: &TestServer, t: &Tenant, id: &str) -> Value {
    for _ in 0..600 {
        let job = srv
            .get(&t.path(&format!("/restores/{id}")), &t.token)
            .await
            .ok(200);
        if job["state"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("restore {id} did not end in 30 s");
}

fn descriptions(entries: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = entries
        .iter()
        .map(|e| e["description"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// The company's `company.restore` events once `enough` holds for them
/// (the audit API reads the central collection, filled in the background).
async fn restore_events(
    srv: &TestServer,
    t: &Tenant,
    enough: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut events = Vec::new();
    for _ in 0..200 {
        events = srv
            .get(&t.path("/audit?action=company.restore"), &t.token)
            .await
            .ok(200)["events"]
            .as_array()
            .unwrap()
            .clone();
        if enough(&events) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the trail never showed the expected restore events: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_restores_the_books_as_they_were_into_a_new_company() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Restore Bakery").await;
    srv.chart(&t).await;
    let sale = |d: &str| {
        entry(
            "2026-02-01",
            d,
            &[("1000", "10.00", "EUR"), ("4000", "-10.00", "EUR")],
        )
    };
    srv.post_entry(&t, sale("before the point")).await;
    clock.advance(time::Duration::hours(1));
    let point = (srv.platform.now() - time::Duration::minutes(30))
        .format(&Rfc3339)
        .unwrap();
    srv.post_entry(&t, sale("after the point")).await;
    // A policy the copy must keep (a copy without it would be the same
    // books with the doors open).
    let policy = srv
        .send(
            reqwest::Method::PUT,
            &t.path("/security-policy"),
            Some(&t.token),
            super::harness::Body::Json(
                json!({"ip_allowlist": ["127.0.0.0/8"], "session_ttl_minutes": 240}),
            ),
            &[],
        )
        .await
        .ok(200);
    wait_shipped(&srv, &t.id).await;

    // Refused before anything starts.
    let path = t.path("/restores");
    srv.post(
        &path,
        &t.token,
        json!({"to": point, "confirm": "Restore bakery"}),
    )
    .await
    .problem(422, "confirmation-mismatch");
    srv.post(
        &path,
        &t.token,
        json!({"to": point, "latest": true, "confirm": "Restore Bakery"}),
    )
    .await
    .problem(422, "invalid-restore-point");
    srv.post(
        &path,
        &t.token,
        json!({"to": "yesterday", "confirm": "Restore Bakery"}),
    )
    .await
    .problem(422, "invalid-restore-point");
    let future = (srv.platform.now() + time::Duration::hours(1))
        .format(&Rfc3339)
        .unwrap();
    srv.post(
        &path,
        &t.token,
        json!({"to": future, "confirm": "Restore Bakery"}),
    )
    .await
    .problem(422, "invalid-restore-point");
    srv.post(
        &path,
        &t.token,
        json!({"to": "2001-01-01T00:00:00Z", "confirm": "Restore Bakery"}),
    )
    .await
    .problem(422, "invalid-restore-point");
    // An admin may not ask (keys are at most admins; the service also
    // refuses any key): the owner does, in a session.
    let key = srv
        .post(
            &t.path("/api-keys"),
            &t.token,
            json!({"name": "bot", "role": "admin"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    srv.post(
        &path,
        &key,
        json!({"latest": true, "confirm": "Restore Bakery"}),
    )
    .await
    .problem(403, "forbidden");
    assert!(srv.get(&path, &t.token).await.ok(200)["restores"]
        .as_array()
        .unwrap()
        .is_empty());

    // To the point: only the entry before it.
    let asked = srv
        .post(
            &path,
            &t.token,
            json!({"to": point, "confirm": " Restore Bakery "}),
        )
        .await
        .ok(202);
    assert_eq!(asked["state"], "running");
    assert_eq!(asked["to"], point.as_str());
    let done = ended(&srv, &t, asked["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done", "{done}");
    let copy = Tenant {
        id: done["company"]["id"].as_str().unwrap().to_string(),
        ..t.clone()
    };
    assert_ne!(copy.id, t.id);
    assert!(done["company"]["name"]
        .as_str()
        .unwrap()
        .starts_with("Restore Bakery (restored "));
    assert_eq!(
        descriptions(&srv.all_entries(&copy, &t.token).await),
        ["before the point"]
    );
    assert_eq!(
        srv.get(&copy.path("/security-policy"), &t.token)
            .await
            .ok(200),
        policy,
        "the copy keeps the company's security policy"
    );
    // The company itself is unchanged, and the owner is owner of the copy.
    assert_eq!(
        descriptions(&srv.all_entries(&t, &t.token).await),
        ["after the point", "before the point"]
    );
    let me = srv.get("/api/v1/me", &t.token).await.ok(200);
    let companies = me["companies"].as_array().unwrap();
    assert!(
        companies
            .iter()
            .any(|c| c["company"]["id"] == copy.id.as_str() && c["role"] == "owner"),
        "{me}"
    );

    // The latest point: both entries. One running restore per company.
    let latest = srv
        .post(
            &path,
            &t.token,
            json!({"latest": true, "confirm": "Restore Bakery"}),
        )
        .await
        .ok(202);
    let again = srv
        .post(
            &path,
            &t.token,
            json!({"latest": true, "confirm": "Restore Bakery"}),
        )
        .await;
    let busy_refusals = if again.status == 202 {
        // The first ended before the second was asked: both are fine.
        ended(&srv, &t, again.json()["id"].as_str().unwrap()).await;
        0
    } else {
        again.problem(409, "restore-in-progress");
        1
    };
    let done = ended(&srv, &t, latest["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done", "{done}");
    let copy = Tenant {
        id: done["company"]["id"].as_str().unwrap().to_string(),
        ..t.clone()
    };
    assert_eq!(srv.all_entries(&copy, &t.token).await.len(), 2);
    let listed = srv.get(&path, &t.token).await.ok(200);
    assert_eq!(listed["restores"][0]["id"], latest["id"]);
    assert!(listed["restores"].as_array().unwrap().len() >= 2);

    // Each request and each outcome is in the company's trail, and only
    // those: the refused requests left no "asked" behind.
    let jobs: Vec<String> = listed["restores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| format!("restore:{}", j["id"].as_str().unwrap()))
        .collect();
    // The service's refusals (name, future, before creation, and the busy
    // one if it came) are recorded as failures without a job; the others
    // were refused at the door or as malformed requests.
    let refusals = 3 + busy_refusals;
    let events = restore_events(&srv, &t, |e| e.len() >= 2 * jobs.len() + refusals).await;
    let (kept, refused): (Vec<&Value>, Vec<&Value>) =
        events.iter().partition(|e| e["target"].is_string());
    assert_eq!(kept.len(), 2 * jobs.len(), "{events:?}");
    assert!(kept
        .iter()
        .all(|e| jobs.contains(&e["target"].as_str().unwrap().to_string())));
    assert_eq!(refused.len(), refusals, "{events:?}");
    assert!(refused.iter().all(|e| e["outcome"] == "failure"
        && e["detail"]
            .as_str()
            .unwrap()
            .starts_with("restore into a new company refused: ")));
    let ours: Vec<&Value> = events
        .iter()
        .filter(|e| e["target"] == format!("restore:{}", asked["id"].as_str().unwrap()).as_str())
        .collect();
    assert_eq!(ours.len(), 2, "asked and done: {events:?}");
    assert!(
        ours.iter()
            .all(|e| e["outcome"] == "success"
                && e["actor"] == format!("user:{}", t.user_id).as_str())
    );
    assert!(ours.iter().any(|e| e["detail"]
        .as_str()
        .unwrap()
        .starts_with("restored into company:")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_cannot_replay_fails_plainly_alerts_and_leaves_no_company() {
    let srv = TestServer::start().await;
    let t = srv.signup("Broken Backups Ltd").await;
    srv.chart(&t).await;
    srv.post_entry(
        &t,
        entry(
            "2026-02-01",
            "sale",
            &[("1000", "1.00", "EUR"), ("4000", "-1.00", "EUR")],
        ),
    )
    .await;
    wait_shipped(&srv, &t.id).await;
    // The backups lose their journal segments.
    let prefix = shipper::journal_prefix(&t.id);
    let objects: Vec<_> = srv
        .platform
        .objects
        .list(Some(&prefix))
        .map(|m| m.expect("list").location)
        .collect()
        .await;
    assert!(!objects.is_empty());
    for path in objects {
        srv.platform.objects.delete(&path).await.unwrap();
    }
    let companies_before = srv.get("/api/v1/me", &t.token).await.ok(200)["companies"]
        .as_array()
        .unwrap()
        .len();

    let asked = srv
        .post(
            &t.path("/restores"),
            &t.token,
            json!({"latest": true, "confirm": "Broken Backups Ltd"}),
        )
        .await
        .ok(202);
    let id = asked["id"].as_str().unwrap();
    let failed = ended(&srv, &t, id).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let reason = failed["error"].as_str().unwrap();
    assert!(reason.contains("operators have been alerted"), "{reason}");
    assert!(
        !reason.contains(&t.id),
        "no internals in the customer's message: {reason}"
    );
    assert!(failed["company"].is_null());
    // No half-made company appears.
    let companies_after = srv.get("/api/v1/me", &t.token).await.ok(200)["companies"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(companies_after, companies_before);
    // Alerted and audited.
    let alerts = srv
        .platform
        .alerts
        .active_for_company(&t.id, 10)
        .await
        .unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a.rule == wb_app::restore_copy::RESTORE_FAILED_RULE),
        "{alerts:?}"
    );
    restore_events(&srv, &t, |events| {
        events
            .iter()
            .any(|e| e["target"] == format!("restore:{id}").as_str() && e["outcome"] == "failure")
    })
    .await;
}
