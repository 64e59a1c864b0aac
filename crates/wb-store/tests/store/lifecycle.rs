//! A company's end in the control store, on both backends: de-provisioning
//! ends every grant and blocks members at once, a cancel brings the
//! company back only before its destruction begins, steps are recorded
//! once and in the order taken, the key is erased, and the finished record
//! (with its certificate) outlives the company.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use wb_core::grants::{Grant, GrantRequest, GrantScope};
use wb_core::lifecycle::{DestructionStep, StepRecord};
use wb_core::{Action, Role};
use wb_store::{
    Actor, AuditEvent, CompanyRecord, CompanyStatus, ControlStore, Deprovisioning, Outcome,
    StoreError, UserRecord,
};

const T0: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

crate::on_both_control_backends!(
    "lifecycle";
    deprovisioning_blocks_members_and_ends_grants_and_cancel_restores,
    destruction_records_each_step_once_and_keeps_the_proof,
    a_recovered_company_gets_its_grace_period_back_only_if_closed,
);

fn event(action: Action) -> AuditEvent {
    AuditEvent {
        at: T0,
        actor: Actor::system("test"),
        company_id: None,
        action,
        target: None,
        outcome: Outcome::Success,
        detail: None,
    }
}

pub(crate) async fn company_with_owner(control: &dyn ControlStore) -> (String, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let company = CompanyRecord {
        id: id.clone(),
        name: "Ending Ltd".into(),
        status: CompanyStatus::Active,
        wrapped_dek: vec![9; 40],
        created_at: T0,
    };
    let owner = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        email: format!("{}@ending.example", uuid::Uuid::new_v4()),
        name: None,
        passphrase_hash: "hash".into(),
        created_at: T0,
        last_login_at: None,
    };
    control
        .signup(&company, &owner, &event(Action::CompanySignup))
        .await
        .unwrap();
    (id, owner.id)
}

fn deprovisioning(company: &str, owner: &str) -> Deprovisioning {
    Deprovisioning {
        company_id: company.into(),
        deprovisioned_at: T0,
        deprovisioned_by: format!("user:{owner}"),
        destroy_after: T0 + Duration::days(30),
        certificate_id: uuid::Uuid::new_v4().to_string(),
        certificate_token_hash: "ab".repeat(32),
        destruction_started_at: None,
        steps: Vec::new(),
        destroyed_at: None,
        certificate: None,
    }
}

fn step(step: DestructionStep, items: u64) -> StepRecord {
    StepRecord {
        step,
        items,
        bytes: items * 100,
        finished_at: "2026-04-01T00:00:00Z".into(),
        names: vec![],
    }
}

async fn deprovisioning_blocks_members_and_ends_grants_and_cancel_restores(
    control: &dyn ControlStore,
) {
    let (c, owner) = company_with_owner(control).await;
    let grant_id = uuid::Uuid::new_v4().to_string();
    let grant = Grant::new(
        grant_id.clone(),
        GrantRequest {
            company_id: c.clone(),
            requested_by: "staff:alice".into(),
            reason: "a ticket".into(),
            scope: GrantScope::BooksRead,
            duration_minutes: 60,
            ticket: None,
            legal_mandate: None,
            starts_at: None,
        },
        T0,
    );
    control
        .create_grant(&grant, &event(Action::GrantRequest))
        .await
        .unwrap();
    assert_eq!(
        control.access_facts(Some(&owner), &c).await.unwrap().0,
        Some(Role::Owner)
    );

    let d = deprovisioning(&c, &owner);
    let ended = control
        .deprovision_company(&d, &event(Action::CompanyDeprovision))
        .await
        .unwrap();
    assert_eq!(ended, vec![grant_id.clone()]);
    assert_eq!(
        control.company(&c).await.unwrap().unwrap().status,
        CompanyStatus::Deprovisioned
    );
    assert_eq!(
        control.access_facts(Some(&owner), &c).await.unwrap().0,
        None
    );
    assert!(control
        .live_grants("staff:alice", &c)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(control.deprovisioning(&c).await.unwrap(), Some(d.clone()));
    assert_eq!(
        control
            .deprovisioning_by_certificate(&d.certificate_id)
            .await
            .unwrap(),
        Some(d.clone())
    );
    // Twice: refused, nothing changed.
    assert!(matches!(
        control
            .deprovision_company(&d, &event(Action::CompanyDeprovision))
            .await,
        Err(StoreError::Conflict(_))
    ));
    // Not due before its time; due after.
    for (days, due) in [(29, false), (30, true)] {
        let found = control
            .due_destructions(T0 + Duration::days(days), 100)
            .await
            .unwrap()
            .into_iter()
            .any(|x| x.company_id == c);
        assert_eq!(found, due, "day {days}");
    }

    control
        .cancel_deprovisioning(&c, &event(Action::CompanyDeprovisionCancel))
        .await
        .unwrap();
    assert_eq!(
        control.company(&c).await.unwrap().unwrap().status,
        CompanyStatus::Active
    );
    assert_eq!(
        control.access_facts(Some(&owner), &c).await.unwrap().0,
        Some(Role::Owner)
    );
    assert_eq!(control.deprovisioning(&c).await.unwrap(), None);
    // A destruction that comes after a cancel cannot claim it.
    assert!(matches!(
        control.begin_destruction(&c, T0).await,
        Err(StoreError::Conflict(_))
    ));
    // The grant stays ended: a cancel does not bring staff access back.
    assert!(control
        .live_grants("staff:alice", &c)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        control
            .cancel_deprovisioning(&c, &event(Action::CompanyDeprovisionCancel))
            .await,
        Err(StoreError::Conflict(_))
    ));
}

async fn destruction_records_each_step_once_and_keeps_the_proof(control: &dyn ControlStore) {
    let (c, owner) = company_with_owner(control).await;
    // A step of a company that is not being destroyed is refused.
    assert!(matches!(
        control
            .record_destruction_step(
                &c,
                &step(DestructionStep::Database, 1),
                &event(Action::CompanyDestroyStep)
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    let d = deprovisioning(&c, &owner);
    control
        .deprovision_company(&d, &event(Action::CompanyDeprovision))
        .await
        .unwrap();
    // Claimed: a cancel is refused from here on, before any step is done.
    control
        .begin_destruction(&c, T0 + Duration::days(30))
        .await
        .unwrap();
    control
        .begin_destruction(&c, T0 + Duration::days(31))
        .await
        .unwrap();
    assert_eq!(
        control
            .deprovisioning(&c)
            .await
            .unwrap()
            .unwrap()
            .destruction_started_at,
        Some(T0 + Duration::days(30)),
        "the first claim is kept"
    );
    assert!(matches!(
        control
            .cancel_deprovisioning(&c, &event(Action::CompanyDeprovisionCancel))
            .await,
        Err(StoreError::Conflict(_))
    ));
    control
        .record_destruction_step(
            &c,
            &step(DestructionStep::Database, 3),
            &event(Action::CompanyDestroyStep),
        )
        .await
        .unwrap();
    // A resumed destruction repeating the step keeps the first record.
    control
        .record_destruction_step(
            &c,
            &step(DestructionStep::Database, 7),
            &event(Action::CompanyDestroyStep),
        )
        .await
        .unwrap();
    let stored = control.deprovisioning(&c).await.unwrap().unwrap();
    assert_eq!(stored.steps, vec![step(DestructionStep::Database, 3)]);
    // Begun: no cancel any more.
    assert!(matches!(
        control
            .cancel_deprovisioning(&c, &event(Action::CompanyDeprovisionCancel))
            .await,
        Err(StoreError::Conflict(_))
    ));

    control
        .shred_company_key(
            &c,
            &step(DestructionStep::Keys, 2),
            &event(Action::CompanyDestroyStep),
        )
        .await
        .unwrap();
    assert!(control
        .company(&c)
        .await
        .unwrap()
        .unwrap()
        .wrapped_dek
        .is_empty());
    let destroyed_at = T0 + Duration::days(31);
    control
        .finish_destruction(
            &c,
            destroyed_at,
            "{\"certificate\":1}",
            &event(Action::CompanyDestroyed),
        )
        .await
        .unwrap();
    let company = control.company(&c).await.unwrap().unwrap();
    assert_eq!(company.status, CompanyStatus::Destroyed);
    assert!(control.members_of(&c).await.unwrap().is_empty());
    assert!(company.name.is_empty() && company.wrapped_dek.is_empty());
    let kept = control.deprovisioning(&c).await.unwrap().unwrap();
    assert_eq!(kept.destroyed_at, Some(destroyed_at));
    assert_eq!(kept.certificate.as_deref(), Some("{\"certificate\":1}"));
    assert_eq!(kept.steps.len(), 2);
    assert!(!control
        .due_destructions(destroyed_at, 100)
        .await
        .unwrap()
        .iter()
        .any(|x| x.company_id == c));
    // Finished once.
    assert!(matches!(
        control
            .finish_destruction(&c, destroyed_at, "{}", &event(Action::CompanyDestroyed))
            .await,
        Err(StoreError::Conflict(_))
    ));
}

async fn a_recovered_company_gets_its_grace_period_back_only_if_closed(control: &dyn ControlStore) {
    let (open, owner) = company_with_owner(control).await;
    let d = deprovisioning(&open, &owner);
    // An active company: refused (DR records it closed first).
    assert!(matches!(
        control
            .restore_deprovisioning(&d, &event(Action::CompanyDeprovision))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let closed = uuid::Uuid::new_v4().to_string();
    let record = CompanyRecord {
        id: closed.clone(),
        name: "Recovered Ltd".into(),
        status: CompanyStatus::Deprovisioned,
        wrapped_dek: vec![3; 40],
        created_at: T0,
    };
    control
        .create_company(&record, &event(Action::CompanyRestore))
        .await
        .unwrap();
    let d = deprovisioning(&closed, &owner);
    control
        .restore_deprovisioning(&d, &event(Action::CompanyDeprovision))
        .await
        .unwrap();
    assert_eq!(
        control.deprovisioning(&closed).await.unwrap(),
        Some(d.clone())
    );
    // Once: a second record is refused.
    assert!(matches!(
        control
            .restore_deprovisioning(&d, &event(Action::CompanyDeprovision))
            .await,
        Err(StoreError::Conflict(_))
    ));
    // And the grace period runs as before: a cancel brings it back.
    control
        .cancel_deprovisioning(&closed, &event(Action::CompanyDeprovisionCancel))
        .await
        .unwrap();
    assert_eq!(
        control.company(&closed).await.unwrap().unwrap().status,
        CompanyStatus::Active
    );
}
