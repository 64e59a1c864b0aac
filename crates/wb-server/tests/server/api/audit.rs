//! The audit trail over HTTPS: every category is recorded for success and
//! failure with who, how, from where and which request; customers read only
//! their own company's events; an unwritable trail refuses writes.

use std::time::Duration;

use serde_json::{json, Value};
use wb_core::Action;
use wb_server::config::AuditFailurePolicy;
use wb_store::AuditQuery;

use super::harness::{fresh_email, TestServer, PASSPHRASE};

fn entry(amount: &str, other: &str) -> Value {
    json!({"date": "2026-02-01", "description": "Sale", "postings": [
        {"account": "1000", "amount": amount, "currency": "USD"},
        {"account": "4000", "amount": other, "currency": "USD"}]})
}

/// The company's audit events once `ready` holds (the forwarder collects within a second).
async fn company_events(
    s: &TestServer,
    path: &str,
    token: &str,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..100 {
        let page = s.get(path, token).await.ok(200);
        let events = page["events"].as_array().expect("events").clone();
        if ready(&events) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("audit events never became complete");
}

fn find<'a>(events: &'a [Value], action: &str, outcome: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["action"] == action && e["outcome"] == outcome)
        .unwrap_or_else(|| panic!("no {action} {outcome} in {events:#?}"))
}

fn assert_http_actor(e: &Value, actor: &str, auth: &str) {
    assert_eq!(e["actor"], actor, "{e}");
    assert_eq!(e["auth"], auth, "{e}");
    assert_eq!(e["client"], "127.0.0.1", "{e}");
    assert!(
        e["request_id"].as_str().is_some_and(|r| r.len() >= 16),
        "{e}"
    );
    assert!(e["at"].as_str().is_some_and(|t| t.starts_with("20")), "{e}");
    assert!(e["hash"].as_str().is_some_and(|h| h.len() == 64), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_category_is_audited_for_success_and_failure() {
    let s = TestServer::start().await;
    let a = s.signup("Audited Ltd").await;
    let b = s.signup("Other Ltd").await;
    s.chart(&a).await;
    let me = format!("user:{}", a.user_id);

    // Authentication: success, failure, logout.
    let session = s.login(&a.email, PASSPHRASE).await.ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();
    s.login(&a.email, "not the passphrase at all")
        .await
        .problem(401, "unauthorized");
    s.send(
        reqwest::Method::POST,
        "/api/v1/auth/logout",
        Some(&session),
        super::harness::Body::None,
        &[],
    )
    .await;
    // Writes: success and refusal.
    let id = s.post_entry(&a, entry("10.00", "-10.00")).await;
    s.post(&a.path("/entries"), &a.token, entry("10.00", "-9.99"))
        .await
        .problem(422, "unbalanced-entry");
    s.post(
        &a.path("/accounts"),
        &a.token,
        json!({"code": "1000", "name": "Dup", "type": "asset"}),
    )
    .await
    .problem(409, "duplicate-account-code");
    s.post(
        &a.path(&format!("/entries/{id}/reverse")),
        &a.token,
        json!({}),
    )
    .await
    .ok(201);
    // Reads of every kind.
    for path in [
        format!("/entries/{id}"),
        "/entries".into(),
        "/accounts".into(),
        "/reports/trial-balance".into(),
        "/reports/balance-sheet".into(),
        "/reports/income-statement".into(),
        "/accounts/1000/register".into(),
    ] {
        s.get(&a.path(&path), &a.token).await.ok(200);
    }
    // Key management, and a read with the key.
    let key = s
        .post(
            &a.path("/api-keys"),
            &a.token,
            json!({"name": "ci", "role": "viewer"}),
        )
        .await
        .ok(201);
    let key_id = key["id"].as_str().unwrap().to_string();
    s.get(&a.path("/accounts"), key["token"].as_str().unwrap())
        .await
        .ok(200);
    s.delete(&a.path(&format!("/api-keys/{key_id}")), &a.token)
        .await
        .ok(200);
    // A refused cross-company request, by B's owner.
    s.get(&a.path("/accounts"), &b.token)
        .await
        .problem(404, "not-found");

    let expected = [
        (Action::CompanySignup.as_str(), "success"),
        (Action::AccountCreate.as_str(), "success"),
        (Action::AccountCreate.as_str(), "failure"),
        (Action::EntryPost.as_str(), "success"),
        (Action::EntryPost.as_str(), "failure"),
        (Action::EntryReverse.as_str(), "success"),
        (Action::EntryRead.as_str(), "success"),
        (Action::EntriesList.as_str(), "success"),
        (Action::AccountsList.as_str(), "success"),
        (Action::ReportTrialBalance.as_str(), "success"),
        (Action::ReportBalanceSheet.as_str(), "success"),
        (Action::ReportIncomeStatement.as_str(), "success"),
        (Action::AccountRegister.as_str(), "success"),
        (Action::ApiKeyCreate.as_str(), "success"),
        (Action::ApiKeyRevoke.as_str(), "success"),
    ];
    // The forwarder copies the platform chain and the company's chain
    // separately: wait until both have arrived.
    let events = company_events(&s, &a.path("/audit?limit=1000"), &a.token, |ev| {
        ev.iter()
            .any(|e| e["action"] == Action::AccessCompany.as_str())
            && expected.iter().all(|(action, outcome)| {
                ev.iter()
                    .any(|e| e["action"] == *action && e["outcome"] == *outcome)
            })
    })
    .await;
    for (action, outcome) in expected {
        let e = find(&events, action, outcome);
        if action != Action::CompanySignup.as_str() {
            assert_http_actor(e, &me, "session");
        }
    }
    assert!(
        find(&events, Action::EntryPost.as_str(), "failure")["detail"]
            .as_str()
            .unwrap()
            .contains("does not balance")
    );
    assert_eq!(
        find(&events, Action::EntryReverse.as_str(), "success")["target"],
        format!("entry:{id}").as_str()
    );
    let by_key = events
        .iter()
        .find(|e| e["action"] == Action::AccountsList.as_str() && e["auth"] == "api_key")
        .expect("the API key's read");
    assert_http_actor(by_key, &format!("api_key:{key_id}"), "api_key");
    let refused = find(&events, Action::AccessCompany.as_str(), "failure");
    assert_http_actor(refused, &format!("user:{}", b.user_id), "session");

    // Platform events without a company: logins, logout, start.
    let mut control = Vec::new();
    for _ in 0..50 {
        control = s
            .platform
            .control
            .central_events(AuditQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        if control
            .iter()
            .any(|c| c.event.action == Action::AuthLogout.as_str())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let has = |action: &str, outcome: &str| {
        control.iter().any(|c| {
            c.event.action == action && c.event.outcome == outcome && c.source == "control"
        })
    };
    assert!(has(Action::SystemStart.as_str(), "success"));
    assert!(has(Action::AuthLogin.as_str(), "success"));
    assert!(has(Action::AuthLogin.as_str(), "failure"));
    assert!(has(Action::AuthLogout.as_str(), "success"));
    let start = control
        .iter()
        .find(|c| c.event.action == Action::SystemStart.as_str())
        .unwrap();
    assert!(
        start
            .event
            .detail
            .as_deref()
            .unwrap()
            .contains("config sha256:"),
        "{:?}",
        start.event.detail
    );
    // No secret ever lands in the trail.
    let all = format!("{control:?}{events:?}");
    assert!(
        !all.contains(PASSPHRASE)
            && !all.contains(&a.token)
            && !all.contains(key["token"].as_str().unwrap())
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_read_only_their_own_trail() {
    let s = TestServer::start().await;
    let a = s.signup("Mine Ltd").await;
    let b = s.signup("Theirs Ltd").await;
    s.chart(&a).await;
    s.chart(&b).await;
    s.post_entry(&b, entry("5.00", "-5.00")).await;
    // B probes A: refused, and recorded in A's trail, not B's.
    s.get(&a.path("/audit"), &b.token)
        .await
        .problem(404, "not-found");
    let events = company_events(&s, &a.path("/audit?limit=1000"), &a.token, |ev| {
        ev.iter()
            .any(|e| e["action"] == Action::AccessCompany.as_str())
    })
    .await;
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(&b.id), "A's trail names B's company: {text}");
    assert!(events
        .iter()
        .all(|e| e["source"] == format!("company:{}", a.id).as_str() || e["source"] == "control"));
    // Filters and paging.
    let failures = s
        .get(&a.path("/audit?outcome=failure"), &a.token)
        .await
        .ok(200);
    assert!(failures["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["outcome"] == "failure"));
    let first = s.get(&a.path("/audit?limit=1"), &a.token).await.ok(200);
    let next = first["next_after"].as_i64().expect("a next page");
    let second = s
        .get(&a.path(&format!("/audit?limit=1&after={next}")), &a.token)
        .await
        .ok(200);
    assert!(second["events"][0]["position"].as_i64().unwrap() > next);
    s.get(&a.path("/audit?outcome=maybe"), &a.token)
        .await
        .problem(422, "invalid-query");
    // Only owners and admins read the trail.
    let email = fresh_email("viewer");
    let viewer = s
        .platform
        .create_user(
            &email,
            &wb_crypto::Secret::new(PASSPHRASE.into()),
            None,
            wb_store::Actor::system("test"),
        )
        .await
        .unwrap();
    s.platform
        .add_member(
            &a.id,
            &viewer.id,
            wb_core::Role::Viewer,
            wb_store::Actor::system("test"),
        )
        .await
        .unwrap();
    let token = s.login(&email, PASSPHRASE).await.ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();
    s.get(&a.path("/audit"), &token)
        .await
        .problem(403, "forbidden");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_trail_refuses_writes_and_raises_the_alarm() {
    let s = TestServer::start().await;
    let a = s.signup("Fragile Ltd").await;
    s.chart(&a).await;
    s.post_entry(&a, entry("1.00", "-1.00")).await;
    let before = s.all_entries(&a, &a.token).await.len();

    // Make the company's audit table refuse every insert, as a failing disk would.
    s.break_company_audit(&a.id).await;

    // Default policy: writes refused, the customer's own reads served.
    s.post(&a.path("/entries"), &a.token, entry("2.00", "-2.00"))
        .await
        .problem(503, "audit-unavailable");
    s.post(
        &a.path("/accounts"),
        &a.token,
        json!({"code": "9000", "name": "X", "type": "asset"}),
    )
    .await
    .problem(503, "audit-unavailable");
    // The platform trail carries the alarm for each refused write.
    let write_alarms = s
        .platform
        .control
        .audit_events(Some(&a.id), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == Action::AuditUnavailable.as_str())
        .count();
    assert_eq!(write_alarms, 2, "one alarm per refused write");
    s.get(&a.path("/reports/trial-balance"), &a.token)
        .await
        .ok(200);
    let alarms = s
        .platform
        .control
        .audit_events(Some(&a.id), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == Action::AuditUnavailable.as_str() && e.outcome == "failure")
        .count();
    assert!(alarms >= 1);
    // Refuse-all: reads are refused too.
    s.platform.set_audit_policy(AuditFailurePolicy::RefuseAll);
    s.get(&a.path("/reports/trial-balance"), &a.token)
        .await
        .problem(503, "audit-unavailable");
    // Nothing was written while the trail was down; writes resume when it is back.
    s.repair_company_audit(&a.id).await;
    s.platform
        .set_audit_policy(AuditFailurePolicy::RefuseWrites);
    assert_eq!(s.all_entries(&a, &a.token).await.len(), before);
    s.post_entry(&a, entry("3.00", "-3.00")).await;
    assert_eq!(s.all_entries(&a, &a.token).await.len(), before + 1);
    s.shutdown().await;
}

/// Hex bytes as an SQL literal of each backend: (SQLite, PostgreSQL).
fn blob(hex: &str) -> (String, String) {
    (format!("X'{hex}'"), format!("decode('{hex}', 'hex')"))
}

/// Someone with write access to the control database (not the master key)
/// rewrites a platform audit event, rebuilds the hash chain after it in the
/// chain and in its central copy, registers a node key of their own (with a
/// copy of the real node's certificate) and re-signs every checkpoint of the
/// chain with it. `audit verify` refuses the chain, naming the forged node;
/// the untouched deployment verified, and a node registered before
/// certification existed certifies its own key when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_re_signed_by_a_forged_node_are_refused() {
    use wb_core::audit::{Checkpoint, GENESIS};
    use wb_server::audit_verify::verify_deployment;

    let s = TestServer::start().await;
    let a = s.signup("Forged Ltd").await;
    s.chart(&a).await;
    let node = s.platform.node_id.clone();
    let stopped = s.stop().await;
    let p = stopped.platform.clone();
    let problems = |reports: Vec<wb_server::audit_verify::ChainReport>| -> Vec<String> {
        reports
            .into_iter()
            .filter_map(|r| r.problem.map(|p| format!("{} ({}): {p}", r.source, r.copy)))
            .collect()
    };
    let untouched = verify_deployment(&p).await.unwrap();
    assert!(untouched.len() >= 4, "{untouched:#?}");
    assert_eq!(problems(untouched), Vec::<String>::new());

    // A node row from before certificates: uncertified until the node starts again.
    stopped
        .control_sql(
            "UPDATE nodes SET certificate = NULL",
            "UPDATE nodes SET certificate = NULL",
        )
        .await;
    let legacy = problems(verify_deployment(&p).await.unwrap());
    assert!(
        !legacy.is_empty()
            && legacy
                .iter()
                .all(|l| l.contains(&format!("node {node},")) && l.contains("not certified")),
        "{legacy:#?}"
    );
    p.register_node().await.unwrap();
    assert_eq!(
        problems(verify_deployment(&p).await.unwrap()),
        Vec::<String>::new()
    );

    // The rewrite: event 1 of the platform chain says something else, and
    // every later hash is recomputed so the chain links up again.
    let events = p.control.audit_events(None, 0, 10_000).await.unwrap();
    let mut rewritten = Vec::new();
    let mut prev = GENESIS.to_string();
    for (i, e) in events.iter().enumerate() {
        let mut e = e.clone();
        if i == 0 {
            e.detail = Some("nothing happened".into());
        }
        e.prev_hash = prev.clone();
        e.hash = e.chained().fields.hash(&prev, e.seq);
        prev = e.hash.clone();
        rewritten.push(e);
    }
    let hash_at = |seq: i64| rewritten[(seq - 1) as usize].hash.clone();
    let forged_key = wb_crypto::NodeKey::generate();
    let mut forged: Vec<Checkpoint> = Vec::new();
    for cp in p.control.checkpoints("control").await.unwrap() {
        let mut f = Checkpoint {
            hash: hash_at(cp.seq),
            node: "node-forged".into(),
            prev: forged
                .last()
                .map_or(GENESIS.to_string(), Checkpoint::digest),
            signature: Vec::new(),
            ..cp
        };
        f.signature = forged_key.sign(&f.message());
        forged.push(f);
    }
    assert!(!forged.is_empty());
    let (mut lite, mut pg) = (
        "DROP TRIGGER audit_append_only; DROP TRIGGER collected_append_only;
         DROP TRIGGER checkpoints_undeletable;"
            .to_string(),
        "ALTER TABLE audit_events DISABLE TRIGGER USER;
         ALTER TABLE collected_events DISABLE TRIGGER USER;
         ALTER TABLE audit_checkpoints DISABLE TRIGGER USER;"
            .to_string(),
    );
    let source = "(SELECT id FROM collected_sources WHERE name = 'control')";
    for e in &rewritten {
        let detail = e.detail.as_deref().map_or("NULL".to_string(), |d| {
            format!("'{}'", d.replace('\'', "''"))
        });
        lite += &format!(
            "UPDATE audit_events SET detail = {detail}, prev_hash = '{}', hash = '{}' WHERE seq = {};",
            e.prev_hash, e.hash, e.seq
        );
        pg += &format!(
            "UPDATE audit_events SET detail = {detail}, prev_hash = '{}', hash = '{}' WHERE seq = {};",
            e.prev_hash, e.hash, e.seq
        );
        let (lp, pp) = blob(&e.prev_hash);
        let (lh, ph) = blob(&e.hash);
        lite += &format!(
            "UPDATE collected_events SET detail = {detail}, prev_hash = {lp}, hash = {lh}
             WHERE source = {source} AND source_seq = {};",
            e.seq
        );
        pg += &format!(
            "UPDATE collected_events SET detail = {detail}, prev_hash = {pp}, hash = {ph}
             WHERE source = {source} AND source_seq = {};",
            e.seq
        );
    }
    let copy_of_real_certificate = format!("(SELECT certificate FROM nodes WHERE id = '{node}')");
    let insert_node = format!(
        "INSERT INTO nodes (id, public_key, created_at, certificate)
         VALUES ('node-forged', '{}', '2026-01-01T00:00:00Z', {copy_of_real_certificate});
         DELETE FROM audit_checkpoints WHERE source = 'control';",
        forged_key.public_key_hex()
    );
    lite += &insert_node;
    pg += &insert_node;
    for cp in &forged {
        let (ls, ps) = blob(&hex::encode(&cp.signature));
        let row = |sig: &str| {
            format!(
                "INSERT INTO audit_checkpoints (source, seq, hash, at, node, prev, signature)
                 VALUES ('control', {}, '{}', '{}', 'node-forged', '{}', {sig});",
                cp.seq, cp.hash, cp.at, cp.prev
            )
        };
        lite += &row(&ls);
        pg += &row(&ps);
    }
    stopped.control_sql(&lite, &pg).await;

    // The rewrite itself is consistent: chain, copy and checkpoints agree.
    let chain: Vec<_> = p
        .control
        .audit_events(None, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.chained())
        .collect();
    assert_eq!(chain[0].fields.detail, "nothing happened");
    let checkpoints = p.control.checkpoints("control").await.unwrap();
    assert!(
        wb_core::audit::verify(&chain, &checkpoints, |cp| wb_crypto::verify_signature(
            &forged_key.public_key_hex(),
            &cp.message(),
            &cp.signature
        ))
        .is_ok()
    );

    // Only the node certificates tell it apart.
    let found = problems(verify_deployment(&p).await.unwrap());
    assert_eq!(found.len(), 2, "the chain and its central copy: {found:#?}");
    for line in &found {
        assert!(line.starts_with("control ("), "{line}");
        assert!(
            line.contains("signed by node node-forged, whose key is not certified"),
            "{line}"
        );
    }
}

/// The request id an audit event records is the server's own, whatever the
/// client sends as `X-Request-Id`: an oversized value, one with characters
/// outside the allowed set, a clean one, or another request's id (which
/// would make two requests indistinguishable in the trail). The response
/// names the server's id too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_record_the_servers_request_id_never_the_clients() {
    let s = TestServer::start().await;
    let a = s.signup("Request Ids Ltd").await;
    let first = s.get(&a.path(""), &a.token).await;
    first.ok(200);
    let first_id = first
        .header("x-request-id")
        .expect("x-request-id")
        .to_string();
    let long = "x".repeat(10_000);
    let sent = [
        long.as_str(),
        "evil\" forged=1; actor=user:admin",
        "client-trace-1",
        first_id.as_str(),
    ];
    let mut ids = vec![first_id.clone()];
    for value in sent {
        let resp = s
            .send(
                reqwest::Method::GET,
                &a.path(""),
                Some(&a.token),
                super::harness::Body::None,
                &[("x-request-id", value)],
            )
            .await;
        resp.ok(200);
        let id = resp.header("x-request-id").expect("x-request-id");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "a server id: {id}");
        assert_ne!(id, value, "the client's id is not echoed");
        ids.push(id.to_string());
    }
    let events = company_events(&s, &a.path("/audit?limit=1000"), &a.token, |ev| {
        ev.iter()
            .filter(|e| e["action"] == Action::CompanyRead.as_str())
            .count()
            == ids.len()
    })
    .await;
    let mut recorded: Vec<String> = events
        .iter()
        .filter(|e| e["action"] == Action::CompanyRead.as_str())
        .map(|e| e["request_id"].as_str().expect("request_id").to_string())
        .collect();
    recorded.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(recorded, expected, "each read carries its response's id");
    expected.dedup();
    assert_eq!(expected.len(), ids.len(), "no two requests share an id");
    for e in &events {
        let id = e["request_id"].as_str().unwrap_or_default();
        assert!(
            !id.starts_with("xxxx") && !id.contains("evil") && id != "client-trace-1",
            "a client's id reached the trail: {e}"
        );
    }
    s.shutdown().await;
}
