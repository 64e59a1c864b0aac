//! Company key versions in the control store, on both backends: a rotation
//! keeps the version it replaces (retired, still wrapped), a rotation from a
//! stale version is refused, a retired version is destroyed once (the
//! current one never), master-key rotation sees retired wrappings, and the
//! company's destruction erases every version.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use wb_core::lifecycle::{DestructionStep, StepRecord};
use wb_core::Action;
use wb_store::{
    Actor, AuditEvent, ControlStore, Deprovisioning, Outcome, RetiredKey, SealedColumn, StoreError,
};

const T0: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

crate::on_both_control_backends!(
    "key_versions";
    rotations_keep_each_version_until_destroyed,
    destruction_erases_every_version,
    recovery_records_retired_versions_once,
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

async fn audited(control: &dyn ControlStore, action: Action) -> usize {
    control
        .audit_events(None, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == action.as_str())
        .count()
}

async fn rotations_keep_each_version_until_destroyed(control: &dyn ControlStore) {
    let (company, _) = crate::lifecycle::company_with_owner(control).await;
    let v = control
        .company_key_versions(&company)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.current_version, 1);
    assert!(v.retired.is_empty());
    let first_wrapping = v.current_wrapped.clone();

    let t1 = T0 + Duration::days(10);
    let rotate = event(Action::CompanyKeyRotate, t1);
    assert_eq!(
        control
            .rotate_company_key(&company, 1, &[2; 40], t1, &rotate)
            .await
            .unwrap(),
        2
    );
    // A second node that read version 1 loses.
    assert!(matches!(
        control
            .rotate_company_key(&company, 1, &[3; 40], t1, &rotate)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let t2 = T0 + Duration::days(20);
    control
        .rotate_company_key(
            &company,
            2,
            &[3; 40],
            t2,
            &event(Action::CompanyKeyRotate, t2),
        )
        .await
        .unwrap();
    assert_eq!(audited(control, Action::CompanyKeyRotate).await, 2);
    let v = control
        .company_key_versions(&company)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.current_version, 3);
    assert_eq!(v.current_created_at, t2);
    assert_eq!(v.current_wrapped, vec![3; 40]);
    assert_eq!(
        control
            .company(&company)
            .await
            .unwrap()
            .unwrap()
            .wrapped_dek,
        vec![3; 40],
        "companies.wrapped_dek is the current version"
    );
    let versions: Vec<u32> = v.retired.iter().map(|r| r.version).collect();
    assert_eq!(versions, vec![2, 1]);
    assert_eq!(v.retired[1].wrapped_dek, first_wrapping);
    assert_eq!(v.retired[1].created_at, T0);
    assert_eq!(v.retired[1].retired_at, t1);
    assert_eq!(v.retired[0].created_at, t1);
    assert_eq!(v.retired[0].retired_at, t2);

    // Master-key rotation sees the retired wrappings under their row ids.
    let sealed = control
        .sealed_values(SealedColumn::RetiredCompanyKey)
        .await
        .unwrap();
    let ours: Vec<_> = sealed
        .iter()
        .filter(|(id, _)| id.starts_with(&company))
        .collect();
    assert_eq!(ours.len(), 2);
    let id_v1 = format!("{company}/v1");
    assert!(control
        .reseal(
            SealedColumn::RetiredCompanyKey,
            &id_v1,
            &first_wrapping,
            &[7; 40]
        )
        .await
        .unwrap());

    // The current version is never destroyed; a retired one once.
    let destroy = event(Action::CompanyKeyVersionDestroy, t2);
    assert!(matches!(
        control.destroy_key_version(&company, 3, t2, &destroy).await,
        Err(StoreError::Conflict(_))
    ));
    control
        .destroy_key_version(&company, 1, t2, &destroy)
        .await
        .unwrap();
    control
        .destroy_key_version(&company, 1, t2, &destroy)
        .await
        .unwrap();
    assert_eq!(audited(control, Action::CompanyKeyVersionDestroy).await, 1);
    let v = control
        .company_key_versions(&company)
        .await
        .unwrap()
        .unwrap();
    let v1 = v.retired.iter().find(|r| r.version == 1).unwrap();
    assert_eq!(v1.destroyed_at, Some(t2));
    assert!(v1.wrapped_dek.is_empty());
    assert!(control
        .companies_with_retired_keys()
        .await
        .unwrap()
        .contains(&company));
    control
        .destroy_key_version(&company, 2, t2, &destroy)
        .await
        .unwrap();
    assert!(!control
        .companies_with_retired_keys()
        .await
        .unwrap()
        .contains(&company));
    assert!(control
        .sealed_values(SealedColumn::RetiredCompanyKey)
        .await
        .unwrap()
        .iter()
        .all(|(id, _)| !id.starts_with(&company)));
}

async fn destruction_erases_every_version(control: &dyn ControlStore) {
    let (company, owner) = crate::lifecycle::company_with_owner(control).await;
    control
        .rotate_company_key(
            &company,
            1,
            &[2; 40],
            T0,
            &event(Action::CompanyKeyRotate, T0),
        )
        .await
        .unwrap();
    let d = Deprovisioning {
        company_id: company.clone(),
        deprovisioned_at: T0,
        deprovisioned_by: format!("user:{owner}"),
        destroy_after: T0,
        certificate_id: uuid::Uuid::new_v4().to_string(),
        certificate_token_hash: "ab".repeat(32),
        destruction_started_at: None,
        steps: Vec::new(),
        destroyed_at: None,
        certificate: None,
    };
    control
        .deprovision_company(&d, &event(Action::CompanyDeprovision, T0))
        .await
        .unwrap();
    // A de-provisioned company's key is not rotated.
    assert!(matches!(
        control
            .rotate_company_key(
                &company,
                2,
                &[4; 40],
                T0,
                &event(Action::CompanyKeyRotate, T0)
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    control.begin_destruction(&company, T0).await.unwrap();
    let step = StepRecord {
        step: DestructionStep::Keys,
        items: 2,
        bytes: 80,
        finished_at: "2026-03-01T09:00:00Z".into(),
        names: vec![],
    };
    control
        .shred_company_key(&company, &step, &event(Action::CompanyDestroyStep, T0))
        .await
        .unwrap();
    let v = control
        .company_key_versions(&company)
        .await
        .unwrap()
        .unwrap();
    assert!(v.current_wrapped.is_empty());
    assert!(v
        .retired
        .iter()
        .all(|r| r.wrapped_dek.is_empty() && r.destroyed_at.is_some()));
}

async fn recovery_records_retired_versions_once(control: &dyn ControlStore) {
    let (company, _) = crate::lifecycle::company_with_owner(control).await;
    let retired = vec![RetiredKey {
        version: 1,
        created_at: T0,
        retired_at: T0 + Duration::days(1),
        destroyed_at: None,
        wrapped_dek: vec![1; 40],
    }];
    let made = T0 + Duration::days(1);
    for _ in 0..2 {
        control
            .restore_key_versions(&company, 2, made, &retired)
            .await
            .unwrap();
    }
    let v = control
        .company_key_versions(&company)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.current_version, 2);
    assert_eq!(v.current_created_at, made);
    assert_eq!(v.retired, retired);
    assert!(matches!(
        control
            .restore_key_versions("no-such-company", 2, made, &retired)
            .await,
        Err(StoreError::NotFound(_))
    ));
}
