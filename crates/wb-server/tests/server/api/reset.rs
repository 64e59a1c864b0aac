//! Passphrase reset by email, on both backends: the same answer for known
//! and unknown emails, a single-use link that expires in an hour, every
//! session ended, the breached list and strength rules applied, budgets.

use serde_json::json;

use super::harness::{fresh_email, TestServer, PASSPHRASE};

const NEW_PASSPHRASE: &str = "copper walrus 81 meadow tangerine quill";

/// The reset token in a delivered message.
fn token_in(message: &str) -> String {
    let start = message.find("wbr_").expect("a reset token in the message");
    message[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_link_works_once_ends_sessions_and_tells_nobody_who_exists() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Forgetful Ltd").await;
    let other_session = srv.login(&t.email, PASSPHRASE).await.ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();

    let known = srv
        .post_anon("/api/v1/auth/passphrase-reset", json!({"email": t.email}))
        .await;
    let unknown = srv
        .post_anon(
            "/api/v1/auth/passphrase-reset",
            json!({"email": fresh_email("nobody")}),
        )
        .await;
    assert_eq!(known.status, 202);
    assert_eq!(unknown.status, 202);
    assert_eq!(known.text, unknown.text, "no user enumeration");
    srv.post_anon(
        "/api/v1/auth/passphrase-reset",
        json!({"email": "not an email"}),
    )
    .await
    .problem(422, "invalid-email");

    let message = srv.delivered(&t.email, "wbr_").await;
    assert!(message.contains("/reset-passphrase#wbr_"), "{message}");
    let token = token_in(&message);
    assert_eq!(token.len(), 4 + 43, "{token}");

    // Breached or weak: refused with the rule, the link still works.
    let refused = srv
        .post_anon(
            "/api/v1/auth/passphrase-reset/complete",
            json!({"token": token, "passphrase": "00MeinStar00"}),
        )
        .await
        .problem(422, "weak-passphrase");
    assert!(refused["detail"].as_str().unwrap().contains("breached"));
    assert!(!refused.to_string().to_lowercase().contains("meinstar"));
    let done = srv
        .post_anon(
            "/api/v1/auth/passphrase-reset/complete",
            json!({"token": token, "passphrase": NEW_PASSPHRASE}),
        )
        .await
        .ok(200);
    assert_eq!(done["sessions_ended"], 2);
    for session in [&t.token, &other_session] {
        srv.get("/api/v1/me", session)
            .await
            .problem(401, "unauthorized");
    }
    srv.login(&t.email, PASSPHRASE)
        .await
        .problem(401, "unauthorized");
    let fresh = srv.login(&t.email, NEW_PASSPHRASE).await.ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Once only.
    srv.post_anon(
        "/api/v1/auth/passphrase-reset/complete",
        json!({"token": token, "passphrase": "another 88 pleasant vortex fjord"}),
    )
    .await
    .problem(404, "reset-invalid");
    srv.post_anon(
        "/api/v1/auth/passphrase-reset/complete",
        json!({"token": "wbr_unknown", "passphrase": NEW_PASSPHRASE}),
    )
    .await
    .problem(404, "reset-invalid");
    // The owner is told, and the company's audit view shows the reset.
    srv.delivered(&t.email, "passphrase was reset").await;
    let mut audit = String::new();
    for _ in 0..100 {
        audit = srv
            .get(
                &t.path("/audit?limit=1000&action=auth.passphrase_reset"),
                &fresh,
            )
            .await
            .ok(200)
            .to_string();
        if audit.contains("every session ended") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(audit.contains("reset link emailed"), "{audit}");
    assert!(audit.contains("every session ended"), "{audit}");
    assert!(!audit.contains(&token), "never the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_links_expire_in_an_hour_and_a_newer_one_replaces_them() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Slow Readers Ltd").await;
    let clock = srv.clock.clone().unwrap();
    srv.post_anon("/api/v1/auth/passphrase-reset", json!({"email": t.email}))
        .await
        .ok(202);
    let first = token_in(&srv.delivered(&t.email, "wbr_").await);
    srv.post_anon("/api/v1/auth/passphrase-reset", json!({"email": t.email}))
        .await
        .ok(202);
    let mut second = first.clone();
    for _ in 0..100 {
        let outbox = srv.data_dir.join("outbox");
        let found = std::fs::read_dir(&outbox)
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .filter(|m| m.contains("wbr_"))
            .map(|m| token_in(&m.replace("=\r\n", "").replace("=\n", "")))
            .find(|tk| *tk != first);
        if let Some(found) = found {
            second = found;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_ne!(second, first, "a second link was sent");
    srv.post_anon(
        "/api/v1/auth/passphrase-reset/complete",
        json!({"token": first, "passphrase": NEW_PASSPHRASE}),
    )
    .await
    .problem(404, "reset-invalid");
    clock.advance(time::Duration::minutes(61));
    srv.post_anon(
        "/api/v1/auth/passphrase-reset/complete",
        json!({"token": second, "passphrase": NEW_PASSPHRASE}),
    )
    .await
    .problem(404, "reset-invalid");
    srv.login(&t.email, PASSPHRASE).await.ok(200);

    // Three asks an hour per email: the fourth is refused (and a victim's
    // mailbox cannot be flooded).
    for _ in 0..3 {
        srv.post_anon("/api/v1/auth/passphrase-reset", json!({"email": t.email}))
            .await
            .ok(202);
    }
    let refused = srv
        .post_anon("/api/v1/auth/passphrase-reset", json!({"email": t.email}))
        .await;
    refused.problem(429, "too-many-requests");
    assert!(refused.header("retry-after").is_some());
}
