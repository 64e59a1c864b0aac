//! Second factors, login challenges and passphrase resets in the control
//! store, on both backends: each TOTP step, recovery code, challenge and
//! reset is accepted at most once, also when requests race.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use wb_core::Action;
use wb_store::{
    Actor, AuditEvent, ControlStore, MfaChallenge, Outcome, PassphraseReset, SessionRecord,
    StoreError, TotpRecord, UserRecord,
};

const T0: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

crate::on_both_control_backends!(
    "factors";
    totp_enrolment_confirms_once_and_steps_are_used_once,
    recovery_codes_are_single_use_and_replaced_together,
    racing_uses_of_one_step_or_code_let_one_through,
    challenges_expire_count_failures_and_are_taken_once,
    resets_are_single_use_expire_and_end_every_session,
);

fn event(action: Action, at: OffsetDateTime) -> AuditEvent {
    AuditEvent {
        at,
        actor: Actor {
            id: "user:u".into(),
            auth: "session".into(),
            client: None,
            request_id: None,
        },
        company_id: None,
        action,
        target: None,
        outcome: Outcome::Success,
        detail: None,
    }
}

async fn user(control: &dyn ControlStore) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let user = UserRecord {
        id: id.clone(),
        email: format!("{id}@example.com"),
        name: None,
        passphrase_hash: "old-hash".into(),
        created_at: T0,
        last_login_at: None,
    };
    control
        .create_user(&user, &event(Action::UserCreate, T0))
        .await
        .unwrap();
    id
}

fn pending(user_id: &str, secret: &[u8]) -> TotpRecord {
    TotpRecord {
        user_id: user_id.into(),
        sealed_secret: secret.to_vec(),
        created_at: T0,
        confirmed_at: None,
        last_step: 0,
    }
}

fn hashes(prefix: &str) -> Vec<String> {
    (0..10).map(|i| format!("{prefix}{i}")).collect()
}

async fn totp_enrolment_confirms_once_and_steps_are_used_once(control: &dyn ControlStore) {
    let u = user(control).await;
    assert!(control.totp(&u).await.unwrap().is_none());
    let enrol = event(Action::AuthMfaEnrol, T0);
    control
        .begin_totp(&pending(&u, b"first"), &enrol)
        .await
        .unwrap();
    // A pending factor may be replaced (enrolment started again), and a
    // code checked against the replaced one no longer confirms.
    let later = TotpRecord {
        created_at: T0 + Duration::seconds(1),
        ..pending(&u, b"second")
    };
    control.begin_totp(&later, &enrol).await.unwrap();
    assert!(matches!(
        control
            .confirm_totp(&u, T0, 100, &hashes("a"), &enrol)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        !control.use_totp_step(&u, 100).await.unwrap(),
        "not confirmed yet"
    );
    control
        .confirm_totp(&u, T0 + Duration::seconds(1), 100, &hashes("a"), &enrol)
        .await
        .unwrap();
    let stored = control.totp(&u).await.unwrap().unwrap();
    assert_eq!(stored.sealed_secret, b"second");
    assert_eq!(stored.confirmed_at, Some(T0));
    assert_eq!(stored.last_step, 100);
    assert!(matches!(
        control
            .confirm_totp(&u, T0 + Duration::seconds(1), 101, &hashes("b"), &enrol)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        control.begin_totp(&pending(&u, b"third"), &enrol).await,
        Err(StoreError::Conflict(_))
    ));
    // The confirming step cannot be used again, nor an older one.
    assert!(!control.use_totp_step(&u, 100).await.unwrap());
    assert!(!control.use_totp_step(&u, 99).await.unwrap());
    assert!(control.use_totp_step(&u, 101).await.unwrap());
    assert!(!control.use_totp_step(&u, 101).await.unwrap());
    assert_eq!(control.recovery_codes_left(&u).await.unwrap(), 10);
    control
        .remove_totp(&u, &event(Action::AuthMfaRemove, T0))
        .await
        .unwrap();
    assert!(control.totp(&u).await.unwrap().is_none());
    assert_eq!(control.recovery_codes_left(&u).await.unwrap(), 0);
    assert!(matches!(
        control
            .remove_totp(&u, &event(Action::AuthMfaRemove, T0))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn recovery_codes_are_single_use_and_replaced_together(control: &dyn ControlStore) {
    let u = user(control).await;
    let other = user(control).await;
    let enrol = event(Action::AuthMfaEnrol, T0);
    control
        .begin_totp(&pending(&u, b"s"), &enrol)
        .await
        .unwrap();
    control
        .confirm_totp(&u, T0, 1, &hashes("a"), &enrol)
        .await
        .unwrap();
    assert!(!control.use_recovery_code(&other, "a3", T0).await.unwrap());
    assert!(control.use_recovery_code(&u, "a3", T0).await.unwrap());
    assert!(!control.use_recovery_code(&u, "a3", T0).await.unwrap());
    assert_eq!(control.recovery_codes_left(&u).await.unwrap(), 9);
    control
        .replace_recovery_codes(&u, &hashes("b"), T0, &enrol)
        .await
        .unwrap();
    assert_eq!(control.recovery_codes_left(&u).await.unwrap(), 10);
    assert!(
        !control.use_recovery_code(&u, "a4", T0).await.unwrap(),
        "old set gone"
    );
    assert!(control.use_recovery_code(&u, "b4", T0).await.unwrap());
}

async fn racing_uses_of_one_step_or_code_let_one_through(control: &dyn ControlStore) {
    let u = user(control).await;
    let enrol = event(Action::AuthMfaEnrol, T0);
    control
        .begin_totp(&pending(&u, b"s"), &enrol)
        .await
        .unwrap();
    control
        .confirm_totp(&u, T0, 1, &hashes("r"), &enrol)
        .await
        .unwrap();
    let steps = futures_join(8, |_| {
        let u = u.clone();
        async move { control.use_totp_step(&u, 50).await.unwrap() }
    })
    .await;
    assert_eq!(steps.iter().filter(|ok| **ok).count(), 1, "{steps:?}");
    let codes = futures_join(8, |_| {
        let u = u.clone();
        async move { control.use_recovery_code(&u, "r0", T0).await.unwrap() }
    })
    .await;
    assert_eq!(codes.iter().filter(|ok| **ok).count(), 1, "{codes:?}");
}

/// Runs `n` futures at once and collects their outputs.
async fn futures_join<F, Fut, T>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures_util::future::join_all((0..n).map(make)).await
}

async fn challenges_expire_count_failures_and_are_taken_once(control: &dyn ControlStore) {
    let u = user(control).await;
    let challenge = MfaChallenge {
        token_hash: "c1".into(),
        user_id: u.clone(),
        created_at: T0,
        expires_at: T0 + Duration::minutes(5),
        failures: 0,
        client: Some("127.0.0.1".into()),
        user_agent: Some("curl".into()),
    };
    control.create_mfa_challenge(&challenge).await.unwrap();
    assert_eq!(
        control.mfa_challenge("c1", T0, 5).await.unwrap(),
        Some(challenge.clone())
    );
    assert_eq!(
        control
            .mfa_challenge("c1", T0 + Duration::minutes(5), 5)
            .await
            .unwrap(),
        None,
        "expired"
    );
    for _ in 0..4 {
        control.fail_mfa_challenge("c1").await.unwrap();
    }
    assert_eq!(
        control
            .mfa_challenge("c1", T0, 5)
            .await
            .unwrap()
            .unwrap()
            .failures,
        4
    );
    control.fail_mfa_challenge("c1").await.unwrap();
    assert_eq!(
        control.mfa_challenge("c1", T0, 5).await.unwrap(),
        None,
        "used up"
    );
    control
        .create_mfa_challenge(&MfaChallenge {
            token_hash: "c2".into(),
            ..challenge.clone()
        })
        .await
        .unwrap();
    assert!(control.take_mfa_challenge("c2").await.unwrap());
    assert!(!control.take_mfa_challenge("c2").await.unwrap());
    assert_eq!(control.mfa_challenge("c2", T0, 5).await.unwrap(), None);
}

async fn resets_are_single_use_expire_and_end_every_session(control: &dyn ControlStore) {
    let u = user(control).await;
    for token in ["s1", "s2"] {
        control
            .create_session(&SessionRecord {
                token_hash: token.into(),
                user_id: u.clone(),
                created_at: T0,
                expires_at: T0 + Duration::days(1),
                revoked_at: None,
                client: None,
                user_agent: None,
                last_seen_at: None,
                second_factor: Some("totp".into()),
            })
            .await
            .unwrap();
    }
    assert_eq!(
        control
            .session("s1")
            .await
            .unwrap()
            .unwrap()
            .second_factor
            .as_deref(),
        Some("totp")
    );
    let reset = |hash: &str| PassphraseReset {
        token_hash: hash.into(),
        user_id: u.clone(),
        created_at: T0,
        expires_at: T0 + Duration::hours(1),
        used_at: None,
    };
    let ask = event(Action::AuthPassphraseReset, T0);
    control
        .create_passphrase_reset(&reset("r1"), &ask)
        .await
        .unwrap();
    // A newer reset ends the older one.
    control
        .create_passphrase_reset(&reset("r2"), &ask)
        .await
        .unwrap();
    assert!(control
        .passphrase_reset("r1")
        .await
        .unwrap()
        .unwrap()
        .used_at
        .is_some());
    let late = event(Action::AuthPassphraseReset, T0 + Duration::hours(1));
    assert!(matches!(
        control
            .complete_passphrase_reset("r2", "new-hash", &late)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        control
            .complete_passphrase_reset("r1", "new-hash", &ask)
            .await,
        Err(StoreError::NotFound(_))
    ));
    let in_time = event(Action::AuthPassphraseReset, T0 + Duration::minutes(59));
    let mut revoked = control
        .complete_passphrase_reset("r2", "new-hash", &in_time)
        .await
        .unwrap();
    revoked.sort();
    assert_eq!(revoked, ["s1", "s2"]);
    assert_eq!(
        control.user(&u).await.unwrap().unwrap().passphrase_hash,
        "new-hash"
    );
    assert!(control
        .session("s1")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    assert!(matches!(
        control
            .complete_passphrase_reset("r2", "again", &in_time)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        control.user(&u).await.unwrap().unwrap().passphrase_hash,
        "new-hash"
    );
}
