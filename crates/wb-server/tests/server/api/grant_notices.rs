//! Companies are told of staff access that changes by time alone, exactly
//! once: a grant opening at its requested start, ending at its end, a
//! request expiring unapproved, a legal mandate's grant once it may be
//! disclosed; and owners get a weekly digest of the week's staff access.
//! Rounds are run by hand on an injected clock (the background job runs
//! them too: the assertions hold whichever tells first).

use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::Duration;
use wb_core::staff::StaffRole;

use super::grants::{ask, company_path, request, staff, staff_path};
use super::harness::TestServer;

/// Waits (bounded) until the deliverer has written every queued message, so
/// that counting the written ones counts every notice queued.
async fn drained(srv: &TestServer) {
    for _ in 0..100 {
        let due = srv
            .platform
            .control
            .due_messages(srv.platform.now() + Duration::days(1), 10)
            .await
            .unwrap();
        if due.is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the outbox never drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_driven_changes_are_told_once_and_weekly_digests_list_the_week() {
    let srv = TestServer::start_manual().await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Noticed Books Ltd").await;
    let (_, sam) = staff(&srv, "sam@ops.example", &[StaffRole::Support]).await;
    let (_, max) = staff(&srv, "max@ops.example", &[StaffRole::Management]).await;
    // The digest of the week before any of this: none for this company.
    srv.platform.send_grant_digests().await.unwrap();

    // A grant that opens in two hours, for an hour.
    let opens = srv.platform.now() + Duration::hours(2);
    let mut body = ask(&t.id, "books:read");
    body["starts_at"] = json!(opens.format(&Rfc3339).unwrap());
    let later = request(&srv, &sam, body).await;
    let later_id = later["id"].as_str().unwrap().to_string();
    srv.post(&company_path(&t, &later, "approve"), &t.token, json!({}))
        .await
        .ok(200);
    let approved = srv
        .post(&staff_path(&later, "approve"), &max, json!({}))
        .await
        .ok(200);
    assert_eq!(approved["state"], "pending");
    srv.delivered(&t.email, "was approved and opens at").await;
    // A request nobody decides, and a legal mandate hidden for three days.
    let idle = request(&srv, &sam, ask(&t.id, "files")).await;
    let idle_id = idle["id"].as_str().unwrap().to_string();
    let mut body = ask(&t.id, "full");
    body["legal_mandate"] = json!({
        "reference": "Court order 2026/77",
        "disclose_after": (srv.platform.now() + Duration::days(3)).format(&Rfc3339).unwrap(),
    });
    let mandate = request(&srv, &sam, body).await;
    let mandate_id = mandate["id"].as_str().unwrap().to_string();
    srv.post(
        &staff_path(&mandate, "approve"),
        &max,
        json!({"mandate_reference": "Court order 2026/77"}),
    )
    .await
    .ok(200);
    // Nothing changed by time yet: nothing to tell.
    srv.platform.tell_grant_changes().await.unwrap();
    drained(&srv).await;
    assert_eq!(srv.delivered_count(&t.email, "has started"), 0);
    // Nothing of the mandate reached the company either.
    assert_eq!(srv.delivered_count(&t.email, &mandate_id), 0);

    // It opens: told once, however many rounds run.
    clock.advance(Duration::hours(2));
    for _ in 0..3 {
        srv.platform.tell_grant_changes().await.unwrap();
    }
    let started = srv.delivered(&t.email, "has started").await;
    assert!(started.contains(&later_id), "{started}");
    // It ends at its end.
    clock.advance(Duration::hours(1));
    for _ in 0..3 {
        srv.platform.tell_grant_changes().await.unwrap();
    }
    let ended = srv.delivered(&t.email, "has ended").await;
    assert!(ended.contains(&later_id), "{ended}");
    // The mandate may be told after three days, the idle request expires
    // after seven.
    clock.advance(Duration::days(3));
    srv.platform.tell_grant_changes().await.unwrap();
    let disclosed = srv.delivered(&t.email, "disclosed now").await;
    assert!(disclosed.contains(&mandate_id), "{disclosed}");
    assert!(
        disclosed.contains("Court order") || disclosed.contains("full"),
        "{disclosed}"
    );
    clock.advance(Duration::days(4));
    srv.platform.tell_grant_changes().await.unwrap();
    let expired = srv.delivered(&t.email, "expired without approval").await;
    assert!(expired.contains(&idle_id), "{expired}");
    // Each told exactly once, however many more rounds run.
    srv.platform.tell_grant_changes().await.unwrap();
    drained(&srv).await;
    assert_eq!(srv.delivered_count(&t.email, "has started"), 1);
    assert_eq!(srv.delivered_count(&t.email, "disclosed now"), 1);
    assert_eq!(srv.delivered_count(&t.email, "expired without approval"), 1);

    // A week later, the digest of the week the access happened in.
    srv.platform.send_grant_digests().await.unwrap();
    let digest = srv.delivered(&t.email, "Weekly staff access report").await;
    for id in [&later_id, &idle_id, &mandate_id] {
        assert!(digest.contains(id.as_str()), "{id}: {digest}");
    }
    assert!(digest.contains("actions this week"), "{digest}");
    srv.platform.send_grant_digests().await.unwrap();
    assert_eq!(
        srv.delivered_count(&t.email, "Weekly staff access report"),
        1
    );
}
