//! Email through a real SMTP server (aiosmtpd on 127.0.0.1): an invitation
//! arrives at the right recipient with a link that works; a mail server that
//! is down delays the message, never the request.

use std::time::Duration;

use serde_json::json;

use super::harness::{fresh_email, TestServer, PASSPHRASE};
use crate::support::smtp::Smtp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_arrives_through_smtp_with_a_working_link() {
    let smtp = Smtp::start().await;
    let url = smtp.url();
    let srv = TestServer::start_configured(move |config| {
        config.mail.smtp_url = Some(wb_crypto::Secret::new(url));
        config.mail.from = "Books <books@example.com>".into();
        config.mail.deliver_every = Duration::from_millis(100);
    })
    .await;
    let t = srv.signup("Mail Ltd").await;
    let email = fresh_email("invitee");
    srv.post(
        &t.path("/invitations"),
        &t.token,
        json!({"email": email, "role": "viewer"}),
    )
    .await
    .ok(201);

    let mut message = None;
    for _ in 0..100 {
        message = smtp
            .received()
            .into_iter()
            .find(|m| m.contains(&format!("To: {email}")));
        if message.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = message
        .expect("the invitation reached the SMTP server")
        .replace("=\r\n", "")
        .replace("=\n", "");
    assert!(
        message.contains("From: Books <books@example.com>"),
        "{message}"
    );
    assert!(
        message.contains("Subject: You are invited to Mail Ltd"),
        "{message}"
    );
    // The link in the message accepts the invitation.
    let token = message
        .split("/accept-invitation#")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a link in the message")
        .to_string();
    let joined = srv
        .post_anon(
            &format!("/api/v1/invitations/{token}/accept"),
            json!({"passphrase": PASSPHRASE}),
        )
        .await
        .ok(200);
    let me = srv
        .get("/api/v1/me", joined["token"].as_str().unwrap())
        .await
        .ok(200);
    assert_eq!(me["user"]["email"], email.as_str());
    assert_eq!(me["companies"][0]["role"], "viewer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_server_that_is_down_delays_the_message_not_the_request() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let srv = TestServer::start_configured(move |config| {
        config.mail.smtp_url = Some(wb_crypto::Secret::new(format!("smtp://127.0.0.1:{port}")));
        config.mail.deliver_every = Duration::from_millis(100);
    })
    .await;
    let t = srv.signup("Down Ltd").await;
    let started = std::time::Instant::now();
    srv.post(
        &t.path("/invitations"),
        &t.token,
        json!({"email": fresh_email("waiting"), "role": "viewer"}),
    )
    .await
    .ok(201);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The deliverer tried, failed, and scheduled a retry with backoff.
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    for _ in 0..100 {
        let queued = srv.platform.control.due_messages(later, 10).await.unwrap();
        if queued.iter().any(|m| m.attempts >= 1) {
            assert!(queued[0].next_attempt_at > time::OffsetDateTime::now_utc());
            let now = srv
                .platform
                .control
                .due_messages(time::OffsetDateTime::now_utc(), 10)
                .await
                .unwrap();
            assert!(now.is_empty(), "not retried before its backoff");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the failed delivery was not recorded for a retry");
}
