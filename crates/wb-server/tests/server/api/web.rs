//! Cookie sessions with CSRF protection, security headers, ops endpoints, OpenAPI.

use reqwest::Method;
use serde_json::{json, Value};

use super::harness::*;

/// `(name, value, attributes)` of each Set-Cookie header.
fn set_cookies(resp: &Resp) -> Vec<(String, String, Vec<String>)> {
    resp.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| {
            let text = v.to_str().expect("ascii cookie");
            let mut parts = text.split(';').map(str::trim);
            let (name, value) = parts
                .next()
                .and_then(|p| p.split_once('='))
                .expect("name=value");
            (
                name.to_string(),
                value.to_string(),
                parts.map(str::to_string).collect(),
            )
        })
        .collect()
}

fn cookie<'a>(
    cookies: &'a [(String, String, Vec<String>)],
    name: &str,
) -> &'a (String, String, Vec<String>) {
    cookies
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
}

fn has_attr(attrs: &[String], want: &str) -> bool {
    attrs.iter().any(|a| a.eq_ignore_ascii_case(want))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_need_the_csrf_header_for_writes() {
    let srv = TestServer::start().await;
    let t = srv.signup("Cookie Co").await;
    srv.chart(&t).await;

    let login = srv.login(&t.email, PASSPHRASE).await;
    let body = login.ok(200);
    let cookies = set_cookies(&login);
    let (_, session, session_attrs) = cookie(&cookies, "__Host-wb_session");
    let (_, csrf, csrf_attrs) = cookie(&cookies, "__Host-wb_csrf");
    assert_eq!(session.as_str(), body["token"].as_str().expect("token"));
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(
            has_attr(session_attrs, attr),
            "__Host-wb_session lacks {attr}: {session_attrs:?}"
        );
    }
    let max_age: i64 = session_attrs
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .expect("number");
    assert!(
        max_age > 11 * 3600 && max_age <= 12 * 3600,
        "Max-Age {max_age}"
    );
    for attr in ["Secure", "SameSite=Strict"] {
        assert!(
            has_attr(csrf_attrs, attr),
            "__Host-wb_csrf lacks {attr}: {csrf_attrs:?}"
        );
    }
    assert!(
        !has_attr(csrf_attrs, "HttpOnly"),
        "the page must be able to read wb_csrf"
    );
    assert!(!csrf.is_empty() && csrf != session);
    // Signup sets the cookies too.
    let signup = srv
        .post_anon(
            "/api/v1/signup",
            json!({"company_name": "Other Co", "email": fresh_email("cookie"), "passphrase": PASSPHRASE}),
        )
        .await;
    let signup_cookies = set_cookies(&signup);
    assert!(has_attr(
        &cookie(&signup_cookies, "__Host-wb_session").2,
        "HttpOnly"
    ));
    cookie(&signup_cookies, "__Host-wb_csrf");

    let only_session = format!("__Host-wb_session={session}");
    let both = format!("__Host-wb_session={session}; __Host-wb_csrf={csrf}");
    let entries = t.path("/entries");
    let new_entry = entry(
        "2026-01-05",
        "Via cookie",
        &[("1000", "5.00", "USD"), ("4000", "-5.00", "USD")],
    );

    // GET with the cookie alone works.
    srv.send(
        Method::GET,
        &entries,
        None,
        Body::None,
        &[("cookie", &only_session)],
    )
    .await
    .ok(200);
    srv.send(
        Method::GET,
        &t.path(""),
        None,
        Body::None,
        &[("cookie", &only_session)],
    )
    .await
    .ok(200);
    // A write without the header is refused.
    srv.send(
        Method::POST,
        &entries,
        None,
        Body::Json(new_entry.clone()),
        &[("cookie", &only_session)],
    )
    .await
    .problem(403, "forbidden");
    srv.send(
        Method::POST,
        &entries,
        None,
        Body::Json(new_entry.clone()),
        &[("cookie", &both)],
    )
    .await
    .problem(403, "forbidden");
    // A header that does not match the cookie is refused.
    srv.send(
        Method::POST,
        &entries,
        None,
        Body::Json(new_entry.clone()),
        &[("cookie", &both), ("x-csrf-token", "csrf_forged")],
    )
    .await
    .problem(403, "forbidden");
    // A header with no cookie to match is refused.
    srv.send(
        Method::POST,
        &entries,
        None,
        Body::Json(new_entry.clone()),
        &[("cookie", &only_session), ("x-csrf-token", csrf)],
    )
    .await
    .problem(403, "forbidden");
    // DELETE is a write too.
    srv.send(
        Method::DELETE,
        &t.path("/api-keys/whatever"),
        None,
        Body::None,
        &[("cookie", &only_session)],
    )
    .await
    .problem(403, "forbidden");
    assert!(
        srv.all_entries(&t, &t.token).await.is_empty(),
        "refused writes posted nothing"
    );

    // With the matching header the write succeeds.
    let posted = srv
        .send(
            Method::POST,
            &entries,
            None,
            Body::Json(new_entry),
            &[("cookie", &both), ("x-csrf-token", csrf)],
        )
        .await
        .ok(201);
    assert_eq!(posted["description"], "Via cookie");
    assert_eq!(srv.all_entries(&t, &t.token).await.len(), 1);

    // Logout through the cookie clears both cookies and ends the session.
    let out = srv
        .send(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            Body::None,
            &[("cookie", &both), ("x-csrf-token", csrf)],
        )
        .await;
    assert_eq!(out.status.as_u16(), 204, "{}", out.text);
    let cleared = set_cookies(&out);
    for name in ["__Host-wb_session", "__Host-wb_csrf"] {
        let (_, value, attrs) = cookie(&cleared, name);
        assert!(
            value.is_empty() && has_attr(attrs, "Max-Age=0"),
            "{name} not cleared: {attrs:?}"
        );
    }
    srv.send(
        Method::GET,
        &entries,
        None,
        Body::None,
        &[("cookie", &only_session)],
    )
    .await
    .problem(401, "unauthorized");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_ops_endpoints_openapi_and_fallbacks() {
    let srv = TestServer::start().await;
    let t = srv.signup("Headers Co").await;

    let ok = srv.get(&t.path(""), &t.token).await;
    ok.ok(200);
    let denied = srv.get_anon(&t.path("")).await;
    denied.problem(401, "unauthorized");
    let missing = srv.get_anon("/no/such/path").await;
    missing.problem(404, "not-found");
    for resp in [&ok, &denied, &missing] {
        let hsts = resp.header("strict-transport-security").expect("HSTS");
        assert!(hsts.contains("max-age="), "{hsts}");
        let max_age: u64 = hsts
            .split(';')
            .find_map(|p| p.trim().strip_prefix("max-age="))
            .and_then(|v| v.parse().ok())
            .expect("max-age value");
        assert!(max_age >= 31_536_000, "HSTS for at least a year");
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(resp.header("x-frame-options"), Some("DENY"));
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        assert!(
            resp.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "request id"
        );
    }
    // The server names each request itself: a client's id is not echoed.
    let named = srv
        .send(
            Method::GET,
            "/healthz",
            None,
            Body::None,
            &[("x-request-id", "trace-me-123")],
        )
        .await;
    let id = named.header("x-request-id").expect("request id");
    assert_ne!(id, "trace-me-123");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    assert_eq!(srv.get_anon("/healthz").await.ok(200)["status"], "ok");
    assert_eq!(srv.get_anon("/readyz").await.ok(200)["status"], "ready");

    let doc = srv.get_anon("/api/v1/openapi.json").await;
    assert!(doc
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    let doc: Value = doc.ok(200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document"
    );
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/companies/{company}",
        "/api/v1/companies/{company}/accounts",
        "/api/v1/companies/{company}/entries",
        "/api/v1/companies/{company}/entries/{entry}",
        "/api/v1/companies/{company}/entries/{entry}/reverse",
        "/api/v1/companies/{company}/reports/trial-balance",
        "/api/v1/companies/{company}/reports/balance-sheet",
        "/api/v1/companies/{company}/reports/income-statement",
        "/api/v1/companies/{company}/api-keys",
        "/api/v1/companies/{company}/api-keys/{key}",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "OpenAPI lacks {path}");
    }
    assert!(paths["/api/v1/companies/{company}/entries"]["post"].is_object());
    assert!(paths["/api/v1/companies/{company}/entries"]["get"].is_object());

    srv.get(&t.path("/nothing-here"), &t.token)
        .await
        .problem(404, "not-found");
    srv.get_anon("/api/v2/signup")
        .await
        .problem(404, "not-found");
    srv.get_anon("/api/v1/signup")
        .await
        .problem(405, "method-not-allowed");
    srv.send(Method::DELETE, "/api/v1/auth/login", None, Body::None, &[])
        .await
        .problem(405, "method-not-allowed");
    srv.send(
        Method::PUT,
        &t.path("/entries"),
        Some(&t.token),
        Body::Json(json!({})),
        &[],
    )
    .await
    .problem(405, "method-not-allowed");
    srv.send(Method::DELETE, &t.path(""), Some(&t.token), Body::None, &[])
        .await
        .problem(405, "method-not-allowed");
    // The company still exists after all that.
    srv.get(&t.path(""), &t.token).await.ok(200);
    srv.shutdown().await;
}

/// Every unsafe route the API documents, called with a valid session cookie
/// and no CSRF header: refused before it does anything. The routes come from
/// the OpenAPI document (which the door test checks against the router), so
/// a new route cannot be forgotten here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unsafe_cookie_request_needs_the_csrf_header() {
    let srv = TestServer::start().await;
    let t = srv.signup("Csrf Everywhere").await;
    srv.chart(&t).await;
    let doc = srv.get_anon("/api/v1/openapi.json").await.ok(200);
    // Signing up and logging in take no session: nothing for a forged
    // request to ride on.
    let sessionless = [
        "/api/v1/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/passphrase-reset",
        "/api/v1/auth/passphrase-reset/complete",
        "/api/v1/staff/auth/login",
    ];
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().expect("paths") {
        if sessionless.contains(&template.as_str()) {
            continue;
        }
        let path = template
            .replace("{company}", &t.id)
            .replace("{token}", "wbi_x")
            .replace("{user}", &t.user_id)
            .replace(['{', '}'], "");
        for method in item.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
                continue;
            }
            let cookie = format!("__Host-wb_session={}; __Host-wb_csrf=expected", t.token);
            let resp = srv
                .send_cookie(method.clone(), &path, &cookie, json!({}))
                .await;
            if template.starts_with("/api/v1/staff/") {
                // The staff realm takes bearer staff tokens only: a cookie
                // (a customer's, here) authenticates nothing there.
                resp.problem(401, "unauthorized");
                continue;
            }
            let body = resp.problem(403, "forbidden");
            assert!(
                body["detail"].as_str().unwrap().contains("X-CSRF-Token"),
                "{method} {template}: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} unsafe routes?");
    // Nothing happened: the company still has no invitations, entries or keys.
    assert_eq!(
        srv.get(&t.path("/invitations"), &t.token).await.ok(200),
        json!([])
    );
    assert_eq!(
        srv.get(&t.path("/api-keys"), &t.token).await.ok(200),
        json!([])
    );
}
