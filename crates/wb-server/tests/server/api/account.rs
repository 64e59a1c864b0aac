//! A person's own sessions and passphrase, on both backends.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::harness::{Body, TestServer, PASSPHRASE};

const NEW_PASSPHRASE: &str = "tundra lantern oboe 93 gravel saffron";

async fn login_as(srv: &TestServer, email: &str, agent: &str) -> String {
    srv.send(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Body::Json(json!({"email": email, "passphrase": PASSPHRASE})),
        &[("user-agent", agent)],
    )
    .await
    .ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_see_and_end_their_own_sessions() {
    let srv = TestServer::start().await;
    let t = srv.signup("Sessions Ltd").await;
    let laptop = login_as(&srv, &t.email, "Laptop/1.0").await;
    let phone = login_as(&srv, &t.email, "Phone/\t2.0").await;

    let list = srv.get("/api/v1/me/sessions", &laptop).await.ok(200);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    let current: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["current"] == true)
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "Laptop/1.0");
    assert_eq!(current[0]["client"], "127.0.0.1");
    assert!(
        list.to_string().contains("Phone/2.0\""),
        "control characters dropped: {list}"
    );
    assert!(!list.to_string().contains(&laptop), "never the token");

    // End the phone's session by its id.
    let phone_id = srv.get("/api/v1/me/sessions", &phone).await.ok(200);
    let phone_id = phone_id
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    srv.delete(&format!("/api/v1/me/sessions/{phone_id}"), &laptop)
        .await
        .no_content();
    srv.get("/api/v1/me", &phone)
        .await
        .problem(401, "unauthorized");
    srv.delete(&format!("/api/v1/me/sessions/{phone_id}"), &laptop)
        .await
        .problem(404, "not-found");
    srv.delete("/api/v1/me/sessions/not-an-id%25", &laptop)
        .await
        .problem(404, "not-found");
    // Someone else's session ids mean nothing to me.
    let other = srv.signup("Other Sessions").await;
    let mine = ids(&srv.get("/api/v1/me/sessions", &laptop).await.ok(200));
    for id in &mine {
        srv.delete(&format!("/api/v1/me/sessions/{id}"), &other.token)
            .await
            .problem(404, "not-found");
    }

    // End every other one.
    let ended = srv.delete("/api/v1/me/sessions", &laptop).await.ok(200);
    assert_eq!(ended["sessions_ended"], 1);
    srv.get("/api/v1/me", &t.token)
        .await
        .problem(401, "unauthorized");
    let left = srv.get("/api/v1/me/sessions", &laptop).await.ok(200);
    assert_eq!(left.as_array().unwrap().len(), 1);

    // API keys have no sessions.
    let key = srv
        .post(
            &t.path("/api-keys"),
            &laptop,
            json!({"name": "k", "role": "viewer"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    srv.get("/api/v1/me/sessions", &key)
        .await
        .problem(403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_passphrase_ends_the_other_sessions() {
    let srv = TestServer::start().await;
    let t = srv.signup("Passphrase Ltd").await;
    let other = login_as(&srv, &t.email, "Other/1").await;
    let change = |current: &str, new: &str| json!({"current": current, "new": new});
    srv.post(
        "/api/v1/me/passphrase",
        &t.token,
        change("wrong one entirely 12", NEW_PASSPHRASE),
    )
    .await
    .problem(403, "wrong-passphrase");
    srv.post(
        "/api/v1/me/passphrase",
        &t.token,
        change(PASSPHRASE, "password1"),
    )
    .await
    .problem(422, "weak-passphrase");
    // Nothing changed so far.
    srv.get("/api/v1/me", &other).await.ok(200);
    let done = srv
        .post(
            "/api/v1/me/passphrase",
            &t.token,
            change(PASSPHRASE, NEW_PASSPHRASE),
        )
        .await
        .ok(200);
    assert_eq!(done["sessions_ended"], 1);
    srv.get("/api/v1/me", &other)
        .await
        .problem(401, "unauthorized");
    srv.get("/api/v1/me", &t.token).await.ok(200);
    srv.login(&t.email, PASSPHRASE)
        .await
        .problem(401, "unauthorized");
    srv.login(&t.email, NEW_PASSPHRASE).await.ok(200);

    // The owner's company sees the change and the failures in its audit view.
    let mut seen = Vec::new();
    for _ in 0..100 {
        let page = srv
            .get(
                &t.path("/audit?limit=1000&action=auth.passphrase_change"),
                &t.token,
            )
            .await
            .ok(200);
        seen = page["events"].as_array().unwrap().clone();
        if seen.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outcomes: Vec<&str> = seen
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failure", "failure", "success"], "{seen:?}");
    // And the account's owner is told by email.
    let outbox = srv.data_dir.join("outbox");
    let mut told = false;
    for _ in 0..100 {
        told = std::fs::read_dir(&outbox)
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| {
                std::fs::read_to_string(f.path())
                    .unwrap_or_default()
                    .contains("Subject: Your Work-books passphrase was changed")
            });
        if told {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(told, "no notice in {}", outbox.display());
}
