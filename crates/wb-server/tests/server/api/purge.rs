//! The customer's purge under its own retention rules: the dry run lists
//! exactly what the purge then removes; balances on and after the horizon
//! are unchanged; attachments and audit events past their rules go; the
//! journal and the audit trail verify from their signed anchors; backups
//! from before the purge are gone, so no point before it is restorable; a
//! horizon beyond the rules is refused naming the rule.

use std::collections::BTreeSet;
use std::time::Duration;

use object_store::ObjectStoreExt;
use reqwest::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use wb_server::backup::snapshot;
use wb_server::Clock;

use super::harness::{entry, Body, Tenant, TestServer};

fn one_year_minimum(config: &mut wb_server::ServerConfig) {
    config.statutory_minimum = wb_core::data_retention::StatutoryMinimum::years(1).unwrap();
}

async fn upload(srv: &TestServer, t: &Tenant, query: &str, bytes: &[u8]) -> String {
    srv.send(
        Method::POST,
        &t.path(&format!("/files{query}")),
        Some(&t.token),
        Body::Raw {
            content_type: Some("text/plain"),
            bytes: bytes.to_vec(),
        },
        &[],
    )
    .await
    .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn purge(srv: &TestServer, t: &Tenant, body: Value) -> super::harness::Resp {
    srv.post(&t.path("/purge"), &t.token, body).await
}

/// Waits until a signed checkpoint covers the company's audit trail as it
/// stands (the forwarder writes one within seconds of activity).
async fn checkpointed(srv: &TestServer, company: &str) {
    let source = format!("company:{company}");
    for _ in 0..600 {
        let head = srv.platform.tenant(company).await.unwrap().audit_head();
        let cps = srv.platform.control.checkpoints(&source).await.unwrap();
        if cps.last().is_some_and(|cp| cp.seq >= head) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no checkpoint covered company {company}'s audit trail in 30 s");
}

fn ids(entries: &[Value]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// The parts of a purge's answer its dry run must equal.
fn what_goes(view: &Value) -> Value {
    json!({
        "horizon": view["horizon"],
        "entries": view["entries"],
        "attachments": view["attachments"],
        "audit_events": view["audit_events"],
        "entries_removed": view["entries_removed"],
        "entry_id_ranges": view["entry_id_ranges"],
        "postings_removed": view["postings_removed"],
        "opening": view["opening_entries"].as_array().unwrap().iter()
            .map(|e| json!([e["currency"], e["postings"]])).collect::<Vec<_>>(),
        "attachments_removed": view["attachments_removed"],
        "audit_through_seq": view["audit_through_seq"],
        "audit_events_removed": view["audit_events_removed"],
        "journal_through_seq": view["journal_through_seq"],
        "backup_snapshots_before": view["backup_snapshots_before"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_removes_exactly_what_its_dry_run_lists_and_the_backups_follow() {
    let srv = TestServer::start_manual_configured(one_year_minimum).await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Purging Ltd").await;
    srv.chart(&t).await;
    srv.send(
        Method::PUT,
        &t.path("/retention"),
        Some(&t.token),
        Body::Json(json!({"entries_years": 1, "attachments_years": 1, "audit_years": 1})),
        &[],
    )
    .await
    .ok(200);

    // Two years of books; after the clock moves two years on, entries
    // before 2027 go (one year kept, counted from 1 January).
    let e1 = srv
        .post_entry(
            &t,
            entry(
                "2025-03-01",
                "Old sale",
                &[("1000", "100.00", "USD"), ("4000", "-100.00", "USD")],
            ),
        )
        .await;
    let e2 = srv
        .post_entry(
            &t,
            entry(
                "2025-04-01",
                "Old capital",
                &[("1000", "50.00", "EUR"), ("3000", "-50.00", "EUR")],
            ),
        )
        .await;
    let e3 = srv
        .post_entry(
            &t,
            entry(
                "2025-05-01",
                "Old rent",
                &[("5000", "30.00", "USD"), ("1000", "-30.00", "USD")],
            ),
        )
        .await;
    let r3 = srv
        .post(
            &t.path(&format!("/entries/{e3}/reverse")),
            &t.token,
            json!({"date": "2025-06-01"}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let e4 = srv
        .post_entry(
            &t,
            entry(
                "2026-06-01",
                "Straddling sale",
                &[("1100", "70.00", "USD"), ("4000", "-70.00", "USD")],
            ),
        )
        .await;
    let r4 = srv
        .post(
            &t.path(&format!("/entries/{e4}/reverse")),
            &t.token,
            json!({"date": "2027-02-01"}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let e5 = srv
        .post_entry(
            &t,
            entry(
                "2027-03-01",
                "New sale",
                &[("1000", "20.00", "USD"), ("4000", "-20.00", "USD")],
            ),
        )
        .await;
    let e6 = srv
        .post_entry(
            &t,
            entry(
                "2028-01-15",
                "New loan",
                &[("1000", "5.00", "EUR"), ("2000", "-5.00", "EUR")],
            ),
        )
        .await;
    let old_receipt = upload(
        &srv,
        &t,
        &format!("?name=old.txt&entry={e1}"),
        b"old receipt",
    )
    .await;
    let new_receipt = upload(
        &srv,
        &t,
        &format!("?name=new.txt&entry={e5}"),
        b"new receipt",
    )
    .await;
    let loose = upload(&srv, &t, "?name=loose.txt", b"loose note").await;
    let old_address = srv
        .platform
        .tenant(&t.id)
        .await
        .unwrap()
        .file(old_receipt.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .address;

    let identity = wb_server::exports::age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let old_export = srv
        .post(
            &t.path("/exports"),
            &t.token,
            json!({ "recipient": recipient }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before_purge = clock.now();
    checkpointed(&srv, &t.id).await;
    let tenant = srv.platform.tenant(&t.id).await.unwrap();
    wb_server::backup::purged::ship_now(&srv.platform, &tenant)
        .await
        .unwrap();
    let old_snapshot = snapshot::take(&srv.platform, &t.id).await.unwrap().unwrap();

    clock.advance(time::Duration::days(731));
    let t = srv.sign_in_again(&t).await;
    let days = ["2027-01-01", "2027-02-01", "2027-06-30", "2028-12-31"];
    let mut balances = Vec::new();
    for day in days {
        balances.push(srv.trial_balance(&t, &t.token, day).await["accounts"].clone());
    }
    let all_before = srv.all_entries(&t, &t.token).await;

    // A horizon the rules do not allow yet is refused, naming the rule.
    let refused = purge(&srv, &t, json!({"entries_before": "2028-01-01"}))
        .await
        .problem(422, "below-statutory-minimum");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("statutory_minimum_years"),
        "{refused}"
    );
    purge(&srv, &t, json!({"entries_before": "last year"}))
        .await
        .problem(400, "invalid-date");

    let dry = purge(&srv, &t, json!({"dry_run": true})).await.ok(200);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["horizon"], "2027-01-01");
    assert_eq!(dry["entries_removed"], 4, "{dry}");
    // The SPEC's counts.
    assert_eq!(
        (&dry["entries"], &dry["attachments"]),
        (&json!(4), &json!(2)),
        "{dry}"
    );
    assert_eq!(dry["audit_events"], dry["audit_events_removed"]);
    assert_eq!(
        srv.all_entries(&t, &t.token).await,
        all_before,
        "a dry run changes nothing"
    );
    let gone_files: BTreeSet<String> = dry["attachments_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].to_string())
        .collect();
    assert_eq!(
        gone_files,
        [old_receipt.clone(), loose.clone()].into_iter().collect(),
        "{dry}"
    );
    assert!(dry["audit_through_seq"].as_i64().unwrap() > 0, "{dry}");
    assert_eq!(dry["backup_snapshots_before"], json!([old_snapshot.seq]));

    let done = purge(&srv, &t, json!({})).await.ok(200);
    assert_eq!(
        what_goes(&done),
        what_goes(&dry),
        "the purge removed what its dry run listed"
    );
    assert_eq!(
        done["backups"]["snapshots_deleted"],
        json!([old_snapshot.seq]),
        "{done}"
    );
    assert!(done["after"]["entries"].as_u64() < done["before"]["entries"].as_u64());

    // Entries before the horizon are gone but the straddling pair; one
    // opening entry per currency stands at the horizon.
    let after = srv.all_entries(&t, &t.token).await;
    let kept = ids(&after);
    for purged in [&e1, &e2, &e3, &r3] {
        assert!(!kept.contains(purged), "entry {purged} survived");
    }
    for stays in [&e4, &r4, &e5, &e6] {
        assert!(kept.contains(stays), "entry {stays} went");
    }
    let openings: Vec<&Value> = after
        .iter()
        .filter(|e| {
            e["reference"]
                .as_str()
                .is_some_and(|r| r.starts_with("purge:"))
        })
        .collect();
    assert_eq!(openings.len(), 2, "{openings:?}");
    assert!(openings.iter().all(|e| e["date"] == "2027-01-01"));
    for (day, before) in days.iter().zip(&balances) {
        assert_eq!(
            &srv.trial_balance(&t, &t.token, day).await["accounts"],
            before,
            "balances as of {day}"
        );
    }

    // Attachments: the purged entry's and the loose one are gone, objects too.
    srv.get(&t.path(&format!("/files/{old_receipt}")), &t.token)
        .await
        .problem(404, "not-found");
    srv.get(&t.path(&format!("/files/{loose}")), &t.token)
        .await
        .problem(404, "not-found");
    let listed = srv.get(&t.path("/files"), &t.token).await.ok(200);
    assert!(listed.to_string().contains(&new_receipt), "{listed}");
    assert!(srv
        .platform
        .objects
        .head(&wb_server::files::object_path(&t.id, &old_address))
        .await
        .is_err());

    // The audit trail and the journal verify from their anchors.
    let reports = wb_server::audit_verify::verify_deployment(&srv.platform)
        .await
        .unwrap();
    for report in reports
        .iter()
        .filter(|r| r.source == format!("company:{}", t.id))
    {
        assert_eq!(report.problem, None, "{report:?}");
    }
    let verified = wb_server::backup_verify::verify(&srv.platform, Some(&t.id))
        .await
        .unwrap();
    assert!(verified[0].verified(), "{verified:?}");
    assert_eq!(
        verified[0].purged_through,
        done["journal_through_seq"].as_i64(),
        "backup verify shows the anchor"
    );
    // The central audit collection kept no copy of a removed event.
    let central = srv
        .platform
        .control
        .central_source_events(&format!("company:{}", t.id), 0, 10_000)
        .await
        .unwrap();
    let through = done["audit_through_seq"].as_i64().unwrap();
    assert!(central.iter().all(|c| c.event.seq > through), "{central:?}");
    let company_chain = reports
        .iter()
        .find(|r| r.source == format!("company:{}", t.id) && r.copy == "local")
        .unwrap();
    assert_eq!(
        company_chain.purged_through,
        done["audit_through_seq"].as_i64().unwrap()
    );
    let first = tenant.journal(0, 1).await.unwrap();
    assert_eq!(first[0].kind, "purged");
    assert_eq!(first[0].seq, done["anchor_seq"].as_i64().unwrap());
    assert_eq!(
        first[0].prev_hash,
        done["journal_through_hash"].as_str().unwrap()
    );

    // Exports made before the purge held what went: gone. One made after
    // it opens and verifies (its journal starts at the anchor, its audit
    // trail after the purged events, accounted for by the purge's event).
    let listed = srv.get(&t.path("/exports"), &t.token).await.ok(200);
    assert!(!listed.to_string().contains(&old_export), "{listed}");
    let fresh = srv
        .post(
            &t.path("/exports"),
            &t.token,
            json!({ "recipient": recipient }),
        )
        .await
        .ok(201);
    let bytes = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(srv.url(fresh["download"].as_str().unwrap()))
        .bearer_auth(&t.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let contents = wb_server::exports::decrypt_and_read(
        &bytes,
        &wb_server::exports::Unlock::identity(identity),
    )
    .unwrap();
    assert_eq!(contents.journal[0].kind, "purged");

    // Reverting in place to a point before the purge is refused.
    let refused = wb_server::backup::revert_in_place(
        &srv.platform,
        &t.id,
        wb_server::backup::RestoreTarget::Seq(1),
        wb_store::Actor::system("test"),
        &|_, _| {},
    )
    .await
    .unwrap_err();
    assert!(format!("{refused:#}").contains("purge"), "{refused:#}");

    // The purge is on record with its counts.
    // (the audit API reads the central collection, filled in the background)
    let mut recorded = false;
    for _ in 0..600 {
        let events = srv
            .get(&t.path("/audit?limit=1000"), &t.token)
            .await
            .ok(200);
        if events.to_string().contains("\"data.purge\"") {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recorded, "the purge is not in the company's audit trail");

    // Restores: the latest point holds the purged books; a point before
    // the purge is no longer in the backups.
    let asked = srv
        .post(
            &t.path("/restores"),
            &t.token,
            json!({"latest": true, "confirm": "Purging Ltd"}),
        )
        .await
        .ok(202);
    let job = super::restores::ended(&srv, &t, asked["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    let copy = Tenant {
        id: job["company"]["id"].as_str().unwrap().to_string(),
        ..t.clone()
    };
    assert_eq!(ids(&srv.all_entries(&copy, &t.token).await), kept);
    let asked = srv
        .post(
            &t.path("/restores"),
            &t.token,
            json!({"to": before_purge.format(&Rfc3339).unwrap(), "confirm": "Purging Ltd"}),
        )
        .await;
    if asked.status.as_u16() == 202 {
        let job = super::restores::ended(&srv, &t, asked.json()["id"].as_str().unwrap()).await;
        assert_eq!(
            job["state"], "failed",
            "a point before the purge restored: {job}"
        );
    } else {
        assert!(asked.status.as_u16() >= 400, "{:?}", asked.text);
    }
}
