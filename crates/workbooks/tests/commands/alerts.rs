//! `workbooks alerts list|ack|resolve` and `workbooks maintenance` through the
//! built binary: output, exit codes, and that triage is recorded.

use crate::common;

use std::path::Path;

use wb_core::monitor::MonitorConfig;
use wb_core::Action;
use wb_server::monitor_job::{run_monitor_once, MonitorState};
use wb_store::{Actor, AuditEvent, Outcome};

use common::{fails_with, ok_json, open, stderr_line, workbooks};

/// Records a shutdown in the control chain, collects it, and runs the monitor.
async fn shutdown_and_monitor(data: &Path) -> usize {
    let platform = open(data);
    platform
        .control
        .audit(&AuditEvent {
            at: platform.now(),
            actor: Actor::system("process"),
            company_id: None,
            action: Action::SystemShutdown,
            target: None,
            outcome: Outcome::Success,
            detail: Some("test".into()),
        })
        .await
        .unwrap();
    let events = platform.control.audit_events(None, 0, 1000).await.unwrap();
    platform
        .control
        .central_append("control", "test-node", events.clone())
        .await
        .unwrap();
    let mut state = MonitorState::new(MonitorConfig::default());
    run_monitor_once(&platform, &mut state)
        .await
        .unwrap()
        .new_alerts
}

#[tokio::test]
async fn alerts_are_listed_and_triaged_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init"], &data).status.success());

    let list = ok_json(&workbooks(&["alerts", "list", "--json"], &data));
    assert_eq!(list, serde_json::json!([]));
    let out = workbooks(&["alerts", "list"], &data);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no alerts");

    // An unplanned shutdown raises one alert.
    assert_eq!(shutdown_and_monitor(&data).await, 1);
    let list = ok_json(&workbooks(&["alerts", "list", "--json"], &data));
    let alerts = list.as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert["rule"], "unplanned-shutdown");
    assert_eq!(alert["severity"], "medium");
    assert_eq!(alert["state"], "open");
    assert_eq!(alert["count"], 1);
    assert!(alert["acknowledged"].is_null());
    let id = alert["id"].as_i64().unwrap().to_string();
    let out = workbooks(&["alerts", "list"], &data);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unplanned") || text.contains("Shutdown"),
        "{text}"
    );

    // Acknowledge, with who and why.
    let acked = ok_json(&workbooks(
        &[
            "alerts",
            "ack",
            &id,
            "--reason",
            "checking the host",
            "--json",
        ],
        &data,
    ));
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acknowledged"]["by"], "operator:olga");
    assert_eq!(acked["acknowledged"]["reason"], "checking the host");
    let out = workbooks(&["alerts", "ack", &id, "--reason", "again"], &data);
    fails_with(&out, "cannot become acknowledged");

    // Bad input: one line, non-zero.
    fails_with(
        &workbooks(&["alerts", "resolve", "999", "--reason", "x"], &data),
        "no alert with id 999",
    );
    fails_with(
        &workbooks(&["alerts", "resolve", &id, "--reason", "  "], &data),
        "--reason must not be empty",
    );
    fails_with(
        &workbooks(&["alerts", "list", "--state", "closed"], &data),
        "unknown alert state",
    );
    let out = workbooks(&["alerts", "ack", &id], &data);
    assert!(!out.status.success(), "--reason is required");

    let out = workbooks(
        &["alerts", "resolve", &id, "--reason", "kernel update"],
        &data,
    );
    assert!(out.status.success(), "{}", stderr_line(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("alert {id} resolved")
    );
    fails_with(
        &workbooks(&["alerts", "resolve", &id, "--reason", "twice"], &data),
        "cannot become resolved",
    );
    let open_alerts = ok_json(&workbooks(
        &["alerts", "list", "--state", "open", "--json"],
        &data,
    ));
    assert_eq!(open_alerts, serde_json::json!([]));
    let resolved = ok_json(&workbooks(
        &["alerts", "list", "--state", "resolved", "--json"],
        &data,
    ));
    assert_eq!(resolved[0]["resolved"]["reason"], "kernel update");
    assert_eq!(resolved[0]["acknowledged"]["reason"], "checking the host");

    // A maintenance mark covers the next shutdown.
    let mark = ok_json(&workbooks(
        &["maintenance", "--reason", "upgrade to 0.2", "--json"],
        &data,
    ));
    assert_eq!(mark["action"], Action::SystemMaintenance.as_str());
    fails_with(
        &workbooks(&["maintenance", "--reason", ""], &data),
        "--reason must not be empty",
    );
    assert_eq!(shutdown_and_monitor(&data).await, 0);

    // Every step is in the control audit trail.
    let platform = open(&data);
    let log = platform.control.audit_events(None, 0, 1000).await.unwrap();
    let steps: Vec<(&str, &str, &str)> = log
        .iter()
        .filter(|e| {
            e.action.starts_with("alert.") || e.action == Action::SystemMaintenance.as_str()
        })
        .map(|e| (e.action.as_str(), e.actor.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (Action::AlertRaise.as_str(), "system", "success"),
            (
                Action::AlertAcknowledge.as_str(),
                "operator:olga",
                "success"
            ),
            (
                Action::AlertAcknowledge.as_str(),
                "operator:olga",
                "failure"
            ),
            (Action::AlertResolve.as_str(), "operator:olga", "failure"),
            (Action::AlertResolve.as_str(), "operator:olga", "success"),
            (Action::AlertResolve.as_str(), "operator:olga", "failure"),
            (
                Action::SystemMaintenance.as_str(),
                "operator:olga",
                "success"
            ),
        ]
    );
}

#[test]
fn monitor_rules_are_read_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("workbooks.toml");
    std::fs::write(
        &config,
        "[monitor]\nfailed-logins-per-account = { count = 3, window-secs = 60 }\n\
         disabled-rules = [\"unplanned-shutdown\"]\n",
    )
    .unwrap();
    let out = workbooks(&["init", "--config", config.to_str().unwrap()], &data);
    assert!(out.status.success(), "{}", stderr_line(&out));
    std::fs::write(&config, "[monitor]\nfailed-logins = 3\n").unwrap();
    fails_with(
        &workbooks(&["init", "--config", config.to_str().unwrap()], &data),
        "unknown field",
    );
}
