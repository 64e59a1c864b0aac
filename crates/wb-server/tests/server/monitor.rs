//! The monitor job end to end: control audit events copied into the central
//! collection, one monitor round, alerts in the store, triage audited.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use wb_core::monitor::{AlertState, MonitorConfig, Severity};
use wb_core::Action;
use wb_server::clock::ManualClock;
use wb_server::monitor_job::{run_monitor_once, MonitorState, MONITOR_CURSOR};
use wb_server::Platform;
use wb_store::{Actor, AuditEvent, ControlStore, Outcome};

use crate::support::platforms;

async fn platform(dir: &std::path::Path, clock: Arc<ManualClock>) -> Platform {
    platforms::open(dir, clock, super::POSTGRES).await
}

fn failed_login(at: OffsetDateTime, email: &str, client: &str) -> AuditEvent {
    AuditEvent {
        at,
        actor: Actor {
            id: "anonymous".into(),
            auth: "passphrase".into(),
            client: Some(client.into()),
            request_id: None,
        },
        company_id: None,
        action: Action::AuthLogin,
        target: Some(format!("email:{email}")),
        outcome: Outcome::Failure,
        detail: Some("unknown email".into()),
    }
}

async fn collect(control: &Arc<dyn ControlStore>) {
    let events = control.audit_events(None, 0, 1000).await.unwrap();
    control
        .central_append("control", "test-node", events.clone())
        .await
        .unwrap();
}

#[tokio::test]
async fn six_failed_logins_raise_one_high_alert_for_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let platform = platform(dir.path(), clock.clone()).await;
    let control = platform.control.clone();

    // Normal traffic around the attack: a failure for another account, and
    // failures from several addresses (none reaches the per-client threshold).
    control
        .audit(&failed_login(
            platform.now(),
            "bob@example.com",
            "192.0.2.1",
        ))
        .await
        .unwrap();
    for i in 0..6 {
        clock.advance(Duration::seconds(20));
        control
            .audit(&failed_login(
                platform.now(),
                "ann@example.com",
                &format!("198.51.100.{i}"),
            ))
            .await
            .unwrap();
    }
    collect(&control).await;

    let mut state = MonitorState::new(MonitorConfig::default());
    let round = run_monitor_once(&platform, &mut state).await.unwrap();
    assert_eq!(round.events, 7);
    assert_eq!((round.findings, round.new_alerts), (1, 1));

    let alerts = platform.alerts.list(None, 100).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert.rule, "failed-logins-account");
    assert_eq!(alert.severity, Severity::High);
    assert_eq!(alert.state, AlertState::Open);
    assert_eq!(
        alert.dedupe_key,
        "failed-logins-account:email:ann@example.com"
    );
    assert!(alert.title.contains("ann@example.com"));

    // The cursor moved: another round finds nothing new.
    let cursor = control.cursor(MONITOR_CURSOR).await.unwrap();
    assert!(cursor > 0);
    let again = run_monitor_once(&platform, &mut state).await.unwrap();
    assert_eq!(again, Default::default());

    // The raise is audited in the control chain; once that is collected, a
    // fresh monitor (as after a restart) replays up to its cursor quietly and
    // sees the alert.raise event as normal traffic.
    collect(&control).await;
    let mut restarted = MonitorState::new(MonitorConfig::default());
    let round = run_monitor_once(&platform, &mut restarted).await.unwrap();
    assert_eq!((round.events, round.findings), (1, 0));
    let log = control.audit_events(None, 0, 1000).await.unwrap();
    let raise = log
        .iter()
        .find(|e| e.action == Action::AlertRaise.as_str())
        .unwrap();
    assert_eq!(
        raise.target.as_deref(),
        Some(format!("alert:{}", alert.id).as_str())
    );

    // Triage through the platform's alert store, audited too.
    let by = Actor {
        id: "operator:olga".into(),
        auth: "cli".into(),
        client: None,
        request_id: None,
    };
    platform
        .alerts
        .acknowledge(alert.id, &by, "calling the user", platform.now())
        .await
        .unwrap();
    let resolved = platform
        .alerts
        .resolve(alert.id, &by, "user forgot passphrase", platform.now())
        .await
        .unwrap();
    assert_eq!(resolved.state, AlertState::Resolved);
    let log = control.audit_events(None, 0, 1000).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.ends_with(&[
        Action::AlertRaise.as_str(),
        Action::AlertAcknowledge.as_str(),
        Action::AlertResolve.as_str()
    ]));
}

#[tokio::test]
async fn a_gap_in_a_collected_chain_is_critical() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let platform = platform(dir.path(), clock.clone()).await;
    let control = platform.control.clone();
    for _ in 0..5 {
        clock.advance(Duration::seconds(1));
        control
            .audit(&AuditEvent {
                at: platform.now(),
                actor: Actor::system("test"),
                company_id: None,
                action: Action::SystemMaintenance,
                target: None,
                outcome: Outcome::Success,
                detail: Some("test".into()),
            })
            .await
            .unwrap();
    }
    let mut events = control.audit_events(None, 0, 1000).await.unwrap();
    events.remove(2); // event 3 never reaches the collector
    control
        .central_append("control", "test-node", events.clone())
        .await
        .unwrap();
    let mut state = MonitorState::new(MonitorConfig::default());
    run_monitor_once(&platform, &mut state).await.unwrap();
    let alerts = platform.alerts.list(None, 100).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule, "audit-chain-break");
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert!(
        alerts[0].detail.contains("event 3 is missing"),
        "{}",
        alerts[0].detail
    );
}
