//! Staff accounts, staff sessions and access grants in the control store,
//! on both backends: an email names one staff member, a TOTP step is used
//! once, disabling or a new authenticator ends the sessions, a grant keeps
//! every decision, and two decisions from the same version: one wins.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use wb_core::grants::{Decision, Grant, GrantRequest, GrantScope, GrantState, LegalMandate, Side};
use wb_core::Action;
use wb_store::staff::{StaffRecord, StaffSession};
use wb_store::{
    Actor, AuditEvent, CompanyRecord, CompanyStatus, ControlStore, Outcome, StoreError,
};

const T0: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

crate::on_both_control_backends!(
    "staff";
    an_email_names_one_staff_member_and_roles_change,
    a_staff_totp_step_is_used_once,
    disabling_or_a_new_authenticator_ends_every_session,
    grants_keep_every_decision_and_one_of_two_racing_wins,
);

fn event(action: Action, at: OffsetDateTime) -> AuditEvent {
    AuditEvent {
        at,
        actor: Actor::system("test"),
        company_id: None,
        action,
        target: None,
        outcome: Outcome::Success,
        detail: None,
    }
}

fn staff(email: &str) -> StaffRecord {
    StaffRecord {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.into(),
        passphrase_hash: "hash".into(),
        roles: vec!["support".into(), "security".into()],
        sealed_totp: vec![7; 40],
        totp_last_step: 0,
        created_at: T0,
        disabled_at: None,
    }
}

fn session(staff_id: &str, hash: &str) -> StaffSession {
    StaffSession {
        token_hash: hash.into(),
        staff_id: staff_id.into(),
        created_at: T0,
        last_seen_at: T0,
        expires_at: T0 + Duration::hours(8),
        ended_at: None,
        client: Some("127.0.0.1".into()),
        user_agent: None,
    }
}

async fn an_email_names_one_staff_member_and_roles_change(control: &dyn ControlStore) {
    let email = format!("{}@ops.example", uuid::Uuid::new_v4());
    let s = staff(&email);
    control
        .create_staff(&s, &event(Action::StaffCreate, T0))
        .await
        .unwrap();
    let twin = staff(&email);
    assert!(matches!(
        control
            .create_staff(&twin, &event(Action::StaffCreate, T0))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        control.staff_by_email(&email).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(control.staff(&s.id).await.unwrap(), Some(s.clone()));
    assert!(control.staff(&twin.id).await.unwrap().is_none());
    assert!(control
        .list_staff()
        .await
        .unwrap()
        .iter()
        .any(|x| x.id == s.id));

    control
        .set_staff_roles(
            &s.id,
            &["management".into()],
            &event(Action::StaffRoles, T0),
        )
        .await
        .unwrap();
    assert_eq!(
        control.staff(&s.id).await.unwrap().unwrap().roles,
        ["management"]
    );
    assert!(matches!(
        control
            .set_staff_roles("nobody", &[], &event(Action::StaffRoles, T0))
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Debug never shows the hash or the sealed secret.
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("hash\"") && !shown.contains("[7, 7"),
        "{shown}"
    );
}

async fn a_staff_totp_step_is_used_once(control: &dyn ControlStore) {
    let s = staff(&format!("{}@ops.example", uuid::Uuid::new_v4()));
    control
        .create_staff(&s, &event(Action::StaffCreate, T0))
        .await
        .unwrap();
    assert!(control.use_staff_totp_step(&s.id, 100).await.unwrap());
    assert!(
        !control.use_staff_totp_step(&s.id, 100).await.unwrap(),
        "once"
    );
    assert!(
        !control.use_staff_totp_step(&s.id, 99).await.unwrap(),
        "never an earlier one"
    );
    assert!(control.use_staff_totp_step(&s.id, 101).await.unwrap());
}

async fn disabling_or_a_new_authenticator_ends_every_session(control: &dyn ControlStore) {
    let s = staff(&format!("{}@ops.example", uuid::Uuid::new_v4()));
    control
        .create_staff(&s, &event(Action::StaffCreate, T0))
        .await
        .unwrap();
    let hash = |n: u8| format!("{}{n}", s.id);
    for n in 0..2 {
        control
            .create_staff_session(&session(&s.id, &hash(n)), &event(Action::StaffLogin, T0))
            .await
            .unwrap();
    }
    control
        .touch_staff_session(&hash(0), T0 + Duration::minutes(5))
        .await
        .unwrap();
    control
        .touch_staff_session(&hash(0), T0 + Duration::minutes(1))
        .await
        .unwrap();
    let seen = control.staff_session(&hash(0)).await.unwrap().unwrap();
    assert_eq!(
        seen.last_seen_at,
        T0 + Duration::minutes(5),
        "never moves back"
    );

    let later = T0 + Duration::minutes(10);
    control
        .end_staff_session(&hash(0), &event(Action::StaffLogout, later))
        .await
        .unwrap();
    assert!(matches!(
        control
            .end_staff_session(&hash(0), &event(Action::StaffLogout, later))
            .await,
        Err(StoreError::NotFound(_))
    ));
    let mut ended = control
        .reset_staff_totp(&s.id, &[9; 40], &event(Action::StaffResetMfa, later))
        .await
        .unwrap();
    ended.sort();
    assert_eq!(
        ended,
        [hash(1)],
        "the open session ends; the ended one is not ended again"
    );
    let after = control.staff(&s.id).await.unwrap().unwrap();
    assert_eq!((after.sealed_totp, after.totp_last_step), (vec![9; 40], 0));

    control
        .create_staff_session(&session(&s.id, &hash(2)), &event(Action::StaffLogin, later))
        .await
        .unwrap();
    let ended = control
        .disable_staff(&s.id, &event(Action::StaffDisable, later))
        .await
        .unwrap();
    assert_eq!(ended, [hash(2)]);
    assert_eq!(
        control
            .staff_session(&hash(2))
            .await
            .unwrap()
            .unwrap()
            .ended_at,
        Some(later)
    );
    assert_eq!(
        control.staff(&s.id).await.unwrap().unwrap().disabled_at,
        Some(later)
    );
    assert!(matches!(
        control
            .disable_staff("nobody", &event(Action::StaffDisable, later))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn company(control: &dyn ControlStore) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let record = CompanyRecord {
        id: id.clone(),
        name: "Granted Ltd".into(),
        status: CompanyStatus::Active,
        wrapped_dek: vec![1],
        created_at: T0,
    };
    control
        .create_company(&record, &event(Action::CompanyCreate, T0))
        .await
        .unwrap();
    id
}

fn request(company: &str, by: &str) -> GrantRequest {
    GrantRequest {
        company_id: company.into(),
        requested_by: by.into(),
        reason: "Ticket 42: the customer asked us to check a report".into(),
        scope: GrantScope::BooksRead,
        duration_minutes: 90,
        ticket: Some("T-42".into()),
        legal_mandate: None,
        starts_at: Some(T0 + Duration::minutes(30)),
    }
}

async fn grants_keep_every_decision_and_one_of_two_racing_wins(control: &dyn ControlStore) {
    let c = company(control).await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut g = Grant::new(id.clone(), request(&c, "staff:alice"), T0);
    control
        .create_grant(&g, &event(Action::GrantRequest, T0))
        .await
        .unwrap();
    let stored = control.grant(&id).await.unwrap().unwrap();
    assert_eq!((stored.grant.clone(), stored.version), (g.clone(), 1));

    let at = |m: i64| Decision {
        by: "user:owner".into(),
        at: T0 + Duration::minutes(m),
    };
    g.approve(Side::Company, at(1), None).unwrap();
    control
        .update_grant(&g, 1, &event(Action::GrantApprove, T0))
        .await
        .unwrap();
    // A second node decided from version 1 too: refused, nothing written.
    let mut stale = stored.grant.clone();
    stale
        .deny(
            Side::Management,
            Decision {
                by: "staff:bob".into(),
                at: T0,
            },
        )
        .unwrap();
    assert!(matches!(
        control
            .update_grant(&stale, 1, &event(Action::GrantDeny, T0))
            .await,
        Err(StoreError::Conflict(_))
    ));
    g.approve(
        Side::Management,
        Decision {
            by: "staff:bob".into(),
            at: T0 + Duration::minutes(2),
        },
        None,
    )
    .unwrap();
    control
        .update_grant(&g, 2, &event(Action::GrantApprove, T0))
        .await
        .unwrap();
    let stored = control.grant(&id).await.unwrap().unwrap();
    assert_eq!((stored.grant.clone(), stored.version), (g.clone(), 3));
    assert_eq!(
        stored.grant.state(T0 + Duration::minutes(30)),
        GrantState::Active
    );
    assert_eq!(
        control.live_grants("staff:alice", &c).await.unwrap().len(),
        1
    );

    g.revoke(Side::Company, at(40)).unwrap();
    control
        .update_grant(&g, 3, &event(Action::GrantRevoke, T0))
        .await
        .unwrap();
    assert_eq!(
        control.grant(&id).await.unwrap().unwrap().grant,
        g,
        "every decision kept"
    );
    assert!(control
        .live_grants("staff:alice", &c)
        .await
        .unwrap()
        .is_empty());

    // A mandate with a delayed disclosure, newest first in the lists.
    let mut mandate = request(&c, "staff:carol");
    mandate.starts_at = None;
    mandate.legal_mandate = Some(LegalMandate {
        reference: "Order 7".into(),
        disclose_after: Some(T0 + Duration::days(60)),
    });
    let second = Grant::new(
        uuid::Uuid::new_v4().to_string(),
        mandate,
        T0 + Duration::hours(1),
    );
    control
        .create_grant(&second, &event(Action::GrantRequest, T0))
        .await
        .unwrap();
    let listed = control.company_grants(&c, 10).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|s| s.grant.id.clone())
            .collect::<Vec<_>>(),
        [second.id.clone(), id.clone()]
    );
    assert_eq!(listed[0].grant, second);
    assert_eq!(
        control.grants(Some("staff:carol"), 10).await.unwrap().len(),
        1
    );
    assert!(control.grants(None, 10).await.unwrap().len() >= 2);
    assert_eq!(control.company_grants(&c, 1).await.unwrap().len(), 1);
}
