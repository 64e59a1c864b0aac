use super::*;
use proptest::prelude::*;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

/// Feeds events with consecutive sequence numbers per source.
struct Feed {
    monitor: Monitor,
    seqs: HashMap<String, i64>,
}

impl Feed {
    fn new() -> Feed {
        Feed::with(MonitorConfig::default())
    }
    fn with(config: MonitorConfig) -> Feed {
        let mut monitor = Monitor::new(config);
        monitor.set_admins(["admin-1", "owner-1"]);
        Feed {
            monitor,
            seqs: HashMap::new(),
        }
    }
    fn send(&mut self, mut e: ObservedEvent) -> Vec<AlertDraft> {
        let seq = self.seqs.entry(e.source.clone()).or_insert(0);
        *seq += 1;
        e.source_seq = *seq;
        self.monitor.observe(&e)
    }
    fn send_all(&mut self, events: Vec<ObservedEvent>) -> Vec<AlertDraft> {
        events.into_iter().flat_map(|e| self.send(e)).collect()
    }
}

fn at(secs: i64) -> OffsetDateTime {
    T0 + Duration::seconds(secs)
}

fn login(secs: i64, user: &str, email: &str, client: &str, ok: bool) -> ObservedEvent {
    let mut e = ObservedEvent::new(
        "control",
        0,
        at(secs),
        &format!("user:{user}"),
        Action::AuthLogin,
        ok,
    );
    e.auth = "passphrase".into();
    e.client = Some(client.into());
    if !ok {
        e.target = Some(format!("email:{email}"));
        e.detail = Some("wrong passphrase".into());
    }
    e
}

fn refusal(secs: i64, actor: &str, client: &str, company: &str) -> ObservedEvent {
    let mut e = ObservedEvent::new("control", 0, at(secs), actor, Action::AccessCompany, false);
    e.client = Some(client.into());
    e.company_id = Some(company.into());
    e
}

fn export(secs: i64, actor: &str, company: &str) -> ObservedEvent {
    let mut e = ObservedEvent::new(
        &format!("company:{company}"),
        0,
        at(secs),
        actor,
        Action::ExportCreate,
        true,
    );
    e.company_id = Some(company.into());
    e
}

fn post(secs: i64, actor: &str, company: &str) -> ObservedEvent {
    let mut e = ObservedEvent::new(
        &format!("company:{company}"),
        0,
        at(secs),
        actor,
        Action::EntryPost,
        true,
    );
    e.company_id = Some(company.into());
    e
}

fn system(secs: i64, action: Action) -> ObservedEvent {
    ObservedEvent::new("control", 0, at(secs), "system", action, true)
}

fn rules(alerts: &[AlertDraft]) -> Vec<&'static str> {
    alerts.iter().map(|a| a.rule).collect()
}

#[test]
fn failed_logins_for_one_account_fire_once_per_burst() {
    let mut f = Feed::new();
    let alerts = f.send_all(
        (0..6)
            .map(|i| login(i * 30, "u1", "ann@x.example", &format!("10.0.{i}.1"), false))
            .collect(),
    );
    assert_eq!(rules(&alerts), [rule::FAILED_LOGINS_ACCOUNT]);
    let a = &alerts[0];
    assert_eq!(a.severity, Severity::High);
    assert_eq!(a.dedupe_key, "failed-logins-account:email:ann@x.example");
    assert!(a.detail.contains("5 failed logins for ann@x.example"));
    assert_eq!(a.at, at(120));
}

#[test]
fn four_failures_then_success_is_quiet() {
    let mut f = Feed::new();
    let mut events: Vec<_> = (0..4)
        .map(|i| login(i * 10, "u1", "ann@x.example", "10.0.0.1", false))
        .collect();
    events.push(login(50, "u1", "ann@x.example", "10.0.0.1", true));
    assert!(f.send_all(events).is_empty());
}

#[test]
fn spaced_out_failures_are_quiet() {
    let mut f = Feed::new();
    // One failure every three minutes: never five in ten minutes.
    let events = (0..20)
        .map(|i| login(i * 180, "u1", "ann@x.example", "10.0.0.1", false))
        .collect();
    assert!(f.send_all(events).is_empty());
}

#[test]
fn failed_logins_from_one_client_fire() {
    let mut f = Feed::new();
    // 20 accounts, 1 failure each, from one address: spraying.
    let alerts = f.send_all(
        (0..20)
            .map(|i| {
                login(
                    i,
                    &format!("u{i}"),
                    &format!("u{i}@x.example"),
                    "198.51.100.7",
                    false,
                )
            })
            .collect(),
    );
    assert_eq!(rules(&alerts), [rule::FAILED_LOGINS_CLIENT]);
    assert_eq!(alerts[0].dedupe_key, "failed-logins-client:198.51.100.7");
    // 19 from one address is quiet.
    let mut f = Feed::new();
    let alerts = f.send_all(
        (0..19)
            .map(|i| {
                login(
                    i,
                    &format!("u{i}"),
                    &format!("u{i}@x.example"),
                    "198.51.100.7",
                    false,
                )
            })
            .collect(),
    );
    assert!(alerts.is_empty());
}

#[test]
fn admin_login_from_new_network_fires() {
    let mut f = Feed::new();
    assert!(f
        .send(login(0, "admin-1", "", "203.0.113.10", true))
        .is_empty());
    // Same /24: quiet.
    assert!(f
        .send(login(60, "admin-1", "", "203.0.113.99", true))
        .is_empty());
    let alerts = f.send(login(120, "admin-1", "", "192.0.2.5", true));
    assert_eq!(rules(&alerts), [rule::NEW_NETWORK_ADMIN]);
    assert_eq!(alerts[0].severity, Severity::Medium);
    assert!(alerts[0].dedupe_key.ends_with("192.0.2.0/24"));
    // Now known.
    assert!(f
        .send(login(180, "admin-1", "", "192.0.2.6", true))
        .is_empty());
    // Back to the first network: still known.
    assert!(f
        .send(login(240, "admin-1", "", "203.0.113.1", true))
        .is_empty());
}

#[test]
fn new_network_rule_spares_first_logins_and_non_admins() {
    let mut f = Feed::new();
    // First login ever: nothing to compare with.
    assert!(f
        .send(login(0, "owner-1", "", "203.0.113.10", true))
        .is_empty());
    // A non-admin moving networks: quiet.
    assert!(f
        .send(login(0, "clerk", "", "203.0.113.10", true))
        .is_empty());
    assert!(f.send(login(10, "clerk", "", "192.0.2.1", true)).is_empty());
    // IPv6: same /64 quiet, other /64 fires for the owner.
    assert!(
        f.send(login(20, "owner-1", "", "2001:db8:1:2::1", true))
            .len()
            == 1
    );
    assert!(f
        .send(login(30, "owner-1", "", "2001:db8:1:2:ffff::9", true))
        .is_empty());
    assert_eq!(
        rules(&f.send(login(40, "owner-1", "", "2001:db8:1:3::1", true))),
        [rule::NEW_NETWORK_ADMIN]
    );
}

#[test]
fn networks_are_prefixes() {
    assert_eq!(
        network_of("203.0.113.77").as_deref(),
        Some("203.0.113.0/24")
    );
    assert_eq!(
        network_of("::ffff:203.0.113.77").as_deref(),
        Some("203.0.113.0/24")
    );
    assert_eq!(
        network_of("2001:db8:a:b:c:d:e:f").as_deref(),
        Some("2001:db8:a:b::/64")
    );
    assert_eq!(
        network_of("203.0.113.77:443").as_deref(),
        Some("203.0.113.0/24")
    );
    assert_eq!(network_of("not an address"), None);
}

#[test]
fn refused_cross_company_bursts_fire() {
    let mut f = Feed::new();
    let alerts = f.send_all(
        (0..10)
            .map(|i| refusal(i * 5, "user:mallory", "198.51.100.9", &format!("c{i}")))
            .collect(),
    );
    assert_eq!(rules(&alerts), [rule::CROSS_COMPANY_REFUSALS]);
    assert_eq!(
        alerts[0].dedupe_key,
        "cross-company-refusals:actor:user:mallory"
    );

    // Many API keys from one address.
    let mut f = Feed::new();
    let alerts = f.send_all(
        (0..10)
            .map(|i| refusal(i, &format!("api_key:k{i}"), "198.51.100.9", "c1"))
            .collect(),
    );
    assert_eq!(rules(&alerts), [rule::CROSS_COMPANY_REFUSALS]);
    assert_eq!(
        alerts[0].dedupe_key,
        "cross-company-refusals:client:198.51.100.9"
    );

    // Nine, or ten spread over an hour: quiet.
    let mut f = Feed::new();
    let mut events: Vec<_> = (0..9)
        .map(|i| refusal(i, "user:mallory", "198.51.100.9", "c1"))
        .collect();
    events.extend((0..10).map(|i| refusal(1000 + i * 400, "user:eve", "198.51.100.10", "c1")));
    assert!(f.send_all(events).is_empty());
}

#[test]
fn sequence_gap_and_broken_link_and_explicit_break_are_critical() {
    let mut m = Monitor::new(MonitorConfig::default());
    let ev = |seq: i64| post(seq, "user:u1", "c1");
    let mut e = ev(1);
    e.source_seq = 1;
    assert!(m.observe(&e).is_empty());
    let mut e = ev(2);
    e.source_seq = 2;
    assert!(m.observe(&e).is_empty());
    let mut e = ev(5);
    e.source_seq = 5;
    let alerts = m.observe(&e);
    assert_eq!(rules(&alerts), [rule::AUDIT_CHAIN_BREAK]);
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert_eq!(alerts[0].company_id.as_deref(), Some("c1"));
    assert!(
        alerts[0].detail.contains("events 3 to 4 are missing"),
        "{}",
        alerts[0].detail
    );
    // A repeat of an old sequence number.
    let mut e = ev(6);
    e.source_seq = 4;
    assert_eq!(rules(&m.observe(&e)), [rule::AUDIT_CHAIN_BREAK]);

    // Hash links.
    let mut m = Monitor::new(MonitorConfig::default());
    let linked = |seq: i64, prev: &str, hash: &str, intact: bool| {
        let mut e = post(seq, "user:u1", "c2");
        e.source_seq = seq;
        e.chain = Some(ChainLink {
            prev_hash: prev.into(),
            hash: hash.into(),
            intact,
        });
        e
    };
    assert!(m.observe(&linked(1, "0", "a", true)).is_empty());
    assert!(m.observe(&linked(2, "a", "b", true)).is_empty());
    let alerts = m.observe(&linked(3, "x", "c", true));
    assert!(
        alerts[0].detail.contains("does not link"),
        "{}",
        alerts[0].detail
    );
    let alerts = m.observe(&linked(4, "c", "d", false));
    assert!(alerts[0].detail.contains("altered"), "{}", alerts[0].detail);

    // An explicit report from the forwarder or verifier.
    let mut m = Monitor::new(MonitorConfig::default());
    let mut e = ObservedEvent::new(
        "control",
        1,
        at(0),
        "system",
        Action::AuditChainBreak,
        false,
    );
    e.target = Some("company:c9".into());
    e.detail = Some("event 17 was altered".into());
    let alerts = m.observe(&e);
    assert_eq!(rules(&alerts), [rule::AUDIT_CHAIN_BREAK]);
    assert_eq!(alerts[0].company_id.as_deref(), Some("c9"));
    assert_eq!(alerts[0].dedupe_key, "audit-chain-break:company:c9");
}

#[test]
fn complete_sources_must_start_at_one() {
    let mut m = Monitor::new(MonitorConfig::default());
    let mut e = post(0, "user:u1", "c1");
    e.source_seq = 3;
    assert!(
        m.observe(&e).is_empty(),
        "mid-stream start takes a baseline"
    );
    let mut m = Monitor::new(MonitorConfig::default());
    m.expect_complete_sources(true);
    assert_eq!(rules(&m.observe(&e)), [rule::AUDIT_CHAIN_BREAK]);
}

/// An event written by a newer node (a name this build does not know) is
/// still chain-checked, and raises nothing else however often it fails.
#[test]
fn unknown_actions_match_no_rule_but_are_chain_checked() {
    let mut f = Feed::new();
    let unknown = |secs: i64| {
        let mut e = login(secs, "u1", "ann@x.example", "198.51.100.7", false);
        e.action = None;
        e
    };
    assert!(f.send_all((0..30).map(unknown).collect()).is_empty());
    // The same burst under a known name fires.
    let known = (0..30)
        .map(|i| login(i, "u1", "ann@x.example", "198.51.100.7", false))
        .collect();
    assert!(!f.send_all(known).is_empty());

    let mut m = Monitor::new(MonitorConfig::default());
    let mut e = unknown(0);
    e.source_seq = 1;
    assert!(m.observe(&e).is_empty());
    e.source_seq = 3;
    assert_eq!(rules(&m.observe(&e)), [rule::AUDIT_CHAIN_BREAK]);
}

#[test]
fn mass_export_fires_and_normal_exports_do_not() {
    let mut f = Feed::new();
    let alerts = f.send_all((0..5).map(|i| export(i * 60, "api_key:k1", "c1")).collect());
    assert_eq!(rules(&alerts), [rule::MASS_EXPORT]);
    assert_eq!(alerts[0].company_id.as_deref(), Some("c1"));
    let mut f = Feed::new();
    let mut events: Vec<_> = (0..4).map(|i| export(i * 60, "user:u1", "c1")).collect();
    events.extend((0..5).map(|i| export(i * 60, &format!("user:v{i}"), "c1")));
    events.extend((0..5).map(|i| export(1000 + i * 200, "user:u2", "c1")));
    assert!(f.send_all(events).is_empty());

    // Scheduled pushes (by the system, in every company) and schedule
    // changes are not a burst of exports.
    let mut f = Feed::new();
    let mut events = Vec::new();
    for i in 0..10 {
        let company = format!("c{i}");
        for action in [
            Action::ExportPush,
            Action::ExportScheduleSet,
            Action::ExportScheduleDelete,
        ] {
            let mut e = export(i * 10, "system", &company);
            e.action = Some(action);
            events.push(e);
        }
    }
    assert!(f.send_all(events).is_empty());
    assert!(Action::ExportCreate.is_export_of_data() && Action::ExportDownload.is_export_of_data());
}

#[test]
fn shutdown_needs_a_maintenance_mark() {
    let mut f = Feed::new();
    assert!(f.send(system(0, Action::SystemStart)).is_empty());
    let alerts = f.send(system(100, Action::SystemShutdown));
    assert_eq!(rules(&alerts), [rule::UNPLANNED_SHUTDOWN]);
    assert_eq!(alerts[0].severity, Severity::Medium);

    let mut f = Feed::new();
    f.send(system(0, Action::SystemMaintenance));
    assert!(f.send(system(600, Action::SystemShutdown)).is_empty());
    assert!(f.send(system(700, Action::SystemStart)).is_empty());
    // A start with no shutdown since the previous start: unclean.
    let mut g = Feed::new();
    let started = |at: i64| {
        let mut e = system(at, Action::SystemStart);
        e.detail = Some("workbooks 0.1.0 on node n1, config sha256:x".into());
        e
    };
    assert!(g.send(started(0)).is_empty());
    assert_eq!(rules(&g.send(started(60))), vec![rule::UNCLEAN_RESTART]);
    // A second shutdown after the window: unplanned.
    assert_eq!(
        rules(&f.send(system(3600, Action::SystemShutdown))),
        [rule::UNPLANNED_SHUTDOWN]
    );
}

#[test]
fn audit_unavailable_is_critical() {
    let mut f = Feed::new();
    let mut e = system(0, Action::AuditUnavailable);
    e.outcome = "failure".into();
    e.company_id = Some("c1".into());
    e.target = Some(Action::ReportTrialBalance.to_string());
    e.detail = Some("disk full".into());
    let alerts = f.send(e);
    assert_eq!(rules(&alerts), [rule::AUDIT_UNAVAILABLE]);
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert_eq!(alerts[0].dedupe_key, "audit-unavailable:company:c1");
    assert_eq!(alerts[0].company_id.as_deref(), Some("c1"));
}

#[test]
fn disabled_rules_and_custom_thresholds() {
    let config: MonitorConfig = serde_json::from_str(
        r#"{"failed-logins-per-account": {"count": 3, "window-secs": 60},
            "disabled-rules": ["unplanned-shutdown"]}"#,
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.failed_logins_per_client, Threshold::new(20, 600));
    let mut f = Feed::with(config);
    assert!(f.send(system(0, Action::SystemShutdown)).is_empty());
    let alerts = f.send_all(
        (0..3)
            .map(|i| login(i, "u1", "ann@x.example", "10.0.0.1", false))
            .collect(),
    );
    assert_eq!(rules(&alerts), [rule::FAILED_LOGINS_ACCOUNT]);

    let bad = MonitorConfig {
        disabled_rules: vec!["nope".into()],
        ..MonitorConfig::default()
    };
    assert!(bad.validate().is_err());
    let bad = MonitorConfig {
        mass_export: Threshold::new(0, 60),
        ..MonitorConfig::default()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn idle_windows_are_swept() {
    let mut f = Feed::new();
    // Stale single failures for many accounts...
    for i in 0..100 {
        f.send(login(i, "u", &format!("u{i}@x.example"), "10.0.0.1", false));
    }
    assert_eq!(f.monitor.failed_by_account.by_key.len(), 100);
    // ...are forgotten once the stream has moved past their window.
    for i in 0..SWEEP_EVERY as i64 {
        f.send(post(3600 + i, "user:u", "c1"));
    }
    assert!(f.monitor.failed_by_account.by_key.is_empty());
    // Recent state survives a sweep and still fires.
    let t = 3600 + SWEEP_EVERY as i64;
    let alerts = f.send_all(
        (0..5)
            .map(|i| login(t + i, "u", "ann@x.example", "10.0.0.1", false))
            .collect(),
    );
    assert_eq!(rules(&alerts), [rule::FAILED_LOGINS_ACCOUNT]);
}

#[test]
fn alert_state_machine() {
    use AlertState::*;
    assert_eq!(Open.transition(Acknowledged), Ok(Acknowledged));
    assert_eq!(Open.transition(Resolved), Ok(Resolved));
    assert_eq!(Acknowledged.transition(Resolved), Ok(Resolved));
    for (from, to) in [
        (Open, Open),
        (Acknowledged, Acknowledged),
        (Acknowledged, Open),
        (Resolved, Open),
        (Resolved, Acknowledged),
        (Resolved, Resolved),
    ] {
        assert_eq!(from.transition(to), Err(InvalidTransition { from, to }));
    }
    assert_eq!(
        Resolved.transition(Acknowledged).unwrap_err().to_string(),
        "an alert that is resolved cannot become acknowledged"
    );
    for s in [Open, Acknowledged, Resolved] {
        assert_eq!(s.as_str().parse::<AlertState>(), Ok(s));
    }
    assert!(Severity::Critical > Severity::High && Severity::Medium > Severity::Low);
    assert_eq!("high".parse::<Severity>(), Ok(Severity::High));
}

/// Normal traffic: successful logins from each user's own network, and
/// postings, reads and the odd single failed login.
fn normal_event() -> impl Strategy<Value = (u8, u8, u8, u8)> {
    (0u8..4, 0u8..6, 0u8..=255, 0u8..20)
}

proptest! {
    #[test]
    fn normal_traffic_raises_nothing(
        events in proptest::collection::vec(normal_event(), 1..300),
        gap in 1i64..120,
    ) {
        let mut f = Feed::new();
        let users = ["admin-1", "owner-1", "clerk-1", "clerk-2", "viewer", "api"];
        let mut failures_left: HashMap<&str, u8> = HashMap::new();
        for (i, (kind, who, host, co)) in events.into_iter().enumerate() {
            let t = i as i64 * gap;
            let user = users[who as usize];
            // Each user has one home /24.
            let client = format!("10.{who}.7.{host}");
            let company = format!("c{co}");
            let e = match kind {
                0 => login(t, user, &format!("{user}@x.example"), &client, true),
                1 => post(t, &format!("user:{user}"), &company),
                2 => {
                    let mut e = post(t, &format!("user:{user}"), &company);
                    e.action = Some(Action::ReportTrialBalance);
                    e
                }
                _ => {
                    // At most two typos per user.
                    let left = failures_left.entry(user).or_insert(2);
                    if *left == 0 {
                        login(t, user, "", &client, true)
                    } else {
                        *left -= 1;
                        login(t, user, &format!("{user}@x.example"), &client, false)
                    }
                }
            };
            let alerts = f.send(e);
            prop_assert!(alerts.is_empty(), "unexpected alerts: {:?}", alerts);
        }
    }
}

fn control_event(secs: i64, actor: &str, company: &str, action: Action, ok: bool) -> ObservedEvent {
    let mut e = ObservedEvent::new("control", 0, at(secs), actor, action, ok);
    e.company_id = Some(company.into());
    e
}

#[test]
fn allowlist_changes_raise_an_alert_other_policy_changes_do_not() {
    use crate::security_policy::{describe, parse_block, SecurityPolicy};
    let open = SecurityPolicy::default();
    let listed = SecurityPolicy {
        ip_allowlist: vec![parse_block("192.0.2.0/24").unwrap()],
        ..Default::default()
    };
    let shorter = SecurityPolicy {
        session_ttl_minutes: Some(30),
        ..Default::default()
    };
    let change = |secs, before: &SecurityPolicy, after: &SecurityPolicy, ok| {
        let mut e = control_event(secs, "user:u1", "c1", Action::SecurityPolicySet, ok);
        e.detail = Some(format!(
            "before: {}; after: {}",
            describe(before),
            describe(after)
        ));
        e
    };
    let mut f = Feed::new();
    let alerts = f.send(change(0, &open, &listed, true));
    assert_eq!(rules(&alerts), [rule::ALLOWLIST_CHANGE]);
    assert_eq!(alerts[0].company_id.as_deref(), Some("c1"));
    assert!(f.send(change(10, &open, &shorter, true)).is_empty());
    // A refused change changed nothing.
    assert!(f.send(change(20, &listed, &open, false)).is_empty());
    // Disabled, it raises nothing.
    let mut f = Feed::with(MonitorConfig {
        disabled_rules: vec![rule::ALLOWLIST_CHANGE.into()],
        ..Default::default()
    });
    assert!(f.send(change(0, &open, &listed, true)).is_empty());
}

#[test]
fn a_second_factor_removed_from_an_admin_raises_an_alert() {
    let removal = |secs, actor: &str, target: &str, ok| {
        let mut e = ObservedEvent::new("control", 0, at(secs), actor, Action::AuthMfaRemove, ok);
        e.target = Some(target.into());
        e.detail = Some("authenticator".into());
        e
    };
    let mut f = Feed::new();
    let alerts = f.send(removal(0, "user:admin-1", "user:admin-1", true));
    assert_eq!(rules(&alerts), [rule::MFA_REMOVED_ADMIN]);
    assert!(alerts[0].title.contains("user:admin-1"));
    // An operator removing it from an owner counts too.
    let alerts = f.send(removal(10, "operator:cli", "user:owner-1", true));
    assert_eq!(rules(&alerts), [rule::MFA_REMOVED_ADMIN]);
    // Not an admin, or refused: nothing.
    assert!(f.send(removal(20, "user:u9", "user:u9", true)).is_empty());
    assert!(f
        .send(removal(30, "user:admin-1", "user:admin-1", false))
        .is_empty());
}

#[test]
fn a_burst_of_invitations_raises_an_alert() {
    let invite =
        |secs, actor: &str| control_event(secs, actor, "c1", Action::InvitationCreate, true);
    let mut f = Feed::new();
    let alerts = f.send_all((0..10).map(|i| invite(i * 30, "user:u1")).collect());
    assert_eq!(rules(&alerts), [rule::MASS_INVITATIONS]);
    // Spread out, or by several people, or refused: nothing.
    let mut f = Feed::new();
    let mut events: Vec<_> = (0..10).map(|i| invite(i * 120, "user:u2")).collect();
    events.extend((0..9).map(|i| invite(i, "user:u3")));
    events.extend(
        (0..10).map(|i| control_event(i, "user:u4", "c1", Action::InvitationCreate, false)),
    );
    assert!(f.send_all(events).is_empty());
}

#[test]
fn every_rule_can_be_named_in_disabled_rules() {
    for r in rule::ALL {
        let config = MonitorConfig {
            disabled_rules: vec![r.to_string()],
            ..Default::default()
        };
        assert!(config.validate().is_ok(), "{r}");
    }
    assert!(rule::ALL.contains(&rule::UNCLEAN_RESTART));
}

#[test]
fn every_refused_staff_request_raises_the_outside_grant_alert() {
    let mut f = Feed::new();
    let mut refused = control_event(0, "staff:s1", "c1", Action::StaffRefused, false);
    refused.detail = Some("no active grant covers ReadBooks".into());
    let alerts = f.send(refused.clone());
    assert_eq!(rules(&alerts), [rule::STAFF_OUTSIDE_GRANT]);
    assert_eq!(alerts[0].severity, Severity::High);
    assert_eq!(alerts[0].company_id.as_deref(), Some("c1"));
    assert!(alerts[0].title.contains("staff:s1"));
    // The same staff member and company again: the same alert (one dedupe
    // key), raised again so its count and time move.
    let again = f.send(ObservedEvent {
        source_seq: 2,
        ..refused
    });
    assert_eq!(again[0].dedupe_key, alerts[0].dedupe_key);
    // A staff view read raises nothing.
    assert!(f
        .send(control_event(5, "staff:s1", "c1", Action::StaffView, true))
        .is_empty());
}

#[test]
fn repeated_failed_staff_logins_alert_like_customers() {
    let mut f = Feed::new();
    let mut alerts = Vec::new();
    for n in 0..30 {
        let mut e = control_event(n, "anonymous", "", Action::StaffLogin, false);
        e.company_id = None;
        e.target = Some("staff:s1".into());
        alerts.extend(f.send(e));
    }
    assert!(
        rules(&alerts).contains(&rule::FAILED_LOGINS_ACCOUNT),
        "{alerts:?}"
    );
    assert!(alerts.iter().any(|a| a.title.contains("staff:s1")));
    // Successful ones raise nothing.
    let mut f = Feed::new();
    for n in 0..30 {
        let mut e = control_event(n, "staff:s1", "", Action::StaffLogin, true);
        e.company_id = None;
        assert!(f.send(e).is_empty());
    }
}
