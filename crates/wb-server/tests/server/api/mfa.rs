//! Second factors over HTTPS, on both backends, with the server's clock
//! moved by hand: authenticator enrolment, the two-step login, codes used
//! once and within one step of skew, recovery codes, removal, and the
//! company policy that requires a second factor.

use reqwest::Method;
use serde_json::{json, Value};
use wb_crypto::TotpSecret;
use wb_server::clock::Clock;

use super::harness::{fresh_email, Body, Resp, Tenant, TestServer, PASSPHRASE};

/// The server's time, in Unix seconds.
fn unix_now(srv: &TestServer) -> u64 {
    let clock = srv.clock.as_ref().expect("manual clock");
    u64::try_from(clock.now().unix_timestamp()).unwrap()
}

/// The code of `secret` at the server's current time.
pub(super) fn code(srv: &TestServer, secret: &TotpSecret) -> String {
    secret.code_at(unix_now(srv)).unwrap().expose().to_string()
}

/// Moves the server's clock to the start of the next 30 s step.
fn next_step(srv: &TestServer) {
    let now = unix_now(srv);
    let clock = srv.clock.as_ref().expect("manual clock");
    clock.advance(time::Duration::seconds(
        i64::try_from(30 - now % 30).unwrap(),
    ));
}

/// The company's audit view once it shows every one of `needles` (events
/// reach it through the central collection, a moment after they happen).
async fn audit_showing(srv: &TestServer, t: &Tenant, needles: &[&str]) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = srv
            .get(&t.path("/audit?limit=1000"), &t.token)
            .await
            .ok(200)
            .to_string();
        if needles.iter().all(|n| text.contains(n)) {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the audit view never showed all of {needles:?}: {text}");
}

async fn login(srv: &TestServer, body: Value) -> Resp {
    srv.send(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Body::Json(body),
        &[],
    )
    .await
}

/// Enrols and confirms an authenticator for the session `token`; answers
/// its secret and the recovery codes.
pub(super) async fn enrol(srv: &TestServer, token: &str) -> (TotpSecret, Vec<String>) {
    let started = srv
        .post(
            "/api/v1/me/mfa/totp",
            token,
            json!({"passphrase": PASSPHRASE}),
        )
        .await
        .ok(201);
    let secret = TotpSecret::from_base32(started["secret"].as_str().unwrap()).unwrap();
    let confirmed = srv
        .post(
            "/api/v1/me/mfa/totp/confirm",
            token,
            json!({"otp": code(srv, &secret)}),
        )
        .await
        .ok(200);
    let codes = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    next_step(srv);
    (secret, codes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticator_is_enrolled_then_asked_for_at_every_login() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Factors Ltd").await;
    let status = srv.get("/api/v1/me/mfa", &t.token).await.ok(200);
    assert_eq!(status["totp"], "none");

    // Starting needs the passphrase again.
    srv.post(
        "/api/v1/me/mfa/totp",
        &t.token,
        json!({"passphrase": "not the passphrase at all"}),
    )
    .await
    .problem(403, "wrong-passphrase");
    let started = srv
        .post(
            "/api/v1/me/mfa/totp",
            &t.token,
            json!({"passphrase": PASSPHRASE}),
        )
        .await
        .ok(201);
    let uri = started["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Work-books:"), "{uri}");
    assert!(uri.contains("issuer=Work-books"));
    assert!(uri.contains(&format!("secret={}", started["secret"].as_str().unwrap())));
    let svg = started["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    let secret = TotpSecret::from_base32(started["secret"].as_str().unwrap()).unwrap();
    assert_eq!(
        srv.get("/api/v1/me/mfa", &t.token).await.ok(200)["totp"],
        "pending"
    );
    // Until it is confirmed, logins need no second factor.
    let plain = login(&srv, json!({"email": t.email, "passphrase": PASSPHRASE}))
        .await
        .ok(200);
    assert!(plain["token"].is_string());

    // A wrong first code confirms nothing.
    srv.post(
        "/api/v1/me/mfa/totp/confirm",
        &t.token,
        json!({"otp": "000000"}),
    )
    .await
    .problem(401, "mfa-invalid");
    let first = code(&srv, &secret);
    let confirmed = srv
        .post(
            "/api/v1/me/mfa/totp/confirm",
            &t.token,
            json!({"otp": first}),
        )
        .await
        .ok(200);
    let codes: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    let distinct: std::collections::BTreeSet<&String> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    let status = srv.get("/api/v1/me/mfa", &t.token).await.ok(200);
    assert_eq!(status["totp"], "enabled");
    assert_eq!(status["recovery_codes_left"], 10);
    assert!(
        !status
            .to_string()
            .contains(started["secret"].as_str().unwrap()),
        "the secret never leaves the server again"
    );

    // Now a login answers a challenge, without a session.
    let first_step = login(&srv, json!({"email": t.email, "passphrase": PASSPHRASE})).await;
    assert!(first_step.header("set-cookie").is_none());
    let prompt = first_step.ok(200);
    assert_eq!(prompt["mfa_required"], true);
    assert!(prompt.get("token").is_none(), "{prompt}");
    let methods = prompt["methods"].to_string();
    assert!(
        methods.contains("totp") && methods.contains("recovery_code"),
        "{methods}"
    );
    let challenge = prompt["challenge"].as_str().unwrap().to_string();
    // The confirming code was used: it does not log in.
    login(&srv, json!({"challenge": challenge, "otp": first}))
        .await
        .problem(401, "mfa-invalid");
    next_step(&srv);
    let now_code = code(&srv, &secret);
    let session = login(&srv, json!({"challenge": challenge, "otp": now_code}))
        .await
        .ok(200);
    let token = session["token"].as_str().unwrap().to_string();
    srv.get("/api/v1/me", &token).await.ok(200);
    // The challenge is single-use, and so is the code.
    login(&srv, json!({"challenge": challenge, "otp": now_code}))
        .await
        .problem(401, "mfa-challenge-invalid");
    login(
        &srv,
        json!({"email": t.email, "passphrase": PASSPHRASE, "otp": now_code}),
    )
    .await
    .problem(401, "mfa-invalid");

    // One step of skew either way, not two; the SPEC's one-request shape works.
    next_step(&srv);
    next_step(&srv);
    let clock = srv.clock.as_ref().unwrap();
    clock.advance(time::Duration::seconds(-30));
    let previous = code(&srv, &secret);
    clock.advance(time::Duration::seconds(30));
    let one_request = login(
        &srv,
        json!({"email": t.email, "passphrase": PASSPHRASE, "otp": previous}),
    )
    .await
    .ok(200);
    assert!(one_request["token"].is_string());
    // Two steps ahead of the server (never used): refused.
    next_step(&srv);
    clock.advance(time::Duration::seconds(60));
    let too_far = code(&srv, &secret);
    clock.advance(time::Duration::seconds(-60));
    login(
        &srv,
        json!({"email": t.email, "passphrase": PASSPHRASE, "otp": too_far}),
    )
    .await
    .problem(401, "mfa-invalid");

    // A recovery code logs in once, however it is typed.
    let typed = codes[0].replace('-', " ").to_uppercase();
    let with_recovery = login(
        &srv,
        json!({"email": t.email, "passphrase": PASSPHRASE, "otp": typed}),
    )
    .await
    .ok(200);
    assert!(with_recovery["token"].is_string());
    login(
        &srv,
        json!({"email": t.email, "passphrase": PASSPHRASE, "otp": codes[0]}),
    )
    .await
    .problem(401, "mfa-invalid");
    assert_eq!(
        srv.get("/api/v1/me/mfa", &t.token).await.ok(200)["recovery_codes_left"],
        9
    );

    // The trail: enrolment, logins with their factor, the failures. The
    // company's audit view shows its member's.
    let audit = audit_showing(
        &srv,
        &t,
        &[
            "auth.mfa_enrol",
            "passphrase+totp",
            "passphrase+recovery_code",
            "wrong second factor",
        ],
    )
    .await;
    for secret_text in [started["secret"].as_str().unwrap(), &codes[1], &now_code] {
        assert!(!audit.contains(secret_text), "no secret in the trail");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_is_used_up_by_wrong_codes_and_expires() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Challenged Ltd").await;
    let (secret, _) = enrol(&srv, &t.token).await;
    let challenge = |prompt: Value| prompt["challenge"].as_str().unwrap().to_string();
    let first = challenge(
        login(&srv, json!({"email": t.email, "passphrase": PASSPHRASE}))
            .await
            .ok(200),
    );
    for _ in 0..5 {
        login(&srv, json!({"challenge": first, "otp": "123456"}))
            .await
            .problem(401, "mfa-invalid");
    }
    // Five wrong codes use the challenge up: the right code is too late.
    login(
        &srv,
        json!({"challenge": first, "otp": code(&srv, &secret)}),
    )
    .await
    .problem(401, "mfa-challenge-invalid");
    // They were failed logins of the account, too.
    login(&srv, json!({"email": t.email, "passphrase": PASSPHRASE}))
        .await
        .problem(429, "too-many-requests");
    let clock = srv.clock.as_ref().unwrap();
    clock.advance(time::Duration::minutes(16));

    let second = challenge(
        login(&srv, json!({"email": t.email, "passphrase": PASSPHRASE}))
            .await
            .ok(200),
    );
    clock.advance(time::Duration::minutes(5));
    login(
        &srv,
        json!({"challenge": second, "otp": code(&srv, &secret)}),
    )
    .await
    .problem(401, "mfa-challenge-invalid");
    // Mixed shapes are refused plainly.
    login(
        &srv,
        json!({"challenge": second, "email": t.email, "passphrase": PASSPHRASE}),
    )
    .await
    .problem(422, "invalid-login");
    login(&srv, json!({"challenge": second}))
        .await
        .problem(422, "invalid-login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_and_new_recovery_codes_need_the_passphrase_and_a_code() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Removal Ltd").await;
    let (secret, codes) = enrol(&srv, &t.token).await;
    srv.post(
        "/api/v1/me/mfa/totp",
        &t.token,
        json!({"passphrase": PASSPHRASE}),
    )
    .await
    .problem(409, "mfa-already-enrolled");
    srv.post(
        "/api/v1/me/mfa/totp/remove",
        &t.token,
        json!({"passphrase": PASSPHRASE}),
    )
    .await
    .problem(422, "otp-required");
    srv.post(
        "/api/v1/me/mfa/totp/remove",
        &t.token,
        json!({"passphrase": PASSPHRASE, "otp": "000000"}),
    )
    .await
    .problem(401, "mfa-invalid");
    srv.post(
        "/api/v1/me/mfa/totp/remove",
        &t.token,
        json!({"passphrase": "wrong wrong wrong wrong", "otp": code(&srv, &secret)}),
    )
    .await
    .problem(403, "wrong-passphrase");

    let renewed = srv
        .post(
            "/api/v1/me/mfa/recovery-codes",
            &t.token,
            json!({"passphrase": PASSPHRASE, "otp": code(&srv, &secret)}),
        )
        .await
        .ok(200);
    let new_codes = renewed["recovery_codes"].as_array().unwrap();
    assert_eq!(new_codes.len(), 10);
    assert!(!renewed.to_string().contains(&codes[0]));
    // The old set no longer works; a new code removes the authenticator.
    login(
        &srv,
        json!({"email": t.email, "passphrase": PASSPHRASE, "otp": codes[1]}),
    )
    .await
    .problem(401, "mfa-invalid");
    srv.post(
        "/api/v1/me/mfa/totp/remove",
        &t.token,
        json!({"passphrase": PASSPHRASE, "otp": new_codes[0]}),
    )
    .await
    .no_content();
    let status = srv.get("/api/v1/me/mfa", &t.token).await.ok(200);
    assert_eq!(status["totp"], "none");
    assert_eq!(status["recovery_codes_left"], 0);
    let plain = login(&srv, json!({"email": t.email, "passphrase": PASSPHRASE}))
        .await
        .ok(200);
    assert!(plain["token"].is_string());

    let audit = audit_showing(
        &srv,
        &t,
        &[
            "authenticator and recovery codes removed",
            "auth.recovery_codes",
        ],
    )
    .await;
    assert!(!audit.contains(new_codes[1].as_str().unwrap()));
}

/// A member invited into `t` with a fresh account; answers their session.
pub(super) async fn member_of(srv: &TestServer, t: &Tenant, role: &str) -> String {
    let email = fresh_email("member");
    let invited = srv
        .post(
            &t.path("/invitations"),
            &t.token,
            json!({"email": email, "role": role}),
        )
        .await
        .ok(201);
    let accepted = srv
        .post_anon(
            &format!(
                "/api/v1/invitations/{}/accept",
                invited["token"].as_str().unwrap()
            ),
            json!({"passphrase": PASSPHRASE}),
        )
        .await
        .ok(200);
    accepted["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_requiring_mfa_lets_members_without_one_reach_only_enrolment() {
    let srv = TestServer::start_manual().await;
    let t = srv.signup("Strict Ltd").await;
    let member = member_of(&srv, &t, "accountant").await;
    let key = srv
        .post(
            &t.path("/api-keys"),
            &t.token,
            json!({"name": "robot", "role": "viewer"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();

    // The owner cannot require what their own session lacks.
    srv.send(
        Method::PUT,
        &t.path("/security-policy"),
        Some(&t.token),
        Body::Json(json!({"mfa_required": true})),
        &[],
    )
    .await
    .problem(409, "mfa-enrol-first");
    // Confirming enrolment in this session counts as proving the factor.
    enrol(&srv, &t.token).await;
    let policy = srv
        .send(
            Method::PUT,
            &t.path("/security-policy"),
            Some(&t.token),
            Body::Json(json!({"mfa_required": true})),
            &[],
        )
        .await
        .ok(200);
    assert_eq!(policy["mfa_required"], true);
    srv.get(&t.path("/accounts"), &t.token).await.ok(200);

    // The member without a factor: refused in the company, clearly, but
    // still signed in and able to enrol.
    let refused = srv
        .get(&t.path("/accounts"), &member)
        .await
        .problem(403, "mfa-required");
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("/api/v1/me/mfa"));
    srv.get("/api/v1/me", &member).await.ok(200);
    srv.get("/api/v1/me/mfa", &member).await.ok(200);
    enrol(&srv, &member).await;
    srv.get(&t.path("/accounts"), &member).await.ok(200);
    // API keys are not sessions: the gate does not apply to them.
    srv.get(&t.path("/accounts"), &key).await.ok(200);
    // The refusal is on record.
    audit_showing(&srv, &t, &["without a second factor"]).await;
}
