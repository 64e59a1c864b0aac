//! The alert store: raising with dedupe, the triage life cycle, and that every
//! step is audited in the control plane's hash chain.

use std::sync::Arc;

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use wb_core::monitor::{AlertDraft, AlertState, Severity};
use wb_core::Action;
use wb_core::Role;
use wb_crypto::DataKey;
use wb_store::sqlite::SqliteControl;
use wb_store::{
    Actor, AlertStore, AuditEvent, CompanyRecord, CompanyStatus, ControlStore, Membership, Outcome,
    StoreError, StoredAuditEvent, UserRecord, GENESIS,
};

const T0: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

use crate::pg_backend;

/// Both stores the stories need: the control plane and its alerts.
trait Control: ControlStore + AlertStore {}
impl<T: ControlStore + AlertStore> Control for T {}

/// A control store of one backend, with whatever must outlive it.
struct Backend {
    _dir: Option<tempfile::TempDir>,
    control: Arc<dyn Control>,
}

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let control =
        SqliteControl::open(&dir.path().join("control.db"), &DataKey::generate()).unwrap();
    Backend {
        _dir: Some(dir),
        control: Arc::new(control),
    }
}

async fn postgres() -> Backend {
    Backend {
        _dir: None,
        control: Arc::new(pg_backend::pg_control("alerts").await),
    }
}

/// Runs each story as one test per backend: `sqlite::<story>` and `postgres::<story>`.
macro_rules! on_both_backends {
    ($($story:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $story() {
                    let b = super::sqlite();
                    super::$story(&*b.control).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    let b = super::postgres().await;
                    super::$story(&*b.control).await;
                }
            )*
        }
    };
}

on_both_backends!(
    raise_dedupes_while_active_and_starts_afresh_after_resolve,
    triage_follows_the_life_cycle_and_is_audited,
    dedupe_repeats_are_not_audited_again,
    admin_user_ids_are_owners_and_admins_of_active_companies,
    a_company_sees_only_its_own_active_alerts,
);

async fn a_company_sees_only_its_own_active_alerts(store: &dyn Control) {
    let about = |key: &str, company: Option<&str>| AlertDraft {
        company_id: company.map(str::to_string),
        ..draft(key, T0)
    };
    let a1 = store
        .raise(&about("a1", Some("co-a")), T0)
        .await
        .unwrap()
        .alert;
    let a2 = store
        .raise(&about("a2", Some("co-a")), T0)
        .await
        .unwrap()
        .alert;
    let gone = store
        .raise(&about("a3", Some("co-a")), T0)
        .await
        .unwrap()
        .alert;
    store.raise(&about("b1", Some("co-b")), T0).await.unwrap();
    store.raise(&about("platform", None), T0).await.unwrap();
    store
        .acknowledge(a2.id, &operator("olga"), "looking", T0)
        .await
        .unwrap();
    store
        .resolve(gone.id, &operator("olga"), "fixed", T0)
        .await
        .unwrap();
    let ids: Vec<i64> = store
        .active_for_company("co-a", 10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(
        ids,
        vec![a2.id, a1.id],
        "open and acknowledged, newest first"
    );
    assert_eq!(store.active_for_company("co-a", 1).await.unwrap().len(), 1);
    assert!(store
        .active_for_company("co-c", 10)
        .await
        .unwrap()
        .is_empty());
}

fn draft(key: &str, at: OffsetDateTime) -> AlertDraft {
    AlertDraft {
        rule: "failed-logins-account",
        severity: Severity::High,
        dedupe_key: format!("failed-logins-account:{key}"),
        title: format!("Repeated failed logins for {key}"),
        detail: format!("5 failed logins for {key} at {at}"),
        company_id: None,
        at,
    }
}

fn operator(name: &str) -> Actor {
    Actor {
        id: format!("operator:{name}"),
        auth: "cli".into(),
        client: None,
        request_id: None,
    }
}

async fn audit_log(control: &dyn Control) -> Vec<StoredAuditEvent> {
    control.audit_events(None, 0, 10_000).await.unwrap()
}

fn assert_chained(events: &[StoredAuditEvent]) {
    let mut prev = GENESIS.to_string();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        assert_eq!(e.prev_hash, prev);
        assert_eq!(e.fields().hash(&e.prev_hash, e.seq), e.hash);
        prev = e.hash.clone();
    }
}

async fn raise_dedupes_while_active_and_starts_afresh_after_resolve(control: &dyn Control) {
    let first = control.raise(&draft("ann", T0), T0).await.unwrap();
    assert!(first.new);
    let a = first.alert;
    assert_eq!(
        (a.state, a.severity, a.count),
        (AlertState::Open, Severity::High, 1)
    );
    assert_eq!((a.first_seen, a.last_seen, a.raised_at), (T0, T0, T0));

    // The same finding again: the same alert, counted.
    let later = T0 + Duration::minutes(20);
    let again = control.raise(&draft("ann", later), later).await.unwrap();
    assert!(!again.new);
    assert_eq!(again.alert.id, a.id);
    assert_eq!(again.alert.count, 2);
    assert_eq!(again.alert.first_seen, T0);
    assert_eq!(again.alert.last_seen, later);
    assert!(again.alert.detail.contains(&later.to_string()));

    // Another key: another alert.
    let other = control.raise(&draft("bob", later), later).await.unwrap();
    assert!(other.new);
    assert_ne!(other.alert.id, a.id);

    // Acknowledged alerts still absorb repeats.
    control
        .acknowledge(a.id, &operator("olga"), "looking into it", later)
        .await
        .unwrap();
    let third = control.raise(&draft("ann", later), later).await.unwrap();
    assert_eq!(
        (third.new, third.alert.id, third.alert.count),
        (false, a.id, 3)
    );
    assert_eq!(third.alert.state, AlertState::Acknowledged);

    // Once resolved, the same finding opens a new alert.
    control
        .resolve(
            a.id,
            &operator("olga"),
            "password reset, user informed",
            later,
        )
        .await
        .unwrap();
    let fresh = control.raise(&draft("ann", later), later).await.unwrap();
    assert!(fresh.new);
    assert_ne!(fresh.alert.id, a.id);
    assert_eq!(fresh.alert.count, 1);

    // Listing: newest first, filtered by state.
    let all = control.list(None, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![fresh.alert.id, other.alert.id, a.id]
    );
    let open = control.list(Some(AlertState::Open), 100).await.unwrap();
    assert_eq!(open.len(), 2);
    let resolved = control.list(Some(AlertState::Resolved), 100).await.unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].id, a.id);
    assert_eq!(control.list(None, 1).await.unwrap().len(), 1);
}

async fn triage_follows_the_life_cycle_and_is_audited(control: &dyn Control) {
    let a = control.raise(&draft("ann", T0), T0).await.unwrap().alert;
    let b = control.raise(&draft("bob", T0), T0).await.unwrap().alert;
    let t1 = T0 + Duration::minutes(5);
    let t2 = T0 + Duration::minutes(9);

    let acked = control
        .acknowledge(a.id, &operator("olga"), "  checking\nwith the user ", t1)
        .await
        .unwrap();
    assert_eq!(acked.state, AlertState::Acknowledged);
    let ack = acked.acknowledged.clone().unwrap();
    assert_eq!(ack.by, "operator:olga");
    assert_eq!(ack.at, t1);
    assert_eq!(
        ack.reason, "checking with the user",
        "trimmed, controls replaced"
    );
    assert!(acked.resolved.is_none());

    let resolved = control
        .resolve(a.id, &operator("piet"), "false alarm", t2)
        .await
        .unwrap();
    assert_eq!(resolved.state, AlertState::Resolved);
    assert_eq!(resolved.acknowledged, acked.acknowledged, "history is kept");
    let res = resolved.resolved.clone().unwrap();
    assert_eq!(
        (res.by.as_str(), res.at, res.reason.as_str()),
        ("operator:piet", t2, "false alarm")
    );
    assert_eq!(control.get(a.id).await.unwrap(), Some(resolved));

    // Open → resolved directly.
    let b = control
        .resolve(b.id, &operator("olga"), "duplicate of the other", t2)
        .await
        .unwrap();
    assert_eq!(b.state, AlertState::Resolved);
    assert!(b.acknowledged.is_none());

    // Forbidden moves are refused and leave the alert alone.
    let err = control
        .acknowledge(a.id, &operator("mallory"), "reopen", t2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("resolved cannot become acknowledged")),
        "{err}"
    );
    let err = control
        .resolve(a.id, &operator("mallory"), "again", t2)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(matches!(
        control.resolve(9999, &operator("olga"), "nope", t2).await,
        Err(StoreError::NotFound("alert"))
    ));
    assert!(matches!(
        control
            .acknowledge(b.id, &operator("olga"), "   ", t2)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        control
            .get(a.id)
            .await
            .unwrap()
            .unwrap()
            .resolved
            .unwrap()
            .by,
        "operator:piet"
    );
    assert_eq!(control.get(9999).await.unwrap(), None);

    // The control chain holds every step, in order, and still verifies.
    let log = audit_log(control).await;
    assert_chained(&log);
    let steps: Vec<(&str, &str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.actor.as_str(),
                e.target.as_deref().unwrap_or(""),
                e.outcome.as_str(),
            )
        })
        .collect();
    let (ida, idb) = (format!("alert:{}", a.id), format!("alert:{}", b.id));
    assert_eq!(
        steps,
        vec![
            (
                Action::AlertRaise.as_str(),
                "system",
                ida.as_str(),
                "success"
            ),
            (
                Action::AlertRaise.as_str(),
                "system",
                idb.as_str(),
                "success"
            ),
            (
                Action::AlertAcknowledge.as_str(),
                "operator:olga",
                ida.as_str(),
                "success"
            ),
            (
                Action::AlertResolve.as_str(),
                "operator:piet",
                ida.as_str(),
                "success"
            ),
            (
                Action::AlertResolve.as_str(),
                "operator:olga",
                idb.as_str(),
                "success"
            ),
            (
                Action::AlertAcknowledge.as_str(),
                "operator:mallory",
                ida.as_str(),
                "failure"
            ),
            (
                Action::AlertResolve.as_str(),
                "operator:mallory",
                ida.as_str(),
                "failure"
            ),
            (
                Action::AlertResolve.as_str(),
                "operator:olga",
                "alert:9999",
                "failure"
            ),
        ]
    );
    assert_eq!(log[2].detail.as_deref(), Some("checking with the user"));
    assert!(log[0]
        .detail
        .as_deref()
        .unwrap()
        .starts_with("high failed-logins-account:"));
    assert!(log[5].detail.as_deref().unwrap().contains("refused"));
}

async fn dedupe_repeats_are_not_audited_again(control: &dyn Control) {
    for i in 0..5 {
        control
            .raise(&draft("ann", T0 + Duration::minutes(i)), T0)
            .await
            .unwrap();
    }
    let log = audit_log(control).await;
    assert_eq!(log.len(), 1);
    assert_eq!(control.list(None, 10).await.unwrap()[0].count, 5);
}

async fn admin_user_ids_are_owners_and_admins_of_active_companies(control: &dyn Control) {
    let event = AuditEvent {
        at: T0,
        actor: Actor::system("test"),
        company_id: None,
        action: Action::UserCreate,
        target: None,
        outcome: Outcome::Success,
        detail: None,
    };
    let user = |id: &str| UserRecord {
        id: id.into(),
        email: format!("{id}@example.com"),
        name: None,
        passphrase_hash: "x".into(),
        created_at: T0,
        last_login_at: None,
    };
    let company = |id: &str, status| CompanyRecord {
        id: id.into(),
        name: id.into(),
        status,
        wrapped_dek: vec![1],
        created_at: T0,
    };
    control
        .signup(
            &company("c1", CompanyStatus::Active),
            &user("owner"),
            &event,
        )
        .await
        .unwrap();
    control
        .create_company(&company("c2", CompanyStatus::Deprovisioned), &event)
        .await
        .unwrap();
    for id in ["admin", "clerk", "gone-admin"] {
        control.create_user(&user(id), &event).await.unwrap();
    }
    for (c, u, role) in [
        ("c1", "admin", Role::Admin),
        ("c1", "clerk", Role::Accountant),
        ("c2", "gone-admin", Role::Admin),
    ] {
        let m = Membership {
            company_id: c.into(),
            user_id: u.into(),
            role,
        };
        control.add_member(&m, &event).await.unwrap();
    }
    assert_eq!(
        control.admin_user_ids().await.unwrap(),
        vec!["admin", "owner"]
    );
}
