//! A company's retention rules in the control store, on both backends:
//! none until set, a change replaces them whole, each change is audited.

use time::macros::datetime;
use wb_core::data_retention::DataRetention;
use wb_core::Action;
use wb_store::{Actor, AuditEvent, ControlStore, Outcome};

crate::on_both_control_backends!(
    "retention_rules";
    rules_are_kept_and_replaced_with_their_audit,
);

async fn rules_are_kept_and_replaced_with_their_audit(control: &dyn ControlStore) {
    let (company, _) = crate::lifecycle::company_with_owner(control).await;
    assert_eq!(control.company_retention(&company).await.unwrap(), None);
    let event = AuditEvent {
        at: datetime!(2026-03-01 09:00 UTC),
        actor: Actor::system("test"),
        company_id: Some(company.clone()),
        action: Action::RetentionSet,
        target: None,
        outcome: Outcome::Success,
        detail: None,
    };
    let first = DataRetention {
        entries_years: 12,
        attachments_years: 3,
        audit_years: 11,
        exports_days: 30,
    };
    control
        .put_company_retention(&company, &first, &event)
        .await
        .unwrap();
    assert_eq!(
        control.company_retention(&company).await.unwrap(),
        Some(first)
    );
    let second = DataRetention {
        exports_days: 7,
        ..first
    };
    control
        .put_company_retention(&company, &second, &event)
        .await
        .unwrap();
    assert_eq!(
        control.company_retention(&company).await.unwrap(),
        Some(second)
    );
    let audited = control
        .audit_events(Some(&company), 0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == Action::RetentionSet.as_str())
        .count();
    assert_eq!(audited, 2);
}
