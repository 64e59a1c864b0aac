//! The staff console (`/staff`) and the company's staff-access page
//! (`/c/{company}/access`) over HTTPS: a customer's cookie never opens a
//! staff page and a staff cookie never a customer page; every form needs
//! the CSRF token; a grant asked for, approved by both sides and used from
//! the console is read through the door under the grant, and refused once
//! revoked; a role that may not see a page is refused on record.

use wb_core::staff::StaffRole;

use super::grants::staff;
use super::harness::{Resp, Tenant, TestServer, CONSOLE_CSRF};
use super::staff::{code, next_step, staff_member, STAFF_PASSPHRASE};

const CSRF: &str = CONSOLE_CSRF;

async fn get_with(srv: &TestServer, path: &str, cookie: &str) -> Resp {
    srv.console_get(path, cookie).await
}

async fn post_form(srv: &TestServer, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Resp {
    srv.console_post(path, cookie, fields).await
}

fn location(resp: &Resp) -> &str {
    resp.header("location").unwrap_or("")
}

fn staff_cookie(token: &str) -> String {
    format!("__Host-wb_staff={token}")
}

fn customer_cookie(t: &Tenant) -> String {
    format!("__Host-wb_session={}", t.token)
}

fn grant_ids(page: &str) -> Vec<String> {
    page.split("data-grant=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_and_customer_cookies_open_only_their_own_console() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Cookie Realms Ltd").await;
    let (_, sam) = staff(&srv, "sam.cookies@ops.example", &[StaffRole::Support]).await;

    // A customer's session never opens a staff page, in either cookie.
    for cookie in [customer_cookie(&t), staff_cookie(&t.token)] {
        let resp = get_with(&srv, "/staff", &cookie).await;
        assert_eq!(resp.status, 303, "{cookie}");
        assert_eq!(location(&resp), "/staff/login");
    }
    // A staff session never opens a customer page, in either cookie.
    let company = format!("/c/{}", t.id);
    for cookie in [staff_cookie(&sam), format!("__Host-wb_session={sam}")] {
        let resp = get_with(&srv, &company, &cookie).await;
        assert_eq!(resp.status, 303, "{cookie}");
        assert!(location(&resp).starts_with("/login"), "{}", location(&resp));
    }
    // Each opens its own, under the console's headers.
    let home = get_with(&srv, "/staff", &staff_cookie(&sam)).await;
    assert_eq!(home.status, 200, "{}", home.text);
    assert!(home.text.contains("sam.cookies@ops.example"));
    assert_eq!(home.header("cache-control"), Some("no-store"));
    assert!(home
        .header("content-security-policy")
        .is_some_and(|c| c.contains("default-src 'none'") && !c.contains("unsafe-inline")));
    let access = get_with(&srv, &format!("{company}/access"), &customer_cookie(&t)).await;
    assert_eq!(access.status, 200, "{}", access.text);
    assert!(access.text.contains("Staff access"));
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_staff_sign_in_needs_the_code_and_sets_its_own_host_cookie() {
    let srv = TestServer::start_manual().await;
    let email = "ada.console@ops.example";
    let secret = staff_member(&srv, email, &[StaffRole::Security]).await;
    let wrong = post_form(
        &srv,
        "/staff/login",
        "",
        &[
            ("_csrf", CSRF),
            ("email", email),
            ("passphrase", STAFF_PASSPHRASE),
            ("otp", "000000"),
        ],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong
        .text
        .contains("The email, passphrase or code is wrong."));
    next_step(&srv);
    let ok = post_form(
        &srv,
        "/staff/login",
        "",
        &[
            ("_csrf", CSRF),
            ("email", email),
            ("passphrase", STAFF_PASSPHRASE),
            ("otp", &code(&srv, &secret)),
        ],
    )
    .await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    assert_eq!(location(&ok), "/staff");
    let cookies: Vec<&str> = ok
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let staff = cookies
        .iter()
        .find(|c| c.starts_with("__Host-wb_staff="))
        .expect("a staff cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(staff.contains(attr), "{staff} lacks {attr}");
    }
    assert!(!staff.contains("Domain"), "{staff}");
    assert!(
        !cookies.iter().any(|c| c.starts_with("__Host-wb_session=")),
        "no customer session from a staff sign-in"
    );
    let token = staff
        .trim_start_matches("__Host-wb_staff=")
        .split(';')
        .next()
        .unwrap();
    assert!(token.starts_with("wbt_"));
    let alerts = get_with(&srv, "/staff/alerts", &staff_cookie(token)).await;
    assert_eq!(alerts.status, 200, "{}", alerts.text);

    // Sign-out ends the session.
    let out = post_form(
        &srv,
        "/staff/logout",
        &staff_cookie(token),
        &[("_csrf", CSRF)],
    )
    .await;
    assert_eq!(out.status, 303);
    let after = get_with(&srv, "/staff", &staff_cookie(token)).await;
    assert_eq!(after.status, 303);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_from_the_consoles_is_used_through_the_door_and_every_form_needs_csrf() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Console Grants Ltd").await;
    srv.chart(&t).await;
    let (_, sam) = staff(&srv, "sam.grants@ops.example", &[StaffRole::Support]).await;
    let (_, max) = staff(&srv, "max.grants@ops.example", &[StaffRole::Management]).await;
    let sam_cookie = staff_cookie(&sam);
    let entries = format!("/staff/companies/{}/entries", t.id);

    // Outside a grant: the door's refusal.
    let refused = get_with(&srv, &entries, &sam_cookie).await;
    assert_eq!(refused.status, 403, "{}", refused.text);

    // The request form needs the CSRF token: none, or another, is refused.
    let ask = [
        ("company", t.id.as_str()),
        ("reason", "Ticket 77: the customer cannot find an invoice"),
        ("scope", "books:read"),
        ("duration_minutes", "60"),
        ("ticket", "SUP-77"),
    ];
    let no_token = post_form(&srv, "/staff/grants", &sam_cookie, &ask).await;
    assert_eq!(no_token.status, 403);
    let mut forged = ask.to_vec();
    forged.push(("_csrf", "csrf_someothertoken0123456789"));
    assert_eq!(
        post_form(&srv, "/staff/grants", &sam_cookie, &forged)
            .await
            .status,
        403
    );
    assert!(srv
        .platform
        .control
        .grants(None, 10)
        .await
        .unwrap()
        .is_empty());

    // Bad input: a clear message, nothing asked.
    let mut bad = vec![("_csrf", CSRF)];
    bad.extend(ask.iter().map(|(k, v)| {
        if *k == "duration_minutes" {
            (*k, "lots")
        } else {
            (*k, *v)
        }
    }));
    let refused_form = post_form(&srv, "/staff/grants", &sam_cookie, &bad).await;
    assert_eq!(refused_form.status, 422);
    assert!(refused_form.text.contains("whole number of minutes"));
    assert!(srv
        .platform
        .control
        .grants(None, 10)
        .await
        .unwrap()
        .is_empty());

    let mut good = vec![("_csrf", CSRF)];
    good.extend(ask);
    let asked = post_form(&srv, "/staff/grants", &sam_cookie, &good).await;
    assert_eq!(asked.status, 303, "{}", asked.text);
    let mine = get_with(&srv, "/staff/grants", &sam_cookie).await;
    let ids = grant_ids(&mine.text);
    assert_eq!(ids.len(), 1, "{}", mine.text);
    let grant = &ids[0];

    // Support has no approvals inbox: refused on record.
    let before = staff_refusals(&srv).await;
    let refused_inbox = get_with(&srv, "/staff/approvals", &sam_cookie).await;
    assert_eq!(refused_inbox.status, 403);
    assert!(
        refused_inbox.text.contains("href=\"/staff\""),
        "back to the staff console: {}",
        refused_inbox.text
    );
    assert_eq!(staff_refusals(&srv).await, before + 1);

    // The company approves on its page (CSRF needed there too).
    let access = get_with(&srv, &format!("/c/{}/access", t.id), &customer_cookie(&t)).await;
    assert!(access.text.contains(grant.as_str()), "{}", access.text);
    let approve = format!("/c/{}/access/{grant}/approve", t.id);
    assert_eq!(
        post_form(&srv, &approve, &customer_cookie(&t), &[])
            .await
            .status,
        403
    );
    let approved = post_form(&srv, &approve, &customer_cookie(&t), &[("_csrf", CSRF)]).await;
    assert_eq!(approved.status, 303, "{}", approved.text);
    // Management approves in its inbox.
    let inbox = get_with(&srv, "/staff/approvals", &staff_cookie(&max)).await;
    assert_eq!(inbox.status, 200, "{}", inbox.text);
    assert!(inbox.text.contains(grant.as_str()));
    let path = format!("/staff/grants/{grant}/approve");
    assert_eq!(
        post_form(&srv, &path, &staff_cookie(&max), &[])
            .await
            .status,
        403
    );
    let active = post_form(&srv, &path, &staff_cookie(&max), &[("_csrf", CSRF)]).await;
    assert_eq!(active.status, 303, "{}", active.text);

    // Under the grant: the entries, read through the door, on record with the grant.
    let read = get_with(&srv, &entries, &sam_cookie).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert!(read.text.contains(&format!("data-under-grant=\"{grant}\"")));
    // The company sees the read on the grant (the forwarder brings it to
    // the central collection within a second or so).
    let mut seen = false;
    for _ in 0..100 {
        let page = get_with(&srv, &format!("/c/{}/access", t.id), &customer_cookie(&t)).await;
        if page.text.contains("data-grant-actions") && page.text.contains("entries.list") {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        seen,
        "the read under the grant never showed on the company's page"
    );

    // The owner revokes; the next look is refused.
    let revoke = format!("/c/{}/access/{grant}/revoke", t.id);
    let revoked = post_form(&srv, &revoke, &customer_cookie(&t), &[("_csrf", CSRF)]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.text);
    assert_eq!(get_with(&srv, &entries, &sam_cookie).await.status, 403);
    srv.shutdown().await;
}

async fn staff_refusals(srv: &TestServer) -> usize {
    srv.platform
        .control
        .audit_events(None, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "staff.refused")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_that_may_not_see_a_page_are_refused_on_both_consoles() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Refusals Ltd").await;
    // A customer member without ManageSecurity: no link, and the door's 403.
    let accountant = super::mfa::member_of(&srv, &t, "accountant").await;
    let cookie = format!("__Host-wb_session={accountant}");
    let dashboard = get_with(&srv, &format!("/c/{}", t.id), &cookie).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.text);
    assert!(
        !dashboard.text.contains("/access\""),
        "no Staff access link"
    );
    let access = get_with(&srv, &format!("/c/{}/access", t.id), &cookie).await;
    assert_eq!(access.status, 403);
    let owner = get_with(&srv, &format!("/c/{}", t.id), &customer_cookie(&t)).await;
    assert!(owner.text.contains(&format!("/c/{}/access\"", t.id)));

    // Sales: the summary, never the support views, the alerts or a grant request.
    let (_, sally) = staff(&srv, "sally.sales@ops.example", &[StaffRole::Sales]).await;
    let sales = staff_cookie(&sally);
    let summary = get_with(&srv, &format!("/staff/companies/{}/summary", t.id), &sales).await;
    assert_eq!(summary.status, 200, "{}", summary.text);
    let before = staff_refusals(&srv).await;
    for path in [
        "/staff/companies?q=Refusals".to_string(),
        format!("/staff/companies/{}", t.id),
        "/staff/alerts".to_string(),
        "/staff/approvals".to_string(),
    ] {
        let resp = get_with(&srv, &path, &sales).await;
        assert_eq!(resp.status, 403, "{path}: {}", resp.text);
    }
    let asked = post_form(
        &srv,
        "/staff/grants",
        &sales,
        &[
            ("_csrf", CSRF),
            ("company", t.id.as_str()),
            ("reason", "Licensing check for the renewal quote"),
            ("scope", "books:read"),
            ("duration_minutes", "30"),
        ],
    )
    .await;
    assert_eq!(asked.status, 403, "{}", asked.text);
    assert_eq!(
        staff_refusals(&srv).await,
        before + 5,
        "each refusal on record"
    );
    assert!(srv
        .platform
        .control
        .grants(None, 10)
        .await
        .unwrap()
        .is_empty());
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legal_mandate_asked_for_in_the_console_is_approved_by_management_alone() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Mandated Ltd").await;
    let (_, ann) = staff(&srv, "ann.security@ops.example", &[StaffRole::Security]).await;
    let (_, max) = staff(&srv, "max.mandate@ops.example", &[StaffRole::Management]).await;
    let ann_cookie = staff_cookie(&ann);
    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]"
        ))
        .unwrap();
    let mut fields = vec![
        ("_csrf", CSRF),
        ("company", t.id.as_str()),
        (
            "reason",
            "Court order 2026/118: preserve the ledger for review",
        ),
        ("scope", "books:read"),
        ("duration_minutes", "120"),
        ("disclose_after", later.as_str()),
    ];
    // A disclosure time without a mandate: a clear refusal, nothing asked.
    let refused = post_form(&srv, "/staff/grants", &ann_cookie, &fields).await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.text.contains("goes with a legal mandate"),
        "{}",
        refused.text
    );
    assert!(srv
        .platform
        .control
        .grants(None, 10)
        .await
        .unwrap()
        .is_empty());
    fields.push(("mandate_reference", "COURT-2026-118"));
    let asked = post_form(&srv, "/staff/grants", &ann_cookie, &fields).await;
    assert_eq!(asked.status, 303, "{}", asked.text);
    let stored = srv.platform.control.grants(None, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    let grant = stored[0].grant.id.clone();
    let mandate = stored[0].grant.legal_mandate.as_ref().expect("a mandate");
    assert_eq!(mandate.reference, "COURT-2026-118");
    assert!(mandate.disclose_after.is_some());

    // The company is not told yet.
    let access = get_with(&srv, &format!("/c/{}/access", t.id), &customer_cookie(&t)).await;
    assert!(!access.text.contains(grant.as_str()), "{}", access.text);

    // Management approves quoting the reference; a wrong one is refused.
    let inbox = get_with(&srv, "/staff/approvals", &staff_cookie(&max)).await;
    assert!(inbox.text.contains("Mandate reference"), "{}", inbox.text);
    let path = format!("/staff/grants/{grant}/approve");
    let wrong = post_form(
        &srv,
        &path,
        &staff_cookie(&max),
        &[("_csrf", CSRF), ("mandate_reference", "COURT-1999-1")],
    )
    .await;
    assert_eq!(wrong.status, 422, "{}", wrong.text);
    let approved = post_form(
        &srv,
        &path,
        &staff_cookie(&max),
        &[("_csrf", CSRF), ("mandate_reference", "COURT-2026-118")],
    )
    .await;
    assert_eq!(approved.status, 303, "{}", approved.text);
    let read = get_with(
        &srv,
        &format!("/staff/companies/{}/entries", t.id),
        &ann_cookie,
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.text);
    srv.shutdown().await;
}
