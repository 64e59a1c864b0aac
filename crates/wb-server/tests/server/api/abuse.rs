//! Abuse limits over HTTPS, on both backends: request budgets per address
//! (an abusive client gets 429 with Retry-After while another address is
//! served), the smaller budget of the sign-in doors, per-account budgets,
//! trusted proxies for X-Forwarded-For, CORS and the request-head limit.

use std::net::{IpAddr, Ipv4Addr};

use reqwest::Method;
use serde_json::json;
use wb_server::rate_limit::{Budget, RateLimits};

use super::harness::{Body, TestServer, PASSPHRASE};

const ABUSER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const NEIGHBOUR: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

fn small_budgets(config: &mut wb_server::ServerConfig) {
    config.rate_limits = RateLimits {
        per_address: Budget {
            per_minute: 60,
            burst: 30,
        },
        sign_in_per_address: Budget {
            per_minute: 6,
            burst: 5,
        },
        per_principal: Budget {
            per_minute: 60,
            burst: 20,
        },
        // Tested on its own below.
        unauthorized_per_address: Budget {
            per_minute: 100_000,
            burst: 10_000,
        },
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_address_gets_429s_while_others_are_served() {
    let srv = TestServer::start_configured(small_budgets).await;
    let t = srv.signup("Busy Street Ltd").await;
    let mut statuses = Vec::new();
    let mut held = Vec::new();
    for _ in 0..36 {
        let started = std::time::Instant::now();
        let resp = srv
            .send_from(
                ABUSER,
                Method::GET,
                "/api/v1/me",
                Some("wbs_bogus"),
                Body::None,
            )
            .await;
        statuses.push(resp.status.as_u16());
        if resp.status == 429 {
            held.push(started.elapsed());
            let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
            resp.problem(429, "too-many-requests");
        }
    }
    // Thirty refusals spend the address's budget; the 31st blocks it, and
    // from then on each refusal is held until the budget has a request
    // again: about a request a second gets through (the budget's rate).
    assert!(statuses[..31].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[31], 429, "{statuses:?}");
    let refused = statuses[31..].iter().filter(|s| **s == 429).count();
    let answered = statuses[31..].iter().filter(|s| **s == 401).count();
    assert!(answered <= 2 * refused, "{statuses:?}");
    assert!(
        held.iter()
            .all(|h| *h >= std::time::Duration::from_millis(500)),
        "{held:?}"
    );
    // Another address, and the owner's own, are served meanwhile.
    srv.send_from(
        NEIGHBOUR,
        Method::GET,
        "/api/v1/me",
        Some(&t.token),
        Body::None,
    )
    .await
    .ok(200);
    srv.get(&t.path("/accounts"), &t.token).await.ok(200);
    // Health probes are never budgeted.
    for _ in 0..5 {
        let probe = srv
            .send_from(ABUSER, Method::GET, "/healthz", None, Body::None)
            .await;
        assert_eq!(probe.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_forging_tokens_is_refused_while_its_neighbours_work() {
    let srv = TestServer::start_configured(|c| {
        c.rate_limits.unauthorized_per_address = Budget {
            per_minute: 6,
            burst: 10,
        };
    })
    .await;
    let t = srv.signup("Forged Ltd").await;
    let mut statuses = Vec::new();
    for n in 0..15 {
        let resp = srv
            .send_from(
                ABUSER,
                Method::GET,
                "/api/v1/me",
                Some(&format!("wbs_forged{n}")),
                Body::None,
            )
            .await;
        statuses.push(resp.status.as_u16());
    }
    // Ten 401s spend the budget; the 11th 401 blocks the address.
    assert!(statuses[..11].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[11..].iter().all(|s| *s == 429), "{statuses:?}");
    // Blocked, even with a valid token; another address is served.
    let blocked = srv
        .send_from(
            ABUSER,
            Method::GET,
            "/api/v1/me",
            Some(&t.token),
            Body::None,
        )
        .await;
    blocked.problem(429, "too-many-requests");
    assert!(blocked.header("retry-after").is_some());
    srv.send_from(
        NEIGHBOUR,
        Method::GET,
        "/api/v1/me",
        Some(&t.token),
        Body::None,
    )
    .await
    .ok(200);
    // Authenticated requests never spend it: many from the neighbour pass.
    for _ in 0..30 {
        srv.send_from(
            NEIGHBOUR,
            Method::GET,
            "/api/v1/me",
            Some(&t.token),
            Body::None,
        )
        .await
        .ok(200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_doors_have_a_small_budget_spent_before_any_hashing() {
    let srv = TestServer::start_configured(small_budgets).await;
    let t = srv.signup("Guarded Ltd").await;
    let mut statuses = Vec::new();
    for n in 0..8 {
        let resp = srv
            .send_from(
                ABUSER,
                Method::POST,
                "/api/v1/auth/login",
                None,
                Body::Json(json!({"email": format!("spray{n}@example.com"), "passphrase": "x"})),
            )
            .await;
        statuses.push(resp.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    // The rest of the API is still open to that address...
    srv.send_from(
        ABUSER,
        Method::GET,
        "/api/v1/me",
        Some(&t.token),
        Body::None,
    )
    .await
    .ok(200);
    // ...and the sign-in doors to every other address.
    srv.send_from(
        NEIGHBOUR,
        Method::POST,
        "/api/v1/auth/login",
        None,
        Body::Json(json!({"email": t.email, "passphrase": PASSPHRASE})),
    )
    .await
    .ok(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_has_a_budget_across_addresses() {
    let srv = TestServer::start_configured(small_budgets).await;
    let t = srv.signup("Chatty Ltd").await;
    // Spread over two addresses, one account spends one budget (20).
    let mut refused = 0;
    for n in 0..30 {
        let from = if n % 2 == 0 { ABUSER } else { NEIGHBOUR };
        let resp = srv
            .send_from(from, Method::GET, "/api/v1/me", Some(&t.token), Body::None)
            .await;
        if resp.status == 429 {
            refused += 1;
        } else {
            resp.ok(200);
        }
    }
    // The signup's own requests spent one; a little refills meanwhile.
    assert!((8..=11).contains(&refused), "{refused} refused");
    // Another account is unaffected.
    let other = srv.signup("Quiet Ltd").await;
    srv.get("/api/v1/me", &other.token).await.ok(200);
}

async fn session_client(srv: &TestServer, forwarded: &str) -> String {
    let login = srv
        .send_from_with(
            ABUSER,
            Method::POST,
            "/api/v1/auth/login",
            None,
            Body::Json(json!({"email": srv_email(srv).await, "passphrase": PASSPHRASE})),
            &[("x-forwarded-for", forwarded)],
        )
        .await
        .ok(200);
    let token = login["token"].as_str().unwrap();
    let sessions = srv.get("/api/v1/me/sessions", token).await.ok(200);
    sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["client"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The email of the first company's owner (created on first use).
async fn srv_email(srv: &TestServer) -> String {
    static EMAILS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let key = srv.base.clone();
    if let Some((_, email)) = EMAILS.lock().unwrap().iter().find(|(k, _)| *k == key) {
        return email.clone();
    }
    let t = srv.signup("Forwarded Ltd").await;
    EMAILS.lock().unwrap().push((key, t.email.clone()));
    t.email
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let direct = TestServer::start().await;
    assert_eq!(session_client(&direct, "203.0.113.9").await, "127.0.0.2");

    let proxied = TestServer::start_configured(|c| {
        c.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    assert_eq!(
        session_client(&proxied, "198.51.100.1, 203.0.113.9").await,
        "203.0.113.9"
    );
    // Garbage after the proxy: the proxy is the client.
    assert_eq!(
        session_client(&proxied, "not-an-address").await,
        "127.0.0.2"
    );

    // The company allowlist sees the forwarded address.
    let t = proxied.signup("Behind A Proxy Ltd").await;
    proxied
        .send_from_with(
            ABUSER,
            Method::PUT,
            &t.path("/security-policy"),
            Some(&t.token),
            Body::Json(json!({"ip_allowlist": ["203.0.113.0/24"], "confirm_lockout": true})),
            &[("x-forwarded-for", "203.0.113.9")],
        )
        .await
        .ok(200);
    proxied
        .send_from_with(
            ABUSER,
            Method::GET,
            &t.path("/accounts"),
            Some(&t.token),
            Body::None,
            &[("x-forwarded-for", "203.0.113.77")],
        )
        .await
        .ok(200);
    // Not through the proxy, the same header is ignored.
    proxied
        .send_from_with(
            NEIGHBOUR,
            Method::GET,
            &t.path("/accounts"),
            Some(&t.token),
            Body::None,
            &[("x-forwarded-for", "203.0.113.77")],
        )
        .await
        .problem(403, "ip-not-allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_unless_origins_are_named() {
    let preflight = |srv: &TestServer, origin: &'static str| {
        let url = srv.url("/api/v1/me");
        let client = srv.client.clone();
        async move {
            client
                .request(Method::OPTIONS, url)
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization")
                .send()
                .await
                .unwrap()
        }
    };
    let closed = TestServer::start().await;
    let resp = preflight(&closed, "https://books.example.com").await;
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let open = TestServer::start_configured(|c| {
        c.cors_origins = vec!["https://books.example.com".into()];
    })
    .await;
    let resp = preflight(&open, "https://books.example.com").await;
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://books.example.com"
    );
    assert!(resp
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    let resp = preflight(&open, "https://evil.example.net").await;
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // A real request from the named origin carries the header too.
    let t = open.signup("Cross Origin Ltd").await;
    let resp = open
        .send(
            Method::GET,
            "/api/v1/me",
            Some(&t.token),
            Body::None,
            &[("origin", "https://books.example.com")],
        )
        .await;
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://books.example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_is_refused() {
    let srv = TestServer::start().await;
    let t = srv.signup("Big Headers Ltd").await;
    let huge = "x".repeat(40 * 1024);
    let result = srv
        .client
        .get(srv.url("/api/v1/me"))
        .bearer_auth(&t.token)
        .header("x-padding", huge)
        .send()
        .await;
    match result {
        Ok(resp) => {
            assert_eq!(resp.status(), 431);
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["type"], "urn:workbooks:problem:headers-too-large");
        }
        // hyper may also close the connection without an answer.
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    // Just under the limit is served.
    srv.send(
        Method::GET,
        "/api/v1/me",
        Some(&t.token),
        Body::None,
        &[("x-padding", &"x".repeat(20 * 1024))],
    )
    .await
    .ok(200);
    // A normal request on a fresh connection is served.
    srv.get("/api/v1/me", &t.token).await.ok(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let srv = TestServer::start_configured(|c| c.connections.max_connections_per_address = 2).await;
    let t = srv.signup("Crowded Ltd").await;
    let port: u16 = srv.base.rsplit(':').next().unwrap().parse().unwrap();
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut held = Vec::new();
    for _ in 0..2 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::new(ABUSER, 0)).unwrap();
        held.push(socket.connect(server).await.unwrap());
    }
    // Give the server a moment to accept both.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let refused = srv
        .client_from(ABUSER)
        .get(srv.url("/api/v1/me"))
        .bearer_auth(&t.token)
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a third connection is closed: {refused:?}"
    );
    srv.send_from(
        NEIGHBOUR,
        Method::GET,
        "/api/v1/me",
        Some(&t.token),
        Body::None,
    )
    .await
    .ok(200);
    drop(held);
    // Once they close, the address is served again.
    let mut served = false;
    for _ in 0..50 {
        let resp = srv
            .client_from(ABUSER)
            .get(srv.url("/api/v1/me"))
            .bearer_auth(&t.token)
            .send()
            .await;
        if resp.is_ok_and(|r| r.status() == 200) {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(served);
}
