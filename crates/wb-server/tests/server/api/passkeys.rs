//! Passkeys over HTTPS, on both backends, with a software authenticator
//! (`webauthn-authenticator-rs`'s `SoftPasskey`) answering real WebAuthn
//! ceremonies that the server verifies with `webauthn-rs`: registration,
//! login with a passkey as second factor, one answer per challenge, a
//! foreign authenticator refused, listing and removal.

use serde_json::{json, Value};
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, Url, WebauthnAuthenticator,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use super::harness::{Resp, TestServer, PASSPHRASE};

/// A server whose public address is a host name (an IP address cannot be
/// a WebAuthn relying party).
async fn server() -> (TestServer, Url) {
    let srv = TestServer::start_configured(|c| {
        c.mail.public_url = Some(format!("https://localhost:{}", c.listen.port()));
    })
    .await;
    let origin = Url::parse(&srv.platform.mail_settings().public_url).unwrap();
    (srv, origin)
}

async fn login(srv: &TestServer, body: Value) -> Resp {
    srv.post_anon("/api/v1/auth/login", body).await
}

/// Registers a passkey held by `key` for the session `token`.
async fn register(
    srv: &TestServer,
    origin: &Url,
    token: &str,
    key: &mut SoftPasskey,
    name: &str,
) -> Value {
    let offer = srv
        .post(
            "/api/v1/me/passkeys",
            token,
            json!({"passphrase": PASSPHRASE, "name": name}),
        )
        .await
        .ok(200);
    let options: CreationChallengeResponse =
        serde_json::from_value(offer["options"].clone()).unwrap();
    let credential = key.do_registration(origin.clone(), options).unwrap();
    srv.post(
        "/api/v1/me/passkeys/finish",
        token,
        json!({"ceremony": offer["ceremony"], "credential": credential}),
    )
    .await
    .ok(201)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_registers_and_logs_in_as_the_second_factor() {
    let (srv, origin) = server().await;
    let t = srv.signup("Passkeys Ltd").await;
    let mut key = SoftPasskey::new(true);

    // The passphrase again, and a name.
    srv.post(
        "/api/v1/me/passkeys",
        &t.token,
        json!({"passphrase": "not the passphrase at all", "name": "laptop"}),
    )
    .await
    .problem(403, "wrong-passphrase");
    srv.post(
        "/api/v1/me/passkeys",
        &t.token,
        json!({"passphrase": PASSPHRASE, "name": ""}),
    )
    .await
    .problem(422, "invalid-passkey");

    let registered = register(&srv, &origin, &t.token, &mut key, "laptop").await;
    assert_eq!(registered["name"], "laptop");
    let list = srv.get("/api/v1/me/passkeys", &t.token).await.ok(200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0]["last_used_at"].is_null());
    // With a factor on the account, a session that never proved one (the
    // signup's) cannot add or remove factors.
    srv.post(
        "/api/v1/me/passkeys",
        &t.token,
        json!({"passphrase": PASSPHRASE, "name": "another"}),
    )
    .await
    .problem(403, "mfa-required");
    assert_eq!(
        srv.get("/api/v1/me/mfa", &t.token).await.ok(200)["passkeys"],
        1
    );

    // A login now asks for it, with options for the authenticator.
    let prompt = login(&srv, json!({"email": t.email, "passphrase": PASSPHRASE}))
        .await
        .ok(200);
    assert_eq!(prompt["mfa_required"], true);
    assert!(prompt["methods"].to_string().contains("passkey"));
    let options: RequestChallengeResponse =
        serde_json::from_value(prompt["passkey"].clone()).unwrap();
    let assertion = key.do_authentication(origin.clone(), options).unwrap();
    let session = login(
        &srv,
        json!({"challenge": prompt["challenge"], "passkey": assertion}),
    )
    .await
    .ok(200);
    let token = session["token"].as_str().unwrap().to_string();
    srv.get("/api/v1/me", &token).await.ok(200);
    // Not twice (the challenge and its ceremony are used).
    login(
        &srv,
        json!({"challenge": prompt["challenge"], "passkey": assertion}),
    )
    .await
    .problem(401, "mfa-challenge-invalid");
    let list = srv.get("/api/v1/me/passkeys", &t.token).await.ok(200);
    assert!(list[0]["last_used_at"].is_string(), "{list}");

    // Another authenticator's answer is refused, and counts as a failure.
    let mut stranger = SoftPasskey::new(true);
    let other = srv.signup("Stranger Ltd").await;
    register(&srv, &origin, &other.token, &mut stranger, "theirs").await;
    let theirs = login(
        &srv,
        json!({"email": other.email, "passphrase": PASSPHRASE}),
    )
    .await
    .ok(200);
    let options: RequestChallengeResponse =
        serde_json::from_value(theirs["passkey"].clone()).unwrap();
    let foreign = stranger.do_authentication(origin.clone(), options).unwrap();
    let prompt = login(&srv, json!({"email": t.email, "passphrase": PASSPHRASE}))
        .await
        .ok(200);
    login(
        &srv,
        json!({"challenge": prompt["challenge"], "passkey": foreign}),
    )
    .await
    .problem(401, "mfa-invalid");
    // That challenge's one passkey try is spent.
    let options: RequestChallengeResponse =
        serde_json::from_value(prompt["passkey"].clone()).unwrap();
    let late = key.do_authentication(origin.clone(), options).unwrap();
    login(
        &srv,
        json!({"challenge": prompt["challenge"], "passkey": late}),
    )
    .await
    .problem(401, "mfa-invalid");
    let prompt = login(&srv, json!({"email": t.email, "passphrase": PASSPHRASE}))
        .await
        .ok(200);
    // Garbage is a plain 422.
    login(
        &srv,
        json!({"challenge": prompt["challenge"], "passkey": {"id": 1}}),
    )
    .await
    .problem(422, "invalid-login");

    // The session the passkey opened passes a company's MFA gate.
    srv.send(
        reqwest::Method::PUT,
        &t.path("/security-policy"),
        Some(&token),
        super::harness::Body::Json(json!({"mfa_required": true})),
        &[],
    )
    .await
    .ok(200);
    srv.get(&t.path("/accounts"), &token).await.ok(200);

    // Removal: the passphrase again; then logins need no second factor.
    let id = registered["id"].as_str().unwrap();
    srv.post(
        &format!("/api/v1/me/passkeys/{id}/remove"),
        &token,
        json!({"passphrase": "wrong wrong wrong wrong"}),
    )
    .await
    .problem(403, "wrong-passphrase");
    srv.post(
        &format!("/api/v1/me/passkeys/{id}/remove"),
        &token,
        json!({"passphrase": PASSPHRASE}),
    )
    .await
    .no_content();
    srv.post(
        &format!("/api/v1/me/passkeys/{id}/remove"),
        &token,
        json!({"passphrase": PASSPHRASE}),
    )
    .await
    .problem(404, "not-found");
    let plain = login(&srv, json!({"email": t.email, "passphrase": PASSPHRASE}))
        .await
        .ok(200);
    assert!(plain["token"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_is_answered_once_by_its_own_account() {
    let (srv, origin) = server().await;
    let t = srv.signup("Ceremonies Ltd").await;
    let other = srv.signup("Other Ceremonies Ltd").await;
    let mut key = SoftPasskey::new(true);
    let offer = srv
        .post(
            "/api/v1/me/passkeys",
            &t.token,
            json!({"passphrase": PASSPHRASE, "name": "phone"}),
        )
        .await
        .ok(200);
    let options: CreationChallengeResponse =
        serde_json::from_value(offer["options"].clone()).unwrap();
    let credential = key.do_registration(origin.clone(), options).unwrap();
    // Another account cannot finish it (and so it is used up).
    srv.post(
        "/api/v1/me/passkeys/finish",
        &other.token,
        json!({"ceremony": offer["ceremony"], "credential": credential}),
    )
    .await
    .problem(404, "ceremony-invalid");
    srv.post(
        "/api/v1/me/passkeys/finish",
        &t.token,
        json!({"ceremony": offer["ceremony"], "credential": credential}),
    )
    .await
    .problem(404, "ceremony-invalid");
    assert_eq!(
        srv.get("/api/v1/me/passkeys", &t.token).await.ok(200),
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_on_a_server_reached_by_ip_address_are_refused_with_the_reason() {
    // No public address: the server's own https://127.0.0.1:PORT, which
    // cannot be a WebAuthn relying party.
    let srv = TestServer::start().await;
    let t = srv.signup("Numeric Host Ltd").await;
    let refused = srv
        .post(
            "/api/v1/me/passkeys",
            &t.token,
            json!({"passphrase": PASSPHRASE, "name": "laptop"}),
        )
        .await
        .problem(409, "passkeys-unavailable");
    assert!(
        refused["detail"].as_str().unwrap().contains("public-url"),
        "{refused}"
    );
}
