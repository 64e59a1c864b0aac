//! Export schedules in the control store, on both backends: set, replace and
//! delete (each audited in the control chain, in the same transaction), due
//! schedules of active companies only, claims that exactly one caller wins,
//! push results that never overwrite a newer schedule, and databases created
//! before the table existed.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use wb_core::Action;
use wb_crypto::DataKey;
use wb_store::sqlite::SqliteControl;
use wb_store::{
    Actor, AuditEvent, CompanyRecord, CompanyStatus, ControlStore, ExportSchedule, Outcome,
    PushResult, StoreError,
};

const T0: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

use crate::pg_backend;

crate::on_both_control_backends!(
    "schedules";
    set_replace_and_delete_are_audited,
    only_due_schedules_of_active_companies_are_listed,
    one_claim_wins_and_results_keep_to_their_schedule,
);

fn event(company: &str, action: Action) -> AuditEvent {
    AuditEvent {
        at: T0,
        actor: Actor {
            id: "user:owner".into(),
            auth: "session".into(),
            client: None,
            request_id: None,
        },
        company_id: Some(company.into()),
        action,
        target: None,
        outcome: Outcome::Success,
        detail: None,
    }
}

async fn company(control: &dyn ControlStore, id: &str, status: CompanyStatus) {
    let record = CompanyRecord {
        id: id.into(),
        name: id.into(),
        status,
        wrapped_dek: vec![1],
        created_at: T0,
    };
    control
        .create_company(&record, &event(id, Action::CompanyCreate))
        .await
        .unwrap();
}

fn schedule(company: &str, id: &str, next: OffsetDateTime) -> ExportSchedule {
    ExportSchedule {
        company_id: company.into(),
        id: id.into(),
        destination: format!("s3://{company}-backups/wb"),
        recipient: "age1example".into(),
        every_hours: 24,
        sealed_credentials: Some(vec![7; 40]),
        created_at: T0,
        created_by: "user:owner".into(),
        next_push_at: next,
        last_push_at: None,
        last_push_status: None,
        last_error: None,
        last_object: None,
        failures: 0,
    }
}

fn failure(at: OffsetDateTime, failures: u32) -> PushResult {
    PushResult {
        at,
        ok: false,
        error: Some("connection refused".into()),
        object: None,
        next_push_at: at + Duration::minutes(5),
        failures,
    }
}

async fn actions(control: &dyn ControlStore, company: &str) -> Vec<String> {
    control
        .audit_events(Some(company), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("export."))
        .collect()
}

async fn set_replace_and_delete_are_audited(control: &dyn ControlStore) {
    company(control, "c1", CompanyStatus::Active).await;
    assert_eq!(control.export_schedule("c1").await.unwrap(), None);
    let first = schedule("c1", "s1", T0);
    control
        .put_export_schedule(&first, &event("c1", Action::ExportScheduleSet))
        .await
        .unwrap();
    assert_eq!(control.export_schedule("c1").await.unwrap(), Some(first));

    // A push, then a replacement: the push state starts afresh.
    let pushed = PushResult {
        at: T0,
        ok: true,
        error: None,
        object: Some("s3://c1-backups/wb/x.age".into()),
        next_push_at: T0 + Duration::hours(24),
        failures: 0,
    };
    assert!(control
        .record_export_push("c1", "s1", &pushed, &event("c1", Action::ExportPush))
        .await
        .unwrap());
    let after = control.export_schedule("c1").await.unwrap().unwrap();
    assert_eq!(after.last_push_status.as_deref(), Some("success"));
    assert_eq!(after.last_object, pushed.object);
    assert_eq!(after.last_push_at, Some(T0));
    assert_eq!(after.next_push_at, pushed.next_push_at);
    let mut second = schedule("c1", "s2", T0 + Duration::minutes(1));
    second.every_hours = 6;
    second.sealed_credentials = None;
    second.destination = "file:///srv/exports/c1".into();
    control
        .put_export_schedule(&second, &event("c1", Action::ExportScheduleSet))
        .await
        .unwrap();
    assert_eq!(control.export_schedule("c1").await.unwrap(), Some(second));

    control
        .delete_export_schedule("c1", &event("c1", Action::ExportScheduleDelete))
        .await
        .unwrap();
    assert_eq!(control.export_schedule("c1").await.unwrap(), None);
    // Deleting nothing is NotFound, and audits nothing.
    let again = control
        .delete_export_schedule("c1", &event("c1", Action::ExportScheduleDelete))
        .await;
    assert!(matches!(again, Err(StoreError::NotFound(_))), "{again:?}");
    assert_eq!(
        actions(control, "c1").await,
        [
            Action::ExportScheduleSet.as_str(),
            Action::ExportPush.as_str(),
            Action::ExportScheduleSet.as_str(),
            Action::ExportScheduleDelete.as_str()
        ]
    );
    // A schedule needs its company.
    let orphan = control
        .put_export_schedule(
            &schedule("nobody", "s9", T0),
            &event("nobody", Action::ExportScheduleSet),
        )
        .await;
    assert!(orphan.is_err(), "{orphan:?}");
}

async fn only_due_schedules_of_active_companies_are_listed(control: &dyn ControlStore) {
    company(control, "a", CompanyStatus::Active).await;
    company(control, "b", CompanyStatus::Active).await;
    company(control, "gone", CompanyStatus::Deprovisioned).await;
    for (c, next) in [
        ("a", T0 + Duration::minutes(10)),
        ("b", T0 - Duration::hours(1)),
        ("gone", T0 - Duration::hours(2)),
    ] {
        control
            .put_export_schedule(
                &schedule(c, &format!("s-{c}"), next),
                &event(c, Action::ExportScheduleSet),
            )
            .await
            .unwrap();
    }
    let due = |at| async move {
        control
            .due_export_schedules(at, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.company_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(due(T0 - Duration::hours(3)).await, Vec::<String>::new());
    assert_eq!(due(T0).await, ["b"]);
    // The longest overdue first; the limit applies.
    assert_eq!(due(T0 + Duration::minutes(10)).await, ["b", "a"]);
    let first = control
        .due_export_schedules(T0 + Duration::hours(1), 1)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].company_id, "b");
}

async fn one_claim_wins_and_results_keep_to_their_schedule(control: &dyn ControlStore) {
    company(control, "c1", CompanyStatus::Active).await;
    let s = schedule("c1", "s1", T0);
    control
        .put_export_schedule(&s, &event("c1", Action::ExportScheduleSet))
        .await
        .unwrap();
    let until = T0 + Duration::minutes(30);
    // Another schedule id, or another due time, claims nothing.
    assert!(!control
        .claim_export_push("c1", "s0", T0, until)
        .await
        .unwrap());
    assert!(!control
        .claim_export_push("c1", "s1", T0 - Duration::seconds(1), until)
        .await
        .unwrap());
    assert!(control
        .claim_export_push("c1", "s1", T0, until)
        .await
        .unwrap());
    // A second node reading the same due time loses.
    assert!(!control
        .claim_export_push("c1", "s1", T0, until)
        .await
        .unwrap());
    let claimed = control.export_schedule("c1").await.unwrap().unwrap();
    assert_eq!(claimed.next_push_at, until);
    assert!(control
        .due_export_schedules(T0, 10)
        .await
        .unwrap()
        .is_empty());

    assert!(control
        .record_export_push(
            "c1",
            "s1",
            &failure(T0, 1),
            &event("c1", Action::ExportPush)
        )
        .await
        .unwrap());
    let failed = control.export_schedule("c1").await.unwrap().unwrap();
    assert_eq!(failed.last_push_status.as_deref(), Some("failure"));
    assert_eq!(failed.last_error.as_deref(), Some("connection refused"));
    assert_eq!(failed.failures, 1);
    assert_eq!(failed.next_push_at, T0 + Duration::minutes(5));

    // The schedule is replaced while a push of the old one runs: the old
    // push's result is audited but leaves the new schedule alone.
    let newer = schedule("c1", "s2", T0 + Duration::hours(1));
    control
        .put_export_schedule(&newer, &event("c1", Action::ExportScheduleSet))
        .await
        .unwrap();
    assert!(!control
        .record_export_push(
            "c1",
            "s1",
            &failure(T0, 2),
            &event("c1", Action::ExportPush)
        )
        .await
        .unwrap());
    assert_eq!(control.export_schedule("c1").await.unwrap(), Some(newer));
    assert_eq!(
        actions(control, "c1").await,
        [
            Action::ExportScheduleSet.as_str(),
            Action::ExportPush.as_str(),
            Action::ExportScheduleSet.as_str(),
            Action::ExportPush.as_str()
        ]
    );
}

/// A control database created before export schedules existed gets the
/// table when opened again. Such a database also predates migrations, so it
/// records no schema version.
#[tokio::test]
async fn sqlite_databases_without_the_table_are_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    let key = DataKey::generate();
    drop(SqliteControl::open(&path, &key).unwrap());
    let db = wb_store::sqlite::open_encrypted(&path, &key, wb_store::sqlite::OpenMode::Existing)
        .unwrap();
    // What later migrations added goes too: such a database had none of it.
    db.execute_batch(
        "DROP TABLE export_schedules; DROP TABLE invitations; DROP TABLE outbox;
         DROP TABLE company_policies; ALTER TABLE sessions DROP COLUMN last_seen_at; DROP INDEX sessions_by_user;
         ALTER TABLE sessions DROP COLUMN client; ALTER TABLE sessions DROP COLUMN user_agent;
         DROP TABLE totp_factors; DROP TABLE recovery_codes; DROP TABLE mfa_challenges;
         DROP TABLE passphrase_resets; DROP TABLE passkeys; DROP TABLE webauthn_ceremonies;
         ALTER TABLE sessions DROP COLUMN second_factor;
         DROP TABLE staff_sessions; DROP TABLE grant_notices; DROP TABLE access_grants; DROP TABLE staff;
         DROP TABLE company_key_versions; ALTER TABLE companies DROP COLUMN key_version;
         ALTER TABLE companies DROP COLUMN key_created_at; DROP TABLE company_retention;
         PRAGMA user_version = 0;",
    )
    .unwrap();
    drop(db);
    let control = SqliteControl::open(&path, &key).unwrap();
    one_claim_wins_and_results_keep_to_their_schedule(&control).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_databases_without_the_table_are_migrated() {
    let url = pg_backend::fresh_database_url("schedules_migrate").await;
    let budget = pg_backend::budget();
    let old = pg_backend::pg_control_at(&url, budget.clone()).await;
    old.pool()
        .get()
        .await
        .unwrap()
        .batch_execute(
            "DROP TABLE export_schedules; DROP TABLE schema_migrations;
             DROP TABLE invitations; DROP TABLE outbox; DROP TABLE company_policies;
             ALTER TABLE sessions DROP COLUMN last_seen_at; DROP INDEX sessions_by_user;
         ALTER TABLE sessions DROP COLUMN client; ALTER TABLE sessions DROP COLUMN user_agent;
         DROP TABLE totp_factors; DROP TABLE recovery_codes; DROP TABLE mfa_challenges;
         DROP TABLE passphrase_resets; DROP TABLE passkeys; DROP TABLE webauthn_ceremonies;
         ALTER TABLE sessions DROP COLUMN second_factor;
         DROP TABLE staff_sessions; DROP TABLE grant_notices; DROP TABLE access_grants; DROP TABLE staff;
         DROP TABLE company_key_versions; ALTER TABLE companies DROP COLUMN key_version;
         ALTER TABLE companies DROP COLUMN key_created_at; DROP TABLE company_retention;",
        )
        .await
        .unwrap();
    drop(old);
    let control = pg_backend::pg_control_at(&url, budget).await;
    one_claim_wins_and_results_keep_to_their_schedule(&control).await;
}
