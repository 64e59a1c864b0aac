//! The staff realm over HTTPS: staff log in with passphrase AND code, their
//! sessions are short (30 idle minutes, 8 hours at most) and end when the
//! account is disabled or given a new authenticator; a staff token never
//! works on a customer path and a customer's token never on a staff path;
//! every login, good or bad, is in the control trail.

use serde_json::json;
use wb_core::staff::StaffRole;
use wb_crypto::{Secret, TotpSecret};
use wb_server::clock::Clock;
use wb_server::staff::host_actor;

use super::harness::TestServer;

pub(super) const STAFF_PASSPHRASE: &str = "orbit lantern quarry 58 mossy anvil";

pub(super) fn unix_now(srv: &TestServer) -> u64 {
    let clock = srv.clock.as_ref().expect("manual clock");
    u64::try_from(clock.now().unix_timestamp()).unwrap()
}

/// The secret in an otpauth:// URI.
fn secret_of(uri: &str) -> TotpSecret {
    let secret = uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .expect("a secret in the URI");
    TotpSecret::from_base32(secret).unwrap()
}

pub(super) fn code(srv: &TestServer, secret: &TotpSecret) -> String {
    secret.code_at(unix_now(srv)).unwrap().expose().to_string()
}

pub(super) fn next_step(srv: &TestServer) {
    let clock = srv.clock.as_ref().unwrap();
    let now = unix_now(srv);
    clock.advance(time::Duration::seconds(
        i64::try_from(30 - now % 30).unwrap(),
    ));
}

pub(super) async fn staff_member(srv: &TestServer, email: &str, roles: &[StaffRole]) -> TotpSecret {
    let created = srv
        .platform
        .create_staff(
            email,
            roles,
            &Secret::from(STAFF_PASSPHRASE.to_string()),
            host_actor(),
        )
        .await
        .unwrap();
    assert!(created.totp_uri.expose().starts_with("otpauth://totp/"));
    secret_of(created.totp_uri.expose())
}

pub(super) async fn staff_login(srv: &TestServer, email: &str, otp: &str) -> super::harness::Resp {
    srv.post_anon(
        "/api/v1/staff/auth/login",
        json!({"email": email, "passphrase": STAFF_PASSPHRASE, "otp": otp}),
    )
    .await
}

/// A signed-in staff member's token (a login with the current code).
pub(super) async fn staff_token(srv: &TestServer, email: &str, secret: &TotpSecret) -> String {
    staff_login(srv, email, &code(srv, secret)).await.ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn staff_logins(srv: &TestServer, outcome: &str) -> usize {
    srv.platform
        .control
        .audit_events(None, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "staff.login" && e.outcome == outcome)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_log_in_with_passphrase_and_code_into_short_sessions_of_their_own() {
    let srv = TestServer::start_manual().await;
    let email = "Ada.Support@Ops.Example";
    let secret = staff_member(&srv, email, &[StaffRole::Support, StaffRole::Security]).await;

    // Passphrase alone, a wrong code, a wrong passphrase: 401, each audited.
    let failures_before = staff_logins(&srv, "failure").await;
    srv.post_anon(
        "/api/v1/staff/auth/login",
        json!({"email": email, "passphrase": STAFF_PASSPHRASE}),
    )
    .await
    .problem(422, "invalid-field");
    staff_login(&srv, email, "000000")
        .await
        .problem(401, "unauthorized");
    srv.post_anon(
        "/api/v1/staff/auth/login",
        json!({"email": email, "passphrase": "not the passphrase", "otp": code(&srv, &secret)}),
    )
    .await
    .problem(401, "unauthorized");
    assert!(staff_logins(&srv, "failure").await >= failures_before + 2);

    next_step(&srv);
    let otp = code(&srv, &secret);
    let login = staff_login(&srv, "ada.support@ops.example", &otp)
        .await
        .ok(200);
    let token = login["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("wbt_"));
    let expires = time::OffsetDateTime::parse(
        login["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires - srv.platform.now(), time::Duration::hours(8));
    // The same code again: refused (each step once).
    staff_login(&srv, email, &otp)
        .await
        .problem(401, "unauthorized");

    let me = srv.get("/api/v1/staff/me", &token).await.ok(200);
    assert_eq!(me["email"], "ada.support@ops.example");
    assert_eq!(me["roles"], json!(["security", "support"]));

    // Realms do not mix: a staff token reaches a company only under an
    // access grant (`grant_use.rs`).
    let customer = srv.signup("Realm Check Ltd").await;
    srv.get("/api/v1/staff/me", &customer.token)
        .await
        .problem(401, "unauthorized");
    srv.get(&customer.path("/accounts"), &token)
        .await
        .problem(403, "grant-required");
    srv.get("/api/v1/me", &token)
        .await
        .problem(401, "unauthorized");

    // 30 idle minutes end it; use inside them keeps it going; 8 hours is the end.
    let clock = srv.clock.clone().unwrap();
    for _ in 0..4 {
        clock.advance(time::Duration::minutes(29));
        srv.get("/api/v1/staff/me", &token).await.ok(200);
    }
    clock.advance(time::Duration::minutes(31));
    srv.get("/api/v1/staff/me", &token)
        .await
        .problem(401, "unauthorized");

    next_step(&srv);
    let token = staff_token(&srv, email, &secret).await;
    // Used every 29 minutes it lives 7 h 44 min; at 8 h it ends regardless.
    for _ in 0..16 {
        clock.advance(time::Duration::minutes(29));
        srv.get("/api/v1/staff/me", &token).await.ok(200);
    }
    clock.advance(time::Duration::minutes(16));
    srv.get("/api/v1/staff/me", &token)
        .await
        .problem(401, "unauthorized");

    // Logout ends it.
    next_step(&srv);
    let token = staff_token(&srv, email, &secret).await;
    srv.post("/api/v1/staff/auth/logout", &token, json!({}))
        .await
        .no_content();
    srv.get("/api/v1/staff/me", &token)
        .await
        .problem(401, "unauthorized");
    assert!(staff_logins(&srv, "success").await >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_or_a_new_authenticator_ends_staff_sessions_at_once() {
    let srv = TestServer::start_manual().await;
    let email = "ops@ops.example";
    let secret = staff_member(&srv, email, &[StaffRole::Operations]).await;
    next_step(&srv);
    let token = staff_token(&srv, email, &secret).await;
    let uri = srv
        .platform
        .reset_staff_mfa(email, host_actor())
        .await
        .unwrap();
    srv.get("/api/v1/staff/me", &token)
        .await
        .problem(401, "unauthorized");
    next_step(&srv);
    staff_login(&srv, email, &code(&srv, &secret))
        .await
        .problem(401, "unauthorized");
    let secret = secret_of(uri.expose());
    let token = staff_token(&srv, email, &secret).await;

    srv.platform
        .disable_staff(email, host_actor())
        .await
        .unwrap();
    srv.get("/api/v1/staff/me", &token)
        .await
        .problem(401, "unauthorized");
    next_step(&srv);
    staff_login(&srv, email, &code(&srv, &secret))
        .await
        .problem(401, "unauthorized");

    // Roles: at least one is kept; an unknown email is 404.
    let second = "sales@ops.example";
    staff_member(&srv, second, &[StaffRole::Sales]).await;
    let refused = srv
        .platform
        .change_staff_role(second, StaffRole::Sales, false, host_actor())
        .await
        .unwrap_err();
    assert_eq!(refused.slug, "last-staff-role");
    let changed = srv
        .platform
        .change_staff_role(second, StaffRole::Management, true, host_actor())
        .await
        .unwrap();
    assert_eq!(changed.roles, ["management", "sales"]);
    assert_eq!(
        srv.platform
            .disable_staff("nobody@ops.example", host_actor())
            .await
            .unwrap_err()
            .slug,
        "not-found"
    );
    // Creation refuses a weak passphrase, no role, a taken email.
    let weak = srv
        .platform
        .create_staff(
            "weak@ops.example",
            &[StaffRole::Support],
            &Secret::from("password1".to_string()),
            host_actor(),
        )
        .await
        .err()
        .unwrap();
    assert_eq!(weak.slug, "weak-passphrase");
    let none = srv
        .platform
        .create_staff(
            "none@ops.example",
            &[],
            &Secret::from(STAFF_PASSPHRASE.to_string()),
            host_actor(),
        )
        .await
        .err()
        .unwrap();
    assert_eq!(none.slug, "invalid-staff-role");
    let taken = srv
        .platform
        .create_staff(
            second,
            &[StaffRole::Support],
            &Secret::from(STAFF_PASSPHRASE.to_string()),
            host_actor(),
        )
        .await
        .err()
        .unwrap();
    assert_eq!(taken.slug, "staff-exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_after_a_right_passphrase_are_counted_from_every_address() {
    let srv = TestServer::start_manual().await;
    let email = "guarded@ops.example";
    let secret = staff_member(&srv, email, &[StaffRole::Security]).await;
    let attempt = |n: u8, otp: String| {
        let srv = &srv;
        async move {
            srv.send_from(
                std::net::IpAddr::from([127, 0, 0, 10 + n]),
                reqwest::Method::POST,
                "/api/v1/staff/auth/login",
                None,
                super::harness::Body::Json(
                    json!({"email": email, "passphrase": STAFF_PASSPHRASE, "otp": otp}),
                ),
            )
            .await
        }
    };
    // Each from its own address: the per-address budgets never bite.
    for n in 0..10 {
        attempt(n, "000000".into())
            .await
            .problem(401, "unauthorized");
    }
    attempt(10, "000000".into())
        .await
        .problem(429, "too-many-requests");
    // The right code too, until the window passes.
    attempt(11, code(&srv, &secret))
        .await
        .problem(429, "too-many-requests");
    // The trail tells a wrong code after a right passphrase apart.
    let events = srv
        .platform
        .control
        .audit_events(None, 0, 10_000)
        .await
        .unwrap();
    let wrong_codes = events
        .iter()
        .filter(|e| {
            e.action == "staff.login"
                && e.detail.as_deref() == Some("right passphrase, wrong or reused code")
        })
        .count();
    assert_eq!(wrong_codes, 10);
    srv.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::minutes(16));
    next_step(&srv);
    attempt(12, code(&srv, &secret)).await.ok(200);
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_and_sales_see_exactly_their_fields_and_nothing_else() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Viewable Bakery").await;
    srv.chart(&t).await;
    srv.post_entry(
        &t,
        super::harness::entry(
            "2026-02-01",
            "bread",
            &[("1000", "4.00", "EUR"), ("4000", "-4.00", "EUR")],
        ),
    )
    .await;
    let key = srv
        .post(
            &t.path("/api-keys"),
            &t.token,
            json!({"name": "bot", "role": "viewer"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let support_secret = staff_member(&srv, "help@ops.example", &[StaffRole::Support]).await;
    next_step(&srv);
    let support = staff_token(&srv, "help@ops.example", &support_secret).await;
    let sales_secret = staff_member(&srv, "deals@ops.example", &[StaffRole::Sales]).await;
    let sales = staff_token(&srv, "deals@ops.example", &sales_secret).await;

    // Support: search by name part (any case) and by a member's email.
    let by_name = srv
        .get("/api/v1/staff/companies?q=viewable", &support)
        .await
        .ok(200);
    assert_eq!(by_name["companies"].as_array().unwrap().len(), 1);
    assert_eq!(
        keys(&by_name["companies"][0]),
        ["created_at", "id", "name", "status"]
    );
    let by_email = srv
        .get(&format!("/api/v1/staff/companies?q={}", t.email), &support)
        .await
        .ok(200);
    assert_eq!(by_email["companies"][0]["id"], t.id.as_str());
    assert!(srv
        .get("/api/v1/staff/companies?q=nobody@example.com", &support)
        .await
        .ok(200)["companies"]
        .as_array()
        .unwrap()
        .is_empty());

    let basics = srv
        .get(&format!("/api/v1/staff/companies/{}", t.id), &support)
        .await
        .ok(200);
    assert_eq!(
        keys(&basics),
        ["created_at", "id", "members", "name", "status"]
    );
    let member = &basics["members"][0];
    assert_eq!(
        keys(member),
        ["email", "last_login_at", "mfa_enrolled", "name", "role"]
    );
    assert_eq!(member["email"], t.email.as_str());
    assert_eq!(member["mfa_enrolled"], false);
    // Nothing secret anywhere in it: no hash, no key, no ledger content.
    let text = basics.to_string();
    assert!(
        !text.contains("argon2") && !text.contains(&key) && !text.contains("bread"),
        "{text}"
    );

    // Sales: counts only.
    let summary = srv
        .get(&format!("/api/v1/staff/companies/{}/summary", t.id), &sales)
        .await
        .ok(200);
    assert_eq!(
        keys(&summary),
        [
            "accounts",
            "entries",
            "files",
            "id",
            "last_activity",
            "members",
            "storage_bytes"
        ]
    );
    assert_eq!(summary["entries"], 1);
    assert_eq!(summary["members"], 1);
    assert!(summary["accounts"].as_i64().unwrap() >= 2);
    assert!(summary["storage_bytes"].as_u64().unwrap() > 0);

    // Each role is refused the other's view, on record.
    srv.get(
        &format!("/api/v1/staff/companies/{}/summary", t.id),
        &support,
    )
    .await
    .problem(403, "forbidden");
    srv.get(&format!("/api/v1/staff/companies/{}", t.id), &sales)
        .await
        .problem(403, "forbidden");
    srv.get("/api/v1/staff/companies", &sales)
        .await
        .problem(403, "forbidden");
    let events = srv
        .platform
        .control
        .audit_events(None, 0, 10_000)
        .await
        .unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "staff.refused")
            .count(),
        3
    );
    assert!(events.iter().filter(|e| e.action == "staff.view").count() >= 5);
    // Bad input: a clear refusal; an unknown company is 404.
    srv.get(
        &format!("/api/v1/staff/companies?q={}", "x".repeat(201)),
        &support,
    )
    .await
    .problem(422, "invalid-query");
    srv.get("/api/v1/staff/companies/no-such-company", &support)
        .await
        .problem(404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_staff_triage_alerts_and_others_are_refused() {
    let srv = TestServer::start_manual().await;
    let now = srv.platform.now();
    let draft = wb_core::monitor::AlertDraft {
        rule: "audit-chain-break",
        severity: wb_core::monitor::Severity::Critical,
        dedupe_key: "audit-chain-break:test".into(),
        title: "Audit chain break reported for test".into(),
        detail: "raised by the test".into(),
        company_id: None,
        at: now,
    };
    srv.platform.alerts.raise(&draft, now).await.unwrap();
    let secret = staff_member(&srv, "watch@ops.example", &[StaffRole::Security]).await;
    next_step(&srv);
    let security = staff_token(&srv, "watch@ops.example", &secret).await;
    let sales_secret = staff_member(&srv, "sell@ops.example", &[StaffRole::Sales]).await;
    let sales = staff_token(&srv, "sell@ops.example", &sales_secret).await;

    let open = srv
        .get("/api/v1/staff/alerts?state=open", &security)
        .await
        .ok(200);
    let alert = open["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "audit-chain-break")
        .expect("the raised alert")
        .clone();
    let id = alert["id"].as_i64().unwrap();
    srv.get("/api/v1/staff/alerts?state=bogus", &security)
        .await
        .problem(422, "invalid-query");
    srv.post(
        &format!("/api/v1/staff/alerts/{id}/ack"),
        &security,
        json!({"reason": " "}),
    )
    .await
    .problem(422, "invalid-reason");
    let acked = srv
        .post(
            &format!("/api/v1/staff/alerts/{id}/ack"),
            &security,
            json!({"reason": "looking into it"}),
        )
        .await
        .ok(200);
    assert_eq!(acked["state"], "acknowledged");
    assert!(acked["acknowledged"]["by"]
        .as_str()
        .unwrap()
        .starts_with("staff:"));
    let resolved = srv
        .post(
            &format!("/api/v1/staff/alerts/{id}/resolve"),
            &security,
            json!({"reason": "restored from backup"}),
        )
        .await
        .ok(200);
    assert_eq!(resolved["state"], "resolved");
    srv.post(
        &format!("/api/v1/staff/alerts/{id}/ack"),
        &security,
        json!({"reason": "again"}),
    )
    .await
    .problem(409, "alert-state");
    srv.post(
        "/api/v1/staff/alerts/999999/resolve",
        &security,
        json!({"reason": "x"}),
    )
    .await
    .problem(404, "not-found");
    // Sales sees no alerts, and may not triage.
    srv.get("/api/v1/staff/alerts", &sales)
        .await
        .problem(403, "forbidden");
    srv.post(
        &format!("/api/v1/staff/alerts/{id}/resolve"),
        &sales,
        json!({"reason": "x"}),
    )
    .await
    .problem(403, "forbidden");
}

/// A disabled account's sessions are refused even if one was left open (a
/// session ended by `disable` is the normal path; this checks the second
/// lock, the account's own state), within the second a node may remember
/// a session when the change was not made through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_is_refused_even_with_a_session_left_open() {
    let srv = TestServer::start_manual().await;
    let secret = staff_member(&srv, "left@ops.example", &[StaffRole::Security]).await;
    let token = staff_token(&srv, "left@ops.example", &secret).await;
    srv.get("/api/v1/staff/me", &token).await.ok(200);
    let at = unix_now(&srv) * 1000;
    srv.control_sql(
        &format!("UPDATE staff SET disabled_at = {at} WHERE email = 'left@ops.example';"),
        &format!("UPDATE staff SET disabled_at = {at} WHERE email = 'left@ops.example';"),
    )
    .await;
    srv.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::seconds(1));
    srv.get("/api/v1/staff/me", &token)
        .await
        .problem(401, "unauthorized");
    srv.get("/api/v1/staff/alerts", &token)
        .await
        .problem(401, "unauthorized");
}
